//! From an event and the configuration to an e-mail: recipients resolved, subject and body
//! rendered from the event's templates. Pure and deterministic; sending is `smtp`'s job.
//!
//! Templates use minijinja: administrators edit them, so they must load at run time (askama
//! compiles templates into the binary), in Jinja syntax many already know, in a sandbox that
//! can call nothing, with strict undefined values so that a misspelt variable is an error
//! `koppel validate` reports instead of an empty gap in a mail; small and well maintained.

use std::collections::BTreeSet;

use koppel_core::Diagnostic;
use minijinja::{Environment, UndefinedBehavior, Value};
use serde::Serialize;

use crate::config::{EventKind, NotifyConfig, Recipient};
use crate::error::ConfigIssue;
use crate::event::{
    AccountInfo, ContractInfo, Event, Held, HeldBy, Joiner, LeaveReason, Leaver, ManagerInfo, Part,
    PersonInfo, Withheld,
};

pub(crate) fn default_subject(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Joiner => include_str!("templates/joiner.subject.txt"),
        EventKind::Leaver => include_str!("templates/leaver.subject.txt"),
        EventKind::Held => include_str!("templates/held.subject.txt"),
    }
}

pub(crate) fn default_body(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Joiner => include_str!("templates/joiner.body.txt"),
        EventKind::Leaver => include_str!("templates/leaver.body.txt"),
        EventKind::Held => include_str!("templates/held.body.txt"),
    }
}

/// One e-mail, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The event's identity (see [`Event::key`]).
    pub key: String,
    pub event: EventKind,
    pub plan_id: String,
    pub person: Option<String>,
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
    /// It shows an initial password: sent at once and never stored.
    pub sensitive: bool,
}

/// The compiled templates of every event, the configured ones and the built-in defaults.
pub struct Templates {
    env: Environment<'static>,
}

fn name(kind: EventKind, part: &str, default: bool) -> String {
    format!(
        "{}{}.{part}",
        if default { "default." } else { "" },
        kind.as_str()
    )
}

impl Templates {
    /// Compiles the templates of `config` and renders each with a sample event, so that
    /// syntax errors and unknown variables are reported now, each at its key.
    pub fn new(config: &NotifyConfig) -> Result<Templates, Vec<ConfigIssue>> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Block tags on lines of their own leave no blank lines in a plain-text mail.
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        // Plain text: nothing to escape, whatever a file is called.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        let mut issues = Vec::new();
        for kind in EventKind::ALL {
            let settings = config.event(kind);
            for (part, source, fallback) in [
                ("subject", &settings.subject, default_subject(kind)),
                ("body", &settings.body, default_body(kind)),
            ] {
                if let Err(e) = env.add_template_owned(name(kind, part, true), fallback) {
                    // Only a broken build could get here; say so rather than panic.
                    issues.push(issue(kind, part, &format!("built-in template: {e}")));
                }
                if let Err(e) = env.add_template_owned(name(kind, part, false), source.clone()) {
                    issues.push(issue(kind, part, &describe(&e)));
                }
            }
        }
        let templates = Templates { env };
        if issues.is_empty() {
            for kind in EventKind::ALL {
                let sample = sample(kind);
                let context = context(config, &sample);
                for part in ["subject", "body"] {
                    if let Err(e) = templates.render(kind, part, false, &context) {
                        let mut message = describe(&e);
                        let unknown = templates.unknown_names(kind, part, &context);
                        if e.kind() == minijinja::ErrorKind::UndefinedError && !unknown.is_empty() {
                            message = format!(
                                "{message}: unknown {} {}",
                                if unknown.len() == 1 { "name" } else { "names" },
                                unknown.join(", ")
                            );
                        }
                        let source = if part == "subject" {
                            &config.joiner.subject
                        } else {
                            &config.joiner.body
                        };
                        if kind == EventKind::Joiner
                            && !config.joiner.include_initial_password
                            && source.contains("initial_password")
                        {
                            message.push_str(
                                " (initial_password is only there with include_initial_password = true)",
                            );
                        }
                        issues.push(issue(kind, part, &message));
                    }
                }
            }
        }
        if issues.is_empty() {
            Ok(templates)
        } else {
            Err(issues)
        }
    }

    /// The variables (and attribute paths) the template reads that `context` lacks.
    fn unknown_names(&self, kind: EventKind, part: &str, context: &Value) -> Vec<String> {
        let Ok(t) = self.env.get_template(&name(kind, part, false)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = t
            .undeclared_variables(true)
            .into_iter()
            .filter(|path| {
                path.split('.')
                    .try_fold(context.clone(), |v, part| v.get_attr(part))
                    .map_or(true, |v| v.is_undefined())
            })
            .collect();
        names.sort();
        names
    }

    fn render(
        &self,
        kind: EventKind,
        part: &str,
        default: bool,
        context: &Value,
    ) -> Result<String, minijinja::Error> {
        self.env
            .get_template(&name(kind, part, default))?
            .render(context)
    }

    /// The e-mail for `event`, or `None` with a diagnostic when it has no recipient. A
    /// configured template that fails for this event (it passed the sample) gives way to the
    /// built-in one, with a warning: the mail still goes.
    pub fn build(&self, config: &NotifyConfig, event: &Event) -> (Option<Mail>, Vec<Diagnostic>) {
        let kind = event.kind();
        let mut diags = Vec::new();
        let person = event.person().map(str::to_owned);
        let with_person = |d: Diagnostic| match &person {
            Some(p) => d.for_person(p.clone()),
            None => d,
        };
        let to = recipients(config, event, &mut |d| diags.push(with_person(d)));
        if to.is_empty() {
            diags.push(with_person(Diagnostic::warning(
                "notify_no_recipient",
                format!(
                    "no {} e-mail{}: none of its recipients has an address",
                    kind.as_str(),
                    person
                        .as_deref()
                        .map(|p| format!(" about {p}"))
                        .unwrap_or_default()
                ),
            )));
            return (None, diags);
        }
        let context = context(config, event);
        let mut text = |part: &str| match self.render(kind, part, false, &context) {
            Ok(t) => Some(t),
            Err(e) => {
                diags.push(with_person(Diagnostic::warning(
                    "notify_template_failed",
                    format!(
                        "notifications.{}.{part}: {}; the built-in template was used",
                        kind.as_str(),
                        describe(&e)
                    ),
                )));
                self.render(kind, part, true, &context).ok()
            }
        };
        let (Some(subject), Some(body)) = (text("subject"), text("body")) else {
            return (None, diags);
        };
        let sensitive = matches!(event, Event::Joiner(j)
            if config.joiner.include_initial_password
                && j.accounts.iter().any(|a| a.initial_password.is_some()));
        let mail = Mail {
            key: event.key(),
            event: kind,
            plan_id: event.plan_id().to_owned(),
            person,
            to,
            subject: one_line(&subject),
            body: normalize_body(&body),
            sensitive,
        };
        (Some(mail), diags)
    }
}

