//! Group membership: names to group DNs, idempotent grant and revoke of one or many members
//! in one modify, groups created on demand, and the placeholder for a last member.

use std::collections::HashSet;

use koppel_connectors::target::TargetError;
use ldap3::{Mod, Scope, ldap_escape};

use crate::LdapTarget;
use crate::dn::{self, Dn};
use crate::error::{ENTRY_ALREADY_EXISTS, LdapError, NO_SUCH_OBJECT, OBJECT_CLASS_VIOLATION};
use crate::values::{first, get_ci, value_set};

/// attributeOrValueExists / noSuchAttribute: what a server without Permissive Modify says
/// to an existing or missing member value; AD (and Samba, which advertises the control but
/// does not apply it to linked attributes) says entryAlreadyExists / unwillingToPerform.
const VALUE_EXISTS: u32 = 20;
const NO_SUCH_ATTRIBUTE: u32 = 16;
const UNWILLING_TO_PERFORM: u32 = 53;

impl LdapTarget {
    /// The DN of the group a permission names.
    pub(crate) fn group_dn(&self, permission: &str) -> Result<String, TargetError> {
        let g = &self.settings.groups;
        if let Some(d) = g.static_groups.get(permission) {
            return Ok(d.clone());
        }
        match &g.container {
            Some(container) if !permission.is_empty() => Ok(Dn::child("cn", permission, container)),
            _ => Err(self.config_error(format!(
                "{permission:?} is not a static group (groups.static) and groups.container is not set"
            ))),
        }
    }

    fn is_dynamic(&self, permission: &str) -> bool {
        !self.settings.groups.static_groups.contains_key(permission)
    }

    /// Grant or revoke one membership.
    pub(crate) async fn change_membership(
        &self,
        reference: &str,
        permission: &str,
        grant: bool,
    ) -> Result<(), TargetError> {
        let group = self.group_dn(permission)?;
        let Some(member) = self.resolve(reference, false).await? else {
            return if grant {
                Err(self.no_such(reference))
            } else {
                // A missing account has no membership to revoke.
                Ok(())
            };
        };
        self.members(permission, &group, grant, &[member]).await
    }

