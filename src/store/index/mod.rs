//! An in-memory copy of every consent value, in front of the store, so that the milter
//! decides without a query.
//!
//! Profiling the milter under load showed most of its time in handing each lookup to
//! SQLite's worker thread and back; with a first index that only said which keys had a
//! record, the recipients who had one still paid that hop, and at a million opt-outs the
//! milter ran at half its speed. So the index keeps the values themselves: 16 bytes per
//! record (see [`table`]), 160 MB for ten million, and a lookup is two bisections.
//!
//! Freshness: writes through this process update the index before they are acknowledged.
//! Writes by other processes (the CLI, `ingest`, other nodes) are noticed before the next
//! answer: the backend's [`change_token`] changes with every commit, and a changed token
//! makes the lookup apply the new history rows, in order, first. A backend without a token
//! is followed every [`SYNC_INTERVAL`]. Until the initial load has finished, whenever
//! reading the history fails, and whenever the index has not caught up for [`STALE_AFTER`]
//! (a database that stopped answering without closing the connection, as behind a network
//! partition, leaves a read waiting for many minutes rather than failing), every lookup
//! goes to the store, so a store that went away gives errors (and the milter temporary
//! failures), never answers from a stale copy.
//!
//! The index also remembers subject ids (for unsubscribe tokens) it has looked up: they
//! never change once created, and a single-recipient message needs one every time.
//!
//! [`change_token`]: ConsentStore::change_token

mod table;

use super::{
    ConsentStore, Feed, FeedPosition, Lookups, RecordKey, Recorded, Records, StoreError,
    StoreFuture,
};
use crate::consent::{
    Address, Change, Channel, ConsentRecord, ConsentValue, Effect, HistoryEntry, Scope,
};
use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};
use table::{Fingerprinter, Table};
use tracing::{debug, info, warn};

/// How often other processes' writes are read from the history when nothing asks sooner.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(200);
const PAGE: u32 = 4096;
/// A step of the background loop (reading the history, and counting the changes held
/// back) that takes longer is given up, and the index stops answering until a step
/// succeeds: it answers from a copy at most this and one [`SYNC_INTERVAL`] old.
pub const STALE_AFTER: Duration = Duration::from_secs(5);
/// How often the changes the feed holds back are counted for the metrics.
const HELD_INTERVAL: Duration = Duration::from_secs(5);
/// The most subject ids kept in memory (about 9 MB).
const MAX_SUBJECTS: usize = 1 << 17;

/// The store with the index in front.
pub struct IndexedStore {
    inner: Arc<dyn ConsentStore>,
    fingerprints: Fingerprinter,
    table: RwLock<Table>,
    ready: AtomicBool,
    /// The feed position up to which changes are in the index.
    watermark: std::sync::Mutex<FeedPosition>,
    /// The store's change token when the index last caught up.
    synced: AtomicU64,
    /// One catch-up at a time.
    catching_up: tokio::sync::Mutex<()>,
    /// Subject ids already asked for, by fingerprint of (address, scope). A subject id
    /// never changes once created, so a cached one is always right; the cache is emptied
    /// when it reaches [`MAX_SUBJECTS`].
    subjects: RwLock<HashMap<u128, u64>>,
}

impl IndexedStore {
    /// Wraps `inner`; the index loads in the background and then follows the history.
    pub async fn wrap(inner: Arc<dyn ConsentStore>) -> Result<Arc<Self>, StoreError> {
        let watermark = inner.feed_position().await?;
        let store = Arc::new(Self {
            inner,
            fingerprints: Fingerprinter::random(),
            table: RwLock::new(Table::default()),
            ready: AtomicBool::new(false),
            watermark: std::sync::Mutex::new(watermark),
            synced: AtomicU64::new(0),
            catching_up: tokio::sync::Mutex::new(()),
            subjects: RwLock::new(HashMap::new()),
        });
        tokio::spawn(maintain(Arc::downgrade(&store)));
        Ok(store)
    }

