//! `wormhole-relay bench` against a real `wormhole-relay` on loopback, over WebSocket and HTTP
//! polling: the load generator's modes finish and report what they measured (they are what
//! the README's figures come from).

mod support;

use serde_json::Value;
use support::{OurRelay, Proc, DEADLINE};
use tokio::process::Command;

/// Runs `wormhole-relay bench ARGS --json` and returns its JSON report.
async fn bench(args: &[&str]) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wormhole-relay"));
    cmd.arg("bench")
        .args(args)
        .arg("--json")
        .env_remove("RUST_LOG");
    let done = Proc::spawn("wormhole-relay bench", cmd, Vec::new())
        .wait_with_deadline(DEADLINE * 4)
        .await;
    assert!(
        done.status.success(),
        "bench {args:?} failed: {}\n{}",
        done.stdout,
        done.stderr
    );
    let line = done.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {}", done.stdout))
}

#[tokio::test(flavor = "multi_thread")]
async fn latency_runs_past_the_relays_per_mailbox_message_limit() {
    let relay = OurRelay::start().await;
    let port = relay.addr().port();
    // 150 messages: more than the 128 one mailbox may hold (the run moves to a new mailbox
    // every 100), over both transports.
    for url in [
        format!("ws://127.0.0.1:{port}/v1"),
        format!("http://127.0.0.1:{port}/v1"),
    ] {
        let report = bench(&["--url", &url, "--latency", "150"]).await;
        assert_eq!(report["messages"], 150, "{report}");
        let p50 = report["p50_ms"].as_f64().expect("p50_ms");
        let p99 = report["p99_ms"].as_f64().expect("p99_ms");
        assert!(p50 > 0.0 && p50 <= p99, "{report}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exchanges_are_counted_over_both_transports() {
    let relay = OurRelay::start().await;
    let port = relay.addr().port();
    for url in [
        format!("ws://127.0.0.1:{port}/v1"),
        format!("http://127.0.0.1:{port}/v1"),
    ] {
        let report = bench(&["--url", &url, "--pairs", "3", "--duration", "1"]).await;
        assert!(report["exchanges"].as_u64().unwrap_or(0) > 0, "{report}");
        assert_eq!(report["failed"], 0, "{report}");
    }
}
