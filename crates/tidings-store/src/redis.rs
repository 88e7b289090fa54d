//! The Redis backend (Redis 6+, Valkey): the same [`Store`] over a shared server, so that
//! several push-service nodes can share their state, and a [`Bus`] through it, so that they
//! can reach each other.
//!
//! Layout: everything of one user agent lives under keys that share the hash tag `{uaid}`,
//! so it sits in one slot and every multi-step change is one Lua script (atomic):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:{U}:u` | string | the user's creation time (exists = the user exists) |
//! | `P:{U}:c` | hash | channel → key hash (hex) or `-` for unrestricted |
//! | `P:{U}:n` | hash | channel → pending messages |
//! | `P:{U}:m` | sorted set | message ids, scored by id (delivery order) |
//! | `P:{U}:e` | sorted set | message ids, scored by expiry |
//! | `P:{U}:b` | hash | id → the message record (as in the embedded store) |
//! | `P:{U}:x` | hash | id → `channel \n expiry \n topic`, for the scripts |
//! | `P:{U}:t` | hash | `channel:topic` → id |
//! | `P:{U}:i` | string | the last message id |
//! | `P:{U}:r` | string | the node holding the connection (expires unless renewed) |
//! | `P:{U}:f:<fingerprint>` | string | the id of the message saved with that fingerprint (expires after [`REPEAT_WINDOW`]) |
//! | `P:expiring` | sorted set | users with messages, scored by their earliest expiry |
//! | `P:broadcasts` | hash | broadcast id → its current version |
//!
//! `P` is a prefix (default `tidings`), so several deployments (or tests) can share a
//! server, or a Redis Cluster: each script touches one user's keys, in one slot, and the keys
//! without a user (`P:expiring`, `P:endpoint-keys`, `P:broadcasts`) are used one command (or
//! one single-key script) at a time.
//!
//! Nodes talk through pub/sub (sharded in a cluster): each listens on `P:node:<node id>` for
//! what concerns its own connections, and all listen on `P:broadcasts`, where each broadcast
//! version set is announced once it is stored.
//!
//! A user agent that makes no contact for the idle period is forgotten by Redis itself: each
//! contact sets `u`, `c` and `i` to expire after the period (new channels take `u`'s TTL), and
//! the message keys expire after their messages, so nothing of it is left. Users stored
//! before this existed have no TTL until their next contact.
//!
//! Expiry follows the embedded store's rules: expired messages are never returned, and the
//! sweeper removes them, visiting the users in `P:expiring` whose earliest expiry has passed
//! (a script per user, so each removal is atomic). Redis's own TTLs are the backstop: a
//! user's message keys expire a minute after their latest message, so they go even if the
//! sweeper never visits (the index entry was lost, or no node runs). They expire together, so
//! the pending counts never outlive the messages they count. The scripts compare against the
//! Redis clock only for this; the nodes' clock decides what is expired.

use crate::embedded::record;
use crate::{
    Added, Bus, Channel, Message, MessageId, NodeEvent, REPEAT_WINDOW, Result, Saved, Store, StoreError,
};
use redis::aio::ConnectionManager;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands as _, FromRedisValue as _, Script};
use std::sync::LazyLock;
use tidings_wire::{ChannelId, Uaid};
use tokio::sync::mpsc;

fn error(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("redis: {e}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A channel's key hash as the `c` hash stores it: hex, or `-` for an unrestricted channel.
pub fn key_hash_text(key_hash: Option<[u8; 16]>) -> String {
    key_hash.map_or_else(|| "-".to_owned(), |h| hex(&h))
}

/// Reads back what [`key_hash_text`] wrote; `None` for anything else (a damaged value is an
/// error, not a panic: public for the fuzz targets).
pub fn key_hash_from_text(text: &str) -> Option<Option<[u8; 16]>> {
    if text == "-" {
        return Some(None);
    }
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<_>>()?;
    Some(Some(bytes.try_into().ok()?))
}

/// Removes one message; shared by the scripts below.
const REMOVE: &str = r#"
local function remove(id)
  local meta = redis.call('HGET', KEYS[7], id)
  if not meta then return nil end
  local chid, exp, topic = string.match(meta, '^([^\n]*)\n([^\n]*)\n(.*)$')
  redis.call('HDEL', KEYS[6], id)
  redis.call('HDEL', KEYS[7], id)
  redis.call('ZREM', KEYS[4], id)
  redis.call('ZREM', KEYS[5], id)
  if tonumber(redis.call('HINCRBY', KEYS[3], chid, -1)) < 0 then redis.call('HSET', KEYS[3], chid, 0) end
  if topic ~= '' and redis.call('HGET', KEYS[8], chid .. ':' .. topic) == id then
    redis.call('HDEL', KEYS[8], chid .. ':' .. topic)
  end
  return chid
end
local function expire(now)
  local count = 0
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now)) do
    if remove(id) then count = count + 1 end
  end
  return count
end
"#;

/// How long after its last message expires a user's message keys outlive it in Redis, so
/// that a Redis clock slightly ahead of the nodes' never drops a message before its time.
const GRACE: u64 = 60;

/// KEYS: u c n m e b x t i f. ARGV: chid expires topic max record meta keyhash (`-` for
/// none: the channel must hold the same, or the endpoint was revoked) window (seconds the
/// fingerprint key `f` is kept; empty for a message without a fingerprint). Also sets the
/// message keys (n m e b x t) to expire [`GRACE`] after the latest message does.
static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{REMOVE}
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[7] then return {{0}} end
if ARGV[8] ~= '' then
  local first = redis.call('GET', KEYS[10])
  if first then return {{4, tonumber(first), redis.call('HEXISTS', KEYS[6], first)}} end
end
local old = false
if ARGV[3] ~= '' then
  local previous = redis.call('HGET', KEYS[8], ARGV[1] .. ':' .. ARGV[3])
  if previous and remove(previous) then old = previous end
