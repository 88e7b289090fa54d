//! Base64 as Web Push uses it.
//!
//! Every key and body on the wire is base64url, but senders and browsers disagree on padding
//! (Firefox pads `register.key`, `PushSubscription.toJSON()` does not) and a few older
//! libraries emit the standard alphabet. We always *write* unpadded base64url and *read* all
//! four variants, so keys copied between tools just work.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// Encodes bytes as unpadded base64url, the form every Web Push party accepts.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url or standard base64, with or without `=` padding.
///
/// Surrounding whitespace is ignored because keys are often pasted from terminals and files.
pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let text = text.trim();
    let padded = text.ends_with('=');
    let standard = text.contains(['+', '/']);
    let engine = match (standard, padded) {
        (false, false) => &URL_SAFE_NO_PAD,
        (false, true) => &URL_SAFE,
        (true, false) => &STANDARD_NO_PAD,
        (true, true) => &STANDARD,
    };
    engine.decode(text)
}

/// Decodes into a fixed-size array, failing when the decoded length differs.
pub fn decode_array<const N: usize>(text: &str) -> Result<[u8; N], LengthError> {
    let bytes = decode(text).map_err(|_| LengthError { expected: N, actual: None })?;
    let actual = bytes.len();
    bytes.try_into().map_err(|_| LengthError { expected: N, actual: Some(actual) })
}

/// A base64 value that did not decode to the expected number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} bytes of base64url, {}", match .actual {
    Some(n) => format!("got {n} bytes"),
    None => "got text that is not base64".to_string(),
})]
pub struct LengthError {
    /// The length the caller asked for.
    pub expected: usize,
    /// The decoded length, or `None` when the text was not base64 at all.
    pub actual: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_variant_of_the_same_bytes() {
        let bytes = [0xfb, 0xff, 0xfe, 0x01];
        for text in ["-__-AQ", "-__-AQ==", "+//+AQ", "+//+AQ==", " -__-AQ\n"] {
            assert_eq!(decode(text).unwrap(), bytes, "{text:?}");
        }
        assert_eq!(encode(&bytes), "-__-AQ");
    }

    #[test]
    fn fixed_length_decoding_reports_the_length_it_saw() {
        assert_eq!(decode_array::<2>("AAE").unwrap(), [0, 1]);
        let err = decode_array::<16>("AAE").unwrap_err();
        assert_eq!(err.actual, Some(2));
        assert_eq!(err.to_string(), "expected 16 bytes of base64url, got 2 bytes");
        assert_eq!(decode_array::<2>("*!").unwrap_err().actual, None);
    }
}
