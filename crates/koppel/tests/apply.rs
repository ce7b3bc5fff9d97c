//! `koppel apply` end to end on the demo organisation: the joiner/mover/leaver loop into the
//! built-in directory, thresholds and approval, failures, saved plans and the audit log.

mod common;

use std::path::Path;

use assert_cmd::prelude::*;
use common::{examples, koppel, ok, run, text, use_hr};
use predicates::prelude::*;

/// The demo organisation with its configuration changed by `config_edit`.
fn workspace(config_edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(examples().join("demo/koppel.toml")).unwrap();
    std::fs::write(dir.path().join("koppel.toml"), config_edit(text)).unwrap();
    use_hr(dir.path(), "hr");
    dir
}

/// The plan id in `koppel apply`'s hint to approve a withheld plan.
fn approve_id(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("Approve with `koppel apply --approve "))
        .and_then(|l| l.split('`').next())
        .unwrap()
        .to_owned()
}

/// The id `koppel plan --save` reports on stderr.
fn saved_id(dir: &Path) -> String {
    let o = run(dir, &["plan", "--now", "2026-11-23", "--summary", "--save"]);
    String::from_utf8_lossy(&o.stderr)
        .split("saved plan ")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .unwrap()
        .to_owned()
}

/// Runs SQL against the store file, as someone editing it behind koppel's back would.
fn sql(db: &Path, statements: &[&str]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        for s in statements {
            // Test-only SQL written in this file: nothing comes from outside.
            sqlx::query(sqlx::AssertSqlSafe(s.to_string()))
                .execute(&mut c)
                .await
                .unwrap();
        }
    });
}

#[test]
fn joiner_mover_leaver_loop_with_an_empty_plan_after_each_apply() {
    let ws = workspace(|t| t);
    ok(ws.path(), &["apply", "--now", "2026-11-23"]);
    koppel(ws.path())
        .args(["plan", "--now", "2026-11-23", "--detailed-exitcode"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("No changes."));

    use_hr(ws.path(), "hr-month-later");
    koppel(ws.path())
        .args(["apply", "--now", "2026-12-23"])
        .assert()
        .success()
        .stdout(predicate::str::contains("disable").and(predicate::str::contains("update")));
    koppel(ws.path())
        .args(["plan", "--now", "2026-12-23", "--detailed-exitcode"])
        .assert()
        .code(0);

    // The marriage: display name and e-mail follow, the username stays.
    let out = text(&run(
        ws.path(),
        &["accounts", "directory", "--output", "json"],
    ));
    let accounts: serde_json::Value = serde_json::from_str(
        out.lines()
            .take_while(|l| !l.starts_with("warning"))
            .collect::<Vec<_>>()
            .join("\n")
            .as_str(),
    )
    .unwrap();
    let married = accounts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["attributes"]["employee_id"] == "1000925")
        .unwrap();
    let state: serde_json::Value =
        serde_json::from_str(&text(&run(ws.path(), &["state", "--output", "json"]))).unwrap();
    let known = &state["targets"]["directory"]["accounts"]["1000925"];
    assert_eq!(
        married["attributes"]["mail"], known["attributes"]["mail"],
        "the directory holds what the store says"
    );
    assert_eq!(
        married["attributes"]["username"],
        known["attributes"]["username"]
    );

    // Every change is in the audit log, which verifies.
    koppel(ws.path())
        .args(["audit", "--person", "1000925"])
        .assert()
        .success()
        .stdout(predicate::str::contains("update"));
    koppel(ws.path())
        .args(["audit", "verify"])
        .assert()
        .success()
        .stdout(predicate::str::contains("intact"));
}

