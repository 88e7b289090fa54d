//! A headless Web Push user agent: what Firefox's push client does, as a library.
//!
//! * [`connection`]: a WebSocket client on the same sans-IO codec as the push service,
//!   holding no buffer while idle, so one process can act as thousands of user agents.
//! * [`client`]: the Mozilla push protocol on top: hello, register, notifications, acks.
//! * [`receive`]: opening a notification (decrypt, decide the ack code), without I/O.
//! * [`state`]: the uaid, subscriptions and keys, kept in one private file.
//! * [`backoff`]: jittered exponential reconnection delays.
//! * [`listener`]: the shell that stays subscribed: reconnects, re-registers, acks when told.

pub mod backoff;
pub mod client;
pub mod connection;
pub mod listener;
pub mod receive;
pub mod state;

pub use client::{Client, ClientError};
pub use connection::{ConnectError, Connection, Stream};
