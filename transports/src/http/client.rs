//! The client side of HTTP polling on hyper 1: [`HttpTransport`] and [`HttpConnection`].
//!
//! A connection holds two HTTP/1.1 connections to the relay: one for `send` (and the final
//! `DELETE`), one for its poller task, so a long poll never holds up a send. Both come from a
//! [`Dialer`] (real TCP by default, a simulator's network in tests), with TLS for `https://`.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::hyper_client::{Endpoint, Requester};
use super::wire::{ErrorBody, FramesBody};
use super::API_PREFIX;
use crate::net::{Dialer, TcpDialer};
use crate::websocket::parse_ws_url;
#[cfg(feature = "tls")]
use crate::websocket::ClientTls;
use crate::{split_scheme, Connection, Delivery, Transport, TransportError};

/// Settings of HTTP-polling client connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpClientOptions {
    /// How long the relay may hold each poll open waiting for a frame (`wait`). Default 25 s:
    /// an idle client then makes at most 2.4 requests a minute, and the poll ends before the
    /// 30–60 s idle limits common in proxies.
    pub long_poll: Duration,
    /// Limit for connecting and for each request (beyond its long poll). Default 15 s.
    pub request_timeout: Duration,
    /// The largest answer body read. Default 16 MiB.
    pub max_body_bytes: usize,
    /// Keep each HTTP connection open for the next request (the relay closes one that stays
    /// idle for its request timeout, 10 s by default). With `false` every request has a
    /// connection of its own (`Connection: close`). Default `true`.
    pub keep_alive: bool,
}

impl Default for HttpClientOptions {
    fn default() -> Self {
        HttpClientOptions {
            long_poll: Duration::from_secs(25),
            request_timeout: Duration::from_secs(15),
            max_body_bytes: 16 << 20,
            keep_alive: true,
        }
    }
}

/// Opens HTTP-polling connections to `http://HOST:PORT/v1` (and, with the `tls` feature,
/// `https://`) relay URLs, over streams from a [`Dialer`].
#[derive(Debug, Clone)]
pub struct HttpTransport {
    dialer: Arc<dyn Dialer>,
    options: HttpClientOptions,
    #[cfg(feature = "tls")]
    tls: ClientTls,
}

impl Default for HttpTransport {
    fn default() -> Self {
        HttpTransport::new(HttpClientOptions::default())
    }
}

impl HttpTransport {
    /// A transport over real TCP with these options.
    pub fn new(options: HttpClientOptions) -> Self {
        HttpTransport {
            dialer: Arc::new(TcpDialer),
            options,
            #[cfg(feature = "tls")]
            tls: ClientTls::default(),
        }
    }

    /// Takes its byte streams from `dialer` (e.g. a simulator's network).
    pub fn with_dialer(mut self, dialer: Arc<dyn Dialer>) -> Self {
        self.dialer = dialer;
        self
    }

    /// Uses this TLS client configuration for `https://`.
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, tls: ClientTls) -> Self {
        self.tls = tls;
        self
    }

    /// The options in force.
    pub fn options(&self) -> &HttpClientOptions {
        &self.options
    }

    /// Like [`Transport::connect`], with the concrete connection type.
    pub async fn connect_http(&self, url: &str) -> Result<HttpConnection, TransportError> {
        let endpoint = Arc::new(self.endpoint(url)?);
        let base = endpoint.base.clone();
        let make = move || -> Box<dyn Backend> { Box::new(Requester::new(endpoint.clone())) };
        open_session(url, &base, Arc::new(make), self.options.long_poll).await
    }

    fn endpoint(&self, url: &str) -> Result<Endpoint, TransportError> {
        let parts = parse_http_url(url)?;
        Ok(Endpoint {
            url: url.to_string(),
            base: parts.base,
            host: parts.host,
            port: parts.port,
            host_header: parts.host_header,
            secure: parts.secure,
            dialer: self.dialer.clone(),
            timeout: self.options.request_timeout,
            max_body: self.options.max_body_bytes,
            keep_alive: self.options.keep_alive,
            #[cfg(feature = "tls")]
            tls: self.tls.clone(),
        })
    }
}

/// The parts of an `http://` or `https://` relay URL.
pub(crate) struct HttpUrl {
    pub secure: bool,
    pub host: String,
    pub port: u16,
    /// `HOST:PORT` (IPv6 in brackets).
    pub host_header: String,
    /// The API's path: the URL's path and [`API_PREFIX`], e.g. `/v1/http`.
    pub base: String,
}

