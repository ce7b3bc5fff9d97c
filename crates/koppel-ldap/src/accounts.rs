//! Account operations: correlate, create or adopt, update with modrdn on a changed DN,
//! enable/disable per flavour, delete or move away, and creating missing OUs.

use std::collections::{BTreeMap, HashSet};

use koppel_connectors::target::{CreateRequest, Created, TargetError};
use koppel_core::AttrValue;
use ldap3::controls::{PostRead, ReadEntryResp};
use ldap3::{Mod, Scope, SearchEntry, ldap_escape};

use crate::conn::POST_READ;
use crate::dn::{self, Dn};
use crate::error::{ENTRY_ALREADY_EXISTS, LdapError, NO_SUCH_OBJECT};
use crate::values::{self, CONTAINER, get_ci, ldap_values, single_value, value_set};
use crate::{DeleteConfig, DisableConfig, Flavour, LdapTarget, ad};

/// What `apply` already learned about a create's correlation value.
pub(crate) enum Precheck {
    /// Not looked up yet.
    Unknown,
    /// No account has the value.
    Absent,
    /// These accounts have it.
    Found(Vec<SearchEntry>),
}

type Attrs = Vec<(Vec<u8>, HashSet<Vec<u8>>)>;

impl LdapTarget {
    /// Account entries whose `attribute` equals `value` under the bases.
    pub(crate) async fn correlate_entries(
        &self,
        attribute: &str,
        value: &AttrValue,
    ) -> Result<Vec<SearchEntry>, TargetError> {
        if !values::is_attribute_name(attribute) {
            return Err(self.config_error(format!(
                "{attribute:?} is not an attribute name to correlate on"
            )));
        }
        let Some(v) = single_value(value) else {
            return Ok(Vec::new());
        };
        let attrs = self.settings.account_attributes();
        self.find_accounts(&format!("({attribute}={})", ldap_escape(v)), &attrs)
            .await
            .map_err(|e| self.err(e))
    }

    pub(crate) async fn create_account(
        &self,
        request: &CreateRequest,
        precheck: Precheck,
    ) -> Result<Created, TargetError> {
        let found = match (&request.correlation, precheck) {
            (None, _) | (_, Precheck::Absent) => Vec::new(),
            (Some(_), Precheck::Found(found)) => found,
            (Some((attribute, value)), Precheck::Unknown) => {
                self.correlate_entries(attribute, value).await?
            }
        };
        if !found.is_empty() {
            return self.adopt(request, found).await;
        }
        match self.add_account(request).await {
            Err(TargetError::Rejected { message, .. })
                if message.starts_with(crate::error::code_name(ENTRY_ALREADY_EXISTS)) =>
            {
                // Someone (or an earlier op of this batch) made it meanwhile: adopt it if
                // it is this person's, refuse otherwise.
                if let Some((attribute, value)) = &request.correlation {
                    let found = self.correlate_entries(attribute, value).await?;
                    if !found.is_empty() {
                        return self.adopt(request, found).await;
                    }
                }
                Err(self.rejected(message))
            }
            other => other,
        }
    }

    /// Brings an existing account to the request's attributes and enabled state.
    async fn adopt(
        &self,
        request: &CreateRequest,
        mut found: Vec<SearchEntry>,
    ) -> Result<Created, TargetError> {
        if found.len() > 1 {
            let (attribute, value) = request.correlation.clone().unwrap_or_default();
            return Err(self.rejected(format!(
                "{} accounts have {attribute} = {value}: cannot adopt one",
                found.len()
            )));
        }
        let entry = found.remove(0);
        let reference = self
            .settings
            .reference_of(&entry)
            .ok_or_else(|| self.rejected(format!("{} has no id attribute", entry.dn)))?;
        self.remember(&reference, &entry.dn);
        // Only what differs is written.
        let mut changes = BTreeMap::new();
        for (name, want) in &request.attributes {
            let want_values: HashSet<String> = ldap_values(want).into_iter().collect();
            let have: HashSet<String> = if name == CONTAINER {
                let parent = Dn::parse(&entry.dn).map(|d| d.parent()).unwrap_or_default();
                if want_values.iter().any(|w| dn::key(w) == dn::key(&parent)) {
                    continue;
                }
                HashSet::from([parent])
            } else {
                get_ci(&entry.attrs, name)
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .collect()
            };
            if have != want_values {
                changes.insert(name.clone(), want.clone());
            }
        }
        let moved = self
            .update_at(&reference, entry.dn.clone(), &changes)
            .await?;
        self.await_refint(moved.as_slice()).await?;
        if self.settings.enabled_of(&entry) != request.enabled {
            self.set_account_enabled(&reference, request.enabled)
                .await?;
        }
        Ok(Created::Adopted(reference))
    }

