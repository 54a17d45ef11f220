//! The async driver: one task that runs a [`Session`] over a [`Transport`], a [`Clock`] and
//! optionally a [`Storage`] journal.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use wormhole_transports::{Connection, Delivery, Transport, TransportError};

use super::link::{Link, LinkEvent};

use crate::clock::Clock;
use crate::code::Code;
use crate::core::{Error, Event, Input, Output, Session};
use crate::crypto::Verifier;
use crate::storage::Storage;
use crate::wire::Welcome;

/// How long one connection attempt may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A command from the API to the driver.
pub(crate) enum Command {
    /// An input for the session, with a reply for inputs that can be refused.
    Input {
        input: Input,
        reply: Option<oneshot::Sender<Result<(), Error>>>,
    },
    /// Derive an application key (`None` until the key is confirmed).
    DeriveKey {
        purpose: Vec<u8>,
        length: usize,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    /// The serialized session state (it holds secrets).
    Serialize {
        reply: oneshot::Sender<Result<String, Error>>,
    },
    /// Stop without closing (the journal stays), replying with the serialized state.
    Suspend {
        reply: oneshot::Sender<Result<String, Error>>,
    },
}

/// Where the driver journals the session after every change.
#[derive(Clone, Debug)]
pub(crate) struct Journal {
    pub storage: Arc<dyn Storage>,
    pub key: String,
}

/// Where the verdict on an application input goes.
type Reply = oneshot::Sender<Result<(), Error>>;

type Connecting = Pin<Box<dyn Future<Output = Result<Box<dyn Connection>, TransportError>> + Send>>;

/// What the session has told the application so far. The driver updates it before handing
/// each event on, so that getters on the API side are current even while nobody awaits events.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    pub code: Option<Code>,
    pub verifier: Option<Verifier>,
    pub peer_versions: Option<serde_json::Value>,
    pub welcome: Option<Welcome>,
    pub consumed: bool,
    /// Messages given to `send` so far (restored sessions start from their count).
    pub sent_messages: u64,
    /// The serialized state of the session as it ended, for `serialize` after the end.
    pub final_state: Option<String>,
}

impl Observed {
    /// What a (restored) session already knows, before its driver runs.
    pub fn from_session(session: &Session) -> Observed {
        Observed {
            code: session.code().cloned(),
            verifier: session.verifier(),
            peer_versions: session.peer_app_versions().cloned(),
            welcome: None,
            consumed: session.code_consumed(),
            sent_messages: session.sent_messages(),
            final_state: None,
        }
    }

    fn record(&mut self, event: &Event) {
        match event {
            Event::Code(code) => self.code = Some(code.clone()),
            Event::Key { verifier } => self.verifier = Some(*verifier),
            Event::PeerVersions(v) => self.peer_versions = Some(v.clone()),
            Event::Welcome(w) => self.welcome = Some(w.clone()),
            Event::CodeConsumed => self.consumed = true,
            _ => {}
        }
    }
}

/// Everything the driver task needs.
pub(crate) struct Driver {
    pub observed: Arc<std::sync::Mutex<Observed>>,
    pub session: Session,
    pub url: String,
    pub transport: Arc<dyn Transport>,
    pub clock: Arc<dyn Clock>,
    pub journal: Option<Journal>,
    /// The journal was removed (the session is over).
    pub journal_deleted: bool,
}

