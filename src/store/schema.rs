//! Schema versions across a fleet. The migrations in `migrations/` only add (tables,
//! columns with defaults, functions, indexes), never rename, drop or change what an
//! older version reads or writes. So a version may open a store that a newer one has
//! migrated: during a rolling upgrade of several nodes on one PostgreSQL (the owner's
//! `init` brings the schema forward before the first node restarts), or after a package
//! downgrade. It warns, and otherwise works as before; what the newer version added it
//! leaves alone. A migration that cannot keep that promise must make older versions fail
//! on open (for example by renaming a table they use), never let them run half-right.

use tracing::warn;

/// The highest migration a store records as applied (NULL before the first one); the same
/// statement on both backends.
pub(super) const APPLIED: &str = "SELECT max(version) FROM _sqlx_migrations WHERE success";

/// Warns when the store's schema (`applied`, the highest migration it records) is newer
/// than this build's highest migration, `known`.
pub(super) fn warn_if_newer(applied: Option<i64>, known: i64) {
    if let Some(applied) = applied.filter(|&applied| applied > known) {
        warn!(
            schema = applied,
            known,
            "the store's schema is newer than this optout-milter knows; it works on it, but upgrade this node"
        );
    }
}
