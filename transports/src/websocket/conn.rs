//! The WebSocket connection (both roles) and the client-side opening handshake.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{sleep_until, timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::{parse_ws_url, WebSocketOptions};
use crate::net::Dialer;
use crate::{Connection, PeerInfo, TransportError};

pub use crate::net::{AsyncStream, BoxedStream};

/// How long [`Connection::close`] waits to get the CLOSE frame out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// One WebSocket connection carrying text frames, on the client or the relay side.
///
/// See the [module docs](super) for keepalive and frame-size behaviour.
pub struct WebSocketConnection {
    ws: WebSocketStream<BoxedStream>,
    role: Role,
    peer: PeerInfo,
    keepalive_interval: Duration,
    dead_after: Duration,
    /// The protocol's frame limit (relay side: larger frames are dropped at once).
    max_frame_bytes: usize,
    /// When anything (data, PING, PONG) last arrived.
    last_rx: Instant,
    /// When a PING went out, if one did since `last_rx`.
    ping_sent_at: Option<Instant>,
    /// Set after a CLOSE, EOF, error or [`Connection::close`]: `recv` then returns `Ok(None)`.
    finished: bool,
}

impl fmt::Debug for WebSocketConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketConnection")
            .field("role", &self.role)
            .field("peer", &self.peer)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl WebSocketConnection {
    pub(crate) fn new(
        ws: WebSocketStream<BoxedStream>,
        role: Role,
        peer: PeerInfo,
        options: &WebSocketOptions,
    ) -> Self {
        WebSocketConnection {
            ws,
            role,
            peer,
            keepalive_interval: options.keepalive_interval,
            dead_after: options.dead_after,
            max_frame_bytes: options.max_frame_bytes,
            last_rx: Instant::now(),
            ping_sent_at: None,
            finished: false,
        }
    }

    /// Performs the client opening handshake for `url` over an already connected `stream`,
    /// with default [`WebSocketOptions`]. This is how a simulator (e.g. turmoil) hands in its
    /// own TCP streams. The stream must already carry TLS for `wss://` URLs.
    pub async fn client_over<S>(stream: S, url: &str) -> Result<WebSocketConnection, TransportError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Self::client_over_with(stream, url, &WebSocketOptions::default()).await
    }

    /// Like [`client_over`](Self::client_over), with the given options. The handshake is
    /// bounded by [`WebSocketOptions::handshake_timeout`].
    pub async fn client_over_with<S>(
        stream: S,
        url: &str,
        options: &WebSocketOptions,
    ) -> Result<WebSocketConnection, TransportError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        parse_ws_url(url)?;
        let deadline = Instant::now() + options.handshake_timeout;
        client_handshake(Box::new(stream), url, options, deadline).await
    }

    /// Whether this is the client or the relay end.
    pub fn is_client(&self) -> bool {
        self.role == Role::Client
    }

    /// How long to wait for any sign of life after a PING: the rest of `dead_after`.
    fn grace(&self) -> Duration {
        if self.dead_after > self.keepalive_interval {
            self.dead_after - self.keepalive_interval
        } else {
            self.dead_after
        }
    }

    async fn send_ping(&mut self) -> Result<(), TransportError> {
        let now = Instant::now();
        let deadline = now + self.grace();
        match timeout_at(deadline, self.ws.send(Message::Ping(Bytes::new()))).await {
            Ok(Ok(())) => {
                self.ping_sent_at = Some(now);
                Ok(())
            }
            Ok(Err(e)) => Err(map_ws_error(e)),
            Err(_) => Err(self.dead_error()),
        }
    }

    fn dead_error(&self) -> TransportError {
        TransportError::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no answer to a keepalive PING: nothing received from the peer for {:?}",
                self.last_rx.elapsed()
            ),
        ))
    }

    /// Relay side: a frame over the protocol limit is dropped here, before it is copied, and
    /// reported as [`TransportError::Oversized`]; the connection stays usable.
    fn check_size(&self, size: usize) -> Result<(), TransportError> {
        if self.role == Role::Server && size > self.max_frame_bytes {
            return Err(TransportError::Oversized {
                size,
                limit: self.max_frame_bytes,
            });
        }
        Ok(())
    }

    fn text_of_binary(&self, data: Bytes) -> Result<String, TransportError> {
        match self.role {
            Role::Client => Err(TransportError::Protocol(
                "the relay sent a binary frame; only text frames are allowed".into(),
            )),
            Role::Server => String::from_utf8(Vec::from(data)).map_err(|_| {
                TransportError::Protocol("binary frame that is not valid UTF-8".into())
            }),
        }
    }
}

