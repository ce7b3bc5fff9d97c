//! The values the store takes and gives: saved plans, journal entries, audit records.
//! Plain data, serde round-trippable, shared by every `Store` implementation.

use std::fmt;

use koppel_core::plan::Reason;
use koppel_core::{Action, ActionKind, Plan};
use serde::{Deserialize, Serialize};

/// A plan kept for later: saved by `koppel plan --save`, held by a threshold, approved or
/// rejected by a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPlan {
    pub id: String,
    /// RFC 3339, given by the caller.
    pub created_at: String,
    /// The state version the plan was made against; applying is refused when it moved.
    pub state_version: u64,
    pub status: PlanStatus,
    pub plan: Plan,
    /// The (target, kind) pairs a threshold withheld.
    pub withheld: Vec<(String, ActionKind)>,
    pub note: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    Saved,
    Held,
    Applying,
    Applied,
    Approved,
    Rejected,
}

impl PlanStatus {
    pub const ALL: [PlanStatus; 6] = [
        PlanStatus::Saved,
        PlanStatus::Held,
        PlanStatus::Applying,
        PlanStatus::Applied,
        PlanStatus::Approved,
        PlanStatus::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::Saved => "saved",
            PlanStatus::Held => "held",
            PlanStatus::Applying => "applying",
            PlanStatus::Applied => "applied",
            PlanStatus::Approved => "approved",
            PlanStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for PlanStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the target did with one journaled action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub seq: u64,
    pub action: Action,
    /// `Ok` with the reference a create got from the target (if any), or the error message.
    pub result: Result<Option<String>, String>,
}

/// An action journaled before its target call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    pub plan_id: String,
    pub seq: u64,
    pub action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalStatus {
    /// Intent written, no outcome yet.
    Pending,
    Done,
    Failed,
}

impl JournalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JournalStatus::Pending => "pending",
            JournalStatus::Done => "done",
            JournalStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(JournalStatus::Pending),
            "done" => Some(JournalStatus::Done),
            "failed" => Some(JournalStatus::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub seq: u64,
    pub action: Action,
    pub status: JournalStatus,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditEvent {
    Applied,
    Failed,
    Approved,
    Rejected,
    Held,
    /// A notification e-mail the SMTP server accepted.
    Notified,
    /// A notification e-mail that could not be sent; it stays in the outbox for the next run.
    NotificationFailed,
}

impl AuditEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::Applied => "applied",
            AuditEvent::Failed => "failed",
            AuditEvent::Approved => "approved",
            AuditEvent::Rejected => "rejected",
            AuditEvent::Held => "held",
            AuditEvent::Notified => "notified",
            AuditEvent::NotificationFailed => "notification_failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            AuditEvent::Applied,
            AuditEvent::Failed,
            AuditEvent::Approved,
            AuditEvent::Rejected,
            AuditEvent::Held,
            AuditEvent::Notified,
            AuditEvent::NotificationFailed,
        ]
        .into_iter()
        .find(|e| e.as_str() == s)
    }
}

/// One audit log record, as the caller gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// RFC 3339 timestamp from the caller (UTC, so that text order is time order): the
    /// store never reads the clock itself.
    pub at: String,
    /// Who did it: "koppel apply", "admin", …
    pub actor: String,
    pub event: AuditEvent,
    pub plan_id: Option<String>,
    pub target: Option<String>,
    pub person: Option<String>,
    pub action: Option<ActionKind>,
    pub permission: Option<String>,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
    pub reasons: Vec<Reason>,
    pub error: Option<String>,
}

/// An audit record as stored: its place in the chain and the hashes that seal it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub record: AuditRecord,
    pub prev_hash: String,
    pub hash: String,
}

/// Which audit entries to read. Dates are RFC 3339 timestamps or prefixes of one
/// (`2026-03`, `2026-03-01`), both bounds inclusive: `to = 2026-03-01` includes that day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFilter {
    pub person: Option<String>,
    pub target: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// At most this many entries: the most recent matches, still in seq order.
    pub limit: Option<usize>,
}

/// The outcome of checking the audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    /// Rows read.
    pub entries: u64,
    pub problems: Vec<AuditProblem>,
}

impl AuditReport {
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.problems.is_empty() {
            return write!(f, "audit log intact: {} entries", self.entries);
        }
        write!(
            f,
            "audit log tampered: {} problem(s) in {} entries",
            self.problems.len(),
            self.entries
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditProblemKind {
    /// The entry's content or hashes no longer match what was written.
    Changed,
    /// The entry is missing: a gap in the chain, or the end cut off.
    Removed,
    /// The entry is intact but sits at another place than it was written at.
    Reordered,
}

/// One thing wrong with the audit chain, at the entry with this seq.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditProblem {
    pub seq: u64,
    pub what: AuditProblemKind,
    /// A sentence for people.
    pub detail: String,
}

impl fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.what {
            AuditProblemKind::Changed => "changed",
            AuditProblemKind::Removed => "removed",
            AuditProblemKind::Reordered => "reordered",
        };
        write!(f, "entry {}: {what}: {}", self.seq, self.detail)
    }
}

/// One e-mail in the notification outbox: added when the run that caused it is applied, kept
/// until the SMTP server accepts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// The message's identity (event, plan, person, targets): adding a key the outbox already
    /// holds, sent or not, changes nothing.
    pub key: String,
    /// RFC 3339, given by the caller.
    pub created_at: String,
    /// `joiner`, `leaver`, `held`, …
    pub event: String,
    pub plan_id: Option<String>,
    pub person: Option<String>,
    /// The addresses it goes to.
    pub to: Vec<String>,
    pub subject: String,
    /// Plain text.
    pub body: String,
    /// Send attempts so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}
