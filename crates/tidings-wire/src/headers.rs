//! RFC 8030 request header values.

use std::fmt;
use std::str::FromStr;

/// The default `TTL` senders use when the user gives none: 28 days, as npm web-push.
pub const DEFAULT_TTL: u32 = 2_419_200;

/// Parses a `TTL` header: a non-negative integer number of seconds (RFC 8030 section 5.2).
/// Values beyond `u32` saturate, since every service caps TTL far below that anyway.
pub fn parse_ttl(value: &str) -> Option<u32> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(value.parse::<u64>().map_or(u32::MAX, |v| v.min(u64::from(u32::MAX)) as u32))
}

/// How soon a message should reach the user agent, which lets devices on battery defer
/// unimportant ones (RFC 8030 section 5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Urgency {
    /// On power and Wi-Fi.
    VeryLow,
    /// On either power or Wi-Fi.
    Low,
    /// On neither power nor Wi-Fi.
    #[default]
    Normal,
    /// Even on low battery.
    High,
}

impl Urgency {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VeryLow => "very-low",
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
        }
    }
}

/// An `Urgency` value that is not one of the four RFC 8030 names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("urgency must be one of very-low, low, normal, high")]
pub struct UrgencyError;

impl FromStr for Urgency {
    type Err = UrgencyError;

    /// Exactly one of the four tokens; a list (`low, high`) is invalid.
    fn from_str(value: &str) -> Result<Self, UrgencyError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "very-low" => Ok(Self::VeryLow),
            "low" => Ok(Self::Low),
            "normal" => Ok(Self::Normal),
            "high" => Ok(Self::High),
            _ => Err(UrgencyError),
        }
    }
}

impl fmt::Display for Urgency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `Topic`: 1 to 32 characters of the base64url alphabet. A new message with the same
/// topic replaces a pending one (RFC 8030 section 5.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic(String);

/// A `Topic` value outside the RFC 8030 rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a topic is 1 to 32 characters of A-Z a-z 0-9 - _ (got {0} characters{1})")]
pub struct TopicError(usize, &'static str);

impl Topic {
    /// The longest topic RFC 8030 allows.
    pub const MAX_LEN: usize = 32;

    /// The header value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Topic {
    type Err = TopicError;

    fn from_str(value: &str) -> Result<Self, TopicError> {
        let len = value.chars().count();
        if !value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(TopicError(len, ", some outside that alphabet"));
        }
        if len == 0 || len > Self::MAX_LEN {
            return Err(TopicError(len, ""));
        }
        Ok(Self(value.to_owned()))
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl() {
        assert_eq!(parse_ttl("0"), Some(0));
        assert_eq!(parse_ttl(" 60 "), Some(60));
        assert_eq!(parse_ttl("99999999999999999999999"), Some(u32::MAX));
        for bad in ["", "-1", "1.5", "abc", "6 0", "+5"] {
            assert_eq!(parse_ttl(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn urgency() {
        assert_eq!("very-low".parse(), Ok(Urgency::VeryLow));
        assert_eq!("HIGH".parse(), Ok(Urgency::High));
        assert_eq!("low, high".parse::<Urgency>(), Err(UrgencyError));
        assert_eq!("urgent".parse::<Urgency>(), Err(UrgencyError));
        assert_eq!(Urgency::default().to_string(), "normal");
    }

    #[test]
    fn topic() {
        assert!("a".parse::<Topic>().is_ok());
        assert!("A".repeat(32).parse::<Topic>().is_ok());
        assert_eq!(
            "A".repeat(33).parse::<Topic>().unwrap_err().to_string(),
            "a topic is 1 to 32 characters of A-Z a-z 0-9 - _ (got 33 characters)"
        );
        assert!("".parse::<Topic>().is_err());
        assert!("has space".parse::<Topic>().is_err());
        assert!("a=".parse::<Topic>().is_err());
    }
}
