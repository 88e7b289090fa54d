//! The decoder never panics on arbitrary bytes, fed whole or in arbitrary pieces, and
//! decodes what the encoder wrote however it is split.

use proptest::prelude::*;
use tidings_websocket::{Decoder, Opcode, Role, encode};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600), split in 0usize..600, server in any::<bool>()) {
        let role = if server { Role::Server } else { Role::Client };
        let mut decoder = Decoder::new(role, 256);
        let split = split.min(bytes.len());
        let (mut a, mut b) = (bytes[..split].to_vec(), bytes[split..].to_vec());
        if decoder.feed(&mut a, |_| {}).is_ok() {
            let _ = decoder.feed(&mut b, |_| {});
        }
    }

    #[test]
    fn decodes_encoded_messages_however_split(messages in prop::collection::vec(".{0,300}", 1..5), cuts in prop::collection::vec(0usize..2000, 0..6), mask in any::<[u8; 4]>()) {
        let mut wire = Vec::new();
        for m in &messages {
            encode(Opcode::Text, m.as_bytes(), Some(mask), &mut wire);
        }
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(wire.len())).collect();
        cuts.push(0);
        cuts.push(wire.len());
        cuts.sort();
        let mut decoder = Decoder::new(Role::Server, 4096);
        let mut got = Vec::new();
        for pair in cuts.windows(2) {
            let mut piece = wire[pair[0]..pair[1]].to_vec();
            decoder.feed(&mut piece, |e| if let tidings_websocket::Event::Text(t) = e { got.push(t.to_owned()) }).unwrap();
        }
        prop_assert_eq!(got, messages);
        prop_assert_eq!(decoder.buffered(), 0);
    }
}
