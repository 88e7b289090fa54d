//! The AFL++ driver of [`tidings_fuzz::store_records`] (built by `cargo afl build --features afl`).

fn main() {
    afl::fuzz!(|data: &[u8]| tidings_fuzz::store_records(data));
}
