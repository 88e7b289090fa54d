//! The hub's storage: a fjall database in the data directory (the engine the push service's
//! embedded store chose by measurement, with the same rule: a write is answered only once it
//! is on disk).
//!
//! One writer thread applies every write. It takes all the writes waiting (up to
//! [`MAX_BATCH`]) into one transaction and commits them with one fsync, so concurrent
//! subscribe requests and send progress share fsyncs. Reads use snapshots on the blocking
//! pool. Records are JSON, so that an operator can read them with any fjall tool and fields
//! can be added later.
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `subscriptions` | id (16 bytes: SHA-256 of the endpoint) | [`Subscription`] |
//! | `topics` | topic, 0, id | (empty) |
//! | `users` | user, 0, id | (empty) |
//! | `sends` | send id (u64) | [`Send`] |
//! | `due` | send id | (empty): the sends not finished yet |
//! | `items` | send id, subscription id | [`PENDING`] or [`SENDING`] |
//! | `tokens` | a user token's `jti` | its expiry (u64): tokens already used |
//! | `token_expiry` | expiry (u64), `jti` | (empty): the same tokens in expiry order, to sweep |
//! | `admin_sessions` | SHA-256 of an admin login's id | [`AdminSession`] |
//! | `meta` | `next_send`, `deleted_failing` | the next send id; subscriptions deleted for failing |
//!
//! A send's recipients are written as items when it starts. The dispatcher claims a few
//! hundred at a time (marking them [`SENDING`] durably before any request leaves), and an
//! item is deleted when its outcome is recorded. After a crash, items still marked
//! [`SENDING`] may or may not have reached their push service: they are counted as failed
//! ("interrupted") rather than sent again, so nobody receives a message twice.

use crate::ownership::{Change, Planned, Proof, Refusal, Registration, UserChange, holds, plan};
use aws_lc_rs::digest;
use fjall::{KeyspaceCreateOptions, PersistMode, Readable, SingleWriterTxDatabase, SingleWriterTxKeyspace};
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::path::Path;
use std::sync::Arc;
use tidings_store::embedded::{next_batch, open_database};
use tokio::sync::{mpsc, oneshot};

/// The most writes committed together.
pub const MAX_BATCH: usize = 1024;
/// An item not yet claimed by the dispatcher.
pub const PENDING: u8 = 0;
/// An item claimed: its request may be under way.
pub const SENDING: u8 = 1;
/// Consecutive failures after which a subscription is flagged in the admin page and API.
pub const FLAG_AFTER: u32 = 5;
/// Errors kept per send (the counts are exact; the list is a sample).
pub const MAX_ERRORS: usize = 50;
/// The `meta` key counting subscriptions deleted for failing, since the database began.
const DELETED_FAILING: &[u8] = b"deleted_failing";

/// A storage failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hub storage: {0}")]
pub struct StoreError(pub String);

/// Storage results.
pub type Result<T> = std::result::Result<T, StoreError>;

fn error(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// A subscription's id: the first 16 bytes of the SHA-256 of its endpoint, so the same
/// endpoint subscribing again updates one record, and the id reveals nothing of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub [u8; 16]);

impl SubscriptionId {
    /// The id of the subscription with this endpoint.
    pub fn of(endpoint: &str) -> Self {
        let hash = digest::digest(&digest::SHA256, endpoint.as_bytes());
        let mut id = [0; 16];
        id.copy_from_slice(&hash.as_ref()[..16]);
        Self(id)
    }

    /// Parses the 32-hex-digit form.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 32 {
            return None;
        }
        let mut id = [0; 16];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(Self(id))
    }
}

impl std::fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A browser's subscription as kept. The endpoint and keys are secrets: they leave the hub
/// only towards the push service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The push service URL (a capability).
    pub endpoint: String,
    /// The browser's public key, base64url.
    pub p256dh: String,
    /// The authentication secret, base64url.
    pub auth: String,
    /// The app's user, when the page said who it is (with a user token).
    pub user: Option<String>,
    /// Topics the page subscribed to.
    pub topics: Vec<String>,
    /// When it was first stored (seconds since the epoch).
    pub created_at: u64,
    /// Failed sends in a row (reset by a success).
    #[serde(default)]
    pub failures: u32,
    /// When the current run of failures began.
    #[serde(default)]
    pub failing_since: Option<u64>,
    /// The last failure, for the admin page.
    #[serde(default)]
    pub last_error: Option<String>,
}

impl Subscription {
    /// Whether it has failed [`FLAG_AFTER`] times in a row.
    pub fn flagged(&self) -> bool {
        self.failures >= FLAG_AFTER
    }
}

/// Whom a send goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// One subscription, by id.
    Subscription(String),
    /// Every subscription of a user.
    User(String),
    /// Every subscription to a topic.
    Topic(String),
    /// Every subscription.
    Everyone,
}

/// Where a send is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for its time.
    Scheduled,
    /// Waiting for the dispatcher.
    Queued,
    /// Under way.
    Running,
    /// Every recipient has an outcome.
    Done,
}

/// How a send's recipients ended, so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Recipients when the send started.
    pub queued: u64,
    /// The push service took the message.
    pub accepted: u64,
    /// 404 or 410: the subscription was deleted.
    pub gone: u64,
    /// A final refusal (400, 401, 403, 413, ...), or an unusable subscription.
    pub rejected: u64,
    /// Still failing after the retries, or interrupted by a restart.
    pub failed: u64,
}

impl Counts {
    /// Recipients without an outcome yet.
    pub fn pending(&self) -> u64 {
        self.queued.saturating_sub(self.accepted + self.gone + self.rejected + self.failed)
    }
}

