//! The Tidings push service: what Mozilla's autopush is for Firefox, self-hostable.
//!
//! User agents hold a WebSocket to `/` and speak the Mozilla push protocol; application
//! servers `POST` encrypted messages to capability URLs (RFC 8030, VAPID per RFC 8292).
//! Messages are stored durably before they are acknowledged with `201`, delivered at once
//! to a connected user agent, and otherwise kept until it returns, is acked, or expires.
//!
//! The parts, one concept per file:
//!
//! * [`session`]: the user-agent protocol as a sans-IO state machine (hello, register,
//!   unregister, notifications, acks, pings, the broadcasts a user agent follows).
//! * [`ws`]: the WebSocket connection shell that drives a session over a socket.
//! * [`api`]: the application-server side: header rules, VAPID, `POST` and `DELETE`.
//! * [`token`]: endpoint and message URLs as sealed capabilities.
//! * [`vapid_cache`]: VAPID tokens already verified, so a signature is checked once.
//! * [`registry`]: the connected user agents and their bounded mailboxes.
//! * [`broadcast`]: broadcasts (autopush's "megaphone"): the node's table of current
//!   versions, and the rules for ids and versions.
//! * [`admin`]: the operators' routes (`/admin/broadcasts`), behind a bearer token.
//! * [`megaphone`]: polling a megaphone API for broadcast versions.
//! * [`limits`]: what one anonymous client may hold or create (connections per node and per
//!   address, new user agents per address).
//! * [`http`]: routes (`/`, `/push/…`, `/m/…`, `/health`, `/metrics`, `/errors`).
//! * [`tls`]: TLS on rustls's unbuffered API, so that an idle `wss://` connection holds no
//!   buffer (sans-IO core and socket shell).
//! * [`server`]: listening, TLS, expiry sweeping and graceful shutdown.
//! * [`config`], [`metrics`], [`app`]: settings, counters and the shared state.

pub mod admin;
pub mod api;
pub mod app;
pub mod broadcast;
pub mod config;
pub mod http;
pub mod limits;
pub mod megaphone;
pub mod metrics;
pub mod registry;
pub mod server;
pub mod session;
pub mod tls;
pub mod token;
pub mod vapid_cache;
pub mod ws;

pub use config::Config;
pub use server::Server;
