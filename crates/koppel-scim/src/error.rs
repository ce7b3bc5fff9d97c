//! What can go wrong talking to a SCIM service, sorted so an operator knows what to fix:
//! credentials, reachability, configuration, secrets, or the service's refusal of one entry.

use koppel_connectors::target::TargetError;

/// A SCIM target's error. Messages never contain a token or secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScimError {
    /// The service (or the token endpoint) refused the credentials: 401, or `invalid_client`.
    #[error("{url} refused the credentials ({status}): check the token or client secret{detail}")]
    Unauthorized {
        url: String,
        status: u16,
        detail: String,
    },
    /// No connection could be made, requests kept timing out, or the service kept answering
    /// 429/5xx through every retry.
    #[error("{url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    /// The configuration is wrong.
    #[error("{message}")]
    Config { message: String },
    /// The token's (or client secret's) environment variable is unset or its file unreadable.
    #[error("SCIM credential not found: {message}")]
    SecretMissing { message: String },
    /// The service refused one request (4xx, or a 500 that persisted).
    #[error("{method} {path} gave {status}{scim_type}: {detail}")]
    Refused {
        method: String,
        path: String,
        status: u16,
        /// ` (scimType)` or empty.
        scim_type: String,
        detail: String,
    },
    /// The service answered something that is not SCIM.
    #[error("SCIM protocol error: {message}")]
    Protocol { message: String },
}

impl ScimError {
    /// As a target error of target `target`.
    pub fn into_target_error(self, target: &str) -> TargetError {
        let target = target.to_owned();
        match self {
            // Nothing about the entry: the run stops for this target and resumes later.
            e @ (ScimError::Unreachable { .. }
            | ScimError::Unauthorized { .. }
            | ScimError::SecretMissing { .. }) => TargetError::Unavailable {
                target,
                message: e.to_string(),
            },
            e @ ScimError::Config { .. } => TargetError::Config {
                target,
                message: e.to_string(),
            },
            e @ (ScimError::Refused { .. } | ScimError::Protocol { .. }) => TargetError::Rejected {
                target,
                message: e.to_string(),
            },
        }
    }
}

impl From<ScimError> for TargetError {
    /// Without the target's name (the `ScimTarget` methods fill it in).
    fn from(e: ScimError) -> TargetError {
        e.into_target_error("scim")
    }
}
