//! Invariant 3: kill the process at any point of an apply, run again, and the directory and
//! the store end exactly as after a clean run — nothing lost, nothing done twice.
//!
//! The child is a real `koppel apply` process. `KOPPEL_TEST_PAUSE_AT=N` makes it stop at its
//! N-th checkpoint (after the journal intents, after the target call, after the outcomes of a
//! batch) and say so on stderr; the test then kills it with SIGKILL, which no code of ours
//! can intercept, and starts `koppel apply` again.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::demo_workspace as workspace;

/// `koppel` in `dir`, in batches of 40: enough batches for the checkpoints the kill points
/// count on.
fn koppel(dir: &Path) -> Command {
    let mut c = common::koppel(dir);
    c.env("KOPPEL_BATCH", "40");
    c
}

fn apply(dir: &Path) {
    let out = koppel(dir)
        .args(["apply", "--now", "2026-11-23"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "apply failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Everything that must match a clean run: the known state, what each directory target
/// holds, and the audit log without its times and plan ids.
fn fingerprint(dir: &Path) -> String {
    let mut out = String::new();
    for args in [
        &["state", "--output", "json"][..],
        &["accounts", "directory", "--output", "json"][..],
        &["accounts", "plek", "--output", "json"][..],
        &["audit", "--output", "json"][..],
    ] {
        let o = koppel(dir).args(args).output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        if args[0] == "audit" {
            for e in v.as_array_mut().unwrap() {
                let r = e["record"].as_object_mut().unwrap();
                r.remove("at");
                r.remove("plan_id");
                let e = e.as_object_mut().unwrap();
                e.remove("hash");
                e.remove("prev_hash");
            }
        }
        out.push_str(&serde_json::to_string_pretty(&v).unwrap());
        out.push('\n');
    }
    out
}

/// Runs `koppel apply` until its `n`-th checkpoint and kills it there. False when the
/// apply finished before reaching it.
fn kill_at(dir: &Path, n: usize) -> bool {
    let mut child = koppel(dir)
        .args(["apply", "--now", "2026-11-23"])
        .env("KOPPEL_TEST_PAUSE_AT", n.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut paused = false;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line.starts_with("KOPPEL-PAUSED") {
            paused = true;
            break;
        }
    }
    if paused {
        // SIGKILL: the process gets no chance to clean up.
        child.kill().unwrap();
    }
    child.wait().unwrap();
    paused
}

#[test]
fn killed_at_any_point_the_rerun_ends_as_a_clean_run() {
    let clean = workspace();
    apply(clean.path());
    let expected = fingerprint(clean.path());
    assert!(
        expected.contains("\"permissions\""),
        "the clean run made accounts"
    );

    // Early, in the middle and late; each of the three points of a batch.
    let points = [1, 2, 3, 4, 5, 6, 20, 21, 22, 47, 48, 49, 90, 91, 92];
    let mut killed = 0;
    for n in points {
        let ws = workspace();
        if !kill_at(ws.path(), n) {
            continue;
        }
        killed += 1;
        apply(ws.path());
        let got = fingerprint(ws.path());
        assert!(
            got == expected,
            "after a kill at checkpoint {n} the result differs from a clean run"
        );
        // And nothing is left to do.
        let o = koppel(ws.path())
            .args([
                "plan",
                "--now",
                "2026-11-23",
                "--detailed-exitcode",
                "--summary",
            ])
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "plan after resume:\n{}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    assert!(killed >= 10, "only {killed} kill points were reached");
}

#[test]
fn killed_twice_in_a_row_still_ends_clean() {
    let clean = workspace();
    apply(clean.path());
    let expected = fingerprint(clean.path());
    let ws = workspace();
    assert!(kill_at(ws.path(), 8));
    assert!(kill_at(ws.path(), 2), "the resumed run is killed too");
    apply(ws.path());
    assert!(fingerprint(ws.path()) == expected);
}
