//! The run queue: first in, first out, with coalescing. A run asked for while an equal or
//! wider one waits joins it instead of queuing behind it, so a burst of pushes for one
//! person, or a schedule firing while a webhook's full run waits, costs one run.

use std::collections::VecDeque;

use super::runner::Work;

/// A queued run: its id (the run record's) and its work, which grows as requests join it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub id: i64,
    pub work: Work,
    /// How many requests this run answers.
    pub requests: u32,
}

#[derive(Debug, Default)]
pub struct Queue {
    entries: VecDeque<Queued>,
}

impl Queue {
    /// Lets `work` join a queued run that covers it: a run for everyone covers any run; a
    /// run for some persons joins a queued run for persons (the sets are merged).
    /// Approvals and rejections never join. Returns the joined run, changed, or `None`
    /// when `work` must be queued as a run of its own.
    pub fn join(&mut self, work: &Work) -> Option<&Queued> {
        let Work::Run {
            persons: wanted,
            refresh,
        } = work
        else {
            return None;
        };
        let everyone = self
            .entries
            .iter()
            .position(|q| matches!(q.work, Work::Run { persons: None, .. }));
        let at = match (wanted, everyone) {
            (_, Some(i)) => i,
            (None, None) => return None,
            (Some(_), None) => self.entries.iter().position(|q| {
                matches!(
                    q.work,
                    Work::Run {
                        persons: Some(_),
                        ..
                    }
                )
            })?,
        };
        let entry = &mut self.entries[at];
        if let (
            Work::Run {
                persons: Some(have),
                refresh: have_refresh,
            },
            Some(wanted),
        ) = (&mut entry.work, wanted)
        {
            have.extend(wanted.iter().cloned());
            *have_refresh |= *refresh;
        }
        entry.requests += 1;
        Some(entry)
    }

    pub fn push(&mut self, id: i64, work: Work, requests: u32) {
        self.entries.push_back(Queued { id, work, requests });
    }

    pub fn pop(&mut self) -> Option<Queued> {
        self.entries.pop_front()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn ids(&self) -> Vec<i64> {
        self.entries.iter().map(|q| q.id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persons(ids: &[&str], refresh: bool) -> Work {
        Work::Run {
            persons: Some(ids.iter().map(|s| s.to_string()).collect()),
            refresh,
        }
    }

    #[test]
    fn person_runs_merge_and_a_full_run_absorbs_later_requests() {
        let mut q = Queue::default();
        assert!(q.join(&persons(&["a"], false)).is_none());
        q.push(1, persons(&["a"], false), 1);
        let joined = q.join(&persons(&["b"], true)).unwrap();
        assert_eq!(joined.id, 1);
        assert_eq!(joined.work, persons(&["a", "b"], true));
        assert_eq!(joined.requests, 2);

        assert!(q.join(&Work::everyone()).is_none(), "a full run is wider");
        q.push(2, Work::everyone(), 1);
        assert_eq!(q.join(&Work::everyone()).unwrap().id, 2);
        assert_eq!(
            q.join(&persons(&["c"], false)).unwrap().id,
            2,
            "the queued full run covers c"
        );
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop().unwrap().id, 1, "first in, first out");
        assert_eq!(q.pop().unwrap().requests, 3);
        assert!(q.is_empty());
    }

    #[test]
    fn approvals_never_join() {
        let mut q = Queue::default();
        let approve = Work::Approve { plan: "p".into() };
        assert!(q.join(&approve).is_none());
        q.push(1, approve.clone(), 1);
        assert!(q.join(&approve).is_none());
        assert!(q.join(&persons(&["a"], false)).is_none());
    }
}
