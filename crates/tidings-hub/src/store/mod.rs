//! The hub's storage, behind one trait, with two backends and one conformance suite:
//!
//! * [`Store`]: every operation the hub needs, with what each guarantees.
//! * [`embedded`]: the default, a fjall database in the data directory (one hub process).
//! * [`postgres`]: a PostgreSQL database, shared by several hub processes.
//! * [`AnyStore`]: the one the hub was started with.
//! * [`conformance`]: the suite every backend passes (tests only).
//!
//! Durability: when a write returns `Ok`, it survives a crash of the process.
//!
//! **Sends and their recipients.** A send's recipients are fixed when it starts: the
//! subscriptions its target names then (created no later than its start). They are written
//! as items in chunks ([`Store::materialize`]), so that starting a send for a million does not
//! hold up other writes. A dispatcher claims items in batches, with a lease
//! ([`Store::claim`]), before any request leaves, and renews the lease while it works; an
//! item is deleted when its outcome is recorded. Items whose lease ran out (their hub
//! process died) may or may not have reached their push service: they are counted failed
//! ("interrupted"), never sent again ([`Store::recover`]).

pub mod embedded;
pub mod postgres;

#[cfg(test)]
pub mod conformance;

use crate::model::{
    AdminSession, IdempotencyKey, NewSend, Outcome, Owner, Pruning, QueuedSend, Subscription,
    SubscriptionCounts, SubscriptionId,
};
use crate::ownership::{Change, Proof, Refusal, Registration};
use std::future::Future;
use std::sync::Arc;

/// A storage failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hub storage: {0}")]
pub struct StoreError(pub String);

impl From<fjall::Error> for StoreError {
    fn from(e: fjall::Error) -> Self {
        Self(e.to_string())
    }
}

impl From<tidings_store::group_commit::Stopped> for StoreError {
    fn from(e: tidings_store::group_commit::Stopped) -> Self {
        Self(e.to_string())
    }
}

/// Storage results.
pub type Result<T> = std::result::Result<T, StoreError>;

/// What storing a subscription did (or would do, for [`Store::preview`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// Stored (or already stored as asked): the record as it now is.
    Stored {
        /// Its id.
        id: SubscriptionId,
        /// The record.
        record: Subscription,
        /// Whether it was created, updated or left as it was.
        change: Change,
    },
    /// The caller does not hold the subscription: nothing stored.
    Refused(Refusal),
    /// The user token was used before: nothing stored.
    Replayed,
}

/// What deleting a subscription with a proof did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Deleted.
    Removed,
    /// No subscription has this endpoint.
    Unknown,
    /// The proof is wrong: nothing deleted.
    NotOwner,
}

/// A send as [`Store::create_send`] left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The send.
    pub send: QueuedSend,
    /// Whether it was created by an earlier request with the same idempotency key.
    pub replayed: bool,
}

/// A claimed recipient: its id, and its subscription unless it was deleted since the send
/// started.
pub type Claimed = (SubscriptionId, Option<Subscription>);

/// Per send, the last recipient this process claimed: its next claim looks from there, not
/// from the send's first item, past every recipient recorded so far (deleted items that
/// the backend skips one by one until it compacts or vacuums them).
#[derive(Debug, Default, Clone)]
pub(crate) struct ClaimHints(
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<u64, SubscriptionId>>>,
);

impl ClaimHints {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, SubscriptionId>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Where the next claim of send `id` starts looking.
    pub(crate) fn get(&self, id: u64) -> Option<SubscriptionId> {
        self.lock().get(&id).copied()
    }

    /// Remembers the last of `claimed` (in order); forgets the send when nothing was left.
    pub(crate) fn update(&self, id: u64, claimed: &[Claimed]) {
        let mut hints = self.lock();
        match claimed.last() {
            Some((last, _)) => hints.insert(id, *last),
            None => hints.remove(&id),
        };
    }
}

