//! Loading what a command needs: the configuration, the sources and the known state, and
//! writing the state file. The glue between the files on disk and the pure core.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use koppel_core::config::{self, CompiledConfig};
use koppel_core::{Date, Diagnostic, KnownState, Plan, PlanInput, Snapshot};
use serde::{Deserialize, Serialize};

use crate::Common;
use crate::apply::{Applied, Progress, Request};
use koppel_store::{SqliteStore, Store};

/// Everything a plan is made from.
pub struct Loaded {
    pub config: CompiledConfig,
    pub snapshot: Snapshot,
    pub source_diagnostics: Vec<Diagnostic>,
    pub known: KnownState,
    pub previous: Option<Snapshot>,
    pub now: Date,
}

/// Nothing read from live targets: the offline plan.
static NO_LIVE_VALUES: std::sync::LazyLock<koppel_core::LiveValues> =
    std::sync::LazyLock::new(koppel_core::LiveValues::default);

impl Loaded {
    fn input(&self) -> PlanInput<'_> {
        PlanInput {
            config: &self.config,
            snapshot: &self.snapshot,
            previous: self.previous.as_ref(),
            known: &self.known,
            live: &NO_LIVE_VALUES,
            now: self.now,
        }
    }

    /// The source's diagnostics join the planner's, in one sorted list.
    fn finish(&self, mut plan: Plan) -> Plan {
        plan.diagnostics
            .extend(self.source_diagnostics.iter().cloned());
        plan.diagnostics.sort();
        plan
    }

    /// The plan `koppel plan` shows: like `koppel apply` would make it, generated values
    /// checked against live targets where the plan hands any out (see
    /// [`crate::apply::plan_with_live`]).
    pub fn plan_live(&self) -> anyhow::Result<Plan> {
        let offline = self.config.targets.iter().all(|t| {
            t.kind == koppel_core::config::TargetKind::Directory || t.generators.is_empty()
        });
        if offline {
            return Ok(self.plan());
        }
        let targets = crate::apply::remote_targets(&self.config)?;
        let plan = crate::apply::runtime()?
            .block_on(crate::apply::plan_with_live(&self.input(), &targets))?;
        Ok(self.finish(plan))
    }

    /// The plan without reading any target.
    pub fn plan(&self) -> Plan {
        self.finish(koppel_core::plan(&self.input()))
    }
}

/// The state file of `--state`/`--write-state`: known state and the previous snapshot.
#[derive(Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateFile {
    pub known: KnownState,
    pub previous: Option<Snapshot>,
}

/// Reads and compiles a configuration, printing every error.
pub fn read_config(path: &Path) -> anyhow::Result<CompiledConfig> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the configuration {} (give another with --config)",
            path.display()
        )
    })?;
    match config::load(&text, &path.display().to_string()) {
        Ok(c) => Ok(c),
        Err(errors) => {
            for e in &errors {
                anstream::eprintln!(
                    "{}error:{} {e}",
                    crate::render::ERR.render(),
                    crate::render::ERR.render_reset()
                );
            }
            bail!(
                "{} error{} in {}",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" },
                path.display()
            )
        }
    }
}

pub fn base_dir(config: &Path) -> PathBuf {
    config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Loads configuration, sources and state for a command.
pub fn load(common: &Common) -> anyhow::Result<Loaded> {
    let config = read_config(&common.config)?;
    let now = common.now.unwrap_or_else(crate::today);
    let (snapshot, source_diagnostics) = fetch_at(&config, &base_dir(&common.config), now)?;
    let state: StateFile = match &common.state {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the state file {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a koppel state file", path.display()))?
        }
        None => {
            let path = crate::apply::store_path(&config, &common.config, common.store.as_deref());
            if path.exists() {
                crate::apply::runtime()?.block_on(async {
                    let store = koppel_store::SqliteStore::open(&path).await?;
                    anyhow::Ok(StateFile {
                        known: store.known_state().await?,
                        previous: store.previous_snapshot().await?,
                    })
                })?
            } else {
                StateFile::default()
            }
        }
    };
    Ok(Loaded {
        config,
        snapshot,
        source_diagnostics,
        known: state.known,
        previous: state.previous,
        now: common.now.unwrap_or_else(crate::today),
    })
}

/// Fetches and merges every source of the configuration, as of today.
pub fn fetch(config: &CompiledConfig, base: &Path) -> anyhow::Result<(Snapshot, Vec<Diagnostic>)> {
    fetch_at(config, base, crate::today())
}

/// Fetches and merges every source as of `now` (HR API records come in dated versions).
/// Callable from any thread: HR API sources are read on a runtime of their own.
pub fn fetch_at(
    config: &CompiledConfig,
    base: &Path,
    now: Date,
) -> anyhow::Result<(Snapshot, Vec<Diagnostic>)> {
    if !config.sources.iter().any(koppel_hr::is_api_source) {
        return fetch_files(config, base);
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start the async runtime")?;
                rt.block_on(fetch_async(config, base, now))
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("reading the sources panicked")))
    })
}

