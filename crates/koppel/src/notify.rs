//! Notifications around `koppel apply` (and the daemon's runs): after the actions are applied,
//! the e-mails they call for go to the store's outbox and everything unsent to the SMTP server.
//!
//! Nothing here fails or undoes provisioning: a bad setting, an unreachable server or a store
//! error ends up in [`Notified`], printed as a warning; unsent mail waits for the next run.

use std::collections::BTreeMap;
use std::path::Path;

use koppel_core::config::CompiledConfig;
use koppel_core::plan::ActionKind;
use koppel_core::threshold::ThresholdBreach;
use koppel_core::{Date, Diagnostic, KnownState, Snapshot};
use koppel_engine::Report;
use koppel_notify::{Event, ManagerEmail, Notifier, NotifyError, SendReport, Sources, Status};
use koppel_store::{Store, StoredPlan};

use crate::apply::{Applied, Context};

/// What the notifications of one run did.
#[derive(Debug, Default)]
pub struct Notified {
    /// E-mails this run added to the outbox.
    pub queued: usize,
    pub sent: SendReport,
    /// Events nobody could be told about (no manager, no address …).
    pub diagnostics: Vec<Diagnostic>,
    /// Why notifications did not run at all (settings, store).
    pub error: Option<String>,
}

/// One executed (or held) plan of a run, as notifications see it.
pub struct Run<'a> {
    pub plan: &'a StoredPlan,
    /// What the executor did; `None` when nothing was executed (held by a guard, rejected).
    pub report: Option<&'a Report>,
    /// The threshold breaches that withheld part of the plan when it was made.
    pub thresholds: &'a [ThresholdBreach],
    /// True when `report` is of the run that applied the plan's unwithheld actions, all of
    /// them: the action statuses follow from the plan alone, no journal read needed.
    pub complete_first_run: bool,
}

/// Notifications for `Context::apply`'s outcome. `first_run` is true for a plan applied just
/// now or a saved plan (not an approval).
pub async fn after_apply(ctx: &Context<'_>, first_run: bool, out: &Applied) -> Option<Notified> {
    ctx.config.notifications.as_ref()?;
    let resumed: Vec<(StoredPlan, &Report)> = {
        let mut list = Vec::new();
        for r in &out.resumed {
            match ctx.store.plan(&r.plan_id).await {
                Ok(Some(p)) => list.push((p, r)),
                Ok(None) => {}
                Err(e) => {
                    return Some(Notified {
                        error: Some(format!("reading plan {}: {e}", r.plan_id)),
                        ..Notified::default()
                    });
                }
            }
        }
        list
    };
    let mut runs: Vec<Run<'_>> = resumed
        .iter()
        .map(|(plan, report)| Run {
            plan,
            report: Some(report),
            thresholds: &[],
            complete_first_run: false,
        })
        .collect();
    if let Some(plan) = &out.plan {
        let clean = out
            .report
            .as_ref()
            .is_some_and(|r| r.failed.is_empty() && r.skipped == 0 && r.unavailable.is_empty());
        runs.push(Run {
            plan,
            report: out.report.as_ref(),
            thresholds: &out.breaches,
            complete_first_run: first_run && clean,
        });
    }
    Some(
        notify(
            ctx.store,
            ctx.config,
            ctx.config_path,
            ctx.now,
            ctx.actor,
            &runs,
            out.snapshot.as_ref(),
            out.previous.as_ref(),
        )
        .await,
    )
}

