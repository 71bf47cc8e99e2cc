//! The store under concurrent use, one suite run on both backends (SQLite and a real
//! PostgreSQL): group commit must keep every write, answer each caller with its own
//! outcome, and keep the history in step with the current state; the index in front must
//! answer what the store answers, and the change feed must never miss a change.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use optout_milter::{
    consent::{AddressPolicy, Change, Channel, ConsentValue, Scope, Source},
    store::{self, Lookups, Recorded, Records},
};
use std::{sync::Arc, time::SystemTime};

/// Where a test's store lives.
enum Db {
    /// The folder is kept until the test ends.
    Sqlite {
        _dir: tempfile::TempDir,
        url: String,
    },
    Postgres(common::postgres::TestDb),
}

impl Db {
    fn url(&self) -> &str {
        match self {
            Db::Sqlite { url, .. } => url,
            Db::Postgres(db) => &db.url,
        }
    }

    /// Runs `sql` on a connection of its own, as another program would.
    async fn execute(&self, sql: &str) -> Result<(), String> {
        use sqlx::Connection;
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Db::Sqlite { url, .. } => {
                let mut db = sqlx::SqliteConnection::connect(url).await.unwrap();
                sqlx::query(sql).execute(&mut db).await.map(drop)
            }
            Db::Postgres(db) => {
                let mut db = db.connect().await;
                sqlx::query(sql).execute(&mut db).await.map(drop)
            }
        }
        .map_err(|e| e.to_string())
    }
}

fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("c.db").display());
    Db::Sqlite { _dir: dir, url }
}

/// Each named test, once on SQLite and once on PostgreSQL.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::sqlite()).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(db) = super::common::postgres::database(stringify!($test)).await {
                        super::$test(super::Db::Postgres(db)).await;
                    }
                }
            )*
        }
    };
}

on_both_backends!(
    an_undo_puts_keys_back_including_no_record,
    an_inbound_message_is_applied_once_however_often_it_comes,
    a_store_a_newer_version_migrated_still_opens_and_works,
    erasure_deletes_the_address_everywhere_and_keeps_its_suppression,
    concurrent_writes_are_all_kept_and_answered_individually,
    concurrent_subject_ids_for_one_pair_agree,
    concurrent_subject_lookups_each_get_their_own_answer,
    two_nodes_writing_the_same_keys_in_opposite_orders_keep_every_change,
    the_history_refuses_to_be_rewritten,
    the_index_sees_its_own_and_other_processes_writes_at_once,
    the_index_answers_exactly_what_the_store_answers,
);

fn change(i: usize, value: ConsentValue) -> Change {
    Change {
        address: AddressPolicy::default()
            .normalize(&format!("r{i}@example.org"))
            .unwrap(),
        channel: Channel::Email,
        scope: Scope::All,
        value,
        source: Source::OneClick,
        at: SystemTime::now(),
        evidence: format!("writer {i}"),
    }
}

async fn concurrent_writes_are_all_kept_and_answered_individually(db: Db) {
    let url = db.url().to_owned();
    let store = store::open_or_create(&url).await.unwrap();
    // Half the addresses already have the value they will be sent again.
    for i in (0..400).step_by(2) {
        store.record(&[change(i, ConsentValue::No)]).await.unwrap();
    }
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                (
                    i,
                    store.record(&[change(i, ConsentValue::No)]).await.unwrap(),
                )
            })
        })
        .collect();
    for task in tasks {
        let (i, outcome) = task.await.unwrap();
        let expected = if i % 2 == 0 {
            Recorded::Unchanged
        } else {
            Recorded::Changed
        };
        assert_eq!(outcome, [expected], "writer {i}");
    }
    for i in 0..400 {
        let address = AddressPolicy::default()
            .normalize(&format!("r{i}@example.org"))
            .unwrap();
        let history = store.history(&address).await.unwrap();
        assert_eq!(history.len(), 1, "r{i}");
        assert_eq!(
            store.records(&address).await.unwrap()[0].value,
            ConsentValue::No
        );
    }
}

