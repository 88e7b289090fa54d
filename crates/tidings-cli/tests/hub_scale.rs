//! `tidings hub` at scale, over real sockets: three hub processes on one PostgreSQL sharing a
//! send while one is killed; PostgreSQL itself stopped and started in the middle of a send;
//! SIGTERM draining; a push service that never answers next to a targeted send and a
//! healthy one; idempotent send requests.

mod common;

use common::UserAgent;
use common::hub::{
    Backend, Browser, DeadHost, Http, HubProcess, Sink, queue, send_status, subscriptions, user_token,
    wait_done,
};
use common::postgres::PrivateServer;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Subscribes `endpoints` through the browser API of the given hubs (in turn), to `topics`,
/// 32 requests at a time.
async fn subscribe_all(hubs: &[String], endpoints: &[String], topics: &[&str]) {
    let http = Http::new();
    let ua = Arc::new(UserAgent::new());
    let mut pages = Vec::new();
    for hub in hubs {
        pages.push(Arc::new(Browser::open(&http, hub).await));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (i, chunk) in endpoints.chunks(endpoints.len() / 32 + 1).enumerate() {
        let (chunk, page, ua) = (chunk.to_vec(), pages[i % pages.len()].clone(), ua.clone());
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        tasks.spawn(async move {
            for endpoint in chunk {
                let body = json!({ "subscription": ua.subscription(&endpoint), "topics": topics });
                let answer = page.send("POST", "/api/subscriptions", &body).await;
                assert_eq!(answer.status, 201, "{}", answer.body);
            }
        });
    }
    tasks.join_all().await;
}

/// Caps that do not get in the way of a test subscribing thousands from one address.
const UNCAPPED: [&str; 6] = [
    "--browser-rate",
    "100000",
    "--new-subscriptions-per-session",
    "100000",
    "--new-subscriptions-per-address",
    "100000",
];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    UNCAPPED.iter().copied().chain(extra.iter().copied()).collect()
}

