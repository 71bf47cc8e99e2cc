//! The request handlers. Each one resolves the token, does at most one store write, and
//! answers; errors never show store details to the client.

use super::{
    WebFront, WebState,
    client::client_address,
    pages::{self, Depth, DoneView, Lang, Pages, Problem},
    preferences,
};
use crate::{
    consent::{Change, ConsentValue, Scope, Source},
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

/// `GET /u/{token}`: the preferences page. Changes nothing: mail security scanners fetch
/// every link they see.
pub async fn page(
    State(front): State<Arc<WebFront>>,
    token: TokenPath,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let state = front.current();
    let lang = lang(&headers);
    let Found { target, token, .. } =
        match start(&state, token, peer, &headers, lang, Charge::Always).await {
            Ok(found) => found,
            Err(response) => return response,
        };
    let (lists, all_off) = match preferences::view(&state, &target).await {
        Ok(view) => view,
        Err(e) => {
            error!(error = %crate::error_chain(&e), "cannot read consent for the preferences page");
            return unavailable(&state, lang, Depth::Token);
        }
    };
    let asked = Pages::list_name(&state, lang, &target.scope);
    let asked_done = match &target.scope {
        Scope::All => all_off,
        Scope::List(id) => lists.iter().any(|l| l.id == *id && !l.subscribed),
    };
    Html(state.pages.preferences(
        lang,
        &token,
        &pages::mask(target.address.as_str()),
        Some(&asked),
        asked_done,
        &lists,
        all_off,
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
    if !from_page {
        let evidence = evidence(&target, client, &headers, "unsubscribe", None);
        let change = target.change(
            ConsentValue::No,
            Source::OneClick,
            evidence,
            SystemTime::now(),
        );
        if let Err(e) = state.store.record(std::slice::from_ref(&change)).await {
            error!(error = %crate::error_chain(&e), token = %target.claims.label(), "cannot record an opt-out");
            return unavailable(&state, lang, Depth::Token);
        }
        info!(token = %target.claims.label(), %client, source = %Source::OneClick, scope = %target.scope, "opt-out recorded");
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "unsubscribed\n",
        )
            .into_response();
    }
    let scope = target.scope.clone();
    let found = Found {
        target,
        client,
        token,
    };
    page_opt_out(
        &state,
        lang,
        &headers,
        found,
        scope,
        "unsubscribe",
        Depth::Token,
    )
    .await
}

/// `POST /u/{token}/all`: the page's "unsubscribe from all".
pub async fn unsubscribe_all(
    State(front): State<Arc<WebFront>>,
    token: TokenPath,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
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
    let found = Found {
        target,
        client,
        token,
    };
    page_opt_out(
        &state,
        lang,
        &headers,
        found,
        Scope::All,
        "unsubscribe-all",
        Depth::Action,
    )
    .await
}

/// An opt-out from one of the pages' buttons, at `scope`: recorded with an action id,
/// then the page that says so, with its undo.
async fn page_opt_out(
    state: &WebState,
    lang: Lang,
    headers: &HeaderMap,
    found: Found,
    scope: Scope,
    what: &str,
    depth: Depth,
) -> Response {
    let Found {
        target,
        client,
        token,
    } = found;
    let action = preferences::new_action();
    let change = Change {
        scope: scope.clone(),
        ..target.change(
            ConsentValue::No,
            Source::Web,
            evidence(&target, client, headers, what, Some(&action)),
            SystemTime::now(),
        )
    };
    if let Err(e) = state.store.record(std::slice::from_ref(&change)).await {
        error!(error = %crate::error_chain(&e), token = %target.claims.label(), "cannot record an opt-out");
        return unavailable(state, lang, depth);
    }
    info!(token = %target.claims.label(), %client, source = %Source::Web, %scope, "opt-out recorded");
    let list = Pages::list_name(state, lang, &scope);
    let view = DoneView {
        message: match scope {
            Scope::All => "unsubscribed_all",
            Scope::List(_) => "unsubscribed_list",
        },
        title: "unsubscribed_title",
        address: "",
        list: &list,
        base: &token,
        action: Some(&action),
        undo_minutes: None,
    };
    done(state, lang, &target, depth, view)
}

/// `POST /u/{token}/preferences`: the page's per-list choices (`list=ID` for each ticked
/// list). Only what differs from what the page showed is written.
pub async fn save_preferences(
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
    let ticked: Vec<String> = form_urlencoded::parse(&body)
        .filter(|(k, _)| k == "list")
        .map(|(_, v)| v.to_ascii_lowercase())
        .collect();
    let action = preferences::new_action();
    let evidence = evidence(&target, client, &headers, "preferences", Some(&action));
    let plan = match preferences::plan(&state, &target, &ticked, evidence).await {
        Ok(plan) => plan,
        Err(e) => {
            error!(error = %crate::error_chain(&e), "cannot read consent for the preferences");
            return unavailable(&state, lang, Depth::Action);
        }
    };
    let written = match plan.emptied.is_empty() {
        true => state.store.record(&plan.changes).await.map(drop),
        false => state.store.restore(&plan.changes, &plan.emptied).await,
    };
    if let Err(e) = written {
        error!(error = %crate::error_chain(&e), token = %target.claims.label(), "cannot record preferences");
        return unavailable(&state, lang, Depth::Action);
    }
    info!(token = %target.claims.label(), %client, changes = plan.changes.len() + plan.emptied.len(), "preferences recorded");
    let changed = !(plan.changes.is_empty() && plan.emptied.is_empty());
    let view = DoneView {
        message: "saved_text",
        title: "saved_title",
        address: "",
        list: "",
        base: &token,
        action: changed.then_some(action.as_str()),
        undo_minutes: None,
    };
    done(&state, lang, &target, Depth::Action, view)
}

/// `POST /u/{token}/undo`: puts back what the change `action` (from the form) altered,
/// as it was before it, if the change is recent enough and the token has not expired.
pub async fn undo(
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
    let action = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "action")
        .map(|(_, v)| v.into_owned())
        .filter(|a| preferences::is_action(a));
    let cannot = || {
        (
            StatusCode::FORBIDDEN,
            Html(
                state
                    .pages
                    .problem(lang, Problem::CannotUndo, Depth::Action),
            ),
        )
            .into_response()
    };
    let Some(action) = action else {
        return cannot();
    };
    if target.expired {
        return cannot();
    }
    let evidence = evidence(&target, client, &headers, "undo", Some(&action));
    let undo = match preferences::undo_of(&state, &target, &action, evidence).await {
        Ok(Some(undo)) => undo,
        Ok(None) => return cannot(),
        Err(e) => {
            error!(error = %crate::error_chain(&e), "cannot read consent for an undo");
            return unavailable(&state, lang, Depth::Action);
        }
    };
    if let Err(e) = state.store.restore(&undo.changes, &undo.emptied).await {
        error!(error = %crate::error_chain(&e), "cannot record an undo");
        return unavailable(&state, lang, Depth::Action);
    }
    info!(token = %target.claims.label(), %client, action, "change undone");
    Html(
        state
            .pages
            .undone(lang, &token, &pages::mask(target.address.as_str())),
    )
    .into_response()
}

/// The page after a change (`view` without the address and the undo time, which are
/// filled in here), with its undo while the change may be undone.
fn done(state: &WebState, lang: Lang, target: &Target, depth: Depth, view: DoneView) -> Response {
    let undo_minutes =
        (!target.expired && !state.config.undo_window.is_zero() && view.action.is_some())
            .then(|| state.config.undo_window.as_secs().div_ceil(60));
    let address = pages::mask(target.address.as_str());
    Html(state.pages.done(
        lang,
        depth,
        DoneView {
            address: &address,
            undo_minutes,
            ..view
        },
    ))
    .into_response()
}

/// `GET /u/assets/style.css`.
pub async fn style(State(front): State<Arc<WebFront>>) -> Response {
    let state = front.current();
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        state.pages.css.clone(),
    )
        .into_response()
}

