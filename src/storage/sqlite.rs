//! [`SqliteStorage`]: every key in one SQLite file (feature `sqlite`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

use super::{check_key, Storage, StorageError};

/// `PRAGMA application_id` of a storage file: "WHst".
const APPLICATION_ID: i32 = 0x5748_7374;
/// `PRAGMA user_version` of the layout below.
const VERSION: i32 = 1;
/// How long an operation waits for another process holding the file's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Storage in one SQLite file: a table `kv(key TEXT PRIMARY KEY, value BLOB)`.
///
/// Each `put` and `delete` is one transaction, committed with `synchronous = FULL` in WAL
/// mode: durable once it returns. The file is created `0600` (SQLite gives its `-wal` and
/// `-shm` files the same mode), and an existing file is restricted to `0600` when opened.
/// Several processes may share the file (SQLite's locking; a writer waits up to 5 s).
pub struct SqliteStorage {
    path: PathBuf,
    conn: Mutex<Connection>,
}

fn db_err(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StorageError {
    move |e| StorageError::Database {
        what,
        source: Box::new(e),
    }
}

impl SqliteStorage {
    /// Opens the storage file at `path`, creating it if needed. Refuses a SQLite file made
    /// for something else.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStorage, StorageError> {
        let path = path.as_ref().to_path_buf();
        restrict_file(&path)?;
        let conn = Connection::open(&path).map_err(db_err("opening the file"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(db_err("setting the busy timeout"))?;
        let _mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(db_err("switching to WAL mode"))?;
        conn.execute_batch("PRAGMA synchronous = FULL")
            .map_err(db_err("setting synchronous"))?;
        let (app, version): (i32, i32) = conn
            .query_row(
                "SELECT (SELECT application_id FROM pragma_application_id), \
                        (SELECT user_version FROM pragma_user_version)",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(db_err("reading the file's identity"))?;
        match (app, version) {
            (APPLICATION_ID, VERSION) => {}
            (0, 0) => {
                let tables: i64 = conn
                    .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
                    .map_err(db_err("reading the schema"))?;
                if tables > 0 {
                    return Err(foreign(&path, "it has tables of another program"));
                }
                conn.execute_batch(&format!(
                    "BEGIN;
                     CREATE TABLE kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL)
                       WITHOUT ROWID;
                     PRAGMA application_id = {APPLICATION_ID};
                     PRAGMA user_version = {VERSION};
                     COMMIT;"
                ))
                .map_err(db_err("creating the table"))?;
            }
            (APPLICATION_ID, other) => {
                return Err(foreign(
                    &path,
                    &format!("its layout version is {other}, this program knows {VERSION}"),
                ))
            }
            _ => return Err(foreign(&path, "it belongs to another program")),
        }
        Ok(SqliteStorage {
            path,
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn foreign(path: &Path, why: &str) -> StorageError {
    StorageError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not a wormhole storage file: {why}"),
        ),
    }
}

/// Creates the file `0600` if missing, or restricts an existing one to `0600`.
fn restrict_file(path: &Path) -> Result<(), StorageError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let io = |source| StorageError::Io {
            path: path.to_path_buf(),
            source,
        };
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "storage file was readable by others: restricted to 0600");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Shows the path, never the values (they hold secrets).
impl fmt::Debug for SqliteStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStorage")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Storage for SqliteStorage {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        check_key(key)?;
        self.conn()
            .prepare_cached("SELECT value FROM kv WHERE key = ?1")
            .and_then(|mut stmt| stmt.query_row([key], |row| row.get(0)).optional())
            .map_err(db_err("reading a value"))
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        check_key(key)?;
        self.conn()
            .prepare_cached("INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)")
            .and_then(|mut stmt| stmt.execute(rusqlite::params![key, value]))
            .map_err(db_err("writing a value"))?;
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        self.conn()
            .prepare_cached("DELETE FROM kv WHERE key = ?1")
            .and_then(|mut stmt| stmt.execute([key]))
            .map_err(db_err("deleting a value"))?;
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        // Keys sort as bytes (the default BINARY collation); those with the prefix follow it
        // contiguously. No LIKE: `_` and `%` in a prefix are plain characters.
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT key FROM kv WHERE key >= ?1 ORDER BY key")
            .map_err(db_err("listing keys"))?;
        let rows = stmt
            .query_map([prefix], |row| row.get::<_, String>(0))
            .map_err(db_err("listing keys"))?;
        let mut keys = Vec::new();
        for key in rows {
            let key = key.map_err(db_err("listing keys"))?;
            if !key.starts_with(prefix) {
                break;
            }
            keys.push(key);
        }
        Ok(keys)
    }
}
