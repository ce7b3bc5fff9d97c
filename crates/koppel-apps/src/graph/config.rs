//! The `[targets.<name>.connection]` table of a `graph` target: tenant, app registration,
//! the client secret by reference, and how deletes, groups, batching and retries behave.

use std::path::PathBuf;

use koppel_connectors::settings;
use serde::Deserialize;

use crate::AppsError;

/// What `delete` does in Entra ID.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMode {
    /// `DELETE /users/{id}`: a soft delete, restorable from deleted items for 30 days.
    #[default]
    Delete,
    /// `accountEnabled = false`: the user stays.
    Disable,
}

/// A `graph` target's connection settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphConfig {
    /// The tenant id or a verified domain (`contoso.onmicrosoft.com`).
    pub tenant: String,
    /// The app registration's application (client) id.
    pub client_id: String,
    #[serde(default)]
    pub client_secret_env: Option<String>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    #[serde(default = "default_login_url")]
    pub login_url: String,
    #[serde(default = "default_graph_url")]
    pub graph_url: String,
    #[serde(default)]
    pub delete: DeleteMode,
    /// Security groups named by a permission are made when missing.
    #[serde(default = "yes")]
    pub create_groups: bool,
    /// JSON batching (`$batch`, 20 requests at a time) for batches of operations.
    #[serde(default = "yes")]
    pub batch: bool,
    /// User properties to read besides the built-in list (for mappings of other properties).
    #[serde(default)]
    pub properties: Vec<String>,
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// For 429, 5xx, timeouts and connection failures.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// A longer `Retry-After` makes the target unavailable instead of waiting.
    #[serde(default = "default_retry_after")]
    pub max_retry_after_seconds: u64,
}

fn yes() -> bool {
    true
}
fn default_login_url() -> String {
    "https://login.microsoftonline.com".into()
}
fn default_graph_url() -> String {
    "https://graph.microsoft.com".into()
}
fn default_page_size() -> u32 {
    999
}
fn default_timeout() -> u64 {
    30
}
fn default_retries() -> u32 {
    8
}
fn default_retry_after() -> u64 {
    300
}

/// A property name that can go into `$select` and `$filter` as it is.
pub(crate) fn valid_property(p: &str) -> bool {
    !p.is_empty()
        && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && p.starts_with(|c: char| c.is_ascii_alphabetic())
}

impl GraphConfig {
    /// Parses and checks target `target`'s connection table; errors name the key path.
    pub fn from_table(target: &str, table: &toml::Table) -> Result<GraphConfig, AppsError> {
        let config: GraphConfig =
            settings::connection(target, table).map_err(|message| AppsError::Config { message })?;
        config.check(&format!("targets.{target}.connection"))?;
        Ok(config)
    }

    /// Checks what serde cannot.
    pub fn check(&self, prefix: &str) -> Result<(), AppsError> {
        let err = |key: &str, m: &str| AppsError::Config {
            message: format!("{prefix}.{key}: {m}"),
        };
        if self.tenant.is_empty()
            || !self
                .tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(err(
                "tenant",
                "a tenant id (GUID) or domain name, letters, digits, '-' and '.'",
            ));
        }
        if self.client_id.is_empty() {
            return Err(err("client_id", "is empty"));
        }
        match (&self.client_secret_env, &self.client_secret_file) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "client_secret_env",
                    "give client_secret_env or client_secret_file, not both",
                ));
            }
            (None, None) => {
                return Err(AppsError::Config {
                    message: format!(
                        "{prefix}: no client_secret_env or client_secret_file (the secret is only ever referenced)"
                    ),
                });
            }
            _ => {}
        }
        for (key, u) in [
            ("login_url", &self.login_url),
            ("graph_url", &self.graph_url),
        ] {
            match url::Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "https" | "http") => {}
                Ok(_) => return Err(err(key, "must be an http(s) URL")),
                Err(e) => return Err(err(key, &e.to_string())),
            }
        }
        if let Some(p) = self.properties.iter().find(|p| !valid_property(p)) {
            return Err(err(
                "properties",
                &format!("{p:?} is not a Graph property name"),
            ));
        }
        if !(1..=999).contains(&self.page_size) {
            return Err(err("page_size", "Graph pages hold 1 to 999 users"));
        }
        if self.timeout_seconds == 0 {
            return Err(err("timeout_seconds", "must be at least 1"));
        }
        Ok(())
    }

    /// The client secret, read from where the configuration points.
    pub(crate) fn client_secret(&self) -> Result<String, AppsError> {
        let read = match (&self.client_secret_env, &self.client_secret_file) {
            (Some(var), _) => settings::env_secret(var, "client_secret_env"),
            (None, Some(path)) => settings::file_secret(path, "client_secret_file"),
            (None, None) => Err("no client_secret_env or client_secret_file".to_owned()),
        };
        read.map_err(|message| AppsError::SecretMissing { message })
    }
}
