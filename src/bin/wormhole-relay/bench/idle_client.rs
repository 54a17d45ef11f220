//! `--idle-client SECS`: one real client (the library) allocates a code and waits; the relay's
//! `/metrics` tell how many HTTP requests it made meanwhile.

use std::time::{Duration, Instant};

use wormhole::transports::split_scheme;

use super::BenchArgs;

/// One real client allocates a code and waits; the relay's `/metrics` tell how many HTTP
/// requests it made meanwhile.
pub(super) async fn idle_client(
    args: &BenchArgs,
    secs: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let preset: wormhole::SchedulePreset = args.schedule.parse()?;
    let (_, rest) = split_scheme(&args.url)?;
    let authority = rest.split('/').next().unwrap_or(rest).to_string();
    let mut w = wormhole::Wormhole::new(&args.appid, &args.url).with_preset(preset);
    w.allocate_code(2).await?;
    // Let the opening requests pass, then count over the idle period only.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = scrape_requests(&authority).await?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let after = scrape_requests(&authority).await?;
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    // The scrape itself is one request.
    let requests = after.saturating_sub(before).saturating_sub(1);
    let per_minute = requests as f64 / minutes;
    if args.json {
        let out = serde_json::json!({
            "url": args.url, "schedule": args.schedule, "seconds": secs,
            "requests": requests, "requests_per_minute": per_minute,
        });
        println!("{out}");
    } else {
        println!(
            "an idle client ({}) made {requests} HTTP requests in {secs:.0} s: {per_minute:.2} per minute",
            args.schedule
        );
    }
    let _ = w.close().await;
    Ok(())
}

/// `wormhole_relay_http_requests_total` from `http://AUTHORITY/metrics`.
async fn scrape_requests(authority: &str) -> Result<u64, Box<dyn std::error::Error>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(authority).await?;
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut text)).await??;
    text.lines()
        .find_map(|l| l.strip_prefix("wormhole_relay_http_requests_total "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "the relay's /metrics has no wormhole_relay_http_requests_total".into())
}
