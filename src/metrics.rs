//! Prometheus metrics, scraped from `[metrics] listen` at `/metrics`.
//!
//! One registry for the process (the daemon is one process; the CLI never serves it),
//! reached through [`get`]. Counters whose labels are fixed are resolved once, so counting
//! on the milter's path is an atomic add; labels that vary (list, source, route) are
//! bounded by the config or by the code, never by what a client sends.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use std::sync::OnceLock;

/// Labels of one kind: a single `kind` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: &'static str,
}

/// A recipient refused (at RCPT) or removed (at end of message).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecipientLabels {
    pub action: &'static str,
    pub list: String,
    pub reason: &'static str,
}

/// An opt-out recorded, by where it came from.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: &'static str,
}

/// An HTTP request, by route template (never the path: it holds the token) and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub status: u16,
}

/// A webhook.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub webhook: String,
}

/// A webhook delivery attempt's outcome: `delivered`, `failed-attempt`, `given-up`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookOutcome {
    pub webhook: String,
    pub outcome: &'static str,
}

/// Every metric of the daemon.
pub struct Metrics {
    registry: Registry,
    /// Messages at end of message, by class: `marketing`, `transactional`, `unsubscribe`.
    pub messages: Family<Kind, Counter>,
    pub recipients: Family<RecipientLabels, Counter>,
    /// Unsubscribe headers added, by kind: `per-recipient`, `list-level`.
    pub headers: Family<Kind, Counter>,
    pub opt_outs: Family<SourceLabels, Counter>,
    /// What unsubscribe mails came to: `unsubscribed`, `confirmation-sent`, `ignored`,
    /// `unusable`, `deferred`.
    pub intake: Family<Kind, Counter>,
    /// Feedback-loop reports to the complaints address, by outcome: `recorded`,
    /// `not-a-report`, `not-a-complaint`, `unverified` (no valid token and no
    /// authenticated loop), `redacted`, `deferred`.
    pub complaints: Family<Kind, Counter>,
    pub http: Family<HttpLabels, Counter>,
    pub store_errors: Counter,
    /// How long durable writes take (commit included).
    pub store_write_seconds: Histogram,
    pub index_entries: Gauge,
    /// History rows committed but not yet in this node's index.
    pub index_lag: Gauge,
    /// Changes committed on a shared database that the feed still holds back behind an
    /// older transaction, and the age of the oldest of them.
    pub feed_held: Gauge,
    pub feed_held_seconds: Gauge,
    /// Open connections, by listener: `milter`, `web`, `lmtp`, `api`.
    pub connections: Family<Kind, Gauge>,
    pub webhook_deliveries: Family<WebhookOutcome, Counter>,
    /// Events read from the feed and not yet delivered, by webhook.
    pub webhook_backlog: Family<WebhookLabels, Gauge>,
    /// The age of the event being delivered (0 when none waits), by webhook.
    pub webhook_oldest_seconds: Family<WebhookLabels, Gauge>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("optout_milter");
        let metrics = Self {
            registry: Registry::default(),
            messages: Family::default(),
            recipients: Family::default(),
            headers: Family::default(),
            opt_outs: Family::default(),
            intake: Family::default(),
            complaints: Family::default(),
            http: Family::default(),
            store_errors: Counter::default(),
            store_write_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            index_entries: Gauge::default(),
            index_lag: Gauge::default(),
            feed_held: Gauge::default(),
            feed_held_seconds: Gauge::default(),
            connections: Family::default(),
            webhook_deliveries: Family::default(),
            webhook_backlog: Family::default(),
            webhook_oldest_seconds: Family::default(),
        };
        registry.register(
            "messages",
            "Messages seen at end of message, by class",
            metrics.messages.clone(),
        );
        registry.register(
            "recipients",
            "Recipients refused at RCPT or removed at end of message, by list and reason",
            metrics.recipients.clone(),
        );
        registry.register(
            "unsubscribe_headers",
            "List-Unsubscribe headers added, by kind",
            metrics.headers.clone(),
        );
        registry.register(
            "opt_outs",
            "Opt-outs recorded by this process, by source",
            metrics.opt_outs.clone(),
        );
        registry.register(
            "intake",
            "Unsubscribe mails, by outcome",
            metrics.intake.clone(),
        );
        registry.register(
            "complaints",
            "Feedback-loop reports, by outcome",
            metrics.complaints.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests, by route and status",
            metrics.http.clone(),
        );
        registry.register(
            "store_errors",
            "Store operations that failed",
            metrics.store_errors.clone(),
        );
        registry.register(
            "store_write_seconds",
            "Time for a durable store write, commit included",
            metrics.store_write_seconds.clone(),
        );
        registry.register(
            "index_entries",
            "Consent records in the in-memory index",
            metrics.index_entries.clone(),
        );
        registry.register(
            "index_lag",
            "History rows not yet applied to the index",
            metrics.index_lag.clone(),
        );
        registry.register(
            "feed_held",
            "Changes committed on the shared database that the change feed holds back until an older transaction on the server ends",
            metrics.feed_held.clone(),
        );
        registry.register(
            "feed_held_seconds",
            "Age of the oldest change the change feed holds back (0 when none)",
            metrics.feed_held_seconds.clone(),
        );
        registry.register(
            "open_connections",
            "Open connections, by listener",
            metrics.connections.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts, by webhook and outcome",
            metrics.webhook_deliveries.clone(),
        );
        registry.register(
            "webhook_backlog",
            "Events read from the change feed and not yet delivered, by webhook",
            metrics.webhook_backlog.clone(),
        );
        registry.register(
            "webhook_oldest_seconds",
            "Age of the oldest event not yet delivered, by webhook",
            metrics.webhook_oldest_seconds.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// The counter of `family` for one fixed `kind`, resolved once by the caller.
    pub fn kind(family: &Family<Kind, Counter>, kind: &'static str) -> Counter {
        family.get_or_create(&Kind { kind }).clone()
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The metrics the milter touches on every connection and message, resolved once.
pub struct Hot {
    pub marketing: Counter,
    pub transactional: Counter,
    pub unsubscribe: Counter,
    pub milter_connections: Gauge,
}

/// The milter's per-message metrics.
pub fn hot() -> &'static Hot {
    static HOT: OnceLock<Hot> = OnceLock::new();
    HOT.get_or_init(|| {
        let m = get();
        Hot {
            marketing: Metrics::kind(&m.messages, "marketing"),
            transactional: Metrics::kind(&m.messages, "transactional"),
            unsubscribe: Metrics::kind(&m.messages, "unsubscribe"),
            milter_connections: m
                .connections
                .get_or_create(&Kind { kind: "milter" })
                .clone(),
        }
    })
}

/// Counts an open connection of `listener` until dropped.
pub struct OpenConnection(Gauge);

impl OpenConnection {
    pub fn new(listener: &'static str) -> Self {
        Self::counting(
            get()
                .connections
                .get_or_create(&Kind { kind: listener })
                .clone(),
        )
    }

    /// A milter connection, without a label lookup.
    pub fn milter() -> Self {
        Self::counting(hot().milter_connections.clone())
    }

    fn counting(gauge: Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}
