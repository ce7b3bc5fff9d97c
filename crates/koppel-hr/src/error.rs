//! What can go wrong reading or writing an HR API, sorted by what the operator must fix:
//! settings, credentials, a permission (scope, GetConnector, field), reachability, or data.

use koppel_connectors::source::{RowError, SourceError};
use koppel_connectors::target::TargetError;

/// An HR connector's error. Messages never contain a token, secret or the token's XML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HrError {
    /// A setting is wrong or missing; the message names the key path.
    #[error("{0}")]
    Config(String),
    /// The credentials were refused: a bad client secret, client id, tenant id or AFAS token.
    #[error("{service} refused the credentials: {message}")]
    Credentials { service: String, message: String },
    /// The API client lacks a permission the operation needs (Visma: an API scope).
    #[error(
        "{service}: the API client lacks the scope {scope}, needed to {needed_for}; ask the \
         Visma administrator to activate it for this client in the Visma developer portal"
    )]
    MissingScope {
        service: String,
        scope: String,
        needed_for: String,
    },
    /// An AFAS GetConnector or UpdateConnector that the app connector does not offer.
    #[error(
        "{service}: the {kind} {name:?} does not exist or is not in the app connector of this \
         token ({setting}); the app connector offers: {available}. Add it to the app connector \
         in Profit or correct the setting"
    )]
    MissingConnector {
        service: String,
        kind: &'static str,
        name: String,
        setting: String,
        available: String,
    },
    /// A field the mapping reads that the tenant does not deliver.
    #[error(
        "{service}: {endpoint} has no field {field:?}, which the mapping reads ({setting}); add \
         the field to {endpoint} or map the setting to a field it has{known}"
    )]
    MissingField {
        service: String,
        endpoint: String,
        field: String,
        setting: String,
        /// ` (fields: …)` or empty.
        known: String,
    },
    /// No answer, timeouts, 5xx through every retry, or rate limiting past the wait budget.
    #[error("{service} is unreachable: {message}")]
    Unreachable { service: String, message: String },
    /// The API refused one request (a 4xx other than 401/403/429, or an AFAS 500 message).
    #[error("{service}: {method} {path} answered {status}: {detail}")]
    Refused {
        service: String,
        method: String,
        path: String,
        status: u16,
        detail: String,
    },
    /// The API answered something this connector does not understand.
    #[error("{service}: unexpected answer from {path}: {message}")]
    Protocol {
        service: String,
        path: String,
        message: String,
    },
    /// Records that cannot be mapped; nothing was loaded.
    #[error("{} bad records", .0.len())]
    Rows(Vec<RowError>),
}

impl HrError {
    /// As the error of source `name`.
    pub fn into_source_error(self, name: &str) -> SourceError {
        match self {
            HrError::Rows(errors) => SourceError::Rows { errors, omitted: 0 },
            HrError::Config(m) => SourceError::Config(m),
            e => SourceError::Api {
                source_name: name.to_owned(),
                message: e.to_string(),
            },
        }
    }

    /// As the error of target `target`.
    pub fn into_target_error(self, target: &str) -> TargetError {
        let target = target.to_owned();
        match self {
            // Nothing about the entry itself: the run stops for this target and the next run
            // resumes once the credentials, permission or service are back.
            e @ (HrError::Unreachable { .. }
            | HrError::Credentials { .. }
            | HrError::MissingScope { .. }
            | HrError::MissingConnector { .. }) => TargetError::Unavailable {
                target,
                message: e.to_string(),
            },
            e @ (HrError::Config(_) | HrError::MissingField { .. }) => TargetError::Config {
                target,
                message: e.to_string(),
            },
            e @ (HrError::Refused { .. } | HrError::Protocol { .. } | HrError::Rows(_)) => {
                TargetError::Rejected {
                    target,
                    message: e.to_string(),
                }
            }
        }
    }
}
