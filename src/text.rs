//! Text transfer: the application protocol of `wormhole send --text` and `wormhole receive`.
//!
//! Both sides use the app id [`TEXT_APPID`]. Once the key is confirmed, the sender sends one
//! message `{"offer": {"message": TEXT}}`; the receiver answers
//! `{"answer": {"message_ack": "ok"}}` and both close. Either side may instead send
//! `{"error": REASON}` to abandon the transfer. Every message is one UTF-8 JSON object, so this
//! interoperates with the Python magic-wormhole CLI in both directions.
//!
//! File and directory offers (from a Python sender) are refused with an `{"error": ...}` reply:
//! only text is supported here.
//!
//! ```
//! # #[cfg(feature = "relay-server")]
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use wormhole::text::{receive_text, send_text, TEXT_APPID};
//! use wormhole::Wormhole;
//!
//! let relay = wormhole::relay::server::spawn_memory("text-doc").unwrap();
//! let mut sender = Wormhole::new(TEXT_APPID, relay.url());
//! let code = sender.allocate_code(2).await.unwrap();
//! let sending = tokio::spawn(async move { send_text(&mut sender, "hello\tworld\n").await });
//!
//! let mut receiver = Wormhole::new(TEXT_APPID, relay.url());
//! receiver.set_code(code).await.unwrap();
//! let received = receive_text(&mut receiver).await.unwrap();
//! assert_eq!(received.text, "hello\tworld\n");
//! sending.await.unwrap().unwrap();
//! relay.shutdown().await;
//! # });
//! ```

use serde_json::{json, Value};

use crate::{Error, Wormhole};

/// The app id of `wormhole send --text` / `wormhole receive` (text and file transfer).
pub const TEXT_APPID: &str = "lothar.com/wormhole/text-or-file-xfer";

/// What the sender sends when its user rejects the verifier (the Python CLI's text).
pub const SENDER_REJECTED: &str = "sender rejected verification check, abandoned transfer";

/// What the receiver sends when its user rejects the verifier.
pub const RECEIVER_REJECTED: &str = "receiver rejected verification check, abandoned transfer";

/// The reply to an offer of an unknown kind (the Python CLI's text).
pub const UNKNOWN_OFFER: &str = "unknown offer type";

/// The reply to a file or directory offer.
pub const FILES_UNSUPPORTED: &str = "file transfer is not supported by this receiver, only text";

/// Why a text transfer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// The wormhole itself failed (wrong code, relay trouble, timeout, ...).
    #[error(transparent)]
    Wormhole(#[from] Error),
    /// The other side sent `{"error": REASON}`.
    #[error("remote error, transfer abandoned: {0}")]
    Remote(String),
    /// The other side offered something other than text (`file`, `directory`, or an unknown
    /// kind); it was told with an `{"error": ...}` reply.
    #[error("the other side offered a {0}, but only text messages are supported")]
    UnsupportedOffer(String),
    /// The other side broke the text-transfer protocol.
    #[error("protocol error from the other side: {0}")]
    Protocol(String),
}

/// A received text message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Received {
    /// The text, exactly as the sender gave it.
    pub text: String,
}

fn parse(bytes: &[u8]) -> Result<Value, TextError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(TextError::Protocol("message is not a JSON object".into())),
        Err(e) => Err(TextError::Protocol(format!("message is not JSON: {e}"))),
    }
}

fn remote_error(value: &Value) -> TextError {
    match value.as_str() {
        Some(s) => TextError::Remote(s.to_string()),
        None => TextError::Remote(value.to_string()),
    }
}

/// Closes `w` after a failure; the failure is what the caller reports.
async fn close_after(w: &mut Wormhole, err: TextError) -> TextError {
    if let Err(e) = w.close().await {
        tracing::debug!(error = %e, "close after a failed transfer failed too");
    }
    err
}

