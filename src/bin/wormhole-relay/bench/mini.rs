//! The bench's bare mailbox-level client: raw protocol frames over one connection, with no
//! key exchange, just what the relay's load needs.

use std::sync::Arc;
use std::time::Duration;

use wormhole::transports::{Connection, Delivery, Transport};
use wormhole::wire::{ClientFrame, ClientMessage, ServerFrame, ServerMessage};

use super::BenchError;

/// A bare mailbox-level client.
pub(super) struct Mini {
    pub(super) conn: Box<dyn Connection>,
}

impl Mini {
    pub(super) async fn connect(
        transport: &Arc<dyn Transport>,
        url: &str,
        appid: &str,
        side: &str,
    ) -> Result<Mini, BenchError> {
        let conn = transport.connect(url).await?;
        let mut mini = Mini { conn };
        mini.send(ClientMessage::Bind {
            appid: appid.into(),
            side: side.into(),
            client_version: None,
        })
        .await?;
        Ok(mini)
    }

    pub(super) async fn send(&mut self, message: ClientMessage) -> Result<(), BenchError> {
        self.conn.send(ClientFrame::new(message).to_json()).await?;
        Ok(())
    }

    /// Reads frames until one satisfies `want`; an `error` frame fails.
    pub(super) async fn expect(
        &mut self,
        want: impl Fn(&ServerMessage) -> bool,
    ) -> Result<ServerMessage, BenchError> {
        // A pull connection fetches on request: one poll (a long poll) per wait.
        let mut polled = self.conn.delivery() == Delivery::Push;
        loop {
            let text = if polled {
                self.conn.recv().await?
            } else {
                // What the answers to sends brought first; else ask for more.
                match tokio::time::timeout(Duration::ZERO, self.conn.recv()).await {
                    Ok(got) => got?,
                    Err(_) => {
                        polled = true;
                        self.conn.poll().await?;
                        self.conn.recv().await?
                    }
                }
            }
            .ok_or("connection closed")?;
            let frame = ServerFrame::parse(&text)?;
            if let ServerMessage::Error { error, .. } = &frame.message {
                return Err(format!("relay error: {error}").into());
            }
            if want(&frame.message) {
                return Ok(frame.message);
            }
        }
    }

    /// Reads frames until one satisfies `want`, without asking a pull connection to poll
    /// (the caller did).
    pub(super) async fn expect_pushed(
        &mut self,
        want: impl Fn(&ServerMessage) -> bool,
    ) -> Result<ServerMessage, BenchError> {
        loop {
            let text = self.conn.recv().await?.ok_or("connection closed")?;
            let frame = ServerFrame::parse(&text)?;
            if want(&frame.message) {
                return Ok(frame.message);
            }
        }
    }

    /// Claim, open, add, wait for the peer's message, release, close.
    pub(super) async fn run_side(&mut self, nameplate: &str, peer: &str) -> Result<(), BenchError> {
        self.send(ClientMessage::Claim {
            nameplate: nameplate.into(),
        })
        .await?;
        let mailbox = match self
            .expect(|m| matches!(m, ServerMessage::Claimed { .. }))
            .await?
        {
            ServerMessage::Claimed { mailbox } => mailbox,
            _ => return Err("no mailbox".into()),
        };
        self.send(ClientMessage::Open {
            mailbox: mailbox.clone(),
        })
        .await?;
        self.send(ClientMessage::Add {
            phase: "pake".into(),
            body: "7b7d".into(),
        })
        .await?;
        self.expect(|m| matches!(m, ServerMessage::Message { side, .. } if side == peer))
            .await?;
        self.send(ClientMessage::Release {
            nameplate: Some(nameplate.into()),
        })
        .await?;
        self.send(ClientMessage::Close {
            mailbox: Some(mailbox),
            mood: Some("happy".into()),
        })
        .await?;
        self.expect(|m| matches!(m, ServerMessage::Closed)).await?;
        let _ = self.conn.close().await;
        Ok(())
    }
}
