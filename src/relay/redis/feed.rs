//! The change feed: a thread that follows the `P:changes` stream and forwards its entries.

use std::time::Duration;

use redis::Value;
use tokio::sync::mpsc::UnboundedSender;

use super::RedisOptions;
use crate::relay::fanout::MailboxChange;

#[cfg(test)]
#[path = "feed_tests.rs"]
mod tests;

/// Entries read at once.
const BATCH: usize = 512;

/// The feed's waits, from [`RedisOptions`] (see "Fan-out" in the module docs for why they
/// are not the clock's).
#[derive(Debug, Clone, Copy)]
pub(super) struct Waits {
    /// Deadline of connecting and of every write ([`RedisOptions::timeout`]); reads get
    /// `block` more.
    pub(super) timeout: Duration,
    /// How long one `XREAD` blocks waiting for entries ([`RedisOptions::feed_block`]).
    pub(super) block: Duration,
    /// Pause between connection attempts ([`RedisOptions::feed_retry_delay`]).
    pub(super) retry: Duration,
}

impl Waits {
    pub(super) fn of(options: &RedisOptions) -> Waits {
        Waits {
            timeout: options.timeout,
            // `BLOCK 0` would block for ever.
            block: options.feed_block.max(Duration::from_millis(1)),
            retry: options.feed_retry_delay,
        }
    }
}

/// How the feed resumed after (re)connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Resumed {
    /// The first start: from the stream's end (after a [`MailboxChange::Resync`]).
    Started,
    /// After an outage, from the last entry seen: `missed` entries (at most 100,000
    /// counted) follow.
    Replaying { missed: usize },
    /// After an outage that the stream no longer reaches back over: a
    /// [`MailboxChange::Resync`] was sent.
    Resync,
}

pub(super) fn spawn(
    client: redis::Client,
    stream: String,
    waits: Waits,
    out: UnboundedSender<MailboxChange>,
) {
    let spawned = std::thread::Builder::new()
        .name("wormhole-redis-feed".into())
        .spawn(move || Feed::new(client, stream, waits, out).run());
    if let Err(e) = spawned {
        tracing::error!(error = %e, "relay store: cannot start the Redis change feed");
    }
}

struct Feed {
    client: redis::Client,
    stream: String,
    waits: Waits,
    out: UnboundedSender<MailboxChange>,
    con: Option<redis::Connection>,
    /// The id of the last entry forwarded (or the stream's end when the feed started).
    last: Option<String>,
    /// Whether the feed is cut off from Redis (and said so in the log).
    lost: bool,
}

