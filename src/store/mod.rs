//! Where consent lives: the traits the milter, the web front and the CLI call, one per
//! role ([`Lookups`] for the milter's decisions, [`Records`] for reads and writes,
//! [`Feed`] for following changes; [`ConsentStore`] is all three), and the backends,
//! chosen by the URL in `[store] url`: [`sqlite`] (embedded, one machine) and
//! [`postgres`] (one database shared by several MTA nodes).
//!
//! The trait hands out boxed futures so that the daemon holds one `Arc<dyn ConsentStore>`
//! whatever the backend; a heap allocation per lookup costs nothing next to the query.
//! Every write is durable when its future resolves: callers acknowledge an opt-out (HTTP
//! 200, SMTP 250, CLI success) only after that.

pub mod copy;
mod error;
pub mod index;
pub mod postgres;
mod schema;
pub mod sqlite;

pub use error::{Backend, StoreError};

use crate::consent::{Address, Change, Channel, ConsentRecord, ConsentValue, HistoryEntry, Scope};
use std::{future::Future, pin::Pin, sync::Arc};

/// A boxed future of a store operation.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// The value changed; the change is in the current state and in the history.
    Changed,
    /// The same value was already recorded; nothing was written.
    Unchanged,
}

/// The key of a record, used to page through the whole store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordKey {
    pub address: String,
    pub channel: Channel,
    pub scope: Scope,
}

/// Changes committed but not yet readable from the feed (see [`Feed::held`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// How many, up to [`Held::CAP`].
    pub changes: u64,
    /// When the oldest of them was recorded.
    pub oldest: Option<std::time::SystemTime>,
}

impl Held {
    /// Counting stops here: the figure is for an alert, not worth a long scan.
    pub const CAP: u64 = 100_000;
}

/// A position in the change feed. Positions only grow; what a backend keeps in them is
/// its own (SQLite: the history row id, whose order is commit order with a single
/// writer; PostgreSQL: the transaction horizon and the row id, see [`postgres`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct FeedPosition {
    pub commit: i64,
    pub row: i64,
}

/// What the milter needs to decide: the values that bear on one message to one recipient.
/// Answered from memory by the consent index ([`index`]) in the daemon.
pub trait Lookups: Send + Sync {
    /// The values recorded for `address` on `channel` at scope `list` and at `*`: all the
    /// milter needs to decide.
    fn scoped_values<'a>(
        &'a self,
        address: &'a Address,
        channel: Channel,
        list: &'a Scope,
    ) -> StoreFuture<'a, Vec<(Scope, ConsentValue)>>;
}

/// Reads and writes of records, their history and token subjects: what the web front,
/// intake, the CLI and the milter's token minting need.
pub trait Records: Send + Sync {
    /// Applies `changes` in one durable transaction, each to the current state and the
    /// history. A change to the value already recorded writes nothing.
    fn record<'a>(&'a self, changes: &'a [Change]) -> StoreFuture<'a, Vec<Recorded>>;

