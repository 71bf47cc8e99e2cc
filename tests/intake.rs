//! The sample unsubscribe mails under `tests/intake/`, each with its expected outcome in
//! `cases.toml`, through the intake core; then the milter path with indymilter-test.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use base64::Engine;
use common::intake::{IntakeFixture, intake_fixture};
use indymilter_test::{EomAction, Status, TestConnection};
use optout_milter::{
    consent::{AddressPolicy, ConsentValue, Scope},
    intake::{Envelope, Outcome},
};
use serde::Deserialize;
use std::{
    path::Path,
    time::{Duration, SystemTime},
};

/// The `[intake]` keys of these tests.
const INTAKE: &str = r#"trusted_authserv_ids = ["mx.test.example"]"#;

#[derive(Deserialize)]
struct Cases {
    case: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    file: String,
    sender: Option<String>,
    recipient: Option<String>,
    expect: String,
    address: Option<String>,
    scope: Option<String>,
    found_in: Option<String>,
    reason: Option<String>,
}

async fn fixture() -> IntakeFixture {
    intake_fixture(INTAKE).await
}

/// Fills the placeholders of a sample.
fn fill(text: &[u8], token: &str, old: &str) -> Vec<u8> {
    let mut forged = token.to_owned().into_bytes();
    forged[12] = if forged[12] == b'q' { b'r' } else { b'q' };
    let forged = String::from_utf8(forged).unwrap();
    let qp = format!("{}=\r\n{}", &token[..17], &token[17..]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!(
        "Please stop.\r\nhttps://unsubscribe.example.com/u/{token}\r\n"
    ));
    let mut out = text.to_vec();
    for (from, to) in [
        ("@TOKEN_QP@", qp.as_str()),
        ("@OLDTOKEN@", old),
        ("@FORGED@", forged.as_str()),
        ("@BASE64@", b64.as_str()),
        ("@PADDING@", &"padding ".repeat(3000)),
        ("@TOKEN@", token),
    ] {
        out = replace(&out, from.as_bytes(), to.as_bytes());
    }
    out
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

#[tokio::test]
async fn every_sample_mail_has_its_expected_outcome() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/intake");
    let cases: Cases =
        toml::from_str(&std::fs::read_to_string(dir.join("cases.toml")).unwrap()).unwrap();
    assert!(cases.case.len() >= 15);
    for case in cases.case {
        // A fresh store per case, so that one case's opt-out cannot pass for another's.
        let f = fixture().await;
        let token = f
            .token("reader@example.org", "weekly-news", SystemTime::now())
            .await;
        let old = f
            .token(
                "reader@example.org",
                "weekly-news",
                SystemTime::now() - Duration::from_secs(400 * 86_400),
            )
            .await;
        let raw = fill(&std::fs::read(dir.join(&case.file)).unwrap(), &token, &old);
        let envelope = Envelope {
            sender: Some(
                case.sender
                    .clone()
                    .unwrap_or_else(|| "reader@example.org".into()),
            ),
            recipients: vec![
                String::from_utf8(fill(
                    case.recipient
                        .as_deref()
                        .unwrap_or("unsubscribe@example.com")
                        .as_bytes(),
                    &token,
                    &old,
                ))
                .unwrap(),
            ],
        };
        let outcome = f.intake.process(&envelope, &raw).await.unwrap();
        match case.expect.as_str() {
            "unsubscribed" => {
                let Outcome::Unsubscribed(done) = outcome else {
                    panic!("{}: expected an unsubscribe, got {outcome:?}", case.file);
                };
                let [
                    optout_milter::intake::Unsubscription {
                        address,
                        scope,
                        found_in,
                        ..
                    },
                ] = &done[..]
                else {
                    panic!("{}: expected one unsubscribe, got {done:?}", case.file);
                };
                let expected_address = case.address.as_deref().unwrap();
                let expected_scope = case.scope.as_deref().unwrap();
                assert_eq!(address.as_str(), expected_address, "{}", case.file);
                assert_eq!(scope.as_str(), expected_scope, "{}", case.file);
                assert_eq!(
                    *found_in,
                    case.found_in.as_deref().unwrap(),
                    "{}",
                    case.file
                );
                assert_eq!(
                    f.value(expected_address, expected_scope).await,
                    Some(ConsentValue::No),
                    "{}",
                    case.file
                );
            }
            "ignored" => {
                let Outcome::Ignored(reason) = outcome else {
                    panic!("{}: expected to be ignored, got {outcome:?}", case.file);
                };
                assert!(
                    reason.contains(case.reason.as_deref().unwrap()),
                    "{}: {reason}",
                    case.file
                );
                assert_eq!(
                    f.value("reader@example.org", "weekly-news").await,
                    None,
                    "{}",
                    case.file
                );
                assert_eq!(
                    f.value("person@example.org", "*").await,
                    None,
                    "{}",
                    case.file
                );
                assert_eq!(
                    f.value("victim@example.org", "*").await,
                    None,
                    "{}",
                    case.file
                );
            }
            other => panic!("{}: unknown expectation {other}", case.file),
        }
    }
}

