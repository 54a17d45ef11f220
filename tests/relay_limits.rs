//! The relay's limits over real WebSocket connections on loopback: the client at fault gets
//! the `error` frame naming the limit (or is refused), and every other client goes on.
//!
//! Per-source limits spare 127.0.0.1 by default, so the "hostile" clients here connect from
//! 127.0.0.2 (on Linux all of 127.0.0.0/8 is loopback).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::net::TcpSocket;
use wormhole::clock::TokioClock;
use wormhole::relay::metrics::Metrics;
use wormhole::relay::server::{spawn, RelayHandle, ServerOptions};
use wormhole::relay::{Limit, Limits, MemoryStore, RelayConfig};
use wormhole::transports::websocket::{
    WebSocketConnection, WebSocketListener, WebSocketOptions, WebSocketTransport,
};
use wormhole::transports::{Connection, Listener, Transport};

const DEADLINE: Duration = Duration::from_secs(20);

fn start(limits: Limits, metrics: Arc<Metrics>) -> (RelayHandle, SocketAddr) {
    let listener =
        WebSocketListener::bind("127.0.0.1:0".parse().unwrap(), WebSocketOptions::relay()).unwrap();
    let addr = listener.local_addr();
    let options = ServerOptions {
        config: RelayConfig {
            limits,
            ..RelayConfig::default()
        },
        metrics,
        ..ServerOptions::default()
    };
    let relay = spawn(
        vec![Box::new(listener) as Box<dyn Listener>],
        MemoryStore::default(),
        options,
        Arc::new(TokioClock::new()),
    );
    (relay, addr)
}

/// A WebSocket client whose TCP connection comes from `source` (an address on loopback).
async fn connect_from(source: &str, relay: SocketAddr) -> Box<dyn Connection> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let stream = tokio::time::timeout(DEADLINE, socket.connect(relay))
        .await
        .unwrap()
        .unwrap();
    let url = format!("ws://{relay}/v1");
    Box::new(
        WebSocketConnection::client_over(stream, &url)
            .await
            .unwrap(),
    )
}

/// The next frame, or `None` if the relay closed the connection.
async fn next(conn: &mut Box<dyn Connection>) -> Option<Value> {
    let frame = tokio::time::timeout(DEADLINE, conn.recv())
        .await
        .expect("the relay answers within the deadline")
        .ok()??;
    Some(serde_json::from_str(&frame).unwrap())
}

/// Reads frames until one of type `ty`.
async fn next_of(conn: &mut Box<dyn Connection>, ty: &str) -> Value {
    loop {
        let frame = next(conn).await.expect("connection open");
        if frame["type"] == ty {
            return frame;
        }
    }
}

async fn send(conn: &mut Box<dyn Connection>, frame: Value) {
    conn.send(frame.to_string()).await.unwrap();
}

async fn ping(conn: &mut Box<dyn Connection>, n: i64) {
    send(conn, json!({"type": "ping", "ping": n})).await;
    assert_eq!(next_of(conn, "pong").await["pong"], n);
}

#[tokio::test]
async fn a_source_over_its_connections_is_refused_and_others_are_not() {
    let metrics = Arc::new(Metrics::default());
    let limits = Limits {
        connections_per_source: 3,
        ..Limits::default()
    };
    let (_relay, addr) = start(limits, metrics.clone());
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = connect_from("127.0.0.2", addr).await;
        assert_eq!(next(&mut c).await.unwrap()["type"], "welcome");
        held.push(c);
    }
    // The fourth gets the error naming the limit, then the relay closes it.
    let mut refused = connect_from("127.0.0.2", addr).await;
    let error = next(&mut refused).await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"], Limit::ConnectionsPerSource.error());
    assert!(next(&mut refused).await.is_none(), "closed after the error");
    assert_eq!(metrics.limit_hits("connections_per_source"), 1);
    // 127.0.0.1 is spared; another source is counted on its own.
    for source in [
        "127.0.0.1",
        "127.0.0.1",
        "127.0.0.1",
        "127.0.0.1",
        "127.0.0.3",
    ] {
        let mut c = connect_from(source, addr).await;
        assert_eq!(next(&mut c).await.unwrap()["type"], "welcome");
        ping(&mut c, 1).await;
    }
    // The three that were in first still work, and once one leaves there is room again.
    for (i, c) in held.iter_mut().enumerate() {
        ping(c, i as i64).await;
    }
    let mut gone = held.pop().unwrap();
    gone.close().await.unwrap();
    drop(gone);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut c = connect_from("127.0.0.2", addr).await;
        if next(&mut c).await.unwrap()["type"] == "welcome" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no room after a close"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_full_mailbox_refuses_adds_with_the_limit_and_its_listeners_go_on() {
    let metrics = Arc::new(Metrics::default());
    let limits = Limits {
        messages_per_mailbox: 4,
        ..Limits::default()
    };
    let (_relay, addr) = start(limits, metrics.clone());
    let url = format!("ws://{addr}/v1");
    let mut a = WebSocketTransport::default().connect(&url).await.unwrap();
    let mut b = WebSocketTransport::default().connect(&url).await.unwrap();
    for (c, side) in [(&mut a, "a"), (&mut b, "b")] {
        send(c, json!({"type": "bind", "appid": "t", "side": side})).await;
        send(c, json!({"type": "open", "mailbox": "mb"})).await;
    }
    for phase in 0..4 {
        send(
            &mut a,
            json!({"type": "add", "phase": phase.to_string(), "body": "aa"}),
        )
        .await;
        assert_eq!(next_of(&mut b, "message").await["phase"], phase.to_string());
    }
    send(&mut a, json!({"type": "add", "phase": "4", "body": "aa"})).await;
    let error = next_of(&mut a, "error").await;
    assert_eq!(error["error"], Limit::MailboxMessages.error());
    assert_eq!(error["orig"]["phase"], "4");
    assert_eq!(metrics.limit_hits("mailbox_messages"), 1);
    // Both connections stay usable; the listener got no fifth message.
    ping(&mut a, 1).await;
    send(&mut b, json!({"type": "ping", "ping": 2})).await;
    let frame = next_of(&mut b, "pong").await;
    assert_eq!(frame["pong"], 2);
}

