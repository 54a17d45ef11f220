//! The change feed against a real `redis-server`: where it resumes after losing Redis (the
//! replay and its log line, or a resync), and the thread's reconnection with the retry delay
//! of the options.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;

use super::{Feed, Resumed, Waits};
use crate::relay::redis::tests::{quick, TestRedis};
use crate::relay::redis::RedisStore;
use crate::relay::shared::SharedStore;
use crate::relay::{MailboxChange, MailboxStore, StoredMessage};

const STREAM: &str = "wormhole:changes";

fn waits() -> Waits {
    Waits {
        timeout: Duration::from_secs(2),
        block: Duration::from_millis(10),
        retry: Duration::from_millis(10),
    }
}

fn feed(redis: &TestRedis) -> (Feed, mpsc::UnboundedReceiver<MailboxChange>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = redis::Client::open(redis.url()).expect("url");
    (Feed::new(client, STREAM.into(), waits(), tx), rx)
}

/// Adds `n` messages to mailbox `m` of app `x` (creating it), one transaction each.
fn add(store: &mut RedisStore, n: usize) {
    for i in 0..n {
        store
            .transaction(&mut |tx| {
                if !tx.has_mailbox("x", "m")? {
                    tx.insert_mailbox("x", "m", false, 1.0)?;
                }
                tx.add_message(
                    "x",
                    "m",
                    StoredMessage {
                        side: "s".into(),
                        phase: i.to_string(),
                        body: "aa".into(),
                        server_rx: 1.0,
                        msg_id: Some(json!(i)),
                    },
                )
            })
            .expect("add");
    }
}

fn received(rx: &mut mpsc::UnboundedReceiver<MailboxChange>) -> Vec<MailboxChange> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

fn added(count: usize) -> MailboxChange {
    MailboxChange::Added {
        appid: "x".into(),
        mailbox: "m".into(),
        count,
    }
}

/// Runs `f` with the `tracing` output of this thread captured, and returns it with `f`'s
/// result.
#[cfg(feature = "cli")]
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&buffer.0.lock().unwrap_or_else(|e| e.into_inner())).into();
    (result, text)
}

#[cfg(not(feature = "cli"))]
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    (f(), String::new())
}

#[test]
fn after_an_outage_the_feed_replays_what_it_missed_and_says_how_much() {
    let redis = TestRedis::start();
    let mut store = redis.store();
    add(&mut store, 2); // before the feed: not in it
    let (mut feed, mut rx) = feed(&redis);
    feed.step().expect("first step");
    assert_eq!(received(&mut rx), [MailboxChange::Resync]);
    add(&mut store, 1);
    feed.step().expect("a step");
    assert_eq!(received(&mut rx), [added(3)]);
    // The connection is lost (as `run` drops it after a failure); three adds meanwhile.
    feed.con = None;
    add(&mut store, 3);
    let mut con = feed.connect().expect("reconnect");
    let (resumed, log) = logged(|| feed.resume(&mut con).expect("resume"));
    assert_eq!(resumed, Resumed::Replaying { missed: 3 });
    if cfg!(feature = "cli") {
        assert!(log.contains("the change feed is back; replaying"), "{log}");
        assert!(log.contains("missed=3"), "{log}");
    }
    feed.con = Some(con);
    feed.step().expect("the replay");
    assert_eq!(received(&mut rx), [added(4), added(5), added(6)]);
}

#[test]
fn a_stream_trimmed_past_the_feed_or_lost_means_a_resync() {
    let redis = TestRedis::start();
    let mut store = redis.store();
    let (mut feed, mut rx) = feed(&redis);
    feed.step().expect("first step");
    add(&mut store, 1);
    feed.step().expect("a step");
    assert_eq!(received(&mut rx), [MailboxChange::Resync, added(1)]);
    let mut admin = redis::Client::open(redis.url())
        .and_then(|c| c.get_connection())
        .expect("admin connection");
    // Trimmed past the last entry the feed saw: entries were lost to it.
    feed.con = None;
    add(&mut store, 2);
    redis::cmd("XTRIM")
        .arg(STREAM)
        .arg("MAXLEN")
        .arg(1)
        .exec(&mut admin)
        .expect("trim");
    let mut con = feed.connect().expect("reconnect");
    let (resumed, log) = logged(|| feed.resume(&mut con).expect("resume"));
    assert_eq!(resumed, Resumed::Resync);
    if cfg!(feature = "cli") {
        assert!(log.contains("no longer reaches back"), "{log}");
    }
    assert_eq!(received(&mut rx), [MailboxChange::Resync]);
    // The stream is gone (Redis restarted without persistence): a resync, and the feed
    // follows the new stream from its start.
    feed.con = None;
    redis::cmd("DEL").arg(STREAM).exec(&mut admin).expect("del");
    let mut con = feed.connect().expect("reconnect");
    assert_eq!(feed.resume(&mut con).expect("resume"), Resumed::Resync);
    assert_eq!(received(&mut rx), [MailboxChange::Resync]);
    feed.con = Some(con);
    add(&mut store, 1);
    feed.step().expect("a step");
    assert_eq!(received(&mut rx), [added(4)]);
}

#[test]
fn the_feed_thread_reconnects_after_its_connection_is_killed() {
    let redis = TestRedis::start();
    let mut store = RedisStore::open(
        &redis.url(),
        crate::relay::redis::RedisOptions {
            feed_block: Duration::from_millis(20),
            feed_retry_delay: Duration::from_millis(20),
            ..quick()
        },
    )
    .expect("store");
    // One entry before the feed starts, so that it starts from an entry rather than from an
    // empty stream (after which any outage ends in a resync, as the feed cannot tell a new
    // stream's entries from a trimmed one's).
    add(&mut store, 1);
    let mut rx = store.changes();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut next = || loop {
        if let Ok(change) = rx.try_recv() {
            return change;
        }
        assert!(Instant::now() < deadline, "no change from the feed in time");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(next(), MailboxChange::Resync);
    let mut admin = redis::Client::open(redis.url())
        .and_then(|c| c.get_connection())
        .expect("admin connection");
    // Every other client's connection goes (the store's is replaced silently).
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .exec(&mut admin)
        .expect("client kill");
    add(&mut store, 2);
    assert_eq!(next(), added(2));
    assert_eq!(next(), added(3));
}
