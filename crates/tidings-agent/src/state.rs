//! What a user agent must remember between runs: its uaid and, for each subscription, the
//! channel, the endpoint and the keys. One JSON file, written atomically (a temporary file
//! renamed over the old one) and readable only by its owner, since it holds private keys.

use serde::{Deserialize, Serialize};
use std::path::Path;
use tidings_crypto::b64;
use tidings_crypto::webpush::{AUTH_LEN, ReceiverKeys};
use tidings_wire::{ChannelId, PushSubscription, SubscriptionKeys};

/// Written into every state file; a file without it is not ours.
pub const FORMAT: &str = "tidings-agent-state/1";

/// Why a state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// It exists but cannot be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// It is not a Tidings agent state file (another program's, or damaged).
    #[error(
        "{path} is not a tidings agent state file ({reason}); move it away to start afresh (its subscriptions are lost)"
    )]
    Foreign {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// It cannot be written.
    #[error("cannot write {path}: {error}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        error: std::io::Error,
    },
}

/// One subscription as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSubscription {
    /// The channel id (a dashed UUID).
    pub channel_id: String,
    /// The endpoint the push service gave; senders need it.
    pub endpoint: String,
    /// The P-256 private key (raw scalar, base64url). Secret.
    pub private_key: String,
    /// The auth secret (16 bytes, base64url). Secret.
    pub auth: String,
    /// The applicationServerKey it is restricted to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_server_key: Option<String>,
    /// The versions of the last messages handled, newest last: a message whose ack was lost
    /// (the service died first) comes again, and is then acked without being handed over twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<String>,
}

/// How many handled versions a subscription remembers (Firefox remembers 10).
pub const RECENT: usize = 16;

impl StoredSubscription {
    /// A new subscription's record, with fresh keys.
    pub fn new(
        channel_id: ChannelId,
        endpoint: String,
        keys: &ReceiverKeys,
        application_server_key: Option<String>,
    ) -> Self {
        Self {
            channel_id: channel_id.to_string(),
            endpoint,
            private_key: b64::encode(&keys.private_bytes()),
            auth: b64::encode(&keys.subscription_keys().auth),
            application_server_key,
            recent: Vec::new(),
        }
    }

    /// Whether a message with this version was handled already.
    pub fn handled(&self, version: &str) -> bool {
        self.recent.iter().any(|v| v == version)
    }

    /// Remembers a handled version, forgetting the oldest beyond [`RECENT`].
    pub fn remember(&mut self, version: &str) {
        self.recent.push(version.to_owned());
        if self.recent.len() > RECENT {
            self.recent.remove(0);
        }
    }

    /// The keys, checked.
    pub fn keys(&self) -> Result<ReceiverKeys, String> {
        let private = b64::decode(&self.private_key).map_err(|e| format!("private key: {e}"))?;
        let auth = b64::decode_array::<AUTH_LEN>(&self.auth).map_err(|e| format!("auth: {e}"))?;
        ReceiverKeys::from_raw(&private, auth).map_err(|e| format!("private key: {e}"))
    }

    /// The channel id, checked.
    pub fn channel(&self) -> Result<ChannelId, String> {
        self.channel_id.parse().map_err(|_| format!("channel id {:?}", self.channel_id))
    }

    /// The PushSubscription JSON senders need.
    pub fn push_subscription(&self) -> Result<PushSubscription, String> {
        let keys = self.keys()?.subscription_keys();
        Ok(PushSubscription {
            endpoint: self.endpoint.clone(),
            expiration_time: None,
            keys: SubscriptionKeys {
                p256dh: b64::encode(keys.p256dh.as_bytes()),
                auth: b64::encode(&keys.auth),
            },
        })
    }
}

/// The whole state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Always [`FORMAT`].
    pub format: String,
    /// The push service's WebSocket URL these subscriptions live on.
    pub server: String,
    /// The uaid the service gave, once connected.
    #[serde(default)]
    pub uaid: Option<String>,
    /// The subscriptions.
    #[serde(default)]
    pub subscriptions: Vec<StoredSubscription>,
}

impl State {
    /// An empty state for `server`.
    pub fn new(server: &str) -> Self {
        Self { format: FORMAT.into(), server: server.into(), uaid: None, subscriptions: Vec::new() }
    }

    /// Reads a state file: `Ok(None)` when there is none yet; an error for anything that is
    /// not a readable, well-formed state file of ours (never a silent reset).
    pub fn load(path: &Path) -> Result<Option<Self>, StateError> {
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(StateError::Read { path: path.display().to_string(), error }),
        };
        Self::parse(&text)
            .map(Some)
            .map_err(|reason| StateError::Foreign { path: path.display().to_string(), reason })
    }

    /// Checks the bytes of a state file (apart from reading it, so that it can be tested and
    /// fuzzed without files): JSON of our format, every subscription's keys and channel valid.
    /// The error says what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let state: State = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if state.format != FORMAT {
            return Err(format!("format {:?}, expected {FORMAT:?}", state.format));
        }
        for subscription in &state.subscriptions {
            subscription.keys().map_err(|e| format!("subscription {}: {e}", subscription.channel_id))?;
            subscription.channel()?;
        }
        Ok(state)
    }

    /// Writes the state atomically, readable only by its owner.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let write = |error| StateError::Write { path: path.display().to_string(), error };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(write)?;
        let mut builder = tempfile::Builder::new();
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600));
        let mut file = builder.prefix(".tidings-state").tempfile_in(dir).map_err(write)?;
        let json = serde_json::to_vec_pretty(self).expect("state serializes");
        std::io::Write::write_all(&mut file, &json).map_err(write)?;
        file.as_file().sync_all().map_err(write)?;
        file.persist(path).map_err(|e| write(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn round_trips_privately() {
        let dir = dir();
        let path = dir.path().join("state.json");
        assert!(State::load(&path).unwrap().is_none());
        let mut state = State::new("ws://127.0.0.1:8080/");
        state.uaid = Some("00112233445566778899aabbccddeeff".into());
        let keys = ReceiverKeys::generate().unwrap();
        state.subscriptions.push(StoredSubscription::new(
            ChannelId([1; 16]),
            "http://x/push/t".into(),
            &keys,
            None,
        ));
        state.save(&path).unwrap();
        assert_eq!(State::load(&path).unwrap().unwrap(), state);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let json = state.subscriptions[0].push_subscription().unwrap();
        assert_eq!(json.keys.auth, b64::encode(&keys.subscription_keys().auth));
    }

    #[test]
    fn remembers_the_last_handled_versions() {
        let mut sub =
            StoredSubscription::new(ChannelId([1; 16]), "e".into(), &ReceiverKeys::generate().unwrap(), None);
        for v in 0..RECENT + 3 {
            sub.remember(&v.to_string());
        }
        assert_eq!(sub.recent.len(), RECENT);
        assert!(!sub.handled("2") && sub.handled("3") && sub.handled(&(RECENT + 2).to_string()));
    }

    #[test]
    fn corrupt_or_foreign_files_are_errors_not_resets() {
        let dir = dir();
        let path = dir.path().join("state.json");
        for (text, reason) in [
            ("{not json", "key must be a string"),
            (r#"{"format":"something-else/1","server":"ws://x/"}"#, "expected"),
            (
                r#"{"format":"tidings-agent-state/1","server":"ws://x/","subscriptions":[{"channel_id":"c","endpoint":"e","private_key":"AAAA","auth":"AAAA"}]}"#,
                "subscription c",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let error = State::load(&path).unwrap_err().to_string();
            assert!(error.contains("not a tidings agent state file") && error.contains(reason), "{error}");
        }
    }
}
