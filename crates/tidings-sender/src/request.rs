//! Turning a message for a subscription into an RFC 8030 request, without I/O.
//!
//! This is the per-message work of sending: encrypt the payload for the subscription's
//! keys, attach a VAPID token for the push service's origin (signed once per origin, see
//! [`VapidSigner`]), and set the RFC 8030 headers.

use crate::subscription::Subscription;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{Method, Request};
use tidings_crypto::vapid::VapidSigner;
use tidings_crypto::webpush::{self, ContentEncoding, MAX_BODY_LEN};
use tidings_wire::headers::DEFAULT_TTL;
use tidings_wire::{Topic, Urgency};

/// What to send, apart from to whom.
#[derive(Debug, Clone)]
pub struct Message {
    /// The plaintext; empty for a message without payload (a "tickle").
    pub payload: Bytes,
    /// Seconds the push service should keep the message while the user agent is away.
    pub ttl: u32,
    /// `Urgency`; omitted from the request when `None` (services then assume normal).
    pub urgency: Option<Urgency>,
    /// `Topic`: replaces a pending message with the same topic.
    pub topic: Option<Topic>,
    /// The content coding of the body.
    pub encoding: ContentEncoding,
    /// Zero bytes added inside the encryption to hide the payload's length.
    pub padding: usize,
}

impl Message {
    /// A message with the given payload and the defaults npm web-push uses (TTL 28 days,
    /// aes128gcm, no urgency, topic or padding).
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            payload: payload.into(),
            ttl: DEFAULT_TTL,
            urgency: None,
            topic: None,
            encoding: ContentEncoding::Aes128gcm,
            padding: 0,
        }
    }

    /// The largest payload (plus padding) that fits in [`MAX_BODY_LEN`] with this encoding.
    pub fn max_payload_len(&self) -> usize {
        match self.encoding {
            ContentEncoding::Aes128gcm => webpush::MAX_PLAINTEXT_LEN,
            // Two bytes of padding length and the tag, no header.
            ContentEncoding::Aesgcm => MAX_BODY_LEN - 2 - tidings_crypto::ece::TAG_LEN,
        }
    }
}

/// Why a request could not be prepared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    /// The payload does not fit the 4096-byte body every push service must accept.
    #[error(
        "the payload is {len} bytes{}; the most every push service accepts is {max} bytes ({MAX_BODY_LEN} once encrypted): send less, or send a URL to fetch the rest from",
        if *.padding > 0 { format!(" plus {} bytes of padding", .padding) } else { String::new() }
    )]
    TooLarge {
        /// Payload bytes.
        len: usize,
        /// Padding bytes.
        padding: usize,
        /// The limit for this encoding.
        max: usize,
    },
    /// Encryption failed (the keys were validated, so this is the backend).
    #[error("encryption failed: {0}")]
    Crypto(#[from] tidings_crypto::ece::Error),
}

/// Builds the request for `message` to `subscription`, signed by `signer` (if any) with a
/// token valid at `now` (seconds since the Unix epoch).
pub fn prepare(
    subscription: &Subscription,
    message: &Message,
    signer: Option<&VapidSigner>,
    now: u64,
) -> Result<Request<Bytes>, PrepareError> {
    let max = message.max_payload_len();
    if message.payload.len() + message.padding > max {
        return Err(PrepareError::TooLarge { len: message.payload.len(), padding: message.padding, max });
    }
    let mut request = Request::builder().method(Method::POST).uri(subscription.endpoint().clone());
    let headers = request.headers_mut().expect("builder has no error yet");
    headers.insert("ttl", HeaderValue::from(message.ttl));
    if let Some(urgency) = message.urgency {
        headers.insert("urgency", HeaderValue::from_static(urgency.as_str()));
    }
    if let Some(topic) = &message.topic {
        headers.insert("topic", header_value(topic.as_str()));
    }

    let mut crypto_key = Vec::new();
    let body = if message.payload.is_empty() {
        Bytes::new()
    } else {
        let encrypted =
            webpush::encrypt(subscription.keys(), &message.payload, message.encoding, message.padding)?;
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(message.encoding.as_str()));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        if let Some(encryption) = &encrypted.encryption_header {
            headers.insert("encryption", header_value(encryption));
        }
        crypto_key.extend(encrypted.crypto_key_dh);
        Bytes::from(encrypted.body)
    };
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));

    if let Some(signer) = signer {
        let token = signer.token(subscription.audience(), now);
        match message.encoding {
            ContentEncoding::Aes128gcm => {
                headers.insert(AUTHORIZATION, header_value(&token.vapid_authorization));
            }
            // The draft form, which aesgcm receivers (and npm web-push) pair with aesgcm.
            ContentEncoding::Aesgcm => {
                headers.insert(AUTHORIZATION, header_value(&format!("WebPush {}", token.jwt)));
                crypto_key.push(format!("p256ecdsa={}", signer.key().public_key_base64()));
            }
        }
    }
    if !crypto_key.is_empty() {
        headers.insert("crypto-key", header_value(&crypto_key.join(";")));
    }
    Ok(request.body(body).expect("method, URI and headers were valid"))
}

