//! Session pairs against the relay core, with a virtual clock and no runtime at all.

use std::collections::VecDeque;
use std::time::Duration;

use super::*;
use crate::core::{Schedule, DEFAULT_TIMEOUT};
use crate::relay::{ConnId, MemoryStore, Relay, RelayConfig, RelayOutput};

const APPID: &str = "example.com/test";
const EPOCH: f64 = 1_800_000_000.0;

pub(super) struct Client {
    session: Session,
    conn: Option<ConnId>,
    events: Vec<Event>,
    /// Frames from the client to the relay that the test holds back.
    held: Vec<String>,
    hold_adds: bool,
    refuse_connect: bool,
    polls: Vec<Duration>,
    /// What the application took from the session (see `resume::act`).
    got: Vec<Vec<u8>>,
}

impl Client {
    fn data(&self) -> Vec<Vec<u8>> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Data(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }

    fn closed(&self) -> Option<&Result<(), Error>> {
        self.events.iter().find_map(|e| match e {
            Event::Closed(r) => Some(r),
            _ => None,
        })
    }

    fn code(&self) -> Option<Code> {
        self.events.iter().find_map(|e| match e {
            Event::Code(c) => Some(c.clone()),
            _ => None,
        })
    }

    fn verifier(&self) -> Option<Verifier> {
        self.events.iter().find_map(|e| match e {
            Event::Key { verifier } => Some(*verifier),
            _ => None,
        })
    }
}

pub(super) struct Net {
    relay: Relay<MemoryStore>,
    clients: Vec<Client>,
    now: Duration,
    next_conn: ConnId,
    pull: bool,
    /// Every frame that reached the relay, with the client that sent it.
    log: Vec<(usize, String)>,
}

impl Net {
    fn new() -> Net {
        Net {
            relay: Relay::new(RelayConfig::default(), MemoryStore::default(), [9; 32]),
            clients: Vec::new(),
            now: Duration::ZERO,
            next_conn: 1,
            pull: false,
            log: Vec::new(),
        }
    }

    fn add(&mut self, config: Config, seed: u8) -> usize {
        self.clients.push(Client {
            session: Session::new(config, [seed; 32]),
            conn: None,
            events: Vec::new(),
            held: Vec::new(),
            hold_adds: false,
            refuse_connect: false,
            polls: Vec::new(),
            got: Vec::new(),
        });
        self.clients.len() - 1
    }

    fn input(&mut self, c: usize, input: Input) {
        let now = self.now;
        self.clients[c].session.handle(now, input).unwrap();
    }

    fn unix(&self) -> f64 {
        EPOCH + self.now.as_secs_f64()
    }

    /// Moves frames until nothing happens any more.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut progress = false;
            for c in 0..self.clients.len() {
                while let Some(out) = self.clients[c].session.poll_output() {
                    progress = true;
                    self.output(c, out);
                }
            }
            progress |= self.deliver_relay_output();
            if !progress {
                return;
            }
        }
        panic!("the network never settled");
    }

    /// Hands every frame the relay sent to its client and drops the connections it closed;
    /// whether there was anything.
    fn deliver_relay_output(&mut self) -> bool {
        let mut any = false;
        while let Some(out) = self.relay.poll_output() {
            any = true;
            match out {
                RelayOutput::Send { conn, frame } => {
                    if let Some(c) = self.client_of(conn) {
                        let now = self.now;
                        self.clients[c]
                            .session
                            .handle(now, Input::Frame(frame.to_string()))
                            .unwrap();
                    }
                }
                RelayOutput::Close { conn } => self.drop_conn(conn),
            }
        }
        any
    }

    fn output(&mut self, c: usize, out: Output) {
        let now = self.now;
        match out {
            Output::Connect => {
                if self.clients[c].refuse_connect {
                    let input = Input::ConnectFailed {
                        reason: "refused".into(),
                    };
                    self.clients[c].session.handle(now, input).unwrap();
                    return;
                }
                let id = self.next_conn;
                self.next_conn += 1;
                self.clients[c].conn = Some(id);
                self.relay.connected(id, None, self.unix());
                let pull = self.pull;
                self.clients[c]
                    .session
                    .handle(now, Input::Connected { pull })
                    .unwrap();
            }
            Output::Transmit(frame) => {
                let client = &mut self.clients[c];
                if client.hold_adds && frame.contains(r#""type":"add""#) {
                    client.held.push(frame);
                    return;
                }
                if let Some(id) = client.conn {
                    let unix = self.unix();
                    self.log.push((c, frame.clone()));
                    self.relay.received(id, &frame, unix);
                }
            }
            Output::Poll => self.clients[c].polls.push(now),
            Output::Disconnect => {
                if let Some(id) = self.clients[c].conn.take() {
                    self.relay.disconnected(id);
                }
            }
            Output::Event(e) => self.clients[c].events.push(e),
        }
    }

    fn client_of(&self, conn: ConnId) -> Option<usize> {
        self.clients.iter().position(|c| c.conn == Some(conn))
    }

    fn drop_conn(&mut self, conn: ConnId) {
        if let Some(c) = self.client_of(conn) {
            self.clients[c].conn = None;
            self.relay.disconnected(conn);
            let now = self.now;
            self.clients[c]
                .session
                .handle(now, Input::Disconnected)
                .unwrap();
        }
    }

    /// Releases the held adds of client `c` in the given order.
    fn release_held(&mut self, c: usize, order: &[usize]) {
        let held = std::mem::take(&mut self.clients[c].held);
        self.clients[c].hold_adds = false;
        let id = self.clients[c].conn.unwrap();
        for &i in order {
            let unix = self.unix();
            self.relay.received(id, &held[i], unix);
        }
        self.settle();
    }

    /// Advances virtual time to `t`, waking every session whose deadline passes.
    fn advance_to(&mut self, t: Duration) {
        loop {
            let next = self
                .clients
                .iter()
                .filter_map(|c| c.session.poll_timeout())
                .filter(|&d| d <= t)
                .min();
            match next {
                Some(d) => {
                    self.now = self.now.max(d);
                    for c in 0..self.clients.len() {
                        if self.clients[c]
                            .session
                            .poll_timeout()
                            .is_some_and(|x| x <= self.now)
                        {
                            self.input(c, Input::Tick);
                        }
                    }
                    self.settle();
                }
                None => break,
            }
        }
        self.now = t;
    }
}

