//! The `visma` write-back target: the identity koppel generated (a UPN or e-mail address)
//! written to the employee's Youforce user, `PATCH users(employeeId=…)/identity`.
//!
//! An account here is an employee's user, referenced by employee id (`personCode`): koppel
//! adopts it, never creates or deletes it. Attributes: `employeeId` (the correlation key) and
//! `identity`. A value equal to the user's current identity is not written again, and an
//! identity cannot be emptied, so a leaver keeps theirs (a `Null` change is a no-op).

use std::collections::BTreeMap;

use koppel_connectors::target::{CreateRequest, Created, Target, TargetAccount, TargetError};
use koppel_core::AttrValue;

use super::client::{Patched, UPDATE_IDENTITY, VismaClient};
use super::config::VismaApi;
use crate::error::HrError;
use crate::map::{Record, text};

/// The correlation attribute: the employee id the users endpoint is addressed by.
pub const EMPLOYEE_ID: &str = "employeeId";
/// The identity attribute; the user's `identityId` holds it, `PATCH …/identity {"id"}` sets it.
pub const IDENTITY: &str = "identity";

/// A Youforce tenant's users as a koppel target.
pub struct VismaTarget {
    name: String,
    client: VismaClient,
}

impl VismaTarget {
    pub fn new(name: &str, api: VismaApi) -> Result<VismaTarget, HrError> {
        Ok(VismaTarget {
            name: name.to_owned(),
            client: VismaClient::new(api)?,
        })
    }

    pub fn client(&self) -> &VismaClient {
        &self.client
    }

    fn err(&self, e: HrError) -> TargetError {
        e.into_target_error(&self.name)
    }

    fn account(employee_id: &str, user: &Record) -> TargetAccount {
        let mut attributes = BTreeMap::new();
        attributes.insert(
            EMPLOYEE_ID.to_owned(),
            AttrValue::Text(text(user, "employeeId").unwrap_or_else(|| employee_id.to_owned())),
        );
        if let Some(identity) = text(user, "identityId") {
            attributes.insert(IDENTITY.to_owned(), AttrValue::Text(identity));
        }
        TargetAccount {
            reference: employee_id.to_owned(),
            attributes,
            enabled: true,
            permissions: Default::default(),
        }
    }

    async fn fetch(&self, reference: &str) -> Result<Option<TargetAccount>, TargetError> {
        Ok(self
            .client
            .user(reference)
            .await
            .map_err(|e| self.err(e))?
            .map(|u| Self::account(reference, &u)))
    }

    async fn existing(&self, reference: &str) -> Result<TargetAccount, TargetError> {
        self.fetch(reference)
            .await?
            .ok_or_else(|| TargetError::NoSuchAccount {
                target: self.name.clone(),
                reference: reference.to_owned(),
            })
    }

