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
//! [`Relay`](super::Relay), so a SQLite backend is a plain mapping of these methods onto tables.
//! Which connections listen to which mailbox is runtime state of the relay, not of the store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A failure of the storage backend. The relay answers the command that hit it with an `error`
/// frame; it never panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A row the operation needs does not exist (e.g. a side added to a missing mailbox).
    #[error("not found: {0}")]
    NotFound(String),
    /// The backend failed (I/O, database error, ...).
    #[error("storage backend failed: {0}")]
    Backend(String),
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
    /// Every side that claimed it, in claim order.
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

/// A mailbox and its sides (its messages are read with [`MailboxStore::messages`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailboxRecord {
    /// Whether it was created by a nameplate claim (rather than by a bare `open`).
    pub for_nameplate: bool,
    /// Last activity (open, add, or prune-time touch), seconds since the epoch.
    pub updated: f64,
    /// Every side that opened it, in open order.
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

/// Storage for nameplates, mailboxes and messages, scoped per app id.
///
/// Methods are synchronous; a failure is a [`StoreError`]. Mutations of a missing row's children
/// (a side of a missing nameplate, a message for a missing mailbox) fail with
/// [`StoreError::NotFound`]; deleting something missing is not an error.
pub trait MailboxStore {
    /// Every app id that has any nameplate or mailbox.
    fn app_ids(&self) -> Result<Vec<String>, StoreError>;

    /// The names of all nameplates of `appid` (any order).
    fn nameplate_names(&self, appid: &str) -> Result<Vec<String>, StoreError>;
    /// One nameplate, if it exists.
    fn nameplate(&self, appid: &str, name: &str) -> Result<Option<NameplateRecord>, StoreError>;
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
    /// One mailbox, if it exists.
    fn mailbox(&self, appid: &str, id: &str) -> Result<Option<MailboxRecord>, StoreError>;
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
    /// Sets a mailbox's `updated` time.
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
    /// The messages of a mailbox in `server_rx` order (insertion order among equal times).
    fn messages(&self, appid: &str, mailbox_id: &str) -> Result<Vec<StoredMessage>, StoreError>;
}

/// A mailbox together with its messages, as [`MemoryStore`] keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MemoryMailbox {
    record: MailboxRecord,
    messages: Vec<StoredMessage>,
}

/// The tables of one app id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct MemoryApp {
    nameplates: BTreeMap<String, NameplateRecord>,
    mailboxes: BTreeMap<String, MemoryMailbox>,
}

impl MemoryApp {
    fn is_empty(&self) -> bool {
        self.nameplates.is_empty() && self.mailboxes.is_empty()
    }
}

/// An in-memory [`MailboxStore`]: the whole state in plain maps. It never fails, and it
/// serializes with serde (e.g. to snapshot a relay's state).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryStore {
    apps: BTreeMap<String, MemoryApp>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Whether nothing at all is stored (no nameplate, mailbox or message in any app id).
    pub fn is_empty(&self) -> bool {
        self.app_ids().is_ok_and(|apps| apps.is_empty())
    }

    fn app_mut(&mut self, appid: &str) -> &mut MemoryApp {
        self.apps.entry(appid.to_owned()).or_default()
    }

    fn drop_app_if_empty(&mut self, appid: &str) {
        if self.apps.get(appid).is_some_and(MemoryApp::is_empty) {
            self.apps.remove(appid);
        }
    }

    fn mailbox_mut(&mut self, appid: &str, id: &str) -> Result<&mut MemoryMailbox, StoreError> {
        self.apps
            .get_mut(appid)
            .and_then(|app| app.mailboxes.get_mut(id))
            .ok_or_else(|| StoreError::NotFound(format!("mailbox {id} of app {appid}")))
    }
}

