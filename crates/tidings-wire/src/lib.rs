//! Values that cross the wire between Tidings' parts and the outside world, shared by the
//! sender, the push service, the user agent and the hub.
//!
//! * [`subscription`]: the W3C `PushSubscription.toJSON()` shape, the interchange format
//!   between page, app server and every sender library.
//! * [`headers`]: RFC 8030 request header values (`TTL`, `Urgency`, `Topic`).
//! * [`endpoint`]: endpoint URLs are capabilities; how to show one without leaking it.

pub mod endpoint;
pub mod headers;
pub mod subscription;

pub use headers::{Topic, Urgency};
pub use subscription::{PushSubscription, SubscriptionKeys};
