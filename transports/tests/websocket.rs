//! WebSocket transport over real loopback sockets.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;
use wormhole_transports::websocket::{
    accept_stream, Accepted, WebSocketConnection, WebSocketListener, WebSocketOptions,
    WebSocketTransport, BANNER,
};
use wormhole_transports::{Connection, Listener, Transport, TransportError};

const DEADLINE: Duration = Duration::from_secs(20);

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("literal address")
}

fn relay(options: WebSocketOptions) -> WebSocketListener {
    WebSocketListener::bind(any_port(), options).expect("bind")
}

/// A relay side that pings after 100 ms of silence and gives up after 300 ms, its accepted
/// end, and a client (default, slow keepalive) whose task waits in `recv` for one frame.
async fn fast_keepalive_pair() -> (
    WebSocketListener,
    Box<dyn Connection>,
    tokio::task::JoinHandle<(Box<dyn Connection>, Result<Option<String>, TransportError>)>,
) {
    let fast = WebSocketOptions::relay()
        .with_keepalive_interval(Duration::from_millis(100))
        .with_dead_after(Duration::from_millis(300));
    let mut l = relay(fast);
    let mut c = WebSocketTransport::default()
        .connect(&l.url())
        .await
        .expect("connect");
    let s = l.accept().await.expect("accept");
    let client = tokio::spawn(async move {
        let got = c.recv().await;
        (c, got)
    });
    (l, s, client)
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    timeout(DEADLINE, f).await.expect("test deadline exceeded")
}

