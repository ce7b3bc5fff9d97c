//! The `[targets.<name>.connection]` table of a `scim` target, checked once at start:
//! unknown keys, missing secrets and contradictions are errors naming the key path.

use std::path::{Path, PathBuf};

use koppel_connectors::settings;
use serde::Deserialize;

use crate::error::ScimError;

/// How `update` writes changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateMode {
    /// `PATCH` with `replace`/`remove` operations for the changed attributes only.
    #[default]
    Patch,
    /// Read the user, change it, `PUT` it back whole (with `If-Match` when the server gives
    /// ETags), for servers without PATCH.
    Put,
}

/// What `delete` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMode {
    /// `DELETE /Users/{id}`; a 404 counts as done.
    #[default]
    Delete,
    /// Set `active: false` and keep the user (applications that must keep history).
    Disable,
}

/// How the client authenticates to the token endpoint in `[oauth2]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (RFC 6749 §2.3.1, the recommended way).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// OAuth2 client credentials (RFC 6749 §4.4) instead of a static bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    pub token_url: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret_env: Option<String>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Space-separated scopes, sent as given.
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub client_auth: ClientAuth,
}

/// Named switches for the ways real SCIM services depart from RFC 7644.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compat {
    /// Send PATCH in the shapes Entra ID's provisioning service sends, for applications built
    /// against it: capitalised op names (`Replace`, `Add`, `Remove`), value-less-path `Replace`
    /// ops carrying an object of attribute paths, and booleans as the strings `"True"`/`"False"`.
    #[serde(default)]
    pub entra_patch: bool,
    /// The server leaves `members` out of `GET /Groups`: read memberships from the users'
    /// `groups` attribute instead.
    #[serde(default)]
    pub no_group_members_in_get: bool,
    /// The server has no (working) `filter`: correlate, check uniqueness and find groups by
    /// listing every resource and comparing here.
    #[serde(default)]
    pub no_filter: bool,
}

fn default_page_size() -> u32 {
    100
}

fn default_concurrency() -> usize {
    8
}

fn default_timeout() -> u64 {
    30
}

fn default_max_retries() -> u32 {
    4
}

fn default_backoff_ms() -> u64 {
    250
}

fn default_max_retry_after() -> u64 {
    120
}

/// The connection table of a `scim` target, as written in `koppel.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimConfig {
    /// The service's base URL, `/Users` and `/Groups` are under it: `https://app/scim/v2`.
    pub base_url: String,
    /// Environment variable holding a static bearer token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding a static bearer token (trailing newline ignored).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub oauth2: Option<OAuth2Config>,
    #[serde(default)]
    pub update: UpdateMode,
    #[serde(default)]
    pub delete: DeleteMode,
    /// Attribute a create correlates on when the plan's request carries no correlation.
    #[serde(default)]
    pub correlation: Option<String>,
    /// `count` asked per page when listing.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Per request, connecting included.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Retries of a request after a 429, a 5xx, a timeout or a connection failure.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First backoff; it doubles per retry (capped at 30 s), with full jitter.
    #[serde(default = "default_backoff_ms")]
    pub retry_backoff_ms: u64,
    /// The longest `Retry-After` koppel waits; a longer one makes the target unavailable.
    #[serde(default = "default_max_retry_after")]
    pub max_retry_after_seconds: u64,
    /// PEM file of the CA certificates to trust instead of the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub compat: Compat,
}

impl ScimConfig {
    /// Reads and checks the connection table of target `target`; errors name the key path
    /// (`targets.<target>.connection.<key>`).
    pub fn from_table(target: &str, table: &toml::Table) -> Result<ScimConfig, ScimError> {
        let prefix = format!("targets.{target}.connection");
        let config: ScimConfig =
            settings::connection(target, table).map_err(|message| ScimError::Config { message })?;
        config.check(&prefix)?;
        Ok(config)
    }

    /// Contradictions and malformed values that serde cannot see.
    pub(crate) fn check(&self, prefix: &str) -> Result<(), ScimError> {
        let err = |key: &str, message: String| ScimError::Config {
            message: format!("{prefix}.{key}: {message}"),
        };
        check_http_url(&self.base_url).map_err(|m| err("base_url", m))?;
        let static_token = self.token_env.is_some() || self.token_file.is_some();
        if self.token_env.is_some() && self.token_file.is_some() {
            return Err(err(
                "token_env",
                "give token_env or token_file, not both".into(),
            ));
        }
        match (&self.oauth2, static_token) {
            (Some(_), true) => {
                return Err(err(
                    "oauth2",
                    "give a bearer token (token_env/token_file) or [oauth2], not both".into(),
                ));
            }
            (None, false) => {
                return Err(err(
                    "token_env",
                    "no credentials: set token_env (an environment variable) or token_file \
                     (a file) for a bearer token, or an [oauth2] table; secrets are never \
                     written inline"
                        .into(),
                ));
            }
            _ => {}
        }
        if let Some(o) = &self.oauth2 {
            check_http_url(&o.token_url).map_err(|m| err("oauth2.token_url", m))?;
            if o.client_id.is_empty() {
                return Err(err("oauth2.client_id", "must not be empty".into()));
            }
            match (&o.client_secret_env, &o.client_secret_file) {
                (Some(_), Some(_)) => {
                    return Err(err(
                        "oauth2.client_secret_env",
                        "give client_secret_env or client_secret_file, not both".into(),
                    ));
                }
                (None, None) => {
                    return Err(err(
                        "oauth2.client_secret_env",
                        "the client secret is missing: set client_secret_env or \
                         client_secret_file"
                            .into(),
                    ));
                }
                _ => {}
            }
        }
        if let Some(c) = &self.correlation
            && crate::paths::AttrPath::parse(c).is_err()
        {
            return Err(err(
                "correlation",
                format!("{c:?} is not an attribute path"),
            ));
        }
        if self.page_size < 1 {
            return Err(err("page_size", "must be at least 1".into()));
        }
        if self.concurrency < 1 {
            return Err(err("concurrency", "must be at least 1".into()));
        }
        if self.timeout_seconds < 1 {
            return Err(err("timeout_seconds", "must be at least 1".into()));
        }
        if self.max_retries > 20 {
            return Err(err("max_retries", "must be at most 20".into()));
        }
        Ok(())
    }

