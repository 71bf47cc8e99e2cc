//! Webhooks: every change of consent, whatever its source (one-click, mailto, complaints,
//! the CLI, imports, the API, other nodes), POSTed to the configured URLs, so that the
//! sending application and the CRM learn of each opt-out.
//!
//! The outbox is the history: each change writes its history row in the transaction that
//! makes it, so no event can be lost between a change and its delivery, and the change
//! feed ([`crate::store::Feed::history_since`]) reads them back in commit order. Each
//! webhook has a cursor in the store (`webhook_cursor`) that moves only once the events
//! before it were accepted (a 2xx answer) or given up, a page at a time: a crash or
//! `kill -9` re-delivers at most the page in flight. Delivery is at least once; the
//! `webhook-id` header (`chg_` and the history id) is the idempotency key, the same in
//! every attempt. A new webhook starts at the feed's position when the daemon that first
//! has it starts (before it serves anything), not at the beginning of the history.
//!
//! Events go out in order, one at a time per webhook. A failed attempt (no answer within
//! `timeout`, or a status other than 2xx; redirects are not followed) is retried after
//! 0.5 s, doubling up to 10 minutes, for `retry_for` after the first attempt; then the
//! event is given up, logged and counted, and the next one goes. The backlog (events
//! read and not yet delivered, and the age of the oldest) is in the metrics.
//!
//! With several nodes on one PostgreSQL, one node delivers at a time: the one that holds
//! the store's lease ([`crate::store::Feed::lease`]); if it goes away, another takes over
//! from the shared cursor.

mod sign;

pub use sign::{Secret, SecretError};

use crate::{
    api::model::Entry, config::WebhookConfig, consent::HistoryEntry, metrics, store::ConsentStore,
};
use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};
use tracing::{error, info, warn};

/// Events read at once; a crash re-delivers at most these.
const PAGE: u32 = 20;
/// The first pause after a failed attempt; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// How often the feed is checked when the store's change token has not moved.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// The pause between checks of the store's change token.
const TICK: Duration = Duration::from_millis(100);
/// How often the lease is checked, and a missing one asked for again.
const LEASE_CHECK: Duration = Duration::from_secs(5);

/// A webhook, ready to deliver.
pub struct Webhook {
    pub config: WebhookConfig,
    secret: Secret,
}

/// Why the webhooks cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("cannot set up the cursor of webhook {0}")]
    Cursor(String, #[source] crate::store::StoreError),
}

/// Reads the secret of each webhook, and gives a new webhook its cursor: the feed's
/// position now, before the daemon serves anything, so that every change it acknowledges
/// from then on is delivered.
pub async fn prepare(
    store: &dyn ConsentStore,
    configs: &[WebhookConfig],
) -> Result<Vec<Webhook>, WebhookError> {
    let mut webhooks = Vec::with_capacity(configs.len());
    for config in configs {
        let secret = Secret::load(&config.secret_file)?;
        let name = config.name.as_str();
        let cursor_error = |e| WebhookError::Cursor(name.to_owned(), e);
        if store.delivered(name).await.map_err(cursor_error)?.is_none() {
            let start = store.feed_position().await.map_err(cursor_error)?;
            store
                .set_delivered(name, start)
                .await
                .map_err(cursor_error)?;
            info!(
                webhook = name,
                "new webhook: changes from now on are delivered to it"
            );
        }
        webhooks.push(Webhook {
            secret,
            config: config.clone(),
        });
    }
    Ok(webhooks)
}

/// The body of one event.
#[derive(serde::Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: String,
    data: &'a Entry,
}

/// Delivers to every webhook until `shutdown` resolves, while this process holds the
/// store's lease.
pub async fn run(
    store: Arc<dyn ConsentStore>,
    webhooks: Vec<Webhook>,
    shutdown: impl Future<Output = ()>,
) {
    if webhooks.is_empty() {
        return shutdown.await;
    }
    let webhooks: Vec<Arc<Webhook>> = webhooks.into_iter().map(Arc::new).collect();
    tokio::pin!(shutdown);
    let mut waiting_logged = false;
    loop {
        let lease = tokio::select! {
            () = &mut shutdown => return,
            lease = store.lease() => lease,
        };
        let mut lease = match lease {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                if !waiting_logged {
                    info!("another node delivers the webhooks; this one stands by");
                    waiting_logged = true;
                }
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(LEASE_CHECK) => continue,
                }
            }
            Err(e) => {
                warn!(error = %crate::error_chain(&e), "cannot take the webhook lease; trying again");
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(LEASE_CHECK) => continue,
                }
            }
        };
        waiting_logged = false;
        info!(webhooks = webhooks.len(), "delivering webhooks");
        let mut tasks = tokio::task::JoinSet::new();
        for webhook in &webhooks {
            tasks.spawn(deliver_all(store.clone(), webhook.clone()));
        }
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    // The cursors hold what was delivered; the rest goes after a restart.
                    tasks.abort_all();
                    return;
                }
                () = tokio::time::sleep(LEASE_CHECK) => {}
            }
            if !lease.held().await.unwrap_or(false) {
                warn!("lost the webhook lease; another node may deliver now");
                tasks.abort_all();
                break;
            }
        }
    }
}

