//! `wormhole-relay bench --flood KIND`: hostile load against a relay on loopback.
//!
//! Each flood runs for `--duration` seconds (and is bounded in connections and bytes as well)
//! from `--flood-source` (127.0.0.2 by default: the relay spares 127.0.0.1 from per-source
//! limits, so the normal exchanges that run meanwhile, from 127.0.0.1, are not limited by the
//! flood's doings, only slowed by its load). Before the floods, the same normal exchanges run
//! alone for the baseline p99. For each flood it prints the relay's peak resident memory
//! growth (`VmHWM` after resetting it through `/proc/PID/clear_refs`, and the largest
//! `VmRSS` sampled every 20 ms), whether every normal exchange completed, their p99 against
//! the baseline, what the relay answered the flood, and whether the relay is still alive.

mod attacks;
mod ctx;
mod measure;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wormhole::transports::websocket::parse_ws_url;

use crate::bench::{run_exchanges, BenchArgs};
use ctx::Ctx;
use measure::one;

/// The floods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Flood {
    /// 100 connections per round listen to one mailbox and never read, while another adds
    /// 30 messages of 400 KiB to it.
    Listeners,
    /// Connections that each allocate, claim and open a fresh mailbox, fill it with large
    /// messages and go away.
    Mailboxes,
    /// Up to 2,000 connections from one source, held open.
    Connections,
    /// Allocate-and-disconnect loops in the normal exchanges' app id.
    Allocate,
    /// 20 connections sending frames over the size limit (2 MiB), and above the transport's
    /// hard limit (5 MiB) every fifth time.
    Oversized,
    /// 200 connections that announce a 1 MiB frame (or send an HTTP request head) and drip it
    /// slowly.
    Slowdrip,
    /// Every flood above, one after the other.
    All,
}

const ALL: [Flood; 6] = [
    Flood::Listeners,
    Flood::Mailboxes,
    Flood::Connections,
    Flood::Allocate,
    Flood::Oversized,
    Flood::Slowdrip,
];

/// Runs the flood(s) and prints a report for each.
pub async fn run(
    args: &BenchArgs,
    flood: Flood,
    duration: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let parsed = parse_ws_url(&args.url)?;
    let host: IpAddr = match parsed.host.as_str() {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| "--flood needs a relay URL with an IP address")?,
    };
    if !host.is_loopback() || !args.flood_source.is_loopback() || parsed.secure {
        return Err("floods run only against a ws:// relay on loopback, from loopback".into());
    }
    let Some(pid) = args.relay_pid else {
        return Err("--flood needs --relay-pid (to measure the relay's memory)".into());
    };
    let kinds: Vec<Flood> = if flood == Flood::All {
        ALL.to_vec()
    } else {
        vec![flood]
    };
    if !args.json {
        println!(
            "normal exchanges: {} pairs, {}; each flood is compared with a run without it just before",
            args.pairs,
            args.rate
                .map_or("closed loop".to_string(), |r| format!("{r} offered/s")),
        );
    }
    let mut nonce = 0u64;
    for kind in kinds {
        nonce += 1;
        // The baseline right before each flood: the machine's other load changes over time.
        let base = run_exchanges(args, duration).await?;
        let ctx = Ctx {
            url: args.url.clone(),
            relay: SocketAddr::new(host, parsed.port),
            source: args.flood_source,
            deadline: Instant::now() + duration,
            appid: if kind == Flood::Allocate {
                args.appid.clone()
            } else {
                format!("wormhole-relay/flood-{}-{nonce}", std::process::id())
            },
            seen: Arc::default(),
        };
        let mut report = one(args, pid, kind, ctx, duration, &base).await;
        report.base_failed = base.failed;
        report.print(args.json);
        // Let the relay drop what the flood left before the next one.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}