/// Sends a raw HTTP request and reads the whole response (the server closes).
async fn raw_http(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn text_frames_flow_both_ways() {
    within(async {
        let mut l = relay(WebSocketOptions::relay());
        assert!(l.url().starts_with("ws://127.0.0.1:") && l.url().ends_with("/v1"));
        let t = WebSocketTransport::default();
        assert!(t.supports("ws") && !t.supports("mem"));
        let mut c = t.connect(&l.url()).await.expect("connect");
        let mut s = l.accept().await.expect("accept");
        let peer = s.peer().addr.expect("peer address");
        assert!(peer.ip().is_loopback());

        c.send(r#"{"type": "bind"}"#.into())
            .await
            .expect("client send");
        assert_eq!(
            s.recv().await.expect("recv").as_deref(),
            Some(r#"{"type": "bind"}"#)
        );
        s.send("welcome ✓".into()).await.expect("server send");
        assert_eq!(c.recv().await.expect("recv").as_deref(), Some("welcome ✓"));

        c.close().await.expect("close");
        assert_eq!(s.recv().await.expect("recv after close"), None);
        assert!(c.send("x".into()).await.is_err());
    })
    .await
}

#[tokio::test]
async fn clean_tcp_drop_is_end_of_stream() {
    // The Python client drops TCP without a CLOSE frame.
    within(async {
        let mut l = relay(WebSocketOptions::relay());
        let c = WebSocketTransport::default()
            .connect(&l.url())
            .await
            .expect("connect");
        let mut s = l.accept().await.expect("accept");
        drop(c);
        assert_eq!(s.recv().await.expect("recv"), None);
    })
    .await
}

#[tokio::test]
async fn get_root_returns_the_banner() {
    within(async {
        let l = relay(WebSocketOptions::relay());
        let resp = raw_http(l.local_addr(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        assert!(resp.contains("\r\nContent-Type: text/plain"), "{resp}");
        assert!(resp.contains("\r\nServer: wormhole-relay "), "{resp}");
        assert!(resp.ends_with(&format!("\r\n\r\n{BANNER}")), "{resp}");
    })
    .await
}

#[tokio::test]
async fn wrong_paths_are_refused() {
    within(async {
        let mut l = relay(WebSocketOptions::relay());
        let resp = raw_http(l.local_addr(), "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 404 "), "{resp}");
        let resp = raw_http(l.local_addr(), "GET /v1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 426 "), "{resp}");
        let resp = raw_http(l.local_addr(), "garbage\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 400 "), "{resp}");

        let url = format!("ws://{}/v2", l.local_addr());
        match WebSocketTransport::default().connect(&url).await {
            Err(TransportError::Unreachable { url: u, reason }) => {
                assert_eq!(u, url);
                assert!(reason.contains("404"), "{reason}");
            }
            other => panic!("expected Unreachable, got {other:?}"),
        }
        // None of that reached accept().
        assert!(timeout(Duration::from_millis(200), l.accept())
            .await
            .is_err());
    })
    .await
}

#[tokio::test]
async fn handshake_matches_the_python_client() {
    // The request as the Python client sends it (captures/run1), answered by our relay.
    within(async {
        let mut l = relay(WebSocketOptions::relay().with_server_header("wormhole-relay test"));
        let mut s = TcpStream::connect(l.local_addr()).await.expect("connect");
        let req = "GET /v1 HTTP/1.1\r\nUser-Agent: AutobahnPython/26.10.2\r\nHost: 127.0.0.1:4001\r\n\
                   Upgrade: WebSocket\r\nConnection: Upgrade\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n\
                   Sec-WebSocket-Key: SeDTY47OflgJ91Sh/1IfvA==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        s.write_all(req.as_bytes()).await.expect("write");
        let mut buf = vec![0u8; 1024];
        let mut got = 0;
        while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf[got..]).await.expect("read");
            assert!(n > 0, "closed early");
            got += n;
        }
        let resp = String::from_utf8_lossy(&buf[..got]);
        assert!(resp.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{resp}");
        assert!(resp.contains("\r\nServer: wormhole-relay test\r\n"), "{resp}");
        // The accept key the Python server sent for this request key.
        assert!(resp.contains("\r\nSec-WebSocket-Accept: 0nogwkxMlbuguwwuLjYJHfEnhbI=\r\n"), "{resp}");
        assert!(!resp.to_ascii_lowercase().contains("sec-websocket-protocol"), "{resp}");
        assert!(!resp.to_ascii_lowercase().contains("sec-websocket-extensions"), "{resp}");
        let _conn = l.accept().await.expect("accept");
    })
    .await
}

#[tokio::test]
async fn proxy_headers_only_with_the_option() {
    within(async {
        for trust in [false, true] {
            let l = relay(WebSocketOptions::relay().with_trust_proxy_headers(trust));
            let addr = l.local_addr();
            let mut l = l;
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let local = tcp.local_addr().expect("local addr");
            let req = tokio_tungstenite::tungstenite::http::Request::builder()
                .uri(format!("ws://{addr}/v1"))
                .header("Host", addr.to_string())
                .header("Connection", "Upgrade")
                .header("Upgrade", "websocket")
                .header("Sec-WebSocket-Version", "13")
                .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
                .header("X-Real-IP", "203.0.113.7")
                .header("X-Real-Port", "5555")
                .body(())
                .expect("request");
            let (_ws, _) = tokio_tungstenite::client_async(req, tcp)
                .await
                .expect("handshake");
            let s = l.accept().await.expect("accept");
            let expected: SocketAddr = if trust {
                "203.0.113.7:5555".parse().expect("lit")
            } else {
                local
            };
            assert_eq!(s.peer().addr, Some(expected), "trust={trust}");
        }
        // Malformed headers fall back to the TCP peer.
        let mut l = relay(WebSocketOptions::relay().with_trust_proxy_headers(true));
        let addr = l.local_addr();
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let local = tcp.local_addr().expect("local addr");
        let req = tokio_tungstenite::tungstenite::http::Request::builder()
            .uri(format!("ws://{addr}/v1"))
            .header("Host", addr.to_string())
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("X-Real-IP", "not-an-ip")
            .header("X-Real-Port", "5555")
            .body(())
            .expect("request");
        let (_ws, _) = tokio_tungstenite::client_async(req, tcp)
            .await
            .expect("handshake");
        assert_eq!(l.accept().await.expect("accept").peer().addr, Some(local));
    })
    .await
}

#[tokio::test]
async fn server_accepts_utf8_binary_client_rejects_binary() {
    within(async {
        let mut l = relay(WebSocketOptions::relay());
        let url = l.url();
        // A raw tungstenite client, so we can send binary frames to the relay.
        let tcp = TcpStream::connect(l.local_addr()).await.expect("connect");
        let (mut raw, _) = tokio_tungstenite::client_async(url.as_str(), tcp)
            .await
            .expect("handshake");
        let mut s = l.accept().await.expect("accept");
        raw.send(Message::binary(b"{\"type\": \"ping\"}".to_vec()))
            .await
            .expect("send");
        assert_eq!(
            s.recv().await.expect("recv").as_deref(),
            Some("{\"type\": \"ping\"}")
        );
        raw.send(Message::binary(vec![0xff, 0xfe]))
            .await
            .expect("send");
        assert!(matches!(s.recv().await, Err(TransportError::Protocol(_))));

        // A raw server sending binary to our client.
        let tcp = TcpListener::bind(any_port()).await.expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (sock, _) = tcp.accept().await.expect("accept");
            let mut ws = tokio_tungstenite::accept_async(sock)
                .await
                .expect("handshake");
            ws.send(Message::binary(b"{}".to_vec()))
                .await
                .expect("send");
            // Keep the connection open until the client is done.
            let _ = ws.next().await;
        });
        let mut c = WebSocketTransport::default()
            .connect(&format!("ws://{addr}/v1"))
            .await
            .expect("connect");
        assert!(matches!(c.recv().await, Err(TransportError::Protocol(_))));
        drop(c);
        server.await.expect("server task");
    })
    .await
}

