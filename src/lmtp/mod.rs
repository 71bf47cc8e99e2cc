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

use crate::{intake::Intake, socket::SocketSpec};
use std::{future::Future, io, sync::Arc};
use tokio::net::{TcpListener, UnixListener};
use tracing::{debug, warn};

/// A bound LMTP socket.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Binds `spec`, replacing a stale Unix socket file.
    pub async fn bind(spec: &SocketSpec) -> io::Result<Self> {
        match spec {
            SocketSpec::Inet(addr) => Ok(Self::Tcp(TcpListener::bind(addr).await?)),
            SocketSpec::Unix(path) => Ok(Self::Unix(crate::socket::bind_unix(path)?)),
        }
    }

    /// The TCP address bound to (to learn the port after binding port 0).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr().ok(),
            Self::Unix(_) => None,
        }
    }
}

/// Serves LMTP on `listener` until `shutdown` resolves; sessions in progress are not
/// waited for (an MTA whose connection drops before the final reply retries the mail).
pub async fn run(
    listener: Listener,
    intake: Arc<Intake>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = accept(&listener) => accepted,
        };
        match accepted {
            Ok(stream) => {
                let intake = intake.clone();
                tokio::spawn(async move {
                    if let Err(error) = session::serve(stream, &intake).await {
                        debug!(%error, "LMTP session ended");
                    }
                });
            }
            // Out of file descriptors and the like: say so, pause, go on.
            Err(error) => {
                warn!(%error, "cannot accept an LMTP connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// A connection of either kind.
type Stream = Box<dyn session::Io>;

async fn accept(listener: &Listener) -> io::Result<Stream> {
    Ok(match listener {
        Listener::Tcp(l) => {
            let (stream, _) = l.accept().await?;
            stream.set_nodelay(true)?;
            Box::new(stream)
        }
        Listener::Unix(l) => Box::new(l.accept().await?.0),
    })
}