#[tokio::test]
async fn the_evidence_names_the_message_and_where_the_token_was() {
    let f = fixture().await;
    let token = f
        .token("reader@example.org", "weekly-news", SystemTime::now())
        .await;
    let raw = format!(
        "From: alias@other.example\r\nSubject: unsubscribe {token}\r\nMessage-ID: <ev-1@other.example>\r\n\r\n"
    );
    f.intake
        .process(&Envelope::default(), raw.as_bytes())
        .await
        .unwrap();
    let address = AddressPolicy::default()
        .normalize("reader@example.org")
        .unwrap();
    let history = f.store.history(&address).await.unwrap();
    let evidence = &history[0].change.evidence;
    for part in [
        "found-in=Subject",
        "message-id=<ev-1@other.example>",
        "from=<alias@other.example>",
        "received=",
        "token=k1/s",
    ] {
        assert!(evidence.contains(part), "{part} not in {evidence}");
    }
    assert!(!evidence.contains(&token), "{evidence}");
}

#[tokio::test]
async fn garbage_is_unusable_and_a_store_failure_is_temporary() {
    let f = fixture().await;
    let error = f
        .intake
        .process(&Envelope::default(), b"")
        .await
        .unwrap_err();
    assert!(
        matches!(error, optout_milter::intake::IntakeError::Unusable),
        "{error:?}"
    );
    let token = f
        .token("reader@example.org", "weekly-news", SystemTime::now())
        .await;
    let raw = format!("From: r@example.org\r\nTo: unsubscribe+{token}@example.com\r\n\r\n");
    f.break_store().await;
    let error = f
        .intake
        .process(&Envelope::default(), raw.as_bytes())
        .await
        .unwrap_err();
    assert!(
        matches!(error, optout_milter::intake::IntakeError::Store(_)),
        "{error:?}"
    );
}

const MILTER_INTAKE: &str = r#"
[unsubscribe]
https_base = "https://unsubscribe.example.com"
mailto = "unsubscribe@example.com"
generate_missing_key = true
[[unsubscribe.keys]]
id = 1
file = "@DIR@/token.key"

[intake]
max_bytes = 16384
"#;

#[tokio::test]
async fn the_milter_takes_unsubscribe_mail_and_discards_it() {
    let milter = common::start("", MILTER_INTAKE).await;
    let address = AddressPolicy::default()
        .normalize("reader@example.org")
        .unwrap();
    let subject = milter
        .store
        .subject_id(&address, &Scope::All)
        .await
        .unwrap();
    let codec = &milter.milter.unsubscribe.as_ref().unwrap().codec;
    let token = codec.mint(subject, SystemTime::now()).unwrap();

    let mut conn = TestConnection::open(milter.addr).await.unwrap();
    let client: std::net::SocketAddr = "198.51.100.5:40000".parse().unwrap();
    conn.connect("mail.example.org", client).await.unwrap();
    conn.mail(["<reader@example.org>"]).await.unwrap();
    assert_eq!(
        conn.rcpt([format!("<unsubscribe+{token}@example.com>")])
            .await
            .unwrap(),
        Status::Continue
    );
    conn.header("From", "reader@example.org").await.unwrap();
    conn.header("Subject", "unsubscribe").await.unwrap();
    assert_eq!(
        conn.body("Please unsubscribe me.\r\n").await.unwrap(),
        Status::Continue
    );
    let (_, status) = conn.eom().await.unwrap();
    assert_eq!(status, Status::Discard);
    let records = milter.store.records(&address).await.unwrap();
    assert_eq!(records[0].value, ConsentValue::No);

    // Mixed recipients: only the unsubscribe address is removed.
    conn.mail(["<reader@example.org>"]).await.unwrap();
    conn.rcpt([format!("<unsubscribe+{token}@example.com>")])
        .await
        .unwrap();
    conn.rcpt(["<friend@example.org>"]).await.unwrap();
    conn.header("Subject", "fwd").await.unwrap();
    conn.body("hi\r\n").await.unwrap();
    let (actions, status) = conn.eom().await.unwrap();
    assert_eq!(status, Status::Continue);
    assert_eq!(
        actions.actions,
        [EomAction::DeleteRecipient {
            rcpt: std::ffi::CString::new(format!("<unsubscribe+{token}@example.com>")).unwrap()
        }]
    );

    // Any other mail: the milter does not want its body.
    conn.mail(["<news@example.com>"]).await.unwrap();
    conn.rcpt(["<someone@example.org>"]).await.unwrap();
    conn.header("Subject", "hello").await.unwrap();
    assert_eq!(conn.body("body\r\n").await.unwrap(), Status::Skip);
    conn.close().await.unwrap();
    milter.stop().await;
}

