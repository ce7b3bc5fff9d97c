//! Notifications end to end: the demo organisation applied with `koppel apply`, e-mail to a
//! real SMTP sink (aiosmtpd on loopback), and what it received checked: the joiner's manager
//! gets the username and start date, a leaver's manager the disabled accounts, the admins a
//! held plan with its breach and link; an SMTP outage fails nothing and loses nothing.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{demo_workspace, json, ok, run, text, use_hr};
use koppel_testkit::smtp::{Received, SmtpSink};

fn configure(dir: &Path, sink: &SmtpSink) {
    let path = dir.join("koppel.toml");
    let mut config = std::fs::read_to_string(&path).unwrap();
    config.push_str(&format!(
        r#"
[notifications]
from = "koppel <koppel@koppeldam.example>"
admins = ["ict-beheer@koppeldam.example"]
link_base_url = "https://koppel.koppeldam.example/"

[notifications.smtp]
host = "127.0.0.1"
port = {}
tls = "none"
timeout_seconds = 5
"#,
        sink.port()
    ));
    std::fs::write(path, config).unwrap();
}

fn about<'a>(mails: &'a [Received], event: &str, subject: &str) -> Vec<&'a Received> {
    mails
        .iter()
        .filter(|m| m.header("X-Koppel-Event") == Some(event) && m.subject().contains(subject))
        .collect()
}

/// The directory's username of `person`, read from the target.
fn username(dir: &Path, person: &str) -> String {
    let accounts = json(dir, &["accounts", "directory", "--output", "json"]);
    accounts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["reference"] == person)
        .and_then(|a| a["attributes"]["username"].as_str())
        .unwrap_or_else(|| panic!("no directory account for {person}"))
        .to_owned()
}

/// Waits for the sink to settle (a run sends before it exits, but be kind to a slow disk).
fn settled(sink: &SmtpSink) -> Vec<Received> {
    let n = sink.messages().len();
    sink.wait_for(n, Duration::from_millis(200))
}

#[test]
fn joiners_and_leavers_are_told_to_their_managers() {
    let Some(sink) = SmtpSink::start_or_skip("joiners_and_leavers_are_told_to_their_managers")
    else {
        return;
    };
    let ws = demo_workspace();
    let dir = ws.path();
    configure(dir, &sink);
    let out = ok(dir, &["apply", "--now", "2026-11-23"]);
    assert!(out.contains("notifications: "), "{out}");
    let mails = settled(&sink);
    assert!(!mails.is_empty(), "{out}");
    assert!(
        mails
            .iter()
            .all(|m| m.header("X-Koppel-Event") == Some("joiner")),
        "the first run has joiners only"
    );

    // Sjoerd van der Meer starts on 1 December in ICT-WPL; his contract names 1000215.
    let sjoerd = about(&mails, "joiner", "Sjoerd van der Meer");
    assert_eq!(sjoerd.len(), 1, "{out}");
    let m = sjoerd[0];
    assert_eq!(m.rcpt_to, ["wouter.vos@koppeldam.example"]);
    assert_eq!(m.header("To"), Some("wouter.vos@koppeldam.example"));
    assert_eq!(m.header("From"), Some("koppel <koppel@koppeldam.example>"));
    assert_eq!(
        m.subject(),
        "New colleague: Sjoerd van der Meer starts on 2026-12-01"
    );
    let user = username(dir, "1000920");
    let body = m.body.replace("\r\n", "\n");
    assert!(body.starts_with("Hello Wouter Vos,\n"), "{body}");
    assert!(
        body.contains(
            "Sjoerd van der Meer starts on 2026-12-01 as Servicedeskmedewerker in Werkplek."
        ),
        "{body}"
    );
    assert!(
        body.contains(&format!("- directory\n  username: {user}\n")),
        "{body}"
    );
    assert!(
        body.contains("  usable from 2026-12-01\n"),
        "pre-boarding: {body}"
    );
    // Long employed people got accounts in this first run too, but they are no joiners.
    assert!(about(&mails, "joiner", "Inês Mulder").is_empty());
    for m in &mails {
        assert!(!m.raw.to_lowercase().contains("password:"), "{}", m.raw);
    }

    let audit = json(dir, &["audit", "--person", "1000920", "--output", "json"]);
    let notified: Vec<&serde_json::Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["record"]["event"] == "notified")
        .collect();
    assert_eq!(notified.len(), 1, "{audit:#}");
    assert_eq!(
        notified[0]["record"]["after"]["to"],
        serde_json::json!(["wouter.vos@koppeldam.example"])
    );

    // Nothing changed: nothing new to tell.
    let before = mails.len();
    ok(dir, &["apply", "--now", "2026-11-23"]);
    assert_eq!(settled(&sink).len(), before);

    // A month later: Ingrid Smit's contract ended on 15 December, Hendrik Kuipers retired.
    use_hr(dir, "hr-month-later");
    ok(dir, &["apply", "--now", "2026-12-23"]);
    let mails = settled(&sink);
    let ingrid = about(&mails, "leaver", "Ingrid Smit");
    assert_eq!(ingrid.len(), 1, "one mail for both accounts");
    let m = ingrid[0];
    assert_eq!(
        m.rcpt_to,
        ["kim.vos@koppeldam.example"],
        "the manager on her contract"
    );
    assert_eq!(
        m.subject(),
        "Accounts disabled: Ingrid Smit (left 2026-12-15)"
    );
    let body = m.body.replace("\r\n", "\n");
    assert!(
        body.contains("Ingrid Smit's contract as Medewerker Financiële administratie in Crediteurenadministratie ended on 2026-12-15."),
        "{body}"
    );
    assert!(
        body.contains(&format!("- directory: {}\n", username(dir, "1000929"))),
        "{body}"
    );
    assert!(body.contains("- plek: "), "{body}");
    let henk = about(&mails, "leaver", "Henk Kuipers");
    assert_eq!(henk.len(), 1);
    assert_eq!(henk[0].rcpt_to, ["anna.gerritsen@koppeldam.example"]);
    // And the month's joiners: Łukasz Wójcik starts on 4 January.
    let lukasz = about(&mails, "joiner", "Łukasz Wójcik starts on 2027-01-04");
    assert_eq!(lukasz.len(), 1);
}

