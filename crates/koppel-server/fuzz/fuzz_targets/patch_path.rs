//! Any text as a PATCH path, applied with add, replace and remove to a user and a group:
//! parsing and application must never panic.
#![no_main]

use koppel_server::filter;
use koppel_server::patch::{self, OpKind, Operation};
use koppel_server::schema::Kind;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = filter::parse_path(text) else {
        return;
    };
    let user = json!({
        "userName": "bjensen", "active": true,
        "name": { "givenName": "Barbara" },
        "emails": [{ "value": "b@example.com", "type": "work" }, { "value": "x@y", "type": "home" }],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": { "employeeNumber": "7" }
    });
    let group = json!({ "displayName": "g", "members": [{ "value": "1" }, { "value": "2" }] });
    let values = [
        None,
        Some(json!("text")),
        Some(json!(true)),
        Some(json!({ "value": "v", "type": "work" })),
        Some(json!([{ "value": "v" }])),
    ];
    for (kind, resource) in [(Kind::User, &user), (Kind::Group, &group)] {
        for op in [OpKind::Add, OpKind::Replace, OpKind::Remove] {
            for value in &values {
                let serde_json::Value::Object(mut r) = resource.clone() else {
                    return;
                };
                let ops = [Operation {
                    op,
                    path: Some(path.clone()),
                    value: value.clone(),
                }];
                let _ = patch::apply(&mut r, kind, &ops);
            }
        }
    }
});
