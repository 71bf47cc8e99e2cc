//! Several MTA nodes, one consent list (issue 13): two real daemons on one real
//! PostgreSQL database. An opt-out recorded through one node is enforced by the other,
//! and a link minted on one works on the other.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::mta::{Daemon, daemon_config, free_port, wait_for};
use indymilter_test::{Status, TestConnection};
use std::{path::Path, time::Duration};

/// A node: the shared daemon config with a web front, on the database at `url`, with the
/// token key at `key`.
fn node(dir: &Path, url: &str, key: &Path) -> (Daemon, u16) {
    let web_port = free_port();
    let config = daemon_config(dir, "[web]\nlisten = \"127.0.0.1:@WEB_PORT@\"\n")
        .replace(&format!("sqlite:{}/consent.db", dir.display()), url)
        .replace(
            &format!("{}/token.key", dir.display()),
            &key.to_string_lossy(),
        )
        .replace("@WEB_PORT@", &web_port.to_string());
    let daemon = Daemon::start(dir, &config);
    wait_for("the web front", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", web_port)).ok()
    });
    (daemon, web_port)
}

/// The milter's answer on `port` to RCPT `rcpt` of a weekly-news message.
async fn rcpt(port: u16, rcpt: &str) -> Status {
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let mut conn = TestConnection::open(addr).await.unwrap();
    conn.connect(
        "client.example",
        "192.0.2.1:1234".parse::<std::net::SocketAddr>().unwrap(),
    )
    .await
    .unwrap();
    conn.mail(["<news@example.com>"]).await.unwrap();
    let status = conn.rcpt([format!("<{rcpt}>")]).await.unwrap();
    conn.close().await.unwrap();
    status
}

/// Waits (with a deadline) until node `port` refuses `address`.
async fn until_refused(port: u16, address: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match rcpt(port, address).await {
            Status::Continue => assert!(
                std::time::Instant::now() < deadline,
                "the other node never refused {address}"
            ),
            _ => return,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_out_on_one_node_is_enforced_by_the_other() {
    let test = "an_opt_out_on_one_node_is_enforced_by_the_other";
    let Some(db) = common::postgres::database(test).await else {
        return;
    };
    let shared = tempfile::tempdir().unwrap();
    let key = shared.path().join("token.key");
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Node A creates the tables and the key; B shares both.
    let (a, a_web) = node(a_dir.path(), &db.url, &key);
    let (b, b_web) = node(b_dir.path(), &db.url, &key);
    assert_eq!(rcpt(b.port, "reader@example.org").await, Status::Continue);

    // A link minted on B, followed on A (one-click): B refuses the next RCPT.
    let out = b.cli(&[
        "token",
        "mint",
        "reader@example.org",
        "--list",
        "weekly-news",
    ]);
    let token = out.lines().find_map(|l| l.strip_prefix("token: ")).unwrap();
    let (status, _) = common::mta::http(
        a_web,
        "POST",
        &format!("/u/{token}"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "List-Unsubscribe=One-Click",
    );
    assert_eq!(status, 200);
    until_refused(b.port, "reader@example.org").await;
    assert!(
        a.cli(&["consent", "history", "reader@example.org"])
            .contains("one-click"),
        "the trail names the one-click"
    );

    // The CLI on B records an opt-out: A refuses it.
    b.cli(&["consent", "set", "other@example.org", "--value", "n"]);
    until_refused(a.port, "other@example.org").await;

    // The links of each node work on the other: a token minted on A, opened on B's page.
    let out = a.cli(&[
        "token",
        "mint",
        "third@example.org",
        "--list",
        "weekly-news",
    ]);
    let token = out.lines().find_map(|l| l.strip_prefix("token: ")).unwrap();
    let (status, _) = common::mta::http(b_web, "GET", &format!("/u/{token}"), &[], "");
    assert_eq!(status, 200);
    assert_eq!(rcpt(a.port, "third@example.org").await, Status::Continue);
    a.stop();
    b.stop();
}

/// Issue 14, item 2, with several nodes: both nodes have the same webhook; one delivers
/// at a time (the store's lease), so no change is sent by both; when that node stops, the
/// other carries on from the shared cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_delivers_the_webhooks_and_the_other_takes_over() {
    use common::webhook::{self, Receiver};
    let test = "one_node_delivers_the_webhooks_and_the_other_takes_over";
    let Some(db) = common::postgres::database(test).await else {
        return;
    };
    let receiver = Receiver::start();
    let shared = tempfile::tempdir().unwrap();
    let key = shared.path().join("token.key");
    let start = |dir: &Path| {
        webhook::write_secret(dir);
        let config = daemon_config(dir, &webhook::config(&receiver.url(), "shared-hook"))
            .replace(&format!("sqlite:{}/consent.db", dir.display()), &db.url)
            .replace(
                &format!("{}/token.key", dir.display()),
                &key.to_string_lossy(),
            );
        Daemon::start(dir, &config)
    };
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start(a_dir.path());
    let b = start(b_dir.path());
    let accepted = |address: &str| {
        receiver.seen(|s| {
            s.accepted
                .values()
                .filter(|(e, _)| e["data"]["address"] == address)
                .map(|(_, times)| *times)
                .sum::<usize>()
        })
    };
    for i in 0..10 {
        let node = if i % 2 == 0 { &a } else { &b };
        node.cli(&[
            "consent",
            "set",
            &format!("n{i}@example.org"),
            "--value",
            "n",
        ]);
    }
    wait_for("ten events", Duration::from_secs(30), || {
        (0..10)
            .all(|i| accepted(&format!("n{i}@example.org")) >= 1)
            .then_some(())
    });
    receiver.seen(|s| {
        let twice: Vec<_> = s.accepted.iter().filter(|(_, (_, n))| *n > 1).collect();
        assert!(twice.is_empty(), "sent by both nodes: {twice:?}");
        assert_eq!(s.bad_signatures, 0);
    });
    // Whichever node delivered, stop A: B (the deliverer already, or once A's lease is
    // released with its connection) delivers the next change.
    a.stop();
    b.cli(&["consent", "set", "after@example.org", "--value", "n"]);
    wait_for(
        "the change after A stopped",
        Duration::from_secs(30),
        || (accepted("after@example.org") >= 1).then_some(()),
    );
    b.stop();
}
