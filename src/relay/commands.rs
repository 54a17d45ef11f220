//! The per-connection rules (Python's `WebSocketServer`): what each client command may do on
//! its connection, checked before the table logic runs, and the replies it gets.
//!
//! Each handler has three steps: the checks on this connection's own state (no store access),
//! then the command's table logic as one [`MailboxStore::transaction`], then, once that has
//! committed, the per-process effects: this connection's state, subscriptions, replies and
//! echoes. A store failure thus leaves both the tables and the connection as they were.

use serde_json::{Map, Value};

use super::errors;
use super::limits::Limit;
use super::store::{MailboxStore, StoreError, StoredMessage};
use super::tables::{self, Opened};
use super::{ConnId, Listener, Relay};
use crate::wire::{NameplateEntry, ServerMessage};

/// Longest nameplate a `claim` may use (as Python 0.8's validity check).
const MAX_NAMEPLATE_LEN: usize = 40;

/// Per-connection state, as in Python's `WebSocketServer`.
#[derive(Debug, Clone, Default)]
pub(super) struct Conn {
    /// `(appid, side)` once bound.
    pub(super) bound: Option<(String, String)>,
    pub(super) did_allocate: bool,
    pub(super) did_claim: bool,
    /// The nameplate of this connection's `claim` (set even if the claim failed).
    pub(super) nameplate: Option<String>,
    pub(super) did_release: bool,
    /// The mailbox of this connection's last `open` (set even if the open failed).
    pub(super) mailbox_id: Option<String>,
    /// Whether the mailbox is open on this connection (Python's `self._mailbox`).
    pub(super) open: bool,
    /// Whether this connection is subscribed to `mailbox_id`.
    pub(super) listening: bool,
    pub(super) did_close: bool,
}

