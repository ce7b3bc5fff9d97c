//! The notification outbox: e-mails kept from the run that caused them until the SMTP server
//! accepts them; marking one sent or failed and its audit entry share one transaction.

use sqlx::SqlitePool;
use sqlx::sqlite::SqliteRow;

use super::state::to_json;
use super::{audit, begin_write, get, to_u64};
use crate::error::{Doing, StoreError, corrupt};
use crate::types::{AuditRecord, OutboxMessage};

const COLUMNS: &str =
    "key, created_at, event, plan_id, person, recipients, subject, body, attempts, last_error";

pub async fn add(pool: &SqlitePool, messages: &[OutboxMessage]) -> Result<usize, StoreError> {
    if messages.is_empty() {
        return Ok(0);
    }
    let mut tx = begin_write(pool).await?;
    let mut added = 0u64;
    for m in messages {
        added += sqlx::query(
            "INSERT INTO outbox (key, created_at, event, plan_id, person, recipients, subject, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(&m.key)
        .bind(&m.created_at)
        .bind(&m.event)
        .bind(&m.plan_id)
        .bind(&m.person)
        .bind(to_json(&m.to, "recipients")?)
        .bind(&m.subject)
        .bind(&m.body)
        .execute(&mut *tx)
        .await
        .doing("adding to the outbox")?
        .rows_affected();
    }
    tx.commit().await.doing("committing the outbox")?;
    Ok(usize::try_from(added).unwrap_or(usize::MAX))
}

pub async fn pending(pool: &SqlitePool) -> Result<Vec<OutboxMessage>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outbox WHERE sent_at IS NULL ORDER BY created_at, key"
    )))
    .fetch_all(pool)
    .await
    .doing("reading the outbox")?;
    rows.iter().map(decode).collect()
}

fn decode(row: &SqliteRow) -> Result<OutboxMessage, StoreError> {
    let recipients: String = get(row, 5)?;
    let attempts: i64 = get(row, 8)?;
    Ok(OutboxMessage {
        key: get(row, 0)?,
        created_at: get(row, 1)?,
        event: get(row, 2)?,
        plan_id: get(row, 3)?,
        person: get(row, 4)?,
        to: serde_json::from_str(&recipients)
            .map_err(|e| corrupt(format!("outbox recipients: {e}")))?,
        subject: get(row, 6)?,
        body: get(row, 7)?,
        attempts: u32::try_from(to_u64(attempts, "outbox attempts")?).unwrap_or(u32::MAX),
        last_error: get(row, 9)?,
    })
}

/// Sets `sent_at` (when `sent` is given) or the error of the attempt, counts the attempt and
/// appends the audit record, all in one transaction.
pub async fn attempted(
    pool: &SqlitePool,
    key: &str,
    sent: Option<&str>,
    error: Option<&str>,
    record: &AuditRecord,
) -> Result<(), StoreError> {
    let mut tx = begin_write(pool).await?;
    let changed = sqlx::query(
        "UPDATE outbox SET attempts = attempts + 1, sent_at = ?2,
             last_error = coalesce(?3, last_error)
         WHERE key = ?1 AND sent_at IS NULL",
    )
    .bind(key)
    .bind(sent)
    .bind(error)
    .execute(&mut *tx)
    .await
    .doing("recording a send attempt")?
    .rows_affected();
    if changed == 0 {
        return Err(corrupt(format!("the outbox has no unsent message {key:?}")));
    }
    audit::append(&mut tx, std::slice::from_ref(record)).await?;
    tx.commit().await.doing("committing a send attempt")
}
