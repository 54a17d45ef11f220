//! Parsing of `ws://` / `wss://` relay URLs.

use std::net::Ipv6Addr;

use crate::{split_scheme, TransportError};

/// A parsed WebSocket relay URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `true` for `wss://`.
    pub secure: bool,
    /// Host name or IP address, without the brackets of an IPv6 literal.
    pub host: String,
    /// Port, 80 / 443 when the URL has none.
    pub port: u16,
    /// Path and query, starting with `/` (`/` when the URL has none).
    pub path: String,
}

fn bad(url: &str, reason: impl Into<String>) -> TransportError {
    TransportError::BadUrl {
        url: url.to_string(),
        reason: reason.into(),
    }
}

/// Parses a `ws://HOST[:PORT][/PATH]` or `wss://…` URL.
///
/// ```
/// use wormhole_transports::websocket::parse_ws_url;
/// let u = parse_ws_url("ws://127.0.0.1:4000/v1").unwrap();
/// assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("127.0.0.1", 4000, "/v1"));
/// assert_eq!(parse_ws_url("wss://relay.example").unwrap().port, 443);
/// assert!(parse_ws_url("http://relay.example").is_err());
/// ```
pub fn parse_ws_url(url: &str) -> Result<WsUrl, TransportError> {
    let (scheme, rest) = split_scheme(url)?;
    let secure = if scheme.eq_ignore_ascii_case("ws") {
        false
    } else if scheme.eq_ignore_ascii_case("wss") {
        true
    } else {
        return Err(bad(
            url,
            "the WebSocket transport serves ws:// and wss:// URLs only",
        ));
    };
    if rest.contains('#') {
        return Err(bad(url, "a WebSocket URL cannot have a #fragment"));
    }
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(
            url,
            "the URL contains whitespace or control characters",
        ));
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let path = if path.is_empty() {
        "/".to_string()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    if authority.contains('@') {
        return Err(bad(
            url,
            "user names and passwords in the URL are not supported",
        ));
    }
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| bad(url, "unclosed [ in an IPv6 address"))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(bad(url, format!("{host:?} is not an IPv6 address")));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| bad(url, "unexpected text after the IPv6 address"))?,
            ),
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad(url, "the URL has no host"));
    }
    let port = match port {
        None => {
            if secure {
                443
            } else {
                80
            }
        }
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(bad(url, format!("{p:?} is not a valid port"))),
            Ok(n) => n,
        },
    };
    Ok(WsUrl {
        secure,
        host: host.to_string(),
        port,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> (bool, String, u16, String) {
        let u = parse_ws_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        (u.secure, u.host, u.port, u.path)
    }

    #[test]
    fn parses_hosts_ports_and_paths() {
        assert_eq!(
            ok("ws://127.0.0.1:4000/v1"),
            (false, "127.0.0.1".into(), 4000, "/v1".into())
        );
        assert_eq!(
            ok("ws://relay.example/v1"),
            (false, "relay.example".into(), 80, "/v1".into())
        );
        assert_eq!(
            ok("wss://relay.example"),
            (true, "relay.example".into(), 443, "/".into())
        );
        assert_eq!(
            ok("WSS://relay.example:8443/v1?x=1"),
            (true, "relay.example".into(), 8443, "/v1?x=1".into())
        );
        assert_eq!(ok("ws://h?x"), (false, "h".into(), 80, "/?x".into()));
        assert_eq!(
            ok("ws://[::1]:4000/v1"),
            (false, "::1".into(), 4000, "/v1".into())
        );
        assert_eq!(ok("ws://[::1]/"), (false, "::1".into(), 80, "/".into()));
    }

    #[test]
    fn rejects_bad_urls() {
        for url in [
            "http://h/v1",
            "h:4000/v1",
            "ws://",
            "ws:///v1",
            "ws://h:0/v1",
            "ws://h:70000/v1",
            "ws://h:port/v1",
            "ws://h:/v1",
            "ws://u:p@h/v1",
            "ws://[::1/v1",
            "ws://[nothex]:1/v1",
            "ws://[::1]x/v1",
            "ws://a:b:c/v1",
            "ws://h/v1#frag",
            "ws://h /v1",
        ] {
            match parse_ws_url(url) {
                Err(TransportError::BadUrl { url: u, .. }) => assert_eq!(u, url),
                other => panic!("{url}: expected BadUrl, got {other:?}"),
            }
        }
    }
}
