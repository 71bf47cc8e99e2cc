//! [`Listeners`]: every socket the daemon serves, bound before anything is served, so that
//! a socket that cannot be bound stops the start with its name, and so that a caller that
//! asked for port 0 (the tests, the benches) learns the ports before serving.

use super::DaemonError;
use crate::{config::Config, lmtp, milter};
use std::{io, net::SocketAddr};

/// The bound sockets.
pub struct Listeners {
    pub(super) milter: milter::BoundSocket,
    pub(super) web: Option<std::net::TcpListener>,
    pub(super) lmtp: Option<lmtp::Listener>,
    pub(super) metrics: Option<std::net::TcpListener>,
    pub(super) api: Option<std::net::TcpListener>,
}

impl Listeners {
    /// Binds what `config` names: the web front (with `[web]` and `[unsubscribe]`), the
    /// LMTP intake (with `[intake] lmtp` and `[unsubscribe]`), the admin API, the metrics
    /// and the milter.
    /// Unix sockets get their configured mode and group; a live one is never taken over.
    pub async fn bind(config: &Config) -> Result<Self, DaemonError> {
        let bind_tcp = |addr: SocketAddr| {
            std::net::TcpListener::bind(addr).map_err(|source| bind_error(addr, source))
        };
        let with_keys = config.unsubscribe.is_some();
        let web = match &config.web {
            Some(web) if with_keys => Some(bind_tcp(web.listen)?),
            _ => None,
        };
        let lmtp = match config.intake.as_ref().and_then(|i| i.lmtp.as_ref()) {
            Some(socket) if with_keys => {
                let permissions = config.intake.as_ref().map(|i| i.lmtp_permissions);
                Some(
                    lmtp::Listener::bind(socket, permissions.unwrap_or_default())
                        .await
                        .map_err(|source| bind_error(socket, source))?,
                )
            }
            _ => None,
        };
        let metrics = config.metrics.map(bind_tcp).transpose()?;
        let api = config
            .api
            .as_ref()
            .map(|a| bind_tcp(a.listen))
            .transpose()?;
        let socket = &config.milter.socket;
        let milter = milter::bind(socket, config.milter.socket_permissions)
            .map_err(|source| bind_error(socket, source))?;
        Ok(Self {
            milter,
            web,
            lmtp,
            metrics,
            api,
        })
    }

    /// The milter's TCP address (None for a Unix socket).
    pub fn milter_addr(&self) -> Option<SocketAddr> {
        self.milter.local_addr()
    }

    /// The web front's address, when it is served.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The LMTP intake's TCP address, when it is served over TCP.
    pub fn lmtp_addr(&self) -> Option<SocketAddr> {
        self.lmtp.as_ref().and_then(lmtp::Listener::local_addr)
    }

    /// The admin API's address, when configured.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The metrics listener's address, when configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }
}

fn bind_error(socket: impl ToString, source: io::Error) -> DaemonError {
    DaemonError::Bind {
        socket: socket.to_string(),
        source,
    }
}
