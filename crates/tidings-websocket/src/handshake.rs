//! The HTTP/1.1 upgrade that opens a WebSocket (RFC 6455 section 4).

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.trim().as_bytes());
    ctx.update(GUID);
    STANDARD.encode(ctx.finish())
}

/// Why an upgrade request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    /// Not a WebSocket upgrade at all (a plain GET).
    #[error("not a WebSocket upgrade request")]
    NotUpgrade,
    /// A WebSocket version other than 13.
    #[error("unsupported Sec-WebSocket-Version (only 13)")]
    Version,
    /// `Sec-WebSocket-Key` missing or not 16 bytes of base64.
    #[error("missing or malformed Sec-WebSocket-Key")]
    Key,
}

/// What a valid upgrade request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The `Sec-WebSocket-Accept` value to answer with.
    pub accept: String,
    /// Whether the client offered `protocol` in `Sec-WebSocket-Protocol`.
    pub protocol_offered: bool,
}

fn has_token(headers: &HeaderMap, name: &str, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Checks a server-side upgrade request's headers (the method, GET, is the caller's to
/// check) and says how to answer; `protocol` is the subprotocol the server speaks.
pub fn check_request(headers: &HeaderMap, protocol: &str) -> Result<Upgrade, UpgradeError> {
    if !has_token(headers, "upgrade", "websocket") || !has_token(headers, "connection", "upgrade") {
        return Err(UpgradeError::NotUpgrade);
    }
    if headers.get("sec-websocket-version").and_then(|v| v.to_str().ok()).map(str::trim) != Some("13") {
        return Err(UpgradeError::Version);
    }
    let key = headers.get("sec-websocket-key").and_then(|v| v.to_str().ok()).ok_or(UpgradeError::Key)?;
    match STANDARD.decode(key.trim()) {
        Ok(bytes) if bytes.len() == 16 => {}
        _ => return Err(UpgradeError::Key),
    }
    Ok(Upgrade {
        accept: accept_key(key),
        protocol_offered: has_token(headers, "sec-websocket-protocol", protocol),
    })
}

/// Checks a server's `101` answer against the key the client sent.
pub fn check_response(headers: &HeaderMap, key: &str) -> bool {
    has_token(headers, "upgrade", "websocket")
        && headers.get("sec-websocket-accept").and_then(|v| v.to_str().ok()).map(str::trim)
            == Some(accept_key(key).as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_example_key() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn checks_requests() {
        let mut h = HeaderMap::new();
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("connection", "keep-alive, Upgrade".parse().unwrap());
        h.insert("sec-websocket-version", "13".parse().unwrap());
        h.insert("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap());
        h.insert("sec-websocket-protocol", "push-notification".parse().unwrap());
        let up = check_request(&h, "push-notification").unwrap();
        assert!(up.protocol_offered);
        let mut answer = HeaderMap::new();
        answer.insert("upgrade", "websocket".parse().unwrap());
        answer.insert("sec-websocket-accept", up.accept.parse().unwrap());
        assert!(check_response(&answer, "dGhlIHNhbXBsZSBub25jZQ=="));
        let mut bad = h.clone();
        bad.insert("sec-websocket-key", "c2hvcnQ=".parse().unwrap());
        assert_eq!(check_request(&bad, "x"), Err(UpgradeError::Key));
        bad.insert("sec-websocket-version", "8".parse().unwrap());
        assert_eq!(check_request(&bad, "x"), Err(UpgradeError::Version));
        bad.remove("upgrade");
        assert_eq!(check_request(&bad, "x"), Err(UpgradeError::NotUpgrade));
    }
}
