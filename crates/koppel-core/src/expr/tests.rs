//! Tests of the expression engine: variables, functions, errors, and the differential test
//! that holds the fast evaluator to the `cel` interpreter.

use std::collections::BTreeMap;

use super::*;
use crate::model::{Department, NamingConvention, PersonName, Title};

pub(crate) fn d(s: &str) -> Date {
    s.parse().expect("test dates are valid")
}

pub(crate) struct World {
    pub org: Org,
    pub persons: Vec<Person>,
    pub accounts: BTreeMap<String, BTreeMap<String, AttrValue>>,
    pub now: Date,
}

fn dept(code: &str, name: &str, parent: &str, manager: &str) -> (String, Department) {
    (
        code.to_owned(),
        Department {
            code: code.into(),
            name: name.into(),
            parent: parent.into(),
            manager: manager.into(),
        },
    )
}

fn contract(id: &str, start: &str, end: Option<&str>, dept: &str, fte: Option<f64>) -> Contract {
    let mut c = Contract::new(id, d(start), end.map(d));
    c.department = dept.into();
    c.fte = fte;
    c.title = Title {
        code: format!("T-{id}"),
        name: "Adviseur".into(),
    };
    c.location = "Utrecht".into();
    c.cost_centre = "4711".into();
    c.employment_type = "vast".into();
    c.hours_per_week = fte.map(|f| f * 36.0);
    c.sequence = 1;
    c
}

pub(crate) fn world() -> World {
    let org = Org::new(
        [
            dept("ROOT", "Gemeente", "", "ceo"),
            dept("FIN", "Financiën", "ROOT", "fin-boss"),
            dept("FIN-AP", "Crediteuren", "FIN", ""),
            dept("HR", "Personeelszaken", "ROOT", "hr-boss"),
        ]
        .into_iter()
        .collect(),
    );
    let mut p1 = Person {
        external_id: "1001".into(),
        name: PersonName {
            given: "Jan Pieter".into(),
            nickname: "Jan".into(),
            family_prefix: "de".into(),
            family: "Vries".into(),
            partner: "Jansen".into(),
            convention: NamingConvention::BP,
            ..Default::default()
        },
        email: "jan@example.org".into(),
        phone: "+31 6 1234".into(),
        ..Default::default()
    };
    p1.custom.insert("team".into(), "a".into());
    p1.custom.insert("badge".into(), "42".into());
    p1.contracts = vec![
        contract("c1", "2024-01-01", None, "FIN-AP", Some(0.8)),
        contract("c2", "2026-09-01", Some("2026-12-31"), "HR", Some(0.2)),
    ];
    let p2 = Person {
        external_id: "1002".into(),
        name: PersonName {
            given: "Çelik".into(),
            family: "Müller".into(),
            initials: "TH".into(),
            ..Default::default()
        },
        excluded: true,
        contracts: vec![contract(
            "c3",
            "2020-01-01",
            Some("2025-12-31"),
            "UNKNOWN",
            None,
        )],
        ..Default::default()
    };
    let p3 = Person {
        external_id: "1003".into(),
        name: PersonName {
            given: "Łukasz".into(),
            family_prefix: "van der".into(),
            family: "Berg".into(),
            partner_prefix: "d'".into(),
            partner: "Ancona".into(),
            convention: NamingConvention::PB,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut accounts = BTreeMap::new();
    accounts.insert(
        "ad".to_owned(),
        [
            ("sAMAccountName".to_owned(), AttrValue::from("jdvries")),
            ("uid".to_owned(), AttrValue::Int(42)),
            (
                "groups".to_owned(),
                AttrValue::List(vec!["g1".into(), "g2".into()]),
            ),
            ("gone".to_owned(), AttrValue::Null),
        ]
        .into_iter()
        .collect(),
    );
    World {
        org,
        persons: vec![p1, p2, p3],
        accounts,
        now: d("2026-06-15"),
    }
}

impl World {
    pub(crate) fn scope(&self, i: usize) -> Scope<'_> {
        let p = &self.persons[i];
        let primary = crate::org::PrimaryOrdering::default().primary(&p.contracts, self.now);
        Scope::new(Vars {
            now: self.now,
            org: &self.org,
            person: p,
            primary,
            contract: primary,
            accounts: &self.accounts,
        })
    }
}

fn engine() -> ExprEngine {
    ExprEngine::new(&BTreeMap::new())
}

fn eval(src: &str) -> Result<AttrValue, EvalError> {
    let w = world();
    let e = engine()
        .compile(src)
        .unwrap_or_else(|e| panic!("{src}: {e}"));
    e.eval(&w.scope(0))
}

fn text(s: &str) -> AttrValue {
    AttrValue::Text(s.to_owned())
}

#[test]
fn engine_and_expr_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ExprEngine>();
    check::<Expr>();
}

#[test]
fn variables_and_fields() {
    let cases: &[(&str, AttrValue)] = &[
        ("person.external_id", text("1001")),
        ("person.name.given", text("Jan Pieter")),
        ("person.name.convention", text("BP")),
        ("person.custom.team", text("a")),
        ("person.excluded", AttrValue::Bool(false)),
        ("person.active", AttrValue::Bool(true)),
        ("size(person.contracts)", AttrValue::Int(2)),
        ("contract.id", text("c1")),
        ("contract.department.code", text("FIN-AP")),
        ("contract.department.name", text("Crediteuren")),
        ("contract.department.parent", text("FIN")),
        ("contract.department.manager", text("")),
        ("contract.manager", text("fin-boss")),
        ("contract.title.name", text("Adviseur")),
        ("contract.fte", text("0.8")),
        ("contract.start", text("2024-01-01")),
        ("contract.end == null", AttrValue::Bool(true)),
        ("contract.start <= now", AttrValue::Bool(true)),
        ("primary.id", text("c1")),
        ("accounts.ad.sAMAccountName", text("jdvries")),
        (
            "accounts.ad.groups",
            AttrValue::List(vec!["g1".into(), "g2".into()]),
        ),
        ("accounts.ad.gone", AttrValue::Null),
        ("now", text("2026-06-15")),
    ];
    for (src, want) in cases {
        assert_eq!(eval(src).as_ref(), Ok(want), "{src}");
    }
}

