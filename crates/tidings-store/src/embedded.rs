//! The embedded backend: a fjall database in the data directory, nothing to install.
//!
//! Why fjall: measured on this kind of machine against redb and SQLite (WAL,
//! `synchronous=FULL`) for this workload (durable inserts of messages, and insert + delete
//! pairs while a backlog is stored), fjall committed 2 to 4 times more durable writes per
//! second and kept its commit latency lowest as batches grew; all three survived 20 of 20
//! `kill -9`s mid-commit with nothing acknowledged lost. The numbers are in
//! `docs/storage.md`.
//!
//! How: one writer thread owns every write. It takes all operations waiting in its queue
//! (up to [`MAX_BATCH`]), applies them in one transaction that sees its own writes, and
//! commits with an fsync of the journal; only then does any of them get its answer. Under
//! load many operations share one fsync (group commit); when idle a single operation pays
//! one. Reads use snapshots on the blocking thread pool and never wait for the writer.
//!
//! Layout (all keys big-endian so that prefixes and ranges follow):
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `users` | uaid | last contact (u64) |
//! | `contacts` | last contact (u64), uaid | (empty) |
//! | `channels` | uaid, channel | flags (1), key hash (16, if restricted), pending count (u32) |
//! | `messages` | uaid, id (u64) | see [`record`] |
//! | `topics` | uaid, channel, topic | message id |
//! | `expiry` | expires at (u64), uaid, id | (empty) |
//! | `repeats` | period (u64), uaid, fingerprint (16) | message id |
//! | `meta` | `next_id` | the next message id (u64) |
//! | `meta` | `contacts` | present once `contacts` indexes every user |
//! | `broadcasts` | broadcast id (UTF-8) | its current version (UTF-8) |
//!
//! Message keys are written once and deleted once, so they are removed with fjall's
//! single-delete (`remove_weak`), whose tombstones vanish with the value at compaction:
//! reading a user's messages does not slow down as messages come and go.
//!
//! `repeats` recognises a sender's retry ([`Saved::Repeated`]): each stored message's
//! fingerprint is filed under the [`REPEAT_WINDOW`]-long period it arrived in, and a save
//! looks in the current and the previous period, so a fingerprint is remembered for at least
//! the window. Whole periods are dropped once older than that, oldest first, by the sweep.
//!
//! A user's last contact is recorded coarsely (see [`Store::touch_user`]), so that a
//! reconnecting user agent usually costs a read; `contacts` lets the sweeper find the idle
//! ones without reading every user.
//!
//! Its [`Bus`] is a single node's: an embedded store serves one node, so routing (which node
//! holds a uaid) is kept in memory (connections do not outlive the process), no events come
//! or go, and the endpoint keys stay in the node's data directory.

use crate::group_commit::{self, Tx};
use crate::{
    Added, Bus, Channel, Fingerprint, Message, MessageId, NodeEvent, REPEAT_WINDOW, Result, Saved, Store,
    StoreError,
};
use fjall::{KeyspaceCreateOptions, Readable, SingleWriterTxDatabase, SingleWriterTxKeyspace};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tidings_wire::{ChannelId, Uaid};

pub mod record;

/// The most operations committed together.
pub const MAX_BATCH: usize = 1024;

