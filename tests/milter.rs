//! The milter as an MTA sees it: the real daemon on port 0, driven by indymilter-test.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::start;
use indymilter_test::{EomAction, Status, TestConnection};
use optout_milter::{
    consent::{
        Address, Change, Channel, ConsentRecord, ConsentValue,
        ConsentValue::{No, Yes},
        HistoryEntry, Scope,
    },
    store::{ConsentStore, Feed, FeedPosition, Lookups, RecordKey, Recorded, Records, StoreFuture},
};
use std::ffi::CString;
use std::sync::Arc;

const SMTP_CLIENT: &str = "192.0.2.10:41234";
const LOCAL_SUBMISSION: &str = "127.0.0.1:0";

async fn open(addr: std::net::SocketAddr, client: &str) -> TestConnection {
    let mut conn = TestConnection::open(addr).await.expect("open");
    let client: std::net::SocketAddr = client.parse().expect("client address");
    let status = conn
        .connect("client.example", client)
        .await
        .expect("connect");
    assert!(
        matches!(status, Status::Noreply | Status::Continue),
        "{status:?}"
    );
    conn
}

fn reject_text(status: &Status) -> String {
    match status {
        Status::Reject { message: Some(m) } | Status::Tempfail { message: Some(m) } => {
            m.to_string_lossy().into_owned()
        }
        other => panic!("expected a reply with text, got {other:?}"),
    }
}

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

#[tokio::test]
async fn negotiates_only_what_it_needs() {
    let milter = start("", "").await;
    let conn = TestConnection::open(milter.addr).await.unwrap();
    use indymilter::{Actions, ProtoOpts};
    assert_eq!(
        conn.negotiated_actions(),
        Actions::ADD_HEADER | Actions::CHANGE_HEADER | Actions::DELETE_RCPT
    );
    let opts = conn.negotiated_opts();
    for skipped in [
        ProtoOpts::NO_HELO,
        ProtoOpts::NO_DATA,
        ProtoOpts::NO_EOH,
        ProtoOpts::NO_BODY,
    ] {
        assert!(
            opts.contains(skipped),
            "{skipped:?} not negotiated: {opts:?}"
        );
    }
    for quiet in [
        ProtoOpts::NOREPLY_CONNECT,
        ProtoOpts::NOREPLY_MAIL,
        ProtoOpts::NOREPLY_HEADER,
    ] {
        assert!(opts.contains(quiet), "{quiet:?} not negotiated: {opts:?}");
    }
    assert!(!opts.contains(ProtoOpts::NO_RCPT));
    conn.close().await.unwrap();
    milter.stop().await;
}

#[tokio::test]
async fn opted_out_recipient_is_refused_at_rcpt_and_others_go_on() {
    let milter = start("", "").await;
    milter.set("Gone@Example.org", "weekly-news", No).await;
    let mut conn = open(milter.addr, SMTP_CLIENT).await;
    conn.mail(["<news@example.com>"]).await.unwrap();
    let refused = conn.rcpt(["<gone@example.org>"]).await.unwrap();
    let text = reject_text(&refused);
    assert!(text.starts_with("550 5.7.1 "), "{text}");
    assert!(
        text.contains("<gone@example.org>") && text.contains("opted out"),
        "{text}"
    );
    assert_eq!(
        conn.rcpt(["<stays@example.org>"]).await.unwrap(),
        Status::Continue
    );
    conn.header("Subject", "Weekly news").await.unwrap();
    let (actions, status) = conn.eom().await.unwrap();
    assert_eq!(status, Status::Continue);
    assert!(actions.actions.is_empty(), "{actions:?}");
    conn.close().await.unwrap();
    milter.stop().await;
}

#[tokio::test]
async fn a_global_opt_out_blocks_every_list_but_a_list_opt_out_only_its_list() {
    let milter = start("", "").await;
    milter.set("all@example.org", "*", No).await;
    milter.set("promo-only@example.org", "promotions", No).await;
    let mut conn = open(milter.addr, SMTP_CLIENT).await;
    conn.mail(["<news@example.com>"]).await.unwrap();
    assert!(matches!(
        conn.rcpt(["<all@example.org>"]).await.unwrap(),
        Status::Reject { .. }
    ));
    assert_eq!(
        conn.rcpt(["<promo-only@example.org>"]).await.unwrap(),
        Status::Continue
    );
    conn.close().await.unwrap();
    milter.stop().await;
}

