//! The JSON bodies of the HTTP-polling API, shared by the client and the relay side.

use serde::Deserialize;
use serde_json::value::RawValue;

/// The body of `POST …/send`.
#[derive(Debug, Deserialize)]
pub(crate) struct SendBody {
    /// The client's number for this request: 1 for the first, then one more each time.
    pub seq: u64,
    /// The client has every frame up to this number (0: none yet).
    #[serde(default)]
    pub after: u64,
    /// The frames, each a JSON value carried verbatim.
    pub frames: Vec<Box<RawValue>>,
}

/// The answer to opening a session, sending and fetching.
#[derive(Debug, Deserialize)]
pub(crate) struct FramesBody {
    /// Only in the answer to opening a session.
    #[serde(default)]
    pub session: Option<String>,
    /// The number of the last frame in `frames` (or the cursor asked for, if none).
    pub cursor: u64,
    /// Frames numbered `cursor - len + 1 ..= cursor`.
    pub frames: Vec<Box<RawValue>>,
}

/// An error answer.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub error: String,
}

/// `{"cursor":C,"frames":[…]}` (with `"session"` first when given), built without re-encoding
/// the frames, which are JSON already.
pub(crate) fn frames_json<'a>(
    session: Option<&str>,
    cursor: u64,
    frames: impl Iterator<Item = &'a str>,
) -> String {
    let mut out = String::with_capacity(128);
    out.push('{');
    if let Some(id) = session {
        out.push_str("\"session\":\"");
        out.push_str(id); // hex digits and a dot only: nothing to escape
        out.push_str("\",");
    }
    out.push_str("\"cursor\":");
    out.push_str(&cursor.to_string());
    out.push_str(",\"frames\":[");
    for (i, frame) in frames.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(frame);
    }
    out.push_str("]}\n");
    out
}

/// `{"error": TEXT}` with `extra` fields, as JSON.
pub(crate) fn error_json(text: &str, extra: &[(&str, serde_json::Value)]) -> String {
    let mut map = serde_json::Map::new();
    map.insert("error".into(), serde_json::Value::from(text));
    for (k, v) in extra {
        map.insert((*k).into(), v.clone());
    }
    let mut s = serde_json::Value::Object(map).to_string();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_json_is_valid_and_verbatim() {
        let s = frames_json(
            Some("ab12"),
            7,
            [r#"{"type":"ack"}"#, r#"{"b": 1}"#].into_iter(),
        );
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["session"], "ab12");
        assert_eq!(v["cursor"], 7);
        assert_eq!(v["frames"][1]["b"], 1);
        assert!(
            s.contains(r#"{"b": 1}"#),
            "frames are carried byte for byte"
        );
        let parsed: FramesBody =
            serde_json::from_str(&frames_json(None, 3, std::iter::empty())).unwrap();
        assert_eq!(
            (parsed.cursor, parsed.frames.len(), parsed.session),
            (3, 0, None)
        );
    }

    #[test]
    fn send_body_needs_seq_and_frames() {
        assert!(serde_json::from_str::<SendBody>(r#"{"frames": []}"#).is_err());
        assert!(serde_json::from_str::<SendBody>(r#"{"seq": 1}"#).is_err());
        let b: SendBody =
            serde_json::from_str(r#"{"seq": 2, "frames": [{"type": "ping"}]}"#).unwrap();
        assert_eq!(
            (b.seq, b.after, b.frames[0].get()),
            (2, 0, r#"{"type": "ping"}"#)
        );
    }
}
