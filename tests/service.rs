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

/// Issue 12, item 6: log lines of a milter connection carry its span (client, queue id),
/// and no token ever reaches the log, whichever way it came: minted for a header, posted
/// to one-click (valid or forged), mailed to the unsubscribe address over LMTP.
#[test]
fn logs_carry_the_connection_span_and_never_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let (web, lmtp) = (common::mta::free_port(), common::mta::free_port());
    let extra = format!(
        "[web]\nlisten = \"127.0.0.1:{web}\"\n[intake]\nlmtp = \"inet:127.0.0.1:{lmtp}\"\n\
         trusted_authserv_ids = [\"mx.example.com\"]\n"
    );
    let daemon = Daemon::start(dir.path(), &daemon_config(dir.path(), &extra));
    daemon.cli(&["consent", "set", "gone@example.org", "--value", "n"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let header = runtime.block_on(async {
        let mut conn = TestConnection::open(("127.0.0.1", daemon.port))
            .await
            .unwrap();
        let client: std::net::SocketAddr = "192.0.2.7:40000".parse().unwrap();
        conn.connect("client.example", client).await.unwrap();
        conn.mail(["<news@example.com>"]).await.unwrap();
        conn.macros(indymilter_test::MacroStage::Rcpt, [("i", "4ABC123")])
            .await
            .unwrap();
        let refused = conn.rcpt(["<gone@example.org>"]).await.unwrap();
        assert!(matches!(refused, Status::Reject { .. }));
        conn.rcpt(["<reader@example.org>"]).await.unwrap();
        let (actions, _) = conn.eom().await.unwrap();
        conn.close().await.unwrap();
        format!("{actions:?}")
    });
    let token = header
        .split("/u/")
        .nth(1)
        .map(|rest| rest[..34].to_owned())
        .expect("a minted token in the headers");
    let post = |path: String| {
        let _ = common::mta::http(web, "POST", &path, &[], "List-Unsubscribe=One-Click");
    };
    post(format!("/u/{token}"));
    let mut forged = token.clone().into_bytes();
    forged[20] = if forged[20] == b'a' { b'b' } else { b'a' };
    let forged = String::from_utf8(forged).unwrap();
    post(format!("/u/{forged}"));
    let mail = format!("From: reader@example.org\r\nSubject: unsubscribe {token}\r\n\r\nStop\r\n");
    common::mta::lmtp_send(
        lmtp,
        "reader@example.org",
        &[&format!("unsubscribe+{token}@example.com")],
        &mail,
    );
    wait_for("the opt-out by mail", Duration::from_secs(10), || {
        daemon.log().contains("unsubscribed by mail").then_some(())
    });
    let log = daemon.log();
    for secret in [&token, &forged] {
        assert!(
            !log.to_lowercase().contains(secret.as_str()),
            "a token in the log:\n{log}"
        );
    }
    let refusal = log
        .lines()
        .find(|l| l.contains("recipient refused"))
        .unwrap();
    assert!(refusal.contains("milter{client=\"192.0.2.7\" "), "{log}");
    assert!(refusal.contains("queue_id=\"4ABC123\""), "{refusal}");
    assert!(log.contains("optout-milter started"), "{log}");
    daemon.stop();
}

/// `--log-format json`: every line a JSON object, the start-up line with the version.
#[test]
fn json_logs_are_one_object_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::mta::free_port();
    let config = dir.path().join("optout-milter.toml");
    std::fs::write(
        &config,
        daemon_config(dir.path(), "").replace("@PORT@", &port.to_string()),
    )
    .unwrap();
    let log = dir.path().join("json.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_optout-milter"))
        .arg("--config")
        .arg(&config)
        .args(["--log-format", "json", "serve", "--init"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let text = wait_for("the start-up line", Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("optout-milter started").then_some(text)
    });
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    for line in text.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value.get("level").is_some(), "{line}");
    }
    let started = text
        .lines()
        .find(|l| l.contains("optout-milter started"))
        .unwrap();
    assert!(started.contains(env!("CARGO_PKG_VERSION")), "{started}");
}

