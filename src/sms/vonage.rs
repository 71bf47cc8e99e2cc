//! Vonage's inbound messages (the Messages API): a JSON POST, signed with a JWT in
//! `Authorization: Bearer …`.
//!
//! The JWT is HS256, keyed with the account's signature secret; its `payload_hash` claim is
//! the SHA-256 (hex) of the body, which binds the signature to this very message (Vonage's
//! "Signed webhooks" guide). Only HS256 is accepted: a token naming another algorithm, or
//! `none`, is refused however it is signed. `iat` is not checked against the clock: a
//! replayed request repeats a message id, and a message id is applied once
//! ([`crate::store::Records::record_once`]).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Why a request is not Vonage's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("no Authorization: Bearer header")]
    Missing,
    #[error("the bearer token is not a JWT")]
    Malformed,
    #[error("the JWT is not HS256")]
    Algorithm,
    #[error("the JWT's signature does not verify with the signature secret")]
    Signature,
    #[error("the JWT's payload_hash is not the body's SHA-256")]
    PayloadHash,
    #[error("the JWT is for API key {0:?}, not the configured one")]
    ApiKey(String),
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    payload_hash: Option<String>,
    api_key: Option<String>,
}

/// Checks `token` (the bearer token) for `body` against `secret`, and, when given, that it
/// was issued for `api_key`.
pub fn verify(
    secret: &[u8],
    api_key: Option<&str>,
    token: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let token = token.ok_or(SignatureError::Missing)?;
    let mut parts = token.trim().split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SignatureError::Malformed);
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| SignatureError::Malformed)
    };
    let parsed: Header =
        serde_json::from_slice(&decode(header)?).map_err(|_| SignatureError::Malformed)?;
    if parsed.alg != "HS256" {
        return Err(SignatureError::Algorithm);
    }
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(claims.as_bytes());
    mac.verify_slice(&decode(signature)?)
        .map_err(|_| SignatureError::Signature)?;
    let claims: Claims =
        serde_json::from_slice(&decode(claims)?).map_err(|_| SignatureError::Malformed)?;
    let digest = Sha256::digest(body);
    let matches = claims.payload_hash.as_deref().is_some_and(|hash| {
        hash.len() == 64
            && hash
                .as_bytes()
                .chunks(2)
                .zip(digest.iter())
                .all(|(pair, byte)| {
                    std::str::from_utf8(pair)
                        .ok()
                        .and_then(|p| u8::from_str_radix(p, 16).ok())
                        == Some(*byte)
                })
    });
    if !matches {
        return Err(SignatureError::PayloadHash);
    }
    match (api_key, claims.api_key) {
        (Some(expected), Some(got)) if got != expected => Err(SignatureError::ApiKey(got)),
        (Some(_), None) => Err(SignatureError::ApiKey(String::new())),
        _ => Ok(()),
    }
}

/// An inbound message as the Messages API sends it; numbers come without `+`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Message {
    pub channel: String,
    pub message_uuid: String,
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub text: Option<String>,
}

/// The message in `body`.
pub fn message(body: &[u8]) -> Result<Message, serde_json::Error> {
    serde_json::from_slice(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a-signature-secret-of-32-bytes!!";

    /// A JWT as Vonage signs one (the claims of the "Signed webhooks" guide).
    pub fn token(secret: &[u8], alg: &str, body: &[u8]) -> String {
        let hash: String = Sha256::digest(body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
        let claims = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"iat":1700000000,"jti":"0d6e8d5a-1f0a-4a44-9a0b-5b5f1c2e3d4f","iss":"Vonage","payload_hash":"{hash}","api_key":"abcd1234","application_id":"aaaaaaaa-bbbb-cccc-dddd-0123456789ab"}}"#
        ));
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap();
        mac.update(format!("{header}.{claims}").as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{header}.{claims}.{signature}")
    }

    /// The inbound SMS of the Messages API reference.
    const BODY: &[u8] = br#"{"channel":"sms","message_uuid":"aaaaaaaa-bbbb-cccc-dddd-0123456789ab","to":"447700900000","from":"447700900001","timestamp":"2025-02-03T12:14:25Z","text":"STOP","sms":{"num_messages":"2","keyword":"STOP"},"usage":{"price":"0.0333","currency":"EUR"},"message_type":"text"}"#;

    #[test]
    fn a_signed_message_verifies_and_any_change_does_not() {
        let t = token(SECRET, "HS256", BODY);
        assert_eq!(verify(SECRET, None, Some(&t), BODY), Ok(()));
        assert_eq!(verify(SECRET, Some("abcd1234"), Some(&t), BODY), Ok(()));
        assert_eq!(
            verify(SECRET, Some("other"), Some(&t), BODY),
            Err(SignatureError::ApiKey("abcd1234".into()))
        );
        assert_eq!(
            verify(b"another-secret", None, Some(&t), BODY),
            Err(SignatureError::Signature)
        );
        let other = BODY
            .to_vec()
            .into_iter()
            .map(|b| if b == b'1' { b'2' } else { b })
            .collect::<Vec<_>>();
        assert_eq!(
            verify(SECRET, None, Some(&t), &other),
            Err(SignatureError::PayloadHash)
        );
        assert_eq!(
            verify(SECRET, None, None, BODY),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(SECRET, None, Some("a.b"), BODY),
            Err(SignatureError::Malformed)
        );
        // Another algorithm, or none, is refused even when "signed" with the secret.
        for alg in ["none", "HS512", "RS256"] {
            let t = token(SECRET, alg, BODY);
            assert_eq!(
                verify(SECRET, None, Some(&t), BODY),
                Err(SignatureError::Algorithm),
                "{alg}"
            );
        }
        // A token whose claims were swapped for another message's.
        let other_token = token(SECRET, "HS256", b"{}");
        let mut parts: Vec<&str> = t.split('.').collect();
        parts[1] = other_token.split('.').nth(1).unwrap();
        assert_eq!(
            verify(SECRET, None, Some(&parts.join(".")), BODY),
            Err(SignatureError::Signature)
        );
    }

    #[test]
    fn the_message_fields_are_read_from_the_json() {
        let m = message(BODY).unwrap();
        assert_eq!(
            (
                m.channel.as_str(),
                m.message_uuid.as_str(),
                m.from.as_str(),
                m.to.as_str(),
                m.text.as_deref()
            ),
            (
                "sms",
                "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
                "447700900001",
                "447700900000",
                Some("STOP")
            )
        );
        assert!(message(br#"{"channel":"sms"}"#).is_err());
    }
}
