//! The REST API's JSON shapes, apart from the domain types they show and from how those
//! are stored: a member here is part of the API, and changes only with it.

use super::ApiError;
use crate::model::{QueuedSend, Subscription, SubscriptionId, Target};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// `to` of a send: `"everyone"`, `{"topic": ...}`, `{"user": ...}` or `{"subscription": id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetJson {
    /// One subscription, by id.
    Subscription(String),
    /// Every subscription of a user.
    User(String),
    /// Every subscription to a topic.
    Topic(String),
    /// Every subscription.
    Everyone,
}

impl TargetJson {
    /// The target it names, checked.
    pub fn target(self) -> Result<Target, ApiError> {
        match self {
            Self::Subscription(id) => SubscriptionId::parse(&id)
                .map(Target::Subscription)
                .ok_or_else(|| ApiError::bad("bad_target", "a subscription id is 32 hex digits")),
            Self::User(name) | Self::Topic(name) if name.is_empty() || name.len() > 256 => {
                Err(ApiError::bad("bad_target", "a user or topic is 1 to 256 characters"))
            }
            Self::User(name) => Ok(Target::User(name)),
            Self::Topic(name) => Ok(Target::Topic(name)),
            Self::Everyone => Ok(Target::Everyone),
        }
    }
}

impl From<&Target> for TargetJson {
    fn from(target: &Target) -> Self {
        match target {
            Target::Subscription(id) => Self::Subscription(id.to_string()),
            Target::User(user) => Self::User(user.clone()),
            Target::Topic(topic) => Self::Topic(topic.clone()),
            Target::Everyone => Self::Everyone,
        }
    }
}

/// A send as the API shows it (without the payload).
pub fn send(send: &QueuedSend) -> Value {
    let c = &send.counts;
    let errors: Vec<Value> = send
        .errors
        .iter()
        .map(|e| {
            json!({ "subscription": e.subscription.to_string(), "endpoint": e.endpoint,
                    "status": e.status, "reason": e.reason })
        })
        .collect();
    json!({
        "id": send.id,
        "to": TargetJson::from(&send.target),
        "status": send.status.name(),
        "created_at": send.created_at,
        "send_at": send.send_at,
        "started_at": send.started_at,
        "finished_at": send.finished_at,
        "counts": {
            "queued": c.queued,
            "pending": c.pending(),
            "accepted": c.accepted,
            "gone": c.gone,
            "rejected": c.rejected,
            "failed": c.failed,
        },
        "recipients_known": send.materialized,
        "deleted_failing": send.deleted_failing,
        "errors": errors,
    })
}

/// A subscription as the API shows it: the endpoint masked, the keys not at all.
pub fn subscription(id: SubscriptionId, s: &Subscription) -> Value {
    json!({
        "id": id.to_string(),
        "endpoint": tidings_wire::endpoint::mask(&s.endpoint),
        "user": s.user,
        "topics": s.topics,
        "created_at": s.created_at,
        "failures": s.failures,
        "flagged": s.flagged(),
        "failing_since": s.failing_since,
        "last_error": s.last_error,
    })
}
