//! Unsubscribing by mail through a real Postfix: to the `mailto:` address taken from a
//! delivered message's header, through the milter, through LMTP to the daemon, and through
//! the pipe transport and `optout-milter ingest`, each configured from `deploy/postfix/`.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{
    mta::{Daemon, Mta, daemon_config, free_port, require, smtp_send, unsubscribe_uri, wait_for},
    postfix::{PROGRAMS, Postfix},
};
use std::{fs, path::Path, process::Command, time::Duration};

/// The sections this test adds to [`DAEMON_CONFIG`].
const CONFIG: &str = r#"
[intake]
milter = @MILTER@
"#;

fn message(id: &str) -> String {
    format!(
        "From: News <news@example.com>\nTo: reader@example.org\nSubject: This week\nMessage-ID: <{id}>\n\nHello.\n"
    )
}

/// Sends a marketing message, returns the mailto address from its List-Unsubscribe.
fn mailto_from_delivered(postfix: &Postfix, rcpt: &str, id: &str) -> String {
    let sent = smtp_send(postfix.smtp_port, "news@example.com", &[rcpt], &message(id));
    assert_eq!(sent.rcpts[0].1.code, 250, "{sent:?}");
    let delivered = postfix.wait_delivered(id);
    let uri = unsubscribe_uri(&delivered.text, "mailto:");
    uri.strip_prefix("mailto:")
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned()
}

