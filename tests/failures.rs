//! How the MTAs fail when optout-milter does: with it down, Postfix
//! (`milter_default_action = tempfail`) and Sendmail (`F=T`) answer 4xx and deliver
//! nothing to anyone; a milter killed right after acknowledging an opt-out comes back
//! still enforcing it.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::mta::{Daemon, Mta, daemon_config, free_port, http, require, smtp_codes, smtp_send};
use common::{
    postfix::{self, Postfix},
    sendmail::{self, Sendmail},
};
use std::time::Duration;

/// The sections this test adds to [`DAEMON_CONFIG`].
const CONFIG: &str = r#"
[web]
listen = "127.0.0.1:@WEB_PORT@"
"#;

fn message(id: &str) -> String {
    format!(
        "From: News <news@example.com>\nTo: list@example.com\nSubject: This week\nMessage-ID: <{id}>\n\nHello.\n"
    )
}

fn config(dir: &std::path::Path, web_port: u16) -> String {
    daemon_config(dir, CONFIG).replace("@WEB_PORT@", &web_port.to_string())
}

/// With the milter down, every attempt gets a temporary failure and nothing is delivered.
fn milter_down(mta: &dyn Mta, milter: Daemon) {
    milter.stop();
    for (from, id) in [
        ("news@example.com", "down-1@test.example"),
        ("receipts@shop.example.com", "down-2@test.example"),
    ] {
        let codes = smtp_codes(
            mta.smtp_port(),
            from,
            &["a@example.org", "b@example.org"],
            &message(id),
        );
        let failed = codes.iter().find(|(_, code)| *code >= 400);
        assert!(
            matches!(failed, Some((_, 400..=499))),
            "{}: expected a temporary failure, got {codes:?}",
            mta.name()
        );
        assert!(
            !codes
                .iter()
                .any(|(step, code)| step == "end of data" && *code == 250),
            "{codes:?}"
        );
    }
    assert!(
        !mta.delivered()
            .iter()
            .any(|d| d.text.contains("down-1@test.example")
                || d.text.contains("down-2@test.example")),
        "{}: something was delivered without the milter",
        mta.name()
    );
}

#[test]
fn postfix_defers_everything_while_the_milter_is_down() {
    if !require(
        "postfix_defers_everything_while_the_milter_is_down",
        &postfix::PROGRAMS,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let milter = Daemon::start(dir.path(), &config(dir.path(), free_port()));
    let socket = format!("inet:127.0.0.1:{}", milter.port);
    let postfix = Postfix::start("down-postfix", &socket);
    milter_down(&postfix, milter);
    postfix.wait_log(&["connect to Milter service", &socket]);
    postfix.wait_log(&["milter-reject", "451 4.7.1"]);
}

#[test]
fn sendmail_defers_everything_while_the_milter_is_down() {
    if !require(
        "sendmail_defers_everything_while_the_milter_is_down",
        &sendmail::PROGRAMS,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let milter = Daemon::start(dir.path(), &config(dir.path(), free_port()));
    let sendmail = Sendmail::start("down-sendmail", &[("optout-milter", milter.port)]);
    milter_down(&sendmail, milter);
}

#[test]
fn an_acknowledged_opt_out_survives_a_milter_crash() {
    if !require(
        "an_acknowledged_opt_out_survives_a_milter_crash",
        &postfix::PROGRAMS,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let web_port = free_port();
    let mut milter = Daemon::start(dir.path(), &config(dir.path(), web_port));
    let postfix = Postfix::start("crash", &format!("inet:127.0.0.1:{}", milter.port));
    let minted = milter.cli(&[
        "token",
        "mint",
        "reader@example.org",
        "--list",
        "weekly-news",
    ]);
    let uri = minted
        .lines()
        .find_map(|l| l.strip_prefix("https: "))
        .unwrap()
        .to_owned();
    let path = uri.strip_prefix("https://unsubscribe.example.com").unwrap();
    common::mta::wait_for("the web front", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", web_port)).ok()
    });
    let (status, _) = http(
        web_port,
        "POST",
        path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "List-Unsubscribe=One-Click",
    );
    assert_eq!(status, 200);
    // Killed the moment after the 200: nothing may have been kept only in memory.
    milter.crash_and_restart();
    let sent = smtp_send(
        postfix.smtp_port,
        "news@example.com",
        &["reader@example.org", "other@example.org"],
        &message("crash-1@test.example"),
    );
    assert_eq!(sent.rcpts[0].1.code, 550, "{sent:?}");
    assert_eq!(sent.rcpts[1].1.code, 250, "{sent:?}");
    milter.stop();
}
