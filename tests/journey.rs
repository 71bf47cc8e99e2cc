//! The whole journey, once on Postfix and once on Sendmail, as a postmaster would tell it:
//!
//! 1. A marketing message goes out with both unsubscribe headers, signed by OpenDKIM after
//!    optout-milter; the signature verifies and covers both headers.
//! 2. Alice clicks one-click: her mail client POSTs to the URI in the delivered message.
//! 3. The next marketing message to Alice is refused, while a receipt still reaches her.
//! 4. Bob unsubscribes by mail, writing from another address to the `mailto:` URI of his
//!    delivered message; the next marketing message to him is refused too.
//! 5. `consent history` shows both, with their evidence.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{
    mta::{
        Daemon, Mta, daemon_config, free_port, http, require, smtp_send, unsubscribe_uri, wait_for,
    },
    opendkim,
    postfix::{self, Postfix},
    sendmail::{self, Sendmail},
};
use std::{fs, path::Path, process::Command, time::Duration};

/// The sections this test adds to [`DAEMON_CONFIG`].
const CONFIG: &str = r#"
[web]
listen = "127.0.0.1:@WEB_PORT@"

[intake]
"#;

fn marketing(id: &str, to: &str) -> String {
    format!(
        "From: Example News <news@example.com>\nTo: {to}\nSubject: This week\n\
         Date: Sat, 28 Nov 2026 12:00:00 +0000\nMessage-ID: <{id}>\n\nThis week's news.\n"
    )
}

fn receipt(id: &str, to: &str) -> String {
    format!(
        "From: Shop <receipts@shop.example.com>\nTo: {to}\nSubject: Your receipt\nMessage-ID: <{id}>\n\nThanks.\n"
    )
}

/// The parts of one journey: the milter (with its web front) and OpenDKIM.
struct World {
    milter: Daemon,
    web_port: u16,
    dkim_dir: std::path::PathBuf,
    _dkim: opendkim::OpenDkim,
    dkim_port: u16,
    _dir: tempfile::TempDir,
    /// The store under `OPTOUT_TEST_STORE=postgres`, dropped after the daemon.
    _postgres: Option<common::postgres::TestDb>,
}

fn world(name: &str) -> World {
    let dkim_dir = Path::new("/var/lib/optout-milter-tests").join(format!("journey-{name}"));
    let _ = fs::remove_dir_all(&dkim_dir);
    fs::create_dir_all(&dkim_dir).unwrap();
    let (dkim, dkim_port) = opendkim::start(&dkim_dir);
    let dir = tempfile::tempdir().unwrap();
    let web_port = free_port();
    let sqlite = format!("sqlite:{}/consent.db", dir.path().display());
    let (store, postgres) = common::postgres::fixture_store_blocking(sqlite.clone());
    let config = daemon_config(dir.path(), CONFIG)
        .replace("@WEB_PORT@", &web_port.to_string())
        .replace(&sqlite, &store);
    let milter = Daemon::start(dir.path(), &config);
    wait_for("the web front", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", web_port)).ok()
    });
    World {
        milter,
        web_port,
        dkim_dir,
        _dkim: dkim,
        dkim_port,
        _dir: dir,
        _postgres: postgres,
    }
}

