//! The single writer of the SQLite store, with group commit.
//!
//! SQLite allows one writer at a time and, with `synchronous = FULL`, each commit waits for
//! the disk. Committing every opt-out alone caps intake at the disk's flush rate. Instead,
//! every write is sent to this task; it takes whatever writes are waiting (up to
//! [`MAX_BATCH`]), applies them in order in one transaction, commits once, and only then
//! answers each caller. If the batch fails, each write is retried alone so that one bad
//! write cannot fail the others.
//!
//! The writer has a connection of its own, closed after any failure and opened afresh for
//! the next write. A connection that hit a full disk, or that SQLite opened read-only
//! because the file was not writable at that moment, would otherwise keep failing after
//! the fault is gone (a pooled one until the pool retires it, half an hour later). After
//! each commit, and before any caller hears of it, the file is checked to still be the
//! store's ([`DbFile`]): a commit into a deleted file is not durable.

use super::DbFile;
use crate::{
    consent::{Address, Change, Scope},
    store::{Recorded, StoreError, to_millis},
};
use sqlx::{Connection, SqliteConnection, sqlite::SqliteConnectOptions};
use std::{sync::Arc, time::SystemTime};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// The most writes committed together.
const MAX_BATCH: usize = 512;
/// Writes waiting for the writer; callers wait when it is full.
const QUEUE: usize = 4096;

/// One write and where its answer goes.
enum Job {
    Record(
        Vec<Change>,
        oneshot::Sender<Result<Vec<Recorded>, StoreError>>,
    ),
    /// Changes caused by an inbound message, applied only if its id is new.
    Once(
        String,
        Vec<Change>,
        oneshot::Sender<Result<Option<Vec<Recorded>>, StoreError>>,
    ),
    /// Keys put back: values recorded, and records removed.
    Restore(
        Vec<Change>,
        Vec<Change>,
        oneshot::Sender<Result<(), StoreError>>,
    ),
    Subject(Address, Scope, oneshot::Sender<Result<i64, StoreError>>),
    /// An address to erase, and the pseudonym's opt-out that replaces it.
    Erase(Address, Change, oneshot::Sender<Result<u64, StoreError>>),
}

/// What a job produced, before it is known whether the batch commits.
enum Outcome {
    Record(Vec<Recorded>),
    Once(Option<Vec<Recorded>>),
    Restored,
    Subject(i64),
    Erased(u64),
}

/// The handle callers write through.
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task on connections to `options`' database, which must stay
    /// `file`; it ends when the last handle is dropped.
    pub fn spawn(options: SqliteConnectOptions, file: Arc<DbFile>) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let connection = Reconnecting {
            options,
            file,
            conn: None,
            failing: false,
        };
        tokio::spawn(run(connection, queue));
        Self { jobs }
    }

    /// Applies `changes` in one transaction (possibly shared with other writes).
    pub async fn record(&self, changes: Vec<Change>) -> Result<Vec<Recorded>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Record(changes, reply)).await?;
        answer.await.map_err(|_| gone())?
    }

    /// Applies `changes` unless the message `id` was applied before (`None`).
    pub async fn record_once(
        &self,
        id: String,
        changes: Vec<Change>,
    ) -> Result<Option<Vec<Recorded>>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Once(id, changes, reply)).await?;
        answer.await.map_err(|_| gone())?
    }

    /// Records `changes` and removes the records of `emptied`, together.
    pub async fn restore(
        &self,
        changes: Vec<Change>,
        emptied: Vec<Change>,
    ) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Restore(changes, emptied, reply)).await?;
        answer.await.map_err(|_| gone())?
    }

    /// The subject id of (`address`, `scope`), created if it does not exist.
    pub async fn subject(&self, address: Address, scope: Scope) -> Result<i64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Subject(address, scope, reply)).await?;
        answer.await.map_err(|_| gone())?
    }

    /// Deletes every row that names `address` and records `suppression`, together.
    pub async fn erase(&self, address: Address, suppression: Change) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Erase(address, suppression, reply)).await?;
        answer.await.map_err(|_| gone())?
    }

    async fn send(&self, job: Job) -> Result<(), StoreError> {
        self.jobs.send(job).await.map_err(|_| gone())
    }
}

fn gone() -> StoreError {
    StoreError::WriterGone
}

