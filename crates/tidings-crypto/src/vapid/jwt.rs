//! The VAPID JWT: claims, signing, and the rules for `sub`.

use super::key::VapidKey;
use crate::b64;
use serde::{Deserialize, Serialize};

/// The fixed JOSE header, pre-encoded: every VAPID token uses ES256.
const HEADER_B64: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9"; // {"typ":"JWT","alg":"ES256"}

/// The claims of a VAPID token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The origin of the push service (`scheme://host[:port]`), which it checks.
    pub aud: String,
    /// Expiry, in seconds since the Unix epoch; at most 24 hours ahead.
    pub exp: u64,
    /// A contact for the push service's operator: `mailto:` or `https:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

/// Signs `claims` into a compact JWT (`header.claims.signature`).
pub fn sign(key: &VapidKey, claims: &Claims) -> String {
    let claims = serde_json::to_vec(claims).expect("claims serialize");
    let mut token = String::with_capacity(HEADER_B64.len() + claims.len() * 4 / 3 + 92);
    token.push_str(HEADER_B64);
    token.push('.');
    token.push_str(&b64::encode(&claims));
    let signature = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&b64::encode(&signature));
    token
}

/// Why a `sub` claim would be refused by a strict push service (Apple's is the strictest).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// Neither `mailto:` nor `https:`.
    #[error("the VAPID subject must be a mailto: address or an https:// URL, not {0:?}")]
    Scheme(String),
    /// A `mailto:` without a real address.
    #[error("the VAPID subject {0:?} is not a mailto: address of the form mailto:name@example.com")]
    Address(String),
    /// A local host name that Apple refuses.
    #[error(
        "the VAPID subject {0:?} names a local host; push services (Apple's first) refuse it: use a public address"
    )]
    LocalHost(String),
}

/// Checks `sub` as strictly as the strictest push service does, so that a sender finds out
/// before sending rather than from a `403 BadJwtToken`.
pub fn validate_subject(sub: &str) -> Result<(), SubjectError> {
    let host = if let Some(address) = sub.strip_prefix("mailto:") {
        match address.rsplit_once('@') {
            Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !address.contains(char::is_whitespace) =>
            {
                domain
            }
            _ => return Err(SubjectError::Address(sub.into())),
        }
    } else if let Some(rest) = sub.strip_prefix("https://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        if host.is_empty() {
            return Err(SubjectError::Scheme(sub.into()));
        }
        host
    } else {
        return Err(SubjectError::Scheme(sub.into()));
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let local = host == "localhost"
        || host.ends_with(".localhost")
        || host.ends_with(".local")
        || host.ends_with(".internal")
        || host.parse::<std::net::IpAddr>().is_ok()
        || !host.contains('.');
    if local {
        return Err(SubjectError::LocalHost(sub.into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_constant_is_what_it_says() {
        assert_eq!(b64::decode(HEADER_B64).unwrap(), br#"{"typ":"JWT","alg":"ES256"}"#);
    }

    #[test]
    fn subjects() {
        for ok in ["mailto:ops@example.com", "https://example.com", "https://push.example.com:8443/contact"] {
            assert_eq!(validate_subject(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ops@example.com",
            "http://example.com",
            "mailto:",
            "mailto:ops",
            "mailto:@example.com",
            "https://",
        ] {
            assert!(
                matches!(validate_subject(bad), Err(SubjectError::Scheme(_) | SubjectError::Address(_))),
                "{bad}"
            );
        }
        for local in [
            "mailto:me@localhost",
            "mailto:me@box.local",
            "https://localhost:8080",
            "https://127.0.0.1",
            "mailto:root@intranet",
        ] {
            assert!(matches!(validate_subject(local), Err(SubjectError::LocalHost(_))), "{local}");
        }
    }
}
