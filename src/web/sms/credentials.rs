//! The providers' credentials, read from their files ([`crate::secret_file`]) at start
//! and at each reload. The generic endpoint's secret is kept only as its SHA-256,
//! compared in constant time.

use crate::config::SmsConfig;
use crate::secret_file::{SecretFileError, read};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The credentials of the configured providers.
pub struct Credentials {
    pub twilio_auth_token: Option<Vec<u8>>,
    pub vonage_signature_secret: Option<Vec<u8>>,
    generic_digest: Option<[u8; 32]>,
}

impl Credentials {
    /// Reads the files `config` names.
    pub fn load(config: &SmsConfig) -> Result<Self, SecretFileError> {
        Ok(Self {
            // Twilio's auth tokens are 32 hex digits.
            twilio_auth_token: config
                .twilio
                .as_ref()
                .map(|t| read(&t.auth_token_file, "Twilio auth token", 32, ""))
                .transpose()?
                .map(String::into_bytes),
            vonage_signature_secret: config
                .vonage
                .as_ref()
                .map(|v| read(&v.signature_secret_file, "Vonage signature secret", 16, ""))
                .transpose()?
                .map(String::into_bytes),
            generic_digest: config
                .generic_secret_file
                .as_ref()
                .map(|path| {
                    read(
                        path,
                        "SMS shared secret",
                        32,
                        " (make one with: openssl rand -hex 32)",
                    )
                })
                .transpose()?
                .map(|secret| Sha256::digest(secret.as_bytes()).into()),
        })
    }

    /// Whether `presented` is the generic endpoint's secret, in constant time.
    pub fn generic_secret_matches(&self, presented: &str) -> bool {
        self.generic_digest.is_some_and(|digest| {
            let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
            bool::from(digest.ct_eq(&presented))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TwilioConfig;
    use std::{fs, os::unix::fs::PermissionsExt, path::Path};

    fn config(dir: &Path, text: &str, mode: u32) -> SmsConfig {
        let path = dir.join("secret");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        SmsConfig {
            policy: crate::sms::SmsPolicy {
                language: "en".into(),
                numbers: Default::default(),
                keywords: Default::default(),
                replies: Default::default(),
            },
            twilio: Some(TwilioConfig {
                auth_token_file: path.clone(),
                url: "https://u.example.com/sms/twilio".into(),
            }),
            vonage: None,
            generic_secret_file: Some(path),
        }
    }

    #[test]
    fn secrets_are_read_and_bad_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let token = "0123456789abcdef0123456789abcdef";
        let c = Credentials::load(&config(dir.path(), &format!("{token}\n"), 0o640)).unwrap();
        assert_eq!(c.twilio_auth_token.as_deref(), Some(token.as_bytes()));
        assert!(c.generic_secret_matches(token));
        assert!(!c.generic_secret_matches("0123456789abcdef0123456789abcdeF"));
        for (text, mode, expect) in [
            (token, 0o644, "chmod 640"),
            (token, 0o660, "chmod 640"),
            ("short", 0o600, "at least 32"),
            (
                "has a space inside it, 32 characters long",
                0o600,
                "visible",
            ),
        ] {
            let error = Credentials::load(&config(dir.path(), text, mode))
                .err()
                .unwrap()
                .to_string();
            assert!(
                error.contains(expect) && error.contains("Twilio auth token"),
                "{error}"
            );
        }
    }
}
