//! Complaints from feedback loops: sample reports built from the providers' published
//! formats (`tests/complaints/*.eml`: RFC 5965's example, Yahoo's CFL with the recipient
//! redacted, Microsoft's JMRP with headers only, a `not-spam` report, a loop that
//! names the recipient and signs its report), each with its expected outcome, through the
//! intake the milter, LMTP and `ingest` share. The whole path through Postfix is in
//! `the_next_marketing_message_after_a_complaint_is_refused`.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{
    intake::{IntakeFixture, intake_fixture},
    mta::{
        Daemon, Mta, daemon_config, free_port, http, lmtp_send, require, smtp_send,
        unsubscribe_uri, wait_for,
    },
    postfix::{PROGRAMS, Postfix},
};
use optout_milter::{
    consent::{AddressPolicy, ConsentValue, Source},
    daemon::{self, Listeners},
    intake::{Envelope, Outcome},
};
use std::{path::Path, time::Duration, time::SystemTime};

const COMPLAINTS: &str = r#"
trusted_authserv_ids = ["mx.example.com"]
[complaints]
address = "fbl@example.com"
authenticated_senders = ["feedback.example.net"]
"#;

/// Sample `name` with its placeholders filled.
fn sample(name: &str, token: &str, rcpt: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/complaints")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap()
        .replace("@TOKEN@", token)
        .replace("@RCPT@", rcpt)
        .replace("@COMPLAINTS@", "fbl@example.com")
        .replace('\n', "\r\n")
        .into_bytes()
}

async fn report(f: &IntakeFixture, raw: &[u8]) -> Outcome {
    let envelope = Envelope {
        sender: Some("feedback@arf.mail.yahoo.com".into()),
        recipients: vec!["fbl@example.com".into()],
    };
    f.intake.process(&envelope, raw).await.unwrap()
}

/// The source of the last history entry of `address`, if any.
async fn last_source(f: &IntakeFixture, address: &str) -> Option<Source> {
    let address = AddressPolicy::default().normalize(address).unwrap();
    let history = f.store.history(&address).await.unwrap();
    history.last().map(|h| h.change.source)
}

#[tokio::test]
async fn each_sample_report_has_its_outcome() {
    // (sample, recipient, whether its token is valid, the outcome: the scope opted out)
    let cases: [(&str, &str, bool, Option<&str>); 7] = [
        ("rfc5965.eml", "rfc@example.org", true, Some("*")),
        ("yahoo-cfl.eml", "cfl@example.org", true, Some("*")),
        ("microsoft-jmrp.eml", "jmrp@example.org", true, Some("*")),
        ("not-spam.eml", "notspam@example.org", true, None),
        // A damaged token and an unauthenticated sender: nothing, whatever the report
        // says about the recipient (here it names them in Original-Rcpt-To).
        ("rfc5965.eml", "forged@example.org", false, None),
        // No token at all, but the report is signed by a configured loop and names
        // the recipient.
        (
            "authenticated-loop.eml",
            "signed@example.org",
            false,
            Some("*"),
        ),
        // Yahoo's report with a damaged token: the recipient is redacted, so nothing.
        ("yahoo-cfl.eml", "redacted-case@example.org", false, None),
    ];
    let f = intake_fixture(COMPLAINTS).await;
    for (name, rcpt, valid, expected) in cases {
        let mut token = f.token(rcpt, "weekly-news", SystemTime::now()).await;
        if !valid {
            // One character changed: the MAC no longer matches.
            let last = token.pop().unwrap();
            token.push(if last == 'a' { 'b' } else { 'a' });
        }
        let outcome = report(&f, &sample(name, &token, rcpt)).await;
        match expected {
            Some(scope) => {
                assert!(
                    matches!(&outcome, Outcome::Complained(u) if u.address.as_str() == rcpt),
                    "{name} for {rcpt}: {outcome:?}"
                );
                assert_eq!(f.value(rcpt, scope).await, Some(ConsentValue::No), "{name}");
                assert_eq!(last_source(&f, rcpt).await, Some(Source::Complaint));
            }
            None => {
                assert!(
                    matches!(outcome, Outcome::Ignored(_)),
                    "{name} for {rcpt}: {outcome:?}"
                );
                assert_eq!(last_source(&f, rcpt).await, None, "{name}: recorded");
            }
        }
    }
}

