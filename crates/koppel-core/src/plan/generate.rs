//! Phase two of planning: unique values from generators, handed out in person order so the
//! same input always gives the same usernames, against everything assigned or recently released
//! and everything the live target holds (read before planning, see [`crate::live`]).

use std::collections::{BTreeMap, HashMap};

use super::eval::{Ctx, PersonEval, generator_fields};
use crate::diag::Diagnostic;
use crate::live::LiveValues;
use crate::value::AttrValue;

/// Values in use for one field of one target, lowercased (directories treat `JDoe` and
/// `jdoe` as the same name), each with the person that holds it, so that a person's own value
/// counts as free; `None` for a value released by a deleted account. One map, so that each
/// check hashes the value once.
type Taken<'a> = HashMap<String, Option<&'a str>>;

/// Whether `key` (lowercased) is free for `person`.
fn free_for(taken: Option<&Taken<'_>>, key: &str, person: &str) -> bool {
    taken.is_none_or(|t| match t.get(key) {
        None => true,
        Some(owner) => *owner == Some(person),
    })
}

pub(crate) fn allocate<'a>(
    ctx: &Ctx<'a>,
    live: &LiveValues,
    evals: &mut [PersonEval<'a>],
    diagnostics: &mut Vec<Diagnostic>,
) {
    for (ti, target) in ctx.cfg.targets.iter().enumerate() {
        if target.generators.is_empty() || !evals.iter().any(|e| !e.targets[ti].pending.is_empty())
        {
            continue;
        }
        // Sized for every known account and every person waiting for a value: growing a
        // hash map of 100,000 values step by step rehashes them all several times.
        let expected = ctx.known[ti].map_or(0, |k| k.accounts.len())
            + evals
                .iter()
                .filter(|e| !e.targets[ti].pending.is_empty())
                .count();
        let mut taken: BTreeMap<&str, Taken<'a>> = BTreeMap::new();
        for field in target.generated_fields() {
            taken
                .entry(field)
                .or_insert_with(|| Taken::with_capacity(expected));
        }
        if let Some(known) = ctx.known[ti] {
            for (person, acc) in &known.accounts {
                for (field, t) in taken.iter_mut() {
                    if let Some(AttrValue::Text(v)) = acc.attributes.get(*field) {
                        t.insert(v.to_lowercase(), Some(person.as_str()));
                    }
                }
            }
            for (field, released) in &known.released {
                let Some(t) = taken.get_mut(field.as_str()) else {
                    continue;
                };
                let retention = target
                    .generators
                    .iter()
                    .find(|g| g.fields.iter().any(|(f, _)| f == field))
                    .map_or(0, |g| g.release_retention_days);
                for (value, on) in released {
                    let until = on.checked_add_days(chrono::Days::new(retention.into()));
                    if until.is_none_or(|u| ctx.now < u) {
                        t.entry(value.to_lowercase()).or_insert(None);
                    }
                }
            }
        }

        // Live values only matter for targets that were read; their holders are compared by
        // correlation value, which is evaluated for a person only when a live value is hit.
        let live = live.target(&target.name);
        let correlation_def = target.correlation_attribute();

        // Per generator and first candidate, the next iteration worth trying: taken values
        // only grow during a run, so numbers below it stay taken. Without this, the thousandth
        // Jan Jansen of a large organisation would try a thousand numbers.
        let mut next_n: HashMap<(usize, String), i64> = HashMap::new();
        for e in evals.iter_mut() {
            let person: &'a str = e.person.external_id.as_str();
            let pending = std::mem::take(&mut e.targets[ti].pending);
            let (person_ref, primary) = (e.person, e.primary);
            // The person's own correlation value: an account holding it is theirs to adopt.
            let own = std::cell::OnceCell::new();
            let own_correlation = || -> Option<&String> {
                own.get_or_init(|| ctx.correlation_value(correlation_def?, person_ref, primary))
                    .as_ref()
            };
            for p in pending {
                let g = &target.generators[p.generator];
                let free = |fields: &[(String, String)], taken: &BTreeMap<&str, Taken<'a>>| {
                    fields.iter().all(|(f, v)| {
                        let key = v.to_lowercase();
                        !v.is_empty()
                            && free_for(taken.get(f.as_str()), &key, person)
                            && live.is_none_or(|live| match live.holder(f, &key) {
                                None => true,
                                Some(holder) => {
                                    holder.is_some()
                                        && holder == own_correlation().map(String::as_str)
                                }
                            })
                    })
                };
                let mut chosen = p
                    .candidates
                    .iter()
                    .find(|(_, f)| free(f, &taken))
                    .map(|(_, f)| f.clone());
                if chosen.is_none()
                    && let Some((first, _)) = p.candidates.first()
                {
                    // Iterations are rare: build the person's scope only when needed.
                    let scope = ctx.scope(e.person, e.primary);
                    let hint_key = (p.generator, first.to_lowercase());
                    let start = next_n.get(&hint_key).copied().unwrap_or(2);
                    // Past the last number tried, every iteration is known to be taken.
                    next_n.insert(hint_key.clone(), i64::from(g.max_iterations) + 1);
                    for n in start..=i64::from(g.max_iterations) {
                        let extra = [
                            ("value", AttrValue::Text(first.clone())),
                            ("n", AttrValue::Int(n)),
                        ];
                        let attempt = g
                            .iteration
                            .eval_string(&scope.with_extra(&extra))
                            .map_err(|e| e.to_string())
                            .and_then(|v| generator_fields(g, &scope, &v, n));
                        match attempt {
                            Ok(fields) if free(&fields, &taken) => {
                                chosen = Some(fields);
                                next_n.insert(hint_key.clone(), n + 1);
                                break;
                            }
                            Ok(_) => {}
                            Err(err) => {
                                diagnostics.push(
                                    Diagnostic::error(
                                        "generator_evaluation",
                                        format!(
                                            "target {:?} generator {:?} iteration {n}: {err}",
                                            target.name, g.name
                                        ),
                                    )
                                    .for_person(person),
                                );
                                break;
                            }
                        }
                    }
                }
                match chosen {
                    Some(fields) => {
                        for (f, v) in fields {
                            if let Some(t) = taken.get_mut(f.as_str()) {
                                t.insert(v.to_lowercase(), Some(person));
                            }
                            e.targets[ti].generated.insert(f, AttrValue::Text(v));
                        }
                        e.targets[ti]
                            .generator_inputs
                            .insert(g.name.clone(), p.inputs);
                    }
                    None => {
                        e.targets[ti].held = true;
                        diagnostics.push(
                            Diagnostic::error(
                                "generator_exhausted",
                                format!(
                                    "target {:?} generator {:?}: no unique value among {} candidates and {} iterations; \
                                     add a candidate or raise max_iterations",
                                    target.name,
                                    g.name,
                                    p.candidates.len(),
                                    g.max_iterations.saturating_sub(1)
                                ),
                            )
                            .for_person(person),
                        );
                    }
                }
            }
        }
    }
}
