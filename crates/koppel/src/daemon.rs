//! The engine behind `koppel serve`: [`koppel_server::daemon::Runner`] over the store, the
//! targets and the planner. It keeps the daemon's view of the sources (the last read, with
//! pushed records in place) and the known state in memory, so a run for one person plans
//! that person alone instead of reading and planning everyone.
//!
//! * **Full runs** read every source, put the pushed records that still stand in place
//!   (`koppel_server::daemon::push`), plan everyone against the previous snapshot (the source
//!   guards) and apply, exactly as `koppel apply` does; a run the guards hold leaves the view
//!   as it was, so a truncated export never becomes what later person runs plan against.
//! * **Person runs** plan only the named persons: a snapshot of those persons (all
//!   departments), their known accounts, and, when a generator has to hand out a value, every
//!   other value koppel assigned as taken. The source guards count the population as a whole;
//!   thresholds count against every account koppel manages. Plans, journal and audit log are
//!   those of any run.
//! * The known state in memory follows every outcome the engine records (a [`Tracking`]
//!   store sees them); when the store's state version moved otherwise (a `koppel apply` or
//!   `reconcile --repair` beside the daemon), it is read again before the next run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use koppel_connectors::target::Target;
use koppel_core::config::{CompiledConfig, TargetKind};
use koppel_core::guard::PopulationChange;
use koppel_core::plan::ActionKind;
use koppel_core::{
    AttrValue, Date, Diagnostic, KnownState, LiveValues, Person, Plan, PlanInput, Snapshot,
    TargetState,
};
use koppel_engine::{Engine, Mode, Report};
use koppel_server::daemon::push::{self as overlay, Overlay};
use koppel_server::daemon::{
    ApiError, Job, ListQuery, Push, Pushed, RunSummary, Runner, TargetHealth, Work, db,
};
use koppel_store::{
    AuditEntry, AuditEvent, AuditFilter, AuditRecord, AuditReport, Intent, JournalEntry,
    OutboxMessage, Outcome, PlanStatus, SqliteStore, Store, StoreError, StoredPlan,
};
use serde_json::{Value, json};

use crate::apply::{Progress, plan_with_live, timestamp};

/// How many failures a run's summary lists; the rest are counted.
const FAILURES_SHOWN: usize = 20;
/// How long a health probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The known state as the daemon holds it, and the store version it matches.
struct Known {
    state: KnownState,
    version: u64,
}

/// The daemon's view of the sources.
#[derive(Default)]
struct View {
    /// The last read of the sources with the standing pushes in place: what runs plan.
    snapshot: Snapshot,
    source_diagnostics: Vec<Diagnostic>,
    /// Pushed records that stand in for the source's.
    overlays: BTreeMap<String, Overlay>,
    /// Persons changed since they were last planned: their record as of then (`None`: they
    /// were not in the view), for the reasons of the next plan, with the change's generation.
    before: HashMap<String, (Option<Person>, u64)>,
    /// Bumped by every change of the view.
    generation: u64,
}

pub struct DaemonRunner {
    config: Arc<CompiledConfig>,
    config_path: PathBuf,
    base: PathBuf,
    store: SqliteStore,
    targets: BTreeMap<String, Arc<dyn Target>>,
    /// `--now`: plan as of this day instead of today.
    fixed_now: Option<Date>,
    known: tokio::sync::RwLock<Known>,
    view: RwLock<View>,
    /// Pushes are checked, stored and put in the view one at a time.
    push_lock: tokio::sync::Mutex<()>,
}

