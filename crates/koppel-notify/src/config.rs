//! The `[notifications]` section: SMTP server, sender, admins, and per event (joiner, leaver,
//! held) whether it is sent, to whom and from which templates. Checked whole, every problem named.
//!
//! Errors carry the key path (`notifications.joiner.recipients`); [`locate`] turns a path into
//! a line and column of the configuration file for `koppel validate`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use lettre::message::Mailbox;
use serde::Deserialize;

use crate::error::{ConfigIssue, NotifyError};

/// `[notifications]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The sender, `"koppel <koppel@example.org>"` or a bare address.
    pub from: String,
    /// Who `admins` in `recipients` means: the people who approve held plans.
    #[serde(default)]
    pub admins: Vec<String>,
    /// The dashboard's address; a held plan's mail links to `<base>/plans/<id>`.
    #[serde(default)]
    pub link_base_url: Option<String>,
    /// Where a manager's address comes from, in order: `person.email` (the manager's HR
    /// record) or `account.<target>.<attribute>` (what koppel wrote to the manager's account).
    #[serde(default = "default_manager_email")]
    pub manager_email: Vec<String>,
    /// The account attributes that hold a username, first found wins.
    #[serde(default = "default_username_attributes")]
    pub username_attributes: Vec<String>,
    /// The account attributes that hold an e-mail address, first found wins.
    #[serde(default = "default_email_attributes")]
    pub email_attributes: Vec<String>,
    /// A message the server keeps refusing is given up after this many attempts.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    pub smtp: RawSmtp,
    #[serde(default)]
    pub joiner: RawEvent,
    #[serde(default)]
    pub leaver: RawEvent,
    #[serde(default)]
    pub held: RawEvent,
}

fn default_manager_email() -> Vec<String> {
    vec!["person.email".to_owned()]
}

fn default_username_attributes() -> Vec<String> {
    ["username", "sAMAccountName", "uid", "userName", "user_name"]
        .map(str::to_owned)
        .to_vec()
}

fn default_email_attributes() -> Vec<String> {
    [
        "mail",
        "email",
        "emails[type eq \"work\"].value",
        "userPrincipalName",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn default_max_attempts() -> u32 {
    20
}

/// `[notifications.smtp]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    pub host: String,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: TlsMode,
    /// A PEM file with the CA (or CAs) that signed the server's certificate, trusted besides
    /// the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn default_timeout() -> u64 {
    30
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS, which must succeed (submission, port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
    /// No encryption: only to a loopback address, for tests.
    None,
}

/// `[notifications.<event>]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvent {
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `manager`, `admins`, or an e-mail address.
    #[serde(default)]
    pub recipients: Option<Vec<String>>,
    /// Subject template (one line).
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub subject_file: Option<PathBuf>,
    /// Body template (plain text).
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub body_file: Option<PathBuf>,
    /// Joiner only: a create counts as a joiner when the contract starts no more than this
    /// many days before the run date (pre-boarding is always in). Keeps a first run, which
    /// creates accounts for everyone, from writing to every manager.
    #[serde(default)]
    pub start_within_days: Option<u32>,
    /// Joiner only: templates may show an account's initial password. Off unless set; the
    /// password is then sent once and never stored in the outbox nor logged.
    #[serde(default)]
    pub include_initial_password: Option<bool>,
}

/// Which event a setting or template is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    Joiner,
    Leaver,
    Held,
}

impl EventKind {
    pub const ALL: [EventKind; 3] = [EventKind::Joiner, EventKind::Leaver, EventKind::Held];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Joiner => "joiner",
            EventKind::Leaver => "leaver",
            EventKind::Held => "held",
        }
    }
}

/// One kind of recipient.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Recipient {
    /// The person's manager (contract manager, else a department manager up the tree).
    Manager,
    /// Everyone in `admins`.
    Admins,
    /// A fixed address.
    Address(String),
}

/// Where a manager's e-mail address is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagerEmail {
    /// The `email` of the manager's person record.
    Person,
    /// An attribute koppel wrote to the manager's account in a target.
    Account { target: String, attribute: String },
}

/// A checked `[notifications.<event>]`.
#[derive(Debug, Clone)]
pub struct EventSettings {
    pub enabled: bool,
    pub recipients: Vec<Recipient>,
    pub subject: String,
    pub body: String,
    pub start_within_days: u32,
    pub include_initial_password: bool,
}

/// A checked `[notifications.smtp]`; the password is read when connecting.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<SecretRef>,
    pub timeout: std::time::Duration,
}

