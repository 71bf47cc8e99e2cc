//! `optout-milter serve`: open the store, bind the socket, serve until SIGTERM or SIGINT.

use crate::{
    config::Config,
    milter::{self, Milter},
    store::{self, StoreError},
    unsubscribe::Unsubscribe,
};
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

/// Why the daemon could not start or stopped on an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {socket}")]
    Bind {
        socket: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] crate::token::KeyError),
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    #[error("the milter stopped")]
    Milter(#[source] std::io::Error),
}

pub async fn run(config: Config) -> Result<(), ServeError> {
    let store = store::open(&config.store_url).await?;
    let socket = config.milter.socket.clone();
    let listener = milter::bind(&socket)
        .await
        .map_err(|source| ServeError::Bind {
            socket: socket.to_string(),
            source,
        })?;
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: shutting down"),
            _ = int.recv() => info!("SIGINT: shutting down"),
        }
    };
    info!(%socket, store = %store::redact(&config.store_url), "optout-milter serving");
    let unsubscribe = config
        .unsubscribe
        .clone()
        .map(Unsubscribe::load)
        .transpose()?
        .map(Arc::new);
    let milter = Arc::new(Milter {
        config: Arc::new(config),
        store,
        unsubscribe,
    });
    milter::run(listener, milter, shutdown)
        .await
        .map_err(ServeError::Milter)
}