impl DaemonRunner {
    pub fn new(
        config: CompiledConfig,
        config_path: &std::path::Path,
        store: SqliteStore,
        targets: BTreeMap<String, Arc<dyn Target>>,
        fixed_now: Option<Date>,
    ) -> DaemonRunner {
        DaemonRunner {
            config: Arc::new(config),
            config_path: config_path.to_path_buf(),
            base: crate::run::base_dir(config_path),
            store,
            targets,
            fixed_now,
            known: tokio::sync::RwLock::new(Known {
                state: KnownState::default(),
                version: 0,
            }),
            view: RwLock::new(View::default()),
            push_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn now(&self) -> Date {
        self.fixed_now.unwrap_or_else(crate::today)
    }

    /// Reads every source, off the async workers (a large export takes a while to parse).
    async fn fetch(&self) -> anyhow::Result<(Snapshot, Vec<Diagnostic>)> {
        let config = self.config.clone();
        let base = self.base.clone();
        tokio::task::spawn_blocking(move || crate::run::fetch(&config, &base))
            .await
            .context("reading the sources")?
    }

    fn view(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|e| e.into_inner())
    }

    fn view_mut(&self) -> std::sync::RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the known state again when the store's version moved without this daemon.
    async fn sync_known(&self) -> anyhow::Result<u64> {
        let version = self.store.state_version().await?;
        let mut known = self.known.write().await;
        if version != known.version {
            tracing::info!(
                from = known.version,
                to = version,
                "the store's state changed outside the daemon: reading it again"
            );
            known.state = self.store.known_state().await?;
            known.version = version;
        }
        Ok(version)
    }

    /// Puts what the engine recorded through `tracking` into the known state in memory, the
    /// way the store did, and checks that nobody else wrote meanwhile.
    async fn absorb(&self, tracking: &Tracking<'_>, version_before: u64) -> anyhow::Result<()> {
        let outcomes =
            std::mem::take(&mut *tracking.outcomes.lock().unwrap_or_else(|e| e.into_inner()));
        let expected = version_before + tracking.bumps.swap(0, Ordering::SeqCst);
        let mut known = self.known.write().await;
        for (o, now) in &outcomes {
            let Ok(reference) = &o.result else { continue };
            known.state.record(&o.action, *now);
            if let Some(r) = reference
                && let Some(a) = known
                    .state
                    .targets
                    .get_mut(&o.action.target)
                    .and_then(|t| t.accounts.get_mut(&o.action.person))
            {
                a.reference.clone_from(r);
            }
        }
        let version = self.store.state_version().await?;
        if version != expected {
            tracing::info!(
                expected,
                found = version,
                "the store's state changed outside the daemon during the run: reading it again"
            );
            known.state = self.store.known_state().await?;
        }
        known.version = version;
        Ok(())
    }

    fn engine<'a>(
        &'a self,
        store: &'a Tracking<'a>,
        actor: &'a str,
        observer: &'a Progress,
    ) -> Engine<'a> {
        Engine {
            config: &self.config,
            store,
            targets: &self.targets,
            actor,
            clock: &timestamp,
            batch_size: crate::apply::batch_size(),
            observer,
        }
    }

    /// Finishes what interrupted runs left (as every `koppel apply` does first).
    async fn resume(
        &self,
        tracking: &Tracking<'_>,
        actor: &str,
        observer: &Progress,
        now: Date,
        version: u64,
        summary: &mut RunSummary,
    ) -> anyhow::Result<Vec<Report>> {
        let reports = {
            let known = self.known.read().await;
            self.engine(tracking, actor, observer)
                .resume(&known.state, now)
                .await?
        };
        summary.resumed = reports.len();
        for r in &reports {
            tracing::info!(plan = %r.plan_id, applied = r.applied, "resumed an interrupted plan");
            add_report(summary, r);
        }
        if !reports.is_empty() {
            self.absorb(tracking, version).await?;
        }
        Ok(reports)
    }

    /// The notifications a run calls for (`[notifications]`), and unsent mail of earlier
    /// runs. Never fails the run: a problem is logged, mail waits for the next run.
    #[allow(clippy::too_many_arguments)]
    async fn notify(
        &self,
        actor: &str,
        now: Date,
        resumed: &[Report],
        executed: &Executed,
        first_run: bool,
        snapshot: Option<&Snapshot>,
        previous: Option<&Snapshot>,
    ) {
        if self.config.notifications.is_none() {
            return;
        }
        let mut plans = Vec::new();
        for r in resumed {
            match self.store.plan(&r.plan_id).await {
                Ok(Some(p)) => plans.push((p, r)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(plan = %r.plan_id, error = %e, "notifications: reading a resumed plan")
                }
            }
        }
        let mut runs: Vec<crate::notify::Run<'_>> = plans
            .iter()
            .map(|(plan, report)| crate::notify::Run {
                plan,
                report: Some(report),
                thresholds: &[],
                complete_first_run: false,
            })
            .collect();
        let clean = executed
            .report
            .as_ref()
            .is_some_and(|r| r.failed.is_empty() && r.skipped == 0 && r.unavailable.is_empty());
        runs.push(crate::notify::Run {
            plan: &executed.stored,
            report: executed.report.as_ref(),
            thresholds: &executed.breaches,
            complete_first_run: first_run && clean,
        });
        let n = crate::notify::notify(
            &self.store,
            &self.config,
            &self.config_path,
            now,
            actor,
            &runs,
            snapshot,
            previous,
        )
        .await;
        for d in &n.diagnostics {
            tracing::warn!("notifications: {d}");
        }
        if let Some(e) = &n.error {
            tracing::warn!("notifications: {e}");
        }
        tracing::info!(queued = n.queued, sent = %n.sent, "notifications");
    }

    async fn audit_event(
        &self,
        actor: &str,
        event: AuditEvent,
        plan: &StoredPlan,
        note: &str,
    ) -> anyhow::Result<()> {
        self.store
            .audit_append(&[AuditRecord {
                at: timestamp(),
                actor: actor.to_owned(),
                event,
                plan_id: Some(plan.id.clone()),
                target: None,
                person: None,
                action: None,
                permission: None,
                before: Value::Null,
                after: Value::Null,
                reasons: Vec::new(),
                error: (!note.is_empty()).then(|| note.to_owned()),
            }])
            .await?;
        Ok(())
    }

    async fn save(
        &self,
        plan: Plan,
        status: PlanStatus,
        withheld: Vec<(String, ActionKind)>,
        note: &str,
    ) -> anyhow::Result<StoredPlan> {
        let stored = StoredPlan {
            id: crate::apply::plan_id(&plan),
            created_at: timestamp(),
            state_version: self.store.state_version().await?,
            status,
            plan,
            withheld,
            note: note.to_owned(),
        };
        self.store.save_plan(&stored).await?;
        Ok(stored)
    }

    /// Holds, withholds and applies a plan as `koppel apply` does: a plan a source guard
    /// holds is saved held and nothing applies; a threshold withholds its kind; the rest is
    /// executed, journaled.
    #[allow(clippy::too_many_arguments)]
    async fn apply_plan(
        &self,
        plan: Plan,
        known: &KnownState,
        tracking: &Tracking<'_>,
        actor: &str,
        observer: &Progress,
        now: Date,
        summary: &mut RunSummary,
    ) -> anyhow::Result<Executed> {
        summary.actions += plan.actions.len();
        summary
            .diagnostics
            .extend(plan.diagnostics.iter().map(ToString::to_string));
        if !plan.held.is_empty() {
            let mut kinds: Vec<(String, ActionKind)> = plan
                .actions
                .iter()
                .map(|a| (a.target.clone(), a.kind))
                .collect();
            kinds.sort();
            kinds.dedup();
            summary
                .breaches
                .extend(plan.held.iter().map(ToString::to_string));
            let note = summary.breaches.join("; ");
            let stored = self.save(plan, PlanStatus::Held, kinds, &note).await?;
            self.audit_event(actor, AuditEvent::Held, &stored, &note)
                .await?;
            summary.held = true;
            summary.withheld = stored.plan.actions.len();
            summary.plan_id = Some(stored.id.clone());
            return Ok(Executed {
                stored,
                report: None,
                breaches: Vec::new(),
            });
        }
        let breaches = koppel_core::threshold::check(&self.config, &plan, known);
        let withheld = breaches
            .iter()
            .map(|b| (b.target.clone(), b.kind))
            .collect();
        let note = breaches
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        summary
            .breaches
            .extend(breaches.iter().map(ToString::to_string));
        let empty = plan.is_empty();
        let stored = self
            .save(plan, PlanStatus::Applying, withheld, &note)
            .await?;
        summary.plan_id = Some(stored.id.clone());
        if !breaches.is_empty() {
            self.audit_event(actor, AuditEvent::Held, &stored, &note)
                .await?;
        }
        let report = if empty {
            self.store
                .set_plan_status(&stored.id, PlanStatus::Applied)
                .await?;
            Report {
                plan_id: stored.id.clone(),
                ..Report::default()
            }
        } else {
            self.engine(tracking, actor, observer)
                .execute(&stored, known, Mode::Normal, now)
                .await?
        };
        add_report(summary, &report);
        Ok(Executed {
            stored,
            report: Some(report),
            breaches,
        })
    }

    async fn full_run(&self, job: &Job) -> anyhow::Result<RunSummary> {
        let now = self.now();
        let actor = actor(job);
        let observer = Progress::new(true);
        let mut summary = RunSummary::default();
        let version = self.sync_known().await?;
        let tracking = Tracking::new(&self.store);
        let resumed = self
            .resume(&tracking, &actor, &observer, now, version, &mut summary)
            .await?;
        let version = self.store.state_version().await?;

        let started_generation = self.view().generation;
        let (mut snapshot, diagnostics) = self.fetch().await?;
        let mut overlays = self.view().overlays.clone();
        // The source's own records of pushed persons, before pushes stand in for them.
        let raw: HashMap<String, String> = overlays
            .keys()
            .map(|id| {
                let digest = snapshot.person(id).map(overlay::digest).unwrap_or_default();
                (id.clone(), digest)
            })
            .collect();
        overlay::apply_overlays(&mut snapshot, &mut overlays);
        let previous = self.store.previous_snapshot().await?;
        summary.persons = snapshot.persons.len();
        let executed = {
            let known = self.known.read().await;
            let mut plan = plan_with_live(
                &PlanInput {
                    config: &self.config,
                    snapshot: &snapshot,
                    previous: previous.as_ref(),
                    known: &known.state,
                    live: &LiveValues::default(),
                    now,
                },
                &self.targets,
            )
            .await?;
            plan.diagnostics.extend(diagnostics.iter().cloned());
            plan.diagnostics.sort();
            self.apply_plan(
                plan,
                &known.state,
                &tracking,
                &actor,
                &observer,
                now,
                &mut summary,
            )
            .await?
        };
        self.absorb(&tracking, version).await?;
        self.notify(
            &actor,
            now,
            &resumed,
            &executed,
            true,
            Some(&snapshot),
            previous.as_ref(),
        )
        .await;
        drop(previous);
        if executed.held() {
            tracing::warn!(
                "the source guards hold the run: the daemon keeps planning persons against the \
                 sources as they were before it"
            );
            return Ok(summary);
        }
        if executed.complete() {
            self.store.save_snapshot(&snapshot).await?;
        }
        // Pushes that arrived during the run are in the view's overlays: they stand against
        // the source just read as the others did.
        let dropped_now = {
            let mut view = self.view_mut();
            let mut standing = BTreeMap::new();
            let mut dropped_now = Vec::new();
            for (id, o) in &view.overlays {
                let source = match raw.get(id) {
                    Some(d) => d.clone(),
                    None => snapshot.person(id).map(overlay::digest).unwrap_or_default(),
                };
                if source == o.base {
                    overlay::put_person(&mut snapshot, o.person.clone());
                    standing.insert(id.clone(), o.clone());
                } else {
                    dropped_now.push(id.clone());
                }
            }
            view.snapshot = snapshot;
            view.source_diagnostics = diagnostics;
            view.overlays = standing;
            view.before.retain(|_, (_, g)| *g > started_generation);
            view.generation += 1;
            dropped_now
        };
        self.forget_pushes(&dropped_now).await;
        Ok(summary)
    }

    /// Forgets pushes the source has moved past.
    async fn forget_pushes(&self, dropped: &[String]) {
        if dropped.is_empty() {
            return;
        }
        tracing::info!(
            persons = dropped.len(),
            "the source changed pushed persons: the source's records stand again"
        );
        if let Err(e) = db::save_pushed(self.store.pool(), &[], dropped).await {
            tracing::error!(error = %e, "forgetting pushed records");
        }
    }

    /// Reads the sources again for `ids` and puts their records (or a push that still
    /// stands) in the view; departments come from the new read.
    async fn refresh(&self, ids: &BTreeSet<String>) -> anyhow::Result<()> {
        let (fresh, diagnostics) = self.fetch().await?;
        let mut dropped = Vec::new();
        {
            let mut view = self.view_mut();
            view.generation += 1;
            let generation = view.generation;
            for id in ids {
                let old = view.snapshot.person(id).cloned();
                let source = fresh.person(id);
                let base = source.map(overlay::digest).unwrap_or_default();
                let record = match view.overlays.get(id) {
                    Some(o) if o.base == base => Some(o.person.clone()),
                    Some(_) => {
                        view.overlays.remove(id);
                        dropped.push(id.clone());
                        source.cloned()
                    }
                    None => source.cloned(),
                };
                if record != old {
                    view.before.entry(id.clone()).or_insert((old, generation));
                }
                match record {
                    Some(p) => overlay::put_person(&mut view.snapshot, p),
                    None => {
                        overlay::remove_person(&mut view.snapshot, id);
                    }
                }
            }
            view.snapshot.departments = fresh.departments;
            view.source_diagnostics = diagnostics;
        }
        self.forget_pushes(&dropped).await;
        Ok(())
    }

    async fn persons_run(
        &self,
        job: &Job,
        ids: &BTreeSet<String>,
        refresh: bool,
    ) -> anyhow::Result<RunSummary> {
        let now = self.now();
        let actor = actor(job);
        let observer = Progress::new(true);
        let mut summary = RunSummary::default();
        let version = self.sync_known().await?;
        let tracking = Tracking::new(&self.store);
        let resumed = self
            .resume(&tracking, &actor, &observer, now, version, &mut summary)
            .await?;
        let version = self.store.state_version().await?;
        if refresh {
            self.refresh(ids).await?;
        }
        let known = self.known.read().await;
        let (snapshot, previous, population, planned_generation) = {
            let view = self.view();
            let persons: Vec<Person> = ids
                .iter()
                .filter_map(|id| view.snapshot.person(id).cloned())
                .collect();
            let before: Vec<Person> = ids
                .iter()
                .filter_map(|id| match view.before.get(id) {
                    Some((b, _)) => b.clone(),
                    None => view.snapshot.person(id).cloned(),
                })
                .collect();
            let added = persons
                .iter()
                .filter(|p| !before.iter().any(|b| b.external_id == p.external_id))
                .count() as u64;
            let removed = before
                .iter()
                .filter(|b| !persons.iter().any(|p| p.external_id == b.external_id))
                .count() as u64;
            let current = view.snapshot.persons.len() as u64;
            let population = PopulationChange {
                previous: Some(current + removed - added),
                current,
                added,
                removed,
                blocked: 0,
            };
            let departments = view.snapshot.departments.clone();
            (
                Snapshot {
                    persons,
                    departments: departments.clone(),
                },
                Snapshot {
                    persons: before,
                    departments,
                },
                population,
                view.generation,
            )
        };
        summary.persons = snapshot.persons.len();
        let scoped = scoped_known(&known.state, ids);
        let input = PlanInput {
            config: &self.config,
            snapshot: &snapshot,
            previous: Some(&previous),
            known: &scoped,
            live: &LiveValues::default(),
            now,
        };
        let first = koppel_core::plan(&input);
        let mut plan = if generates(&self.config, &first) {
            // A generator hands out a value: every value other persons hold is taken.
            let taken = taken_values(&self.config, &known.state, ids);
            plan_with_live(
                &PlanInput {
                    live: &taken,
                    ..input
                },
                &self.targets,
            )
            .await?
        } else {
            first
        };
        // The guards count the population as a whole, not the few persons planned.
        plan.population = PopulationChange {
            blocked: plan.blocked.len() as u64,
            ..population
        };
        plan.held = koppel_core::guard::check(&self.config.guards, &plan.population);
        let executed = self
            .apply_plan(
                plan,
                &known.state,
                &tracking,
                &actor,
                &observer,
                now,
                &mut summary,
            )
            .await?;
        drop(known);
        self.absorb(&tracking, version).await?;
        self.notify(
            &actor,
            now,
            &resumed,
            &executed,
            true,
            Some(&snapshot),
            Some(&previous),
        )
        .await;
        if !executed.held() {
            let mut view = self.view_mut();
            view.before
                .retain(|id, (_, g)| !ids.contains(id) || *g > planned_generation);
        }
        Ok(summary)
    }

    async fn settle(&self, job: &Job, plan: &str, approve: bool) -> anyhow::Result<RunSummary> {
        let actor = actor(job);
        let observer = Progress::new(true);
        let request = if approve {
            crate::apply::Request::Approve(plan.to_owned())
        } else {
            crate::apply::Request::Reject(plan.to_owned())
        };
        let ctx = crate::apply::Context {
            config: &self.config,
            config_path: &self.config_path,
            store: &self.store,
            targets: &self.targets,
            now: self.now(),
            actor: &actor,
            observer: &observer,
        };
        let applied = ctx.apply(request).await?;
        let mut summary = RunSummary {
            plan_id: Some(plan.to_owned()),
            resumed: applied.resumed.len(),
            ..RunSummary::default()
        };
        for r in applied.resumed.iter().chain(applied.report.iter()) {
            add_report(&mut summary, r);
        }
        // The approval went through the store directly: read the known state again.
        let mut known = self.known.write().await;
        known.state = self.store.known_state().await?;
        known.version = self.store.state_version().await?;
        Ok(summary)
    }
}

