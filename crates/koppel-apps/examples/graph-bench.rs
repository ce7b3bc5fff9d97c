//! Applies N creates plus one group membership each to the Graph stand-in, with or without
//! JSON batching, under the fixture's throttling, and prints actions per second:
//!
//! ```sh
//! cargo run -p koppel-apps --example graph-bench -- --users 5000 [--no-batch] \
//!     [--write-quota 3000 --write-window 150] [--ru-quota 8000 --ru-window 10]
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use koppel_apps::graph::{self, GraphConfig};
use koppel_apps_fixture::{GraphFixture, GraphOptions};
use koppel_connectors::target::{CreateRequest, Done, Op, Target};
use koppel_core::AttrValue;

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn request(n: u64) -> CreateRequest {
    let id = format!("E{n:06}");
    let text = |s: String| AttrValue::Text(s);
    let attributes: BTreeMap<String, AttrValue> = [
        ("employeeId", text(id.clone())),
        (
            "userPrincipalName",
            text(format!("user{n}@contoso.example")),
        ),
        ("mailNickname", text(format!("user{n}"))),
        ("displayName", text(format!("User {n}"))),
        ("department", text(format!("Afdeling {}", n % 40))),
        ("jobTitle", text("Medewerker".into())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    CreateRequest {
        person: id.clone(),
        attributes,
        enabled: true,
        correlation: Some(("employeeId".into(), text(id))),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let users = arg(&args, "--users", 5000);
    let batch = !args.iter().any(|a| a == "--no-batch");
    let options = GraphOptions {
        write_quota: arg(&args, "--write-quota", 3000) as u32,
        write_window: Duration::from_secs(arg(&args, "--write-window", 150)),
        ru_quota: arg(&args, "--ru-quota", 8000) as u32,
        ru_window: Duration::from_secs(arg(&args, "--ru-window", 10)),
        ..GraphOptions::default()
    };
    let fixture = GraphFixture::start(options).expect("start the fixture");
    let secret = std::env::temp_dir().join(format!("koppel-graph-bench-{}", std::process::id()));
    std::fs::write(&secret, "fixture-secret").expect("write the secret file");
    let table: toml::Table = toml::from_str(&format!(
        "tenant = 'contoso.onmicrosoft.com'\nclient_id = '11111111-2222-3333-4444-555555555555'\n\
         client_secret_file = '{}'\nlogin_url = '{u}'\ngraph_url = '{u}'\nbatch = {batch}\n\
         max_retries = 100\n",
        secret.display(),
        u = fixture.url()
    ))
    .expect("config");
    let config = GraphConfig::from_table("entra", &table).expect("config");
    let target = graph::connect("entra", config).await.expect("connect");
    let start = Instant::now();
    // The engine hands a target batches of one kind; 500 operations each, as it does.
    let mut references = Vec::new();
    for chunk in (0..users).collect::<Vec<_>>().chunks(500) {
        let ops: Vec<Op> = chunk.iter().map(|n| Op::Create(request(*n))).collect();
        for r in target.apply(&ops).await {
            match r {
                Ok(Done::Created(c)) => references.push(c.reference().to_owned()),
                other => panic!("create failed: {other:?}"),
            }
        }
    }
    let created = start.elapsed();
    for (i, chunk) in references.chunks(500).enumerate() {
        let ops: Vec<Op> = chunk
            .iter()
            .map(|r| Op::Grant {
                reference: r.clone(),
                permission: format!("Afdeling {}", i % 10),
            })
            .collect();
        for r in target.apply(&ops).await {
            assert_eq!(r, Ok(Done::Ok), "grant failed");
        }
    }
    let total = start.elapsed();
    let stats = fixture.state.stats();
    let actions = users * 2;
    println!(
        "batch={batch} users={users} actions={actions} creates={:.1}s total={:.1}s \
         actions/s={:.0} http_requests={} operations={} throttled={} users_in_tenant={}",
        created.as_secs_f64(),
        total.as_secs_f64(),
        actions as f64 / total.as_secs_f64(),
        stats.http_requests,
        stats.operations,
        stats.throttled,
        fixture.state.user_count()
    );
    let _ = std::fs::remove_file(secret);
}
