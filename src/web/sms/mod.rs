//! The SMS providers' inbound endpoints, on the web front (providers post to a public
//! HTTPS URL, like mailbox providers' one-click POSTs):
//! - `POST /sms/twilio`: Twilio's form, `X-Twilio-Signature` checked; TwiML answer.
//! - `POST /sms/vonage`: Vonage's Messages API JSON, its JWT checked; the answer's text
//!   is in the JSON body for the log (Vonage sends no reply from a webhook's answer).
//! - `POST /sms/inbound`: `{"id", "from", "to", "text"}` from any gateway, with
//!   `Authorization: Bearer` and the shared secret; the answer says what was done and the
//!   reply to send.
//!
//! A request that does not verify records nothing (403, or 401 for the bearer secret).
//! A 200 comes only once the change is durable; when the store fails the answer is 503,
//! and the provider tries again with the same message id, which is applied once. A
//! message from something that is not a phone number (a WhatsApp sender, an alphanumeric
//! id) gets a 200 and records nothing: sending it again cannot help.

pub mod credentials;

use super::WebFront;
use crate::secret_file::SecretFileError;
use crate::{
    config::{Config, SmsConfig},
    consent::PhonePolicy,
    sms::{Inbound, Outcome, SmsError, twilio, vonage},
};
use axum::{
    Json,
    body::Bytes,
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use credentials::Credentials;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tracing::{error, info, warn};

/// What the SMS endpoints need, loaded at start and at each reload.
pub struct SmsFront {
    pub config: SmsConfig,
    pub phones: PhonePolicy,
    pub credentials: Credentials,
}

impl SmsFront {
    /// The SMS side of `config`, credentials read; `None` without providers.
    pub fn load(config: &Config) -> Result<Option<Arc<Self>>, SecretFileError> {
        let Some(sms) = &config.sms else {
            return Ok(None);
        };
        Ok(Some(Arc::new(Self {
            credentials: Credentials::load(sms)?,
            config: sms.clone(),
            phones: config.phones.clone(),
        })))
    }
}

/// What the generic endpoint answers.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Answer {
    /// `opt_out`, `opt_out_all`, `opt_in`, `help`, or `none` for a message that is not a
    /// keyword.
    pub action: String,
    /// The keyword as matched (`STOP ALL`).
    pub keyword: Option<String>,
    /// The text to send back to the person, in the keyword's language.
    pub reply: Option<String>,
    /// The message was applied before (a retry): nothing was written this time.
    pub repeated: bool,
    /// The person's number in E.164.
    pub number: Option<String>,
}

impl Answer {
    fn from_outcome(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::NotKeyword => Self {
                action: "none".into(),
                keyword: None,
                reply: None,
                repeated: false,
                number: None,
            },
            Outcome::Keyword {
                found,
                reply,
                repeated,
                number,
            } => Self {
                action: found.kind.as_str().into(),
                keyword: Some(found.word.clone()),
                reply: Some(reply.clone()),
                repeated: *repeated,
                number: Some(number.as_str().to_owned()),
            },
        }
    }
}

/// The generic endpoint's request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericMessage {
    /// The gateway's id of the message: the same on every retry.
    pub id: String,
    pub from: String,
    pub to: String,
    pub text: String,
}

/// How a message went, before it becomes a provider's answer.
enum Taken {
    Done(Outcome),
    /// Not from a phone number, or to nothing we know: answered 200, nothing recorded.
    Unusable(SmsError),
    /// The store failed: the provider must try again.
    Failed,
}

async fn take(front: &WebFront, sms: &SmsFront, message: Inbound<'_>) -> Taken {
    let state = front.current();
    let result = sms
        .config
        .policy
        .take(
            &sms.phones,
            state.store.as_ref(),
            &state.config.sender_name,
            &message,
        )
        .await;
    match result {
        Ok(outcome) => {
            if let Outcome::Keyword {
                found, repeated, ..
            } = &outcome
            {
                info!(provider = message.provider, id = message.id, keyword = %found.kind, repeated, "SMS keyword taken");
            }
            Taken::Done(outcome)
        }
        Err(SmsError::Store(e)) => {
            error!(provider = message.provider, id = message.id, error = %crate::error_chain(&e), "cannot record an SMS keyword");
            Taken::Failed
        }
        Err(e) => {
            warn!(provider = message.provider, id = message.id, error = %crate::error_chain(&e), "SMS message not taken");
            Taken::Unusable(e)
        }
    }
}

