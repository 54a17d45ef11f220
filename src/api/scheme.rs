//! Which built-in transport a relay URL's scheme picks (`mem://`, `ws://`/`wss://`, and with
//! feature `http` `http://`/`https://`), with or without custom TLS settings.

use std::sync::Arc;

#[cfg(feature = "tls")]
use wormhole_transports::websocket::ClientTls;
use wormhole_transports::{memory::MemoryTransport, split_scheme, Transport};

use crate::core::Error;

/// Picks the built-in transport for a relay URL by its scheme (`mem`, `ws`/`wss`, and with
/// feature `http` `http`/`https`); `wss://` and `https://` trust the built-in (Mozilla) root
/// certificates.
pub fn transport_for(url: &str) -> Result<Arc<dyn Transport>, Error> {
    let (scheme, _) = split_scheme(url).map_err(|e| Error::InvalidInput(e.to_string()))?;
    match scheme {
        "mem" => Ok(Arc::new(MemoryTransport)),
        #[cfg(feature = "websocket")]
        "ws" | "wss" => Ok(Arc::new(
            wormhole_transports::websocket::WebSocketTransport::default(),
        )),
        #[cfg(feature = "http")]
        "http" | "https" => Ok(Arc::new(wormhole_transports::http::HttpTransport::default())),
        other => Err(Error::InvalidInput(format!(
            "no built-in transport for {other}:// relay URLs (relay URL {url:?})"
        ))),
    }
}

/// Like [`transport_for`], with `tls` for the certificate checks of `wss://` (e.g. a
/// [`ClientTls`] that also trusts a private CA).
#[cfg(feature = "tls")]
pub fn transport_for_tls(url: &str, tls: &ClientTls) -> Result<Arc<dyn Transport>, Error> {
    let (scheme, _) = split_scheme(url).map_err(|e| Error::InvalidInput(e.to_string()))?;
    match scheme {
        "ws" | "wss" => Ok(Arc::new(
            wormhole_transports::websocket::WebSocketTransport::default().with_tls(tls.clone()),
        )),
        #[cfg(feature = "http")]
        "http" | "https" => Ok(Arc::new(
            wormhole_transports::http::HttpTransport::default().with_tls(tls.clone()),
        )),
        _ => transport_for(url),
    }
}
