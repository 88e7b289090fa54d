//! The Tidings hub: the application-server side of Web Push, self-hosted.
//!
//! Browsers subscribe at their own push service (Google's, Apple's, Mozilla's, Microsoft's,
//! or a `tidings serve`); the page hands the subscription to the hub, which keeps it. The
//! app's backend then says "notify this user / this topic / everyone" through a REST API
//! with an API key, and the hub encrypts, signs (VAPID) and sends, durably queued, pruning
//! subscriptions the push services say are gone.
//!
//! The parts, one concept per file:
//!
//! * [`store`]: subscriptions, topics, users and queued sends in an embedded database, with
//!   group commit (the same engine and durability rule as the push service's store).
//! * [`dispatch`]: the worker that runs queued sends on the fan-out engine and records every
//!   outcome, so that a restart resumes a send without sending to anyone twice.
//! * [`notification`]: the Declarative Web Push payload format (`web_push: 8030`).
//! * [`subscribe`]: what the browser sends, checked (endpoint, keys, topics).
//! * [`ownership`]: who may change a subscription (the proof is its `auth` secret), and what
//!   a registration does to the stored record.
//! * [`client_ip`]: the client address rate limits count, behind trusted reverse proxies.
//! * [`csrf`]: same-origin checks and per-session tokens for the browser-facing routes.
//! * [`user_token`]: the signed, single-use token an app gives its page to name the user.
//! * [`api_keys`]: the app's API keys, stored hashed in a file.
//! * [`secrets`]: the hub's VAPID key and its signing secret, generated on first start.
//! * [`http`]: the routes: browser API, app API (with its OpenAPI document) and admin page.
//! * [`server`], [`config`]: starting, serving and the settings.

pub mod api_keys;
pub mod client_ip;
pub mod config;
pub mod csrf;
pub mod dispatch;
pub mod http;
pub mod model;
pub mod notification;
pub mod ownership;
pub mod secrets;
pub mod server;
pub mod store;
pub mod subscribe;
pub mod user_token;

pub use config::Config;
pub use server::Hub;

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
