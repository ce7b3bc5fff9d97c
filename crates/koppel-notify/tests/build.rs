//! Building notifications is pure: from a stored plan, the actions' statuses, the HR data and
//! the configuration to e-mails. These tests pin who is told what, and when nobody is.

use std::collections::BTreeMap;
use std::path::Path;

use koppel_core::guard::GuardBreach;
use koppel_core::plan::{Action, ActionKind, Origin, Reason};
use koppel_core::threshold::ThresholdBreach;
use koppel_core::{
    AttrValue, Contract, Date, Department, KnownAccount, KnownState, Person, PersonName, Plan,
    Snapshot,
};
use koppel_notify::{AccountInfo, Event, Mail, Notifier, NotifyError, Secret, Sources, Status};
use koppel_store::{PlanStatus, StoredPlan};

fn d(s: &str) -> Date {
    s.parse().unwrap()
}

const NOW: &str = "2026-11-23";

fn person(id: &str, given: &str, family: &str, email: &str, contracts: Vec<Contract>) -> Person {
    Person {
        external_id: id.into(),
        name: PersonName {
            given: given.into(),
            family: family.into(),
            ..PersonName::default()
        },
        email: email.into(),
        contracts,
        ..Person::default()
    }
}

fn contract(id: &str, start: &str, end: Option<&str>, dept: &str, manager: &str) -> Contract {
    let mut c = Contract::new(id, d(start), end.map(d));
    c.department = dept.into();
    c.manager = manager.into();
    c.title.name = "Adviseur".into();
    c
}

fn dept(code: &str, name: &str, parent: &str, manager: &str) -> (String, Department) {
    (
        code.into(),
        Department {
            code: code.into(),
            name: name.into(),
            parent: parent.into(),
            manager: manager.into(),
        },
    )
}

/// Kim (manager of FIN, with an address), Bas (manager of ICT, none in HR), Inês (joins FIN on
/// 1 December, no contract manager: Kim via the department), Teun (joined ICT two years ago),
/// Lotte (joins ICT, manager Bas), Sem (contract ended yesterday, manager named on it: Kim).
fn snapshot() -> Snapshot {
    let mut s = Snapshot {
        persons: vec![
            person(
                "1",
                "Kim",
                "Vos",
                "kim.vos@example.org",
                vec![contract("1-1", "2020-01-01", None, "FIN", "")],
            ),
            person(
                "2",
                "Bas",
                "Smit",
                "",
                vec![contract("2-1", "2020-01-01", None, "ICT", "")],
            ),
            person(
                "3",
                "Inês",
                "Mulder",
                "",
                vec![
                    contract("3-0", "2019-01-01", Some("2019-12-31"), "ICT", ""),
                    contract("3-1", "2026-12-01", None, "FIN-AP", ""),
                ],
            ),
            person(
                "4",
                "Teun",
                "Jansen",
                "",
                vec![contract("4-1", "2024-11-01", None, "ICT", "")],
            ),
            person(
                "5",
                "Lotte",
                "Schäfer",
                "",
                vec![contract("5-1", "2026-11-20", None, "ICT", "")],
            ),
            person(
                "6",
                "Sem",
                "de Boer",
                "",
                vec![contract(
                    "6-1",
                    "2021-03-01",
                    Some("2026-11-22"),
                    "ICT",
                    "1",
                )],
            ),
        ],
        departments: [
            dept("ORG", "Gemeente", "", ""),
            dept("FIN", "Financiën", "ORG", "1"),
            dept("FIN-AP", "Crediteuren", "FIN", ""),
            dept("ICT", "ICT", "ORG", "2"),
        ]
        .into_iter()
        .collect(),
    };
    s.normalize();
    s
}

fn create(target: &str, person: &str, contracts: &[&str], attrs: &[(&str, &str)]) -> Action {
    let mut a = Action::new(
        target,
        person,
        ActionKind::Create,
        vec![
            Reason::new(Origin::RuleMatched)
                .contracts(contracts.iter().map(|c| c.to_string()).collect()),
        ],
    );
    a.attributes = attrs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), AttrValue::Text((*v).to_owned())))
        .collect();
    a.enabled = Some(false);
    a
}

fn disable(target: &str, person: &str, origin: Origin, contracts: &[&str]) -> Action {
    Action::new(
        target,
        person,
        ActionKind::Disable,
        vec![Reason::new(origin).contracts(contracts.iter().map(|c| c.to_string()).collect())],
    )
}

