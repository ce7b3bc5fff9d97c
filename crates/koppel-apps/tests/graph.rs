//! The `graph` target against the Microsoft Graph stand-in: the conformance suite with and
//! without JSON batching, the exact requests Graph documents, throttling, paging, errors.

use std::collections::BTreeMap;
use std::time::Duration;

use koppel_apps::graph::{self, GraphConfig, GraphTarget};
use koppel_apps_fixture::{GraphFixture, GraphOptions};
use koppel_connectors::conformance::{self, Fixture};
use koppel_connectors::target::{CreateRequest, Created, Done, Op, Target, TargetError};
use koppel_core::AttrValue;

fn config(fixture: &GraphFixture, extra: &str) -> GraphConfig {
    let secret = std::env::temp_dir().join(format!("koppel-graph-test-{}", std::process::id()));
    std::fs::write(&secret, "fixture-secret\n").unwrap();
    let text = format!(
        "tenant = 'contoso.onmicrosoft.com'\nclient_id = '11111111-2222-3333-4444-555555555555'\n\
         client_secret_file = '{s}'\nlogin_url = '{u}'\ngraph_url = '{u}'\n\
         max_retry_after_seconds = 30\n{extra}",
        s = secret.display(),
        u = fixture.url()
    );
    GraphConfig::from_table("entra", &toml::from_str(&text).unwrap()).unwrap()
}

async fn target(fixture: &GraphFixture, extra: &str) -> GraphTarget {
    graph::connect("entra", config(fixture, extra))
        .await
        .unwrap()
}

fn text(s: &str) -> AttrValue {
    AttrValue::Text(s.to_owned())
}