fn error(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

struct Keyspaces {
    db: SingleWriterTxDatabase,
    users: SingleWriterTxKeyspace,
    contacts: SingleWriterTxKeyspace,
    channels: SingleWriterTxKeyspace,
    messages: SingleWriterTxKeyspace,
    topics: SingleWriterTxKeyspace,
    expiry: SingleWriterTxKeyspace,
    repeats: SingleWriterTxKeyspace,
    meta: SingleWriterTxKeyspace,
    broadcasts: SingleWriterTxKeyspace,
}

/// A write, as the writer thread applies it.
enum Request {
    AddUser(Uaid, u64),
    Touch {
        uaid: Uaid,
        now: u64,
        forget_after: u64,
    },
    ForgetIdle {
        before: u64,
        limit: usize,
    },
    RemoveUser(Uaid),
    AddChannel(Uaid, ChannelId, Channel, usize),
    RemoveChannel(Uaid, ChannelId),
    Save(Save),
    Delete(Uaid, ChannelId, MessageId),
    Sweep(u64, usize),
    /// Drops up to `limit` fingerprints filed in periods before `period`.
    ForgetRepeats {
        period: u64,
        limit: usize,
    },
    SetBroadcast {
        id: String,
        version: String,
    },
}

/// A message to store, with what [`Store::save_message`] was given.
struct Save {
    uaid: Uaid,
    message: Message,
    key_hash: Option<[u8; 16]>,
    max_pending: usize,
    repeat: Option<Repeat>,
}

/// A message's fingerprint and the [`REPEAT_WINDOW`]-long period it arrived in.
#[derive(Clone, Copy)]
struct Repeat {
    fingerprint: Fingerprint,
    period: u64,
}

/// What a write produced.
enum Value {
    Bool(bool),
    Added(Added),
    Unit,
    Saved(Saved),
    Count(usize),
}

/// The embedded store. Cheap to share: clone the `Arc` it lives in.
pub struct EmbeddedStore {
    keyspaces: Arc<Keyspaces>,
    writer: group_commit::Writer<Applier>,
    /// The [`Bus`]'s routes: the uaids connected to this node, the only one.
    routes: Mutex<HashMap<Uaid, String>>,
}

impl EmbeddedStore {
    /// Opens (or creates) the database in `dir`. Fails if another process has it open.
    pub fn open(dir: &Path) -> Result<Self> {
        let db = open_database(dir, "tidings serve")?;
        let keyspace = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).map_err(error);
        let keyspaces = Arc::new(Keyspaces {
            users: keyspace("users")?,
            contacts: keyspace("contacts")?,
            channels: keyspace("channels")?,
            messages: keyspace("messages")?,
            topics: keyspace("topics")?,
            expiry: keyspace("expiry")?,
            repeats: keyspace("repeats")?,
            meta: keyspace("meta")?,
            broadcasts: keyspace("broadcasts")?,
            db,
        });
        index_contacts(&keyspaces)?;
        let next_id = match keyspaces.db.read_tx().get(&keyspaces.meta, b"next_id").map_err(error)? {
            Some(bytes) => record::u64_at(&bytes, 0).ok_or_else(|| StoreError("corrupt next_id".into()))?,
            None => 1,
        };
        let applier = Applier { next_id, first_id: next_id };
        let writer = group_commit::Writer::spawn(
            "tidings-store-writer",
            keyspaces.clone(),
            applier,
            MAX_BATCH,
            MAX_BATCH * 16,
        )
        .map_err(error)?;
        Ok(Self { keyspaces, writer, routes: Mutex::default() })
    }

    async fn write(&self, request: Request) -> Result<Value> {
        self.writer.write(request).await
    }

    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Keyspaces) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let keyspaces = self.keyspaces.clone();
        tokio::task::spawn_blocking(move || read(&keyspaces)).await.map_err(error)?
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, HashMap<Uaid, String>> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Opens (or creates) a fjall database in `dir` for a writer thread with manual journal
/// persistence (each commit chooses its durability). `owner` names the program in the error
/// when another process has the database open.
pub fn open_database(dir: &Path, owner: &str) -> Result<SingleWriterTxDatabase> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
    SingleWriterTxDatabase::builder(dir).manual_journal_persist(true).open().map_err(|e| match e {
        fjall::Error::Locked => {
            StoreError(format!("{} is in use by another process (another {owner}?)", dir.display()))
        }
        e => StoreError(format!("cannot open the database in {}: {e}", dir.display())),
    })
}

