//! How channels and messages are laid out as bytes in the embedded store.
//!
//! Message values: `channel(16) | expires_at(8) | topic | encoding | encryption | crypto_key
//! | body`, where each optional text is a u16 length (`0xffff` for none) and its bytes, and
//! the body is the rest. Decoding checks every length, so a damaged value is an error, not
//! a panic.

use crate::{Channel, Message, MessageId, Result, StoreError};
use tidings_wire::ChannelId;

const NONE: u16 = u16::MAX;

/// The u64 stored big-endian at `offset`, if the slice is long enough.
pub fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(offset..offset + 8)?.try_into().ok()?))
}

fn corrupt(what: &str) -> StoreError {
    StoreError(format!("corrupt {what} record"))
}

/// Channel values: flags (1: restricted), key hash (16, when restricted), pending count (u32).
pub fn encode_channel(channel: &Channel, pending: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(21);
    match channel.key_hash {
        Some(hash) => {
            out.push(1);
            out.extend_from_slice(&hash);
        }
        None => out.push(0),
    }
    out.extend_from_slice(&pending.to_be_bytes());
    out
}

/// The channel and its pending-message count.
pub fn decode_channel(bytes: &[u8]) -> Result<(Channel, u32)> {
    let (key_hash, rest) = match bytes.split_first() {
        Some((0, rest)) => (None, rest),
        Some((1, rest)) if rest.len() >= 16 => (Some(rest[..16].try_into().expect("16 bytes")), &rest[16..]),
        _ => return Err(corrupt("channel")),
    };
    let pending = u32::from_be_bytes(rest.try_into().map_err(|_| corrupt("channel"))?);
    Ok((Channel { key_hash }, pending))
}

fn put_text(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        // Header values and topics are far below 64 KiB; longer ones were refused upstream.
        Some(t) if t.len() < usize::from(NONE) => {
            out.extend_from_slice(&(t.len() as u16).to_be_bytes());
            out.extend_from_slice(t.as_bytes());
        }
        _ => out.extend_from_slice(&NONE.to_be_bytes()),
    }
}

/// The stored form of a message (its id is the key, not part of the value).
pub fn encode_message(message: &Message) -> Vec<u8> {
    let texts = [&message.topic, &message.encoding, &message.encryption, &message.crypto_key];
    let mut out = Vec::with_capacity(
        24 + 8 + texts.iter().map(|t| t.as_ref().map_or(0, |t| t.len())).sum::<usize>() + message.body.len(),
    );
    out.extend_from_slice(&message.channel_id.0);
    out.extend_from_slice(&message.expires_at.to_be_bytes());
    for text in texts {
        put_text(&mut out, text.as_deref());
    }
    out.extend_from_slice(&message.body);
    out
}

/// Reads back what [`encode_message`] wrote.
pub fn decode_message(id: MessageId, bytes: &[u8]) -> Result<Message> {
    let channel_id =
        ChannelId(bytes.get(..16).and_then(|b| b.try_into().ok()).ok_or_else(|| corrupt("message"))?);
    let expires_at = u64_at(bytes, 16).ok_or_else(|| corrupt("message"))?;
    let mut rest = &bytes[24..];
    let mut text = || -> Result<Option<String>> {
        let len = rest.get(..2).ok_or_else(|| corrupt("message"))?;
        let len = u16::from_be_bytes([len[0], len[1]]);
        rest = &rest[2..];
        if len == NONE {
            return Ok(None);
        }
        let value = rest.get(..usize::from(len)).ok_or_else(|| corrupt("message"))?;
        rest = &rest[usize::from(len)..];
        String::from_utf8(value.to_vec()).map(Some).map_err(|_| corrupt("message"))
    };
    let (topic, encoding, encryption, crypto_key) = (text()?, text()?, text()?, text()?);
    Ok(Message { id, channel_id, expires_at, topic, body: rest.to_vec(), encoding, encryption, crypto_key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage() {
        let message = Message {
            id: 9,
            channel_id: ChannelId([3; 16]),
            expires_at: 1234,
            topic: Some("t".into()),
            body: vec![0, 1, 2, 255],
            encoding: Some("aesgcm".into()),
            encryption: Some("salt=abc".into()),
            crypto_key: None,
        };
        let bytes = encode_message(&message);
        assert_eq!(decode_message(9, &bytes).unwrap(), message);
        for cut in 0..bytes.len() - message.body.len() {
            assert!(decode_message(9, &bytes[..cut]).is_err(), "{cut}");
        }
        let channel = Channel { key_hash: Some([5; 16]) };
        assert_eq!(decode_channel(&encode_channel(&channel, 7)).unwrap(), (channel, 7));
        assert_eq!(decode_channel(&encode_channel(&Channel { key_hash: None }, 0)).unwrap().1, 0);
        assert!(decode_channel(&[2, 0, 0, 0, 0]).is_err());
        assert!(decode_channel(&[0, 0]).is_err());
    }
}
