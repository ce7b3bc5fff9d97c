//! The `afas` write-back target: values koppel generated written into the employee's Profit
//! record: KnPerson fields (business e-mail `EmAd`, phone numbers) through `PUT KnEmployee`,
//! the UPN through `PUT KnUser`.
//!
//! An account is an employee, referenced by employee number: adopted, never created or
//! deleted. Current values come from the users GetConnector; a value equal to what Profit
//! holds is not written, and a `Null` change (a leaver) leaves the value as it is.

use std::collections::BTreeMap;

use koppel_connectors::target::{CreateRequest, Created, Target, TargetAccount, TargetError};
use koppel_core::AttrValue;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::client::{AfasClient, missing_connector};
use super::config::{AfasApi, AfasTargetConfig, UPN};
use crate::error::HrError;
use crate::map::{Record, text};

const KN_EMPLOYEE: &str = "KnEmployee";
const KN_USER: &str = "KnUser";

/// A Profit environment's employees as a koppel target.
pub struct AfasTarget {
    name: String,
    config: AfasTargetConfig,
    client: AfasClient,
    /// The app connector was checked for the connectors this target uses.
    checked: OnceCell<()>,
}

/// One employee as the users GetConnector shows them.
struct Employee {
    account: TargetAccount,
    person: Option<Value>,
    user: Option<String>,
    display_name: Option<String>,
}

impl AfasTarget {
    pub fn new(name: &str, config: AfasTargetConfig, api: AfasApi) -> Result<AfasTarget, HrError> {
        Ok(AfasTarget {
            name: name.to_owned(),
            client: AfasClient::new(api)?,
            config,
            checked: OnceCell::new(),
        })
    }

    pub fn client(&self) -> &AfasClient {
        &self.client
    }

    fn err(&self, e: HrError) -> TargetError {
        e.into_target_error(&self.name)
    }

    async fn check(&self) -> Result<(), TargetError> {
        self.checked
            .get_or_try_init(|| async {
                let meta = self.client.metainfo().await?;
                if !meta.get_connectors.contains(&self.config.users_connector) {
                    return Err(missing_connector(
                        "GetConnector",
                        &self.config.users_connector,
                        "users_connector",
                        &meta.get_connectors,
                    ));
                }
                for update in [KN_EMPLOYEE, KN_USER] {
                    if !meta.update_connectors.contains(update) {
                        return Err(missing_connector(
                            "UpdateConnector",
                            update,
                            update,
                            &meta.update_connectors,
                        ));
                    }
                }
                Ok(())
            })
            .await
            .map(drop)
            .map_err(|e| self.err(e))
    }

    fn employee(&self, row: &Record) -> Employee {
        let c = &self.config;
        let reference = text(row, &c.employee_field).unwrap_or_default();
        let mut attributes = BTreeMap::new();
        attributes.insert(c.employee_field.clone(), AttrValue::Text(reference.clone()));
        for (attribute, field) in &c.current {
            if let Some(v) = text(row, field) {
                attributes.insert(attribute.clone(), AttrValue::Text(v));
            }
        }
        Employee {
            account: TargetAccount {
                reference,
                attributes,
                enabled: true,
                permissions: Default::default(),
            },
            person: crate::map::value(row, &c.person_field).cloned(),
            user: text(row, &c.user_field),
            display_name: text(row, &c.display_name_field),
        }
    }

