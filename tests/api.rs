//! Issue 14, item 1 (and the feed of item 2): the admin API of the running daemon, over a
//! real connection, as the sending application and the CRM use it.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::api::{self, READ, WRITE, json, request};
use indymilter_test::{Status, TestConnection};
use serde_json::json;
use std::net::SocketAddr;

async fn start() -> (common::TestMilter, SocketAddr) {
    let milter = common::start("", api::CONFIG).await;
    let addr = milter.api.expect("the API listens");
    (milter, addr)
}

/// The RCPT answer of the milter for a marketing message (sender rule: weekly-news).
async fn rcpt(milter: &common::TestMilter, to: &str) -> Status {
    let mut conn = TestConnection::open(milter.addr).await.unwrap();
    conn.connect(
        "client.example",
        "192.0.2.10:41234".parse::<SocketAddr>().unwrap(),
    )
    .await
    .unwrap();
    conn.mail(["<news@example.com>"]).await.unwrap();
    let status = conn.rcpt([format!("<{to}>")]).await.unwrap();
    conn.close().await.unwrap();
    status
}

/// The routes of the OpenAPI document in the repository, with example values for their
/// path and query parameters.
fn documented_routes() -> Vec<(String, String)> {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../docs/openapi.json")).unwrap();
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let path = path.replace("{address}", "ann%40example.org");
            let path = match path.as_str() {
                "/v1/decision" => "/v1/decision?address=ann@example.org".to_owned(),
                _ => path,
            };
            routes.push((method.to_uppercase(), path));
        }
    }
    assert!(routes.len() >= 9, "{routes:?}");
    routes
}

#[tokio::test]
async fn every_route_refuses_without_a_valid_token_and_writes_need_a_write_token() {
    let (milter, addr) = start().await;
    let mut near_miss = WRITE.to_owned();
    near_miss.pop();
    near_miss.push('0');
    let body = || json(&json!({"value": "n"}));
    for (method, path) in documented_routes() {
        for token in [None, Some("nonsense"), Some(near_miss.as_str()), Some("")] {
            let response = request(addr, &method, &path, token, body()).await;
            assert_eq!(response.status, 401, "{method} {path} with {token:?}");
            assert_eq!(response.headers["www-authenticate"], "Bearer");
            assert!(response.json()["error"].is_string());
        }
        let response = request(addr, &method, &path, Some(READ), body()).await;
        match method.as_str() {
            "GET" => assert_eq!(response.status, 200, "{method} {path}: {}", response.text()),
            _ => assert_eq!(response.status, 403, "{method} {path}: {}", response.text()),
        }
    }
    // Nothing was written by the refused writes.
    let address = optout_milter::consent::AddressPolicy::default()
        .normalize("ann@example.org")
        .unwrap();
    assert!(milter.store.history(&address).await.unwrap().is_empty());
    milter.stop().await;
}

#[tokio::test]
async fn the_served_document_is_the_one_in_the_repository_and_nothing_else_is_served() {
    let (milter, addr) = start().await;
    let served = request(addr, "GET", "/v1/openapi.json", Some(READ), None).await;
    assert_eq!(served.status, 200);
    assert_eq!(
        served.text(),
        include_str!("../docs/openapi.json"),
        "the served document differs from docs/openapi.json: run `optout-milter api openapi > docs/openapi.json`"
    );
    assert_eq!(served.text(), optout_milter::api::openapi_json());
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/v1"),
        ("PATCH", "/v1/consent/ann@example.org"),
        ("POST", "/v1/changes"),
        ("GET", "/v2/consent"),
    ] {
        let status = request(addr, method, path, Some(WRITE), None).await.status;
        assert!(matches!(status, 404 | 405), "{method} {path}: {status}");
    }
    milter.stop().await;
}

