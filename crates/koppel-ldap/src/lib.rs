//! koppel's `ldap` target: accounts and group memberships in OpenLDAP or Active Directory,
//! over LDAPS or StartTLS, with the server's stable id (entryUUID / objectGUID) as reference.
//!
//! Configuration is [`LdapConfig`] (the `[targets.<name>.connection]` table), the target is
//! [`LdapTarget`] from [`connect`]. How each operation maps to LDAP:
//!
//! * **References** are `entryUUID` (OpenLDAP) or `objectGUID` in canonical string form (AD),
//!   so moves and renames keep them. A cache maps them to DNs; misses are resolved by search,
//!   many at once in `apply`.
//! * **DN**: `<rdn_attribute>=<value>,<container>`, the reserved attribute `container` being the
//!   parent DN (default: the first base). A changed container or RDN value is a modrdn.
//! * **Enable/disable**: AD flips only ACCOUNTDISABLE in `userAccountControl`; OpenLDAP sets
//!   `pwdAccountLockedTime: 000001010000Z` (ppolicy, the default) or a configured attribute.
//!   Only that permanent lock value counts as disabled: a temporary lockout after failed binds
//!   is the server's business.
//! * **Permissions** are group names: `groups.static` names or `cn=<name>,<groups.container>`,
//!   membership by DN in `member` (or `uniqueMember`), written with the Permissive Modify
//!   control so granting twice and revoking a missing membership succeed. Reading uses the
//!   account's `memberOf` (OpenLDAP needs the memberof overlay).
//! * **The last member**: `groupOfNames`/`groupOfUniqueNames` require a member, so OpenLDAP
//!   refuses to remove the last one (objectClassViolation). koppel then keeps the group and
//!   replaces the member with `groups.placeholder_member` (default `cn=nobody`, OpenLDAP's
//!   `refint_nothing` convention) in the same modify; the next grant removes the placeholder,
//!   and the placeholder never shows as a member. Groups are never deleted by koppel: they may
//!   carry ACLs or references koppel does not know about.
//! * **Delete** removes the account from its groups first on OpenLDAP (refint cannot remove a
//!   last member), then deletes it; `delete.mode = "move"` disables and moves it instead.
//! * **AD passwords**: a create sets a random 28-character `unicodePwd`, only over TLS.

mod accounts;
mod ad;
mod apply;
mod config;
mod conn;
mod dn;
mod error;
mod groups;
mod values;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use koppel_connectors::target::{
    CreateRequest, Created, Done, Op, Target, TargetAccount, TargetError,
};
use koppel_core::AttrValue;
use ldap3::{Scope, SearchEntry, ldap_escape};

pub use config::{Bases, DeleteConfig, DisableConfig, Flavour, GroupsConfig, LdapConfig};
pub use error::LdapError;

use conn::Client;
use values::{CONTAINER, first, get_ci};

/// `pwdAccountLockedTime` value that locks an account until an administrator unlocks it.
const PERMANENT_LOCK: &str = "000001010000Z";

/// The settings the operations use, defaults filled in.
pub(crate) struct Settings {
    flavour: Flavour,
    bases: Vec<String>,
    account_filter: String,
    object_classes: Vec<String>,
    rdn_attribute: String,
    create_containers: bool,
    uniqueness_bases: Vec<String>,
    range_step: u32,
    concurrency: usize,
    disable: DisableConfig,
    delete: DeleteConfig,
    groups: GroupsConfig,
    group_object_class: String,
    /// Normalised key of the groups container.
    group_container_key: Option<String>,
    /// Normalised DN key → static group name.
    static_by_key: HashMap<String, String>,
}