#[tokio::test]
async fn transactional_mail_is_untouched() {
    let milter = start("", "").await;
    milter.set("gone@example.org", "*", No).await;
    let mut conn = open(milter.addr, SMTP_CLIENT).await;
    conn.mail(["<receipts@shop.example.com>"]).await.unwrap();
    assert_eq!(
        conn.rcpt(["<gone@example.org>"]).await.unwrap(),
        Status::Continue
    );
    conn.header("Subject", "Your receipt").await.unwrap();
    let (actions, status) = conn.eom().await.unwrap();
    assert_eq!(status, Status::Continue);
    assert!(actions.actions.is_empty(), "{actions:?}");
    conn.close().await.unwrap();
    milter.stop().await;
}

#[tokio::test]
async fn header_classified_mail_loses_opted_out_recipients_and_the_header() {
    let milter = start("", "").await;
    milter.set("gone@example.org", "deals", No).await;
    let mut conn = open(milter.addr, SMTP_CLIENT).await;
    conn.mail(["<app@shop.example.com>"]).await.unwrap();
    assert_eq!(
        conn.rcpt(["<Gone@example.org>"]).await.unwrap(),
        Status::Continue
    );
    assert_eq!(
        conn.rcpt(["<stays@example.org>"]).await.unwrap(),
        Status::Continue
    );
    conn.header("X-Optout-List", "Deals").await.unwrap();
    conn.header("x-optout-list", "ignored-second-copy")
        .await
        .unwrap();
    let (actions, status) = conn.eom().await.unwrap();
    assert_eq!(status, Status::Continue);
    assert!(
        actions.has_delete_recipient("<Gone@example.org>"),
        "{actions:?}"
    );
    assert!(
        !actions.has_delete_recipient("<stays@example.org>"),
        "{actions:?}"
    );
    assert!(actions.has_delete_header("X-Optout-List", 1), "{actions:?}");
    assert!(actions.has_delete_header("X-Optout-List", 2), "{actions:?}");
    conn.close().await.unwrap();
    milter.stop().await;
}

#[tokio::test]
async fn every_recipient_opted_out_rejects_or_discards_as_configured() {
    for (keys, expect_discard) in [("", false), ("all_opted_out = \"discard\"", true)] {
        let milter = start(keys, "").await;
        milter.set("a@example.org", "*", No).await;
        milter.set("b@example.org", "deals", No).await;
        let mut conn = open(milter.addr, SMTP_CLIENT).await;
        conn.mail(["<app@shop.example.com>"]).await.unwrap();
        conn.rcpt(["<a@example.org>"]).await.unwrap();
        conn.rcpt(["<b@example.org>"]).await.unwrap();
        conn.header("X-Optout-List", "deals").await.unwrap();
        let (actions, status) = conn.eom().await.unwrap();
        assert!(
            !actions
                .actions
                .iter()
                .any(|a| matches!(a, EomAction::DeleteRecipient { .. })),
            "{actions:?}"
        );
        if expect_discard {
            assert_eq!(status, Status::Discard);
        } else {
            let text = reject_text(&status);
            assert!(
                text.starts_with("550 5.7.1 ") && text.contains("opted out"),
                "{text}"
            );
        }
        conn.close().await.unwrap();
        milter.stop().await;
    }
}

