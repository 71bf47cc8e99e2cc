//! `optout-milter serve`: open the store, bind the milter socket (and the web front and the
//! LMTP intake when configured), serve until SIGTERM or SIGINT, then let open work finish.
//! If any server fails, all stop and the error is reported.

use crate::{
    config::Config,
    intake::Intake,
    lmtp,
    milter::{self, Milter},
    store::{self, StoreError},
    unsubscribe::Unsubscribe,
    web::{self, WebState},
};
use std::{future::Future, io, pin::Pin, sync::Arc};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
};
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
        source: io::Error,
    },
    #[error(transparent)]
    Key(#[from] crate::token::KeyError),
    #[error("cannot load the web front's TLS certificate and key")]
    Tls(#[source] io::Error),
    #[error("cannot install signal handlers")]
    Signals(#[source] io::Error),
    #[error("the milter stopped")]
    Milter(#[source] io::Error),
    #[error("the web front stopped")]
    Web(#[source] io::Error),
    #[error("the LMTP intake stopped")]
    Lmtp(#[source] io::Error),
}

type Server = Pin<Box<dyn Future<Output = Result<(), ServeError>> + Send>>;

pub async fn run(config: Config, init: bool) -> Result<(), ServeError> {
    for warning in config.warnings() {
        tracing::warn!(config = %config.path.display(), "{warning}");
    }
    let store_url = config.store_url.clone();
    let opened = match init {
        true => store::open_or_create(&config.store_url).await?,
        false => store::open(&config.store_url).await?,
    };
    let store: Arc<dyn store::ConsentStore> = store::index::IndexedStore::wrap(opened).await?;
    let unsubscribe = config
        .unsubscribe
        .clone()
        .map(Unsubscribe::load)
        .transpose()?
        .map(Arc::new);
    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut servers: Vec<Server> = Vec::new();

    if let (Some(web), Some(unsubscribe)) = (&config.web, &unsubscribe) {
        let tls = web::tls(web).map_err(ServeError::Tls)?;
        let listener =
            std::net::TcpListener::bind(web.listen).map_err(|source| ServeError::Bind {
                socket: web.listen.to_string(),
                source,
            })?;
        let state = Arc::new(WebState::new(
            web.clone(),
            store.clone(),
            unsubscribe.clone(),
        ));
        info!(listen = %web.listen, tls = tls.is_some(), "web front listening");
        let server = web::serve(listener, tls, state, until_stopped(stopped.clone()));
        servers.push(Box::pin(
            async move { server.await.map_err(ServeError::Web) },
        ));
    }

    if let (Some(intake), Some(unsubscribe)) = (&config.intake, &unsubscribe)
        && let Some(socket) = &intake.lmtp
    {
        let listener = lmtp::Listener::bind(socket)
            .await
            .map_err(|source| ServeError::Bind {
                socket: socket.to_string(),
                source,
            })?;
        let intake = Arc::new(Intake::new(
            intake.clone(),
            store.clone(),
            unsubscribe.clone(),
            config.addresses.clone(),
        ));
        info!(%socket, "LMTP intake listening");
        let server = lmtp::run(listener, intake, until_stopped(stopped.clone()));
        servers.push(Box::pin(
            async move { server.await.map_err(ServeError::Lmtp) },
        ));
    }

    let socket = config.milter.socket.clone();
    let milter = Arc::new(Milter::new(Arc::new(config), store.clone(), unsubscribe));
    let ended = milter::spawn(socket.clone(), milter, until_stopped(stopped.clone()))
        .await
        .map_err(|source| ServeError::Bind {
            socket: socket.to_string(),
            source,
        })?;
    info!(%socket, store = %store::redact(&store_url), "milter listening");
    servers.push(Box::pin(async move {
        ended
            .await
            .unwrap_or_else(|_| Err(io::Error::other("the milter thread ended")))
            .map_err(ServeError::Milter)
    }));

    servers.push(Box::pin(watch_store(
        store.clone(),
        until_stopped(stopped.clone()),
    )));

    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    let signals = async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: shutting down"),
            _ = int.recv() => info!("SIGINT: shutting down"),
        }
    };
    let all = run_all(servers);
    tokio::pin!(all);
    tokio::select! {
        () = signals => {
            let _ = stop.send(true);
            all.await
        }
        result = &mut all => result,
    }
}

/// How often the store's file is checked while nothing is written.
const STORE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Ends with an error once the store can no longer be trusted (its file was deleted or
/// replaced), which stops the daemon: it must not acknowledge opt-outs it cannot keep,
/// and the exit status tells the supervisor. Writes notice it at once; this notices it
/// within [`STORE_CHECK`] when nothing is written.
async fn watch_store(
    store: Arc<dyn store::ConsentStore>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let mut ticks = tokio::time::interval(STORE_CHECK);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            _ = ticks.tick() => {}
        }
        if let Err(error) = store.check() {
            tracing::error!(%error, "stopping: the store is lost");
            return Err(error.into());
        }
    }
}

/// Runs every server; when the first one ends (by error, or by shutdown) the others are
/// told to stop, and the first error wins.
async fn run_all(servers: Vec<Server>) -> Result<(), ServeError> {
    let mut set = tokio::task::JoinSet::new();
    for server in servers {
        set.spawn(server);
    }
    let mut first_error = None;
    while let Some(joined) = set.join_next().await {
        let result = joined.unwrap_or_else(|e| Err(ServeError::Milter(io::Error::other(e))));
        if let Err(e) = result {
            first_error.get_or_insert(e);
            set.abort_all();
        }
    }
    first_error.map_or(Ok(()), Err)
}
