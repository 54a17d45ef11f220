//! `wormhole`: exchange a small secret message between two computers with a short human code
//! like `7-guitarist-revenge`, compatible with magic-wormhole.
//!
//! Layers, from the bottom: [`code`] (codes and the PGP word list), [`crypto`] (SPAKE2, HKDF,
//! secretbox), [`wire`] (relay messages), [`core`] (the sans-IO client state machine),
//! [`relay`] (the sans-IO mailbox server and its runner), then the async API and its
//! [`blocking`] wrappers.

#![warn(missing_docs)]

mod api;
pub mod clock;
pub mod code;
pub mod core;
pub mod crypto;
pub mod relay;
pub mod storage;
pub mod text;
pub mod wire;

pub use api::{blocking, transport_for, Initiator, Receiver, Wormhole, CONNECT_TIMEOUT};
pub use code::Code;
pub use core::Error;
pub use wormhole_transports as transports;
