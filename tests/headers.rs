//! The unsubscribe headers as the MTA receives them from the milter.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{TestMilter, start};
use indymilter_test::{EomAction, EomActions, Status, TestConnection};
use optout_milter::consent::{ConsentValue::No, Scope};
use std::time::SystemTime;

const UNSUBSCRIBE: &str = r#"
[unsubscribe]
https_base = "https://unsubscribe.example.com/"
mailto = "unsubscribe@example.com"
generate_missing_key = true
@POLICY@

[[unsubscribe.keys]]
id = 3
file = "@DIR@/token.key"
"#;

async fn start_milter(policy: &str) -> TestMilter {
    start("", &UNSUBSCRIBE.replace("@POLICY@", policy)).await
}

async fn send(
    milter: &TestMilter,
    from: &str,
    rcpts: &[&str],
    headers: &[(&str, &str)],
) -> (EomActions, Status) {
    let mut conn = TestConnection::open(milter.addr).await.unwrap();
    let client: std::net::SocketAddr = "192.0.2.10:40000".parse().unwrap();
    conn.connect("client.example", client).await.unwrap();
    conn.mail([from]).await.unwrap();
    for rcpt in rcpts {
        conn.rcpt([*rcpt]).await.unwrap();
    }
    for (name, value) in headers {
        conn.header(*name, *value).await.unwrap();
    }
    let result = conn.eom().await.unwrap();
    conn.close().await.unwrap();
    result
}

fn added(actions: &EomActions) -> Vec<(String, String)> {
    actions
        .actions
        .iter()
        .filter_map(|a| match a {
            EomAction::AddHeader { name, value } => Some((
                name.to_string_lossy().into_owned(),
                value.to_string_lossy().into_owned(),
            )),
            _ => None,
        })
        .collect()
}

/// Checks the exact per-recipient header pair and returns the token it carries.
fn token_of(headers: &[(String, String)]) -> String {
    assert_eq!(headers.len(), 2, "{headers:?}");
    let (name, value) = &headers[0];
    assert_eq!(name, "List-Unsubscribe");
    let token = value
        .strip_prefix("<https://unsubscribe.example.com/u/")
        .and_then(|rest| rest.split_once('>'))
        .map(|(token, _)| token.to_owned())
        .unwrap_or_else(|| panic!("unexpected List-Unsubscribe {value:?}"));
    assert_eq!(
        *value,
        format!(
            "<https://unsubscribe.example.com/u/{token}>,\n <mailto:unsubscribe+{token}@example.com?subject=unsubscribe>"
        )
    );
    assert!(value.is_ascii());
    assert_eq!(token.len(), 34);
    assert_eq!(
        headers[1],
        (
            "List-Unsubscribe-Post".into(),
            "List-Unsubscribe=One-Click".into()
        )
    );
    token
}

#[tokio::test]
async fn single_recipient_marketing_gets_a_token_that_names_its_recipient_and_list() {
    let milter = start_milter("").await;
    let (actions, status) = send(
        &milter,
        "<news@example.com>",
        &["<Reader@Example.org>"],
        &[("Subject", "News")],
    )
    .await;
    assert_eq!(status, Status::Continue);
    let token = token_of(&added(&actions));
    let codec = &milter.milter.unsubscribe.as_ref().unwrap().codec;
    // Mail servers that lower-case local parts must not break the mailto form.
    for spelling in [token.clone(), token.to_uppercase()] {
        let verified = codec.verify(&spelling, SystemTime::now()).unwrap();
        assert_eq!(verified.claims.key_id, 3);
        let (address, scope) = milter
            .store
            .subject(verified.claims.subject)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(address.as_str(), "reader@example.org");
        assert_eq!(scope, Scope::List("weekly-news".into()));
    }
    milter.stop().await;
}

#[tokio::test]
async fn transactional_mail_gets_no_header() {
    let milter = start_milter("").await;
    let (actions, status) = send(
        &milter,
        "<receipts@shop.example.com>",
        &["<a@example.org>"],
        &[],
    )
    .await;
    assert_eq!(status, Status::Continue);
    assert!(actions.actions.is_empty(), "{actions:?}");
    milter.stop().await;
}

#[tokio::test]
async fn the_one_recipient_left_after_removals_gets_its_own_header() {
    let milter = start_milter("").await;
    milter.set("gone@example.org", "deals", No).await;
    let (actions, status) = send(
        &milter,
        "<app@shop.example.com>",
        &["<gone@example.org>", "<stays@example.org>"],
        &[("X-Optout-List", "deals")],
    )
    .await;
    assert_eq!(status, Status::Continue);
    assert!(actions.has_delete_recipient("<gone@example.org>"));
    let token = token_of(&added(&actions));
    let codec = &milter.milter.unsubscribe.as_ref().unwrap().codec;
    let subject = codec
        .verify(&token, SystemTime::now())
        .unwrap()
        .claims
        .subject;
    let (address, scope) = milter.store.subject(subject).await.unwrap().unwrap();
    assert_eq!(
        (address.as_str(), scope),
        ("stays@example.org", Scope::List("deals".into()))
    );
    milter.stop().await;
}

#[tokio::test]
async fn several_recipients_follow_the_configured_policy() {
    let rcpts = ["<a@example.org>", "<b@example.org>"];
    let milter = start_milter("").await; // list-level is the default
    let (actions, status) = send(&milter, "<news@example.com>", &rcpts, &[]).await;
    assert_eq!(status, Status::Continue);
    assert_eq!(
        added(&actions),
        [(
            "List-Unsubscribe".to_owned(),
            "<mailto:unsubscribe@example.com?subject=unsubscribe%20weekly-news>".to_owned()
        )]
    );
    milter.stop().await;

    let milter = start_milter("multiple_recipients = \"reject\"").await;
    let (actions, status) = send(&milter, "<news@example.com>", &rcpts, &[]).await;
    match status {
        Status::Reject { message: Some(m) } => {
            let m = m.to_string_lossy();
            assert!(
                m.starts_with("550 5.5.3 ") && m.contains("one recipient per message"),
                "{m}"
            );
        }
        other => panic!("expected a 550 5.5.3, got {other:?}"),
    }
    assert!(added(&actions).is_empty());
    milter.stop().await;

    let milter = start_milter("multiple_recipients = \"skip\"").await;
    let (actions, status) = send(&milter, "<news@example.com>", &rcpts, &[]).await;
    assert_eq!(status, Status::Continue);
    assert!(actions.actions.is_empty(), "{actions:?}");
    milter.stop().await;
}

#[tokio::test]
async fn an_existing_header_is_replaced_by_default_or_kept() {
    let theirs = [
        ("List-Unsubscribe", "<https://esp.example.net/unsub?id=1>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    ];
    let milter = start_milter("").await;
    let (actions, _) = send(&milter, "<news@example.com>", &["<a@example.org>"], &theirs).await;
    assert!(
        actions.has_delete_header("List-Unsubscribe", 1),
        "{actions:?}"
    );
    assert!(
        actions.has_delete_header("List-Unsubscribe-Post", 1),
        "{actions:?}"
    );
    token_of(&added(&actions));
    milter.stop().await;

    let milter = start_milter("existing_header = \"keep\"").await;
    let (actions, _) = send(&milter, "<news@example.com>", &["<a@example.org>"], &theirs).await;
    assert!(actions.actions.is_empty(), "{actions:?}");
    // Without a header of its own, the message still gets ours.
    let (actions, _) = send(&milter, "<news@example.com>", &["<a@example.org>"], &[]).await;
    token_of(&added(&actions));
    milter.stop().await;
}
