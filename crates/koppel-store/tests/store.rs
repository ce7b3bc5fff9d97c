//! The SQLite store against its contract: round trips, the journal protocol, equivalence
//! with `KnownState::record`, the audit chain under tampering, and reopening the file.

mod common;

use common::*;
use koppel_core::guard::PopulationChange;
use koppel_core::{ActionKind, Department, Diagnostic, KnownState, Person, Plan, Snapshot};
use koppel_store::{
    AuditEvent, AuditFilter, AuditProblemKind, JournalStatus, Outcome, PlanStatus, SqliteStore,
    Store, StoreError, StoredPlan,
};

fn plan(id: &str, created_at: &str, status: PlanStatus) -> StoredPlan {
    StoredPlan {
        id: id.to_owned(),
        created_at: created_at.to_owned(),
        state_version: 7,
        status,
        plan: Plan {
            now: d("2026-03-01"),
            held: vec![],
            population: PopulationChange {
                previous: Some(10),
                current: 11,
                added: 1,
                removed: 0,
                blocked: 0,
            },
            actions: vec![
                create("ad", "P1", &[("mail", "p1@example.org")], true),
                grant("ad", "P1", "grp-all"),
            ],
            blocked: vec![],
            diagnostics: vec![Diagnostic::warning("odd", "something odd")],
        },
        withheld: vec![("ad".into(), ActionKind::Delete)],
        note: "held: 40 deletes".into(),
    }
}

#[tokio::test]
async fn a_new_store_is_empty() {
    let (_dir, store) = store().await;
    assert_eq!(store.known_state().await.unwrap(), KnownState::default());
    assert_eq!(store.state_version().await.unwrap(), 0);
    assert_eq!(store.previous_snapshot().await.unwrap(), None);
    assert!(store.plans(None).await.unwrap().is_empty());
    assert!(store.open_intents().await.unwrap().is_empty());
    assert!(store.journal("nope").await.unwrap().is_empty());
    let report = store.audit_verify().await.unwrap();
    assert_eq!(report.entries, 0);
    assert!(report.is_intact(), "{report}");
}

#[tokio::test]
async fn plans_round_trip_and_change_status() {
    let (_dir, store) = store().await;
    let a = plan("a", "2026-03-01T10:00:00Z", PlanStatus::Saved);
    let b = plan("b", "2026-03-01T09:00:00Z", PlanStatus::Held);
    store.save_plan(&a).await.unwrap();
    store.save_plan(&b).await.unwrap();
    assert_eq!(store.plan("a").await.unwrap(), Some(a.clone()));
    assert_eq!(store.plan("zz").await.unwrap(), None);
    // Oldest first.
    assert_eq!(store.plans(None).await.unwrap(), vec![b.clone(), a.clone()]);
    assert_eq!(
        store.plans(Some(PlanStatus::Held)).await.unwrap(),
        vec![b.clone()]
    );

    store
        .set_plan_status("b", PlanStatus::Approved)
        .await
        .unwrap();
    assert!(
        store
            .plans(Some(PlanStatus::Held))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.plan("b").await.unwrap().unwrap().status,
        PlanStatus::Approved
    );
    assert!(matches!(
        store.set_plan_status("zz", PlanStatus::Rejected).await,
        Err(StoreError::NoPlan(id)) if id == "zz"
    ));

    // Saving again replaces.
    let mut a2 = a.clone();
    a2.note = "changed".into();
    a2.status = PlanStatus::Applied;
    store.save_plan(&a2).await.unwrap();
    assert_eq!(store.plan("a").await.unwrap(), Some(a2));
    assert_eq!(store.plans(None).await.unwrap().len(), 2);
}

