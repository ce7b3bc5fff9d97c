//! HR records pushed to the daemon: checking the JSON (koppel's own person shape, the one
//! the JSON source reads; a single object or an array), and how a pushed record relates to
//! the file or API source.
//!
//! **The rule**: a pushed record stands in for the source's record of that person until the
//! source's own record of that person changes; then the source's wins. A push remembers a
//! digest of the record the source had for the person when the push arrived (its *base*);
//! each time the sources are read, a push whose base no longer matches the source's record
//! is dropped. So a push made before the nightly export carries the change is not undone by
//! that export, and the export's next change to the person (or a newer push) replaces it.

use std::collections::{BTreeMap, HashSet};

use koppel_core::{Contract, Person, Snapshot};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::runner::ApiError;

/// A pushed record standing in for the source's.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlay {
    pub person: Person,
    /// [`digest`] of the source's record it replaced; `""` when the source had none.
    pub base: String,
    pub pushed_at: String,
}

/// A digest of a person record (contracts sorted by id), for comparing records.
pub fn digest(p: &Person) -> String {
    let json = serde_json::to_vec(p).unwrap_or_default();
    let d = Sha256::digest(&json);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Puts the overlays into a snapshot just read from the sources (persons sorted by external
/// id) and returns the persons whose overlay no longer applies, removed from `overlays`:
/// the source's record changed since the push.
pub fn apply_overlays(
    snapshot: &mut Snapshot,
    overlays: &mut BTreeMap<String, Overlay>,
) -> Vec<String> {
    let mut dropped = Vec::new();
    for (id, o) in overlays.iter() {
        let source = snapshot.person(id).map(digest).unwrap_or_default();
        if source != o.base {
            dropped.push(id.clone());
            continue;
        }
        put_person(snapshot, o.person.clone());
    }
    for id in &dropped {
        overlays.remove(id);
    }
    dropped
}

/// Replaces the person with the same external id in a sorted snapshot, or inserts it in
/// order.
pub fn put_person(snapshot: &mut Snapshot, person: Person) {
    match snapshot
        .persons
        .binary_search_by(|p| p.external_id.as_str().cmp(&person.external_id))
    {
        Ok(i) => snapshot.persons[i] = person,
        Err(i) => snapshot.persons.insert(i, person),
    }
}

/// Removes a person from a sorted snapshot; returns whether there was one.
pub fn remove_person(snapshot: &mut Snapshot, id: &str) -> bool {
    match snapshot
        .persons
        .binary_search_by(|p| p.external_id.as_str().cmp(id))
    {
        Ok(i) => {
            snapshot.persons.remove(i);
            true
        }
        Err(_) => false,
    }
}

/// A JSON body that is one object or an array of objects.
fn records(body: &[u8], what: &str) -> Result<Vec<Value>, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not JSON (line {}, column {}): {}",
            e.line(),
            e.column(),
            e
        ))
    })?;
    let list = match value {
        Value::Array(list) => list,
        v @ Value::Object(_) => vec![v],
        _ => {
            return Err(ApiError::bad_request(format!(
                "expected a {what} object or an array of them"
            )));
        }
    };
    if list.is_empty() {
        return Err(ApiError::bad_request(format!("the array holds no {what}")));
    }
    Ok(list)
}

fn id_of(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .map(|s| format!(" ({key} {s:?})"))
        .unwrap_or_default()
}

/// Checks pushed persons: koppel's person JSON, every field known, a non-empty external id,
/// contracts with distinct non-empty ids, each person once. All problems at once; nothing
/// is taken when any record is bad.
pub fn parse_persons(body: &[u8]) -> Result<Vec<Person>, ApiError> {
    let list = records(body, "person")?;
    let mut problems = Vec::new();
    let mut out = Vec::with_capacity(list.len());
    let mut seen = HashSet::new();
    for (i, v) in list.into_iter().enumerate() {
        let label = format!("person [{i}]{}", id_of(&v, "external_id"));
        match serde_json::from_value::<Person>(v) {
            Ok(mut p) => {
                if p.external_id.trim().is_empty() {
                    problems.push(format!("{label}: external_id is empty"));
                    continue;
                }
                if !seen.insert(p.external_id.clone()) {
                    problems.push(format!("{label}: pushed twice in one request"));
                    continue;
                }
                if let Err(e) = check_contracts(&p.contracts) {
                    problems.push(format!("{label}: {e}"));
                    continue;
                }
                p.contracts.sort_by(|a, b| a.id.cmp(&b.id));
                out.push(p);
            }
            Err(e) => problems.push(format!("{label}: {e}")),
        }
    }
    finish(problems, out)
}

/// Checks pushed contracts: koppel's contract JSON plus `person`, the external id of the
/// person it belongs to.
pub fn parse_contracts(body: &[u8]) -> Result<Vec<(String, Contract)>, ApiError> {
    let list = records(body, "contract")?;
    let mut problems = Vec::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, v) in list.into_iter().enumerate() {
        let label = format!("contract [{i}]{}", id_of(&v, "id"));
        let Value::Object(mut map) = v else {
            problems.push(format!("{label}: not an object"));
            continue;
        };
        let person = match map.remove("person") {
            Some(Value::String(p)) if !p.trim().is_empty() => p,
            _ => {
                problems.push(format!(
                    "{label}: \"person\" (the external id of the person it belongs to) is missing or empty"
                ));
                continue;
            }
        };
        match serde_json::from_value::<Contract>(Value::Object(map)) {
            Ok(c) if c.id.trim().is_empty() => problems.push(format!("{label}: id is empty")),
            Ok(c) => out.push((person, c)),
            Err(e) => problems.push(format!("{label}: {e}")),
        }
    }
    finish(problems, out)
}

