//! The dispatcher: sends every due send, several at once, on the fan-out engine of
//! `tidings broadcast` (per-push-service slots and `Retry-After`, retries with backoff).
//!
//! * **Lanes.** Sends to a user or a subscription go through their own engine (the targeted
//!   lane), with its own request slots, so a login code never waits behind a broadcast.
//!   Within a lane, sends share the slots fairly (waiters are served in turn).
//! * **Claims with leases.** A send's recipients are claimed from the store in batches, for
//!   this dispatcher ([`Owner`]) and for a lease it renews while it works, before any
//!   request leaves. Several hub processes on one database share a large send that way, each
//!   recipient at most once. A recipient whose lease ran out (its process died) is counted
//!   failed ("interrupted") by whichever dispatcher notices, never sent again.
//! * **Per push service.** Each push service (origin) has a bound on requests in flight per
//!   lane, and each send a time budget per push service: once it is spent, that send's
//!   remaining recipients there fail at once ("out of time"), so one dead host cannot hold a
//!   send (or its slots) for hours.
//! * **Draining.** On shutdown no new claim is made; recipients claimed but not started are
//!   given back; requests under way get the grace period to finish.
//! * **Outcomes** are recorded in batches, each recorded batch freeing room for more claims.
//!
//! The hub supervises it ([`Supervised`]): a dispatcher that fails is restarted with
//! backoff, and `/health` says so meanwhile.

use crate::model::{Lane, Outcome, Owner, Pruning, QueuedSend, SubscriptionId};
use crate::store::{AnyStore, Claimed, Store as _, StoreError};
use crate::unix_now;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tidings_sender::fanout::{self, Bounds, Engine};
use tidings_sender::{Message, Subscription};
use tidings_wire::{PushSubscription, SubscriptionKeys};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Recipients claimed, and outcomes recorded, in one write, at most.
const RECORD_BATCH: usize = 512;
/// How long outcomes wait to be recorded together, at most.
const RECORD_DELAY: Duration = Duration::from_millis(50);
/// How often the dispatcher looks for sends that came due (besides being woken).
const POLL: Duration = Duration::from_secs(1);
/// Recipients written as items per write while a send starts.
const MATERIALIZE_CHUNK: usize = 5_000;
/// Sends looked at per poll.
const DUE_AT_ONCE: usize = 256;

/// How the dispatcher works.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// When subscriptions that keep failing are deleted.
    pub pruning: Pruning,
    /// How long a claim holds without renewal.
    pub lease: Duration,
    /// How long one send may spend on one push service.
    pub host_budget: Duration,
    /// How long requests under way get to finish when the hub stops.
    pub grace: Duration,
    /// Requests in flight in the bulk lane (sends to topics and everyone).
    pub bulk_concurrency: usize,
    /// Requests in flight in the targeted lane (sends to users and subscriptions).
    pub targeted_concurrency: usize,
}

/// A lane: its engine, the room for recipients claimed but not recorded (twice the
/// requests it may have in flight: what a crash can leave interrupted), and the batch in
/// which recipients are claimed and outcomes recorded. The batch is a quarter of the room,
/// so that claims and records overlap with requests instead of waiting for one another
/// (a database round trip is milliseconds).
#[derive(Clone)]
struct LaneState {
    engine: Engine,
    room: Arc<Semaphore>,
    batch: usize,
}

impl LaneState {
    fn new(engine: Engine, concurrency: usize) -> Self {
        let concurrency = concurrency.max(1);
        let batch = (concurrency / 2).clamp(1, RECORD_BATCH);
        Self { engine, room: Arc::new(Semaphore::new(concurrency * 2)), batch }
    }
}

struct Lanes {
    bulk: LaneState,
    targeted: LaneState,
}

impl Lanes {
    fn get(&self, lane: Lane) -> &LaneState {
        match lane {
            Lane::Bulk => &self.bulk,
            Lane::Targeted => &self.targeted,
        }
    }
}

/// What the dispatcher sends with.
pub struct Dispatcher {
    store: AnyStore,
    lanes: Lanes,
    config: DispatchConfig,
    wake: Arc<Notify>,
    owner: Owner,
}

/// Runs a storage operation until it succeeds, waiting longer after each failure (up to 30
/// s): a send in progress must neither lose track of recipients it claimed nor give up on
/// them while storage is failing (a full disk, a database restarting).
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

fn lease_until(lease: Duration) -> u64 {
    unix_now() + lease.as_secs().max(1)
}

impl Dispatcher {
    /// A dispatcher sending with `engine` settings for each lane (`bulk` and `targeted`
    /// engines), for a new owner.
    pub fn new(
        store: AnyStore,
        bulk: Engine,
        targeted: Engine,
        config: DispatchConfig,
        wake: Arc<Notify>,
    ) -> Self {
        let lanes = Lanes {
            bulk: LaneState::new(bulk, config.bulk_concurrency),
            targeted: LaneState::new(targeted, config.targeted_concurrency),
        };
        Self { store, lanes, config, wake, owner: Owner::random() }
    }

