//! Issue 15, item 2: SMS keywords from the providers, through the web front's router
//! (`oneshot`, no socket), as the daemon assembles it: Twilio's signed form and TwiML,
//! Vonage's signed JWT, the generic JSON behind a shared secret; what each keyword
//! records; retries applied once; nothing recorded for what does not verify. The end to
//! end case through a real Postfix is `stop_by_text_refuses_mail_to_the_gateway_…` below.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use axum::{
    Router,
    body::Body,
    extract::connect_info::MockConnectInfo,
    http::{Request, StatusCode, header},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::BodyExt;
use optout_milter::{
    config::{Config, Overrides},
    consent::{Address, Channel, ConsentValue, Source},
    daemon::App,
    sms::twilio,
    store::{self, ConsentStore},
};
use sha2::{Digest, Sha256};
use std::{net::SocketAddr, os::unix::fs::PermissionsExt, path::Path, sync::Arc};
use tower::ServiceExt;

const TWILIO_TOKEN: &str = "5f8a2c1e9b7d4f6a3c0e8b2d7f1a4c6e";
const VONAGE_SECRET: &str = "vonage-signature-secret-0123456789";
const SHARED_SECRET: &str = "a3f1c9e27b8d4065f2e1a9c7b3d8e0f4";
const TWILIO_URL: &str = "https://sms.example.com/sms/twilio";

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
[sms]
default_region = "US"
[sms.numbers]
"+1 415 555 0199" = "weekly-news"
"12345" = "alerts"
[sms.twilio]
auth_token_file = "@DIR@/twilio"
url = "https://sms.example.com/sms/twilio"
[sms.vonage]
signature_secret_file = "@DIR@/vonage"
api_key = "abcd1234"
[sms.generic]
secret_file = "@DIR@/shared"
"#;

struct Fixture {
    app: Router,
    store: Arc<dyn ConsentStore>,
    _dir: tempfile::TempDir,
    _postgres: Option<common::postgres::TestDb>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    for (name, secret) in [
        ("twilio", TWILIO_TOKEN),
        ("vonage", VONAGE_SECRET),
        ("shared", SHARED_SECRET),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{secret}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let (db_url, postgres) =
        common::postgres::fixture_store(format!("sqlite:{}", dir.path().join("c.db").display()))
            .await;
    let text = CONFIG.replace("@DIR@", &dir.path().to_string_lossy());
    let overrides = Overrides {
        store_url: Some(db_url.clone()),
        socket: None,
    };
    let config = Config::parse(Path::new("test.toml"), &text, &overrides).unwrap();
    let store = store::open_or_create(&db_url).await.unwrap();
    let daemon = App::build(config, overrides, store.clone()).await.unwrap();
    let front = daemon.web().unwrap().clone();
    let peer: SocketAddr = "192.0.2.44:50000".parse().unwrap();
    Fixture {
        app: optout_milter::web::app(front).layer(MockConnectInfo(peer)),
        store,
        _dir: dir,
        _postgres: postgres,
    }
}

impl Fixture {
    async fn send(&self, request: Request<Body>) -> (StatusCode, String, String) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (
            parts.status,
            content_type,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    /// A Twilio inbound SMS, signed as Twilio signs it (with `token`).
    async fn twilio(
        &self,
        token: &str,
        sid: &str,
        from: &str,
        to: &str,
        body: &str,
    ) -> (StatusCode, String) {
        let params: Vec<(String, String)> = [
            ("ToCountry", "US"),
            ("SmsMessageSid", sid),
            ("NumMedia", "0"),
            ("SmsSid", sid),
            ("SmsStatus", "received"),
            ("Body", body),
            ("To", to),
            ("NumSegments", "1"),
            ("MessageSid", sid),
            ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
            ("From", from),
            ("ApiVersion", "2010-04-01"),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
        let form: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        let signature = twilio::signature(token.as_bytes(), TWILIO_URL, &params);
        let request = Request::post("/sms/twilio")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("X-Twilio-Signature", signature)
            .body(Body::from(form))
            .unwrap();
        let (status, content_type, text) = self.send(request).await;
        if status == StatusCode::OK {
            assert!(content_type.starts_with("text/xml"), "{content_type}");
        }
        (status, text)
    }

    async fn sms_values(&self, number: &str) -> Vec<(String, ConsentValue, Source)> {
        let number = Address::from_stored(number.to_owned());
        let mut values: Vec<_> = self
            .store
            .records(&number)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.channel == Channel::Sms)
            .map(|r| (r.scope.as_str().to_owned(), r.value, r.source))
            .collect();
        values.sort_by(|a, b| a.0.cmp(&b.0));
        values
    }

    async fn history_len(&self, number: &str) -> usize {
        let number = Address::from_stored(number.to_owned());
        self.store.history(&number).await.unwrap().len()
    }
}

const PERSON: &str = "+14155550100";
const OURS: &str = "+14155550199";

fn reply(twiml: &str) -> Option<&str> {
    let start = twiml.find("<Message>")? + "<Message>".len();
    let end = twiml.find("</Message>")?;
    Some(&twiml[start..end])
}

#[tokio::test]
async fn twilio_stop_start_and_help_record_what_they_ask_and_answer_in_twiml() {
    let f = fixture().await;
    let (status, twiml) = f.twilio(TWILIO_TOKEN, "SM001", PERSON, OURS, "Stop!").await;
    assert_eq!(status, StatusCode::OK, "{twiml}");
    assert_eq!(
        reply(&twiml),
        Some(
            "Example News: you are unsubscribed and will get no more messages from this number. Reply START to subscribe again."
        )
    );
    // STOP to a number leaves that number's list ([sms.numbers]).
    assert_eq!(
        f.sms_values(PERSON).await,
        [("weekly-news".into(), ConsentValue::No, Source::SmsKeyword)]
    );
    let history = f
        .store
        .history(&Address::from_stored(PERSON.into()))
        .await
        .unwrap();
    let evidence = &history[0].change.evidence;
    assert!(
        evidence.contains("twilio message SM001 from +14155550100 to +14155550199: STOP"),
        "{evidence}"
    );

    // HELP changes nothing and answers the help text.
    let (status, twiml) = f
        .twilio(TWILIO_TOKEN, "SM002", PERSON, OURS, " help ")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        reply(&twiml).unwrap().contains("reply STOP to stop"),
        "{twiml}"
    );
    assert_eq!(f.history_len(PERSON).await, 1);