/// Queues the e-mails `runs` call for and sends everything unsent. `snapshot` is the HR data
/// the runs were planned from (else the store's last one is read when needed), `previous`
/// the one before (for leavers no longer in HR). Call it after every run, also when nothing
/// changed: that is when mail from an earlier failure is retried.
#[allow(clippy::too_many_arguments)]
pub async fn notify(
    store: &dyn Store,
    config: &CompiledConfig,
    config_path: &Path,
    now: Date,
    actor: &str,
    runs: &[Run<'_>],
    snapshot: Option<&Snapshot>,
    previous: Option<&Snapshot>,
) -> Notified {
    let mut out = Notified::default();
    let Some(table) = &config.notifications else {
        return out;
    };
    let notifier = match Notifier::from_config(table, &crate::run::base_dir(config_path)) {
        Ok(n) => n,
        Err(e) => {
            out.error = Some(format!("[notifications] is not valid: {e}"));
            return out;
        }
    };
    // Mail from earlier runs is sent even when this run's cannot be queued.
    let direct = match queue(&notifier, store, now, runs, snapshot, previous, &mut out).await {
        Ok(direct) => direct,
        Err(e) => {
            out.error = Some(e.to_string());
            Vec::new()
        }
    };
    out.sent = notifier
        .send_pending(
            store,
            direct,
            &crate::apply::timestamp(),
            system_now(),
            actor,
        )
        .await;
    out
}

/// The wall clock for the messages' Date header: read here in the binary only.
#[allow(clippy::disallowed_methods)]
fn system_now() -> std::time::SystemTime {
    std::time::SystemTime::now()
}

async fn queue(
    notifier: &Notifier,
    store: &dyn Store,
    now: Date,
    runs: &[Run<'_>],
    snapshot: Option<&Snapshot>,
    previous: Option<&Snapshot>,
    out: &mut Notified,
) -> Result<Vec<koppel_notify::Mail>, NotifyError> {
    let mut statuses = Vec::with_capacity(runs.len());
    for run in runs {
        let status = match run.report {
            // Nothing executed: nothing done.
            None => vec![Status::Open; run.plan.plan.actions.len()],
            Some(_) if run.complete_first_run => {
                let withheld: std::collections::BTreeSet<(&str, ActionKind)> = run
                    .plan
                    .withheld
                    .iter()
                    .map(|(t, k)| (t.as_str(), *k))
                    .collect();
                run.plan
                    .plan
                    .actions
                    .iter()
                    .map(|a| {
                        if withheld.contains(&(a.target.as_str(), a.kind)) {
                            Status::Open
                        } else {
                            Status::Done
                        }
                    })
                    .collect()
            }
            Some(_) => koppel_notify::statuses(run.plan, &store.journal(&run.plan.id).await?),
        };
        statuses.push(status);
    }
    let interesting = runs.iter().zip(&statuses).any(|(run, status)| {
        run.plan.plan.actions.iter().zip(status).any(|(a, s)| {
            *s == Status::Done && matches!(a.kind, ActionKind::Create | ActionKind::Disable)
        })
    });
    // The store's last snapshot only when the caller has none and something was done.
    let stored_snapshot = match (interesting, snapshot) {
        (true, None) => store.previous_snapshot().await?,
        _ => None,
    };
    let empty = Snapshot::default();
    let snapshot = snapshot.or(stored_snapshot.as_ref()).unwrap_or(&empty);
    let build = |known: Option<&KnownState>| {
        let sources = Sources {
            snapshot,
            previous,
            known,
            now,
        };
        let mut events = Vec::new();
        let mut diags = Vec::new();
        for (run, status) in runs.iter().zip(&statuses) {
            let (e, d) = notifier.events(run.plan, status, run.thresholds, &sources);
            events.extend(e);
            diags.extend(d);
        }
        (events, diags)
    };
    let (mut events, mut diags) = build(None);
    // The known state (300,000 accounts at 100k persons) is read only when an event needs
    // it: a leaver's usernames, or a manager whose address is in their account.
    let by_account = notifier
        .config()
        .manager_email
        .iter()
        .any(|m| matches!(m, ManagerEmail::Account { .. }));
    let needs_known = events.iter().any(|e| match e {
        Event::Leaver(_) => true,
        Event::Joiner(j) => by_account && j.manager.as_ref().is_some_and(|m| m.email.is_none()),
        Event::Held(_) => false,
    });
    if needs_known {
        let known = store.known_state().await?;
        (events, diags) = build(Some(&known));
    }
    out.diagnostics.extend(diags);
    let (mails, diags) = notifier.messages(&events);
    out.diagnostics.extend(diags);
    out.diagnostics.sort();
    out.diagnostics.dedup();
    // Mails with a password come back: they are sent at once, never stored.
    let (added, direct) = notifier
        .queue(store, mails, &crate::apply::timestamp())
        .await?;
    out.queued = added;
    Ok(direct)
}

/// Checks `[notifications]` of the configuration at `path`, every problem with its line and
/// column; `Ok` when there is none or it is valid.
pub fn check(config: &CompiledConfig, path: &Path) -> anyhow::Result<()> {
    let Some(table) = &config.notifications else {
        return Ok(());
    };
    match Notifier::from_config(table, &crate::run::base_dir(path)) {
        Ok(_) => Ok(()),
        Err(NotifyError::Config(issues)) => {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            // In file order, like the core's configuration errors.
            let mut located: Vec<(Option<(usize, usize)>, String)> = issues
                .iter()
                .map(|i| {
                    let at = koppel_notify::locate(&text, &i.path);
                    let shown = match at {
                        Some((line, column)) => format!("{}:{line}:{column}: {i}", path.display()),
                        None => format!("{}: {i}", path.display()),
                    };
                    (at, shown)
                })
                .collect();
            located.sort();
            for (_, shown) in &located {
                anstream::eprintln!(
                    "{}error:{} {shown}",
                    crate::render::ERR.render(),
                    crate::render::ERR.render_reset(),
                );
            }
            anyhow::bail!(
                "{} error{} in [notifications] of {}",
                issues.len(),
                crate::run::plural(issues.len()),
                path.display()
            )
        }
        Err(e) => anyhow::bail!("{}: [notifications]: {e}", path.display()),
    }
}

/// Prints what the notifications did; a problem is a warning, never a failed run.
pub fn print(n: &Notified) {
    for d in &n.diagnostics {
        eprintln!("{d}");
    }
    if let Some(e) = &n.error {
        eprintln!("warning: notifications: {e}");
    }
    let s = &n.sent;
    if n.queued > 0 || s.sent > 0 || !s.failed.is_empty() || s.pending > 0 || s.given_up > 0 {
        println!("notifications: {} queued, {s}", n.queued);
    }
    if let Some(why) = &s.unavailable {
        eprintln!("warning: notifications not sent: {why}; they are kept and sent by the next run");
    }
    let refused: BTreeMap<&str, &str> = s
        .failed
        .iter()
        .filter(|(_, e)| Some(e) != s.unavailable.as_ref())
        .map(|(k, e)| (k.as_str(), e.as_str()))
        .collect();
    for (key, e) in refused {
        eprintln!("warning: notification {key} not sent: {e}");
    }
}