    /// Sends whatever is due until `stop` turns true, then drains (see the module).
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let pruning = self.config.pruning;
        if self.store.exclusive() {
            // Only this process uses the store: every claim left is a dead process's.
            match persistently(|| self.store.recover(u64::MAX, unix_now(), pruning)).await {
                0 => {}
                n => tracing::warn!(
                    recipients = n,
                    "the hub stopped while sending: recipients whose outcome is unknown are counted as failed"
                ),
            }
        }
        let keeper = tokio::spawn(self.clone().keep_leases());
        let mut running: HashMap<u64, tokio::task::JoinHandle<()>> = HashMap::new();
        loop {
            running.retain(|_, task| !task.is_finished());
            match self.store.due_sends(unix_now(), DUE_AT_ONCE).await {
                Ok(due) => {
                    for send in due {
                        if let std::collections::hash_map::Entry::Vacant(entry) = running.entry(send.id) {
                            entry.insert(tokio::spawn(self.clone().run_send(send, stop.clone())));
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot read the queue"),
            }
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
        // Draining: the send tasks stop claiming and give back what they have not started;
        // requests under way get the grace period.
        let deadline = Instant::now() + self.config.grace;
        for (id, task) in running {
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                tracing::warn!(
                    send = id,
                    "requests still under way after the grace period: left to their lease"
                );
            }
        }
        keeper.abort();
    }

    /// Renews this dispatcher's leases while it runs, and (with a shared store) counts the
    /// claims of dispatchers whose lease ran out as interrupted.
    async fn keep_leases(self: Arc<Self>) {
        let every = (self.config.lease / 3).max(Duration::from_millis(200));
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = self.store.renew(self.owner, lease_until(self.config.lease)).await {
                tracing::error!(error = %e, "cannot renew the dispatcher's leases");
            }
            if !self.store.exclusive() {
                let now = unix_now();
                match self.store.recover(now, now, self.config.pruning).await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(
                        recipients = n,
                        "another hub stopped while sending: recipients whose outcome is unknown are counted as failed"
                    ),
                    Err(e) => tracing::error!(error = %e, "cannot recover interrupted sends"),
                }
            }
        }
    }

    /// Sends one send's recipients that this dispatcher can claim.
    async fn run_send(self: Arc<Self>, send: QueuedSend, stop: watch::Receiver<bool>) {
        let id = send.id;
        let LaneState { engine, room, batch } = self.lanes.get(send.target.lane()).clone();
        let message = Arc::new(message(&send));
        let budgets = Arc::new(Budgets::new(self.config.host_budget));
        let (results, outcomes) = mpsc::channel(RECORD_BATCH * 2);
        let recorder = tokio::spawn(self.clone().record(id, outcomes, room.clone(), batch));
        let mut requests = JoinSet::new();
        let mut send = send;
        loop {
            if *stop.borrow() {
                break;
            }
            if !send.materialized {
                send = persistently(|| self.store.materialize(id, unix_now(), MATERIALIZE_CHUNK)).await;
            }
            let mut stopping = stop.clone();
            let permits = tokio::select! {
                permits = room.clone().acquire_many_owned(batch as u32) => permits.expect("never closed"),
                _ = stopping.wait_for(|stopped| *stopped) => break,
            };
            permits.forget();
            let claimed =
                persistently(|| self.store.claim(id, self.owner, lease_until(self.config.lease), batch))
                    .await;
            room.add_permits(batch - claimed.len());
            if claimed.is_empty() {
                if send.materialized {
                    break;
                }
                continue;
            }
            for (sub, record) in claimed {
                let (engine, message, budgets, results, stop) =
                    (engine.clone(), message.clone(), budgets.clone(), results.clone(), stop.clone());
                requests.spawn(async move {
                    let outcome = deliver(&engine, &message, &budgets, (sub, record), stop).await;
                    match outcome {
                        Some(outcome) => {
                            let _ = results.send((sub, outcome)).await;
                            None
                        }
                        None => Some(sub),
                    }
                });
            }
            while requests.try_join_next().is_some() {}
        }
        drop(results);
        let mut unstarted = 0;
        while let Some(done) = requests.join_next().await {
            if let Ok(Some(_)) = done {
                unstarted += 1;
            }
        }
        room.add_permits(unstarted);
        let last = recorder.await;
        // Every request this task started has its outcome recorded now: whatever it still
        // holds was never sent (requests that never started, or a claim whose answer was
        // lost on its way back from the database and was made again). Given back, it is
        // claimed again by this hub's next look at the queue, or by another hub.
        let released = persistently(|| self.store.release(id, self.owner)).await;
        if released > 0 {
            tracing::info!(send = id, recipients = released, "recipients not sent are queued again");
        }
        match last {
            Ok(Some(last)) if last.status == crate::model::SendStatus::Done => {
                tracing::info!(send = id, counts = ?last.counts, "send finished")
            }
            _ => {}
        }
    }

