//! Our `wormhole` CLI against the real Python magic-wormhole 0.24 CLI (pinned in `.venv`, see
//! `scripts/setup-interop.sh`), through our relay and through the Python mailbox server.
//! Every wait has a deadline; every process is killed when dropped.

mod support;

use std::future::Future;

use support::{
    assert_exit, our_cli, py_receive, py_send_text, python_cli, python_repr_body, OurRelay, Proc,
    PythonRelay, Stream, TempDir, DEADLINE,
};

/// Newlines, tabs, quotes, backslashes and non-ASCII: must arrive byte-exact.
const TEXT: &str =
    "first line\nsecond\tline \u{e9}\u{e8} \u{65e5}\u{672c} \u{1F600} 'q' \"qq\" \\ end";

/// Fails the test if `f` does not finish within twice the per-wait deadline.
async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE * 2, f)
        .await
        .expect("the test did not finish in time")
}

/// Our `send --text` → the Python `receive`.
async fn ours_sends_python_receives(url: &str) {
    let sender = our_cli(url, &["send", "--text", TEXT, "--hide-progress"]);
    let code = sender
        .wait_line_after(Stream::Stderr, "Wormhole code is: ", DEADLINE)
        .await;
    let received = py_receive(url, &code).wait_with_deadline(DEADLINE).await;
    assert_exit(&received, 0, "python receive");
    assert_eq!(received.stdout, format!("{}\n", python_repr_body(TEXT)));
    let sent = sender.wait_with_deadline(DEADLINE).await;
    assert_exit(&sent, 0, "our send");
    assert!(sent.stderr.ends_with("\ntext message sent\n"), "{sent}");
}

/// The Python `send --text` → our `receive`, which prints the text as-is.
async fn python_sends_ours_receives(url: &str) {
    let sender = py_send_text(url, TEXT, None);
    let code = sender.code().await;
    let got = our_cli(url, &["receive", &code])
        .wait_with_deadline(DEADLINE)
        .await;
    assert_exit(&got, 0, "our receive");
    assert_eq!(got.stdout.as_bytes(), format!("{TEXT}\n").as_bytes());
    let sent = sender.finish().await;
    assert_exit(&sent, 0, "python send");
    assert!(
        sent.stderr.lines().any(|l| l == "text message sent"),
        "{sent}"
    );
}

/// Our `receive --allocate` → the Python `send --code`, and `--escape` prints what the
/// Python receiver would.
async fn ours_allocates_python_sends(url: &str) {
    let receiver = our_cli(url, &["receive", "--allocate", "--escape"]);
    let code = receiver
        .wait_line_after(Stream::Stderr, "Wormhole code is: ", DEADLINE)
        .await;
    let sent = py_send_text(url, TEXT, Some(&code)).finish().await;
    assert_exit(&sent, 0, "python send");
    let got = receiver.wait_with_deadline(DEADLINE).await;
    assert_exit(&got, 0, "our receive");
    assert_eq!(got.stdout, format!("{}\n", python_repr_body(TEXT)));
}

/// A wrong code between our sender and the Python receiver: both fail, ours with status 3.
async fn wrong_code(url: &str) {
    let sender = our_cli(url, &["send", "--text", "secret", "--code", "61-aa-bb"]);
    sender
        .wait_line_after(Stream::Stderr, "Wormhole code is: ", DEADLINE)
        .await;
    let received = py_receive(url, "61-aa-cc")
        .wait_with_deadline(DEADLINE)
        .await;
    assert!(!received.status.success(), "{received}");
    assert!(
        received.stderr.contains("Key confirmation failed"),
        "{received}"
    );
    let sent = sender.wait_with_deadline(DEADLINE).await;
    assert_exit(&sent, 3, "our send");
    assert!(sent.stderr.contains("Key confirmation failed"), "{sent}");
}

/// A file from the Python sender: our receiver refuses it clearly, and the Python sender is
/// told why.
async fn python_sends_a_file(url: &str) {
    let home = TempDir::new("py-send-file");
    let file = home.path().join("notes.txt");
    std::fs::write(&file, "not text mode").expect("write the file to send");
    let mut cmd = python_cli(url, &home);
    cmd.args(["send", "--hide-progress", "--no-qr", "notes.txt"]);
    let sender = Proc::spawn("python wormhole send FILE", cmd, vec![home]);
    let code = sender
        .wait_line_after(Stream::Stderr, "Wormhole code is: ", DEADLINE)
        .await;
    let got = our_cli(url, &["receive", &code])
        .wait_with_deadline(DEADLINE)
        .await;
    assert_exit(&got, 9, "our receive");
    assert!(
        got.stderr.contains("file transfer is not supported"),
        "{got}"
    );
    let sent = sender.wait_with_deadline(DEADLINE).await;
    assert!(!sent.status.success(), "{sent}");
    assert!(
        sent.stderr
            .contains("remote error, transfer abandoned: file transfer is not supported"),
        "{sent}"
    );
}

async fn everything(url: &str) {
    tokio::join!(
        ours_sends_python_receives(url),
        python_sends_ours_receives(url),
        ours_allocates_python_sends(url),
        wrong_code(url),
        python_sends_a_file(url),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn our_cli_and_the_python_cli_through_our_relay() {
    within(async {
        let relay = OurRelay::start().await;
        everything(relay.url()).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn our_cli_and_the_python_cli_through_the_python_server() {
    within(async {
        let relay = PythonRelay::start().await;
        everything(&relay.url()).await;
    })
    .await
}
