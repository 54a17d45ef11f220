//! The relay side: accepting streams, routing HTTP requests, the WebSocket server handshake,
//! and the TCP listener.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout_at;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::conn::{BoxedStream, WebSocketConnection};
use super::http::{
    read_head, response_bytes, write_and_close, HeadError, HttpRequest, HttpRoute, RequestHead,
};
use super::WebSocketOptions;
use crate::net::Acceptor;
use crate::{Connection, Listener, PeerInfo, TransportError};

/// Listen backlog: large, so that bursts of connections are queued rather than refused.
const BACKLOG: u32 = 4096;

/// Established connections waiting for [`Listener::accept`].
const ACCEPT_QUEUE: usize = 256;

/// What [`accept_stream`] made of an incoming stream.
#[derive(Debug)]
pub enum Accepted {
    /// A WebSocket connection whose handshake is complete (boxed: it is the large variant,
    /// and relays keep connections as `Box<dyn Connection>` anyway).
    WebSocket(Box<WebSocketConnection>),
    /// Any other HTTP request; see [`HttpRoute`] (HTTP polling plugs in here later).
    Http(HttpRequest),
}

/// Reads the HTTP request head from `stream` (bounded in size, and in time by
/// [`WebSocketOptions::handshake_timeout`]) and routes it:
///
/// * `GET /v1` with `Upgrade: websocket` → the server handshake is done here (response header
///   `Server: <options.server_header>`, no subprotocol, no extensions) and the result is
///   [`Accepted::WebSocket`];
/// * any other request → [`Accepted::Http`], for the caller to answer (e.g. with
///   [`HttpRequest::respond_default`]).
///
/// `peer` is the TCP peer; with [`WebSocketOptions::trust_proxy_headers`] the `X-Real-IP` and
/// `X-Real-Port` headers replace it when both are present and valid. Bad requests are
/// answered (400 / 404 / 426 / 431) before the error is returned.
pub async fn accept_stream<S>(
    stream: S,
    peer: Option<SocketAddr>,
    options: &WebSocketOptions,
) -> Result<Accepted, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let deadline = Instant::now() + options.handshake_timeout;
    let mut stream: BoxedStream = Box::new(stream);
    let (head, buffered, head_len) = match timeout_at(deadline, read_head(&mut stream)).await {
        Ok(Ok(parts)) => parts,
        Ok(Err(HeadError::Io(e))) => return Err(TransportError::Io(e)),
        Ok(Err(HeadError::TooLarge)) => {
            let bytes = response_bytes(
                &options.server_header,
                431,
                "Request Header Fields Too Large",
                &[],
                "Request head too large\n",
                false,
            );
            let _ = write_and_close(&mut stream, &bytes).await;
            return Err(TransportError::Protocol(
                "HTTP request head too large".into(),
            ));
        }
        Ok(Err(HeadError::Malformed(why))) => {
            let bytes = response_bytes(
                &options.server_header,
                400,
                "Bad Request",
                &[],
                "Bad Request\n",
                false,
            );
            let _ = write_and_close(&mut stream, &bytes).await;
            return Err(TransportError::Protocol(format!(
                "malformed HTTP request: {why}"
            )));
        }
        Err(_) => {
            return Err(TransportError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "timed out reading the HTTP request head",
            )))
        }
    };
    let peer = PeerInfo {
        addr: peer_addr(&head, peer, options.trust_proxy_headers),
    };
    if head.route() != HttpRoute::WebSocket {
        return Ok(Accepted::Http(HttpRequest {
            head,
            buffered,
            head_len,
            stream,
            peer,
            server_header: options.server_header.clone(),
        }));
    }

    // The WebSocket opening handshake, server side (RFC 6455 §4.2).
    let fail = |status: u16, reason: &'static str, why: &'static str| (status, reason, why);
    let check = if !head.header_has_token("connection", "upgrade") {
        Err(fail(400, "Bad Request", "missing Connection: Upgrade"))
    } else if head.header("sec-websocket-version").map(str::trim) != Some("13") {
        Err(fail(
            426,
            "Upgrade Required",
            "unsupported Sec-WebSocket-Version",
        ))
    } else {
        match head.header("sec-websocket-key").map(str::trim) {
            Some(key) if !key.is_empty() => Ok(derive_accept_key(key.as_bytes())),
            _ => Err(fail(400, "Bad Request", "missing Sec-WebSocket-Key")),
        }
    };
    let accept_key = match check {
        Ok(key) => key,
        Err((status, reason, why)) => {
            let bytes = response_bytes(
                &options.server_header,
                status,
                reason,
                &[("Sec-WebSocket-Version", "13")],
                "Bad WebSocket handshake\n",
                false,
            );
            let _ = write_and_close(&mut stream, &bytes).await;
            return Err(TransportError::Protocol(format!(
                "bad WebSocket handshake: {why}"
            )));
        }
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nServer: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept_key}\r\n\r\n",
        options.server_header
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.flush().await
    };
    match timeout_at(deadline, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(TransportError::Io(e)),
        Err(_) => {
            return Err(TransportError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "timed out sending the WebSocket handshake answer",
            )))
        }
    }
    // A client may send frames right behind its request: hand them over to tungstenite.
    let leftover = match buffered.get(head_len..) {
        Some(rest) if !rest.is_empty() => rest.to_vec(),
        _ => Vec::new(),
    };
    drop(buffered);
    let ws = WebSocketStream::from_partially_read(
        stream,
        leftover,
        Role::Server,
        Some(options.tungstenite_config()),
    )
    .await;
    Ok(Accepted::WebSocket(Box::new(WebSocketConnection::new(
        ws,
        Role::Server,
        peer,
        options,
    ))))
}