#[tokio::test]
async fn pings_are_answered_and_keep_the_connection_alive() {
    within(async {
        // Relay side pings every 100 ms and gives up after 300 ms of silence; the client's own
        // keepalive is long, so only its PONGs keep the relay side alive.
        let (_l, mut s, client) = fast_keepalive_pair().await;
        // 1.2 s of silence on the data channel: recv must not fail.
        let quiet = timeout(Duration::from_millis(1200), s.recv()).await;
        assert!(quiet.is_err(), "relay recv ended early: {quiet:?}");
        s.send("still here".into()).await.expect("send");
        let (_c, got) = client.await.expect("client task");
        assert_eq!(got.expect("client recv").as_deref(), Some("still here"));
    })
    .await
}

#[tokio::test]
async fn dead_peer_is_detected_by_keepalive() {
    within(async {
        // A server that completes the handshake, then never sends anything (no PONGs).
        let tcp = TcpListener::bind(any_port()).await.expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut sock, _) = tcp.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let mut got = 0;
            while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut buf[got..]).await.expect("read");
                assert!(n > 0);
                got += n;
            }
            let head = String::from_utf8_lossy(&buf[..got]).into_owned();
            let key = head
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ").or_else(|| l.strip_prefix("sec-websocket-key: ")))
                .expect("key")
                .trim()
                .to_string();
            let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            sock.write_all(resp.as_bytes()).await.expect("write");
            // Swallow whatever comes (the client's PINGs), answer nothing.
            while let Ok(n) = sock.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        });
        let opts = WebSocketOptions::default()
            .with_keepalive_interval(Duration::from_millis(100))
            .with_dead_after(Duration::from_millis(400));
        let mut c = WebSocketTransport::new(opts)
            .connect(&format!("ws://{addr}/v1"))
            .await
            .expect("connect");
        let start = Instant::now();
        let r = timeout(Duration::from_secs(3), c.recv()).await.expect("keepalive did not fire");
        let waited = start.elapsed();
        match r {
            Err(TransportError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut),
            other => panic!("expected a keepalive timeout, got {other:?}"),
        }
        assert!(waited >= Duration::from_millis(350), "fired too early: {waited:?}");
        // Afterwards the connection reads as ended.
        assert_eq!(c.recv().await.expect("recv after death"), None);
        drop(c);
        server.await.expect("server task");
    })
    .await
}

