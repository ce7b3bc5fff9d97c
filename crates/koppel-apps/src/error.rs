//! What can go wrong talking to an application's API, sorted so an operator knows what to
//! fix: credentials, reachability, configuration, secrets, or the refusal of one entry.

use koppel_connectors::target::TargetError;

/// An application target's error. Messages never contain a token or secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppsError {
    /// The token endpoint or the API refused the credentials.
    #[error("{url} refused the credentials ({status}): {detail}")]
    Unauthorized {
        url: String,
        status: u16,
        detail: String,
    },
    /// No connection, timeouts, or 429/5xx through every retry.
    #[error("{url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    /// The configuration is wrong.
    #[error("{message}")]
    Config { message: String },
    /// A secret's environment variable is unset or its file unreadable.
    #[error("credential not found: {message}")]
    SecretMissing { message: String },
    /// The API refused one request.
    #[error("{method} {path} gave {status} {code}: {message}")]
    Refused {
        method: String,
        path: String,
        status: u16,
        code: String,
        message: String,
    },
    /// The API answered something it does not document.
    #[error("protocol error: {message}")]
    Protocol { message: String },
}

impl AppsError {
    /// As a target error of target `target`.
    pub fn into_target_error(self, target: &str) -> TargetError {
        let target = target.to_owned();
        match self {
            // Nothing about the entry: the run stops for this target and resumes later.
            e @ (AppsError::Unreachable { .. }
            | AppsError::Unauthorized { .. }
            | AppsError::SecretMissing { .. }) => TargetError::Unavailable {
                target,
                message: e.to_string(),
            },
            e @ AppsError::Config { .. } => TargetError::Config {
                target,
                message: e.to_string(),
            },
            e @ (AppsError::Refused { .. } | AppsError::Protocol { .. }) => TargetError::Rejected {
                target,
                message: e.to_string(),
            },
        }
    }
}
