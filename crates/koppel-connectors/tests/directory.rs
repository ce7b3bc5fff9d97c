//! The built-in directory target: the shared conformance suite, its own guarantees (separate
//! targets in one file, deterministic references, schema versioning) and its speed.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use koppel_connectors::conformance::{self, Fixture};
use koppel_connectors::directory::{DirectoryTarget, SCHEMA_STEPS};
use koppel_connectors::target::{CreateRequest, Created, Done, Op, Target, TargetError};
use koppel_core::AttrValue;
use koppel_store::SqliteStore;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// A pool on a fresh SQLite file, set up as an embedded store would be.
async fn pool(path: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10));
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .expect("open the test database")
}

/// A directory target in a fresh koppel store, sharing its file and pool as in production.
async fn fresh(name: &str) -> (tempfile::TempDir, DirectoryTarget) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("koppel.db"))
        .await
        .expect("open the store");
    let target = DirectoryTarget::new(name, store.pool().clone())
        .await
        .expect("directory");
    (dir, target)
}

fn request(person: &str, mail: &str) -> CreateRequest {
    CreateRequest {
        person: person.to_owned(),
        attributes: BTreeMap::from([
            ("employeeId".to_owned(), AttrValue::from(person)),
            ("mail".to_owned(), AttrValue::from(mail)),
        ]),
        enabled: true,
        correlation: Some(("employeeId".to_owned(), AttrValue::from(person))),
    }
}

#[tokio::test]
async fn passes_the_conformance_suite() {
    let (_dir, target) = fresh("directory").await;
    match conformance::run_all(&target, &Fixture::generic("conf")).await {
        Ok(passed) => assert_eq!(passed.len(), conformance::CHECKS.len()),
        Err(failures) => panic!("{failures}"),
    }
}

#[tokio::test]
async fn passes_the_conformance_suite_twice_on_the_same_data() {
    // The second run meets the first run's groups (and would meet leftovers): checks must
    // start from accounts they create themselves.
    let (_dir, target) = fresh("directory").await;
    let fixture = Fixture::generic("conf");
    for run in 1..=2 {
        if let Err(failures) = conformance::run_all(&target, &fixture).await {
            panic!("run {run}: {failures}");
        }
    }
}

#[tokio::test]
async fn two_targets_in_one_file_stay_separate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = pool(&dir.path().join("koppel.db")).await;
    let a = DirectoryTarget::new("staff", pool.clone())
        .await
        .expect("a");
    let b = DirectoryTarget::new("students", pool.clone())
        .await
        .expect("b");

    // The same person and correlation value in both: two accounts, same reference.
    let req = request("1001", "jan@example.org");
    assert_eq!(a.create(&req).await, Ok(Created::New("1001".to_owned())));
    assert_eq!(b.create(&req).await, Ok(Created::New("1001".to_owned())));
    a.grant("1001", "teachers").await.expect("grant a");
    b.set_enabled("1001", false).await.expect("disable b");
    a.create(&request("1002", "piet@example.org"))
        .await
        .expect("create");

    assert_eq!(a.list_accounts().await.expect("list a").len(), 2);
    let in_b = b.list_accounts().await.expect("list b");
    assert_eq!(in_b.len(), 1);
    assert!(in_b[0].permissions.is_empty());
    assert!(!in_b[0].enabled);
    assert!(a.get("1001").await.expect("get").expect("exists").enabled);
    assert_eq!(a.list_permissions().await.expect("perms a"), ["teachers"]);
    assert!(b.list_permissions().await.expect("perms b").is_empty());
    assert_eq!(b.get("1002").await, Ok(None));
    assert!(matches!(
        b.grant("1002", "teachers").await,
        Err(TargetError::NoSuchAccount { .. })
    ));
    // Uniqueness and correlation are per target.
    assert!(
        !a.is_unique("mail", "PIET@example.org", None)
            .await
            .expect("u")
    );
    assert!(
        b.is_unique("mail", "PIET@example.org", None)
            .await
            .expect("u")
    );
    assert!(
        b.correlate("employeeId", &AttrValue::from("1002"))
            .await
            .expect("correlate")
            .is_none()
    );
    // Deleting in one leaves the other alone, memberships included.
    a.delete("1001").await.expect("delete");
    assert!(b.get("1001").await.expect("get").is_some());
    assert_eq!(a.list_accounts().await.expect("list a").len(), 1);
}

