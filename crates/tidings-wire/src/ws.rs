//! The frames of the WebSocket protocol Firefox speaks to its push service (JSON text
//! frames, see `shared/protocol.md` section 2), as typed values.
//!
//! Parsing is strict about what matters (ids, types) and lenient about the rest: unknown
//! members are ignored, since Firefox adds them over time.

use crate::ids::{ChannelId, Uaid};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The longest text frame a user agent may send; Firefox's largest (a `hello` with many
/// broadcast subscriptions) is far below this.
pub const MAX_CLIENT_FRAME: usize = 16 * 1024;

/// Ack code: delivered to the application.
pub const ACK_DELIVERED: u16 = 100;
/// Ack code: the user agent could not decrypt the message.
pub const ACK_DECRYPT_FAILED: u16 = 101;
/// Ack code: the user agent could not deliver it to the application.
pub const ACK_NOT_DELIVERED: u16 = 102;

/// A frame from the user agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// First frame of every connection. `uaid` is `None` for a new profile (or an empty or
    /// malformed one, which is treated the same: a new uaid is issued).
    Hello {
        /// The stored uaid, when the user agent has one that we could have issued.
        uaid: Option<Uaid>,
        /// Whether the user agent said `use_webpush: true`.
        use_webpush: bool,
        /// Broadcast ids and the versions the user agent has.
        broadcasts: BTreeMap<String, String>,
    },
    /// Subscribe a channel, optionally restricted to an application server key.
    Register {
        /// The channel.
        channel_id: ChannelId,
        /// The applicationServerKey as sent (base64url, usually padded).
        key: Option<String>,
    },
    /// Unsubscribe a channel.
    Unregister {
        /// The channel.
        channel_id: ChannelId,
    },
    /// Acknowledge delivered messages.
    Ack(Vec<AckUpdate>),
    /// Report a message that could not be handled (codes 301-303).
    Nack {
        /// The message's version.
        version: String,
        /// The reason code.
        code: Option<u16>,
    },
    /// Subscribe to broadcast ids.
    BroadcastSubscribe(BTreeMap<String, String>),
    /// Keep-alive: `{}` (or `{"messageType":"ping"}`).
    Ping,
}

/// One acknowledged message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AckUpdate {
    /// The channel the message was for.
    #[serde(rename = "channelID")]
    pub channel_id: String,
    /// The message's version, as sent in the notification.
    pub version: String,
    /// 100 delivered, 101 decryption failed, 102 not delivered.
    #[serde(default)]
    pub code: Option<u16>,
}

/// Why a frame from the user agent was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Not a JSON object.
    #[error("the frame is not a JSON object: {0}")]
    Json(String),
    /// An unknown `messageType`.
    #[error("unknown messageType {0:?}")]
    UnknownType(String),
    /// A required member is missing or malformed.
    #[error("{0}")]
    Invalid(&'static str),
}

/// Every member any client frame may carry; which are required depends on the type.
#[derive(Deserialize)]
struct RawClient {
    #[serde(rename = "messageType")]
    message_type: Option<String>,
    uaid: Option<serde_json::Value>,
    #[serde(rename = "channelID")]
    channel_id: Option<String>,
    key: Option<String>,
    use_webpush: Option<bool>,
    broadcasts: Option<BTreeMap<String, serde_json::Value>>,
    updates: Option<Vec<AckUpdate>>,
    version: Option<String>,
    code: Option<u16>,
}

/// Broadcast versions are strings (Firefox stores what the service sent and sends it back);
/// any other JSON value is a client bug that would never compare equal, so it is refused.
fn broadcast_map(
    raw: Option<BTreeMap<String, serde_json::Value>>,
) -> Result<BTreeMap<String, String>, ProtocolError> {
    raw.unwrap_or_default()
        .into_iter()
        .map(|(id, version)| match version {
            serde_json::Value::String(version) => Ok((id, version)),
            _ => Err(ProtocolError::Invalid("broadcast versions must be strings")),
        })
        .collect()
}

