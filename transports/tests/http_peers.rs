//! HTTP-polling sessions shared by two relay "processes" (two `HttpPolling`s on their own
//! loopback ports, joined by a `MemoryPeerBus`): a session opened on A is used through B
//! (sends, a parked long poll, DELETE); an owner gone gives 404; session ids never reach the
//! logs.

#![cfg(feature = "http")]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use tokio::time::Instant;
use wormhole_transports::http::{
    ForwardError, ForwardKind, ForwardedRequest, ForwardedResponse, HttpClientOptions, HttpMetrics,
    HttpPolling, HttpServerOptions, HttpTransport, Instance, MemoryPeerBus, MemorySessionPeers,
    SessionListener, SessionPeers,
};
use wormhole_transports::net::{BoxedStream, Dialer};
use wormhole_transports::websocket::{WebSocketListener, WebSocketOptions};
use wormhole_transports::Listener;
use wormhole_transports::Transport;

const DEADLINE: Duration = Duration::from_secs(20);
const A: Instance = Instance(0x00aa_00aa_00aa_00aa);
const B: Instance = Instance(0x00bb_00bb_00bb_00bb);

/// Counts forwarded requests.
#[derive(Default)]
struct Counts {
    forwarded: AtomicU64,
}

impl HttpMetrics for Counts {
    fn request(&self) {}
    fn render(&self) -> String {
        String::new()
    }
    fn forwarded(&self) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
    }
}

struct Relay {
    addr: SocketAddr,
    closed: tokio::sync::mpsc::UnboundedReceiver<()>,
    _listener: WebSocketListener,
}

fn start(bus: &MemoryPeerBus, instance: Instance, seed: u8, counts: Arc<Counts>) -> Relay {
    start_with(bus.peers(instance), seed, counts)
}

