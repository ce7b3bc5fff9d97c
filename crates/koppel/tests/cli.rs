//! The `koppel` binary as an administrator uses it: plan, explain, validate and demo on the
//! demo organisation copied to a temporary folder.

mod common;

use assert_cmd::prelude::*;
use common::{demo_workspace as workspace, examples, koppel};
use predicates::prelude::*;

#[test]
fn json_plan_is_byte_identical_and_names_target_person_kind() {
    let ws = workspace();
    let run = || {
        koppel(ws.path())
            .args(["plan", "--now", "2026-11-23", "--output", "json"])
            .output()
            .unwrap()
    };
    let a = run();
    let b = run();
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert_eq!(a.stdout, b.stdout);
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let actions = v["actions"].as_array().unwrap();
    assert!(actions.len() > 1000);
    for a in actions {
        assert!(a["target"].is_string() && a["person"].is_string() && a["kind"].is_string());
        assert!(
            !a["reasons"].as_array().unwrap().is_empty(),
            "every action has a reason"
        );
    }
}

#[test]
fn applying_the_written_state_gives_an_empty_plan() {
    let ws = workspace();
    koppel(ws.path())
        .args([
            "plan",
            "--now",
            "2026-11-23",
            "--summary",
            "--write-state",
            "state.json",
        ])
        .assert()
        .success();
    koppel(ws.path())
        .args([
            "plan",
            "--now",
            "2026-11-23",
            "--state",
            "state.json",
            "--detailed-exitcode",
        ])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("No changes."));
    // A month later the date rules move: joiners start, leavers leave.
    koppel(ws.path())
        .args([
            "plan",
            "--now",
            "2026-12-23",
            "--state",
            "state.json",
            "--detailed-exitcode",
        ])
        .assert()
        .code(2)
        .stdout(predicate::str::contains("enable").and(predicate::str::contains("disable")));
}

#[test]
fn a_truncated_export_is_held_by_the_guards() {
    let ws = workspace();
    koppel(ws.path())
        .args([
            "plan",
            "--now",
            "2026-11-23",
            "--summary",
            "--write-state",
            "state.json",
        ])
        .assert()
        .success();
    let persons = ws.path().join("hr/persons.csv");
    let text = std::fs::read_to_string(&persons).unwrap();
    let half: Vec<&str> = text.lines().take(250).collect();
    std::fs::write(&persons, half.join("\n") + "\n").unwrap();
    koppel(ws.path())
        .args([
            "plan",
            "--now",
            "2026-11-23",
            "--state",
            "state.json",
            "--summary",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("HELD").and(predicate::str::contains("removed")));
}

#[test]
fn validate_reports_errors_with_file_line_and_column() {
    let ws = workspace();
    let cfg = ws.path().join("koppel.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let broken = text.replacen(
        "contract_condition = \"contract.employment_type != 'Extern'\"",
        "contract_condition = \"contract.employment_typ != 'Extern'\"",
        1,
    );
    assert_ne!(text, broken);
    std::fs::write(&cfg, broken).unwrap();
    koppel(ws.path())
        .args(["validate"])
        .assert()
        .failure()
        .stderr(
            predicate::str::is_match(
                r#"koppel\.toml:\d+:\d+: rule "intranet" contract_condition: .*employment_typ"#,
            )
            .unwrap(),
        );
    koppel(&examples().join("demo"))
        .args(["validate"])
        .assert()
        .success()
        .stdout(predicate::str::contains("valid"));
}

#[test]
fn malformed_hr_row_names_file_line_and_column() {
    let ws = workspace();
    let contracts = ws.path().join("hr/contracts.csv");
    let text = std::fs::read_to_string(&contracts).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[4] = lines[4].replacen(",20", ",2O", 1);
    std::fs::write(&contracts, lines.join("\n") + "\n").unwrap();
    koppel(ws.path())
        .args(["plan", "--now", "2026-11-23"])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("contracts.csv:5").and(predicate::str::contains("start_date")),
        );
}

#[test]
fn explain_says_why_and_refuses_unknown_people() {
    let ws = workspace();
    koppel(ws.path())
        .args(["explain", "1000004", "--now", "2026-11-23"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Rules").and(predicate::str::contains("medewerkers")));
    let out = koppel(ws.path())
        .args([
            "explain",
            "1000004",
            "--now",
            "2026-11-23",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["person"], "1000004");
    assert!(
        v["targets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["account"] == true)
    );
    koppel(ws.path())
        .args(["explain", "nobody", "--now", "2026-11-23"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "no person with external id \"nobody\"",
        ));
}

#[test]
fn demo_applies_today_and_a_month_later_the_same_every_time() {
    let tmp = tempfile::tempdir().unwrap();
    let run = || koppel(tmp.path()).arg("demo").output().unwrap();
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(
        text.contains("1. 2026-11-23") && text.contains("2. 2026-12-23"),
        "{text}"
    );
    assert_eq!(
        text.matches("planned again right after: no changes")
            .count(),
        2,
        "{text}"
    );
    assert!(text.contains(", 0 failed"), "{text}");
    // Named cases of examples/demo/README.md a month later: a marriage and a leaver.
    let later = &text[text.find("2. 2026-12-23").unwrap()..];
    assert!(
        later.contains("1000925") && later.contains("mail"),
        "{later}"
    );
    assert!(
        later.contains("1000929") && later.contains("disable"),
        "{later}"
    );
    assert_eq!(
        run().stdout,
        first.stdout,
        "running the demo twice gives the same result"
    );
}
