//! Stores that several relay instances share, and the feed of changes each instance listens
//! to ([`SharedStore`]); [`SharedMemoryStore`], an in-process one (for tests and simulations of
//! several relay processes); the Redis store is `relay::redis::RedisStore` (feature `redis`).
//!
//! A relay over a shared store runs every command's rules as one transaction of the store (as
//! over any store), and listens to the store's [`MailboxChange`]s so that its listeners get the
//! messages other instances add ([`Relay::shared_change`](super::Relay::shared_change)); the
//! runner [`server::spawn_shared`](super::server::spawn_shared) wires both.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use wormhole_transports::Listener;

use super::fanout::MailboxChange;
use super::memory::MemoryStore;
use super::server::{spawn_inner, RelayHandle, ServerOptions};
use super::store::{
    MailboxRecord, MailboxSide, MailboxStore, MailboxTables, MailboxUsage, NameplateRecord,
    NameplateSide, StoreError, StoredMessage,
};

/// A [`MailboxStore`] that other relay instances (processes) share, with a feed of the
/// changes any of them makes.
pub trait SharedStore: MailboxStore {
    /// A new feed of every change committed from now on by any instance (this one included),
    /// in commit order per mailbox. The feed ends when the store goes away; dropping the
    /// receiver stops it. After a gap it cannot fill (e.g. a long outage), the feed sends
    /// [`MailboxChange::Resync`].
    fn changes(&self) -> mpsc::UnboundedReceiver<MailboxChange>;
}

/// One [`MemoryStore`] shared by every clone of this handle, with a change feed per
/// [`SharedStore::changes`] call: several [`Relay`](super::Relay)s in one process (e.g. two
/// relay hosts of a simulation) behave as relay processes on one Redis.
///
/// Transactions of all clones are serialized by a mutex; each runs once (no conflicts). The
/// changes of a committed transaction go to every feed before `transaction` returns.
#[derive(Debug, Clone, Default)]
pub struct SharedMemoryStore {
    inner: Arc<Mutex<SharedInner>>,
}

#[derive(Debug, Default)]
struct SharedInner {
    store: MemoryStore,
    feeds: Vec<mpsc::UnboundedSender<MailboxChange>>,
}

impl SharedMemoryStore {
    /// An empty shared store.
    pub fn new() -> SharedMemoryStore {
        SharedMemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, SharedInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the tables as they are now (for checks in tests).
    pub fn snapshot(&self) -> MemoryStore {
        self.lock().store.clone()
    }

    /// Sends [`MailboxChange::Resync`] on every feed, as a feed does after a gap (to test
    /// what a relay does then).
    pub fn resync_all(&self) {
        self.lock()
            .feeds
            .retain(|feed| feed.send(MailboxChange::Resync).is_ok());
    }
}

impl MailboxStore for SharedMemoryStore {
    fn transaction<T>(
        &mut self,
        work: &mut dyn FnMut(&mut dyn MailboxTables) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut inner = self.lock();
        let mut changes = Vec::new();
        let result = inner.store.transaction(&mut |tx| {
            changes.clear();
            let mut recorder = Recorder {
                tables: tx,
                changes: &mut changes,
            };
            work(&mut recorder)
        });
        if result.is_ok() {
            inner.feeds.retain(|feed| {
                changes
                    .iter()
                    .all(|change| feed.send(change.clone()).is_ok())
            });
        }
        result
    }
}

impl SharedStore for SharedMemoryStore {
    fn changes(&self) -> mpsc::UnboundedReceiver<MailboxChange> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().feeds.push(tx);
        rx
    }
}

/// The mailboxes a running relay has listeners for (sorted), as its task last published
/// them: see [`spawn_shared_watched`].
pub type ListenedMailboxes = Arc<Mutex<Vec<(String, String)>>>;

/// Starts a relay as [`server::spawn_shared`](super::server::spawn_shared), publishing into
/// `listened` after every turn the mailboxes it has listeners for
/// ([`Relay::listened_mailboxes`](super::Relay::listened_mailboxes)), so that a test or a
/// simulation of several relay processes can check what each process still holds (for
/// example nothing, once every mailbox was closed through whichever process).
pub fn spawn_shared_watched<S: SharedStore + Send + 'static>(
    listeners: Vec<Box<dyn Listener>>,
    store: S,
    options: ServerOptions,
    clock: Arc<dyn crate::clock::Clock>,
    listened: ListenedMailboxes,
) -> RelayHandle {
    let changes = store.changes();
    spawn_inner(
        listeners,
        store,
        Some(changes),
        Some(listened),
        options,
        clock,
    )
}

