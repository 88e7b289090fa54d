//! Web Push message encryption: the key schedules of RFC 8291 (`aes128gcm`) and of
//! draft-ietf-webpush-encryption-04 (`aesgcm`) on top of the [`crate::ece`] record layer.
//!
//! The sender ([`encrypt`]) does an ephemeral ECDH with the subscription's `p256dh` key and
//! mixes in its `auth` secret; the receiver ([`ReceiverKeys::decrypt`]) does the same from
//! the other side. Everything random (the sender's key pair and the salt) can be supplied by
//! the caller through [`encrypt_with`], which is how the RFC test vector is reproduced.

use crate::b64;
use crate::ece::{self, Error, KEY_LEN, RecordKey, SALT_LEN, aes128gcm, aesgcm};
use aws_lc_rs::aead::NONCE_LEN;
use aws_lc_rs::agreement::{self, ECDH_P256, UnparsedPublicKey};
use aws_lc_rs::encoding::{AsBigEndian, EcPrivateKeyBin};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// Length of an uncompressed P-256 public key: `0x04 | x(32) | y(32)`.
pub const PUBLIC_KEY_LEN: usize = 65;
/// Length of the subscription's authentication secret.
pub const AUTH_LEN: usize = 16;
/// Length of a raw P-256 private key (the big-endian scalar).
pub const PRIVATE_KEY_LEN: usize = 32;
/// The largest body any conforming push service must accept (RFC 8030 section 7.2).
pub const MAX_BODY_LEN: usize = 4096;
/// The largest plaintext that fits [`MAX_BODY_LEN`] as one unpadded `aes128gcm` record:
/// 4096 minus the 86-byte header, the delimiter and the tag.
pub const MAX_PLAINTEXT_LEN: usize =
    MAX_BODY_LEN - aes128gcm::FIXED_HEADER_LEN - PUBLIC_KEY_LEN - 1 - ece::TAG_LEN;

/// Which content coding to produce or expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentEncoding {
    /// RFC 8291 / RFC 8188: the standard, understood by every current browser.
    #[default]
    Aes128gcm,
    /// draft-ietf-webpush-encryption-04: for old user agents and old senders.
    Aesgcm,
}

impl ContentEncoding {
    /// The `Content-Encoding` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aes128gcm => "aes128gcm",
            Self::Aesgcm => "aesgcm",
        }
    }

    /// Parses a `Content-Encoding` header value (case-insensitive).
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        if value.eq_ignore_ascii_case("aes128gcm") {
            Some(Self::Aes128gcm)
        } else if value.eq_ignore_ascii_case("aesgcm") {
            Some(Self::Aesgcm)
        } else {
            None
        }
    }
}

/// A validated user-agent public key: 65 bytes, uncompressed, on P-256.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey([u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// Checks that `bytes` is an uncompressed point on P-256.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let array: [u8; PUBLIC_KEY_LEN] = bytes.try_into().map_err(|_| Error::InvalidPublicKey)?;
        if array[0] != 4 {
            return Err(Error::InvalidPublicKey);
        }
        agreement::ParsedPublicKey::try_from(&UnparsedPublicKey::new(&ECDH_P256, &array))
            .map_err(|_| Error::InvalidPublicKey)?;
        Ok(Self(array))
    }

    /// The 65 bytes of the key.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", b64::encode(&self.0))
    }
}

/// What a sender needs from a subscription: its `p256dh` key and `auth` secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionKeys {
    /// The user agent's public key (`keys.p256dh`).
    pub p256dh: PublicKey,
    /// The shared authentication secret (`keys.auth`).
    pub auth: [u8; AUTH_LEN],
}

impl std::fmt::Debug for SubscriptionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionKeys").field("p256dh", &self.p256dh).finish_non_exhaustive()
    }
}

/// A sender's ephemeral key pair. One per message in production; fixed in tests.
pub struct SenderKey {
    private: agreement::PrivateKey,
    public: [u8; PUBLIC_KEY_LEN],
}

