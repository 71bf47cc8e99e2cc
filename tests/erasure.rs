//! Issue 14, item 3, through a real Postfix: an opted-out address is erased (gone from the
//! store, its history included) and mail to it is still refused; an import of `y` does not
//! bring it back; lifting the erasure does.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{
    mta::{Daemon, Mta, daemon_config, require, smtp_send},
    postfix::{PROGRAMS, Postfix},
};
use std::process::Command;

fn message(id: &str) -> String {
    format!(
        "From: News <news@example.com>\nTo: subscribers@example.com\nSubject: This week\n\
         Message-ID: <{id}>\n\nHello.\n"
    )
}

#[test]
fn an_erased_address_stays_refused_through_postfix_until_the_erasure_is_lifted() {
    let test = "an_erased_address_stays_refused_through_postfix_until_the_erasure_is_lifted";
    if !require(test, &PROGRAMS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The erasure key, made as the README says.
    let key = dir.path().join("erasure.key");
    let made = Command::new(env!("CARGO_BIN_EXE_optout-milter"))
        .args(["token", "keygen"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let config = daemon_config(
        dir.path(),
        "\n[consent]\nerasure_key = \"@DIR@/erasure.key\"\n",
    );
    let milter = Daemon::start(dir.path(), &config);
    milter.cli(&[
        "consent",
        "set",
        "ida@example.org",
        "--value",
        "n",
        "--evidence",
        "one-click",
    ]);
    let postfix = Postfix::start("erasure", &format!("inet:127.0.0.1:{}", milter.port));
    let send = |id: &str| {
        let sent = smtp_send(
            postfix.smtp_port,
            "news@example.com",
            &["ida@example.org", "stays@example.org"],
            &message(id),
        );
        assert_eq!(sent.rcpts[1].1.code, 250, "{sent:?}");
        sent.rcpts[0].1.code
    };

    let out = milter.cli(&[
        "consent",
        "erase",
        "Ida@Example.org",
        "--evidence",
        "request 12 by mail",
    ]);
    assert!(
        out.contains("erased: ida@example.org: 1 history entries deleted"),
        "{out}"
    );
    // Gone from the records and the history; the pseudonym keeps the refusal.
    let history = milter.cli(&["consent", "history", "ida@example.org"]);
    assert!(history.contains("no history"), "{history}");
    let get = milter.cli(&["consent", "get", "ida@example.org"]);
    assert!(get.contains("erased; mail to it is refused"), "{get}");
    // Still refused at RCPT, as before.
    assert_eq!(send("erased-1@test.example"), 550);

    // An import of y (an old CRM export, say) is recorded and reported, and changes nothing.
    let file = dir.path().join("old-crm.csv");
    std::fs::write(&file, "email\nida@example.org\n").unwrap();
    let imported = Command::new(env!("CARGO_BIN_EXE_optout-milter"))
        .arg("--config")
        .arg(&milter.config)
        .args(["consent", "import", "--value", "y"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(imported.status.success());
    let stderr = String::from_utf8_lossy(&imported.stderr);
    assert!(stderr.contains("1 rows are erased addresses"), "{stderr}");
    assert_eq!(send("erased-2@test.example"), 550);

    // Lifted: the address follows its records (the imported y) again.
    let out = milter.cli(&["consent", "erase", "--lift", "ida@example.org"]);
    assert!(out.contains("erasure lifted"), "{out}");
    assert_eq!(send("erased-3@test.example"), 250);
    postfix.wait_delivered("erased-3@test.example");
    milter.stop();
}
