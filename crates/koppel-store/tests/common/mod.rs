//! Helpers shared by the store's tests: a store in a temporary directory and builders for
//! realistic actions and audit records.
#![allow(dead_code)]

use std::collections::BTreeMap;

use koppel_core::plan::{Change, Origin, Reason};
use koppel_core::{Action, ActionKind, AttrValue, Date};
use koppel_store::{AuditEvent, AuditRecord, SqliteStore};

pub async fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("koppel.db"))
        .await
        .unwrap();
    (dir, store)
}

pub fn d(s: &str) -> Date {
    s.parse().unwrap()
}

fn reason(origin: Origin) -> Vec<Reason> {
    vec![
        Reason::new(origin)
            .rules(vec!["employees".into()])
            .contracts(vec!["c1".into()]),
    ]
}

pub fn create(target: &str, person: &str, attrs: &[(&str, &str)], enabled: bool) -> Action {
    let mut a = Action::new(
        target,
        person,
        ActionKind::Create,
        reason(Origin::RuleMatched),
    );
    a.attributes = attrs
        .iter()
        .map(|(k, v)| (k.to_string(), AttrValue::from(*v)))
        .collect();
    a.attributes.insert(
        "groups".into(),
        AttrValue::List(vec!["a".into(), "b".into()]),
    );
    a.attributes.insert("badge".into(), AttrValue::Int(-42));
    a.attributes.insert("vip".into(), AttrValue::Bool(false));
    a.enabled = Some(enabled);
    a.correlation = Some(("employeeId".into(), AttrValue::from(person)));
    a.generator_inputs.insert(
        "username".into(),
        vec![format!("{person}-a"), format!("{person}-b")],
    );
    a
}

pub fn update(target: &str, person: &str, changes: &[(&str, Option<&str>)]) -> Action {
    let mut a = Action::new(
        target,
        person,
        ActionKind::Update,
        reason(Origin::PersonUpdated),
    );
    a.changes = changes
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                Change {
                    from: AttrValue::from("old"),
                    to: v.map(AttrValue::from).unwrap_or(AttrValue::Null),
                },
            )
        })
        .collect();
    a.generator_inputs
        .insert("username".into(), vec![format!("{person}-new")]);
    a
}

pub fn simple(target: &str, person: &str, kind: ActionKind) -> Action {
    Action::new(target, person, kind, reason(Origin::ContractEnded))
}

pub fn grant(target: &str, person: &str, permission: &str) -> Action {
    let mut a = Action::new(
        target,
        person,
        ActionKind::Grant,
        reason(Origin::RuleMatched),
    );
    a.permission = Some(permission.into());
    a
}

pub fn revoke(target: &str, person: &str, permission: &str) -> Action {
    let mut a = Action::new(
        target,
        person,
        ActionKind::Revoke,
        reason(Origin::RemovedFromRule),
    );
    a.permission = Some(permission.into());
    a
}

pub fn delete(target: &str, person: &str, released: &[(&str, &str)]) -> Action {
    let mut a = Action::new(
        target,
        person,
        ActionKind::Delete,
        reason(Origin::RetentionExpired),
    );
    a.released = released
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
    a
}

pub fn audit_record(at: &str, target: &str, person: &str, action: &Action) -> AuditRecord {
    AuditRecord {
        at: at.to_owned(),
        actor: "koppel apply".to_owned(),
        event: AuditEvent::Applied,
        plan_id: Some("plan-1".to_owned()),
        target: Some(target.to_owned()),
        person: Some(person.to_owned()),
        action: Some(action.kind),
        permission: action.permission.clone(),
        before: serde_json::json!({"enabled": false, "mail": null}),
        after: serde_json::json!({"enabled": true, "mail": "a@example.org", "n": 1.5}),
        reasons: action.reasons.clone(),
        error: None,
    }
}
