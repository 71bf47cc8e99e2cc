//! optout-milter behind a real Postfix (a private instance on loopback, configured from
//! `deploy/postfix/main.cf`), relaying to Postfix's `smtp-sink`.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{
    mta::{Daemon, Mta, free_port, http, require, smtp_send, unsubscribe_uri, wait_for},
    postfix::{PROGRAMS, Postfix},
};
use std::time::Duration;

const CONFIG: &str = r#"
[milter]
socket = "inet:127.0.0.1:@PORT@"

[store]
url = "sqlite:@DIR@/consent.db"

[[classify.senders]]
sender = "news@example.com"
list = "weekly-news"
"#;

fn milter(dir: &std::path::Path) -> Daemon {
    let milter = Daemon::start(dir, &CONFIG.replace("@DIR@", &dir.to_string_lossy()));
    milter.cli(&[
        "consent",
        "set",
        "Gone@Example.org",
        "--value",
        "n",
        "--scope",
        "weekly-news",
    ]);
    milter.cli(&[
        "consent",
        "set",
        "left-deals@example.org",
        "--value",
        "n",
        "--scope",
        "deals",
    ]);
    milter
}

fn message(id: &str, extra_headers: &str) -> String {
    format!(
        "From: News <news@example.com>\nTo: subscribers@example.com\nSubject: This week\n\
         Message-ID: <{id}>\n{extra_headers}\nHello.\n"
    )
}

#[test]
fn smtp_mail_reaches_only_the_recipients_who_did_not_opt_out() {
    if !require(
        "smtp_mail_reaches_only_the_recipients_who_did_not_opt_out",
        &PROGRAMS,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let milter = milter(dir.path());
    let postfix = Postfix::start("smtp", &format!("inet:127.0.0.1:{}", milter.port));

    // Sender rule: refused at RCPT, the other recipient gets the message.
    let sent = smtp_send(
        postfix.smtp_port,
        "news@example.com",
        &["gone@example.org", "stays@example.org"],
        &message("smtp-1@test.example", ""),
    );
    let (refused, accepted) = (&sent.rcpts[0].1, &sent.rcpts[1].1);
    assert_eq!(refused.code, 550, "{refused:?}");
    assert!(
        refused.text.starts_with("5.7.1 ") && refused.text.contains("opted out"),
        "{refused:?}"
    );
    assert_eq!(accepted.code, 250, "{accepted:?}");
    assert_eq!(sent.data.as_ref().map(|r| r.code), Some(250), "{sent:?}");
    let delivered = postfix.wait_delivered("smtp-1@test.example");
    assert_eq!(delivered.rcpts, ["stays@example.org"]);
    let logged = postfix.wait_log(&["milter-reject: RCPT from", "5.7.1", "gone@example.org"]);
    // Postfix opens the queue file only after the first accepted recipient, so a refusal at
    // RCPT has no queue id yet; the milter logs NOQUEUE, as Postfix does.
    let refusal = milter
        .log()
        .lines()
        .find(|l| l.contains("recipient refused"))
        .unwrap_or_default()
        .to_owned();
    assert!(refusal.contains("queue_id=\"NOQUEUE\""), "{refusal}");
    assert!(logged.contains("to=<gone@example.org>"), "{logged}");

    // List header: the opted-out recipient is removed at end of message, and the header
    // never leaves the MTA.
    let sent = smtp_send(
        postfix.smtp_port,
        "app@shop.example.com",
        &["left-deals@example.org", "stays@example.org"],
        &message("smtp-2@test.example", "X-Optout-List: deals\n"),
    );
    assert!(sent.rcpts.iter().all(|(_, r)| r.code == 250), "{sent:?}");
    let delivered = postfix.wait_delivered("smtp-2@test.example");
    assert_eq!(delivered.rcpts, ["stays@example.org"]);
    assert!(
        !delivered
            .text
            .to_ascii_lowercase()
            .contains("x-optout-list"),
        "{}",
        delivered.text
    );
    milter.stop();
}

#[test]
fn sendmail_command_mail_is_suppressed_without_sticking_in_the_queue() {
    if !require(
        "sendmail_command_mail_is_suppressed_without_sticking_in_the_queue",
        &PROGRAMS,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let milter = milter(dir.path());
    let postfix = Postfix::start("pickup", &format!("inet:127.0.0.1:{}", milter.port));

    postfix.sendmail(
        "news@example.com",
        &["gone@example.org", "stays@example.org"],
        &message("local-1@test.example", ""),
    );
    let delivered = postfix.wait_delivered("local-1@test.example");
    assert_eq!(delivered.rcpts, ["stays@example.org"]);
    wait_for("an empty queue", Duration::from_secs(60), || {
        postfix.queue_is_empty().then_some(())
    });
    let log = postfix.log();
    assert!(!log.contains("milter configuration error"), "{log}");
    assert!(!log.contains("to=<gone@example.org>, relay="), "{log}");
    milter.stop();
}

const WEB_CONFIG: &str = r#"
[unsubscribe]
https_base = "https://unsubscribe.example.com"
mailto = "unsubscribe@example.com"
generate_missing_key = true

[[unsubscribe.keys]]
id = 1
file = "@DIR@/token.key"

[web]
listen = "127.0.0.1:@WEB_PORT@"
"#;

#[test]
fn one_click_from_a_delivered_message_refuses_the_next_one() {
    if !require(
        "one_click_from_a_delivered_message_refuses_the_next_one",
        &PROGRAMS,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let web_port = free_port();
    let config = (CONFIG.to_owned() + WEB_CONFIG)
        .replace("@DIR@", &dir.path().to_string_lossy())
        .replace("@WEB_PORT@", &web_port.to_string());
    let milter = Daemon::start(dir.path(), &config);
    let postfix = Postfix::start("oneclick", &format!("inet:127.0.0.1:{}", milter.port));

    let sent = smtp_send(
        postfix.smtp_port,
        "news@example.com",
        &["reader@example.org"],
        &message("oc-1@test.example", ""),
    );
    assert_eq!(sent.rcpts[0].1.code, 250, "{sent:?}");
    let delivered = postfix.wait_delivered("oc-1@test.example");
    let uri = unsubscribe_uri(&delivered.text, "https:");
    let path = uri.strip_prefix("https://unsubscribe.example.com").unwrap();

    // As Gmail does it: a POST with the RFC 8058 body, no cookies, nothing else.
    let (status, body) = http(
        web_port,
        "POST",
        path,
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("User-Agent", "Mozilla/5.0 (compatible; Google-OneClick)"),
        ],
        "List-Unsubscribe=One-Click",
    );
    assert_eq!(status, 200, "{body}");

    let sent = smtp_send(
        postfix.smtp_port,
        "news@example.com",
        &["reader@example.org"],
        &message("oc-2@test.example", ""),
    );
    let refused = &sent.rcpts[0].1;
    assert_eq!(refused.code, 550, "{refused:?}");
    assert!(refused.text.contains("opted out"), "{refused:?}");
    let history = milter.cli(&["consent", "history", "reader@example.org"]);
    assert!(
        history.contains("\tweekly-news\tn\tone-click\t"),
        "{history}"
    );
    assert!(history.contains("Google-OneClick"), "{history}");
    milter.stop();
}