    /// The static bearer token, when one is configured. The error names the variable or
    /// file, never the secret.
    pub(crate) fn static_token(&self) -> Result<Option<String>, ScimError> {
        if let Some(var) = &self.token_env {
            return read_env(var, "token_env").map(Some);
        }
        if let Some(path) = &self.token_file {
            return read_file(path, "token_file").map(Some);
        }
        Ok(None)
    }
}

impl OAuth2Config {
    pub(crate) fn client_secret(&self) -> Result<String, ScimError> {
        if let Some(var) = &self.client_secret_env {
            return read_env(var, "oauth2.client_secret_env");
        }
        if let Some(path) = &self.client_secret_file {
            return read_file(path, "oauth2.client_secret_file");
        }
        Err(ScimError::Config {
            message: "no oauth2.client_secret_env or oauth2.client_secret_file".into(),
        })
    }
}

fn check_http_url(s: &str) -> Result<(), String> {
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {
            if u.query().is_some() || u.fragment().is_some() {
                Err(format!("{s:?} must have no query or fragment"))
            } else {
                Ok(())
            }
        }
        Ok(_) => Err(format!("{s:?} is not an http:// or https:// URL")),
        Err(e) => Err(format!("{s:?} is not a URL: {e}")),
    }
}

fn read_env(var: &str, key: &str) -> Result<String, ScimError> {
    settings::env_secret(var, key).map_err(|message| ScimError::SecretMissing { message })
}

fn read_file(path: &Path, key: &str) -> Result<String, ScimError> {
    settings::file_secret(path, key).map_err(|message| ScimError::SecretMissing { message })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ScimConfig, ScimError> {
        ScimConfig::from_table("plek", &toml::from_str(s).expect("toml"))
    }

    #[test]
    fn minimal_bearer_config() {
        let c = parse("base_url = \"https://plek.example/scim/v2\"\ntoken_env = \"PLEK_TOKEN\"")
            .expect("valid");
        assert_eq!(c.update, UpdateMode::Patch);
        assert_eq!(c.delete, DeleteMode::Delete);
        assert_eq!(c.page_size, 100);
        assert!(!c.compat.entra_patch);
    }

    #[test]
    fn errors_name_the_key_path() {
        let e = parse("base_url = \"https://x\"\ntoken_env = \"T\"\nupdate = \"post\"")
            .expect_err("bad update");
        assert!(
            e.to_string().contains("targets.plek.connection.update"),
            "{e}"
        );
        let e = parse("base_url = \"https://x\"\ntoken_env = \"T\"\n[compat]\nentra = true")
            .expect_err("unknown compat");
        assert!(
            e.to_string().contains("targets.plek.connection.compat"),
            "{e}"
        );
        let e = parse("base_url = \"ldap://x\"\ntoken_env = \"T\"").expect_err("scheme");
        assert!(e.to_string().contains("connection.base_url"), "{e}");
        let e = parse("base_url = \"https://x\"").expect_err("no credentials");
        assert!(e.to_string().contains("connection.token_env"), "{e}");
        let e = parse(
            "base_url = \"https://x\"\ntoken_env = \"T\"\n[oauth2]\ntoken_url = \"https://t\"\n\
             client_id = \"c\"\nclient_secret_env = \"S\"",
        )
        .expect_err("both");
        assert!(e.to_string().contains("connection.oauth2"), "{e}");
        let e = parse(
            "base_url = \"https://x\"\n[oauth2]\ntoken_url = \"https://t\"\nclient_id = \"c\"",
        )
        .expect_err("no secret");
        assert!(
            e.to_string()
                .contains("connection.oauth2.client_secret_env"),
            "{e}"
        );
    }

    #[test]
    fn secrets_are_named_never_shown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        let c = parse(&format!(
            "base_url = \"https://x\"\ntoken_file = {:?}",
            path.display().to_string()
        ))
        .expect("valid");
        let e = c.static_token().expect_err("missing file");
        assert!(matches!(e, ScimError::SecretMissing { .. }), "{e}");
        assert!(e.to_string().contains("token_file"), "{e}");
        std::fs::write(&path, "s3cret-value\n").expect("write");
        assert_eq!(
            c.static_token().expect("read").as_deref(),
            Some("s3cret-value")
        );
        let c = parse("base_url = \"https://x\"\ntoken_env = \"KOPPEL_SCIM_SURELY_UNSET_VAR\"")
            .expect("valid");
        let e = c.static_token().expect_err("unset");
        assert!(
            e.to_string().contains("KOPPEL_SCIM_SURELY_UNSET_VAR"),
            "{e}"
        );
    }
}
