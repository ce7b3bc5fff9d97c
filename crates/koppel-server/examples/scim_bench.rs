//! Benchmark server: fills a fresh store's built-in directory with N users (`user000001` …)
//! and G groups of members, then serves the SCIM endpoint until killed.
//! `cargo run --release -p koppel-server --example scim_bench -- PORT N G TOKEN STORE_DIR`

use std::net::SocketAddr;

use koppel_server::{Directory, Mapping, ScimState, scim_router};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_owned());
    let port: u16 = arg(1, "18900").parse()?;
    let users: usize = arg(2, "100000").parse()?;
    let groups: usize = arg(3, "1000").parse()?;
    let token = arg(4, "bench-token");
    let dir = std::path::PathBuf::from(arg(5, "target/scim-bench"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("koppel.db");
    let _ = std::fs::remove_file(&path);
    let store = koppel_store::SqliteStore::open(&path).await?;
    let pool = store.pool().clone();
    let directory = Directory::open(pool.clone(), "directory", Mapping::default_mapping()).await?;
    // Bulk load in SQL: the endpoint's own POST is measured by wrk, not here.
    let mut tx = pool.begin().await?;
    for i in 1..=users {
        let name = format!("user{i:06}");
        let attributes = json!({
            "username": name,
            "given_name": format!("Given{i}"),
            "family_name": format!("Family{i}"),
            "display_name": format!("Given{i} Family{i}"),
            "email": format!("{name}@example.org"),
            "employee_id": format!("E{i:06}"),
        });
        sqlx::query(
            "INSERT INTO dir_accounts (id, target, reference, person, attributes, enabled)
             VALUES (?1, 'directory', ?2, ?2, ?3, 1)",
        )
        .bind(i as i64)
        .bind(format!("E{i:06}"))
        .bind(attributes.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO dir_account_keys (attribute, folded, account_id) VALUES ('username', ?1, ?2)")
            .bind(&name)
            .bind(i as i64)
            .execute(&mut *tx)
            .await?;
    }
    for g in 1..=groups {
        sqlx::query("INSERT INTO dir_groups (id, target, name) VALUES (?1, 'directory', ?2)")
            .bind(g as i64)
            .bind(format!("group{g:04}"))
            .execute(&mut *tx)
            .await?;
    }
    for i in 1..=users {
        sqlx::query("INSERT INTO dir_memberships (account_id, group_id) VALUES (?1, ?2)")
            .bind(i as i64)
            .bind(((i - 1) % groups.max(1) + 1) as i64)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let state = ScimState::new(directory, &[token], None, 1024 * 1024)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("loaded {users} users and {groups} groups; listening on {addr}");
    axum::serve(listener, scim_router(state)).await?;
    Ok(())
}