/// Issue 14, item 4: an undo puts each key back as it was: a value where there was one,
/// and no record where there was none (not `y`: that would be a consent never given),
/// with the removal in the history and the change feed; this node's index and another
/// node's see the key decide nothing again.
async fn an_undo_puts_keys_back_including_no_record(db: Db) {
    use optout_milter::store::{Feed, index::IndexedStore};
    let url = db.url().to_owned();
    let other = IndexedStore::wrap(store::open_or_create(&url).await.unwrap())
        .await
        .unwrap();
    ready(&other).await;
    let store = IndexedStore::wrap(store::open_or_create(&url).await.unwrap())
        .await
        .unwrap();
    ready(&store).await;
    let list = |i: usize, list: &str, value| Change {
        scope: list.parse().unwrap(),
        ..change(i, value)
    };
    let start = store.feed_position().await.unwrap();
    // The person had y for "b", nothing for "a"; then unsubscribed from both.
    store
        .record(&[list(1, "b", ConsentValue::Yes)])
        .await
        .unwrap();
    store
        .record(&[
            list(1, "a", ConsentValue::No),
            list(1, "b", ConsentValue::No),
        ])
        .await
        .unwrap();
    store
        .restore(
            &[list(1, "b", ConsentValue::Yes)],
            &[list(1, "a", ConsentValue::No)],
        )
        .await
        .unwrap();
    let address = change(1, ConsentValue::No).address;
    let records = store.records(&address).await.unwrap();
    assert_eq!(
        records
            .iter()
            .map(|r| (r.scope.as_str(), r.value))
            .collect::<Vec<_>>(),
        [("b", ConsentValue::Yes)],
        "\"a\" has no record again"
    );
    let history = store.history(&address).await.unwrap();
    let trail: Vec<_> = history
        .iter()
        .map(|e| {
            (
                e.change.scope.as_str().to_owned(),
                e.change.value,
                e.emptied,
            )
        })
        .collect();
    assert_eq!(
        trail,
        [
            ("b".into(), ConsentValue::Yes, false),
            ("a".into(), ConsentValue::No, false),
            ("b".into(), ConsentValue::No, false),
            ("b".into(), ConsentValue::Yes, false),
            ("a".into(), ConsentValue::Unknown, true),
        ]
    );
    // Emptying a key with no record writes nothing.
    store
        .restore(&[], &[list(1, "a", ConsentValue::No)])
        .await
        .unwrap();
    assert_eq!(store.history(&address).await.unwrap().len(), 5);
    // The feed carries the removal, in order.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (entries, _) = store.history_since(start, 10).await.unwrap();
        if entries.len() == 5 {
            assert!(entries[4].emptied && entries[4].change.scope.as_str() == "a");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{entries:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Both indexes: "a" decides nothing (no value, or `u`, which decides nothing).
    let a: Scope = "a".parse().unwrap();
    for (name, index) in [("this node", &store), ("another node", &other)] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let values = index
                .scoped_values(&address, Channel::Email, &a)
                .await
                .unwrap();
            let a_decides = values
                .iter()
                .any(|(s, v)| *s == a && *v != ConsentValue::Unknown);
            if !a_decides {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{name}: {values:?}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// Issue 15: an SMS provider sends a message again until it gets a 200. STOP, START, then
/// STOP's late retry must leave the number subscribed, and retries racing each other (on
/// one node or two) must record the change once.
async fn an_inbound_message_is_applied_once_however_often_it_comes(db: Db) {
    let url = db.url().to_owned();
    let (a, b) = (
        store::open_or_create(&url).await.unwrap(),
        store::open(&url).await.unwrap(),
    );
    let stop = [change(1, ConsentValue::No)];
    let start = [change(1, ConsentValue::Yes)];
    assert_eq!(
        a.record_once("twilio:SM1", &stop).await.unwrap(),
        Some(vec![Recorded::Changed])
    );
    assert_eq!(
        a.record_once("twilio:SM2", &start).await.unwrap(),
        Some(vec![Recorded::Changed])
    );
    for store in [&a, &b] {
        assert_eq!(store.record_once("twilio:SM1", &stop).await.unwrap(), None);
    }
    let address = stop[0].address.clone();
    assert_eq!(
        a.records(&address).await.unwrap()[0].value,
        ConsentValue::Yes
    );
    assert_eq!(a.history(&address).await.unwrap().len(), 2);
    // The same id under another provider's prefix is another message.
    assert!(a.record_once("vonage:SM1", &stop).await.unwrap().is_some());

    // Twenty retries of one new message at once, half on each node: one applies it.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(if i % 2 == 0 { &a } else { &b });
            tokio::spawn(async move {
                store
                    .record_once("twilio:SM3", &[change(1, ConsentValue::Yes)])
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut applied = 0;
    for task in tasks {
        applied += usize::from(task.await.unwrap().is_some());
    }
    assert_eq!(applied, 1);
    assert_eq!(a.history(&address).await.unwrap().len(), 4);
}

async fn concurrent_subject_ids_for_one_pair_agree(db: Db) {
    let url = db.url().to_owned();
    let store = store::open_or_create(&url).await.unwrap();
    let address = AddressPolicy::default()
        .normalize("same@example.org")
        .unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (store, address) = (Arc::clone(&store), address.clone());
            let scope: Scope = if i % 2 == 0 {
                Scope::All
            } else {
                "news".parse().unwrap()
            };
            tokio::spawn(async move {
                (
                    scope.clone(),
                    store.subject_id(&address, &scope).await.unwrap(),
                )
            })
        })
        .collect();
    let mut ids = std::collections::HashMap::new();
    for task in tasks {
        let (scope, id) = task.await.unwrap();
        assert_eq!(*ids.entry(scope.clone()).or_insert(id), id, "{scope}");
    }
    assert_eq!(ids.len(), 2);
    for (scope, id) in ids {
        assert_eq!(
            store.subject(id).await.unwrap(),
            Some((address.clone(), scope))
        );
    }
    assert_eq!(store.subject(999_999).await.unwrap(), None);
}

/// Lookups that arrive together are answered by one query on PostgreSQL: each caller
/// still gets its own subject, or none.
async fn concurrent_subject_lookups_each_get_their_own_answer(db: Db) {
    let store = store::open_or_create(db.url()).await.unwrap();
    let mut expected = Vec::new();
    for i in 0..100 {
        let address = AddressPolicy::default()
            .normalize(&format!("s{i}@example.org"))
            .unwrap();
        let id = store.subject_id(&address, &Scope::All).await.unwrap();
        expected.push((id, Some((address, Scope::All))));
        expected.push((id + 1_000_000, None));
    }
    let tasks: Vec<_> = expected
        .into_iter()
        .map(|(id, subject)| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { (store.subject(id).await.unwrap(), subject, id) })
        })
        .collect();
    for task in tasks {
        let (got, expected, id) = task.await.unwrap();
        assert_eq!(got, expected, "subject {id}");
    }
}

/// Two nodes (two stores on one database) write the same two keys at once, in opposite
/// orders: no write fails, and the history has exactly the changes that were reported as
/// changes, in an order that agrees with the current value.
async fn two_nodes_writing_the_same_keys_in_opposite_orders_keep_every_change(db: Db) {
    let a = store::open_or_create(db.url()).await.unwrap();
    let b = store::open(db.url()).await.unwrap();
    let pair =
        |first: usize, second: usize, value| vec![change(first, value), change(second, value)];
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let value = if i % 3 == 0 {
                ConsentValue::Yes
            } else {
                ConsentValue::No
            };
            let (store, changes) = match i % 2 {
                0 => (Arc::clone(&a), pair(1, 2, value)),
                _ => (Arc::clone(&b), pair(2, 1, value)),
            };
            tokio::spawn(async move { store.record(&changes).await.unwrap() })
        })
        .collect();
    let mut changed = 0;
    for task in tasks {
        changed += task
            .await
            .unwrap()
            .iter()
            .filter(|r| **r == Recorded::Changed)
            .count();
    }
    let mut logged = 0;
    for i in [1, 2] {
        let address = AddressPolicy::default()
            .normalize(&format!("r{i}@example.org"))
            .unwrap();
        let history = store_history(&a, &address).await;
        // Each entry differs from the one before it: unchanged values were not logged.
        assert!(
            history.windows(2).all(|w| w[0] != w[1]),
            "r{i}: {history:?}"
        );
        // The current value is the last one logged.
        let current = a.records(&address).await.unwrap()[0].value;
        assert_eq!(history.last(), Some(&current), "r{i}");
        logged += history.len();
    }
    assert_eq!(logged, changed);
    // The change feed, read in small pages from the start, has every entry once, and each
    // key's entries in the order of the history (the order of their commits), so that a
    // system that applies the feed in order ends with the current values.
    let mut fed: Vec<Vec<ConsentValue>> = vec![Vec::new(); 2];
    let mut ids = std::collections::HashSet::new();
    let mut position = optout_milter::store::FeedPosition::default();
    loop {
        let (entries, next) = b.history_since(position, 7).await.unwrap();
        for entry in &entries {
            assert!(ids.insert(entry.id), "entry {} read twice", entry.id);
            let i = usize::from(entry.change.address.as_str() == "r2@example.org");
            fed[i].push(entry.change.value);
        }
        if entries.is_empty() {
            break;
        }
        position = next;
    }
    assert_eq!(ids.len(), changed);
    for i in [1, 2] {
        let address = AddressPolicy::default()
            .normalize(&format!("r{i}@example.org"))
            .unwrap();
        assert_eq!(fed[i - 1], store_history(&a, &address).await, "r{i}");
    }
}

