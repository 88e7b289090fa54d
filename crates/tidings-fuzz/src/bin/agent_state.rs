//! The AFL++ driver of [`tidings_fuzz::agent_state`] (built by `cargo afl build --features afl`).

fn main() {
    afl::fuzz!(|data: &[u8]| tidings_fuzz::agent_state(data));
}
