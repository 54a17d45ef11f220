//! The connection's own task, so that the driver loop never awaits the transport.
//!
//! A [`Link`] owns one [`Connection`] in a task of its own. The driver hands it frames and poll
//! requests without waiting ([`Link::send`], [`Link::poll`]) and receives what the connection
//! yields as [`LinkEvent`]s. Every transport operation the task performs has a deadline on the
//! injected [`Clock`]: a send, poll or close that does not complete within [`IO_TIMEOUT`]
//! counts as a lost connection. So a stalled link can delay neither the session's hard timeout
//! nor its close grace, which the driver keeps handling meanwhile.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wormhole_transports::{Connection, TransportError};

use crate::clock::Clock;

/// How long one send, poll or close may take before the connection counts as lost.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the driver waits, at its very end, for a link to finish closing before it stops
/// the link's task.
const FINAL_CLOSE: Duration = Duration::from_secs(2);

/// What the driver asks of the link task.
enum LinkCommand {
    Send(String),
    Poll,
}

/// What the link task reports.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// A text frame arrived.
    Frame(String),
    /// The connection is gone (closed by the other end, failed, or an operation timed out).
    /// No more events follow.
    Lost,
}

/// A connection running in its own task. Dropping the link closes the connection (with a
/// deadline) in the background.
pub(crate) struct Link {
    commands: mpsc::UnboundedSender<LinkCommand>,
    events: mpsc::UnboundedReceiver<LinkEvent>,
    task: JoinHandle<()>,
}

impl Link {
    /// Starts the task that owns `conn`.
    pub fn spawn(conn: Box<dyn Connection>, clock: Arc<dyn Clock>) -> Link {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(conn, clock, command_rx, event_tx));
        Link {
            commands,
            events,
            task,
        }
    }

    /// Queues a frame; it is written in order with the frames queued with it. Never waits.
    pub fn send(&self, frame: String) {
        // A task that already ended has reported `Lost`, which the driver handles.
        let _ = self.commands.send(LinkCommand::Send(frame));
    }

    /// Asks a pull connection to fetch waiting frames. Never waits.
    pub fn poll(&self) {
        let _ = self.commands.send(LinkCommand::Poll);
    }

    /// The next event. Cancel-safe. After [`LinkEvent::Lost`] the link is useless.
    pub async fn next(&mut self) -> LinkEvent {
        self.events.recv().await.unwrap_or(LinkEvent::Lost)
    }

    /// Whether the link's task has ended (its connection is closed).
    pub fn is_done(&self) -> bool {
        self.task.is_finished()
    }

    /// Closes the connection and waits (briefly) for its task to end, so that nothing is left
    /// running when the driver stops.
    pub async fn finish(self, clock: &dyn Clock) {
        let Link { commands, task, .. } = self;
        drop(commands); // the task closes the connection and ends
        let abort = task.abort_handle();
        let bounded = clock.sleep_until(clock.now().saturating_add(FINAL_CLOSE));
        tokio::select! {
            biased;
            _ = task => {}
            () = bounded => abort.abort(),
        }
    }
}

/// `op` with the link's deadline; a timeout is an I/O error like any other.
async fn bounded<T>(
    clock: &dyn Clock,
    what: &str,
    op: impl Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    let deadline = clock.sleep_until(clock.now().saturating_add(IO_TIMEOUT));
    tokio::select! {
        biased;
        result = op => result,
        () = deadline => Err(TransportError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{what} did not complete within {} s", IO_TIMEOUT.as_secs()),
        ))),
    }
}

async fn run(
    mut conn: Box<dyn Connection>,
    clock: Arc<dyn Clock>,
    mut commands: mpsc::UnboundedReceiver<LinkCommand>,
    events: mpsc::UnboundedSender<LinkEvent>,
) {
    loop {
        tokio::select! {
            biased;
            command = commands.recv() => {
                let result = match command {
                    Some(LinkCommand::Send(first)) => {
                        // Everything queued by now goes out with one flush.
                        let mut frames = vec![first];
                        let mut poll_after = false;
                        while let Ok(next) = commands.try_recv() {
                            match next {
                                LinkCommand::Send(frame) => frames.push(frame),
                                LinkCommand::Poll => poll_after = true,
                            }
                        }
                        let sent = bounded(&*clock, "a send", conn.send_all(frames)).await;
                        match sent {
                            Ok(()) if poll_after => bounded(&*clock, "a poll", conn.poll()).await,
                            other => other,
                        }
                    }
                    Some(LinkCommand::Poll) => bounded(&*clock, "a poll", conn.poll()).await,
                    None => {
                        // The driver is done with this connection.
                        if let Err(e) = bounded(&*clock, "the close", conn.close()).await {
                            tracing::debug!(error = %e, "closing the connection failed");
                        }
                        return;
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection lost");
                    let _ = events.send(LinkEvent::Lost);
                    return;
                }
            }
            frame = conn.recv() => match frame {
                Ok(Some(text)) => {
                    if events.send(LinkEvent::Frame(text)).is_err() {
                        let _ = bounded(&*clock, "the close", conn.close()).await;
                        return;
                    }
                }
                Ok(None) => {
                    let _ = events.send(LinkEvent::Lost);
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "connection failed");
                    let _ = events.send(LinkEvent::Lost);
                    return;
                }
            },
        }
    }
}
