//! Figures for the store at koppel's target size: 100k persons in 3 targets. Ignored by
//! default; run `cargo test --release -p koppel-store --test speed -- --ignored --nocapture`.
//!
//! Budgets: `known_state` of 300k accounts ≤ 250 ms, `journal_outcomes` of 1,000 outcomes
//! with 1,000 audit records ≤ 30 ms, snapshots of 100k persons well under a second. The
//! machine is shared, so each figure is the best of several runs next to the time the same
//! work takes in memory.

mod common;

use std::time::{Duration, Instant};

use common::*;
use koppel_core::{Action, ActionKind, AttrValue, Contract, KnownAccount, KnownState, Person};
use koppel_store::{AuditEvent, AuditRecord, Outcome, Store};

const PERSONS: usize = 100_000;
const TARGETS: [&str; 3] = ["ad", "entra", "topdesk"];

fn account(i: usize, t: usize) -> KnownAccount {
    let mut a = KnownAccount {
        reference: format!("CN=user{i:06},OU=Medewerkers,DC=gemeente,DC=nl"),
        enabled: !i.is_multiple_of(20),
        disabled_on: i.is_multiple_of(20).then(|| d("2026-01-15")),
        ..Default::default()
    };
    let given = ["Jan", "Ĳsbrand", "Fatima", "Sanne", "Mohammed"][i % 5];
    let family = format!("Berg{i}");
    let attrs: [(&str, AttrValue); 10] = [
        ("company", "Gemeente Koppeldam".into()),
        ("department", format!("Afdeling {}", i % 120).into()),
        ("displayName", format!("{given} van den {family}").into()),
        ("employeeId", format!("{i:06}").into()),
        ("givenName", given.into()),
        (
            "mail",
            format!("{}.{family}@koppeldam.nl", given.to_lowercase()).into(),
        ),
        ("sn", format!("van den {family}").into()),
        (
            "title",
            ["Adviseur", "Medewerker Burgerzaken", "Teamleider"][i % 3].into(),
        ),
        ("userPrincipalName", format!("u{i:06}@koppeldam.nl").into()),
        ("username", format!("u{i:06}{}", ["", "e", "t"][t]).into()),
    ];
    for (k, v) in attrs {
        a.attributes.insert(k.to_owned(), v);
    }
    for k in 0..3 {
        a.permissions.insert(format!(
            "grp-afd-{}-{}",
            (i + k * 37) % 400,
            ["lees", "schrijf", "beheer"][k]
        ));
    }
    a.generator_inputs.insert(
        "username".into(),
        vec![format!("u{i:06}"), format!("{given}{i}")],
    );
    a
}

fn big_state() -> KnownState {
    let mut known = KnownState::default();
    for (t, name) in TARGETS.iter().enumerate() {
        let target = known.targets.entry((*name).to_owned()).or_default();
        for i in 0..PERSONS {
            target.accounts.insert(format!("P{i:06}"), account(i, t));
        }
        for i in 0..2_000 {
            target
                .released
                .entry("username".into())
                .or_default()
                .insert(format!("old{i}"), d("2025-11-01"));
        }
    }
    known
}

/// CPU time of the whole process (all threads) from /proc, in 10 ms ticks: on a shared
/// machine it says what the work costs when wall time says how busy the neighbours are.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After the command name: state is field 0, utime 11, stime 12.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn best(times: &[Duration]) -> Duration {
    times.iter().copied().min().unwrap_or_default()
}

