//! Unsubscribing through tokens, shared by the three places that need it: the milter mints
//! tokens for the headers, the web front and the mailto intake honour them.
//!
//! Honouring a token means: verify its MAC, ask the store whom its subject id stands for,
//! and record `n` for that address and list. An expired token is still honoured (the law
//! wants old links to work); it only may not undo an opt-out.

use crate::{
    config::UnsubscribeConfig,
    consent::{Address, Change, Channel, ConsentValue, Scope, Source},
    store::{ConsentStore, StoreError},
    token::{self, Claims, KeyError, Keyring, TokenCodec, TokenError},
};
use std::time::SystemTime;
use tracing::warn;

/// The unsubscribe settings with their loaded keys.
pub struct Unsubscribe {
    pub config: UnsubscribeConfig,
    pub codec: TokenCodec,
}

/// Whom a verified token is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub address: Address,
    pub scope: Scope,
    pub claims: Claims,
    pub expired: bool,
}

/// Why a token cannot be honoured.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the token's subject {0} is unknown to this store")]
    UnknownSubject(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Unsubscribe {
    /// Loads the keys of `config`, creating the first key file when the config asks for it.
    pub fn load(config: UnsubscribeConfig) -> Result<Self, KeyError> {
        let signing = config.keys.first().filter(|_| config.generate_missing_key);
        if let Some(first) = signing.filter(|k| !k.file.exists()) {
            token::keys::generate(&first.file)?;
            warn!(file = %first.file.display(), "created a new token key; copy it to every node that verifies tokens");
        }
        let codec = TokenCodec::new(Keyring::load(&config.keys)?, config.token_lifetime);
        Ok(Self { config, codec })
    }

    /// Verifies `token` and finds whom it is for.
    pub async fn resolve(
        &self,
        store: &dyn ConsentStore,
        token: &str,
        now: SystemTime,
    ) -> Result<Target, ResolveError> {
        let verified = self.codec.verify(token, now)?;
        let subject = verified.claims.subject;
        let (address, scope) = store
            .subject(subject)
            .await?
            .ok_or(ResolveError::UnknownSubject(subject))?;
        Ok(Target {
            address,
            scope,
            claims: verified.claims,
            expired: verified.expired,
        })
    }
}

impl Target {
    /// The change that records this target's opt-out (or, with `y`, its return).
    pub fn change(
        &self,
        value: ConsentValue,
        source: Source,
        evidence: String,
        at: SystemTime,
    ) -> Change {
        Change {
            address: self.address.clone(),
            channel: Channel::Email,
            scope: self.scope.clone(),
            value,
            source,
            at,
            evidence,
        }
    }
}
