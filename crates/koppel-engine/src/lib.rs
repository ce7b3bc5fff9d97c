//! The executor: carries out a stored plan against the targets in batches, journaled before
//! and after every call, so a run killed anywhere resumes without doing anything twice.
//!
//! Protocol per batch (consecutive actions of one target and one kind):
//! 1. the intents are written to the journal (one transaction);
//! 2. the target carries the operations out (idempotent: a create adopts what correlation
//!    finds, granting an existing membership succeeds, deleting a missing account succeeds);
//! 3. the outcomes, the known state they imply and their audit entries are written (one
//!    transaction).
//!
//! A process killed between 1 and 3 leaves open intents; the next run carries them out again,
//! which the idempotent targets turn into no second effect. An unreachable target stops that
//! target's work and leaves the plan resumable; an entry the target refuses fails only itself
//! and the actions that depend on it.

pub mod reconcile;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use koppel_connectors::target::{CreateRequest, Done, Op, Target};
use koppel_core::config::CompiledConfig;
use koppel_core::plan::{Action, ActionKind};
use koppel_core::{Date, KnownState};
use koppel_store::{
    AuditEvent, AuditRecord, JournalStatus, Outcome, PlanStatus, Store, StoreError, StoredPlan,
};

/// Hooks for progress display and for the crash tests' kill points.
pub trait Observer: Send + Sync {
    /// `done` of `total` actions are through.
    fn progress(&self, _done: usize, _total: usize) {}
    /// A named point in a batch: `intents` (journaled), `called` (the target answered),
    /// `outcomes` (recorded).
    fn checkpoint(&self, _point: &str) {}
}

/// An observer that observes nothing.
pub struct Quiet;

impl Observer for Quiet {}

/// Which actions of a plan to carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Everything a threshold did not withhold.
    Normal,
    /// Only what a threshold withheld, after a person approved it.
    Approved,
}

/// An action that failed, with the target's message.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub action: Action,
    pub error: String,
}

/// What one execution did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub plan_id: String,
    pub applied: usize,
    pub failed: Vec<Failure>,
    /// Actions not attempted because an action they depend on failed in this run.
    pub skipped: usize,
    /// Actions a threshold withholds until approval.
    pub withheld: usize,
    /// Targets that stopped answering, with the error: their work is left for the next run.
    pub unavailable: BTreeMap<String, String>,
    /// Applied actions per target and kind.
    pub counts: BTreeMap<String, BTreeMap<ActionKind, usize>>,
}

impl Report {
    /// True when nothing is left to do for this plan in this mode.
    pub fn complete(&self) -> bool {
        self.unavailable.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the plan has actions for target {0:?}, which is not configured")]
    NoTarget(String),
}

/// Everything an execution needs.
pub struct Engine<'a> {
    pub config: &'a CompiledConfig,
    pub store: &'a dyn Store,
    pub targets: &'a BTreeMap<String, Arc<dyn Target>>,
    /// Who or what triggered the run, for the audit log.
    pub actor: &'a str,
    /// The time for audit entries (RFC 3339): the binary's clock, a fixed one in tests.
    pub clock: &'a (dyn Fn() -> String + Send + Sync),
    /// Actions per journal transaction and target call.
    pub batch_size: usize,
    pub observer: &'a dyn Observer,
}

