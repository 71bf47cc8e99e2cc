//! `optout-milter serve`: open the store, bind the milter socket (and the web front and the
//! LMTP intake when configured), serve until SIGTERM or SIGINT, then let open work finish.
//! If any server fails, all stop and the error is reported. SIGHUP reloads the config
//! ([`reload`] says what may change); a config that does not load leaves the running one.

use crate::{
    config::{Config, ConfigError, Overrides, reload},
    intake::Intake,
    lmtp,
    milter::{self, Milter, SharedMilter},
    store::{self, StoreError},
    unsubscribe::Unsubscribe,
    web::{self, WebFront, WebState},
};
use std::{future::Future, io, pin::Pin, sync::Arc};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
};
use tracing::{error, info, warn};

/// Why the daemon could not start or stopped on an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
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

/// What a reload swaps: the shared settings of each running server.
struct Running {
    config: Arc<Config>,
    overrides: Overrides,
    store: Arc<dyn store::ConsentStore>,
    milter: Arc<SharedMilter>,
    web: Option<Arc<WebFront>>,
    lmtp: Option<Arc<lmtp::SharedIntake>>,
}

pub async fn run(config: Config, overrides: Overrides, init: bool) -> Result<(), ServeError> {
    for warning in config.warnings() {
        tracing::warn!(config = %config.path.display(), "{warning}");
    }
    let store_url = config.store_url.clone();
    let opened = match init {
        true => store::open_or_create(&config.store_url).await?,
        false => store::open(&config.store_url).await?,
    };
    let store: Arc<dyn store::ConsentStore> = store::index::IndexedStore::wrap(opened).await?;
    let config = Arc::new(config);
    let unsubscribe = load_unsubscribe(&config)?;
    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut servers: Vec<Server> = Vec::new();
    let mut running = Running {
        config: config.clone(),
        overrides,
        store: store.clone(),
        milter: Arc::new(SharedMilter::from_pointee(Milter::new(
            config.clone(),
            store.clone(),
            unsubscribe.clone(),
        ))),
        web: None,
        lmtp: None,
    };

    if let (Some(web), Some(unsubscribe)) = (&config.web, &unsubscribe) {
        let tls = web::tls(web).map_err(ServeError::Tls)?;
        let listener =
            std::net::TcpListener::bind(web.listen).map_err(|source| ServeError::Bind {
                socket: web.listen.to_string(),
                source,
            })?;
        let front = Arc::new(WebFront::new(WebState::new(
            web.clone(),
            store.clone(),
            unsubscribe.clone(),
        )));
        running.web = Some(front.clone());
        info!(listen = %web.listen, tls = tls.is_some(), "web front listening");
        let server = web::serve(listener, tls, front, until_stopped(stopped.clone()));
        servers.push(Box::pin(
            async move { server.await.map_err(ServeError::Web) },
        ));
    }

    if let (Some(intake), Some(unsubscribe)) = (&config.intake, &unsubscribe)
        && let Some(socket) = &intake.lmtp
    {
        let listener = lmtp::Listener::bind(socket, intake.lmtp_permissions)
            .await
            .map_err(|source| ServeError::Bind {
                socket: socket.to_string(),
                source,
            })?;
        let intake = Arc::new(lmtp::SharedIntake::from_pointee(Intake::new(
            intake.clone(),
            store.clone(),
            unsubscribe.clone(),
            config.addresses.clone(),
        )));
        running.lmtp = Some(intake.clone());
        info!(%socket, "LMTP intake listening");
        let server = lmtp::run(listener, intake, until_stopped(stopped.clone()));
        servers.push(Box::pin(
            async move { server.await.map_err(ServeError::Lmtp) },
        ));
    }

    if let Some(listen) = config.metrics {
        let listener = std::net::TcpListener::bind(listen).map_err(|source| ServeError::Bind {
            socket: listen.to_string(),
            source,
        })?;
        info!(%listen, "metrics listening");
        let server = web::serve_metrics(listener, until_stopped(stopped.clone()));
        servers.push(Box::pin(
            async move { server.await.map_err(ServeError::Web) },
        ));
    }

    let socket = config.milter.socket.clone();
    let ended = milter::spawn(
        socket.clone(),
        running.milter.clone(),
        until_stopped(stopped.clone()),
    )
    .await
    .map_err(|source| ServeError::Bind {
        socket: socket.to_string(),
        source,
    })?;
    info!(%socket, "milter listening");
    info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %config.path.display(),
        store = %store::redact(&store_url),
        milter = %socket,
        web = ?config.web.as_ref().map(|w| w.listen),
        lmtp = ?config.intake.as_ref().and_then(|i| i.lmtp.as_ref()).map(ToString::to_string),
        metrics = ?config.metrics,
        "optout-milter started"
    );
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
    let mut hup = signal(SignalKind::hangup()).map_err(ServeError::Signals)?;
    let all = run_all(servers);
    tokio::pin!(all);
    loop {
        tokio::select! {
            _ = hup.recv() => running.reload(),
            _ = term.recv() => {
                info!("SIGTERM: shutting down");
                break;
            }
            _ = int.recv() => {
                info!("SIGINT: shutting down");
                break;
            }
            result = &mut all => return result,
        }
    }
    let _ = stop.send(true);
    let result = all.await;
    info!("stopped");
    result
}

/// The token keys of `config`, loaded (and the first created, if the config says so).
fn load_unsubscribe(config: &Config) -> Result<Option<Arc<Unsubscribe>>, ServeError> {
    Ok(config
        .unsubscribe
        .clone()
        .map(Unsubscribe::load)
        .transpose()?
        .map(Arc::new))
}

impl Running {
    /// SIGHUP: reads the config file again; when it is valid (keys included), swaps it in
    /// for the next connection and request, else logs why and keeps the running one.
    fn reload(&mut self) {
        let path = self.config.path.clone();
        info!(config = %path.display(), "SIGHUP: reloading the configuration");
        let loaded = Config::load(&path, &self.overrides)
            .map_err(ServeError::from)
            .and_then(|new| {
                let (new, changes) = reload::reconcile(&self.config, new);
                Ok((load_unsubscribe(&new)?, new, changes))
            });
        let (unsubscribe, new, changes) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                error!(error = %crate::error_chain(&error), "reload failed; the running configuration stays");
                return;
            }
        };
        let new = Arc::new(new);
        self.milter.store(Arc::new(Milter::new(
            new.clone(),
            self.store.clone(),
            unsubscribe.clone(),
        )));
        if let (Some(front), Some(web), Some(u)) = (&self.web, &new.web, &unsubscribe) {
            front.reload(web.clone(), u.clone());
        }
        if let (Some(lmtp), Some(intake), Some(u)) = (&self.lmtp, &new.intake, &unsubscribe) {
            lmtp.store(Arc::new(Intake::new(
                intake.clone(),
                self.store.clone(),
                u.clone(),
                new.addresses.clone(),
            )));
        }
        for key in &changes.need_restart {
            warn!(
                key,
                "changed, but takes effect only after a restart; the running value stays"
            );
        }
        for warning in new.warnings() {
            warn!(config = %path.display(), "{warning}");
        }
        info!(applied = ?changes.applied, "configuration reloaded");
        self.config = new;
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
            tracing::error!(error = %crate::error_chain(&error), "stopping: the store is lost");
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
