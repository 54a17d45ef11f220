//! The relay's HTTP side: reading a request head, routing it, and the plain answers.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::timeout;

use super::conn::BoxedStream;
use super::{BANNER, MAX_REQUEST_HEAD};
use crate::{PeerInfo, TransportError};

/// The most headers a request head may have.
const MAX_HEADERS: usize = 48;

/// A parsed HTTP/1.x request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target as sent, e.g. `/v1` or `/api?x=1`.
    pub target: String,
    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub minor_version: u8,
    /// The headers in order (names as sent; values decoded lossily as UTF-8).
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header contains `token` (case-insensitive).
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The path of the target, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// Where this request wants to go.
    pub fn route(&self) -> HttpRoute {
        let path = self.path();
        let is_v1 = path == "/v1" || path == "/v1/";
        if self.header_has_token("upgrade", "websocket") {
            if !is_v1 {
                HttpRoute::NotFound
            } else if self.method != "GET" || self.minor_version < 1 {
                HttpRoute::BadRequest
            } else {
                HttpRoute::WebSocket
            }
        } else if path == "/" && (self.method == "GET" || self.method == "HEAD") {
            HttpRoute::Banner
        } else if is_v1 {
            HttpRoute::UpgradeRequired
        } else {
            HttpRoute::NotFound
        }
    }
}

/// How the relay routes an HTTP request arriving on its port.
///
/// Everything other than [`HttpRoute::WebSocket`] reaches the listener's
/// [`HttpHandler`](super::HttpHandler) as an [`HttpRequest`]: **HTTP polling plugs in here
/// later**, by handling e.g. [`HttpRoute::NotFound`] requests under its own path and leaving
/// the rest to [`HttpRequest::respond_default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpRoute {
    /// `GET /v1` with `Upgrade: websocket`: the WebSocket endpoint.
    WebSocket,
    /// `GET /` or `HEAD /` without upgrade: answered with [`BANNER`] as `text/plain`.
    Banner,
    /// `/v1` without a WebSocket upgrade: answered `426 Upgrade Required`.
    UpgradeRequired,
    /// A path the WebSocket relay does not serve: answered `404 Not Found` by default.
    NotFound,
    /// A malformed or unsupported request: answered `400 Bad Request`.
    BadRequest,
}

/// A non-WebSocket HTTP request, with its connection, handed to an
/// [`HttpHandler`](super::HttpHandler) (or returned by [`accept_stream`](super::accept_stream)).
pub struct HttpRequest {
    pub(crate) head: RequestHead,
    /// All bytes read from the stream so far: the head, then possibly the start of a body.
    pub(crate) buffered: Vec<u8>,
    pub(crate) head_len: usize,
    pub(crate) stream: BoxedStream,
    pub(crate) peer: PeerInfo,
    pub(crate) server_header: String,
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRequest")
            .field("head", &self.head)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl HttpRequest {
    /// The parsed request head.
    pub fn head(&self) -> &RequestHead {
        &self.head
    }

    /// The route the request maps to.
    pub fn route(&self) -> HttpRoute {
        self.head.route()
    }

    /// The client's address (after `X-Real-IP`/`X-Real-Port` if trusted).
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// Bytes read after the head (the start of a request body or a pipelined request).
    pub fn leftover(&self) -> &[u8] {
        &self.buffered[self.head_len..]
    }

    /// The connection with every byte read so far put back in front, for handing to a full
    /// HTTP server (e.g. hyper) that parses the request again from scratch.
    pub fn into_stream(self) -> PrefixedStream<BoxedStream> {
        PrefixedStream::new(self.buffered, self.stream)
    }

    /// Gives the default answer for [`route`](Self::route) (banner, 404, 426 or 400) and
    /// closes the connection.
    pub async fn respond_default(self) -> Result<(), TransportError> {
        let head_only = self.head.method == "HEAD";
        match self.route() {
            HttpRoute::Banner => self.respond(200, "OK", &[], BANNER, head_only).await,
            HttpRoute::UpgradeRequired => {
                self.respond(
                    426,
                    "Upgrade Required",
                    &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
                    "This is a WebSocket endpoint.\n",
                    head_only,
                )
                .await
            }
            HttpRoute::NotFound => {
                self.respond(404, "Not Found", &[], "Not Found\n", head_only)
                    .await
            }
            HttpRoute::BadRequest | HttpRoute::WebSocket => {
                self.respond(400, "Bad Request", &[], "Bad Request\n", head_only)
                    .await
            }
        }
    }

    /// Sends a complete `text/plain` response and closes the connection.
    pub async fn respond(
        mut self,
        status: u16,
        reason: &str,
        extra_headers: &[(&str, &str)],
        body: &str,
        head_only: bool,
    ) -> Result<(), TransportError> {
        let bytes = response_bytes(
            &self.server_header,
            status,
            reason,
            extra_headers,
            body,
            head_only,
        );
        write_and_close(&mut self.stream, &bytes).await
    }
}

/// Formats a complete `text/plain` HTTP/1.1 response with `Connection: close`.
pub(crate) fn response_bytes(
    server: &str,
    status: u16,
    reason: &str,
    extra_headers: &[(&str, &str)],
    body: &str,
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nServer: {server}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in extra_headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(body);
    }
    out.into_bytes()
}