#[tokio::test]
async fn closed_port_is_unreachable_naming_the_url() {
    within(async {
        let port = {
            let l = std::net::TcpListener::bind(any_port()).expect("bind");
            l.local_addr().expect("addr").port()
        };
        let url = format!("ws://127.0.0.1:{port}/v1");
        match WebSocketTransport::default().connect(&url).await {
            Err(e @ TransportError::Unreachable { .. }) => {
                assert!(e.to_string().contains(&url), "{e}");
            }
            other => panic!("expected Unreachable, got {other:?}"),
        }
        assert!(matches!(
            WebSocketTransport::default()
                .connect("http://127.0.0.1/v1")
                .await,
            Err(TransportError::BadUrl { .. })
        ));
    })
    .await
}

#[tokio::test]
async fn large_frame_under_the_hard_cap_is_dropped_and_reported_to_the_relay() {
    within(async {
        let opts = WebSocketOptions::relay();
        assert_eq!(opts.max_frame_bytes, 1 << 20);
        let mut l = relay(opts);
        let mut c = WebSocketTransport::default()
            .connect(&l.url())
            .await
            .expect("connect");
        let mut s = l.accept().await.expect("accept");
        let big = "x".repeat(2 << 20);
        let sender = tokio::spawn(async move {
            c.send(big).await.expect("send big");
            c
        });
        // Dropped before it is copied, and reported with its size.
        match s.recv().await {
            Err(TransportError::Oversized { size, limit }) => {
                assert_eq!((size, limit), (2 << 20, 1 << 20));
            }
            other => panic!("expected Oversized, got {other:?}"),
        }
        // The connection stays usable for the relay's error answer.
        let mut c = sender.await.expect("sender");
        s.send("{\"type\": \"error\"}".into()).await.expect("send");
        assert_eq!(
            c.recv().await.expect("recv").as_deref(),
            Some("{\"type\": \"error\"}")
        );

        // Above the hard cap (4 MiB), the transport refuses.
        let huge = "y".repeat((4 << 20) + 1);
        let sender = tokio::spawn(async move {
            let _ = c.send(huge).await;
            c
        });
        match s.recv().await {
            Err(TransportError::TooLarge { limit, .. }) => assert_eq!(limit, 4 << 20),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        drop(s);
        let _ = sender.await;
    })
    .await
}

#[tokio::test]
async fn hundred_concurrent_clients_echo() {
    within(async {
        let mut l = relay(WebSocketOptions::relay());
        let url = l.url();
        let echo = tokio::spawn(async move {
            for _ in 0..100 {
                let mut s = l.accept().await.expect("accept");
                tokio::spawn(async move {
                    while let Ok(Some(frame)) = s.recv().await {
                        if s.send(frame).await.is_err() {
                            break;
                        }
                    }
                });
            }
            l
        });
        let mut clients = Vec::new();
        for i in 0..100 {
            let url = url.clone();
            clients.push(tokio::spawn(async move {
                let mut c = WebSocketTransport::default()
                    .connect(&url)
                    .await
                    .expect("connect");
                let msg = format!("{{\"n\": {i}}}");
                c.send(msg.clone()).await.expect("send");
                assert_eq!(c.recv().await.expect("recv"), Some(msg));
            }));
        }
        for c in clients {
            c.await.expect("client");
        }
        let _l = echo.await.expect("echo task");
    })
    .await
}

#[tokio::test]
async fn client_over_a_custom_stream() {
    within(async {
        let mut l = relay(WebSocketOptions::relay());
        let tcp = TcpStream::connect(l.local_addr()).await.expect("connect");
        let mut c = WebSocketConnection::client_over(tcp, &l.url())
            .await
            .expect("handshake");
        assert!(c.is_client());
        let mut s = l.accept().await.expect("accept");
        s.send("hi".into()).await.expect("send");
        assert_eq!(c.recv().await.expect("recv").as_deref(), Some("hi"));
    })
    .await
}

/// Both ends over an in-memory duplex pipe: no socket at all, as under a network simulator.
#[tokio::test]
async fn both_ends_over_an_in_memory_pipe() {
    within(async {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            accept_stream(server_io, None, &WebSocketOptions::relay()).await
        });
        let mut c = WebSocketConnection::client_over(client_io, "ws://relay.sim:4000/v1")
            .await
            .expect("handshake");
        let mut s = match server.await.expect("server task").expect("accept") {
            Accepted::WebSocket(conn) => conn,
            Accepted::Http(_) => panic!("expected a WebSocket upgrade"),
        };
        c.send("from client".into()).await.expect("send");
        assert_eq!(
            s.recv().await.expect("recv").as_deref(),
            Some("from client")
        );
        s.send_all(vec!["one".into(), "two".into()])
            .await
            .expect("send_all");
        assert_eq!(c.recv().await.expect("recv").as_deref(), Some("one"));
        assert_eq!(c.recv().await.expect("recv").as_deref(), Some("two"));
        // The relay side is always reading, so the client's close completes at once.
        let server_end = tokio::spawn(async move { s.recv().await });
        let started = Instant::now();
        c.close().await.expect("close");
        assert!(started.elapsed() < Duration::from_secs(1), "close waited");
        assert_eq!(server_end.await.expect("task").expect("recv"), None);
    })
    .await
}