#[tokio::test]
async fn the_evidence_names_the_provider_the_type_and_the_original_message() {
    let f = intake_fixture(COMPLAINTS).await;
    let rcpt = "evidence@example.org";
    let token = f.token(rcpt, "weekly-news", SystemTime::now()).await;
    report(&f, &sample("yahoo-cfl.eml", &token, rcpt)).await;
    let address = AddressPolicy::default().normalize(rcpt).unwrap();
    let history = f.store.history(&address).await.unwrap();
    let evidence = &history[0].change.evidence;
    for part in [
        "provider=arf.mail.yahoo.com",
        "feedback-type=abuse",
        "original-message-id=<cfl-original-1@example.com>",
        "arrival-date=\"Tue, 03 Nov 2026 10:14:00 +0000\"",
        "found-in=List-Unsubscribe",
    ] {
        assert!(evidence.contains(part), "{part} not in {evidence}");
    }
}

#[tokio::test]
async fn a_signed_report_from_a_loop_that_is_not_configured_records_nothing() {
    let f = intake_fixture(&COMPLAINTS.replace("feedback.example.net", "other.example")).await;
    let rcpt = "unlisted@example.org";
    let outcome = report(&f, &sample("authenticated-loop.eml", "", rcpt)).await;
    assert!(matches!(outcome, Outcome::Ignored(_)), "{outcome:?}");
    assert_eq!(last_source(&f, rcpt).await, None);
}

#[tokio::test]
async fn complaints_can_opt_out_of_the_reported_list_only() {
    let f = intake_fixture(&format!("{COMPLAINTS}scope = \"list\"\n")).await;
    let rcpt = "listonly@example.org";
    let token = f.token(rcpt, "weekly-news", SystemTime::now()).await;
    report(&f, &sample("rfc5965.eml", &token, rcpt)).await;
    assert_eq!(f.value(rcpt, "weekly-news").await, Some(ConsentValue::No));
    assert_eq!(f.value(rcpt, "*").await, None);
}

/// The reported message may be larger than `max_bytes` (16 KiB in the fixture): the
/// report is read up to it, and what counts comes first.
#[tokio::test]
async fn a_report_larger_than_max_bytes_still_counts() {
    let f = intake_fixture(COMPLAINTS).await;
    let rcpt = "large@example.org";
    let token = f.token(rcpt, "weekly-news", SystemTime::now()).await;
    let text = String::from_utf8(sample("yahoo-cfl.eml", &token, rcpt)).unwrap();
    let large = text.replacen("Hello.", &"Hello, a long newsletter.\r\n".repeat(2000), 1);
    let mut raw = large.into_bytes();
    assert!(raw.len() > 40_000);
    // As the milter, LMTP and ingest hand it over: cut after max_bytes + 1.
    raw.truncate(16_385);
    let outcome = report(&f, &raw).await;
    assert!(matches!(outcome, Outcome::Complained(_)), "{outcome:?}");
    assert_eq!(f.value(rcpt, "*").await, Some(ConsentValue::No));
}

/// Over LMTP, as Postfix delivers the complaints address there: 250 once the complaint
/// is on disk, saying what it did.
#[tokio::test]
async fn a_report_delivered_over_lmtp_is_acknowledged_once_recorded() {
    let mut f = intake_fixture(&format!("lmtp = \"inet:127.0.0.1:0\"\n{COMPLAINTS}")).await;
    let app = f.app.take().unwrap();
    let listeners = Listeners::bind(app.config()).await.unwrap();
    let port = listeners.lmtp_addr().unwrap().port();
    let (_reload, reloads) = tokio::sync::mpsc::channel(1);
    tokio::spawn(daemon::run(app, listeners, reloads, std::future::pending()));
    let rcpt = "bylmtp@example.org";
    let token = f.token(rcpt, "weekly-news", SystemTime::now()).await;
    let raw = String::from_utf8(sample("microsoft-jmrp.eml", &token, rcpt)).unwrap();
    let replies = tokio::task::spawn_blocking(move || {
        lmtp_send(port, "staff@hotmail.com", &["fbl@example.com"], &raw)
    })
    .await
    .unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].code, 250, "{replies:?}");
    assert!(
        replies[0]
            .text
            .contains("complaint: bylmtp@example.org unsubscribed from *"),
        "{replies:?}"
    );
    assert_eq!(f.value(rcpt, "*").await, Some(ConsentValue::No));
}

