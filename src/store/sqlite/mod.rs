//! The embedded default backend: one SQLite file in WAL mode.
//!
//! `synchronous = FULL` makes every commit reach the disk before it returns, so an opt-out
//! that was acknowledged survives a power cut. Reads go through a small pool; every write
//! goes through the [`writer`] task, which commits concurrent writes together (group
//! commit): one disk flush for many opt-outs, each still answered only after its commit.
//!
//! The store never creates a database unless asked to ([`Create::IfMissing`]: `init`,
//! `serve --init`): a missing file where one is expected means it was lost, and an empty
//! new one would silently let mail through to everyone who opted out. [`file`] watches
//! that the file in use stays the one at the path.

mod file;
mod writer;

use super::{
    ConsentStore, Create, Feed, FeedPosition, Lookups, RecordKey, Recorded, Records, StoreError,
    StoreFuture, cursor, from_millis, history_value, parse, redact,
};
use crate::consent::{Address, Change, Channel, ConsentRecord, ConsentValue, HistoryEntry, Scope};
use file::DbFile;
use sqlx::{
    Row,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
        SqliteSynchronous,
    },
};
use std::{str::FromStr, sync::Arc, time::Duration};

/// The SQLite store.
pub struct SqliteStore {
    pool: SqlitePool,
    writer: writer::Writer,
    /// The WAL index (`-shm`) file, whose header changes with every commit.
    shm: ShmHeader,
    file: Arc<DbFile>,
}

const RECORD_COLUMNS: &str = "address, channel, scope, value, source, updated_at, evidence";

impl SqliteStore {
    /// Opens and migrates the database at `url` (`sqlite:PATH`), creating it first only
    /// when `create` says so.
    pub async fn open(url: &str, create: Create) -> Result<Self, StoreError> {
        let open_error = |source: sqlx::Error| StoreError::Open {
            url: redact(url),
            source: source.into(),
        };
        let options = SqliteConnectOptions::from_str(url)
            .map_err(open_error)?
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let path = durable_path(url, &options)?;
        if create == Create::IfMissing {
            DbFile::create(&path)?;
        }
        let file = Arc::new(DbFile::identify(&path)?);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            // A ping before every query is one more trip to the connection's thread; a
            // local file does not drop connections.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(open_error)?;
        let mut migrator = sqlx::migrate!("./migrations/sqlite");
        // A store a newer version migrated (before a downgrade) keeps working: migrations
        // only add (see [`super::schema`]).
        migrator.set_ignore_missing(true);
        let applied: Option<i64> = sqlx::query_scalar(super::schema::APPLIED)
            .fetch_one(&pool)
            .await
            .unwrap_or(None);
        super::schema::warn_if_newer(
            applied,
            migrator.iter().map(|m| m.version).max().unwrap_or(0),
        );
        migrator
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(e.into()))?;
        let writer = writer::Writer::spawn(options, file.clone());
        let mut shm = path.into_os_string();
        shm.push("-shm");
        Ok(Self {
            pool,
            writer,
            shm: ShmHeader::new(shm.into()),
            file,
        })
    }
}

/// The file `options` (from `url`) name; an error for a store that keeps nothing.
fn durable_path(
    url: &str,
    options: &SqliteConnectOptions,
) -> Result<std::path::PathBuf, StoreError> {
    let path = options.get_filename().to_owned();
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    if in_memory || path.as_os_str().is_empty() {
        return Err(StoreError::NotDurable(redact(url)));
    }
    Ok(path)
}

/// Checks `url` as [`SqliteStore::open`] would, without opening it: it names a file,
/// and the file exists.
pub fn check(url: &str) -> Result<(), StoreError> {
    let options = SqliteConnectOptions::from_str(url).map_err(|source| StoreError::Open {
        url: redact(url),
        source: source.into(),
    })?;
    DbFile::identify(&durable_path(url, &options)?).map(drop)
}

impl Lookups for SqliteStore {
    fn scoped_values<'a>(
        &'a self,
        address: &'a Address,
        channel: Channel,
        list: &'a Scope,
    ) -> StoreFuture<'a, Vec<(Scope, ConsentValue)>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT scope, value FROM consent
                 WHERE address = ? AND channel = ? AND scope IN (?, '*')",
            )
            .bind(address.as_str())
            .bind(channel.as_str())
            .bind(list.as_str())
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|row| Ok((parse::<Scope>(row.get("scope"))?, parse(row.get("value"))?)))
                .collect()
        })
    }
}

impl Records for SqliteStore {
    fn record<'a>(&'a self, changes: &'a [Change]) -> StoreFuture<'a, Vec<Recorded>> {
        Box::pin(self.writer.record(changes.to_vec()))
    }