/// Builds the `contacts` index of a store written before it existed, recording every user's
/// last contact as now: their real last contacts were not kept, so each gets the whole idle
/// period from the upgrade. In chunks, so that a large store does not need one huge commit;
/// an upgrade cut short is redone from the start, replacing the entries it made.
fn index_contacts(ks: &Keyspaces) -> Result<()> {
    if ks.db.read_tx().contains_key(&ks.meta, b"contacts").map_err(error)? {
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(error)?
        .as_secs()
        .to_be_bytes();
    let mut after: Option<fjall::UserKey> = None;
    loop {
        let mut tx = ks.db.write_tx().durability(Some(fjall::PersistMode::SyncAll));
        let chunk: Vec<fjall::UserKey> = match &after {
            Some(last) => {
                tx.range(&ks.users, (std::ops::Bound::Excluded(last.clone()), std::ops::Bound::Unbounded))
            }
            None => tx.range::<&[u8], _>(&ks.users, ..),
        }
        .take(10_000)
        .map(|entry| entry.into_inner().map_err(error))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .map(|(uaid, before)| {
            // An earlier, interrupted upgrade indexed this user already: drop its entry.
            tx.remove(&ks.contacts, key(&[&before, &uaid]));
            uaid
        })
        .collect();
        for uaid in &chunk {
            tx.insert(&ks.users, uaid.clone(), now.as_slice());
            tx.insert(&ks.contacts, key(&[&now, uaid]), b"".as_slice());
        }
        if chunk.len() < 10_000 {
            tx.insert(&ks.meta, b"contacts".as_slice(), b"".as_slice());
        }
        tx.commit().map_err(error)?;
        match chunk.last() {
            Some(last) if chunk.len() == 10_000 => after = Some(last.clone()),
            _ => return Ok(()),
        }
    }
}

fn bool_of(value: Value) -> Result<bool> {
    match value {
        Value::Bool(b) => Ok(b),
        _ => Err(StoreError("the writer answered with the wrong kind of value".into())),
    }
}

fn key(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

impl Store for EmbeddedStore {
    async fn add_user(&self, uaid: Uaid, now: u64, _forget_after: u64) -> Result<bool> {
        bool_of(self.write(Request::AddUser(uaid, now)).await?)
    }

    async fn touch_user(&self, uaid: Uaid, now: u64, forget_after: u64) -> Result<bool> {
        let last = self.read(move |ks| last_contact(&ks.db.read_tx(), ks, uaid)).await?;
        match last {
            None => Ok(false),
            Some(last) if !stale(last, now, forget_after) => Ok(true),
            // Idle too long (forget it now) or due for a new record: the writer decides.
            Some(_) => bool_of(self.write(Request::Touch { uaid, now, forget_after }).await?),
        }
    }

    async fn forget_idle_users(&self, now: u64, forget_after: u64, limit: usize) -> Result<usize> {
        match self.write(Request::ForgetIdle { before: now.saturating_sub(forget_after), limit }).await? {
            Value::Count(n) => Ok(n),
            _ => Err(StoreError("the writer answered with the wrong kind of value".into())),
        }
    }

    async fn remove_user(&self, uaid: Uaid) -> Result<()> {
        self.write(Request::RemoveUser(uaid)).await.map(|_| ())
    }

    async fn add_channel(
        &self,
        uaid: Uaid,
        channel_id: ChannelId,
        channel: Channel,
        max_channels: usize,
    ) -> Result<Added> {
        match self.write(Request::AddChannel(uaid, channel_id, channel, max_channels)).await? {
            Value::Added(added) => Ok(added),
            _ => Err(StoreError("the writer answered with the wrong kind of value".into())),
        }
    }

    async fn channel(&self, uaid: Uaid, channel_id: ChannelId) -> Result<Option<Channel>> {
        self.read(move |ks| {
            let value = ks.db.read_tx().get(&ks.channels, key(&[&uaid.0, &channel_id.0])).map_err(error)?;
            value.map(|v| record::decode_channel(&v).map(|(c, _)| c)).transpose()
        })
        .await
    }

    async fn remove_channel(&self, uaid: Uaid, channel_id: ChannelId) -> Result<bool> {
        bool_of(self.write(Request::RemoveChannel(uaid, channel_id)).await?)
    }

    async fn save_message(
        &self,
        uaid: Uaid,
        message: Message,
        key_hash: Option<[u8; 16]>,
        max_pending: usize,
        now: u64,
    ) -> Result<Saved> {
        // Hashed here rather than on the writer thread, which every write waits for.
        let repeat =
            message.fingerprint().map(|fingerprint| Repeat { fingerprint, period: now / REPEAT_WINDOW });
        let request = Request::Save(Save { uaid, message, key_hash, max_pending, repeat });
        // A POST waits for no backlog: with the queue full, the sender is told to retry.
        let saved = self.writer.try_write(request).await;
        match saved.ok_or_else(|| StoreError("busy: the write queue is full".into()))?? {
            Value::Saved(saved) => Ok(saved),
            _ => unreachable!("Save answers Saved"),
        }
    }

    async fn messages(
        &self,
        uaid: Uaid,
        after: Option<MessageId>,
        limit: usize,
        now: u64,
    ) -> Result<Vec<Message>> {
        self.read(move |ks| {
            let start = key(&[&uaid.0, &after.map_or(0, |a| a + 1).to_be_bytes()]);
            let end = key(&[&uaid.0, &u64::MAX.to_be_bytes()]);
            let mut found = Vec::new();
            for entry in ks.db.read_tx().range(&ks.messages, start..=end) {
                let (k, v) = entry.into_inner().map_err(error)?;
                let id = record::u64_at(&k, 16).ok_or_else(|| StoreError("corrupt message key".into()))?;
                let message = record::decode_message(id, &v)?;
                if message.expires_at > now {
                    found.push(message);
                    if found.len() >= limit {
                        break;
                    }
                }
            }
            Ok(found)
        })
        .await
    }

    async fn delete_message(&self, uaid: Uaid, channel_id: ChannelId, id: MessageId) -> Result<bool> {
        bool_of(self.write(Request::Delete(uaid, channel_id, id)).await?)
    }

    async fn sweep_expired(&self, now: u64, limit: usize) -> Result<usize> {
        // Fingerprints first, a batch at a time, until the periods that are too old are gone:
        // they are not messages, so they do not count in the answer (nor against `limit`).
        let period = (now / REPEAT_WINDOW).saturating_sub(1);
        while let Value::Count(n) = self.write(Request::ForgetRepeats { period, limit }).await?
            && n >= limit
        {}
        match self.write(Request::Sweep(now, limit)).await? {
            Value::Count(n) => Ok(n),
            _ => unreachable!("Sweep answers Count"),
        }
    }

    async fn set_broadcast(&self, id: &str, version: &str) -> Result<bool> {
        bool_of(self.write(Request::SetBroadcast { id: id.to_owned(), version: version.to_owned() }).await?)
    }

    async fn broadcasts(&self) -> Result<Vec<(String, String)>> {
        self.read(|ks| {
            let text = |bytes: &[u8]| {
                String::from_utf8(bytes.to_vec()).map_err(|_| StoreError("corrupt broadcast record".into()))
            };
            ks.db
                .read_tx()
                .range::<&[u8], _>(&ks.broadcasts, ..)
                .map(|entry| {
                    let (id, version) = entry.into_inner().map_err(error)?;
                    Ok((text(&id)?, text(&version)?))
                })
                .collect()
        })
        .await
    }

    async fn ready(&self) -> Result<()> {
        if let Some(reason) = self.writer.broken() {
            return Err(StoreError(reason.to_owned()));
        }
        if self.writer.is_closed() {
            return Err(StoreError("the store's writer has stopped".into()));
        }
        self.read(|ks| ks.db.read_tx().contains_key(&ks.meta, b"next_id").map(|_| ()).map_err(error)).await
    }
}

/// A bus for one node: an embedded store is open in one process only, so no other node
/// shares it. Routes are kept in memory (connections do not outlive the process), and there
/// is no one to hear events, announcements or keys.
impl Bus for EmbeddedStore {
    async fn set_node(&self, uaid: Uaid, node: &str) -> Result<()> {
        self.routes().insert(uaid, node.to_owned());
        Ok(())
    }

    async fn node(&self, uaid: Uaid) -> Result<Option<String>> {
        Ok(self.routes().get(&uaid).cloned())
    }

    async fn clear_node(&self, uaid: Uaid, node: &str) -> Result<()> {
        let mut routes = self.routes();
        if routes.get(&uaid).is_some_and(|n| n == node) {
            routes.remove(&uaid);
        }
        Ok(())
    }

    /// Routes in memory do not expire: there is nothing to renew.
    async fn refresh_routes(&self, _uaids: &[Uaid], _node: &str) -> Result<()> {
        Ok(())
    }

    /// No other node can send any.
    async fn node_events(&self, _node: &str) -> Result<Option<tokio::sync::mpsc::Receiver<NodeEvent>>> {
        Ok(None)
    }

    /// No other node is running to hear it.
    async fn publish(&self, _node: &str, _event: NodeEvent) -> Result<bool> {
        Ok(false)
    }

    /// The only node is the caller, which applies its own versions as it sets them.
    async fn announce_broadcasts(&self) -> Result<()> {
        Ok(())
    }

    /// No other node to share keys with: the node keeps its own in its data directory.
    async fn shared_endpoint_keys(&self, _candidate: &str) -> Result<Option<String>> {
        Ok(None)
    }
}

/// The writer thread's state: the next message id, and where the batch under way began
/// (restored when it is rolled back).
struct Applier {
    next_id: MessageId,
    first_id: MessageId,
}

impl group_commit::Apply for Applier {
    type Keyspaces = Keyspaces;
    type Op = Request;
    type Value = Value;
    type Error = StoreError;

    fn database(ks: &Keyspaces) -> &SingleWriterTxDatabase {
        &ks.db
    }

    fn apply(&mut self, ks: &Keyspaces, tx: &mut Tx<'_>, request: &Request) -> Result<Value> {
        self.apply_request(ks, tx, request)
    }

    fn begin(&mut self) {
        self.first_id = self.next_id;
    }

    fn before_commit(&mut self, ks: &Keyspaces, tx: &mut Tx<'_>) {
        if self.next_id != self.first_id {
            tx.insert(&ks.meta, b"next_id".as_slice(), self.next_id.to_be_bytes().as_slice());
        }
    }

    fn rolled_back(&mut self) {
        self.next_id = self.first_id;
    }
}

impl Applier {
    fn apply_request(&mut self, ks: &Keyspaces, tx: &mut Tx<'_>, request: &Request) -> Result<Value> {
        match *request {
            Request::AddUser(uaid, now) => {
                let existed = tx.contains_key(&ks.users, uaid.0).map_err(error)?;
                if !existed {
                    record_contact(tx, ks, uaid, None, now);
                }
                Ok(Value::Bool(existed))
            }
            Request::Touch { uaid, now, forget_after } => match last_contact(tx, ks, uaid)? {
                None => Ok(Value::Bool(false)),
                Some(last) if last.saturating_add(forget_after) <= now => {
                    remove_user(tx, ks, uaid)?;
                    Ok(Value::Bool(false))
                }
                Some(last) => {
                    if stale(last, now, forget_after) {
                        record_contact(tx, ks, uaid, Some(last), now);
                    }
                    Ok(Value::Bool(true))
                }
            },
            Request::ForgetIdle { before, limit } => {
                let end = key(&[&before.to_be_bytes(), &[0xff; 16]]);
                let entries: Vec<(fjall::UserKey, u64, Uaid)> = tx
                    .range(&ks.contacts, ..end)
                    .take(limit)
                    .map(|entry| {
                        let k = entry.key().map_err(error)?;
                        let at = record::u64_at(&k, 0).ok_or_else(|| error("corrupt contact key"))?;
                        let uaid = k.get(8..24).and_then(|b| b.try_into().ok()).map(Uaid);
                        Ok((k.clone(), at, uaid.ok_or_else(|| error("corrupt contact key"))?))
                    })
                    .collect::<Result<_>>()?;
                let mut forgotten = 0;
                for (entry, at, uaid) in entries {
                    // The entry goes in any case; the user only if the entry is its current
                    // contact (an entry left behind by an interrupted upgrade is not).
                    tx.remove(&ks.contacts, entry);
                    if last_contact(tx, ks, uaid)? == Some(at) {
                        remove_user(tx, ks, uaid)?;
                        forgotten += 1;
                    }
                }
                Ok(Value::Count(forgotten))
            }
            Request::RemoveUser(uaid) => {
                remove_user(tx, ks, uaid)?;
                Ok(Value::Unit)
            }
            Request::AddChannel(uaid, channel_id, channel, max_channels) => {
                if !tx.contains_key(&ks.users, uaid.0).map_err(error)? {
                    return Ok(Value::Added(Added::NoUser));
                }
                let k = key(&[&uaid.0, &channel_id.0]);
                let pending = match tx.get(&ks.channels, &k).map_err(error)? {
                    Some(old) => record::decode_channel(&old)?.1,
                    None if tx.prefix(&ks.channels, uaid.0).take(max_channels).count() >= max_channels => {
                        return Ok(Value::Added(Added::TooMany));
                    }
                    None => 0,
                };
                tx.insert(&ks.channels, k, record::encode_channel(&channel, pending));
                Ok(Value::Added(Added::Added))
            }
            Request::RemoveChannel(uaid, channel_id) => {
                let k = key(&[&uaid.0, &channel_id.0]);
                if !tx.contains_key(&ks.channels, &k).map_err(error)? {
                    return Ok(Value::Bool(false));
                }
                tx.remove(&ks.channels, k.clone());
                for t in keys_with_prefix(tx, &ks.topics, &k)? {
                    tx.remove(&ks.topics, t);
                }
                for (id, message) in user_messages(tx, ks, uaid)? {
                    if message.channel_id == channel_id {
                        remove_message(tx, ks, uaid, id, &message);
                    }
                }
                Ok(Value::Bool(true))
            }
            Request::Save(ref save) => self.save(ks, tx, save).map(Value::Saved),
            Request::Delete(uaid, channel_id, id) => {
                let Some(value) = tx.get(&ks.messages, key(&[&uaid.0, &id.to_be_bytes()])).map_err(error)?
                else {
                    return Ok(Value::Bool(false));
                };
                let message = record::decode_message(id, &value)?;
                if message.channel_id != channel_id {
                    return Ok(Value::Bool(false));
                }
                remove_message(tx, ks, uaid, id, &message);
                if let Some(topic) = &message.topic {
                    let t = key(&[&uaid.0, &channel_id.0, topic.as_bytes()]);
                    if tx.get(&ks.topics, &t).map_err(error)?.and_then(|v| record::u64_at(&v, 0)) == Some(id)
                    {
                        tx.remove(&ks.topics, t);
                    }
                }
                adjust_pending(tx, ks, uaid, channel_id, -1)?;
                Ok(Value::Bool(true))
            }
            Request::Sweep(now, limit) => {
                let end = key(&[&now.to_be_bytes(), &[0xff; 24]]);
                let expired: Vec<(Uaid, MessageId)> = tx
                    .range(&ks.expiry, ..=end)
                    .take(limit)
                    .map(|entry| {
                        let k = entry.key().map_err(error)?;
                        let uaid = k
                            .get(8..24)
                            .and_then(|b| b.try_into().ok())
                            .ok_or_else(|| error("corrupt expiry key"))?;
                        Ok((Uaid(uaid), record::u64_at(&k, 24).ok_or_else(|| error("corrupt expiry key"))?))
                    })
                    .collect::<Result<_>>()?;
                let mut swept = 0;
                for (uaid, id) in expired {
                    let message_key = key(&[&uaid.0, &id.to_be_bytes()]);
                    if let Some(value) = tx.get(&ks.messages, message_key).map_err(error)? {
                        let message = record::decode_message(id, &value)?;
                        remove_message(tx, ks, uaid, id, &message);
                        if let Some(topic) = &message.topic {
                            tx.remove(&ks.topics, key(&[&uaid.0, &message.channel_id.0, topic.as_bytes()]));
                        }
                        adjust_pending(tx, ks, uaid, message.channel_id, -1)?;
                        swept += 1;
                    }
                }
                Ok(Value::Count(swept))
            }
            Request::ForgetRepeats { period, limit } => {
                let old = keys_in_range(tx, &ks.repeats, ..period.to_be_bytes().to_vec(), limit)?;
                let count = old.len();
                for k in old {
                    tx.remove_weak(&ks.repeats, k);
                }
                Ok(Value::Count(count))
            }
            Request::SetBroadcast { ref id, ref version } => {
                let changed = tx
                    .get(&ks.broadcasts, id.as_bytes())
                    .map_err(error)?
                    .is_none_or(|v| *v != *version.as_bytes());
                if changed {
                    tx.insert(&ks.broadcasts, id.as_bytes(), version.as_bytes());
                }
                Ok(Value::Bool(changed))
            }
        }
    }

    fn save(
        &mut self,
        ks: &Keyspaces,
        tx: &mut Tx<'_>,
        &Save { uaid, ref message, key_hash, max_pending, repeat }: &Save,
    ) -> Result<Saved> {
        let channel_key = key(&[&uaid.0, &message.channel_id.0]);
        let Some(channel) = tx.get(&ks.channels, &channel_key).map_err(error)? else {
            return Ok(Saved::NoChannel);
        };
        let (channel, pending) = record::decode_channel(&channel)?;
        if channel.key_hash != key_hash {
            return Ok(Saved::NoChannel);
        }
        let repeat_key = |period: u64, r: &Repeat| key(&[&period.to_be_bytes(), &uaid.0, &r.fingerprint]);
        if let Some(r) = &repeat {
            for period in [r.period, r.period.saturating_sub(1)] {
                if let Some(first) = tx.get(&ks.repeats, repeat_key(period, r)).map_err(error)? {
                    let id = record::u64_at(&first, 0).ok_or_else(|| error("corrupt repeat record"))?;
                    let pending =
                        tx.contains_key(&ks.messages, key(&[&uaid.0, &id.to_be_bytes()])).map_err(error)?;
                    return Ok(Saved::Repeated { id, pending });
                }
            }
        }
        let topic_key = message.topic.as_ref().map(|t| key(&[&channel_key, t.as_bytes()]));
        let replaced = match &topic_key {
            Some(t) => tx.get(&ks.topics, t).map_err(error)?.and_then(|v| record::u64_at(&v, 0)),
            None => None,
        };
        let replaced = match replaced {
            Some(old) => match tx.get(&ks.messages, key(&[&uaid.0, &old.to_be_bytes()])).map_err(error)? {
                Some(value) => {
                    remove_message(tx, ks, uaid, old, &record::decode_message(old, &value)?);
                    Some(old)
                }
                None => None,
            },
            None => None,
        };
        if replaced.is_none() && pending as usize >= max_pending {
            return Ok(Saved::Full);
        }
        let id = self.next_id;
        self.next_id += 1;
        tx.insert(&ks.messages, key(&[&uaid.0, &id.to_be_bytes()]), record::encode_message(message));
        tx.insert(
            &ks.expiry,
            key(&[&message.expires_at.to_be_bytes(), &uaid.0, &id.to_be_bytes()]),
            b"".as_slice(),
        );
        if let Some(t) = topic_key {
            tx.insert(&ks.topics, t, id.to_be_bytes().as_slice());
        }
        if let Some(r) = &repeat {
            tx.insert(&ks.repeats, repeat_key(r.period, r), id.to_be_bytes().as_slice());
        }
        if replaced.is_none() {
            tx.insert(&ks.channels, channel_key, record::encode_channel(&channel, pending + 1));
        }
        Ok(match replaced {
            Some(old) => Saved::Replaced { id, old },
            None => Saved::Stored(id),
        })
    }
}

/// The user's last recorded contact, if the user exists.
fn last_contact(read: &impl Readable, ks: &Keyspaces, uaid: Uaid) -> Result<Option<u64>> {
    match read.get(&ks.users, uaid.0).map_err(error)? {
        Some(value) => record::u64_at(&value, 0).map(Some).ok_or_else(|| error("corrupt user record")),
        None => Ok(None),
    }
}

/// Whether a contact recorded at `last` is old enough to record again at `now`: an eighth of
/// the idle period, so a user agent's reconnections cost a read, and its record is at most
/// that much older than its real last contact.
fn stale(last: u64, now: u64, forget_after: u64) -> bool {
    now.saturating_sub(last) >= (forget_after / 8).max(1)
}

/// Records the user's contact at `now`, replacing its index entry at `previous`.
fn record_contact(tx: &mut Tx<'_>, ks: &Keyspaces, uaid: Uaid, previous: Option<u64>, now: u64) {
    if let Some(previous) = previous {
        tx.remove(&ks.contacts, key(&[&previous.to_be_bytes(), &uaid.0]));
    }
    tx.insert(&ks.users, uaid.0.as_slice(), now.to_be_bytes().as_slice());
    tx.insert(&ks.contacts, key(&[&now.to_be_bytes(), &uaid.0]), b"".as_slice());
}

/// Removes a user with its contact entry, channels, topics and messages.
fn remove_user(tx: &mut Tx<'_>, ks: &Keyspaces, uaid: Uaid) -> Result<()> {
    if let Some(last) = last_contact(tx, ks, uaid)? {
        tx.remove(&ks.contacts, key(&[&last.to_be_bytes(), &uaid.0]));
    }
    tx.remove(&ks.users, uaid.0.as_slice());
    for space in [&ks.channels, &ks.topics] {
        for k in keys_with_prefix(tx, space, &uaid.0)? {
            tx.remove(space, k);
        }
    }
    for (id, message) in user_messages(tx, ks, uaid)? {
        remove_message(tx, ks, uaid, id, &message);
    }
    Ok(())
}

fn keys_with_prefix(
    tx: &Tx<'_>,
    space: &SingleWriterTxKeyspace,
    prefix: &[u8],
) -> Result<Vec<fjall::UserKey>> {
    tx.prefix(space, prefix).map(|entry| entry.key().map_err(error)).collect()
}

/// Up to `limit` keys of `space` in `range`, in key order.
fn keys_in_range(
    tx: &Tx<'_>,
    space: &SingleWriterTxKeyspace,
    range: impl std::ops::RangeBounds<Vec<u8>>,
    limit: usize,
) -> Result<Vec<fjall::UserKey>> {
    tx.range(space, range).take(limit).map(|entry| entry.key().map_err(error)).collect()
}

fn user_messages(tx: &Tx<'_>, ks: &Keyspaces, uaid: Uaid) -> Result<Vec<(MessageId, Message)>> {
    tx.prefix(&ks.messages, uaid.0)
        .map(|entry| {
            let (k, v) = entry.into_inner().map_err(error)?;
            let id = record::u64_at(&k, 16).ok_or_else(|| error("corrupt message key"))?;
            Ok((id, record::decode_message(id, &v)?))
        })
        .collect()
}

/// Removes a message and its expiry entry (not its topic entry or pending count, which
/// the callers handle as their cases need).
fn remove_message(tx: &mut Tx<'_>, ks: &Keyspaces, uaid: Uaid, id: MessageId, message: &Message) {
    tx.remove_weak(&ks.messages, key(&[&uaid.0, &id.to_be_bytes()]));
    tx.remove_weak(&ks.expiry, key(&[&message.expires_at.to_be_bytes(), &uaid.0, &id.to_be_bytes()]));
}

fn adjust_pending(
    tx: &mut Tx<'_>,
    ks: &Keyspaces,
    uaid: Uaid,
    channel_id: ChannelId,
    delta: i64,
) -> Result<()> {
    let k = key(&[&uaid.0, &channel_id.0]);
    if let Some(value) = tx.get(&ks.channels, &k).map_err(error)? {
        let (channel, pending) = record::decode_channel(&value)?;
        let pending = (i64::from(pending) + delta).max(0) as u32;
        tx.insert(&ks.channels, k, record::encode_channel(&channel, pending));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh store in its own temporary directory (removed with the process's temp dir).
    async fn fresh() -> EmbeddedStore {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tidings-store-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        EmbeddedStore::open(&dir).unwrap()
    }

    crate::store_conformance_tests!(fresh().await);
    crate::bus_conformance_tests!(fresh().await);

    /// Broadcast versions are durable: a node that restarts answers with the versions it had.
    #[tokio::test]
    async fn broadcasts_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("tidings-store-broadcasts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = EmbeddedStore::open(&dir).unwrap();
        assert!(store.set_broadcast("remote-settings/monitor_changes", "\"7\"").await.unwrap());
        drop(store);
        let store = EmbeddedStore::open(&dir).unwrap();
        let expected = vec![("remote-settings/monitor_changes".to_owned(), "\"7\"".to_owned())];
        assert_eq!(store.broadcasts().await.unwrap(), expected);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod repeats_tests {
    use super::*;

    /// A fingerprint survives a restart (it is written with its message), is remembered for
    /// at least the window, and is dropped by the sweep once two periods old.
    #[tokio::test]
    async fn a_fingerprint_lasts_the_window_and_the_restart_then_goes() {
        let dir = std::env::temp_dir().join(format!("tidings-store-repeats-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // The last second of a period: the next save falls in the next period.
        let (uaid, now) = (Uaid([9; 16]), 1_700_000_000 / REPEAT_WINDOW * REPEAT_WINDOW + REPEAT_WINDOW - 1);
        let store = EmbeddedStore::open(&dir).unwrap();
        store.add_user(uaid, now, u64::MAX / 2).await.unwrap();
        store.add_channel(uaid, ChannelId([1; 16]), Channel { key_hash: None }, 10).await.unwrap();
        let mut message = crate::conformance::message(ChannelId([1; 16]), "sealed", None);
        message.expires_at = now + 10 * REPEAT_WINDOW;
        let Saved::Stored(id) = store.save_message(uaid, message.clone(), None, 10, now).await.unwrap()
        else {
            panic!("not stored");
        };
        drop(store);
        let store = EmbeddedStore::open(&dir).unwrap();
        let repeated = Saved::Repeated { id, pending: true };
        for later in [now + 1, now + REPEAT_WINDOW] {
            assert_eq!(store.save_message(uaid, message.clone(), None, 10, later).await.unwrap(), repeated);
        }
        let fingerprints = |store: &EmbeddedStore| {
            store.keyspaces.db.read_tx().range::<&[u8], _>(&store.keyspaces.repeats, ..).count()
        };
        store.sweep_expired(now + REPEAT_WINDOW, 100).await.unwrap();
        assert_eq!(fingerprints(&store), 1, "kept for the window");
        store.sweep_expired(now + 1 + REPEAT_WINDOW, 100).await.unwrap();
        assert_eq!(fingerprints(&store), 0, "dropped once its period is two behind");
        let saved = store.save_message(uaid, message, None, 10, now + 1 + REPEAT_WINDOW).await.unwrap();
        assert!(matches!(saved, Saved::Stored(_)), "{saved:?}");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod contacts_tests {
    use super::*;

    /// A contact entry that is not the user's current one (left by an upgrade that was cut
    /// short and redone) is dropped by the sweep without forgetting the user, and is not
    /// found again.
    #[tokio::test]
    async fn a_stale_contact_entry_forgets_nobody() {
        let dir = std::env::temp_dir().join(format!("tidings-store-contacts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = EmbeddedStore::open(&dir).unwrap();
        let (uaid, now) = (Uaid([7; 16]), 1_700_000_000u64);
        store.add_user(uaid, now, 80).await.unwrap();
        assert!(store.touch_user(uaid, now + 10, 80).await.unwrap());
        let ks = &store.keyspaces;
        let mut tx = ks.db.write_tx();
        tx.insert(&ks.contacts, key(&[&(now - 100).to_be_bytes(), &uaid.0]), b"".as_slice());
        tx.commit().unwrap();
        assert_eq!(store.forget_idle_users(now + 20, 80, 100).await.unwrap(), 0);
        assert!(store.touch_user(uaid, now + 20, 80).await.unwrap(), "the user is still there");
        assert_eq!(
            ks.db.read_tx().range::<&[u8], _>(&ks.contacts, ..).count(),
            1,
            "one entry, the current one"
        );
        // Its real idleness still counts.
        assert_eq!(store.forget_idle_users(now + 100, 80, 100).await.unwrap(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
