//! The CSV source: columns, encodings, formats, row errors and linking diagnostics.

use koppel_connectors::{Source, SourceError, source_for};
use koppel_core::config::SourceConfig;
use koppel_core::{NamingConvention, Severity};
use serde_json::json;

use super::{Fixture, block_on, codes, d};

const PERSONS: &str = "\
external_id,given_name,nickname,initials,family_name_prefix,family_name,partner_name_prefix,partner_name,naming_convention,email,phone,excluded
1001,Johanna,Anne,J.A.,van der,Berg,de,Vries,BP,anne@example.nl,+31 30 1234567,
1002,Pieter,Piet,P.,,Jansen,,,B,piet@example.nl,,nee
1000,Mohamed,Mo,M.,el,Amrani,,,,,,ja
";

const CONTRACTS: &str = "\
contract_id,external_id,start_date,end_date,department_code,title_code,title,location,cost_centre,manager_external_id,employment_type,fte,hours_per_week,sequence
c2,1001,2024-01-01,,ICT,F01,Developer,Utrecht,4100,1002,vast,0.8,32,2
c1,1001,2020-01-01,2023-12-31,ICT,F02,Trainee,Utrecht,4100,1002,tijdelijk,1,36,1
c3,1002,2010-05-01,,DIR,F00,Directeur,Utrecht,1000,,vast,1,36,
";

const DEPARTMENTS: &str = "\
code,name,parent_code,manager_external_id
DIR,Directie,,1002
ICT,ICT,DIR,1001
";

fn standard() -> Fixture {
    let fx = Fixture::new();
    fx.write("persons.csv", PERSONS);
    fx.write("contracts.csv", CONTRACTS);
    fx.write("departments.csv", DEPARTMENTS);
    fx
}