/// A plan a run saved, and what executing it did (`None`: held by a source guard).
struct Executed {
    stored: StoredPlan,
    report: Option<Report>,
    breaches: Vec<koppel_core::threshold::ThresholdBreach>,
}

impl Executed {
    fn held(&self) -> bool {
        self.report.is_none()
    }

    /// Nothing of the plan waits for an unavailable target.
    fn complete(&self) -> bool {
        self.report.as_ref().is_some_and(Report::complete)
    }
}

/// The audit log's actor for a job.
fn actor(job: &Job) -> String {
    format!("koppel serve: run {} ({})", job.id, job.trigger)
}

fn add_report(summary: &mut RunSummary, r: &Report) {
    summary.applied += r.applied;
    summary.failed += r.failed.len();
    summary.skipped += r.skipped;
    summary.withheld += r.withheld;
    for (t, kinds) in &r.counts {
        for (k, n) in kinds {
            *summary
                .counts
                .entry(t.clone())
                .or_default()
                .entry(k.as_str().to_owned())
                .or_default() += n;
        }
    }
    for f in &r.failed {
        *summary
            .failed_counts
            .entry(f.action.target.clone())
            .or_default()
            .entry(f.action.kind.as_str().to_owned())
            .or_default() += 1;
        if summary.failures.len() < FAILURES_SHOWN {
            summary
                .failures
                .push(koppel_server::daemon::runner::FailedAction {
                    target: f.action.target.clone(),
                    kind: f.action.kind.as_str().to_owned(),
                    person: f.action.person.clone(),
                    error: f.error.clone(),
                });
        }
    }
    for (t, e) in &r.unavailable {
        summary.unavailable.insert(t.clone(), e.clone());
    }
}