#[tokio::test]
async fn references_are_the_person_id_then_numbered() {
    let (_dir, target) = fresh("directory").await;
    let mut req = request("E42", "a@example.org");
    req.correlation = None;
    let mut refs = Vec::new();
    for _ in 0..3 {
        refs.push(
            target
                .create(&req)
                .await
                .expect("create")
                .reference()
                .to_owned(),
        );
    }
    assert_eq!(refs, ["E42", "E42-2", "E42-3"]);
    // A freed reference is handed out again, lowest first: the outcome depends only on what
    // exists, so a resumed run ends like a clean one.
    target.delete("E42-2").await.expect("delete");
    assert_eq!(
        target.create(&req).await.expect("create").reference(),
        "E42-2"
    );
    // A person whose id collides with a numbered reference still gets a free one.
    let mut other = request("E42-3", "b@example.org");
    other.correlation = None;
    assert_eq!(
        target.create(&other).await.expect("create").reference(),
        "E42-3-2"
    );
}

#[tokio::test]
async fn the_same_batch_on_two_fresh_stores_gives_the_same_references() {
    let ops: Vec<Op> = (0..50)
        .flat_map(|i| {
            let person = format!("P{}", i % 20);
            let mut req = request(&person, &format!("{person}@example.org"));
            if i % 3 == 0 {
                req.correlation = None;
            }
            [
                Op::Create(req),
                Op::Grant {
                    reference: person,
                    permission: format!("g{}", i % 4),
                },
            ]
        })
        .collect();
    let (_d1, one) = fresh("t").await;
    let (_d2, two) = fresh("t").await;
    let first = one.apply(&ops).await;
    let second = two.apply(&ops).await;
    assert_eq!(first, second);
    assert_eq!(
        one.list_accounts().await.expect("list"),
        two.list_accounts().await.expect("list")
    );
}

#[tokio::test]
async fn a_batch_sees_its_own_earlier_operations() {
    let (_dir, target) = fresh("directory").await;
    target
        .create(&request("old", "old@example.org"))
        .await
        .expect("create");
    target.grant("old", "g1").await.expect("grant");
    let ops = vec![
        Op::Create(request("n1", "n1@example.org")),
        Op::Grant {
            reference: "n1".to_owned(),
            permission: "new-group".to_owned(),
        },
        Op::Update {
            reference: "n1".to_owned(),
            changes: BTreeMap::from([("mail".to_owned(), AttrValue::from("N1@Example.org"))]),
        },
        // Correlates with the account made two ops ago.
        Op::Create(request("n1", "n1@example.org")),
        Op::Delete {
            reference: "old".to_owned(),
        },
        Op::Grant {
            reference: "old".to_owned(),
            permission: "g1".to_owned(),
        },
        // The freed reference is taken again by a new account without old memberships.
        Op::Create(request("old", "old2@example.org")),
        Op::Revoke {
            reference: "n1".to_owned(),
            permission: "missing-group".to_owned(),
        },
    ];
    let results = target.apply(&ops).await;
    assert_eq!(results[0], Ok(Done::Created(Created::New("n1".to_owned()))));
    assert_eq!(results[1], Ok(Done::Ok));
    assert_eq!(results[2], Ok(Done::Ok));
    assert_eq!(
        results[3],
        Ok(Done::Created(Created::Adopted("n1".to_owned())))
    );
    assert_eq!(results[4], Ok(Done::Ok));
    assert!(matches!(
        results[5],
        Err(TargetError::NoSuchAccount { ref reference, .. }) if reference == "old"
    ));
    assert_eq!(
        results[6],
        Ok(Done::Created(Created::New("old".to_owned())))
    );
    assert_eq!(results[7], Ok(Done::Ok));

    let n1 = target.get("n1").await.expect("get").expect("n1");
    // Adoption set mail back to the requested value.
    assert_eq!(
        n1.attributes.get("mail"),
        Some(&AttrValue::from("n1@example.org"))
    );
    assert!(n1.permissions.contains("new-group"));
    let old = target.get("old").await.expect("get").expect("old");
    assert!(old.permissions.is_empty());
    assert_eq!(
        old.attributes.get("mail"),
        Some(&AttrValue::from("old2@example.org"))
    );
    assert!(
        !target
            .is_unique("mail", "OLD2@example.org", None)
            .await
            .expect("u")
    );
    assert!(
        target
            .is_unique("mail", "old@example.org", None)
            .await
            .expect("u")
    );
    assert_eq!(
        target.list_permissions().await.expect("perms"),
        ["g1", "new-group"]
    );
}

