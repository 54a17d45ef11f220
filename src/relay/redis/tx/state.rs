//! The transaction's view of Redis: what it read (watched, cached) with its own writes
//! applied, and the writes queued for the commit.

use std::collections::BTreeSet;

use super::TxState;
use crate::relay::store::{
    MailboxRecord, MailboxUsage, NameplateRecord, StoreError, StoredMessage,
};

/// The members of a set (or sorted set) as this transaction sees them.
#[derive(Default)]
pub(super) struct SetView {
    /// The members read from Redis with this transaction's changes applied, once read.
    pub(super) loaded: Option<BTreeSet<String>>,
    /// Changes made before the set was read.
    pub(super) added: BTreeSet<String>,
    pub(super) removed: BTreeSet<String>,
}

impl SetView {
    pub(super) fn insert(&mut self, member: &str) {
        match &mut self.loaded {
            Some(members) => {
                members.insert(member.to_owned());
            }
            None => {
                self.removed.remove(member);
                self.added.insert(member.to_owned());
            }
        }
    }

    pub(super) fn remove(&mut self, member: &str) {
        match &mut self.loaded {
            Some(members) => {
                members.remove(member);
            }
            None => {
                self.added.remove(member);
                self.removed.insert(member.to_owned());
            }
        }
    }
}

/// The messages of a mailbox as this transaction sees them.
#[derive(Default)]
pub(super) struct ListView {
    /// How many messages Redis holds, once read.
    pub(super) base_len: Option<usize>,
    /// Their counted bytes (the `msg-bytes` counter), once read.
    pub(super) base_bytes: Option<usize>,
    /// The list was deleted in this transaction (the Redis one no longer counts).
    pub(super) cleared: bool,
    /// Messages appended in this transaction.
    pub(super) appended: Vec<StoredMessage>,
}

pub(super) fn backend(what: &'static str, e: serde_json::Error) -> StoreError {
    StoreError::Database {
        what,
        source: std::sync::Arc::new(e),
    }
}

