//! Runs the Microsoft Graph (Entra ID) stand-in for the examples and benchmarks:
//!
//! ```sh
//! koppel-apps-fixture graph --listen 127.0.0.1:8710
//! ```
//!
//! Options: `--write-quota N --write-window S` (default 3000 per 150 s) and `--ru-quota N
//! --ru-window S` (default 8000 per 10 s), Graph's documented identity limits. The tenant is
//! `contoso.onmicrosoft.com`, the client id `11111111-2222-3333-4444-555555555555`, the
//! secret `fixture-secret`. It prints its address and runs until killed.

use std::time::Duration;

use koppel_apps_fixture::{GraphFixture, GraphOptions};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let num = |name: &str, d: u64| -> u64 { opt(name).and_then(|v| v.parse().ok()).unwrap_or(d) };
    if args.first().map(String::as_str) != Some("graph") {
        eprintln!(
            "usage: koppel-apps-fixture graph [--listen ADDR] [--write-quota N --write-window S] [--ru-quota N --ru-window S]"
        );
        std::process::exit(2);
    }
    let options = GraphOptions {
        write_quota: num("--write-quota", 3000) as u32,
        write_window: Duration::from_secs(num("--write-window", 150)),
        ru_quota: num("--ru-quota", 8000) as u32,
        ru_window: Duration::from_secs(num("--ru-window", 10)),
        ..GraphOptions::default()
    };
    let listen = opt("--listen").unwrap_or_else(|| "127.0.0.1:8710".into());
    match GraphFixture::start_on(options, &listen) {
        Ok(f) => {
            println!("Microsoft Graph stand-in on {}", f.url());
            loop {
                std::thread::park();
            }
        }
        Err(e) => {
            eprintln!("koppel-apps-fixture: cannot listen on {listen}: {e}");
            std::process::exit(2);
        }
    }
}