/// The peer address: the `X-Real-IP`/`X-Real-Port` headers when trusted and valid, else `tcp`.
fn peer_addr(head: &RequestHead, tcp: Option<SocketAddr>, trust_proxy: bool) -> Option<SocketAddr> {
    if trust_proxy {
        let ip = head
            .header("x-real-ip")
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        let port = head
            .header("x-real-port")
            .and_then(|v| v.trim().parse::<u16>().ok());
        match (ip, port) {
            (Some(ip), Some(port)) => return Some(SocketAddr::new(ip, port)),
            _ => tracing::debug!(
                ?tcp,
                "missing or malformed X-Real-IP/X-Real-Port; using the TCP peer"
            ),
        }
    }
    tcp
}

/// Answers the non-WebSocket HTTP requests arriving on a [`WebSocketListener`]'s port.
///
/// This is where HTTP polling plugs in later: a handler can serve its own routes from
/// [`HttpRequest::into_stream`] (which replays the already-read head) and leave everything
/// else to [`HttpRequest::respond_default`].
#[async_trait]
pub trait HttpHandler: Send + Sync + 'static {
    /// Handles one request; the connection is the handler's to answer and close.
    async fn handle(&self, request: HttpRequest) -> Result<(), TransportError>;
}

/// The default [`HttpHandler`]: the banner on `GET /`, 404 / 426 / 400 otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultHttpHandler;

#[async_trait]
impl HttpHandler for DefaultHttpHandler {
    async fn handle(&self, request: HttpRequest) -> Result<(), TransportError> {
        request.respond_default().await
    }
}

/// Accepts WebSocket connections on a TCP port (the relay side).
///
/// Handshakes run in their own short-lived tasks (bounded by
/// [`WebSocketOptions::handshake_timeout`]), so slow clients do not hold others up; a failed
/// handshake is logged and dropped. [`accept`](Listener::accept) yields only connections
/// whose handshake is complete. Dropping the listener stops accepting.
#[derive(Debug)]
pub struct WebSocketListener {
    local_addr: SocketAddr,
    rx: mpsc::Receiver<Box<WebSocketConnection>>,
    task: JoinHandle<()>,
    secure: bool,
}