/// One recipient's failure, as shown to the app (the endpoint masked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendError {
    /// The subscription's id.
    pub subscription: String,
    /// Its endpoint, masked.
    pub endpoint: String,
    /// The push service's status, if it answered.
    pub status: Option<u16>,
    /// What went wrong.
    pub reason: String,
}

/// A message to send, queued durably, with its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Send {
    /// Assigned when stored.
    pub id: u64,
    /// Whom to.
    pub target: Target,
    /// The plaintext (JSON for a notification), base64url.
    pub payload: String,
    /// `TTL`, seconds.
    pub ttl: u32,
    /// `Urgency`.
    pub urgency: Option<String>,
    /// `Topic`.
    pub topic: Option<String>,
    /// When it was created.
    pub created_at: u64,
    /// When to send it (seconds since the epoch).
    pub send_at: u64,
    /// Where it is.
    pub status: Status,
    /// Outcomes so far.
    pub counts: Counts,
    /// A sample of the failures.
    pub errors: Vec<SendError>,
    /// When it finished.
    pub finished_at: Option<u64>,
    /// Subscriptions it deleted because they had failed too long (see [`Pruning`]).
    #[serde(default)]
    pub deleted_failing: u64,
}

/// How a recipient ended, as the dispatcher reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by its push service.
    Accepted,
    /// The push service says the subscription is gone: delete it.
    Gone,
    /// Refused for good, or not a usable subscription.
    Rejected {
        /// The status, if the push service answered.
        status: Option<u16>,
        /// Why.
        reason: String,
    },
    /// Failed after the retries.
    Failed {
        /// The last status, if any.
        status: Option<u16>,
        /// Why.
        reason: String,
    },
}

/// What storing a subscription did.
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

/// When the dispatcher deletes a subscription that keeps failing: after `failures` failed
/// sends in a row, the first of them at least `failing_for` seconds ago (so that one push
/// service's outage of an afternoon does not wipe its subscriptions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruning {
    /// Failed sends in a row.
    pub failures: u32,
    /// Seconds since the first of them.
    pub failing_for: u64,
}

/// Subscriptions by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriptionCounts {
    /// Stored now.
    pub total: u64,
    /// Of those, failing (see [`FLAG_AFTER`]).
    pub flagged: u64,
    /// Deleted for failing too long, since the database began.
    pub deleted_failing: u64,
}

/// An admin login, kept on the server so that it can be ended everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminSession {
    /// When it ends (seconds since the epoch).
    pub expires: u64,
    /// Which admin secret it was opened with (a keyed hash): a new secret ends it.
    pub secret: String,
}

struct Keyspaces {
    db: SingleWriterTxDatabase,
    subscriptions: SingleWriterTxKeyspace,
    topics: SingleWriterTxKeyspace,
    users: SingleWriterTxKeyspace,
    sends: SingleWriterTxKeyspace,
    due: SingleWriterTxKeyspace,
    items: SingleWriterTxKeyspace,
    tokens: SingleWriterTxKeyspace,
    token_expiry: SingleWriterTxKeyspace,
    admin_sessions: SingleWriterTxKeyspace,
    meta: SingleWriterTxKeyspace,
}