fn not_configured() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

fn refused(status: StatusCode, why: &str) -> Response {
    (status, format!("{why}\n")).into_response()
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "30")],
        "the consent store is unavailable; try again\n",
    )
        .into_response()
}

/// `POST /sms/twilio`.
pub async fn twilio(
    State(front): State<Arc<WebFront>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let state = front.current();
    let Some(sms) = state.sms.clone() else {
        return not_configured();
    };
    let (Some(config), Some(token)) = (&sms.config.twilio, &sms.credentials.twilio_auth_token)
    else {
        return not_configured();
    };
    let params = twilio::params(&body);
    let url = match &query {
        Some(q) => format!("{}?{q}", config.url),
        None => config.url.clone(),
    };
    let signature = headers
        .get(twilio::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !twilio::verify(token, &url, &params, signature) {
        warn!(
            "a request to /sms/twilio without Twilio's signature for the configured url and auth token"
        );
        return refused(
            StatusCode::FORBIDDEN,
            "the X-Twilio-Signature does not verify",
        );
    }
    let message = match twilio::message(&params) {
        Ok(message) => message,
        Err(field) => {
            return refused(StatusCode::BAD_REQUEST, &format!("no {field} field"));
        }
    };
    let inbound = Inbound {
        provider: "twilio",
        id: &message.sid,
        from: &message.from,
        to: &message.to,
        text: &message.body,
    };
    let reply = match take(&front, &sms, inbound).await {
        Taken::Done(Outcome::Keyword { reply, .. }) => Some(reply),
        Taken::Done(Outcome::NotKeyword) | Taken::Unusable(_) => None,
        Taken::Failed => return unavailable(),
    };
    (
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        twilio::twiml(reply.as_deref()),
    )
        .into_response()
}

/// `POST /sms/vonage`.
pub async fn vonage(
    State(front): State<Arc<WebFront>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let state = front.current();
    let Some(sms) = state.sms.clone() else {
        return not_configured();
    };
    let (Some(config), Some(secret)) =
        (&sms.config.vonage, &sms.credentials.vonage_signature_secret)
    else {
        return not_configured();
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(super::bearer);
    if let Err(e) = vonage::verify(secret, config.api_key.as_deref(), token, &body) {
        warn!(error = %e, "a request to /sms/vonage without Vonage's signature");
        return refused(StatusCode::UNAUTHORIZED, &e.to_string());
    }
    let message = match vonage::message(&body) {
        Ok(message) => message,
        Err(e) => {
            return refused(
                StatusCode::BAD_REQUEST,
                &format!("not a Messages API inbound message: {e}"),
            );
        }
    };
    if message.channel != "sms" {
        return Json(Answer::from_outcome(&Outcome::NotKeyword)).into_response();
    }
    let inbound = Inbound {
        provider: "vonage",
        id: &message.message_uuid,
        from: &message.from,
        to: &message.to,
        text: message.text.as_deref().unwrap_or_default(),
    };
    match take(&front, &sms, inbound).await {
        Taken::Done(outcome) => Json(Answer::from_outcome(&outcome)).into_response(),
        Taken::Unusable(_) => Json(Answer::from_outcome(&Outcome::NotKeyword)).into_response(),
        Taken::Failed => unavailable(),
    }
}

/// `POST /sms/inbound`.
pub async fn generic(
    State(front): State<Arc<WebFront>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let state = front.current();
    let Some(sms) = state.sms.clone() else {
        return not_configured();
    };
    if sms.config.generic_secret_file.is_none() {
        return not_configured();
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(super::bearer)
        .unwrap_or_default();
    if !sms.credentials.generic_secret_matches(presented) {
        warn!("a request to /sms/inbound without the shared secret");
        return refused(StatusCode::UNAUTHORIZED, "a valid bearer secret is needed");
    }
    let message: GenericMessage = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(e) => {
            return refused(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"id\", \"from\", \"to\", \"text\"}}: {e}"),
            );
        }
    };
    let inbound = Inbound {
        provider: "generic",
        id: &message.id,
        from: &message.from,
        to: &message.to,
        text: &message.text,
    };
    match take(&front, &sms, inbound).await {
        Taken::Done(outcome) => Json(Answer::from_outcome(&outcome)).into_response(),
        Taken::Unusable(e) => refused(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
        Taken::Failed => unavailable(),
    }
}