/// The server TLS of a listener, if any (a type that cannot exist without the `tls` feature).
#[cfg(feature = "tls")]
type MaybeTls = Option<super::ServerTls>;
#[cfg(not(feature = "tls"))]
type MaybeTls = Option<std::convert::Infallible>;

impl Drop for WebSocketListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WebSocketListener {
    /// Binds `addr` (with `SO_REUSEADDR` and a listen backlog of 4096) and starts accepting.
    /// Must be called within a tokio runtime.
    pub fn bind(addr: SocketAddr, options: WebSocketOptions) -> Result<Self, TransportError> {
        Self::bind_with_handler(addr, options, Arc::new(DefaultHttpHandler))
    }

    /// Like [`bind`](Self::bind), with a custom handler for non-WebSocket HTTP requests.
    pub fn bind_with_handler(
        addr: SocketAddr,
        options: WebSocketOptions,
        http: Arc<dyn HttpHandler>,
    ) -> Result<Self, TransportError> {
        Self::bind_maybe_tls(addr, options, http, None)
    }

    /// Like [`bind_with_handler`](Self::bind_with_handler), serving TLS: every accepted TCP
    /// stream goes through the TLS server handshake (bounded by
    /// [`WebSocketOptions::handshake_timeout`]) before its HTTP request is read, so this one
    /// port serves `wss://` and, through `http`, `https://`. [`url`](Listener::url) then
    /// starts with `wss://`.
    #[cfg(feature = "tls")]
    pub fn bind_with(
        addr: SocketAddr,
        options: WebSocketOptions,
        http: Arc<dyn HttpHandler>,
        tls: super::ServerTls,
    ) -> Result<Self, TransportError> {
        Self::bind_maybe_tls(addr, options, http, Some(tls))
    }