impl Engine<'_> {
    /// Finishes what killed or interrupted runs left: plans still applying, and approvals
    /// under way. `known` must be the store's current known state.
    pub async fn resume(&self, known: &KnownState, now: Date) -> Result<Vec<Report>, EngineError> {
        let mut reports = Vec::new();
        let open: HashSet<String> = self
            .store
            .open_intents()
            .await?
            .into_iter()
            .map(|i| i.plan_id)
            .collect();
        // The caller's state until a resumed plan changes the store: a run with nothing to
        // resume (the usual case) neither copies nor reloads it.
        let mut reloaded: Option<KnownState> = None;
        // Plans still applying first, then approvals under way; the held plans are listed
        // only after the applying ones ran, as those may have become held.
        for (status, mode) in [
            (PlanStatus::Applying, Mode::Normal),
            (PlanStatus::Held, Mode::Approved),
        ] {
            for stored in self.store.plans(Some(status)).await? {
                if mode == Mode::Approved && !open.contains(&stored.id) {
                    continue;
                }
                let known = reloaded.as_ref().unwrap_or(known);
                let r = self.execute(&stored, known, mode, now).await?;
                reloaded = Some(self.store.known_state().await?);
                reports.push(r);
            }
        }
        Ok(reports)
    }

    /// Carries out `stored` (its actions not yet done) and sets its status.
    pub async fn execute(
        &self,
        stored: &StoredPlan,
        known: &KnownState,
        mode: Mode,
        now: Date,
    ) -> Result<Report, EngineError> {
        let plan = &stored.plan;
        let mut report = Report {
            plan_id: stored.id.clone(),
            ..Report::default()
        };
        for a in &plan.actions {
            if !self.targets.contains_key(&a.target) {
                return Err(EngineError::NoTarget(a.target.clone()));
            }
        }
        let journal: HashMap<u64, JournalStatus> = self
            .store
            .journal(&stored.id)
            .await?
            .into_iter()
            .map(|e| (e.seq, e.status))
            .collect();
        let withheld: HashSet<(&str, ActionKind)> = stored
            .withheld
            .iter()
            .map(|(t, k)| (t.as_str(), *k))
            .collect();
        let index: HashMap<&str, usize> = self
            .config
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i))
            .collect();
        let deps: Vec<Vec<usize>> = self
            .config
            .targets
            .iter()
            .map(|t| {
                t.depends_on
                    .iter()
                    .filter_map(|d| index.get(d.as_str()).copied())
                    .collect()
            })
            .collect();

        let selected = |a: &Action| {
            let held = withheld.contains(&(a.target.as_str(), a.kind));
            match mode {
                Mode::Normal => !held,
                Mode::Approved => held,
            }
        };
        let todo: Vec<usize> = (0..plan.actions.len())
            .filter(|&i| selected(&plan.actions[i]))
            .filter(|&i| {
                !matches!(
                    journal.get(&(i as u64)),
                    Some(JournalStatus::Done | JournalStatus::Failed)
                )
            })
            .collect();
        if mode == Mode::Normal {
            report.withheld = plan.actions.iter().filter(|a| !selected(a)).count();
        }
        let total = todo.len();
        self.observer.progress(0, total);

        // References of accounts made in this run; the rest come from the known state.
        let mut made: HashMap<(usize, &str), String> = HashMap::new();
        // (target, person) pairs with a failed action: what depends on them waits.
        let mut failed: HashSet<(usize, &str)> = HashSet::new();
        let mut done = 0usize;
        let mut cursor = 0usize;
        while cursor < todo.len() {
            let first = &plan.actions[todo[cursor]];
            let target_name = first.target.as_str();
            let ti = index.get(target_name).copied().unwrap_or(usize::MAX);
            let kind = first.kind;
            let mut batch: Vec<(u64, &Action, Op)> = Vec::new();
            let mut refused: Vec<(u64, &Action, String)> = Vec::new();
            while cursor < todo.len() && batch.len() < self.batch_size.max(1) {
                let seq = todo[cursor];
                let a = &plan.actions[seq];
                if a.target != target_name || a.kind != kind {
                    break;
                }
                cursor += 1;
                if report.unavailable.contains_key(target_name) {
                    continue;
                }
                let person = a.person.as_str();
                let blocked = failed.contains(&(ti, person))
                    || deps
                        .get(ti)
                        .is_some_and(|d| d.iter().any(|&dt| failed.contains(&(dt, person))));
                if blocked {
                    report.skipped += 1;
                    failed.insert((ti, person));
                    continue;
                }
                let reference = made
                    .get(&(ti, person))
                    .cloned()
                    .or_else(|| {
                        known
                            .account(target_name, person)
                            .map(|k| k.reference.clone())
                    })
                    .filter(|r| !r.is_empty());
                match to_op(a, reference) {
                    Ok(op) => batch.push((seq as u64, a, op)),
                    Err(msg) => refused.push((seq as u64, a, msg)),
                }
            }
            if batch.is_empty() && refused.is_empty() {
                continue;
            }
            let target = self
                .targets
                .get(target_name)
                .ok_or_else(|| EngineError::NoTarget(target_name.to_owned()))?;

            let intents: Vec<(u64, &Action)> = batch
                .iter()
                .map(|(s, a, _)| (*s, *a))
                .chain(refused.iter().map(|(s, a, _)| (*s, *a)))
                .collect();
            self.store.journal_intents(&stored.id, &intents).await?;
            self.observer.checkpoint("intents");

            let ops: Vec<Op> = batch.iter().map(|(_, _, op)| op.clone()).collect();
            let results = if ops.is_empty() {
                Vec::new()
            } else {
                target.apply(&ops).await
            };
            self.observer.checkpoint("called");

            let mut outcomes = Vec::with_capacity(intents.len());
            let mut audit = Vec::with_capacity(intents.len());
            for ((seq, a, _), result) in batch.iter().zip(results) {
                match result {
                    Ok(d) => {
                        let reference = match d {
                            Done::Created(c) => {
                                let r = c.reference().to_owned();
                                made.insert((ti, a.person.as_str()), r.clone());
                                Some(r)
                            }
                            Done::Ok => None,
                        };
                        report.applied += 1;
                        *report
                            .counts
                            .entry(a.target.clone())
                            .or_default()
                            .entry(a.kind)
                            .or_default() += 1;
                        audit.push(self.audit(stored, a, known, AuditEvent::Applied, None));
                        outcomes.push(Outcome {
                            seq: *seq,
                            action: (*a).clone(),
                            result: Ok(reference),
                        });
                    }
                    Err(e) if e.is_unavailable() => {
                        // Nothing is known to have happened: the intent stays open and the
                        // next run carries it out again.
                        tracing::warn!(target = %a.target, error = %e, "target unavailable; the run is resumable");
                        report.unavailable.insert(a.target.clone(), e.to_string());
                        break;
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        failed.insert((ti, a.person.as_str()));
                        audit.push(self.audit(stored, a, known, AuditEvent::Failed, Some(&msg)));
                        report.failed.push(Failure {
                            action: (*a).clone(),
                            error: msg.clone(),
                        });
                        outcomes.push(Outcome {
                            seq: *seq,
                            action: (*a).clone(),
                            result: Err(msg),
                        });
                    }
                }
            }
            for (seq, a, msg) in refused {
                failed.insert((ti, a.person.as_str()));
                audit.push(self.audit(stored, a, known, AuditEvent::Failed, Some(&msg)));
                report.failed.push(Failure {
                    action: a.clone(),
                    error: msg.clone(),
                });
                outcomes.push(Outcome {
                    seq,
                    action: a.clone(),
                    result: Err(msg),
                });
            }
            done += outcomes.len();
            self.store
                .journal_outcomes(&stored.id, &outcomes, now, &audit)
                .await?;
            self.observer.checkpoint("outcomes");
            self.observer.progress(done.min(total), total);
        }

        let status = if !report.complete() {
            PlanStatus::Applying
        } else if mode == Mode::Normal && report.withheld > 0 {
            PlanStatus::Held
        } else if mode == Mode::Approved {
            PlanStatus::Approved
        } else {
            PlanStatus::Applied
        };
        self.store.set_plan_status(&stored.id, status).await?;
        Ok(report)
    }

    fn audit(
        &self,
        stored: &StoredPlan,
        a: &Action,
        known: &KnownState,
        event: AuditEvent,
        error: Option<&str>,
    ) -> AuditRecord {
        let (before, after) = before_after(a, known);
        AuditRecord {
            at: (self.clock)(),
            actor: self.actor.to_owned(),
            event,
            plan_id: Some(stored.id.clone()),
            target: Some(a.target.clone()),
            person: Some(a.person.clone()),
            action: Some(a.kind),
            permission: a.permission.clone(),
            before,
            after,
            reasons: a.reasons.clone(),
            error: error.map(str::to_owned),
        }
    }
}