async fn store_history(
    store: &Arc<dyn store::ConsentStore>,
    address: &optout_milter::consent::Address,
) -> Vec<ConsentValue> {
    store
        .history(address)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.change.value)
        .collect()
}

async fn the_history_refuses_to_be_rewritten(db: Db) {
    let url = db.url().to_owned();
    let store = store::open_or_create(&url).await.unwrap();
    store.record(&[change(1, ConsentValue::No)]).await.unwrap();
    for sql in [
        "UPDATE consent_history SET value = 'y'",
        "DELETE FROM consent_history",
    ] {
        let error = db.execute(sql).await.unwrap_err();
        assert!(error.contains("append-only"), "{sql}: {error}");
    }
}

async fn ready(store: &optout_milter::store::index::IndexedStore) {
    let start = std::time::Instant::now();
    while !store.is_ready() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "the index never loaded"
        );
        tokio::task::yield_now().await;
    }
}

async fn the_index_sees_its_own_and_other_processes_writes_at_once(db: Db) {
    use optout_milter::store::index::IndexedStore;
    let url = db.url().to_owned();
    let plain = store::open_or_create(&url).await.unwrap();
    plain.record(&[change(1, ConsentValue::No)]).await.unwrap();
    let indexed = IndexedStore::wrap(store::open_or_create(&url).await.unwrap())
        .await
        .unwrap();
    ready(&indexed).await;
    let lookup = |i: usize| {
        let indexed = indexed.clone();
        async move {
            let address = AddressPolicy::default()
                .normalize(&format!("r{i}@example.org"))
                .unwrap();
            indexed
                .scoped_values(&address, Channel::Email, &Scope::All)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        lookup(1).await,
        [(Scope::All, ConsentValue::No)],
        "loaded at start"
    );
    assert_eq!(lookup(2).await, [], "no record");
    indexed
        .record(&[change(2, ConsentValue::No)])
        .await
        .unwrap();
    assert_eq!(
        lookup(2).await,
        [(Scope::All, ConsentValue::No)],
        "own write"
    );
    // Another process (here: another store on the same database) writes. On SQLite the
    // next lookup already knows, with no waiting; on PostgreSQL the other node's commit
    // reaches this one as a notification, so it knows within the propagation delay.
    plain.record(&[change(3, ConsentValue::No)]).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let seen = lookup(3).await;
        if seen == [(Scope::All, ConsentValue::No)] {
            break;
        }
        assert!(
            matches!(db, Db::Postgres(_)) && std::time::Instant::now() < deadline,
            "other process's write not seen: {seen:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Subject ids: created once, then the same from memory and from the store.
    let address = AddressPolicy::default()
        .normalize("r4@example.org")
        .unwrap();
    let first = indexed.subject_id(&address, &Scope::All).await.unwrap();
    assert_eq!(
        indexed.subject_id(&address, &Scope::All).await.unwrap(),
        first
    );
    assert_eq!(
        plain.subject_id(&address, &Scope::All).await.unwrap(),
        first
    );
    assert_eq!(
        plain.subject(first).await.unwrap(),
        Some((address, Scope::All))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_answers_from_memory_but_never_from_a_copy_it_cannot_refresh() {
    use optout_milter::store::index::IndexedStore;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("c.db").display());
    let indexed = IndexedStore::wrap(store::open_or_create(&url).await.unwrap())
        .await
        .unwrap();
    indexed
        .record(&[change(1, ConsentValue::No)])
        .await
        .unwrap();
    ready(&indexed).await;
    let known = AddressPolicy::default()
        .normalize("r1@example.org")
        .unwrap();
    let unknown = AddressPolicy::default()
        .normalize("r9@example.org")
        .unwrap();
    use sqlx::{Connection, SqliteConnection};
    let mut db = SqliteConnection::connect(&url).await.unwrap();
    // The current state disappears but the history stays: the index still knows both
    // answers without asking the store.
    sqlx::query("DROP TABLE consent")
        .execute(&mut db)
        .await
        .unwrap();
    assert!(indexed.records(&known).await.is_err(), "the table is gone");
    assert_eq!(
        indexed
            .scoped_values(&known, Channel::Email, &Scope::All)
            .await
            .unwrap(),
        [(Scope::All, ConsentValue::No)]
    );
    assert_eq!(
        indexed
            .scoped_values(&unknown, Channel::Email, &Scope::All)
            .await
            .unwrap(),
        []
    );
    // Now the history cannot be read: no answer, neither from memory nor from the store.
    sqlx::query("DROP TABLE consent_history")
        .execute(&mut db)
        .await
        .unwrap();
    for address in [&known, &unknown, &known] {
        assert!(
            indexed
                .scoped_values(address, Channel::Email, &Scope::All)
                .await
                .is_err(),
            "{address}"
        );
    }
    assert!(!indexed.is_ready());
}

/// A database that stops answering without closing the connection (a network partition)
/// leaves a read waiting for many minutes rather than failing, and no notification comes:
/// the index must stop answering from its copy within `STALE_AFTER`, although nothing told
/// it the store went away, while another node records an opt-out it cannot learn of.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_stops_answering_from_memory_when_the_database_falls_silent() {
    use optout_milter::store::index::{IndexedStore, STALE_AFTER};
    use std::time::{Duration, Instant};
    let test = "the_index_stops_answering_from_memory_when_the_database_falls_silent";
    let Some(db) = common::postgres::database(test).await else {
        return;
    };
    let other = store::open_or_create(&db.url).await.unwrap();
    let relay = common::postgres::Relay::start(&db.url).await;
    let indexed = IndexedStore::wrap(store::open(relay.url()).await.unwrap())
        .await
        .unwrap();
    ready(&indexed).await;
    let opt_out = change(1, ConsentValue::No);
    let lookup = || indexed.scoped_values(&opt_out.address, Channel::Email, &Scope::All);
    assert_eq!(lookup().await.unwrap(), [], "nothing recorded yet");

    relay.cut();
    other.record(std::slice::from_ref(&opt_out)).await.unwrap();
    // "Nothing recorded", from memory, is now wrong. An error, or no answer in time (the
    // milter's store_timeout), becomes a temporary failure at the milter.
    let deadline = Instant::now() + STALE_AFTER + Duration::from_secs(10);
    loop {
        match tokio::time::timeout(Duration::from_secs(1), lookup()).await {
            Ok(Ok(values)) if values.is_empty() => {}
            Ok(Ok(values)) => panic!("cannot have learnt of it: {values:?}"),
            Ok(Err(_)) | Err(_) => break,
        }
        assert!(
            Instant::now() < deadline,
            "still answering from a copy it cannot refresh"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The server's side of the silent connections is ended here, not when the test
    // process exits: one cut inside a statement would hold its snapshot, and with it the
    // feed of every other test's database on the cluster.
    let mut conn = db.connect().await;
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut conn)
    .await
    .unwrap();
}

/// The index must answer exactly what the store answers, whatever mix of values, scopes and
/// writers came before: checked against the store itself for every address and list.
async fn the_index_answers_exactly_what_the_store_answers(db: Db) {
    use optout_milter::store::index::IndexedStore;
    let url = db.url().to_owned();
    let plain = store::open_or_create(&url).await.unwrap();
    let lists: Vec<Scope> = ["*", "weekly", "deals"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut random_change = move || {
        let r = next();
        let mut c = change((r % 40) as usize, ConsentValue::ALL[(r >> 8) as usize % 11]);
        c.scope = lists_at((r >> 16) as usize % 3);
        c
    };
    fn lists_at(i: usize) -> Scope {
        ["*", "weekly", "deals"][i].parse().unwrap()
    }
    // Some history before the index loads, some after through it, some after through
    // another store on the same file (another process).
    for _ in 0..60 {
        plain.record(&[random_change()]).await.unwrap();
    }
    let indexed = IndexedStore::wrap(store::open_or_create(&url).await.unwrap())
        .await
        .unwrap();
    ready(&indexed).await;
    for round in 0..120 {
        let c = random_change();
        if round % 2 == 0 {
            indexed.record(&[c]).await.unwrap();
        } else {
            plain.record(&[c]).await.unwrap();
        }
    }
    for i in 0..42 {
        let address = AddressPolicy::default()
            .normalize(&format!("r{i}@example.org"))
            .unwrap();
        for list in &lists {
            let mut want = plain
                .scoped_values(&address, Channel::Email, list)
                .await
                .unwrap();
            want.sort_by(|a, b| a.0.cmp(&b.0));
            // Another process's last writes reach the index at once on SQLite, and within
            // the propagation delay on PostgreSQL (its notification, then the feed).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let mut got = indexed
                    .scoped_values(&address, Channel::Email, list)
                    .await
                    .unwrap();
                got.sort_by(|a, b| a.0.cmp(&b.0));
                if got == want {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "r{i} {list}: the index says {got:?}, the store {want:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Issue 13, item 3: history ids come from a sequence, and transactions commit in any
/// order. Here the transaction holding the lower id commits last, after the higher id was
/// already read by the follower: a feed that reads `id > last` skips it for good. The
/// index must see both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_misses_no_change_when_commits_come_in_reverse_order_of_ids() {
    use optout_milter::store::{FeedPosition, index::IndexedStore};
    use sqlx::Connection;
    let test = "the_feed_misses_no_change_when_commits_come_in_reverse_order_of_ids";
    let Some(db) = common::postgres::database(test).await else {
        return;
    };
    let plain = store::open_or_create(&db.url).await.unwrap();
    let start = plain.feed_position().await.unwrap();
    let indexed = IndexedStore::wrap(store::open(&db.url).await.unwrap())
        .await
        .unwrap();
    ready(&indexed).await;
    let address = |i: usize| {
        AddressPolicy::default()
            .normalize(&format!("r{i}@example.org"))
            .unwrap()
    };
    let write = |i: usize| {
        format!(
            "WITH c AS (INSERT INTO consent (address, channel, scope, value, source, updated_at)
                        VALUES ('r{i}@example.org', 'email', '*', 'n', 'cli', 0))
             INSERT INTO consent_history (address, channel, scope, value, source, recorded_at)
             VALUES ('r{i}@example.org', 'email', '*', 'n', 'cli', 0)"
        )
    };
    let (mut a, mut b) = (db.connect().await, db.connect().await);
    let mut late = a.begin().await.unwrap();
    let mut early = b.begin().await.unwrap();
    // `early` takes its transaction id first; `late` then takes the lower history id.
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *early)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(write(1)))
        .execute(&mut *late)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(write(2)))
        .execute(&mut *early)
        .await
        .unwrap();
    early.commit().await.unwrap();

    let is_blocked = |i: usize| {
        let (indexed, address) = (indexed.clone(), address(i));
        async move {
            indexed
                .scoped_values(&address, Channel::Email, &Scope::All)
                .await
                .unwrap()
                == [(Scope::All, ConsentValue::No)]
        }
    };
    let wait_blocked = |i: usize| async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !is_blocked(i).await {
            assert!(
                std::time::Instant::now() < deadline,
                "r{i}'s opt-out never reached the index"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    wait_blocked(2).await;
    late.commit().await.unwrap();
    wait_blocked(1).await;

    let ids: Vec<(String, i64)> =
        sqlx::query_as("SELECT address, id FROM consent_history ORDER BY id")
            .fetch_all(&mut a)
            .await
            .unwrap();
    assert_eq!(
        ids.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        ["r1@example.org", "r2@example.org"],
        "the later commit holds the lower id"
    );
    // The feed itself, read from the start: both changes, and a position past them.
    let (changes, next) = plain.changes_since(start, 100).await.unwrap();
    let mut keys: Vec<_> = changes.iter().map(|(k, _)| k.address.clone()).collect();
    keys.sort();
    assert_eq!(keys, ["r1@example.org", "r2@example.org"]);
    assert!(next > start && next > FeedPosition::default());
    let (again, _) = plain.changes_since(next, 100).await.unwrap();
    assert!(again.is_empty(), "{again:?}");
}

/// A long transaction on the database server holds back every change committed after it
/// began (nothing is lost, but other nodes see it late): `held` counts them for the
/// `feed_held` metrics, and they are read once it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_transaction_holds_back_the_feed_and_held_counts_it() {
    use optout_milter::store::Held;
    use sqlx::Connection;
    let test = "a_long_transaction_holds_back_the_feed_and_held_counts_it";
    let Some(db) = common::postgres::database(test).await else {
        return;
    };
    let plain = store::open_or_create(&db.url).await.unwrap();
    let start = plain.feed_position().await.unwrap();
    let mut other = db.connect().await;
    let mut long = other.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *long)
        .await
        .unwrap();
    let before = SystemTime::now();
    plain.record(&[change(1, ConsentValue::No)]).await.unwrap();
    let held = plain.held().await.unwrap();
    assert_eq!(held.changes, 1, "{held:?}");
    let oldest = held.oldest.unwrap();
    assert!(
        oldest + std::time::Duration::from_secs(1) >= before,
        "{held:?}"
    );
    let (changes, _) = plain.changes_since(start, 100).await.unwrap();
    assert!(
        changes.is_empty(),
        "read before the older transaction ended: {changes:?}"
    );

    long.rollback().await.unwrap();
    // Other tests' transactions elsewhere on the server may hold it a moment longer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while plain.held().await.unwrap() != Held::default() {
        assert!(std::time::Instant::now() < deadline, "still held");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (changes, _) = plain.changes_since(start, 100).await.unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
}

/// A token subject another node creates at the same moment (its insert not yet committed
/// when this node's statement began) is the one this node gets, not an error and not a
/// second id; and asking for a subject that exists writes nothing (no number is taken
/// from the sequence), as a milter does for every recipient it has not seen since it
/// started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_created_meanwhile_by_another_node_is_the_one_returned() {
    use sqlx::Connection;
    let test = "a_subject_created_meanwhile_by_another_node_is_the_one_returned";
    let Some(db) = common::postgres::database(test).await else {
        return;
    };
    let store = store::open_or_create(&db.url).await.unwrap();
    let address = AddressPolicy::default()
        .normalize("meanwhile@example.org")
        .unwrap();
    let mut other = db.connect().await;
    let mut node_b = other.begin().await.unwrap();
    let theirs: i64 = sqlx::query_scalar(
        "INSERT INTO token_subject (address, scope, created_at)
         VALUES ('meanwhile@example.org', '*', 0) RETURNING id",
    )
    .fetch_one(&mut *node_b)
    .await
    .unwrap();
    let asking = {
        let (store, address) = (Arc::clone(&store), address.clone());
        tokio::spawn(async move { store.subject_id(&address, &Scope::All).await })
    };
    // Wait until this node's statement waits for node B's row lock.
    let mut watch = db.connect().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'optout-milter'
               AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watch)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(!asking.is_finished(), "answered before node B committed");
        assert!(
            std::time::Instant::now() < deadline,
            "never waited for node B"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    node_b.commit().await.unwrap();
    let got = asking.await.unwrap().unwrap();
    assert_eq!(i64::try_from(got).unwrap(), theirs);
    assert_eq!(
        store.subject(got).await.unwrap(),
        Some((address.clone(), Scope::All))
    );

    let sequence = "SELECT last_value FROM token_subject_id_seq";
    let before: i64 = sqlx::query_scalar(sequence)
        .fetch_one(&mut watch)
        .await
        .unwrap();
    let again = store::open(&db.url).await.unwrap();
    for _ in 0..3 {
        assert_eq!(again.subject_id(&address, &Scope::All).await.unwrap(), got);
    }
    let after: i64 = sqlx::query_scalar(sequence)
        .fetch_one(&mut watch)
        .await
        .unwrap();
    assert_eq!(after, before, "a lookup took numbers from the sequence");
}

/// The roles of `deploy/postgresql/roles.sql` for a test's database, named after it (roles
/// are the cluster's).
struct Roles {
    owner: String,
    node: String,
    owner_url: String,
    node_url: String,
}

impl Roles {
    /// Drops the roles and what they own; the test's stores must be closed.
    async fn drop(self, db: &common::postgres::TestDb) {
        let Roles { owner, node, .. } = self;
        db.execute_script(&format!(
            "GRANT {node} TO CURRENT_USER; DROP OWNED BY {node}; DROP OWNED BY {owner}; DROP ROLE {owner}; DROP ROLE {node};"
        ))
        .await;
    }
}

/// Runs `deploy/postgresql/roles.sql` for `db`.
async fn deployed_roles(db: &common::postgres::TestDb) -> Roles {
    let (owner, node) = (
        format!("{}_owner", db.name()),
        format!("{}_node", db.name()),
    );
    let roles = include_str!("../deploy/postgresql/roles.sql")
        .replace("optout_owner", &owner)
        .replace("optout_milter", &node)
        .replace("DATABASE optout ", &format!("DATABASE {} ", db.name()));
    // The test's role may create roles; it must be a member of the owner to set the
    // owner's default privileges, as a superuser running the file is.
    let roles = roles.replacen(
        "GRANT CONNECT",
        &format!("GRANT {owner} TO CURRENT_USER;\nGRANT CONNECT"),
        1,
    );
    db.execute_script(&roles).await;
    Roles {
        owner_url: db.url_as(&owner, "change-me-owner"),
        node_url: db.url_as(&node, "change-me-milter"),
        owner,
        node,
    }
}

/// A fleet is upgraded one node at a time: once the owner's `init` has brought the
/// schema forward, a node still on the older version must start and work on it, and so
/// must a store after a package downgrade. Here the store records a migration this build
/// does not have.
async fn a_store_a_newer_version_migrated_still_opens_and_works(db: Db) {
    drop(store::open_or_create(db.url()).await.unwrap());
    let checksum = match db {
        Db::Sqlite { .. } => "X'00'",
        Db::Postgres(_) => "'\\x00'::bytea",
    };
    db.execute(&format!(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (999999, 'from a newer version', TRUE, {checksum}, 0)"
    ))
    .await
    .unwrap();
    let store = store::open(db.url()).await.unwrap();
    assert_eq!(
        store.record(&[change(1, ConsentValue::No)]).await.unwrap(),
        [Recorded::Changed]
    );
    drop(store);
    // `init` with the older version changes nothing and fails nothing either.
    let store = store::open_or_create(db.url()).await.unwrap();
    assert_eq!(
        store
            .records(&change(1, ConsentValue::No).address)
            .await
            .unwrap()[0]
            .value,
        ConsentValue::No
    );
}

/// A node of a newer version on a schema the owner has not brought forward yet: its role
/// may not change the schema, so it does not start, and says who must run `init`. Once
/// the owner has, it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_an_older_schema_says_the_owner_must_run_init() {
    let test = "a_node_on_an_older_schema_says_the_owner_must_run_init";
    let Some(db) = common::postgres::database(test).await else {
        return;
    };
    let roles = deployed_roles(&db).await;
    let (owner_url, node_url) = (roles.owner_url.clone(), roles.node_url.clone());
    drop(store::open_or_create(&owner_url).await.unwrap());
    // As the schema was before migration 5 (the owner's function for an undo).
    let mut owner = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&owner_url).await.unwrap()
    };
    for sql in [
        "DROP FUNCTION optout_empty",
        "DELETE FROM _sqlx_migrations WHERE version >= 5",
    ] {
        sqlx::query(sql).execute(&mut owner).await.unwrap();
    }
    let refused = store::open(&node_url)
        .await
        .err()
        .expect("the node must not start");
    let message = refused.to_string();
    assert!(
        matches!(
            refused,
            store::StoreError::SchemaBehind { have: 4, need, .. } if need >= 5
        ),
        "{message}"
    );
    assert!(
        message.contains("owner runs `optout-milter --store postgres://"),
        "{message}"
    );

    drop(store::open_or_create(&owner_url).await.unwrap());
    let store = store::open(&node_url).await.unwrap();
    store
        .restore(&[], &[change(2, ConsentValue::No)])
        .await
        .unwrap();
    drop((store, owner));
    roles.drop(&db).await;
}

