//! The `koppel` command line: plan, explain, validate, demo, synth, bench.
//! The only place that reads the clock and the environment; everything else is passed in.

mod apply;
mod bench;
mod bench_daemon;
mod daemon;
mod demo;
mod notify;
mod reconcile;
mod render;
mod run;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use koppel_core::Date;

#[derive(Parser)]
#[command(
    name = "koppel",
    version,
    about = "Identity provisioning from HR data: plan, explain, apply"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
pub struct Common {
    /// The configuration file.
    #[arg(long, short, default_value = "koppel.toml", env = "KOPPEL_CONFIG")]
    pub config: PathBuf,
    /// Evaluate as of this date (YYYY-MM-DD) instead of today.
    #[arg(long, value_parser = parse_date)]
    pub now: Option<Date>,
    /// Known state to plan against: a JSON file written by `--write-state`. Without it,
    /// the store's (when there is one), else nothing.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// The store: a SQLite file (default: the config's `[store] path`, else koppel.db next
    /// to the config file).
    #[arg(long, env = "KOPPEL_STORE")]
    pub store: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Show what koppel would change in every target, and why.
    Plan {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
        /// Only the counts per target and kind, not every action.
        #[arg(long)]
        summary: bool,
        /// Write the state as it would be once the plan has been applied, with this snapshot
        /// as the previous one (for the source guards of the next plan).
        #[arg(long)]
        write_state: Option<PathBuf>,
        /// Exit with 2 when the plan has changes, 0 when empty (for scripts).
        #[arg(long)]
        detailed_exitcode: bool,
        /// Save the plan in the store, to apply later with `koppel apply PLAN_ID`.
        #[arg(long)]
        save: bool,
    },
    /// Plan and carry the plan out (or carry out a saved plan), journaled, resumable.
    Apply {
        /// A plan saved with `koppel plan --save`; without it, plan now and apply.
        plan_id: Option<String>,
        #[command(flatten)]
        common: Common,
        /// Carry out the actions a threshold or guard withheld in this held plan.
        #[arg(long, conflicts_with_all = ["plan_id", "reject"])]
        approve: Option<String>,
        /// Drop the withheld actions of this held plan.
        #[arg(long, conflicts_with = "plan_id")]
        reject: Option<String>,
        /// Who is applying, for the audit log (default: the user name).
        #[arg(long, env = "KOPPEL_ACTOR")]
        actor: Option<String>,
    },
    /// The known state in the store: what koppel last wrote to each target.
    State {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// The accounts a target holds, read from the target itself.
    Accounts {
        /// The target's name in the configuration.
        target: String,
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Compare a target with what koppel wrote: orphans, changes made outside koppel and
    /// missing memberships; `--repair` puts koppel's values back (orphans are only listed).
    Reconcile {
        /// The target's name in the configuration.
        target: String,
        #[command(flatten)]
        common: Common,
        /// Restore drifted attributes, the enabled state and missing memberships.
        #[arg(long)]
        repair: bool,
        /// Who is repairing, for the audit log (default: the user name).
        #[arg(long, env = "KOPPEL_ACTOR")]
        actor: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Run the daemon: runs on the sources' schedules and on events (webhook, HR push), the
    /// admin API (`[serve.api]`), /metrics, /healthz, /readyz, and the built-in directory as
    /// a SCIM 2.0 endpoint (`[serve.scim]`). Logs go to standard error (`--log-format json`
    /// for one JSON object a line; KOPPEL_LOG sets the level, default info).
    Serve {
        #[command(flatten)]
        common: Common,
        /// Address and port to listen on.
        #[arg(long, default_value = "127.0.0.1:8080", env = "KOPPEL_LISTEN")]
        listen: std::net::SocketAddr,
        /// How log lines are written.
        #[arg(long, value_enum, default_value = "text", env = "KOPPEL_LOG_FORMAT")]
        log_format: LogFormat,
    },
    /// The audit log: every applied action, failure, approval and rejection.
    Audit {
        #[command(subcommand)]
        verify: Option<AuditCommand>,
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        person: Option<String>,
        #[arg(long)]
        target: Option<String>,
        /// From this date or time (inclusive), e.g. 2026-11-01.
        #[arg(long)]
        from: Option<String>,
        /// Up to this date or time (inclusive).
        #[arg(long)]
        to: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Show which rules match a person, which contracts are in conditions, and why each
    /// account and permission is or is not granted.
    Explain {
        /// The person's external id.
        external_id: String,
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Check a configuration without running it; report every error with its place.
    Validate {
        #[arg(long, short, default_value = "koppel.toml", env = "KOPPEL_CONFIG")]
        config: PathBuf,
    },
    /// Run the embedded demo organisation through the rules and print the plan.
    Demo {
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
        /// Print every action, not only the summary and a sample.
        #[arg(long)]
        full: bool,
    },
    /// Write synthetic HR data (CSV) for tests and benchmarks, reproducible from a seed.
    Synth {
        #[arg(long, default_value_t = 1000)]
        persons: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The date the data is made around (joiners after it, leavers before it).
        #[arg(long, value_parser = parse_date)]
        today: Option<Date>,
        /// Folder to write persons.csv, contracts.csv and departments.csv to.
        #[arg(long)]
        out: PathBuf,
        /// Also write "a month later" (5% movers, 1% leavers, 1% joiners) to this folder.
        #[arg(long)]
        month_later: Option<PathBuf>,
    },
    /// Measure parsing and planning on synthetic data and print the figures.
    Bench {
        #[arg(long, default_value_t = 100_000)]
        persons: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// How many times to repeat each measurement; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Write the benchmark's data and configuration to this folder instead of measuring.
        #[arg(long)]
        write_to: Option<PathBuf>,
        /// Measure `koppel apply` into the built-in directory instead of planning alone.
        #[arg(long)]
        apply: bool,
        /// Measure a running `koppel serve`: movers pushed one after another, from the push
        /// to the change visible over SCIM, and the daemon's memory.
        #[arg(long, conflicts_with = "apply")]
        daemon: bool,
        /// With --daemon: how many movers to push.
        #[arg(long, default_value_t = 1000)]
        pushes: usize,
        /// Internal: measure one case in this process (`koppel bench` runs each in a child).
        #[arg(long, hide = true, requires = "data")]
        measure: Option<String>,
        /// Internal: the folder `--measure` reads.
        #[arg(long, hide = true)]
        data: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain: detects an entry changed, removed or reordered.
    Verify,
}

/// Planning a large population is allocation-bound (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn parse_date(s: &str) -> Result<Date, String> {
    s.parse::<Date>()
        .map_err(|e| format!("{s:?} is not a date (expected YYYY-MM-DD): {e}"))
}

/// Today's date: the one place the clock is read.
#[allow(clippy::disallowed_methods)]
pub fn today() -> Date {
    chrono::Local::now().date_naive()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon tells what it does (runs, pushes) at info; commands speak for themselves.
    let (level, json) = match &cli.command {
        Command::Serve { log_format, .. } => (
            "info,sqlx=error,tower_http=warn",
            *log_format == LogFormat::Json,
        ),
        _ => ("warn,sqlx=error", false),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KOPPEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            anstream::eprintln!(
                "{}error:{} {e:#}",
                render::ERR.render(),
                render::ERR.render_reset()
            );
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Plan {
            common,
            output,
            summary,
            write_state,
            detailed_exitcode,
            save,
        } => {
            let loaded = run::load(&common)?;
            let plan = loaded.plan_live()?;
            render::plan(&loaded, &plan, output, summary)?;
            if let Some(path) = write_state {
                run::write_state(&loaded, &plan, &path)?;
            }
            if save {
                let id = run::save_plan(&common, &loaded, plan.clone())?;
                eprintln!("saved plan {id}: apply it with `koppel apply {id}`");
            }
            let code = if detailed_exitcode && !plan.is_empty() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
            // The process ends now: freeing a large plan and its inputs piece by piece would
            // only cost time (about a second at 100,000 persons).
            std::mem::forget(plan);
            std::mem::forget(loaded);
            Ok(code)
        }
        Command::Explain {
            external_id,
            common,
            output,
        } => {
            let loaded = run::load(&common)?;
            render::explain(&loaded, &external_id, output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { config } => run::validate(&config),
        Command::Apply {
            plan_id,
            common,
            approve,
            reject,
            actor,
        } => run::apply(&common, plan_id, approve, reject, actor),
        Command::State { common, output } => run::state(&common, output),
        Command::Accounts {
            target,
            common,
            output,
        } => run::accounts(&common, &target, output),
        Command::Serve { common, listen, .. } => serve::run(&common, listen),
        Command::Reconcile {
            target,
            common,
            repair,
            actor,
            output,
        } => reconcile::run(&common, &target, repair, actor, output),
        Command::Audit {
            verify,
            common,
            person,
            target,
            from,
            to,
            output,
        } => run::audit(
            &common,
            verify.is_some(),
            apply::audit_filter(person, target, from, to),
            output,
        ),
        Command::Demo { output, full } => demo::run(output, full),
        Command::Synth {
            persons,
            seed,
            today: day,
            out,
            month_later,
        } => {
            let day = day.unwrap_or_else(today);
            let opts = koppel_synth::Options::new(persons, seed, day);
            let snapshot = koppel_synth::generate(&opts);
            koppel_synth::write_csv(&snapshot, &out)
                .with_context(|| format!("writing {}", out.display()))?;
            if let Some(dir) = month_later {
                let later = koppel_synth::month_later(
                    &snapshot,
                    &koppel_synth::Changes::default(),
                    seed.wrapping_add(1),
                    day + chrono::Days::new(30),
                );
                koppel_synth::write_csv(&later, &dir)
                    .with_context(|| format!("writing {}", dir.display()))?;
            }
            println!("wrote {persons} persons to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            persons,
            seed,
            runs,
            write_to,
            apply,
            daemon,
            pushes,
            measure,
            data,
        } => {
            if let (Some(kind), Some(dir)) = (measure, data) {
                bench::measure_child(&kind, &dir)
            } else if daemon {
                bench_daemon::run(persons, seed, pushes)
            } else if apply {
                bench::run_apply(persons, seed)
            } else {
                bench::run(persons, seed, runs, write_to.as_deref())
            }
        }
    }
}
