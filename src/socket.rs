//! Listening socket specifications, written the way MTAs write them.
//!
//! Postfix writes `inet:127.0.0.1:8899` and `unix:/run/optout-milter/milter.sock`;
//! Sendmail writes `inet:8899@127.0.0.1`, `inet6:8899@[::1]` and `local:/path`. Both forms
//! are accepted so the same string can be pasted from either MTA's config. [`bind_unix`]
//! binds the Unix kind, for the milter and LMTP alike.

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

/// Binds a Unix socket at `path`, first removing a socket file left there by an earlier
/// run (never a file of another kind). Must be called inside a tokio runtime.
pub fn bind_unix(path: &Path) -> io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    let stale = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if stale {
        std::fs::remove_file(path)?;
    }
    tokio::net::UnixListener::bind(path)
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
        drop(again);
        let file = dir.path().join("data");
        std::fs::write(&file, "keep").unwrap();
        assert!(bind_unix(&file).is_err());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
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
