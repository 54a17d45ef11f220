//! Where the tables live in Redis. Under a prefix (default `wormhole`), per app id `A`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:apps` | set | every app id with rows |
//! | `P:app:A:nameplates` | set | the names of A's nameplates |
//! | `P:app:A:nameplates-len:L` | set | the same, `L` bytes long (allocation reads these) |
//! | `P:app:A:np:NAME` | string | a [`NameplateRecord`](crate::relay::NameplateRecord) as JSON |
//! | `P:app:A:np-of-mb:MAILBOX` | set | the nameplates pointing at a mailbox (an index) |
//! | `P:app:A:np-of-side:SIDE` | set | the nameplates with a row of a side (an index) |
//! | `P:app:A:mailboxes` | sorted set | A's mailbox ids, scored by `updated` |
//! | `P:app:A:mb:ID` | string | a [`MailboxRecord`](crate::relay::MailboxRecord) as JSON |
//! | `P:app:A:msgs:ID` | list | the mailbox's messages as JSON, in insertion order |
//! | `P:app:A:msg-bytes:ID` | string | the sum of their [`counted_bytes`](crate::relay::StoredMessage::counted_bytes) (for the byte limit) |
//! | `P:changes` | stream | the change feed: `a`, `m`, and `n` (count) or `d` (deleted) |
//!
//! App ids, names, sides and ids are free text from clients: `%` and `:` in them are
//! percent-encoded, so no two of them share a key.

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

/// `%` → `%25`, `:` → `%3A`.
fn enc(part: &str) -> String {
    part.replace('%', "%25").replace(':', "%3A")
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: enc(prefix),
        }
    }

    fn app(&self, appid: &str, rest: &str) -> String {
        format!("{}:app:{}:{rest}", self.prefix, enc(appid))
    }

    pub(super) fn apps(&self) -> String {
        format!("{}:apps", self.prefix)
    }

    pub(super) fn changes(&self) -> String {
        format!("{}:changes", self.prefix)
    }

    pub(super) fn nameplate_names(&self, appid: &str) -> String {
        self.app(appid, "nameplates")
    }

    pub(super) fn names_of_len(&self, appid: &str, len: usize) -> String {
        self.app(appid, &format!("nameplates-len:{len}"))
    }

    pub(super) fn nameplate(&self, appid: &str, name: &str) -> String {
        self.app(appid, &format!("np:{}", enc(name)))
    }

    pub(super) fn by_mailbox(&self, appid: &str, mailbox: &str) -> String {
        self.app(appid, &format!("np-of-mb:{}", enc(mailbox)))
    }

    pub(super) fn by_side(&self, appid: &str, side: &str) -> String {
        self.app(appid, &format!("np-of-side:{}", enc(side)))
    }

    pub(super) fn mailboxes(&self, appid: &str) -> String {
        self.app(appid, "mailboxes")
    }

    pub(super) fn mailbox(&self, appid: &str, id: &str) -> String {
        self.app(appid, &format!("mb:{}", enc(id)))
    }

    pub(super) fn messages(&self, appid: &str, id: &str) -> String {
        self.app(appid, &format!("msgs:{}", enc(id)))
    }

    pub(super) fn message_bytes(&self, appid: &str, id: &str) -> String {
        self.app(appid, &format!("msg-bytes:{}", enc(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::Keys;

    #[test]
    fn free_text_cannot_collide() {
        let keys = Keys::new("p");
        assert_ne!(keys.nameplate("a:np:1", "2"), keys.nameplate("a", "1:np:2"));
        assert_eq!(keys.mailbox("x:y%", "m"), "p:app:x%3Ay%25:mb:m");
        assert_ne!(keys.mailbox("a%3A", "m"), keys.mailbox("a:", "m"));
    }
}
