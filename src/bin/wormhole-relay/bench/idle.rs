//! `--idle M`: holds M bound connections for the duration, then counts those that still answer
//! a `ping`, with the relay's memory per connection when `--relay-pid` is given.

use std::sync::Arc;
use std::time::Duration;

use wormhole::transports::http::{HttpClientOptions, HttpTransport};
use wormhole::transports::Transport;
use wormhole::wire::{ClientMessage, ServerMessage};

use super::mini::Mini;
use super::procfs::rss_kib;
use super::{transport_for, BenchArgs, BenchError};

pub(super) async fn idle(
    args: &BenchArgs,
    count: usize,
    duration: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    // Idle HTTP clients hold no connection between requests (as after the relay's keep-alive
    // timeout), so what is measured is the session; a parked long poll (`--long-poll`) holds
    // one connection.
    let transport: Arc<dyn Transport> = if args.url.starts_with("http") {
        Arc::new(HttpTransport::new(HttpClientOptions {
            keep_alive: false,
            ..HttpClientOptions::default()
        }))
    } else {
        transport_for(&args.url)?
    };
    let long_poll = args.long_poll;
    let rss_before = args.relay_pid.and_then(rss_kib);
    // Connect in waves so the listen queue is not the thing being measured.
    let mut conns: Vec<Mini> = Vec::with_capacity(count);
    let mut connect_failures = 0usize;
    let mut first_error = None;
    for chunk_start in (0..count).step_by(250) {
        let mut tasks = Vec::new();
        for i in chunk_start..(chunk_start + 250).min(count) {
            let transport = transport.clone();
            let url = args.url.clone();
            let appid = args.appid.clone();
            tasks.push(tokio::spawn(async move {
                let side = format!("idle{i:06}");
                let mut m = Mini::connect(&transport, &url, &appid, &side).await?;
                // Wait for the bind's ack so the relay really holds a bound connection.
                m.expect(|msg| matches!(msg, ServerMessage::Ack { .. }))
                    .await?;
                if long_poll {
                    m.conn.poll().await?;
                }
                Ok::<Mini, BenchError>(m)
            }));
        }
        for t in tasks {
            match t.await {
                Ok(Ok(m)) => conns.push(m),
                Ok(Err(e)) => {
                    connect_failures += 1;
                    first_error.get_or_insert(e.to_string());
                }
                Err(e) => {
                    connect_failures += 1;
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
    }
    let connected = conns.len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = args.relay_pid.and_then(rss_kib);
    tokio::time::sleep(duration).await;
    let rss_end = args.relay_pid.and_then(rss_kib);
    // Everyone pings; count the answers.
    let mut tasks = Vec::new();
    for (i, mut m) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let n = i as i64;
            m.send(ClientMessage::Ping { ping: n }).await.ok()?;
            let answer = tokio::time::timeout(
                Duration::from_secs(20),
                m.expect(move |msg| matches!(msg, ServerMessage::Pong { pong } if *pong == n)),
            )
            .await;
            matches!(answer, Ok(Ok(_))).then_some(m)
        }));
    }
    let mut answering = 0usize;
    let mut keep = Vec::new();
    for t in tasks {
        if let Ok(Some(m)) = t.await {
            answering += 1;
            keep.push(m);
        }
    }
    let per = |after: Option<u64>| match (rss_before, after) {
        (Some(b), Some(a)) if connected > 0 => {
            Some((a.saturating_sub(b)) as f64 / connected as f64)
        }
        _ => None,
    };
    let per_conn = per(rss_connected);
    let per_conn_end = per(rss_end);
    if args.json {
        let out = serde_json::json!({
            "url": args.url,
            "idle": count,
            "connected": connected,
            "answering": answering,
            "connect_failures": connect_failures,
            "first_error": first_error,
            "relay_rss_before_kib": rss_before,
            "relay_rss_connected_kib": rss_connected,
            "relay_kib_per_connection": per_conn,
            "relay_rss_end_kib": rss_end,
            "relay_kib_per_connection_end": per_conn_end,
            "long_poll": long_poll,
        });
        println!("{out}");
    } else {
        println!(
            "{connected}/{count} idle connections bound, {answering} answered a ping after {:.0} s",
            duration.as_secs_f64()
        );
        if let (Some(b), Some(a), Some(p)) = (rss_before, rss_connected, per_conn) {
            println!("relay RSS {b} KiB before, {a} KiB with the connections: {p:.2} KiB each");
        }
        if let (Some(e), Some(p)) = (rss_end, per_conn_end) {
            println!("relay RSS {e} KiB at the end of the hold: {p:.2} KiB each");
        }
        if let Some(e) = first_error {
            println!("first failure: {e}");
        }
    }
    drop(keep);
    Ok(())
}
