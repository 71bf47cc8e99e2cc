//! optout-milter behind a real Postfix (a private instance on loopback, configured from
//! `deploy/postfix/main.cf`), relaying to Postfix's `smtp-sink`.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{
    mta::{Daemon, require, smtp_send, wait_for},
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
