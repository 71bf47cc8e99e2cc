//! An LMTP server for unsubscribe mails: the long-running way in for the `mailto:` address.
//!
//! `ingest` starts a process, opens the store and commits alone for every mail; on two
//! cores that tops out at a few hundred mails a second. Postfix (and Sendmail) can instead
//! deliver to an LMTP server (RFC 2033) and keep the connections open. Here each mail goes
//! to the same [`Intake`] as the milter and `ingest` use, its opt-out joins the store's
//! group commit, and the per-recipient reply after the data is 250 only once the opt-out
//! is on disk, 451 when the store failed (the MTA keeps the mail and retries) and 554 when
//! the message is not mail at all.
//!
//! Only the unsubscribe address is accepted as a recipient. Nothing is delivered anywhere:
//! the mail is read, acted on and dropped, like `ingest` does.

mod session;

/// The parser of command lines, public for the fuzz targets.
pub use session::{Command, parse as parse_command};

use crate::{
    intake::Intake,
    socket::{SocketSpec, UnixPermissions, UnixSocket},
};
use std::{
    future::Future,
    io,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::{
    net::{TcpListener, UnixListener},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tracing::{Instrument, debug, warn};

/// The intake as it is now: a reload swaps it.
pub type SharedIntake = arc_swap::ArcSwap<Intake>;

/// A bound LMTP socket.
pub enum Listener {
    Tcp(TcpListener),
    /// With the handle that removes the socket file when the server ends.
    Unix(UnixListener, UnixSocket),
}

impl Listener {
    /// Binds `spec`, replacing a stale Unix socket file and giving a new one `permissions`.
    pub async fn bind(spec: &SocketSpec, permissions: UnixPermissions) -> io::Result<Self> {
        match spec {
            SocketSpec::Inet(addr) => Ok(Self::Tcp(TcpListener::bind(addr).await?)),
            SocketSpec::Unix(path) => {
                let (listener, socket) = crate::socket::bind_unix_with(path, permissions)?;
                Ok(Self::Unix(UnixListener::from_std(listener)?, socket))
            }
        }
    }

    /// The TCP address bound to (to learn the port after binding port 0).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr().ok(),
            Self::Unix(..) => None,
        }
    }
}

/// Serves LMTP on `listener` until `shutdown` resolves, with at most `[intake]
/// max_connections` sessions at once (more wait in the kernel's backlog); sessions in
/// progress are not waited for (an MTA whose connection drops before the final reply
/// retries the mail). An accept error never ends the server.
pub async fn run(
    listener: Listener,
    intake: Arc<SharedIntake>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let limit = Arc::new(Semaphore::new(intake.load().config.max_connections));
    let mut warned: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => {
                if let Listener::Unix(_, socket) = &listener {
                    socket.remove();
                }
                return Ok(());
            }
            accepted = accept(&listener, &limit) => accepted,
        };
        match accepted {
            Ok((stream, permit)) => {
                // Each session keeps the settings it began with, across a reload.
                let intake = intake.load_full();
                let span = tracing::info_span!("lmtp");
                tokio::spawn(
                    async move {
                        let _open = crate::metrics::OpenConnection::new("lmtp");
                        if let Err(error) = session::serve(stream, &intake).await {
                            debug!(%error, "LMTP session ended");
                        }
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            // Out of file descriptors and the like: say so (once a minute), pause, go on.
            Err(error) => {
                if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                    warn!(%error, "cannot accept an LMTP connection; going on (repeated at most once a minute)");
                    warned = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A connection of either kind.
type Stream = Box<dyn session::Io>;

async fn accept(
    listener: &Listener,
    limit: &Arc<Semaphore>,
) -> io::Result<(Stream, OwnedSemaphorePermit)> {
    let permit = limit
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| io::Error::other("the connection limit was closed"))?;
    let stream: Stream = match listener {
        Listener::Tcp(l) => {
            let (stream, _) = l.accept().await?;
            stream.set_nodelay(true)?;
            Box::new(stream)
        }
        Listener::Unix(l, _) => Box::new(l.accept().await?.0),
    };
    Ok((stream, permit))
}
