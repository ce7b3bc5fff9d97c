//! How plans and explanations read: a coloured, terraform-like diff grouped by target for
//! people, and stable JSON for scripts.

use std::collections::BTreeMap;
use std::io::Write;

use anstyle::{AnsiColor, Style};
use koppel_core::config::CompiledConfig;
use koppel_core::plan::{Action, ActionKind, Origin, PersonEval, Reason};
use koppel_core::{AttrValue, Org, Person, Plan, Snapshot};
use serde::Serialize;

use crate::Output;
use crate::run::{Loaded, plural};

pub const ERR: Style = AnsiColor::Red.on_default().bold();
const ADD: Style = AnsiColor::Green.on_default();
const CHG: Style = AnsiColor::Yellow.on_default();
const DEL: Style = AnsiColor::Red.on_default();
const DIM: Style = Style::new().dimmed();
const BOLD: Style = Style::new().bold();

fn style(kind: ActionKind) -> (Style, &'static str) {
    match kind {
        ActionKind::Create => (ADD, "+"),
        ActionKind::Grant => (ADD, "+"),
        ActionKind::Enable => (ADD, "↑"),
        ActionKind::Update => (CHG, "~"),
        ActionKind::Revoke => (DEL, "-"),
        ActionKind::Disable => (DEL, "↓"),
        ActionKind::Delete => (DEL, "-"),
    }
}

/// A person's name for display next to their id.
pub fn person_label(snapshot: &Snapshot, id: &str) -> String {
    match snapshot.person(id) {
        Some(p) => format!("{id} ({})", koppel_core::names::display_name(&p.name)),
        None => format!("{id} (no longer in the source)"),
    }
}

pub fn reason_text(r: &Reason) -> String {
    let mut s = match r.origin {
        Origin::RuleMatched => "rule matched".to_owned(),
        Origin::PreBoarding => "pre-boarding".to_owned(),
        Origin::ContractStarted => "contract started".to_owned(),
        Origin::PersonUpdated => "person updated".to_owned(),
        Origin::MappingChanged => "mapping gives a new value".to_owned(),
        Origin::Regenerated => "regenerated".to_owned(),
        Origin::RemovedFromRule => "no rule matches any more".to_owned(),
        Origin::ContractEnded => "contract ended".to_owned(),
        Origin::PersonRemoved => "person no longer in the source".to_owned(),
        Origin::RetentionExpired => "retention expired".to_owned(),
        Origin::Drift => "changed outside koppel".to_owned(),
    };
    let mut parts = Vec::new();
    if !r.rules.is_empty() {
        let label = if r.origin == Origin::Regenerated {
            "generator"
        } else {
            "rule"
        };
        parts.push(format!(
            "{label}{} {}",
            plural(r.rules.len()),
            r.rules.join(", ")
        ));
    }
    if !r.contracts.is_empty() {
        parts.push(format!(
            "contract{} {}",
            plural(r.contracts.len()),
            r.contracts.join(", ")
        ));
    }
    if !r.fields.is_empty() {
        parts.push(format!("changed {}", r.fields.join(", ")));
    }
    if let Some(d) = r.date {
        parts.push(match r.origin {
            Origin::PreBoarding | Origin::ContractStarted => format!("starts {d}"),
            Origin::RetentionExpired => format!("disabled {d}"),
            _ => format!("on {d}"),
        });
    }
    if r.origin == Origin::RuleMatched && !parts.is_empty() {
        // "rule staff; contract C1" says it all.
        return parts.join("; ");
    }
    if !parts.is_empty() {
        s.push_str(": ");
        s.push_str(&parts.join("; "));
    }
    s
}

/// Writes the plan as JSON (an object with the date, guard breaches, population, actions,
/// blocked persons and diagnostics) and a newline to `out` as it is made: a plan of 100,000
/// persons is hundreds of megabytes of JSON, which must not be held in memory as one string.
pub fn write_plan_json(out: &mut impl Write, plan: &Plan) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, plan)?;
    writeln!(out)?;
    Ok(())
}

pub fn plan(loaded: &Loaded, plan: &Plan, output: Output, summary: bool) -> anyhow::Result<()> {
    // Buffered: the text of a large plan is millions of short writes.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, anstream::stdout().lock());
    if output == Output::Json {
        write_plan_json(&mut out, plan)?;
    } else {
        header(&mut out, loaded, plan)?;
        if !summary {
            actions(&mut out, &loaded.snapshot, plan, None)?;
        }
        footer(&mut out, plan)?;
    }
    out.flush()?;
    Ok(())
}

