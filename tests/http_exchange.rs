//! HTTP polling end to end on loopback: our library over `http://` against our relay (in
//! process, on a real port), mixed with WebSocket clients, across a relay restart, with a
//! timeout, and the API itself with hand-written requests (retries, malformed requests,
//! headers, metrics).

mod http_common;

use std::net::SocketAddr;
use std::time::Duration;

use http_common::{within, Setup, SharedStore, TestRelay};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wormhole::{Error, Wormhole};

const APPID: &str = "example.com/http-test";

/// One exchange between `a_url` and `b_url` (any transports), both ways, then both close.
async fn exchange(a_url: &str, b_url: &str) {
    let mut a = Wormhole::new(APPID, a_url);
    let code = within("allocate", 20, a.allocate_code(2))
        .await
        .expect("allocate");
    let mut b = Wormhole::new(APPID, b_url);
    within("set code", 20, b.set_code(code))
        .await
        .expect("set code");
    within("a sends", 20, a.send(b"from a"))
        .await
        .expect("a sends");
    within("b sends", 20, b.send(b"from b"))
        .await
        .expect("b sends");
    assert_eq!(within("b receives", 20, b.recv()).await.unwrap(), b"from a");
    assert_eq!(within("a receives", 20, a.recv()).await.unwrap(), b"from b");
    assert_eq!(a.verifier(), b.verifier());
    within("a closes", 20, a.close()).await.expect("a closes");
    within("b closes", 20, b.close()).await.expect("b closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_http_clients_exchange() {
    let relay = TestRelay::start().await;
    exchange(&relay.http_url, &relay.http_url).await;
    assert!(relay.metric("wormhole_relay_connections_total{transport=\"http\"}") >= 2);
    assert_eq!(
        relay.metric("wormhole_relay_connections_total{transport=\"websocket\"}"),
        0
    );
    assert_eq!(relay.metric("wormhole_relay_exchanges_total"), 1);
    assert!(relay.metric("wormhole_relay_http_requests_total") >= 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_websocket_clients_share_a_mailbox() {
    let relay = TestRelay::start().await;
    exchange(&relay.http_url, &relay.ws_url).await;
    exchange(&relay.ws_url, &relay.http_url).await;
    assert!(relay.metric("wormhole_relay_connections_total{transport=\"http\"}") >= 2);
    assert!(relay.metric("wormhole_relay_connections_total{transport=\"websocket\"}") >= 2);
    assert_eq!(relay.metric("wormhole_relay_exchanges_total"), 2);
}

/// The relay restarts (its sessions are lost, its store is kept, as with a database) while the
/// first side is long polling; that side opens a new session and the exchange completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restart_while_polling_loses_nothing() {
    let store = SharedStore::default();
    let setup = Setup {
        store: Some(store.clone()),
        ..Setup::default()
    };
    let mut relay = TestRelay::start_with(setup.clone()).await;
    let url = relay.http_url.clone();
    let mut a = Wormhole::new(APPID, &url);
    let code = within("allocate", 20, a.allocate_code(2))
        .await
        .expect("allocate");
    within("a sends", 20, a.send(b"before the restart"))
        .await
        .expect("a sends");
    let first = relay.polling.clone();
    assert_eq!(first.session_count(), 1);

    relay.stop().await;
    let port = relay.addr.port();
    let relay = TestRelay::start_with(Setup { port, ..setup }).await;
    assert_eq!(relay.http_url, url);

    let a_task = tokio::spawn(async move {
        let got = a.recv().await;
        (a, got)
    });
    let mut b = Wormhole::new(APPID, &url);
    within("set code", 30, b.set_code(code))
        .await
        .expect("set code");
    assert_eq!(
        within("b receives", 30, b.recv()).await.unwrap(),
        b"before the restart"
    );
    within("b sends", 20, b.send(b"after the restart"))
        .await
        .unwrap();
    let (mut a, got) = within("a receives", 30, a_task).await.unwrap();
    assert_eq!(got.unwrap(), b"after the restart");
    assert_eq!(first.session_count(), 0, "the old relay's session is gone");
    assert!(
        relay.metric("wormhole_relay_connections_total{transport=\"http\"}") >= 2,
        "the first side did not open a session on the new relay"
    );
    within("a closes", 20, a.close()).await.unwrap();
    within("b closes", 20, b.close()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_ends_both_http_sides_with_the_timeout_error() {
    let relay = TestRelay::start().await;
    let timeout = Some(Duration::from_secs(3));
    let mut a = Wormhole::new(APPID, &relay.http_url).with_timeout(timeout);
    let code = within("allocate", 20, a.allocate_code(2)).await.unwrap();
    let mut b = Wormhole::new(APPID, &relay.http_url).with_timeout(timeout);
    within("set code", 20, b.set_code(code)).await.unwrap();
    // Nobody sends: both wait for the other's message until the timeout.
    let started = tokio::time::Instant::now();
    let (ra, rb) = within("both time out", 20, async {
        tokio::join!(a.recv(), b.recv())
    })
    .await;
    assert!(matches!(ra, Err(Error::Timeout)), "a: {ra:?}");
    assert!(matches!(rb, Err(Error::Timeout)), "b: {rb:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

// ---------------------------------------------------------------------------------------------
// The API with hand-written requests.

/// One request on a fresh connection (`Connection: close`): status, headers (lower-case
/// names) and body.
async fn raw(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String, String) {
    within("a raw request", 20, async {
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (mut rd, mut wr) = s.into_split();
        // Written alongside the read: the relay may answer (413) before reading all of it.
        let writer = tokio::spawn(async move {
            let _ = wr.write_all(req.as_bytes()).await;
            wr
        });
        let mut out = Vec::new();
        let _ = rd.read_to_end(&mut out).await;
        drop(writer);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head[9..12].parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    })
    .await
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

async fn open_session(addr: SocketAddr) -> (String, Value) {
    let (status, head, body) = raw(addr, "POST", "/v1/http/session", "").await;
    assert_eq!(status, 201, "{body}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    assert!(head.contains("x-accel-buffering: no"), "{head}");
    let v = json_of(&body);
    assert_eq!(v["frames"][0]["type"], "welcome");
    assert_eq!(v["cursor"], 1);
    (v["session"].as_str().unwrap().to_string(), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_send_is_applied_once() {
    let relay = TestRelay::start().await;
    let (id, _) = open_session(relay.addr).await;
    let send = format!("/v1/http/session/{id}/send");
    let bind = json!({"seq": 1, "after": 1, "frames": [
        {"type": "bind", "appid": APPID, "side": "aaaa", "id": "b1"},
        {"type": "allocate", "id": "b2"},
    ]})
    .to_string();
    let (status, _, first) = raw(relay.addr, "POST", &send, &bind).await;
    assert_eq!(status, 200, "{first}");
    let first = json_of(&first);
    // ack, ack, allocated
    assert_eq!(first["cursor"], 4);
    assert_eq!(first["frames"][2]["type"], "allocated");
    // The answer was "lost": the same seq again gives the same frames and allocates nothing.
    let (status, _, again) = raw(relay.addr, "POST", &send, &bind).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(json_of(&again), first);
    assert_eq!(relay.metric("wormhole_relay_frames_received_total"), 2);
    // The next seq is applied; an old or skipped one is refused with the expected number.
    let next = json!({"seq": 2, "after": 4, "frames": [{"type": "list", "id": "l1"}]}).to_string();
    let (status, _, body) = raw(relay.addr, "POST", &send, &next).await;
    assert_eq!(status, 200, "{body}");
    let nameplates = &json_of(&body)["frames"][1]["nameplates"];
    assert_eq!(
        nameplates.as_array().unwrap().len(),
        1,
        "one allocation only: {body}"
    );
    let stale = json!({"seq": 1, "after": 4, "frames": []}).to_string();
    let (status, _, body) = raw(relay.addr, "POST", &send, &stale).await;
    assert_eq!(
        (status, json_of(&body)["expected"].clone()),
        (409, json!(3)),
        "{body}"
    );
    // Fetching with an old cursor again loses nothing that was not acknowledged.
    let (status, _, body) = raw(
        relay.addr,
        "GET",
        &format!("/v1/http/session/{id}/events?after=4"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let v = json_of(&body);
    assert_eq!(
        (v["cursor"].clone(), v["frames"].as_array().unwrap().len()),
        (json!(6), 2)
    );
    let (_, _, body) = raw(
        relay.addr,
        "GET",
        &format!("/v1/http/session/{id}/events?after=4"),
        "",
    )
    .await;
    assert_eq!(json_of(&body), v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_waits_for_a_frame_and_returns_empty_at_its_end() {
    let relay = TestRelay::start().await;
    let (id, _) = open_session(relay.addr).await;
    let events = format!("/v1/http/session/{id}/events?after=1&wait=0.5");
    let started = tokio::time::Instant::now();
    let (status, _, body) = raw(relay.addr, "GET", &events, "").await;
    assert_eq!(status, 200);
    assert_eq!(json_of(&body), json!({"cursor": 1, "frames": []}));
    assert!(started.elapsed() >= Duration::from_millis(450));
    // A frame queued during a long poll ends it at once.
    let addr = relay.addr;
    let long = format!("/v1/http/session/{id}/events?after=1&wait=30");
    let poll = tokio::spawn(async move { raw(addr, "GET", &long, "").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ping = json!({"seq": 1, "after": 1, "frames": [{"type": "ping", "ping": 7}]}).to_string();
    let (status, _, _) = raw(
        relay.addr,
        "POST",
        &format!("/v1/http/session/{id}/send"),
        &ping,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, body) = within("the long poll", 5, poll).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(json_of(&body)["frames"][1]["pong"], 7, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_a_4xx_with_a_json_error_and_harm_no_other_session() {
    let relay = TestRelay::start().await;
    // A live session next to the bad requests.
    let (good, _) = open_session(relay.addr).await;
    let (id, _) = open_session(relay.addr).await;
    let send = format!("/v1/http/session/{id}/send");
    let events = format!("/v1/http/session/{id}/events");
    let big = format!(
        "{{\"seq\":1,\"frames\":[\"{}\"]}}",
        "x".repeat(5 * 1024 * 1024)
    );
    let cases: Vec<(&str, String, String, u16, &str)> = vec![
        (
            "POST",
            send.clone(),
            "{not json".into(),
            400,
            "must be JSON",
        ),
        (
            "POST",
            send.clone(),
            r#"{"frames": []}"#.into(),
            400,
            "missing field `seq`",
        ),
        (
            "POST",
            send.clone(),
            r#"{"seq": 1}"#.into(),
            400,
            "missing field `frames`",
        ),
        (
            "POST",
            send.clone(),
            r#"{"seq": "one", "frames": []}"#.into(),
            400,
            "invalid type",
        ),
        (
            "POST",
            send.clone(),
            r#"{"seq": 5, "frames": []}"#.into(),
            409,
            "seq out of order",
        ),
        ("POST", send.clone(), big, 413, "larger than"),
        ("GET", send.clone(), String::new(), 405, "takes POST"),
        (
            "PUT",
            "/v1/http/session".into(),
            String::new(),
            405,
            "takes POST",
        ),
        ("POST", events.clone(), String::new(), 405, "takes GET"),
        (
            "GET",
            format!("{events}?after=x"),
            String::new(),
            400,
            "after must be",
        ),
        (
            "GET",
            format!("{events}?wait=-1"),
            String::new(),
            400,
            "wait must be",
        ),
        (
            "GET",
            format!("{events}?after=99"),
            String::new(),
            400,
            "beyond the last frame",
        ),
        (
            "GET",
            "/v1/http/session/0123456789abcdef/events".into(),
            String::new(),
            404,
            "unknown session",
        ),
        (
            "POST",
            "/v1/http/session/0123456789abcdef/send".into(),
            r#"{"seq":1,"frames":[]}"#.into(),
            404,
            "unknown session",
        ),
        (
            "GET",
            "/v1/http/nothing".into(),
            String::new(),
            404,
            "no such endpoint",
        ),
    ];
    for (method, path, body, want, text) in cases {
        let (status, head, answer) = raw(relay.addr, method, &path, &body).await;
        let shown = format!("{method} {}", path.replace(&id, "ID"));
        assert_eq!(status, want, "{shown}: {answer}");
        assert!(
            head.contains("content-type: application/json"),
            "{shown}: {head}"
        );
        let error = json_of(&answer)["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(error.contains(text), "{shown}: {error:?} lacks {text:?}");
    }
    // The plain routes.
    let (status, _, body) = raw(relay.addr, "GET", "/", "").await;
    assert_eq!((status, body.as_str()), (200, "Wormhole Relay\n"));
    let (status, head, _) = raw(relay.addr, "GET", "/v1", "").await;
    assert_eq!(status, 426);
    assert!(head.contains("upgrade: websocket"));
    assert_eq!(raw(relay.addr, "GET", "/elsewhere", "").await.0, 404);
    // Both sessions still work.
    for sid in [&good, &id] {
        let ping =
            json!({"seq": 1, "after": 1, "frames": [{"type": "ping", "ping": 3}]}).to_string();
        let (status, _, body) = raw(
            relay.addr,
            "POST",
            &format!("/v1/http/session/{sid}/send"),
            &ping,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(json_of(&body)["frames"][1]["pong"], 3);
    }
    exchange(&relay.http_url, &relay.http_url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_session_is_a_closed_connection_and_metrics_show_it() {
    let relay = TestRelay::start().await;
    let (id, _) = open_session(relay.addr).await;
    assert_eq!(
        relay.metric("wormhole_relay_connections_open{transport=\"http\"}"),
        1
    );
    let (status, _, body) = raw(relay.addr, "DELETE", &format!("/v1/http/session/{id}"), "").await;
    assert_eq!((status, json_of(&body)), (200, json!({"closed": true})));
    within("the session closes", 5, async {
        while relay.metric("wormhole_relay_connections_open{transport=\"http\"}") != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let (status, _, _) = raw(
        relay.addr,
        "GET",
        &format!("/v1/http/session/{id}/events"),
        "",
    )
    .await;
    assert_eq!(status, 404);
    let (status, head, text) = raw(relay.addr, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(
        text.contains("wormhole_relay_connections_total{transport=\"http\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE wormhole_relay_http_requests_total counter"),
        "{text}"
    );
}

/// `https://` end to end: the relay serves TLS on its one port (certificate from a private CA
/// made here), the library trusts that CA with `with_tls`; one side polls over HTTPS, the
/// other uses `wss://` on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca_end_to_end() {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose,
    };
    use wormhole::transports::websocket::tls::rustls::pki_types::{
        PrivateKeyDer, PrivatePkcs8KeyDer,
    };
    use wormhole::transports::websocket::{ClientTls, ServerTls};

    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let tls = ServerTls::new(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let relay = TestRelay::start_with(Setup {
        tls: Some(std::sync::Arc::new(tls)),
        ..Setup::default()
    })
    .await;
    let https = relay.http_url.replacen("127.0.0.1", "localhost", 1);
    let wss = relay.ws_url.replacen("127.0.0.1", "localhost", 1);
    assert!(https.starts_with("https://") && wss.starts_with("wss://"));
    let client_tls = ClientTls::default()
        .with_extra_ca([ca.der().clone()])
        .unwrap();

    // Without the CA, the relay's certificate is refused.
    let mut w = Wormhole::new(APPID, &https).with_timeout(Some(Duration::from_secs(3)));
    let refused = within("refusal", 20, w.allocate_code(2)).await;
    assert!(refused.is_err(), "{refused:?}");

    let mut a = Wormhole::new(APPID, &https).with_tls(client_tls.clone());
    let code = within("allocate", 20, a.allocate_code(2))
        .await
        .expect("allocate over https");
    let mut b = Wormhole::new(APPID, &wss).with_tls(client_tls);
    within("set code", 20, b.set_code(code)).await.unwrap();
    within("a sends", 20, a.send(b"over https")).await.unwrap();
    assert_eq!(
        within("b receives", 20, b.recv()).await.unwrap(),
        b"over https"
    );
    within("a closes", 20, a.close()).await.unwrap();
    within("b closes", 20, b.close()).await.unwrap();
    assert!(relay.metric("wormhole_relay_connections_total{transport=\"http\"}") >= 1);
}

/// Replaces what changes from run to run (times, the session id, the client's port) so the
/// answers can be compared with a committed snapshot.
fn normalized(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, val) in map.iter_mut() {
                    match k.as_str() {
                        "server_tx" => *val = json!("<time>"),
                        "session" => *val = json!("<session id>"),
                        "port" => *val = json!("<port>"),
                        _ => walk(val),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// The API's answers, as a client sees them: a committed snapshot of the wire format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_match_the_snapshot() {
    let relay = TestRelay::start().await;
    let (id, opened) = open_session(relay.addr).await;
    let send = format!("/v1/http/session/{id}/send");
    let mut answers = vec![("POST /v1/http/session", normalized(opened))];
    let body = json!({"seq": 1, "after": 1, "frames": [
        {"type": "bind", "appid": APPID, "side": "aaaa", "id": "b1"},
        {"type": "allocate", "id": "b2"},
    ]})
    .to_string();
    let (_, _, a) = raw(relay.addr, "POST", &send, &body).await;
    answers.push(("POST …/send seq 1", normalized(json_of(&a))));
    let (_, _, a) = raw(
        relay.addr,
        "GET",
        &format!("/v1/http/session/{id}/events?after=4&wait=0.1"),
        "",
    )
    .await;
    answers.push(("GET …/events after 4, nothing new", normalized(json_of(&a))));
    let body =
        json!({"seq": 2, "after": 4, "frames": [{"type": "claim", "nameplate": "x1"}]}).to_string();
    let (_, _, a) = raw(relay.addr, "POST", &send, &body).await;
    answers.push(("POST …/send seq 2, an error frame", normalized(json_of(&a))));
    let (_, _, a) = raw(relay.addr, "POST", &send, r#"{"seq": 9, "frames": []}"#).await;
    answers.push(("POST …/send seq 9", json_of(&a)));
    let (_, _, a) = raw(relay.addr, "DELETE", &format!("/v1/http/session/{id}"), "").await;
    answers.push(("DELETE /v1/http/session/ID", json_of(&a)));
    let (_, _, a) = raw(
        relay.addr,
        "GET",
        &format!("/v1/http/session/{id}/events"),
        "",
    )
    .await;
    answers.push(("GET …/events of a closed session", json_of(&a)));
    let answers: serde_json::Map<String, Value> = answers
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    insta::assert_json_snapshot!("http_api_answers", answers);
}
