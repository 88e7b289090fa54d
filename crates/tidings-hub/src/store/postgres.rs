//! The PostgreSQL backend: one database shared by several hub processes.
//!
//! Tables are created and upgraded by the migrations in `migrations/` (embedded in the
//! binary, applied at start, forward-only; a database whose schema is newer than the
//! binary is refused). Every operation is one transaction; those that conflict with a
//! concurrent one (a deadlock, a serialization failure) are retried.
//!
//! * Registrations of one endpoint are serialized with a transaction-level advisory lock on
//!   its id, so that two browsers' requests cannot both create it.
//! * A used user token is a row of `used_tokens`: inserting it twice fails, whichever hub
//!   answers.
//! * Counters (subscriptions, flagged, deleted, per topic) are sums of shards: each
//!   transaction adds to its connection's shard of each counter it changes, in name order
//!   (no deadlock), so concurrent writers rarely wait for one another.
//! * Recipients are claimed with `FOR UPDATE SKIP LOCKED`: claimers in several hubs take
//!   disjoint batches without waiting for one another.

use super::{ClaimHints, Claimed, Created, Removal, Result, Saved, Store, StoreError};
use crate::model::{
    AdminSession, Content, Counts, INTERRUPTED, IdempotencyKey, NewSend, Outcome, Owner, Pruning, QueuedSend,
    RecipientError, SendStatus, Subscription, SubscriptionChange, SubscriptionCounts, SubscriptionId, Target,
};
use crate::ownership::{Change, Planned, Proof, Registration, UserChange, holds, plan};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{PgConnection, Row};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Shards per counter. A transaction adds to the shard of its database connection (by the
/// server process's id): the connections of one hub, made one after another, rarely share
/// a shard, so writers seldom wait for one another's commits.
const SHARDS: i32 = 64;
/// Connections per hub process.
const POOL: u32 = 16;

type Db<T> = std::result::Result<T, sqlx::Error>;

fn corrupt(what: impl Into<String>) -> sqlx::Error {
    sqlx::Error::Decode(what.into().into())
}

fn store_error(e: sqlx::Error) -> StoreError {
    StoreError(e.to_string())
}

/// Whether a transaction failed only because a concurrent one won (worth running again).
fn retryable(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|d| d.code()).is_some_and(|code| code == "40001" || code == "40P01")
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn uint(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Where each send's next claim starts, past the recipients recorded so far (dead
    /// index entries until the table is vacuumed).
    hints: ClaimHints,
}

/// Why the database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Not a PostgreSQL URL.
    #[error("{0}: give a URL like postgres://user:password@host:5432/database")]
    Url(String),
    /// No connection.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    /// The database has tables of a newer hub.
    #[error(
        "the database's schema (version {0}) is newer than this tidings hub knows: run the newer version, \
         or another database"
    )]
    Newer(i64),
    /// A migration failed.
    #[error("cannot bring the database's schema up to date: {0}")]
    Migrate(String),
}

impl PostgresStore {
    /// Connects to `url` and brings the schema up to date (several hubs starting at once
    /// take turns, by an advisory lock).
    pub async fn connect(url: &str) -> std::result::Result<Self, ConnectError> {
        let options = PgConnectOptions::from_str(url).map_err(|e| ConnectError::Url(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| ConnectError::Connect(e.to_string()))?;
        sqlx::migrate!("./migrations").run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::VersionMissing(version) => ConnectError::Newer(version),
            e => ConnectError::Migrate(e.to_string()),
        })?;
        Ok(Self { pool, hints: ClaimHints::default() })
    }

    /// Runs `work` in a transaction, again when it loses to a concurrent one.
    async fn transaction<T: Send>(
        &self,
        work: impl for<'t> Fn(&'t mut PgConnection) -> Pin<Box<dyn Future<Output = Db<T>> + Send + 't>>
        + Send
        + Sync,
    ) -> Result<T> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut tx = self.pool.begin().await.map_err(store_error)?;
            match work(&mut tx).await {
                Ok(value) => match tx.commit().await {
                    Ok(()) => return Ok(value),
                    Err(e) if retryable(&e) && attempts < 10 => continue,
                    Err(e) => return Err(store_error(e)),
                },
                Err(e) if retryable(&e) && attempts < 10 => {
                    let _ = tx.rollback().await;
                }
                Err(e) => return Err(store_error(e)),
            }
        }
    }

    /// The keys every hub process of the deployment shares: those stored by the first, or
    /// `proposed` (stored now) when there are none yet.
    pub async fn shared_keys(&self, proposed: BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
        let proposed = Arc::new(proposed);
        self.transaction(move |tx| {
            let proposed = proposed.clone();
            Box::pin(async move {
                for (name, value) in proposed.iter() {
                    sqlx::query(
                        "INSERT INTO hub_keys (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                    )
                    .bind(name)
                    .bind(value)
                    .execute(&mut *tx)
                    .await?;
                }
                let rows = sqlx::query("SELECT name, value FROM hub_keys").fetch_all(&mut *tx).await?;
                rows.iter().map(|r| Ok((r.try_get("name")?, r.try_get("value")?))).collect()
            })
        })
        .await
    }

    /// The API keys: (SHA-256 hex, name, created, last used).
    pub async fn api_keys(&self) -> Result<Vec<(String, String, u64, Option<u64>)>> {
        let rows = sqlx::query(
            "SELECT sha256, name, created_at, last_used FROM api_keys ORDER BY created_at, sha256",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter()
            .map(|r| {
                let last: Option<i64> = r.try_get("last_used")?;
                Ok((r.try_get("sha256")?, r.try_get("name")?, uint(r.try_get("created_at")?), last.map(uint)))
            })
            .collect::<Db<_>>()
            .map_err(store_error)
    }

    /// The name and creation of the API key whose hash is `sha256`.
    pub async fn api_key(&self, sha256: &str) -> Result<Option<(String, u64)>> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT name, created_at FROM api_keys WHERE sha256 = $1")
                .bind(sha256)
                .fetch_optional(&self.pool)
                .await
                .map_err(store_error)?;
        Ok(row.map(|(name, created)| (name, uint(created))))
    }

    /// Adds an API key (its hash).
    pub async fn add_api_key(&self, sha256: &str, name: &str, now: u64) -> Result<()> {
        sqlx::query("INSERT INTO api_keys (sha256, name, created_at) VALUES ($1, $2, $3)")
            .bind(sha256)
            .bind(name)
            .bind(int(now))
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(store_error)
    }

    /// Removes an API key by hash.
    pub async fn remove_api_key(&self, sha256: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM api_keys WHERE sha256 = $1")
            .bind(sha256)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() > 0)
    }

    /// Notes when keys were last used.
    pub async fn touch_api_keys(&self, used: &BTreeMap<String, u64>) -> Result<()> {
        let (keys, times): (Vec<String>, Vec<i64>) = used.iter().map(|(k, t)| (k.clone(), int(*t))).unzip();
        sqlx::query(
            "UPDATE api_keys SET last_used = GREATEST(COALESCE(last_used, 0), u.t) \
             FROM UNNEST($1::text[], $2::bigint[]) AS u(k, t) WHERE sha256 = u.k",
        )
        .bind(keys)
        .bind(times)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(store_error)
    }
}