fn snapshot(n: usize) -> Snapshot {
    let mut s = Snapshot::default();
    for i in 0..n {
        let mut p = Person {
            external_id: format!("P{i:05}"),
            email: format!("p{i}@example.org"),
            ..Person::default()
        };
        p.name.given = "Ĳsbrand".into();
        p.name.family_prefix = "van der".into();
        p.name.family = format!("Berg{i}");
        p.custom.insert("badge".into(), i.to_string());
        let mut c = koppel_core::Contract::new(format!("c{i}"), d("2025-01-01"), None);
        c.department = "IT".into();
        c.fte = Some(0.8);
        p.contracts.push(c);
        s.persons.push(p);
    }
    s.departments.insert(
        "IT".into(),
        Department {
            code: "IT".into(),
            name: "Informatie".into(),
            parent: String::new(),
            manager: "P00001".into(),
        },
    );
    s
}

#[tokio::test]
async fn snapshot_round_trips_and_identical_content_is_not_rewritten() {
    let (_dir, store) = store().await;
    let s = snapshot(4_500);
    store.save_snapshot(&s).await.unwrap();
    assert_eq!(store.previous_snapshot().await.unwrap(), Some(s.clone()));

    // Mark the stored rows: saving the same content again must leave the mark.
    sqlx::query("UPDATE snapshot SET departments = '{}' WHERE id = 1")
        .execute(store.pool())
        .await
        .unwrap();
    store.save_snapshot(&s).await.unwrap();
    let departments: String = sqlx::query_scalar("SELECT departments FROM snapshot")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(departments, "{}");

    // Different content is written, and fewer chunks leave no stale ones behind.
    let smaller = snapshot(10);
    store.save_snapshot(&smaller).await.unwrap();
    assert_eq!(store.previous_snapshot().await.unwrap(), Some(smaller));
    let empty = Snapshot::default();
    store.save_snapshot(&empty).await.unwrap();
    assert_eq!(store.previous_snapshot().await.unwrap(), Some(empty));
}

#[tokio::test]
async fn journal_protocol_intents_outcomes_and_failures() {
    let (_dir, store) = store().await;
    let now = d("2026-03-02");
    let c1 = create("ad", "P1", &[("mail", "p1@example.org")], true);
    let g1 = grant("ad", "P1", "grp-it");
    let c2 = create("ad", "P2", &[("mail", "p2@example.org")], true);
    store
        .journal_intents("plan-1", &[(1, &c1), (2, &g1), (3, &c2)])
        .await
        .unwrap();
    // Idempotent: the same intents again change nothing.
    store
        .journal_intents("plan-1", &[(1, &c1), (2, &g1)])
        .await
        .unwrap();
    let open = store.open_intents().await.unwrap();
    assert_eq!(
        open.iter()
            .map(|i| (i.plan_id.as_str(), i.seq))
            .collect::<Vec<_>>(),
        [("plan-1", 1), ("plan-1", 2), ("plan-1", 3)]
    );
    assert_eq!(open[1].action, g1);

    let outcomes = vec![
        Outcome {
            seq: 1,
            action: c1.clone(),
            result: Ok(Some("CN=P1,OU=Users".into())),
        },
        Outcome {
            seq: 3,
            action: c2.clone(),
            result: Err("target said no: mail taken".into()),
        },
    ];
    let audit = vec![audit_record("2026-03-02T08:00:00Z", "ad", "P1", &c1)];
    store
        .journal_outcomes("plan-1", &outcomes, now, &audit)
        .await
        .unwrap();

    let open = store.open_intents().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!((open[0].seq, &open[0].action), (2, &g1));

    let journal = store.journal("plan-1").await.unwrap();
    assert_eq!(journal.len(), 3);
    assert_eq!(journal[0].status, JournalStatus::Done);
    assert_eq!(journal[0].error, None);
    assert_eq!(journal[1].status, JournalStatus::Pending);
    assert_eq!(journal[2].status, JournalStatus::Failed);
    assert_eq!(
        journal[2].error.as_deref(),
        Some("target said no: mail taken")
    );
    assert_eq!(journal[2].action, c2);

    // The failure left no trace in the known state; the success did, with its reference.
    let known = store.known_state().await.unwrap();
    let mut expected = KnownState::default();
    expected.record(&c1, now);
    expected
        .targets
        .get_mut("ad")
        .unwrap()
        .accounts
        .get_mut("P1")
        .unwrap()
        .reference = "CN=P1,OU=Users".into();
    assert_eq!(known, expected);
    assert!(known.account("ad", "P2").is_none());
    assert_eq!(store.state_version().await.unwrap(), 1);
    assert_eq!(store.audit(&AuditFilter::default()).await.unwrap().len(), 1);

    // Intents written again after the outcome keep the outcome.
    store.journal_intents("plan-1", &[(1, &c1)]).await.unwrap();
    assert_eq!(
        store.journal("plan-1").await.unwrap()[0].status,
        JournalStatus::Done
    );

    // A second outcome for seq 1, or one without an intent, is refused whole.
    for (seq, what) in [(1, "already has an outcome"), (9, "no intent")] {
        let err = store
            .journal_outcomes(
                "plan-1",
                &[
                    Outcome {
                        seq: 2,
                        action: g1.clone(),
                        result: Ok(None),
                    },
                    Outcome {
                        seq,
                        action: c1.clone(),
                        result: Ok(None),
                    },
                ],
                now,
                &[],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Journal { .. }) && err.to_string().contains(what),
            "{err}"
        );
        assert_eq!(store.open_intents().await.unwrap().len(), 1, "rolled back");
        assert_eq!(store.state_version().await.unwrap(), 1);
    }

    // Only failures: journal updated, known state and its version untouched.
    store
        .journal_outcomes(
            "plan-1",
            &[Outcome {
                seq: 2,
                action: g1.clone(),
                result: Err("timeout".into()),
            }],
            now,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(store.state_version().await.unwrap(), 1);
    assert!(store.open_intents().await.unwrap().is_empty());
    assert_eq!(store.known_state().await.unwrap(), known);
}

