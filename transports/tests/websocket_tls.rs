//! `wss://` and HTTPS on the relay's one port, with a real TLS handshake on loopback. The
//! certificates (a private CA and a server certificate it signs) are made here at run time.

#![cfg(feature = "tls")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wormhole_transports::websocket::{
    ClientTls, DefaultHttpHandler, ServerTls, TlsError, WebSocketListener, WebSocketOptions,
    WebSocketTransport,
};
use wormhole_transports::{Listener, Transport, TransportError};

const DEADLINE: Duration = Duration::from_secs(20);

/// A private CA and a server certificate for `localhost` and 127.0.0.1 signed by it.
struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn make_pki() -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "wormhole test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "wormhole test relay");
    let cert = leaf.signed_by(&leaf_key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        cert_pem: cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}

fn tls_listener(pki: &Pki) -> WebSocketListener {
    let tls = ServerTls::new(pki.chain.clone(), pki.key.clone_key()).unwrap();
    WebSocketListener::bind_with(
        "127.0.0.1:0".parse().unwrap(),
        WebSocketOptions::relay().with_handshake_timeout(Duration::from_secs(5)),
        Arc::new(DefaultHttpHandler),
        tls,
    )
    .unwrap()
}

fn port(l: &WebSocketListener) -> u16 {
    l.local_addr().port()
}

/// Echoes every frame of every accepted connection.
fn echo(mut listener: WebSocketListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(mut conn) = listener.accept().await {
            tokio::spawn(async move {
                while let Ok(Some(frame)) = conn.recv().await {
                    if conn.send(format!("echo {frame}")).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

#[tokio::test]
async fn wss_with_a_private_ca_round_trips_frames() {
    let pki = make_pki();
    let listener = tls_listener(&pki);
    let p = port(&listener);
    assert_eq!(listener.url(), format!("wss://127.0.0.1:{p}/v1"));
    let server = echo(listener);
    let tls = ClientTls::default()
        .with_extra_ca([pki.ca_der.clone()])
        .unwrap();
    assert_eq!(tls.extra_ca_count(), 1);
    let transport = WebSocketTransport::default().with_tls(tls);
    for url in [
        format!("wss://127.0.0.1:{p}/v1"),
        format!("wss://localhost:{p}/v1"),
    ] {
        let mut conn = tokio::time::timeout(DEADLINE, transport.connect(&url))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        for i in 0..3 {
            conn.send(format!("{{\"n\":{i}}}")).await.unwrap();
            let got = tokio::time::timeout(DEADLINE, conn.recv()).await.unwrap();
            assert_eq!(got.unwrap(), Some(format!("echo {{\"n\":{i}}}")));
        }
        conn.close().await.unwrap();
    }
    server.abort();
}

#[tokio::test]
async fn a_relay_whose_ca_is_not_trusted_is_refused() {
    let pki = make_pki();
    let listener = tls_listener(&pki);
    let p = port(&listener);
    let url = format!("wss://127.0.0.1:{p}/v1");
    let server = echo(listener);
    // Only Mozilla's roots: the private CA is unknown.
    let err = tokio::time::timeout(DEADLINE, WebSocketTransport::default().connect(&url))
        .await
        .unwrap()
        .unwrap_err();
    match &err {
        TransportError::Unreachable { reason, .. } => {
            assert!(reason.contains("TLS"), "{reason}");
            assert!(reason.to_lowercase().contains("unknown"), "{reason}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    // Another CA does not help either.
    let other = make_pki();
    let transport = WebSocketTransport::default()
        .with_tls(ClientTls::default().with_extra_ca([other.ca_der]).unwrap());
    assert!(transport.connect(&url).await.is_err());
    // Plain ws:// to the TLS port fails cleanly, and the listener still serves afterwards.
    let plain = format!("ws://127.0.0.1:{p}/v1");
    assert!(WebSocketTransport::default().connect(&plain).await.is_err());
    let good = WebSocketTransport::default()
        .with_tls(ClientTls::default().with_extra_ca([pki.ca_der]).unwrap());
    let mut conn = good.connect(&url).await.unwrap();
    conn.send("{}".into()).await.unwrap();
    assert_eq!(conn.recv().await.unwrap(), Some("echo {}".into()));
    server.abort();
}

/// A plain HTTP/1.1 request over the client TLS of `ClientTls::connect`, as an HTTPS client
/// would send it; returns the whole response.
async fn https_get(tls: &ClientTls, addr: SocketAddr, host: &str, path: &str) -> String {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut stream = tls.connect(tcp, host).await.unwrap();
    let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]), "ALPN");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .ok();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn https_requests_on_the_same_port_reach_the_http_routes_decrypted() {
    let pki = make_pki();
    let listener = tls_listener(&pki);
    let addr = listener.local_addr();
    let server = echo(listener);
    let tls = ClientTls::default().with_extra_ca([pki.ca_der]).unwrap();
    let banner = https_get(&tls, addr, "localhost", "/").await;
    assert!(banner.starts_with("HTTP/1.1 200"), "{banner}");
    assert!(banner.ends_with("Wormhole Relay\n"), "{banner}");
    let missing = https_get(&tls, addr, "127.0.0.1", "/nope").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    server.abort();
}

#[tokio::test]
async fn pem_files_load_and_bad_ones_are_named() {
    let pki = make_pki();
    let dir = std::env::temp_dir().join(format!("wormhole-tls-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    std::fs::write(&cert, &pki.cert_pem).unwrap();
    std::fs::write(&key, &pki.key_pem).unwrap();
    let server = ServerTls::from_pem_files(&cert, &key).unwrap();
    assert!(!format!("{server:?}").contains("PRIVATE"));
    let listener = WebSocketListener::bind_with(
        "127.0.0.1:0".parse().unwrap(),
        WebSocketOptions::relay(),
        Arc::new(DefaultHttpHandler),
        server,
    )
    .unwrap();
    let url = listener.url();
    let task = echo(listener);
    let tls = ClientTls::default().with_extra_ca_file(&ca).unwrap();
    let mut conn = WebSocketTransport::default()
        .with_tls(tls)
        .connect(&url)
        .await
        .unwrap();
    conn.send("{}".into()).await.unwrap();
    assert_eq!(conn.recv().await.unwrap(), Some("echo {}".into()));
    task.abort();

    // The key where the certificate should be, and the other way round.
    assert!(matches!(
        ServerTls::from_pem_files(&key, &key),
        Err(TlsError::NoCertificate { .. })
    ));
    let e = ServerTls::from_pem_files(&cert, &cert).unwrap_err();
    assert!(matches!(e, TlsError::NoKey { .. }), "{e}");
    assert!(e.to_string().contains("cert.pem"), "{e}");
    // A key that does not match the certificate.
    let other = make_pki();
    let e = ServerTls::new(pki.chain.clone(), other.key).unwrap_err();
    assert!(matches!(e, TlsError::Config(_)), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
