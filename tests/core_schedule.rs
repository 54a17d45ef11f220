//! Schedules, reconnection back-off and the hard timeout of the sans-IO client core, with a
//! fake clock: time is a `Duration` handed to the session, nothing runs, nothing sleeps.

use std::time::Duration;

use wormhole::core::{
    jitter_bounds, reconnect_delay, Config, Error, Event, Input, Output, Schedule, SchedulePreset,
    Session, STABLE_CONNECTION,
};
use wormhole::relay::{ConnId, MemoryStore, Relay, RelayConfig, RelayOutput};

const APPID: &str = "example.com/schedule-test";
const EPOCH: f64 = 1_800_000_000.0;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

fn config(schedule: Schedule, timeout: Option<Duration>) -> Config {
    let mut c = Config::new(APPID);
    c.schedule = schedule;
    c.timeout = timeout;
    c
}

/// Drains the session's outputs.
fn drain(s: &mut Session) -> Vec<Output> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

/// Wakes the session at each of its deadlines up to `until` (inclusive) and records when it
/// asked to poll. No relay: the frames it sends go nowhere, which changes nothing for polling.
fn poll_times(s: &mut Session, until: Duration) -> Vec<Duration> {
    let mut polls = Vec::new();
    for _ in 0..1_000_000 {
        let Some(t) = s.poll_timeout() else { break };
        if t > until {
            break;
        }
        s.handle(t, Input::Tick).unwrap();
        for out in drain(s) {
            if out == Output::Poll {
                polls.push(t);
            }
        }
    }
    polls
}

/// The poll times a schedule describes, computed from its steps by hand: within each step,
/// one poll per interval after the previous one, starting from the connection at zero.
fn expected(steps: &[(Duration, Duration)], until: Duration) -> Vec<Duration> {
    let mut out = Vec::new();
    let mut last = Duration::ZERO;
    loop {
        // The interval in force at the last poll: the last step that started by then.
        let interval = steps
            .iter()
            .rev()
            .find(|(when, _)| *when <= last)
            .map_or(steps[0].1, |s| s.1);
        last += interval;
        if last > until {
            return out;
        }
        out.push(last);
    }
}

fn connected_pull(schedule: Schedule) -> Session {
    let mut s = Session::new(config(schedule, None), [3; 32]);
    assert_eq!(drain(&mut s), vec![Output::Connect]);
    s.handle(Duration::ZERO, Input::Connected { pull: true })
        .unwrap();
    drain(&mut s);
    s
}

#[test]
fn a_pull_connection_polls_exactly_on_the_face_to_face_schedule() {
    let schedule = Schedule::face_to_face();
    let until = secs(900);
    let polls = poll_times(&mut connected_pull(schedule.clone()), until);
    assert_eq!(polls, expected(schedule.steps(), until));
    // Spot checks against the documented shape: 0.5 s for two minutes, 2 s to five, then 10 s.
    assert_eq!(polls[0], ms(500));
    assert_eq!(polls[239], secs(120));
    assert_eq!(polls[240], secs(122));
    let after_five: Vec<_> = polls.iter().filter(|t| **t > secs(300)).collect();
    assert_eq!(after_five[0], &secs(310));
    assert_eq!(polls.len(), 240 + 90 + 60);
}

#[test]
fn a_pull_connection_polls_exactly_on_the_long_lived_schedule_for_days() {
    let schedule = Schedule::long_lived();
    let three_days = secs(3 * 86_400);
    let polls = poll_times(&mut connected_pull(schedule.clone()), three_days);
    assert_eq!(polls, expected(schedule.steps(), three_days));
    // Every minute for ten minutes, every ten minutes to the hour, then hourly.
    assert_eq!(&polls[..3], &[secs(60), secs(120), secs(180)]);
    assert_eq!(polls[9], secs(600));
    assert_eq!(polls[10], secs(1200));
    assert_eq!(polls[14], secs(3600));
    assert_eq!(polls[15], secs(7200));
    assert_eq!(polls.len(), 10 + 5 + 71);
    let last_day = polls.iter().filter(|t| **t > secs(2 * 86_400)).count();
    assert_eq!(
        last_day, 24,
        "an idle long-lived client polls 24 times a day"
    );
}

#[test]
fn a_custom_schedule_is_followed_across_its_steps() {
    let steps = vec![
        (Duration::ZERO, ms(300)),
        (secs(1), ms(700)),
        (secs(5), secs(2)),
    ];
    let schedule = Schedule::new(steps.clone()).unwrap();
    let polls = poll_times(&mut connected_pull(schedule), secs(12));
    assert_eq!(polls, expected(&steps, secs(12)));
    assert_eq!(&polls[..4], &[ms(300), ms(600), ms(900), ms(1200)]);
}