impl Driver {
    /// Runs the session until it is finished. Events go to `events`; commands come from `cmds`.
    pub async fn run(
        mut self,
        mut cmds: mpsc::UnboundedReceiver<Command>,
        events: mpsc::UnboundedSender<Event>,
    ) {
        let origin = self.clock.now();
        let base = self.session.now();
        let clock = self.clock.clone();
        let now = move || base.saturating_add(clock.now().saturating_sub(origin));

        // The connection runs in its own task: this loop never awaits the transport.
        let mut conn: Option<Link> = None;
        // Links the session let go of, still closing: finished (bounded) before the driver ends.
        let mut retired: Vec<Link> = Vec::new();
        let mut connecting: Option<Connecting> = None;
        let mut cmds_open = true;
        // Replies to application inputs wait until the state they led to is journaled.
        let mut replies: Vec<(Reply, Result<(), Error>)> = Vec::new();
        let mut suspended = false;
        loop {
            // Write-ahead: the state is saved before anything it led to leaves.
            self.journal();
            for (reply, result) in replies.drain(..) {
                let _ = reply.send(result);
            }
            // Drain what the session wants done; transport failures feed back as inputs.
            while let Some(out) = self.session.poll_output() {
                match out {
                    Output::Connect => {
                        retired.retain(|link| !link.is_done());
                        retired.extend(conn.take());
                        connecting = Some(self.connect());
                    }
                    // A failed send or poll comes back as `LinkEvent::Lost`.
                    Output::Transmit(frame) => {
                        if let Some(link) = &conn {
                            link.send(frame);
                        }
                    }
                    Output::Poll => {
                        if let Some(link) = &conn {
                            link.poll();
                        }
                    }
                    Output::Disconnect => {
                        connecting = None;
                        retired.extend(conn.take());
                    }
                    Output::Event(event) => {
                        let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
                        observed.record(&event);
                        if matches!(event, Event::Closed(_)) {
                            // Before the application can learn of the end: `serialize` after
                            // it returns this.
                            observed.final_state = self.session.to_json().ok();
                        }
                        drop(observed);
                        // The application may have stopped listening; the session still
                        // finishes its close handshake.
                        let _ = events.send(event);
                    }
                }
            }
            if self.session.is_finished() || suspended {
                break;
            }
            let deadline = self.session.poll_timeout();
            // Biased, so the same inputs give the same order (the simulator relies on it); the
            // deadline first, so a busy link cannot starve the session's timers.
            tokio::select! {
                biased;
                () = wait_deadline(&*self.clock, deadline, origin, base) => {
                    let _ = self.session.handle(now(), Input::Tick);
                }
                result = wait_connecting(&mut connecting) => {
                    connecting = None;
                    let input = match result {
                        Ok(c) => {
                            let pull = c.delivery() == Delivery::Pull;
                            conn = Some(Link::spawn(c, self.clock.clone()));
                            Input::Connected { pull }
                        }
                        Err(e) => Input::ConnectFailed { reason: unreachable_reason(&self.url, &e) },
                    };
                    let _ = self.session.handle(now(), input);
                }
                event = wait_link(&mut conn) => {
                    let input = match event {
                        LinkEvent::Frame(text) => Input::Frame(text),
                        LinkEvent::Lost => Input::Disconnected,
                    };
                    if matches!(input, Input::Disconnected) {
                        conn = None;
                    }
                    let _ = self.session.handle(now(), input);
                }
                cmd = cmds.recv(), if cmds_open => match cmd {
                    Some(Command::Input { input, reply }) => {
                        let result = self.session.handle(now(), input);
                        if let Some(reply) = reply {
                            replies.push((reply, result));
                        }
                    }
                    Some(Command::DeriveKey { purpose, length, reply }) => {
                        let _ = reply.send(self.session.derive_key(&purpose, length));
                    }
                    Some(Command::Serialize { reply }) => {
                        let _ = reply.send(self.session.to_json().map_err(state_error));
                    }
                    Some(Command::Suspend { reply }) => {
                        // What the session did so far is saved; what it would do next is
                        // dropped with it (a restore redoes it).
                        self.journal();
                        for (reply, result) in replies.drain(..) {
                            let _ = reply.send(result);
                        }
                        let _ = reply.send(self.session.to_json().map_err(state_error));
                        suspended = true;
                    }
                    None => {
                        // The application dropped its handle: close politely.
                        cmds_open = false;
                        let _ = self.session.handle(now(), Input::Close);
                    }
                },
            }
        }
        for link in conn.take().into_iter().chain(retired) {
            link.finish(&*self.clock).await;
        }
    }

    /// One connection attempt, failing after [`CONNECT_TIMEOUT`] of clock time.
    fn connect(&self) -> Connecting {
        let transport = self.transport.clone();
        let url = self.url.clone();
        let timeout = self
            .clock
            .sleep_until(self.clock.now().saturating_add(CONNECT_TIMEOUT));
        Box::pin(async move {
            tokio::select! {
                biased;
                result = transport.connect(&url) => result,
                () = timeout => Err(TransportError::Unreachable {
                    url,
                    reason: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                }),
            }
        })
    }

    /// Saves the state if it changed since the last save; removes the journal once the
    /// session is over. A state that cannot be serialized is never written over a good one.
    fn journal(&mut self) {
        let Some(j) = &self.journal else { return };
        if self.session.is_finished() {
            if !self.journal_deleted {
                self.journal_deleted = true;
                if let Err(e) = j.storage.delete(&j.key) {
                    tracing::warn!(error = %e, "could not remove the finished session's journal");
                }
            }
            return;
        }
        match self.session.take_changed_state() {
            Ok(None) => {}
            Ok(Some(state)) => {
                if let Err(e) = j.storage.put(&j.key, state.as_bytes()) {
                    // The exchange goes on; the state is offered again after the next input.
                    tracing::warn!(error = %e, "could not journal the session state");
                    self.session.journal_failed();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "could not serialize the session state; the journal keeps the last good one");
            }
        }
    }
}

/// A state error as the API's error (its message never holds the state).
pub(crate) fn state_error(e: crate::core::StateError) -> Error {
    if let crate::core::StateError::Malformed(json) = &e {
        // serde's own message may quote the malformed part, which may be a secret.
        return Error::BadState(format!(
            "{e} ({:?} error at line {}, column {})",
            json.classify(),
            json.line(),
            json.column()
        ));
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    Error::BadState(text)
}

/// "URL: why", for [`Error::RelayUnreachable`].
fn unreachable_reason(url: &str, e: &TransportError) -> String {
    match e {
        TransportError::Unreachable { url, reason } => format!("{url}: {reason}"),
        other => format!("{url}: {other}"),
    }
}

async fn wait_connecting(
    connecting: &mut Option<Connecting>,
) -> Result<Box<dyn Connection>, TransportError> {
    match connecting {
        Some(fut) => fut.await,
        None => std::future::pending().await,
    }
}

async fn wait_link(conn: &mut Option<Link>) -> LinkEvent {
    match conn {
        Some(link) => link.next().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until the session-time `deadline`, converted to clock time.
async fn wait_deadline(
    clock: &dyn Clock,
    deadline: Option<Duration>,
    origin: Duration,
    base: Duration,
) {
    match deadline {
        Some(d) => {
            clock
                .sleep_until(origin.saturating_add(d.saturating_sub(base)))
                .await
        }
        None => std::future::pending().await,
    }
}
