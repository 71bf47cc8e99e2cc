//! The PostgreSQL store's writes, committed in groups like SQLite's ([`crate::store::sqlite`]
//! explains why): a task takes the writes waiting (up to [`MAX_BATCH`]), applies them in
//! order in one transaction, commits once, and only then answers each caller. A batch that
//! fails (a deadlock with another node's batch, a constraint) is retried write by write,
//! so one write cannot fail the others. Several nodes write at once; PostgreSQL's row
//! locks order their writes to one key, and the history rows follow that order.

use super::to_millis;
use crate::{
    consent::{Address, Change, Scope},
    store::{Recorded, StoreError},
};
use sqlx::{PgConnection, postgres::PgPool};
use std::time::SystemTime;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// The most writes committed together.
const MAX_BATCH: usize = 512;
/// Writes waiting for the writer; callers wait when it is full.
const QUEUE: usize = 4096;

enum Job {
    Record(
        Vec<Change>,
        oneshot::Sender<Result<Vec<Recorded>, StoreError>>,
    ),
    Subject(Address, Scope, oneshot::Sender<Result<i64, StoreError>>),
}

enum Outcome {
    Record(Vec<Recorded>),
    Subject(i64),
}

/// The handle callers write through.
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task on `pool`; it ends when the last handle is dropped.
    pub fn spawn(pool: PgPool) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, queue));
        Self { jobs }
    }

    /// Applies `changes` in one transaction (possibly shared with other writes).
    pub async fn record(&self, changes: Vec<Change>) -> Result<Vec<Recorded>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Record(changes, reply)).await?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// The subject id of (`address`, `scope`), created if it does not exist.
    pub async fn subject(&self, address: Address, scope: Scope) -> Result<i64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Subject(address, scope, reply)).await?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    async fn send(&self, job: Job) -> Result<(), StoreError> {
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::WriterGone)
    }
}

async fn run(pool: PgPool, mut queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut failing = false;
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let result = commit(&pool, &batch).await;
        match (&result, failing) {
            (Ok(_), true) => {
                info!("the store accepts writes again");
                failing = false;
            }
            (Err(error), false) => {
                warn!(error = %crate::error_chain(error), "a write to the store failed");
                failing = true;
            }
            _ => {}
        }
        match result {
            Ok(outcomes) => {
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    answer(job, Ok(outcome));
                }
            }
            Err(_) if batch.len() > 1 => {
                for job in batch.drain(..) {
                    let result = commit(&pool, std::slice::from_ref(&job))
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
    match job {
        Job::Record(_, reply) => drop(reply.send(result.and_then(|o| match o {
            Outcome::Record(recorded) => Ok(recorded),
            Outcome::Subject(_) => Err(mismatch()),
        }))),
        Job::Subject(_, _, reply) => drop(reply.send(result.and_then(|o| match o {
            Outcome::Subject(id) => Ok(id),
            Outcome::Record(_) => Err(mismatch()),
        }))),
    }
}

/// `commit` answers each job with its own kind of outcome; this cannot happen.
fn mismatch() -> StoreError {
    StoreError::Corrupt("a write's outcome does not match the write".into())
}

/// Applies `jobs` in order in one transaction and commits.
async fn commit(pool: &PgPool, jobs: &[Job]) -> Result<Vec<Outcome>, StoreError> {
    let mut tx = pool.begin().await?;
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        outcomes.push(match job {
            Job::Record(changes, _) => Outcome::Record(record(&mut tx, changes).await?),
            Job::Subject(address, scope, _) => {
                Outcome::Subject(subject(&mut tx, address, scope).await?)
            }
        });
    }
    tx.commit().await?;
    Ok(outcomes)
}

async fn record(conn: &mut PgConnection, changes: &[Change]) -> Result<Vec<Recorded>, StoreError> {
    let mut outcomes = Vec::with_capacity(changes.len());
    for change in changes {
        // Locked, so that a concurrent write to the same key on another node waits, and the
        // history rows of one key are in the order of their commits.
        let current: Option<String> = sqlx::query_scalar(
            "SELECT value FROM consent WHERE address = $1 AND channel = $2 AND scope = $3
             FOR UPDATE",
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
        // One round trip: the upsert and the history row.
        sqlx::query(
            "WITH current AS (
               INSERT INTO consent (address, channel, scope, value, source, updated_at, evidence)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (address, channel, scope) DO UPDATE SET
                 value = excluded.value, source = excluded.source,
                 updated_at = excluded.updated_at, evidence = excluded.evidence
             )
             INSERT INTO consent_history (address, channel, scope, value, source, recorded_at, evidence)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
    conn: &mut PgConnection,
    address: &Address,
    scope: &Scope,
) -> Result<i64, StoreError> {
    let created: Option<i64> = sqlx::query_scalar(
        "INSERT INTO token_subject (address, scope, created_at) VALUES ($1, $2, $3)
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
    let id = sqlx::query_scalar("SELECT id FROM token_subject WHERE address = $1 AND scope = $2")
        .bind(address.as_str())
        .bind(scope.as_str())
        .fetch_one(&mut *conn)
        .await?;
    Ok(id)
}
