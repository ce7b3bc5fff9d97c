//! Reconcile: compare what a target really holds with what koppel last wrote to it, and put
//! koppel's values back on request. Orphans are reported, never removed automatically.
//!
//! [`compare`] is pure (accounts read from the target in, a report out); [`repair`] turns
//! the report's drift into operations, carries them out and records each in the audit log.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use koppel_connectors::target::{Op, Target, TargetAccount, TargetError};
use koppel_core::AttrValue;
use koppel_core::plan::{ActionKind, Origin, Reason};
use koppel_core::state::TargetState;
use koppel_store::{AuditEvent, AuditRecord, Store, StoreError};
use serde::Serialize;

/// Attributes that describe where an account lives rather than what it holds: targets may
/// not return them as attributes, so their absence is not drift.
const PLACEMENT: &[&str] = &["container"];

/// What reconcile found in one target.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub target: String,
    /// Accounts read from the target.
    pub accounts_read: usize,
    /// Accounts koppel manages (in the known state).
    pub managed: usize,
    /// Accounts in the target that match no person: not koppel's, and no person's
    /// correlation value.
    pub orphans: Vec<Orphan>,
    /// Accounts in the target that are not koppel's yet but belong to a person by
    /// correlation: the next apply adopts them.
    pub unmanaged: Vec<Unmanaged>,
    /// Managed accounts whose attributes or enabled state differ from what koppel wrote.
    pub drift: Vec<Drift>,
    /// Memberships koppel granted that the target no longer has.
    pub missing_permissions: Vec<Membership>,
    /// Memberships the target has that koppel did not grant (reported, never revoked here).
    pub extra_permissions: Vec<Membership>,
    /// Managed accounts the target no longer has at all.
    pub missing_accounts: Vec<Membership>,
}

