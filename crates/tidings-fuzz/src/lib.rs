//! Fuzz targets for every Tidings parser that sees untrusted bytes.
//!
//! Each target is a plain function of the fuzzer's bytes that panics only when a property
//! fails: a decoder that panics on some input (a project rule is "no panic on any input"),
//! or one whose answer breaks what it promises (a round trip through its encoder that does
//! not come back, a chunked read that differs from a whole one, an accepted value outside
//! the rules). Keeping them plain functions lets two drivers share them:
//!
//! * `cargo afl` builds one binary per target (`src/bin/`, behind the `afl` feature) and
//!   searches for new inputs with coverage feedback; `scripts/fuzz` runs it.
//! * `tests/replay.rs` feeds every committed corpus file (`fuzz/corpus/<target>/`) through
//!   the same function in the normal test command, so a fixed bug stays fixed.
//!
//! [`TARGETS`] names them all; the binaries and the corpus folders use the same names.

#![forbid(unsafe_code)]

mod agent;
mod ece;
mod headers;
mod hub;
mod session;
mod store;
mod vapid;
mod websocket;

pub use agent::agent_state;
pub use ece::{ece_aes128gcm, ece_aesgcm};
pub use headers::push_headers;
pub use hub::{hub_json, hub_user_token};
pub use session::push_session;
pub use store::store_records;
pub use vapid::vapid_auth;
pub use websocket::websocket_frames;

/// A fuzz target: panics only when a property fails.
pub type Target = fn(&[u8]);

/// Every target by name (the binary's and the corpus folder's), for the replay test.
pub const TARGETS: &[(&str, Target)] = &[
    ("websocket_frames", websocket_frames),
    ("push_session", push_session),
    ("ece_aes128gcm", ece_aes128gcm),
    ("ece_aesgcm", ece_aesgcm),
    ("vapid_auth", vapid_auth),
    ("push_headers", push_headers),
    ("hub_json", hub_json),
    ("hub_user_token", hub_user_token),
    ("agent_state", agent_state),
    ("store_records", store_records),
];

/// A fixed "now" for targets that check times (seconds since the epoch): the fuzzer
/// chooses times relative to it, so a found input replays the same way any day.
pub(crate) const NOW: u64 = 1_750_000_000;

/// Splits `data` at the first `\n`: (before, after); all of it and nothing when there is none.
pub(crate) fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}
