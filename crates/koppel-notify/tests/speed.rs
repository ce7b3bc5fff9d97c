//! How long notifications take at scale (ignored by default; figures in docs/benchmarks.md):
//!
//! ```sh
//! cargo test --release -p koppel-notify --test speed -- --ignored --nocapture
//! ```
//!
//! Events and mails for a first run of 100,000 persons (a create each), for the same run with
//! every create counted as a joiner (100,000 mails rendered), the outbox, and sending to
//! aiosmtpd on loopback.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use koppel_core::plan::{Action, ActionKind, Origin, Reason};
use koppel_core::{AttrValue, Date, Plan};
use koppel_notify::{Mail, Notifier, Sources, Status};
use koppel_store::{PlanStatus, SqliteStore, Store, StoredPlan};
use koppel_testkit::smtp::SmtpSink;

fn cpu() -> Duration {
    // User + system time of this process, from /proc (Linux), for figures under load.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn timed<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let (w, c) = (Instant::now(), cpu());
    let out = f();
    eprintln!(
        "{label}: {:.3} s wall, {:.2} s CPU",
        w.elapsed().as_secs_f64(),
        (cpu() - c).as_secs_f64()
    );
    out
}

fn notifier(extra: &str) -> Notifier {
    let table: toml::Table = toml::from_str(&format!(
        "from = \"koppel@example.org\"\nadmins = [\"ict@example.org\"]\nmanager_email = [\"person.email\"]\n{extra}\n[smtp]\nhost = \"127.0.0.1\"\ntls = \"none\"\n"
    ))
    .unwrap();
    Notifier::from_config(&table, Path::new(".")).unwrap()
}

#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn events_and_mails_for_100k_persons() {
    let now: Date = "2026-11-23".parse().unwrap();
    let mut snapshot = koppel_synth::generate(&koppel_synth::Options::new(100_000, 42, now));
    // Every manager reachable, so that every joiner gets a mail.
    for p in &mut snapshot.persons {
        p.email = format!("{}@example.org", p.external_id);
    }
    let actions: Vec<Action> = snapshot
        .persons
        .iter()
        .map(|p| {
            let mut a = Action::new(
                "directory",
                &p.external_id,
                ActionKind::Create,
                vec![
                    Reason::new(Origin::RuleMatched)
                        .contracts(p.contracts.iter().map(|c| c.id.clone()).collect()),
                ],
            );
            a.attributes.insert(
                "username".into(),
                AttrValue::Text(format!("u{}", p.external_id)),
            );
            a.attributes.insert(
                "mail".into(),
                AttrValue::Text(format!("u{}@example.org", p.external_id)),
            );
            a
        })
        .collect();
    let plan = StoredPlan {
        id: "bench".into(),
        created_at: "2026-11-23T00:00:00Z".into(),
        state_version: 0,
        status: PlanStatus::Applied,
        plan: Plan {
            now,
            held: Vec::new(),
            population: Default::default(),
            actions,
            blocked: Vec::new(),
            diagnostics: Vec::new(),
        },
        withheld: Vec::new(),
        note: String::new(),
    };
    let status = vec![Status::Done; plan.plan.actions.len()];
    let sources = Sources {
        snapshot: &snapshot,
        previous: None,
        known: None,
        now,
    };
    for (label, extra) in [
        ("first run, joiners within 30 days", ""),
        (
            "every create a joiner",
            "[joiner]\nstart_within_days = 1000000",
        ),
    ] {
        let n = notifier(extra);
        let (events, _) = timed(&format!("{label}: events"), || {
            n.events(&plan, &status, &[], &sources)
        });
        let (mails, _) = timed(&format!("{label}: {} mails", events.len()), || {
            n.messages(&events)
        });
        eprintln!("{label}: {} events, {} mails", events.len(), mails.len());
    }
}

fn mail(i: usize) -> Mail {
    Mail {
        key: format!("joiner/bench/run/{i}"),
        event: koppel_notify::EventKind::Joiner,
        plan_id: "bench".into(),
        person: Some(i.to_string()),
        to: vec![format!("manager{i}@example.org")],
        subject: format!("New colleague: person {i} starts on 2026-12-01"),
        body: "Hello,\n\nSomeone starts on 2026-12-01.\n- directory\n  username: someone\n"
            .repeat(3),
        sensitive: false,
    }
}

#[tokio::test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
async fn outbox_and_sending() {
    let Some(sink) = SmtpSink::start_or_skip("outbox_and_sending") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("koppel.db"))
        .await
        .unwrap();
    let table: toml::Table = toml::from_str(&format!(
        "from = \"koppel@example.org\"\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n[held]\nrecipients = [\"ict@example.org\"]\n",
        sink.port()
    ))
    .unwrap();
    let sender = Notifier::from_config(&table, Path::new(".")).unwrap();

    let (w, c) = (Instant::now(), cpu());
    let (added, _) = sender
        .queue(
            &store,
            (0..10_000).map(mail).collect(),
            "2026-11-23T00:00:00Z",
        )
        .await
        .unwrap();
    assert_eq!(added, 10_000);
    eprintln!(
        "outbox: 10,000 mails added in {:.3} s wall, {:.2} s CPU",
        w.elapsed().as_secs_f64(),
        (cpu() - c).as_secs_f64()
    );
    let w = Instant::now();
    assert_eq!(store.outbox_pending().await.unwrap().len(), 10_000);
    eprintln!(
        "outbox: 10,000 pending read in {:.3} s",
        w.elapsed().as_secs_f64()
    );

    // Sending: 1,000 mails from a second store.
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("koppel.db"))
        .await
        .unwrap();
    sender
        .queue(
            &store,
            (0..1_000).map(mail).collect(),
            "2026-11-23T00:00:00Z",
        )
        .await
        .unwrap();
    let (w, c) = (Instant::now(), cpu());
    let report = sender
        .send_pending(
            &store,
            Vec::new(),
            "2026-11-23T00:00:00Z",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_428_000),
            "bench",
        )
        .await;
    let secs = w.elapsed().as_secs_f64();
    assert_eq!(report.sent, 1_000, "{report:?}");
    eprintln!(
        "send: 1,000 mails to aiosmtpd (loopback, plain, each marked sent and audited) in {secs:.2} s wall ({:.0}/s), {:.2} s CPU in koppel",
        1000.0 / secs,
        (cpu() - c).as_secs_f64()
    );
    assert_eq!(sink.wait_for(1_000, Duration::from_secs(30)).len(), 1_000);
}
