//! Storage for the push service, behind one trait with the operations the protocol needs.
//!
//! * [`Store`]: users (uaids), channels (subscriptions), messages with TTL, topic and
//!   order, the node that holds a uaid's connection, and the current version of each
//!   broadcast (autopush's "megaphone").
//! * [`embedded`]: the default backend, a durable embedded database in the data directory,
//!   with group commit (see the module for the choice and its reasons).
//! * [`redis`]: a shared Redis (or Valkey), for several nodes.
//! * [`group_commit`]: the writer thread of an embedded store, committing concurrent writes
//!   together (also used by the hub's embedded store).
//! * [`secret_file`]: writing key files that only their owner can read.
//! * [`conformance`]: the test suite every backend must pass (feature `conformance`).
//!
//! Durability contract: when a write returns `Ok`, it survives a crash of the process.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod embedded;
pub mod group_commit;
pub mod redis;
pub mod secret_file;

use std::future::Future;
use tidings_wire::{ChannelId, Uaid};

/// How often a node renews the routing entries of its connections ([`Store::refresh_routes`]);
/// a store that expires routing entries keeps them several times longer than this.
pub const ROUTE_REFRESH: std::time::Duration = std::time::Duration::from_secs(3600);

/// A message's id: unique per uaid and increasing in arrival order, so that stored
/// messages are delivered in the order they were accepted.
pub type MessageId = u64;

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

/// What one node tells another through the store (multi-node deployments).
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
    /// setter too, by [`Store::set_broadcast`]. It names no version, because announcements
    /// from several setters may arrive in another order than their writes; what the store
    /// holds is the truth, so every node ends with the same versions.
    BroadcastsChanged,
}

/// Everything the push service keeps. Implementations are shared between all connections
/// and requests (`Sync`) and every method is safe to call concurrently.
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
    /// TTLs) has nothing to do here (the default).
    fn forget_idle_users(
        &self,
        now: u64,
        forget_after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<usize>> + Send {
        let _ = (now, forget_after, limit);
        async { Ok(0) }
    }

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
    fn save_message(
        &self,
        uaid: Uaid,
        message: Message,
        key_hash: Option<[u8; 16]>,
        max_pending: usize,
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

    /// Records that `node` holds the user's connection (replacing any other node).
    fn set_node(&self, uaid: Uaid, node: &str) -> impl Future<Output = Result<()>> + Send;

    /// The node that holds the user's connection, if any.
    fn node(&self, uaid: Uaid) -> impl Future<Output = Result<Option<String>>> + Send;

    /// Clears the routing entry if it still names `node` (a newer connection elsewhere wins).
    fn clear_node(&self, uaid: Uaid, node: &str) -> impl Future<Output = Result<()>> + Send;

    /// Keeps alive the routing entries of the connections `node` holds (those of `uaids`
    /// that still name it). A shared store lets routing entries expire, so that a node that
    /// dies leaves none behind for long; each node calls this every [`ROUTE_REFRESH`].
    fn refresh_routes(&self, uaids: &[Uaid], node: &str) -> impl Future<Output = Result<()>> + Send {
        let _ = (uaids, node);
        async { Ok(()) }
    }

    /// Records `version` as the broadcast's current version; whether that changed anything
    /// (a new id, or another version). A store shared by several nodes also announces it to
    /// every node through [`Store::node_events`] ([`NodeEvent::BroadcastsChanged`]), so that
    /// each tells its own user agents.
    fn set_broadcast(&self, id: &str, version: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Every broadcast with its current version (a node loads them when it starts, and a node
    /// of a shared store reloads them now and then in case it missed an announcement).
    fn broadcasts(&self) -> impl Future<Output = Result<Vec<(String, String)>>> + Send;

    /// Whether the store can serve requests now (for `/health`).
    fn ready(&self) -> impl Future<Output = Result<()>> + Send;

    /// Events other nodes send to `node`, for a store shared by several nodes; `None` for a
    /// store that serves one node (the default).
    fn node_events(
        &self,
        node: &str,
    ) -> impl Future<Output = Result<Option<tokio::sync::mpsc::Receiver<NodeEvent>>>> + Send {
        let _ = node;
        async { Ok(None) }
    }

    /// Sends an event to another node; whether a running node heard it (a route to a node
    /// that hears nothing is stale: that node died with its connections). A single-node
    /// store hears nothing (the default).
    fn publish(&self, node: &str, event: NodeEvent) -> impl Future<Output = Result<bool>> + Send {
        let _ = (node, event);
        async { Ok(false) }
    }

    /// The endpoint keys every node sharing this store uses: the stored ones, or `candidate`
    /// stored by the first node to ask. `None` for a single-node store (the default), which
    /// keeps its keys in its data directory.
    fn shared_endpoint_keys(&self, candidate: &str) -> impl Future<Output = Result<Option<String>>> + Send {
        let _ = candidate;
        async { Ok(None) }
    }
}