    // A message that is no keyword: an empty answer, nothing recorded.
    let (status, twiml) = f
        .twilio(
            TWILIO_TOKEN,
            "SM003",
            PERSON,
            OURS,
            "please stop sending these",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(twiml.contains("<Response/>"), "{twiml}");
    assert_eq!(f.history_len(PERSON).await, 1);

    // START subscribes again.
    let (status, twiml) = f.twilio(TWILIO_TOKEN, "SM004", PERSON, OURS, "START").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        reply(&twiml).unwrap().contains("subscribed again"),
        "{twiml}"
    );
    assert_eq!(
        f.sms_values(PERSON).await,
        [("weekly-news".into(), ConsentValue::Yes, Source::SmsKeyword)]
    );

    // Twilio's retry of the first STOP (same MessageSid), after START: the same answer,
    // and nothing recorded again; the person stays subscribed.
    let (status, twiml) = f.twilio(TWILIO_TOKEN, "SM001", PERSON, OURS, "Stop!").await;
    assert_eq!(status, StatusCode::OK);
    assert!(reply(&twiml).unwrap().contains("unsubscribed"), "{twiml}");
    assert_eq!(
        f.sms_values(PERSON).await,
        [("weekly-news".into(), ConsentValue::Yes, Source::SmsKeyword)]
    );
    assert_eq!(f.history_len(PERSON).await, 2);

    // In French, to a short code that is its own list.
    let (status, twiml) = f
        .twilio(TWILIO_TOKEN, "SM005", PERSON, "12345", "Arrêt")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        reply(&twiml).unwrap().contains("vous êtes désinscrit(e)"),
        "{twiml}"
    );
    assert!(f.sms_values(PERSON).await.contains(&(
        "alerts".into(),
        ConsentValue::No,
        Source::SmsKeyword
    )));
}

