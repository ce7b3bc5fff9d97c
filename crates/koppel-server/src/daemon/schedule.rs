//! Scheduled runs: each source's cron expression, in the machine's time zone. The state
//! (last fired, next due) is kept in `daemon_schedules`, so a restart knows both, and a
//! scheduled time that passed while the daemon was stopped is run once at start.

use chrono::{DateTime, Local};
use koppel_core::config::SourceConfig;

use crate::ServeError;
use crate::settings::parse_schedule;

/// One source's schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The key of its state row: the source's position and the expression, so a changed
    /// expression starts afresh.
    pub key: String,
    /// The source, for messages and the run's trigger.
    pub source: String,
    pub expression: String,
    pub cron: croner::Cron,
}

/// The schedules of the configured sources, every expression checked.
pub fn from_sources(sources: &[SourceConfig]) -> Result<Vec<Schedule>, ServeError> {
    let mut out = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        let Some(expression) = s.schedule() else {
            continue;
        };
        let source = format!("#{} ({})", i + 1, s.label());
        let cron = parse_schedule(&source, expression)?;
        out.push(Schedule {
            key: format!("source {}: {}", i + 1, expression.trim()),
            source,
            expression: expression.trim().to_owned(),
            cron,
        });
    }
    Ok(out)
}

impl Schedule {
    /// The first due time after `t`.
    pub fn next_after(&self, t: &DateTime<Local>) -> Option<DateTime<Local>> {
        self.cron.find_next_occurrence(t, false).ok()
    }

    /// At start: the due time that passed while the daemon was stopped (after `last_fired`,
    /// not after `now`), if any. Never on the very first start (no `last_fired`).
    pub fn missed(
        &self,
        last_fired: Option<&DateTime<Local>>,
        now: &DateTime<Local>,
    ) -> Option<DateTime<Local>> {
        let last = last_fired?;
        let due = self.cron.find_previous_occurrence(now, true).ok()?;
        (due > *last).then_some(due)
    }
}

/// An RFC 3339 timestamp, read back.
pub fn parse_time(s: &str) -> Option<DateTime<Local>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Local))
}

pub fn format_time(t: &DateTime<Local>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn schedule(expr: &str) -> Schedule {
        let s: SourceConfig = toml::from_str(&format!(
            "kind = \"csv\"\ndir = \"hr\"\nschedule = \"{expr}\""
        ))
        .unwrap();
        from_sources(&[s]).unwrap().remove(0)
    }

    fn at(h: u32, m: u32) -> DateTime<Local> {
        Local.with_ymd_and_hms(2026, 11, 23, h, m, 0).unwrap()
    }

    #[test]
    fn a_time_missed_while_stopped_is_found_once() {
        let s = schedule("0 * * * *");
        assert_eq!(s.source, "#1 (csv hr)");
        assert_eq!(s.next_after(&at(10, 30)), Some(at(11, 0)));
        // Fired at 10:00, stopped, started at 12:30: 12:00 was missed.
        assert_eq!(s.missed(Some(&at(10, 0)), &at(12, 30)), Some(at(12, 0)));
        // Fired at 12:00, restarted at 12:30: nothing missed.
        assert_eq!(s.missed(Some(&at(12, 0)), &at(12, 30)), None);
        assert_eq!(s.missed(None, &at(12, 30)), None, "first start");
    }

    #[test]
    fn bad_expressions_name_their_source() {
        let s: SourceConfig =
            toml::from_str("kind = \"json\"\nfile = \"p.json\"\nschedule = \"every hour\"")
                .unwrap();
        let e = from_sources(&[s]).unwrap_err().to_string();
        assert!(
            e.contains("#1 (json p.json)") && e.contains("every hour"),
            "{e}"
        );
    }
}