pub fn header(out: &mut impl Write, loaded: &Loaded, plan: &Plan) -> anyhow::Result<()> {
    let p = &plan.population;
    write!(
        out,
        "{BOLD}koppel plan{BOLD:#} as of {} · {} person{}",
        plan.now,
        p.current,
        plural(p.current as usize)
    )?;
    if p.previous.is_some() {
        write!(
            out,
            " ({} added, {} removed since the previous snapshot)",
            p.added, p.removed
        )?;
    }
    writeln!(
        out,
        " · {} target{}",
        loaded.config.targets.len(),
        plural(loaded.config.targets.len())
    )?;
    for d in &plan.diagnostics {
        let st = match d.severity {
            koppel_core::Severity::Error => ERR,
            koppel_core::Severity::Warning => CHG,
        };
        writeln!(out, "{st}{d}{st:#}")?;
    }
    if !plan.blocked.is_empty() {
        writeln!(
            out,
            "{CHG}{} person{} blocked (left untouched everywhere):{CHG:#}",
            plan.blocked.len(),
            plural(plan.blocked.len())
        )?;
        for b in plan.blocked.iter().take(20) {
            writeln!(
                out,
                "  {} — missing {}",
                person_label(&loaded.snapshot, &b.person),
                b.missing.join(", ")
            )?;
        }
        if plan.blocked.len() > 20 {
            writeln!(out, "  … and {} more", plan.blocked.len() - 20)?;
        }
    }
    for h in &plan.held {
        writeln!(out, "{ERR}HELD: {h}{ERR:#}")?;
    }
    if !plan.held.is_empty() {
        writeln!(
            out,
            "{ERR}The run is held by the source guards: nothing will be applied.{ERR:#}"
        )?;
    }
    Ok(())
}

/// Prints actions grouped by target; `limit` caps the actions shown per target and kind.
pub fn actions(
    out: &mut impl Write,
    snapshot: &Snapshot,
    plan: &Plan,
    limit: Option<usize>,
) -> anyhow::Result<()> {
    let mut by_target: BTreeMap<usize, (&str, Vec<&Action>)> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for a in &plan.actions {
        if !order.contains(&a.target.as_str()) {
            order.push(&a.target);
        }
        let i = order.iter().position(|t| *t == a.target).unwrap_or(0);
        by_target
            .entry(i)
            .or_insert((&a.target, Vec::new()))
            .1
            .push(a);
    }
    for (_, (target, list)) in by_target {
        writeln!(out)?;
        writeln!(
            out,
            "{BOLD}target {target}{BOLD:#} — {} action{}",
            list.len(),
            plural(list.len())
        )?;
        let shown = limit.unwrap_or(usize::MAX);
        let mut per_kind: BTreeMap<ActionKind, usize> = BTreeMap::new();
        let mut hidden = 0;
        // A person's actions of one kind follow each other: their label is made once.
        let mut label: (&str, String) = ("", String::new());
        for a in &list {
            let n = per_kind.entry(a.kind).or_default();
            *n += 1;
            if *n <= shown {
                if label.0 != a.person || label.1.is_empty() {
                    label = (&a.person, person_label(snapshot, &a.person));
                }
                action_labelled(out, &label.1, a)?;
            } else {
                hidden += 1;
            }
        }
        if hidden > 0 {
            writeln!(
                out,
                "  {DIM}… and {hidden} more (koppel plan shows all){DIM:#}"
            )?;
        }
    }
    Ok(())
}

fn action(out: &mut impl Write, snapshot: &Snapshot, a: &Action) -> anyhow::Result<()> {
    action_labelled(out, &person_label(snapshot, &a.person), a)
}

/// An action, its person shown as `label` (see [`person_label`]).
fn action_labelled(out: &mut impl Write, label: &str, a: &Action) -> anyhow::Result<()> {
    let (st, sign) = style(a.kind);
    write!(out, "  {st}{sign} {:<7}{st:#}", a.kind.as_str())?;
    if let Some(p) = &a.permission {
        write!(out, " {p:?} for")?;
    }
    write!(out, " {label}  {DIM}[")?;
    for (i, r) in a.reasons.iter().enumerate() {
        if i > 0 {
            out.write_all(" · ".as_bytes())?;
        }
        out.write_all(reason_text(r).as_bytes())?;
    }
    writeln!(out, "]{DIM:#}")?;
    let width = a
        .attributes
        .keys()
        .chain(a.changes.keys())
        .map(|k| k.len())
        .max()
        .unwrap_or(0);
    for (k, v) in &a.attributes {
        writeln!(out, "      {k:<width$} = {}", value(v))?;
    }
    if let Some(enabled) = a.enabled {
        writeln!(
            out,
            "      {:<width$}   {}",
            "",
            if enabled {
                "enabled"
            } else {
                "disabled until the start date"
            }
        )?;
    }
    for (k, c) in &a.changes {
        writeln!(
            out,
            "      {k:<width$}: {DEL}{}{DEL:#} → {ADD}{}{ADD:#}",
            value(&c.from),
            value(&c.to)
        )?;
    }
    Ok(())
}

