//! The exchange itself: a [`Wormhole`]'s operations (code, messages, verifier, close), each
//! handed to the driver task, which starts on first use, and waited on through its events.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use wormhole_transports::Transport;

use super::driver::{Command, Driver};
use super::scheme::transport_for;
#[cfg(feature = "tls")]
use super::scheme::transport_for_tls;
use super::{Running, Wormhole};
use crate::code::{Code, Nameplate};
use crate::core::{Error, Event, Input};
use crate::crypto::Verifier;
use crate::wire::Welcome;

impl Wormhole {
    /// Connects (if not yet) and waits for the relay's welcome: its message of the day and
    /// the CLI version it advertises. Fails with the session's error if it ends first (e.g.
    /// [`Error::Unwelcome`] when the relay refuses service).
    pub async fn wait_welcome(&mut self) -> Result<Welcome, Error> {
        if self.welcome().is_none() && self.outcome.is_none() {
            self.start()?;
        }
        self.wait_for(|w| w.welcome().is_some()).await?;
        self.welcome().ok_or(Error::Closed)
    }

    pub(super) fn start(&mut self) -> Result<&mut Running, Error> {
        if self.running.is_none() {
            if self.outcome.is_some() {
                return Err(Error::Closed);
            }
            let transport = match &self.transport {
                Some(t) => t.clone(),
                None => self.default_transport()?,
            };
            let session = self.make_session()?;
            let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
            let (ev_tx, ev_rx) = mpsc::unbounded_channel();
            let driver = Driver {
                observed: self.observed.clone(),
                session,
                url: self.url.clone(),
                transport,
                clock: self.clock.clone(),
                journal: self.journal.clone(),
                journal_deleted: false,
            };
            tokio::spawn(driver.run(cmd_rx, ev_tx));
            self.running = Some(Running {
                cmds: cmd_tx,
                events: ev_rx,
            });
        }
        self.running.as_mut().ok_or(Error::Closed)
    }

