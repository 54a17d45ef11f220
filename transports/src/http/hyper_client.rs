//! hyper's side of the HTTP-polling client: where the relay is ([`Endpoint`]), and one
//! HTTP/1.1 connection to it that is re-established when it fails ([`Requester`]), over a
//! stream from a [`Dialer`], with TLS for `https://`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

use super::client::Backend;
use crate::net::{BoxedStream, Dialer};
#[cfg(feature = "tls")]
use crate::websocket::ClientTls;
use crate::TransportError;

/// Where the relay is and how to reach it.
pub(crate) struct Endpoint {
    pub(crate) url: String,
    /// `/v1/http`.
    pub(crate) base: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) host_header: String,
    pub(crate) secure: bool,
    pub(crate) dialer: Arc<dyn Dialer>,
    pub(crate) timeout: Duration,
    pub(crate) max_body: usize,
    pub(crate) keep_alive: bool,
    #[cfg(feature = "tls")]
    pub(crate) tls: ClientTls,
}

impl Endpoint {
    async fn dial(&self) -> Result<BoxedStream, TransportError> {
        let unreachable = |reason: String| TransportError::Unreachable {
            url: self.url.clone(),
            reason,
        };
        let stream = self
            .dialer
            .dial(&self.host, self.port)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if !self.secure {
            return Ok(stream);
        }
        #[cfg(feature = "tls")]
        {
            let tls = self
                .tls
                .connect(stream, &self.host)
                .await
                .map_err(|e| unreachable(format!("TLS handshake failed: {e}")))?;
            Ok(Box::new(tls))
        }
        #[cfg(not(feature = "tls"))]
        Err(unreachable("https:// needs the `tls` feature".into()))
    }
}

/// One HTTP/1.1 connection to the relay, re-established when it fails.
pub(crate) struct Requester {
    endpoint: Arc<Endpoint>,
    sender: Option<SendRequest<Full<Bytes>>>,
    conn_task: Option<JoinHandle<()>>,
}

impl Drop for Requester {
    fn drop(&mut self) {
        if let Some(task) = self.conn_task.take() {
            task.abort();
        }
    }
}

impl Requester {
    pub(crate) fn new(endpoint: Arc<Endpoint>) -> Self {
        Requester {
            endpoint,
            sender: None,
            conn_task: None,
        }
    }

    async fn connect(&mut self) -> Result<(), TransportError> {
        if let Some(task) = self.conn_task.take() {
            task.abort();
        }
        let stream = self.endpoint.dial().await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| TransportError::Unreachable {
                url: self.endpoint.url.clone(),
                reason: format!("HTTP handshake failed: {e}"),
            })?;
        self.conn_task = Some(tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP connection to the relay ended");
            }
        }));
        self.sender = Some(sender);
        Ok(())
    }

    /// One request with a deadline of the endpoint's timeout plus `extra`; the answer's
    /// status and body. An I/O failure drops the HTTP connection (the next request dials
    /// afresh).
    async fn request_with(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
        extra: Duration,
    ) -> Result<(StatusCode, Bytes), TransportError> {
        let limit = self.endpoint.timeout.saturating_add(extra);
        match tokio::time::timeout(limit, self.request_inner_hyper(method, path, body)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                Err(TransportError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer from the relay within {} s", limit.as_secs()),
                )))
            }
        }
    }

    async fn request_inner_hyper(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), TransportError> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.connect().await?;
        }
        let Some(sender) = self.sender.as_mut() else {
            return Err(TransportError::Closed);
        };
        let io = |e: hyper::Error| TransportError::Io(std::io::Error::other(e));
        sender.ready().await.map_err(io)?;
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = path
            .parse()
            .map_err(|e| TransportError::Protocol(format!("bad request path {path:?}: {e}")))?;
        let headers = req.headers_mut();
        if let Ok(host) = HeaderValue::from_str(&self.endpoint.host_header) {
            headers.insert(HOST, host);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if !self.endpoint.keep_alive {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        let response = sender.send_request(req).await.map_err(io)?;
        let status = response.status();
        let body = Limited::new(response.into_body(), self.endpoint.max_body)
            .collect()
            .await
            .map_err(|e| TransportError::Io(std::io::Error::other(e)))?
            .to_bytes();
        if !self.endpoint.keep_alive {
            self.sender = None;
        }
        Ok((status, body))
    }
}

#[async_trait]
impl Backend for Requester {
    async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
        extra: Duration,
    ) -> Result<(StatusCode, Bytes), TransportError> {
        self.request_with(method, path, body, extra).await
    }
}