fn stored(actions: Vec<Action>) -> StoredPlan {
    StoredPlan {
        id: "20261123-101500-abc123".into(),
        created_at: "2026-11-23T10:15:00.000Z".into(),
        state_version: 1,
        status: PlanStatus::Applying,
        plan: Plan {
            now: d(NOW),
            held: Vec::new(),
            population: Default::default(),
            actions,
            blocked: Vec::new(),
            diagnostics: Vec::new(),
        },
        withheld: Vec::new(),
        note: String::new(),
    }
}

const BASE: &str = r#"
from = "koppel <koppel@example.org>"
admins = ["ict@example.org", "security@example.org"]
link_base_url = "https://koppel.example.org/dashboard/"
smtp = { host = "smtp.example.org" }
"#;

fn notifier(extra: &str) -> Notifier {
    let table: toml::Table = toml::from_str(&format!("{BASE}{extra}")).unwrap();
    Notifier::from_config(&table, Path::new(".")).unwrap_or_else(|e| panic!("{e}"))
}

fn all_done(plan: &StoredPlan) -> Vec<Status> {
    vec![Status::Done; plan.plan.actions.len()]
}

fn build(
    n: &Notifier,
    plan: &StoredPlan,
    status: &[Status],
    thresholds: &[ThresholdBreach],
    known: Option<&KnownState>,
    previous: Option<&Snapshot>,
) -> (Vec<Event>, Vec<Mail>, Vec<String>) {
    let snapshot = snapshot();
    let sources = Sources {
        snapshot: &snapshot,
        previous,
        known,
        now: d(NOW),
    };
    let (events, mut diags) = n.events(plan, status, thresholds, &sources);
    let (mails, more) = n.messages(&events);
    diags.extend(more);
    let codes = diags
        .iter()
        .map(|d| format!("{} {}", d.code, d.person.clone().unwrap_or_default()))
        .collect();
    (events, mails, codes)
}

fn joiners() -> StoredPlan {
    stored(vec![
        create(
            "directory",
            "3",
            &["3-1"],
            &[("username", "imulder"), ("mail", "ines.mulder@example.org")],
        ),
        create("directory", "4", &["4-1"], &[("username", "tjansen")]),
        create("directory", "5", &["5-1"], &[("username", "lschafer")]),
        create(
            "plek",
            "3",
            &["3-1"],
            &[("userName", "ines.mulder@example.org")],
        ),
    ])
}

#[test]
fn a_joiner_tells_the_manager_the_username_and_start_date() {
    let n = notifier("");
    let plan = joiners();
    let (events, mails, diags) = build(&n, &plan, &all_done(&plan), &[], None, None);
    // Teun joined two years ago (a first run, not a joiner); Lotte's manager has no address.
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(
        diags,
        ["notify_manager_no_email 5", "notify_no_recipient 5"]
    );
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(
        m.to,
        ["kim.vos@example.org"],
        "the department's manager up the tree"
    );
    assert_eq!(m.key, "joiner/20261123-101500-abc123/run/3");
    assert_eq!(m.person.as_deref(), Some("3"));
    assert_eq!(m.subject, "New colleague: Inês Mulder starts on 2026-12-01");
    assert!(
        m.body.starts_with(
            "Hello Kim Vos,\n\nInês Mulder starts on 2026-12-01 as Adviseur in Crediteuren.\n"
        ),
        "{}",
        m.body
    );
    assert!(m.body.contains("- directory\n  username: imulder\n  e-mail:   ines.mulder@example.org\n  usable from 2026-12-01\n"), "{}", m.body);
    assert!(
        m.body
            .contains("- plek\n  username: ines.mulder@example.org\n"),
        "{}",
        m.body
    );
    assert!(!m.body.to_lowercase().contains("password:"), "{}", m.body);
    assert!(!m.sensitive);
}

#[test]
fn the_same_input_gives_the_same_mails() {
    let n = notifier("");
    let plan = joiners();
    let a = build(&n, &plan, &all_done(&plan), &[], None, None).1;
    let b = build(&n, &plan, &all_done(&plan), &[], None, None).1;
    assert_eq!(a, b);
}

