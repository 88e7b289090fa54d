//! The cryptography of Web Push, as pure functions: no I/O, no clocks, no global state.
//!
//! * [`ece`]: the record layer of HTTP Encrypted Content-Encoding, both the RFC 8188
//!   `aes128gcm` scheme (a general decoder) and the legacy `aesgcm` draft scheme.
//! * [`webpush`]: the Web Push key schedules (RFC 8291 and its draft predecessor) that turn a
//!   subscription's `p256dh` and `auth` into record keys; sender and receiver sides.
//! * [`vapid`]: RFC 8292 application-server identification: keys, JWT signing with a
//!   per-audience cache, and the push service's verifier.
//! * [`b64`]: the base64url flavours that all of the above are written in.
//!
//! Everything random can be injected, so the RFC 8291 and RFC 8188 examples are reproduced
//! byte for byte by the tests; every decoder returns typed errors for any input.

pub mod b64;
pub mod ece;
pub mod params;
pub mod vapid;
pub mod webpush;