/// Issue 12, item 7: after a known run, a scrape of /metrics shows its exact counts.
#[test]
fn metrics_count_exactly_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let (web, metrics) = (common::mta::free_port(), common::mta::free_port());
    let extra = format!(
        "[web]\nlisten = \"127.0.0.1:{web}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"
    );
    let daemon = Daemon::start(dir.path(), &daemon_config(dir.path(), &extra));
    daemon.cli(&["consent", "set", "gone@example.org", "--value", "n"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut conn = TestConnection::open(("127.0.0.1", daemon.port))
            .await
            .unwrap();
        // Transactional: one message.
        conn.mail(["<receipts@shop.example.com>"]).await.unwrap();
        conn.rcpt(["<gone@example.org>"]).await.unwrap();
        conn.eom().await.unwrap();
        // Sender rule: gone refused at RCPT, stays gets a per-recipient header.
        conn.mail(["<news@example.com>"]).await.unwrap();
        conn.rcpt(["<gone@example.org>"]).await.unwrap();
        conn.rcpt(["<stays@example.org>"]).await.unwrap();
        conn.eom().await.unwrap();
        // List header: gone removed at end of message, stays gets a header.
        conn.mail(["<app@shop.example.com>"]).await.unwrap();
        conn.rcpt(["<gone@example.org>"]).await.unwrap();
        conn.rcpt(["<stays@example.org>"]).await.unwrap();
        conn.header("X-Optout-List", "deals").await.unwrap();
        conn.eom().await.unwrap();
        conn.close().await.unwrap();
    });
    let mint = daemon.cli(&[
        "token",
        "mint",
        "reader@example.org",
        "--list",
        "weekly-news",
    ]);
    let token = mint
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap();
    let (status, _) = common::mta::http(
        web,
        "POST",
        &format!("/u/{token}"),
        &[],
        "List-Unsubscribe=One-Click",
    );
    assert_eq!(status, 200);
    let (status, text) = common::mta::http(metrics, "GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    for line in [
        "optout_milter_messages_total{kind=\"transactional\"} 1",
        "optout_milter_messages_total{kind=\"marketing\"} 2",
        "optout_milter_recipients_total{action=\"refused\",list=\"weekly-news\",reason=\"opted-out\"} 1",
        "optout_milter_recipients_total{action=\"removed\",list=\"deals\",reason=\"opted-out\"} 1",
        "optout_milter_unsubscribe_headers_total{kind=\"per-recipient\"} 2",
        "optout_milter_opt_outs_total{source=\"one-click\"} 1",
        "optout_milter_http_requests_total{route=\"/u/{token}\",status=\"200\"} 1",
        "optout_milter_store_errors_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    }
    daemon.stop();
}

/// Issue 17, item 2: under `Type=notify`, systemd counts the service started when it says
/// READY=1, so READY=1 must come only once the milter's socket takes connections; a
/// reload is RELOADING=1 then READY=1, a stop STOPPING=1.
#[test]
fn readiness_is_told_to_systemd_once_the_sockets_listen() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify");
    let socket = UnixDatagram::bind(&notify).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let port = common::mta::free_port();
    let config = dir.path().join("optout-milter.toml");
    std::fs::write(
        &config,
        daemon_config(dir.path(), "").replace("@PORT@", &port.to_string()),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_optout-milter"))
        .arg("--config")
        .arg(&config)
        .args(["serve", "--init"])
        .env("NOTIFY_SOCKET", &notify)
        .env("OPTOUT_MILTER_LOG", "warn")
        .spawn()
        .unwrap();
    let next = || {
        let mut buffer = [0u8; 512];
        let n = socket
            .recv(&mut buffer)
            .expect("a notification within 30 s");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    };
    let ready = next();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "READY=1 before the milter listens"
    );
    let kill = |name: &str| {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    kill("HUP");
    assert_eq!(next(), "RELOADING=1");
    assert!(next().lines().any(|l| l == "READY=1"));
    kill("TERM");
    assert_eq!(next(), "STOPPING=1");
    assert!(child.wait().unwrap().success());
}

