//! The journal: intents written before target calls, outcomes after, and with the outcomes
//! the known state, the state version and the audit log, all in one transaction.

use std::collections::{BTreeMap, BTreeSet};

use koppel_core::{Action, ActionKind, Date, KnownAccount, TargetState};
use sqlx::SqlitePool;

use super::state::{self, AccountRow, to_json};
use super::{audit, begin_write, get, to_i64, to_u64};
use crate::error::{Doing, StoreError, corrupt};
use crate::types::{AuditRecord, Intent, JournalEntry, JournalStatus, Outcome};

pub async fn intents(
    pool: &SqlitePool,
    plan_id: &str,
    intents: &[(u64, &Action)],
) -> Result<(), StoreError> {
    if intents.is_empty() {
        return Ok(());
    }
    let mut rows = Vec::with_capacity(intents.len());
    for (seq, action) in intents {
        rows.push((to_i64(*seq, "journal seq")?, to_json(action, "action")?));
    }
    let mut tx = begin_write(pool).await?;
    for chunk in rows.chunks(4096) {
        sqlx::query(
            "INSERT INTO journal (plan_id, seq, action)
             SELECT ?1, value->>0, value->>1 FROM json_each(?2) WHERE true
             ON CONFLICT (plan_id, seq) DO NOTHING",
        )
        .bind(plan_id)
        .bind(to_json(chunk, "intents")?)
        .execute(&mut *tx)
        .await
        .doing("writing intents")?;
    }
    tx.commit().await.doing("committing intents")
}

pub async fn outcomes(
    pool: &SqlitePool,
    plan_id: &str,
    outcomes: &[Outcome],
    now: Date,
    audit_records: &[AuditRecord],
) -> Result<(), StoreError> {
    if outcomes.is_empty() && audit_records.is_empty() {
        return Ok(());
    }
    let mut done = Vec::new();
    let mut failed = Vec::new();
    let mut errors = serde_json::Map::new();
    for o in outcomes {
        let seq = to_i64(o.seq, "journal seq")?;
        match &o.result {
            Ok(_) => done.push(seq),
            Err(e) => {
                failed.push(seq);
                errors.insert(seq.to_string(), e.clone().into());
            }
        }
    }

    let mut tx = begin_write(pool).await?;

    // `seq IN (list)` makes SQLite look each seq up in the (plan_id, seq) index; a join
    // with json_each let it scan the whole list for every pending row instead.
    let mut marked = 0;
    if !done.is_empty() {
        marked += sqlx::query(
            "UPDATE journal SET status = 'done', error = NULL
             WHERE plan_id = ?1 AND seq IN (SELECT value FROM json_each(?2))
               AND status = 'pending'",
        )
        .bind(plan_id)
        .bind(to_json(&done, "outcomes")?)
        .execute(&mut *tx)
        .await
        .doing("recording outcomes")?
        .rows_affected();
    }
    if !failed.is_empty() {
        marked += sqlx::query(
            "UPDATE journal SET status = 'failed', error = ?3 ->> ('$.\"' || seq || '\"')
             WHERE plan_id = ?1 AND seq IN (SELECT value FROM json_each(?2))
               AND status = 'pending'",
        )
        .bind(plan_id)
        .bind(to_json(&failed, "outcomes")?)
        .bind(to_json(&errors, "outcome errors")?)
        .execute(&mut *tx)
        .await
        .doing("recording failed outcomes")?
        .rows_affected();
    }
    if marked != outcomes.len() as u64 {
        // Dropping the transaction rolls the marks back.
        return Err(explain_mismatch(pool, plan_id, outcomes).await);
    }

    // The accounts the successes touch, as stored, changed in memory by koppel-core's own
    // rules (KnownAccount::apply, TargetState::release): one read, one write.
    let succeeded: Vec<(&Action, Option<&String>)> = outcomes
        .iter()
        .filter_map(|o| match &o.result {
            Ok(reference) => Some((&o.action, reference.as_ref())),
            Err(_) => None,
        })
        .collect();
    if !succeeded.is_empty() {
        let keys: BTreeSet<(&str, &str)> = succeeded
            .iter()
            .map(|(a, _)| (a.target.as_str(), a.person.as_str()))
            .collect();
        let keys: Vec<(&str, &str)> = keys.into_iter().collect();
        let stored = state::read_accounts(&mut tx, &keys).await?;
        let mut accounts: BTreeMap<(&str, &str), Option<KnownAccount>> = keys
            .iter()
            .map(|&(t, p)| (t, p))
            .map(|(t, p)| ((t, p), stored.get(&(t.to_owned(), p.to_owned())).cloned()))
            .collect();
        let mut released: BTreeMap<String, TargetState> = BTreeMap::new();
        let mut targets = BTreeSet::new();
        for (action, reference) in &succeeded {
            targets.insert(action.target.as_str());
            let slot = accounts
                .entry((action.target.as_str(), action.person.as_str()))
                .or_default();
            if action.kind == ActionKind::Delete {
                *slot = None;
                released
                    .entry(action.target.clone())
                    .or_default()
                    .release(action, now);
                continue;
            }
            let account = slot.get_or_insert_with(KnownAccount::default);
            account.apply(action, now);
            if let Some(reference) = reference {
                account.reference = (*reference).clone();
            }
        }
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for ((target, person), account) in &accounts {
            match account {
                Some(account) => upserts.push(AccountRow {
                    target,
                    person,
                    account,
                }),
                None => deletes.push((*target, *person)),
            }
        }
        state::delete_accounts(&mut tx, &deletes).await?;
        state::write_accounts(&mut tx, &upserts).await?;
        state::write_released(&mut tx, &released).await?;
        state::touch_targets(&mut tx, &targets).await?;
        state::bump_version(&mut tx).await?;
    }

    audit::append(&mut tx, audit_records).await?;
    tx.commit().await.doing("committing outcomes")
}

