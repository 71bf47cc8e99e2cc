//! The SQLite store under concurrent use: group commit must keep every write, answer each
//! caller with its own outcome, and keep the history in step with the current state.
#![allow(clippy::unwrap_used)] // tests fail loudly

use optout_milter::{
    consent::{AddressPolicy, Change, Channel, ConsentValue, Scope, Source},
    store::{self, Recorded},
};
use std::{sync::Arc, time::SystemTime};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_all_kept_and_answered_individually() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("c.db").display());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_subject_ids_for_one_pair_agree() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("c.db").display());
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

#[tokio::test]
async fn the_history_refuses_to_be_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("c.db").display());
    let store = store::open_or_create(&url).await.unwrap();
    store.record(&[change(1, ConsentValue::No)]).await.unwrap();
    use sqlx::{Connection, SqliteConnection};
    let mut db = SqliteConnection::connect(&url).await.unwrap();
    for sql in [
        "UPDATE consent_history SET value = 'y'",
        "DELETE FROM consent_history",
    ] {
        let error = sqlx::query(sql)
            .execute(&mut db)
            .await
            .unwrap_err()
            .to_string();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_sees_its_own_and_other_processes_writes_at_once() {
    use optout_milter::store::{ConsentStore, index::IndexedStore};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("c.db").display());
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
    // Another process (here: another store on the same file) writes; the next lookup
    // already knows, with no waiting.
    plain.record(&[change(3, ConsentValue::No)]).await.unwrap();
    assert_eq!(
        lookup(3).await,
        [(Scope::All, ConsentValue::No)],
        "other process's write"
    );
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
    use optout_milter::store::{ConsentStore, index::IndexedStore};
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

/// The index must answer exactly what the store answers, whatever mix of values, scopes and
/// writers came before: checked against the store itself for every address and list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_answers_exactly_what_the_store_answers() {
    use optout_milter::store::{ConsentStore, index::IndexedStore};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("c.db").display());
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
            let mut got = indexed
                .scoped_values(&address, Channel::Email, list)
                .await
                .unwrap();
            want.sort_by(|a, b| a.0.cmp(&b.0));
            got.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(got, want, "r{i} {list}");
        }
    }
}
