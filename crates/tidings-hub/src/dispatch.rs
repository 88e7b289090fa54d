//! The dispatcher: runs queued sends, one at a time in id order, on the fan-out engine of
//! `tidings broadcast` (per-origin pools and limits, `Retry-After`, retries with backoff).
//!
//! Three tasks per send: a feeder claims recipients from the store (durably marked as being
//! sent before any request leaves) and hands them to the engine; the engine sends; a
//! collector records outcomes in batches. A window bounds the recipients claimed but not yet
//! recorded (twice the concurrency), which is also the most a crash can leave "interrupted"
//! (counted as failed, never sent twice; see [`crate::store`]).

use crate::store::{HubStore, Outcome, Pruning, Send, Status, StoreError, SubscriptionId};
use crate::unix_now;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tidings_crypto::b64;
use tidings_crypto::vapid::VapidSigner;
use tidings_sender::fanout::{self, FanoutConfig, Report, Target};
use tidings_sender::{Message, PushClient, Subscription};
use tidings_wire::headers::{Topic, Urgency};
use tidings_wire::{PushSubscription, SubscriptionKeys};
use tokio::sync::{Notify, Semaphore, mpsc, watch};

/// Outcomes recorded in one commit, at most.
const RECORD_BATCH: usize = 512;
/// How long outcomes wait to be recorded together, at most.
const RECORD_DELAY: Duration = Duration::from_millis(50);
/// How often the dispatcher looks for scheduled sends that came due.
const POLL: Duration = Duration::from_secs(1);

/// What the dispatcher sends with.
#[derive(Clone)]
pub struct Dispatcher {
    /// The hub's database.
    pub store: HubStore,
    /// The pooled HTTP client.
    pub client: PushClient,
    /// Signs VAPID tokens (one per push service, reused).
    pub signer: Arc<VapidSigner>,
    /// Concurrency and retries.
    pub fanout: FanoutConfig,
    /// Woken when a send is queued.
    pub wake: Arc<Notify>,
    /// When subscriptions that keep failing are deleted.
    pub pruning: Pruning,
}