fn err(r: Result<koppel_connectors::Fetched, SourceError>) -> String {
    match r {
        Ok(f) => panic!("expected an error, loaded {f:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn default_columns_load_into_a_normalized_snapshot() {
    let fx = standard();
    let f = fx.load_csv().unwrap();
    assert!(f.diagnostics.is_empty(), "{:?}", f.diagnostics);
    let s = &f.snapshot;
    let ids: Vec<_> = s.persons.iter().map(|p| p.external_id.as_str()).collect();
    assert_eq!(ids, ["1000", "1001", "1002"], "sorted by external id");

    let anne = s.person("1001").unwrap();
    assert_eq!(anne.name.given, "Johanna");
    assert_eq!(anne.name.nickname, "Anne");
    assert_eq!(anne.name.initials, "J.A.");
    assert_eq!(anne.name.family_prefix, "van der");
    assert_eq!(anne.name.family, "Berg");
    assert_eq!(anne.name.partner_prefix, "de");
    assert_eq!(anne.name.partner, "Vries");
    assert_eq!(anne.name.convention, NamingConvention::BP);
    assert_eq!(anne.email, "anne@example.nl");
    assert_eq!(anne.phone, "+31 30 1234567");
    assert!(!anne.excluded, "empty excluded is false");
    assert!(anne.custom.is_empty());

    // Contracts sorted by id, all fields read.
    let ids: Vec<_> = anne.contracts.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["c1", "c2"]);
    let c2 = &anne.contracts[1];
    assert_eq!(c2.start, d("2024-01-01"));
    assert_eq!(c2.end, None);
    assert_eq!(c2.department, "ICT");
    assert_eq!(c2.title.code, "F01");
    assert_eq!(c2.title.name, "Developer");
    assert_eq!(c2.location, "Utrecht");
    assert_eq!(c2.cost_centre, "4100");
    assert_eq!(c2.manager, "1002");
    assert_eq!(c2.employment_type, "vast");
    assert_eq!(c2.fte, Some(0.8));
    assert_eq!(c2.hours_per_week, Some(32.0));
    assert_eq!(c2.sequence, 2);
    assert_eq!(anne.contracts[0].end, Some(d("2023-12-31")));

    let piet = s.person("1002").unwrap();
    assert!(!piet.excluded);
    assert_eq!(piet.contracts[0].sequence, 0, "an empty sequence is 0");
    let mo = s.person("1000").unwrap();
    assert!(mo.excluded, "ja means yes");
    assert!(mo.contracts.is_empty());
    assert_eq!(
        mo.name.convention,
        NamingConvention::B,
        "empty convention is B"
    );

    assert_eq!(s.departments.len(), 2);
    assert_eq!(s.departments["ICT"].parent, "DIR");
    assert_eq!(s.departments["ICT"].manager, "1001");
    assert_eq!(s.departments["DIR"].name, "Directie");
}

#[test]
fn renamed_columns_files_semicolons_and_dutch_decimals() {
    let fx = Fixture::new();
    fx.write(
        "medewerkers.csv",
        "Personeelsnummer;Roepnaam;Achternaam;Naamgebruik\n\
         42;Kees;Visser;P\n",
    );
    fx.write(
        "dienstverbanden.csv",
        "Dienstverband;Personeelsnummer;Begindatum;Einddatum;Afdeling;FTE;Uren\n\
         D1;42;2025-02-01;2025-12-31;FIN;0,8;28,8\n",
    );
    fx.write(
        "afdelingen.csv",
        "Code;Omschrijving;Bovenliggend\nFIN;Financiën;\n",
    );
    let f = fx
        .load(json!({
            "kind": "csv",
            "dir": "hr",
            "persons_file": "medewerkers.csv",
            "contracts_file": "dienstverbanden.csv",
            "departments_file": "afdelingen.csv",
            "delimiter": ";",
            "columns": {
                "persons": {
                    "external_id": "Personeelsnummer",
                    "nickname": "Roepnaam",
                    "family_name": "Achternaam",
                    "naming_convention": "Naamgebruik"
                },
                "contracts": {
                    "contract_id": "Dienstverband",
                    "external_id": "Personeelsnummer",
                    "start_date": "Begindatum",
                    "end_date": "Einddatum",
                    "department_code": "Afdeling",
                    "fte": "FTE",
                    "hours_per_week": "Uren"
                },
                "departments": {
                    "code": "Code",
                    "name": "Omschrijving",
                    "parent_code": "Bovenliggend"
                }
            }
        }))
        .unwrap();
    assert!(f.diagnostics.is_empty(), "{:?}", f.diagnostics);
    let kees = f.snapshot.person("42").unwrap();
    assert_eq!(kees.name.nickname, "Kees");
    assert_eq!(kees.name.family, "Visser");
    assert_eq!(kees.name.convention, NamingConvention::P);
    assert!(
        kees.custom.is_empty(),
        "renamed columns are not custom fields"
    );
    let c = &kees.contracts[0];
    assert_eq!(c.fte, Some(0.8));
    assert_eq!(c.hours_per_week, Some(28.8));
    assert_eq!(c.end, Some(d("2025-12-31")));
    assert_eq!(f.snapshot.departments["FIN"].name, "Financiën");
}

#[test]
fn other_columns_become_custom_fields_and_absent_columns_are_empty() {
    let fx = Fixture::new();
    fx.write(
        "persons.csv",
        "external_id,family_name,cost_unit,badge\n7,Smit,K12,\n8,Mulder,K13,B-8\n",
    );
    fx.write(
        "contracts.csv",
        "contract_id,external_id,start_date\nx,7,2026-01-01\n",
    );
    fx.write("departments.csv", "code\n");
    let f = fx.load_csv().unwrap();
    let smit = f.snapshot.person("7").unwrap();
    assert_eq!(smit.custom["cost_unit"], "K12");
    assert_eq!(
        smit.custom["badge"], "",
        "every person has every custom field"
    );
    assert_eq!(smit.email, "");
    assert_eq!(smit.name.given, "");
    assert_eq!(f.snapshot.person("8").unwrap().custom["badge"], "B-8");
    let c = &smit.contracts[0];
    assert_eq!((c.end, c.fte, c.department.as_str()), (None, None, ""));
}

#[test]
fn a_byte_order_mark_before_the_header_is_ignored() {
    let fx = standard();
    fx.write("persons.csv", format!("\u{feff}{PERSONS}"));
    fx.write("contracts.csv", format!("\u{feff}{CONTRACTS}"));
    let f = fx.load_csv().unwrap();
    assert_eq!(f.snapshot.persons.len(), 3);
    assert_eq!(f.snapshot.person("1001").unwrap().contracts.len(), 2);
}

#[test]
fn utf16_files_are_refused_with_advice() {
    let fx = standard();
    fx.write("persons.csv", b"\xFF\xFEe\0x\0");
    let e = err(fx.load_csv());
    assert_eq!(
        e,
        "hr/persons.csv: the file is UTF-16; save it as UTF-8 (in Excel: \"CSV UTF-8\")"
    );
}

#[test]
fn datetimes_give_their_date_part() {
    let fx = standard();
    fx.write(
        "contracts.csv",
        "contract_id,external_id,start_date,end_date\n\
         a,1001,2026-01-31T00:00:00,2026-12-31T23:59:59Z\n\
         b,1002,2026-02-01T00:00:00+01:00,2026-03-01 00:00\n",
    );
    let f = fx.load_csv().unwrap();
    let a = &f.snapshot.person("1001").unwrap().contracts[0];
    assert_eq!((a.start, a.end), (d("2026-01-31"), Some(d("2026-12-31"))));
    let b = &f.snapshot.person("1002").unwrap().contracts[0];
    assert_eq!((b.start, b.end), (d("2026-02-01"), Some(d("2026-03-01"))));
}

/// Each kind of bad cell is reported with file, line and column.
#[test]
fn a_bad_cell_names_file_line_and_column() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "contracts.csv",
            "contract_id,external_id,start_date\nc1,1001,2026-01-01\nc2,1001,2026-13-01\n",
            "hr/contracts.csv:3: column \"start_date\": \"2026-13-01\" is not a date (expected YYYY-MM-DD)",
        ),
        (
            "contracts.csv",
            "contract_id,external_id,start_date,end_date\nc1,1001,2026-01-01,31-12-2026\n",
            "hr/contracts.csv:2: column \"end_date\": \"31-12-2026\" is not a date (expected YYYY-MM-DD)",
        ),
        (
            "contracts.csv",
            "contract_id,external_id,start_date,fte\nc1,1001,2026-01-01,0.8x\n",
            "hr/contracts.csv:2: column \"fte\": \"0.8x\" is not a number (expected e.g. 0.8 or 0,8)",
        ),
        (
            "contracts.csv",
            "contract_id,external_id,start_date,sequence\nc1,1001,2026-01-01,first\n",
            "hr/contracts.csv:2: column \"sequence\": \"first\" is not a whole number",
        ),
        (
            "contracts.csv",
            "contract_id,external_id,start_date\nc1,1001,\n",
            "hr/contracts.csv:2: column \"start_date\": is empty; every contract needs a start date",
        ),
        (
            "contracts.csv",
            "contract_id,external_id,start_date\n,1001,2026-01-01\n",
            "hr/contracts.csv:2: column \"contract_id\": is empty; every contract needs one",
        ),
        (
            "persons.csv",
            "external_id,naming_convention\n1001,BP\n1002,X\n",
            "hr/persons.csv:3: column \"naming_convention\": \"X\" is not a naming convention (expected B, P, BP or PB)",
        ),
        (
            "persons.csv",
            "external_id,given_name\n1001,Anne\n,Piet\n",
            "hr/persons.csv:3: column \"external_id\": is empty; every person needs one",
        ),
        (
            "persons.csv",
            "external_id,excluded\n1001,misschien\n",
            "hr/persons.csv:2: column \"excluded\": \"misschien\" is not a yes/no value (expected true/false, 1/0, yes/no or ja/nee)",
        ),
        (
            "persons.csv",
            "external_id,given_name,family_name\n1001,Anne,Berg\n1002,Piet\n",
            "hr/persons.csv:3: the row has 2 fields, the header has 3 (a stray delimiter or quote?)",
        ),
        (
            "departments.csv",
            "code,name\nDIR,Directie\n,Zonder code\n",
            "hr/departments.csv:3: column \"code\": is empty; every department needs one",
        ),
    ];
    for (file, content, expected) in cases {
        let fx = standard();
        fx.write(file, content);
        assert_eq!(&err(fx.load_csv()), expected, "{file}: {content}");
    }

    // Invalid UTF-8 cannot be written in a &str, so it has its own case.
    let fx = standard();
    fx.write("persons.csv", b"external_id,given_name\n1001,Ren\xE9\n");
    assert_eq!(
        err(fx.load_csv()),
        "hr/persons.csv:2: column \"given_name\": is not valid UTF-8; save the file as UTF-8"
    );
}