/// Everything the hub stores. Every method is one atomic, durable operation.
pub trait Store: Send + Sync + 'static {
    /// What `registration` would do, read from a snapshot: nothing is written (see
    /// [`crate::ownership`]).
    fn preview(&self, registration: Arc<Registration>) -> impl Future<Output = Result<Saved>> + Send;

    /// Stores what a page sent if the caller holds the subscription (decided here, whatever
    /// a preview said), marking the user token's `jti` used; writes nothing when nothing
    /// changes.
    fn register(&self, registration: Arc<Registration>) -> impl Future<Output = Result<Saved>> + Send;

    /// Deletes the subscription of `proof.endpoint` if `proof.auth` is its secret.
    fn remove_owned(&self, proof: Proof) -> impl Future<Output = Result<Removal>> + Send;

    /// Deletes a subscription; whether it existed.
    fn remove_subscription(&self, id: SubscriptionId) -> impl Future<Output = Result<bool>> + Send;

    /// One subscription.
    fn subscription(&self, id: SubscriptionId) -> impl Future<Output = Result<Option<Subscription>>> + Send;

    /// Up to `limit` subscriptions with ids after `after`, in id order.
    fn subscriptions(
        &self,
        after: Option<SubscriptionId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(SubscriptionId, Subscription)>>> + Send;

    /// How many subscriptions there are, flagged and deleted: counters, not a scan.
    fn subscription_counts(&self) -> impl Future<Output = Result<SubscriptionCounts>> + Send;

    /// Every topic with its number of subscriptions, in name order: counters, not a scan.
    fn topics(&self) -> impl Future<Output = Result<Vec<(String, u64)>>> + Send;

    /// Queues a send. With an idempotency key the store has seen (and not yet forgotten),
    /// the send that key created, untouched.
    fn create_send(
        &self,
        send: NewSend,
        key: Option<IdempotencyKey>,
    ) -> impl Future<Output = Result<Created>> + Send;

    /// One send.
    fn send(&self, id: u64) -> impl Future<Output = Result<Option<QueuedSend>>> + Send;

    /// The latest sends, newest first.
    fn recent_sends(&self, limit: usize) -> impl Future<Output = Result<Vec<QueuedSend>>> + Send;

    /// Sends not finished and due at `now` (queued, or running), oldest first, at most `limit`.
    fn due_sends(&self, now: u64, limit: usize) -> impl Future<Output = Result<Vec<QueuedSend>>> + Send;

    /// Starts a due send (its recipients are the subscriptions its target names now) and
    /// writes up to `limit` more of its recipients as items. Returns the send as it now is:
    /// `materialized` once every recipient is written, done if there were none.
    fn materialize(&self, id: u64, now: u64, limit: usize)
    -> impl Future<Output = Result<QueuedSend>> + Send;

    /// Claims up to `limit` unclaimed recipients of a send for `owner`, until `lease_until`,
    /// before any request leaves. Two claimers never get the same recipient. A claim may
    /// come up short while more is claimable (a recipient given back is found by a later
    /// claim); only an empty answer says that nothing is left.
    fn claim(
        &self,
        id: u64,
        owner: Owner,
        lease_until: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Claimed>>> + Send;

    /// Extends every lease `owner` holds to `lease_until`; how many.
    fn renew(&self, owner: Owner, lease_until: u64) -> impl Future<Output = Result<u64>> + Send;

    /// Gives back every claim `owner` still holds in send `id` (recipients whose outcome
    /// was not recorded: the caller knows their requests never started). They are unclaimed
    /// again, for this hub or another. Returns how many were given back.
    fn release(&self, id: u64, owner: Owner) -> impl Future<Output = Result<u64>> + Send;

    /// Records outcomes of a send's recipients: counts, errors, deleting subscriptions that
    /// are gone, counting failures of the others and deleting those that failed as long as
    /// `pruning` allows. A recipient recorded before is skipped. Returns the send as it now
    /// is (done when every recipient has an outcome).
    fn record(
        &self,
        id: u64,
        outcomes: Vec<(SubscriptionId, Outcome)>,
        now: u64,
        pruning: Pruning,
    ) -> impl Future<Output = Result<QueuedSend>> + Send;

    /// Counts claimed recipients whose lease ended before `expired_before` as failed
    /// ("interrupted"): their hub stopped while sending. Returns how many.
    fn recover(
        &self,
        expired_before: u64,
        now: u64,
        pruning: Pruning,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Whether only this process uses the store: then at start every claim left is a dead
    /// process's, and can be recovered at once.
    fn exclusive(&self) -> bool;

    /// Forgets used user tokens, admin logins and idempotency keys that have expired.
    /// Returns how many entries went.
    fn sweep(&self, now: u64) -> impl Future<Output = Result<usize>> + Send;

    /// Stores an admin login under the hash of its id.
    fn open_admin_session(
        &self,
        key: [u8; 32],
        session: AdminSession,
    ) -> impl Future<Output = Result<()>> + Send;

    /// An admin login, by the hash of its id.
    fn admin_session(&self, key: [u8; 32]) -> impl Future<Output = Result<Option<AdminSession>>> + Send;

    /// Ends an admin login, wherever its cookie was copied.
    fn close_admin_session(&self, key: [u8; 32]) -> impl Future<Output = Result<()>> + Send;

    /// Whether the store answers (for `/health`).
    fn ready(&self) -> impl Future<Output = Result<()>> + Send;
}

/// The backend the hub was started with.
#[derive(Clone)]
pub enum AnyStore {
    /// The embedded database (one hub process).
    Embedded(embedded::EmbeddedStore),
    /// PostgreSQL (several hub processes).
    Postgres(postgres::PostgresStore),
}

/// Calls the same method on whichever backend.
macro_rules! delegate {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Embedded($store) => $call,
            AnyStore::Postgres($store) => $call,
        }
    };
}

