//! The AFL++ driver of [`tidings_fuzz::push_session`] (built by `cargo afl build --features afl`).

fn main() {
    afl::fuzz!(|data: &[u8]| tidings_fuzz::push_session(data));
}
