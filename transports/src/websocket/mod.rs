//! WebSocket transport: `ws://` and `wss://` relay URLs, wire-compatible with the Python
//! magic-wormhole client 0.24 and mailbox server 0.8.
//!
//! * Client: [`WebSocketTransport`] implements [`Transport`]. For a custom
//!   byte stream (a simulator's TCP, a proxy tunnel) use [`WebSocketConnection::client_over`].
//! * Relay: [`WebSocketListener`] implements [`Listener`]. For a custom
//!   stream use [`accept_stream`], which reads the HTTP request head itself and either upgrades
//!   to WebSocket or hands the request back as [`Accepted::Http`].
//!
//! Every frame is one TEXT frame holding one JSON message. The client refuses BINARY frames
//! (as the Python client does); the relay side accepts BINARY frames holding UTF-8 (as the
//! Python server does).
//!
//! # Keepalive
//! [`WebSocketConnection::recv`](crate::Connection::recv) sends a WebSocket PING when nothing
//! arrived for [`WebSocketOptions::keepalive_interval`] and fails with an I/O error of kind
//! `TimedOut` when nothing at all (not even a PONG) arrived for
//! [`WebSocketOptions::dead_after`] and for the rest of that period after the PING went out
//! (so a connection whose `recv` was not polled for a while is pinged before it is declared
//! dead). Incoming PINGs are answered automatically. All of this happens only while `recv` is
//! being awaited, so drivers should always have a `recv` pending.
//!
//! # Frame sizes
//! [`WebSocketOptions::max_frame_bytes`] is the *protocol* limit. The transport itself lets
//! frames up to [`WebSocketOptions::hard_frame_limit`] (4× that) through, so that the relay
//! core can answer an oversized frame with an `error` message and keep the connection
//! usable; only frames above the hard limit fail the connection with
//! [`TransportError::TooLarge`]. On the relay side, a frame above `max_frame_bytes` is
//! dropped as soon as it is read (not copied) and `recv` returns
//! [`TransportError::Oversized`], after which the connection stays usable.
//!
//! # Memory
//! An idle relay-side connection holds the socket, one read buffer of
//! [`WebSocketOptions::read_buffer_size`] bytes and a few small bookkeeping allocations; the
//! transport spawns no task per established connection. Buffers grown for a large frame are
//! kept by tungstenite until the connection closes.

mod conn;
mod http;
mod server;
mod url;

#[cfg(feature = "tls")]
pub mod tls;

use std::time::Duration;

pub use self::conn::{AsyncStream, BoxedStream, WebSocketConnection};
pub use self::http::{HttpRequest, HttpRoute, PrefixedStream, RequestHead};
pub use self::server::{
    accept_stream, Accepted, DefaultHttpHandler, HttpHandler, WebSocketListener,
};
#[cfg(feature = "tls")]
pub use self::tls::{ClientTls, ServerTls, TlsError};
pub use self::url::{parse_ws_url, WsUrl};

use std::sync::Arc;

use async_trait::async_trait;

use crate::net::{Dialer, TcpDialer};
#[allow(unused_imports)] // for intra-doc links
use crate::Listener;
use crate::{Connection, Transport, TransportError};

/// The `Server:` header sent in the `101 Switching Protocols` answer by default.
pub const DEFAULT_SERVER_HEADER: &str = concat!("wormhole-relay ", env!("CARGO_PKG_VERSION"));

/// The body of the answer to a plain `GET /`, as the Python mailbox server sends it.
pub const BANNER: &str = "Wormhole Relay\n";

/// Bytes of frames fed to a WebSocket that are buffered until a flush.
const WRITE_BUFFER: usize = 64 * 1024;

