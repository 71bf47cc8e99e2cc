//! The shared backend: one PostgreSQL database for several MTA nodes.
//!
//! Each node keeps its own consent index in memory and follows the others' writes through
//! the change feed ([`ConsentStore::changes_since`]). History ids come from a sequence,
//! and PostgreSQL commits transactions in any order, not in id order: a follower that read
//! `id > last` would skip a row whose transaction commits after a higher id was read. So
//! the feed is read by transaction instead: a row is delivered only once its transaction
//! and every older one are finished, that is once its `xid` is below the horizon
//! `pg_snapshot_xmin(pg_current_snapshot())`, after which nothing can be added below it.
//! The position is (horizon, row id) and each row read carries the key's value as it is
//! now (the feed says which keys changed; the current state says to what), so rows read
//! in any order still leave the newest value.
//!
//! Writes commit in groups ([`writer`]) with `synchronous_commit = on` whatever the
//! server's default, so an acknowledged opt-out is on the primary's disk (and, when the
//! server is configured for it, on a synchronous standby's). [`wake`] turns the
//! notification each commit sends into the index's change token.

mod subjects;
mod wake;
mod writer;

use super::{
    ConsentStore, Create, Feed, FeedPosition, Lookups, RecordKey, Recorded, Records, StoreError,
    StoreFuture, cursor, from_millis, history_value, parse, redact, to_millis,
};
use crate::consent::{Address, Change, Channel, ConsentRecord, ConsentValue, HistoryEntry, Scope};
use sqlx::{
    Row,
    postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow},
};
use std::{str::FromStr, sync::Arc, time::Duration};

/// Connections each node opens for reads and writes (the listener takes one more): the
/// writer's and the subject reader's tasks hold at most 8 of them, which leaves two for
/// the follower and the other reads under a flood of opt-outs.
pub const POOL_SIZE: u32 = 10;
/// How long a query waits for a free connection (or for the server to accept one).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection idle longer than this is pinged before it is handed out. The pool pings
/// every connection as it comes back (sqlx does, always), so one that was returned a
/// moment ago was just checked: pinging it again on every acquire, sqlx's default, added
/// a round trip (a server process woken once more) to every query.
const RECHECK_IDLE: Duration = Duration::from_secs(1);

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: PgPool,
    writer: writer::Writer,
    subjects: subjects::Subjects,
    wake: Arc<wake::Wake>,
}

const RECORD_COLUMNS: &str = "address, channel, scope, value, source, updated_at, evidence";

impl PostgresStore {
    /// Connects to `url` (`postgres://…`) and brings the schema up to date. The database
    /// itself is created by its administrator; the tables by `init` (or `serve --init`),
    /// that is `create`: without it a database without them is refused, as a missing
    /// SQLite file is.
    pub async fn open(url: &str, create: Create) -> Result<Self, StoreError> {
        let options = connect_options(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .min_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= RECHECK_IDLE {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options.clone())
            .await;
        let pool = match pool {
            Ok(pool) => pool,
            Err(error) => {
                return Err(StoreError::Open {
                    url: redact(url),
                    source: why_not(error, &options).await.into(),
                });
            }
        };
        if create == Create::Never {
            let exists: bool = sqlx::query_scalar("SELECT to_regclass('consent') IS NOT NULL")
                .fetch_one(&pool)
                .await?;
            if !exists {
                return Err(StoreError::MissingSchema(redact(url)));
            }
        }
        let mut migrator = sqlx::migrate!("./migrations/postgres");
        // A fleet is upgraded one node at a time, and the owner's `init` brings the schema
        // to the newest version first: the older nodes keep working on it, as migrations
        // only add (see [`super::schema`]).
        migrator.set_ignore_missing(true);
        let latest = migrator.iter().map(|m| m.version).max().unwrap_or(0);
        let applied: Option<i64> = sqlx::query_scalar(super::schema::APPLIED)
            .fetch_one(&pool)
            .await
            .unwrap_or(None);
        super::schema::warn_if_newer(applied, latest);
        // The daemon's role may lack the rights to change the schema (deploy/postgresql):
        // when the schema is current, nothing is run. `init`, as the owner, brings it up
        // to date.
        let behind = applied.is_none_or(|applied| applied < latest);
        if create == Create::IfMissing || behind {
            migrator.run(&pool).await.map_err(|e| match create {
                Create::Never => StoreError::SchemaBehind {
                    have: applied.unwrap_or(0),
                    need: latest,
                    source: e.into(),
                },
                Create::IfMissing => StoreError::Migrate(e.into()),
            })?;
        }
        Ok(Self {
            writer: writer::Writer::spawn(pool.clone()),
            subjects: subjects::Subjects::spawn(pool.clone()),
            wake: wake::Wake::start(&pool),
            pool,
        })
    }
}

/// What stopped the pool from connecting: the pool retries a refused connection until it
/// times out and then says only that, so one connection more is tried for the cause (a
/// connection refused, a name that does not resolve, a password refused).
async fn why_not(error: sqlx::Error, options: &PgConnectOptions) -> sqlx::Error {
    if !matches!(error, sqlx::Error::PoolTimedOut) {
        return error;
    }
    let attempt = <sqlx::PgConnection as sqlx::Connection>::connect_with(options);
    match tokio::time::timeout(ACQUIRE_TIMEOUT, attempt).await {
        Ok(Err(cause)) => cause,
        Ok(Ok(_)) | Err(_) => error,
    }
}

/// The connection options of `url`, with durable commits forced on.
fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    let options = PgConnectOptions::from_str(url).map_err(|source| StoreError::Open {
        url: redact(url),
        source: source.into(),
    })?;
    Ok(options
        .application_name("optout-milter")
        .options([("synchronous_commit", "on")]))
}

