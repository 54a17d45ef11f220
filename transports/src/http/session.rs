//! One HTTP-polling session on the relay side: the state its requests share with the
//! [`Connection`] the relay runner drives.
//!
//! Requests (handled by [`super::server`]) post frames into the session and read the frames the
//! relay queued for it; the runner reads the posted frames with [`Connection::recv`] and queues
//! its answers with [`Connection::send_all`]. A session expires when no request touched it for
//! its idle timeout (a long poll in progress keeps it alive): `recv` then ends, which the
//! runner treats as a dropped connection.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::peers::Instance;
use crate::{Connection, PeerInfo, TransportError};

/// The live sessions of one relay, by id, and the generator of their ids.
pub(crate) struct Registry {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    rng: Mutex<ChaCha20Rng>,
    /// This process's tag, the first part of every id when processes share sessions.
    instance: Option<Instance>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("sessions", &lock(&self.sessions).len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    /// A registry whose session ids come from ChaCha20 seeded with `seed`, tagged with
    /// `instance` when given.
    pub fn new(seed: [u8; 32], instance: Option<Instance>) -> Registry {
        Registry {
            sessions: Mutex::new(HashMap::new()),
            rng: Mutex::new(ChaCha20Rng::from_seed(seed)),
            instance,
        }
    }

    /// This process's tag, if sessions are shared with other processes.
    pub fn instance(&self) -> Option<Instance> {
        self.instance
    }

    /// A fresh id: 128 random bits as 32 lowercase hex digits, after the instance tag and a
    /// dot (`<16 hex>.<32 hex>`) when there is one.
    fn new_id(&self) -> String {
        let mut bytes = [0u8; 16];
        lock(&self.rng).fill_bytes(&mut bytes);
        let mut id = String::with_capacity(49);
        if let Some(instance) = self.instance {
            id.push_str(&instance.to_string());
            id.push('.');
        }
        for b in bytes {
            id.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            id.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
        }
        id
    }

    /// Registers a new session and returns it with the connection the runner drives.
    pub fn open(
        self: &Arc<Self>,
        peer: PeerInfo,
        idle_timeout: Duration,
        budget: usize,
    ) -> (Arc<Session>, SessionConn) {
        let mut sessions = lock(&self.sessions);
        let id = loop {
            let id = self.new_id();
            if !sessions.contains_key(&id) {
                break id;
            }
        };
        let session = Arc::new(Session {
            id: id.clone(),
            state: Mutex::new(State {
                inbound: VecDeque::new(),
                posted: 0,
                handled: 0,
                last_seq: 0,
                last_seq_posted: 0,
                out: VecDeque::new(),
                out_first: 1,
                out_bytes: 0,
                in_flight: 0,
                last_active: Instant::now(),
                closed: false,
            }),
            to_relay: Notify::new(),
            to_clients: Notify::new(),
            idle_timeout,
            budget,
        });
        sessions.insert(id, session.clone());
        let conn = SessionConn {
            session: session.clone(),
            registry: self.clone(),
            peer,
        };
        (session, conn)
    }

    /// The live session with this id.
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.sessions).get(id).cloned()
    }

    /// Forgets a session (it stays usable to whoever holds it, until closed).
    pub fn remove(&self, id: &str) {
        lock(&self.sessions).remove(id);
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        lock(&self.sessions).len()
    }
}