/// Where the SMTP password is: never the password itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl SecretRef {
    /// Reads the secret; the error names the variable or file, never the value.
    pub fn read(&self) -> Result<String, String> {
        match self {
            SecretRef::Env(var) => {
                koppel_connectors::settings::env_secret(var, "notifications.smtp.password_env")
            }
            SecretRef::File(path) => {
                koppel_connectors::settings::file_secret(path, "notifications.smtp.password_file")
            }
        }
    }
}

/// The checked `[notifications]` section.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub from: Mailbox,
    pub admins: Vec<String>,
    pub link_base_url: Option<url::Url>,
    pub manager_email: Vec<ManagerEmail>,
    pub username_attributes: Vec<String>,
    pub email_attributes: Vec<String>,
    pub max_attempts: u32,
    pub smtp: SmtpSettings,
    pub joiner: EventSettings,
    pub leaver: EventSettings,
    pub held: EventSettings,
}

impl NotifyConfig {
    pub fn event(&self, kind: EventKind) -> &EventSettings {
        match kind {
            EventKind::Joiner => &self.joiner,
            EventKind::Leaver => &self.leaver,
            EventKind::Held => &self.held,
        }
    }

    /// Checks `[notifications]` (the raw table from the configuration); files it names are
    /// relative to `base` (the configuration file's folder). Every problem at once.
    pub fn from_table(table: &toml::Table, base: &Path) -> Result<NotifyConfig, NotifyError> {
        match NotifyConfig::checked(table, base)? {
            (Some(c), issues) if issues.is_empty() => Ok(c),
            (_, issues) => Err(NotifyError::Config(issues)),
        }
    }

    /// The configuration as far as it could be made sense of, with every problem found: a
    /// caller can go on checking (templates) before reporting. `Err` when the section does not
    /// even have the expected shape.
    pub(crate) fn checked(
        table: &toml::Table,
        base: &Path,
    ) -> Result<(Option<NotifyConfig>, Vec<ConfigIssue>), NotifyError> {
        let raw: RawConfig = serde_path_to_error::deserialize(toml::Value::Table(table.clone()))
            .map_err(|e| {
                let mut path = vec!["notifications".to_owned()];
                path.extend(
                    e.path()
                        .to_string()
                        .split('.')
                        .filter(|s| !s.is_empty() && *s != "?")
                        .map(str::to_owned),
                );
                NotifyError::Config(vec![ConfigIssue::new(path, e.inner().to_string())])
            })?;
        let mut ck = Checker::default();
        let config = ck.check(raw, base);
        Ok((config, ck.issues))
    }
}

#[derive(Default)]
struct Checker {
    issues: Vec<ConfigIssue>,
}

fn path(parts: &[&str]) -> Vec<String> {
    std::iter::once("notifications")
        .chain(parts.iter().copied())
        .map(str::to_owned)
        .collect()
}

impl Checker {
    fn issue(&mut self, parts: &[&str], message: impl Into<String>) {
        self.issues.push(ConfigIssue::new(path(parts), message));
    }

