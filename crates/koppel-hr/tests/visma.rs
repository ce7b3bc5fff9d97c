//! The `visma` source and write-back target against the Youforce stand-in: paging, the spike
//! arrest, tokens, scopes, credentials, mapping of a synthetic tenant, write-back idempotence.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use koppel_connectors::conformance;
use koppel_connectors::target::{CreateRequest, Created, Target, TargetError};
use koppel_core::{AttrValue, Date, NamingConvention};
use koppel_hr::visma::{VismaSource, VismaSourceConfig, VismaTarget, VismaTargetConfig};
use koppel_hr_fixture::{VismaFixture, VismaOptions, tenant};

fn today() -> Date {
    "2026-11-23".parse().unwrap()
}

struct Setup {
    fixture: VismaFixture,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(persons: usize, options: VismaOptions) -> Setup {
        let org = tenant::synthetic(persons, 7, today());
        let fixture = VismaFixture::start(options, tenant::visma(&org, today())).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "fixture-secret\n").unwrap();
        Setup { fixture, dir }
    }

    fn table(&self, extra: &str) -> toml::Table {
        let url = self.fixture.url();
        toml::from_str(&format!(
            "base_url = '{url}'\ntoken_url = '{url}/connect/token'\nclient_id = 'koppel'\n\
             client_secret_file = 'secret'\ntenant_id = '1234567'\n{extra}"
        ))
        .unwrap()
    }

    fn source(&self, extra: &str) -> VismaSource {
        let (c, api) =
            VismaSourceConfig::from_table("p", &self.table(extra), self.dir.path()).unwrap();
        VismaSource::new(c, api, today()).unwrap()
    }

    fn target(&self, extra: &str) -> VismaTarget {
        let api = VismaTargetConfig::from_table("t", &self.table(extra), self.dir.path()).unwrap();
        VismaTarget::new("youforce", api).unwrap()
    }
}

/// Fast test settings: the fixture's spike arrest at 20 calls per second.
fn fast() -> VismaOptions {
    VismaOptions {
        rate_limit: 20,
        window: Duration::from_secs(1),
        ..VismaOptions::default()
    }
}

const FAST_CLIENT: &str = "[http]\nrate_limit_per_minute = 1200\n";