#[tokio::test]
async fn values_of_every_shape_round_trip_and_lists_are_searchable() {
    let (_dir, target) = fresh("directory").await;
    let attributes = BTreeMap::from([
        (
            "text".to_owned(),
            AttrValue::from("Ĳsbrand Müller \"quoted\" 'x'"),
        ),
        ("int".to_owned(), AttrValue::Int(-42)),
        ("bool".to_owned(), AttrValue::Bool(true)),
        (
            "aliases".to_owned(),
            AttrValue::List(vec!["A@Example.org".to_owned(), "b@example.org".to_owned()]),
        ),
        ("empty".to_owned(), AttrValue::from("")),
        ("none".to_owned(), AttrValue::Null),
        (
            "'; DROP TABLE dir_accounts; --".to_owned(),
            AttrValue::from("x"),
        ),
    ]);
    let req = CreateRequest {
        person: "p'1".to_owned(),
        attributes: attributes.clone(),
        enabled: true,
        correlation: Some(("int".to_owned(), AttrValue::Int(-42))),
    };
    let reference = target.create(&req).await.expect("create");
    assert_eq!(reference, Created::New("p'1".to_owned()));
    let account = target.get("p'1").await.expect("get").expect("exists");
    let mut expected = attributes;
    expected.remove("empty");
    expected.remove("none");
    assert_eq!(account.attributes, expected);
    assert!(
        !target
            .is_unique("aliases", "a@example.ORG", None)
            .await
            .expect("u")
    );
    assert!(
        !target
            .is_unique("text", "ĳsbrand müller \"quoted\" 'x'", None)
            .await
            .expect("u")
    );
    assert!(!target.is_unique("int", "-42", None).await.expect("u"));
    assert_eq!(
        target.create(&req).await.expect("again"),
        Created::Adopted("p'1".to_owned())
    );
    // A correlation value that cannot identify one account is refused, not guessed.
    let mut list = req.clone();
    list.correlation = Some(("aliases".to_owned(), AttrValue::List(vec![])));
    assert!(matches!(
        target.create(&list).await,
        Err(TargetError::Rejected { .. })
    ));
}

#[tokio::test]
async fn ambiguous_correlation_is_rejected() {
    let (_dir, target) = fresh("directory").await;
    let mut req = request("dup", "dup@example.org");
    req.correlation = None;
    target.create(&req).await.expect("one");
    target.create(&req).await.expect("two");
    req.correlation = Some(("employeeId".to_owned(), AttrValue::from("DUP")));
    let err = target.create(&req).await.expect_err("ambiguous");
    assert!(
        matches!(&err, TargetError::Rejected { message, .. } if message.contains("dup, dup-2")),
        "{err}"
    );
    assert!(matches!(
        target
            .correlate("employeeId", &AttrValue::from("dup"))
            .await,
        Err(TargetError::Rejected { .. })
    ));
    assert_eq!(target.list_accounts().await.expect("list").len(), 2);
}