type Tx<'a> = fjall::SingleWriterWriteTx<'a>;
type Answer = Result<Box<dyn Any + std::marker::Send>>;
type Apply = Box<dyn Fn(&Keyspaces, &mut Tx<'_>) -> Answer + std::marker::Send>;

/// A write and where its answer goes once it is durable.
struct Job {
    apply: Apply,
    reply: oneshot::Sender<Answer>,
}

/// The hub's database. Cheap to clone.
#[derive(Clone)]
pub struct HubStore {
    keyspaces: Arc<Keyspaces>,
    writer: mpsc::Sender<Job>,
}

fn index_key(name: &str, id: SubscriptionId) -> Vec<u8> {
    [name.as_bytes(), &[0], &id.0].concat()
}

fn item_key(send: u64, id: SubscriptionId) -> Vec<u8> {
    [&send.to_be_bytes()[..], &id.0].concat()
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError(format!("corrupt record: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

fn get<T: serde::de::DeserializeOwned>(
    tx: &impl Readable,
    space: &SingleWriterTxKeyspace,
    key: &[u8],
) -> Result<Option<T>> {
    tx.get(space, key).map_err(error)?.map(|v| decode(&v)).transpose()
}

impl HubStore {
    /// Opens (or creates) the database in `dir`. Fails if another process has it open.
    pub fn open(dir: &Path) -> Result<Self> {
        let db = open_database(dir, "tidings hub").map_err(|e| StoreError(e.0))?;
        let keyspace = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).map_err(error);
        let keyspaces = Arc::new(Keyspaces {
            subscriptions: keyspace("subscriptions")?,
            topics: keyspace("topics")?,
            users: keyspace("users")?,
            sends: keyspace("sends")?,
            due: keyspace("due")?,
            items: keyspace("items")?,
            tokens: keyspace("tokens")?,
            token_expiry: keyspace("token_expiry")?,
            admin_sessions: keyspace("admin_sessions")?,
            meta: keyspace("meta")?,
            db,
        });
        let (writer, queue) = mpsc::channel(MAX_BATCH * 4);
        let ks = keyspaces.clone();
        std::thread::Builder::new()
            .name("tidings-hub-writer".into())
            .spawn(move || write_loop(&ks, queue))
            .map_err(error)?;
        Ok(Self { keyspaces, writer })
    }

    /// Applies `apply` in the next group commit and answers once it is durable. `apply` may
    /// run more than once (when another write in its batch fails, the batch is applied again
    /// without it), so it must only read and write through the transaction.
    async fn write<T: std::marker::Send + 'static>(
        &self,
        apply: impl Fn(&Keyspaces, &mut Tx<'_>) -> Result<T> + std::marker::Send + 'static,
    ) -> Result<T> {
        let stopped = || StoreError("the hub's writer has stopped".into());
        let (reply, answer) = oneshot::channel();
        let apply: Apply =
            Box::new(move |ks, tx| apply(ks, tx).map(|v| Box::new(v) as Box<dyn Any + std::marker::Send>));
        self.writer.send(Job { apply, reply }).await.map_err(|_| stopped())?;
        let value = answer.await.map_err(|_| stopped())??;
        value
            .downcast::<T>()
            .map(|v| *v)
            .map_err(|_| StoreError("the writer answered with the wrong type".into()))
    }

    async fn read<T: std::marker::Send + 'static>(
        &self,
        read: impl FnOnce(&Keyspaces, &fjall::Snapshot) -> Result<T> + std::marker::Send + 'static,
    ) -> Result<T> {
        let ks = self.keyspaces.clone();
        tokio::task::spawn_blocking(move || read(&ks, &ks.db.read_tx())).await.map_err(error)?
    }

    /// What `registration` would do, read from a snapshot: nothing is written. Pages re-post
    /// their subscription on every load, so an unchanged one (or a refusal) is answered from
    /// this alone; the caller also learns, before any write, whether it would be a new
    /// subscription (which counts against the caps).
    pub async fn preview(&self, registration: Arc<Registration>) -> Result<Saved> {
        self.read(move |ks, snap| {
            Ok(match decide(ks, snap, &registration)? {
                Ok(Planned { record, change, .. }) => {
                    Saved::Stored { id: SubscriptionId::of(&record.endpoint), record, change }
                }
                Err(refused) => refused,
            })
        })
        .await
    }

    /// Stores what a page sent, if the caller holds the subscription (see
    /// [`crate::ownership`]; decided again here, in the writer, whatever [`Self::preview`]
    /// said), and marks the user token's `jti` used. Writes nothing when nothing changes.
    pub async fn register(&self, registration: Arc<Registration>) -> Result<Saved> {
        self.write(move |ks, tx| {
            let Planned { record, change, removes_old } = match decide(ks, tx, &registration)? {
                Ok(planned) => planned,
                Err(refused) => return Ok(refused),
            };
            let id = SubscriptionId::of(&record.endpoint);
            if removes_old && let Some(proof) = &registration.replacing {
                remove_subscription(ks, tx, SubscriptionId::of(&proof.endpoint))?;
            }
            if let UserChange::Set { jti, expires, .. } = &registration.user {
                tx.insert(&ks.tokens, jti.as_bytes(), expires.to_be_bytes());
                tx.insert(&ks.token_expiry, [&expires.to_be_bytes()[..], jti.as_bytes()].concat(), b"");
            }
            if change != Change::Unchanged {
                remove_subscription(ks, tx, id)?;
                insert_subscription(ks, tx, id, &record);
            }
            Ok(Saved::Stored { id, record, change })
        })
        .await
    }

    /// Deletes the subscription of `proof.endpoint` if `proof.auth` is its secret.
    pub async fn remove_owned(&self, proof: Proof) -> Result<Removal> {
        self.write(move |ks, tx| {
            let id = SubscriptionId::of(&proof.endpoint);
            match get::<Subscription>(tx, &ks.subscriptions, &id.0)? {
                None => Ok(Removal::Unknown),
                Some(stored) if !holds(&stored, &proof.auth) => Ok(Removal::NotOwner),
                Some(_) => {
                    remove_subscription(ks, tx, id)?;
                    Ok(Removal::Removed)
                }
            }
        })
        .await
    }

    /// Deletes a subscription; whether it existed.
    pub async fn remove_subscription(&self, id: SubscriptionId) -> Result<bool> {
        self.write(move |ks, tx| Ok(remove_subscription(ks, tx, id)?.is_some())).await
    }

    /// One subscription.
    pub async fn subscription(&self, id: SubscriptionId) -> Result<Option<Subscription>> {
        self.read(move |ks, snap| get(snap, &ks.subscriptions, &id.0)).await
    }

    /// Up to `limit` subscriptions with ids after `after`, in id order.
    pub async fn subscriptions(
        &self,
        after: Option<SubscriptionId>,
        limit: usize,
    ) -> Result<Vec<(SubscriptionId, Subscription)>> {
        self.read(move |ks, snap| {
            let start = after.map_or([0; 16], |a| a.0);
            let mut found = Vec::new();
            for entry in snap.range(&ks.subscriptions, start..) {
                let (k, v) = entry.into_inner().map_err(error)?;
                let id =
                    SubscriptionId(k.as_ref().try_into().map_err(|_| error("corrupt subscription key"))?);
                if Some(id) == after {
                    continue;
                }
                found.push((id, decode(&v)?));
                if found.len() >= limit {
                    break;
                }
            }
            Ok(found)
        })
        .await
    }

    /// How many subscriptions there are, how many are flagged, how many were deleted.
    pub async fn subscription_counts(&self) -> Result<SubscriptionCounts> {
        self.read(move |ks, snap| {
            let mut counts = SubscriptionCounts {
                deleted_failing: get(snap, &ks.meta, DELETED_FAILING)?.unwrap_or(0),
                ..SubscriptionCounts::default()
            };
            for entry in snap.iter(&ks.subscriptions) {
                let subscription: Subscription = decode(&entry.value().map_err(error)?)?;
                counts.total += 1;
                counts.flagged += u64::from(subscription.flagged());
            }
            Ok(counts)
        })
        .await
    }

    /// Every topic with its number of subscriptions, in name order.
    pub async fn topics(&self) -> Result<Vec<(String, u64)>> {
        self.read(move |ks, snap| {
            let mut topics: Vec<(String, u64)> = Vec::new();
            for entry in snap.iter(&ks.topics) {
                let key = entry.key().map_err(error)?;
                let name = key.split(|b| *b == 0).next().unwrap_or_default();
                let name = String::from_utf8_lossy(name);
                match topics.last_mut() {
                    Some((last, count)) if *last == name => *count += 1,
                    _ => topics.push((name.into_owned(), 1)),
                }
            }
            Ok(topics)
        })
        .await
    }

    /// Queues a send; its id.
    pub async fn create_send(&self, send: Send) -> Result<u64> {
        self.write(move |ks, tx| {
            let id = get::<u64>(tx, &ks.meta, b"next_send")?.unwrap_or(1);
            tx.insert(&ks.meta, b"next_send", encode(&(id + 1)));
            tx.insert(&ks.sends, id.to_be_bytes(), encode(&Send { id, ..send.clone() }));
            tx.insert(&ks.due, id.to_be_bytes(), b"");
            Ok(id)
        })
        .await
    }

    /// One send.
    pub async fn send(&self, id: u64) -> Result<Option<Send>> {
        self.read(move |ks, snap| get(snap, &ks.sends, &id.to_be_bytes())).await
    }

    /// The latest sends, newest first.
    pub async fn recent_sends(&self, limit: usize) -> Result<Vec<Send>> {
        self.read(move |ks, snap| {
            snap.iter(&ks.sends).rev().take(limit).map(|e| decode(&e.value().map_err(error)?)).collect()
        })
        .await
    }

    /// The oldest unfinished send that is due at `now`.
    pub async fn next_due(&self, now: u64) -> Result<Option<Send>> {
        self.read(move |ks, snap| {
            for entry in snap.iter(&ks.due) {
                let key = entry.key().map_err(error)?;
                if let Some(send) = get::<Send>(snap, &ks.sends, &key)?
                    && send.send_at <= now
                {
                    return Ok(Some(send));
                }
            }
            Ok(None)
        })
        .await
    }

    /// Starts a queued send: writes its recipients as items. Returns the send as running.
    pub async fn start_send(&self, id: u64, now: u64) -> Result<Send> {
        self.write(move |ks, tx| {
            let mut send: Send =
                get(tx, &ks.sends, &id.to_be_bytes())?.ok_or_else(|| error("no such send"))?;
            if matches!(send.status, Status::Queued | Status::Scheduled) {
                let recipients = recipients(ks, tx, &send.target)?;
                for recipient in &recipients {
                    tx.insert(&ks.items, item_key(id, *recipient), [PENDING]);
                }
                send.counts.queued = recipients.len() as u64;
                send.status = Status::Running;
                if recipients.is_empty() {
                    send.finished_at = Some(now);
                }
                finish_if_done(ks, tx, &mut send)?;
            }
            Ok(send)
        })
        .await
    }

    /// Claims up to `limit` pending recipients of a send after `cursor` (in id order),
    /// marking them [`SENDING`] durably before returning them. A recipient deleted since the
    /// send started comes back as `None`.
    pub async fn claim(
        &self,
        id: u64,
        cursor: Option<SubscriptionId>,
        limit: usize,
    ) -> Result<Vec<(SubscriptionId, Option<Subscription>)>> {
        self.write(move |ks, tx| {
            let start = item_key(id, cursor.unwrap_or(SubscriptionId([0; 16])));
            let end = item_key(id, SubscriptionId([0xff; 16]));
            let mut claimed = Vec::new();
            let mut keys = Vec::new();
            for entry in tx.range(&ks.items, start..=end) {
                let (k, v) = entry.into_inner().map_err(error)?;
                let sub = SubscriptionId(
                    k.get(8..24).and_then(|s| s.try_into().ok()).ok_or_else(|| error("bad item"))?,
                );
                if Some(sub) == cursor || v.as_ref() != [PENDING] {
                    continue;
                }
                keys.push(k);
                claimed.push(sub);
                if claimed.len() >= limit {
                    break;
                }
            }
            for k in keys {
                tx.insert(&ks.items, k, [SENDING]);
            }
            claimed.into_iter().map(|sub| Ok((sub, get(tx, &ks.subscriptions, &sub.0)?))).collect()
        })
        .await
    }

    /// Records outcomes of a send's recipients: counts, errors, deleting subscriptions that
    /// are gone, counting failures of the others and deleting those that failed as long as
    /// `pruning` allows. Returns the send as it now is (done when no recipient is left).
    pub async fn record(
        &self,
        id: u64,
        outcomes: Vec<(SubscriptionId, Outcome)>,
        now: u64,
        pruning: Pruning,
    ) -> Result<Send> {
        self.write(move |ks, tx| {
            let mut send: Send =
                get(tx, &ks.sends, &id.to_be_bytes())?.ok_or_else(|| error("no such send"))?;
            for (sub, outcome) in &outcomes {
                if !tx.contains_key(&ks.items, item_key(id, *sub)).map_err(error)? {
                    continue; // recorded already
                }
                tx.remove(&ks.items, item_key(id, *sub));
                let record = get::<Subscription>(tx, &ks.subscriptions, &sub.0)?;
                let failure = match outcome {
                    Outcome::Accepted => {
                        send.counts.accepted += 1;
                        if let Some(mut record) = record.filter(|r| r.failures > 0 || r.last_error.is_some())
                        {
                            record.failures = 0;
                            record.failing_since = None;
                            record.last_error = None;
                            tx.insert(&ks.subscriptions, sub.0, encode(&record));
                        }
                        None
                    }
                    Outcome::Gone => {
                        send.counts.gone += 1;
                        remove_subscription(ks, tx, *sub)?;
                        None
                    }
                    Outcome::Rejected { status, reason } => {
                        send.counts.rejected += 1;
                        Some((status, reason, record))
                    }
                    Outcome::Failed { status, reason } => {
                        send.counts.failed += 1;
                        Some((status, reason, record))
                    }
                };
                if let Some((status, reason, record)) = failure {
                    let endpoint = record
                        .as_ref()
                        .map_or("(deleted)".into(), |r| tidings_wire::endpoint::mask(&r.endpoint));
                    if send.errors.len() < MAX_ERRORS {
                        send.errors.push(SendError {
                            subscription: sub.to_string(),
                            endpoint,
                            status: *status,
                            reason: reason.clone(),
                        });
                    }
                    if let Some(mut record) = record {
                        record.failures += 1;
                        record.last_error = Some(reason.clone());
                        let since = *record.failing_since.get_or_insert(now);
                        if record.failures >= pruning.failures
                            && now.saturating_sub(since) >= pruning.failing_for
                        {
                            remove_subscription(ks, tx, *sub)?;
                            send.deleted_failing += 1;
                            let total = get::<u64>(tx, &ks.meta, DELETED_FAILING)?.unwrap_or(0);
                            tx.insert(&ks.meta, DELETED_FAILING, encode(&(total + 1)));
                        } else {
                            tx.insert(&ks.subscriptions, sub.0, encode(&record));
                        }
                    }
                }
            }
            if send.counts.pending() == 0 {
                send.finished_at = Some(now);
            }
            finish_if_done(ks, tx, &mut send)?;
            Ok(send)
        })
        .await
    }

    /// After a restart: every recipient a running send had claimed may or may not have
    /// received its message, so it is counted as failed instead of being sent again.
    /// Returns how many.
    pub async fn recover(&self, now: u64, pruning: Pruning) -> Result<u64> {
        let running: Vec<Send> = self
            .read(|ks, snap| {
                let mut running = Vec::new();
                for entry in snap.iter(&ks.due) {
                    if let Some(send) = get::<Send>(snap, &ks.sends, &entry.key().map_err(error)?)?
                        && send.status == Status::Running
                    {
                        running.push(send);
                    }
                }
                Ok(running)
            })
            .await?;
        let mut interrupted = 0;
        for send in running {
            let claimed: Vec<SubscriptionId> = self
                .read(move |ks, snap| {
                    let mut claimed = Vec::new();
                    for entry in snap.prefix(&ks.items, send.id.to_be_bytes()) {
                        let (k, v) = entry.into_inner().map_err(error)?;
                        if v.as_ref() == [SENDING] {
                            claimed.push(SubscriptionId(k[8..24].try_into().map_err(|_| error("bad item"))?));
                        }
                    }
                    Ok(claimed)
                })
                .await?;
            interrupted += claimed.len() as u64;
            let reason =
                "interrupted: the hub stopped while sending (not sent again, so as not to send twice)";
            let outcomes = claimed
                .into_iter()
                .map(|s| (s, Outcome::Failed { status: None, reason: reason.into() }))
                .collect();
            self.record(send.id, outcomes, now, pruning).await?;
        }
        Ok(interrupted)
    }

    /// Forgets used user tokens that have expired (they would be refused anyway): a range
    /// of the expiry index, so the writer reads only what it deletes. Also forgets admin
    /// logins that have ended. Returns how many entries went.
    pub async fn sweep(&self, now: u64) -> Result<usize> {
        self.write(move |ks, tx| {
            let expired: Vec<_> = tx
                .range(&ks.token_expiry, ..now.to_be_bytes().to_vec())
                .take(10_000)
                .map(|e| e.key().map_err(error))
                .collect::<Result<_>>()?;
            for key in &expired {
                tx.remove(&ks.tokens, key.get(8..).unwrap_or_default());
                tx.remove(&ks.token_expiry, key.clone());
            }
            let mut ended = Vec::new();
            for entry in tx.iter(&ks.admin_sessions) {
                let (key, value) = entry.into_inner().map_err(error)?;
                if decode::<AdminSession>(&value).is_ok_and(|s| s.expires <= now) {
                    ended.push(key);
                }
            }
            for key in &ended {
                tx.remove(&ks.admin_sessions, key.clone());
            }
            Ok(expired.len() + ended.len())
        })
        .await
    }

    /// Stores an admin login under the hash of its id.
    pub async fn open_admin_session(&self, key: [u8; 32], session: AdminSession) -> Result<()> {
        self.write(move |ks, tx| {
            tx.insert(&ks.admin_sessions, key, encode(&session));
            Ok(())
        })
        .await
    }

    /// An admin login, by the hash of its id.
    pub async fn admin_session(&self, key: [u8; 32]) -> Result<Option<AdminSession>> {
        self.read(move |ks, snap| get(snap, &ks.admin_sessions, &key)).await
    }

    /// Ends an admin login, wherever its cookie was copied.
    pub async fn close_admin_session(&self, key: [u8; 32]) -> Result<()> {
        self.write(move |ks, tx| {
            tx.remove(&ks.admin_sessions, key);
            Ok(())
        })
        .await
    }
}

fn remove_subscription(ks: &Keyspaces, tx: &mut Tx<'_>, id: SubscriptionId) -> Result<Option<Subscription>> {
    let Some(old) = get::<Subscription>(tx, &ks.subscriptions, &id.0)? else {
        return Ok(None);
    };
    for topic in &old.topics {
        tx.remove(&ks.topics, index_key(topic, id));
    }
    if let Some(user) = &old.user {
        tx.remove(&ks.users, index_key(user, id));
    }
    tx.remove(&ks.subscriptions, id.0);
    Ok(Some(old))
}

fn insert_subscription(ks: &Keyspaces, tx: &mut Tx<'_>, id: SubscriptionId, record: &Subscription) {
    for topic in &record.topics {
        tx.insert(&ks.topics, index_key(topic, id), b"");
    }
    if let Some(user) = &record.user {
        tx.insert(&ks.users, index_key(user, id), b"");
    }
    tx.insert(&ks.subscriptions, id.0, encode(record));
}

/// What a registration does, as read through `tx`: the record it leads to, or the answer
/// that refuses it (a used token, or a caller who does not hold the subscription).
fn decide(
    ks: &Keyspaces,
    tx: &impl Readable,
    registration: &Registration,
) -> Result<std::result::Result<Planned, Saved>> {
    if let UserChange::Set { jti, .. } = &registration.user
        && tx.contains_key(&ks.tokens, jti.as_bytes()).map_err(error)?
    {
        return Ok(Err(Saved::Replayed));
    }
    let existing = get(tx, &ks.subscriptions, &SubscriptionId::of(&registration.endpoint).0)?;
    let old = match &registration.replacing {
        Some(proof) => get(tx, &ks.subscriptions, &SubscriptionId::of(&proof.endpoint).0)?,
        None => None,
    };
    Ok(plan(existing.as_ref(), old.as_ref(), registration).map_err(Saved::Refused))
}

/// The subscriptions a target names now.
fn recipients(ks: &Keyspaces, tx: &Tx<'_>, target: &Target) -> Result<Vec<SubscriptionId>> {
    let indexed = |space: &SingleWriterTxKeyspace, name: &str| -> Result<Vec<SubscriptionId>> {
        tx.prefix(space, [name.as_bytes(), &[0]].concat())
            .map(|e| {
                let k = e.key().map_err(error)?;
                let id = k.get(k.len().saturating_sub(16)..).and_then(|s| s.try_into().ok());
                id.map(SubscriptionId).ok_or_else(|| error("bad index key"))
            })
            .collect()
    };
    match target {
        Target::Subscription(id) => Ok(SubscriptionId::parse(id)
            .filter(|id| tx.contains_key(&ks.subscriptions, id.0).unwrap_or(false))
            .into_iter()
            .collect()),
        Target::User(user) => indexed(&ks.users, user),
        Target::Topic(topic) => indexed(&ks.topics, topic),
        Target::Everyone => tx
            .iter(&ks.subscriptions)
            .map(|e| {
                let k = e.key().map_err(error)?;
                Ok(SubscriptionId(k.as_ref().try_into().map_err(|_| error("bad subscription key"))?))
            })
            .collect(),
    }
}

/// Saves the send, marking it done (and no longer due) when no recipient is left.
fn finish_if_done(ks: &Keyspaces, tx: &mut Tx<'_>, send: &mut Send) -> Result<()> {
    if send.status == Status::Running && send.counts.pending() == 0 {
        send.status = Status::Done;
        tx.remove(&ks.due, send.id.to_be_bytes());
    }
    tx.insert(&ks.sends, send.id.to_be_bytes(), encode(send));
    Ok(())
}

/// The writer thread: batches of writes, one transaction and one fsync each.
fn write_loop(ks: &Keyspaces, mut queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while next_batch(&mut queue, &mut batch, MAX_BATCH) {
        commit(ks, &mut batch);
    }
}

/// Applies a batch in one transaction and answers every write once it is durable. A write
/// that fails is answered with its error and the others are applied again without it.
fn commit(ks: &Keyspaces, batch: &mut Vec<Job>) {
    while !batch.is_empty() {
        let mut tx = ks.db.write_tx().durability(Some(PersistMode::SyncAll));
        let mut answers = Vec::with_capacity(batch.len());
        let mut failed = None;
        for (i, job) in batch.iter().enumerate() {
            match (job.apply)(ks, &mut tx) {
                Ok(value) => answers.push(value),
                Err(e) => {
                    failed = Some((i, e));
                    break;
                }
            }
        }
        if let Some((i, e)) = failed {
            tx.rollback();
            tracing::error!(error = %e, "a hub storage write failed");
            let _ = batch.remove(i).reply.send(Err(e));
            continue;
        }
        match tx.commit() {
            Ok(()) => {
                for (job, answer) in batch.drain(..).zip(answers) {
                    let _ = job.reply.send(Ok(answer));
                }
            }
            Err(e) => {
                let e = error(e);
                tracing::error!(error = %e, "a hub storage commit failed");
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(n: u8) -> String {
        format!("https://push.example/{n}")
    }

    fn registration(n: u8, topics: Option<&[&str]>, user: UserChange) -> Registration {
        Registration {
            endpoint: endpoint(n),
            p256dh: "k".into(),
            auth: format!("auth-{n}"),
            topics: topics.map(|t| t.iter().map(|t| t.to_string()).collect()),
            user,
            replacing: None,
            now: u64::from(n),
        }
    }

    fn token(user: &str, jti: &str, expires: u64) -> UserChange {
        UserChange::Set { user: user.into(), jti: jti.into(), expires }
    }

    /// Registers and returns the id and what changed, or panics.
    async fn stored(store: &HubStore, registration: Registration) -> (SubscriptionId, Change) {
        match store.register(Arc::new(registration)).await.unwrap() {
            Saved::Stored { id, change, .. } => (id, change),
            other => panic!("not stored: {other:?}"),
        }
    }

    /// The database's last sequence number: it moves with every durable write.
    fn seqno(store: &HubStore) -> u64 {
        store.keyspaces.db.read_tx().seqno()
    }

    fn send(target: Target) -> Send {
        Send {
            id: 0,
            target,
            payload: String::new(),
            ttl: 60,
            urgency: None,
            topic: None,
            created_at: 1,
            send_at: 1,
            status: Status::Queued,
            counts: Counts::default(),
            errors: Vec::new(),
            finished_at: None,
            deleted_failing: 0,
        }
    }

    const NEVER: Pruning = Pruning { failures: u32::MAX, failing_for: 0 };

    #[tokio::test]
    async fn subscriptions_topics_users_and_single_use_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let store = HubStore::open(dir.path()).unwrap();
        let (a, change) =
            stored(&store, registration(1, Some(&["news", "sport"]), token("alice", "jti-1", 100))).await;
        assert_eq!(change, Change::Created);
        assert_eq!(
            store.register(Arc::new(registration(2, None, token("mallory", "jti-1", 100)))).await.unwrap(),
            Saved::Replayed
        );
        // Re-posting as it is (what the kit does on every page load) is answered by a read,
        // and would write nothing anyway; it keeps the topics and the user.
        let before = seqno(&store);
        let again = Arc::new(registration(1, None, UserChange::Keep));
        assert!(matches!(
            store.preview(again.clone()).await.unwrap(),
            Saved::Stored { change: Change::Unchanged, .. }
        ));
        assert_eq!(stored(&store, registration(1, None, UserChange::Keep)).await, (a, Change::Unchanged));
        assert_eq!(seqno(&store), before, "no durable write when nothing changed");
        // A preview tells of a replayed token, a refusal or a creation without writing.
        assert_eq!(
            store.preview(Arc::new(registration(2, None, token("m", "jti-1", 100)))).await.unwrap(),
            Saved::Replayed
        );
        let new = store.preview(Arc::new(registration(9, None, UserChange::Keep))).await.unwrap();
        assert!(matches!(new, Saved::Stored { change: Change::Created, .. }));
        assert!(store.subscription(SubscriptionId::of(&endpoint(9))).await.unwrap().is_none());
        assert_eq!(seqno(&store), before);
        let kept = store.subscription(a).await.unwrap().unwrap();
        assert_eq!((kept.topics.len(), kept.user.as_deref()), (2, Some("alice")));
        assert_eq!(
            stored(&store, registration(1, Some(&["news"]), UserChange::Keep)).await.1,
            Change::Updated
        );
        assert!(seqno(&store) > before);
        assert_eq!(store.topics().await.unwrap(), [("news".to_owned(), 1)]);
        assert_eq!(store.subscription(a).await.unwrap().unwrap().created_at, 1);
        // Someone who knows only the endpoint cannot put in other keys, nor delete it.
        let attack =
            Registration { auth: "attacker".into(), ..registration(1, Some(&[]), UserChange::Clear) };
        assert_eq!(store.register(Arc::new(attack)).await.unwrap(), Saved::Refused(Refusal::Conflict));
        let wrong = Proof { endpoint: endpoint(1), auth: "attacker".into() };
        assert_eq!(store.remove_owned(wrong).await.unwrap(), Removal::NotOwner);
        assert_eq!(store.subscription(a).await.unwrap().unwrap().auth, "auth-1");
        // A replacement with the old one's proof carries its topics and user over, and deletes it.
        let (b, _) = stored(&store, registration(3, Some(&["sport"]), token("bob", "jti-3", 100))).await;
        let steal = Registration {
            replacing: Some(Proof { endpoint: endpoint(3), auth: "guess".into() }),
            ..registration(4, None, UserChange::Keep)
        };
        assert_eq!(store.register(Arc::new(steal)).await.unwrap(), Saved::Refused(Refusal::NotOwner));
        assert!(
            store.subscription(SubscriptionId::of(&endpoint(4))).await.unwrap().is_none(),
            "a refusal stores nothing"
        );
        let moved = Registration {
            replacing: Some(Proof { endpoint: endpoint(3), auth: "auth-3".into() }),
            ..registration(4, None, UserChange::Keep)
        };
        let (c, _) = stored(&store, moved).await;
        assert!(store.subscription(b).await.unwrap().is_none());
        let replaced = store.subscription(c).await.unwrap().unwrap();
        assert_eq!((replaced.topics, replaced.user), (vec!["sport".to_owned()], Some("bob".to_owned())));
        assert_eq!(store.subscription_counts().await.unwrap().total, 2);
        let proof = Proof { endpoint: endpoint(4), auth: "auth-4".into() };
        assert_eq!(store.remove_owned(proof.clone()).await.unwrap(), Removal::Removed);
        assert_eq!(store.remove_owned(proof).await.unwrap(), Removal::Unknown);
        assert_eq!(store.topics().await.unwrap(), [("news".to_owned(), 1)]);
        assert_eq!(
            stored(&store, registration(5, None, token("carol", "jti-2", 200))).await.1,
            Change::Created
        );
        // Only the expired tokens are forgotten; the other still cannot be used again.
        assert_eq!(store.sweep(101).await.unwrap(), 2);
        assert_eq!(store.sweep(101).await.unwrap(), 0);
        assert_eq!(
            store.register(Arc::new(registration(6, None, token("carol", "jti-2", 200)))).await.unwrap(),
            Saved::Replayed
        );
        assert_eq!(store.sweep(201).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn admin_sessions_end_on_close_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = HubStore::open(dir.path()).unwrap();
        let session = AdminSession { expires: 100, secret: "s".into() };
        store.open_admin_session([1; 32], session.clone()).await.unwrap();
        store.open_admin_session([2; 32], AdminSession { expires: 200, ..session.clone() }).await.unwrap();
        assert_eq!(store.admin_session([1; 32]).await.unwrap(), Some(session));
        store.close_admin_session([1; 32]).await.unwrap();
        assert_eq!(store.admin_session([1; 32]).await.unwrap(), None);
        assert_eq!(store.sweep(150).await.unwrap(), 0);
        assert_eq!(store.sweep(200).await.unwrap(), 1);
        assert_eq!(store.admin_session([2; 32]).await.unwrap(), None);
    }

    #[tokio::test]
    async fn subscriptions_failing_long_enough_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = HubStore::open(dir.path()).unwrap();
        let (a, _) = stored(&store, registration(1, Some(&["t"]), UserChange::Keep)).await;
        let (b, _) = stored(&store, registration(2, Some(&["t"]), UserChange::Keep)).await;
        let pruning = Pruning { failures: 3, failing_for: 1000 };
        let failed = || Outcome::Failed { status: Some(500), reason: "down".into() };
        let mut deleted = 0;
        for (n, now) in [(1, 10), (2, 20), (3, 30), (4, 1009), (5, 1010)] {
            let id = store.create_send(send(Target::Topic("t".into()))).await.unwrap();
            store.start_send(id, now).await.unwrap();
            let claimed = store.claim(id, None, 10).await.unwrap();
            // `b` recovers once, which starts its count again.
            let outcomes = claimed
                .iter()
                .map(|(s, _)| (*s, if *s == b && n == 3 { Outcome::Accepted } else { failed() }))
                .collect();
            deleted += store.record(id, outcomes, now, pruning).await.unwrap().deleted_failing;
            let exists = store.subscription(a).await.unwrap().is_some();
            // Three failures are not enough until the first of them is 1000 s old.
            assert_eq!(exists, now < 1010, "after send {n}");
        }
        assert_eq!(deleted, 1);
        let b_record = store.subscription(b).await.unwrap().unwrap();
        assert_eq!((b_record.failures, b_record.failing_since), (2, Some(1009)));
        assert!(store.subscription(b).await.unwrap().is_some());
        assert_eq!(store.subscription_counts().await.unwrap().deleted_failing, 1);
    }

    #[tokio::test]
    async fn sends_claim_record_and_recover() {
        let dir = tempfile::tempdir().unwrap();
        let store = HubStore::open(dir.path()).unwrap();
        let mut ids = Vec::new();
        for n in 0..10 {
            ids.push(stored(&store, registration(n, Some(&["t"]), UserChange::Keep)).await.0);
        }
        let id = store.create_send(send(Target::Topic("t".into()))).await.unwrap();
        assert_eq!(store.next_due(1).await.unwrap().map(|s| s.id), Some(id));
        let started = store.start_send(id, 1).await.unwrap();
        assert_eq!((started.status, started.counts.queued), (Status::Running, 10));
        let first = store.claim(id, None, 4).await.unwrap();
        assert_eq!(first.len(), 4);
        let cursor = first.last().map(|(s, _)| *s);
        let second = store.claim(id, cursor, 4).await.unwrap();
        assert!(second.iter().all(|(s, _)| !first.iter().any(|(f, _)| f == s)));
        let outcomes = vec![
            (first[0].0, Outcome::Accepted),
            (first[1].0, Outcome::Gone),
            (first[2].0, Outcome::Failed { status: Some(503), reason: "down".into() }),
            (first[3].0, Outcome::Rejected { status: Some(413), reason: "big".into() }),
        ];
        let after = store.record(id, outcomes.clone(), 2, NEVER).await.unwrap();
        assert_eq!(
            (after.counts.accepted, after.counts.gone, after.counts.failed, after.counts.rejected),
            (1, 1, 1, 1)
        );
        assert!(store.subscription(first[1].0).await.unwrap().is_none(), "gone subscriptions are deleted");
        assert_eq!(store.subscription(first[2].0).await.unwrap().unwrap().failures, 1);
        assert_eq!(after.errors.len(), 2);
        // Recording again changes nothing.
        assert_eq!(store.record(id, outcomes, 2, NEVER).await.unwrap().counts, after.counts);
        // A restart now: the 4 claimed in the second batch are interrupted, not resent.
        drop(store);
        // The writer thread lets go of the database as soon as it sees the store dropped.
        let store = loop {
            match HubStore::open(dir.path()) {
                Ok(store) => break store,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        assert_eq!(store.recover(3, NEVER).await.unwrap(), 4);
        let rest = store.claim(id, None, 100).await.unwrap();
        assert_eq!(rest.len(), 2);
        let done = store
            .record(id, rest.into_iter().map(|(s, _)| (s, Outcome::Accepted)).collect(), 4, NEVER)
            .await
            .unwrap();
        assert_eq!((done.status, done.counts.pending(), done.counts.failed), (Status::Done, 0, 5));
        assert_eq!(store.next_due(10).await.unwrap(), None);
        // A send to nobody is done at once.
        let empty = store.create_send(send(Target::User("nobody".into()))).await.unwrap();
        assert_eq!(store.start_send(empty, 1).await.unwrap().status, Status::Done);
    }
}
