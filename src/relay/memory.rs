//! [`MemoryStore`]: the relay's tables in plain maps, with transactions that roll back through
//! an undo log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::store::{
    MailboxRecord, MailboxSide, MailboxStore, MailboxTables, MailboxUsage, NameplateRecord,
    NameplateSide, StoreError, StoredMessage,
};

/// A mailbox together with its messages, as [`MemoryStore`] keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MemoryMailbox {
    record: MailboxRecord,
    /// In insertion order.
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

/// An in-memory [`MailboxStore`]: the whole state in plain maps. It never fails by itself (a
/// unit of work that fails is rolled back), and it serializes with serde (e.g. to snapshot a
/// relay's state).
///
/// Its [`MailboxTables`] methods may also be called directly, outside any transaction (tests
/// and tools read it that way).
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
        self.apps.is_empty()
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

    /// Puts back a nameplate as it was (`None`: absent).
    fn restore_nameplate(&mut self, appid: &str, name: &str, old: Option<NameplateRecord>) {
        match old {
            Some(record) => {
                self.app_mut(appid)
                    .nameplates
                    .insert(name.to_owned(), record);
            }
            None => {
                if let Some(app) = self.apps.get_mut(appid) {
                    app.nameplates.remove(name);
                }
                self.drop_app_if_empty(appid);
            }
        }
    }

    /// Puts back a mailbox as it was (`None`: absent).
    fn restore_mailbox(&mut self, appid: &str, id: &str, old: Option<MemoryMailbox>) {
        match old {
            Some(mailbox) => {
                self.app_mut(appid).mailboxes.insert(id.to_owned(), mailbox);
            }
            None => {
                if let Some(app) = self.apps.get_mut(appid) {
                    app.mailboxes.remove(id);
                }
                self.drop_app_if_empty(appid);
            }
        }
    }

    fn nameplate_owned(&self, appid: &str, name: &str) -> Option<NameplateRecord> {
        self.apps
            .get(appid)
            .and_then(|app| app.nameplates.get(name))
            .cloned()
    }
}

impl MailboxStore for MemoryStore {
    fn transaction<T>(
        &mut self,
        work: &mut dyn FnMut(&mut dyn MailboxTables) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut tx = MemoryTx {
            store: self,
            undo: Vec::new(),
        };
        let result = work(&mut tx);
        if result.is_err() {
            tx.roll_back();
        }
        result
    }
}

/// How to undo one change.
enum Undo {
    /// Put this nameplate back as it was.
    Nameplate {
        appid: String,
        name: String,
        old: Option<NameplateRecord>,
    },
    /// Put this mailbox (with its messages) back as it was.
    Mailbox {
        appid: String,
        id: String,
        old: Option<MemoryMailbox>,
    },
    /// Put this mailbox's record (not its messages) back as it was.
    MailboxRecord {
        appid: String,
        id: String,
        old: MailboxRecord,
    },
    /// Remove the last message of this mailbox.
    PopMessage { appid: String, id: String },
}

/// A transaction on a [`MemoryStore`]: changes apply at once and are recorded in an undo log,
/// played backwards on rollback. Cheap: an `add` records only which mailbox to pop.
struct MemoryTx<'a> {
    store: &'a mut MemoryStore,
    undo: Vec<Undo>,
}

impl MemoryTx<'_> {
    fn roll_back(&mut self) {
        while let Some(undo) = self.undo.pop() {
            match undo {
                Undo::Nameplate { appid, name, old } => {
                    self.store.restore_nameplate(&appid, &name, old)
                }
                Undo::Mailbox { appid, id, old } => self.store.restore_mailbox(&appid, &id, old),
                Undo::MailboxRecord { appid, id, old } => {
                    if let Ok(mailbox) = self.store.mailbox_mut(&appid, &id) {
                        mailbox.record = old;
                    }
                }
                Undo::PopMessage { appid, id } => {
                    if let Ok(mailbox) = self.store.mailbox_mut(&appid, &id) {
                        mailbox.messages.pop();
                    }
                }
            }
        }
    }

    fn save_nameplate(&mut self, appid: &str, name: &str) {
        let old = self.store.nameplate_owned(appid, name);
        self.undo.push(Undo::Nameplate {
            appid: appid.to_owned(),
            name: name.to_owned(),
            old,
        });
    }

    fn save_mailbox_record(&mut self, appid: &str, id: &str) {
        if let Ok(mailbox) = self.store.mailbox_mut(appid, id) {
            let old = mailbox.record.clone();
            self.undo.push(Undo::MailboxRecord {
                appid: appid.to_owned(),
                id: id.to_owned(),
                old,
            });
        }
    }

    /// Removes a whole mailbox, keeping it in the undo log.
    fn take_mailbox(&mut self, appid: &str, id: &str) {
        let old = self
            .store
            .apps
            .get_mut(appid)
            .and_then(|app| app.mailboxes.remove(id));
        self.store.drop_app_if_empty(appid);
        if old.is_some() {
            self.undo.push(Undo::Mailbox {
                appid: appid.to_owned(),
                id: id.to_owned(),
                old,
            });
        }
    }
}

