//! Signing as the Standard Webhooks specification describes it, so that a receiver can
//! verify our events with that specification's libraries (Svix's among them): the secret
//! is `whsec_` and the base64 of 24 to 64 random bytes; the signature header is `v1,` and
//! the base64 of HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::path::PathBuf;

/// The secret's prefix in the specification's format.
const PREFIX: &str = "whsec_";
const MIN_BYTES: usize = 24;
const MAX_BYTES: usize = 64;

/// A secret file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    File(#[from] crate::secret_file::SecretFileError),
    #[error(
        "webhook secret file {path} does not hold whsec_ and the base64 of {MIN_BYTES} to {MAX_BYTES} bytes (make one with: printf 'whsec_%s\\n' \"$(openssl rand -base64 32)\" > FILE)"
    )]
    Malformed { path: PathBuf },
}

/// A webhook's signing key.
pub struct Secret(Vec<u8>);

impl Secret {
    /// Reads the secret in `path` ([`crate::secret_file`]: like token files, it may be
    /// readable by the service's group).
    pub fn load(path: &std::path::Path) -> Result<Self, SecretError> {
        let text = crate::secret_file::read(path, "webhook secret", 1, "")?;
        Self::parse(&text).ok_or_else(|| SecretError::Malformed {
            path: path.to_owned(),
        })
    }

    /// The secret written as `whsec_BASE64` (the prefix may be left out).
    pub fn parse(text: &str) -> Option<Self> {
        let encoded = text.strip_prefix(PREFIX).unwrap_or(text);
        let bytes = STANDARD.decode(encoded).ok()?;
        (MIN_BYTES..=MAX_BYTES)
            .contains(&bytes.len())
            .then_some(Self(bytes))
    }

    /// The `webhook-signature` header value for one attempt.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specifications_test_vector_is_reproduced() {
        // The vector of the Standard Webhooks reference libraries.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            secret.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn short_long_and_garbled_secrets_are_refused() {
        assert!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_some());
        assert!(Secret::parse(&format!("whsec_{}", STANDARD.encode([7u8; 23]))).is_none());
        assert!(Secret::parse(&format!("whsec_{}", STANDARD.encode([7u8; 65]))).is_none());
        assert!(Secret::parse("whsec_not base64!").is_none());
    }
}