    /// Adds or removes several members of one group in one modify. Idempotent: with the
    /// Permissive Modify control, or by checking the single value's result code without it.
    pub(crate) async fn members(
        &self,
        permission: &str,
        group: &str,
        grant: bool,
        members: &[String],
    ) -> Result<(), TargetError> {
        match self.modify_members(group, grant, members).await {
            Ok(()) => Ok(()),
            Err(e)
                if grant
                    && e.code() == Some(NO_SUCH_OBJECT)
                    && self.is_dynamic(permission)
                    && self.settings.groups.create_missing =>
            {
                match self.create_group(permission, group, members).await {
                    Err(e) if e.code() == Some(ENTRY_ALREADY_EXISTS) => self
                        .modify_members(group, grant, members)
                        .await
                        .map_err(|e| self.err(e)),
                    other => other.map_err(|e| self.err(e)),
                }
            }
            // Revoking from a group that does not exist: there is no membership.
            Err(e) if !grant && e.code() == Some(NO_SUCH_OBJECT) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn modify_members(
        &self,
        group: &str,
        grant: bool,
        members: &[String],
    ) -> Result<(), LdapError> {
        let attr = self.settings.groups.member_attribute.as_bytes().to_vec();
        let set = value_set(members.to_vec());
        let placeholder =
            HashSet::from([self.settings.groups.placeholder_member.clone().into_bytes()]);
        let needs_member = !self.settings.is_ad();
        let caps = self.client.capabilities().await?;
        let mut mods = vec![if grant {
            Mod::Add(attr.clone(), set.clone())
        } else {
            Mod::Delete(attr.clone(), set.clone())
        }];
        if grant && needs_member && caps.permissive_modify {
            // A real member makes the placeholder unnecessary (absent: no-op, permissive).
            mods.push(Mod::Delete(attr.clone(), placeholder.clone()));
        }
        let r = self.client.modify(group, mods, true).await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if !grant && needs_member && e.code() == Some(OBJECT_CLASS_VIOLATION) => {
                // The last member: keep the group valid with the placeholder.
                let mods = vec![
                    Mod::Delete(attr.clone(), set),
                    Mod::Add(attr.clone(), placeholder),
                ];
                self.client.modify(group, mods, true).await.map(|_| ())
            }
            Err(e) if members.len() == 1 && Self::says_already_done(grant, e.code()) => {
                // Without (or despite) Permissive Modify: done if the membership is as wanted.
                if self.is_member(group, &members[0]).await? == grant {
                    Ok(())
                } else {
                    Err(e)
                }
            }
            Err(e) if members.len() > 1 && Self::says_already_done(grant, e.code()) => {
                // One value at a time tells which are already done.
                for m in members {
                    Box::pin(self.modify_members(group, grant, std::slice::from_ref(m))).await?;
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn says_already_done(grant: bool, code: Option<u32>) -> bool {
        match code {
            Some(c) if grant => c == VALUE_EXISTS || c == ENTRY_ALREADY_EXISTS,
            Some(c) => c == NO_SUCH_ATTRIBUTE || c == UNWILLING_TO_PERFORM,
            None => false,
        }
    }

    /// Whether `member` is listed in `group` (compared by the server's DN matching).
    async fn is_member(&self, group: &str, member: &str) -> Result<bool, LdapError> {
        let filter = format!(
            "({}={})",
            self.settings.groups.member_attribute,
            ldap_escape(member)
        );
        Ok(!self
            .client
            .search(group, Scope::Base, &filter, &["1.1"])
            .await?
            .is_empty())
    }

    /// Creates a dynamic group with its first members.
    async fn create_group(
        &self,
        permission: &str,
        group: &str,
        members: &[String],
    ) -> Result<(), LdapError> {
        let s = &self.settings;
        let mut attrs = vec![
            (
                b"objectClass".to_vec(),
                value_set(vec!["top".into(), s.group_object_class.clone()]),
            ),
            (b"cn".to_vec(), value_set(vec![permission.to_owned()])),
            (
                s.groups.member_attribute.clone().into_bytes(),
                value_set(members.to_vec()),
            ),
        ];
        if s.is_ad() {
            attrs.push((
                b"sAMAccountName".to_vec(),
                value_set(vec![permission.to_owned()]),
            ));
        }
        let r = self.client.add(group, attrs.clone(), Vec::new()).await;
        match r {
            Err(e) if e.code() == Some(NO_SUCH_OBJECT) && s.create_containers => {
                let parent = Dn::parse(group)
                    .map(|d| d.parent())
                    .map_err(|message| LdapError::Config { message })?;
                self.ensure_container(&parent)
                    .await
                    .map_err(|e| LdapError::Protocol {
                        message: e.to_string(),
                    })?;
                self.client.add(group, attrs, Vec::new()).await.map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }

    /// Removes the account at `dn` from every group that lists it (before a delete, where
    /// the server would leave the member value behind).
    pub(crate) async fn leave_all_groups(&self, dn: &str) -> Result<(), TargetError> {
        let found = self
            .client
            .search(dn, Scope::Base, "(objectClass=*)", &["memberOf"])
            .await
            .map_err(|e| self.err(e))?;
        let groups: Vec<String> = found
            .first()
            .and_then(|e| get_ci(&e.attrs, "memberOf").cloned())
            .unwrap_or_default();
        for group in groups {
            let name = self.settings.group_name(&group).unwrap_or_default();
            self.members(&name, &group, false, &[dn.to_owned()]).await?;
        }
        Ok(())
    }

    /// The dynamic groups in the container and the static names.
    pub(crate) async fn permissions(&self) -> Result<Vec<String>, TargetError> {
        let s = &self.settings;
        let mut names: Vec<String> = s.groups.static_groups.keys().cloned().collect();
        if let Some(container) = &s.groups.container {
            let filter = format!("(objectClass={})", s.group_object_class);
            let found = self
                .client
                .search(container, Scope::OneLevel, &filter, &["cn"])
                .await
                .map_err(|e| self.err(e))?;
            for entry in found {
                let name = Dn::parse(&entry.dn)
                    .ok()
                    .and_then(|d| d.first_value("cn").map(str::to_owned))
                    .or_else(|| first(&entry.attrs, "cn").map(str::to_owned));
                if let Some(name) = name
                    && !s.static_by_key.contains_key(&dn::key(&entry.dn))
                {
                    names.push(name);
                }
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
}
