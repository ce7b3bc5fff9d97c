//! The planner: from a snapshot, the configuration and the known state to an ordered,
//! explainable list of actions. Pure and deterministic: same input and date, same plan.

mod diff;
mod eval;
mod generate;

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::CompiledConfig;
use crate::diag::Diagnostic;
use crate::guard::{self, GuardBreach, PopulationChange};
use crate::live::LiveValues;
use crate::model::{Date, Snapshot};
use crate::org::Org;
use crate::state::{KnownAccount, KnownState};
use crate::value::AttrValue;

pub use eval::{
    ContractVerdict, Grounds, IdSet, Permissions, PersonEval, RuleVerdict, TargetVerdict, in_window,
};

/// What an action does, in the order a plan executes them: creates before grants, revokes
/// before disables and deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Create,
    Update,
    Enable,
    Grant,
    Revoke,
    Disable,
    Delete,
}

impl ActionKind {
    pub const ALL: [ActionKind; 7] = [
        ActionKind::Create,
        ActionKind::Update,
        ActionKind::Enable,
        ActionKind::Grant,
        ActionKind::Revoke,
        ActionKind::Disable,
        ActionKind::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Create => "create",
            ActionKind::Update => "update",
            ActionKind::Enable => "enable",
            ActionKind::Grant => "grant",
            ActionKind::Revoke => "revoke",
            ActionKind::Disable => "disable",
            ActionKind::Delete => "delete",
        }
    }
}

/// Why an action is in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A rule entitles the person (to the account or the permission).
    RuleMatched,
    /// The account is made ahead of the first day and stays disabled until then.
    PreBoarding,
    /// A contract in conditions has started: the account is enabled.
    ContractStarted,
    /// Source fields of the person changed and the mapping gives new values.
    PersonUpdated,
    /// The mapping gives a value other than the one last written, with no source change
    /// known (a changed configuration, a date-dependent expression, a first comparison).
    MappingChanged,
    /// A generator made new values because the values they come from changed.
    Regenerated,
    /// No rule matches any more, although the person still has contracts.
    RemovedFromRule,
    /// The contracts that entitled the person have ended.
    ContractEnded,
    /// The person is no longer in the source.
    PersonRemoved,
    /// The account was disabled long enough ago to be deleted.
    RetentionExpired,
    /// The target holds something other than koppel last wrote (an edit outside koppel):
    /// `koppel reconcile --repair` puts koppel's value back.
    Drift,
}

/// One reason of an action, with the rules, contracts and source fields behind it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Reason {
    pub origin: Origin,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contracts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<Date>,
}

impl Reason {
    pub fn new(origin: Origin) -> Self {
        Self {
            origin,
            rules: Vec::new(),
            contracts: Vec::new(),
            fields: Vec::new(),
            date: None,
        }
    }
    pub fn rules(mut self, rules: Vec<String>) -> Self {
        self.rules = rules;
        self
    }
    pub fn contracts(mut self, contracts: Vec<String>) -> Self {
        self.contracts = contracts;
        self
    }
    pub fn fields(mut self, fields: Vec<String>) -> Self {
        self.fields = fields;
        self
    }
    pub fn date(mut self, date: Date) -> Self {
        self.date = Some(date);
        self
    }
}

/// One attribute change of an update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub from: AttrValue,
    pub to: AttrValue,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub target: String,
    /// The person's external id.
    pub person: String,
    pub kind: ActionKind,
    /// Create: every attribute of the new account.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, AttrValue>,
    /// Create: whether the account starts enabled (false while pre-boarding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Create: the correlation attribute and value used to adopt an existing account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<(String, AttrValue)>,
    /// Update: attribute → from, to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub changes: BTreeMap<String, Change>,
    /// Grant and revoke: the permission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
    /// Create and update: the candidate values each generator used, for the store.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub generator_inputs: BTreeMap<String, Vec<String>>,
    /// Delete: generated values given up, field → value, kept from reuse for a while.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub released: BTreeMap<String, String>,
    pub reasons: Vec<Reason>,
}

