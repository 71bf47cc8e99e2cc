//! Secret files: the admin API's tokens and the SMS providers' credentials, small text
//! files read at start and at each reload.
//!
//! A secret file is refused when others may read it or its group may write it; readable
//! by its group is accepted only when that is a group this process is in (the service's
//! group), as OpenDKIM accepts its keys, so that a package can give the files to root
//! with the service's group and nobody else. Root (an administrator's command, such as
//! `token mint` beside the service) is in no such group, so for root the group must be a
//! system user's own group (the user `optout-milter` and its group `optout-milter`, as
//! `adduser --system --group` makes them), never a group of people such as `adm`, nor a
//! person's own group. The secret is the file's text without the spaces around it, and
//! must be visible characters only.

use std::{
    io::Read,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// Secret files are small; a larger file is not one.
const MAX_FILE: u64 = 4096;

/// A secret file that cannot be used; `what` names the kind of secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read {what} file {path}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{what} file {path} may be read by others, written by its group, or read by a group that is not the service's (mode {mode:04o}); run chmod 600 on it, or chmod 640 with the service's group"
    )]
    Permissions {
        what: &'static str,
        path: PathBuf,
        mode: u32,
    },
    #[error(
        "{what} file {path} does not hold one secret of at least {min} visible characters{hint}"
    )]
    Malformed {
        what: &'static str,
        path: PathBuf,
        min: usize,
        /// How to make a good one, if there is a usual way (` (make one with: …)`).
        hint: &'static str,
    },
}

/// The secret in `path`: at least `min` visible characters.
pub fn read(
    path: &Path,
    what: &'static str,
    min: usize,
    hint: &'static str,
) -> Result<String, SecretFileError> {
    let read_error = |source| SecretFileError::Read {
        what,
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    let mode = meta.mode() & 0o7777;
    if !private(&meta) {
        return Err(SecretFileError::Permissions {
            what,
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = String::new();
    file.take(MAX_FILE)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    let secret = text.trim();
    if secret.len() < min || !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SecretFileError::Malformed {
            what,
            path: path.to_owned(),
            min,
            hint,
        });
    }
    Ok(secret.to_owned())
}

/// Whether only the file's owner, and for reading a group this process is in, may use
/// the file at all.
pub fn private(meta: &std::fs::Metadata) -> bool {
    let mode = meta.mode();
    mode & 0o037 == 0 && (mode & 0o040 == 0 || group_may_read(meta.gid()))
}

/// Whether group `gid` may read a secret: a group this process is in, or for root a
/// service user's own group.
fn group_may_read(gid: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    process_groups(&status).contains(&gid)
        || (effective_uid(&status) == Some(0)
            && service_group(
                &std::fs::read_to_string("/etc/group").unwrap_or_default(),
                &std::fs::read_to_string("/etc/passwd").unwrap_or_default(),
                gid,
            ))
}

/// Whether `gid` is the primary group of a system user (uid 1 to 999, Debian's range for
/// them) of the same name, in `group(5)` and `passwd(5)` text.
fn service_group(group: &str, passwd: &str, gid: u32) -> bool {
    let field = |line: &'_ str, n: usize| line.split(':').nth(n).map(str::to_owned);
    let Some(name) = group
        .lines()
        .find(|line| field(line, 2).and_then(|g| g.parse::<u32>().ok()) == Some(gid))
        .and_then(|line| field(line, 0))
    else {
        return false;
    };
    let number = |line: &'_ str, n: usize| field(line, n).and_then(|v| v.parse::<u32>().ok());
    passwd.lines().any(|line| {
        field(line, 0).as_deref() == Some(name.as_str())
            && number(line, 3) == Some(gid)
            && number(line, 2).is_some_and(|uid| (1..1000).contains(&uid))
    })
}

/// The effective user id of this process, from `/proc/self/status` text.
fn effective_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
}

/// The effective group and the supplementary groups of this process, from
/// `/proc/self/status` text (no system call needs `unsafe` for it).
fn process_groups(status: &str) -> Vec<u32> {
    let mut groups = Vec::new();
    for line in status.lines() {
        if let Some(ids) = line.strip_prefix("Gid:") {
            // Real, effective, saved, filesystem: access checks use the filesystem one.
            groups.extend(
                ids.split_whitespace()
                    .nth(3)
                    .and_then(|g| g.parse::<u32>().ok()),
            );
        } else if let Some(ids) = line.strip_prefix("Groups:") {
            groups.extend(ids.split_whitespace().filter_map(|g| g.parse::<u32>().ok()));
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{fs, os::unix::fs::PermissionsExt};

    #[test]
    fn a_group_may_read_only_when_this_process_is_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        fs::write(&path, "0123456789abcdef0123456789abcdef\n").unwrap();
        let read = |mode: u32| {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            super::read(&path, "test secret", 32, "")
        };
        // The file's group is this process's: 0640 is fine, 0660 and 0644 are not.
        assert!(read(0o600).is_ok());
        assert!(read(0o640).is_ok());
        for mode in [0o660, 0o644, 0o604, 0o650] {
            let error = read(mode).unwrap_err().to_string();
            assert!(error.contains("chmod 600"), "{mode:o}: {error}");
        }
        // Another group (as root, the tests can give the file one): 0640 is refused.
        // 65534 is `nogroup`, no user's own group, so not even root accepts it.
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let other = 65534;
        if !process_groups(&status).contains(&other)
            && std::process::Command::new("chgrp")
                .arg(other.to_string())
                .arg(&path)
                .status()
                .is_ok_and(|s| s.success())
        {
            let error = read(0o640).unwrap_err().to_string();
            assert!(error.contains("mode 0640"), "{error}");
        } else {
            eprintln!("SKIPPED the other-group case: cannot give the file another group here");
        }
    }

    #[test]
    fn root_accepts_a_service_users_own_group_only() {
        let group = "root:x:0:\nadm:x:4:syslog,jane\noptout-milter:x:998:\n\
                     nogroup:x:65534:\njane:x:1000:\n";
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                      optout-milter:x:999:998::/var/lib/optout-milter:/usr/sbin/nologin\n\
                      jane:x:1000:1000:Jane:/home/jane:/bin/bash\n";
        assert!(service_group(group, passwd, 998));
        // A group of people, a person's own group, root's, a group whose user has another
        // primary group, none at all.
        assert!(!service_group(group, passwd, 4));
        assert!(!service_group(group, passwd, 1000));
        assert!(!service_group(group, passwd, 0));
        assert!(!service_group(group, passwd, 65534));
        assert!(!service_group(group, passwd, 1234));
        assert_eq!(effective_uid("Name:\tx\nUid:\t1000\t0\t0\t0\n"), Some(0));
    }
}
