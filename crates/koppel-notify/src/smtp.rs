//! Sending over SMTP with lettre: STARTTLS or implicit TLS (rustls, the system's roots plus
//! an optional CA file), credentials read from their reference only when connecting.
//!
//! A refusal of one message (a permanent 5xx for its recipients or content) fails that message
//! alone; anything else (no connection, TLS, login, timeouts, 4xx) means the server cannot
//! take mail now, and the run stops sending so the rest waits in the outbox.

use std::str::FromStr;
use std::time::SystemTime;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use sha2::{Digest, Sha256};

use crate::config::{SmtpSettings, TlsMode};
use crate::error::NotifyError;
use crate::message::Mail;

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The server refused this message for good; others may still go.
    Refused(String),
    /// The server cannot take mail now: stop, the rest waits for the next run.
    Unavailable(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Refused(m) | SendError::Unavailable(m) => f.write_str(m),
        }
    }
}

/// A connection pool to the configured SMTP server; connects on the first message.
pub struct Sender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    server: String,
}

impl Sender {
    /// Reads the password and CA file now; contacts nothing yet.
    pub fn new(settings: &SmtpSettings, from: &Mailbox) -> Result<Sender, NotifyError> {
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.as_str())
                .port(settings.port)
                .timeout(Some(settings.timeout));
        if settings.tls != TlsMode::None {
            let mut params = TlsParameters::builder(settings.host.clone());
            if let Some(ca) = &settings.ca_file {
                let pem = std::fs::read(ca).map_err(|e| {
                    NotifyError::Smtp(format!(
                        "ca_file {} cannot be read: {}",
                        ca.display(),
                        e.kind()
                    ))
                })?;
                let cert = Certificate::from_pem(&pem).map_err(|e| {
                    NotifyError::Smtp(format!(
                        "ca_file {} holds no PEM certificate: {e}",
                        ca.display()
                    ))
                })?;
                params = params.add_root_certificate(cert);
            }
            let params = params
                .build_rustls()
                .map_err(|e| NotifyError::Smtp(format!("TLS settings: {e}")))?;
            builder = builder.tls(match settings.tls {
                TlsMode::Tls => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        } else {
            builder = builder.tls(Tls::None);
        }
        if let (Some(user), Some(secret)) = (&settings.username, &settings.password) {
            let password = secret.read().map_err(NotifyError::Smtp)?;
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Sender {
            transport: builder.build(),
            from: from.clone(),
            server: format!("{}:{}", settings.host, settings.port),
        })
    }

    /// Sends one mail, dated `date`.
    pub async fn send(&self, mail: &Mail, date: SystemTime) -> Result<(), SendError> {
        let message = to_message(mail, &self.from, date).map_err(SendError::Refused)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) => Err(classify(&e, &self.server)),
        }
    }
}

fn classify(e: &lettre::transport::smtp::Error, server: &str) -> SendError {
    let code = e.status().map(|c| c.to_string()).unwrap_or_default();
    // 530-539: authentication; a permanent refusal of the login refuses every message.
    if e.is_permanent() && !code.starts_with("53") {
        SendError::Refused(format!("the SMTP server {server} refused the message: {e}"))
    } else if e.is_timeout() {
        SendError::Unavailable(format!(
            "the SMTP server {server} did not answer in time: {e}"
        ))
    } else if e.is_tls() || e.to_string().contains("certificate") {
        SendError::Unavailable(format!(
            "TLS with the SMTP server {server} failed (is ca_file the CA that signed its certificate?): {e}"
        ))
    } else if code.starts_with("53") {
        SendError::Unavailable(format!(
            "the SMTP server {server} refused the login (check username and the password reference): {e}"
        ))
    } else {
        SendError::Unavailable(format!(
            "the SMTP server {server} cannot take mail now: {e}"
        ))
    }
}

/// The RFC 5322 message of `mail`: plain UTF-8 text, `Auto-Submitted` so that auto-replies
/// stay away, `X-Koppel-Event`/`X-Koppel-Plan` for mail filters, and a Message-ID derived from
/// the event's key, so a message sent twice (a crash before it was marked sent) is recognisably
/// one message.
pub fn to_message(mail: &Mail, from: &Mailbox, date: SystemTime) -> Result<Message, String> {
    let domain = from.email.domain().to_owned();
    let digest = Sha256::digest(mail.key.as_bytes());
    let id: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(mail.subject.clone())
        .date(date)
        .message_id(Some(format!("<{id}.koppel@{domain}>")))
        .header(ContentType::TEXT_PLAIN)
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".to_owned(),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Koppel-Event"),
            mail.event.as_str().to_owned(),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Koppel-Plan"),
            mail.plan_id.clone(),
        ));
    for to in &mail.to {
        let mailbox = Mailbox::from_str(to)
            .map_err(|e| format!("recipient {to:?} is not an e-mail address: {e}"))?;
        builder = builder.to(mailbox);
    }
    builder
        .body(mail.body.clone())
        .map_err(|e| format!("cannot build the message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EventKind;

    fn mail() -> Mail {
        Mail {
            key: "joiner/p1/run/1000001".into(),
            event: EventKind::Joiner,
            plan_id: "p1".into(),
            person: Some("1000001".into()),
            to: vec!["kim.vos@example.org".into(), "hr@example.org".into()],
            subject: "New colleague: Inês Mulder starts on 2026-12-01".into(),
            body: "Hello Kim,\n\nInês starts.\n".into(),
            sensitive: false,
        }
    }

    #[test]
    fn messages_are_plain_utf8_with_koppel_headers_and_a_stable_id() {
        let from: Mailbox = "koppel <koppel@koppeldam.example>".parse().unwrap();
        let date = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_790_000_000);
        let a = to_message(&mail(), &from, date).unwrap();
        let text = String::from_utf8(a.formatted()).unwrap();
        assert!(
            text.contains("From: koppel <koppel@koppeldam.example>\r\n"),
            "{text}"
        );
        assert!(
            text.contains("To: kim.vos@example.org, hr@example.org\r\n"),
            "{text}"
        );
        assert!(text.contains("X-Koppel-Event: joiner\r\n"), "{text}");
        assert!(text.contains("X-Koppel-Plan: p1\r\n"), "{text}");
        assert!(
            text.contains("Auto-Submitted: auto-generated\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Content-Type: text/plain; charset=utf-8\r\n"),
            "{text}"
        );
        // Non-ASCII subjects are encoded words, never raw bytes in a header.
        assert!(text.contains("Subject: New colleague: =?utf-8?"), "{text}");
        let again =
            String::from_utf8(to_message(&mail(), &from, date).unwrap().formatted()).unwrap();
        assert_eq!(text, again, "same mail and date, same bytes");
        let id = text.lines().find(|l| l.starts_with("Message-ID:")).unwrap();
        assert!(id.ends_with(".koppel@koppeldam.example>"), "{id}");
    }

    #[test]
    fn a_bad_recipient_is_an_error_for_that_mail() {
        let from: Mailbox = "koppel@example.org".parse().unwrap();
        let mut m = mail();
        m.to.push("not an address".into());
        let e = to_message(&m, &from, SystemTime::UNIX_EPOCH).unwrap_err();
        assert!(e.contains("not an address"), "{e}");
    }
}
