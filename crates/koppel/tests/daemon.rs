//! `koppel serve` as a daemon, end to end: the real binary on a temporary store with the demo
//! organisation, driven over HTTP. Pushes plan and apply one person; a push stands until the
//! source changes that person; webhook runs, schedules, tokens and scopes, the OpenAPI
//! document, metrics; SIGTERM in the middle of a run and a restart that finishes it.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ADMIN: &str = "daemon-test-admin";
const READ: &str = "daemon-test-read";
const PUSH: &str = "daemon-test-push";

/// The demo workspace with the admin API configured (three tokens by reference).
fn workspace(extra: &str) -> tempfile::TempDir {
    let ws = common::demo_workspace();
    let path = ws.path().join("koppel.toml");
    let mut config = std::fs::read_to_string(&path).unwrap();
    config.push_str(&format!(
        r#"
[serve]
shutdown_grace_seconds = 0

[serve.api]
tokens = [
  {{ token_env = "T_ADMIN", scope = "admin" }},
  {{ token_env = "T_READ", scope = "read" }},
  {{ token_file = "push-token", scope = "push" }},
]
max_body_bytes = 65536
{extra}"#
    ));
    std::fs::write(&path, config).unwrap();
    std::fs::write(ws.path().join("push-token"), format!("{PUSH}\n")).unwrap();
    ws
}

