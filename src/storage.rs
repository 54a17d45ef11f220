//! The [`Storage`] trait: a small durable key-value store.
//!
//! Clients journal their serialized state in it, so that a restarted program can resume an
//! exchange. What they store holds secrets (the code, key material): the durable backends
//! create their files readable by the owner only (`0600`, directories `0700`).
//!
//! Included: [`MemoryStorage`] (for tests), [`DirStorage`] (one file per key, replaced
//! atomically and durably) and, with feature `sqlite`, [`SqliteStorage`] (one SQLite file).
//! All of them accept the same keys ([`check_key`]) and pass the same conformance tests.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;

#[cfg(test)]
mod conformance;
mod dir;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use dir::DirStorage;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStorage;

/// Errors from a storage backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The key cannot be stored by this backend.
    #[error("invalid storage key {0:?}: use letters, digits, '-', '_', '.' and '/'")]
    BadKey(String),
    /// The backend's I/O failed.
    #[error("storage I/O failed at {path}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The backend's database failed while doing `what`.
    #[error("storage database failed while {what}")]
    Database {
        /// What the storage was doing.
        what: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Checks that `key` is one every backend accepts: not empty, made of ASCII letters, digits,
/// `-`, `_`, `.` and `/`, where `/` separates non-empty parts that are neither `.` nor `..`
/// and do not end in `.tmp` (a [`DirStorage`] maps parts to directories and files, and keeps
/// its temporary files under that suffix).
pub fn check_key(key: &str) -> Result<(), StorageError> {
    let ok_chars = key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
    let ok_parts = key
        .split('/')
        .all(|p| !p.is_empty() && p != "." && p != ".." && !p.ends_with(".tmp"));
    if key.is_empty() || !ok_chars || !ok_parts {
        return Err(StorageError::BadKey(key.to_string()));
    }
    Ok(())
}

/// A small durable key-value store. Values are opaque bytes; `put` replaces a value atomically
/// (a reader sees the old or the new value, never a mix) and, for a durable backend, durably:
/// once `put` or `delete` returns, the change survives a crash of the program or the machine.
/// Keys are checked with [`check_key`].
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// The value under `key`, if any.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Stores `value` under `key`, atomically replacing any old value.
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StorageError>;
    /// Removes `key`; removing a missing key is not an error.
    fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// All keys that start with `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;
}

/// Storage in memory, lost when dropped.
#[derive(Default)]
pub struct MemoryStorage {
    map: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Shows the keys, never the values (they hold secrets).
impl fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStorage")
            .field("keys", &self.map().keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Storage for MemoryStorage {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        check_key(key)?;
        Ok(self.map().get(key).cloned())
    }
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        check_key(key)?;
        self.map().insert(key.to_string(), value.to_vec());
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        self.map().remove(key);
        Ok(())
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        Ok(self
            .map()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }
}
