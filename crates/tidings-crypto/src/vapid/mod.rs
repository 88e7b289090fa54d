//! VAPID (RFC 8292): how an application server proves who it is to a push service.
//!
//! * [`key`]: the ES256 key pair, in the forms people carry it around (raw base64url as
//!   `web-push generate-vapid-keys` prints it, PEM, PKCS#8).
//! * [`jwt`]: the claims and the compact JWT with its raw `r||s` signature; the `sub` rules.
//! * [`signer`]: signs once per audience and reuses the token until shortly before it
//!   expires, which is what makes sending cheap.
//! * [`verify`]: the push service's side: parse both header forms and enforce the rules.

pub mod jwt;
pub mod key;
pub mod signer;
pub mod verify;

pub use jwt::{Claims, SubjectError, validate_subject};
pub use key::{KeyError, KeyFile, VapidKey};
pub use signer::{Token, VapidSigner};
pub use verify::{Credentials, Verified, VerifyError, verify};