fn pair(net: &mut Net) -> (usize, usize) {
    let a = net.add(Config::new(APPID), 1);
    let b = net.add(Config::new(APPID), 2);
    net.input(a, Input::Allocate { words: 2 });
    net.settle();
    let code = net.clients[a].code().expect("A got a code");
    net.input(b, Input::SetCode(code));
    net.settle();
    (a, b)
}

#[test]
fn a_whole_exchange_delivers_both_ways_and_closes_happily() {
    let mut net = Net::new();
    let (a, b) = pair(&mut net);
    net.input(a, Input::Send(b"from A".to_vec()));
    net.input(b, Input::Send(b"from B".to_vec()));
    net.settle();
    assert_eq!(net.clients[a].data(), vec![b"from B".to_vec()]);
    assert_eq!(net.clients[b].data(), vec![b"from A".to_vec()]);
    let va = net.clients[a].verifier().expect("A confirmed the key");
    assert_eq!(Some(va), net.clients[b].verifier());
    assert!(net.clients[a]
        .events
        .iter()
        .any(|e| matches!(e, Event::CodeConsumed)));
    net.input(a, Input::Close);
    net.input(b, Input::Close);
    net.settle();
    assert_eq!(net.clients[a].closed(), Some(&Ok(())));
    assert_eq!(net.clients[b].closed(), Some(&Ok(())));
    // Nothing is left on the relay: the nameplate is free again.
    assert!(net.relay.store().is_empty(), "relay state left behind");
}

#[test]
fn a_wrong_code_ends_both_sides_with_wrong_code_and_no_data() {
    let mut net = Net::new();
    let a = net.add(Config::new(APPID), 1);
    let b = net.add(Config::new(APPID), 2);
    net.input(a, Input::Allocate { words: 2 });
    net.settle();
    let code = net.clients[a].code().unwrap();
    let wrong = Code::parse(&format!("{}-wrong-words", code.nameplate())).unwrap();
    net.input(a, Input::Send(b"secret A".to_vec()));
    net.input(b, Input::Send(b"secret B".to_vec()));
    net.input(b, Input::SetCode(wrong));
    net.settle();
    for c in [a, b] {
        assert_eq!(net.clients[c].closed(), Some(&Err(Error::WrongCode)));
        assert!(net.clients[c].data().is_empty());
        assert!(net.clients[c].verifier().is_none());
        assert!(net.clients[c].session.is_finished());
    }
}

#[test]
fn phases_are_delivered_in_order_without_duplicates() {
    let mut net = Net::new();
    let (a, b) = pair(&mut net);
    net.input(a, Input::Send(b"x".to_vec()));
    net.settle();
    // B's three messages reach the relay in the order 2, 0, 1.
    net.clients[b].hold_adds = true;
    for m in ["m0", "m1", "m2"] {
        net.input(b, Input::Send(m.as_bytes().to_vec()));
    }
    net.settle();
    assert_eq!(net.clients[b].held.len(), 3);
    net.release_held(b, &[2, 0, 1]);
    let got = net.clients[a].data();
    assert_eq!(got, vec![b"m0".to_vec(), b"m1".to_vec(), b"m2".to_vec()]);
}

