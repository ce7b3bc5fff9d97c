//! The peer compliance suite: `scim2 test` (scim2-cli running scim2-tester, pinned in
//! scripts/requirements-scim.txt, installed by scripts/test-servers into
//! target/test-servers/scim-venv) against the endpoint on a free port over a fresh store.
//! Fails if any check fails; skipped without the venv unless KOPPEL_REQUIRE_SERVERS=1.

use std::path::PathBuf;

use koppel_server::{Directory, Mapping, ScimState, scim_router};

const TOKEN: &str = "compliance-token";

fn scim2_cli() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join("target/test-servers/scim-venv/bin/scim2");
    path.is_file().then_some(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_passes_every_check() {
    let Some(cli) = scim2_cli() else {
        assert!(
            std::env::var("KOPPEL_REQUIRE_SERVERS").as_deref() != Ok("1"),
            "scim2 (scim2-cli) is not installed: run scripts/test-servers"
        );
        eprintln!("skipped: no target/test-servers/scim-venv/bin/scim2 (run scripts/test-servers)");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let store = koppel_store::SqliteStore::open(&dir.path().join("koppel.db"))
        .await
        .expect("store");
    let directory = Directory::open(
        store.pool().clone(),
        "directory",
        Mapping::default_mapping(),
    )
    .await
    .expect("directory");
    let state = ScimState::new(directory, &[TOKEN.to_owned()], None, 1024 * 1024).expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move { axum::serve(listener, scim_router(state)).await });

    let output = tokio::process::Command::new(&cli)
        .arg("--url")
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("-h")
        .arg(format!("Authorization: Bearer {TOKEN}"))
        .arg("test")
        .arg("--verbose")
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("run scim2");
    server.abort();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("CRITICAL") || l.contains("FAIL"))
        .collect();
    let passed = stdout.lines().filter(|l| l.contains("SUCCESS")).count();
    eprintln!(
        "scim2-tester: {passed} checks passed, {} failed",
        failed.len()
    );
    assert!(
        output.status.success() && failed.is_empty() && passed > 0,
        "scim2 test failed ({}):\n{}\n{stdout}\n{stderr}",
        output.status,
        failed.join("\n"),
    );
}
