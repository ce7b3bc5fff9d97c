//! Planner behaviour end to end in the pure core: joiners, movers, leavers, generators,
//! guards, exclusion and the design invariants (determinism, apply-then-plan is empty).

use std::collections::BTreeMap;

use koppel_core::config::{self, CompiledConfig};
use koppel_core::plan::{ActionKind, Origin};
use koppel_core::{
    Contract, Date, Department, KnownState, LiveValues, NamingConvention, Person, PersonName, Plan,
    PlanInput, Snapshot, plan,
};

const CONFIG: &str = r#"
version = 1

[settings]
required_fields = ["name.family"]

[guards]
removed = "20%"

[[targets]]
name = "ad"
kind = "directory"
correlation = "employee_id"
lifecycle = { create_days_before = 14, disable_grace_days = 0, delete_after_days = 30 }

[targets.attributes]
employee_id = "person.external_id"
display_name = "display_name(person)"
department = "contract.department.name"
title = { value = "contract.title.name" }
first_title = { value = "contract.title.name", on_create_only = true }

[targets.generators.username]
candidates = [
  "ascii(lower(compact(person.name.given.substring(0, 1) + person.name.family_prefix + person.name.family)))",
  "ascii(lower(compact(person.name.given + person.name.family_prefix + person.name.family)))",
]
fields = { username = "value" }
max_iterations = 5
release_retention_days = 100

[targets.generators.mail]
candidates = ["ascii(lower(compact(person.name.given) + '.' + compact(family_name(person))))"]
fields = { mail = "value + '@example.org'" }
regenerate = "on_change"

[[targets]]
name = "plek"
kind = "scim"
lifecycle = { disable_grace_days = 5 }

[targets.attributes]
user_name = "accounts.ad.mail"
name = "display_name(person)"

[[rules]]
id = "staff"
accounts = ["ad"]
permissions = [
  { target = "ad", group = "all-staff" },
  { target = "ad", dynamic = "'dept-' + lower(contract.department.code)" },
]

[[rules]]
id = "intranet"
contract_condition = "contract.employment_type != 'Extern'"
accounts = ["plek"]

[[rules]]
id = "finance"
contract_condition = "in_department_tree('FIN')"
permissions = [{ target = "ad", group = "finance-app" }]
"#;

fn d(s: &str) -> Date {
    s.parse().unwrap()
}