fn value(v: &AttrValue) -> String {
    v.to_string()
}

/// "12 create, 40 grant" for a plan.
pub fn counts_line(plan: &Plan) -> String {
    let mut totals: BTreeMap<ActionKind, usize> = BTreeMap::new();
    for a in &plan.actions {
        *totals.entry(a.kind).or_default() += 1;
    }
    if totals.is_empty() {
        return "no changes".to_owned();
    }
    ActionKind::ALL
        .iter()
        .filter_map(|k| totals.get(k).map(|n| format!("{n} {}", k.as_str())))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn footer(out: &mut impl Write, plan: &Plan) -> anyhow::Result<()> {
    writeln!(out)?;
    if plan.is_empty() {
        writeln!(
            out,
            "{ADD}No changes.{ADD:#} The targets match the HR data."
        )?;
        return Ok(());
    }
    let mut totals: BTreeMap<ActionKind, usize> = BTreeMap::new();
    for per in plan.counts().values() {
        for (k, n) in per {
            *totals.entry(*k).or_default() += n;
        }
    }
    let parts: Vec<String> = ActionKind::ALL
        .iter()
        .filter_map(|k| totals.get(k).map(|n| format!("{n} {}", k.as_str())))
        .collect();
    writeln!(out, "{BOLD}Plan:{BOLD:#} {}.", parts.join(", "))?;
    for (t, per) in plan.counts() {
        let parts: Vec<String> = per
            .iter()
            .map(|(k, n)| format!("{n} {}", k.as_str()))
            .collect();
        writeln!(out, "  {t}: {}", parts.join(", "))?;
    }
    Ok(())
}

#[derive(Serialize)]
struct ContractJson<'a> {
    id: &'a str,
    start: koppel_core::Date,
    end: Option<koppel_core::Date>,
    department: &'a str,
    title: &'a str,
    location: &'a str,
    active: bool,
    primary: bool,
}

#[derive(Serialize)]
struct RuleContractJson<'a> {
    contract: &'a str,
    matched: Result<bool, String>,
    in_window: BTreeMap<&'a str, bool>,
}

#[derive(Serialize)]
struct RuleJson<'a> {
    rule: &'a str,
    description: &'a str,
    condition: Result<bool, String>,
    contracts: Vec<RuleContractJson<'a>>,
}

#[derive(Serialize)]
struct GroundsJson {
    rules: Vec<String>,
    contracts: Vec<String>,
}

#[derive(Serialize)]
struct TargetJson<'a> {
    target: &'a str,
    account: bool,
    enabled: bool,
    held: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    grounds: Option<GroundsJson>,
    permissions: BTreeMap<&'a str, GroundsJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    why_not: Option<String>,
}

#[derive(Serialize)]
struct ExplainJson<'a> {
    person: &'a str,
    name: String,
    active: bool,
    excluded: bool,
    blocked: Option<Vec<String>>,
    contracts: Vec<ContractJson<'a>>,
    rules: Vec<RuleJson<'a>>,
    targets: Vec<TargetJson<'a>>,
    actions: Vec<Action>,
    diagnostics: Vec<koppel_core::Diagnostic>,
}

fn grounds_json(
    config: &CompiledConfig,
    p: &Person,
    g: &koppel_core::plan::Grounds,
) -> GroundsJson {
    GroundsJson {
        rules: g
            .rules
            .iter()
            .map(|&r| config.rules[r].id.clone())
            .collect(),
        contracts: g
            .contracts
            .iter()
            .map(|&c| p.contracts[c].id.clone())
            .collect(),
    }
}

