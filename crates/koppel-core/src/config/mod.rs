//! The versioned TOML configuration: sources, targets, rules, mappings, generators, guards.
//! Parsing is pure; every error names the file, line and column, and the expression position.

mod compile;
pub mod source;

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use toml::Spanned;

pub use compile::{
    AttributeDef, CompiledConfig, CompiledGenerator, CompiledPermission, CompiledRule,
    CompiledTarget, ConfigError, PermissionKind, RequiredField, load,
};
pub use source::*;

use crate::org::OrderKey;

/// The only configuration version this build understands.
pub const CONFIG_VERSION: u32 = 1;

/// The configuration file as written. [`load`] turns it into a checked [`CompiledConfig`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub version: Spanned<u32>,
    #[serde(default)]
    pub settings: Settings,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub guards: Guards,
    #[serde(default)]
    pub store: StoreConfig,
    /// `koppel serve`'s settings (the SCIM endpoint …), checked by the server crate.
    #[serde(default)]
    pub serve: Option<toml::Table>,
    /// `[notifications]`: e-mail on joiners, leavers and held plans, checked by koppel-notify.
    #[serde(default)]
    pub notifications: Option<toml::Table>,
    #[serde(default)]
    pub targets: Vec<Spanned<TargetConfig>>,
    #[serde(default)]
    pub rules: Vec<Spanned<RuleConfig>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Person fields that must not be empty, e.g. `name.family`, `email`, `custom.badge`,
    /// `contracts`. A person missing one is blocked: reported and left untouched everywhere.
    pub required_fields: Vec<Spanned<String>>,
    /// The primary contract ordering; active contracts always come first.
    pub primary_contract: Option<Vec<OrderKey>>,
    /// Transliteration overrides applied before the built-in ASCII folding, e.g. `"ü" = "ue"`.
    pub transliteration: BTreeMap<String, String>,
}

/// Source guards: limits on how much the population may change between two snapshots.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Guards {
    pub added: Option<Limit>,
    pub removed: Option<Limit>,
    pub blocked: Option<Limit>,
}

/// An absolute count (`50`) or a share of a base (`"10%"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    Count(u64),
    Percent(f64),
}

impl Limit {
    /// The largest allowed number for a base population of `base`.
    pub fn allowed(&self, base: u64) -> u64 {
        match *self {
            Limit::Count(n) => n,
            Limit::Percent(p) => ((base as f64) * p / 100.0).floor() as u64,
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Count(n) => write!(f, "{n}"),
            Limit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Written the way it is configured: `50` or `"10%"`.
impl Serialize for Limit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Limit::Count(n) => s.serialize_u64(n),
            Limit::Percent(p) => s.serialize_str(&format!("{p}%")),
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(n) => Ok(Limit::Count(n)),
            Raw::Text(s) => {
                let t = s.trim();
                let parsed = t
                    .strip_suffix('%')
                    .and_then(|p| p.trim().parse::<f64>().ok())
                    .filter(|p| p.is_finite() && (0.0..=100.0).contains(p));
                match parsed {
                    Some(p) => Ok(Limit::Percent(p)),
                    None => Err(serde::de::Error::custom(format!(
                        "invalid limit {s:?}: write a whole number (50) or a percentage (\"10%\")"
                    ))),
                }
            }
        }
    }
}

/// The kinds of target connectors koppel has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// koppel's built-in directory, kept in its own store.
    Directory,
    Ldap,
    Scim,
    Rest,
    Graph,
    /// Write-back into Visma Raet / Youforce (the identity of an employee), by `koppel-hr`.
    Visma,
    /// Write-back into AFAS Profit (KnEmployee, KnUser UpdateConnectors), by `koppel-hr`.
    Afas,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub name: String,
    pub kind: TargetKind,
    /// Human description shown in plans.
    #[serde(default)]
    pub description: String,
    /// The account attribute that identifies a person in the target, used to adopt existing
    /// accounts instead of creating duplicates (e.g. `employeeID`).
    #[serde(default)]
    pub correlation: Option<Spanned<String>>,
    #[serde(default)]
    pub lifecycle: Lifecycle,
    /// Limits per run on actions of one kind; past one, those actions are held for approval.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Account attributes: a CEL expression, or a table with options.
    #[serde(default)]
    pub attributes: BTreeMap<String, Spanned<AttributeConfig>>,
    /// Generators of unique values; their fields become account attributes.
    #[serde(default)]
    pub generators: BTreeMap<String, Spanned<GeneratorConfig>>,
    /// Connector settings (server, credentials by reference …), checked by the connector.
    #[serde(default)]
    pub connection: Option<toml::Table>,
}

