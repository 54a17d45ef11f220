//! Tests of the `wormhole` binary: help texts, argument errors, every error message and exit
//! status, and whole transfers through our relay started by the test (`wormhole-relay` on
//! 127.0.0.1:0). Every wait has a deadline; every process is killed when dropped.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{
    assert_exit, free_port, our_cli_command, Finished, OurRelay, Proc, Stream, DEADLINE,
};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use wormhole::code::Nameplate;
use wormhole::text::{SENDER_REJECTED, TEXT_APPID};
use wormhole::{Code, Wormhole};

const TEXT: &str = "two lines\n\tand a tab, caf\u{e9} \u{1F600} \"quotes\" 'single' \\";

/// Our CLI with a clean environment (no `WORMHOLE_*` from the caller, no logs), 100 columns.
fn cli(relay_url: Option<&str>) -> Command {
    let mut cmd = our_cli_command(relay_url);
    cmd.env("COLUMNS", "100");
    cmd
}

fn spawn(name: &str, mut cmd: Command, args: &[&str]) -> Proc {
    cmd.args(args);
    Proc::spawn(name, cmd, Vec::new())
}

/// Runs a command to its end, with stdin closed.
async fn run(relay_url: Option<&str>, args: &[&str]) -> Finished {
    spawn("wormhole", cli(relay_url), args)
        .wait_with_deadline(DEADLINE)
        .await
}

