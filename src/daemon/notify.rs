//! systemd's readiness protocol (`sd_notify`): with `Type=notify` in the unit, systemd
//! counts the service as started only once it says `READY=1`, which `serve` says after
//! every listener is bound and every server runs, so that Postfix, ordered after it, never
//! meets a closed milter socket. A reload is announced with `RELOADING=1` and ends with
//! `READY=1`; a stop with `STOPPING=1`. Without `$NOTIFY_SOCKET` (not under systemd)
//! nothing is sent.
//!
//! The message is one datagram to the socket the variable names: a path, or an abstract
//! name written with a leading `@`.

use std::os::unix::net::UnixDatagram;
use tracing::debug;

/// Sends `state` (lines such as `READY=1`) to systemd, if it is listening.
pub fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|socket| {
        let target = target.to_string_lossy();
        match target.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &address)
            }
            None => socket.send_to(state.as_bytes(), &*target),
        }
    });
    // systemd gone or the variable stale: the service runs the same without it.
    if let Err(error) = sent {
        debug!(%error, "cannot notify systemd");
    }
}
