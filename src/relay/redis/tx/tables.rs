//! The [`MailboxTables`] of a [`RedisTx`]: each method maps onto the transaction's view
//! (`state`) of the keys laid out in `keys`.

use super::state::backend;
use super::RedisTx;
use crate::relay::fanout::MailboxChange;
use crate::relay::store::{
    MailboxRecord, MailboxSide, MailboxTables, MailboxUsage, NameplateRecord, NameplateSide,
    StoreError, StoredMessage,
};

impl MailboxTables for RedisTx<'_> {
    fn app_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut state = self.state.borrow_mut();
        let key = state.keys.apps();
        let mut apps = Vec::new();
        for appid in state.members(&key, false)? {
            let names = state.keys.nameplate_names(&appid);
            let mailboxes = state.keys.mailboxes(&appid);
            if state.members(&names, false)?.is_empty()
                && state.members(&mailboxes, true)?.is_empty()
            {
                // An app id whose last rows went: forget it (as the other stores do).
                state.set_remove(key.clone(), &appid);
            } else {
                apps.push(appid);
            }
        }
        Ok(apps)
    }

    fn nameplate_names(&self, appid: &str) -> Result<Vec<String>, StoreError> {
        let mut state = self.state.borrow_mut();
        let key = state.keys.nameplate_names(appid);
        state.members(&key, false)
    }

    fn nameplate_names_of_len(&self, appid: &str, len: usize) -> Result<Vec<String>, StoreError> {
        let mut state = self.state.borrow_mut();
        let key = state.keys.names_of_len(appid, len);
        state.members(&key, false)
    }

    fn nameplate(&self, appid: &str, name: &str) -> Result<Option<NameplateRecord>, StoreError> {
        self.state.borrow_mut().nameplate(appid, name)
    }

    fn insert_nameplate(
        &mut self,
        appid: &str,
        name: &str,
        mailbox_id: &str,
    ) -> Result<(), StoreError> {
        let state = self.state.get_mut();
        // Replacing: the old record's index entries go first.
        state.delete_nameplate(appid, name)?;
        state.put_nameplate(
            appid,
            name,
            NameplateRecord {
                mailbox_id: mailbox_id.to_owned(),
                sides: Vec::new(),
            },
        );
        state.set_add(state.keys.apps(), appid);
        state.set_add(state.keys.nameplate_names(appid), name);
        state.set_add(state.keys.names_of_len(appid, name.len()), name);
        state.set_add(state.keys.by_mailbox(appid, mailbox_id), name);
        Ok(())
    }

    fn put_nameplate_side(
        &mut self,
        appid: &str,
        name: &str,
        side: NameplateSide,
    ) -> Result<(), StoreError> {
        let state = self.state.get_mut();
        let mut record = state
            .nameplate(appid, name)?
            .ok_or_else(|| StoreError::NotFound(format!("nameplate {name} of app {appid}")))?;
        let side_key = state.keys.by_side(appid, &side.side);
        match record.sides.iter_mut().find(|row| row.side == side.side) {
            Some(row) => *row = side,
            None => record.sides.push(side),
        }
        state.put_nameplate(appid, name, record);
        state.set_add(side_key, name);
        Ok(())
    }

    fn delete_nameplate(&mut self, appid: &str, name: &str) -> Result<(), StoreError> {
        self.state.get_mut().delete_nameplate(appid, name)
    }

    fn delete_nameplate_sides_of(&mut self, appid: &str, side: &str) -> Result<(), StoreError> {
        let state = self.state.get_mut();
        let index = state.keys.by_side(appid, side);
        for name in state.members(&index, false)? {
            state.set_remove(index.clone(), &name);
            let Some(mut record) = state.nameplate(appid, &name)? else {
                continue;
            };
            let before = record.sides.len();
            record.sides.retain(|row| row.side != side);
            if record.sides.len() != before {
                state.put_nameplate(appid, &name, record);
            }
        }
        Ok(())
    }

    fn delete_nameplates_for_mailbox(
        &mut self,
        appid: &str,
        mailbox_id: &str,
    ) -> Result<(), StoreError> {
        let state = self.state.get_mut();
        let index = state.keys.by_mailbox(appid, mailbox_id);
        for name in state.members(&index, false)? {
            if state
                .nameplate(appid, &name)?
                .is_some_and(|record| record.mailbox_id == mailbox_id)
            {
                state.delete_nameplate(appid, &name)?;
            } else {
                state.set_remove(index.clone(), &name);
            }
        }
        Ok(())
    }

    fn mailbox_ids(&self, appid: &str) -> Result<Vec<String>, StoreError> {
        let mut state = self.state.borrow_mut();
        let key = state.keys.mailboxes(appid);
        state.members(&key, true)
    }

    fn idle_mailbox_ids(&self, appid: &str, old: f64) -> Result<Vec<String>, StoreError> {
        let mut state = self.state.borrow_mut();
        let key = state.keys.mailboxes(appid);
        if state
            .sets
            .get(&key)
            .is_some_and(|v| v.loaded.is_some() || !v.added.is_empty() || !v.removed.is_empty())
            || !state.ops.is_empty()
        {
            // This transaction changed things already: read through its own view.
            drop(state);
            let mut idle = Vec::new();
            for id in self.mailbox_ids(appid)? {
                if self.mailbox(appid, &id)?.is_some_and(|m| m.updated <= old) {
                    idle.push(id);
                }
            }
            return Ok(idle);
        }
        // The sorted set's scores are the `updated` times: one range read.
        state.round_trips += 1;
        let read = redis::pipe()
            .cmd("WATCH")
            .arg(&key)
            .ignore()
            .cmd("ZRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(old)
            .query::<(Vec<String>,)>(state.con);
        read.map(|(ids,)| ids)
            .map_err(|e| state.fail("reading idle mailboxes from Redis", e))
    }

    fn mailbox(&self, appid: &str, id: &str) -> Result<Option<MailboxRecord>, StoreError> {
        self.state.borrow_mut().mailbox(appid, id)
    }

    fn insert_mailbox(
        &mut self,
        appid: &str,
        id: &str,
        for_nameplate: bool,
        updated: f64,
    ) -> Result<(), StoreError> {
        let state = self.state.get_mut();
        // Replacing: an old mailbox's messages go too.
        let list = state.keys.messages(appid, id);
        state.ops.push(redis::cmd("DEL").arg(&list).to_owned());
        let view = state.lists.entry(list).or_default();
        view.cleared = true;
        view.appended.clear();
        let counter = state.keys.message_bytes(appid, id);
        state.ops.push(redis::cmd("DEL").arg(counter).to_owned());
        state.put_mailbox(
            appid,
            id,
            MailboxRecord {
                for_nameplate,
                updated,
                sides: Vec::new(),
            },
        );
        state.set_add(state.keys.apps(), appid);
        Ok(())
    }

    fn put_mailbox_side(
        &mut self,
        appid: &str,
        id: &str,
        side: MailboxSide,
    ) -> Result<(), StoreError> {
        let state = self.state.get_mut();
        let mut record = state
            .mailbox(appid, id)?
            .ok_or_else(|| StoreError::NotFound(format!("mailbox {id} of app {appid}")))?;
        match record.sides.iter_mut().find(|row| row.side == side.side) {
            Some(row) => *row = side,
            None => record.sides.push(side),
        }
        state.put_mailbox(appid, id, record);
        Ok(())
    }

    fn touch_mailbox(&mut self, appid: &str, id: &str, when: f64) -> Result<(), StoreError> {
        let state = self.state.get_mut();
        if let Some(mut record) = state.mailbox(appid, id)? {
            record.updated = when;
            state.put_mailbox(appid, id, record);
        }
        Ok(())
    }

    fn delete_mailbox(&mut self, appid: &str, id: &str) -> Result<(), StoreError> {
        let state = self.state.get_mut();
        if state.mailbox(appid, id)?.is_none() {
            return Ok(());
        }
        let key = state.keys.mailbox(appid, id);
        let list = state.keys.messages(appid, id);
        let counter = state.keys.message_bytes(appid, id);
        let index = state.keys.mailboxes(appid);
        state.ops.push(
            redis::cmd("DEL")
                .arg(&key)
                .arg(&list)
                .arg(counter)
                .to_owned(),
        );
        state
            .ops
            .push(redis::cmd("ZREM").arg(&index).arg(id).to_owned());
        state.sets.entry(index).or_default().remove(id);
        state.mailboxes.insert(key, None);
        let view = state.lists.entry(list).or_default();
        view.cleared = true;
        view.appended.clear();
        state.changes.push(MailboxChange::Deleted {
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
        let state = self.state.get_mut();
        if state.mailbox(appid, mailbox_id)?.is_none() {
            return Err(StoreError::NotFound(format!(
                "mailbox {mailbox_id} of app {appid}"
            )));
        }
        // The count after this message, for the change feed (watches the list).
        let count = state.message_count(appid, mailbox_id)? + 1;
        let list = state.keys.messages(appid, mailbox_id);
        let counter = state.keys.message_bytes(appid, mailbox_id);
        let json = serde_json::to_string(&message).map_err(|e| backend("encoding a message", e))?;
        state
            .ops
            .push(redis::cmd("RPUSH").arg(&list).arg(json).to_owned());
        state.ops.push(
            redis::cmd("INCRBY")
                .arg(counter)
                .arg(message.counted_bytes())
                .to_owned(),
        );
        state.lists.entry(list).or_default().appended.push(message);
        state.changes.push(MailboxChange::Added {
            appid: appid.to_owned(),
            mailbox: mailbox_id.to_owned(),
            count,
        });
        Ok(())
    }

    fn messages(&self, appid: &str, mailbox_id: &str) -> Result<Vec<StoredMessage>, StoreError> {
        self.state.borrow_mut().messages_since(appid, mailbox_id, 0)
    }

    fn message_count(&self, appid: &str, mailbox_id: &str) -> Result<usize, StoreError> {
        self.state.borrow_mut().message_count(appid, mailbox_id)
    }

    fn mailbox_usage(&self, appid: &str, mailbox_id: &str) -> Result<MailboxUsage, StoreError> {
        self.state.borrow_mut().mailbox_usage(appid, mailbox_id)
    }

    fn messages_since(
        &self,
        appid: &str,
        mailbox_id: &str,
        start: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.state
            .borrow_mut()
            .messages_since(appid, mailbox_id, start)
    }
}
