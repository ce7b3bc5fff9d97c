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

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Starts a new peak: Linux resets VmHWM to the current RSS on writing 5 to clear_refs, so
/// each phase reports its own peak instead of the whole process's.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// User + system CPU time of the whole process (all threads), from /proc/self/stat. The
/// machine is shared, so CPU time says more about a change than wall time does.
fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = s.get(s.rfind(')')? + 2..)?.to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = f.get(11)?.parse().ok()?;
            let stime: u64 = f.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0);
    // USER_HZ is 100 on every Linux koppel runs on.
    Duration::from_millis(ticks * 10)
}

/// Wall time, CPU time and peak memory of one phase.
#[derive(Clone, Copy, Default)]
struct Phase {
    wall: Duration,
    cpu: Duration,
    peak_mb: f64,
}

fn measure<T>(f: impl FnOnce() -> T) -> (T, Phase) {
    reset_peak();
    let (t, c) = (Instant::now(), cpu_time());
    let out = f();
    let phase = Phase {
        wall: t.elapsed(),
        cpu: cpu_time().saturating_sub(c),
        peak_mb: peak_rss_mb().unwrap_or(0.0),
    };
    (out, phase)
}

struct Run {
    parse: Phase,
    plan_empty: Phase,
    record: Phase,
    plan_uptodate: Phase,
    actions: usize,
    uptodate_actions: usize,
}

pub fn run(
    persons: usize,
    seed: u64,
    runs: usize,
    write_to: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let today = koppel_core::Date::from_ymd_opt(2026, 11, 23).context("a valid date")?;
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
    if let Some(out) = write_to {
        std::fs::write(out.join("koppel.toml"), &text)?;
        println!("wrote {} and its data", out.join("koppel.toml").display());
        return Ok(ExitCode::SUCCESS);
    }
    let config = load_config(&text)?;
    let source = config
        .sources
        .first()
        .context("bench config has a source")?
        .clone();

    let mut results = Vec::new();
    for i in 0..runs.max(1) {
        let (fetched, parse) = measure(|| koppel_connectors::source::load(&source, dir_path));
        let fetched = fetched?;
        let empty = KnownState::default();
        let live = koppel_core::LiveValues::default();
        let (plan, plan_empty) = measure(|| {
            koppel_core::plan(&PlanInput {
                config: &config,
                snapshot: &fetched.snapshot,
                previous: None,
                known: &empty,
                live: &live,
                now: today,
            })
        });
        if i == 0 {
            let errors = plan
                .diagnostics
                .iter()
                .filter(|d| d.severity == koppel_core::Severity::Error)
                .count();
            eprintln!(
                "plan: {} actions, {} diagnostics ({errors} errors), {} blocked",
                plan.actions.len(),
                plan.diagnostics.len(),
                plan.blocked.len()
            );
        }
        let actions = plan.actions.len();
        // The known state after applying that plan. A real run holds one plan or the other,
        // never both: the first is consumed here.
        let (known, record) = measure(|| {
            let mut known = KnownState::default();
            for a in plan.actions {
                known.record(&a, today);
            }
            known
        });
        let (again, plan_uptodate) = measure(|| {
            koppel_core::plan(&PlanInput {
                config: &config,
                snapshot: &fetched.snapshot,
                previous: Some(&fetched.snapshot),
                known: &known,
                live: &live,
                now: today,
            })
        });
        if i == 0 && !again.is_empty() {
            eprintln!("warning: the second plan is not empty; first actions:");
            for a in again.actions.iter().take(5) {
                eprintln!("  {}", serde_json::to_string(a)?);
            }
        }
        results.push(Run {
            parse,
            plan_empty,
            record,
            plan_uptodate,
            actions,
            uptodate_actions: again.actions.len(),
        });
    }
    let median = |f: &dyn Fn(&Run) -> Phase| {
        let mut v: Vec<Phase> = results.iter().map(f).collect();
        v.sort_by_key(|p| p.wall);
        v[v.len() / 2]
    };
    let parse = median(&|r| r.parse);
    let empty = median(&|r| r.plan_empty);
    let record = median(&|r| r.record);
    let upto = median(&|r| r.plan_uptodate);
    let rate = |d: Duration| persons as f64 / secs(d).max(1e-9);
    println!(
        "koppel bench: {persons} persons, {contracts} contracts, 3 targets, {} rules, {} runs (median by wall time)",
        config.rules.len(),
        results.len()
    );
    println!(
        "                                     wall          rate       CPU (user+sys)   peak RSS"
    );
    let line = |label: &str, p: Phase, extra: String| {
        println!(
            "  {label:<30} {:>7.3} s {:>9.0} persons/s {:>7.3} s {:>8.0} MB{extra}",
            secs(p.wall),
            rate(p.wall),
            secs(p.cpu),
            p.peak_mb
        );
    };
    line("parse CSV", parse, String::new());
    line(
        "plan, empty known state",
        empty,
        format!("  ({} actions)", results[0].actions),
    );
    line(
        "plan, up-to-date known state",
        upto,
        format!("  ({} actions)", results[0].uptodate_actions),
    );
    println!(
        "  parse + plan (empty)           {:>7.3} s                     {:>7.3} s",
        secs(parse.wall + empty.wall),
        secs(parse.cpu + empty.cpu)
    );
    println!(
        "  parse + plan (up to date)      {:>7.3} s                     {:>7.3} s",
        secs(parse.wall + upto.wall),
        secs(parse.cpu + upto.cpu)
    );
    println!(
        "  (recording the known state: {:.3} s, peak {:.0} MB; peaks are per phase, VmHWM reset before each)",
        secs(record.wall),
        record.peak_mb
    );
    println!(
        "  threads                        {:>8}",
        rayon::current_num_threads()
    );
    Ok(ExitCode::SUCCESS)
}

/// `koppel bench --apply`: the initial plan for `persons` into the built-in directory (all
/// three targets kept there), a re-run with no change, and a month of change.
pub fn run_apply(persons: usize, seed: u64) -> anyhow::Result<ExitCode> {
    use crate::apply::{Context, Progress, Request};
    let today = koppel_core::Date::from_ymd_opt(2026, 11, 23).context("a valid date")?;
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