fn journey(world: &World, mta: &dyn Mta) {
    let port = mta.smtp_port();
    let name = mta.name();

    // 1. Signed marketing with both headers.
    let sent = smtp_send(
        port,
        "news@example.com",
        &["alice@example.org"],
        &marketing("j1@test.example", "alice@example.org"),
    );
    assert_eq!(
        sent.data.as_ref().map(|r| r.code),
        Some(250),
        "{name}: {sent:?}"
    );
    let to_alice = mta.wait_delivered("j1@test.example");
    let message = opendkim::message_of(&to_alice.text);
    assert!(
        message.contains("\nList-Unsubscribe-Post: List-Unsubscribe=One-Click"),
        "{name}: {message}"
    );
    let (verified, signed) = opendkim::verify(&world.dkim_dir, message);
    assert!(
        verified,
        "{name}: the DKIM signature does not verify:\n{message}"
    );
    for header in ["list-unsubscribe", "list-unsubscribe-post"] {
        assert!(
            signed.iter().any(|h| h == header),
            "{name}: {header} not signed: {signed:?}"
        );
    }

    // 2. Alice's one-click, as Gmail sends it.
    let uri = unsubscribe_uri(message, "https:");
    let path = uri.strip_prefix("https://unsubscribe.example.com").unwrap();
    let (status, body) = http(
        world.web_port,
        "POST",
        path,
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("User-Agent", "Mozilla/5.0 (compatible; Google-OneClick)"),
        ],
        "List-Unsubscribe=One-Click",
    );
    assert_eq!(status, 200, "{name}: {body}");

    // 3. Marketing to Alice is refused; her receipt still arrives.
    let sent = smtp_send(
        port,
        "news@example.com",
        &["alice@example.org"],
        &marketing("j2@test.example", "alice@example.org"),
    );
    assert_eq!(sent.rcpts[0].1.code, 550, "{name}: {sent:?}");
    let sent = smtp_send(
        port,
        "receipts@shop.example.com",
        &["alice@example.org"],
        &receipt("j3@test.example", "alice@example.org"),
    );
    assert_eq!(
        sent.data.as_ref().map(|r| r.code),
        Some(250),
        "{name}: {sent:?}"
    );
    let delivered = mta.wait_delivered("j3@test.example");
    assert_eq!(delivered.rcpts, ["alice@example.org"]);

    // 4. Bob unsubscribes by mail from another address.
    smtp_send(
        port,
        "news@example.com",
        &["bob@example.org"],
        &marketing("j4@test.example", "bob@example.org"),
    );
    let to_bob = mta.wait_delivered("j4@test.example");
    let mailto = unsubscribe_uri(opendkim::message_of(&to_bob.text), "mailto:");
    let address = mailto
        .strip_prefix("mailto:")
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let out = Command::new("/usr/bin/swaks")
        .args([
            "--server",
            &format!("127.0.0.1:{port}"),
            "--from",
            "bob.smith@home.example",
            "--to",
            address,
        ])
        .args([
            "--header",
            "Subject: unsubscribe",
            "--header",
            "Message-ID: <bob-unsub@home.example>",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_for("Bob's opt-out", Duration::from_secs(30), || {
        world
            .milter
            .cli(&["consent", "get", "bob@example.org"])
            .contains("\tn\tmailto\t")
            .then_some(())
    });
    let sent = smtp_send(
        port,
        "news@example.com",
        &["bob@example.org"],
        &marketing("j5@test.example", "bob@example.org"),
    );
    assert_eq!(sent.rcpts[0].1.code, 550, "{name}: {sent:?}");

    // 5. The audit trail.
    let alice = world
        .milter
        .cli(&["consent", "history", "alice@example.org"]);
    assert!(
        alice.contains("\tweekly-news\tn\tone-click\t")
            && alice.contains("client=127.0.0.1")
            && alice.contains("Google-OneClick"),
        "{name}: {alice}"
    );
    let bob = world.milter.cli(&["consent", "history", "bob@example.org"]);
    assert!(
        bob.contains("\tweekly-news\tn\tmailto\t")
            && bob.contains("message-id=<bob-unsub@home.example>"),
        "{name}: {bob}"
    );
    assert!(
        bob.contains("from=<bob.smith@home.example>"),
        "{name}: {bob}"
    );
    wait_for("an empty queue", Duration::from_secs(30), || {
        mta.queue_is_empty().then_some(())
    });
}

#[test]
fn the_whole_journey_on_postfix() {
    let programs = [
        postfix::PROGRAMS.as_slice(),
        opendkim::PROGRAMS.as_slice(),
        &["/usr/bin/swaks"],
    ]
    .concat();
    if !require("the_whole_journey_on_postfix", &programs) {
        return;
    }
    let world = world("postfix");
    let milters = format!(
        "inet:127.0.0.1:{}, inet:127.0.0.1:{}",
        world.milter.port, world.dkim_port
    );
    let postfix = Postfix::start("journey-postfix", &milters);
    journey(&world, &postfix);
}

#[test]
fn the_whole_journey_on_sendmail() {
    let programs = [
        sendmail::PROGRAMS.as_slice(),
        opendkim::PROGRAMS.as_slice(),
        &["/usr/bin/swaks"],
    ]
    .concat();
    if !require("the_whole_journey_on_sendmail", &programs) {
        return;
    }
    let world = world("sendmail");
    let sendmail = Sendmail::start(
        "journey-sendmail",
        &[
            ("optout-milter", world.milter.port),
            ("opendkim", world.dkim_port),
        ],
    );
    journey(&world, &sendmail);
}