/// Per target limits on how many actions of a kind one run may carry out, counted against
/// the accounts koppel manages in the target (absolute, or a percentage of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    pub disable: Option<Limit>,
    pub delete: Option<Limit>,
    pub revoke: Option<Limit>,
    pub update: Option<Limit>,
}

/// Where koppel keeps its state.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The SQLite file, relative to the config file; `koppel.db` by default.
    pub path: Option<std::path::PathBuf>,
}

/// Per target account lifecycle, in days.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lifecycle {
    /// Create the account this many days before the earliest matching contract starts
    /// (pre-boarding); it stays disabled until the start date.
    pub create_days_before: u32,
    /// Keep the account enabled this many days past the end of the last matching contract.
    pub disable_grace_days: u32,
    /// Delete this many days after disabling; absent means never delete.
    pub delete_after_days: Option<u32>,
}

/// An attribute mapping: `name = "expr"`, or `name = { value = "expr", on_create_only = true }`.
#[derive(Debug, Clone)]
pub enum AttributeConfig {
    Expr(String),
    Full(AttributeTable),
}

impl AttributeConfig {
    pub fn table(&self) -> AttributeTable {
        match self {
            AttributeConfig::Expr(e) => AttributeTable {
                value: e.clone(),
                on_create_only: false,
                store: false,
            },
            AttributeConfig::Full(t) => t.clone(),
        }
    }
}

// Hand-written rather than `#[serde(untagged)]`, so that a typo inside the table gets the
// precise "unknown field" error instead of "did not match any variant".
impl<'de> Deserialize<'de> for AttributeConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = AttributeConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an expression string or a table with `value`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(AttributeConfig::Expr(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                AttributeTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(AttributeConfig::Full)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeTable {
    pub value: String,
    /// Set at creation, never updated (a username that must survive a marriage).
    #[serde(default)]
    pub on_create_only: bool,
    /// Keep as account data, readable by other targets as `accounts.<target>.<name>`.
    #[serde(default)]
    pub store: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Candidate base values, tried in order (e.g. given.family, g.family, initials.family).
    pub candidates: Vec<String>,
    /// The fields to produce from a base `value` (and iteration `n`, 1 for none); they are
    /// kept in step: jdoe2 with jdoe2@example.com.
    pub fields: BTreeMap<String, String>,
    /// After the candidates, numbered iterations of the first one: `n` from 2 to this.
    #[serde(default = "default_max_iterations")]
    pub max_iterations: u32,
    /// How a numbered iteration is written; `value` is the first candidate, `n` the number.
    #[serde(default = "default_iteration")]
    pub iteration: String,
    /// `never` (default): generated once at creation. `on_change`: generated again when the
    /// candidates change (a new family name after a marriage gives a new e-mail address).
    #[serde(default)]
    pub regenerate: Regenerate,
    /// A released value (from a deleted account) is not handed out again for this many days.
    #[serde(default)]
    pub release_retention_days: u32,
}

/// When a generator produces its values again for an existing account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Regenerate {
    #[default]
    Never,
    OnChange,
}

fn default_max_iterations() -> u32 {
    99
}

fn default_iteration() -> String {
    "value + string(n)".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub id: String,
    #[serde(default)]
    pub description: String,
    /// Condition over the person (`true` when absent).
    #[serde(default)]
    pub condition: Option<String>,
    /// Condition over each contract; a contract "in conditions" is within the target's
    /// lifecycle window and matches it. Absent: every contract in the window matches.
    #[serde(default)]
    pub contract_condition: Option<String>,
    /// Targets in which the rule entitles the person to an account.
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(default)]
    pub permissions: Vec<PermissionConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionConfig {
    pub target: String,
    /// A static permission: the group (or role, license) by name.
    #[serde(default)]
    pub group: Option<String>,
    /// A dynamic permission: an expression evaluated per contract in conditions, e.g.
    /// `"dept-" + lower(contract.department.code)`. An empty result grants nothing.
    #[serde(default)]
    pub dynamic: Option<String>,
}
