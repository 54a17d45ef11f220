//! The relay's durable state, kept outside the relay host so that it survives a crash.

use std::sync::{Arc, Mutex, MutexGuard};

use wormhole::relay::{
    MailboxRecord, MailboxSide, MailboxStore, MemoryStore, NameplateRecord, NameplateSide,
    StoreError, StoredMessage,
};

/// A [`MemoryStore`] shared between the simulation (which inspects it) and every boot of the
/// relay host (a restarted relay finds what the crashed one stored: the store stands for the
/// relay's disk). Every call is one atomic step, like a committed transaction.
#[derive(Debug, Clone, Default)]
pub struct SharedStore(Arc<Mutex<MemoryStore>>);

impl SharedStore {
    fn lock(&self) -> MutexGuard<'_, MemoryStore> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the relay holds anything (any nameplate or mailbox of any app id).
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// What the relay holds for `appid`: nameplate names and mailbox ids.
    pub fn contents(&self, appid: &str) -> (Vec<String>, Vec<String>) {
        let store = self.lock();
        let mut names = store.nameplate_names(appid).unwrap_or_default();
        let mut boxes = store.mailbox_ids(appid).unwrap_or_default();
        names.sort();
        boxes.sort();
        (names, boxes)
    }
}

impl MailboxStore for SharedStore {
    fn app_ids(&self) -> Result<Vec<String>, StoreError> {
        self.lock().app_ids()
    }
    fn nameplate_names(&self, appid: &str) -> Result<Vec<String>, StoreError> {
        self.lock().nameplate_names(appid)
    }
    fn nameplate(&self, appid: &str, name: &str) -> Result<Option<NameplateRecord>, StoreError> {
        self.lock().nameplate(appid, name)
    }
    fn insert_nameplate(
        &mut self,
        appid: &str,
        name: &str,
        mailbox_id: &str,
    ) -> Result<(), StoreError> {
        self.lock().insert_nameplate(appid, name, mailbox_id)
    }
    fn put_nameplate_side(
        &mut self,
        appid: &str,
        name: &str,
        side: NameplateSide,
    ) -> Result<(), StoreError> {
        self.lock().put_nameplate_side(appid, name, side)
    }
    fn delete_nameplate(&mut self, appid: &str, name: &str) -> Result<(), StoreError> {
        self.lock().delete_nameplate(appid, name)
    }
    fn delete_nameplate_sides_of(&mut self, appid: &str, side: &str) -> Result<(), StoreError> {
        self.lock().delete_nameplate_sides_of(appid, side)
    }
    fn delete_nameplates_for_mailbox(
        &mut self,
        appid: &str,
        mailbox_id: &str,
    ) -> Result<(), StoreError> {
        self.lock().delete_nameplates_for_mailbox(appid, mailbox_id)
    }
    fn mailbox_ids(&self, appid: &str) -> Result<Vec<String>, StoreError> {
        self.lock().mailbox_ids(appid)
    }
    fn mailbox(&self, appid: &str, id: &str) -> Result<Option<MailboxRecord>, StoreError> {
        self.lock().mailbox(appid, id)
    }
    fn insert_mailbox(
        &mut self,
        appid: &str,
        id: &str,
        for_nameplate: bool,
        updated: f64,
    ) -> Result<(), StoreError> {
        self.lock()
            .insert_mailbox(appid, id, for_nameplate, updated)
    }
    fn put_mailbox_side(
        &mut self,
        appid: &str,
        id: &str,
        side: MailboxSide,
    ) -> Result<(), StoreError> {
        self.lock().put_mailbox_side(appid, id, side)
    }
    fn touch_mailbox(&mut self, appid: &str, id: &str, when: f64) -> Result<(), StoreError> {
        self.lock().touch_mailbox(appid, id, when)
    }
    fn delete_mailbox(&mut self, appid: &str, id: &str) -> Result<(), StoreError> {
        self.lock().delete_mailbox(appid, id)
    }
    fn add_message(
        &mut self,
        appid: &str,
        mailbox_id: &str,
        message: StoredMessage,
    ) -> Result<(), StoreError> {
        self.lock().add_message(appid, mailbox_id, message)
    }
    fn messages(&self, appid: &str, mailbox_id: &str) -> Result<Vec<StoredMessage>, StoreError> {
        self.lock().messages(appid, mailbox_id)
    }
}
