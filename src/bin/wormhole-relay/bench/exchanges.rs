//! Normal exchanges, the bench's default load: `--pairs` pairs running whole exchanges
//! (closed loop, or open loop at `--rate`), their latency percentiles, and the report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use wormhole::transports::Transport;
use wormhole::wire::{ClientMessage, ServerMessage};

use super::mini::Mini;
use super::{transport_for, BenchArgs, BenchError};

/// How long one exchange may take before it counts as failed.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a run of normal exchanges did.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Seconds the run took.
    pub elapsed: f64,
    /// Exchanges completed.
    pub done: usize,
    /// Exchanges that failed or timed out.
    pub failed: u64,
    /// Median latency of the completed exchanges, in milliseconds (0 if none completed).
    pub p50_ms: f64,
    /// 99th-percentile latency of the completed exchanges, in milliseconds (0 if none).
    pub p99_ms: f64,
    /// The first failure's text, if any.
    pub first_error: Option<String>,
}

pub(super) async fn exchanges(
    args: &BenchArgs,
    duration: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let stats = run_exchanges(args, duration).await?;
    let Stats {
        elapsed,
        done,
        failed,
        p50_ms,
        p99_ms,
        first_error,
    } = stats;
    let rate = done as f64 / elapsed;
    if args.json {
        let out = serde_json::json!({
            "url": args.url,
            "pairs": args.pairs,
            "rate": args.rate,
            "duration_s": elapsed,
            "exchanges": done,
            "exchanges_per_s": rate,
            "p50_ms": p50_ms,
            "p99_ms": p99_ms,
            "failed": failed,
            "first_error": first_error,
        });
        println!("{out}");
    } else {
        let mode = match args.rate {
            Some(r) => format!(" (open loop, {r} offered/s)"),
            None => String::new(),
        };
        println!(
            "{done} exchanges in {elapsed:.1} s with {} pairs{mode}: {rate:.0} exchanges/s, \
             p50 {p50_ms:.2} ms, p99 {p99_ms:.2} ms, {failed} failed",
            args.pairs,
        );
        if let Some(e) = first_error {
            println!("first failure: {e}");
        }
    }
    Ok(())
}

/// Runs `--pairs` pairs of exchanges (closed loop, or open loop at `--rate`) for `duration`.
pub async fn run_exchanges(
    args: &BenchArgs,
    duration: Duration,
) -> Result<Stats, Box<dyn std::error::Error>> {
    let transport = transport_for(&args.url)?;
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let start = Instant::now();
    let end = start + duration;
    let pairs = args.pairs.max(1);
    // With --rate, each pair starts an exchange every `pairs / rate` seconds, staggered.
    let interval = match args.rate {
        Some(rate) if rate > 0.0 && rate.is_finite() => {
            Some(Duration::from_secs_f64(pairs as f64 / rate))
        }
        Some(_) => return Err("--rate must be a positive number".into()),
        None => None,
    };
    let mut workers = Vec::new();
    for worker in 0..pairs {
        let transport = transport.clone();
        let mut urls = vec![args.url.clone()];
        urls.extend(args.also_url.iter().cloned());
        let appid = args.appid.clone();
        let failed = failed.clone();
        let first_error = first_error.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n: u64 = 0;
            let mut scheduled = interval.map(|i| start + i.mul_f64(worker as f64 / pairs as f64));
            while Instant::now() < end {
                n += 1;
                let sides = (format!("a{worker:05}{n:04}"), format!("b{worker:05}{n:04}"));
                let t0 = match (scheduled, interval) {
                    (Some(at), Some(i)) => {
                        if at >= end {
                            break;
                        }
                        tokio::time::sleep_until(at.into()).await;
                        scheduled = Some(at + i);
                        at
                    }
                    _ => Instant::now(),
                };
                let k = worker + n as usize;
                let ends = (
                    urls[k % urls.len()].as_str(),
                    urls[(k + 1) % urls.len()].as_str(),
                );
                let outcome = tokio::time::timeout(
                    EXCHANGE_TIMEOUT,
                    exchange(&transport, ends, &appid, sides),
                )
                .await;
                match outcome {
                    Ok(Ok(())) => latencies.push(t0.elapsed()),
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        let why = match other {
                            Ok(Err(e)) => e.to_string(),
                            _ => "exchange timed out".to_string(),
                        };
                        let mut first = first_error.lock().unwrap_or_else(|e| e.into_inner());
                        first.get_or_insert(why);
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.unwrap_or_default());
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i.min(latencies.len() - 1)].as_secs_f64() * 1000.0
    };
    let first_error = first_error.lock().ok().and_then(|e| e.clone());
    Ok(Stats {
        elapsed,
        done: latencies.len(),
        failed: failed.load(Ordering::Relaxed),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        first_error,
    })
}

/// One exchange between two fresh connections.
async fn exchange(
    transport: &Arc<dyn Transport>,
    (url_a, url_b): (&str, &str),
    appid: &str,
    (side_a, side_b): (String, String),
) -> Result<(), BenchError> {
    let (nameplate_tx, nameplate_rx) = oneshot::channel::<String>();
    let a = async {
        let mut c = Mini::connect(transport, url_a, appid, &side_a).await?;
        c.send(ClientMessage::Allocate).await?;
        let nameplate = match c
            .expect(|m| matches!(m, ServerMessage::Allocated { .. }))
            .await?
        {
            ServerMessage::Allocated { nameplate } => nameplate,
            _ => return Err("no nameplate".into()),
        };
        let _ = nameplate_tx.send(nameplate.clone());
        c.run_side(&nameplate, &side_b).await
    };
    let b = async {
        let nameplate = nameplate_rx.await.map_err(|_| "side A failed")?;
        let mut c = Mini::connect(transport, url_b, appid, &side_b).await?;
        c.run_side(&nameplate, &side_a).await
    };
    let (ra, rb) = tokio::join!(a, b);
    ra?;
    rb
}
