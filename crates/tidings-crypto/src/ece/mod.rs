//! HTTP Encrypted Content-Encoding: the record layer under Web Push payloads.
//!
//! Two schemes live here, both as pure functions over byte slices:
//!
//! * [`aes128gcm`]: RFC 8188, the standard. The salt, record size and key id travel in a
//!   header at the front of the body, so the decoder needs nothing but the key material.
//! * [`aesgcm`]: the draft scheme (draft-ietf-httpbis-encryption-encoding-03) that Chrome and
//!   Firefox used before RFC 8188. The salt and sender key travel in the `Encryption` and
//!   `Crypto-Key` HTTP headers instead. Old senders still emit it, so we read and write it.
//!
//! Key agreement (who derives the input keying material, and how) is not the record layer's
//! business: see [`crate::webpush`] for the Web Push key schedules that feed these functions.

pub mod aes128gcm;
pub mod aesgcm;

use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;

/// Length of the AES-GCM authentication tag that ends every record.
pub const TAG_LEN: usize = 16;
/// Length of the salt, in both schemes.
pub const SALT_LEN: usize = 16;
/// Length of the AES-128 content-encryption key.
pub const KEY_LEN: usize = 16;

/// Everything that can be wrong with an encrypted body or with a request to encrypt one.
///
/// Decoders return these for any input, however hostile; none of them panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The body ends before its header does.
    #[error("the body is shorter than its content-coding header ({needed} bytes needed, {actual} present)")]
    ShortHeader {
        /// Bytes the header needs.
        needed: usize,
        /// Bytes the body has.
        actual: usize,
    },
    /// The record size is too small to hold a tag and a delimiter or padding length.
    #[error("record size {0} is too small (the minimum is {1})")]
    RecordSize(u32, u32),
    /// The key id does not have the length this use requires.
    #[error("the key id is {actual} bytes; Web Push needs the sender's 65-byte public key there")]
    KeyIdLength {
        /// The key id length found.
        actual: usize,
    },
    /// A public key is not an uncompressed point on P-256.
    #[error("not a valid P-256 public key (65 bytes, uncompressed, on the curve)")]
    InvalidPublicKey,
    /// The authentication tag did not verify: wrong keys, or the body was altered.
    #[error("decryption failed: wrong keys, or the body was altered in transit")]
    Decrypt,
    /// A record decrypted to nothing but zeros: it has no delimiter.
    #[error("record {0} has no delimiter (all bytes are zero)")]
    MissingDelimiter(u64),
    /// A record's last non-zero byte is not a valid delimiter.
    #[error("record {record} ends in byte {byte:#04x}, not a delimiter: padding must be zeros")]
    BadDelimiter {
        /// Index of the record, from 0.
        record: u64,
        /// The byte found where the delimiter should be.
        byte: u8,
    },
    /// The body ends without a final record: records were cut off.
    #[error("the body is truncated: its last record is not marked as final")]
    Truncated,
    /// More records follow the one marked as final.
    #[error("data follows the final record")]
    TrailingData,
    /// aesgcm: a record announces more padding than it holds.
    #[error("record {0} announces more padding than it holds")]
    PaddingTooLong(u64),
    /// aesgcm: a padding byte is not zero.
    #[error("record {0} has non-zero padding")]
    NonZeroPadding(u64),
    /// The plaintext and padding do not fit the record size.
    #[error("{needed} bytes of plaintext and padding do not fit a record of {record_size} bytes")]
    TooLarge {
        /// Bytes the record would need.
        needed: usize,
        /// The record size in force.
        record_size: u32,
    },
    /// A header parameter (`Encryption`, `Crypto-Key`) is missing or malformed.
    #[error("{0}")]
    Header(String),
    /// The system random source or key agreement failed; not caused by the input.
    #[error("the cryptographic backend failed")]
    Backend,
}

/// HKDF-SHA256 (RFC 5869) for outputs of at most one hash length, which is all these schemes
/// ever ask for: extract with `salt`, then a single expand block.
pub(crate) fn hkdf(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) {
    debug_assert!(out.len() <= 32);
    let prk = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, salt), ikm);
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, prk.as_ref()));
    for part in info {
        ctx.update(part);
    }
    ctx.update(&[1]);
    out.copy_from_slice(&ctx.sign().as_ref()[..out.len()]);
}

/// A content-encryption key and the base nonce that record sequence numbers are XORed into.
pub(crate) struct RecordKey {
    key: LessSafeKey,
    base_nonce: [u8; NONCE_LEN],
}

impl RecordKey {
    pub(crate) fn new(cek: &[u8; KEY_LEN], base_nonce: [u8; NONCE_LEN]) -> Self {
        // A 16-byte key is always a valid AES-128 key, so this cannot fail.
        let unbound = UnboundKey::new(&AES_128_GCM, cek).expect("16-byte AES-128 key");
        Self { key: LessSafeKey::new(unbound), base_nonce }
    }

    fn nonce(&self, seq: u64) -> Nonce {
        let mut nonce = self.base_nonce;
        for (n, s) in nonce[NONCE_LEN - 8..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        Nonce::assume_unique_for_key(nonce)
    }

    /// Encrypts `record` in place and appends the tag.
    pub(crate) fn seal(&self, seq: u64, record: &mut Vec<u8>) -> Result<(), Error> {
        self.key.seal_in_place_append_tag(self.nonce(seq), Aad::empty(), record).map_err(|_| Error::Backend)
    }

    /// Decrypts one record (ciphertext and tag) in place, returning the plaintext part.
    pub(crate) fn open<'a>(&self, seq: u64, record: &'a mut [u8]) -> Result<&'a mut [u8], Error> {
        self.key.open_in_place(self.nonce(seq), Aad::empty(), record).map_err(|_| Error::Decrypt)
    }
}
