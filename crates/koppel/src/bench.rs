//! `koppel bench`: parse and plan a synthetic population with 3 targets and 50 rules, against
//! an empty and an up-to-date known state, and print the figures docs/benchmarks.md records.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use koppel_core::config::{self, CompiledConfig};
use koppel_core::{KnownState, PlanInput, Snapshot};

/// The benchmark configuration for a synthetic organisation: 3 targets, 50 rules, dynamic
/// department and location groups, generators and cross-target account data.
pub fn bench_config(snapshot: &Snapshot, data_dir: &str) -> String {
    let mut depts: Vec<&str> = snapshot.departments.keys().map(String::as_str).collect();
    depts.sort_unstable();
    let titles: BTreeSet<&str> = snapshot
        .persons
        .iter()
        .flat_map(|p| p.contracts.iter().map(|c| c.title.code.as_str()))
        .filter(|t| !t.is_empty())
        .collect();
    let titles: Vec<&str> = titles.into_iter().collect();
    let mut c = String::new();
    let _ = write!(
        c,
        r#"version = 1

[settings]
required_fields = ["name.family"]

[[sources]]
kind = "csv"
dir = "{data_dir}"

[guards]
removed = "10%"

[[targets]]
name = "ad"
kind = "directory"
correlation = "employee_id"
lifecycle = {{ create_days_before = 14, disable_grace_days = 0, delete_after_days = 90 }}

[targets.attributes]
employee_id = "person.external_id"
given_name = "person.name.nickname != '' ? person.name.nickname : person.name.given"
family_name = "family_name(person)"
display_name = "display_name(person)"
initials = "initials(person)"
title = "contract.title.name"
department = "contract.department.name"
office = "contract.location"
manager = "contract.manager"
cost_centre = "contract.cost_centre"
phone = "person.phone"

[targets.generators.username]
candidates = [
  "ascii(lower(compact(person.name.given.substring(0, 1) + person.name.family)))",
  "ascii(lower(compact(person.name.given + person.name.family)))",
]
fields = {{ username = "value", upn = "value + '@koppeldam.nl'" }}
max_iterations = 99999
release_retention_days = 365

[targets.generators.mail]
candidates = ["ascii(lower(compact(person.name.given) + '.' + compact(family_name(person))))"]
fields = {{ mail = "value + '@koppeldam.nl'" }}
max_iterations = 99999
regenerate = "on_change"
release_retention_days = 365

[[targets]]
name = "plek"
kind = "scim"
correlation = "external_id"
lifecycle = {{ create_days_before = 0, disable_grace_days = 7, delete_after_days = 30 }}

[targets.attributes]
external_id = "person.external_id"
user_name = "accounts.ad.upn"
email = "accounts.ad.mail"
display_name = "display_name(person)"
title = "contract.title.name"
department = "contract.department.name"

[[targets]]
name = "apps"
kind = "rest"
correlation = "code"
lifecycle = {{ create_days_before = 7 }}

[targets.attributes]
code = "person.external_id"
login = "accounts.ad.username"
name = "display_name(person)"
location = "contract.location"
fte = "string(contract.fte)"

[[rules]]
id = "staff"
description = "Everyone with a contract gets an account and their department and location groups"
accounts = ["ad"]
permissions = [
  {{ target = "ad", group = "all-staff" }},
  {{ target = "ad", dynamic = "'dept-' + lower(contract.department.code)" }},
  {{ target = "ad", dynamic = "'loc-' + lower(ascii(compact(contract.location)))" }},
]

[[rules]]
id = "plek"
description = "Employees, not externals, on the intranet"
contract_condition = "contract.employment_type != 'Extern'"
accounts = ["plek"]
permissions = [{{ target = "plek", dynamic = "'plek-' + lower(contract.department.code)" }}]

[[rules]]
id = "apps"
condition = "person.email != '' || person.phone != ''"
contract_condition = "contract.fte >= 0.5"
accounts = ["apps"]
"#
    );
    // 47 more rules: department subtrees, titles, hours, to reach 50.
    let mut n = 3;
    for d in depts.iter().take(30) {
        let _ = write!(
            c,
            "\n[[rules]]\nid = \"dept-{d}\"\ncondition = \"in_department_tree('{d}')\"\npermissions = [{{ target = \"ad\", group = \"tree-{d}\" }}]\n"
        );
        n += 1;
    }
    for t in titles.iter().take(50 - n - 2) {
        let _ = write!(
            c,
            "\n[[rules]]\nid = \"title-{t}\"\ncontract_condition = \"contract.title.code == '{t}'\"\npermissions = [{{ target = \"apps\", group = \"role-{t}\" }}]\n"
        );
    }
    let _ = write!(
        c,
        "\n[[rules]]\nid = \"part-time\"\ncontract_condition = \"contract.hours_per_week < 24.0\"\npermissions = [{{ target = \"ad\", group = \"part-time\" }}]\n\
         \n[[rules]]\nid = \"new-starters\"\ncontract_condition = \"days_since(contract.start) < 90\"\npermissions = [{{ target = \"plek\", group = \"onboarding\" }}]\n"
    );
    c
}

