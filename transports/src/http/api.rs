//! The session endpoints of the polling API, on parsed parts (session id, query, body text)
//! rather than hyper requests, so that a request forwarded from another relay process
//! ([`super::peers`]) is served by the same code as one of this process's own.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::peers::{ForwardError, ForwardKind, ForwardedRequest, ForwardedResponse, Instance};
use super::server::deadline_in;
use super::session::{Refused, Session};
use super::wire::{error_json, SendBody};
use super::HttpPolling;

/// An answer of the API: a status and a JSON body.
#[derive(Debug)]
pub(super) struct Answer {
    pub status: StatusCode,
    pub body: String,
}

impl Answer {
    fn json(status: StatusCode, body: String) -> Answer {
        Answer { status, body }
    }

    /// `{"error": TEXT, ...extra}` (logged at debug level; never with a session id).
    pub fn error(status: StatusCode, text: &str, extra: &[(&str, serde_json::Value)]) -> Answer {
        tracing::debug!(%status, "HTTP polling: {text}");
        Answer::json(status, error_json(text, extra))
    }

    fn unknown_session() -> Answer {
        Answer::error(
            StatusCode::NOT_FOUND,
            "unknown session (it expired, was closed, or the relay restarted): open a new one",
            &[],
        )
    }

    fn refused(refused: Refused) -> Answer {
        match refused {
            Refused::Closed => Answer::error(
                StatusCode::GONE,
                "the session is closed: open a new one",
                &[],
            ),
            Refused::CursorAhead { last } => Answer::error(
                StatusCode::BAD_REQUEST,
                &format!("after is beyond the last frame of this session ({last})"),
                &[("last", last.into())],
            ),
            Refused::BadSeq { expected } => Answer::error(
                StatusCode::CONFLICT,
                &format!(
                    "seq out of order: expected {expected} (or the last one again, to retry it)"
                ),
                &[("expected", expected.into())],
            ),
        }
    }
}

/// Extra time a forwarding process gives the owner past the owner's own deadline.
const FORWARD_MARGIN: Duration = Duration::from_secs(1);

/// `after` and `wait` of an `events` query (`wait` cut to `max_wait`).
fn parse_events_query(query: &str, max_wait: Duration) -> Result<(u64, Duration), Answer> {
    let mut after = 0u64;
    let mut wait = Duration::ZERO;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "after" => match value.parse() {
                Ok(v) => after = v,
                Err(_) => {
                    return Err(Answer::error(
                        StatusCode::BAD_REQUEST,
                        &format!("after must be a frame number (0 or more), not {value:?}"),
                        &[],
                    ))
                }
            },
            "wait" => match value.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => {
                    wait = Duration::from_secs_f64(v.min(max_wait.as_secs_f64()))
                }
                _ => {
                    return Err(Answer::error(
                        StatusCode::BAD_REQUEST,
                        &format!("wait must be a number of seconds (0 or more), not {value:?}"),
                        &[],
                    ))
                }
            },
            _ => {}
        }
    }
    Ok((after, wait))
}

impl HttpPolling {
    /// `POST …/send`, `GET …/events` or `DELETE …` for session `id`: served here if this
    /// process owns the session, forwarded to its owner otherwise.
    pub(super) async fn session_request(
        &self,
        kind: ForwardKind,
        id: &str,
        req: Request<Incoming>,
    ) -> Answer {
        let owner = self.remote_owner(id);
        if owner.is_none() && self.registry.get(id).is_none() {
            return Answer::unknown_session();
        }
        let query = req.uri().query().unwrap_or("").to_owned();
        let body = match kind {
            ForwardKind::Send => match self.read_body(req).await {
                Ok(body) => body,
                Err(answer) => return answer,
            },
            ForwardKind::Events | ForwardKind::Delete => String::new(),
        };
        let request = ForwardedRequest {
            kind,
            session: id.to_owned(),
            query,
            body,
        };
        match owner {
            Some(owner) => self.forward(owner, request).await,
            None => self.serve_local(request).await,
        }
    }

    /// Serves a request another relay process forwarded here, exactly as one of this
    /// process's own: for a session this process does not hold, 404 (never forwarded on).
    pub async fn serve_forwarded(&self, request: ForwardedRequest) -> ForwardedResponse {
        let answer = self.serve_local(request).await;
        ForwardedResponse {
            status: answer.status.as_u16(),
            body: answer.body,
        }
    }

    /// The owner of session `id` when that is another process (sessions shared, and the id
    /// names an owner other than this process).
    fn remote_owner(&self, id: &str) -> Option<Instance> {
        let own = self.registry.instance()?;
        Instance::of_session(id).filter(|owner| *owner != own)
    }