/// Why a command was refused.
pub(super) enum Refusal {
    /// Answer with this error string.
    Error(&'static str),
    /// A limit was reached: answer with its error, and count it.
    Limit(Limit),
    /// The store failed.
    Store(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Store(e)
    }
}

pub(super) type Handled = Result<(), Refusal>;

pub(super) fn refuse<T>(error: &'static str) -> Result<T, Refusal> {
    Err(Refusal::Error(error))
}

/// The nameplate of a `release` or the mailbox of a `close`: the one given, which must be the
/// one this connection claimed or opened (if any), or else the remembered one. `errors` are
/// the refusals for: a different one given, a non-string given, none given and none known.
fn given_or_remembered(
    given: Option<&Value>,
    remembered: &Option<String>,
    errors: [&'static str; 3],
) -> Result<String, Refusal> {
    let [mismatch, not_a_string, nothing] = errors;
    match (given, remembered) {
        (Some(g), Some(r)) if g.as_str() != Some(r.as_str()) => refuse(mismatch),
        (Some(g), _) => g
            .as_str()
            .map(str::to_owned)
            .ok_or(Refusal::Error(not_a_string)),
        (None, Some(r)) => Ok(r.clone()),
        (None, None) => refuse(nothing),
    }
}

impl<S: MailboxStore> Relay<S> {
    pub(super) fn dispatch(
        &mut self,
        conn: ConnId,
        mtype: &str,
        msg: &Map<String, Value>,
        now: f64,
    ) -> Handled {
        match mtype {
            "ping" => return self.handle_ping(conn, msg, now),
            "bind" => return self.handle_bind(conn, msg),
            _ => {}
        }
        let Some((appid, side)) = self.conns.get(&conn).and_then(|c| c.bound.clone()) else {
            return refuse(errors::MUST_BIND_FIRST);
        };
        match mtype {
            "list" => self.handle_list(conn, &appid, now),
            "allocate" => self.handle_allocate(conn, &appid, &side, now),
            "claim" => self.handle_claim(conn, &appid, &side, msg, now),
            "release" => self.handle_release(conn, &appid, &side, msg, now),
            "open" => self.handle_open(conn, &appid, &side, msg, now),
            "add" => self.handle_add(conn, &appid, &side, msg, now),
            "close" => self.handle_close(conn, &appid, &side, msg, now),
            _ => refuse(errors::UNKNOWN_TYPE),
        }
    }

    fn conn_mut(&mut self, conn: ConnId) -> &mut Conn {
        self.conns.entry(conn).or_default()
    }

    fn handle_ping(&mut self, conn: ConnId, msg: &Map<String, Value>, now: f64) -> Handled {
        let Some(ping) = msg.get("ping") else {
            return refuse(errors::PING_NEEDS_PING);
        };
        let Some(pong) = ping.as_i64() else {
            return refuse(errors::PING_NEEDS_INTEGER);
        };
        self.send(conn, ServerMessage::Pong { pong }, now);
        Ok(())
    }

    fn handle_bind(&mut self, conn: ConnId, msg: &Map<String, Value>) -> Handled {
        if self.conn_mut(conn).bound.is_some() {
            return refuse(errors::ALREADY_BOUND);
        }
        let Some(appid) = msg.get("appid") else {
            return refuse(errors::BIND_NEEDS_APPID);
        };
        let Some(side) = msg.get("side") else {
            return refuse(errors::BIND_NEEDS_SIDE);
        };
        let Some(appid) = appid.as_str() else {
            return refuse(errors::BIND_NEEDS_STRING_APPID);
        };
        let Some(side) = side.as_str() else {
            return refuse(errors::BIND_NEEDS_STRING_SIDE);
        };
        self.config.limits.check_bind(appid, side)?;
        tracing::debug!(conn, appid, side, "relay: bound");
        self.conn_mut(conn).bound = Some((appid.to_owned(), side.to_owned()));
        Ok(())
    }

    fn handle_list(&mut self, conn: ConnId, appid: &str, now: f64) -> Handled {
        let mut names = if self.config.allow_list {
            self.store
                .transaction(&mut |tx| tx.nameplate_names(appid))?
        } else {
            Vec::new()
        };
        names.sort();
        names.dedup();
        let nameplates = names.into_iter().map(|id| NameplateEntry { id }).collect();
        self.send(conn, ServerMessage::Nameplates { nameplates }, now);
        Ok(())
    }

    fn handle_allocate(&mut self, conn: ConnId, appid: &str, side: &str, now: f64) -> Handled {
        if self.conn_mut(conn).did_allocate {
            return refuse(errors::GREEDY);
        }
        self.admit_allocation(conn, now)?;
        // Finding a free nameplate and claiming it is one step, so that no other command (of
        // this relay process or another) can take it in between.
        let rng = &mut self.rng;
        let nameplate = self
            .store
            .transaction(&mut |tx| {
                let Some(nameplate) = tables::find_available_nameplate(tx, rng, appid)? else {
                    return Ok(Err(errors::NO_FREE_NAMEPLATE));
                };
                // A fresh nameplate has no other side, so this is neither crowded nor reclaimed.
                let claimed = tables::claim_nameplate(tx, rng, appid, &nameplate, side, now)?;
                Ok(claimed.map(|_| nameplate))
            })?
            .map_err(Refusal::Error)?;
        self.conn_mut(conn).did_allocate = true;
        self.send(conn, ServerMessage::Allocated { nameplate }, now);
        Ok(())
    }

    fn handle_claim(
        &mut self,
        conn: ConnId,
        appid: &str,
        side: &str,
        msg: &Map<String, Value>,
        now: f64,
    ) -> Handled {
        let Some(nameplate) = msg.get("nameplate") else {
            return refuse(errors::CLAIM_NEEDS_NAMEPLATE);
        };
        if self.conn_mut(conn).did_claim {
            return refuse(errors::ONE_CLAIM);
        }
        // Python 0.8 crashes on these and drops the connection; we refuse without using up the
        // connection's one claim.
        let nameplate = match nameplate.as_str() {
            Some(n) if is_valid_nameplate(n) => n.to_owned(),
            _ => return refuse(errors::CLAIM_NEEDS_NUMERIC),
        };
        self.admit_claim(conn, now)?;
        let rng = &mut self.rng;
        let claimed = self.store.transaction(&mut |tx| {
            tables::claim_nameplate(tx, rng, appid, &nameplate, side, now)
        })?;
        // A refused claim still uses up the connection's one claim, as in Python.
        let state = self.conn_mut(conn);
        state.did_claim = true;
        state.nameplate = Some(nameplate);
        let mailbox = claimed.map_err(Refusal::Error)?;
        self.send(conn, ServerMessage::Claimed { mailbox }, now);
        Ok(())
    }

    fn handle_release(
        &mut self,
        conn: ConnId,
        appid: &str,
        side: &str,
        msg: &Map<String, Value>,
        now: f64,
    ) -> Handled {
        let state = self.conn_mut(conn);
        if state.did_release {
            return refuse(errors::ONE_RELEASE);
        }
        let nameplate = given_or_remembered(
            msg.get("nameplate"),
            &state.nameplate,
            [
                errors::RELEASE_SAME_NAMEPLATE,
                errors::RELEASE_NEEDS_STRING,
                errors::RELEASE_NEEDS_CLAIM,
            ],
        )?;
        self.store
            .transaction(&mut |tx| tables::release_nameplate(tx, appid, &nameplate, side))?;
        self.conn_mut(conn).did_release = true;
        self.send(conn, ServerMessage::Released, now);
        Ok(())
    }

    fn handle_open(
        &mut self,
        conn: ConnId,
        appid: &str,
        side: &str,
        msg: &Map<String, Value>,
        now: f64,
    ) -> Handled {
        if self.conn_mut(conn).open {
            return refuse(errors::ONE_OPEN);
        }
        let Some(mailbox) = msg.get("mailbox") else {
            return refuse(errors::OPEN_NEEDS_MAILBOX);
        };
        let Some(mailbox) = mailbox.as_str() else {
            return refuse(errors::OPEN_NEEDS_STRING);
        };
        let may_create = self.admit_open(conn, appid, mailbox, now)?;
        // Opening and reading the messages to replay is one step: an `add` by another process
        // lands either in the replay or (once subscribed) as an echo. Creating the mailbox
        // takes a claim token (see `admit_open`); a refusal for want of one writes nothing.
        let opened = self.store.transaction(&mut |tx| {
            let create = !tx.has_mailbox(appid, mailbox)?;
            if create && !may_create {
                return Ok(Err(Refusal::Limit(Limit::Claims)));
            }
            if tables::open_mailbox(tx, appid, mailbox, side, now)? == Opened::Crowded {
                return Ok(Err(Refusal::Error(errors::CROWDED)));
            }
            Ok(Ok((tx.messages(appid, mailbox)?, create)))
        })?;
        if let Err(Refusal::Limit(_)) = opened {
            // Refused before anything was written: the connection's state stays as it was.
            return opened.map(|_| ());
        }
        self.conn_mut(conn).mailbox_id = Some(mailbox.to_owned());
        let (messages, created) = opened?;
        if created {
            // There is a token (checked above, and nothing took it since): take it.
            self.admit_claim(conn, now)?;
        }
        let state = self.conn_mut(conn);
        state.open = true;
        if !state.listening {
            state.listening = true;
            self.subscribers
                .entry((appid.to_owned(), mailbox.to_owned()))
                .or_default()
                .push(Listener {
                    conn,
                    delivered: messages.len(),
                });
        }
        for stored in &messages {
            self.send_message(conn, stored, now);
        }
        Ok(())
    }

    fn handle_add(
        &mut self,
        conn: ConnId,
        appid: &str,
        side: &str,
        msg: &Map<String, Value>,
        now: f64,
    ) -> Handled {
        let state = self.conn_mut(conn);
        let mailbox = match (&state.mailbox_id, state.open) {
            (Some(mailbox), true) => mailbox.clone(),
            _ => return refuse(errors::MUST_OPEN),
        };
        let Some(phase) = msg.get("phase") else {
            return refuse(errors::MISSING_PHASE);
        };
        let Some(body) = msg.get("body") else {
            return refuse(errors::MISSING_BODY);
        };
        let Some(phase) = phase.as_str() else {
            return refuse(errors::ADD_NEEDS_STRING_PHASE);
        };
        let Some(body) = body.as_str() else {
            return refuse(errors::ADD_NEEDS_STRING_BODY);
        };
        self.config.limits.check_phase(phase)?;
        let id = msg.get("id").filter(|id| !id.is_null());
        let stored = StoredMessage {
            side: side.to_owned(),
            phase: phase.to_owned(),
            body: body.to_owned(),
            server_rx: now,
            msg_id: id.cloned(),
        };
        // The per-mailbox limits are checked in the transaction that adds, against what the
        // store holds, so they hold across relay processes (see `tables::add_message`).
        let limits = &self.config.limits;
        let index = self
            .store
            .transaction(&mut |tx| {
                tables::add_message(tx, limits, appid, &mailbox, stored.clone(), now)
            })?
            .map_err(Refusal::Limit)?;
        self.echo_added(appid, &mailbox, index, &stored, now);
        Ok(())
    }

    fn handle_close(
        &mut self,
        conn: ConnId,
        appid: &str,
        side: &str,
        msg: &Map<String, Value>,
        now: f64,
    ) -> Handled {
        let state = self.conn_mut(conn);
        if state.did_close {
            return refuse(errors::ONE_CLOSE);
        }
        let mailbox = given_or_remembered(
            msg.get("mailbox"),
            &state.mailbox_id,
            [
                errors::CLOSE_SAME_MAILBOX,
                errors::CLOSE_NEEDS_STRING,
                errors::CLOSE_NEEDS_OPEN,
            ],
        )?;
        let was_open = state.open;
        self.config.limits.check_mailbox_id(&mailbox)?;
        if let Some(Value::String(mood)) = msg.get("mood") {
            self.config.limits.check_string(mood)?;
        }
        let mood = match msg.get("mood") {
            None | Some(Value::Null) => None,
            Some(Value::String(mood)) => Some(mood.clone()),
            Some(other) => Some(other.to_string()),
        };
        let deleted = self
            .store
            .transaction(&mut |tx| {
                // A close on a connection that has not opened the mailbox opens it first.
                if !was_open
                    && tables::open_mailbox(tx, appid, &mailbox, side, now)? == Opened::Crowded
                {
                    return Ok(Err(errors::CROWDED));
                }
                tables::close_mailbox(tx, appid, &mailbox, side, mood.clone()).map(Ok)
            })?
            .map_err(Refusal::Error)?;
        let state = self.conn_mut(conn);
        let was_listening = std::mem::take(&mut state.listening);
        let listened_to = state.mailbox_id.clone();
        state.did_close = true;
        state.open = false;
        if let (true, Some(listened_to)) = (was_listening, listened_to) {
            self.unsubscribe(appid, &listened_to, conn);
        }
        if deleted {
            self.drop_listeners(appid, &mailbox);
            self.counters.exchanges += 1;
        }
        self.send(conn, ServerMessage::Closed, now);
        Ok(())
    }
}

/// Whether a claimed nameplate is acceptable: 1–40 ASCII digits.
fn is_valid_nameplate(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAMEPLATE_LEN && name.bytes().all(|b| b.is_ascii_digit())
}