fn cfg() -> CompiledConfig {
    match config::load(CONFIG, "test.toml") {
        Ok(c) => c,
        Err(e) => panic!(
            "{}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

fn person(id: &str, given: &str, prefix: &str, family: &str, contracts: Vec<Contract>) -> Person {
    Person {
        external_id: id.into(),
        name: PersonName {
            given: given.into(),
            family_prefix: prefix.into(),
            family: family.into(),
            ..Default::default()
        },
        contracts,
        ..Default::default()
    }
}

fn contract(id: &str, start: &str, end: Option<&str>, dept: &str) -> Contract {
    let mut c = Contract::new(id, d(start), end.map(d));
    c.department = dept.into();
    c.title.name = "Adviseur".into();
    c.employment_type = "Vast".into();
    c.fte = Some(1.0);
    c
}

fn departments() -> BTreeMap<String, Department> {
    [
        ("ORG", "", "Organisatie"),
        ("FIN", "ORG", "Financiën"),
        ("FIN-AP", "FIN", "Crediteuren"),
        ("HR", "ORG", "HR"),
    ]
    .into_iter()
    .map(|(c, p, n)| {
        (
            c.to_owned(),
            Department {
                code: c.into(),
                name: n.into(),
                parent: p.into(),
                manager: String::new(),
            },
        )
    })
    .collect()
}

fn snapshot(persons: Vec<Person>) -> Snapshot {
    let mut s = Snapshot {
        persons,
        departments: departments(),
    };
    s.normalize();
    s
}

fn run(
    cfg: &CompiledConfig,
    s: &Snapshot,
    previous: Option<&Snapshot>,
    known: &KnownState,
    now: &str,
) -> Plan {
    plan(&PlanInput {
        config: cfg,
        snapshot: s,
        previous,
        known,
        live: &LiveValues::default(),
        now: d(now),
    })
}

fn apply(known: &mut KnownState, p: &Plan) {
    assert!(p.held.is_empty(), "plan is held: {:?}", p.held);
    for a in &p.actions {
        known.record(a, p.now);
    }
}

/// Plans and records the plan as applied.
fn step(
    cfg: &CompiledConfig,
    s: &Snapshot,
    previous: Option<&Snapshot>,
    known: &mut KnownState,
    now: &str,
) -> Plan {
    let p = run(cfg, s, previous, known, now);
    apply(known, &p);
    p
}

fn kinds(p: &Plan, target: &str, person: &str) -> Vec<(ActionKind, Option<String>)> {
    p.actions
        .iter()
        .filter(|a| a.target == target && a.person == person)
        .map(|a| (a.kind, a.permission.clone()))
        .collect()
}

fn attr<'a>(known: &'a KnownState, target: &str, person: &str, name: &str) -> Option<&'a str> {
    known
        .account(target, person)?
        .attributes
        .get(name)?
        .as_str()
}

#[test]
fn same_input_same_plan_byte_for_byte_whatever_the_source_order() {
    let cfg = cfg();
    let persons = vec![
        person(
            "2",
            "Jan",
            "de",
            "Vries",
            vec![contract("c2", "2026-01-01", None, "FIN-AP")],
        ),
        person(
            "1",
            "Jan",
            "de",
            "Vries",
            vec![contract("c1", "2026-01-01", None, "HR")],
        ),
        person(
            "3",
            "Anna",
            "",
            "Çelik",
            vec![
                contract("c3b", "2026-01-01", None, "HR"),
                contract("c3a", "2025-01-01", None, "FIN"),
            ],
        ),
    ];
    let mut reversed = persons.clone();
    reversed.reverse();
    let a = serde_json::to_string(&run(
        &cfg,
        &snapshot(persons),
        None,
        &KnownState::default(),
        "2026-06-01",
    ))
    .unwrap();
    let b = serde_json::to_string(&run(
        &cfg,
        &snapshot(reversed),
        None,
        &KnownState::default(),
        "2026-06-01",
    ))
    .unwrap();
    assert_eq!(a, b);
    assert!(a.contains("\"kind\":\"create\""));
}

#[test]
fn joiner_is_pre_boarded_disabled_then_enabled_on_the_start_date() {
    let cfg = cfg();
    let s = snapshot(vec![person(
        "1",
        "Zoë",
        "van der",
        "Berg",
        vec![contract("c1", "2026-06-10", None, "HR")],
    )]);
    let mut known = KnownState::default();

    // 20 days ahead: outside the 14-day window, nothing yet.
    assert!(run(&cfg, &s, None, &known, "2026-05-21").is_empty());

    let p = run(&cfg, &s, None, &known, "2026-06-01");
    let create = p
        .actions
        .iter()
        .find(|a| a.target == "ad" && a.kind == ActionKind::Create)
        .unwrap();
    assert_eq!(create.enabled, Some(false));
    assert!(
        create
            .reasons
            .iter()
            .any(|r| r.origin == Origin::PreBoarding && r.date == Some(d("2026-06-10")))
    );
    assert!(
        create
            .reasons
            .iter()
            .any(|r| r.origin == Origin::RuleMatched
                && r.rules == ["staff"]
                && r.contracts == ["c1"])
    );
    assert_eq!(create.attributes["username"].as_str(), Some("zvanderberg"));
    assert_eq!(
        create.correlation.as_ref().map(|c| c.0.as_str()),
        Some("employee_id")
    );
    // Groups come with the account, ready for day one.
    assert_eq!(
        kinds(&p, "ad", "1"),
        vec![
            (ActionKind::Create, None),
            (ActionKind::Grant, Some("all-staff".into())),
            (ActionKind::Grant, Some("dept-hr".into())),
        ]
    );
    // plek has no pre-boarding window: no account yet.
    assert!(kinds(&p, "plek", "1").is_empty());
    apply(&mut known, &p);
    assert!(
        run(&cfg, &s, None, &known, "2026-06-05").is_empty(),
        "nothing changes while waiting"
    );

    let p = run(&cfg, &s, None, &known, "2026-06-10");
    assert_eq!(kinds(&p, "ad", "1"), vec![(ActionKind::Enable, None)]);
    assert_eq!(kinds(&p, "plek", "1"), vec![(ActionKind::Create, None)]);
    let plek = p.actions.iter().find(|a| a.target == "plek").unwrap();
    assert_eq!(
        plek.attributes["user_name"].as_str(),
        Some("zoe.vanderberg@example.org"),
        "plek reads the mail ad got"
    );
    apply(&mut known, &p);
    assert!(
        run(&cfg, &s, None, &known, "2026-06-10").is_empty(),
        "apply then plan is empty"
    );
}

#[test]
fn mover_updates_attributes_and_swaps_department_groups() {
    let cfg = cfg();
    let before = snapshot(vec![person(
        "1",
        "Piet",
        "",
        "Jansen",
        vec![contract("c1", "2025-01-01", None, "HR")],
    )]);
    let mut known = KnownState::default();
    step(&cfg, &before, None, &mut known, "2026-01-01");

    let mut moved = before.persons[0].clone();
    moved.contracts[0].department = "FIN-AP".into();
    moved.contracts[0].title.name = "Senior adviseur".into();
    let after = snapshot(vec![moved]);
    let p = run(&cfg, &after, Some(&before), &known, "2026-02-01");
    let upd = p
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::Update && a.target == "ad")
        .unwrap();
    assert_eq!(upd.changes["department"].to.as_str(), Some("Crediteuren"));
    assert_eq!(upd.changes["department"].from.as_str(), Some("HR"));
    assert_eq!(upd.changes["title"].to.as_str(), Some("Senior adviseur"));
    assert!(
        !upd.changes.contains_key("first_title"),
        "only-on-create attributes never change"
    );
    assert!(!upd.changes.contains_key("username"));
    let r = &upd.reasons[0];
    assert_eq!(r.origin, Origin::PersonUpdated);
    assert_eq!(r.fields, ["contracts.c1.department", "contracts.c1.title"]);
    let ad = kinds(&p, "ad", "1");
    assert!(ad.contains(&(ActionKind::Grant, Some("dept-fin-ap".into()))));
    assert!(
        ad.contains(&(ActionKind::Grant, Some("finance-app".into()))),
        "FIN-AP is below FIN"
    );
    assert!(ad.contains(&(ActionKind::Revoke, Some("dept-hr".into()))));
    let revoke = p
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::Revoke)
        .unwrap();
    assert_eq!(revoke.reasons[0].origin, Origin::RemovedFromRule);
    apply(&mut known, &p);
    assert!(run(&cfg, &after, Some(&after), &known, "2026-02-01").is_empty());
}

