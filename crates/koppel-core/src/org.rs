//! The organisation as rules see it: the department tree (ancestry, managers) and the choice
//! of a person's primary contract.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Contract, Date, Department, Person};

/// The department tree with the lookups rules need. Built once per run.
#[derive(Debug, Clone, Default)]
pub struct Org {
    /// In code order.
    departments: Vec<Department>,
    /// Department code → index into `departments`, and each index's parent index:
    /// `in_tree` runs for every contract under many rules and mappings read department names
    /// for every account, so lookups hash once and walks follow integers, not string-keyed
    /// maps.
    ids: std::collections::HashMap<String, u32, FxBuild>,
    parents: Vec<Option<u32>>,
}

/// rustc's FxHash, for the department-code lookups of `in_tree`: two per call, for every
/// contract under every department rule, where SipHash showed in profiles. The keys are the
/// organisation's own department codes, a few thousand, so hash flooding is not a concern.
#[derive(Default, Clone, Copy)]
struct Fx(u64);

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl std::hash::Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxBuild = std::hash::BuildHasherDefault<Fx>;

/// Deep trees exist, but a parent chain longer than this is a cycle in the source data.
const MAX_DEPTH: usize = 64;

impl Org {
    pub fn new(departments: BTreeMap<String, Department>) -> Self {
        let ids: std::collections::HashMap<String, u32, FxBuild> = departments
            .keys()
            .enumerate()
            .map(|(i, k)| (k.clone(), i as u32))
            .collect();
        let parents = departments
            .values()
            .map(|d| {
                if d.parent.is_empty() || d.parent == d.code {
                    None
                } else {
                    ids.get(&d.parent).copied()
                }
            })
            .collect();
        Self {
            departments: departments.into_values().collect(),
            ids,
            parents,
        }
    }

    pub fn department(&self, code: &str) -> Option<&Department> {
        let id = *self.ids.get(code)?;
        self.departments.get(id as usize)
    }

    /// Every department, in code order.
    pub fn departments(&self) -> &[Department] {
        &self.departments
    }

    /// The department and its ancestors, nearest first. Stops at an unknown parent or a cycle.
    pub fn ancestry<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a Department> + 'a {
        let mut next = self.ids.get(code).copied();
        let mut seen = 0usize;
        std::iter::from_fn(move || {
            let id = next? as usize;
            seen += 1;
            next = if seen >= MAX_DEPTH {
                None
            } else {
                self.parents.get(id).copied().flatten()
            };
            self.departments.get(id)
        })
    }

    /// True when `code` is `root` or lies below it.
    pub fn in_tree(&self, code: &str, root: &str) -> bool {
        let (Some(&start), Some(&root)) = (self.ids.get(code), self.ids.get(root)) else {
            return false;
        };
        let mut current = Some(start);
        for _ in 0..MAX_DEPTH {
            match current {
                Some(id) if id == root => return true,
                Some(id) => current = self.parents.get(id as usize).copied().flatten(),
                None => return false,
            }
        }
        false
    }

    /// The manager of a contract: the one named on the contract, else the manager of its
    /// department, walking up the tree; never the person themself.
    pub fn manager_of(&self, person: &Person, contract: &Contract) -> Option<String> {
        let me = person.external_id.as_str();
        if !contract.manager.is_empty() && contract.manager != me {
            return Some(contract.manager.clone());
        }
        self.ancestry(&contract.department)
            .map(|d| d.manager.as_str())
            .find(|m| !m.is_empty() && *m != me)
            .map(str::to_owned)
    }
}

/// A key the primary contract ordering sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContractKey {
    Fte,
    HoursPerWeek,
    Sequence,
    /// End date; an open end counts as the latest.
    End,
    Start,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Asc,
    Desc,
}

/// One step of the primary contract ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderKey {
    pub key: ContractKey,
    pub direction: Direction,
}

/// How the primary contract is chosen. Active contracts always come before inactive ones;
/// then the keys decide, then the contract id, so that the choice is never arbitrary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryOrdering {
    pub keys: Vec<OrderKey>,
}

impl Default for PrimaryOrdering {
    /// fte desc, hours desc, sequence desc, end desc (open end first), start asc.
    fn default() -> Self {
        use ContractKey::*;
        use Direction::*;
        let k = |key, direction| OrderKey { key, direction };
        Self {
            keys: vec![
                k(Fte, Desc),
                k(HoursPerWeek, Desc),
                k(Sequence, Desc),
                k(End, Desc),
                k(Start, Asc),
            ],
        }
    }
}

