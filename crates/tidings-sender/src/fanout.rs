//! Sending one message to many subscriptions: the fan-out engine behind `tidings broadcast`
//! (and the hub).
//!
//! Web Push has no multicast, so every subscription costs an encryption and a request. The
//! engine takes subscriptions from a bounded channel (a list of any length streams through
//! in bounded memory), encrypts on the runtime's worker threads (all cores), and sends over
//! the client's per-origin connection pools with a bound on requests in flight in total and
//! per push service. VAPID tokens are signed once per push service ([`VapidSigner`]).
//!
//! Answers are handled per push service: a 429 (or a 503 with `Retry-After`) pauses that
//! origin only, for as long as it asks, then its requests are retried; 5xx answers and
//! network errors are retried with backoff a few times; 4xx answers are final. Every
//! subscription ends in exactly one [`Outcome`], reported on the results channel.
//!
//! [`Engine`] is the part that sends to one subscription within those limits; [`fanout`]
//! drives it over a stream of subscriptions (`tidings broadcast`), and the hub drives one
//! engine per lane over all its sends, with a time budget per push service and a stop
//! signal for draining ([`Bounds`]).

use crate::client::PushClient;
use crate::outcome::Verdict;
use crate::request::{Message, duplicate, prepare};
use crate::subscription::Subscription;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tidings_crypto::vapid::VapidSigner;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How hard to push.
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    /// Requests in flight, in total.
    pub concurrency: usize,
    /// Requests in flight to one push service.
    pub per_origin: usize,
    /// Attempts per subscription for answers worth retrying (429, 5xx, network errors).
    pub max_attempts: u32,
    /// The longest pause a `Retry-After` can impose.
    pub max_retry_after: Duration,
    /// The first backoff after a 5xx or a network error (doubled each time).
    pub backoff: Duration,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        Self {
            concurrency: 256,
            per_origin: 128,
            max_attempts: 4,
            max_retry_after: Duration::from_secs(120),
            backoff: Duration::from_millis(500),
        }
    }
}

/// One subscription to send to, as read from the input.
#[derive(Debug)]
pub struct Target {
    /// Its position in the input (the line number, from 1).
    pub index: u64,
    /// The caller's id for it, if the input had one.
    pub id: Option<String>,
    /// The subscription, or why the input could not be read as one.
    pub subscription: Result<Subscription, String>,
}

/// How a subscription ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The push service took the message.
    Accepted,
    /// 404 or 410: delete the subscription.
    Gone {
        /// The status.
        status: u16,
    },
    /// A final refusal (400, 401, 403, 413, ...).
    Rejected {
        /// The status.
        status: u16,
        /// The service's errno, if given.
        errno: Option<i64>,
        /// The service's message, if given.
        message: Option<String>,
    },
    /// Still failing after the last attempt (429, 5xx, or no answer).
    Failed {
        /// The last status, if there was an answer.
        status: Option<u16>,
        /// What went wrong.
        reason: String,
    },
    /// The input was not a usable subscription (not sent).
    Invalid {
        /// Why.
        reason: String,
    },
}

impl Outcome {
    /// The outcome's name in reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Gone { .. } => "gone",
            Self::Rejected { .. } => "rejected",
            Self::Failed { .. } => "failed",
            Self::Invalid { .. } => "invalid",
        }
    }
}

/// A subscription's outcome, for the results channel.
#[derive(Debug, Clone)]
pub struct Report {
    /// The input position.
    pub index: u64,
    /// The caller's id.
    pub id: Option<String>,
    /// The endpoint, masked (never the capability itself).
    pub endpoint: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// Requests made for it.
    pub attempts: u32,
}

/// Per push service: its bound on requests in flight, and until when it asked us to wait.
struct Origin {
    slots: Semaphore,
    paused_until: Mutex<Option<Instant>>,
}