/// Counter changes of one transaction, applied together at its end, in name order.
#[derive(Default)]
struct Deltas(BTreeMap<String, i64>);

impl Deltas {
    fn add(&mut self, name: impl Into<String>, delta: i64) {
        *self.0.entry(name.into()).or_default() += delta;
    }

    fn subscription(&mut self, s: &Subscription, sign: i64) {
        self.add("subscriptions", sign);
        if s.flagged() {
            self.add("flagged", sign);
        }
        for topic in &s.topics {
            self.add(format!("topic:{topic}"), sign);
        }
    }

    async fn apply(self, tx: &mut PgConnection) -> Db<()> {
        let (names, values): (Vec<String>, Vec<i64>) = self.0.into_iter().filter(|(_, v)| *v != 0).unzip();
        if names.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO counters (name, shard, value) SELECT n, pg_backend_pid() % $3, v FROM UNNEST($1::text[], $2::bigint[]) AS d(n, v) \
             ORDER BY n ON CONFLICT (name, shard) DO UPDATE SET value = counters.value + EXCLUDED.value",
        )
        .bind(names)
        .bind(values)
        .bind(SHARDS)
        .execute(&mut *tx)
        .await
        .map(|_| ())
    }
}

const SUBSCRIPTION_COLUMNS: &str =
    "id, endpoint, p256dh, auth, user_id, topics, created_at, failures, failing_since, last_error";

fn subscription_of(row: &PgRow) -> Db<(SubscriptionId, Subscription)> {
    let id: Vec<u8> = row.try_get("id")?;
    let id = SubscriptionId(id.try_into().map_err(|_| corrupt("a subscription id is not 16 bytes"))?);
    let failures: i32 = row.try_get("failures")?;
    let failing_since: Option<i64> = row.try_get("failing_since")?;
    Ok((
        id,
        Subscription {
            endpoint: row.try_get("endpoint")?,
            p256dh: row.try_get("p256dh")?,
            auth: row.try_get("auth")?,
            user: row.try_get("user_id")?,
            topics: row.try_get("topics")?,
            created_at: uint(row.try_get("created_at")?),
            failures: u32::try_from(failures).unwrap_or(0),
            failing_since: failing_since.map(uint),
            last_error: row.try_get("last_error")?,
        },
    ))
}

async fn subscription(tx: &mut PgConnection, id: SubscriptionId, lock: bool) -> Db<Option<Subscription>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let row = sqlx::query(&format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1{lock}"))
        .bind(&id.0[..])
        .fetch_optional(&mut *tx)
        .await?;
    row.map(|r| subscription_of(&r).map(|(_, s)| s)).transpose()
}

