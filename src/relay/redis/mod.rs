//! [`RedisStore`]: the relay's tables in Redis (or Valkey), shared by any number of relay
//! processes (`wormhole-relay --store redis://HOST:PORT/DB`).
//!
//! # Transactions
//! Each client command's rules run as one [`MailboxStore::transaction`], as on every store,
//! and the rules are the same Rust functions: nothing is written again in Lua. A transaction
//! is optimistic: every key is `WATCH`ed before it is first read, the rules compute in Rust,
//! and the writes go in one `MULTI`/`EXEC`, which Redis refuses if another process changed a
//! watched key meanwhile; then the unit of work runs again on fresh reads, at most
//! [`RedisOptions::max_attempts`] times, after which the command fails with
//! [`StoreError::Contended`]. Plain commands only (strings, sets, sorted sets, lists, a
//! stream), so Valkey serves as well. The key layout is documented in `keys.rs`.
//!
//! A read-only unit of work is validated the same way (an empty `MULTI`/`EXEC`), so it sees
//! one consistent state.
//!
//! # Sync calls, with deadlines
//! [`MailboxTables`] is synchronous, and the relay core calls it from its task, so the store
//! uses the `redis` crate's synchronous connection: every call has a read and a write
//! deadline ([`RedisOptions::timeout`]), and connecting has one too. On loopback a call takes
//! some tens of microseconds; while it runs, the relay's task waits (that is what bounds one
//! process's throughput, see the README's figures).
//!
//! # When Redis is unreachable
//! A failed call drops the connection. The command fails with an error naming the cause
//! (the client gets an `error` frame, its connection stays). After a timeout, for
//! [`RedisOptions::reconnect_delay`] the following commands fail at once with the same cause
//! instead of each waiting out a connection attempt; then the next command tries again. A
//! connection that went stale while idle (Redis restarted) is replaced once, silently.
//!
//! # Fan-out
//! Every transaction that adds a message or deletes a mailbox also appends an entry to the
//! stream `P:changes` (in the same `MULTI`). [`SharedStore::changes`] starts a thread that
//! follows that stream from the current end with `XREAD BLOCK` on a connection of its own,
//! and forwards each entry as a [`MailboxChange`]; after losing Redis it resumes from the last
//! entry it saw (logging how many it replayed), or sends [`MailboxChange::Resync`] when the
//! stream no longer reaches back that far.
//!
//! The feed is a plain thread, not a task: the `redis` crate's synchronous connection blocks
//! in `XREAD BLOCK`, and a task doing that would hold a runtime worker. Outside the runtime
//! the thread cannot wait on [`RedisOptions::clock`] (its sleeps are futures of the runtime's
//! timer), so its two waits are options, each bounded: [`RedisOptions::feed_block`] (spent
//! inside Redis, as the `BLOCK` argument) and [`RedisOptions::feed_retry_delay`] (a
//! `std::thread::sleep` between connection attempts while Redis is unreachable). Neither
//! decides anything the relay's rules see: they only pace the feed.
//!
//! # HTTP-polling sessions
//! With feature `http`, [`RedisSessionPeers`] lets the processes serve each other's
//! HTTP-polling sessions: a request that reaches a process other than the session's owner is
//! forwarded to the owner over Redis pub/sub (see its module docs).

mod feed;
mod keys;
#[cfg(feature = "http")]
mod peers;
#[cfg(test)]
mod tests;
mod tx;
#[cfg(test)]
mod usage_tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

#[cfg(feature = "http")]
pub use self::peers::{PeersUnreachable, RedisSessionPeers};

use self::keys::Keys;
use self::tx::{Committed, RedisTx};
use crate::clock::{Clock, TokioClock};
use crate::relay::fanout::MailboxChange;
use crate::relay::shared::SharedStore;
use crate::relay::store::{MailboxStore, MailboxTables, StoreError};

/// Settings of a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Key prefix: relays with the same prefix on one database share their state.
    pub prefix: String,
    /// Deadline of connecting and of every read and write to Redis.
    pub timeout: Duration,
    /// How often a transaction that keeps conflicting runs before the command fails.
    pub max_attempts: u32,
    /// After a call timed out, commands fail at once for this long before the store tries to
    /// reconnect (a refused connection is tried again at the next command).
    pub reconnect_delay: Duration,
    /// The change stream is trimmed to about this many entries (`XADD MAXLEN ~`). A relay
    /// that is cut off from Redis for longer than it takes to add this many messages gets a
    /// [`MailboxChange::Resync`] instead of the entries.
    pub stream_max_len: u64,
    /// The clock of the reconnect delay.
    pub clock: Arc<dyn Clock>,
    /// How long the change feed's `XREAD` blocks in Redis waiting for entries; the feed
    /// notices a dropped receiver within this. (See "Fan-out" in the [module docs](self) for
    /// why the feed's waits are options rather than [`clock`](Self::clock) sleeps.)
    pub feed_block: Duration,
    /// The change feed's pause between connection attempts while Redis is unreachable.
    pub feed_retry_delay: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            prefix: "wormhole".into(),
            timeout: Duration::from_secs(2),
            max_attempts: 32,
            reconnect_delay: Duration::from_millis(250),
            stream_max_len: 100_000,
            clock: Arc::new(TokioClock::new()),
            feed_block: Duration::from_millis(500),
            feed_retry_delay: Duration::from_millis(200),
        }
    }
}

/// A failure of Redis itself, with its cause.
#[derive(Debug, thiserror::Error)]
#[error("Redis unreachable ({while_doing})")]
struct Unreachable {
    while_doing: &'static str,
    #[source]
    source: redis::RedisError,
}

