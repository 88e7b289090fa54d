//! Redis going away under load: the push API answers 503 with Retry-After (never a 201 that
//! was not stored), WebSocket clients stay connected, and everything recovers by itself when
//! Redis is back; with AOF on, no accepted message is lost.

mod common;

use common::push::{Agent, Sender, Service};
use common::redis::RedisServer;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tidings_sender::{Message, prepare};

/// A Redis of the test's own, persisting every write (appendfsync always).
fn durable_redis(port: u16, dir: &std::path::Path) -> RedisServer {
    RedisServer::start(port, dir, &["--appendonly", "yes", "--appendfsync", "always"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_means_503_then_recovery_without_loss() {
    let dir = std::env::temp_dir().join(format!("tidings-redis-outage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = common::free_port();
    let redis = durable_redis(port, &dir);
    let service = Service::start(&["--store", &format!("redis://127.0.0.1:{port}/")]);
    let sender = Sender::new();
    let mut agent = Agent::hello(&service.ws_url(), None).await;
    let sub = agent.register(None).await;
    let subscription = sub.subscription();

    let send = |i: usize| {
        let mut message = Message::new(format!("m{i}").into_bytes());
        message.ttl = 600;
        let request = prepare(&subscription, &message, None, common::push::now()).unwrap();
        let client = sender.client.clone();
        async move { client.send(request).await }
    };
    let mut accepted = HashSet::new();
    let mut unavailable = 0;
    let mut received = HashSet::new();
    let mut redis = Some(redis);
    let mut outage: Option<Instant> = None;
    for i in 0..150 {
        if i == 40 {
            redis.take().unwrap().kill9();
            outage = Some(Instant::now());
        }
        if let Some(since) = outage
            && since.elapsed() > Duration::from_secs(3)
            && redis.is_none()
        {
            redis = Some(durable_redis(port, &dir));
        }
        let response = tokio::time::timeout(Duration::from_secs(10), send(i))
            .await
            .expect("the push API answers promptly")
            .unwrap();
        match response.status.as_u16() {
            201 => {
                accepted.insert(format!("m{i}"));
            }
            503 => {
                assert!(response.retry_after.is_some(), "503 without Retry-After");
                unavailable += 1;
            }
            other => panic!("unexpected {other}"),
        }
        // Read what has arrived meanwhile (the WebSocket must stay open throughout).
        while let Some(n) = agent.try_recv(Duration::from_millis(20)).await {
            received.insert(String::from_utf8(sub.decrypt(&n)).unwrap());
            agent.ack(&n).await;
        }
        if redis.is_none() || outage.is_none() {
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }
    assert!(unavailable > 0, "no 503 during the outage");
    assert!(accepted.contains("m149"), "no recovery after the outage");
    // Anything accepted and not yet seen arrives (after a reconnection if an ack or a
    // delivery fell into the outage).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !accepted.is_subset(&received) && Instant::now() < deadline {
        while let Some(n) = agent.try_recv(Duration::from_millis(100)).await {
            received.insert(String::from_utf8(sub.decrypt(&n)).unwrap());
            agent.ack(&n).await;
        }
    }
    if !accepted.is_subset(&received) {
        let uaid = agent.uaid.clone();
        agent.close().await;
        let mut again = Agent::hello(&service.ws_url(), Some(&uaid)).await;
        while let Some(n) = again.try_recv(Duration::from_millis(500)).await {
            received.insert(String::from_utf8(sub.decrypt(&n)).unwrap());
            again.ack(&n).await;
        }
    }
    let lost: Vec<_> = accepted.difference(&received).collect();
    assert!(lost.is_empty(), "accepted but never delivered: {lost:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// With Redis gone, every answer that depends on it comes within a second: senders get 503
/// with Retry-After (and retry) instead of piling up, and a load balancer's health check
/// gets its 503 before its own timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_gone_posts_and_health_fail_fast() {
    let dir = std::env::temp_dir().join(format!("tidings-redis-fast-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = common::free_port();
    let redis = durable_redis(port, &dir);
    let service = Service::start(&["--store", &format!("redis://127.0.0.1:{port}/")]);
    let (sender, sub, _) = common::push::subscribed_offline(&service).await;
    assert_eq!(sender.push(&sub, "before").await.status, 201);
    assert!(common::push::get(service.port, "/health").await.starts_with("HTTP/1.1 200"));
    redis.kill9();
    for i in 0..5 {
        let start = Instant::now();
        let answer = sender.push(&sub, &format!("during {i}")).await;
        let took = start.elapsed();
        assert_eq!(answer.status, 503, "attempt {i}");
        assert!(answer.retry_after.is_some(), "503 without Retry-After");
        assert!(took < Duration::from_millis(1100), "attempt {i}: the 503 took {took:?}");
        let start = Instant::now();
        let health = common::push::get(service.port, "/health").await;
        let took = start.elapsed();
        assert!(health.starts_with("HTTP/1.1 503"), "{health}");
        assert!(health.to_ascii_lowercase().contains("retry-after"), "{health}");
        assert!(took < Duration::from_millis(1100), "attempt {i}: /health took {took:?}");
    }
    let _redis = durable_redis(port, &dir);
    common::push::eventually("recovery after Redis is back", || async {
        sender.push(&sub, "after").await.status == 201
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_store_over_tls() {
    let dir = std::env::temp_dir().join(format!("tidings-rediss-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let port = common::free_port();
    // A Redis that speaks only TLS.
    // A Redis that speaks only TLS (the later --port 0 turns the plain port off).
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let tls_port = port.to_string();
    let _redis = RedisServer::start(
        port,
        &dir,
        &[
            "--port",
            "0",
            "--tls-port",
            &tls_port,
            "--tls-auth-clients",
            "no",
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
            "--tls-ca-cert-file",
            cert.to_str().unwrap(),
        ],
    );
    let ca = dir.join("cert.pem");
    let service = Service::start(&[
        "--store",
        &format!("rediss://127.0.0.1:{port}/"),
        "--redis-ca-file",
        ca.to_str().unwrap(),
    ]);
    let sender = Sender::new();
    let mut agent = Agent::hello(&service.ws_url(), None).await;
    let sub = agent.register(Some(sender.key())).await;
    assert_eq!(sender.push(&sub, "stored over TLS").await.status, 201);
    assert_eq!(sub.decrypt(&agent.notification().await), b"stored over TLS");
    // Without trusting the certificate, the store cannot be reached: a clear refusal to start.
    let out = common::tidings()
        .args(["serve", "--listen", "127.0.0.1:0", "--store", &format!("rediss://127.0.0.1:{port}/")])
        .arg("--data-dir")
        .arg(dir.join("unused"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect to Redis"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A save whose sweeper-index update fails after the message was stored is still answered
/// 201: the message is there (and goes by its keys' TTL if the sweeper never sees it), and a
/// 503 would make the sender send it again. Here the index is out of the node's reach: its
/// Redis user may not touch that one key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_whose_index_update_fails_is_still_201() {
    let dir = std::env::temp_dir().join(format!("tidings-redis-index-{}", std::process::id()));
    let port = common::free_port();
    let redis = RedisServer::start(port, &dir, &[]);
    let rules = ["~tidings:{*", "~tidings:endpoint-keys", "~tidings:broadcasts", "&*", "+@all"];
    let mut setuser = vec!["ACL", "SETUSER", "node", "on", ">node-password-for-tests"];
    setuser.extend(rules);
    assert_eq!(redis.cli(&setuser).trim(), "OK");
    let service =
        Service::start(&["--store", &format!("redis://node:node-password-for-tests@127.0.0.1:{port}/")]);
    let (sender, mut agent, sub) = common::push::subscribed(&service).await;
    for text in ["stored, not indexed", "and again"] {
        assert_eq!(sender.push(&sub, text).await.status, 201);
        assert_eq!(sub.decrypt(&agent.notification().await), text.as_bytes());
    }
    assert_eq!(redis.cli(&["exists", "tidings:expiring"]).trim(), "0", "the index update did fail");
    let _ = std::fs::remove_dir_all(&dir);
}