/// Runs a command with `input` on its stdin (then closed), to its end.
async fn run_with_stdin(mut cmd: Command, args: &[&str], input: &[u8]) -> Finished {
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("start wormhole");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(input).await.expect("write stdin");
    drop(stdin);
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("wormhole {args:?} still running after {DEADLINE:?}"))
        .expect("wait for wormhole");
    Finished {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Starts `wormhole send` and returns it with the code it printed.
async fn start_send(relay_url: &str, args: &[&str]) -> (Proc, String) {
    let mut all = vec!["send"];
    all.extend_from_slice(args);
    let p = spawn("wormhole send", cli(Some(relay_url)), &all);
    let code = p
        .wait_line_after(Stream::Stderr, "Wormhole code is: ", DEADLINE)
        .await;
    (p, code)
}

// ---------------------------------------------------------------------------------------------
// Help, arguments, completions

#[tokio::test]
async fn help_texts() {
    for (name, args) in [
        ("help", vec!["--help"]),
        ("send_help", vec!["send", "--help"]),
        ("receive_help", vec!["receive", "--help"]),
    ] {
        let f = run(None, &args).await;
        assert_exit(&f, 0, name);
        insta::assert_snapshot!(name, f.stdout);
    }
    let f = run(None, &["--version"]).await;
    assert_exit(&f, 0, "version");
    assert_eq!(
        f.stdout,
        format!("wormhole {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn argument_errors_exit_2() {
    for args in [
        vec!["send", "--bogus"],
        vec!["fly"],
        vec!["receive", "--allocate", "4-purple-sausages"],
        vec!["send", "--code-length", "0", "--text", "x"],
        vec!["--timeout", "soon", "send", "--text", "x"],
        vec!["--schedule", "hourly", "send", "--text", "x"],
    ] {
        let f = run(None, &args).await;
        assert_exit(&f, 2, &format!("{args:?}"));
        assert!(f.stderr.starts_with("error: "), "{args:?}: {f}");
        assert!(f.stdout.is_empty(), "{args:?}: {f}");
    }
    // Codes are checked before anything goes on the network.
    for args in [
        vec!["receive", "x-purple"],
        vec!["receive", "4"],
        vec!["send", "--code", "4", "--text", "x"],
    ] {
        let f = run(Some("ws://127.0.0.1:9/v1"), &args).await;
        assert_exit(&f, 2, &format!("{args:?}"));
        assert!(f.stderr.contains("is not valid"), "{args:?}: {f}");
    }
    let f = run(None, &["--timeout", "0", "send", "--text", "x"]).await;
    assert_exit(&f, 2, "timeout 0");
}

#[tokio::test]
async fn shell_completions() {
    for (shell, marker) in [
        ("bash", "_wormhole()"),
        ("zsh", "#compdef wormhole"),
        ("fish", "complete -c wormhole"),
    ] {
        let f = run(None, &["completions", shell]).await;
        assert_exit(&f, 0, shell);
        assert!(f.stdout.contains(marker), "{shell}: {f}");
        assert!(f.stdout.contains("relay-url"), "{shell}: {f}");
    }
}

// ---------------------------------------------------------------------------------------------
// Whole transfers

#[tokio::test]
async fn send_and_receive_through_our_relay() {
    let relay = OurRelay::start().await;
    let (sender, code) = start_send(relay.url(), &["--text", TEXT]).await;
    let got = run(Some(relay.url()), &["receive", &code]).await;
    assert_exit(&got, 0, "receive");
    assert_eq!(got.stdout, format!("{TEXT}\n"), "printed as-is");
    let sent = sender.wait_with_deadline(DEADLINE).await;
    assert_exit(&sent, 0, "send");
    let expected = format!(
        "Sending text message ({} Bytes)\nWormhole code is: {code}\nOn the other computer, please run:\n\nwormhole --relay-url {} receive {code}\n\ntext message sent\n",
        TEXT.len(),
        relay.url()
    );
    assert_eq!(sent.stderr, expected, "{sent}");
    assert_eq!(
        sent.stdout,
        "Note: code has been consumed and can no longer be used.\n"
    );
}

#[tokio::test]
async fn the_motd_and_a_newer_advertised_version_are_shown() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wormhole-relay"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--motd",
        "Welcome to the test relay\nBe nice",
        "--advertise-version",
        "99.0.0",
    ]);
    let relay = Proc::spawn("wormhole-relay", cmd, Vec::new());
    let url = relay
        .wait_line_after(Stream::Stdout, "wormhole-relay listening on ", DEADLINE)
        .await;
    let (sender, code) = start_send(&url, &["--text", "hi"]).await;
    let got = run(Some(&url), &["receive", &code]).await;
    assert_exit(&got, 0, "receive");
    let sent = sender.wait_with_deadline(DEADLINE).await;
    assert_exit(&sent, 0, "send");
    let motd = format!("Server (at {url}) says:\n Welcome to the test relay\n Be nice\n");
    let note = format!(
        "Note: the relay says version 99.0.0 of the wormhole CLI is current, but this is {}",
        env!("CARGO_PKG_VERSION")
    );
    for (who, f) in [("send", &sent), ("receive", &got)] {
        assert_eq!(f.stderr.matches(&motd).count(), 1, "{who}: {f}");
        assert_eq!(f.stderr.matches(&note).count(), 1, "{who}: {f}");
    }
    // The sender shows both before the code, as the Python CLI does.
    let at_motd = sent.stderr.find(&motd).unwrap();
    assert!(
        at_motd < sent.stderr.find("Wormhole code is: ").unwrap(),
        "{sent}"
    );
}

#[tokio::test]
async fn an_older_advertised_version_is_not_mentioned_and_long_lived_works() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wormhole-relay"));
    cmd.args(["--listen", "127.0.0.1:0", "--advertise-version", "0.0.1"]);
    let relay = Proc::spawn("wormhole-relay", cmd, Vec::new());
    let url = relay
        .wait_line_after(Stream::Stdout, "wormhole-relay listening on ", DEADLINE)
        .await;
    let (sender, code) = start_send(&url, &["--schedule", "long-lived", "--text", "hi"]).await;
    let mut recv = cli(Some(&url));
    recv.env("WORMHOLE_SCHEDULE", "long-lived");
    let got = spawn("wormhole receive", recv, &["receive", &code])
        .wait_with_deadline(DEADLINE)
        .await;
    assert_exit(&got, 0, "receive");
    assert_eq!(got.stdout, "hi\n");
    let sent = sender.wait_with_deadline(DEADLINE).await;
    assert_exit(&sent, 0, "send");
    for f in [&sent, &got] {
        assert!(!f.stderr.contains("Note: the relay says"), "{f}");
        assert!(!f.stderr.contains("says:"), "no motd: {f}");
    }
}

