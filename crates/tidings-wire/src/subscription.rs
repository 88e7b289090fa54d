//! `PushSubscription.toJSON()`: `{"endpoint", "expirationTime", "keys": {"p256dh", "auth"}}`.

use serde::{Deserialize, Serialize};

/// A push subscription as browsers serialise it. Unknown fields are kept out of the way
/// (ignored on input), so lines that carry extra data (an `id`, say) still parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushSubscription {
    /// The capability URL to POST messages to. Secret: whoever has it can send.
    pub endpoint: String,
    /// When the subscription expires, in milliseconds since the epoch; usually `null`.
    #[serde(default)]
    pub expiration_time: Option<serde_json::Number>,
    /// The keys a sender encrypts with.
    pub keys: SubscriptionKeys,
}

/// The `keys` member: base64url text as the browser wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionKeys {
    /// The user agent's P-256 public key (65 bytes, uncompressed).
    pub p256dh: String,
    /// The authentication secret (16 bytes).
    pub auth: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_browsers_write_and_writes_it_back() {
        let text = r#"{"endpoint":"https://push.example.net/wpush/v2/abc","expirationTime":null,"keys":{"p256dh":"BCVx","auth":"BTBZ"}}"#;
        let sub: PushSubscription = serde_json::from_str(text).unwrap();
        assert_eq!(sub.keys.auth, "BTBZ");
        assert_eq!(serde_json::to_string(&sub).unwrap(), text);
        let extra = r#"{"id":"u1","endpoint":"https://e","keys":{"p256dh":"a","auth":"b"},"expirationTime":1700000000000}"#;
        let sub: PushSubscription = serde_json::from_str(extra).unwrap();
        assert_eq!(sub.expiration_time.unwrap().as_u64(), Some(1_700_000_000_000));
    }
}
