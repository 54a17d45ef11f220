//! The measuring harness around one flood: the relay's peak memory, the normal exchanges run
//! meanwhile, whether the relay is still alive, and the report.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::attacks::flood;
use super::ctx::{Ctx, Seen, STEP};
use super::Flood;
use crate::bench::{proc_status_kib, rss_kib, run_exchanges, BenchArgs, Stats};

pub(super) struct Report {
    kind: Flood,
    rss_before_kib: Option<u64>,
    peak_kib: Option<u64>,
    normal: Stats,
    base_p99_ms: f64,
    pub(super) base_failed: u64,
    alive: bool,
    seen: Seen,
}

impl Report {
    fn growth_mib(&self) -> Option<f64> {
        Some(self.peak_kib?.saturating_sub(self.rss_before_kib?) as f64 / 1024.0)
    }

    pub(super) fn print(&self, json: bool) {
        let growth = self.growth_mib();
        let ratio = if self.base_p99_ms > 0.0 {
            self.normal.p99_ms / self.base_p99_ms
        } else {
            0.0
        };
        if json {
            let out = json!({
                "flood": format!("{:?}", self.kind).to_lowercase(),
                "relay_rss_before_kib": self.rss_before_kib,
                "relay_peak_kib": self.peak_kib,
                "relay_growth_mib": growth,
                "normal_exchanges": self.normal.done,
                "normal_failed": self.normal.failed,
                "normal_first_error": self.normal.first_error,
                "normal_p99_ms": self.normal.p99_ms,
                "baseline_p99_ms": self.base_p99_ms,
                "baseline_failed": self.base_failed,
                "p99_ratio": ratio,
                "relay_alive": self.alive,
                "flood_connections": self.seen.connections,
                "flood_frames": self.seen.frames,
                "flood_bytes": self.seen.bytes,
                "flood_answers": self.seen.answers,
            });
            println!("{out}");
            return;
        }
        println!(
            "flood {:?}: {} connections, {} frames, {:.1} MiB sent",
            self.kind,
            self.seen.connections,
            self.seen.frames,
            self.seen.bytes as f64 / 1048576.0
        );
        for (answer, count) in &self.seen.answers {
            println!("  {count:>6} x {answer}");
        }
        match (self.rss_before_kib, growth) {
            (Some(before), Some(growth)) => println!(
                "  relay memory: {:.1} MiB before, peak growth {growth:.1} MiB (goal <= 64)",
                before as f64 / 1024.0
            ),
            _ => println!("  relay memory: unknown"),
        }
        println!(
            "  normal exchanges: {} completed, {} failed; p99 {:.2} ms vs {:.2} ms without a flood ({ratio:.1}x; goal <= 10x)",
            self.normal.done, self.normal.failed, self.normal.p99_ms, self.base_p99_ms
        );
        if let Some(e) = &self.normal.first_error {
            println!("  first normal failure: {e}");
        }
        println!("  relay alive: {}", if self.alive { "yes" } else { "NO" });
    }
}

pub(super) async fn one(
    args: &BenchArgs,
    pid: u32,
    kind: Flood,
    ctx: Ctx,
    duration: Duration,
    base: &Stats,
) -> Report {
    // Reset the relay's peak RSS (VmHWM); if that is not allowed, sampling still works.
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    let rss_before_kib = rss_kib(pid);
    let sampling_until = ctx.deadline + Duration::from_secs(3);
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        while Instant::now() < sampling_until {
            peak = peak.max(rss_kib(pid).unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak
    });
    // The flood runs on a thread and runtime of its own, so that its work does not delay the
    // normal exchanges' tasks here (the relay still shares the machine with both).
    let flood_ctx = ctx.clone();
    let flood = tokio::task::spawn_blocking(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(flood(kind, flood_ctx)),
            Err(e) => eprintln!("cannot start the flood's runtime: {e}"),
        }
    });
    let normal = match run_exchanges(args, duration).await {
        Ok(stats) => stats,
        Err(e) => Stats {
            elapsed: 0.0,
            done: 0,
            failed: 1,
            p50_ms: 0.0,
            p99_ms: 0.0,
            first_error: Some(e.to_string()),
        },
    };
    // The flood stops at its deadline; whatever it still holds is dropped here.
    // Every step of a flood has a deadline, so it ends soon after its own.
    if tokio::time::timeout(Duration::from_secs(30), flood)
        .await
        .is_err()
    {
        eprintln!("the flood did not stop in time");
    }
    let sampled = sampler.await.unwrap_or(0);
    let hwm = proc_status_kib(pid, "VmHWM:").unwrap_or(0);
    let peak_kib = Some(sampled.max(hwm)).filter(|&p| p > 0);
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists() && ping(&args.url).await;
    let seen = std::mem::take(&mut *ctx.seen.lock().unwrap_or_else(|e| e.into_inner()));
    Report {
        kind,
        rss_before_kib,
        peak_kib,
        normal,
        base_p99_ms: base.p99_ms,
        base_failed: 0,
        alive,
        seen,
    }
}

/// Whether the relay answers a ping from 127.0.0.1.
async fn ping(url: &str) -> bool {
    use wormhole::transports::websocket::WebSocketTransport;
    use wormhole::transports::Transport;
    let check = async {
        let mut c = WebSocketTransport::default().connect(url).await.ok()?;
        c.send(r#"{"type":"ping","ping":42}"#.into()).await.ok()?;
        loop {
            let frame: Value = serde_json::from_str(&c.recv().await.ok()??).ok()?;
            if frame["type"] == "pong" {
                return Some(());
            }
        }
    };
    matches!(tokio::time::timeout(STEP, check).await, Ok(Some(())))
}
