//! One test per reported fault, named after it, against the real daemon (and a real
//! Postfix where the fault showed there). Each comment says which report it answers.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{
    mta::{Daemon, Mta, require, smtp_send},
    postfix::{PROGRAMS, Postfix},
};

const CONFIG: &str = r#"
[milter]
socket = "inet:127.0.0.1:@PORT@"

[store]
url = "sqlite:@DIR@/consent.db"

[[classify.senders]]
sender = "news@example.com"
list = "weekly-news"
"#;

fn daemon(dir: &std::path::Path) -> Daemon {
    Daemon::start(dir, &CONFIG.replace("@DIR@", &dir.to_string_lossy()))
}

fn message(id: &str, extra_headers: &str) -> String {
    format!(
        "From: News <news@example.com>\nTo: subscribers@example.com\nSubject: This week\n\
         Message-ID: <{id}>\n{extra_headers}\nHello.\n"
    )
}

/// Issue 11, item 1: `"optedout"@example.org` and `<@relay.example:optedout@example.org>`
/// got "continue" from the milter and Postfix delivered them to `optedout@example.org`,
/// which had opted out. Every spelling Postfix delivers to that mailbox must be refused
/// (sender rule, at RCPT) or removed (list header, at end of message).
#[test]
fn other_spellings_of_an_opted_out_address_are_refused_through_postfix() {
    let test = "other_spellings_of_an_opted_out_address_are_refused_through_postfix";
    if !require(test, &PROGRAMS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let milter = daemon(dir.path());
    milter.cli(&["consent", "set", "optedout@example.org", "--value", "n"]);
    let postfix = Postfix::start("spellings", &format!("inet:127.0.0.1:{}", milter.port));
    let spellings = [
        "\"optedout\"@example.org",
        "\"opted\\out\"@example.org",
        "@relay.example:optedout@example.org",
        "@a.example,@b.example:\"OptedOut\"@Example.org",
    ];

    // Sender rule: each spelling is refused at RCPT; the other recipient gets the mail.
    let mut rcpts = spellings.to_vec();
    rcpts.push("stays@example.org");
    let sent = smtp_send(
        postfix.smtp_port,
        "news@example.com",
        &rcpts,
        &message("spell-1@test.example", ""),
    );
    for (rcpt, reply) in &sent.rcpts[..spellings.len()] {
        assert_eq!(reply.code, 550, "{rcpt}: {reply:?}");
        assert!(reply.text.starts_with("5.7.1 "), "{rcpt}: {reply:?}");
    }
    assert_eq!(sent.rcpts[spellings.len()].1.code, 250, "{sent:?}");
    let delivered = postfix.wait_delivered("spell-1@test.example");
    assert_eq!(delivered.rcpts, ["stays@example.org"]);

    // List header: each spelling is accepted at RCPT and removed at end of message.
    let sent = smtp_send(
        postfix.smtp_port,
        "app@shop.example.com",
        &rcpts,
        &message("spell-2@test.example", "X-Optout-List: deals\n"),
    );
    assert!(sent.rcpts.iter().all(|(_, r)| r.code == 250), "{sent:?}");
    let delivered = postfix.wait_delivered("spell-2@test.example");
    assert_eq!(delivered.rcpts, ["stays@example.org"]);
    milter.stop();
}

/// Issue 11, item 1: a recipient the milter cannot parse was let through silently on
/// marketing mail. It is refused with 5.1.3 (a retry would not make it parse); on
/// transactional mail it still goes through.
#[test]
fn an_unparseable_recipient_of_marketing_mail_is_refused_through_postfix() {
    let test = "an_unparseable_recipient_of_marketing_mail_is_refused_through_postfix";
    if !require(test, &PROGRAMS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let milter = daemon(dir.path());
    let postfix = Postfix::start("unparseable", &format!("inet:127.0.0.1:{}", milter.port));
    // Postfix accepts a local part longer than RFC 5321's 64 octets; the milter cannot key it.
    let bad = format!("{}@example.org", "a".repeat(65));
    let sent = smtp_send(
        postfix.smtp_port,
        "news@example.com",
        &[&bad, "stays@example.org"],
        &message("bad-1@test.example", ""),
    );
    let refused = &sent.rcpts[0].1;
    assert_eq!(refused.code, 550, "{sent:?}");
    assert!(refused.text.starts_with("5.1.3 "), "{refused:?}");
    let delivered = postfix.wait_delivered("bad-1@test.example");
    assert_eq!(delivered.rcpts, ["stays@example.org"]);

    let sent = smtp_send(
        postfix.smtp_port,
        "receipts@shop.example.com",
        &[&bad],
        &message("bad-2@test.example", ""),
    );
    assert_eq!(sent.rcpts[0].1.code, 250, "{sent:?}");
    milter.stop();
}