#[test]
fn marriage_renews_mail_keeps_username() {
    let cfg = cfg();
    let mut p0 = person(
        "1",
        "Eva",
        "",
        "Jansen",
        vec![contract("c1", "2025-01-01", None, "HR")],
    );
    let s0 = snapshot(vec![p0.clone()]);
    let mut known = KnownState::default();
    step(&cfg, &s0, None, &mut known, "2026-01-01");
    assert_eq!(
        attr(&known, "ad", "1", "mail"),
        Some("eva.jansen@example.org")
    );

    p0.name.partner_prefix = "de".into();
    p0.name.partner = "Vries".into();
    p0.name.convention = NamingConvention::BP;
    let s1 = snapshot(vec![p0]);
    let p = run(&cfg, &s1, Some(&s0), &known, "2026-02-01");
    let upd = p
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::Update && a.target == "ad")
        .unwrap();
    assert_eq!(
        upd.changes["display_name"].to.as_str(),
        Some("Eva Jansen-de Vries")
    );
    assert_eq!(
        upd.changes["mail"].to.as_str(),
        Some("eva.jansendevries@example.org")
    );
    assert!(!upd.changes.contains_key("username"));
    assert!(upd.reasons.iter().any(|r| r.origin == Origin::Regenerated));
    // plek follows the new address through accounts.ad.mail.
    let plek = p
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::Update && a.target == "plek")
        .unwrap();
    assert_eq!(
        plek.changes["user_name"].to.as_str(),
        Some("eva.jansendevries@example.org")
    );
    apply(&mut known, &p);
    assert_eq!(attr(&known, "ad", "1", "username"), Some("ejansen"));
    assert!(run(&cfg, &s1, Some(&s1), &known, "2026-02-01").is_empty());
}