/// Checks `url` as [`PostgresStore::open`] would parse it, without connecting.
pub fn check(url: &str) -> Result<(), StoreError> {
    connect_options(url).map(drop)
}

impl Lookups for PostgresStore {
    fn scoped_values<'a>(
        &'a self,
        address: &'a Address,
        channel: Channel,
        list: &'a Scope,
    ) -> StoreFuture<'a, Vec<(Scope, ConsentValue)>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT scope, value FROM consent
                 WHERE address = $1 AND channel = $2 AND scope IN ($3, '*')",
            )
            .bind(address.as_str())
            .bind(channel.as_str())
            .bind(list.as_str())
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|row| Ok((parse(row.get("scope"))?, parse(row.get("value"))?)))
                .collect()
        })
    }
}

impl Records for PostgresStore {
    fn record<'a>(&'a self, changes: &'a [Change]) -> StoreFuture<'a, Vec<Recorded>> {
        Box::pin(self.writer.record(changes.to_vec()))
    }

    fn record_once<'a>(
        &'a self,
        id: &'a str,
        changes: &'a [Change],
    ) -> StoreFuture<'a, Option<Vec<Recorded>>> {
        Box::pin(async move {
            // Not through the batching writer: inbound messages are few, and their own
            // transaction keeps the order the key locks need (see writer::key_locks): the
            // id is looked up (a read gives no transaction id), the changes are written
            // (key locks first), and only then is the id inserted. A concurrent retry of
            // the same message waits on the key locks, then finds the id and writes
            // nothing.
            let mut tx = self.pool.begin().await?;
            let seen: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM applied_message WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if seen.is_some() {
                return Ok(None);
            }
            let recorded = writer::record(&mut tx, changes).await?;
            let new = sqlx::query(
                "INSERT INTO applied_message (id, applied_at) VALUES ($1, $2)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(to_millis(std::time::SystemTime::now()))
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !new {
                // Applied meanwhile by another node: this one's writes are undone.
                tx.rollback().await?;
                return Ok(None);
            }
            tx.commit().await?;
            Ok(Some(recorded))
        })
    }

    fn restore<'a>(&'a self, changes: &'a [Change], emptied: &'a [Change]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            // Its own transaction, every key locked before any write (writer::key_locks).
            let mut tx = self.pool.begin().await?;
            writer::lock_keys(
                &mut tx,
                changes
                    .iter()
                    .chain(emptied)
                    .map(|c| (c.address.as_str(), c.channel.as_str(), c.scope.as_str())),
            )
            .await?;
            writer::record(&mut tx, changes).await?;
            for c in emptied {
                sqlx::query("SELECT optout_empty($1, $2, $3, $4, $5, $6)")
                    .bind(c.address.as_str())
                    .bind(c.channel.as_str())
                    .bind(c.scope.as_str())
                    .bind(c.source.as_str())
                    .bind(to_millis(c.at))
                    .bind(&c.evidence)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn records<'a>(&'a self, address: &'a Address) -> StoreFuture<'a, Vec<ConsentRecord>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT {RECORD_COLUMNS} FROM consent WHERE address = $1 ORDER BY channel, scope"
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
                 WHERE (address, channel, scope) > ($1, $2, $3)
                 ORDER BY address, channel, scope LIMIT $4"
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
                 FROM consent_history WHERE address = $1 ORDER BY id",
            )
            .bind(address.as_str())
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(history_from_row).collect()
        })
    }

    fn subject_id<'a>(&'a self, address: &'a Address, scope: &'a Scope) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            // Straight to the writer, whose one statement returns the subject that exists
            // and creates the one that does not (a read first would be a round trip more
            // for every new recipient, and the milter asks only once per process).
            let id = self.writer.subject(address.clone(), scope.clone()).await?;
            u64::try_from(id).map_err(|_| StoreError::Corrupt(format!("negative subject id {id}")))
        })
    }

    fn erase<'a>(&'a self, address: &'a Address, suppression: &'a Change) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            // Not through the batching writer: rare, and its own transaction. The
            // suppression first, so that its key lock comes before any write gives the
            // transaction its id (see writer::key_locks).
            let mut tx = self.pool.begin().await?;
            writer::record(&mut tx, std::slice::from_ref(suppression)).await?;
            let removed: i64 = sqlx::query_scalar("SELECT optout_erase($1)")
                .bind(address.as_str())
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(u64::try_from(removed).unwrap_or(0))
        })
    }

    fn subject(&self, id: u64) -> StoreFuture<'_, Option<(Address, Scope)>> {
        Box::pin(async move {
            let Ok(id) = i64::try_from(id) else {
                return Ok(None);
            };
            self.subjects.get(id).await
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
                 WHERE (address, channel, scope) > ($1, $2, $3)
                 ORDER BY address, channel, scope LIMIT $4",
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

impl Feed for PostgresStore {
    fn changes_since(
        &self,
        after: FeedPosition,
        limit: u32,
    ) -> StoreFuture<'_, (Vec<(RecordKey, ConsentValue)>, FeedPosition)> {
        Box::pin(async move {
            // One statement, one snapshot: the horizon and the rows below it agree.
            let rows = sqlx::query(
                "WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin),
                 page AS (
                   SELECT h.xid, h.id, h.address, h.channel, h.scope
                   FROM consent_history h, horizon
                   WHERE (h.xid, h.id) > ($1::text::xid8, $2) AND h.xid < horizon.xmin
                   ORDER BY h.xid, h.id LIMIT $3
                 )
                 SELECT horizon.xmin::text::bigint AS horizon, page.xid::text::bigint AS commit,
                        page.id, page.address, page.channel, page.scope, c.value
                 FROM horizon
                 LEFT JOIN page ON true
                 LEFT JOIN LATERAL (
                   SELECT value FROM consent
                   WHERE address = page.address AND channel = page.channel
                     AND scope = page.scope
                   LIMIT 1
                 ) c ON true
                 ORDER BY page.xid, page.id",
            )
            .bind(after.commit)
            .bind(after.row)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            let horizon: i64 = rows.first().map_or(0, |row| row.get("horizon"));
            let mut changes = Vec::with_capacity(rows.len());
            let mut last = None;
            for row in &rows {
                let (Some(commit), Some(id)) = (
                    row.get::<Option<i64>, _>("commit"),
                    row.get::<Option<i64>, _>("id"),
                ) else {
                    continue;
                };
                last = Some(FeedPosition { commit, row: id });
                // A key without a current value (an undo emptied it) is `u`, which
                // decides nothing, as no record does.
                let key = RecordKey {
                    address: row.get("address"),
                    channel: parse(row.get("channel"))?,
                    scope: parse(row.get("scope"))?,
                };
                let value = row.get::<Option<&str>, _>("value").unwrap_or_default();
                changes.push((key, history_value(value)?));
            }
            // A full page continues after its last row; otherwise everything below the
            // horizon has been read.
            let next = match last {
                Some(last) if rows.len() >= limit as usize => last,
                _ => FeedPosition {
                    commit: horizon,
                    row: 0,
                },
            };
            Ok((changes, next.max(after)))
        })
    }

    fn held(&self) -> StoreFuture<'_, super::Held> {
        Box::pin(async move {
            // Committed (so visible here) and at or above the horizon: not yet readable.
            let row = sqlx::query(
                "WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
                 SELECT count(*) AS held, min(recorded_at) AS oldest
                 FROM (SELECT h.recorded_at FROM consent_history h, horizon
                       WHERE h.xid >= horizon.xmin LIMIT $1) held",
            )
            .bind(i64::try_from(super::Held::CAP).unwrap_or(i64::MAX))
            .fetch_one(&self.pool)
            .await?;
            Ok(super::Held {
                changes: u64::try_from(row.get::<i64, _>("held")).unwrap_or(0),
                oldest: row.get::<Option<i64>, _>("oldest").map(from_millis),
            })
        })
    }

    fn history_since(
        &self,
        after: FeedPosition,
        limit: u32,
    ) -> StoreFuture<'_, (Vec<HistoryEntry>, FeedPosition)> {
        Box::pin(async move {
            // As in `changes_since`: rows below the horizon, in (xid, id) order. The
            // writer takes its keys' locks before its transaction has an xid, so of two
            // transactions that change one key the later to commit has the higher xid.
            let rows = sqlx::query(
                "WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
                 SELECT horizon.xmin::text::bigint AS horizon, h.xid::text::bigint AS commit,
                        h.id, h.address, h.channel, h.scope, h.value, h.source,
                        h.recorded_at, h.evidence
                 FROM horizon
                 LEFT JOIN LATERAL (
                   SELECT * FROM consent_history
                   WHERE (xid, id) > ($1::text::xid8, $2) AND xid < horizon.xmin
                   ORDER BY xid, id LIMIT $3
                 ) h ON true
                 ORDER BY h.xid, h.id",
            )
            .bind(after.commit)
            .bind(after.row)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            let horizon: i64 = rows.first().map_or(0, |row| row.get("horizon"));
            let mut entries = Vec::with_capacity(rows.len());
            let mut last = None;
            for row in &rows {
                let Some(commit) = row.get::<Option<i64>, _>("commit") else {
                    continue;
                };
                let entry = history_from_row(row)?;
                last = Some(FeedPosition {
                    commit,
                    row: entry.id,
                });
                entries.push(entry);
            }
            let next = match last {
                Some(last) if entries.len() >= limit as usize => last,
                _ => FeedPosition {
                    commit: horizon,
                    row: 0,
                },
            };
            Ok((entries, next.max(after)))
        })
    }

    fn delivered<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<FeedPosition>> {
        Box::pin(async move {
            let row: Option<(i64, i64)> =
                sqlx::query_as("SELECT feed_commit, feed_row FROM webhook_cursor WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
            Ok(row.map(|(commit, row)| FeedPosition { commit, row }))
        })
    }

    fn set_delivered<'a>(&'a self, name: &'a str, position: FeedPosition) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO webhook_cursor (name, feed_commit, feed_row, updated_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET
                   feed_commit = excluded.feed_commit, feed_row = excluded.feed_row,
                   updated_at = excluded.updated_at
                 WHERE (excluded.feed_commit, excluded.feed_row)
                       > (webhook_cursor.feed_commit, webhook_cursor.feed_row)",
            )
            .bind(name)
            .bind(position.commit)
            .bind(position.row)
            .bind(to_millis(std::time::SystemTime::now()))
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn lease(&self) -> StoreFuture<'_, Option<Box<dyn super::Lease>>> {
        Box::pin(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect_with(&self.pool.connect_options()).await?;
            let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(WEBHOOK_LEASE)
                .fetch_one(&mut conn)
                .await?;
            Ok(held.then(|| Box::new(PgLease(conn)) as Box<dyn super::Lease>))
        })
    }

    fn feed_position(&self) -> StoreFuture<'_, FeedPosition> {
        Box::pin(async move {
            let horizon: i64 =
                sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                    .fetch_one(&self.pool)
                    .await?;
            Ok(FeedPosition {
                commit: horizon,
                row: 0,
            })
        })
    }

    fn change_token(&self) -> Option<u64> {
        Some(self.wake.token())
    }
}