#[test]
fn all_bad_rows_of_all_files_are_reported_together_and_nothing_loads() {
    let fx = standard();
    fx.write(
        "persons.csv",
        "external_id,naming_convention,excluded\n1,X,maybe\n2,B,\n3,Q,\n",
    );
    fx.write(
        "contracts.csv",
        "contract_id,external_id,start_date,fte\nc1,1,2026-02-30,1\nc2,2,2026-01-01,1,2\n",
    );
    let e = fx.load_csv().unwrap_err();
    let SourceError::Rows { errors, omitted } = &e else {
        panic!("{e}")
    };
    assert_eq!(*omitted, 0);
    let lines: Vec<_> = errors
        .iter()
        .map(|e| (e.file.as_str(), e.line, e.field.as_deref()))
        .collect();
    assert_eq!(
        lines,
        [
            ("hr/persons.csv", Some(2), Some("naming_convention")),
            ("hr/persons.csv", Some(2), Some("excluded")),
            ("hr/persons.csv", Some(4), Some("naming_convention")),
            ("hr/contracts.csv", Some(2), Some("start_date")),
            ("hr/contracts.csv", Some(3), None),
        ]
    );
    let text = e.to_string();
    assert!(
        text.starts_with(
            "5 problems in the source data; nothing was loaded, fix them and run again:\n  hr/persons.csv:2: column \"naming_convention\""
        ),
        "{text}"
    );
    assert!(text.contains("\n  hr/contracts.csv:3: the row has 5 fields, the header has 4"));
}