#[tokio::test]
async fn an_opt_out_set_through_the_api_refuses_the_next_rcpt_and_an_opt_in_lifts_it() {
    let (milter, addr) = start().await;
    assert_eq!(rcpt(&milter, "Ann@Example.org").await, Status::Continue);
    let decision = |list: &'static str| {
        request(
            addr,
            "GET",
            Box::leak(format!("/v1/decision?address=ann@example.org&list={list}").into_boxed_str()),
            Some(READ),
            None,
        )
    };
    let before = decision("weekly-news").await.json();
    assert_eq!(before["allowed"], true);
    assert_eq!(before["reason"], "default");

    let set = request(
        addr,
        "PUT",
        "/v1/consent/Ann@Example.ORG",
        Some(WRITE),
        json(&json!({"value": "n", "evidence": "CRM ticket 4711"})),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.text());
    let set = set.json();
    assert_eq!(set["outcome"], "changed");
    assert_eq!(set["record"]["address"], "ann@example.org");
    assert_eq!(set["record"]["scope"], "*");
    assert_eq!(set["record"]["source"], "api");
    assert_eq!(set["record"]["evidence"], "CRM ticket 4711 (API token crm)");
    // Acknowledged, so enforced: the next message is refused for her.
    assert!(matches!(
        rcpt(&milter, "ann@example.org").await,
        Status::Reject { .. }
    ));
    let after = decision("weekly-news").await.json();
    assert_eq!(after["allowed"], false);
    assert_eq!(after["reason"], "opted-out");
    assert_eq!(after["opted_out"], json!({"scope": "*", "value": "n"}));
    // The same again changes nothing.
    let again = request(
        addr,
        "PUT",
        "/v1/consent/ann@example.org",
        Some(WRITE),
        json(&json!({"value": "n"})),
    )
    .await;
    assert_eq!(again.json()["outcome"], "unchanged");

    let records = request(addr, "GET", "/v1/consent/ann@example.org", Some(READ), None)
        .await
        .json();
    assert_eq!(records["records"].as_array().unwrap().len(), 1);
    assert_eq!(records["default"], "y");

    let lifted = request(
        addr,
        "PUT",
        "/v1/consent/ann@example.org",
        Some(WRITE),
        json(&json!({"value": "y"})),
    )
    .await;
    assert_eq!(lifted.json()["outcome"], "changed");
    assert_eq!(rcpt(&milter, "ann@example.org").await, Status::Continue);
    assert_eq!(decision("weekly-news").await.json()["reason"], "consent");
    let history = request(
        addr,
        "GET",
        "/v1/consent/ann@example.org/history",
        Some(READ),
        None,
    )
    .await
    .json();
    let values: Vec<_> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].clone())
        .collect();
    assert_eq!(values, [json!("n"), json!("y")]);
    assert_eq!(
        history["entries"][1]["evidence"],
        "set through the API with token crm"
    );
    milter.stop().await;
}