#[test]
fn a_manager_without_an_address_in_hr_is_found_in_their_account_or_a_fixed_address_gets_it() {
    let mut known = KnownState::default();
    known
        .targets
        .entry("directory".into())
        .or_default()
        .accounts
        .insert(
            "2".into(),
            KnownAccount {
                reference: "2".into(),
                attributes: [(
                    "mail".to_owned(),
                    AttrValue::Text("bas.smit@example.org".into()),
                )]
                .into(),
                enabled: true,
                permissions: Default::default(),
                disabled_on: None,
                generator_inputs: BTreeMap::new(),
            },
        );
    let n = notifier("manager_email = [\"person.email\", \"account.directory.mail\"]\n");
    let plan = joiners();
    let (_, mails, diags) = build(&n, &plan, &all_done(&plan), &[], Some(&known), None);
    assert!(diags.is_empty(), "{diags:?}");
    let lotte = mails
        .iter()
        .find(|m| m.person.as_deref() == Some("5"))
        .unwrap();
    assert_eq!(lotte.to, ["bas.smit@example.org"]);

    let n =
        notifier("[joiner]\nrecipients = [\"manager\", \"hr@example.org\", \"HR@example.org\"]\n");
    let (_, mails, diags) = build(&n, &plan, &all_done(&plan), &[], None, None);
    assert_eq!(diags, ["notify_manager_no_email 5"]);
    let lotte = mails
        .iter()
        .find(|m| m.person.as_deref() == Some("5"))
        .unwrap();
    assert_eq!(lotte.to, ["hr@example.org"], "each address once");
}

#[test]
fn a_joiner_waits_until_every_account_of_the_run_is_made() {
    let n = notifier("");
    let plan = joiners();
    let mut status = all_done(&plan);
    status[3] = Status::Open; // plek was unreachable: the run resumes later
    let (events, _, _) = build(&n, &plan, &status, &[], None, None);
    assert!(
        events.iter().all(|e| e.person() != Some("3")),
        "{events:#?}"
    );
    // A refused create fails alone: the manager hears about the accounts that exist.
    status[3] = Status::Failed;
    let (_, mails, _) = build(&n, &plan, &status, &[], None, None);
    let ines = mails
        .iter()
        .find(|m| m.person.as_deref() == Some("3"))
        .unwrap();
    assert!(!ines.body.contains("- plek"), "{}", ines.body);
}

#[test]
fn a_leaver_tells_the_manager_which_accounts_were_disabled() {
    let mut known = KnownState::default();
    for (t, user) in [("directory", "sdeboer"), ("plek", "sem.deboer@example.org")] {
        known.targets.entry(t.into()).or_default().accounts.insert(
            "6".into(),
            KnownAccount {
                reference: "6".into(),
                attributes: [("username".to_owned(), AttrValue::Text(user.into()))].into(),
                enabled: true,
                permissions: Default::default(),
                disabled_on: None,
                generator_inputs: BTreeMap::new(),
            },
        );
    }
    let n = notifier("");
    let plan = stored(vec![
        disable("directory", "6", Origin::ContractEnded, &["6-1"]),
        disable("plek", "6", Origin::ContractEnded, &["6-1"]),
        // Not a leaver: a rule stopped matching.
        disable("directory", "4", Origin::RemovedFromRule, &[]),
    ]);
    let (events, mails, diags) = build(&n, &plan, &all_done(&plan), &[], Some(&known), None);
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(events.len(), 1);
    let m = &mails[0];
    assert_eq!(
        m.to,
        ["kim.vos@example.org"],
        "the manager named on the contract"
    );
    assert_eq!(
        m.subject,
        "Accounts disabled: Sem de Boer (left 2026-11-22)"
    );
    assert!(
        m.body
            .contains("Sem de Boer's contract as Adviseur in ICT ended on 2026-11-22.\n"),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("- directory: sdeboer\n- plek: sem.deboer@example.org\n"),
        "{}",
        m.body
    );
}

#[test]
fn a_person_gone_from_hr_is_found_in_the_previous_snapshot() {
    let n = notifier("");
    let mut previous = snapshot();
    previous.persons.push(person(
        "7",
        "Noor",
        "Bakker",
        "",
        vec![contract("7-1", "2022-01-01", None, "FIN", "")],
    ));
    previous.normalize();
    let plan = stored(vec![disable("directory", "7", Origin::PersonRemoved, &[])]);
    let (_, mails, diags) = build(&n, &plan, &all_done(&plan), &[], None, Some(&previous));
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(mails[0].to, ["kim.vos@example.org"]);
    assert!(
        mails[0]
            .body
            .contains("Noor Bakker is no longer in the HR system.\n"),
        "{}",
        mails[0].body
    );
    // Without it, the event cannot be told and says why.
    let (_, mails, diags) = build(&n, &plan, &all_done(&plan), &[], None, None);
    assert!(mails.is_empty());
    assert_eq!(diags, ["notify_unknown_person 7"]);
}