#[test]
fn a_dropped_connection_is_re_established_and_the_exchange_completes() {
    let mut net = Net::new();
    let (a, b) = pair(&mut net);
    // A's connection drops while its message is in flight.
    net.clients[a].hold_adds = true;
    net.input(a, Input::Send(b"survives".to_vec()));
    net.settle();
    let conn = net.clients[a].conn.unwrap();
    net.clients[a].held.clear();
    net.clients[a].hold_adds = false;
    net.drop_conn(conn);
    net.settle();
    assert!(net.clients[a].conn.is_none());
    let retry = net.clients[a].session.poll_timeout().unwrap();
    let (lo, hi) = crate::core::jitter_bounds(Duration::from_millis(500));
    assert!(
        (net.now + lo..=net.now + hi).contains(&retry),
        "first retry after one interval, jittered: {retry:?}"
    );
    net.advance_to(retry);
    assert!(net.clients[a].conn.is_some(), "reconnected");
    net.input(b, Input::Send(b"hello A".to_vec()));
    net.settle();
    assert_eq!(net.clients[b].data(), vec![b"survives".to_vec()]);
    assert_eq!(net.clients[a].data(), vec![b"hello A".to_vec()]);
}

#[test]
fn the_timeout_fires_on_time_when_nobody_comes() {
    let mut net = Net::new();
    let mut config = Config::new(APPID);
    config.timeout = Some(Duration::from_secs(30));
    let a = net.add(config, 1);
    net.input(a, Input::Allocate { words: 2 });
    net.settle();
    assert_eq!(
        net.clients[a].session.poll_timeout(),
        Some(Duration::from_secs(30))
    );
    net.advance_to(Duration::from_secs(29));
    assert!(net.clients[a].closed().is_none());
    net.advance_to(Duration::from_secs(31));
    assert_eq!(net.clients[a].closed(), Some(&Err(Error::Timeout)));
    assert!(net.relay.store().is_empty(), "the lonely side cleaned up");
}

#[test]
fn a_third_side_is_told_the_nameplate_is_crowded() {
    let mut net = Net::new();
    let a = net.add(Config::new(APPID), 1);
    net.input(a, Input::Allocate { words: 2 });
    net.settle();
    let code = net.clients[a].code().unwrap();
    // B and C both claim before anyone released the nameplate; C comes third.
    let b = net.add(Config::new(APPID), 2);
    let c = net.add(Config::new(APPID), 3);
    net.input(b, Input::SetCode(code.clone()));
    net.input(c, Input::SetCode(code));
    net.settle();
    assert_eq!(net.clients[c].closed(), Some(&Err(Error::Crowded)));
    assert!(net.clients[c].data().is_empty());
}

#[test]
fn an_unreachable_relay_is_reported_at_once() {
    let mut net = Net::new();
    let a = net.add(Config::new(APPID), 1);
    net.clients[a].refuse_connect = true;
    net.input(a, Input::Allocate { words: 2 });
    net.settle();
    assert!(matches!(
        net.clients[a].closed(),
        Some(Err(Error::RelayUnreachable(_)))
    ));
}

#[test]
fn a_restored_session_finishes_the_exchange() {
    let mut net = Net::new();
    let (a, b) = pair(&mut net);
    // A "crashes" after the key exchange and is restored from its serialized state.
    let saved = net.clients[a].session.to_json().unwrap();
    if let Some(conn) = net.clients[a].conn.take() {
        net.relay.disconnected(conn);
    }
    net.clients[a].session = Session::from_json(&saved, [42; 32]).unwrap();
    net.settle();
    net.input(a, Input::Send(b"after restart".to_vec()));
    net.input(b, Input::Send(b"to restored".to_vec()));
    net.settle();
    assert_eq!(net.clients[b].data(), vec![b"after restart".to_vec()]);
    assert_eq!(net.clients[a].data(), vec![b"to restored".to_vec()]);
    assert_eq!(net.clients[a].verifier(), net.clients[b].verifier());
}

#[test]
fn pull_connections_are_polled_on_the_schedule() {
    let mut net = Net::new();
    net.pull = true;
    let mut config = Config::new(APPID);
    config.schedule = Schedule::new(vec![
        (Duration::ZERO, Duration::from_secs(1)),
        (Duration::from_secs(3), Duration::from_secs(5)),
    ])
    .unwrap();
    let a = net.add(config, 1);
    net.input(a, Input::Allocate { words: 2 });
    net.settle();
    net.advance_to(Duration::from_secs(14));
    let secs: Vec<u64> = net.clients[a].polls.iter().map(|d| d.as_secs()).collect();
    assert_eq!(secs, vec![1, 2, 3, 8, 13]);
}