async fn insert_subscription(tx: &mut PgConnection, id: SubscriptionId, s: &Subscription) -> Db<()> {
    sqlx::query(&format!(
        "INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(&id.0[..])
    .bind(&s.endpoint)
    .bind(&s.p256dh)
    .bind(&s.auth)
    .bind(&s.user)
    .bind(&s.topics)
    .bind(int(s.created_at))
    .bind(i32::try_from(s.failures).unwrap_or(i32::MAX))
    .bind(s.failing_since.map(int))
    .bind(&s.last_error)
    .execute(&mut *tx)
    .await?;
    if !s.topics.is_empty() {
        sqlx::query(
            "INSERT INTO subscription_topics (topic, subscription) SELECT t, $2 FROM UNNEST($1::text[]) AS t",
        )
        .bind(&s.topics)
        .bind(&id.0[..])
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

async fn delete_subscription(tx: &mut PgConnection, id: SubscriptionId) -> Db<()> {
    sqlx::query("DELETE FROM subscriptions WHERE id = $1").bind(&id.0[..]).execute(&mut *tx).await.map(|_| ())
}

async fn update_failures(tx: &mut PgConnection, id: SubscriptionId, s: &Subscription) -> Db<()> {
    sqlx::query("UPDATE subscriptions SET failures = $2, failing_since = $3, last_error = $4 WHERE id = $1")
        .bind(&id.0[..])
        .bind(i32::try_from(s.failures).unwrap_or(i32::MAX))
        .bind(s.failing_since.map(int))
        .bind(&s.last_error)
        .execute(&mut *tx)
        .await
        .map(|_| ())
}

/// Serializes the transactions about these endpoints (in a fixed order: no deadlock).
async fn lock_endpoints(tx: &mut PgConnection, ids: &mut [SubscriptionId]) -> Db<()> {
    ids.sort();
    for id in ids.iter() {
        let key = i64::from_be_bytes(id.0[..8].try_into().expect("8 bytes"));
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(key).execute(&mut *tx).await?;
    }
    Ok(())
}

/// What a registration does, as read in `tx`: the record it leads to, or the answer that
/// refuses it (a used token, or a caller who does not hold the subscription).
async fn decide(
    tx: &mut PgConnection,
    registration: &Registration,
    lock: bool,
) -> Db<std::result::Result<Planned, Saved>> {
    if let UserChange::Set { jti, .. } = &registration.user {
        let used = sqlx::query("SELECT 1 FROM used_tokens WHERE jti = $1")
            .bind(jti)
            .fetch_optional(&mut *tx)
            .await?;
        if used.is_some() {
            return Ok(Err(Saved::Replayed));
        }
    }
    let existing = subscription(tx, SubscriptionId::of(&registration.endpoint), lock).await?;
    let old = match &registration.replacing {
        Some(proof) => subscription(tx, SubscriptionId::of(&proof.endpoint), lock).await?,
        None => None,
    };
    Ok(plan(existing.as_ref(), old.as_ref(), registration).map_err(Saved::Refused))
}

async fn register(tx: &mut PgConnection, registration: &Registration) -> Db<Saved> {
    let mut ids = vec![SubscriptionId::of(&registration.endpoint)];
    ids.extend(registration.replacing.as_ref().map(|p| SubscriptionId::of(&p.endpoint)));
    lock_endpoints(tx, &mut ids).await?;
    let Planned { record, change, removes_old } = match decide(tx, registration, true).await? {
        Ok(planned) => planned,
        Err(refused) => return Ok(refused),
    };
    if let UserChange::Set { jti, expires, .. } = &registration.user {
        let inserted = sqlx::query(
            "INSERT INTO used_tokens (jti, expires) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(int(*expires))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(Saved::Replayed);
        }
    }
    let id = SubscriptionId::of(&record.endpoint);
    let mut deltas = Deltas::default();
    if removes_old && let Some(proof) = &registration.replacing {
        let old_id = SubscriptionId::of(&proof.endpoint);
        if let Some(old) = subscription(tx, old_id, false).await? {
            delete_subscription(tx, old_id).await?;
            deltas.subscription(&old, -1);
        }
    }
    if change != Change::Unchanged {
        if let Some(was) = subscription(tx, id, false).await? {
            delete_subscription(tx, id).await?;
            deltas.subscription(&was, -1);
        }
        insert_subscription(tx, id, &record).await?;
        deltas.subscription(&record, 1);
    }
    deltas.apply(tx).await?;
    Ok(Saved::Stored { id, record, change })
}

const SEND_COLUMNS: &str = "id, target_kind, target, payload, ttl, urgency, topic, created_at, send_at, status, \
     started_at, materialized, cursor, queued, accepted, gone, rejected, failed, errors::text AS errors, finished_at, \
     deleted_failing";

#[derive(serde::Serialize, serde::Deserialize)]
struct ErrorJson {
    subscription: String,
    endpoint: String,
    status: Option<u16>,
    reason: String,
}

fn send_of(row: &PgRow) -> Db<(QueuedSend, Option<SubscriptionId>)> {
    let id = uint(row.try_get("id")?);
    let bad = |what: &str| corrupt(format!("send {id}: {what}"));
    let target: Option<String> = row.try_get("target")?;
    let kind: String = row.try_get("target_kind")?;
    let target = match (kind.as_str(), target) {
        ("subscription", Some(t)) => {
            Target::Subscription(SubscriptionId::parse(&t).ok_or_else(|| bad("target"))?)
        }
        ("user", Some(t)) => Target::User(t),
        ("topic", Some(t)) => Target::Topic(t),
        ("everyone", _) => Target::Everyone,
        _ => return Err(bad("target")),
    };
    let status: String = row.try_get("status")?;
    let urgency: Option<String> = row.try_get("urgency")?;
    let topic: Option<String> = row.try_get("topic")?;
    let ttl: i32 = row.try_get("ttl")?;
    let errors: String = row.try_get("errors")?;
    let errors: Vec<ErrorJson> = serde_json::from_str(&errors).map_err(|_| bad("errors"))?;
    let started_at: Option<i64> = row.try_get("started_at")?;
    let finished_at: Option<i64> = row.try_get("finished_at")?;
    let cursor: Option<Vec<u8>> = row.try_get("cursor")?;
    let cursor = cursor.map(|c| c.try_into().map(SubscriptionId).map_err(|_| bad("cursor"))).transpose()?;
    let count = |name: &str| -> Db<u64> { Ok(uint(row.try_get(name)?)) };
    let send = QueuedSend {
        id,
        target,
        content: Content {
            payload: row.try_get("payload")?,
            ttl: u32::try_from(ttl).unwrap_or(0),
            urgency: urgency.map(|u| u.parse()).transpose().map_err(|_| bad("urgency"))?,
            topic: topic.map(|t| t.parse()).transpose().map_err(|_| bad("topic"))?,
        },
        created_at: count("created_at")?,
        send_at: count("send_at")?,
        status: SendStatus::from_name(&status).ok_or_else(|| bad("status"))?,
        started_at: started_at.map(uint),
        materialized: row.try_get("materialized")?,
        counts: Counts {
            queued: count("queued")?,
            accepted: count("accepted")?,
            gone: count("gone")?,
            rejected: count("rejected")?,
            failed: count("failed")?,
        },
        errors: errors
            .into_iter()
            .map(|e| {
                Ok(RecipientError {
                    subscription: SubscriptionId::parse(&e.subscription).ok_or_else(|| bad("error"))?,
                    endpoint: e.endpoint,
                    status: e.status,
                    reason: e.reason,
                })
            })
            .collect::<Db<_>>()?,
        finished_at: finished_at.map(uint),
        deleted_failing: count("deleted_failing")?,
    };
    Ok((send, cursor))
}

async fn send(
    tx: &mut PgConnection,
    id: u64,
    lock: bool,
) -> Db<Option<(QueuedSend, Option<SubscriptionId>)>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let row = sqlx::query(&format!("SELECT {SEND_COLUMNS} FROM sends WHERE id = $1{lock}"))
        .bind(int(id))
        .fetch_optional(&mut *tx)
        .await?;
    row.as_ref().map(send_of).transpose()
}

/// Saves what changes in a send as it runs: status, progress, counts, errors.
async fn save_send(
    tx: &mut PgConnection,
    send: &mut QueuedSend,
    cursor: Option<SubscriptionId>,
    now: u64,
) -> Db<()> {
    if send.status == SendStatus::Running && send.finished() {
        send.status = SendStatus::Done;
        send.finished_at = Some(now);
    }
    let errors: Vec<ErrorJson> = send
        .errors
        .iter()
        .map(|e| ErrorJson {
            subscription: e.subscription.to_string(),
            endpoint: e.endpoint.clone(),
            status: e.status,
            reason: e.reason.clone(),
        })
        .collect();
    let c = send.counts;
    sqlx::query(
        "UPDATE sends SET status = $2, started_at = $3, materialized = $4, cursor = $5, queued = $6, accepted = $7, \
         gone = $8, rejected = $9, failed = $10, errors = $11::jsonb, finished_at = $12, deleted_failing = $13 WHERE id = $1",
    )
    .bind(int(send.id))
    .bind(send.status.name())
    .bind(send.started_at.map(int))
    .bind(send.materialized)
    .bind(cursor.map(|c| c.0.to_vec()))
    .bind(int(c.queued))
    .bind(int(c.accepted))
    .bind(int(c.gone))
    .bind(int(c.rejected))
    .bind(int(c.failed))
    .bind(serde_json::to_string(&errors).expect("errors serialize"))
    .bind(send.finished_at.map(int))
    .bind(int(send.deleted_failing))
    .execute(&mut *tx)
    .await
    .map(|_| ())
}

/// Records outcomes of one send's recipients in `tx` (see [`Store::record`]).
async fn record(
    tx: &mut PgConnection,
    id: u64,
    outcomes: &[(SubscriptionId, Outcome)],
    now: u64,
    pruning: Pruning,
) -> Db<QueuedSend> {
    let (mut queued, cursor) = send(tx, id, true).await?.ok_or_else(|| corrupt(format!("no send {id}")))?;
    let ids: Vec<Vec<u8>> = outcomes.iter().map(|(s, _)| s.0.to_vec()).collect();
    let pending: Vec<Vec<u8>> = sqlx::query_scalar(
        "DELETE FROM send_items WHERE send_id = $1 AND subscription = ANY($2) RETURNING subscription",
    )
    .bind(int(id))
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    let pending: std::collections::HashSet<Vec<u8>> = pending.into_iter().collect();
    let recorded: Vec<&(SubscriptionId, Outcome)> =
        outcomes.iter().filter(|(s, _)| pending.contains(&s.0[..])).collect();
    let records = changing_subscriptions(tx, &recorded).await?;
    let mut deltas = Deltas::default();
    for (sub, outcome) in recorded {
        let record = records.get(sub);
        match queued.count(*sub, record, outcome, now, pruning) {
            SubscriptionChange::Keep => {}
            SubscriptionChange::Update(now) => {
                if let Some(was) = record {
                    deltas.add("flagged", i64::from(now.flagged()) - i64::from(was.flagged()));
                }
                update_failures(tx, *sub, &now).await?;
            }
            change @ (SubscriptionChange::Delete | SubscriptionChange::DeleteFailing) => {
                if let Some(was) = record {
                    delete_subscription(tx, *sub).await?;
                    deltas.subscription(was, -1);
                }
                if change == SubscriptionChange::DeleteFailing {
                    deltas.add("deleted_failing", 1);
                }
            }
        }
    }
    deltas.apply(tx).await?;
    save_send(tx, &mut queued, cursor, now).await?;
    Ok(queued)
}

/// The subscriptions that `outcomes` change, locked: those that did not answer "accepted",
/// and those that did but were failing (their run of failures ends). Most outcomes are
/// successes of healthy subscriptions, which change nothing but the send's counts, and are
/// neither read nor locked.
async fn changing_subscriptions(
    tx: &mut PgConnection,
    outcomes: &[&(SubscriptionId, Outcome)],
) -> Db<HashMap<SubscriptionId, Subscription>> {
    let (accepted, others): (Vec<_>, Vec<_>) = outcomes.iter().partition(|(_, o)| *o == Outcome::Accepted);
    let ids =
        |list: Vec<&&(SubscriptionId, Outcome)>| list.iter().map(|(s, _)| s.0.to_vec()).collect::<Vec<_>>();
    let rows = sqlx::query(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ANY($2) \
         OR (id = ANY($1) AND (failures > 0 OR last_error IS NOT NULL)) ORDER BY id FOR UPDATE"
    ))
    .bind(ids(accepted))
    .bind(ids(others))
    .fetch_all(&mut *tx)
    .await?;
    rows.iter().map(subscription_of).collect()
}

/// Claims up to `limit` unclaimed items of send `id` after `after`, in order, and reads
/// their subscriptions in the same statement.
async fn claim_after(
    conn: &mut PgConnection,
    id: u64,
    owner: Owner,
    lease_until: u64,
    limit: usize,
    after: Option<SubscriptionId>,
) -> Db<Vec<Claimed>> {
    let rows = sqlx::query(&format!(
        "WITH claimed AS (UPDATE send_items SET owner = $2, lease_until = $3 WHERE (send_id, subscription) IN \
         (SELECT send_id, subscription FROM send_items WHERE send_id = $1 AND subscription > $5 \
          AND owner IS NULL ORDER BY subscription LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING subscription) \
         SELECT claimed.subscription AS claimed, {SUBSCRIPTION_COLUMNS} \
         FROM claimed LEFT JOIN subscriptions ON id = claimed.subscription ORDER BY claimed.subscription"
    ))
    .bind(int(id))
    .bind(owner.0.to_vec())
    .bind(int(lease_until))
    .bind(int(limit as u64))
    .bind(after.map_or(Vec::new(), |a| a.0.to_vec()))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            let claimed: Vec<u8> = row.try_get("claimed")?;
            let claimed =
                SubscriptionId(claimed.try_into().map_err(|_| corrupt("an item id is not 16 bytes"))?);
            let deleted = row.try_get::<Option<Vec<u8>>, _>("id")?.is_none();
            Ok((claimed, if deleted { None } else { Some(subscription_of(row)?.1) }))
        })
        .collect()
}