impl PrimaryOrdering {
    fn compare(&self, a: &Contract, b: &Contract) -> Ordering {
        for k in &self.keys {
            let ord = match k.key {
                ContractKey::Fte => cmp_f64(a.fte, b.fte),
                ContractKey::HoursPerWeek => cmp_f64(a.hours_per_week, b.hours_per_week),
                ContractKey::Sequence => a.sequence.cmp(&b.sequence),
                // None (open end) sorts as the latest end.
                ContractKey::End => match (a.end, b.end) {
                    (None, None) => Ordering::Equal,
                    (None, Some(_)) => Ordering::Greater,
                    (Some(_), None) => Ordering::Less,
                    (Some(x), Some(y)) => x.cmp(&y),
                },
                ContractKey::Start => a.start.cmp(&b.start),
            };
            let ord = match k.direction {
                Direction::Asc => ord,
                Direction::Desc => ord.reverse(),
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        a.id.cmp(&b.id)
    }

    /// The primary contract among `contracts` on `date`, preferring active ones.
    pub fn primary<'a>(&self, contracts: &'a [Contract], date: Date) -> Option<&'a Contract> {
        contracts.iter().min_by(|a, b| {
            b.is_active_on(date)
                .cmp(&a.is_active_on(date))
                .then_with(|| self.compare(a, b))
        })
    }
}

/// Missing numbers sort below every number.
fn cmp_f64(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => x.total_cmp(&y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        s.parse().unwrap()
    }

    fn dept(code: &str, parent: &str, manager: &str) -> Department {
        Department {
            code: code.into(),
            name: code.into(),
            parent: parent.into(),
            manager: manager.into(),
        }
    }

    fn org() -> Org {
        Org::new(
            [
                dept("ROOT", "", "ceo"),
                dept("FIN", "ROOT", ""),
                dept("FIN-AP", "FIN", "boss"),
                dept("LOOP1", "LOOP2", ""),
                dept("LOOP2", "LOOP1", ""),
            ]
            .into_iter()
            .map(|d| (d.code.clone(), d))
            .collect(),
        )
    }

    #[test]
    fn ancestry_walks_up_and_survives_cycles() {
        let o = org();
        let chain: Vec<_> = o.ancestry("FIN-AP").map(|d| d.code.as_str()).collect();
        assert_eq!(chain, ["FIN-AP", "FIN", "ROOT"]);
        assert!(o.in_tree("FIN-AP", "FIN"));
        assert!(o.in_tree("FIN", "FIN"));
        assert!(!o.in_tree("FIN", "FIN-AP"));
        assert!(!o.in_tree("", "FIN"));
        assert!(!o.in_tree("LOOP1", "FIN"));
        assert!(o.ancestry("LOOP1").count() <= MAX_DEPTH);
    }

    #[test]
    fn manager_from_contract_then_department_chain_never_self() {
        let o = org();
        let mut p = Person {
            external_id: "boss".into(),
            ..Default::default()
        };
        let mut c = Contract::new("c", d("2026-01-01"), None);
        c.department = "FIN-AP".into();
        // The department's manager is the person themself: walk further up.
        assert_eq!(o.manager_of(&p, &c).as_deref(), Some("ceo"));
        p.external_id = "clerk".into();
        assert_eq!(o.manager_of(&p, &c).as_deref(), Some("boss"));
        c.manager = "direct".into();
        assert_eq!(o.manager_of(&p, &c).as_deref(), Some("direct"));
        c.manager = "clerk".into();
        assert_eq!(o.manager_of(&p, &c).as_deref(), Some("boss"));
        p.external_id = "ceo".into();
        c.manager.clear();
        c.department = "ROOT".into();
        assert_eq!(o.manager_of(&p, &c), None);
    }

    #[test]
    fn default_primary_ordering() {
        let now = d("2026-06-01");
        let mut a = Contract::new("a", d("2026-01-01"), None);
        let mut b = Contract::new("b", d("2025-01-01"), Some(d("2026-12-31")));
        a.fte = Some(0.5);
        b.fte = Some(0.8);
        let ord = PrimaryOrdering::default();
        assert_eq!(ord.primary(&[a.clone(), b.clone()], now).unwrap().id, "b");
        // Equal fte and hours, sequence decides.
        b.fte = Some(0.5);
        a.sequence = 2;
        b.sequence = 1;
        assert_eq!(ord.primary(&[b.clone(), a.clone()], now).unwrap().id, "a");
        // All equal: open end beats a set end.
        a.sequence = 1;
        assert_eq!(ord.primary(&[b.clone(), a.clone()], now).unwrap().id, "a");
        // Same end: earlier start wins.
        b.end = None;
        assert_eq!(ord.primary(&[a.clone(), b.clone()], now).unwrap().id, "b");
        // An active contract beats a bigger inactive one.
        let mut future = Contract::new("f", d("2027-01-01"), None);
        future.fte = Some(1.0);
        assert_eq!(
            ord.primary(&[future.clone(), a.clone()], now).unwrap().id,
            "a"
        );
        // No active one: the ordering alone decides.
        assert_eq!(
            ord.primary(&[future.clone(), a.clone()], d("2020-01-01"))
                .unwrap()
                .id,
            "f"
        );
        assert!(ord.primary(&[], now).is_none());
    }
}
