//! examples/entra end to end: the `koppel` binary applies the demo organisation to Entra ID
//! over the Microsoft Graph stand-in, plans nothing after, finds no drift, and follows a
//! month of joiners, movers and leavers.

mod common;

use common::{examples, ok, use_hr};
use koppel_apps_fixture::{GraphFixture, GraphOptions};

fn workspace(fixture: &GraphFixture) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("entra-secret");
    std::fs::write(&secret, "fixture-secret\n").unwrap();
    let text = std::fs::read_to_string(examples().join("entra/koppel.toml"))
        .unwrap()
        .replace("dir = \"../demo/hr\"", "dir = \"hr\"")
        .replace("http://127.0.0.1:8710", &fixture.url())
        .replace("/tmp/entra-secret", &secret.display().to_string());
    std::fs::write(dir.path().join("koppel.toml"), text).unwrap();
    use_hr(dir.path(), "hr");
    dir
}

#[test]
fn the_demo_organisation_into_entra_id_and_a_month_of_change() {
    let fixture = GraphFixture::start(GraphOptions::default()).unwrap();
    let dir = workspace(&fixture);
    let d = dir.path();
    let out = ok(d, &["validate", "--config", "koppel.toml"]);
    assert!(out.contains("delete = soft delete"), "{out}");
    let out = ok(d, &["apply", "--config", "koppel.toml"]);
    assert!(out.contains("create") && out.contains("grant"), "{out}");
    let users = fixture.state.user_count();
    assert!(users > 400, "{users} users in the tenant");
    assert!(fixture.state.stats().batches > 0, "apply used no $batch");
    assert_eq!(
        fixture.state.members_of("Iedereen").map(|m| m.len()),
        Some(users)
    );
    let out = ok(d, &["plan", "--config", "koppel.toml"]);
    assert!(out.contains("No changes"), "{out}");
    let out = ok(d, &["reconcile", "entra", "--config", "koppel.toml"]);
    assert!(out.contains("No drift"), "{out}");

    // A month later: joiners, movers, leavers; then nothing left to do.
    use_hr(d, "hr-month-later");
    ok(d, &["apply", "--config", "koppel.toml"]);
    let out = ok(d, &["plan", "--config", "koppel.toml"]);
    assert!(out.contains("No changes"), "{out}");
    let out = ok(d, &["reconcile", "entra", "--config", "koppel.toml"]);
    assert!(out.contains("No drift"), "{out}");
}