#[tokio::test]
async fn open_intents_list_the_oldest_plan_first() {
    let (_dir, store) = store().await;
    let a = simple("ad", "P1", ActionKind::Enable);
    // "zz" was journaled first, so it is older than "aa" whatever the ids say.
    store
        .journal_intents("zz", &[(2, &a), (1, &a)])
        .await
        .unwrap();
    store.journal_intents("aa", &[(1, &a)]).await.unwrap();
    store.journal_intents("zz", &[(3, &a)]).await.unwrap();
    let open: Vec<(String, u64)> = store
        .open_intents()
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.plan_id, i.seq))
        .collect();
    assert_eq!(
        open,
        [
            ("zz".to_owned(), 1),
            ("zz".to_owned(), 2),
            ("zz".to_owned(), 3),
            ("aa".to_owned(), 1)
        ]
    );
}

/// A realistic run over several days: create, update, enable, disable, grant, revoke and
/// delete (with released values), in batches, each also recorded in memory.
#[tokio::test]
async fn journal_outcomes_reproduce_known_state_record_exactly() {
    let (dir, store) = store().await;
    let mut expected = KnownState::default();
    let days: Vec<(&str, Vec<koppel_core::Action>)> = vec![
        (
            "2026-01-05",
            vec![
                create("ad", "P1", &[("mail", "p1@x.nl"), ("sn", "Berg")], false),
                create("ad", "P2", &[("mail", "p2@x.nl")], true),
                create("ad", "P3", &[("mail", "p3@x.nl")], true),
                create("scim", "P1", &[("userName", "p1")], true),
                grant("ad", "P1", "grp-a"),
                grant("ad", "P1", "grp-b"),
                grant("ad", "P2", "grp-a"),
                grant("ad", "P2", "lic-e3"),
            ],
        ),
        (
            "2026-01-12",
            vec![
                simple("ad", "P1", ActionKind::Enable),
                update("ad", "P2", &[("mail", Some("p2@y.nl")), ("sn", None)]),
                update("ad", "P2", &[("title", Some("Adviseur"))]),
                revoke("ad", "P1", "grp-b"),
                revoke("ad", "P1", "grp-never-had"),
                simple("ad", "P3", ActionKind::Disable),
                simple("scim", "P1", ActionKind::Disable),
                // An update of an account koppel never created: record makes a default one.
                update("ad", "P9", &[("mail", Some("p9@x.nl"))]),
            ],
        ),
        (
            "2026-02-12",
            vec![
                delete("ad", "P3", &[("mail", "p3@x.nl"), ("sAMAccountName", "p3")]),
                delete("scim", "P1", &[("userName", "p1")]),
                // Deleting what is not there still releases.
                delete("ad", "P404", &[("mail", "gone@x.nl")]),
            ],
        ),
        (
            "2026-02-20",
            vec![
                // The same value released again moves its date; a new account reuses a
                // person id whose account was deleted.
                create("ad", "P3", &[("mail", "p3b@x.nl")], true),
                simple("ad", "P3", ActionKind::Disable),
                delete("ad", "P3", &[("mail", "p3@x.nl")]),
                create("ad", "P4", &[("mail", "p4@x.nl")], true),
                grant("ad", "P4", "grp-a"),
                simple("ad", "P4", ActionKind::Disable),
                simple("ad", "P4", ActionKind::Enable),
            ],
        ),
    ];
    let mut seq = 0u64;
    for (i, (day, actions)) in days.iter().enumerate() {
        let now = d(day);
        let plan_id = format!("plan-{i}");
        let intents: Vec<(u64, &koppel_core::Action)> = actions
            .iter()
            .map(|a| {
                seq += 1;
                (seq, a)
            })
            .collect();
        store.journal_intents(&plan_id, &intents).await.unwrap();
        let outcomes: Vec<Outcome> = intents
            .iter()
            .map(|(s, a)| Outcome {
                seq: *s,
                action: (*a).clone(),
                result: Ok((a.kind == ActionKind::Create)
                    .then(|| format!("ref-{}-{}-{s}", a.target, a.person))),
            })
            .collect();
        for o in &outcomes {
            expected.record(&o.action, now);
            if let Ok(Some(reference)) = &o.result {
                expected
                    .targets
                    .get_mut(&o.action.target)
                    .unwrap()
                    .accounts
                    .get_mut(&o.action.person)
                    .unwrap()
                    .reference = reference.clone();
            }
        }
        // Half a day in one batch, the rest in another: batches must compose.
        let (first, rest) = outcomes.split_at(outcomes.len() / 2);
        store
            .journal_outcomes(&plan_id, first, now, &[])
            .await
            .unwrap();
        store
            .journal_outcomes(&plan_id, rest, now, &[])
            .await
            .unwrap();
        assert_eq!(store.known_state().await.unwrap(), expected, "after {day}");
        assert_eq!(store.state_version().await.unwrap(), 2 * (i as u64 + 1));
    }
    // The run touched every kind of change.
    let ad = &expected.targets["ad"];
    assert_eq!(ad.released["mail"][&"p3@x.nl".to_owned()], d("2026-02-20"));
    assert!(expected.targets["scim"].accounts.is_empty());
    assert_eq!(ad.accounts["P1"].permissions.len(), 1);
    assert!(!ad.accounts.contains_key("P3"));
    assert_eq!(ad.accounts["P4"].disabled_on, None);
    assert_eq!(ad.accounts["P2"].disabled_on, None);

    // Reopening the file keeps everything.
    let path = dir.path().join("koppel.db");
    store.close().await;
    drop(store);
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.known_state().await.unwrap(), expected);
    assert_eq!(store.state_version().await.unwrap(), 8);
    assert!(store.open_intents().await.unwrap().is_empty());
}