impl Report {
    /// True when the target holds exactly what koppel wrote and nothing unexplained.
    pub fn is_clean(&self) -> bool {
        self.orphans.is_empty()
            && self.drift.is_empty()
            && self.missing_permissions.is_empty()
            && self.missing_accounts.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Orphan {
    pub reference: String,
    /// The account's correlation value, when it has one.
    pub correlation: Option<String>,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unmanaged {
    pub reference: String,
    pub person: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    pub person: String,
    pub reference: String,
    /// Attribute → (koppel's value, the target's value).
    pub attributes: BTreeMap<String, (AttrValue, AttrValue)>,
    /// (koppel's, the target's) when they differ.
    pub enabled: Option<(bool, bool)>,
}

/// A person's account and, for memberships, the permission.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Membership {
    pub person: String,
    pub reference: String,
    pub permission: String,
}

/// Compares the accounts read from `target` with the known state. `correlation` is the
/// target's correlation attribute; `persons` maps lowercased correlation values to persons
/// (see `koppel_core::plan::correlation_values`).
pub fn compare(
    target: &str,
    known: Option<&TargetState>,
    live: &[TargetAccount],
    correlation: Option<&str>,
    persons: &BTreeMap<String, String>,
) -> Report {
    let empty = TargetState::default();
    let known = known.unwrap_or(&empty);
    let mut report = Report {
        target: target.to_owned(),
        accounts_read: live.len(),
        managed: known.accounts.len(),
        ..Report::default()
    };
    let by_reference: HashMap<&str, &TargetAccount> =
        live.iter().map(|a| (a.reference.as_str(), a)).collect();
    let mut managed_refs: BTreeSet<&str> = BTreeSet::new();

    for (person, acc) in &known.accounts {
        if acc.reference.is_empty() {
            continue;
        }
        managed_refs.insert(&acc.reference);
        let Some(found) = by_reference.get(acc.reference.as_str()) else {
            report.missing_accounts.push(Membership {
                person: person.clone(),
                reference: acc.reference.clone(),
                permission: String::new(),
            });
            continue;
        };
        let mut attributes = BTreeMap::new();
        for (name, want) in &acc.attributes {
            let have = found.attributes.get(name).cloned().unwrap_or_default();
            if PLACEMENT.contains(&name.as_str()) && have.is_null() {
                continue;
            }
            if !same(want, &have) {
                attributes.insert(name.clone(), (want.clone(), have));
            }
        }
        let enabled = (acc.enabled != found.enabled).then_some((acc.enabled, found.enabled));
        if !attributes.is_empty() || enabled.is_some() {
            report.drift.push(Drift {
                person: person.clone(),
                reference: acc.reference.clone(),
                attributes,
                enabled,
            });
        }
        let membership = |permission: &String| Membership {
            person: person.clone(),
            reference: acc.reference.clone(),
            permission: permission.clone(),
        };
        report.missing_permissions.extend(
            acc.permissions
                .iter()
                .filter(|p| !found.permissions.iter().any(|f| f.eq_ignore_ascii_case(p)))
                .map(membership),
        );
        report.extra_permissions.extend(
            found
                .permissions
                .iter()
                .filter(|f| !acc.permissions.iter().any(|p| p.eq_ignore_ascii_case(f)))
                .map(membership),
        );
    }

    for account in live {
        if managed_refs.contains(account.reference.as_str()) {
            continue;
        }
        let value = correlation
            .and_then(|c| account.attributes.get(c))
            .and_then(text_of);
        match value.as_ref().and_then(|v| persons.get(&v.to_lowercase())) {
            Some(person) => report.unmanaged.push(Unmanaged {
                reference: account.reference.clone(),
                person: person.clone(),
            }),
            None => report.orphans.push(Orphan {
                reference: account.reference.clone(),
                correlation: value,
                enabled: account.enabled,
            }),
        }
    }
    report.orphans.sort_by(|a, b| a.reference.cmp(&b.reference));
    report
        .unmanaged
        .sort_by(|a, b| a.reference.cmp(&b.reference));
    report
}

/// The first text form of a value: a correlation attribute has one value.
fn text_of(v: &AttrValue) -> Option<String> {
    match v {
        AttrValue::Null => None,
        AttrValue::List(items) => items.first().cloned(),
        AttrValue::Text(s) => Some(s.clone()),
        AttrValue::Int(i) => Some(i.to_string()),
        AttrValue::Bool(b) => Some(b.to_string()),
    }
}

/// Values as a target keeps them: text forms, multi-valued attributes as sets, booleans in
/// any case (LDAP's `TRUE` is koppel's `true`), one value equal to a list of just it.
fn same(want: &AttrValue, have: &AttrValue) -> bool {
    fn form(s: &str) -> Option<String> {
        if s.is_empty() {
            None
        } else if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") {
            Some(s.to_ascii_lowercase())
        } else {
            Some(s.to_owned())
        }
    }
    fn forms(v: &AttrValue) -> BTreeSet<String> {
        match v {
            AttrValue::Null => BTreeSet::new(),
            AttrValue::Bool(b) => BTreeSet::from([b.to_string()]),
            AttrValue::Int(i) => BTreeSet::from([i.to_string()]),
            AttrValue::Text(s) => form(s).into_iter().collect(),
            AttrValue::List(items) => items.iter().filter_map(|s| form(s)).collect(),
        }
    }
    want == have || forms(want) == forms(have)
}

/// One repair carried out, and how it went.
#[derive(Debug, Clone, PartialEq)]
pub struct Repaired {
    pub person: String,
    pub op: Op,
    pub result: Result<(), TargetError>,
}

/// Puts koppel's values back: drifted attributes, the enabled state and missing memberships.
/// Orphans, extra memberships and missing accounts are left alone (a plan and apply recreates
/// a missing account; nothing koppel did not make is removed). Every repair is audited.
pub async fn repair(
    target: &dyn Target,
    report: &Report,
    store: &dyn Store,
    actor: &str,
    at: &str,
) -> Result<Vec<Repaired>, StoreError> {
    use serde_json::{Value, json};
    // Per operation: the person, what it is audited as, and the values before and after,
    // taken from the report entry the operation comes from.
    struct Audited<'r> {
        person: &'r str,
        kind: ActionKind,
        permission: Option<String>,
        before: Value,
        after: Value,
    }
    let mut ops: Vec<Op> = Vec::new();
    let mut audited: Vec<Audited<'_>> = Vec::new();
    for d in &report.drift {
        if !d.attributes.is_empty() {
            let changes: BTreeMap<String, AttrValue> = d
                .attributes
                .iter()
                .map(|(k, (want, _))| (k.clone(), want.clone()))
                .collect();
            let before: BTreeMap<&String, &AttrValue> = d
                .attributes
                .iter()
                .map(|(k, (_, have))| (k, have))
                .collect();
            audited.push(Audited {
                person: &d.person,
                kind: ActionKind::Update,
                permission: None,
                before: serde_json::to_value(before).unwrap_or_default(),
                after: serde_json::to_value(&changes).unwrap_or_default(),
            });
            ops.push(Op::Update {
                reference: d.reference.clone(),
                changes,
            });
        }
        if let Some((want, _)) = d.enabled {
            audited.push(Audited {
                person: &d.person,
                kind: if want {
                    ActionKind::Enable
                } else {
                    ActionKind::Disable
                },
                permission: None,
                before: json!({ "enabled": !want }),
                after: json!({ "enabled": want }),
            });
            ops.push(Op::SetEnabled {
                reference: d.reference.clone(),
                enabled: want,
            });
        }
    }
    for m in &report.missing_permissions {
        audited.push(Audited {
            person: &m.person,
            kind: ActionKind::Grant,
            permission: Some(m.permission.clone()),
            before: Value::Null,
            after: Value::Null,
        });
        ops.push(Op::Grant {
            reference: m.reference.clone(),
            permission: m.permission.clone(),
        });
    }
    let results = target.apply(&ops).await;
    let mut audit = Vec::with_capacity(ops.len());
    let mut out = Vec::with_capacity(ops.len());
    for ((a, op), result) in audited.into_iter().zip(ops).zip(results) {
        let result = result.map(|_| ());
        audit.push(AuditRecord {
            at: at.to_owned(),
            actor: actor.to_owned(),
            event: if result.is_ok() {
                AuditEvent::Applied
            } else {
                AuditEvent::Failed
            },
            plan_id: None,
            target: Some(report.target.clone()),
            person: Some(a.person.to_owned()),
            action: Some(a.kind),
            permission: a.permission,
            before: a.before,
            after: a.after,
            reasons: vec![Reason::new(Origin::Drift)],
            error: result.as_ref().err().map(ToString::to_string),
        });
        out.push(Repaired {
            person: a.person.to_owned(),
            op,
            result,
        });
    }
    store.audit_append(&audit).await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use koppel_core::KnownAccount;

