//! The invariants every run must keep.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use wormhole::core::{jitter_bounds, reconnect_delay, Schedule, CLOSE_GRACE, STABLE_CONNECTION};
use wormhole::Error;

use crate::params::Scenario;
use crate::record::{Entry, What};
use crate::world::{Outcome, RunData, APPID};

/// The class of an outcome, for "both sides end the same way".
fn class(result: &Result<(), Error>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(Error::WrongCode) => "wrong code".into(),
        Err(Error::Crowded) => "crowded".into(),
        Err(Error::Timeout) => "timeout".into(),
        Err(e) => format!("other error ({e})"),
    }
}

fn outcome<'a>(data: &'a RunData, who: &str) -> Option<&'a Outcome> {
    data.outcomes.iter().find(|(w, _)| w == who).map(|(_, o)| o)
}

/// Every invariant violated by a run (empty: it passed).
pub fn check(data: &RunData) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(e) = &data.sim_error {
        v.push(format!("the simulation did not complete: {e}"));
    }
    let expected: &[&str] = match data.params.scenario {
        Scenario::Timeout | Scenario::Abandoned => &["alice"],
        _ if data.params.mallory.is_some() => &["alice", "bob", "mallory"],
        _ => &["alice", "bob"],
    };
    for who in expected {
        if outcome(data, who).is_none() {
            v.push(format!("{who} never finished"));
        }
    }
    if !v.is_empty() {
        return v;
    }
    let entries = data.log.entries();
    outcomes(data, &mut v);
    for (who, o) in &data.outcomes {
        if o.tasks_left > 0 {
            v.push(format!(
                "{who}: {} task(s) still running {:?} after it finished",
                o.tasks_left,
                crate::world::TASK_GRACE
            ));
        }
        frames(who, &entries, &mut v);
        schedule(data, who, o, &entries, &mut v);
        polls(data, who, o, &entries, &mut v);
        if o.result == Err(Error::Timeout) {
            timeout_on_time(data, who, o, &entries, &mut v);
        }
    }
    relay_state(data, &entries, &mut v);
    if data.params.scenario == Scenario::Abandoned {
        pruned(data, &entries, &mut v);
    }
    v
}

/// Both sides get exactly the other's data, or both end with the same class of error; the
/// scenario's own expectation; nothing delivered twice or out of order.
fn outcomes(data: &RunData, v: &mut Vec<String>) {
    let alice = outcome(data, "alice");
    let bob = outcome(data, "bob");
    let mallory = outcome(data, "mallory");
    let (alice_sent, bob_sent) = &data.sent;
    let mallory_sent = crate::world::messages("mallory", 1);
    // Whatever anyone received is an in-order prefix of what one peer sent.
    // A bob that restored an older state sent one update per start, all under the same
    // phase: alice keeps whichever copy she sees first.
    let updates: Vec<Vec<Vec<u8>>> = (1..=crate::world::STARTS)
        .map(|n| vec![crate::world::update(n)])
        .collect();
    for (who, o) in &data.outcomes {
        let candidates: Vec<&Vec<Vec<u8>>> = match who.as_str() {
            "alice" if data.params.scenario == Scenario::RestoreTwice => updates.iter().collect(),
            "alice" => vec![bob_sent, &mallory_sent],
            _ => vec![alice_sent],
        };
        let ok = o.received.is_empty()
            || candidates
                .iter()
                .any(|sent| sent.starts_with(&o.received) && !o.received.is_empty());
        if !ok {
            v.push(format!(
                "{who} received {} message(s) that are not, in order and once each, what its peer sent: {:?}",
                o.received.len(),
                o.received.iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect::<Vec<_>>()
            ));
        }
        if o.result.is_ok() {
            let full = candidates.iter().any(|sent| **sent == o.received);
            if !full {
                v.push(format!(
                    "{who} succeeded without receiving exactly its peer's messages"
                ));
            }
        }
    }
    let (Some(alice), scenario) = (alice, data.params.scenario) else {
        return;
    };
    let ca = class(&alice.result);
    match scenario {
        Scenario::Abandoned => {
            if ca != "timeout" {
                v.push(format!("alice should time out, ended: {ca}"));
            }
            return;
        }
        Scenario::Timeout => {
            if ca != "timeout" {
                v.push(format!("alice should time out, ended: {ca}"));
            }
            return;
        }
        Scenario::Crowded => {
            let (Some(bob), Some(mallory)) = (bob, mallory) else {
                return;
            };
            let (cb, cm) = (class(&bob.result), class(&mallory.result));
            let pair_ab = ca == "ok" && cb == "ok" && (cm == "crowded" || cm == "timeout");
            let pair_am =
                ca == "wrong code" && cm == "wrong code" && (cb == "crowded" || cb == "timeout");
            // Both joiners claim before either opens: the relay's crowded quirk (kept for
            // Python compatibility, see relay docs) refuses them both; alice waits in vain.
            let race = ca == "timeout" && cb == "crowded" && cm == "crowded";
            if !(pair_ab || pair_am || race) {
                v.push(format!(
                    "a third party: expected alice and bob ok (mallory crowded or timed out) or alice and mallory wrong code (bob crowded or timed out) or alice timed out (bob and mallory crowded); got alice {ca}, bob {cb}, mallory {cm}"
                ));
            }
            return;
        }
        _ => {}
    }
    let Some(bob) = bob else { return };
    let cb = class(&bob.result);
    if ca != cb {
        v.push(format!(
            "the two sides ended differently: alice {ca}, bob {cb}"
        ));
    }
    let want = if scenario == Scenario::WrongCode {
        "wrong code"
    } else {
        "ok"
    };
    if ca != want || cb != want {
        v.push(format!("expected both {want}; got alice {ca}, bob {cb}"));
    }
}