#[test]
fn bad_application_inputs_are_refused_without_harm() {
    let mut s = Session::new(Config::new(APPID), [1; 32]);
    let big = vec![0u8; DEFAULT_MAX_MESSAGE + 1];
    assert!(matches!(
        s.handle(Duration::ZERO, Input::Send(big)),
        Err(Error::MessageTooLarge { .. })
    ));
    s.handle(
        Duration::ZERO,
        Input::SetCode(Code::parse("4-a-b").unwrap()),
    )
    .unwrap();
    assert!(matches!(
        s.handle(
            Duration::ZERO,
            Input::SetCode(Code::parse("5-a-b").unwrap())
        ),
        Err(Error::InvalidInput(_))
    ));
    assert!(!s.is_finished());
}

#[test]
fn debug_output_and_errors_hold_no_secrets() {
    let mut net = Net::new();
    let (a, _b) = pair(&mut net);
    let code = net.clients[a].code().unwrap();
    let words = code.words().to_string();
    let debug = format!("{:?}", net.clients[a].session);
    assert!(!debug.contains(&words), "{debug}");
    for e in [Error::WrongCode, Error::Crowded, Error::Timeout] {
        assert!(!e.to_string().contains(&words));
    }
}

#[test]
fn frames_from_a_broken_relay_do_not_panic() {
    let mut s = Session::new(Config::new(APPID), [1; 32]);
    s.handle(Duration::ZERO, Input::Connected { pull: false })
        .unwrap();
    for junk in [
        "",
        "null",
        "[]",
        "{}",
        r#"{"type": 5}"#,
        r#"{"type":"message"}"#,
        r#"{"type":"message","side":"x","phase":"pake","body":"zz"}"#,
        r#"{"type":"allocated","nameplate":"not digits"}"#,
        r#"{"type":"claimed","mailbox":7}"#,
        "\u{0}\u{ffff}",
    ] {
        s.handle(Duration::ZERO, Input::Frame(junk.into())).unwrap();
    }
    let mut outs = VecDeque::new();
    while let Some(o) = s.poll_output() {
        outs.push_back(o);
    }
    assert!(!outs.is_empty());
}

/// Found by the simulator (relay-crash): a happy close while the relay was down ended at the
/// close grace and reported success, though the last message never reached the relay.
#[test]
fn a_happy_close_waits_for_its_messages_to_be_stored() {
    let mut net = Net::new();
    let (a, b) = pair(&mut net);
    net.input(a, Input::Send(b"from A".to_vec()));
    net.settle();
    assert_eq!(net.clients[b].data(), vec![b"from A".to_vec()]);
    // B's message goes out on a connection that dies; the relay stays out of reach.
    net.clients[b].hold_adds = true;
    net.input(b, Input::Send(b"from B".to_vec()));
    net.settle();
    net.clients[b].held.clear();
    net.clients[b].hold_adds = false;
    net.clients[b].refuse_connect = true;
    let conn = net.clients[b].conn.unwrap();
    net.drop_conn(conn);
    net.input(b, Input::Close);
    net.settle();
    net.advance_to(net.now + CLOSE_GRACE * 3);
    assert_eq!(net.clients[b].closed(), None, "B gave up on its message");
    // The relay is back: B delivers, then closes happily.
    net.clients[b].refuse_connect = false;
    net.advance_to(net.now + Duration::from_secs(120));
    assert_eq!(net.clients[a].data(), vec![b"from B".to_vec()]);
    assert_eq!(net.clients[b].closed(), Some(&Ok(())));
}

#[test]
fn a_happy_close_that_cannot_deliver_times_out() {
    let mut net = Net::new();
    let (a, b) = pair(&mut net);
    net.input(a, Input::Send(b"from A".to_vec()));
    net.settle();
    net.clients[b].hold_adds = true;
    net.input(b, Input::Send(b"from B".to_vec()));
    net.settle();
    net.clients[b].held.clear();
    net.clients[b].hold_adds = false;
    net.clients[b].refuse_connect = true;
    let conn = net.clients[b].conn.unwrap();
    net.drop_conn(conn);
    net.input(b, Input::Close);
    net.advance_to(DEFAULT_TIMEOUT + Duration::from_secs(1));
    assert_eq!(net.clients[b].closed(), Some(&Err(Error::Timeout)));
    assert!(net.clients[a].data().is_empty());
}

mod resume;
