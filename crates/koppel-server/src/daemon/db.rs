//! The daemon's own tables in the store file: run records (`daemon_runs`), schedule state
//! (`daemon_schedules`) and pushed HR records (`daemon_pushed`). A small versioned schema of
//! their own (`daemon_schema`), like the built-in directory's, so a restart knows the queued
//! runs, the last and next scheduled runs and what was pushed.

use serde_json::Value;
use sqlx::{Row, SqlitePool};

use super::runner::{RunSummary, Work};

/// Each step upgrades the schema by one version; never change a step once released.
const SCHEMA_STEPS: &[&[&str]] = &[&[
    "CREATE TABLE daemon_runs (
        id          INTEGER PRIMARY KEY,
        work        TEXT NOT NULL,
        trigger     TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
        requests    INTEGER NOT NULL DEFAULT 1,
        queued_at   TEXT NOT NULL,
        started_at  TEXT,
        finished_at TEXT,
        summary     TEXT,
        error       TEXT
    )",
    "CREATE INDEX daemon_runs_open ON daemon_runs (status) WHERE status IN ('queued', 'running')",
    "CREATE TABLE daemon_schedules (
        key        TEXT PRIMARY KEY,
        cron       TEXT NOT NULL,
        last_fired TEXT,
        next_due   TEXT
    ) WITHOUT ROWID",
    "CREATE TABLE daemon_pushed (
        person    TEXT PRIMARY KEY,
        record    TEXT NOT NULL,
        base      TEXT NOT NULL,
        pushed_at TEXT NOT NULL
    ) WITHOUT ROWID",
]];

/// Creates or upgrades the daemon's tables.
pub async fn migrate(pool: &SqlitePool) -> Result<(), String> {
    let db = |e: sqlx::Error| format!("preparing the daemon's tables: {e}");
    // IMMEDIATE: two processes opening the same file at once must not both run a step.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
    sqlx::query("CREATE TABLE IF NOT EXISTS daemon_schema (version INTEGER NOT NULL)")
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    let found: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM daemon_schema")
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    let found = found.unwrap_or(0);
    let wanted = SCHEMA_STEPS.len() as i64;
    if found > wanted {
        return Err(format!(
            "the store has daemon schema version {found}, newer than the version {wanted} \
             this koppel knows: upgrade koppel or use another store file"
        ));
    }
    for step in SCHEMA_STEPS.iter().skip(found.max(0) as usize) {
        for statement in *step {
            sqlx::query(*statement)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
    }
    if found != wanted {
        sqlx::query("DELETE FROM daemon_schema")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("INSERT INTO daemon_schema (version) VALUES (?1)")
            .bind(wanted)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)
}

fn work_json(work: &Work) -> String {
    // A plain enum of strings: serialising cannot fail.
    serde_json::to_string(work).unwrap_or_default()
}

pub async fn insert_run(
    pool: &SqlitePool,
    work: &Work,
    trigger: &str,
    at: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO daemon_runs (work, trigger, status, queued_at) VALUES (?1, ?2, 'queued', ?3)
         RETURNING id",
    )
    .bind(work_json(work))
    .bind(trigger)
    .bind(at)
    .fetch_one(pool)
    .await
}

/// A queued run that another request joined: its grown work and request count.
pub async fn update_queued(
    pool: &SqlitePool,
    id: i64,
    work: &Work,
    requests: u32,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE daemon_runs SET work = ?2, requests = ?3 WHERE id = ?1")
        .bind(id)
        .bind(work_json(work))
        .bind(i64::from(requests))
        .execute(pool)
        .await
        .map(drop)
}

pub async fn start_run(pool: &SqlitePool, id: i64, at: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE daemon_runs SET status = 'running', started_at = ?2 WHERE id = ?1")
        .bind(id)
        .bind(at)
        .execute(pool)
        .await
        .map(drop)
}

pub async fn finish_run(
    pool: &SqlitePool,
    id: i64,
    at: &str,
    result: &Result<RunSummary, String>,
) -> Result<(), sqlx::Error> {
    let (status, summary, error) = match result {
        Ok(s) => ("done", serde_json::to_string(s).ok(), None),
        Err(e) => ("failed", None, Some(e.as_str())),
    };
    sqlx::query(
        "UPDATE daemon_runs SET status = ?2, finished_at = ?3, summary = ?4, error = ?5
         WHERE id = ?1",
    )
    .bind(id)
    .bind(status)
    .bind(at)
    .bind(summary)
    .bind(error)
    .execute(pool)
    .await
    .map(drop)
}

/// A run cut off by shutdown goes back to the queue for the next start.
pub async fn requeue(pool: &SqlitePool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE daemon_runs SET status = 'queued', started_at = NULL WHERE id = ?1")
        .bind(id)
        .execute(pool)
        .await
        .map(drop)
}

/// Runs a previous process left queued or running, oldest first, all marked queued.
pub async fn open_runs(pool: &SqlitePool) -> Result<Vec<(i64, Work, u32)>, sqlx::Error> {
    sqlx::query(
        "UPDATE daemon_runs SET status = 'queued', started_at = NULL WHERE status = 'running'",
    )
    .execute(pool)
    .await?;
    let rows = sqlx::query(
        "SELECT id, work, requests FROM daemon_runs WHERE status = 'queued' ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for row in rows {
        let id: i64 = row.get(0);
        let work: String = row.get(1);
        let requests: i64 = row.get(2);
        match serde_json::from_str::<Work>(&work) {
            Ok(w) => out.push((id, w, u32::try_from(requests).unwrap_or(1))),
            Err(e) => {
                tracing::error!(run = id, error = %e, "a queued run's work is unreadable; left out")
            }
        }
    }
    Ok(out)
}