impl Dispatcher {
    /// Runs forever: recovers what a previous run left, then sends whatever is due.
    pub async fn run(self) {
        match self.store.recover(unix_now(), self.pruning).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                recipients = n,
                "the hub stopped while sending: recipients whose outcome is unknown are counted as failed"
            ),
            Err(e) => tracing::error!(error = %e, "could not recover interrupted sends"),
        }
        loop {
            match self.store.next_due(unix_now()).await {
                Ok(Some(send)) => {
                    if let Err(e) = self.run_send(send).await {
                        tracing::error!(error = %e, "a send stopped; it resumes in a moment");
                        tokio::time::sleep(POLL).await;
                    }
                }
                Ok(None) => {
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(POLL) => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the queue");
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }

    /// Sends one send to all its remaining recipients.
    async fn run_send(&self, send: Send) -> Result<(), StoreError> {
        let send = self.store.start_send(send.id, unix_now()).await?;
        if send.status == Status::Done {
            return Ok(());
        }
        tracing::info!(send = send.id, recipients = send.counts.pending(), "sending");
        let message = message(&send);
        let window = Arc::new(Semaphore::new(self.fanout.concurrency * 2));
        let (targets, targets_rx) = mpsc::channel(self.fanout.concurrency);
        let (results_tx, mut results) = mpsc::channel(RECORD_BATCH * 2);
        let (_stop, stop) = watch::channel(false);
        let engine = tokio::spawn(fanout::fanout(
            self.client.clone(),
            message,
            Some(self.signer.clone()),
            self.fanout.clone(),
            targets_rx,
            results_tx,
            stop,
        ));
        let feeder =
            tokio::spawn(feed(self.store.clone(), send.id, targets, window.clone(), self.fanout.concurrency));
        let mut outcomes = Vec::with_capacity(RECORD_BATCH);
        loop {
            match tokio::time::timeout(RECORD_DELAY, results.recv()).await {
                Ok(Some(report)) => {
                    outcomes.push(outcome(report));
                    if outcomes.len() < RECORD_BATCH {
                        continue;
                    }
                }
                Ok(None) => break,
                Err(_) if outcomes.is_empty() => continue,
                Err(_) => {}
            }
            let done = outcomes.len();
            persistently(|| self.store.record(send.id, outcomes.clone(), unix_now(), self.pruning)).await;
            outcomes.clear();
            window.add_permits(done);
        }
        let last =
            persistently(|| self.store.record(send.id, outcomes.clone(), unix_now(), self.pruning)).await;
        let _ = engine.await;
        let _ = feeder.await;
        tracing::info!(send = last.id, counts = ?last.counts, status = ?last.status, "send finished");
        if last.status != Status::Done {
            // Cannot happen while every claim and record is retried; if it does, do not spin.
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }
}

/// Runs a storage operation until it succeeds, waiting longer after each failure (up to 30
/// s): a send in progress must neither lose track of recipients it claimed nor give up on
/// them while storage is failing (a full disk, say).
async fn persistently<T, F: Future<Output = Result<T, StoreError>>>(mut operation: impl FnMut() -> F) -> T {
    let mut wait = Duration::from_millis(100);
    loop {
        match operation().await {
            Ok(value) => return value,
            Err(e) => {
                tracing::error!(error = %e, "hub storage failed during a send; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Claims recipients and hands them to the engine, keeping at most the window's size
/// claimed but not recorded. Storage failures are retried, so every claimed recipient
/// reaches the engine (and gets an outcome recorded).
async fn feed(
    store: HubStore,
    send: u64,
    targets: mpsc::Sender<Target>,
    window: Arc<Semaphore>,
    batch: usize,
) {
    let (mut cursor, mut index) = (None, 0);
    loop {
        let Ok(permits) = window.acquire_many(batch as u32).await else { return };
        permits.forget();
        let claimed = persistently(|| store.claim(send, cursor, batch)).await;
        window.add_permits(batch - claimed.len());
        let Some((last, _)) = claimed.last() else { return };
        cursor = Some(*last);
        for (id, record) in claimed {
            index += 1;
            let subscription = match record {
                Some(record) => Subscription::from_json(&PushSubscription {
                    endpoint: record.endpoint,
                    expiration_time: None,
                    keys: SubscriptionKeys { p256dh: record.p256dh, auth: record.auth },
                })
                .map_err(|e| e.to_string()),
                None => Err("unsubscribed after the send started".to_owned()),
            };
            if targets.send(Target { index, id: Some(id.to_string()), subscription }).await.is_err() {
                return;
            }
        }
    }
}

/// The message a send describes (its fields were checked when it was queued).
fn message(send: &Send) -> Message {
    let mut message = Message::new(b64::decode(&send.payload).unwrap_or_default());
    message.ttl = send.ttl;
    message.urgency = send.urgency.as_deref().and_then(|u| u.parse::<Urgency>().ok());
    message.topic = send.topic.as_deref().and_then(|t| t.parse::<Topic>().ok());
    message
}

fn outcome(report: Report) -> (SubscriptionId, Outcome) {
    let id = report.id.as_deref().and_then(SubscriptionId::parse).unwrap_or(SubscriptionId([0; 16]));
    let outcome = match report.outcome {
        fanout::Outcome::Accepted => Outcome::Accepted,
        fanout::Outcome::Gone { .. } => Outcome::Gone,
        fanout::Outcome::Rejected { status, message, .. } => Outcome::Rejected {
            status: Some(status),
            reason: message.unwrap_or_else(|| format!("refused with {status}")),
        },
        fanout::Outcome::Failed { status, reason } => Outcome::Failed { status, reason },
        fanout::Outcome::Invalid { reason } => Outcome::Rejected { status: None, reason },
    };
    (id, outcome)
}