impl ConsentStore for PostgresStore {
    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            // The tables, not just the server: a database whose tables were dropped or
            // renamed answers `SELECT 1` and refuses every write.
            sqlx::query("SELECT 1 FROM consent LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
            Ok(())
        })
    }
}

/// The advisory lock of the node that delivers webhooks ("optout-w" in ASCII).
const WEBHOOK_LEASE: i64 = 0x6f70_746f_7574_2d77;

/// The webhook lease: a connection of its own holding the advisory lock, which the server
/// releases if the connection is lost (and so lets another node take over).
struct PgLease(sqlx::PgConnection);

impl super::Lease for PgLease {
    fn held(&mut self) -> StoreFuture<'_, bool> {
        Box::pin(async move { Ok(sqlx::query("SELECT 1").execute(&mut self.0).await.is_ok()) })
    }
}

fn history_from_row(row: &PgRow) -> Result<HistoryEntry, StoreError> {
    Ok(HistoryEntry {
        id: row.get("id"),
        change: Change {
            address: Address::from_stored(row.get("address")),
            channel: parse(row.get("channel"))?,
            scope: parse(row.get("scope"))?,
            value: history_value(row.get("value"))?,
            source: parse(row.get("source"))?,
            at: from_millis(row.get("recorded_at")),
            evidence: row.get("evidence"),
        },
        emptied: row.get::<&str, _>("value").is_empty(),
    })
}

fn value_from_row(row: &PgRow) -> Result<(RecordKey, ConsentValue), StoreError> {
    let key = RecordKey {
        address: row.get("address"),
        channel: parse(row.get("channel"))?,
        scope: parse(row.get("scope"))?,
    };
    Ok((key, history_value(row.get("value"))?))
}

fn record_from_row(row: &PgRow) -> Result<ConsentRecord, StoreError> {
    Ok(ConsentRecord {
        address: Address::from_stored(row.get("address")),
        channel: parse(row.get("channel"))?,
        scope: parse(row.get("scope"))?,
        value: parse(row.get("value"))?,
        source: parse(row.get("source"))?,
        updated_at: from_millis(row.get("updated_at")),
        evidence: row.get("evidence"),
    })
}
