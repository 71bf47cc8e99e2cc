//! The PostgreSQL store's writes, committed in groups like SQLite's ([`crate::store::sqlite`]
//! explains why): a task takes the writes waiting (up to [`MAX_BATCH`]), applies them in
//! order in one transaction, commits once, and only then answers each caller. A batch that
//! fails (a deadlock with another node's batch, a constraint) is retried write by write,
//! so one write cannot fail the others. [`WRITERS`] batches are committed at once, and
//! several nodes write at once; a lock per key orders the writes to one key, and the
//! history rows follow that order, in id and in transaction id (the change feed reads by
//! transaction id: see [`key_locks`]).

use crate::{
    consent::{Address, Change, Scope},
    store::{Recorded, StoreError, to_millis},
};
use sqlx::{PgConnection, postgres::PgPool};
use std::sync::Arc;
use std::{collections::HashMap, time::SystemTime};
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::{info, warn};

/// The most writes committed together.
const MAX_BATCH: usize = 512;
/// Writes waiting for the writer; callers wait when it is full.
const QUEUE: usize = 4096;
/// Batches committed at once. Unlike SQLite, PostgreSQL commits concurrent transactions
/// together (one WAL flush for all that wait), and a batch waiting for its commit leaves
/// the next one to another task. One-click opt-outs per second on the project's machine
/// (`BENCH_STORE=postgres cargo bench --bench oneclick`): 2 tasks 3 700-3 900, 4 tasks
/// 4 400-4 700, 6 tasks 5 300-6 000.
const WRITERS: usize = 6;

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
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..WRITERS {
            tokio::spawn(run(pool.clone(), queue.clone()));
        }
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

