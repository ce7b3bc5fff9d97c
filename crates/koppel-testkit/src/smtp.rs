//! A real SMTP sink per test: PyPI's `aiosmtpd` on a free loopback port, storing every message
//! in a Maildir and, decoded by Python's `email` package, as JSON the test reads back.
//!
//! Plain, STARTTLS or SMTPS, optionally with a login and recipients it refuses (550). The venv
//! is `target/test-servers/smtp-venv` (or `KOPPEL_TEST_SMTP_VENV`), made by
//! `scripts/test-servers` from `scripts/requirements-smtp.txt`; without it the tests say they
//! are skipped, and fail under `KOPPEL_REQUIRE_SERVERS=1`.

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

/// Overrides where the venv with `aiosmtpd` is.
pub const VENV_VAR: &str = "KOPPEL_TEST_SMTP_VENV";

/// The sink: aiosmtpd's controller with a handler that refuses listed recipients, keeps each
/// message in a Maildir and writes its decoded form as JSON (written whole, then renamed).
const SINK_PY: &str = r#"
import email, email.policy, json, mailbox, os, signal, ssl, sys, threading
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, root = int(sys.argv[1]), sys.argv[2]
opts = json.load(open(os.path.join(root, "options.json")))
box = mailbox.Maildir(os.path.join(root, "Maildir"), create=True)
out = os.path.join(root, "json")
os.makedirs(out, exist_ok=True)
lock = threading.Lock()

class Sink:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in opts["reject"]:
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        body = msg.get_body(("plain",))
        with lock:
            key = box.add(raw)
            n = len(os.listdir(out))
            record = {
                "seq": n,
                "maildir_key": key,
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "tls": server.transport.get_extra_info("ssl_object") is not None,
                "authenticated": bool(session.authenticated),
                "headers": [[k, str(v)] for k, v in msg.items()],
                "body": body.get_content() if body is not None else "",
                "raw": raw.decode("utf-8", "replace"),
            }
            tmp = os.path.join(out, ".%06d.tmp" % n)
            with open(tmp, "w") as f:
                json.dump(record, f)
            os.rename(tmp, os.path.join(out, "%06d.json" % n))
        return "250 Message accepted for delivery"

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login.decode() == opts["user"]
          and auth_data.password.decode() == opts["password"])
    return AuthResult(success=ok, handled=False)

def context(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx

kwargs = {}
if opts["mode"] == "starttls":
    kwargs.update(tls_context=context(opts["cert"], opts["key"]), require_starttls=True)
if opts["mode"] == "smtps":
    kwargs.update(ssl_context=context(opts["cert"], opts["key"]))
if opts["user"]:
    kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=True)
controller = Controller(Sink(), hostname="127.0.0.1", port=port, **kwargs)
controller.start()
open(os.path.join(root, "ready"), "w").close()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
stop.wait()
controller.stop()
"#;

/// How the sink protects its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkTls {
    /// Plain SMTP.
    None,
    /// STARTTLS offered and required before mail (and before a login).
    Starttls { cert: PathBuf, key: PathBuf },
    /// TLS from the first byte.
    Smtps { cert: PathBuf, key: PathBuf },
}

/// How to start a sink.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub tls: SinkTls,
    /// Require this login (over TLS only).
    pub login: Option<(String, String)>,
    /// Recipients refused with 550 (compared case-insensitively).
    pub reject: Vec<String>,
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self {
            tls: SinkTls::None,
            login: None,
            reject: Vec::new(),
        }
    }
}

/// One message the sink accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// The envelope sender and recipients (MAIL FROM, RCPT TO).
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// Whether it came over TLS, and after a login.
    pub tls: bool,
    pub authenticated: bool,
    /// Headers in order, values decoded (RFC 2047).
    pub headers: Vec<(String, String)>,
    /// The text/plain body, decoded.
    pub body: String,
    /// The message as received.
    pub raw: String,
}

impl Received {
    /// The first header `name` (case-insensitive), decoded.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn subject(&self) -> &str {
        self.header("Subject").unwrap_or_default()
    }
}

/// A running aiosmtpd of one test.
pub struct SmtpSink {
    dir: TempDir,
    port: u16,
    options: SinkOptions,
    child: Option<Child>,
}

impl SmtpSink {
    /// The venv's python with `aiosmtpd`, if the venv exists.
    pub fn python() -> Option<PathBuf> {
        let venv = match env::var(VENV_VAR) {
            Ok(v) if !v.is_empty() => PathBuf::from(v),
            // crates/koppel-testkit → the workspace root's target dir.
            _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-servers/smtp-venv"),
        };
        let python = venv.join("bin/python");
        (python.is_file() && venv.join("bin/aiosmtpd").is_file()).then_some(python)
    }

