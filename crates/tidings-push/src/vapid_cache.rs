//! Verified VAPID tokens, remembered.
//!
//! Checking a token's ES256 signature costs as much as everything else a push request
//! needs, and senders reuse one token per push service for hours (RFC 8292 allows up to 24),
//! so the push service remembers the tokens it has verified, by token and public key (and
//! nothing else of the headers: the draft forms' `Crypto-Key` changes its `dh=` with every
//! `aesgcm` message). A remembered token skips only the signature check: its expiry is
//! checked against the clock on every request, and the key it proves is compared with the
//! subscription's as always. Only valid tokens are remembered, so garbage cannot fill the
//! cache, and when it is full it is emptied (the next requests simply verify again).

use std::collections::HashMap;
use std::sync::Mutex;
use tidings_crypto::vapid::{Credentials, VerifyError, verify::CLOCK_SKEW, verify::MAX_TOKEN_LIFETIME};
use tidings_crypto::webpush::PUBLIC_KEY_LEN;

/// Tokens remembered at most.
pub const CAPACITY: usize = 16 * 1024;

/// A token known to be signed by `public_key`, for this service's audience.
#[derive(Debug, Clone, Copy)]
struct Known {
    public_key: [u8; PUBLIC_KEY_LEN],
    expires_at: u64,
}

/// The cache; one per service (it is only valid for one audience).
#[derive(Debug, Default)]
pub struct VapidCache {
    known: Mutex<HashMap<Box<str>, Known>>,
}

impl VapidCache {
    /// Verifies a request's VAPID credentials like [`tidings_crypto::vapid::verify`],
    /// returning the key that signed them, without re-checking signatures already seen.
    pub fn verify(
        &self,
        authorization: &str,
        crypto_key: Option<&str>,
        audience: &str,
        now: u64,
    ) -> Result<[u8; PUBLIC_KEY_LEN], VerifyError> {
        let credentials = Credentials::parse(authorization, crypto_key)?;
        // A token and key that verified hold no newline, so no other pair finds their entry.
        let cache_key = format!("{}\n{}", credentials.token, credentials.key);
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner()).get(cache_key.as_str()).copied();
        if let Some(known) = known {
            if known.expires_at <= now {
                return Err(VerifyError::Expired { exp: known.expires_at, now });
            }
            if known.expires_at > now + MAX_TOKEN_LIFETIME + CLOCK_SKEW {
                return Err(VerifyError::TooFarAhead { exp: known.expires_at, now });
            }
            return Ok(known.public_key);
        }
        let verified = credentials.verify(audience, now)?;
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= CAPACITY {
            known.clear();
        }
        known.insert(
            cache_key.into(),
            Known { public_key: verified.public_key, expires_at: verified.claims.exp },
        );
        Ok(verified.public_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings_crypto::vapid::{VapidKey, VapidSigner};

    const AUD: &str = "https://push.example.net";
    const NOW: u64 = 1_700_000_000;

    #[test]
    fn remembers_valid_tokens_and_still_checks_expiry() {
        let cache = VapidCache::default();
        let signer = VapidSigner::new(VapidKey::generate().unwrap(), None);
        let token = signer.token(AUD, NOW);
        let key = cache.verify(&token.vapid_authorization, None, AUD, NOW).unwrap();
        assert_eq!(&key, signer.key().public_key());
        assert_eq!(cache.known.lock().unwrap().len(), 1);
        assert_eq!(cache.verify(&token.vapid_authorization, None, AUD, NOW + 60).unwrap(), key);
        // The same token once it has expired is refused, cached or not.
        let later = token.expires_at;
        assert!(matches!(
            cache.verify(&token.vapid_authorization, None, AUD, later),
            Err(VerifyError::Expired { .. })
        ));
        // Invalid tokens are not remembered.
        assert!(cache.verify("vapid t=a.b.c,k=x", None, AUD, NOW).is_err());
        assert_eq!(cache.known.lock().unwrap().len(), 1);
        // Another audience's token never enters the cache.
        let other = signer.token("https://elsewhere.example", NOW);
        assert!(cache.verify(&other.vapid_authorization, None, AUD, NOW).is_err());
    }

    #[test]
    fn draft_forms_are_remembered_by_token_and_key_alone() {
        let cache = VapidCache::default();
        let signer = VapidSigner::new(VapidKey::generate().unwrap(), None);
        let (token, key) = (signer.token(AUD, NOW), signer.key().public_key_base64());
        let draft = |scheme: &str, dh: &str, key: &str, audience: &str| {
            let crypto_key = format!("dh={dh};p256ecdsa={key}");
            cache.verify(&format!("{scheme} {}", token.jwt), Some(&crypto_key), audience, NOW)
        };
        assert_eq!(&draft("WebPush", "AAAA", &key, AUD).unwrap(), signer.key().public_key());
        // Every aesgcm message brings another dh: the same token and key are still one entry,
        // whichever scheme and header form carries them.
        assert_eq!(&draft("Bearer", "BBBB", &key, AUD).unwrap(), signer.key().public_key());
        assert!(cache.verify(&token.vapid_authorization, None, AUD, NOW).is_ok());
        assert_eq!(cache.known.lock().unwrap().len(), 1);
        // And they are answered from it: the cache (one per audience) checks no signature or
        // audience on a hit, so only a remembered token passes for another audience.
        assert!(draft("webpush", "CCCC", &key, "https://elsewhere.example").is_ok());
        // The same token with another key is no hit: its signature is checked, and fails.
        let other = VapidKey::generate().unwrap().public_key_base64();
        assert_eq!(draft("WebPush", "AAAA", &other, AUD), Err(VerifyError::Signature));
        assert_eq!(cache.known.lock().unwrap().len(), 1);
    }
}
