//! The relay's durable state, behind the [`MailboxStore`] trait.
//!
//! The trait is shaped like the Python mailbox server's tables (protocol.md §5), scoped by app id:
//!
//! | Python table | here |
//! |---|---|
//! | `nameplates(app_id, name, mailbox_id)` | [`NameplateRecord`] |
//! | `nameplate_sides(nameplates_id, side, claimed, added)` | [`NameplateSide`], inside its nameplate |
//! | `mailboxes(app_id, id, for_nameplate, updated)` | [`MailboxRecord`] |
//! | `mailbox_sides(mailbox_id, side, opened, mood, added)` | [`MailboxSide`], inside its mailbox |
//! | `messages(app_id, mailbox_id, side, phase, body, server_rx, msg_id)` | [`StoredMessage`] |
//!
//! The store holds rows only; every rule (claiming, crowding, when to delete) lives in
//! [`Relay`](super::Relay), so a backend is a plain mapping of the [`MailboxTables`] methods onto
//! its tables. Which connections listen to which mailbox is runtime state of the relay, not of
//! the store.
//!
//! # Transactions
//! The relay runs each client command's rules as **one** [`MailboxStore::transaction`]: every
//! row the command reads and writes goes through the [`MailboxTables`] handed to it, and the
//! changes are committed together (a durable backend makes them durable) before any reply to
//! the command leaves, or rolled back together if the command fails with a [`StoreError`]. A
//! command the rules refuse may still commit rows (the Python server's crowded quirk writes
//! its rows before refusing), so a refusal is a successful transaction whose result says
//! "refuse". The rules keep no copy of any row between transactions, so several relay
//! processes may share one backend that serializes their transactions (SQLite's locking, or an
//! optimistic engine that calls `work` again after a conflict: `work` is `FnMut` and must be,
//! and is, free of side effects outside the tables).
//!
//! Replays are ordered by insertion ([`MailboxTables::messages`]), never by wall-clock time.
//!
//! What stays per process: which connection listens to which mailbox. A relay process echoes
//! an `add` to its own listeners after the commit; several processes sharing one store would
//! also need to tell each other (e.g. a publish per mailbox), which is not built yet. A client
//! of another process still gets every message on its next `open` (the replay).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A failure of the storage backend. The relay answers the command that hit it with an `error`
/// frame (and rolls the command back); it never panics.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A row the operation needs does not exist (e.g. a side added to a missing mailbox).
    #[error("not found: {0}")]
    NotFound(String),
    /// The backend failed (I/O, database error, ...).
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// An optimistic backend's transaction kept conflicting with other writers and gave up.
    #[error("the store stayed busy: {attempts} attempts conflicted with other relay processes")]
    Contended {
        /// How many times the unit of work ran.
        attempts: u32,
    },
    /// The database failed while doing `what`.
    #[error("database error while {what}")]
    Database {
        /// What the store was doing.
        what: &'static str,
        /// The database's error.
        #[source]
        source: std::sync::Arc<dyn std::error::Error + Send + Sync>,
    },
}

/// One side's row for a nameplate (`nameplate_sides`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NameplateSide {
    /// The client's side string.
    pub side: String,
    /// Whether the side still claims the nameplate (false once it released it).
    pub claimed: bool,
    /// When the side first claimed it (seconds since the epoch).
    pub added: f64,
}

/// A nameplate and its sides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NameplateRecord {
    /// The mailbox the nameplate points at.
    pub mailbox_id: String,
    /// Every side that claimed it (in no particular order: a backend may sort them).
    pub sides: Vec<NameplateSide>,
}

/// One side's row for a mailbox (`mailbox_sides`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailboxSide {
    /// The client's side string.
    pub side: String,
    /// Whether the side has the mailbox open (false once it closed it).
    pub opened: bool,
    /// The mood given at `close`, if any.
    pub mood: Option<String>,
    /// When the side first opened it (seconds since the epoch).
    pub added: f64,
}

/// A mailbox and its sides (its messages are read with [`MailboxTables::messages`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailboxRecord {
    /// Whether it was created by a nameplate claim (rather than by a bare `open`).
    pub for_nameplate: bool,
    /// Last activity (open, add, or prune-time touch), seconds since the epoch.
    pub updated: f64,
    /// Every side that opened it (in no particular order: a backend may sort them).
    pub sides: Vec<MailboxSide>,
}