    /// Whether the initial load has finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn get(&self, address: &Address, channel: Channel, scope: &Scope) -> Option<ConsentValue> {
        let fingerprint = self.fingerprints.of(address.as_str(), channel, scope);
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        table.get(fingerprint)
    }

    fn set<'a>(
        &self,
        values: impl IntoIterator<Item = (&'a str, Channel, &'a Scope, ConsentValue)>,
    ) {
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        for (address, channel, scope, value) in values {
            table.set(self.fingerprints.of(address, channel, scope), value);
        }
    }

    /// Reads the current state into a new table, which replaces the one written into
    /// meanwhile: those writes are in the history after the watermark, and the catch-up
    /// that follows the load applies them, with everything else, in order.
    async fn load(&self) -> Result<usize, StoreError> {
        let mut after: Option<RecordKey> = None;
        let mut entries = Vec::new();
        loop {
            let page = self.inner.values(after.as_ref(), PAGE).await?;
            let full = page.len() == PAGE as usize;
            entries.extend(page.iter().map(|(k, v)| {
                Table::entry(self.fingerprints.of(&k.address, k.channel, &k.scope), *v)
            }));
            match page.into_iter().last() {
                Some((last, _)) if full => after = Some(last),
                _ => break,
            }
        }
        let loaded = Table::build(entries);
        let count = loaded.len();
        crate::metrics::get()
            .index_entries
            .set(i64::try_from(count).unwrap_or(i64::MAX));
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = loaded;
        Ok(count)
    }

    /// Sets the metrics of the changes the feed holds back (a long transaction on the
    /// database server delays every node's view of what is committed after it began).
    async fn report_held(&self) {
        let metrics = crate::metrics::get();
        match self.inner.held().await {
            Ok(held) => {
                let age = held
                    .oldest
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                metrics
                    .feed_held
                    .set(i64::try_from(held.changes).unwrap_or(i64::MAX));
                metrics.feed_held_seconds.set(age);
            }
            Err(error) => {
                debug!(error = %crate::error_chain(&error), "cannot count the changes the feed holds back");
            }
        }
    }

    /// Applies the history after the watermark to the index.
    async fn catch_up(&self) -> Result<(), StoreError> {
        let _one = self.catching_up.lock().await;
        // Noted before reading: a commit during the read changes the token again.
        let token = self.inner.change_token().unwrap_or(0);
        let mut behind = 0usize;
        loop {
            let from = *self.watermark.lock().unwrap_or_else(|e| e.into_inner());
            let (changes, next) = self.inner.changes_since(from, PAGE).await?;
            behind += changes.len();
            crate::metrics::get()
                .index_lag
                .set(i64::try_from(behind).unwrap_or(i64::MAX));
            self.set(
                changes
                    .iter()
                    .map(|(k, v)| (k.address.as_str(), k.channel, &k.scope, *v)),
            );
            {
                let mut watermark = self.watermark.lock().unwrap_or_else(|e| e.into_inner());
                *watermark = (*watermark).max(next);
            }
            if changes.len() < PAGE as usize {
                self.synced.store(token, Ordering::Release);
                let metrics = crate::metrics::get();
                metrics.index_lag.set(0);
                let entries = self.table.read().unwrap_or_else(|e| e.into_inner()).len();
                metrics
                    .index_entries
                    .set(i64::try_from(entries).unwrap_or(i64::MAX));
                return Ok(());
            }
        }
    }
}

