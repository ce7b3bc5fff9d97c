//! Known state: what koppel last wrote to each target, the state planning diffs against.
//! The store materialises it; the planner reads it and never writes it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::Date;
use crate::value::AttrValue;

/// One account in one target, as koppel last wrote it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnownAccount {
    /// The target's own reference (DN, id); empty until the target assigned one.
    pub reference: String,
    /// Attributes as last written, including generated ones.
    pub attributes: BTreeMap<String, AttrValue>,
    pub enabled: bool,
    pub permissions: BTreeSet<String>,
    /// When koppel disabled the account; retention for deletion counts from here.
    pub disabled_on: Option<Date>,
    /// Per generator, the candidate values its fields were generated from. A generator with
    /// `regenerate = "on_change"` runs again only when these change.
    pub generator_inputs: BTreeMap<String, Vec<String>>,
}

/// Everything known about one target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetState {
    /// By person external id.
    pub accounts: BTreeMap<String, KnownAccount>,
    /// Generated values given up by deleted accounts: field → value → day released. They are
    /// not handed out again within the generator's retention.
    pub released: BTreeMap<String, BTreeMap<String, Date>>,
}

/// What koppel knows about all targets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnownState {
    pub targets: BTreeMap<String, TargetState>,
}

impl KnownState {
    pub fn account(&self, target: &str, person: &str) -> Option<&KnownAccount> {
        self.targets.get(target)?.accounts.get(person)
    }
}

impl KnownState {
    /// Records the effect of an action the target carried out. Planning against the result
    /// gives no action for what was done: the executor and the store build on this.
    pub fn record(&mut self, action: &crate::plan::Action, now: Date) {
        let target = self.targets.entry(action.target.clone()).or_default();
        if action.kind == crate::plan::ActionKind::Delete {
            target.accounts.remove(&action.person);
            target.release(action, now);
            return;
        }
        target
            .accounts
            .entry(action.person.clone())
            .or_default()
            .apply(action, now);
    }
}

impl TargetState {
    /// Marks the generated values a delete gave up as released on `now`.
    pub fn release(&mut self, action: &crate::plan::Action, now: Date) {
        for (field, value) in &action.released {
            self.released
                .entry(field.clone())
                .or_default()
                .insert(value.clone(), now);
        }
    }
}

impl KnownAccount {
    /// The account after `action` was carried out. A delete is the caller's to handle: it
    /// removes the account rather than changing it.
    pub fn apply(&mut self, action: &crate::plan::Action, now: Date) {
        use crate::plan::ActionKind;
        match action.kind {
            ActionKind::Create => {
                self.attributes = action.attributes.clone();
                self.enabled = action.enabled.unwrap_or(true);
                self.disabled_on = None;
                self.generator_inputs = action.generator_inputs.clone();
            }
            ActionKind::Update => {
                for (name, change) in &action.changes {
                    if change.to.is_null() {
                        self.attributes.remove(name);
                    } else {
                        self.attributes.insert(name.clone(), change.to.clone());
                    }
                }
                for (g, inputs) in &action.generator_inputs {
                    self.generator_inputs.insert(g.clone(), inputs.clone());
                }
            }
            ActionKind::Enable => {
                self.enabled = true;
                self.disabled_on = None;
            }
            ActionKind::Disable => {
                self.enabled = false;
                self.disabled_on = Some(now);
            }
            ActionKind::Grant => {
                if let Some(p) = &action.permission {
                    self.permissions.insert(p.clone());
                }
            }
            ActionKind::Revoke => {
                if let Some(p) = &action.permission {
                    self.permissions.remove(p);
                }
            }
            ActionKind::Delete => {}
        }
    }
}
