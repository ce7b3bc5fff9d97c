//! Phase one of planning: rules over one person, giving per target whether an account is
//! wanted, enabled, which permissions, and the candidates generators will choose from.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use crate::config::{
    AttributeDef, CompiledConfig, CompiledTarget, Lifecycle, PermissionKind, Regenerate,
};
use crate::diag::Diagnostic;
use crate::expr::{Scope, Vars};
use crate::model::{Contract, Date, Person};
use crate::org::Org;
use crate::state::{KnownAccount, KnownState, TargetState};
use crate::value::AttrValue;

/// Shared, read-only inputs of one planning run.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a CompiledConfig,
    pub org: &'a Org,
    pub now: Date,
    /// Known state per target index.
    pub known: Vec<Option<&'a TargetState>>,
    /// Per target index: whether any mapping reads `accounts`, so the map is worth building.
    pub reads_accounts: Vec<bool>,
    pub no_accounts: BTreeMap<String, BTreeMap<String, AttrValue>>,
    /// Per rule, the targets it grants accounts or permissions in.
    pub rule_targets: Vec<Vec<usize>>,
    /// Per target index: whether its attributes are in name order (the configuration sorts
    /// them), so they can be paired with a known account's in one walk.
    pub attributes_sorted: Vec<bool>,
}

impl<'a> Ctx<'a> {
    pub fn new(cfg: &'a CompiledConfig, org: &'a Org, known: &'a KnownState, now: Date) -> Self {
        Self {
            cfg,
            org,
            now,
            known: cfg
                .targets
                .iter()
                .map(|t| known.targets.get(&t.name))
                .collect(),
            reads_accounts: cfg
                .targets
                .iter()
                .map(|t| {
                    t.attributes
                        .iter()
                        .any(|a| a.expr.source().contains("accounts"))
                })
                .collect(),
            no_accounts: BTreeMap::new(),
            attributes_sorted: cfg
                .targets
                .iter()
                .map(|t| t.attributes.is_sorted_by(|a, b| a.name < b.name))
                .collect(),
            rule_targets: cfg
                .rules
                .iter()
                .map(|r| {
                    let mut t: Vec<usize> = r
                        .accounts
                        .iter()
                        .copied()
                        .chain(r.permissions.iter().map(|p| p.target))
                        .collect();
                    t.sort_unstable();
                    t.dedup();
                    t
                })
                .collect(),
        }
    }

    pub fn known_account(&self, target: usize, person: &str) -> Option<&'a KnownAccount> {
        self.known[target]?.accounts.get(person)
    }

    /// The person's correlation value (`def` is a target's correlation attribute),
    /// lowercased as targets compare them; `None` when the mapping fails for the person.
    pub fn correlation_value(
        &self,
        def: &AttributeDef,
        person: &Person,
        primary: Option<&Contract>,
    ) -> Option<String> {
        let value = def.expr.eval_string(&self.scope(person, primary)).ok()?;
        Some(value.to_lowercase())
    }

    pub fn scope<'s>(&'s self, person: &'s Person, primary: Option<&'s Contract>) -> Scope<'s> {
        Scope::new(Vars {
            now: self.now,
            org: self.org,
            person,
            primary,
            contract: primary,
            accounts: &self.no_accounts,
        })
    }
}

/// Whether `c` counts for a target with this lifecycle on `now`: from `create_days_before`
/// days before its start to `disable_grace_days` days after its end.
pub fn in_window(c: &Contract, lc: &Lifecycle, now: Date) -> bool {
    let opens = c.start - chrono::Days::new(lc.create_days_before.into());
    let closes = c
        .end
        .and_then(|e| e.checked_add_days(chrono::Days::new(lc.disable_grace_days.into())));
    opens <= now && closes.is_none_or(|end| now <= end)
}

/// A rule's verdict on one contract (explain mode only).
#[derive(Debug, Clone)]
pub struct ContractVerdict {
    /// Index into the person's contracts.
    pub contract: usize,
    /// The contract condition's result, or its error. `Ok(true)` without a condition.
    pub matched: Result<bool, String>,
    /// Per target the rule touches: whether the contract is within its lifecycle window.
    pub in_window: Vec<(usize, bool)>,
}