/// A message stored in a mailbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// The side that added it.
    pub side: String,
    /// Its phase.
    pub phase: String,
    /// Its body, exactly as the client sent it (normally hex).
    pub body: String,
    /// When the relay received the `add`.
    pub server_rx: f64,
    /// The `id` of the `add` (any JSON value the client chose; normally a string), or `None`.
    pub msg_id: Option<Value>,
}

impl StoredMessage {
    /// The bytes this message counts for in a mailbox's byte limit
    /// ([`Limits::bytes_per_mailbox`](super::Limits::bytes_per_mailbox)): its side, phase,
    /// body, and id as JSON text.
    pub fn counted_bytes(&self) -> usize {
        self.side.len()
            + self.phase.len()
            + self.body.len()
            + self.msg_id.as_ref().map_or(0, |id| id.to_string().len())
    }
}

/// What a mailbox holds, as the per-mailbox limits count it (see
/// [`MailboxTables::mailbox_usage`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxUsage {
    /// How many messages it holds.
    pub messages: usize,
    /// The sum of their [`StoredMessage::counted_bytes`].
    pub bytes: usize,
}

impl MailboxUsage {
    /// What `messages` count for.
    pub fn of(messages: &[StoredMessage]) -> MailboxUsage {
        MailboxUsage {
            messages: messages.len(),
            bytes: messages.iter().map(StoredMessage::counted_bytes).sum(),
        }
    }
}

/// The rows of nameplates, mailboxes and messages, scoped per app id, as seen inside one
/// transaction (see [`MailboxStore::transaction`]).
///
/// A failure is a [`StoreError`]. Mutations of a missing row's children (a side of a missing
/// nameplate, a message for a missing mailbox) fail with [`StoreError::NotFound`]; deleting
/// something missing is not an error.
pub trait MailboxTables {
    /// Every app id that has any nameplate or mailbox.
    fn app_ids(&self) -> Result<Vec<String>, StoreError>;

    /// The names of all nameplates of `appid` (any order).
    fn nameplate_names(&self, appid: &str) -> Result<Vec<String>, StoreError>;
    /// The names of the nameplates of `appid` that are `len` bytes long (any order). Nameplate
    /// allocation reads these per length, so that an optimistic backend sees no conflict
    /// with allocations of other lengths. A backend should override this when it keeps names
    /// by length.
    fn nameplate_names_of_len(&self, appid: &str, len: usize) -> Result<Vec<String>, StoreError> {
        let mut names = self.nameplate_names(appid)?;
        names.retain(|name| name.len() == len);
        Ok(names)
    }
    /// One nameplate, if it exists.
    fn nameplate(&self, appid: &str, name: &str) -> Result<Option<NameplateRecord>, StoreError>;
    /// Whether a nameplate exists (a backend may answer this faster than [`nameplate`]).
    ///
    /// [`nameplate`]: MailboxTables::nameplate
    fn has_nameplate(&self, appid: &str, name: &str) -> Result<bool, StoreError> {
        Ok(self.nameplate(appid, name)?.is_some())
    }
    /// Creates a nameplate with no sides, pointing at `mailbox_id` (replacing any old one).
    fn insert_nameplate(
        &mut self,
        appid: &str,
        name: &str,
        mailbox_id: &str,
    ) -> Result<(), StoreError>;
    /// Inserts a side row of a nameplate, or replaces the row with the same `side`.
    fn put_nameplate_side(
        &mut self,
        appid: &str,
        name: &str,
        side: NameplateSide,
    ) -> Result<(), StoreError>;
    /// Deletes a nameplate and its sides.
    fn delete_nameplate(&mut self, appid: &str, name: &str) -> Result<(), StoreError>;
    /// Deletes the rows of `side` from every nameplate of `appid` (the nameplates stay).
    fn delete_nameplate_sides_of(&mut self, appid: &str, side: &str) -> Result<(), StoreError>;
    /// Deletes every nameplate of `appid` that points at `mailbox_id`.
    fn delete_nameplates_for_mailbox(
        &mut self,
        appid: &str,
        mailbox_id: &str,
    ) -> Result<(), StoreError>;