impl ClientMessage {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        let raw: RawClient = serde_json::from_str(text).map_err(|e| ProtocolError::Json(e.to_string()))?;
        let channel = |raw: &RawClient| {
            raw.channel_id
                .as_deref()
                .ok_or(ProtocolError::Invalid("channelID is missing"))?
                .parse::<ChannelId>()
                .map_err(|_| ProtocolError::Invalid("channelID is not a dashed UUID"))
        };
        let Some(message_type) = raw.message_type.as_deref() else {
            return Ok(Self::Ping);
        };
        match message_type.to_ascii_lowercase().as_str() {
            "hello" => {
                let uaid = match &raw.uaid {
                    Some(serde_json::Value::String(s)) => s.parse::<Uaid>().ok(),
                    _ => None,
                };
                Ok(Self::Hello {
                    uaid,
                    use_webpush: raw.use_webpush.unwrap_or(false),
                    broadcasts: broadcast_map(raw.broadcasts)?,
                })
            }
            "register" => Ok(Self::Register { channel_id: channel(&raw)?, key: raw.key }),
            "unregister" => Ok(Self::Unregister { channel_id: channel(&raw)? }),
            "ack" => Ok(Self::Ack(raw.updates.ok_or(ProtocolError::Invalid("ack without updates"))?)),
            "nack" => Ok(Self::Nack {
                version: raw.version.ok_or(ProtocolError::Invalid("nack without version"))?,
                code: raw.code,
            }),
            "broadcast_subscribe" => Ok(Self::BroadcastSubscribe(broadcast_map(raw.broadcasts)?)),
            "ping" => Ok(Self::Ping),
            other => Err(ProtocolError::UnknownType(other.chars().take(32).collect())),
        }
    }
}

impl ClientMessage {
    /// The JSON text of the frame, as Firefox writes it.
    pub fn to_json(&self) -> String {
        use serde_json::json;
        let value = match self {
            Self::Hello { uaid, use_webpush, broadcasts } => {
                let mut hello =
                    json!({"messageType": "hello", "use_webpush": use_webpush, "broadcasts": broadcasts});
                if let Some(uaid) = uaid {
                    hello["uaid"] = json!(uaid.to_string());
                }
                hello
            }
            Self::Register { channel_id, key } => {
                let mut register = json!({"messageType": "register", "channelID": channel_id.to_string()});
                if let Some(key) = key {
                    register["key"] = json!(key);
                }
                register
            }
            Self::Unregister { channel_id } => {
                json!({"messageType": "unregister", "channelID": channel_id.to_string(), "code": 200})
            }
            Self::Ack(updates) => json!({"messageType": "ack", "updates": updates.iter().map(|u| {
                json!({"channelID": u.channel_id, "version": u.version, "code": u.code.unwrap_or(ACK_DELIVERED)})
            }).collect::<Vec<_>>()}),
            Self::Nack { version, code } => json!({"messageType": "nack", "version": version, "code": code}),
            Self::BroadcastSubscribe(broadcasts) => {
                json!({"messageType": "broadcast_subscribe", "broadcasts": broadcasts})
            }
            Self::Ping => json!({}),
        };
        value.to_string()
    }
}

/// The `headers` of a notification: how the user agent decrypts `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NotificationHeaders {
    /// `Content-Encoding` of the original request.
    pub encoding: String,
    /// `Encryption` (aesgcm only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub encryption: Option<String>,
    /// `Crypto-Key` (aesgcm only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub crypto_key: Option<String>,
}

/// A frame to the user agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "messageType", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The answer to `hello`.
    Hello {
        /// The uaid the user agent must use from now on.
        uaid: String,
        /// 200.
        status: u16,
        /// Always true: payloads are supported.
        use_webpush: bool,
        /// The current versions of the broadcasts the user agent listed whose version it
        /// does not have, and the ids the service does not know.
        broadcasts: Broadcasts,
    },
    /// The answer to `register`.
    Register {
        /// The channel.
        #[serde(rename = "channelID")]
        channel_id: String,
        /// 200, or 400 for a bad key, 500 on a storage failure.
        status: u16,
        /// The endpoint, present with status 200.
        #[serde(rename = "pushEndpoint", skip_serializing_if = "Option::is_none", default)]
        push_endpoint: Option<String>,
    },
    /// The answer to `unregister`.
    Unregister {
        /// The channel.
        #[serde(rename = "channelID")]
        channel_id: String,
        /// 200.
        status: u16,
    },
    /// A message for a channel.
    Notification {
        /// The channel.
        #[serde(rename = "channelID")]
        channel_id: String,
        /// The message id the user agent echoes in its ack.
        version: String,
        /// The body, base64url; absent for a message without payload.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        data: Option<String>,
        /// How to decrypt `data`; absent without payload.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        headers: Option<NotificationHeaders>,
    },
    /// Broadcast versions: new versions of broadcasts the user agent follows, or the answer
    /// to `broadcast_subscribe`.
    Broadcast {
        /// The versions.
        broadcasts: Broadcasts,
    },
}

