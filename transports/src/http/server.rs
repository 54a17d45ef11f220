//! The relay side of HTTP polling: hyper serves every non-WebSocket request on the relay's
//! port (the banner, 404, 426, the polling API and `/metrics`), and each session is handed to
//! the relay runner as a [`Connection`] by [`SessionListener`].

use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, SERVER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::api::Answer;
use super::peers::{ForwardKind, SessionPeers};
use super::session::Registry;
use super::MAX_WAIT;
use crate::websocket::{HttpHandler, HttpRequest, BANNER, DEFAULT_SERVER_HEADER};
use crate::{Connection, Listener, PeerInfo, TransportError};

/// Counts HTTP requests and renders the relay's metrics for `GET /metrics`. The relay
/// implements it for its counters; this crate knows nothing of them.
pub trait HttpMetrics: Send + Sync + 'static {
    /// One HTTP request arrived (any route).
    fn request(&self);
    /// The metrics in the Prometheus text format.
    fn render(&self) -> String;
    /// One request was forwarded to the relay process that owns its session.
    fn forwarded(&self) {}
}

/// Settings of the relay's HTTP side.
#[derive(Clone)]
pub struct HttpServerOptions {
    /// A session no request touched for this long expires (and counts as a dropped
    /// connection); a long poll in progress keeps it alive. Default 65 minutes, so a client
    /// polling hourly (the long-lived schedule) keeps its session, and with it its mailbox.
    pub session_idle: Duration,
    /// The longest long poll held; a larger `wait` is cut to this. Default [`MAX_WAIT`].
    pub max_wait: Duration,
    /// The largest request body (a `send` of several frames). Default 4 MiB.
    pub max_body_bytes: usize,
    /// Bytes of frames that may wait for one session's client; past it the session is
    /// dropped. Default 4 MiB.
    pub queue_budget: usize,
    /// Limit for reading a request (head and body), and for the relay to handle a `send`.
    /// Default 10 s.
    pub request_timeout: Duration,
    /// Seed of the session ids' generator (ChaCha20). Give it fresh OS randomness in
    /// production; a simulator gives a fixed one.
    pub seed: [u8; 32],
    /// Value of the `Server:` header.
    pub server_header: String,
    /// Take the client's address from `X-Real-IP`/`X-Real-Port` (behind a reverse proxy).
    pub trust_proxy_headers: bool,
    /// Counts requests; with [`serve_metrics`](Self::serve_metrics), also serves `/metrics`.
    pub metrics: Option<Arc<dyn HttpMetrics>>,
    /// Answer `GET /metrics` on this port.
    pub serve_metrics: bool,
    /// The other relay processes sessions are shared with (see [`super::peers`]); `None`: a
    /// single process, whose session ids carry no owner.
    pub peers: Option<Arc<dyn SessionPeers>>,
}

impl fmt::Debug for HttpServerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpServerOptions")
            .field("session_idle", &self.session_idle)
            .field("max_wait", &self.max_wait)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("queue_budget", &self.queue_budget)
            .field("request_timeout", &self.request_timeout)
            .field("trust_proxy_headers", &self.trust_proxy_headers)
            .field("serve_metrics", &self.serve_metrics)
            .field("instance", &self.peers.as_ref().map(|p| p.instance()))
            .finish_non_exhaustive()
    }
}

impl HttpServerOptions {
    /// Defaults with this seed for session ids.
    pub fn new(seed: [u8; 32]) -> Self {
        HttpServerOptions {
            session_idle: Duration::from_secs(65 * 60),
            max_wait: MAX_WAIT,
            max_body_bytes: 4 << 20,
            queue_budget: 4 << 20,
            request_timeout: Duration::from_secs(10),
            seed,
            server_header: DEFAULT_SERVER_HEADER.to_string(),
            trust_proxy_headers: false,
            metrics: None,
            serve_metrics: false,
            peers: None,
        }
    }
}