/// A rule's verdict on the person (explain mode only).
#[derive(Debug, Clone)]
pub struct RuleVerdict {
    pub rule: usize,
    /// The person condition's result or its error; `Ok(true)` without a condition.
    pub condition: Result<bool, String>,
    pub contracts: Vec<ContractVerdict>,
}

/// A small set of indices (rules, contracts), in ascending order. Most hold one or two
/// entries: a sorted vector costs one small allocation where a `BTreeSet` costs a 100-byte
/// node, and a plan keeps one per wanted account and permission of every person.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdSet(Vec<usize>);

impl IdSet {
    pub fn insert(&mut self, id: usize) {
        // Ids mostly arrive in ascending order: check the end before searching.
        match self.0.last() {
            None => self.0.push(id),
            Some(&last) if last < id => self.0.push(id),
            Some(&last) if last == id => {}
            _ => {
                if let Err(at) = self.0.binary_search(&id) {
                    self.0.insert(at, id);
                }
            }
        }
    }
    pub fn contains(&self, id: usize) -> bool {
        self.0.binary_search(&id).is_ok()
    }
    pub fn iter(&self) -> std::slice::Iter<'_, usize> {
        self.0.iter()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'s> IntoIterator for &'s IdSet {
    type Item = &'s usize;
    type IntoIter = std::slice::Iter<'s, usize>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Why a permission is wanted: the rules and contracts that grant it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grounds {
    pub rules: IdSet,
    pub contracts: IdSet,
}

/// Wanted permissions by name, in name order: a sorted vector, because a person has a
/// handful per target and a map's node is larger than all of them together. Static names are
/// borrowed from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions<'a>(Vec<(Cow<'a, str>, Grounds)>);

impl<'a> Permissions<'a> {
    /// The grounds of `name`, added empty when it is new.
    pub fn entry(&mut self, name: Cow<'a, str>) -> &mut Grounds {
        let at = match self.0.binary_search_by(|(n, _)| n.as_ref().cmp(&name)) {
            Ok(at) => at,
            Err(at) => {
                self.0.insert(at, (name, Grounds::default()));
                at
            }
        };
        &mut self.0[at].1
    }
    pub fn get(&self, name: &str) -> Option<&Grounds> {
        self.0
            .binary_search_by(|(n, _)| n.as_ref().cmp(name))
            .ok()
            .map(|at| &self.0[at].1)
    }
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    /// Name and grounds, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Grounds)> {
        self.0.iter().map(|(n, g)| (n.as_ref(), g))
    }
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_ref())
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A generator that has to produce values for this person in this target.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub generator: usize,
    /// Candidate base values, and for each its field values (with `n` = 1), in order.
    pub candidates: Vec<(String, Vec<(String, String)>)>,
    /// Candidate bases as evaluated, empty ones included: what `generator_inputs` records.
    pub inputs: Vec<String>,
}

/// What one target should hold for the person.
#[derive(Debug, Clone, Default)]
pub struct TargetVerdict<'a> {
    /// A rule entitles the person to an account.
    pub account: bool,
    /// The account should be enabled (a contract in conditions has started).
    pub enabled: bool,
    /// An evaluation error touched this target: it gets no action for the person.
    pub held: bool,
    /// Rules (indices) entitling the account, and the contracts (indices) in conditions.
    pub grounds: Grounds,
    /// Earliest start among the contracts in conditions.
    pub first_start: Option<Date>,
    pub permissions: Permissions<'a>,
    /// Values generators produced in this run (phase two).
    pub generated: BTreeMap<String, AttrValue>,
    pub generator_inputs: BTreeMap<String, Vec<String>>,
    pub(crate) pending: Vec<Pending>,
    /// The known account in this target, looked up once per person for all phases.
    pub(crate) known: Option<&'a KnownAccount>,
}

/// Everything planning learned about one person.
#[derive(Debug, Clone)]
pub struct PersonEval<'a> {
    pub person: &'a Person,
    pub primary: Option<&'a Contract>,
    pub excluded: bool,
    /// Missing required fields: the person is blocked.
    pub blocked: Option<Vec<String>>,
    /// Per target index.
    pub targets: Vec<TargetVerdict<'a>>,
    /// Per rule, in explain mode.
    pub rules: Vec<RuleVerdict>,
    pub diagnostics: Vec<Diagnostic>,
}

