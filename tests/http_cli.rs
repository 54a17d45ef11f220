//! The binaries with HTTP polling: our CLI with an `http://` relay URL on both sides against
//! our relay binary, and the relay's `--metrics`, `--mailbox-retention` and
//! `--http-session-idle` flags.

mod support;

use std::time::Duration;

use support::{assert_exit, free_port, our_cli, OurRelay, Proc, Stream, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

#[tokio::test]
async fn the_cli_sends_and_receives_over_http_polling() {
    let relay = OurRelay::start().await;
    let url = relay.url().replacen("ws://", "http://", 1);
    let text = "over plain HTTP requests";
    let sender = our_cli(&url, &["send", "--text", text, "--hide-progress"]);
    let code = sender
        .wait_line_after(Stream::Stderr, "Wormhole code is: ", DEADLINE)
        .await;
    let got = our_cli(&url, &["receive", "--hide-progress", &code])
        .wait_with_deadline(DEADLINE)
        .await;
    assert_exit(&got, 0, "receive");
    assert_eq!(got.stdout, format!("{text}\n"));
    let sent = sender.wait_with_deadline(DEADLINE).await;
    assert_exit(&sent, 0, "send");
    assert!(
        sent.stderr
            .contains(&format!("wormhole --relay-url {url} receive {code}")),
        "{sent}"
    );
}

/// `GET path` on `addr`; the status and body.
async fn get(addr: &str, path: &str) -> (u16, String) {
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        (head[9..12].parse().unwrap(), body.to_string())
    })
    .await
    .expect("an answer in time")
}

fn relay(args: &[&str]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wormhole-relay"));
    cmd.args(args).env("RUST_LOG", "info");
    Proc::spawn("wormhole-relay", cmd, Vec::new())
}

#[tokio::test]
async fn metrics_are_served_on_the_relay_port_elsewhere_or_not_at_all() {
    // Default: on the relay's own port.
    let ours = OurRelay::start().await;
    let addr = ours.addr().to_string();
    let (status, body) = get(&addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("wormhole_relay_connections_open{transport=\"http\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("wormhole_relay_http_requests_total 1"),
        "{body}"
    );

    // A separate address: there and only there.
    let metrics_port = free_port();
    let p = relay(&[
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        &format!("127.0.0.1:{metrics_port}"),
    ]);
    let line = p
        .wait_line_after(
            Stream::Stdout,
            "wormhole-relay listening on ws://",
            DEADLINE,
        )
        .await;
    let relay_addr = line.split('/').next().unwrap().to_string();
    let (status, body) = get(&format!("127.0.0.1:{metrics_port}"), "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("# TYPE wormhole_relay_exchanges_total counter"),
        "{body}"
    );
    assert_eq!(get(&format!("127.0.0.1:{metrics_port}"), "/").await.0, 404);
    assert_eq!(get(&relay_addr, "/metrics").await.0, 404);
    drop(p);

    // Off.
    let p = relay(&["--listen", "127.0.0.1:0", "--metrics", "off"]);
    let line = p
        .wait_line_after(
            Stream::Stdout,
            "wormhole-relay listening on ws://",
            DEADLINE,
        )
        .await;
    let relay_addr = line.split('/').next().unwrap().to_string();
    assert_eq!(get(&relay_addr, "/metrics").await.0, 404);
    assert_eq!(
        get(&relay_addr, "/").await,
        (200, "Wormhole Relay\n".to_string())
    );
}

#[tokio::test]
async fn bad_durations_and_metrics_addresses_are_refused_clearly() {
    for (args, text) in [
        (vec!["--mailbox-retention", "31d"], "at most 30d"),
        (vec!["--mailbox-retention", "0"], "longer than zero"),
        (vec!["--mailbox-retention", "5y"], "unknown unit"),
        (vec!["--http-session-idle", "2d"], "at most 1d"),
        (
            vec!["--metrics", "sometimes"],
            "expected same, off or an address",
        ),
    ] {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend(args.iter().copied());
        let done = relay(&all).wait_with_deadline(DEADLINE).await;
        assert_eq!(done.status.code(), Some(2), "{args:?}: {done}");
        assert!(done.stderr.contains(text), "{args:?}: {done}");
    }
}