/// No nonce ever seals two different bodies (whatever their phases); no `add` phase sent twice
/// with different bodies, unless the client restored an older state in between (its
/// application then sends anew what the restored state had not sent yet, and may send
/// something else: the peer keeps the first copy it sees, and the re-seal must use a fresh
/// nonce, which the first rule checks).
fn frames(who: &str, entries: &[Entry], v: &mut Vec<String>) {
    // phase -> (body, restores of an older state before it was sent)
    let mut bodies: BTreeMap<String, (String, usize)> = BTreeMap::new();
    // nonce -> (phase, body)
    let mut nonces: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut restores = 0;
    for e in entries.iter().filter(|e| e.who == who) {
        let frame = match &e.what {
            What::Note(n) if n == crate::world::RESTORED_OLDER => {
                restores += 1;
                continue;
            }
            What::Sent(frame) => frame,
            _ => continue,
        };
        let Ok(Value::Object(m)) = serde_json::from_str::<Value>(frame) else {
            v.push(format!("{who} sent a frame that is not a JSON object"));
            continue;
        };
        if m.get("type").and_then(Value::as_str) != Some("add") {
            continue;
        }
        let phase = m
            .get("phase")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let body = m
            .get("body")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        match bodies.get(&phase) {
            Some((b, r)) if *b != body && *r == restores => v.push(format!(
                "{who} sent phase {phase:?} twice with different contents (at {:?})",
                e.at
            )),
            Some((b, _)) if *b == body => {}
            // New, or sent anew after a restore of an older state: later copies match this one.
            _ => {
                bodies.insert(phase.clone(), (body.clone(), restores));
            }
        }
        if phase == "pake" {
            continue;
        }
        let nonce = body.get(..48).unwrap_or("").to_string();
        match nonces.get(&nonce) {
            Some((other, b)) if *b != body => v.push(format!(
                "{who} reused a nonce: phase {other:?} and phase {phase:?} sealed different contents under it (at {:?})",
                e.at
            )),
            Some(_) => {}
            None => {
                nonces.insert(nonce, (phase, body));
            }
        }
    }
}

/// Every reconnection happens when the schedule says (within one tick), and none is skipped.
fn schedule(data: &RunData, who: &str, o: &Outcome, entries: &[Entry], v: &mut Vec<String>) {
    let p = &data.params;
    let sched: Schedule = p.preset.schedule();
    let tick = p.tick;
    let mine: Vec<&Entry> = entries.iter().filter(|e| e.who == who).collect();
    let mut ever_connected = false;
    let mut up_since: Option<Duration> = None;
    let mut attempts: u32 = 0;
    for (i, e) in mine.iter().enumerate() {
        let lost = match &e.what {
            // A restarted client: what its crash cut is no scheduled reconnection.
            What::Note(n) if n.starts_with("boot ") => {
                up_since = None;
                continue;
            }
            What::Connected => {
                ever_connected = true;
                up_since = Some(e.at);
                continue;
            }
            What::ConnectFailed(_) => true,
            What::Lost(_) => true,
            _ => false,
        };
        if !lost {
            continue;
        }
        let later = &mine[i + 1..];
        // Lost because the host crashed: the next boot is not a reconnection.
        if later
            .iter()
            .take_while(|n| n.what != What::Attempt)
            .any(|n| matches!(&n.what, What::Note(t) if t.starts_with("boot ")))
        {
            continue;
        }
        let next = later.iter().find(|n| n.what == What::Attempt).map(|n| n.at);
        if !ever_connected {
            if let Some(at) = next {
                v.push(format!(
                    "{who}: the first connection failed, yet it retried at {at:?} instead of failing"
                ));
            }
            return;
        }
        // Session time: the session started when the client did.
        let t = e.at.saturating_sub(o.started);
        if up_since
            .take()
            .is_some_and(|u| e.at.saturating_sub(u) >= STABLE_CONNECTION)
        {
            attempts = 0;
        }
        let nominal = reconnect_delay(&sched, t, attempts);
        attempts = attempts.saturating_add(1);
        let (lo, hi) = jitter_bounds(nominal);
        let (earliest, latest) = (e.at + lo, e.at + hi);
        match next {
            Some(at) if at + tick < earliest || at > latest + tick => v.push(format!(
                "{who}: reconnected at {at:?} after losing the connection at {:?}; the schedule says {earliest:?}..{latest:?} (attempt {attempts})",
                e.at
            )),
            Some(_) => {}
            None => {
                // No retry: only if the session was over before the earliest retry time.
                if o.ended > latest + tick {
                    v.push(format!(
                        "{who}: lost the connection at {:?} and did not reconnect by {latest:?}, though it went on until {:?}",
                        e.at, o.ended
                    ));
                }
            }
        }
    }
}

