//! The deterministic event trace of a run: one line per event, in simulated time.

use std::fmt::Write;

use serde_json::Value;

use crate::record::What;
use crate::world::RunData;

/// A short description of a JSON frame: its type and the fields that tell the story.
fn summary(frame: &str) -> String {
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(frame) else {
        return format!("non-JSON frame of {} bytes", frame.len());
    };
    let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("");
    let t = s("type");
    match t {
        "add" => format!(
            "add {} ({} hex, #{:08x})",
            s("phase"),
            s("body").len(),
            digest(s("body"))
        ),
        "message" => format!("message {} from {}", s("phase"), s("side")),
        "claim" | "release" | "allocated" => format!("{t} {}", s("nameplate")),
        "close" => format!("close {}", s("mood")),
        "bind" => format!("bind {}", s("side")),
        "error" => format!("error {:?}", s("error")),
        _ => t.to_string(),
    }
}

/// A short digest of a frame's body (FNV-1a), so the trace pins contents too.
fn digest(text: &str) -> u32 {
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (h ^ (h >> 32)) as u32
}

/// The trace: parameters, then every event with its time, then each outcome.
pub fn render(data: &RunData) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}", data.params);
    for e in data.log.entries() {
        let what = match &e.what {
            What::Attempt => "connect".to_string(),
            What::Connected => "connected".to_string(),
            What::Pull => "(pull connection: polled on the schedule)".to_string(),
            What::Poll => "poll".to_string(),
            // Implied by the next event; a line each would double the trace.
            What::SendDone if std::env::var_os("SIM_TRACE_SENDS").is_none() => continue,
            What::SendDone => "send done".to_string(),
            What::ConnectFailed(why) => format!("connect failed: {why}"),
            What::Sent(f) => format!("-> {}", summary(f)),
            // Acks are one per command: leave them out.
            What::Received(f) if f.contains(r#""type":"ack""#) => continue,
            What::Received(f) => format!("<- {}", summary(f)),
            What::Lost(why) => format!("lost: {why}"),
            What::Closed => "closed".to_string(),
            What::Net(what) => what.clone(),
            What::Note(what) => what.clone(),
        };
        let _ = writeln!(out, "{:>12.3?} {:<8} {what}", e.at, e.who);
    }
    for (who, o) in &data.outcomes {
        let _ = writeln!(
            out,
            "{:>12.3?} {who:<8} outcome {:?} after {} message(s), {} task(s) left",
            o.ended,
            o.result,
            o.received.len(),
            o.tasks_left
        );
    }
    let _ = writeln!(out, "{:>12.3?} end", data.elapsed);
    out
}
