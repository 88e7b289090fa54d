//! Exit codes, shared by the sending commands so scripts can branch on them.

use std::process::ExitCode;

/// What a command's exit status tells a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Done: the push service accepted the message, the keys match, ...
    Ok = 0,
    /// The check asked for failed (`tidings vapid check`: the keys do not match).
    CheckFailed = 1,
    /// Usage or input error: nothing was sent.
    Usage = 2,
    /// The subscription is gone (404/410): delete it.
    Gone = 3,
    /// The push service rejected the request (400, 401, 403, 413, ...): fix it.
    Rejected = 4,
    /// Try later (429, 5xx, no answer).
    TryLater = 5,
    /// Stopped by Ctrl-C before the end (a broadcast can be resumed).
    Interrupted = 130,
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> Self {
        ExitCode::from(code as u8)
    }
}