    /// Records outcomes in batches until the channel closes; each batch recorded makes room
    /// for as many claims. Returns the send as last recorded.
    async fn record(
        self: Arc<Self>,
        id: u64,
        mut outcomes: mpsc::Receiver<(SubscriptionId, Outcome)>,
        room: Arc<Semaphore>,
        size: usize,
    ) -> Option<QueuedSend> {
        let mut batch = Vec::with_capacity(size);
        let mut last = None;
        loop {
            let closed = match tokio::time::timeout(RECORD_DELAY, outcomes.recv()).await {
                Ok(Some(outcome)) => {
                    batch.push(outcome);
                    if batch.len() < size {
                        continue;
                    }
                    false
                }
                Ok(None) => true,
                Err(_) => false,
            };
            if !batch.is_empty() {
                let n = batch.len();
                let pruning = self.config.pruning;
                last = Some(persistently(|| self.store.record(id, batch.clone(), unix_now(), pruning)).await);
                batch.clear();
                room.add_permits(n);
            }
            if closed {
                return last;
            }
        }
    }
}

/// When each push service's time budget of one send ends: its first request there, plus
/// the budget.
struct Budgets {
    budget: Duration,
    ends: Mutex<HashMap<String, Instant>>,
}

impl Budgets {
    fn new(budget: Duration) -> Self {
        Self { budget, ends: Mutex::default() }
    }

    fn deadline(&self, audience: &str) -> Instant {
        let mut ends = self.ends.lock().unwrap_or_else(|p| p.into_inner());
        *ends.entry(audience.to_owned()).or_insert_with(|| Instant::now() + self.budget)
    }
}

/// Sends to one claimed recipient; its outcome, or `None` if the dispatcher stopped before
/// its first request started.
async fn deliver(
    engine: &Engine,
    message: &Message,
    budgets: &Budgets,
    (_, record): Claimed,
    stop: watch::Receiver<bool>,
) -> Option<Outcome> {
    let Some(record) = record else {
        return Some(Outcome::Rejected {
            status: None,
            reason: "unsubscribed after the send started".into(),
        });
    };
    let subscription = PushSubscription {
        endpoint: record.endpoint,
        expiration_time: None,
        keys: SubscriptionKeys { p256dh: record.p256dh, auth: record.auth },
    };
    let subscription = match Subscription::from_json(&subscription) {
        Ok(subscription) => subscription,
        Err(e) => return Some(Outcome::Rejected { status: None, reason: e.to_string() }),
    };
    let bounds = Bounds { deadline: Some(budgets.deadline(subscription.audience())), stop: Some(stop) };
    let sent = engine.send(message, &subscription, &bounds).await?;
    Some(match sent.outcome {
        fanout::Outcome::Accepted => Outcome::Accepted,
        fanout::Outcome::Gone { .. } => Outcome::Gone,
        fanout::Outcome::Rejected { status, message, .. } => Outcome::Rejected {
            status: Some(status),
            reason: message.unwrap_or_else(|| format!("refused with {status}")),
        },
        fanout::Outcome::Failed { status, reason } => Outcome::Failed { status, reason },
        fanout::Outcome::Invalid { reason } => Outcome::Rejected { status: None, reason },
    })
}

/// The message a send describes.
fn message(send: &QueuedSend) -> Message {
    let mut message = Message::new(send.content.payload.clone());
    message.ttl = send.content.ttl;
    message.urgency = send.content.urgency;
    message.topic = send.content.topic.clone();
    message
}

/// The state of the supervised dispatcher, for `/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatcherState {
    /// Sending.
    Running,
    /// It failed and is being restarted.
    Restarting {
        /// Why it failed.
        reason: String,
    },
}

/// The dispatcher under supervision: restarted with backoff when it fails.
pub struct Supervised {
    state: Mutex<DispatcherState>,
}

impl Supervised {
    /// Supervision for a dispatcher not started yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(DispatcherState::Running) })
    }

    /// Its state now.
    pub fn state(&self) -> DispatcherState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, state: DispatcherState) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// Runs `dispatcher` until `stop` and its drain end, restarting it (after 1 s, doubling
    /// to a minute) when it panics.
    pub fn run(
        self: &Arc<Self>,
        dispatcher: Dispatcher,
        stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let dispatcher = Arc::new(dispatcher);
        let watched = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_secs(1);
            loop {
                let run = tokio::spawn(dispatcher.clone().run(stop.clone()));
                match run.await {
                    Ok(()) => return,
                    Err(e) => {
                        let reason = if e.is_panic() { "it panicked".to_owned() } else { e.to_string() };
                        tracing::error!(reason, "the dispatcher failed; restarting in {backoff:?}");
                        watched.set(DispatcherState::Restarting { reason });
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                        watched.set(DispatcherState::Running);
                    }
                }
            }
        })
    }
}