    fn text(s: &str) -> AttrValue {
        AttrValue::Text(s.to_owned())
    }

    fn list(items: &[&str]) -> AttrValue {
        AttrValue::List(items.iter().map(|s| (*s).to_owned()).collect())
    }

    fn live(reference: &str, attrs: &[(&str, AttrValue)], perms: &[&str]) -> TargetAccount {
        TargetAccount {
            reference: reference.to_owned(),
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            enabled: true,
            permissions: perms.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    fn known() -> TargetState {
        let mut s = TargetState::default();
        s.accounts.insert(
            "1001".to_owned(),
            KnownAccount {
                reference: "r1".to_owned(),
                attributes: [
                    ("employeeID".to_owned(), text("1001")),
                    ("title".to_owned(), text("Adviseur")),
                    ("container".to_owned(), text("OU=HR,DC=x")),
                    ("proxy".to_owned(), list(&["a", "b"])),
                ]
                .into_iter()
                .collect(),
                enabled: true,
                permissions: ["all-staff", "dept-hr"].map(str::to_owned).into(),
                ..KnownAccount::default()
            },
        );
        s.accounts.insert(
            "1002".to_owned(),
            KnownAccount {
                reference: "r2".to_owned(),
                enabled: true,
                ..KnownAccount::default()
            },
        );
        s
    }

    #[test]
    fn finds_orphans_unmanaged_drift_and_memberships() {
        let accounts = vec![
            live(
                "r1",
                &[
                    ("employeeID", text("1001")),
                    ("title", text("Manager")),
                    // Multi-valued in another order is the same value.
                    ("proxy", list(&["b", "a"])),
                ],
                &["ALL-STAFF", "vpn"],
            ),
            live("r9", &[("employeeID", text("9999"))], &[]),
            live("r7", &[("employeeID", text("E7"))], &[]),
            live("r8", &[], &[]),
        ];
        let persons: BTreeMap<String, String> = [("e7".to_owned(), "E7".to_owned())].into();
        let r = compare(
            "ad",
            Some(&known()),
            &accounts,
            Some("employeeID"),
            &persons,
        );
        assert_eq!(r.accounts_read, 4);
        assert_eq!(r.managed, 2);
        assert_eq!(
            r.orphans
                .iter()
                .map(|o| o.reference.as_str())
                .collect::<Vec<_>>(),
            ["r8", "r9"]
        );
        assert_eq!(r.orphans[1].correlation.as_deref(), Some("9999"));
        assert_eq!(r.unmanaged.len(), 1);
        assert_eq!(r.unmanaged[0].person, "E7");
        assert_eq!(r.drift.len(), 1);
        let d = &r.drift[0];
        assert_eq!(
            d.attributes.keys().collect::<Vec<_>>(),
            ["title"],
            "container is placement, proxy is equal as a set"
        );
        assert_eq!(d.attributes["title"], (text("Adviseur"), text("Manager")));
        assert_eq!(d.enabled, None);
        assert_eq!(r.missing_permissions.len(), 1);
        assert_eq!(r.missing_permissions[0].permission, "dept-hr");
        assert_eq!(r.extra_permissions.len(), 1);
        assert_eq!(r.extra_permissions[0].permission, "vpn");
        assert_eq!(r.missing_accounts.len(), 1);
        assert_eq!(r.missing_accounts[0].person, "1002");
        assert!(!r.is_clean());
    }

    #[test]
    fn an_untouched_target_is_clean() {
        let mut k = known();
        k.accounts.remove("1002");
        let acc = &k.accounts["1001"];
        let accounts = vec![TargetAccount {
            reference: "r1".to_owned(),
            attributes: acc.attributes.clone(),
            enabled: true,
            permissions: acc.permissions.clone(),
        }];
        let r = compare(
            "ad",
            Some(&k),
            &accounts,
            Some("employeeID"),
            &BTreeMap::new(),
        );
        assert!(r.is_clean(), "{r:?}");
        assert!(r.drift.is_empty());
    }

    #[test]
    fn booleans_and_numbers_compare_by_text() {
        assert!(same(&AttrValue::Bool(true), &text("TRUE")));
        assert!(same(&AttrValue::Int(42), &text("42")));
        assert!(same(&AttrValue::Null, &text("")));
        assert!(!same(&text("a"), &text("A")));
        assert!(same(&list(&["x"]), &text("x")));
    }
}