impl Action {
    pub fn new(target: &str, person: &str, kind: ActionKind, reasons: Vec<Reason>) -> Self {
        Self {
            target: target.to_owned(),
            person: person.to_owned(),
            kind,
            attributes: BTreeMap::new(),
            enabled: None,
            correlation: None,
            changes: BTreeMap::new(),
            permission: None,
            generator_inputs: BTreeMap::new(),
            released: BTreeMap::new(),
            reasons,
        }
    }
}

/// A person left untouched everywhere because a required field is missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    pub person: String,
    pub missing: Vec<String>,
}

/// The outcome of planning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub now: Date,
    /// Non-empty: a source guard is exceeded; the whole run is held and nothing applies.
    pub held: Vec<GuardBreach>,
    pub population: PopulationChange,
    pub actions: Vec<Action>,
    pub blocked: Vec<Blocked>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Number of actions per target and kind.
    pub fn counts(&self) -> BTreeMap<&str, BTreeMap<ActionKind, usize>> {
        let mut out: BTreeMap<&str, BTreeMap<ActionKind, usize>> = BTreeMap::new();
        for a in &self.actions {
            *out.entry(&a.target).or_default().entry(a.kind).or_default() += 1;
        }
        out
    }
}

/// Everything the planner reads.
#[derive(Clone, Copy)]
pub struct PlanInput<'a> {
    pub config: &'a CompiledConfig,
    pub snapshot: &'a Snapshot,
    /// The snapshot of the previous run: for the source guards and changed-field reasons.
    pub previous: Option<&'a Snapshot>,
    pub known: &'a KnownState,
    /// Values the live targets hold, for generators; empty when no target was read.
    pub live: &'a LiveValues,
    pub now: Date,
}

