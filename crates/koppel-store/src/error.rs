//! What can go wrong in the store, each with a message that says what to do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open store at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },

    #[error(
        "store at {path} has schema version {found}, this koppel knows up to {known}: \
         it was written by a newer koppel; upgrade koppel or use a copy of the store from \
         before the upgrade"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },

    #[error("cannot bring the store at {path} up to date: {source}")]
    Migrate {
        path: PathBuf,
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    #[error("store: {doing}: {source}{}", busy_hint(.source))]
    Sql {
        doing: &'static str,
        #[source]
        source: sqlx::Error,
    },

    #[error("store data is damaged ({what}); restore the store from a backup")]
    Corrupt { what: String },

    #[error("journal of plan {plan_id}: {what}")]
    Journal { plan_id: String, what: String },

    #[error("no plan with id {0}")]
    NoPlan(String),

    #[error("cannot encode {what}: {message}")]
    Encode { what: &'static str, message: String },
}

fn busy_hint(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::Database(d)
            if d.message().contains("locked") || d.message().contains("busy") =>
        {
            " (another koppel process holds the store; wait for it to finish)"
        }
        _ => "",
    }
}

/// Adds what the store was doing to a sqlx error.
pub(crate) trait Doing<T> {
    fn doing(self, doing: &'static str) -> Result<T, StoreError>;
}

impl<T> Doing<T> for Result<T, sqlx::Error> {
    fn doing(self, doing: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sql { doing, source })
    }
}

pub(crate) fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt { what: what.into() }
}
