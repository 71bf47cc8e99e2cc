//! The routes: each checks the caller's token first (the [`Reader`] and [`Writer`]
//! extractors come before any other), then its input, then asks the store.

use super::{
    ApiFront, ApiState,
    auth::{self, Caller},
    model::{
        AddressRecords, BadRow, Changes, DecisionQuery, DecisionResult, Entry, ErasureRequest,
        ErasureResult, ErrorBody, History, ImportQuery, ImportResult, OptedOut, PageQuery, Record,
        RecordPage, SetConsent, SetResult,
    },
};
use crate::{
    config::ApiRights,
    consent::{
        Address, BlockReason, Change, Channel, ConsentRecord, ConsentValue, Decision,
        DefaultConsent, Effect, Scope, Source,
    },
    import,
    store::{FeedPosition, RecordKey, Recorded, StoreError},
};
use axum::{
    Json,
    body::{Body, Bytes},
    extract::{FromRequestParts, Path, Query},
    http::{StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use std::{sync::Arc, time::SystemTime};
use tracing::{info, warn};

/// The longest page of records or changes.
const MAX_LIMIT: u32 = 1000;
const DEFAULT_LIMIT: u32 = 100;
/// Records per chunk of an export.
const EXPORT_PAGE: u32 = 5_000;

/// Why a request was refused.
#[derive(Debug)]
pub enum ApiError {
    /// No token, or not one of ours: 401.
    Unauthenticated,
    /// A read token on a write: 403.
    ReadOnly,
    /// The input makes no sense: 400.
    BadRequest(String),
    /// The input is understood but cannot be recorded: 422.
    Unprocessable(String),
    /// The body is larger than allowed: 413.
    TooLarge(String),
    /// Nothing to act on: 404.
    NotFound(String),
    /// The store failed: 503, so that the caller retries.
    Store(StoreError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Self::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is needed".to_owned(),
            ),
            Self::ReadOnly => (StatusCode::FORBIDDEN, "this token may only read".to_owned()),
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            Self::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, m),
            Self::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, m),
            Self::Store(e) => {
                warn!(error = %crate::error_chain(&e), "API request failed: the store failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the consent store is not available; nothing was changed, try again".to_owned(),
                )
            }
        };
        let mut response = (status, Json(ErrorBody { error: message })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// A caller with a valid token, and the settings of the request.
pub struct Reader(Arc<ApiState>);

/// A caller whose token may change consent.
pub struct Writer(Arc<ApiState>, Caller);

fn authenticate(parts: &Parts, front: &ApiFront) -> Result<(Arc<ApiState>, Caller), ApiError> {
    let state = front.current();
    let presented = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(auth::bearer)
        .ok_or(ApiError::Unauthenticated)?;
    let caller = state
        .tokens
        .verify(presented)
        .cloned()
        .ok_or(ApiError::Unauthenticated)?;
    Ok((state, caller))
}

impl FromRequestParts<Arc<ApiFront>> for Reader {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        front: &Arc<ApiFront>,
    ) -> Result<Self, ApiError> {
        authenticate(parts, front).map(|(state, _)| Reader(state))
    }
}

impl FromRequestParts<Arc<ApiFront>> for Writer {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        front: &Arc<ApiFront>,
    ) -> Result<Self, ApiError> {
        let (state, caller) = authenticate(parts, front)?;
        match caller.rights {
            ApiRights::ReadWrite => Ok(Writer(state, caller)),
            ApiRights::Read => Err(ApiError::ReadOnly),
        }
    }
}

fn address(state: &ApiState, text: &str) -> Result<Address, ApiError> {
    state
        .addresses
        .normalize(text)
        .map_err(|e| ApiError::Unprocessable(e.to_string()))
}

fn channel(text: &str) -> Result<Channel, ApiError> {
    text.parse::<Channel>().map_err(ApiError::BadRequest)
}

/// The key of `text` on `channel`: an email address, or a phone number for `sms`.
fn key(state: &ApiState, channel: Channel, text: &str) -> Result<Address, ApiError> {
    crate::consent::key(channel, text, &state.addresses, &state.phones)
        .map_err(|e| ApiError::Unprocessable(e.to_string()))
}