/// Delivers the feed to one webhook, from its cursor, for ever.
async fn deliver_all(store: Arc<dyn ConsentStore>, webhook: Arc<Webhook>) {
    let name = webhook.config.name.as_str();
    let client = match reqwest::Client::builder()
        .timeout(webhook.config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("optout-milter/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            error!(webhook = name, error = %crate::error_chain(&e), "cannot make an HTTP client; this webhook gets nothing");
            return;
        }
    };
    let labels = metrics::WebhookLabels {
        webhook: name.to_owned(),
    };
    let backlog = metrics::get()
        .webhook_backlog
        .get_or_create(&labels)
        .clone();
    let oldest = metrics::get()
        .webhook_oldest_seconds
        .get_or_create(&labels)
        .clone();
    let mut position = retry_store(name, "read the webhook's cursor", || async {
        // Set by `prepare` at start; from the beginning if it was removed since.
        Ok(store.delivered(name).await?.unwrap_or_default())
    })
    .await;
    loop {
        let (entries, next) = retry_store(name, "read the change feed", || {
            store.history_since(position, PAGE)
        })
        .await;
        backlog.set(i64::try_from(entries.len()).unwrap_or(i64::MAX));
        if entries.is_empty() {
            if next != position {
                retry_store(name, "move the webhook's cursor", || {
                    store.set_delivered(name, next)
                })
                .await;
                position = next;
            }
            oldest.set(0);
            let token = store.change_token();
            let checked = Instant::now();
            // Wait until the store says something was committed, or a while.
            loop {
                tokio::time::sleep(TICK).await;
                if store.change_token() != token || checked.elapsed() >= IDLE_CHECK {
                    break;
                }
            }
            continue;
        }
        for entry in &entries {
            let age = SystemTime::now()
                .duration_since(entry.change.at)
                .unwrap_or_default();
            oldest.set(i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
            deliver(&client, &webhook, entry).await;
            backlog.dec();
        }
        retry_store(name, "move the webhook's cursor", || {
            store.set_delivered(name, next)
        })
        .await;
        position = next;
    }
}

/// Runs a store operation until it succeeds, pausing between attempts; the delivery
/// cannot go on without it.
async fn retry_store<T, F, Fut>(name: &str, what: &str, mut operation: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, crate::store::StoreError>>,
{
    let mut pause = FIRST_BACKOFF;
    loop {
        match operation().await {
            Ok(value) => return value,
            Err(e) => {
                warn!(webhook = name, error = %crate::error_chain(&e), "cannot {what}; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Delivers one event: until the receiver accepts it, or `retry_for` has passed.
async fn deliver(client: &reqwest::Client, webhook: &Webhook, entry: &HistoryEntry) {
    let config = &webhook.config;
    let name = config.name.as_str();
    let id = format!("chg_{}", entry.id);
    let data = Entry::from(entry);
    let body = match serde_json::to_vec(&Event {
        kind: "consent.changed",
        timestamp: data.at.clone(),
        data: &data,
    }) {
        Ok(body) => body,
        Err(e) => {
            error!(webhook = name, id, error = %e, "cannot write the event; given up");
            count(name, "given-up");
            return;
        }
    };
    let first = Instant::now();
    let mut pause = FIRST_BACKOFF;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let sent = client
            .post(&config.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                webhook.secret.sign(&id, timestamp, &body),
            )
            .body(body.clone())
            .send()
            .await;
        let failure = match sent {
            Ok(response) if response.status().is_success() => {
                count(name, "delivered");
                if attempts > 1 {
                    info!(
                        webhook = name,
                        id, attempts, "event delivered after retries"
                    );
                }
                return;
            }
            Ok(response) => format!("answered {}", response.status()),
            Err(e) => crate::error_chain(&e),
        };
        count(name, "failed-attempt");
        if first.elapsed() >= config.retry_for {
            error!(webhook = name, id, attempts, error = failure, retry_for = ?config.retry_for, "event given up after retrying; GET /v1/changes still has it");
            count(name, "given-up");
            return;
        }
        // The first failure and then every tenth, so a receiver that is down for days
        // does not fill the log.
        if attempts == 1 || attempts.is_multiple_of(10) {
            warn!(webhook = name, id, attempts, error = failure, next_in = ?pause, "webhook delivery failed; retrying");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_BACKOFF);
    }
}

fn count(webhook: &str, outcome: &'static str) {
    let labels = metrics::WebhookOutcome {
        webhook: webhook.to_owned(),
        outcome,
    };
    metrics::get()
        .webhook_deliveries
        .get_or_create(&labels)
        .inc();
}