end
if not old and tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0') >= tonumber(ARGV[4]) then return {{2}} end
local id = redis.call('INCR', KEYS[9])
local life = redis.call('PTTL', KEYS[1])
if life > 0 then redis.call('PEXPIRE', KEYS[9], life) end
redis.call('ZADD', KEYS[4], id, id)
redis.call('ZADD', KEYS[5], ARGV[2], id)
redis.call('HSET', KEYS[6], id, ARGV[5])
redis.call('HSET', KEYS[7], id, ARGV[6])
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
if ARGV[3] ~= '' then redis.call('HSET', KEYS[8], ARGV[1] .. ':' .. ARGV[3], id) end
if ARGV[8] ~= '' then redis.call('SET', KEYS[10], id, 'EX', ARGV[8]) end
local latest = tonumber(redis.call('ZRANGE', KEYS[5], -1, -1, 'WITHSCORES')[2]) + {GRACE}
if latest > tonumber(redis.call('TIME')[1]) then
  for k = 3, 8 do redis.call('EXPIREAT', KEYS[k], latest) end
end
if old then return {{3, id, old}} end
return {{1, id}}
"#
    ))
});

/// KEYS as SAVE. ARGV: id. Takes back a message just saved, with its fingerprint.
static UNSAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{REMOVE}
remove(ARGV[1])
redis.call('DEL', KEYS[10])
"#
    ))
});

/// KEYS as SAVE. ARGV: id chid.
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{REMOVE}
local meta = redis.call('HGET', KEYS[7], ARGV[1])
if not meta or string.sub(meta, 1, string.len(ARGV[2]) + 1) ~= ARGV[2] .. '\n' then return 0 end
remove(ARGV[1])
return 1
"#
    ))
});

/// KEYS as SAVE. ARGV: chid.
static REMOVE_CHANNEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{REMOVE}
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then return 0 end
for _, id in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  local meta = redis.call('HGET', KEYS[7], id)
  if meta and string.sub(meta, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. '\n' then remove(id) end
end
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"#
    ))
});

/// KEYS as SAVE. ARGV: now. Returns {removed, earliest remaining expiry or -1}.
static SWEEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{REMOVE}
local count = expire(ARGV[1])
local first = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
if first[2] then return {{count, first[2]}} end
return {{count, -1}}
"#
    ))
});

/// KEYS: u c n. ARGV: chid keyhash max. Answers 1 added, 0 no user, 2 too many channels.
/// The channels live as long as the user (`u`'s TTL).
static ADD_CHANNEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[3]) then
  return 2
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local life = redis.call('PTTL', KEYS[1])
if life > 0 then redis.call('PEXPIRE', KEYS[2], life) end
return 1
"#,
    )
});

/// KEYS: u c i. ARGV: seconds. Whether the user exists; if so it (its channels and its id
/// counter) now expires after `seconds` without contact.
static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXPIRE', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[1])
return 1
"#,
    )
});

/// KEYS: broadcasts. ARGV: id version. Sets the version; 1 if that changed it, else 0.
static SET_BROADCAST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return 0 end \
         redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return 1",
    )
});

/// How long a routing entry lives unless its node renews it: a node that dies leaves its
/// entries for at most this long (a POST that finds one earlier clears it at once).
const ROUTE_TTL: u64 = 6 * crate::ROUTE_REFRESH.as_secs();

/// KEYS: r. ARGV: node ttl. Renews the routing entry if it still names the node.
static RENEW_NODE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end return 0",
    )
});

/// KEYS: r. ARGV: node. Deletes the routing entry if it still names the node.
static CLEAR_NODE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
    )
});

/// The Redis store. Cheap to clone (the connection is shared and reconnects by itself).
#[derive(Clone)]
pub struct RedisStore {
    target: Target,
    redis: Connection,
    prefix: String,
    replicas: Option<Replicas>,
}

/// How a store waits for replicas before a write counts as done (`WAIT`, after each write that creates something).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replicas {
    /// Replicas (of each primary, on a cluster) that must have the write.
    pub count: u32,
    /// How long to wait for them; past it the write fails (the push API answers 503).
    pub timeout: std::time::Duration,
}

/// How long connecting to Redis may take before a request fails. A push service must answer
/// fast when Redis is gone (503, so senders retry elsewhere or later, and a load balancer's
/// health check gets its answer): a second, and one retry, not the client's default backoff
/// of several seconds.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// How long one command may take before it fails (a `WAIT` gets its own timeout on top).
pub const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The oldest Redis the scripts work with: `ZADD ... LT` came in 6.2.
pub const MIN_VERSION: (u32, u32) = (6, 2);

/// Where the store's Redis is, kept to open the subscription connection of `node_events`.
#[derive(Clone)]
enum Target {
    Single(redis::Client),
    Cluster { nodes: Vec<String>, ca_pem: Option<Vec<u8>> },
}

/// The command connection: to one server, or to a cluster (which routes each command to the
/// node holding its first key's slot; every script's keys share one user's slot).
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// A cluster client for `nodes`, trusting `ca_pem` for rediss:// nodes when given.
fn cluster_builder(nodes: &[String], ca_pem: &Option<Vec<u8>>) -> ClusterClientBuilder {
    let builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str));
    match ca_pem {
        Some(root_cert) => {
            builder.certs(redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert.clone()) })
        }
        None => builder,
    }
}

/// A new subscription to `channels`, if Redis answers.
async fn resubscribe(client: &redis::Client, channels: &[String]) -> Option<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await.ok()?;
    pubsub.subscribe(channels).await.ok()?;
    Some(pubsub)
}

