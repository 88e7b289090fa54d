//! Storage for the push service, and what its nodes tell each other through it: two traits,
//! because they promise different things and backends differ in the second.
//!
//! * [`Store`]: what is kept durably: users (uaids), channels (subscriptions), messages with
//!   TTL, topic and order, and the current version of each broadcast (autopush's
//!   "megaphone").
//! * [`Bus`]: what the nodes sharing a store tell each other: which node holds a uaid's
//!   connection, the [events](NodeEvent) sent to a node, the announcement that a broadcast
//!   changed, and the endpoint keys they share. A backend that serves one node has a bus
//!   with no one else on it.
//! * [`Backend`]: both, from one value, as the push service takes them.
//! * [`embedded`]: the default backend, a durable embedded database in the data directory,
//!   with group commit (see the module for the choice and its reasons). Its bus serves one
//!   node: routes in memory, no events, no shared keys.
//! * [`redis`]: a shared Redis (or Valkey), for several nodes, with a bus over pub/sub.
//! * [`group_commit`]: the writer thread of an embedded store, committing concurrent writes
//!   together (also used by the hub's embedded store).
//! * [`secret_file`]: writing key files that only their owner can read.
//! * `conformance`: the test suites every backend must pass, one for each trait (feature
//!   `conformance`).
//!
//! Durability contract: when a [`Store`] write returns `Ok`, it survives a crash of the
//! process.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod embedded;
pub mod group_commit;
pub mod redis;
pub mod secret_file;

use std::future::Future;
use tidings_wire::{ChannelId, Uaid};

/// How often a node renews the routing entries of its connections ([`Bus::refresh_routes`]);
/// a store that expires routing entries keeps them several times longer than this.
pub const ROUTE_REFRESH: std::time::Duration = std::time::Duration::from_secs(3600);

/// A message's id: unique per uaid and increasing in arrival order, so that stored
/// messages are delivered in the order they were accepted.
pub type MessageId = u64;

/// How long, in seconds, a store remembers the [fingerprints](Message::fingerprint) of the
/// messages it saved, so that a sender's retry of one (the same request again, because the
/// answer to the first was lost) is answered as the first was instead of being delivered
/// twice. Longer than the retries of a sender that honours `Retry-After`: Tidings' fan-out
/// engine makes at most three, each after at most two minutes.
pub const REPEAT_WINDOW: u64 = 600;

/// What tells a sender's retry of a message from another message: see [`Message::fingerprint`].
pub type Fingerprint = [u8; 16];

/// A subscription as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    /// Hash of the applicationServerKey a restricted subscription was created with.
    pub key_hash: Option<[u8; 16]>,
}

/// A message waiting for its user agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Assigned by the store on save.
    pub id: MessageId,
    /// The subscription it is for.
    pub channel_id: ChannelId,
    /// When it expires, in seconds since the Unix epoch.
    pub expires_at: u64,
    /// `Topic`: a newer message with the same topic on the same channel replaces it.
    pub topic: Option<String>,
    /// The encrypted body, as received.
    pub body: Vec<u8>,
    /// `Content-Encoding` (absent without body).
    pub encoding: Option<String>,
    /// `Encryption` (aesgcm only).
    pub encryption: Option<String>,
    /// `Crypto-Key` (aesgcm only).
    pub crypto_key: Option<String>,
}

impl Message {
    /// A digest of what the sender sent (channel, body, and the headers kept with it), or
    /// `None` for a message without a body.
    ///
    /// An encrypted body names its message: RFC 8188 and aesgcm both draw a fresh random salt
    /// for every message, so the same bytes again are the same message sent again (a retry
    /// whose first answer was lost). Messages without a body are alike by design (each says
    /// "check in"), so one cannot be told from a retry of another and none is recognised.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        use aws_lc_rs::digest::{Context, SHA256};
        if self.body.is_empty() {
            return None;
        }
        let mut context = Context::new(&SHA256);
        context.update(&self.channel_id.0);
        for text in [&self.topic, &self.encoding, &self.encryption, &self.crypto_key] {
            // Length-prefixed (absent: u64::MAX), so no two field lists hash alike.
            let text = text.as_deref().map(str::as_bytes);
            context.update(&text.map_or(u64::MAX, |t| t.len() as u64).to_be_bytes());
            context.update(text.unwrap_or_default());
        }
        context.update(&self.body);
        let mut fingerprint = [0; 16];
        fingerprint.copy_from_slice(&context.finish().as_ref()[..16]);
        Some(fingerprint)
    }
}