fn target_columns(target: &Target) -> (&'static str, Option<String>) {
    match target {
        Target::Subscription(id) => ("subscription", Some(id.to_string())),
        Target::User(u) => ("user", Some(u.clone())),
        Target::Topic(t) => ("topic", Some(t.clone())),
        Target::Everyone => ("everyone", None),
    }
}

impl Store for PostgresStore {
    async fn preview(&self, registration: Arc<Registration>) -> Result<Saved> {
        let mut conn = self.pool.acquire().await.map_err(store_error)?;
        let decided = decide(&mut conn, &registration, false).await.map_err(store_error)?;
        Ok(match decided {
            Ok(Planned { record, change, .. }) => {
                Saved::Stored { id: SubscriptionId::of(&record.endpoint), record, change }
            }
            Err(refused) => refused,
        })
    }

    async fn register(&self, registration: Arc<Registration>) -> Result<Saved> {
        self.transaction(move |tx| {
            let registration = registration.clone();
            Box::pin(async move { register(tx, &registration).await })
        })
        .await
    }

    async fn remove_owned(&self, proof: Proof) -> Result<Removal> {
        let proof = Arc::new(proof);
        self.transaction(move |tx| {
            let proof = proof.clone();
            Box::pin(async move {
                let id = SubscriptionId::of(&proof.endpoint);
                lock_endpoints(tx, &mut [id]).await?;
                match subscription(tx, id, true).await? {
                    None => Ok(Removal::Unknown),
                    Some(stored) if !holds(&stored, &proof.auth) => Ok(Removal::NotOwner),
                    Some(stored) => {
                        delete_subscription(tx, id).await?;
                        let mut deltas = Deltas::default();
                        deltas.subscription(&stored, -1);
                        deltas.apply(tx).await?;
                        Ok(Removal::Removed)
                    }
                }
            })
        })
        .await
    }

