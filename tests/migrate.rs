//! `optout-milter store migrate` (issue 13, item 5): SQLite to a real PostgreSQL and back
//! gives the same export, history and token subjects; a re-run changes nothing; a target
//! that already holds other data is refused after the comparison.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use std::process::Command;

/// Runs the CLI with the test's config and `--store store`; (success, stdout, stderr).
fn cli(config: &std::path::Path, store: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_optout-milter"))
        .arg("--config")
        .arg(config)
        .args(["--store", store])
        .args(args)
        .env("OPTOUT_MILTER_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(config: &std::path::Path, store: &str, args: &[&str]) -> String {
    let (success, stdout, stderr) = cli(config, store, args);
    assert!(success, "{args:?}: {stderr}");
    stdout
}

#[tokio::test]
async fn sqlite_to_postgres_and_back_gives_the_same_store() {
    let test = "sqlite_to_postgres_and_back_gives_the_same_store";
    let Some(db) = common::postgres::database(test).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("optout-milter.toml");
    let text = common::mta::daemon_config(dir.path(), "").replace("@PORT@", "8899");
    std::fs::write(&config, text).unwrap();
    let sqlite = format!("sqlite:{}/first.db", dir.path().display());
    ok(&config, &sqlite, &["init"]);
    ok(
        &config,
        &sqlite,
        &["consent", "set", "jane@example.org", "--value", "n"],
    );
    ok(
        &config,
        &sqlite,
        &["consent", "set", "jane@example.org", "--value", "y"],
    );
    ok(
        &config,
        &sqlite,
        &[
            "consent",
            "set",
            "Bob@Example.org",
            "--value",
            "n",
            "--scope",
            "weekly-news",
            "--evidence",
            "ticket 7, \"quoted\"\ttab",
        ],
    );
    let minted = ok(
        &config,
        &sqlite,
        &[
            "token",
            "mint",
            "carol@example.org",
            "--list",
            "weekly-news",
        ],
    );
    let token = minted
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap()
        .to_owned();
    let export = |store: &str| {
        (
            ok(&config, store, &["consent", "export"]),
            ok(&config, store, &["consent", "history", "jane@example.org"]),
            ok(&config, store, &["token", "inspect", &token]),
        )
    };
    let before = export(&sqlite);

    let copied = ok(
        &config,
        &sqlite,
        &["store", "migrate", "--from", &sqlite, "--to", &db.url],
    );
    assert!(copied.contains("consent_history\t3 rows"), "{copied}");
    assert!(copied.contains("token_subject\t1 rows"), "{copied}");
    assert_eq!(export(&db.url), before);
    // Again: nothing changes, and it still verifies.
    let again = ok(
        &config,
        &sqlite,
        &["store", "migrate", "--from", &sqlite, "--to", &db.url],
    );
    assert_eq!(again, copied);
    // A new opt-out on PostgreSQL takes a new history id, not a copied one.
    ok(
        &config,
        &db.url,
        &["consent", "set", "dave@example.org", "--value", "n"],
    );

    let back = format!("sqlite:{}/back.db", dir.path().display());
    ok(
        &config,
        &sqlite,
        &["store", "migrate", "--from", &db.url, "--to", &back],
    );
    let (export_back, history_back, token_back) = export(&back);
    assert_eq!(
        (history_back, token_back),
        (before.1.clone(), before.2.clone())
    );
    assert_eq!(export_back, ok(&config, &db.url, &["consent", "export"]));
    assert!(export_back.contains("dave@example.org"));

    // A target with other data: the comparison refuses it.
    let other = format!("sqlite:{}/other.db", dir.path().display());
    ok(&config, &other, &["init"]);
    ok(
        &config,
        &other,
        &["consent", "set", "zed@example.org", "--value", "n"],
    );
    let (success, _, stderr) = cli(
        &config,
        &sqlite,
        &["store", "migrate", "--from", &sqlite, "--to", &other],
    );
    assert!(!success);
    assert!(stderr.contains("differs"), "{stderr}");
    // A source that does not exist is not created.
    let missing = format!("sqlite:{}/missing.db", dir.path().display());
    let (success, _, stderr) = cli(
        &config,
        &sqlite,
        &["store", "migrate", "--from", &missing, "--to", &other],
    );
    assert!(!success && stderr.contains("no store"), "{stderr}");
    assert!(!dir.path().join("missing.db").exists());
}

/// An SMS provider may retry a message after the store moved: the ids of the messages
/// already applied move with it, so the retry still records nothing (STOP, START, then
/// STOP's retry on the new store leaves the number subscribed).
#[tokio::test]
async fn applied_message_ids_move_with_the_store() {
    use optout_milter::{
        consent::{AddressPolicy, Change, Channel, ConsentValue, Scope, Source},
        store::{self, copy},
    };
    let test = "applied_message_ids_move_with_the_store";
    let Some(db) = common::postgres::database(test).await else {
        return;
    };
    let change = |value| Change {
        address: AddressPolicy::default()
            .normalize("jane@example.org")
            .unwrap(),
        channel: Channel::Email,
        scope: Scope::All,
        value,
        source: Source::SmsKeyword,
        at: std::time::SystemTime::now(),
        evidence: "test".into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite:{}/first.db", dir.path().display());
    let first = store::open_or_create(&sqlite).await.unwrap();
    assert!(
        first
            .record_once("twilio:SM1", &[change(ConsentValue::No)])
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        first
            .record_once("twilio:SM2", &[change(ConsentValue::Yes)])
            .await
            .unwrap()
            .is_some()
    );
    drop(first);

    let tallies = copy::copy(&sqlite, &db.url).await.unwrap();
    let applied = tallies
        .iter()
        .find(|t| t.table == "applied_message")
        .unwrap();
    assert_eq!(applied.rows, 2);
    let moved = store::open(&db.url).await.unwrap();
    assert_eq!(
        moved
            .record_once("twilio:SM1", &[change(ConsentValue::No)])
            .await
            .unwrap(),
        None
    );
    assert!(
        moved
            .record_once("twilio:SM3", &[change(ConsentValue::No)])
            .await
            .unwrap()
            .is_some()
    );
    drop(moved);

    let back = format!("sqlite:{}/back.db", dir.path().display());
    copy::copy(&db.url, &back).await.unwrap();
    let back = store::open(&back).await.unwrap();
    for id in ["twilio:SM1", "twilio:SM2", "twilio:SM3"] {
        assert_eq!(
            back.record_once(id, &[change(ConsentValue::Yes)])
                .await
                .unwrap(),
            None,
            "{id}"
        );
    }
}