#[tokio::test]
async fn local_submissions_get_removals_instead_of_rcpt_rejects() {
    let milter = start("", "").await;
    milter.set("gone@example.org", "weekly-news", No).await;
    let mut conn = open(milter.addr, LOCAL_SUBMISSION).await;
    conn.mail(["<news@example.com>"]).await.unwrap();
    assert_eq!(
        conn.rcpt(["<gone@example.org>"]).await.unwrap(),
        Status::Continue
    );
    assert_eq!(
        conn.rcpt(["<stays@example.org>"]).await.unwrap(),
        Status::Continue
    );
    let (actions, status) = conn.eom().await.unwrap();
    assert_eq!(status, Status::Continue);
    assert_eq!(
        actions.actions,
        [EomAction::DeleteRecipient {
            rcpt: c("<gone@example.org>")
        }]
    );
    conn.close().await.unwrap();
    milter.stop().await;
}

#[tokio::test]
async fn opt_in_only_refuses_addresses_without_consent() {
    let milter = start("", "[consent]\ndefault = \"n\"\n").await;
    milter.set("fan@example.org", "weekly-news", Yes).await;
    let mut conn = open(milter.addr, SMTP_CLIENT).await;
    conn.mail(["<news@example.com>"]).await.unwrap();
    assert!(matches!(
        conn.rcpt(["<stranger@example.org>"]).await.unwrap(),
        Status::Reject { .. }
    ));
    assert_eq!(
        conn.rcpt(["<fan@example.org>"]).await.unwrap(),
        Status::Continue
    );
    conn.close().await.unwrap();
    milter.stop().await;
}

/// Breaks the store under the milter: current state and history both go, so neither the
/// store nor the consent index (which follows the history) can answer. Returns once the
/// milter's store has seen it: on SQLite the next lookup does, but a `DROP TABLE` sends
/// PostgreSQL's followers no notification, so there the index notices at its next read
/// of the feed (within `SYNC_INTERVAL`).
async fn break_store(milter: &common::TestMilter) {
    common::drop_tables(&milter.db_url, &["consent", "consent_history"]).await;
    let anyone = Address::from_stored("anyone@example.org".to_owned());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    // The milter's own store, with its consent index in front (`milter.store` is the
    // plain store under it, which fails at once).
    while milter
        .milter
        .store
        .scoped_values(&anyone, Channel::Email, &Scope::All)
        .await
        .is_ok()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the milter's store never noticed its tables were dropped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_failed_store_gives_temporary_failures_never_acceptance() {
    let milter = start("", "").await;
    break_store(&milter).await;
    let mut conn = open(milter.addr, SMTP_CLIENT).await;
    conn.mail(["<news@example.com>"]).await.unwrap();
    let text = reject_text(&conn.rcpt(["<anyone@example.org>"]).await.unwrap());
    assert!(text.starts_with("451 4.3.0 "), "{text}");
    conn.abort().await.unwrap();
    // Header-classified: the whole message is deferred at end of message.
    conn.mail(["<app@shop.example.com>"]).await.unwrap();
    conn.rcpt(["<anyone@example.org>"]).await.unwrap();
    conn.header("X-Optout-List", "deals").await.unwrap();
    let (actions, status) = conn.eom().await.unwrap();
    assert!(reject_text(&status).starts_with("451 4.3.0 "), "{status:?}");
    assert!(actions.actions.is_empty(), "{actions:?}");
    conn.close().await.unwrap();
    milter.stop().await;
}

#[tokio::test]
async fn fail_open_accepts_when_the_operator_chose_it() {
    let milter = start("on_store_error = \"accept\"", "").await;
    break_store(&milter).await;
    let mut conn = open(milter.addr, SMTP_CLIENT).await;
    conn.mail(["<news@example.com>"]).await.unwrap();
    assert_eq!(
        conn.rcpt(["<anyone@example.org>"]).await.unwrap(),
        Status::Continue
    );
    conn.close().await.unwrap();
    milter.stop().await;
}