#[tokio::test]
async fn a_decision_covers_the_forms_the_mta_delivers_to_the_same_mailbox() {
    let (milter, addr) = start().await;
    milter
        .set(
            "bob@example.org",
            "weekly-news",
            optout_milter::consent::ConsentValue::No,
        )
        .await;
    // A percent-hack alias of an opted-out address is refused, as the milter refuses it.
    let response = request(
        addr,
        "GET",
        "/v1/decision?address=bob%25example.org@relay.example.org&list=weekly-news",
        Some(READ),
        None,
    )
    .await
    .json();
    assert_eq!(response["allowed"], false, "{response}");
    assert_eq!(response["reason"], "opted-out");
    assert!(matches!(
        rcpt(&milter, "bob%example.org@relay.example.org").await,
        Status::Reject { .. }
    ));
    // Another list is not refused.
    let other = request(
        addr,
        "GET",
        "/v1/decision?address=bob@example.org&list=offers",
        Some(READ),
        None,
    )
    .await
    .json();
    assert_eq!(other["allowed"], true);
    milter.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_a_reason_and_records_nothing() {
    let (milter, addr) = start().await;
    for (method, path, body, status, says) in [
        (
            "PUT",
            "/v1/consent/ann@example.org",
            json!({"value": "maybe"}),
            400,
            "maybe",
        ),
        (
            "PUT",
            "/v1/consent/ann@example.org",
            json!({"value": "n", "channel": "sms"}),
            422,
            "not a phone number",
        ),
        (
            "PUT",
            "/v1/consent/ann@example.org",
            json!({"value": "n", "channel": "fax"}),
            400,
            "fax",
        ),
        (
            "PUT",
            "/v1/consent/ann@example.org",
            json!({"value": "n", "scope": "a b"}),
            400,
            "list id",
        ),
        (
            "PUT",
            "/v1/consent/ann@example.org",
            json!({"value": "n", "colour": "red"}),
            400,
            "colour",
        ),
        (
            "PUT",
            "/v1/consent/not-an-address",
            json!({"value": "n"}),
            422,
            "@",
        ),
        ("GET", "/v1/consent?limit=0", json!(null), 400, "limit"),
        (
            "GET",
            "/v1/consent?after=garbage!",
            json!(null),
            400,
            "cursor",
        ),
        ("GET", "/v1/changes?after=1", json!(null), 400, "cursor"),
        ("GET", "/v1/changes?limit=5000", json!(null), 400, "limit"),
    ] {
        let response = request(addr, method, path, Some(WRITE), json(&body)).await;
        assert_eq!(
            response.status,
            status,
            "{method} {path} {body}: {}",
            response.text()
        );
        let error = response.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(says), "{method} {path} {body}: {error}");
    }
    let not_json = request(
        addr,
        "PUT",
        "/v1/consent/ann@example.org",
        Some(WRITE),
        Some(("application/json", b"{".to_vec())),
    )
    .await;
    assert_eq!(not_json.status, 400);
    let feed = request(addr, "GET", "/v1/changes", Some(READ), None)
        .await
        .json();
    assert_eq!(feed["changes"], json!([]));
    milter.stop().await;
}

