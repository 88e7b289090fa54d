//! The run's user agents: each one a task that holds a WebSocket to a node (its home node
//! while that one is up, the next one otherwise), decrypts every notification with its own
//! keys (through `tidings_agent::receive`), writes it in the ledger and acks it, and
//! confirms its acks with a ping now and then (within the service's ping allowance).
//!
//! They speak the protocol on `tidings_agent::Connection` directly rather than through
//! `Client`, because the ledger needs the ping's answer, which `Client` swallows.

use super::ledger::{Agent, Key};
use super::{Shared, schedule::Rng};
use anyhow::{Context as _, Result};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tidings_agent::receive::{self, Opened};
use tidings_agent::{Client, Connection};
use tidings_crypto::b64;
use tidings_crypto::webpush::ReceiverKeys;
use tidings_wire::ws::{AckUpdate, ClientMessage, ServerMessage};
use tokio::sync::mpsc;

/// What the fault schedule can tell a user agent to do.
#[derive(Debug, Clone, Copy)]
pub enum Control {
    /// Drop the connection and come back at once (a reconnect storm).
    Reconnect,
    /// Hold the connection without reading for this long.
    StopReading(Duration),
    /// Close and end.
    Stop,
}

/// One subscription of a user agent: its channel and keys.
pub struct Channel {
    pub channel_id: String,
    pub keys: ReceiverKeys,
    pub endpoint: String,
}

impl Channel {
    /// The subscription as a browser hands it to an app server.
    pub fn json(&self) -> serde_json::Value {
        let keys = self.keys.subscription_keys();
        serde_json::json!({
            "endpoint": self.endpoint,
            "keys": {"p256dh": b64::encode(keys.p256dh.as_bytes()), "auth": b64::encode(&keys.auth)},
        })
    }
}

/// A registered user agent.
pub struct Registered {
    pub index: Agent,
    pub uaid: String,
    pub home: usize,
    /// For direct POSTs (restricted to the direct sender's key).
    pub direct: Channel,
    /// For the hub's sends (restricted to the hub's key), if subscribed there.
    pub hub: Option<Channel>,
}

/// Registers user agent `index` on node `home`: a direct channel, and a hub channel when
/// `hub_key` is given.
pub async fn register(
    url: &str,
    index: Agent,
    home: usize,
    direct_key: &str,
    hub_key: Option<&str>,
) -> Result<Registered> {
    let mut client = Client::connect(url, None).await.context("hello")?;
    let channel = |key: &str| {
        let id = crate::load::channel_id();
        let keys = ReceiverKeys::generate().expect("keys");
        (id, keys, key.to_owned())
    };
    let (id, keys, key) = channel(direct_key);
    let endpoint = client.register(id, Some(&key)).await.context("register")?;
    let direct = Channel { channel_id: id.to_string(), keys, endpoint };
    let hub = match hub_key {
        Some(hub_key) => {
            let (id, keys, key) = channel(hub_key);
            let endpoint = client.register(id, Some(&key)).await.context("register")?;
            Some(Channel { channel_id: id.to_string(), keys, endpoint })
        }
        None => None,
    };
    let uaid = client.uaid().to_owned();
    client.close().await;
    Ok(Registered { index, uaid, home, direct, hub })
}

/// The service's allowance of client pings (`PING_BURST`, one more each `PING_REFILL`),
/// kept a little under so that confirming acks never trips the limit.
const PINGS_AT_ONCE: f64 = 3.0;
const PING_REFILL: Duration = Duration::from_secs(31);

