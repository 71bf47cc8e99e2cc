//! The web front through its router (`oneshot`, no socket): every case of the one-click
//! endpoint, the landing page and its undo.
#![allow(clippy::unwrap_used)] // tests fail loudly
mod common;

use axum::{
    Router,
    body::Body,
    extract::connect_info::MockConnectInfo,
    http::{Request, StatusCode, header},
};
use http_body_util::BodyExt;
use optout_milter::{
    config::{Config, Overrides},
    consent::{AddressPolicy, ConsentValue, Scope, Source},
    daemon::App,
    store::{self, ConsentStore},
    unsubscribe::Unsubscribe,
    web::app,
};
use std::{
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};
use tower::ServiceExt;

const CONFIG: &str = r#"
[unsubscribe]
https_base = "https://unsubscribe.example.com"
mailto = "unsubscribe@example.com"
generate_missing_key = true
[[unsubscribe.keys]]
id = 1
file = "@DIR@/token.key"

[web]
listen = "127.0.0.1:0"
sender_name = "Example News"
trusted_proxies = ["10.0.0.0/8"]
@WEB@
[web.lists]
weekly-news = "The Weekly"
offers = "Offers and deals"
"#;

struct Fixture {
    app: Router,
    store: Arc<dyn ConsentStore>,
    unsubscribe: Arc<Unsubscribe>,
    db_url: String,
    _dir: tempfile::TempDir,
    _postgres: Option<common::postgres::TestDb>,
}

async fn fixture(web_keys: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (db_url, postgres) =
        common::postgres::fixture_store(format!("sqlite:{}", dir.path().join("c.db").display()))
            .await;
    let text = CONFIG
        .replace("@DIR@", &dir.path().to_string_lossy())
        .replace("@WEB@", web_keys);
    let overrides = Overrides {
        store_url: Some(db_url.clone()),
        socket: None,
    };
    let config = Config::parse(Path::new("test.toml"), &text, &overrides).unwrap();
    let store = store::open_or_create(&db_url).await.unwrap();
    // The web front as the daemon assembles it (the consent index included).
    let daemon = App::build(config, overrides, store.clone()).await.unwrap();
    let front = daemon.web().unwrap().clone();
    let unsubscribe = front.current().unsubscribe.clone();
    let peer: SocketAddr = "192.0.2.44:50000".parse().unwrap();
    Fixture {
        app: app(front).layer(MockConnectInfo(peer)),
        store,
        unsubscribe,
        db_url,
        _dir: dir,
        _postgres: postgres,
    }
}

impl Fixture {
    async fn token_at(&self, address: &str, list: &str, issued: SystemTime) -> String {
        let address = AddressPolicy::default().normalize(address).unwrap();
        let subject = self
            .store
            .subject_id(&address, &list.parse().unwrap())
            .await
            .unwrap();
        self.unsubscribe.codec.mint(subject, issued).unwrap()
    }

    async fn token(&self, address: &str, list: &str) -> String {
        self.token_at(address, list, SystemTime::now()).await
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    async fn value(&self, address: &str, scope: &str) -> Option<(ConsentValue, Source)> {
        let address = AddressPolicy::default().normalize(address).unwrap();
        let scope: Scope = scope.parse().unwrap();
        self.store
            .records(&address)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.scope == scope)
            .map(|r| (r.value, r.source))
    }

    async fn history_len(&self, address: &str) -> usize {
        let address = AddressPolicy::default().normalize(address).unwrap();
        self.store.history(&address).await.unwrap().len()
    }
}