    async fn remove_subscription(&self, id: SubscriptionId) -> Result<bool> {
        self.transaction(move |tx| {
            Box::pin(async move {
                lock_endpoints(tx, &mut [id]).await?;
                let Some(stored) = subscription(tx, id, true).await? else { return Ok(false) };
                delete_subscription(tx, id).await?;
                let mut deltas = Deltas::default();
                deltas.subscription(&stored, -1);
                deltas.apply(tx).await?;
                Ok(true)
            })
        })
        .await
    }

    async fn subscription(&self, id: SubscriptionId) -> Result<Option<Subscription>> {
        let mut conn = self.pool.acquire().await.map_err(store_error)?;
        subscription(&mut conn, id, false).await.map_err(store_error)
    }

    async fn subscriptions(
        &self,
        after: Option<SubscriptionId>,
        limit: usize,
    ) -> Result<Vec<(SubscriptionId, Subscription)>> {
        let rows = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after.map_or(Vec::new(), |a| a.0.to_vec()))
        .bind(int(limit as u64))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter().map(subscription_of).collect::<Db<_>>().map_err(store_error)
    }

    async fn subscription_counts(&self) -> Result<SubscriptionCounts> {
        let rows = sqlx::query(
            "SELECT name, SUM(value)::bigint AS value FROM counters \
             WHERE name IN ('subscriptions', 'flagged', 'deleted_failing') GROUP BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        let mut counts = SubscriptionCounts::default();
        for row in rows {
            let name: String = row.try_get("name").map_err(store_error)?;
            let value = uint(row.try_get("value").map_err(store_error)?);
            match name.as_str() {
                "subscriptions" => counts.total = value,
                "flagged" => counts.flagged = value,
                _ => counts.deleted_failing = value,
            }
        }
        Ok(counts)
    }

    async fn topics(&self) -> Result<Vec<(String, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT substr(name, 7), SUM(value)::bigint FROM counters WHERE name LIKE 'topic:%' \
             GROUP BY name HAVING SUM(value) > 0 ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(rows.into_iter().map(|(topic, n)| (topic, uint(n))).collect())
    }

    async fn create_send(&self, new: NewSend, key: Option<IdempotencyKey>) -> Result<Created> {
        let (new, key) = (Arc::new(new), Arc::new(key));
        self.transaction(move |tx| {
            let (new, key) = (new.clone(), key.clone());
            Box::pin(async move {
                if let Some(key) = key.as_ref() {
                    // One request at a time per key, whichever hub answers.
                    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(&key.key).execute(&mut *tx).await?;
                    let known: Option<i64> =
                        sqlx::query_scalar("SELECT id FROM sends WHERE idempotency_key = $1").bind(&key.key).fetch_optional(&mut *tx).await?;
                    if let Some(id) = known {
                        let (send, _) = send(tx, uint(id), false).await?.ok_or_else(|| corrupt("the keyed send"))?;
                        return Ok(Created { send, replayed: true });
                    }
                }
                let queued = QueuedSend::new(0, new.as_ref().clone());
                let (kind, target) = target_columns(&queued.target);
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO sends (target_kind, target, payload, ttl, urgency, topic, created_at, send_at, status, \
                     idempotency_key, idempotency_expires) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
                )
                .bind(kind)
                .bind(target)
                .bind(&queued.content.payload)
                .bind(i32::try_from(queued.content.ttl).unwrap_or(i32::MAX))
                .bind(queued.content.urgency.map(|u| u.to_string()))
                .bind(queued.content.topic.as_ref().map(|t| t.to_string()))
                .bind(int(queued.created_at))
                .bind(int(queued.send_at))
                .bind(queued.status.name())
                .bind(key.as_ref().as_ref().map(|k| k.key.clone()))
                .bind(key.as_ref().as_ref().map(|k| int(k.expires)))
                .fetch_one(&mut *tx)
                .await?;
                Ok(Created { send: QueuedSend { id: uint(id), ..queued }, replayed: false })
            })
        })
        .await
    }

    async fn send(&self, id: u64) -> Result<Option<QueuedSend>> {
        let mut conn = self.pool.acquire().await.map_err(store_error)?;
        Ok(send(&mut conn, id, false).await.map_err(store_error)?.map(|(s, _)| s))
    }

    async fn recent_sends(&self, limit: usize) -> Result<Vec<QueuedSend>> {
        let rows = sqlx::query(&format!("SELECT {SEND_COLUMNS} FROM sends ORDER BY id DESC LIMIT $1"))
            .bind(int(limit as u64))
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        rows.iter().map(|r| send_of(r).map(|(s, _)| s)).collect::<Db<_>>().map_err(store_error)
    }

    async fn due_sends(&self, now: u64, limit: usize) -> Result<Vec<QueuedSend>> {
        let rows = sqlx::query(&format!(
            "SELECT {SEND_COLUMNS} FROM sends WHERE status <> 'done' AND send_at <= $1 ORDER BY id LIMIT $2"
        ))
        .bind(int(now))
        .bind(int(limit as u64))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter().map(|r| send_of(r).map(|(s, _)| s)).collect::<Db<_>>().map_err(store_error)
    }

    async fn materialize(&self, id: u64, now: u64, limit: usize) -> Result<QueuedSend> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let (mut queued, mut cursor) = send(tx, id, true).await?.ok_or_else(|| corrupt(format!("no send {id}")))?;
                if matches!(queued.status, SendStatus::Queued | SendStatus::Scheduled) {
                    queued.status = SendStatus::Running;
                    queued.started_at = Some(now);
                }
                if queued.status == SendStatus::Running && !queued.materialized {
                    let after = cursor.map_or(Vec::new(), |c| c.0.to_vec());
                    // The next recipients after the cursor, in id order, written as items.
                    let insert = |source: &str| {
                        format!(
                            "INSERT INTO send_items (send_id, subscription) SELECT $1, id FROM \
                             ({source} ORDER BY 1 LIMIT $3) AS r ON CONFLICT DO NOTHING RETURNING subscription"
                        )
                    };
                    let (id, limit) = (int(id), int(limit as u64));
                    let written: Vec<Vec<u8>> = match &queued.target {
                        Target::Subscription(s) => {
                            let sql = insert("SELECT id FROM subscriptions WHERE id = $4 AND id > $2");
                            let query = sqlx::query_scalar(&sql).bind(id).bind(after).bind(limit).bind(s.0.to_vec());
                            query.fetch_all(&mut *tx).await?
                        }
                        Target::User(user) => {
                            let sql = insert("SELECT id FROM subscriptions WHERE user_id = $4 AND id > $2");
                            let query = sqlx::query_scalar(&sql).bind(id).bind(after).bind(limit).bind(user);
                            query.fetch_all(&mut *tx).await?
                        }
                        Target::Topic(topic) => {
                            let sql = insert(
                                "SELECT subscription AS id FROM subscription_topics WHERE topic = $4 AND subscription > $2",
                            );
                            let query = sqlx::query_scalar(&sql).bind(id).bind(after).bind(limit).bind(topic);
                            query.fetch_all(&mut *tx).await?
                        }
                        Target::Everyone => {
                            let sql = insert("SELECT id FROM subscriptions WHERE id > $2");
                            let query = sqlx::query_scalar(&sql).bind(id).bind(after).bind(limit);
                            query.fetch_all(&mut *tx).await?
                        }
                    };
                    queued.counts.queued += written.len() as u64;
                    if let Some(last) = written.iter().max() {
                        cursor = Some(SubscriptionId(last.clone().try_into().map_err(|_| corrupt("an item id"))?));
                    }
                    queued.materialized = (written.len() as i64) < limit;
                }
                save_send(tx, &mut queued, cursor, now).await?;
                Ok(queued)
            })
        })
        .await
    }

    async fn claim(&self, id: u64, owner: Owner, lease_until: u64, limit: usize) -> Result<Vec<Claimed>> {
        let hint = self.hints.get(id);
        let mut conn = self.pool.acquire().await.map_err(store_error)?;
        let mut claimed =
            claim_after(&mut conn, id, owner, lease_until, limit, hint).await.map_err(store_error)?;
        if claimed.is_empty() && hint.is_some() {
            // A recipient given back, or skipped while another hub held it, may lie behind
            // the hint: looked for once none is left after it (looking each time a batch
            // comes up short, at the end of each materialized chunk, costs a third of the
            // throughput).
            claimed =
                claim_after(&mut conn, id, owner, lease_until, limit, None).await.map_err(store_error)?;
        }
        self.hints.update(id, &claimed);
        Ok(claimed)
    }

    async fn renew(&self, owner: Owner, lease_until: u64) -> Result<u64> {
        let done = sqlx::query("UPDATE send_items SET lease_until = $2 WHERE owner = $1")
            .bind(&owner.0[..])
            .bind(int(lease_until))
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected())
    }

    async fn release(&self, id: u64, owner: Owner) -> Result<u64> {
        sqlx::query(
            "UPDATE send_items SET owner = NULL, lease_until = NULL WHERE send_id = $1 AND owner = $2",
        )
        .bind(int(id))
        .bind(&owner.0[..])
        .execute(&self.pool)
        .await
        .map(|done| done.rows_affected())
        .map_err(store_error)
    }

    async fn record(
        &self,
        id: u64,
        outcomes: Vec<(SubscriptionId, Outcome)>,
        now: u64,
        pruning: Pruning,
    ) -> Result<QueuedSend> {
        let outcomes = Arc::new(outcomes);
        self.transaction(move |tx| {
            let outcomes = outcomes.clone();
            Box::pin(async move {
                // Committed durably, like everything else: a send task gives back the claims
                // it still holds when it ends (those it never sent), so an outcome lost in a
                // crash would have its recipient sent twice.
                record(tx, id, &outcomes, now, pruning).await
            })
        })
        .await
    }

    async fn recover(&self, expired_before: u64, now: u64, pruning: Pruning) -> Result<u64> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let expired: Vec<(i64, Vec<u8>)> = sqlx::query_as(
                    "SELECT send_id, subscription FROM send_items WHERE owner IS NOT NULL AND lease_until < $1 \
                     ORDER BY send_id, subscription LIMIT 10000 FOR UPDATE SKIP LOCKED",
                )
                .bind(int(expired_before))
                .fetch_all(&mut *tx)
                .await?;
                let mut by_send: BTreeMap<u64, Vec<(SubscriptionId, Outcome)>> = BTreeMap::new();
                let interrupted = Outcome::Failed { status: None, reason: INTERRUPTED.into() };
                for (send, sub) in &expired {
                    let sub = SubscriptionId(sub.clone().try_into().map_err(|_| corrupt("an item id"))?);
                    by_send.entry(uint(*send)).or_default().push((sub, interrupted.clone()));
                }
                for (send, outcomes) in &by_send {
                    record(tx, *send, outcomes, now, pruning).await?;
                }
                Ok(expired.len() as u64)
            })
        })
        .await
    }

    fn exclusive(&self) -> bool {
        false
    }

    async fn sweep(&self, now: u64) -> Result<usize> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let tokens = sqlx::query("DELETE FROM used_tokens WHERE expires < $1")
                    .bind(int(now))
                    .execute(&mut *tx)
                    .await?;
                let sessions = sqlx::query("DELETE FROM admin_sessions WHERE expires <= $1")
                    .bind(int(now))
                    .execute(&mut *tx)
                    .await?;
                let keys = sqlx::query(
                    "UPDATE sends SET idempotency_key = NULL, idempotency_expires = NULL \
                     WHERE idempotency_key IS NOT NULL AND idempotency_expires < $1",
                )
                .bind(int(now))
                .execute(&mut *tx)
                .await?;
                Ok((tokens.rows_affected() + sessions.rows_affected() + keys.rows_affected()) as usize)
            })
        })
        .await
    }

    async fn open_admin_session(&self, key: [u8; 32], session: AdminSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO admin_sessions (key, expires, secret) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET expires = EXCLUDED.expires, secret = EXCLUDED.secret",
        )
        .bind(&key[..])
        .bind(int(session.expires))
        .bind(&session.secret)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(store_error)
    }

    async fn admin_session(&self, key: [u8; 32]) -> Result<Option<AdminSession>> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT expires, secret FROM admin_sessions WHERE key = $1")
                .bind(&key[..])
                .fetch_optional(&self.pool)
                .await
                .map_err(store_error)?;
        Ok(row.map(|(expires, secret)| AdminSession { expires: uint(expires), secret }))
    }

    async fn close_admin_session(&self, key: [u8; 32]) -> Result<()> {
        sqlx::query("DELETE FROM admin_sessions WHERE key = $1")
            .bind(&key[..])
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(store_error)
    }

    async fn ready(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ()).map_err(store_error)
    }
}

