//! The AFL++ driver of [`tidings_fuzz::hub_json`] (built by `cargo afl build --features afl`).

fn main() {
    afl::fuzz!(|data: &[u8]| tidings_fuzz::hub_json(data));
}