#[tokio::test]
async fn stopall_leaves_all_marketing_and_start_undoes_it() {
    let f = fixture().await;
    // A number not in [sms.numbers] is a list of its own.
    let (status, _) = f
        .twilio(TWILIO_TOKEN, "SM101", PERSON, "+14155550123", "stop")
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, twiml) = f
        .twilio(TWILIO_TOKEN, "SM102", PERSON, OURS, "stop  all.")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        reply(&twiml).unwrap().contains("all our marketing"),
        "{twiml}"
    );
    assert_eq!(
        f.sms_values(PERSON).await,
        [
            ("*".into(), ConsentValue::No, Source::SmsKeyword),
            ("14155550123".into(), ConsentValue::No, Source::SmsKeyword),
        ]
    );
    // START to one number: that number's list, and all marketing, which STOPALL took.
    // The other number's own STOP stays.
    f.twilio(TWILIO_TOKEN, "SM103", PERSON, OURS, "Start").await;
    assert_eq!(
        f.sms_values(PERSON).await,
        [
            ("*".into(), ConsentValue::Yes, Source::SmsKeyword),
            ("14155550123".into(), ConsentValue::No, Source::SmsKeyword),
            ("weekly-news".into(), ConsentValue::Yes, Source::SmsKeyword),
        ]
    );
}

#[tokio::test]
async fn a_twilio_request_that_does_not_verify_records_nothing() {
    let f = fixture().await;
    // Signed with another auth token.
    let (status, _) = f
        .twilio(
            "00000000000000000000000000000000",
            "SM201",
            PERSON,
            OURS,
            "STOP",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // No signature; a signature over other parameters.
    let form = "MessageSid=SM202&From=%2B14155550100&To=%2B14155550199&Body=STOP";
    let mut params = twilio::params(form.as_bytes());
    let unsigned = Request::post("/sms/twilio")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    assert_eq!(f.send(unsigned).await.0, StatusCode::FORBIDDEN);
    params[3].1 = "HELP".into();
    let other = twilio::signature(TWILIO_TOKEN.as_bytes(), TWILIO_URL, &params);
    let forged = Request::post("/sms/twilio")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", other)
        .body(Body::from(form))
        .unwrap();
    assert_eq!(f.send(forged).await.0, StatusCode::FORBIDDEN);
    // Signed for another URL (a query the request does not have).
    let elsewhere = twilio::signature(
        TWILIO_TOKEN.as_bytes(),
        &format!("{TWILIO_URL}?x=1"),
        &twilio::params(form.as_bytes()),
    );
    let request = Request::post("/sms/twilio")
        .header("X-Twilio-Signature", elsewhere.clone())
        .body(Body::from(form))
        .unwrap();
    assert_eq!(f.send(request).await.0, StatusCode::FORBIDDEN);
    assert!(f.sms_values(PERSON).await.is_empty());
    assert_eq!(f.history_len(PERSON).await, 0);
    // The same signature is right for a request with that query.
    let request = Request::post("/sms/twilio?x=1")
        .header("X-Twilio-Signature", elsewhere)
        .body(Body::from(form))
        .unwrap();
    assert_eq!(f.send(request).await.0, StatusCode::OK);
    assert_eq!(f.history_len(PERSON).await, 1);
}

/// A JWT as Vonage signs its Messages API webhooks (HS256, the body's SHA-256 in
/// `payload_hash`).
fn vonage_jwt(secret: &str, api_key: &str, body: &[u8]) -> String {
    let hash: String = Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"iat":1764460000,"jti":"2f8e6c1a-5b0d-4e7f-9a3c-1d2e3f4a5b6c","iss":"Vonage","payload_hash":"{hash}","api_key":"{api_key}","application_id":"aaaaaaaa-bbbb-cccc-dddd-0123456789ab"}}"#
    ));
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{header}.{claims}").as_bytes());
    format!(
        "{header}.{claims}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn vonage_body(uuid: &str, text: &str) -> String {
    format!(
        r#"{{"channel":"sms","message_uuid":"{uuid}","to":"14155550199","from":"14155550100","timestamp":"2026-11-29T12:14:25Z","text":"{text}","sms":{{"num_messages":"1","keyword":"{text}"}},"message_type":"text"}}"#
    )
}