/// `d` from now, or a year from now if that is past what an `Instant` can hold.
pub(super) fn deadline_in(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// New sessions waiting for the relay runner.
const SESSION_QUEUE: usize = 256;

/// Serves HTTP polling (and the plain routes) on a listener's port; see the
/// [module docs](super). Create with [`HttpPolling::new`] and give it to
/// [`WebSocketListener::bind_with_handler`](crate::websocket::WebSocketListener::bind_with_handler).
pub struct HttpPolling {
    pub(super) options: HttpServerOptions,
    pub(super) registry: Arc<Registry>,
    pub(super) sessions: mpsc::Sender<Box<dyn Connection>>,
}

impl fmt::Debug for HttpPolling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpPolling")
            .field("options", &self.options)
            .field("registry", &self.registry)
            .finish()
    }
}

/// Yields each new HTTP-polling session as a [`Connection`] (give it to the relay runner next
/// to the WebSocket listener).
#[derive(Debug)]
pub struct SessionListener {
    rx: mpsc::Receiver<Box<dyn Connection>>,
    url: String,
}

impl SessionListener {
    /// Sets the URL reported by [`Listener::url`] (e.g. `http://HOST:PORT/v1`).
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }
}

#[async_trait]
impl Listener for SessionListener {
    async fn accept(&mut self) -> Result<Box<dyn Connection>, TransportError> {
        self.rx.recv().await.ok_or(TransportError::Closed)
    }

    fn url(&self) -> String {
        self.url.clone()
    }
}

impl HttpPolling {
    /// The handler and the listener of its sessions. With [`HttpServerOptions::peers`], the
    /// handler is [attached](SessionPeers::attach) to them, to serve forwarded requests.
    pub fn new(options: HttpServerOptions) -> (Arc<HttpPolling>, SessionListener) {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let instance = options.peers.as_ref().map(|p| p.instance());
        let registry = Arc::new(Registry::new(options.seed, instance));
        let polling = Arc::new(HttpPolling {
            options,
            registry,
            sessions: tx,
        });
        if let Some(peers) = &polling.options.peers {
            peers.attach(Arc::downgrade(&polling));
        }
        (
            polling,
            SessionListener {
                rx,
                url: String::new(),
            },
        )
    }

    /// How many sessions are live.
    pub fn session_count(&self) -> usize {
        self.registry.len()
    }

    /// Answers one request (hyper calls this for every request on a connection).
    async fn route(&self, req: Request<Incoming>, tcp_peer: &PeerInfo) -> Response<Full<Bytes>> {
        if let Some(m) = &self.options.metrics {
            m.request();
        }
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        let head = method == Method::HEAD;
        match path.as_str() {
            "/" if method == Method::GET || head => self.text(StatusCode::OK, BANNER, head),
            "/metrics" if self.options.serve_metrics && (method == Method::GET || head) => {
                let body = self
                    .options
                    .metrics
                    .as_ref()
                    .map(|m| m.render())
                    .unwrap_or_default();
                let mut r = self.text(StatusCode::OK, &body, head);
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            }
            "/v1" | "/v1/" => {
                let mut r = self.text(
                    StatusCode::UPGRADE_REQUIRED,
                    "This is a WebSocket endpoint; HTTP polling is under /v1/http/.\n",
                    head,
                );
                r.headers_mut()
                    .insert("upgrade", HeaderValue::from_static("websocket"));
                r.headers_mut()
                    .insert("sec-websocket-version", HeaderValue::from_static("13"));
                r
            }
            p if p.starts_with("/v1/http/") || p == "/v1/http" => {
                self.api(req, &p["/v1/http".len()..], tcp_peer).await
            }
            _ => self.text(StatusCode::NOT_FOUND, "Not Found\n", head),
        }
    }

    /// The polling API; `rest` is the path after `/v1/http`.
    async fn api(
        &self,
        req: Request<Incoming>,
        rest: &str,
        tcp_peer: &PeerInfo,
    ) -> Response<Full<Bytes>> {
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let method = req.method().clone();
        let answer = match parts.as_slice() {
            ["session"] => {
                if method != Method::POST {
                    return self.wrong_method("POST");
                }
                let peer = self.peer_of(&req, tcp_peer);
                self.open(peer).await
            }
            ["session", id] => {
                if method != Method::DELETE {
                    return self.wrong_method("DELETE");
                }
                self.session_request(ForwardKind::Delete, id, req).await
            }
            ["session", id, "send"] => {
                if method != Method::POST {
                    return self.wrong_method("POST");
                }
                self.session_request(ForwardKind::Send, id, req).await
            }
            ["session", id, "events"] => {
                if method != Method::GET {
                    return self.wrong_method("GET");
                }
                self.session_request(ForwardKind::Events, id, req).await
            }
            _ => Answer::error(
                StatusCode::NOT_FOUND,
                "no such endpoint: the API is POST /v1/http/session, POST /v1/http/session/ID/send, GET /v1/http/session/ID/events and DELETE /v1/http/session/ID",
                &[],
            ),
        };
        self.json(answer.status, answer.body)
    }