/// One session's shared state. The id is a bearer secret: it is never logged.
pub(crate) struct Session {
    id: String,
    state: Mutex<State>,
    /// Wakes the runner's `recv`: posted frames, the end of a request, the close.
    to_relay: Notify,
    /// Wakes requests: queued frames, frames handled, the close.
    to_clients: Notify,
    idle_timeout: Duration,
    budget: usize,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

struct State {
    /// Frames posted and not yet read by the runner.
    inbound: VecDeque<String>,
    /// Frames ever posted.
    posted: u64,
    /// Frames the runner reported handled (with everything they caused queued).
    handled: u64,
    /// The `seq` of the last `send` applied, and `posted` after it.
    last_seq: u64,
    last_seq_posted: u64,
    /// Frames for the client not yet acknowledged; `out[0]` has number `out_first`.
    out: VecDeque<String>,
    out_first: u64,
    out_bytes: usize,
    /// Requests in progress (a session is never idle while one is).
    in_flight: u32,
    /// When the last request ended (or the session opened).
    last_active: Instant,
    closed: bool,
}

impl State {
    fn last_number(&self) -> u64 {
        self.out_first + self.out.len() as u64 - 1
    }

    /// Forgets the frames up to `after`, which the client has.
    fn acknowledge(&mut self, after: u64) {
        while self.out_first <= after {
            match self.out.pop_front() {
                Some(frame) => {
                    self.out_bytes -= frame.len();
                    self.out_first += 1;
                }
                None => break,
            }
        }
        if self.out.is_empty() {
            // An idle session keeps no buffer.
            self.out = VecDeque::new();
        }
    }
}

/// Why a request on a session was refused.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The session is closed (expired, deleted, or dropped by the relay).
    Closed,
    /// `after` is beyond the last frame queued.
    CursorAhead { last: u64 },
    /// `seq` is neither the next one nor a retry of the last.
    BadSeq { expected: u64 },
}

impl Session {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Marks a request in progress until the guard is dropped.
    pub fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.lock().in_flight += 1;
        RequestGuard(self.clone())
    }

    /// Applies a `send`: queues the frames for the relay (unless `seq` is a retry of the last
    /// one) and returns how many frames must be handled before the answer.
    pub fn post(&self, seq: u64, frames: Vec<String>) -> Result<u64, Refused> {
        let mut st = self.lock();
        if st.closed {
            return Err(Refused::Closed);
        }
        if seq == st.last_seq + 1 {
            st.posted += frames.len() as u64;
            st.inbound.extend(frames);
            st.last_seq = seq;
            st.last_seq_posted = st.posted;
            let target = st.posted;
            drop(st);
            self.to_relay.notify_one();
            Ok(target)
        } else if seq == st.last_seq && seq > 0 {
            tracing::debug!(seq, "HTTP session: a retried send, not applied again");
            Ok(st.last_seq_posted)
        } else {
            Err(Refused::BadSeq {
                expected: st.last_seq + 1,
            })
        }
    }

    /// Waits until the relay handled `target` frames (or `deadline`). `false` on the deadline.
    pub async fn wait_handled(&self, target: u64, deadline: Instant) -> bool {
        loop {
            let notified = self.to_clients.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let st = self.lock();
                if st.handled >= target || st.closed {
                    return true;
                }
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }

    /// The frames after `after` as an answer body (after forgetting those up to `after`); with
    /// `wait`, waits until there is one or `deadline` passes.
    pub async fn frames_after(
        &self,
        after: u64,
        deadline: Option<Instant>,
        with_id: bool,
    ) -> Result<String, Refused> {
        loop {
            let notified = self.to_clients.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                let last = st.last_number();
                if after > last {
                    return Err(Refused::CursorAhead { last });
                }
                st.acknowledge(after);
                if st.closed {
                    return Err(Refused::Closed);
                }
                if !st.out.is_empty() || deadline.is_none() {
                    let first = (after + 1).max(st.out_first);
                    let cursor = first - 1 + st.out.len() as u64;
                    let id = with_id.then_some(self.id.as_str());
                    return Ok(super::wire::frames_json(
                        id,
                        cursor,
                        st.out.iter().map(String::as_str),
                    ));
                }
            }
            match deadline {
                Some(deadline) => tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep_until(deadline) => {
                        let st = self.lock();
                        let cursor = after.max(st.out_first - 1);
                        return Ok(super::wire::frames_json(
                            with_id.then_some(self.id.as_str()),
                            cursor,
                            std::iter::empty(),
                        ));
                    }
                },
                None => notified.await,
            }
        }
    }

    /// Closes the session from the client's side (`DELETE`).
    pub fn close(&self) {
        self.lock().closed = true;
        self.to_relay.notify_one();
        self.to_clients.notify_waiters();
    }
}