#[tokio::test]
async fn reads_a_tenant_page_by_page_and_maps_it() {
    let s = Setup::new(120, fast());
    let source = s.source(&format!("take = 25\n{FAST_CLIENT}"));
    let fetched = source.fetch_raw().await.unwrap();
    let snap = &fetched.snapshot;
    let org = tenant::synthetic(120, 7, today());
    assert_eq!(snap.persons.len(), org.persons.len());
    assert_eq!(snap.departments.len(), org.departments.len());

    // Every person as the organisation has them, under the default mapping.
    for (want, got) in org.persons.iter().zip(&snap.persons) {
        assert_eq!(got.external_id, want.external_id);
        assert_eq!(got.name.given, want.name.given);
        assert_eq!(got.name.family, want.name.family);
        assert_eq!(got.name.family_prefix, want.name.family_prefix);
        assert_eq!(got.name.partner, want.name.partner);
        assert_eq!(got.name.partner_prefix, want.name.partner_prefix);
        assert_eq!(got.name.initials, want.name.initials);
        assert_eq!(
            got.name.convention, want.name.convention,
            "{}",
            want.external_id
        );
        assert!(
            !got.name.nickname.ends_with("-oud"),
            "an old version counted: {}",
            got.name.nickname
        );
        assert_eq!(got.email, want.email);
        assert_eq!(got.phone, want.phone);
        assert_eq!(got.contracts.len(), want.contracts.len());
        for (wc, gc) in want.contracts.iter().zip(&got.contracts) {
            let code = wc.id.rsplit_once('-').unwrap().1;
            assert_eq!(gc.id, format!("{}_{code}", want.external_id));
            assert_eq!(
                (gc.start, gc.end),
                (wc.start, wc.end),
                "9999-12-31 is an open end"
            );
            assert_eq!(gc.title.code, wc.title.code);
            assert_eq!(gc.title.name, wc.title.name);
            assert_eq!(gc.hours_per_week, wc.hours_per_week);
            assert_eq!(gc.employment_type, wc.employment_type);
            // Departments by unit id (the default), mapped back by name.
            let dept = &snap.departments[&gc.department];
            assert_eq!(dept.name, org.departments[&wc.department].name);
        }
    }
    // The tree and the managers survive the id mapping.
    for d in snap.departments.values() {
        let original = org.departments.values().find(|o| o.name == d.name).unwrap();
        assert_eq!(d.manager, original.manager);
        if original.parent.is_empty() {
            assert!(d.parent.is_empty());
        } else {
            assert_eq!(
                snap.departments[&d.parent].name,
                org.departments[&original.parent].name
            );
        }
    }

    // Paging: followed nextLink by its query on the fixture, never the production host.
    let log = s.fixture.state.log.all();
    let pages: Vec<_> = log
        .iter()
        .filter(|l| l.path() == "/iam/v1.0/persons")
        .collect();
    let records = tenant::visma(&org, today()).persons.len();
    assert_eq!(pages.len(), records.div_ceil(25));
    assert_eq!(pages[0].uri, "/iam/v1.0/persons?take=25");
    assert!(
        pages[1].uri.contains("take=25&nextToken="),
        "{}",
        pages[1].uri
    );
    assert!(
        log.iter()
            .all(|l| l.path() == "/connect/token" || l.auth_scheme.as_deref() == Some("Bearer"))
    );
    assert_eq!(
        source.client().token_fetches(),
        1,
        "one token for the whole read"
    );
    assert_eq!(
        s.fixture.state.stats().rate_limited,
        0,
        "paced under the limit"
    );
    assert_eq!(source.client().counts().requests, (log.len() - 1) as u64);
}

#[tokio::test]
async fn rate_limits_are_waited_out_and_never_fail_the_read() {
    // The fixture's spike arrest at 4 per second; the client does not pace at all.
    let s = Setup::new(
        40,
        VismaOptions {
            rate_limit: 4,
            window: Duration::from_secs(1),
            ..VismaOptions::default()
        },
    );
    let source = s.source("take = 10\n[http]\nrate_limit_per_minute = 0\n");
    let fetched = source.fetch_raw().await.unwrap();
    assert_eq!(fetched.snapshot.persons.len(), 40);
    let counts = source.client().counts();
    let fixture = s.fixture.state.stats();
    assert!(fixture.rate_limited > 0, "the burst met the limit");
    assert_eq!(counts.rate_limited, fixture.rate_limited);
    assert_eq!(counts.retries, fixture.rate_limited);
    assert!(
        counts.waited_ms >= 1000 * fixture.rate_limited,
        "Retry-After honoured"
    );
}

#[tokio::test]
async fn tokens_are_cached_renewed_when_they_expire_and_after_a_401() {
    let s = Setup::new(
        10,
        VismaOptions {
            token_lifetime: Duration::from_secs(2),
            ..fast()
        },
    );
    let source = s.source(FAST_CLIENT);
    source.fetch_raw().await.unwrap();
    source.fetch_raw().await.unwrap();
    assert_eq!(source.client().token_fetches(), 1, "cached across reads");
    // Renewed a fifth of its life early: after 1.6 s of 2.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    source.fetch_raw().await.unwrap();
    assert_eq!(
        source.client().token_fetches(),
        2,
        "renewed before it expired"
    );
    // A revoked token: one 401, a new token, and the read goes on.
    s.fixture.state.revoke_tokens();
    source.fetch_raw().await.unwrap();
    assert_eq!(source.client().token_fetches(), 3);
    assert_eq!(s.fixture.state.stats().token_requests, 3);
}