/// A node event as published on the pub/sub channels: a tag byte (1 deliver, 2 disconnect,
/// 3 broadcasts changed), the uaid, and for a delivery the message id and its record.
pub fn encode_event(event: &NodeEvent) -> Vec<u8> {
    match event {
        NodeEvent::Deliver { uaid, message } => {
            let mut bytes = vec![1];
            bytes.extend_from_slice(&uaid.0);
            bytes.extend_from_slice(&message.id.to_be_bytes());
            bytes.extend_from_slice(&record::encode_message(message));
            bytes
        }
        NodeEvent::Disconnect { uaid } => {
            let mut bytes = vec![2];
            bytes.extend_from_slice(&uaid.0);
            bytes
        }
        NodeEvent::BroadcastsChanged => vec![3],
    }
}

/// Reads back what [`encode_event`] wrote; `None` for anything else (whatever else is
/// published on the channel is ignored, never a panic).
pub fn decode_event(bytes: &[u8]) -> Option<NodeEvent> {
    let uaid = || Some(Uaid(bytes.get(1..17)?.try_into().ok()?));
    match bytes.first()? {
        1 => {
            let id = record::u64_at(bytes, 17)?;
            let message = record::decode_message(id, bytes.get(25..)?).ok()?;
            Some(NodeEvent::Deliver { uaid: uaid()?, message })
        }
        2 => Some(NodeEvent::Disconnect { uaid: uaid()? }),
        3 => Some(NodeEvent::BroadcastsChanged),
        _ => None,
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://[user:password@]host[:port][/db]`, or `rediss://` for
    /// TLS), with keys under `prefix`; a comma-separated list of such URLs names the seed
    /// nodes of a Redis Cluster. A TLS server is trusted by the system's CAs, or by `ca_pem`
    /// (a PEM certificate) when given.
    ///
    /// With `replicas`, every write that creates something (a user agent, a channel, a
    /// message) returns only once that many replicas have it. Fails if the server is older
    /// than [`MIN_VERSION`].
    pub async fn connect(
        url: &str,
        prefix: &str,
        ca_pem: Option<Vec<u8>>,
        replicas: Option<Replicas>,
    ) -> Result<Self> {
        let nodes: Vec<String> = url.split(',').map(|n| n.trim().to_owned()).collect();
        let response_timeout = RESPONSE_TIMEOUT + replicas.map_or(std::time::Duration::ZERO, |r| r.timeout);
        let (target, redis) = if nodes.len() > 1 {
            let client = cluster_builder(&nodes, &ca_pem)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(response_timeout)
                .retries(1)
                .build()
                .map_err(error)?;
            let redis = client.get_async_connection().await.map_err(error)?;
            (Target::Cluster { nodes, ca_pem }, Connection::Cluster(redis))
        } else {
            let client = match ca_pem {
                Some(root_cert) => redis::Client::build_with_tls(
                    url,
                    redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) },
                ),
                None => redis::Client::open(url),
            }
            .map_err(error)?;
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(response_timeout))
                .set_number_of_retries(1)
                .set_min_delay(std::time::Duration::from_millis(100))
                .set_max_delay(std::time::Duration::from_millis(200));
            let redis = ConnectionManager::new_with_config(client.clone(), config).await.map_err(error)?;
            (Target::Single(client), Connection::Single(redis))
        };
        let store = Self { target, redis, prefix: prefix.to_owned(), replicas };
        store.check_version().await?;
        Ok(store)
    }

    /// Refuses a server older than [`MIN_VERSION`] with a clear error (the scripts would
    /// otherwise fail on the first message, far from the cause).
    async fn check_version(&self) -> Result<()> {
        let info: redis::Value =
            redis::cmd("INFO").arg("server").query_async(&mut self.redis.clone()).await.map_err(error)?;
        let mut texts = Vec::new();
        collect_strings(&info, &mut texts);
        let versions: Vec<(u32, u32)> = texts.iter().filter_map(|t| server_version(t)).collect();
        match versions.iter().min() {
            Some(&oldest) if oldest < MIN_VERSION => Err(error(format!(
                "the server is Redis {}.{}; Tidings needs {}.{} or newer (ZADD ... LT)",
                oldest.0, oldest.1, MIN_VERSION.0, MIN_VERSION.1
            ))),
            Some(_) => Ok(()),
            None => Err(error("INFO server did not say the Redis version")),
        }
    }

    /// Waits until the configured number of replicas has every write this store's connection
    /// made so far to the server holding `key` (`WAIT` covers all earlier writes of the
    /// connection it is sent on; on a cluster it goes to the primary of `key`'s slot only, so
    /// a shard that lost its replica refuses writes without stopping the others). Without
    /// replicas configured, returns at once.
    async fn wait_for_replicas(&self, key: &str) -> Result<()> {
        use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
        let Some(replicas) = self.replicas else { return Ok(()) };
        let timeout_ms = u64::try_from(replicas.timeout.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas.count).arg(timeout_ms);
        let reached: i64 = match &self.redis {
            Connection::Single(connection) => {
                wait.query_async(&mut connection.clone()).await.map_err(error)?
            }
            Connection::Cluster(connection) => {
                let primary = Route::with_key(key, SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(primary));
                let value = connection.clone().route_command(wait, routing).await.map_err(error)?;
                i64::from_redis_value(value).map_err(error)?
            }
        };
        if reached < i64::from(replicas.count) {
            return Err(error(format!(
                "only {reached} of {} replicas confirmed the write within {timeout_ms} ms",
                replicas.count
            )));
        }
        Ok(())
    }

    /// Refuses to start a node whose id a live node already uses: two nodes with one id
    /// would take each other's deliveries. A live node is subscribed to its channel, so the
    /// count of subscribers answers (a node that died has closed its connection, and its id
    /// is free at once).
    async fn check_node_id_free(&self, node: &str) -> Result<()> {
        let channel = self.node_channel(node);
        let command = match self.target {
            Target::Single(_) => "NUMSUB",
            Target::Cluster { .. } => "SHARDNUMSUB",
        };
        let answer: redis::Value = redis::cmd("PUBSUB")
            .arg(command)
            .arg(&channel)
            .query_async(&mut self.redis.clone())
            .await
            .map_err(error)?;
        if listeners(&answer, &channel) > 0 {
            return Err(error(format!(
                "another live node already uses the node id {node:?} on this Redis: give each node its own --node-id"
            )));
        }
        Ok(())
    }

    fn node_channel(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    /// `P:{U}`: what every key of the user starts with.
    fn user_prefix(&self, uaid: Uaid) -> String {
        format!("{}:{{{}}}", self.prefix, hex(&uaid.0))
    }

    fn keys(&self, uaid: Uaid) -> [String; 9] {
        let base = self.user_prefix(uaid);
        ["u", "c", "n", "m", "e", "b", "x", "t", "i"].map(|k| format!("{base}:{k}"))
    }

    fn route(&self, uaid: Uaid) -> String {
        format!("{}:r", self.user_prefix(uaid))
    }

    fn expiring(&self) -> String {
        format!("{}:expiring", self.prefix)
    }

    /// The broadcasts hash, and also the channel where their changes are announced.
    fn broadcasts_key(&self) -> String {
        format!("{}:broadcasts", self.prefix)
    }

    /// `PUBLISH`, or on a cluster `SPUBLISH`: sharded pub/sub sends the message to the one
    /// node that owns the channel's slot, where the subscribers are, so the count of listeners
    /// that answers is the real one (a plain `PUBLISH` counts only the receiving node's).
    async fn publish_to(&self, channel: String, event: &NodeEvent) -> Result<i64> {
        let command = match self.target {
            Target::Single(_) => "PUBLISH",
            Target::Cluster { .. } => "SPUBLISH",
        };
        redis::cmd(command)
            .arg(channel)
            .arg(encode_event(event))
            .query_async(&mut self.redis.clone())
            .await
            .map_err(error)
    }
}