#[test]
fn reconnect_delays_follow_the_schedule_within_the_jitter_bound() {
    let schedule = Schedule::new(vec![(Duration::ZERO, secs(1)), (secs(300), secs(90))]).unwrap();
    let mut s = Session::new(config(schedule.clone(), None), [4; 32]);
    drain(&mut s);
    let mut now = Duration::ZERO;
    s.handle(now, Input::Connected { pull: false }).unwrap();
    drain(&mut s);
    now += ms(20);
    s.handle(now, Input::Disconnected).unwrap();
    // Every attempt fails (odd ones cannot connect, even ones connect and drop at once), so
    // attempt k waits the schedule's interval grown k times, within the jitter bound. The
    // schedule's second step (90 s from five minutes on) takes over on the way.
    let mut delays = Vec::new();
    for attempt in 0..24u32 {
        drain(&mut s);
        let retry = s.poll_timeout().expect("a retry is scheduled");
        let nominal = reconnect_delay(&schedule, now, attempt);
        let (lo, hi) = jitter_bounds(nominal);
        let delay = retry - now;
        assert!(
            (lo..=hi).contains(&delay),
            "attempt {attempt} at {now:?}: {delay:?} outside {lo:?}..={hi:?}"
        );
        delays.push((now, nominal));
        assert_eq!(s.poll_timeout(), Some(retry));
        s.handle(retry - ms(1), Input::Tick).unwrap();
        assert_eq!(drain(&mut s), vec![], "not before the retry time");
        now = retry;
        s.handle(now, Input::Tick).unwrap();
        assert_eq!(drain(&mut s), vec![Output::Connect], "attempt {attempt}");
        if attempt % 2 == 1 {
            let reason = "refused".to_string();
            s.handle(now, Input::ConnectFailed { reason }).unwrap();
        } else {
            s.handle(now, Input::Connected { pull: false }).unwrap();
            drain(&mut s);
            now += ms(300);
            s.handle(now, Input::Disconnected).unwrap();
        }
    }
    // The nominal delays grew to the cap, then jumped to the slower step's interval.
    assert_eq!(delays[0].1, secs(1));
    assert_eq!(delays[1].1, ms(1500));
    assert!(delays.iter().any(|(_, d)| *d == secs(60)), "{delays:?}");
    assert_eq!(delays.last().unwrap().1, secs(90), "{delays:?}");
}

#[test]
fn a_connection_that_drops_at_once_does_not_reset_the_back_off_but_a_stable_one_does() {
    let schedule = Schedule::new(vec![(Duration::ZERO, secs(1))]).unwrap();
    let mut s = Session::new(config(schedule.clone(), None), [5; 32]);
    drain(&mut s);
    let mut now = Duration::ZERO;
    s.handle(now, Input::Connected { pull: false }).unwrap();
    drain(&mut s);
    let mut delays = Vec::new();
    for _ in 0..6 {
        // Up for one second (welcome, ack and all), then dropped.
        now += secs(1);
        s.handle(now, Input::Disconnected).unwrap();
        drain(&mut s);
        let retry = s.poll_timeout().unwrap();
        delays.push(retry - now);
        now = retry;
        s.handle(now, Input::Tick).unwrap();
        drain(&mut s);
        s.handle(now, Input::Connected { pull: false }).unwrap();
        drain(&mut s);
    }
    for (attempt, d) in delays.iter().enumerate() {
        let (lo, hi) = jitter_bounds(reconnect_delay(&schedule, now, attempt as u32));
        assert!((lo..=hi).contains(d), "attempt {attempt}: {d:?}");
    }
    assert!(
        delays[5] > secs(5),
        "after six quick drops the delay has grown: {delays:?}"
    );
    // This connection stays up long enough to count as healthy: the back-off starts over.
    now += STABLE_CONNECTION;
    s.handle(now, Input::Disconnected).unwrap();
    drain(&mut s);
    let delay = s.poll_timeout().unwrap() - now;
    let (lo, hi) = jitter_bounds(secs(1));
    assert!(
        (lo..=hi).contains(&delay),
        "back to one interval: {delay:?}"
    );
}

