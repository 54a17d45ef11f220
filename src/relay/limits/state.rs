//! The relay's per-process bookkeeping for [`Limits`]: live connections and their sources, the
//! sources' token buckets, and the checks that admit or refuse a connection, an allocation, a
//! claim or an open; and the pruning of abandoned nameplates.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use super::{Limit, Limits, Rate};
use crate::relay::commands::Refusal;
use crate::relay::store::{MailboxStore, StoreError};
use crate::relay::{ConnId, Relay};

fn take(bucket: &mut Bucket, rate: Rate, now: f64, limit: Limit) -> Result<(), Limit> {
    if bucket.take(rate, now) {
        Ok(())
    } else {
        Err(limit)
    }
}

/// A token bucket (see [`Rate`]).
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: f64,
}

impl Bucket {
    fn full(rate: Rate, now: f64) -> Bucket {
        Bucket {
            tokens: f64::from(rate.per_minute),
            at: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: f64) {
        let capacity = f64::from(rate.per_minute);
        let elapsed = (now - self.at).max(0.0);
        self.tokens = (self.tokens + elapsed * capacity / 60.0).min(capacity);
        self.at = self.at.max(now);
    }

    fn take(&mut self, rate: Rate, now: f64) -> bool {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether [`take`](Self::take) would succeed now (without taking).
    fn has_token(&self, rate: Rate, now: f64) -> bool {
        self.clone().take(rate, now)
    }

    fn is_full(&mut self, rate: Rate, now: f64) -> bool {
        self.refill(rate, now);
        self.tokens >= f64::from(rate.per_minute)
    }
}

/// What the relay counts for one source address.
#[derive(Debug, Clone)]
struct Source {
    connections: usize,
    allocations: Bucket,
    claims: Bucket,
}

/// The relay's bookkeeping for [`Limits`]: live connections and their sources, and the
/// sources' buckets. (What a mailbox holds is not counted here: the `add` rule reads it from
/// the store in its transaction, see `tables::add_message`.)
#[derive(Debug, Default)]
pub(in crate::relay) struct LimitState {
    live: usize,
    /// Counted connections and their source (`None`: not counted per source).
    conns: HashMap<ConnId, Option<IpAddr>>,
    /// Connections refused at `connected`: their frames are ignored until they are gone.
    refused: HashSet<ConnId>,
    sources: HashMap<IpAddr, Source>,
}

impl<S: MailboxStore> Relay<S> {
    fn limits(&self) -> &Limits {
        &self.config.limits
    }

    /// Counts a new connection, or refuses it (then it is remembered as refused).
    pub(in crate::relay) fn admit_connection(
        &mut self,
        conn: ConnId,
        addr: Option<SocketAddr>,
        now: f64,
    ) -> Result<(), Limit> {
        let source = self.limits().source_key(addr);
        let state = &mut self.limit_state;
        if state.live >= self.config.limits.connections {
            state.refused.insert(conn);
            return Err(Limit::Connections);
        }
        if let Some(ip) = source {
            let limits = &self.config.limits;
            let entry = state.sources.entry(ip).or_insert_with(|| Source {
                connections: 0,
                allocations: Bucket::full(limits.allocations_per_source, now),
                claims: Bucket::full(limits.claims_per_source, now),
            });
            if entry.connections >= limits.connections_per_source {
                state.refused.insert(conn);
                return Err(Limit::ConnectionsPerSource);
            }
            entry.connections += 1;
        }
        state.live += 1;
        state.conns.insert(conn, source);
        Ok(())
    }

    /// Whether `conn` was refused at `connected` (its frames are ignored).
    pub(in crate::relay) fn is_refused(&self, conn: ConnId) -> bool {
        self.limit_state.refused.contains(&conn)
    }

    /// Stops counting a connection that went away.
    pub(in crate::relay) fn forget_connection(&mut self, conn: ConnId) {
        let state = &mut self.limit_state;
        state.refused.remove(&conn);
        if let Some(source) = state.conns.remove(&conn) {
            state.live = state.live.saturating_sub(1);
            if let Some(entry) = source.and_then(|ip| state.sources.get_mut(&ip)) {
                entry.connections = entry.connections.saturating_sub(1);
            }
        }
    }

    /// Takes an allocation token of `conn`'s source.
    pub(in crate::relay) fn admit_allocation(
        &mut self,
        conn: ConnId,
        now: f64,
    ) -> Result<(), Limit> {
        let rate = self.config.limits.allocations_per_source;
        match self.source_entry(conn) {
            Some(source) => take(&mut source.allocations, rate, now, Limit::Allocations),
            None => Ok(()),
        }
    }

    /// Takes a claim token of `conn`'s source.
    pub(in crate::relay) fn admit_claim(&mut self, conn: ConnId, now: f64) -> Result<(), Limit> {
        let rate = self.config.limits.claims_per_source;
        match self.source_entry(conn) {
            Some(source) => take(&mut source.claims, rate, now, Limit::Claims),
            None => Ok(()),
        }
    }

    /// Checks an `open`'s mailbox id and the mailbox's listeners; returns whether `conn`'s
    /// source has a claim token left, should the open create the mailbox. (Whether it does is
    /// known in the open's transaction: that refuses with [`Limit::Claims`] when it would
    /// create the mailbox without a token, and the token is taken with
    /// [`admit_claim`](Self::admit_claim) once it has.)
    pub(in crate::relay) fn admit_open(
        &mut self,
        conn: ConnId,
        appid: &str,
        mailbox: &str,
        now: f64,
    ) -> Result<bool, Refusal> {
        self.limits().check_mailbox_id(mailbox)?;
        let key = (appid.to_owned(), mailbox.to_owned());
        let listeners = self.subscribers.get(&key).map_or(0, Vec::len);
        if listeners >= self.limits().listeners_per_mailbox {
            return Err(Limit::MailboxListeners.into());
        }
        let rate = self.config.limits.claims_per_source;
        Ok(self
            .source_entry(conn)
            .is_none_or(|source| source.claims.has_token(rate, now)))
    }

    fn source_entry(&mut self, conn: ConnId) -> Option<&mut Source> {
        let ip = (*self.limit_state.conns.get(&conn)?)?;
        self.limit_state.sources.get_mut(&ip)
    }

    /// Deletes the nameplates claimed by a single side whose mailbox nobody listens to and
    /// which was last used (or last listened to) [`Limits::abandoned_nameplate_secs`] ago,
    /// with their mailboxes; and forgets sources with no connection and full buckets.
    pub(in crate::relay) fn prune_abandoned(
        &mut self,
        now: f64,
        pruned: &mut usize,
    ) -> Result<(), StoreError> {
        let limits = self.config.limits.clone();
        self.limit_state.sources.retain(|_, s| {
            s.connections > 0
                || !s.allocations.is_full(limits.allocations_per_source, now)
                || !s.claims.is_full(limits.claims_per_source, now)
        });
        let old = now - limits.abandoned_nameplate_secs;
        // Candidates in one read, then each deletion in a transaction of its own that checks
        // again, so a nameplate claimed meanwhile (by this process or another) is kept.
        let candidates = self.store.transaction(&mut |tx| {
            let mut found = Vec::new();
            for appid in tx.app_ids()? {
                for name in tx.nameplate_names(&appid)? {
                    match tx.nameplate(&appid, &name)? {
                        Some(nameplate) if nameplate.sides.len() == 1 => {
                            found.push((appid.clone(), name, nameplate.mailbox_id))
                        }
                        _ => {}
                    }
                }
            }
            Ok(found)
        })?;
        for (appid, name, id) in candidates {
            if self.subscribers.contains_key(&(appid.clone(), id.clone())) {
                continue;
            }
            let deleted = self.store.transaction(&mut |tx| {
                let side = match tx.nameplate(&appid, &name)? {
                    Some(n) if n.sides.len() == 1 && n.mailbox_id == id => n.sides[0].side.clone(),
                    _ => return Ok(false),
                };
                match tx.mailbox(&appid, &id)? {
                    Some(mailbox) if mailbox.updated > old => return Ok(false),
                    _ => {}
                }
                // A side that sent a message (every real client sends its `pake` at once) is
                // waiting for its peer, perhaps for days on a long-lived schedule: only the
                // mailbox expiry applies to it. This rule is for squatters that allocate and
                // leave.
                if tx.messages(&appid, &id)?.iter().any(|m| m.side == side) {
                    return Ok(false);
                }
                tx.delete_nameplates_for_mailbox(&appid, &id)?;
                tx.delete_nameplate(&appid, &name)?;
                tx.delete_mailbox(&appid, &id)?;
                Ok(true)
            })?;
            if deleted {
                tracing::debug!(
                    appid,
                    nameplate = name,
                    "relay: pruning abandoned nameplate"
                );
                self.drop_listeners(&appid, &id);
                *pruned += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_a_burst_then_refills_at_its_rate() {
        let rate = Rate { per_minute: 6 };
        let mut bucket = Bucket::full(rate, 0.0);
        assert!((0..6).all(|_| bucket.take(rate, 0.0)));
        assert!(!bucket.take(rate, 0.0));
        assert!(!bucket.take(rate, 9.9));
        assert!(bucket.take(rate, 10.0)); // one token every 10 s
        assert!(!bucket.take(rate, 10.0));
        assert!(!bucket.is_full(rate, 60.0));
        assert!(bucket.is_full(rate, 70.0));
        // A clock that goes back does not mint tokens.
        let mut bucket = Bucket::full(rate, 100.0);
        assert!((0..6).all(|_| bucket.take(rate, 100.0)));
        assert!(!bucket.take(rate, 50.0));
        assert!(!bucket.take(rate, 100.0));
    }
}