fn request(tag: &str, n: u32) -> CreateRequest {
    let id = format!("{tag}{n:05}");
    let attributes: BTreeMap<String, AttrValue> = [
        ("employeeId", text(&id)),
        (
            "userPrincipalName",
            text(&format!("anna{n}.{tag}@contoso.example")),
        ),
        ("mailNickname", text(&format!("anna{n}{tag}"))),
        ("displayName", text(&format!("Anna{n} de Vries"))),
        ("givenName", text(&format!("Anna{n}"))),
        ("surname", text("de Vries")),
        ("jobTitle", text("Beleidsmedewerker")),
        ("department", text("Burgerzaken")),
        ("officeLocation", text("Stadhuis")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    CreateRequest {
        person: id.clone(),
        attributes,
        enabled: true,
        correlation: Some(("employeeId".to_owned(), text(&id))),
    }
}

fn suite_fixture(tag: &'static str) -> Fixture {
    Fixture {
        correlation: "employeeId".into(),
        unique: "userPrincipalName".into(),
        changeable: ["jobTitle".into(), "department".into()],
        permissions: [format!("{tag}-group-a"), format!("{tag}-group-b")],
        missing_reference: "00000000-0000-4000-8000-ffffffffffff".into(),
        request: Box::new(move |n| request(tag, n)),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_with_batching() {
    let fixture = GraphFixture::start(GraphOptions::default()).unwrap();
    let t = target(&fixture, "").await;
    let report = conformance::run_all(&t, &suite_fixture("batch")).await;
    assert!(report.is_ok(), "{}", report.unwrap_err());
    assert!(fixture.state.stats().batches > 0, "apply used no $batch");
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_without_batching() {
    let fixture = GraphFixture::start(GraphOptions::default()).unwrap();
    let t = target(&fixture, "batch = false").await;
    let report = conformance::run_all(&t, &suite_fixture("single")).await;
    assert!(report.is_ok(), "{}", report.unwrap_err());
    assert_eq!(fixture.state.stats().batches, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_follow_graphs_documentation() {
    let fixture = GraphFixture::start(GraphOptions::default()).unwrap();
    let t = target(&fixture, "batch = false").await;
    // The token request: client credentials with the .default scope, secret never logged.
    let token = &fixture.state.log.all()[0];
    assert_eq!(token.uri, "/contoso.onmicrosoft.com/oauth2/v2.0/token");
    let form = token.body.clone().unwrap();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["scope"], "https://graph.microsoft.com/.default");
    assert_eq!(form["client_secret"], "(redacted)");

    // An employeeId with a quote: escaped as an OData literal, sent as an advanced query.
    let mut r = request("doc", 1);
    r.attributes.insert("employeeId".into(), text("o'brien-1"));
    r.correlation = Some(("employeeId".into(), text("o'brien-1")));
    r.attributes.insert("manager".into(), AttrValue::Null);
    fixture.state.log.clear();
    let id = match t.create(&r).await.unwrap() {
        Created::New(id) => id,
        other => panic!("{other:?}"),
    };
    let log = fixture.state.log.all();
    let lookup = &log[0];
    assert!(
        lookup.uri.contains("%24count=true") || lookup.uri.contains("$count=true"),
        "{}",
        lookup.uri
    );
    assert!(lookup.uri.contains("o%27%27brien-1"), "{}", lookup.uri);
    let post = log.iter().find(|l| l.method == "POST").unwrap();
    assert_eq!(post.path(), "/v1.0/users");
    let body = post.body.clone().unwrap();
    assert_eq!(body["accountEnabled"], true);
    assert_eq!(
        body["passwordProfile"]["forceChangePasswordNextSignIn"],
        true
    );
    assert_eq!(body["passwordProfile"]["password"], "(redacted)");
    assert!(body.get("manager").is_none());
    let stored = fixture.state.user(&id).unwrap();
    assert_eq!(stored["employeeId"], "o'brien-1");

    // An update PATCHes only what changed.
    fixture.state.log.clear();
    t.update(
        &id,
        &BTreeMap::from([("jobTitle".into(), text("Teamleider"))]),
    )
    .await
    .unwrap();
    let log = fixture.state.log.all();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].method, "PATCH");
    assert_eq!(
        log[0].body.clone().unwrap(),
        serde_json::json!({"jobTitle": "Teamleider"})
    );

    // The manager by userPrincipalName, set by $ref and read back.
    let boss = match t.create(&request("doc", 2)).await.unwrap() {
        Created::New(id) => id,
        other => panic!("{other:?}"),
    };
    t.update(
        &id,
        &BTreeMap::from([("manager".into(), text("anna2.doc@contoso.example"))]),
    )
    .await
    .unwrap();
    assert_eq!(fixture.state.manager_of(&id), Some(boss.clone()));
    let account = t.get(&id).await.unwrap().unwrap();
    assert_eq!(
        account.attributes["manager"],
        text("anna2.doc@contoso.example")
    );
    t.update(&id, &BTreeMap::from([("manager".into(), AttrValue::Null)]))
        .await
        .unwrap();
    assert_eq!(fixture.state.manager_of(&id), None);

    // Delete is Graph's soft delete.
    t.delete(&id).await.unwrap();
    assert_eq!(fixture.state.deleted_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_can_mean_disable() {
    let fixture = GraphFixture::start(GraphOptions::default()).unwrap();
    let t = target(&fixture, "delete = 'disable'").await;
    let id = t
        .create(&request("dis", 1))
        .await
        .unwrap()
        .reference()
        .to_owned();
    t.delete(&id).await.unwrap();
    let user = fixture.state.user(&id).unwrap();
    assert_eq!(user["accountEnabled"], false);
    assert_eq!(fixture.state.deleted_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_user_principal_name_is_refused_with_graphs_message() {
    let fixture = GraphFixture::start(GraphOptions::default()).unwrap();
    let t = target(&fixture, "").await;
    t.create(&request("dup", 1)).await.unwrap();
    let mut other = request("dup", 2);
    other.attributes.insert(
        "userPrincipalName".into(),
        text("ANNA1.dup@contoso.example"),
    );
    let results = t.apply(&[Op::Create(other)]).await;
    match &results[0] {
        Err(TargetError::Rejected { message, .. }) => {
            assert!(
                message.contains("userPrincipalName already exists"),
                "{message}"
            );
            assert!(message.contains("Request_BadRequest"), "{message}");
        }
        r => panic!("{r:?}"),
    }
    assert!(
        !t.is_unique("userPrincipalName", "anna1.DUP@contoso.example", None)
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_follows_next_links() {
    let fixture = GraphFixture::start(GraphOptions::default()).unwrap();
    let t = target(&fixture, "page_size = 7").await;
    let ops: Vec<Op> = (0..30).map(|n| Op::Create(request("page", n))).collect();
    assert!(t.apply(&ops).await.iter().all(Result::is_ok));
    fixture.state.log.clear();
    let accounts = t.list_accounts().await.unwrap();
    assert_eq!(accounts.len(), 30);
    let pages = fixture
        .state
        .log
        .all()
        .iter()
        .filter(|l| l.path() == "/v1.0/users")
        .count();
    assert_eq!(pages, 5, "30 users in pages of 7");
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_waits_for_retry_after_and_loses_nothing() {
    let options = GraphOptions {
        write_quota: 30,
        write_window: Duration::from_secs(1),
        ..GraphOptions::default()
    };
    let fixture = GraphFixture::start(options).unwrap();
    let t = target(&fixture, "").await;
    let mut ops: Vec<Op> = (0..60).map(|n| Op::Create(request("thr", n))).collect();
    let results = t.apply(&ops).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let refs: Vec<String> = results
        .iter()
        .map(|r| match r {
            Ok(Done::Created(c)) => c.reference().to_owned(),
            r => panic!("{r:?}"),
        })
        .collect();
    ops = refs
        .iter()
        .map(|r| Op::Grant {
            reference: r.clone(),
            permission: "thr-all".into(),
        })
        .collect();
    let results = t.apply(&ops).await;
    assert!(results.iter().all(|r| *r == Ok(Done::Ok)), "{results:?}");
    assert!(
        fixture.state.stats().throttled > 0,
        "the quota never throttled"
    );
    assert_eq!(fixture.state.user_count(), 60);
    assert_eq!(fixture.state.members_of("thr-all").unwrap().len(), 60);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_secret_scope_and_tenant_are_named() {
    let fixture = GraphFixture::start(GraphOptions::default()).unwrap();
    let mut c = config(&fixture, "");
    c.tenant = "other.onmicrosoft.com".into();
    let e = graph::connect("entra", c).await.err().unwrap().to_string();
    assert!(e.contains("AADSTS90002"), "{e}");
    fixture.state.options.lock().unwrap().client_secret = "rotated".into();
    let e = graph::connect("entra", config(&fixture, ""))
        .await
        .err()
        .unwrap();
    let text = e.to_string();
    assert!(
        text.contains("invalid_client") && !text.contains("fixture-secret"),
        "{text}"
    );
    assert!(e.into_target_error("entra").is_unavailable());
}

#[test]
fn configuration_errors_name_the_key() {
    let table: toml::Table =
        toml::from_str("tenant = 'x'\nclient_id = 'y'\nclient_secret_env = 'Z'\npage_size = 5000")
            .unwrap();
    let e = GraphConfig::from_table("entra", &table)
        .unwrap_err()
        .to_string();
    assert!(e.contains("targets.entra.connection.page_size"), "{e}");
    let table: toml::Table =
        toml::from_str("tenant = 'x'\nclient_id = 'y'\nclient_secret = 'plain'").unwrap();
    let e = GraphConfig::from_table("entra", &table)
        .unwrap_err()
        .to_string();
    assert!(e.contains("client_secret"), "{e}");
    let table: toml::Table = toml::from_str("tenant = 'x'\nclient_id = 'y'").unwrap();
    let e = GraphConfig::from_table("entra", &table)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no client_secret_env or client_secret_file"),
        "{e}"
    );
}