fn swaks(port: u16, from: &str, to: &str) {
    let out = Command::new("/usr/bin/swaks")
        .args([
            "--server",
            &format!("127.0.0.1:{port}"),
            "--from",
            from,
            "--to",
            to,
        ])
        .args([
            "--header",
            "Subject: unsubscribe",
            "--body",
            "Please unsubscribe me.",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn refused_next_time(postfix: &Postfix, rcpt: &str, id: &str) {
    let sent = smtp_send(postfix.smtp_port, "news@example.com", &[rcpt], &message(id));
    let reply = &sent.rcpts[0].1;
    assert_eq!(reply.code, 550, "{reply:?}");
}

#[test]
fn an_unsubscribe_mail_taken_by_the_milter_refuses_the_next_message() {
    let programs = [PROGRAMS.as_slice(), &["/usr/bin/swaks"]].concat();
    if !require(
        "an_unsubscribe_mail_taken_by_the_milter_refuses_the_next_message",
        &programs,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = daemon_config(dir.path(), CONFIG).replace("@MILTER@", "true");
    let milter = Daemon::start(dir.path(), &config);
    let postfix = Postfix::start("mailto-milter", &format!("inet:127.0.0.1:{}", milter.port));

    let mailto = mailto_from_delivered(&postfix, "reader@example.org", "mt-1@test.example");
    assert!(
        mailto.starts_with("unsubscribe+") && mailto.ends_with("@example.com"),
        "{mailto}"
    );
    // The person writes from an alias; the token decides whom to unsubscribe.
    swaks(postfix.smtp_port, "alias@other.example", &mailto);
    wait_for("the opt-out", Duration::from_secs(30), || {
        milter
            .cli(&["consent", "get", "reader@example.org"])
            .contains("\tn\tmailto\t")
            .then_some(())
    });
    refused_next_time(&postfix, "reader@example.org", "mt-2@test.example");
    // The unsubscribe mail itself was discarded, not relayed.
    assert!(
        !postfix
            .delivered()
            .iter()
            .any(|d| d.rcpts.iter().any(|r| r.starts_with("unsubscribe")))
    );
    milter.stop();
}

#[test]
fn an_unsubscribe_mail_through_the_pipe_transport_refuses_the_next_message() {
    let programs = [PROGRAMS.as_slice(), &["/usr/bin/swaks"]].concat();
    if !require(
        "an_unsubscribe_mail_through_the_pipe_transport_refuses_the_next_message",
        &programs,
    ) {
        return;
    }
    // ingest runs as an unprivileged user; it needs the store and the key.
    let dir = Path::new("/var/lib/optout-milter-tests/ingest");
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).unwrap();
    let config = daemon_config(dir, CONFIG).replace("@MILTER@", "false");
    let milter = Daemon::start(dir, &config);
    milter.cli(&["check-config"]);
    assert!(
        Command::new("chown")
            .args(["-R", "nobody"])
            .arg(dir)
            .status()
            .unwrap()
            .success()
    );

    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let master = fs::read_to_string(manifest.join("deploy/postfix/master.cf"))
        .unwrap()
        .replace("user=optout-milter", "user=nobody")
        .replace(
            "/usr/bin/optout-milter",
            env!("CARGO_BIN_EXE_optout-milter"),
        )
        .replace(
            "/etc/optout-milter/optout-milter.toml",
            &milter.config.to_string_lossy(),
        );
    // The deployed map routes to LMTP; switch it to its pipe entry.
    let map = fs::read_to_string(manifest.join("deploy/postfix/transport")).unwrap();
    let (lmtp, pipe) = (
        "\nunsubscribe@example.com    lmtp:",
        "\n#unsubscribe@example.com    optout:",
    );
    assert!(map.contains(lmtp) && map.contains(pipe), "{map}");
    let transport = dir.join("transport");
    fs::write(
        &transport,
        map.replace(lmtp, "\n#unsubscribe@example.com    lmtp:")
            .replace(pipe, "\nunsubscribe@example.com    optout:"),
    )
    .unwrap();
    let main = format!(
        "transport_maps = texthash:{}\noptout_destination_recipient_limit = 1\nrecipient_delimiter = +\n",
        transport.display()
    );
    let postfix = Postfix::start_with(
        "mailto-pipe",
        &format!("inet:127.0.0.1:{}", milter.port),
        &main,
        &master,
    );

    // ingest reads its config on every run: from now on it confirms through this Postfix.
    let confirmation = format!(
        "\n[intake.confirmation]\nrelay = \"127.0.0.1:{}\"\nfrom = \"Example News <no-reply@example.com>\"\n",
        postfix.smtp_port
    );
    let mut text = fs::read_to_string(&milter.config).unwrap();
    text.push_str(&confirmation);
    fs::write(&milter.config, text).unwrap();

    let mailto = mailto_from_delivered(&postfix, "reader@example.org", "mp-1@test.example");
    swaks(postfix.smtp_port, "reader@example.org", &mailto);
    postfix.wait_log(&["relay=optout", "status=sent (delivered via optout service"]);
    assert!(
        milter
            .cli(&["consent", "history", "reader@example.org"])
            .contains("\tweekly-news\tn\tmailto\t")
    );
    refused_next_time(&postfix, "reader@example.org", "mp-2@test.example");
    let confirmation = postfix.wait_delivered("Subject: You are unsubscribed");
    assert_eq!(confirmation.rcpts, ["reader@example.org"]);
    assert!(
        confirmation.text.contains("Auto-Submitted: auto-generated"),
        "{}",
        confirmation.text
    );
    assert!(
        confirmation
            .text
            .contains("Example News\" <no-reply@example.com>"),
        "{}",
        confirmation.text
    );
    wait_for("an empty queue", Duration::from_secs(30), || {
        postfix.queue_is_empty().then_some(())
    });
    milter.stop();
}

#[test]
fn an_unsubscribe_mail_over_lmtp_refuses_the_next_message() {
    let programs = [PROGRAMS.as_slice(), &["/usr/bin/swaks"]].concat();
    if !require(
        "an_unsubscribe_mail_over_lmtp_refuses_the_next_message",
        &programs,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lmtp_port = free_port();
    let config = daemon_config(
        dir.path(),
        &format!("\n[intake]\nmilter = false\nlmtp = \"inet:127.0.0.1:{lmtp_port}\"\n"),
    );
    let milter = Daemon::start(dir.path(), &config);
    wait_for("the LMTP intake to listen", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", lmtp_port)).ok()
    });
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let map = fs::read_to_string(manifest.join("deploy/postfix/transport")).unwrap();
    assert!(map.contains("lmtp:inet:127.0.0.1:2424"), "{map}");
    let transport = dir.path().join("transport");
    fs::write(
        &transport,
        map.replace("127.0.0.1:2424", &format!("127.0.0.1:{lmtp_port}")),
    )
    .unwrap();
    let main = format!(
        "transport_maps = texthash:{}\nrecipient_delimiter = +\n",
        transport.display()
    );
    let postfix = Postfix::start_with(
        "mailto-lmtp",
        &format!("inet:127.0.0.1:{}", milter.port),
        &main,
        "",
    );

    let mailto = mailto_from_delivered(&postfix, "reader@example.org", "ml-1@test.example");
    // Written from an alias: the token decides.
    swaks(postfix.smtp_port, "alias@other.example", &mailto);
    postfix.wait_log(&[
        &format!("relay=127.0.0.1[127.0.0.1]:{lmtp_port}"),
        "status=sent (250 2.0.0 ",
        "reader@example.org unsubscribed from weekly-news",
    ]);
    assert!(
        milter
            .cli(&["consent", "history", "reader@example.org"])
            .contains("\tweekly-news\tn\tmailto\t")
    );
    refused_next_time(&postfix, "reader@example.org", "ml-2@test.example");
    wait_for("an empty queue", Duration::from_secs(30), || {
        postfix.queue_is_empty().then_some(())
    });
    milter.stop();
}
