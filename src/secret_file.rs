//! Secret files: the admin API's tokens and the SMS providers' credentials, small text
//! files read at start and at each reload.
//!
//! A secret file is refused when others may read it or its group may write it; readable
//! by the service's group is accepted, as OpenDKIM accepts its keys, so that a package
//! can give the files to root with the service's group. The secret is the file's text
//! without the spaces around it, and must be visible characters only.

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
        "{what} file {path} may be read by others or written by its group (mode {mode:04o}); run chmod 640 (or 600) on it"
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
    let mode = file.metadata().map_err(read_error)?.mode() & 0o7777;
    if mode & 0o027 != 0 {
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