fn run_json(row: &sqlx::sqlite::SqliteRow) -> Value {
    let parse = |s: Option<String>| {
        s.and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .unwrap_or(Value::Null)
    };
    serde_json::json!({
        "id": row.get::<i64, _>("id"),
        "work": parse(row.get("work")),
        "trigger": row.get::<String, _>("trigger"),
        "status": row.get::<String, _>("status"),
        "requests": row.get::<i64, _>("requests"),
        "queued_at": row.get::<String, _>("queued_at"),
        "started_at": row.get::<Option<String>, _>("started_at"),
        "finished_at": row.get::<Option<String>, _>("finished_at"),
        "summary": parse(row.get("summary")),
        "error": row.get::<Option<String>, _>("error"),
    })
}

/// Run records, newest first.
pub async fn runs(
    pool: &SqlitePool,
    status: Option<&str>,
    offset: usize,
    limit: usize,
) -> Result<Vec<Value>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT * FROM daemon_runs WHERE ?1 IS NULL OR status = ?1
         ORDER BY id DESC LIMIT ?2 OFFSET ?3",
    )
    .bind(status)
    .bind(limit as i64)
    .bind(offset as i64)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(run_json).collect())
}

pub async fn run(pool: &SqlitePool, id: i64) -> Result<Option<Value>, sqlx::Error> {
    let row = sqlx::query("SELECT * FROM daemon_runs WHERE id = ?1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(run_json))
}

/// The last finished run (done or failed) of each kind of work, for the overview.
pub async fn last_finished(pool: &SqlitePool) -> Result<Option<Value>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT * FROM daemon_runs WHERE status IN ('done', 'failed') ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(run_json))
}

/// A schedule's state: the last time it fired and the next time it is due (RFC 3339).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleRow {
    pub last_fired: Option<String>,
    pub next_due: Option<String>,
}

pub async fn schedule(pool: &SqlitePool, key: &str) -> Result<ScheduleRow, sqlx::Error> {
    let row = sqlx::query("SELECT last_fired, next_due FROM daemon_schedules WHERE key = ?1")
        .bind(key)
        .fetch_optional(pool)
        .await?;
    Ok(row.map_or_else(ScheduleRow::default, |r| ScheduleRow {
        last_fired: r.get(0),
        next_due: r.get(1),
    }))
}

pub async fn set_schedule(
    pool: &SqlitePool,
    key: &str,
    cron: &str,
    row: &ScheduleRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO daemon_schedules (key, cron, last_fired, next_due) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key) DO UPDATE SET cron = excluded.cron,
             last_fired = excluded.last_fired, next_due = excluded.next_due",
    )
    .bind(key)
    .bind(cron)
    .bind(&row.last_fired)
    .bind(&row.next_due)
    .execute(pool)
    .await
    .map(drop)
}

/// A pushed person record that stands in for the source's: the record (koppel's person
/// JSON), the digest of the source's record it replaced (`""`: the source had none) and
/// when it was pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedRow {
    pub person: String,
    pub record: String,
    pub base: String,
    pub pushed_at: String,
}

pub async fn pushed(pool: &SqlitePool) -> Result<Vec<PushedRow>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT person, record, base, pushed_at FROM daemon_pushed ORDER BY person")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|r| PushedRow {
            person: r.get(0),
            record: r.get(1),
            base: r.get(2),
            pushed_at: r.get(3),
        })
        .collect())
}

/// Stores pushed records (replacing earlier pushes of the same persons) and forgets
/// `dropped` ones, in one transaction.
pub async fn save_pushed(
    pool: &SqlitePool,
    rows: &[PushedRow],
    dropped: &[String],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() && dropped.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for r in rows {
        sqlx::query(
            "INSERT INTO daemon_pushed (person, record, base, pushed_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (person) DO UPDATE SET record = excluded.record, base = excluded.base,
                 pushed_at = excluded.pushed_at",
        )
        .bind(&r.person)
        .bind(&r.record)
        .bind(&r.base)
        .bind(&r.pushed_at)
        .execute(&mut *tx)
        .await?;
    }
    for p in dropped {
        sqlx::query("DELETE FROM daemon_pushed WHERE person = ?1")
            .bind(p)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

// Read-only views of koppel-store's `plans` table that its `Store` trait has no call for:
// listing plans without parsing every plan's actions (an initial run's plan holds hundreds
// of thousands), and counting the held ones for the metrics.

pub async fn held_plans(pool: &SqlitePool) -> Result<usize, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM plans WHERE status = 'held'")
        .fetch_one(pool)
        .await?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Plans, newest first, without their actions.
pub async fn plans(
    pool: &SqlitePool,
    status: Option<&str>,
    offset: usize,
    limit: usize,
) -> Result<Vec<Value>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, created_at, state_version, status, withheld, note FROM plans
         WHERE ?1 IS NULL OR status = ?1
         ORDER BY created_at DESC, id DESC LIMIT ?2 OFFSET ?3",
    )
    .bind(status)
    .bind(limit as i64)
    .bind(offset as i64)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let withheld: String = r.get("withheld");
            serde_json::json!({
                "id": r.get::<String, _>("id"),
                "created_at": r.get::<String, _>("created_at"),
                "state_version": r.get::<i64, _>("state_version"),
                "status": r.get::<String, _>("status"),
                "withheld": serde_json::from_str::<Value>(&withheld).unwrap_or(Value::Null),
                "note": r.get::<String, _>("note"),
            })
        })
        .collect())
}