/// The writer's connection, opened when needed.
struct Reconnecting {
    options: SqliteConnectOptions,
    file: Arc<DbFile>,
    conn: Option<SqliteConnection>,
    /// The last write failed: the next success is logged as the recovery.
    failing: bool,
}

impl Reconnecting {
    /// Commits `jobs` together; after a failure the connection is closed, so the next
    /// call starts on a fresh one.
    async fn commit(&mut self, jobs: &[Job]) -> Result<Vec<Outcome>, StoreError> {
        self.file.check()?;
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(
                SqliteConnection::connect_with(&self.options)
                    .await
                    .inspect_err(|_| self.failing = true)?,
            ),
        };
        let result = match commit(conn, jobs).await {
            // Committed, but durable only if the file is still the store's.
            Ok(outcomes) => self.file.check().map(|()| outcomes),
            Err(error) => Err(error),
        };
        match &result {
            Ok(_) if self.failing => {
                self.failing = false;
                info!("the store accepts writes again");
            }
            Ok(_) => {}
            Err(error) => {
                if !self.failing {
                    warn!(error = %crate::error_chain(&error), "a write to the store failed; the next one reconnects");
                }
                self.failing = true;
                if let Some(conn) = self.conn.take() {
                    // Closing may fail on a broken connection; it is dropped either way.
                    let _ = conn.close().await;
                }
            }
        }
        result
    }
}

async fn run(mut connection: Reconnecting, mut queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match connection.commit(&batch).await {
            Ok(outcomes) => {
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    answer(job, Ok(outcome));
                }
            }
            Err(_) if batch.len() > 1 => {
                for job in batch.drain(..) {
                    let result = connection
                        .commit(std::slice::from_ref(&job))
                        .await
                        .map(|mut outcomes| outcomes.remove(0));
                    answer(job, result);
                }
            }
            Err(error) => {
                if let Some(job) = batch.pop() {
                    answer(job, Err(error));
                }
            }
        }
    }
}

fn answer(job: Job, result: Result<Outcome, StoreError>) {
    // A caller that went away (a timed-out request) no longer needs its answer; the write
    // itself has been committed or not, as the result says.
    match job {
        Job::Record(_, reply) => drop(reply.send(result.and_then(Outcome::into_record))),
        Job::Restore(_, _, reply) => drop(reply.send(result.and_then(|o| match o {
            Outcome::Restored => Ok(()),
            _ => Err(mismatch()),
        }))),
        Job::Once(_, _, reply) => drop(reply.send(result.and_then(|o| match o {
            Outcome::Once(recorded) => Ok(recorded),
            _ => Err(mismatch()),
        }))),
        Job::Subject(_, _, reply) => drop(reply.send(result.and_then(Outcome::into_subject))),
        Job::Erase(_, _, reply) => drop(reply.send(result.and_then(|o| match o {
            Outcome::Erased(n) => Ok(n),
            _ => Err(mismatch()),
        }))),
    }
}

impl Outcome {
    fn into_record(self) -> Result<Vec<Recorded>, StoreError> {
        match self {
            Outcome::Record(recorded) => Ok(recorded),
            _ => Err(mismatch()),
        }
    }

    fn into_subject(self) -> Result<i64, StoreError> {
        match self {
            Outcome::Subject(id) => Ok(id),
            _ => Err(mismatch()),
        }
    }
}

/// `commit` answers each job with its own kind of outcome; this cannot happen.
fn mismatch() -> StoreError {
    StoreError::Corrupt("a write's outcome does not match the write".into())
}

