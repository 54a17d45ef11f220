//! HTTP polling: `http://` and `https://` relay URLs, for networks where WebSockets are
//! blocked. Both sides run on hyper 1 (HTTP/1.1) over any byte stream.
//!
//! The same JSON frames as on the WebSocket travel in plain requests: a client opens a
//! *session* (the HTTP stand-in for one WebSocket connection), posts frames to it and fetches
//! the frames the relay has for it after a cursor, with an optional long poll. The endpoints,
//! with examples, are in the repository's `docs/http-polling.md`; in short, under the relay
//! URL's path (`/v1`):
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/http/session` | `{"session": ID, "cursor": C, "frames": [welcome]}` |
//! | `POST /v1/http/session/ID/send` `{"seq": S, "after": A, "frames": [..]}` | `{"cursor": C, "frames": [..]}`: every frame after `A`, including the replies to these |
//! | `GET /v1/http/session/ID/events?after=A&wait=SECS` | `{"cursor": C, "frames": [..]}`; waits up to `wait` s for a frame |
//! | `DELETE /v1/http/session/ID` | `{"closed": true}` |
//!
//! Frames a session is sent are numbered from 1; an answer's `frames` are numbered
//! `C - len + 1 ..= C`. A request's `after` acknowledges every frame up to it, which the relay
//! then forgets; the others stay, so a request retried after a lost answer loses nothing. A
//! `send` carries a client-numbered `seq` (1, 2, 3, …): a retried `send` (the same `seq` again)
//! is answered without being applied twice.
//!
//! * Client: [`HttpTransport`] (hyper 1, streams from a [`Dialer`](crate::net::Dialer), TLS
//!   for `https://`) implements [`Transport`](crate::Transport); its connections run their
//!   poller in a task of their own, so a long poll is in flight while frames are sent. With
//!   feature `surf`, `SurfTransport` does the same on surf (plain `http://`, its own sockets).
//! * Relay: [`HttpPolling::new`] gives an [`HttpHandler`](crate::websocket::HttpHandler) for
//!   the WebSocket listener's port and a [`Listener`](crate::Listener) that yields each new
//!   session as a [`Connection`](crate::Connection). The handler serves hyper over whatever
//!   stream the listener routed to it (TCP, TLS, a simulator's), never touching sockets itself.
//!   A session [wants receipts](crate::Connection::wants_receipts): the relay runner tells it
//!   when the frames of a `send` were handled, so the answer carries their replies.
//!
//! * Several relay processes: with [`HttpServerOptions::peers`], a session belongs to the
//!   process that opened it (its [`Instance`] tag is part of the session id) and the others
//!   forward its requests there through [`SessionPeers`]; see [`peers`].
//!
//! Frames are JSON text: each travels inside a JSON answer, so the relay side refuses to send
//! a frame that is not JSON, and a client's frames must be JSON for its `send` to be accepted.

mod api;
mod client;
mod hyper_client;
pub mod peers;
mod server;
mod session;
#[cfg(feature = "surf")]
mod surf;
mod wire;

pub use self::client::{HttpClientOptions, HttpConnection, HttpTransport};
pub use self::peers::{
    ForwardError, ForwardKind, ForwardedRequest, ForwardedResponse, Instance, MemoryPeerBus,
    MemorySessionPeers, SessionPeers,
};
pub use self::server::{
    serve_metrics, HttpMetrics, HttpPolling, HttpServerOptions, SessionListener,
};
#[cfg(feature = "surf")]
pub use self::surf::SurfTransport;

/// The path of the HTTP-polling API under a relay URL's path (`/v1` + this).
pub const API_PREFIX: &str = "/http";

/// The longest long poll the relay holds (a larger `wait` is cut to this).
pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
