//! The table logic (Python's `AppNamespace` and `Mailbox`): nameplates, mailboxes, their sides
//! and messages, allocation, claims, crowding and pruning.
//!
//! Every function here works on the [`MailboxTables`] of one transaction and on nothing else:
//! no connection state, no subscriptions, no outputs. The caller (the command handlers in
//! `commands`, and [`Relay::prune`](super::Relay::prune)) runs them inside
//! [`MailboxStore::transaction`](super::MailboxStore::transaction) and applies the per-process
//! effects (replies, subscriptions) only after the commit. A refusal that must still keep the
//! rows written before it (Python's crowded quirk) is an `Ok(Err(refusal))`: committed, then
//! refused; a [`StoreError`] rolls the whole command back.

use std::collections::HashSet;

use rand::{Rng, RngCore};
use rand_chacha::ChaCha20Rng;

use super::errors;
use super::limits::{Limit, Limits};
use super::store::{
    MailboxRecord, MailboxSide, MailboxTables, NameplateRecord, NameplateSide, StoreError,
    StoredMessage,
};

/// What the rules decided: go ahead with a `T`, or refuse with this error text (after the
/// rows written so far are committed).
pub(super) type Ruled<T> = Result<T, &'static str>;

/// The outcome of opening a mailbox, besides store failures.
#[derive(Debug, PartialEq)]
pub(super) enum Opened {
    Ok,
    Crowded,
}

/// Python's prune of one mailbox: deletes it (with its sides, messages and the nameplates
/// pointing at it) if it was not updated after `old`. Reads the row afresh, so a touch by
/// another relay process since the caller listed the mailboxes is respected. Returns whether
/// it was deleted.
pub(super) fn prune_mailbox(
    tx: &mut dyn MailboxTables,
    appid: &str,
    id: &str,
    old: f64,
) -> Result<bool, StoreError> {
    let Some(record) = tx.mailbox(appid, id)? else {
        return Ok(false);
    };
    if record.updated > old {
        return Ok(false);
    }
    tracing::debug!(appid, mailbox = id, "relay: pruning mailbox");
    tx.delete_nameplates_for_mailbox(appid, id)?;
    tx.delete_mailbox(appid, id)?;
    Ok(true)
}

/// Python's `_find_available_nameplate_id`: a uniformly random free id of the shortest
/// length among 1–9, 10–99, 100–999; then 1000 random tries in [1000, 999999].
///
/// Per range, two random probes first (one lookup each, enough while the range is mostly
/// free); if both are taken, the taken names of that length are listed
/// ([`MailboxTables::nameplate_names_of_len`]) and a free id is drawn exactly. Either way the
/// choice is uniform over the free ids.
pub(super) fn find_available_nameplate(
    tx: &dyn MailboxTables,
    rng: &mut ChaCha20Rng,
    appid: &str,
) -> Result<Option<String>, StoreError> {
    for (len, low, high) in [(1, 1u32, 10u32), (2, 10, 100), (3, 100, 1000)] {
        // Two random probes cost little while the range is mostly free; past them, list the
        // taken names of this length only (an optimistic store then sees no conflict with
        // allocations of other lengths) and pick uniformly among the free ones.
        for _ in 0..2 {
            let candidate = rng.gen_range(low..high).to_string();
            if !tx.has_nameplate(appid, &candidate)? {
                return Ok(Some(candidate));
            }
        }
        let taken: HashSet<u32> = tx
            .nameplate_names_of_len(appid, len)?
            .iter()
            .filter_map(|name| name.parse::<u32>().ok().filter(|n| n.to_string() == *name))
            .collect();
        let free = (low..high).filter(|n| !taken.contains(n)).count();
        if free > 0 {
            let pick = rng.gen_range(0..free);
            return Ok((low..high)
                .filter(|n| !taken.contains(n))
                .nth(pick)
                .map(|n| n.to_string()));
        }
    }
    for _ in 0..1000 {
        let candidate = rng.gen_range(1000u32..1_000_000).to_string();
        if !tx.has_nameplate(appid, &candidate)? {
            return Ok(Some(candidate));
        }
    }
    Ok(None)
}

