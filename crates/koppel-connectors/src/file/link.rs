//! Linking the records of one source into a snapshot: duplicates, contracts to persons,
//! departments, and the diagnostics for whatever does not fit.
//!
//! * A second person, contract or department with an id seen before: error, the first one
//!   is kept (files are read top to bottom; the first row is the one admins look at).
//! * A contract of an unknown person: error, not attached.
//! * A contract ending before it starts: error, kept (it is simply never active).
//! * A department code unknown to the department list: warning, kept.
//! * A department whose parent is unknown: warning, kept.
//!
//! The steps are separate functions so that the CSV loader can run the persons and the
//! contracts steps on two threads, each right after parsing its file.

use std::collections::{BTreeMap, HashSet};

use koppel_core::{Contract, Department, Diagnostic, Location, Person, Snapshot};

use crate::source::Fetched;

fn at(file: &str, line: u64) -> Location {
    Location {
        file: file.to_owned(),
        line: Some(line),
        column: None,
    }
}

/// Persons sorted by external id without duplicates, with the line each came from.
pub(crate) struct Persons {
    pub file: String,
    pub persons: Vec<Person>,
    pub lines: Vec<u64>,
    /// `prefix` of each person's external id, for matching contracts to persons.
    prefixes: Vec<u128>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Sorts persons by external id (stable: the first row stays first) and drops duplicates,
/// reporting them. HR files are often sorted already; then nothing moves.
pub(crate) fn persons(file: String, mut persons: Vec<Person>, mut lines: Vec<u64>) -> Persons {
    let mut diagnostics = Vec::new();
    lines.resize(persons.len(), 0);
    // One pass answers both "sorted?" and "any duplicates?": every pass over all ids misses
    // the cache once per person.
    // The same pass collects the prefixes for the person index, which a sorted file
    // without duplicates keeps as they are.
    let (mut sorted, mut any_duplicate) = (true, false);
    let mut prefixes = Vec::with_capacity(persons.len());
    prefixes.extend(persons.first().map(|p| prefix(&p.external_id)));
    for w in persons.windows(2) {
        match w[0].external_id.cmp(&w[1].external_id) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => any_duplicate = true,
            std::cmp::Ordering::Greater => {
                sorted = false;
                break;
            }
        }
        prefixes.push(prefix(&w[1].external_id));
    }
    if !sorted {
        // Sort compact keys, not the persons: comparing keys stays in the cache, and the
        // strings are only read when two long ids share their first 15 bytes. The index
        // breaks ties, so the sort is stable.
        let mut order: Vec<(u128, usize)> = persons
            .iter()
            .enumerate()
            .map(|(i, p)| (prefix(&p.external_id), i))
            .collect();
        order.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| persons[a.1].external_id.cmp(&persons[b.1].external_id))
                .then(a.1.cmp(&b.1))
        });
        let order: Vec<usize> = order.into_iter().map(|(_, i)| i).collect();
        permute(&mut persons, &order);
        permute(&mut lines, &order);
    }
    if !sorted || any_duplicate {
        let duplicate: Vec<bool> = std::iter::once(false)
            .chain(
                persons
                    .windows(2)
                    .map(|w| w[0].external_id == w[1].external_id),
            )
            .take(persons.len())
            .collect();
        report_duplicates(
            &file,
            &mut persons,
            &mut lines,
            &duplicate,
            &mut diagnostics,
        );
        prefixes = persons.iter().map(|p| prefix(&p.external_id)).collect();
    }
    Persons {
        file,
        persons,
        lines,
        prefixes,
        diagnostics,
    }
}

/// Reorders `items` in place so that `items[i]` becomes the old `items[order[i]]`, following
/// each cycle of the permutation with swaps: no second copy of a large vector.
fn permute<T>(items: &mut [T], order: &[usize]) {
    let mut done = vec![false; items.len()];
    for start in 0..items.len() {
        let mut at = start;
        while !done[at] {
            done[at] = true;
            let from = order.get(at).copied().unwrap_or(start);
            if from == start || from >= items.len() {
                break;
            }
            items.swap(at, from);
            at = from;
        }
    }
}