#[tokio::test]
async fn import_replaces_the_known_state_and_bumps_the_version() {
    let (_dir, store) = store().await;
    let mut known = KnownState::default();
    known.record(&create("ad", "P1", &[("mail", "a")], true), d("2026-01-01"));
    known.record(&grant("ad", "P1", "g"), d("2026-01-01"));
    known.record(&delete("ldap", "P2", &[("uid", "p2")]), d("2026-01-02"));
    store.import_known_state(&known).await.unwrap();
    assert_eq!(store.known_state().await.unwrap(), known);
    assert_eq!(store.state_version().await.unwrap(), 1);
    store
        .import_known_state(&KnownState::default())
        .await
        .unwrap();
    assert_eq!(store.known_state().await.unwrap(), KnownState::default());
    assert_eq!(store.state_version().await.unwrap(), 2);
}

async fn store_with_audit(n: usize) -> (tempfile::TempDir, SqliteStore) {
    let (dir, store) = store().await;
    let mut records = Vec::new();
    for i in 1..=n {
        let a = grant("ad", &format!("P{i}"), "grp");
        records.push(audit_record(
            &format!("2026-03-{:02}T10:00:00Z", i),
            if i % 2 == 0 { "ad" } else { "scim" },
            &format!("P{}", i % 3),
            &a,
        ));
    }
    // Two appends: the chain continues across calls.
    let (first, rest) = records.split_at(n / 2);
    store.audit_append(first).await.unwrap();
    store.audit_append(rest).await.unwrap();
    (dir, store)
}

