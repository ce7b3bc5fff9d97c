//! `koppel apply` into a real SCIM 2.0 service (`scim2-server` from PyPI, one per test): the
//! demo organisation through the SCIM example configuration, a month of joiners, movers and
//! leavers, reconcile, and an unchanged source that calls no target.

mod common;

use std::path::Path;

use common::{examples, json, ok, run, text, use_hr};
use koppel_testkit::scim::Scim2Server;

/// The SCIM example configuration, pointed at `server` with its token in a file.
fn workspace(server: &Scim2Server) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(examples().join("scim/koppel.toml")).unwrap();
    let text = text
        .replace("dir = \"../demo/hr\"", "dir = \"hr\"")
        .replace("https://plek.example/scim/v2", &server.base_url())
        .replace(
            "token_env = \"PLEK_SCIM_TOKEN\"",
            &format!(
                "token_file = \"{}\"",
                server.token_file().unwrap().display()
            ),
        );
    std::fs::write(dir.path().join("koppel.toml"), text).unwrap();
    use_hr(dir.path(), "hr");
    dir
}

/// Plek's users as the target lists them, by externalId.
fn users(dir: &Path) -> std::collections::BTreeMap<String, serde_json::Value> {
    json(dir, &["accounts", "plek", "--output", "json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["attributes"]["externalId"].as_str().unwrap().to_owned(),
                a.clone(),
            )
        })
        .collect()
}

#[test]
fn the_demo_organisation_into_a_scim_service_and_a_month_of_change() {
    let Some(mut server) = Scim2Server::start_or_skip("scim end to end") else {
        return;
    };
    let ws = workspace(&server);
    let dir = ws.path();
    ok(dir, &["validate"]);
    let applied = ok(dir, &["apply", "--now", "2026-11-23"]);
    assert!(!applied.contains("failed"), "{applied}");
    let plan = run(dir, &["plan", "--now", "2026-11-23", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));

    let state = json(dir, &["state", "--output", "json"]);
    let known = state["targets"]["plek"]["accounts"].as_object().unwrap();
    let listed = users(dir);
    assert!(known.len() > 400, "{}", known.len());
    assert_eq!(listed.len(), known.len(), "one SCIM user per account");
    // External hires are not on Plek.
    assert!(!listed.contains_key("1000916"));
    let liam = &listed["1000903"];
    assert_eq!(liam["attributes"]["name.familyName"], "O'Brien");
    assert_eq!(liam["attributes"]["enterprise.employeeNumber"], "1000903");
    assert!(
        liam["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "Iedereen"),
        "{liam}"
    );

    // A month of change.
    let lotte_before = listed["1000925"]["attributes"]["userName"].clone();
    use_hr(dir, "hr-month-later");
    let applied = ok(dir, &["apply", "--now", "2026-12-23"]);
    assert!(!applied.contains("failed"), "{applied}");
    let plan = run(dir, &["plan", "--now", "2026-12-23", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let listed = users(dir);
    // The mover has the new department's group and lost the old one.
    let daan: Vec<&str> = listed["1000926"]["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(daan.contains(&"plek-fin-ar"), "{daan:?}");
    assert!(!daan.contains(&"plek-ict-wpl"), "{daan:?}");
    assert_eq!(
        listed["1000926"]["attributes"]["enterprise.department"],
        "Debiteurenadministratie"
    );
    // The leaver past the grace period is inactive, not deleted.
    assert_eq!(listed["1000929"]["enabled"], false);
    // The marriage changed the user name (the e-mail address), same user.
    let lotte = &listed["1000925"];
    assert_ne!(lotte["attributes"]["userName"], lotte_before);
    assert!(
        lotte["attributes"]["userName"]
            .as_str()
            .unwrap()
            .contains("vandijk"),
        "{lotte}"
    );
    // Reconcile: the service holds what koppel wrote.
    let report = json(
        dir,
        &[
            "reconcile",
            "plek",
            "--now",
            "2026-12-23",
            "--output",
            "json",
        ],
    );
    assert_eq!(report["drift"], serde_json::json!([]), "{report}");
    assert_eq!(report["orphans"], serde_json::json!([]), "{report}");
    assert_eq!(
        report["missing_permissions"],
        serde_json::json!([]),
        "{report}"
    );

    // An unchanged source calls no target: with the service stopped, the run succeeds.
    server.stop();
    let idle = ok(dir, &["apply", "--now", "2026-12-23"]);
    assert!(!idle.contains("unavailable"), "{idle}");
}
