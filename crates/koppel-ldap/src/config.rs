//! The `[targets.<name>.connection]` table of an `ldap` target, checked once at start:
//! unknown keys, missing secrets and contradictions are errors naming the key path.

use std::collections::BTreeMap;
use std::path::PathBuf;

use koppel_connectors::settings;
use serde::Deserialize;

use crate::dn::Dn;
use crate::error::LdapError;

/// Which directory server dialect the target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flavour {
    /// OpenLDAP (and other RFC directories): `entryUUID` references, `inetOrgPerson`.
    Openldap,
    /// Active Directory (and Samba AD): `objectGUID` references, `userAccountControl`,
    /// `unicodePwd`, ranged retrieval.
    ActiveDirectory,
}

/// One base DN or several.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Bases {
    One(String),
    Many(Vec<String>),
}

impl Bases {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Bases::One(b) => vec![b.clone()],
            Bases::Many(v) => v.clone(),
        }
    }
}

/// How an OpenLDAP account is disabled.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "method")]
pub enum DisableConfig {
    /// `pwdAccountLockedTime: 000001010000Z` (the ppolicy overlay's permanent lock).
    Ppolicy,
    /// A plain attribute: `value` when disabled, `enabled_value` (or absent) when enabled.
    Attribute {
        attribute: String,
        value: String,
        #[serde(default)]
        enabled_value: Option<String>,
    },
}

/// What `delete` does.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "mode")]
pub enum DeleteConfig {
    /// Delete the entry.
    Delete,
    /// Disable the account and move it under `container` instead.
    Move { container: String },
}

/// Where groups live and how membership is written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupsConfig {
    /// Where group names resolve (`cn=<name>,<container>`) and dynamic groups are created.
    #[serde(default)]
    pub container: Option<String>,
    /// Default `group` (AD) / `groupOfNames` (OpenLDAP).
    #[serde(default)]
    pub object_class: Option<String>,
    /// `member` (default) or `uniqueMember`.
    #[serde(default = "default_member_attribute")]
    pub member_attribute: String,
    /// Create a group in `container` when a grant names one that does not exist.
    #[serde(default = "yes")]
    pub create_missing: bool,
    /// The value that keeps a group whose schema requires a member valid once its last real
    /// member is revoked (OpenLDAP's `refint_nothing` convention).
    #[serde(default = "default_placeholder")]
    pub placeholder_member: String,
    /// Group names that resolve to a fixed DN anywhere in the directory.
    #[serde(default, rename = "static")]
    pub static_groups: BTreeMap<String, String>,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        GroupsConfig {
            container: None,
            object_class: None,
            member_attribute: default_member_attribute(),
            create_missing: true,
            placeholder_member: default_placeholder(),
            static_groups: BTreeMap::new(),
        }
    }
}

fn default_member_attribute() -> String {
    "member".to_owned()
}

fn default_placeholder() -> String {
    "cn=nobody".to_owned()
}

fn yes() -> bool {
    true
}

fn default_page_size() -> i32 {
    500
}

fn default_range_step() -> u32 {
    1500
}

fn default_timeout() -> u64 {
    30
}

fn default_concurrency() -> usize {
    8
}

/// The connection table of an `ldap` target, as written in `koppel.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    pub flavour: Flavour,
    /// `ldaps://host:636` or `ldap://host:389`.
    pub url: String,
    /// For `ldap://` URLs: upgrade with StartTLS (default) or stay plain (labs only).
    #[serde(default)]
    pub starttls: Option<bool>,
    /// A PEM file with the CA certificates to trust; default: the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `false` switches certificate verification off (labs only).
    #[serde(default = "yes")]
    pub tls_verify: bool,
    pub bind_dn: String,
    /// Name of the environment variable holding the bind password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Path of a file holding the bind password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Where accounts are searched.
    pub base: Bases,
    #[serde(default)]
    pub account_filter: Option<String>,
    #[serde(default)]
    pub object_classes: Option<Vec<String>>,
    #[serde(default)]
    pub rdn_attribute: Option<String>,
    #[serde(default)]
    pub create_containers: bool,
    #[serde(default)]
    pub uniqueness_base: Option<String>,
    #[serde(default = "default_page_size")]
    pub page_size: i32,
    #[serde(default = "default_range_step")]
    pub range_step: u32,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default)]
    pub disable: Option<DisableConfig>,
    #[serde(default)]
    pub delete: Option<DeleteConfig>,
    #[serde(default)]
    pub groups: GroupsConfig,
}

impl LdapConfig {
    /// Reads and checks the connection table of target `target`; errors name the key path
    /// (`targets.<target>.connection.<key>`).
    pub fn from_table(target: &str, table: &toml::Table) -> Result<LdapConfig, LdapError> {
        let prefix = format!("targets.{target}.connection");
        let config: LdapConfig =
            settings::connection(target, table).map_err(|message| LdapError::Config { message })?;
        config.check(&prefix)?;
        Ok(config)
    }

