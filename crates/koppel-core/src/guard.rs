//! Source guards: a snapshot that adds, removes or blocks more persons than allowed holds the
//! whole run, so a truncated HR export never disables half the organisation.

use serde::{Deserialize, Serialize};

use crate::config::{Guards, Limit};

/// How the population changed since the previous snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopulationChange {
    /// Persons in the previous snapshot; `None` on the very first run.
    pub previous: Option<u64>,
    pub current: u64,
    pub added: u64,
    pub removed: u64,
    pub blocked: u64,
}

/// One guard that was exceeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardBreach {
    pub guard: String,
    pub count: u64,
    /// The population the percentage is taken of.
    pub base: u64,
    pub limit: Limit,
    pub allowed: u64,
}

impl std::fmt::Display for GuardBreach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} persons {}: {} of {}, the limit is {} ({} allowed)",
            self.count, self.guard, self.count, self.base, self.limit, self.allowed
        )
    }
}

/// The guards `change` exceeds. Added and removed are measured against the previous snapshot
/// (and not checked on a first run); blocked against the current one.
pub fn check(guards: &Guards, change: &PopulationChange) -> Vec<GuardBreach> {
    let mut out = Vec::new();
    let mut test = |guard: &str, limit: Option<Limit>, count: u64, base: u64| {
        if let Some(limit) = limit {
            let allowed = limit.allowed(base);
            if count > allowed {
                out.push(GuardBreach {
                    guard: guard.to_owned(),
                    count,
                    base,
                    limit,
                    allowed,
                });
            }
        }
    };
    if let Some(prev) = change.previous {
        test("added", guards.added, change.added, prev);
        test("removed", guards.removed, change.removed, prev);
    }
    test("blocked", guards.blocked, change.blocked, change.current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentage_and_count_limits() {
        let g = Guards {
            added: Some(Limit::Count(10)),
            removed: Some(Limit::Percent(5.0)),
            blocked: Some(Limit::Percent(1.0)),
        };
        let mut c = PopulationChange {
            previous: Some(1000),
            current: 1000,
            added: 10,
            removed: 50,
            blocked: 10,
        };
        assert!(check(&g, &c).is_empty(), "exactly at the limit is allowed");
        c.removed = 51;
        c.added = 11;
        let b = check(&g, &c);
        assert_eq!(
            b.iter().map(|b| b.guard.as_str()).collect::<Vec<_>>(),
            ["added", "removed"]
        );
        assert_eq!(b[1].allowed, 50);
        assert!(b[1].to_string().contains("51 persons removed"));
        c.previous = None;
        assert!(
            check(&g, &c).is_empty(),
            "no previous snapshot: nothing to compare"
        );
        c.blocked = 11;
        assert_eq!(check(&g, &c)[0].guard, "blocked");
    }
}
