//! koppel's notifications: e-mail to a joiner's manager (username, start date), a leaver's
//! manager (accounts disabled) and the admins of a held plan (the breach and a link).
//!
//! Building is pure and separate from sending: [`Notifier::events`] reads what an apply did
//! (the stored plan, its journal, the HR snapshot), [`Notifier::messages`] renders e-mails
//! from the templates, [`Notifier::queue`] keeps them in the store's outbox, and
//! [`Notifier::send_pending`] hands everything unsent to the SMTP server. A failed send fails
//! nothing else: the message stays in the outbox, is audited, and the next run retries it.
//!
//! ```no_run
//! # async fn run(store: &dyn koppel_store::Store, table: &toml::Table,
//! #     plan: &koppel_store::StoredPlan, journal: &[koppel_store::JournalEntry],
//! #     snapshot: &koppel_core::Snapshot, now: koppel_core::Date) -> Result<(), koppel_notify::NotifyError> {
//! use koppel_notify::{Notifier, Sources, statuses};
//! let notifier = Notifier::from_config(table, std::path::Path::new("."))?;
//! let sources = Sources { snapshot, previous: None, known: None, now };
//! let (events, _diagnostics) = notifier.events(plan, &statuses(plan, journal), &[], &sources);
//! let (mails, _diagnostics) = notifier.messages(&events);
//! let (_added, direct) = notifier.queue(store, mails, "2026-11-23T10:00:00Z").await?;
//! let report = notifier
//!     .send_pending(store, direct, "2026-11-23T10:00:00Z", std::time::SystemTime::UNIX_EPOCH, "koppel apply")
//!     .await;
//! println!("{report}");
//! # Ok(()) }
//! ```

mod config;
mod error;
mod event;
mod message;
mod smtp;

use std::path::Path;
use std::time::SystemTime;

use koppel_core::Diagnostic;
use koppel_core::threshold::ThresholdBreach;
use koppel_store::{AuditEvent, AuditRecord, OutboxMessage, Store, StoredPlan};

pub use config::{
    EventKind, EventSettings, ManagerEmail, NotifyConfig, Recipient, SecretRef, SmtpSettings,
    TlsMode, locate,
};
pub use error::{ConfigIssue, NotifyError};
pub use event::{
    AccountInfo, ContractInfo, Event, Held, HeldBy, Joiner, LeaveReason, Leaver, ManagerInfo, Part,
    PersonInfo, Secret, Sources, Status, Withheld, statuses,
};
pub use message::{Mail, Templates};
pub use smtp::{SendError, Sender, to_message};

/// The checked `[notifications]` section with its compiled templates.
pub struct Notifier {
    config: NotifyConfig,
    templates: Templates,
}

impl Notifier {
    /// Checks `[notifications]` (the raw table of the configuration; files it names are
    /// relative to `base`) and compiles its templates. Every problem at once, each at its key.
    pub fn from_config(table: &toml::Table, base: &Path) -> Result<Notifier, NotifyError> {
        let (config, mut issues) = NotifyConfig::checked(table, base)?;
        let Some(config) = config else {
            return Err(NotifyError::Config(issues));
        };
        // Templates are checked also when a setting is wrong: every problem at once.
        match Templates::new(&config) {
            Ok(templates) if issues.is_empty() => Ok(Notifier { config, templates }),
            Ok(_) => Err(NotifyError::Config(issues)),
            Err(more) => {
                issues.extend(more);
                Err(NotifyError::Config(issues))
            }
        }
    }

    pub fn config(&self) -> &NotifyConfig {
        &self.config
    }

    /// The joiner, leaver and held-plan events of `plan`, whose actions stand as `status`
    /// says (see [`statuses`]); `thresholds` are the threshold breaches that withheld part of
    /// it, when it was just made.
    pub fn events(
        &self,
        plan: &StoredPlan,
        status: &[Status],
        thresholds: &[ThresholdBreach],
        sources: &Sources<'_>,
    ) -> (Vec<Event>, Vec<Diagnostic>) {
        let (mut events, diags) = event::person_events(&self.config, plan, status, sources);
        events.extend(event::held_event(&self.config, plan, thresholds));
        (events, diags)
    }

    /// The e-mails of `events`; an event nobody can be told about is a diagnostic.
    pub fn messages(&self, events: &[Event]) -> (Vec<Mail>, Vec<Diagnostic>) {
        let mut mails = Vec::new();
        let mut diags = Vec::new();
        for e in events {
            let (mail, d) = self.templates.build(&self.config, e);
            mails.extend(mail);
            diags.extend(d);
        }
        (mails, diags)
    }

    /// Puts `mails` in the store's outbox (those it holds already are left alone). Returns
    /// how many were added, and the mails that show a password: never stored, only sent.
    pub async fn queue(
        &self,
        store: &dyn Store,
        mails: Vec<Mail>,
        created_at: &str,
    ) -> Result<(usize, Vec<Mail>), NotifyError> {
        let (direct, stored): (Vec<Mail>, Vec<Mail>) = mails.into_iter().partition(|m| m.sensitive);
        let rows: Vec<OutboxMessage> = stored
            .into_iter()
            .map(|m| OutboxMessage {
                key: m.key,
                created_at: created_at.to_owned(),
                event: m.event.as_str().to_owned(),
                plan_id: Some(m.plan_id),
                person: m.person,
                to: m.to,
                subject: m.subject,
                body: m.body,
                attempts: 0,
                last_error: None,
            })
            .collect();
        let added = store.outbox_add(&rows).await?;
        Ok((added, direct))
    }

