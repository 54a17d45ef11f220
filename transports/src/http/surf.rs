//! A second client backend for HTTP polling on `surf` (feature `surf`): the same sessions,
//! poller and retries as [`HttpTransport`](super::HttpTransport), with surf's HTTP/1.1
//! client (`h1-client-no-tls`, so `http://` only) making the requests.
//!
//! surf is unmaintained (RUSTSEC-2025-0036) and opens its own sockets (async-std), so it
//! bypasses a [`Dialer`](crate::net::Dialer) and a simulator's network; prefer
//! [`HttpTransport`](super::HttpTransport) unless surf is what you need.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hyper::{Method, StatusCode};

use super::client::{open_session, parse_http_url, Backend, HttpClientOptions};
use crate::{Connection, Transport, TransportError};

/// Opens HTTP-polling connections to `http://` relay URLs with surf.
#[derive(Debug, Clone, Default)]
pub struct SurfTransport {
    options: HttpClientOptions,
}

impl SurfTransport {
    /// A transport with these options.
    pub fn new(options: HttpClientOptions) -> Self {
        SurfTransport { options }
    }

    /// Like [`Transport::connect`], with the concrete connection type.
    pub async fn connect_http(&self, url: &str) -> Result<super::HttpConnection, TransportError> {
        let parts = parse_http_url(url)?;
        if parts.secure {
            return Err(TransportError::BadUrl {
                url: url.into(),
                reason: "the surf backend serves http:// only; use HttpTransport for https://"
                    .into(),
            });
        }
        let origin = format!("http://{}", parts.host_header);
        let options = self.options.clone();
        let relay_url = url.to_string();
        let make = move || -> Box<dyn Backend> {
            Box::new(SurfBackend {
                client: surf_client(),
                origin: origin.clone(),
                url: relay_url.clone(),
                timeout: options.request_timeout,
                max_body: options.max_body_bytes,
                answered: false,
            })
        };
        open_session(url, &parts.base, Arc::new(make), self.options.long_poll).await
    }
}

/// A client with `TCP_NODELAY` (without it every POST waits ~40 ms for a delayed ACK) and
/// no timeout of its own (each request has ours).
fn surf_client() -> surf::Client {
    let config = surf::Config::new()
        .set_tcp_no_delay(true)
        .set_timeout(None)
        .set_http_keep_alive(true);
    config.try_into().unwrap_or_else(|_| surf::Client::new())
}

#[async_trait]
impl Transport for SurfTransport {
    fn supports(&self, scheme: &str) -> bool {
        scheme.eq_ignore_ascii_case("http")
    }

    async fn connect(&self, url: &str) -> Result<Box<dyn Connection>, TransportError> {
        Ok(Box::new(self.connect_http(url).await?))
    }
}

struct SurfBackend {
    client: surf::Client,
    /// `http://HOST:PORT`.
    origin: String,
    url: String,
    timeout: Duration,
    max_body: usize,
    /// Whether the relay ever answered (before that, a failure means it is unreachable).
    answered: bool,
}

#[async_trait]
impl Backend for SurfBackend {
    async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
        extra: Duration,
    ) -> Result<(StatusCode, Bytes), TransportError> {
        let method = match method {
            Method::GET => surf::http::Method::Get,
            Method::POST => surf::http::Method::Post,
            Method::DELETE => surf::http::Method::Delete,
            other => {
                return Err(TransportError::Protocol(format!(
                    "the surf backend does not send {other}"
                )))
            }
        };
        let target = format!("{}{path}", self.origin);
        let target: surf::Url = target
            .parse()
            .map_err(|e| TransportError::Protocol(format!("bad request URL: {e}")))?;
        let request = self
            .client
            .request(method, target)
            .body(surf::Body::from_bytes(body.to_vec()))
            .content_type("application/json");
        let max_body = self.max_body;
        let exchange = async move {
            let mut response = request.await?;
            let status = u16::from(response.status());
            let bytes = response.body_bytes().await?;
            Ok::<_, surf::Error>((status, bytes))
        };
        let limit = self.timeout.saturating_add(extra);
        let (status, bytes) = match tokio::time::timeout(limit, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) if !self.answered => {
                return Err(TransportError::Unreachable {
                    url: self.url.clone(),
                    reason: e.to_string(),
                })
            }
            Ok(Err(e)) => return Err(TransportError::Io(std::io::Error::other(e.to_string()))),
            Err(_) => {
                return Err(TransportError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer from the relay within {} s", limit.as_secs()),
                )))
            }
        };
        self.answered = true;
        if bytes.len() > max_body {
            return Err(TransportError::TooLarge {
                size: bytes.len(),
                limit: max_body,
            });
        }
        let status = StatusCode::from_u16(status)
            .map_err(|_| TransportError::Protocol(format!("bad HTTP status {status}")))?;
        Ok((status, Bytes::from(bytes)))
    }
}