#[test]
fn at_most_fifty_errors_are_shown_and_the_rest_counted() {
    let fx = standard();
    let mut persons = String::from("external_id,naming_convention\n");
    for i in 0..60 {
        persons.push_str(&format!("{i},Z\n"));
    }
    fx.write("persons.csv", persons);
    let text = err(fx.load_csv());
    assert!(text.starts_with("60 problems"), "{text}");
    assert_eq!(text.lines().count(), 1 + 50 + 1);
    assert!(text.ends_with("\n  ... and 10 more"), "{text}");
}

#[test]
fn quoted_values_spanning_lines_keep_line_numbers_right() {
    let fx = standard();
    fx.write(
        "persons.csv",
        "external_id,address,naming_convention\n\
         1001,\"Stationsplein 12\n3511 ED Utrecht\",B\n\
         1002,\"a \"\"quoted\"\"\nvalue\non three lines\",B\n\
         1003,,XX\n",
    );
    let text = err(fx.load_csv());
    assert_eq!(
        text,
        "hr/persons.csv:7: column \"naming_convention\": \"XX\" is not a naming convention (expected B, P, BP or PB)"
    );

    // And the values themselves survive, newlines included.
    fx.write(
        "persons.csv",
        "external_id,address\n1001,\"Stationsplein 12\n3511 ED Utrecht\"\n1002,\n",
    );
    fx.write(
        "contracts.csv",
        "contract_id,external_id,start_date\nc1,1001,2026-01-01\nc2,nobody,2026-01-01\n",
    );
    let f = fx.load_csv().unwrap();
    assert_eq!(
        f.snapshot.person("1001").unwrap().custom["address"],
        "Stationsplein 12\n3511 ED Utrecht"
    );
    assert_eq!(f.diagnostics[0].location.as_ref().unwrap().line, Some(3));
}