#[test]
fn withheld_actions_are_told_once_they_are_approved_under_their_own_key() {
    let n = notifier("");
    let mut plan = stored(vec![
        disable("directory", "6", Origin::ContractEnded, &["6-1"]),
        disable("plek", "6", Origin::ContractEnded, &["6-1"]),
    ]);
    plan.withheld = vec![("plek".into(), ActionKind::Disable)];
    let mut status = all_done(&plan);
    status[1] = Status::Open;
    let (events, _, _) = build(&n, &plan, &status, &[], None, None);
    let keys: Vec<String> = events.iter().map(Event::key).collect();
    assert_eq!(keys, ["leaver/20261123-101500-abc123/run/6"]);
    status[1] = Status::Done;
    let (events, _, _) = build(&n, &plan, &status, &[], None, None);
    let keys: Vec<String> = events.iter().map(Event::key).collect();
    assert_eq!(
        keys,
        [
            "leaver/20261123-101500-abc123/run/6",
            "leaver/20261123-101500-abc123/approved/6"
        ]
    );
}

#[test]
fn a_held_plan_tells_the_admins_the_breach_with_a_link() {
    let n = notifier("");
    let mut plan = stored(vec![
        disable("directory", "6", Origin::ContractEnded, &["6-1"]),
        disable("directory", "4", Origin::ContractEnded, &["4-1"]),
    ]);
    plan.id = "20261123-101500-a/b c".into();
    plan.plan.held = vec![GuardBreach {
        guard: "removed".into(),
        count: 40,
        base: 500,
        limit: koppel_core::config::Limit::Percent(5.0),
        allowed: 25,
    }];
    plan.withheld = vec![("directory".into(), ActionKind::Disable)];
    let (events, mails, diags) = build(&n, &plan, &[Status::Open; 2], &[], None, None);
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(events.len(), 1, "nothing applied, so no leaver yet");
    let m = &mails[0];
    assert_eq!(m.to, ["ict@example.org", "security@example.org"]);
    assert_eq!(m.key, "held/20261123-101500-a/b c");
    assert_eq!(
        m.subject,
        "koppel plan 20261123-101500-a/b c is held: approval needed"
    );
    assert!(
        m.body
            .contains("the HR data changed more than the source guards allow"),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("- 40 persons removed: 40 of 500, the limit is 5% (25 allowed)\n"),
        "{}",
        m.body
    );
    assert!(m.body.contains("- 2 disable in directory\n"), "{}", m.body);
    // The id is one path segment, percent-encoded.
    assert!(
        m.body.contains(
            "Review it: https://koppel.example.org/dashboard/plans/20261123-101500-a%2Fb%20c\n"
        ),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("`koppel apply --approve 20261123-101500-a/b c`"),
        "{}",
        m.body
    );

    // Thresholds: the breach as the threshold check words it.
    let mut plan = stored(vec![disable(
        "directory",
        "6",
        Origin::ContractEnded,
        &["6-1"],
    )]);
    plan.withheld = vec![("directory".into(), ActionKind::Disable)];
    let breach = ThresholdBreach {
        target: "directory".into(),
        kind: ActionKind::Disable,
        count: 1,
        managed: 10,
        limit: koppel_core::config::Limit::Count(0),
        allowed: 0,
    };
    let (_, mails, _) = build(&n, &plan, &[Status::Open], &[breach], None, None);
    assert!(
        mails[0].body.contains("it exceeds thresholds"),
        "{}",
        mails[0].body
    );
    assert!(mails[0].body.contains("- target directory: 1 disable actions, the threshold is 0 of 10 managed accounts (0 allowed)\n"), "{}", mails[0].body);
    // Neither held nor withheld: no mail.
    let plan = stored(Vec::new());
    assert!(build(&n, &plan, &[], &[], None, None).1.is_empty());
}

#[test]
fn events_can_be_switched_off_and_sent_to_fixed_addresses() {
    let n = notifier("[joiner]\nenabled = false\n[held]\nrecipients = [\"cio@example.org\"]\n");
    let plan = joiners();
    assert!(
        build(&n, &plan, &all_done(&plan), &[], None, None)
            .0
            .is_empty()
    );
}