/// Parses `http[s]://HOST[:PORT][/PATH]`.
pub(crate) fn parse_http_url(url: &str) -> Result<HttpUrl, TransportError> {
    {
        let (scheme, rest) = split_scheme(url)?;
        let secure = if scheme.eq_ignore_ascii_case("http") {
            false
        } else if scheme.eq_ignore_ascii_case("https") {
            if !cfg!(feature = "tls") {
                return Err(TransportError::BadUrl {
                    url: url.into(),
                    reason: "https:// needs the `tls` feature".into(),
                });
            }
            true
        } else {
            return Err(TransportError::BadUrl {
                url: url.into(),
                reason: "the HTTP transport serves http:// and https:// URLs only".into(),
            });
        };
        let parsed = parse_ws_url(&format!("{}://{rest}", if secure { "wss" } else { "ws" }))
            .map_err(|e| match e {
                TransportError::BadUrl { reason, .. } => TransportError::BadUrl {
                    url: url.into(),
                    reason: reason.replace("WebSocket", "HTTP"),
                },
                other => other,
            })?;
        if parsed.path.contains('?') {
            return Err(TransportError::BadUrl {
                url: url.into(),
                reason: "an HTTP relay URL cannot have a ?query".into(),
            });
        }
        let host_header = if parsed.host.contains(':') {
            format!("[{}]:{}", parsed.host, parsed.port)
        } else {
            format!("{}:{}", parsed.host, parsed.port)
        };
        Ok(HttpUrl {
            base: format!("{}{API_PREFIX}", parsed.path.trim_end_matches('/')),
            host: parsed.host,
            port: parsed.port,
            host_header,
            secure,
        })
    }
}

#[async_trait]
impl Transport for HttpTransport {
    fn supports(&self, scheme: &str) -> bool {
        scheme.eq_ignore_ascii_case("http")
            || (cfg!(feature = "tls") && scheme.eq_ignore_ascii_case("https"))
    }

    async fn connect(&self, url: &str) -> Result<Box<dyn Connection>, TransportError> {
        Ok(Box::new(self.connect_http(url).await?))
    }
}

/// Opens a session at `base` (`/v1/http`) and starts its poller.
pub(crate) async fn open_session(
    url: &str,
    base: &str,
    make: Arc<MakeBackend>,
    long_poll: Duration,
) -> Result<HttpConnection, TransportError> {
    let mut sender = make();
    let open = format!("{base}/session");
    let (status, body) = sender
        .request(Method::POST, &open, Bytes::new(), Duration::ZERO)
        .await?;
    if status != StatusCode::CREATED {
        return Err(unexpected(&open, status, &body));
    }
    let opened: FramesBody = parse(&open, &body)?;
    let Some(id) = opened.session.clone() else {
        return Err(TransportError::Protocol(
            "the relay's answer to opening a session has no session id".into(),
        ));
    };
    let session_path = format!("{base}/session/{id}");
    let shared = Arc::new(Shared::default());
    shared.deliver(&opened);
    let poller = tokio::spawn(poll_loop(
        make(),
        shared.clone(),
        format!("{session_path}/events"),
        long_poll,
    ));
    Ok(HttpConnection {
        url: url.to_string(),
        shared,
        sender,
        session_path,
        seq: 0,
        poller,
    })
}

/// Makes HTTP requests to one relay: hyper's client here, surf's with feature `surf`.
#[async_trait]
pub(crate) trait Backend: Send + 'static {
    /// One request with a deadline of the backend's timeout plus `extra`: the answer's status
    /// and body.
    async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
        extra: Duration,
    ) -> Result<(StatusCode, Bytes), TransportError>;
}

/// Makes a fresh backend (one for sends, one for the poller).
pub(crate) type MakeBackend = dyn Fn() -> Box<dyn Backend> + Send + Sync;

/// What the poller and the sender share with `recv`.
#[derive(Default)]
struct Shared {
    state: Mutex<ClientState>,
    /// Wakes `recv`.
    arrived: Notify,
    /// Wakes the poller.
    kick: Notify,
}

#[derive(Default)]
struct ClientState {
    /// The number of the last frame handed to `recv`'s queue.
    delivered: u64,
    frames: VecDeque<String>,
    failed: Option<String>,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ClientState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the frames of an answer not delivered yet (answers to sends and polls overlap),
    /// in order. Returns how many were new.
    fn deliver(&self, body: &FramesBody) -> usize {
        let mut st = self.lock();
        let len = body.frames.len() as u64;
        let first = (body.cursor + 1).saturating_sub(len);
        let mut new = 0;
        for (i, frame) in body.frames.iter().enumerate() {
            let n = first + i as u64;
            if n == st.delivered + 1 {
                st.frames.push_back(frame.get().to_owned());
                st.delivered = n;
                new += 1;
            }
        }
        drop(st);
        if new > 0 {
            self.arrived.notify_one();
        }
        new
    }

