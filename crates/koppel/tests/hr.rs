//! End to end: `koppel apply` from a Youforce or AFAS fixture tenant into the built-in
//! directory, with the generated values written back into the fixture, exactly the documented
//! PATCH/PUT bodies, once; a second run with no change writes nothing back; a tenant that
//! loses many people holds the run.

mod common;

use std::time::Duration;

use common::{json, ok, run, text};
use koppel_hr_fixture::{AfasFixture, AfasOptions, VismaFixture, VismaOptions, tenant};
use serde_json::{Value, json};

const NOW: &str = "2026-11-23";

fn today() -> koppel_core::Date {
    NOW.parse().unwrap()
}

/// The rules and the directory of both examples, with the write-back target `hr`.
fn config(source: &str, hr_target: &str) -> String {
    format!(
        r#"version = 1
[settings]
required_fields = ["name.family"]

{source}

[guards]
removed = "10%"

[[targets]]
name = "directory"
kind = "directory"
correlation = "employee_id"
lifecycle = {{ create_days_before = 14 }}

[targets.attributes]
employee_id = "person.external_id"
display_name = "display_name(person)"

[targets.generators.username]
candidates = ["ascii(lower(compact(person.name.given.substring(0, 1) + person.name.family_prefix + person.name.family)))"]
fields = {{ username = "value", upn = "value + '@koppeldam.nl'" }}

[targets.generators.mail]
candidates = ["ascii(lower(compact(person.name.given + '.' + person.name.family_prefix + person.name.family)))"]
fields = {{ mail = "value + '@koppeldam.nl'" }}

{hr_target}

[[rules]]
id = "medewerkers"
accounts = ["directory", "hr"]
"#
    )
}

fn actions(plan: &Value, target: &str, kind: &str) -> Vec<Value> {
    plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["target"] == target && a["kind"].as_str().unwrap().eq_ignore_ascii_case(kind))
        .cloned()
        .collect()
}

fn visma_config(url: &str) -> String {
    let connection = format!(
        "base_url = '{url}'\ntoken_url = '{url}/connect/token'\nclient_id = 'koppel'\n\
         client_secret_file = 'visma-secret'\ntenant_id = '1234567'\n\
         http = {{ rate_limit_per_minute = 3000 }}"
    );
    config(
        &format!(
            "[[sources]]\nkind = \"visma\"\n[sources.connection]\n{connection}\ndepartment_code = \"short_name\"\ntake = 20"
        ),
        &format!(
            "[[targets]]\nname = \"hr\"\nkind = \"visma\"\ncorrelation = \"employeeId\"\n\
             lifecycle = {{ create_days_before = 14 }}\n\
             [targets.attributes]\nemployeeId = \"person.external_id\"\nidentity = \"accounts.directory.upn\"\n\
             [targets.connection]\n{connection}"
        ),
    )
}

