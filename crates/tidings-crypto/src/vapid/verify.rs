//! The push service's side of VAPID: read the credentials a request carries and check them.
//!
//! Two header forms are in use:
//!
//! * RFC 8292: `Authorization: vapid t=<jwt>, k=<public key>`;
//! * the draft forms older senders (and `aesgcm` senders) use:
//!   `Authorization: WebPush <jwt>` or `Authorization: Bearer <jwt>`, with
//!   `Crypto-Key: p256ecdsa=<public key>`. Mozilla's autopush accepts both scheme names, and
//!   senders written against it still send either.
//!
//! The rules enforced are those of RFC 8292 section 2 as push services apply them: an ES256
//! signature by the key given, `aud` equal to the service's origin, `exp` present, not past
//! and at most 24 hours ahead, and `sub`, when present, a `mailto:` or `https:` contact.

use super::jwt::Claims;
use crate::webpush::{PUBLIC_KEY_LEN, PublicKey};
use crate::{b64, params};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

/// The longest a token may still be valid for (RFC 8292 section 2).
pub const MAX_TOKEN_LIFETIME: u64 = 24 * 3600;
/// Tolerated difference between the sender's clock and ours when checking how far ahead
/// `exp` is: senders that sign for exactly 24 hours with a clock a little fast still pass.
pub const CLOCK_SKEW: u64 = 60;
/// Tokens longer than this are refused before any parsing work.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Why a request's VAPID credentials were refused. Every variant means HTTP 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The `Authorization` scheme is neither `vapid` nor a draft one (`WebPush`, `Bearer`).
    #[error("the Authorization scheme must be \"vapid\" (or the older \"WebPush\" or \"Bearer\"), not {0:?}")]
    Scheme(String),
    /// No token (`t=`, or the JWT after `WebPush` or `Bearer`).
    #[error("the Authorization header carries no token (t=)")]
    MissingToken,
    /// No public key (`k=`, or `Crypto-Key: p256ecdsa=`).
    #[error(
        "no VAPID public key: send k= in Authorization (or p256ecdsa= in Crypto-Key with WebPush or Bearer)"
    )]
    MissingKey,
    /// The public key is not a 65-byte uncompressed P-256 point.
    #[error("the VAPID public key is not a 65-byte uncompressed P-256 point in base64url")]
    BadKey,
    /// The token is not a compact JWS with base64url JSON parts.
    #[error("the token is not a valid JWT: {0}")]
    Malformed(&'static str),
    /// The JOSE header names another algorithm.
    #[error("the token's algorithm must be ES256, not {0:?}")]
    Algorithm(String),
    /// The signature does not verify with the key given.
    #[error("the token's signature does not verify with the public key given")]
    Signature,
    /// A claim is missing or has the wrong type.
    #[error("the token's claims are invalid: {0}")]
    Claims(&'static str),
    /// `aud` is not this push service's origin.
    #[error("the token's aud {actual:?} is not this push service's origin {expected:?}")]
    Audience {
        /// The origin the service expects.
        expected: String,
        /// The audience the token names.
        actual: String,
    },
    /// `exp` has passed.
    #[error("the token expired at {exp} (now is {now})")]
    Expired {
        /// The token's expiry.
        exp: u64,
        /// The time of the check.
        now: u64,
    },
    /// `exp` is more than 24 hours ahead.
    #[error("the token's exp {exp} is more than 24 hours after now ({now})")]
    TooFarAhead {
        /// The token's expiry.
        exp: u64,
        /// The time of the check.
        now: u64,
    },
    /// `sub` is neither `mailto:` nor `https:`.
    #[error("the token's sub must be a mailto: or https: contact")]
    Subject,
}

/// What a valid token proves: who signed it, and what it claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The key that signed the token; compared with a restricted subscription's key.
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// The token's claims.
    pub claims: Claims,
}

