//! Any text as a SCIM filter: parsing, validation and evaluation must never panic (nor
//! overflow the stack).
#![no_main]

use koppel_server::filter;
use koppel_server::schema::Kind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let user = serde_json::json!({
        "id": "2819c223", "userName": "bjensen", "active": true,
        "name": { "givenName": "Barbara" },
        "emails": [{ "value": "b@example.com", "type": "work", "primary": true }],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": { "employeeNumber": "7" },
        "meta": { "lastModified": "2011-05-13T04:42:34Z" }
    });
    let serde_json::Value::Object(user) = user else {
        return;
    };
    if let Ok(f) = filter::parse(text) {
        for kind in [Kind::User, Kind::Group] {
            let _ = filter::validate(&f, kind);
            let _ = filter::matches(&f, &user, kind);
        }
    }
});