#[tokio::test]
async fn unnormalizable_recipients_and_senders_never_break_the_session() {
    let milter = start("", "").await;
    let mut conn = open(milter.addr, SMTP_CLIENT).await;
    conn.mail(["<>"]).await.unwrap();
    assert_eq!(conn.rcpt(["<postmaster>"]).await.unwrap(), Status::Continue);
    conn.header("X-Optout-List", "weekly news!").await.unwrap();
    // Marketing mail never goes to an address that cannot be checked (issue 11, item 1):
    // its only recipient is removed, so the message is refused.
    let (_, status) = conn.eom().await.unwrap();
    assert!(matches!(status, Status::Reject { .. }), "{status:?}");
    // Transactional mail to it still goes through on the same connection.
    conn.mail(["<>"]).await.unwrap();
    assert_eq!(conn.rcpt(["<postmaster>"]).await.unwrap(), Status::Continue);
    let (_, status) = conn.eom().await.unwrap();
    assert_eq!(status, Status::Continue);
    conn.close().await.unwrap();
    milter.stop().await;
}

#[tokio::test]
async fn serves_unix_domain_sockets() {
    use optout_milter::{
        config::{Config, Overrides},
        daemon::{self, App, Listeners},
        store,
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("milter.sock");
    let overrides = Overrides {
        store_url: Some(format!("sqlite:{}", dir.path().join("c.db").display())),
        socket: Some(format!("unix:{}", socket.display())),
    };
    let text = "[[classify.senders]]\nsender = \"news@example.com\"\n";
    let config = Config::parse(std::path::Path::new("t"), text, &overrides).unwrap();
    let store = store::open_or_create(&config.store_url).await.unwrap();
    let app = App::build(config, overrides, store).await.unwrap();
    let listeners = Listeners::bind(app.config()).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (_reload, reloads) = tokio::sync::mpsc::channel(1);
    let task = tokio::spawn(daemon::run(app, listeners, reloads, async {
        let _ = rx.await;
    }));
    let mut conn = TestConnection::configure()
        .open_unix(&socket)
        .await
        .unwrap();
    conn.connect(
        "client.example",
        "192.0.2.1:1234".parse::<std::net::SocketAddr>().unwrap(),
    )
    .await
    .unwrap();
    conn.mail(["<news@example.com>"]).await.unwrap();
    assert_eq!(
        conn.rcpt(["<x@example.org>"]).await.unwrap(),
        Status::Continue
    );
    conn.close().await.unwrap();
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert!(!socket.exists(), "the socket file is removed at the end");
}

/// The real store behind a delay: a database that answers, but too late.
/// A store that answers reads after 5 s: the consent index cannot load from it either, so
/// the milter's lookups reach the store and its timeout.
struct Slow(Arc<dyn ConsentStore>);

const SLOW: std::time::Duration = std::time::Duration::from_secs(5);

impl Lookups for Slow {
    fn scoped_values<'a>(
        &'a self,
        address: &'a Address,
        channel: Channel,
        list: &'a Scope,
    ) -> StoreFuture<'a, Vec<(Scope, ConsentValue)>> {
        Box::pin(async move {
            tokio::time::sleep(SLOW).await;
            self.0.scoped_values(address, channel, list).await
        })
    }
}

impl Records for Slow {
    fn record<'a>(&'a self, changes: &'a [Change]) -> StoreFuture<'a, Vec<Recorded>> {
        self.0.record(changes)
    }

    fn restore<'a>(&'a self, changes: &'a [Change], emptied: &'a [Change]) -> StoreFuture<'a, ()> {
        self.0.restore(changes, emptied)
    }

    fn record_once<'a>(
        &'a self,
        id: &'a str,
        changes: &'a [Change],
    ) -> StoreFuture<'a, Option<Vec<Recorded>>> {
        self.0.record_once(id, changes)
    }

    fn records<'a>(&'a self, address: &'a Address) -> StoreFuture<'a, Vec<ConsentRecord>> {
        self.0.records(address)
    }

    fn page<'a>(
        &'a self,
        after: Option<&'a RecordKey>,
        limit: u32,
    ) -> StoreFuture<'a, Vec<ConsentRecord>> {
        self.0.page(after, limit)
    }

    fn history<'a>(&'a self, address: &'a Address) -> StoreFuture<'a, Vec<HistoryEntry>> {
        self.0.history(address)
    }

    fn subject_id<'a>(&'a self, address: &'a Address, scope: &'a Scope) -> StoreFuture<'a, u64> {
        self.0.subject_id(address, scope)
    }

    fn erase<'a>(
        &'a self,
        address: &'a optout_milter::consent::Address,
        suppression: &'a Change,
    ) -> StoreFuture<'a, u64> {
        self.0.erase(address, suppression)
    }

    fn subject(&self, id: u64) -> StoreFuture<'_, Option<(Address, Scope)>> {
        self.0.subject(id)
    }

    fn values<'a>(
        &'a self,
        after: Option<&'a RecordKey>,
        limit: u32,
    ) -> StoreFuture<'a, Vec<(RecordKey, ConsentValue)>> {
        Box::pin(async move {
            tokio::time::sleep(SLOW).await;
            self.0.values(after, limit).await
        })
    }
}

