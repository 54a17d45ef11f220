//! Echoes to listeners, whichever relay process added the message.
//!
//! Every listener of a mailbox counts the messages it was sent (the replay at `open`, then
//! each echo), in the mailbox's insertion order. A message added by this process at index `i`
//! goes straight to every listener that has exactly `i` messages; a listener that is behind
//! (another process added messages this one has not yet heard of) is caught up by reading the
//! messages past its count from the store. Changes made by other processes sharing the store
//! come in as [`MailboxChange`]s ([`Relay::shared_change`]) and catch listeners up the same
//! way. So each listener gets every message once, in insertion order, however the changes
//! and the notices about them interleave, and a notice that comes twice, late, or after the
//! replay already covered it, sends nothing.

use super::store::{MailboxStore, StoredMessage};
use super::Relay;

/// A change to a store shared by several relay processes, as the store's change feed reports
/// it to every process (the one that made it included; such a repeat sends nothing).
#[derive(Debug, Clone, PartialEq)]
pub enum MailboxChange {
    /// Messages were added to a mailbox, which now holds `count` of them.
    Added {
        /// The app id.
        appid: String,
        /// The mailbox id.
        mailbox: String,
        /// How many messages the mailbox holds after the addition.
        count: usize,
    },
    /// A mailbox was deleted (closed by all sides, or pruned).
    Deleted {
        /// The app id.
        appid: String,
        /// The mailbox id.
        mailbox: String,
    },
    /// Changes may have been missed (the feed lost its place, e.g. after a long outage):
    /// every mailbox with a listener on this process is read again.
    Resync,
}

impl<S: MailboxStore> Relay<S> {
    /// A change made to the shared store (by any relay process): listeners on this process
    /// get the messages they have not been sent yet, in insertion order, each once; listeners
    /// of a deleted mailbox stop listening. A store failure is logged and leaves the listeners
    /// as they were (the next change or a [`MailboxChange::Resync`] catches them up).
    pub fn shared_change(&mut self, change: MailboxChange, now: f64) {
        match change {
            MailboxChange::Added {
                appid,
                mailbox,
                count,
            } => {
                let behind = self
                    .subscribers
                    .get(&(appid.clone(), mailbox.clone()))
                    .is_some_and(|ls| ls.iter().any(|l| l.delivered < count));
                if behind {
                    self.catch_up(&appid, &mailbox, now);
                }
            }
            MailboxChange::Deleted { appid, mailbox } => {
                if self
                    .subscribers
                    .contains_key(&(appid.clone(), mailbox.clone()))
                {
                    self.catch_up(&appid, &mailbox, now);
                }
            }
            MailboxChange::Resync => {
                let mut listened: Vec<(String, String)> =
                    self.subscribers.keys().cloned().collect();
                listened.sort();
                for (appid, mailbox) in listened {
                    self.catch_up(&appid, &mailbox, now);
                }
            }
        }
    }

    /// The mailboxes that have a listener on this process (sorted).
    pub fn listened_mailboxes(&self) -> Vec<(String, String)> {
        let mut listened: Vec<(String, String)> = self.subscribers.keys().cloned().collect();
        listened.sort();
        listened
    }

    /// Echoes a message this process just added at `index` of the mailbox.
    pub(super) fn echo_added(
        &mut self,
        appid: &str,
        mailbox: &str,
        index: usize,
        stored: &StoredMessage,
        now: f64,
    ) {
        let key = (appid.to_owned(), mailbox.to_owned());
        let Some(listeners) = self.subscribers.get_mut(&key) else {
            return;
        };
        if listeners.iter().all(|l| l.delivered == index) {
            for listener in listeners.iter_mut() {
                listener.delivered = index + 1;
            }
            // One frame shared by every listener.
            self.broadcast_message(appid, mailbox, stored, now);
        } else {
            // Someone is behind (messages added by another process not heard of yet): send
            // each listener everything it misses, this message included, in order.
            self.catch_up(appid, mailbox, now);
        }
    }

    /// Reads the messages past the listener that is furthest behind and sends each listener
    /// of the mailbox those it has not been sent. A deleted mailbox loses its listeners.
    fn catch_up(&mut self, appid: &str, mailbox: &str, now: f64) {
        let key = (appid.to_owned(), mailbox.to_owned());
        let Some(start) = self
            .subscribers
            .get(&key)
            .and_then(|ls| ls.iter().map(|l| l.delivered).min())
        else {
            return;
        };
        let read = self.store.transaction(&mut |tx| {
            if tx.mailbox(appid, mailbox)?.is_none() {
                return Ok(None);
            }
            tx.messages_since(appid, mailbox, start).map(Some)
        });
        let messages = match read {
            Ok(Some(messages)) => messages,
            Ok(None) => {
                tracing::debug!(appid, mailbox, "relay: listened mailbox deleted elsewhere");
                self.drop_listeners(appid, mailbox);
                return;
            }
            Err(e) => {
                tracing::warn!(appid, mailbox, error = %e, "relay: could not read new messages");
                return;
            }
        };
        let Some(listeners) = self.subscribers.get_mut(&key) else {
            return;
        };
        let mut sends = Vec::new();
        for listener in listeners.iter_mut() {
            let skip = listener.delivered - start;
            if let Some(missing) = messages.get(skip..) {
                sends.extend(missing.iter().map(|m| (listener.conn, m)));
                listener.delivered = start + messages.len();
            }
        }
        for (conn, message) in sends {
            self.send_message(conn, message, now);
        }
    }
}