#[test]
fn blank_rows_are_skipped() {
    let fx = standard();
    fx.write(
        "persons.csv",
        "external_id;given_name\n1001;Anne\n;\n\n  ;  \n1002;Piet\n",
    );
    fx.write("contracts.csv", "contract_id;external_id;start_date\n");
    fx.write("departments.csv", "code;name\n;\n");
    let f = fx
        .load(json!({"kind": "csv", "dir": "hr", "delimiter": ";"}))
        .unwrap();
    assert_eq!(f.snapshot.persons.len(), 2);
}

#[test]
fn contracts_of_unknown_persons_and_unknown_departments_are_reported() {
    let fx = standard();
    fx.write(
        "contracts.csv",
        "contract_id,external_id,start_date,end_date,department_code\n\
         c1,1001,2026-01-01,,ICT\n\
         c2,9999,2026-01-01,,ICT\n\
         c3,1002,2026-01-01,,NOPE\n\
         c4,1002,2026-05-01,2026-04-30,\n",
    );
    fx.write(
        "departments.csv",
        "code,name,parent_code\nDIR,Directie,\nICT,ICT,DIR\nHR,HR,GONE\n",
    );
    let f = fx.load_csv().unwrap();
    assert_eq!(
        codes(&f),
        [
            "department_unknown_parent",
            "contract_unknown_person",
            "contract_unknown_department",
            "contract_ends_before_start",
        ]
    );
    let shown: Vec<String> = f.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "warning[department_unknown_parent]: hr/departments.csv:4: department \"HR\" has parent \"GONE\", which is not in the department list; it is treated as a top-level department",
            "error[contract_unknown_person]: hr/contracts.csv:3: contract \"c2\" belongs to person \"9999\", who is not in the persons list; the contract is ignored (person 9999)",
            "warning[contract_unknown_department]: hr/contracts.csv:4: contract \"c3\" names department \"NOPE\", which is not in the department list (person 1002)",
            "error[contract_ends_before_start]: hr/contracts.csv:5: contract \"c4\" ends (2026-04-30) before it starts (2026-05-01); it is kept but never active (person 1002)",
        ]
    );
    assert_eq!(f.diagnostics[1].severity, Severity::Error);
    assert_eq!(f.diagnostics[2].severity, Severity::Warning);
    let s = &f.snapshot;
    assert_eq!(s.person("1001").unwrap().contracts.len(), 1);
    let piet: Vec<_> = s
        .person("1002")
        .unwrap()
        .contracts
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(
        piet,
        ["c3", "c4"],
        "unknown department and reversed dates are kept"
    );
    assert!(
        s.persons
            .iter()
            .all(|p| p.contracts.iter().all(|c| c.id != "c2"))
    );
}

#[test]
fn without_a_department_file_department_codes_are_not_checked() {
    let fx = standard();
    std::fs::remove_file(fx.base().join("hr/departments.csv")).unwrap();
    let f = fx
        .load(json!({"kind": "csv", "dir": "hr", "departments_file": ""}))
        .unwrap();
    assert!(f.diagnostics.is_empty(), "{:?}", f.diagnostics);
    assert!(f.snapshot.departments.is_empty());
}

#[test]
fn duplicates_keep_the_first_and_report_the_second_with_its_line() {
    let fx = standard();
    fx.write(
        "persons.csv",
        "external_id,given_name\n1001,Anne\n1002,Piet\n1001,Anna\n",
    );
    fx.write(
        "contracts.csv",
        "contract_id,external_id,start_date\nc1,1001,2026-01-01\nc1,1002,2026-02-01\n",
    );
    fx.write("departments.csv", "code,name\nA,First\nA,Second\n");
    let f = fx.load_csv().unwrap();
    let shown: Vec<String> = f.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "error[duplicate_department]: hr/departments.csv:3: department \"A\" is listed again (first at hr/departments.csv:2); this one is ignored",
            "error[duplicate_person]: hr/persons.csv:4: person \"1001\" is listed again (first at hr/persons.csv:2); this one and its contracts are ignored (person 1001)",
            "error[duplicate_contract]: hr/contracts.csv:3: contract \"c1\" is listed again; this one is ignored (person 1002)",
        ]
    );
    assert_eq!(f.snapshot.person("1001").unwrap().name.given, "Anne");
    assert_eq!(f.snapshot.person("1001").unwrap().contracts.len(), 1);
    assert!(f.snapshot.person("1002").unwrap().contracts.is_empty());
    assert_eq!(f.snapshot.departments["A"].name, "First");
}

