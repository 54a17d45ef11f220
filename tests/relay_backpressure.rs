//! A client that stops reading cannot pin the relay: its writes have a deadline and the frames
//! queued for it a byte budget; past either, that one connection is dropped and every other
//! client goes on as before.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use wormhole::clock::TokioClock;
use wormhole::relay::server::{spawn, RelayHandle, ServerOptions};
use wormhole::relay::MemoryStore;
use wormhole::transports::memory::{MemoryListener, MemoryTransport};
use wormhole::transports::{Connection, Listener, Transport, TransportError};

/// A client connection that sends what the test gives it and never reads: once a small
/// buffer's worth was written to it, every write hangs, as on a TCP connection whose peer
/// stopped reading.
#[derive(Debug)]
struct DeafConnection {
    frames: mpsc::UnboundedReceiver<String>,
    dropped: Arc<AtomicBool>,
    buffered: usize,
}

/// What a deaf connection takes before its writes hang.
const DEAF_BUFFER: usize = 1024;

impl Drop for DeafConnection {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl Connection for DeafConnection {
    async fn send(&mut self, frame: String) -> Result<(), TransportError> {
        if self.buffered >= DEAF_BUFFER {
            std::future::pending().await
        }
        self.buffered += frame.len();
        Ok(())
    }

    async fn recv(&mut self) -> Result<Option<String>, TransportError> {
        match self.frames.recv().await {
            Some(frame) => Ok(Some(frame)),
            None => std::future::pending().await,
        }
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        std::future::pending().await // a close that hangs as well
    }
}

/// Hands the relay one deaf connection.
#[derive(Debug)]
struct DeafListener(Option<DeafConnection>);

#[async_trait]
impl Listener for DeafListener {
    async fn accept(&mut self) -> Result<Box<dyn Connection>, TransportError> {
        match self.0.take() {
            Some(conn) => Ok(Box::new(conn)),
            None => std::future::pending().await,
        }
    }

    fn url(&self) -> String {
        "deaf://".into()
    }
}

async fn recv_type(conn: &mut Box<dyn Connection>, ty: &str) -> serde_json::Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), conn.recv())
            .await
            .expect("the relay answers in time")
            .expect("connection works")
            .expect("connection open");
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        if v["type"] == ty {
            return v;
        }
    }
}

/// Starts a relay with `options`, a deaf client bound to mailbox "mb" and a normal client (over
/// `mem://NAME`) on the same mailbox; returns the normal client, the deaf one's flag, and what
/// must stay alive for the test (the relay, the deaf client's frame feed).
async fn setup(
    name: &str,
    options: ServerOptions,
) -> (
    Box<dyn Connection>,
    Arc<AtomicBool>,
    (RelayHandle, mpsc::UnboundedSender<String>),
) {
    let (feed, frames) = mpsc::unbounded_channel();
    let dropped = Arc::new(AtomicBool::new(false));
    let deaf = DeafListener(Some(DeafConnection {
        frames,
        dropped: dropped.clone(),
        buffered: 0,
    }));
    let memory = MemoryListener::bind(name).unwrap();
    let relay = spawn(
        vec![Box::new(memory), Box::new(deaf)],
        MemoryStore::default(),
        options,
        Arc::new(TokioClock::new()),
    );
    for frame in [
        r#"{"type":"bind","appid":"a","side":"deaf"}"#,
        r#"{"type":"open","mailbox":"mb"}"#,
    ] {
        feed.send(frame.to_string()).unwrap();
    }
    let mut normal = MemoryTransport
        .connect(&format!("mem://{name}"))
        .await
        .unwrap();
    for frame in [
        r#"{"type":"bind","appid":"a","side":"normal"}"#,
        r#"{"type":"open","mailbox":"mb"}"#,
    ] {
        normal.send(frame.to_string()).await.unwrap();
    }
    recv_type(&mut normal, "welcome").await;
    (normal, dropped, (relay, feed))
}

async fn add(conn: &mut Box<dyn Connection>, i: usize, body_len: usize) {
    let body = "ab".repeat(body_len / 2);
    let frame = format!(r#"{{"type":"add","phase":"{i}","body":"{body}","id":"a{i}"}}"#);
    conn.send(frame).await.unwrap();
    // The echo to ourselves shows the add was applied.
    loop {
        let m = recv_type(conn, "message").await;
        if m["phase"] == i.to_string().as_str() {
            break;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_connection_over_its_outbox_budget_is_dropped_and_others_go_on() {
    let options = ServerOptions {
        outbox_budget: 64 * 1024,
        // Far away, so that only the budget can drop the deaf connection here.
        send_timeout: Duration::from_secs(3600),
        ..ServerOptions::default()
    };
    let (mut normal, dropped, _alive) = setup("backpressure-budget", options).await;
    // 40 adds of 8 KiB echo 320 KiB to the deaf side, five times its budget.
    for i in 0..40 {
        add(&mut normal, i, 8 * 1024).await;
    }
    // Dropped although its writes and its close hang forever, long before any deadline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        dropped.load(Ordering::SeqCst),
        "the deaf connection was never dropped"
    );
    // The normal client is unaffected.
    normal
        .send(r#"{"type":"ping","ping":7}"#.into())
        .await
        .unwrap();
    assert_eq!(recv_type(&mut normal, "pong").await["pong"], 7);
}

#[tokio::test(start_paused = true)]
async fn a_write_that_hangs_drops_the_connection_at_the_send_deadline() {
    let options = ServerOptions {
        send_timeout: Duration::from_secs(30),
        ..ServerOptions::default()
    };
    let (mut normal, dropped, _alive) = setup("backpressure-deadline", options).await;
    add(&mut normal, 0, 2 * DEAF_BUFFER).await; // fills the deaf side's buffer
    add(&mut normal, 1, 16).await; // within the budget, but this write hangs
    let started = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert!(
        !dropped.load(Ordering::SeqCst),
        "dropped before its deadline"
    );
    // The write's deadline (30 s), then the close's (30 s more: it hangs too).
    tokio::time::sleep(Duration::from_secs(32)).await;
    assert!(
        dropped.load(Ordering::SeqCst),
        "still connected after {:?}",
        started.elapsed()
    );
    normal
        .send(r#"{"type":"ping","ping":8}"#.into())
        .await
        .unwrap();
    assert_eq!(recv_type(&mut normal, "pong").await["pong"], 8);
}