#[test]
fn a_threshold_withholds_only_its_kind_until_approved() {
    let ws = workspace(|t| {
        t.replacen(
            "lifecycle = { create_days_before = 14, disable_grace_days = 0, delete_after_days = 90 }",
            "lifecycle = { create_days_before = 14, disable_grace_days = 0, delete_after_days = 90 }\nthresholds = { disable = 2 }",
            1,
        )
    });
    ok(ws.path(), &["apply", "--now", "2026-11-23"]);
    use_hr(ws.path(), "hr-month-later");
    let out = text(&run(ws.path(), &["apply", "--now", "2026-12-23"]));
    assert!(
        out.contains("WITHHELD by a threshold: target directory:"),
        "{out}"
    );
    assert!(out.contains("disable actions"), "{out}");
    let id = approve_id(&out);
    // Updates and grants went ahead; the directory's disables wait.
    let plan = text(&run(
        ws.path(),
        &["plan", "--now", "2026-12-23", "--output", "json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let kinds: Vec<(&str, &str)> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["target"].as_str().unwrap(), a["kind"].as_str().unwrap()))
        .collect();
    assert!(
        kinds.iter().all(|k| *k == ("directory", "disable")),
        "{kinds:?}"
    );
    assert!(kinds.len() > 2);

    koppel(ws.path())
        .args(["apply", "--now", "2026-12-23", "--approve", &id])
        .assert()
        .success();
    koppel(ws.path())
        .args(["plan", "--now", "2026-12-23", "--detailed-exitcode"])
        .assert()
        .code(0);
    koppel(ws.path())
        .args(["audit"])
        .assert()
        .stdout(predicate::str::contains("approved").and(predicate::str::contains("held")));
    koppel(ws.path())
        .args(["apply", "--now", "2026-12-23", "--reject", &id])
        .assert()
        .failure()
        .stderr(predicate::str::contains("only a held plan"));
}

#[test]
fn a_rejected_plan_drops_the_withheld_actions() {
    let ws = workspace(|t| {
        t.replacen(
            "[targets.attributes]",
            "thresholds = { revoke = \"1%\" }\n\n[targets.attributes]",
            1,
        )
    });
    ok(ws.path(), &["apply", "--now", "2026-11-23"]);
    use_hr(ws.path(), "hr-month-later");
    let out = text(&run(ws.path(), &["apply", "--now", "2026-12-23"]));
    let id = approve_id(&out);
    koppel(ws.path())
        .args(["apply", "--now", "2026-12-23", "--reject", &id])
        .assert()
        .success();
    koppel(ws.path())
        .args(["audit"])
        .assert()
        .stdout(predicate::str::contains("rejected"));
}

#[test]
fn a_failing_action_is_recorded_the_rest_goes_on_and_the_next_run_retries() {
    let ws = workspace(|t| t);
    ok(ws.path(), &["apply", "--now", "2026-11-23"]);
    // Someone removes a mover's account by hand.
    sql(
        &ws.path().join("koppel.db"),
        &["DELETE FROM dir_accounts WHERE target = 'directory' AND person = '1000026'"],
    );
    use_hr(ws.path(), "hr-month-later");
    let out = koppel(ws.path())
        .args(["apply", "--now", "2026-12-23"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("failed: directory update for 1000026"),
        "{text}"
    );
    assert!(
        text.contains("skipped"),
        "the mover's grants wait for the failed update: {text}"
    );
    // Everyone else moved on.
    let plan = common::text(&run(
        ws.path(),
        &["plan", "--now", "2026-12-23", "--output", "json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let persons: std::collections::BTreeSet<&str> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["person"].as_str().unwrap())
        .collect();
    assert_eq!(persons.into_iter().collect::<Vec<_>>(), ["1000026"]);
    koppel(ws.path())
        .args(["audit", "--person", "1000026"])
        .assert()
        .stdout(predicate::str::contains("failed"));
    // The next run tries again (and fails again, with the same clear message).
    koppel(ws.path())
        .args(["apply", "--now", "2026-12-23"])
        .assert()
        .failure()
        .stdout(predicate::str::contains("has no account"));
}

#[test]
fn saved_plans_apply_once_and_not_after_the_state_moved() {
    let ws = workspace(|t| t);
    let id = saved_id(ws.path());
    let stale = saved_id(ws.path());
    koppel(ws.path())
        .args(["apply", &id, "--now", "2026-11-23"])
        .assert()
        .success();
    koppel(ws.path())
        .args(["apply", &id, "--now", "2026-11-23"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not a saved plan waiting"));
    koppel(ws.path())
        .args(["apply", &stale, "--now", "2026-11-23"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("something was applied since"));
}

#[test]
fn audit_verify_detects_a_changed_entry() {
    let ws = workspace(|t| t);
    ok(ws.path(), &["apply", "--now", "2026-11-23"]);
    ok(ws.path(), &["audit", "verify"]);
    let db = ws.path().join("koppel.db");
    let triggers: Vec<String> = {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::{Connection, Row};
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
                .await
                .unwrap();
            sqlx::query("SELECT name FROM sqlite_master WHERE type = 'trigger'")
                .fetch_all(&mut c)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect()
        })
    };
    let mut stmts: Vec<String> = triggers
        .iter()
        .map(|t| format!("DROP TRIGGER {t}"))
        .collect();
    stmts.push("UPDATE audit SET actor = 'someone else' WHERE seq = 5".to_owned());
    sql(&db, &stmts.iter().map(String::as_str).collect::<Vec<_>>());
    koppel(ws.path())
        .args(["audit", "verify"])
        .assert()
        .code(4)
        .stdout(predicate::str::contains("TAMPERED"));
}

#[test]
fn reconcile_reports_drift_and_orphans_and_repair_puts_koppels_values_back() {
    let ws = workspace(|t| t);
    ok(ws.path(), &["apply", "--now", "2026-11-23"]);
    let clean = text(&run(
        ws.path(),
        &["reconcile", "directory", "--now", "2026-11-23"],
    ));
    assert!(clean.contains("No drift"), "{clean}");

    // Someone edits the directory behind koppel's back.
    let db = ws.path().join("koppel.db");
    let account = |person: &str| {
        format!("(SELECT id FROM dir_accounts WHERE target = 'directory' AND person = '{person}')")
    };
    sql(
        &db,
        &[
            "UPDATE dir_accounts SET attributes = json_set(attributes, '$.title', 'Edited by hand') \
             WHERE target = 'directory' AND person = '1000901'",
            "UPDATE dir_accounts SET enabled = 0 WHERE target = 'directory' AND person = '1000902'",
            &format!(
                "DELETE FROM dir_memberships WHERE account_id = {} AND group_id = \
                 (SELECT id FROM dir_groups WHERE target = 'directory' AND name = 'Alle medewerkers')",
                account("1000903")
            ),
            "INSERT INTO dir_accounts (target, reference, person, attributes, enabled) VALUES \
             ('directory', 'made-by-hand', '', '{\"employee_id\":\"X-999\"}', 1)",
        ],
    );

    let json = text(&run(
        ws.path(),
        &[
            "reconcile",
            "directory",
            "--now",
            "2026-11-23",
            "--output",
            "json",
        ],
    ));
    let report: serde_json::Value = serde_json::from_str(&json).expect(&json);
    let orphans = report["orphans"].as_array().unwrap();
    assert_eq!(orphans.len(), 1, "{json}");
    assert_eq!(orphans[0]["reference"], "made-by-hand");
    assert_eq!(orphans[0]["correlation"], "X-999");
    let drift = report["drift"].as_array().unwrap();
    assert_eq!(drift.len(), 2, "{json}");
    assert_eq!(drift[0]["person"], "1000901");
    assert_eq!(drift[0]["attributes"]["title"][1], "Edited by hand");
    assert_eq!(drift[1]["person"], "1000902");
    assert_eq!(drift[1]["enabled"], serde_json::json!([true, false]));
    let missing = report["missing_permissions"].as_array().unwrap();
    assert_eq!(missing.len(), 1, "{json}");
    assert_eq!(missing[0]["person"], "1000903");
    assert_eq!(missing[0]["permission"], "Alle medewerkers");

    let repaired = text(&run(
        ws.path(),
        &["reconcile", "directory", "--now", "2026-11-23", "--repair"],
    ));
    assert!(repaired.contains("Repair: 3 done, 0 failed"), "{repaired}");
    let after = text(&run(
        ws.path(),
        &[
            "reconcile",
            "directory",
            "--now",
            "2026-11-23",
            "--output",
            "json",
        ],
    ));
    let after: serde_json::Value = serde_json::from_str(&after).unwrap();
    assert_eq!(after["drift"], serde_json::json!([]));
    assert_eq!(after["missing_permissions"], serde_json::json!([]));
    // The orphan is reported, never removed.
    assert_eq!(after["orphans"].as_array().unwrap().len(), 1);
    // Each repair is in the audit log as changed outside koppel.
    let audit = text(&run(
        ws.path(),
        &["audit", "--person", "1000902", "--output", "json"],
    ));
    assert!(audit.contains("\"drift\""), "{audit}");
    // And the plan is still empty: repair restored exactly what koppel knows.
    koppel(ws.path())
        .args(["plan", "--now", "2026-11-23", "--detailed-exitcode"])
        .assert()
        .code(0);
}