/// Maps a tungstenite error to a transport error.
pub(crate) fn map_ws_error(e: WsError) -> TransportError {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => TransportError::Closed,
        WsError::Io(e) => TransportError::Io(e),
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            TransportError::TooLarge {
                size,
                limit: max_size,
            }
        }
        WsError::WriteBufferFull(_) => TransportError::Io(io::Error::new(
            io::ErrorKind::WouldBlock,
            "WebSocket write buffer full",
        )),
        WsError::Utf8(_) => TransportError::Protocol("text frame that is not valid UTF-8".into()),
        other => TransportError::Protocol(other.to_string()),
    }
}

#[async_trait]
impl Connection for WebSocketConnection {
    async fn send(&mut self, frame: String) -> Result<(), TransportError> {
        if self.finished {
            return Err(TransportError::Closed);
        }
        self.ws
            .send(Message::text(frame))
            .await
            .map_err(map_ws_error)
    }

    async fn send_all(&mut self, frames: Vec<String>) -> Result<(), TransportError> {
        if self.finished {
            return Err(TransportError::Closed);
        }
        for frame in frames {
            self.ws
                .feed(Message::text(frame))
                .await
                .map_err(map_ws_error)?;
        }
        self.ws.flush().await.map_err(map_ws_error)
    }

    async fn send_shared(&mut self, frames: Vec<Arc<str>>) -> Result<(), TransportError> {
        if self.finished {
            return Err(TransportError::Closed);
        }
        // Every frame is buffered, then one flush writes them all: one system call for all the
        // frames of a relay's turn (see `tungstenite_config`).
        for frame in frames {
            let text = Utf8Bytes::try_from(Bytes::from_owner(SharedText(frame)))
                .map_err(|_| TransportError::Protocol("frame is not UTF-8".into()))?;
            self.ws
                .feed(Message::Text(text))
                .await
                .map_err(map_ws_error)?;
        }
        self.ws.flush().await.map_err(map_ws_error)
    }

    async fn recv(&mut self) -> Result<Option<String>, TransportError> {
        // Cancel safety: all state lives in `self`; `StreamExt::next` on a WebSocketStream is
        // cancel-safe (tungstenite keeps partial frames in its own buffer), and dropping the
        // timer loses nothing.
        loop {
            if self.finished {
                return Ok(None);
            }
            // A PING goes out after `keepalive_interval` of silence; the peer is declared dead
            // when nothing arrived for `dead_after` *and* for the grace period after that PING
            // (so a connection whose `recv` was not polled for a while is not condemned
            // without having been asked).
            let wake_at = match self.ping_sent_at {
                None => self.last_rx + self.keepalive_interval,
                Some(pinged) => (self.last_rx + self.dead_after).max(pinged + self.grace()),
            };
            tokio::select! {
                biased;
                item = self.ws.next() => {
                    self.last_rx = Instant::now();
                    self.ping_sent_at = None;
                    match item {
                        Some(Ok(Message::Text(text))) => {
                            self.check_size(text.len())?;
                            return Ok(Some(text.as_str().to_owned()));
                        }
                        Some(Ok(Message::Binary(data))) => {
                            self.check_size(data.len())?;
                            let result = self.text_of_binary(data);
                            if result.is_err() {
                                self.finished = true;
                            }
                            return result.map(Some);
                        }
                        // tungstenite queued the PONG; the next poll of the stream flushes it.
                        Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) | Some(Ok(Message::Frame(_))) => {}
                        Some(Ok(Message::Close(_))) | None => {
                            self.finished = true;
                            return Ok(None);
                        }
                        // The Python client drops TCP without a CLOSE frame: a clean end for us.
                        Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)))
                        | Some(Err(WsError::ConnectionClosed))
                        | Some(Err(WsError::AlreadyClosed)) => {
                            self.finished = true;
                            return Ok(None);
                        }
                        Some(Err(e)) => {
                            self.finished = true;
                            return Err(map_ws_error(e));
                        }
                    }
                }
                _ = sleep_until(wake_at) => {
                    if self.ping_sent_at.is_some() {
                        self.finished = true;
                        return Err(self.dead_error());
                    }
                    if let Err(e) = self.send_ping().await {
                        self.finished = true;
                        return Err(e);
                    }
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let role = self.role;
        let ws = &mut self.ws;
        let closing = async move {
            match ws.close(None).await {
                Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {}
                Err(e) => return Err(map_ws_error(e)),
            }
            if role == Role::Client {
                // RFC 6455 §7.1.1: the server closes TCP first. Waiting for that keeps the
                // TIME-WAIT state on the server, not on the client's ephemeral ports (which
                // matters for clients, such as load generators, that connect at a high rate).
                while let Some(Ok(_)) = ws.next().await {}
            }
            Ok(())
        };
        timeout(CLOSE_TIMEOUT, closing).await.unwrap_or(Ok(()))
    }

    fn kind(&self) -> &'static str {
        "websocket"
    }

    fn peer(&self) -> PeerInfo {
        self.peer.clone()
    }
}

