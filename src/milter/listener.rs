//! Binding the milter socket.
//!
//! indymilter's own TCP listener leaves Nagle's algorithm on, and the milter protocol is a
//! strict request/response exchange of small packets: every reply then waits for the
//! delayed ACK, about 40 ms. [`NodelayListener`] sets `TCP_NODELAY` on every accepted
//! connection. That fixes our side only: an MTA that writes one command in two pieces
//! with Nagle on (Postfix does) waits for our ACK of the first piece before sending the
//! second, and Linux delays that ACK by up to 40 ms. So the connection also asks for
//! immediate ACKs (`TCP_QUICKACK`), again after every read, since Linux drops back to
//! delayed ACKs on its own.
//!
//! indymilter ends its accept loop, and so the milter, on the first accept error. The
//! listeners here never return one: a connection that died between SYN and accept is
//! skipped, and a resource error (out of file descriptors or memory) is logged at most
//! once a minute and retried after a pause, while the connections already open go on.
//! Every connection is [`Guarded`].

use super::{drain::Closing, guard::Guarded};
use crate::socket::{SocketSpec, UnixPermissions, UnixSocket};
use indymilter::{EitherListener, Listener};
use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream, UnixListener, UnixStream},
    time::{Instant, Sleep},
};
use tracing::warn;

/// The pause after an accept error that is not the connection's own.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// The least time between two warnings about accept errors.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What keeps an accept loop alive through errors: the pause in progress and when the
/// last warning was logged; and the flag that ends accepting at shutdown.
#[derive(Debug, Default)]
struct Patience {
    pause: Option<Pin<Box<Sleep>>>,
    warned: Option<Instant>,
    closing: Closing,
}

impl Patience {
    /// Polls `accept` until it yields a connection, skipping per-connection errors and
    /// pausing after others; never an error.
    fn poll<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut accept: impl FnMut(&mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        loop {
            if self.closing.is_closed() {
                // Shutting down: accept nothing more (and ask not to be woken for it).
                return Poll::Pending;
            }
            if let Some(pause) = &mut self.pause {
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.pause = None;
            }
            match accept(cx) {
                Poll::Ready(Ok(conn)) => return Poll::Ready(Ok(conn)),
                Poll::Ready(Err(e)) if is_per_connection(&e) => continue,
                Poll::Ready(Err(error)) => {
                    if self.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                        warn!(%error, "cannot accept a milter connection; going on (this warning is repeated at most once a minute)");
                        self.warned = Some(Instant::now());
                    }
                    self.pause = Some(Box::pin(tokio::time::sleep(ACCEPT_PAUSE)));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// A TCP listener whose connections have `TCP_NODELAY` set.
#[derive(Debug)]
pub struct NodelayListener(TcpListener, Patience);

impl Listener for NodelayListener {
    type Io = Guarded<QuickAck>;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
        let listener = &self.0;
        self.1
            .poll(cx, |cx| listener.poll_accept(cx))
            .map_ok(|(stream, peer)| {
                if let Err(error) = stream.set_nodelay(true) {
                    warn!(%peer, %error, "cannot set TCP_NODELAY");
                }
                let stream = QuickAck(stream);
                stream.quickack();
                Guarded::new(stream)
            })
    }
}

/// A Unix-domain listener with the same patience and guard.
#[derive(Debug)]
pub struct PatientUnixListener(UnixListener, Patience);

impl Listener for PatientUnixListener {
    type Io = Guarded<UnixStream>;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
        let listener = &self.0;
        self.1
            .poll(cx, |cx| listener.poll_accept(cx))
            .map_ok(|(stream, _)| Guarded::new(stream))
    }
}

/// A TCP connection that ACKs what it receives at once (see the module docs).
#[derive(Debug)]
pub struct QuickAck(TcpStream);

impl QuickAck {
    fn quickack(&self) {
        // Best effort: without it the connection only gets slower.
        let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.0).poll_read(cx, buf);
        if result.is_ready() {
            this.quickack();
        }
        result
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
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
pub type MilterListener = EitherListener<NodelayListener, PatientUnixListener>;

/// A milter socket bound but not yet served: plain listeners, so that the socket can be
/// bound (and a bad one refused) at start and served on the milter's own thread, whose
/// event loop it must belong to.
pub struct BoundSocket {
    listener: StdListener,
    unix: Option<UnixSocket>,
}

enum StdListener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl BoundSocket {
    /// The TCP address bound to (to learn the port after binding port 0).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match &self.listener {
            StdListener::Tcp(l) => l.local_addr().ok(),
            StdListener::Unix(_) => None,
        }
    }

    /// Registers the socket with the current runtime's event loop.
    pub fn into_bound(self) -> io::Result<Bound> {
        let closing = Closing::default();
        let patience = Patience {
            closing: closing.clone(),
            ..Patience::default()
        };
        let listener = match self.listener {
            StdListener::Tcp(l) => {
                EitherListener::Tcp(NodelayListener(TcpListener::from_std(l)?, patience))
            }
            StdListener::Unix(l) => {
                EitherListener::Unix(PatientUnixListener(UnixListener::from_std(l)?, patience))
            }
        };
        Ok(Bound {
            listener,
            closing,
            unix: self.unix,
        })
    }
}

/// A milter socket served on the current runtime: the listener, the flag that stops it
/// accepting, and for a Unix socket the handle that removes it on exit.
pub struct Bound {
    pub listener: MilterListener,
    pub closing: Closing,
    pub unix: Option<UnixSocket>,
}

/// Binds `spec`; a Unix socket gets `permissions`, and a stale one left by an earlier run
/// is removed first.
pub fn bind(spec: &SocketSpec, permissions: UnixPermissions) -> io::Result<BoundSocket> {
    let (listener, unix) = match spec {
        SocketSpec::Inet(addr) => {
            let listener = std::net::TcpListener::bind(addr)?;
            listener.set_nonblocking(true)?;
            (StdListener::Tcp(listener), None)
        }
        SocketSpec::Unix(path) => {
            let (listener, socket) = crate::socket::bind_unix_with(path, permissions)?;
            (StdListener::Unix(listener), Some(socket))
        }
    };
    Ok(BoundSocket { listener, unix })
}

/// The address a TCP listener is bound to (to learn the port after binding port 0).
pub fn local_addr(listener: &MilterListener) -> Option<std::net::SocketAddr> {
    match listener {
        EitherListener::Tcp(l) => l.0.local_addr().ok(),
        EitherListener::Unix(_) => None,
    }
}