/// The events published to `channels` on one server. The first subscription is confirmed
/// before returning, so that a node is reachable once it says it is ready; after an outage
/// the task subscribes again.
async fn single_events(client: redis::Client, channels: Vec<String>) -> Result<mpsc::Receiver<NodeEvent>> {
    use futures_util::StreamExt as _;
    let (events, receiver) = mpsc::channel(4096);
    let mut first = client.get_async_pubsub().await.map_err(error)?;
    first.subscribe(&channels).await.map_err(error)?;
    let mut first = Some(first);
    tokio::spawn(async move {
        while !events.is_closed() {
            let pubsub = match first.take() {
                Some(pubsub) => Some(pubsub),
                None => resubscribe(&client, &channels).await,
            };
            if let Some(mut pubsub) = pubsub {
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let payload: Vec<u8> = message.get_payload().unwrap_or_default();
                    if let Some(event) = decode_event(&payload)
                        && events.send(event).await.is_err()
                    {
                        return;
                    }
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    });
    Ok(receiver)
}

/// The events published to the sharded `channels` of a cluster, on a RESP3 connection of its
/// own (the cluster client subscribes again by itself after a failover or an outage).
async fn cluster_events(
    nodes: &[String],
    ca_pem: &Option<Vec<u8>>,
    channels: Vec<String>,
) -> Result<mpsc::Receiver<NodeEvent>> {
    let (pushes, mut incoming) = mpsc::unbounded_channel::<redis::PushInfo>();
    let client = cluster_builder(nodes, ca_pem)
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(pushes)
        .build()
        .map_err(error)?;
    let mut connection = client.get_async_connection().await.map_err(error)?;
    // One at a time: the channels hash to different slots, which may live on different nodes.
    for channel in &channels {
        connection.ssubscribe(channel).await.map_err(error)?;
    }
    let (events, receiver) = mpsc::channel(4096);
    tokio::spawn(async move {
        // The connection lives as long as someone listens.
        let _connection = connection;
        while let Some(push) = incoming.recv().await {
            if push.kind != redis::PushKind::SMessage {
                continue;
            }
            let Some(payload) = push.data.get(1).and_then(|v| Vec::<u8>::from_redis_value_ref(v).ok()) else {
                continue;
            };
            if let Some(event) = decode_event(&payload)
                && events.send(event).await.is_err()
            {
                return;
            }
        }
    });
    Ok(receiver)
}

/// The subscribers `PUBSUB NUMSUB` / `SHARDNUMSUB` counted for `channel`: one server answers
/// `[channel, count]`; a cluster client merges the nodes' answers into a map of them.
fn listeners(answer: &redis::Value, channel: &str) -> i64 {
    let is_channel = |v: &redis::Value| String::from_redis_value_ref(v).is_ok_and(|name| name == channel);
    let count = |v: &redis::Value| i64::from_redis_value_ref(v).unwrap_or(0);
    match answer {
        redis::Value::Array(items) => items
            .chunks(2)
            .map(|pair| match pair {
                [name, n] if is_channel(name) => count(n),
                _ => pair.iter().map(|item| listeners(item, channel)).sum(),
            })
            .sum(),
        redis::Value::Map(pairs) => pairs
            .iter()
            .map(|(name, n)| if is_channel(name) { count(n) } else { listeners(n, channel) })
            .sum(),
        _ => 0,
    }
}

/// Every string in an `INFO` answer (a cluster answers with one per node).
fn collect_strings(value: &redis::Value, out: &mut Vec<String>) {
    match value {
        redis::Value::BulkString(bytes) => out.push(String::from_utf8_lossy(bytes).into_owned()),
        redis::Value::VerbatimString { text, .. } | redis::Value::SimpleString(text) => {
            out.push(text.clone())
        }
        redis::Value::Array(items) | redis::Value::Set(items) => {
            items.iter().for_each(|item| collect_strings(item, out));
        }
        redis::Value::Map(pairs) => pairs.iter().for_each(|(_, item)| collect_strings(item, out)),
        _ => {}
    }
}

/// `major.minor` from the `redis_version:` line of an `INFO server` answer.
fn server_version(info: &str) -> Option<(u32, u32)> {
    let version = info.lines().find_map(|l| l.trim().strip_prefix("redis_version:"))?;
    let mut parts = version.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn invoke<'a>(script: &'a Script, keys: &[String]) -> redis::ScriptInvocation<'a> {
    let mut invocation = script.prepare_invoke();
    for key in keys {
        invocation.key(key);
    }
    invocation
}

impl Store for RedisStore {
    async fn add_user(&self, uaid: Uaid, now: u64, forget_after: u64) -> Result<bool> {
        let created: bool = redis::cmd("SET")
            .arg(&self.keys(uaid)[0])
            .arg(now)
            .arg("NX")
            .arg("EX")
            .arg(forget_after.max(1))
            .query_async::<Option<String>>(&mut self.redis.clone())
            .await
            .map_err(error)?
            .is_some();
        self.wait_for_replicas(&self.keys(uaid)[0]).await?;
        Ok(!created)
    }

    async fn touch_user(&self, uaid: Uaid, _now: u64, forget_after: u64) -> Result<bool> {
        let keys = self.keys(uaid);
        let exists: i64 = invoke(&TOUCH, &[keys[0].clone(), keys[1].clone(), keys[8].clone()])
            .arg(forget_after.max(1))
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(error)?;
        Ok(exists == 1)
    }

    /// Redis forgets them by itself: every contact sets the user's keys to expire after the
    /// idle period (see the module).
    async fn forget_idle_users(&self, _now: u64, _forget_after: u64, _limit: usize) -> Result<usize> {
        Ok(0)
    }

    async fn remove_user(&self, uaid: Uaid) -> Result<()> {
        let mut keys = self.keys(uaid).to_vec();
        keys.push(self.route(uaid));
        let mut redis = self.redis.clone();
        redis.del::<_, ()>(keys).await.map_err(error)?;
        redis.zrem::<_, _, ()>(self.expiring(), hex(&uaid.0)).await.map_err(error)
    }

    async fn add_channel(
        &self,
        uaid: Uaid,
        channel_id: ChannelId,
        channel: Channel,
        max_channels: usize,
    ) -> Result<Added> {
        let keys = self.keys(uaid);
        let added: i64 = invoke(&ADD_CHANNEL, &keys[..3])
            .arg(hex(&channel_id.0))
            .arg(key_hash_text(channel.key_hash))
            .arg(max_channels)
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(error)?;
        if added == 1 {
            self.wait_for_replicas(&keys[0]).await?;
        }
        Ok(match added {
            1 => Added::Added,
            2 => Added::TooMany,
            _ => Added::NoUser,
        })
    }

    async fn channel(&self, uaid: Uaid, channel_id: ChannelId) -> Result<Option<Channel>> {
        let value: Option<String> =
            self.redis.clone().hget(&self.keys(uaid)[1], hex(&channel_id.0)).await.map_err(error)?;
        value
            .map(|v| {
                let key_hash = key_hash_from_text(&v).ok_or_else(|| error("corrupt channel"))?;
                Ok(Channel { key_hash })
            })
            .transpose()
    }

    async fn remove_channel(&self, uaid: Uaid, channel_id: ChannelId) -> Result<bool> {
        let removed: i64 = invoke(&REMOVE_CHANNEL, &self.keys(uaid))
            .arg(hex(&channel_id.0))
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(error)?;
        Ok(removed == 1)
    }

    async fn save_message(
        &self,
        uaid: Uaid,
        message: Message,
        key_hash: Option<[u8; 16]>,
        max_pending: usize,
        _now: u64,
    ) -> Result<Saved> {
        let fingerprint = message.fingerprint();
        let topic = message.topic.clone().unwrap_or_default();
        let meta = format!("{}\n{}\n{topic}", hex(&message.channel_id.0), message.expires_at);
        // The sweeper's index takes the earlier of what it has and this message's expiry, so
        // it needs no answer from the save and goes out alongside it: one round trip in all.
        // (Should the save then fail, the sweeper only finds nothing to do for this user.)
        let (mut index, mut redis) = (self.redis.clone(), self.redis.clone());
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(self.expiring()).arg("LT").arg(message.expires_at).arg(hex(&uaid.0));
        let noted = zadd.query_async::<()>(&mut index);
        let mut keys = self.keys(uaid).to_vec();
        // Redis keeps the fingerprint's key for the window by itself (no `now` needed); a
        // message without one names a key that is never read or written.
        keys.push(format!(
            "{}:f:{}",
            self.user_prefix(uaid),
            fingerprint.map_or_else(|| "-".into(), |f| hex(&f))
        ));
        let window = if fingerprint.is_some() { REPEAT_WINDOW.to_string() } else { String::new() };
        let mut invocation = invoke(&SAVE, &keys);
        let saving = invocation
            .arg(hex(&message.channel_id.0))
            .arg(message.expires_at)
            .arg(&topic)
            .arg(max_pending)
            .arg(record::encode_message(&message))
            .arg(meta)
            .arg(key_hash_text(key_hash))
            .arg(window)
            .invoke_async::<Vec<i64>>(&mut redis);
        let (answer, noted) = tokio::join!(saving, noted);
        let answer = answer.map_err(error)?;
        // The message is stored: failing now would make the sender send it again. Without
        // its index entry the message still expires by Redis's TTL on its keys.
        if let Err(e) = noted {
            tracing::warn!(error = %e, "could not note a message's expiry for the sweeper; Redis's TTL removes it");
        }
        let saved = match answer.as_slice() {
            [0, ..] => Saved::NoChannel,
            [2, ..] => Saved::Full,
            [1, id, ..] => Saved::Stored(*id as MessageId),
            [3, id, old, ..] => Saved::Replaced { id: *id as MessageId, old: *old as MessageId },
            [4, id, pending, ..] => Saved::Repeated { id: *id as MessageId, pending: *pending == 1 },
            _ => return Err(error("unexpected answer from the save script")),
        };
        match saved {
            Saved::Stored(id) | Saved::Replaced { id, .. } => {
                if let Err(e) = self.wait_for_replicas(&keys[0]).await {
                    // The primary has the message, too few replicas do, and the sender is
                    // about to be told 503 and send it again: take it back with its
                    // fingerprint, or the user agent would get it twice (the soak run found
                    // 503-answered messages delivered after a Redis restart, while the
                    // replica was still resyncing), or the retry would be taken for a repeat
                    // of a message that is gone.
                    let undo =
                        invoke(&UNSAVE, &keys).arg(id).invoke_async::<()>(&mut self.redis.clone()).await;
                    if let Err(undo) = undo {
                        tracing::warn!(error = %undo, "could not take back a message its replicas did not confirm");
                    }
                    return Err(e);
                }
            }
            // The first copy's answer may have been lost before its replicas confirmed it:
            // this answer, like that one, promises the message is on enough of them.
            Saved::Repeated { .. } => self.wait_for_replicas(&keys[0]).await?,
            Saved::Full | Saved::NoChannel => {}
        }
        Ok(saved)
    }

    async fn messages(
        &self,
        uaid: Uaid,
        after: Option<MessageId>,
        limit: usize,
        now: u64,
    ) -> Result<Vec<Message>> {
        let keys = self.keys(uaid);
        let mut redis = self.redis.clone();
        let start = after.map_or(0, |a| a + 1);
        let mut found = Vec::new();
        let mut from = start;
        while found.len() < limit {
            let ids: Vec<u64> =
                redis.zrangebyscore_limit(&keys[3], from, "+inf", 0, limit as isize).await.map_err(error)?;
            let Some(&last) = ids.last() else { break };
            let records: Vec<Option<Vec<u8>>> =
                redis::cmd("HMGET").arg(&keys[5]).arg(&ids).query_async(&mut redis).await.map_err(error)?;
            for (id, bytes) in ids.iter().zip(records) {
                if let Some(bytes) = bytes {
                    let message = record::decode_message(*id, &bytes)?;
                    if message.expires_at > now && found.len() < limit {
                        found.push(message);
                    }
                }
            }
            if ids.len() < limit {
                break;
            }
            from = last + 1;
        }
        Ok(found)
    }

    async fn delete_message(&self, uaid: Uaid, channel_id: ChannelId, id: MessageId) -> Result<bool> {
        let deleted: i64 = invoke(&DELETE, &self.keys(uaid))
            .arg(id)
            .arg(hex(&channel_id.0))
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(error)?;
        Ok(deleted == 1)
    }

    async fn sweep_expired(&self, now: u64, limit: usize) -> Result<usize> {
        let mut redis = self.redis.clone();
        let users: Vec<String> = redis
            .zrangebyscore_limit(self.expiring(), "-inf", now, 0, limit as isize)
            .await
            .map_err(error)?;
        let mut swept = 0;
        for user in users {
            let mut bytes = [0u8; 16];
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = user.get(i * 2..i * 2 + 2).and_then(|h| u8::from_str_radix(h, 16).ok()).unwrap_or(0);
            }
            let uaid = Uaid(bytes);
            let answer: Vec<i64> =
                invoke(&SWEEP, &self.keys(uaid)).arg(now).invoke_async(&mut redis).await.map_err(error)?;
            swept += answer.first().copied().unwrap_or(0) as usize;
            match answer.get(1).copied() {
                Some(next) if next >= 0 => {
                    // LT: a save between the script and this may have noted an earlier expiry.
                    let mut zadd = redis::cmd("ZADD");
                    zadd.arg(self.expiring()).arg("LT").arg(next).arg(&user);
                    zadd.query_async::<()>(&mut redis).await.map_err(error)?;
                }
                _ => redis.zrem::<_, _, ()>(self.expiring(), &user).await.map_err(error)?,
            }
        }
        Ok(swept)
    }

    async fn ready(&self) -> Result<()> {
        redis::cmd("PING").query_async::<String>(&mut self.redis.clone()).await.map(|_| ()).map_err(error)
    }

    async fn set_broadcast(&self, id: &str, version: &str) -> Result<bool> {
        let changed: i64 = invoke(&SET_BROADCAST, &[self.broadcasts_key()])
            .arg(id)
            .arg(version)
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(error)?;
        Ok(changed == 1)
    }

    async fn broadcasts(&self) -> Result<Vec<(String, String)>> {
        self.redis.clone().hgetall(self.broadcasts_key()).await.map_err(error)
    }
}