impl Feed for Slow {
    fn changes_since(
        &self,
        after: FeedPosition,
        limit: u32,
    ) -> StoreFuture<'_, (Vec<(RecordKey, ConsentValue)>, FeedPosition)> {
        Box::pin(async move {
            tokio::time::sleep(SLOW).await;
            self.0.changes_since(after, limit).await
        })
    }

    fn history_since(
        &self,
        after: FeedPosition,
        limit: u32,
    ) -> StoreFuture<'_, (Vec<HistoryEntry>, FeedPosition)> {
        self.0.history_since(after, limit)
    }

    fn feed_position(&self) -> StoreFuture<'_, FeedPosition> {
        self.0.feed_position()
    }

    fn delivered<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<FeedPosition>> {
        self.0.delivered(name)
    }

    fn set_delivered<'a>(&'a self, name: &'a str, position: FeedPosition) -> StoreFuture<'a, ()> {
        self.0.set_delivered(name, position)
    }
}

impl ConsentStore for Slow {
    fn ping(&self) -> StoreFuture<'_, ()> {
        self.0.ping()
    }
}

#[tokio::test]
async fn a_store_slower_than_the_timeout_gives_temporary_failures() {
    let milter = common::start_with("store_timeout = \"200ms\"", "", |store| {
        Arc::new(Slow(store))
    })
    .await;
    let mut conn = open(milter.addr, SMTP_CLIENT).await;
    conn.mail(["<news@example.com>"]).await.unwrap();
    let text = reject_text(&conn.rcpt(["<anyone@example.org>"]).await.unwrap());
    assert!(text.starts_with("451 4.3.0 "), "{text}");
    conn.close().await.unwrap();
    milter.stop().await;
}

/// Issue 15, item 3: mail to an email-to-SMS gateway (`[sms] gateway_domains`) is a text
/// message to the number in its local part, refused when that number opted out of SMS.
#[tokio::test]
async fn mail_to_an_sms_gateway_is_refused_when_the_number_opted_out_of_sms() {
    let milter = start("", "[sms]\ngateway_domains = [\"sms.example.net\"]\n").await;
    let stop = Change {
        address: Address::from_stored("+33612345678".to_owned()),
        channel: Channel::Sms,
        scope: Scope::All,
        value: No,
        source: optout_milter::consent::Source::SmsKeyword,
        at: std::time::SystemTime::now(),
        evidence: "STOP".into(),
    };
    milter.milter.store.record(&[stop]).await.unwrap();
    let mut conn = open(milter.addr, SMTP_CLIENT).await;
    conn.mail(["<news@example.com>"]).await.unwrap();
    for rcpt in [
        "<33612345678@sms.example.net>",
        "<+33612345678@SMS.example.net>",
    ] {
        let text = reject_text(&conn.rcpt([rcpt]).await.unwrap());
        assert!(text.starts_with("550 5.7.1 "), "{rcpt}: {text}");
    }
    // Another number, the same number at a domain that is no gateway, and a mailbox of
    // the gateway that is no number all go on.
    for rcpt in [
        "<33698765432@sms.example.net>",
        "<33612345678@example.net>",
        "<postmaster@sms.example.net>",
    ] {
        assert_eq!(conn.rcpt([rcpt]).await.unwrap(), Status::Continue, "{rcpt}");
    }
    conn.close().await.unwrap();
    milter.stop().await;
}
