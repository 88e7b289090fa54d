//! The legacy `aesgcm` content coding (draft-ietf-httpbis-encryption-encoding-03), as used by
//! draft-ietf-webpush-encryption-04.
//!
//! ```text
//! body   = record*                      (salt and sender key travel in HTTP headers)
//! record = AES-128-GCM(padlen(2, big endian) | 0x00*padlen | data)
//! ```
//!
//! Every record's plaintext is at most `rs` bytes (so its ciphertext at most `rs + 16`); only
//! the last may be shorter, and a body must end with a short record, so that a cut at a
//! record boundary is detected.

use super::{Error, RecordKey, SALT_LEN, TAG_LEN};
use crate::{b64, params};

/// The record size when the `Encryption` header gives none.
pub const DEFAULT_RECORD_SIZE: u32 = 4096;
/// The smallest usable record size: the two-byte padding length and one byte of data.
pub const MIN_RECORD_SIZE: u32 = 3;

const PAD_LEN: usize = 2;

/// What the `Encryption` header carries: `salt=<base64url>[; rs=<n>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptionParams {
    /// The per-message salt.
    pub salt: [u8; SALT_LEN],
    /// Plaintext bytes per record, padding length included.
    pub record_size: u32,
}

impl EncryptionParams {
    /// Parses an `Encryption` header value.
    pub fn parse(value: &str) -> Result<Self, Error> {
        let salt = params::find(value, "salt")
            .ok_or_else(|| Error::Header("the Encryption header has no salt".into()))?;
        let salt = b64::decode_array(salt)
            .map_err(|e| Error::Header(format!("the Encryption header's salt: {e}")))?;
        let record_size = match params::find(value, "rs") {
            None => DEFAULT_RECORD_SIZE,
            Some(rs) => rs
                .parse()
                .map_err(|_| Error::Header(format!("the Encryption header's rs is not a number: {rs:?}")))?,
        };
        if record_size < MIN_RECORD_SIZE {
            return Err(Error::RecordSize(record_size, MIN_RECORD_SIZE));
        }
        Ok(Self { salt, record_size })
    }

    /// The `Encryption` header value for these parameters (`rs` only when not the default).
    pub fn header_value(&self) -> String {
        let salt = b64::encode(&self.salt);
        if self.record_size == DEFAULT_RECORD_SIZE {
            format!("salt={salt}")
        } else {
            format!("salt={salt};rs={}", self.record_size)
        }
    }
}

/// An `Encryption` or `Crypto-Key` header value as user agents' `aesgcm` decoders read it:
/// every parameter value without surrounding double quotes and without base64 `=` padding,
/// and all else (names, separators, spacing, other parameters such as `rs`, `keyid` or
/// `p256ecdsa`) as sent.
///
/// Firefox refuses a padded `salt` or `dh` and drops the message without telling anyone.
/// Mozilla's autopush strips padding and quotes from both headers before passing them on,
/// so senders that pad work through it; a push service that forwards the headers as
/// received loses their messages.
///
/// Stripping is repeated until nothing changes (`"abc=" =` loses its padding, then its
/// spaces, then its quotes), so that the result is normalized too: a single pass left values
/// such as `salt=""abc==""` or `x==\x0c=` that a second pass changed again.
pub fn normalize_header(value: &str) -> String {
    params::map_values(value, |mut v| {
        loop {
            let next = params::unquote(v.trim_end_matches('=').trim());
            if next == v {
                return v;
            }
            v = next;
        }
    })
}

/// The sender's public key from a `Crypto-Key` header value (`dh=<base64url>`).
pub fn sender_key_from_crypto_key(value: &str) -> Result<[u8; 65], Error> {
    let dh = params::find(value, "dh")
        .ok_or_else(|| Error::Header("the Crypto-Key header has no dh parameter".into()))?;
    b64::decode_array(dh).map_err(|e| Error::Header(format!("the Crypto-Key header's dh: {e}")))
}

pub(crate) fn decrypt_records(key: &RecordKey, record_size: u32, body: &[u8]) -> Result<Vec<u8>, Error> {
    let chunk = record_size as usize + TAG_LEN;
    // A body that ends exactly on a record boundary (including an empty one) has lost its
    // short final record.
    if body.len().is_multiple_of(chunk) {
        return Err(Error::Truncated);
    }
    let mut plaintext = Vec::with_capacity(body.len());
    let mut buf = Vec::with_capacity(body.len().min(chunk));
    for (seq, record) in body.chunks(chunk).enumerate() {
        let seq = seq as u64;
        if record.len() < TAG_LEN + PAD_LEN {
            return Err(Error::Truncated);
        }
        buf.clear();
        buf.extend_from_slice(record);
        let data = key.open(seq, &mut buf)?;
        let pad = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let padding = data.get(PAD_LEN..PAD_LEN + pad).ok_or(Error::PaddingTooLong(seq))?;
        if padding.iter().any(|&b| b != 0) {
            return Err(Error::NonZeroPadding(seq));
        }
        plaintext.extend_from_slice(&data[PAD_LEN + pad..]);
    }
    Ok(plaintext)
}

