//! Endpoint and message URLs as sealed capabilities.
//!
//! An endpoint is `<public url>/push/<token>` where the token is the routing data (uaid,
//! channel id and, for restricted subscriptions, a hash of the applicationServerKey)
//! sealed with AES-256-GCM under a server key and a random nonce. Whoever holds the URL can
//! send; nobody can forge one, change one into another, or learn the uaid from it. Message
//! URLs (`<public url>/m/<token>`, for `DELETE`) are sealed the same way.
//!
//! Several keys may be configured so that keys can rotate: the first seals, all open, so
//! endpoints issued under an old key keep working until it is removed.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, RandomizedNonceKey};
use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use tidings_crypto::b64;
use tidings_wire::{ChannelId, Uaid};

/// Length of an endpoint key.
pub const KEY_LEN: usize = 32;

const KIND_ENDPOINT: u8 = 1;
const KIND_RESTRICTED: u8 = 2;
const KIND_MESSAGE: u8 = 3;

/// The first 16 bytes of SHA-256 over an applicationServerKey: enough to tell keys apart,
/// and it keeps the key itself out of the endpoint.
pub type KeyHash = [u8; 16];

/// Hashes a 65-byte application server key for storing in an endpoint.
pub fn key_hash(public_key: &[u8]) -> KeyHash {
    digest::digest(&digest::SHA256, public_key).as_ref()[..16].try_into().expect("SHA-256 is 32 bytes")
}

/// What an endpoint token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The user agent.
    pub uaid: Uaid,
    /// The subscription.
    pub channel_id: ChannelId,
    /// The application server key it is restricted to, if any.
    pub key_hash: Option<KeyHash>,
}

/// What a message token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRef {
    /// The user agent.
    pub uaid: Uaid,
    /// The subscription.
    pub channel_id: ChannelId,
    /// The message's id in storage.
    pub id: u64,
}

/// A token could not be opened: malformed, forged, tampered with, or sealed under a key
/// that is no longer configured. All look the same from outside (404).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid token")]
pub struct InvalidToken;

/// A key file or setting that is not base64url 32-byte keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("endpoint keys must be base64url 32-byte keys, one per line: {0}")]
pub struct KeyError(String);

/// The keys tokens are sealed and opened with.
pub struct TokenKeys {
    keys: Vec<RandomizedNonceKey>,
}