/// The nodes sharing the Redis talk through it: routing entries that expire unless renewed,
/// pub/sub for events (sharded on a cluster), and the endpoint keys under `P:endpoint-keys`.
impl Bus for RedisStore {
    async fn set_node(&self, uaid: Uaid, node: &str) -> Result<()> {
        self.redis.clone().set_ex::<_, _, ()>(self.route(uaid), node, ROUTE_TTL).await.map_err(error)
    }

    async fn node(&self, uaid: Uaid) -> Result<Option<String>> {
        self.redis.clone().get(self.route(uaid)).await.map_err(error)
    }

    async fn clear_node(&self, uaid: Uaid, node: &str) -> Result<()> {
        invoke(&CLEAR_NODE, &[self.route(uaid)])
            .arg(node)
            .invoke_async::<i64>(&mut self.redis.clone())
            .await
            .map_err(error)?;
        Ok(())
    }

    async fn refresh_routes(&self, uaids: &[Uaid], node: &str) -> Result<()> {
        // One at a time: a background chore that should not crowd out the hot path. A failure
        // skips that entry only (it has hours left); the last one is reported.
        let mut redis = self.redis.clone();
        let mut failed = Ok(());
        for &uaid in uaids {
            let renewed = invoke(&RENEW_NODE, &[self.route(uaid)])
                .arg(node)
                .arg(ROUTE_TTL)
                .invoke_async::<i64>(&mut redis)
                .await;
            if let Err(e) = renewed {
                failed = Err(error(e));
            }
        }
        failed
    }

