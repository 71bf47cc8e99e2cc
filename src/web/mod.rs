//! The web front: the RFC 8058 one-click endpoint that mailbox providers POST to, the page
//! a person reaches from the link, its undo, and a health check for load balancers.
//!
//! Routes:
//! - `POST /u/{token}`: unsubscribe. 200 only once the opt-out is durable; no cookie, no
//!   redirect; repeating it is harmless.
//! - `GET /u/{token}`: the preferences page: the person's lists and their states, the
//!   token's list first; it never changes anything, because mail security scanners fetch
//!   every link they see.
//! - `POST /u/{token}/preferences`, `POST /u/{token}/all`: the page's per-list choices
//!   and its "unsubscribe from all".
//! - `POST /u/{token}/undo`: puts back exactly what a change from the pages altered (no
//!   record stays no record), within the undo window, with a token that has not expired.
//! - `GET /u/assets/style.css`, `GET /u/assets/logo`: the pages' style sheet and logo.
//! - `GET /healthz`: 200 when the store answers, 503 when not.
//! - `POST /sms/…`: SMS providers' inbound messages (see [`sms`]).

mod client;
mod handlers;
pub mod pages;
mod preferences;
mod refusals;
pub mod server;
pub mod sms;

use crate::{config::WebConfig, store::ConsentStore, unsubscribe::Unsubscribe};
use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderName, HeaderValue, StatusCode, header},
    routing::{get, post},
};
use std::{future::Future, io, sync::Arc, time::Duration};
use tower_http::{set_header::SetResponseHeaderLayer, timeout::TimeoutLayer};

pub use client::{RateLimiter, bearer};
pub use handlers::from_page;

/// The largest request body accepted: a one-click body is 26 bytes.
const BODY_LIMIT: usize = 16 * 1024;
/// The longest a request may take, reading included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// What every request handler reads: one consistent snapshot of the settings.
pub struct WebState {
    pub config: WebConfig,
    pub store: Arc<dyn ConsentStore>,
    pub unsubscribe: Arc<Unsubscribe>,
    pub limiter: Arc<RateLimiter>,
    pub(crate) refusals: Arc<refusals::Refusals>,
    /// The pages' templates, texts, style sheet and logo.
    pub pages: Arc<pages::Pages>,
    /// The SMS providers' endpoints, when `[sms]` configures any.
    pub sms: Option<Arc<sms::SmsFront>>,
}

impl WebState {
    pub fn new(
        config: WebConfig,
        store: Arc<dyn ConsentStore>,
        unsubscribe: Arc<Unsubscribe>,
        pages: Arc<pages::Pages>,
        sms: Option<Arc<sms::SmsFront>>,
    ) -> Self {
        let limiter = Arc::new(RateLimiter::new(config.rate_limit));
        Self {
            config,
            store,
            unsubscribe,
            limiter,
            refusals: Arc::default(),
            pages,
            sms,
        }
    }
}

/// The web front's settings as they are now; a reload swaps them, and each request works
/// on the snapshot it started with.
pub struct WebFront(arc_swap::ArcSwap<WebState>);

impl WebFront {
    pub fn new(state: WebState) -> Self {
        Self(arc_swap::ArcSwap::from_pointee(state))
    }

    /// The settings now.
    pub fn current(&self) -> Arc<WebState> {
        self.0.load_full()
    }

    /// Swaps in new settings. The store, the refusal tally and (when the rate is the same)
    /// the rate limiter's counts carry over.
    pub fn reload(
        &self,
        config: WebConfig,
        unsubscribe: Arc<Unsubscribe>,
        pages: Arc<pages::Pages>,
        sms: Option<Arc<sms::SmsFront>>,
    ) {
        let old = self.current();
        let limiter = match config.rate_limit == old.config.rate_limit {
            true => old.limiter.clone(),
            false => Arc::new(RateLimiter::new(config.rate_limit)),
        };
        self.0.store(Arc::new(WebState {
            config,
            store: old.store.clone(),
            unsubscribe,
            limiter,
            refusals: old.refusals.clone(),
            pages,
            sms,
        }));
    }
}

/// The router, without a socket: tests call it with `oneshot`.
pub fn app(state: Arc<WebFront>) -> Router {
    let csp = HeaderValue::from_static(pages::CONTENT_SECURITY_POLICY);
    let set =
        |name: HeaderName, value: HeaderValue| SetResponseHeaderLayer::overriding(name, value);
    Router::new()
        .route(
            "/u/{token}",
            get(handlers::page).post(handlers::unsubscribe),
        )
        .route("/u/{token}/undo", post(handlers::undo))
        .route("/u/{token}/all", post(handlers::unsubscribe_all))
        .route("/u/{token}/preferences", post(handlers::save_preferences))
        .route("/u/assets/style.css", get(handlers::style))
        .route("/u/assets/logo", get(handlers::logo))
        .route("/sms/twilio", post(sms::twilio))
        .route("/sms/vonage", post(sms::vonage))
        .route("/sms/inbound", post(sms::generic))
        .route("/healthz", get(handlers::healthz))
        .route_layer(axum::middleware::from_fn(count_request))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(set(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(set(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(set(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(set(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(set(header::CONTENT_SECURITY_POLICY, csp))
        .with_state(state)
}

/// Counts a request by its route template (never its path, which holds the token).
pub(crate) async fn count_request(
    route: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = route.map_or_else(|| "unmatched".to_owned(), |r| r.as_str().to_owned());
    let response = next.run(request).await;
    let labels = crate::metrics::HttpLabels {
        route,
        status: response.status().as_u16(),
    };
    crate::metrics::get().http.get_or_create(&labels).inc();
    response
}

/// Serves the metrics on `listener` until `shutdown` resolves: `GET /metrics` in the
/// OpenMetrics text format, for Prometheus.
pub async fn serve_metrics(
    listener: std::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let router = Router::new().route(
        "/metrics",
        get(|| async {
            (
                [(
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                crate::metrics::get().encode(),
            )
        }),
    );
    server::serve("metrics", listener, None, router, 16, shutdown).await
}

/// Loads the TLS certificate and key when configured, so that a bad file stops the daemon
/// at start rather than at the first request.
pub fn tls(
    files: Option<&(std::path::PathBuf, std::path::PathBuf)>,
) -> io::Result<Option<tokio_rustls::TlsAcceptor>> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let Some((cert, key)) = files else {
        return Ok(None);
    };
    let bad = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} {}: {e}", path.display()),
        )
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad("certificate", cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("certificate and key", cert, &e))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(server))))
}

/// Serves the web front on `listener` (with `tls` when given) until `shutdown` resolves;
/// open requests then get [`server::DRAIN`] to finish.
pub async fn serve(
    listener: std::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<WebFront>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let max_connections = state.current().config.max_connections;
    server::serve("web", listener, tls, app(state), max_connections, shutdown).await
}