/// Regression (issue 11, item 7): a mail to several unsubscribe+TOKEN addresses taken by
/// the milter recorded the first and discarded the mail. Every valid token is recorded.
#[tokio::test]
async fn the_milter_records_every_token_among_the_recipients() {
    let milter = common::start("", MILTER_INTAKE).await;
    let codec = &milter.milter.unsubscribe.as_ref().unwrap().codec;
    let policy = AddressPolicy::default();
    let mut conn = TestConnection::open(milter.addr).await.unwrap();
    let client: std::net::SocketAddr = "198.51.100.5:40000".parse().unwrap();
    conn.connect("mail.example.org", client).await.unwrap();
    conn.mail(["<family@example.org>"]).await.unwrap();
    let who = ["a@example.org", "b@example.org", "c@example.org"];
    for address in who {
        let address = policy.normalize(address).unwrap();
        let subject = milter
            .store
            .subject_id(&address, &Scope::All)
            .await
            .unwrap();
        let token = codec.mint(subject, SystemTime::now()).unwrap();
        conn.rcpt([format!("<unsubscribe+{token}@example.com>")])
            .await
            .unwrap();
    }
    conn.header("From", "family@example.org").await.unwrap();
    conn.header("Subject", "unsubscribe").await.unwrap();
    conn.body("Please unsubscribe us.\r\n").await.unwrap();
    let (_, status) = conn.eom().await.unwrap();
    assert_eq!(status, Status::Discard);
    for address in who {
        let records = milter
            .store
            .records(&policy.normalize(address).unwrap())
            .await
            .unwrap();
        assert_eq!(records.len(), 1, "{address}");
        assert_eq!(records[0].value, ConsentValue::No, "{address}");
    }
    conn.close().await.unwrap();
    milter.stop().await;
}

/// Regression (issue 11, item 3): with the defaults, a mail to the list-level mailto (no
/// token) from a sender nobody authenticated was ignored: exit 0, 250 or discarded, and
/// the person believed they had unsubscribed. Now the sender gets a link that
/// unsubscribes from the landing page, sent through the relay; when the relay cannot be
/// reached the mail is deferred; without a relay the configuration is warned about.
#[tokio::test]
async fn a_mail_without_token_from_an_unauthenticated_sender_gets_a_link_to_confirm() {
    let test = "a_mail_without_token_from_an_unauthenticated_sender_gets_a_link_to_confirm";
    if !common::mta::require(test, &["/usr/sbin/smtp-sink"]) {
        return;
    }
    let relay_dir = tempfile::tempdir().unwrap();
    let sink = common::mta::Sink::start(&relay_dir.path().join("sink"));
    let f = intake_fixture(&format!(
        "[intake.confirmation]\nrelay = \"127.0.0.1:{}\"\nfrom = \"Example <no-reply@example.com>\"\n",
        sink.port
    ))
    .await;
    assert!(f.config.warnings().is_empty(), "{:?}", f.config.warnings());
    let raw = b"From: Reader <reader@example.org>\r\nTo: unsubscribe@example.com\r\n\
                Subject: unsubscribe weekly-news\r\nMessage-ID: <req-1@example.org>\r\n\r\nStop.\r\n";
    let envelope = Envelope {
        sender: Some("reader@example.org".into()),
        recipients: vec!["unsubscribe@example.com".into()],
    };
    let outcome = f.intake.process(&envelope, raw).await.unwrap();
    assert!(
        matches!(&outcome, Outcome::ConfirmationRequested(a) if a.as_str() == "reader@example.org"),
        "{outcome:?}"
    );
    assert_eq!(f.value("reader@example.org", "weekly-news").await, None);
    let mail = sink.wait_delivered("Please confirm your unsubscribe request");
    assert_eq!(mail.rcpts, ["reader@example.org"]);
    let link = mail
        .text
        .lines()
        .find_map(|l| l.trim().strip_prefix("https://unsubscribe.example.com/u/"))
        .expect("a link in the mail");
    let target = f
        .unsubscribe
        .resolve(f.store.as_ref(), link.trim(), SystemTime::now())
        .await
        .unwrap();
    assert_eq!(target.address.as_str(), "reader@example.org");
    assert_eq!(target.scope.as_str(), "weekly-news");
    // Again within the hour: no second mail.
    let again = f.intake.process(&envelope, raw).await.unwrap();
    assert!(matches!(again, Outcome::Ignored(_)), "{again:?}");

    // The relay is down: the mail is deferred, not dropped.
    let down = intake_fixture(&format!(
        "[intake.confirmation]\nrelay = \"127.0.0.1:{}\"\nfrom = \"no-reply@example.com\"\n",
        common::mta::free_port()
    ))
    .await;
    let error = down.intake.process(&envelope, raw).await.unwrap_err();
    assert!(error.is_temporary(), "{error}");

    // Neither relay nor trusted authentication: ignored, and check-config warns.
    let bare = intake_fixture("").await;
    let warnings = bare.config.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("[intake.confirmation]") && w.contains("list-level")),
        "{warnings:?}"
    );
}

