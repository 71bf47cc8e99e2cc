//! The request handlers. Each one resolves the token, does at most one store write, and
//! answers; errors never show store details to the client.

use super::{
    WebFront, WebState,
    client::client_address,
    pages::{self, Lang, ListName, Problem},
};
use crate::{
    consent::{ConsentValue, Scope, Source},
    unsubscribe::{ResolveError, Target},
};
use axum::{
    body::Bytes,
    extract::{ConnectInfo, Path, State, rejection::PathRejection},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::SystemTime,
};
use tracing::{error, info};

/// The longest user agent kept as evidence.
const MAX_AGENT: usize = 200;

/// `GET /u/{token}`: the question. Changes nothing.
pub async fn page(
    State(front): State<Arc<WebFront>>,
    token: TokenPath,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let state = front.current();
    let lang = lang(&headers);
    let Found { target, .. } =
        match start(&state, token, peer, &headers, lang, Charge::Always).await {
            Ok(found) => found,
            Err(response) => return response,
        };
    let list = list_name(&state, &target.scope);
    Html(pages::confirm(
        lang,
        &pages::mask(target.address.as_str()),
        &list,
    ))
    .into_response()
}

/// `POST /u/{token}`: the opt-out, from a mailbox provider (one-click) or the page's button.
pub async fn unsubscribe(
    State(front): State<Arc<WebFront>>,
    token: TokenPath,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let state = front.current();
    let lang = lang(&headers);
    let Found {
        target,
        client,
        token,
    } = match start(&state, token, peer, &headers, lang, Charge::IfRefused).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let from_page = from_page(&headers, &body);
    let source = if from_page {
        Source::Web
    } else {
        Source::OneClick
    };
    let evidence = evidence(&target, client, &headers, "unsubscribe");
    let now = SystemTime::now();
    let change = target.change(ConsentValue::No, source, evidence, now);
    if let Err(e) = state.store.record(std::slice::from_ref(&change)).await {
        error!(error = %crate::error_chain(&e), token = %target.claims.label(), "cannot record an opt-out");
        return unavailable(lang);
    }
    info!(token = %target.claims.label(), %client, %source, scope = %target.scope, "opt-out recorded");
    if !from_page {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "unsubscribed\n",
        )
            .into_response();
    }
    let undo_minutes = (!target.expired && !state.config.undo_window.is_zero())
        .then(|| state.config.undo_window.as_secs().div_ceil(60));
    let list = list_name(&state, &target.scope);
    Html(pages::done(
        lang,
        &pages::mask(target.address.as_str()),
        &list,
        &token,
        undo_minutes,
    ))
    .into_response()
}

/// `POST /u/{token}/undo`: subscribe again, if this token's opt-out is recent enough.
pub async fn undo(
    State(front): State<Arc<WebFront>>,
    token: TokenPath,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let state = front.current();
    let lang = lang(&headers);
    let Found { target, client, .. } =
        match start(&state, token, peer, &headers, lang, Charge::IfRefused).await {
            Ok(found) => found,
            Err(response) => return response,
        };
    let now = SystemTime::now();
    let records = match state.store.records(&target.address).await {
        Ok(records) => records,
        Err(e) => {
            error!(error = %crate::error_chain(&e), "cannot read consent for an undo");
            return unavailable(lang);
        }
    };
    let recent_opt_out = records.iter().any(|r| {
        r.scope == target.scope
            && r.value == ConsentValue::No
            && matches!(r.source, Source::OneClick | Source::Web)
            && now.duration_since(r.updated_at).unwrap_or_default() <= state.config.undo_window
    });
    if target.expired || !recent_opt_out {
        return (
            StatusCode::FORBIDDEN,
            Html(pages::problem(lang, Problem::CannotUndo)),
        )
            .into_response();
    }
    let change = target.change(
        ConsentValue::Yes,
        Source::Web,
        evidence(&target, client, &headers, "undo"),
        now,
    );
    if let Err(e) = state.store.record(std::slice::from_ref(&change)).await {
        error!(error = %crate::error_chain(&e), "cannot record an undo");
        return unavailable(lang);
    }
    info!(token = %target.claims.label(), %client, scope = %target.scope, "opt-out undone");
    let list = list_name(&state, &target.scope);
    Html(pages::undone(
        lang,
        &pages::mask(target.address.as_str()),
        &list,
    ))
    .into_response()
}

