//! Listening socket specifications, written the way MTAs write them.
//!
//! Postfix writes `inet:127.0.0.1:8899` and `unix:/run/optout-milter/milter.sock`;
//! Sendmail writes `inet:8899@127.0.0.1`, `inet6:8899@[::1]` and `local:/path`. Both forms
//! are accepted so the same string can be pasted from either MTA's config. [`bind_unix`]
//! binds the Unix kind, for the milter and LMTP alike, with the mode and group the MTA's
//! processes need ([`UnixPermissions`]), and [`UnixSocket`] removes it again on exit.

use crate::identity::FileIdentity;
use std::{
    fmt, io,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
};

/// Where a server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketSpec {
    Inet(SocketAddr),
    Unix(PathBuf),
}

/// A socket specification that cannot be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid socket {0:?}: expected inet:HOST:PORT, inet:PORT@HOST, inet6:PORT@[HOST] or unix:/PATH"
)]
pub struct SocketSpecError(pub String);

impl FromStr for SocketSpec {
    type Err = SocketSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SocketSpecError(s.to_owned());
        let (kind, rest) = s.trim().split_once(':').ok_or_else(bad)?;
        match kind {
            "unix" | "local" if rest.starts_with('/') => Ok(Self::Unix(PathBuf::from(rest))),
            "inet" | "inet6" => parse_inet(rest).map(Self::Inet).ok_or_else(bad),
            _ => Err(bad()),
        }
    }
}

/// Who may connect to a Unix socket: its mode (whatever the umask) and group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnixPermissions {
    pub mode: u32,
    /// The group to give the socket; `None` keeps the process's.
    pub group: Option<u32>,
}

impl Default for UnixPermissions {
    /// Owner and group may connect: with the MTA's group (Postfix's `smtpd` and `cleanup`
    /// run as user and group `postfix`), that is the MTA and no one else.
    fn default() -> Self {
        Self {
            mode: 0o660,
            group: None,
        }
    }
}

/// Parses an octal mode such as `0660`.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim(), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("{text:?} is not an octal mode such as \"0660\""))
}

/// The id of group `name` (a number, or a name in `/etc/group`).
pub fn group_id(name: &str) -> Result<u32, String> {
    if let Ok(gid) = name.parse() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group")
        .map_err(|e| format!("cannot read /etc/group to find group {name:?}: {e}"))?;
    groups
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let group = fields.next()?;
            let gid = fields.nth(1)?.parse().ok()?;
            (group == name).then_some(gid)
        })
        .next()
        .ok_or_else(|| format!("there is no group named {name:?} in /etc/group"))
}

/// A Unix socket file this process created, removed when [`UnixSocket::remove`] is
/// called, and only if it is still the same file (never another instance's).
#[derive(Debug)]
pub struct UnixSocket {
    path: PathBuf,
    identity: FileIdentity,
}

impl UnixSocket {
    /// Removes the socket file if it is still the one bound.
    pub fn remove(&self) {
        use std::os::unix::fs::FileTypeExt;
        let same = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && FileIdentity::of(&m) == self.identity);
        if same {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds a Unix socket at `path` like [`bind_unix`], then gives it `permissions`.
pub fn bind_unix_with(
    path: &Path,
    permissions: UnixPermissions,
) -> io::Result<(std::os::unix::net::UnixListener, UnixSocket)> {
    use std::os::unix::fs::PermissionsExt;
    let listener = bind_unix(path)?;
    let context = |what: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("cannot {what} of {}: {e}", path.display()),
        )
    };
    if let Some(gid) = permissions.group {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| context("set the group", e))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(permissions.mode))
        .map_err(|e| context("set the mode", e))?;
    let meta = std::fs::symlink_metadata(path)?;
    let socket = UnixSocket {
        path: path.to_owned(),
        identity: FileIdentity::of(&meta),
    };
    Ok((listener, socket))
}