impl SenderKey {
    /// A fresh random key pair.
    pub fn generate() -> Result<Self, Error> {
        Self::from_private(agreement::PrivateKey::generate(&ECDH_P256).map_err(|_| Error::Backend)?)
    }

    /// A key pair from a raw 32-byte private scalar (for test vectors).
    pub fn from_raw(private: &[u8]) -> Result<Self, Error> {
        Self::from_private(
            agreement::PrivateKey::from_private_key(&ECDH_P256, private)
                .map_err(|_| Error::InvalidPublicKey)?,
        )
    }

    fn from_private(private: agreement::PrivateKey) -> Result<Self, Error> {
        let public = private.compute_public_key().map_err(|_| Error::Backend)?;
        let public = public.as_ref().try_into().map_err(|_| Error::Backend)?;
        Ok(Self { private, public })
    }

    /// The public half, which goes into the body's key id (or the `Crypto-Key: dh=` header).
    pub fn public_key(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.public
    }
}

/// An encrypted message, ready to be a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    /// The request body.
    pub body: Vec<u8>,
    /// The content coding of `body`.
    pub encoding: ContentEncoding,
    /// For `aesgcm` only: the `Encryption` header value (`salt=...`).
    pub encryption_header: Option<String>,
    /// For `aesgcm` only: the `dh=...` parameter of the `Crypto-Key` header.
    pub crypto_key_dh: Option<String>,
}

/// Encrypts a message for a subscription with a fresh sender key and salt.
///
/// `padding` zero bytes are added inside the record to hide the plaintext length.
pub fn encrypt(
    keys: &SubscriptionKeys,
    plaintext: &[u8],
    encoding: ContentEncoding,
    padding: usize,
) -> Result<Encrypted, Error> {
    let mut salt = [0; SALT_LEN];
    SystemRandom::new().fill(&mut salt).map_err(|_| Error::Backend)?;
    encrypt_with(keys, plaintext, encoding, padding, &SenderKey::generate()?, salt)
}

/// [`encrypt`] with the sender key and salt given, for reproducible output.
///
/// Never reuse a sender key and salt for two messages in production: that reuses the
/// content key and nonce.
pub fn encrypt_with(
    keys: &SubscriptionKeys,
    plaintext: &[u8],
    encoding: ContentEncoding,
    padding: usize,
    sender: &SenderKey,
    salt: [u8; SALT_LEN],
) -> Result<Encrypted, Error> {
    let ua_public = keys.p256dh.as_bytes();
    agreement::agree(
        &sender.private,
        UnparsedPublicKey::new(&ECDH_P256, ua_public),
        Error::InvalidPublicKey,
        |ecdh| match encoding {
            ContentEncoding::Aes128gcm => {
                let ikm = aes128gcm_ikm(ecdh, &keys.auth, ua_public, &sender.public);
                let header = aes128gcm::Header {
                    salt,
                    record_size: aes128gcm::DEFAULT_RECORD_SIZE,
                    key_id: &sender.public,
                };
                let key = aes128gcm::record_key(&ikm, &salt);
                Ok(Encrypted {
                    body: aes128gcm::encrypt_single_record(&key, &header, plaintext, padding)?,
                    encoding,
                    encryption_header: None,
                    crypto_key_dh: None,
                })
            }
            ContentEncoding::Aesgcm => {
                let key = aesgcm_record_key(ecdh, &keys.auth, &salt, ua_public, &sender.public);
                let params = aesgcm::EncryptionParams { salt, record_size: aesgcm::DEFAULT_RECORD_SIZE };
                Ok(Encrypted {
                    body: aesgcm::encrypt(&key, params.record_size, plaintext, padding)?,
                    encoding,
                    encryption_header: Some(params.header_value()),
                    crypto_key_dh: Some(format!("dh={}", b64::encode(&sender.public))),
                })
            }
        },
    )
}