/// The next application message, as a JSON object. A failure, a message that is not a JSON
/// object, or an `{"error": ...}` from the other side closes the wormhole and is returned.
async fn next_message(w: &mut Wormhole) -> Result<Value, TextError> {
    let received = match w.recv().await {
        Ok(bytes) => parse(&bytes).and_then(|msg| match msg.get("error") {
            Some(e) => Err(remote_error(e)),
            None => Ok(msg),
        }),
        Err(e) => Err(e.into()),
    };
    match received {
        Ok(msg) => Ok(msg),
        Err(e) => Err(close_after(w, e).await),
    }
}

/// Sends `text` on a wormhole whose code is allocated or set: offers it, waits for the answer,
/// and closes the wormhole (also on failure).
///
/// Messages other than `answer` and `error` are ignored, as the Python sender does.
pub async fn send_text(w: &mut Wormhole, text: &str) -> Result<(), TextError> {
    let offer = json!({ "offer": { "message": text } }).to_string();
    if let Err(e) = w.send(offer.as_bytes()).await {
        return Err(close_after(w, e.into()).await);
    }
    loop {
        let msg = next_message(w).await?;
        if let Some(answer) = msg.get("answer") {
            return match answer.get("message_ack").and_then(Value::as_str) {
                Some("ok") => Ok(w.close().await?),
                _ => {
                    let err = TextError::Protocol(format!("unexpected answer {answer}"));
                    Err(close_after(w, err).await)
                }
            };
        }
        tracing::debug!("ignoring a message that is neither answer nor error");
    }
}

/// Receives a text on a wormhole whose code is set or allocated: waits for the offer, answers
/// it, and closes the wormhole (also on failure).
///
/// `transit` and other unknown messages are ignored. A `file` or `directory` offer is refused
/// with `{"error": "file transfer is not supported ..."}` ([`FILES_UNSUPPORTED`]), any other
/// non-text offer with `{"error": "unknown offer type"}`; both return
/// [`TextError::UnsupportedOffer`].
pub async fn receive_text(w: &mut Wormhole) -> Result<Received, TextError> {
    loop {
        let msg = next_message(w).await?;
        let Some(offer) = msg.get("offer") else {
            tracing::debug!("ignoring a message that is neither offer nor error");
            continue;
        };
        if let Some(text) = offer.get("message").and_then(Value::as_str) {
            let text = text.to_string();
            let answer = json!({ "answer": { "message_ack": "ok" } }).to_string();
            if let Err(e) = w.send(answer.as_bytes()).await {
                return Err(close_after(w, e.into()).await);
            }
            w.close().await?;
            return Ok(Received { text });
        }
        let (kind, reply) = if offer.get("file").is_some() {
            ("file", FILES_UNSUPPORTED)
        } else if offer.get("directory").is_some() {
            ("directory", FILES_UNSUPPORTED)
        } else {
            ("offer of an unknown kind", UNKNOWN_OFFER)
        };
        let err = TextError::UnsupportedOffer(kind.to_string());
        return Err(abandon_with(w, reply, err).await);
    }
}

async fn abandon_with(w: &mut Wormhole, reason: &str, err: TextError) -> TextError {
    let msg = json!({ "error": reason }).to_string();
    if let Err(e) = w.send(msg.as_bytes()).await {
        tracing::debug!(error = %e, "could not tell the other side why we stop");
    }
    close_after(w, err).await
}

/// Abandons the transfer: sends `{"error": reason}` to the other side (once the key is
/// confirmed) and closes the wormhole. Use it when the user rejects the verifier, with
/// [`SENDER_REJECTED`] or [`RECEIVER_REJECTED`].
pub async fn abandon(w: &mut Wormhole, reason: &str) -> Result<(), TextError> {
    let msg = json!({ "error": reason }).to_string();
    let sent = w.send(msg.as_bytes()).await;
    let closed = w.close().await;
    sent?;
    closed?;
    Ok(())
}

#[cfg(all(test, feature = "relay-server"))]
mod tests {
    use super::*;
    use crate::relay::server::spawn_memory;
    use std::time::Duration;

