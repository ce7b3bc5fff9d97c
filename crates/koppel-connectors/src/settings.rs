//! What every connector's `[targets.<name>.connection]` table needs: deserializing it with
//! errors that name the key path, and reading secrets from the env var or file it points to.
//!
//! Secrets are only ever referenced in configuration (`*_env`, `*_file`); the errors here
//! name the variable or the file and never carry the value.

use std::path::Path;

use serde::de::DeserializeOwned;

/// Deserializes target `target`'s connection table; an error names the key path,
/// `targets.<target>.connection.<key>`.
pub fn connection<T: DeserializeOwned>(target: &str, table: &toml::Table) -> Result<T, String> {
    let prefix = format!("targets.{target}.connection");
    serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
        if e.path().iter().next().is_none() {
            format!("{prefix}: {}", e.inner())
        } else {
            format!("{prefix}.{}: {}", e.path(), e.inner())
        }
    })
}

/// The secret in environment variable `var`, which configuration key `key` named.
pub fn env_secret(var: &str, key: &str) -> Result<String, String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(v),
        Ok(_) => Err(format!("the environment variable {var} ({key}) is empty")),
        Err(_) => Err(format!("the environment variable {var} ({key}) is not set")),
    }
}

/// The secret in file `path` (trailing line breaks dropped), which key `key` named.
pub fn file_secret(path: &Path, key: &str) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(v) => {
            let v = v.trim_end_matches(['\r', '\n']);
            if v.is_empty() {
                Err(format!("the file {} ({key}) is empty", path.display()))
            } else {
                Ok(v.to_owned())
            }
        }
        Err(e) => Err(format!(
            "the file {} ({key}) cannot be read: {}",
            path.display(),
            e.kind()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Settings {
        url: String,
        #[serde(default)]
        inner: Inner,
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        size: u32,
    }

    #[test]
    fn errors_name_the_key_path() {
        let table: toml::Table = toml::from_str("url = 'x'\n[inner]\nsize = 'big'").unwrap();
        let e = connection::<Settings>("ad", &table).unwrap_err();
        assert!(e.starts_with("targets.ad.connection.inner.size: "), "{e}");
        let table: toml::Table = toml::from_str("url = 'x'\nsurl = 1").unwrap();
        let e = connection::<Settings>("ad", &table).unwrap_err();
        assert!(e.contains("targets.ad.connection"), "{e}");
        assert!(e.contains("surl"), "{e}");
    }

    #[test]
    fn secrets_come_from_files_and_errors_never_show_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cr3t-value\n").unwrap();
        assert_eq!(file_secret(&file, "password_file").unwrap(), "s3cr3t-value");
        std::fs::write(&file, "\n").unwrap();
        let e = file_secret(&file, "password_file").unwrap_err();
        assert!(e.contains("is empty") && e.contains("password_file"), "{e}");
        let e = file_secret(&dir.path().join("missing"), "token_file").unwrap_err();
        assert!(e.contains("missing") && e.contains("token_file"), "{e}");
        let e = env_secret("KOPPEL_TEST_SURELY_UNSET_VARIABLE", "token_env").unwrap_err();
        assert!(
            e.contains("KOPPEL_TEST_SURELY_UNSET_VARIABLE (token_env) is not set"),
            "{e}"
        );
    }
}