#[test]
fn leaver_is_disabled_with_groups_revoked_then_deleted_and_username_held_back() {
    let cfg = cfg();
    let s0 = snapshot(vec![person(
        "1",
        "Jan",
        "de",
        "Vries",
        vec![contract("c1", "2025-01-01", Some("2026-03-31"), "HR")],
    )]);
    let mut known = KnownState::default();
    step(&cfg, &s0, None, &mut known, "2026-01-01");
    assert!(
        run(&cfg, &s0, None, &known, "2026-03-31").is_empty(),
        "the end date itself is still active"
    );

    let p = run(&cfg, &s0, None, &known, "2026-04-01");
    let ad = kinds(&p, "ad", "1");
    assert_eq!(
        ad,
        vec![
            (ActionKind::Revoke, Some("all-staff".into())),
            (ActionKind::Revoke, Some("dept-hr".into())),
            (ActionKind::Disable, None),
        ]
    );
    let dis = p
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::Disable && a.target == "ad")
        .unwrap();
    assert_eq!(dis.reasons[0].origin, Origin::ContractEnded);
    assert_eq!(dis.reasons[0].contracts, ["c1"]);
    // plek has 5 days of grace.
    assert!(kinds(&p, "plek", "1").is_empty());
    apply(&mut known, &p);
    let p = run(&cfg, &s0, None, &known, "2026-04-06");
    assert_eq!(kinds(&p, "plek", "1"), vec![(ActionKind::Disable, None)]);
    apply(&mut known, &p);

    // 30 days after the disable: deleted, the username released.
    assert!(run(&cfg, &s0, None, &known, "2026-04-30").is_empty());
    let p = run(&cfg, &s0, None, &known, "2026-05-01");
    let del = p
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::Delete)
        .unwrap();
    assert_eq!(del.reasons[0].origin, Origin::RetentionExpired);
    assert_eq!(del.released["username"], "jdevries");
    apply(&mut known, &p);
    assert!(known.account("ad", "1").is_none());

    // Another Jan de Vries joins within the retention: he does not get jdevries.
    let s1 = snapshot(vec![
        s0.persons[0].clone(),
        person(
            "2",
            "Jan",
            "de",
            "Vries",
            vec![contract("c2", "2026-05-01", None, "HR")],
        ),
    ]);
    let p = run(&cfg, &s1, None, &known, "2026-05-02");
    let c = p
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::Create && a.person == "2" && a.target == "ad")
        .unwrap();
    assert_eq!(c.attributes["username"].as_str(), Some("jandevries"));
    // After the retention it is free again.
    let p = run(&cfg, &s1, None, &known, "2026-08-10");
    let c = p
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::Create && a.person == "2" && a.target == "ad")
        .unwrap();
    assert_eq!(c.attributes["username"].as_str(), Some("jdevries"));
}

