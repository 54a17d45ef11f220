//! The HTTP-polling transport suite: each client backend (hyper, and surf with feature `surf`)
//! against the relay side's sessions on a real loopback port, with an echo "relay" that
//! reports receipts as the real relay runner does. `https://` with a run-time private CA.

#![cfg(feature = "http")]

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{timeout, Instant};
use wormhole_transports::http::{HttpPolling, HttpServerOptions, HttpTransport, SessionListener};
use wormhole_transports::websocket::{WebSocketListener, WebSocketOptions};
use wormhole_transports::{Connection, Delivery, Listener, Transport};

const DEADLINE: Duration = Duration::from_secs(20);

/// What the echo relay does with each accepted session.
#[derive(Clone, Copy, PartialEq)]
enum Relay {
    /// Sends `{"hello":1}`, then `{"echo": FRAME}` for every frame.
    Echo,
    /// Like `Echo`, and 300 ms after the first frame a `{"push":1}` of its own.
    EchoThenPush,
    /// Reports the end of the session (`recv` → `None`) on the channel, then stops.
    ReportClose,
    /// Drops the session after the hello.
    DropAfterHello,
}

struct Running {
    url: String,
    closed: tokio::sync::mpsc::UnboundedReceiver<()>,
    _listener: WebSocketListener,
}

fn start(kind: Relay) -> Running {
    let (polling, sessions) = HttpPolling::new(HttpServerOptions::new([1; 32]));
    let addr = "127.0.0.1:0".parse().unwrap();
    let listener =
        WebSocketListener::bind_with_handler(addr, WebSocketOptions::relay(), polling).unwrap();
    running(listener, sessions, kind)
}

#[cfg(feature = "tls")]
fn start_tls(kind: Relay, tls: wormhole_transports::websocket::ServerTls) -> Running {
    let (polling, sessions) = HttpPolling::new(HttpServerOptions::new([1; 32]));
    let addr = "127.0.0.1:0".parse().unwrap();
    let listener =
        WebSocketListener::bind_with(addr, WebSocketOptions::relay(), polling, tls).unwrap();
    running(listener, sessions, kind)
}

