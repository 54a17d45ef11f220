//! Shared by the `wormhole` and `wormhole-relay` binaries (each includes this file).

/// An error and its causes, `: `-separated (e.g. "cannot read cert.pem: No such file").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
