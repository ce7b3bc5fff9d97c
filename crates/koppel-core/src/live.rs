//! Values that live targets hold outside koppel's known state, read before planning, so a
//! generator never hands out a username or e-mail address some other account already has.
//!
//! The binary fills this from each target's accounts (one paged read for a directory); the
//! planner stays pure and only looks values up. Each value remembers the correlation value of
//! the account holding it: when that is the person being planned, the account is theirs
//! (it will be adopted), and its value counts as free for them.

use std::collections::{BTreeMap, HashMap};

/// Live values per target and field, compared case-insensitively like directories do.
#[derive(Debug, Clone, Default)]
pub struct LiveValues {
    targets: BTreeMap<String, HashMap<String, HashMap<String, Option<String>>>>,
}

impl LiveValues {
    pub fn new() -> LiveValues {
        LiveValues::default()
    }

    /// Records that an account of `target` whose correlation attribute is `holder` (if it
    /// has one) holds `value` in `field`.
    pub fn insert(&mut self, target: &str, field: &str, value: &str, holder: Option<&str>) {
        self.targets
            .entry(target.to_owned())
            .or_default()
            .entry(field.to_owned())
            .or_default()
            .insert(value.to_lowercase(), holder.map(str::to_lowercase));
    }

    /// Who holds `value` (any case) in `field` of `target`: `None` when no live account does,
    /// `Some(None)` when one without a correlation value does.
    pub fn holder(&self, target: &str, field: &str, value: &str) -> Option<Option<&str>> {
        let live = self.target(target)?;
        live.holder(field, value)
            .or_else(|| live.holder(field, &value.to_lowercase()))
    }

    /// True when nothing was read for `target`.
    pub fn is_empty_for(&self, target: &str) -> bool {
        self.target(target).is_none()
    }

    /// The values read for `target`; `None` when nothing was.
    pub(crate) fn target(&self, target: &str) -> Option<LiveTarget<'_>> {
        self.targets
            .get(target)
            .filter(|fields| !fields.is_empty())
            .map(LiveTarget)
    }

    /// How many values were read, over every target and field.
    pub fn len(&self) -> usize {
        self.targets
            .values()
            .flat_map(HashMap::values)
            .map(HashMap::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The live values of one target.
#[derive(Clone, Copy)]
pub(crate) struct LiveTarget<'a>(&'a HashMap<String, HashMap<String, Option<String>>>);

impl<'a> LiveTarget<'a> {
    /// Who holds `lowercased` in `field`, as [`LiveValues::holder`], for a value already
    /// lowercased: the generators' check of every candidate lowercases it once.
    pub(crate) fn holder(self, field: &str, lowercased: &str) -> Option<Option<&'a str>> {
        Some(self.0.get(field)?.get(lowercased)?.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case_and_keep_the_holder() {
        let mut live = LiveValues::new();
        live.insert("ad", "sAMAccountName", "JDoe", Some("E100"));
        live.insert("ad", "mail", "x@example.test", None);
        assert_eq!(
            live.holder("ad", "sAMAccountName", "jdoe"),
            Some(Some("e100"))
        );
        assert_eq!(
            live.holder("ad", "sAMAccountName", "JDOE"),
            Some(Some("e100"))
        );
        assert_eq!(live.holder("ad", "mail", "X@example.test"), Some(None));
        assert_eq!(live.holder("ad", "sAMAccountName", "other"), None);
        assert_eq!(live.holder("ldap", "sAMAccountName", "jdoe"), None);
        assert_eq!(live.len(), 2);
        assert!(live.is_empty_for("ldap"));
        assert!(!live.is_empty_for("ad"));
    }
}