fn post(uri: &str, content_type: Option<&str>, body: &str) -> Request<Body> {
    let mut builder = Request::post(uri);
    if let Some(ct) = content_type {
        builder = builder.header(header::CONTENT_TYPE, ct);
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

fn get(uri: &str, lang: Option<&str>) -> Request<Body> {
    let mut builder = Request::get(uri);
    if let Some(lang) = lang {
        builder = builder.header(header::ACCEPT_LANGUAGE, lang);
    }
    builder.body(Body::empty()).unwrap()
}

const FORM: &str = "application/x-www-form-urlencoded";
const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

#[tokio::test]
async fn one_click_post_with_a_form_body_records_a_durable_opt_out_with_evidence() {
    let f = fixture("").await;
    let token = f.token("Reader@Example.org", "weekly-news").await;
    let request = Request::post(format!("/u/{token}"))
        .header(header::CONTENT_TYPE, FORM)
        .header(
            header::USER_AGENT,
            "Mozilla/5.0 (compatible; GoogleOneClick)",
        )
        .body(Body::from("List-Unsubscribe=One-Click"))
        .unwrap();
    let (status, headers, body) = f.send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(headers.get(header::LOCATION).is_none());
    assert_eq!(
        f.value("reader@example.org", "weekly-news").await,
        Some((ConsentValue::No, Source::OneClick))
    );
    let address = AddressPolicy::default()
        .normalize("reader@example.org")
        .unwrap();
    let history = f.store.history(&address).await.unwrap();
    let evidence = &history[0].change.evidence;
    assert!(evidence.contains("token=k1/s"), "{evidence}");
    assert!(evidence.contains("client=192.0.2.44"), "{evidence}");
    assert!(evidence.contains("GoogleOneClick"), "{evidence}");
    assert!(
        !evidence.contains(&token),
        "the token itself must not be kept: {evidence}"
    );
}

#[tokio::test]
async fn one_click_accepts_empty_and_multipart_bodies_and_repeats_are_harmless() {
    let f = fixture("").await;
    let empty = f.token("empty@example.org", "weekly-news").await;
    let (status, _, _) = f.send(post(&format!("/u/{empty}"), None, "")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        f.value("empty@example.org", "weekly-news").await.unwrap().0,
        ConsentValue::No
    );

    let multi = f.token("multi@example.org", "*").await;
    let boundary = "----gmail1234";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--{boundary}--\r\n"
    );
    let ct = format!("multipart/form-data; boundary={boundary}");
    let (status, _, _) = f.send(post(&format!("/u/{multi}"), Some(&ct), &body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        f.value("multi@example.org", "*").await.unwrap().0,
        ConsentValue::No
    );

    for _ in 0..3 {
        let (status, _, _) = f
            .send(post(
                &format!("/u/{multi}"),
                Some(FORM),
                "List-Unsubscribe=One-Click",
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(
        f.history_len("multi@example.org").await,
        1,
        "repeats must not write"
    );
}

#[tokio::test]
async fn forged_and_malformed_tokens_get_a_404_and_record_nothing() {
    let f = fixture("").await;
    let token = f.token("reader@example.org", "weekly-news").await;
    let mut forged = token.clone().into_bytes();
    forged[20] = if forged[20] == b'a' { b'b' } else { b'a' };
    let forged = String::from_utf8(forged).unwrap();
    for bad in [forged.as_str(), "short", "x".repeat(300).as_str(), "%00%ff"] {
        let (status, _, body) = f
            .send(post(
                &format!("/u/{bad}"),
                Some(FORM),
                "List-Unsubscribe=One-Click",
            ))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
        assert!(body.len() < 2000 && body.contains("not valid"), "{body}");
        let (status, _, _) = f.send(get(&format!("/u/{bad}"), None)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    assert_eq!(f.history_len("reader@example.org").await, 0);
}

#[tokio::test]
async fn an_expired_token_still_unsubscribes_but_cannot_undo() {
    let f = fixture("").await;
    let old = SystemTime::now() - Duration::from_secs(400 * 86_400);
    let token = f.token_at("old@example.org", "weekly-news", old).await;
    let (status, _, body) = f
        .send(post(
            &format!("/u/{token}"),
            Some(FORM),
            "List-Unsubscribe=One-Click&via=page",
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !body.contains("/undo"),
        "no undo for an expired token: {body}"
    );
    assert_eq!(
        f.value("old@example.org", "weekly-news").await.unwrap().0,
        ConsentValue::No
    );
    let address = AddressPolicy::default()
        .normalize("old@example.org")
        .unwrap();
    assert!(
        f.store.history(&address).await.unwrap()[0]
            .change
            .evidence
            .contains("(expired)")
    );
    let (status, _, _) = f
        .send(post(&format!("/u/{token}/undo"), Some(FORM), ""))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        f.value("old@example.org", "weekly-news").await.unwrap().0,
        ConsentValue::No
    );
}

#[tokio::test]
async fn get_shows_the_question_and_never_changes_the_store() {
    let f = fixture("").await;
    let token = f.token("jane@example.org", "weekly-news").await;
    for _ in 0..3 {
        let (status, headers, body) = f
            .send(get(&format!("/u/{token}"), Some("en-US,en;q=0.9")))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains("For <strong>j***@example.org</strong>")
                && body.contains(
                    "You followed a link to unsubscribe from <strong>The Weekly</strong>."
                ),
            "{body}"
        );
        // The one-click form posts to the link itself (relative, so any proxy path works).
        assert!(
            body.contains(&format!("<form method=\"post\" action=\"{token}\">")),
            "{body}"
        );
        assert!(!body.contains("<script"), "{body}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.starts_with("default-src 'none'")
                && csp.contains("form-action 'self'")
                && csp.contains("style-src 'self'"),
            "{csp}"
        );
    }
    assert_eq!(f.history_len("jane@example.org").await, 0);
    let (_, _, french) = f
        .send(get(&format!("/u/{token}"), Some("fr-FR,fr;q=0.9,en;q=0.5")))
        .await;
    assert!(
        french.contains("lang=\"fr\"") && french.contains("Me désabonner"),
        "{french}"
    );
    let all = f.token("jane@example.org", "*").await;
    let (_, _, body) = f.send(get(&format!("/u/{all}"), None)).await;
    assert!(
        body.contains("all marketing email from Example News"),
        "{body}"
    );
    // The style sheet the pages link to.
    let (status, headers, css) = f.send(get("/u/assets/style.css", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(css.contains("--accent:"), "{css}");
}

/// The action id in a page's undo form.
fn action_of(body: &str) -> String {
    let start = body
        .find("name=\"action\" value=\"")
        .unwrap_or_else(|| panic!("no undo form in {body}"))
        + "name=\"action\" value=\"".len();
    body[start..start + 16].to_owned()
}

#[tokio::test]
async fn the_page_button_then_undo_restores_consent_within_the_window() {
    let f = fixture("").await;
    let token = f.token("jane@example.org", "weekly-news").await;
    let (status, _, body) = f
        .send(post(
            &format!("/u/{token}"),
            Some(FORM),
            "List-Unsubscribe=One-Click&via=page",
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("You are unsubscribed"), "{body}");
    assert!(body.contains(&format!("action=\"{token}/undo\"")), "{body}");
    assert_eq!(
        f.value("jane@example.org", "weekly-news").await,
        Some((ConsentValue::No, Source::Web))
    );
    let action = action_of(&body);
    // Without the action, or with another, there is nothing to undo.
    for form in [
        String::new(),
        "action=0123456789abcdef".into(),
        "action=x".into(),
    ] {
        let (status, _, _) = f
            .send(post(&format!("/u/{token}/undo"), Some(FORM), &form))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{form}");
    }
    let (status, _, body) = f
        .send(post(
            &format!("/u/{token}/undo"),
            Some(FORM),
            &format!("action={action}"),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Your previous choices are back"), "{body}");
    // Back to no record, as before: not an explicit yes.
    assert_eq!(f.value("jane@example.org", "weekly-news").await, None);
    assert_eq!(f.history_len("jane@example.org").await, 2);
    // Nothing left to undo.
    let (status, _, _) = f
        .send(post(
            &format!("/u/{token}/undo"),
            Some(FORM),
            &format!("action={action}"),
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// Issue 14, item 4: the preferences page shows each list's state; saving the ticked
/// lists writes only what changed; "unsubscribe from all" and ticking lists afterwards
/// work together; each change undoes to exactly the state before it, "no record"
/// included.
#[tokio::test]
async fn preferences_change_lists_unsubscribe_from_all_and_undo_exactly() {
    let f = fixture("").await;
    let token = f.token("jane@example.org", "weekly-news").await;
    let address = AddressPolicy::default()
        .normalize("jane@example.org")
        .unwrap();
    f.store
        .record(&[optout_milter::consent::Change {
            address: address.clone(),
            channel: optout_milter::consent::Channel::Email,
            scope: "offers".parse().unwrap(),
            value: ConsentValue::Yes,
            source: Source::Import,
            at: SystemTime::now(),
            evidence: "signed up at the shop".into(),
        }])
        .await
        .unwrap();
    let url = format!("/u/{token}");
    let page = || async { f.send(get(&url, None)).await.2 };
    let ticked = |body: &str, id: &str| {
        let at = body
            .find(&format!("value=\"{id}\""))
            .unwrap_or_else(|| panic!("no list {id} in {body}"));
        body[at..at + 40].contains("checked")
    };
    let body = page().await;
    assert!(
        ticked(&body, "weekly-news") && ticked(&body, "offers"),
        "{body}"
    );
    assert!(body.contains("Offers and deals"), "{body}");

    // Untick "Offers and deals" and save: one n, nothing for the untouched list.
    let (status, _, body) = f
        .send(post(
            &format!("/u/{token}/preferences"),
            Some(FORM),
            "list=weekly-news",
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Your choices are saved"), "{body}");
    let saved = action_of(&body);
    assert_eq!(
        f.value("jane@example.org", "offers").await,
        Some((ConsentValue::No, Source::Web))
    );
    assert_eq!(f.value("jane@example.org", "weekly-news").await, None);
    let body = page().await;
    assert!(
        ticked(&body, "weekly-news") && !ticked(&body, "offers"),
        "{body}"
    );
    // Undo: offers back to its imported y (the value before, with its source).
    let (status, _, _) = f
        .send(post(
            &format!("/u/{token}/undo"),
            Some(FORM),
            &format!("action={saved}"),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        f.value("jane@example.org", "offers").await.map(|v| v.0),
        Some(ConsentValue::Yes)
    );

    // Unsubscribe from all: the page then says so, and no list is ticked.
    let (status, _, body) = f
        .send(post(&format!("/u/{token}/all"), Some(FORM), ""))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains(
            "will no longer receive any marketing email from <strong>Example News</strong>"
        ),
        "{body}"
    );
    let all = action_of(&body);
    assert_eq!(
        f.value("jane@example.org", "*").await,
        Some((ConsentValue::No, Source::Web))
    );
    let body = page().await;
    assert!(
        body.contains("You are unsubscribed from all marketing email"),
        "{body}"
    );
    assert!(
        !ticked(&body, "weekly-news") && !ticked(&body, "offers"),
        "{body}"
    );

    // Tick only "Offers and deals": the opt-out from all goes, The Weekly gets its own n.
    let (_, _, body) = f
        .send(post(
            &format!("/u/{token}/preferences"),
            Some(FORM),
            "list=offers",
        ))
        .await;
    let chosen = action_of(&body);
    assert_eq!(f.value("jane@example.org", "*").await, None);
    assert_eq!(
        f.value("jane@example.org", "weekly-news")
            .await
            .map(|v| v.0),
        Some(ConsentValue::No)
    );
    assert_eq!(
        f.value("jane@example.org", "offers").await.map(|v| v.0),
        Some(ConsentValue::Yes)
    );
    // Undo that: all marketing off again, The Weekly back to no record.
    let (status, _, _) = f
        .send(post(
            &format!("/u/{token}/undo"),
            Some(FORM),
            &format!("action={chosen}"),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        f.value("jane@example.org", "*").await.map(|v| v.0),
        Some(ConsentValue::No)
    );
    assert_eq!(f.value("jane@example.org", "weekly-news").await, None);
    // And undo the unsubscribe from all: no record at * either, as at the start.
    let (status, _, _) = f
        .send(post(
            &format!("/u/{token}/undo"),
            Some(FORM),
            &format!("action={all}"),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(f.value("jane@example.org", "*").await, None);
    let body = page().await;
    assert!(
        ticked(&body, "weekly-news") && ticked(&body, "offers"),
        "{body}"
    );
    // The history keeps every step, the emptyings included.
    let history = f.store.history(&address).await.unwrap();
    assert_eq!(
        history.iter().filter(|e| e.emptied).count(),
        3,
        "{history:?}"
    );
}

#[tokio::test]
async fn undo_after_the_window_is_refused() {
    let f = fixture("undo_window = \"0s\"").await;
    let token = f.token("jane@example.org", "weekly-news").await;
    let (_, _, body) = f
        .send(post(&format!("/u/{token}"), Some(FORM), "via=page"))
        .await;
    assert!(!body.contains("/undo"), "{body}");
    // Let the recorded time fall behind the (zero) window, however coarse the clock.
    let recorded = SystemTime::now();
    while SystemTime::now() <= recorded + Duration::from_millis(2) {
        tokio::task::yield_now().await;
    }
    let (status, _, _) = f
        .send(post(&format!("/u/{token}/undo"), Some(FORM), ""))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        f.value("jane@example.org", "weekly-news").await.unwrap().0,
        ConsentValue::No
    );
}

#[tokio::test]
async fn limits_rate_and_size() {
    let f = fixture("rate_limit = 3").await;
    let token = f.token("jane@example.org", "weekly-news").await;
    let big = "x".repeat(64 * 1024);
    let (status, _, _) = f.send(post(&format!("/u/{token}"), Some(FORM), &big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(f.history_len("jane@example.org").await, 0);
    // Page views count: three pass, the next is refused.
    for _ in 0..3 {
        assert_eq!(
            f.send(get(&format!("/u/{token}"), None)).await.0,
            StatusCode::OK
        );
    }
    let (status, headers, _) = f.send(get(&format!("/u/{token}"), None)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers[header::RETRY_AFTER], "60");
}

/// Regression (issue 11, item 2): mailbox providers send all their users' one-click POSTs
/// from a few addresses; after `rate_limit` a minute the rest got 429 and were lost. A
/// POST with a valid token is never refused for rate; forged ones are.
#[tokio::test]
async fn one_click_posts_with_valid_tokens_from_one_provider_are_never_rate_limited() {
    let f = fixture("rate_limit = 3").await;
    for i in 0..200 {
        let address = format!("user{i}@example.org");
        let token = f.token(&address, "weekly-news").await;
        let (status, _, _) = f
            .send(post(&format!("/u/{token}"), Some(FORM), ONE_CLICK))
            .await;
        assert_eq!(status, StatusCode::OK, "{address}");
    }
    for i in 0..200 {
        let value = f
            .value(&format!("user{i}@example.org"), "weekly-news")
            .await;
        assert_eq!(value, Some((ConsentValue::No, Source::OneClick)), "user{i}");
    }
    // Forged tokens from the same client: refused, and limited after three.
    let forged = "a".repeat(34);
    for _ in 0..3 {
        let (status, _, _) = f
            .send(post(&format!("/u/{forged}"), Some(FORM), ONE_CLICK))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, _, _) = f
        .send(post(&format!("/u/{forged}"), Some(FORM), ONE_CLICK))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // A valid token still goes through while the client is over its limit.
    let token = f.token("late@example.org", "weekly-news").await;
    let (status, _, _) = f
        .send(post(&format!("/u/{token}"), Some(FORM), ONE_CLICK))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn healthz_reports_the_store() {
    let f = fixture("").await;
    assert_eq!(f.send(get("/healthz", None)).await.0, StatusCode::OK);
    common::drop_tables(&f.db_url, &["consent"]).await;
    assert_eq!(
        f.send(get("/healthz", None)).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // A broken store never acknowledges an opt-out.
    let token = f.token("jane@example.org", "weekly-news").await;
    let (status, _, body) = f
        .send(post(
            &format!("/u/{token}"),
            Some(FORM),
            "List-Unsubscribe=One-Click",
        ))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !body.contains("sqlite") && !body.contains("consent"),
        "{body}"
    );
}