/// The token and public key a request carries, read but not checked.
///
/// The pair is what a token proves, whichever header form carried it, so it is also what the
/// push service remembers verified tokens by: the draft forms' `Crypto-Key` header carries a
/// fresh `dh=` with every `aesgcm` message, which must not make the same token look new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// The JWT.
    pub token: &'a str,
    /// The public key, in base64url as sent.
    pub key: &'a str,
}

impl<'a> Credentials<'a> {
    /// Reads the credentials of a request's `Authorization` header; the draft schemes
    /// (`WebPush`, `Bearer`; any case) take the key from its `Crypto-Key` header.
    pub fn parse(authorization: &'a str, crypto_key: Option<&'a str>) -> Result<Self, VerifyError> {
        let authorization = authorization.trim();
        let (scheme, rest) = authorization.split_once(' ').unwrap_or((authorization, ""));
        if scheme.eq_ignore_ascii_case("vapid") {
            let token = params::find(rest, "t").ok_or(VerifyError::MissingToken)?;
            let key = params::find(rest, "k").ok_or(VerifyError::MissingKey)?;
            Ok(Self { token, key })
        } else if scheme.eq_ignore_ascii_case("webpush") || scheme.eq_ignore_ascii_case("bearer") {
            let token = rest.trim();
            if token.is_empty() {
                return Err(VerifyError::MissingToken);
            }
            let key = crypto_key.and_then(|v| params::find(v, "p256ecdsa")).ok_or(VerifyError::MissingKey)?;
            Ok(Self { token, key })
        } else {
            Err(VerifyError::Scheme(scheme.chars().take(32).collect()))
        }
    }

    /// Checks the credentials against `audience` (this service's origin) at `now` (seconds
    /// since the Unix epoch).
    pub fn verify(&self, audience: &str, now: u64) -> Result<Verified, VerifyError> {
        let Self { token, key } = *self;
        let key = b64::decode(key).map_err(|_| VerifyError::BadKey)?;
        let public_key = PublicKey::from_bytes(&key).map_err(|_| VerifyError::BadKey)?;
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::Malformed("longer than 4096 characters"));
        }
        let (signed, signature) =
            token.rsplit_once('.').ok_or(VerifyError::Malformed("not three dot-separated parts"))?;
        let (header, claims) =
            signed.split_once('.').ok_or(VerifyError::Malformed("not three dot-separated parts"))?;
        if claims.contains('.') {
            return Err(VerifyError::Malformed("not three dot-separated parts"));
        }
        let header: serde_json::Value =
            decode_json(header).ok_or(VerifyError::Malformed("the header is not base64url JSON"))?;
        match header.get("alg").and_then(|a| a.as_str()) {
            Some("ES256") => {}
            other => return Err(VerifyError::Algorithm(other.unwrap_or("none").chars().take(16).collect())),
        }
        let signature =
            b64::decode(signature).map_err(|_| VerifyError::Malformed("the signature is not base64url"))?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public_key.as_bytes())
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| VerifyError::Signature)?;
        let claims =
            decode_json(claims).ok_or(VerifyError::Malformed("the claims are not base64url JSON"))?;
        let claims = check_claims(&claims, audience, now)?;
        Ok(Verified { public_key: *public_key.as_bytes(), claims })
    }
}

/// Checks a request's VAPID credentials against `audience` (this service's origin) at
/// `now` (seconds since the Unix epoch).
///
/// `crypto_key` is the request's `Crypto-Key` header, needed only for the draft schemes.
pub fn verify(
    authorization: &str,
    crypto_key: Option<&str>,
    audience: &str,
    now: u64,
) -> Result<Verified, VerifyError> {
    Credentials::parse(authorization, crypto_key)?.verify(audience, now)
}

fn decode_json(part: &str) -> Option<serde_json::Value> {
    serde_json::from_slice(&b64::decode(part).ok()?).ok()
}