fn running(listener: WebSocketListener, sessions: SessionListener, kind: Relay) -> Running {
    let url = listener.url().replacen("ws", "http", 1);
    let (tx, closed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(serve(sessions, kind, tx));
    Running {
        url,
        closed,
        _listener: listener,
    }
}

async fn serve(
    mut sessions: SessionListener,
    kind: Relay,
    closed: tokio::sync::mpsc::UnboundedSender<()>,
) {
    while let Ok(mut conn) = sessions.accept().await {
        let closed = closed.clone();
        tokio::spawn(async move {
            conn.send(r#"{"hello":1}"#.into()).await.unwrap();
            if kind == Relay::DropAfterHello {
                tokio::time::sleep(Duration::from_millis(100)).await;
                return;
            }
            let mut handled = 0;
            let mut pushed = false;
            loop {
                match conn.recv().await {
                    Ok(Some(frame)) => {
                        conn.send(format!(r#"{{"echo":{frame}}}"#)).await.unwrap();
                        handled += 1;
                        conn.handled(handled);
                        if kind == Relay::EchoThenPush && !pushed {
                            pushed = true;
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            conn.send(r#"{"push":1}"#.into()).await.unwrap();
                        }
                    }
                    Ok(None) | Err(_) => {
                        let _ = closed.send(());
                        return;
                    }
                }
            }
        });
    }
}

async fn recv(conn: &mut Box<dyn Connection>) -> String {
    timeout(DEADLINE, conn.recv())
        .await
        .expect("a frame in time")
        .expect("recv")
        .expect("a frame, not the end")
}

// ----- the suite, for any backend -------------------------------------------------------------

async fn frames_flow_both_ways_in_order(t: &dyn Transport) {
    let relay = start(Relay::Echo);
    let mut conn = timeout(DEADLINE, t.connect(&relay.url))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conn.delivery(), Delivery::Pull);
    assert_eq!(recv(&mut conn).await, r#"{"hello":1}"#);
    conn.send(r#"{"n":1}"#.into()).await.unwrap();
    conn.send_all(vec![r#"{"n":2}"#.into(), r#"{"n": 3}"#.into()])
        .await
        .unwrap();
    conn.poll().await.unwrap();
    for n in ["1", "2", " 3"] {
        assert_eq!(recv(&mut conn).await, format!(r#"{{"echo":{{"n":{n}}}}}"#));
    }
    // Nothing is delivered twice, though sends' answers and polls overlap.
    conn.poll().await.unwrap();
    let extra = timeout(Duration::from_millis(300), conn.recv()).await;
    assert!(extra.is_err(), "an unexpected frame: {extra:?}");
    conn.close().await.unwrap();
}

async fn a_long_poll_in_flight_does_not_hold_up_sends(t: &dyn Transport) {
    let relay = start(Relay::EchoThenPush);
    let mut conn = timeout(DEADLINE, t.connect(&relay.url))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recv(&mut conn).await, r#"{"hello":1}"#);
    conn.poll().await.unwrap(); // a long poll is now parked at the relay
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    conn.send(r#"{"n":1}"#.into()).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the send waited {:?}",
        started.elapsed()
    );
    assert_eq!(recv(&mut conn).await, r#"{"echo":{"n":1}}"#);
    // The relay's own frame comes through the parked poll, with no further poll() needed.
    let started = Instant::now();
    assert_eq!(recv(&mut conn).await, r#"{"push":1}"#);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the push took {:?}",
        started.elapsed()
    );
    conn.close().await.unwrap();
}

async fn closing_ends_the_session_on_the_relay(t: &dyn Transport) {
    let mut relay = start(Relay::ReportClose);
    let mut conn = timeout(DEADLINE, t.connect(&relay.url))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recv(&mut conn).await, r#"{"hello":1}"#);
    conn.close().await.unwrap();
    timeout(DEADLINE, relay.closed.recv())
        .await
        .expect("the relay saw the close");
    assert!(
        conn.send(r#"{"n":1}"#.into()).await.is_err(),
        "a send after close"
    );
}

async fn a_session_the_relay_dropped_fails_the_connection(t: &dyn Transport) {
    let relay = start(Relay::DropAfterHello);
    let mut conn = timeout(DEADLINE, t.connect(&relay.url))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recv(&mut conn).await, r#"{"hello":1}"#);
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.poll().await.unwrap();
    let end = timeout(DEADLINE, conn.recv())
        .await
        .expect("recv ends in time");
    let err = end.expect_err("the lost session is an error");
    assert!(err.to_string().contains("unknown session"), "{err}");
}

async fn nobody_listening_is_unreachable(t: &dyn Transport) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = timeout(DEADLINE, t.connect(&format!("http://127.0.0.1:{port}/v1")))
        .await
        .unwrap()
        .expect_err("nothing listens there");
    assert!(
        matches!(err, wormhole_transports::TransportError::Unreachable { .. }),
        "{err:?}"
    );
}

macro_rules! suite {
    ($module:ident, $make:expr) => {
        mod $module {
            use super::*;

            fn transport() -> Arc<dyn Transport> {
                Arc::new($make)
            }

            #[tokio::test]
            async fn frames_flow_both_ways_in_order() {
                super::frames_flow_both_ways_in_order(&*transport()).await;
            }

            #[tokio::test]
            async fn a_long_poll_in_flight_does_not_hold_up_sends() {
                super::a_long_poll_in_flight_does_not_hold_up_sends(&*transport()).await;
            }

            #[tokio::test]
            async fn closing_ends_the_session_on_the_relay() {
                super::closing_ends_the_session_on_the_relay(&*transport()).await;
            }

            #[tokio::test]
            async fn a_session_the_relay_dropped_fails_the_connection() {
                super::a_session_the_relay_dropped_fails_the_connection(&*transport()).await;
            }

            #[tokio::test]
            async fn nobody_listening_is_unreachable() {
                super::nobody_listening_is_unreachable(&*transport()).await;
            }
        }
    };
}

suite!(hyper_backend, HttpTransport::default());

#[cfg(feature = "surf")]
suite!(
    surf_backend,
    wormhole_transports::http::SurfTransport::default()
);

// ----- https:// --------------------------------------------------------------------------------

#[cfg(feature = "tls")]
mod https {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose,
    };
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use wormhole_transports::websocket::{ClientTls, ServerTls};

    #[tokio::test]
    async fn https_with_a_private_ca() {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".into()]).unwrap();
        let cert = leaf.signed_by(&key, &ca).unwrap();
        let server = ServerTls::new(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
        let relay = start_tls(Relay::Echo, server);
        assert!(relay.url.starts_with("https://"), "{}", relay.url);
        let url = relay.url.replacen("127.0.0.1", "localhost", 1);

        // Without the CA the certificate is refused.
        let err = timeout(DEADLINE, HttpTransport::default().connect(&url))
            .await
            .unwrap()
            .expect_err("an unknown CA");
        assert!(err.to_string().contains("TLS handshake failed"), "{err}");

        let tls = ClientTls::default()
            .with_extra_ca([ca.der().clone()])
            .unwrap();
        let t = HttpTransport::default().with_tls(tls);
        let mut conn = timeout(DEADLINE, t.connect(&url)).await.unwrap().unwrap();
        assert_eq!(recv(&mut conn).await, r#"{"hello":1}"#);
        conn.send(r#"{"n":1}"#.into()).await.unwrap();
        assert_eq!(recv(&mut conn).await, r#"{"echo":{"n":1}}"#);
        conn.close().await.unwrap();
    }
}
