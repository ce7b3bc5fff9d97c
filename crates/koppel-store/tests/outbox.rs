//! The notification outbox: messages kept until sent, added once per key, each attempt audited
//! in the same transaction, and everything still there after the store is opened again.

mod common;

use koppel_store::{AuditEvent, AuditFilter, AuditRecord, OutboxMessage, SqliteStore, Store};

fn message(key: &str, created_at: &str) -> OutboxMessage {
    OutboxMessage {
        key: key.into(),
        created_at: created_at.into(),
        event: "joiner".into(),
        plan_id: Some("p1".into()),
        person: Some("1000001".into()),
        to: vec!["kim.vos@example.org".into(), "hr@example.org".into()],
        subject: "New colleague: Inês Mulder".into(),
        body: "Hello Kim,\n".into(),
        attempts: 0,
        last_error: None,
    }
}

fn record(event: AuditEvent, error: Option<&str>) -> AuditRecord {
    AuditRecord {
        at: "2026-11-23T10:00:00.000Z".into(),
        actor: "test".into(),
        event,
        plan_id: Some("p1".into()),
        target: None,
        person: Some("1000001".into()),
        action: None,
        permission: None,
        before: serde_json::Value::Null,
        after: serde_json::json!({ "notification": "joiner" }),
        reasons: Vec::new(),
        error: error.map(str::to_owned),
    }
}

#[tokio::test]
async fn messages_wait_until_sent_and_a_key_is_added_once() {
    let (dir, store) = common::store().await;
    let added = store
        .outbox_add(&[
            message("joiner/p1/run/2", "2026-11-23T10:00:00.000Z"),
            message("joiner/p1/run/1", "2026-11-23T10:00:00.000Z"),
        ])
        .await
        .unwrap();
    assert_eq!(added, 2);
    // The same plan read again (a resumed run) adds nothing, whatever the text now says.
    let mut again = message("joiner/p1/run/1", "2026-11-24T10:00:00.000Z");
    again.subject = "changed".into();
    assert_eq!(store.outbox_add(&[again]).await.unwrap(), 0);

    let pending = store.outbox_pending().await.unwrap();
    let keys: Vec<&str> = pending.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(
        keys,
        ["joiner/p1/run/1", "joiner/p1/run/2"],
        "oldest first, then by key"
    );
    assert_eq!(
        pending[0],
        message("joiner/p1/run/1", "2026-11-23T10:00:00.000Z")
    );

    store
        .outbox_failed(
            "joiner/p1/run/1",
            "connection refused",
            &record(AuditEvent::NotificationFailed, Some("connection refused")),
        )
        .await
        .unwrap();
    store
        .outbox_sent(
            "joiner/p1/run/2",
            "2026-11-23T10:00:01.000Z",
            &record(AuditEvent::Notified, None),
        )
        .await
        .unwrap();
    // Sent stays sent: a second outcome for it is refused, nothing changes.
    assert!(
        store
            .outbox_sent("joiner/p1/run/2", "x", &record(AuditEvent::Notified, None))
            .await
            .is_err()
    );
    // A sent key is still known: adding it again does not send it twice.
    assert_eq!(
        store
            .outbox_add(&[message("joiner/p1/run/2", "2026-11-25T00:00:00.000Z")])
            .await
            .unwrap(),
        0
    );
    store.close().await;

    let store = SqliteStore::open(&dir.path().join("koppel.db"))
        .await
        .unwrap();
    let pending = store.outbox_pending().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].key, "joiner/p1/run/1");
    assert_eq!(pending[0].attempts, 1);
    assert_eq!(pending[0].last_error.as_deref(), Some("connection refused"));

    let audit = store.audit(&AuditFilter::default()).await.unwrap();
    let events: Vec<AuditEvent> = audit.iter().map(|e| e.record.event).collect();
    assert_eq!(
        events,
        [AuditEvent::NotificationFailed, AuditEvent::Notified],
        "one entry per recorded attempt, read back with its kind"
    );
    assert_eq!(audit[0].record.error.as_deref(), Some("connection refused"));
    assert!(store.audit_verify().await.unwrap().is_intact());
}

#[tokio::test]
async fn an_attempt_for_an_unknown_message_changes_nothing() {
    let (_dir, store) = common::store().await;
    let e = store
        .outbox_failed(
            "nope",
            "x",
            &record(AuditEvent::NotificationFailed, Some("x")),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    assert!(
        store
            .audit(&AuditFilter::default())
            .await
            .unwrap()
            .is_empty(),
        "the audit entry rolled back with it"
    );
}
