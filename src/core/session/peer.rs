//! Frames from the relay, the key exchange and the numbered phases.

use rand::RngCore;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::state::{Claim, KeyState, MailboxState, NameplateState, PeerMessage};
use super::{phase_number, Error, Event, Mood, Session};
use crate::code::{Code, Nameplate};
use crate::crypto::{self, Pake};
use crate::wire::{ClientMessage, ServerFrame, ServerMessage};

impl Session {
    pub(super) fn frame(&mut self, text: &str) {
        let frame = match ServerFrame::parse(text) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a malformed frame from the relay");
                return;
            }
        };
        match frame.message {
            ServerMessage::Welcome { welcome } => {
                if let Some(err) = &welcome.error {
                    self.end(Mood::Unwelcome, Err(Error::Unwelcome(err.clone())));
                }
                self.emit(Event::Welcome(welcome));
            }
            ServerMessage::Nameplates { nameplates } => {
                let list = nameplates
                    .into_iter()
                    .filter_map(|n| Nameplate::new(&n.id).ok())
                    .collect();
                self.emit(Event::Nameplates(list));
            }
            ServerMessage::Allocated { nameplate } => self.allocated(&nameplate),
            ServerMessage::Claimed { mailbox } => {
                if let NameplateState::Known { claim, .. } = &mut self.nameplate.state {
                    if *claim != Claim::Released {
                        *claim = Claim::Claimed;
                    }
                    if self.mailbox.state == MailboxState::None {
                        self.mailbox.state = MailboxState::Known { id: mailbox };
                    }
                }
            }
            ServerMessage::Released => {
                if let NameplateState::Known { claim, .. } = &mut self.nameplate.state {
                    if *claim != Claim::Released {
                        *claim = Claim::Released;
                        self.emit(Event::CodeConsumed);
                    }
                }
            }
            ServerMessage::Message {
                side, phase, body, ..
            } => {
                if let Some(check) = &mut self.mailbox.replay_check {
                    check.seen.insert(format!("{side}/{phase}"));
                }
                if side == self.side {
                    self.echoed(&phase);
                } else {
                    self.peer_message(PeerMessage { side, phase, body });
                }
            }
            ServerMessage::Pong { pong } => self.pong(pong),
            ServerMessage::Closed => {
                if let MailboxState::Known { id } = &self.mailbox.state {
                    self.mailbox.state = MailboxState::Closed { id: id.clone() };
                }
            }
            ServerMessage::Error { error, orig } => {
                let of_claim = orig.get("type").and_then(Value::as_str) == Some("claim");
                if of_claim && error == "reclaimed" && self.mailbox.state != MailboxState::None {
                    // A restored older state claimed again what this side had already claimed
                    // and released: the mailbox is known, the nameplate is done with.
                    if let NameplateState::Known { claim, .. } = &mut self.nameplate.state {
                        *claim = Claim::Released;
                    }
                    return;
                }
                if of_claim {
                    // A refused claim holds nothing on the relay.
                    if let NameplateState::Known { claim, .. } = &mut self.nameplate.state {
                        if *claim == Claim::Requested {
                            *claim = Claim::Unclaimed;
                        }
                    }
                }
                if self.closing() {
                    // Re-sent release/close after a reconnect may be refused; we are leaving.
                    tracing::debug!(%error, "relay error while closing");
                    self.finish();
                } else if error == "crowded" {
                    self.end(Mood::Errory, Err(Error::Crowded));
                } else {
                    self.end(Mood::Errory, Err(Error::Relay(error)));
                }
            }
            ServerMessage::Ack { .. } | ServerMessage::Unknown => {}
        }
    }

    /// The relay echoed one of our adds.
    fn echoed(&mut self, phase: &str) {
        self.mailbox.unechoed.retain(|(p, _)| p != phase);
        self.mailbox.echoed.insert(phase.to_string());
    }

    /// The end of the relay's replay after a re-open: every message of ours it had echoed
    /// before must have been replayed, or the mailbox is not the one we left.
    fn pong(&mut self, pong: i64) {
        let Some(check) = self.mailbox.replay_check.take_if(|c| c.ping == pong) else {
            return;
        };
        let missing = self
            .mailbox
            .echoed
            .iter()
            .any(|phase| !check.seen.contains(&format!("{}/{phase}", self.side)));
        if missing && !self.closing() {
            tracing::info!("the relay no longer has our mailbox");
            self.end(Mood::Errory, Err(Error::MailboxExpired));
        }
    }

    fn allocated(&mut self, nameplate: &str) {
        let NameplateState::Allocating { words } = self.nameplate.state else {
            return;
        };
        match Nameplate::new(nameplate) {
            Ok(n) => {
                let code = Code::generate(&n, words, &mut self.rng);
                self.nameplate.state = NameplateState::Known {
                    nameplate: n,
                    allocated: true,
                    claim: Claim::Unclaimed,
                };
                self.nameplate.code = Some(code.clone());
                self.emit(Event::Code(code));
                self.start_pake();
            }
            Err(_) => self.end(
                Mood::Errory,
                Err(Error::Relay(format!(
                    "the relay allocated an invalid nameplate {nameplate:?}"
                ))),
            ),
        }
    }

    // ----- key and phases ------------------------------------------------------------------

    /// Our SPAKE2 instance: its scalar comes from the secret drawn at creation and the code,
    /// so it is the same for the same code (a restored session re-sends the very same `pake`)
    /// and unrelated for another code.
    fn our_pake(&self, code: &Code) -> Pake {
        let mut h = Sha256::new();
        h.update(b"wormhole-rs pake scalar seed v1\0");
        h.update(self.key.pake_secret);
        h.update((self.config.appid.len() as u64).to_be_bytes());
        h.update(self.config.appid.as_bytes());
        h.update(code.as_str().as_bytes());
        Pake::start(code.as_str(), &self.config.appid, h.finalize().into())
    }

    pub(super) fn start_pake(&mut self) {
        let Some(code) = &self.nameplate.code else {
            return;
        };
        if self.key.state != KeyState::Waiting {
            return;
        }
        let body = self.our_pake(code).body();
        self.key.state = KeyState::PakeSent;
        self.add("pake".into(), body);
        // The peer's pake may have arrived before our code was complete.
        self.process_held();
    }

    /// Rebuilds the shared key from the secret, the code and the peer's pake (after a
    /// restore).
    pub(super) fn ensure_key(&mut self) -> Result<(), Error> {
        if self.key.key.is_some() {
            return Ok(());
        }
        let (Some(code), Some((_, peer))) = (&self.nameplate.code, self.key.state.peer()) else {
            return Err(Error::Protocol("no key yet".into()));
        };
        match self.our_pake(code).finish(peer) {
            Ok(key) => {
                self.key.key = Some(key);
                Ok(())
            }
            Err(e) => Err(Error::Protocol(format!("bad pake message: {e}"))),
        }
    }

    fn peer_message(&mut self, msg: PeerMessage) {
        if self.closing() {
            return;
        }
        if let Some((peer_side, _)) = self.key.state.peer() {
            if peer_side != msg.side {
                tracing::warn!("ignoring a message from a third side");
                return;
            }
        }
        if self.phases.processed.contains(&msg.phase) {
            return;
        }
        // Any message of the other side means it has the code: release the nameplate.
        self.nameplate.release_wanted = true;
        if msg.phase == "pake" {
            if self.key.state == KeyState::Waiting {
                self.key.held.insert(msg.phase.clone(), msg);
                return;
            }
            self.phases.processed.insert(msg.phase.clone());
            let Ok(body) = hex::decode(&msg.body) else {
                return self.end(
                    Mood::Scary,
                    Err(Error::Protocol("pake body is not hex".into())),
                );
            };
            // The key first: only a pake that gives one enters the state.
            let Some(code) = &self.nameplate.code else {
                return;
            };
            match self.our_pake(code).finish(&body) {
                Ok(key) => self.key.key = Some(key),
                Err(e) => {
                    return self.end(
                        Mood::Scary,
                        Err(Error::Protocol(format!("bad pake message: {e}"))),
                    )
                }
            }
            self.key.state = KeyState::Derived {
                peer_side: msg.side,
                peer_pake: body,
            };
            let version = serde_json::json!({ "app_versions": self.config.app_versions });
            self.add_encrypted("version".into(), version.to_string().as_bytes());
            self.process_held();
            return;
        }
        if self.key.state.peer().is_none() {
            // Held once per phase: a replay after a reconnect does not add copies.
            self.key.held.insert(msg.phase.clone(), msg);
            return;
        }
        self.phases.processed.insert(msg.phase.clone());
        if let Err(e) = self.ensure_key() {
            return self.end(Mood::Scary, Err(e));
        }
        let Some(key) = &self.key.key else { return };
        let plaintext = match hex::decode(&msg.body) {
            Ok(body) => {
                let phase_key = crypto::derive_phase_key(key, &msg.side, &msg.phase);
                crypto::open(&phase_key, &body).ok()
            }
            Err(_) => None,
        };
        let Some(plaintext) = plaintext else {
            return self.end(Mood::Scary, Err(Error::WrongCode));
        };
        if let KeyState::Derived {
            peer_side,
            peer_pake,
        } = &self.key.state
        {
            let verifier = crypto::verifier(key);
            self.key.state = KeyState::Confirmed {
                peer_side: peer_side.clone(),
                peer_pake: peer_pake.clone(),
            };
            self.emit(Event::Key { verifier });
            self.flush_outbox();
        }
        if msg.phase == "version" {
            let versions = serde_json::from_slice::<Value>(&plaintext)
                .ok()
                .and_then(|v| v.get("app_versions").cloned())
                .unwrap_or_else(|| Value::Object(Default::default()));
            self.phases.peer_versions = Some(versions.clone());
            self.emit(Event::PeerVersions(versions));
        } else if let Some(n) = phase_number(&msg.phase) {
            self.phases.inbox.insert(n, plaintext);
            while let Some(data) = self.phases.inbox.remove(&self.phases.next_in) {
                self.phases.next_in += 1;
                self.phases.unread.push_back(data.clone());
                self.emit(Event::Data(data));
            }
        } else {
            tracing::debug!(phase = %msg.phase, "ignoring an unknown phase");
        }
    }

    pub(super) fn process_held(&mut self) {
        let mut held = std::mem::take(&mut self.key.held);
        // The pake first, so that the rest can be decrypted.
        let pake = held.remove("pake");
        for msg in pake.into_iter().chain(held.into_values()) {
            self.peer_message(msg);
        }
    }

    pub(super) fn flush_outbox(&mut self) {
        if !self.is_confirmed() || self.closing() {
            return;
        }
        while let Some(data) = self.phases.outbox.pop_front() {
            let phase = self.phases.next_out.to_string();
            self.phases.next_out += 1;
            self.add_encrypted(phase, &data);
        }
    }

    /// Seals `plaintext` for `phase` under a fresh nonce. The sealed body is kept (and
    /// journaled) until the relay echoes it, so it is re-sent byte for byte, never re-sealed;
    /// a restored session draws its nonces from a generator mixed with fresh randomness.
    fn add_encrypted(&mut self, phase: String, plaintext: &[u8]) {
        if let Err(e) = self.ensure_key() {
            return self.end(Mood::Errory, Err(e));
        }
        let Some(key) = &self.key.key else { return };
        let phase_key = crypto::derive_phase_key(key, &self.side, &phase);
        let mut nonce = [0u8; 24];
        self.rng.fill_bytes(&mut nonce);
        let body = crypto::seal(&phase_key, &nonce, plaintext);
        self.add(phase, body);
    }

    /// Records an add; it is transmitted now if the mailbox is open on this connection, and
    /// again after every reconnect until the relay echoes it.
    fn add(&mut self, phase: String, body: Vec<u8>) {
        let body = hex::encode(body);
        if self.connection.sent.open && self.link_up() {
            self.transmit(ClientMessage::Add {
                phase: phase.clone(),
                body: body.clone(),
            });
        }
        self.mailbox.unechoed.push((phase, body));
    }
}
