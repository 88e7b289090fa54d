//! Values that cross the wire between Tidings' parts and the outside world, shared by the
//! sender, the push service, the user agent and the hub.
//!
//! * [`subscription`]: the W3C `PushSubscription.toJSON()` shape, the interchange format
//!   between page, app server and every sender library.
//! * [`headers`]: RFC 8030 request header values (`TTL`, `Urgency`, `Topic`).
//! * [`endpoint`]: endpoint URLs are capabilities; how to show one without leaking it.
//! * [`ws`]: the frames of the WebSocket protocol between user agent and push service.
//! * [`ids`]: the user agent and channel ids those frames carry.
//! * [`errno`]: the push API's error numbers and JSON error body.
//! * [`client_ip`]: the client address behind trusted reverse proxies, for per-address limits.

pub mod client_ip;
pub mod endpoint;
pub mod errno;
pub mod headers;
pub mod ids;
pub mod subscription;
pub mod ws;

pub use headers::{Topic, Urgency};
pub use ids::{ChannelId, Uaid};
pub use subscription::{PushSubscription, SubscriptionKeys};
