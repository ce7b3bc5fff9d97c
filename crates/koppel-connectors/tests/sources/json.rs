//! The JSON source: koppel's own shape, HelloID's person model, and error positions.

use std::path::Path;

use koppel_connectors::load;
use koppel_core::config::SourceConfig;
use koppel_core::{Contract, Department, NamingConvention, Person, Snapshot};
use serde_json::json;

use super::{Fixture, codes, d};

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

fn helloid_fixture() -> koppel_connectors::Fetched {
    let config: SourceConfig = serde_json::from_value(json!({
        "kind": "json",
        "file": "helloid/persons.json",
        "departments_file": "helloid/departments.json",
        "shape": "helloid",
    }))
    .unwrap();
    load(&config, fixtures()).unwrap()
}

#[test]
fn helloid_persons_map_to_the_model() {
    let f = helloid_fixture();
    assert!(f.diagnostics.is_empty(), "{:?}", f.diagnostics);
    let s = &f.snapshot;
    let ids: Vec<_> = s.persons.iter().map(|p| p.external_id.as_str()).collect();
    assert_eq!(
        ids,
        ["10001", "10002", "10003", "10004"],
        "numeric ExternalId as text"
    );

    let sanne = s.person("10001").unwrap();
    let n = &sanne.name;
    assert_eq!(
        (n.given.as_str(), n.nickname.as_str(), n.initials.as_str()),
        ("Susanna", "Sanne", "S.M.")
    );
    assert_eq!(
        (n.family_prefix.as_str(), n.family.as_str()),
        ("", "Jansen")
    );
    assert_eq!(
        (n.partner_prefix.as_str(), n.partner.as_str()),
        ("de", "Vries")
    );
    assert_eq!(n.convention, NamingConvention::PB);
    assert_eq!(sanne.email, "s.devries@example.nl");
    assert_eq!(sanne.phone, "+31 30 123 4567", "fixed phone first");
    assert!(!sanne.excluded);
    // Unmapped top-level data is kept as custom fields.
    assert_eq!(sanne.custom["DisplayName"], "Sanne de Vries-Jansen");
    assert_eq!(sanne.custom["Details.BirthDate"], "1984-03-12T00:00:00");
    assert_eq!(sanne.custom["Details.HonorificPrefix"], "");
    assert_eq!(sanne.custom["BadgeNumber"], "B-0042");
    assert_eq!(sanne.custom["Pronouns"], "");
    assert!(!sanne.custom.contains_key("PrimaryContract.ExternalId"));

    let [c1, c2] = sanne.contracts.as_slice() else {
        panic!("{:?}", sanne.contracts)
    };
    assert_eq!(c1.id, "10001-1");
    assert_eq!((c1.start, c1.end), (d("2019-09-01"), None));
    assert_eq!(c1.department, "ICT");
    assert_eq!(
        (c1.title.code.as_str(), c1.title.name.as_str()),
        ("F0231", "Teamleider ICT")
    );
    assert_eq!(c1.location, "Utrecht Centrum");
    assert_eq!(c1.cost_centre, "4100");
    assert_eq!(c1.manager, "10002");
    assert_eq!(c1.employment_type, "Vast");
    assert_eq!(
        (c1.fte, c1.hours_per_week, c1.sequence),
        (Some(0.8889), Some(32.0), 1)
    );
    assert_eq!(c2.id, "10001-2");
    assert_eq!((c2.start, c2.end), (d("2025-01-01"), Some(d("2026-06-30"))));
    assert_eq!(c2.department, "PRJ");
    assert_eq!(c2.location, "", "null Location");
    assert_eq!(c2.cost_centre, "4900", "ExternalId when there is no Code");
    assert_eq!(c2.manager, "", "null Manager");
    assert_eq!(
        (c2.fte, c2.hours_per_week, c2.sequence),
        (Some(0.1111), Some(4.0), 2)
    );

    let pieter = s.person("10002").unwrap();
    assert_eq!(pieter.name.family_prefix, "van den");
    assert_eq!(pieter.name.partner, "", "null partner name");
    assert_eq!(
        pieter.phone, "+31 6 87654321",
        "mobile when there is no fixed phone"
    );
    assert_eq!(pieter.contracts[0].manager, "");
    assert_eq!(pieter.contracts[0].fte, Some(1.0));
    assert_eq!(pieter.contracts[0].sequence, 0, "null Sequence");

    let mo = s.person("10003").unwrap();
    assert!(mo.excluded, "ExcludedBySource \"true\"");
    assert_eq!(mo.name.convention, NamingConvention::B, "lower-case b");
    assert_eq!(
        mo.contracts[0].title.code, "F0777",
        "Title.ExternalId without Code"
    );
    assert_eq!(mo.contracts[0].manager, "10001");
    assert_eq!(mo.contracts[0].employment_type, "Stage");
    assert_eq!(mo.contracts[0].start, d("2026-03-01"));
    assert_eq!(mo.contracts[0].fte, None);

    let emma = s.person("10004").unwrap();
    assert_eq!(emma.name.convention, NamingConvention::BP);
    assert!(emma.contracts.is_empty());

    let ict = &s.departments["ICT"];
    assert_eq!(
        ict,
        &Department {
            code: "ICT".into(),
            name: "ICT & Informatievoorziening".into(),
            parent: "DIR".into(),
            manager: "10001".into(),
        }
    );
    assert_eq!(s.departments["DIR"].parent, "");
    assert_eq!(s.departments.len(), 3);
}

