//! Phase three of planning: mappings evaluated for each wanted account and the difference
//! with the known state turned into actions, each with its reasons.

use std::collections::{BTreeMap, BTreeSet};

use super::eval::{Ctx, Grounds, PersonEval, TargetVerdict};
use super::{Action, ActionKind, Change, Origin, Reason};
use crate::diag::Diagnostic;
use crate::expr::{Scope, Vars};
use crate::model::{Person, Snapshot};
use crate::state::KnownAccount;
use crate::value::AttrValue;

type Accounts = BTreeMap<String, BTreeMap<String, AttrValue>>;

/// Actions for one person in every target, in target order. Takes the generated values and
/// their inputs out of `e`.
pub(crate) fn person_actions(
    ctx: &Ctx<'_>,
    e: &mut PersonEval<'_>,
    previous: Option<&Snapshot>,
) -> (Vec<Action>, Vec<Diagnostic>) {
    let mut actions = Vec::new();
    let mut diags = Vec::new();
    // Excluded persons keep what they have; blocked ones are reported and left alone.
    if e.excluded || e.blocked.is_some() {
        return (actions, diags);
    }
    let person = e.person;
    let id = person.external_id.as_str();
    let mut accounts: Accounts = BTreeMap::new();
    let mut changed_fields: Option<Vec<String>> = None;
    for (ti, target) in ctx.cfg.targets.iter().enumerate() {
        // Generated values and their inputs move into the actions.
        let v = &mut e.targets[ti];
        let known = v.known;
        if v.held {
            continue;
        }
        // Only targets planned after this one can read its account data.
        let read_later = ctx.reads_accounts[ti + 1..].iter().any(|r| *r);
        if !v.account {
            if let Some(k) = known {
                // Later targets still read what this account holds while it winds down.
                if read_later {
                    accounts.insert(target.name.clone(), known_data(target, k));
                }
                leave(
                    ctx,
                    ti,
                    person_origin(ctx, Some(person), ti),
                    id,
                    k,
                    &mut actions,
                );
            }
            continue;
        }
        // The grace after an end date keeps an account; it never makes a new one for
        // someone who has already left.
        if known.is_none()
            && !v
                .grounds
                .contracts
                .iter()
                .any(|&c| person.contracts[c].end.is_none_or(|end| end >= ctx.now))
        {
            continue;
        }

        // Mappings see the account data of the targets before this one, and this target's
        // own generated values.
        if ctx.reads_accounts[ti] {
            let own: BTreeMap<String, AttrValue> = target
                .generated_fields()
                .filter_map(|f| {
                    let val = v
                        .generated
                        .get(f)
                        .or_else(|| known.and_then(|k| k.attributes.get(f)))?;
                    Some((f.to_owned(), val.clone()))
                })
                .collect();
            accounts.insert(target.name.clone(), own);
        }
        let scope = Scope::new(Vars {
            now: ctx.now,
            org: ctx.org,
            person,
            primary: e.primary,
            contract: e.primary,
            accounts: if ctx.reads_accounts[ti] {
                &accounts
            } else {
                &ctx.no_accounts
            },
        });
        let grounds_reason = |g: &Grounds| {
            Reason::new(Origin::RuleMatched)
                .rules(
                    g.rules
                        .iter()
                        .map(|&r| ctx.cfg.rules[r].id.clone())
                        .collect(),
                )
                .contracts(
                    g.contracts
                        .iter()
                        .map(|&c| person.contracts[c].id.clone())
                        .collect(),
                )
        };
        let Some(k) = known else {
            // A new account: every attribute, in name order (attributes are; generated
            // values are merged in, and win over a mapping of the same name).
            let mut desired: Vec<(&str, AttrValue)> = Vec::with_capacity(target.attributes.len());
            let mut failed = false;
            for a in &target.attributes {
                match a.expr.eval(&scope) {
                    Ok(val) => desired.push((a.name.as_str(), val.normalized())),
                    Err(err) => {
                        failed = true;
                        diags.push(mapping_failed(target, &a.name, &err.to_string(), id));
                    }
                }
            }
            if failed {
                continue;
            }
            for (f, val) in std::mem::take(&mut v.generated) {
                match desired.iter_mut().find(|(n, _)| *n == f) {
                    Some(slot) => slot.1 = val,
                    None => desired.push((target_field(target, &f), val)),
                }
            }
            desired.sort_by(|a, b| a.0.cmp(b.0));
            if read_later {
                let data = account_data(target, |name| {
                    desired
                        .binary_search_by(|(n, _)| (*n).cmp(name))
                        .ok()
                        .map(|i| &desired[i].1)
                });
                accounts.insert(target.name.clone(), data);
            }
            let mut a = Action::new(
                &target.name,
                id,
                ActionKind::Create,
                vec![grounds_reason(&v.grounds)],
            );
            if !v.enabled
                && let Some(start) = v.first_start
            {
                a.reasons.push(Reason::new(Origin::PreBoarding).date(start));
            }
            a.correlation = target.correlation.as_ref().and_then(|c| {
                desired
                    .iter()
                    .find(|(n, _)| *n == c.as_str())
                    .map(|(_, val)| (c.clone(), val.clone()))
            });
            a.attributes = desired
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            a.enabled = Some(v.enabled);
            a.generator_inputs = std::mem::take(&mut v.generator_inputs);
            actions.push(a);
            for (name, g) in v.permissions.iter() {
                let mut a =
                    Action::new(&target.name, id, ActionKind::Grant, vec![grounds_reason(g)]);
                a.permission = Some(name.to_owned());
                actions.push(a);
            }
            continue;
        };

        // An existing account: each value is compared with what was last written, borrowed,
        // so an unchanged account costs no allocation.
        let mut wanted: Vec<(&str, Wanted<'_>)> = Vec::with_capacity(target.attributes.len());
        let mut failed = false;
        // Attributes and known values are both in name order: one walk pairs them.
        let sorted = ctx.attributes_sorted[ti];
        let mut held = k.attributes.iter().peekable();
        for a in &target.attributes {
            let from = if sorted {
                while held
                    .next_if(|(n, _)| n.as_str() < a.name.as_str())
                    .is_some()
                {}
                held.next_if(|(n, _)| n.as_str() == a.name.as_str())
                    .map(|(_, v)| v)
            } else {
                k.attributes.get(&a.name)
            };
            // An only-on-create attribute of an existing account is never re-evaluated.
            if a.on_create_only {
                continue;
            }
            match a.expr.eval_changed(&scope, from) {
                Ok(None) => wanted.push((a.name.as_str(), Wanted::Same(from))),
                Ok(Some(to)) => wanted.push((a.name.as_str(), Wanted::New(to))),
                Err(err) => {
                    failed = true;
                    diags.push(mapping_failed(target, &a.name, &err.to_string(), id));
                }
            }
        }
        if failed {
            continue;
        }
        for (f, val) in std::mem::take(&mut v.generated) {
            let from = k.attributes.get(&f);
            let w = if crate::expr::same_value(from, &val) {
                Wanted::Same(from)
            } else {
                Wanted::New(val)
            };
            match wanted.iter_mut().find(|(n, _)| *n == f) {
                Some(slot) => slot.1 = w,
                None => wanted.push((target_field(target, &f), w)),
            }
        }
        if read_later {
            let data = account_data(target, |name| {
                match wanted.iter().find(|(n, _)| *n == name) {
                    Some((_, Wanted::New(val))) => Some(val),
                    Some((_, Wanted::Same(Some(val)))) => Some(*val),
                    Some((_, Wanted::Same(None))) => Some(&NULL),
                    None => k.attributes.get(name),
                }
            });
            accounts.insert(target.name.clone(), data);
        }
        let changes: BTreeMap<String, Change> = wanted
            .into_iter()
            .filter_map(|(name, w)| match w {
                Wanted::Same(_) => None,
                Wanted::New(to) => {
                    let from = k.attributes.get(name).cloned().unwrap_or_default();
                    Some((name.to_owned(), Change { from, to }))
                }
            })
            .collect();
        if !changes.is_empty() {
            let fields = changed_fields.get_or_insert_with(|| {
                previous
                    .and_then(|s| s.person(&person.external_id))
                    .map(|b| source_changes(b, person))
                    .unwrap_or_default()
            });
            let mut reasons = Vec::new();
            if !v.generator_inputs.is_empty() {
                reasons.push(
                    Reason::new(Origin::Regenerated)
                        .rules(v.generator_inputs.keys().cloned().collect()),
                );
            }
            reasons.push(if fields.is_empty() {
                Reason::new(Origin::MappingChanged)
            } else {
                Reason::new(Origin::PersonUpdated).fields(fields.clone())
            });
            let mut a = Action::new(&target.name, id, ActionKind::Update, reasons);
            a.changes = changes;
            a.generator_inputs = std::mem::take(&mut v.generator_inputs);
            actions.push(a);
        }
        lifecycle(ctx, &target.name, person, v, k, &mut actions);
        // Both in name order: one walk finds what to grant and what to revoke.
        let mut wanted = v.permissions.iter().peekable();
        let mut revoke = Vec::new();
        for name in &k.permissions {
            while let Some((w, g)) = wanted.next_if(|(w, _)| *w < name.as_str()) {
                let mut a =
                    Action::new(&target.name, id, ActionKind::Grant, vec![grounds_reason(g)]);
                a.permission = Some(w.to_owned());
                actions.push(a);
            }
            if wanted.next_if(|(w, _)| *w == name.as_str()).is_none() {
                revoke.push(name);
            }
        }
        for (w, g) in wanted {
            let mut a = Action::new(&target.name, id, ActionKind::Grant, vec![grounds_reason(g)]);
            a.permission = Some(w.to_owned());
            actions.push(a);
        }
        for name in revoke {
            let reason = revoke_reason(ctx, ti, person, name);
            let mut a = Action::new(&target.name, id, ActionKind::Revoke, vec![reason]);
            a.permission = Some(name.clone());
            actions.push(a);
        }
    }
    (actions, diags)
}

/// A wanted attribute of an existing account: what it already holds (borrowed from the known
/// state, `None` when absent and wanted absent) or a new value.
enum Wanted<'k> {
    Same(Option<&'k AttrValue>),
    New(AttrValue),
}

static NULL: AttrValue = AttrValue::Null;

/// A generated field's name as the configuration spells it, borrowed for the whole run.
fn target_field<'t>(target: &'t crate::config::CompiledTarget, field: &str) -> &'t str {
    target
        .generated_fields()
        .find(|f| *f == field)
        .unwrap_or_default()
}

