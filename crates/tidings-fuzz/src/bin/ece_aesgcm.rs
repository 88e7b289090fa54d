//! The AFL++ driver of [`tidings_fuzz::ece_aesgcm`] (built by `cargo afl build --features afl`).

fn main() {
    afl::fuzz!(|data: &[u8]| tidings_fuzz::ece_aesgcm(data));
}