    fn record_once<'a>(
        &'a self,
        id: &'a str,
        changes: &'a [Change],
    ) -> StoreFuture<'a, Option<Vec<Recorded>>> {
        Box::pin(self.writer.record_once(id.to_owned(), changes.to_vec()))
    }

    fn restore<'a>(&'a self, changes: &'a [Change], emptied: &'a [Change]) -> StoreFuture<'a, ()> {
        Box::pin(self.writer.restore(changes.to_vec(), emptied.to_vec()))
    }

    fn records<'a>(&'a self, address: &'a Address) -> StoreFuture<'a, Vec<ConsentRecord>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT {RECORD_COLUMNS} FROM consent WHERE address = ? ORDER BY channel, scope"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(address.as_str())
                .fetch_all(&self.pool)
                .await?;
            rows.iter().map(record_from_row).collect()
        })
    }

    fn page<'a>(
        &'a self,
        after: Option<&'a RecordKey>,
        limit: u32,
    ) -> StoreFuture<'a, Vec<ConsentRecord>> {
        Box::pin(async move {
            let (address, channel, scope) = cursor(after);
            let sql = format!(
                "SELECT {RECORD_COLUMNS} FROM consent
                 WHERE (address, channel, scope) > (?, ?, ?)
                 ORDER BY address, channel, scope LIMIT ?"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(address)
                .bind(channel)
                .bind(scope)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
            rows.iter().map(record_from_row).collect()
        })
    }

    fn history<'a>(&'a self, address: &'a Address) -> StoreFuture<'a, Vec<HistoryEntry>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT id, address, channel, scope, value, source, recorded_at, evidence
                 FROM consent_history WHERE address = ? ORDER BY id",
            )
            .bind(address.as_str())
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(history_from_row).collect()
        })
    }

    fn subject_id<'a>(&'a self, address: &'a Address, scope: &'a Scope) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            const SELECT: &str = "SELECT id FROM token_subject WHERE address = ? AND scope = ?";
            let existing: Option<i64> = sqlx::query_scalar(SELECT)
                .bind(address.as_str())
                .bind(scope.as_str())
                .fetch_optional(&self.pool)
                .await?;
            let id = match existing {
                Some(id) => id,
                None => self.writer.subject(address.clone(), scope.clone()).await?,
            };
            u64::try_from(id).map_err(|_| StoreError::Corrupt(format!("negative subject id {id}")))
        })
    }

    fn erase<'a>(&'a self, address: &'a Address, suppression: &'a Change) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            self.writer
                .erase(address.clone(), suppression.clone())
                .await
        })
    }

    fn subject(&self, id: u64) -> StoreFuture<'_, Option<(Address, Scope)>> {
        Box::pin(async move {
            let Ok(id) = i64::try_from(id) else {
                return Ok(None);
            };
            let row = sqlx::query("SELECT address, scope FROM token_subject WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            row.map(|row| {
                Ok((
                    Address::from_stored(row.get("address")),
                    parse::<Scope>(row.get("scope"))?,
                ))
            })
            .transpose()
        })
    }

    fn values<'a>(
        &'a self,
        after: Option<&'a RecordKey>,
        limit: u32,
    ) -> StoreFuture<'a, Vec<(RecordKey, ConsentValue)>> {
        Box::pin(async move {
            let (address, channel, scope) = cursor(after);
            let rows = sqlx::query(
                "SELECT address, channel, scope, value FROM consent
                 WHERE (address, channel, scope) > (?, ?, ?)
                 ORDER BY address, channel, scope LIMIT ?",
            )
            .bind(address)
            .bind(channel)
            .bind(scope)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(value_from_row).collect()
        })
    }
}

