//! The floods themselves, one function per [`Flood`] kind: what a hostile client does to the
//! relay until the flood's deadline.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ctx::{answer, send, Ctx, Error, STEP};
use super::Flood;

pub(super) async fn flood(kind: Flood, ctx: Ctx) {
    match kind {
        Flood::Listeners => listeners(ctx).await,
        Flood::Mailboxes => mailboxes(ctx).await,
        Flood::Connections => connections(ctx).await,
        Flood::Allocate => allocate(ctx).await,
        Flood::Oversized => oversized(ctx).await,
        Flood::Slowdrip => slowdrip(ctx).await,
        Flood::All => {}
    }
}

/// A hex body of about `bytes`.
fn body(bytes: usize) -> String {
    "ab".repeat(bytes / 2)
}

async fn listeners(ctx: Ctx) {
    for round in 0..20 {
        if !ctx.running() {
            return;
        }
        let mailbox = format!("flood-{round}");
        let Some(mut adder) = ctx.bound("adder").await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if send(
            &ctx,
            &mut adder,
            json!({"type": "open", "mailbox": mailbox}),
        )
        .await
        .is_err()
        {
            continue;
        }
        let mut deaf = Vec::new();
        for i in 0..100 {
            if !ctx.running() {
                break;
            }
            if let Some(mut c) = ctx.bound(&format!("deaf{i}")).await {
                let _ = send(&ctx, &mut c, json!({"type": "open", "mailbox": mailbox})).await;
                deaf.push(c); // never read
            }
        }
        for phase in 0..30 {
            if !ctx.running() {
                break;
            }
            let frame =
                json!({"type": "add", "phase": phase.to_string(), "body": body(400 * 1024)});
            if send(&ctx, &mut adder, frame).await.is_err()
                || answer(&ctx, &mut adder, &["message"]).await.is_none()
            {
                break;
            }
        }
        drop(deaf);
    }
}

async fn mailboxes(ctx: Ctx) {
    // 20 workers at once, as an attacker would.
    let mut tasks = Vec::new();
    for worker in 0..20u64 {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(
            async move { mailboxes_worker(ctx, worker).await },
        ));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn mailboxes_worker(ctx: Ctx, worker: u64) {
    let mut n = worker * 1000;
    while ctx.running() && n < worker * 1000 + 100 {
        n += 1;
        let Some(mut c) = ctx.bound(&format!("m{n}")).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Up to three mailboxes held by this one connection: an allocated nameplate's, a
        // claimed one's, and a bare one filled with messages.
        let _ = send(&ctx, &mut c, json!({"type": "allocate"})).await;
        answer(&ctx, &mut c, &["allocated"]).await;
        let _ = send(
            &ctx,
            &mut c,
            json!({"type": "claim", "nameplate": (500 + n).to_string()}),
        )
        .await;
        answer(&ctx, &mut c, &["claimed"]).await;
        let _ = send(
            &ctx,
            &mut c,
            json!({"type": "open", "mailbox": format!("fill-{n}")}),
        )
        .await;
        for phase in 0..8 {
            let frame =
                json!({"type": "add", "phase": phase.to_string(), "body": body(512 * 1024)});
            if !ctx.running()
                || send(&ctx, &mut c, frame).await.is_err()
                || answer(&ctx, &mut c, &["message"]).await.is_none()
            {
                break;
            }
        }
        // Gone without closing anything.
    }
}

async fn connections(ctx: Ctx) {
    let mut held = Vec::new();
    let mut n = 0;
    while ctx.running() && n < 2000 {
        n += 1;
        if let Some(c) = ctx.bound(&format!("c{n}")).await {
            held.push(c);
        }
    }
    let left = ctx.deadline.saturating_duration_since(Instant::now());
    tokio::time::sleep(left).await;
    drop(held);
}

async fn allocate(ctx: Ctx) {
    let mut n = 0;
    while ctx.running() && n < 5000 {
        n += 1;
        let Some(mut c) = ctx.bound(&format!("alloc{n}")).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let _ = send(&ctx, &mut c, json!({"type": "allocate"})).await;
        if answer(&ctx, &mut c, &["allocated"]).await.is_some() {
            ctx.note("allocated");
        }
        drop(c); // and disconnect, keeping the nameplate
    }
}

async fn oversized(ctx: Ctx) {
    let mut tasks = Vec::new();
    for worker in 0..20 {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while ctx.running() && n < 500 {
                let Some(mut c) = ctx.bound(&format!("big{worker}-{n}")).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    n += 1;
                    continue;
                };
                while ctx.running() && n < 500 {
                    n += 1;
                    let size = if n.is_multiple_of(5) {
                        5 << 20
                    } else {
                        2 << 20
                    };
                    let frame = json!({"type": "ping", "ping": 1, "pad": "x".repeat(size)});
                    if send(&ctx, &mut c, frame).await.is_err() {
                        ctx.note("connection failed while sending");
                        break;
                    }
                    if answer(&ctx, &mut c, &["pong"]).await.is_none() && size > 4 << 20 {
                        break; // over the hard limit the relay drops the connection
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn slowdrip(ctx: Ctx) {
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        if !ctx.running() {
            break;
        }
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut tcp) = ctx.tcp().await else {
                ctx.note("connect failed");
                return;
            };
            let head = format!(
                "GET /v1 HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                ctx.relay
            );
            let result = if i.is_multiple_of(2) {
                // The request head, a byte every 100 ms.
                drip(&ctx, &mut tcp, head.as_bytes(), 1).await
            } else {
                // A whole handshake, then a 1 MiB frame, 4 KiB every 100 ms.
                async {
                    tcp.write_all(head.as_bytes()).await?;
                    let mut got = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = tokio::time::timeout(STEP, tcp.read(&mut buf)).await??;
                        if n == 0 {
                            return Err(Error::from("closed in the handshake"));
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                    // FIN + text; masked, 64-bit length; a zero mask key.
                    let len: u64 = 1 << 20;
                    let mut header = vec![0x81u8, 0x80 | 127];
                    header.extend_from_slice(&len.to_be_bytes());
                    header.extend_from_slice(&[0, 0, 0, 0]);
                    tcp.write_all(&header).await?;
                    drip(&ctx, &mut tcp, &vec![b'a'; len as usize], 4096).await
                }
                .await
            };
            match result {
                Ok(()) => ctx.note("drip finished"),
                Err(e) => ctx.note(format!("drip cut: {e}")),
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Writes `bytes` in pieces of `piece` every 100 ms until done or the deadline.
async fn drip(ctx: &Ctx, tcp: &mut TcpStream, bytes: &[u8], piece: usize) -> Result<(), Error> {
    for chunk in bytes.chunks(piece) {
        if !ctx.running() {
            return Ok(());
        }
        tokio::time::timeout(STEP, tcp.write_all(chunk)).await??;
        ctx.sent(chunk.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
