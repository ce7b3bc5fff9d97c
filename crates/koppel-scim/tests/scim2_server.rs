//! The `scim` target against a real SCIM 2.0 peer: PyPI's `scim2-server`, one per test.
//! Without its venv the tests say they are skipped, and fail under `KOPPEL_REQUIRE_SERVERS=1`.

use std::collections::BTreeMap;
use std::time::Instant;

use koppel_connectors::conformance::{self, Fixture};
use koppel_connectors::target::{CreateRequest, Created, Done, Op, Target, TargetError};
use koppel_core::AttrValue;
use koppel_scim::{ScimConfig, ScimError, ScimTarget, connect};
use koppel_testkit::scim::Scim2Server;
use serde_json::{Value, json};

fn text(s: &str) -> AttrValue {
    AttrValue::Text(s.to_owned())
}

fn config(server: &Scim2Server, extra: &str) -> ScimConfig {
    let token = server.token_file().expect("token file");
    let toml = format!(
        "base_url = {:?}\ntoken_file = {:?}\n{extra}",
        server.base_url(),
        token.display().to_string()
    );
    ScimConfig::from_table("peer", &toml::from_str(&toml).expect("toml")).expect("config")
}

async fn target(server: &Scim2Server, extra: &str) -> ScimTarget {
    connect("peer", config(server, extra))
        .await
        .expect("connect")
}