#[test]
fn a_held_plan_is_told_to_the_admins_with_its_breach_and_link() {
    let Some(sink) =
        SmtpSink::start_or_skip("a_held_plan_is_told_to_the_admins_with_its_breach_and_link")
    else {
        return;
    };
    let ws = demo_workspace();
    let dir = ws.path();
    configure(dir, &sink);
    ok(dir, &["apply", "--now", "2026-11-23"]);
    let before = settled(&sink).len();

    // An export cut in half: the source guard holds everything.
    let persons = dir.join("hr/persons.csv");
    let text_before = std::fs::read_to_string(&persons).unwrap();
    let half: Vec<&str> = text_before.lines().take(250).collect();
    std::fs::write(&persons, half.join("\n") + "\n").unwrap();
    let out = run(dir, &["apply", "--now", "2026-11-24"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let said = text(&out);
    let id = said
        .split("Plan ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("{said}"))
        .to_owned();
    let mails = settled(&sink);
    assert_eq!(mails.len(), before + 1, "{said}");
    let m = mails.last().unwrap();
    assert_eq!(m.header("X-Koppel-Event"), Some("held"));
    assert_eq!(m.rcpt_to, ["ict-beheer@koppeldam.example"]);
    assert_eq!(
        m.subject(),
        format!("koppel plan {id} is held: approval needed")
    );
    let body = m.body.replace("\r\n", "\n");
    assert!(
        body.contains("the HR data changed more than the source guards allow"),
        "{body}"
    );
    assert!(body.contains("persons removed: "), "{body}");
    assert!(body.contains("the limit is 5%"), "{body}");
    assert!(
        body.contains(&format!(
            "Review it: https://koppel.koppeldam.example/plans/{id}\n"
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!("`koppel apply --approve {id}`")),
        "{body}"
    );

    // Rejecting it tells nobody anything new.
    run(dir, &["apply", "--reject", &id, "--now", "2026-11-24"]);
    assert_eq!(settled(&sink).len(), before + 1);
}

#[test]
fn an_smtp_outage_fails_nothing_and_the_next_run_sends_what_waited() {
    let Some(mut sink) =
        SmtpSink::start_or_skip("an_smtp_outage_fails_nothing_and_the_next_run_sends_what_waited")
    else {
        return;
    };
    let ws = demo_workspace();
    let dir = ws.path();
    configure(dir, &sink);
    sink.stop();
    let out = run(dir, &["apply", "--now", "2026-11-23"]);
    let said = text(&out);
    assert!(
        out.status.success(),
        "provisioning does not wait for mail: {said}"
    );
    assert!(said.contains("kept for the next run"), "{said}");
    assert!(said.contains("are kept and sent by the next run"), "{said}");
    // The accounts are there.
    assert!(!username(dir, "1000920").is_empty());
    let audit = json(dir, &["audit", "--output", "json"]);
    let failed = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["record"]["event"] == "notification_failed")
        .count();
    assert_eq!(
        failed, 1,
        "one attempt: the rest were not tried against a server that is down"
    );
    let queued: usize = said
        .split("notifications: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    assert!(queued > 0);

    sink.start_again().unwrap();
    let said = ok(dir, &["apply", "--now", "2026-11-23"]);
    assert!(said.contains(&format!("0 queued, {queued} sent")), "{said}");
    let mails = settled(&sink);
    assert_eq!(mails.len(), queued);
    assert_eq!(about(&mails, "joiner", "Sjoerd van der Meer").len(), 1);
    ok(dir, &["apply", "--now", "2026-11-23"]);
    assert_eq!(settled(&sink).len(), queued, "nothing twice");
    assert!(ok(dir, &["audit", "verify"]).contains("intact"));
}

#[test]
fn a_bad_notification_setting_is_named_with_its_line_and_nothing_is_applied() {
    let ws = demo_workspace();
    let dir = ws.path();
    let path = dir.join("koppel.toml");
    let mut config = std::fs::read_to_string(&path).unwrap();
    let line = config.lines().count() + 7;
    config.push_str(
        "\n[notifications]\nfrom = \"koppel@koppeldam.example\"\n\n[notifications.smtp]\nhost = \"smtp.koppeldam.example\"\ntls = \"none\"\n\n[notifications.joiner]\nbody = \"Hello {{ manager.nmae }}\"\n",
    );
    std::fs::write(&path, config).unwrap();
    for args in [&["validate"][..], &["apply", "--now", "2026-11-23"][..]] {
        let out = run(dir, args);
        let said = text(&out);
        assert!(!out.status.success(), "{said}");
        assert!(
            said.contains(&format!(
                "koppel.toml:{line}:1: notifications.smtp.tls: \"none\" would send mail in clear"
            )),
            "{said}"
        );
        assert!(
            said.contains("notifications.joiner.body: template error"),
            "{said}"
        );
        assert!(said.contains("manager.nmae"), "{said}");
    }
    assert!(!dir.join("koppel.db").exists(), "nothing was applied");
}

#[test]
fn the_notify_example_is_valid() {
    let dir = common::examples().join("notify");
    let out = ok(&dir, &["validate", "--config", "koppel.toml"]);
    assert!(out.contains("koppel.toml: valid"), "{out}");
}