/// `GET /healthz`.
pub async fn healthz(State(front): State<Arc<WebFront>>) -> Response {
    let state = front.current();
    let ping = tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await;
    match ping {
        Ok(Ok(())) => (StatusCode::OK, "ok\n").into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response(),
    }
}

/// Over the limit: a 429.
fn too_many(lang: Lang) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, "60")],
        Html(pages::problem(lang, Problem::TooManyRequests)),
    )
        .into_response()
}

/// Which requests count against the client's limit (see `client`'s module docs).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Charge {
    /// Every request: page views cost a store read and give nothing.
    Always,
    /// Only when the link is refused: an opt-out with a valid token is never limited.
    IfRefused,
}

/// The token from the path, or why it could not be read.
pub type TokenPath = Result<Path<String>, PathRejection>;

/// What a token route knows once its token resolved.
struct Found {
    target: Target,
    client: IpAddr,
    token: String,
}

/// What every token route does first: take the token from the path and resolve it,
/// counting the request against the client's limit as `charge` says. A path that is not
/// even text is an invalid link too.
async fn start(
    state: &WebState,
    token: TokenPath,
    peer: SocketAddr,
    headers: &HeaderMap,
    lang: Lang,
    charge: Charge,
) -> Result<Found, Response> {
    let client = client_address(peer.ip(), headers, &state.config.trusted_proxies);
    if charge == Charge::Always && !state.limiter.allow(client) {
        return Err(too_many(lang));
    }
    let resolved = match token {
        Ok(Path(token)) => state
            .unsubscribe
            .resolve(state.store.as_ref(), &token, SystemTime::now())
            .await
            .map(|target| (target, token)),
        Err(_) => Err(ResolveError::Token(crate::token::TokenError::Malformed)),
    };
    match resolved {
        Ok((target, token)) => Ok(Found {
            target,
            client,
            token,
        }),
        Err(ResolveError::Store(e)) => {
            error!(error = %crate::error_chain(&e), "cannot resolve a token");
            Err(unavailable(lang))
        }
        Err(e) => {
            state.refusals.note(client, &e);
            if charge == Charge::IfRefused && !state.limiter.allow(client) {
                return Err(too_many(lang));
            }
            Err(invalid_link(lang))
        }
    }
}

fn invalid_link(lang: Lang) -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(pages::problem(lang, Problem::InvalidLink)),
    )
        .into_response()
}

fn unavailable(lang: Lang) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "60")],
        Html(pages::problem(lang, Problem::Unavailable)),
    )
        .into_response()
}

fn lang(headers: &HeaderMap) -> Lang {
    Lang::negotiate(
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

/// Whether a POST to `/u/{token}` is the landing page's button (a form with `via=page`)
/// rather than a mailbox provider's one-click request, whatever body that sends.
pub fn from_page(headers: &HeaderMap, body: &[u8]) -> bool {
    is_form(headers) && form_urlencoded::parse(body).any(|(k, v)| k == "via" && v == "page")
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

fn list_name<'a>(state: &'a WebState, scope: &'a Scope) -> ListName<'a> {
    match scope {
        Scope::All => ListName::All {
            sender: &state.config.sender_name,
        },
        Scope::List(id) => ListName::Named(
            state
                .config
                .list_names
                .get(scope)
                .map_or(id.as_str(), String::as_str),
        ),
    }
}

/// The audit trail's evidence: which token, from where, with what, and whether it had
/// expired. Never the token itself.
fn evidence(target: &Target, client: IpAddr, headers: &HeaderMap, what: &str) -> String {
    let agent: String = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .chars()
        .take(MAX_AGENT)
        .collect();
    format!(
        "{what} token={}{} client={client} user-agent={agent:?}",
        target.claims.label(),
        if target.expired { " (expired)" } else { "" }
    )
}