    /// The transport the URL's scheme picks (with the TLS settings of
    /// [`with_tls`](Wormhole::with_tls), if any).
    fn default_transport(&self) -> Result<Arc<dyn Transport>, Error> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return transport_for_tls(&self.url, tls);
        }
        transport_for(&self.url)
    }

    /// Hands an input to the driver and waits for the session's verdict on it.
    async fn command(&mut self, input: Input) -> Result<(), Error> {
        if let Some(Err(e)) = &self.outcome {
            return Err(e.clone());
        }
        let running = self.start()?;
        let (tx, rx) = oneshot::channel();
        let sent = running.cmds.send(Command::Input {
            input,
            reply: Some(tx),
        });
        let result = match sent {
            Ok(()) => rx.await.unwrap_or(Err(Error::Closed)),
            Err(_) => Err(Error::Closed),
        };
        match result {
            // The session ended before it saw this input: report why it ended.
            Err(Error::Closed) => Err(self.ended().await),
            other => other,
        }
    }

    /// Reads the remaining events of a finished session and returns its error (or
    /// [`Error::Closed`] if it ended well).
    async fn ended(&mut self) -> Error {
        while self.running.is_some() {
            self.next_event().await;
        }
        match &self.outcome {
            Some(Err(e)) => e.clone(),
            _ => Error::Closed,
        }
    }

    /// Waits for the next event and records what it tells. `None` once the session is over.
    pub(super) async fn next_event(&mut self) -> Option<Event> {
        let running = self.running.as_mut()?;
        let event = running.events.recv().await;
        match &event {
            Some(Event::Nameplates(n)) => self.nameplates = Some(n.clone()),
            // Recorded in `observed` by the driver.
            Some(
                Event::Code(_)
                | Event::Key { .. }
                | Event::PeerVersions(_)
                | Event::Welcome(_)
                | Event::CodeConsumed,
            ) => {}
            Some(Event::Data(d)) => self.data.push_back(d.clone()),
            Some(Event::Closed(outcome)) => {
                self.outcome = Some(outcome.clone());
                self.running = None;
            }
            None => {
                if self.outcome.is_none() {
                    self.outcome = Some(Err(Error::Closed));
                }
                self.running = None;
            }
        }
        event
    }

    /// Waits until `done` holds, or the session ends (its error, or [`Error::Closed`]).
    async fn wait_for(&mut self, done: impl Fn(&Wormhole) -> bool) -> Result<(), Error> {
        if self.saved.is_some() && !done(self) {
            // A restored wormhole resumes as soon as it is waited on.
            self.start()?;
        }
        loop {
            if done(self) {
                return Ok(());
            }
            if let Some(outcome) = &self.outcome {
                return Err(outcome.clone().err().unwrap_or(Error::Closed));
            }
            if self.running.is_none() {
                return Err(Error::Closed);
            }
            self.next_event().await;
        }
    }

    /// Asks the relay for a nameplate and returns the new code (`words` secret words; the
    /// Python CLI uses 2). Show it to the other person.
    pub async fn allocate_code(&mut self, words: usize) -> Result<Code, Error> {
        self.command(Input::Allocate { words }).await?;
        self.wait_for(|w| w.code().is_some()).await?;
        self.code().ok_or(Error::Closed)
    }

    /// Uses a code typed in by the user.
    pub async fn set_code(&mut self, code: Code) -> Result<(), Error> {
        if self.code().as_ref() == Some(&code) {
            // Already in use (e.g. a restored wormhole): nothing to do.
            return Ok(());
        }
        self.command(Input::SetCode(code.clone())).await?;
        self.observed().code = Some(code);
        Ok(())
    }

    /// Claims a nameplate before the rest of the code is typed (interactive entry).
    pub async fn claim_nameplate(&mut self, nameplate: Nameplate) -> Result<(), Error> {
        self.command(Input::ClaimNameplate(nameplate)).await
    }

    /// Lists the nameplates in use on the relay for this app id.
    pub async fn list_nameplates(&mut self) -> Result<Vec<Nameplate>, Error> {
        self.nameplates = None;
        self.command(Input::List).await?;
        self.wait_for(|w| w.nameplates.is_some()).await?;
        self.nameplates.take().ok_or(Error::Closed)
    }

    /// Sends one message to the other side. It is queued until the key is confirmed, and
    /// delivered even if the connection drops and comes back.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        self.command(Input::Send(data.to_vec())).await?;
        self.observed().sent_messages += 1;
        Ok(())
    }

    /// Waits for the next message from the other side.
    pub async fn recv(&mut self) -> Result<Vec<u8>, Error> {
        self.wait_for(|w| !w.data.is_empty()).await?;
        let data = self.data.pop_front().ok_or(Error::Closed)?;
        // Read: it leaves the saved state (until now a restore would hand it over again).
        if let Some(running) = &self.running {
            let _ = running.cmds.send(Command::Input {
                input: Input::DataRead,
                reply: None,
            });
        }
        Ok(data)
    }

    /// Waits until the key is confirmed and returns the verifier.
    pub async fn verify(&mut self) -> Result<Verifier, Error> {
        self.wait_for(|w| w.verifier().is_some()).await?;
        self.verifier().ok_or(Error::Closed)
    }

    /// Derives a key for the application's own use from the shared key (HKDF-SHA256 with
    /// `purpose`, at most 8160 bytes), as magic-wormhole's `derive_key`. Both sides get the
    /// same bytes for the same purpose. Available once the key is confirmed, until the session
    /// ends.
    pub async fn derive_key(&mut self, purpose: &[u8], length: usize) -> Result<Vec<u8>, Error> {
        self.verify().await?;
        let running = self.running.as_mut().ok_or(Error::Closed)?;
        let (tx, rx) = oneshot::channel();
        running
            .cmds
            .send(Command::DeriveKey {
                purpose: purpose.to_vec(),
                length,
                reply: tx,
            })
            .map_err(|_| Error::Closed)?;
        rx.await.ok().flatten().ok_or(Error::Closed)
    }

    /// Closes the session politely (releases the nameplate, closes the mailbox) and returns
    /// how it ended.
    pub async fn close(&mut self) -> Result<(), Error> {
        if let Some(outcome) = &self.outcome {
            return outcome.clone();
        }
        if self.running.is_none() && self.saved.is_none() {
            self.outcome = Some(Ok(()));
            return Ok(());
        }
        let _ = self.command(Input::Close).await;
        while self.running.is_some() {
            self.next_event().await;
        }
        self.outcome.clone().unwrap_or(Ok(()))
    }

    /// Sends `mine`, waits for the other side's message, closes, and returns that message: the
    /// seed's one-shot exchange.
    pub async fn get_data(&mut self, mine: &[u8]) -> Result<Vec<u8>, Error> {
        self.send(mine).await?;
        let theirs = self.recv().await;
        let closed = self.close().await;
        let theirs = theirs?;
        if let Err(e) = closed {
            tracing::debug!(error = %e, "close after a successful exchange failed");
        }
        Ok(theirs)
    }
}
