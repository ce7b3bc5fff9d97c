//! koppel's durable state: known state, the previous snapshot, saved plans, the journal and
//! the hash-chained audit log, behind one `Store` trait; `SqliteStore` keeps it in one file.
//!
//! The store never reads the clock: every date and timestamp comes from the caller, so runs
//! stay deterministic and testable.

mod audit;
mod codec;
mod error;
mod sqlite;
mod types;

pub use audit::GENESIS_HASH;
pub use error::StoreError;
pub use sqlite::SqliteStore;
pub use types::{
    AuditEntry, AuditEvent, AuditFilter, AuditProblem, AuditProblemKind, AuditRecord, AuditReport,
    Intent, JournalEntry, JournalStatus, OutboxMessage, Outcome, PlanStatus, StoredPlan,
};

use koppel_core::{Action, Date, KnownState, Snapshot};

/// Everything koppel keeps between runs. Written so that a PostgreSQL implementation can
/// follow without changing callers: no SQLite type appears here.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// The known state of every target, as the journal's outcomes left it.
    async fn known_state(&self) -> Result<KnownState, StoreError>;

    /// Increments on every change of the known state; a saved plan records it, and applying
    /// a saved plan is refused when it moved.
    async fn state_version(&self) -> Result<u64, StoreError>;

    /// The snapshot of the previous run, if any was saved.
    async fn previous_snapshot(&self) -> Result<Option<Snapshot>, StoreError>;

    /// Stores the snapshot as the previous one for the next run. Skips the write when the
    /// content is identical to the stored one (content hash): runs with no change stay fast.
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError>;

    /// Inserts the plan, or replaces the one with the same id.
    async fn save_plan(&self, plan: &StoredPlan) -> Result<(), StoreError>;

    async fn plan(&self, id: &str) -> Result<Option<StoredPlan>, StoreError>;

    /// Fails with [`StoreError::NoPlan`] when no plan has this id.
    async fn set_plan_status(&self, id: &str, status: PlanStatus) -> Result<(), StoreError>;

    /// Plans with this status (all plans for `None`), oldest first.
    async fn plans(&self, status: Option<PlanStatus>) -> Result<Vec<StoredPlan>, StoreError>;

    /// Writes the intent of each action, `(seq, action)`, before the target is called. One
    /// transaction; idempotent per `(plan_id, seq)`: an intent already written is left as
    /// it is, outcome included.
    async fn journal_intents(
        &self,
        plan_id: &str,
        intents: &[(u64, &Action)],
    ) -> Result<(), StoreError>;

    /// Records what the target did, in one transaction: each journal row marked done or
    /// failed; for a success the known state updated exactly as `KnownState::record` would,
    /// and the account's reference set when the outcome carries one; the state version
    /// bumped when anything succeeded; `audit` appended to the hash chain.
    ///
    /// Every outcome must have a pending intent: an outcome without one, or for an intent
    /// that already has an outcome, fails the whole call with [`StoreError::Journal`].
    async fn journal_outcomes(
        &self,
        plan_id: &str,
        outcomes: &[Outcome],
        now: Date,
        audit: &[AuditRecord],
    ) -> Result<(), StoreError>;

    /// Intents with no outcome yet, oldest plan first, in seq order: what a killed run left.
    async fn open_intents(&self) -> Result<Vec<Intent>, StoreError>;

    /// Every journal entry of a plan, in seq order.
    async fn journal(&self, plan_id: &str) -> Result<Vec<JournalEntry>, StoreError>;

    /// Appends to the audit log (approvals, rejections, holds: what no outcome carries).
    async fn audit_append(&self, records: &[AuditRecord]) -> Result<(), StoreError>;

    /// Audit entries matching the filter, in seq order; with a limit, the most recent ones.
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError>;

    /// Checks the whole hash chain and reports what was changed, removed or reordered.
    async fn audit_verify(&self) -> Result<AuditReport, StoreError>;

    /// Adds notification e-mails to the outbox, in one transaction; a message whose key the
    /// outbox already holds (sent or not) is left as it is. Returns how many were added.
    async fn outbox_add(&self, messages: &[OutboxMessage]) -> Result<usize, StoreError>;

    /// The messages not sent yet, oldest first.
    async fn outbox_pending(&self) -> Result<Vec<OutboxMessage>, StoreError>;

    /// Marks a message sent at `at` and appends `audit`, in one transaction.
    async fn outbox_sent(&self, key: &str, at: &str, audit: &AuditRecord)
    -> Result<(), StoreError>;

    /// Counts a failed attempt with its error and appends `audit`, in one transaction; the
    /// message stays pending.
    async fn outbox_failed(
        &self,
        key: &str,
        error: &str,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
}
