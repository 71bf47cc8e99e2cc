//! PostgreSQL stopped and started under a running daemon (issue 13, item 4): while it is
//! down, nothing is acknowledged (one-click answers an error, the milter a temporary
//! failure, never acceptance of an opted-out recipient); once it is back, the daemon
//! catches up by itself and every opt-out it acknowledged is in the store.
//!
//! A binary of its own: it stops the server every other PostgreSQL test uses, and test
//! binaries run one after the other. It needs root (to run `pg_ctlcluster`).
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::mta::{Daemon, daemon_config, free_port, wait_for};
use indymilter_test::{Status, TestConnection};
use optout_milter::{
    config::{Config, Overrides},
    consent::AddressPolicy,
    store,
    unsubscribe::Unsubscribe,
};
use std::{
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

/// The milter's answer to RCPT `rcpt` of a weekly-news message, or `None` when the
/// session failed.
async fn rcpt(port: u16, rcpt: &str) -> Option<Status> {
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let mut conn = TestConnection::open(addr).await.ok()?;
    conn.connect(
        "client.example",
        "192.0.2.1:1234".parse::<std::net::SocketAddr>().unwrap(),
    )
    .await
    .ok()?;
    conn.mail(["<news@example.com>"]).await.ok()?;
    let status = conn.rcpt([format!("<{rcpt}>")]).await.ok()?;
    let _ = conn.close().await;
    Some(status)
}

fn cluster(action: &str) {
    let version = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .max_by_key(|v| v.parse::<u32>().unwrap_or(0))
        .unwrap();
    let out = Command::new("pg_ctlcluster")
        .args([version.as_str(), "main", action, "-m", "fast"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_ctlcluster {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_loses_no_acknowledged_opt_out() {
    let test = "postgres_restarted_under_load_loses_no_acknowledged_opt_out";
    if !common::mta::require(test, &["/usr/bin/pg_ctlcluster"]) {
        return;
    }
    let Some(db) = common::postgres::database(test).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let web = free_port();
    let config = daemon_config(
        dir.path(),
        &format!("[web]\nlisten = \"127.0.0.1:{web}\"\nrate_limit = 0\n"),
    )
    .replace(
        &format!("sqlite:{}/consent.db", dir.path().display()),
        &db.url,
    );
    let daemon = Daemon::start(dir.path(), &config);
    wait_for("the web front", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", web)).ok()
    });
    daemon.cli(&["consent", "set", "gone@example.org", "--value", "n"]);
    let refused = |s: Option<Status>| !matches!(s, Some(Status::Continue));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !refused(rcpt(daemon.port, "gone@example.org").await) {
        assert!(std::time::Instant::now() < deadline, "never refused");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Tokens minted as the daemon mints them, from its config and the shared database.
    let config = Config::load(&daemon.config, &Overrides::default()).unwrap();
    let unsubscribe = Unsubscribe::load(config.unsubscribe.clone().unwrap()).unwrap();
    let store = store::open(&db.url).await.unwrap();
    let mut tokens = Vec::new();
    for i in 0..2000 {
        let address = AddressPolicy::default()
            .normalize(&format!("reader{i}@example.org"))
            .unwrap();
        let subject = store
            .subject_id(&address, &"weekly-news".parse().unwrap())
            .await
            .unwrap();
        let token = unsubscribe.codec.mint(subject, SystemTime::now()).unwrap();
        tokens.push((address.as_str().to_owned(), token));
    }

    // Load: one-click POSTs, one after another, and milter sessions for the opted-out
    // address, all through the stop and the start.
    let done = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let (errors, accepted) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
    let posts = {
        let (done, acknowledged, errors) = (done.clone(), acknowledged.clone(), errors.clone());
        let tokens = tokens.clone();
        std::thread::spawn(move || {
            for (address, token) in tokens.iter().cycle() {
                if done.load(Ordering::Acquire) {
                    break;
                }
                let (status, _) = common::mta::http(
                    web,
                    "POST",
                    &format!("/u/{token}"),
                    &[("Content-Type", "application/x-www-form-urlencoded")],
                    "List-Unsubscribe=One-Click",
                );
                match status {
                    200 => acknowledged.lock().unwrap().push(address.clone()),
                    _ => *errors.lock().unwrap() += 1,
                }
            }
        })
    };
    let probes = {
        let (done, accepted) = (done.clone(), accepted.clone());
        let port = daemon.port;
        tokio::spawn(async move {
            let mut answers = 0u32;
            while !done.load(Ordering::Acquire) {
                if !refused(rcpt(port, "gone@example.org").await) {
                    *accepted.lock().unwrap() += 1;
                }
                answers += 1;
            }
            answers
        })
    };
    let count = || acknowledged.lock().unwrap().len();
    wait_for("opt-outs before the stop", Duration::from_secs(20), || {
        (count() >= 20).then_some(())
    });
    cluster("stop");
    let before = count();
    wait_for(
        "errors while the database is down",
        Duration::from_secs(30),
        || (*errors.lock().unwrap() >= 5).then_some(()),
    );
    cluster("start");
    wait_for("opt-outs after the start", Duration::from_secs(60), || {
        (count() >= before + 20).then_some(())
    });
    done.store(true, Ordering::Release);
    posts.join().unwrap();
    let answers = probes.await.unwrap();

    assert_eq!(
        *accepted.lock().unwrap(),
        0,
        "an opted-out recipient was accepted"
    );
    assert!(answers > 10, "the milter was probed {answers} times");
    // Every acknowledged opt-out is in the store.
    let acknowledged = acknowledged.lock().unwrap().clone();
    let stored: std::collections::HashSet<String> = sqlx::query_scalar(
        "SELECT address FROM consent WHERE scope = 'weekly-news' AND value = 'n'",
    )
    .fetch_all(&mut db.connect().await)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|a| !stored.contains(*a))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged opt-outs are not stored, e.g. {:?}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(5)]
    );
    daemon.stop();
}
