//! The store's errors. They carry the cause for operators' logs; the web front and the
//! milter show callers only that the store failed, never its details.

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported store URL {0:?}: expected sqlite:PATH (for example sqlite:///var/lib/optout-milter/consent.db)"
    )]
    UnsupportedUrl(String),
    #[error("cannot open the store at {url}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot bring the store's schema up to date")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("the store failed")]
    Query(#[from] sqlx::Error),
    #[error("the store holds a value this version does not understand: {0}")]
    Corrupt(String),
}