fn check_claims(claims: &serde_json::Value, audience: &str, now: u64) -> Result<Claims, VerifyError> {
    let aud = claims.get("aud").ok_or(VerifyError::Claims("aud is missing"))?;
    let aud = aud.as_str().ok_or(VerifyError::Claims("aud is not a string"))?;
    if !same_origin(aud, audience) {
        return Err(VerifyError::Audience {
            expected: audience.into(),
            actual: aud.chars().take(256).collect(),
        });
    }
    let exp = claims.get("exp").ok_or(VerifyError::Claims("exp is missing"))?;
    // NumericDate may be fractional (RFC 7519 section 2); seconds are what matter.
    let exp =
        exp.as_f64().filter(|e| *e >= 0.0).ok_or(VerifyError::Claims("exp is not a non-negative number"))?
            as u64;
    if exp <= now {
        return Err(VerifyError::Expired { exp, now });
    }
    if exp > now + MAX_TOKEN_LIFETIME + CLOCK_SKEW {
        return Err(VerifyError::TooFarAhead { exp, now });
    }
    let sub = match claims.get("sub") {
        None | Some(serde_json::Value::Null) => None,
        Some(sub) => {
            let sub = sub.as_str().ok_or(VerifyError::Claims("sub is not a string"))?;
            if !(sub.starts_with("mailto:") || sub.starts_with("https:")) {
                return Err(VerifyError::Subject);
            }
            Some(sub.to_owned())
        }
    };
    Ok(Claims { aud: aud.to_owned(), exp, sub })
}