fn no_sources(config: &CompiledConfig) -> anyhow::Result<()> {
    if config.sources.is_empty() {
        bail!(
            "the configuration has no [[sources]]: add one (kind = \"csv\" with a dir, kind = \"json\", \"visma\" or \"afas\")"
        );
    }
    Ok(())
}

fn fetch_files(
    config: &CompiledConfig,
    base: &Path,
) -> anyhow::Result<(Snapshot, Vec<Diagnostic>)> {
    no_sources(config)?;
    let mut fetched = Vec::with_capacity(config.sources.len());
    for s in &config.sources {
        fetched.push(koppel_connectors::source::load(s, base)?);
    }
    let merged = koppel_connectors::source::merge(fetched);
    Ok((merged.snapshot, merged.diagnostics))
}

/// Fetches and merges every source, on the caller's runtime.
pub async fn fetch_async(
    config: &CompiledConfig,
    base: &Path,
    now: Date,
) -> anyhow::Result<(Snapshot, Vec<Diagnostic>)> {
    no_sources(config)?;
    let mut fetched = Vec::with_capacity(config.sources.len());
    for (i, s) in config.sources.iter().enumerate() {
        if koppel_hr::is_api_source(s) {
            // Secret and CA files of HR connections are relative to the working directory,
            // like every connector's.
            let source = koppel_hr::source(i, s, Path::new("."), now)?;
            let started = std::time::Instant::now();
            fetched.push(source.fetch().await?);
            tracing::info!(
                source = source.name(),
                ms = started.elapsed().as_millis() as u64,
                "read the HR source"
            );
        } else {
            fetched.push(koppel_connectors::source::load(s, base)?);
        }
    }
    let merged = koppel_connectors::source::merge(fetched);
    Ok((merged.snapshot, merged.diagnostics))
}

/// Writes the state as it will be once `plan` is applied.
pub fn write_state(loaded: &Loaded, plan: &Plan, path: &Path) -> anyhow::Result<()> {
    if !plan.held.is_empty() {
        bail!("the plan is held by a source guard: no state written");
    }
    let mut known = loaded.known.clone();
    for a in &plan.actions {
        known.record(a, loaded.now);
    }
    let file = StateFile {
        known,
        previous: Some(loaded.snapshot.clone()),
    };
    let json = serde_json::to_vec(&file)?;
    std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))
}

pub fn validate(path: &Path) -> anyhow::Result<ExitCode> {
    let config = read_config(path)?;
    // [serve] and the sources' schedules; tokens are references and are not read here.
    let (serve, _) = crate::serve::settings(&config, path)?;
    if let Some(scim) = &serve.scim {
        scim.mapping()
            .with_context(|| format!("{}: [serve.scim.mapping]", path.display()))?;
    }
    crate::notify::check(&config, path)?;
    // HR API sources and write-back targets, each problem at its line and column.
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let hr = koppel_hr::check_text(&text, &path.display().to_string());
    if !hr.is_empty() {
        for e in &hr {
            anstream::eprintln!(
                "{}error:{} {e}",
                crate::render::ERR.render(),
                crate::render::ERR.render_reset()
            );
        }
        bail!(
            "{} error{} in {}",
            hr.len(),
            plural(hr.len()),
            path.display()
        );
    }
    // Connector settings are the connector's to check; nothing is contacted here.
    for t in &config.targets {
        let table = t.connection.clone().unwrap_or_default();
        let checked = match t.kind {
            config::TargetKind::Ldap => koppel_ldap::LdapConfig::from_table(&t.name, &table)
                .map(drop)
                .map_err(anyhow::Error::from),
            config::TargetKind::Scim => koppel_scim::ScimConfig::from_table(&t.name, &table)
                .map(drop)
                .map_err(anyhow::Error::from),
            config::TargetKind::Visma | config::TargetKind::Afas => {
                koppel_hr::check_target(&t.name, t.kind, &table).map_err(anyhow::Error::from)
            }
            config::TargetKind::Graph => {
                koppel_apps::graph::GraphConfig::from_table(&t.name, &table)
                    .map(|c| println!("target {:?}: {}", t.name, koppel_apps::graph::summary(&c)))
                    .map_err(anyhow::Error::from)
            }
            _ => Ok(()),
        };
        checked.with_context(|| format!("{}: target {:?}", path.display(), t.name))?;
    }
    let expressions: usize = config
        .targets
        .iter()
        .map(|t| {
            t.attributes.len()
                + t.generators
                    .iter()
                    .map(|g| g.candidates.len() + g.fields.len() + 1)
                    .sum::<usize>()
        })
        .sum::<usize>()
        + config
            .rules
            .iter()
            .map(|r| {
                usize::from(r.condition.is_some())
                    + usize::from(r.contract_condition.is_some())
                    + r.permissions
                        .iter()
                        .filter(|p| matches!(p.kind, config::PermissionKind::Dynamic(_)))
                        .count()
            })
            .sum::<usize>();
    println!(
        "{}: valid ({} source{}, {} target{}, {} rule{}, {} expressions)",
        path.display(),
        config.sources.len(),
        plural(config.sources.len()),
        config.targets.len(),
        plural(config.targets.len()),
        config.rules.len(),
        plural(config.rules.len()),
        expressions
    );
    Ok(ExitCode::SUCCESS)
}

pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Saves `plan` in the store for a later `koppel apply PLAN_ID`.
pub fn save_plan(common: &Common, loaded: &Loaded, plan: Plan) -> anyhow::Result<String> {
    let path = crate::apply::store_path(&loaded.config, &common.config, common.store.as_deref());
    crate::apply::runtime()?.block_on(async {
        let store = SqliteStore::open(&path).await?;
        let stored = koppel_store::StoredPlan {
            id: crate::apply::plan_id(&plan),
            created_at: crate::apply::timestamp(),
            state_version: store.state_version().await?,
            status: koppel_store::PlanStatus::Saved,
            plan,
            withheld: Vec::new(),
            note: String::new(),
        };
        store.save_plan(&stored).await?;
        Ok(stored.id)
    })
}

/// Who is applying, for the audit log.
fn actor(flag: Option<String>) -> String {
    flag.or_else(|| std::env::var("USER").ok())
        .map(|u| format!("koppel apply ({u})"))
        .unwrap_or_else(|| "koppel apply".to_owned())
}

pub fn apply(
    common: &Common,
    plan_id: Option<String>,
    approve: Option<String>,
    reject: Option<String>,
    actor_flag: Option<String>,
) -> anyhow::Result<ExitCode> {
    let config = read_config(&common.config)?;
    // A broken [notifications] is found before anything is applied.
    crate::notify::check(&config, &common.config)?;
    let now = common.now.unwrap_or_else(crate::today);
    let path = crate::apply::store_path(&config, &common.config, common.store.as_deref());
    let actor = actor(actor_flag);
    let request = match (plan_id, approve, reject) {
        (Some(id), _, _) => Request::Saved(id),
        (None, Some(id), _) => Request::Approve(id),
        (None, None, Some(id)) => Request::Reject(id),
        (None, None, None) => Request::PlanAndApply,
    };
    let progress = Progress::new(false);
    let applied: Applied = crate::apply::runtime()?.block_on(async {
        let store = SqliteStore::open(&path)
            .await
            .with_context(|| format!("opening the store {}", path.display()))?;
        let targets = crate::apply::targets(&config, &store).await?;
        let ctx = crate::apply::Context {
            config: &config,
            config_path: &common.config,
            store: &store,
            targets: &targets,
            now,
            actor: &actor,
            observer: &progress,
        };
        ctx.apply(request).await
    })?;
    progress.finish();
    let mut trouble = false;
    for r in &applied.resumed {
        trouble |= crate::apply::print_report(r, "resumed plan");
    }
    if let Some(stored) = &applied.plan {
        for d in &stored.plan.diagnostics {
            eprintln!("{d}");
        }
        for h in &stored.plan.held {
            println!("HELD by a source guard: {h}");
        }
        if !stored.plan.held.is_empty() {
            println!(
                "Nothing was applied. Plan {} waits: `koppel apply --approve {}` or `--reject {}`.",
                stored.id, stored.id, stored.id
            );
            applied.notified.iter().for_each(crate::notify::print);
            return Ok(ExitCode::from(3));
        }
    }
    for b in &applied.breaches {
        println!("WITHHELD by a threshold: {b}");
    }
    if let Some(r) = &applied.report {
        trouble |= crate::apply::print_report(r, "plan");
        if r.withheld > 0 {
            println!(
                "Approve with `koppel apply --approve {}`, or drop with `--reject {}`.",
                r.plan_id, r.plan_id
            );
        }
    } else if let Some(stored) = &applied.plan {
        println!("plan {} is now {:?}", stored.id, stored.status);
    }
    // A notification that could not be sent is kept and retried: it never fails the run.
    applied.notified.iter().for_each(crate::notify::print);
    Ok(if trouble {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub fn audit(
    common: &Common,
    verify: bool,
    filter: koppel_store::AuditFilter,
    output: crate::Output,
) -> anyhow::Result<ExitCode> {
    let (_, path) = open_existing(common)?;
    crate::apply::runtime()?.block_on(async {
        let store = SqliteStore::open(&path).await?;
        if verify {
            let report = store.audit_verify().await?;
            if report.problems.is_empty() {
                println!(
                    "audit log intact: {} entries, hash chain verified",
                    report.entries
                );
                return Ok(ExitCode::SUCCESS);
            }
            for p in &report.problems {
                println!("{p}");
            }
            println!(
                "audit log TAMPERED: {} problem(s) in {} entries",
                report.problems.len(),
                report.entries
            );
            return Ok(ExitCode::from(4));
        }
        let entries = store.audit(&filter).await?;
        if output == crate::Output::Json {
            println!("{}", serde_json::to_string_pretty(&entries)?);
            return Ok(ExitCode::SUCCESS);
        }
        for e in &entries {
            let r = &e.record;
            let what = match (&r.action, &r.permission) {
                (Some(k), Some(p)) => format!("{} {p:?}", k.as_str()),
                (Some(k), None) => k.as_str().to_owned(),
                _ => String::new(),
            };
            println!(
                "{:>6} {} {:<9} {} {} {} {}{}",
                e.seq,
                r.at,
                format!("{:?}", r.event).to_lowercase(),
                r.actor,
                r.target.as_deref().unwrap_or("-"),
                r.person.as_deref().unwrap_or("-"),
                what,
                r.error
                    .as_deref()
                    .map(|e| format!(" — {e}"))
                    .unwrap_or_default()
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn open_existing(common: &Common) -> anyhow::Result<(CompiledConfig, PathBuf)> {
    let config = read_config(&common.config)?;
    let path = crate::apply::store_path(&config, &common.config, common.store.as_deref());
    if !path.exists() {
        bail!(
            "there is no store at {} yet: nothing has been applied",
            path.display()
        );
    }
    Ok((config, path))
}

pub fn state(common: &Common, output: crate::Output) -> anyhow::Result<ExitCode> {
    let (_, path) = open_existing(common)?;
    let known = crate::apply::runtime()?.block_on(async {
        let store = SqliteStore::open(&path).await?;
        anyhow::Ok(store.known_state().await?)
    })?;
    if output == crate::Output::Json {
        println!("{}", serde_json::to_string_pretty(&known)?);
        return Ok(ExitCode::SUCCESS);
    }
    for (name, t) in &known.targets {
        let enabled = t.accounts.values().filter(|a| a.enabled).count();
        println!(
            "{name}: {} account{} ({enabled} enabled), {} released value{}",
            t.accounts.len(),
            plural(t.accounts.len()),
            t.released.values().map(|m| m.len()).sum::<usize>(),
            plural(t.released.values().map(|m| m.len()).sum::<usize>())
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn accounts(common: &Common, target: &str, output: crate::Output) -> anyhow::Result<ExitCode> {
    let (config, path) = open_existing(common)?;
    let list = crate::apply::runtime()?.block_on(async {
        let store = SqliteStore::open(&path).await?;
        let targets = crate::apply::targets(&config, &store).await?;
        let Some(t) = targets.get(target) else {
            bail!(
                "there is no target {target:?} in {}",
                common.config.display()
            );
        };
        let mut list = t.list_accounts().await?;
        list.sort_by(|a, b| a.reference.cmp(&b.reference));
        anyhow::Ok(list)
    })?;
    if output == crate::Output::Json {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|a| {
                serde_json::json!({
                    "reference": a.reference,
                    "enabled": a.enabled,
                    "attributes": a.attributes,
                    "permissions": a.permissions,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    for a in &list {
        println!(
            "{} {} {}",
            a.reference,
            if a.enabled { "enabled " } else { "disabled" },
            a.permissions.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
