//! A throwaway SCIM 2.0 peer per test: PyPI's `scim2-server` (in memory) from the venv
//! `scripts/test-servers` makes, on a free loopback port with a bearer token, killed when dropped.
//!
//! The venv is `target/test-servers/scim-venv` (or `KOPPEL_TEST_SCIM_VENV`). Without it the
//! tests say they are skipped, and fail under `KOPPEL_REQUIRE_SERVERS=1`.

use std::env;
use std::fs;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::samba::REQUIRE_SERVERS_VAR;

/// Overrides where the venv with `scim2-server` is.
pub const VENV_VAR: &str = "KOPPEL_TEST_SCIM_VENV";

/// A running scim2-server of one test.
pub struct Scim2Server {
    dir: TempDir,
    port: u16,
    token: String,
    child: Option<Child>,
}

impl Scim2Server {
    /// The venv holding `bin/scim2-server`, if it exists.
    pub fn venv() -> Option<PathBuf> {
        let venv = match env::var(VENV_VAR) {
            Ok(v) if !v.is_empty() => PathBuf::from(v),
            // crates/koppel-testkit → the workspace root's target dir.
            _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-servers/scim-venv"),
        };
        venv.join("bin/scim2-server").is_file().then_some(venv)
    }

    /// Starts a server for `test`, or `None` (loudly) when the venv is missing and servers
    /// are not required. With `KOPPEL_REQUIRE_SERVERS=1` a missing venv is a failure.
    pub fn start_or_skip(test: &str) -> Option<Scim2Server> {
        if Scim2Server::venv().is_none() {
            if env::var(REQUIRE_SERVERS_VAR).is_ok_and(|v| v == "1") {
                panic!(
                    "{test}: no scim2-server venv, but {REQUIRE_SERVERS_VAR}=1 requires one: \
                     run `scripts/test-servers start` (it installs scripts/requirements-scim.txt \
                     into target/test-servers/scim-venv) or set {VENV_VAR}"
                );
            }
            eprintln!(
                "\n**********\n{test}: SKIPPED: no scim2-server venv (run \
                 `scripts/test-servers start`)\n**********\n"
            );
            return None;
        }
        Some(Scim2Server::start().unwrap_or_else(|e| panic!("{test}: starting scim2-server: {e}")))
    }

    /// Starts scim2-server with a random bearer token and waits until it answers.
    pub fn start() -> io::Result<Scim2Server> {
        let venv = Scim2Server::venv().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no scim2-server venv: run scripts/test-servers start",
            )
        })?;
        let dir = tempfile::Builder::new().prefix("koppel-scim2-").tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut bytes = [0u8; 16];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| io::Read::read_exact(&mut f, &mut bytes))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let log = fs::File::create(dir.path().join("scim2-server.log"))?;
        let child = Command::new(venv.join("bin/scim2-server"))
            .args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
            .args(["--bearer-token", &token])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut server = Scim2Server {
            dir,
            port,
            token,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = server.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                server.child = None;
                return Err(io::Error::other(format!(
                    "scim2-server exited with {status}: {}",
                    server.log()
                )));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "scim2-server did not listen in 30 s: {}",
                    server.log()
                )));
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// `http://127.0.0.1:<port>`: `/Users` and `/Groups` are under it.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The bearer token the server accepts.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A file holding the token, for `token_file` configurations.
    pub fn token_file(&self) -> io::Result<PathBuf> {
        let path = self.dir.path().join("token");
        fs::write(&path, format!("{}\n", self.token))?;
        Ok(path)
    }

    /// The server's output so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("scim2-server.log")).unwrap_or_default()
    }

    /// Stops the server (SIGKILL: it keeps nothing worth a clean shutdown).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Scim2Server {
    fn drop(&mut self) {
        self.stop();
    }
}