impl Origin {
    async fn wait_if_paused(&self) {
        loop {
            let until = *self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => return,
            }
        }
    }

    fn pause(&self, delay: Duration) {
        let until = Instant::now() + delay;
        let mut paused = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }
}

/// The engine: a client, a signer, the limits, and per-push-service state (request slots,
/// pauses asked for with `Retry-After`), shared by everything sent through it: one
/// broadcast, or every send of a hub lane. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

struct Shared {
    client: PushClient,
    signer: Option<Arc<VapidSigner>>,
    config: FanoutConfig,
    in_flight: Semaphore,
    origins: Mutex<HashMap<String, Arc<Origin>>>,
}

/// What bounds one subscription's sending besides the engine's limits.
#[derive(Debug, Clone, Default)]
pub struct Bounds {
    /// No attempt starts after this; the subscription then ends `Failed` ("out of time").
    pub deadline: Option<Instant>,
    /// Turns true to give up a subscription whose first request has not started yet.
    pub stop: Option<watch::Receiver<bool>>,
}

/// How one subscription ended, and how many requests it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// How it ended.
    pub outcome: Outcome,
    /// Requests made for it.
    pub attempts: u32,
}

impl Engine {
    /// An engine sending with `client`, signing with `signer` (VAPID), within `config`.
    pub fn new(client: PushClient, signer: Option<Arc<VapidSigner>>, config: FanoutConfig) -> Self {
        let in_flight = Semaphore::new(config.concurrency);
        Self { shared: Arc::new(Shared { client, signer, config, in_flight, origins: Mutex::default() }) }
    }

    fn origin(&self, audience: &str) -> Arc<Origin> {
        let shared = &self.shared;
        let mut origins = shared.origins.lock().unwrap_or_else(|p| p.into_inner());
        origins
            .entry(audience.to_owned())
            .or_insert_with(|| {
                Arc::new(Origin {
                    slots: Semaphore::new(shared.config.per_origin),
                    paused_until: Mutex::new(None),
                })
            })
            .clone()
    }

