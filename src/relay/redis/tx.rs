//! One optimistic transaction on Redis: the [`MailboxTables`](crate::relay::MailboxTables) the rules see.
//!
//! Every key is `WATCH`ed before it is first read (in the same round trip as the read); reads
//! are cached, and writes go to the cache and to a list of commands, so the rules read their
//! own writes. [`RedisTx::commit`] sends the commands (and the change feed's entries) in one
//! `MULTI`/`EXEC`, which Redis refuses if any watched key changed meanwhile: then the caller
//! runs the unit of work again on a fresh transaction.
//!
//! Here: the transaction and its commit (the queued writes and the change feed's entries
//! encoded as one `MULTI`/`EXEC`); in `state`, the view of what was read and written; in
//! `tables`, the [`MailboxTables`](crate::relay::MailboxTables) methods on that view.

use std::cell::RefCell;
use std::collections::HashMap;

use redis::{Cmd, Connection, Value};

mod state;
mod tables;

use self::state::{ListView, SetView};
use super::keys::Keys;
use crate::relay::fanout::MailboxChange;
use crate::relay::store::{MailboxRecord, NameplateRecord};

/// What became of a commit.
pub(super) enum Committed {
    /// Applied.
    Done,
    /// A watched key changed: nothing was applied.
    Conflict,
}

/// The transaction: the connection, the cache of what was read and written, and the commands
/// to send at commit. Read methods of [`MailboxTables`](crate::relay::MailboxTables) take
/// `&self`, hence the `RefCell`.
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
    /// Round trips to Redis so far (the commit, or the `UNWATCH` of an abandon, not counted).
    round_trips: u64,
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
                round_trips: 0,
            }),
        }
    }

    /// Round trips to Redis so far (the commit, or the `UNWATCH` of an abandon, not counted).
    pub(super) fn round_trips(&self) -> u64 {
        self.state.borrow().round_trips
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
