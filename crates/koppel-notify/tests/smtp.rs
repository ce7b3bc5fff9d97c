//! Sending against a real SMTP server: aiosmtpd on loopback (koppel-testkit), plain, with
//! STARTTLS and a login, and with implicit TLS; the server down, a recipient refused, a wrong
//! CA or password. What the server received is read back and checked.

use std::path::Path;
use std::time::{Duration, SystemTime};

use koppel_notify::{EventKind, Mail, Notifier, SendReport};
use koppel_store::{AuditEvent, AuditFilter, SqliteStore, Store};
use koppel_testkit::smtp::{SinkOptions, SinkTls, SmtpSink};
use koppel_testkit::tls::TestPki;

const AT: &str = "2026-11-23T10:00:00.000Z";

/// The messages' Date: a fixed time, as the library never reads the clock.
fn date() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_428_000)
}

fn mail(key: &str, to: &[&str]) -> Mail {
    Mail {
        key: key.into(),
        event: EventKind::Joiner,
        plan_id: "20261123-101500-abc123".into(),
        person: Some(key.rsplit('/').next().unwrap_or_default().into()),
        to: to.iter().map(|s| s.to_string()).collect(),
        subject: "New colleague: Inês Mulder starts on 2026-12-01".into(),
        body: "Hello Kim Vos,\n\nInês Mulder starts on 2026-12-01.\n- directory\n  username: imulder\n".into(),
        sensitive: false,
    }
}

fn notifier(dir: &Path, smtp: &str) -> Notifier {
    let text = format!(
        "from = \"koppel <koppel@koppeldam.example>\"\nadmins = [\"ict@koppeldam.example\"]\nmax_attempts = 3\n[smtp]\nhost = \"127.0.0.1\"\ntimeout_seconds = 5\n{smtp}"
    );
    let table: toml::Table = toml::from_str(&text).unwrap();
    Notifier::from_config(&table, dir).unwrap_or_else(|e| panic!("{e}"))
}

async fn store(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join("koppel.db")).await.unwrap()
}

async fn send(n: &Notifier, store: &SqliteStore, mails: Vec<Mail>) -> SendReport {
    let (_, direct) = n.queue(store, mails, AT).await.unwrap();
    n.send_pending(store, direct, AT, date(), "test").await
}

#[tokio::test]
async fn mail_arrives_with_its_recipients_headers_and_text() {
    let Some(sink) = SmtpSink::start_or_skip("mail_arrives_with_its_recipients_headers_and_text")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let n = notifier(
        dir.path(),
        &format!("port = {}\ntls = \"none\"\n", sink.port()),
    );
    let store = store(dir.path()).await;
    let report = send(
        &n,
        &store,
        vec![
            mail(
                "joiner/p/run/3",
                &["kim.vos@koppeldam.example", "hr@koppeldam.example"],
            ),
            mail("joiner/p/run/5", &["bas.smit@koppeldam.example"]),
        ],
    )
    .await;
    assert_eq!(report.sent, 2, "{report:?}");
    assert_eq!(report.pending, 0);
    let got = sink.wait_for(2, Duration::from_secs(5));
    assert_eq!(got.len(), 2);
    let m = &got[0];
    assert_eq!(m.mail_from, "koppel@koppeldam.example");
    assert_eq!(
        m.rcpt_to,
        ["kim.vos@koppeldam.example", "hr@koppeldam.example"]
    );
    assert_eq!(
        m.header("To"),
        Some("kim.vos@koppeldam.example, hr@koppeldam.example")
    );
    assert_eq!(m.header("From"), Some("koppel <koppel@koppeldam.example>"));
    assert_eq!(
        m.subject(),
        "New colleague: Inês Mulder starts on 2026-12-01"
    );
    assert_eq!(m.header("X-Koppel-Event"), Some("joiner"));
    assert_eq!(m.header("X-Koppel-Plan"), Some("20261123-101500-abc123"));
    assert_eq!(m.header("Auto-Submitted"), Some("auto-generated"));
    assert!(
        m.header("Message-ID")
            .is_some_and(|id| id.ends_with(".koppel@koppeldam.example>"))
    );
    assert_eq!(
        m.body.replace("\r\n", "\n").trim_end(),
        "Hello Kim Vos,\n\nInês Mulder starts on 2026-12-01.\n- directory\n  username: imulder"
    );
    assert!(!m.tls);
    assert_eq!(got[1].rcpt_to, ["bas.smit@koppeldam.example"]);

    // Sent is sent: nothing goes twice, also when the same events are queued again.
    assert!(store.outbox_pending().await.unwrap().is_empty());
    let again = send(
        &n,
        &store,
        vec![mail("joiner/p/run/3", &["kim.vos@koppeldam.example"])],
    )
    .await;
    assert_eq!(again.sent, 0);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sink.messages().len(), 2);
    let audit = store.audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(audit.len(), 2);
    assert!(audit.iter().all(|e| e.record.event == AuditEvent::Notified));
    assert_eq!(audit[0].record.person.as_deref(), Some("3"));
    assert_eq!(
        audit[0].record.after["to"],
        serde_json::json!(["kim.vos@koppeldam.example", "hr@koppeldam.example"])
    );
}

