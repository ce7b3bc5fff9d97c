//! `koppel demo`: the embedded demo organisation (examples/demo) applied into koppel's built-in
//! directory in a temporary store, today and a month later, told as what happened to whom.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use koppel_core::plan::{Action, ActionKind};
use koppel_core::{Date, Snapshot};

use crate::apply::{Context, Progress, Request};
use crate::{Output, render, run};

/// The demo's files, compiled into the binary.
const CONFIG: &str = include_str!("../../../examples/demo/koppel.toml");
const TODAY: [(&str, &str); 3] = [
    (
        "persons.csv",
        include_str!("../../../examples/demo/hr/persons.csv"),
    ),
    (
        "contracts.csv",
        include_str!("../../../examples/demo/hr/contracts.csv"),
    ),
    (
        "departments.csv",
        include_str!("../../../examples/demo/hr/departments.csv"),
    ),
];
const MONTH_LATER: [(&str, &str); 3] = [
    (
        "persons.csv",
        include_str!("../../../examples/demo/hr-month-later/persons.csv"),
    ),
    (
        "contracts.csv",
        include_str!("../../../examples/demo/hr-month-later/contracts.csv"),
    ),
    (
        "departments.csv",
        include_str!("../../../examples/demo/hr-month-later/departments.csv"),
    ),
];

fn write_hr(dir: &Path, files: &[(&str, &str)]) -> anyhow::Result<()> {
    let hr = dir.join("hr");
    std::fs::create_dir_all(&hr)?;
    for (name, text) in files {
        std::fs::write(hr.join(name), text).with_context(|| format!("writing {name}"))?;
    }
    Ok(())
}

fn day(y: i32, m: u32, d: u32) -> anyhow::Result<Date> {
    Date::from_ymd_opt(y, m, d).context("a valid date")
}

pub fn run(output: Output, full: bool) -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("koppel.toml");
    std::fs::write(&config_path, CONFIG)?;
    write_hr(dir.path(), &TODAY)?;
    let config = run::read_config(&config_path)?;
    let store_path = dir.path().join("koppel.db");
    let progress = Progress::new(true);
    let rt = crate::apply::runtime()?;
    let steps = [
        (day(2026, 11, 23)?, "the HR export as it is today", &TODAY),
        (
            day(2026, 12, 23)?,
            "a month later: joiners, movers, a marriage, leavers, rehires",
            &MONTH_LATER,
        ),
    ];
    let mut results = Vec::new();
    for (now, what, files) in steps {
        write_hr(dir.path(), files)?;
        let (applied, again) = rt.block_on(async {
            let store = koppel_store::SqliteStore::open(&store_path).await?;
            let targets = crate::apply::targets(&config, &store).await?;
            let ctx = Context {
                config: &config,
                config_path: &config_path,
                store: &store,
                targets: &targets,
                now,
                actor: "koppel demo",
                observer: &progress,
            };
            let applied = ctx.apply(Request::PlanAndApply).await?;
            let (again, ..) = ctx.plan().await?;
            anyhow::Ok((applied, again))
        })?;
        results.push((now, what, applied, again));
    }
    if output == Output::Json {
        let v: Vec<serde_json::Value> = results
            .iter()
            .map(|(now, what, a, again)| {
                serde_json::json!({
                    "date": now,
                    "step": what,
                    "plan": a.plan.as_ref().map(|p| &p.plan),
                    "applied": a.report.as_ref().map(|r| r.applied),
                    "failed": a.report.as_ref().map(|r| r.failed.len()),
                    "plan_after": again.actions.len(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "koppel demo: Gemeente Koppeldam (examples/demo) into koppel's built-in directory, in a temporary store.\n"
    );
    for (i, (now, what, applied, again)) in results.iter().enumerate() {
        let Some(stored) = &applied.plan else {
            continue;
        };
        let snapshot = applied.snapshot.clone().unwrap_or_default();
        println!("{}. {now}: {what}", i + 1);
        let counts = render::counts_line(&stored.plan);
        match &applied.report {
            Some(r) => println!(
                "   plan: {counts}\n   applied {} action{}, {} failed",
                r.applied,
                run::plural(r.applied),
                r.failed.len()
            ),
            None => println!("   plan: {counts} — not applied"),
        }
        for h in &stored.plan.held {
            println!("   HELD: {h}");
        }
        story(
            &snapshot,
            &stored.plan.actions,
            if i == 0 && !full { 4 } else { usize::MAX },
        );
        println!(
            "   planned again right after: {}\n",
            if again.is_empty() {
                "no changes".to_owned()
            } else {
                format!("{} actions (unexpected)", again.actions.len())
            }
        );
    }
    println!("Try: koppel explain 1000925 --config examples/demo/koppel.toml --now 2026-11-23");
    Ok(ExitCode::SUCCESS)
}

/// What happened to whom: per person, their actions in words, grouped by what kind of event
/// it was for them.
fn story(snapshot: &Snapshot, actions: &[Action], per_group: usize) {
    let mut per_person: BTreeMap<&str, Vec<&Action>> = BTreeMap::new();
    for a in actions {
        per_person.entry(a.person.as_str()).or_default().push(a);
    }
    let mut groups: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (person, acts) in &per_person {
        let has = |k: ActionKind| acts.iter().any(|a| a.kind == k);
        let group = if has(ActionKind::Delete) {
            "6 deleted after the retention period"
        } else if has(ActionKind::Disable) {
            "5 leavers: disabled, access revoked"
        } else if has(ActionKind::Create) && acts.iter().any(|a| a.enabled == Some(false)) {
            "2 pre-boarded: account ready, disabled until day one"
        } else if has(ActionKind::Create) {
            "1 joiners: accounts created"
        } else if has(ActionKind::Enable) {
            "3 started or rehired: enabled"
        } else {
            "4 movers and changes"
        };
        let mut parts = Vec::new();
        for a in acts {
            match a.kind {
                ActionKind::Update => {
                    for (k, c) in &a.changes {
                        parts.push(format!("{}.{k} {} → {}", a.target, c.from, c.to));
                    }
                }
                ActionKind::Grant | ActionKind::Revoke => {}
                k => parts.push(format!("{} {}", a.target, k.as_str())),
            }
        }
        let grants: Vec<&str> = acts
            .iter()
            .filter(|a| a.kind == ActionKind::Grant)
            .filter_map(|a| a.permission.as_deref())
            .collect();
        let revokes: Vec<&str> = acts
            .iter()
            .filter(|a| a.kind == ActionKind::Revoke)
            .filter_map(|a| a.permission.as_deref())
            .collect();
        if !grants.is_empty() {
            parts.push(format!("+{}", grants.join(" +")));
        }
        if !revokes.is_empty() {
            parts.push(format!("-{}", revokes.join(" -")));
        }
        let reason = acts
            .iter()
            .flat_map(|a| a.reasons.iter())
            .find(|r| !r.fields.is_empty() || r.date.is_some())
            .map(render::reason_text)
            .map(|t| format!("  [{t}]"))
            .unwrap_or_default();
        groups.entry(group).or_default().push(format!(
            "{}: {}{reason}",
            render::person_label(snapshot, person),
            parts.join("; ")
        ));
    }
    for (group, lines) in groups {
        println!("   {} ({}):", &group[2..], lines.len());
        for l in lines.iter().take(per_group) {
            println!("     {l}");
        }
        if lines.len() > per_group {
            println!("     … and {} more", lines.len() - per_group);
        }
    }
}