/// Reports and drops the persons flagged in `duplicate` (sorted input, first kept).
fn report_duplicates(
    file: &str,
    persons: &mut Vec<Person>,
    lines: &mut Vec<u64>,
    duplicate: &[bool],
    diagnostics: &mut Vec<Diagnostic>,
) {
    if duplicate.iter().any(|d| *d) {
        let mut first_line = 0;
        for ((person, line), dup) in persons.iter().zip(lines.iter()).zip(duplicate) {
            if !dup {
                first_line = *line;
                continue;
            }
            diagnostics.push(
                Diagnostic::error(
                    "duplicate_person",
                    format!(
                        "person \"{}\" is listed again (first at {file}:{first_line}); this one and its contracts are ignored",
                        person.external_id
                    ),
                )
                .at(at(file, *line))
                .for_person(person.external_id.clone()),
            );
        }
        let mut keep = duplicate.iter().map(|d| !d);
        persons.retain(|_| keep.next().unwrap_or(false));
        let mut keep = duplicate.iter().map(|d| !d);
        lines.retain(|_| keep.next().unwrap_or(false));
    }
}

/// A contract read apart from its person (CSV), or taken from a person record (JSON).
pub(crate) struct PendingContract {
    /// The person's external id, as a span of [`PersonIds`]: one string for all contracts
    /// instead of one allocation each.
    pub person: (usize, usize),
    pub contract: Contract,
    /// Where the contract starts in its file.
    pub line: u64,
}

/// The external ids that pending contracts refer to, one after another.
#[derive(Default)]
pub(crate) struct PersonIds(String);

impl PersonIds {
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        Self(String::with_capacity(bytes))
    }

    pub(crate) fn push(&mut self, id: &str) -> (usize, usize) {
        let start = self.0.len();
        self.0.push_str(id);
        (start, self.0.len())
    }

    fn get(&self, span: (usize, usize)) -> &str {
        self.0.get(span.0..span.1).unwrap_or_default()
    }
}

/// Contracts not yet attached, with which of them are first occurrences of their id.
pub(crate) struct Contracts {
    pub file: String,
    pub contracts: Vec<PendingContract>,
    pub person_ids: PersonIds,
    pub first: Vec<bool>,
}

/// Marks duplicate contract ids. Borrowing the ids keeps this allocation-light, and running
/// it right after parsing finds the ids still in the cache.
pub(crate) fn contracts(
    file: String,
    contracts: Vec<PendingContract>,
    person_ids: PersonIds,
) -> Contracts {
    let mut seen: HashSet<&str> = HashSet::with_capacity(contracts.len());
    let first = contracts
        .iter()
        .map(|p| seen.insert(p.contract.id.as_str()))
        .collect();
    Contracts {
        file,
        contracts,
        person_ids,
        first,
    }
}

/// Takes the contracts out of persons that carry them nested (JSON), so that they get the
/// same checks as contracts from a file of their own. Each gets its person's line.
pub(crate) fn nested_contracts(persons: &mut Persons) -> Contracts {
    let mut pending = Vec::new();
    let mut ids = PersonIds::default();
    for (person, line) in persons.persons.iter_mut().zip(&persons.lines) {
        for contract in std::mem::take(&mut person.contracts) {
            pending.push(PendingContract {
                person: ids.push(&person.external_id),
                contract,
                line: *line,
            });
        }
    }
    contracts(persons.file.clone(), pending, ids)
}

/// The department list, when the source has one.
pub(crate) struct Departments {
    pub departments: BTreeMap<String, Department>,
    pub diagnostics: Vec<Diagnostic>,
}

