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

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use wormhole_transports::http::{
    HttpMetrics, HttpPolling, HttpServerOptions, Instance, MemoryPeerBus, SessionListener,
};
use wormhole_transports::websocket::{WebSocketListener, WebSocketOptions};
use wormhole_transports::Listener;

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
    let (polling, sessions) = HttpPolling::new(HttpServerOptions {
        peers: Some(bus.peers(instance)),
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
    let _logging = tracing::subscriber::set_default(subscriber);

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
