//! One optimistic transaction on Redis: the [`MailboxTables`] the rules see.
//!
//! Every key is `WATCH`ed before it is first read (in the same round trip as the read); reads
//! are cached, and writes go to the cache and to a list of commands, so the rules read their
//! own writes. [`RedisTx::commit`] sends the commands (and the change feed's entries) in one
//! `MULTI`/`EXEC`, which Redis refuses if any watched key changed meanwhile: then the caller
//! runs the unit of work again on a fresh transaction.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use redis::{Cmd, Connection, Value};

use super::keys::Keys;
use crate::relay::fanout::MailboxChange;
use crate::relay::store::{
    MailboxRecord, MailboxSide, MailboxTables, MailboxUsage, NameplateRecord, NameplateSide,
    StoreError, StoredMessage,
};

/// What became of a commit.
pub(super) enum Committed {
    /// Applied.
    Done,
    /// A watched key changed: nothing was applied.
    Conflict,
}

/// The transaction: the connection, the cache of what was read and written, and the commands
/// to send at commit. Read methods of [`MailboxTables`] take `&self`, hence the `RefCell`.
pub(super) struct RedisTx<'c> {
    state: RefCell<TxState<'c>>,
}

struct TxState<'c> {
    con: &'c mut Connection,
    keys: Keys,
    stream_max_len: u64,
    nameplates: HashMap<String, Option<NameplateRecord>>,
    mailboxes: HashMap<String, Option<MailboxRecord>>,
    sets: HashMap<String, SetView>,
    lists: HashMap<String, ListView>,
    ops: Vec<Cmd>,
    changes: Vec<MailboxChange>,
    /// The first Redis failure: the connection is unusable afterwards.
    failure: Option<redis::RedisError>,
}

/// The members of a set (or sorted set) as this transaction sees them.
#[derive(Default)]
struct SetView {
    /// The members read from Redis with this transaction's changes applied, once read.
    loaded: Option<BTreeSet<String>>,
    /// Changes made before the set was read.
    added: BTreeSet<String>,
    removed: BTreeSet<String>,
}

