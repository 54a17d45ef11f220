//! The table logic (Python's `AppNamespace` and `Mailbox`): nameplates, mailboxes, their sides
//! and messages on the [`MailboxStore`], allocation, claims, crowding and pruning.

use std::collections::HashSet;

use rand::{Rng, RngCore};

use super::commands::{refuse, Refusal};
use super::errors;
use super::store::{MailboxSide, MailboxStore, NameplateRecord, NameplateSide, StoreError};
use super::Relay;

/// The outcome of opening a mailbox, besides store failures.
#[derive(Debug, PartialEq)]
pub(super) enum Opened {
    Ok,
    Crowded,
}

impl<S: MailboxStore> Relay<S> {
    pub(super) fn try_prune(&mut self, now: f64, pruned: &mut usize) -> Result<(), StoreError> {
        for (appid, mailbox) in self.subscribers.keys() {
            self.store.touch_mailbox(appid, mailbox, now)?;
        }
        let old = now - self.config.channel_expiration_secs;
        for appid in self.store.app_ids()? {
            for id in self.store.mailbox_ids(&appid)? {
                let Some(record) = self.store.mailbox(&appid, &id)? else {
                    continue;
                };
                if record.updated > old {
                    continue;
                }
                tracing::debug!(appid, mailbox = id, "relay: pruning mailbox");
                self.store.delete_nameplates_for_mailbox(&appid, &id)?;
                self.store.delete_mailbox(&appid, &id)?;
                self.drop_listeners(&appid, &id);
                *pruned += 1;
            }
        }
        Ok(())
    }

    /// Python's `_find_available_nameplate_id`: a uniformly random free id of the shortest
    /// length among 1–9, 10–99, 100–999; then 1000 random tries in [1000, 999999].
    pub(super) fn find_available_nameplate(
        &mut self,
        appid: &str,
    ) -> Result<Option<String>, StoreError> {
        for (low, high) in [(1u32, 10u32), (10, 100), (100, 1000)] {
            // Rejection sampling is uniform over the free ids and costs a few lookups while
            // the range is mostly free; when it keeps hitting taken ids, count exactly.
            for _ in 0..32 {
                let candidate = self.rng.gen_range(low..high).to_string();
                if self.store.nameplate(appid, &candidate)?.is_none() {
                    return Ok(Some(candidate));
                }
            }
            let taken: HashSet<u32> = self
                .store
                .nameplate_names(appid)?
                .iter()
                .filter_map(|name| name.parse::<u32>().ok().filter(|n| n.to_string() == *name))
                .filter(|n| (low..high).contains(n))
                .collect();
            let free = (high - low) as usize - taken.len();
            if free > 0 {
                let pick = self.rng.gen_range(0..free);
                return Ok((low..high)
                    .filter(|n| !taken.contains(n))
                    .nth(pick)
                    .map(|n| n.to_string()));
            }
        }
        for _ in 0..1000 {
            let candidate = self.rng.gen_range(1000u32..1_000_000).to_string();
            if self.store.nameplate(appid, &candidate)?.is_none() {
                return Ok(Some(candidate));
            }
        }
        Ok(None)
    }

    /// A fresh mailbox id: 8 random bytes in lower-case base32 without padding (13 characters).
    /// Retries on the (astronomically unlikely) collision with an existing mailbox.
    pub(super) fn new_mailbox_id(&mut self, appid: &str) -> Result<String, StoreError> {
        for _ in 0..16 {
            let mut bytes = [0u8; 8];
            self.rng.fill_bytes(&mut bytes);
            let id = base32_lower(&bytes);
            if self.store.mailbox(appid, &id)?.is_none() {
                return Ok(id);
            }
        }
        Err(StoreError::Backend("no unused mailbox id found".into()))
    }

