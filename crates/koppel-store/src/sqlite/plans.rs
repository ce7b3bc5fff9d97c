//! Saved plans: `koppel plan --save`, plans held by thresholds, approvals and rejections.
//! The plan itself is JSON: it is read whole and rarely, so a compact encoding buys nothing.

use sqlx::SqlitePool;
use sqlx::sqlite::SqliteRow;

use super::state::to_json;
use super::{get, to_i64, to_u64};
use crate::error::{Doing, StoreError, corrupt};
use crate::types::{PlanStatus, StoredPlan};

const COLUMNS: &str = "id, created_at, state_version, status, plan, withheld, note";

pub async fn save(pool: &SqlitePool, p: &StoredPlan) -> Result<(), StoreError> {
    // An upsert, not INSERT OR REPLACE: replacing would delete the row first.
    sqlx::query(
        "INSERT INTO plans (id, created_at, state_version, status, plan, withheld, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET
            created_at = excluded.created_at, state_version = excluded.state_version,
            status = excluded.status, plan = excluded.plan, withheld = excluded.withheld,
            note = excluded.note",
    )
    .bind(&p.id)
    .bind(&p.created_at)
    .bind(to_i64(p.state_version, "state version")?)
    .bind(p.status.as_str())
    .bind(to_json(&p.plan, "plan")?)
    .bind(to_json(&p.withheld, "withheld actions")?)
    .bind(&p.note)
    .execute(pool)
    .await
    .doing("saving a plan")?;
    Ok(())
}

pub async fn get_plan(pool: &SqlitePool, id: &str) -> Result<Option<StoredPlan>, StoreError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM plans WHERE id = ?1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
    .doing("reading a plan")?;
    row.as_ref().map(decode).transpose()
}

pub async fn set_status(pool: &SqlitePool, id: &str, status: PlanStatus) -> Result<(), StoreError> {
    let changed = sqlx::query("UPDATE plans SET status = ?2 WHERE id = ?1")
        .bind(id)
        .bind(status.as_str())
        .execute(pool)
        .await
        .doing("changing a plan's status")?
        .rows_affected();
    if changed == 0 {
        return Err(StoreError::NoPlan(id.to_owned()));
    }
    Ok(())
}

pub async fn list(
    pool: &SqlitePool,
    status: Option<PlanStatus>,
) -> Result<Vec<StoredPlan>, StoreError> {
    let rows = match status {
        Some(s) => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM plans WHERE status = ?1 ORDER BY created_at, id"
            )))
            .bind(s.as_str())
            .fetch_all(pool)
            .await
        }
        None => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM plans ORDER BY created_at, id"
            )))
            .fetch_all(pool)
            .await
        }
    }
    .doing("listing plans")?;
    rows.iter().map(decode).collect()
}

fn decode(r: &SqliteRow) -> Result<StoredPlan, StoreError> {
    let id: String = get(r, 0)?;
    let status: &str = get(r, 3)?;
    let plan: &str = get(r, 4)?;
    let withheld: &str = get(r, 5)?;
    let bad = |what: String| corrupt(format!("plan {id}: {what}"));
    Ok(StoredPlan {
        created_at: get(r, 1)?,
        state_version: to_u64(get(r, 2)?, "state version")?,
        status: PlanStatus::parse(status).ok_or_else(|| bad(format!("status {status:?}")))?,
        plan: serde_json::from_str(plan).map_err(|e| bad(e.to_string()))?,
        withheld: serde_json::from_str(withheld).map_err(|e| bad(e.to_string()))?,
        note: get(r, 6)?,
        id,
    })
}
