//! The embedded backend: a fjall database in the data directory (the engine the push
//! service's embedded store chose by measurement, with the same rule: a write is answered
//! only once it is on disk). One hub process uses it at a time.
//!
//! Writes go through the group-commit writer of `tidings-store` (concurrent writes share
//! an fsync); each is a closure applied inside the batch's transaction, so that every
//! operation sits next to its caller. Reads use snapshots on the blocking pool. Records are
//! JSON ([`record`]).
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `subscriptions` | id (16 bytes: SHA-256 of the endpoint) | [`record::SubscriptionRecord`] |
//! | `topics` | topic, 0, id | (empty) |
//! | `users` | user, 0, id | (empty) |
//! | `topic_counts` | topic | subscriptions to it (u64) |
//! | `sends` | send id (u64) | [`record::SendRecord`] |
//! | `due` | send id | (empty): the sends not finished yet |
//! | `items` | send id, subscription id | 0: unclaimed; 1 and the owner: claimed |
//! | `claims` | owner, send id, subscription id | the lease's end (u64) |
//! | `tokens` | a user token's `jti` | its expiry (u64): tokens already used |
//! | `token_expiry` | expiry (u64), `jti` | (empty): the same tokens in expiry order, to sweep |
//! | `send_keys` | an idempotency key | send id (u64), expiry (u64) |
//! | `send_key_expiry` | expiry (u64), key | (empty) |
//! | `admin_sessions` | SHA-256 of an admin login's id | [`record::AdminSessionRecord`] |
//! | `meta` | `next_send`, `subscriptions`, `flagged`, `deleted_failing`, `schema` | numbers (JSON) |
//!
//! The counters (`meta` and `topic_counts`) change in the same transaction as what they
//! count. A database of the first version (schema 1, no counters) is brought up to date
//! once when opened.

pub mod record;

use super::{ClaimHints, Claimed, Created, Removal, Result, Saved, Store, StoreError};
use crate::model::{
    AdminSession, INTERRUPTED, IdempotencyKey, NewSend, Outcome, Owner, Pruning, QueuedSend, SendStatus,
    Subscription, SubscriptionChange, SubscriptionCounts, SubscriptionId, Target,
};
use crate::ownership::{Change, Planned, Proof, Registration, UserChange, holds, plan};
use fjall::{KeyspaceCreateOptions, Readable, SingleWriterTxDatabase, SingleWriterTxKeyspace};
use record::{AdminSessionRecord, SendRecord, SubscriptionRecord, decode, encode};
use std::any::Any;
use std::path::Path;
use std::sync::Arc;
use tidings_store::embedded::open_database;
use tidings_store::group_commit::{self, Tx, Writer};

/// The most writes committed together.
pub const MAX_BATCH: usize = 1024;
/// The schema this version writes.
const SCHEMA: u64 = 2;
/// An unclaimed item.
const UNCLAIMED: u8 = 0;
/// A claimed item (followed by the owner).
const CLAIMED: u8 = 1;

const NEXT_SEND: &[u8] = b"next_send";
const TOTAL: &[u8] = b"subscriptions";
const FLAGGED: &[u8] = b"flagged";
const DELETED_FAILING: &[u8] = b"deleted_failing";
const SCHEMA_KEY: &[u8] = b"schema";