/// What happened to a message handed to [`Store::save_message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// Stored under this id.
    Stored(MessageId),
    /// Stored under this id, replacing the pending message with the same topic.
    Replaced {
        /// The new message's id.
        id: MessageId,
        /// The id of the message it replaced (gone from storage now).
        old: MessageId,
    },
    /// Not stored: the same message (by [fingerprint](Message::fingerprint)) was saved on
    /// this channel within the last [`REPEAT_WINDOW`] seconds. The sender is answered as the
    /// first time, and the first copy is delivered if it is still pending (acknowledged,
    /// expired or replaced by topic since, it is not delivered again).
    Repeated {
        /// The first copy's id.
        id: MessageId,
        /// Whether the first copy is still stored, waiting for its user agent.
        pending: bool,
    },
    /// Not stored: the channel already holds the maximum number of pending messages.
    Full,
    /// Not stored: the uaid or channel does not exist (unsubscribed, or forgotten), or the
    /// channel was registered again with another key.
    NoChannel,
}

/// What happened to a channel handed to [`Store::add_channel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Stored (new, or replacing the channel with the same id).
    Added,
    /// Not stored: the user does not exist (forgotten, or never created).
    NoUser,
    /// Not stored: the user already holds the most channels allowed.
    TooMany,
}

/// A storage failure. The push API answers 503 with `Retry-After` for these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage: {0}")]
pub struct StoreError(pub String);

impl From<fjall::Error> for StoreError {
    fn from(e: fjall::Error) -> Self {
        Self(e.to_string())
    }
}

impl From<group_commit::Stopped> for StoreError {
    fn from(e: group_commit::Stopped) -> Self {
        Self(e.to_string())
    }
}

/// Storage results.
pub type Result<T> = std::result::Result<T, StoreError>;

/// What one node tells another through the [`Bus`] (multi-node deployments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A message for a user agent connected to the receiving node (already stored).
    Deliver {
        /// The user agent.
        uaid: Uaid,
        /// The message, with its id.
        message: Message,
    },
    /// The user agent connected to another node: close the connection here.
    Disconnect {
        /// The user agent.
        uaid: Uaid,
    },
    /// A broadcast version was set (it is stored): read them again. Sent to every node, the
    /// setter too, by [`Bus::announce_broadcasts`]. It names no version, because announcements
    /// from several setters may arrive in another order than their writes; what the store
    /// holds is the truth, so every node ends with the same versions.
    BroadcastsChanged,
}

