//! A subscription checked and decoded, ready to send to.

use http::Uri;
use tidings_crypto::b64;
use tidings_crypto::webpush::{AUTH_LEN, PublicKey, SubscriptionKeys};
use tidings_wire::PushSubscription;

/// Why a subscription cannot be sent to. The messages say what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// Not `PushSubscription` JSON.
    #[error("not PushSubscription JSON ({{\"endpoint\", \"keys\": {{\"p256dh\", \"auth\"}}}}): {0}")]
    Json(String),
    /// The endpoint is not an absolute http(s) URL.
    #[error("the endpoint must be an absolute https:// (or http://) URL: {0}")]
    Endpoint(String),
    /// `keys.p256dh` is not a P-256 public key.
    #[error("keys.p256dh must be a 65-byte uncompressed P-256 public key in base64url: {0}")]
    P256dh(String),
    /// `keys.auth` is not 16 bytes.
    #[error("keys.auth must be 16 bytes of base64url: {0}")]
    Auth(String),
}

/// A subscription whose endpoint and keys have been validated.
#[derive(Debug, Clone)]
pub struct Subscription {
    endpoint: Uri,
    audience: String,
    keys: SubscriptionKeys,
}

impl Subscription {
    /// Parses `PushSubscription` JSON text.
    pub fn parse(json: &str) -> Result<Self, SubscriptionError> {
        let sub: PushSubscription =
            serde_json::from_str(json).map_err(|e| SubscriptionError::Json(e.to_string()))?;
        Self::from_json(&sub)
    }

    /// Validates a parsed `PushSubscription`.
    pub fn from_json(sub: &PushSubscription) -> Result<Self, SubscriptionError> {
        let endpoint: Uri = sub.endpoint.parse().map_err(|e: http::uri::InvalidUri| {
            SubscriptionError::Endpoint(format!("{} ({e})", tidings_wire::endpoint::mask(&sub.endpoint)))
        })?;
        let audience = audience(&endpoint)
            .ok_or_else(|| SubscriptionError::Endpoint(tidings_wire::endpoint::mask(&sub.endpoint)))?;
        let p256dh = b64::decode(&sub.keys.p256dh).map_err(|e| SubscriptionError::P256dh(e.to_string()))?;
        let p256dh = PublicKey::from_bytes(&p256dh).map_err(|_| {
            SubscriptionError::P256dh(format!("got {} bytes that are not a point on the curve", p256dh.len()))
        })?;
        let auth = b64::decode_array::<AUTH_LEN>(&sub.keys.auth)
            .map_err(|e| SubscriptionError::Auth(e.to_string()))?;
        Ok(Self { endpoint, audience, keys: SubscriptionKeys { p256dh, auth } })
    }

    /// The endpoint URL (a secret: mask it before showing it).
    pub fn endpoint(&self) -> &Uri {
        &self.endpoint
    }

    /// The push service's origin, `scheme://host[:port]`: the VAPID `aud`.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The keys messages are encrypted with.
    pub fn keys(&self) -> &SubscriptionKeys {
        &self.keys
    }
}

/// The origin of an http(s) URL, with the port only when it is not the scheme's default
/// (which is how browsers and npm web-push spell the audience).
fn audience(uri: &Uri) -> Option<String> {
    let scheme = uri.scheme_str()?;
    let default_port = match scheme {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let host = uri.host().filter(|h| !h.is_empty())?;
    Some(match uri.port_u16() {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &str = r#""keys":{"p256dh":"BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4","auth":"BTBZMqHH6r4Tts7J_aSIgg"}"#;

    fn sub(endpoint: &str) -> Result<Subscription, SubscriptionError> {
        Subscription::parse(&format!(r#"{{"endpoint":"{endpoint}",{KEYS}}}"#))
    }

    #[test]
    fn audience_is_the_origin() {
        assert_eq!(
            sub("https://fcm.googleapis.com/fcm/send/x").unwrap().audience(),
            "https://fcm.googleapis.com"
        );
        assert_eq!(sub("https://push.example.net:443/x").unwrap().audience(), "https://push.example.net");
        assert_eq!(sub("http://127.0.0.1:8080/wpush/x").unwrap().audience(), "http://127.0.0.1:8080");
    }

    #[test]
    fn bad_subscriptions_say_what_to_fix() {
        assert!(matches!(sub("ftp://x/y"), Err(SubscriptionError::Endpoint(_))));
        assert!(matches!(sub("/relative"), Err(SubscriptionError::Endpoint(_))));
        assert!(matches!(sub("https://bad host/"), Err(SubscriptionError::Endpoint(_))));
        assert!(matches!(Subscription::parse("{"), Err(SubscriptionError::Json(_))));
        let short = r#"{"endpoint":"https://e/x","keys":{"p256dh":"BCVx","auth":"BTBZMqHH6r4Tts7J_aSIgg"}}"#;
        assert!(matches!(Subscription::parse(short), Err(SubscriptionError::P256dh(_))));
        let auth = r#"{"endpoint":"https://e/x","keys":{"p256dh":"BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4","auth":"AAAA"}}"#;
        let err = Subscription::parse(auth).unwrap_err();
        assert_eq!(
            err.to_string(),
            "keys.auth must be 16 bytes of base64url: expected 16 bytes of base64url, got 3 bytes"
        );
    }
}