/// Loads the index, then follows the history until the store is dropped.
async fn maintain(store: Weak<IndexedStore>) {
    let Some(strong) = store.upgrade() else {
        return;
    };
    let started = std::time::Instant::now();
    match strong.load().await {
        Ok(count) => {
            // Writes made while loading are in the history after the watermark.
            if let Err(error) = strong.catch_up().await {
                warn!(error = %crate::error_chain(&error), "cannot read the consent history; the index stays off");
                return;
            }
            strong.ready.store(true, Ordering::Release);
            info!(records = count, elapsed = ?started.elapsed(), "consent index loaded");
        }
        Err(error) => {
            warn!(error = %crate::error_chain(&error), "cannot load the consent index; every lookup goes to the store");
            return;
        }
    }
    drop(strong);
    let mut held_reported: Option<Instant> = None;
    loop {
        tokio::time::sleep(SYNC_INTERVAL).await;
        let Some(strong) = store.upgrade() else {
            return;
        };
        let report_held = held_reported.is_none_or(|at| at.elapsed() >= HELD_INTERVAL);
        let step = async {
            strong.catch_up().await?;
            if report_held {
                strong.report_held().await;
            }
            Ok::<_, StoreError>(())
        };
        let caught_up = match tokio::time::timeout(STALE_AFTER, step).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(crate::error_chain(&error)),
            Err(_) => Err(format!("no answer within {STALE_AFTER:?}")),
        };
        // The index may miss other processes' writes after a failed read: it is not
        // trusted until a read succeeds again. Said once each way, not at every try.
        let was_ready = strong.ready.swap(caught_up.is_ok(), Ordering::AcqRel);
        match caught_up {
            Ok(()) => {
                if !was_ready {
                    info!("the consent history is read again; the index answers");
                }
                if report_held {
                    held_reported = Some(Instant::now());
                }
            }
            Err(error) if was_ready => {
                warn!(%error, "cannot read the consent history; lookups go to the store");
            }
            Err(_) => {}
        }
    }
}

impl Lookups for IndexedStore {
    fn scoped_values<'a>(
        &'a self,
        address: &'a Address,
        channel: Channel,
        list: &'a Scope,
    ) -> StoreFuture<'a, Vec<(Scope, ConsentValue)>> {
        Box::pin(async move {
            if !self.is_ready() {
                return self.inner.scoped_values(address, channel, list).await;
            }
            let changed = self
                .inner
                .change_token()
                .is_some_and(|token| token != self.synced.load(Ordering::Acquire));
            if changed && let Err(error) = self.catch_up().await {
                self.ready.store(false, Ordering::Release);
                return Err(error);
            }
            let mut values = Vec::with_capacity(2);
            if let Some(value) = self.get(address, channel, list) {
                values.push((list.clone(), value));
            }
            if *list != Scope::All
                && let Some(value) = self.get(address, channel, &Scope::All)
            {
                values.push((Scope::All, value));
            }
            Ok(values)
        })
    }
}

impl IndexedStore {
    /// Counts what a write did and puts its values in the index.
    fn wrote(&self, changes: &[Change], recorded: &[Recorded], started: std::time::Instant) {
        let metrics = crate::metrics::get();
        metrics
            .store_write_seconds
            .observe(started.elapsed().as_secs_f64());
        for (change, outcome) in changes.iter().zip(recorded) {
            if *outcome == Recorded::Changed && change.value.effect() == Effect::Blocks {
                let source = crate::metrics::SourceLabels {
                    source: change.source.as_str(),
                };
                metrics.opt_outs.get_or_create(&source).inc();
            }
        }
        self.set(
            changes
                .iter()
                .map(|c| (c.address.as_str(), c.channel, &c.scope, c.value)),
        );
    }
}

