//! Binding the milter socket.
//!
//! indymilter's own TCP listener leaves Nagle's algorithm on, and the milter protocol is a
//! strict request/response exchange of small packets: every reply then waits for the
//! delayed ACK, about 40 ms. [`NodelayListener`] sets `TCP_NODELAY` on every accepted
//! connection. That fixes our side only: an MTA that writes one command in two pieces
//! with Nagle on (Postfix does) waits for our ACK of the first piece before sending the
//! second, and Linux delays that ACK by up to 40 ms. So the connection also asks for
//! immediate ACKs (`TCP_QUICKACK`), again after every read, since Linux drops back to
//! delayed ACKs on its own. The listener also survives connections that die between SYN
//! and accept, which would otherwise end the whole milter.

use crate::socket::SocketSpec;
use indymilter::{EitherListener, Listener};
use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream, UnixListener},
};
use tracing::warn;

/// A TCP listener whose connections have `TCP_NODELAY` set.
#[derive(Debug)]
pub struct NodelayListener(TcpListener);

impl Listener for NodelayListener {
    type Io = QuickAck;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<QuickAck>> {
        loop {
            match self.0.poll_accept(cx) {
                Poll::Ready(Ok((stream, peer))) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        warn!(%peer, %error, "cannot set TCP_NODELAY");
                    }
                    let stream = QuickAck(stream);
                    stream.quickack();
                    return Poll::Ready(Ok(stream));
                }
                Poll::Ready(Err(e)) if is_per_connection(&e) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
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
pub type MilterListener = EitherListener<NodelayListener, UnixListener>;

/// Binds `spec`. A stale Unix socket left by an earlier run is removed first.
pub async fn bind(spec: &SocketSpec) -> io::Result<MilterListener> {
    match spec {
        SocketSpec::Inet(addr) => Ok(EitherListener::Tcp(NodelayListener(
            TcpListener::bind(addr).await?,
        ))),
        SocketSpec::Unix(path) => Ok(EitherListener::Unix(crate::socket::bind_unix(path)?)),
    }
}

/// The address a TCP listener is bound to (to learn the port after binding port 0).
pub fn local_addr(listener: &MilterListener) -> Option<std::net::SocketAddr> {
    match listener {
        EitherListener::Tcp(l) => l.0.local_addr().ok(),
        EitherListener::Unix(_) => None,
    }
}