#[test]
fn missing_files_and_columns_say_what_to_do() {
    let fx = standard();
    std::fs::remove_file(fx.base().join("hr/contracts.csv")).unwrap();
    let e = err(fx.load_csv());
    let path = fx.base().join("hr").join("contracts.csv");
    assert_eq!(
        e,
        format!(
            "contracts file not found: {} (paths in the config are relative to the config file's folder)",
            path.display()
        )
    );

    let fx = standard();
    fx.write("contracts.csv", "id,external_id,start_date\n");
    assert_eq!(
        err(fx.load_csv()),
        "hr/contracts.csv: the header has no column \"contract_id\" (found: \"id\", \"external_id\", \"start_date\"); rename the column in the file or set `columns.contracts.contract_id` in the config"
    );

    let fx = standard();
    fx.write("persons.csv", "");
    assert_eq!(
        err(fx.load_csv()),
        "hr/persons.csv: bad header: the file is empty; its first line must name the columns"
    );

    let fx = standard();
    fx.write("persons.csv", "external_id,email,email\n");
    assert_eq!(
        err(fx.load_csv()),
        "hr/persons.csv: bad header: column \"email\" appears twice"
    );

    let fx = standard();
    let e = err(fx.load(json!({"kind": "csv", "dir": "hr", "delimiter": "§"})));
    assert!(
        e.starts_with("source config: delimiter '§' is not usable"),
        "{e}"
    );
}

#[test]
fn the_source_trait_fetches_what_load_loads() {
    let fx = standard();
    let config: SourceConfig = serde_json::from_value(json!({"kind": "csv", "dir": "hr"})).unwrap();
    let source: Box<dyn Source> = source_for(&config, fx.base());
    assert_eq!(source.name(), "csv:hr");
    let fetched = block_on(source.fetch()).unwrap();
    assert_eq!(fetched, fx.load_csv().unwrap());
}

#[test]
fn windows_line_endings_and_tabs_work_and_keep_line_numbers() {
    let fx = Fixture::new();
    fx.write(
        "persons.csv",
        "external_id\tgiven_name\r\n1\tAnne\r\n2\t\"Piet\r\nJan\"\r\n3\tKees\r\n",
    );
    fx.write(
        "contracts.csv",
        "contract_id\texternal_id\tstart_date\r\nc1\t3\t2026-01-01\r\nc2\t4\t2026-01-01\r\n",
    );
    let f = fx
        .load(json!({"kind": "csv", "dir": "hr", "delimiter": "\t", "departments_file": ""}))
        .unwrap();
    assert_eq!(f.snapshot.person("2").unwrap().name.given, "Piet\r\nJan");
    assert_eq!(f.snapshot.person("3").unwrap().contracts.len(), 1);
    assert_eq!(f.diagnostics.len(), 1);
    assert_eq!(f.diagnostics[0].location.as_ref().unwrap().line, Some(3));

    fx.write(
        "persons.csv",
        "external_id\tnaming_convention\r\n1\tB\r\n2\tXY\r\n",
    );
    let e = fx
        .load(json!({"kind": "csv", "dir": "hr", "delimiter": "\t", "departments_file": ""}))
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("hr/persons.csv:3: column \"naming_convention\""),
        "{e}"
    );
}

#[test]
fn blank_lines_count_as_lines() {
    let fx = standard();
    fx.write(
        "persons.csv",
        "external_id,naming_convention\n\n1,B\n\n\n2,ZZ\n",
    );
    assert_eq!(
        err(fx.load_csv()),
        "hr/persons.csv:6: column \"naming_convention\": \"ZZ\" is not a naming convention (expected B, P, BP or PB)"
    );
}