    /// The client's address: the TCP peer, or the proxy's headers when trusted.
    fn peer_of(&self, req: &Request<Incoming>, tcp_peer: &PeerInfo) -> PeerInfo {
        if self.options.trust_proxy_headers {
            let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
            let ip = header("x-real-ip").and_then(|v| v.trim().parse::<IpAddr>().ok());
            let port = header("x-real-port").and_then(|v| v.trim().parse::<u16>().ok());
            if let (Some(ip), Some(port)) = (ip, port) {
                return PeerInfo {
                    addr: Some(SocketAddr::new(ip, port)),
                };
            }
        }
        tcp_peer.clone()
    }

    fn wrong_method(&self, allowed: &'static str) -> Response<Full<Bytes>> {
        let mut r = self.error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("wrong method: this endpoint takes {allowed}"),
            &[],
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allowed));
        r
    }

    fn error(
        &self,
        status: StatusCode,
        text: &str,
        extra: &[(&str, serde_json::Value)],
    ) -> Response<Full<Bytes>> {
        let answer = Answer::error(status, text, extra);
        self.json(answer.status, answer.body)
    }

    fn json(&self, status: StatusCode, body: String) -> Response<Full<Bytes>> {
        let mut r = self.response(status, Bytes::from(body));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        r
    }

    fn text(&self, status: StatusCode, body: &str, head_only: bool) -> Response<Full<Bytes>> {
        let bytes = if head_only {
            Bytes::new()
        } else {
            Bytes::copy_from_slice(body.as_bytes())
        };
        let mut r = self.response(status, bytes);
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    }

    fn response(&self, status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        if let Ok(v) = HeaderValue::from_str(&self.options.server_header) {
            h.insert(SERVER, v);
        }
        r
    }
}

#[async_trait]
impl HttpHandler for HttpPolling {
    async fn handle(&self, request: HttpRequest) -> Result<(), TransportError> {
        let tcp_peer = request.peer().clone();
        let io = TokioIo::new(request.into_stream());
        let service = hyper::service::service_fn(|req| {
            let tcp_peer = &tcp_peer;
            async move { Ok::<_, Infallible>(self.route(req, tcp_peer).await) }
        });
        hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.options.request_timeout)
            .keep_alive(true)
            .serve_connection(io, service)
            .await
            .map_err(|e| TransportError::Protocol(format!("HTTP: {e}")))
    }
}

/// Serves only `GET /metrics` (404 otherwise) on every stream `acceptor` yields, until the
/// acceptor fails. For a relay that keeps its metrics off its public port.
pub async fn serve_metrics<A: crate::net::Acceptor>(
    mut acceptor: A,
    metrics: Arc<dyn HttpMetrics>,
) {
    let (polling, _sessions) = HttpPolling::new(HttpServerOptions {
        metrics: Some(metrics),
        serve_metrics: true,
        ..HttpServerOptions::new([0; 32])
    });
    loop {
        match acceptor.accept().await {
            Ok((stream, peer)) => {
                let polling = polling.clone();
                tokio::spawn(async move {
                    let io = TokioIo::new(stream);
                    let service = hyper::service::service_fn(|req: Request<Incoming>| {
                        let polling = &polling;
                        async move {
                            let metrics = req.uri().path() == "/metrics";
                            Ok::<_, Infallible>(if metrics {
                                polling.route(req, &PeerInfo::default()).await
                            } else {
                                polling.text(StatusCode::NOT_FOUND, "Not Found\n", false)
                            })
                        }
                    });
                    let served = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(10))
                        .serve_connection(io, service)
                        .await;
                    if let Err(e) = served {
                        tracing::debug!(%peer, "metrics request failed: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("accepting a metrics connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
