//! The `error` strings the relay sends. The first group is exactly Python 0.8's; the second is
//! ours, for inputs on which Python 0.8 crashes.

/// A frame without `type` (not acked).
pub const MISSING_TYPE: &str = "missing 'type'";
/// A command other than `ping`/`bind` before `bind`.
pub const MUST_BIND_FIRST: &str = "must bind first";
/// A second `bind`.
pub const ALREADY_BOUND: &str = "already bound";
/// `bind` without `appid`.
pub const BIND_NEEDS_APPID: &str = "bind requires 'appid'";
/// `bind` without `side`.
pub const BIND_NEEDS_SIDE: &str = "bind requires 'side'";
/// An unknown `type` after `bind`.
pub const UNKNOWN_TYPE: &str = "unknown type";
/// `ping` without `ping`.
pub const PING_NEEDS_PING: &str = "ping requires 'ping'";
/// A second `allocate`.
pub const GREEDY: &str = "you already allocated one, don't be greedy";
/// `claim` without `nameplate`.
pub const CLAIM_NEEDS_NAMEPLATE: &str = "claim requires 'nameplate'";
/// A second `claim`.
pub const ONE_CLAIM: &str = "only one claim per connection";
/// A third side claimed or opened the mailbox.
pub const CROWDED: &str = "crowded";
/// A side that released a nameplate claimed it again.
pub const RECLAIMED: &str = "reclaimed";
/// A second `release`.
pub const ONE_RELEASE: &str = "only one release per connection";
/// `release` of another nameplate than the claimed one.
pub const RELEASE_SAME_NAMEPLATE: &str = "release and claim must use same nameplate";
/// `release` without nameplate and without a claim.
pub const RELEASE_NEEDS_CLAIM: &str = "release without nameplate must follow claim";
/// A second `open` while open.
pub const ONE_OPEN: &str = "only one open per connection";
/// `open` without `mailbox`.
pub const OPEN_NEEDS_MAILBOX: &str = "open requires 'mailbox'";
/// `add` without an open mailbox.
pub const MUST_OPEN: &str = "must open mailbox before adding";
/// `add` without `phase`.
pub const MISSING_PHASE: &str = "missing 'phase'";
/// `add` without `body`.
pub const MISSING_BODY: &str = "missing 'body'";
/// A second `close`.
pub const ONE_CLOSE: &str = "only one close per connection";
/// `close` of another mailbox than the opened one.
pub const CLOSE_SAME_MAILBOX: &str = "open and close must use same mailbox";
/// `close` without mailbox and without an open.
pub const CLOSE_NEEDS_OPEN: &str = "close without mailbox must follow open";

/// Ours: the frame is larger than [`RelayConfig::max_frame_bytes`](super::RelayConfig).
pub const FRAME_TOO_LARGE: &str = "frame too large";
/// Ours: the frame is not valid JSON (`orig` is the text as a JSON string).
pub const MALFORMED_JSON: &str = "malformed JSON";
/// Ours: the frame is JSON but not an object (`orig` is that JSON value).
pub const NOT_AN_OBJECT: &str = "frame is not a JSON object";
/// Ours: `bind` with a non-string `appid`.
pub const BIND_NEEDS_STRING_APPID: &str = "bind requires a string 'appid'";
/// Ours: `bind` with a non-string `side`.
pub const BIND_NEEDS_STRING_SIDE: &str = "bind requires a string 'side'";
/// Ours: `ping` whose `ping` is not an integer.
pub const PING_NEEDS_INTEGER: &str = "ping requires an integer 'ping'";
/// Ours: `claim` whose nameplate is not 1–40 ASCII digits (Python 0.8 drops the connection).
pub const CLAIM_NEEDS_NUMERIC: &str = "claim requires a numeric 'nameplate'";
/// Ours: `release` with a non-string `nameplate`.
pub const RELEASE_NEEDS_STRING: &str = "release requires a string 'nameplate'";
/// Ours: `open` with a non-string `mailbox`.
pub const OPEN_NEEDS_STRING: &str = "open requires a string 'mailbox'";
/// Ours: `add` with a non-string `phase`.
pub const ADD_NEEDS_STRING_PHASE: &str = "add requires a string 'phase'";
/// Ours: `add` with a non-string `body`.
pub const ADD_NEEDS_STRING_BODY: &str = "add requires a string 'body'";
/// Ours: `close` with a non-string `mailbox`.
pub const CLOSE_NEEDS_STRING: &str = "close requires a string 'mailbox'";
/// Ours: `allocate` found no free nameplate.
pub const NO_FREE_NAMEPLATE: &str = "unable to find a free nameplate-id";
/// Ours: the store failed while handling the command.
pub const INTERNAL: &str = "internal server error";

/// The `error` text for a command the store failed: [`INTERNAL`], then the store error and
/// its causes, e.g. `internal server error: the Redis store failed while reading: Connection
/// refused`. Store errors carry no message bodies, so nothing secret leaks into it.
pub fn store_failure(error: &super::StoreError) -> String {
    let mut text = format!("{INTERNAL}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors print their source in their own text already.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