#[test]
fn visma_apply_writes_each_identity_back_once_and_a_shrunk_tenant_holds() {
    let org = tenant::synthetic(60, 5, today());
    let fixture = VismaFixture::start(
        VismaOptions {
            rate_limit: 50,
            window: Duration::from_secs(1),
            ..VismaOptions::default()
        },
        tenant::visma(&org, today()),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("visma-secret"), "fixture-secret\n").unwrap();
    std::fs::write(d.join("koppel.toml"), visma_config(&fixture.url())).unwrap();
    ok(d, &["validate"]);

    // The plan says what will be written back, and shows it like any action.
    let plan = json(d, &["plan", "--now", NOW, "--output", "json"]);
    let creates = actions(&plan, "hr", "create");
    assert!(creates.len() > 40, "{}", creates.len());
    // One employee already has the identity koppel will give them: it is not written again.
    let seeded = creates[0]["person"].as_str().unwrap().to_owned();
    let seeded_identity = creates[0]["attributes"]["identity"]
        .as_str()
        .unwrap()
        .to_owned();
    fixture
        .state
        .tenant
        .lock()
        .unwrap()
        .users
        .get_mut(&seeded)
        .unwrap()["identityId"] = json!(seeded_identity);
    fixture.state.log.clear();

    let out = ok(d, &["apply", "--now", NOW]);
    assert!(out.contains("applied"), "{out}");
    let patches = fixture.state.log.with_method("PATCH");
    // Counted by identity, not by request: on a loaded machine a PATCH can meet the
    // stand-in's spike arrest (429, logged) and go again after Retry-After.
    let written: std::collections::BTreeSet<&str> =
        patches.iter().map(|p| p.uri.as_str()).collect();
    assert_eq!(
        written.len(),
        creates.len() - 1,
        "one identity written per person whose identity is not yet there"
    );
    for a in &creates[1..] {
        let person = a["person"].as_str().unwrap();
        let p = patches
            .iter()
            .find(|p| p.uri == format!("/iam/v1.0/users(employeeId={person})/identity"))
            .unwrap_or_else(|| panic!("no PATCH for {person}"));
        assert_eq!(p.body, Some(json!({ "id": a["attributes"]["identity"] })));
    }
    assert!(
        !patches
            .iter()
            .any(|p| p.uri.contains(&format!("={seeded})")))
    );
    let users = fixture.state.tenant.lock().unwrap().users.clone();
    for a in &creates {
        let person = a["person"].as_str().unwrap();
        assert_eq!(users[person]["identityId"], a["attributes"]["identity"]);
    }
    // The audit log has each write-back.
    let audit = json(d, &["audit", "--target", "hr", "--output", "json"]);
    assert_eq!(audit.as_array().unwrap().len(), creates.len());

    // Nothing changed: the plan is empty and the run makes no write-back call at all.
    fixture.state.log.clear();
    let out = ok(d, &["apply", "--now", NOW]);
    assert!(out.contains("0 actions applied"), "{out}");
    let log = fixture.state.log.all();
    assert!(
        log.iter()
            .all(|l| l.method == "GET" || l.path() == "/connect/token"),
        "{log:#?}"
    );
    assert!(
        log.iter().all(|l| !l.uri.contains("users(")),
        "no user read or written: {log:#?}"
    );

    // A tenant that suddenly lacks a third of its people (a lost permission) holds the run.
    {
        let mut t = fixture.state.tenant.lock().unwrap();
        let keep: std::collections::BTreeSet<String> = org
            .persons
            .iter()
            .skip(20)
            .map(|p| p.external_id.clone())
            .collect();
        t.persons
            .retain(|p| keep.contains(p["personCode"].as_str().unwrap()));
        t.employments
            .retain(|e| keep.contains(e["personCode"].as_str().unwrap()));
    }
    fixture.state.log.clear();
    let o = run(d, &["apply", "--now", NOW]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("HELD by a source guard"), "{}", text(&o));
    assert!(fixture.state.log.with_method("PATCH").is_empty());
}

#[test]
fn visma_errors_are_precise() {
    let org = tenant::synthetic(5, 5, today());
    let fixture = VismaFixture::start(
        VismaOptions {
            scopes: vec![],
            window: Duration::from_secs(1),
            rate_limit: 50,
            ..VismaOptions::default()
        },
        tenant::visma(&org, today()),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("visma-secret"), "fixture-secret\n").unwrap();
    std::fs::write(d.join("koppel.toml"), visma_config(&fixture.url())).unwrap();
    let o = run(d, &["plan", "--now", NOW]);
    assert!(!o.status.success());
    assert!(text(&o).contains("Youforce-IAM:Get_Basic"), "{}", text(&o));

    // A bad setting is reported with its line and column by validate.
    let bad = visma_config(&fixture.url()).replace("take = 20", "take = 20\nfull_time_hour = 36");
    std::fs::write(d.join("koppel.toml"), &bad).unwrap();
    let o = run(d, &["validate"]);
    assert!(!o.status.success());
    let line = bad
        .lines()
        .position(|l| l.starts_with("full_time_hour"))
        .unwrap()
        + 1;
    assert!(
        text(&o).contains(&format!(
            "koppel.toml:{line}:1: sources[0].connection.full_time_hour"
        )),
        "{}",
        text(&o)
    );
}

fn afas_config(url: &str) -> String {
    let connection = format!("base_url = '{url}'\ntoken_file = 'afas-token'");
    config(
        &format!("[[sources]]\nkind = \"afas\"\n[sources.connection]\n{connection}\ntake = 25"),
        &format!(
            "[[targets]]\nname = \"hr\"\nkind = \"afas\"\ncorrelation = \"Medewerker\"\n\
             lifecycle = {{ create_days_before = 14 }}\n\
             [targets.attributes]\nMedewerker = \"person.external_id\"\nEmAd = \"accounts.directory.mail\"\nUpn = \"accounts.directory.upn\"\n\
             [targets.connection]\n{connection}"
        ),
    )
}