    /// Sends `direct` (mails with a password, never stored) and then everything unsent in the
    /// outbox, oldest first; each outcome is audited with the outbox change in one
    /// transaction. Never fails: what went wrong is in the report. `at` stamps the audit
    /// entries, `date` the messages; nothing here reads the clock.
    pub async fn send_pending(
        &self,
        store: &dyn Store,
        direct: Vec<Mail>,
        at: &str,
        date: SystemTime,
        actor: &str,
    ) -> SendReport {
        let mut report = SendReport::default();
        let pending = match store.outbox_pending().await {
            Ok(p) => p,
            Err(e) => {
                report.unavailable = Some(format!("cannot read the outbox: {e}"));
                report.lost_sensitive = direct.len();
                return report;
            }
        };
        let (due, given_up): (Vec<OutboxMessage>, Vec<OutboxMessage>) = pending
            .into_iter()
            .partition(|m| m.attempts < self.config.max_attempts);
        report.given_up = given_up.len();
        if due.is_empty() && direct.is_empty() {
            return report;
        }
        let sender = match Sender::new(&self.config.smtp, &self.config.from) {
            Ok(s) => s,
            Err(e) => {
                report.unavailable = Some(e.to_string());
                report.pending = due.len();
                report.lost_sensitive = direct.len();
                return report;
            }
        };
        let audit = |event: AuditEvent, m: &Mail, error: Option<&str>| AuditRecord {
            at: at.to_owned(),
            actor: actor.to_owned(),
            event,
            plan_id: Some(m.plan_id.clone()),
            target: None,
            person: m.person.clone(),
            action: None,
            permission: None,
            before: serde_json::Value::Null,
            after: serde_json::json!({
                "notification": m.event.as_str(),
                "to": m.to,
                "subject": m.subject,
            }),
            reasons: Vec::new(),
            error: error.map(str::to_owned),
        };
        for (i, m) in direct.iter().enumerate() {
            if report.unavailable.is_some() {
                report.lost_sensitive = direct.len() - i;
                break;
            }
            let result = sender.send(m, date).await;
            let (event, error) = match &result {
                Ok(()) => (AuditEvent::Notified, None),
                Err(e) => (AuditEvent::NotificationFailed, Some(e.to_string())),
            };
            if let Err(e) = store
                .audit_append(&[audit(event, m, error.as_deref())])
                .await
            {
                tracing::warn!(error = %e, "cannot audit a notification");
            }
            match result {
                Ok(()) => report.sent += 1,
                Err(e) => {
                    report.lost_sensitive += 1;
                    report.failed.push((m.key.clone(), e.to_string()));
                    if let SendError::Unavailable(msg) = e {
                        report.unavailable = Some(msg);
                    }
                }
            }
        }
        for (i, row) in due.iter().enumerate() {
            if report.unavailable.is_some() {
                report.pending += due.len() - i;
                break;
            }
            let Some(event) = EventKind::ALL.into_iter().find(|k| k.as_str() == row.event) else {
                report
                    .failed
                    .push((row.key.clone(), format!("unknown event {:?}", row.event)));
                continue;
            };
            let mail = Mail {
                key: row.key.clone(),
                event,
                plan_id: row.plan_id.clone().unwrap_or_default(),
                person: row.person.clone(),
                to: row.to.clone(),
                subject: row.subject.clone(),
                body: row.body.clone(),
                sensitive: false,
            };
            let recorded = match sender.send(&mail, date).await {
                Ok(()) => {
                    report.sent += 1;
                    store
                        .outbox_sent(&row.key, at, &audit(AuditEvent::Notified, &mail, None))
                        .await
                }
                Err(e) => {
                    let msg = e.to_string();
                    tracing::info!(key = %row.key, error = %msg, "notification not sent; kept for the next run");
                    report.failed.push((row.key.clone(), msg.clone()));
                    if let SendError::Unavailable(m) = e {
                        report.unavailable = Some(m);
                    }
                    if row.attempts + 1 < self.config.max_attempts {
                        report.pending += 1;
                    } else {
                        report.given_up += 1;
                    }
                    store
                        .outbox_failed(
                            &row.key,
                            &msg,
                            &audit(AuditEvent::NotificationFailed, &mail, Some(&msg)),
                        )
                        .await
                }
            };
            if let Err(e) = recorded {
                // The message may go twice next run; its Message-ID lets receivers tell.
                tracing::warn!(key = %row.key, error = %e, "cannot record a notification's outcome");
            }
        }
        report
    }
}

/// What [`Notifier::send_pending`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendReport {
    pub sent: usize,
    /// (key, error) of every message that failed in this run.
    pub failed: Vec<(String, String)>,
    /// Messages left in the outbox for the next run.
    pub pending: usize,
    /// Messages the server refused `max_attempts` times: kept, no longer tried.
    pub given_up: usize,
    /// Why sending stopped early, when the server (or the settings) could not take mail.
    pub unavailable: Option<String>,
    /// Mails with an initial password that could not be sent: never stored, so not retried.
    pub lost_sensitive: usize,
}

impl std::fmt::Display for SendReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} sent", self.sent)?;
        if !self.failed.is_empty() {
            write!(f, ", {} failed", self.failed.len())?;
        }
        if self.pending > 0 {
            write!(f, ", {} kept for the next run", self.pending)?;
        }
        if self.given_up > 0 {
            write!(f, ", {} given up after repeated refusals", self.given_up)?;
        }
        if self.lost_sensitive > 0 {
            write!(
                f,
                ", {} with an initial password not sent (passwords are never stored: reset them)",
                self.lost_sensitive
            )?;
        }
        Ok(())
    }
}
