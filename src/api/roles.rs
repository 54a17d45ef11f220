//! The seed's two roles over a [`Wormhole`]: the [`Initiator`], which allocates the code, and
//! the [`Receiver`], which is given it.

use std::time::Duration;

use super::Wormhole;
use crate::code::{Code, DEFAULT_WORDS};
use crate::core::{Error, Schedule, SchedulePreset};

/// The side that allocates the code (the seed's `Initiator`).
#[derive(Debug)]
pub struct Initiator {
    pub(super) wormhole: Wormhole,
    pub(super) words: usize,
}

impl Initiator {
    /// An initiator for `appid` through the relay at `relay_url`.
    pub fn new(appid: &str, relay_url: &str) -> Initiator {
        Initiator::from_wormhole(Wormhole::new(appid, relay_url))
    }

    /// An initiator over a configured [`Wormhole`].
    pub fn from_wormhole(wormhole: Wormhole) -> Initiator {
        Initiator {
            wormhole,
            words: DEFAULT_WORDS,
        }
    }

    /// Number of secret words in the code (default 2).
    pub fn with_words(mut self, words: usize) -> Initiator {
        self.words = words.max(1);
        self
    }

    /// Sets the schedule; see [`Wormhole::with_schedule`].
    pub fn with_schedule(mut self, schedule: Schedule) -> Initiator {
        self.wormhole.config_mut().schedule = schedule;
        self
    }

    /// Sets the hard timeout; see [`Wormhole::with_timeout`].
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Initiator {
        self.wormhole.config_mut().timeout = timeout;
        self
    }

    /// Uses a schedule preset and its timeout; see [`Wormhole::with_preset`].
    pub fn with_preset(mut self, preset: SchedulePreset) -> Initiator {
        self.wormhole.set_preset(preset);
        self
    }

    /// Allocates the code (once) and returns it.
    pub async fn get_code(&mut self) -> Result<Code, Error> {
        if let Some(code) = self.wormhole.code() {
            return Ok(code);
        }
        self.wormhole.allocate_code(self.words).await
    }

    /// Sends `mine` and returns the receiver's data; allocates the code first if needed.
    ///
    /// A restored initiator that had already sent its message does not send it again.
    pub async fn get_data(&mut self, mine: &[u8]) -> Result<Vec<u8>, Error> {
        self.get_code().await?;
        self.wormhole.get_data_once(mine).await
    }

    /// The underlying wormhole, for multi-message exchanges.
    pub fn wormhole(&mut self) -> &mut Wormhole {
        &mut self.wormhole
    }
}

/// The side that is given the code (the seed's `Receiver`).
#[derive(Debug)]
pub struct Receiver {
    pub(super) wormhole: Wormhole,
}

impl Receiver {
    /// A receiver for `appid` through the relay at `relay_url`.
    pub fn new(appid: &str, relay_url: &str) -> Receiver {
        Receiver::from_wormhole(Wormhole::new(appid, relay_url))
    }

    /// A receiver over a configured [`Wormhole`].
    pub fn from_wormhole(wormhole: Wormhole) -> Receiver {
        Receiver { wormhole }
    }

    /// Sets the schedule; see [`Wormhole::with_schedule`].
    pub fn with_schedule(mut self, schedule: Schedule) -> Receiver {
        self.wormhole.config_mut().schedule = schedule;
        self
    }

    /// Sets the hard timeout; see [`Wormhole::with_timeout`].
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Receiver {
        self.wormhole.config_mut().timeout = timeout;
        self
    }

    /// Uses a schedule preset and its timeout; see [`Wormhole::with_preset`].
    pub fn with_preset(mut self, preset: SchedulePreset) -> Receiver {
        self.wormhole.set_preset(preset);
        self
    }

    /// Sets the code the initiator showed; a malformed code is refused here.
    pub async fn set_code(&mut self, code: &str) -> Result<(), Error> {
        let code = Code::parse(code).map_err(|e| Error::InvalidInput(e.to_string()))?;
        self.wormhole.set_code(code).await
    }

    /// Sends `mine` and returns the initiator's data. The code must be set first.
    ///
    /// A restored receiver that had already sent its message does not send it again.
    pub async fn get_data(&mut self, mine: &[u8]) -> Result<Vec<u8>, Error> {
        if self.wormhole.code().is_none() {
            return Err(Error::InvalidInput("set the code before get_data".into()));
        }
        self.wormhole.get_data_once(mine).await
    }

    /// The underlying wormhole, for multi-message exchanges.
    pub fn wormhole(&mut self) -> &mut Wormhole {
        &mut self.wormhole
    }
}