async fn raw(store: &SqliteStore, sql: &'static str) {
    sqlx::query(sql).execute(store.pool()).await.unwrap();
}

async fn problems(store: &SqliteStore) -> Vec<(u64, AuditProblemKind)> {
    let report = store.audit_verify().await.unwrap();
    println!("{report}");
    report.problems.iter().map(|p| (p.seq, p.what)).collect()
}

#[tokio::test]
async fn audit_round_trips_and_chains() {
    let (_dir, store) = store_with_audit(6).await;
    let entries = store.audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(entries.len(), 6);
    assert_eq!(entries[0].prev_hash, koppel_store::GENESIS_HASH);
    for w in entries.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].hash);
        assert_eq!(w[1].seq, w[0].seq + 1);
    }
    let a = grant("ad", "P1", "grp");
    assert_eq!(
        entries[0].record,
        audit_record("2026-03-01T10:00:00Z", "scim", "P1", &a)
    );
    assert_eq!(entries[0].record.event, AuditEvent::Applied);
    let report = store.audit_verify().await.unwrap();
    assert_eq!(report.entries, 6);
    assert!(report.is_intact(), "{report}");
}

#[tokio::test]
async fn audit_is_append_only() {
    let (_dir, store) = store_with_audit(3).await;
    for sql in [
        "UPDATE audit SET actor = 'x' WHERE seq = 1",
        "DELETE FROM audit WHERE seq = 3",
        "DELETE FROM audit_head",
        "UPDATE audit_head SET seq = 1",
    ] {
        let err = sqlx::query(sql).execute(store.pool()).await.expect_err(sql);
        assert!(err.to_string().contains("audit"), "{err}");
    }
    assert!(store.audit_verify().await.unwrap().is_intact());
}

const DROP_TRIGGERS: &str = "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; \
                             DROP TRIGGER audit_head_no_delete; \
                             DROP TRIGGER audit_head_forward_only";

#[tokio::test]
async fn audit_verify_detects_a_changed_entry() {
    for sql in [
        "UPDATE audit SET actor = 'mallory' WHERE seq = 3",
        "UPDATE audit SET after = '{\"enabled\":false}' WHERE seq = 3",
        "UPDATE audit SET person = NULL WHERE seq = 3",
        "UPDATE audit SET at = '2020-01-01T00:00:00Z' WHERE seq = 3",
        "UPDATE audit SET hash = prev_hash WHERE seq = 3",
        "UPDATE audit SET prev_hash = hash WHERE seq = 3",
        "UPDATE audit SET reasons = '[]' WHERE seq = 3",
    ] {
        let (_dir, store) = store_with_audit(5).await;
        raw(&store, DROP_TRIGGERS).await;
        sqlx::query(sql).execute(store.pool()).await.unwrap();
        assert_eq!(
            problems(&store).await,
            [(3, AuditProblemKind::Changed)],
            "{sql}"
        );
    }
}

