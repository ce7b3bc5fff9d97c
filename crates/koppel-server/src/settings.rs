//! `[serve]`: what `koppel serve` reads from the configuration besides the sources'
//! schedules. Every key is checked here; an unknown one is an error that names its table.

use std::path::PathBuf;

use serde::Deserialize;

use crate::{ScimConfig, ServeError, TokenRef};

/// The whole `[serve]` table.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// `[serve.scim]`: the built-in directory as a SCIM 2.0 endpoint.
    pub scim: Option<ScimConfig>,
    /// `[serve.api]`: the admin API, the webhook and the HR push endpoints.
    pub api: Option<ApiConfig>,
    /// How long SIGTERM waits for the run in flight before cutting it off at its next step;
    /// a cut-off run is journaled and carried on by the next start.
    pub shutdown_grace_seconds: u64,
}

/// The keys `[serve]` may have.
pub const SERVE_KEYS: [&str; 3] = ["scim", "api", "shutdown_grace_seconds"];

impl Default for ServeSettings {
    fn default() -> Self {
        ServeSettings {
            scim: None,
            api: None,
            shutdown_grace_seconds: 30,
        }
    }
}

impl ServeSettings {
    /// Reads `[serve]` (absent: nothing configured). Errors name the table and the key.
    pub fn from_table(table: Option<&toml::Table>) -> Result<ServeSettings, ServeError> {
        let mut out = ServeSettings::default();
        let Some(table) = table else {
            return Ok(out);
        };
        for (key, value) in table {
            match key.as_str() {
                "scim" => {
                    out.scim = Some(
                        value
                            .clone()
                            .try_into()
                            .map_err(|e| ServeError::Config(format!("[serve.scim]: {e}")))?,
                    );
                }
                "api" => {
                    let api: ApiConfig = value
                        .clone()
                        .try_into()
                        .map_err(|e| ServeError::Config(format!("[serve.api]: {e}")))?;
                    api.check()?;
                    out.api = Some(api);
                }
                "shutdown_grace_seconds" => {
                    out.shutdown_grace_seconds = value
                        .as_integer()
                        .and_then(|n| u64::try_from(n).ok())
                        .ok_or_else(|| {
                            ServeError::Config(format!(
                                "[serve] shutdown_grace_seconds = {value}: expected a whole number of seconds"
                            ))
                        })?;
                }
                other => {
                    return Err(ServeError::Config(format!(
                        "[serve] has no setting {other:?} (known: {})",
                        SERVE_KEYS.join(", ")
                    )));
                }
            }
        }
        Ok(out)
    }
}

/// `[serve.api]`: who may call the admin API, by token, and how much they may send.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Accepted bearer tokens, each by reference and with its scope; at least one.
    pub tokens: Vec<ApiToken>,
    /// Largest request body accepted, in bytes (a bulk push of persons is the large one).
    #[serde(default = "default_api_body")]
    pub max_body_bytes: usize,
}

fn default_api_body() -> usize {
    4 * 1024 * 1024
}

/// One API token: a secret by reference and what it may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    pub scope: TokenScope,
}

/// What a token may do. `admin` may do everything; `push` only pushes HR records; `read`
/// only reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    Read,
    Push,
    Admin,
}

impl TokenScope {
    /// Whether a token of this scope may call a route that needs `needed`.
    pub fn allows(self, needed: TokenScope) -> bool {
        self == TokenScope::Admin || self == needed
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::Push => "push",
            TokenScope::Admin => "admin",
        }
    }
}

impl ApiToken {
    pub fn reference(&self) -> TokenRef {
        TokenRef {
            token_env: self.token_env.clone(),
            token_file: self.token_file.clone(),
        }
    }
}

impl ApiConfig {
    /// The shape checks `koppel validate` can make without reading any secret.
    pub fn check(&self) -> Result<(), ServeError> {
        if self.tokens.is_empty() {
            return Err(ServeError::Config(
                "[serve.api]: tokens is empty; add at least one { token_env = \"…\", scope = \"admin\" }"
                    .to_owned(),
            ));
        }
        for (i, t) in self.tokens.iter().enumerate() {
            if t.token_env.is_some() == t.token_file.is_some() {
                return Err(ServeError::Config(format!(
                    "[serve.api] tokens[{i}]: give exactly one of token_env and token_file"
                )));
            }
        }
        if self.max_body_bytes < 1024 {
            return Err(ServeError::Config(format!(
                "[serve.api] max_body_bytes = {}: at least 1024",
                self.max_body_bytes
            )));
        }
        Ok(())
    }
}

/// A source's cron expression, checked: `Err` names the source and says what is wrong.
pub fn parse_schedule(source: &str, expression: &str) -> Result<croner::Cron, ServeError> {
    use std::str::FromStr;
    croner::Cron::from_str(expression).map_err(|e| {
        ServeError::Config(format!(
            "[[sources]] {source}: schedule {expression:?} is not a cron expression ({e}); \
             write `minute hour day month weekday`, optionally with a leading seconds field, \
             e.g. \"0 */15 * * * *\" for every quarter hour"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse::<toml::Table>().unwrap()
    }

    #[test]
    fn reads_api_tokens_with_scopes_and_rejects_unknown_keys() {
        let t = table(
            r#"
            shutdown_grace_seconds = 5
            [api]
            tokens = [{ token_env = "A", scope = "admin" }, { token_file = "/x", scope = "read" }]
            "#,
        );
        let s = ServeSettings::from_table(Some(&t)).unwrap();
        let api = s.api.unwrap();
        assert_eq!(api.tokens[0].scope, TokenScope::Admin);
        assert_eq!(api.tokens[1].scope, TokenScope::Read);
        assert_eq!(api.max_body_bytes, 4 * 1024 * 1024);
        assert_eq!(s.shutdown_grace_seconds, 5);

        let e = ServeSettings::from_table(Some(&table("[apii]\nx = 1"))).unwrap_err();
        assert!(e.to_string().contains("\"apii\""), "{e}");
        let e = ServeSettings::from_table(Some(&table(
            "[api]\ntokens = [{ token_env = \"A\", scope = \"root\" }]",
        )))
        .unwrap_err();
        assert!(e.to_string().contains("[serve.api]"), "{e}");
        let e = ServeSettings::from_table(Some(&table(
            "[api]\ntokens = [{ token_env = \"A\", token_file = \"/f\", scope = \"read\" }]",
        )))
        .unwrap_err();
        assert!(e.to_string().contains("exactly one"), "{e}");
        let e = ServeSettings::from_table(Some(&table("[api]\ntokens = []"))).unwrap_err();
        assert!(e.to_string().contains("at least one"), "{e}");
    }

    #[test]
    fn scopes_nest_only_under_admin() {
        assert!(TokenScope::Admin.allows(TokenScope::Read));
        assert!(TokenScope::Admin.allows(TokenScope::Push));
        assert!(!TokenScope::Read.allows(TokenScope::Admin));
        assert!(!TokenScope::Push.allows(TokenScope::Read));
        assert!(!TokenScope::Read.allows(TokenScope::Push));
    }

    #[test]
    fn schedules_take_five_or_six_fields() {
        assert!(parse_schedule("csv hr", "*/15 * * * *").is_ok());
        assert!(parse_schedule("csv hr", "* * * * * *").is_ok());
        let e = parse_schedule("csv hr", "61 * * * *")
            .unwrap_err()
            .to_string();
        assert!(e.contains("csv hr") && e.contains("61 * * * *"), "{e}");
    }
}
