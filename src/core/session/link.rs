//! The connection machine: coming up and going down, timers, and the frames each state of
//! the other machines calls for on the current connection.

use std::time::Duration;

use serde_json::Value;

use super::state::{Claim, Ending, Link, MailboxState, NameplateState, ReplayCheck, Sent};
use super::{Error, Mood, Output, Session, CLIENT_VERSION};
use crate::core::schedule::{jitter, reconnect_delay, STABLE_CONNECTION};
use crate::wire::{ClientFrame, ClientMessage};

impl Session {
    pub(super) fn connected(&mut self, pull: bool) {
        let c = &mut self.connection;
        if c.link != Link::Connecting {
            return;
        }
        c.link = Link::Up { pull };
        c.ever_connected = true;
        // The back-off starts over only once this connection proves healthy (see
        // `connection_lost`), not merely because it opened.
        c.up_since = Some(self.now);
        c.sent = Sent::default();
        c.serial = c.serial.saturating_add(1);
        let next_poll = self.next_poll_after(self.now);
        let c = &mut self.connection;
        c.next_poll = pull.then_some(next_poll);
        self.mailbox.replay_check = None;
        self.transmit(ClientMessage::Bind {
            appid: self.config.appid.clone(),
            side: self.side.clone(),
            client_version: Some(Value::from(vec![CLIENT_VERSION.0, CLIENT_VERSION.1])),
        });
    }

    pub(super) fn connection_lost(&mut self, reason: Option<String>) {
        if matches!(self.connection.link, Link::Gone | Link::Down { .. }) {
            return;
        }
        if !self.connection.ever_connected {
            // The first connection failed: say so at once rather than retrying in silence.
            self.connection.link = Link::Gone;
            let reason = reason.unwrap_or_else(|| "the connection was refused".into());
            self.end(Mood::Errory, Err(Error::RelayUnreachable(reason)));
            return;
        }
        let c = &mut self.connection;
        let up_for = c.up_since.take().map(|t| self.now.saturating_sub(t));
        if up_for.is_some_and(|d| d >= STABLE_CONNECTION) {
            c.attempts = 0;
        }
        #[cfg(feature = "fault-injection")]
        if self.config.faults.forget_unechoed {
            // Deliberate fault: what the relay has not echoed is never sent again.
            self.mailbox.unechoed.clear();
        }
        let schedule_time = self.schedule_time();
        let c = &mut self.connection;
        let nominal = reconnect_delay(&self.config.schedule, schedule_time, c.attempts);
        let delay = jitter(nominal, &mut self.rng);
        c.attempts = c.attempts.saturating_add(1);
        c.link = Link::Down {
            retry_at: self.now.saturating_add(delay),
        };
        c.sent = Sent::default();
        self.mailbox.replay_check = None;
        tracing::debug!(
            ?delay,
            attempt = c.attempts,
            "connection lost; will reconnect"
        );
    }

    pub(super) fn check_timers(&mut self) {
        if let Link::Down { retry_at } = self.connection.link {
            if self.now >= retry_at {
                self.connection.link = Link::Connecting;
                self.outputs.push_back(Output::Connect);
            }
        }
        if let (Link::Up { pull: true }, Some(at)) =
            (self.connection.link, self.connection.next_poll)
        {
            if self.now >= at {
                self.outputs.push_back(Output::Poll);
                self.connection.next_poll = Some(self.next_poll_after(self.now));
            }
        }
        match &self.ending.state {
            Ending::Finished { .. } => {}
            Ending::Running => {
                if self.ending.timeout_at.is_some_and(|t| self.now >= t) {
                    self.end(Mood::Lonely, Err(Error::Timeout));
                    if !self.link_up() {
                        // A hard deadline does not wait for a reconnection: close politely
                        // only where the relay can be reached now.
                        self.finish();
                    }
                }
            }
            Ending::Closing {
                deadline, outcome, ..
            } => {
                if self.now < *deadline {
                    return;
                }
                // A successful close whose messages the relay has not stored yet keeps
                // trying until the hard timeout: ending at the close grace would report
                // success for messages the other side never gets.
                if outcome.is_ok() && !self.mailbox.unechoed.is_empty() {
                    let timeout_at = self.ending.timeout_at;
                    match timeout_at {
                        Some(t) if self.now >= t => {
                            tracing::info!(
                                pending = self.mailbox.unechoed.len(),
                                "timed out before the relay stored our last messages"
                            );
                            if let Ending::Closing { mood, outcome, .. } = &mut self.ending.state {
                                *mood = Mood::Lonely;
                                *outcome = Err(Error::Timeout);
                            }
                            self.finish();
                        }
                        later => {
                            if let Ending::Closing { deadline, .. } = &mut self.ending.state {
                                *deadline = later.unwrap_or(Duration::MAX);
                            }
                        }
                    }
                    return;
                }
                tracing::debug!("close handshake did not finish in time; ending anyway");
                self.finish();
            }
        }
    }

