//! Our relay over real WebSocket connections on loopback: the in-process runner with a
//! `WebSocketListener`, and the `wormhole-relay` binary.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use wormhole::clock::TokioClock;
use wormhole::relay::errors;
use wormhole::relay::server::{spawn, RelayHandle, ServerOptions};
use wormhole::relay::{MemoryStore, RelayConfig};
use wormhole::transports::websocket::{WebSocketListener, WebSocketOptions, WebSocketTransport};
use wormhole::transports::{Connection, Listener, Transport};
use wormhole::{Initiator, Receiver};

const DEADLINE: Duration = Duration::from_secs(30);

fn start(config: RelayConfig) -> RelayHandle {
    let listener =
        WebSocketListener::bind("127.0.0.1:0".parse().unwrap(), WebSocketOptions::relay()).unwrap();
    let options = ServerOptions {
        config,
        ..ServerOptions::default()
    };
    spawn(
        vec![Box::new(listener) as Box<dyn Listener>],
        MemoryStore::default(),
        options,
        Arc::new(TokioClock::new()),
    )
}

async fn raw(url: &str) -> Box<dyn Connection> {
    WebSocketTransport::default().connect(url).await.unwrap()
}

async fn next_json(conn: &mut Box<dyn Connection>) -> Value {
    let text = tokio::time::timeout(DEADLINE, conn.recv())
        .await
        .expect("a frame within the deadline")
        .unwrap()
        .expect("connection open");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_library_exchanges_through_our_relay_over_websocket() {
    let relay = start(RelayConfig::default());
    let url = relay.url().to_string();
    assert!(
        url.starts_with("ws://127.0.0.1:") && url.ends_with("/v1"),
        "{url}"
    );
    let run = async {
        let mut i = Initiator::new("example.com/ws-test", &url);
        let code = i.get_code().await.unwrap();
        let mut r = Receiver::new("example.com/ws-test", &url);
        r.set_code(code.as_str()).await.unwrap();
        let a = tokio::spawn(async move { i.get_data(b"over websocket").await });
        let b = r.get_data(b"and back").await.unwrap();
        assert_eq!(b, b"over websocket");
        assert_eq!(a.await.unwrap().unwrap(), b"and back");
    };
    tokio::time::timeout(DEADLINE, run).await.unwrap();
}

#[tokio::test]
async fn malformed_and_oversized_frames_get_errors_and_the_connection_stays_usable() {
    let relay = start(RelayConfig {
        motd: Some("be nice".into()),
        ..RelayConfig::default()
    });
    let mut c = raw(relay.url()).await;
    let welcome = next_json(&mut c).await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["welcome"]["motd"], "be nice");
    assert_eq!(welcome["welcome"]["your-address"]["ipv4"], "127.0.0.1");
    assert!(welcome["welcome"]["your-address"]["port"].as_u64().unwrap() > 0);

    c.send("this is not json".into()).await.unwrap();
    let e = next_json(&mut c).await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"], errors::MALFORMED_JSON);

    // Just over the 1 MiB limit (the transport lets it through; the relay refuses it).
    let big = format!(
        r#"{{"type":"ping","ping":1,"pad":"{}"}}"#,
        "x".repeat(1024 * 1024)
    );
    c.send(big).await.unwrap();
    let e = next_json(&mut c).await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"], errors::FRAME_TOO_LARGE);

    c.send(r#"{"type":"ping","ping":42,"id":"0001"}"#.into())
        .await
        .unwrap();
    let ack = next_json(&mut c).await;
    assert_eq!(ack["type"], "ack");
    assert_eq!(ack["id"], "0001");
    let pong = next_json(&mut c).await;
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["pong"], 42);
    assert!(pong["server_tx"].as_f64().unwrap() > 1.0e9);
}

/// The binary: starts on a free port, serves `GET /`, and stops cleanly on SIGTERM.
#[test]
fn the_relay_binary_serves_and_shuts_down_on_sigterm() {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut child = Command::new(env!("CARGO_BIN_EXE_wormhole-relay"))
        .args(["--listen", "127.0.0.1:0", "--motd", "hello"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(DEADLINE)
        .expect("the relay announces its URL");
    let url = line
        .trim()
        .strip_prefix("wormhole-relay listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let addr = url
        .trim_start_matches("ws://")
        .trim_end_matches("/v1")
        .to_string();

    let mut http = std::net::TcpStream::connect(&addr).unwrap();
    http.set_read_timeout(Some(DEADLINE)).unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    let _ = http.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("Wormhole Relay\n"), "{response}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = raw(&url).await;
        let welcome = next_json(&mut c).await;
        assert_eq!(welcome["welcome"]["motd"], "hello");
    });

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the relay did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
