//! Incoming frames: parsing, unmasking, fragment assembly and the protocol's rules.

use crate::{Opcode, Role, close_code};

/// Something the peer sent, borrowed from the bytes fed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text message (reassembled if it was fragmented).
    Text(&'a str),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A ping; answer with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The peer closes, with its code and reason if it gave them.
    Close(Option<u16>, &'a str),
}

/// Why the connection must be closed; [`Error::close_code`] is what to tell the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A frame breaks RFC 6455.
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    /// A text message that is not UTF-8.
    #[error("a text message is not UTF-8")]
    Utf8,
    /// A message larger than the limit.
    #[error("a message of {0} bytes exceeds the limit")]
    TooBig(u64),
}

impl Error {
    /// The close code that reports this error to the peer.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::Protocol(_) => close_code::PROTOCOL_ERROR,
            Self::Utf8 => close_code::INVALID_DATA,
            Self::TooBig(_) => close_code::TOO_BIG,
        }
    }
}

/// A frame header, parsed.
struct Header {
    fin: bool,
    opcode: Opcode,
    mask: Option<[u8; 4]>,
    header_len: usize,
    payload_len: u64,
}

/// Parses a frame header at the start of `buf`; `Ok(None)` when more bytes are needed.
fn parse_header(buf: &[u8], role: Role) -> Result<Option<Header>, Error> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    if b0 & 0x70 != 0 {
        return Err(Error::Protocol("reserved bits set without a negotiated extension"));
    }
    let opcode = Opcode::from_u8(b0 & 0x0f).ok_or(Error::Protocol("unknown opcode"))?;
    let fin = b0 & 0x80 != 0;
    let masked = b1 & 0x80 != 0;
    match (role, masked) {
        (Role::Server, false) => return Err(Error::Protocol("client frames must be masked")),
        (Role::Client, true) => return Err(Error::Protocol("server frames must not be masked")),
        _ => {}
    }
    let (payload_len, mut header_len) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            // RFC 6455 section 5.2: the most significant bit of a 64-bit length is 0.
            Some(b) if b[0] & 0x80 != 0 => return Err(Error::Protocol("a frame length over 2^63")),
            Some(b) => (u64::from_be_bytes(b.try_into().expect("8 bytes")), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if opcode.is_control() && (!fin || payload_len > 125) {
        return Err(Error::Protocol("control frames must be final and at most 125 bytes"));
    }
    let mask = if masked {
        let Some(m) = buf.get(header_len..header_len + 4) else { return Ok(None) };
        header_len += 4;
        Some(m.try_into().expect("4 bytes"))
    } else {
        None
    };
    Ok(Some(Header { fin, opcode, mask, header_len, payload_len }))
}

/// XORs `mask` over `data` (RFC 6455 section 5.3); masking and unmasking are the same.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// Reassembles messages from frames fed in pieces, holding memory only while a frame or a
/// fragmented message is incomplete.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    max_message: usize,
    /// Bytes of an incomplete frame carried over between feeds; empty (unallocated) otherwise.
    partial: Vec<u8>,
    /// The opcode and payload so far of a fragmented message.
    fragments: Option<(Opcode, Vec<u8>)>,
    closed: bool,
}

impl Decoder {
    /// A decoder for one end of a connection that refuses messages over `max_message` bytes.
    pub fn new(role: Role, max_message: usize) -> Self {
        Self { role, max_message, partial: Vec::new(), fragments: None, closed: false }
    }

    /// Bytes held for incomplete frames and messages (for memory accounting).
    pub fn buffered(&self) -> usize {
        self.partial.capacity() + self.fragments.as_ref().map_or(0, |(_, f)| f.capacity())
    }

    /// Feeds bytes read from the connection; `on_event` sees every complete message and
    /// control frame, in order. After an error, or after a close frame, nothing more is
    /// decoded.
    ///
    /// `data` is unmasked in place, so it must be a buffer the caller can spare.
    pub fn feed(&mut self, data: &mut [u8], mut on_event: impl FnMut(Event<'_>)) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        if self.partial.is_empty() {
            let used = self.decode_frames(data, &mut on_event)?;
            if used < data.len() {
                self.partial.extend_from_slice(&data[used..]);
            }
        } else {
            let mut joined = std::mem::take(&mut self.partial);
            joined.extend_from_slice(data);
            let used = self.decode_frames(&mut joined, &mut on_event)?;
            joined.drain(..used);
            if !joined.is_empty() {
                self.partial = joined;
            }
        }
        if self.closed {
            // Nothing after a close frame is decoded, so nothing after it is kept either (nor
            // taken for an oversized frame, which turned the peer's close into an error).
            self.partial = Vec::new();
            return Ok(());
        }
        // Refuse to buffer a frame that could never be accepted.
        if self.partial.len() > self.max_message + 14 {
            return Err(Error::TooBig(self.partial.len() as u64));
        }
        Ok(())
    }