    fn check(&mut self, raw: RawConfig, base: &Path) -> Option<NotifyConfig> {
        let from = match Mailbox::from_str(raw.from.trim()) {
            Ok(m) => Some(m),
            Err(e) => {
                self.issue(
                    &["from"],
                    format!(
                        "{:?} is not an e-mail address ({e}); write \"name <address>\" or an address",
                        raw.from
                    ),
                );
                None
            }
        };
        for (i, a) in raw.admins.iter().enumerate() {
            if let Err(e) = lettre::Address::from_str(a.trim()) {
                self.issue(
                    &["admins", &i.to_string()],
                    format!("{a:?} is not an e-mail address ({e})"),
                );
            }
        }
        let link_base_url = raw
            .link_base_url
            .as_deref()
            .and_then(|u| match url::Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && !url.cannot_be_a_base() => {
                    Some(url)
                }
                Ok(_) => {
                    self.issue(
                        &["link_base_url"],
                        format!("{u:?} is not an http(s) address"),
                    );
                    None
                }
                Err(e) => {
                    self.issue(&["link_base_url"], format!("{u:?} is not a URL: {e}"));
                    None
                }
            });
        let mut manager_email = Vec::new();
        for (i, m) in raw.manager_email.iter().enumerate() {
            match parse_manager_email(m) {
                Some(v) => manager_email.push(v),
                None => self.issue(
                    &["manager_email", &i.to_string()],
                    format!(
                        "{m:?} is not a source of addresses: write \"person.email\" or \
                         \"account.<target>.<attribute>\""
                    ),
                ),
            }
        }
        if raw.max_attempts == 0 {
            self.issue(&["max_attempts"], "must be at least 1");
        }
        let smtp = self.smtp(raw.smtp, base);
        let joiner = self.event(EventKind::Joiner, raw.joiner, base, &raw.admins);
        let leaver = self.event(EventKind::Leaver, raw.leaver, base, &raw.admins);
        let held = self.event(EventKind::Held, raw.held, base, &raw.admins);
        if held.enabled && held.recipients.contains(&Recipient::Manager) {
            self.issue(
                &["held", "recipients"],
                "a held plan concerns no single person, so it has no manager: use \"admins\" or addresses",
            );
        }
        Some(NotifyConfig {
            from: from?,
            admins: raw.admins.iter().map(|a| a.trim().to_owned()).collect(),
            link_base_url,
            manager_email,
            username_attributes: raw.username_attributes,
            email_attributes: raw.email_attributes,
            max_attempts: raw.max_attempts,
            smtp: smtp?,
            joiner,
            leaver,
            held,
        })
    }

    fn smtp(&mut self, raw: RawSmtp, base: &Path) -> Option<SmtpSettings> {
        let host = raw.host.trim().to_owned();
        if host.is_empty() {
            self.issue(&["smtp", "host"], "is empty: name the SMTP server");
        }
        if raw.tls == TlsMode::None && !is_loopback(&host) {
            self.issue(
                &["smtp", "tls"],
                format!(
                    "\"none\" would send mail in clear to {host:?}; it is only allowed to a \
                     loopback address (tests): use \"starttls\" or \"tls\""
                ),
            );
        }
        let password = match (&raw.password_env, &raw.password_file) {
            (Some(_), Some(_)) => {
                self.issue(
                    &["smtp", "password_env"],
                    "give password_env or password_file, not both",
                );
                None
            }
            (Some(v), None) if v.trim().is_empty() => {
                self.issue(
                    &["smtp", "password_env"],
                    "is empty: name an environment variable",
                );
                None
            }
            (Some(v), None) => Some(SecretRef::Env(v.trim().to_owned())),
            (None, Some(f)) => Some(SecretRef::File(base.join(f))),
            (None, None) => None,
        };
        match (&raw.username, &password) {
            (Some(_), None) => self.issue(
                &["smtp", "username"],
                "a username needs password_env or password_file (the password is never written in the configuration)",
            ),
            (None, Some(_)) => self.issue(
                &["smtp", "username"],
                "a password needs a username",
            ),
            _ => {}
        }
        if raw.username.is_some() && raw.tls == TlsMode::None {
            self.issue(
                &["smtp", "username"],
                "credentials are never sent without TLS: use tls = \"starttls\" or \"tls\"",
            );
        }
        let ca_file = raw.ca_file.map(|f| base.join(f));
        if let Some(f) = &ca_file
            && !f.is_file()
        {
            self.issue(
                &["smtp", "ca_file"],
                format!("{} is not a readable file", f.display()),
            );
        }
        if raw.timeout_seconds == 0 {
            self.issue(&["smtp", "timeout_seconds"], "must be at least 1");
        }
        let port = raw.port.unwrap_or(match raw.tls {
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
            TlsMode::None => 25,
        });
        Some(SmtpSettings {
            host,
            port,
            tls: raw.tls,
            ca_file,
            username: raw.username,
            password,
            timeout: std::time::Duration::from_secs(raw.timeout_seconds.max(1)),
        })
    }

    fn event(
        &mut self,
        kind: EventKind,
        raw: RawEvent,
        base: &Path,
        admins: &[String],
    ) -> EventSettings {
        let name = kind.as_str();
        let default_recipients = match kind {
            EventKind::Joiner | EventKind::Leaver => vec![Recipient::Manager],
            EventKind::Held => vec![Recipient::Admins],
        };
        let recipients = match raw.recipients {
            None => default_recipients,
            Some(list) => {
                let mut seen = BTreeSet::new();
                let mut out = Vec::new();
                for (i, r) in list.iter().enumerate() {
                    let r = r.trim();
                    let parsed = match r {
                        "manager" => Recipient::Manager,
                        "admins" => Recipient::Admins,
                        a => match lettre::Address::from_str(a) {
                            Ok(_) => Recipient::Address(a.to_owned()),
                            Err(e) => {
                                self.issue(
                                    &[name, "recipients", &i.to_string()],
                                    format!(
                                        "{r:?} is neither \"manager\", \"admins\" nor an e-mail address ({e})"
                                    ),
                                );
                                continue;
                            }
                        },
                    };
                    if seen.insert(parsed.clone()) {
                        out.push(parsed);
                    }
                }
                out
            }
        };
        let enabled = raw.enabled.unwrap_or(true);
        if enabled && recipients.is_empty() {
            self.issue(
                &[name, "recipients"],
                "is empty: name who gets it, or set enabled = false",
            );
        }
        if enabled && recipients.contains(&Recipient::Admins) && admins.is_empty() {
            self.issue(
                &[name, "recipients"],
                "names \"admins\" but notifications.admins is empty",
            );
        }
        if kind != EventKind::Joiner {
            if raw.start_within_days.is_some() {
                self.issue(
                    &[name, "start_within_days"],
                    "is a joiner setting (notifications.joiner.start_within_days)",
                );
            }
            if raw.include_initial_password.is_some() {
                self.issue(
                    &[name, "include_initial_password"],
                    "is a joiner setting (notifications.joiner.include_initial_password)",
                );
            }
        }
        let subject = self.template_source(
            name,
            "subject",
            raw.subject,
            raw.subject_file,
            base,
            crate::message::default_subject(kind),
        );
        let body = self.template_source(
            name,
            "body",
            raw.body,
            raw.body_file,
            base,
            crate::message::default_body(kind),
        );
        EventSettings {
            enabled,
            recipients,
            subject,
            body,
            start_within_days: raw.start_within_days.unwrap_or(30),
            include_initial_password: raw.include_initial_password.unwrap_or(false),
        }
    }

    /// The template text: inline, from a file, or the built-in default.
    fn template_source(
        &mut self,
        event: &str,
        key: &str,
        inline: Option<String>,
        file: Option<PathBuf>,
        base: &Path,
        default: &str,
    ) -> String {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.issue(&[event, key], format!("give {key} or {key}_file, not both"));
                default.to_owned()
            }
            (Some(text), None) => text,
            (None, Some(f)) => {
                let path = base.join(&f);
                match std::fs::read_to_string(&path) {
                    Ok(text) => text,
                    Err(e) => {
                        let file_key = format!("{key}_file");
                        self.issue(
                            &[event, &file_key],
                            format!("cannot read {}: {e}", path.display()),
                        );
                        default.to_owned()
                    }
                }
            }
            (None, None) => default.to_owned(),
        }
    }
}