/// Runs user agent `agent` until told to stop.
pub async fn run(
    agent: Arc<Registered>,
    urls: Arc<Vec<String>>,
    shared: Arc<Shared>,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let keys: HashMap<&str, &ReceiverKeys> = std::iter::once(&agent.direct)
        .chain(agent.hub.as_ref())
        .map(|c| (c.channel_id.as_str(), &c.keys))
        .collect();
    let mut rng = Rng::new(u64::from(agent.index) ^ shared.seed);
    let mut connections: u64 = 0;
    let mut failures = 0u32;
    loop {
        let node = (agent.home + failures as usize) % urls.len();
        let connection = match hello(&urls[node], &agent.uaid).await {
            Ok(Some(connection)) => connection,
            Ok(None) => {
                shared.violation(
                    "forgotten",
                    format!("agent {} was not resumed: the service forgot its uaid", agent.index),
                );
                return;
            }
            Err(_) => {
                failures += 1;
                let backoff = Duration::from_millis(100 << failures.min(4)).mul_f64(0.5 + rng.unit());
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => continue,
                    c = control.recv() => match c {
                        Some(Control::Stop) | None => return,
                        Some(_) => continue,
                    },
                }
            }
        };
        failures = 0;
        connections += 1;
        match session(&agent, &keys, connection, connections, &shared, &mut control).await {
            Ended::Stop => return,
            Ended::Reconnect => {}
        }
    }
}

/// Connects and says hello with `uaid`: the connection, or `None` if another uaid came back.
async fn hello(url: &str, uaid: &str) -> Result<Option<Connection>> {
    let mut connection = Connection::open(url).await?;
    let hello =
        ClientMessage::Hello { uaid: uaid.parse().ok(), use_webpush: true, broadcasts: Default::default() };
    connection.send(&hello.to_json()).await?;
    let reply = tokio::time::timeout(Duration::from_secs(20), connection.recv()).await??;
    match serde_json::from_str(&reply)? {
        ServerMessage::Hello { uaid: given, status: 200, .. } => Ok((given == uaid).then_some(connection)),
        other => anyhow::bail!("hello answered {other:?}"),
    }
}

enum Ended {
    Reconnect,
    Stop,
}

/// One connection's life: notifications in, acks out, pings to confirm them.
async fn session(
    agent: &Registered,
    keys: &HashMap<&str, &ReceiverKeys>,
    mut connection: Connection,
    number: u64,
    shared: &Shared,
    control: &mut mpsc::UnboundedReceiver<Control>,
) -> Ended {
    let mut unconfirmed: Vec<(Key, String)> = Vec::new();
    let mut pinged: Option<Vec<(Key, String)>> = None;
    let mut pings = PINGS_AT_ONCE;
    let mut refill = tokio::time::interval(PING_REFILL);
    refill.tick().await;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            text = connection.recv() => {
                let Ok(text) = text else { return Ended::Reconnect };
                if text.trim() == tidings_wire::ws::PING {
                    for (key, version) in pinged.take().unwrap_or_default() {
                        shared.ledger(|l, at| l.confirmed(agent.index, key, &version, at));
                    }
                    continue;
                }
                let Ok(ServerMessage::Notification { channel_id, version, data, headers }) = serde_json::from_str(&text) else {
                    continue;
                };
                let opened = receive::open(data.as_deref(), headers.as_ref(), keys.get(channel_id.as_str()).copied());
                let key = match &opened {
                    Opened::Payload(payload) => Key::parse(payload),
                    _ => None,
                };
                let Some(key) = key else {
                    shared.violation("undecryptable", format!("agent {} got {opened:?} on {channel_id}", agent.index));
                    continue;
                };
                shared.ledger(|l, at| l.delivered(agent.index, key, &version, number, at));
                let ack = ClientMessage::Ack(vec![AckUpdate { channel_id, version: version.clone(), code: Some(100) }]);
                if connection.send(&ack.to_json()).await.is_err() {
                    return Ended::Reconnect;
                }
                shared.ledger(|l, at| l.acked(agent.index, key, &version, at));
                unconfirmed.push((key, version));
            }
            _ = refill.tick() => pings = (pings + 1.0).min(PINGS_AT_ONCE),
            _ = tick.tick() => {
                if pinged.is_none() && !unconfirmed.is_empty() && pings >= 1.0 {
                    if connection.send(tidings_wire::ws::PING).await.is_err() {
                        return Ended::Reconnect;
                    }
                    pings -= 1.0;
                    pinged = Some(std::mem::take(&mut unconfirmed));
                }
            }
            c = control.recv() => match c {
                Some(Control::Reconnect) => return Ended::Reconnect,
                Some(Control::StopReading(pause)) => tokio::time::sleep(pause).await,
                Some(Control::Stop) | None => {
                    connection.close().await;
                    return Ended::Stop;
                }
            },
        }
    }
}
