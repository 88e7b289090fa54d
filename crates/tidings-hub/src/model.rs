//! The hub's domain: subscriptions, the sends queued for them, and how each recipient ended.
//! These are the values the rest of the hub works with; how they are stored is each
//! backend's business (its records), and how they are shown is the REST API's
//! ([`crate::http::wire`]), so that neither a stored field nor a JSON member is renamed by
//! accident.

use aws_lc_rs::digest;
use tidings_wire::{Topic, Urgency};

/// Consecutive failures after which a subscription is flagged in the admin page and API.
pub const FLAG_AFTER: u32 = 5;
/// Errors kept per send (the counts are exact; the list is a sample).
pub const MAX_ERRORS: usize = 50;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The push service URL (a capability).
    pub endpoint: String,
    /// The browser's public key, base64url.
    pub p256dh: String,
    /// The authentication secret, base64url: also the proof of holding the subscription.
    pub auth: String,
    /// The app's user, when the page said who it is (with a user token).
    pub user: Option<String>,
    /// Topics the page subscribed to, sorted.
    pub topics: Vec<String>,
    /// When it was first stored (seconds since the epoch).
    pub created_at: u64,
    /// Failed sends in a row (reset by a success).
    pub failures: u32,
    /// When the current run of failures began.
    pub failing_since: Option<u64>,
    /// The last failure, for the admin page.
    pub last_error: Option<String>,
}

impl Subscription {
    /// Whether it has failed [`FLAG_AFTER`] times in a row.
    pub fn flagged(&self) -> bool {
        self.failures >= FLAG_AFTER
    }
}

/// Subscriptions by state, kept by the store as counters (never counted by a scan).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriptionCounts {
    /// Stored now.
    pub total: u64,
    /// Of those, failing (see [`FLAG_AFTER`]).
    pub flagged: u64,
    /// Deleted for failing too long, since the store began.
    pub deleted_failing: u64,
}

/// Whom a send goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One subscription.
    Subscription(SubscriptionId),
    /// Every subscription of a user.
    User(String),
    /// Every subscription to a topic.
    Topic(String),
    /// Every subscription.
    Everyone,
}

/// The two lanes of the dispatcher: a notification to one user or subscription never waits
/// behind a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// To a subscription or a user: few recipients, often urgent (a login code).
    Targeted,
    /// To a topic or everyone.
    Bulk,
}

impl Target {
    /// The lane a send to this target goes through.
    pub fn lane(&self) -> Lane {
        match self {
            Self::Subscription(_) | Self::User(_) => Lane::Targeted,
            Self::Topic(_) | Self::Everyone => Lane::Bulk,
        }
    }
}

/// Where a send is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Waiting for its time.
    Scheduled,
    /// Waiting for the dispatcher.
    Queued,
    /// Under way.
    Running,
    /// Every recipient has an outcome.
    Done,
}

impl SendStatus {
    /// The status's name in the API and in records.
    pub fn name(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
        }
    }

    /// The status of a name.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Scheduled, Self::Queued, Self::Running, Self::Done].into_iter().find(|s| s.name() == name)
    }
}

/// How a send's recipients ended, so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Recipients found so far (all of them once the send is materialized).
    pub queued: u64,
    /// The push service took the message.
    pub accepted: u64,
    /// 404 or 410: the subscription was deleted.
    pub gone: u64,
    /// A final refusal (400, 401, 403, 413, ...), or an unusable subscription.
    pub rejected: u64,
    /// Still failing after the retries, out of time, or interrupted by a crash.
    pub failed: u64,
}

impl Counts {
    /// Recipients without an outcome yet.
    pub fn pending(&self) -> u64 {
        self.queued.saturating_sub(self.accepted + self.gone + self.rejected + self.failed)
    }
}

/// One recipient's failure, as shown to the app (the endpoint masked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientError {
    /// The subscription's id.
    pub subscription: SubscriptionId,
    /// Its endpoint, masked.
    pub endpoint: String,
    /// The push service's status, if it answered.
    pub status: Option<u16>,
    /// What went wrong.
    pub reason: String,
}

/// What a send carries: the message and its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// The plaintext (JSON for a notification).
    pub payload: Vec<u8>,
    /// `TTL`, seconds.
    pub ttl: u32,
    /// `Urgency`.
    pub urgency: Option<Urgency>,
    /// `Topic`.
    pub topic: Option<Topic>,
}

/// A message to send, queued durably, with its progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedSend {
    /// Assigned when stored.
    pub id: u64,
    /// Whom to.
    pub target: Target,
    /// What.
    pub content: Content,
    /// When it was created.
    pub created_at: u64,
    /// When to send it (seconds since the epoch).
    pub send_at: u64,
    /// Where it is.
    pub status: SendStatus,
    /// When it started: its recipients are the subscriptions its target named then.
    pub started_at: Option<u64>,
    /// Whether all its recipients are known (written as items); until then `counts.queued`
    /// grows.
    pub materialized: bool,
    /// Outcomes so far.
    pub counts: Counts,
    /// A sample of the failures.
    pub errors: Vec<RecipientError>,
    /// When it finished.
    pub finished_at: Option<u64>,
    /// Subscriptions it deleted because they had failed too long (see [`Pruning`]).
    pub deleted_failing: u64,
}