/// Fresh databases on the test server, for this crate's tests and the CLI's.
#[cfg(test)]
pub mod testing {
    use super::PostgresStore;
    use sqlx::Connection as _;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The server tests use: `TIDINGS_TEST_POSTGRES_URL`, else the local default that
    /// `scripts/test` starts when none is listening.
    pub fn server() -> String {
        std::env::var("TIDINGS_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    async fn admin() -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&server()).await.unwrap_or_else(|e| {
            panic!("no PostgreSQL at {} ({e}): run scripts/test, which starts one", server())
        })
    }

    /// A new, empty database, named for `label` (the test's); its URL.
    pub async fn database(label: &str) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name =
            format!("tidings_test_{}_{label}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let mut admin = admin().await;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
        let server = server();
        let base = server.rsplit_once('/').map_or(server.as_str(), |(base, _)| base);
        format!("{base}/{name}")
    }

    /// A store on a new database, named for `label`.
    pub async fn store(label: &str) -> PostgresStore {
        PostgresStore::connect(&database(label).await).await.unwrap()
    }

    /// Drops the databases this process made for `label`.
    pub async fn drop_databases(label: &str) {
        let mut admin = admin().await;
        let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(format!("tidings\\_test\\_{}\\_{label}\\_%", std::process::id()))
            .fetch_all(&mut admin)
            .await
            .unwrap();
        for name in names {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conforms() {
        conformance::run(|| testing::store("conformance")).await;
        testing::drop_databases("conformance").await;
    }

    #[tokio::test]
    async fn a_database_of_a_newer_hub_is_refused() {
        let url = testing::database("newer").await;
        let store = PostgresStore::connect(&url).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from a newer hub', TRUE, '\\x00', 0)",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        let refused = PostgresStore::connect(&url).await.err().expect("a newer schema must be refused");
        assert!(matches!(refused, ConnectError::Newer(9999)), "{refused}");
        assert!(refused.to_string().contains("newer than this tidings hub"), "{refused}");
        // Connecting again to an up-to-date database changes nothing.
        store.pool.close().await;
        let fresh = testing::database("newer").await;
        PostgresStore::connect(&fresh).await.unwrap();
        PostgresStore::connect(&fresh).await.unwrap();
        testing::drop_databases("newer").await;
    }
}
