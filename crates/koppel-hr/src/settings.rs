//! Settings every HR connection shares: the `http` table, secrets by reference, and checking
//! a `connection` table with errors that name the key path (and in `koppel validate`, the line).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::HrError;
use crate::http::HttpSettings;

/// `[….connection.http]`: transport, pacing and retries.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub timeout_seconds: u64,
    /// Calls per minute koppel allows itself; 0 for no pacing; absent for the vendor's limit.
    pub rate_limit_per_minute: Option<u32>,
    /// How long one request may wait in total for 429s before the run gives up.
    pub max_rate_limit_wait_seconds: u64,
    /// Retries of 502/503/504 and connection failures.
    pub max_retries: u32,
    pub retry_backoff_ms: u64,
    /// PEM file with the CA certificates to trust (relative to the config file's folder).
    pub ca_file: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            timeout_seconds: 120,
            rate_limit_per_minute: None,
            max_rate_limit_wait_seconds: 1800,
            max_retries: 4,
            retry_backoff_ms: 500,
            ca_file: None,
        }
    }
}

impl HttpConfig {
    /// The transport settings; `vendor_limit` is the vendor's calls per minute, if any.
    pub fn settings(
        &self,
        service: &str,
        base_dir: &std::path::Path,
        vendor_limit: Option<u32>,
        pacer_key: String,
    ) -> HttpSettings {
        HttpSettings {
            pacer_key,
            service: service.to_owned(),
            timeout: Duration::from_secs(self.timeout_seconds.max(1)),
            rate_limit_per_minute: self
                .rate_limit_per_minute
                .or(vendor_limit)
                .filter(|n| *n > 0),
            max_rate_limit_wait: Duration::from_secs(self.max_rate_limit_wait_seconds),
            max_retries: self.max_retries,
            retry_backoff: Duration::from_millis(self.retry_backoff_ms),
            ca_file: self.ca_file.as_ref().map(|f| base_dir.join(f)),
        }
    }
}

/// A secret named by an environment variable or a file, never inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env { var: String, key: String },
    File { path: PathBuf, key: String },
}

impl SecretRef {
    /// From a `<name>_env` / `<name>_file` pair: exactly one must be set.
    pub fn from_pair(
        name: &str,
        env: &Option<String>,
        file: &Option<PathBuf>,
        prefix: &str,
    ) -> Result<SecretRef, HrError> {
        match (env, file) {
            (Some(var), None) => Ok(SecretRef::Env {
                var: var.clone(),
                key: format!("{name}_env"),
            }),
            (None, Some(path)) => Ok(SecretRef::File {
                path: path.clone(),
                key: format!("{name}_file"),
            }),
            (Some(_), Some(_)) => Err(HrError::Config(format!(
                "{prefix}: set {name}_env or {name}_file, not both"
            ))),
            (None, None) => Err(HrError::Config(format!(
                "{prefix}: missing {name}_env or {name}_file (the secret is read from an \
                 environment variable or a file, never written in the configuration)"
            ))),
        }
    }

    /// Reads the secret; the error names the variable or file, never the value.
    pub fn read(&self, base_dir: &std::path::Path) -> Result<String, HrError> {
        match self {
            SecretRef::Env { var, key } => koppel_connectors::settings::env_secret(var, key),
            SecretRef::File { path, key } => {
                koppel_connectors::settings::file_secret(&base_dir.join(path), key)
            }
        }
        .map_err(HrError::Config)
    }
}

/// Deserializes a connection table; an error names `prefix.<key path>`.
pub fn parse<T: DeserializeOwned>(prefix: &str, table: &toml::Table) -> Result<T, HrError> {
    serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
        if e.path().iter().next().is_none() {
            HrError::Config(format!("{prefix}: {}", e.inner()))
        } else {
            HrError::Config(format!("{prefix}.{}: {}", e.path(), e.inner()))
        }
    })
}

