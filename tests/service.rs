//! The daemon as a service (issue 12): reload on SIGHUP, shutdown on SIGTERM, Unix
//! sockets that the MTA's own user can use and that a second instance cannot steal.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{
    mta::{Daemon, Mta, daemon_config, require, smtp_send, wait_for},
    postfix::{PROGRAMS, Postfix},
};
use indymilter_test::{Status, TestConnection};
use std::{os::unix::fs::PermissionsExt, path::Path, process::Command, time::Duration};

fn signal(daemon: &Daemon, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &daemon.pid().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The reply to RCPT TO:<jane@example.org> of a message from `sender`, on `conn`.
async fn rcpt_status(conn: &mut TestConnection, sender: &str) -> Status {
    conn.mail([format!("<{sender}>")]).await.unwrap();
    let status = conn.rcpt(["<jane@example.org>"]).await.unwrap();
    conn.abort().await.unwrap();
    status
}

const PROMO_RULE: &str =
    "\n[[classify.senders]]\nsender = \"promo@shop.example.com\"\nlist = \"*\"\n";

/// A sender rule added to the file applies to connections opened after SIGHUP; a
/// connection already open keeps the configuration it began with.
#[test]
fn sighup_applies_a_new_rule_to_new_connections_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = daemon_config(dir.path(), "");
    let mut daemon = Daemon::start(dir.path(), &config);
    daemon.cli(&["consent", "set", "jane@example.org", "--value", "n"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let addr = ("127.0.0.1", daemon.port);
    runtime.block_on(async {
        let mut before = TestConnection::open(addr).await.unwrap();
        assert_eq!(
            rcpt_status(&mut before, "promo@shop.example.com").await,
            Status::Continue
        );

        let text = std::fs::read_to_string(&daemon.config).unwrap() + PROMO_RULE;
        std::fs::write(&daemon.config, text).unwrap();
        signal(&daemon, "HUP");
        wait_for("the reload", Duration::from_secs(10), || {
            daemon
                .log()
                .contains("configuration reloaded")
                .then_some(())
        });
        assert!(daemon.log().contains("[classify]"), "{}", daemon.log());

        let mut after = TestConnection::open(addr).await.unwrap();
        assert!(matches!(
            rcpt_status(&mut after, "promo@shop.example.com").await,
            Status::Reject { .. }
        ));
        // The connection from before keeps its snapshot.
        assert_eq!(
            rcpt_status(&mut before, "promo@shop.example.com").await,
            Status::Continue
        );
        before.close().await.unwrap();
        after.close().await.unwrap();
    });
    assert_eq!(daemon.try_exit(), None, "SIGHUP ended the daemon");
    daemon.stop();
}

/// A broken file on SIGHUP: the error names the key, the running configuration stays, and
/// the process lives on. A changed socket is reported as needing a restart.
#[test]
fn sighup_with_a_broken_config_keeps_the_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = daemon_config(dir.path(), PROMO_RULE);
    let mut daemon = Daemon::start(dir.path(), &config);
    daemon.cli(&["consent", "set", "jane@example.org", "--value", "n"]);
    let good = std::fs::read_to_string(&daemon.config).unwrap();
    std::fs::write(
        &daemon.config,
        good.replace("[milter]\n", "[milter]\non_stor_error = \"accept\"\n"),
    )
    .unwrap();
    signal(&daemon, "HUP");
    wait_for("the failed reload", Duration::from_secs(10), || {
        daemon.log().contains("reload failed").then_some(())
    });
    assert!(daemon.log().contains("on_stor_error"), "{}", daemon.log());
    // A new socket needs a restart: reported, and the old one keeps serving.
    let moved = good.replace(&format!("127.0.0.1:{}", daemon.port), "127.0.0.1:1");
    std::fs::write(&daemon.config, moved).unwrap();
    signal(&daemon, "HUP");
    wait_for("the second reload", Duration::from_secs(10), || {
        daemon
            .log()
            .contains("takes effect only after a restart")
            .then_some(())
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut conn = TestConnection::open(("127.0.0.1", daemon.port))
            .await
            .unwrap();
        let status = rcpt_status(&mut conn, "promo@shop.example.com").await;
        assert!(matches!(status, Status::Reject { .. }), "{status:?}");
        conn.close().await.unwrap();
    });
    assert_eq!(daemon.try_exit(), None);
    daemon.stop();
}

/// Unix sockets: created with the configured mode and group, refused to a second instance
/// while the first answers, and removed on SIGTERM, after which the daemon exits 0.
#[test]
fn unix_sockets_are_kept_from_a_second_instance_and_removed_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    let milter_sock = dir.path().join("milter.sock");
    let lmtp_sock = dir.path().join("lmtp.sock");
    let config = daemon_config(
        dir.path(),
        &format!(
            "[web]\nlisten = \"127.0.0.1:@PORT@\"\n\
             [intake]\nlmtp = \"unix:{}\"\nlmtp_socket_mode = \"0600\"\n",
            lmtp_sock.display()
        ),
    )
    .replace(
        "socket = \"inet:127.0.0.1:@PORT@\"",
        &format!(
            "socket = \"unix:{}\"\nsocket_mode = \"0660\"\nsocket_group = \"0\"",
            milter_sock.display()
        ),
    );
    let mut daemon = Daemon::start(dir.path(), &config);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&milter_sock), 0o660);
    assert_eq!(mode(&lmtp_sock), 0o600);

    // A second instance with the same sockets (and a web port of its own).
    let other = dir.path().join("second.toml");
    let text = std::fs::read_to_string(&daemon.config).unwrap();
    let web = format!("127.0.0.1:{}", daemon.port);
    let free = format!("127.0.0.1:{}", common::mta::free_port());
    std::fs::write(&other, text.replace(&web, &free)).unwrap();
    let second = Command::new(env!("CARGO_BIN_EXE_optout-milter"))
        .arg("--config")
        .arg(&other)
        .args(["serve"])
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another process answers"), "{stderr}");
    std::os::unix::net::UnixStream::connect(&milter_sock).expect("the first still answers");

    signal(&daemon, "TERM");
    let status = daemon.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    assert!(!milter_sock.exists() && !lmtp_sock.exists());
    assert!(daemon.log().contains("stopped"), "{}", daemon.log());
}