/// Applies `jobs` in order in one transaction and commits.
async fn commit(conn: &mut SqliteConnection, jobs: &[Job]) -> Result<Vec<Outcome>, StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        outcomes.push(match job {
            Job::Record(changes, _) => Outcome::Record(record(&mut tx, changes).await?),
            Job::Once(id, changes, _) => {
                let new = sqlx::query(
                    "INSERT INTO applied_message (id, applied_at) VALUES (?, ?)
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(to_millis(SystemTime::now()))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                Outcome::Once(match new {
                    true => Some(record(&mut tx, changes).await?),
                    false => None,
                })
            }
            Job::Restore(changes, emptied, _) => {
                record(&mut tx, changes).await?;
                empty(&mut tx, emptied).await?;
                Outcome::Restored
            }
            Job::Subject(address, scope, _) => {
                Outcome::Subject(subject(&mut tx, address, scope).await?)
            }
            Job::Erase(address, suppression, _) => {
                let removed = erase(&mut tx, address).await?;
                record(&mut tx, std::slice::from_ref(suppression)).await?;
                Outcome::Erased(removed)
            }
        });
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Deletes every row that names `address`: its records, its history (allowed only while
/// the address is in `erasing`, see migrations/sqlite/0004_erasure.sql) and its token
/// subjects. Returns how many history rows went.
async fn erase(conn: &mut SqliteConnection, address: &Address) -> Result<u64, StoreError> {
    sqlx::query("INSERT OR IGNORE INTO erasing (address) VALUES (?)")
        .bind(address.as_str())
        .execute(&mut *conn)
        .await?;
    let removed = sqlx::query("DELETE FROM consent_history WHERE address = ?")
        .bind(address.as_str())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    for sql in [
        "DELETE FROM consent WHERE address = ?",
        "DELETE FROM token_subject WHERE address = ?",
        "DELETE FROM erasing WHERE address = ?",
    ] {
        sqlx::query(sql)
            .bind(address.as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(removed)
}

/// Removes the records of `emptied`'s keys, each removal with a history entry whose value
/// is empty; a key with no record is left alone.
async fn empty(conn: &mut SqliteConnection, emptied: &[Change]) -> Result<(), StoreError> {
    for change in emptied {
        let removed =
            sqlx::query("DELETE FROM consent WHERE address = ? AND channel = ? AND scope = ?")
                .bind(change.address.as_str())
                .bind(change.channel.as_str())
                .bind(change.scope.as_str())
                .execute(&mut *conn)
                .await?
                .rows_affected();
        if removed == 0 {
            continue;
        }
        sqlx::query(
            "INSERT INTO consent_history (address, channel, scope, value, source, recorded_at, evidence)
             VALUES (?, ?, ?, '', ?, ?, ?)",
        )
        .bind(change.address.as_str())
        .bind(change.channel.as_str())
        .bind(change.scope.as_str())
        .bind(change.source.as_str())
        .bind(to_millis(change.at))
        .bind(&change.evidence)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn record(
    conn: &mut SqliteConnection,
    changes: &[Change],
) -> Result<Vec<Recorded>, StoreError> {
    let mut outcomes = Vec::with_capacity(changes.len());
    for change in changes {
        let current: Option<String> = sqlx::query_scalar(
            "SELECT value FROM consent WHERE address = ? AND channel = ? AND scope = ?",
        )
        .bind(change.address.as_str())
        .bind(change.channel.as_str())
        .bind(change.scope.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        if current.as_deref() == Some(change.value.as_str()) {
            outcomes.push(Recorded::Unchanged);
            continue;
        }
        let at = to_millis(change.at);
        sqlx::query(
            "INSERT INTO consent (address, channel, scope, value, source, updated_at, evidence)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (address, channel, scope) DO UPDATE SET
               value = excluded.value, source = excluded.source,
               updated_at = excluded.updated_at, evidence = excluded.evidence",
        )
        .bind(change.address.as_str())
        .bind(change.channel.as_str())
        .bind(change.scope.as_str())
        .bind(change.value.as_str())
        .bind(change.source.as_str())
        .bind(at)
        .bind(&change.evidence)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO consent_history (address, channel, scope, value, source, recorded_at, evidence)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(change.address.as_str())
        .bind(change.channel.as_str())
        .bind(change.scope.as_str())
        .bind(change.value.as_str())
        .bind(change.source.as_str())
        .bind(at)
        .bind(&change.evidence)
        .execute(&mut *conn)
        .await?;
        outcomes.push(Recorded::Changed);
    }
    Ok(outcomes)
}

async fn subject(
    conn: &mut SqliteConnection,
    address: &Address,
    scope: &Scope,
) -> Result<i64, StoreError> {
    // One statement for a new subject (the common case here: callers looked first).
    let created: Option<i64> = sqlx::query_scalar(
        "INSERT INTO token_subject (address, scope, created_at) VALUES (?, ?, ?)
         ON CONFLICT (address, scope) DO NOTHING RETURNING id",
    )
    .bind(address.as_str())
    .bind(scope.as_str())
    .bind(to_millis(SystemTime::now()))
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = created {
        return Ok(id);
    }
    let id = sqlx::query_scalar("SELECT id FROM token_subject WHERE address = ? AND scope = ?")
        .bind(address.as_str())
        .bind(scope.as_str())
        .fetch_one(&mut *conn)
        .await?;
    Ok(id)
}
