//! The sender: everything an application server needs to push to any push service.
//!
//! * [`subscription`]: a `PushSubscription` validated and decoded once.
//! * [`request`]: sans-IO preparation of one RFC 8030 request: encryption, VAPID, headers.
//! * [`outcome`]: sans-IO classification of the push service's answer (accepted, gone,
//!   rejected, retry later), with the service's errno and message.
//! * [`client`]: the I/O shell, a pooled hyper client over rustls (aws-lc-rs).
//! * [`connect`]: which hosts and addresses the client may connect to (a guard against
//!   endpoints that point into private networks), and name resolution.
//! * [`fanout`]: one message to many subscriptions: per-origin concurrency, `Retry-After`
//!   honoured per push service, retries, one outcome per subscription.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tidings_crypto::vapid::{VapidKey, VapidSigner};
//! use tidings_sender::{ClientConfig, Message, PushClient, Subscription, prepare};
//!
//! let subscription = Subscription::parse(r#"{"endpoint": "...", "keys": {"p256dh": "...", "auth": "..."}}"#)?;
//! let signer = VapidSigner::new(VapidKey::parse(&std::fs::read_to_string("vapid.json")?)?, Some("mailto:ops@example.com".into()));
//! let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
//! let request = prepare(&subscription, &Message::new("Hello"), Some(&signer), now)?;
//! let response = PushClient::new(ClientConfig::default()).send(request).await?;
//! println!("{}: {}", response.status, response.explanation());
//! # Ok(()) }
//! ```

pub mod client;
pub mod connect;
pub mod fanout;
pub mod outcome;
pub mod request;
pub mod subscription;

pub use client::{ClientConfig, PushClient, SendError};
pub use connect::{ConnectPolicy, PushHosts};
pub use fanout::{Bounds, Engine, FanoutConfig, Outcome, Sent, Target, fanout};
pub use outcome::{Response, ServiceError, Verdict};
pub use request::{Message, PrepareError, duplicate, prepare};
pub use subscription::{Subscription, SubscriptionError};
