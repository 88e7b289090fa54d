//! The WebSocket frame decoder (`tidings_websocket::Decoder`), as the push service and the
//! agent run it on bytes from the network.

use tidings_websocket::{Decoder, Event, Opcode, Role, encode};

/// First byte: bit 0 picks the role (server: masked frames, as the push service reads;
/// client: unmasked, as the agent reads), the rest sets the message limit (16 to 8 KiB) and
/// the chunk size for the second read. The rest is the byte stream.
///
/// Properties: no panic; the same stream fed whole, in chunks and one byte at a time gives the
/// same events and the same outcome; every message decoded, encoded again, decodes to itself.
pub fn websocket_frames(data: &[u8]) {
    let Some((&control, stream)) = data.split_first() else { return };
    let role = if control & 1 == 0 { Role::Server } else { Role::Client };
    let max_message = 16usize << (control >> 1 & 0x09);
    let chunk = usize::from(control >> 4) + 1;
    let whole = decode(role, max_message, stream, stream.len().max(1));
    assert_eq!(whole, decode(role, max_message, stream, chunk), "chunks of {chunk} differ");
    assert_eq!(whole, decode(role, max_message, stream, 1), "bytes one at a time differ");
    for event in &whole.0 {
        let (opcode, payload) = match event {
            Owned::Text(t) => (Opcode::Text, t.as_bytes()),
            Owned::Binary(b) => (Opcode::Binary, &b[..]),
            _ => continue,
        };
        let mut frame = Vec::new();
        let mask = (role == Role::Server).then_some([1, 2, 3, 4]);
        encode(opcode, payload, mask, &mut frame);
        let again = decode(role, max_message, &frame, frame.len());
        assert_eq!(again, (vec![event.clone()], Ok(())), "a message does not round-trip");
    }
}

/// An [`Event`] that outlives the buffer it was borrowed from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

/// The events and the outcome of feeding `stream` in `chunk`-byte reads.
fn decode(
    role: Role,
    max_message: usize,
    stream: &[u8],
    chunk: usize,
) -> (Vec<Owned>, Result<(), tidings_websocket::Error>) {
    let mut decoder = Decoder::new(role, max_message);
    let mut events = Vec::new();
    for piece in stream.chunks(chunk) {
        let mut buf = piece.to_vec();
        let fed = decoder.feed(&mut buf, |event| {
            events.push(match event {
                Event::Text(t) => Owned::Text(t.to_owned()),
                Event::Binary(b) => Owned::Binary(b.to_vec()),
                Event::Ping(p) => Owned::Ping(p.to_vec()),
                Event::Pong(p) => Owned::Pong(p.to_vec()),
                Event::Close(code, reason) => Owned::Close(code, reason.to_owned()),
            })
        });
        if let Err(e) = fed {
            return (events, Err(e));
        }
    }
    (events, Ok(()))
}
