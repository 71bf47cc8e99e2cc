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

use crate::{config::Config, intake::Intake, store::ConsentStore, unsubscribe::Unsubscribe};
use std::{future::Future, io, sync::Arc};
use tokio::sync::oneshot;

pub use listener::{Bound, BoundSocket, MilterListener, bind};

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
    /// The erasure key, when configured: erased addresses stay refused.
    pub erasure: Option<Arc<crate::consent::Erasure>>,
}

impl Milter {
    /// Assembles the milter; it takes unsubscribe mails itself, with `intake`, when
    /// `[intake] milter` says so.
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn ConsentStore>,
        unsubscribe: Option<Arc<Unsubscribe>>,
        intake: Option<Arc<Intake>>,
        erasure: Option<Arc<crate::consent::Erasure>>,
    ) -> Self {
        Self {
            config,
            store,
            unsubscribe,
            intake: intake.filter(|intake| intake.config.milter),
            erasure,
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

/// Serves the milter on `socket` on a thread of its own, with a single-threaded runtime,
/// until `shutdown` resolves; the receiver tells how it ended. The socket file of a
/// `unix:` socket is removed at the end.
///
/// Why a thread of its own: every milter command is a few microseconds of work between
/// two socket reads, and on a runtime with several workers most of the cost was waking
/// the other worker for each of them (futex and eventfd calls dominated the milter's
/// system calls under Postfix). One thread with its own event loop used about a third
/// less CPU per message through Postfix, and still answers far more transactions per
/// second than an MTA on the same machine sends.
pub fn spawn(
    socket: BoundSocket,
    milter: Arc<SharedMilter>,
    shutdown: impl Future + Send + 'static,
) -> io::Result<oneshot::Receiver<io::Result<()>>> {
    let (ended_tx, ended) = oneshot::channel();
    std::thread::Builder::new()
        .name("milter".into())
        .spawn(move || {
            let ended = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|runtime| {
                    runtime.block_on(async move {
                        let mut bound = socket.into_bound()?;
                        let unix = bound.unix.take();
                        let ended = run(bound, milter, shutdown).await;
                        if let Some(unix) = unix {
                            unix.remove();
                        }
                        ended
                    })
                });
            let _ = ended_tx.send(ended);
        })?;
    Ok(ended)
}
