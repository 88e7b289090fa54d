//! The VAPID `Authorization` header and its JWT (`tidings_crypto::vapid`), through the push
//! service's cache of verified tokens (`tidings_push::vapid_cache`), as a push request's
//! credentials reach them.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use std::sync::LazyLock;
use tidings_crypto::b64;
use tidings_crypto::vapid::verify::{CLOCK_SKEW, MAX_TOKEN_LIFETIME};
use tidings_crypto::vapid::{Credentials, VapidKey, verify};
use tidings_push::vapid_cache::VapidCache;

/// The audience the targets verify for.
pub(crate) const AUDIENCE: &str = "https://push.example";

/// The application server key the targets sign with (the scalar `[4; 32]`).
pub(crate) static SIGNER: LazyLock<(VapidKey, EcdsaKeyPair)> = LazyLock::new(|| {
    let key = VapidKey::from_raw_private(&[4; 32]).expect("a valid scalar");
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.to_pkcs8_der()).expect("PKCS#8");
    (key, pair)
});

/// `vapid t=<header>.<claims>.<signature>, k=<key>` with the JSON texts given, signed by
/// [`SIGNER`]: a random signature never verifies, so this is how the claims are reached.
pub(crate) fn signed_authorization(header: &[u8], claims: &[u8]) -> String {
    let (key, pair) = &*SIGNER;
    let input = format!("{}.{}", b64::encode(header), b64::encode(claims));
    let signature = pair.sign(&SystemRandom::new(), input.as_bytes()).expect("sign");
    format!("vapid t={input}.{}, k={}", b64::encode(signature.as_ref()), key.public_key_base64())
}

/// Byte 0, even: two lines, `Authorization` and `Crypto-Key`, as sent. Odd: two lines, a
/// JWT header and claims (JSON), signed here.
///
/// Properties: no panic; what verifies has an unexpired `exp` at most a day (and the clock
/// skew) ahead and an `aud` of this service, and a token signed here verifies as signed by
/// its key; the push service's cache answers a second time as the verifier did the first.
pub fn vapid_auth(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (first, second) = crate::split_line(rest);
    let (second, _) = crate::split_line(second);
    let (authorization, crypto_key) = if mode & 1 == 0 {
        (String::from_utf8_lossy(first).into_owned(), Some(String::from_utf8_lossy(second).into_owned()))
    } else {
        (signed_authorization(first, second), None)
    };
    let now = crate::NOW + u64::from(mode >> 1) * 3600;
    let _ = Credentials::parse(&authorization, crypto_key.as_deref());
    let verified = verify(&authorization, crypto_key.as_deref(), AUDIENCE, now);
    if let Ok(verified) = &verified {
        assert!(verified.claims.exp > now && verified.claims.exp <= now + MAX_TOKEN_LIFETIME + CLOCK_SKEW);
        assert!(verified.claims.aud.trim_end_matches('/').eq_ignore_ascii_case(AUDIENCE));
        if mode & 1 == 1 {
            assert_eq!(&verified.public_key, SIGNER.0.public_key());
        }
    }
    let cache = VapidCache::default();
    for _ in 0..2 {
        let cached = cache.verify(&authorization, crypto_key.as_deref(), AUDIENCE, now);
        assert_eq!(cached.ok(), verified.as_ref().ok().map(|v| v.public_key), "the cache answers otherwise");
    }
}
