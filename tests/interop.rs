//! Interop with the real Python packages, pinned by `scripts/setup-interop.sh`:
//! `magic-wormhole` 0.24.0 (the `wormhole` CLI) and `magic-wormhole-mailbox-server` 0.8.0
//! (`twist wormhole-mailbox`), against our library and our `wormhole-relay` binary.
//!
//! The venv is created on first use (needs Python 3 and PyPI); set `WORMHOLE_INTEROP_VENV` to
//! use another one. Everything runs on 127.0.0.1: the Python CLI always gets `--relay-url`
//! and a dead `--transit-helper`.

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use wormhole::transports::websocket::WebSocketTransport;
use wormhole::transports::Connection;
use wormhole::wire::{ClientFrame, ClientMessage, ServerFrame, ServerMessage};
use wormhole::{Error, Initiator, Receiver, Wormhole};

/// Text with a newline, a tab and non-ASCII characters.
const TEXT: &str = "héllo ☃\n\tline2";
/// What the Python receiver prints for [`TEXT`]: `repr(text)[1:-1]` and a newline. Non-ASCII
/// printable characters stay as they are; `\n` and `\t` become two characters each.
const TEXT_AS_PRINTED: &str = "héllo ☃\\n\\tline2\n";
const APPID: &str = "example.com/wormhole-interop";
/// Overall limit for one test.
const TEST_LIMIT: Duration = Duration::from_secs(100);

async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {TEST_LIMIT:?}"))
}

/// Runs `f` with a deadline, failing the test with `what` if it passes.
async fn deadline<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {DEADLINE:?}"))
}

/// One exchange with our library on both sides (`Initiator` and `Receiver`); returns the
/// verifier both saw.
async fn library_exchange(url: &str) -> wormhole::crypto::Verifier {
    let mut initiator = Initiator::new(APPID, url);
    let code = deadline("allocate", initiator.get_code())
        .await
        .expect("allocate a code");
    let mut receiver = Receiver::new(APPID, url);
    receiver.set_code(code.as_str()).await.expect("set code");
    let a = tokio::spawn(async move {
        let got = initiator.get_data(b"from the initiator").await;
        (got, initiator.wormhole().verifier())
    });
    let b = tokio::spawn(async move {
        let got = receiver.get_data("from the receiver ✓".as_bytes()).await;
        (got, receiver.wormhole().verifier())
    });
    let (a, b) = deadline("exchange", async { (a.await, b.await) }).await;
    let (a, b) = (a.expect("initiator task"), b.expect("receiver task"));
    assert_eq!(
        a.0.expect("initiator get_data"),
        "from the receiver ✓".as_bytes()
    );
    assert_eq!(b.0.expect("receiver get_data"), b"from the initiator");
    let (va, vb) = (
        a.1.expect("initiator verifier"),
        b.1.expect("receiver verifier"),
    );
    assert_eq!(va, vb, "verifiers differ");
    va
}

fn assert_exit_ok(who: &str, f: &Finished) {
    assert!(f.status.success(), "{who} failed: {f}");
}

#[test]
fn the_printed_form_is_what_python_repr_gives() {
    assert_eq!(
        format!("{}\n", python_repr_body(TEXT)),
        TEXT_AS_PRINTED,
        "python's repr(text)[1:-1] differs from the hand-written expectation"
    );
}

// 1. ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn our_library_exchanges_through_the_python_mailbox_server() {
    within(async {
        let relay = PythonRelay::start().await;
        library_exchange(&relay.url()).await;
    })
    .await
}

// 2. ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn python_cli_on_both_ends_through_our_relay() {
    within(async {
        let relay = OurRelay::start().await;
        let sender = py_send_text(relay.url(), TEXT, None);
        let code = sender.code().await;
        assert!(
            code.split('-').count() == 3 && code.split('-').all(|p| !p.is_empty()),
            "unexpected code {code:?}"
        );
        let receiver = py_receive(relay.url(), &code);
        let received = receiver.wait_with_deadline(DEADLINE).await;
        assert_exit_ok("python receive", &received);
        assert_eq!(
            received.stdout, TEXT_AS_PRINTED,
            "receiver output: {received}"
        );
        let sent = sender.finish().await;
        assert_exit_ok("python send", &sent);
        assert!(
            sent.stderr.lines().any(|l| l == "text message sent"),
            "sender did not report success: {sent}"
        );
    })
    .await
}