    /// Writes what differs from `account`; `Null` leaves the value as it is.
    async fn write(
        &self,
        account: &TargetAccount,
        changes: &BTreeMap<String, AttrValue>,
    ) -> Result<(), TargetError> {
        for (attribute, value) in changes {
            match attribute.as_str() {
                IDENTITY => {
                    let Some(wanted) = value.as_str().filter(|s| !s.is_empty()) else {
                        // An identity cannot be emptied: a leaver's stays.
                        tracing::debug!(target = %self.name, employee = %account.reference, "identity left as it is");
                        continue;
                    };
                    if account.attributes.get(IDENTITY).and_then(AttrValue::as_str) == Some(wanted)
                    {
                        continue;
                    }
                    self.client
                        .require_scope(UPDATE_IDENTITY, "write the identity of users")
                        .await
                        .map_err(|e| self.err(e))?;
                    match self
                        .client
                        .patch_identity(&account.reference, wanted)
                        .await
                        .map_err(|e| self.err(e))?
                    {
                        Patched::Done => {}
                        Patched::NoSuchUser => {
                            return Err(TargetError::NoSuchAccount {
                                target: self.name.clone(),
                                reference: account.reference.clone(),
                            });
                        }
                    }
                }
                EMPLOYEE_ID => {
                    let same = value
                        .as_str()
                        .is_none_or(|v| v == account.reference.as_str());
                    if !same {
                        return Err(TargetError::Rejected {
                            target: self.name.clone(),
                            message: format!(
                                "the employee id of user {} cannot be changed by koppel",
                                account.reference
                            ),
                        });
                    }
                }
                other => {
                    return Err(TargetError::Config {
                        target: self.name.clone(),
                        message: format!(
                            "attribute {other:?} cannot be written back to Youforce: a visma \
                             target has the attributes {EMPLOYEE_ID} and {IDENTITY}"
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Target for VismaTarget {
    fn name(&self) -> &str {
        &self.name
    }

    async fn correlate(
        &self,
        attribute: &str,
        value: &AttrValue,
    ) -> Result<Option<TargetAccount>, TargetError> {
        if attribute != EMPLOYEE_ID {
            return Err(TargetError::Config {
                target: self.name.clone(),
                message: format!(
                    "a visma target correlates on {EMPLOYEE_ID}, not {attribute:?}: set \
                     correlation = \"{EMPLOYEE_ID}\""
                ),
            });
        }
        match value.as_str().filter(|s| !s.is_empty()) {
            Some(id) => self.fetch(id).await,
            None => Ok(None),
        }
    }

    async fn get(&self, reference: &str) -> Result<Option<TargetAccount>, TargetError> {
        self.fetch(reference).await
    }

    /// Adopts the employee's user (HR creates users, koppel does not), bringing its identity
    /// to the requested one.
    async fn create(&self, request: &CreateRequest) -> Result<Created, TargetError> {
        let id = request
            .correlation
            .as_ref()
            .map(|(_, v)| v)
            .or_else(|| request.attributes.get(EMPLOYEE_ID))
            .and_then(AttrValue::as_str)
            .unwrap_or(&request.person)
            .to_owned();
        let Some(account) = self.fetch(&id).await? else {
            return Err(TargetError::Rejected {
                target: self.name.clone(),
                message: format!(
                    "Youforce has no user for employee {id}: koppel writes back into existing \
                     users only; it is retried on the next run"
                ),
            });
        };
        self.write(&account, &request.attributes).await?;
        Ok(Created::Adopted(id))
    }

    async fn update(
        &self,
        reference: &str,
        changes: &BTreeMap<String, AttrValue>,
    ) -> Result<(), TargetError> {
        let account = self.existing(reference).await?;
        self.write(&account, changes).await
    }

    /// An HR user is not koppel's to enable or disable.
    async fn set_enabled(&self, reference: &str, _enabled: bool) -> Result<(), TargetError> {
        self.existing(reference).await.map(drop)
    }

    /// The HR record stays; nothing is called.
    async fn delete(&self, _reference: &str) -> Result<(), TargetError> {
        Ok(())
    }

    async fn grant(&self, reference: &str, permission: &str) -> Result<(), TargetError> {
        self.existing(reference).await?;
        Err(TargetError::Rejected {
            target: self.name.clone(),
            message: format!(
                "a visma write-back target has no permissions to grant ({permission:?})"
            ),
        })
    }

    async fn revoke(&self, _reference: &str, _permission: &str) -> Result<(), TargetError> {
        Ok(())
    }

    async fn list_accounts(&self) -> Result<Vec<TargetAccount>, TargetError> {
        Err(TargetError::Config {
            target: self.name.clone(),
            message: "the Youforce IAM API reads users one employee at a time (at 100 calls a \
                      minute), so a visma target cannot list its accounts; reconcile is not \
                      available for it"
                .into(),
        })
    }

    async fn list_permissions(&self) -> Result<Vec<String>, TargetError> {
        Ok(Vec::new())
    }

    async fn is_unique(
        &self,
        _attribute: &str,
        _value: &str,
        _except: Option<&str>,
    ) -> Result<bool, TargetError> {
        Err(TargetError::Config {
            target: self.name.clone(),
            message: format!(
                "a visma target cannot search users by value; generate values in another \
                 target and write them back here (scope {UPDATE_IDENTITY})"
            ),
        })
    }
}