impl SetView {
    fn insert(&mut self, member: &str) {
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

    fn remove(&mut self, member: &str) {
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
struct ListView {
    /// How many messages Redis holds, once read.
    base_len: Option<usize>,
    /// Their counted bytes (the `msg-bytes` counter), once read.
    base_bytes: Option<usize>,
    /// The list was deleted in this transaction (the Redis one no longer counts).
    cleared: bool,
    /// Messages appended in this transaction.
    appended: Vec<StoredMessage>,
}

fn backend(what: &'static str, e: serde_json::Error) -> StoreError {
    StoreError::Database {
        what,
        source: std::sync::Arc::new(e),
    }
}

impl<'c> RedisTx<'c> {
    pub(super) fn new(con: &'c mut Connection, keys: Keys, stream_max_len: u64) -> RedisTx<'c> {
        RedisTx {
            state: RefCell::new(TxState {
                con,
                keys,
                stream_max_len,
                nameplates: HashMap::new(),
                mailboxes: HashMap::new(),
                sets: HashMap::new(),
                lists: HashMap::new(),
                ops: Vec::new(),
                changes: Vec::new(),
                failure: None,
            }),
        }
    }

    /// The Redis failure that broke this transaction, if any.
    pub(super) fn take_failure(&mut self) -> Option<redis::RedisError> {
        self.state.get_mut().failure.take()
    }

    /// Forgets the watches (after the unit of work refused to go on).
    pub(super) fn abandon(self) -> Result<(), redis::RedisError> {
        let state = self.state.into_inner();
        redis::cmd("UNWATCH").exec(state.con)
    }

    /// Sends the writes and the change feed's entries in one `MULTI`/`EXEC`.
    pub(super) fn commit(self) -> Result<Committed, redis::RedisError> {
        let state = self.state.into_inner();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for op in state.ops {
            pipe.add_command(op).ignore();
        }
        let stream = state.keys.changes();
        for change in &state.changes {
            let cmd = pipe
                .cmd("XADD")
                .arg(&stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(state.stream_max_len)
                .arg("*");
            match change {
                MailboxChange::Added {
                    appid,
                    mailbox,
                    count,
                } => cmd
                    .arg("a")
                    .arg(appid)
                    .arg("m")
                    .arg(mailbox)
                    .arg("n")
                    .arg(*count),
                MailboxChange::Deleted { appid, mailbox } => cmd
                    .arg("a")
                    .arg(appid)
                    .arg("m")
                    .arg(mailbox)
                    .arg("d")
                    .arg(1),
                MailboxChange::Resync => cmd.arg("r").arg(1),
            };
            cmd.ignore();
        }
        match pipe.query::<Value>(state.con)? {
            Value::Nil => Ok(Committed::Conflict),
            _ => Ok(Committed::Done),
        }
    }
}

impl TxState<'_> {
    fn fail(&mut self, what: &'static str, e: redis::RedisError) -> StoreError {
        let error = StoreError::Database {
            what,
            source: std::sync::Arc::new(e.clone()),
        };
        self.failure.get_or_insert(e);
        error
    }

    /// `WATCH key` and `GET key` in one round trip.
    fn watch_get(&mut self, key: &str) -> Result<Option<String>, StoreError> {
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

    fn nameplate(
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

    fn mailbox(&mut self, appid: &str, id: &str) -> Result<Option<MailboxRecord>, StoreError> {
        let key = self.keys.mailbox(appid, id);
        if let Some(cached) = self.mailboxes.get(&key) {
            return Ok(cached.clone());
        }
        let record = match self.watch_get(&key)? {
            Some(json) => {
                Some(serde_json::from_str(&json).map_err(|e| backend("decoding a mailbox", e))?)
            }
            None => None,
        };
        self.mailboxes.insert(key, record.clone());
        Ok(record)
    }

    /// The members of a set (`sorted`: a sorted set), watched.
    fn members(&mut self, key: &str, sorted: bool) -> Result<Vec<String>, StoreError> {
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

    fn set_add(&mut self, key: String, member: &str) {
        self.ops
            .push(redis::cmd("SADD").arg(&key).arg(member).to_owned());
        self.sets.entry(key).or_default().insert(member);
    }

    fn set_remove(&mut self, key: String, member: &str) {
        self.ops
            .push(redis::cmd("SREM").arg(&key).arg(member).to_owned());
        self.sets.entry(key).or_default().remove(member);
    }

    fn put_nameplate(&mut self, appid: &str, name: &str, record: NameplateRecord) {
        let key = self.keys.nameplate(appid, name);
        let json = serde_json::to_string(&record).unwrap_or_default();
        self.ops
            .push(redis::cmd("SET").arg(&key).arg(json).to_owned());
        self.nameplates.insert(key, Some(record));
    }

    fn put_mailbox(&mut self, appid: &str, id: &str, record: MailboxRecord) {
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

    /// How many messages Redis holds for a mailbox and their counted bytes (both keys
    /// watched), in one round trip, cached. A list written before the byte counter existed
    /// is counted once, and the counter is set with this transaction's writes.
    fn base_usage(&mut self, appid: &str, id: &str) -> Result<MailboxUsage, StoreError> {
        let list = self.keys.messages(appid, id);
        if let Some(view) = self.lists.get(&list) {
            if let (Some(messages), Some(bytes)) = (view.base_len, view.base_bytes) {
                return Ok(MailboxUsage { messages, bytes });
            }
        }
        let counter = self.keys.message_bytes(appid, id);
        let read = redis::pipe()
            .cmd("WATCH")
            .arg(&list)
            .arg(&counter)
            .ignore()
            .cmd("LLEN")
            .arg(&list)
            .cmd("GET")
            .arg(&counter)
            .query::<(usize, Option<usize>)>(self.con);
        let (messages, bytes) = read.map_err(|e| self.fail("counting messages in Redis", e))?;
        let bytes = match bytes {
            Some(bytes) => bytes,
            None if messages == 0 => 0,
            None => {
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
        Ok(MailboxUsage { messages, bytes })
    }

    fn mailbox_usage(&mut self, appid: &str, id: &str) -> Result<MailboxUsage, StoreError> {
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

    fn message_count(&mut self, appid: &str, id: &str) -> Result<usize, StoreError> {
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

    fn messages_since(
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
        } else {
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

    fn delete_nameplate(&mut self, appid: &str, name: &str) -> Result<(), StoreError> {
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
