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
//! * [`model`]: the domain types (subscriptions, sends and their counts, outcomes, owners),
//!   apart from the REST JSON shapes ([`http::wire`]) and each backend's stored records.
//! * [`store`]: the storage trait and its conformance suite, with two backends: an embedded
//!   database with group commit (one process; the same engine and durability rule as the
//!   push service's store) and PostgreSQL (several hub processes on one database).
//! * [`dispatch`]: the worker that runs queued sends concurrently on the fan-out engine, in
//!   two lanes (targeted sends never wait behind broadcasts), claiming recipients with
//!   leases before their requests leave and recording every outcome, so that a restart or
//!   another process resumes a send without sending to anyone twice.
//! * [`notification`]: the Declarative Web Push payload format (`web_push: 8030`).
//! * [`subscribe`]: what the browser sends, checked (endpoint, keys, topics).
//! * [`ownership`]: who may change a subscription (the proof is its `auth` secret), and what
//!   a registration does to the stored record.
//! * [`csrf`]: same-origin checks and per-session tokens for the browser-facing routes.
//! * [`user_token`]: the signed, single-use token an app gives its page to name the user.
//! * [`api_keys`]: the app's API keys, stored hashed (in a file, or in the database).
//! * [`secrets`]: the hub's VAPID key and its signing secrets, generated on first start (in
//!   files, or in the database for every process of a deployment).
//! * [`http`]: the routes: browser API, app API (with its OpenAPI document) and admin page.
//! * [`server`], [`config`]: starting, serving and the settings.

pub mod api_keys;
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
