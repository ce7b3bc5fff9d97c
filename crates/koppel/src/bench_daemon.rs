//! `koppel bench --daemon`: a running `koppel serve` over a built-in directory provisioned
//! with a synthetic organisation; movers pushed one after another, each timed from the push
//! request until the SCIM endpoint shows the new department; the daemon's memory idle and
//! with everyone loaded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

const TOKEN: &str = "koppel-bench-token";

/// One HTTP/1.1 request on a fresh connection: the status and the body.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw);
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Ok((status, body))
}

/// Resident and peak memory (MB) and CPU time (s) of a process, from /proc.
fn usage(pid: u32) -> (f64, f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.get(s.rfind(')')? + 2..)?.to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let u: f64 = f.get(11)?.parse().ok()?;
            let k: f64 = f.get(12)?.parse().ok()?;
            Some((u + k) / 100.0)
        })
        .unwrap_or(0.0);
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0, cpu)
}

/// A `koppel serve` child, stopped with SIGTERM when dropped.
struct Serve {
    child: Child,
    port: u16,
}

impl Serve {
    fn start(dir: &Path, now: &str) -> anyhow::Result<(Serve, Duration)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let t = Instant::now();
        let child = Command::new(std::env::current_exe()?)
            .current_dir(dir)
            .args([
                "serve",
                "--now",
                now,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .env("KOPPEL_BENCH_TOKEN", TOKEN)
            .env("KOPPEL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("serve.log"))?)
            .spawn()?;
        let serve = Serve { child, port };
        loop {
            if let Ok((200, _)) = http(port, "GET", "/readyz", b"") {
                return Ok((serve, t.elapsed()));
            }
            if t.elapsed() > Duration::from_secs(600) {
                bail!("koppel serve did not get ready in 10 minutes; see serve.log");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

const SERVE: &str = r#"
[serve.api]
tokens = [{ token_env = "KOPPEL_BENCH_TOKEN", scope = "admin" }]

[serve.scim]
target = "ad"
tokens = [{ token_env = "KOPPEL_BENCH_TOKEN" }]
"#;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

pub fn run(persons: usize, seed: u64, pushes: usize) -> anyhow::Result<ExitCode> {
    let today = koppel_core::Date::from_ymd_opt(2026, 11, 23).context("a valid date")?;
    let now = today.to_string();
    let dir = tempfile::tempdir()?;

    // Idle: the daemon over an organisation of one.
    let idle_dir = dir.path().join("idle");
    let one = koppel_synth::generate(&koppel_synth::Options::new(1, seed, today));
    koppel_synth::write_csv(&one, &idle_dir.join("hr"))?;
    std::fs::write(
        idle_dir.join("koppel.toml"),
        crate::bench::bench_config(&one, "hr")
            .replace("kind = \"scim\"", "kind = \"directory\"")
            .replace("kind = \"rest\"", "kind = \"directory\"")
            + SERVE,
    )?;
    let idle = {
        let (s, _) = Serve::start(&idle_dir, &now)?;
        std::thread::sleep(Duration::from_millis(500));
        usage(s.child.id())
    };

    // The organisation, provisioned by `koppel apply` into the built-in directory.
    let work = dir.path().join("org");
    let snapshot = koppel_synth::generate(&koppel_synth::Options::new(persons, seed, today));
    koppel_synth::write_csv(&snapshot, &work.join("hr"))?;
    let text = crate::bench::bench_config(&snapshot, "hr")
        .replace("kind = \"scim\"", "kind = \"directory\"")
        .replace("kind = \"rest\"", "kind = \"directory\"")
        + SERVE;
    std::fs::write(work.join("koppel.toml"), &text)?;
    eprintln!("provisioning {persons} persons with koppel apply (minutes at 100,000)");
    let t = Instant::now();
    let out = Command::new(std::env::current_exe()?)
        .current_dir(&work)
        .args(["apply", "--now", &now])
        .env("KOPPEL_LOG", "warn")
        .output()?;
    if !out.status.success() {
        bail!(
            "koppel apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let provisioned = t.elapsed();

    let (serve, ready) = Serve::start(&work, &now)?;
    let pid = serve.child.id();
    std::thread::sleep(Duration::from_millis(500));
    let loaded = usage(pid);

    // Movers: persons with an account and an active contract, to another department.
    let departments: Vec<(&String, &koppel_core::Department)> =
        snapshot.departments.iter().collect();
    let candidates: Vec<&koppel_core::Person> = snapshot
        .persons
        .iter()
        .filter(|p| !p.excluded && p.contracts.len() == 1 && p.contracts[0].is_active_on(today))
        .collect();
    if candidates.len() < pushes || departments.len() < 2 {
        bail!("too few active persons for {pushes} pushes");
    }
    let step = candidates.len() / pushes;
    let mut latencies = Vec::with_capacity(pushes);
    let mut polls = 0usize;
    let cpu_before = usage(pid).2;
    let started = Instant::now();
    for i in 0..pushes {
        let mut person = candidates[i * step].clone();
        let old = person.contracts[0].department.clone();
        let (code, dept) = departments
            .iter()
            .cycle()
            .skip(i % departments.len())
            .find(|(c, _)| **c != old)
            .context("another department")?;
        person.contracts[0].department = (*code).clone();
        let want = format!("\"department\":\"{}\"", dept.name);
        let body = serde_json::to_vec(&person)?;
        let t = Instant::now();
        let (status, answer) = http(serve.port, "POST", "/api/v1/push/persons", &body)?;
        if status != 202 && status != 200 {
            bail!("push {i} answered {status}: {answer}");
        }
        let path = format!("/Users/{}", person.external_id);
        loop {
            polls += 1;
            let (status, user) = http(serve.port, "GET", &path, b"")?;
            if status == 200 && user.contains(&want) {
                break;
            }
            if t.elapsed() > Duration::from_secs(60) {
                bail!("push {i} not visible after 60 s: {status} {user}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        latencies.push(t.elapsed());
    }
    let wall = started.elapsed();
    let after = usage(pid);
    drop(serve);

    latencies.sort();
    let mean = latencies.iter().sum::<Duration>().as_secs_f64() * 1000.0 / pushes as f64;
    println!(
        "koppel bench --daemon: {persons} persons in the built-in directory (3 directory targets, 50 rules), {pushes} movers pushed one after another"
    );
    println!(
        "  provisioning (koppel apply)       {:>8.1} s",
        provisioned.as_secs_f64()
    );
    println!(
        "  daemon start to ready             {:>8.2} s   (sources and known state read)",
        ready.as_secs_f64()
    );
    println!(
        "  push → visible over SCIM          p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, mean {:.1} ms ({polls} polls)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
        mean
    );
    println!(
        "  {pushes} pushes                        {:>8.2} s wall, daemon CPU {:.2} s ({:.1} ms a push)",
        wall.as_secs_f64(),
        after.2 - cpu_before,
        (after.2 - cpu_before) * 1000.0 / pushes as f64
    );
    println!(
        "  daemon RSS: idle (1 person) {:.0} MB; {persons} persons loaded {:.0} MB; after the pushes {:.0} MB, peak {:.0} MB",
        idle.0, loaded.0, after.0, after.1
    );
    Ok(ExitCode::SUCCESS)
}