async fn run(pool: PgPool, queue: Arc<Mutex<mpsc::Receiver<Job>>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut failing = false;
    loop {
        // One task takes what waits; the others commit meanwhile.
        if queue.lock().await.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
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

/// Applies `jobs` in order in one transaction and commits. The opt-outs of all jobs are
/// written together ([`record`]): a fixed number of round trips per batch, not two per
/// opt-out, which on the same two cores as the server tripled the one-click rate.
async fn commit(pool: &PgPool, jobs: &[Job]) -> Result<Vec<Outcome>, StoreError> {
    if jobs.iter().all(|job| matches!(job, Job::Subject(..))) {
        // Subjects alone need no transaction around them: their one statement commits
        // by itself (durably, as every commit here), which saves the round trips of
        // BEGIN and COMMIT on the milter's path.
        let pairs: Vec<(&Address, &Scope)> = jobs
            .iter()
            .filter_map(|job| match job {
                Job::Subject(address, scope, _) => Some((address, scope)),
                Job::Record(..) => None,
            })
            .collect();
        let mut conn = pool.acquire().await?;
        let ids = subjects(&mut conn, &pairs).await?;
        return Ok(ids.into_iter().map(Outcome::Subject).collect());
    }
    let mut tx = pool.begin().await?;
    let changes: Vec<Change> = jobs
        .iter()
        .filter_map(|job| match job {
            Job::Record(changes, _) => Some(changes.iter().cloned()),
            Job::Subject(..) => None,
        })
        .flatten()
        .collect();
    let mut recorded = record(&mut tx, &changes).await?.into_iter();
    let pairs: Vec<(&Address, &Scope)> = jobs
        .iter()
        .filter_map(|job| match job {
            Job::Subject(address, scope, _) => Some((address, scope)),
            Job::Record(..) => None,
        })
        .collect();
    let mut subjects = subjects(&mut tx, &pairs).await?.into_iter();
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        outcomes.push(match job {
            Job::Record(changes, _) => {
                Outcome::Record(recorded.by_ref().take(changes.len()).collect())
            }
            Job::Subject(..) => Outcome::Subject(subjects.next().ok_or_else(mismatch)?),
        });
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Applies `changes` in order: reads the current values of their keys (locked, in key
/// order, so that concurrent writers on other nodes wait rather than deadlock, and the
/// history rows of one key follow the order of their commits), decides in memory which
/// change alters a value, then writes the new current values and the history rows in one
/// statement.
pub(super) async fn record(
    conn: &mut PgConnection,
    changes: &[Change],
) -> Result<Vec<Recorded>, StoreError> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    // The keys in order, once each: the rows are locked in that order.
    let keys: std::collections::BTreeSet<(&str, &str, &str)> = changes
        .iter()
        .map(|c| (c.address.as_str(), c.channel.as_str(), c.scope.as_str()))
        .collect();
    lock_keys(&mut *conn, keys.iter().copied()).await?;
    let addresses: Vec<&str> = keys.iter().map(|k| k.0).collect();
    let channels: Vec<&str> = keys.iter().map(|k| k.1).collect();
    let scopes: Vec<&str> = keys.iter().map(|k| k.2).collect();
    // One index lookup per key, in the order given: a subquery with FOR UPDATE is never
    // turned into a join, so the planner cannot pick a hash join over the whole table
    // (which it did, with a plan cached while the table was small: a scan of every row
    // per batch, most of the server's CPU under load).
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT c.address, c.channel, c.scope, c.value
         FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS k(a, ch, s, n)
         CROSS JOIN LATERAL (
           SELECT address, channel, scope, value FROM consent
           WHERE address = k.a AND channel = k.ch AND scope = k.s
           FOR UPDATE
         ) c
         ORDER BY k.n",
    )
    .bind(addresses)
    .bind(channels)
    .bind(scopes)
    .fetch_all(&mut *conn)
    .await?;
    let mut current: HashMap<(String, String, String), String> = rows
        .into_iter()
        .map(|(a, c, s, v)| ((a, c, s), v))
        .collect();
    let mut outcomes = Vec::with_capacity(changes.len());
    // The history rows, in order, and the last change of each key for the current state.
    let mut history: Vec<&Change> = Vec::new();
    let mut last: HashMap<(String, String, String), usize> = HashMap::new();
    for change in changes {
        let key = (
            change.address.as_str().to_owned(),
            change.channel.as_str().to_owned(),
            change.scope.as_str().to_owned(),
        );
        if current.get(&key).map(String::as_str) == Some(change.value.as_str()) {
            outcomes.push(Recorded::Unchanged);
            continue;
        }
        current.insert(key.clone(), change.value.as_str().to_owned());
        last.insert(key, history.len());
        history.push(change);
        outcomes.push(Recorded::Changed);
    }
    if history.is_empty() {
        return Ok(outcomes);
    }
    let mut latest: Vec<usize> = last.into_values().collect();
    latest.sort_unstable();
    let pick = |rows: &[usize], f: fn(&Change) -> String| -> Vec<String> {
        rows.iter().map(|&i| f(history[i])).collect()
    };
    let all: Vec<usize> = (0..history.len()).collect();
    let times =
        |rows: &[usize]| -> Vec<i64> { rows.iter().map(|&i| to_millis(history[i].at)).collect() };
    sqlx::query(
        "WITH current AS (
           INSERT INTO consent (address, channel, scope, value, source, updated_at, evidence)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                $6::bigint[], $7::text[])
           ON CONFLICT (address, channel, scope) DO UPDATE SET
             value = excluded.value, source = excluded.source,
             updated_at = excluded.updated_at, evidence = excluded.evidence
         )
         INSERT INTO consent_history (address, channel, scope, value, source, recorded_at, evidence)
         SELECT a, c, s, v, src, at, ev
         FROM unnest($8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                     $13::bigint[], $14::text[]) WITH ORDINALITY AS t(a, c, s, v, src, at, ev, n)
         ORDER BY n",
    )
    .bind(pick(&latest, |c| c.address.as_str().to_owned()))
    .bind(pick(&latest, |c| c.channel.as_str().to_owned()))
    .bind(pick(&latest, |c| c.scope.as_str().to_owned()))
    .bind(pick(&latest, |c| c.value.as_str().to_owned()))
    .bind(pick(&latest, |c| c.source.as_str().to_owned()))
    .bind(times(&latest))
    .bind(pick(&latest, |c| c.evidence.clone()))
    .bind(pick(&all, |c| c.address.as_str().to_owned()))
    .bind(pick(&all, |c| c.channel.as_str().to_owned()))
    .bind(pick(&all, |c| c.scope.as_str().to_owned()))
    .bind(pick(&all, |c| c.value.as_str().to_owned()))
    .bind(pick(&all, |c| c.source.as_str().to_owned()))
    .bind(times(&all))
    .bind(pick(&all, |c| c.evidence.clone()))
    .execute(&mut *conn)
    .await?;
    Ok(outcomes)
}