    fn bind_maybe_tls(
        addr: SocketAddr,
        options: WebSocketOptions,
        http: Arc<dyn HttpHandler>,
        tls: MaybeTls,
    ) -> Result<Self, TransportError> {
        require_runtime()?;
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr).map_err(|e| match e.kind() {
            io::ErrorKind::AddrInUse => TransportError::AddrInUse(addr.to_string()),
            _ => TransportError::Io(e),
        })?;
        let listener = socket.listen(BACKLOG)?;
        Self::start(listener, options, http, tls)
    }

    /// Accepts on an already bound standard-library listener. Must be called within a tokio
    /// runtime.
    pub fn from_std(
        listener: std::net::TcpListener,
        options: WebSocketOptions,
    ) -> Result<Self, TransportError> {
        require_runtime()?;
        listener.set_nonblocking(true)?;
        Self::from_tokio(TcpListener::from_std(listener)?, options)
    }

    /// Accepts on an already bound tokio listener. Must be called within a tokio runtime.
    pub fn from_tokio(
        listener: TcpListener,
        options: WebSocketOptions,
    ) -> Result<Self, TransportError> {
        Self::from_tokio_with_handler(listener, options, Arc::new(DefaultHttpHandler))
    }

    /// Like [`from_tokio`](Self::from_tokio), with a custom handler for non-WebSocket HTTP
    /// requests.
    pub fn from_tokio_with_handler(
        listener: TcpListener,
        options: WebSocketOptions,
        http: Arc<dyn HttpHandler>,
    ) -> Result<Self, TransportError> {
        Self::start(listener, options, http, None)
    }

    /// Like [`from_tokio_with_handler`](Self::from_tokio_with_handler), serving TLS as
    /// [`bind_with`](Self::bind_with) does.
    #[cfg(feature = "tls")]
    pub fn from_tokio_with(
        listener: TcpListener,
        options: WebSocketOptions,
        http: Arc<dyn HttpHandler>,
        tls: super::ServerTls,
    ) -> Result<Self, TransportError> {
        Self::start(listener, options, http, Some(tls))
    }

    /// Accepts on any [`Acceptor`] (e.g. a simulator's TCP listener), with a custom handler
    /// for non-WebSocket HTTP requests. Must be called within a tokio runtime.
    pub fn from_acceptor(
        acceptor: Box<dyn Acceptor>,
        options: WebSocketOptions,
        http: Arc<dyn HttpHandler>,
    ) -> Result<Self, TransportError> {
        Self::start(acceptor, options, http, None)
    }

    fn start<A: Acceptor>(
        listener: A,
        options: WebSocketOptions,
        http: Arc<dyn HttpHandler>,
        tls: MaybeTls,
    ) -> Result<Self, TransportError> {
        require_runtime()?;
        let local_addr = Acceptor::local_addr(&listener)?;
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        let secure = tls.is_some();
        let task = tokio::spawn(accept_loop(listener, Arc::new(options), http, tls, tx));
        Ok(WebSocketListener {
            local_addr,
            rx,
            task,
            secure,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Like [`Listener::accept`], but returns the concrete connection type.
    pub async fn accept_ws(&mut self) -> Result<Box<WebSocketConnection>, TransportError> {
        self.rx.recv().await.ok_or(TransportError::Closed)
    }
}

fn require_runtime() -> Result<(), TransportError> {
    tokio::runtime::Handle::try_current()
        .map(|_| ())
        .map_err(|e| TransportError::Io(io::Error::other(e)))
}

async fn accept_loop<A: Acceptor>(
    mut listener: A,
    options: Arc<WebSocketOptions>,
    http: Arc<dyn HttpHandler>,
    tls: MaybeTls,
    tx: mpsc::Sender<Box<WebSocketConnection>>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = tx.closed() => return,
            r = listener.accept() => r,
        };
        match accepted {
            // The acceptor sets TCP_NODELAY where it applies.
            Ok((tcp, peer)) => {
                let options = Arc::clone(&options);
                let http = Arc::clone(&http);
                let tx = tx.clone();
                match &tls {
                    None => {
                        tokio::spawn(serve_stream(tcp, peer, options, http, tx));
                    }
                    #[cfg(feature = "tls")]
                    Some(tls) => {
                        let tls = tls.clone();
                        tokio::spawn(async move {
                            let handshake = options.handshake_timeout;
                            match tokio::time::timeout(handshake, tls.accept(tcp)).await {
                                Ok(Ok(stream)) => {
                                    serve_stream(stream, peer, options, http, tx).await
                                }
                                Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                        });
                    }
                    #[cfg(not(feature = "tls"))]
                    Some(never) => match *never {},
                }
            }
            Err(e) => {
                // Typically EMFILE/ENFILE or a connection reset before accept: keep going.
                tracing::warn!("accepting a TCP connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads the request on one accepted stream (plain TCP, or TLS already decrypted) and hands
/// the WebSocket to the listener or the request to the HTTP handler.
async fn serve_stream<S>(
    stream: S,
    peer: SocketAddr,
    options: Arc<WebSocketOptions>,
    http: Arc<dyn HttpHandler>,
    tx: mpsc::Sender<Box<WebSocketConnection>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match accept_stream(stream, Some(peer), &options).await {
        Ok(Accepted::WebSocket(conn)) => {
            if let Err(mpsc::error::SendError(mut conn)) = tx.send(conn).await {
                let _ = conn.close().await;
            }
        }
        Ok(Accepted::Http(request)) => {
            let target = request.head().target.clone();
            if let Err(e) = http.handle(request).await {
                tracing::debug!(%peer, %target, "HTTP request failed: {e}");
            }
        }
        Err(e) => tracing::debug!(%peer, "WebSocket handshake failed: {e}"),
    }
}

#[async_trait]
impl Listener for WebSocketListener {
    async fn accept(&mut self) -> Result<Box<dyn Connection>, TransportError> {
        Ok(self.accept_ws().await?)
    }

    /// `ws://ADDR/v1` (`wss://` when serving TLS); an unspecified bind address (0.0.0.0, ::)
    /// is shown as loopback.
    fn url(&self) -> String {
        let mut addr = self.local_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        let scheme = if self.secure { "wss" } else { "ws" };
        format!("{scheme}://{addr}/v1")
    }
}