/// Three hubs on one database send one 10,000-recipient send together; one is killed with
/// SIGKILL in the middle. The send finishes, nobody receives it twice, the gone
/// subscriptions are pruned, and only the dead hub's claims (at most its window) are
/// counted interrupted, once its lease has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hubs_share_a_send_and_a_dead_ones_claims_are_resolved_by_its_lease() {
    const COUNT: usize = 10_000;
    const CONCURRENCY: usize = 16; // the hubs' --concurrency
    let sinks = [Sink::start(Duration::from_millis(3)).await, Sink::start(Duration::from_millis(3)).await];
    let hub = |subject: &'static str| {
        args(&["--concurrency", "16", "--claim-lease", "4s", "--vapid-subject", subject])
    };
    let a = HubProcess::start_on(Backend::Postgres, &hub("mailto:a@hub.test"));
    let b = a.another(&hub("mailto:b@hub.test"));
    let mut c = a.another(&hub("mailto:c@hub.test"));
    let key = a.api_key();
    let endpoints: Vec<String> = (0..COUNT)
        .map(|i| sinks[i % 2].endpoint(&if i % 10 == 0 { format!("gone/{i}") } else { format!("ok/{i}") }))
        .collect();
    // Registered through all three at once: concurrent writers on one database.
    subscribe_all(&[a.url(), b.url(), c.url()], &endpoints, &["all"]).await;
    let http = Http::new();
    assert_eq!(subscriptions(&http, &b.url(), &key).await.len(), 1000, "a page of them, seen from any hub");
    let id =
        queue(&http, &b.url(), &key, &json!({ "to": { "topic": "all" }, "text": "to everyone, once" })).await;
    let total = || sinks.iter().map(Sink::total).sum::<u32>() as usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    while total() < COUNT / 3 {
        assert!(Instant::now() < deadline, "the send does not progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.kill9();
    let done = wait_done(&http, &a.url(), &key, id, Duration::from_secs(180)).await;
    let number = |name: &str| done["counts"][name].as_u64().unwrap() as usize;
    assert_eq!((number("queued"), number("pending"), number("rejected")), (COUNT, 0, 0), "{done}");
    assert_eq!(number("accepted") + number("gone") + number("failed"), COUNT);
    assert!(number("failed") <= 2 * CONCURRENCY, "only the dead hub's window is interrupted: {done}");
    let mut subjects = HashSet::new();
    for sink in &sinks {
        let received = sink.received.lock().unwrap();
        for (path, n) in &received.counts {
            assert_eq!(*n, 1, "{path} received the message {n} times");
        }
        subjects.extend(received.subjects.keys().cloned());
    }
    assert!(subjects.len() >= 2, "the hubs shared the work: {subjects:?}");
    let delivered: usize = sinks.iter().map(|s| s.received.lock().unwrap().counts.len()).sum();
    assert!(delivered >= number("accepted") + number("gone") && delivered <= COUNT);
    assert!(number("gone") >= COUNT / 10 - 2 * CONCURRENCY);
    // Any hub serves any request: the send as seen from the other live one.
    assert_eq!(send_status(&http, &b.url(), &key, id).await["counts"], done["counts"]);
}

/// PostgreSQL stops in the middle of a send: the API answers 503 with `Retry-After` and
/// `/health` says why; when it is back the send resumes without a hub restart, and nothing
/// queued (nor sent) is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_means_503_then_the_send_resumes() {
    const COUNT: usize = 600;
    let server = PrivateServer::start();
    let sink = Sink::start(Duration::from_millis(20)).await;
    let hub = HubProcess::start_on_url(&server.url(), &args(&["--concurrency", "8"]));
    let key = hub.api_key();
    let http = Http::new();
    let endpoints: Vec<String> = (0..COUNT).map(|i| sink.endpoint(&format!("ok/{i}"))).collect();
    subscribe_all(&[hub.url()], &endpoints, &["all"]).await;
    let id =
        queue(&http, &hub.url(), &key, &json!({ "to": { "topic": "all" }, "text": "through an outage" }))
            .await;
    while sink.total() < 50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.stop();
    let auth = format!("Bearer {key}");
    let status = http
        .call("GET", &format!("{}/api/v1/sends/{id}", hub.url()), &[("authorization", &auth)], None)
        .await;
    assert_eq!(status.status, 503, "{}", status.body);
    assert!(status.headers.contains_key("retry-after"));
    assert_eq!(status.json()["error"], "unavailable");
    let new = http
        .json(
            "POST",
            &format!("{}/api/v1/sends", hub.url()),
            &[("authorization", &auth)],
            &json!({ "to": "everyone", "text": "x" }),
        )
        .await;
    assert_eq!(new.status, 503);
    let health = http.call("GET", &format!("{}/health", hub.url()), &[], None).await;
    assert_eq!((health.status, health.json()["status"].clone()), (503, json!("failing")), "{}", health.body);
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.run();
    let done = wait_done(&http, &hub.url(), &key, id, Duration::from_secs(120)).await;
    assert_eq!(done["counts"]["accepted"], COUNT as u64, "{done}");
    for (path, n) in &sink.received.lock().unwrap().counts {
        assert_eq!(*n, 1, "{path} received the message {n} times");
    }
    assert_eq!(sink.total() as usize, COUNT);
    let health = http.call("GET", &format!("{}/health", hub.url()), &[], None).await;
    assert_eq!(health.status, 200, "{}", health.body);
}

/// SIGTERM in the middle of a send: requests under way finish within the grace period,
/// recipients not yet sent stay queued, and after a restart the send finishes with nobody
/// counted interrupted and nobody sent twice.
async fn sigterm_drains_without_interrupting_anyone(backend: Backend) {
    const COUNT: usize = 300;
    let sink = Sink::start(Duration::from_millis(150)).await;
    let mut hub = HubProcess::start_on(backend, &args(&["--concurrency", "8", "--shutdown-grace", "20s"]));
    let key = hub.api_key();
    let http = Http::new();
    let endpoints: Vec<String> = (0..COUNT).map(|i| sink.endpoint(&format!("ok/{i}"))).collect();
    subscribe_all(&[hub.url()], &endpoints, &["all"]).await;
    let id = queue(&http, &hub.url(), &key, &json!({ "to": { "topic": "all" }, "text": "drained" })).await;
    while sink.total() < 40 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(hub.terminate().success(), "a clean stop");
    let at_stop = sink.total() as usize;
    assert!(at_stop < COUNT, "stopped before the end ({at_stop})");
    hub.restart();
    let done = wait_done(&http, &hub.url(), &key, id, Duration::from_secs(120)).await;
    assert_eq!(
        (done["counts"]["accepted"].clone(), done["counts"]["failed"].clone()),
        (json!(COUNT), json!(0)),
        "{done}"
    );
    for (path, n) in &sink.received.lock().unwrap().counts {
        assert_eq!(*n, 1, "{path} received the message {n} times");
    }
}

