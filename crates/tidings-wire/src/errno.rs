//! The push service's error numbers, shared with autopush so that senders that already
//! understand Mozilla's answers understand ours. Documented in `docs/errors.md`.

use serde::Serialize;

/// An error the push API answers with: HTTP status, errno and a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errno {
    /// 404 errno 102: the endpoint token does not open (unknown, malformed or tampered).
    InvalidToken = 102,
    /// 410 errno 103: the subscription existed and is gone (unsubscribed or expired).
    Gone = 103,
    /// 413 errno 104: the body is larger than the limit.
    TooLarge = 104,
    /// 404 errno 106: no such message (already delivered, expired or never there).
    NoMessage = 106,
    /// 401 errno 109: VAPID credentials missing or invalid.
    Unauthorized = 109,
    /// 400 errno 110: a header is invalid (Urgency, Topic, Content-Encoding, Crypto-Key...).
    InvalidHeader = 110,
    /// 400 errno 111: TTL missing or not a non-negative integer.
    MissingTtl = 111,
    /// 403 errno 112: the VAPID key is not the one the subscription was created with.
    KeyMismatch = 112,
    /// 429 errno 113: too many pending messages for this subscription.
    TooManyPending = 113,
    /// 408 errno 114: the body did not arrive in time (a sender this slow holds a request
    /// slot for nothing).
    SlowBody = 114,
    /// 503 errno 201: storage unavailable, or the node busy (too many requests in progress,
    /// the write queue full); try again after Retry-After.
    Unavailable = 201,
    /// 500 errno 999: an unexpected internal error.
    Internal = 999,
}

impl Errno {
    /// Every errno, in table order.
    pub const ALL: [Errno; 12] = [
        Errno::InvalidToken,
        Errno::Gone,
        Errno::TooLarge,
        Errno::NoMessage,
        Errno::Unauthorized,
        Errno::InvalidHeader,
        Errno::MissingTtl,
        Errno::KeyMismatch,
        Errno::TooManyPending,
        Errno::SlowBody,
        Errno::Unavailable,
        Errno::Internal,
    ];

    /// The HTTP status that goes with this errno.
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidToken | Self::NoMessage => 404,
            Self::Gone => 410,
            Self::TooLarge => 413,
            Self::Unauthorized => 401,
            Self::InvalidHeader | Self::MissingTtl => 400,
            Self::KeyMismatch => 403,
            Self::TooManyPending => 429,
            Self::SlowBody => 408,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }

    /// The number.
    pub fn number(self) -> u16 {
        self as u16
    }

    /// The standard reason phrase for the status.
    pub fn error(self) -> &'static str {
        match self.status() {
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            408 => "Request Timeout",
            410 => "Gone",
            413 => "Payload Too Large",
            429 => "Too Many Requests",
            503 => "Service Unavailable",
            _ => "Internal Server Error",
        }
    }

    /// The error body for this errno with a specific message; `more_info` is where the
    /// errno table can be read (the push service serves it at `/errors`).
    pub fn body(self, message: impl Into<String>, more_info: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code: self.status(),
            errno: self.number(),
            error: self.error(),
            message: message.into(),
            more_info: more_info.into(),
        }
    }
}

/// The JSON error body: `{code, errno, error, message, more_info}`, the shape senders parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    /// The HTTP status.
    pub code: u16,
    /// The errno.
    pub errno: u16,
    /// The reason phrase.
    pub error: &'static str,
    /// What was wrong, in words.
    pub message: String,
    /// Where the errno table is.
    pub more_info: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let body = serde_json::to_value(
            Errno::MissingTtl.body("Missing TTL header", "http://127.0.0.1:8080/errors"),
        )
        .unwrap();
        assert_eq!(body["code"], 400);
        assert_eq!(body["errno"], 111);
        assert_eq!(body["error"], "Bad Request");
        assert_eq!(body["message"], "Missing TTL header");
        let numbers: std::collections::HashSet<_> = Errno::ALL.iter().map(|e| e.number()).collect();
        assert_eq!(numbers.len(), Errno::ALL.len());
    }
}
