//! Prometheus metrics of the daemon, served at `/metrics` in the text exposition format:
//! runs, actions by target, kind and outcome, errors, run durations, queue depth, held
//! plans, pushed records and target health.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::runner::RunSummary;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    /// full, persons, approve, reject
    work: String,
    /// done (the run was carried out; single actions may still have failed), failed
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkLabels {
    work: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    target: String,
    kind: String,
    /// applied, failed
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    /// run (a run that could not be carried out), target_unavailable, action
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecordLabels {
    /// person, contract
    record: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

pub struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    run_seconds: Family<WorkLabels, Histogram>,
    actions: Family<ActionLabels, Counter>,
    skipped: Counter,
    withheld: Counter,
    errors: Family<ErrorLabels, Counter>,
    queue_depth: Gauge,
    held_plans: Gauge,
    pushed: Family<RecordLabels, Counter>,
    target_up: Family<TargetLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("koppel");
        let runs = Family::<RunLabels, Counter>::default();
        registry.register(
            "runs",
            "Runs carried out, by work and outcome",
            runs.clone(),
        );
        // From a one-person push (milliseconds) to a full run of 100,000 persons (minutes).
        let run_seconds = Family::<WorkLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
            ])
        });
        registry.register(
            "run_duration_seconds",
            "How long runs took, by work",
            run_seconds.clone(),
        );
        let actions = Family::<ActionLabels, Counter>::default();
        registry.register(
            "actions",
            "Actions carried out, by target, kind and outcome",
            actions.clone(),
        );
        let skipped = Counter::default();
        registry.register(
            "actions_skipped",
            "Actions not attempted because one they depend on failed",
            skipped.clone(),
        );
        let withheld = Counter::default();
        registry.register(
            "actions_withheld",
            "Actions a threshold withheld until approval",
            withheld.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register("errors", "Errors, by kind", errors.clone());
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Runs waiting in the queue",
            queue_depth.clone(),
        );
        let held_plans = Gauge::default();
        registry.register("held_plans", "Plans held for approval", held_plans.clone());
        let pushed = Family::<RecordLabels, Counter>::default();
        registry.register(
            "pushed_records",
            "HR records pushed, by record kind",
            pushed.clone(),
        );
        let target_up = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "target_up",
            "1 when the target's last health probe succeeded, else 0",
            target_up.clone(),
        );
        Metrics {
            registry,
            runs,
            run_seconds,
            actions,
            skipped,
            withheld,
            errors,
            queue_depth,
            held_plans,
            pushed,
            target_up,
        }
    }

    /// Records a finished run.
    pub fn run(&self, work: &str, seconds: f64, result: &Result<RunSummary, String>) {
        let outcome = if result.is_ok() { "done" } else { "failed" };
        self.runs
            .get_or_create(&RunLabels {
                work: work.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.run_seconds
            .get_or_create(&WorkLabels {
                work: work.to_owned(),
            })
            .observe(seconds);
        let summary = match result {
            Ok(s) => s,
            Err(_) => {
                self.error("run");
                return;
            }
        };
        for (outcome, counts) in [
            ("applied", &summary.counts),
            ("failed", &summary.failed_counts),
        ] {
            for (target, kinds) in counts {
                for (kind, n) in kinds {
                    self.actions
                        .get_or_create(&ActionLabels {
                            target: target.clone(),
                            kind: kind.clone(),
                            outcome: outcome.to_owned(),
                        })
                        .inc_by(*n as u64);
                }
            }
        }
        if summary.failed > 0 {
            self.errors
                .get_or_create(&ErrorLabels {
                    kind: "action".to_owned(),
                })
                .inc_by(summary.failed as u64);
        }
        for _ in &summary.unavailable {
            self.error("target_unavailable");
        }
        self.skipped.inc_by(summary.skipped as u64);
        self.withheld.inc_by(summary.withheld as u64);
    }

    pub fn error(&self, kind: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    pub fn set_queue_depth(&self, n: usize) {
        self.queue_depth.set(n as i64);
    }

    pub fn set_held_plans(&self, n: usize) {
        self.held_plans.set(n as i64);
    }

    pub fn pushed(&self, record: &str, n: usize) {
        self.pushed
            .get_or_create(&RecordLabels {
                record: record.to_owned(),
            })
            .inc_by(n as u64);
    }

    pub fn target_up(&self, target: &str, up: bool) {
        self.target_up
            .get_or_create(&TargetLabels {
                target: target.to_owned(),
            })
            .set(i64::from(up));
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_counts_its_actions_by_target_kind_and_outcome() {
        let m = Metrics::new();
        let mut s = RunSummary::default();
        s.counts
            .entry("directory".into())
            .or_default()
            .insert("update".into(), 2);
        s.failed_counts
            .entry("ldap".into())
            .or_default()
            .insert("grant".into(), 1);
        s.failed = 1;
        m.run("persons", 0.02, &Ok(s));
        m.run("full", 1.0, &Err("no source".into()));
        m.set_queue_depth(3);
        let text = m.encode();
        for line in [
            r#"koppel_actions_total{target="directory",kind="update",outcome="applied"} 2"#,
            r#"koppel_actions_total{target="ldap",kind="grant",outcome="failed"} 1"#,
            r#"koppel_runs_total{work="full",outcome="failed"} 1"#,
            r#"koppel_errors_total{kind="run"} 1"#,
            "koppel_queue_depth 3",
            r#"koppel_run_duration_seconds_count{work="persons"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