impl MailboxTables for MemoryTx<'_> {
    fn app_ids(&self) -> Result<Vec<String>, StoreError> {
        self.store.app_ids()
    }

    fn nameplate_names(&self, appid: &str) -> Result<Vec<String>, StoreError> {
        self.store.nameplate_names(appid)
    }

    fn nameplate(&self, appid: &str, name: &str) -> Result<Option<NameplateRecord>, StoreError> {
        self.store.nameplate(appid, name)
    }

    fn insert_nameplate(
        &mut self,
        appid: &str,
        name: &str,
        mailbox_id: &str,
    ) -> Result<(), StoreError> {
        self.save_nameplate(appid, name);
        self.store.insert_nameplate(appid, name, mailbox_id)
    }

    fn put_nameplate_side(
        &mut self,
        appid: &str,
        name: &str,
        side: NameplateSide,
    ) -> Result<(), StoreError> {
        self.save_nameplate(appid, name);
        self.store.put_nameplate_side(appid, name, side)
    }

    fn delete_nameplate(&mut self, appid: &str, name: &str) -> Result<(), StoreError> {
        self.save_nameplate(appid, name);
        self.store.delete_nameplate(appid, name)
    }

    fn delete_nameplate_sides_of(&mut self, appid: &str, side: &str) -> Result<(), StoreError> {
        let touched: Vec<String> = self
            .store
            .apps
            .get(appid)
            .map(|app| {
                app.nameplates
                    .iter()
                    .filter(|(_, record)| record.sides.iter().any(|row| row.side == side))
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .unwrap_or_default();
        for name in &touched {
            self.save_nameplate(appid, name);
        }
        self.store.delete_nameplate_sides_of(appid, side)
    }

    fn delete_nameplates_for_mailbox(
        &mut self,
        appid: &str,
        mailbox_id: &str,
    ) -> Result<(), StoreError> {
        let touched: Vec<String> = self
            .store
            .apps
            .get(appid)
            .map(|app| {
                app.nameplates
                    .iter()
                    .filter(|(_, record)| record.mailbox_id == mailbox_id)
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .unwrap_or_default();
        for name in &touched {
            self.save_nameplate(appid, name);
        }
        self.store.delete_nameplates_for_mailbox(appid, mailbox_id)
    }

    fn mailbox_ids(&self, appid: &str) -> Result<Vec<String>, StoreError> {
        self.store.mailbox_ids(appid)
    }

    fn mailbox(&self, appid: &str, id: &str) -> Result<Option<MailboxRecord>, StoreError> {
        self.store.mailbox(appid, id)
    }

    fn insert_mailbox(
        &mut self,
        appid: &str,
        id: &str,
        for_nameplate: bool,
        updated: f64,
    ) -> Result<(), StoreError> {
        // Whatever was there (normally nothing) goes to the undo log whole.
        self.take_mailbox(appid, id);
        self.undo.push(Undo::Mailbox {
            appid: appid.to_owned(),
            id: id.to_owned(),
            old: None,
        });
        self.store.insert_mailbox(appid, id, for_nameplate, updated)
    }

    fn put_mailbox_side(
        &mut self,
        appid: &str,
        id: &str,
        side: MailboxSide,
    ) -> Result<(), StoreError> {
        self.save_mailbox_record(appid, id);
        self.store.put_mailbox_side(appid, id, side)
    }

    fn touch_mailbox(&mut self, appid: &str, id: &str, when: f64) -> Result<(), StoreError> {
        self.save_mailbox_record(appid, id);
        self.store.touch_mailbox(appid, id, when)
    }

    fn delete_mailbox(&mut self, appid: &str, id: &str) -> Result<(), StoreError> {
        self.take_mailbox(appid, id);
        Ok(())
    }

    fn add_message(
        &mut self,
        appid: &str,
        mailbox_id: &str,
        message: StoredMessage,
    ) -> Result<(), StoreError> {
        self.store.add_message(appid, mailbox_id, message)?;
        self.undo.push(Undo::PopMessage {
            appid: appid.to_owned(),
            id: mailbox_id.to_owned(),
        });
        Ok(())
    }

    fn messages(&self, appid: &str, mailbox_id: &str) -> Result<Vec<StoredMessage>, StoreError> {
        self.store.messages(appid, mailbox_id)
    }

    fn message_count(&self, appid: &str, mailbox_id: &str) -> Result<usize, StoreError> {
        self.store.message_count(appid, mailbox_id)
    }

    fn mailbox_usage(&self, appid: &str, mailbox_id: &str) -> Result<MailboxUsage, StoreError> {
        self.store.mailbox_usage(appid, mailbox_id)
    }

    fn messages_since(
        &self,
        appid: &str,
        mailbox_id: &str,
        start: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.store.messages_since(appid, mailbox_id, start)
    }
}

impl MailboxTables for MemoryStore {
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
        Ok(self.nameplate_owned(appid, name))
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
        Ok(self
            .apps
            .get(appid)
            .and_then(|app| app.mailboxes.get(mailbox_id))
            .map(|mailbox| mailbox.messages.clone())
            .unwrap_or_default())
    }

    fn message_count(&self, appid: &str, mailbox_id: &str) -> Result<usize, StoreError> {
        Ok(self
            .apps
            .get(appid)
            .and_then(|app| app.mailboxes.get(mailbox_id))
            .map_or(0, |mailbox| mailbox.messages.len()))
    }

    fn mailbox_usage(&self, appid: &str, mailbox_id: &str) -> Result<MailboxUsage, StoreError> {
        let messages = self
            .apps
            .get(appid)
            .and_then(|app| app.mailboxes.get(mailbox_id))
            .map_or(&[][..], |mailbox| &mailbox.messages[..]);
        Ok(MailboxUsage::of(messages))
    }

    fn messages_since(
        &self,
        appid: &str,
        mailbox_id: &str,
        start: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        Ok(self
            .apps
            .get(appid)
            .and_then(|app| app.mailboxes.get(mailbox_id))
            .and_then(|mailbox| mailbox.messages.get(start..))
            .map(<[StoredMessage]>::to_vec)
            .unwrap_or_default())
    }
}