fn mapping_failed(
    target: &crate::config::CompiledTarget,
    attribute: &str,
    err: &str,
    person: &str,
) -> Diagnostic {
    Diagnostic::error(
        "mapping_evaluation",
        format!(
            "target {:?} attribute {attribute:?}: {err}; the account is left untouched",
            target.name
        ),
    )
    .for_person(person)
}

/// Account data for the targets planned after this one: the stored attributes and the
/// generated fields, by the value `wanted` gives for each name.
fn account_data<'v>(
    target: &crate::config::CompiledTarget,
    wanted: impl Fn(&str) -> Option<&'v AttrValue>,
) -> BTreeMap<String, AttrValue> {
    let mut data: BTreeMap<String, AttrValue> = target
        .attributes
        .iter()
        .filter(|a| a.store)
        .filter_map(|a| wanted(&a.name).map(|val| (a.name.clone(), val.clone())))
        .collect();
    for f in target.generated_fields() {
        if let Some(val) = wanted(f) {
            data.insert(f.to_owned(), val.clone());
        }
    }
    data
}

/// What an existing account offers later targets as `accounts.<target>`: its stored
/// attributes and generated values, as last written.
fn known_data(
    target: &crate::config::CompiledTarget,
    k: &KnownAccount,
) -> BTreeMap<String, AttrValue> {
    let generated: BTreeSet<&str> = target.generated_fields().collect();
    k.attributes
        .iter()
        .filter(|(name, _)| {
            generated.contains(name.as_str())
                || target
                    .attributes
                    .iter()
                    .any(|a| a.store && &a.name == *name)
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

/// Enable or disable an existing, wanted account by the contract dates.
fn lifecycle(
    ctx: &Ctx<'_>,
    target: &str,
    person: &Person,
    v: &TargetVerdict,
    k: &KnownAccount,
    actions: &mut Vec<Action>,
) {
    let id = person.external_id.as_str();
    if v.enabled && !k.enabled {
        let started: Vec<String> = v
            .grounds
            .contracts
            .iter()
            .map(|&c| &person.contracts[c])
            .filter(|c| c.start <= ctx.now)
            .map(|c| c.id.clone())
            .collect();
        let mut r = Reason::new(Origin::ContractStarted).contracts(started);
        if let Some(d) = v.first_start {
            r = r.date(d);
        }
        actions.push(Action::new(target, id, ActionKind::Enable, vec![r]));
    } else if !v.enabled && k.enabled {
        let mut r = Reason::new(Origin::PreBoarding);
        if let Some(d) = v.first_start {
            r = r.date(d);
        }
        actions.push(Action::new(target, id, ActionKind::Disable, vec![r]));
    }
}

/// Why an account is no longer wanted.
fn person_origin(ctx: &Ctx<'_>, person: Option<&Person>, ti: usize) -> Reason {
    let Some(person) = person else {
        return Reason::new(Origin::PersonRemoved);
    };
    let lc = &ctx.cfg.targets[ti].lifecycle;
    if !person
        .contracts
        .iter()
        .any(|c| super::eval::in_window(c, lc, ctx.now))
    {
        let ended: Vec<&crate::Contract> = person
            .contracts
            .iter()
            .filter(|c| c.end.is_some_and(|e| e < ctx.now))
            .collect();
        if !ended.is_empty() {
            let last = ended.iter().filter_map(|c| c.end).max();
            let mut r = Reason::new(Origin::ContractEnded)
                .contracts(ended.iter().map(|c| c.id.clone()).collect());
            if let Some(d) = last {
                r = r.date(d);
            }
            return r;
        }
    }
    let rules = ctx
        .cfg
        .rules
        .iter()
        .filter(|r| r.accounts.contains(&ti))
        .map(|r| r.id.clone())
        .collect();
    Reason::new(Origin::RemovedFromRule).rules(rules)
}

fn revoke_reason(ctx: &Ctx<'_>, ti: usize, person: &Person, permission: &str) -> Reason {
    let mut r = person_origin(ctx, Some(person), ti);
    if r.origin == Origin::RemovedFromRule {
        // Name the rules that could grant this permission, when it is a static one.
        r.rules = ctx
            .cfg
            .rules
            .iter()
            .filter(|rule| {
                rule.permissions.iter().any(|p| {
                    p.target == ti
                        && match &p.kind {
                            crate::config::PermissionKind::Static(n) => n == permission,
                            crate::config::PermissionKind::Dynamic(_) => true,
                        }
                })
            })
            .map(|rule| rule.id.clone())
            .collect();
    }
    r
}

/// An account no rule wants: revoke its permissions and disable it, then delete it once the
/// retention has passed.
fn leave(
    ctx: &Ctx<'_>,
    ti: usize,
    reason: Reason,
    person: &str,
    k: &KnownAccount,
    actions: &mut Vec<Action>,
) {
    let target = &ctx.cfg.targets[ti];
    for name in &k.permissions {
        let mut a = Action::new(
            &target.name,
            person,
            ActionKind::Revoke,
            vec![reason.clone()],
        );
        a.permission = Some(name.clone());
        actions.push(a);
    }
    // A pre-boarding account never enabled has no disable date yet: disabling it (a no-op in
    // the target) starts the retention, so a cancelled joiner is deleted in time too.
    if k.enabled || k.disabled_on.is_none() {
        actions.push(Action::new(
            &target.name,
            person,
            ActionKind::Disable,
            vec![reason],
        ));
        return;
    }
    let (Some(days), Some(disabled_on)) = (target.lifecycle.delete_after_days, k.disabled_on)
    else {
        return;
    };
    let due = disabled_on.checked_add_days(chrono::Days::new(days.into()));
    if due.is_some_and(|d| d <= ctx.now) {
        let mut a = Action::new(
            &target.name,
            person,
            ActionKind::Delete,
            vec![Reason::new(Origin::RetentionExpired).date(disabled_on)],
        );
        let generated: BTreeSet<&str> = target.generated_fields().collect();
        a.released = k
            .attributes
            .iter()
            .filter(|(f, _)| generated.contains(f.as_str()))
            .filter_map(|(f, v)| v.as_str().map(|s| (f.clone(), s.to_owned())))
            .collect();
        actions.push(a);
    }
}

/// Known accounts whose person is not in the snapshot any more.
pub(crate) fn gone_persons(ctx: &Ctx<'_>, snapshot: &Snapshot) -> Vec<Action> {
    let mut actions = Vec::new();
    for (ti, known) in ctx.known.iter().enumerate() {
        let Some(known) = known else { continue };
        // Accounts and persons are both in external id order: one walk over the two, not a
        // search of the snapshot per account.
        let mut persons = snapshot.persons.iter().peekable();
        for (person, k) in &known.accounts {
            while persons
                .next_if(|p| p.external_id.as_str() < person.as_str())
                .is_some()
            {}
            let present = persons
                .peek()
                .is_some_and(|p| p.external_id.as_str() == person.as_str());
            if !present {
                leave(
                    ctx,
                    ti,
                    Reason::new(Origin::PersonRemoved),
                    person,
                    k,
                    &mut actions,
                );
            }
        }
    }
    actions
}

/// The source fields that differ between two versions of a person, as dotted paths.
pub fn source_changes(before: &Person, after: &Person) -> Vec<String> {
    let mut out = Vec::new();
    let mut cmp = |name: &str, a: &str, b: &str| {
        if a != b {
            out.push(name.to_owned());
        }
    };
    let (a, b) = (&before.name, &after.name);
    cmp("name.given", &a.given, &b.given);
    cmp("name.nickname", &a.nickname, &b.nickname);
    cmp("name.initials", &a.initials, &b.initials);
    cmp("name.family_prefix", &a.family_prefix, &b.family_prefix);
    cmp("name.family", &a.family, &b.family);
    cmp("name.partner_prefix", &a.partner_prefix, &b.partner_prefix);
    cmp("name.partner", &a.partner, &b.partner);
    cmp(
        "name.convention",
        a.convention.as_str(),
        b.convention.as_str(),
    );
    cmp("email", &before.email, &after.email);
    cmp("phone", &before.phone, &after.phone);
    let keys: BTreeSet<&String> = before.custom.keys().chain(after.custom.keys()).collect();
    for k in keys {
        if before.custom.get(k) != after.custom.get(k) {
            out.push(format!("custom.{k}"));
        }
    }
    let ids: BTreeSet<&str> = before
        .contracts
        .iter()
        .chain(after.contracts.iter())
        .map(|c| c.id.as_str())
        .collect();
    for cid in ids {
        let x = before.contracts.iter().find(|c| c.id == cid);
        let y = after.contracts.iter().find(|c| c.id == cid);
        match (x, y) {
            (Some(_), None) => out.push(format!("contracts.{cid} (removed)")),
            (None, Some(_)) => out.push(format!("contracts.{cid} (added)")),
            (Some(x), Some(y)) => {
                let fields: [(&str, bool); 12] = [
                    ("start", x.start == y.start),
                    ("end", x.end == y.end),
                    ("department", x.department == y.department),
                    ("title", x.title == y.title),
                    ("location", x.location == y.location),
                    ("cost_centre", x.cost_centre == y.cost_centre),
                    ("manager", x.manager == y.manager),
                    ("employment_type", x.employment_type == y.employment_type),
                    ("fte", x.fte == y.fte),
                    ("hours_per_week", x.hours_per_week == y.hours_per_week),
                    ("sequence", x.sequence == y.sequence),
                    ("id", true),
                ];
                for (f, same) in fields {
                    if !same {
                        out.push(format!("contracts.{cid}.{f}"));
                    }
                }
            }
            (None, None) => {}
        }
    }
    out
}