#[tokio::test]
async fn aliases_words_as_arguments_and_escape() {
    let relay = OurRelay::start().await;
    let (sender, code) = start_send(relay.url(), &["--text", "a\tb\nc"]).await;
    let mut args = vec!["recv", "--escape"];
    args.extend(code.split('-'));
    let got = run(Some(relay.url()), &args).await;
    assert_exit(&got, 0, "receive");
    assert_eq!(got.stdout, "a\\tb\\nc\n");
    assert_exit(&sender.wait_with_deadline(DEADLINE).await, 0, "send");

    let tx = spawn(
        "wormhole tx",
        cli(Some(relay.url())),
        &["tx", "--text", "x", "-c", "4"],
    );
    let code = tx
        .wait_line_after(Stream::Stderr, "Wormhole code is: ", DEADLINE)
        .await;
    assert_eq!(code.split('-').count(), 5, "{code}");
    let got = run(Some(relay.url()), &["rx", &code]).await;
    assert_exit(&got, 0, "rx");
    assert_eq!(got.stdout, "x\n");
    assert_exit(&tx.wait_with_deadline(DEADLINE).await, 0, "tx");
}

#[tokio::test]
async fn receiver_allocates_sender_uses_code() {
    let relay = OurRelay::start().await;
    let receiver = spawn(
        "wormhole receive -a",
        cli(Some(relay.url())),
        &["receive", "--allocate"],
    );
    let code = receiver
        .wait_line_after(Stream::Stderr, "Wormhole code is: ", DEADLINE)
        .await;
    let sent = run(
        Some(relay.url()),
        &["send", "--code", &code, "--text", TEXT],
    )
    .await;
    assert_exit(&sent, 0, "send");
    let got = receiver.wait_with_deadline(DEADLINE).await;
    assert_exit(&got, 0, "receive");
    assert_eq!(got.stdout, format!("{TEXT}\n"));
    assert!(
        got.stderr
            .contains(&format!(" send --code {code} --text TEXT")),
        "{got}"
    );
}

#[tokio::test]
async fn text_and_code_from_stdin_and_environment() {
    let relay = OurRelay::start().await;
    // `--text -` reads all of stdin; the relay comes from the environment.
    let mut send = cli(None);
    send.env("WORMHOLE_RELAY_URL", relay.url());
    let sending = tokio::spawn(async move {
        run_with_stdin(
            send,
            &["send", "--text", "-", "--code", "23-aa-bb"],
            TEXT.as_bytes(),
        )
        .await
    });
    // Without a code and with stdin not a terminal, the code is one line of stdin.
    let got = run_with_stdin(cli(Some(relay.url())), &["receive"], b"23-aa-bb\n").await;
    assert_exit(&got, 0, "receive");
    assert_eq!(got.stdout, format!("{TEXT}\n"));
    assert_exit(&sending.await.unwrap(), 0, "send");

    // No --text: the text is asked for (one line).
    let mut send = cli(Some(relay.url()));
    send.env("WORMHOLE_APPID", "example.com/other-app");
    let sending = tokio::spawn(async move {
        run_with_stdin(send, &["send", "--code", "24-aa-bb"], b"typed text\n").await
    });
    let mut recv = cli(Some(relay.url()));
    recv.args(["--appid", "example.com/other-app"]);
    let got = run_with_stdin(recv, &["receive", "24-aa-bb"], b"").await;
    assert_exit(&got, 0, "receive");
    assert_eq!(got.stdout, "typed text\n");
    assert_exit(&sending.await.unwrap(), 0, "send");
}