fn vonage_request(jwt: Option<&str>, body: &str) -> Request<Body> {
    let mut builder = Request::post("/sms/vonage").header(header::CONTENT_TYPE, "application/json");
    if let Some(jwt) = jwt {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {jwt}"));
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

#[tokio::test]
async fn vonage_messages_are_taken_only_with_vonages_signature() {
    let f = fixture().await;
    let body = vonage_body("aaaaaaaa-bbbb-cccc-dddd-000000000001", "STOP");
    for jwt in [
        None,
        Some(vonage_jwt(
            "another-signature-secret-0000",
            "abcd1234",
            body.as_bytes(),
        )),
        Some(vonage_jwt(VONAGE_SECRET, "another-key", body.as_bytes())),
        Some(vonage_jwt(
            VONAGE_SECRET,
            "abcd1234",
            b"{\"another\":\"body\"}",
        )),
    ] {
        let (status, _, text) = f.send(vonage_request(jwt.as_deref(), &body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    }
    assert_eq!(f.history_len(PERSON).await, 0);

    let jwt = vonage_jwt(VONAGE_SECRET, "abcd1234", body.as_bytes());
    let (status, _, text) = f.send(vonage_request(Some(&jwt), &body)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["action"], "opt_out");
    assert_eq!(answer["number"], PERSON);
    assert_eq!(answer["repeated"], false);
    assert_eq!(
        f.sms_values(PERSON).await,
        [("weekly-news".into(), ConsentValue::No, Source::SmsKeyword)]
    );
    // Vonage's retry: the same message, signed again.
    let (status, _, text) = f.send(vonage_request(Some(&jwt), &body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["repeated"],
        true
    );
    assert_eq!(f.history_len(PERSON).await, 1);
}

fn generic(secret: &str, body: &str) -> Request<Body> {
    Request::post("/sms/inbound")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {secret}"))
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn the_generic_endpoint_needs_the_shared_secret_and_says_what_it_did() {
    let f = fixture().await;
    let body = r#"{"id":"gw-1","from":"(415) 555-0100","to":"+14155550199","text":"UNSUBSCRIBE"}"#;
    let (status, _, _) = f
        .send(generic("a3f1c9e27b8d4065f2e1a9c7b3d8e0f5", body))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(f.history_len(PERSON).await, 0);
    let (status, _, text) = f.send(generic(SHARED_SECRET, body)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (
            answer["action"].as_str(),
            answer["keyword"].as_str(),
            answer["number"].as_str()
        ),
        (Some("opt_out"), Some("UNSUBSCRIBE"), Some(PERSON)),
        "a national number is read in [sms] default_region"
    );
    assert!(
        answer["reply"]
            .as_str()
            .unwrap()
            .starts_with("Example News: ")
    );
    // What cannot be a sender, and what is not the expected JSON, are refused with why.
    let (status, _, text) = f
        .send(generic(
            SHARED_SECRET,
            r#"{"id":"gw-2","from":"ACME","to":"+14155550199","text":"STOP"}"#,
        ))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text.contains("is not a phone number"), "{text}");
    let (status, _, text) = f.send(generic(SHARED_SECRET, r#"{"from":"x"}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(f.history_len(PERSON).await, 1);
}

#[tokio::test]
async fn when_the_store_fails_the_provider_gets_no_200_and_its_retry_is_recorded() {
    let f = fixture().await;
    let db_url = match &f._postgres {
        Some(db) => db.url.clone(),
        None => format!("sqlite:{}", f._dir.path().join("c.db").display()),
    };
    common::drop_tables(&db_url, &["applied_message"]).await;
    let (status, _) = f.twilio(TWILIO_TOKEN, "SM301", PERSON, OURS, "STOP").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        f.sms_values(PERSON).await.is_empty(),
        "nothing half-written"
    );
    // The table back (as a restored database would be): Twilio's retry is taken.
    let sql = include_str!("../migrations/sqlite/0005_applied_message.sql");
    let sql = match &f._postgres {
        Some(_) => include_str!("../migrations/postgres/0004_applied_message.sql"),
        None => sql,
    };
    {
        use sqlx::Connection;
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match &f._postgres {
            Some(db) => {
                let mut conn = db.connect().await;
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            }
            None => {
                let mut conn = sqlx::SqliteConnection::connect(&db_url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            }
        }
    }
    let (status, _) = f.twilio(TWILIO_TOKEN, "SM301", PERSON, OURS, "STOP").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        f.sms_values(PERSON).await,
        [("weekly-news".into(), ConsentValue::No, Source::SmsKeyword)]
    );
}

/// Issue 15, end to end: the daemon as `serve` runs it, a real Postfix in front. STOP
/// texted (through Twilio) to the newsletter's number refuses the newsletter mailed to
/// the person's number at an email-to-SMS gateway; HELP changes nothing; Twilio's retry
/// of the STOP after START records nothing; START lets the mail through again.
#[test]
fn stop_by_text_refuses_mail_to_the_gateway_and_start_allows_it_again() {
    use common::{
        mta::{Daemon, Mta, daemon_config, free_port, http, require, smtp_send},
        postfix::{PROGRAMS, Postfix},
    };
    let test = "stop_by_text_refuses_mail_to_the_gateway_and_start_allows_it_again";
    if !require(test, &PROGRAMS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("twilio");
    std::fs::write(&token, TWILIO_TOKEN).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o640)).unwrap();
    let web_port = free_port();
    let config = daemon_config(
        dir.path(),
        &format!(
            "\n[web]\nlisten = \"127.0.0.1:{web_port}\"\nsender_name = \"Example News\"\n\
             [sms]\ngateway_domains = [\"sms.example.net\"]\n\
             [sms.numbers]\n\"{OURS}\" = \"weekly-news\"\n\
             [sms.twilio]\nauth_token_file = \"@DIR@/twilio\"\nurl = \"{TWILIO_URL}\"\n"
        ),
    );
    let milter = Daemon::start(dir.path(), &config);
    let postfix = Postfix::start("sms", &format!("inet:127.0.0.1:{}", milter.port));
    let text = |sid: &str, body: &str| {
        let params: Vec<(String, String)> = [
            ("MessageSid", sid),
            ("From", PERSON),
            ("To", OURS),
            ("Body", body),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
        let form: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        let signature = twilio::signature(TWILIO_TOKEN.as_bytes(), TWILIO_URL, &params);
        let (status, twiml) = http(
            web_port,
            "POST",
            "/sms/twilio",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-Twilio-Signature", &signature),
            ],
            &form,
        );
        assert_eq!(status, 200, "{twiml}");
        twiml
    };
    let newsletter = |id: &str| {
        let sent = smtp_send(
            postfix.smtp_port,
            "news@example.com",
            &["14155550100@sms.example.net", "reader@example.org"],
            &format!(
                "From: News <news@example.com>\nTo: subscribers@example.com\n\
                 Subject: This week\nMessage-ID: <{id}>\n\nHello.\n"
            ),
        );
        assert_eq!(sent.rcpts[1].1.code, 250, "{sent:?}");
        sent.rcpts[0].1.clone()
    };

    assert!(text("SM900", "STOP").contains("unsubscribed"));
    let refused = newsletter("sms-1@test.example");
    assert_eq!(refused.code, 550, "{refused:?}");
    assert!(refused.text.contains("5.7.1"), "{refused:?}");

    let help = text("SM901", "HELP");
    assert!(help.contains("Example News: reply STOP"), "{help}");
    assert_eq!(newsletter("sms-2@test.example").code, 550);

    assert!(text("SM902", "START").contains("subscribed again"));
    // Twilio retries the STOP it thinks was lost: the same answer, nothing recorded.
    assert!(text("SM900", "STOP").contains("unsubscribed"));
    let allowed = newsletter("sms-3@test.example");
    assert_eq!(allowed.code, 250, "{allowed:?}");
    postfix.wait_delivered("sms-3@test.example");
    let history = milter.cli(&["consent", "history", PERSON]);
    assert_eq!(history.matches("\tsms-keyword\t").count(), 2, "{history}");
    milter.stop();
}
