//! User tokens: how the app tells the hub which of its users a page belongs to.
//!
//! The app's backend, which knows who is logged in, puts a short-lived token in the page; the
//! page sends it with the subscription. It is a JWT signed with HMAC-SHA256 (`HS256`) with
//! the hub's user-token secret (`tidings hub keys --user-token-secret` prints it), so any
//! JWT library can make one:
//!
//! ```text
//! header  {"alg": "HS256", "typ": "JWT"}
//! claims  {"sub": "<the app's user id>", "exp": <unix seconds, at most 24 h ahead>,
//!          "jti": "<a unique id>"}
//! ```
//!
//! A token is accepted once: the hub remembers each `jti` until the token expires, so a
//! token copied out of a page cannot be replayed to attach another browser to that user.

use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};
use tidings_crypto::b64;

/// The longest lifetime a token may claim.
pub const MAX_LIFETIME: u64 = 24 * 3600;
/// The longest `sub` and `jti` accepted.
pub const MAX_CLAIM_LEN: usize = 256;

/// A token's claims, once verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The app's user id.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// The token's unique id (single use).
    pub jti: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("user token: {0}")]
pub struct Invalid(pub &'static str);

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// Checks a token's signature and claims at time `now`.
pub fn verify(secret: &[u8], token: &str, now: u64) -> Result<Claims, Invalid> {
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Invalid("not a JWT (three base64url parts separated by dots)"));
    };
    let header_text = header;
    let header: Header = b64::decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or(Invalid("the header is not base64url JSON"))?;
    if header.alg != "HS256" {
        return Err(Invalid("the algorithm must be HS256"));
    }
    let signature = b64::decode(signature).map_err(|_| Invalid("the signature is not base64url"))?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let signed = &token[..header_text.len() + 1 + claims.len()];
    hmac::verify(&key, signed.as_bytes(), &signature).map_err(|_| Invalid("the signature does not match"))?;
    let claims: Claims = b64::decode(claims)
        .ok()
        .and_then(|c| serde_json::from_slice(&c).ok())
        .ok_or(Invalid("the claims must be JSON with sub, exp and jti"))?;
    if claims.exp <= now {
        return Err(Invalid("expired"));
    }
    if claims.exp > now + MAX_LIFETIME {
        return Err(Invalid("exp is more than 24 hours ahead"));
    }
    if claims.sub.is_empty() || claims.sub.len() > MAX_CLAIM_LEN || claims.sub.contains('\0') {
        return Err(Invalid("sub must be 1 to 256 characters"));
    }
    if claims.jti.is_empty() || claims.jti.len() > MAX_CLAIM_LEN {
        return Err(Invalid("jti must be 1 to 256 characters"));
    }
    Ok(claims)
}

/// Makes a token (for `tidings hub user-token` and tests; an app uses its own JWT library).
pub fn sign(secret: &[u8], claims: &Claims) -> String {
    let header = b64::encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64::encode(&serde_json::to_vec(claims).expect("claims serialize"));
    let signed = format!("{header}.{body}");
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let signature = b64::encode(hmac::sign(&key, signed.as_bytes()).as_ref());
    format!("{signed}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims { sub: "alice".into(), exp, jti: "j1".into() }
    }

    #[test]
    fn accepts_what_it_signs_until_it_expires() {
        let token = sign(b"s3cret", &claims(2000));
        assert_eq!(verify(b"s3cret", &token, 1000), Ok(claims(2000)));
        assert_eq!(verify(b"s3cret", &token, 2000), Err(Invalid("expired")));
        assert!(verify(b"other", &token, 1000).is_err());
        let far = sign(b"s3cret", &claims(1000 + MAX_LIFETIME + 1));
        assert!(verify(b"s3cret", &far, 1000).is_err());
    }

    #[test]
    fn refuses_forgeries() {
        let token = sign(b"s3cret", &claims(2000));
        let (signed, _) = token.rsplit_once('.').unwrap();
        // alg "none", no signature.
        let none = format!("{}.{}.", b64::encode(br#"{"alg":"none"}"#), signed.split('.').nth(1).unwrap());
        assert!(verify(b"s3cret", &none, 1000).is_err());
        // Claims changed after signing.
        let bob = b64::encode(br#"{"sub":"bob","exp":2000,"jti":"j1"}"#);
        let swapped =
            format!("{}.{bob}.{}", signed.split('.').next().unwrap(), token.rsplit('.').next().unwrap());
        assert_eq!(verify(b"s3cret", &swapped, 1000), Err(Invalid("the signature does not match")));
        for junk in ["", "a.b", "a.b.c.d", "!!.!!.!!", "e30.e30.e30"] {
            assert!(verify(b"s3cret", junk, 1000).is_err(), "{junk}");
        }
    }
}
