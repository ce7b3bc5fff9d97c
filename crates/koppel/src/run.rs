//! Loading what a command needs: the configuration, the sources and the known state, and
//! writing the state file. The glue between the files on disk and the pure core.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use koppel_core::config::{self, CompiledConfig};
use koppel_core::{Date, Diagnostic, KnownState, Plan, PlanInput, Snapshot};
use serde::{Deserialize, Serialize};

use crate::Common;

/// Everything a plan is made from.
pub struct Loaded {
    pub config: CompiledConfig,
    pub snapshot: Snapshot,
    pub source_diagnostics: Vec<Diagnostic>,
    pub known: KnownState,
    pub previous: Option<Snapshot>,
    pub now: Date,
}

impl Loaded {
    pub fn plan(&self) -> Plan {
        let mut plan = koppel_core::plan(&PlanInput {
            config: &self.config,
            snapshot: &self.snapshot,
            previous: self.previous.as_ref(),
            known: &self.known,
            now: self.now,
        });
        plan.diagnostics
            .extend(self.source_diagnostics.iter().cloned());
        plan.diagnostics.sort();
        plan
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

fn base_dir(config: &Path) -> PathBuf {
    config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Loads configuration, sources and state for a command.
pub fn load(common: &Common) -> anyhow::Result<Loaded> {
    let config = read_config(&common.config)?;
    let (snapshot, source_diagnostics) = fetch(&config, &base_dir(&common.config))?;
    let state: StateFile = match &common.state {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the state file {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a koppel state file", path.display()))?
        }
        None => StateFile::default(),
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

/// Fetches and merges every source of the configuration.
pub fn fetch(config: &CompiledConfig, base: &Path) -> anyhow::Result<(Snapshot, Vec<Diagnostic>)> {
    if config.sources.is_empty() {
        bail!(
            "the configuration has no [[sources]]: add one (kind = \"csv\" with a dir, or kind = \"json\")"
        );
    }
    let mut fetched = Vec::with_capacity(config.sources.len());
    for s in &config.sources {
        fetched.push(koppel_connectors::source::load(s, base)?);
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