#[test]
fn clients_dropped_together_come_back_spread_out() {
    let schedule = Schedule::face_to_face();
    let drop_at = secs(30);
    let mut retries: Vec<Duration> = (0..200u8)
        .map(|seed| {
            let mut s = Session::new(config(schedule.clone(), None), [seed; 32]);
            drain(&mut s);
            s.handle(Duration::ZERO, Input::Connected { pull: false })
                .unwrap();
            s.handle(drop_at, Input::Disconnected).unwrap();
            s.poll_timeout().unwrap() - drop_at
        })
        .collect();
    retries.sort();
    let (lo, hi) = jitter_bounds(ms(500));
    assert!(retries.iter().all(|d| (lo..=hi).contains(d)));
    // No tick of a millisecond holds more than a handful of the 200 clients.
    let mut busiest = 0;
    for w in retries.chunk_by(|a, b| a.as_millis() == b.as_millis()) {
        busiest = busiest.max(w.len());
    }
    assert!(busiest <= 8, "{busiest} clients in the same millisecond");
    assert!(
        retries[199] - retries[0] > ms(200),
        "spread over the window"
    );
}

/// One session against the relay core, in virtual time.
struct Net {
    relay: Relay<MemoryStore>,
    session: Session,
    conn: Option<ConnId>,
    next_conn: ConnId,
    now: Duration,
    events: Vec<(Duration, Event)>,
    sent: Vec<(Duration, String)>,
    reachable: bool,
}

impl Net {
    fn new(config: Config) -> Net {
        Net {
            relay: Relay::new(RelayConfig::default(), MemoryStore::default(), [9; 32]),
            session: Session::new(config, [7; 32]),
            conn: None,
            next_conn: 1,
            now: Duration::ZERO,
            events: Vec::new(),
            sent: Vec::new(),
            reachable: true,
        }
    }

    fn unix(&self) -> f64 {
        EPOCH + self.now.as_secs_f64()
    }

    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut progress = false;
            while let Some(out) = self.session.poll_output() {
                progress = true;
                match out {
                    Output::Connect if self.reachable => {
                        let id = self.next_conn;
                        self.next_conn += 1;
                        self.conn = Some(id);
                        self.relay.connected(id, None, self.unix());
                        let now = self.now;
                        self.session
                            .handle(now, Input::Connected { pull: false })
                            .unwrap();
                    }
                    Output::Connect => {
                        let now = self.now;
                        let reason = "refused".to_string();
                        self.session
                            .handle(now, Input::ConnectFailed { reason })
                            .unwrap();
                    }
                    Output::Transmit(frame) => {
                        self.sent.push((self.now, frame.clone()));
                        if let Some(id) = self.conn {
                            let unix = self.unix();
                            self.relay.received(id, &frame, unix);
                        }
                    }
                    Output::Poll => {}
                    Output::Disconnect => {
                        if let Some(id) = self.conn.take() {
                            self.relay.disconnected(id);
                        }
                    }
                    Output::Event(e) => self.events.push((self.now, e)),
                }
            }
            while let Some(out) = self.relay.poll_output() {
                progress = true;
                if let RelayOutput::Send { conn, frame } = out {
                    if Some(conn) == self.conn {
                        let now = self.now;
                        self.session
                            .handle(now, Input::Frame(frame.to_string()))
                            .unwrap();
                    }
                }
            }
            if !progress {
                return;
            }
        }
        panic!("never settled");
    }

    /// Advances to `t`, waking the session at each deadline on the way.
    fn advance_to(&mut self, t: Duration) {
        for _ in 0..1_000_000 {
            match self.session.poll_timeout() {
                Some(d) if d <= t => {
                    self.now = self.now.max(d);
                    let now = self.now;
                    self.session.handle(now, Input::Tick).unwrap();
                    self.settle();
                }
                _ => break,
            }
        }
        self.now = self.now.max(t);
    }

    fn drop_connection(&mut self) {
        if let Some(id) = self.conn.take() {
            self.relay.disconnected(id);
            let now = self.now;
            self.session.handle(now, Input::Disconnected).unwrap();
        }
    }

    fn closed(&self) -> Option<(Duration, Result<(), Error>)> {
        self.events.iter().find_map(|(t, e)| match e {
            Event::Closed(r) => Some((*t, r.clone())),
            _ => None,
        })
    }
}

