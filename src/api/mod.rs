//! The admin API: JSON over HTTP(S) for the systems around the MTA (the sending
//! application, the CRM, an ESP's back office), on a listener of its own, loopback by
//! default.
//!
//! Every route asks for a bearer token ([`auth`]); a `read` token may read, a
//! `read-write` token may also change consent, and the token's name goes into the evidence
//! of every change it makes. Writes are durable before the 200, as everywhere else.
//!
//! The routes and the OpenAPI document come from the same handler annotations
//! ([`utoipa`]), so the document cannot describe a route that is not served, or miss one;
//! `docs/openapi.json` is that document, and a test checks that the daemon serves it
//! unchanged.
//!
//! Routes (under `/v1`): `GET|PUT|DELETE /consent/{address}` (`DELETE` erases),
//! `POST /consent/{address}/lift-erasure`, `GET /consent/{address}/history`,
//! `GET /consent` (every record, a page at a time), `GET /export` (CSV, streamed),
//! `POST /import` (CSV), `GET /decision`, `GET /changes` (the change feed, from a
//! cursor), `GET /openapi.json`.

pub mod auth;
mod handlers;
pub mod model;

use crate::{
    config::{ApiConfig, Config},
    consent::{AddressPolicy, ConsentPolicy},
    store::ConsentStore,
};
use axum::{Router, extract::DefaultBodyLimit};
use std::{future::Future, io, sync::Arc, time::Duration};
use tokio_rustls::TlsAcceptor;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

pub use auth::{Caller, TokenFileError, Tokens};

/// The longest a request may take, except an export (whose body streams for as long as
/// the store has records) and an import (bounded by its size).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What every request reads: one consistent snapshot of the settings.
pub struct ApiState {
    pub config: ApiConfig,
    pub tokens: Tokens,
    pub store: Arc<dyn ConsentStore>,
    pub addresses: AddressPolicy,
    pub phones: crate::consent::PhonePolicy,
    pub consent: ConsentPolicy,
    pub erasure: Option<Arc<crate::consent::Erasure>>,
}

impl ApiState {
    /// The API of `config` (which has an `[api]` section) over `store`; reads the token
    /// files.
    pub fn new(
        config: &Config,
        store: Arc<dyn ConsentStore>,
        erasure: Option<Arc<crate::consent::Erasure>>,
    ) -> Result<Option<Self>, TokenFileError> {
        let Some(api) = &config.api else {
            return Ok(None);
        };
        Ok(Some(Self {
            tokens: Tokens::load(&api.tokens)?,
            config: api.clone(),
            store,
            addresses: config.addresses.clone(),
            phones: config.phones.clone(),
            consent: config.consent,
            erasure,
        }))
    }
}

/// The API's settings as they are now; a reload swaps them (tokens included), and each
/// request works on the snapshot it started with.
pub struct ApiFront(arc_swap::ArcSwap<ApiState>);

impl ApiFront {
    pub fn new(state: ApiState) -> Self {
        Self(arc_swap::ArcSwap::from_pointee(state))
    }

    pub fn current(&self) -> Arc<ApiState> {
        self.0.load_full()
    }

    pub fn reload(&self, state: ApiState) {
        self.0.store(Arc::new(state));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "optout-milter admin API",
        description = "Consent records, their history, the change feed and the sending decision of optout-milter. Every route needs a bearer token from a file named in [api] tokens; changes need a read-write token.",
        license(name = "GPL-3.0-or-later", identifier = "GPL-3.0-or-later"),
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "consent", description = "Records of one address, and all of them"),
        (name = "feed", description = "Every change, in order, from a cursor"),
        (name = "decision", description = "May a marketing message go to this address?"),
    ),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A token from a file of [api] tokens"))
                    .build(),
            ),
        );
    }
}

/// The routes and the document that describes them, from one list.
fn parts(max_import_bytes: usize) -> (Router<Arc<ApiFront>>, utoipa::openapi::OpenApi) {
    let timed = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(
            handlers::get_consent,
            handlers::set_consent,
            handlers::erase
        ))
        .routes(routes!(handlers::lift_erasure))
        .routes(routes!(handlers::history))
        .routes(routes!(handlers::list))
        .routes(routes!(handlers::decision))
        .routes(routes!(handlers::changes))
        .routes(routes!(handlers::openapi))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ));
    let import = OpenApiRouter::new()
        .routes(routes!(handlers::import))
        .layer(DefaultBodyLimit::max(max_import_bytes));
    let export = OpenApiRouter::new().routes(routes!(handlers::export));
    timed.merge(import).merge(export).split_for_parts()
}

/// The OpenAPI document the daemon serves (`optout-milter api openapi` prints it).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = parts(1).1;
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The document as served: pretty JSON with a final newline, as `docs/openapi.json`.
pub fn openapi_json() -> String {
    let mut text = openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

/// The API's router over `front`.
pub fn router(front: Arc<ApiFront>) -> Router {
    let max_import_bytes = front.current().config.max_import_bytes;
    parts(max_import_bytes)
        .0
        .route_layer(axum::middleware::from_fn(crate::web::count_request))
        .layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        ))
        .with_state(front)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    front: Arc<ApiFront>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let max_connections = front.current().config.max_connections;
    let router = router(front);
    crate::web::server::serve("api", listener, tls, router, max_connections, shutdown).await
}