impl<'a> Ctx<'a> {
    /// Phase one for one person. `explain` evaluates every rule and contract and keeps the
    /// verdicts; otherwise work that cannot change the outcome is skipped.
    pub fn evaluate(&self, person: &'a Person, explain: bool) -> PersonEval<'a> {
        self.evaluate_known(
            person,
            |ti| self.known_account(ti, &person.external_id),
            explain,
        )
    }

    /// [`Ctx::evaluate`] with the person's known account in each target (by index) given.
    pub fn evaluate_known(
        &self,
        person: &'a Person,
        known: impl Fn(usize) -> Option<&'a KnownAccount>,
        explain: bool,
    ) -> PersonEval<'a> {
        let cfg = self.cfg;
        let mut out = PersonEval {
            person,
            primary: None,
            excluded: person.excluded,
            blocked: None,
            targets: (0..cfg.targets.len())
                .map(|ti| TargetVerdict {
                    known: known(ti),
                    ..TargetVerdict::default()
                })
                .collect(),
            rules: Vec::new(),
            diagnostics: Vec::new(),
        };
        let missing: Vec<String> = cfg
            .required_fields
            .iter()
            .filter(|f| f.missing_in(person))
            .map(|f| f.name())
            .collect();
        if !missing.is_empty() {
            out.blocked = Some(missing);
        }
        out.primary = cfg.primary.primary(&person.contracts, self.now);
        if (out.excluded || out.blocked.is_some()) && !explain {
            return out;
        }
        let scope = self.scope(person, out.primary);
        // Which contract is within which target's lifecycle window: once per person, not
        // once per rule.
        let nt = cfg.targets.len();
        let open: Vec<bool> = person
            .contracts
            .iter()
            .flat_map(|c| {
                cfg.targets
                    .iter()
                    .map(move |t| in_window(c, &t.lifecycle, self.now))
            })
            .collect();
        for (ri, rule) in cfg.rules.iter().enumerate() {
            let touched = &self.rule_targets[ri];
            let condition = match &rule.condition {
                Some(c) => c.eval_bool(&scope).map_err(|e| e.to_string()),
                None => Ok(true),
            };
            let mut verdict = RuleVerdict {
                rule: ri,
                condition: condition.clone(),
                contracts: Vec::new(),
            };
            match condition {
                Err(e) => {
                    self.hold(&mut out, touched, &rule.id, "condition", None, &e);
                }
                Ok(false) => {}
                Ok(true) => {
                    for (ci, c) in person.contracts.iter().enumerate() {
                        let windows = &open[ci * nt..(ci + 1) * nt];
                        // A contract outside every window cannot entitle anything here.
                        if !explain && !touched.iter().any(|&t| windows[t]) {
                            continue;
                        }
                        let cscope = scope.with_contract(Some(c));
                        let matched = match &rule.contract_condition {
                            Some(cc) => cc.eval_bool(&cscope).map_err(|e| e.to_string()),
                            None => Ok(true),
                        };
                        match &matched {
                            Err(e) => {
                                self.hold(
                                    &mut out,
                                    touched,
                                    &rule.id,
                                    "contract_condition",
                                    Some(c),
                                    e,
                                );
                            }
                            Ok(true) => self.entitle(&mut out, ri, ci, c, &cscope, windows),
                            Ok(false) => {}
                        }
                        if explain {
                            verdict.contracts.push(ContractVerdict {
                                contract: ci,
                                matched,
                                in_window: touched.iter().map(|&t| (t, windows[t])).collect(),
                            });
                        }
                    }
                }
            }
            if explain {
                out.rules.push(verdict);
            }
        }
        if out.excluded || out.blocked.is_some() {
            return out;
        }
        for (ti, target) in cfg.targets.iter().enumerate() {
            if out.targets[ti].account && !out.targets[ti].held {
                self.prepare_generators(&mut out, ti, target, &scope);
            }
        }
        out
    }

