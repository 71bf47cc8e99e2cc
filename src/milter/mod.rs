//! The milter: the MTA's view of optout-milter.
//!
//! [`listener`] binds the socket, [`callbacks`] adapts indymilter's callbacks to
//! [`session`], which holds the per-connection state and makes every decision through the
//! consent domain and the store. Nothing outside this module knows the milter protocol.

pub mod callbacks;
pub mod drain;
pub mod guard;
pub mod listener;
pub mod session;

use crate::{
    config::Config, intake::Intake, socket::SocketSpec, store::ConsentStore,
    unsubscribe::Unsubscribe,
};
use std::{future::Future, io, sync::Arc};
use tokio::sync::oneshot;

pub use listener::{Bound, MilterListener, bind};

/// The milter's settings as they are now: a reload swaps them; each connection keeps the
/// snapshot it began with.
pub type SharedMilter = arc_swap::ArcSwap<Milter>;

/// What every milter connection shares: the validated config, the store, and the token
/// codec when unsubscribe headers are configured.
pub struct Milter {
    pub config: Arc<Config>,
    pub store: Arc<dyn ConsentStore>,
    pub unsubscribe: Option<Arc<Unsubscribe>>,
    /// Set when the milter takes unsubscribe mails itself (`[intake] milter = true`).
    pub intake: Option<Arc<Intake>>,
}

impl Milter {
    /// Assembles the milter; it takes unsubscribe mails itself when `[intake] milter` says so.
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn ConsentStore>,
        unsubscribe: Option<Arc<Unsubscribe>>,
    ) -> Self {
        let intake = match (&config.intake, &unsubscribe) {
            (Some(intake), Some(unsubscribe)) if intake.milter => Some(Arc::new(Intake::new(
                intake.clone(),
                store.clone(),
                unsubscribe.clone(),
                config.addresses.clone(),
            ))),
            _ => None,
        };
        Self {
            config,
            store,
            unsubscribe,
            intake,
        }
    }
}

/// Serves milter connections on `bound` until `shutdown` resolves; then stops accepting,
/// lets transactions in flight finish (within [`drain::DRAIN`]), and ends the sessions.
pub async fn run(bound: Bound, milter: Arc<SharedMilter>, shutdown: impl Future) -> io::Result<()> {
    let config = indymilter::Config {
        max_connections: milter.load().config.milter.max_connections,
        connection_timeout: milter.load().config.milter.idle_timeout,
        ..Default::default()
    };
    let activity = Arc::new(drain::Activity::default());
    let closing = bound.closing;
    let drained = activity.clone();
    let graceful = async move {
        shutdown.await;
        closing.close();
        drained.drained().await;
    };
    let callbacks = callbacks::build(milter, activity);
    indymilter::run(bound.listener, callbacks, config, graceful).await
}

/// Binds `socket` and serves the milter on a thread of its own, with a single-threaded
/// runtime, until `shutdown` resolves. Returns once the socket is bound (or could not be),
/// with a receiver for how the milter ended.
///
/// Why a thread of its own: every milter command is a few microseconds of work between
/// two socket reads, and on a runtime with several workers most of the cost was waking
/// the other worker for each of them (futex and eventfd calls dominated the milter's
/// system calls under Postfix). One thread with its own event loop used about a third
/// less CPU per message through Postfix, and still answers far more transactions per
/// second than an MTA on the same machine sends.
pub async fn spawn(
    socket: SocketSpec,
    milter: Arc<SharedMilter>,
    shutdown: impl Future + Send + 'static,
) -> io::Result<oneshot::Receiver<io::Result<()>>> {
    let (bound_tx, bound) = oneshot::channel();
    let (ended_tx, ended) = oneshot::channel();
    std::thread::Builder::new()
        .name("milter".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = bound_tx.send(Err(error));
                    return;
                }
            };
            runtime.block_on(async move {
                let permissions = milter.load().config.milter.socket_permissions;
                match bind(&socket, permissions).await {
                    Ok(mut bound) => {
                        let _ = bound_tx.send(Ok(()));
                        let unix = bound.unix.take();
                        let ended = run(bound, milter, shutdown).await;
                        if let Some(unix) = unix {
                            unix.remove();
                        }
                        let _ = ended_tx.send(ended);
                    }
                    Err(error) => {
                        let _ = bound_tx.send(Err(error));
                    }
                }
            });
        })?;
    bound
        .await
        .map_err(|_| io::Error::other("the milter thread ended before binding"))??;
    Ok(ended)
}