fn error(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

struct Keyspaces {
    db: SingleWriterTxDatabase,
    subscriptions: SingleWriterTxKeyspace,
    topics: SingleWriterTxKeyspace,
    users: SingleWriterTxKeyspace,
    topic_counts: SingleWriterTxKeyspace,
    sends: SingleWriterTxKeyspace,
    due: SingleWriterTxKeyspace,
    items: SingleWriterTxKeyspace,
    claims: SingleWriterTxKeyspace,
    tokens: SingleWriterTxKeyspace,
    token_expiry: SingleWriterTxKeyspace,
    send_keys: SingleWriterTxKeyspace,
    send_key_expiry: SingleWriterTxKeyspace,
    admin_sessions: SingleWriterTxKeyspace,
    meta: SingleWriterTxKeyspace,
}

type Answer = Result<Box<dyn Any + Send>>;
type Op = Box<dyn Fn(&Keyspaces, &mut Tx<'_>) -> Answer + Send>;

/// The writer applies closures.
struct Closures;

impl group_commit::Apply for Closures {
    type Keyspaces = Keyspaces;
    type Op = Op;
    type Value = Box<dyn Any + Send>;
    type Error = StoreError;

    fn database(ks: &Keyspaces) -> &SingleWriterTxDatabase {
        &ks.db
    }

    fn apply(&mut self, ks: &Keyspaces, tx: &mut Tx<'_>, op: &Op) -> Answer {
        op(ks, tx)
    }
}

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    keyspaces: Arc<Keyspaces>,
    writer: Writer<Closures>,
    /// Where each send's next claim starts, past the deletions (tombstones) of the
    /// recipients recorded so far.
    hints: ClaimHints,
}

fn index_key(name: &str, id: SubscriptionId) -> Vec<u8> {
    [name.as_bytes(), &[0], &id.0].concat()
}

fn item_key(send: u64, id: SubscriptionId) -> Vec<u8> {
    [&send.to_be_bytes()[..], &id.0].concat()
}

fn claim_key(owner: Owner, send: u64, id: SubscriptionId) -> Vec<u8> {
    [&owner.0[..], &send.to_be_bytes(), &id.0].concat()
}

fn get<T: serde::de::DeserializeOwned>(
    tx: &impl Readable,
    space: &SingleWriterTxKeyspace,
    key: &[u8],
) -> Result<Option<T>> {
    tx.get(space, key)?.map(|v| decode(&v)).transpose()
}

fn number(tx: &impl Readable, space: &SingleWriterTxKeyspace, key: &[u8]) -> Result<u64> {
    Ok(get::<u64>(tx, space, key)?.unwrap_or(0))
}

/// Adds `delta` to a counter of `meta`.
fn count(tx: &mut Tx<'_>, meta: &SingleWriterTxKeyspace, key: &[u8], delta: i64) -> Result<()> {
    let value = number(tx, meta, key)?.saturating_add_signed(delta);
    tx.insert(meta, key, encode(&value));
    Ok(())
}

/// Adds `delta` to a topic's count; a topic nobody subscribes to any more is forgotten.
fn count_topic(tx: &mut Tx<'_>, ks: &Keyspaces, topic: &str, delta: i64) -> Result<()> {
    let value = number(tx, &ks.topic_counts, topic.as_bytes())?.saturating_add_signed(delta);
    if value == 0 {
        tx.remove(&ks.topic_counts, topic.as_bytes());
    } else {
        tx.insert(&ks.topic_counts, topic.as_bytes(), encode(&value));
    }
    Ok(())
}

fn id_at(key: &[u8], at: usize) -> Result<SubscriptionId> {
    key.get(at..at + 16)
        .and_then(|s| s.try_into().ok())
        .map(SubscriptionId)
        .ok_or_else(|| error("corrupt key"))
}

fn subscription(tx: &impl Readable, ks: &Keyspaces, id: SubscriptionId) -> Result<Option<Subscription>> {
    Ok(get::<SubscriptionRecord>(tx, &ks.subscriptions, &id.0)?.map(Into::into))
}

fn send_record(tx: &impl Readable, ks: &Keyspaces, id: u64) -> Result<SendRecord> {
    get(tx, &ks.sends, &id.to_be_bytes())?.ok_or_else(|| error(format!("no send {id}")))
}

impl EmbeddedStore {
    /// Opens (or creates) the database in `dir`. Fails if another process has it open.
    pub fn open(dir: &Path) -> Result<Self> {
        let db = open_database(dir, "tidings hub").map_err(|e| StoreError(e.0))?;
        let keyspace = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).map_err(error);
        let keyspaces = Arc::new(Keyspaces {
            subscriptions: keyspace("subscriptions")?,
            topics: keyspace("topics")?,
            users: keyspace("users")?,
            topic_counts: keyspace("topic_counts")?,
            sends: keyspace("sends")?,
            due: keyspace("due")?,
            items: keyspace("items")?,
            claims: keyspace("claims")?,
            tokens: keyspace("tokens")?,
            token_expiry: keyspace("token_expiry")?,
            send_keys: keyspace("send_keys")?,
            send_key_expiry: keyspace("send_key_expiry")?,
            admin_sessions: keyspace("admin_sessions")?,
            meta: keyspace("meta")?,
            db,
        });
        let writer =
            Writer::spawn("tidings-hub-writer", keyspaces.clone(), Closures, MAX_BATCH, MAX_BATCH * 4)
                .map_err(error)?;
        Ok(Self { keyspaces, writer, hints: ClaimHints::default() })
    }

    /// Brings a database of an earlier version up to date; the hub calls it once, before
    /// serving.
    pub async fn upgrade(&self) -> Result<()> {
        self.write(|ks, tx| {
            let schema = number(tx, &ks.meta, SCHEMA_KEY)?;
            if schema >= SCHEMA {
                return Ok(());
            }
            if tx.contains_key(&ks.meta, NEXT_SEND)? || tx.iter(&ks.subscriptions).next().is_some() {
                upgrade_from_first_version(ks, tx)?;
            }
            tx.insert(&ks.meta, SCHEMA_KEY, encode(&SCHEMA));
            Ok(())
        })
        .await
    }

    /// Applies `apply` in the next group commit and answers once it is durable. `apply` may
    /// run more than once (when another write in its batch fails), so it must only read and
    /// write through the transaction.
    async fn write<T: Send + 'static>(
        &self,
        apply: impl Fn(&Keyspaces, &mut Tx<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let op: Op = Box::new(move |ks, tx| apply(ks, tx).map(|v| Box::new(v) as Box<dyn Any + Send>));
        let value = self.writer.write(op).await?;
        value.downcast::<T>().map(|v| *v).map_err(|_| error("the writer answered with the wrong type"))
    }

    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Keyspaces, &fjall::Snapshot) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let ks = self.keyspaces.clone();
        tokio::task::spawn_blocking(move || read(&ks, &ks.db.read_tx())).await.map_err(error)?
    }
}

