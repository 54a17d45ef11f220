//! Frame transports for `wormhole`.
//!
//! This crate moves **text frames** (one JSON message each) between a client and a rendezvous
//! relay. It knows nothing of wormhole semantics: the protocol lives in the `wormhole` crate,
//! which drives any [`Transport`] (client side) or [`Listener`] (relay side) given here or
//! written by a library author.
//!
//! Transports included:
//! - [`memory`]: in-process channels addressed as `mem://NAME`, for tests, demos and embedding.
//! - [`websocket`]: `ws://` / `wss://` relays, wire-compatible with the Python client and server.
//! - `http` (feature `http`): `http://` / `https://` relays by HTTP polling, on hyper 1.
//!
//! # Writing a transport
//! Implement [`Transport`] to open a [`Connection`] from a URL, and [`Listener`] to accept them
//! on the relay side. A connection is either *push* (frames arrive on their own, like a
//! WebSocket) or *pull* (frames arrive only after the client asked for them, like HTTP
//! polling); the client core uses [`Delivery`] to decide whether to schedule polls.
//!
//! # Push and pull
//! Neither kind may block its user: [`Connection::poll`] only *asks* for frames (a pull
//! connection starts a fetch, or lets one already in flight run on) and returns at once; the
//! frames it brings are yielded by [`Connection::recv`] as they arrive, like a push
//! connection's. A pull connection therefore runs its fetches in a task of its own, so a long
//! poll is in flight while [`Connection::send`] still goes out.

#![warn(missing_docs)]

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;

#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "memory")]
pub mod memory;
#[cfg(feature = "websocket")]
pub mod net;
#[cfg(feature = "websocket")]
pub mod websocket;

/// Errors raised by transports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The URL could not be understood or has a scheme this transport does not serve.
    #[error("unsupported relay URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing answered at the given address.
    #[error("cannot reach the relay at {url}: {reason}")]
    Unreachable {
        /// The URL that was tried.
        url: String,
        /// Why the connection failed.
        reason: String,
    },
    /// The connection was closed by the other end.
    #[error("connection closed")]
    Closed,
    /// A frame was larger than the transport accepts.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the refused frame.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// Relay side: a frame larger than the protocol's limit (but within the transport's hard
    /// limit) arrived and was dropped. Unlike every other error, the connection stays usable:
    /// the relay answers with an `error` frame and goes on reading.
    #[error("frame of {size} bytes dropped: over the limit of {limit} bytes")]
    Oversized {
        /// Size of the dropped frame.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The peer sent something that is not a text frame of this protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// An I/O error from the underlying stream.
    #[error("transport I/O error")]
    Io(#[from] std::io::Error),
    /// A listener name or address is already in use.
    #[error("address {0} is already in use")]
    AddrInUse(String),
}

/// How frames reach a client over a [`Connection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Frames arrive by themselves (WebSocket, memory).
    Push,
    /// Frames must be fetched with [`Connection::poll`] (HTTP polling).
    Pull,
}

/// Where a connection comes from, as the relay sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// The network address of the peer, if the transport has one.
    pub addr: Option<SocketAddr>,
}

/// One bidirectional stream of text frames.
///
/// [`recv`](Connection::recv) must be cancel-safe: drivers call it inside `select!` and drop the
/// future when another branch wins. Dropping a connection closes it.
#[async_trait]
pub trait Connection: Send + fmt::Debug + 'static {
    /// Sends one text frame.
    async fn send(&mut self, frame: String) -> Result<(), TransportError>;

    /// Sends several text frames in order. Transports that can (WebSocket) write them with a
    /// single flush, which saves system calls and packets when a relay answers a command with
    /// an `ack` and a reply.
    async fn send_all(&mut self, frames: Vec<String>) -> Result<(), TransportError> {
        for frame in frames {
            self.send(frame).await?;
        }
        Ok(())
    }

    /// Sends frames that may be shared with other connections (a relay serializes each
    /// broadcast once), in order, like [`send_all`](Connection::send_all). The default copies
    /// them into `String`s; transports that can send from shared memory override it.
    async fn send_shared(&mut self, frames: Vec<Arc<str>>) -> Result<(), TransportError> {
        self.send_all(frames.iter().map(|f| f.to_string()).collect())
            .await
    }

    /// Waits for the next text frame. `Ok(None)` means the other end closed the connection
    /// cleanly. Cancel-safe.
    async fn recv(&mut self) -> Result<Option<String>, TransportError>;

    /// For [`Delivery::Pull`] connections: asks the other end for frames that are waiting, so
    /// that [`recv`](Connection::recv) yields them when they come. Returns without waiting for
    /// them: a fetch already in flight (a long poll) counts, and a fetch that fails shows as an
    /// error of `recv`. Push connections do nothing.
    async fn poll(&mut self) -> Result<(), TransportError> {
        Ok(())
    }

    /// Closes the connection. Further sends fail.
    async fn close(&mut self) -> Result<(), TransportError>;

    /// Whether frames arrive by themselves or must be polled.
    fn delivery(&self) -> Delivery {
        Delivery::Push
    }

    /// Who is at the other end (meaningful on the relay side).
    fn peer(&self) -> PeerInfo {
        PeerInfo::default()
    }

    /// A short name of the transport (`"websocket"`, `"http"`, `"memory"`), for metrics.
    fn kind(&self) -> &'static str {
        "other"
    }

    /// Relay side: whether this connection wants [`handled`](Connection::handled) reports.
    /// Connections that answer each client request with what it caused (HTTP polling) do.
    fn wants_receipts(&self) -> bool {
        false
    }

    /// Relay side, for connections that [want receipts](Connection::wants_receipts): the relay
    /// has handled the first `count` frames this connection yielded, and every frame they
    /// caused for this connection was passed to [`send`](Connection::send) or
    /// [`send_all`](Connection::send_all) before this call.
    fn handled(&mut self, count: u64) {
        let _ = count;
    }
}

/// The client side of a transport: opens connections to a relay URL.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// Whether this transport serves URLs of the given scheme (e.g. `"mem"`, `"ws"`).
    fn supports(&self, scheme: &str) -> bool;

    /// Opens a connection to the relay at `url`.
    async fn connect(&self, url: &str) -> Result<Box<dyn Connection>, TransportError>;
}

/// The relay side of a transport: yields connections from clients.
#[async_trait]
pub trait Listener: Send + fmt::Debug + 'static {
    /// Waits for the next client connection. An error ends the listener.
    async fn accept(&mut self) -> Result<Box<dyn Connection>, TransportError>;

    /// The URL clients use to reach this listener.
    fn url(&self) -> String;
}

/// Splits a relay URL into its scheme and the rest (`"ws://h:1/v1"` → `("ws", "h:1/v1")`).
///
/// ```
/// assert_eq!(wormhole_transports::split_scheme("mem://demo").unwrap(), ("mem", "demo"));
/// assert!(wormhole_transports::split_scheme("no-scheme").is_err());
/// ```
pub fn split_scheme(url: &str) -> Result<(&str, &str), TransportError> {
    match url.split_once("://") {
        Some((scheme, rest)) if !scheme.is_empty() => Ok((scheme, rest)),
        _ => Err(TransportError::BadUrl {
            url: url.to_string(),
            reason: "expected SCHEME://ADDRESS".into(),
        }),
    }
}
