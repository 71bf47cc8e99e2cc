//! The milter: the MTA's view of optout-milter.
//!
//! [`listener`] binds the socket, [`callbacks`] adapts indymilter's callbacks to
//! [`session`], which holds the per-connection state and makes every decision through the
//! consent domain and the store. Nothing outside this module knows the milter protocol.

pub mod callbacks;
pub mod listener;
pub mod session;

use crate::{
    config::{Config, UnsubscribeConfig},
    store::ConsentStore,
    token::{self, KeyError, Keyring, TokenCodec},
};
use std::{future::Future, io, sync::Arc};
use tracing::warn;

pub use listener::{MilterListener, bind};

/// What every milter connection shares: the validated config, the store, and the token
/// codec when unsubscribe headers are configured.
pub struct Milter {
    pub config: Arc<Config>,
    pub store: Arc<dyn ConsentStore>,
    pub unsubscribe: Option<Unsubscribe>,
}

/// Everything needed to give a message its unsubscribe headers.
pub struct Unsubscribe {
    pub config: UnsubscribeConfig,
    pub codec: TokenCodec,
}

impl Milter {
    /// Assembles the milter, loading the token keys (and creating the first one when the
    /// config asks for it).
    pub fn new(config: Arc<Config>, store: Arc<dyn ConsentStore>) -> Result<Self, KeyError> {
        let unsubscribe = config
            .unsubscribe
            .clone()
            .map(load_unsubscribe)
            .transpose()?;
        Ok(Self {
            config,
            store,
            unsubscribe,
        })
    }
}

/// Loads the keyring of `config`.
pub fn load_unsubscribe(config: UnsubscribeConfig) -> Result<Unsubscribe, KeyError> {
    let signing = config.keys.first().filter(|_| config.generate_missing_key);
    if let Some(first) = signing.filter(|k| !k.file.exists()) {
        token::keys::generate(&first.file)?;
        warn!(file = %first.file.display(), "created a new token key; copy it to every node that verifies tokens");
    }
    let codec = TokenCodec::new(Keyring::load(&config.keys)?, config.token_lifetime);
    Ok(Unsubscribe { config, codec })
}

/// Serves milter connections on `listener` until `shutdown` resolves, then waits for the
/// open sessions to end.
pub async fn run(
    listener: MilterListener,
    milter: Arc<Milter>,
    shutdown: impl Future,
) -> io::Result<()> {
    let config = indymilter::Config {
        max_connections: milter.config.milter.max_connections,
        ..Default::default()
    };
    indymilter::run(listener, callbacks::build(milter), config, shutdown).await
}
