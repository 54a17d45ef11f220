//! Long-lived exchanges over HTTP polling, in virtual time (tokio's paused clock): one side
//! polls on the long-lived schedule (hourly after the first hour) for two days before the other
//! side comes. The streams are in-memory (`tokio::io::duplex`) through the same server code as
//! real sockets, the way a simulator runs it.
//!
//! With the relay's defaults the polling side's session outlives its hourly gaps, so the
//! mailbox is never idle and survives; with short sessions, the mailbox is pruned after the
//! Python server's 11 idle minutes (the test shows that failure) unless the relay keeps
//! mailboxes longer (`--mailbox-retention`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use wormhole::clock::Clock;
use wormhole::relay::metrics::Metrics;
use wormhole::relay::server::{spawn, ServerOptions};
use wormhole::relay::{MemoryStore, RelayConfig};
use wormhole::transports::http::{HttpPolling, HttpServerOptions, HttpTransport};
use wormhole::transports::net::{BoxedStream, Dialer};
use wormhole::transports::websocket::{accept_stream, Accepted, HttpHandler, WebSocketOptions};
use wormhole::transports::Listener;
use wormhole::{Error, SchedulePreset, Wormhole};

const APPID: &str = "example.com/long-lived";
const URL: &str = "http://relay.test:4000/v1";
const HOUR: Duration = Duration::from_secs(3600);

/// tokio's (virtual) time, with a Unix time that follows it, for the relay's pruning.
#[derive(Debug)]
struct VirtualClock {
    origin: tokio::time::Instant,
}

impl Clock for VirtualClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep_until(&self, deadline: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep_until(self.origin + deadline))
    }

    fn unix_time(&self) -> f64 {
        1.8e9 + self.origin.elapsed().as_secs_f64()
    }
}

/// Dials in-memory streams straight into the relay's HTTP handler.
#[derive(Debug)]
struct DuplexDialer {
    polling: Arc<HttpPolling>,
}

#[async_trait]
impl Dialer for DuplexDialer {
    async fn dial(&self, _host: &str, _port: u16) -> std::io::Result<BoxedStream> {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let polling = self.polling.clone();
        tokio::spawn(async move {
            let peer: SocketAddr = "192.0.2.1:5000".parse().unwrap();
            match accept_stream(server, Some(peer), &WebSocketOptions::relay()).await {
                Ok(Accepted::Http(request)) => {
                    let _ = polling.handle(request).await;
                }
                Ok(Accepted::WebSocket(_)) | Err(_) => {}
            }
        });
        Ok(Box::new(client))
    }
}

struct Outcome {
    /// What the late side got: the early side's message, or an error.
    late_got: Result<Vec<u8>, Error>,
    /// How the early side ended, if it had ended when the late side gave up.
    early_end: Option<Result<Vec<u8>, Error>>,
    sessions: u64,
    requests: u64,
}

/// Side A allocates and waits on the long-lived schedule; two days later side B comes.
async fn two_days_apart(session_idle: Duration, retention: Duration) -> Outcome {
    let clock = Arc::new(VirtualClock {
        origin: tokio::time::Instant::now(),
    });
    let metrics = Arc::new(Metrics::default());
    let (polling, sessions) = HttpPolling::new(HttpServerOptions {
        session_idle,
        metrics: Some(metrics.clone()),
        ..HttpServerOptions::new([3; 32])
    });
    let listeners: Vec<Box<dyn Listener>> = vec![Box::new(sessions)];
    let options = ServerOptions {
        config: RelayConfig {
            channel_expiration_secs: retention.as_secs_f64(),
            ..RelayConfig::default()
        },
        seed: Some([4; 32]),
        metrics: metrics.clone(),
        ..ServerOptions::default()
    };
    let relay = spawn(listeners, MemoryStore::default(), options, clock.clone());
    let transport =
        Arc::new(HttpTransport::default().with_dialer(Arc::new(DuplexDialer { polling })));

    let mut a = Wormhole::new(APPID, URL)
        .with_transport(transport.clone())
        .with_clock(clock.clone())
        .with_preset(SchedulePreset::LongLived);
    let code = a.allocate_code(2).await.expect("allocate");
    let a_task = tokio::spawn(async move {
        a.send(b"sent on day one").await?;
        let got = a.recv().await;
        let _ = a.close().await;
        got
    });
    tokio::time::sleep(48 * HOUR).await;
    let requests_two_days = metrics.http_requests_total.load(Ordering::Relaxed);

    let mut b = Wormhole::new(APPID, URL)
        .with_transport(transport)
        .with_clock(clock.clone())
        .with_timeout(Some(Duration::from_secs(2 * 3600)));
    let late_got = async {
        b.set_code(code).await?;
        b.send(b"answered on day three").await?;
        b.recv().await
    }
    .await;
    let mut early_end = None;
    if late_got.is_ok() {
        // A hears B at its next hourly poll, or (its session having expired) after reconnecting.
        let a_got = tokio::time::timeout(4 * HOUR, a_task).await;
        assert_eq!(
            a_got.expect("A in time").expect("task").expect("A"),
            b"answered on day three"
        );
    } else if a_task.is_finished() {
        early_end = Some(a_task.await.expect("task"));
    } else {
        a_task.abort();
    }
    let _ = b.close().await;
    relay.shutdown().await;
    eprintln!(
        "session idle {session_idle:?}, retention {retention:?}: {} requests in two days, {} sessions",
        requests_two_days,
        metrics.http_sessions_total.load(Ordering::Relaxed)
    );
    Outcome {
        late_got,
        early_end,
        sessions: metrics.http_sessions_total.load(Ordering::Relaxed),
        requests: requests_two_days,
    }
}

#[tokio::test(start_paused = true)]
async fn an_hourly_poller_keeps_its_session_and_mailbox_for_days() {
    let o = two_days_apart(Duration::from_secs(65 * 60), Duration::from_secs(11 * 60)).await;
    assert_eq!(o.late_got.expect("B"), b"sent on day one");
    // A kept one session for the two days (B adds its own).
    assert_eq!(o.sessions, 2);
    // The long-lived schedule: every minute for 10 minutes, every 10 minutes until the first
    // hour, then hourly: about 62 polls in two days, plus opening, binding and sending.
    assert!(
        (55..=80).contains(&o.requests),
        "{} requests in two days",
        o.requests
    );
}

#[tokio::test(start_paused = true)]
async fn with_short_sessions_the_mailbox_is_pruned_after_eleven_idle_minutes() {
    let o = two_days_apart(Duration::from_secs(5 * 60), Duration::from_secs(11 * 60)).await;
    // A's expired session counted as a dropped connection; its mailbox was pruned 11 minutes
    // later, so when A came back it found the mailbox gone and said so.
    assert!(o.sessions >= 2, "{} sessions", o.sessions);
    assert!(
        matches!(o.early_end, Some(Err(Error::MailboxExpired))),
        "A should have found its mailbox expired: {:?}",
        o.early_end
    );
    assert!(
        matches!(o.late_got, Err(Error::Timeout)),
        "the mailbox should have been pruned: {:?}",
        o.late_got
    );
}

#[tokio::test(start_paused = true)]
async fn a_longer_mailbox_retention_keeps_it_across_short_sessions() {
    let o = two_days_apart(
        Duration::from_secs(5 * 60),
        Duration::from_secs(3 * 24 * 3600),
    )
    .await;
    assert!(o.sessions > 10, "{} sessions", o.sessions);
    assert_eq!(o.late_got.expect("B"), b"sent on day one");
}