/// The known state of `ids` only, with every target's released values (a generator must not
/// hand out a value a leaver gave up recently).
fn scoped_known(known: &KnownState, ids: &BTreeSet<String>) -> KnownState {
    KnownState {
        targets: known
            .targets
            .iter()
            .map(|(name, t)| {
                (
                    name.clone(),
                    TargetState {
                        accounts: ids
                            .iter()
                            .filter_map(|id| t.accounts.get(id).map(|a| (id.clone(), a.clone())))
                            .collect(),
                        released: t.released.clone(),
                    },
                )
            })
            .collect(),
    }
}

/// Whether the plan hands out generated values (the same test as `plan_with_live`'s).
fn generates(config: &CompiledConfig, plan: &Plan) -> bool {
    config.targets.iter().any(|t| {
        let fields: Vec<&str> = t.generated_fields().collect();
        !fields.is_empty()
            && plan.actions.iter().any(|a| {
                a.target == t.name
                    && fields
                        .iter()
                        .any(|f| a.attributes.contains_key(*f) || a.changes.contains_key(*f))
            })
    })
}

/// Every generated value persons other than `ids` hold, as values held by someone else.
fn taken_values(config: &CompiledConfig, known: &KnownState, ids: &BTreeSet<String>) -> LiveValues {
    let mut live = LiveValues::new();
    for t in &config.targets {
        let fields: Vec<&str> = t.generated_fields().collect();
        let Some(state) = known.targets.get(&t.name).filter(|_| !fields.is_empty()) else {
            continue;
        };
        for (person, account) in &state.accounts {
            if ids.contains(person) {
                continue;
            }
            for f in &fields {
                if let Some(AttrValue::Text(v)) = account.attributes.get(*f) {
                    live.insert(&t.name, f, v, None);
                }
            }
        }
    }
    live
}