fn median(times: &[Duration]) -> Duration {
    let mut t = times.to_vec();
    t.sort();
    t[t.len() / 2]
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "figures; run in release with --ignored --nocapture"]
async fn figures() {
    let (_dir, store) = store().await;
    let known = big_state();
    let accounts: usize = known.targets.values().map(|t| t.accounts.len()).sum();

    let t0 = Instant::now();
    store.import_known_state(&known).await.unwrap();
    println!("import {accounts} accounts: {:?}", t0.elapsed());

    let mut clone_times = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        let c = known.clone();
        clone_times.push(t0.elapsed());
        drop(c);
    }
    println!("load average before: {}", load_average());
    let mut load_times = Vec::new();
    let cpu0 = cpu();
    for i in 0..5 {
        let t0 = Instant::now();
        let loaded = store.known_state().await.unwrap();
        load_times.push(t0.elapsed());
        if i == 0 {
            assert_eq!(loaded, known);
        }
    }
    let load_cpu = (cpu() - cpu0) / 5;
    println!(
        "known_state, {accounts} accounts: best {:?}, median {:?}, CPU per load {:?} (in-memory clone of the same state: best {:?})",
        best(&load_times),
        median(&load_times),
        load_cpu,
        best(&clone_times)
    );

    // Batches of 1,000 outcomes, each with an audit record, against the full state.
    let kinds = [
        ActionKind::Update,
        ActionKind::Grant,
        ActionKind::Revoke,
        ActionKind::Disable,
        ActionKind::Enable,
    ];
    let mut intent_times = Vec::new();
    let mut outcome_times = Vec::new();
    let batches = 20;
    let mut seq = 0u64;
    let mut batch_cpu = Duration::ZERO;
    for b in 0..batches {
        let actions: Vec<Action> = (0..1_000)
            .map(|k| {
                let i = (b * 1_000 + k) * 97 % PERSONS;
                let target = TARGETS[k % 3];
                let person = format!("P{i:06}");
                match kinds[k % kinds.len()] {
                    ActionKind::Update => update(target, &person, &[("title", Some("Senior"))]),
                    ActionKind::Grant => grant(target, &person, &format!("grp-new-{b}")),
                    ActionKind::Revoke => revoke(target, &person, "grp-afd-1-lees"),
                    kind => simple(target, &person, kind),
                }
            })
            .collect();
        let intents: Vec<(u64, &Action)> = actions
            .iter()
            .map(|a| {
                seq += 1;
                (seq, a)
            })
            .collect();
        let outcomes: Vec<Outcome> = intents
            .iter()
            .map(|(s, a)| Outcome {
                seq: *s,
                action: (*a).clone(),
                result: Ok(None),
            })
            .collect();
        let audit: Vec<AuditRecord> = actions
            .iter()
            .map(|a| AuditRecord {
                event: AuditEvent::Applied,
                ..audit_record("2026-03-01T10:00:00Z", &a.target, &a.person, a)
            })
            .collect();
        let plan_id = format!("plan-{b}");
        let c0 = cpu();
        let t0 = Instant::now();
        store.journal_intents(&plan_id, &intents).await.unwrap();
        intent_times.push(t0.elapsed());
        let t0 = Instant::now();
        store
            .journal_outcomes(&plan_id, &outcomes, d("2026-03-01"), &audit)
            .await
            .unwrap();
        outcome_times.push(t0.elapsed());
        batch_cpu += cpu() - c0;
    }
    let total: Duration = intent_times.iter().chain(&outcome_times).sum();
    let actions = (batches * 1_000) as f64;
    println!(
        "journal_intents of 1,000: best {:?}, median {:?}; journal_outcomes of 1,000 (+1,000 audit): best {:?}, median {:?}, worst {:?}",
        best(&intent_times),
        median(&intent_times),
        best(&outcome_times),
        median(&outcome_times),
        outcome_times.iter().max().unwrap(),
    );
    println!(
        "store cost of {actions} actions (intents + outcomes + audit, checkpoints included): {total:?} wall = {:.0} actions/s; CPU {batch_cpu:?} = {:.0} actions/s of CPU",
        actions / total.as_secs_f64(),
        actions / batch_cpu.as_secs_f64().max(1e-3)
    );

    let t0 = Instant::now();
    let report = store.audit_verify().await.unwrap();
    println!(
        "audit_verify of {} entries: {:?}",
        report.entries,
        t0.elapsed()
    );
    assert!(report.is_intact());

    // Snapshots of 100k persons.
    let mut snapshot = koppel_core::Snapshot::default();
    for i in 0..PERSONS {
        let mut p = Person {
            external_id: format!("P{i:06}"),
            email: format!("p{i}@koppeldam.nl"),
            ..Person::default()
        };
        p.name.given = "Ĳsbrand".into();
        p.name.family_prefix = "van den".into();
        p.name.family = format!("Berg{i}");
        p.custom
            .insert("kostenplaats".into(), format!("KP{}", i % 90));
        let mut c = Contract::new(format!("C{i:06}-1"), d("2024-01-01"), None);
        c.department = format!("AFD{}", i % 120);
        c.title.code = "ADV".into();
        c.title.name = "Adviseur".into();
        c.manager = format!("P{:06}", i / 10);
        c.fte = Some(0.89);
        p.contracts.push(c);
        snapshot.persons.push(p);
    }
    let t0 = Instant::now();
    store.save_snapshot(&snapshot).await.unwrap();
    let save = t0.elapsed();
    let mut same = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        store.save_snapshot(&snapshot).await.unwrap();
        same.push(t0.elapsed());
    }
    let mut loads = Vec::new();
    for i in 0..3 {
        let t0 = Instant::now();
        let loaded = store.previous_snapshot().await.unwrap();
        loads.push(t0.elapsed());
        if i == 0 {
            assert_eq!(loaded.as_ref(), Some(&snapshot));
        }
    }
    println!(
        "snapshot of {PERSONS} persons: save {save:?}, save unchanged (skipped) best {:?}, load best {:?}",
        best(&same),
        best(&loads)
    );
}