fn issue(kind: EventKind, part: &str, message: &str) -> ConfigIssue {
    ConfigIssue::new(
        vec![
            "notifications".to_owned(),
            kind.as_str().to_owned(),
            part.to_owned(),
        ],
        message,
    )
}

/// A template error as one sentence, with its line.
fn describe(e: &minijinja::Error) -> String {
    let what = e
        .detail()
        .map_or_else(|| e.kind().to_string(), str::to_owned);
    match e.line() {
        Some(line) => format!("template error on line {line}: {what}"),
        None => format!("template error: {what}"),
    }
}

/// Headers are one line: a line break from a template or from HR data would start a header
/// of its own.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `\n` line ends, no trailing blanks on lines, one final line break.
fn normalize_body(s: &str) -> String {
    let mut out: String = s
        .replace("\r\n", "\n")
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n");
    while out.ends_with('\n') {
        out.pop();
    }
    // The signature separator is "-- " with its blank: restore it after trimming.
    out = out.replace("\n--\n", "\n-- \n");
    out.push('\n');
    out
}

/// The addresses of the event's recipients, in configured order, each once.
fn recipients(
    config: &NotifyConfig,
    event: &Event,
    report: &mut dyn FnMut(Diagnostic),
) -> Vec<String> {
    let manager = match event {
        Event::Joiner(j) => j.manager.as_ref(),
        Event::Leaver(l) => l.manager.as_ref(),
        Event::Held(_) => None,
    };
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut add = |a: &str| {
        if seen.insert(a.to_lowercase()) {
            out.push(a.to_owned());
        }
    };
    for r in &config.event(event.kind()).recipients {
        match r {
            Recipient::Address(a) => add(a),
            Recipient::Admins => config.admins.iter().for_each(|a| add(a)),
            Recipient::Manager => match manager {
                None => report(Diagnostic::warning(
                    "notify_no_manager",
                    "HR names no manager for the contract (nor for its departments up the tree)",
                )),
                Some(ManagerInfo {
                    id, email: None, ..
                }) => report(Diagnostic::warning(
                    "notify_manager_no_email",
                    format!(
                        "manager {id} has no e-mail address in HR (nor in the configured accounts)"
                    ),
                )),
                Some(ManagerInfo {
                    id,
                    email: Some(email),
                    ..
                }) => match email.parse::<lettre::Address>() {
                    Ok(_) => add(email),
                    Err(e) => report(Diagnostic::warning(
                        "notify_manager_bad_email",
                        format!("manager {id}'s e-mail address {email:?} is not valid ({e})"),
                    )),
                },
            },
        }
    }
    out
}