/// Takes the advisory lock of each of `keys` (see [`key_locks`]), in order; a lock the
/// transaction holds already is taken again at once.
pub(super) async fn lock_keys<'a>(
    conn: &mut PgConnection,
    keys: impl Iterator<Item = (&'a str, &'a str, &'a str)>,
) -> Result<(), StoreError> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(h)
         FROM unnest($1::bigint[]) WITH ORDINALITY AS t(h, n) ORDER BY n",
    )
    .bind(key_locks(keys))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The advisory locks of `keys`, one per key, sorted and without repeats (every node takes
/// them in the same order, so two batches wait for each other rather than deadlock).
///
/// Why locks of its own, taken before anything else: the change feed delivers history rows
/// in transaction-id order, and a transaction gets its id at its first write, row locks
/// included. With the rows' own locks, a batch could get its id by locking key `a`, then
/// wait for another batch that locked key `b` later (a higher id) and commit after it:
/// key `b`'s two changes would be read in the opposite order to their commits. An advisory
/// lock gives no transaction id, so a batch that waits gets its id only after the batch
/// it waited for has committed, and of two changes to one key the later always has the
/// higher id. Keys are hashed with SipHash under a fixed key, the same on every node;
/// two keys with one hash only wait for each other.
fn key_locks<'a>(keys: impl Iterator<Item = (&'a str, &'a str, &'a str)>) -> Vec<i64> {
    use std::hash::Hasher;
    let mut locks: Vec<i64> = keys
        .map(|(address, channel, scope)| {
            let mut h = siphasher::sip::SipHasher13::new_with_keys(0x6f70_746f_7574, 0x6b65_7973);
            for part in [address, channel, scope] {
                h.write(part.as_bytes());
                h.write_u8(0xff);
            }
            h.finish().cast_signed()
        })
        .collect();
    locks.sort_unstable();
    locks.dedup();
    locks
}

/// The subject ids of `pairs`, in order, created where missing: one statement for the
/// batch (a milter that mints a token for each of many new recipients would otherwise
/// wait for a round trip each), then one lookup for each pair another node created
/// meanwhile (its row is not in this statement's snapshot).
async fn subjects(
    conn: &mut PgConnection,
    pairs: &[(&Address, &Scope)],
) -> Result<Vec<i64>, StoreError> {
    match pairs {
        [] => return Ok(Vec::new()),
        [(address, scope)] => return Ok(vec![subject(conn, address, scope).await?]),
        _ => {}
    }
    // In key order, as rows are locked: two nodes creating the same subjects wait for
    // each other rather than deadlock.
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by_key(|&i| (pairs[i].0.as_str(), pairs[i].1.as_str()));
    let addresses: Vec<&str> = order.iter().map(|&i| pairs[i].0.as_str()).collect();
    let scopes: Vec<&str> = order.iter().map(|&i| pairs[i].1.as_str()).collect();
    let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(
        "WITH input AS (
           SELECT * FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(address, scope, n)
         ),
         created AS (
           INSERT INTO token_subject (address, scope, created_at)
           SELECT DISTINCT address, scope, $3 FROM input
           ON CONFLICT (address, scope) DO NOTHING
           RETURNING id, address, scope
         )
         SELECT input.n, COALESCE(created.id, existing.id)
         FROM input
         LEFT JOIN created ON created.address = input.address AND created.scope = input.scope
         LEFT JOIN LATERAL (
           SELECT id FROM token_subject
           WHERE address = input.address AND scope = input.scope
           LIMIT 1
         ) existing ON true
         ORDER BY input.n",
    )
    .bind(addresses)
    .bind(scopes)
    .bind(to_millis(SystemTime::now()))
    .fetch_all(&mut *conn)
    .await?;
    let mut ids = vec![None; pairs.len()];
    for (n, id) in rows {
        let i = usize::try_from(n - 1)
            .ok()
            .and_then(|n| order.get(n).copied())
            .ok_or_else(mismatch)?;
        ids[i] = Some(match id {
            Some(id) => id,
            None => subject(&mut *conn, pairs[i].0, pairs[i].1).await?,
        });
    }
    ids.into_iter().map(|id| id.ok_or_else(mismatch)).collect()
}

/// The subject id of one pair, created if missing: one statement (the common case, a
/// milter minting for one new recipient at a time, or for one it has not seen since it
/// started), cheaper for the server than the batch's. The insert runs only when no row
/// exists, so a lookup writes nothing and takes no number from the sequence.
async fn subject(
    conn: &mut PgConnection,
    address: &Address,
    scope: &Scope,
) -> Result<i64, StoreError> {
    let found: Option<i64> = sqlx::query_scalar(
        "WITH created AS (
           INSERT INTO token_subject (address, scope, created_at)
           SELECT $1, $2, $3
           WHERE NOT EXISTS (SELECT 1 FROM token_subject WHERE address = $1 AND scope = $2)
           ON CONFLICT (address, scope) DO NOTHING
           RETURNING id
         )
         SELECT id FROM created
         UNION ALL
         SELECT id FROM token_subject WHERE address = $1 AND scope = $2
         LIMIT 1",
    )
    .bind(address.as_str())
    .bind(scope.as_str())
    .bind(to_millis(SystemTime::now()))
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = found {
        return Ok(id);
    }
    // Another node created it after this statement's snapshot was taken (the insert
    // waited for that node's commit and did nothing): a new statement sees it.
    let id = sqlx::query_scalar("SELECT id FROM token_subject WHERE address = $1 AND scope = $2")
        .bind(address.as_str())
        .bind(scope.as_str())
        .fetch_one(&mut *conn)
        .await?;
    Ok(id)
}
