//! What a flood works with: [`Ctx`] (where and until when it runs, and the tally of what it
//! sent and what the relay answered) and its connection and frame helpers.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use wormhole::transports::websocket::{WebSocketConnection, WebSocketOptions};
use wormhole::transports::Connection;

/// How long one connect, handshake or answer may take.
pub(super) const STEP: Duration = Duration::from_secs(5);

pub(super) type Error = Box<dyn std::error::Error + Send + Sync>;

/// Where and until when a flood runs, and what it saw.
#[derive(Clone)]
pub(super) struct Ctx {
    pub(super) url: String,
    pub(super) relay: SocketAddr,
    pub(super) source: IpAddr,
    pub(super) deadline: Instant,
    pub(super) appid: String,
    pub(super) seen: Arc<Mutex<Seen>>,
}

#[derive(Default, Debug)]
pub(super) struct Seen {
    pub(super) connections: u64,
    pub(super) frames: u64,
    pub(super) bytes: u64,
    /// Error texts from the relay, and connection failures, with their counts.
    pub(super) answers: BTreeMap<String, u64>,
}

impl Ctx {
    pub(super) fn running(&self) -> bool {
        Instant::now() < self.deadline
    }

    pub(super) fn note(&self, what: impl Into<String>) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        *seen.answers.entry(what.into()).or_default() += 1;
    }

    pub(super) fn sent(&self, bytes: usize) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.frames += 1;
        seen.bytes += bytes as u64;
    }

    /// A TCP connection to the relay from the flood's source address.
    pub(super) async fn tcp(&self) -> Result<TcpStream, Error> {
        let socket = if self.source.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(self.source, 0))?;
        let stream = tokio::time::timeout(STEP, socket.connect(self.relay)).await??;
        stream.set_nodelay(true)?;
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .connections += 1;
        Ok(stream)
    }

    /// A WebSocket connection from the flood's source, bound as `side`; `None` (noted) if the
    /// relay refused it.
    pub(super) async fn bound(&self, side: &str) -> Option<Box<dyn Connection>> {
        let conn = async {
            let stream = self.tcp().await?;
            let options = WebSocketOptions::default().with_handshake_timeout(STEP);
            let mut conn: Box<dyn Connection> =
                Box::new(WebSocketConnection::client_over_with(stream, &self.url, &options).await?);
            let welcome = recv(&mut conn).await?;
            if welcome["type"] != "welcome" {
                return Err(Error::from(format!("{}", welcome["error"])));
            }
            send(
                self,
                &mut conn,
                json!({"type": "bind", "appid": self.appid, "side": side}),
            )
            .await?;
            Ok::<_, Error>(conn)
        };
        match conn.await {
            Ok(conn) => Some(conn),
            Err(e) => {
                self.note(format!("connection refused or failed: {e}"));
                None
            }
        }
    }
}

pub(super) async fn send(
    ctx: &Ctx,
    conn: &mut Box<dyn Connection>,
    frame: Value,
) -> Result<(), Error> {
    let text = frame.to_string();
    ctx.sent(text.len());
    tokio::time::timeout(STEP, conn.send(text)).await??;
    Ok(())
}

async fn recv(conn: &mut Box<dyn Connection>) -> Result<Value, Error> {
    let text = tokio::time::timeout(STEP, conn.recv())
        .await??
        .ok_or("closed by the relay")?;
    Ok(serde_json::from_str(&text)?)
}

/// Reads until a frame of one of `types` or an `error` (noted) arrives.
pub(super) async fn answer(
    ctx: &Ctx,
    conn: &mut Box<dyn Connection>,
    types: &[&str],
) -> Option<Value> {
    loop {
        match recv(conn).await {
            Ok(frame) if frame["type"] == "error" => {
                ctx.note(frame["error"].as_str().unwrap_or("?").to_string());
                return None;
            }
            Ok(frame) if types.iter().any(|t| frame["type"] == *t) => return Some(frame),
            Ok(_) => {}
            Err(e) => {
                ctx.note(format!("connection failed: {e}"));
                return None;
            }
        }
    }
}
