//! `optout-milter serve`: open the store, assemble and bind the daemon ([`crate::daemon`]),
//! and serve until SIGTERM or SIGINT. SIGHUP reloads the configuration.

use crate::{
    config::{Config, Overrides},
    daemon::{self, App, DaemonError, Listeners},
    store,
};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tracing::info;

pub async fn run(config: Config, overrides: Overrides, init: bool) -> Result<(), DaemonError> {
    let opened = match init {
        true => store::open_or_create(&config.store_url).await?,
        false => store::open(&config.store_url).await?,
    };
    let app = App::build(config, overrides, opened).await?;
    let listeners = Listeners::bind(app.config()).await?;

    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let (reload, reloads) = mpsc::channel(1);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            info!("SIGHUP");
            // A reload already waiting reads the same file: one is enough.
            let _ = reload.try_send(());
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: shutting down"),
            _ = int.recv() => info!("SIGINT: shutting down"),
        }
    };
    daemon::run(app, listeners, reloads, shutdown).await
}
