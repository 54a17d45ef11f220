//! Blocking forms of the API, in the seed's words:
//!
//! ```no_run
//! // one computer
//! let mut i = wormhole::blocking::Initiator::new("example.com/app", "mem://relay");
//! println!("Invitation Code: {}", i.get_code()?);
//! let theirs = i.get_data(b"initiator's data")?;
//! # Ok::<(), wormhole::Error>(())
//! ```
//! ```no_run
//! // the other computer
//! let mut r = wormhole::blocking::Receiver::new("example.com/app", "mem://relay");
//! r.set_code("4-adroitness-aardvark")?;
//! let theirs = r.get_data(b"receiver's data")?;
//! # Ok::<(), wormhole::Error>(())
//! ```
//!
//! Each object runs its own small tokio runtime (one worker thread), so the connection is
//! serviced between calls. Do not call these from inside an async runtime; use the async
//! [`Initiator`](crate::Initiator) and [`Receiver`](crate::Receiver) there.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::code::Code;
use crate::core::{Error, Schedule, SchedulePreset};
use crate::crypto::Verifier;
use crate::storage::Storage;
use crate::Wormhole;

/// A lazily built runtime: building one can fail (no threads), and that must be an error, not
/// a panic in a constructor.
#[derive(Debug, Default)]
struct Runtime(Option<tokio::runtime::Runtime>);

impl Runtime {
    fn block_on<F: Future>(&mut self, fut: F) -> Result<F::Output, Error> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::InvalidInput(
                "the blocking API cannot run inside an async runtime; use wormhole::Initiator \
                 and wormhole::Receiver there"
                    .into(),
            ));
        }
        if self.0.is_none() {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|e| Error::InvalidInput(format!("cannot start a runtime: {e}")))?;
            self.0 = Some(rt);
        }
        match &self.0 {
            Some(rt) => Ok(rt.block_on(fut)),
            None => Err(Error::Closed),
        }
    }
}

/// Blocking initiator: allocates the code, shows it, exchanges data.
#[derive(Debug)]
pub struct Initiator {
    rt: Runtime,
    inner: crate::Initiator,
}

impl Initiator {
    /// An initiator for `appid` through the relay at `relay_url`.
    pub fn new(appid: &str, relay_url: &str) -> Initiator {
        Initiator::from_wormhole(Wormhole::new(appid, relay_url))
    }

    /// An initiator over a configured [`Wormhole`] (schedule, timeout, transport, …).
    pub fn from_wormhole(wormhole: Wormhole) -> Initiator {
        Initiator {
            rt: Runtime::default(),
            inner: crate::Initiator::from_wormhole(wormhole),
        }
    }

    /// Sets the polling and reconnection schedule (before first use); see
    /// [`Wormhole::with_schedule`].
    pub fn with_schedule(mut self, schedule: Schedule) -> Initiator {
        self.inner = self.inner.with_schedule(schedule);
        self
    }

    /// Sets the hard timeout, counted from the first call (`None` waits forever); see
    /// [`Wormhole::with_timeout`].
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Initiator {
        self.inner = self.inner.with_timeout(timeout);
        self
    }

    /// Uses a schedule preset and its timeout; see [`Wormhole::with_preset`].
    ///
    /// ```no_run
    /// use wormhole::SchedulePreset;
    /// let mut w = wormhole::blocking::Initiator::new("example.com/app", "ws://relay.example:4000/v1")
    ///     .with_preset(SchedulePreset::LongLived);
    /// ```
    pub fn with_preset(mut self, preset: SchedulePreset) -> Initiator {
        self.inner = self.inner.with_preset(preset);
        self
    }

    /// Allocates the code (once) and returns it.
    pub fn get_code(&mut self) -> Result<Code, Error> {
        let inner = &mut self.inner;
        self.rt.block_on(inner.get_code())?
    }

    /// Sends `mine`, waits for the receiver's data and returns it.
    pub fn get_data(&mut self, mine: &[u8]) -> Result<Vec<u8>, Error> {
        let inner = &mut self.inner;
        self.rt.block_on(inner.get_data(mine))?
    }

    /// The verifier, once the key is confirmed.
    pub fn verifier(&mut self) -> Option<Verifier> {
        self.inner.wormhole().verifier()
    }

    /// The state as a printable JSON string, valid at every point; see
    /// [`Wormhole::serialize`]. **It holds secrets.**
    pub fn serialize(&mut self) -> Result<String, Error> {
        let inner = &mut self.inner;
        self.rt.block_on(inner.serialize())?
    }