/// The values an action changes, before and after, for the audit log.
fn before_after(a: &Action, known: &KnownState) -> (serde_json::Value, serde_json::Value) {
    use serde_json::{Value, json};
    let account = known.account(&a.target, &a.person);
    match a.kind {
        ActionKind::Create => (
            Value::Null,
            json!({ "attributes": a.attributes, "enabled": a.enabled }),
        ),
        ActionKind::Update => {
            let from: BTreeMap<&str, _> = a
                .changes
                .iter()
                .map(|(k, c)| (k.as_str(), &c.from))
                .collect();
            let to: BTreeMap<&str, _> =
                a.changes.iter().map(|(k, c)| (k.as_str(), &c.to)).collect();
            (json!(from), json!(to))
        }
        ActionKind::Enable => (json!({ "enabled": false }), json!({ "enabled": true })),
        ActionKind::Disable => (
            json!({ "enabled": account.is_none_or(|k| k.enabled) }),
            json!({ "enabled": false }),
        ),
        ActionKind::Grant => (Value::Null, json!({ "permission": a.permission })),
        ActionKind::Revoke => (json!({ "permission": a.permission }), Value::Null),
        ActionKind::Delete => (
            account.map_or(
                Value::Null,
                |k| json!({ "attributes": k.attributes, "enabled": k.enabled }),
            ),
            Value::Null,
        ),
    }
}

/// The target operation for an action; an action on an account with no known reference
/// cannot be carried out and fails with a message that says so.
fn to_op(a: &Action, reference: Option<String>) -> Result<Op, String> {
    let needs_reference = |reference: Option<String>| {
        reference.ok_or_else(|| {
            format!(
                "no reference is known for the {} account of person {}: the known state has none, so koppel cannot address it",
                a.target, a.person
            )
        })
    };
    let permission = || a.permission.clone().unwrap_or_default();
    Ok(match a.kind {
        ActionKind::Create => Op::Create(CreateRequest {
            person: a.person.clone(),
            attributes: a.attributes.clone(),
            enabled: a.enabled.unwrap_or(true),
            correlation: a.correlation.clone(),
        }),
        ActionKind::Update => Op::Update {
            reference: needs_reference(reference)?,
            changes: a
                .changes
                .iter()
                .map(|(k, c)| (k.clone(), c.to.clone()))
                .collect(),
        },
        ActionKind::Enable => Op::SetEnabled {
            reference: needs_reference(reference)?,
            enabled: true,
        },
        ActionKind::Disable => Op::SetEnabled {
            reference: needs_reference(reference)?,
            enabled: false,
        },
        ActionKind::Delete => Op::Delete {
            reference: needs_reference(reference)?,
        },
        ActionKind::Grant => Op::Grant {
            reference: needs_reference(reference)?,
            permission: permission(),
        },
        ActionKind::Revoke => Op::Revoke {
            reference: needs_reference(reference)?,
            permission: permission(),
        },
    })
}
