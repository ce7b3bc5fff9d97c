//! What the binary's end-to-end tests share: the example configurations and HR files, and
//! running `koppel` in a workspace folder.

// Each test binary uses its own part of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Copies the demo's HR export `which` (`hr`, `hr-month-later`) into `dir/hr`.
pub fn use_hr(dir: &Path, which: &str) {
    std::fs::create_dir_all(dir.join("hr")).unwrap();
    for f in ["persons.csv", "contracts.csv", "departments.csv"] {
        std::fs::copy(
            examples().join("demo").join(which).join(f),
            dir.join("hr").join(f),
        )
        .unwrap();
    }
}

/// A temporary copy of the demo organisation that a test may change: its configuration
/// and today's HR export.
pub fn demo_workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        examples().join("demo/koppel.toml"),
        dir.path().join("koppel.toml"),
    )
    .unwrap();
    use_hr(dir.path(), "hr");
    dir
}

/// `koppel` in `dir`, with nothing from the caller's environment that would change it.
pub fn koppel(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_koppel"));
    c.current_dir(dir)
        .env("NO_COLOR", "1")
        .env("KOPPEL_ACTOR", "e2e-test")
        .env_remove("KOPPEL_CONFIG")
        .env_remove("KOPPEL_STORE")
        .env_remove("KOPPEL_TEST_PAUSE_AT")
        .env_remove("KOPPEL_TEST_RESUME_FILE");
    c
}

pub fn run(dir: &Path, args: &[&str]) -> Output {
    koppel(dir).args(args).output().unwrap()
}

/// Standard output and error together.
pub fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// Runs `koppel args`, which must succeed, and returns what it said.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let o = run(dir, args);
    assert!(o.status.success(), "koppel {args:?} failed:\n{}", text(&o));
    text(&o)
}

/// Runs `koppel args … --output json` (the caller passes it), which must succeed.
pub fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let o = run(dir, args);
    assert!(o.status.success(), "koppel {args:?} failed:\n{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}
