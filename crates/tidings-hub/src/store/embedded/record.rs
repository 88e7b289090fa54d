//! The embedded store's records: JSON, so that an operator can read them with any fjall
//! tool and fields can be added later. They are the stored form of the domain types and
//! nothing else: renaming a domain field does not touch stored data.

use crate::model::{
    AdminSession, Content, Counts, QueuedSend, RecipientError, SendStatus, Subscription, SubscriptionId,
    Target,
};
use crate::store::{Result, StoreError};
use serde::{Deserialize, Serialize};
use tidings_crypto::b64;

/// A record read back.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError(format!("corrupt record: {e}")))
}

/// A record as stored.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

/// A subscription.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    endpoint: String,
    p256dh: String,
    auth: String,
    user: Option<String>,
    topics: Vec<String>,
    created_at: u64,
    #[serde(default)]
    failures: u32,
    #[serde(default)]
    failing_since: Option<u64>,
    #[serde(default)]
    last_error: Option<String>,
}

impl From<&Subscription> for SubscriptionRecord {
    fn from(s: &Subscription) -> Self {
        Self {
            endpoint: s.endpoint.clone(),
            p256dh: s.p256dh.clone(),
            auth: s.auth.clone(),
            user: s.user.clone(),
            topics: s.topics.clone(),
            created_at: s.created_at,
            failures: s.failures,
            failing_since: s.failing_since,
            last_error: s.last_error.clone(),
        }
    }
}

impl From<SubscriptionRecord> for Subscription {
    fn from(r: SubscriptionRecord) -> Self {
        Self {
            endpoint: r.endpoint,
            p256dh: r.p256dh,
            auth: r.auth,
            user: r.user,
            topics: r.topics,
            created_at: r.created_at,
            failures: r.failures,
            failing_since: r.failing_since,
            last_error: r.last_error,
        }
    }
}

/// A send's target.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum TargetRecord {
    Subscription(String),
    User(String),
    Topic(String),
    Everyone,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct CountsRecord {
    queued: u64,
    accepted: u64,
    gone: u64,
    rejected: u64,
    failed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ErrorRecord {
    subscription: String,
    endpoint: String,
    status: Option<u16>,
    reason: String,
}

/// A send, with where its materialization is (`cursor`: the last recipient written).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendRecord {
    id: u64,
    target: TargetRecord,
    /// base64url.
    payload: String,
    ttl: u32,
    urgency: Option<String>,
    topic: Option<String>,
    created_at: u64,
    send_at: u64,
    status: String,
    #[serde(default)]
    started_at: Option<u64>,
    /// Absent in records of the first version, which wrote every recipient when a send
    /// started: such a send is materialized once it runs.
    #[serde(default)]
    materialized: Option<bool>,
    #[serde(default)]
    cursor: Option<String>,
    counts: CountsRecord,
    errors: Vec<ErrorRecord>,
    finished_at: Option<u64>,
    #[serde(default)]
    deleted_failing: u64,
}

impl SendRecord {
    /// The record of a send, with its materialization cursor.
    pub fn new(send: &QueuedSend, cursor: Option<SubscriptionId>) -> Self {
        let c = &send.counts;
        Self {
            id: send.id,
            target: match &send.target {
                Target::Subscription(id) => TargetRecord::Subscription(id.to_string()),
                Target::User(u) => TargetRecord::User(u.clone()),
                Target::Topic(t) => TargetRecord::Topic(t.clone()),
                Target::Everyone => TargetRecord::Everyone,
            },
            payload: b64::encode(&send.content.payload),
            ttl: send.content.ttl,
            urgency: send.content.urgency.map(|u| u.to_string()),
            topic: send.content.topic.as_ref().map(|t| t.to_string()),
            created_at: send.created_at,
            send_at: send.send_at,
            status: send.status.name().into(),
            started_at: send.started_at,
            materialized: Some(send.materialized),
            cursor: cursor.map(|c| c.to_string()),
            counts: CountsRecord {
                queued: c.queued,
                accepted: c.accepted,
                gone: c.gone,
                rejected: c.rejected,
                failed: c.failed,
            },
            errors: send
                .errors
                .iter()
                .map(|e| ErrorRecord {
                    subscription: e.subscription.to_string(),
                    endpoint: e.endpoint.clone(),
                    status: e.status,
                    reason: e.reason.clone(),
                })
                .collect(),
            finished_at: send.finished_at,
            deleted_failing: send.deleted_failing,
        }
    }

    /// Where materialization is.
    pub fn cursor(&self) -> Option<SubscriptionId> {
        self.cursor.as_deref().and_then(SubscriptionId::parse)
    }

    /// The send it records.
    pub fn send(&self) -> Result<QueuedSend> {
        let corrupt = |what: &str| StoreError(format!("corrupt send {}: {what}", self.id));
        let status = SendStatus::from_name(&self.status).ok_or_else(|| corrupt("status"))?;
        let id = |text: &str| SubscriptionId::parse(text).ok_or_else(|| corrupt("subscription id"));
        let c = self.counts;
        Ok(QueuedSend {
            id: self.id,
            target: match &self.target {
                TargetRecord::Subscription(s) => Target::Subscription(id(s)?),
                TargetRecord::User(u) => Target::User(u.clone()),
                TargetRecord::Topic(t) => Target::Topic(t.clone()),
                TargetRecord::Everyone => Target::Everyone,
            },
            content: Content {
                payload: b64::decode(&self.payload).map_err(|_| corrupt("payload"))?,
                ttl: self.ttl,
                urgency: self
                    .urgency
                    .as_deref()
                    .map(str::parse)
                    .transpose()
                    .map_err(|_| corrupt("urgency"))?,
                topic: self.topic.as_deref().map(str::parse).transpose().map_err(|_| corrupt("topic"))?,
            },
            created_at: self.created_at,
            send_at: self.send_at,
            status,
            started_at: self.started_at,
            materialized: self
                .materialized
                .unwrap_or(matches!(status, SendStatus::Running | SendStatus::Done)),
            counts: Counts {
                queued: c.queued,
                accepted: c.accepted,
                gone: c.gone,
                rejected: c.rejected,
                failed: c.failed,
            },
            errors: self
                .errors
                .iter()
                .map(|e| {
                    Ok(RecipientError {
                        subscription: id(&e.subscription)?,
                        endpoint: e.endpoint.clone(),
                        status: e.status,
                        reason: e.reason.clone(),
                    })
                })
                .collect::<Result<_>>()?,
            finished_at: self.finished_at,
            deleted_failing: self.deleted_failing,
        })
    }
}

/// An admin login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminSessionRecord {
    expires: u64,
    secret: String,
}

impl From<&AdminSession> for AdminSessionRecord {
    fn from(s: &AdminSession) -> Self {
        Self { expires: s.expires, secret: s.secret.clone() }
    }
}

impl From<AdminSessionRecord> for AdminSession {
    fn from(r: AdminSessionRecord) -> Self {
        Self { expires: r.expires, secret: r.secret }
    }
}