    /// Records what a matching (rule, contract) grants in each target whose window it is in.
    fn entitle(
        &self,
        out: &mut PersonEval<'a>,
        rule_index: usize,
        contract_index: usize,
        c: &Contract,
        cscope: &Scope<'_>,
        windows: &[bool],
    ) {
        let cfg: &'a CompiledConfig = self.cfg;
        let rule = &cfg.rules[rule_index];
        let open = |t: usize| windows.get(t).copied().unwrap_or(false);
        for &t in &rule.accounts {
            if !open(t) {
                continue;
            }
            let v = &mut out.targets[t];
            v.account = true;
            v.enabled |= c.start <= self.now;
            v.first_start = Some(v.first_start.map_or(c.start, |d| d.min(c.start)));
            v.grounds.rules.insert(rule_index);
            v.grounds.contracts.insert(contract_index);
        }
        for p in &rule.permissions {
            if !open(p.target) {
                continue;
            }
            let name = match &p.kind {
                PermissionKind::Static(name) => Cow::Borrowed(name.as_str()),
                PermissionKind::Dynamic(expr) => match expr.eval_string(cscope) {
                    Ok(name) => Cow::Owned(name),
                    Err(e) => {
                        let e = e.to_string();
                        self.hold(
                            out,
                            &[p.target],
                            &rule.id,
                            "dynamic permission",
                            Some(c),
                            &e,
                        );
                        continue;
                    }
                },
            };
            if name.is_empty() {
                continue;
            }
            let g = out.targets[p.target].permissions.entry(name);
            g.rules.insert(rule_index);
            g.contracts.insert(contract_index);
        }
    }

    fn hold(
        &self,
        out: &mut PersonEval<'a>,
        targets: &[usize],
        rule: &str,
        what: &str,
        contract: Option<&Contract>,
        error: &str,
    ) {
        for &t in targets {
            out.targets[t].held = true;
        }
        let on = contract.map_or(String::new(), |c| format!(" on contract {}", c.id));
        let names: BTreeSet<&str> = targets
            .iter()
            .map(|&t| self.cfg.targets[t].name.as_str())
            .collect();
        out.diagnostics.push(
            Diagnostic::error(
                "rule_evaluation",
                format!(
                    "rule {rule:?} {what}{on}: {error}; the person is left untouched in {}",
                    names.into_iter().collect::<Vec<_>>().join(", ")
                ),
            )
            .for_person(&out.person.external_id),
        );
    }

    /// Works out which generators must produce values, and their candidates.
    fn prepare_generators(
        &self,
        out: &mut PersonEval<'a>,
        ti: usize,
        target: &CompiledTarget,
        scope: &Scope<'_>,
    ) {
        let known = out.targets[ti].known;
        for (gi, g) in target.generators.iter().enumerate() {
            if known.is_some() && g.regenerate == Regenerate::Never {
                continue;
            }
            let mut inputs = Vec::with_capacity(g.candidates.len());
            let mut failed = None;
            for c in &g.candidates {
                match c.eval_string(scope) {
                    Ok(v) => inputs.push(v),
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            if let Some(e) = failed {
                out.targets[ti].held = true;
                out.diagnostics.push(
                    Diagnostic::error(
                        "generator_evaluation",
                        format!("target {:?} generator {:?}: {e}", target.name, g.name),
                    )
                    .for_person(&out.person.external_id),
                );
                return;
            }
            if let Some(k) = known
                && k.generator_inputs.get(&g.name) == Some(&inputs)
            {
                continue;
            }
            let mut candidates = Vec::new();
            for value in inputs.iter().filter(|v| !v.is_empty()) {
                if candidates.iter().any(|(v, _)| v == value) {
                    continue;
                }
                match generator_fields(g, scope, value, 1) {
                    Ok(fields) => candidates.push((value.clone(), fields)),
                    Err(e) => {
                        out.targets[ti].held = true;
                        out.diagnostics.push(
                            Diagnostic::error(
                                "generator_evaluation",
                                format!("target {:?} generator {:?}: {e}", target.name, g.name),
                            )
                            .for_person(&out.person.external_id),
                        );
                        return;
                    }
                }
            }
            out.targets[ti].pending.push(Pending {
                generator: gi,
                candidates,
                inputs,
            });
        }
    }
}

/// The field values of a generator for one base `value` and iteration `n`.
pub(crate) fn generator_fields(
    g: &crate::config::CompiledGenerator,
    scope: &Scope<'_>,
    value: &str,
    n: i64,
) -> Result<Vec<(String, String)>, String> {
    let extra = [
        ("value", AttrValue::Text(value.to_owned())),
        ("n", AttrValue::Int(n)),
    ];
    let s = scope.with_extra(&extra);
    g.fields
        .iter()
        .map(|(f, e)| {
            e.eval_string(&s)
                .map(|v| (f.clone(), v))
                .map_err(|err| format!("field {f:?}: {err}"))
        })
        .collect()
}