/// The largest HTTP request head (request line and headers) the relay reads.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Settings of WebSocket connections, for both the client and the relay side.
///
/// [`Default`] gives client settings (those of the Python client); [`WebSocketOptions::relay`]
/// gives relay settings (those of the Python server, with small buffers). Fields are public;
/// the `with_*` methods allow chaining.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketOptions {
    /// Send a WebSocket PING after this long without receiving anything.
    /// Default 30 s (client), 60 s (relay).
    pub keepalive_interval: Duration,
    /// Fail `recv` after this long without receiving anything, not even a PONG.
    /// Default 60 s (client), 600 s (relay).
    pub dead_after: Duration,
    /// The protocol's frame size limit, 1 MiB by default. See the module docs: the transport
    /// accepts up to [`hard_frame_limit`](Self::hard_frame_limit) and leaves this check to
    /// the relay core.
    pub max_frame_bytes: usize,
    /// Capacity of tungstenite's read buffer, allocated once per connection.
    /// Default 4096 (client), 1024 (relay).
    pub read_buffer_size: usize,
    /// Limit for connecting and for the opening handshake (including reading the request head
    /// on the relay side, against slow clients). Default 10 s.
    pub handshake_timeout: Duration,
    /// Relay side: take the peer address from the `X-Real-IP` and `X-Real-Port` request
    /// headers (set by a reverse proxy) instead of the TCP peer. Default `false`.
    pub trust_proxy_headers: bool,
    /// Relay side: value of the `Server:` header. Default [`DEFAULT_SERVER_HEADER`].
    pub server_header: String,
}

impl Default for WebSocketOptions {
    fn default() -> Self {
        WebSocketOptions {
            keepalive_interval: Duration::from_secs(30),
            dead_after: Duration::from_secs(60),
            max_frame_bytes: 1 << 20,
            read_buffer_size: 4096,
            handshake_timeout: Duration::from_secs(10),
            trust_proxy_headers: false,
            server_header: DEFAULT_SERVER_HEADER.to_string(),
        }
    }
}

impl WebSocketOptions {
    /// Settings for the relay side: PING after 60 s idle, give up after 600 s (as the Python
    /// mailbox server), and a 1 KiB read buffer to keep idle connections cheap.
    pub fn relay() -> Self {
        WebSocketOptions {
            keepalive_interval: Duration::from_secs(60),
            dead_after: Duration::from_secs(600),
            read_buffer_size: 1024,
            ..WebSocketOptions::default()
        }
    }

    /// Sets [`keepalive_interval`](Self::keepalive_interval).
    pub fn with_keepalive_interval(mut self, interval: Duration) -> Self {
        self.keepalive_interval = interval;
        self
    }

    /// Sets [`dead_after`](Self::dead_after).
    pub fn with_dead_after(mut self, dead_after: Duration) -> Self {
        self.dead_after = dead_after;
        self
    }

    /// Sets [`max_frame_bytes`](Self::max_frame_bytes).
    pub fn with_max_frame_bytes(mut self, bytes: usize) -> Self {
        self.max_frame_bytes = bytes;
        self
    }

    /// Sets [`read_buffer_size`](Self::read_buffer_size).
    pub fn with_read_buffer_size(mut self, bytes: usize) -> Self {
        self.read_buffer_size = bytes;
        self
    }

    /// Sets [`handshake_timeout`](Self::handshake_timeout).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets [`trust_proxy_headers`](Self::trust_proxy_headers).
    pub fn with_trust_proxy_headers(mut self, trust: bool) -> Self {
        self.trust_proxy_headers = trust;
        self
    }

    /// Sets [`server_header`](Self::server_header).
    pub fn with_server_header(mut self, value: impl Into<String>) -> Self {
        self.server_header = value.into();
        self
    }

    /// The size above which a frame fails the connection: 4 × `max_frame_bytes`.
    pub fn hard_frame_limit(&self) -> usize {
        self.max_frame_bytes.saturating_mul(4).max(1024)
    }

    /// The tungstenite configuration these options stand for.
    pub(crate) fn tungstenite_config(
        &self,
    ) -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
        let hard = self.hard_frame_limit();
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(self.read_buffer_size.max(64))
            // Frames fed before a flush are written together, in one system call (a relay
            // answers one turn's frames so); `send` flushes every frame at once. The buffer
            // is the same either way: tungstenite keeps one `Vec` per connection that grows
            // to the largest burst written.
            .write_buffer_size(WRITE_BUFFER)
            // Bounded, yet room for one frame of the hard limit (must exceed write_buffer_size).
            .max_write_buffer_size(hard.saturating_add(2 * WRITE_BUFFER))
            .max_message_size(Some(hard))
            .max_frame_size(Some(hard))
    }
}

