//! The SCIM endpoint over HTTP (tower `oneshot`): CRUD, filters, PATCH, ETags, errors,
//! authentication, and koppel-made accounts read as SCIM Users.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use koppel_connectors::DirectoryTarget;
use koppel_connectors::target::{CreateRequest, Target};
use koppel_core::AttrValue;
use koppel_server::{Directory, Mapping, ScimState, scim_router};
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "s3cret-token";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

struct Fixture {
    _dir: tempfile::TempDir,
    store: koppel_store::SqliteStore,
    router: Router,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = koppel_store::SqliteStore::open(&dir.path().join("koppel.db"))
        .await
        .expect("store");
    let directory = Directory::open(
        store.pool().clone(),
        "directory",
        Mapping::default_mapping(),
    )
    .await
    .expect("directory");
    let state = ScimState::new(
        directory,
        &[TOKEN.to_owned(), "second".to_owned()],
        Some("https://idp.example/scim".to_owned()),
        64 * 1024,
    )
    .expect("state");
    Fixture {
        _dir: dir,
        store,
        router: scim_router(state),
    }
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl Fixture {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/scim+json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        self.send(req).await
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.router.clone().oneshot(req).await.expect("response");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Reply {
        self.call("GET", uri, None, &[]).await
    }

    async fn post_user(&self, user_name: &str, extra: Value) -> Value {
        let mut body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user_name,
        });
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        let r = self.call("POST", "/Users", Some(body), &[]).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }
}