    /// A plain sink for `test`, or `None` (loudly) when the venv is missing and servers are
    /// not required. With `KOPPEL_REQUIRE_SERVERS=1` a missing venv is a failure.
    pub fn start_or_skip(test: &str) -> Option<SmtpSink> {
        SmtpSink::start_with_or_skip(test, SinkOptions::default())
    }

    /// Like [`SmtpSink::start_or_skip`], with options.
    pub fn start_with_or_skip(test: &str, options: SinkOptions) -> Option<SmtpSink> {
        if SmtpSink::python().is_none() {
            if env::var(REQUIRE_SERVERS_VAR).is_ok_and(|v| v == "1") {
                panic!(
                    "{test}: no aiosmtpd venv, but {REQUIRE_SERVERS_VAR}=1 requires one: run \
                     `scripts/test-servers start` (it installs scripts/requirements-smtp.txt \
                     into target/test-servers/smtp-venv) or set {VENV_VAR}"
                );
            }
            eprintln!(
                "\n**********\n{test}: SKIPPED: no aiosmtpd venv (run \
                 `scripts/test-servers start`)\n**********\n"
            );
            return None;
        }
        Some(
            SmtpSink::start(options)
                .unwrap_or_else(|e| panic!("{test}: starting the SMTP sink: {e}")),
        )
    }

    /// Starts aiosmtpd and waits until it accepts connections.
    pub fn start(options: SinkOptions) -> io::Result<SmtpSink> {
        let dir = tempfile::Builder::new().prefix("koppel-smtp-").tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut sink = SmtpSink {
            dir,
            port,
            options,
            child: None,
        };
        sink.spawn()?;
        Ok(sink)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let python = SmtpSink::python().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no aiosmtpd venv: run scripts/test-servers start",
            )
        })?;
        let root = self.dir.path();
        let (mode, cert, key) = match &self.options.tls {
            SinkTls::None => ("plain", None, None),
            SinkTls::Starttls { cert, key } => ("starttls", Some(cert), Some(key)),
            SinkTls::Smtps { cert, key } => ("smtps", Some(cert), Some(key)),
        };
        let options = serde_json::json!({
            "mode": mode,
            "cert": cert,
            "key": key,
            "user": self.options.login.as_ref().map(|(u, _)| u),
            "password": self.options.login.as_ref().map(|(_, p)| p),
            "reject": self.options.reject.iter().map(|r| r.to_lowercase()).collect::<Vec<_>>(),
        });
        fs::write(root.join("options.json"), options.to_string())?;
        fs::write(root.join("sink.py"), SINK_PY)?;
        let _ = fs::remove_file(root.join("ready"));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join("sink.log"))?;
        let child = Command::new(python)
            .arg(root.join("sink.py"))
            .arg(self.port.to_string())
            .arg(root)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(io::Error::other(format!(
                    "aiosmtpd exited with {status}: {}",
                    self.log()
                )));
            }
            if root.join("ready").exists() && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "aiosmtpd did not listen in 30 s: {}",
                    self.log()
                )));
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Maildir every accepted message is kept in.
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("Maildir")
    }

    /// Every message accepted so far, in the order they arrived.
    pub fn messages(&self) -> Vec<Received> {
        let dir = self.dir.path().join("json");
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .filter_map(|f| fs::read_to_string(f).ok())
            .filter_map(|text| parse(&text))
            .collect()
    }

    /// Waits up to `timeout` until at least `n` messages arrived; returns all of them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// The sink's output so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sink.log")).unwrap_or_default()
    }

    /// Stops the sink: connections to its port are refused until [`SmtpSink::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the sink again on the same port, keeping the messages it had.
    pub fn start_again(&mut self) -> io::Result<()> {
        self.stop();
        self.spawn()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

fn parse(text: &str) -> Option<Received> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let s = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    Some(Received {
        mail_from: s("mail_from"),
        rcpt_to: v
            .get("rcpt_tos")?
            .as_array()?
            .iter()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect(),
        tls: v.get("tls").and_then(|x| x.as_bool()).unwrap_or(false),
        authenticated: v
            .get("authenticated")
            .and_then(|x| x.as_bool())
            .unwrap_or(false),
        headers: v
            .get("headers")?
            .as_array()?
            .iter()
            .filter_map(|h| {
                let pair = h.as_array()?;
                Some((
                    pair.first()?.as_str()?.to_owned(),
                    pair.get(1)?.as_str()?.to_owned(),
                ))
            })
            .collect(),
        body: s("body"),
        raw: s("raw"),
    })
}