fn parse_manager_email(s: &str) -> Option<ManagerEmail> {
    let s = s.trim();
    if s == "person.email" {
        return Some(ManagerEmail::Person);
    }
    let rest = s.strip_prefix("account.")?;
    let (target, attribute) = rest.split_once('.')?;
    (!target.is_empty() && !attribute.is_empty()).then(|| ManagerEmail::Account {
        target: target.to_owned(),
        attribute: attribute.to_owned(),
    })
}

/// True for `localhost` and loopback IP addresses (127.0.0.0/8, ::1).
fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The line and column (1-based) of the key `path` (`["notifications", "joiner", "body"]`)
/// in the TOML document `text`: the deepest part of the path the document has.
pub fn locate(text: &str, path: &[String]) -> Option<(usize, usize)> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut found: Option<std::ops::Range<usize>> = None;
    let mut parts = path.iter().peekable();
    while let Some(part) = parts.next() {
        let Some((key, value)) = table.get_key_value(part.as_str()) else {
            break;
        };
        found = Some(if parts.peek().is_none() {
            key.span()
        } else {
            value.span()
        });
        match value.get_ref() {
            DeValue::Table(t) => table = t,
            DeValue::Array(items) => {
                // An index into an array: the item's own position.
                if let Some(item) = parts
                    .next()
                    .and_then(|i| i.parse::<usize>().ok())
                    .and_then(|i| items.get(i))
                {
                    found = Some(item.span());
                }
                break;
            }
            _ => break,
        }
    }
    let offset = found?.start.min(text.len());
    let before = text.get(..offset)?;
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some((line, column))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        let doc: toml::Table = toml::from_str(text).unwrap();
        doc["notifications"].as_table().unwrap().clone()
    }

    const MINIMAL: &str = r#"
