//! The store's errors. They carry the cause for operators' logs; the web front and the
//! milter show callers only that the store failed, never its details.

use std::path::PathBuf;

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported store URL {0:?}: expected sqlite:PATH (for example sqlite:///var/lib/optout-milter/consent.db) or postgres://USER@HOST/DATABASE"
    )]
    UnsupportedUrl(String),
    #[error(
        "store URL {0:?} names no file, so nothing recorded would survive a restart: give a path, as in sqlite:///var/lib/optout-milter/consent.db"
    )]
    NotDurable(String),
    #[error(
        "there is no store at {0}: create it with `optout-milter init` (or `serve --init`), or correct [store] url"
    )]
    Missing(PathBuf),
    #[error(
        "the database {0} has no consent tables: create them with `optout-milter init` (or `serve --init`), or correct [store] url"
    )]
    MissingSchema(String),
    #[error("cannot create the store at {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the store file {0} was deleted or replaced while in use; nothing more is acknowledged (restart once the file is back, or create a new store with `optout-milter init`)"
    )]
    Lost(PathBuf),
    #[error("cannot open the store at {url}")]
    Open {
        url: String,
        #[source]
        source: Backend,
    },
    #[error("cannot bring the store's schema up to date")]
    Migrate(#[source] Backend),
    #[error(
        "the store's schema is at version {have} and this optout-milter needs {need}, but cannot bring it up to date: on a shared PostgreSQL the tables' owner runs `optout-milter --store postgres://OWNER@HOST/DATABASE init` (deploy/postgresql/roles.sql), then the nodes start"
    )]
    SchemaBehind {
        have: i64,
        need: i64,
        #[source]
        source: Backend,
    },
    #[error("the store failed")]
    Query(#[source] Backend),
    #[error("the store's writer has stopped")]
    WriterGone,
    #[error("the store holds a value this version does not understand: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether only a person can mend this (a wrong URL, a store that is not there or has
    /// lost its file, a schema to bring forward), as opposed to a database that may answer
    /// again: a server down, a connection refused, a disk full.
    pub fn needs_an_operator(&self) -> bool {
        match self {
            StoreError::UnsupportedUrl(_)
            | StoreError::NotDurable(_)
            | StoreError::Missing(_)
            | StoreError::MissingSchema(_)
            | StoreError::SchemaBehind { .. }
            | StoreError::Lost(_)
            | StoreError::Corrupt(_) => true,
            StoreError::Create { .. }
            | StoreError::Open { .. }
            | StoreError::Migrate(_)
            | StoreError::Query(_)
            | StoreError::WriterGone => false,
        }
    }
}

/// What the database library reported: kept whole for the cause chain in logs, but of no
/// type a caller could depend on, so that a backend can change its library alone.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Backend(Box<dyn std::error::Error + Send + Sync>);

impl From<sqlx::Error> for Backend {
    fn from(error: sqlx::Error) -> Self {
        Self(Box::new(error))
    }
}

/// One failure answered to several callers (a query that served a batch of them).
impl From<std::sync::Arc<sqlx::Error>> for Backend {
    fn from(error: std::sync::Arc<sqlx::Error>) -> Self {
        Self(Box::new(error))
    }
}

impl From<sqlx::migrate::MigrateError> for Backend {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Self(Box::new(error))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Query(error.into())
    }
}
