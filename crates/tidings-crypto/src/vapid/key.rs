//! The VAPID key pair and its import and export formats.

use crate::b64;
use crate::webpush::{PRIVATE_KEY_LEN, PUBLIC_KEY_LEN};
use aws_lc_rs::agreement::{self, ECDH_P256};
use aws_lc_rs::encoding::{AsBigEndian, EcPrivateKeyBin};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The private key is not a 32-byte P-256 scalar (or not base64).
    #[error("the private key must be 32 bytes of base64url (a raw P-256 scalar): {0}")]
    Private(String),
    /// The public key is not a 65-byte uncompressed P-256 point (or not base64).
    #[error("the public key must be 65 bytes of base64url (an uncompressed P-256 point): {0}")]
    Public(String),
    /// The public key given does not belong to the private key given.
    #[error("the public key does not belong to the private key")]
    Mismatch,
    /// A PEM or DER document that is not an unencrypted P-256 private key.
    #[error("not a P-256 private key in PEM (PKCS#8 or SEC1): {0}")]
    Pem(String),
    /// The system random source failed.
    #[error("the cryptographic backend failed")]
    Backend,
}

/// The JSON form `web-push generate-vapid-keys --json` prints and `tidings vapid generate
/// --json` writes: `{"publicKey":"...","privateKey":"..."}`, both unpadded base64url.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyFile {
    /// The 65-byte public key; this is the `applicationServerKey` browsers subscribe with.
    pub public_key: String,
    /// The 32-byte private scalar.
    pub private_key: String,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile").field("public_key", &self.public_key).finish_non_exhaustive()
    }
}

/// An application server's VAPID key pair (ECDSA on P-256).
pub struct VapidKey {
    pair: EcdsaKeyPair,
    public: [u8; PUBLIC_KEY_LEN],
}