impl TokenKeys {
    /// Keys from raw bytes; the first seals.
    pub fn new(keys: &[[u8; KEY_LEN]]) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError("no key given".into()));
        }
        let keys = keys
            .iter()
            .map(|k| RandomizedNonceKey::new(&AES_256_GCM, k).map_err(|_| KeyError("rejected key".into())))
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    /// Keys from text: base64url keys separated by newlines, commas or spaces.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let keys = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|k| !k.is_empty())
            .map(|k| b64::decode_array::<KEY_LEN>(k).map_err(|e| KeyError(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(&keys)
    }

    /// A new random key, as base64url text.
    pub fn generate_key() -> String {
        let mut key = [0; KEY_LEN];
        SystemRandom::new().fill(&mut key).expect("system random source");
        b64::encode(&key)
    }

    fn seal(&self, mut plain: Vec<u8>) -> String {
        let nonce = self.keys[0]
            .seal_in_place_append_tag(Aad::empty(), &mut plain)
            .expect("AES-GCM sealing does not fail");
        let mut token = nonce.as_ref().to_vec();
        token.extend_from_slice(&plain);
        b64::encode(&token)
    }

    fn open(&self, token: &str) -> Result<Vec<u8>, InvalidToken> {
        // Tokens are short; anything long is not ours and not worth decoding.
        if token.len() > 200 {
            return Err(InvalidToken);
        }
        let bytes = b64::decode(token).map_err(|_| InvalidToken)?;
        if bytes.len() < NONCE_LEN + 16 {
            return Err(InvalidToken);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at NONCE_LEN");
        for key in &self.keys {
            let mut buf = sealed.to_vec();
            if let Ok(plain) = key.open_in_place(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut buf,
            ) {
                return Ok(plain.to_vec());
            }
        }
        Err(InvalidToken)
    }

    /// Seals an endpoint.
    pub fn seal_endpoint(&self, endpoint: &Endpoint) -> String {
        let mut plain = Vec::with_capacity(49);
        plain.push(if endpoint.key_hash.is_some() { KIND_RESTRICTED } else { KIND_ENDPOINT });
        plain.extend_from_slice(&endpoint.uaid.0);
        plain.extend_from_slice(&endpoint.channel_id.0);
        if let Some(hash) = endpoint.key_hash {
            plain.extend_from_slice(&hash);
        }
        self.seal(plain)
    }

    /// Opens an endpoint token.
    pub fn open_endpoint(&self, token: &str) -> Result<Endpoint, InvalidToken> {
        let plain = self.open(token)?;
        let ids = |p: &[u8]| -> Option<(Uaid, ChannelId)> {
            Some((Uaid(p.get(1..17)?.try_into().ok()?), ChannelId(p.get(17..33)?.try_into().ok()?)))
        };
        match (plain.first(), plain.len()) {
            (Some(&KIND_ENDPOINT), 33) => {
                let (uaid, channel_id) = ids(&plain).ok_or(InvalidToken)?;
                Ok(Endpoint { uaid, channel_id, key_hash: None })
            }
            (Some(&KIND_RESTRICTED), 49) => {
                let (uaid, channel_id) = ids(&plain).ok_or(InvalidToken)?;
                Ok(Endpoint { uaid, channel_id, key_hash: Some(plain[33..49].try_into().expect("16 bytes")) })
            }
            _ => Err(InvalidToken),
        }
    }

    /// Seals a message reference.
    pub fn seal_message(&self, message: &MessageRef) -> String {
        let mut plain = Vec::with_capacity(41);
        plain.push(KIND_MESSAGE);
        plain.extend_from_slice(&message.uaid.0);
        plain.extend_from_slice(&message.channel_id.0);
        plain.extend_from_slice(&message.id.to_be_bytes());
        self.seal(plain)
    }

    /// Opens a message token.
    pub fn open_message(&self, token: &str) -> Result<MessageRef, InvalidToken> {
        let plain = self.open(token)?;
        if plain.len() != 41 || plain[0] != KIND_MESSAGE {
            return Err(InvalidToken);
        }
        Ok(MessageRef {
            uaid: Uaid(plain[1..17].try_into().expect("16 bytes")),
            channel_id: ChannelId(plain[17..33].try_into().expect("16 bytes")),
            id: u64::from_be_bytes(plain[33..41].try_into().expect("8 bytes")),
        })
    }
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKeys({} keys)", self.keys.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::parse(&TokenKeys::generate_key()).unwrap()
    }

    fn endpoint(key_hash: Option<KeyHash>) -> Endpoint {
        Endpoint { uaid: Uaid([1; 16]), channel_id: ChannelId([2; 16]), key_hash }
    }

    #[test]
    fn round_trips_and_differs_every_time() {
        let keys = keys();
        for e in [endpoint(None), endpoint(Some([3; 16]))] {
            let a = keys.seal_endpoint(&e);
            assert_eq!(keys.open_endpoint(&a).unwrap(), e);
            assert_ne!(a, keys.seal_endpoint(&e), "random nonce");
        }
        let m = MessageRef { uaid: Uaid([1; 16]), channel_id: ChannelId([2; 16]), id: 77 };
        assert_eq!(keys.open_message(&keys.seal_message(&m)).unwrap(), m);
        // A message token is not an endpoint and the other way round.
        assert_eq!(keys.open_endpoint(&keys.seal_message(&m)), Err(InvalidToken));
        assert_eq!(keys.open_message(&keys.seal_endpoint(&endpoint(None))), Err(InvalidToken));
    }

    #[test]
    fn tampering_and_foreign_keys_fail() {
        let keys = keys();
        let token = keys.seal_endpoint(&endpoint(None));
        for i in 0..token.len() {
            let mut t = token.clone().into_bytes();
            t[i] = if t[i] == b'A' { b'B' } else { b'A' };
            assert_eq!(keys.open_endpoint(std::str::from_utf8(&t).unwrap()), Err(InvalidToken), "char {i}");
        }
        assert_eq!(self::keys().open_endpoint(&token), Err(InvalidToken));
        for junk in ["", "x", "!!!!", &"A".repeat(500)] {
            assert_eq!(keys.open_endpoint(junk), Err(InvalidToken));
        }
    }

    #[test]
    fn rotation_first_seals_all_open() {
        let (old, new) = (TokenKeys::generate_key(), TokenKeys::generate_key());
        let before = TokenKeys::parse(&old).unwrap();
        let token = before.seal_endpoint(&endpoint(None));
        let rotated = TokenKeys::parse(&format!("{new}\n{old}")).unwrap();
        assert!(rotated.open_endpoint(&token).is_ok());
        let fresh = rotated.seal_endpoint(&endpoint(None));
        assert_eq!(before.open_endpoint(&fresh), Err(InvalidToken));
        assert!(TokenKeys::parse("").is_err());
        assert!(TokenKeys::parse("AAAA").is_err());
    }
}