#[tokio::test]
async fn a_server_that_is_down_keeps_the_mail_for_the_next_run() {
    let Some(mut sink) =
        SmtpSink::start_or_skip("a_server_that_is_down_keeps_the_mail_for_the_next_run")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let n = notifier(
        dir.path(),
        &format!("port = {}\ntls = \"none\"\n", sink.port()),
    );
    let store = store(dir.path()).await;
    sink.stop();
    let report = send(
        &n,
        &store,
        vec![
            mail("joiner/p/run/3", &["kim@x.example"]),
            mail("joiner/p/run/5", &["bas@x.example"]),
        ],
    )
    .await;
    assert_eq!(report.sent, 0);
    assert_eq!(report.pending, 2);
    assert_eq!(
        report.failed.len(),
        1,
        "the first failure stops the run: {report:?}"
    );
    let why = report.unavailable.clone().unwrap();
    assert!(why.contains(&format!("127.0.0.1:{}", sink.port())), "{why}");
    let pending = store.outbox_pending().await.unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].attempts, 1);
    assert!(
        pending[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("cannot take mail now")
    );
    let audit = store.audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].record.event, AuditEvent::NotificationFailed);
    assert!(audit[0].record.error.is_some());

    sink.start_again().unwrap();
    let report = n.send_pending(&store, Vec::new(), AT, date(), "test").await;
    assert_eq!((report.sent, report.pending), (2, 0), "{report:?}");
    assert_eq!(sink.wait_for(2, Duration::from_secs(5)).len(), 2);
    assert!(store.outbox_pending().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_refused_recipient_fails_its_message_alone_and_is_given_up_in_the_end() {
    let Some(sink) = SmtpSink::start_with_or_skip(
        "a_refused_recipient_fails_its_message_alone_and_is_given_up_in_the_end",
        SinkOptions {
            reject: vec!["gone@koppeldam.example".into()],
            ..SinkOptions::default()
        },
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let n = notifier(
        dir.path(),
        &format!("port = {}\ntls = \"none\"\n", sink.port()),
    );
    let store = store(dir.path()).await;
    let report = send(
        &n,
        &store,
        vec![
            mail("joiner/p/run/3", &["gone@koppeldam.example"]),
            mail("joiner/p/run/5", &["bas@koppeldam.example"]),
        ],
    )
    .await;
    assert_eq!(report.sent, 1, "{report:?}");
    assert!(report.unavailable.is_none(), "a refusal is not an outage");
    assert!(
        report.failed[0].1.contains("refused the message"),
        "{report:?}"
    );
    assert_eq!(sink.wait_for(1, Duration::from_secs(5)).len(), 1);
    // max_attempts = 3: two more refusals, then it is given up and no longer tried.
    for _ in 0..2 {
        n.send_pending(&store, Vec::new(), AT, date(), "test").await;
    }
    let report = n.send_pending(&store, Vec::new(), AT, date(), "test").await;
    assert_eq!(
        (report.sent, report.failed.len(), report.given_up),
        (0, 0, 1),
        "{report:?}"
    );
    let audit = store.audit(&AuditFilter::default()).await.unwrap();
    let failed = audit
        .iter()
        .filter(|e| e.record.event == AuditEvent::NotificationFailed)
        .count();
    assert_eq!(failed, 3);
}

fn pki(dir: &Path) -> TestPki {
    TestPki::generate(&dir.join("pki")).unwrap()
}

#[tokio::test]
async fn starttls_with_a_login_read_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let Some(sink) = SmtpSink::start_with_or_skip(
        "starttls_with_a_login_read_from_a_file",
        SinkOptions {
            tls: SinkTls::Starttls {
                cert: pki.cert_pem.clone(),
                key: pki.key_pem.clone(),
            },
            login: Some(("koppel".into(), "sm7p-pass-word".into())),
            reject: Vec::new(),
        },
    ) else {
        return;
    };
    std::fs::write(dir.path().join("smtp-password"), "sm7p-pass-word\n").unwrap();
    let settings = |password_file: &str, ca: &Path| {
        format!(
            "port = {}\ntls = \"starttls\"\nca_file = \"{}\"\nusername = \"koppel\"\npassword_file = \"{password_file}\"\n",
            sink.port(),
            ca.display()
        )
    };
    let store = store(dir.path()).await;

    // A wrong password: the login is refused, the mail kept, the password in no message.
    std::fs::write(dir.path().join("wrong"), "not-it\n").unwrap();
    let n = notifier(dir.path(), &settings("wrong", &pki.ca_pem));
    let report = send(
        &n,
        &store,
        vec![mail("joiner/p/run/3", &["kim@koppeldam.example"])],
    )
    .await;
    assert_eq!(report.sent, 0);
    let why = report.unavailable.clone().unwrap();
    assert!(why.contains("refused the login"), "{why}");
    assert!(!format!("{report:?}").contains("not-it"));

    // A CA that did not sign the server's certificate: refused before any password is sent.
    let n = notifier(
        dir.path(),
        &settings("smtp-password", &pki.untrusted_ca_pem),
    );
    let report = n.send_pending(&store, Vec::new(), AT, date(), "test").await;
    let why = report.unavailable.clone().unwrap();
    assert!(why.contains("TLS"), "{why}");
    assert_eq!(report.pending, 1);

    let n = notifier(dir.path(), &settings("smtp-password", &pki.ca_pem));
    let report = n.send_pending(&store, Vec::new(), AT, date(), "test").await;
    assert_eq!(report.sent, 1, "{report:?}");
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert!(
        got[0].tls && got[0].authenticated,
        "over STARTTLS, logged in"
    );
    assert_eq!(got[0].rcpt_to, ["kim@koppeldam.example"]);
    let audit = store.audit(&AuditFilter::default()).await.unwrap();
    let text = serde_json::to_string(&audit).unwrap();
    assert!(!text.contains("sm7p-pass-word") && !text.contains("not-it"));
}

#[tokio::test]
async fn implicit_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let Some(sink) = SmtpSink::start_with_or_skip(
        "implicit_tls",
        SinkOptions {
            tls: SinkTls::Smtps {
                cert: pki.cert_pem.clone(),
                key: pki.key_pem.clone(),
            },
            ..SinkOptions::default()
        },
    ) else {
        return;
    };
    let n = notifier(
        dir.path(),
        &format!(
            "port = {}\ntls = \"tls\"\nca_file = \"{}\"\n",
            sink.port(),
            pki.ca_pem.display()
        ),
    );
    let store = store(dir.path()).await;
    let report = send(
        &n,
        &store,
        vec![mail("joiner/p/run/3", &["kim@koppeldam.example"])],
    )
    .await;
    assert_eq!(report.sent, 1, "{report:?}");
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert!(got[0].tls);
}

