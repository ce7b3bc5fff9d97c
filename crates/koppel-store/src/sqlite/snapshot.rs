//! The previous snapshot: persons as JSON in chunks, (de)serialised in parallel, and a
//! content hash so that an unchanged source costs no write.

use koppel_core::{Person, Snapshot};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;

use super::state::to_json;
use super::{begin_write, get, to_i64};
use crate::error::{Doing, StoreError, corrupt};

/// Persons per row: enough rows to keep both cores busy, few enough to cost nothing.
const CHUNK: usize = 2_000;

pub async fn save(pool: &SqlitePool, snapshot: &Snapshot) -> Result<(), StoreError> {
    // Serialising 100k persons takes tens of milliseconds; it runs on this thread (and
    // rayon's) because the snapshot is borrowed.
    let departments = to_json(&snapshot.departments, "departments")?;
    // Each chunk is hashed where it is serialised, so the hash costs no extra pass.
    let chunks: Vec<(String, [u8; 32])> = snapshot
        .persons
        .par_chunks(CHUNK)
        .map(|c| {
            let json = to_json(c, "persons")?;
            let hash = sha256(&json);
            Ok::<_, StoreError>((json, hash))
        })
        .collect::<Result<_, _>>()?;
    let hash = content_hash(&departments, &chunks);

    let stored: Option<String> = sqlx::query_scalar("SELECT hash FROM snapshot WHERE id = 1")
        .fetch_optional(pool)
        .await
        .doing("reading the snapshot hash")?;
    if stored.as_deref() == Some(hash.as_str()) {
        return Ok(());
    }

    let mut tx = begin_write(pool).await?;
    sqlx::query("DELETE FROM snapshot_persons")
        .execute(&mut *tx)
        .await
        .doing("replacing the snapshot")?;
    for (i, (chunk, _)) in chunks.iter().enumerate() {
        sqlx::query("INSERT INTO snapshot_persons (chunk, persons) VALUES (?1, ?2)")
            .bind(to_i64(i as u64, "snapshot chunk")?)
            .bind(chunk)
            .execute(&mut *tx)
            .await
            .doing("writing the snapshot")?;
    }
    sqlx::query(
        "INSERT INTO snapshot (id, hash, persons, departments) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET hash = excluded.hash, persons = excluded.persons,
                                        departments = excluded.departments",
    )
    .bind(&hash)
    .bind(to_i64(snapshot.persons.len() as u64, "person count")?)
    .bind(&departments)
    .execute(&mut *tx)
    .await
    .doing("writing the snapshot")?;
    tx.commit().await.doing("committing the snapshot")
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// sha256 over the departments' hash and each chunk's hash, in order.
fn content_hash(departments: &str, chunks: &[(String, [u8; 32])]) -> String {
    let mut h = Sha256::new();
    h.update(sha256(departments));
    for (_, chunk) in chunks {
        h.update(chunk);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn load(pool: &SqlitePool) -> Result<Option<Snapshot>, StoreError> {
    let head = sqlx::query("SELECT persons, departments FROM snapshot WHERE id = 1")
        .fetch_optional(pool)
        .await
        .doing("reading the snapshot")?;
    let Some(head) = head else {
        return Ok(None);
    };
    let count: i64 = get(&head, 0)?;
    let departments: String = get(&head, 1)?;
    let chunks: Vec<String> =
        sqlx::query_scalar("SELECT persons FROM snapshot_persons ORDER BY chunk")
            .fetch_all(pool)
            .await
            .doing("reading the snapshot")?;
    let snapshot = tokio::task::spawn_blocking(move || -> Result<Snapshot, StoreError> {
        let parts: Vec<Vec<Person>> = chunks
            .par_iter()
            .map(|c| serde_json::from_str(c))
            .collect::<Result<_, _>>()
            .map_err(|e| corrupt(format!("snapshot persons: {e}")))?;
        Ok(Snapshot {
            persons: parts.into_iter().flatten().collect(),
            departments: serde_json::from_str(&departments)
                .map_err(|e| corrupt(format!("snapshot departments: {e}")))?,
        })
    })
    .await
    .map_err(|e| corrupt(format!("reading the snapshot: {e}")))??;
    if snapshot.persons.len() as i64 != count {
        return Err(corrupt(format!(
            "the snapshot should hold {count} persons but holds {}",
            snapshot.persons.len()
        )));
    }
    Ok(Some(snapshot))
}
