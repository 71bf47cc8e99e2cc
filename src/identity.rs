//! Which file is at a path: enough to tell "still the file I opened (or created)" from "a
//! new file there now". Device and inode alone are not: a file system reuses the inode
//! of a deleted file at once (ext4 did so in CI for a socket replaced by a plain file),
//! so the birth time (statx `btime`, which writes do not change) is part of it where the
//! file system records one.

use std::{fs::Metadata, os::unix::fs::MetadataExt, time::SystemTime};

/// A file's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
    born: Option<SystemTime>,
}

impl FileIdentity {
    pub fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            born: meta.created().ok(),
        }
    }
}