impl Records for IndexedStore {
    fn record<'a>(&'a self, changes: &'a [Change]) -> StoreFuture<'a, Vec<Recorded>> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let recorded = self.inner.record(changes).await.inspect_err(|_| {
                crate::metrics::get().store_errors.inc();
            })?;
            self.wrote(changes, &recorded, started);
            Ok(recorded)
        })
    }

    fn record_once<'a>(
        &'a self,
        id: &'a str,
        changes: &'a [Change],
    ) -> StoreFuture<'a, Option<Vec<Recorded>>> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let recorded = self.inner.record_once(id, changes).await.inspect_err(|_| {
                crate::metrics::get().store_errors.inc();
            })?;
            if let Some(recorded) = &recorded {
                self.wrote(changes, recorded, started);
            }
            Ok(recorded)
        })
    }

    fn restore<'a>(&'a self, changes: &'a [Change], emptied: &'a [Change]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.inner
                .restore(changes, emptied)
                .await
                .inspect_err(|_| {
                    crate::metrics::get().store_errors.inc();
                })?;
            // No record is `u` here: it decides nothing, as no record does.
            self.set(
                changes
                    .iter()
                    .map(|c| (c.address.as_str(), c.channel, &c.scope, c.value))
                    .chain(emptied.iter().map(|c| {
                        (
                            c.address.as_str(),
                            c.channel,
                            &c.scope,
                            ConsentValue::Unknown,
                        )
                    })),
            );
            Ok(())
        })
    }

    fn records<'a>(&'a self, address: &'a Address) -> StoreFuture<'a, Vec<ConsentRecord>> {
        self.inner.records(address)
    }

    fn page<'a>(
        &'a self,
        after: Option<&'a RecordKey>,
        limit: u32,
    ) -> StoreFuture<'a, Vec<ConsentRecord>> {
        self.inner.page(after, limit)
    }

    fn history<'a>(&'a self, address: &'a Address) -> StoreFuture<'a, Vec<HistoryEntry>> {
        self.inner.history(address)
    }

    fn subject_id<'a>(&'a self, address: &'a Address, scope: &'a Scope) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let key = self
                .fingerprints
                .of(address.as_str(), Channel::Email, scope);
            let cached = self
                .subjects
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .copied();
            if let Some(id) = cached {
                return Ok(id);
            }
            let id = self.inner.subject_id(address, scope).await?;
            let mut subjects = self.subjects.write().unwrap_or_else(|e| e.into_inner());
            if subjects.len() >= MAX_SUBJECTS {
                subjects.clear();
            }
            subjects.insert(key, id);
            Ok(id)
        })
    }

    fn erase<'a>(&'a self, address: &'a Address, suppression: &'a Change) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            // The address's keys leave this index with it (as "nothing recorded"); other
            // nodes' indexes keep them until they restart, which matters only once the
            // erasure is lifted: the pseudonym's opt-out refuses the address meanwhile.
            let keys = self.inner.records(address).await?;
            let removed = self.inner.erase(address, suppression).await?;
            self.set(
                keys.iter()
                    .map(|r| (address.as_str(), r.channel, &r.scope, ConsentValue::Unknown))
                    .chain(std::iter::once((
                        suppression.address.as_str(),
                        suppression.channel,
                        &suppression.scope,
                        suppression.value,
                    ))),
            );
            self.subjects
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            Ok(removed)
        })
    }

    fn subject(&self, id: u64) -> StoreFuture<'_, Option<(Address, Scope)>> {
        self.inner.subject(id)
    }

    fn values<'a>(
        &'a self,
        after: Option<&'a RecordKey>,
        limit: u32,
    ) -> StoreFuture<'a, Vec<(RecordKey, ConsentValue)>> {
        self.inner.values(after, limit)
    }
}

impl Feed for IndexedStore {
    fn changes_since(
        &self,
        after: FeedPosition,
        limit: u32,
    ) -> StoreFuture<'_, (Vec<(RecordKey, ConsentValue)>, FeedPosition)> {
        self.inner.changes_since(after, limit)
    }

    fn history_since(
        &self,
        after: FeedPosition,
        limit: u32,
    ) -> StoreFuture<'_, (Vec<HistoryEntry>, FeedPosition)> {
        self.inner.history_since(after, limit)
    }

    fn feed_position(&self) -> StoreFuture<'_, FeedPosition> {
        self.inner.feed_position()
    }

    fn delivered<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<FeedPosition>> {
        self.inner.delivered(name)
    }

    fn set_delivered<'a>(&'a self, name: &'a str, position: FeedPosition) -> StoreFuture<'a, ()> {
        self.inner.set_delivered(name, position)
    }

    fn lease(&self) -> StoreFuture<'_, Option<Box<dyn super::Lease>>> {
        self.inner.lease()
    }

    fn change_token(&self) -> Option<u64> {
        self.inner.change_token()
    }
}

impl ConsentStore for IndexedStore {
    fn check(&self) -> Result<(), StoreError> {
        self.inner.check()
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.inner.ping()
    }
}