    /// Applies `changes` like [`record`] unless the inbound message `id` (an SMS
    /// provider's message id, with the provider's prefix) was applied before: then nothing
    /// is written and the answer is `None`. The id is kept in the same transaction as the
    /// changes, so a provider's retry never records twice, whenever it comes.
    ///
    /// [`record`]: Records::record
    fn record_once<'a>(
        &'a self,
        id: &'a str,
        changes: &'a [Change],
    ) -> StoreFuture<'a, Option<Vec<Recorded>>>;

    /// Every current record of `address`, on all channels and scopes.
    fn records<'a>(&'a self, address: &'a Address) -> StoreFuture<'a, Vec<ConsentRecord>>;

    /// Up to `limit` records in key order, starting after `after`.
    fn page<'a>(
        &'a self,
        after: Option<&'a RecordKey>,
        limit: u32,
    ) -> StoreFuture<'a, Vec<ConsentRecord>>;

    /// Puts keys back as they were (an undo): `changes` are recorded as [`record`] does,
    /// and the keys of `emptied` lose their record (their `value` is not used), each with
    /// a history entry whose value is empty; all in one durable transaction.
    ///
    /// [`record`]: Records::record
    fn restore<'a>(&'a self, changes: &'a [Change], emptied: &'a [Change]) -> StoreFuture<'a, ()>;

    /// The audit trail of `address`, oldest first.
    fn history<'a>(&'a self, address: &'a Address) -> StoreFuture<'a, Vec<HistoryEntry>>;

    /// The subject id of (`address`, `scope`) for unsubscribe tokens, created durably the
    /// first time it is asked for.
    fn subject_id<'a>(&'a self, address: &'a Address, scope: &'a Scope) -> StoreFuture<'a, u64>;

    /// Whom a subject id stands for, if it exists.
    fn subject(&self, id: u64) -> StoreFuture<'_, Option<(Address, Scope)>>;

    /// Erases `address`: deletes its records, its history and its token subjects, and
    /// records `suppression` (its pseudonym's opt-out, see [`crate::consent::erasure`]),
    /// in one durable transaction. Returns how many history rows were deleted.
    fn erase<'a>(&'a self, address: &'a Address, suppression: &'a Change) -> StoreFuture<'a, u64>;

    /// Up to `limit` record keys with their values in key order, after `after`: cheaper
    /// than [`page`] when only the values are needed.
    ///
    /// [`page`]: Records::page
    fn values<'a>(
        &'a self,
        after: Option<&'a RecordKey>,
        limit: u32,
    ) -> StoreFuture<'a, Vec<(RecordKey, ConsentValue)>>;
}

/// The change feed: how a node learns what other processes and nodes wrote. Each backend
/// has its own way to wake a follower ([`Feed::change_token`]: SQLite's shared-memory
/// file, PostgreSQL's notifications) and its own cursor ([`FeedPosition`]).
pub trait Feed: Send + Sync {
    /// Up to `limit` keys changed after `after`, each with its value as it is now, and the
    /// position to read from next. It never skips a change, however commits interleave.
    /// A key whose record was removed ([`Records::restore`]) comes with `u`, which decides
    /// nothing, as no record does.
    fn changes_since(
        &self,
        after: FeedPosition,
        limit: u32,
    ) -> StoreFuture<'_, (Vec<(RecordKey, ConsentValue)>, FeedPosition)>;

    /// Up to `limit` history entries recorded after `after`, whole, and the position to
    /// read from next: the change feed the admin API serves and webhooks deliver. Like
    /// [`Feed::changes_since`] it never skips an entry, and the entries of one key come
    /// in the order they were committed.
    fn history_since(
        &self,
        after: FeedPosition,
        limit: u32,
    ) -> StoreFuture<'_, (Vec<HistoryEntry>, FeedPosition)>;

    /// The feed's position now: every change before it is in the current state.
    fn feed_position(&self) -> StoreFuture<'_, FeedPosition>;

    /// The changes already committed that the feed still holds back. On PostgreSQL a
    /// change is read once every older transaction on the server has ended, in any of its
    /// databases, so one long transaction holds back every change committed after it
    /// began: nothing is lost, but other nodes enforce it late. A store with one writer
    /// (SQLite) holds nothing back.
    fn held(&self) -> StoreFuture<'_, Held> {
        Box::pin(async { Ok(Held::default()) })
    }

    /// How far the delivery of webhook `name` has got, if it has begun.
    fn delivered<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<FeedPosition>>;

    /// Records that webhook `name` has delivered every change before `position`; a
    /// position behind the recorded one changes nothing.
    fn set_delivered<'a>(&'a self, name: &'a str, position: FeedPosition) -> StoreFuture<'a, ()>;

    /// Makes this process the one that delivers webhooks, for as long as the returned
    /// lease holds; `None` while another process holds it. A store that only one daemon
    /// uses (SQLite) always grants it.
    fn lease(&self) -> StoreFuture<'_, Option<Box<dyn Lease>>> {
        Box::pin(async { Ok(Some(Box::new(Always) as Box<dyn Lease>)) })
    }

    /// A cheap fingerprint of the store's committed state that changes whenever any
    /// process commits, or `None` when the backend cannot tell without a query. It lets
    /// the in-memory index notice other processes' writes before it answers.
    fn change_token(&self) -> Option<u64> {
        None
    }
}