/// An independent look at the server: plain HTTP with the token, not the connector.
fn raw_get(server: &Scim2Server, path_and_query: &str) -> Value {
    let out = std::process::Command::new("curl")
        .args(["-s", "-g", "-H"])
        .arg(format!("Authorization: Bearer {}", server.token()))
        .arg(format!("{}{path_and_query}", server.base_url()))
        .output()
        .expect("curl");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn person(tag: &str, n: u32) -> CreateRequest {
    let id = format!("{tag}-{n:04}");
    let attributes: BTreeMap<String, AttrValue> = [
        ("externalId", id.clone()),
        ("userName", format!("Conf.User{n}.{tag}")),
        ("name.givenName", format!("Anna{n}")),
        ("name.familyName", "de Vries".to_owned()),
        ("displayName", format!("Anna{n} de Vries")),
        (
            "emails[type eq \"work\"].value",
            format!("anna{n}.devries@{tag}.example"),
        ),
        ("title", "Beleidsmedewerker".to_owned()),
        ("enterprise.department", "Burgerzaken".to_owned()),
        ("enterprise.employeeNumber", format!("{n}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), AttrValue::Text(v)))
    .collect();
    CreateRequest {
        person: id.clone(),
        attributes,
        enabled: true,
        correlation: Some(("externalId".to_owned(), AttrValue::Text(id))),
    }
}

fn fixture(tag: &str) -> Fixture {
    let t = tag.to_owned();
    Fixture {
        correlation: "externalId".to_owned(),
        unique: "userName".to_owned(),
        changeable: ["title".to_owned(), "enterprise.department".to_owned()],
        // Quotes in group names go through the displayName filter.
        permissions: [format!("{tag} \"A\""), format!("{tag} B\\")],
        missing_reference: "koppel-missing-0000".to_owned(),
        request: Box::new(move |n| person(&t, n)),
    }
}

macro_rules! server {
    ($test:literal) => {
        match Scim2Server::start_or_skip($test) {
            Some(s) => s,
            None => return,
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes() {
    let server = server!("conformance_suite_passes");
    let target = target(&server, "").await;
    let report = conformance::run_all(&target, &fixture("conf")).await;
    assert!(report.is_ok(), "{}", report.unwrap_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_with_put_updates() {
    let server = server!("conformance_suite_passes_with_put_updates");
    let target = target(&server, "update = \"put\"").await;
    let report = conformance::run_all(&target, &fixture("put")).await;
    assert!(report.is_ok(), "{}", report.unwrap_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_values_are_escaped_in_filters() {
    let server = server!("hostile_values_are_escaped_in_filters");
    let target = target(&server, "").await;
    let hostile = [
        "O\"Brien \\ x",
        "a\" or userName pr or \"",
        "x&y=z?#%20/ü",
        "tab\there",
    ];
    let mut refs = Vec::new();
    for (i, name) in hostile.iter().enumerate() {
        let request = CreateRequest {
            person: format!("h{i}"),
            attributes: BTreeMap::from([
                ("userName".to_owned(), text(name)),
                ("externalId".to_owned(), text(name)),
            ]),
            enabled: true,
            correlation: Some(("userName".to_owned(), text(name))),
        };
        let created = target.create(&request).await.expect("create");
        assert!(matches!(created, Created::New(_)), "{name:?}: {created:?}");
        // Correlating again finds exactly this one, so the filter matched the literal value.
        assert_eq!(
            target.create(&request).await.expect("again"),
            Created::Adopted(created.reference().to_owned()),
            "{name:?}"
        );
        refs.push(created.reference().to_owned());
    }
    // `a" or userName pr or "` as a filter injection would match every user.
    let found = target
        .correlate("userName", &text(hostile[1]))
        .await
        .expect("correlate");
    assert_eq!(found.map(|a| a.reference), Some(refs[1].clone()));
    assert!(
        target
            .is_unique("userName", "b\" or userName pr or \"", None)
            .await
            .expect("is_unique")
    );
    assert!(
        !target
            .is_unique("userName", &hostile[0].to_uppercase(), None)
            .await
            .expect("ci")
    );
    let account = target.get(&refs[2]).await.expect("get").expect("exists");
    assert_eq!(account.attributes.get("userName"), Some(&text(hostile[2])));
    // Hostile group names and references in URLs.
    let group = "g\" or displayName pr or \"/../x";
    target.grant(&refs[0], group).await.expect("grant");
    assert!(
        target
            .get(&refs[0])
            .await
            .expect("get")
            .expect("exists")
            .permissions
            .contains(group)
    );
    assert_eq!(target.get("../Groups").await.expect("get ../Groups"), None);
    assert_eq!(target.get("a/b?c#d").await.expect("get path chars"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_through_more_users_than_page_size() {
    let server = server!("lists_page_through_more_users_than_page_size");
    let target = target(&server, "page_size = 7\nconcurrency = 4").await;
    let ops: Vec<Op> = (0..45).map(|n| Op::Create(person("page", n))).collect();
    let results = target.apply(&ops).await;
    let refs: Vec<String> = results
        .iter()
        .map(|r| match r {
            Ok(Done::Created(Created::New(r))) => r.clone(),
            other => panic!("create gave {other:?}"),
        })
        .collect();
    for (i, r) in refs.iter().enumerate().take(10) {
        target
            .grant(r, &format!("page group {}", i % 3))
            .await
            .expect("grant");
    }
    for n in 0..12 {
        target
            .grant(&refs[0], &format!("extra group {n}"))
            .await
            .expect("grant");
    }
    let before = target.request_count();
    let accounts = target.list_accounts().await.expect("list");
    assert_eq!(accounts.len(), 45);
    // 45 users in pages of 7 (7 requests) and 15 groups in pages of 7 (3 requests).
    assert_eq!(target.request_count() - before, 7 + 3);
    let mut listed: Vec<&str> = accounts.iter().map(|a| a.reference.as_str()).collect();
    listed.sort();
    let mut want: Vec<&str> = refs.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(listed, want);
    let first = accounts
        .iter()
        .find(|a| a.reference == refs[0])
        .expect("first");
    assert_eq!(first.permissions.len(), 13, "{:?}", first.permissions);
    assert_eq!(target.list_permissions().await.expect("perms").len(), 15);
    // Results come back in input order.
    for (n, r) in refs.iter().enumerate() {
        let a = accounts.iter().find(|a| &a.reference == r).expect("listed");
        assert_eq!(
            a.attributes.get("externalId"),
            Some(&text(&format!("page-{n:04}")))
        );
    }
}

async fn patch_and_put(update: &str) {
    let server = Scim2Server::start().expect("scim2-server");
    let target = target(&server, &format!("update = {update:?}")).await;
    let reference = target
        .create(&person("upd", 1))
        .await
        .expect("create")
        .reference()
        .to_owned();
    let changes = BTreeMap::from([
        ("title".to_owned(), text("Teamleider")),
        ("name.givenName".to_owned(), AttrValue::Null),
        (
            "emails[type eq \"work\"].value".to_owned(),
            text("new@upd.example"),
        ),
        (
            "phoneNumbers[type eq \"mobile\"].value".to_owned(),
            text("+31 6 1234 5678"),
        ),
        ("enterprise.manager.value".to_owned(), text("mgr-1")),
        ("enterprise.department".to_owned(), AttrValue::Null),
    ]);
    target.update(&reference, &changes).await.expect("update");
    let raw = raw_get(&server, &format!("/Users/{reference}"));
    assert_eq!(raw["title"], "Teamleider");
    assert!(raw["name"].get("givenName").is_none(), "{raw}");
    assert_eq!(raw["name"]["familyName"], "de Vries");
    let emails = raw["emails"].as_array().expect("emails");
    assert_eq!(emails.len(), 1, "{raw}");
    assert_eq!(emails[0]["value"], "new@upd.example");
    assert_eq!(raw["phoneNumbers"][0]["value"], "+31 6 1234 5678");
    let ent = &raw["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"];
    assert_eq!(ent["manager"]["value"], "mgr-1");
    assert!(ent.get("department").is_none(), "{raw}");
    assert_eq!(ent["employeeNumber"], "1");
    // Read back through the connector under the same names.
    let account = target.get(&reference).await.expect("get").expect("exists");
    for (k, v) in &changes {
        assert_eq!(
            account.attributes.get(k).cloned().unwrap_or_default(),
            *v,
            "{k}"
        );
    }
    // Clearing the work e-mail removes the element.
    let clear = BTreeMap::from([("emails[type eq \"work\"].value".to_owned(), AttrValue::Null)]);
    target.update(&reference, &clear).await.expect("clear");
    assert!(
        raw_get(&server, &format!("/Users/{reference}"))
            .get("emails")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_updates_only_what_changed() {
    if Scim2Server::start_or_skip("patch_updates_only_what_changed").is_none() {
        return;
    }
    patch_and_put("patch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_updates_only_what_changed() {
    if Scim2Server::start_or_skip("put_updates_only_what_changed").is_none() {
        return;
    }
    patch_and_put("put").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_etag_is_reread_once() {
    let server = server!("stale_etag_is_reread_once");
    let a = target(&server, "").await;
    let b = target(&server, "").await;
    let reference = a
        .create(&person("etag", 1))
        .await
        .expect("create")
        .reference()
        .to_owned();
    // b changes the user behind a's back, so a's cached ETag is stale: 412, re-read, retry.
    b.update(
        &reference,
        &BTreeMap::from([("title".to_owned(), text("B"))]),
    )
    .await
    .expect("b");
    a.update(
        &reference,
        &BTreeMap::from([("title".to_owned(), text("A"))]),
    )
    .await
    .expect("a after 412");
    assert_eq!(
        raw_get(&server, &format!("/Users/{reference}"))["title"],
        "A"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_deletes_or_disables_by_config() {
    let server = server!("delete_deletes_or_disables_by_config");
    let deleting = target(&server, "").await;
    let disabling = target(&server, "delete = \"disable\"").await;
    let one = deleting
        .create(&person("del", 1))
        .await
        .expect("create")
        .reference()
        .to_owned();
    let two = deleting
        .create(&person("del", 2))
        .await
        .expect("create")
        .reference()
        .to_owned();
    deleting.delete(&one).await.expect("delete");
    assert_eq!(raw_get(&server, &format!("/Users/{one}"))["status"], "404");
    deleting.delete(&one).await.expect("delete again");
    disabling.delete(&two).await.expect("disable");
    let raw = raw_get(&server, &format!("/Users/{two}"));
    assert_eq!(raw["active"], false, "{raw}");
    disabling.delete(&two).await.expect("disable again");
    disabling
        .delete("koppel-missing")
        .await
        .expect("disable missing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_membership_is_idempotent() {
    let server = server!("group_membership_is_idempotent");
    let target = target(&server, "concurrency = 6").await;
    let refs: Vec<String> = futures_util::future::join_all((0..6).map(|n| {
        let t = &target;
        async move {
            t.create(&person("grp", n))
                .await
                .expect("create")
                .reference()
                .to_owned()
        }
    }))
    .await;
    // Concurrent grants of one new group make it once.
    let ops: Vec<Op> = refs
        .iter()
        .flat_map(|r| {
            [0, 1].map(|_| Op::Grant {
                reference: r.clone(),
                permission: "Team Zuid".to_owned(),
            })
        })
        .collect();
    for r in target.apply(&ops).await {
        assert_eq!(r, Ok(Done::Ok));
    }
    let groups = raw_get(&server, "/Groups");
    assert_eq!(groups["totalResults"], 1, "{groups}");
    let members = groups["Resources"][0]["members"]
        .as_array()
        .expect("members")
        .len();
    assert_eq!(members, 6, "{groups}");
    // Revoking a membership twice, and one never granted, succeeds.
    target.revoke(&refs[0], "Team Zuid").await.expect("revoke");
    target
        .revoke(&refs[0], "Team Zuid")
        .await
        .expect("revoke again");
    target
        .revoke(&refs[0], "Team Noord")
        .await
        .expect("revoke unknown group");
    let account = target.get(&refs[0]).await.expect("get").expect("exists");
    assert!(account.permissions.is_empty(), "{:?}", account.permissions);
    assert!(
        target
            .get(&refs[1])
            .await
            .expect("get")
            .expect("exists")
            .permissions
            .contains("Team Zuid")
    );
    // Groups are found case-insensitively, as displayName compares.
    target
        .grant(&refs[0], "team zuid")
        .await
        .expect("grant other case");
    assert_eq!(raw_get(&server, "/Groups")["totalResults"], 1);
    match target.grant("koppel-missing", "Team Zuid").await {
        Err(TargetError::NoSuchAccount { .. }) => {}
        other => panic!("grant to a missing user gave {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enterprise_extension_round_trips() {
    let server = server!("enterprise_extension_round_trips");
    let target = target(&server, "").await;
    let mut request = person("ent", 7);
    request
        .attributes
        .insert("enterprise.manager.value".to_owned(), text("boss-id"));
    let reference = target
        .create(&request)
        .await
        .expect("create")
        .reference()
        .to_owned();
    let raw = raw_get(&server, &format!("/Users/{reference}"));
    let urn = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    assert!(
        raw["schemas"]
            .as_array()
            .expect("schemas")
            .contains(&json!(urn)),
        "{raw}"
    );
    assert_eq!(raw[urn]["employeeNumber"], "7");
    assert_eq!(raw[urn]["department"], "Burgerzaken");
    assert_eq!(raw[urn]["manager"]["value"], "boss-id");
    let account = target.get(&reference).await.expect("get").expect("exists");
    for (k, v) in &request.attributes {
        assert_eq!(account.attributes.get(k), Some(v), "{k}");
    }
    // Correlating on an extension attribute goes through its URN path in the filter.
    let found = target
        .correlate("enterprise.employeeNumber", &text("7"))
        .await
        .expect("correlate");
    assert_eq!(found.map(|a| a.reference), Some(reference.clone()));
    // The full-URN spelling is refused with the name koppel reads back.
    let e = target
        .update(
            &reference,
            &BTreeMap::from([(format!("{urn}:department"), text("x"))]),
        )
        .await
        .expect_err("urn spelling");
    assert!(
        matches!(e, TargetError::Config { .. }) && e.to_string().contains("enterprise.department"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_unauthorized() {
    let server = server!("wrong_token_is_unauthorized");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token");
    std::fs::write(&path, "not-the-token-s3cret\n").expect("write");
    let toml = format!(
        "base_url = {:?}\ntoken_file = {:?}",
        server.base_url(),
        path.display().to_string()
    );
    let config =
        ScimConfig::from_table("peer", &toml::from_str(&toml).expect("toml")).expect("config");
    let e = connect("peer", config).await.err().expect("refused");
    assert!(
        matches!(e, ScimError::Unauthorized { status: 401, .. }),
        "{e}"
    );
    assert!(!e.to_string().contains("s3cret"), "{e}");
    let t: TargetError = e.into();
    assert!(t.is_unavailable(), "{t}");
    // Nobody listening: unreachable, after the configured retries.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let toml = format!(
        "base_url = \"http://127.0.0.1:{port}/scim\"\ntoken_file = {:?}\nmax_retries = 1\nretry_backoff_ms = 10",
        path.display().to_string()
    );
    let config =
        ScimConfig::from_table("peer", &toml::from_str(&toml).expect("toml")).expect("config");
    let e = connect("peer", config).await.err().expect("unreachable");
    assert!(matches!(e, ScimError::Unreachable { .. }), "{e}");
    // A missing token file names the file, and is its own kind.
    let toml = format!(
        "base_url = {:?}\ntoken_file = \"/nonexistent/koppel-token\"",
        server.base_url()
    );
    let config =
        ScimConfig::from_table("peer", &toml::from_str(&toml).expect("toml")).expect("config");
    let e = connect("peer", config).await.err().expect("no secret");
    assert!(
        matches!(e, ScimError::SecretMissing { .. })
            && e.to_string().contains("/nonexistent/koppel-token"),
        "{e}"
    );
}

/// `cargo test -p koppel-scim --release --test scim2_server -- --ignored --nocapture bench`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by hand"]
async fn bench_10k_creates_into_scim2_server() {
    let server = server!("bench_10k_creates_into_scim2_server");
    let target = target(&server, "concurrency = 8").await;
    let n: u32 = std::env::var("KOPPEL_SCIM_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let ops: Vec<Op> = (0..n).map(|i| Op::Create(person("bench", i))).collect();
    let started = Instant::now();
    let mut failures = 0;
    for batch in ops.chunks(500) {
        failures += target
            .apply(batch)
            .await
            .iter()
            .filter(|r| r.is_err())
            .count();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "scim2-server: {n} creates (correlating on externalId) in {secs:.1} s = {:.0} creates/s, {} requests, {failures} failures",
        f64::from(n) / secs,
        target.request_count()
    );
    assert_eq!(failures, 0);
}
