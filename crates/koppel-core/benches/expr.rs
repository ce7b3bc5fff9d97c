//! Expression evaluation speed: `cargo bench -p koppel-core --bench expr`.
//!
//! Each iteration evaluates one compiled expression for each of 64 synthetic persons (1–2
//! contracts each): the time shown is for 64 evaluations, the throughput per evaluation.
//! `fast` runs koppel's evaluator, `interpreted` the `cel` crate's interpreter on the same
//! expression, `scope` builds a person's `Scope`.
//!
//! Figures on the shared 2-core development machine (release profile, median of 64
//! evaluations divided by 64, through `Expr::eval`, so bool results included the `AttrValue`
//! conversion; other engineers were building at the time, so treat them as upper bounds):
//!
//! | expression | fast | interpreted |
//! | --- | --- | --- |
//! | `contract.department.code == "FIN" && contract.fte >= 0.5` | 90 ns | 614 ns |
//! | `person.custom.team in ["a", "b"]` | 81 ns | 723 ns |
//! | `"grp-" + lower(contract.department.code)` | 135 ns | 986 ns |
//! | `ascii(lower(person.name.given)) + "." + ascii(lower(compact(family_name(person))))` | 507 ns | 3.75 µs |
//! | `in_department_tree("FIN")` | 144 ns | 824 ns |
//! | `contract.start <= now && (contract.end == null \|\| contract.end >= now)` | 157 ns | 1.05 µs |
//! | `person.contracts.exists(c, c.department.code == "HR" && c.active)` | 115 ns | 2.02 µs |
//! | `days_until(contract.start) <= 14` | 127 ns | 841 ns |
//! | `contract.title.code.startsWith("T-") ? contract.title.name : "none"` | 153 ns | 1.28 µs |
//! | `display_name(person)` | 232 ns | 1.28 µs |
//! | `has(accounts.ad) ? accounts.ad.sAMAccountName : person.external_id` | 148 ns | 937 ns |
//!
//! Building a `Scope` (primary contract choice included): 24 ns. Compiling an expression
//! (parse, check, fast compile): 80 µs.

use std::collections::BTreeMap;

use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use koppel_core::expr::{ExprEngine, Scope, Vars};
use koppel_core::{
    AttrValue, Contract, Date, Department, NamingConvention, Org, Person, PersonName,
    PrimaryOrdering,
};

fn main() {
    divan::main();
}

const EXPRESSIONS: &[&str] = &[
    r#"contract.department.code == "FIN" && contract.fte >= 0.5"#,
    r#"person.custom.team in ["a", "b"]"#,
    r#""grp-" + lower(contract.department.code)"#,
    r#"ascii(lower(person.name.given)) + "." + ascii(lower(compact(family_name(person))))"#,
    r#"in_department_tree("FIN")"#,
    r#"contract.start <= now && (contract.end == null || contract.end >= now)"#,
    r#"person.contracts.exists(c, c.department.code == "HR" && c.active)"#,
    r#"days_until(contract.start) <= 14"#,
    r#"contract.title.code.startsWith("T-") ? contract.title.name : "none""#,
    r#"display_name(person)"#,
    r#"has(accounts.ad) ? accounts.ad.sAMAccountName : person.external_id"#,
];

struct World {
    org: Org,
    persons: Vec<Person>,
    primaries: Vec<Option<usize>>,
    accounts: BTreeMap<String, BTreeMap<String, AttrValue>>,
    now: Date,
}

fn date(s: &str) -> Date {
    s.parse().expect("valid date")
}