/// Compiles a generated benchmark configuration; its errors, if any, in one message.
fn load_config(text: &str) -> anyhow::Result<CompiledConfig> {
    config::load(text, "bench.toml").map_err(|errs| {
        anyhow::anyhow!(
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A `VmHWM:`-style line of a /proc status file, in MB.
fn status_mb(status: &str, key: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn peak_rss_mb() -> Option<f64> {
    status_mb(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmHWM:",
    )
}

/// Starts a new peak: Linux resets VmHWM to the current RSS on writing 5 to clear_refs. Used
/// by the apply benchmark, whose steps share one process.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Fields 14-17 of /proc/self/stat: user and system CPU time of this process (all threads),
/// and of the children it has waited for. The machine is shared, so CPU time says more about
/// a change than wall time does.
fn proc_times() -> [Duration; 4] {
    let ticks: Vec<u64> = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = s.get(s.rfind(')')? + 2..)?.to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            f.get(11..15)?.iter().map(|t| t.parse().ok()).collect()
        })
        .unwrap_or_else(|| vec![0; 4]);
    // USER_HZ is 100 on every Linux koppel runs on.
    std::array::from_fn(|i| Duration::from_millis(ticks.get(i).copied().unwrap_or(0) * 10))
}

fn cpu_time() -> Duration {
    let [user, system, _, _] = proc_times();
    user + system
}

fn children_cpu_time() -> Duration {
    let [_, _, user, system] = proc_times();
    user + system
}

/// Wall time, CPU time and peak memory of one phase.
#[derive(Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
struct Phase {
    wall: Duration,
    cpu: Duration,
    peak_mb: f64,
}

/// Runs `f` and measures it; the peak is the process's so far (VmHWM is never reset here).
fn measure<T>(f: impl FnOnce() -> T) -> (T, Phase) {
    let (t, c) = (Instant::now(), cpu_time());
    let out = f();
    let phase = Phase {
        wall: t.elapsed(),
        cpu: cpu_time().saturating_sub(c),
        peak_mb: peak_rss_mb().unwrap_or(0.0),
    };
    (out, phase)
}

/// What one measuring child process reports, as one JSON line on its stdout.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Report {
    parse: Phase,
    /// Reading the known state (and previous snapshot) from the state file.
    state: Option<Phase>,
    plan: Phase,
    actions: usize,
    diagnostics: usize,
    blocked: usize,
}

const TODAY: (i32, u32, u32) = (2026, 11, 23);

fn today() -> anyhow::Result<koppel_core::Date> {
    koppel_core::Date::from_ymd_opt(TODAY.0, TODAY.1, TODAY.2).context("a valid date")
}

/// `koppel bench`: writes the data and configuration to a folder, then measures each case in a
/// fresh child process, so that no measurement carries memory the allocator kept from the
/// data generation or an earlier phase. The peaks are those of the whole child process.
pub fn run(
    persons: usize,
    seed: u64,
    runs: usize,
    write_to: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let today = today()?;
    let dir = tempfile::tempdir()?;
    let dir_path = write_to.unwrap_or(dir.path());
    let data = dir_path.join("hr");
    let t = Instant::now();
    let snapshot = koppel_synth::generate(&koppel_synth::Options::new(persons, seed, today));
    koppel_synth::write_csv(&snapshot, &data)?;
    let contracts: usize = snapshot.persons.iter().map(|p| p.contracts.len()).sum();
    eprintln!(
        "generated {persons} persons, {contracts} contracts, {} departments in {:.2}s",
        snapshot.departments.len(),
        secs(t.elapsed())
    );
    let text = bench_config(&snapshot, "hr");
    drop(snapshot);
    std::fs::write(dir_path.join("koppel.toml"), &text)?;
    if write_to.is_some() {
        println!(
            "wrote {} and its data",
            dir_path.join("koppel.toml").display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rules = load_config(&text)?.rules.len();
    let exe = std::env::current_exe().context("cannot find the koppel binary to run")?;

    // The known state after applying the first plan (and that snapshot as the previous one),
    // as a state file: what the up-to-date case and `koppel plan --state` read.
    let state = dir_path.join("state.json");
    child_report(&exe, "state", dir_path)?;

    let mut empty = Vec::new();
    let mut uptodate = Vec::new();
    let mut cli: Vec<[Phase; 3]> = Vec::new();
    let config = dir_path.join("koppel.toml");
    let now = format!("--now={}", today);
    let config_arg = format!("--config={}", config.display());
    let state_arg = format!("--state={}", state.display());
    for _ in 0..runs.max(1) {
        empty.push(child_report(&exe, "empty", dir_path)?);
        uptodate.push(child_report(&exe, "uptodate", dir_path)?);
        cli.push([
            command(&exe, &["plan", &config_arg, &now, "--output=json"])?,
            command(&exe, &["plan", &config_arg, &now])?,
            command(
                &exe,
                &["plan", &config_arg, &now, &state_arg, "--output=json"],
            )?,
        ]);
    }
    let first = &empty[0];
    anyhow::ensure!(
        uptodate[0].actions == 0,
        "the plan against the up-to-date state has {} actions",
        uptodate[0].actions
    );
    eprintln!(
        "plan: {} actions, {} diagnostics, {} blocked",
        first.actions, first.diagnostics, first.blocked
    );
    let median = |v: Vec<Phase>| {
        let mut v = v;
        v.sort_by_key(|p| p.wall);
        v[v.len() / 2]
    };
    let pick = |rs: &[Report], f: &dyn Fn(&Report) -> Phase| median(rs.iter().map(f).collect());
    let rate = |d: Duration| persons as f64 / secs(d).max(1e-9);
    println!(
        "koppel bench: {persons} persons, {contracts} contracts, 3 targets, {rules} rules, {} runs (median by wall time)",
        empty.len()
    );
    println!("  each case in a fresh process; peak RSS is that process's peak up to the line");
    println!(
        "                                       wall          rate    CPU (user+sys)   peak RSS"
    );
    let line = |label: &str, p: Phase, extra: String| {
        println!(
            "  {label:<32} {:>7.3} s {:>9.0}/s {:>9.3} s {:>9.0} MB{extra}",
            secs(p.wall),
            rate(p.wall),
            secs(p.cpu),
            p.peak_mb
        );
    };
    let parse = pick(&empty, &|r| r.parse);
    let plan_empty = pick(&empty, &|r| r.plan);
    let both = |a: Phase, b: Phase| Phase {
        wall: a.wall + b.wall,
        cpu: a.cpu + b.cpu,
        peak_mb: a.peak_mb.max(b.peak_mb),
    };
    line("parse CSV", parse, String::new());
    line(
        "plan, empty known state",
        plan_empty,
        format!("  ({} actions)", first.actions),
    );
    line(
        "parse + plan (empty)",
        both(parse, plan_empty),
        String::new(),
    );
    let parse2 = pick(&uptodate, &|r| r.parse);
    let read = pick(&uptodate, &|r| r.state.unwrap_or_default());
    let plan_upto = pick(&uptodate, &|r| r.plan);
    line("parse CSV", parse2, String::new());
    line("read known state (state file)", read, String::new());
    line(
        "plan, up-to-date known state",
        plan_upto,
        format!("  ({} actions)", uptodate[0].actions),
    );
    line(
        "parse + plan (up to date)",
        both(parse2, plan_upto),
        String::new(),
    );
    println!(
        "  whole commands, stdout to /dev/null (wall and CPU of the process, peak polled from /proc):"
    );
    let pick_cli = |i: usize| median(cli.iter().map(|c| c[i]).collect());
    line("koppel plan --output json", pick_cli(0), String::new());
    line("koppel plan (text)", pick_cli(1), String::new());
    line(
        "koppel plan --state (up to date)",
        pick_cli(2),
        String::new(),
    );
    println!(
        "  threads                          {:>7}",
        rayon::current_num_threads()
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `koppel bench --measure KIND --data DIR` and reads its report.
fn child_report(
    exe: &std::path::Path,
    kind: &str,
    dir: &std::path::Path,
) -> anyhow::Result<Report> {
    let out = std::process::Command::new(exe)
        .args(["bench", "--measure", kind, "--data"])
        .arg(dir)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "the {kind} measurement failed: {}",
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("the {kind} measurement reported {line:?}"))
}

/// Runs a whole koppel command with its output to /dev/null: wall time, CPU time (from this
/// process's children times) and the peak, polled from /proc while it runs.
fn command(exe: &std::path::Path, args: &[&str]) -> anyhow::Result<Phase> {
    let (t, cpu) = (Instant::now(), children_cpu_time());
    let mut child = std::process::Command::new(exe)
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak: f64 = 0.0;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Some(mb) = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|s| status_mb(&s, "VmHWM:"))
        {
            peak = peak.max(mb);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    anyhow::ensure!(
        status.success(),
        "koppel {} failed: {status}",
        args.join(" ")
    );
    Ok(Phase {
        wall: t.elapsed(),
        cpu: children_cpu_time().saturating_sub(cpu),
        peak_mb: peak,
    })
}

/// The child side of `koppel bench`: one case in this fresh process, reported as one JSON line.
/// `state` writes the state file the others read; `empty` parses and plans against an empty
/// known state; `uptodate` parses, reads the state file and plans against it.
pub fn measure_child(kind: &str, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let today = today()?;
    let text = std::fs::read_to_string(dir.join("koppel.toml"))?;
    let config = load_config(&text)?;
    let source = config
        .sources
        .first()
        .context("bench config has a source")?;
    let (fetched, parse) = measure(|| koppel_connectors::source::load(source, dir));
    let fetched = fetched?;
    let live = koppel_core::LiveValues::default();
    let state_path = dir.join("state.json");
    let mut report = Report {
        parse,
        ..Report::default()
    };
    let plan = match kind {
        "state" | "empty" => {
            let empty = KnownState::default();
            let (plan, phase) = measure(|| {
                koppel_core::plan(&PlanInput {
                    config: &config,
                    snapshot: &fetched.snapshot,
                    previous: None,
                    known: &empty,
                    live: &live,
                    now: today,
                })
            });
            report.plan = phase;
            plan
        }
        "uptodate" => {
            let (state, phase) = measure(|| -> anyhow::Result<crate::run::StateFile> {
                let file = std::fs::File::open(&state_path)?;
                Ok(serde_json::from_reader(std::io::BufReader::new(file))?)
            });
            let state = state?;
            report.state = Some(phase);
            let (plan, phase) = measure(|| {
                koppel_core::plan(&PlanInput {
                    config: &config,
                    snapshot: &fetched.snapshot,
                    previous: state.previous.as_ref(),
                    known: &state.known,
                    live: &live,
                    now: today,
                })
            });
            report.plan = phase;
            plan
        }
        other => anyhow::bail!("unknown measurement {other:?}"),
    };
    report.actions = plan.actions.len();
    report.diagnostics = plan.diagnostics.len();
    report.blocked = plan.blocked.len();
    if kind == "state" {
        let mut known = KnownState::default();
        for a in &plan.actions {
            known.record(a, today);
        }
        let file = crate::run::StateFile {
            known,
            previous: Some(fetched.snapshot),
        };
        let out = std::io::BufWriter::new(std::fs::File::create(&state_path)?);
        serde_json::to_writer(out, &file)?;
    }
    println!("{}", serde_json::to_string(&report)?);
    // The process ends here: freeing the plan piece by piece would only cost time.
    std::mem::forget(plan);
    Ok(ExitCode::SUCCESS)
}

/// `koppel bench --apply`: the initial plan for `persons` into the built-in directory (all
/// three targets kept there), a re-run with no change, and a month of change.
pub fn run_apply(persons: usize, seed: u64) -> anyhow::Result<ExitCode> {
    use crate::apply::{Context, Progress, Request};
    let today = today()?;
    let later = koppel_core::Date::from_ymd_opt(2026, 12, 23).context("a valid date")?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("hr");
    let snapshot = koppel_synth::generate(&koppel_synth::Options::new(persons, seed, today));
    koppel_synth::write_csv(&snapshot, &data)?;
    let month = koppel_synth::month_later(
        &snapshot,
        &koppel_synth::Changes::default(),
        seed + 1,
        later,
    );
    let text = bench_config(&snapshot, "hr")
        .replace("kind = \"scim\"", "kind = \"directory\"")
        .replace("kind = \"rest\"", "kind = \"directory\"");
    drop(snapshot);
    let config_path = dir.path().join("koppel.toml");
    std::fs::write(&config_path, &text)?;
    let config = load_config(&text)?;
    let progress = Progress::new(true);
    let rt = crate::apply::runtime()?;
    let store_path = dir.path().join("koppel.db");
    let step = |now| -> anyhow::Result<(Phase, usize, usize)> {
        rt.block_on(async {
            reset_peak();
            let (t, cpu) = (Instant::now(), cpu_time());
            let store = koppel_store::SqliteStore::open(&store_path).await?;
            let targets = crate::apply::targets(&config, &store).await?;
            let ctx = Context {
                config: &config,
                config_path: &config_path,
                store: &store,
                targets: &targets,
                now,
                actor: "koppel bench",
                observer: &progress,
            };
            let applied = ctx.apply(Request::PlanAndApply).await?;
            let elapsed = Phase {
                wall: t.elapsed(),
                cpu: cpu_time().saturating_sub(cpu),
                peak_mb: peak_rss_mb().unwrap_or(0.0),
            };
            let planned = applied.plan.as_ref().map_or(0, |p| p.plan.actions.len());
            let report = applied.report.context("the bench plan is not held")?;
            anyhow::ensure!(
                report.failed.is_empty(),
                "{} actions failed: {:?}",
                report.failed.len(),
                report.failed.first()
            );
            Ok((elapsed, planned, report.applied))
        })
    };
    let (initial, planned, applied) = step(today)?;
    let (rerun, rerun_planned, rerun_applied) = step(today)?;
    koppel_synth::write_csv(&month, &data)?;
    let (monthly, month_planned, month_applied) = step(later)?;
    let rate = |n: usize, d: Duration| n as f64 / secs(d).max(1e-9);
    println!(
        "koppel bench --apply: {persons} persons, 3 targets in the built-in directory, 50 rules"
    );
    println!(
        "  (each step is a whole `koppel apply`: sources, known state, plan, journal, store, audit)"
    );
    println!("                                     wall    CPU (user+sys)   peak RSS");
    let line = |label: &str, p: Phase, what: String| {
        println!(
            "  {label:<30} {:>7.2} s {:>9.2} s {:>8.0} MB  {what}",
            secs(p.wall),
            secs(p.cpu),
            p.peak_mb
        );
    };
    line(
        "initial apply",
        initial,
        format!(
            "{planned} planned, {applied} applied, {:.0} actions/s wall, {:.0} actions/s of CPU",
            rate(applied, initial.wall),
            rate(applied, initial.cpu)
        ),
    );
    line(
        "re-run, no change",
        rerun,
        format!("{rerun_planned} planned, {rerun_applied} applied"),
    );
    line(
        "a month of change",
        monthly,
        format!("{month_planned} planned, {month_applied} applied"),
    );
    let size = std::fs::metadata(&store_path).map(|m| m.len()).unwrap_or(0);
    println!(
        "  store file                     {:>8.0} MB",
        size as f64 / 1e6
    );
    Ok(ExitCode::SUCCESS)
}