/// Why a target gets no account: the rules that could grant it and what stopped each.
fn why_not(config: &CompiledConfig, e: &PersonEval<'_>, ti: usize) -> String {
    let mut reasons = Vec::new();
    for rv in &e.rules {
        let rule = &config.rules[rv.rule];
        if !rule.accounts.contains(&ti) {
            continue;
        }
        let r = match &rv.condition {
            Err(err) => format!("rule {}: condition failed: {err}", rule.id),
            Ok(false) => format!("rule {}: condition is false", rule.id),
            Ok(true) if e.person.contracts.is_empty() => {
                format!("rule {}: the person has no contracts", rule.id)
            }
            Ok(true) => {
                let per: Vec<String> = rv
                    .contracts
                    .iter()
                    .map(|cv| {
                        let id = &e.person.contracts[cv.contract].id;
                        match (
                            &cv.matched,
                            cv.in_window.iter().find(|w| w.0 == ti).is_some_and(|w| w.1),
                        ) {
                            (Err(err), _) => format!("{id} failed: {err}"),
                            (Ok(false), _) => format!("{id} does not match the contract condition"),
                            (Ok(true), false) => format!("{id} is outside the lifecycle window"),
                            (Ok(true), true) => format!("{id} matches"),
                        }
                    })
                    .collect();
                format!("rule {}: {}", rule.id, per.join("; "))
            }
        };
        reasons.push(r);
    }
    if reasons.is_empty() {
        "no rule grants an account in this target".to_owned()
    } else {
        reasons.join(" | ")
    }
}

/// `koppel explain --output json` for one person, as a value (the daemon's API serves it).
pub fn explain_value(
    config: &CompiledConfig,
    snapshot: &Snapshot,
    known: &koppel_core::KnownState,
    now: koppel_core::Date,
    external_id: &str,
) -> Option<serde_json::Value> {
    with_explain(config, snapshot, known, now, external_id, |j, _| {
        serde_json::to_value(j).ok()
    })?
}

/// Evaluates one person fully and hands the explanation to `f`; `None` when the snapshot has
/// no such person.
fn with_explain<R>(
    config: &CompiledConfig,
    snapshot: &Snapshot,
    known: &koppel_core::KnownState,
    now: koppel_core::Date,
    external_id: &str,
    f: impl FnOnce(&ExplainJson<'_>, &PersonEval<'_>) -> R,
) -> Option<R> {
    let org = Org::new(snapshot.departments.clone());
    let (e, acts, diags) =
        koppel_core::plan::explain(config, snapshot, &org, known, now, external_id)?;
    let p = e.person;
    let j = ExplainJson {
        person: &p.external_id,
        name: koppel_core::names::display_name(&p.name),
        active: p.is_active_on(now),
        excluded: e.excluded,
        blocked: e.blocked.clone(),
        contracts: p
            .contracts
            .iter()
            .map(|c| ContractJson {
                id: &c.id,
                start: c.start,
                end: c.end,
                department: &c.department,
                title: &c.title.name,
                location: &c.location,
                active: c.is_active_on(now),
                primary: e.primary.is_some_and(|pc| pc.id == c.id),
            })
            .collect(),
        rules: e
            .rules
            .iter()
            .map(|rv| {
                let rule = &config.rules[rv.rule];
                RuleJson {
                    rule: &rule.id,
                    description: &rule.description,
                    condition: rv.condition.clone(),
                    contracts: rv
                        .contracts
                        .iter()
                        .map(|cv| RuleContractJson {
                            contract: &p.contracts[cv.contract].id,
                            matched: cv.matched.clone(),
                            in_window: cv
                                .in_window
                                .iter()
                                .map(|(t, ok)| (config.targets[*t].name.as_str(), *ok))
                                .collect(),
                        })
                        .collect(),
                }
            })
            .collect(),
        targets: config
            .targets
            .iter()
            .enumerate()
            .map(|(ti, t)| {
                let v = &e.targets[ti];
                TargetJson {
                    target: &t.name,
                    account: v.account,
                    enabled: v.enabled,
                    held: v.held,
                    grounds: v.account.then(|| grounds_json(config, p, &v.grounds)),
                    permissions: v
                        .permissions
                        .iter()
                        .map(|(n, g)| (n, grounds_json(config, p, g)))
                        .collect(),
                    why_not: (!v.account).then(|| why_not(config, &e, ti)),
                }
            })
            .collect(),
        actions: acts,
        diagnostics: diags,
    };
    Some(f(&j, &e))
}