impl Settings {
    fn new(c: &LdapConfig) -> Settings {
        let ad = c.flavour == Flavour::ActiveDirectory;
        let bases = c.base.to_vec();
        Settings {
            flavour: c.flavour,
            account_filter: c.account_filter.clone().unwrap_or_else(|| {
                if ad {
                    "(&(objectClass=user)(objectCategory=person))".to_owned()
                } else {
                    "(objectClass=inetOrgPerson)".to_owned()
                }
            }),
            object_classes: c.object_classes.clone().unwrap_or_else(|| {
                let v: &[&str] = if ad {
                    &["top", "person", "organizationalPerson", "user"]
                } else {
                    &["top", "person", "organizationalPerson", "inetOrgPerson"]
                };
                v.iter().map(|s| (*s).to_owned()).collect()
            }),
            rdn_attribute: c
                .rdn_attribute
                .clone()
                .unwrap_or_else(|| if ad { "cn" } else { "uid" }.to_owned()),
            create_containers: c.create_containers,
            uniqueness_bases: c
                .uniqueness_base
                .clone()
                .map(|b| vec![b])
                .unwrap_or_else(|| bases.clone()),
            bases,
            range_step: c.range_step,
            concurrency: c.concurrency,
            disable: c.disable.clone().unwrap_or(DisableConfig::Ppolicy),
            delete: c.delete.clone().unwrap_or(DeleteConfig::Delete),
            group_object_class: c
                .groups
                .object_class
                .clone()
                .unwrap_or_else(|| if ad { "group" } else { "groupOfNames" }.to_owned()),
            group_container_key: c.groups.container.as_deref().map(dn::key),
            static_by_key: c
                .groups
                .static_groups
                .iter()
                .map(|(name, d)| (dn::key(d), name.clone()))
                .collect(),
            groups: c.groups.clone(),
        }
    }

    fn is_ad(&self) -> bool {
        self.flavour == Flavour::ActiveDirectory
    }

    /// The attribute holding the server's stable id.
    fn id_attribute(&self) -> &'static str {
        if self.is_ad() {
            "objectGUID"
        } else {
            "entryUUID"
        }
    }

    /// What to ask for when reading an account.
    fn account_attributes(&self) -> Vec<&str> {
        let mut v = vec!["*", self.id_attribute(), "memberOf"];
        if self.is_ad() {
            v.push("userAccountControl");
        } else if let DisableConfig::Ppolicy = self.disable {
            v.push("pwdAccountLockedTime");
        }
        v
    }

    /// A reference in canonical form, or `None` when it cannot be one of this server's ids.
    fn canonical_reference(&self, reference: &str) -> Option<String> {
        ad::canonical_guid(reference)
    }

    /// A filter matching the entry with this (canonical) reference.
    fn id_filter(&self, reference: &str) -> Option<String> {
        if self.is_ad() {
            ad::guid_from_string(reference)
                .map(|b| format!("(objectGUID={})", ad::guid_filter_value(&b)))
        } else {
            ad::canonical_guid(reference).map(|r| format!("(entryUUID={r})"))
        }
    }

    /// The reference of a search entry.
    fn reference_of(&self, entry: &SearchEntry) -> Option<String> {
        if self.is_ad() {
            // A GUID whose bytes happen to be valid UTF-8 arrives among the text values.
            get_ci(&entry.bin_attrs, "objectGUID")
                .and_then(|v| v.first())
                .and_then(|b| ad::guid_to_string(b))
                .or_else(|| {
                    get_ci(&entry.attrs, "objectGUID")
                        .and_then(|v| v.first())
                        .and_then(|s| ad::guid_to_string(s.as_bytes()))
                })
        } else {
            first(&entry.attrs, "entryUUID").and_then(ad::canonical_guid)
        }
    }

    /// OpenLDAP: the attribute that marks an account disabled and its value for `enabled`
    /// (`None`: the attribute is removed).
    fn lock_value(&self, enabled: bool) -> (&str, Option<String>) {
        match &self.disable {
            DisableConfig::Ppolicy => (
                "pwdAccountLockedTime",
                (!enabled).then(|| PERMANENT_LOCK.to_owned()),
            ),
            DisableConfig::Attribute {
                attribute,
                value,
                enabled_value,
            } => (
                attribute,
                if enabled {
                    enabled_value.clone()
                } else {
                    Some(value.clone())
                },
            ),
        }
    }

    /// Whether an account entry is enabled.
    fn enabled_of(&self, entry: &SearchEntry) -> bool {
        if self.is_ad() {
            return first(&entry.attrs, "userAccountControl")
                .and_then(|v| v.trim().parse::<i64>().ok())
                .is_none_or(|uac| uac & i64::from(ad::ACCOUNTDISABLE) == 0);
        }
        match &self.disable {
            DisableConfig::Ppolicy => {
                first(&entry.attrs, "pwdAccountLockedTime") != Some(PERMANENT_LOCK)
            }
            DisableConfig::Attribute {
                attribute, value, ..
            } => !get_ci(&entry.attrs, attribute)
                .is_some_and(|vs| vs.iter().any(|v| v.eq_ignore_ascii_case(value))),
        }
    }

    /// The permission name of a group DN, if it is one koppel manages.
    fn group_name(&self, group_dn: &str) -> Option<String> {
        let parsed = dn::Dn::parse(group_dn).ok()?;
        if let Some(name) = self.static_by_key.get(&parsed.key()) {
            return Some(name.clone());
        }
        let container = self.group_container_key.as_ref()?;
        if dn::key(&parsed.parent()) == *container {
            return parsed.first_value("cn").map(str::to_owned);
        }
        None
    }

    fn account_of(&self, entry: SearchEntry) -> Option<TargetAccount> {
        let reference = self.reference_of(&entry)?;
        let enabled = self.enabled_of(&entry);
        let permissions = get_ci(&entry.attrs, "memberOf")
            .map(|groups| groups.iter().filter_map(|g| self.group_name(g)).collect())
            .unwrap_or_default();
        let container = dn::Dn::parse(&entry.dn)
            .map(|d| d.parent())
            .unwrap_or_default();
        let mut skip = vec![
            "objectClass",
            "memberOf",
            self.id_attribute(),
            "pwdAccountLockedTime",
        ];
        if self.is_ad() {
            skip.push("userAccountControl");
        }
        let mut attributes = values::to_attr_values(entry.attrs, &skip);
        attributes.insert(CONTAINER.to_owned(), AttrValue::Text(container));
        Some(TargetAccount {
            reference,
            attributes,
            enabled,
            permissions,
        })
    }
}

