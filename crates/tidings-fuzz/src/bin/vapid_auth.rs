//! The AFL++ driver of [`tidings_fuzz::vapid_auth`] (built by `cargo afl build --features afl`).

fn main() {
    afl::fuzz!(|data: &[u8]| tidings_fuzz::vapid_auth(data));
}
