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
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, SERVER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::session::{Refused, Registry, Session};
use super::wire::{error_json, SendBody};
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
        }
    }
}

/// `d` from now, or a year from now if that is past what an `Instant` can hold.
fn deadline_in(d: Duration) -> Instant {
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
    options: HttpServerOptions,
    registry: Arc<Registry>,
    sessions: mpsc::Sender<Box<dyn Connection>>,
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
    /// The handler and the listener of its sessions.
    pub fn new(options: HttpServerOptions) -> (Arc<HttpPolling>, SessionListener) {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let registry = Arc::new(Registry::new(options.seed));
        let polling = Arc::new(HttpPolling {
            options,
            registry,
            sessions: tx,
        });
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
        match parts.as_slice() {
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
                let Some(session) = self.registry.get(id) else {
                    return self.unknown_session();
                };
                session.close();
                // Unknown from now on, even before the relay has seen the close.
                self.registry.remove(id);
                self.json(StatusCode::OK, "{\"closed\":true}\n".into())
            }
            ["session", id, "send"] => {
                if method != Method::POST {
                    return self.wrong_method("POST");
                }
                let Some(session) = self.registry.get(id) else {
                    return self.unknown_session();
                };
                self.send(session, req).await
            }
            ["session", id, "events"] => {
                if method != Method::GET {
                    return self.wrong_method("GET");
                }
                let Some(session) = self.registry.get(id) else {
                    return self.unknown_session();
                };
                self.events(session, req.uri().query().unwrap_or("")).await
            }
            _ => self.error(
                StatusCode::NOT_FOUND,
                "no such endpoint: the API is POST /v1/http/session, POST /v1/http/session/ID/send, GET /v1/http/session/ID/events and DELETE /v1/http/session/ID",
                &[],
            ),
        }
    }

    /// `POST /v1/http/session`.
    async fn open(&self, peer: PeerInfo) -> Response<Full<Bytes>> {
        let (session, conn) =
            self.registry
                .open(peer, self.options.session_idle, self.options.queue_budget);
        let guard = session.begin_request();
        if self.sessions.try_send(Box::new(conn)).is_err() {
            drop(guard);
            return self.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the relay is not taking new sessions now; retry later",
                &[],
            );
        }
        // The relay's first frame (the welcome) normally follows at once.
        let deadline = deadline_in(self.options.request_timeout);
        let body = session.frames_after(0, Some(deadline), true).await;
        drop(guard);
        match body {
            Ok(body) => self.json(StatusCode::CREATED, body),
            Err(refused) => self.refused(refused),
        }
    }

    /// `POST /v1/http/session/ID/send`.
    async fn send(&self, session: Arc<Session>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let guard = session.begin_request();
        let limit = self.options.max_body_bytes;
        let read = Limited::new(req.into_body(), limit).collect();
        let bytes = match tokio::time::timeout(self.options.request_timeout, read).await {
            Err(_) => {
                return self.error(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time",
                    &[],
                )
            }
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return self.error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the request body is larger than {limit} bytes"),
                    &[("limit", limit.into())],
                )
            }
            Ok(Err(e)) => {
                return self.error(
                    StatusCode::BAD_REQUEST,
                    &format!("the request body could not be read: {e}"),
                    &[],
                )
            }
            Ok(Ok(collected)) => collected.to_bytes(),
        };
        let body: SendBody = match serde_json::from_slice(&bytes) {
            Ok(body) => body,
            Err(e) => {
                return self.error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "the body must be JSON {{\"seq\": N, \"after\": N, \"frames\": [..]}}: {e}"
                    ),
                    &[],
                )
            }
        };
        let frames = body.frames.iter().map(|f| f.get().to_owned()).collect();
        let target = match session.post(body.seq, frames) {
            Ok(target) => target,
            Err(refused) => return self.refused(refused),
        };
        let deadline = deadline_in(self.options.request_timeout);
        if !session.wait_handled(target, deadline).await {
            return self.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the relay did not handle the frames in time; retry with the same seq",
                &[],
            );
        }
        let answer = session.frames_after(body.after, None, false).await;
        drop(guard);
        match answer {
            Ok(body) => self.json(StatusCode::OK, body),
            Err(refused) => self.refused(refused),
        }
    }

    /// `GET /v1/http/session/ID/events?after=N&wait=SECS`.
    async fn events(&self, session: Arc<Session>, query: &str) -> Response<Full<Bytes>> {
        let mut after = 0u64;
        let mut wait = Duration::ZERO;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "after" => match value.parse() {
                    Ok(v) => after = v,
                    Err(_) => {
                        return self.error(
                            StatusCode::BAD_REQUEST,
                            &format!("after must be a frame number (0 or more), not {value:?}"),
                            &[],
                        )
                    }
                },
                "wait" => match value.parse::<f64>() {
                    Ok(v) if v.is_finite() && v >= 0.0 => {
                        wait = Duration::from_secs_f64(v.min(self.options.max_wait.as_secs_f64()))
                    }
                    _ => {
                        return self.error(
                            StatusCode::BAD_REQUEST,
                            &format!("wait must be a number of seconds (0 or more), not {value:?}"),
                            &[],
                        )
                    }
                },
                _ => {}
            }
        }
        let guard = session.begin_request();
        let deadline = (!wait.is_zero()).then(|| deadline_in(wait));
        let answer = session.frames_after(after, deadline, false).await;
        drop(guard);
        match answer {
            Ok(body) => self.json(StatusCode::OK, body),
            Err(refused) => self.refused(refused),
        }
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

    fn refused(&self, refused: Refused) -> Response<Full<Bytes>> {
        match refused {
            Refused::Closed => self.error(
                StatusCode::GONE,
                "the session is closed: open a new one",
                &[],
            ),
            Refused::CursorAhead { last } => self.error(
                StatusCode::BAD_REQUEST,
                &format!("after is beyond the last frame of this session ({last})"),
                &[("last", last.into())],
            ),
            Refused::BadSeq { expected } => self.error(
                StatusCode::CONFLICT,
                &format!(
                    "seq out of order: expected {expected} (or the last one again, to retry it)"
                ),
                &[("expected", expected.into())],
            ),
        }
    }

    fn unknown_session(&self) -> Response<Full<Bytes>> {
        self.error(
            StatusCode::NOT_FOUND,
            "unknown session (it expired, was closed, or the relay restarted): open a new one",
            &[],
        )
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
        tracing::debug!(%status, "HTTP polling: {text}");
        self.json(status, error_json(text, extra))
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
