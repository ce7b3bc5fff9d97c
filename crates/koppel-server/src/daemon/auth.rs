//! API tokens: read once at start from their references, kept as SHA-256 digests, compared
//! in constant time; each has a scope. A call without a valid token gets 401, a token
//! without the scope 403, and neither says anything about which tokens exist.

use axum::http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::runner::ApiError;
use crate::ServeError;
use crate::settings::{ApiConfig, TokenScope};

/// The accepted tokens.
pub struct ApiAuth {
    tokens: Vec<Accepted>,
}

struct Accepted {
    digest: [u8; 32],
    scope: TokenScope,
    /// The token's reference (`token_env NAME` / `token_file PATH`), never its value: the
    /// audit log says which credential asked for a run.
    label: String,
}

/// Who called: the token's scope and its reference.
#[derive(Debug, Clone)]
pub struct Caller {
    pub scope: TokenScope,
    pub label: String,
}

impl ApiAuth {
    /// Reads every token; an unreadable or empty one fails the start, naming its reference.
    pub fn new(config: &ApiConfig) -> Result<ApiAuth, ServeError> {
        let mut tokens = Vec::new();
        for (i, t) in config.tokens.iter().enumerate() {
            let label = match (&t.token_env, &t.token_file) {
                (Some(v), _) => format!("token_env {v}"),
                (_, Some(f)) => format!("token_file {}", f.display()),
                _ => format!("tokens[{i}]"),
            };
            let value = t.reference().read()?;
            let value = value.trim();
            if value.is_empty() {
                return Err(ServeError::Config(format!(
                    "[serve.api] tokens[{i}] ({label}) is empty"
                )));
            }
            tokens.push(Accepted {
                digest: Sha256::digest(value.as_bytes()).into(),
                scope: t.scope,
                label,
            });
        }
        Ok(ApiAuth { tokens })
    }

    /// The caller of a request with these headers, if its bearer token is accepted. Every
    /// token is compared, so the time does not tell which (if any) matched.
    fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found: Option<&Accepted> = None;
        for t in &self.tokens {
            if bool::from(t.digest.ct_eq(&digest)) && found.is_none_or(|f| t.scope > f.scope) {
                found = Some(t);
            }
        }
        found.map(|t| Caller {
            scope: t.scope,
            label: t.label.clone(),
        })
    }

    /// The caller, when their token allows `needed`; else 401 or 403.
    pub fn authorize(&self, headers: &HeaderMap, needed: TokenScope) -> Result<Caller, ApiError> {
        let Some(caller) = self.caller(headers) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required",
            ));
        };
        if !caller.scope.allows(needed) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("this call needs a token with scope {}", needed.as_str()),
            ));
        }
        Ok(caller)
    }
}
