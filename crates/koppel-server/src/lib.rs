//! koppel's daemon side, served by `koppel serve`: the [`daemon`] (runs on schedule and on
//! events, the admin API, metrics) and the SCIM 2.0 service provider of the built-in
//! directory (RFC 7643/7644), on one listener; [`settings`] reads `[serve]`.
//!
//! The SCIM pieces: [`filter`] (the filter and PATCH-path parser and evaluator), [`schema`]
//! (User, enterprise User and Group schemas), [`resource`] (checking client JSON, the
//! koppel ↔ SCIM attribute mapping, projection), [`patch`], [`store`] (how resources map
//! onto the directory's tables) and [`http`] (the routes).

pub mod daemon;
pub mod error;
pub mod filter;
pub mod http;
pub mod patch;
pub mod resource;
pub mod schema;
pub mod settings;
pub mod store;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use http::{ScimState, scim_router, scim_routes};
pub use resource::Mapping;
pub use settings::{ApiConfig, ServeSettings, TokenScope};
pub use store::Directory;

/// `[serve.scim]`: the SCIM endpoint.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimConfig {
    /// The directory target served (its `name` in the configuration).
    #[serde(default = "default_target")]
    pub target: String,
    /// Accepted bearer tokens, each by reference; at least one.
    pub tokens: Vec<TokenRef>,
    /// The public URL of the endpoint, for `meta.location` and `$ref`; default: `http://`
    /// and the request's `Host`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// koppel attribute → SCIM path; replaces [`resource::DEFAULT_MAPPING`] when given.
    #[serde(default)]
    pub mapping: Option<BTreeMap<String, String>>,
}

fn default_target() -> String {
    "directory".to_owned()
}

fn default_max_body() -> usize {
    1024 * 1024
}

/// A secret by reference: an environment variable or a file, never the value itself.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRef {
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl TokenRef {
    /// Reads the token through the connectors' secret readers. Errors name the variable or
    /// file, never the value; surrounding whitespace is dropped by [`ScimState::new`].
    pub fn read(&self) -> Result<String, ServeError> {
        match (&self.token_env, &self.token_file) {
            (Some(var), None) => koppel_connectors::settings::env_secret(var, "token_env"),
            (None, Some(path)) => koppel_connectors::settings::file_secret(path, "token_file"),
            _ => Err("each token has exactly one of token_env and token_file".to_owned()),
        }
        .map_err(ServeError::Config)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("serve configuration: {0}")]
    Config(String),
    #[error("store: {0}")]
    Store(String),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl ScimConfig {
    /// The attribute mapping this configuration asks for.
    pub fn mapping(&self) -> Result<Mapping, ServeError> {
        match &self.mapping {
            None => Ok(Mapping::default_mapping()),
            Some(m) => Mapping::new(m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(|e| ServeError::Config(format!("[serve.scim.mapping]: {e}"))),
        }
    }

    /// The endpoint's state over the store behind `pool`.
    pub async fn state(&self, pool: sqlx::SqlitePool) -> Result<ScimState, ServeError> {
        let tokens = self
            .tokens
            .iter()
            .map(TokenRef::read)
            .collect::<Result<Vec<_>, _>>()?;
        let dir = Directory::open(pool, &self.target, self.mapping()?)
            .await
            .map_err(ServeError::Store)?;
        ScimState::new(dir, &tokens, self.base_url.clone(), self.max_body_bytes)
            .map_err(ServeError::Config)
    }
}