fn check_contracts(contracts: &[Contract]) -> Result<(), String> {
    let mut ids = HashSet::new();
    for c in contracts {
        if c.id.trim().is_empty() {
            return Err("a contract has an empty id".to_owned());
        }
        if !ids.insert(c.id.as_str()) {
            return Err(format!("contract id {:?} appears twice", c.id));
        }
        if c.end.is_some_and(|e| e < c.start) {
            return Err(format!("contract {:?} ends before it starts", c.id));
        }
    }
    Ok(())
}

/// At most this many problems are listed; the rest are counted.
const SHOWN: usize = 20;

fn finish<T>(problems: Vec<String>, out: Vec<T>) -> Result<Vec<T>, ApiError> {
    if problems.is_empty() {
        return Ok(out);
    }
    let n = problems.len();
    let mut message = format!(
        "{n} bad record{}; nothing was taken: {}",
        if n == 1 { "" } else { "s" },
        problems
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    );
    if n > SHOWN {
        message.push_str(&format!("; and {} more", n - SHOWN));
    }
    Err(ApiError::new(
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        message,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: &str, dept: &str) -> Person {
        let mut c = Contract::new(format!("{id}-1"), "2026-01-01".parse().unwrap(), None);
        c.department = dept.into();
        Person {
            external_id: id.into(),
            contracts: vec![c],
            ..Person::default()
        }
    }

    fn snapshot(persons: Vec<Person>) -> Snapshot {
        let mut s = Snapshot {
            persons,
            ..Snapshot::default()
        };
        s.normalize();
        s
    }

    #[test]
    fn a_push_stands_until_the_source_changes_that_person() {
        let old = person("1", "A");
        let pushed = person("1", "B");
        let mut overlays = BTreeMap::from([(
            "1".to_owned(),
            Overlay {
                person: pushed.clone(),
                base: digest(&old),
                pushed_at: "t".into(),
            },
        )]);
        // The source still has the record the push replaced: the push stands.
        let mut s = snapshot(vec![old.clone(), person("2", "A")]);
        assert!(apply_overlays(&mut s, &mut overlays).is_empty());
        assert_eq!(s.person("1").unwrap().contracts[0].department, "B");
        assert_eq!(s.persons.len(), 2);
        // The source moved on (here: to another department still): the source wins.
        let mut s = snapshot(vec![person("1", "C")]);
        assert_eq!(apply_overlays(&mut s, &mut overlays), ["1"]);
        assert_eq!(s.person("1").unwrap().contracts[0].department, "C");
        assert!(overlays.is_empty());
    }

    #[test]
    fn a_pushed_joiner_stays_until_the_source_has_them() {
        let mut overlays = BTreeMap::from([(
            "9".to_owned(),
            Overlay {
                person: person("9", "A"),
                base: String::new(),
                pushed_at: "t".into(),
            },
        )]);
        let mut s = snapshot(vec![person("1", "A")]);
        assert!(apply_overlays(&mut s, &mut overlays).is_empty());
        assert_eq!(
            s.persons
                .iter()
                .map(|p| p.external_id.as_str())
                .collect::<Vec<_>>(),
            ["1", "9"]
        );
        let mut s = snapshot(vec![person("9", "A")]);
        assert_eq!(apply_overlays(&mut s, &mut overlays), ["9"]);
    }

    #[test]
    fn bad_records_are_named_and_nothing_is_taken() {
        let body = br#"[{"external_id": "1"}, {"external_id": "", "name": {}},
            {"external_id": "3", "nmae": {}}, {"external_id": "1"},
            {"external_id": "5", "contracts": [{"id": "c", "start": "2026-02-01", "end": "2026-01-01"}]}]"#;
        let e = parse_persons(body).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.message.starts_with("4 bad records"), "{}", e.message);
        assert!(e.message.contains("person [1]"), "{}", e.message);
        assert!(
            e.message
                .contains("person [2] (external_id \"3\"): unknown field `nmae`"),
            "{}",
            e.message
        );
        assert!(e.message.contains("pushed twice"), "{}", e.message);
        assert!(e.message.contains("ends before it starts"), "{}", e.message);
        assert_eq!(parse_persons(b"{\"external_id\": \"7\"}").unwrap().len(), 1);
        assert_eq!(
            parse_persons(b"[1").unwrap_err().status,
            axum::http::StatusCode::BAD_REQUEST
        );
        assert!(parse_persons(b"\"x\"").is_err());
        assert!(parse_persons(b"[]").is_err());
    }

    #[test]
    fn contracts_name_their_person() {
        let ok = parse_contracts(
            br#"{"person": "1", "id": "1-2", "start": "2026-03-01", "department": "X"}"#,
        )
        .unwrap();
        assert_eq!(ok[0].0, "1");
        assert_eq!(ok[0].1.department, "X");
        let e = parse_contracts(br#"[{"id": "1-2", "start": "2026-03-01"}]"#).unwrap_err();
        assert!(e.message.contains("\"person\""), "{}", e.message);
        let e = parse_contracts(br#"[{"person": "1", "id": "1-2"}]"#).unwrap_err();
        assert!(e.message.contains("missing field `start`"), "{}", e.message);
    }
}