#[tokio::test]
async fn mail_that_is_not_a_report_records_nothing() {
    let f = intake_fixture(COMPLAINTS).await;
    let rcpt = "plain@example.org";
    let token = f.token(rcpt, "weekly-news", SystemTime::now()).await;
    let raw = format!(
        "From: someone@example.net\r\nTo: fbl@example.com\r\nSubject: spam!\r\n\r\nhttps://unsubscribe.example.com/u/{token}\r\n"
    );
    let outcome = report(&f, raw.as_bytes()).await;
    assert!(matches!(outcome, Outcome::Ignored(_)), "{outcome:?}");
    assert_eq!(last_source(&f, rcpt).await, None);
}

/// The whole path: a marketing message goes out through Postfix with the milter, its
/// delivered copy comes back wrapped in an ARF report (recipient redacted, as Yahoo
/// does) to the complaints address through the same Postfix, and the next marketing
/// message to that recipient is refused. A forged report (its token damaged) sent the
/// same way changes nothing.
#[test]
fn the_next_marketing_message_after_a_complaint_is_refused() {
    let name = "the_next_marketing_message_after_a_complaint_is_refused";
    if !require(name, &PROGRAMS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_port();
    let config = daemon_config(
        dir.path(),
        &format!(
            "[intake]\nmilter = true\n[complaints]\naddress = \"fbl@example.com\"\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"
        ),
    );
    let milter = Daemon::start(dir.path(), &config);
    let postfix = Postfix::start("complaints", &format!("inet:127.0.0.1:{}", milter.port));
    let message = |id: &str, to: &str| {
        format!(
            "From: News <news@example.com>\nTo: {to}\nSubject: This week\nMessage-ID: <{id}>\n\nHello.\n"
        )
    };
    for (to, id) in [
        ("complainer@example.org", "c-1@test.example"),
        ("bystander@example.org", "c-2@test.example"),
    ] {
        let sent = smtp_send(
            postfix.smtp_port,
            "news@example.com",
            &[to],
            &message(id, to),
        );
        assert_eq!(sent.rcpts[0].1.code, 250, "{sent:?}");
    }
    let delivered = postfix.wait_delivered("c-1@test.example");
    assert!(unsubscribe_uri(&delivered.text, "https:").contains("/u/"));
    let bystander = postfix.wait_delivered("c-2@test.example");

    let wrap = |original: &str, id: &str| {
        format!(
            "From: Yahoo! Mail AntiSpam Feedback <feedback@arf.mail.yahoo.com>\n\
             To: fbl@example.com\nSubject: FW: This week\nMessage-ID: <{id}>\n\
             MIME-Version: 1.0\n\
             Content-Type: multipart/report; report-type=feedback-report; boundary=\"arf\"\n\n\
             --arf\nContent-Type: text/plain\n\nAn abuse report.\n\n\
             --arf\nContent-Type: message/feedback-report\n\n\
             Feedback-Type: abuse\nUser-Agent: Yahoo!-Mail-Feedback/2.0\nVersion: 0.1\n\n\
             --arf\nContent-Type: message/rfc822\n\n{original}\n--arf--\n"
        )
    };
    // The provider redacts the recipient everywhere but in the token.
    let redacted = delivered
        .text
        .replace("complainer@example.org", "redacted@yahoo.com");
    let sent = smtp_send(
        postfix.smtp_port,
        "feedback@arf.mail.yahoo.com",
        &["fbl@example.com"],
        &wrap(&redacted, "report-1@arf.example"),
    );
    assert_eq!(sent.rcpts[0].1.code, 250, "{sent:?}");
    wait_for("the complaint", Duration::from_secs(30), || {
        milter
            .cli(&["consent", "get", "complainer@example.org"])
            .contains("\tn\tcomplaint\t")
            .then_some(())
    });
    let next = smtp_send(
        postfix.smtp_port,
        "news@example.com",
        &["complainer@example.org"],
        &message("c-3@test.example", "complainer@example.org"),
    );
    assert_eq!(next.rcpts[0].1.code, 550, "{next:?}");

    // A forged report: the bystander's message with its token damaged.
    let uri = unsubscribe_uri(&bystander.text, "https:");
    let token = uri.rsplit('/').next().unwrap();
    let mut damaged = token.to_owned();
    let last = damaged.pop().unwrap();
    damaged.push(if last == 'a' { 'b' } else { 'a' });
    let forged = bystander.text.replace(token, &damaged);
    smtp_send(
        postfix.smtp_port,
        "feedback@arf.mail.yahoo.com",
        &["fbl@example.com"],
        &wrap(&forged, "report-2@arf.example"),
    );
    wait_for(
        "the forged report to be read",
        Duration::from_secs(30),
        || {
            milter
                .log()
                .contains("feedback report ignored")
                .then_some(())
        },
    );
    assert!(
        !milter
            .cli(&["consent", "get", "bystander@example.org"])
            .contains("\tn\t"),
        "a forged report unsubscribed someone"
    );
    let again = smtp_send(
        postfix.smtp_port,
        "news@example.com",
        &["bystander@example.org"],
        &message("c-4@test.example", "bystander@example.org"),
    );
    assert_eq!(again.rcpts[0].1.code, 250, "{again:?}");
    // Each report counted by its outcome.
    let (status, scrape) = http(metrics, "GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    for line in [
        "optout_milter_complaints_total{kind=\"recorded\"} 1",
        "optout_milter_complaints_total{kind=\"unverified\"} 1",
    ] {
        assert!(scrape.lines().any(|l| l == line), "{line} not in {scrape}");
    }
    milter.stop();
}

/// Through Postfix's pipe transport: `optout-milter ingest --recipient fbl@example.com`
/// reads the report from standard input and exits 0 once the complaint is on disk.
#[test]
fn a_report_piped_to_ingest_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("optout-milter.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite:{dir}/consent.db\"\n\
             [unsubscribe]\nhttps_base = \"https://unsubscribe.example.com\"\n\
             mailto = \"unsubscribe@example.com\"\ngenerate_missing_key = true\n\
             [[unsubscribe.keys]]\nid = 1\nfile = \"{dir}/k\"\n\
             [intake]\n[complaints]\naddress = \"fbl@example.com\"\n",
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let run = |args: &[&str], input: &[u8]| {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_optout-milter"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("OPTOUT_MILTER_LOG", "warn")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {text}");
        text
    };
    run(&["init"], b"");
    let rcpt = "piped@example.org";
    let minted = run(&["token", "mint", rcpt, "--list", "weekly-news"], b"");
    let token = minted
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap()
        .to_owned();
    let out = run(
        &[
            "ingest",
            "--sender",
            "feedback@arf.mail.yahoo.com",
            "--recipient",
            "fbl@example.com",
        ],
        &sample("yahoo-cfl.eml", &token, rcpt),
    );
    assert!(out.contains("complaint: piped@example.org *"), "{out}");
    let got = run(&["consent", "get", rcpt], b"");
    assert!(got.contains("\tn\tcomplaint\t"), "{got}");
}