/// Whoever `text` names: an email address, or a phone number.
fn any_key(state: &ApiState, text: &str) -> Result<Address, ApiError> {
    crate::consent::any_key(text, &state.addresses, &state.phones)
        .map_err(|e| ApiError::Unprocessable(e.to_string()))
}

fn scope(text: &str) -> Result<Scope, ApiError> {
    text.parse()
        .map_err(|e: crate::consent::ScopeError| ApiError::BadRequest(e.to_string()))
}

fn value(text: &str) -> Result<ConsentValue, ApiError> {
    text.parse()
        .map_err(|e: crate::consent::value::UnknownValue| ApiError::BadRequest(e.to_string()))
}

fn limit(asked: Option<u32>) -> Result<u32, ApiError> {
    match asked.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n),
        n => Err(ApiError::BadRequest(format!(
            "limit {n}: expected 1 to {MAX_LIMIT}"
        ))),
    }
}

fn default_word(state: &ApiState) -> &'static str {
    match state.consent.default {
        DefaultConsent::Yes => "y",
        DefaultConsent::No => "n",
    }
}

/// Every current record of an address.
#[utoipa::path(
    get,
    path = "/v1/consent/{address}",
    tag = "consent",
    params(("address" = String, Path, description = "An email address, in any spelling the MTA accepts, or a phone number")),
    responses(
        (status = 200, body = AddressRecords),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "Not an address"),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn get_consent(
    Reader(state): Reader,
    Path(text): Path<String>,
) -> Result<Json<AddressRecords>, ApiError> {
    let address = any_key(&state, &text)?;
    let records = state.store.records(&address).await?;
    let erased = match &state.erasure {
        Some(erasure) => crate::erase::is_erased(state.store.as_ref(), erasure, &address).await?,
        None => false,
    };
    Ok(Json(AddressRecords {
        address: address.as_str().to_owned(),
        records: records.iter().map(Record::from).collect(),
        default: default_word(&state).to_owned(),
        erased,
    }))
}

fn erasure(state: &ApiState) -> Result<&crate::consent::Erasure, ApiError> {
    state.erasure.as_deref().ok_or_else(|| {
        ApiError::Unprocessable("erasure needs [consent] erasure_key in the daemon's config".into())
    })
}

/// Erases an address (GDPR art. 17) and keeps it suppressed: its records, history and
/// token subjects are deleted, and an opt-out stays under a keyed pseudonym, so mail to
/// it is still refused and a later import of `y` does not bring consent back.
#[utoipa::path(
    delete,
    path = "/v1/consent/{address}",
    tag = "consent",
    params(("address" = String, Path, description = "An email address")),
    request_body(content = ErasureRequest, description = "Optional"),
    responses(
        (status = 200, body = ErasureResult),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "Not an address, or no erasure key"),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn erase(
    Writer(state, caller): Writer,
    Path(text): Path<String>,
    body: Bytes,
) -> Result<Json<ErasureResult>, ApiError> {
    let request = erasure_request(&body)?;
    let address = address(&state, &text)?;
    let erased = crate::erase::erase(
        state.store.as_ref(),
        erasure(&state)?,
        &address,
        &evidence(&request.evidence, &caller),
    )
    .await?;
    info!(
        token = caller.name,
        history_deleted = erased.history_deleted,
        "address erased through the API"
    );
    Ok(Json(ErasureResult {
        address: address.as_str().to_owned(),
        history_deleted: erased.history_deleted,
        kept_as: erased.pseudonym.as_str().to_owned(),
    }))
}