impl TxState<'_> {
    pub(super) fn fail(&mut self, what: &'static str, e: redis::RedisError) -> StoreError {
        let error = StoreError::Database {
            what,
            source: std::sync::Arc::new(e.clone()),
        };
        self.failure.get_or_insert(e);
        error
    }

    /// `WATCH key` and `GET key` in one round trip.
    pub(super) fn watch_get(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        self.round_trips += 1;
        let read = redis::pipe()
            .cmd("WATCH")
            .arg(key)
            .ignore()
            .cmd("GET")
            .arg(key)
            .query::<(Option<String>,)>(self.con);
        read.map(|(value,)| value)
            .map_err(|e| self.fail("reading a record from Redis", e))
    }

    pub(super) fn nameplate(
        &mut self,
        appid: &str,
        name: &str,
    ) -> Result<Option<NameplateRecord>, StoreError> {
        let key = self.keys.nameplate(appid, name);
        if let Some(cached) = self.nameplates.get(&key) {
            return Ok(cached.clone());
        }
        let record = match self.watch_get(&key)? {
            Some(json) => {
                Some(serde_json::from_str(&json).map_err(|e| backend("decoding a nameplate", e))?)
            }
            None => None,
        };
        self.nameplates.insert(key, record.clone());
        Ok(record)
    }

    pub(super) fn mailbox(
        &mut self,
        appid: &str,
        id: &str,
    ) -> Result<Option<MailboxRecord>, StoreError> {
        let key = self.keys.mailbox(appid, id);
        if let Some(cached) = self.mailboxes.get(&key) {
            return Ok(cached.clone());
        }
        self.load_mailbox(appid, id)?;
        let record = self.mailboxes.get(&key).cloned().flatten();
        Ok(record)
    }

    /// The members of a set (`sorted`: a sorted set), watched.
    pub(super) fn members(&mut self, key: &str, sorted: bool) -> Result<Vec<String>, StoreError> {
        let view = self.sets.entry(key.to_owned()).or_default();
        if let Some(members) = &view.loaded {
            return Ok(members.iter().cloned().collect());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("WATCH").arg(key).ignore();
        if sorted {
            pipe.cmd("ZRANGE").arg(key).arg(0).arg(-1);
        } else {
            pipe.cmd("SMEMBERS").arg(key);
        }
        self.round_trips += 1;
        let (read,): (Vec<String>,) = match pipe.query(self.con) {
            Ok(read) => read,
            Err(e) => return Err(self.fail("reading a set from Redis", e)),
        };
        let view = self.sets.entry(key.to_owned()).or_default();
        let mut members: BTreeSet<String> = read.into_iter().collect();
        members.extend(std::mem::take(&mut view.added));
        for gone in std::mem::take(&mut view.removed) {
            members.remove(&gone);
        }
        let out = members.iter().cloned().collect();
        view.loaded = Some(members);
        Ok(out)
    }

    pub(super) fn set_add(&mut self, key: String, member: &str) {
        self.ops
            .push(redis::cmd("SADD").arg(&key).arg(member).to_owned());
        self.sets.entry(key).or_default().insert(member);
    }

    pub(super) fn set_remove(&mut self, key: String, member: &str) {
        self.ops
            .push(redis::cmd("SREM").arg(&key).arg(member).to_owned());
        self.sets.entry(key).or_default().remove(member);
    }

    pub(super) fn put_nameplate(&mut self, appid: &str, name: &str, record: NameplateRecord) {
        let key = self.keys.nameplate(appid, name);
        let json = serde_json::to_string(&record).unwrap_or_default();
        self.ops
            .push(redis::cmd("SET").arg(&key).arg(json).to_owned());
        self.nameplates.insert(key, Some(record));
    }

    pub(super) fn put_mailbox(&mut self, appid: &str, id: &str, record: MailboxRecord) {
        let key = self.keys.mailbox(appid, id);
        let json = serde_json::to_string(&record).unwrap_or_default();
        self.ops
            .push(redis::cmd("SET").arg(&key).arg(json).to_owned());
        let index = self.keys.mailboxes(appid);
        self.ops.push(
            redis::cmd("ZADD")
                .arg(&index)
                .arg(record.updated)
                .arg(id)
                .to_owned(),
        );
        self.sets.entry(index).or_default().insert(id);
        self.mailboxes.insert(key, Some(record));
    }

    /// Reads a mailbox's record, how many messages Redis holds for it and their counted bytes
    /// (the three keys watched) in one round trip, and caches what this transaction has not
    /// read or written yet. Every rule that reads a mailbox's record or its usage soon needs
    /// the other (`add`, `open`), and the three keys only ever change together (an add
    /// touches the record), so watching them all costs no extra conflict.
    fn load_mailbox(&mut self, appid: &str, id: &str) -> Result<(), StoreError> {
        let key = self.keys.mailbox(appid, id);
        let list = self.keys.messages(appid, id);
        let counter = self.keys.message_bytes(appid, id);
        self.round_trips += 1;
        let read = redis::pipe()
            .cmd("WATCH")
            .arg(&key)
            .arg(&list)
            .arg(&counter)
            .ignore()
            .cmd("GET")
            .arg(&key)
            .cmd("LLEN")
            .arg(&list)
            .cmd("GET")
            .arg(&counter)
            .query::<(Option<String>, usize, Option<usize>)>(self.con);
        let (json, messages, bytes) =
            read.map_err(|e| self.fail("reading a mailbox from Redis", e))?;
        if let std::collections::hash_map::Entry::Vacant(entry) = self.mailboxes.entry(key) {
            let record = match json {
                Some(json) => Some(
                    serde_json::from_str(&json).map_err(|e| backend("decoding a mailbox", e))?,
                ),
                None => None,
            };
            entry.insert(record);
        }
        // A list this transaction deleted is not counted (nor its counter set again).
        let cleared = self.lists.get(&list).is_some_and(|view| view.cleared);
        let bytes = match bytes {
            Some(bytes) => bytes,
            None if messages == 0 || cleared => 0,
            None => {
                self.round_trips += 1;
                let read = redis::cmd("LRANGE")
                    .arg(&list)
                    .arg(0)
                    .arg(-1)
                    .query::<Vec<String>>(self.con);
                let items = read.map_err(|e| self.fail("reading messages from Redis", e))?;
                let mut bytes = 0;
                for item in items {
                    let message: StoredMessage = serde_json::from_str(&item)
                        .map_err(|e| backend("decoding a message", e))?;
                    bytes += message.counted_bytes();
                }
                self.ops
                    .push(redis::cmd("SET").arg(&counter).arg(bytes).to_owned());
                bytes
            }
        };
        let view = self.lists.entry(list).or_default();
        view.base_len = Some(messages);
        view.base_bytes = Some(bytes);
        Ok(())
    }

    /// How many messages Redis holds for a mailbox and their counted bytes (watched), cached
    /// (read with the mailbox's record, see [`load_mailbox`](Self::load_mailbox)). A list
    /// written before the byte counter existed is counted once, and the counter is set with
    /// this transaction's writes.
    pub(super) fn base_usage(&mut self, appid: &str, id: &str) -> Result<MailboxUsage, StoreError> {
        let list = self.keys.messages(appid, id);
        let known = |state: &Self| {
            let view = state.lists.get(&list)?;
            Some(MailboxUsage {
                messages: view.base_len?,
                bytes: view.base_bytes?,
            })
        };
        if let Some(usage) = known(self) {
            return Ok(usage);
        }
        self.load_mailbox(appid, id)?;
        known(self).ok_or_else(|| StoreError::Backend("a mailbox's usage was not read".into()))
    }

    pub(super) fn mailbox_usage(
        &mut self,
        appid: &str,
        id: &str,
    ) -> Result<MailboxUsage, StoreError> {
        let key = self.keys.messages(appid, id);
        let cleared = self.lists.get(&key).is_some_and(|l| l.cleared);
        let base = if cleared {
            MailboxUsage::default()
        } else {
            self.base_usage(appid, id)?
        };
        let appended = self.lists.get(&key).map_or(&[][..], |l| &l.appended[..]);
        Ok(MailboxUsage {
            messages: base.messages + appended.len(),
            bytes: base.bytes
                + appended
                    .iter()
                    .map(StoredMessage::counted_bytes)
                    .sum::<usize>(),
        })
    }

    pub(super) fn message_count(&mut self, appid: &str, id: &str) -> Result<usize, StoreError> {
        let key = self.keys.messages(appid, id);
        match self.lists.get(&key) {
            Some(view) if view.cleared => Ok(view.appended.len()),
            Some(ListView {
                base_len: Some(len),
                appended,
                ..
            }) => Ok(len + appended.len()),
            _ => Ok(self.mailbox_usage(appid, id)?.messages),
        }
    }

    pub(super) fn messages_since(
        &mut self,
        appid: &str,
        id: &str,
        start: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let key = self.keys.messages(appid, id);
        let view = self.lists.entry(key.clone()).or_default();
        let mut out = Vec::new();
        let base_len = if view.cleared {
            0
        } else if let Some(len) = view.base_len.filter(|len| start >= *len) {
            // The list is watched since its length was read: nothing of it to read.
            len
        } else {
            self.round_trips += 1;
            let read = redis::pipe()
                .cmd("WATCH")
                .arg(&key)
                .ignore()
                .cmd("LLEN")
                .arg(&key)
                .cmd("LRANGE")
                .arg(&key)
                .arg(start)
                .arg(-1)
                .query::<(usize, Vec<String>)>(self.con);
            let (len, items) = read.map_err(|e| self.fail("reading messages from Redis", e))?;
            for item in items {
                out.push(
                    serde_json::from_str(&item).map_err(|e| backend("decoding a message", e))?,
                );
            }
            self.lists.entry(key.clone()).or_default().base_len = Some(len);
            len
        };
        if let Some(view) = self.lists.get(&key) {
            out.extend(
                view.appended
                    .iter()
                    .skip(start.saturating_sub(base_len))
                    .cloned(),
            );
        }
        Ok(out)
    }

    pub(super) fn delete_nameplate(&mut self, appid: &str, name: &str) -> Result<(), StoreError> {
        let Some(record) = self.nameplate(appid, name)? else {
            return Ok(());
        };
        let key = self.keys.nameplate(appid, name);
        self.ops.push(redis::cmd("DEL").arg(&key).to_owned());
        self.nameplates.insert(key, None);
        self.set_remove(self.keys.nameplate_names(appid), name);
        self.set_remove(self.keys.names_of_len(appid, name.len()), name);
        self.set_remove(self.keys.by_mailbox(appid, &record.mailbox_id), name);
        for row in &record.sides {
            self.set_remove(self.keys.by_side(appid, &row.side), name);
        }
        Ok(())
    }
}
