//! The AFL++ driver of [`tidings_fuzz::websocket_frames`] (built by `cargo afl build --features afl`).

fn main() {
    afl::fuzz!(|data: &[u8]| tidings_fuzz::websocket_frames(data));
}