#[test]
fn rehire_while_the_account_exists_re_enables_it() {
    let cfg = cfg();
    let mut jan = person(
        "1",
        "Jan",
        "",
        "Smit",
        vec![contract("c1", "2025-01-01", Some("2026-01-31"), "HR")],
    );
    let mut known = KnownState::default();
    let s0 = snapshot(vec![jan.clone()]);
    step(&cfg, &s0, None, &mut known, "2026-01-15");
    step(&cfg, &s0, None, &mut known, "2026-02-01");
    assert!(!known.account("ad", "1").unwrap().enabled);
    jan.contracts
        .push(contract("c2", "2026-02-15", None, "FIN"));
    let s1 = snapshot(vec![jan]);
    let p = run(&cfg, &s1, Some(&s0), &known, "2026-02-15");
    let ad = kinds(&p, "ad", "1");
    assert!(ad.contains(&(ActionKind::Enable, None)));
    assert!(
        !ad.iter().any(|k| k.0 == ActionKind::Create),
        "the existing account is reused"
    );
    assert!(ad.contains(&(ActionKind::Grant, Some("dept-fin".into()))));
}

#[test]
fn two_contracts_give_both_department_groups() {
    let cfg = cfg();
    let s = snapshot(vec![person(
        "1",
        "Kübra",
        "",
        "Öztürk",
        vec![
            contract("a", "2025-01-01", None, "HR"),
            contract("b", "2025-06-01", None, "FIN-AP"),
        ],
    )]);
    let p = run(&cfg, &s, None, &KnownState::default(), "2026-01-01");
    let grants: Vec<_> = kinds(&p, "ad", "1")
        .into_iter()
        .filter_map(|k| k.1)
        .collect();
    assert_eq!(
        grants,
        ["all-staff", "dept-fin-ap", "dept-hr", "finance-app"]
    );
    let create = &p.actions[0];
    assert_eq!(create.attributes["username"].as_str(), Some("kozturk"));
}

