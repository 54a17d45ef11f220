//! The relay's durable state, kept outside the relay host so that it survives a crash: a
//! memory store shared by every boot of the relay host (standing for a disk), a real SQLite
//! file that every boot opens anew, or the production [`SharedMemoryStore`] that several relay
//! hosts share (standing for Redis).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use wormhole::relay::shared::SharedMemoryStore;
use wormhole::relay::{MailboxStore, MailboxTables, MemoryStore, SqliteStore, StoreError};

/// A [`MemoryStore`] shared between the simulation (which inspects it) and every boot of the
/// relay host: a restarted relay finds what the crashed one committed.
#[derive(Debug, Clone, Default)]
pub struct SharedStore(Arc<Mutex<MemoryStore>>);

impl SharedStore {
    fn lock(&self) -> MutexGuard<'_, MemoryStore> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl MailboxStore for SharedStore {
    fn transaction<T>(
        &mut self,
        work: &mut dyn FnMut(&mut dyn MailboxTables) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.lock().transaction(work)
    }

    fn begin_batch(&mut self) -> Result<(), StoreError> {
        self.lock().begin_batch()
    }

    fn end_batch(&mut self) -> Result<(), StoreError> {
        self.lock().end_batch()
    }
}

/// Which store the relay runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// [`SharedStore`].
    Memory,
    /// [`SqliteStore`] on a file of its own.
    Sqlite,
    /// [`SharedMemoryStore`], shared by several relay hosts (processes) with its change feed.
    Shared,
}

/// The relay's "disk": what every boot of the relay host opens.
#[derive(Debug, Clone)]
pub struct RelayDisk {
    memory: SharedStore,
    sqlite: Option<Arc<SqliteFile>>,
    shared: Option<SharedMemoryStore>,
}

/// A database file in the temporary directory, deleted (with its WAL files) when dropped.
#[derive(Debug)]
struct SqliteFile(PathBuf);

impl Drop for SqliteFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(Path::new(&p));
        }
    }
}

impl RelayDisk {
    /// A fresh disk of the given kind.
    pub fn new(backend: Backend) -> std::io::Result<RelayDisk> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let sqlite = match backend {
            Backend::Memory | Backend::Shared => None,
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join("wormhole-sim");
                std::fs::create_dir_all(&dir)?;
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                let path = dir.join(format!("relay-{}-{n}.sqlite", std::process::id()));
                Some(Arc::new(SqliteFile(path)))
            }
        };
        Ok(RelayDisk {
            memory: SharedStore::default(),
            sqlite,
            shared: (backend == Backend::Shared).then(SharedMemoryStore::new),
        })
    }

    /// The memory store (for a [`Backend::Memory`] disk).
    pub fn memory(&self) -> SharedStore {
        self.memory.clone()
    }

    /// The store the relay hosts share (for a [`Backend::Shared`] disk): a clone, as each
    /// relay process has its own connection to Redis.
    pub fn shared(&self) -> Option<SharedMemoryStore> {
        self.shared.clone()
    }

    /// Opens the SQLite database (for a [`Backend::Sqlite`] disk), as a relay boot does.
    pub fn open_sqlite(&self) -> Option<Result<SqliteStore, StoreError>> {
        self.sqlite.as_ref().map(|f| SqliteStore::open(&f.0))
    }

    /// What the relay holds for `appid`: nameplate names and mailbox ids, sorted.
    pub fn contents(&self, appid: &str) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let mut read = |t: &mut dyn MailboxTables| {
            let mut names = t.nameplate_names(appid)?;
            let mut boxes = t.mailbox_ids(appid)?;
            names.sort();
            boxes.sort();
            Ok((names, boxes))
        };
        if let Some(mut shared) = self.shared() {
            return shared.transaction(&mut read);
        }
        match self.open_sqlite() {
            Some(store) => store?.transaction(&mut read),
            None => self.memory.clone().transaction(&mut read),
        }
    }
}
