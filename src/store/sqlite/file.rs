//! The database file itself: where it is, that it is still the one the store opened, and
//! how a new one is created.
//!
//! SQLite keeps working on a file that was deleted or replaced under it: its open file
//! descriptors still point at the old inode. Commits then succeed into a file nobody will
//! ever open again, while a restart would start from whatever is at the path now. So the
//! store remembers the identity of the file it opened ([`FileIdentity`]) and checks them after every commit
//! (before any caller is told the write is durable) and whenever it is asked; once they
//! differ the store is *lost* for good, and every operation fails.

use super::super::StoreError;
use crate::identity::FileIdentity;
use std::{
    fs,
    io::{self, ErrorKind},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
};

/// The file the store opened.
#[derive(Debug)]
pub struct DbFile {
    path: PathBuf,
    identity: FileIdentity,
    lost: AtomicBool,
}

impl DbFile {
    /// Creates `path` empty, readable and writable by its owner only whatever the umask
    /// (it will hold addresses, client addresses and user agents). SQLite gives the `-wal`
    /// and `-shm` files the same mode. An existing file is left alone.
    pub fn create(path: &Path) -> Result<(), StoreError> {
        let created = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        match created {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(source) => Err(StoreError::Create {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Remembers which file is at `path` now; an error if there is none.
    pub fn identify(path: &Path) -> Result<Self, StoreError> {
        let meta = fs::metadata(path).map_err(|source| match source.kind() {
            ErrorKind::NotFound => StoreError::Missing(path.to_owned()),
            _ => StoreError::Create {
                path: path.to_owned(),
                source,
            },
        })?;
        Ok(Self {
            path: path.to_owned(),
            identity: FileIdentity::of(&meta),
            lost: AtomicBool::new(false),
        })
    }

    /// `Ok` while the file at the path is still the one opened.
    pub fn check(&self) -> Result<(), StoreError> {
        if !self.lost.load(Ordering::Relaxed) {
            match fs::metadata(&self.path) {
                Ok(meta) if FileIdentity::of(&meta) == self.identity => return Ok(()),
                // A transient failure to stat (say, EINTR) does not prove the file gone.
                Err(e) if !matches!(e.kind(), ErrorKind::NotFound) && is_transient(&e) => {
                    return Ok(());
                }
                _ => self.lost.store(true, Ordering::Relaxed),
            }
        }
        Err(StoreError::Lost(self.path.clone()))
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_deleted_or_replaced_file_is_lost_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        assert!(matches!(
            DbFile::identify(&path),
            Err(StoreError::Missing(_))
        ));
        DbFile::create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let file = DbFile::identify(&path).unwrap();
        file.check().unwrap();
        fs::remove_file(&path).unwrap();
        assert!(matches!(file.check(), Err(StoreError::Lost(_))));
        // A new file at the same path is not the store's file either.
        DbFile::create(&path).unwrap();
        assert!(matches!(file.check(), Err(StoreError::Lost(_))));
    }
}
