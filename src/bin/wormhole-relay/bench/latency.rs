//! `--latency N`: message delivery time, one message at a time from one side of a mailbox to
//! the other.

use std::time::{Duration, Instant};

use wormhole::transports::Delivery;
use wormhole::wire::{ClientMessage, ServerMessage};

use super::mini::Mini;
use super::{transport_for, BenchArgs, BenchError};

/// One pair in one mailbox; side A adds `n` messages one at a time, and the time until side B
/// has each is measured.
pub(super) async fn latency(args: &BenchArgs, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let transport = transport_for(&args.url)?;
    let run = async {
        let mut a = Mini::connect(&transport, &args.url, &args.appid, "lat-a").await?;
        a.send(ClientMessage::Allocate).await?;
        let nameplate = match a
            .expect(|m| matches!(m, ServerMessage::Allocated { .. }))
            .await?
        {
            ServerMessage::Allocated { nameplate } => nameplate,
            _ => return Err::<Vec<Duration>, BenchError>("no nameplate".into()),
        };
        let mut b = Mini::connect(&transport, &args.url, &args.appid, "lat-b").await?;
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
        let mut times = Vec::with_capacity(n);
        for i in 0..n {
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
        Ok(times)
    };
    let mut times = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .map_err(|_| "the latency run timed out")?
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
