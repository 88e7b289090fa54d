//! The run's application servers: direct RFC 8030 POSTs through the load balancer (the
//! sender library: aes128gcm for the agent's keys, VAPID), and sends through the hub's REST
//! API to a topic, a user or everyone, retried with one `Idempotency-Key` across hub
//! crashes until the hub answers 202, then followed until done.

use super::Shared;
use super::agents::Registered;
use super::ledger::{Answer, HubCounts, Key};
use super::schedule::Rng;
use crate::hub::{Http, call};
use anyhow::{Context as _, Result};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tidings_crypto::vapid::VapidSigner;
use tidings_sender::{ClientConfig, Message, PushClient, Subscription, prepare};
use tokio::sync::Semaphore;

/// TTLs of direct POSTs: mostly long (must arrive), some short enough to expire while a
/// user agent is away (accounted as expired), some zero (delivered only if connected).
const TTLS: [u32; 10] = [3600, 3600, 3600, 3600, 3600, 3600, 3600, 30, 30, 0];

/// Posts `rate` messages a second to random user agents until `stop`.
pub async fn direct(
    agents: Arc<Vec<Arc<Registered>>>,
    signer: Arc<VapidSigner>,
    rate: f64,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let subscriptions: Vec<Subscription> =
        agents.iter().map(|a| Subscription::parse(&a.direct.json().to_string())).collect::<Result<_, _>>()?;
    let subscriptions = Arc::new(subscriptions);
    let client = PushClient::new(ClientConfig::default());
    let in_flight = Arc::new(Semaphore::new(128));
    let mut rng = Rng::new(shared.seed ^ 0xd1ec7);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        n += 1;
        let agent = rng.below(agents.len() as u64) as usize;
        let ttl = TTLS[rng.below(TTLS.len() as u64) as usize];
        let mut message = Message::new(Key::Direct(n).payload().into_bytes());
        message.ttl = ttl;
        let request = prepare(&subscriptions[agent], &message, Some(&signer), crate::load::now())?;
        let permit = in_flight.clone().acquire_owned().await?;
        let (client, shared) = (client.clone(), shared.clone());
        let index = agents[agent].index;
        shared.ledger(|l, at| l.posted(n, index, ttl, at));
        tokio::spawn(async move {
            let answer = match tokio::time::timeout(Duration::from_secs(60), client.send(request)).await {
                Ok(Ok(response)) if response.status == 201 => Answer::Accepted(shared.now()),
                Ok(Ok(response)) => Answer::Refused(response.status.as_u16()),
                _ => Answer::Unanswered,
            };
            shared.ledger(|l, _| l.answered(n, answer));
            drop(permit);
        });
    }
    Ok(())
}

/// Whom a hub send is for.
#[derive(Debug, Clone)]
pub enum Target {
    Topic(String),
    User(String),
    Everyone,
}

impl Target {
    fn json(&self) -> serde_json::Value {
        match self {
            Self::Topic(t) => serde_json::json!({"topic": t}),
            Self::User(u) => serde_json::json!({"user": u}),
            Self::Everyone => serde_json::json!("everyone"),
        }
    }
}

/// The hub's subscribers, as the run registered them.
pub struct HubAudience {
    /// (agent, topics, user) of each subscribed agent.
    pub members: Vec<(u32, Vec<String>, Option<String>)>,
}

impl HubAudience {
    /// The agents a target names.
    pub fn expected(&self, target: &Target) -> BTreeSet<u32> {
        self.members
            .iter()
            .filter(|(_, topics, user)| match target {
                Target::Topic(t) => topics.contains(t),
                Target::User(u) => user.as_ref() == Some(u),
                Target::Everyone => true,
            })
            .map(|(agent, ..)| *agent)
            .collect()
    }
}

/// The hub's REST API, as the run's backend uses it.
pub struct HubSender {
    pub http: Http,
    pub url: String,
    pub auth: String,
    pub audience: HubAudience,
    pub shared: Arc<Shared>,
    pub next: AtomicU64,
    /// Hub sends posted and not yet done.
    pub open: AtomicU64,
}

impl HubSender {
    /// Queues a send to `target` (retrying until the hub answers 202), then follows it to
    /// the end in the background. Returns once it is queued.
    pub async fn send(self: &Arc<Self>, target: Target) -> Result<()> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let body =
            serde_json::json!({"to": target.json(), "text": Key::Hub(n).payload(), "ttl": 3600}).to_string();
        let idempotency = format!("soak-{n}");
        let headers = [
            ("content-type", "application/json"),
            ("authorization", self.auth.as_str()),
            ("idempotency-key", idempotency.as_str()),
        ];
        let posted_at = self.shared.now();
        self.open.fetch_add(1, Ordering::Relaxed);
        let id = loop {
            let answer =
                call(&self.http, "POST", &format!("{}/api/v1/sends", self.url), &headers, body.clone()).await;
            if let Ok((202, _, body)) = answer {
                let answer: serde_json::Value = serde_json::from_str(&body)?;
                break answer["id"].as_u64().context("a send id")?;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let expected = self.audience.expected(&target);
        self.shared.ledger(|l, _| l.hub_posted(n, expected, posted_at));
        let this = self.clone();
        tokio::spawn(async move {
            let counts = this.follow(id).await;
            this.shared.ledger(|l, _| l.hub_done(n, counts));
            this.open.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(())
    }

    /// Polls send `id` until it is done; its counts.
    async fn follow(&self, id: u64) -> HubCounts {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let url = format!("{}/api/v1/sends/{id}", self.url);
            let Ok((200, _, body)) =
                call(&self.http, "GET", &url, &[("authorization", &self.auth)], String::new()).await
            else {
                continue;
            };
            let Ok(send) = serde_json::from_str::<serde_json::Value>(&body) else { continue };
            if send["status"] == "done" {
                let c = &send["counts"];
                let count = |name: &str| c[name].as_u64().unwrap_or(u64::MAX);
                return HubCounts {
                    queued: count("queued"),
                    accepted: count("accepted"),
                    gone: count("gone"),
                    rejected: count("rejected"),
                    failed: count("failed"),
                };
            }
        }
    }

    /// Sends to a random topic, user or everyone every `period` until `stop`.
    pub async fn run(self: Arc<Self>, period: Duration, topics: usize, users: usize, stop: Arc<AtomicBool>) {
        let mut rng = Rng::new(self.shared.seed ^ 0x4b);
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stop.load(Ordering::Relaxed) {
            ticker.tick().await;
            let target = match rng.below(20) {
                0..=9 => Target::Topic(format!("t{}", rng.below(topics as u64))),
                10..=17 => Target::User(format!("u{}", rng.below(users as u64))),
                _ => Target::Everyone,
            };
            let this = self.clone();
            tokio::spawn(async move { this.send(target).await });
        }
    }
}