/// Postfix's smtpd and cleanup run as user `postfix`: through a Unix socket of mode 0660
/// and group `postfix`, they reach the milter and opted-out recipients are refused.
#[test]
fn postfix_as_user_postfix_uses_the_unix_socket() {
    if !require("postfix_as_user_postfix_uses_the_unix_socket", &PROGRAMS) {
        return;
    }
    // Postfix must be able to reach the socket's folder; a tempdir is root's only.
    let base = Path::new("/var/tmp/optout-milter-tests/unix-socket-milter");
    let _ = std::fs::remove_dir_all(base);
    std::fs::create_dir_all(base).unwrap();
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = base.join("milter.sock");
    let config = daemon_config(base, "[web]\nlisten = \"127.0.0.1:@PORT@\"\n").replace(
        "socket = \"inet:127.0.0.1:@PORT@\"",
        &format!(
            "socket = \"unix:{}\"\nsocket_group = \"postfix\"",
            socket.display()
        ),
    );
    let daemon = Daemon::start(base, &config);
    daemon.cli(&["consent", "set", "gone@example.org", "--value", "n"]);
    let postfix = Postfix::start("unix-socket", &format!("unix:{}", socket.display()));
    let sent = smtp_send(
        postfix.smtp_port,
        "news@example.com",
        &["gone@example.org", "stays@example.org"],
        "From: news@example.com\nSubject: x\nMessage-ID: <unix-1@test.example>\n\nHi.\n",
    );
    assert_eq!(sent.rcpts[0].1.code, 550, "{sent:?}");
    assert_eq!(sent.rcpts[1].1.code, 250, "{sent:?}");
    let delivered = postfix.wait_delivered("unix-1@test.example");
    assert_eq!(delivered.rcpts, ["stays@example.org"]);
    daemon.stop();
}

/// SIGTERM with a transaction in flight: new connections are no longer taken, the open
/// message completes with its verdict, and then the daemon exits 0.
#[test]
fn sigterm_lets_a_transaction_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), &daemon_config(dir.path(), ""));
    daemon.cli(&[
        "consent",
        "set",
        "gone@example.org",
        "--value",
        "n",
        "--scope",
        "deals",
    ]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut conn = TestConnection::open(("127.0.0.1", daemon.port))
            .await
            .unwrap();
        conn.mail(["<app@shop.example.com>"]).await.unwrap();
        conn.rcpt(["<gone@example.org>"]).await.unwrap();
        conn.rcpt(["<stays@example.org>"]).await.unwrap();
        signal(&daemon, "TERM");
        wait_for("the drain", Duration::from_secs(10), || {
            daemon
                .log()
                .contains("letting transactions in flight finish")
                .then_some(())
        });
        conn.header("X-Optout-List", "deals").await.unwrap();
        let (actions, status) = conn.eom().await.unwrap();
        assert_eq!(status, Status::Continue);
        assert!(
            actions.has_delete_recipient("<gone@example.org>"),
            "{actions:?}"
        );
        // New connections are not served any more.
        let late = tokio::time::timeout(
            Duration::from_secs(2),
            TestConnection::open(("127.0.0.1", daemon.port)),
        )
        .await;
        assert!(
            !matches!(late, Ok(Ok(_))),
            "a new connection was served during shutdown"
        );
        let _ = conn.close().await;
    });
    let status = daemon.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
}