/// A fresh mailbox id: 8 random bytes in lower-case base32 without padding (13 characters).
/// Retries on the (astronomically unlikely) collision with an existing mailbox.
fn new_mailbox_id(
    tx: &dyn MailboxTables,
    rng: &mut ChaCha20Rng,
    appid: &str,
) -> Result<String, StoreError> {
    for _ in 0..16 {
        let mut bytes = [0u8; 8];
        rng.fill_bytes(&mut bytes);
        let id = base32_lower(&bytes);
        if !tx.has_mailbox(appid, &id)? {
            return Ok(id);
        }
    }
    Err(StoreError::Backend("no unused mailbox id found".into()))
}

/// Python's `claim_nameplate`. Returns the mailbox id, or refuses with `reclaimed`/`crowded`
/// (after having written the rows, like Python).
pub(super) fn claim_nameplate(
    tx: &mut dyn MailboxTables,
    rng: &mut ChaCha20Rng,
    appid: &str,
    name: &str,
    side: &str,
    now: f64,
) -> Result<Ruled<String>, StoreError> {
    let record = match tx.nameplate(appid, name)? {
        Some(record) => record,
        None => {
            let mailbox_id = new_mailbox_id(tx, rng, appid)?;
            ensure_mailbox(tx, appid, &mailbox_id, true, now)?;
            tx.insert_nameplate(appid, name, &mailbox_id)?;
            NameplateRecord {
                mailbox_id,
                sides: Vec::new(),
            }
        }
    };
    let mut sides = record.sides.len();
    match record.sides.iter().find(|row| row.side == side) {
        None => {
            tx.put_nameplate_side(
                appid,
                name,
                NameplateSide {
                    side: side.to_owned(),
                    claimed: true,
                    added: now,
                },
            )?;
            sides += 1;
        }
        Some(row) if !row.claimed => return Ok(Err(errors::RECLAIMED)),
        Some(_) => {} // an idempotent re-claim by a side that still claims it
    }
    if open_mailbox(tx, appid, &record.mailbox_id, side, now)? == Opened::Crowded || sides > 2 {
        return Ok(Err(errors::CROWDED));
    }
    Ok(Ok(record.mailbox_id))
}

/// Python's `release_nameplate`: clears this side's claim; deletes the nameplate when no
/// claimed side remains. Unknown nameplates and sides are ignored.
pub(super) fn release_nameplate(
    tx: &mut dyn MailboxTables,
    appid: &str,
    name: &str,
    side: &str,
) -> Result<(), StoreError> {
    let Some(record) = tx.nameplate(appid, name)? else {
        return Ok(());
    };
    let Some(row) = record.sides.iter().find(|row| row.side == side) else {
        return Ok(());
    };
    tx.put_nameplate_side(
        appid,
        name,
        NameplateSide {
            claimed: false,
            ..row.clone()
        },
    )?;
    let still_claimed = record
        .sides
        .iter()
        .any(|row| row.side != side && row.claimed);
    if !still_claimed {
        tracing::debug!(appid, nameplate = name, "relay: nameplate freed");
        tx.delete_nameplate(appid, name)?;
    }
    Ok(())
}

/// Creates the mailbox row if it is missing.
pub(super) fn ensure_mailbox(
    tx: &mut dyn MailboxTables,
    appid: &str,
    id: &str,
    for_nameplate: bool,
    now: f64,
) -> Result<(), StoreError> {
    if !tx.has_mailbox(appid, id)? {
        tx.insert_mailbox(appid, id, for_nameplate, now)?;
    }
    Ok(())
}