// 3. ----------------------------------------------------------------------------------------

/// Our sender (we allocate the code) → Python receiver.
async fn rust_sends_python_receives(url: &str) {
    let (code, sending) = deadline("allocate", rust_send_text(url, TEXT, None))
        .await
        .expect("our sender allocates a code");
    let receiver = py_receive(url, code.as_str());
    let received = receiver.wait_with_deadline(DEADLINE).await;
    assert_exit_ok("python receive", &received);
    assert_eq!(
        received.stdout, TEXT_AS_PRINTED,
        "receiver output: {received}"
    );
    deadline("our sender", sending)
        .await
        .expect("sender task")
        .expect("our sender sees the answer and closes well");
}

/// Python sender (it allocates the code) → our receiver.
async fn python_sends_rust_receives(url: &str) {
    let sender = py_send_text(url, TEXT, None);
    let code = sender.code().await;
    let got = deadline("our receiver", rust_receive_text(url, &code))
        .await
        .expect("our receiver gets the text");
    assert_eq!(got.as_bytes(), TEXT.as_bytes());
    let sent = sender.finish().await;
    assert_exit_ok("python send", &sent);
    assert!(
        sent.stderr.lines().any(|l| l == "text message sent"),
        "sender did not report success: {sent}"
    );
}

async fn library_and_python_cli_both_directions(url: &str) {
    tokio::join!(
        rust_sends_python_receives(url),
        python_sends_rust_receives(url)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn library_and_python_cli_both_directions_through_our_relay() {
    within(async {
        let relay = OurRelay::start().await;
        library_and_python_cli_both_directions(relay.url()).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn library_and_python_cli_both_directions_through_the_python_server() {
    within(async {
        let relay = PythonRelay::start().await;
        library_and_python_cli_both_directions(&relay.url()).await;
    })
    .await
}

// 4. ----------------------------------------------------------------------------------------

fn assert_python_saw_wrong_code(who: &str, f: &Finished) {
    assert!(
        !f.status.success(),
        "{who} should fail on a wrong code: {f}"
    );
    assert!(
        f.stderr.contains("Key confirmation failed"),
        "{who} should report the wrong code: {f}"
    );
}

async fn wrong_codes_both_directions(url: &str) {
    let python_sends = async {
        let sender = py_send_text(url, "secret", Some("41-aa-bb"));
        assert_eq!(sender.code().await, "41-aa-bb");
        let got = deadline("our receiver", rust_receive_text(url, "41-aa-cc")).await;
        assert_eq!(got, Err(Error::WrongCode));
        assert_python_saw_wrong_code("python send", &sender.finish().await);
    };
    let rust_sends = async {
        let (_, sending) = deadline("set code", rust_send_text(url, "secret", Some("42-aa-bb")))
            .await
            .expect("our sender takes the code");
        let receiver = py_receive(url, "42-aa-cc");
        assert_python_saw_wrong_code(
            "python receive",
            &receiver.wait_with_deadline(DEADLINE).await,
        );
        let got = deadline("our sender", sending).await.expect("sender task");
        assert_eq!(got, Err(Error::WrongCode));
    };
    tokio::join!(python_sends, rust_sends);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_code_between_library_and_python_cli_on_our_relay() {
    within(async {
        let relay = OurRelay::start().await;
        wrong_codes_both_directions(relay.url()).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_code_between_library_and_python_cli_on_the_python_server() {
    within(async {
        let relay = PythonRelay::start().await;
        wrong_codes_both_directions(&relay.url()).await;
    })
    .await
}

// 5. ----------------------------------------------------------------------------------------

/// Reads frames until `pick` returns `Some`; fails on an `error` frame, end of stream, or the
/// deadline.
async fn recv_until<T>(
    conn: &mut (impl Connection + ?Sized),
    what: &str,
    mut pick: impl FnMut(&ServerMessage) -> Option<T>,
) -> T {
    deadline(what, async {
        loop {
            let text = match conn.recv().await {
                Ok(Some(text)) => text,
                other => panic!("{what}: connection ended: {other:?}"),
            };
            let frame = ServerFrame::parse(&text)
                .unwrap_or_else(|e| panic!("{what}: bad frame {text:?}: {e}"));
            if let ServerMessage::Error { error, orig } = &frame.message {
                panic!("{what}: relay error {error:?} for {orig}");
            }
            if let Some(found) = pick(&frame.message) {
                return found;
            }
        }
    })
    .await
}

async fn crowded(url: &str) {
    let code = "5-crowd-test";
    let mut sender = py_send_text(url, "crowd", Some(code));
    assert_eq!(sender.code().await, code);

    // A raw second side claims nameplate 5, opens its mailbox, and waits for the Python
    // sender's pake there: then both places of the nameplate are surely taken.
    let side = "0123456789";
    let mut raw = deadline("raw connect", WebSocketTransport::default().connect_ws(url))
        .await
        .expect("raw connection to the relay");
    for msg in [
        ClientMessage::Bind {
            appid: TEXT_APPID.into(),
            side: side.into(),
            client_version: None,
        },
        ClientMessage::Claim {
            nameplate: "5".into(),
        },
    ] {
        raw.send(ClientFrame::new(msg).to_json())
            .await
            .expect("raw send");
    }
    let mailbox = recv_until(&mut raw, "claimed", |m| match m {
        ServerMessage::Claimed { mailbox } => Some(mailbox.clone()),
        _ => None,
    })
    .await;
    raw.send(ClientFrame::new(ClientMessage::Open { mailbox }).to_json())
        .await
        .expect("raw open");
    recv_until(&mut raw, "the Python sender's pake", |m| match m {
        ServerMessage::Message { side: s, phase, .. } if s != side && phase == "pake" => Some(()),
        _ => None,
    })
    .await;

    // Our receiver is the third side.
    let mut receiver = Receiver::new(TEXT_APPID, url);
    let got = deadline("our receiver", async {
        receiver.set_code(code).await?;
        receiver.get_data(b"third").await
    })
    .await;
    assert_eq!(got, Err(Error::Crowded));

    // The Python sender is still waiting for a peer (the raw side never sent its pake).
    assert!(
        !sender.proc.has_exited(),
        "the Python sender ended: {:?}",
        sender.proc.output()
    );
    sender.proc.kill().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn third_side_is_crowded_out_on_our_relay() {
    within(async {
        let relay = OurRelay::start().await;
        crowded(relay.url()).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn third_side_is_crowded_out_on_the_python_server() {
    within(async {
        let relay = PythonRelay::start().await;
        crowded(&relay.url()).await;
    })
    .await
}

// 6. ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn exchanges_work_after_our_relay_is_killed_and_restarted() {
    within(async {
        let mut relay = OurRelay::start().await;
        let url = relay.url().to_string();
        library_exchange(&url).await;
        relay.kill().await;
        // Nothing answers now.
        assert!(
            tokio::net::TcpStream::connect(relay.addr()).await.is_err(),
            "the killed relay still accepts connections"
        );
        relay.restart().await;
        assert_eq!(relay.url(), url);
        library_exchange(&url).await;
    })
    .await
}

// 7. ----------------------------------------------------------------------------------------

/// The initiator talks to the relay through a proxy that cuts its connection right after the
/// code is allocated; the receiver (direct) joins after that.
async fn cut_after_allocation(relay_url: &str, relay_addr: SocketAddr) {
    let proxy = Proxy::start(relay_addr).await;
    let mut initiator = Initiator::new(APPID, &proxy.url());
    let code = deadline("allocate", initiator.get_code())
        .await
        .expect("allocate through the proxy");
    assert_eq!(proxy.accepted(), 1);
    assert_eq!(
        proxy.cut_all(),
        1,
        "the initiator's connection was not live"
    );

    let mut receiver = Receiver::new(APPID, relay_url);
    receiver.set_code(code.as_str()).await.expect("set code");
    let a = tokio::spawn(async move { initiator.get_data(b"a").await });
    let b = tokio::spawn(async move { receiver.get_data(b"b").await });
    let (a, b) = deadline("exchange", async { (a.await, b.await) }).await;
    assert_eq!(a.expect("task").expect("initiator"), b"b");
    assert_eq!(b.expect("task").expect("receiver"), b"a");
    assert!(
        proxy.accepted() >= 2,
        "the initiator did not reconnect through the proxy"
    );
}

/// Both sides go through proxies; both connections are cut after the key is confirmed (so
/// the nameplate is released) and before any application message; then they exchange
/// messages both ways.
async fn cut_after_key_confirmation(relay_addr: SocketAddr) {
    let (pa, pb) = tokio::join!(Proxy::start(relay_addr), Proxy::start(relay_addr));
    let mut a = Wormhole::new(APPID, &pa.url());
    let code = deadline("allocate", a.allocate_code(2))
        .await
        .expect("allocate through the proxy");
    let mut b = Wormhole::new(APPID, &pb.url());
    b.set_code(code).await.expect("set code");
    let (va, vb) = deadline("key confirmation", async {
        tokio::join!(a.verify(), b.verify())
    })
    .await;
    assert_eq!(va.expect("a verifies"), vb.expect("b verifies"));
    // Both have sent `release` by now (on the peer's first message); the relay's `released`
    // may or may not have arrived: reconnection must work either way.
    assert_eq!(pa.cut_all(), 1, "a's connection was not live");
    assert_eq!(pb.cut_all(), 1, "b's connection was not live");

    let ta = tokio::spawn(async move {
        a.send(b"after the cut, from a").await?;
        let got = a.recv().await?;
        a.close().await?;
        Ok::<_, Error>(got)
    });
    let tb = tokio::spawn(async move {
        b.send(b"after the cut, from b").await?;
        let got = b.recv().await?;
        b.close().await?;
        Ok::<_, Error>(got)
    });
    let (ra, rb) = deadline("messages after the cut", async { (ta.await, tb.await) }).await;
    assert_eq!(ra.expect("task").expect("a"), b"after the cut, from b");
    assert_eq!(rb.expect("task").expect("b"), b"after the cut, from a");
    assert!(pa.accepted() >= 2 && pb.accepted() >= 2, "no reconnection");
}

#[tokio::test(flavor = "multi_thread")]
async fn library_exchange_survives_a_cut_connection_on_our_relay() {
    within(async {
        let relay = OurRelay::start().await;
        cut_after_allocation(relay.url(), relay.addr()).await;
        cut_after_key_confirmation(relay.addr()).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn library_exchange_survives_a_cut_connection_on_the_python_server() {
    within(async {
        let relay = PythonRelay::start().await;
        cut_after_allocation(&relay.url(), relay.addr()).await;
        cut_after_key_confirmation(relay.addr()).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn text_to_the_python_cli_survives_a_cut_connection() {
    within(async {
        let relay = OurRelay::start().await;
        let proxy = Proxy::start(relay.addr()).await;
        let (code, sending) = deadline("allocate", rust_send_text(&proxy.url(), TEXT, None))
            .await
            .expect("our sender allocates through the proxy");
        assert_eq!(proxy.cut_all(), 1, "the sender's connection was not live");

        let receiver = py_receive(relay.url(), code.as_str());
        let received = receiver.wait_with_deadline(DEADLINE).await;
        assert_exit_ok("python receive", &received);
        assert_eq!(
            received.stdout, TEXT_AS_PRINTED,
            "receiver output: {received}"
        );
        deadline("our sender", sending)
            .await
            .expect("sender task")
            .expect("our sender completes after reconnecting");
        assert!(
            proxy.accepted() >= 2,
            "the sender did not reconnect through the proxy"
        );
    })
    .await
}

/// The Python sender's own reconnection, against our relay: its connection (through the
/// proxy) is cut after it allocated the code, then our receiver joins.
#[tokio::test(flavor = "multi_thread")]
async fn python_sender_survives_a_cut_connection_on_our_relay() {
    within(async {
        let relay = OurRelay::start().await;
        let proxy = Proxy::start(relay.addr()).await;
        let sender = py_send_text(&proxy.url(), TEXT, None);
        let code = sender.code().await;
        assert_eq!(proxy.cut_all(), 1, "the sender's connection was not live");
        let got = deadline("our receiver", rust_receive_text(relay.url(), &code))
            .await
            .expect("our receiver gets the text");
        assert_eq!(got, TEXT);
        let sent = sender.finish().await;
        assert_exit_ok("python send", &sent);
        assert!(proxy.accepted() >= 2, "the Python sender did not reconnect");
    })
    .await
}