    async fn find(&self, employee: &str) -> Result<Option<Employee>, TargetError> {
        if employee.contains([',', ';']) {
            // AFAS reads these as filter separators: such a number cannot be looked up.
            return Err(TargetError::Rejected {
                target: self.name.clone(),
                message: format!("employee number {employee:?} contains ',' or ';'"),
            });
        }
        self.check().await?;
        let rows = self
            .client
            .find(
                &self.config.users_connector,
                &self.config.employee_field,
                employee,
                2,
            )
            .await
            .map_err(|e| self.err(e))?;
        match rows.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(self.employee(one))),
            _ => Err(TargetError::Rejected {
                target: self.name.clone(),
                message: format!(
                    "{} has more than one row for employee {employee}",
                    self.config.users_connector
                ),
            }),
        }
    }

    async fn existing(&self, employee: &str) -> Result<Employee, TargetError> {
        self.find(employee)
            .await?
            .ok_or_else(|| TargetError::NoSuchAccount {
                target: self.name.clone(),
                reference: employee.to_owned(),
            })
    }

    /// Writes what differs from what Profit holds: one KnEmployee PUT for the KnPerson
    /// fields, one KnUser PUT for the UPN.
    async fn write(
        &self,
        employee: &Employee,
        changes: &BTreeMap<String, AttrValue>,
    ) -> Result<(), TargetError> {
        let c = &self.config;
        let reference = &employee.account.reference;
        let mut person_fields = serde_json::Map::new();
        let mut upn = None;
        for (attribute, value) in changes {
            if *attribute == c.employee_field {
                if value.as_str().is_some_and(|v| v != reference) {
                    return Err(TargetError::Rejected {
                        target: self.name.clone(),
                        message: format!("the employee number of {reference} cannot be changed"),
                    });
                }
                continue;
            }
            if !c.current.contains_key(attribute) {
                return Err(TargetError::Config {
                    target: self.name.clone(),
                    message: format!(
                        "attribute {attribute:?} has no field in {} to compare with: add \
                         current.{attribute} = \"<field>\" to the connection",
                        c.users_connector
                    ),
                });
            }
            // A leaver's value stays; nothing is emptied.
            let Some(wanted) = value.as_str().filter(|s| !s.is_empty()) else {
                continue;
            };
            if employee
                .account
                .attributes
                .get(attribute)
                .and_then(AttrValue::as_str)
                == Some(wanted)
            {
                continue;
            }
            if attribute == UPN {
                upn = Some(wanted.to_owned());
            } else {
                person_fields.insert(attribute.clone(), Value::String(wanted.to_owned()));
            }
        }
        if !person_fields.is_empty() {
            let Some(person) = &employee.person else {
                return Err(TargetError::Rejected {
                    target: self.name.clone(),
                    message: format!(
                        "{} gives employee {reference} no {}",
                        c.users_connector, c.person_field
                    ),
                });
            };
            let mut fields = serde_json::Map::new();
            // Match the person on BcCo (MatchPer 0), the person number the row gives.
            fields.insert("MatchPer".into(), json!(0));
            fields.insert("BcCo".into(), person.clone());
            fields.extend(person_fields);
            let body = json!({
                "AfasEmployee": {
                    "Element": {
                        "@EmId": reference,
                        "Objects": [
                            { "KnPerson": { "Element": { "Fields": Value::Object(fields) } } }
                        ]
                    }
                }
            });
            self.client
                .put(KN_EMPLOYEE, &body)
                .await
                .map_err(|e| self.err(e))?;
        }
        if let Some(upn) = upn {
            let Some(user) = &employee.user else {
                return Err(TargetError::Rejected {
                    target: self.name.clone(),
                    message: format!(
                        "employee {reference} has no Profit user ({} is empty): the UPN has \
                         nowhere to go",
                        c.user_field
                    ),
                });
            };
            let mut fields = serde_json::Map::new();
            fields.insert("MtCd".into(), json!(1));
            if let Some(nm) = &employee.display_name {
                fields.insert("Nm".into(), json!(nm));
            }
            fields.insert("Upn".into(), json!(upn));
            let body = json!({
                "KnUser": { "Element": { "@UsId": user, "Fields": Value::Object(fields) } }
            });
            self.client
                .put(KN_USER, &body)
                .await
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Target for AfasTarget {
    fn name(&self) -> &str {
        &self.name
    }

    async fn correlate(
        &self,
        attribute: &str,
        value: &AttrValue,
    ) -> Result<Option<TargetAccount>, TargetError> {
        if attribute != self.config.employee_field {
            return Err(TargetError::Config {
                target: self.name.clone(),
                message: format!(
                    "an afas target correlates on {}, not {attribute:?}",
                    self.config.employee_field
                ),
            });
        }
        match value.as_str().filter(|s| !s.is_empty()) {
            Some(id) => Ok(self.find(id).await?.map(|e| e.account)),
            None => Ok(None),
        }
    }

    async fn get(&self, reference: &str) -> Result<Option<TargetAccount>, TargetError> {
        Ok(self.find(reference).await?.map(|e| e.account))
    }

    /// Adopts the employee (HR creates employees, koppel does not) and writes what differs.
    async fn create(&self, request: &CreateRequest) -> Result<Created, TargetError> {
        let id = request
            .correlation
            .as_ref()
            .map(|(_, v)| v)
            .or_else(|| request.attributes.get(&self.config.employee_field))
            .and_then(AttrValue::as_str)
            .unwrap_or(&request.person)
            .to_owned();
        let Some(employee) = self.find(&id).await? else {
            return Err(TargetError::Rejected {
                target: self.name.clone(),
                message: format!(
                    "{} has no employee {id}: koppel writes back into existing employees only; \
                     it is retried on the next run",
                    self.config.users_connector
                ),
            });
        };
        self.write(&employee, &request.attributes).await?;
        Ok(Created::Adopted(id))
    }

    async fn update(
        &self,
        reference: &str,
        changes: &BTreeMap<String, AttrValue>,
    ) -> Result<(), TargetError> {
        let employee = self.existing(reference).await?;
        self.write(&employee, changes).await
    }

    /// An employee is not koppel's to enable or disable.
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
                "an afas write-back target has no permissions to grant ({permission:?})"
            ),
        })
    }

    async fn revoke(&self, _reference: &str, _permission: &str) -> Result<(), TargetError> {
        Ok(())
    }

    async fn list_accounts(&self) -> Result<Vec<TargetAccount>, TargetError> {
        self.check().await?;
        let rows = self
            .client
            .rows(
                &self.config.users_connector,
                &self.config.employee_field,
                &[],
                1000,
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows
            .iter()
            .map(|r| self.employee(r).account)
            .filter(|a| !a.reference.is_empty())
            .collect())
    }

    async fn list_permissions(&self) -> Result<Vec<String>, TargetError> {
        Ok(Vec::new())
    }

    async fn is_unique(
        &self,
        attribute: &str,
        value: &str,
        except: Option<&str>,
    ) -> Result<bool, TargetError> {
        let Some(field) = self.config.current.get(attribute) else {
            return Err(TargetError::Config {
                target: self.name.clone(),
                message: format!("attribute {attribute:?} has no field in current"),
            });
        };
        if value.contains([',', ';']) {
            return Ok(true);
        }
        self.check().await?;
        let rows = self
            .client
            .find(&self.config.users_connector, field, value, 10)
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().all(|r| {
            let e = self.employee(r);
            Some(e.account.reference.as_str()) == except
                || !text(r, field).is_some_and(|v| v.eq_ignore_ascii_case(value))
        }))
    }
}