/// Lifts an erasure: mail to the address follows its records again.
#[utoipa::path(
    post,
    path = "/v1/consent/{address}/lift-erasure",
    tag = "consent",
    params(("address" = String, Path, description = "An email address")),
    request_body(content = ErasureRequest, description = "Optional"),
    responses(
        (status = 200, description = "Lifted"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "The address is not erased"),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn lift_erasure(
    Writer(state, caller): Writer,
    Path(text): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = erasure_request(&body)?;
    let address = address(&state, &text)?;
    let lifted = crate::erase::lift(
        state.store.as_ref(),
        erasure(&state)?,
        &address,
        Source::Api,
        &evidence(&request.evidence, &caller),
    )
    .await?;
    if !lifted {
        return Err(ApiError::NotFound(format!("{address} is not erased")));
    }
    info!(%address, token = caller.name, "erasure lifted through the API");
    Ok(StatusCode::OK.into_response())
}

/// An optional JSON body.
fn erasure_request(body: &[u8]) -> Result<ErasureRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ErasureRequest::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Records a value for an address; durable before the answer.
#[utoipa::path(
    put,
    path = "/v1/consent/{address}",
    tag = "consent",
    params(("address" = String, Path, description = "An email address")),
    request_body = SetConsent,
    responses(
        (status = 200, body = SetResult),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "A read token"),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn set_consent(
    Writer(state, caller): Writer,
    Path(text): Path<String>,
    body: Result<Json<SetConsent>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SetResult>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let channel = channel(&body.channel)?;
    let change = Change {
        address: key(&state, channel, &text)?,
        channel,
        scope: scope(&body.scope)?,
        value: value(&body.value)?,
        source: Source::Api,
        at: SystemTime::now(),
        evidence: evidence(&body.evidence, &caller),
    };
    let outcome = state.store.record(std::slice::from_ref(&change)).await?;
    let changed = outcome.first() == Some(&Recorded::Changed);
    let outcome = if changed { "changed" } else { "unchanged" };
    info!(address = %change.address, scope = %change.scope, value = %change.value, token = caller.name, outcome, "consent set through the API");
    // What was written, as written; an unchanged value keeps the record it had, read
    // back (a failure to read it then is a 503 that changed nothing).
    let written = ConsentRecord {
        address: change.address.clone(),
        channel: change.channel,
        scope: change.scope.clone(),
        value: change.value,
        source: change.source,
        updated_at: change.at,
        evidence: change.evidence.clone(),
    };
    let record = match changed {
        true => Record::from(&written),
        false => state
            .store
            .records(&change.address)
            .await?
            .iter()
            .find(|r| r.channel == change.channel && r.scope == change.scope)
            .map_or_else(|| Record::from(&written), Record::from),
    };
    Ok(Json(SetResult {
        outcome: outcome.to_owned(),
        record,
    }))
}

/// The evidence kept with a change made by `caller`.
fn evidence(given: &str, caller: &Caller) -> String {
    match given.trim() {
        "" => format!("set through the API with token {}", caller.name),
        given => format!("{given} (API token {})", caller.name),
    }
}

/// The history of an address, oldest first.
#[utoipa::path(
    get,
    path = "/v1/consent/{address}/history",
    tag = "consent",
    params(("address" = String, Path, description = "An email address")),
    responses(
        (status = 200, body = History),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn history(
    Reader(state): Reader,
    Path(text): Path<String>,
) -> Result<Json<History>, ApiError> {
    let address = any_key(&state, &text)?;
    let entries = state.store.history(&address).await?;
    Ok(Json(History {
        address: address.as_str().to_owned(),
        entries: entries.iter().map(Entry::from).collect(),
    }))
}

/// Every record, a page at a time, in key order.
#[utoipa::path(
    get,
    path = "/v1/consent",
    tag = "consent",
    params(PageQuery),
    responses(
        (status = 200, body = RecordPage),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn list(
    Reader(state): Reader,
    Query(query): Query<PageQuery>,
) -> Result<Json<RecordPage>, ApiError> {
    let limit = limit(query.limit)?;
    let after = query.after.as_deref().map(decode_key).transpose()?;
    let page = state.store.page(after.as_ref(), limit).await?;
    let next = match page.last() {
        Some(last) if page.len() == limit as usize => Some(encode_key(&RecordKey {
            address: last.address.as_str().to_owned(),
            channel: last.channel,
            scope: last.scope.clone(),
        })),
        _ => None,
    };
    Ok(Json(RecordPage {
        records: page.iter().map(Record::from).collect(),
        next,
    }))
}

/// A record key as a page cursor: opaque to callers, URL-safe.
fn encode_key(key: &RecordKey) -> String {
    let text = format!("{}\n{}\n{}", key.address, key.channel, key.scope);
    URL_SAFE_NO_PAD.encode(text)
}

fn decode_key(cursor: &str) -> Result<RecordKey, ApiError> {
    let bad = || ApiError::BadRequest(format!("after {cursor:?}: not a cursor this API gave"));
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = text.splitn(3, '\n');
    let (Some(address), Some(channel), Some(scope)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    Ok(RecordKey {
        address: address.to_owned(),
        channel: channel.parse().map_err(|_| bad())?,
        scope: scope.parse().map_err(|_| bad())?,
    })
}

/// May a marketing message of `list` go to `address`? The milter's own decision: the
/// address's records and those of the forms the MTA would deliver to the same mailbox.
#[utoipa::path(
    get,
    path = "/v1/decision",
    tag = "decision",
    params(DecisionQuery),
    responses(
        (status = 200, body = DecisionResult),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn decision(
    Reader(state): Reader,
    Query(query): Query<DecisionQuery>,
) -> Result<Json<DecisionResult>, ApiError> {
    let channel = channel(query.channel.as_deref().unwrap_or("email"))?;
    let list = scope(query.list.as_deref().unwrap_or("*"))?;
    let address = key(&state, channel, &query.address)?;
    let store = &state.store;
    let lookup = |candidate: Address, channel: Channel| {
        let list = &list;
        async move { store.scoped_values(&candidate, channel, list).await }
    };
    let sms = match channel {
        Channel::Email => state.phones.gateway_number(&address),
        Channel::Sms => None,
    };
    let decision = state
        .consent
        .decide_for(
            &state.addresses,
            state.erasure.as_deref(),
            &address,
            channel,
            sms,
            &list,
            lookup,
        )
        .await?;
    let (allowed, reason, opted_out) = match decision {
        Decision::Block(BlockReason::OptedOut { scope, value }) => (
            false,
            "opted-out",
            Some(OptedOut {
                scope: scope.as_str().to_owned(),
                value: value.as_str().to_owned(),
            }),
        ),
        Decision::Block(BlockReason::NoConsent) => (false, "no-consent", None),
        Decision::Allow => {
            let own = store.scoped_values(&address, channel, &list).await?;
            let consented = own.iter().any(|(_, v)| v.effect() == Effect::Allows);
            (true, if consented { "consent" } else { "default" }, None)
        }
    };
    Ok(Json(DecisionResult {
        allowed,
        reason: reason.to_owned(),
        address: address.as_str().to_owned(),
        opted_out,
    }))
}

/// The change feed: every change, whatever its source, in commit order, from a cursor.
#[utoipa::path(
    get,
    path = "/v1/changes",
    tag = "feed",
    params(PageQuery),
    responses(
        (status = 200, body = Changes),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn changes(
    Reader(state): Reader,
    Query(query): Query<PageQuery>,
) -> Result<Json<Changes>, ApiError> {
    let limit = limit(query.limit)?;
    let after = match query.after.as_deref() {
        None => FeedPosition::default(),
        Some(cursor) => decode_position(cursor)?,
    };
    let (entries, next) = state.store.history_since(after, limit).await?;
    Ok(Json(Changes {
        changes: entries.iter().map(Entry::from).collect(),
        next: encode_position(next),
    }))
}

fn encode_position(p: FeedPosition) -> String {
    format!("{}.{}", p.commit, p.row)
}

fn decode_position(cursor: &str) -> Result<FeedPosition, ApiError> {
    cursor
        .split_once('.')
        .and_then(|(c, r)| Some((c.parse().ok()?, r.parse().ok()?)))
        .filter(|&(c, r): &(i64, i64)| c >= 0 && r >= 0)
        .map(|(commit, row)| FeedPosition { commit, row })
        .ok_or_else(|| {
            ApiError::BadRequest(format!("after {cursor:?}: not a cursor this API gave"))
        })
}

/// Every record as CSV, in the format of `consent export` (which `POST /v1/import` and
/// `consent import` read back), streamed a page at a time.
#[utoipa::path(
    get,
    path = "/v1/export",
    tag = "consent",
    responses(
        (status = 200, content_type = "text/csv", body = String),
        (status = 401, body = ErrorBody),
    )
)]
pub async fn export(Reader(state): Reader) -> Response {
    struct Cursor {
        state: Arc<ApiState>,
        after: Option<RecordKey>,
        header: bool,
        done: bool,
    }
    let start = Cursor {
        state,
        after: None,
        header: true,
        done: false,
    };
    let chunks = futures_util::stream::unfold(start, |mut cursor| async move {
        if cursor.done {
            return None;
        }
        let page = match cursor
            .state
            .store
            .page(cursor.after.as_ref(), EXPORT_PAGE)
            .await
        {
            Ok(page) => page,
            Err(error) => {
                // The response ends without its last chunk: the client sees a broken
                // transfer, never a short file that looks whole.
                warn!(error = %crate::error_chain(&error), "API export cut off: the store failed");
                cursor.done = true;
                return Some((Err(std::io::Error::other("the store failed")), cursor));
            }
        };
        let mut csv = csv::Writer::from_writer(Vec::new());
        let mut written = Ok(());
        if cursor.header {
            written = csv.write_record(import::EXPORT_COLUMNS);
            cursor.header = false;
        }
        for r in &page {
            if written.is_ok() {
                written = csv.write_record([
                    r.address.as_str(),
                    r.channel.as_str(),
                    r.scope.as_str(),
                    r.value.as_str(),
                    r.source.as_str(),
                    &humantime::format_rfc3339_seconds(r.updated_at).to_string(),
                    &r.evidence,
                ]);
            }
        }
        cursor.done = page.len() < EXPORT_PAGE as usize;
        cursor.after = page.last().map(|last| RecordKey {
            address: last.address.as_str().to_owned(),
            channel: last.channel,
            scope: last.scope.clone(),
        });
        let chunk = written
            .map_err(std::io::Error::other)
            .and_then(|()| {
                csv.into_inner()
                    .map_err(|e| std::io::Error::other(e.to_string()))
            })
            .map(Bytes::from);
        Some((chunk, cursor))
    });
    (
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        Body::from_stream(chunks),
    )
        .into_response()
}

/// Imports a file: one address per line, an ESP's CSV export, or a `GET /v1/export`.
/// Rows that cannot be used are reported; the others are durable before the answer.
#[utoipa::path(
    post,
    path = "/v1/import",
    tag = "consent",
    params(ImportQuery),
    request_body(content = String, content_type = "text/csv"),
    responses(
        (status = 200, body = ImportResult),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody, description = "Larger than api.max_import_bytes"),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn import(
    Writer(state, caller): Writer,
    Query(query): Query<ImportQuery>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<ImportResult>, ApiError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(format!(
            "the file is larger than api.max_import_bytes ({} bytes); split it, or raise the limit",
            state.config.max_import_bytes
        )),
        _ => ApiError::BadRequest(e.body_text()),
    })?;
    let value = query.value.as_deref().map(value).transpose()?;
    let scope = query.scope.as_deref().map(scope).transpose()?;
    let given = query.evidence.unwrap_or_default();
    let request = import::Request {
        value,
        scope,
        evidence: match given.trim() {
            "" => format!("imported through the API with token {}", caller.name),
            given => format!("{given} (API token {})", caller.name),
        },
    };
    let purpose = request.purpose();
    let table = tokio::task::spawn_blocking(move || import::read(&body[..], purpose))
        .await
        .map_err(|e| ApiError::BadRequest(format!("the file could not be read: {e}")))?
        .map_err(|e| ApiError::BadRequest(crate::error_chain(&e)))?;
    let notes = table.notes.clone();
    let tally = import::apply(
        table,
        request,
        &state.addresses,
        state.erasure.as_deref(),
        state.store.as_ref(),
    )
    .await
    .map_err(|e| match e {
        import::ApplyError::ValueForExport => ApiError::BadRequest(e.to_string()),
        import::ApplyError::Store(e) => ApiError::Store(e),
    })?;
    info!(
        token = caller.name,
        changed = tally.changed,
        unchanged = tally.unchanged,
        bad = tally.bad.len(),
        "import through the API"
    );
    Ok(Json(ImportResult {
        changed: tally.changed,
        unchanged: tally.unchanged,
        skipped: tally.skipped,
        bad: tally
            .bad
            .into_iter()
            .map(|(line, error)| BadRow { line, error })
            .collect(),
        erased: tally.erased,
        notes,
    }))
}

/// This API's OpenAPI document (also in the repository as `docs/openapi.json`).
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "consent",
    responses(
        (status = 200, content_type = "application/json", body = Object),
        (status = 401, body = ErrorBody),
    )
)]
pub async fn openapi(_reader: Reader) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi_json(),
    )
        .into_response()
}