#[tokio::test]
async fn verify_yes_and_no() {
    let relay = OurRelay::start().await;
    let url = relay.url().to_string();
    let sending = tokio::spawn(async move {
        run_with_stdin(
            cli(Some(&url)),
            &["send", "-v", "--code", "31-aa-bb", "--text", "hi"],
            b"maybe\nyes\n",
        )
        .await
    });
    let got = run_with_stdin(
        cli(Some(relay.url())),
        &["receive", "-v", "31-aa-bb"],
        b"yes\n",
    )
    .await;
    assert_exit(&got, 0, "receive");
    assert_eq!(got.stdout, "hi\n");
    let sent = sending.await.unwrap();
    assert_exit(&sent, 0, "send");
    let verifier = |f: &Finished| {
        let at = f.stderr.find("Verifier ").expect("a verifier") + 9;
        f.stderr[at..at + 64].to_string()
    };
    assert_eq!(verifier(&got), verifier(&sent));
    assert!(sent.stderr.contains("Please answer yes or no."), "{sent}");

    // The sender says no: the receiver is told why.
    let url = relay.url().to_string();
    let sending = tokio::spawn(async move {
        run_with_stdin(
            cli(Some(&url)),
            &["send", "--verify", "--code", "32-aa-bb", "--text", "hi"],
            b"no\n",
        )
        .await
    });
    let got = run(Some(relay.url()), &["receive", "32-aa-bb"]).await;
    assert_exit(&got, 8, "receive");
    assert!(got.stderr.contains(SENDER_REJECTED), "{got}");
    assert!(got.stdout.is_empty(), "{got}");
    let sent = sending.await.unwrap();
    assert_exit(&sent, 10, "send");
    assert!(sent.stderr.contains("Verification rejected"), "{sent}");
}

#[tokio::test]
async fn qr_code_only_when_asked_for_or_on_a_terminal() {
    let relay = OurRelay::start().await;
    let (plain, code) = start_send(relay.url(), &["--text", "x"]).await;
    assert_exit(
        &run(Some(relay.url()), &["receive", &code]).await,
        0,
        "receive",
    );
    let plain = plain.wait_with_deadline(DEADLINE).await;
    assert!(!plain.stderr.contains('\u{2588}'), "{plain}");

    let (forced, code) = start_send(relay.url(), &["--text", "x", "--qr"]).await;
    assert_exit(
        &run(Some(relay.url()), &["receive", &code]).await,
        0,
        "receive",
    );
    let forced = forced.wait_with_deadline(DEADLINE).await;
    assert!(forced.stderr.contains('\u{2588}'), "{forced}");
}

// ---------------------------------------------------------------------------------------------
// Errors

#[tokio::test]
async fn wrong_code_on_both_sides() {
    let relay = OurRelay::start().await;
    let sender = spawn(
        "wormhole send",
        cli(Some(relay.url())),
        &["send", "--code", "5-aa-bb", "--text", "secret"],
    );
    sender
        .wait_line_after(Stream::Stderr, "Wormhole code is: ", DEADLINE)
        .await;
    let got = run(Some(relay.url()), &["receive", "5-aa-cc"]).await;
    let sent = sender.wait_with_deadline(DEADLINE).await;
    for (who, f) in [("receive", &got), ("send", &sent)] {
        assert_exit(f, 3, who);
        assert!(
            f.stderr.contains("ERROR: Key confirmation failed: either you or your correspondent typed the code wrong, or someone tried to guess it."),
            "{who}: {f}"
        );
    }
    assert!(!got.stdout.contains("secret"));
}

#[tokio::test]
async fn crowded_code() {
    let relay = OurRelay::start().await;
    // Two other sides hold nameplate 8.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut w = Wormhole::new(TEXT_APPID, relay.url());
        w.claim_nameplate(Nameplate::new("8").unwrap())
            .await
            .unwrap();
        // The relay answers in order: once the list is back, the claim was handled.
        w.list_nameplates().await.unwrap();
        holders.push(w);
    }
    let f = run(Some(relay.url()), &["receive", "8-aa-bb"]).await;
    assert_exit(&f, 4, "receive");
    assert!(f.stderr.contains("This code is already in use"), "{f}");
    assert!(f.stderr.contains("ask for a new code"), "{f}");
}