pub fn explain(loaded: &Loaded, external_id: &str, output: Output) -> anyhow::Result<()> {
    let now = loaded.now;
    let printed = with_explain(
        &loaded.config,
        &loaded.snapshot,
        &loaded.known,
        now,
        external_id,
        |j, e| print_explain(loaded, j, e, output),
    );
    match printed {
        Some(r) => r,
        None => anyhow::bail!("no person with external id {external_id:?} in the source"),
    }
}

fn print_explain(
    loaded: &Loaded,
    j: &ExplainJson<'_>,
    e: &PersonEval<'_>,
    output: Output,
) -> anyhow::Result<()> {
    let now = loaded.now;
    let mut out = anstream::stdout().lock();
    if output == Output::Json {
        writeln!(out, "{}", serde_json::to_string_pretty(j)?)?;
        return Ok(());
    }
    writeln!(out, "{BOLD}{} {}{BOLD:#} as of {now}", j.person, j.name)?;
    let state = if e.excluded {
        "excluded: keeps what they have, nothing is granted or revoked"
    } else if j.active {
        "active"
    } else {
        "not active"
    };
    writeln!(out, "  {state}")?;
    if let Some(m) = &j.blocked {
        writeln!(
            out,
            "  {ERR}blocked{ERR:#}: missing {} — left untouched in every target",
            m.join(", ")
        )?;
    }
    writeln!(out, "\n{BOLD}Contracts{BOLD:#}")?;
    for c in &j.contracts {
        let end = c.end.map_or("open".to_owned(), |d| d.to_string());
        writeln!(
            out,
            "  {}{} {} – {}  {}  {}  {}{}",
            c.id,
            if c.primary { " (primary)" } else { "" },
            c.start,
            end,
            c.department,
            c.title,
            c.location,
            if c.active { "  active" } else { "" }
        )?;
    }
    writeln!(out, "\n{BOLD}Rules{BOLD:#}")?;
    for r in &j.rules {
        let (st, mark, text) = match &r.condition {
            Err(err) => (ERR, "!", format!("condition failed: {err}")),
            Ok(false) => (DIM, "✗", "condition is false".to_owned()),
            Ok(true) => {
                let any = r
                    .contracts
                    .iter()
                    .any(|c| c.matched == Ok(true) && c.in_window.values().any(|w| *w));
                if any {
                    (ADD, "✓", "matches".to_owned())
                } else {
                    (DIM, "✗", "no contract in conditions".to_owned())
                }
            }
        };
        writeln!(
            out,
            "  {st}{mark} {}{st:#} — {text}{}",
            r.rule,
            if r.description.is_empty() {
                String::new()
            } else {
                format!("  {DIM}({}){DIM:#}", r.description)
            }
        )?;
        for c in &r.contracts {
            let m = match &c.matched {
                Ok(true) => "matches".to_owned(),
                Ok(false) => "does not match".to_owned(),
                Err(e) => format!("failed: {e}"),
            };
            let w: Vec<String> = c
                .in_window
                .iter()
                .map(|(t, ok)| format!("{t}: {}", if *ok { "in window" } else { "outside window" }))
                .collect();
            writeln!(out, "      contract {} {m}; {}", c.contract, w.join(", "))?;
        }
    }
    writeln!(out, "\n{BOLD}Targets{BOLD:#}")?;
    for t in &j.targets {
        if t.account {
            let g = t.grounds.as_ref();
            writeln!(
                out,
                "  {ADD}{}{ADD:#}: account{}{} — rules {}; contracts {}",
                t.target,
                if t.enabled {
                    ", enabled"
                } else {
                    ", disabled until the start date"
                },
                if t.held { " (held by an error)" } else { "" },
                g.map(|g| g.rules.join(", ")).unwrap_or_default(),
                g.map(|g| g.contracts.join(", ")).unwrap_or_default()
            )?;
            for (name, g) in &t.permissions {
                writeln!(
                    out,
                    "      permission {name:?} — rules {}; contracts {}",
                    g.rules.join(", "),
                    g.contracts.join(", ")
                )?;
            }
        } else {
            writeln!(
                out,
                "  {DIM}{}{DIM:#}: no account — {}",
                t.target,
                t.why_not.as_deref().unwrap_or("")
            )?;
        }
    }
    if !j.actions.is_empty() {
        writeln!(
            out,
            "\n{BOLD}Plan for this person{BOLD:#} {DIM}(unique values as if planned alone){DIM:#}"
        )?;
        for a in &j.actions {
            action(&mut out, &loaded.snapshot, a)?;
        }
    }
    for d in &j.diagnostics {
        writeln!(out, "{ERR}{d}{ERR:#}")?;
    }
    Ok(())
}