#[tokio::test]
async fn missing_scopes_and_bad_credentials_are_named() {
    // The token names its scopes: refused before any read.
    let s = Setup::new(
        5,
        VismaOptions {
            scopes: vec![],
            ..fast()
        },
    );
    let e = s
        .source(FAST_CLIENT)
        .fetch_raw()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Youforce-IAM:Get_Basic"), "{e}");
    assert_eq!(s.fixture.state.stats().api_requests, 0);
    // A token that does not name them: the API's 403 is turned into the scope's name.
    let s = Setup::new(
        5,
        VismaOptions {
            scopes: vec![],
            scope_in_token: false,
            ..fast()
        },
    );
    let e = s
        .source(FAST_CLIENT)
        .fetch_raw()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("lacks the scope Youforce-IAM:Get_Basic"), "{e}");

    let s = Setup::new(
        5,
        VismaOptions {
            client_secret: "other".into(),
            ..fast()
        },
    );
    let e = s
        .source(FAST_CLIENT)
        .fetch_raw()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("refused the credentials") && e.contains("client_id \"koppel\""),
        "{e}"
    );
    assert!(
        e.contains("client_secret_file secret") && !e.contains("fixture-secret"),
        "{e}"
    );
    let s = Setup::new(
        5,
        VismaOptions {
            tenant_id: "999".into(),
            ..fast()
        },
    );
    let e = s
        .source(FAST_CLIENT)
        .fetch_raw()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("tenant_id \"1234567\""), "{e}");

    // A mapping that reads a field the tenant does not have.
    let s = Setup::new(5, fast());
    let e = s
        .source(&format!(
            "{FAST_CLIENT}[fields.person]\nexternal_id = 'employeeNumber'\n"
        ))
        .fetch_raw()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no field \"employeeNumber\"") && e.contains("fields.person.external_id"),
        "{e}"
    );
    assert!(e.contains("personCode"), "lists the fields it has: {e}");
}

#[tokio::test]
async fn assignments_instead_of_employments() {
    let s = Setup::new(20, fast());
    let fetched = s
        .source(&format!("contracts = 'assignments'\n{FAST_CLIENT}"))
        .fetch_raw()
        .await
        .unwrap();
    let p = &fetched.snapshot.persons[0];
    assert!(!p.contracts.is_empty());
    assert!(
        p.contracts[0]
            .id
            .starts_with(&format!("{}_", p.external_id))
    );
    assert!(
        s.fixture
            .state
            .log
            .all()
            .iter()
            .any(|l| l.path() == "/iam/v1.0/assignments")
    );
}

fn identity_patches(s: &Setup) -> Vec<(String, serde_json::Value)> {
    s.fixture
        .state
        .log
        .with_method("PATCH")
        .into_iter()
        .map(|l| (l.uri, l.body.unwrap_or_default()))
        .collect()
}

fn request(person: &str, identity: Option<&str>) -> CreateRequest {
    let mut attributes =
        BTreeMap::from([("employeeId".to_owned(), AttrValue::Text(person.into()))]);
    if let Some(i) = identity {
        attributes.insert("identity".into(), AttrValue::Text(i.into()));
    }
    CreateRequest {
        person: person.into(),
        attributes,
        enabled: true,
        correlation: Some(("employeeId".into(), AttrValue::Text(person.into()))),
    }
}