/// Issue 17, item 2: the shipped unit passes `systemd-analyze verify` and scores 2.0 or
/// lower in `systemd-analyze security` (lower is safer); it says `Type=notify`, which
/// `readiness_is_told_to_systemd_once_the_sockets_listen` holds the daemon to.
#[test]
fn the_unit_verifies_and_is_hardened() {
    let analyze = "/usr/bin/systemd-analyze";
    if !common::mta::require_programs("the_unit_verifies_and_is_hardened", &[analyze]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("optout-milter.service");
    let text = include_str!("../deploy/systemd/optout-milter.service");
    assert!(text.contains("\nType=notify\n") && text.contains("\nUMask=0027\n"));
    // As installed, but with the binary this build made.
    std::fs::write(
        &unit,
        text.replace(
            "/usr/bin/optout-milter",
            env!("CARGO_BIN_EXE_optout-milter"),
        ),
    )
    .unwrap();
    // The manuals it names are installed by the package; scripts/package-test.sh verifies
    // the installed unit with them.
    let verify = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = Command::new(analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    let score: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for optout-milter.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no score in {report}"));
    assert!(score <= 2.0, "exposure {score}:\n{report}");
}

/// The unit starts the daemon again after a failure, forever, so that a node whose
/// database is down at boot or failing over comes back by itself; but not after exit 78
/// (EX_CONFIG), which `serve` gives for what only a person can mend. Each case below is
/// `serve` as the unit runs it, and its status is checked against the unit's own lines.
#[test]
fn serve_exits_78_only_for_what_starting_again_cannot_mend() {
    let unit = include_str!("../deploy/systemd/optout-milter.service");
    let setting = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key}= in the unit"))
    };
    assert_eq!(setting("Restart"), "on-failure");
    assert_eq!(setting("StartLimitIntervalSec"), "0", "never give up");
    let not_restarted: i32 = setting("RestartPreventExitStatus").parse().unwrap();

    let serve = |dir: &Path, config_text: &str| {
        let config = dir.join("optout-milter.toml");
        std::fs::write(&config, config_text.replace("@PORT@", "0")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_optout-milter"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("OPTOUT_MILTER_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let good = daemon_config(dir.path(), "");
    let cases = [
        (
            "a config that is not TOML",
            "[milter\n".to_owned(),
            true,
            "TOML parse error",
        ),
        (
            "a store that was never created",
            good.clone(),
            true,
            "there is no store",
        ),
        (
            "a token key file that is missing (the store is there)",
            good.replace(
                "generate_missing_key = true",
                "generate_missing_key = false",
            ),
            true,
            "token.key does not exist",
        ),
        (
            "a database server that does not answer",
            good.replace(
                &format!("sqlite:{}/consent.db", dir.path().display()),
                "postgres://optout:secret@127.0.0.1:1/optout",
            ),
            false,
            // The cause, not only that the pool gave up waiting.
            "Connection refused",
        ),
    ];
    for (what, text, needs_an_operator, says) in cases {
        if what.ends_with("(the store is there)") {
            let init = Command::new(env!("CARGO_BIN_EXE_optout-milter"))
                .arg("--config")
                .arg(dir.path().join("optout-milter.toml"))
                .arg("init")
                .output()
                .unwrap();
            assert!(init.status.success(), "{init:?}");
        }
        let (code, stderr) = serve(dir.path(), &text);
        let code = code.unwrap_or_else(|| panic!("{what}: killed by a signal"));
        assert_ne!(code, 0, "{what}: {stderr}");
        assert_eq!(
            code == not_restarted,
            needs_an_operator,
            "{what}: exit {code}: {stderr}"
        );
        assert!(stderr.contains(says), "{what}: {stderr}");
    }
}
