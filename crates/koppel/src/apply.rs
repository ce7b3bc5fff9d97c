//! `koppel apply`, `koppel plan --save` and `koppel audit`: the store, the targets and the
//! executor wired together, with progress on a terminal and log lines elsewhere.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use koppel_connectors::directory::DirectoryTarget;
use koppel_connectors::lazy::Lazy;
use koppel_connectors::target::{Target, TargetError};
use koppel_core::config::{CompiledConfig, TargetKind};
use koppel_core::plan::ActionKind;
use koppel_core::{Date, KnownState, LiveValues, Plan, PlanInput, Snapshot};
use koppel_engine::{Engine, Mode, Observer, Report};
use koppel_store::{
    AuditEvent, AuditFilter, AuditRecord, PlanStatus, SqliteStore, Store, StoredPlan,
};

use crate::run::plural;

/// The store file: `--store`, else the config's `[store] path`, else `koppel.db`, relative
/// to the config file's folder.
pub fn store_path(config: &CompiledConfig, config_path: &Path, flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    let base = crate::run::base_dir(config_path);
    base.join(
        config
            .store
            .path
            .clone()
            .unwrap_or_else(|| PathBuf::from("koppel.db")),
    )
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The connectors for every configured target.
pub async fn targets(
    config: &CompiledConfig,
    store: &SqliteStore,
) -> anyhow::Result<BTreeMap<String, Arc<dyn Target>>> {
    let mut out = remote_targets(config)?;
    for t in &config.targets {
        if t.kind == TargetKind::Directory {
            let target = DirectoryTarget::new(&t.name, store.pool().clone())
                .await
                .with_context(|| {
                    format!("opening the built-in directory for target {:?}", t.name)
                })?;
            out.insert(t.name.clone(), Arc::new(target));
        }
    }
    Ok(out)
}

/// The connectors for every target outside koppel (all but the built-in directory). Their
/// settings are checked now; a server is contacted only when an operation needs it, so an
/// empty plan calls no target.
pub fn remote_targets(
    config: &CompiledConfig,
) -> anyhow::Result<BTreeMap<String, Arc<dyn Target>>> {
    let mut out: BTreeMap<String, Arc<dyn Target>> = BTreeMap::new();
    for t in &config.targets {
        let table = || t.connection.clone().unwrap_or_default();
        let target = match t.kind {
            TargetKind::Directory => continue,
            TargetKind::Ldap => {
                let settings = koppel_ldap::LdapConfig::from_table(&t.name, &table())?;
                lazy(&t.name, settings, |name, settings| async move {
                    let target = koppel_ldap::connect(&name, settings)
                        .await
                        .map_err(|e| e.into_target_error(&name))?;
                    Ok(Arc::new(target) as Arc<dyn Target>)
                })
            }
            TargetKind::Scim => {
                let settings = koppel_scim::ScimConfig::from_table(&t.name, &table())?;
                lazy(&t.name, settings, |name, settings| async move {
                    let target = koppel_scim::connect(&name, settings)
                        .await
                        .map_err(|e| e.into_target_error(&name))?;
                    Ok(Arc::new(target) as Arc<dyn Target>)
                })
            }
            TargetKind::Visma => {
                let api = koppel_hr::visma::VismaTargetConfig::from_table(
                    &format!("targets.{}.connection", t.name),
                    &table(),
                    Path::new("."),
                )?;
                lazy(&t.name, api, |name, api| async move {
                    let target = koppel_hr::VismaTarget::new(&name, api)
                        .map_err(|e| e.into_target_error(&name))?;
                    Ok(Arc::new(target) as Arc<dyn Target>)
                })
            }
            TargetKind::Afas => {
                let settings = koppel_hr::afas::AfasTargetConfig::from_table(
                    &format!("targets.{}.connection", t.name),
                    &table(),
                    Path::new("."),
                )?;
                lazy(&t.name, settings, |name, (c, api)| async move {
                    let target = koppel_hr::AfasTarget::new(&name, c, api)
                        .map_err(|e| e.into_target_error(&name))?;
                    Ok(Arc::new(target) as Arc<dyn Target>)
                })
            }
            TargetKind::Graph => {
                let settings = koppel_apps::graph::GraphConfig::from_table(&t.name, &table())?;
                lazy(&t.name, settings, |name, settings| async move {
                    let target = koppel_apps::graph::connect(&name, settings)
                        .await
                        .map_err(|e| e.into_target_error(&name))?;
                    Ok(Arc::new(target) as Arc<dyn Target>)
                })
            }
            other => bail!(
                "target {:?} has kind {other:?}, which this koppel cannot apply to yet; \
                 `koppel plan` works for it, `koppel apply` needs kind = \"directory\", \"ldap\", \"scim\", \"graph\", \"visma\" or \"afas\"",
                t.name
            ),
        };
        out.insert(t.name.clone(), target);
    }
    Ok(out)
}

/// A target that `connect(name, settings)` connects on its first operation.
fn lazy<S, F, Fut>(name: &str, settings: S, connect: F) -> Arc<dyn Target>
where
    S: Clone + Send + Sync + 'static,
    F: Fn(String, S) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Arc<dyn Target>, TargetError>> + Send + 'static,
{
    let owned = name.to_owned();
    Arc::new(Lazy::new(name, move || {
        connect(owned.clone(), settings.clone())
    }))
}

/// Plans; then, where the plan hands out generated values (usernames, e-mail addresses) in a
/// target that may hold accounts koppel did not make, reads the values that target holds and
/// plans again with them, so no generated value clashes with a live one. The built-in
/// directory holds only koppel's accounts, whose values the known state has. A plan that
/// generates nothing (an unchanged source) calls no target. The values read are added to
/// `input.live` (the daemon passes the values of persons it does not plan).
pub async fn plan_with_live(
    input: &PlanInput<'_>,
    targets: &BTreeMap<String, Arc<dyn Target>>,
) -> anyhow::Result<Plan> {
    let first = koppel_core::plan(input);
    let mut live = input.live.clone();
    let mut read = false;
    for t in &input.config.targets {
        if t.kind == TargetKind::Directory || t.generators.is_empty() {
            continue;
        }
        let fields: Vec<&str> = t.generated_fields().collect();
        let generates = first.actions.iter().any(|a| {
            a.target == t.name
                && fields
                    .iter()
                    .any(|f| a.attributes.contains_key(*f) || a.changes.contains_key(*f))
        });
        let Some(target) = targets.get(&t.name).filter(|_| generates) else {
            continue;
        };
        let accounts = target
            .list_accounts()
            .await
            .with_context(|| format!("reading {:?} for unique values", t.name))?;
        for account in &accounts {
            let holder = t
                .correlation
                .as_deref()
                .and_then(|c| account.attributes.get(c))
                .and_then(first_text);
            for field in &fields {
                match account.attributes.get(*field) {
                    Some(koppel_core::AttrValue::List(values)) => {
                        for v in values {
                            live.insert(&t.name, field, v, holder);
                        }
                    }
                    Some(v) => {
                        if let Some(text) = first_text(v) {
                            live.insert(&t.name, field, text, holder);
                        }
                    }
                    None => {}
                }
            }
        }
        tracing::info!(target = %t.name, accounts = accounts.len(), "read live values for generators");
        read = true;
    }
    if !read {
        return Ok(first);
    }
    Ok(koppel_core::plan(&PlanInput {
        live: &live,
        ..*input
    }))
}

fn first_text(v: &koppel_core::AttrValue) -> Option<&str> {
    match v {
        koppel_core::AttrValue::Text(s) => Some(s),
        koppel_core::AttrValue::List(l) => l.first().map(String::as_str),
        _ => None,
    }
}

/// An RFC 3339 timestamp: the wall clock, read here in the binary only.
#[allow(clippy::disallowed_methods)]
pub fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A plan id: the second it was made, and a digest of its content, the exact time and the
/// process, so that two identical plans saved in the same second still get their own ids.
pub fn plan_id(plan: &Plan) -> String {
    use std::hash::{Hash, Hasher};
    #[allow(clippy::disallowed_methods)]
    let now = chrono::Utc::now();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(plan).unwrap_or_default().hash(&mut h);
    now.timestamp_nanos_opt().hash(&mut h);
    std::process::id().hash(&mut h);
    format!(
        "{}-{:06x}",
        now.format("%Y%m%d-%H%M%S"),
        h.finish() & 0xff_ffff
    )
}

/// Progress: a bar on a terminal, a log line every few seconds elsewhere; and the kill
/// points of the crash tests (`KOPPEL_TEST_PAUSE_AT=N` stops at the N-th checkpoint, until
/// the file `KOPPEL_TEST_RESUME_FILE` names exists).
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_log: std::sync::Mutex<Instant>,
    checkpoints: AtomicUsize,
    pause_at: Option<usize>,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        use std::io::IsTerminal;
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} actions · {per_sec} · eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        Self {
            bar,
            last_log: std::sync::Mutex::new(Instant::now()),
            checkpoints: AtomicUsize::new(0),
            pause_at: std::env::var("KOPPEL_TEST_PAUSE_AT")
                .ok()
                .and_then(|v| v.parse().ok()),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn progress(&self, done: usize, total: usize) {
        if let Some(b) = &self.bar {
            b.set_length(total as u64);
            b.set_position(done as u64);
            return;
        }
        if let Ok(mut last) = self.last_log.lock()
            && (last.elapsed() >= Duration::from_secs(5) || (done == total && total > 0))
        {
            *last = Instant::now();
            tracing::info!("applied {done} of {total} actions");
        }
    }

    fn checkpoint(&self, point: &str) {
        let n = self.checkpoints.fetch_add(1, Ordering::SeqCst) + 1;
        if self.pause_at == Some(n) {
            eprintln!("KOPPEL-PAUSED {n} {point}");
            // The crash test kills the process here with SIGKILL; the outage test stops the
            // target's server meanwhile and lets the run go on by creating this file.
            let resume = std::env::var_os("KOPPEL_TEST_RESUME_FILE").map(PathBuf::from);
            loop {
                if resume.as_ref().is_some_and(|f| f.exists()) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

pub fn batch_size() -> usize {
    std::env::var("KOPPEL_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1000)
}

/// What `koppel apply` was asked to do.
pub enum Request {
    PlanAndApply,
    Saved(String),
    Approve(String),
    Reject(String),
}

/// Plans (or takes a saved plan) and applies it. Returns the reports of resumed runs and of
/// this one, for the caller to print.
pub struct Applied {
    pub resumed: Vec<Report>,
    pub report: Option<Report>,
    pub plan: Option<StoredPlan>,
    pub breaches: Vec<koppel_core::threshold::ThresholdBreach>,
    pub snapshot: Option<Snapshot>,
    /// The snapshot before this one, kept only for notifications (leavers gone from HR).
    pub previous: Option<Snapshot>,
    /// What the notifications did, when `[notifications]` is configured.
    pub notified: Option<crate::notify::Notified>,
}

pub struct Context<'a> {
    pub config: &'a CompiledConfig,
    pub config_path: &'a Path,
    pub store: &'a SqliteStore,
    pub targets: &'a BTreeMap<String, Arc<dyn Target>>,
    pub now: Date,
    pub actor: &'a str,
    pub observer: &'a dyn Observer,
}

impl Context<'_> {
    fn engine(&self) -> Engine<'_> {
        Engine {
            config: self.config,
            store: self.store,
            targets: self.targets,
            actor: self.actor,
            clock: &timestamp,
            batch_size: batch_size(),
            observer: self.observer,
        }
    }

    async fn audit_event(
        &self,
        event: AuditEvent,
        plan: &StoredPlan,
        note: &str,
    ) -> anyhow::Result<()> {
        self.store
            .audit_append(&[AuditRecord {
                at: timestamp(),
                actor: self.actor.to_owned(),
                event,
                plan_id: Some(plan.id.clone()),
                target: None,
                person: None,
                action: None,
                permission: None,
                before: serde_json::Value::Null,
                after: serde_json::Value::Null,
                reasons: Vec::new(),
                error: (!note.is_empty()).then(|| note.to_owned()),
            }])
            .await?;
        Ok(())
    }

    /// The store's known state: `current` when the caller still holds it, else read again.
    async fn known(&self, current: Option<KnownState>) -> anyhow::Result<KnownState> {
        Ok(match current {
            Some(known) => known,
            None => self.store.known_state().await?,
        })
    }

    /// Plans the current sources against the store.
    pub async fn plan(
        &self,
    ) -> anyhow::Result<(Plan, Snapshot, KnownState, Vec<koppel_core::Diagnostic>)> {
        let known = self.store.known_state().await?;
        let (plan, snapshot, known, diags, _) = self.plan_against(known).await?;
        Ok((plan, snapshot, known, diags))
    }

    /// Plans the current sources against `known`, which must be the store's current known
    /// state (read once per run: for 100k persons it is 300k accounts); also returns the
    /// previous snapshot the plan was compared with.
    #[allow(clippy::type_complexity)]
    async fn plan_against(
        &self,
        known: KnownState,
    ) -> anyhow::Result<(
        Plan,
        Snapshot,
        KnownState,
        Vec<koppel_core::Diagnostic>,
        Option<Snapshot>,
    )> {
        let (snapshot, diags) = crate::run::fetch_async(
            self.config,
            &crate::run::base_dir(self.config_path),
            self.now,
        )
        .await?;
        let previous = self.store.previous_snapshot().await?;
        let mut plan = plan_with_live(
            &PlanInput {
                config: self.config,
                snapshot: &snapshot,
                previous: previous.as_ref(),
                known: &known,
                live: &LiveValues::default(),
                now: self.now,
            },
            self.targets,
        )
        .await?;
        plan.diagnostics.extend(diags.iter().cloned());
        plan.diagnostics.sort();
        Ok((plan, snapshot, known, diags, previous))
    }

    pub async fn save(
        &self,
        plan: Plan,
        status: PlanStatus,
        withheld: Vec<(String, ActionKind)>,
        note: &str,
    ) -> anyhow::Result<StoredPlan> {
        let stored = StoredPlan {
            id: plan_id(&plan),
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

    /// Applies, then sends the notifications the run calls for (never failing the run).
    pub async fn apply(&self, request: Request) -> anyhow::Result<Applied> {
        let first_run = matches!(request, Request::PlanAndApply | Request::Saved(_));
        let mut out = self.apply_only(request).await?;
        out.notified = crate::notify::after_apply(self, first_run, &out).await;
        Ok(out)
    }

    async fn apply_only(&self, request: Request) -> anyhow::Result<Applied> {
        let engine = self.engine();
        let known = self.store.known_state().await?;
        let resumed = engine.resume(&known, self.now).await?;
        // Still the store's state unless a resumed run changed it.
        let mut current = resumed.is_empty().then_some(known);
        let mut out = Applied {
            resumed,
            report: None,
            plan: None,
            breaches: Vec::new(),
            snapshot: None,
            previous: None,
            notified: None,
        };
        match request {
            Request::Reject(id) => {
                let stored = self.held(&id).await?;
                self.store
                    .set_plan_status(&id, PlanStatus::Rejected)
                    .await?;
                self.audit_event(AuditEvent::Rejected, &stored, "").await?;
                out.plan = Some(stored);
            }
            Request::Approve(id) => {
                let stored = self.held(&id).await?;
                self.audit_event(AuditEvent::Approved, &stored, "").await?;
                let known = self.known(current.take()).await?;
                out.report = Some(
                    engine
                        .execute(&stored, &known, Mode::Approved, self.now)
                        .await?,
                );
                out.plan = Some(stored);
            }
            Request::Saved(id) => {
                let Some(mut stored) = self.store.plan(&id).await? else {
                    bail!("there is no saved plan {id:?} (see `koppel plan --save`)");
                };
                if stored.status != PlanStatus::Saved {
                    bail!(
                        "plan {id} is {:?}, not a saved plan waiting to be applied",
                        stored.status
                    );
                }
                let version = self.store.state_version().await?;
                if version != stored.state_version {
                    bail!(
                        "plan {id} was made against state version {}, the store is at {version}: \
                         something was applied since. Make a new plan.",
                        stored.state_version
                    );
                }
                if !stored.plan.held.is_empty() {
                    bail!("plan {id} is held by the source guards; approve it with --approve {id}");
                }
                let known = self.known(current.take()).await?;
                out.breaches = koppel_core::threshold::check(self.config, &stored.plan, &known);
                stored.withheld = out
                    .breaches
                    .iter()
                    .map(|b| (b.target.clone(), b.kind))
                    .collect();
                stored.status = PlanStatus::Applying;
                self.store.save_plan(&stored).await?;
                out.report = Some(
                    engine
                        .execute(&stored, &known, Mode::Normal, self.now)
                        .await?,
                );
                out.plan = Some(stored);
            }
            Request::PlanAndApply => {
                let known = self.known(current.take()).await?;
                let (plan, snapshot, known, _, previous) = self.plan_against(known).await?;
                out.previous = previous.filter(|_| self.config.notifications.is_some());
                if !plan.held.is_empty() {
                    // The source guards hold everything: approval releases the whole plan.
                    let mut kinds: Vec<(String, ActionKind)> = plan
                        .actions
                        .iter()
                        .map(|a| (a.target.clone(), a.kind))
                        .collect();
                    kinds.sort();
                    kinds.dedup();
                    let note = plan
                        .held
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ");
                    let stored = self.save(plan, PlanStatus::Held, kinds, &note).await?;
                    self.audit_event(AuditEvent::Held, &stored, &note).await?;
                    out.plan = Some(stored);
                    out.snapshot = Some(snapshot);
                    return Ok(out);
                }
                out.breaches = koppel_core::threshold::check(self.config, &plan, &known);
                let withheld = out
                    .breaches
                    .iter()
                    .map(|b| (b.target.clone(), b.kind))
                    .collect();
                let note = out
                    .breaches
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                let empty = plan.is_empty();
                let stored = self
                    .save(plan, PlanStatus::Applying, withheld, &note)
                    .await?;
                if !out.breaches.is_empty() {
                    self.audit_event(AuditEvent::Held, &stored, &note).await?;
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
                    engine
                        .execute(&stored, &known, Mode::Normal, self.now)
                        .await?
                };
                if report.complete() {
                    self.store.save_snapshot(&snapshot).await?;
                }
                out.report = Some(report);
                out.plan = Some(stored);
                out.snapshot = Some(snapshot);
            }
        }
        Ok(out)
    }

    async fn held(&self, id: &str) -> anyhow::Result<StoredPlan> {
        let Some(stored) = self.store.plan(id).await? else {
            bail!("there is no plan {id:?}");
        };
        if stored.status != PlanStatus::Held {
            bail!(
                "plan {id} is {:?}: only a held plan can be approved or rejected",
                stored.status
            );
        }
        Ok(stored)
    }
}

/// Prints one execution report; returns whether anything failed or is left over.
pub fn print_report(r: &Report, label: &str) -> bool {
    let mut parts: Vec<String> = Vec::new();
    let mut totals: BTreeMap<ActionKind, usize> = BTreeMap::new();
    for per in r.counts.values() {
        for (k, n) in per {
            *totals.entry(*k).or_default() += n;
        }
    }
    for k in ActionKind::ALL {
        if let Some(n) = totals.get(&k) {
            parts.push(format!("{n} {}", k.as_str()));
        }
    }
    println!(
        "{label} {}: {} action{} applied{}",
        r.plan_id,
        r.applied,
        plural(r.applied),
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join(", "))
        }
    );
    for f in &r.failed {
        println!(
            "  failed: {} {} for {}: {}",
            f.action.target,
            f.action.kind.as_str(),
            f.action.person,
            f.error
        );
    }
    if r.skipped > 0 {
        println!(
            "  {} action{} skipped: they depend on a failed one; the next run retries them",
            r.skipped,
            plural(r.skipped)
        );
    }
    if r.withheld > 0 {
        println!(
            "  {} action{} withheld by thresholds until approved",
            r.withheld,
            plural(r.withheld)
        );
    }
    for (t, e) in &r.unavailable {
        println!("  target {t} unavailable ({e}): run `koppel apply` again to finish");
    }
    !r.failed.is_empty() || !r.unavailable.is_empty()
}

pub fn audit_filter(
    person: Option<String>,
    target: Option<String>,
    from: Option<String>,
    to: Option<String>,
) -> AuditFilter {
    AuditFilter {
        person,
        target,
        from,
        to,
        limit: None,
    }
}