#[tokio::test]
async fn schema_is_created_once_and_a_newer_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("koppel.db");
    {
        let pool = pool(&path).await;
        let t = DirectoryTarget::new("d", pool.clone())
            .await
            .expect("first");
        t.create(&request("1", "1@example.org"))
            .await
            .expect("create");
        pool.close().await;
    }
    let pool = pool(&path).await;
    let t = DirectoryTarget::new("d", pool.clone())
        .await
        .expect("reopen");
    assert!(
        t.get("1").await.expect("get").is_some(),
        "data survives reopening"
    );
    let version: i64 = sqlx::query_scalar("SELECT version FROM dir_schema")
        .fetch_one(&pool)
        .await
        .expect("version");
    assert_eq!(version, SCHEMA_STEPS.len() as i64);
    assert_eq!(version, DirectoryTarget::schema_version());

    sqlx::query("UPDATE dir_schema SET version = version + 1")
        .execute(&pool)
        .await
        .expect("bump");
    let err = DirectoryTarget::new("d", pool).await.expect_err("newer");
    assert!(matches!(err, TargetError::Config { .. }), "{err}");
    assert!(err.to_string().contains("upgrade koppel"), "{err}");
}

#[tokio::test]
async fn lives_beside_the_store_and_survives_reopening_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("koppel.db");
    {
        let store = SqliteStore::open(&path).await.expect("store");
        let target = DirectoryTarget::new("d", store.pool().clone())
            .await
            .expect("directory");
        target
            .create(&request("1", "1@example.org"))
            .await
            .expect("create");
        store.pool().close().await;
    }
    // The store's migrator must not mind the dir_ tables, nor the directory the store's.
    let store = SqliteStore::open(&path).await.expect("reopen the store");
    let target = DirectoryTarget::new("d", store.pool().clone())
        .await
        .expect("reopen the directory");
    assert!(target.get("1").await.expect("get").is_some());
}

#[tokio::test]
async fn an_empty_name_is_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = pool(&dir.path().join("koppel.db")).await;
    assert!(matches!(
        DirectoryTarget::new(" ", pool).await,
        Err(TargetError::Config { .. })
    ));
}

/// Creates with twelve attributes and grants, as an initial load sends them.
fn mixed_batch(first_person: usize, count: usize) -> Vec<Op> {
    let fixture = Fixture::generic("bench");
    let mut ops = Vec::with_capacity(count);
    let mut i = first_person;
    while ops.len() < count {
        let person = format!("P{i:06}");
        let mut r = (fixture.request)(i as u32);
        r.person.clone_from(&person);
        r.attributes
            .insert("employeeId".to_owned(), AttrValue::from(person.as_str()));
        r.correlation = Some(("employeeId".to_owned(), AttrValue::from(person.as_str())));
        ops.push(Op::Create(r));
        for g in 0..2 {
            if ops.len() < count {
                ops.push(Op::Grant {
                    reference: person.clone(),
                    permission: format!("dept-{}-{g}", i % 40),
                });
            }
        }
        i += 1;
    }
    ops
}

