//! The web front's listener: accepting connections within bounds and serving HTTP/1.1 on
//! them until shutdown.
//!
//! Why not a ready-made server: the web front faces strangers, and the one it replaced
//! ended its accept loop (and so the daemon) on the first "Too many open files", and let
//! a client hold as many idle connections as it liked for as long as it liked. Here, as
//! in mini-redis' `server.rs`:
//! - at most `max_connections` are open at once; past that, new ones wait in the kernel's
//!   backlog and cost no file descriptor;
//! - an accept error is logged (once a minute at most) and the loop goes on after a pause;
//! - a client must send a request's headers within [`HEADER_TIMEOUT`] (idle keep-alive
//!   connections included) and the TLS handshake within as long;
//! - on shutdown, listening stops, and requests in progress get [`DRAIN`] to finish.

use axum::{Router, extract::ConnectInfo};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::{
    future::Future,
    io,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{Instrument, debug, info, warn};

/// The longest a client may take to send a request's headers, or to finish a TLS
/// handshake, and the longest an idle keep-alive connection stays open.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests in progress may take to finish after shutdown was asked.
pub const DRAIN: Duration = Duration::from_secs(5);
/// The pause after an accept error, so that a full fd table does not spin the loop.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `shutdown` resolves; its connections count in the
/// open-connections gauge as `name`.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let limit = Arc::new(Semaphore::new(max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut last_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, &limit) => accepted,
        };
        let (stream, peer, permit) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                    warn!(%error, "cannot accept a web connection; going on (this warning is repeated at most once a minute)");
                    last_warning = Some(Instant::now());
                }
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        let (router, tls, stopping) = (router.clone(), tls.clone(), stopping.clone());
        tokio::spawn(async move {
            let _open = crate::metrics::OpenConnection::new(name);
            if let Err(error) = connection(stream, peer, tls, router, stopping).await {
                debug!(%peer, %error, "web connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a permit until it ends: all permits back means all done.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN, limit.acquire_many(all))
        .await
        .is_err()
    {
        info!("web requests still in progress at shutdown were cut off");
    }
    Ok(())
}

/// The next connection, once there is room for it.
async fn accept(
    listener: &TcpListener,
    limit: &Arc<Semaphore>,
) -> io::Result<(
    tokio::net::TcpStream,
    SocketAddr,
    tokio::sync::OwnedSemaphorePermit,
)> {
    let permit = limit
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| io::Error::other("the connection limit was closed"))?;
    let (stream, peer) = listener.accept().await?;
    let _ = stream.set_nodelay(true);
    Ok((stream, peer, permit))
}

/// Serves one connection: TLS first when configured, then HTTP/1.1 until the client
/// closes, a timeout, or shutdown (after the request in progress).
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    router: Router,
    stopping: watch::Receiver<bool>,
) -> io::Result<()> {
    match tls {
        None => http(TokioIo::new(stream), peer, router, stopping).await,
        Some(acceptor) => {
            let stream = tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake"))??;
            http(TokioIo::new(stream), peer, router, stopping).await
        }
    }
}

async fn http<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    router: Router,
    mut stopping: watch::Receiver<bool>,
) -> io::Result<()>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        // The path is not in the span: it holds the token.
        let span = tracing::info_span!("http", method = %request.method(), %peer);
        router
            .clone()
            .oneshot(request.map(axum::body::Body::new))
            .instrument(span)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => return result.map_err(io::Error::other),
        _ = stopping.wait_for(|stop| *stop) => conn.as_mut().graceful_shutdown(),
    }
    conn.await.map_err(io::Error::other)
}