/// Feedback loops are often registered with one address each (`fbl+yahoo@…`), and MTAs
/// may change the case: all are the complaints address. Another address is not.
#[tokio::test]
async fn the_complaints_address_is_recognised_in_its_spellings() {
    spellings(
        COMPLAINTS,
        &[
            ("FBL+yahoo@Example.COM", true),
            ("<fbl@example.com>", true),
            ("fblx@example.com", false),
            ("fbl@example.org", false),
        ],
    )
    .await;
    // A configured address with a +detail of its own is matched as written.
    spellings(
        &COMPLAINTS.replace("fbl@example.com", "fbl+yahoo@example.com"),
        &[
            ("fbl+yahoo@example.com", true),
            ("<FBL+Yahoo@EXAMPLE.com>", true),
            ("fbl+other@example.com", false),
            ("fbl@example.com", false),
        ],
    )
    .await;
}

/// Each of `cases` is the complaints address or not, and a report to it is a complaint.
async fn spellings(config: &str, cases: &[(&str, bool)]) {
    let f = intake_fixture(config).await;
    for (i, &(to, counts)) in cases.iter().enumerate() {
        assert_eq!(f.intake.is_intake_address(to), counts, "{to}");
        if !counts {
            continue;
        }
        let rcpt = format!("spelling{i}@example.org");
        let token = f.token(&rcpt, "weekly-news", SystemTime::now()).await;
        let envelope = Envelope {
            sender: Some("feedback@arf.mail.yahoo.com".into()),
            recipients: vec![to.into()],
        };
        let outcome = f
            .intake
            .process(&envelope, &sample("yahoo-cfl.eml", &token, &rcpt))
            .await
            .unwrap();
        assert!(
            matches!(outcome, Outcome::Complained(_)),
            "{to}: {outcome:?}"
        );
    }
}