#[tokio::test]
async fn the_change_feed_has_every_change_once_in_order_from_a_cursor() {
    let (milter, addr) = start().await;
    let empty = request(addr, "GET", "/v1/changes", Some(READ), None)
        .await
        .json();
    assert_eq!(empty["changes"], json!([]));
    let start = empty["next"].as_str().unwrap().to_owned();
    // Changes by three ways in: the API, the daemon's own writes (as one-click and the
    // intake write), and an import.
    for value in ["n", "y", "n"] {
        let r = request(
            addr,
            "PUT",
            "/v1/consent/ann@example.org",
            Some(WRITE),
            json(&json!({"value": value})),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    milter
        .set(
            "bob@example.org",
            "*",
            optout_milter::consent::ConsentValue::No,
        )
        .await;
    let import = request(
        addr,
        "POST",
        "/v1/import?scope=weekly-news",
        Some(WRITE),
        Some((
            "text/csv",
            b"email\ncid@example.org\ndee@example.org\n".to_vec(),
        )),
    )
    .await;
    assert_eq!(import.status, 200, "{}", import.text());
    let mut seen = Vec::new();
    let mut cursor = start.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let page = request(
            addr,
            "GET",
            &format!("/v1/changes?after={cursor}&limit=2"),
            Some(READ),
            None,
        )
        .await
        .json();
        let changes = page["changes"].as_array().unwrap();
        assert!(changes.len() <= 2);
        if changes.is_empty() {
            // The cursor may move past what is known to be finished (on PostgreSQL), but
            // never past a change.
            cursor = page["next"].as_str().unwrap().to_owned();
            if seen.len() >= 6 {
                break;
            }
            // On PostgreSQL a change is handed out once every older transaction on the
            // server (other tests' included) has ended.
            assert!(
                std::time::Instant::now() < deadline,
                "the feed stopped at {seen:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        }
        for c in changes {
            seen.push((
                c["id"].as_i64().unwrap(),
                c["address"].as_str().unwrap().to_owned(),
                c["value"].as_str().unwrap().to_owned(),
                c["source"].as_str().unwrap().to_owned(),
            ));
        }
        cursor = page["next"].as_str().unwrap().to_owned();
    }
    let ids: std::collections::HashSet<_> = seen.iter().map(|s| s.0).collect();
    assert_eq!(ids.len(), seen.len(), "each change once: {seen:?}");
    let ann: Vec<_> = seen
        .iter()
        .filter(|s| s.1 == "ann@example.org")
        .map(|s| s.2.as_str())
        .collect();
    assert_eq!(ann, ["n", "y", "n"]);
    let sources: std::collections::BTreeSet<_> = seen.iter().map(|s| s.3.as_str()).collect();
    assert_eq!(sources, ["api", "cli", "import"].into_iter().collect());
    assert_eq!(seen.len(), 6);
    // A change after the end is read from the last cursor.
    milter
        .set(
            "eve@example.org",
            "*",
            optout_milter::consent::ConsentValue::No,
        )
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let page = request(
            addr,
            "GET",
            &format!("/v1/changes?after={cursor}"),
            Some(READ),
            None,
        )
        .await
        .json();
        if let Some(first) = page["changes"].as_array().unwrap().first() {
            assert_eq!(first["address"], "eve@example.org");
            break;
        }
        // PostgreSQL hands out a change once no older transaction is still running.
        assert!(
            std::time::Instant::now() < deadline,
            "the change never reached the feed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    milter.stop().await;
}

#[tokio::test]
async fn export_streams_every_record_and_import_takes_it_back() {
    let (milter, addr) = start().await;
    // More than one page of the export (5 000 records), with a row that is no address.
    let mut file = String::from("email\n");
    for i in 0..12_000 {
        file.push_str(&format!("user{i}@example.org\n"));
    }
    file.push_str("not an address\n");
    let imported = request(
        addr,
        "POST",
        "/v1/import?value=n&evidence=from%20the%20old%20ESP",
        Some(WRITE),
        Some(("text/csv", file.into_bytes())),
    )
    .await;
    assert_eq!(imported.status, 200, "{}", imported.text());
    let tally = imported.json();
    assert_eq!(tally["changed"], 12_000);
    assert_eq!(tally["bad"].as_array().unwrap().len(), 1);
    assert_eq!(tally["bad"][0]["line"], 12_002);

    let export = request(addr, "GET", "/v1/export", Some(READ), None).await;
    assert_eq!(export.status, 200);
    assert!(
        export.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = export.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "address,channel,scope,value,source,updated_at,evidence"
    );
    assert_eq!(lines.len(), 12_001);
    assert!(
        lines[1].contains("from the old ESP (API token crm)"),
        "{}",
        lines[1]
    );
    // The export read back changes nothing; a value with it is refused.
    let again = request(
        addr,
        "POST",
        "/v1/import",
        Some(WRITE),
        Some(("text/csv", text.clone().into_bytes())),
    )
    .await
    .json();
    assert_eq!(
        (again["changed"].clone(), again["unchanged"].clone()),
        (json!(0), json!(12_000))
    );
    let with_value = request(
        addr,
        "POST",
        "/v1/import?value=y",
        Some(WRITE),
        Some(("text/csv", text.into_bytes())),
    )
    .await;
    assert_eq!(with_value.status, 400);
    // Larger than api.max_import_bytes: refused whole.
    let huge = vec![b'a'; 5 * 1024 * 1024];
    let refused = request(
        addr,
        "POST",
        "/v1/import",
        Some(WRITE),
        Some(("text/csv", huge)),
    )
    .await;
    assert_eq!(refused.status, 413);
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("api.max_import_bytes")
    );
    // Pages of the list, with their cursor, cover the same records.
    let mut count = 0;
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/consent?limit=1000&after={a}"),
            None => "/v1/consent?limit=1000".to_owned(),
        };
        let page = request(addr, "GET", &path, Some(READ), None).await.json();
        count += page["records"].as_array().unwrap().len();
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(count, 12_000);
    milter.stop().await;
}

#[tokio::test]
async fn a_reload_rotates_the_tokens_without_a_restart() {
    let (milter, addr) = start().await;
    let rotated = "rw-rotated-0123456789abcdef0123456789abcdef";
    std::fs::write(milter.dir.path().join("crm.token"), rotated).unwrap();
    // Not before the reload: the file is read at start and at each reload only.
    assert_eq!(
        request(addr, "GET", "/v1/changes", Some(WRITE), None)
            .await
            .status,
        200
    );
    milter.reload().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while request(addr, "GET", "/v1/changes", Some(rotated), None)
        .await
        .status
        != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the rotated token never worked"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        request(addr, "GET", "/v1/changes", Some(WRITE), None)
            .await
            .status,
        401
    );
    // A token file made unreadable to others... or broken: the reload fails, and the
    // running tokens stay.
    std::fs::write(milter.dir.path().join("crm.token"), "short").unwrap();
    milter.reload().await;
    let put = request(
        addr,
        "PUT",
        "/v1/consent/ann@example.org",
        Some(rotated),
        json(&json!({"value": "n"})),
    )
    .await;
    assert_eq!(put.status, 200);
    milter.stop().await;
}

#[tokio::test]
async fn an_erased_address_leaves_the_store_and_stays_refused_until_lifted() {
    let extra = format!("{}{}", api::CONFIG, api::ERASURE);
    let milter = common::start("", &extra).await;
    let addr = milter.api.unwrap();
    let put = |value: &'static str| {
        request(
            addr,
            "PUT",
            "/v1/consent/gus@example.org",
            Some(WRITE),
            json(&json!({"value": value})),
        )
    };
    assert_eq!(put("n").await.status, 200);
    // A read token may not erase.
    let refused = request(
        addr,
        "DELETE",
        "/v1/consent/gus@example.org",
        Some(READ),
        None,
    )
    .await;
    assert_eq!(refused.status, 403);
    let erased = request(
        addr,
        "DELETE",
        "/v1/consent/Gus@Example.org",
        Some(WRITE),
        json(&json!({"evidence": "request 77 by mail"})),
    )
    .await;
    assert_eq!(erased.status, 200, "{}", erased.text());
    let erased = erased.json();
    assert_eq!(erased["history_deleted"], 1);
    let pseudonym = erased["kept_as"].as_str().unwrap().to_owned();
    assert!(pseudonym.starts_with("erased:") && !pseudonym.contains("gus"));
    // Gone from the records and the history, still refused.
    let records = request(addr, "GET", "/v1/consent/gus@example.org", Some(READ), None)
        .await
        .json();
    assert_eq!(records["records"], json!([]));
    assert_eq!(records["erased"], true);
    let history = request(
        addr,
        "GET",
        "/v1/consent/gus@example.org/history",
        Some(READ),
        None,
    )
    .await
    .json();
    assert_eq!(history["entries"], json!([]));
    assert!(matches!(
        rcpt(&milter, "gus@example.org").await,
        Status::Reject { .. }
    ));
    let decision = request(
        addr,
        "GET",
        "/v1/decision?address=gus@example.org",
        Some(READ),
        None,
    )
    .await
    .json();
    assert_eq!(decision["reason"], "opted-out");
    // The feed keeps an "erased" entry, without the address. (On PostgreSQL a change is
    // handed out once every older transaction on the server has ended: wait for it.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let feed = loop {
        let feed = request(addr, "GET", "/v1/changes", Some(READ), None)
            .await
            .text();
        if feed.contains(&pseudonym) || std::time::Instant::now() > deadline {
            break feed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(!feed.contains("gus@example.org"), "{feed}");
    assert!(
        feed.contains(&pseudonym) && feed.contains("\"erasure\""),
        "{feed}"
    );
    // An import of y is recorded, reported, and does not bring the mail back.
    let import = request(
        addr,
        "POST",
        "/v1/import?value=y",
        Some(WRITE),
        Some(("text/csv", b"gus@example.org\n".to_vec())),
    )
    .await
    .json();
    assert_eq!(
        (import["changed"].clone(), import["erased"].clone()),
        (json!(1), json!(1))
    );
    assert!(matches!(
        rcpt(&milter, "gus@example.org").await,
        Status::Reject { .. }
    ));
    // Lifted explicitly: the address follows its records (now y) again.
    let lifted = request(
        addr,
        "POST",
        "/v1/consent/gus@example.org/lift-erasure",
        Some(WRITE),
        None,
    )
    .await;
    assert_eq!(lifted.status, 200, "{}", lifted.text());
    assert_eq!(rcpt(&milter, "gus@example.org").await, Status::Continue);
    let again = request(
        addr,
        "POST",
        "/v1/consent/gus@example.org/lift-erasure",
        Some(WRITE),
        None,
    )
    .await;
    assert_eq!(again.status, 404);
    milter.stop().await;
}

#[tokio::test]
async fn without_an_erasure_key_erasing_is_refused_and_changes_nothing() {
    let (milter, addr) = start().await;
    milter
        .set(
            "hal@example.org",
            "*",
            optout_milter::consent::ConsentValue::No,
        )
        .await;
    let response = request(
        addr,
        "DELETE",
        "/v1/consent/hal@example.org",
        Some(WRITE),
        None,
    )
    .await;
    assert_eq!(response.status, 422);
    assert!(response.text().contains("erasure_key"));
    let history = request(
        addr,
        "GET",
        "/v1/consent/hal@example.org/history",
        Some(READ),
        None,
    )
    .await
    .json();
    assert_eq!(history["entries"].as_array().unwrap().len(), 1);
    milter.stop().await;
}

/// Issue 15, item 1: phone numbers on channel `sms`, in E.164 whatever the spelling, through
/// the API and its decision call.
#[tokio::test]
async fn phone_numbers_are_keys_on_channel_sms() {
    let extra = format!("{}\n[sms]\ndefault_region = \"FR\"\n", api::CONFIG);
    let milter = common::start("", &extra).await;
    let addr = milter.api.unwrap();
    let set = request(
        addr,
        "PUT",
        "/v1/consent/06%2012%2034%2056%2078",
        Some(WRITE),
        json(&json!({"channel": "sms", "value": "n", "evidence": "STOP"})),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.text());
    assert_eq!(set.json()["record"]["address"], "+33612345678");
    assert_eq!(set.json()["record"]["channel"], "sms");
    // Any spelling of the number finds the record; the decision is per channel.
    let records = request(
        addr,
        "GET",
        "/v1/consent/%2B33%206%2012%2034%2056%2078",
        Some(READ),
        None,
    )
    .await
    .json();
    assert_eq!(records["records"][0]["value"], "n");
    let sms = request(
        addr,
        "GET",
        "/v1/decision?channel=sms&address=0033612345678",
        Some(READ),
        None,
    )
    .await
    .json();
    assert_eq!(
        (sms["allowed"].clone(), sms["reason"].clone()),
        (json!(false), json!("opted-out"))
    );
    assert_eq!(sms["address"], "+33612345678");
    let other = request(
        addr,
        "GET",
        "/v1/decision?channel=sms&address=%2B14155552671",
        Some(READ),
        None,
    )
    .await
    .json();
    assert_eq!(other["allowed"], true);
    for (path, says) in [
        (
            "/v1/decision?channel=sms&address=STOP",
            "not a phone number",
        ),
        (
            "/v1/decision?channel=sms&address=06%2012",
            "not a valid phone number",
        ),
    ] {
        let response = request(addr, "GET", path, Some(READ), None).await;
        assert_eq!(response.status, 422, "{path}");
        assert!(
            response.json()["error"].as_str().unwrap().contains(says),
            "{path}"
        );
    }
    milter.stop().await;
}

#[tokio::test]
async fn without_a_default_region_national_numbers_are_refused() {
    let (milter, addr) = start().await;
    let response = request(
        addr,
        "PUT",
        "/v1/consent/0612345678",
        Some(WRITE),
        json(&json!({"channel": "sms", "value": "n"})),
    )
    .await;
    assert_eq!(response.status, 422);
    assert!(
        response.text().contains("default_region"),
        "{}",
        response.text()
    );
    let international = request(
        addr,
        "PUT",
        "/v1/consent/+33612345678",
        Some(WRITE),
        json(&json!({"channel": "sms", "value": "n"})),
    )
    .await;
    assert_eq!(international.status, 200, "{}", international.text());
    milter.stop().await;
}