/// Updates, disables and revokes on accounts that exist, as a daily run sends them.
fn daily_batch(people: usize, count: usize, round: usize) -> Vec<Op> {
    (0..count)
        .map(|k| {
            let person = format!("P{:06}", (k * 7 + round * 13) % people);
            match k % 4 {
                0 | 1 => Op::Update {
                    reference: person,
                    changes: BTreeMap::from([
                        (
                            "title".to_owned(),
                            AttrValue::from(format!("Functie {round}")),
                        ),
                        ("location".to_owned(), AttrValue::Null),
                    ]),
                },
                2 => Op::SetEnabled {
                    reference: person,
                    enabled: round.is_multiple_of(2),
                },
                _ => Op::Revoke {
                    reference: person,
                    permission: format!("dept-{}-0", k % 40),
                },
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "speed figures: cargo test --release -p koppel-connectors -- --ignored --nocapture"]
async fn speed_of_batches() {
    let (_dir, target) = fresh("directory").await;
    const BATCH: usize = 1_000;
    const BATCHES: usize = 20;
    let mut load = Vec::new();
    let mut people = 0;
    for _ in 0..BATCHES {
        let ops = mixed_batch(people, BATCH);
        people += ops.iter().filter(|o| matches!(o, Op::Create(_))).count();
        let started = Instant::now();
        let results = target.apply(&ops).await;
        load.push(started.elapsed());
        assert!(results.iter().all(Result::is_ok), "all ops succeed");
    }
    // The same creates again: every one adopts.
    let started = Instant::now();
    let results = target.apply(&mixed_batch(0, BATCH)).await;
    let readopt = started.elapsed();
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(Done::Created(Created::Adopted(_))) | Ok(Done::Ok)))
    );
    let mut daily = Vec::new();
    for round in 0..10 {
        let ops = daily_batch(people, BATCH, round);
        let started = Instant::now();
        let results = target.apply(&ops).await;
        daily.push(started.elapsed());
        assert!(results.iter().all(Result::is_ok));
    }
    let started = Instant::now();
    let accounts = target.list_accounts().await.expect("list");
    let list = started.elapsed();
    assert_eq!(accounts.len(), people);

    let single_n: u32 = 200;
    let started = Instant::now();
    for k in 0..single_n {
        let person = format!("P{:06}", k * 5);
        target
            .set_enabled(&person, k.is_multiple_of(2))
            .await
            .expect("single");
    }
    let single = started.elapsed() / single_n;
    // The first lookup by mail indexes it for every existing account; time it apart.
    let started = Instant::now();
    target
        .is_unique("mail", "nobody@bench.example", None)
        .await
        .expect("index mail");
    let index_mail = started.elapsed();
    let started = Instant::now();
    for k in 0..single_n {
        let mail = format!("anna{k}.devries@bench.example");
        let _ = target.is_unique("mail", &mail, None).await.expect("unique");
    }
    let unique = started.elapsed() / single_n;

    let describe = |name: &str, times: &[Duration]| {
        let mut sorted = times.to_vec();
        sorted.sort();
        let median = sorted[sorted.len() / 2];
        let worst = sorted[sorted.len() - 1];
        println!(
            "{name}: {} batches of {BATCH} ops, median {:.1} ms ({:.0} ops/s), worst {:.1} ms",
            times.len(),
            median.as_secs_f64() * 1e3,
            BATCH as f64 / median.as_secs_f64(),
            worst.as_secs_f64() * 1e3,
        );
    };
    println!(
        "directory target speed ({people} accounts of 12 attributes at the end, in a koppel store: WAL, synchronous=NORMAL)"
    );
    describe(
        "initial load (1 create with 12 attributes + 2 grants, repeated)",
        &load,
    );
    println!(
        "re-create of 1,000 ops on existing accounts (adopt): {:.1} ms",
        readopt.as_secs_f64() * 1e3
    );
    describe("daily (updates, disables, revokes)", &daily);
    println!(
        "list_accounts of {people}: {:.1} ms; single set_enabled: {:.0} µs; indexing mail \
         for {people}: {:.1} ms; is_unique: {:.0} µs",
        list.as_secs_f64() * 1e3,
        single.as_secs_f64() * 1e6,
        index_mail.as_secs_f64() * 1e3,
        unique.as_secs_f64() * 1e6
    );
}