pub(crate) fn departments(file: &str, list: Vec<Department>, lines: &[u64]) -> Departments {
    let mut diagnostics = Vec::new();
    let mut departments: BTreeMap<String, Department> = BTreeMap::new();
    let mut first_lines: BTreeMap<String, u64> = BTreeMap::new();
    for (i, dept) in list.into_iter().enumerate() {
        let line = lines.get(i).copied().unwrap_or_default();
        if let Some(first) = first_lines.get(&dept.code) {
            diagnostics.push(
                Diagnostic::error(
                    "duplicate_department",
                    format!(
                        "department \"{}\" is listed again (first at {file}:{first}); this one is ignored",
                        dept.code
                    ),
                )
                .at(at(file, line)),
            );
            continue;
        }
        first_lines.insert(dept.code.clone(), line);
        departments.insert(dept.code.clone(), dept);
    }
    for dept in departments.values() {
        if !dept.parent.is_empty() && !departments.contains_key(&dept.parent) {
            let line = first_lines.get(&dept.code).copied().unwrap_or_default();
            diagnostics.push(
                Diagnostic::warning(
                    "department_unknown_parent",
                    format!(
                        "department \"{}\" has parent \"{}\", which is not in the department list; it is treated as a top-level department",
                        dept.code, dept.parent
                    ),
                )
                .at(at(file, line)),
            );
        }
    }
    Departments {
        departments,
        diagnostics,
    }
}

/// A number standing for an id: its first 15 bytes (zero-padded) and then its length (16 for
/// anything longer). Ordering by it agrees with ordering the strings wherever two keys
/// differ, so most comparisons need not read the string; and ids shorter than 16 bytes (most
/// employee numbers) are equal exactly when their keys are.
fn prefix(id: &str) -> u128 {
    let bytes = id.as_bytes();
    let mut buf = [0u8; 16];
    let n = bytes.len().min(15);
    buf[..n].copy_from_slice(&bytes[..n]);
    buf[15] = u8::try_from(bytes.len().min(16)).unwrap_or(16);
    u128::from_be_bytes(buf)
}

/// Whether a key holds its whole id, so that equal keys mean equal ids.
fn is_whole(key: u128) -> bool {
    key & 0xff < 16
}

/// Orders two ids by their keys, reading the strings (which may miss the cache) only when
/// long ids share a key.
fn cmp_ids<'a>(
    a_key: u128,
    a: impl FnOnce() -> &'a str,
    b_key: u128,
    b: impl FnOnce() -> &'a str,
) -> std::cmp::Ordering {
    a_key.cmp(&b_key).then_with(|| {
        if is_whole(a_key) {
            std::cmp::Ordering::Equal
        } else {
            a().cmp(b())
        }
    })
}

/// For each contract, the index of its person in `persons` (sorted by external id, with
/// `prefixes` their keys), by walking both sorted by id side by side. Searching each person
/// in a large vector would miss the cache at every step; contract files are mostly grouped
/// by person in id order already, and otherwise sorting compact keys is cheap.
fn match_persons(
    persons: &[Person],
    prefixes: &[u128],
    contracts: &Contracts,
) -> Vec<Option<usize>> {
    let spans: Vec<(usize, usize)> = contracts.contracts.iter().map(|c| c.person).collect();
    let id = |i: usize| contracts.person_ids.get(spans[i]);
    let keys: Vec<u128> = (0..spans.len()).map(|i| prefix(id(i))).collect();
    let cmp = |a: usize, b: usize| cmp_ids(keys[a], || id(a), keys[b], || id(b));
    let mut order: Vec<usize> = (0..keys.len()).collect();
    if !order.windows(2).all(|w| cmp(w[0], w[1]).is_le()) {
        order.sort_unstable_by(|&a, &b| cmp(a, b).then(a.cmp(&b)));
    }
    let mut slots = vec![None; keys.len()];
    let mut at = 0;
    for c in order {
        let person = |at: usize| {
            let p = persons.get(at)?;
            let key = *prefixes.get(at)?;
            Some(cmp_ids(key, || p.external_id.as_str(), keys[c], || id(c)))
        };
        while person(at) == Some(std::cmp::Ordering::Less) {
            at += 1;
        }
        if person(at) == Some(std::cmp::Ordering::Equal) {
            slots[c] = Some(at);
        }
    }
    slots
}