/// On a pull connection the session polls on the schedule: polls are due one interval after
/// the connection came up and then one interval (the one in force) after the previous due
/// time, in session time. Each due poll happens within one tick of its time, or, when the
/// connection is busy with a send then (the connection's task does one thing at a time), right
/// after that send, where several due polls may merge into one. No poll happens that is not
/// due, and none is skipped while the connection lasts.
fn polls(data: &RunData, who: &str, o: &Outcome, entries: &[Entry], v: &mut Vec<String>) {
    let p = &data.params;
    let tick = p.tick;
    let sched: Schedule = p.preset.schedule();
    let interval = |t: Duration| sched.interval_at(t.saturating_sub(o.started));
    let mine: Vec<&Entry> = entries.iter().filter(|e| e.who == who).collect();
    let mut i = 0;
    while i < mine.len() {
        if mine[i].what != What::Pull {
            i += 1;
            continue;
        }
        // One pull connection, from `up` to `end`: its polls and its busy (sending) spans.
        let up = mine[i].at;
        let mut end = o.ended;
        let mut polls: Vec<Duration> = Vec::new();
        let mut busy: Vec<(Duration, Duration)> = Vec::new();
        let mut sending: Option<Duration> = None;
        let mut j = i + 1;
        while j < mine.len() {
            match &mine[j].what {
                What::Poll => polls.push(mine[j].at),
                What::Sent(_) => {
                    sending.get_or_insert(mine[j].at);
                }
                What::SendDone => {
                    if let Some(s) = sending.take() {
                        busy.push((s, mine[j].at));
                    }
                }
                What::Lost(_) | What::Closed | What::Attempt => {
                    end = mine[j].at;
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        if let Some(s) = sending {
            busy.push((s, end));
        }
        // Back-to-back sends (queued behind each other) keep the connection busy as one span.
        let mut spans: Vec<(Duration, Duration)> = Vec::new();
        for (s, e) in busy {
            match spans.last_mut() {
                Some(last) if s <= last.1 + tick => last.1 = last.1.max(e),
                _ => spans.push((s, e)),
            }
        }
        // When a poll due at `d` may happen at the latest.
        let latest = |d: Duration| {
            spans
                .iter()
                .find(|(s, e)| *s <= d + tick && *e + tick >= d)
                .map_or(d, |(_, e)| d.max(*e))
                + tick
        };
        let mut matched = vec![false; polls.len()];
        let mut due = up + interval(up);
        while due <= end {
            let window = (due.saturating_sub(tick), latest(due));
            let within = |a: &Duration| (window.0..=window.1).contains(a);
            // The first poll not yet taken by an earlier due one; else one taken (merged).
            let fresh = (0..polls.len()).find(|&k| !matched[k] && within(&polls[k]));
            match fresh {
                Some(k) => matched[k] = true,
                None if polls.iter().any(within) => {}
                None if window.1 >= end => {}
                None => {
                    v.push(format!(
                        "{who}: no poll between {:?} and {:?} (due at {due:?}); polls were at {:?}",
                        window.0, window.1, polls
                    ));
                    return;
                }
            }
            due += interval(due);
        }
        if let Some(k) = matched.iter().position(|m| !m) {
            v.push(format!(
                "{who}: polled at {:?}, when no poll was due (connection up at {up:?})",
                polls[k]
            ));
            return;
        }
        i = j;
    }
}

/// A timed-out session gave up at its deadline, within one tick: it sends its goodbye
/// (`release`/`close`) then if it has one to send, and ends at once if its link was down then;
/// a polite close over a link that is up takes at most [`CLOSE_GRACE`] more.
fn timeout_on_time(data: &RunData, who: &str, o: &Outcome, entries: &[Entry], v: &mut Vec<String>) {
    let p = &data.params;
    let timeout = if who == "mallory" {
        Duration::from_secs(60)
    } else {
        p.timeout
    };
    let deadline = o.started + timeout;
    let mine = || entries.iter().filter(|e| e.who == who);
    let goodbye = mine()
        .filter(|e| e.at + p.tick >= deadline)
        .find(|e| match &e.what {
            What::Sent(f) => f.contains(r#""type":"close""#) || f.contains(r#""type":"release""#),
            _ => false,
        })
        .map(|e| e.at);
    let early = |t: Duration| t + p.tick < deadline;
    if let Some(g) = goodbye {
        if early(g) || g > deadline + p.tick {
            v.push(format!(
                "{who}: said goodbye at {g:?} on a timeout whose deadline was {deadline:?} (tick {:?})",
                p.tick
            ));
        }
    }
    let link_up = entries
        .iter()
        .rev()
        .filter(|e| e.who == who && e.at <= deadline)
        .find(|e| {
            matches!(
                e.what,
                What::Connected | What::Lost(_) | What::ConnectFailed(_) | What::Closed
            )
        })
        .is_some_and(|e| e.what == What::Connected);
    let latest = if link_up {
        deadline + CLOSE_GRACE + p.tick
    } else {
        deadline + p.tick
    };
    if early(o.ended) || o.ended > latest {
        v.push(format!(
            "{who}: timed out at {:?}; its deadline was {deadline:?}, so it should have ended by {latest:?} (link {} at the deadline)",
            o.ended,
            if link_up { "up" } else { "down" }
        ));
    }
}

/// An abandoned exchange (no side could close) is pruned by the end: the relay's expiry
/// runs in virtual time.
fn pruned(data: &RunData, entries: &[Entry], v: &mut Vec<String>) {
    let holds: Vec<&str> = entries
        .iter()
        .filter_map(|e| match &e.what {
            What::Net(t) if t.starts_with("relay holds") => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let empty = "relay holds 0 nameplate(s), 0 mailbox(es)";
    match holds.as_slice() {
        // (The relay may have pruned it before alice was gone: abandoned single-side
        // nameplates expire early.)
        [_when_gone, at_end] => {
            if *at_end != empty {
                v.push(format!(
                    "the abandoned exchange was not pruned within {:?}: {at_end}",
                    data.params.linger.unwrap_or_default()
                ));
            }
        }
        other => v.push(format!("expected two store probes, got {}", other.len())),
    }
}

/// Once every side's mailbox close was confirmed by the relay, the relay holds nothing for
/// the exchange, in its store nor (several relay processes) in any running process's
/// listeners.
fn relay_state(data: &RunData, entries: &[Entry], v: &mut Vec<String>) {
    let all_closed = data.outcomes.iter().all(|(who, _)| {
        let got = |t: &str| {
            entries.iter().any(|e| {
                e.who == *who
                    && matches!(&e.what, What::Received(f) if f.contains(&format!(r#""type":"{t}""#)))
            })
        };
        got("closed")
    });
    if !all_closed {
        return;
    }
    // Each relay process's own state: a mailbox closed through any of them (and so deleted)
    // has no listener left on any.
    for (host, listened) in &data.listening {
        if !listened.is_empty() {
            v.push(format!(
                "every side closed, yet relay host {host} still listens to mailboxes {listened:?}"
            ));
        }
    }
    let (names, boxes) = match data.disk.contents(APPID) {
        Ok(c) => c,
        Err(e) => {
            v.push(format!("cannot read the relay's store: {e}"));
            return;
        }
    };
    // An `allocate` whose `allocated` answer was lost with its connection is sent again on
    // the next one: the relay then holds the first nameplate (and its mailbox) for a side
    // that never learned its number, until it prunes them. The protocol has no idempotent
    // allocate (the Python client does the same), so those orphans, and only as many, are
    // allowed.
    let count = |pred: &dyn Fn(&What) -> bool| entries.iter().filter(|e| pred(&e.what)).count();
    let allocates = count(&|w| matches!(w, What::Sent(f) if f.contains(r#""type":"allocate""#)));
    let allocated =
        count(&|w| matches!(w, What::Received(f) if f.contains(r#""type":"allocated""#)));
    let orphans = allocates.saturating_sub(allocated);
    if names.len() > orphans || boxes.len() > orphans {
        v.push(format!(
            "every side closed, yet the relay still holds nameplates {names:?} and mailboxes {boxes:?} ({orphans} allocation(s) unanswered)"
        ));
    }
}