/// The `broadcasts` object of a `hello` reply or a `broadcast` frame, as autopush writes it:
/// `{"<id>": "<version>", ..., "errors": {"<id>": "Broadcast not found"}}`, the `errors`
/// member only when some id is unknown. (So no broadcast may be called `errors`.)
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Broadcasts {
    /// Broadcast id to its current version.
    #[serde(flatten)]
    pub versions: BTreeMap<String, String>,
    /// Broadcast id to why it has no version ([`BROADCAST_NOT_FOUND`]).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub errors: BTreeMap<String, String>,
}

impl Broadcasts {
    /// Whether there is nothing to say.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty() && self.errors.is_empty()
    }
}

/// What autopush answers, under `errors`, for a broadcast id it does not know.
pub const BROADCAST_NOT_FOUND: &str = "Broadcast not found";

impl ServerMessage {
    /// The JSON text of the frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages serialize")
    }
}

/// The keep-alive answer: an empty object.
pub const PING: &str = "{}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_firefox_sends() {
        let hello =
            ClientMessage::parse(r#"{"messageType":"hello","broadcasts":{},"use_webpush":true}"#).unwrap();
        assert_eq!(
            hello,
            ClientMessage::Hello { uaid: None, use_webpush: true, broadcasts: BTreeMap::new() }
        );
        let resumed = ClientMessage::parse(
            r#"{"messageType":"hello","broadcasts":{"remote-settings/monitor_changes":"\"0\""},"use_webpush":true,"uaid":"00112233445566778899aabbccddeeff"}"#,
        )
        .unwrap();
        let ClientMessage::Hello { uaid, broadcasts, .. } = resumed else { panic!() };
        assert_eq!(uaid.unwrap().to_string(), "00112233445566778899aabbccddeeff");
        assert_eq!(broadcasts["remote-settings/monitor_changes"], "\"0\"");
        let foreign =
            ClientMessage::parse(r#"{"messageType":"hello","uaid":"not-ours","use_webpush":true}"#).unwrap();
        assert!(matches!(foreign, ClientMessage::Hello { uaid: None, .. }));
        let register = ClientMessage::parse(
            r#"{"channelID":"28e6a170-10c3-4bfb-9cac-991e204ffc85","messageType":"register","key":"BBm6=="}"#,
        )
        .unwrap();
        assert!(matches!(register, ClientMessage::Register { key: Some(_), .. }));
        let ack = ClientMessage::parse(
            r#"{"messageType":"ack","updates":[{"channelID":"28e6a170-10c3-4bfb-9cac-991e204ffc85","version":"v1","code":100}]}"#,
        )
        .unwrap();
        assert!(matches!(ack, ClientMessage::Ack(u) if u[0].version == "v1" && u[0].code == Some(100)));
        assert_eq!(ClientMessage::parse("{}").unwrap(), ClientMessage::Ping);
        assert!(matches!(
            ClientMessage::parse(r#"{"messageType":"broadcast_subscribe","broadcasts":{"a":"1"}}"#).unwrap(),
            ClientMessage::BroadcastSubscribe(_)
        ));
    }

    #[test]
    fn refuses_garbage() {
        assert!(matches!(ClientMessage::parse("not json"), Err(ProtocolError::Json(_))));
        assert!(matches!(ClientMessage::parse("[]"), Err(ProtocolError::Json(_))));
        assert!(matches!(
            ClientMessage::parse(r#"{"messageType":"launch"}"#),
            Err(ProtocolError::UnknownType(_))
        ));
        assert!(matches!(
            ClientMessage::parse(r#"{"messageType":"register"}"#),
            Err(ProtocolError::Invalid(_))
        ));
        assert!(matches!(
            ClientMessage::parse(r#"{"messageType":"register","channelID":"nope"}"#),
            Err(ProtocolError::Invalid(_))
        ));
        assert!(matches!(ClientMessage::parse(r#"{"messageType":"ack"}"#), Err(ProtocolError::Invalid(_))));
        assert!(matches!(ClientMessage::parse(r#"{"messageType":7}"#), Err(ProtocolError::Json(_))));
        for versions in [r#"{"a":1}"#, r#"{"a":null}"#, r#"{"a":{"b":"c"}}"#] {
            let hello = format!(r#"{{"messageType":"hello","use_webpush":true,"broadcasts":{versions}}}"#);
            assert!(matches!(ClientMessage::parse(&hello), Err(ProtocolError::Invalid(_))), "{hello}");
            let subscribe = format!(r#"{{"messageType":"broadcast_subscribe","broadcasts":{versions}}}"#);
            assert!(
                matches!(ClientMessage::parse(&subscribe), Err(ProtocolError::Invalid(_))),
                "{subscribe}"
            );
        }
        assert!(matches!(
            ClientMessage::parse(r#"{"messageType":"broadcast_subscribe","broadcasts":["a"]}"#),
            Err(ProtocolError::Json(_))
        ));
    }

    #[test]
    fn client_frames_round_trip() {
        let channel_id: ChannelId = "28e6a170-10c3-4bfb-9cac-991e204ffc85".parse().unwrap();
        let frames = [
            ClientMessage::Hello {
                uaid: Some(Uaid([7; 16])),
                use_webpush: true,
                broadcasts: BTreeMap::new(),
            },
            ClientMessage::Hello { uaid: None, use_webpush: true, broadcasts: BTreeMap::new() },
            ClientMessage::Register { channel_id, key: Some("BBBB=".into()) },
            ClientMessage::Unregister { channel_id },
            ClientMessage::Ack(vec![AckUpdate {
                channel_id: channel_id.to_string(),
                version: "a1".into(),
                code: Some(101),
            }]),
            ClientMessage::Nack { version: "a1".into(), code: Some(301) },
            ClientMessage::Ping,
        ];
        for frame in frames {
            assert_eq!(ClientMessage::parse(&frame.to_json()).unwrap(), frame);
        }
    }

    #[test]
    fn writes_what_firefox_reads() {
        let hello = ServerMessage::Hello {
            uaid: "abc".into(),
            status: 200,
            use_webpush: true,
            broadcasts: Broadcasts::default(),
        };
        assert_eq!(
            hello.to_json(),
            r#"{"messageType":"hello","uaid":"abc","status":200,"use_webpush":true,"broadcasts":{}}"#
        );
        let versions = BTreeMap::from([("remote-settings/monitor_changes".to_owned(), "\"42\"".to_owned())]);
        let errors = BTreeMap::from([("nope".to_owned(), BROADCAST_NOT_FOUND.to_owned())]);
        let broadcast = ServerMessage::Broadcast { broadcasts: Broadcasts { versions, errors } };
        let json = broadcast.to_json();
        assert_eq!(
            json,
            r#"{"messageType":"broadcast","broadcasts":{"remote-settings/monitor_changes":"\"42\"","errors":{"nope":"Broadcast not found"}}}"#
        );
        assert_eq!(serde_json::from_str::<ServerMessage>(&json).unwrap(), broadcast);
        let n = ServerMessage::Notification {
            channel_id: "c".into(),
            version: "v".into(),
            data: Some("AAA".into()),
            headers: Some(NotificationHeaders { encoding: "aes128gcm".into(), ..Default::default() }),
        };
        assert_eq!(
            n.to_json(),
            r#"{"messageType":"notification","channelID":"c","version":"v","data":"AAA","headers":{"encoding":"aes128gcm"}}"#
        );
        let r = ServerMessage::Register { channel_id: "c".into(), status: 400, push_endpoint: None };
        assert_eq!(r.to_json(), r#"{"messageType":"register","channelID":"c","status":400}"#);
    }
}