/// How long to keep reading (and discarding) after answering, so that unread request bytes do
/// not turn our close into a reset that destroys the answer in flight.
const LINGER: Duration = Duration::from_millis(500);

/// Writes `bytes`, shuts the write side down and drains the read side briefly.
pub(crate) async fn write_and_close(
    stream: &mut BoxedStream,
    bytes: &[u8],
) -> Result<(), TransportError> {
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await?;
        stream.shutdown().await
    };
    match timeout(Duration::from_secs(10), write).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "timed out writing an HTTP response",
            )
            .into())
        }
    }
    let mut sink = [0u8; 512];
    let _ = timeout(LINGER, async {
        let mut total = 0usize;
        while let Ok(n) = stream.read(&mut sink).await {
            total += n;
            if n == 0 || total > 64 * 1024 {
                break;
            }
        }
    })
    .await;
    Ok(())
}

/// Why a request head could not be read.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The stream ended or failed before a complete head arrived.
    Io(io::Error),
    /// The head is larger than [`MAX_REQUEST_HEAD`].
    TooLarge,
    /// Not HTTP/1.x.
    Malformed(String),
}

/// Reads from `stream` until a complete request head is buffered. Returns the head, all bytes
/// read, and the length of the head within them. The caller bounds this with a timeout.
pub(crate) async fn read_head(
    stream: &mut BoxedStream,
) -> Result<(RequestHead, Vec<u8>, usize), HeadError> {
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    loop {
        if buf.len() >= MAX_REQUEST_HEAD {
            return Err(HeadError::TooLarge);
        }
        let room = (MAX_REQUEST_HEAD - buf.len()).min(2048);
        let start = buf.len();
        buf.resize(start + room, 0);
        let n = match stream.read(&mut buf[start..]).await {
            Ok(n) => n,
            Err(e) => return Err(HeadError::Io(e)),
        };
        buf.truncate(start + n);
        if n == 0 {
            return Err(HeadError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a complete HTTP request head",
            )));
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let head = RequestHead {
                    method: req.method.unwrap_or("").to_string(),
                    target: req.path.unwrap_or("").to_string(),
                    minor_version: req.version.unwrap_or(0),
                    headers: req
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                };
                return Ok((head, buf, len));
            }
            Ok(httparse::Status::Partial) => continue,
            Err(e) => return Err(HeadError::Malformed(e.to_string())),
        }
    }
}

/// A stream that yields `prefix` before the bytes of `inner`; writes go straight to `inner`.
///
/// Lets a full HTTP server re-read a request whose head was already read for routing.
#[derive(Debug)]
pub struct PrefixedStream<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> PrefixedStream<S> {
    /// Wraps `inner` so that reads first return `prefix`.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        PrefixedStream {
            prefix,
            pos: 0,
            inner,
        }
    }

    /// The wrapped stream (any prefix bytes not yet read are lost).
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PrefixedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PrefixedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, target: &str, headers: &[(&str, &str)]) -> RequestHead {
        RequestHead {
            method: method.into(),
            target: target.into(),
            minor_version: 1,
            headers: headers
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        }
    }

    #[test]
    fn routes() {
        let up = [("Upgrade", "WebSocket"), ("Connection", "Upgrade")];
        assert_eq!(head("GET", "/v1", &up).route(), HttpRoute::WebSocket);
        assert_eq!(head("GET", "/v1/", &up).route(), HttpRoute::WebSocket);
        assert_eq!(head("GET", "/v2", &up).route(), HttpRoute::NotFound);
        assert_eq!(head("POST", "/v1", &up).route(), HttpRoute::BadRequest);
        assert_eq!(head("GET", "/", &[]).route(), HttpRoute::Banner);
        assert_eq!(head("HEAD", "/?x", &[]).route(), HttpRoute::Banner);
        assert_eq!(head("GET", "/v1", &[]).route(), HttpRoute::UpgradeRequired);
        assert_eq!(head("GET", "/other", &[]).route(), HttpRoute::NotFound);
        assert_eq!(head("POST", "/", &[]).route(), HttpRoute::NotFound);
    }
}