/// RFC 8291 section 3.4: the IKM for RFC 8188, binding both public keys and the auth secret.
fn aes128gcm_ikm(ecdh: &[u8], auth: &[u8; AUTH_LEN], ua_public: &[u8], as_public: &[u8]) -> [u8; 32] {
    let prk_key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, auth), ecdh);
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, prk_key.as_ref()));
    ctx.update(b"WebPush: info\0");
    ctx.update(ua_public);
    ctx.update(as_public);
    ctx.update(&[1]);
    ctx.sign().as_ref().try_into().expect("SHA-256 output is 32 bytes")
}

/// draft-ietf-webpush-encryption-04 section 3: the auth secret is mixed in first, then the
/// record key and nonce are derived with a context that names both public keys.
fn aesgcm_record_key(
    ecdh: &[u8],
    auth: &[u8; AUTH_LEN],
    salt: &[u8; SALT_LEN],
    ua_public: &[u8],
    as_public: &[u8],
) -> RecordKey {
    let mut ikm = [0; 32];
    ece::hkdf(auth, ecdh, &[b"Content-Encoding: auth\0"], &mut ikm);
    let len = (PUBLIC_KEY_LEN as u16).to_be_bytes();
    let context: [&[u8]; 5] = [b"P-256\0", &len, ua_public, &len, as_public];
    let mut cek = [0; KEY_LEN];
    let mut nonce = [0; NONCE_LEN];
    let cek_info: Vec<&[u8]> = std::iter::once(&b"Content-Encoding: aesgcm\0"[..]).chain(context).collect();
    let nonce_info: Vec<&[u8]> = std::iter::once(&b"Content-Encoding: nonce\0"[..]).chain(context).collect();
    ece::hkdf(salt, &ikm, &cek_info, &mut cek);
    ece::hkdf(salt, &ikm, &nonce_info, &mut nonce);
    RecordKey::new(&cek, nonce)
}

/// How a received body was encoded, with what the HTTP headers said about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceivedEncoding {
    /// RFC 8291: everything needed is in the body.
    Aes128gcm,
    /// The draft scheme: salt and record size from `Encryption`, sender key from `Crypto-Key`.
    Aesgcm {
        /// From the `Encryption` header.
        params: aesgcm::EncryptionParams,
        /// From the `Crypto-Key: dh=` parameter.
        sender_public: [u8; PUBLIC_KEY_LEN],
    },
}

/// A user agent's keys for one subscription: the P-256 key pair and the auth secret.
pub struct ReceiverKeys {
    private: agreement::PrivateKey,
    public: [u8; PUBLIC_KEY_LEN],
    auth: [u8; AUTH_LEN],
}

impl ReceiverKeys {
    /// New random keys, as a browser makes for each `subscribe()`.
    pub fn generate() -> Result<Self, Error> {
        let mut auth = [0; AUTH_LEN];
        SystemRandom::new().fill(&mut auth).map_err(|_| Error::Backend)?;
        let sender = SenderKey::generate()?;
        Ok(Self { private: sender.private, public: sender.public, auth })
    }

    /// Keys from their raw parts (a stored private scalar and auth secret).
    pub fn from_raw(private: &[u8], auth: [u8; AUTH_LEN]) -> Result<Self, Error> {
        let pair = SenderKey::from_raw(private)?;
        Ok(Self { private: pair.private, public: pair.public, auth })
    }

    /// The raw private scalar, for storing the keys. Keep it secret.
    pub fn private_bytes(&self) -> [u8; PRIVATE_KEY_LEN] {
        let bin: EcPrivateKeyBin<'_> = self.private.as_be_bytes().expect("P-256 private key exports");
        bin.as_ref().try_into().expect("P-256 scalar is 32 bytes")
    }