/// Issue 13, item 6: the roles of `deploy/postgresql/roles.sql`. The owner creates the
/// tables (`init`); a node with the nodes' role then does all it must (record, history,
/// token subjects, the feed) and cannot delete consent, rewrite the history or change
/// the schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_deployed_roles_works_and_cannot_erase() {
    let test = "a_node_with_the_deployed_roles_works_and_cannot_erase";
    let Some(db) = common::postgres::database(test).await else {
        return;
    };
    let roles = deployed_roles(&db).await;
    let (owner_url, node_url) = (roles.owner_url.clone(), roles.node_url.clone());
    assert!(
        store::open(&node_url).await.is_err(),
        "no tables before init"
    );
    drop(store::open_or_create(&owner_url).await.unwrap());

    let store = store::open(&node_url).await.unwrap();
    let start = store.feed_position().await.unwrap();
    assert_eq!(
        store.record(&[change(1, ConsentValue::No)]).await.unwrap(),
        [Recorded::Changed]
    );
    assert_eq!(
        store.record(&[change(1, ConsentValue::Yes)]).await.unwrap(),
        [Recorded::Changed]
    );
    let address = AddressPolicy::default()
        .normalize("r1@example.org")
        .unwrap();
    assert_eq!(store.history(&address).await.unwrap().len(), 2);
    assert!(
        store
            .record_once("sms:roles", &[change(2, ConsentValue::No)])
            .await
            .unwrap()
            .is_some(),
        "the node's role records an inbound message's changes and its id"
    );
    // An undo back to no record, through the owner's function (the role may not DELETE).
    store
        .restore(&[], &[change(2, ConsentValue::No)])
        .await
        .unwrap();
    assert!(
        store
            .records(&change(2, ConsentValue::No).address)
            .await
            .unwrap()
            .is_empty()
    );
    let id = store.subject_id(&address, &Scope::All).await.unwrap();
    assert_eq!(
        store.subject(id).await.unwrap(),
        Some((address.clone(), Scope::All))
    );
    // The feed delivers a change once every older transaction of the cluster has ended
    // (other tests' too): wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (changes, _) = store.changes_since(start, 10).await.unwrap();
        if changes.len() == 4 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{changes:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    let mut conn = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&node_url).await.unwrap()
    };
    for sql in [
        "DELETE FROM consent",
        "DELETE FROM consent_history",
        "UPDATE consent_history SET value = 'y'",
        "TRUNCATE consent_history",
        "DELETE FROM token_subject",
        "DELETE FROM erasing",
        "DELETE FROM applied_message",
        "DROP TABLE consent",
        "ALTER TABLE consent_history DISABLE TRIGGER ALL",
        "CREATE TABLE intruder (x int)",
    ] {
        let result = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await;
        assert!(result.is_err(), "the node's role could run: {sql}");
    }
    assert_eq!(store.history(&address).await.unwrap().len(), 2);
    // Erasure is the one deletion the node may make, one address at a time, through the
    // owner's function (migrations/postgres/0003_erasure.sql).
    let erasure = optout_milter::consent::Erasure::new(vec![9; 32]);
    let erased = optout_milter::erase::erase(store.as_ref(), &erasure, &address, "test")
        .await
        .unwrap();
    assert_eq!(erased.history_deleted, 2);
    assert!(store.history(&address).await.unwrap().is_empty());
    assert_eq!(store.subject(id).await.unwrap(), None);
    drop(conn);
    drop(store);
    roles.drop(&db).await;
}