/// Origins compare case-insensitively and regardless of a trailing slash, which some
/// senders leave on.
fn same_origin(a: &str, b: &str) -> bool {
    a.trim_end_matches('/').eq_ignore_ascii_case(b.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vapid::{VapidKey, jwt};

    const AUD: &str = "https://push.example.net";
    const NOW: u64 = 1_700_000_000;

    fn signed(key: &VapidKey, claims: serde_json::Value) -> String {
        // Sign arbitrary JSON, to reach the claim checks with shapes Claims cannot express.
        let body = b64::encode(claims.to_string().as_bytes());
        let signing_input = format!("eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.{body}");
        format!("{signing_input}.{}", b64::encode(&key.sign(signing_input.as_bytes())))
    }

    fn header(key: &VapidKey, token: &str) -> String {
        format!("vapid t={token}, k={}", key.public_key_base64())
    }

    #[test]
    fn accepts_every_header_form() {
        let key = VapidKey::generate().unwrap();
        let token = jwt::sign(
            &key,
            &Claims { aud: AUD.into(), exp: NOW + 100, sub: Some("mailto:a@example.com".into()) },
        );
        let ok = verify(&header(&key, &token), None, AUD, NOW).unwrap();
        assert_eq!((ok.public_key, ok.claims.exp), (*key.public_key(), NOW + 100));
        let crypto_key = format!("dh=BBBB;p256ecdsa={}", key.public_key_base64());
        for scheme in ["WebPush", "webpush", "Bearer", "bearer", "BEARER"] {
            let ok = verify(&format!("{scheme} {token}"), Some(&crypto_key), AUD, NOW)
                .unwrap_or_else(|e| panic!("{scheme}: {e}"));
            assert_eq!(ok.public_key, *key.public_key(), "{scheme}");
        }
        assert!(
            verify(&format!("VAPID k={}, t={token}", key.public_key_base64()), None, &format!("{AUD}/"), NOW)
                .is_ok()
        );
    }

    #[test]
    fn credentials_are_the_token_and_key_whatever_else_the_headers_carry() {
        let expected = Ok(Credentials { token: "a.b.c", key: "KEY" });
        assert_eq!(Credentials::parse("vapid t=a.b.c, k=KEY", Some("dh=one")), expected);
        for crypto_key in ["dh=one;p256ecdsa=KEY", "dh=two, p256ecdsa=\"KEY\"", "p256ecdsa=KEY"] {
            assert_eq!(Credentials::parse("Bearer a.b.c", Some(crypto_key)), expected, "{crypto_key}");
            assert_eq!(Credentials::parse(" WebPush  a.b.c ", Some(crypto_key)), expected, "{crypto_key}");
        }
    }

    #[test]
    fn refuses_every_kind_of_bad_credentials() {
        let key = VapidKey::generate().unwrap();
        let other = VapidKey::generate().unwrap();
        let good =
            |exp| signed(&key, serde_json::json!({"aud": AUD, "exp": exp, "sub": "mailto:a@example.com"}));
        let check = |token: &str| verify(&header(&key, token), None, AUD, NOW);

        assert_eq!(verify("Basic abc", None, AUD, NOW), Err(VerifyError::Scheme("Basic".into())));
        assert_eq!(verify("vapid k=abc", None, AUD, NOW), Err(VerifyError::MissingToken));
        assert_eq!(verify("WebPush ", None, AUD, NOW), Err(VerifyError::MissingToken));
        assert_eq!(verify("Bearer", None, AUD, NOW), Err(VerifyError::MissingToken));
        assert_eq!(
            verify(&format!("vapid t={}", good(NOW + 10)), None, AUD, NOW),
            Err(VerifyError::MissingKey)
        );
        for scheme in ["WebPush", "Bearer"] {
            let auth = format!("{scheme} {}", good(NOW + 10));
            assert_eq!(verify(&auth, Some("dh=abc"), AUD, NOW), Err(VerifyError::MissingKey), "{scheme}");
            assert_eq!(verify(&auth, None, AUD, NOW), Err(VerifyError::MissingKey), "{scheme}");
            let other_key = format!("p256ecdsa={}", other.public_key_base64());
            assert_eq!(verify(&auth, Some(&other_key), AUD, NOW), Err(VerifyError::Signature), "{scheme}");
        }
        assert_eq!(
            verify(&format!("vapid t={},k=AAAA", good(NOW + 10)), None, AUD, NOW),
            Err(VerifyError::BadKey)
        );
        assert!(matches!(check("abc"), Err(VerifyError::Malformed(_))));
        assert!(matches!(check("a.b.c.d"), Err(VerifyError::Malformed(_))));
        assert!(matches!(check("!!.e30.AAAA"), Err(VerifyError::Malformed(_))));
        let none_alg = format!("{}.e30.", b64::encode(br#"{"alg":"none"}"#));
        assert_eq!(check(&none_alg), Err(VerifyError::Algorithm("none".into())));
        assert_eq!(
            verify(&format!("vapid t={},k={}", good(NOW + 10), other.public_key_base64()), None, AUD, NOW),
            Err(VerifyError::Signature)
        );
        let mut tampered = good(NOW + 10);
        tampered.replace_range(40..41, if &tampered[40..41] == "A" { "B" } else { "A" });
        assert_eq!(check(&tampered), Err(VerifyError::Signature));
        assert_eq!(check(&good(NOW)), Err(VerifyError::Expired { exp: NOW, now: NOW }));
        let far = NOW + MAX_TOKEN_LIFETIME + CLOCK_SKEW + 1;
        assert_eq!(check(&good(far)), Err(VerifyError::TooFarAhead { exp: far, now: NOW }));
        assert!(check(&good(NOW + MAX_TOKEN_LIFETIME)).is_ok());
        let wrong_aud = signed(&key, serde_json::json!({"aud": "https://evil.example", "exp": NOW + 10}));
        assert!(matches!(check(&wrong_aud), Err(VerifyError::Audience { .. })));
        let no_exp = signed(&key, serde_json::json!({"aud": AUD}));
        assert_eq!(check(&no_exp), Err(VerifyError::Claims("exp is missing")));
        let text_exp = signed(&key, serde_json::json!({"aud": AUD, "exp": "soon"}));
        assert!(matches!(check(&text_exp), Err(VerifyError::Claims(_))));
        let bad_sub = signed(&key, serde_json::json!({"aud": AUD, "exp": NOW + 10, "sub": "me@example.com"}));
        assert_eq!(check(&bad_sub), Err(VerifyError::Subject));
        let no_sub = signed(&key, serde_json::json!({"aud": AUD, "exp": NOW as f64 + 10.5}));
        assert_eq!(check(&no_sub).unwrap().claims.sub, None);
    }
}