#[test]
fn the_timeout_fires_at_its_deadline_and_closes_the_mailbox_lonely() {
    let deadline = secs(45);
    let mut net = Net::new(config(Schedule::face_to_face(), Some(deadline)));
    net.session
        .handle(Duration::ZERO, Input::Allocate { words: 2 })
        .unwrap();
    net.settle();
    assert!(net.events.iter().any(|(_, e)| matches!(e, Event::Code(_))));
    assert!(!net.relay.store().is_empty(), "the nameplate is allocated");
    net.advance_to(deadline - ms(1));
    assert!(net.closed().is_none(), "nothing ends before the deadline");
    let sent_before = net.sent.len();
    net.advance_to(deadline);
    assert_eq!(net.closed(), Some((deadline, Err(Error::Timeout))));
    let closing: Vec<&String> = net.sent[sent_before..].iter().map(|(_, f)| f).collect();
    assert!(
        closing
            .iter()
            .any(|f| f.contains(r#""type":"close""#) && f.contains(r#""mood":"lonely""#)),
        "the mailbox is closed with mood lonely: {closing:?}"
    );
    assert!(closing.iter().any(|f| f.contains(r#""type":"release""#)));
    assert!(net.relay.store().is_empty(), "nothing left on the relay");
    assert!(net.session.is_finished());
    assert_eq!(net.session.poll_timeout(), None, "no timer left running");
    assert!(net.conn.is_none(), "the connection was dropped");
}

#[test]
fn the_timeout_fires_at_its_deadline_while_the_relay_is_unreachable() {
    let deadline = secs(20);
    let mut net = Net::new(config(Schedule::face_to_face(), Some(deadline)));
    net.session
        .handle(Duration::ZERO, Input::Allocate { words: 2 })
        .unwrap();
    net.settle();
    net.advance_to(secs(5));
    // The relay goes away: the session keeps retrying until the deadline, then stops at once.
    net.reachable = false;
    net.drop_connection();
    net.settle();
    net.advance_to(deadline - ms(1));
    assert!(net.closed().is_none());
    net.advance_to(deadline + secs(60));
    assert_eq!(net.closed(), Some((deadline, Err(Error::Timeout))));
    assert_eq!(net.session.poll_timeout(), None);
}

#[test]
fn the_timeout_counts_from_the_first_start_across_a_restore() {
    let deadline = secs(30);
    let mut net = Net::new(config(Schedule::face_to_face(), Some(deadline)));
    net.session
        .handle(Duration::ZERO, Input::Allocate { words: 2 })
        .unwrap();
    net.settle();
    net.advance_to(secs(20));
    let saved = net.session.to_json().unwrap();
    net.drop_connection();
    net.session = Session::from_json(&saved, [7; 32]).unwrap();
    net.settle();
    net.advance_to(secs(29));
    assert!(net.closed().is_none());
    net.advance_to(secs(31));
    assert_eq!(net.closed(), Some((deadline, Err(Error::Timeout))));
}

#[test]
fn a_duration_max_timeout_never_fires_and_never_overflows() {
    for preset in SchedulePreset::ALL {
        let mut net = Net::new(config(preset.schedule(), Some(Duration::MAX)));
        net.session
            .handle(Duration::ZERO, Input::Allocate { words: 2 })
            .unwrap();
        net.settle();
        // Drops and reconnects near the end of time saturate instead of overflowing.
        net.advance_to(secs(10 * 86_400));
        net.drop_connection();
        net.settle();
        net.advance_to(secs(11 * 86_400));
        assert!(net.conn.is_some(), "{preset}: reconnected");
        assert!(net.closed().is_none(), "{preset}: no timeout");
        let saved = net.session.to_json().unwrap();
        let restored = Session::from_json(&saved, [7; 32]).unwrap();
        assert!(restored.poll_timeout().is_some());
        // Time itself at its limit: every timer saturates.
        let far = Duration::MAX - secs(86_400);
        net.now = far;
        net.drop_connection();
        net.settle();
        let retry = net.session.poll_timeout().unwrap();
        assert!(retry > far && retry <= Duration::MAX, "{retry:?}");
        net.advance_to(retry);
        assert!(
            net.conn.is_some(),
            "{preset}: reconnected at the end of time"
        );
        assert!(net.closed().is_none(), "{preset}: still no timeout");
    }
    // A pull connection on a schedule of `Duration::MAX` intervals saturates too.
    let huge = Schedule::new(vec![(Duration::ZERO, Duration::MAX)]).unwrap();
    let mut s = Session::new(config(huge, Some(Duration::MAX)), [1; 32]);
    drain(&mut s);
    s.handle(secs(1), Input::Connected { pull: true }).unwrap();
    assert_eq!(s.poll_timeout(), Some(Duration::MAX));
    s.handle(Duration::MAX, Input::Tick).unwrap();
}
