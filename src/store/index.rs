//! An in-memory index of which (address, channel, scope) keys have any consent record, in
//! front of the store, so that the milter asks the store only about recipients that have
//! a record at all.
//!
//! Profiling the milter under load showed most of its time in handing each lookup to
//! SQLite's worker thread and back. Most recipients of a bulk sender have no record; for
//! them the answer is known without a query: no record, so the configured default
//! applies. The index holds a 64-bit hash per key (about 10 bytes each in the table), and
//! only ever grows, because records are never deleted; a key in the index sends the lookup
//! to the store, which gives the exact values (so a hash collision costs a query, never a
//! wrong answer).
//!
//! Freshness: writes through this process update the index before they are acknowledged.
//! Writes by other processes (the CLI, `ingest`) are noticed before the next answer: the
//! backend's [`change_token`] changes with every commit, and a changed token makes the
//! lookup read the new history rows first. A backend without a token (none today) would
//! be followed every [`SYNC_INTERVAL`] only. Until the initial load has finished, and
//! whenever reading the history fails, every lookup goes to the store.
//!
//! The index also remembers subject ids (for unsubscribe tokens) it has looked up: they
//! never change once created, and a single-recipient message needs one every time.
//!
//! [`change_token`]: ConsentStore::change_token

use super::{ConsentStore, RecordKey, Recorded, StoreError, StoreFuture};
use crate::consent::{Address, Change, Channel, ConsentRecord, ConsentValue, HistoryEntry, Scope};
use std::{
    collections::{HashMap, HashSet},
    hash::{BuildHasherDefault, Hash, Hasher},
    sync::{
        Arc, RwLock, Weak,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};
use tracing::{info, warn};

/// How often other processes' writes are read from the history.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(200);
const PAGE: u32 = 50_000;
/// The most subject ids kept in memory (about 16 MB).
const MAX_SUBJECTS: usize = 1 << 20;

/// The store with the index in front.
pub struct IndexedStore {
    inner: Arc<dyn ConsentStore>,
    keys: RwLock<HashSet<u64, BuildHasherDefault<Identity>>>,
    ready: AtomicBool,
    /// The last history row applied to the index.
    watermark: AtomicI64,
    /// The store's change token when the index last caught up.
    synced: AtomicU64,
    /// One catch-up at a time.
    catching_up: tokio::sync::Mutex<()>,
    /// Subject ids already asked for. A subject id never changes once created, so a
    /// cached one is always right; the cache is emptied when it reaches [`MAX_SUBJECTS`].
    subjects: RwLock<HashMap<u64, u64, BuildHasherDefault<Identity>>>,
}

impl IndexedStore {
    /// Wraps `inner`; the index loads in the background and then follows the history.
    pub async fn wrap(inner: Arc<dyn ConsentStore>) -> Result<Arc<Self>, StoreError> {
        let watermark = inner.last_history_id().await?;
        let store = Arc::new(Self {
            inner,
            keys: RwLock::new(HashSet::default()),
            ready: AtomicBool::new(false),
            watermark: AtomicI64::new(watermark),
            synced: AtomicU64::new(0),
            catching_up: tokio::sync::Mutex::new(()),
            subjects: RwLock::new(HashMap::default()),
        });
        tokio::spawn(maintain(Arc::downgrade(&store)));
        Ok(store)
    }

    /// Whether the initial load has finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn contains(&self, address: &Address, channel: Channel, scope: &Scope) -> bool {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.contains(&hash(address.as_str(), channel, scope))
    }

    fn insert<'a>(&self, keys: impl IntoIterator<Item = (&'a str, Channel, &'a Scope)>) {
        let mut set = self.keys.write().unwrap_or_else(|e| e.into_inner());
        for (address, channel, scope) in keys {
            set.insert(hash(address, channel, scope));
        }
    }

    async fn load(&self) -> Result<usize, StoreError> {
        let mut after: Option<RecordKey> = None;
        let mut loaded = 0;
        loop {
            let page = self.inner.keys(after.as_ref(), PAGE).await?;
            let full = page.len() == PAGE as usize;
            loaded += page.len();
            self.insert(
                page.iter()
                    .map(|k| (k.address.as_str(), k.channel, &k.scope)),
            );
            match page.into_iter().last() {
                Some(last) if full => after = Some(last),
                _ => return Ok(loaded),
            }
        }
    }

    /// Reads the history after the watermark into the index.
    async fn catch_up(&self) -> Result<(), StoreError> {
        let _one = self.catching_up.lock().await;
        // Noted before reading: a commit during the read changes the token again.
        let token = self.inner.change_token().unwrap_or(0);
        loop {
            let from = self.watermark.load(Ordering::Acquire);
            let (keys, last) = self.inner.keys_since(from, PAGE).await?;
            self.insert(
                keys.iter()
                    .map(|k| (k.address.as_str(), k.channel, &k.scope)),
            );
            self.watermark.fetch_max(last, Ordering::AcqRel);
            if keys.len() < PAGE as usize {
                self.synced.store(token, Ordering::Release);
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
                warn!(%error, "cannot read the consent history; the index stays off");
                return;
            }
            strong.ready.store(true, Ordering::Release);
            info!(keys = count, elapsed = ?started.elapsed(), "consent index loaded");
        }
        Err(error) => {
            warn!(%error, "cannot load the consent index; every lookup goes to the store");
            return;
        }
    }
    drop(strong);
    loop {
        tokio::time::sleep(SYNC_INTERVAL).await;
        let Some(strong) = store.upgrade() else {
            return;
        };
        if let Err(error) = strong.catch_up().await {
            // The index may now miss other processes' writes: stop trusting it until a
            // read of the history succeeds again.
            strong.ready.store(false, Ordering::Release);
            warn!(%error, "cannot read the consent history; lookups go to the store");
        } else {
            strong.ready.store(true, Ordering::Release);
        }
    }
}

