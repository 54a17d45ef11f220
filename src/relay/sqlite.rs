//! [`SqliteStore`]: the relay's tables in a SQLite file (feature `sqlite`), so that a relay
//! restarted on the same file finds every nameplate, mailbox, side and message again.
//!
//! The database runs in WAL mode. Each [`MailboxStore::transaction`] is one SQLite transaction
//! (`BEGIN IMMEDIATE`, so it holds the write lock from its first statement and never has to
//! upgrade), committed before the relay sends any reply to the command. The relay runner
//! groups the commands that arrived together into a batch ([`MailboxStore::begin_batch`]):
//! one SQLite transaction in which each command is a savepoint (so a failing command still
//! rolls back alone), committed once before any of their replies leaves. That writes each hot
//! page once per batch instead of once per command. With the default
//! [`Synchronous::Normal`] (`synchronous = NORMAL`) a commit writes the WAL but does not wait for the
//! disk: a committed command survives the relay process being killed (the WAL is in the
//! operating system's cache), and the file is never corrupted, but the last commits before a
//! power loss or kernel crash may be lost. [`Synchronous::Full`] fsyncs the WAL on every commit.
//!
//! The schema (`PRAGMA user_version` = [`SCHEMA_VERSION`]):
//!
//! ```sql
#![doc = include_str!("sqlite_schema.sql")]
//! ```
//!
//! Messages are ordered by `seq`, the insertion order, never by `server_rx`.

mod tables;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, TransactionBehavior};

use super::store::{MailboxStore, MailboxTables, StoreError};
use tables::Tables;

/// The schema version this relay writes and reads (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = include_str!("sqlite_schema.sql");

/// How long a transaction waits for another process holding the database's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// When a commit reaches the disk (`PRAGMA synchronous`); see the [module docs](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// `NORMAL`: survives the process being killed; a power loss may lose the last commits.
    #[default]
    Normal,
    /// `FULL`: every commit is fsynced before the relay answers.
    Full,
}

/// The relay's tables in SQLite. See the [module docs](self).
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    /// Between `begin_batch` and `end_batch`: transactions are savepoints.
    in_batch: bool,
}

fn db_err(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| StoreError::Database {
        what,
        source: Arc::new(e),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with [`Synchronous::Normal`].
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, Synchronous::Normal)
    }

    /// Opens (creating if needed) the database at `path`. Refuses a file that is not a
    /// SQLite database, one with another schema version, and one that has tables but no
    /// version (e.g. the Python server's database).
    pub fn open_with(path: impl AsRef<Path>, sync: Synchronous) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path.as_ref()).map_err(db_err("opening the database"))?;
        SqliteStore::setup(conn, sync)
    }

    /// A private database in memory (for tests: same SQL, nothing on disk).
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_in_memory().map_err(db_err("opening the database"))?;
        SqliteStore::setup(conn, Synchronous::Normal)
    }

    fn setup(conn: Connection, sync: Synchronous) -> Result<SqliteStore, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(db_err("setting the busy timeout"))?;
        // Small pages: rows are small, and every page a commit dirties is written to the WAL
        // whole. Takes effect only when the database is created.
        conn.execute_batch("PRAGMA page_size = 1024")
            .map_err(db_err("setting the page size"))?;
        // `journal_mode` answers with the mode in force (`memory` for an in-memory database).
        let _mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(db_err("switching to WAL mode"))?;
        let sync = match sync {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        // Checkpoint (copy the WAL back into the database, with an fsync) every 8 MiB of WAL
        // rather than every 1000 pages: the same hot pages are rewritten by every exchange, and
        // a checkpoint copies each page once however often it was rewritten.
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {sync}; PRAGMA wal_autocheckpoint = 8192; PRAGMA temp_store = MEMORY;"
        ))
        .map_err(db_err("setting synchronous"))?;
        conn.set_prepared_statement_cache_capacity(64);
        // The query planner stability guarantee: a cached statement keeps its plan whatever
        // is bound to it. Without it, this build of SQLite (STAT4) re-prepares a statement
        // whenever a bound value changes, which cost a third of the relay's time.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
            .map_err(db_err("enabling the query planner stability guarantee"))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(db_err("reading the schema version"))?;
        match version {
            0 => {
                let tables: i64 = conn
                    .query_row(
                        "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                        [],
                        |row| row.get(0),
                    )
                    .map_err(db_err("reading the schema"))?;
                if tables > 0 {
                    return Err(StoreError::Backend(
                        "the database has tables but no wormhole-relay schema version: it is \
                         not a wormhole-relay database (a Python server's database is not \
                         compatible); give --db a new file"
                            .into(),
                    ));
                }
                conn.execute_batch(&format!(
                    "BEGIN;\n{SCHEMA}\nPRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;"
                ))
                .map_err(db_err("creating the schema"))?;
            }
            SCHEMA_VERSION => {}
            other => {
                return Err(StoreError::Backend(format!(
                    "the database has schema version {other}, this relay knows only \
                     {SCHEMA_VERSION}"
                )))
            }
        }
        Ok(SqliteStore {
            conn,
            in_batch: false,
        })
    }

    /// The tables outside any transaction (each write commits by itself); for tests and tools.
    pub fn tables(&mut self) -> impl MailboxTables + '_ {
        Tables { conn: &self.conn }
    }
}

impl MailboxStore for SqliteStore {
    /// Outside a batch: one SQLite transaction (`BEGIN IMMEDIATE` … `COMMIT`). Inside a batch:
    /// a savepoint of the batch's transaction, released on success and rolled back on error.
    fn transaction<T>(
        &mut self,
        work: &mut dyn FnMut(&mut dyn MailboxTables) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.in_batch {
            let savepoint = self
                .conn
                .savepoint()
                .map_err(db_err("beginning a savepoint"))?;
            // Dropped on error: rolled back to where it began.
            let result = work(&mut Tables { conn: &savepoint })?;
            savepoint
                .commit()
                .map_err(db_err("releasing a savepoint"))?;
            return Ok(result);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err("beginning a transaction"))?;
        let result = work(&mut Tables { conn: &tx })?;
        tx.commit().map_err(db_err("committing"))?;
        Ok(result)
    }

    /// `BEGIN IMMEDIATE`: the batch holds the write lock until [`end_batch`].
    ///
    /// [`end_batch`]: MailboxStore::end_batch
    fn begin_batch(&mut self) -> Result<(), StoreError> {
        if !self.in_batch {
            self.conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(db_err("beginning a batch"))?;
            self.in_batch = true;
        }
        Ok(())
    }

    /// `COMMIT`; if that fails, `ROLLBACK` (everything since `begin_batch` is gone).
    fn end_batch(&mut self) -> Result<(), StoreError> {
        if !std::mem::take(&mut self.in_batch) {
            return Ok(());
        }
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            return Err(db_err("committing a batch")(e));
        }
        Ok(())
    }
}
