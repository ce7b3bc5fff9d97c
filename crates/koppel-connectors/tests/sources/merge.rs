//! Merging several sources by person external id.

use koppel_connectors::{Fetched, merge};
use koppel_core::{Contract, Department, Diagnostic, NamingConvention, Person, Snapshot};

use super::{codes, d};

fn person(id: &str, given: &str, email: &str, contracts: &[&str]) -> Person {
    let mut p = Person {
        external_id: id.into(),
        email: email.into(),
        ..Person::default()
    };
    p.name.given = given.into();
    p.contracts = contracts
        .iter()
        .map(|c| Contract::new(*c, d("2026-01-01"), None))
        .collect();
    p
}

fn fetched(persons: Vec<Person>, departments: &[(&str, &str, &str)]) -> Fetched {
    Fetched {
        snapshot: Snapshot {
            persons,
            departments: departments
                .iter()
                .map(|(code, name, parent)| {
                    let dept = Department {
                        code: (*code).into(),
                        name: (*name).into(),
                        parent: (*parent).into(),
                        ..Department::default()
                    };
                    (dept.code.clone(), dept)
                })
                .collect(),
        },
        diagnostics: vec![],
    }
}

#[test]
fn a_person_in_two_sources_is_one_person_with_all_contracts() {
    let mut hr = person("1", "Anne", "", &["c1"]);
    hr.custom.insert("grade".into(), "10".into());
    hr.custom.insert("room".into(), String::new());
    let mut first = fetched(
        vec![hr, person("2", "Piet", "", &["c2"])],
        &[("A", "Alpha", "")],
    );
    first
        .diagnostics
        .push(Diagnostic::warning("from_first", "kept"));

    let mut extra = person("1", "Anna", "anne@example.nl", &["c3", "c1"]);
    extra.name.convention = NamingConvention::BP;
    extra.excluded = true;
    extra.custom.insert("grade".into(), "11".into());
    extra.custom.insert("room".into(), "2.14".into());
    let second = fetched(
        vec![extra, person("3", "Kees", "", &[])],
        &[("A", "Other name", "ROOT"), ("B", "Beta", "A")],
    );

    let m = merge(vec![first, second]);
    let ids: Vec<_> = m
        .snapshot
        .persons
        .iter()
        .map(|p| p.external_id.as_str())
        .collect();
    assert_eq!(ids, ["1", "2", "3"]);

    let anne = m.snapshot.person("1").unwrap();
    assert_eq!(
        anne.name.given, "Anne",
        "the first source's non-empty value wins"
    );
    assert_eq!(
        anne.email, "anne@example.nl",
        "an empty field is filled by a later source"
    );
    assert_eq!(
        anne.name.convention,
        NamingConvention::BP,
        "first non-default convention"
    );
    assert!(anne.excluded, "excluded anywhere is excluded");
    assert_eq!(anne.custom["grade"], "10");
    assert_eq!(anne.custom["room"], "2.14");
    let contracts: Vec<_> = anne.contracts.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        contracts,
        ["c1", "c3"],
        "concatenated, the duplicate c1 dropped, sorted"
    );

    assert_eq!(codes(&m), ["from_first", "duplicate_contract"]);
    assert_eq!(m.diagnostics[1].person.as_deref(), Some("1"));
    assert!(m.diagnostics[1].message.contains("\"c1\" from source #2"));

    let a = &m.snapshot.departments["A"];
    assert_eq!((a.name.as_str(), a.parent.as_str()), ("Alpha", "ROOT"));
    assert_eq!(m.snapshot.departments["B"].name, "Beta");
}

#[test]
fn merging_one_source_changes_nothing_and_none_gives_an_empty_snapshot() {
    let mut one = fetched(
        vec![
            person("2", "Piet", "", &["b", "a"]),
            person("1", "Anne", "", &[]),
        ],
        &[],
    );
    let merged = merge(vec![one.clone()]);
    one.snapshot.normalize();
    assert_eq!(merged, one);
    assert_eq!(merge(vec![]), Fetched::default());
}