#[tokio::test]
async fn write_back_patches_the_identity_once() {
    let s = Setup::new(5, fast());
    let target = s.target(FAST_CLIENT);
    let id = tenant::synthetic(5, 7, today()).persons[0]
        .external_id
        .clone();

    let created = target
        .create(&request(&id, Some("anna.devries@koppeldam.nl")))
        .await
        .unwrap();
    assert_eq!(created, Created::Adopted(id.clone()));
    assert_eq!(
        identity_patches(&s),
        vec![(
            format!("/iam/v1.0/users(employeeId={id})/identity"),
            serde_json::json!({ "id": "anna.devries@koppeldam.nl" })
        )]
    );
    // The value is there now: adopting again, or updating to it, writes nothing.
    target
        .create(&request(&id, Some("anna.devries@koppeldam.nl")))
        .await
        .unwrap();
    let same = BTreeMap::from([(
        "identity".to_owned(),
        AttrValue::Text("anna.devries@koppeldam.nl".into()),
    )]);
    target.update(&id, &same).await.unwrap();
    // An identity cannot be emptied: a leaver's stays.
    let cleared = BTreeMap::from([("identity".to_owned(), AttrValue::Null)]);
    target.update(&id, &cleared).await.unwrap();
    target.set_enabled(&id, false).await.unwrap();
    target.delete(&id).await.unwrap();
    assert_eq!(identity_patches(&s).len(), 1);
    let account = target.get(&id).await.unwrap().unwrap();
    assert_eq!(
        account.attributes["identity"],
        AttrValue::Text("anna.devries@koppeldam.nl".into())
    );

    // A changed value is written.
    let changed = BTreeMap::from([(
        "identity".to_owned(),
        AttrValue::Text("anna.jansen@koppeldam.nl".into()),
    )]);
    target.update(&id, &changed).await.unwrap();
    assert_eq!(identity_patches(&s).len(), 2);

    // No user for the employee: refused, nothing written.
    let e = target
        .create(&request("no-such-employee", Some("x@y")))
        .await
        .unwrap_err();
    assert!(
        matches!(e, TargetError::Rejected { .. })
            && e.to_string()
                .contains("no user for employee no-such-employee"),
        "{e}"
    );
    let e = target
        .update("no-such-employee", &changed)
        .await
        .unwrap_err();
    assert!(matches!(e, TargetError::NoSuchAccount { .. }), "{e}");
    assert_eq!(identity_patches(&s).len(), 2);
}

#[tokio::test]
async fn write_back_without_update_identity_names_the_scope() {
    let s = Setup::new(
        3,
        VismaOptions {
            scopes: vec!["Youforce-IAM:Get_Basic".into()],
            ..fast()
        },
    );
    let target = s.target(FAST_CLIENT);
    let id = tenant::synthetic(3, 7, today()).persons[0]
        .external_id
        .clone();
    let e = target.create(&request(&id, Some("a@b"))).await.unwrap_err();
    assert!(
        e.is_unavailable(),
        "nothing happened: the run resumes later: {e}"
    );
    assert!(
        e.to_string().contains("Youforce-IAM:Update_Identity"),
        "{e}"
    );
    assert!(identity_patches(&s).is_empty());
}

#[tokio::test]
async fn conformance_checks_that_apply_to_a_write_back_target() {
    // A write-back target adopts HR's users and never creates or deletes one, so the checks
    // that create accounts do not apply; these two do.
    let s = Setup::new(3, fast());
    let target = s.target(FAST_CLIENT);
    let mut fixture = conformance::Fixture::generic("conf");
    fixture.correlation = "employeeId".into();
    fixture.changeable = ["identity".into(), "identity".into()];
    for name in [
        "delete_missing_succeeds",
        "missing_reference_is_no_such_account",
    ] {
        let check = conformance::CHECKS.iter().find(|c| c.name == name).unwrap();
        conformance::run_check(&target, &fixture, check)
            .await
            .unwrap();
    }
}

#[test]
fn naming_convention_codes_of_both_hr_cores() {
    let c = VismaSourceConfig::from_table(
        "p",
        &toml::from_str("client_id = 'k'\nclient_secret_env = 'S'\ntenant_id = 't'").unwrap(),
        Path::new("."),
    )
    .unwrap()
    .0
    .conventions();
    use NamingConvention::*;
    for (code, want) in [
        ("E", B),
        ("P", P),
        ("B", PB),
        ("C", BP),
        ("D", BP),
        ("0", PB),
        ("1", B),
        ("2", P),
        ("3", BP),
        ("4", B),
    ] {
        assert_eq!(c[code], want, "{code}");
    }
}