impl MailboxStore for MemoryStore {
    fn app_ids(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.apps.keys().cloned().collect())
    }

    fn nameplate_names(&self, appid: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .apps
            .get(appid)
            .map(|app| app.nameplates.keys().cloned().collect())
            .unwrap_or_default())
    }

    fn nameplate(&self, appid: &str, name: &str) -> Result<Option<NameplateRecord>, StoreError> {
        Ok(self
            .apps
            .get(appid)
            .and_then(|app| app.nameplates.get(name))
            .cloned())
    }

    fn insert_nameplate(
        &mut self,
        appid: &str,
        name: &str,
        mailbox_id: &str,
    ) -> Result<(), StoreError> {
        self.app_mut(appid).nameplates.insert(
            name.to_owned(),
            NameplateRecord {
                mailbox_id: mailbox_id.to_owned(),
                sides: Vec::new(),
            },
        );
        Ok(())
    }

    fn put_nameplate_side(
        &mut self,
        appid: &str,
        name: &str,
        side: NameplateSide,
    ) -> Result<(), StoreError> {
        let record = self
            .apps
            .get_mut(appid)
            .and_then(|app| app.nameplates.get_mut(name))
            .ok_or_else(|| StoreError::NotFound(format!("nameplate {name} of app {appid}")))?;
        match record.sides.iter_mut().find(|row| row.side == side.side) {
            Some(row) => *row = side,
            None => record.sides.push(side),
        }
        Ok(())
    }

    fn delete_nameplate(&mut self, appid: &str, name: &str) -> Result<(), StoreError> {
        if let Some(app) = self.apps.get_mut(appid) {
            app.nameplates.remove(name);
        }
        self.drop_app_if_empty(appid);
        Ok(())
    }

    fn delete_nameplate_sides_of(&mut self, appid: &str, side: &str) -> Result<(), StoreError> {
        if let Some(app) = self.apps.get_mut(appid) {
            for record in app.nameplates.values_mut() {
                record.sides.retain(|row| row.side != side);
            }
        }
        Ok(())
    }

    fn delete_nameplates_for_mailbox(
        &mut self,
        appid: &str,
        mailbox_id: &str,
    ) -> Result<(), StoreError> {
        if let Some(app) = self.apps.get_mut(appid) {
            app.nameplates
                .retain(|_, record| record.mailbox_id != mailbox_id);
        }
        self.drop_app_if_empty(appid);
        Ok(())
    }

    fn mailbox_ids(&self, appid: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .apps
            .get(appid)
            .map(|app| app.mailboxes.keys().cloned().collect())
            .unwrap_or_default())
    }

    fn mailbox(&self, appid: &str, id: &str) -> Result<Option<MailboxRecord>, StoreError> {
        Ok(self
            .apps
            .get(appid)
            .and_then(|app| app.mailboxes.get(id))
            .map(|mailbox| mailbox.record.clone()))
    }

    fn insert_mailbox(
        &mut self,
        appid: &str,
        id: &str,
        for_nameplate: bool,
        updated: f64,
    ) -> Result<(), StoreError> {
        self.app_mut(appid).mailboxes.insert(
            id.to_owned(),
            MemoryMailbox {
                record: MailboxRecord {
                    for_nameplate,
                    updated,
                    sides: Vec::new(),
                },
                messages: Vec::new(),
            },
        );
        Ok(())
    }

    fn put_mailbox_side(
        &mut self,
        appid: &str,
        id: &str,
        side: MailboxSide,
    ) -> Result<(), StoreError> {
        let record = &mut self.mailbox_mut(appid, id)?.record;
        match record.sides.iter_mut().find(|row| row.side == side.side) {
            Some(row) => *row = side,
            None => record.sides.push(side),
        }
        Ok(())
    }

    fn touch_mailbox(&mut self, appid: &str, id: &str, when: f64) -> Result<(), StoreError> {
        if let Ok(mailbox) = self.mailbox_mut(appid, id) {
            mailbox.record.updated = when;
        }
        Ok(())
    }

    fn delete_mailbox(&mut self, appid: &str, id: &str) -> Result<(), StoreError> {
        if let Some(app) = self.apps.get_mut(appid) {
            app.mailboxes.remove(id);
        }
        self.drop_app_if_empty(appid);
        Ok(())
    }

    fn add_message(
        &mut self,
        appid: &str,
        mailbox_id: &str,
        message: StoredMessage,
    ) -> Result<(), StoreError> {
        self.mailbox_mut(appid, mailbox_id)?.messages.push(message);
        Ok(())
    }

    fn messages(&self, appid: &str, mailbox_id: &str) -> Result<Vec<StoredMessage>, StoreError> {
        let mut messages = self
            .apps
            .get(appid)
            .and_then(|app| app.mailboxes.get(mailbox_id))
            .map(|mailbox| mailbox.messages.clone())
            .unwrap_or_default();
        // Stable: equal times keep insertion order.
        messages.sort_by(|a, b| a.server_rx.total_cmp(&b.server_rx));
        Ok(messages)
    }
}