/// Python's `Mailbox.add_message`, within the per-mailbox limits: appends `message` to the
/// mailbox (creating the mailbox if it was deleted meanwhile) and touches it. Returns the
/// message's index (insertion order), or the limit it would break: the mailbox already holds
/// [`Limits::messages_per_mailbox`] messages, or this one's bytes would take it past
/// [`Limits::bytes_per_mailbox`]. A refusal writes nothing.
///
/// The count and bytes are read in this transaction, so the limits hold across relay
/// processes sharing the store: an add by another process in between makes the transaction
/// conflict (an optimistic store then runs it again) or waits (a locking one).
pub(super) fn add_message(
    tx: &mut dyn MailboxTables,
    limits: &Limits,
    appid: &str,
    id: &str,
    message: StoredMessage,
    now: f64,
) -> Result<Result<usize, Limit>, StoreError> {
    let usage = tx.mailbox_usage(appid, id)?;
    if usage.messages >= limits.messages_per_mailbox {
        return Ok(Err(Limit::MailboxMessages));
    }
    if usage.bytes.saturating_add(message.counted_bytes()) > limits.bytes_per_mailbox {
        return Ok(Err(Limit::MailboxBytes));
    }
    ensure_mailbox(tx, appid, id, false, now)?;
    tx.add_message(appid, id, message)?;
    tx.touch_mailbox(appid, id, now)?;
    Ok(Ok(usage.messages))
}

/// Python's `open_mailbox`: creates the mailbox if needed, adds this side's row if missing,
/// touches it, then reports `Crowded` if more than two sides have rows.
pub(super) fn open_mailbox(
    tx: &mut dyn MailboxTables,
    appid: &str,
    id: &str,
    side: &str,
    now: f64,
) -> Result<Opened, StoreError> {
    let record = match tx.mailbox(appid, id)? {
        Some(record) => record,
        None => {
            tx.insert_mailbox(appid, id, false, now)?;
            MailboxRecord {
                for_nameplate: false,
                updated: now,
                sides: Vec::new(),
            }
        }
    };
    let mut sides = record.sides.len();
    if !record.sides.iter().any(|row| row.side == side) {
        tx.put_mailbox_side(
            appid,
            id,
            MailboxSide {
                side: side.to_owned(),
                opened: true,
                mood: None,
                added: now,
            },
        )?;
        sides += 1;
    }
    tx.touch_mailbox(appid, id, now)?;
    Ok(if sides > 2 {
        Opened::Crowded
    } else {
        Opened::Ok
    })
}

/// Python's `Mailbox.close`: marks this side closed with its mood; when no side is open any
/// more, deletes this side's nameplate claims, the nameplates pointing here, and the mailbox
/// with its sides and messages. Returns whether the mailbox was deleted (its listeners must
/// then be dropped).
pub(super) fn close_mailbox(
    tx: &mut dyn MailboxTables,
    appid: &str,
    id: &str,
    side: &str,
    mood: Option<String>,
) -> Result<bool, StoreError> {
    let Some(record) = tx.mailbox(appid, id)? else {
        return Ok(false);
    };
    let Some(row) = record.sides.iter().find(|row| row.side == side) else {
        return Ok(false);
    };
    tx.put_mailbox_side(
        appid,
        id,
        MailboxSide {
            opened: false,
            mood,
            ..row.clone()
        },
    )?;
    if record
        .sides
        .iter()
        .any(|row| row.side != side && row.opened)
    {
        return Ok(false);
    }
    tracing::debug!(appid, mailbox = id, "relay: mailbox closed by all sides");
    tx.delete_nameplate_sides_of(appid, side)?;
    tx.delete_nameplates_for_mailbox(appid, id)?;
    tx.delete_mailbox(appid, id)?;
    Ok(true)
}

/// RFC 4648 base32, lower-case, without `=` padding.
pub(super) fn base32_lower(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let symbol = |index: u32| char::from(ALPHABET[(index & 31) as usize]);
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(symbol(buffer >> bits));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(symbol(buffer << (5 - bits)));
    }
    out
}