/// Plans every person of the snapshot and every known account whose person is gone.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let cfg = input.config;
    let org = Org::new(input.snapshot.departments.clone());
    let ctx = eval::Ctx::new(cfg, &org, input.known, input.now);
    let previous = input.previous;
    let finish = |mut e: PersonEval<'_>| -> Planned {
        let (actions, mut diagnostics) = diff::person_actions(&ctx, &mut e, previous);
        diagnostics.append(&mut e.diagnostics);
        Planned {
            actions,
            diagnostics,
            blocked: e.blocked.map(|missing| Blocked {
                person: e.person.external_id.clone(),
                missing,
            }),
        }
    };

    // Phase 1, in parallel: rules, entitlements and generator candidates per person. A
    // person no generator has to run for does not depend on anyone else: phase three runs
    // for them right away, and their evaluation is dropped instead of held for the whole
    // population (in an up-to-date run, that is nearly everyone).
    let known = known_accounts(&ctx, input.snapshot);
    let nt = cfg.targets.len();
    let first: Vec<Result<Planned, PersonEval<'_>>> = input
        .snapshot
        .persons
        .par_iter()
        .enumerate()
        .map(|(i, p)| {
            let e = ctx.evaluate_known(p, |ti| known[i * nt + ti], false);
            if e.targets.iter().any(|t| !t.pending.is_empty()) {
                Err(e)
            } else {
                Ok(finish(e))
            }
        })
        .collect();
    let mut waiting = Vec::new();
    let mut planned: Vec<Option<Planned>> = first
        .into_iter()
        .map(|r| r.map_err(|e| waiting.push(e)).ok())
        .collect();

    // Phase 2, in order: unique values, which depend on every person before this one.
    let mut diagnostics = Vec::new();
    generate::allocate(&ctx, input.live, &mut waiting, &mut diagnostics);

    // Phase 3, in parallel, for the persons that waited for phase two: mappings and the
    // diff against the known state.
    let rest: Vec<Planned> = waiting.into_par_iter().map(finish).collect();
    let mut rest = rest.into_iter();
    for slot in planned.iter_mut().filter(|s| s.is_none()) {
        *slot = rest.next();
    }

    // Targets in dependency order, then the execution phase, then person: each person's
    // actions come out of phase three in target order and sorted within a kind, and persons
    // come in external id order, so a counting sort by (target, kind) keeps the order.
    let target_order: BTreeMap<&str, usize> = cfg
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let kinds = ActionKind::ALL.len();
    let bucket = |a: &Action| {
        let t = target_order.get(a.target.as_str()).copied().unwrap_or(0);
        let k = ActionKind::ALL
            .iter()
            .position(|k| *k == a.kind)
            .unwrap_or(0);
        t * kinds + k
    };
    let gone = diff::gone_persons(&ctx, input.snapshot);
    let mut sizes = vec![0usize; cfg.targets.len().max(1) * kinds];
    let mut gone_in = vec![false; sizes.len()];
    for p in planned.iter().flatten() {
        for a in &p.actions {
            sizes[bucket(a)] += 1;
        }
    }
    for a in &gone {
        let b = bucket(a);
        sizes[b] += 1;
        gone_in[b] = true;
    }
    let mut next: Vec<usize> = sizes
        .iter()
        .scan(0, |at, n| {
            let start = *at;
            *at += n;
            Some(start)
        })
        .collect();
    let starts = next.clone();
    let total: usize = sizes.iter().sum();
    // Actions in person order with the position each takes in the plan; one buffer, then
    // permuted in place, so the plan's actions are never held twice.
    let mut actions: Vec<Action> = Vec::with_capacity(total);
    let mut position: Vec<usize> = Vec::with_capacity(total);
    let mut blocked = Vec::new();
    for p in planned.into_iter().flatten() {
        for a in p.actions {
            let b = bucket(&a);
            position.push(next[b]);
            next[b] += 1;
            actions.push(a);
        }
        diagnostics.extend(p.diagnostics);
        blocked.extend(p.blocked);
    }
    for a in gone {
        let b = bucket(&a);
        position.push(next[b]);
        next[b] += 1;
        actions.push(a);
    }
    for i in 0..actions.len() {
        while position[i] != i {
            let to = position[i];
            actions.swap(i, to);
            position.swap(i, to);
        }
    }
    // Only buckets that received actions of persons gone from the source need ordering;
    // they hold two sorted runs, which the stable sort merges in linear time.
    for (b, _) in gone_in.iter().enumerate().filter(|(_, g)| **g) {
        actions[starts[b]..starts[b] + sizes[b]]
            .sort_by(|x, y| (&x.person, &x.permission).cmp(&(&y.person, &y.permission)));
    }
    diagnostics.sort();

    let population = population_change(input.snapshot, input.previous, blocked.len() as u64);
    let held = guard::check(&cfg.guards, &population);
    Plan {
        now: input.now,
        held,
        population,
        actions,
        blocked,
        diagnostics,
    }
}

/// Each person's known account in each target (`person index × targets + target`). Persons
/// and accounts are both in external id order: one walk over the two per target instead of a
/// B-tree search per person and target.
fn known_accounts<'a>(
    ctx: &eval::Ctx<'a>,
    snapshot: &'a Snapshot,
) -> Vec<Option<&'a KnownAccount>> {
    let persons = &snapshot.persons;
    let nt = ctx.cfg.targets.len();
    let mut out = vec![None; persons.len() * nt];
    let sorted = persons
        .windows(2)
        .all(|w| w[0].external_id <= w[1].external_id);
    for (ti, known) in ctx.known.iter().enumerate() {
        let Some(known) = known else { continue };
        if !sorted {
            for (i, p) in persons.iter().enumerate() {
                out[i * nt + ti] = known.accounts.get(&p.external_id);
            }
            continue;
        }
        let mut accounts = known.accounts.iter().peekable();
        for (i, p) in persons.iter().enumerate() {
            let id = p.external_id.as_str();
            while accounts.next_if(|(a, _)| a.as_str() < id).is_some() {}
            if let Some((a, k)) = accounts.peek()
                && a.as_str() == id
            {
                out[i * nt + ti] = Some(*k);
            }
        }
    }
    out
}