fn start_with(peers: Arc<dyn SessionPeers>, seed: u8, counts: Arc<Counts>) -> Relay {
    let (polling, sessions) = HttpPolling::new(HttpServerOptions {
        peers: Some(peers),
        metrics: Some(counts),
        ..HttpServerOptions::new([seed; 32])
    });
    let listener = WebSocketListener::bind_with_handler(
        "127.0.0.1:0".parse().unwrap(),
        WebSocketOptions::relay(),
        polling,
    )
    .unwrap();
    let addr = listener
        .url()
        .trim_start_matches("ws://")
        .trim_end_matches("/v1")
        .parse()
        .unwrap();
    let (tx, closed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(echo(sessions, tx));
    Relay {
        addr,
        closed,
        _listener: listener,
    }
}

/// A stand-in relay runner: `{"hello":1}`, then `{"echo": FRAME}` per frame, with receipts.
async fn echo(mut sessions: SessionListener, closed: tokio::sync::mpsc::UnboundedSender<()>) {
    while let Ok(mut conn) = sessions.accept().await {
        let closed = closed.clone();
        tokio::spawn(async move {
            conn.send(r#"{"hello":1}"#.into()).await.unwrap();
            let mut handled = 0;
            while let Ok(Some(frame)) = conn.recv().await {
                conn.send(format!(r#"{{"echo":{frame}}}"#)).await.unwrap();
                handled += 1;
                conn.handled(handled);
            }
            let _ = closed.send(());
        });
    }
}

/// One HTTP/1.1 request on a fresh connection: the status and the JSON body.
async fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    timeout(DEADLINE, async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: relay\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(body.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).unwrap();
        let status = text[9..12].parse().unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1;
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    })
    .await
    .expect("an answer in time")
}

/// Collects every log line, at every level.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn a_session_opened_on_one_process_is_served_through_another() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // Global, not per thread: with a thread's default only, a callsite first reached by
    // another test's thread (no subscriber) can stay disabled for this one.
    tracing::subscriber::set_global_default(subscriber).expect("the only test that logs");

    let bus = MemoryPeerBus::new();
    let counts = Arc::new(Counts::default());
    let mut a = start(&bus, A, 1, counts.clone());
    let b = start(&bus, B, 2, counts.clone());

    // Opened on A: A owns it, and its id says so.
    let (status, opened) = request(a.addr, "POST", "/v1/http/session", "").await;
    assert_eq!(status, 201, "{opened}");
    let id = opened["session"].as_str().unwrap().to_owned();
    assert_eq!(Instance::of_session(&id), Some(A), "{id}");
    assert_eq!(opened["frames"], json!([{"hello": 1}]));
    let session = format!("/v1/http/session/{id}");

    // A long poll through B parks at A until a frame arrives.
    let events = format!("{session}/events?after=1&wait=10");
    let poll = tokio::spawn(async move { request(b.addr, "GET", &events, "").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "the long poll did not wait");

    // A send through B reaches the relay at A and brings back its reply.
    let send = format!("{session}/send");
    let (status, sent) = request(
        b.addr,
        "POST",
        &send,
        r#"{"seq":1,"after":1,"frames":[{"n":1}]}"#,
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["frames"], json!([{"echo": {"n": 1}}]));
    assert_eq!(sent["cursor"], 2);
    let (status, polled) = timeout(DEADLINE, poll).await.unwrap().unwrap();
    assert_eq!(status, 200, "{polled}");
    assert_eq!(polled["frames"], json!([{"echo": {"n": 1}}]));

    // The owner's answers travel back as they are: an out-of-order seq is 409, with details.
    let (status, conflict) = request(
        b.addr,
        "POST",
        &send,
        r#"{"seq":5,"after":2,"frames":[{"n":2}]}"#,
    )
    .await;
    assert_eq!((status, conflict["expected"].clone()), (409, json!(2)));
    // A body that is not JSON (the owner says 400), a bad query (400 where it arrived).
    let (status, _) = request(b.addr, "POST", &send, "\u{0}").await;
    assert_eq!(status, 400);
    let (status, _) = request(b.addr, "GET", &format!("{session}/events?wait=x"), "").await;
    assert_eq!(status, 400);

    // DELETE through B closes the session at A.
    let (status, deleted) = request(b.addr, "DELETE", &session, "").await;
    assert_eq!((status, deleted), (200, json!({"closed": true})));
    timeout(DEADLINE, a.closed.recv())
        .await
        .expect("the relay at A saw the session end");
    let (status, _) = request(a.addr, "GET", &format!("{session}/events"), "").await;
    assert_eq!(status, 404);
    assert!(counts.forwarded.load(Ordering::Relaxed) >= 4);

    // The owner gone: 404, so the client opens a new session.
    let (_, opened) = request(a.addr, "POST", "/v1/http/session", "").await;
    let second = opened["session"].as_str().unwrap().to_owned();
    let (status, _) = request(
        b.addr,
        "GET",
        &format!("/v1/http/session/{second}/events"),
        "",
    )
    .await;
    assert_eq!(status, 200, "A still answers");
    bus.leave(A);
    let (status, gone) = request(
        b.addr,
        "GET",
        &format!("/v1/http/session/{second}/events"),
        "",
    )
    .await;
    assert_eq!(status, 404, "{gone}");
    assert!(
        gone["error"].as_str().unwrap().contains("process is gone"),
        "{gone}"
    );
    // An id naming B itself, or no process, is only looked up locally.
    let (status, _) = request(
        b.addr,
        "GET",
        &format!("/v1/http/session/{B}.{}/events", "0".repeat(32)),
        "",
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = request(
        b.addr,
        "GET",
        &format!("/v1/http/session/{}/events", "0".repeat(32)),
        "",
    )
    .await;
    assert_eq!(status, 404);

    let logs = logs.text();
    assert!(logs.contains("HTTP polling"), "nothing was logged: {logs}");
    for secret in [&id, &second] {
        let random = secret.split_once('.').unwrap().1;
        assert!(!logs.contains(random), "a session id in the logs:\n{logs}");
    }
}

/// B's peers, failing its first forwarded poll as if the owner did not answer in time (the
/// client gets 503).
struct FirstPollTimesOut {
    inner: Arc<MemorySessionPeers>,
    failed: AtomicU64,
}

#[async_trait]
impl SessionPeers for FirstPollTimesOut {
    fn instance(&self) -> Instance {
        self.inner.instance()
    }
    fn attach(&self, polling: std::sync::Weak<HttpPolling>) {
        self.inner.attach(polling)
    }
    async fn forward(
        &self,
        owner: Instance,
        request: ForwardedRequest,
        deadline: Instant,
    ) -> Result<ForwardedResponse, ForwardError> {
        if request.kind == ForwardKind::Events
            && self
                .failed
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            return Err(ForwardError::TimedOut);
        }
        self.inner.forward(owner, request, deadline).await
    }
}

/// The client's first connection (the one that opens the session) goes to A, every later one
/// (the poller's) to B.
#[derive(Debug)]
struct FirstToA {
    a: SocketAddr,
    b: SocketAddr,
    dials: AtomicU64,
}

#[async_trait]
impl Dialer for FirstToA {
    async fn dial(&self, _host: &str, _port: u16) -> std::io::Result<BoxedStream> {
        let to = if self.dials.fetch_add(1, Ordering::SeqCst) == 0 {
            self.a
        } else {
            self.b
        };
        Ok(Box::new(tokio::net::TcpStream::connect(to).await?))
    }
}

#[tokio::test]
async fn a_poll_answered_503_by_a_forwarding_process_is_retried_not_fatal() {
    let bus = MemoryPeerBus::new();
    let counts = Arc::new(Counts::default());
    let a = start(&bus, A, 5, counts.clone());
    let peers_b = Arc::new(FirstPollTimesOut {
        inner: bus.peers(B),
        failed: AtomicU64::new(0),
    });
    let b = start_with(peers_b.clone(), 6, counts.clone());
    let dialer = Arc::new(FirstToA {
        a: a.addr,
        b: b.addr,
        dials: AtomicU64::new(0),
    });
    let client = HttpTransport::new(HttpClientOptions::default()).with_dialer(dialer.clone());
    let mut conn = timeout(DEADLINE, client.connect(&format!("http://{}/v1", a.addr)))
        .await
        .expect("connected in time")
        .expect("connected");
    assert_eq!(next(&mut conn).await, r#"{"hello":1}"#);
    // The poller's first fetch goes through B, which cannot reach the owner: 503.
    conn.poll().await.unwrap();
    timeout(DEADLINE, async {
        while peers_b.failed.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the first forwarded poll failed");
    // The client tried again instead of giving up the session: frames still flow both ways.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 1..=3 {
        conn.send(format!(r#"{{"n":{n}}}"#)).await.unwrap();
        conn.poll().await.unwrap();
        assert_eq!(next(&mut conn).await, format!(r#"{{"echo":{{"n":{n}}}}}"#));
    }
    assert!(
        dialer.dials.load(Ordering::SeqCst) >= 2,
        "the poller used B"
    );
    assert!(counts.forwarded.load(Ordering::Relaxed) >= 1);
    conn.close().await.unwrap();
}

async fn next(conn: &mut Box<dyn wormhole_transports::Connection>) -> String {
    timeout(DEADLINE, conn.recv())
        .await
        .expect("a frame in time")
        .expect("the connection still works")
        .expect("a frame, not the end")
}