/// The first version kept no counters and marked claimed items with a bare 1: count, and
/// give those claims an owner no process has (so they are recovered at start).
fn upgrade_from_first_version(ks: &Keyspaces, tx: &mut Tx<'_>) -> Result<()> {
    let (mut total, mut flagged) = (0u64, 0u64);
    let mut topics = std::collections::BTreeMap::<Vec<u8>, u64>::new();
    let records: Vec<_> =
        tx.iter(&ks.subscriptions).map(|e| e.into_inner().map_err(error)).collect::<Result<_>>()?;
    for (_, value) in records {
        let subscription: Subscription = decode::<SubscriptionRecord>(&value)?.into();
        total += 1;
        flagged += u64::from(subscription.flagged());
        for topic in subscription.topics {
            *topics.entry(topic.into_bytes()).or_default() += 1;
        }
    }
    tx.insert(&ks.meta, TOTAL, encode(&total));
    tx.insert(&ks.meta, FLAGGED, encode(&flagged));
    for (topic, n) in topics {
        tx.insert(&ks.topic_counts, topic, encode(&n));
    }
    let claimed: Vec<_> = tx
        .iter(&ks.items)
        .map(|e| e.into_inner().map_err(error))
        .filter(|e| e.as_ref().map_or(true, |(_, v)| v.as_ref() == [CLAIMED]))
        .collect::<Result<_>>()?;
    let gone = Owner([0; 16]);
    for (key, _) in claimed {
        let send = u64::from_be_bytes(
            key.get(..8).and_then(|k| k.try_into().ok()).ok_or_else(|| error("corrupt item"))?,
        );
        let id = id_at(&key, 8)?;
        tx.insert(&ks.items, key, [&[CLAIMED][..], &gone.0].concat());
        tx.insert(&ks.claims, claim_key(gone, send, id), encode(&0u64));
    }
    Ok(())
}