#[test]
fn koppel_functions() {
    let cases: &[(&str, AttrValue)] = &[
        ("ascii('Müller')", text("Muller")),
        ("ascii('Straße')", text("Strasse")),
        ("lower('ÇELIK')", text("çelik")),
        ("'ÇELIK'.lower()", text("çelik")),
        ("upper('straße')", text("STRASSE")),
        ("trim('  a b ')", text("a b")),
        ("compact(\"d'Ancona\")", text("dAncona")),
        ("initials(person)", text("J.P.")),
        ("family_name(person)", text("de Vries-Jansen")),
        ("display_name(person)", text("Jan de Vries-Jansen")),
        ("family_name_sort(person)", text("Vries-Jansen, de")),
        ("days_until(date('2026-06-25'))", AttrValue::Int(10)),
        ("days_since(date('2026-06-25'))", AttrValue::Int(-10)),
        ("add_days(date('2026-06-25'), -25)", text("2026-05-31")),
        ("iso(contract.start)", text("2024-01-01")),
        ("in_department_tree('FIN')", AttrValue::Bool(true)),
        ("in_department_tree('HR')", AttrValue::Bool(false)),
        (
            "in_department_tree('FIN-AP', 'ROOT')",
            AttrValue::Bool(true),
        ),
        (
            "'grp-' + lower(contract.department.code)",
            text("grp-fin-ap"),
        ),
        (
            "ascii(lower(person.name.given)) + '.' + compact(lower(family_name(person)))",
            text("jan pieter.devries-jansen").clone(),
        ),
    ];
    for (src, want) in cases {
        if src.starts_with("ascii(lower(person") {
            assert_eq!(eval(src), Ok(text("jan pieter.devriesjansen")), "{src}");
            continue;
        }
        assert_eq!(eval(src).as_ref(), Ok(want), "{src}");
    }
}

#[test]
fn overrides_apply_before_deunicode() {
    let overrides: BTreeMap<String, String> = [("ü".to_owned(), "ue".to_owned())].into();
    let engine = ExprEngine::new(&overrides);
    let w = world();
    let e = engine
        .compile("ascii(person.name.family)")
        .expect("compiles");
    assert_eq!(e.eval(&w.scope(1)), Ok(text("Mueller")));
    assert_eq!(e.eval_interpreted(&w.scope(1)), Ok(text("Mueller")));
}

#[test]
fn compile_errors_have_positions() {
    let e = engine();
    let err = e
        .compile("person.name.given == \"x\" &&\n  persn.name")
        .expect_err("unknown variable");
    assert_eq!((err.line, err.column), (2, 3), "{err}");
    assert_eq!(err.offset, "person.name.given == \"x\" &&\n  ".len());
    assert!(err.message.contains("did you mean 'person'"), "{err}");

    let err = e
        .compile("\"ü\" + persn.name")
        .expect_err("unknown variable");
    assert_eq!(err.column, 7, "{err}");
    assert_eq!(err.offset, "\"ü\" + ".len());

    let err = e.compile("person.name.givn").expect_err("unknown field");
    assert_eq!(err.column, 13, "{err}");
    assert!(err.message.contains("did you mean 'given'"), "{err}");

    let err = e
        .compile("lowr(person.name.given)")
        .expect_err("unknown function");
    assert_eq!(err.column, 1, "{err}");

    let err = e
        .compile("person.name.given.lowr()")
        .expect_err("unknown method");
    assert_eq!(err.column, 19, "{err}");

    let err = e.compile("person.name.given ==").expect_err("syntax");
    assert_eq!(err.line, 1, "{err}");
    let err = e.compile("a +\n  (b").expect_err("syntax");
    assert_eq!(err.line, 2, "{err}");

    // Syntax errors count columns in characters, offsets in bytes.
    let err = e.compile("'ü' == 'ä' ==").expect_err("syntax");
    assert_eq!((err.offset, err.column), (15, 14), "{err}");
    let err = e.compile("'üüü' + )").expect_err("syntax");
    assert_eq!((err.offset, err.column), (11, 9), "{err}");
    assert!(
        err.message
            .starts_with("syntax error: mismatched input ')'"),
        "{err}"
    );

    let err = e
        .compile("date('2026-13-01') < now")
        .expect_err("bad date literal");
    assert_eq!(err.column, 6, "{err}");
}

#[test]
fn eval_bool_and_string() {
    let w = world();
    let e = engine();
    let s = w.scope(0);
    assert_eq!(
        e.compile("contract.fte >= 0.5").unwrap().eval_bool(&s),
        Ok(true)
    );
    let err = e.compile("'abc'").unwrap().eval_bool(&s).unwrap_err();
    assert_eq!(err.message, "expected bool, got string \"abc\"");
    assert_eq!(
        e.compile("contract.sequence").unwrap().eval_string(&s),
        Ok("1".into())
    );
    assert_eq!(
        e.compile("null").unwrap().eval_string(&s),
        Ok(String::new())
    );
    assert!(e.compile("['a']").unwrap().eval_string(&s).is_err());
}