/// Keeps a session from expiring while a request is in progress; the end counts as activity.
pub(crate) struct RequestGuard(Arc<Session>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        {
            let mut st = self.0.lock();
            st.in_flight = st.in_flight.saturating_sub(1);
            st.last_active = Instant::now();
        }
        self.0.to_relay.notify_one();
    }
}

/// The relay runner's side of a session.
pub struct SessionConn {
    session: Arc<Session>,
    registry: Arc<Registry>,
    peer: PeerInfo,
}

impl fmt::Debug for SessionConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConn")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl SessionConn {
    fn shut(&self) {
        self.session.close();
        self.registry.remove(&self.session.id);
    }
}

impl Drop for SessionConn {
    fn drop(&mut self) {
        self.shut();
    }
}

#[async_trait]
impl Connection for SessionConn {
    async fn send(&mut self, frame: String) -> Result<(), TransportError> {
        self.send_all(vec![frame]).await
    }

    async fn send_all(&mut self, frames: Vec<String>) -> Result<(), TransportError> {
        // Frames travel inside JSON answers: each must be JSON itself.
        if let Some(bad) = frames
            .iter()
            .find(|f| serde_json::from_str::<serde::de::IgnoredAny>(f).is_err())
        {
            return Err(TransportError::Protocol(format!(
                "HTTP polling carries JSON frames only; refused a frame of {} bytes that is not JSON",
                bad.len()
            )));
        }
        let mut st = self.session.lock();
        if st.closed {
            return Err(TransportError::Closed);
        }
        let bytes: usize = frames.iter().map(String::len).sum();
        if st.out_bytes + bytes > self.session.budget {
            let size = st.out_bytes + bytes;
            drop(st);
            tracing::debug!(
                size,
                "HTTP session dropped: its client does not fetch its frames"
            );
            self.shut();
            return Err(TransportError::TooLarge {
                size,
                limit: self.session.budget,
            });
        }
        st.out_bytes += bytes;
        st.out.extend(frames);
        drop(st);
        self.session.to_clients.notify_waiters();
        Ok(())
    }

    async fn recv(&mut self) -> Result<Option<String>, TransportError> {
        loop {
            let notified = self.session.to_relay.notified();
            let deadline = {
                let mut st = self.session.lock();
                if let Some(frame) = st.inbound.pop_front() {
                    if st.inbound.is_empty() {
                        st.inbound = VecDeque::new();
                    }
                    return Ok(Some(frame));
                }
                if st.closed {
                    drop(st);
                    self.registry.remove(&self.session.id);
                    return Ok(None);
                }
                // `None` (no expiry) while a request is in progress, or for an idle time so
                // long that its end is past what an `Instant` can hold.
                if st.in_flight == 0 {
                    st.last_active.checked_add(self.session.idle_timeout)
                } else {
                    None
                }
            };
            match deadline {
                Some(deadline) if deadline <= Instant::now() => {
                    tracing::debug!(
                        "HTTP session expired: not polled for {:?}",
                        self.session.idle_timeout
                    );
                    self.shut();
                    return Ok(None);
                }
                Some(deadline) => tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep_until(deadline) => {}
                },
                None => notified.await,
            }
        }
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        self.shut();
        Ok(())
    }

    fn peer(&self) -> PeerInfo {
        self.peer.clone()
    }

    fn kind(&self) -> &'static str {
        "http"
    }

    fn wants_receipts(&self) -> bool {
        true
    }

    fn handled(&mut self, count: u64) {
        self.session.lock().handled = count;
        self.session.to_clients.notify_waiters();
    }
}