    /// The ids of all mailboxes of `appid` (any order).
    fn mailbox_ids(&self, appid: &str) -> Result<Vec<String>, StoreError>;
    /// The ids of the mailboxes of `appid` not updated after `old` (any order). A backend
    /// should override this when it keeps mailboxes ordered by `updated`.
    fn idle_mailbox_ids(&self, appid: &str, old: f64) -> Result<Vec<String>, StoreError> {
        let mut idle = Vec::new();
        for id in self.mailbox_ids(appid)? {
            if self.mailbox(appid, &id)?.is_some_and(|m| m.updated <= old) {
                idle.push(id);
            }
        }
        Ok(idle)
    }
    /// One mailbox, if it exists.
    fn mailbox(&self, appid: &str, id: &str) -> Result<Option<MailboxRecord>, StoreError>;
    /// Whether a mailbox exists (a backend may answer this faster than [`mailbox`]).
    ///
    /// [`mailbox`]: MailboxTables::mailbox
    fn has_mailbox(&self, appid: &str, id: &str) -> Result<bool, StoreError> {
        Ok(self.mailbox(appid, id)?.is_some())
    }
    /// Creates an empty mailbox with no sides (replacing any old one).
    fn insert_mailbox(
        &mut self,
        appid: &str,
        id: &str,
        for_nameplate: bool,
        updated: f64,
    ) -> Result<(), StoreError>;
    /// Inserts a side row of a mailbox, or replaces the row with the same `side`.
    fn put_mailbox_side(
        &mut self,
        appid: &str,
        id: &str,
        side: MailboxSide,
    ) -> Result<(), StoreError>;
    /// Sets a mailbox's `updated` time (a missing mailbox is ignored).
    fn touch_mailbox(&mut self, appid: &str, id: &str, when: f64) -> Result<(), StoreError>;
    /// Deletes a mailbox with its sides and messages.
    fn delete_mailbox(&mut self, appid: &str, id: &str) -> Result<(), StoreError>;

    /// Appends a message to a mailbox.
    fn add_message(
        &mut self,
        appid: &str,
        mailbox_id: &str,
        message: StoredMessage,
    ) -> Result<(), StoreError>;
    /// The messages of a mailbox in insertion order (the order of [`add_message`] calls that
    /// were committed), whatever their `server_rx`.
    ///
    /// [`add_message`]: MailboxTables::add_message
    fn messages(&self, appid: &str, mailbox_id: &str) -> Result<Vec<StoredMessage>, StoreError>;

    /// How many messages a mailbox holds (0 for a missing one). A backend should override
    /// this when it can count without reading the messages.
    fn message_count(&self, appid: &str, mailbox_id: &str) -> Result<usize, StoreError> {
        Ok(self.messages(appid, mailbox_id)?.len())
    }

    /// How many messages a mailbox holds and their bytes ([`MailboxUsage`]; zero for a
    /// missing mailbox), read inside the transaction so that the per-mailbox limits hold
    /// across relay processes. A backend should override this when it can answer without
    /// reading the messages.
    fn mailbox_usage(&self, appid: &str, mailbox_id: &str) -> Result<MailboxUsage, StoreError> {
        Ok(MailboxUsage::of(&self.messages(appid, mailbox_id)?))
    }

    /// The messages of a mailbox from the `start`-th on (0-based, insertion order). A
    /// backend should override this when it can skip the first ones without reading them.
    fn messages_since(
        &self,
        appid: &str,
        mailbox_id: &str,
        start: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let mut messages = self.messages(appid, mailbox_id)?;
        Ok(messages.split_off(start.min(messages.len())))
    }
}

/// A store of [`MailboxTables`] that runs units of work as transactions.
pub trait MailboxStore {
    /// Runs `work` as one atomic step over the tables. If `work` returns `Ok`, everything it
    /// changed is committed before this returns (durably, for a durable backend); if it returns
    /// `Err`, or the commit fails, nothing it changed remains and the error is returned.
    ///
    /// A backend with optimistic concurrency may call `work` more than once (after a conflict,
    /// on a fresh view of the tables); only the last call's changes and result count.
    fn transaction<T>(
        &mut self,
        work: &mut dyn FnMut(&mut dyn MailboxTables) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;

    /// Opens a batch (a group commit). The transactions until [`end_batch`] still each apply
    /// or roll back as a unit, but a durable backend may defer making them durable to
    /// `end_batch`, so their effects must not be shown to anyone before it returns `Ok` (the
    /// relay holds back its replies; see [`Relay::begin_batch`](super::Relay::begin_batch)).
    /// The default does nothing: every transaction commits by itself.
    ///
    /// [`end_batch`]: MailboxStore::end_batch
    fn begin_batch(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Closes the batch: every transaction since [`begin_batch`] is committed, durably for a
    /// durable backend. On `Err`, a backend that deferred them has lost all of them.
    ///
    /// [`begin_batch`]: MailboxStore::begin_batch
    fn end_batch(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}