/// An LDAP directory as a koppel target.
pub struct LdapTarget {
    name: String,
    settings: Settings,
    client: Client,
    /// Reference → DN, as last seen.
    dns: Mutex<HashMap<String, String>>,
}

/// Connects and binds (so a wrong password, an unreachable server or an untrusted
/// certificate shows at once), checks the bases exist and returns the target.
pub async fn connect(name: &str, config: LdapConfig) -> Result<LdapTarget, LdapError> {
    config.check(&format!("targets.{name}.connection"))?;
    let settings = Settings::new(&config);
    let client = Client::new(config)?;
    client.handle().await?;
    for base in &settings.bases {
        let found = client
            .search(base, Scope::Base, "(objectClass=*)", &["1.1"])
            .await?;
        if found.is_empty() {
            return Err(LdapError::Config {
                message: format!(
                    "targets.{name}.connection.base: {base:?} does not exist on {}",
                    client.url()
                ),
            });
        }
    }
    Ok(LdapTarget {
        name: name.to_owned(),
        settings,
        client,
        dns: Mutex::new(HashMap::new()),
    })
}

impl LdapTarget {
    pub(crate) fn err(&self, e: LdapError) -> TargetError {
        e.into_target_error(&self.name)
    }

    pub(crate) fn rejected(&self, message: impl Into<String>) -> TargetError {
        TargetError::Rejected {
            target: self.name.clone(),
            message: message.into(),
        }
    }

    pub(crate) fn no_such(&self, reference: &str) -> TargetError {
        TargetError::NoSuchAccount {
            target: self.name.clone(),
            reference: reference.to_owned(),
        }
    }

    pub(crate) fn config_error(&self, message: impl Into<String>) -> TargetError {
        TargetError::Config {
            target: self.name.clone(),
            message: message.into(),
        }
    }

    fn cached(&self, reference: &str) -> Option<String> {
        self.dns.lock().ok()?.get(reference).cloned()
    }

    pub(crate) fn remember(&self, reference: &str, dn: &str) {
        if let Ok(mut dns) = self.dns.lock() {
            dns.insert(reference.to_owned(), dn.to_owned());
        }
    }

    pub(crate) fn forget(&self, reference: &str) {
        if let Ok(mut dns) = self.dns.lock() {
            dns.remove(reference);
        }
    }