#[test]
fn templates_are_checked_with_a_sample_and_name_what_is_unknown() {
    let table: toml::Table = toml::from_str(&format!(
        "{BASE}[joiner]\nbody = \"{{% for a in accounts %}}\"\n"
    ))
    .unwrap();
    let Err(NotifyError::Config(issues)) = Notifier::from_config(&table, Path::new(".")) else {
        panic!("accepted")
    };
    let text: Vec<String> = issues.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(
        text[0].starts_with("notifications.joiner.body: template error on line 1"),
        "{text:?}"
    );
    let table: toml::Table = toml::from_str(&format!(
        "{BASE}[joiner]\nsubject = \"Welcome {{{{ person.nmae }}}}\"\n"
    ))
    .unwrap();
    let Err(e) = Notifier::from_config(&table, Path::new(".")) else {
        panic!("accepted")
    };
    let e = e.to_string();
    assert!(
        e.starts_with("notifications.joiner.subject: template error on line 1"),
        "{e}"
    );
    assert!(e.contains("person.nmae"), "{e}");
}

#[test]
fn an_initial_password_is_shown_only_when_the_configuration_opts_in() {
    let body = "body = \"{% for a in accounts %}{% if a.initial_password %}{{ a.target }}: {{ a.initial_password }}\\n{% endif %}{% endfor %}\"\n";
    // Without the opt-in a template cannot even name it.
    let table: toml::Table = toml::from_str(&format!("{BASE}[joiner]\n{body}")).unwrap();
    let Err(e) = Notifier::from_config(&table, Path::new(".")) else {
        panic!("accepted")
    };
    assert!(
        e.to_string().contains("include_initial_password = true"),
        "{e}"
    );

    let with_password = |n: &Notifier| {
        let plan = joiners();
        let snapshot = snapshot();
        let sources = Sources {
            snapshot: &snapshot,
            previous: None,
            known: None,
            now: d(NOW),
        };
        let (mut events, _) = n.events(&plan, &all_done(&plan), &[], &sources);
        for e in &mut events {
            if let Event::Joiner(j) = e {
                j.accounts[0].initial_password = Some(Secret::new("Tr0ub4dor&3-horse"));
            }
        }
        assert!(
            !format!("{events:?}").contains("Tr0ub4dor"),
            "Debug never shows it"
        );
        n.messages(&events).0
    };
    // The default templates never show it, and without the opt-in no template can.
    let mails = with_password(&notifier(""));
    assert!(
        mails
            .iter()
            .all(|m| !m.body.contains("Tr0ub4dor") && !m.sensitive)
    );

    let n = notifier(&format!(
        "[joiner]\ninclude_initial_password = true\n{body}"
    ));
    let mails = with_password(&n);
    let ines = mails
        .iter()
        .find(|m| m.person.as_deref() == Some("3"))
        .unwrap();
    assert_eq!(ines.body, "directory: Tr0ub4dor&3-horse\n");
    assert!(ines.sensitive, "never stored in the outbox");
}

#[test]
fn a_line_break_from_hr_data_never_reaches_a_header() {
    let n = notifier("[held]\nsubject = \"Held {{ plan_id }}\"\n");
    let mut plan = stored(vec![disable(
        "directory",
        "6",
        Origin::ContractEnded,
        &["6-1"],
    )]);
    plan.id = "x\r\nBcc: attacker@example.org".into();
    plan.plan.held = vec![GuardBreach {
        guard: "removed".into(),
        count: 1,
        base: 1,
        limit: koppel_core::config::Limit::Count(0),
        allowed: 0,
    }];
    plan.withheld = vec![("directory".into(), ActionKind::Disable)];
    let (_, mails, _) = build(&n, &plan, &[Status::Open], &[], None, None);
    assert_eq!(mails[0].subject, "Held x Bcc: attacker@example.org");
}

#[test]
fn account_info_keeps_the_password_out_of_serialized_forms() {
    let a = AccountInfo {
        target: "ad".into(),
        username: Some("imulder".into()),
        email: None,
        enabled: false,
        attributes: BTreeMap::new(),
        initial_password: Some(Secret::new("s3cr3t-xyz")),
    };
    let json = serde_json::to_string(&a).unwrap();
    assert!(
        !json.contains("s3cr3t") && !json.contains("initial_password"),
        "{json}"
    );
    assert!(!format!("{a:?}").contains("s3cr3t"));
}