    /// Stops without closing and returns the state; see [`Wormhole::suspend`].
    pub fn suspend(self) -> Result<String, Error> {
        let Initiator { mut rt, inner } = self;
        rt.block_on(inner.suspend())?
    }

    /// Restores from [`serialize`](Initiator::serialize)'s string; see
    /// [`Wormhole::from_serialized`].
    pub fn from_serialized(state: &str) -> Result<Initiator, Error> {
        Ok(Initiator {
            rt: Runtime::default(),
            inner: crate::Initiator::from_serialized(state)?,
        })
    }

    /// Restores what is journaled under `key` in `storage` (`Ok(None)` if nothing is); see
    /// [`Wormhole::from_storage`].
    pub fn from_storage(storage: Arc<dyn Storage>, key: &str) -> Result<Option<Initiator>, Error> {
        Ok(
            crate::Initiator::from_storage(storage, key)?.map(|inner| Initiator {
                rt: Runtime::default(),
                inner,
            }),
        )
    }
}

/// Blocking receiver: is given the code, exchanges data.
#[derive(Debug)]
pub struct Receiver {
    rt: Runtime,
    inner: crate::Receiver,
}

impl Receiver {
    /// A receiver for `appid` through the relay at `relay_url`.
    pub fn new(appid: &str, relay_url: &str) -> Receiver {
        Receiver::from_wormhole(Wormhole::new(appid, relay_url))
    }

    /// A receiver over a configured [`Wormhole`].
    pub fn from_wormhole(wormhole: Wormhole) -> Receiver {
        Receiver {
            rt: Runtime::default(),
            inner: crate::Receiver::from_wormhole(wormhole),
        }
    }

    /// Sets the polling and reconnection schedule (before first use); see
    /// [`Wormhole::with_schedule`].
    pub fn with_schedule(mut self, schedule: Schedule) -> Receiver {
        self.inner = self.inner.with_schedule(schedule);
        self
    }

    /// Sets the hard timeout, counted from the first call (`None` waits forever); see
    /// [`Wormhole::with_timeout`].
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Receiver {
        self.inner = self.inner.with_timeout(timeout);
        self
    }

    /// Uses a schedule preset and its timeout; see [`Wormhole::with_preset`].
    ///
    /// ```no_run
    /// use wormhole::SchedulePreset;
    /// let mut w = wormhole::blocking::Receiver::new("example.com/app", "ws://relay.example:4000/v1")
    ///     .with_preset(SchedulePreset::LongLived);
    /// ```
    pub fn with_preset(mut self, preset: SchedulePreset) -> Receiver {
        self.inner = self.inner.with_preset(preset);
        self
    }

    /// Sets the code the initiator showed.
    pub fn set_code(&mut self, code: &str) -> Result<(), Error> {
        let inner = &mut self.inner;
        self.rt.block_on(inner.set_code(code))?
    }

    /// Sends `mine`, waits for the initiator's data and returns it.
    pub fn get_data(&mut self, mine: &[u8]) -> Result<Vec<u8>, Error> {
        let inner = &mut self.inner;
        self.rt.block_on(inner.get_data(mine))?
    }

    /// The verifier, once the key is confirmed.
    pub fn verifier(&mut self) -> Option<Verifier> {
        self.inner.wormhole().verifier()
    }

    /// The state as a printable JSON string, valid at every point; see
    /// [`Wormhole::serialize`]. **It holds secrets.**
    pub fn serialize(&mut self) -> Result<String, Error> {
        let inner = &mut self.inner;
        self.rt.block_on(inner.serialize())?
    }

    /// Stops without closing and returns the state; see [`Wormhole::suspend`].
    pub fn suspend(self) -> Result<String, Error> {
        let Receiver { mut rt, inner } = self;
        rt.block_on(inner.suspend())?
    }

    /// Restores from [`serialize`](Receiver::serialize)'s string; see
    /// [`Wormhole::from_serialized`].
    pub fn from_serialized(state: &str) -> Result<Receiver, Error> {
        Ok(Receiver {
            rt: Runtime::default(),
            inner: crate::Receiver::from_serialized(state)?,
        })
    }

    /// Restores what is journaled under `key` in `storage` (`Ok(None)` if nothing is); see
    /// [`Wormhole::from_storage`].
    pub fn from_storage(storage: Arc<dyn Storage>, key: &str) -> Result<Option<Receiver>, Error> {
        Ok(
            crate::Receiver::from_storage(storage, key)?.map(|inner| Receiver {
                rt: Runtime::default(),
                inner,
            }),
        )
    }
}
