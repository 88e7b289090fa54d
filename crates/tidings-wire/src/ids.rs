//! Identifiers of the Mozilla push protocol: the user agent id and channel ids.

use std::fmt;
use std::str::FromStr;

/// A user agent id: 16 random bytes, written as 32 lower-case hex digits.
///
/// Firefox treats the uaid as an opaque string of 1 to 128 characters; we only ever issue
/// this form, and anything else in a `hello` is treated as unknown (a new uaid is issued).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uaid(pub [u8; 16]);

/// A channel id: the UUID Firefox picks for each subscription, written as lower-case
/// dashed hex (`28e6a170-10c3-4bfb-9cac-991e204ffc85`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(pub [u8; 16]);

/// Text that is not an id of the expected form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed {0}")]
pub struct IdError(&'static str);

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Parses 32 hex digits, skipping dashes at the positions `dashes` names.
fn parse_hex(text: &str, dashes: &[usize], what: &'static str) -> Result<[u8; 16], IdError> {
    let bytes = text.as_bytes();
    if bytes.len() != 32 + dashes.len() {
        return Err(IdError(what));
    }
    let mut out = [0u8; 16];
    let mut digits = bytes.iter().enumerate().filter(|(i, _)| !dashes.contains(i)).map(|(_, b)| *b);
    for byte in &mut out {
        let (hi, lo) = (digits.next(), digits.next());
        *byte = match (hi.and_then(hex_digit), lo.and_then(hex_digit)) {
            (Some(hi), Some(lo)) => hi << 4 | lo,
            _ => return Err(IdError(what)),
        };
    }
    if dashes.iter().any(|&i| bytes[i] != b'-') {
        return Err(IdError(what));
    }
    Ok(out)
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

impl FromStr for Uaid {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, IdError> {
        parse_hex(text, &[], "uaid").map(Self)
    }
}

impl fmt::Display for Uaid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for Uaid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uaid({self})")
    }
}

const UUID_DASHES: [usize; 4] = [8, 13, 18, 23];

impl FromStr for ChannelId {
    type Err = IdError;
    /// Accepts dashed UUIDs in either case; they are written back in lower case.
    fn from_str(text: &str) -> Result<Self, IdError> {
        parse_hex(text, &UUID_DASHES, "channelID").map(Self)
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write_hex(f, &b[..4])?;
        f.write_str("-")?;
        write_hex(f, &b[4..6])?;
        f.write_str("-")?;
        write_hex(f, &b[6..8])?;
        f.write_str("-")?;
        write_hex(f, &b[8..10])?;
        f.write_str("-")?;
        write_hex(f, &b[10..])
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let text = "28e6a170-10c3-4bfb-9cac-991e204ffc85";
        let id: ChannelId = text.parse().unwrap();
        assert_eq!(id.to_string(), text);
        assert_eq!("28E6A170-10C3-4BFB-9CAC-991E204FFC85".parse::<ChannelId>().unwrap(), id);
        let uaid: Uaid = "00112233445566778899aabbccddeeff".parse().unwrap();
        assert_eq!(uaid.to_string(), "00112233445566778899aabbccddeeff");
    }

    #[test]
    fn rejects_near_misses() {
        for bad in [
            "",
            "28e6a170-10c3-4bfb-9cac-991e204ffc8",
            "28e6a170x10c3-4bfb-9cac-991e204ffc85",
            "28e6a17010c34bfb9cac991e204ffc85",
            "g8e6a170-10c3-4bfb-9cac-991e204ffc85",
            "28e6a170-10c3-4bfb-9cac-991e204ffc85\u{e9}",
        ] {
            assert!(bad.parse::<ChannelId>().is_err(), "{bad:?}");
        }
        for bad in ["", "0011", "00112233445566778899aabbccddeefg", "00112233-4455-6677-8899-aabbccddeeff"] {
            assert!(bad.parse::<Uaid>().is_err(), "{bad:?}");
        }
    }
}