/// Shared text as the owner of a `Bytes`, so a broadcast is not copied per connection before
/// it is framed.
struct SharedText(Arc<str>);

impl AsRef<[u8]> for SharedText {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

fn unreachable(url: &str, reason: impl Into<String>) -> TransportError {
    TransportError::Unreachable {
        url: url.to_string(),
        reason: reason.into(),
    }
}

/// Opens a client connection: a stream from `dialer` (+ TLS for `wss://`) and the WebSocket
/// handshake.
pub(crate) async fn connect(
    url: &str,
    options: &WebSocketOptions,
    dialer: &dyn Dialer,
    #[cfg(feature = "tls")] tls: &super::ClientTls,
) -> Result<WebSocketConnection, TransportError> {
    let parsed = parse_ws_url(url)?;
    #[cfg(not(feature = "tls"))]
    if parsed.secure {
        return Err(TransportError::BadUrl {
            url: url.to_string(),
            reason: "wss:// needs the `tls` feature of wormhole-transports".into(),
        });
    }
    // Check the request can be built before touching the network.
    url.into_client_request()
        .map_err(|e| TransportError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    let deadline = Instant::now() + options.handshake_timeout;
    // The dialer sets TCP_NODELAY where it applies (frames are small and latency-bound).
    let tcp = match timeout_at(deadline, dialer.dial(parsed.host.as_str(), parsed.port)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(unreachable(url, e.to_string())),
        Err(_) => return Err(unreachable(url, "timed out connecting")),
    };
    let stream: BoxedStream = if parsed.secure {
        #[cfg(feature = "tls")]
        {
            match timeout_at(deadline, tls.connect(tcp, &parsed.host)).await {
                Ok(Ok(tls)) => Box::new(tls),
                Ok(Err(e)) => return Err(unreachable(url, format!("TLS: {e}"))),
                Err(_) => return Err(unreachable(url, "timed out in the TLS handshake")),
            }
        }
        #[cfg(not(feature = "tls"))]
        {
            tcp
        }
    } else {
        tcp
    };
    client_handshake(stream, url, options, deadline).await
}

async fn client_handshake(
    stream: BoxedStream,
    url: &str,
    options: &WebSocketOptions,
    deadline: Instant,
) -> Result<WebSocketConnection, TransportError> {
    let request = url
        .into_client_request()
        .map_err(|e| TransportError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    let handshake = tokio_tungstenite::client_async_with_config(
        request,
        stream,
        Some(options.tungstenite_config()),
    );
    match timeout_at(deadline, handshake).await {
        Ok(Ok((ws, _response))) => Ok(WebSocketConnection::new(
            ws,
            Role::Client,
            PeerInfo::default(),
            options,
        )),
        Ok(Err(WsError::Http(response))) => Err(unreachable(
            url,
            format!(
                "the server answered HTTP {} instead of upgrading to WebSocket",
                response.status()
            ),
        )),
        Ok(Err(e)) => Err(unreachable(url, format!("WebSocket handshake failed: {e}"))),
        Err(_) => Err(unreachable(url, "timed out in the WebSocket handshake")),
    }
}
