//! The audit log's hash chain: canonical bytes of an entry, its hash, and the check that
//! finds entries changed, removed or reordered. Pure: the SQL lives in `sqlite`.
//!
//! `hash = sha256(prev_hash || canonical)` in lowercase hex, where `canonical` is JSON with a
//! fixed field order built from the stored column texts themselves. Verifying therefore
//! needs no parsing, and changing any column, even to an equivalent JSON text, is caught.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::types::{AuditProblem, AuditProblemKind, AuditRecord};

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An audit entry's columns as text, exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditRow {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub event: String,
    pub plan_id: Option<String>,
    pub target: Option<String>,
    pub person: Option<String>,
    pub action: Option<String>,
    pub permission: Option<String>,
    pub before: String,
    pub after: String,
    pub reasons: String,
    pub error: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRow {
    /// The columns of a new record; `prev_hash` and `hash` are filled by [`AuditRow::seal`].
    pub fn from_record(seq: i64, r: &AuditRecord) -> Result<Self, StoreError> {
        let reasons = serde_json::to_string(&r.reasons).map_err(|e| StoreError::Encode {
            what: "audit reasons",
            message: e.to_string(),
        })?;
        Ok(Self {
            seq,
            at: r.at.clone(),
            actor: r.actor.clone(),
            event: r.event.as_str().to_owned(),
            plan_id: r.plan_id.clone(),
            target: r.target.clone(),
            person: r.person.clone(),
            action: r.action.map(|a| a.as_str().to_owned()),
            permission: r.permission.clone(),
            before: canonical_json(&r.before),
            after: canonical_json(&r.after),
            reasons,
            error: r.error.clone(),
            prev_hash: String::new(),
            hash: String::new(),
        })
    }

    /// Chains the row after `prev_hash`.
    pub fn seal(&mut self, prev_hash: &str) {
        self.prev_hash = prev_hash.to_owned();
        self.hash = self.hash_at(self.seq);
    }

    /// The hash this row would have if it had been written as entry `seq` after its
    /// stored `prev_hash`.
    fn hash_at(&self, seq: i64) -> String {
        let mut h = Sha256::new();
        h.update(self.prev_hash.as_bytes());
        h.update(self.canonical(seq).as_bytes());
        hex(&h.finalize())
    }

    /// The canonical bytes of (seq, record): a JSON object in a fixed field order whose
    /// JSON-valued fields are the stored texts verbatim.
    fn canonical(&self, seq: i64) -> String {
        let mut s =
            String::with_capacity(200 + self.before.len() + self.after.len() + self.reasons.len());
        let _ = write!(s, "{{\"seq\":{seq}");
        field(&mut s, "at", Some(&self.at));
        field(&mut s, "actor", Some(&self.actor));
        field(&mut s, "event", Some(&self.event));
        field(&mut s, "plan_id", self.plan_id.as_deref());
        field(&mut s, "target", self.target.as_deref());
        field(&mut s, "person", self.person.as_deref());
        field(&mut s, "action", self.action.as_deref());
        field(&mut s, "permission", self.permission.as_deref());
        raw_field(&mut s, "before", &self.before);
        raw_field(&mut s, "after", &self.after);
        raw_field(&mut s, "reasons", &self.reasons);
        field(&mut s, "error", self.error.as_deref());
        s.push('}');
        s
    }

    fn is_sealed_at(&self, seq: i64) -> bool {
        self.hash_at(seq) == self.hash
    }
}

fn field(s: &mut String, name: &str, value: Option<&str>) {
    let _ = write!(s, ",\"{name}\":");
    match value {
        Some(v) => json_str(s, v),
        None => s.push_str("null"),
    }
}

fn raw_field(s: &mut String, name: &str, raw: &str) {
    let _ = write!(s, ",\"{name}\":");
    // The stored text is used as it is, also when it is not valid JSON: a tampered column
    // must change the hash, not stop the check.
    s.push_str(raw);
}

fn json_str(s: &mut String, v: &str) {
    // serde_json's string escaping is fixed and total: the same text gives the same bytes.
    match serde_json::to_string(v) {
        Ok(q) => s.push_str(&q),
        Err(_) => unreachable!("serializing a str cannot fail"),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// JSON with object keys sorted at every level, whatever serde_json's `preserve_order`
/// feature says: the hash must not depend on how another crate built the workspace.
pub(crate) fn canonical_json(v: &Value) -> String {
    let mut s = String::new();
    write_canonical(&mut s, v);
    s
}

fn write_canonical(s: &mut String, v: &Value) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            s.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                json_str(s, k);
                s.push(':');
                write_canonical(s, &map[k]);
            }
            s.push('}');
        }
        Value::Array(items) => {
            s.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                write_canonical(s, item);
            }
            s.push(']');
        }
        // Scalars have one serde_json rendering.
        other => s.push_str(&other.to_string()),
    }
}

