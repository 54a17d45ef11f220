//! `wormhole`: exchange a small secret message between two computers with a short human code
//! like `7-guitarist-revenge`, compatible with magic-wormhole (the Python `wormhole` CLI 0.24
//! and mailbox server 0.8 interoperate with this crate, its relay and its CLI).
//!
//! One side allocates a code from a rendezvous relay and shows it; the other types it in. Both
//! run SPAKE2 on the code, so they share a key only if the codes match, and then exchange
//! encrypted, authenticated messages through the relay, which sees neither key nor plaintext.
//!
//! ```
//! # #[cfg(feature = "relay-server")]
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // An in-process relay; real programs use e.g. "ws://relay.magic-wormhole.io:4000/v1".
//! let relay = wormhole::relay::server::spawn_memory("crate-doc").unwrap();
//!
//! let mut initiator = wormhole::Initiator::new("example.com/app", relay.url());
//! let code = initiator.get_code().await?;            // e.g. 4-adroitness-aardvark
//!
//! let mut receiver = wormhole::Receiver::new("example.com/app", relay.url());
//! receiver.set_code(code.as_str()).await?;
//!
//! let (a, b) = tokio::join!(initiator.get_data(b"hi from A"), receiver.get_data(b"hi from B"));
//! assert_eq!(a?, b"hi from B");
//! assert_eq!(b?, b"hi from A");
//! # Ok::<(), wormhole::Error>(())
//! # }).unwrap();
//! ```
//!
//! [`blocking`] has the same `Initiator` and `Receiver` for programs without an async runtime;
//! [`Wormhole`] exchanges any number of messages and offers the verifier, the other side's
//! `app_versions` and [`derive_key`](Wormhole::derive_key).
//!
//! Layers, from the bottom: [`code`] (codes and the PGP word list), [`crypto`] (SPAKE2, HKDF,
//! secretbox), [`wire`] (relay messages), [`core`] (the sans-IO client state machine),
//! [`relay`] (the sans-IO mailbox server and its runner), then the async API, its
//! [`blocking`] wrappers and [`text`] (the text-transfer protocol of `wormhole send --text`).
//! Transports (memory, WebSocket) are in [`transports`], chosen by the relay URL's scheme
//! (`mem://`, `ws://`, `wss://`), or given with [`Wormhole::with_transport`].

//! # Cargo features
//!
//! The default (`cli`) builds everything the `wormhole` and `wormhole-relay` binaries use. An
//! application that embeds the library sets `default-features = false` and picks:
//!
//! | feature | what it adds | what it pulls |
//! |---|---|---|
//! | *(none)* | the pure protocol: [`code`], [`crypto`], [`wire`], [`core`], the [`relay`] core, [`storage`], the [`clock::Clock`] trait; no runtime, no clock reads, no ambient randomness | the crypto crates, serde, serde_json, thiserror, tracing (52 crates) |
//! | `async` | `Wormhole`, `Initiator`, `Receiver`, `blocking`, `text`, the driver, `TokioClock`, `mem://` | tokio, `wormhole-transports` (56) |
//! | `relay-server` | `relay::server`, the relay runner | nothing beyond `async` |
//! | `websocket` | `ws://`: the WebSocket transport and relay listener | tokio-tungstenite (81) |
//! | `tls` | `wss://` | rustls (ring), tokio-rustls, webpki-roots (88) |
//! | `cli` | what the binaries use | clap, rustyline, qrcode, indicatif, tracing-subscriber (127) |
//!
//! `scripts/check-features.sh` (run by CI) builds the pure part with no features, so an import
//! of tokio or a transport there does not compile, and lints it against clock reads and
//! ambient randomness.

#![warn(missing_docs)]

#[cfg(feature = "async")]
mod api;
pub mod clock;
pub mod code;
pub mod core;
pub mod crypto;
pub mod relay;
pub mod storage;
#[cfg(feature = "async")]
pub mod text;
pub mod wire;

#[cfg(feature = "tls")]
pub use api::transport_for_tls;
#[cfg(feature = "async")]
pub use api::{
    blocking, transport_for, Initiator, Receiver, Wormhole, CONNECT_TIMEOUT, IO_TIMEOUT,
};
pub use code::Code;
pub use core::{Error, Schedule, SchedulePreset};
#[cfg(feature = "async")]
pub use wormhole_transports as transports;