fn hash(address: &str, channel: Channel, scope: &Scope) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    (address, channel, scope.as_str()).hash(&mut hasher);
    hasher.finish()
}

/// The keys are hashes already.
#[derive(Default)]
pub struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl ConsentStore for IndexedStore {
    fn scoped_values<'a>(
        &'a self,
        address: &'a Address,
        channel: Channel,
        list: &'a Scope,
    ) -> StoreFuture<'a, Vec<(Scope, ConsentValue)>> {
        Box::pin(async move {
            if self.is_ready() {
                let changed = self
                    .inner
                    .change_token()
                    .is_some_and(|token| token != self.synced.load(Ordering::Acquire));
                if changed {
                    self.catch_up().await?;
                }
                if !self.contains(address, channel, list)
                    && !self.contains(address, channel, &Scope::All)
                {
                    return Ok(Vec::new());
                }
            }
            self.inner.scoped_values(address, channel, list).await
        })
    }

    fn record<'a>(&'a self, changes: &'a [Change]) -> StoreFuture<'a, Vec<Recorded>> {
        Box::pin(async move {
            let recorded = self.inner.record(changes).await?;
            self.insert(
                changes
                    .iter()
                    .map(|c| (c.address.as_str(), c.channel, &c.scope)),
            );
            Ok(recorded)
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
            let key = hash(address.as_str(), Channel::Email, scope);
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

    fn subject(&self, id: u64) -> StoreFuture<'_, Option<(Address, Scope)>> {
        self.inner.subject(id)
    }

    fn keys<'a>(
        &'a self,
        after: Option<&'a RecordKey>,
        limit: u32,
    ) -> StoreFuture<'a, Vec<RecordKey>> {
        self.inner.keys(after, limit)
    }

    fn keys_since(&self, after_id: i64, limit: u32) -> StoreFuture<'_, (Vec<RecordKey>, i64)> {
        self.inner.keys_since(after_id, limit)
    }

    fn last_history_id(&self) -> StoreFuture<'_, i64> {
        self.inner.last_history_id()
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.inner.ping()
    }
}