fn koppel(dir: &Path) -> Command {
    let mut c = common::koppel(dir);
    c.env("T_ADMIN", ADMIN)
        .env("T_READ", READ)
        .env("KOPPEL_SCIM_TOKEN", "scim-token")
        .env_remove("KOPPEL_LOG");
    c
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `koppel serve`; killed when dropped.
struct Daemon {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        Self::launch(dir, "2026-11-23", &[])
    }

    fn launch(dir: &Path, now: &str, env: &[(&str, &str)]) -> Daemon {
        let port = free_port();
        let log = dir.join(format!("serve-{port}.log"));
        let mut cmd = koppel(dir);
        cmd.args([
            "serve",
            "--now",
            now,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let d = Daemon {
            child: Some(cmd.spawn().unwrap()),
            port,
            log,
        };
        let started = Instant::now();
        loop {
            if let Ok((200, _)) = d.call("GET", "/readyz", None, None) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "koppel serve did not get ready:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One HTTP/1.1 request: the status and the body.
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let body = body.unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        // A body over the limit is refused before it is read: the write may fail.
        let _ = s.write_all(body);
        let mut raw = Vec::new();
        // A refused body may reset the connection after the answer: keep what was read.
        if let Err(e) = s.read_to_end(&mut raw)
            && raw.is_empty()
        {
            return Err(e);
        }
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let status = raw
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let head_end = raw.find("\r\n\r\n").map_or(raw.len(), |i| i + 4);
        let head = &raw[..head_end];
        let mut body = raw[head_end..].to_owned();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        Ok((status, body))
    }

    /// A JSON call that must answer `want`.
    fn json(&self, method: &str, path: &str, token: &str, body: Option<Value>, want: u16) -> Value {
        let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
        let (status, text) = self
            .call(method, path, Some(token), bytes.as_deref())
            .unwrap();
        assert_eq!(
            status,
            want,
            "{method} {path}: {text}\nlog:\n{}",
            self.log()
        );
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM, then waits for the exit; the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut child = self.child.take().unwrap();
        let started = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "koppel serve did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// The person's account in `target`, as the API reports it.
fn account(d: &Daemon, target: &str, person: &str) -> Value {
    let v = d.json(
        "GET",
        &format!("/api/v1/targets/{target}/accounts?person={person}"),
        READ,
        None,
        200,
    );
    v["accounts"][0].clone()
}

/// A full run through the webhook, waited for.
fn full_run(d: &Daemon) -> Value {
    let run = d.json("POST", "/api/v1/runs?wait=120", ADMIN, None, 200);
    assert_eq!(run["status"], "done", "{run}");
    run
}

fn set_department_in_csv(dir: &Path, person: &str, department: &str) {
    let path = dir.join("hr/contracts.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let mut cols: Vec<&str> = l.split(',').collect();
            if cols.get(1) == Some(&person) {
                cols[4] = department;
            }
            cols.join(",")
        })
        .collect();
    std::fs::write(&path, out.join("\n") + "\n").unwrap();
}

#[test]
fn pushes_apply_one_person_and_stand_until_the_source_changes_that_person() {
    let ws = workspace("");
    let dir = ws.path();
    let d = Daemon::start(dir);

    let first = full_run(&d);
    assert!(
        first["summary"]["applied"].as_u64().unwrap() > 1000,
        "{first}"
    );
    assert_eq!(
        account(&d, "directory", "1000001")["attributes"]["department_code"],
        "BZ"
    );

    // A mover, pushed: planned and applied alone, journaled and audited.
    let mut record = d.json("GET", "/api/v1/persons/1000001", READ, None, 200)["record"].clone();
    record["contracts"][0]["department"] = json!("BRP");
    let pushed = d.json(
        "POST",
        "/api/v1/push/persons?wait=60",
        PUSH,
        Some(record.clone()),
        200,
    );
    assert_eq!(pushed["changed"], json!(["1000001"]));
    let summary = &pushed["run"]["summary"];
    assert_eq!(pushed["run"]["status"], "done", "{pushed}");
    assert_eq!(summary["persons"], 1, "one person planned: {pushed}");
    assert_eq!(summary["failed"], 0);
    assert!(
        summary["counts"]["directory"]["update"].as_u64() == Some(1),
        "{summary}"
    );
    let acc = account(&d, "directory", "1000001");
    assert_eq!(acc["attributes"]["department_code"], "BRP");
    let perms: Vec<&str> = acc["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        perms.contains(&"afd-brp") && !perms.contains(&"afd-bz"),
        "{perms:?}"
    );
    let plan_id = summary["plan_id"].as_str().unwrap();
    let plan = d.json("GET", &format!("/api/v1/plans/{plan_id}"), READ, None, 200);
    assert_eq!(plan["status"], "applied");
    assert_eq!(plan["journal"]["done"], plan["actions_total"]);
    assert!(
        plan["actions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["person"] == "1000001")
    );
    let audit = d.json(
        "GET",
        "/api/v1/audit?person=1000001&target=directory",
        READ,
        None,
        200,
    );
    let last = audit["entries"].as_array().unwrap().last().unwrap().clone();
    assert!(
        last["record"]["actor"]
            .as_str()
            .unwrap()
            .contains("push (token_file push-token)"),
        "{last}"
    );
    assert_eq!(last["record"]["plan_id"], plan_id);

    // The same record again: nothing to do, no run.
    let again = d.json(
        "POST",
        "/api/v1/push/persons",
        PUSH,
        Some(record.clone()),
        200,
    );
    assert_eq!(again["unchanged"], json!(["1000001"]));
    assert_eq!(again["run"], Value::Null);

    // A contract record: the title changes.
    let mut contract = record["contracts"][0].clone();
    contract["person"] = json!("1000001");
    contract["title"] = json!({ "code": "X1", "name": "Teamleider" });
    let c = d.json(
        "POST",
        "/api/v1/push/contracts?wait=60",
        PUSH,
        Some(contract),
        200,
    );
    assert_eq!(c["run"]["status"], "done", "{c}");
    assert_eq!(
        account(&d, "directory", "1000001")["attributes"]["title"],
        "Teamleider"
    );

    // Bad records are named and nothing is taken.
    let (status, text) = d
        .call(
            "POST",
            "/api/v1/push/persons",
            Some(PUSH),
            Some(br#"[{"external_id": "1000002", "naam": "x"}, {"external_id": ""}]"#),
        )
        .unwrap();
    assert_eq!(status, 422, "{text}");
    assert!(
        text.contains("person [0] (external_id \\\"1000002\\\")"),
        "{text}"
    );
    assert!(text.contains("unknown field `naam`"), "{text}");
    let (status, text) = d
        .call(
            "POST",
            "/api/v1/push/contracts",
            Some(PUSH),
            Some(br#"{"person": "nobody", "id": "x", "start": "2026-01-01"}"#),
        )
        .unwrap();
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("\\\"nobody\\\""), "{text}");
    let (status, _) = d
        .call("POST", "/api/v1/push/persons", Some(PUSH), Some(b"{"))
        .unwrap();
    assert_eq!(status, 400);
    let big = vec![b' '; 70_000];
    let (status, _) = d
        .call("POST", "/api/v1/push/persons", Some(PUSH), Some(&big))
        .unwrap();
    assert_eq!(status, 413, "max_body_bytes = 65536");

    // A full run while the source still has the old record: the push stands.
    let run = full_run(&d);
    assert_eq!(run["summary"]["actions"], 0, "{run}");
    assert_eq!(
        account(&d, "directory", "1000001")["attributes"]["department_code"],
        "BRP"
    );
    let p = d.json("GET", "/api/v1/persons/1000001", READ, None, 200);
    assert!(p["pushed"]["pushed_at"].is_string(), "{p}");

    // The source changes that person: the source's record wins.
    set_department_in_csv(dir, "1000001", "FIN");
    let run = full_run(&d);
    assert!(run["summary"]["actions"].as_u64().unwrap() > 0, "{run}");
    assert_eq!(
        account(&d, "directory", "1000001")["attributes"]["department_code"],
        "FIN"
    );
    let p = d.json("GET", "/api/v1/persons/1000001", READ, None, 200);
    assert_eq!(p["pushed"], Value::Null, "{p}");

    // A webhook for one person reads the source again for that person only.
    set_department_in_csv(dir, "1000001", "BZ");
    set_department_in_csv(dir, "1000003", "BZ");
    let run = d.json(
        "POST",
        "/api/v1/runs?wait=60",
        ADMIN,
        Some(json!({ "person": "1000001" })),
        200,
    );
    assert_eq!(run["summary"]["persons"], 1, "{run}");
    assert_eq!(
        account(&d, "directory", "1000001")["attributes"]["department_code"],
        "BZ"
    );
    assert_eq!(
        account(&d, "directory", "1000003")["attributes"]["department_code"],
        "FIN",
        "not planned: unchanged until the next full run"
    );

    // Reads: persons, explain, targets, health, runs, status.
    let persons = d.json("GET", "/api/v1/persons?q=mulder&limit=5", READ, None, 200);
    assert!(persons["total"].as_u64().unwrap() >= 1, "{persons}");
    assert!(
        persons["persons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["external_id"] == "1000001")
    );
    let explain = d.json("GET", "/api/v1/persons/1000001/explain", READ, None, 200);
    assert_eq!(explain["person"], "1000001");
    assert!(
        explain["targets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["target"] == "directory" && t["account"] == true)
    );
    d.json("GET", "/api/v1/persons/nobody/explain", READ, None, 404);
    let targets = d.json("GET", "/api/v1/targets", READ, None, 200);
    assert!(targets["targets"][0]["accounts"].as_u64().unwrap() > 400);
    d.json("GET", "/api/v1/targets/nowhere/accounts", READ, None, 404);
    let health = d.json("GET", "/api/v1/health", READ, None, 200);
    assert_eq!(health["ok"], true, "{health}");
    let runs = d.json("GET", "/api/v1/runs?status=done", READ, None, 200);
    assert!(runs["runs"].as_array().unwrap().len() >= 5);
    let status = d.json("GET", "/api/v1/status", READ, None, 200);
    assert_eq!(status["ready"], "ready");
    assert_eq!(status["targets"][0]["ok"], true, "the last health probe");

    // Metrics.
    let (status, metrics) = d.call("GET", "/metrics", None, None).unwrap();
    assert_eq!(status, 200);
    for line in [
        r#"koppel_runs_total{work="persons",outcome="done"} 3"#,
        r#"koppel_actions_total{target="directory",kind="update",outcome="applied"}"#,
        "koppel_queue_depth 0",
        "koppel_held_plans 0",
        r#"koppel_pushed_records_total{record="person"} 2"#,
        r#"koppel_target_up{target="directory"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line}:\n{metrics}");
    }

    // The SCIM endpoint is mounted on the same listener.
    let (status, _) = d
        .call("GET", "/Users?count=1", Some("scim-token"), None)
        .unwrap();
    assert_eq!(status, 200);

    // Structured logs: one JSON object a line, no token in any of them.
    let log = d.log();
    let mut json_lines = 0;
    for line in log.lines() {
        // Lines of tracing are JSON; anything else on standard error is not a log line.
        if line.starts_with('{') {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert!(v["fields"].is_object(), "{line}");
            json_lines += 1;
        }
        for secret in [ADMIN, READ, PUSH, "scim-token"] {
            assert!(!line.contains(secret), "a token in the log: {line}");
        }
    }
    assert!(json_lines > 5, "{log}");
}

#[test]
fn tokens_scopes_and_the_openapi_document() {
    let ws = workspace("");
    let d = Daemon::start(ws.path());

    let (status, text) = d.call("GET", "/api/v1/openapi.json", None, None).unwrap();
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/runs",
        "/runs/{id}",
        "/plans",
        "/plans/{id}",
        "/plans/{id}/approve",
        "/plans/{id}/reject",
        "/persons",
        "/persons/{id}",
        "/persons/{id}/explain",
        "/targets",
        "/targets/{target}/accounts",
        "/health",
        "/audit",
        "/push/persons",
        "/push/contracts",
        "/status",
    ] {
        assert!(paths.contains_key(p), "{p} is not documented");
    }
    let mut secured = 0;
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let url = format!("/api/v1{}", path.replace(['{', '}'], ""));
            let method = method.to_uppercase();
            // Every documented route exists; every secured one refuses a call without a
            // token, and with a wrong one, saying nothing more.
            let (status, body) = d.call(&method, &url, None, None).unwrap();
            if op["security"].as_array().unwrap().is_empty() {
                assert_eq!(status, 200, "{method} {url}");
                continue;
            }
            secured += 1;
            assert_eq!(status, 401, "{method} {url}: {body}");
            assert_eq!(
                serde_json::from_str::<Value>(&body).unwrap(),
                json!({ "error": "a valid bearer token is required" })
            );
            let (status, _) = d.call(&method, &url, Some("wrong"), None).unwrap();
            assert_eq!(status, 401, "{method} {url}");
            let scope = op["x-koppel-scope"].as_str().unwrap();
            for (token, name) in [(READ, "read"), (PUSH, "push")] {
                let (status, body) = d.call(&method, &url, Some(token), None).unwrap();
                if name == scope {
                    assert_ne!(status, 403, "{method} {url} with {name}");
                } else {
                    assert_eq!(status, 403, "{method} {url} with {name}: {body}");
                    assert!(body.contains(&format!("scope {scope}")), "{body}");
                }
            }
        }
    }
    assert!(secured >= 17, "{secured}");
    let (status, _) = d.call("GET", "/api/v1/nothing", Some(ADMIN), None).unwrap();
    assert_eq!(status, 404);
    let (status, body) = d
        .call("GET", "/api/v1/runs?stauts=done", Some(READ), None)
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("stauts"), "{body}");
}

#[test]
fn validate_checks_serve_settings_and_schedules() {
    let ws = workspace("");
    let dir = ws.path();
    common::ok(dir, &["validate"]);
    let path = dir.join("koppel.toml");
    let good = std::fs::read_to_string(&path).unwrap();

    std::fs::write(&path, good.replace("max_body_bytes", "max_bodybytes")).unwrap();
    let o = koppel(dir).arg("validate").output().unwrap();
    assert!(!o.status.success());
    let text = common::text(&o);
    assert!(
        text.contains("[serve.api]") && text.contains("max_bodybytes"),
        "{text}"
    );

    std::fs::write(
        &path,
        good.replace("dir = \"hr\"", "dir = \"hr\"\nschedule = \"61 * * * *\""),
    )
    .unwrap();
    let o = koppel(dir).arg("validate").output().unwrap();
    assert!(!o.status.success());
    let text = common::text(&o);
    assert!(
        text.contains("#1 (csv hr)") && text.contains("61 * * * *"),
        "{text}"
    );

    std::fs::write(
        &path,
        good.replace("scope = \"read\"", "scope = \"reader\""),
    )
    .unwrap();
    let o = koppel(dir).arg("validate").output().unwrap();
    assert!(!o.status.success());
    assert!(common::text(&o).contains("reader"), "{}", common::text(&o));
}

/// Reads the run records and the schedule state straight from the store file.
fn store_rows(dir: &Path, sql: &str) -> Vec<Vec<String>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Row;
        let pool =
            sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("koppel.db").display()))
                .await
                .unwrap();
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&pool)
            .await
            .unwrap();
        let out = rows
            .iter()
            .map(|r| {
                (0..r.columns().len())
                    .map(|i| {
                        r.try_get::<Option<String>, _>(i)
                            .ok()
                            .flatten()
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .collect();
        pool.close().await;
        out
    })
}

#[test]
fn schedules_fire_and_a_time_missed_while_stopped_runs_at_start() {
    let ws = workspace("");
    let dir = ws.path();
    let path = dir.join("koppel.toml");
    // Once, four seconds from now (the daemon reads the machine's local time, as this does).
    #[allow(clippy::disallowed_methods)]
    let at = chrono::Local::now() + chrono::Duration::seconds(4);
    let cron = at.format("%S %M %H * * *").to_string();
    let config = std::fs::read_to_string(&path).unwrap().replace(
        "dir = \"hr\"",
        &format!("dir = \"hr\"\nschedule = \"{cron}\""),
    );
    std::fs::write(&path, config).unwrap();

    let mut d = Daemon::start(dir);
    let started = Instant::now();
    let run = loop {
        let runs = d.json("GET", "/api/v1/runs?status=done", READ, None, 200);
        if let Some(r) = runs["runs"].as_array().unwrap().first() {
            break r.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no scheduled run"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        run["trigger"]
            .as_str()
            .unwrap()
            .starts_with(&format!("schedule \"{cron}\" of source #1 (csv hr)")),
        "{run}"
    );
    assert!(run["summary"]["applied"].as_u64().unwrap() > 1000);
    let status = d.json("GET", "/api/v1/status", READ, None, 200);
    assert!(status["schedules"][0]["last_fired"].is_string(), "{status}");
    assert!(status["schedules"][0]["next_due"].is_string(), "{status}");
    assert!(d.terminate().success());

    // The state is in the store: the last firing, moved back a day as if the daemon had been
    // stopped since, is found missed at the next start and run once.
    let rows = store_rows(dir, "SELECT key, last_fired FROM daemon_schedules");
    assert_eq!(rows.len(), 1);
    assert!(!rows[0][1].is_empty());
    let config = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&cron, "0 0 3 * * *");
    std::fs::write(&path, config).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("koppel.db").display()))
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO daemon_schedules (key, cron, last_fired) VALUES ('source 1: 0 0 3 * * *', '0 0 3 * * *', '2000-01-01T03:00:00.000+00:00')",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    });
    let d = Daemon::start(dir);
    let started = Instant::now();
    loop {
        let runs = d.json("GET", "/api/v1/runs", READ, None, 200);
        let missed = runs["runs"].as_array().unwrap().iter().find(|r| {
            r["trigger"]
                .as_str()
                .is_some_and(|t| t.contains("while koppel serve was stopped"))
        });
        if let Some(r) = missed
            && r["status"] == "done"
        {
            assert_eq!(r["summary"]["actions"], 0, "nothing changed: {r}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{runs}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Everything that must match a clean run: the known state and what each directory holds.
fn fingerprint(dir: &Path) -> String {
    let mut out = String::new();
    for args in [
        &["state", "--output", "json"][..],
        &["accounts", "directory", "--output", "json"][..],
        &["accounts", "plek", "--output", "json"][..],
    ] {
        out.push_str(&common::ok(dir, args));
    }
    out
}

#[test]
fn sigterm_cuts_the_run_in_flight_and_a_restart_finishes_it_and_the_queue() {
    let clean = workspace("");
    common::ok(clean.path(), &["apply", "--now", "2026-11-23"]);
    let expected = fingerprint(clean.path());

    let ws = workspace("");
    let dir = ws.path();
    let resume = dir.join("resume");
    let resume_path = resume.display().to_string();
    let mut d = Daemon::launch(
        dir,
        "2026-11-23",
        &[
            ("KOPPEL_TEST_PAUSE_AT", "5"),
            ("KOPPEL_TEST_RESUME_FILE", &resume_path),
            ("KOPPEL_BATCH", "200"),
        ],
    );
    let run = d.json("POST", "/api/v1/runs", ADMIN, None, 202);
    let id = run["id"].as_i64().unwrap();
    // Paused inside the run, after a few batches: a second request queues behind it.
    let started = Instant::now();
    while !d.log().contains("KOPPEL-PAUSED") {
        assert!(started.elapsed() < Duration::from_secs(60), "{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let queued = d.json(
        "POST",
        "/api/v1/runs",
        ADMIN,
        Some(json!({ "person": "1000001" })),
        202,
    );
    assert_eq!(queued["status"], "queued");
    // SIGTERM: no new work; the grace period is 0, so once the paused batch goes on the
    // run is cut off at its next step.
    let term = Command::new("kill")
        .args(["-TERM", &d.pid().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&resume, "").unwrap();
    let mut child = d.child.take().unwrap();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "a clean exit: {exit:?}\n{}", d.log());
    assert!(d.log().contains("cut off"), "{}", d.log());
    let rows = store_rows(
        dir,
        "SELECT CAST(id AS TEXT), status FROM daemon_runs ORDER BY id",
    );
    assert_eq!(
        rows,
        vec![
            vec![id.to_string(), "queued".to_owned()],
            vec![queued["id"].to_string(), "queued".to_owned()]
        ]
    );

    // The restart finishes the cut-off run (its journal) and the queued one.
    let d = Daemon::start(dir);
    let started = Instant::now();
    loop {
        let runs = d.json("GET", "/api/v1/runs?status=done", READ, None, 200);
        if runs["runs"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{runs}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(d);
    assert!(
        fingerprint(dir) == expected,
        "after SIGTERM and a restart the result differs from a clean run"
    );
    let verify = common::ok(dir, &["audit", "verify"]);
    assert!(verify.contains("intact"), "{verify}");
    let o = koppel(dir)
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
        "nothing left: {}",
        common::text(&o)
    );
}

#[test]
fn a_held_plan_is_approved_through_the_api() {
    // A threshold of 2 disables holds a month of leavers.
    let ws = workspace("");
    let dir = ws.path();
    let path = dir.join("koppel.toml");
    let config = std::fs::read_to_string(&path).unwrap().replacen(
        "lifecycle = { create_days_before = 14, disable_grace_days = 0, delete_after_days = 90 }",
        "lifecycle = { create_days_before = 14, disable_grace_days = 0, delete_after_days = 90 }\nthresholds = { disable = 2 }",
        1,
    );
    std::fs::write(&path, config).unwrap();
    common::ok(dir, &["apply", "--now", "2026-11-23"]);
    common::use_hr(dir, "hr-month-later");
    let d = Daemon::launch(dir, "2026-12-23", &[]);
    let run = d.json("POST", "/api/v1/runs?wait=120", ADMIN, None, 200);
    let summary = &run["summary"];
    assert!(summary["withheld"].as_u64().unwrap() > 2, "{run}");
    assert!(
        summary["breaches"][0].as_str().unwrap().contains("disable"),
        "{run}"
    );
    let plan_id = summary["plan_id"].as_str().unwrap().to_owned();
    let held = d.json("GET", "/api/v1/plans?status=held", READ, None, 200);
    assert_eq!(held["plans"][0]["id"], plan_id.as_str());
    let (_, metrics) = d.call("GET", "/metrics", None, None).unwrap();
    assert!(metrics.contains("koppel_held_plans 1"), "{metrics}");

    d.json(
        "POST",
        &format!("/api/v1/plans/{plan_id}/approve"),
        READ,
        None,
        403,
    );
    let approved = d.json(
        "POST",
        &format!("/api/v1/plans/{plan_id}/approve?wait=120"),
        ADMIN,
        None,
        200,
    );
    assert_eq!(approved["status"], "done", "{approved}");
    assert_eq!(
        approved["summary"]["applied"], summary["withheld"],
        "{approved}"
    );
    let plan = d.json("GET", &format!("/api/v1/plans/{plan_id}"), READ, None, 200);
    assert_eq!(plan["status"], "approved");
    d.json(
        "POST",
        &format!("/api/v1/plans/{plan_id}/reject"),
        ADMIN,
        None,
        409,
    );
    // The daemon's known state follows the approval: the next run has nothing to do.
    let again = full_run(&d);
    assert_eq!(again["summary"]["actions"], 0, "{again}");
}
