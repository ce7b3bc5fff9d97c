//! The audit log in SQLite: appends that extend the hash chain and move its head in the
//! same transaction, filtered reads, and the full check.

use koppel_core::ActionKind;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Sqlite, SqlitePool, Transaction};

use super::{get, to_i64, to_u64};
use crate::audit::{AuditRow, verify_chain};
use crate::error::{Doing, StoreError, corrupt};
use crate::types::{AuditEntry, AuditEvent, AuditFilter, AuditRecord, AuditReport};

const COLUMNS: &str = "seq, at, actor, event, plan_id, target, person, action, permission, \
                       before, after, reasons, error, prev_hash, hash";

/// Rows per INSERT: 64 × 15 parameters stays far below SQLite's limit, and one statement
/// text (plus the one-row form for the rest) keeps the statement cache small.
const INSERT_ROWS: usize = 64;

fn values_sql(rows: usize) -> String {
    let row = format!("({})", vec!["?"; 15].join(", "));
    format!(
        "INSERT INTO audit ({COLUMNS}) VALUES {}",
        vec![row; rows].join(", ")
    )
}

pub async fn append(
    tx: &mut Transaction<'static, Sqlite>,
    records: &[AuditRecord],
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_optional(&mut **tx)
        .await
        .doing("reading the audit chain head")?
        .ok_or_else(|| corrupt("the audit chain head is missing"))?;
    let mut seq: i64 = get(&head, 0)?;
    let mut prev: String = get(&head, 1)?;
    let mut rows = Vec::with_capacity(records.len());
    for r in records {
        seq += 1;
        let mut row = AuditRow::from_record(seq, r)?;
        row.seal(&prev);
        prev.clone_from(&row.hash);
        rows.push(row);
    }
    // Bound multi-row VALUES: with a JSON array SQLite parsed each row's JSON again for
    // every column it took out of it, most of the cost of a batch.
    let full = values_sql(INSERT_ROWS);
    let one = values_sql(1);
    for chunk in super::in_runs(&rows, INSERT_ROWS) {
        let sql = if chunk.len() == INSERT_ROWS {
            &full
        } else {
            &one
        };
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for r in chunk {
            q = q
                .bind(r.seq)
                .bind(&r.at)
                .bind(&r.actor)
                .bind(&r.event)
                .bind(&r.plan_id)
                .bind(&r.target)
                .bind(&r.person)
                .bind(&r.action)
                .bind(&r.permission)
                .bind(&r.before)
                .bind(&r.after)
                .bind(&r.reasons)
                .bind(&r.error)
                .bind(&r.prev_hash)
                .bind(&r.hash);
        }
        q.execute(&mut **tx)
            .await
            .doing("appending audit records")?;
    }
    sqlx::query("UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1")
        .bind(seq)
        .bind(&prev)
        .execute(&mut **tx)
        .await
        .doing("moving the audit chain head")?;
    Ok(())
}

pub async fn read(pool: &SqlitePool, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
    let mut q = QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM audit WHERE true"));
    if let Some(person) = &filter.person {
        q.push(" AND person = ").push_bind(person.clone());
    }
    if let Some(target) = &filter.target {
        q.push(" AND target = ").push_bind(target.clone());
    }
    if let Some(from) = &filter.from {
        q.push(" AND at >= ").push_bind(from.clone());
    }
    if let Some(to) = &filter.to {
        // Inclusive as a prefix: every timestamp that starts with `to` sorts below
        // `to` followed by the highest code point.
        q.push(" AND at <= ").push_bind(format!("{to}\u{10FFFF}"));
    }
    match filter.limit {
        Some(limit) => {
            q.push(" ORDER BY seq DESC LIMIT ")
                .push_bind(to_i64(limit as u64, "audit limit")?);
        }
        None => {
            q.push(" ORDER BY seq");
        }
    }
    let rows = q
        .build()
        .fetch_all(pool)
        .await
        .doing("reading the audit log")?;
    let mut entries = rows
        .iter()
        .map(|r| entry(&row(r)?))
        .collect::<Result<Vec<_>, _>>()?;
    if filter.limit.is_some() {
        entries.reverse();
    }
    Ok(entries)
}

pub async fn verify(pool: &SqlitePool) -> Result<AuditReport, StoreError> {
    // One read transaction, so that an append in between cannot look like tampering.
    let mut tx = pool.begin().await.doing("starting to read the audit log")?;
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_optional(&mut *tx)
        .await
        .doing("reading the audit chain head")?;
    let head: Option<(i64, String)> = match head {
        Some(h) => Some((get(&h, 0)?, get(&h, 1)?)),
        None => None,
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM audit ORDER BY seq"
    )))
    .fetch_all(&mut *tx)
    .await
    .doing("reading the audit log")?;
    tx.rollback().await.doing("ending the audit read")?;
    let rows: Vec<AuditRow> = rows.iter().map(row).collect::<Result<_, _>>()?;
    let problems = verify_chain(&rows, head.as_ref().map(|(s, h)| (*s, h.as_str())));
    Ok(AuditReport {
        entries: rows.len() as u64,
        problems,
    })
}

fn row(r: &SqliteRow) -> Result<AuditRow, StoreError> {
    Ok(AuditRow {
        seq: get(r, 0)?,
        at: get(r, 1)?,
        actor: get(r, 2)?,
        event: get(r, 3)?,
        plan_id: get(r, 4)?,
        target: get(r, 5)?,
        person: get(r, 6)?,
        action: get(r, 7)?,
        permission: get(r, 8)?,
        before: get(r, 9)?,
        after: get(r, 10)?,
        reasons: get(r, 11)?,
        error: get(r, 12)?,
        prev_hash: get(r, 13)?,
        hash: get(r, 14)?,
    })
}

fn entry(r: &AuditRow) -> Result<AuditEntry, StoreError> {
    let bad = |what: &str| corrupt(format!("audit entry {}: {what}", r.seq));
    let json = |text: &str, what: &str| {
        serde_json::from_str::<serde_json::Value>(text).map_err(|e| bad(&format!("{what}: {e}")))
    };
    let action = match &r.action {
        Some(a) => Some(
            ActionKind::ALL
                .into_iter()
                .find(|k| k.as_str() == a)
                .ok_or_else(|| bad(&format!("unknown action {a:?}")))?,
        ),
        None => None,
    };
    Ok(AuditEntry {
        seq: to_u64(r.seq, "audit seq")?,
        record: AuditRecord {
            at: r.at.clone(),
            actor: r.actor.clone(),
            event: AuditEvent::parse(&r.event)
                .ok_or_else(|| bad(&format!("unknown event {:?}", r.event)))?,
            plan_id: r.plan_id.clone(),
            target: r.target.clone(),
            person: r.person.clone(),
            action,
            permission: r.permission.clone(),
            before: json(&r.before, "before")?,
            after: json(&r.after, "after")?,
            reasons: serde_json::from_str(&r.reasons).map_err(|e| bad(&format!("reasons: {e}")))?,
            error: r.error.clone(),
        },
        prev_hash: r.prev_hash.clone(),
        hash: r.hash.clone(),
    })
}