#[tokio::test]
async fn relay_unreachable_names_the_url() {
    let url = format!("ws://127.0.0.1:{}/v1", free_port());
    let started = Instant::now();
    let f = run(Some(&url), &["send", "--text", "x"]).await;
    assert_exit(&f, 5, "send");
    assert!(
        f.stderr
            .contains(&format!("ERROR: Cannot reach the relay at {url}: ")),
        "{f}"
    );
    assert_eq!(f.stderr.matches(&url).count(), 1, "the URL once: {f}");
    assert!(f.stderr.contains("--relay-url"), "{f}");
    assert!(started.elapsed() < Duration::from_secs(10), "{f}");
}

#[tokio::test]
async fn relay_error_text_is_shown() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wormhole-relay"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--signal-error",
        "closed for maintenance",
    ]);
    let relay = Proc::spawn("wormhole-relay", cmd, Vec::new());
    let url = relay
        .wait_line_after(Stream::Stdout, "wormhole-relay listening on ", DEADLINE)
        .await;
    for args in [vec!["send", "--text", "x"], vec!["receive", "4-aa-bb"]] {
        let f = run(Some(&url), &args).await;
        assert_exit(&f, 6, &format!("{args:?}"));
        assert!(
            f.stderr.contains(&format!(
                "ERROR: The relay at {url} refuses service: closed for maintenance"
            )),
            "{f}"
        );
    }
}

#[tokio::test]
async fn timeout_when_nobody_comes() {
    let relay = OurRelay::start().await;
    let started = Instant::now();
    let f = run(
        Some(relay.url()),
        &["--timeout", "1", "send", "--text", "x"],
    )
    .await;
    assert_exit(&f, 7, "send");
    assert!(
        f.stderr
            .contains("ERROR: Timed out after 1 s waiting for the other side."),
        "{f}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    let mut recv = cli(Some(relay.url()));
    recv.env("WORMHOLE_TIMEOUT", "0.5");
    let f = spawn("wormhole receive", recv, &["receive", "9-aa-bb"])
        .wait_with_deadline(DEADLINE)
        .await;
    assert_exit(&f, 7, "receive");
}

#[tokio::test]
async fn ctrl_c_closes_and_exits_130() {
    let relay = OurRelay::start().await;
    let (sender, code) = start_send(relay.url(), &["--text", "x"]).await;
    let pid = sender_pid(&sender);
    let started = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let f = sender.wait_with_deadline(Duration::from_secs(10)).await;
    assert_exit(&f, 130, "send");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(f.stderr.contains("ERROR: Interrupted"), "{f}");
    // The nameplate was released: the relay lists none.
    let mut w = Wormhole::new(TEXT_APPID, relay.url());
    let listed = w.list_nameplates().await.unwrap();
    let nameplate = Code::parse(&code).unwrap().nameplate();
    assert!(!listed.contains(&nameplate), "{listed:?}");
    let _ = w.close().await;
}

fn sender_pid(p: &Proc) -> u32 {
    p.pid().expect("the sender is running")
}

#[tokio::test]
async fn file_offers_are_refused_clearly() {
    let relay = OurRelay::start().await;
    let mut w = Wormhole::new(TEXT_APPID, relay.url());
    let code = w.allocate_code(2).await.unwrap();
    let peer = tokio::spawn(async move {
        w.send(
            json!({"transit": {"abilities-v1": [], "hints-v1": []}})
                .to_string()
                .as_bytes(),
        )
        .await
        .unwrap();
        w.send(
            json!({"offer": {"file": {"filename": "a.txt", "filesize": 3}}})
                .to_string()
                .as_bytes(),
        )
        .await
        .unwrap();
        let reply: Value = serde_json::from_slice(&w.recv().await.unwrap()).unwrap();
        let _ = w.close().await;
        reply
    });
    let f = run(Some(relay.url()), &["receive", code.as_str()]).await;
    assert_exit(&f, 9, "receive");
    assert!(f.stderr.contains("file transfer is not supported"), "{f}");
    let reply = tokio::time::timeout(DEADLINE, peer).await.unwrap().unwrap();
    assert_eq!(
        reply["error"],
        json!("file transfer is not supported by this receiver, only text")
    );
}
