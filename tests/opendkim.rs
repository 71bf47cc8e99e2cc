//! optout-milter first, OpenDKIM second, behind a real Postfix: the unsubscribe headers are
//! added before signing, so the signature covers them, and an independent verifier
//! (dkimpy) accepts it.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{
    mta::{Daemon, Mta, daemon_config, require, smtp_send},
    opendkim,
    postfix::{PROGRAMS, Postfix},
};
use std::{fs, path::Path};

#[test]
fn opendkim_after_optout_milter_signs_both_unsubscribe_headers() {
    let programs = [PROGRAMS.as_slice(), opendkim::PROGRAMS.as_slice()].concat();
    if !require(
        "opendkim_after_optout_milter_signs_both_unsubscribe_headers",
        &programs,
    ) {
        return;
    }
    let dir = Path::new("/var/lib/optout-milter-tests/dkim");
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).unwrap();
    let (_dkim, dkim_port) = opendkim::start(dir);
    let milter_dir = tempfile::tempdir().unwrap();
    let milter = Daemon::start(milter_dir.path(), &daemon_config(milter_dir.path(), ""));
    let milters = format!("inet:127.0.0.1:{}, inet:127.0.0.1:{dkim_port}", milter.port);
    let postfix = Postfix::start("dkim", &milters);

    let message = "From: News <news@example.com>\nTo: reader@example.org\nSubject: This week\n\
                   Date: Sat, 28 Nov 2026 12:00:00 +0000\nMessage-ID: <dkim-1@test.example>\n\nHello.\n";
    let sent = smtp_send(
        postfix.smtp_port,
        "news@example.com",
        &["reader@example.org"],
        message,
    );
    assert_eq!(sent.data.as_ref().map(|r| r.code), Some(250), "{sent:?}");
    let delivered = postfix.wait_delivered("dkim-1@test.example");
    assert!(
        delivered
            .text
            .contains("\nList-Unsubscribe: <https://unsubscribe.example.com/u/"),
        "{}",
        delivered.text
    );
    assert!(
        delivered
            .text
            .contains("\nList-Unsubscribe-Post: List-Unsubscribe=One-Click"),
        "{}",
        delivered.text
    );

    let message = opendkim::message_of(&delivered.text);
    let (verified, signed) = opendkim::verify(dir, message);
    assert!(verified, "the signature does not verify:\n{message}");
    assert!(
        signed.contains(&"list-unsubscribe".to_owned()),
        "{signed:?}"
    );
    assert!(
        signed.contains(&"list-unsubscribe-post".to_owned()),
        "{signed:?}"
    );
    // The verifier really checks these headers: a changed link breaks the signature.
    let (tampered, _) = opendkim::verify(dir, &message.replacen("/u/", "/u/x", 1));
    assert!(!tampered, "a tampered List-Unsubscribe verified");
    milter.stop();
}