#[test]
fn afas_apply_writes_e_mail_and_upn_back_once() {
    let org = tenant::synthetic(50, 9, today());
    let fixture = AfasFixture::start(AfasOptions::default(), tenant::afas(&org)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("afas-token"), AfasOptions::default().token).unwrap();
    std::fs::write(d.join("koppel.toml"), afas_config(&fixture.url())).unwrap();
    ok(d, &["validate"]);
    let plan = json(d, &["plan", "--now", NOW, "--output", "json"]);
    let creates = actions(&plan, "hr", "create");
    assert!(creates.len() > 30);
    fixture.state.log.clear();
    ok(d, &["apply", "--now", NOW]);

    let puts = fixture.state.log.with_method("PUT");
    let rows = fixture.state.tenant.lock().unwrap().users.clone();
    for a in &creates {
        let id = a["person"].as_str().unwrap();
        let row = rows.iter().find(|r| r["Medewerker"] == id).unwrap();
        let employee = puts.iter().find(|p| {
            p.path().ends_with("/KnEmployee")
                && p.body.as_ref().unwrap()["AfasEmployee"]["Element"]["@EmId"] == id
        });
        let had = org
            .persons
            .iter()
            .find(|p| p.external_id == id)
            .unwrap()
            .email
            .clone();
        if had == a["attributes"]["EmAd"].as_str().unwrap() {
            // Profit already has that address: it is not written again.
            assert!(
                employee.is_none(),
                "{id}: KnEmployee for an unchanged address"
            );
        } else {
            assert_eq!(
                employee
                    .unwrap_or_else(|| panic!("no KnEmployee PUT for {id}"))
                    .body,
                Some(
                    json!({ "AfasEmployee": { "Element": { "@EmId": id, "Objects": [
                    { "KnPerson": { "Element": { "Fields": {
                        "MatchPer": 0, "BcCo": row["Persoonsnummer"], "EmAd": a["attributes"]["EmAd"]
                    } } } }
                ] } } })
                )
            );
        }
        let user = puts
            .iter()
            .find(|p| {
                p.path().ends_with("/KnUser")
                    && p.body.as_ref().unwrap()["KnUser"]["Element"]["@UsId"] == row["Gebruiker"]
            })
            .unwrap_or_else(|| panic!("no KnUser PUT for {id}"));
        assert_eq!(
            user.body,
            Some(
                json!({ "KnUser": { "Element": { "@UsId": row["Gebruiker"], "Fields": {
                "MtCd": 1, "Nm": row["DisplayName"], "Upn": a["attributes"]["Upn"]
            } } } })
            )
        );
        assert_eq!(row["Email_werk"], a["attributes"]["EmAd"]);
        assert_eq!(row["UPN"], a["attributes"]["Upn"]);
    }
    let unchanged_email = creates
        .iter()
        .filter(|a| {
            let id = a["person"].as_str().unwrap();
            org.persons.iter().any(|p| {
                p.external_id == id && p.email == a["attributes"]["EmAd"].as_str().unwrap()
            })
        })
        .count();
    assert_eq!(puts.len(), 2 * creates.len() - unchanged_email);

    fixture.state.log.clear();
    let out = ok(d, &["apply", "--now", NOW]);
    assert!(out.contains("0 actions applied"), "{out}");
    assert!(fixture.state.log.with_method("PUT").is_empty());
    assert!(
        fixture
            .state
            .log
            .all()
            .iter()
            .all(|l| !l.uri.contains("filterfieldids")),
        "no employee looked up"
    );
}

#[test]
fn afas_missing_getconnector_is_named() {
    let org = tenant::synthetic(5, 9, today());
    let mut options = AfasOptions::default();
    options
        .get_connectors
        .remove("T4E_HelloID_OrganizationalUnits_v2");
    let fixture = AfasFixture::start(options, tenant::afas(&org)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("afas-token"), AfasOptions::default().token).unwrap();
    std::fs::write(d.join("koppel.toml"), afas_config(&fixture.url())).unwrap();
    let o = run(d, &["plan", "--now", NOW]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("GetConnector \"T4E_HelloID_OrganizationalUnits_v2\" does not exist or is not in the app connector"),
        "{}",
        text(&o)
    );
}