    /// The time at which the schedule is read: now (or, with the deliberate fault
    /// `schedule_off_by_one`, the start of the next step, so the next step's interval is used
    /// one step early).
    fn schedule_time(&self) -> Duration {
        #[cfg(feature = "fault-injection")]
        if self.config.faults.schedule_off_by_one {
            if let Some(&(when, _)) = self
                .config
                .schedule
                .steps()
                .iter()
                .find(|(when, _)| *when > self.now)
            {
                return when;
            }
        }
        self.now
    }

    /// When the poll after one at `at` is due: `at` plus the schedule's interval.
    fn next_poll_after(&self, at: Duration) -> Duration {
        at.saturating_add(self.config.schedule.interval_at(self.schedule_time()))
    }

    pub(super) fn link_up(&self) -> bool {
        matches!(self.connection.link, Link::Up { .. })
    }

    /// Sends whatever the current state calls for and this connection has not carried yet.
    pub(super) fn pump(&mut self) {
        if !self.link_up() || self.is_finished() {
            return;
        }
        if self.connection.list_wanted {
            self.connection.list_wanted = false;
            self.transmit(ClientMessage::List);
        }
        self.pump_nameplate();
        self.pump_mailbox();
    }

    fn pump_nameplate(&mut self) {
        let closing = self.closing();
        match &mut self.nameplate.state {
            NameplateState::None => {}
            NameplateState::Allocating { .. } => {
                if !closing && !self.connection.sent.allocate {
                    self.connection.sent.allocate = true;
                    self.transmit(ClientMessage::Allocate);
                }
            }
            NameplateState::Known {
                nameplate,
                allocated,
                claim,
            } => {
                let nameplate = nameplate.as_str().to_string();
                // While closing, a nameplate the relay may hold for us (allocated, or claimed
                // with no answer yet) is claimed again so that it can be released; one only
                // typed in is not worth claiming any more.
                let must_claim = match claim {
                    Claim::Unclaimed => !closing || *allocated,
                    Claim::Requested => true,
                    Claim::Claimed | Claim::Released => false,
                };
                let release = *claim == Claim::Claimed && self.nameplate.release_wanted;
                if must_claim && !self.connection.sent.claim {
                    self.connection.sent.claim = true;
                    *claim = Claim::Requested;
                    self.transmit(ClientMessage::Claim { nameplate });
                } else if release && !self.connection.sent.release {
                    self.connection.sent.release = true;
                    self.transmit(ClientMessage::Release {
                        nameplate: Some(nameplate),
                    });
                }
            }
        }
    }

    fn pump_mailbox(&mut self) {
        let MailboxState::Known { id } = &self.mailbox.state else {
            return;
        };
        let mailbox = id.clone();
        // A happy close still delivers our last messages; an unhappy one just leaves.
        let (closing, mood) = match &self.ending.state {
            Ending::Running => (false, None),
            Ending::Closing { mood, .. } => (true, Some(*mood)),
            Ending::Finished { .. } => return,
        };
        let happy = mood == Some(Mood::Happy);
        let want_open = !closing || (happy && !self.mailbox.unechoed.is_empty());
        let sent = &self.connection.sent;
        if want_open && !sent.open && !sent.close {
            self.connection.sent.open = true;
            self.transmit(ClientMessage::Open {
                mailbox: mailbox.clone(),
            });
            if !self.mailbox.echoed.is_empty() {
                // The relay replays the mailbox on `open`; the `pong` marks the end of it.
                let ping = self.connection.serial;
                self.mailbox.replay_check = Some(ReplayCheck {
                    ping,
                    seen: Default::default(),
                });
                self.transmit(ClientMessage::Ping { ping });
            }
            for (phase, body) in self.mailbox.unechoed.clone() {
                self.transmit(ClientMessage::Add { phase, body });
            }
        }
        if let Some(mood) = mood {
            if !self.connection.sent.close {
                self.connection.sent.close = true;
                self.transmit(ClientMessage::Close {
                    mailbox: Some(mailbox),
                    mood: Some(mood.as_str().into()),
                });
            }
        }
    }

    pub(super) fn transmit(&mut self, message: ClientMessage) {
        self.outputs
            .push_back(Output::Transmit(ClientFrame::new(message).to_json()));
    }
}