impl Store for AnyStore {
    async fn preview(&self, registration: Arc<Registration>) -> Result<Saved> {
        delegate!(self, s => s.preview(registration).await)
    }

    async fn register(&self, registration: Arc<Registration>) -> Result<Saved> {
        delegate!(self, s => s.register(registration).await)
    }

    async fn remove_owned(&self, proof: Proof) -> Result<Removal> {
        delegate!(self, s => s.remove_owned(proof).await)
    }

    async fn remove_subscription(&self, id: SubscriptionId) -> Result<bool> {
        delegate!(self, s => s.remove_subscription(id).await)
    }

    async fn subscription(&self, id: SubscriptionId) -> Result<Option<Subscription>> {
        delegate!(self, s => s.subscription(id).await)
    }

    async fn subscriptions(
        &self,
        after: Option<SubscriptionId>,
        limit: usize,
    ) -> Result<Vec<(SubscriptionId, Subscription)>> {
        delegate!(self, s => s.subscriptions(after, limit).await)
    }

    async fn subscription_counts(&self) -> Result<SubscriptionCounts> {
        delegate!(self, s => s.subscription_counts().await)
    }

    async fn topics(&self) -> Result<Vec<(String, u64)>> {
        delegate!(self, s => s.topics().await)
    }

    async fn create_send(&self, send: NewSend, key: Option<IdempotencyKey>) -> Result<Created> {
        delegate!(self, s => s.create_send(send, key).await)
    }

    async fn send(&self, id: u64) -> Result<Option<QueuedSend>> {
        delegate!(self, s => s.send(id).await)
    }

    async fn recent_sends(&self, limit: usize) -> Result<Vec<QueuedSend>> {
        delegate!(self, s => s.recent_sends(limit).await)
    }

    async fn due_sends(&self, now: u64, limit: usize) -> Result<Vec<QueuedSend>> {
        delegate!(self, s => s.due_sends(now, limit).await)
    }

    async fn materialize(&self, id: u64, now: u64, limit: usize) -> Result<QueuedSend> {
        delegate!(self, s => s.materialize(id, now, limit).await)
    }

    async fn claim(&self, id: u64, owner: Owner, lease_until: u64, limit: usize) -> Result<Vec<Claimed>> {
        delegate!(self, s => s.claim(id, owner, lease_until, limit).await)
    }

    async fn renew(&self, owner: Owner, lease_until: u64) -> Result<u64> {
        delegate!(self, s => s.renew(owner, lease_until).await)
    }

    async fn release(&self, id: u64, owner: Owner) -> Result<u64> {
        delegate!(self, s => s.release(id, owner).await)
    }

    async fn record(
        &self,
        id: u64,
        outcomes: Vec<(SubscriptionId, Outcome)>,
        now: u64,
        pruning: Pruning,
    ) -> Result<QueuedSend> {
        delegate!(self, s => s.record(id, outcomes, now, pruning).await)
    }

    async fn recover(&self, expired_before: u64, now: u64, pruning: Pruning) -> Result<u64> {
        delegate!(self, s => s.recover(expired_before, now, pruning).await)
    }

    fn exclusive(&self) -> bool {
        delegate!(self, s => s.exclusive())
    }

    async fn sweep(&self, now: u64) -> Result<usize> {
        delegate!(self, s => s.sweep(now).await)
    }

    async fn open_admin_session(&self, key: [u8; 32], session: AdminSession) -> Result<()> {
        delegate!(self, s => s.open_admin_session(key, session).await)
    }

    async fn admin_session(&self, key: [u8; 32]) -> Result<Option<AdminSession>> {
        delegate!(self, s => s.admin_session(key).await)
    }

    async fn close_admin_session(&self, key: [u8; 32]) -> Result<()> {
        delegate!(self, s => s.close_admin_session(key).await)
    }

    async fn ready(&self) -> Result<()> {
        delegate!(self, s => s.ready().await)
    }
}
