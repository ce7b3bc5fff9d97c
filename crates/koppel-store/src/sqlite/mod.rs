//! `SqliteStore`: the `Store` in one SQLite file (WAL, versioned migrations).
//! Each submodule owns one part of the schema; this one opens the file and dispatches.

mod audit;
mod journal;
mod outbox;
mod plans;
mod snapshot;
mod state;

use std::path::{Path, PathBuf};
use std::time::Duration;

use koppel_core::{Action, Date, KnownState, Snapshot};
use sqlx::SqlitePool;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::Store;
use crate::error::{Doing, StoreError};
use crate::types::{
    AuditEntry, AuditFilter, AuditRecord, AuditReport, Intent, JournalEntry, OutboxMessage,
    Outcome, PlanStatus, StoredPlan,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a writer waits for another process's write transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// `rows` in runs of `n` while that many remain, then one at a time: two statement texts
/// (`n` rows and one row) cover any count and keep the statement cache small.
fn in_runs<T>(rows: &[T], n: usize) -> impl Iterator<Item = &[T]> {
    let (full, rest) = rows.split_at(rows.len() / n * n);
    full.chunks_exact(n).chain(rest.chunks(1))
}

/// koppel's state in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the store at `path`: WAL mode, foreign keys, busy
    /// timeout, and the migrations of `migrations/sqlite/` applied.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Under WAL, NORMAL loses at most the last transactions on power loss, never
            // consistency; FULL would fsync every journal batch.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // Reading the known state scans every account: mapped pages avoid a copy per
            // page, and a larger cache keeps the hot part of the file in memory.
            .pragma("mmap_size", "1073741824")
            .pragma("cache_size", "-32768")
            // An outcome batch dirties about a page per account; checkpointing every 1,000
            // pages (the default) made every batch pay for a checkpoint. Every 8,192 pages
            // the cost is shared by several batches, and pages written twice are copied
            // once; the WAL is cut back to 64 MiB after each checkpoint.
            .pragma("wal_autocheckpoint", "8192")
            .pragma("journal_size_limit", "67108864");
        // A few connections so that known_state can read targets in parallel; SQLite
        // serialises the writers anyway.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?;
        migrate(&pool, path).await?;
        Ok(Self { pool })
    }

    /// The pool, so that koppel's built-in directory keeps its `dir_*` tables in the same
    /// file. This store's migrations own `_sqlx_migrations`: another migrator on the same
    /// file needs its own table (`Migrator::dangerous_set_table_name`).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Replaces the whole known state at once (importing a state file, tests, benchmarks)
    /// and bumps the state version.
    pub async fn import_known_state(&self, known: &KnownState) -> Result<(), StoreError> {
        state::import(&self.pool, known).await
    }

    /// Waits for every connection to close: the file is consistent and unlocked after.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn migrate(pool: &SqlitePool, path: &Path) -> Result<(), StoreError> {
    let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    match MIGRATOR.run(pool).await {
        Ok(()) => Ok(()),
        Err(MigrateError::VersionMissing(_)) => {
            let found: Option<i64> =
                sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
                    .fetch_one(pool)
                    .await
                    .doing("reading the schema version")?;
            Err(StoreError::TooNew {
                path: path.to_owned(),
                found: found.unwrap_or(known),
                known,
            })
        }
        Err(source) => Err(StoreError::Migrate {
            path: PathBuf::from(path),
            source,
        }),
    }
}

/// Starts a write transaction that takes the write lock at once: a deferred one that reads
/// first could fail with SQLITE_BUSY when it later writes while another process wrote.
async fn begin_write(
    pool: &SqlitePool,
) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
    pool.begin_with("BEGIN IMMEDIATE")
        .await
        .doing("starting a write transaction")
}

/// A column of a row; a value of the wrong type is damage, not a bug, so no panic.
fn get<'r, T>(row: &'r sqlx::sqlite::SqliteRow, i: usize) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    use sqlx::Row as _;
    row.try_get(i)
        .map_err(|e| crate::error::corrupt(format!("unexpected value in column {i}: {e}")))
}

/// SQLite integers are i64; seqs, versions and counts are u64 in the API.
fn to_i64(n: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Encode {
        what,
        message: format!("{n} is larger than the store can hold"),
    })
}

fn to_u64(n: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| crate::error::corrupt(format!("negative {what} {n}")))
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn known_state(&self) -> Result<KnownState, StoreError> {
        state::load(&self.pool).await
    }

    async fn state_version(&self) -> Result<u64, StoreError> {
        let v: i64 = sqlx::query_scalar("SELECT version FROM state WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .doing("reading the state version")?;
        to_u64(v, "state version")
    }

    async fn previous_snapshot(&self) -> Result<Option<Snapshot>, StoreError> {
        snapshot::load(&self.pool).await
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        snapshot::save(&self.pool, snapshot).await
    }

    async fn save_plan(&self, plan: &StoredPlan) -> Result<(), StoreError> {
        plans::save(&self.pool, plan).await
    }

    async fn plan(&self, id: &str) -> Result<Option<StoredPlan>, StoreError> {
        plans::get_plan(&self.pool, id).await
    }

    async fn set_plan_status(&self, id: &str, status: PlanStatus) -> Result<(), StoreError> {
        plans::set_status(&self.pool, id, status).await
    }

    async fn plans(&self, status: Option<PlanStatus>) -> Result<Vec<StoredPlan>, StoreError> {
        plans::list(&self.pool, status).await
    }

    async fn journal_intents(
        &self,
        plan_id: &str,
        intents: &[(u64, &Action)],
    ) -> Result<(), StoreError> {
        journal::intents(&self.pool, plan_id, intents).await
    }

    async fn journal_outcomes(
        &self,
        plan_id: &str,
        outcomes: &[Outcome],
        now: Date,
        audit: &[AuditRecord],
    ) -> Result<(), StoreError> {
        journal::outcomes(&self.pool, plan_id, outcomes, now, audit).await
    }

    async fn open_intents(&self) -> Result<Vec<Intent>, StoreError> {
        journal::open_intents(&self.pool).await
    }

    async fn journal(&self, plan_id: &str) -> Result<Vec<JournalEntry>, StoreError> {
        journal::entries(&self.pool, plan_id).await
    }

    async fn audit_append(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = begin_write(&self.pool).await?;
        audit::append(&mut tx, records).await?;
        tx.commit().await.doing("committing audit records")
    }

    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        audit::read(&self.pool, filter).await
    }

    async fn audit_verify(&self) -> Result<AuditReport, StoreError> {
        audit::verify(&self.pool).await
    }

    async fn outbox_add(&self, messages: &[OutboxMessage]) -> Result<usize, StoreError> {
        outbox::add(&self.pool, messages).await
    }

    async fn outbox_pending(&self) -> Result<Vec<OutboxMessage>, StoreError> {
        outbox::pending(&self.pool).await
    }

    async fn outbox_sent(
        &self,
        key: &str,
        at: &str,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        outbox::attempted(&self.pool, key, Some(at), None, audit).await
    }

    async fn outbox_failed(
        &self,
        key: &str,
        error: &str,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        outbox::attempted(&self.pool, key, None, Some(error), audit).await
    }
}