    /// Python's `claim_nameplate`. Returns the mailbox id, or refuses with `reclaimed`/`crowded`
    /// (after having written the rows, like Python).
    pub(super) fn claim_nameplate(
        &mut self,
        appid: &str,
        name: &str,
        side: &str,
        now: f64,
    ) -> Result<String, Refusal> {
        let record = match self.store.nameplate(appid, name)? {
            Some(record) => record,
            None => {
                let mailbox_id = self.new_mailbox_id(appid)?;
                self.ensure_mailbox(appid, &mailbox_id, true, now)?;
                self.store.insert_nameplate(appid, name, &mailbox_id)?;
                NameplateRecord {
                    mailbox_id,
                    sides: Vec::new(),
                }
            }
        };
        let mut sides = record.sides.len();
        match record.sides.iter().find(|row| row.side == side) {
            None => {
                self.store.put_nameplate_side(
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
            Some(row) if !row.claimed => return refuse(errors::RECLAIMED),
            Some(_) => {} // an idempotent re-claim by a side that still claims it
        }
        if self.open_mailbox(appid, &record.mailbox_id, side, now)? == Opened::Crowded {
            return refuse(errors::CROWDED);
        }
        if sides > 2 {
            return refuse(errors::CROWDED);
        }
        Ok(record.mailbox_id)
    }

    /// Python's `release_nameplate`: clears this side's claim; deletes the nameplate when no
    /// claimed side remains. Unknown nameplates and sides are ignored.
    pub(super) fn release_nameplate(
        &mut self,
        appid: &str,
        name: &str,
        side: &str,
    ) -> Result<(), StoreError> {
        let Some(record) = self.store.nameplate(appid, name)? else {
            return Ok(());
        };
        let Some(row) = record.sides.iter().find(|row| row.side == side) else {
            return Ok(());
        };
        self.store.put_nameplate_side(
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
            self.store.delete_nameplate(appid, name)?;
        }
        Ok(())
    }

    pub(super) fn ensure_mailbox(
        &mut self,
        appid: &str,
        id: &str,
        for_nameplate: bool,
        now: f64,
    ) -> Result<(), StoreError> {
        if self.store.mailbox(appid, id)?.is_none() {
            self.store.insert_mailbox(appid, id, for_nameplate, now)?;
        }
        Ok(())
    }

    /// Python's `open_mailbox`: creates the mailbox if needed, adds this side's row if missing,
    /// touches it, then reports `Crowded` if more than two sides have rows.
    pub(super) fn open_mailbox(
        &mut self,
        appid: &str,
        id: &str,
        side: &str,
        now: f64,
    ) -> Result<Opened, StoreError> {
        self.ensure_mailbox(appid, id, false, now)?;
        let record = self
            .store
            .mailbox(appid, id)?
            .ok_or_else(|| StoreError::NotFound(format!("mailbox {id} of app {appid}")))?;
        let mut sides = record.sides.len();
        if !record.sides.iter().any(|row| row.side == side) {
            self.store.put_mailbox_side(
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
        self.store.touch_mailbox(appid, id, now)?;
        Ok(if sides > 2 {
            Opened::Crowded
        } else {
            Opened::Ok
        })
    }

    /// Python's `Mailbox.close`: marks this side closed with its mood; when no side is open any
    /// more, deletes this side's nameplate claims, the nameplates pointing here, and the mailbox
    /// with its sides and messages, and drops its listeners.
    pub(super) fn close_mailbox(
        &mut self,
        appid: &str,
        id: &str,
        side: &str,
        mood: Option<String>,
    ) -> Result<(), StoreError> {
        let Some(record) = self.store.mailbox(appid, id)? else {
            return Ok(());
        };
        let Some(row) = record.sides.iter().find(|row| row.side == side) else {
            return Ok(());
        };
        self.store.put_mailbox_side(
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
            return Ok(());
        }
        tracing::debug!(appid, mailbox = id, "relay: mailbox closed by all sides");
        self.store.delete_nameplate_sides_of(appid, side)?;
        self.store.delete_nameplates_for_mailbox(appid, id)?;
        self.store.delete_mailbox(appid, id)?;
        self.drop_listeners(appid, id);
        self.counters.exchanges += 1;
        Ok(())
    }
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