impl Feed for SqliteStore {
    fn changes_since(
        &self,
        after: FeedPosition,
        limit: u32,
    ) -> StoreFuture<'_, (Vec<(RecordKey, ConsentValue)>, FeedPosition)> {
        Box::pin(async move {
            // One writer commits in id order, so an id read is never followed by a lower one.
            let rows = sqlx::query(
                "SELECT id, address, channel, scope, value FROM consent_history
                 WHERE id > ? ORDER BY id LIMIT ?",
            )
            .bind(after.row)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            let last = rows.last().map_or(after.row, |row| row.get("id"));
            Ok((
                rows.iter().map(value_from_row).collect::<Result<_, _>>()?,
                FeedPosition {
                    commit: 0,
                    row: last,
                },
            ))
        })
    }

    fn history_since(
        &self,
        after: FeedPosition,
        limit: u32,
    ) -> StoreFuture<'_, (Vec<HistoryEntry>, FeedPosition)> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT id, address, channel, scope, value, source, recorded_at, evidence
                 FROM consent_history WHERE id > ? ORDER BY id LIMIT ?",
            )
            .bind(after.row)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            let entries: Vec<HistoryEntry> = rows
                .iter()
                .map(history_from_row)
                .collect::<Result<_, _>>()?;
            let next = FeedPosition {
                commit: 0,
                row: entries.last().map_or(after.row, |e| e.id),
            };
            Ok((entries, next))
        })
    }

    fn delivered<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<FeedPosition>> {
        Box::pin(async move {
            let row: Option<(i64, i64)> =
                sqlx::query_as("SELECT feed_commit, feed_row FROM webhook_cursor WHERE name = ?")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
            Ok(row.map(|(commit, row)| FeedPosition { commit, row }))
        })
    }

    fn set_delivered<'a>(&'a self, name: &'a str, position: FeedPosition) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.file.check()?;
            sqlx::query(
                "INSERT INTO webhook_cursor (name, feed_commit, feed_row, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET
                   feed_commit = excluded.feed_commit, feed_row = excluded.feed_row,
                   updated_at = excluded.updated_at
                 WHERE (excluded.feed_commit, excluded.feed_row)
                       > (webhook_cursor.feed_commit, webhook_cursor.feed_row)",
            )
            .bind(name)
            .bind(position.commit)
            .bind(position.row)
            .bind(super::to_millis(std::time::SystemTime::now()))
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn feed_position(&self) -> StoreFuture<'_, FeedPosition> {
        Box::pin(async move {
            let id: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM consent_history")
                .fetch_one(&self.pool)
                .await?;
            Ok(FeedPosition {
                commit: 0,
                row: id.unwrap_or(0),
            })
        })
    }

    fn change_token(&self) -> Option<u64> {
        self.shm.fingerprint()
    }
}

impl ConsentStore for SqliteStore {
    fn check(&self) -> Result<(), StoreError> {
        self.file.check()
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.file.check()?;
            sqlx::query("SELECT 1 FROM consent LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
            Ok(())
        })
    }
}

/// The header of SQLite's WAL index, read from the `-shm` file. Every commit, by any
/// process, changes its change counter and last valid frame (SQLite's "WAL-index header",
/// documented in its file format description); a read of 48 bytes tells whether another
/// process wrote, without a query.
struct ShmHeader {
    path: std::path::PathBuf,
    file: std::sync::OnceLock<std::fs::File>,
}

impl ShmHeader {
    fn new(path: std::path::PathBuf) -> Self {
        Self {
            path,
            file: std::sync::OnceLock::new(),
        }
    }

    fn fingerprint(&self) -> Option<u64> {
        use std::{hash::Hasher, os::unix::fs::FileExt};
        let file = match self.file.get() {
            Some(file) => file,
            None => {
                let file = std::fs::File::open(&self.path).ok()?;
                self.file.get_or_init(|| file)
            }
        };
        let mut header = [0u8; 48];
        file.read_exact_at(&mut header, 0).ok()?;
        let mut hasher = std::hash::DefaultHasher::new();
        hasher.write(&header);
        Some(hasher.finish())
    }
}

fn value_from_row(row: &SqliteRow) -> Result<(RecordKey, ConsentValue), StoreError> {
    let key = RecordKey {
        address: row.get("address"),
        channel: parse(row.get("channel"))?,
        scope: parse::<Scope>(row.get("scope"))?,
    };
    Ok((key, history_value(row.get("value"))?))
}

fn history_from_row(row: &SqliteRow) -> Result<HistoryEntry, StoreError> {
    Ok(HistoryEntry {
        id: row.get("id"),
        change: Change {
            address: Address::from_stored(row.get("address")),
            channel: parse(row.get("channel"))?,
            scope: parse::<Scope>(row.get("scope"))?,
            value: history_value(row.get("value"))?,
            source: parse(row.get("source"))?,
            at: from_millis(row.get("recorded_at")),
            evidence: row.get("evidence"),
        },
        emptied: row.get::<&str, _>("value").is_empty(),
    })
}

fn record_from_row(row: &SqliteRow) -> Result<ConsentRecord, StoreError> {
    Ok(ConsentRecord {
        address: Address::from_stored(row.get("address")),
        channel: parse(row.get("channel"))?,
        scope: parse::<Scope>(row.get("scope"))?,
        value: parse(row.get("value"))?,
        source: parse(row.get("source"))?,
        updated_at: from_millis(row.get("updated_at")),
        evidence: row.get("evidence"),
    })
}
