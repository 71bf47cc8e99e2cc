//! Bearer tokens: read from files at start and at each reload, compared in constant time.
//!
//! A token is kept only as its SHA-256 digest, and a presented token is hashed and
//! compared with every configured digest without stopping at the first match, so neither
//! the time an answer takes nor the order of the tokens in the config tells an attacker
//! how much of a guess was right. Token files are refused when others may read them or
//! the group may write them (a token readable by the service's group is accepted, as
//! OpenDKIM accepts its keys).

use crate::config::{ApiRights, ApiTokenSpec};
use crate::secret_file::{self, SecretFileError};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use subtle::ConstantTimeEq;

/// The shortest token accepted: 32 characters of the output of `openssl rand -hex 32`
/// (the README's way to make one) are 128 bits.
pub const MIN_TOKEN_CHARS: usize = 32;

/// A token file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error(transparent)]
    File(#[from] SecretFileError),
    #[error("API token files {0} and {1} hold the same token")]
    Duplicate(PathBuf, PathBuf),
}

/// Who called, once the token is verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's name, kept in the evidence of every change it makes.
    pub name: String,
    pub rights: ApiRights,
}

struct Token {
    digest: [u8; 32],
    caller: Caller,
}

/// The tokens in force.
pub struct Tokens(Vec<Token>);

impl Tokens {
    /// Reads every token file of `specs`.
    pub fn load(specs: &[ApiTokenSpec]) -> Result<Self, TokenFileError> {
        let mut tokens: Vec<Token> = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let digest = digest(read(spec)?.as_bytes());
            if let Some(j) = tokens.iter().position(|t| t.digest == digest) {
                return Err(TokenFileError::Duplicate(
                    specs[j].file.clone(),
                    specs[i].file.clone(),
                ));
            }
            tokens.push(Token {
                digest,
                caller: Caller {
                    name: spec.name.clone(),
                    rights: spec.rights,
                },
            });
        }
        Ok(Self(tokens))
    }

    /// The caller `presented` belongs to, if any; the time taken does not depend on which
    /// token matched or how much of it.
    pub fn verify(&self, presented: &str) -> Option<&Caller> {
        let presented = digest(presented.as_bytes());
        let mut found = None;
        for token in &self.0 {
            if bool::from(token.digest.ct_eq(&presented)) {
                found = Some(&token.caller);
            }
        }
        found
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The token in `spec`'s file, checked.
fn read(spec: &ApiTokenSpec) -> Result<String, TokenFileError> {
    Ok(secret_file::read(
        &spec.file,
        "API token",
        MIN_TOKEN_CHARS,
        " (make one with: openssl rand -hex 32)",
    )?)
}

pub use crate::web::bearer;

#[cfg(test)]
mod tests {
    use super::*;
    use std::{fs, os::unix::fs::PermissionsExt};

    fn spec(dir: &std::path::Path, name: &str, text: &str, mode: u32) -> ApiTokenSpec {
        let file = dir.join(name);
        fs::write(&file, text).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
        ApiTokenSpec {
            file,
            rights: ApiRights::Read,
            name: name.into(),
        }
    }

    #[test]
    fn tokens_verify_only_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let a = "a".repeat(40);
        let tokens = Tokens::load(&[
            spec(dir.path(), "a", &format!("{a}\n"), 0o600),
            spec(dir.path(), "b", &"b".repeat(32), 0o640),
        ])
        .unwrap();
        assert_eq!(tokens.verify(&a).map(|c| c.name.as_str()), Some("a"));
        assert_eq!(
            tokens.verify(&"b".repeat(32)).map(|c| c.name.as_str()),
            Some("b")
        );
        for wrong in ["", &a[..39], &format!("{a}a"), &"A".repeat(40)] {
            assert!(tokens.verify(wrong).is_none(), "{wrong:?}");
        }
    }

    #[test]
    fn loose_short_and_repeated_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = "x".repeat(32);
        for (mode, text, expect) in [
            (0o644, good.as_str(), "chmod 640"),
            (0o660, good.as_str(), "chmod 640"),
            (0o600, &good[..31], "at least 32"),
            (
                0o600,
                "has a space in it and is long enough to pass",
                "at least 32",
            ),
        ] {
            let error = Tokens::load(&[spec(dir.path(), "t", text, mode)])
                .err()
                .unwrap()
                .to_string();
            assert!(error.contains(expect), "{mode:o} {text:?}: {error}");
        }
        let twice = [
            spec(dir.path(), "one", &good, 0o600),
            spec(dir.path(), "two", &good, 0o600),
        ];
        assert!(matches!(
            Tokens::load(&twice),
            Err(TokenFileError::Duplicate(..))
        ));
    }
}
