//! Thresholds: a plan that would disable, delete, revoke or update more than a target allows
//! has those actions withheld until a person approves them; everything else goes ahead.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{CompiledConfig, Limit};
use crate::plan::{ActionKind, Plan};
use crate::state::KnownState;

/// One exceeded threshold: the actions of `kind` in `target` are withheld.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdBreach {
    pub target: String,
    pub kind: ActionKind,
    pub count: u64,
    /// Accounts koppel manages in the target: the base of a percentage.
    pub managed: u64,
    pub limit: Limit,
    pub allowed: u64,
}

impl std::fmt::Display for ThresholdBreach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "target {}: {} {} actions, the threshold is {} of {} managed accounts ({} allowed)",
            self.target,
            self.count,
            self.kind.as_str(),
            self.limit,
            self.managed,
            self.allowed
        )
    }
}

/// The thresholds `plan` exceeds, in target order then kind order. Updates and revokes are
/// counted per account, not per attribute or group: a mover with three new groups is one.
pub fn check(config: &CompiledConfig, plan: &Plan, known: &KnownState) -> Vec<ThresholdBreach> {
    let mut counts: BTreeMap<(&str, ActionKind), std::collections::BTreeSet<&str>> =
        BTreeMap::new();
    for a in &plan.actions {
        counts
            .entry((a.target.as_str(), a.kind))
            .or_default()
            .insert(a.person.as_str());
    }
    let mut out = Vec::new();
    for t in &config.targets {
        let managed = known.targets.get(&t.name).map_or(0, |s| s.accounts.len()) as u64;
        let limits = [
            (ActionKind::Update, t.thresholds.update),
            (ActionKind::Revoke, t.thresholds.revoke),
            (ActionKind::Disable, t.thresholds.disable),
            (ActionKind::Delete, t.thresholds.delete),
        ];
        for (kind, limit) in limits {
            let Some(limit) = limit else { continue };
            let count = counts.get(&(t.name.as_str(), kind)).map_or(0, |s| s.len()) as u64;
            let allowed = limit.allowed(managed);
            if count > allowed {
                out.push(ThresholdBreach {
                    target: t.name.clone(),
                    kind,
                    count,
                    managed,
                    limit,
                    allowed,
                });
            }
        }
    }
    out
}