    /// Sends `message` to `subscription`: encrypts, signs, and retries what is worth
    /// retrying, within the engine's limits and `bounds`. `None` when `bounds.stop` turned
    /// true before the first request started (nothing was sent).
    pub async fn send(
        &self,
        message: &Message,
        subscription: &Subscription,
        bounds: &Bounds,
    ) -> Option<Sent> {
        let shared = &self.shared;
        let done = |outcome, attempts| Some(Sent { outcome, attempts });
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let request = match prepare(subscription, message, shared.signer.as_deref(), now) {
            Ok(request) => request,
            Err(e) => return done(Outcome::Invalid { reason: e.to_string() }, 0),
        };
        let origin = self.origin(subscription.audience());
        let mut attempts = 0;
        let mut last_status = None;
        loop {
            let answer = {
                let ready = async {
                    origin.wait_if_paused().await;
                    let origin_slot = origin.slots.acquire().await.expect("never closed");
                    let slot = shared.in_flight.acquire().await.expect("never closed");
                    (origin_slot, slot)
                };
                let (_origin_slot, _slot) = match bounded(ready, bounds, attempts == 0).await {
                    Wait::Ready(slots) => slots,
                    Wait::Stopped => return None,
                    Wait::OutOfTime => {
                        let reason =
                            "out of time: the send's time budget for this push service is spent".into();
                        return done(Outcome::Failed { status: last_status, reason }, attempts);
                    }
                };
                attempts += 1;
                shared.client.send(duplicate(&request)).await
            };
            let last = attempts >= shared.config.max_attempts;
            let backoff = shared.config.backoff.saturating_mul(1 << (attempts - 1).min(10));
            match answer {
                Ok(response) => match response.verdict {
                    Verdict::Accepted => return done(Outcome::Accepted, attempts),
                    Verdict::Gone => {
                        return done(Outcome::Gone { status: response.status.as_u16() }, attempts);
                    }
                    Verdict::Rejected => {
                        let error = response.error.unwrap_or_default();
                        let outcome = Outcome::Rejected {
                            status: response.status.as_u16(),
                            errno: error.errno,
                            message: error.message,
                        };
                        return done(outcome, attempts);
                    }
                    Verdict::RetryLater => {
                        last_status = Some(response.status.as_u16());
                        if last {
                            let reason = response.explanation().to_owned();
                            return done(Outcome::Failed { status: last_status, reason }, attempts);
                        }
                        // The service said how long to wait: the whole origin waits; otherwise
                        // only this request backs off.
                        match response.retry_after {
                            Some(delay) => origin.pause(delay.min(shared.config.max_retry_after)),
                            None if response.status == 429 => origin.pause(backoff),
                            None => tokio::time::sleep(backoff).await,
                        }
                    }
                },
                Err(crate::client::SendError::Refused(refused)) => {
                    return done(Outcome::Invalid { reason: format!("not sent: {refused}") }, attempts);
                }
                Err(e) => {
                    if last {
                        return done(Outcome::Failed { status: None, reason: e.to_string() }, attempts);
                    }
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }
}

/// How waiting for a request slot ended.
enum Wait<T> {
    Ready(T),
    Stopped,
    OutOfTime,
}

/// Waits for `ready`, unless the deadline passes first, or (before the first attempt,
/// `first`) the stop signal comes.
async fn bounded<T>(ready: impl Future<Output = T>, bounds: &Bounds, first: bool) -> Wait<T> {
    let deadline = async {
        match bounds.deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    let stop = async {
        match bounds.stop.clone() {
            Some(mut stop) if first => {
                let _ = stop.wait_for(|stopped| *stopped).await;
            }
            _ => std::future::pending().await,
        }
    };
    if bounds.deadline.is_some_and(|d| d <= Instant::now()) {
        return Wait::OutOfTime;
    }
    tokio::select! {
        biased;
        () = stop => Wait::Stopped,
        () = deadline => Wait::OutOfTime,
        ready = ready => Wait::Ready(ready),
    }
}

/// Sends `message` to every target that arrives on `targets`, until the channel closes or
/// `stop` turns true (then no new target is started, and those under way finish). Every
/// target started gets exactly one result on `results`. Returns how many were started.
pub async fn fanout(
    client: PushClient,
    message: Message,
    signer: Option<Arc<VapidSigner>>,
    config: FanoutConfig,
    mut targets: mpsc::Receiver<Target>,
    results: mpsc::Sender<Report>,
    mut stop: watch::Receiver<bool>,
) -> u64 {
    // Tasks waiting on a paused origin hold no request slot, so they are bounded apart, at a
    // multiple of the concurrency that keeps memory small.
    let admitted = Arc::new(Semaphore::new(config.concurrency * 8));
    let engine = Engine::new(client, signer, config);
    let message = Arc::new(message);
    let mut tasks = JoinSet::new();
    let mut started = 0;
    loop {
        let target = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            target = targets.recv() => match target {
                Some(target) => target,
                None => break,
            },
        };
        let Ok(permit) = admitted.clone().acquire_owned().await else { break };
        started += 1;
        let (engine, message, results) = (engine.clone(), message.clone(), results.clone());
        tasks.spawn(async move {
            let result = send_one(&engine, &message, target).await;
            let _ = results.send(result).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    started
}

async fn send_one(engine: &Engine, message: &Message, target: Target) -> Report {
    let Target { index, id, subscription } = target;
    let subscription = match subscription {
        Ok(subscription) => subscription,
        Err(reason) => {
            return Report { index, id, endpoint: None, outcome: Outcome::Invalid { reason }, attempts: 0 };
        }
    };
    let endpoint = Some(tidings_wire::endpoint::mask(&subscription.endpoint().to_string()));
    let Sent { outcome, attempts } =
        engine.send(message, &subscription, &Bounds::default()).await.expect("no stop signal: always sent");
    Report { index, id, endpoint, outcome, attempts }
}