/// Issue 14, item 3: an erased address is gone from every table (records of every scope,
/// its history, its token subjects), its pseudonym keeps an opt-out with an "erased"
/// history entry, and the history still refuses every other deletion.
async fn erasure_deletes_the_address_everywhere_and_keeps_its_suppression(db: Db) {
    use optout_milter::consent::{Erasure, erasure::PREFIX};
    let store = store::open_or_create(db.url()).await.unwrap();
    let mut weekly = change(1, ConsentValue::Yes);
    weekly.scope = "weekly".parse().unwrap();
    store
        .record(&[
            change(1, ConsentValue::No),
            weekly,
            change(2, ConsentValue::No),
        ])
        .await
        .unwrap();
    let (gone, kept) = (
        AddressPolicy::default()
            .normalize("r1@example.org")
            .unwrap(),
        AddressPolicy::default()
            .normalize("r2@example.org")
            .unwrap(),
    );
    let subject = store.subject_id(&gone, &Scope::All).await.unwrap();
    let erasure = Erasure::new(vec![7; 32]);
    let erased = optout_milter::erase::erase(store.as_ref(), &erasure, &gone, "request 5")
        .await
        .unwrap();
    assert_eq!(erased.history_deleted, 2);
    assert!(store.records(&gone).await.unwrap().is_empty());
    assert!(store.history(&gone).await.unwrap().is_empty());
    assert_eq!(store.subject(subject).await.unwrap(), None);
    let pseudonym = erasure.pseudonym(&gone);
    assert!(pseudonym.as_str().starts_with(PREFIX));
    let suppression = store.records(&pseudonym).await.unwrap();
    assert_eq!(suppression.len(), 1);
    assert_eq!(suppression[0].value, ConsentValue::No);
    let history = store.history(&pseudonym).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].change.source, Source::Erasure);
    assert_eq!(history[0].change.evidence, "request 5");
    assert!(
        optout_milter::erase::is_erased(store.as_ref(), &erasure, &gone)
            .await
            .unwrap()
    );
    // Nothing else went, and the history still refuses to be rewritten.
    assert_eq!(store.history(&kept).await.unwrap().len(), 1);
    for sql in [
        "DELETE FROM consent_history WHERE address = 'r2@example.org'",
        "UPDATE consent_history SET value = 'y'",
    ] {
        assert!(db.execute(sql).await.is_err(), "{sql}");
    }
    // No row anywhere names the erased address.
    let (url, needle) = (db.url().to_owned(), "r1@example.org");
    let count = |table: &'static str| {
        let url = url.clone();
        async move {
            use sqlx::{AnyConnection, Connection};
            sqlx::any::install_default_drivers();
            let mut conn = AnyConnection::connect(&url).await.unwrap();
            let sql = format!("SELECT count(*) FROM {table} WHERE address = '{needle}'");
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut conn)
                .await
                .unwrap();
            n
        }
    };
    for table in ["consent", "consent_history", "token_subject", "erasing"] {
        assert_eq!(count(table).await, 0, "{table}");
    }
    // Lifted: the pseudonym decides nothing any more.
    assert!(
        optout_milter::erase::lift(store.as_ref(), &erasure, &gone, Source::Cli, "")
            .await
            .unwrap()
    );
    assert!(
        !optout_milter::erase::is_erased(store.as_ref(), &erasure, &gone)
            .await
            .unwrap()
    );
}
