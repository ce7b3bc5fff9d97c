//! Runs a Visma Youforce or AFAS Profit stand-in with a synthetic organisation, for the
//! examples and benchmarks:
//!
//! ```sh
//! koppel-hr-fixture visma --listen 127.0.0.1:8700 --persons 500 --today 2026-11-23
//! koppel-hr-fixture afas  --listen 127.0.0.1:8701 --persons 500 --today 2026-11-23
//! ```
//!
//! Options: `--seed N`, `--rate-limit N` and `--window-seconds S` (Visma's spike arrest,
//! default 100 per 60 s), `--token-lifetime S`. It prints its address and runs until killed.

use koppel_hr_fixture::{AfasFixture, AfasOptions, VismaFixture, VismaOptions, tenant};

fn main() {
    if let Err(e) = run() {
        eprintln!("koppel-hr-fixture: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kind = args.first().cloned().unwrap_or_default();
    let opt = |name: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let num = |name: &str, d: u64| -> Result<u64, String> {
        opt(name).map_or(Ok(d), |v| {
            v.parse()
                .map_err(|_| format!("{name}: {v:?} is not a number"))
        })
    };
    let listen = opt("--listen").unwrap_or_else(|| "127.0.0.1:0".into());
    let persons = num("--persons", 500)? as usize;
    let seed = num("--seed", 42)?;
    let today = opt("--today")
        .unwrap_or_else(|| "2026-11-23".into())
        .parse()
        .map_err(|_| "--today: not a date (YYYY-MM-DD)".to_owned())?;
    let org = tenant::synthetic(persons, seed, today);
    match kind.as_str() {
        "visma" => {
            let options = VismaOptions {
                rate_limit: num("--rate-limit", 100)? as u32,
                window: std::time::Duration::from_secs(num("--window-seconds", 60)?),
                token_lifetime: std::time::Duration::from_secs(num("--token-lifetime", 3600)?),
                ..VismaOptions::default()
            };
            let (id, secret, tenant_id) = (
                options.client_id.clone(),
                options.client_secret.clone(),
                options.tenant_id.clone(),
            );
            let f = VismaFixture::start_on(options, tenant::visma(&org, today), &listen)
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            println!(
                "Youforce IAM API stand-in on {} ({persons} persons): client_id {id}, tenant_id {tenant_id}, client secret {secret:?}",
                f.url()
            );
            wait();
        }
        "afas" => {
            let options = AfasOptions::default();
            let token = options.token.clone();
            let f = AfasFixture::start_on(options, tenant::afas(&org), &listen)
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            println!(
                "AFAS Profit REST stand-in on {} ({persons} persons): token data {token}",
                f.url()
            );
            wait();
        }
        _ => return Err("usage: koppel-hr-fixture visma|afas [--listen ADDR] [--persons N] [--seed N] [--today YYYY-MM-DD] [--rate-limit N] [--window-seconds S] [--token-lifetime S]".into()),
    }
    Ok(())
}

fn wait() {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}