/// One person's part of a plan.
struct Planned {
    actions: Vec<Action>,
    diagnostics: Vec<Diagnostic>,
    blocked: Option<Blocked>,
}

/// The distinct external ids of a snapshot, in order.
fn person_ids(s: &Snapshot) -> Vec<&str> {
    let mut ids: Vec<&str> = s.persons.iter().map(|p| p.external_id.as_str()).collect();
    // A normalized snapshot is sorted already; one from elsewhere is sorted here.
    if !ids.is_sorted() {
        ids.sort_unstable();
    }
    ids.dedup();
    ids
}

fn population_change(
    current: &Snapshot,
    previous: Option<&Snapshot>,
    blocked: u64,
) -> PopulationChange {
    let now_ids = person_ids(current);
    let mut change = PopulationChange {
        previous: None,
        current: now_ids.len() as u64,
        added: 0,
        removed: 0,
        blocked,
    };
    if let Some(prev) = previous {
        let before = person_ids(prev);
        change.previous = Some(before.len() as u64);
        // Both sorted and distinct: one walk counts what only one side has.
        let (mut i, mut j) = (0, 0);
        while i < now_ids.len() || j < before.len() {
            match (now_ids.get(i), before.get(j)) {
                (Some(a), Some(b)) if a == b => {
                    i += 1;
                    j += 1;
                }
                (Some(a), Some(b)) if a < b => {
                    change.added += 1;
                    i += 1;
                }
                (Some(_), None) => {
                    change.added += 1;
                    i += 1;
                }
                _ => {
                    change.removed += 1;
                    j += 1;
                }
            }
        }
    }
    change
}

/// Evaluates one person fully, for `koppel explain`: every rule, every contract.
pub fn explain<'a>(
    config: &'a CompiledConfig,
    snapshot: &'a Snapshot,
    org: &'a Org,
    known: &'a KnownState,
    now: Date,
    external_id: &str,
) -> Option<(PersonEval<'a>, Vec<Action>, Vec<Diagnostic>)> {
    let person = snapshot.person(external_id)?;
    let ctx = eval::Ctx::new(config, org, known, now);
    let mut evals = vec![ctx.evaluate(person, true)];
    let mut diagnostics = Vec::new();
    generate::allocate(&ctx, &LiveValues::default(), &mut evals, &mut diagnostics);
    let e = evals.pop()?;
    // The explanation keeps the generated values the actions take.
    let (actions, d) = diff::person_actions(&ctx, &mut e.clone(), None);
    diagnostics.extend(e.diagnostics.iter().cloned());
    diagnostics.extend(d);
    // The eval borrows `ctx` only through references that outlive it.
    Some((e, actions, diagnostics))
}

/// Every person's correlation value in `target` (lowercased) → the person's external id: what
/// the target's correlation attribute maps to for each person of the snapshot, whether or not
/// a rule entitles them. Reconcile uses it to tell an orphan account from a person's own
/// account that koppel does not manage yet. Empty when the target has no correlation.
pub fn correlation_values(
    config: &CompiledConfig,
    snapshot: &Snapshot,
    now: Date,
    target: &str,
) -> BTreeMap<String, String> {
    let Some(t) = config.targets.iter().find(|t| t.name == target) else {
        return BTreeMap::new();
    };
    let Some(def) = t.correlation_attribute() else {
        return BTreeMap::new();
    };
    let org = Org::new(snapshot.departments.clone());
    let known = KnownState::default();
    let ctx = eval::Ctx::new(config, &org, &known, now);
    snapshot
        .persons
        .iter()
        .filter_map(|p| {
            let primary = config.primary.primary(&p.contracts, now);
            let value = ctx.correlation_value(def, p, primary)?;
            (!value.is_empty()).then(|| (value, p.external_id.clone()))
        })
        .collect()
}
