//! The HR model koppel reasons about: persons, their contracts and the department tree.
//! Plain data, filled by sources, read by expressions, rules and the planner.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// A calendar date. koppel plans per day: contracts start and end on dates, not instants.
pub type Date = NaiveDate;

/// How a person wants their family name written, as Dutch HR systems deliver it.
///
/// `B` is the birth name only, `P` the partner's name only, `BP` birth name then partner's
/// name ("Jansen-de Vries"), `PB` partner's name then birth name ("de Vries-Jansen").
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum NamingConvention {
    #[default]
    B,
    P,
    BP,
    PB,
}

impl NamingConvention {
    /// Parses the codes HR systems use. Empty means the default, birth name.
    pub fn parse(code: &str) -> Option<Self> {
        match code.trim().to_ascii_uppercase().as_str() {
            "" | "B" => Some(Self::B),
            "P" => Some(Self::P),
            "BP" => Some(Self::BP),
            "PB" => Some(Self::PB),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::B => "B",
            Self::P => "P",
            Self::BP => "BP",
            Self::PB => "PB",
        }
    }
}

/// The parts of a person's name. Empty strings mean "not given".
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PersonName {
    pub given: String,
    pub nickname: String,
    pub initials: String,
    pub family_prefix: String,
    pub family: String,
    pub partner_prefix: String,
    pub partner: String,
    pub convention: NamingConvention,
}

/// One human, keyed by the source's stable external id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Person {
    pub external_id: String,
    pub name: PersonName,
    pub email: String,
    pub phone: String,
    /// Source columns koppel has no field for, kept by name for mappings and rules.
    pub custom: BTreeMap<String, String>,
    /// An excluded person keeps what they have; nothing is granted or revoked for them.
    pub excluded: bool,
    pub contracts: Vec<Contract>,
}

/// A job title or job profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Title {
    pub code: String,
    pub name: String,
}

/// One employment or assignment of a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    pub id: String,
    pub start: Date,
    #[serde(default)]
    pub end: Option<Date>,
    /// Department code, a key into the department tree.
    #[serde(default)]
    pub department: String,
    #[serde(default)]
    pub title: Title,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub cost_centre: String,
    /// External id of the manager named on the contract itself, if any.
    #[serde(default)]
    pub manager: String,
    #[serde(default)]
    pub employment_type: String,
    #[serde(default)]
    pub fte: Option<f64>,
    #[serde(default)]
    pub hours_per_week: Option<f64>,
    #[serde(default)]
    pub sequence: i64,
}

impl Contract {
    /// A contract with only the fields every contract has; the rest empty.
    pub fn new(id: impl Into<String>, start: Date, end: Option<Date>) -> Self {
        Self {
            id: id.into(),
            start,
            end,
            department: String::new(),
            title: Title::default(),
            location: String::new(),
            cost_centre: String::new(),
            manager: String::new(),
            employment_type: String::new(),
            fte: None,
            hours_per_week: None,
            sequence: 0,
        }
    }

    /// Active on `date` when start ≤ date ≤ end; an open end never ends.
    pub fn is_active_on(&self, date: Date) -> bool {
        self.start <= date && self.end.is_none_or(|end| date <= end)
    }
}

impl Person {
    /// A person is active on a date when one of their contracts is.
    pub fn is_active_on(&self, date: Date) -> bool {
        self.contracts.iter().any(|c| c.is_active_on(date))
    }
}

/// An org unit in the department tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Department {
    pub code: String,
    pub name: String,
    pub parent: String,
    /// External id of the department's manager.
    pub manager: String,
}

/// Everything one fetch of the sources delivered: persons sorted by external id, and the
/// department tree.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Snapshot {
    pub persons: Vec<Person>,
    pub departments: BTreeMap<String, Department>,
}

impl Snapshot {
    /// Sorts persons by external id and each person's contracts by id, so that everything
    /// computed from a snapshot is deterministic whatever order the source delivered.
    pub fn normalize(&mut self) {
        self.persons
            .sort_by(|a, b| a.external_id.cmp(&b.external_id));
        for p in &mut self.persons {
            p.contracts.sort_by(|a, b| a.id.cmp(&b.id));
        }
    }

    /// The person with this external id, if the (normalized) snapshot has one.
    pub fn person(&self, external_id: &str) -> Option<&Person> {
        self.persons
            .binary_search_by(|p| p.external_id.as_str().cmp(external_id))
            .ok()
            .map(|i| &self.persons[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[test]
    fn contract_activity_is_inclusive_on_both_ends_and_open_end_never_ends() {
        let c = Contract::new("c1", d("2026-01-01"), Some(d("2026-03-31")));
        assert!(!c.is_active_on(d("2025-12-31")));
        assert!(c.is_active_on(d("2026-01-01")));
        assert!(c.is_active_on(d("2026-03-31")));
        assert!(!c.is_active_on(d("2026-04-01")));
        let open = Contract::new("c2", d("2026-01-01"), None);
        assert!(open.is_active_on(d("2099-12-31")));
        assert!(!open.is_active_on(d("2025-12-31")));
    }

    #[test]
    fn naming_convention_codes() {
        assert_eq!(NamingConvention::parse(""), Some(NamingConvention::B));
        assert_eq!(NamingConvention::parse(" bp "), Some(NamingConvention::BP));
        assert_eq!(NamingConvention::parse("PB"), Some(NamingConvention::PB));
        assert_eq!(NamingConvention::parse("X"), None);
    }
}
