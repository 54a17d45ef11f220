//! `--latency N`: message delivery time, one message at a time from one side of a mailbox to
//! the other.

use std::time::{Duration, Instant};

use wormhole::transports::Delivery;
use wormhole::wire::{ClientMessage, ServerMessage};

use super::mini::Mini;
use super::{transport_for, BenchArgs, BenchError};

/// Messages per mailbox: a fresh pair and mailbox after this many, so the run stays within the
/// relay's `--max-mailbox-messages` (default 128).
const PER_MAILBOX: usize = 100;

/// Side A adds `n` messages one at a time to a mailbox side B listens to, and the time until
/// B has each is measured; a new pair of connections and mailbox every [`PER_MAILBOX`].
pub(super) async fn latency(args: &BenchArgs, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let transport = transport_for(&args.url)?;
    let run = async {
        let mut times = Vec::with_capacity(n);
        while times.len() < n {
            let count = (n - times.len()).min(PER_MAILBOX);
            mailbox_run(&transport, args, count, &mut times).await?;
        }
        Ok::<_, BenchError>(times)
    };
    let mut times = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .map_err(|_| {
            "the latency run timed out (the relay's --max-mailbox-messages must allow 100 messages)"
        })?
        .map_err(|e| e.to_string())?;
    times.sort();
    let pct = |p: f64| -> f64 {
        let i = ((times.len() as f64 - 1.0) * p).round() as usize;
        times
            .get(i.min(times.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    if args.json {
        let out = serde_json::json!({
            "url": args.url, "messages": times.len(),
            "p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99),
        });
        println!("{out}");
    } else {
        println!(
            "{} messages delivered one at a time: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms",
            times.len(),
            pct(0.5),
            pct(0.9),
            pct(0.99)
        );
    }
    Ok(())
}

/// One pair in a new mailbox: `count` messages from A to B, their delivery times pushed to
/// `times`.
async fn mailbox_run(
    transport: &std::sync::Arc<dyn wormhole::transports::Transport>,
    args: &BenchArgs,
    count: usize,
    times: &mut Vec<Duration>,
) -> Result<(), BenchError> {
    let mut a = Mini::connect(transport, &args.url, &args.appid, "lat-a").await?;
    a.send(ClientMessage::Allocate).await?;
    let nameplate = match a
        .expect(|m| matches!(m, ServerMessage::Allocated { .. }))
        .await?
    {
        ServerMessage::Allocated { nameplate } => nameplate,
        _ => return Err("no nameplate".into()),
    };
    let mut b = Mini::connect(transport, &args.url, &args.appid, "lat-b").await?;
    let mut mailbox = String::new();
    for m in [&mut a, &mut b] {
        m.send(ClientMessage::Claim {
            nameplate: nameplate.clone(),
        })
        .await?;
        if let ServerMessage::Claimed { mailbox: id } = m
            .expect(|m| matches!(m, ServerMessage::Claimed { .. }))
            .await?
        {
            mailbox = id;
        }
        m.send(ClientMessage::Open {
            mailbox: mailbox.clone(),
        })
        .await?;
    }
    for i in 0..count {
        // Let B's poll settle at the relay (a long poll parked, over HTTP).
        if b.conn.delivery() == Delivery::Pull {
            b.conn.poll().await?;
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
        let phase = format!("{i}");
        let t0 = Instant::now();
        a.send(ClientMessage::Add {
            phase: phase.clone(),
            body: "7b7d".into(),
        })
        .await?;
        b.expect_pushed(|m| matches!(m, ServerMessage::Message { side, phase: p, .. } if side == "lat-a" && *p == phase))
            .await?;
        times.push(t0.elapsed());
    }
    for m in [&mut a, &mut b] {
        m.send(ClientMessage::Release { nameplate: None }).await?;
        m.send(ClientMessage::Close {
            mailbox: Some(mailbox.clone()),
            mood: Some("happy".into()),
        })
        .await?;
    }
    Ok(())
}