#[test]
fn helloid_bad_fields_name_the_person_and_the_field() {
    let fx = Fixture::new();
    fx.write(
        "persons.json",
        r#"[
  {"ExternalId": "1", "Contracts": [{"ExternalId": "c1", "StartDate": "2026-01-01"}]},
  {
    "ExternalId": "2",
    "Name": {"Convention": "XB"},
    "Contracts": [
      {"ExternalId": "c2", "StartDate": "2026-13-01T00:00:00", "Details": {"Fte": "veel"}},
      {"ExternalId": null, "StartDate": null, "Department": "ICT"}
    ]
  },
  {"Name": {"GivenName": "Nobody"}},
  "not a person"
]"#,
    );
    let e = fx
        .load(json!({"kind": "json", "file": "hr/persons.json", "shape": "helloid"}))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "8 problems in the source data; nothing was loaded, fix them and run again:
  hr/persons.json:3: person at index 1 (\"2\"): field \"Name.Convention\": \"XB\" is not a naming convention (expected B, P, BP or PB)
  hr/persons.json:3: person at index 1 (\"2\"): field \"Contracts[0].StartDate\": \"2026-13-01T00:00:00\" is not a date (expected YYYY-MM-DD)
  hr/persons.json:3: person at index 1 (\"2\"): field \"Contracts[0].Details.Fte\": \"veel\" is not a number (expected e.g. 0.8 or 0,8)
  hr/persons.json:3: person at index 1 (\"2\"): field \"Contracts[1].ExternalId\": is empty; every contract needs an id
  hr/persons.json:3: person at index 1 (\"2\"): field \"Contracts[1].StartDate\": is empty; every contract needs a start date
  hr/persons.json:3: person at index 1 (\"2\"): field \"Contracts[1].Department\": expected an object, found text
  hr/persons.json:11: person at index 2: field \"ExternalId\": is empty; every person needs an external id
  hr/persons.json:12: person at index 3: expected an object, found text"
    );
}

#[test]
fn koppel_shape_round_trips() {
    let mut person = Person {
        external_id: "p1".into(),
        email: "a@example.nl".into(),
        excluded: true,
        ..Person::default()
    };
    person.name.family_prefix = "van".into();
    person.name.family = "Dam".into();
    person.name.convention = NamingConvention::PB;
    person.custom.insert("badge".into(), "7".into());
    let mut contract = Contract::new("k1", d("2026-01-01"), Some(d("2026-12-31")));
    contract.department = "HR".into();
    contract.fte = Some(0.5);
    contract.sequence = 3;
    person.contracts.push(contract);
    let other = Person {
        external_id: "p0".into(),
        ..Person::default()
    };
    let mut snapshot = Snapshot {
        persons: vec![person, other],
        departments: [(
            "HR".to_string(),
            Department {
                code: "HR".into(),
                name: "Human Resources".into(),
                ..Department::default()
            },
        )]
        .into(),
    };
    snapshot.normalize();

    let fx = Fixture::new();
    fx.write(
        "persons.json",
        serde_json::to_vec_pretty(&snapshot.persons).unwrap(),
    );
    let departments: Vec<_> = snapshot.departments.values().collect();
    fx.write(
        "departments.json",
        serde_json::to_vec(&departments).unwrap(),
    );
    let f = fx
        .load(json!({
            "kind": "json",
            "file": "hr/persons.json",
            "departments_file": "hr/departments.json"
        }))
        .unwrap();
    assert!(f.diagnostics.is_empty(), "{:?}", f.diagnostics);
    assert_eq!(f.snapshot, snapshot);
}

#[test]
fn koppel_shape_errors_name_the_record_and_field_path() {
    let fx = Fixture::new();
    fx.write(
        "persons.json",
        r#"[
  {"external_id": "ok"},
  {
    "external_id": "p2",
    "contracts": [
      {"id": "c1", "start": "2026-13-01"}
    ]
  },
  {"external_id": "p3", "emial": "typo@example.nl"}
]"#,
    );
    let e = fx
        .load(json!({"kind": "json", "file": "hr/persons.json"}))
        .unwrap_err()
        .to_string();
    let mut lines = e.lines();
    assert_eq!(
        lines.next(),
        Some("2 problems in the source data; nothing was loaded, fix them and run again:")
    );
    let first = lines.next().unwrap();
    assert!(
        first.starts_with(
            "  hr/persons.json:6: person at index 1 (\"p2\"): field \"contracts[0].start\": "
        ),
        "{first}"
    );
    let second = lines.next().unwrap();
    assert!(
        second.starts_with(
            "  hr/persons.json:9: person at index 2 (\"p3\"): field \"emial\": unknown field `emial`"
        ),
        "{second}"
    );
}

#[test]
fn syntax_errors_name_file_line_and_column() {
    let fx = Fixture::new();
    fx.write(
        "persons.json",
        "[\n  {\"external_id\": \"a\"},\n  {\"external_id\": \"b\"},\n]",
    );
    let e = fx
        .load(json!({"kind": "json", "file": "hr/persons.json"}))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "hr/persons.json:4:1: invalid JSON: trailing comma");

    fx.write("persons.json", "  \n");
    let e = fx
        .load(json!({"kind": "json", "file": "hr/persons.json"}))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "hr/persons.json:1:1: invalid JSON: the file is empty (expected an array of objects)"
    );
}

#[test]
fn newline_delimited_records_and_a_bom_are_accepted() {
    let fx = Fixture::new();
    fx.write(
        "persons.ndjson",
        "\u{feff}{\"ExternalId\": \"1\"}\n{\"ExternalId\": \"2\", \"Contracts\": [{\"ExternalId\": \"c\", \"StartDate\": \"2026-01-01\", \"Department\": {\"ExternalId\": \"X\"}}]}\n",
    );
    fx.write("departments.json", "[]");
    let f = fx
        .load(json!({
            "kind": "json",
            "file": "hr/persons.ndjson",
            "departments_file": "hr/departments.json",
            "shape": "helloid"
        }))
        .unwrap();
    assert_eq!(f.snapshot.persons.len(), 2);
    assert_eq!(codes(&f), ["contract_unknown_department"]);
    let at = f.diagnostics[0].location.as_ref().unwrap();
    assert_eq!((at.file.as_str(), at.line), ("hr/persons.ndjson", Some(2)));
}

#[test]
fn json_sources_report_duplicates_like_csv() {
    let fx = Fixture::new();
    fx.write(
        "persons.json",
        r#"[
{"external_id": "a", "contracts": [{"id": "c1", "start": "2026-01-01"}]},
{"external_id": "b", "contracts": [{"id": "c1", "start": "2026-01-01"}]},
{"external_id": "a"}
]"#,
    );
    let f = fx
        .load(json!({"kind": "json", "file": "hr/persons.json"}))
        .unwrap();
    assert_eq!(codes(&f), ["duplicate_person", "duplicate_contract"]);
    assert_eq!(f.diagnostics[0].location.as_ref().unwrap().line, Some(4));
    assert_eq!(f.diagnostics[1].location.as_ref().unwrap().line, Some(3));
}
