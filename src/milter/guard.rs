//! Bounds on what one milter connection can hold: memory, and a slot of the connection
//! limit.
//!
//! indymilter reads a message by allocating the length its 4-byte prefix announces (up to
//! its own maximum of several megabytes) and then waiting for the bytes. 512 clients that
//! announce 1 MB and stall took 547 MB. And a connection that says nothing keeps its slot
//! for the library's timeout of two hours: 512 of them took the milter away from the MTA.
//! [`Guarded`] watches the framing as the bytes pass:
//! - a message longer than [`MAX_MESSAGE`] ends the connection (Postfix's largest is a
//!   header of at most `header_size_limit`, 100 KiB by default, or a 64 KiB body chunk);
//! - the first message must arrive within [`FIRST_MESSAGE`] (an MTA negotiates at once);
//! - a message once begun must be complete within [`PARTIAL_MESSAGE`] (an MTA writes one
//!   whole; a half-sent one is a stall).
//!
//! Between messages a negotiated connection may idle as long as the MTA's SMTP client
//! does (the milter's connection lives as long as the SMTP session):
//! `[milter] idle_timeout`.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

/// The longest message accepted from the MTA, prefix excluded.
pub const MAX_MESSAGE: usize = 256 * 1024;
/// How long a new connection may take to send its first message.
pub const FIRST_MESSAGE: Duration = Duration::from_secs(5);
/// How long a message may take from its first byte to its last.
pub const PARTIAL_MESSAGE: Duration = Duration::from_secs(10);

/// A connection whose reads are checked against the bounds above.
#[derive(Debug)]
pub struct Guarded<S> {
    inner: S,
    /// The length prefix read so far, and how many of its bytes.
    prefix: [u8; 4],
    prefix_len: usize,
    /// Bytes of the current message still to come, after the prefix.
    remaining: usize,
    deadline: Pin<Box<Sleep>>,
    /// The deadline applies (at the start, and while a message is incomplete).
    armed: bool,
}

impl<S> Guarded<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            prefix: [0; 4],
            prefix_len: 0,
            remaining: 0,
            deadline: Box::pin(tokio::time::sleep(FIRST_MESSAGE)),
            armed: true,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Follows the framing over `bytes`, just read.
    fn observe(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(bytes.len());
                self.remaining -= take;
                bytes = &bytes[take..];
                if self.remaining == 0 {
                    self.armed = false;
                }
                continue;
            }
            if self.prefix_len == 0 && !self.armed {
                // A new message begins: it must be complete in time.
                self.armed = true;
                let at = Instant::now() + PARTIAL_MESSAGE;
                self.deadline.as_mut().reset(at);
            }
            let take = (4 - self.prefix_len).min(bytes.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&bytes[..take]);
            self.prefix_len += take;
            bytes = &bytes[take..];
            if self.prefix_len == 4 {
                self.prefix_len = 0;
                let len = u32::from_be_bytes(self.prefix) as usize;
                if len > MAX_MESSAGE + 1 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("a milter message of {len} bytes; the most is {MAX_MESSAGE}"),
                    ));
                }
                self.remaining = len;
                if len == 0 {
                    self.armed = false;
                }
            }
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                Poll::Ready(this.observe(read))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.armed && this.deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the MTA did not send a whole message in time",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn framing_is_followed_across_reads_and_oversize_is_refused() {
        let mut g = Guarded::new(());
        // Two messages split at awkward places, then an oversize prefix.
        let mut wire = Vec::new();
        for body in [&b"Oabc"[..], &b"Bxyz012345"[..]] {
            wire.extend_from_slice(&(body.len() as u32).to_be_bytes());
            wire.extend_from_slice(body);
        }
        for chunk in wire.chunks(3) {
            g.observe(chunk).unwrap();
        }
        assert!(!g.armed, "complete messages leave no deadline");
        let big = (MAX_MESSAGE as u32 + 2).to_be_bytes();
        g.observe(&big[..2]).unwrap();
        assert!(g.armed, "a message begun must end in time");
        assert!(g.observe(&big[2..]).is_err());
    }
}