/// A push service that never answers: a broadcast to it holds only that service's slots
/// and its own time budget. A targeted send (a login code) and a broadcast to a healthy
/// service go out meanwhile, and the dead service's recipients fail "out of time".
async fn a_dead_push_service_delays_nobody_else(backend: Backend) {
    let dead = DeadHost::start().await;
    let sink = Sink::start(Duration::ZERO).await;
    let hub = HubProcess::start_on(
        backend,
        &args(&["--concurrency", "16", "--push-timeout", "5s", "--host-budget", "8s"]),
    );
    let key = hub.api_key();
    let http = Http::new();
    let dead_endpoints: Vec<String> = (0..500).map(|i| dead.endpoint(&format!("never/{i}"))).collect();
    subscribe_all(&[hub.url()], &dead_endpoints, &["dead"]).await;
    let healthy: Vec<String> = (0..100).map(|i| sink.endpoint(&format!("healthy/{i}"))).collect();
    subscribe_all(&[hub.url()], &healthy, &["healthy"]).await;
    let page = Browser::open(&http, &hub.url()).await;
    let ua = UserAgent::new();
    let body = json!({ "subscription": ua.subscription(&sink.endpoint("alice")),
                       "user_token": user_token(&hub.user_token_secret(), "alice", "j1") });
    assert_eq!(page.send("POST", "/api/subscriptions", &body).await.status, 201);

    let broadcast =
        queue(&http, &hub.url(), &key, &json!({ "to": { "topic": "dead" }, "text": "into the void" })).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while dead.connections.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the broadcast never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let code =
        queue(&http, &hub.url(), &key, &json!({ "to": { "user": "alice" }, "text": "your code: 123456" }))
            .await;
    let other =
        queue(&http, &hub.url(), &key, &json!({ "to": { "topic": "healthy" }, "text": "news" })).await;
    let done = wait_done(&http, &hub.url(), &key, code, Duration::from_secs(30)).await;
    let latency = started.elapsed();
    assert_eq!(done["counts"]["accepted"], 1, "{done}");
    // Behind the broadcast it would wait for the dead service's timeouts (5 s at least).
    assert!(latency < Duration::from_secs(3), "the login code waited {latency:?} behind the broadcast");
    let done = wait_done(&http, &hub.url(), &key, other, Duration::from_secs(30)).await;
    assert_eq!(done["counts"]["accepted"], 100, "{done}");
    assert_eq!(send_status(&http, &hub.url(), &key, broadcast).await["status"], "running");
    // The dead service's recipients: timed out, then out of time; the send ends.
    let done = wait_done(&http, &hub.url(), &key, broadcast, Duration::from_secs(60)).await;
    assert_eq!(done["counts"]["failed"], 500, "{done}");
    let reasons: HashSet<&str> =
        done["errors"].as_array().unwrap().iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert!(reasons.iter().any(|r| r.contains("out of time")), "{reasons:?}");
    eprintln!("targeted send during the dead broadcast: done in {latency:?}");
}

/// `POST /api/v1/sends` with an `Idempotency-Key`: a retry gets the first send, not a
/// second one; another API key's same key is its own.
async fn a_retried_send_request_queues_one_send(backend: Backend) {
    let hub = HubProcess::start_on(backend, &[]);
    let (key, other_key) = (hub.api_key(), hub.api_key());
    let http = Http::new();
    let post = |key: &str, idempotency: &str, text: &str| {
        let (http, url, auth, idempotency) =
            (http.clone(), hub.url(), format!("Bearer {key}"), idempotency.to_owned());
        let body = json!({ "to": "everyone", "text": text });
        async move {
            let headers = [("authorization", auth.as_str()), ("idempotency-key", idempotency.as_str())];
            http.json("POST", &format!("{url}/api/v1/sends"), &headers, &body).await
        }
    };
    let first = post(&key, "order-42", "once").await;
    assert_eq!(first.status, 202, "{}", first.body);
    let again = post(&key, "order-42", "once, again").await;
    assert_eq!((again.status, again.json()["id"].clone()), (202, first.json()["id"].clone()));
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let others = post(&other_key, "order-42", "theirs").await;
    assert_ne!(others.json()["id"], first.json()["id"], "keys are per API key");
    let long = post(&key, &"k".repeat(300), "x").await;
    assert_eq!((long.status, long.json()["error"].clone()), (400, json!("bad_idempotency_key")));
    let auth = format!("Bearer {key}");
    let sends: Value = http
        .call("GET", &format!("{}/api/v1/sends", hub.url()), &[("authorization", &auth)], None)
        .await
        .json();
    assert_eq!(sends["sends"].as_array().unwrap().len(), 2, "{sends}");
}

on_both_stores!(
    sigterm_drains_without_interrupting_anyone,
    a_dead_push_service_delays_nobody_else,
    a_retried_send_request_queues_one_send
);