/// The right to deliver webhooks, held by one process at a time.
pub trait Lease: Send {
    /// Whether it is still held (for PostgreSQL: whether its connection is still up).
    fn held(&mut self) -> StoreFuture<'_, bool>;
}

/// The lease of a store only one daemon uses.
struct Always;

impl Lease for Always {
    fn held(&mut self) -> StoreFuture<'_, bool> {
        Box::pin(async { Ok(true) })
    }
}

/// A whole store: the three roles above, and its health.
pub trait ConsentStore: Lookups + Records + Feed {
    /// Checks that the store answers (and, like [`check`], that it is still the store
    /// that was opened).
    ///
    /// [`check`]: ConsentStore::check
    fn ping(&self) -> StoreFuture<'_, ()>;

    /// Without I/O beyond a `stat`: an error once the store can no longer be trusted to
    /// keep what it acknowledges (its file was deleted or replaced), and from then on.
    fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Whether opening a store may create it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    /// Only an explicit `init` (or `serve --init`) creates a store.
    IfMissing,
    /// Every other command: a missing store is an error that names it.
    Never,
}

/// Opens and migrates the existing store named by `url`.
pub async fn open(url: &str) -> Result<Arc<dyn ConsentStore>, StoreError> {
    open_with(url, Create::Never).await
}

/// Opens the store named by `url`, creating it first if it does not exist.
pub async fn open_or_create(url: &str) -> Result<Arc<dyn ConsentStore>, StoreError> {
    open_with(url, Create::IfMissing).await
}

/// Checks `url` as opening it would (scheme, a durable file that exists), without opening.
pub fn check(url: &str) -> Result<(), StoreError> {
    match url.split_once(':').map(|(scheme, _)| scheme) {
        Some("sqlite") => sqlite::check(url),
        Some("postgres" | "postgresql") => postgres::check(url),
        _ => Err(StoreError::UnsupportedUrl(redact(url))),
    }
}

async fn open_with(url: &str, create: Create) -> Result<Arc<dyn ConsentStore>, StoreError> {
    match url.split_once(':').map(|(scheme, _)| scheme) {
        Some("sqlite") => Ok(Arc::new(sqlite::SqliteStore::open(url, create).await?)),
        Some("postgres" | "postgresql") => {
            Ok(Arc::new(postgres::PostgresStore::open(url, create).await?))
        }
        _ => Err(StoreError::UnsupportedUrl(redact(url))),
    }
}

/// The key columns to continue a page after; before every key when there is none.
fn cursor(after: Option<&RecordKey>) -> (&str, &str, &str) {
    match after {
        Some(k) => (k.address.as_str(), k.channel.as_str(), k.scope.as_str()),
        None => ("", "", ""),
    }
}

/// A stored text as a domain value; a value this version does not know is corruption.
fn parse<T: std::str::FromStr>(s: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e: T::Err| StoreError::Corrupt(e.to_string()))
}

/// A time as the stores keep it: Unix milliseconds.
/// A history row's value: empty where the change removed the record, read as `u`
/// (which, like no record, decides nothing; [`HistoryEntry::emptied`] tells them apart).
pub(crate) fn history_value(text: &str) -> Result<ConsentValue, StoreError> {
    match text {
        "" => Ok(ConsentValue::Unknown),
        text => parse(text),
    }
}

pub(crate) fn to_millis(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A stored time.
pub(crate) fn from_millis(ms: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// `url` without a password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            let userinfo = &url[start + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..start + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("postgres://milter:secret@db/consent"),
            "postgres://milter:***@db/consent"
        );
        assert_eq!(
            super::redact("sqlite:///var/lib/x.db"),
            "sqlite:///var/lib/x.db"
        );
    }
}