    /// Searches every base for accounts matching `filter` (already escaped).
    pub(crate) async fn find_accounts(
        &self,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, LdapError> {
        let filter = format!("(&{}{filter})", self.settings.account_filter);
        let mut out = Vec::new();
        for base in &self.settings.bases {
            out.extend(
                self.client
                    .search(base, Scope::Subtree, &filter, attrs)
                    .await?,
            );
        }
        for entry in &out {
            if let Some(r) = self.settings.reference_of(entry) {
                self.remember(&r, &entry.dn);
            }
        }
        Ok(out)
    }

    /// The DN of a reference: from the cache, or by searching (`fresh` skips the cache).
    pub(crate) async fn resolve(
        &self,
        reference: &str,
        fresh: bool,
    ) -> Result<Option<String>, TargetError> {
        let Some(canonical) = self.settings.canonical_reference(reference) else {
            return Ok(None);
        };
        if !fresh && let Some(dn) = self.cached(&canonical) {
            return Ok(Some(dn));
        }
        self.forget(&canonical);
        let Some(filter) = self.settings.id_filter(&canonical) else {
            return Ok(None);
        };
        let found = self
            .find_accounts(&filter, &[self.settings.id_attribute()])
            .await
            .map_err(|e| self.err(e))?;
        Ok(found.into_iter().next().map(|e| e.dn))
    }

    /// Resolves many references in a few OR searches, filling the cache.
    pub(crate) async fn resolve_many(&self, references: &[&str]) -> Result<(), TargetError> {
        let mut missing: Vec<String> = references
            .iter()
            .filter_map(|r| self.settings.canonical_reference(r))
            .filter(|r| self.cached(r).is_none())
            .collect();
        missing.sort();
        missing.dedup();
        for chunk in missing.chunks(100) {
            let filters: String = chunk
                .iter()
                .filter_map(|r| self.settings.id_filter(r))
                .collect();
            self.find_accounts(&format!("(|{filters})"), &[self.settings.id_attribute()])
                .await
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// One account entry by DN, with everything an account read needs.
    pub(crate) async fn read_entry(&self, dn: &str) -> Result<Option<SearchEntry>, LdapError> {
        let attrs = self.settings.account_attributes();
        let mut found = self
            .client
            .search(dn, Scope::Base, "(objectClass=*)", &attrs)
            .await?;
        let Some(mut entry) = found.pop() else {
            return Ok(None);
        };
        self.complete_ranges(&mut entry).await?;
        Ok(Some(entry))
    }

    /// AD hands out large multi-valued attributes in ranges (`member;range=0-1499`): fetch
    /// the rest, `range_step` values at a time, until the server says `*`.
    pub(crate) async fn complete_ranges(&self, entry: &mut SearchEntry) -> Result<(), LdapError> {
        let ranged: Vec<String> = entry
            .attrs
            .keys()
            .filter(|k| k.to_ascii_lowercase().contains(";range="))
            .cloned()
            .collect();
        for key in ranged {
            let Some(mut values) = entry.attrs.remove(&key) else {
                continue;
            };
            let Some((attr, range)) = key.split_once(";") else {
                continue;
            };
            let attr = attr.to_owned();
            let mut range = range.to_owned();
            // A search that answers with no progress must not loop forever.
            for _ in 0..100_000 {
                let Some(high) = range.rsplit('-').next().map(str::to_owned) else {
                    break;
                };
                if high == "*" {
                    break;
                }
                let Ok(high) = high.parse::<u64>() else {
                    break;
                };
                let low = high + 1;
                let want = format!(
                    "{attr};range={low}-{}",
                    low + u64::from(self.settings.range_step) - 1
                );
                let found = self
                    .client
                    .search(&entry.dn, Scope::Base, "(objectClass=*)", &[want.as_str()])
                    .await?;
                let next = found.into_iter().next().and_then(|e| {
                    e.attrs.into_iter().find(|(k, _)| {
                        k.to_ascii_lowercase()
                            .starts_with(&format!("{};range=", attr.to_ascii_lowercase()))
                    })
                });
                let Some((k, v)) = next else {
                    break;
                };
                values.extend(v);
                range = k
                    .split_once(';')
                    .map(|(_, r)| r.to_owned())
                    .unwrap_or_default();
            }
            entry.attrs.entry(attr).or_default().extend(values);
        }
        Ok(())
    }

    /// Every member DN of a group (ranged retrieval on AD), the placeholder left out.
    pub async fn group_members(&self, permission: &str) -> Result<Vec<String>, TargetError> {
        let group = self.group_dn(permission)?;
        let member = self.settings.groups.member_attribute.clone();
        // AD cuts a value list only at its MaxValRange (1500 on Windows) and Samba never does:
        // asking for the first range ourselves makes range_step apply on every DC, and the
        // ranged path the one tested against Samba.
        let wanted = if self.settings.is_ad() {
            format!("{member};range=0-{}", self.settings.range_step - 1)
        } else {
            member.clone()
        };
        let found = self
            .client
            .search(&group, Scope::Base, "(objectClass=*)", &[wanted.as_str()])
            .await
            .map_err(|e| self.err(e))?;
        let Some(mut entry) = found.into_iter().next() else {
            return Ok(Vec::new());
        };
        self.complete_ranges(&mut entry)
            .await
            .map_err(|e| self.err(e))?;
        let placeholder = dn::key(&self.settings.groups.placeholder_member);
        Ok(get_ci(&entry.attrs, &member)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| dn::key(m) != placeholder)
            .collect())
    }

    /// The DN koppel knows for a reference (for tests and diagnostics).
    pub async fn dn_of(&self, reference: &str) -> Result<Option<String>, TargetError> {
        self.resolve(reference, false).await
    }

    /// Reads the account at `dn` as a target account.
    pub(crate) async fn account_at(&self, dn: &str) -> Result<Option<TargetAccount>, LdapError> {
        Ok(self
            .read_entry(dn)
            .await?
            .and_then(|e| self.settings.account_of(e)))
    }
}

#[async_trait::async_trait]
impl Target for LdapTarget {
    fn name(&self) -> &str {
        &self.name
    }

    async fn correlate(
        &self,
        attribute: &str,
        value: &AttrValue,
    ) -> Result<Option<TargetAccount>, TargetError> {
        let mut found = self.correlate_entries(attribute, value).await?;
        match found.len() {
            0 => Ok(None),
            1 => {
                let mut entry = found.remove(0);
                self.complete_ranges(&mut entry)
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(self.settings.account_of(entry))
            }
            n => Err(self.rejected(format!(
                "{n} accounts have {attribute} = {value}: correlation must find at most one"
            ))),
        }
    }

    async fn get(&self, reference: &str) -> Result<Option<TargetAccount>, TargetError> {
        let Some(dn) = self.resolve(reference, false).await? else {
            return Ok(None);
        };
        match self.account_at(&dn).await.map_err(|e| self.err(e))? {
            Some(a) => Ok(Some(a)),
            // Moved since it was cached: look again by id.
            None => match self.resolve(reference, true).await? {
                Some(dn) => self.account_at(&dn).await.map_err(|e| self.err(e)),
                None => Ok(None),
            },
        }
    }

    async fn create(&self, request: &CreateRequest) -> Result<Created, TargetError> {
        self.create_account(request, accounts::Precheck::Unknown)
            .await
    }

    async fn update(
        &self,
        reference: &str,
        changes: &BTreeMap<String, AttrValue>,
    ) -> Result<(), TargetError> {
        let moved = self.update_account(reference, changes).await?;
        self.await_refint(moved.as_slice()).await
    }

    async fn set_enabled(&self, reference: &str, enabled: bool) -> Result<(), TargetError> {
        self.set_account_enabled(reference, enabled).await
    }

    async fn delete(&self, reference: &str) -> Result<(), TargetError> {
        self.delete_account(reference).await
    }

    async fn grant(&self, reference: &str, permission: &str) -> Result<(), TargetError> {
        self.change_membership(reference, permission, true).await
    }

    async fn revoke(&self, reference: &str, permission: &str) -> Result<(), TargetError> {
        self.change_membership(reference, permission, false).await
    }

    async fn list_accounts(&self) -> Result<Vec<TargetAccount>, TargetError> {
        let attrs = self.settings.account_attributes();
        let mut entries = Vec::new();
        for base in &self.settings.bases {
            self.client
                .paged_search(base, &self.settings.account_filter, &attrs, |e| {
                    entries.push(e)
                })
                .await
                .map_err(|e| self.err(e))?;
        }
        let mut out = Vec::with_capacity(entries.len());
        for mut entry in entries {
            self.complete_ranges(&mut entry)
                .await
                .map_err(|e| self.err(e))?;
            let dn = entry.dn.clone();
            if let Some(account) = self.settings.account_of(entry) {
                self.remember(&account.reference, &dn);
                out.push(account);
            }
        }
        Ok(out)
    }

    async fn list_permissions(&self) -> Result<Vec<String>, TargetError> {
        self.permissions().await
    }

    async fn is_unique(
        &self,
        attribute: &str,
        value: &str,
        except: Option<&str>,
    ) -> Result<bool, TargetError> {
        if !values::is_attribute_name(attribute) {
            return Err(self.config_error(format!("{attribute:?} is not an attribute name")));
        }
        let except = except.and_then(|e| self.settings.canonical_reference(e));
        let filter = format!("({attribute}={})", ldap_escape(value));
        let id = self.settings.id_attribute();
        for base in &self.settings.uniqueness_bases {
            let found = self
                .client
                .search(base, Scope::Subtree, &filter, &[id])
                .await
                .map_err(|e| self.err(e))?;
            let taken = found.iter().any(|e| {
                let r = self.settings.reference_of(e);
                r.is_none() || r != except
            });
            if taken {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn apply(&self, ops: &[Op]) -> Vec<Result<Done, TargetError>> {
        self.apply_batch(ops).await
    }
}