    /// Reads a `send`'s body: size-limited, with a deadline, UTF-8.
    async fn read_body(&self, req: Request<Incoming>) -> Result<String, Answer> {
        let limit = self.options.max_body_bytes;
        let read = Limited::new(req.into_body(), limit).collect();
        let bytes = match tokio::time::timeout(self.options.request_timeout, read).await {
            Err(_) => {
                return Err(Answer::error(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time",
                    &[],
                ))
            }
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(Answer::error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the request body is larger than {limit} bytes"),
                    &[("limit", limit.into())],
                ))
            }
            Ok(Err(e)) => {
                return Err(Answer::error(
                    StatusCode::BAD_REQUEST,
                    &format!("the request body could not be read: {e}"),
                    &[],
                ))
            }
            Ok(Ok(collected)) => collected.to_bytes(),
        };
        String::from_utf8(bytes.to_vec()).map_err(|e| {
            Answer::error(
                StatusCode::BAD_REQUEST,
                &format!("the body must be JSON (UTF-8 text): {e}"),
                &[],
            )
        })
    }

    /// Has the owner serve `request`, within its own deadline plus a margin.
    async fn forward(&self, owner: Instance, request: ForwardedRequest) -> Answer {
        let Some(peers) = &self.options.peers else {
            return Answer::unknown_session();
        };
        let wait = match request.kind {
            ForwardKind::Events => {
                match parse_events_query(&request.query, self.options.max_wait) {
                    Ok((_, wait)) => wait,
                    Err(answer) => return answer,
                }
            }
            ForwardKind::Send | ForwardKind::Delete => Duration::ZERO,
        };
        if let Some(m) = &self.options.metrics {
            m.forwarded();
        }
        let deadline = deadline_in(wait + self.options.request_timeout + FORWARD_MARGIN);
        match peers.forward(owner, request, deadline).await {
            Ok(response) => match StatusCode::from_u16(response.status) {
                Ok(status) => Answer::json(status, response.body),
                Err(_) => Answer::error(
                    StatusCode::BAD_GATEWAY,
                    "the relay process that owns the session gave an invalid answer",
                    &[],
                ),
            },
            Err(ForwardError::OwnerGone) => Answer::error(
                StatusCode::NOT_FOUND,
                "unknown session (its relay process is gone): open a new one",
                &[],
            ),
            Err(ForwardError::TimedOut) => Answer::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the relay process that owns the session did not answer in time; retry",
                &[],
            ),
            Err(ForwardError::Unreachable(e)) => {
                tracing::warn!(error = %e, "HTTP polling: cannot forward to the session's owner");
                Answer::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the relay processes cannot reach each other now; retry later",
                    &[],
                )
            }
        }
    }

    /// Serves a session request on this process's own sessions.
    async fn serve_local(&self, request: ForwardedRequest) -> Answer {
        let id = request.session.as_str();
        let Some(session) = self.registry.get(id) else {
            return Answer::unknown_session();
        };
        match request.kind {
            ForwardKind::Delete => {
                session.close();
                // Unknown from now on, even before the relay has seen the close.
                self.registry.remove(id);
                Answer::json(StatusCode::OK, "{\"closed\":true}\n".into())
            }
            ForwardKind::Send => self.send(session, &request.body).await,
            ForwardKind::Events => self.events(session, &request.query).await,
        }
    }

    /// `POST /v1/http/session/ID/send`, with its body read.
    async fn send(&self, session: Arc<Session>, body: &str) -> Answer {
        let guard = session.begin_request();
        let body: SendBody = match serde_json::from_str(body) {
            Ok(body) => body,
            Err(e) => {
                return Answer::error(
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
            Err(refused) => return Answer::refused(refused),
        };
        let deadline = deadline_in(self.options.request_timeout);
        if !session.wait_handled(target, deadline).await {
            return Answer::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the relay did not handle the frames in time; retry with the same seq",
                &[],
            );
        }
        let answer = session.frames_after(body.after, None, false).await;
        drop(guard);
        match answer {
            Ok(body) => Answer::json(StatusCode::OK, body),
            Err(refused) => Answer::refused(refused),
        }
    }

    /// `GET /v1/http/session/ID/events?after=N&wait=SECS`.
    async fn events(&self, session: Arc<Session>, query: &str) -> Answer {
        let (after, wait) = match parse_events_query(query, self.options.max_wait) {
            Ok(parsed) => parsed,
            Err(answer) => return answer,
        };
        let guard = session.begin_request();
        let deadline = (!wait.is_zero()).then(|| deadline_in(wait));
        let answer = session.frames_after(after, deadline, false).await;
        drop(guard);
        match answer {
            Ok(body) => Answer::json(StatusCode::OK, body),
            Err(refused) => Answer::refused(refused),
        }
    }

    /// `POST /v1/http/session`: always opened here (this process becomes its owner).
    pub(super) async fn open(&self, peer: crate::PeerInfo) -> Answer {
        let (session, conn) =
            self.registry
                .open(peer, self.options.session_idle, self.options.queue_budget);
        let guard = session.begin_request();
        if self.sessions.try_send(Box::new(conn)).is_err() {
            drop(guard);
            return Answer::error(
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
            Ok(body) => Answer::json(StatusCode::CREATED, body),
            Err(refused) => Answer::refused(refused),
        }
    }
}