/// What a registration does, as read through `tx`: the record it leads to, or the answer
/// that refuses it (a used token, or a caller who does not hold the subscription).
fn decide(
    ks: &Keyspaces,
    tx: &impl Readable,
    registration: &Registration,
) -> Result<std::result::Result<Planned, Saved>> {
    if let UserChange::Set { jti, .. } = &registration.user
        && tx.contains_key(&ks.tokens, jti.as_bytes())?
    {
        return Ok(Err(Saved::Replayed));
    }
    let existing = subscription(tx, ks, SubscriptionId::of(&registration.endpoint))?;
    let old = match &registration.replacing {
        Some(proof) => subscription(tx, ks, SubscriptionId::of(&proof.endpoint))?,
        None => None,
    };
    Ok(plan(existing.as_ref(), old.as_ref(), registration).map_err(Saved::Refused))
}

/// Deletes a subscription with its index entries and counts.
fn remove_subscription(ks: &Keyspaces, tx: &mut Tx<'_>, id: SubscriptionId) -> Result<Option<Subscription>> {
    let Some(old) = subscription(tx, ks, id)? else {
        return Ok(None);
    };
    for topic in &old.topics {
        tx.remove(&ks.topics, index_key(topic, id));
        count_topic(tx, ks, topic, -1)?;
    }
    if let Some(user) = &old.user {
        tx.remove(&ks.users, index_key(user, id));
    }
    tx.remove(&ks.subscriptions, id.0);
    count(tx, &ks.meta, TOTAL, -1)?;
    if old.flagged() {
        count(tx, &ks.meta, FLAGGED, -1)?;
    }
    Ok(Some(old))
}

/// Stores a subscription not stored yet, with its index entries and counts.
fn insert_subscription(
    ks: &Keyspaces,
    tx: &mut Tx<'_>,
    id: SubscriptionId,
    record: &Subscription,
) -> Result<()> {
    for topic in &record.topics {
        tx.insert(&ks.topics, index_key(topic, id), b"");
        count_topic(tx, ks, topic, 1)?;
    }
    if let Some(user) = &record.user {
        tx.insert(&ks.users, index_key(user, id), b"");
    }
    tx.insert(&ks.subscriptions, id.0, encode(&SubscriptionRecord::from(record)));
    count(tx, &ks.meta, TOTAL, 1)?;
    if record.flagged() {
        count(tx, &ks.meta, FLAGGED, 1)?;
    }
    Ok(())
}

/// Rewrites a stored subscription whose topics and user did not change (its failures did).
fn update_failures(
    ks: &Keyspaces,
    tx: &mut Tx<'_>,
    id: SubscriptionId,
    was: &Subscription,
    now: &Subscription,
) -> Result<()> {
    tx.insert(&ks.subscriptions, id.0, encode(&SubscriptionRecord::from(now)));
    match (was.flagged(), now.flagged()) {
        (false, true) => count(tx, &ks.meta, FLAGGED, 1),
        (true, false) => count(tx, &ks.meta, FLAGGED, -1),
        _ => Ok(()),
    }
}

/// Saves a send, marking it done (and no longer due) when every recipient has an outcome.
fn save_send(
    ks: &Keyspaces,
    tx: &mut Tx<'_>,
    send: &mut QueuedSend,
    cursor: Option<SubscriptionId>,
    now: u64,
) {
    if send.status == SendStatus::Running && send.finished() {
        send.status = SendStatus::Done;
        send.finished_at = Some(now);
        tx.remove(&ks.due, send.id.to_be_bytes());
    }
    tx.insert(&ks.sends, send.id.to_be_bytes(), encode(&SendRecord::new(send, cursor)));
}