[notifications]
from = "koppel <koppel@example.org>"
admins = ["ict@example.org"]
[notifications.smtp]
host = "smtp.example.org"
"#;

    #[test]
    fn defaults_are_starttls_on_587_and_every_event_on() {
        let c = NotifyConfig::from_table(&table(MINIMAL), Path::new("/etc/koppel")).unwrap();
        assert_eq!(c.smtp.port, 587);
        assert_eq!(c.smtp.tls, TlsMode::Starttls);
        assert_eq!(c.joiner.recipients, vec![Recipient::Manager]);
        assert_eq!(c.leaver.recipients, vec![Recipient::Manager]);
        assert_eq!(c.held.recipients, vec![Recipient::Admins]);
        assert!(EventKind::ALL.iter().all(|k| c.event(*k).enabled));
        assert!(!c.joiner.include_initial_password);
        assert_eq!(c.joiner.start_within_days, 30);
        assert_eq!(c.manager_email, vec![ManagerEmail::Person]);
        assert_eq!(c.from.email.to_string(), "koppel@example.org");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_path() {
        let text = MINIMAL.to_owned() + "[notifications.joiner]\nrecipient = [\"manager\"]\n";
        let e = NotifyConfig::from_table(&table(&text), Path::new(".")).unwrap_err();
        let NotifyError::Config(issues) = e else {
            panic!("{e}")
        };
        assert_eq!(issues[0].path, ["notifications", "joiner", "recipient"]);
        assert!(issues[0].message.contains("recipients"), "{}", issues[0]);
        // The section the unknown key is in.
        assert_eq!(locate(&text, &issues[0].path).map(|(l, _)| l), Some(8));
    }

    #[test]
    fn clear_text_only_to_loopback_and_never_with_credentials() {
        let text = MINIMAL.replace(
            "host = \"smtp.example.org\"",
            "host = \"smtp.example.org\"\ntls = \"none\"\nusername = \"koppel\"\npassword_env = \"SMTP_PW\"",
        );
        let e = NotifyConfig::from_table(&table(&text), Path::new(".")).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("notifications.smtp.tls: \"none\" would send mail in clear"),
            "{s}"
        );
        assert!(s.contains("credentials are never sent without TLS"), "{s}");
        for host in ["127.0.0.1", "localhost", "::1", "127.0.0.2"] {
            let text = MINIMAL.replace("smtp.example.org\"", &format!("{host}\"\ntls = \"none\""));
            let c = NotifyConfig::from_table(&table(&text), Path::new(".")).unwrap();
            assert_eq!(c.smtp.port, 25, "{host}");
        }
    }

    #[test]
    fn every_problem_at_once_each_with_its_place() {
        let text = r#"
[notifications]
from = "not an address"
admins = []
link_base_url = "ftp://x"
manager_email = ["person.mail"]
[notifications.smtp]
host = "smtp.example.org"
username = "koppel"
[notifications.joiner]
recipients = ["manager", "boss@"]
[notifications.held]
recipients = ["admins", "manager"]
start_within_days = 3
"#;
        let e = NotifyConfig::from_table(&table(text), Path::new(".")).unwrap_err();
        let NotifyError::Config(issues) = e else {
            panic!("{e}")
        };
        let paths: Vec<String> = issues.iter().map(|i| i.path.join(".")).collect();
        assert_eq!(
            paths,
            [
                "notifications.from",
                "notifications.link_base_url",
                "notifications.manager_email.0",
                "notifications.smtp.username",
                "notifications.joiner.recipients.1",
                "notifications.held.recipients",
                "notifications.held.start_within_days",
                "notifications.held.recipients",
            ]
        );
        assert_eq!(locate(text, &issues[0].path), Some((3, 1)));
        assert_eq!(locate(text, &issues[4].path), Some((11, 26)));
    }

    #[test]
    fn templates_come_from_files_relative_to_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("joiner.txt"), "Hello {{ person.name }}\n").unwrap();
        let text = MINIMAL.to_owned() + "[notifications.joiner]\nbody_file = \"joiner.txt\"\n";
        let c = NotifyConfig::from_table(&table(&text), dir.path()).unwrap();
        assert_eq!(c.joiner.body, "Hello {{ person.name }}\n");
        let text = MINIMAL.to_owned() + "[notifications.leaver]\nbody_file = \"missing.txt\"\n";
        let e = NotifyConfig::from_table(&table(&text), dir.path()).unwrap_err();
        assert!(
            e.to_string()
                .contains("notifications.leaver.body_file: cannot read"),
            "{e}"
        );
    }

    #[test]
    fn the_password_is_a_reference_and_its_errors_never_hold_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cr3t-value\n").unwrap();
        let text = MINIMAL.replace(
            "host = \"smtp.example.org\"",
            "host = \"smtp.example.org\"\nusername = \"koppel\"\npassword_file = \"pw\"",
        );
        let c = NotifyConfig::from_table(&table(&text), dir.path()).unwrap();
        let secret = c.smtp.password.clone().unwrap();
        assert_eq!(secret.read().unwrap(), "s3cr3t-value");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let missing = SecretRef::Env("KOPPEL_NOTIFY_TEST_UNSET_VARIABLE".into());
        let e = missing.read().unwrap_err();
        assert!(e.contains("KOPPEL_NOTIFY_TEST_UNSET_VARIABLE"), "{e}");
    }
}