    /// Decodes every complete frame at the start of `buf`; returns the bytes used.
    fn decode_frames(
        &mut self,
        buf: &mut [u8],
        on_event: &mut impl FnMut(Event<'_>),
    ) -> Result<usize, Error> {
        let mut used = 0;
        while !self.closed {
            let rest = &mut buf[used..];
            let Some(header) = parse_header(rest, self.role)? else { break };
            let fragmented_so_far = self.fragments.as_ref().map_or(0, |(_, f)| f.len() as u64);
            // A 64-bit length plus the fragments so far wrapped around to a small total (a panic
            // in debug builds, the limit dodged in release) before lengths over 2^63 were
            // refused above; saturating keeps that impossible whatever the limit.
            let total = header.payload_len.saturating_add(fragmented_so_far);
            if total > self.max_message as u64 {
                return Err(Error::TooBig(total));
            }
            let len = header.payload_len as usize;
            let Some(frame) = rest.get_mut(header.header_len..header.header_len + len) else { break };
            if let Some(mask) = header.mask {
                apply_mask(frame, mask);
            }
            self.frame(header.fin, header.opcode, frame, on_event)?;
            used += header.header_len + len;
        }
        Ok(used)
    }

    fn frame(
        &mut self,
        fin: bool,
        opcode: Opcode,
        payload: &[u8],
        on_event: &mut impl FnMut(Event<'_>),
    ) -> Result<(), Error> {
        match opcode {
            Opcode::Ping => on_event(Event::Ping(payload)),
            Opcode::Pong => on_event(Event::Pong(payload)),
            Opcode::Close => {
                self.closed = true;
                let (code, reason) = match payload {
                    [] => (None, ""),
                    [_] => return Err(Error::Protocol("a close frame with a one-byte payload")),
                    [hi, lo, reason @ ..] => {
                        let code = u16::from_be_bytes([*hi, *lo]);
                        let valid = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
                        if !valid {
                            return Err(Error::Protocol("an invalid close code"));
                        }
                        (Some(code), std::str::from_utf8(reason).map_err(|_| Error::Utf8)?)
                    }
                };
                on_event(Event::Close(code, reason));
            }
            Opcode::Text | Opcode::Binary => {
                if self.fragments.is_some() {
                    return Err(Error::Protocol("a new message began inside a fragmented one"));
                }
                if fin {
                    deliver(opcode, payload, on_event)?;
                } else {
                    self.fragments = Some((opcode, payload.to_vec()));
                }
            }
            Opcode::Continuation => {
                let Some((first, so_far)) = self.fragments.as_mut() else {
                    return Err(Error::Protocol("a continuation frame without a message to continue"));
                };
                so_far.extend_from_slice(payload);
                if fin {
                    let (first, message) = self.fragments.take().expect("checked above");
                    deliver(first, &message, on_event)?;
                } else {
                    let _ = first;
                }
            }
        }
        Ok(())
    }
}

fn deliver(opcode: Opcode, payload: &[u8], on_event: &mut impl FnMut(Event<'_>)) -> Result<(), Error> {
    if opcode == Opcode::Text {
        on_event(Event::Text(std::str::from_utf8(payload).map_err(|_| Error::Utf8)?));
    } else {
        on_event(Event::Binary(payload));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::encode;

    fn client_frame(opcode: Opcode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::encode::encode_frame(opcode, fin, payload, Some([1, 2, 3, 4]), &mut out);
        out
    }

    fn events(decoder: &mut Decoder, bytes: &[u8]) -> Result<Vec<String>, Error> {
        let mut seen = Vec::new();
        let mut buf = bytes.to_vec();
        decoder.feed(&mut buf, |e| seen.push(format!("{e:?}")))?;
        Ok(seen)
    }

    #[test]
    fn whole_split_and_fragmented_messages() {
        let mut d = Decoder::new(Role::Server, 1024);
        let mut frame = Vec::new();
        encode(Opcode::Text, b"{\"messageType\":\"hello\"}", Some([9, 8, 7, 6]), &mut frame);
        assert_eq!(events(&mut d, &frame).unwrap(), [r#"Text("{\"messageType\":\"hello\"}")"#]);
        // One byte at a time: nothing until the last byte, and nothing buffered after.
        for (i, byte) in frame.iter().enumerate() {
            let got = events(&mut d, &[*byte]).unwrap();
            assert_eq!(got.len(), usize::from(i == frame.len() - 1));
        }
        assert_eq!(d.buffered(), 0);
        // A message in three fragments with a ping in between.
        let mut bytes = client_frame(Opcode::Text, false, b"ab");
        bytes.extend(client_frame(Opcode::Ping, true, b"p"));
        bytes.extend(client_frame(Opcode::Continuation, false, b"cd"));
        bytes.extend(client_frame(Opcode::Continuation, true, b"e"));
        assert_eq!(events(&mut d, &bytes).unwrap(), [r#"Ping([112])"#, r#"Text("abcde")"#]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn protocol_rules() {
        let server = || Decoder::new(Role::Server, 100);
        let mut unmasked = Vec::new();
        encode(Opcode::Text, b"x", None, &mut unmasked);
        assert_eq!(events(&mut server(), &unmasked).unwrap_err().close_code(), 1002);
        assert!(matches!(events(&mut server(), &[0xc1, 0x80, 0, 0, 0, 0]), Err(Error::Protocol(_))));
        assert!(matches!(events(&mut server(), &[0x83, 0x80, 0, 0, 0, 0]), Err(Error::Protocol(_))));
        assert!(matches!(
            events(&mut server(), &client_frame(Opcode::Ping, false, b"")),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            events(&mut server(), &client_frame(Opcode::Ping, true, &[0; 126])),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            events(&mut server(), &client_frame(Opcode::Continuation, true, b"x")),
            Err(Error::Protocol(_))
        ));
        let mut two_starts = client_frame(Opcode::Text, false, b"a");
        two_starts.extend(client_frame(Opcode::Text, true, b"b"));
        assert!(matches!(events(&mut server(), &two_starts), Err(Error::Protocol(_))));
        assert_eq!(
            events(&mut server(), &client_frame(Opcode::Text, true, &[0xff, 0xfe])).unwrap_err(),
            Error::Utf8
        );
        assert!(matches!(
            events(&mut server(), &client_frame(Opcode::Text, true, &[b'a'; 101])),
            Err(Error::TooBig(101))
        ));
        // A header announcing a huge frame is refused before its payload arrives.
        let huge = [0x81, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4];
        assert!(matches!(events(&mut server(), &huge), Err(Error::TooBig(_))));
        let mut fragments = client_frame(Opcode::Text, false, &[b'a'; 60]);
        fragments.extend(client_frame(Opcode::Continuation, true, &[b'a'; 60]));
        assert!(matches!(events(&mut server(), &fragments), Err(Error::TooBig(120))));
        assert!(matches!(
            events(&mut server(), &client_frame(Opcode::Close, true, &[0x03, 0xed])),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            events(&mut server(), &client_frame(Opcode::Close, true, &[3])),
            Err(Error::Protocol(_))
        ));
    }

    /// Found writing the fuzz target (fuzz/corpus/websocket_frames/regression-length-overflow):
    /// a continuation announcing a length near 2^64 overflowed the size check.
    #[test]
    fn huge_lengths_are_refused_without_overflow() {
        let mut bytes = client_frame(Opcode::Text, false, b"a");
        bytes.extend([0x80, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert!(matches!(events(&mut Decoder::new(Role::Server, 100), &bytes), Err(Error::TooBig(_))));
        let mut bytes = client_frame(Opcode::Text, false, b"a");
        bytes.extend([0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert!(matches!(events(&mut Decoder::new(Role::Server, 100), &bytes), Err(Error::Protocol(_))));
    }

    #[test]
    fn close_ends_decoding() {
        let mut d = Decoder::new(Role::Server, 100);
        let mut bytes = client_frame(Opcode::Close, true, &[0x03, 0xe8, b'b', b'y', b'e']);
        bytes.extend(client_frame(Opcode::Text, true, b"after"));
        assert_eq!(events(&mut d, &bytes).unwrap(), [r#"Close(Some(1000), "bye")"#]);
        assert_eq!(events(&mut d, &client_frame(Opcode::Text, true, b"more")).unwrap(), Vec::<String>::new());
    }

    /// Found by fuzzing (fuzz/corpus/websocket_frames/regression-after-close-*): bytes after
    /// a close frame in the same read were kept, and past the size limit turned the close into
    /// a TooBig error; one byte at a time, the same bytes were ignored.
    #[test]
    fn bytes_after_close_in_the_same_read_are_dropped() {
        let mut d = Decoder::new(Role::Server, 16);
        let mut bytes = client_frame(Opcode::Close, true, &[0x03, 0xe8]);
        bytes.extend([0x81; 40]);
        assert_eq!(events(&mut d, &bytes).unwrap(), [r#"Close(Some(1000), "")"#]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn client_role_reads_unmasked_frames() {
        let mut d = Decoder::new(Role::Client, 100);
        let mut frame = Vec::new();
        encode(Opcode::Text, b"hi", None, &mut frame);
        assert_eq!(events(&mut d, &frame).unwrap(), [r#"Text("hi")"#]);
        assert!(matches!(events(&mut d, &client_frame(Opcode::Text, true, b"x")), Err(Error::Protocol(_))));
    }
}