fn world() -> World {
    let depts = ["ROOT", "FIN", "FIN-AP", "FIN-AR", "HR", "IT", "IT-OPS"];
    let parents = ["", "ROOT", "FIN", "FIN", "ROOT", "ROOT", "IT"];
    let org = Org::new(
        depts
            .iter()
            .zip(parents)
            .map(|(code, parent)| {
                (
                    code.to_string(),
                    Department {
                        code: code.to_string(),
                        name: format!("Department {code}"),
                        parent: parent.to_owned(),
                        manager: format!("m-{code}"),
                    },
                )
            })
            .collect(),
    );
    let now = date("2026-06-15");
    let given = [
        "Jan Pieter",
        "Anna",
        "Łukasz",
        "Çelik",
        "Sophie",
        "Mohammed",
    ];
    let family = ["Vries", "Müller", "Jansen", "Berg", "Bakker", "Yılmaz"];
    let mut persons = Vec::new();
    for i in 0..64usize {
        let mut p = Person {
            external_id: format!("{:06}", 1000 + i),
            name: PersonName {
                given: given[i % given.len()].to_owned(),
                family_prefix: if i % 3 == 0 {
                    "van der".into()
                } else {
                    String::new()
                },
                family: family[i % family.len()].to_owned(),
                partner: if i % 4 == 0 {
                    "Smit".into()
                } else {
                    String::new()
                },
                convention: if i % 4 == 0 {
                    NamingConvention::BP
                } else {
                    NamingConvention::B
                },
                ..Default::default()
            },
            email: format!("p{i}@example.org"),
            ..Default::default()
        };
        p.custom
            .insert("team".into(), ["a", "b", "c"][i % 3].to_owned());
        let mut c = Contract::new(format!("c{i}"), date("2024-01-01"), None);
        c.department = depts[i % depts.len()].to_owned();
        c.fte = Some([1.0, 0.8, 0.4][i % 3]);
        c.title.code = format!("T-{}", i % 5);
        c.title.name = "Adviseur".into();
        p.contracts.push(c);
        if i % 5 == 0 {
            let mut c2 = Contract::new(
                format!("c{i}b"),
                date("2026-06-20"),
                Some(date("2026-12-31")),
            );
            c2.department = "HR".into();
            c2.fte = Some(0.2);
            p.contracts.push(c2);
        }
        persons.push(p);
    }
    let primaries = persons
        .iter()
        .map(|p| {
            PrimaryOrdering::default()
                .primary(&p.contracts, now)
                .and_then(|c| p.contracts.iter().position(|x| std::ptr::eq(x, c)))
        })
        .collect();
    let mut accounts = BTreeMap::new();
    accounts.insert(
        "ad".to_owned(),
        BTreeMap::from([("sAMAccountName".to_owned(), AttrValue::from("jdvries"))]),
    );
    World {
        org,
        persons,
        primaries,
        accounts,
        now,
    }
}

impl World {
    fn scope(&self, i: usize) -> Scope<'_> {
        let p = &self.persons[i];
        let primary = self.primaries[i].map(|j| &p.contracts[j]);
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

#[divan::bench(args = EXPRESSIONS)]
fn fast(bencher: Bencher, source: &str) {
    let w = world();
    let engine = ExprEngine::new(&BTreeMap::new());
    let expr = engine.compile(source).expect("compiles");
    assert!(expr.is_fast(), "{source} should run on the fast evaluator");
    let scopes: Vec<Scope<'_>> = (0..w.persons.len()).map(|i| w.scope(i)).collect();
    bencher
        .counter(ItemsCount::new(scopes.len()))
        .bench_local(|| {
            for s in &scopes {
                black_box(expr.eval(black_box(s))).ok();
            }
        });
}

#[divan::bench(args = EXPRESSIONS)]
fn interpreted(bencher: Bencher, source: &str) {
    let w = world();
    let engine = ExprEngine::new(&BTreeMap::new());
    let expr = engine.compile(source).expect("compiles");
    let scopes: Vec<Scope<'_>> = (0..w.persons.len()).map(|i| w.scope(i)).collect();
    bencher
        .counter(ItemsCount::new(scopes.len()))
        .bench_local(|| {
            for s in &scopes {
                black_box(expr.eval_interpreted(black_box(s))).ok();
            }
        });
}

/// Building a person's scope, primary contract choice included (the planner does that too).
#[divan::bench]
fn scope(bencher: Bencher) {
    let w = world();
    bencher
        .counter(ItemsCount::new(w.persons.len()))
        .bench_local(|| {
            for p in &w.persons {
                let primary = PrimaryOrdering::default().primary(&p.contracts, w.now);
                let s = Scope::new(Vars {
                    now: w.now,
                    org: &w.org,
                    person: black_box(p),
                    primary,
                    contract: primary,
                    accounts: &w.accounts,
                });
                black_box(s.with_contract(primary));
            }
        });
}

/// Compiling one typical expression (parse, check, fast compile).
#[divan::bench]
fn compile(bencher: Bencher) {
    let engine = ExprEngine::new(&BTreeMap::new());
    bencher.bench_local(|| black_box(engine.compile(EXPRESSIONS[3]).expect("compiles")));
}
