//! The `Target` trait: a system where accounts live. Every connector implements it and passes
//! the shared conformance suite; the executor never knows which system it talks to.

use std::collections::{BTreeMap, BTreeSet};

use koppel_core::AttrValue;

/// An account as the target has it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetAccount {
    /// The target's own reference: a DN, an id.
    pub reference: String,
    pub attributes: BTreeMap<String, AttrValue>,
    pub enabled: bool,
    pub permissions: BTreeSet<String>,
}

/// What `create` is asked to make.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    /// The person's external id, for targets that keep it (the built-in directory does).
    pub person: String,
    pub attributes: BTreeMap<String, AttrValue>,
    pub enabled: bool,
    /// The correlation attribute and value: an existing account with it is adopted.
    pub correlation: Option<(String, AttrValue)>,
}

/// How `create` went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A new account with this reference.
    New(String),
    /// An existing account found by correlation, brought to the requested attributes and
    /// enabled state: creating twice never makes two accounts.
    Adopted(String),
}

impl Created {
    pub fn reference(&self) -> &str {
        match self {
            Created::New(r) | Created::Adopted(r) => r,
        }
    }
}

/// One operation on a target, as the executor sends it.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Create(CreateRequest),
    /// Attribute → new value; `Null` clears the attribute.
    Update {
        reference: String,
        changes: BTreeMap<String, AttrValue>,
    },
    SetEnabled {
        reference: String,
        enabled: bool,
    },
    Delete {
        reference: String,
    },
    Grant {
        reference: String,
        permission: String,
    },
    Revoke {
        reference: String,
        permission: String,
    },
}

/// What a successful operation gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    Created(Created),
    Ok,
}

/// Why a target operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The target cannot be reached or stopped answering: nothing is known to have happened,
    /// the run stops for this target and the next run resumes.
    #[error("{target} is unavailable: {message}")]
    Unavailable { target: String, message: String },
    /// The target refused this one entry (a constraint, a conflict): the action fails with
    /// the target's message and the rest of the run goes on.
    #[error("{target} refused: {message}")]
    Rejected { target: String, message: String },
    /// The account the operation is for does not exist in the target.
    #[error("{target} has no account {reference}")]
    NoSuchAccount { target: String, reference: String },
    /// The connector is configured wrongly: fix the configuration.
    #[error("{target} configuration: {message}")]
    Config { target: String, message: String },
}

impl TargetError {
    /// True when the failure says nothing about the entry itself, so the run should stop
    /// for this target and resume later rather than record the action as failed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, TargetError::Unavailable { .. })
    }
}

/// A system where accounts live.
///
/// Every operation is idempotent in effect: creating an account that correlation finds adopts
/// it, granting a membership that exists and revoking one that does not succeed, deleting a
/// missing account succeeds. `update` changes only the attributes it is given.
#[async_trait::async_trait]
pub trait Target: Send + Sync {
    /// The target's name in the configuration.
    fn name(&self) -> &str;

    /// The account whose `attribute` has `value`, if there is one.
    async fn correlate(
        &self,
        attribute: &str,
        value: &AttrValue,
    ) -> Result<Option<TargetAccount>, TargetError>;

    /// One account by reference.
    async fn get(&self, reference: &str) -> Result<Option<TargetAccount>, TargetError>;

    async fn create(&self, request: &CreateRequest) -> Result<Created, TargetError>;

    async fn update(
        &self,
        reference: &str,
        changes: &BTreeMap<String, AttrValue>,
    ) -> Result<(), TargetError>;

    async fn set_enabled(&self, reference: &str, enabled: bool) -> Result<(), TargetError>;

    async fn delete(&self, reference: &str) -> Result<(), TargetError>;

    async fn grant(&self, reference: &str, permission: &str) -> Result<(), TargetError>;

    async fn revoke(&self, reference: &str, permission: &str) -> Result<(), TargetError>;

    /// Every account the target holds (for reconcile and conformance checks).
    async fn list_accounts(&self) -> Result<Vec<TargetAccount>, TargetError>;

    /// Every permission the target knows.
    async fn list_permissions(&self) -> Result<Vec<String>, TargetError>;

    /// True when no account other than `except` (a reference) has `value` in `attribute`,
    /// compared case-insensitively: generators check this before handing a value out.
    async fn is_unique(
        &self,
        attribute: &str,
        value: &str,
        except: Option<&str>,
    ) -> Result<bool, TargetError>;

    /// Carries out several operations, in order, one result each. Targets that can do this
    /// faster than one call per operation (the built-in directory: one transaction) override it.
    async fn apply(&self, ops: &[Op]) -> Vec<Result<Done, TargetError>> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(self.apply_one(op).await);
        }
        out
    }

    /// One operation through the single-operation methods.
    async fn apply_one(&self, op: &Op) -> Result<Done, TargetError> {
        match op {
            Op::Create(r) => self.create(r).await.map(Done::Created),
            Op::Update { reference, changes } => {
                self.update(reference, changes).await.map(|_| Done::Ok)
            }
            Op::SetEnabled { reference, enabled } => self
                .set_enabled(reference, *enabled)
                .await
                .map(|_| Done::Ok),
            Op::Delete { reference } => self.delete(reference).await.map(|_| Done::Ok),
            Op::Grant {
                reference,
                permission,
            } => self.grant(reference, permission).await.map(|_| Done::Ok),
            Op::Revoke {
                reference,
                permission,
            } => self.revoke(reference, permission).await.map(|_| Done::Ok),
        }
    }
}
