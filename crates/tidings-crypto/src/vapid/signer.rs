//! Signing VAPID tokens once per audience.
//!
//! An ES256 signature costs about as much as the rest of preparing a message, and a push
//! service only checks that the token is valid for its origin, so one token per audience
//! serves every request to that push service until it nears expiry.

use super::jwt::{self, Claims};
use super::key::VapidKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How long a fresh token is valid: 12 hours, as npm web-push does (RFC 8292 allows 24).
pub const DEFAULT_LIFETIME: u64 = 12 * 3600;
/// A cached token is replaced once it has less than this left, so that no request goes out
/// with a token that expires in flight or on a push service whose clock runs ahead.
pub const RENEW_BEFORE: u64 = 3600;

/// A signed token and the header values it is sent in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The compact JWT.
    pub jwt: Arc<str>,
    /// `vapid t=<jwt>,k=<key>`: the RFC 8292 `Authorization` value (for `aes128gcm`).
    pub vapid_authorization: Arc<str>,
    /// The token's `exp`.
    pub expires_at: u64,
}

/// Signs VAPID tokens with one key and subject, caching one per audience.
///
/// Time comes in as an argument (seconds since the Unix epoch) so that the cache logic is
/// testable without clocks; `Sync`, so one signer can serve every sending thread.
#[derive(Debug)]
pub struct VapidSigner {
    key: VapidKey,
    subject: Option<String>,
    lifetime: u64,
    cache: Mutex<HashMap<Box<str>, Token>>,
}

impl VapidSigner {
    /// A signer whose tokens carry `subject` as `sub` (None leaves it out).
    pub fn new(key: VapidKey, subject: Option<String>) -> Self {
        Self { key, subject, lifetime: DEFAULT_LIFETIME, cache: Mutex::default() }
    }

    /// Changes how long new tokens are valid (clamped to RFC 8292's 24 hours, and to more
    /// than the renewal margin so that a token is ever reused).
    pub fn with_lifetime(mut self, seconds: u64) -> Self {
        self.lifetime = seconds.clamp(RENEW_BEFORE + 60, 24 * 3600);
        self
    }

    /// The signing key.
    pub fn key(&self) -> &VapidKey {
        &self.key
    }

    /// A token for `audience` (the push service's origin) valid at `now`: the cached one
    /// while it has more than [`RENEW_BEFORE`] seconds left, else a new one.
    pub fn token(&self, audience: &str, now: u64) -> Token {
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(token) = cache.get(audience)
            && token.expires_at > now.saturating_add(RENEW_BEFORE)
        {
            return token.clone();
        }
        let claims = Claims { aud: audience.to_owned(), exp: now + self.lifetime, sub: self.subject.clone() };
        let jwt: Arc<str> = jwt::sign(&self.key, &claims).into();
        let token = Token {
            vapid_authorization: format!("vapid t={jwt},k={}", self.key.public_key_base64()).into(),
            jwt,
            expires_at: claims.exp,
        };
        cache.insert(audience.into(), token.clone());
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vapid::verify;

    #[test]
    fn reuses_a_token_until_shortly_before_expiry() {
        let signer = VapidSigner::new(VapidKey::generate().unwrap(), Some("mailto:a@example.com".into()));
        let t0 = 1_700_000_000;
        let first = signer.token("https://push.example.net", t0);
        assert_eq!(first.expires_at, t0 + DEFAULT_LIFETIME);
        assert!(Arc::ptr_eq(&first.jwt, &signer.token("https://push.example.net", t0 + 3600).jwt));
        let other = signer.token("https://fcm.googleapis.com", t0);
        assert_ne!(first.jwt, other.jwt);
        let late = t0 + DEFAULT_LIFETIME - RENEW_BEFORE;
        let renewed = signer.token("https://push.example.net", late);
        assert_ne!(first.jwt, renewed.jwt);
        assert_eq!(renewed.expires_at, late + DEFAULT_LIFETIME);
        let verified =
            verify::verify(&renewed.vapid_authorization, None, "https://push.example.net", late).unwrap();
        assert_eq!(verified.claims.sub.as_deref(), Some("mailto:a@example.com"));
    }
}