#[test]
fn name_collisions_get_candidates_then_numbers_in_person_order() {
    let cfg = cfg();
    let jans: Vec<Person> = (1..=4)
        .map(|i| {
            person(
                &format!("p{i}"),
                "Jan",
                "de",
                "Vries",
                vec![contract(&format!("c{i}"), "2025-01-01", None, "HR")],
            )
        })
        .collect();
    let p = run(
        &cfg,
        &snapshot(jans),
        None,
        &KnownState::default(),
        "2026-01-01",
    );
    let names: Vec<&str> = p
        .actions
        .iter()
        .filter(|a| a.kind == ActionKind::Create && a.target == "ad")
        .map(|a| a.attributes["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["jdevries", "jandevries", "jdevries2", "jdevries3"]);
    let mails: Vec<&str> = p
        .actions
        .iter()
        .filter(|a| a.kind == ActionKind::Create && a.target == "ad")
        .map(|a| a.attributes["mail"].as_str().unwrap())
        .collect();
    assert_eq!(mails[1], "jan.devries2@example.org");
}

#[test]
fn generators_skip_values_the_live_target_holds_except_the_persons_own() {
    let cfg = cfg();
    let jan = |id: &str| {
        person(
            id,
            "Jan",
            "de",
            "Vries",
            vec![contract(&format!("c{id}"), "2025-01-01", None, "HR")],
        )
    };
    let mut live = LiveValues::new();
    // Someone outside koppel has the first candidate, in another case.
    live.insert("ad", "username", "JDeVries", Some("manual-account"));
    // Person 2's own account, not yet known to koppel: adopted, so its values are theirs.
    live.insert("ad", "username", "jandevries", Some("2"));
    live.insert("ad", "mail", "jan.devries@example.org", None);
    let p = plan(&PlanInput {
        config: &cfg,
        snapshot: &snapshot(vec![jan("1"), jan("2")]),
        previous: None,
        known: &KnownState::default(),
        live: &live,
        now: d("2026-01-01"),
    });
    let created: Vec<(&str, &str, &str)> = p
        .actions
        .iter()
        .filter(|a| a.kind == ActionKind::Create && a.target == "ad")
        .map(|a| {
            (
                a.person.as_str(),
                a.attributes["username"].as_str().unwrap(),
                a.attributes["mail"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        created,
        [
            // jdevries is live, jandevries is person 2's: person 1 gets a number.
            ("1", "jdevries2", "jan.devries2@example.org"),
            ("2", "jandevries", "jan.devries3@example.org"),
        ]
    );
    // Without the live values, the same people get the first candidates.
    let offline = run(
        &cfg,
        &snapshot(vec![jan("1"), jan("2")]),
        None,
        &KnownState::default(),
        "2026-01-01",
    );
    let first = offline
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::Create && a.target == "ad")
        .unwrap();
    assert_eq!(first.attributes["username"].as_str(), Some("jdevries"));
}

#[test]
fn generator_exhaustion_holds_the_account_and_says_so() {
    let cfg = cfg();
    let jans: Vec<Person> = (1..=8)
        .map(|i| {
            person(
                &format!("p{i}"),
                "Jan",
                "de",
                "Vries",
                vec![contract(&format!("c{i}"), "2025-01-01", None, "HR")],
            )
        })
        .collect();
    let p = run(
        &cfg,
        &snapshot(jans),
        None,
        &KnownState::default(),
        "2026-01-01",
    );
    // 2 candidates + iterations 2..=5 = 6 usernames for 8 people.
    let creates = p
        .actions
        .iter()
        .filter(|a| a.kind == ActionKind::Create && a.target == "ad")
        .count();
    assert_eq!(creates, 6);
    let exhausted: Vec<_> = p
        .diagnostics
        .iter()
        .filter(|d| d.code == "generator_exhausted")
        .collect();
    assert_eq!(exhausted.len(), 2);
    assert!(exhausted[0].message.contains("max_iterations"));
}

#[test]
fn excluded_persons_keep_what_they_have() {
    let cfg = cfg();
    let mut p1 = person(
        "1",
        "Jan",
        "",
        "Smit",
        vec![contract("c1", "2025-01-01", None, "HR")],
    );
    let mut known = KnownState::default();
    step(
        &cfg,
        &snapshot(vec![p1.clone()]),
        None,
        &mut known,
        "2026-01-01",
    );
    p1.excluded = true;
    p1.contracts[0].end = Some(d("2026-01-31"));
    p1.contracts[0].department = "FIN".into();
    assert!(
        run(
            &cfg,
            &snapshot(vec![p1.clone()]),
            None,
            &known,
            "2026-03-01"
        )
        .is_empty()
    );
    // Included again: the pending work happens.
    p1.excluded = false;
    let p = run(&cfg, &snapshot(vec![p1]), None, &known, "2026-03-01");
    assert!(kinds(&p, "ad", "1").contains(&(ActionKind::Disable, None)));
}

#[test]
fn blocked_person_is_reported_and_untouched() {
    let cfg = cfg();
    let mut p1 = person(
        "1",
        "Jan",
        "",
        "Smit",
        vec![contract("c1", "2025-01-01", None, "HR")],
    );
    let mut known = KnownState::default();
    step(
        &cfg,
        &snapshot(vec![p1.clone()]),
        None,
        &mut known,
        "2026-01-01",
    );
    p1.name.family.clear();
    p1.contracts[0].end = Some(d("2026-01-31"));
    let p = run(&cfg, &snapshot(vec![p1]), None, &known, "2026-03-01");
    assert!(p.is_empty());
    assert_eq!(p.blocked.len(), 1);
    assert_eq!(p.blocked[0].missing, ["name.family"]);
}

#[test]
fn a_source_that_lost_most_people_is_held() {
    let cfg = cfg();
    let all: Vec<Person> = (0..10)
        .map(|i| {
            person(
                &format!("p{i}"),
                "A",
                "",
                &format!("B{i}"),
                vec![contract(&format!("c{i}"), "2025-01-01", None, "HR")],
            )
        })
        .collect();
    let s0 = snapshot(all.clone());
    let mut known = KnownState::default();
    step(&cfg, &s0, None, &mut known, "2026-01-01");
    let s1 = snapshot(all[..5].to_vec());
    let p = run(&cfg, &s1, Some(&s0), &known, "2026-01-02");
    assert_eq!(p.held.len(), 1);
    assert_eq!(p.held[0].guard, "removed");
    assert_eq!(p.held[0].count, 5);
    assert_eq!(p.held[0].allowed, 2);
    // Still planned, so the admin sees what would happen.
    assert!(
        p.actions
            .iter()
            .any(|a| a.kind == ActionKind::Disable && a.reasons[0].origin == Origin::PersonRemoved)
    );
    // Two people gone is within 20%.
    let s2 = snapshot(all[..8].to_vec());
    assert!(
        run(&cfg, &s2, Some(&s0), &known, "2026-01-02")
            .held
            .is_empty()
    );
}

#[test]
fn an_expression_failing_for_one_person_holds_only_that_person() {
    let text = CONFIG.replace(
        "contract_condition = \"in_department_tree('FIN')\"",
        "condition = \"person.custom.cost_code == 'X'\"",
    );
    let cfg = config::load(&text, "t.toml")
        .map_err(|e| e[0].to_string())
        .unwrap();
    let mut ok = person(
        "1",
        "Jan",
        "",
        "Smit",
        vec![contract("c1", "2025-01-01", None, "HR")],
    );
    ok.custom.insert("cost_code".into(), "X".into());
    let broken = person(
        "2",
        "Piet",
        "",
        "Bakker",
        vec![contract("c2", "2025-01-01", None, "HR")],
    );
    let p = run(
        &cfg,
        &snapshot(vec![ok, broken]),
        None,
        &KnownState::default(),
        "2026-01-01",
    );
    assert!(kinds(&p, "ad", "1").contains(&(ActionKind::Grant, Some("finance-app".into()))));
    assert!(
        kinds(&p, "ad", "2").is_empty(),
        "held in the target the failing rule touches"
    );
    let diags: Vec<_> = p
        .diagnostics
        .iter()
        .filter(|d| d.person.as_deref() == Some("2"))
        .collect();
    assert!(
        diags
            .iter()
            .any(|d| d.code == "rule_evaluation" && d.message.contains("finance")),
        "{diags:?}"
    );
    // plek maps accounts.ad.mail, which ad did not produce for this person: held as well.
    assert!(kinds(&p, "plek", "2").is_empty());
    assert!(
        diags
            .iter()
            .any(|d| d.code == "mapping_evaluation" && d.message.contains("plek")),
        "{diags:?}"
    );
    assert_eq!(
        kinds(&p, "plek", "1"),
        vec![(ActionKind::Create, None)],
        "everyone else goes on"
    );
}

#[test]
fn person_gone_from_the_source_is_disabled() {
    let cfg = cfg();
    let s0 = snapshot(vec![person(
        "1",
        "Jan",
        "",
        "Smit",
        vec![contract("c1", "2025-01-01", None, "HR")],
    )]);
    let mut known = KnownState::default();
    step(&cfg, &s0, None, &mut known, "2026-01-01");
    let p = run(&cfg, &snapshot(vec![]), None, &known, "2026-01-02");
    let dis: Vec<_> = p
        .actions
        .iter()
        .filter(|a| a.kind == ActionKind::Disable)
        .collect();
    assert_eq!(dis.len(), 2);
    assert!(
        dis.iter()
            .all(|a| a.reasons[0].origin == Origin::PersonRemoved)
    );
}

#[test]
fn actions_are_ordered_creates_before_grants_and_revokes_before_disables() {
    let cfg = cfg();
    let s = snapshot(vec![
        person(
            "1",
            "Jan",
            "",
            "Smit",
            vec![contract("c1", "2025-01-01", None, "HR")],
        ),
        person(
            "2",
            "Eva",
            "",
            "Bos",
            vec![contract("c2", "2025-01-01", None, "FIN")],
        ),
    ]);
    let p = run(&cfg, &s, None, &KnownState::default(), "2026-01-01");
    let ad: Vec<ActionKind> = p
        .actions
        .iter()
        .filter(|a| a.target == "ad")
        .map(|a| a.kind)
        .collect();
    let mut sorted = ad.clone();
    sorted.sort();
    assert_eq!(ad, sorted);
    let first_plek = p.actions.iter().position(|a| a.target == "plek").unwrap();
    assert!(
        p.actions[..first_plek].iter().all(|a| a.target == "ad"),
        "ad before plek: plek reads ad's data"
    );
}

#[test]
fn grace_keeps_an_account_but_never_creates_one_for_a_leaver() {
    let cfg = cfg();
    // Left yesterday; plek has 5 days of grace, ad none.
    let s = snapshot(vec![person(
        "1",
        "Jan",
        "",
        "Smit",
        vec![contract("c1", "2025-01-01", Some("2026-01-31"), "HR")],
    )]);
    let p = run(&cfg, &s, None, &KnownState::default(), "2026-02-01");
    assert!(p.is_empty(), "{:?}", p.actions);
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    // With accounts already there, plek keeps its own (reading ad's stored mail) while ad is disabled.
    let mut known = KnownState::default();
    step(&cfg, &s, None, &mut known, "2026-01-15");
    let p = run(&cfg, &s, None, &known, "2026-02-01");
    assert!(kinds(&p, "ad", "1").contains(&(ActionKind::Disable, None)));
    assert!(kinds(&p, "plek", "1").is_empty(), "{:?}", p.actions);
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
}

#[test]
fn thresholds_name_the_kind_and_target_over_the_limit() {
    let text = CONFIG.replace(
        "lifecycle = { create_days_before = 14, disable_grace_days = 0, delete_after_days = 30 }",
        "lifecycle = { create_days_before = 14, disable_grace_days = 0, delete_after_days = 30 }\nthresholds = { disable = \"25%\", revoke = 100 }",
    );
    let cfg = config::load(&text, "t.toml")
        .map_err(|e| e[0].to_string())
        .unwrap();
    let all: Vec<Person> = (0..8)
        .map(|i| {
            person(
                &format!("p{i}"),
                "A",
                "",
                &format!("B{i}"),
                vec![contract(
                    &format!("c{i}"),
                    "2025-01-01",
                    Some("2026-03-31"),
                    "HR",
                )],
            )
        })
        .collect();
    let s = snapshot(all);
    let mut known = KnownState::default();
    step(&cfg, &s, None, &mut known, "2026-01-01");
    let p = run(&cfg, &s, None, &known, "2026-04-01");
    let b = koppel_core::threshold::check(&cfg, &p, &known);
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(
        (
            b[0].target.as_str(),
            b[0].kind,
            b[0].count,
            b[0].managed,
            b[0].allowed
        ),
        ("ad", ActionKind::Disable, 8, 8, 2)
    );
    assert!(b[0].to_string().contains("8 disable actions"));
}

#[test]
fn plan_order_is_total_with_persons_gone_from_the_source_in_between() {
    let cfg = cfg();
    let all: Vec<Person> = ["a", "c", "e", "b", "d"]
        .iter()
        .map(|id| {
            person(
                id,
                "Jan",
                "",
                &format!("Smit{id}"),
                vec![contract(&format!("c-{id}"), "2025-01-01", None, "HR")],
            )
        })
        .collect();
    let mut known = KnownState::default();
    step(&cfg, &snapshot(all.clone()), None, &mut known, "2026-01-01");
    // b and d leave the source, a and e move: revokes of gone and staying persons interleave.
    let mut staying: Vec<Person> = all
        .into_iter()
        .filter(|p| p.external_id != "b" && p.external_id != "d")
        .collect();
    for p in &mut staying {
        if p.external_id != "c" {
            p.contracts[0].department = "FIN".into();
        }
    }
    let p = run(&cfg, &snapshot(staying), None, &known, "2026-02-01");
    let order: BTreeMap<&str, usize> = [("ad", 0), ("plek", 1)].into_iter().collect();
    let keys: Vec<_> = p
        .actions
        .iter()
        .map(|a| {
            (
                order[a.target.as_str()],
                a.kind,
                a.person.clone(),
                a.permission.clone(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    let revokers: Vec<&str> = p
        .actions
        .iter()
        .filter(|a| a.kind == ActionKind::Revoke && a.permission.as_deref() == Some("dept-hr"))
        .map(|a| a.person.as_str())
        .collect();
    assert_eq!(revokers, ["a", "b", "d", "e"]);
}