/// A copy of a prepared request, to send it again (the body is shared, not copied).
pub fn duplicate(request: &Request<Bytes>) -> Request<Bytes> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// Header values built here are base64url, digits and fixed words: always valid.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("base64url and ASCII words are valid header values")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings_crypto::vapid::{self, VapidKey};
    use tidings_crypto::webpush::{ReceivedEncoding, ReceiverKeys};

    const NOW: u64 = 1_700_000_000;

    fn subscription(ua: &ReceiverKeys) -> Subscription {
        let keys = ua.subscription_keys();
        Subscription::parse(&format!(
            r#"{{"endpoint":"https://push.example.net/wpush/v2/abc","keys":{{"p256dh":"{}","auth":"{}"}}}}"#,
            tidings_crypto::b64::encode(keys.p256dh.as_bytes()),
            tidings_crypto::b64::encode(&keys.auth)
        ))
        .unwrap()
    }

    #[test]
    fn aes128gcm_request_has_every_header_and_decrypts() {
        let ua = ReceiverKeys::generate().unwrap();
        let signer = VapidSigner::new(VapidKey::generate().unwrap(), Some("mailto:ops@example.com".into()));
        let mut message = Message::new("hello");
        message.urgency = Some(Urgency::High);
        message.topic = Some("news".parse().unwrap());
        message.ttl = 60;
        let request = prepare(&subscription(&ua), &message, Some(&signer), NOW).unwrap();
        let h = request.headers();
        assert_eq!(request.uri(), "https://push.example.net/wpush/v2/abc");
        assert_eq!((h["ttl"].to_str().unwrap(), h["urgency"].to_str().unwrap()), ("60", "high"));
        assert_eq!(
            (h["topic"].to_str().unwrap(), h["content-encoding"].to_str().unwrap()),
            ("news", "aes128gcm")
        );
        assert_eq!(h["content-length"].to_str().unwrap(), request.body().len().to_string());
        let auth = h["authorization"].to_str().unwrap();
        let verified = vapid::verify(auth, None, "https://push.example.net", NOW).unwrap();
        assert_eq!(&verified.public_key, signer.key().public_key());
        assert_eq!(ua.decrypt(request.body(), ReceivedEncoding::Aes128gcm).unwrap(), b"hello");
    }

    #[test]
    fn aesgcm_request_uses_the_draft_headers() {
        let ua = ReceiverKeys::generate().unwrap();
        let signer = VapidSigner::new(VapidKey::generate().unwrap(), None);
        let mut message = Message::new("legacy");
        message.encoding = ContentEncoding::Aesgcm;
        let request = prepare(&subscription(&ua), &message, Some(&signer), NOW).unwrap();
        let h = request.headers();
        let crypto_key = h["crypto-key"].to_str().unwrap();
        assert!(crypto_key.starts_with("dh=") && crypto_key.contains(";p256ecdsa="), "{crypto_key}");
        vapid::verify(
            h["authorization"].to_str().unwrap(),
            Some(crypto_key),
            "https://push.example.net",
            NOW,
        )
        .unwrap();
        let params =
            tidings_crypto::ece::aesgcm::EncryptionParams::parse(h["encryption"].to_str().unwrap()).unwrap();
        let sender_public = tidings_crypto::ece::aesgcm::sender_key_from_crypto_key(crypto_key).unwrap();
        let received = ReceivedEncoding::Aesgcm { params, sender_public };
        assert_eq!(ua.decrypt(request.body(), received).unwrap(), b"legacy");
    }

    #[test]
    fn empty_payload_and_size_limits() {
        let ua = ReceiverKeys::generate().unwrap();
        let request = prepare(&subscription(&ua), &Message::new(""), None, NOW).unwrap();
        assert!(request.body().is_empty());
        assert!(!request.headers().contains_key("content-encoding"));
        assert!(!request.headers().contains_key("authorization"));
        assert_eq!(request.headers()["ttl"], "2419200");
        let full = Message::new(vec![b'x'; 3993]);
        assert_eq!(prepare(&subscription(&ua), &full, None, NOW).unwrap().body().len(), 4096);
        let over = Message::new(vec![b'x'; 3994]);
        let err = prepare(&subscription(&ua), &over, None, NOW).unwrap_err();
        assert_eq!(err, PrepareError::TooLarge { len: 3994, padding: 0, max: 3993 });
        assert!(
            err.to_string()
                .starts_with("the payload is 3994 bytes; the most every push service accepts is 3993 bytes")
        );
        let mut legacy = Message::new(vec![b'x'; 4078]);
        legacy.encoding = ContentEncoding::Aesgcm;
        assert_eq!(prepare(&subscription(&ua), &legacy, None, NOW).unwrap().body().len(), 4096);
    }
}
