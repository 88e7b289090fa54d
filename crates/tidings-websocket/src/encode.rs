//! Outgoing frames.

use crate::Opcode;
use crate::decode::apply_mask;

/// Appends one final frame carrying `payload` to `out`; `mask` is required for frames a
/// client sends and must be absent for a server's.
pub fn encode(opcode: Opcode, payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    encode_frame(opcode, true, payload, mask, out);
}

pub(crate) fn encode_frame(
    opcode: Opcode,
    fin: bool,
    payload: &[u8],
    mask: Option<[u8; 4]>,
    out: &mut Vec<u8>,
) {
    out.reserve(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | opcode as u8);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let start = match mask {
        Some(mask) => {
            out.extend_from_slice(&mask);
            out.len()
        }
        None => out.len(),
    };
    out.extend_from_slice(payload);
    if let Some(mask) = mask {
        apply_mask(&mut out[start..], mask);
    }
}

/// Appends a close frame with `code` and a reason (cut to fit a control frame).
pub fn encode_close(code: u16, reason: &str, mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    let mut payload = code.to_be_bytes().to_vec();
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(Opcode::Close, &payload, mask, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_forms() {
        for (len, header) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let mut out = Vec::new();
            encode(Opcode::Binary, &vec![7; len], None, &mut out);
            assert_eq!(out.len(), header + len, "{len}");
        }
        let mut out = Vec::new();
        encode(Opcode::Text, b"abc", Some([1, 1, 1, 1]), &mut out);
        assert_eq!(out, [0x81, 0x83, 1, 1, 1, 1, b'a' ^ 1, b'b' ^ 1, b'c' ^ 1]);
        let mut out = Vec::new();
        encode_close(4774, &"\u{e9}".repeat(100), None, &mut out);
        assert!(out.len() <= 127 && std::str::from_utf8(&out[4..]).is_ok());
    }
}