/// Everything the push service keeps durably (see the crate's durability contract).
/// Implementations are shared between all connections and requests (`Sync`) and every
/// method is safe to call concurrently.
pub trait Store: Send + Sync + 'static {
    /// Creates the user if it does not exist; returns whether it already existed. A user
    /// that is not [touched](Store::touch_user) for `forget_after` seconds is forgotten.
    fn add_user(&self, uaid: Uaid, now: u64, forget_after: u64) -> impl Future<Output = Result<bool>> + Send;

    /// Records that the user agent made contact at `now` (a `hello`, or an hour of staying
    /// connected) and says whether the user exists. A user idle for `forget_after` seconds or
    /// more is gone: this removes it if no sweep has yet, and answers `false`. Stores may
    /// record contact coarsely (an eighth of `forget_after`), so that most contacts are reads.
    fn touch_user(
        &self,
        uaid: Uaid,
        now: u64,
        forget_after: u64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Removes up to `limit` users idle for `forget_after` seconds before `now`, with their
    /// channels and messages; how many. A store whose entries expire by themselves (Redis
    /// TTLs) has nothing to do here.
    fn forget_idle_users(
        &self,
        now: u64,
        forget_after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<usize>> + Send;

    /// Deletes a user with all its channels and messages.
    fn remove_user(&self, uaid: Uaid) -> impl Future<Output = Result<()>> + Send;

    /// Adds (or replaces) a channel of an existing user, which may hold at most
    /// `max_channels` channels (replacing one does not count).
    fn add_channel(
        &self,
        uaid: Uaid,
        channel_id: ChannelId,
        channel: Channel,
        max_channels: usize,
    ) -> impl Future<Output = Result<Added>> + Send;

    /// The channel, if the user has it.
    fn channel(
        &self,
        uaid: Uaid,
        channel_id: ChannelId,
    ) -> impl Future<Output = Result<Option<Channel>>> + Send;

    /// Removes a channel and its pending messages; whether it existed.
    fn remove_channel(&self, uaid: Uaid, channel_id: ChannelId) -> impl Future<Output = Result<bool>> + Send;

    /// Stores a message for an existing channel, assigning its id: replaces a pending
    /// message with the same topic, and refuses when the channel already holds `max_pending`
    /// messages (a replacement never counts against the cap). The channel must still have
    /// the key hash its endpoint was sealed with: a channel registered again with another
    /// key (or none) has revoked the old endpoint, which gets [`Saved::NoChannel`]. The check
    /// is part of the save, so no re-registration can slip in between.
    ///
    /// A message with the [fingerprint](Message::fingerprint) of one saved on the same channel
    /// in the [`REPEAT_WINDOW`] before `now` is a sender's retry: it gets [`Saved::Repeated`]
    /// and stores nothing (a retry of a stored message is never [`Saved::Full`]). The
    /// fingerprint is recorded with the message, in the same atomic write, so a message that
    /// was stored is always recognised.
    fn save_message(
        &self,
        uaid: Uaid,
        message: Message,
        key_hash: Option<[u8; 16]>,
        max_pending: usize,
        now: u64,
    ) -> impl Future<Output = Result<Saved>> + Send;

    /// Up to `limit` unexpired messages of a user with ids greater than `after`, in id order.
    fn messages(
        &self,
        uaid: Uaid,
        after: Option<MessageId>,
        limit: usize,
        now: u64,
    ) -> impl Future<Output = Result<Vec<Message>>> + Send;

    /// Deletes a message; whether it was there. `channel_id` must match the message's.
    fn delete_message(
        &self,
        uaid: Uaid,
        channel_id: ChannelId,
        id: MessageId,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Deletes up to `limit` messages that expired before `now`; how many were deleted.
    fn sweep_expired(&self, now: u64, limit: usize) -> impl Future<Output = Result<usize>> + Send;

    /// Records `version` as the broadcast's current version; whether that changed anything
    /// (a new id, or another version). The other nodes learn of it from
    /// [`Bus::announce_broadcasts`].
    fn set_broadcast(&self, id: &str, version: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Every broadcast with its current version (a node loads them when it starts, and a node
    /// of a shared store reloads them now and then in case it missed an announcement).
    fn broadcasts(&self) -> impl Future<Output = Result<Vec<(String, String)>>> + Send;

    /// Whether the store can serve requests now (for `/health`).
    fn ready(&self) -> impl Future<Output = Result<()>> + Send;
}

/// What the nodes sharing a [`Store`] tell each other: which node holds a user agent's
/// connection (so that a message accepted on one node reaches the connection on another,
/// and a user agent holds one connection across nodes), the events they send, and the
/// endpoint keys they share (so that every node accepts every endpoint).
///
/// Apart from [`Store`] because it is about the nodes rather than what they keep (a routing
/// entry lasts no longer than its connection), and not every backend is shared: a backend
/// that serves one node has a bus with no one else on it, and says so in its
/// implementation (no events, nothing heard, no shared keys) rather than in defaults.
/// Every method is safe to call concurrently.
pub trait Bus: Send + Sync + 'static {
    /// Records that `node` holds the user's connection (replacing any other node).
    fn set_node(&self, uaid: Uaid, node: &str) -> impl Future<Output = Result<()>> + Send;

    /// The node that holds the user's connection, if any.
    fn node(&self, uaid: Uaid) -> impl Future<Output = Result<Option<String>>> + Send;

    /// Clears the routing entry if it still names `node` (a newer connection elsewhere wins).
    fn clear_node(&self, uaid: Uaid, node: &str) -> impl Future<Output = Result<()>> + Send;

    /// Keeps alive the routing entries of the connections `node` holds (those of `uaids`
    /// that still name it). A shared bus lets routing entries expire, so that a node that
    /// dies leaves none behind for long; each node calls this every [`ROUTE_REFRESH`].
    fn refresh_routes(&self, uaids: &[Uaid], node: &str) -> impl Future<Output = Result<()>> + Send;

    /// Events other nodes send to `node`; `None` when no other node can send any (a bus that
    /// serves one node), so that the node does not wait for them.
    fn node_events(
        &self,
        node: &str,
    ) -> impl Future<Output = Result<Option<tokio::sync::mpsc::Receiver<NodeEvent>>>> + Send;

    /// Sends an event to another node; whether a running node heard it (a route to a node
    /// that hears nothing is stale: that node died with its connections).
    fn publish(&self, node: &str, event: NodeEvent) -> impl Future<Output = Result<bool>> + Send;

    /// Tells every node, the caller too, that a broadcast version was stored
    /// ([`NodeEvent::BroadcastsChanged`]), so that each tells its own user agents.
    fn announce_broadcasts(&self) -> impl Future<Output = Result<()>> + Send;

    /// The endpoint keys every node sharing this bus uses: the stored ones, or `candidate`
    /// stored by the first node to ask. `None` when no other node shares them: the node then
    /// keeps its keys in its data directory.
    fn shared_endpoint_keys(&self, candidate: &str) -> impl Future<Output = Result<Option<String>>> + Send;
}

/// A [`Store`] with the [`Bus`] of the nodes that share it. One value holds both, so that
/// a node can never keep its data in a shared store while talking on another bus: the other
/// nodes would store messages for its connections and never reach them.
pub trait Backend: Store + Bus {}

impl<T: Store + Bus> Backend for T {}