impl VapidKey {
    /// A new random key pair.
    pub fn generate() -> Result<Self, KeyError> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| KeyError::Backend)?;
        Self::from_pair(pair)
    }

    /// A key pair from the raw 32-byte private scalar; the public key is computed from it.
    pub fn from_raw_private(private: &[u8]) -> Result<Self, KeyError> {
        if private.len() != PRIVATE_KEY_LEN {
            return Err(KeyError::Private(format!("got {} bytes", private.len())));
        }
        let ecdh = agreement::PrivateKey::from_private_key(&ECDH_P256, private)
            .map_err(|_| KeyError::Private("not a valid P-256 scalar".into()))?;
        let public = ecdh.compute_public_key().map_err(|_| KeyError::Backend)?;
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            private,
            public.as_ref(),
        )
        .map_err(|_| KeyError::Backend)?;
        Self::from_pair(pair)
    }

    /// A key pair from base64url text: the private scalar, and optionally the public key,
    /// which must then match.
    pub fn from_base64(private: &str, public: Option<&str>) -> Result<Self, KeyError> {
        let raw = b64::decode(private).map_err(|e| KeyError::Private(e.to_string()))?;
        let key = Self::from_raw_private(&raw)?;
        if let Some(public) = public {
            let public = b64::decode(public).map_err(|e| KeyError::Public(e.to_string()))?;
            if public.len() != PUBLIC_KEY_LEN {
                return Err(KeyError::Public(format!("got {} bytes", public.len())));
            }
            if public != key.public {
                return Err(KeyError::Mismatch);
            }
        }
        Ok(key)
    }

    /// A key pair from a PEM document holding a PKCS#8 (`PRIVATE KEY`) or SEC1
    /// (`EC PRIVATE KEY`) P-256 private key, as `openssl ecparam -genkey` or `vapid --gen` make.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| KeyError::Pem(e.to_string()))?;
        Self::from_der(der.secret_der())
    }

    /// A key pair from DER: PKCS#8 `PrivateKeyInfo` or SEC1 `ECPrivateKey`.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|e| KeyError::Pem(e.to_string()))?;
        Self::from_pair(pair)
    }

    /// Reads a key in whichever form a user has it: PEM, the [`KeyFile`] JSON, or the raw
    /// base64url private scalar.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        if text.starts_with("-----BEGIN") {
            Self::from_pem(text)
        } else if text.starts_with('{') {
            let file: KeyFile = serde_json::from_str(text).map_err(|e| {
                KeyError::Private(format!("the key file is not {{\"publicKey\",\"privateKey\"}} JSON: {e}"))
            })?;
            Self::from_key_file(&file)
        } else {
            Self::from_base64(text, None)
        }
    }

    /// A key pair from the [`KeyFile`] JSON form.
    pub fn from_key_file(file: &KeyFile) -> Result<Self, KeyError> {
        Self::from_base64(&file.private_key, Some(&file.public_key))
    }

    fn from_pair(pair: EcdsaKeyPair) -> Result<Self, KeyError> {
        let public = pair.public_key().as_ref().try_into().map_err(|_| KeyError::Backend)?;
        Ok(Self { pair, public })
    }

    /// The 65-byte public key: the `applicationServerKey` and the `k=` of every request.
    pub fn public_key(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.public
    }

    /// The public key as unpadded base64url.
    pub fn public_key_base64(&self) -> String {
        b64::encode(&self.public)
    }

    /// The raw 32-byte private scalar. Keep it secret.
    pub fn private_key_raw(&self) -> [u8; PRIVATE_KEY_LEN] {
        let bin: EcPrivateKeyBin<'_> = self.pair.private_key().as_be_bytes().expect("P-256 key exports");
        bin.as_ref().try_into().expect("P-256 scalar is 32 bytes")
    }

    /// Both keys as the [`KeyFile`] JSON form. Contains the private key.
    pub fn to_key_file(&self) -> KeyFile {
        KeyFile { public_key: self.public_key_base64(), private_key: b64::encode(&self.private_key_raw()) }
    }

    /// The private key as PKCS#8 DER. Contains the private key.
    pub fn to_pkcs8_der(&self) -> Vec<u8> {
        self.pair.to_pkcs8v1().expect("P-256 key exports").as_ref().to_vec()
    }

    /// The private key as a PKCS#8 PEM document (`-----BEGIN PRIVATE KEY-----`).
    pub fn to_pem(&self) -> String {
        use base64::Engine as _;
        let body = base64::engine::general_purpose::STANDARD.encode(self.to_pkcs8_der());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        pem
    }

    /// Signs `message` with ES256, returning the raw 64-byte `r||s` signature JWTs use.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        let signature = self.pair.sign(&SystemRandom::new(), message).expect("ECDSA signing does not fail");
        signature.as_ref().try_into().expect("fixed-length P-256 signature is 64 bytes")
    }
}

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey").field("public", &self.public_key_base64()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8291's sender key pair doubles as a known P-256 pair.
    const PRIVATE: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
    const PUBLIC: &str =
        "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";

    #[test]
    fn raw_private_key_gives_the_known_public_key() {
        let key = VapidKey::from_base64(PRIVATE, Some(PUBLIC)).unwrap();
        assert_eq!(key.public_key_base64(), PUBLIC);
        assert_eq!(b64::encode(&key.private_key_raw()), PRIVATE);
    }

    #[test]
    fn every_import_form_gives_the_same_key() {
        let key = VapidKey::generate().unwrap();
        let file = key.to_key_file();
        let json = serde_json::to_string(&file).unwrap();
        assert!(json.starts_with(r#"{"publicKey":""#), "{json}");
        for text in [json.clone(), key.to_pem(), file.private_key.clone()] {
            assert_eq!(VapidKey::parse(&text).unwrap().public_key(), key.public_key(), "{text}");
        }
        assert_eq!(VapidKey::from_der(&key.to_pkcs8_der()).unwrap().public_key(), key.public_key());
    }

    #[test]
    fn bad_keys_say_what_is_wrong() {
        let other = VapidKey::generate().unwrap().public_key_base64();
        assert_eq!(VapidKey::from_base64(PRIVATE, Some(&other)).unwrap_err(), KeyError::Mismatch);
        assert!(matches!(VapidKey::from_base64("AAAA", None), Err(KeyError::Private(_))));
        assert!(matches!(VapidKey::from_base64(&"A".repeat(43), None), Err(KeyError::Private(_))));
        assert!(matches!(VapidKey::from_base64(PRIVATE, Some("AAAA")), Err(KeyError::Public(_))));
        assert!(matches!(
            VapidKey::parse("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"),
            Err(KeyError::Pem(_))
        ));
        assert!(matches!(VapidKey::parse("{\"publicKey\":1}"), Err(KeyError::Private(_))));
        let debug = format!("{:?}", VapidKey::from_base64(PRIVATE, None).unwrap());
        assert!(!debug.contains(PRIVATE), "{debug}");
    }
}
