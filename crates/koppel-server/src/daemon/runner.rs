//! What the daemon asks of the engine: the [`Runner`] trait, which the `koppel` binary
//! implements over its apply orchestration, and the plain data that crosses it.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use koppel_core::{Contract, Person};
use serde::{Deserialize, Serialize};

/// One unit of work for the worker. Runs never overlap: the worker carries out one at a
/// time, so no two ever touch a target at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Work {
    /// Plan and apply. `persons: None` is everyone (the sources are read again); a set
    /// plans and applies those persons only, with the same rules, guards, thresholds,
    /// journal and audit log. `refresh` reads the sources again for those persons first
    /// (a webhook); a push has already put their records in place and does not.
    Run {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        persons: Option<BTreeSet<String>>,
        #[serde(default)]
        refresh: bool,
    },
    /// Carry out what a threshold or guard withheld in a held plan.
    Approve { plan: String },
    /// Drop what a held plan withheld.
    Reject { plan: String },
}

impl Work {
    pub fn everyone() -> Work {
        Work::Run {
            persons: None,
            refresh: true,
        }
    }

    /// The label value for metrics: `full`, `persons`, `approve` or `reject`.
    pub fn kind(&self) -> &'static str {
        match self {
            Work::Run { persons: None, .. } => "full",
            Work::Run { .. } => "persons",
            Work::Approve { .. } => "approve",
            Work::Reject { .. } => "reject",
        }
    }
}

/// A queued run as the worker hands it to the runner.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub work: Work,
    /// What asked for it, for the audit log's actor: `schedule …`, `webhook (token …)`, …
    pub trigger: String,
}

/// One action that failed in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedAction {
    pub target: String,
    pub kind: String,
    pub person: String,
    pub error: String,
}

/// What a run did: its record in `daemon_runs`, the API's answer and the metrics' source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The plan this run made or settled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    /// Persons planned (everyone in the snapshot for a full run).
    pub persons: usize,
    /// Actions in the plan.
    pub actions: usize,
    pub applied: usize,
    pub failed: usize,
    /// Not attempted because an action they depend on failed.
    pub skipped: usize,
    /// Withheld by a threshold until an admin approves.
    pub withheld: usize,
    /// Held whole by a source guard: nothing was applied.
    pub held: bool,
    /// Plans of earlier, interrupted runs that this run finished first.
    pub resumed: usize,
    /// Applied actions per target and kind.
    pub counts: BTreeMap<String, BTreeMap<String, usize>>,
    /// Failed actions per target and kind.
    pub failed_counts: BTreeMap<String, BTreeMap<String, usize>>,
    /// The first failures, with the target's message.
    pub failures: Vec<FailedAction>,
    /// Targets that stopped answering: their work waits for the next run.
    pub unavailable: BTreeMap<String, String>,
    /// Guards and thresholds exceeded, as sentences.
    pub breaches: Vec<String>,
    /// Diagnostics of the plan (source problems, expression errors), as sentences.
    pub diagnostics: Vec<String>,
}

/// HR records pushed to the daemon.
#[derive(Debug, Clone)]
pub enum Push {
    /// Whole person records (koppel's JSON shape), contracts included: each replaces the
    /// person's record.
    Persons(Vec<Person>),
    /// Contract records, each of a person the daemon knows: each replaces the contract with
    /// its id or is added.
    Contracts(Vec<(String, Contract)>),
}

/// What a push changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pushed {
    /// Persons whose record changed: a run plans and applies them.
    pub changed: Vec<String>,
    /// Persons whose pushed record is what the daemon already had: nothing to do.
    pub unchanged: Vec<String>,
}

/// A connector's health: whether a probe round trip worked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetHealth {
    pub target: String,
    pub kind: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub millis: u64,
}

/// Paging and filtering of list calls.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Case-insensitive text to look for (external id, name).
    #[serde(default)]
    pub q: Option<String>,
    /// Only this person.
    #[serde(default)]
    pub person: Option<String>,
    #[serde(default)]
    pub offset: Option<usize>,
    #[serde(default)]
    pub limit: Option<usize>,
}

impl ListQuery {
    pub const DEFAULT_LIMIT: usize = 50;
    pub const MAX_LIMIT: usize = 1000;

    pub fn offset(&self) -> usize {
        self.offset.unwrap_or(0)
    }

    pub fn limit(&self) -> usize {
        self.limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .clamp(1, Self::MAX_LIMIT)
    }
}

/// An API error: a status and a message for the caller, which never carries a secret or
/// a stack of internals (those go to the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// A well-formed request whose records cannot be taken (422).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
    /// An internal failure: logged in full, answered with a generic message.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{context} failed; see koppel's log"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"koppel\""),
            );
        }
        r
    }
}

/// The engine side of the daemon, implemented by the `koppel` binary over its apply
/// orchestration. The daemon calls `run` from one worker only, never twice at once; the
/// other methods may be called at any time, also while a run is under way.
#[async_trait::async_trait]
pub trait Runner: Send + Sync + 'static {
    /// Reads what runs and reads need (sources, known state, pushed records); `/readyz`
    /// answers ready once this succeeded. Called once, before any other method.
    async fn load(&self) -> Result<(), String>;

    /// Carries out one job. `Err` is a run that could not be carried out at all (the
    /// sources did not load, the store failed); failures of single actions are in the
    /// summary.
    async fn run(&self, job: &Job) -> Result<RunSummary, String>;

    /// Takes pushed records in: after it returns, a run for `changed` sees them, and so
    /// does a restart. Records are checked before anything is kept: one bad record fails
    /// the whole push with a message that names it.
    async fn push(&self, push: Push, at: &str) -> Result<Pushed, ApiError>;

    /// Persons of the daemon's current view of the sources: `{ total, offset, limit, persons }`.
    async fn persons(&self, query: &ListQuery) -> Result<serde_json::Value, ApiError>;

    /// One person: the record, whether it was pushed, and the known accounts.
    async fn person(&self, id: &str) -> Result<serde_json::Value, ApiError>;

    /// Why the person has each account and permission (as `koppel explain --output json`).
    async fn explain(&self, id: &str) -> Result<serde_json::Value, ApiError>;

    /// The configured targets with the number of accounts koppel manages in each.
    async fn targets(&self) -> Result<serde_json::Value, ApiError>;

    /// The accounts koppel manages in one target: `{ target, total, offset, limit, accounts }`.
    async fn accounts(
        &self,
        target: &str,
        query: &ListQuery,
    ) -> Result<serde_json::Value, ApiError>;

    /// A probe of every target (one round trip each, bounded in time).
    async fn health(&self) -> Vec<TargetHealth>;
}