/// Attaches the contracts to their persons and builds the normalized snapshot. Diagnostics
/// come in the order departments, persons, contracts.
pub(crate) fn assemble(
    departments: Option<Departments>,
    persons: Persons,
    contracts: Contracts,
) -> Fetched {
    let (departments, mut diagnostics, given) = match departments {
        Some(d) => (d.departments, d.diagnostics, true),
        None => (BTreeMap::new(), Vec::new(), false),
    };
    diagnostics.extend(persons.diagnostics);
    let prefixes = persons.prefixes;
    let mut persons = persons.persons;
    let file = &contracts.file;

    // First pass, in file order: decide where each contract goes, count per person, report
    // problems.
    let matched = match_persons(&persons, &prefixes, &contracts);
    let mut slots: Vec<Option<usize>> = Vec::with_capacity(contracts.contracts.len());
    let mut counts = vec![0usize; persons.len()];
    for ((p, first), matched) in contracts
        .contracts
        .iter()
        .zip(&contracts.first)
        .zip(matched)
    {
        let c = &p.contract;
        let person = contracts.person_ids.get(p.person);
        if !first {
            diagnostics.push(
                Diagnostic::error(
                    "duplicate_contract",
                    format!("contract \"{}\" is listed again; this one is ignored", c.id),
                )
                .at(at(file, p.line))
                .for_person(person),
            );
            slots.push(None);
            continue;
        }
        let Some(slot) = matched else {
            diagnostics.push(
                Diagnostic::error(
                    "contract_unknown_person",
                    format!(
                        "contract \"{}\" belongs to person \"{}\", who is not in the persons list; the contract is ignored",
                        c.id, person
                    ),
                )
                .at(at(file, p.line))
                .for_person(person),
            );
            slots.push(None);
            continue;
        };
        if let Some(end) = c.end
            && end < c.start
        {
            diagnostics.push(
                Diagnostic::error(
                    "contract_ends_before_start",
                    format!(
                        "contract \"{}\" ends ({end}) before it starts ({}); it is kept but never active",
                        c.id, c.start
                    ),
                )
                .at(at(file, p.line))
                .for_person(person),
            );
        }
        if given && !c.department.is_empty() && !departments.contains_key(&c.department) {
            diagnostics.push(
                Diagnostic::warning(
                    "contract_unknown_department",
                    format!(
                        "contract \"{}\" names department \"{}\", which is not in the department list",
                        c.id, c.department
                    ),
                )
                .at(at(file, p.line))
                .for_person(person),
            );
        }
        counts[slot] += 1;
        slots.push(Some(slot));
    }

    // Second pass: move the contracts in, each person's list allocated once.
    for (person, count) in persons.iter_mut().zip(counts) {
        person.contracts.reserve_exact(count);
    }
    for (p, slot) in contracts.contracts.into_iter().zip(slots) {
        if let Some(slot) = slot {
            persons[slot].contracts.push(p.contract);
        }
    }

    let mut snapshot = Snapshot {
        persons,
        departments,
    };
    snapshot.normalize();
    Fetched {
        snapshot,
        diagnostics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_applies_an_order_in_place() {
        let mut items = vec!['a', 'b', 'c', 'd', 'e', 'f'];
        permute(&mut items, &[3, 0, 1, 2, 5, 4]);
        assert_eq!(items, ['d', 'a', 'b', 'c', 'f', 'e']);
        let mut same = vec![1, 2, 3];
        permute(&mut same, &[0, 1, 2]);
        assert_eq!(same, [1, 2, 3]);
    }

    #[test]
    fn key_order_agrees_with_string_order() {
        let mut ids: Vec<&str> = vec![
            "",
            "\u{0}",
            "a",
            "a\u{0}",
            "a\u{0}\u{0}",
            "ab",
            "b",
            "123456789012345",
            "1234567890123456",
            "12345678901234567",
            "123456789012345\u{0}",
            "12345678901234a",
            "123456789012345a",
            "123456789012345aa",
            "123456789012345z",
            "1234567890123",
        ];
        ids.sort();
        for w in ids.windows(2) {
            assert!(prefix(w[0]) <= prefix(w[1]), "{:?} {:?}", w[0], w[1]);
            if prefix(w[0]) == prefix(w[1]) {
                assert!(!is_whole(prefix(w[0])), "{:?} {:?}", w[0], w[1]);
            }
        }
    }

    #[test]
    fn contracts_find_their_persons_in_any_order_even_with_long_shared_prefixes() {
        let mut ids: Vec<String> = (0..50)
            .map(|i| format!("EMPLOYEE-NUMBER-{i:04}"))
            .chain(["", "a", "a\u{0}", "EMPLOYEE-NUMBER-", "1001", "100"].map(String::from))
            .collect();
        ids.sort();
        let persons: Vec<Person> = ids.iter().map(|id| person(id, "")).collect();
        let prefixes: Vec<u128> = ids.iter().map(|id| prefix(id)).collect();
        let wanted: Vec<&str> = vec![
            "EMPLOYEE-NUMBER-0007",
            "100",
            "nobody",
            "a\u{0}",
            "EMPLOYEE-NUMBER-0007",
            "",
            "EMPLOYEE-NUMBER-9999",
            "1001",
            "a",
            "10",
            "EMPLOYEE-NUMBER-0049",
            "EMPLOYEE-NUMBER-",
        ];
        for order in [wanted.clone(), {
            let mut w = wanted.clone();
            w.sort();
            w
        }] {
            let mut person_ids = PersonIds::default();
            let pending = order
                .iter()
                .map(|id| PendingContract {
                    person: person_ids.push(id),
                    contract: Contract::new("c", koppel_core::Date::default(), None),
                    line: 0,
                })
                .collect();
            let batch = contracts("c.csv".into(), pending, person_ids);
            let slots = match_persons(&persons, &prefixes, &batch);
            for (id, slot) in order.iter().zip(slots) {
                let expected = ids.iter().position(|known| known == id);
                assert_eq!(slot, expected, "{id:?}");
            }
        }
    }

    fn person(id: &str, given: &str) -> Person {
        let mut p = Person {
            external_id: id.into(),
            ..Person::default()
        };
        p.name.given = given.into();
        p
    }

    /// Sorted and unsorted input take different paths; both keep the first row.
    #[test]
    fn duplicate_persons_keep_the_first_row_sorted_or_not() {
        for (ids, lines) in [
            (["a", "a", "b"], [2, 3, 4]),
            (["b", "a", "a"], [2, 3, 4]),
            (["a", "b", "a"], [2, 3, 4]),
        ] {
            let list: Vec<Person> = ids
                .iter()
                .zip(lines)
                .map(|(id, line)| person(id, &line.to_string()))
                .collect();
            let linked = persons("p.csv".into(), list, lines.to_vec());
            let kept: Vec<_> = linked
                .persons
                .iter()
                .map(|p| (p.external_id.as_str(), p.name.given.as_str()))
                .collect();
            let first_a = ids.iter().position(|i| *i == "a").unwrap();
            let second_a = ids.iter().rposition(|i| *i == "a").unwrap();
            assert_eq!(
                kept[0],
                ("a", lines[first_a].to_string().as_str()),
                "{ids:?}"
            );
            assert_eq!(kept.len(), 2);
            assert_eq!(linked.lines.len(), 2);
            assert_eq!(linked.diagnostics.len(), 1);
            let at = linked.diagnostics[0].location.as_ref().unwrap();
            assert_eq!(at.line, Some(lines[second_a]), "{ids:?}");
        }
    }
}