/// A send as its creator describes it, before the store gives it an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSend {
    /// Whom to.
    pub target: Target,
    /// What.
    pub content: Content,
    /// When it was created.
    pub created_at: u64,
    /// When to send it.
    pub send_at: u64,
}

impl QueuedSend {
    /// A new send, not stored yet.
    pub fn new(id: u64, send: NewSend) -> Self {
        let status = if send.send_at > send.created_at { SendStatus::Scheduled } else { SendStatus::Queued };
        Self {
            id,
            target: send.target,
            content: send.content,
            created_at: send.created_at,
            send_at: send.send_at,
            status,
            started_at: None,
            materialized: false,
            counts: Counts::default(),
            errors: Vec::new(),
            finished_at: None,
            deleted_failing: 0,
        }
    }

    /// Whether every recipient has an outcome.
    pub fn finished(&self) -> bool {
        self.materialized && self.counts.pending() == 0
    }

    /// Counts `outcome` of recipient `id`, whose subscription is `record` (if it still
    /// exists), keeps a sample of the errors, and says what happens to the subscription:
    /// deleted when gone, or when it has failed as long as `pruning` allows; its run of
    /// failures counted, or ended by a success, otherwise.
    pub fn count(
        &mut self,
        id: SubscriptionId,
        record: Option<&Subscription>,
        outcome: &Outcome,
        now: u64,
        pruning: Pruning,
    ) -> SubscriptionChange {
        let (status, reason) = match outcome {
            Outcome::Accepted => {
                self.counts.accepted += 1;
                return match record.filter(|r| r.failures > 0 || r.last_error.is_some()) {
                    Some(r) => SubscriptionChange::Update(Subscription {
                        failures: 0,
                        failing_since: None,
                        last_error: None,
                        ..r.clone()
                    }),
                    None => SubscriptionChange::Keep,
                };
            }
            Outcome::Gone => {
                self.counts.gone += 1;
                return if record.is_some() { SubscriptionChange::Delete } else { SubscriptionChange::Keep };
            }
            Outcome::Rejected { status, reason } => {
                self.counts.rejected += 1;
                (status, reason)
            }
            Outcome::Failed { status, reason } => {
                self.counts.failed += 1;
                (status, reason)
            }
        };
        let endpoint = record.map_or("(deleted)".into(), |r| tidings_wire::endpoint::mask(&r.endpoint));
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(RecipientError {
                subscription: id,
                endpoint,
                status: *status,
                reason: reason.clone(),
            });
        }
        let Some(was) = record else { return SubscriptionChange::Keep };
        let since = was.failing_since.unwrap_or(now);
        let failures = was.failures + 1;
        if failures >= pruning.failures && now.saturating_sub(since) >= pruning.failing_for {
            self.deleted_failing += 1;
            return SubscriptionChange::DeleteFailing;
        }
        SubscriptionChange::Update(Subscription {
            failures,
            failing_since: Some(since),
            last_error: Some(reason.clone()),
            ..was.clone()
        })
    }
}

/// What an outcome does to the recipient's subscription (see [`QueuedSend::count`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionChange {
    /// Nothing.
    Keep,
    /// Its failures changed: store this.
    Update(Subscription),
    /// The push service says it is gone: delete it.
    Delete,
    /// It failed too long: delete it, and count it deleted for failing.
    DeleteFailing,
}

/// An idempotency key of `POST /api/v1/sends`: a retried request with the same key within
/// its lifetime gets the first send instead of a second one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The key, as the client sent it.
    pub key: String,
    /// Until when it is remembered.
    pub expires: u64,
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
    /// Failed after the retries, or out of time.
    Failed {
        /// The last status, if any.
        status: Option<u16>,
        /// Why.
        reason: String,
    },
}

/// Why claimed recipients of a crashed instance are counted failed rather than sent again.
pub const INTERRUPTED: &str =
    "interrupted: the hub stopped while sending (not sent again, so as not to send twice)";

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

/// Who holds a claim on recipients: one dispatcher, in one hub process (random per start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner(pub [u8; 16]);

impl Owner {
    /// A new owner, for a dispatcher starting.
    pub fn random() -> Self {
        let mut bytes = [0; 16];
        aws_lc_rs::rand::fill(&mut bytes).expect("the system's random generator works");
        Self(bytes)
    }
}

/// An admin login, kept on the server so that it can be ended everywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSession {
    /// When it ends (seconds since the epoch).
    pub expires: u64,
    /// Which admin secret it was opened with (a keyed hash): a new secret ends it.
    pub secret: String,
}
