//! What can go wrong in notifications: a bad `[notifications]` section (every problem with
//! its key path), the store, or the SMTP server. None of them ever carries a secret.

use std::fmt;

use koppel_store::StoreError;

/// One problem in `[notifications]`, at a key path such as `notifications.joiner.body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The key path, `["notifications", "joiner", "body"]`; array items by index.
    pub path: Vec<String>,
    pub message: String,
}

impl ConfigIssue {
    pub fn new(path: Vec<String>, message: impl Into<String>) -> Self {
        Self {
            path,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.join("."), self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Config(Vec<ConfigIssue>),

    #[error(transparent)]
    Store(#[from] StoreError),

    /// The SMTP settings cannot be turned into a connection (CA file, password reference).
    #[error("notifications.smtp: {0}")]
    Smtp(String),
}