    async fn node_events(&self, node: &str) -> Result<Option<tokio::sync::mpsc::Receiver<NodeEvent>>> {
        self.check_node_id_free(node).await?;
        let channels = vec![self.node_channel(node), self.broadcasts_key()];
        let receiver = match &self.target {
            Target::Single(client) => single_events(client.clone(), channels).await?,
            Target::Cluster { nodes, ca_pem } => cluster_events(nodes, ca_pem, channels).await?,
        };
        Ok(Some(receiver))
    }

    async fn publish(&self, node: &str, event: NodeEvent) -> Result<bool> {
        Ok(self.publish_to(self.node_channel(node), &event).await? > 0)
    }

    async fn announce_broadcasts(&self) -> Result<()> {
        self.publish_to(self.broadcasts_key(), &NodeEvent::BroadcastsChanged).await.map(|_| ())
    }

    async fn shared_endpoint_keys(&self, candidate: &str) -> Result<Option<String>> {
        let key = format!("{}:endpoint-keys", self.prefix);
        let mut redis = self.redis.clone();
        redis::cmd("SET")
            .arg(&key)
            .arg(candidate)
            .arg("NX")
            .query_async::<Option<String>>(&mut redis)
            .await
            .map_err(error)?;
        redis.get(&key).await.map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store on the test Redis (`TIDINGS_TEST_REDIS`, default the local one), under a
    /// prefix of its own so that tests do not see each other.
    async fn fresh() -> RedisStore {
        on(std::env::var("TIDINGS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())).await
    }

    /// A store on the test Redis Cluster (`TIDINGS_TEST_REDIS_CLUSTER`, default the one
    /// `scripts/test` starts on ports 7101 to 7103).
    async fn fresh_cluster() -> RedisStore {
        on(std::env::var("TIDINGS_TEST_REDIS_CLUSTER").unwrap_or_else(|_| {
            "redis://127.0.0.1:7101,redis://127.0.0.1:7102,redis://127.0.0.1:7103".into()
        }))
        .await
    }

    /// A store under a prefix no other test, and no earlier run on the same (long-lived)
    /// server, has used: the suite uses fixed uaids, and process ids come round again.
    async fn on(url: String) -> RedisStore {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let prefix = format!(
            "tidings-test-{}-{started}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        RedisStore::connect(&url, &prefix, None, None)
            .await
            .unwrap_or_else(|e| panic!("no Redis at {url} ({e}): scripts/test starts one"))
    }

    crate::store_conformance_tests!(fresh().await);
    crate::bus_conformance_tests!(fresh().await);

    /// The same suite, unchanged, against a Redis Cluster.
    mod cluster {
        use super::fresh_cluster;
        crate::store_conformance_tests!(fresh_cluster().await);
        crate::bus_conformance_tests!(fresh_cluster().await);

        #[tokio::test]
        async fn nodes_reach_each_other_and_share_endpoint_keys() {
            super::nodes_reach_each_other(fresh_cluster().await, fresh_cluster().await).await;
        }

        #[tokio::test]
        async fn a_node_id_in_use_is_refused() {
            super::node_id_in_use_is_refused(fresh_cluster().await, fresh_cluster().await).await;
        }
    }

    #[tokio::test]
    async fn nodes_reach_each_other_and_share_endpoint_keys() {
        nodes_reach_each_other(fresh().await, fresh().await).await;
    }

    /// Redis's TTLs remove a user's messages by themselves, a minute after the latest
    /// expires, even if no sweeper runs; the pending counts go with them.
    #[tokio::test]
    async fn message_keys_expire_in_redis_after_their_messages() {
        let store = fresh().await;
        let (uaid, channel_id) = (Uaid([3; 16]), ChannelId([4; 16]));
        let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!(!store.add_user(uaid, clock, 3600).await.unwrap());
        let channel = Channel { key_hash: None };
        assert_eq!(store.add_channel(uaid, channel_id, channel, 10).await.unwrap(), Added::Added);
        let keys = store.keys(uaid);
        let mut redis = store.redis.clone();
        let mut message = crate::conformance::message(channel_id, "later", None);
        message.expires_at = clock + 3600;
        store.save_message(uaid, message.clone(), None, 2, clock).await.unwrap();
        let ttl: i64 = redis.ttl(&keys[5]).await.unwrap();
        assert!((3600..=3600 + GRACE as i64).contains(&ttl), "ttl {ttl}");
        // A message that expired 59 s ago (by the nodes' clock) leaves its keys one more
        // second (removing the channel took the first message and its keys).
        store.remove_channel(uaid, channel_id).await.unwrap();
        store.add_channel(uaid, channel_id, channel, 10).await.unwrap();
        message.expires_at = clock + 1 - GRACE;
        // Each a message of its own (a second copy of the same bytes would be a repeat).
        for body in ["one", "two"] {
            message.body = body.into();
            store.save_message(uaid, message.clone(), None, 2, clock).await.unwrap();
        }
        message.body = "three".into();
        assert_eq!(store.save_message(uaid, message.clone(), None, 2, clock).await.unwrap(), Saved::Full);
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        for key in &keys[2..8] {
            assert!(!redis.exists::<_, bool>(key).await.unwrap(), "{key} is still there");
        }
        // The user and channel remain, the cap is free again, and ids keep increasing.
        assert!(store.channel(uaid, channel_id).await.unwrap().is_some());
        message.expires_at = clock + 3600;
        message.body = "four".into();
        assert_eq!(store.save_message(uaid, message, None, 2, clock).await.unwrap(), Saved::Stored(4));
    }

    /// Redis forgets a fingerprint by itself once the window has passed.
    #[tokio::test]
    async fn fingerprints_expire_in_redis_after_the_window() {
        let store = fresh().await;
        let (uaid, channel_id) = (Uaid([5; 16]), ChannelId([6; 16]));
        let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        store.add_user(uaid, clock, 3600).await.unwrap();
        store.add_channel(uaid, channel_id, Channel { key_hash: None }, 10).await.unwrap();
        let message = crate::conformance::message(channel_id, "sealed", None);
        store.save_message(uaid, message.clone(), None, 10, clock).await.unwrap();
        let key = format!("{}:f:{}", store.user_prefix(uaid), hex(&message.fingerprint().unwrap()));
        let ttl: i64 = store.redis.clone().ttl(&key).await.unwrap();
        assert!((REPEAT_WINDOW as i64 - 5..=REPEAT_WINDOW as i64).contains(&ttl), "ttl {ttl}");
    }

    #[test]
    fn server_versions_are_read_from_info() {
        assert_eq!(
            server_version("# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n"),
            Some((7, 0))
        );
        assert_eq!(server_version("redis_version:6.0.16"), Some((6, 0)));
        assert_eq!(server_version("valkey_version:8.0.1"), None);
        assert!(server_version("redis_version:6.0.16").unwrap() < MIN_VERSION);
    }

    /// A second node with the id of a live one is refused; once the first is gone, the id
    /// is free again.
    #[tokio::test]
    async fn a_node_id_in_use_is_refused() {
        node_id_in_use_is_refused(fresh().await, fresh().await).await;
    }

    async fn node_id_in_use_is_refused(first: RedisStore, second: RedisStore) {
        let events = first.node_events("node-x").await.unwrap();
        let second = RedisStore { prefix: first.prefix.clone(), ..second };
        let refused = second.node_events("node-x").await.unwrap_err();
        assert!(refused.to_string().contains("already uses the node id"), "{refused}");
        assert!(second.node_events("node-y").await.is_ok());
        // Its listener ends at the next event it cannot pass on, as a dead node's connection
        // ends at once.
        drop(events);
        second.publish("node-x", NodeEvent::Disconnect { uaid: Uaid([0; 16]) }).await.unwrap();
        let mut free = false;
        for _ in 0..50 {
            if second.check_node_id_free("node-x").await.is_ok() {
                free = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(free, "the id stays taken after its node is gone");
    }

    /// Routing entries expire unless their node renews them, so a dead node's go away.
    #[tokio::test]
    async fn routes_expire_unless_renewed() {
        let store = fresh().await;
        let (held, moved) = (Uaid([5; 16]), Uaid([6; 16]));
        let mut redis = store.redis.clone();
        for uaid in [held, moved] {
            store.set_node(uaid, "node-a").await.unwrap();
            assert_eq!(redis.ttl::<_, i64>(store.route(uaid)).await.unwrap(), ROUTE_TTL as i64);
            redis.expire::<_, ()>(store.route(uaid), 100).await.unwrap();
        }
        store.set_node(moved, "node-b").await.unwrap();
        redis.expire::<_, ()>(store.route(moved), 100).await.unwrap();
        store.refresh_routes(&[held, moved], "node-a").await.unwrap();
        assert_eq!(redis.ttl::<_, i64>(store.route(held)).await.unwrap(), ROUTE_TTL as i64);
        // node-a no longer holds `moved`: its entry (node-b's) is left as it was.
        assert!(redis.ttl::<_, i64>(store.route(moved)).await.unwrap() <= 100);
        assert_eq!(store.node(moved).await.unwrap().as_deref(), Some("node-b"));
    }

    /// Node events published through `b` reach a node listening through `a`.
    async fn nodes_reach_each_other(a: RedisStore, b: RedisStore) {
        let b = RedisStore { prefix: a.prefix.clone(), ..b };
        let mut events = a.node_events("node-a").await.unwrap().unwrap();
        let message = crate::conformance::message(ChannelId([1; 16]), "hello", Some("t"));
        let message = Message { id: 42, ..message };
        let uaid = Uaid([9; 16]);
        // The subscription is set up asynchronously: publish until it is heard.
        let mut heard = None;
        for _ in 0..50 {
            b.publish("node-a", NodeEvent::Deliver { uaid, message: message.clone() }).await.unwrap();
            if let Ok(Some(event)) =
                tokio::time::timeout(std::time::Duration::from_millis(100), events.recv()).await
            {
                heard = Some(event);
                break;
            }
        }
        assert_eq!(heard, Some(NodeEvent::Deliver { uaid, message }));
        b.publish("node-a", NodeEvent::Disconnect { uaid }).await.unwrap();
        let next = loop {
            match events.recv().await.unwrap() {
                NodeEvent::Disconnect { uaid } => break uaid,
                _ => continue,
            }
        };
        assert_eq!(next, uaid);
        // A broadcast version set through one node is announced to every node.
        assert!(b.set_broadcast("remote-settings/monitor_changes", "\"5\"").await.unwrap());
        b.announce_broadcasts().await.unwrap();
        while events.recv().await.unwrap() != NodeEvent::BroadcastsChanged {}
        let expected = ("remote-settings/monitor_changes".to_owned(), "\"5\"".to_owned());
        assert_eq!(a.broadcasts().await.unwrap(), [expected]);
        // A node that is running hears; one that is not does not.
        assert!(b.publish("node-a", NodeEvent::Disconnect { uaid }).await.unwrap());
        assert!(!b.publish("node-dead", NodeEvent::Disconnect { uaid }).await.unwrap());
        // The first node's keys win.
        assert_eq!(a.shared_endpoint_keys("first").await.unwrap().as_deref(), Some("first"));
        assert_eq!(b.shared_endpoint_keys("second").await.unwrap().as_deref(), Some("first"));
    }
}
