//! RFC 8030 request headers (`tidings_wire::headers`) and the push service's rules for a
//! push request's headers (`tidings_push::api::validate`).

use http::{HeaderMap, HeaderName, HeaderValue};
use tidings_crypto::ece::aesgcm::EncryptionParams;
use tidings_crypto::webpush::ContentEncoding;
use tidings_push::api::validate;
use tidings_push::token::{Endpoint, key_hash};
use tidings_push::vapid_cache::VapidCache;
use tidings_wire::headers::parse_ttl;
use tidings_wire::{ChannelId, Topic, Uaid, Urgency};

/// The TTL cap the target's service has (the default: 28 days).
const MAX_TTL: u32 = 2_419_200;

/// Byte 0: the body length (0 to 127) and, in its top bit, whether the subscription is
/// restricted to the targets' VAPID key. Then `name: value` lines, the request's headers.
///
/// Properties: no panic; `TTL`, `Urgency` and `Topic` values that parse write back to values
/// that parse the same; an accepted request's TTL is capped, a body has a content coding and
/// an empty one none, and `aesgcm` headers passed on to the user agent parse.
pub fn push_headers(data: &[u8]) {
    let Some((&control, mut rest)) = data.split_first() else { return };
    let mut headers = HeaderMap::new();
    while !rest.is_empty() {
        let (line, after) = crate::split_line(rest);
        rest = after;
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let value = line[colon + 1..].trim_ascii();
        if let Ok(text) = std::str::from_utf8(value) {
            fields(text);
        }
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    let body_len = usize::from(control & 0x7f);
    let restricted = control & 0x80 != 0;
    let key_hash = restricted.then(|| key_hash(crate::vapid::SIGNER.0.public_key()));
    let endpoint = Endpoint { uaid: Uaid([1; 16]), channel_id: ChannelId([2; 16]), key_hash };
    let vapid = VapidCache::default();
    let Ok(valid) =
        validate(&headers, body_len, &endpoint, crate::vapid::AUDIENCE, MAX_TTL, crate::NOW, &vapid)
    else {
        return;
    };
    assert!(valid.ttl <= MAX_TTL);
    assert_eq!(valid.encoding.is_some(), body_len > 0);
    if valid.encoding == Some(ContentEncoding::Aesgcm) {
        let encryption = valid.encryption.expect("aesgcm has Encryption");
        assert!(EncryptionParams::parse(&encryption).is_ok(), "passes on {encryption:?}");
        assert!(valid.crypto_key.is_some());
    }
}

/// The RFC 8030 fields: what parses writes back to what parses the same.
fn fields(value: &str) {
    if let Some(ttl) = parse_ttl(value) {
        assert_eq!(parse_ttl(&ttl.to_string()), Some(ttl));
    }
    if let Ok(urgency) = value.parse::<Urgency>() {
        assert_eq!(urgency.as_str().parse(), Ok(urgency));
    }
    if let Ok(topic) = value.parse::<Topic>() {
        assert_eq!(topic.as_str(), value);
        assert!((1..=Topic::MAX_LEN).contains(&topic.as_str().len()));
    }
}