/// What templates see. Accounts show `initial_password` only when the configuration allows
/// it (then as `none` where the connector handed none over).
fn context(config: &NotifyConfig, event: &Event) -> Value {
    #[derive(Serialize)]
    struct Account<'a> {
        #[serde(flatten)]
        info: &'a AccountInfo,
        #[serde(skip_serializing_if = "Option::is_none")]
        initial_password: Option<Option<&'a str>>,
    }
    let accounts = |list: &[AccountInfo], allow: bool| -> Vec<Value> {
        list.iter()
            .map(|a| {
                Value::from(minijinja::value::Serde(Account {
                    info: a,
                    initial_password: allow
                        .then(|| a.initial_password.as_ref().map(|s| s.expose())),
                }))
            })
            .collect()
    };
    let first = |list: &[AccountInfo], f: fn(&AccountInfo) -> Option<&String>| {
        list.iter().find_map(f).cloned()
    };
    let base = |event: &Event| -> Vec<(&'static str, Value)> {
        vec![
            ("event", Value::from(event.kind().as_str())),
            ("plan_id", Value::from(event.plan_id())),
        ]
    };
    let mut fields = base(event);
    match event {
        Event::Joiner(j) => {
            fields.extend([
                ("person", serde(&j.person)),
                ("contract", serde(&j.contract)),
                ("manager", serde(&j.manager)),
                (
                    "accounts",
                    Value::from(accounts(
                        &j.accounts,
                        config.joiner.include_initial_password,
                    )),
                ),
                ("start_date", Value::from(j.contract.start.to_string())),
                (
                    "username",
                    Value::from(first(&j.accounts, |a| a.username.as_ref())),
                ),
                (
                    "email",
                    Value::from(first(&j.accounts, |a| a.email.as_ref())),
                ),
            ]);
        }
        Event::Leaver(l) => {
            fields.extend([
                ("person", serde(&l.person)),
                ("reason", serde(&l.reason)),
                ("contract", serde(&l.contract)),
                ("manager", serde(&l.manager)),
                ("accounts", Value::from(accounts(&l.accounts, false))),
                (
                    "end_date",
                    Value::from(
                        l.contract
                            .as_ref()
                            .and_then(|c| c.end)
                            .map(|d| d.to_string()),
                    ),
                ),
                (
                    "username",
                    Value::from(first(&l.accounts, |a| a.username.as_ref())),
                ),
            ]);
        }
        Event::Held(h) => {
            fields.extend([
                ("by", serde(&h.by)),
                ("breaches", serde(&h.breaches)),
                ("withheld", serde(&h.withheld)),
                ("link", Value::from(h.link.clone())),
                (
                    "approve_command",
                    Value::from(format!("koppel apply --approve {}", h.plan_id)),
                ),
                (
                    "reject_command",
                    Value::from(format!("koppel apply --reject {}", h.plan_id)),
                ),
            ]);
        }
    }
    Value::from(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect::<std::collections::BTreeMap<String, Value>>(),
    )
}

fn serde<T: Serialize>(v: &T) -> Value {
    Value::from(minijinja::value::Serde(v))
}

/// An event of `kind` with every field filled, for checking templates.
fn sample(kind: EventKind) -> Event {
    let date = |s: &str| s.parse().unwrap_or_default();
    let person = PersonInfo {
        id: "1000001".into(),
        name: "Jan de Vries".into(),
        given_name: "Jan".into(),
        family_name: "de Vries".into(),
        email: "jan.devries@example.org".into(),
    };
    let contract = ContractInfo {
        id: "1000001-1".into(),
        start: date("2026-12-01"),
        end: Some(date("2027-11-30")),
        department_code: "FIN".into(),
        department: "Financiën".into(),
        title: "Adviseur".into(),
        location: "Stadskantoor".into(),
    };
    let manager = Some(ManagerInfo {
        id: "1000002".into(),
        name: "Kim Vos".into(),
        email: Some("kim.vos@example.org".into()),
    });
    let accounts = vec![AccountInfo {
        target: "directory".into(),
        username: Some("jdevries".into()),
        email: Some("jan.devries@example.org".into()),
        enabled: false,
        attributes: [("username".to_owned(), "jdevries".to_owned())].into(),
        initial_password: None,
    }];
    match kind {
        EventKind::Joiner => Event::Joiner(Joiner {
            plan_id: "20261123-101500-abcdef".into(),
            person,
            contract,
            manager,
            accounts,
            part: Part::Run,
        }),
        EventKind::Leaver => Event::Leaver(Leaver {
            plan_id: "20261123-101500-abcdef".into(),
            person,
            reason: LeaveReason::ContractEnded,
            contract: Some(contract),
            manager,
            accounts,
            part: Part::Run,
        }),
        EventKind::Held => Event::Held(Held {
            plan_id: "20261123-101500-abcdef".into(),
            by: HeldBy::Threshold,
            breaches: vec!["target directory: 40 disable actions, the threshold is 10".into()],
            withheld: vec![Withheld {
                target: "directory".into(),
                kind: "disable".into(),
                count: 40,
            }],
            link: Some("https://koppel.example.org/plans/20261123-101500-abcdef".into()),
        }),
    }
}