/// `GET /u/assets/logo`.
pub async fn logo(State(front): State<Arc<WebFront>>) -> Response {
    let state = front.current();
    match &state.pages.logo {
        Some(logo) => (
            [(header::CONTENT_TYPE, logo.content_type)],
            logo.bytes.clone(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no logo\n").into_response(),
    }
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
fn too_many(state: &WebState, lang: Lang) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, "60")],
        Html(
            state
                .pages
                .problem(lang, Problem::TooManyRequests, Depth::Token),
        ),
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
        return Err(too_many(state, lang));
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
            Err(unavailable(state, lang, Depth::Token))
        }
        Err(e) => {
            state.refusals.note(client, &e);
            if charge == Charge::IfRefused && !state.limiter.allow(client) {
                return Err(too_many(state, lang));
            }
            Err(problem_page(state, lang, Problem::InvalidLink))
        }
    }
}

fn problem_page(state: &WebState, lang: Lang, problem: Problem) -> Response {
    let (status, retry) = match problem {
        Problem::InvalidLink => (StatusCode::NOT_FOUND, None),
        Problem::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, Some("60")),
        Problem::TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, Some("60")),
        Problem::CannotUndo => (StatusCode::FORBIDDEN, None),
    };
    let html = Html(state.pages.problem(lang, problem, Depth::Token));
    match retry {
        Some(after) => (status, [(header::RETRY_AFTER, after)], html).into_response(),
        None => (status, html).into_response(),
    }
}

/// The store failed: nothing was changed, try again.
fn unavailable(state: &WebState, lang: Lang, depth: Depth) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "60")],
        Html(state.pages.problem(lang, Problem::Unavailable, depth)),
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

/// The audit trail's evidence: which token, from where, with what, and whether it had
/// expired. Never the token itself.
fn evidence(
    target: &Target,
    client: IpAddr,
    headers: &HeaderMap,
    what: &str,
    action: Option<&str>,
) -> String {
    let agent: String = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .chars()
        .take(MAX_AGENT)
        .collect();
    let action = action.map(|a| format!(" action={a}")).unwrap_or_default();
    format!(
        "{what}{action} token={}{} client={client} user-agent={agent:?}",
        target.claims.label(),
        if target.expired { " (expired)" } else { "" }
    )
}