    fn fail(&self, why: String) {
        let mut st = self.lock();
        if st.failed.is_none() {
            st.failed = Some(why);
        }
        drop(st);
        self.arrived.notify_one();
    }
}

/// The poller: a fetch per kick (a kick during a fetch makes one more after it), and at once
/// again after every fetch that brought frames.
async fn poll_loop(
    mut requester: Box<dyn Backend>,
    shared: Arc<Shared>,
    path: String,
    wait: Duration,
) {
    loop {
        shared.kick.notified().await;
        let mut retried = false;
        loop {
            let after = shared.lock().delivered;
            let target = format!("{path}?after={after}&wait={}", wait.as_secs_f64());
            match requester
                .request(Method::GET, &target, Bytes::new(), wait)
                .await
            {
                Ok((StatusCode::OK, body)) => {
                    retried = false;
                    match parse::<FramesBody>(&path, &body) {
                        Ok(frames) => {
                            shared.deliver(&frames);
                            // Frames (even ones a send's answer brought first): poll on at
                            // once. An empty answer (the long poll ran out): wait for a kick.
                            if frames.frames.is_empty() {
                                break;
                            }
                        }
                        Err(e) => return shared.fail(e.to_string()),
                    }
                }
                // The relay could not serve the poll now (e.g. another relay process that
                // holds the session did not answer in time): once more after a pause, with
                // the same cursor, as a send does.
                Ok((StatusCode::SERVICE_UNAVAILABLE, _)) if !retried => {
                    tracing::debug!("a poll was answered 503; retrying once");
                    retried = true;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Ok((status, body)) => {
                    return shared.fail(unexpected(&path, status, &body).to_string())
                }
                // One retry on a fresh connection (the same cursor loses nothing).
                Err(e) if !retried => {
                    tracing::debug!(error = %e, "a poll failed; retrying once");
                    retried = true;
                }
                Err(e) => return shared.fail(format!("polling the relay failed: {e}")),
            }
        }
    }
}

/// One HTTP-polling session with a relay, as a [`Delivery::Pull`] [`Connection`].
///
/// [`poll`](Connection::poll) asks the connection's poller task for a fetch and returns at
/// once; frames from fetches and from the answers to sends come out of
/// [`recv`](Connection::recv) in the relay's order, each once.
pub struct HttpConnection {
    url: String,
    shared: Arc<Shared>,
    sender: Box<dyn Backend>,
    /// `/v1/http/session/ID` (holds the session's secret id: never logged).
    session_path: String,
    seq: u64,
    poller: JoinHandle<()>,
}

impl fmt::Debug for HttpConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConnection")
            .field("url", &self.url)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl Drop for HttpConnection {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// How often a `send` is tried when the relay's answer is lost.
const SEND_ATTEMPTS: u32 = 3;

/// The pause before trying a request again that the relay answered 503 (busy, or another
/// relay process did not answer in time).
const RETRY_PAUSE: Duration = Duration::from_millis(100);

#[async_trait]
impl Connection for HttpConnection {
    async fn send(&mut self, frame: String) -> Result<(), TransportError> {
        self.send_all(vec![frame]).await
    }

    async fn send_all(&mut self, frames: Vec<String>) -> Result<(), TransportError> {
        if self.shared.lock().closed {
            return Err(TransportError::Closed);
        }
        self.seq += 1;
        let path = format!("{}/send", self.session_path);
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Rebuilt per attempt: `after` may have moved on meanwhile.
            let after = self.shared.lock().delivered;
            let mut body = format!("{{\"seq\":{},\"after\":{after},\"frames\":[", self.seq);
            for (i, frame) in frames.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(frame);
            }
            body.push_str("]}");
            match self
                .sender
                .request(Method::POST, &path, Bytes::from(body), Duration::ZERO)
                .await
            {
                Ok((StatusCode::OK, answer)) => {
                    self.shared.deliver(&parse(&path, &answer)?);
                    return Ok(());
                }
                Ok((StatusCode::SERVICE_UNAVAILABLE, _)) if attempt < SEND_ATTEMPTS => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Ok((status, answer)) => return Err(unexpected(&path, status, &answer)),
                // The answer was lost: the same `seq` again is not applied twice.
                Err(e) if attempt < SEND_ATTEMPTS => {
                    tracing::debug!(error = %e, "a send failed; retrying with the same seq");
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn recv(&mut self) -> Result<Option<String>, TransportError> {
        loop {
            let notified = self.shared.arrived.notified();
            {
                let mut st = self.shared.lock();
                if let Some(frame) = st.frames.pop_front() {
                    return Ok(Some(frame));
                }
                if let Some(why) = &st.failed {
                    return Err(TransportError::Protocol(why.clone()));
                }
                if st.closed {
                    return Ok(None);
                }
            }
            notified.await;
        }
    }

    async fn poll(&mut self) -> Result<(), TransportError> {
        if let Some(why) = &self.shared.lock().failed {
            return Err(TransportError::Protocol(why.clone()));
        }
        self.shared.kick.notify_one();
        Ok(())
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        {
            let mut st = self.shared.lock();
            if st.closed {
                return Ok(());
            }
            st.closed = true;
        }
        self.poller.abort();
        self.shared.arrived.notify_one();
        let path = self.session_path.clone();
        let (status, body) = self
            .sender
            .request(Method::DELETE, &path, Bytes::new(), Duration::ZERO)
            .await?;
        match status {
            // Already gone (expired, or the relay restarted): closed all the same.
            StatusCode::OK | StatusCode::NOT_FOUND => Ok(()),
            other => Err(unexpected(&path, other, &body)),
        }
    }

    fn delivery(&self) -> Delivery {
        Delivery::Pull
    }

    fn kind(&self) -> &'static str {
        "http"
    }
}

pub(crate) fn parse<'a, T: serde::Deserialize<'a>>(
    path: &str,
    body: &'a [u8],
) -> Result<T, TransportError> {
    serde_json::from_slice(body).map_err(|e| {
        TransportError::Protocol(format!(
            "the relay's answer to {} is not what HTTP polling expects: {e}",
            redact(path)
        ))
    })
}

/// An error for an answer with an unexpected status, with the relay's error text if any.
pub(crate) fn unexpected(path: &str, status: StatusCode, body: &[u8]) -> TransportError {
    let text = serde_json::from_slice::<ErrorBody>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    TransportError::Protocol(format!("{} answered {status}: {text}", redact(path)))
}

/// The path without the session id (a secret).
fn redact(path: &str) -> String {
    match path.split_once("/session/") {
        Some((base, rest)) => match rest.split_once('/') {
            Some((_, tail)) => format!("{base}/session/…/{tail}"),
            None => format!("{base}/session/…"),
        },
        None => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_session_ids() {
        assert_eq!(
            redact("/v1/http/session/abc123/send"),
            "/v1/http/session/…/send"
        );
        assert_eq!(redact("/v1/http/session/abc123"), "/v1/http/session/…");
        assert_eq!(redact("/v1/http/session"), "/v1/http/session");
    }

    #[test]
    fn parses_relay_urls() {
        let t = HttpTransport::default();
        let e = t.endpoint("http://127.0.0.1:4000/v1").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.base.as_str()),
            ("127.0.0.1", 4000, "/v1/http")
        );
        assert_eq!(e.host_header, "127.0.0.1:4000");
        let e = t.endpoint("http://[::1]:4000/v1/").unwrap();
        assert_eq!(
            (e.host_header.as_str(), e.base.as_str()),
            ("[::1]:4000", "/v1/http")
        );
        assert_eq!(t.endpoint("http://relay.example").unwrap().port, 80);
        assert!(t.endpoint("ws://relay.example/v1").is_err());
        assert!(t.endpoint("http://relay.example/v1?x=1").is_err());
    }

    #[test]
    fn delivers_each_frame_once_in_order() {
        let shared = Shared::default();
        let body = |cursor, frames: &[&str]| FramesBody {
            session: None,
            cursor,
            frames: frames
                .iter()
                .map(|f| serde_json::value::RawValue::from_string(f.to_string()).unwrap())
                .collect(),
        };
        assert_eq!(shared.deliver(&body(2, &["1", "2"])), 2);
        // A poll answer overlapping a send's answer: only frame 3 is new.
        assert_eq!(shared.deliver(&body(3, &["2", "3"])), 1);
        assert_eq!(shared.deliver(&body(3, &[])), 0);
        let st = shared.lock();
        assert_eq!(
            st.frames.iter().map(String::as_str).collect::<Vec<_>>(),
            ["1", "2", "3"]
        );
        assert_eq!(st.delivered, 3);
    }
}
