//! What to do with a notification, without I/O: find its subscription, decrypt it, and
//! decide the ack code. Undecryptable bytes never reach the application.

use tidings_crypto::b64;
use tidings_crypto::ece::aesgcm;
use tidings_crypto::webpush::{ReceivedEncoding, ReceiverKeys};
use tidings_wire::ws::{ACK_DECRYPT_FAILED, ACK_NOT_DELIVERED, NotificationHeaders};

/// A notification, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// Decrypted (or empty): hand it to the application, ack 100 once it is handled.
    Payload(Vec<u8>),
    /// The payload does not decrypt: ack 101 and tell the application nothing but that.
    Undecryptable(String),
    /// For no subscription we hold: ack 102.
    UnknownChannel,
}

impl Opened {
    /// The ack code to send without asking the application (`None` for a payload, whose
    /// ack waits for the application).
    pub fn immediate_ack(&self) -> Option<u16> {
        match self {
            Self::Payload(_) => None,
            Self::Undecryptable(_) => Some(ACK_DECRYPT_FAILED),
            Self::UnknownChannel => Some(ACK_NOT_DELIVERED),
        }
    }
}

/// Opens a notification's `data` with the keys of its subscription (`None` if we hold none).
pub fn open(
    data: Option<&str>,
    headers: Option<&NotificationHeaders>,
    keys: Option<&ReceiverKeys>,
) -> Opened {
    let Some(keys) = keys else { return Opened::UnknownChannel };
    let Some(data) = data else { return Opened::Payload(Vec::new()) };
    match decrypt(data, headers, keys) {
        Ok(payload) => Opened::Payload(payload),
        Err(reason) => Opened::Undecryptable(reason),
    }
}

fn decrypt(
    data: &str,
    headers: Option<&NotificationHeaders>,
    keys: &ReceiverKeys,
) -> Result<Vec<u8>, String> {
    let body = b64::decode(data).map_err(|_| "the data is not base64url".to_owned())?;
    let headers = headers.ok_or("a payload without encoding headers")?;
    let encoding = match headers.encoding.to_ascii_lowercase().as_str() {
        "aes128gcm" => ReceivedEncoding::Aes128gcm,
        "aesgcm" => ReceivedEncoding::Aesgcm {
            params: aesgcm::EncryptionParams::parse(headers.encryption.as_deref().unwrap_or_default())
                .map_err(|e| e.to_string())?,
            sender_public: aesgcm::sender_key_from_crypto_key(
                headers.crypto_key.as_deref().unwrap_or_default(),
            )
            .map_err(|e| e.to_string())?,
        },
        other => return Err(format!("unknown encoding {other:?}")),
    };
    keys.decrypt(&body, encoding).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings_crypto::webpush::{ContentEncoding, encrypt};

    fn headers(out: &tidings_crypto::webpush::Encrypted) -> NotificationHeaders {
        NotificationHeaders {
            encoding: out.encoding.as_str().into(),
            encryption: out.encryption_header.clone(),
            crypto_key: out.crypto_key_dh.clone(),
        }
    }

    #[test]
    fn decrypts_both_encodings_and_refuses_garbage() {
        let keys = ReceiverKeys::generate().unwrap();
        for encoding in [ContentEncoding::Aes128gcm, ContentEncoding::Aesgcm] {
            let out = encrypt(&keys.subscription_keys(), b"hi", encoding, 0).unwrap();
            let opened = open(Some(&b64::encode(&out.body)), Some(&headers(&out)), Some(&keys));
            assert_eq!(opened, Opened::Payload(b"hi".to_vec()));
            assert_eq!(opened.immediate_ack(), None);
        }
        let out = encrypt(&keys.subscription_keys(), b"hi", ContentEncoding::Aes128gcm, 0).unwrap();
        let other = ReceiverKeys::generate().unwrap();
        let opened = open(Some(&b64::encode(&out.body)), Some(&headers(&out)), Some(&other));
        assert!(matches!(opened, Opened::Undecryptable(_)));
        assert_eq!(opened.immediate_ack(), Some(101));
        assert!(matches!(open(Some("!!"), Some(&headers(&out)), Some(&keys)), Opened::Undecryptable(_)));
        assert!(matches!(open(Some("AAAA"), None, Some(&keys)), Opened::Undecryptable(_)));
        assert_eq!(open(Some("AAAA"), None, None).immediate_ack(), Some(102));
        assert_eq!(open(None, None, Some(&keys)), Opened::Payload(Vec::new()));
    }
}