#[tokio::test]
async fn audit_verify_detects_removed_entries() {
    let (_dir, store) = store_with_audit(5).await;
    raw(&store, DROP_TRIGGERS).await;
    raw(&store, "DELETE FROM audit WHERE seq = 3").await;
    assert_eq!(problems(&store).await, [(3, AuditProblemKind::Removed)]);

    let (_dir, store) = store_with_audit(5).await;
    raw(&store, DROP_TRIGGERS).await;
    raw(&store, "DELETE FROM audit WHERE seq = 5").await;
    assert_eq!(problems(&store).await, [(5, AuditProblemKind::Removed)]);

    let (_dir, store) = store_with_audit(5).await;
    raw(&store, DROP_TRIGGERS).await;
    raw(&store, "DELETE FROM audit WHERE seq >= 4").await;
    assert_eq!(problems(&store).await, [(4, AuditProblemKind::Removed)]);

    // Cutting the end and moving the head back is caught by the next entry's absence only
    // if something remains to compare: the head is the witness, so removing it is a problem.
    let (_dir, store) = store_with_audit(5).await;
    raw(&store, DROP_TRIGGERS).await;
    raw(&store, "DELETE FROM audit_head").await;
    assert_eq!(problems(&store).await, [(5, AuditProblemKind::Removed)]);
}

#[tokio::test]
async fn audit_verify_detects_swapped_entries() {
    let (_dir, store) = store_with_audit(5).await;
    raw(&store, DROP_TRIGGERS).await;
    raw(
        &store,
        "UPDATE audit SET seq = -2 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 4; \
         UPDATE audit SET seq = 4 WHERE seq = -2",
    )
    .await;
    assert_eq!(
        problems(&store).await,
        [
            (2, AuditProblemKind::Reordered),
            (4, AuditProblemKind::Reordered)
        ]
    );
}

#[tokio::test]
async fn audit_filters_by_person_target_and_date() {
    let (_dir, store) = store_with_audit(9).await;
    let seqs = |entries: Vec<koppel_store::AuditEntry>| -> Vec<u64> {
        entries.into_iter().map(|e| e.seq).collect()
    };
    let f = |person: Option<&str>, target: Option<&str>, from: Option<&str>, to: Option<&str>| {
        AuditFilter {
            person: person.map(str::to_owned),
            target: target.map(str::to_owned),
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            limit: None,
        }
    };
    // person = P{i % 3}, target ad for even i, at = 2026-03-0i.
    assert_eq!(
        seqs(store.audit(&f(Some("P1"), None, None, None)).await.unwrap()),
        [1, 4, 7]
    );
    assert_eq!(
        seqs(store.audit(&f(None, Some("ad"), None, None)).await.unwrap()),
        [2, 4, 6, 8]
    );
    assert_eq!(
        seqs(
            store
                .audit(&f(Some("P1"), Some("ad"), None, None))
                .await
                .unwrap()
        ),
        [4]
    );
    // Date prefixes, both bounds inclusive.
    assert_eq!(
        seqs(
            store
                .audit(&f(None, None, Some("2026-03-03"), Some("2026-03-05")))
                .await
                .unwrap()
        ),
        [3, 4, 5]
    );
    assert_eq!(
        seqs(
            store
                .audit(&f(None, None, Some("2026-03-04T10:00:00Z"), None))
                .await
                .unwrap()
        ),
        [4, 5, 6, 7, 8, 9]
    );
    assert_eq!(
        seqs(
            store
                .audit(&f(None, None, None, Some("2026-03")))
                .await
                .unwrap()
        )
        .len(),
        9
    );
    assert!(
        store
            .audit(&f(None, None, None, Some("2026-02")))
            .await
            .unwrap()
            .is_empty()
    );
    // A limit keeps the most recent, in order.
    let mut limited = f(None, Some("ad"), None, None);
    limited.limit = Some(2);
    assert_eq!(seqs(store.audit(&limited).await.unwrap()), [6, 8]);
}

