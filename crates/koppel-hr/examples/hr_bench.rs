//! Reads a whole HR tenant through a source and prints what it took: wall time, CPU time,
//! peak memory (this process only), requests, 429s and time spent waiting for the rate limit.
//!
//! ```sh
//! koppel-hr-fixture visma --listen 127.0.0.1:8700 --persons 20000 &
//! cargo run --release -p koppel-hr --example hr_bench -- visma http://127.0.0.1:8700
//! koppel-hr-fixture afas --listen 127.0.0.1:8701 --persons 20000 &
//! cargo run --release -p koppel-hr --example hr_bench -- afas http://127.0.0.1:8701/ProfitRestServices
//! ```
//!
//! Credentials are the fixture's (`VISMA_CLIENT_SECRET`, `AFAS_TOKEN` default to them).

use std::time::Instant;

fn status(key: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .map(|l| l[key.len()..].trim().to_owned())
        .unwrap_or_default()
}

/// User and system CPU seconds of this process.
fn cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    (tick(11), tick(12))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (kind, url) = match args.as_slice() {
        [k, u, ..] => (k.as_str(), u.as_str()),
        _ => {
            eprintln!("usage: hr_bench visma|afas URL");
            std::process::exit(2);
        }
    };
    let now: koppel_core::Date = "2026-11-23".parse().expect("date");
    let dir = std::env::temp_dir().join(format!("koppel-hr-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let (fetched, counts) = rt.block_on(async {
        match kind {
            "visma" => {
                let secret = std::env::var("VISMA_CLIENT_SECRET")
                    .unwrap_or_else(|_| "fixture-secret".into());
                std::fs::write(dir.join("secret"), secret).expect("secret");
                let table: toml::Table = toml::from_str(&format!(
                    "base_url = '{url}'\ntoken_url = '{url}/connect/token'\nclient_id = 'koppel'\n\
                     client_secret_file = 'secret'\ntenant_id = '1234567'"
                ))
                .expect("toml");
                let (c, api) =
                    koppel_hr::visma::VismaSourceConfig::from_table("bench", &table, &dir)
                        .expect("config");
                let s = koppel_hr::VismaSource::new(c, api, now).expect("source");
                let f = s.fetch_raw().await.expect("fetch");
                (f, s.client().counts())
            }
            "afas" => {
                let token = std::env::var("AFAS_TOKEN").unwrap_or_else(|_| {
                    "7748B1A4B5AF4A899588017DD71E55CBB60F8C504E2C16A17D1F9D9F42914C7C".into()
                });
                std::fs::write(dir.join("token"), token).expect("token");
                let table: toml::Table =
                    toml::from_str(&format!("base_url = '{url}'\ntoken_file = 'token'"))
                        .expect("toml");
                let (c, api) = koppel_hr::afas::AfasSourceConfig::from_table("bench", &table, &dir)
                    .expect("config");
                let s = koppel_hr::AfasSource::new(c, api).expect("source");
                let f = s.fetch_raw().await.expect("fetch");
                (f, s.client().counts())
            }
            other => panic!("unknown kind {other}"),
        }
    });
    let wall = started.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    let (user, sys) = cpu();
    let contracts: usize = fetched
        .snapshot
        .persons
        .iter()
        .map(|p| p.contracts.len())
        .sum();
    println!(
        "{kind}: {} persons, {contracts} contracts, {} departments in {:.1} s wall, {user:.2} s user + {sys:.2} s system CPU, peak RSS {}",
        fetched.snapshot.persons.len(),
        fetched.snapshot.departments.len(),
        wall.as_secs_f64(),
        status("VmHWM:"),
    );
    println!(
        "  {} requests, {} answered 429, {} retries, {:.1} s waiting for the rate limit",
        counts.requests,
        counts.rate_limited,
        counts.retries,
        counts.waited_ms as f64 / 1000.0
    );
}
