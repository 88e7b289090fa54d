//! Verified VAPID tokens, remembered.
//!
//! Checking a token's ES256 signature costs as much as everything else a push request
//! needs, and senders reuse one token per push service for hours (RFC 8292 allows up to 24),
//! so the push service remembers the tokens it has verified. A remembered token skips only
//! the signature check: its expiry is checked against the clock on every request, and the
//! key it proves is compared with the subscription's as always. Only valid tokens are
//! remembered, so garbage cannot fill the cache, and when it is full it is emptied (the
//! next requests simply verify again).

use std::collections::HashMap;
use std::sync::Mutex;
use tidings_crypto::vapid::{self, VerifyError, verify::CLOCK_SKEW, verify::MAX_TOKEN_LIFETIME};
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
    /// Verifies a request's VAPID credentials like [`vapid::verify`], returning the key that
    /// signed them, without re-checking signatures already seen.
    pub fn verify(
        &self,
        authorization: &str,
        crypto_key: Option<&str>,
        audience: &str,
        now: u64,
    ) -> Result<[u8; PUBLIC_KEY_LEN], VerifyError> {
        // The WebPush form carries its key in Crypto-Key, so both headers make the identity.
        let cache_key = match crypto_key {
            Some(crypto_key) if !authorization.trim_start().to_ascii_lowercase().starts_with("vapid") => {
                format!("{authorization}\n{crypto_key}")
            }
            _ => authorization.to_owned(),
        };
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
        let verified = vapid::verify(authorization, crypto_key, audience, now)?;
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
}