#[tokio::test]
async fn index_keys_follow_updates_and_deletes() {
    let (_dir, target) = fresh("directory").await;
    // Index mail before any account exists, so every later write has to maintain it.
    assert!(
        target
            .is_unique("mail", "x@example.org", None)
            .await
            .expect("u")
    );
    target
        .create(&request("1", "Old@Example.org"))
        .await
        .expect("create");
    assert!(
        !target
            .is_unique("mail", "old@example.org", None)
            .await
            .expect("u")
    );
    let change = |v: AttrValue| BTreeMap::from([("mail".to_owned(), v)]);
    target
        .update("1", &change(AttrValue::from("New@Example.org")))
        .await
        .expect("update");
    assert!(
        target
            .is_unique("mail", "old@example.org", None)
            .await
            .expect("u")
    );
    assert!(
        !target
            .is_unique("mail", "NEW@example.org", None)
            .await
            .expect("u")
    );
    // A list value is found by each element.
    target
        .update(
            "1",
            &change(AttrValue::List(vec![
                "a@x.nl".to_owned(),
                "B@x.nl".to_owned(),
            ])),
        )
        .await
        .expect("update");
    assert!(!target.is_unique("mail", "b@X.NL", None).await.expect("u"));
    assert!(
        target
            .is_unique("mail", "new@example.org", None)
            .await
            .expect("u")
    );
    target
        .update("1", &change(AttrValue::Null))
        .await
        .expect("clear");
    assert!(target.is_unique("mail", "a@x.nl", None).await.expect("u"));
    // Correlation by the new value adopts; after delete nothing is found.
    target
        .update("1", &change(AttrValue::from("back@x.nl")))
        .await
        .expect("update");
    let mut by_mail = request("other", "back@x.nl");
    by_mail.correlation = Some(("mail".to_owned(), AttrValue::from("BACK@x.nl")));
    assert_eq!(
        target.create(&by_mail).await,
        Ok(Created::Adopted("1".to_owned()))
    );
    target.delete("1").await.expect("delete");
    assert!(
        target
            .is_unique("mail", "back@x.nl", None)
            .await
            .expect("u")
    );
    assert_eq!(
        target
            .correlate("mail", &AttrValue::from("back@x.nl"))
            .await
            .expect("correlate"),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_on_one_target_do_not_collide() {
    let (_dir, target) = fresh("directory").await;
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            // Every worker creates the same people without correlation: each gets its own
            // account, and no two accounts may share a reference.
            let ops: Vec<Op> = (0..50)
                .map(|i| {
                    let mut req = request(&format!("P{i}"), &format!("p{i}.{worker}@x.nl"));
                    req.correlation = None;
                    Op::Create(req)
                })
                .collect();
            target.apply(&ops).await
        }));
    }
    let mut references = std::collections::BTreeSet::new();
    for task in tasks {
        for result in task.await.expect("task") {
            let Ok(Done::Created(created)) = result else {
                panic!("create failed: {result:?}");
            };
            assert!(references.insert(created.reference().to_owned()));
        }
    }
    assert_eq!(references.len(), 200);
    assert_eq!(target.list_accounts().await.expect("list").len(), 200);
}

#[tokio::test]
async fn a_resumed_batch_ends_like_a_clean_one() {
    let ops: Vec<Op> = (0..40)
        .flat_map(|i| {
            let person = format!("E{}", i % 30);
            [
                Op::Create(request(&person, &format!("{person}@x.nl"))),
                Op::Grant {
                    reference: person.clone(),
                    permission: format!("g{}", i % 3),
                },
                Op::SetEnabled {
                    reference: person,
                    enabled: i % 4 != 0,
                },
            ]
        })
        .collect();
    let (_d1, clean) = fresh("t").await;
    clean.apply(&ops).await;
    for cut in [1, 7, 50, 119] {
        let (_d2, resumed) = fresh("t").await;
        // The first run died after `cut` operations were committed; the next run sends all.
        resumed.apply(&ops[..cut]).await;
        resumed.apply(&ops).await;
        assert_eq!(
            resumed.list_accounts().await.expect("list"),
            clean.list_accounts().await.expect("list"),
            "resumed after {cut} ops"
        );
    }
}

