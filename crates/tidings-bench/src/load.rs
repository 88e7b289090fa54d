//! Building blocks shared by the push-service benchmarks: user agents that subscribe, and
//! requests prepared ahead so that sending costs only the HTTP exchange.

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tidings_agent::{Client, Connection};
use tidings_crypto::b64;
use tidings_crypto::vapid::{VapidKey, VapidSigner};
use tidings_crypto::webpush::ReceiverKeys;
use tidings_sender::{Message, Subscription, prepare};
use tidings_wire::ChannelId;
use tokio::task::JoinSet;

/// A random channel id.
pub fn channel_id() -> ChannelId {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut bytes).expect("random");
    ChannelId(bytes)
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The application server's identity for a benchmark run.
pub fn signer() -> Arc<VapidSigner> {
    Arc::new(VapidSigner::new(VapidKey::generate().expect("key"), Some("mailto:bench@example.com".into())))
}

/// A subscribed user agent.
pub struct Agent {
    pub client: Client,
    pub uaid: String,
    pub endpoint: String,
}

/// Connects `count` user agents, `concurrency` at a time, each registering one channel
/// restricted to `signer`'s key (or unrestricted without one), from `source` if given.
pub async fn subscribe(
    url: &str,
    count: usize,
    concurrency: usize,
    signer: Option<&VapidSigner>,
    source: Option<IpAddr>,
) -> Result<Vec<Agent>> {
    let key = signer.map(|s| s.key().public_key_base64());
    let mut agents = Vec::with_capacity(count);
    let mut tasks = JoinSet::new();
    let mut started = 0;
    while agents.len() < count {
        while started < count && tasks.len() < concurrency {
            let (url, key) = (url.to_owned(), key.clone());
            tasks.spawn(async move {
                let connection = Connection::open_from(&url, source).await?;
                let mut client = Client::hello(connection, None).await?;
                let channel = channel_id();
                let endpoint = client.register(channel, key.as_deref()).await?;
                let uaid = client.uaid().to_owned();
                anyhow::Ok(Agent { client, uaid, endpoint })
            });
            started += 1;
        }
        let joined = tasks.join_next().await.ok_or_else(|| anyhow!("no tasks"))?;
        agents.push(joined.context("a subscribing task failed")??);
    }
    Ok(agents)
}

/// One prepared request per endpoint (encrypted for fresh keys, since the benchmark's user
/// agents only ack and do not decrypt), ready to be cloned and sent again and again.
pub fn requests(
    endpoints: &[String],
    signer: &VapidSigner,
    payload: usize,
    ttl: u32,
) -> Result<Vec<http::Request<Bytes>>> {
    endpoints
        .iter()
        .map(|endpoint| {
            let keys = ReceiverKeys::generate()?.subscription_keys();
            let json = serde_json::json!({"endpoint": endpoint, "keys": {"p256dh": b64::encode(keys.p256dh.as_bytes()), "auth": b64::encode(&keys.auth)}});
            let subscription = Subscription::parse(&json.to_string())?;
            let mut message = Message::new(vec![b'x'; payload]);
            message.ttl = ttl;
            Ok(prepare(&subscription, &message, Some(signer), now())?)
        })
        .collect()
}

/// Percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
