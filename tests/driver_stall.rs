//! The driver never blocks its loop on the transport: on a link whose sends (or receives) never
//! complete, the session's hard timeout still fires on time, and the stalled operation itself
//! ends at its deadline.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use wormhole::transports::{Connection, Transport, TransportError};
use wormhole::{Error, Wormhole, IO_TIMEOUT};

/// What a stalling connection does.
#[derive(Debug, Clone, Copy)]
enum Stall {
    /// `send` never completes.
    Send,
    /// Sends succeed, but nothing ever arrives.
    Silent,
}

#[derive(Debug)]
struct StallingTransport {
    stall: Stall,
    connects: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct StallingConnection {
    stall: Stall,
}

#[async_trait]
impl Transport for StallingTransport {
    fn supports(&self, scheme: &str) -> bool {
        scheme == "stall"
    }

    async fn connect(&self, _url: &str) -> Result<Box<dyn Connection>, TransportError> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(StallingConnection { stall: self.stall }))
    }
}

#[async_trait]
impl Connection for StallingConnection {
    async fn send(&mut self, _frame: String) -> Result<(), TransportError> {
        match self.stall {
            Stall::Send => std::future::pending().await,
            Stall::Silent => Ok(()),
        }
    }

    async fn recv(&mut self) -> Result<Option<String>, TransportError> {
        std::future::pending().await
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        // A close that hangs too: the driver must not wait for it forever.
        std::future::pending().await
    }
}

/// Allocating a code over a stalling link with a hard timeout of `timeout`: returns the error
/// and the (virtual) time it took, and how many connections were opened.
async fn allocate_over(stall: Stall, timeout: Duration) -> (Error, Duration, usize) {
    let connects = Arc::new(AtomicUsize::new(0));
    let transport = Arc::new(StallingTransport {
        stall,
        connects: connects.clone(),
    });
    let started = tokio::time::Instant::now();
    let mut w = Wormhole::new("example.com/stall", "stall://relay")
        .with_transport(transport)
        .with_timeout(Some(timeout));
    let result = tokio::time::timeout(timeout + Duration::from_secs(60), w.allocate_code(2))
        .await
        .expect("allocate_code hung past its hard timeout");
    let took = started.elapsed();
    let err = result.expect_err("a code cannot be allocated over a stalled link");
    (err, took, connects.load(Ordering::SeqCst))
}

#[tokio::test(start_paused = true)]
async fn a_send_that_never_completes_does_not_delay_the_timeout() {
    // Shorter than the I/O deadline: only a loop that does not await the send can see it.
    let timeout = Duration::from_secs(5);
    assert!(timeout < IO_TIMEOUT);
    let (err, took, connects) = allocate_over(Stall::Send, timeout).await;
    assert!(matches!(err, Error::Timeout), "got {err:?}");
    assert!(took >= timeout, "fired early: {took:?}");
    assert!(
        took < timeout + Duration::from_millis(50),
        "fired late: {took:?}"
    );
    assert_eq!(connects, 1);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_send_counts_as_a_lost_connection_at_its_deadline() {
    // Longer than the I/O deadline: the stalled bind fails at IO_TIMEOUT, the session
    // reconnects (and stalls again), and the hard timeout still ends it on time.
    let timeout = IO_TIMEOUT + Duration::from_secs(20);
    let (err, took, connects) = allocate_over(Stall::Send, timeout).await;
    assert!(matches!(err, Error::Timeout), "got {err:?}");
    assert!(
        took < timeout + Duration::from_millis(50),
        "fired late: {took:?}"
    );
    assert!(
        connects >= 2,
        "no reconnection after the stalled send: {connects}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_relay_ends_in_the_timeout_on_time() {
    let timeout = Duration::from_secs(120);
    let (err, took, connects) = allocate_over(Stall::Silent, timeout).await;
    assert!(matches!(err, Error::Timeout), "got {err:?}");
    assert!(
        took >= timeout && took < timeout + Duration::from_millis(50),
        "{took:?}"
    );
    assert_eq!(connects, 1);
}