    /// The add of a new account; its reference from Post-Read or a read back.
    async fn add_account(&self, request: &CreateRequest) -> Result<Created, TargetError> {
        let s = &self.settings;
        let rdn_value = request
            .attributes
            .get(&s.rdn_attribute)
            .and_then(single_value)
            .ok_or_else(|| {
                self.rejected(format!(
                    "the account has no {} value to name it by (rdn_attribute)",
                    s.rdn_attribute
                ))
            })?;
        let container = self.container_of(request.attributes.get(CONTAINER));
        let dn = Dn::child(&s.rdn_attribute, &rdn_value, &container);
        let attrs = self.add_attributes(request)?;
        let caps = self.client.capabilities().await.map_err(|e| self.err(e))?;
        let controls = if caps.post_read {
            vec![PostRead::new(vec![s.id_attribute()])]
        } else {
            Vec::new()
        };
        let mut result = self.client.add(&dn, attrs.clone(), controls.clone()).await;
        if let Err(e) = &result
            && e.code() == Some(NO_SUCH_OBJECT)
            && s.create_containers
        {
            self.ensure_container(&container).await?;
            result = self.client.add(&dn, attrs, controls).await;
        }
        let res = result.map_err(|e| self.err(e))?;
        let from_post_read = res
            .ctrls
            .iter()
            .find(|c| c.1.ctype == POST_READ && c.1.val.is_some())
            .and_then(|c| {
                let entry: ReadEntryResp = c.1.parse();
                let as_entry = SearchEntry {
                    dn: dn.clone(),
                    attrs: entry.attrs,
                    bin_attrs: entry.bin_attrs,
                };
                s.reference_of(&as_entry)
            });
        let reference = match from_post_read {
            Some(r) => r,
            None => {
                let found = self
                    .client
                    .search(&dn, Scope::Base, "(objectClass=*)", &[s.id_attribute()])
                    .await
                    .map_err(|e| self.err(e))?;
                found
                    .first()
                    .and_then(|e| s.reference_of(e))
                    .ok_or_else(|| {
                        self.rejected(format!("{dn} was added but has no {}", s.id_attribute()))
                    })?
            }
        };
        self.remember(&reference, &dn);
        Ok(Created::New(reference))
    }