/// One intake (issue 12): the milter and the LMTP server hand unsubscribe mails to the
/// same one, and a reload keeps what it remembers, so that a forged sender gets at most
/// one confirmation link an hour, whichever way and however often the mail came.
#[tokio::test]
async fn the_milter_and_lmtp_share_one_intake_across_reloads() {
    use optout_milter::{
        config::{Config, Overrides},
        daemon::App,
        store,
    };
    use std::sync::Arc;
    let test = "the_milter_and_lmtp_share_one_intake_across_reloads";
    if !common::mta::require(test, &["/usr/sbin/smtp-sink"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sink = common::mta::Sink::start(&dir.path().join("sink"));
    let config_text = |subject: &str| {
        format!(
            "[unsubscribe]\nhttps_base = \"https://unsubscribe.example.com\"\n\
             mailto = \"unsubscribe@example.com\"\ngenerate_missing_key = true\n\
             [[unsubscribe.keys]]\nid = 1\nfile = \"{dir}/token.key\"\n\
             [intake]\nmilter = true\nlmtp = \"inet:127.0.0.1:0\"\n\
             [intake.confirmation]\nrelay = \"127.0.0.1:{port}\"\nfrom = \"no-reply@example.com\"\n\
             request_subject = \"{subject}\"\n",
            dir = dir.path().display(),
            port = sink.port,
        )
    };
    let path = dir.path().join("optout-milter.toml");
    std::fs::write(&path, config_text("Confirm, please")).unwrap();
    let overrides = Overrides {
        store_url: Some(format!("sqlite:{}", dir.path().join("c.db").display())),
        socket: Some("inet:127.0.0.1:0".into()),
    };
    let config = Config::load(&path, &overrides).unwrap();
    let opened = store::open_or_create(&config.store_url).await.unwrap();
    let mut app = App::build(config, overrides, opened).await.unwrap();
    let by_milter = app.milter().load().intake.clone().unwrap();
    let by_lmtp = app.intake().unwrap().load_full();
    assert!(Arc::ptr_eq(&by_milter, &by_lmtp), "two intakes");

    let raw = b"From: reader@example.org\r\nTo: unsubscribe@example.com\r\n\
                Subject: unsubscribe\r\n\r\nStop.\r\n";
    let envelope = Envelope {
        sender: Some("reader@example.org".into()),
        recipients: vec!["unsubscribe@example.com".into()],
    };
    let first = by_lmtp.process(&envelope, raw).await.unwrap();
    assert!(
        matches!(first, Outcome::ConfirmationRequested(_)),
        "{first:?}"
    );
    sink.wait_delivered("Confirm, please");

    std::fs::write(&path, config_text("Confirm again")).unwrap();
    app.reload().unwrap();
    let reloaded = app.milter().load().intake.clone().unwrap();
    assert!(
        !Arc::ptr_eq(&reloaded, &by_milter),
        "the reload swapped the intake"
    );
    assert!(Arc::ptr_eq(&reloaded, &app.intake().unwrap().load_full()));
    let again = reloaded.process(&envelope, raw).await.unwrap();
    assert!(
        matches!(&again, Outcome::Ignored(reason) if reason.contains("hour")),
        "{again:?}"
    );
}