#[async_trait::async_trait]
impl Runner for DaemonRunner {
    async fn load(&self) -> Result<(), String> {
        let started = Instant::now();
        let known = self.store.known_state().await.map_err(|e| e.to_string())?;
        let version = self
            .store
            .state_version()
            .await
            .map_err(|e| e.to_string())?;
        let mut overlays = BTreeMap::new();
        for row in db::pushed(self.store.pool())
            .await
            .map_err(|e| e.to_string())?
        {
            match serde_json::from_str::<Person>(&row.record) {
                Ok(person) => {
                    overlays.insert(
                        row.person,
                        Overlay {
                            person,
                            base: row.base,
                            pushed_at: row.pushed_at,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(person = %row.person, error = %e, "a pushed record is unreadable; left out")
                }
            }
        }
        let (mut snapshot, diagnostics) = match self.fetch().await {
            Ok(fetched) => fetched,
            Err(e) => {
                // Pushes and reads keep working on the last applied snapshot.
                tracing::error!(
                    error = format!("{e:#}"),
                    "the sources could not be read: using the previous run's snapshot until a run reads them"
                );
                let previous = self
                    .store
                    .previous_snapshot()
                    .await
                    .map_err(|e| e.to_string())?
                    .unwrap_or_default();
                (previous, Vec::new())
            }
        };
        let dropped = overlay::apply_overlays(&mut snapshot, &mut overlays);
        let persons = snapshot.persons.len();
        let accounts: usize = known.targets.values().map(|t| t.accounts.len()).sum();
        *self.known.write().await = Known {
            state: known,
            version,
        };
        *self.view_mut() = View {
            snapshot,
            source_diagnostics: diagnostics,
            overlays,
            before: HashMap::new(),
            generation: 0,
        };
        self.forget_pushes(&dropped).await;
        tracing::info!(
            persons,
            accounts,
            seconds = started.elapsed().as_secs_f64(),
            "daemon view loaded"
        );
        Ok(())
    }

    async fn run(&self, job: &Job) -> Result<RunSummary, String> {
        let result = match &job.work {
            Work::Run { persons: None, .. } => self.full_run(job).await,
            Work::Run {
                persons: Some(ids),
                refresh,
            } => self.persons_run(job, ids, *refresh).await,
            Work::Approve { plan } => self.settle(job, plan, true).await,
            Work::Reject { plan } => self.settle(job, plan, false).await,
        };
        result.map_err(|e| format!("{e:#}"))
    }

    async fn push(&self, push: Push, at: &str) -> Result<Pushed, ApiError> {
        let _one_at_a_time = self.push_lock.lock().await;
        // The new records, checked against the view; nothing changes yet.
        let records: Vec<Person> = {
            let view = self.view();
            match push {
                Push::Persons(list) => list,
                Push::Contracts(list) => {
                    let mut by_person: BTreeMap<String, Person> = BTreeMap::new();
                    let mut unknown = BTreeSet::new();
                    for (person, contract) in list {
                        let record = match by_person.get_mut(&person) {
                            Some(r) => r,
                            None => match view.snapshot.person(&person) {
                                Some(p) => by_person.entry(person).or_insert_with(|| p.clone()),
                                None => {
                                    unknown.insert(person);
                                    continue;
                                }
                            },
                        };
                        match record.contracts.iter_mut().find(|c| c.id == contract.id) {
                            Some(c) => *c = contract,
                            None => record.contracts.push(contract),
                        }
                        record.contracts.sort_by(|a, b| a.id.cmp(&b.id));
                    }
                    if !unknown.is_empty() {
                        return Err(ApiError::unprocessable(format!(
                            "no person {} in the sources or pushed before; push the person (with this contract) to /push/persons; nothing was taken",
                            unknown
                                .iter()
                                .map(|p| format!("{p:?}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    }
                    by_person.into_values().collect()
                }
            }
        };
        let mut out = Pushed::default();
        let mut rows = Vec::new();
        let mut changed = Vec::new();
        {
            let view = self.view();
            for p in records {
                let current = view.snapshot.person(&p.external_id);
                if current == Some(&p) {
                    out.unchanged.push(p.external_id.clone());
                    continue;
                }
                // The source's record this push replaces: an earlier push's base, or what
                // the view has (which is the source's while nothing was pushed).
                let base = match view.overlays.get(&p.external_id) {
                    Some(o) => o.base.clone(),
                    None => current.map(overlay::digest).unwrap_or_default(),
                };
                let record = serde_json::to_string(&p)
                    .map_err(|e| ApiError::internal("storing the push", e))?;
                rows.push(db::PushedRow {
                    person: p.external_id.clone(),
                    record,
                    base: base.clone(),
                    pushed_at: at.to_owned(),
                });
                out.changed.push(p.external_id.clone());
                changed.push((p, base));
            }
        }
        // Kept in the store before the view changes: a restart knows every push it answered.
        db::save_pushed(self.store.pool(), &rows, &[])
            .await
            .map_err(|e| ApiError::internal("storing the push", e))?;
        let mut view = self.view_mut();
        view.generation += 1;
        let generation = view.generation;
        for (p, base) in changed {
            let id = p.external_id.clone();
            let old = view.snapshot.person(&id).cloned();
            view.before.entry(id.clone()).or_insert((old, generation));
            view.overlays.insert(
                id,
                Overlay {
                    person: p.clone(),
                    base,
                    pushed_at: at.to_owned(),
                },
            );
            overlay::put_person(&mut view.snapshot, p);
        }
        Ok(out)
    }

    async fn persons(&self, query: &ListQuery) -> Result<Value, ApiError> {
        let now = self.now();
        let view = self.view();
        let needle = query.q.as_deref().map(str::to_lowercase);
        let matches = |p: &Person| {
            needle.as_deref().is_none_or(|n| {
                p.external_id.to_lowercase().contains(n)
                    || koppel_core::names::display_name(&p.name)
                        .to_lowercase()
                        .contains(n)
            })
        };
        let mut total = 0usize;
        let mut persons = Vec::new();
        for p in view.snapshot.persons.iter().filter(|p| matches(p)) {
            if total >= query.offset() && persons.len() < query.limit() {
                let primary = self.config.primary.primary(&p.contracts, now);
                persons.push(json!({
                    "external_id": p.external_id,
                    "name": koppel_core::names::display_name(&p.name),
                    "active": p.is_active_on(now),
                    "excluded": p.excluded,
                    "department": primary.map(|c| c.department.as_str()),
                    "title": primary.map(|c| c.title.name.as_str()),
                    "pushed": view.overlays.contains_key(&p.external_id),
                }));
            }
            total += 1;
        }
        Ok(json!({
            "total": total,
            "offset": query.offset(),
            "limit": query.limit(),
            "persons": persons,
        }))
    }

    async fn person(&self, id: &str) -> Result<Value, ApiError> {
        let known = self.known.read().await;
        let view = self.view();
        let record = view.snapshot.person(id);
        let accounts: BTreeMap<&str, &koppel_core::KnownAccount> = known
            .state
            .targets
            .iter()
            .filter_map(|(t, s)| s.accounts.get(id).map(|a| (t.as_str(), a)))
            .collect();
        if record.is_none() && accounts.is_empty() {
            return Err(ApiError::not_found(format!(
                "no person {id:?} in the sources, pushed, or with an account koppel manages"
            )));
        }
        let pushed = view
            .overlays
            .get(id)
            .map(|o| json!({ "pushed_at": o.pushed_at }));
        Ok(json!({
            "external_id": id,
            "name": record.map(|p| koppel_core::names::display_name(&p.name)),
            "record": record,
            "pushed": pushed,
            "accounts": accounts,
        }))
    }

    async fn explain(&self, id: &str) -> Result<Value, ApiError> {
        let now = self.now();
        let known = self.known.read().await;
        let view = self.view();
        crate::render::explain_value(&self.config, &view.snapshot, &known.state, now, id)
            .ok_or_else(|| ApiError::not_found(format!("no person {id:?} in the sources")))
    }

    async fn targets(&self) -> Result<Value, ApiError> {
        let known = self.known.read().await;
        let list: Vec<Value> = self
            .config
            .targets
            .iter()
            .map(|t| {
                let state = known.state.targets.get(&t.name);
                json!({
                    "name": t.name,
                    "kind": t.kind,
                    "description": t.description,
                    "accounts": state.map_or(0, |s| s.accounts.len()),
                    "enabled": state.map_or(0, |s| s.accounts.values().filter(|a| a.enabled).count()),
                })
            })
            .collect();
        Ok(json!({ "targets": list }))
    }

    async fn accounts(&self, target: &str, query: &ListQuery) -> Result<Value, ApiError> {
        if !self.config.targets.iter().any(|t| t.name == target) {
            return Err(ApiError::not_found(format!(
                "there is no target {target:?}"
            )));
        }
        let known = self.known.read().await;
        let empty = TargetState::default();
        let state = known.state.targets.get(target).unwrap_or(&empty);
        let pick = |(person, a): (&String, &koppel_core::KnownAccount)| {
            json!({
                "person": person,
                "reference": a.reference,
                "enabled": a.enabled,
                "disabled_on": a.disabled_on,
                "attributes": a.attributes,
                "permissions": a.permissions,
            })
        };
        let (total, accounts): (usize, Vec<Value>) = match &query.person {
            Some(p) => {
                let one: Vec<Value> = state
                    .accounts
                    .get_key_value(p)
                    .map(pick)
                    .into_iter()
                    .collect();
                (one.len(), one)
            }
            None => (
                state.accounts.len(),
                state
                    .accounts
                    .iter()
                    .skip(query.offset())
                    .take(query.limit())
                    .map(pick)
                    .collect(),
            ),
        };
        Ok(json!({
            "target": target,
            "total": total,
            "offset": query.offset(),
            "limit": query.limit(),
            "accounts": accounts,
        }))
    }

    async fn health(&self) -> Vec<TargetHealth> {
        let probes = self.config.targets.iter().filter_map(|t| {
            let target = self.targets.get(&t.name)?.clone();
            let kind = serde_json::to_value(t.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let name = t.name.clone();
            let correlation = t.correlation.clone();
            Some(async move {
                let started = Instant::now();
                // A lookup that matches nothing: one real round trip (connect, bind, search)
                // without touching any account.
                let probe = async {
                    match &correlation {
                        Some(attr) => target
                            .correlate(attr, &AttrValue::Text("koppel-health-probe".into()))
                            .await
                            .map(drop),
                        None => target.get("koppel-health-probe").await.map(drop),
                    }
                };
                let result = tokio::time::timeout(PROBE_TIMEOUT, probe).await;
                let error = match result {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some(format!(
                        "no answer within {} seconds",
                        PROBE_TIMEOUT.as_secs()
                    )),
                };
                TargetHealth {
                    target: name,
                    kind,
                    ok: error.is_none(),
                    error,
                    millis: started.elapsed().as_millis() as u64,
                }
            })
        });
        let mut out = Vec::new();
        for p in probes.collect::<Vec<_>>() {
            out.push(p.await);
        }
        out
    }
}

/// The store, with every outcome the engine records kept aside, so the daemon's known state
/// in memory follows the store's without reading 300,000 accounts after each run.
struct Tracking<'a> {
    inner: &'a SqliteStore,
    outcomes: Mutex<Vec<(Outcome, Date)>>,
    /// Transactions that bumped the state version (outcomes with a success).
    bumps: AtomicU64,
}

impl<'a> Tracking<'a> {
    fn new(inner: &'a SqliteStore) -> Self {
        Tracking {
            inner,
            outcomes: Mutex::new(Vec::new()),
            bumps: AtomicU64::new(0),
        }
    }
}

#[async_trait::async_trait]
impl Store for Tracking<'_> {
    async fn known_state(&self) -> Result<KnownState, StoreError> {
        self.inner.known_state().await
    }
    async fn state_version(&self) -> Result<u64, StoreError> {
        self.inner.state_version().await
    }
    async fn previous_snapshot(&self) -> Result<Option<Snapshot>, StoreError> {
        self.inner.previous_snapshot().await
    }
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(snapshot).await
    }
    async fn save_plan(&self, plan: &StoredPlan) -> Result<(), StoreError> {
        self.inner.save_plan(plan).await
    }
    async fn plan(&self, id: &str) -> Result<Option<StoredPlan>, StoreError> {
        self.inner.plan(id).await
    }
    async fn set_plan_status(&self, id: &str, status: PlanStatus) -> Result<(), StoreError> {
        self.inner.set_plan_status(id, status).await
    }
    async fn plans(&self, status: Option<PlanStatus>) -> Result<Vec<StoredPlan>, StoreError> {
        self.inner.plans(status).await
    }
    async fn journal_intents(
        &self,
        plan_id: &str,
        intents: &[(u64, &koppel_core::Action)],
    ) -> Result<(), StoreError> {
        self.inner.journal_intents(plan_id, intents).await
    }
    async fn journal_outcomes(
        &self,
        plan_id: &str,
        outcomes: &[Outcome],
        now: Date,
        audit: &[AuditRecord],
    ) -> Result<(), StoreError> {
        self.inner
            .journal_outcomes(plan_id, outcomes, now, audit)
            .await?;
        if outcomes.iter().any(|o| o.result.is_ok()) {
            self.bumps.fetch_add(1, Ordering::SeqCst);
        }
        self.outcomes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(outcomes.iter().map(|o| (o.clone(), now)));
        Ok(())
    }
    async fn open_intents(&self) -> Result<Vec<Intent>, StoreError> {
        self.inner.open_intents().await
    }
    async fn journal(&self, plan_id: &str) -> Result<Vec<JournalEntry>, StoreError> {
        self.inner.journal(plan_id).await
    }
    async fn audit_append(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        self.inner.audit_append(records).await
    }
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit(filter).await
    }
    async fn audit_verify(&self) -> Result<AuditReport, StoreError> {
        self.inner.audit_verify().await
    }
    async fn outbox_add(&self, messages: &[OutboxMessage]) -> Result<usize, StoreError> {
        self.inner.outbox_add(messages).await
    }
    async fn outbox_pending(&self) -> Result<Vec<OutboxMessage>, StoreError> {
        self.inner.outbox_pending().await
    }
    async fn outbox_sent(
        &self,
        key: &str,
        at: &str,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.inner.outbox_sent(key, at, audit).await
    }
    async fn outbox_failed(
        &self,
        key: &str,
        error: &str,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.inner.outbox_failed(key, error, audit).await
    }
}

/// The daemon's targets and runner for a configuration: the same connectors `koppel apply`
/// uses. Remote targets connect on first use.
pub async fn runner(
    config: CompiledConfig,
    config_path: &std::path::Path,
    store: SqliteStore,
    fixed_now: Option<Date>,
) -> anyhow::Result<DaemonRunner> {
    let targets = crate::apply::targets(&config, &store).await?;
    for t in &config.targets {
        if t.kind == TargetKind::Directory {
            tracing::debug!(target = %t.name, "built-in directory target");
        }
    }
    Ok(DaemonRunner::new(
        config,
        config_path,
        store,
        targets,
        fixed_now,
    ))
}
