//! The push service's stored records (`tidings_store::embedded::record`, also the Redis
//! backend's message values) and what the Redis backend reads back from Redis: node events
//! from pub/sub and channel key hashes. A damaged or foreign value must be an error.

use tidings_store::embedded::record::{decode_channel, decode_message, encode_channel, encode_message};
use tidings_store::redis::{decode_event, encode_event, key_hash_from_text, key_hash_text};

/// Byte 0 picks the decoder (message, channel, node event, key hash); the rest is the value.
///
/// Properties: no panic; a message or channel record that decodes encodes to exactly the
/// same bytes; a node event or key hash that decodes, encoded, decodes to the same.
pub fn store_records(data: &[u8]) {
    let Some((&which, value)) = data.split_first() else { return };
    match which % 4 {
        0 => {
            if let Ok(message) = decode_message(9, value) {
                assert_eq!(encode_message(&message), value, "a message record does not round-trip");
            }
        }
        1 => {
            if let Ok((channel, pending)) = decode_channel(value) {
                assert_eq!(encode_channel(&channel, pending), value, "a channel record does not round-trip");
            }
        }
        2 => {
            if let Some(event) = decode_event(value) {
                assert_eq!(
                    decode_event(&encode_event(&event)),
                    Some(event),
                    "a node event does not round-trip"
                );
            }
        }
        _ => {
            if let Some(key_hash) = key_hash_from_text(&String::from_utf8_lossy(value)) {
                assert_eq!(key_hash_from_text(&key_hash_text(key_hash)), Some(key_hash));
            }
        }
    }
}