    /// What the subscription publishes (`p256dh` and `auth`), for senders.
    pub fn subscription_keys(&self) -> SubscriptionKeys {
        SubscriptionKeys { p256dh: PublicKey(self.public), auth: self.auth }
    }

    /// Decrypts a received message body.
    pub fn decrypt(&self, body: &[u8], encoding: ReceivedEncoding) -> Result<Vec<u8>, Error> {
        match encoding {
            ReceivedEncoding::Aes128gcm => {
                let (header, records) = aes128gcm::Header::parse(body)?;
                if header.key_id.len() != PUBLIC_KEY_LEN {
                    return Err(Error::KeyIdLength { actual: header.key_id.len() });
                }
                let key = self.agree(header.key_id, |ecdh| {
                    let ikm = aes128gcm_ikm(ecdh, &self.auth, &self.public, header.key_id);
                    aes128gcm::record_key(&ikm, &header.salt)
                })?;
                aes128gcm::decrypt_records(&key, header.record_size, records)
            }
            ReceivedEncoding::Aesgcm { params, sender_public } => {
                let key = self.agree(&sender_public, |ecdh| {
                    aesgcm_record_key(ecdh, &self.auth, &params.salt, &self.public, &sender_public)
                })?;
                aesgcm::decrypt_records(&key, params.record_size, body)
            }
        }
    }

    fn agree(&self, peer: &[u8], derive: impl FnOnce(&[u8]) -> RecordKey) -> Result<RecordKey, Error> {
        agreement::agree(
            &self.private,
            UnparsedPublicKey::new(&ECDH_P256, peer),
            Error::InvalidPublicKey,
            |ecdh| Ok(derive(ecdh)),
        )
    }
}