/// Encrypts `plaintext` with `padding` zero bytes in front, as one record (plus, when that
/// record is exactly full, the empty final record the scheme requires).
pub(crate) fn encrypt(
    key: &RecordKey,
    record_size: u32,
    plaintext: &[u8],
    padding: usize,
) -> Result<Vec<u8>, Error> {
    let needed = PAD_LEN + padding + plaintext.len();
    if padding > usize::from(u16::MAX) || needed > record_size as usize {
        return Err(Error::TooLarge { needed, record_size });
    }
    let mut record = Vec::with_capacity(needed + TAG_LEN);
    record.extend_from_slice(&(padding as u16).to_be_bytes());
    record.resize(PAD_LEN + padding, 0);
    record.extend_from_slice(plaintext);
    key.seal(0, &mut record)?;
    if needed == record_size as usize {
        let mut last = vec![0; PAD_LEN];
        key.seal(1, &mut last)?;
        record.extend_from_slice(&last);
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RecordKey {
        RecordKey::new(&[9; 16], [4; 12])
    }

    #[test]
    fn round_trips_and_full_records_get_a_final_one() {
        let body = encrypt(&key(), 4096, b"hello", 3).unwrap();
        assert_eq!(body.len(), 2 + 3 + 5 + TAG_LEN);
        assert_eq!(decrypt_records(&key(), 4096, &body).unwrap(), b"hello");
        let full = encrypt(&key(), 10, b"12345678", 0).unwrap();
        assert_eq!(full.len(), 10 + TAG_LEN + 2 + TAG_LEN);
        assert_eq!(decrypt_records(&key(), 10, &full).unwrap(), b"12345678");
        assert_eq!(decrypt_records(&key(), 10, &full[..10 + TAG_LEN]), Err(Error::Truncated));
        assert!(matches!(encrypt(&key(), 10, b"123456789", 0), Err(Error::TooLarge { needed: 11, .. })));
    }

    #[test]
    fn padding_rules() {
        let mut bad_len = vec![0, 9, b'x'];
        key().seal(0, &mut bad_len).unwrap();
        assert_eq!(decrypt_records(&key(), 4096, &bad_len), Err(Error::PaddingTooLong(0)));
        let mut nonzero = vec![0, 2, 0, 1, b'x'];
        key().seal(0, &mut nonzero).unwrap();
        assert_eq!(decrypt_records(&key(), 4096, &nonzero), Err(Error::NonZeroPadding(0)));
        assert_eq!(decrypt_records(&key(), 4096, &[1; 17]), Err(Error::Truncated));
        assert_eq!(decrypt_records(&key(), 4096, &[1; 30]), Err(Error::Decrypt));
        assert_eq!(decrypt_records(&key(), 4096, &[]), Err(Error::Truncated));
    }

    #[test]
    fn encryption_header() {
        let p = EncryptionParams::parse("salt=AAAAAAAAAAAAAAAAAAAAAA; rs=100").unwrap();
        assert_eq!((p.salt, p.record_size), ([0; 16], 100));
        assert_eq!(p.header_value(), "salt=AAAAAAAAAAAAAAAAAAAAAA;rs=100");
        let p = EncryptionParams::parse("keyid=p256dh;salt=AAAAAAAAAAAAAAAAAAAAAA").unwrap();
        assert_eq!((p.record_size, p.header_value()), (4096, "salt=AAAAAAAAAAAAAAAAAAAAAA".into()));
        assert!(matches!(EncryptionParams::parse("rs=10"), Err(Error::Header(_))));
        assert!(matches!(EncryptionParams::parse("salt=AAAA"), Err(Error::Header(_))));
        assert!(matches!(EncryptionParams::parse("salt=AAAAAAAAAAAAAAAAAAAAAA;rs=x"), Err(Error::Header(_))));
        assert_eq!(EncryptionParams::parse("salt=AAAAAAAAAAAAAAAAAAAAAA;rs=2"), Err(Error::RecordSize(2, 3)));
        assert!(sender_key_from_crypto_key("p256ecdsa=AAAA").is_err());
    }

    #[test]
    fn normalized_headers_lose_quotes_and_padding_only() {
        assert_eq!(
            normalize_header(r#"salt="AAAAAAAAAAAAAAAAAAAAAA=="; rs=4096"#),
            "salt=AAAAAAAAAAAAAAAAAAAAAA; rs=4096"
        );
        assert_eq!(
            normalize_header(r#"keyid="p256dh";dh="BBBB=",p256ecdsa=CCCC=="#),
            "keyid=p256dh;dh=BBBB,p256ecdsa=CCCC"
        );
        // Spacing, empty values and items that are not parameters stay as they were.
        assert_eq!(normalize_header(" dh = BBBB== ; p256ecdsa= ; x"), " dh = BBBB ; p256ecdsa= ; x");
        let clean = "salt=AAAAAAAAAAAAAAAAAAAAAA;rs=100";
        assert_eq!(normalize_header(clean), clean);
        // What the decoders read is unchanged by it.
        let padded =
            "dh=BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8=";
        let normalized = normalize_header(padded);
        assert!(!normalized.ends_with('='), "{normalized}");
        assert_eq!(sender_key_from_crypto_key(&normalized), sender_key_from_crypto_key(padded));
    }

    /// Found by fuzzing (fuzz/corpus/ece_aesgcm/regression-normalize-*): one pass of
    /// stripping left values that a second pass changed, so what the push service passed on
    /// could still carry quotes or padding that Firefox refuses.
    #[test]
    fn normalizing_is_idempotent() {
        for value in [r#"salt=""AAAA==""; rs=4096"#, "x==\x0c=\x0c; r", r#"dh="BBBB= "="#] {
            let once = normalize_header(value);
            assert_eq!(normalize_header(&once), once, "{value:?}");
        }
        assert_eq!(normalize_header(r#"salt=""AAAA==""; rs=4096"#), "salt=AAAA; rs=4096");
    }
}