/// Up to `limit` recipients of `target` after `cursor`, in id order.
fn recipients(
    ks: &Keyspaces,
    tx: &Tx<'_>,
    target: &Target,
    cursor: Option<SubscriptionId>,
    limit: usize,
) -> Result<Vec<SubscriptionId>> {
    let after = |id: &SubscriptionId| cursor.is_none_or(|c| *id > c);
    let indexed = |space: &SingleWriterTxKeyspace, name: &str| -> Result<Vec<SubscriptionId>> {
        let prefix = [name.as_bytes(), &[0]].concat();
        let start = index_key(name, cursor.unwrap_or(SubscriptionId([0; 16])));
        let end = index_key(name, SubscriptionId([0xff; 16]));
        let mut found = Vec::new();
        for entry in tx.range(space, start..=end) {
            let id = id_at(&entry.key()?, prefix.len())?;
            if after(&id) {
                found.push(id);
                if found.len() >= limit {
                    break;
                }
            }
        }
        Ok(found)
    };
    match target {
        Target::Subscription(id) => Ok(Some(*id)
            .filter(|id| after(id) && tx.contains_key(&ks.subscriptions, id.0).unwrap_or(false))
            .into_iter()
            .collect()),
        Target::User(user) => indexed(&ks.users, user),
        Target::Topic(topic) => indexed(&ks.topics, topic),
        Target::Everyone => {
            let start = cursor.map_or([0; 16], |c| c.0);
            let mut found = Vec::new();
            for entry in tx.range(&ks.subscriptions, start..) {
                let id = id_at(&entry.key()?, 0)?;
                if after(&id) {
                    found.push(id);
                    if found.len() >= limit {
                        break;
                    }
                }
            }
            Ok(found)
        }
    }
}

/// Records one recipient's outcome in `send` and applies what it means for the
/// subscription. A recipient recorded before (no item left) is skipped.
fn record_outcome(
    ks: &Keyspaces,
    tx: &mut Tx<'_>,
    send: &mut QueuedSend,
    sub: SubscriptionId,
    outcome: &Outcome,
    now: u64,
    pruning: Pruning,
) -> Result<()> {
    let key = item_key(send.id, sub);
    let Some(item) = tx.get(&ks.items, &key)? else { return Ok(()) };
    if let Some(owner) = item.get(1..17).and_then(|o| o.try_into().ok()) {
        tx.remove(&ks.claims, claim_key(Owner(owner), send.id, sub));
    }
    tx.remove(&ks.items, key);
    let record = subscription(tx, ks, sub)?;
    match send.count(sub, record.as_ref(), outcome, now, pruning) {
        SubscriptionChange::Keep => {}
        SubscriptionChange::Update(now) => {
            let was = record.expect("an update is of a stored subscription");
            update_failures(ks, tx, sub, &was, &now)?;
        }
        SubscriptionChange::Delete => {
            remove_subscription(ks, tx, sub)?;
        }
        SubscriptionChange::DeleteFailing => {
            remove_subscription(ks, tx, sub)?;
            count(tx, &ks.meta, DELETED_FAILING, 1)?;
        }
    }
    Ok(())
}