fn filter_uri(path: &str, filter: &str) -> String {
    let mut out = format!("{path}?filter=");
    for b in filter.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn ids(list: &Value) -> Vec<String> {
    list["Resources"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["userName"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn discovery_health_and_auth() {
    let f = fixture().await;
    let r = f
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::OK);

    for uri in [
        "/ServiceProviderConfig",
        "/ResourceTypes",
        "/Schemas",
        "/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group",
        "/ResourceTypes/User",
    ] {
        let r = f.get(uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        assert_eq!(r.headers[header::CONTENT_TYPE], "application/scim+json");
    }
    assert_eq!(f.get("/Schemas").await.body["totalResults"], 3);
    assert_eq!(f.get("/Schemas/nope").await.status, StatusCode::NOT_FOUND);

    // No token, a wrong token, a wrong scheme: 401 with a SCIM body.
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic czNjcmV0LXRva2Vu"),
        Some("Bearer"),
    ] {
        let mut req = Request::get("/Users");
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let r = f.send(req.body(Body::empty()).unwrap()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(r.body["status"], "401");
        assert!(r.headers.contains_key(header::WWW_AUTHENTICATE));
    }
    // The second configured token works too.
    let r = f
        .send(
            Request::get("/Users")
                .header(header::AUTHORIZATION, "Bearer second")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(f.get("/Me").await.status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(f.get("/Nope").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn user_crud_with_etags() {
    let f = fixture().await;
    let created = f
        .post_user(
            "bjensen",
            json!({
                "name": { "givenName": "Barbara", "familyName": "Jensen" },
                "displayName": "Babs",
                "emails": [{ "value": "bjensen@example.com", "type": "work", "primary": true },
                           { "value": "babs@home.example", "type": "home" }],
                "password": "never-stored",
                "externalId": "ext-1",
                ENTERPRISE: { "employeeNumber": "701984", "division": "Tours" },
            }),
        )
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    // `active` was not sent: the account is enabled, and `active` reads back unassigned.
    assert!(created.get("active").is_none());
    assert_eq!(created["meta"]["resourceType"], "User");
    assert_eq!(
        created["meta"]["location"],
        format!("https://idp.example/scim/Users/{id}")
    );
    assert!(created["meta"]["created"].is_string());
    assert!(created.get("password").is_none());
    assert_eq!(created[ENTERPRISE]["division"], "Tours");
    assert_eq!(
        created["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE])
    );

    let r = f.get(&format!("/Users/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    let etag = r.headers[header::ETAG].to_str().unwrap().to_owned();
    assert_eq!(r.body["meta"]["version"], etag);
    assert_eq!(r.body["emails"], created["emails"]);

    // If-None-Match: 304.
    let r = f
        .call(
            "GET",
            &format!("/Users/{id}"),
            None,
            &[("If-None-Match", &etag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);

    // Uniqueness of userName, case-insensitively.
    let r = f
        .call("POST", "/Users", Some(json!({"userName": "BJENSEN"})), &[])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.body["scimType"], "uniqueness");

    // PUT with a stale version: 412; with the right one: the replacement.
    let put = json!({ "userName": "bjensen", "title": "Tour guide", "active": false });
    let r = f
        .call(
            "PUT",
            &format!("/Users/{id}"),
            Some(put.clone()),
            &[("If-Match", "W/\"stale\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = f
        .call(
            "PUT",
            &format!("/Users/{id}"),
            Some(put),
            &[("If-Match", &etag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["title"], "Tour guide");
    assert_eq!(r.body["active"], false);
    assert!(r.body.get("emails").is_none(), "PUT replaces: {}", r.body);
    assert!(r.body.get(ENTERPRISE).is_none());
    assert_ne!(r.headers[header::ETAG].to_str().unwrap(), etag);

    // DELETE with the wrong version: 412; then 204 and 404.
    let r = f
        .call(
            "DELETE",
            &format!("/Users/{id}"),
            None,
            &[("If-Match", &etag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        f.call("DELETE", &format!("/Users/{id}"), None, &[])
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let r = f.get(&format!("/Users/{id}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
    );
    assert_eq!(
        f.call("DELETE", &format!("/Users/{id}"), None, &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bad_requests_are_scim_errors() {
    let f = fixture().await;
    type Case<'a> = (&'a str, &'a str, Option<Value>, StatusCode, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/Users",
            Some(json!({"displayName": "no userName"})),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            "POST",
            "/Users",
            Some(json!({"userName": "x", "active": "maybe"})),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            "POST",
            "/Users",
            Some(json!({"userName": "x", "emails": [{"value": 5}]})),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            "POST",
            "/Users",
            Some(json!([1, 2])),
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
        ),
        (
            "POST",
            "/Groups",
            Some(json!({"members": []})),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            "GET",
            "/Users?filter=userName%20eq",
            None,
            StatusCode::BAD_REQUEST,
            Some("invalidFilter"),
        ),
        (
            "GET",
            "/Users?filter=active%20gt%20true",
            None,
            StatusCode::BAD_REQUEST,
            Some("invalidFilter"),
        ),
        (
            "GET",
            "/Users?count=abc",
            None,
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            "GET",
            "/Users?sortOrder=sideways",
            None,
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
    ];
    for (method, uri, body, status, scim_type) in cases {
        let r = f.call(method, uri, body, &[]).await;
        assert_eq!(r.status, status, "{method} {uri}: {}", r.body);
        assert_eq!(
            r.body["scimType"].as_str(),
            scim_type,
            "{method} {uri}: {}",
            r.body
        );
        assert_eq!(r.body["status"], status.as_u16().to_string());
    }
    // Broken JSON, and a body over the limit (64 KiB here).
    let req = Request::post("/Users")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/scim+json")
        .body(Body::from("{\"userName\": "))
        .unwrap();
    assert_eq!(f.send(req).await.body["scimType"], "invalidSyntax");
    let big = json!({"userName": "x".repeat(100_000)});
    let r = f.call("POST", "/Users", Some(big), &[]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // The filter error names its column.
    let r = f.get(&filter_uri("/Users", "userName eq \"x\" and")).await;
    assert!(
        r.body["detail"].as_str().unwrap().contains("column 20"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn filters_sorting_paging_and_projection() {
    let f = fixture().await;
    for (n, (user, family, dept, active)) in [
        ("alice", "Zwart", "Sales", true),
        ("bob", "Jansen", "IT", true),
        ("carol", "de Vries", "IT", false),
        ("dave", "Bakker", "Sales", true),
        ("Eve", "Visser", "HR", true),
    ]
    .into_iter()
    .enumerate()
    {
        f.post_user(
            user,
            json!({
                "name": { "familyName": family },
                "active": active,
                "emails": [{ "value": format!("{user}@example.com"), "type": if n % 2 == 0 { "work" } else { "home" } }],
                ENTERPRISE: { "department": dept },
            }),
        )
        .await;
    }
    let cases: &[(&str, &[&str])] = &[
        (r#"userName eq "BOB""#, &["bob"]),
        (r#"userName eq "eve""#, &["Eve"]),
        (r#"userName eq "nobody""#, &[]),
        (
            r#"userName eq "bob" or userName eq "dave""#,
            &["bob", "dave"],
        ),
        (r#"userName eq "bob" and active eq false"#, &[]),
        (
            r#"userName sw "c" or name.familyName co "ak""#,
            &["carol", "dave"],
        ),
        (r#"active eq false"#, &["carol"]),
        (
            r#"not (active eq true) or userName eq "alice""#,
            &["alice", "carol"],
        ),
        (
            r#"emails[type eq "work" and value co "@example"]"#,
            &["alice", "carol", "Eve"],
        ),
        (
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "it""#,
            &["bob", "carol"],
        ),
        (
            r#"meta.created gt "2000-01-01T00:00:00Z""#,
            &["alice", "bob", "carol", "dave", "Eve"],
        ),
    ];
    for (filter, want) in cases {
        let r = f.get(&filter_uri("/Users", filter)).await;
        assert_eq!(r.status, StatusCode::OK, "{filter}: {}", r.body);
        assert_eq!(ids(&r.body), *want, "{filter}");
        assert_eq!(r.body["totalResults"], want.len(), "{filter}");
    }

    let r = f
        .get("/Users?sortBy=name.familyName&sortOrder=descending")
        .await;
    assert_eq!(ids(&r.body), ["alice", "Eve", "bob", "carol", "dave"]);
    let r = f.get("/Users?sortBy=userName").await;
    assert_eq!(ids(&r.body), ["alice", "bob", "carol", "dave", "Eve"]);

    let r = f.get("/Users?startIndex=2&count=2").await;
    assert_eq!(r.body["totalResults"], 5);
    assert_eq!(r.body["startIndex"], 2);
    assert_eq!(r.body["itemsPerPage"], 2);
    assert_eq!(ids(&r.body), ["bob", "carol"]);
    let r = f.get("/Users?count=0").await;
    assert_eq!(r.body["totalResults"], 5);
    assert_eq!(r.body["Resources"], json!([]));
    let r = f
        .get(&format!(
            "{}&startIndex=2&count=1&sortBy=userName",
            filter_uri("/Users", "active eq true")
        ))
        .await;
    assert_eq!(r.body["totalResults"], 4);
    assert_eq!(ids(&r.body), ["bob"]);

    let r = f
        .get(&format!(
            "{}&attributes=userName,name.familyName",
            filter_uri("/Users", "userName eq \"bob\"")
        ))
        .await;
    let bob = &r.body["Resources"][0];
    let keys: Vec<&String> = bob.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "name", "schemas", "userName"]);
    assert_eq!(bob["name"], json!({"familyName": "Jansen"}));
    let r = f
        .get(&format!(
            "{}&excludedAttributes=emails,meta,{ENTERPRISE}",
            filter_uri("/Users", "userName eq \"bob\"")
        ))
        .await;
    let bob = &r.body["Resources"][0];
    assert!(
        bob.get("emails").is_none() && bob.get("meta").is_none() && bob.get(ENTERPRISE).is_none()
    );
    assert!(bob.get("id").is_some() && bob.get("userName").is_some());

    // POST /.search takes the same in a body.
    let r = f
        .call(
            "POST",
            "/Users/.search",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "filter": "userName sw \"a\" or userName sw \"b\"",
                "attributes": ["userName"],
                "sortBy": "userName",
                "sortOrder": "descending",
            })),
            &[],
        )
        .await;
    assert_eq!(ids(&r.body), ["bob", "alice"]);
}

#[tokio::test]
async fn user_patch_operations() {
    let f = fixture().await;
    let user = f
        .post_user(
            "pat",
            json!({
                "emails": [{ "value": "pat@work.example", "type": "work" }, { "value": "pat@home.example", "type": "home" }],
                "name": { "givenName": "Pat", "familyName": "Smit" },
            }),
        )
        .await;
    let id = user["id"].as_str().unwrap();
    let uri = format!("/Users/{id}");
    let patch = |ops: Value| json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops });

    let r = f
        .call(
            "PATCH",
            &uri,
            Some(patch(json!([
                { "op": "replace", "path": "emails[type eq \"work\"].value", "value": "pat@new.example" },
                { "op": "add", "path": "nickName", "value": "Patty" },
                { "op": "Replace", "value": { "title": "Boss", "name.familyName": "Smith", "active": "False" } },
                { "op": "add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+31 6 1234" },
                { "op": "remove", "path": "emails[type eq \"home\"]" },
                { "op": "add", "path": ENTERPRISE, "value": { "costCenter": "42" } },
            ]))),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let b = &r.body;
    assert_eq!(
        b["emails"],
        json!([{ "value": "pat@new.example", "type": "work" }])
    );
    assert_eq!(b["nickName"], "Patty");
    assert_eq!(b["title"], "Boss");
    assert_eq!(b["active"], false);
    assert_eq!(
        b["name"],
        json!({ "givenName": "Pat", "familyName": "Smith" })
    );
    assert_eq!(
        b["phoneNumbers"],
        json!([{ "value": "+31 6 1234", "type": "mobile" }])
    );
    assert_eq!(b[ENTERPRISE]["costCenter"], "42");

    let r = f
        .call("PATCH", &uri, Some(patch(json!([{ "op": "remove", "path": "name.givenName" }, { "op": "remove", "path": ENTERPRISE }]))), &[])
        .await;
    assert_eq!(r.body["name"], json!({ "familyName": "Smith" }));
    assert!(r.body.get(ENTERPRISE).is_none());

    let cases = [
        (
            json!([{ "op": "replace", "path": "emails[type eq \"other\"].value", "value": "x@y" }]),
            "noTarget",
        ),
        (json!([{ "op": "remove" }]), "noTarget"),
        (
            json!([{ "op": "replace", "path": "id", "value": "mine" }]),
            "mutability",
        ),
        (
            json!([{ "op": "add", "path": "groups", "value": [{ "value": "1" }] }]),
            "mutability",
        ),
        (
            json!([{ "op": "add", "path": "emails[type eq", "value": "x" }]),
            "invalidPath",
        ),
        (
            json!([{ "op": "add", "path": "nosuch", "value": "x" }]),
            "invalidPath",
        ),
        (
            json!([{ "op": "remove", "path": "userName" }]),
            "invalidValue",
        ),
        (
            json!([{ "op": "replace", "path": "active", "value": 3 }]),
            "invalidValue",
        ),
        (json!([{ "op": "move", "path": "title" }]), "invalidSyntax"),
    ];
    for (ops, scim_type) in cases {
        let r = f.call("PATCH", &uri, Some(patch(ops.clone())), &[]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{ops}: {}", r.body);
        assert_eq!(r.body["scimType"], scim_type, "{ops}: {}", r.body);
    }
    // A failed PATCH changes nothing: all or nothing.
    let r = f
        .call(
            "PATCH",
            &uri,
            Some(patch(
                json!([{ "op": "add", "path": "title", "value": "Changed" }, { "op": "remove" }]),
            )),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(f.get(&uri).await.body["title"], "Boss");
    // If-Match on PATCH.
    let r = f
        .call(
            "PATCH",
            &uri,
            Some(patch(
                json!([{ "op": "add", "path": "title", "value": "X" }]),
            )),
            &[("If-Match", "W/\"0\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
}

#[tokio::test]
async fn groups_and_members() {
    let f = fixture().await;
    let a = f.post_user("anna", json!({"displayName": "Anna A"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = f.post_user("ben", json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = f
        .call(
            "POST",
            "/Groups",
            Some(
                json!({ "displayName": "Team", "externalId": "g-1", "members": [{ "value": a }] }),
            ),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let gid = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        r.body["members"],
        json!([{ "value": a, "type": "User", "$ref": format!("https://idp.example/scim/Users/{a}") }])
    );
    assert_eq!(r.body["externalId"], "g-1");
    let guri = format!("/Groups/{gid}");

    let r = f
        .call(
            "POST",
            "/Groups",
            Some(json!({ "displayName": "Team" })),
            &[],
        )
        .await;
    assert_eq!(r.body["scimType"], "uniqueness");
    let r = f
        .call(
            "POST",
            "/Groups",
            Some(json!({ "displayName": "Other", "members": [{ "value": "ghost" }] })),
            &[],
        )
        .await;
    assert_eq!(r.body["scimType"], "invalidValue");

    let patch = |ops: Value| json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops });
    let r = f
        .call(
            "PATCH",
            &guri,
            Some(patch(
                json!([{ "op": "add", "path": "members", "value": [{ "value": b }] }]),
            )),
            &[],
        )
        .await;
    assert_eq!(r.body["members"].as_array().unwrap().len(), 2, "{}", r.body);
    // The user shows the group.
    let user = f.get(&format!("/Users/{b}")).await.body;
    assert_eq!(
        user["groups"],
        json!([{ "value": gid, "display": "Team", "type": "direct", "$ref": format!("https://idp.example/scim/Groups/{gid}") }])
    );

    let r = f
        .call("PATCH", &guri, Some(patch(json!([{ "op": "remove", "path": format!("members[value eq \"{a}\"]") }, { "op": "replace", "path": "displayName", "value": "Team B" }]))), &[])
        .await;
    assert_eq!(r.body["displayName"], "Team B");
    assert_eq!(r.body["members"].as_array().unwrap().len(), 1);
    // Entra ID's form: remove with a value list.
    let r = f
        .call(
            "PATCH",
            &guri,
            Some(patch(
                json!([{ "op": "Remove", "path": "members", "value": [{ "value": b }] }]),
            )),
            &[],
        )
        .await;
    assert!(r.body.get("members").is_none(), "{}", r.body);

    let r = f
        .get(&filter_uri("/Groups", "displayName eq \"team b\""))
        .await;
    assert_eq!(r.body["totalResults"], 1);
    let r = f.get(&filter_uri("/Groups", "externalId eq \"g-1\"")).await;
    assert_eq!(r.body["totalResults"], 1);

    let r = f
        .call(
            "PUT",
            &guri,
            Some(json!({ "displayName": "Team C", "members": [{ "value": a }, { "value": b }] })),
            &[],
        )
        .await;
    assert_eq!(r.body["members"].as_array().unwrap().len(), 2);
    assert!(r.body.get("externalId").is_none());

    // Deleting a user drops its memberships.
    assert_eq!(
        f.call("DELETE", &format!("/Users/{a}"), None, &[])
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        f.get(&guri).await.body["members"].as_array().unwrap().len(),
        1
    );
    assert_eq!(
        f.call("DELETE", &guri, None, &[]).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(f.get(&guri).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        f.get("/Groups/not-a-number").await.status,
        StatusCode::NOT_FOUND
    );
}

/// Accounts koppel made through the directory target read as SCIM Users through the
/// mapping, SCIM writes keep koppel's other attributes and the directory's correlation index.
#[tokio::test]
async fn koppel_accounts_are_scim_users() {
    let f = fixture().await;
    let target = DirectoryTarget::new("directory", f.store.pool().clone())
        .await
        .expect("target");
    let attributes: BTreeMap<String, AttrValue> = [
        ("username", "jdevries"),
        ("given_name", "Jan"),
        ("family_name", "de Vries"),
        ("email", "jan.devries@gemeente.example"),
        ("employee_id", "E1001"),
        ("department", "ICT"),
        ("hire_date", "2024-01-01"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), AttrValue::Text(v.to_owned())))
    .collect();
    target
        .create(&CreateRequest {
            person: "E1001".to_owned(),
            attributes,
            enabled: true,
            correlation: Some((
                "employee_id".to_owned(),
                AttrValue::Text("E1001".to_owned()),
            )),
        })
        .await
        .expect("create");
    target.grant("E1001", "afd-ict").await.expect("grant");

    let r = f
        .get(&filter_uri("/Users", "userName eq \"JDEVRIES\""))
        .await;
    assert_eq!(r.body["totalResults"], 1, "{}", r.body);
    let u = &r.body["Resources"][0];
    assert_eq!(u["id"], "E1001");
    assert_eq!(
        u["name"],
        json!({ "givenName": "Jan", "familyName": "de Vries" })
    );
    assert_eq!(
        u["emails"],
        json!([{ "value": "jan.devries@gemeente.example", "type": "work" }])
    );
    assert_eq!(
        u[ENTERPRISE],
        json!({ "employeeNumber": "E1001", "department": "ICT" })
    );
    assert_eq!(u["groups"][0]["display"], "afd-ict");
    assert!(u["meta"].get("created").is_none());

    // A SCIM change is visible to koppel; koppel's unmapped attribute stays.
    let patch = json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{ "op": "replace", "path": "name.givenName", "value": "Johannes" }] });
    let r = f.call("PATCH", "/Users/E1001", Some(patch), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let account = target.get("E1001").await.expect("get").expect("account");
    assert_eq!(
        account.attributes["given_name"],
        AttrValue::Text("Johannes".to_owned())
    );
    assert_eq!(
        account.attributes["hire_date"],
        AttrValue::Text("2024-01-01".to_owned())
    );
    assert!(account.permissions.contains("afd-ict"));

    // A user pushed over SCIM is found by the directory's correlation on a mapped attribute.
    f.post_user(
        "pushed",
        json!({ ENTERPRISE: { "employeeNumber": "E2002" } }),
    )
    .await;
    let found = target
        .correlate("employee_id", &AttrValue::Text("e2002".to_owned()))
        .await
        .expect("correlate")
        .expect("found");
    assert_eq!(
        found.attributes["username"],
        AttrValue::Text("pushed".to_owned())
    );
    // And koppel's change shows through SCIM.
    target
        .update(
            &found.reference,
            &BTreeMap::from([("title".to_owned(), AttrValue::Text("Adviseur".to_owned()))]),
        )
        .await
        .expect("update");
    let r = f.get(&format!("/Users/{}", found.reference)).await;
    assert_eq!(r.body["title"], "Adviseur");
}

/// 64 clients creating users at once, half of them with the same 8 names: every distinct
/// name is created exactly once, every duplicate is a 409 `uniqueness`, none is lost to a
/// busy database or answered with a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_are_serialised_not_lost() {
    let f = std::sync::Arc::new(fixture().await);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let f = f.clone();
        let name = if i % 2 == 0 {
            format!("solo{i}")
        } else {
            format!("shared{}", i % 8)
        };
        tasks.push(tokio::spawn(async move {
            let body = json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": name,
                "name": {"givenName": "Con", "familyName": "Current"},
            });
            let r = f.call("POST", "/Users", Some(body), &[]).await;
            (name, r.status, r.body)
        }));
    }
    let mut created = BTreeMap::<String, usize>::new();
    for t in tasks {
        let (name, status, body) = t.await.expect("task");
        match status {
            StatusCode::CREATED => *created.entry(name).or_default() += 1,
            StatusCode::CONFLICT => {
                assert!(name.starts_with("shared"), "{name}: {body}");
                assert_eq!(body["scimType"], "uniqueness", "{body}");
            }
            other => panic!("{name}: {other} {body}"),
        }
    }
    // 32 solo names and the 4 distinct shared ones (odd i gives i % 8 in {1, 3, 5, 7}).
    assert_eq!(created.len(), 36, "{created:?}");
    assert!(created.values().all(|n| *n == 1), "{created:?}");
    let list = f.call("GET", "/Users?count=0", None, &[]).await;
    assert_eq!(list.body["totalResults"], 36, "{}", list.body);
}