    /// Contradictions and malformed values that serde cannot see.
    pub(crate) fn check(&self, prefix: &str) -> Result<(), LdapError> {
        let err = |key: &str, message: String| LdapError::Config {
            message: format!("{prefix}.{key}: {message}"),
        };
        let scheme = self.url.split("://").next().unwrap_or_default();
        if !self.url.contains("://") || !matches!(scheme, "ldap" | "ldaps") {
            return Err(err(
                "url",
                format!("{:?} is not an ldap:// or ldaps:// URL", self.url),
            ));
        }
        if scheme == "ldaps" && self.starttls == Some(true) {
            return Err(err(
                "starttls",
                "StartTLS does not apply to an ldaps:// URL, which is TLS from the start".into(),
            ));
        }
        match (&self.password_env, &self.password_file) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "password_env",
                    "give password_env or password_file, not both".into(),
                ));
            }
            (None, None) => {
                return Err(err(
                    "password_env",
                    "the bind password is missing: set password_env (an environment variable) \
                     or password_file (a file); passwords are never written inline"
                        .into(),
                ));
            }
            _ => {}
        }
        let bases = self.base.to_vec();
        if bases.is_empty() {
            return Err(err("base", "at least one base DN is needed".into()));
        }
        for base in &bases {
            Dn::parse(base).map_err(|e| err("base", format!("{base:?}: {e}")))?;
        }
        Dn::parse(&self.bind_dn).map_err(|e| err("bind_dn", e))?;
        if let Some(b) = &self.uniqueness_base {
            Dn::parse(b).map_err(|e| err("uniqueness_base", e))?;
        }
        if let Some(c) = &self.groups.container {
            Dn::parse(c).map_err(|e| err("groups.container", e))?;
        }
        for (name, dn) in &self.groups.static_groups {
            Dn::parse(dn).map_err(|e| err(&format!("groups.static.{name:?}"), e))?;
        }
        if let Some(DeleteConfig::Move { container }) = &self.delete {
            Dn::parse(container).map_err(|e| err("delete.container", e))?;
        }
        if self.page_size < 1 {
            return Err(err("page_size", "must be at least 1".into()));
        }
        if self.range_step < 1 {
            return Err(err("range_step", "must be at least 1".into()));
        }
        if self.concurrency < 1 {
            return Err(err("concurrency", "must be at least 1".into()));
        }
        if self.timeout_seconds < 1 {
            return Err(err("timeout_seconds", "must be at least 1".into()));
        }
        for (key, attr) in [
            ("rdn_attribute", self.rdn_attribute.as_deref()),
            (
                "groups.member_attribute",
                Some(self.groups.member_attribute.as_str()),
            ),
        ] {
            if let Some(a) = attr
                && !crate::values::is_attribute_name(a)
            {
                return Err(err(key, format!("{a:?} is not an attribute name")));
            }
        }
        if let Some(f) = &self.account_filter
            && ldap3::parse_filter(f).is_err()
        {
            return Err(err(
                "account_filter",
                format!("{f:?} is not an LDAP filter (RFC 4515)"),
            ));
        }
        match (&self.disable, self.flavour) {
            (Some(_), Flavour::ActiveDirectory) => {
                return Err(err(
                    "disable",
                    "Active Directory accounts are disabled through userAccountControl; \
                     the disable table is for OpenLDAP"
                        .into(),
                ));
            }
            (Some(DisableConfig::Attribute { attribute, .. }), _)
                if !crate::values::is_attribute_name(attribute) =>
            {
                return Err(err(
                    "disable.attribute",
                    format!("{attribute:?} is not an attribute name"),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn is_ldaps(&self) -> bool {
        self.url.starts_with("ldaps://")
    }

    /// StartTLS is the default for `ldap://`.
    pub(crate) fn uses_starttls(&self) -> bool {
        !self.is_ldaps() && self.starttls.unwrap_or(true)
    }

    pub(crate) fn uses_tls(&self) -> bool {
        self.is_ldaps() || self.uses_starttls()
    }

    /// Reads the bind password from where the configuration points. The error names the
    /// variable or file, never the secret.
    pub(crate) fn password(&self) -> Result<String, LdapError> {
        let secret =
            |r: Result<String, String>| r.map_err(|message| LdapError::SecretNotFound { message });
        if let Some(var) = &self.password_env {
            return secret(settings::env_secret(var, "password_env"));
        }
        if let Some(path) = &self.password_file {
            return secret(settings::file_secret(path, "password_file"));
        }
        Err(LdapError::Config {
            message: "no password_env or password_file".into(),
        })
    }
}