#[tokio::test]
async fn allocations_from_one_source_are_rate_limited_and_others_allocate() {
    let metrics = Arc::new(Metrics::default());
    let limits = Limits {
        allocations_per_source: wormhole::relay::Rate { per_minute: 2 },
        ..Limits::default()
    };
    let (_relay, addr) = start(limits, metrics.clone());
    let mut results = Vec::new();
    for i in 0..3 {
        let mut c = connect_from("127.0.0.2", addr).await;
        send(
            &mut c,
            json!({"type": "bind", "appid": "t", "side": format!("s{i}")}),
        )
        .await;
        send(&mut c, json!({"type": "allocate"})).await;
        loop {
            let frame = next(&mut c).await.expect("open");
            if frame["type"] == "allocated" || frame["type"] == "error" {
                results.push(frame);
                break;
            }
        }
        // Disconnect: the nameplates stay allocated (and will expire as abandoned).
    }
    assert_eq!(results[0]["type"], "allocated");
    assert_eq!(results[1]["type"], "allocated");
    assert_eq!(results[2]["error"], Limit::Allocations.error());
    let mut local = connect_from("127.0.0.1", addr).await;
    send(
        &mut local,
        json!({"type": "bind", "appid": "t", "side": "local"}),
    )
    .await;
    send(&mut local, json!({"type": "allocate"})).await;
    assert!(next_of(&mut local, "allocated").await["nameplate"].is_string());
}

#[tokio::test(start_paused = true)]
async fn a_connection_over_its_inbound_budget_is_read_later_and_others_wait_for_nothing() {
    use wormhole::transports::memory::{MemoryListener, MemoryTransport};
    let options = ServerOptions {
        config: RelayConfig {
            max_frame_bytes: 10_000,
            ..RelayConfig::default()
        },
        // A burst of 10,000 bytes (the largest frame), then 1,000 bytes a second.
        inbound_bytes_per_sec: 1000,
        ..ServerOptions::default()
    };
    let listener = MemoryListener::bind("limits-inbound").unwrap();
    let _relay = spawn(
        vec![Box::new(listener) as Box<dyn Listener>],
        MemoryStore::default(),
        options,
        Arc::new(TokioClock::new()),
    );
    let mut a = MemoryTransport
        .connect("mem://limits-inbound")
        .await
        .unwrap();
    let mut b = MemoryTransport
        .connect("mem://limits-inbound")
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    // Five pings of 5,000 bytes: the first three are read at once (the third overdraws the
    // budget by 5,000), the fourth 5 s later, the fifth 10 s later.
    for n in 0..5 {
        let frame = json!({"type": "ping", "ping": n, "pad": "x".repeat(4960)}).to_string();
        assert!((4990..=5010).contains(&frame.len()), "{}", frame.len());
        a.send(frame).await.unwrap();
    }
    // Another connection is answered at once meanwhile.
    ping(&mut b, 99).await;
    assert!(start.elapsed() < Duration::from_millis(100));
    let mut at = Vec::new();
    for n in 0..5 {
        assert_eq!(next_of(&mut a, "pong").await["pong"], n);
        at.push(start.elapsed());
    }
    assert!(at[2] < Duration::from_millis(100), "{at:?}");
    assert!(
        at[3] >= Duration::from_millis(4900) && at[3] < Duration::from_secs(6),
        "{at:?}"
    );
    assert!(
        at[4] >= Duration::from_millis(9900) && at[4] < Duration::from_secs(11),
        "{at:?}"
    );
}