/// Opens WebSocket connections to `ws://` (and, with the `tls` feature, `wss://`) relay URLs.
///
/// `wss://` trusts Mozilla's root certificates, plus any extra CA given with
/// [`with_tls`](WebSocketTransport::with_tls). Streams come from a [`Dialer`]: real TCP
/// ([`TcpDialer`]) unless another is given with [`with_dialer`](WebSocketTransport::with_dialer).
#[derive(Debug, Clone)]
pub struct WebSocketTransport {
    options: WebSocketOptions,
    dialer: Arc<dyn Dialer>,
    #[cfg(feature = "tls")]
    tls: ClientTls,
}

impl Default for WebSocketTransport {
    fn default() -> Self {
        WebSocketTransport::new(WebSocketOptions::default())
    }
}

impl WebSocketTransport {
    /// A transport using the given options for every connection.
    pub fn new(options: WebSocketOptions) -> Self {
        WebSocketTransport {
            options,
            dialer: Arc::new(TcpDialer),
            #[cfg(feature = "tls")]
            tls: ClientTls::default(),
        }
    }

    /// Opens streams with `dialer` instead of real TCP (e.g. a simulator's network, or a
    /// proxy). The connect, TLS and WebSocket handshakes keep their deadline
    /// ([`WebSocketOptions::handshake_timeout`]).
    pub fn with_dialer(mut self, dialer: Arc<dyn Dialer>) -> Self {
        self.dialer = dialer;
        self
    }

    /// Uses this TLS client configuration for `wss://` (e.g. one that trusts a private CA:
    /// [`ClientTls::with_extra_ca_file`]).
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, tls: ClientTls) -> Self {
        self.tls = tls;
        self
    }

    /// The TLS client configuration for `wss://`.
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> &ClientTls {
        &self.tls
    }

    /// The options in force.
    pub fn options(&self) -> &WebSocketOptions {
        &self.options
    }

    /// Like [`Transport::connect`], but returns the concrete connection type.
    pub async fn connect_ws(&self, url: &str) -> Result<WebSocketConnection, TransportError> {
        conn::connect(
            url,
            &self.options,
            &*self.dialer,
            #[cfg(feature = "tls")]
            &self.tls,
        )
        .await
    }
}

#[async_trait]
impl Transport for WebSocketTransport {
    fn supports(&self, scheme: &str) -> bool {
        scheme.eq_ignore_ascii_case("ws")
            || (cfg!(feature = "tls") && scheme.eq_ignore_ascii_case("wss"))
    }

    async fn connect(&self, url: &str) -> Result<Box<dyn Connection>, TransportError> {
        Ok(Box::new(self.connect_ws(url).await?))
    }
}

/// Raises this process's soft limit on open files (`RLIMIT_NOFILE`) to the hard limit, so a
/// relay can hold many connections. Returns the new `(soft, hard)` limits.
///
/// On platforms without `setrlimit` this returns an `Unsupported` error.
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid, writable rlimit struct for the duration of the call.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: `wanted` is a valid rlimit struct for the duration of the call.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
                lim = wanted;
            } else {
                // macOS refuses RLIM_INFINITY for the soft limit; fall back to a large value.
                let fallback = libc::rlimit {
                    rlim_cur: lim.rlim_max.min(1 << 20),
                    rlim_max: lim.rlim_max,
                };
                // SAFETY: as above.
                if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &fallback) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                lim = fallback;
            }
        }
        #[allow(clippy::useless_conversion)]
        Ok((u64::from(lim.rlim_cur), u64::from(lim.rlim_max)))
    }
    #[cfg(not(unix))]
    {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "setrlimit is not available on this platform",
        ))
    }
}
