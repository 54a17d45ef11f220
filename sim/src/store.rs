//! The relay's durable state, kept outside the relay host so that it survives a crash.

use std::sync::{Arc, Mutex, MutexGuard};

use wormhole::relay::{MailboxStore, MailboxTables, MemoryStore, StoreError};

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
        let (mut names, mut boxes) = self
            .lock()
            .transaction(&mut |tx| Ok((tx.nameplate_names(appid)?, tx.mailbox_ids(appid)?)))
            .unwrap_or_default();
        names.sort();
        boxes.sort();
        (names, boxes)
    }
}

impl MailboxStore for SharedStore {
    fn transaction<T>(
        &mut self,
        work: &mut dyn FnMut(&mut dyn MailboxTables) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.lock().transaction(work)
    }
}