    /// The add's attributes: object classes, the mapped values, the enabled state and, on
    /// AD, the initial password.
    fn add_attributes(&self, request: &CreateRequest) -> Result<Attrs, TargetError> {
        let s = &self.settings;
        let mut attrs: Attrs = Vec::new();
        let has = |name: &str| {
            request
                .attributes
                .keys()
                .any(|k| k.eq_ignore_ascii_case(name))
        };
        if !has("objectClass") {
            attrs.push((b"objectClass".to_vec(), value_set(s.object_classes.clone())));
        }
        for (name, value) in &request.attributes {
            if name == CONTAINER {
                continue;
            }
            if !values::is_attribute_name(name) {
                return Err(self.config_error(format!("{name:?} is not an attribute name")));
            }
            if s.is_ad() && name.eq_ignore_ascii_case("userAccountControl") {
                continue;
            }
            let vs = ldap_values(value);
            if !vs.is_empty() {
                attrs.push((name.clone().into_bytes(), value_set(vs)));
            }
        }
        if s.is_ad() {
            if !self.client.is_tls() {
                return Err(self.config_error(
                    "Active Directory accounts get an initial password, which koppel only \
                     sends over TLS: use an ldaps:// URL or StartTLS",
                ));
            }
            let base = request
                .attributes
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("userAccountControl"))
                .and_then(|(_, v)| single_value(v))
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(ad::NORMAL_ACCOUNT);
            let uac = ad::with_enabled(base, request.enabled);
            attrs.push((
                b"userAccountControl".to_vec(),
                HashSet::from([uac.to_string().into_bytes()]),
            ));
            let password = ad::random_password().map_err(|e| self.err(e))?;
            attrs.push((
                b"unicodePwd".to_vec(),
                HashSet::from([ad::unicode_pwd(&password)]),
            ));
        } else {
            let (attribute, v) = s.lock_value(request.enabled);
            // A configured attribute is the connector's to set, whatever a mapping says.
            if let DisableConfig::Attribute { .. } = s.disable {
                attrs.retain(|(k, _)| !k.eq_ignore_ascii_case(attribute.as_bytes()));
            }
            if let Some(v) = v {
                attrs.push((
                    attribute.as_bytes().to_vec(),
                    HashSet::from([v.into_bytes()]),
                ));
            }
        }
        Ok(attrs)
    }

    /// The container a mapping asked for, or the first base.
    fn container_of(&self, value: Option<&AttrValue>) -> String {
        value
            .and_then(single_value)
            .unwrap_or_else(|| self.settings.bases[0].clone())
    }

    /// Creates the missing organizational units of `container`, top down.
    pub(crate) async fn ensure_container(&self, container: &str) -> Result<(), TargetError> {
        let parsed = Dn::parse(container).map_err(|e| self.rejected(e))?;
        let mut chain = vec![container.to_owned()];
        chain.extend(parsed.ancestors());
        // Walk up until an add succeeds or finds the entry there, then come back down.
        let mut made = None;
        for (i, d) in chain.iter().enumerate() {
            match self.add_ou(d).await {
                Ok(()) => {
                    made = Some(i);
                    break;
                }
                Err(e) if e.code() == Some(NO_SUCH_OBJECT) => continue,
                Err(e) => return Err(self.err(e)),
            }
        }
        let Some(top) = made else {
            return Err(self.rejected(format!("cannot create {container}: no part of it exists")));
        };
        for d in chain[..top].iter().rev() {
            self.add_ou(d).await.map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Adds one OU; an existing one is fine.
    async fn add_ou(&self, d: &str) -> Result<(), LdapError> {
        let parsed = Dn::parse(d).map_err(|message| LdapError::Config { message })?;
        let Some(ou) = parsed.first_value("ou") else {
            return Err(LdapError::Config {
                message: format!("{d} is missing and only organizational units are created"),
            });
        };
        let attrs: Attrs = vec![
            (
                b"objectClass".to_vec(),
                value_set(vec!["top".into(), "organizationalUnit".into()]),
            ),
            (b"ou".to_vec(), value_set(vec![ou.to_owned()])),
        ];
        match self.client.add(d, attrs, Vec::new()).await {
            Err(e) if e.code() == Some(ENTRY_ALREADY_EXISTS) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Updates an account; the old DN when it moved and refint is still to settle (see
    /// [`LdapTarget::await_refint`]).
    pub(crate) async fn update_account(
        &self,
        reference: &str,
        changes: &BTreeMap<String, AttrValue>,
    ) -> Result<Option<String>, TargetError> {
        let dn = self
            .resolve(reference, false)
            .await?
            .ok_or_else(|| self.no_such(reference))?;
        let canonical = self
            .settings
            .canonical_reference(reference)
            .unwrap_or_default();
        match self.update_at(&canonical, dn, changes).await {
            Err(TargetError::Rejected { message, .. })
                if message.starts_with(crate::error::code_name(NO_SUCH_OBJECT)) =>
            {
                // Moved outside koppel since it was cached: find it again, once.
                let dn = self
                    .resolve(reference, true)
                    .await?
                    .ok_or_else(|| self.no_such(reference))?;
                self.update_at(&canonical, dn, changes).await
            }
            other => other,
        }
    }

    /// Applies `changes` to the account at `dn`: modrdn first when the container or the RDN
    /// value changed, then one modify of the other attributes. Returns the old DN of an
    /// OpenLDAP move, which the caller passes to [`LdapTarget::await_refint`] before any
    /// membership of the account changes.
    pub(crate) async fn update_at(
        &self,
        reference: &str,
        dn: String,
        changes: &BTreeMap<String, AttrValue>,
    ) -> Result<Option<String>, TargetError> {
        let s = &self.settings;
        let current = Dn::parse(&dn).map_err(|e| self.rejected(e))?;
        let new_container = changes
            .get(CONTAINER)
            .and_then(single_value)
            .filter(|c| dn::key(c) != dn::key(&current.parent()));
        let new_rdn_value = changes
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&s.rdn_attribute))
            .and_then(|(_, v)| single_value(v))
            .filter(|v| current.first_value(&s.rdn_attribute) != Some(v.as_str()));
        let mut dn = dn;
        let mut moved_from = None;
        if new_container.is_some() || new_rdn_value.is_some() {
            let rdn = match &new_rdn_value {
                Some(v) => dn::rdn(&s.rdn_attribute, v),
                None => current.rdn().unwrap_or_default().to_owned(),
            };
            let parent = new_container.clone().unwrap_or_else(|| current.parent());
            let mut moved = self
                .client
                .modifydn(&dn, &rdn, new_container.as_deref())
                .await;
            if let (Err(e), Some(c)) = (&moved, &new_container)
                && e.code() == Some(NO_SUCH_OBJECT)
                && s.create_containers
                && self.exists(&dn).await?
            {
                self.ensure_container(c).await?;
                moved = self.client.modifydn(&dn, &rdn, Some(c)).await;
            }
            moved.map_err(|e| self.err(e))?;
            let old = std::mem::replace(&mut dn, format!("{rdn},{parent}"));
            self.remember(reference, &dn);
            if s.flavour == Flavour::Openldap {
                moved_from = Some(old);
            }
        }
        let mods: Vec<Mod<Vec<u8>>> = changes
            .iter()
            .filter(|(k, _)| *k != CONTAINER && !k.eq_ignore_ascii_case(&s.rdn_attribute))
            .map(|(k, v)| Mod::Replace(k.clone().into_bytes(), value_set(ldap_values(v))))
            .collect();
        if let Some((bad, _)) = changes
            .iter()
            .find(|(k, _)| *k != CONTAINER && !values::is_attribute_name(k))
        {
            return Err(self.config_error(format!("{bad:?} is not an attribute name")));
        }
        if !mods.is_empty()
            && let Err(e) = self.client.modify(&dn, mods, false).await
        {
            // The move stands: let refint settle before the error goes back.
            self.await_refint(moved_from.as_slice()).await?;
            return Err(self.err(e));
        }
        Ok(moved_from)
    }

    /// OpenLDAP's refint overlay rewrites group memberships after a modrdn in a background
    /// thread, after the modrdn has been answered. A revoke sent in between would remove the
    /// new DN (not there yet, so nothing) and refint would then put the membership back
    /// under the new DN. So a move is done only once no group names the old DN any more;
    /// after a bounded wait it goes on (the next run's plan sees what is left). `apply`
    /// waits once for all the moves of a batch, in a few OR searches.
    pub(crate) async fn await_refint(&self, old_dns: &[String]) -> Result<(), TargetError> {
        let Some(groups) = &self.settings.groups.container else {
            return Ok(());
        };
        let member = &self.settings.groups.member_attribute;
        for chunk in old_dns.chunks(100) {
            let filter: String = chunk
                .iter()
                .map(|d| format!("({member}={})", ldap_escape(d)))
                .collect();
            let filter = format!("(|{filter})");
            let mut settled = false;
            for _ in 0..100 {
                let left = self
                    .client
                    .search(groups, Scope::Subtree, &filter, &["1.1"])
                    .await
                    .map_err(|e| self.err(e))?;
                if left.is_empty() {
                    settled = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            if !settled {
                tracing::warn!(dns = ?chunk, "groups still name moved entries' old DNs after 5 s");
            }
        }
        Ok(())
    }

    async fn exists(&self, dn: &str) -> Result<bool, TargetError> {
        Ok(!self
            .client
            .search(dn, Scope::Base, "(objectClass=*)", &["1.1"])
            .await
            .map_err(|e| self.err(e))?
            .is_empty())
    }

    pub(crate) async fn set_account_enabled(
        &self,
        reference: &str,
        enabled: bool,
    ) -> Result<(), TargetError> {
        let dn = self
            .resolve(reference, false)
            .await?
            .ok_or_else(|| self.no_such(reference))?;
        match self.set_enabled_at(&dn, enabled).await {
            Err(e) if e.code() == Some(NO_SUCH_OBJECT) => {
                let dn = self
                    .resolve(reference, true)
                    .await?
                    .ok_or_else(|| self.no_such(reference))?;
                self.set_enabled_at(&dn, enabled)
                    .await
                    .map_err(|e| self.err(e))
            }
            other => other.map_err(|e| self.err(e)),
        }
    }

    async fn set_enabled_at(&self, dn: &str, enabled: bool) -> Result<(), LdapError> {
        let s = &self.settings;
        let mods: Vec<Mod<Vec<u8>>> = if s.is_ad() {
            let found = self
                .client
                .search(dn, Scope::Base, "(objectClass=*)", &["userAccountControl"])
                .await?;
            let Some(entry) = found.first() else {
                return Err(LdapError::server(NO_SUCH_OBJECT, "", ""));
            };
            let uac = values::first(&entry.attrs, "userAccountControl")
                .and_then(|v| v.trim().parse::<i64>().ok())
                // userAccountControl is a signed 32-bit integer on the wire.
                .map(|v| v as u32)
                .unwrap_or(ad::NORMAL_ACCOUNT);
            let want = ad::with_enabled(uac, enabled);
            if want == uac {
                return Ok(());
            }
            vec![Mod::Replace(
                b"userAccountControl".to_vec(),
                HashSet::from([want.to_string().into_bytes()]),
            )]
        } else {
            let (attribute, v) = s.lock_value(enabled);
            vec![Mod::Replace(
                attribute.as_bytes().to_vec(),
                v.map(|v| HashSet::from([v.into_bytes()]))
                    .unwrap_or_default(),
            )]
        };
        self.client.modify(dn, mods, false).await.map(|_| ())
    }

    pub(crate) async fn delete_account(&self, reference: &str) -> Result<(), TargetError> {
        let Some(mut dn) = self.resolve(reference, false).await? else {
            return Ok(());
        };
        let canonical = self
            .settings
            .canonical_reference(reference)
            .unwrap_or_default();
        if !self.exists(&dn).await? {
            match self.resolve(reference, true).await? {
                Some(d) => dn = d,
                None => return Ok(()),
            }
        }
        if let DeleteConfig::Move { container } = &self.settings.delete {
            self.set_account_enabled(reference, false).await?;
            let changes =
                BTreeMap::from([(CONTAINER.to_owned(), AttrValue::Text(container.clone()))]);
            let dn = self.resolve(reference, false).await?.unwrap_or(dn);
            // Moving into the container is wanted even without create_containers.
            let moved = match self.update_at(&canonical, dn, &changes).await {
                Ok(moved) => moved,
                Err(e) => {
                    if self.exists(container).await? {
                        return Err(e);
                    }
                    self.ensure_container(container).await?;
                    let dn = self
                        .resolve(reference, true)
                        .await?
                        .ok_or_else(|| self.no_such(reference))?;
                    self.update_at(&canonical, dn, &changes).await?
                }
            };
            return self.await_refint(moved.as_slice()).await;
        }
        if !self.settings.is_ad() {
            self.leave_all_groups(&dn).await?;
        }
        let r = self.client.delete(&dn, self.settings.is_ad()).await;
        self.forget(&canonical);
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some(NO_SUCH_OBJECT) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }
}