/// Binds a Unix socket at `path`, first removing a socket file left there by an earlier
/// run (never a file of another kind, and never a socket that a process still answers
/// on: a second instance must not steal the first one's MTA). The listener is
/// non-blocking, ready for an event loop on any thread.
pub fn bind_unix(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    let socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if socket {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "another process answers on {}; stop it first (or choose another socket)",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn parse_inet(rest: &str) -> Option<SocketAddr> {
    let (host, port) = match rest.split_once('@') {
        Some((port, host)) => (host, port),
        None => rest.rsplit_once(':')?,
    };
    let host = match host {
        "" | "*" => "0.0.0.0",
        "localhost" => "127.0.0.1",
        h => h
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h),
    };
    let port: u16 = port.parse().ok()?;
    Some(SocketAddr::new(host.parse().ok()?, port))
}

impl fmt::Display for SocketSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inet(addr) => write!(f, "inet:{addr}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stale_socket_is_replaced_but_no_other_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("milter.sock");
        // A listener dropped without cleanup leaves its socket file behind.
        drop(bind_unix(&path).unwrap());
        assert!(path.exists());
        let again = bind_unix(&path).unwrap();
        tokio::net::UnixStream::connect(&path).await.unwrap();
        // While it answers, a second bind refuses instead of taking it over.
        let taken = bind_unix(&path).unwrap_err();
        assert_eq!(taken.kind(), io::ErrorKind::AddrInUse);
        assert!(
            taken.to_string().contains("another process answers"),
            "{taken}"
        );
        tokio::net::UnixStream::connect(&path).await.unwrap();
        drop(again);
        let file = dir.path().join("data");
        std::fs::write(&file, "keep").unwrap();
        assert!(bind_unix(&file).is_err());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    }

    #[tokio::test]
    async fn sockets_get_their_mode_and_group_and_are_removed_only_while_ours() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sock");
        let gid = group_id("0").unwrap();
        let permissions = UnixPermissions {
            mode: 0o660,
            group: Some(gid),
        };
        let (listener, socket) = bind_unix_with(&path, permissions).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert_eq!(meta.gid(), gid);
        drop(listener);
        socket.remove();
        assert!(!path.exists());
        // A file that replaced it is not removed.
        std::fs::write(&path, "other").unwrap();
        socket.remove();
        assert!(path.exists());
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert!(parse_mode("0999").is_err() && parse_mode("1777").is_err());
        assert!(group_id("no-such-group-here").is_err());
        assert_eq!(group_id("root"), Ok(0));
    }

    #[test]
    fn postfix_and_sendmail_spellings_parse() {
        let v4: SocketAddr = "127.0.0.1:8899".parse().unwrap();
        let v6: SocketAddr = "[::1]:8899".parse().unwrap();
        assert_eq!("inet:127.0.0.1:8899".parse(), Ok(SocketSpec::Inet(v4)));
        assert_eq!("inet:8899@127.0.0.1".parse(), Ok(SocketSpec::Inet(v4)));
        assert_eq!("inet:localhost:8899".parse(), Ok(SocketSpec::Inet(v4)));
        assert_eq!("inet6:8899@[::1]".parse(), Ok(SocketSpec::Inet(v6)));
        assert_eq!("inet:[::1]:8899".parse(), Ok(SocketSpec::Inet(v6)));
        assert_eq!(
            "unix:/run/optout-milter/milter.sock".parse(),
            Ok(SocketSpec::Unix("/run/optout-milter/milter.sock".into()))
        );
        assert_eq!(
            "local:/tmp/m.sock".parse(),
            Ok(SocketSpec::Unix("/tmp/m.sock".into()))
        );
        for bad in [
            "",
            "8899",
            "inet:host:",
            "inet:127.0.0.1:99999",
            "unix:relative",
            "tcp:1:2",
        ] {
            assert!(bad.parse::<SocketSpec>().is_err(), "{bad:?}");
        }
    }
}