impl std::fmt::Debug for ReceiverKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverKeys").field("public", &b64::encode(&self.public)).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAINTEXT: &[u8] = b"When I grow up, I want to be a watermelon";
    const UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
    const UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AS_PRIVATE: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
    const AS_PUBLIC: &str =
        "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
    const SALT: &str = "DGv6ra1nlYgDCS1FRnbzlw";
    const BODY: &str = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";

    fn receiver() -> ReceiverKeys {
        ReceiverKeys::from_raw(&b64::decode(UA_PRIVATE).unwrap(), b64::decode_array(AUTH).unwrap()).unwrap()
    }

    #[test]
    fn rfc8291_intermediate_values() {
        let ua_public = b64::decode(UA_PUBLIC).unwrap();
        let sender = SenderKey::from_raw(&b64::decode(AS_PRIVATE).unwrap()).unwrap();
        assert_eq!(b64::encode(sender.public_key()), AS_PUBLIC);
        let auth: [u8; 16] = b64::decode_array(AUTH).unwrap();
        let salt: [u8; 16] = b64::decode_array(SALT).unwrap();
        agreement::agree(&sender.private, UnparsedPublicKey::new(&ECDH_P256, &ua_public), (), |ecdh| {
            assert_eq!(b64::encode(ecdh), "kyrL1jIIOHEzg3sM2ZWRHDRB62YACZhhSlknJ672kSs");
            let prk_key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &auth), ecdh);
            assert_eq!(b64::encode(prk_key.as_ref()), "Snr3JMxaHVDXHWJn5wdC52WjpCtd2EIEGBykDcZW32k");
            let ikm = aes128gcm_ikm(ecdh, &auth, &ua_public, sender.public_key());
            assert_eq!(b64::encode(&ikm), "S4lYMb_L0FxCeq0WhDx813KgSYqU26kOyzWUdsXYyrg");
            let prk = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &salt), &ikm);
            assert_eq!(b64::encode(prk.as_ref()), "09_eUZGrsvxChDCGRCdkLiDXrReGOEVeSCdCcPBSJSc");
            let mut cek = [0; 16];
            ece::hkdf(&salt, &ikm, &[b"Content-Encoding: aes128gcm\0"], &mut cek);
            assert_eq!(b64::encode(&cek), "oIhVW04MRdy2XN9CiKLxTg");
            let mut nonce = [0; 12];
            ece::hkdf(&salt, &ikm, &[b"Content-Encoding: nonce\0"], &mut nonce);
            assert_eq!(b64::encode(&nonce), "4h_95klXJ5E_qnoN");
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn rfc8291_body_byte_for_byte() {
        let keys = SubscriptionKeys {
            p256dh: PublicKey::from_bytes(&b64::decode(UA_PUBLIC).unwrap()).unwrap(),
            auth: b64::decode_array(AUTH).unwrap(),
        };
        let sender = SenderKey::from_raw(&b64::decode(AS_PRIVATE).unwrap()).unwrap();
        let out = encrypt_with(
            &keys,
            PLAINTEXT,
            ContentEncoding::Aes128gcm,
            0,
            &sender,
            b64::decode_array(SALT).unwrap(),
        )
        .unwrap();
        assert_eq!(b64::encode(&out.body), BODY);
        assert_eq!(out.body.len(), 144);
        assert_eq!(receiver().subscription_keys(), keys);
    }

    #[test]
    fn rfc8291_body_decrypts() {
        let body = b64::decode(BODY).unwrap();
        assert_eq!(receiver().decrypt(&body, ReceivedEncoding::Aes128gcm).unwrap(), PLAINTEXT);
        assert_eq!(b64::encode(&receiver().private_bytes()), UA_PRIVATE);
    }

    #[test]
    fn both_schemes_round_trip_with_padding_up_to_the_limit() {
        let ua = ReceiverKeys::generate().unwrap();
        let keys = ua.subscription_keys();
        let out = encrypt(&keys, b"hi", ContentEncoding::Aes128gcm, 100).unwrap();
        assert_eq!(ua.decrypt(&out.body, ReceivedEncoding::Aes128gcm).unwrap(), b"hi");
        let max = vec![b'x'; MAX_PLAINTEXT_LEN];
        let out = encrypt(&keys, &max, ContentEncoding::Aes128gcm, 0).unwrap();
        assert_eq!(out.body.len(), MAX_BODY_LEN);
        assert_eq!(ua.decrypt(&out.body, ReceivedEncoding::Aes128gcm).unwrap(), max);

        let out = encrypt(&keys, b"legacy", ContentEncoding::Aesgcm, 7).unwrap();
        let params = aesgcm::EncryptionParams::parse(out.encryption_header.as_deref().unwrap()).unwrap();
        let sender_public =
            aesgcm::sender_key_from_crypto_key(out.crypto_key_dh.as_deref().unwrap()).unwrap();
        let received = ReceivedEncoding::Aesgcm { params, sender_public };
        assert_eq!(ua.decrypt(&out.body, received).unwrap(), b"legacy");
        // The same body under another subscription's keys does not open.
        let other = ReceiverKeys::generate().unwrap();
        assert_eq!(other.decrypt(&out.body, received), Err(Error::Decrypt));
    }

    #[test]
    fn bad_keys_are_refused() {
        let mut off_curve = b64::decode(UA_PUBLIC).unwrap();
        off_curve[64] ^= 1;
        assert_eq!(PublicKey::from_bytes(&off_curve), Err(Error::InvalidPublicKey));
        assert_eq!(PublicKey::from_bytes(&off_curve[..33]), Err(Error::InvalidPublicKey));
        let mut body = b64::decode(BODY).unwrap();
        body[20] = 3;
        assert_eq!(
            receiver().decrypt(&body, ReceivedEncoding::Aes128gcm),
            Err(Error::KeyIdLength { actual: 3 })
        );
        let mut body = b64::decode(BODY).unwrap();
        body[21 + 64] ^= 1; // the key id is no longer a point on the curve
        assert_eq!(receiver().decrypt(&body, ReceivedEncoding::Aes128gcm), Err(Error::InvalidPublicKey));
    }
}
