//! Binding the milter socket.
//!
//! indymilter's own TCP listener leaves Nagle's algorithm on, and the milter protocol is a
//! strict request/response exchange of small packets: every reply then waits for the
//! delayed ACK, about 40 ms. [`NodelayListener`] sets `TCP_NODELAY` on every accepted
//! connection. It also survives connections that die between SYN and accept, which would
//! otherwise end the whole milter.

use crate::socket::SocketSpec;
use indymilter::{EitherListener, Listener};
use std::{
    io,
    os::unix::fs::FileTypeExt,
    task::{Context, Poll},
};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tracing::warn;

/// A TCP listener whose connections have `TCP_NODELAY` set.
#[derive(Debug)]
pub struct NodelayListener(TcpListener);

impl Listener for NodelayListener {
    type Io = TcpStream;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<TcpStream>> {
        loop {
            match self.0.poll_accept(cx) {
                Poll::Ready(Ok((stream, peer))) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        warn!(%peer, %error, "cannot set TCP_NODELAY");
                    }
                    return Poll::Ready(Ok(stream));
                }
                Poll::Ready(Err(e)) if is_per_connection(&e) => continue,
                other => return other.map_ok(|(stream, _)| stream),
            }
        }
    }
}

fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// The milter's listener, TCP or Unix-domain.
pub type MilterListener = EitherListener<NodelayListener, UnixListener>;

/// Binds `spec`. A stale Unix socket left by an earlier run is removed first.
pub async fn bind(spec: &SocketSpec) -> io::Result<MilterListener> {
    match spec {
        SocketSpec::Inet(addr) => Ok(EitherListener::Tcp(NodelayListener(
            TcpListener::bind(addr).await?,
        ))),
        SocketSpec::Unix(path) => {
            let stale = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
            if stale {
                std::fs::remove_file(path)?;
            }
            Ok(EitherListener::Unix(UnixListener::bind(path)?))
        }
    }
}

/// The address a TCP listener is bound to (to learn the port after binding port 0).
pub fn local_addr(listener: &MilterListener) -> Option<std::net::SocketAddr> {
    match listener {
        EitherListener::Tcp(l) => l.0.local_addr().ok(),
        EitherListener::Unix(_) => None,
    }
}