/// A directory target with one deliberate fault, to show the conformance suite notices.
struct Faulty {
    inner: DirectoryTarget,
    fault: Fault,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Fault {
    /// Ignores the correlation on create.
    NeverAdopts,
    /// Succeeds on update of a missing account.
    QuietOnMissing,
    /// Compares case-sensitively in is_unique.
    CaseSensitiveUnique,
    /// Update replaces all attributes by the changes.
    UpdateReplacesAll,
    /// Revoke does nothing.
    RevokeIgnored,
}

#[async_trait::async_trait]
impl Target for Faulty {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn correlate(
        &self,
        attribute: &str,
        value: &AttrValue,
    ) -> Result<Option<koppel_connectors::target::TargetAccount>, TargetError> {
        self.inner.correlate(attribute, value).await
    }
    async fn get(
        &self,
        reference: &str,
    ) -> Result<Option<koppel_connectors::target::TargetAccount>, TargetError> {
        self.inner.get(reference).await
    }
    async fn create(&self, request: &CreateRequest) -> Result<Created, TargetError> {
        let mut request = request.clone();
        if self.fault == Fault::NeverAdopts {
            request.correlation = None;
        }
        self.inner.create(&request).await
    }
    async fn update(
        &self,
        reference: &str,
        changes: &BTreeMap<String, AttrValue>,
    ) -> Result<(), TargetError> {
        match self.fault {
            Fault::QuietOnMissing if self.inner.get(reference).await?.is_none() => Ok(()),
            Fault::UpdateReplacesAll => {
                let Some(account) = self.inner.get(reference).await? else {
                    return self.inner.update(reference, changes).await;
                };
                let mut all: BTreeMap<String, AttrValue> = account
                    .attributes
                    .keys()
                    .map(|k| (k.clone(), AttrValue::Null))
                    .collect();
                all.extend(changes.clone());
                self.inner.update(reference, &all).await
            }
            _ => self.inner.update(reference, changes).await,
        }
    }
    async fn set_enabled(&self, reference: &str, enabled: bool) -> Result<(), TargetError> {
        self.inner.set_enabled(reference, enabled).await
    }
    async fn delete(&self, reference: &str) -> Result<(), TargetError> {
        self.inner.delete(reference).await
    }
    async fn grant(&self, reference: &str, permission: &str) -> Result<(), TargetError> {
        self.inner.grant(reference, permission).await
    }
    async fn revoke(&self, reference: &str, permission: &str) -> Result<(), TargetError> {
        if self.fault == Fault::RevokeIgnored {
            return Ok(());
        }
        self.inner.revoke(reference, permission).await
    }
    async fn list_accounts(
        &self,
    ) -> Result<Vec<koppel_connectors::target::TargetAccount>, TargetError> {
        self.inner.list_accounts().await
    }
    async fn list_permissions(&self) -> Result<Vec<String>, TargetError> {
        self.inner.list_permissions().await
    }
    async fn is_unique(
        &self,
        attribute: &str,
        value: &str,
        except: Option<&str>,
    ) -> Result<bool, TargetError> {
        if self.fault == Fault::CaseSensitiveUnique {
            let taken = self.inner.list_accounts().await?.into_iter().any(|a| {
                Some(a.reference.as_str()) != except
                    && a.attributes.get(attribute) == Some(&AttrValue::from(value))
            });
            return Ok(!taken);
        }
        self.inner.is_unique(attribute, value, except).await
    }
    // `apply` stays the trait's default: one call per op, so the faults show in batches too.
}

#[tokio::test]
async fn the_conformance_suite_catches_broken_targets() {
    let cases = [
        (Fault::NeverAdopts, "create_is_idempotent"),
        (
            Fault::QuietOnMissing,
            "missing_reference_is_no_such_account",
        ),
        (
            Fault::CaseSensitiveUnique,
            "is_unique_is_case_insensitive_and_honours_except",
        ),
        (
            Fault::UpdateReplacesAll,
            "update_changes_only_given_attributes",
        ),
        (Fault::RevokeIgnored, "revoke_removes"),
    ];
    for (fault, check) in cases {
        let (_dir, inner) = fresh("faulty").await;
        let target = Faulty { inner, fault };
        let failures = conformance::run_all(&target, &Fixture::generic("conf"))
            .await
            .expect_err("a faulty target must fail");
        assert!(
            failures.failed.iter().any(|f| f.check == check),
            "{fault:?} should fail {check}; got {failures}"
        );
    }
}
