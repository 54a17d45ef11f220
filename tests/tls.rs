//! `wss://` end to end on loopback with a real TLS handshake: the library and the CLI against
//! our relay serving TLS, its certificate signed by a private CA made here at run time and
//! trusted through `Wormhole::with_tls` / `--relay-ca` / `WORMHOLE_RELAY_CA`.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use support::{Finished, Proc, Stream, TempDir, DEADLINE};
use tokio::process::Command;
use wormhole::clock::TokioClock;
use wormhole::relay::server::{spawn, ServerOptions};
use wormhole::relay::MemoryStore;
use wormhole::transports::websocket::tls::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};
use wormhole::transports::websocket::{
    ClientTls, DefaultHttpHandler, ServerTls, WebSocketListener, WebSocketOptions,
};
use wormhole::{Error, Wormhole};

const APPID: &str = "example.com/tls-test";

/// A private CA and a relay certificate for `localhost` and 127.0.0.1, as PEM files.
struct Pki {
    dir: TempDir,
    ca_der: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "wormhole private test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let cert = leaf.signed_by(&key, &ca).unwrap();
        let dir = TempDir::new("tls");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        Pki {
            ca_der: ca.der().clone(),
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn client_tls(&self) -> ClientTls {
        ClientTls::default()
            .with_extra_ca([self.ca_der.clone()])
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_exchanges_over_wss_with_a_private_ca() {
    let pki = Pki::new();
    let tls = ServerTls::new(pki.chain.clone(), pki.key.clone_key()).unwrap();
    let listener = WebSocketListener::bind_with(
        "127.0.0.1:0".parse().unwrap(),
        WebSocketOptions::relay(),
        Arc::new(DefaultHttpHandler),
        tls,
    )
    .unwrap();
    let relay = spawn(
        vec![Box::new(listener)],
        MemoryStore::default(),
        ServerOptions::default(),
        Arc::new(TokioClock::new()),
    );
    let url = relay.url().to_string();
    assert!(url.starts_with("wss://127.0.0.1:"), "{url}");
    let run = async {
        let mut a = Wormhole::new(APPID, &url).with_tls(pki.client_tls());
        let code = a.allocate_code(2).await.unwrap();
        // The other side names the relay by host name: the certificate covers both.
        let by_name = url.replace("127.0.0.1", "localhost");
        let mut b = Wormhole::new(APPID, &by_name).with_tls(pki.client_tls());
        b.set_code(code).await.unwrap();
        a.send(b"over TLS").await.unwrap();
        b.send(b"and back").await.unwrap();
        assert_eq!(b.recv().await.unwrap(), b"over TLS");
        assert_eq!(a.recv().await.unwrap(), b"and back");
        assert_eq!(a.verifier(), b.verifier());
        a.close().await.unwrap();
        b.close().await.unwrap();

        // Without the private CA the relay's certificate is refused, and the error says so.
        let mut c = Wormhole::new(APPID, &url);
        match c.allocate_code(2).await {
            Err(Error::RelayUnreachable(reason)) => {
                assert!(reason.contains("TLS"), "{reason}");
                assert!(reason.contains(&url), "{reason}");
            }
            other => panic!("expected RelayUnreachable, got {other:?}"),
        }
    };
    tokio::time::timeout(DEADLINE, run).await.unwrap();
    relay.shutdown().await;
}

/// Our relay binary serving TLS from the PEM files; returns it with its wss:// URL.
async fn tls_relay(pki: &Pki) -> (Proc, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wormhole-relay"));
    cmd.arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--tls-cert")
        .arg(pki.path("cert.pem"))
        .arg("--tls-key")
        .arg(pki.path("key.pem"));
    let relay = Proc::spawn("wormhole-relay", cmd, Vec::new());
    let url = relay
        .wait_line_after(Stream::Stdout, "wormhole-relay listening on ", DEADLINE)
        .await;
    assert!(url.starts_with("wss://127.0.0.1:"), "{url}");
    (relay, url)
}

fn cli(url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wormhole"));
    for var in [
        "WORMHOLE_RELAY_URL",
        "WORMHOLE_RELAY_CA",
        "WORMHOLE_APPID",
        "WORMHOLE_TIMEOUT",
        "WORMHOLE_SCHEDULE",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("--relay-url").arg(url);
    cmd
}

async fn finish(mut cmd: Command, args: &[&str]) -> Finished {
    cmd.args(args);
    Proc::spawn("wormhole", cmd, Vec::new())
        .wait_with_deadline(DEADLINE)
        .await
}

#[tokio::test]
async fn the_cli_sends_over_wss_to_our_relay_with_relay_ca() {
    let pki = Pki::new();
    let (_relay, url) = tls_relay(&pki).await;
    let ca = pki.path("ca.pem");

    let mut send = cli(&url);
    send.arg("--relay-ca")
        .arg(&ca)
        .args(["send", "--text", "secret over TLS"]);
    let sender = Proc::spawn("wormhole send", send, Vec::new());
    let code = sender
        .wait_line_after(Stream::Stderr, "Wormhole code is: ", DEADLINE)
        .await;
    // The receiver trusts the CA through the environment instead.
    let mut recv = cli(&url);
    recv.env("WORMHOLE_RELAY_CA", &ca);
    let got = finish(recv, &["receive", &code]).await;
    assert_eq!(got.status.code(), Some(0), "{got}");
    assert_eq!(got.stdout, "secret over TLS\n");
    let sent = sender.wait_with_deadline(DEADLINE).await;
    assert_eq!(sent.status.code(), Some(0), "{sent}");

    // Without the CA: the relay cannot be reached (exit 5), and the message says why.
    let f = finish(cli(&url), &["send", "--text", "x"]).await;
    assert_eq!(f.status.code(), Some(5), "{f}");
    assert!(
        f.stderr
            .contains(&format!("Cannot reach the relay at {url}")),
        "{f}"
    );
    assert!(f.stderr.contains("TLS"), "{f}");
    assert!(f.stderr.contains("trust it with --relay-ca PATH"), "{f}");

    // A CA file that is not one: a usage error naming the file (exit 2), nothing sent.
    let bad = pki.path("key.pem");
    let mut c = cli(&url);
    c.arg("--relay-ca").arg(&bad);
    let f = finish(c, &["send", "--text", "x"]).await;
    assert_eq!(f.status.code(), Some(2), "{f}");
    assert!(f.stderr.contains("cannot use --relay-ca"), "{f}");
    assert!(f.stderr.contains("key.pem"), "{f}");
    assert!(
        !f.stderr.contains("PRIVATE KEY"),
        "no key material in errors: {f}"
    );
}

#[tokio::test]
async fn the_relay_refuses_bad_tls_files_clearly() {
    let pki = Pki::new();
    for (cert, key, expect) in [
        ("missing.pem", "key.pem", "cannot read"),
        ("key.pem", "key.pem", "holds no PEM certificate"),
        ("cert.pem", "cert.pem", "holds no PEM private key"),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wormhole-relay"));
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--tls-cert")
            .arg(pki.path(cert))
            .arg("--tls-key")
            .arg(pki.path(key));
        let f = Proc::spawn("wormhole-relay", cmd, Vec::new())
            .wait_with_deadline(DEADLINE)
            .await;
        assert_eq!(f.status.code(), Some(1), "{cert}/{key}: {f}");
        assert!(f.stderr.contains(expect), "{cert}/{key}: {f}");
        assert!(f.stderr.contains(cert) || f.stderr.contains(key), "{f}");
        assert!(!f.stderr.contains("PRIVATE KEY"), "{f}");
    }
    // --tls-cert without --tls-key is a usage error.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wormhole-relay"));
    cmd.arg("--tls-cert").arg(pki.path("cert.pem"));
    let f = Proc::spawn("wormhole-relay", cmd, Vec::new())
        .wait_with_deadline(DEADLINE)
        .await;
    assert_eq!(f.status.code(), Some(2), "{f}");
    assert!(f.stderr.contains("--tls-key"), "{f}");
}
