//! Token keys: secret files named in config, one of which signs while all verify, so keys
//! can rotate without breaking links already sent.

use std::{
    collections::HashMap,
    fs::{self, OpenOptions},
    io::Write,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

/// The least secret a key file must hold.
pub const MIN_KEY_BYTES: usize = 32;

/// A key as named in config: its id (carried in every token) and its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpec {
    pub id: u8,
    pub file: PathBuf,
}

/// The loaded keys. The first key of the config signs new tokens.
pub struct Keyring {
    signing: u8,
    keys: HashMap<u8, Vec<u8>>,
}

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no token keys are configured")]
    NoKeys,
    #[error(
        "token key file {path} does not exist (create it with `optout-milter token keygen {path}`)"
    )]
    Missing { path: PathBuf },
    #[error("cannot read token key file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "token key file {path} may be read by others, written by its group, or read by a group that is not the service's (mode {mode:04o}); run chmod 600 on it, or chmod 640 with the service's group"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "token key file {path} holds {len} bytes; it needs at least {MIN_KEY_BYTES} random bytes"
    )]
    TooShort { path: PathBuf, len: usize },
    #[error("token key id {0} is listed twice")]
    DuplicateId(u8),
    #[error("cannot create token key file {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Keyring {
    /// Loads every key of `specs`; the first one signs.
    pub fn load(specs: &[KeySpec]) -> Result<Self, KeyError> {
        let signing = specs.first().ok_or(KeyError::NoKeys)?.id;
        let mut keys = HashMap::new();
        for spec in specs {
            let secret = read_key(&spec.file)?;
            if keys.insert(spec.id, secret).is_some() {
                return Err(KeyError::DuplicateId(spec.id));
            }
        }
        Ok(Self { signing, keys })
    }

    /// A keyring from secrets in memory, for tests and benchmarks.
    pub fn from_secrets(signing: u8, keys: impl IntoIterator<Item = (u8, Vec<u8>)>) -> Self {
        Self {
            signing,
            keys: keys.into_iter().collect(),
        }
    }

    pub(super) fn signing(&self) -> (u8, &[u8]) {
        (self.signing, &self.keys[&self.signing])
    }

    pub(super) fn get(&self, id: u8) -> Option<&[u8]> {
        self.keys.get(&id).map(Vec::as_slice)
    }
}

/// The secret in the key file at `path`: present, readable by its owner (and, for reading,
/// a group this process is in: [`crate::secret_file::private`]) only, at least 32 bytes.
/// Also the
/// erasure key's reader ([`crate::consent::Erasure`]).
pub fn read_key(path: &Path) -> Result<Vec<u8>, KeyError> {
    let read_error = |source| KeyError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = match fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyError::Missing {
                path: path.to_owned(),
            });
        }
        other => other.map_err(read_error)?,
    };
    let mode = meta.mode() & 0o7777;
    if !crate::secret_file::private(&meta) {
        return Err(KeyError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let secret = fs::read(path).map_err(read_error)?;
    if secret.len() < MIN_KEY_BYTES {
        return Err(KeyError::TooShort {
            path: path.to_owned(),
            len: secret.len(),
        });
    }
    Ok(secret)
}

/// Writes a new key of 32 random bytes to `path`, readable by its owner only. Refuses to
/// overwrite an existing file: that would break every link signed with it.
pub fn generate(path: &Path) -> Result<(), KeyError> {
    let create_error = |source| KeyError::Create {
        path: path.to_owned(),
        source,
    };
    let mut secret = [0u8; MIN_KEY_BYTES];
    getrandom::fill(&mut secret).map_err(|e| create_error(std::io::Error::other(e.to_string())))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(create_error)?;
    file.write_all(&secret).map_err(create_error)?;
    file.sync_all().map_err(create_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_keys_load_and_loose_permissions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k1");
        generate(&path).unwrap();
        assert!(generate(&path).is_err(), "must not overwrite");
        let spec = KeySpec {
            id: 1,
            file: path.clone(),
        };
        assert!(Keyring::load(std::slice::from_ref(&spec)).is_ok());
        // Readable by the file's group, which is this process's (as the service's group
        // would be): accepted, as OpenDKIM accepts it.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(Keyring::load(std::slice::from_ref(&spec)).is_ok());
        for mode in [0o644, 0o660] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let error = Keyring::load(std::slice::from_ref(&spec))
                .err()
                .unwrap()
                .to_string();
            assert!(
                error.contains(&format!("mode {mode:04o}")) && error.contains("chmod 600"),
                "{error}"
            );
        }
    }

    #[test]
    fn short_missing_and_duplicate_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&short)
            .unwrap()
            .write_all(b"tiny")
            .unwrap();
        let spec = |id, file: &Path| KeySpec {
            id,
            file: file.to_owned(),
        };
        assert!(matches!(
            Keyring::load(&[spec(1, &short)]),
            Err(KeyError::TooShort { len: 4, .. })
        ));
        assert!(matches!(
            Keyring::load(&[spec(1, &dir.path().join("none"))]),
            Err(KeyError::Missing { .. })
        ));
        let good = dir.path().join("good");
        generate(&good).unwrap();
        assert!(matches!(
            Keyring::load(&[spec(1, &good), spec(1, &good)]),
            Err(KeyError::DuplicateId(1))
        ));
        assert!(matches!(Keyring::load(&[]), Err(KeyError::NoKeys)));
    }
}