/// The relay's tables in Redis, shared by every relay process with the same database and
/// prefix. See the [module docs](self).
pub struct RedisStore {
    client: redis::Client,
    keys: Keys,
    options: RedisOptions,
    con: Option<redis::Connection>,
    /// No connection attempt before this time of [`RedisOptions::clock`]; the last failure.
    down: Option<(Duration, Arc<Unreachable>)>,
    /// See [`RedisStore::round_trips`].
    round_trips: u64,
}

impl fmt::Debug for RedisStore {
    // Not the URL: it may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.options.prefix)
            .field("connected", &self.con.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on the Redis at `url` (`redis://[:PASSWORD@]HOST:PORT/DB`, or
    /// `redis+unix:///PATH`). Connects once, so that a wrong address or password is reported
    /// here rather than at the first command.
    pub fn open(url: &str, options: RedisOptions) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url).map_err(|source| StoreError::Database {
            what: "parsing the Redis URL",
            source: Arc::new(source),
        })?;
        let mut store = RedisStore {
            client,
            keys: Keys::new(&options.prefix),
            options,
            con: None,
            down: None,
            round_trips: 0,
        };
        store.connection()?;
        Ok(store)
    }

    /// The settings.
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// How many round trips to Redis this store's transactions made so far: each read
    /// (a `WATCH` with its reads, pipelined), each commit (`MULTI`/`EXEC`) and each abandon
    /// (`UNWATCH`); connecting is not counted. For measurements (`benches/relay_store.rs`).
    pub fn round_trips(&self) -> u64 {
        self.round_trips
    }

    fn connect(client: &redis::Client, timeout: Duration) -> redis::RedisResult<redis::Connection> {
        let con = client.get_connection_with_timeout(timeout)?;
        con.set_read_timeout(Some(timeout))?;
        con.set_write_timeout(Some(timeout))?;
        Ok(con)
    }

    /// The live connection, connecting if needed (unless within the reconnect delay).
    fn connection(&mut self) -> Result<&mut redis::Connection, StoreError> {
        if self.con.is_none() {
            if let Some((until, cause)) = &self.down {
                if self.options.clock.now() < *until {
                    return Err(StoreError::Database {
                        what: "waiting to reconnect to Redis",
                        source: cause.clone(),
                    });
                }
            }
            match Self::connect(&self.client, self.options.timeout) {
                Ok(con) => {
                    if self.down.take().is_some() {
                        tracing::info!("relay store: Redis is back");
                    }
                    self.con = Some(con);
                }
                Err(source) => return Err(self.went_down("connecting", source)),
            }
        }
        self.con
            .as_mut()
            .ok_or_else(|| StoreError::Backend("no Redis connection".into()))
    }

    /// Drops the connection after a failure and starts the reconnect delay.
    fn went_down(&mut self, while_doing: &'static str, source: redis::RedisError) -> StoreError {
        self.con = None;
        if self.down.is_none() {
            tracing::warn!(error = %source, "relay store: lost Redis while {while_doing}");
        }
        // Only a call that timed out (Redis unreachable without an answer: each try costs a
        // whole timeout) holds off the next tries; a refused connection costs nothing to retry.
        let delay = if source.is_timeout() {
            self.options.reconnect_delay
        } else {
            Duration::ZERO
        };
        let cause = Arc::new(Unreachable {
            while_doing,
            source,
        });
        let until = self.options.clock.now().saturating_add(delay);
        self.down = Some((until, cause.clone()));
        StoreError::Database {
            what: "talking to Redis",
            source: cause,
        }
    }
}

impl MailboxStore for RedisStore {
    fn transaction<T>(
        &mut self,
        work: &mut dyn FnMut(&mut dyn MailboxTables) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let attempts = self.options.max_attempts.max(1);
        // A connection that sat idle may have died with the server it talked to (Redis
        // restarted): its first failure before the commit is retried once on a new one.
        let mut may_be_stale = self.con.is_some();
        for attempt in 1..=attempts {
            let keys = self.keys.clone();
            let max_len = self.options.stream_max_len;
            let con = self.connection()?;
            let mut tx = RedisTx::new(con, keys, max_len);
            let result = work(&mut tx);
            let reads = tx.round_trips();
            if let Some(failure) = tx.take_failure() {
                drop(tx);
                self.round_trips += reads;
                if std::mem::take(&mut may_be_stale) && !failure.is_timeout() {
                    tracing::debug!(error = %failure, "relay store: stale Redis connection, again");
                    self.con = None;
                    continue;
                }
                // The rules saw the failure as an error of theirs; report it with its cause.
                return Err(self.went_down("reading", failure));
            }
            may_be_stale = false;
            let value = match result {
                Ok(value) => value,
                Err(e) => {
                    let abandoned = tx.abandon();
                    self.round_trips += reads + 1;
                    if let Err(failure) = abandoned {
                        self.went_down("abandoning a transaction", failure);
                    }
                    return Err(e);
                }
            };
            let committed = tx.commit();
            self.round_trips += reads + 1;
            match committed {
                Ok(Committed::Done) => return Ok(value),
                Ok(Committed::Conflict) => {
                    tracing::debug!(attempt, "relay store: transaction conflicted, again");
                }
                Err(failure) => return Err(self.went_down("committing", failure)),
            }
        }
        tracing::warn!(attempts, "relay store: transaction gave up after conflicts");
        Err(StoreError::Contended { attempts })
    }
}

impl SharedStore for RedisStore {
    fn changes(&self) -> mpsc::UnboundedReceiver<MailboxChange> {
        let (tx, rx) = mpsc::unbounded_channel();
        feed::spawn(
            self.client.clone(),
            self.keys.changes(),
            feed::Waits::of(&self.options),
            tx,
        );
        rx
    }
}