/// The parts of a stream id, for comparing ids.
fn id_parts(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

impl Feed {
    fn new(
        client: redis::Client,
        stream: String,
        waits: Waits,
        out: UnboundedSender<MailboxChange>,
    ) -> Feed {
        Feed {
            client,
            stream,
            waits,
            out,
            con: None,
            last: None,
            lost: false,
        }
    }

    fn run(mut self) {
        while !self.out.is_closed() {
            if let Err(e) = self.step() {
                self.con = None;
                if !self.lost {
                    self.lost = true;
                    tracing::warn!(error = %e, "relay store: the change feed lost Redis; retrying");
                }
                // A thread outside the runtime: see "Fan-out" in the module docs.
                std::thread::sleep(self.waits.retry);
            }
        }
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let timeout = self.waits.timeout;
        let con = self.client.get_connection_with_timeout(timeout)?;
        con.set_read_timeout(Some(self.waits.block + timeout))?;
        con.set_write_timeout(Some(timeout))?;
        Ok(con)
    }

    /// Connects if needed (finding where to resume), then forwards one batch of entries.
    fn step(&mut self) -> redis::RedisResult<()> {
        let mut con = match self.con.take() {
            Some(con) => con,
            None => {
                let mut con = self.connect()?;
                self.resume(&mut con)?;
                con
            }
        };
        let read: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(BATCH)
            .arg("BLOCK")
            .arg(u64::try_from(self.waits.block.as_millis()).unwrap_or(u64::MAX))
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(self.last.as_deref().unwrap_or("0-0"))
            .query(&mut con)?;
        self.con = Some(con);
        let entries = parse_xread(read);
        for (id, change) in entries {
            if let Some(change) = change {
                if self.out.send(change).is_err() {
                    return Ok(());
                }
            }
            self.last = Some(id);
        }
        Ok(())
    }

    /// After (re)connecting: at the first start, begins at the stream's end; after an outage,
    /// replays from the last entry seen, or asks for a resync if the stream was trimmed past
    /// it (or lost, e.g. Redis restarted without persistence).
    fn resume(&mut self, con: &mut redis::Connection) -> redis::RedisResult<Resumed> {
        let newest = first_id(
            redis::cmd("XREVRANGE")
                .arg(&self.stream)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query(con)?,
        );
        let Some(last) = self.last.clone() else {
            self.last = Some(newest.unwrap_or_else(|| "0-0".into()));
            tracing::debug!(from = ?self.last, "relay store: change feed started");
            // Whatever changed between the relay's start and this moment is not in the feed:
            // a resync covers it (at start, usually nothing listens yet, so it costs nothing).
            let _ = self.out.send(MailboxChange::Resync);
            return Ok(Resumed::Started);
        };
        let oldest = first_id(
            redis::cmd("XRANGE")
                .arg(&self.stream)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .query(con)?,
        );
        let missed: usize = redis::cmd("XRANGE")
            .arg(&self.stream)
            .arg(format!("({last}"))
            .arg("+")
            .arg("COUNT")
            .arg(100_000)
            .query::<Vec<Value>>(con)
            .map(|v| v.len())
            .unwrap_or(0);
        let gap = match (&oldest, &newest) {
            // Trimmed past our place, or the stream went back in time (lost and recreated).
            (Some(oldest), Some(newest)) => {
                id_parts(oldest) > id_parts(&last) || id_parts(newest) < id_parts(&last)
            }
            // Gone (e.g. Redis restarted without persistence): whatever happened is unknown.
            _ => last != "0-0",
        };
        self.lost = false;
        if gap {
            tracing::warn!(
                last_seen = %last,
                "relay store: the change feed is back, but the stream no longer reaches back to \
                 its place: reading every listened mailbox again"
            );
            if id_parts(newest.as_deref().unwrap_or("0-0")) < id_parts(&last) {
                self.last = Some(newest.unwrap_or_else(|| "0-0".into()));
            }
            let _ = self.out.send(MailboxChange::Resync);
            Ok(Resumed::Resync)
        } else {
            tracing::info!(
                from = %last,
                missed,
                "relay store: the change feed is back; replaying the changes missed meanwhile"
            );
            Ok(Resumed::Replaying { missed })
        }
    }
}

/// The id of the first entry of an `XRANGE`/`XREVRANGE` reply.
fn first_id(reply: Value) -> Option<String> {
    let Value::Array(entries) = reply else {
        return None;
    };
    let Value::Array(entry) = entries.into_iter().next()? else {
        return None;
    };
    text(entry.into_iter().next()?)
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// `XREAD`'s reply for one stream: `[[stream, [[id, [k, v, ...]], ...]]]` (RESP2) or a map
/// (RESP3). Entries that are not ours are kept (their id advances the feed) as `None`.
fn parse_xread(reply: Value) -> Vec<(String, Option<MailboxChange>)> {
    let streams = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
                _ => None,
            })
            .collect::<Vec<_>>(),
        Value::Map(pairs) => pairs.into_iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for entries in streams {
        let Value::Array(entries) = entries else {
            continue;
        };
        for entry in entries {
            let Value::Array(mut parts) = entry else {
                continue;
            };
            if parts.len() != 2 {
                continue;
            }
            let fields = parts.pop();
            let Some(id) = parts.pop().and_then(text) else {
                continue;
            };
            out.push((id, fields.and_then(parse_fields)));
        }
    }
    out
}

fn parse_fields(fields: Value) -> Option<MailboxChange> {
    let Value::Array(fields) = fields else {
        return None;
    };
    let (mut appid, mut mailbox, mut count, mut deleted) = (None, None, None, false);
    let mut it = fields.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        match (text(k)?.as_str(), text(v)) {
            ("a", v) => appid = v,
            ("m", v) => mailbox = v,
            ("n", Some(v)) => count = v.parse::<usize>().ok(),
            ("d", _) => deleted = true,
            ("r", _) => return Some(MailboxChange::Resync),
            _ => {}
        }
    }
    let (appid, mailbox) = (appid?, mailbox?);
    if deleted {
        return Some(MailboxChange::Deleted { appid, mailbox });
    }
    Some(MailboxChange::Added {
        appid,
        mailbox,
        count: count?,
    })
}