    async fn pair(name: &str) -> (crate::relay::server::RelayHandle, Wormhole, Wormhole) {
        let relay = spawn_memory(name).unwrap();
        let mut a =
            Wormhole::new(TEXT_APPID, relay.url()).with_timeout(Some(Duration::from_secs(20)));
        let code = a.allocate_code(2).await.unwrap();
        let mut b =
            Wormhole::new(TEXT_APPID, relay.url()).with_timeout(Some(Duration::from_secs(20)));
        b.set_code(code).await.unwrap();
        (relay, a, b)
    }

    #[tokio::test]
    async fn text_round_trip_keeps_every_byte() {
        let (relay, mut a, mut b) = pair("text-rt").await;
        let text = "line 1\nline\t2\r\n\u{e9}\u{1F600} \"quoted\" \\ \u{0}";
        let sending = tokio::spawn(async move { send_text(&mut a, text).await });
        let got = receive_text(&mut b).await.unwrap();
        assert_eq!(got.text, text);
        sending.await.unwrap().unwrap();
        relay.shutdown().await;
    }

    #[tokio::test]
    async fn remote_error_reaches_the_receiver() {
        let (relay, mut a, mut b) = pair("text-abandon").await;
        let sending = tokio::spawn(async move {
            a.verify().await.unwrap();
            abandon(&mut a, SENDER_REJECTED).await
        });
        let err = receive_text(&mut b).await.unwrap_err();
        assert_eq!(err, TextError::Remote(SENDER_REJECTED.into()));
        assert_eq!(
            err.to_string(),
            "remote error, transfer abandoned: sender rejected verification check, abandoned transfer"
        );
        sending.await.unwrap().unwrap();
        relay.shutdown().await;
    }

    async fn offer_is_refused(name: &str, offer: Value, kind: &str, reply: &str) {
        let (relay, mut a, mut b) = pair(name).await;
        let sending = tokio::spawn(async move {
            a.send(json!({ "transit": {} }).to_string().as_bytes())
                .await
                .unwrap();
            a.send(json!({ "offer": offer }).to_string().as_bytes())
                .await
                .unwrap();
            let answer: Value = serde_json::from_slice(&a.recv().await.unwrap()).unwrap();
            let _ = a.close().await;
            answer
        });
        let err = receive_text(&mut b).await.unwrap_err();
        assert_eq!(err, TextError::UnsupportedOffer(kind.into()));
        assert_eq!(sending.await.unwrap(), json!({ "error": reply }));
        relay.shutdown().await;
    }

    #[tokio::test]
    async fn file_offers_are_refused() {
        let offer = json!({ "file": { "filename": "a.txt", "filesize": 3 } });
        offer_is_refused("text-file", offer, "file", FILES_UNSUPPORTED).await;
    }

    #[tokio::test]
    async fn unknown_offers_are_refused() {
        let offer = json!({ "hologram": {} });
        offer_is_refused(
            "text-unknown",
            offer,
            "offer of an unknown kind",
            UNKNOWN_OFFER,
        )
        .await;
    }

    #[tokio::test]
    async fn a_bad_answer_is_a_protocol_error() {
        let (relay, mut a, mut b) = pair("text-bad-answer").await;
        let receiving = tokio::spawn(async move {
            b.recv().await.unwrap();
            b.send(br#"{"answer": {"message_ack": "nope"}}"#)
                .await
                .unwrap();
            let _ = b.close().await;
        });
        let err = send_text(&mut a, "hi").await.unwrap_err();
        assert!(matches!(err, TextError::Protocol(_)), "{err:?}");
        receiving.await.unwrap();
        relay.shutdown().await;
    }

    #[tokio::test]
    async fn non_json_is_a_protocol_error() {
        let (relay, mut a, mut b) = pair("text-not-json").await;
        let sending = tokio::spawn(async move {
            a.send(b"\xff not json").await.unwrap();
            let _ = a.recv().await;
        });
        let err = receive_text(&mut b).await.unwrap_err();
        assert!(matches!(err, TextError::Protocol(_)), "{err:?}");
        sending.abort();
        relay.shutdown().await;
    }
}
