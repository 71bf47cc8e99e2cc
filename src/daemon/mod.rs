//! The daemon: [`App`] assembles it, [`Listeners`] binds its sockets, [`run`] serves them
//! until told to stop. `optout-milter serve` is these three calls and its signal handlers;
//! the tests and benches make the same calls, so they run the production stack.
//!
//! If any server fails, all stop and the first error is returned. A reload request reads
//! the config file again (see [`crate::config::reload`] for what may change); a config
//! that does not load leaves the running one. At shutdown every listener stops accepting,
//! work in flight gets a bounded time to finish, and the Unix sockets are removed.

mod app;
mod listeners;
mod notify;

pub use app::{App, load_erasure};
pub use listeners::Listeners;

use crate::{
    config::ConfigError,
    lmtp, milter,
    store::{self, ConsentStore, StoreError},
    web,
};
use std::{future::Future, io, pin::Pin, sync::Arc};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

/// Why the daemon could not start or stopped on an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {socket}")]
    Bind {
        socket: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Key(#[from] crate::token::KeyError),
    #[error("cannot load a TLS certificate and key")]
    Tls(#[source] io::Error),
    #[error(transparent)]
    ApiToken(#[from] crate::api::TokenFileError),
    #[error(transparent)]
    Webhook(#[from] crate::webhooks::WebhookError),
    #[error("cannot load the web pages")]
    Pages(#[from] crate::web::pages::PagesError),
    #[error(transparent)]
    SecretFile(#[from] crate::secret_file::SecretFileError),
    #[error("the admin API stopped")]
    Api(#[source] io::Error),
    #[error("cannot install signal handlers")]
    Signals(#[source] io::Error),
    #[error("the milter stopped")]
    Milter(#[source] io::Error),
    #[error("the web front stopped")]
    Web(#[source] io::Error),
    #[error("the LMTP intake stopped")]
    Lmtp(#[source] io::Error),
}

impl DaemonError {
    /// Whether starting again cannot help until a person mends something: the config, a
    /// key or certificate file, or the store (see [`StoreError::needs_an_operator`]). A
    /// socket in use, or a database that is down, may clear by itself.
    pub fn needs_an_operator(&self) -> bool {
        match self {
            DaemonError::Config(_)
            | DaemonError::Key(_)
            | DaemonError::Tls(_)
            | DaemonError::ApiToken(_)
            | DaemonError::Webhook(crate::webhooks::WebhookError::Secret(_))
            | DaemonError::Pages(_)
            | DaemonError::SecretFile(_) => true,
            DaemonError::Store(e)
            | DaemonError::Webhook(crate::webhooks::WebhookError::Cursor(_, e)) => {
                e.needs_an_operator()
            }
            DaemonError::Bind { .. }
            | DaemonError::Api(_)
            | DaemonError::Signals(_)
            | DaemonError::Milter(_)
            | DaemonError::Web(_)
            | DaemonError::Lmtp(_) => false,
        }
    }
}

type Server = Pin<Box<dyn Future<Output = Result<(), DaemonError>> + Send>>;

/// Serves `app` on `listeners` until `shutdown` resolves or a server fails. Each message
/// on `reload` reloads the configuration from its file.
pub async fn run(
    mut app: App,
    listeners: Listeners,
    mut reload: mpsc::Receiver<()>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let config = app.config().clone();
    let mut servers: Vec<Server> = Vec::new();
    if let (Some(listener), Some(front)) = (listeners.web, app.web()) {
        info!(listen = ?listener.local_addr().ok(), tls = app.tls().is_some(), "web front listening");
        let server = web::serve(
            listener,
            app.tls().cloned(),
            front.clone(),
            until_stopped(stopped.clone()),
        );
        servers.push(Box::pin(
            async move { server.await.map_err(DaemonError::Web) },
        ));
    }
    if let (Some(listener), Some(intake)) = (listeners.lmtp, app.intake()) {
        let socket = config.intake.as_ref().and_then(|i| i.lmtp.as_ref());
        info!(socket = ?socket.map(ToString::to_string), "LMTP intake listening");
        let server = lmtp::run(listener, intake.clone(), until_stopped(stopped.clone()));
        servers.push(Box::pin(
            async move { server.await.map_err(DaemonError::Lmtp) },
        ));
    }
    if let (Some(listener), Some(front)) = (listeners.api, app.api()) {
        info!(listen = ?listener.local_addr().ok(), tls = app.api_tls().is_some(), "admin API listening");
        let server = crate::api::serve(
            listener,
            app.api_tls().cloned(),
            front.clone(),
            until_stopped(stopped.clone()),
        );
        servers.push(Box::pin(
            async move { server.await.map_err(DaemonError::Api) },
        ));
    }
    if let Some(listener) = listeners.metrics {
        info!(listen = ?listener.local_addr().ok(), "metrics listening");
        let server = web::serve_metrics(listener, until_stopped(stopped.clone()));
        servers.push(Box::pin(
            async move { server.await.map_err(DaemonError::Web) },
        ));
    }
    let socket = &config.milter.socket;
    let ended = milter::spawn(
        listeners.milter,
        app.milter().clone(),
        until_stopped(stopped.clone()),
    )
    .map_err(DaemonError::Milter)?;
    info!(%socket, "milter listening");
    info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %config.path.display(),
        store = %store::redact(&config.store_url),
        milter = %socket,
        web = ?config.web.as_ref().map(|w| w.listen),
        lmtp = ?config.intake.as_ref().and_then(|i| i.lmtp.as_ref()).map(ToString::to_string),
        metrics = ?config.metrics,
        api = ?config.api.as_ref().map(|a| a.listen),
        webhooks = config.webhooks.len(),
        "optout-milter started"
    );
    notify::notify("READY=1\nSTATUS=serving");
    servers.push(Box::pin(async move {
        ended
            .await
            .unwrap_or_else(|_| Err(io::Error::other("the milter thread ended")))
            .map_err(DaemonError::Milter)
    }));
    servers.push(Box::pin(watch_store(
        app.store().clone(),
        until_stopped(stopped.clone()),
    )));
    let webhooks = app.take_webhooks();
    if !webhooks.is_empty() {
        let deliveries = crate::webhooks::run(
            app.store().clone(),
            webhooks,
            until_stopped(stopped.clone()),
        );
        servers.push(Box::pin(async move {
            deliveries.await;
            Ok(())
        }));
    }

    let all = run_all(servers);
    tokio::pin!(all, shutdown);
    let mut reloads_open = true;
    loop {
        tokio::select! {
            request = reload.recv(), if reloads_open => match request {
                Some(()) => {
                    notify::notify("RELOADING=1");
                    reload_logged(&mut app);
                    notify::notify("READY=1\nSTATUS=serving");
                }
                None => reloads_open = false,
            },
            () = &mut shutdown => break,
            result = &mut all => return result,
        }
    }
    notify::notify("STOPPING=1");
    let _ = stop.send(true);
    let result = all.await;
    info!("stopped");
    result
}

/// Reloads `app`, logging what changed, or why nothing did.
fn reload_logged(app: &mut App) {
    let path = app.config().path.clone();
    info!(config = %path.display(), "reloading the configuration");
    match app.reload() {
        Ok(changes) => {
            for key in &changes.need_restart {
                warn!(
                    key,
                    "changed, but takes effect only after a restart; the running value stays"
                );
            }
            info!(applied = ?changes.applied, "configuration reloaded");
        }
        Err(error) => {
            error!(error = %crate::error_chain(&error), "reload failed; the running configuration stays");
        }
    }
}

/// How often the store's file is checked while nothing is written.
const STORE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Ends with an error once the store can no longer be trusted (its file was deleted or
/// replaced), which stops the daemon: it must not acknowledge opt-outs it cannot keep,
/// and the exit status tells the supervisor. Writes notice it at once; this notices it
/// within [`STORE_CHECK`] when nothing is written.
async fn watch_store(
    store: Arc<dyn ConsentStore>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let mut ticks = tokio::time::interval(STORE_CHECK);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            _ = ticks.tick() => {}
        }
        if let Err(error) = store.check() {
            error!(error = %crate::error_chain(&error), "stopping: the store is lost");
            return Err(error.into());
        }
    }
}

/// Runs every server; when the first one ends (by error, or by shutdown) the others are
/// told to stop, and the first error wins.
async fn run_all(servers: Vec<Server>) -> Result<(), DaemonError> {
    let mut set = tokio::task::JoinSet::new();
    for server in servers {
        set.spawn(server);
    }
    let mut first_error = None;
    while let Some(joined) = set.join_next().await {
        let result = joined.unwrap_or_else(|e| Err(DaemonError::Milter(io::Error::other(e))));
        if let Err(e) = result {
            first_error.get_or_insert(e);
            set.abort_all();
        }
    }
    first_error.map_or(Ok(()), Err)
}
