//! `koppel reconcile TARGET`: reads every account of a target, compares it with koppel's
//! known state and the HR population, reports orphans, drift and missing memberships, and
//! with `--repair` puts koppel's values back.

use std::process::ExitCode;

use anyhow::bail;
use koppel_connectors::target::Op;
use koppel_engine::reconcile::{self, Report};
use koppel_store::{SqliteStore, Store};

use crate::{Common, Output};

pub fn run(
    common: &Common,
    target: &str,
    repair: bool,
    actor: Option<String>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let (config, path) = crate::run::open_existing(common)?;
    let now = common.now.unwrap_or_else(crate::today);
    let Some(cfg) = config.targets.iter().find(|t| t.name == target) else {
        bail!(
            "there is no target {target:?} in {}",
            common.config.display()
        );
    };
    let (snapshot, _) = crate::run::fetch(&config, &crate::run::base_dir(&common.config))?;
    let persons = koppel_core::plan::correlation_values(&config, &snapshot, now, target);
    crate::apply::runtime()?.block_on(async {
        let store = SqliteStore::open(&path).await?;
        let targets = crate::apply::targets(&config, &store).await?;
        let Some(t) = targets.get(target) else {
            bail!("target {target:?} has no connector");
        };
        let live = t.list_accounts().await?;
        let known = store.known_state().await?;
        let report = reconcile::compare(
            target,
            known.targets.get(target),
            &live,
            cfg.correlation.as_deref(),
            &persons,
        );
        match output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            Output::Text => print_report(&report),
        }
        if !repair {
            return Ok(ExitCode::SUCCESS);
        }
        let actor = format!(
            "koppel reconcile ({})",
            actor
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "unknown".to_owned())
        );
        let done = reconcile::repair(
            t.as_ref(),
            &report,
            &store,
            &actor,
            &crate::apply::timestamp(),
        )
        .await?;
        let failed = done.iter().filter(|r| r.result.is_err()).count();
        if output == Output::Text {
            println!();
            for r in &done {
                let what = match &r.op {
                    Op::Update { changes, .. } => format!(
                        "restored {}",
                        changes.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                    Op::SetEnabled { enabled: true, .. } => "enabled again".to_owned(),
                    Op::SetEnabled { enabled: false, .. } => "disabled again".to_owned(),
                    Op::Grant { permission, .. } => format!("granted {permission} again"),
                    other => format!("{other:?}"),
                };
                match &r.result {
                    Ok(()) => println!("  repaired {}: {what}", r.person),
                    Err(e) => println!("  FAILED   {}: {what}: {e}", r.person),
                }
            }
            println!(
                "\nRepair: {} done, {failed} failed (recorded in the audit log).",
                done.len() - failed
            );
        }
        Ok(if failed > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}

fn print_report(r: &Report) {
    println!(
        "Reconcile {}: {} accounts read, {} managed by koppel.",
        r.target, r.accounts_read, r.managed
    );
    if r.is_clean() && r.unmanaged.is_empty() && r.extra_permissions.is_empty() {
        println!("No drift: the target holds what koppel wrote.");
        return;
    }
    if !r.orphans.is_empty() {
        println!(
            "\nOrphans ({}): accounts that match no person",
            r.orphans.len()
        );
        for o in &r.orphans {
            println!(
                "  {}  correlation {}  {}",
                o.reference,
                o.correlation.as_deref().unwrap_or("(none)"),
                if o.enabled { "enabled" } else { "disabled" }
            );
        }
    }
    if !r.unmanaged.is_empty() {
        println!(
            "\nNot yet managed ({}): a person's account, adopted by the next apply",
            r.unmanaged.len()
        );
        for u in &r.unmanaged {
            println!("  {}  person {}", u.reference, u.person);
        }
    }
    if !r.drift.is_empty() {
        println!("\nChanged outside koppel ({}):", r.drift.len());
        for d in &r.drift {
            println!("  person {} ({})", d.person, d.reference);
            for (name, (want, have)) in &d.attributes {
                println!("    {name}: koppel wrote {want}, target has {have}");
            }
            if let Some((want, have)) = d.enabled {
                let word = |b: bool| if b { "enabled" } else { "disabled" };
                println!("    koppel {} it, target has it {}", word(want), word(have));
            }
        }
    }
    for (title, list) in [
        (
            "Missing memberships (koppel granted them)",
            &r.missing_permissions,
        ),
        (
            "Memberships koppel did not grant (left alone)",
            &r.extra_permissions,
        ),
        ("Accounts gone from the target", &r.missing_accounts),
    ] {
        if list.is_empty() {
            continue;
        }
        println!("\n{title} ({}):", list.len());
        for m in list {
            if m.permission.is_empty() {
                println!("  person {} ({})", m.person, m.reference);
            } else {
                println!("  person {}: {}", m.person, m.permission);
            }
        }
    }
}