#[tokio::test]
async fn outcomes_append_audit_in_the_same_transaction() {
    let (_dir, store) = store_with_audit(2).await;
    let c = create("ad", "P1", &[], true);
    store.journal_intents("p", &[(1, &c)]).await.unwrap();
    let rec = audit_record("2026-04-01T00:00:00Z", "ad", "P1", &c);
    // Refused outcome: no audit record either.
    assert!(
        store
            .journal_outcomes(
                "p",
                &[Outcome {
                    seq: 2,
                    action: c.clone(),
                    result: Ok(None)
                }],
                d("2026-04-01"),
                std::slice::from_ref(&rec)
            )
            .await
            .is_err()
    );
    assert_eq!(store.audit(&AuditFilter::default()).await.unwrap().len(), 2);
    store
        .journal_outcomes(
            "p",
            &[Outcome {
                seq: 1,
                action: c.clone(),
                result: Ok(None),
            }],
            d("2026-04-01"),
            &[rec.clone(), rec],
        )
        .await
        .unwrap();
    let entries = store.audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert!(store.audit_verify().await.unwrap().is_intact());
}

#[tokio::test]
async fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("koppel.db");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    let s = snapshot(3);
    store.save_snapshot(&s).await.unwrap();
    let p = plan("p", "2026-03-01T00:00:00Z", PlanStatus::Held);
    store.save_plan(&p).await.unwrap();
    let c = create("ad", "P1", &[("mail", "m")], true);
    store
        .journal_intents("p", &[(1, &c), (2, &c)])
        .await
        .unwrap();
    store
        .journal_outcomes(
            "p",
            &[Outcome {
                seq: 1,
                action: c.clone(),
                result: Ok(Some("r1".into())),
            }],
            d("2026-03-01"),
            &[audit_record("2026-03-01T00:00:00Z", "ad", "P1", &c)],
        )
        .await
        .unwrap();
    let known = store.known_state().await.unwrap();
    let audit = store.audit(&AuditFilter::default()).await.unwrap();
    store.close().await;
    drop(store);

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.previous_snapshot().await.unwrap(), Some(s));
    assert_eq!(store.plan("p").await.unwrap(), Some(p));
    assert_eq!(store.known_state().await.unwrap(), known);
    assert_eq!(known.account("ad", "P1").unwrap().reference, "r1");
    assert_eq!(store.state_version().await.unwrap(), 1);
    assert_eq!(store.open_intents().await.unwrap().len(), 1);
    assert_eq!(store.audit(&AuditFilter::default()).await.unwrap(), audit);
    assert!(store.audit_verify().await.unwrap().is_intact());
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn a_store_from_a_newer_koppel_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("koppel.db");
    let store = SqliteStore::open(&path).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9999, 'from the future', true, x'00', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    store.close().await;
    drop(store);
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::TooNew {
                found: 9999,
                known: 2,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("schema version 9999"), "{msg}");
    assert!(msg.contains("knows up to 2"), "{msg}");
}

#[tokio::test]
async fn an_unopenable_path_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("koppel.db");
    let err = SqliteStore::open(&path).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("cannot open store at "), "{msg}");
    assert!(msg.contains("missing-dir"), "{msg}");
}

#[tokio::test]
async fn known_state_reads_many_ranges() {
    // More accounts than one read range, over several targets and with odd values.
    let (_dir, store) = store().await;
    let mut known = KnownState::default();
    for t in ["a", "b:c", "ĳ"] {
        let target = known.targets.entry(t.to_owned()).or_default();
        for i in 0..20_000 {
            let mut acc = koppel_core::KnownAccount {
                reference: if i % 7 == 0 {
                    String::new()
                } else {
                    format!("ref:{i};")
                },
                enabled: i % 3 != 0,
                disabled_on: (i % 3 == 0).then(|| d("2026-01-31")),
                ..Default::default()
            };
            acc.attributes
                .insert("mail".into(), format!("{i}@x.nl").into());
            if i % 5 == 0 {
                acc.permissions.insert(format!("g{i}"));
            }
            target.accounts.insert(format!("P{i}"), acc);
        }
        target
            .released
            .entry("mail".into())
            .or_default()
            .insert("old@x.nl".into(), d("2025-12-01"));
    }
    known.targets.insert("empty".into(), Default::default());
    store.import_known_state(&known).await.unwrap();
    assert_eq!(store.known_state().await.unwrap(), known);
}
