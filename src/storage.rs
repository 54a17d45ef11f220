//! The [`Storage`] trait: a small durable key-value store.
//!
//! Clients journal their serialized state in it, so that a restarted program can resume an
//! exchange; the relay keeps its nameplates and mailboxes in it. Included: [`MemoryStorage`]
//! (for tests) and [`DirStorage`] (one file per key, replaced atomically).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
}

/// A small durable key-value store. Values are opaque bytes; `put` replaces a value atomically
/// (a reader sees the old or the new value, never a mix).
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
#[derive(Debug, Default)]
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

impl Storage for MemoryStorage {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.map().get(key).cloned())
    }
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.map().insert(key.to_string(), value.to_vec());
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
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

/// Storage in a directory: one file per key (`/` in a key makes subdirectories). `put` writes a
/// temporary file, syncs it and renames it over the old one.
#[derive(Debug)]
pub struct DirStorage {
    root: PathBuf,
}

impl DirStorage {
    /// Uses (and creates) the directory `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<DirStorage, StorageError> {
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(&root).map_err(|source| StorageError::Io {
            path: root.clone(),
            source,
        })?;
        Ok(DirStorage { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        let ok_chars = key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
        let ok_parts = key
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != ".." && !p.ends_with(".tmp"));
        if key.is_empty() || !ok_chars || !ok_parts {
            return Err(StorageError::BadKey(key.to_string()));
        }
        Ok(self.root.join(key))
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Storage for DirStorage {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path(key)?;
        match std::fs::read(&path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        use std::io::Write;
        let path = self.path(key)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        file.write_all(value).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut keys = Vec::new();
        let mut dirs = vec![self.root.clone()];
        while let Some(dir) = dirs.pop() {
            let entries = std::fs::read_dir(&dir).map_err(io_err(&dir))?;
            for entry in entries {
                let entry = entry.map_err(io_err(&dir))?;
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                if path.extension().is_some_and(|e| e == "tmp") {
                    continue;
                }
                if let Ok(rel) = path.strip_prefix(&self.root) {
                    let key = rel.to_string_lossy().replace('\\', "/");
                    if key.starts_with(prefix) {
                        keys.push(key);
                    }
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(store: &dyn Storage) {
        assert_eq!(store.get("a/one").unwrap(), None);
        store.put("a/one", b"1").unwrap();
        store.put("a/two", b"2").unwrap();
        store.put("b", b"3").unwrap();
        store.put("a/one", b"uno").unwrap();
        assert_eq!(store.get("a/one").unwrap().as_deref(), Some(&b"uno"[..]));
        assert_eq!(store.list("a/").unwrap(), vec!["a/one", "a/two"]);
        store.delete("a/one").unwrap();
        store.delete("a/one").unwrap();
        assert_eq!(store.list("").unwrap(), vec!["a/two", "b"]);
    }

    #[test]
    fn memory_storage_behaves() {
        exercise(&MemoryStorage::new());
    }

    #[test]
    fn dir_storage_behaves_and_refuses_escaping_keys() {
        let dir = std::env::temp_dir().join(format!("wormhole-dirstore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = DirStorage::open(&dir).unwrap();
        exercise(&store);
        for bad in ["", "../x", "a//b", "/abs", "a/./b", "x.tmp", "sp ace"] {
            assert!(
                matches!(store.put(bad, b"x"), Err(StorageError::BadKey(_))),
                "{bad:?}"
            );
        }
        let reopened = DirStorage::open(&dir).unwrap();
        assert_eq!(reopened.get("b").unwrap().as_deref(), Some(&b"3"[..]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
