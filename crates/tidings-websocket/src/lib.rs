//! A sans-IO WebSocket (RFC 6455) codec for the push protocol's long-lived, mostly idle
//! connections.
//!
//! Why not tungstenite's stream types: a push service holds tens of thousands of
//! connections that are silent for hours, and a general-purpose WebSocket keeps read and
//! write buffers allocated for the life of each connection (128 KiB each by default, and
//! never less than a 4 KiB chunk). Here nothing is allocated while a connection is idle:
//!
//! * [`Decoder`] is fed bytes as they arrive (the I/O shell reads into a scratch buffer);
//!   complete frames are unmasked in place and handed out as borrowed [`Event`]s, and only
//!   the tail of an incomplete frame is copied into a buffer, which is freed again as soon
//!   as the frame completes.
//! * [`encode`] writes one frame into a caller's buffer.
//! * [`handshake`] computes and checks the HTTP upgrade headers.
//!
//! Extensions (permessage-deflate) are never negotiated, so reserved bits are always errors.

pub mod decode;
pub mod encode;
pub mod handshake;
#[cfg(feature = "tokio")]
pub mod io;

pub use decode::{Decoder, Error, Event};
pub use encode::{encode, encode_close};

/// Which end of the connection this codec is: it decides who masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Receives masked frames, sends unmasked ones.
    Server,
    /// Receives unmasked frames, sends masked ones.
    Client,
}

/// Frame opcodes (RFC 6455 section 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// Continues a fragmented message.
    Continuation = 0,
    /// A UTF-8 text message.
    Text = 1,
    /// A binary message.
    Binary = 2,
    /// Closes the connection.
    Close = 8,
    /// Asks for a pong.
    Ping = 9,
    /// Answers a ping.
    Pong = 10,
}

impl Opcode {
    fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => Self::Continuation,
            1 => Self::Text,
            2 => Self::Binary,
            8 => Self::Close,
            9 => Self::Ping,
            10 => Self::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        self as u8 >= 8
    }
}

/// Close codes this codec and its users send (RFC 6455 section 7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is going away (shutting down): clients should reconnect.
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A message type that is not accepted (binary, here).
    pub const UNSUPPORTED: u16 = 1003;
    /// Text that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A policy violation (a frame that breaks the application protocol).
    pub const POLICY: u16 = 1008;
    /// A message larger than allowed.
    pub const TOO_BIG: u16 = 1009;
    /// The server cannot go on (an internal error).
    pub const INTERNAL: u16 = 1011;
    /// Try again later: the server is overloaded or restarting.
    pub const TRY_AGAIN_LATER: u16 = 1013;
}
