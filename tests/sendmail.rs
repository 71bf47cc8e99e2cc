//! optout-milter behind a real Sendmail 8.17 (a private instance built from
//! `deploy/sendmail/optout-milter.mc`), relaying to `smtp-sink`.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{
    mta::{Daemon, Mta, daemon_config, require, smtp_send, unsubscribe_uri, wait_for},
    sendmail::{PROGRAMS, Sendmail},
};
use std::{process::Command, time::Duration};

/// The sections this test adds to [`DAEMON_CONFIG`].
const CONFIG: &str = r#"
[intake]
"#;

fn message(id: &str, extra: &str) -> String {
    format!(
        "From: News <news@example.com>\nTo: list@example.com\nSubject: This week\nMessage-ID: <{id}>\n{extra}\nHello.\n"
    )
}

#[test]
fn sendmail_refuses_removes_injects_and_takes_unsubscribe_mail() {
    let programs = [PROGRAMS.as_slice(), &["/usr/bin/swaks"]].concat();
    if !require(
        "sendmail_refuses_removes_injects_and_takes_unsubscribe_mail",
        &programs,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let milter = Daemon::start(dir.path(), &daemon_config(dir.path(), CONFIG));
    milter.cli(&[
        "consent",
        "set",
        "gone@example.org",
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
    let sendmail = Sendmail::start("sendmail", &[("optout-milter", milter.port)]);

    // Sender rule: 550 5.7.1 at RCPT; the other recipient gets the message, with headers.
    let sent = smtp_send(
        sendmail.smtp_port,
        "news@example.com",
        &["gone@example.org", "stays@example.org"],
        &message("sm-1@test.example", ""),
    );
    let refused = &sent.rcpts[0].1;
    assert_eq!(refused.code, 550, "{refused:?}");
    assert!(
        refused.text.starts_with("5.7.1 ") && refused.text.contains("opted out"),
        "{refused:?}"
    );
    assert_eq!(sent.rcpts[1].1.code, 250);
    // Unlike Postfix, Sendmail has a queue id at RCPT already: the refusal is logged with it.
    let refusal = milter
        .log()
        .lines()
        .find(|l| l.contains("recipient refused"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        refusal.contains("queue_id=") && !refusal.contains("NOQUEUE"),
        "{refusal}"
    );
    let delivered = sendmail.wait_delivered("sm-1@test.example");
    assert_eq!(delivered.rcpts, ["stays@example.org"]);
    assert!(
        delivered
            .text
            .contains("\nList-Unsubscribe-Post: List-Unsubscribe=One-Click"),
        "{}",
        delivered.text
    );
    // Sendmail passes the folded header on as it was given.
    let mailto = unsubscribe_uri(&delivered.text, "mailto:");

    // List header: removal at end of message, and the header does not leave.
    let sent = smtp_send(
        sendmail.smtp_port,
        "app@shop.example.com",
        &["left-deals@example.org", "stays@example.org"],
        &message("sm-2@test.example", "X-Optout-List: deals\n"),
    );
    assert!(sent.rcpts.iter().all(|(_, r)| r.code == 250), "{sent:?}");
    let delivered = sendmail.wait_delivered("sm-2@test.example");
    assert_eq!(delivered.rcpts, ["stays@example.org"]);
    assert!(
        !delivered
            .text
            .to_ascii_lowercase()
            .contains("x-optout-list"),
        "{}",
        delivered.text
    );

    // Unsubscribe by mail, to the mailto address of the delivered message.
    let to = mailto
        .strip_prefix("mailto:")
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let out = Command::new("/usr/bin/swaks")
        .args([
            "--server",
            &format!("127.0.0.1:{}", sendmail.smtp_port),
            "--from",
            "someone@other.example",
            "--to",
            to,
        ])
        .args(["--header", "Subject: unsubscribe"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_for("the opt-out by mail", Duration::from_secs(30), || {
        milter
            .cli(&["consent", "get", "stays@example.org"])
            .contains("\tweekly-news\tn\tmailto\t")
            .then_some(())
    });
    let sent = smtp_send(
        sendmail.smtp_port,
        "news@example.com",
        &["stays@example.org"],
        &message("sm-3@test.example", ""),
    );
    assert_eq!(sent.rcpts[0].1.code, 550, "{sent:?}");
    wait_for("an empty queue", Duration::from_secs(30), || {
        sendmail.queue_is_empty().then_some(())
    });
    milter.stop();
}