/// The problems of a chain: `rows` in stored seq order, `head` the stored chain head
/// (last seq and hash; `None` when the head row itself is gone).
pub(crate) fn verify_chain(rows: &[AuditRow], head: Option<(i64, &str)>) -> Vec<AuditProblem> {
    let mut problems = Vec::new();
    let mut reported: BTreeSet<(i64, AuditProblemKind)> = BTreeSet::new();
    let mut report =
        |problems: &mut Vec<AuditProblem>, seq: i64, what: AuditProblemKind, detail: String| {
            if reported.insert((seq, what)) {
                problems.push(AuditProblem {
                    seq: seq.max(0) as u64,
                    what,
                    detail,
                });
            }
        };

    // Where each row was written: its stored seq when it hashes at that seq; otherwise the
    // place its neighbours in the chain give it, when it hashes there (a moved row).
    let mut written: Vec<Option<i64>> = rows
        .iter()
        .map(|r| r.is_sealed_at(r.seq).then_some(r.seq))
        .collect();
    let mut by_hash: HashMap<&str, usize> = HashMap::new();
    let mut by_prev: HashMap<&str, usize> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        by_hash.entry(&r.hash).or_insert(i);
        by_prev.entry(&r.prev_hash).or_insert(i);
    }
    let mut tried: Vec<BTreeSet<i64>> = vec![BTreeSet::new(); rows.len()];
    loop {
        let mut progress = false;
        for i in 0..rows.len() {
            if written[i].is_some() {
                continue;
            }
            let r = &rows[i];
            let mut candidates = Vec::new();
            if r.prev_hash == GENESIS_HASH {
                candidates.push(1);
            } else if let Some(&j) = by_hash.get(r.prev_hash.as_str())
                && let Some(s) = written[j]
            {
                candidates.push(s + 1);
            }
            if let Some(&k) = by_prev.get(r.hash.as_str())
                && let Some(s) = written[k]
            {
                candidates.push(s - 1);
            }
            if let Some((hs, hh)) = head
                && hh == r.hash
            {
                candidates.push(hs);
            }
            for c in candidates {
                if c != r.seq && tried[i].insert(c) && r.is_sealed_at(c) {
                    written[i] = Some(c);
                    progress = true;
                    break;
                }
            }
        }
        if !progress {
            break;
        }
    }

    for (i, r) in rows.iter().enumerate() {
        match written[i] {
            None => report(
                &mut problems,
                r.seq,
                AuditProblemKind::Changed,
                "its content or hash no longer matches what was written".to_owned(),
            ),
            Some(w) if w != r.seq => report(
                &mut problems,
                r.seq,
                AuditProblemKind::Reordered,
                format!("it was written as entry {w}"),
            ),
            Some(_) => {}
        }
    }

    // Walk the chain in written order: gaps are removed entries; a broken link between two
    // intact entries means the earlier one was replaced by a forged one.
    let mut order: Vec<(i64, usize)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (written[i].unwrap_or(r.seq), i))
        .collect();
    order.sort();
    let mut expected_seq = 1i64;
    let mut expected_prev: &str = GENESIS_HASH;
    let mut prev_intact = true;
    for &(seq, i) in &order {
        let r = &rows[i];
        let intact = written[i].is_some();
        if seq > expected_seq {
            let detail = if seq - expected_seq == 1 {
                "it is missing from the chain".to_owned()
            } else {
                format!("entries {expected_seq} to {} are missing", seq - 1)
            };
            report(
                &mut problems,
                expected_seq,
                AuditProblemKind::Removed,
                detail,
            );
        } else if seq < expected_seq {
            report(
                &mut problems,
                r.seq,
                AuditProblemKind::Changed,
                format!("it duplicates entry {seq}"),
            );
            continue;
        } else if intact && prev_intact && r.prev_hash != expected_prev {
            report(
                &mut problems,
                seq - 1,
                AuditProblemKind::Changed,
                format!("entry {seq} was not chained to it: it was replaced"),
            );
        }
        expected_seq = seq + 1;
        expected_prev = &r.hash;
        prev_intact = intact;
    }

    let last = expected_seq - 1;
    match head {
        None => report(
            &mut problems,
            last,
            AuditProblemKind::Removed,
            "the chain head record is missing, so removed last entries cannot be ruled out"
                .to_owned(),
        ),
        Some((hs, _)) if hs > last => {
            let detail = if hs - last == 1 {
                "the last entry is missing".to_owned()
            } else {
                format!("the last entries, {} to {hs}, are missing", last + 1)
            };
            report(&mut problems, last + 1, AuditProblemKind::Removed, detail);
        }
        Some((hs, hh)) if hs == last => {
            if hs > 0 && expected_prev != hh {
                report(
                    &mut problems,
                    hs,
                    AuditProblemKind::Changed,
                    "it does not match the chain head".to_owned(),
                );
            }
        }
        Some((hs, _)) => {
            for &(seq, i) in &order {
                if seq > hs {
                    report(
                        &mut problems,
                        rows[i].seq,
                        AuditProblemKind::Changed,
                        "it was added after the chain head, not by koppel".to_owned(),
                    );
                }
            }
        }
    }
    problems.sort_by_key(|p| p.seq);
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::AuditEvent;

    fn chain(n: i64) -> Vec<AuditRow> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let rec = AuditRecord {
                    at: format!("2026-03-01T10:00:{seq:02}Z"),
                    actor: "koppel apply".into(),
                    event: AuditEvent::Applied,
                    plan_id: Some("p1".into()),
                    target: Some("ad".into()),
                    person: Some(format!("P{seq}")),
                    action: Some(koppel_core::ActionKind::Grant),
                    permission: Some("g".into()),
                    before: serde_json::json!({"b": 1, "a": [1, "x"]}),
                    after: Value::Null,
                    reasons: vec![],
                    error: None,
                };
                let mut r = AuditRow::from_record(seq, &rec).unwrap();
                r.seal(&prev);
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    fn head(rows: &[AuditRow]) -> Option<(i64, &str)> {
        rows.last().map(|r| (r.seq, r.hash.as_str()))
    }

    fn kinds(p: &[AuditProblem]) -> Vec<(u64, AuditProblemKind)> {
        p.iter().map(|p| (p.seq, p.what)).collect()
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = serde_json::json!({"b": {"z": 1, "a": [{"y": 2, "x": 3}]}, "a": "é\"\n"});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":"é\"\n","b":{"a":[{"x":3,"y":2}],"z":1}}"#
        );
    }

    #[test]
    fn intact_chain_has_no_problem() {
        let rows = chain(5);
        assert!(verify_chain(&rows, head(&rows)).is_empty());
        assert!(verify_chain(&[], Some((0, GENESIS_HASH))).is_empty());
    }

    #[test]
    fn each_tampering_is_named() {
        let rows = chain(6);
        let h = rows[5].hash.clone();

        let mut changed = rows.clone();
        changed[2].actor = "mallory".into();
        assert_eq!(
            kinds(&verify_chain(&changed, Some((6, &h)))),
            [(3, AuditProblemKind::Changed)]
        );

        let mut rehashed = rows.clone();
        rehashed[2].hash = "ab".repeat(32);
        assert_eq!(
            kinds(&verify_chain(&rehashed, Some((6, &h)))),
            [(3, AuditProblemKind::Changed)]
        );

        let mut forged = rows.clone();
        forged[2].actor = "mallory".into();
        let prev = forged[1].hash.clone();
        forged[2].seal(&prev);
        assert_eq!(
            kinds(&verify_chain(&forged, Some((6, &h)))),
            [(3, AuditProblemKind::Changed)]
        );

        let mut removed = rows.clone();
        removed.remove(3);
        assert_eq!(
            kinds(&verify_chain(&removed, Some((6, &h)))),
            [(4, AuditProblemKind::Removed)]
        );

        let mut cut = rows.clone();
        cut.pop();
        assert_eq!(
            kinds(&verify_chain(&cut, Some((6, &h)))),
            [(6, AuditProblemKind::Removed)]
        );
        assert_eq!(
            kinds(&verify_chain(&rows, None)),
            [(6, AuditProblemKind::Removed)]
        );

        let mut swapped = rows.clone();
        swapped.swap(1, 4);
        swapped[1].seq = 2;
        swapped[4].seq = 5;
        assert_eq!(
            kinds(&verify_chain(&swapped, Some((6, &h)))),
            [
                (2, AuditProblemKind::Reordered),
                (5, AuditProblemKind::Reordered)
            ]
        );

        let mut last_swapped = rows.clone();
        last_swapped.swap(4, 5);
        last_swapped[4].seq = 5;
        last_swapped[5].seq = 6;
        assert_eq!(
            kinds(&verify_chain(&last_swapped, Some((6, &h)))),
            [
                (5, AuditProblemKind::Reordered),
                (6, AuditProblemKind::Reordered)
            ]
        );
    }
}