impl Store for EmbeddedStore {
    async fn preview(&self, registration: Arc<Registration>) -> Result<Saved> {
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

    async fn register(&self, registration: Arc<Registration>) -> Result<Saved> {
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
                insert_subscription(ks, tx, id, &record)?;
            }
            Ok(Saved::Stored { id, record, change })
        })
        .await
    }

    async fn remove_owned(&self, proof: Proof) -> Result<Removal> {
        self.write(move |ks, tx| {
            let id = SubscriptionId::of(&proof.endpoint);
            match subscription(tx, ks, id)? {
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

    async fn remove_subscription(&self, id: SubscriptionId) -> Result<bool> {
        self.write(move |ks, tx| Ok(remove_subscription(ks, tx, id)?.is_some())).await
    }

    async fn subscription(&self, id: SubscriptionId) -> Result<Option<Subscription>> {
        self.read(move |ks, snap| subscription(snap, ks, id)).await
    }

    async fn subscriptions(
        &self,
        after: Option<SubscriptionId>,
        limit: usize,
    ) -> Result<Vec<(SubscriptionId, Subscription)>> {
        self.read(move |ks, snap| {
            let start = after.map_or([0; 16], |a| a.0);
            let mut found = Vec::new();
            for entry in snap.range(&ks.subscriptions, start..) {
                let (k, v) = entry.into_inner()?;
                let id = id_at(&k, 0)?;
                if Some(id) == after {
                    continue;
                }
                found.push((id, decode::<SubscriptionRecord>(&v)?.into()));
                if found.len() >= limit {
                    break;
                }
            }
            Ok(found)
        })
        .await
    }

    async fn subscription_counts(&self) -> Result<SubscriptionCounts> {
        self.read(move |ks, snap| {
            Ok(SubscriptionCounts {
                total: number(snap, &ks.meta, TOTAL)?,
                flagged: number(snap, &ks.meta, FLAGGED)?,
                deleted_failing: number(snap, &ks.meta, DELETED_FAILING)?,
            })
        })
        .await
    }

    async fn topics(&self) -> Result<Vec<(String, u64)>> {
        self.read(move |ks, snap| {
            snap.iter(&ks.topic_counts)
                .map(|entry| {
                    let (k, v) = entry.into_inner()?;
                    Ok((String::from_utf8_lossy(&k).into_owned(), decode(&v)?))
                })
                .collect()
        })
        .await
    }

    async fn create_send(&self, send: NewSend, key: Option<IdempotencyKey>) -> Result<Created> {
        self.write(move |ks, tx| {
            if let Some(key) = &key
                && let Some(known) = tx.get(&ks.send_keys, key.key.as_bytes())?
            {
                let id = known.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
                let id = id.ok_or_else(|| error("corrupt idempotency key"))?;
                return Ok(Created { send: send_record(tx, ks, id)?.send()?, replayed: true });
            }
            let id = get::<u64>(tx, &ks.meta, NEXT_SEND)?.unwrap_or(1);
            tx.insert(&ks.meta, NEXT_SEND, encode(&(id + 1)));
            let mut queued = QueuedSend::new(id, send.clone());
            tx.insert(&ks.due, id.to_be_bytes(), b"");
            save_send(ks, tx, &mut queued, None, send.created_at);
            if let Some(key) = &key {
                let expires = key.expires.to_be_bytes();
                tx.insert(&ks.send_keys, key.key.as_bytes(), [&id.to_be_bytes()[..], &expires].concat());
                tx.insert(&ks.send_key_expiry, [&expires[..], key.key.as_bytes()].concat(), b"");
            }
            Ok(Created { send: queued, replayed: false })
        })
        .await
    }

    async fn send(&self, id: u64) -> Result<Option<QueuedSend>> {
        self.read(move |ks, snap| {
            get::<SendRecord>(snap, &ks.sends, &id.to_be_bytes())?.map(|r| r.send()).transpose()
        })
        .await
    }

    async fn recent_sends(&self, limit: usize) -> Result<Vec<QueuedSend>> {
        self.read(move |ks, snap| {
            snap.iter(&ks.sends)
                .rev()
                .take(limit)
                .map(|e| decode::<SendRecord>(&e.value()?)?.send())
                .collect()
        })
        .await
    }

    async fn due_sends(&self, now: u64, limit: usize) -> Result<Vec<QueuedSend>> {
        self.read(move |ks, snap| {
            let mut due = Vec::new();
            for entry in snap.iter(&ks.due) {
                let key = entry.key()?;
                if let Some(record) = get::<SendRecord>(snap, &ks.sends, &key)? {
                    let send = record.send()?;
                    if send.send_at <= now {
                        due.push(send);
                        if due.len() >= limit {
                            break;
                        }
                    }
                }
            }
            Ok(due)
        })
        .await
    }

    async fn materialize(&self, id: u64, now: u64, limit: usize) -> Result<QueuedSend> {
        self.write(move |ks, tx| {
            let record = send_record(tx, ks, id)?;
            let mut send = record.send()?;
            let mut cursor = record.cursor();
            if matches!(send.status, SendStatus::Queued | SendStatus::Scheduled) {
                send.status = SendStatus::Running;
                send.started_at = Some(now);
            }
            if send.status == SendStatus::Running && !send.materialized {
                let found = recipients(ks, tx, &send.target, cursor, limit)?;
                for recipient in &found {
                    tx.insert(&ks.items, item_key(id, *recipient), [UNCLAIMED]);
                }
                send.counts.queued += found.len() as u64;
                cursor = found.last().copied().or(cursor);
                send.materialized = found.len() < limit;
            }
            save_send(ks, tx, &mut send, cursor, now);
            Ok(send)
        })
        .await
    }

    async fn claim(&self, id: u64, owner: Owner, lease_until: u64, limit: usize) -> Result<Vec<Claimed>> {
        let hint = self.hints.get(id);
        let mut claimed: Vec<Claimed> = self
            .write(move |ks, tx| {
                // From the hint on, then up to it when that finds none (a released
                // recipient may lie behind it).
                let (first, last) = (SubscriptionId([0; 16]), SubscriptionId([0xff; 16]));
                let mut found = Vec::new();
                let ranges = match hint {
                    Some(hint) => vec![(hint, last), (first, hint)],
                    None => vec![(first, last)],
                };
                for (from, to) in ranges {
                    if !found.is_empty() {
                        break;
                    }
                    for entry in tx.range(&ks.items, item_key(id, from)..=item_key(id, to)) {
                        let (k, v) = entry.into_inner()?;
                        if v.as_ref() == [UNCLAIMED] && found.len() < limit {
                            found.push(id_at(&k, 8)?);
                        }
                        if found.len() >= limit {
                            break;
                        }
                    }
                }
                let lease = encode(&lease_until);
                found
                    .iter()
                    .map(|&sub| {
                        tx.insert(&ks.items, item_key(id, sub), [&[CLAIMED][..], &owner.0].concat());
                        tx.insert(&ks.claims, claim_key(owner, id, sub), lease.clone());
                        Ok((sub, subscription(tx, ks, sub)?))
                    })
                    .collect()
            })
            .await?;
        claimed.sort_by_key(|(id, _)| *id);
        self.hints.update(id, &claimed);
        Ok(claimed)
    }

    async fn renew(&self, owner: Owner, lease_until: u64) -> Result<u64> {
        self.write(move |ks, tx| {
            let keys: Vec<_> =
                tx.prefix(&ks.claims, owner.0).map(|e| e.key().map_err(error)).collect::<Result<_>>()?;
            let lease = encode(&lease_until);
            for key in &keys {
                tx.insert(&ks.claims, key.clone(), lease.clone());
            }
            Ok(keys.len() as u64)
        })
        .await
    }

    async fn release(&self, id: u64, owner: Owner) -> Result<u64> {
        self.write(move |ks, tx| {
            let prefix = [&owner.0[..], &id.to_be_bytes()].concat();
            let mut held = Vec::new();
            for entry in tx.prefix(&ks.claims, &prefix) {
                held.push(id_at(&entry.key().map_err(error)?, prefix.len())?);
            }
            for sub in &held {
                tx.remove(&ks.claims, claim_key(owner, id, *sub));
                tx.insert(&ks.items, item_key(id, *sub), [UNCLAIMED]);
            }
            Ok(held.len() as u64)
        })
        .await
    }

    async fn record(
        &self,
        id: u64,
        outcomes: Vec<(SubscriptionId, Outcome)>,
        now: u64,
        pruning: Pruning,
    ) -> Result<QueuedSend> {
        self.write(move |ks, tx| {
            let record = send_record(tx, ks, id)?;
            let mut send = record.send()?;
            for (sub, outcome) in &outcomes {
                record_outcome(ks, tx, &mut send, *sub, outcome, now, pruning)?;
            }
            save_send(ks, tx, &mut send, record.cursor(), now);
            Ok(send)
        })
        .await
    }

    async fn recover(&self, expired_before: u64, now: u64, pruning: Pruning) -> Result<u64> {
        self.write(move |ks, tx| {
            let mut expired = Vec::new();
            for entry in tx.iter(&ks.claims) {
                let (k, v) = entry.into_inner()?;
                if decode::<u64>(&v)? < expired_before {
                    let send = k.get(16..24).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
                    expired.push((send.ok_or_else(|| error("corrupt claim"))?, id_at(&k, 24)?));
                }
            }
            let interrupted = Outcome::Failed { status: None, reason: INTERRUPTED.into() };
            let mut sends = std::collections::BTreeMap::new();
            for (send, sub) in &expired {
                if !sends.contains_key(send) {
                    let record = send_record(tx, ks, *send)?;
                    sends.insert(*send, (record.send()?, record.cursor()));
                }
                let (queued, _) = sends.get_mut(send).expect("just inserted");
                record_outcome(ks, tx, queued, *sub, &interrupted, now, pruning)?;
            }
            for (mut send, cursor) in sends.into_values() {
                save_send(ks, tx, &mut send, cursor, now);
            }
            Ok(expired.len() as u64)
        })
        .await
    }

    fn exclusive(&self) -> bool {
        true
    }

    async fn sweep(&self, now: u64) -> Result<usize> {
        self.write(move |ks, tx| {
            let mut swept = 0;
            for (index, space) in [(&ks.token_expiry, &ks.tokens), (&ks.send_key_expiry, &ks.send_keys)] {
                let expired: Vec<_> = tx
                    .range(index, ..now.to_be_bytes().to_vec())
                    .take(10_000)
                    .map(|e| e.key().map_err(error))
                    .collect::<Result<_>>()?;
                for key in &expired {
                    tx.remove(space, key.get(8..).unwrap_or_default());
                    tx.remove(index, key.clone());
                }
                swept += expired.len();
            }
            let mut ended = Vec::new();
            for entry in tx.iter(&ks.admin_sessions) {
                let (key, value) = entry.into_inner()?;
                if decode::<AdminSessionRecord>(&value).is_ok_and(|s| AdminSession::from(s).expires <= now) {
                    ended.push(key);
                }
            }
            for key in &ended {
                tx.remove(&ks.admin_sessions, key.clone());
            }
            Ok(swept + ended.len())
        })
        .await
    }

    async fn open_admin_session(&self, key: [u8; 32], session: AdminSession) -> Result<()> {
        self.write(move |ks, tx| {
            tx.insert(&ks.admin_sessions, key, encode(&AdminSessionRecord::from(&session)));
            Ok(())
        })
        .await
    }

    async fn admin_session(&self, key: [u8; 32]) -> Result<Option<AdminSession>> {
        self.read(move |ks, snap| {
            Ok(get::<AdminSessionRecord>(snap, &ks.admin_sessions, &key)?.map(Into::into))
        })
        .await
    }

    async fn close_admin_session(&self, key: [u8; 32]) -> Result<()> {
        self.write(move |ks, tx| {
            tx.remove(&ks.admin_sessions, key);
            Ok(())
        })
        .await
    }

    async fn ready(&self) -> Result<()> {
        if let Some(reason) = self.writer.broken() {
            return Err(error(reason));
        }
        if self.writer.is_closed() {
            return Err(error("the hub's writer has stopped"));
        }
        self.read(|ks, snap| snap.contains_key(&ks.meta, SCHEMA_KEY).map(|_| ()).map_err(error)).await
    }
}

/// For this backend's own tests.
#[cfg(test)]
impl EmbeddedStore {
    /// The database's last sequence number: it moves with every durable write.
    pub fn seqno(&self) -> u64 {
        self.keyspaces.db.read_tx().seqno()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;

    /// A store in a directory removed with the test process (kept open as long as needed).
    fn fresh() -> impl Future<Output = EmbeddedStore> {
        let dir = tempfile::tempdir().unwrap().keep();
        async move {
            let store = EmbeddedStore::open(&dir).unwrap();
            store.upgrade().await.unwrap();
            store
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conforms() {
        conformance::run(fresh).await;
    }

    #[tokio::test]
    async fn an_unchanged_registration_writes_nothing() {
        let store = fresh().await;
        let registration = || Registration {
            endpoint: "https://push.example/1".into(),
            p256dh: "k".into(),
            auth: "a".into(),
            topics: Some(vec!["t".into()]),
            user: UserChange::Keep,
            replacing: None,
            now: 1,
        };
        store.register(Arc::new(registration())).await.unwrap();
        let before = store.seqno();
        let saved = store.register(Arc::new(Registration { topics: None, ..registration() })).await.unwrap();
        assert!(matches!(saved, Saved::Stored { change: Change::Unchanged, .. }));
        assert_eq!(store.seqno(), before, "no durable write when nothing changed");
    }
}
