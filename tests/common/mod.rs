//! Test support: the real milter started in-process on port 0 over a fresh SQLite store,
//! and small helpers to record consent in it.
#![allow(dead_code)]

pub mod api;
pub mod intake;
pub mod mta;
pub mod opendkim;
pub mod postfix;
pub mod postgres;
pub mod sendmail;
pub mod webdriver;
pub mod webhook;

use optout_milter::{
    config::{Config, Overrides},
    consent::{AddressPolicy, Change, Channel, ConsentValue, Scope, Source},
    daemon::{self, App, Listeners},
    milter::Milter,
    store::{self, ConsentStore},
};
use std::{net::SocketAddr, sync::Arc, time::SystemTime};
use tempfile::TempDir;
use tokio::{sync::oneshot, task::JoinHandle};

/// The config every test starts from; `extra` is appended (TOML tables only).
pub const BASE_CONFIG: &str = r#"
[milter]
socket = "inet:127.0.0.1:0"

[[classify.senders]]
sender = "news@example.com"
list = "weekly-news"

[[classify.senders]]
sender = "*.promo.example.com"
list = "*"
"#;

/// A running milter and its store.
pub struct TestMilter {
    pub addr: SocketAddr,
    pub milter: Arc<Milter>,
    pub store: Arc<dyn ConsentStore>,
    pub db_url: String,
    pub dir: TempDir,
    /// The admin API's address, when `extra` has an `[api]` section.
    pub api: Option<SocketAddr>,
    /// The database under `OPTOUT_TEST_STORE=postgres`, dropped after the daemon.
    _postgres: Option<postgres::TestDb>,
    reload: tokio::sync::mpsc::Sender<()>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), daemon::DaemonError>>>,
}

/// Starts the milter with `BASE_CONFIG` and `milter_keys` added to its `[milter]` table and
/// `extra` tables after it (`@DIR@` in them is the test's temporary directory).
pub async fn start(milter_keys: &str, extra: &str) -> TestMilter {
    start_with(milter_keys, extra, |store| store).await
}

/// Like [`start`], with the milter's store wrapped by `wrap`.
pub async fn start_with(
    milter_keys: &str,
    extra: &str,
    wrap: impl FnOnce(Arc<dyn ConsentStore>) -> Arc<dyn ConsentStore>,
) -> TestMilter {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db_url, postgres) = postgres::fixture_store(format!(
        "sqlite:{}",
        dir.path().join("consent.db").display()
    ))
    .await;
    let text = BASE_CONFIG.replace("[milter]\n", &format!("[milter]\n{milter_keys}\n"))
        + &extra.replace("@DIR@", &dir.path().to_string_lossy());
    api::write_tokens(dir.path());
    webhook::write_secret(dir.path());
    api::write_erasure_key(dir.path());
    // In a file, as `serve` reads it, so that a reload can read it again.
    let path = dir.path().join("optout-milter.toml");
    std::fs::write(&path, text).expect("write the test config");
    let overrides = Overrides {
        store_url: Some(db_url.clone()),
        socket: None,
    };
    let config = Config::load(&path, &overrides).expect("test config");
    let store = store::open_or_create(&db_url).await.expect("store");
    // The daemon as `serve` assembles it, over the (possibly wrapped) store.
    let app = App::build(config, overrides, wrap(store.clone()))
        .await
        .expect("assemble");
    let listeners = Listeners::bind(app.config()).await.expect("bind");
    let addr = listeners.milter_addr().expect("tcp listener");
    let api = listeners.api_addr();
    let milter = app.milter().load_full();
    let (tx, rx) = oneshot::channel::<()>();
    let (reload, reloads) = tokio::sync::mpsc::channel(1);
    let task = tokio::spawn(daemon::run(app, listeners, reloads, async {
        let _ = rx.await;
    }));
    TestMilter {
        addr,
        milter,
        store,
        db_url,
        dir,
        api,
        _postgres: postgres,
        reload,
        shutdown: Some(tx),
        task: Some(task),
    }
}

impl TestMilter {
    /// Records `value` for `address` at `scope` as the CLI would.
    pub async fn set(&self, address: &str, scope: &str, value: ConsentValue) {
        let change = Change {
            address: AddressPolicy::default()
                .normalize(address)
                .expect("address"),
            channel: Channel::Email,
            scope: scope.parse::<Scope>().expect("scope"),
            value,
            source: Source::Cli,
            at: SystemTime::now(),
            evidence: "test".into(),
        };
        // Through the daemon's own store (its consent index in front), as the web front
        // and intake write: the next decision sees it at once on either backend. (A write
        // by another process reaches the index through the change feed: at once on SQLite,
        // within the propagation delay on PostgreSQL, tests/nodes.rs.)
        self.milter.store.record(&[change]).await.expect("record");
    }

    /// Asks the daemon to read its config file again, as SIGHUP does.
    pub async fn reload(&self) {
        self.reload
            .send(())
            .await
            .expect("the daemon takes reloads");
    }

    /// Stops the milter and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("milter task").expect("milter result");
        }
    }
}

/// Drops `tables` from the store at `url` (SQLite or PostgreSQL) under a running daemon,
/// to break it.
pub async fn drop_tables(url: &str, tables: &[&str]) {
    use sqlx::Connection;
    for table in tables {
        let sql = sqlx::AssertSqlSafe(format!("DROP TABLE {table}"));
        match url.starts_with("postgres") {
            true => {
                let mut db = sqlx::PgConnection::connect(url).await.expect("connect");
                sqlx::query(sql).execute(&mut db).await.expect("drop");
                db.close().await.expect("close");
            }
            false => {
                let mut db = sqlx::SqliteConnection::connect(url).await.expect("connect");
                sqlx::query(sql).execute(&mut db).await.expect("drop");
                db.close().await.expect("close");
            }
        }
    }
}