/// Passes every call on to the tables and notes the changes a feed must report.
struct Recorder<'a, 'b> {
    tables: &'a mut dyn MailboxTables,
    changes: &'b mut Vec<MailboxChange>,
}

impl MailboxTables for Recorder<'_, '_> {
    fn app_ids(&self) -> Result<Vec<String>, StoreError> {
        self.tables.app_ids()
    }
    fn nameplate_names(&self, appid: &str) -> Result<Vec<String>, StoreError> {
        self.tables.nameplate_names(appid)
    }
    fn nameplate_names_of_len(&self, appid: &str, len: usize) -> Result<Vec<String>, StoreError> {
        self.tables.nameplate_names_of_len(appid, len)
    }
    fn nameplate(&self, appid: &str, name: &str) -> Result<Option<NameplateRecord>, StoreError> {
        self.tables.nameplate(appid, name)
    }
    fn insert_nameplate(
        &mut self,
        appid: &str,
        name: &str,
        mailbox_id: &str,
    ) -> Result<(), StoreError> {
        self.tables.insert_nameplate(appid, name, mailbox_id)
    }
    fn put_nameplate_side(
        &mut self,
        appid: &str,
        name: &str,
        side: NameplateSide,
    ) -> Result<(), StoreError> {
        self.tables.put_nameplate_side(appid, name, side)
    }
    fn delete_nameplate(&mut self, appid: &str, name: &str) -> Result<(), StoreError> {
        self.tables.delete_nameplate(appid, name)
    }
    fn delete_nameplate_sides_of(&mut self, appid: &str, side: &str) -> Result<(), StoreError> {
        self.tables.delete_nameplate_sides_of(appid, side)
    }
    fn delete_nameplates_for_mailbox(
        &mut self,
        appid: &str,
        mailbox_id: &str,
    ) -> Result<(), StoreError> {
        self.tables.delete_nameplates_for_mailbox(appid, mailbox_id)
    }
    fn mailbox_ids(&self, appid: &str) -> Result<Vec<String>, StoreError> {
        self.tables.mailbox_ids(appid)
    }
    fn idle_mailbox_ids(&self, appid: &str, old: f64) -> Result<Vec<String>, StoreError> {
        self.tables.idle_mailbox_ids(appid, old)
    }
    fn mailbox(&self, appid: &str, id: &str) -> Result<Option<MailboxRecord>, StoreError> {
        self.tables.mailbox(appid, id)
    }
    fn insert_mailbox(
        &mut self,
        appid: &str,
        id: &str,
        for_nameplate: bool,
        updated: f64,
    ) -> Result<(), StoreError> {
        self.tables
            .insert_mailbox(appid, id, for_nameplate, updated)
    }
    fn put_mailbox_side(
        &mut self,
        appid: &str,
        id: &str,
        side: MailboxSide,
    ) -> Result<(), StoreError> {
        self.tables.put_mailbox_side(appid, id, side)
    }
    fn touch_mailbox(&mut self, appid: &str, id: &str, when: f64) -> Result<(), StoreError> {
        self.tables.touch_mailbox(appid, id, when)
    }
    fn delete_mailbox(&mut self, appid: &str, id: &str) -> Result<(), StoreError> {
        self.tables.delete_mailbox(appid, id)?;
        self.changes.push(MailboxChange::Deleted {
            appid: appid.to_owned(),
            mailbox: id.to_owned(),
        });
        Ok(())
    }
    fn add_message(
        &mut self,
        appid: &str,
        mailbox_id: &str,
        message: StoredMessage,
    ) -> Result<(), StoreError> {
        self.tables.add_message(appid, mailbox_id, message)?;
        let count = self.tables.message_count(appid, mailbox_id)?;
        self.changes.push(MailboxChange::Added {
            appid: appid.to_owned(),
            mailbox: mailbox_id.to_owned(),
            count,
        });
        Ok(())
    }
    fn messages(&self, appid: &str, mailbox_id: &str) -> Result<Vec<StoredMessage>, StoreError> {
        self.tables.messages(appid, mailbox_id)
    }
    fn message_count(&self, appid: &str, mailbox_id: &str) -> Result<usize, StoreError> {
        self.tables.message_count(appid, mailbox_id)
    }
    fn mailbox_usage(&self, appid: &str, mailbox_id: &str) -> Result<MailboxUsage, StoreError> {
        self.tables.mailbox_usage(appid, mailbox_id)
    }
    fn messages_since(
        &self,
        appid: &str,
        mailbox_id: &str,
        start: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.tables.messages_since(appid, mailbox_id, start)
    }
}