#[tokio::test]
async fn a_mail_with_a_password_is_sent_at_once_and_never_stored() {
    let Some(mut sink) =
        SmtpSink::start_or_skip("a_mail_with_a_password_is_sent_at_once_and_never_stored")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let n = notifier(
        dir.path(),
        &format!("port = {}\ntls = \"none\"\n", sink.port()),
    );
    let store = store(dir.path()).await;
    let mut secret = mail("joiner/p/run/3", &["kim@koppeldam.example"]);
    secret.body = "directory: Tr0ub4dor-3-horse\n".into();
    secret.sensitive = true;
    let report = send(&n, &store, vec![secret.clone()]).await;
    assert_eq!(report.sent, 1);
    assert!(
        sink.wait_for(1, Duration::from_secs(5))[0]
            .body
            .contains("Tr0ub4dor")
    );
    assert!(store.outbox_pending().await.unwrap().is_empty());

    // The server down: the mail is lost rather than stored, and the report says so.
    sink.stop();
    let report = send(&n, &store, vec![secret]).await;
    assert_eq!(report.lost_sensitive, 1, "{report:?}");
    assert!(report.to_string().contains("reset them"), "{report}");
    assert!(store.outbox_pending().await.unwrap().is_empty());
    store.close().await;
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(9).any(|w| w == b"Tr0ub4dor"),
            "the password is in no store file"
        );
    }
}