#[tokio::test]
async fn late_recv_pings_before_declaring_the_peer_dead() {
    within(async {
        // The relay side is not polled for longer than dead_after; its peer is alive. The first
        // recv afterwards must ping and get the PONG rather than fail at once.
        let (_l, mut s, client) = fast_keepalive_pair().await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        let quiet = timeout(Duration::from_millis(500), s.recv()).await;
        assert!(quiet.is_err(), "relay recv ended: {quiet:?}");
        s.send("ok".into()).await.expect("send");
        let (_c, got) = client.await.expect("client task");
        assert_eq!(got.expect("recv").as_deref(), Some("ok"));
    })
    .await
}

#[test]
fn nofile_limit_is_raised_to_the_hard_limit() {
    let (soft, hard) = wormhole_transports::websocket::raise_nofile_limit().expect("setrlimit");
    assert!(soft > 0 && soft <= hard, "soft {soft}, hard {hard}");
}

#[tokio::test]
async fn custom_http_handler_gets_other_requests() {
    use std::sync::Arc;
    use wormhole_transports::websocket::{HttpHandler, HttpRequest, HttpRoute};

    struct Poll;
    #[async_trait::async_trait]
    impl HttpHandler for Poll {
        async fn handle(&self, request: HttpRequest) -> Result<(), TransportError> {
            if request.head().path() == "/poll" {
                assert_eq!(request.route(), HttpRoute::NotFound);
                assert_eq!(request.leftover(), b"body");
                // Replays the head: a full HTTP server could parse it again.
                let mut stream = request.into_stream();
                let mut head = vec![0u8; 15];
                stream.read_exact(&mut head).await?;
                assert_eq!(&head, b"POST /poll HTTP");
                stream
                    .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .await?;
                stream.shutdown().await?;
                Ok(())
            } else {
                request.respond_default().await
            }
        }
    }

    within(async {
        let mut l = WebSocketListener::bind_with_handler(
            any_port(),
            WebSocketOptions::relay(),
            Arc::new(Poll),
        )
        .expect("bind");
        let addr = l.local_addr();
        let resp = raw_http(
            addr,
            "POST /poll HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody",
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 204 "), "{resp}");
        let resp = raw_http(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(resp.ends_with(BANNER), "{resp}");
        // WebSocket still works on the same port.
        let mut c = WebSocketTransport::default()
            .connect(&l.url())
            .await
            .expect("connect");
        let mut s = l.accept().await.expect("accept");
        c.send("x".into()).await.expect("send");
        assert_eq!(s.recv().await.expect("recv").as_deref(), Some("x"));
    })
    .await
}