/// Why the marks did not match the outcomes: which seq has no intent or has an outcome.
async fn explain_mismatch(pool: &SqlitePool, plan_id: &str, outcomes: &[Outcome]) -> StoreError {
    let mut seen = BTreeSet::new();
    for o in outcomes {
        if !seen.insert(o.seq) {
            return StoreError::Journal {
                plan_id: plan_id.to_owned(),
                what: format!("seq {} has two outcomes in one batch", o.seq),
            };
        }
    }
    let rows = sqlx::query("SELECT seq, status FROM journal WHERE plan_id = ?1")
        .bind(plan_id)
        .fetch_all(pool)
        .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(source) => {
            return StoreError::Sql {
                doing: "reading the journal",
                source,
            };
        }
    };
    let mut statuses: BTreeMap<i64, String> = BTreeMap::new();
    for r in &rows {
        match (get(r, 0), get(r, 1)) {
            (Ok(seq), Ok(status)) => {
                statuses.insert(seq, status);
            }
            (Err(e), _) | (_, Err(e)) => return e,
        }
    }
    for o in outcomes {
        let what = match i64::try_from(o.seq).ok().and_then(|s| statuses.get(&s)) {
            None => format!("seq {} has an outcome but no intent was written", o.seq),
            Some(s) if s != "pending" => format!("seq {} already has an outcome ({s})", o.seq),
            Some(_) => continue,
        };
        return StoreError::Journal {
            plan_id: plan_id.to_owned(),
            what,
        };
    }
    StoreError::Journal {
        plan_id: plan_id.to_owned(),
        what: "outcomes do not match the pending intents".to_owned(),
    }
}

pub async fn open_intents(pool: &SqlitePool) -> Result<Vec<Intent>, StoreError> {
    // Oldest plan first: the plan whose first journal row was written first.
    let rows = sqlx::query(
        "WITH open AS (SELECT DISTINCT plan_id FROM journal WHERE status = 'pending'),
              first AS (SELECT j.plan_id, min(j.id) AS first_id
                        FROM journal AS j JOIN open USING (plan_id) GROUP BY j.plan_id)
         SELECT j.plan_id, j.seq, j.action
         FROM journal AS j JOIN first USING (plan_id)
         WHERE j.status = 'pending'
         ORDER BY first.first_id, j.seq",
    )
    .fetch_all(pool)
    .await
    .doing("reading open intents")?;
    rows.iter()
        .map(|r| {
            Ok(Intent {
                plan_id: get(r, 0)?,
                seq: to_u64(get(r, 1)?, "journal seq")?,
                action: parse_action(get(r, 2)?)?,
            })
        })
        .collect()
}

pub async fn entries(pool: &SqlitePool, plan_id: &str) -> Result<Vec<JournalEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, action, status, error FROM journal WHERE plan_id = ?1 ORDER BY seq",
    )
    .bind(plan_id)
    .fetch_all(pool)
    .await
    .doing("reading the journal")?;
    rows.iter()
        .map(|r| {
            let status: &str = get(r, 2)?;
            Ok(JournalEntry {
                seq: to_u64(get(r, 0)?, "journal seq")?,
                action: parse_action(get(r, 1)?)?,
                status: JournalStatus::parse(status)
                    .ok_or_else(|| corrupt(format!("journal status {status:?}")))?,
                error: get(r, 3)?,
            })
        })
        .collect()
}

fn parse_action(text: &str) -> Result<Action, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("journaled action: {e}")))
}