/// One problem `koppel validate` found in an HR connection, with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for Located {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Checks every HR source's and target's `connection` table in the configuration text,
/// reporting each problem at its line and column. `check(kind, is_source, prefix, table)`
/// is given the raw table of each HR connection to check beyond the shape (secrets …).
pub fn check_text<F>(text: &str, file: &str, check: F) -> Vec<Located>
where
    F: Fn(&str, bool, &str, &toml::Table) -> Result<(), HrError>,
{
    let Ok(doc) = toml::de::DeTable::parse(text) else {
        // The core's loader reports syntax errors.
        return Vec::new();
    };
    let mut out = Vec::new();
    for (section, is_source) in [("sources", true), ("targets", false)] {
        let Some(items) = doc.get_ref().get(section) else {
            continue;
        };
        let toml::de::DeValue::Array(items) = items.get_ref() else {
            continue;
        };
        for (index, item) in items.iter().enumerate() {
            let toml::de::DeValue::Table(entry) = item.get_ref() else {
                continue;
            };
            let kind = entry
                .get("kind")
                .and_then(|k| match k.get_ref() {
                    toml::de::DeValue::String(s) => Some(s.to_string()),
                    _ => None,
                })
                .unwrap_or_default();
            if kind != "visma" && kind != "afas" {
                continue;
            }
            let name = entry.get("name").and_then(|k| match k.get_ref() {
                toml::de::DeValue::String(s) => Some(s.to_string()),
                _ => None,
            });
            let prefix = match (is_source, name) {
                (true, _) => format!("sources[{index}].connection"),
                (false, Some(n)) => format!("targets.{n}.connection"),
                (false, None) => format!("targets[{index}].connection"),
            };
            let Some(connection) = entry.get("connection") else {
                let (line, column) = line_col(text, item.span().start);
                out.push(Located {
                    file: file.to_owned(),
                    line,
                    column,
                    message: format!(
                        "{prefix}: a {kind} {} needs a [connection] table",
                        if is_source { "source" } else { "target" }
                    ),
                });
                continue;
            };
            let span = connection.span();
            let result = (|| -> Result<(), (Option<std::ops::Range<usize>>, String)> {
                let de = toml::de::ValueDeserializer::from(connection.clone());
                let table: toml::Table = serde_path_to_error::deserialize(de).map_err(|e| {
                    let span = e.inner().span();
                    (span, format!("{prefix}: {}", e.inner().message()))
                })?;
                // The shape: deserialize again through the connector's own checks, locating
                // the key path the error names.
                check(&kind, is_source, &prefix, &table).map_err(|e| {
                    let message = e.to_string();
                    let span = locate(connection, &prefix, &message);
                    (span, message)
                })
            })();
            if let Err((at, message)) = result {
                let start = at.map_or(span.start, |s| s.start);
                let (line, column) = line_col(text, start);
                out.push(Located {
                    file: file.to_owned(),
                    line,
                    column,
                    message,
                });
            }
        }
    }
    out
}

/// The span of the deepest key of `prefix.<path>` that a message starts with.
fn locate(
    connection: &toml::Spanned<toml::de::DeValue<'_>>,
    prefix: &str,
    message: &str,
) -> Option<std::ops::Range<usize>> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('.')?;
    let path = rest.split(':').next()?.trim();
    let mut current = connection;
    let mut found = None;
    for key in path.split('.') {
        let toml::de::DeValue::Table(t) = current.get_ref() else {
            break;
        };
        let Some((k, v)) = t.iter().find(|(k, _)| k.get_ref().as_ref() == key) else {
            break;
        };
        found = Some(k.span());
        current = v;
    }
    found
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct S {
        base_url: String,
        #[serde(default)]
        http: Option<HttpConfig>,
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let text = "version = 1\n[[sources]]\nkind = \"csv\"\ndir = \"x\"\n\n[[sources]]\nkind = \"visma\"\n[sources.connection]\nbase_url = \"u\"\n[sources.connection.http]\ntimeout_secs = 3\n";
        let errors = check_text(text, "k.toml", |_, _, prefix, t| {
            parse::<S>(prefix, t).map(drop)
        });
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        assert_eq!((e.line, e.column), (11, 1), "{e}");
        assert!(
            e.message.starts_with("sources[1].connection.http"),
            "{}",
            e.message
        );
        assert!(e.message.contains("timeout_secs"), "{}", e.message);
        assert!(e.to_string().starts_with("k.toml:11:1: "), "{e}");

        let missing = check_text(
            "[[targets]]\nname = \"hr\"\nkind = \"afas\"\n",
            "k.toml",
            |_, _, _, _| Ok(()),
        );
        assert_eq!(missing.len(), 1);
        assert!(missing[0].message.contains("targets.hr.connection"));
    }

    #[test]
    fn secrets_need_exactly_one_reference() {
        let e = SecretRef::from_pair("token", &None, &None, "p").unwrap_err();
        assert!(e.to_string().contains("token_env or token_file"), "{e}");
        let e = SecretRef::from_pair("token", &Some("A".into()), &Some(PathBuf::from("f")), "p")
            .unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
        let r =
            SecretRef::from_pair("token", &Some("KOPPEL_HR_UNSET_X".into()), &None, "p").unwrap();
        let e = r.read(std::path::Path::new(".")).unwrap_err();
        assert!(
            e.to_string().contains("KOPPEL_HR_UNSET_X (token_env)"),
            "{e}"
        );
    }
}
