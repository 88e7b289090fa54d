//! What happens to user agents and subscriptions over time, as a black box on both stores:
//! idle user agents are forgotten (their endpoints answer 410, and on their return they get
//! a new uaid), a user agent holds a bounded number of channels, registering a channel again
//! with another key revokes its old endpoint, and TTL 0 messages are never stored.

mod common;

use common::push::{Agent, Sender, Service, metric, now};
use serde_json::json;
use std::time::Duration;
use tidings_sender::Message;

/// The stores every test here runs on: the embedded one, and Redis (the test command starts
/// one on 6379) under a prefix of the test's own.
fn stores(test: &str) -> [Vec<String>; 2] {
    let prefix = format!("tidings-lifecycle-{test}-{}-{}", std::process::id(), now());
    [vec![], vec!["--store".into(), "redis://127.0.0.1:6379/".into(), "--redis-prefix".into(), prefix]]
}

fn start(store: &[String], extra: &[&str]) -> Service {
    let mut args: Vec<&str> = store.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    Service::start(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_user_agents_are_forgotten_and_come_back_as_new_ones() {
    for store in stores("idle") {
        let service = start(&store, &["--forget-idle-after", "2"]);
        let sender = Sender::new();
        // One user agent goes away; another stays connected for longer than the idle period.
        let mut gone = Agent::hello(&service.ws_url(), None).await;
        let gone_sub = gone.register(Some(sender.key())).await;
        let gone_uaid = gone.uaid.clone();
        gone.close().await;
        let mut stays = Agent::hello(&service.ws_url(), None).await;
        let stays_sub = stays.register(Some(sender.key())).await;
        assert_eq!(sender.push(&gone_sub, "stored").await.status, 201);

        tokio::time::sleep(Duration::from_millis(3500)).await;
        let answer = sender.push(&gone_sub, "too late").await;
        assert_eq!(answer.status, 410, "{store:?}: the idle user agent's endpoint is gone");
        assert_eq!(sender.push(&stays_sub, "still here").await.status, 201, "{store:?}");
        let notification = stays.notification().await;
        assert_eq!(stays_sub.decrypt(&notification), b"still here");

        // The idle one returns with its old uaid: it is told a new one, and gets nothing old.
        let mut back = Agent::hello(&service.ws_url(), Some(&gone_uaid)).await;
        assert_ne!(back.uaid, gone_uaid, "{store:?}: a forgotten uaid is not resumed");
        assert_eq!(back.try_recv(Duration::from_millis(300)).await, None, "{store:?}");
        let fresh = back.register(Some(sender.key())).await;
        assert_eq!(sender.push(&fresh, "again").await.status, 201);
        assert_eq!(fresh.decrypt(&back.notification().await), b"again");
        if store.is_empty() {
            // The embedded store's sweep forgot it (Redis forgets by its own TTLs).
            let forgotten = metric(&service, "tidings_user_agents_forgotten_total").await.unwrap_or(0.0);
            assert!(forgotten >= 1.0, "forgotten: {forgotten}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_agent_holds_a_bounded_number_of_channels() {
    for store in stores("channels") {
        let service = start(&store, &["--max-channels", "3"]);
        let sender = Sender::new();
        let mut agent = Agent::hello(&service.ws_url(), None).await;
        let subs = [agent.register(None).await, agent.register(None).await, agent.register(None).await];
        let channel_id = common::push::uuid();
        agent.send(json!({"messageType": "register", "channelID": channel_id})).await;
        let reply = agent.recv().await;
        assert_eq!((reply["status"].as_u64(), reply.get("pushEndpoint")), (Some(409), None), "{reply}");
        assert_eq!(metric(&service, "tidings_refused_total{limit=\"channels\"}").await, Some(1.0));
        // The connection and the channels it has are unharmed; unregistering makes room.
        assert_eq!(sender.push(&subs[2], "fine").await.status, 201);
        assert_eq!(subs[2].decrypt(&agent.notification().await), b"fine");
        agent.send(json!({"messageType": "unregister", "channelID": subs[0].channel_id})).await;
        assert_eq!(agent.recv().await["status"], 200);
        let fourth = agent.register(None).await;
        assert_eq!(sender.push(&fourth, "room").await.status, 201, "{store:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_a_channel_again_with_another_key_revokes_its_endpoint() {
    for store in stores("rekey") {
        let service = start(&store, &[]);
        let (first, second) = (Sender::new(), Sender::new());
        let mut agent = Agent::hello(&service.ws_url(), None).await;
        let old = agent.register(Some(first.key())).await;
        // The same channel, registered again with another applicationServerKey.
        let key = format!("{}=", second.key().public_key_base64());
        agent.send(json!({"messageType": "register", "channelID": old.channel_id, "key": key})).await;
        let reply = agent.recv().await;
        assert_eq!(reply["status"], 200, "{reply}");
        let endpoint = reply["pushEndpoint"].as_str().unwrap().to_owned();
        assert_ne!(endpoint, old.endpoint);
        assert_eq!(first.push(&old, "old key").await.status, 410, "{store:?}: the old endpoint is revoked");
        let new = common::push::Sub { endpoint, ..old };
        assert_eq!(second.push(&new, "new key").await.status, 201);
        assert_eq!(new.decrypt(&agent.notification().await), b"new key");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_zero_messages_are_delivered_now_or_never_and_never_stored() {
    for store in stores("ttl0") {
        let service = start(&store, &[]);
        let sender = Sender::new();
        let mut agent = Agent::hello(&service.ws_url(), None).await;
        let sub = agent.register(Some(sender.key())).await;
        let now_or_never = |text: &str| {
            let mut message = Message::new(text.as_bytes().to_vec());
            message.ttl = 0;
            message
        };
        // Connected: delivered at once.
        let answer = sender.send(&sub, &now_or_never("live")).await;
        assert_eq!(answer.status, 201);
        let notification = agent.notification().await;
        assert_eq!(sub.decrypt(&notification), b"live");
        agent.ack(&notification).await;
        // Not connected: answered 201 and dropped, not stored for later.
        let uaid = agent.uaid.clone();
        agent.close().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        for i in 0..20 {
            assert_eq!(sender.send(&sub, &now_or_never(&format!("missed {i}"))).await.status, 201);
        }
        assert_eq!(metric(&service, "tidings_messages_dropped_total").await, Some(20.0), "{store:?}");
        assert_eq!(metric(&service, "tidings_messages_stored_total").await, Some(0.0), "{store:?}");
        assert_eq!(sender.push(&sub, "kept").await.status, 201);
        let mut back = Agent::hello(&service.ws_url(), Some(&uaid)).await;
        assert_eq!(sub.decrypt(&back.notification().await), b"kept", "{store:?}: only the stored message");
        assert_eq!(back.try_recv(Duration::from_millis(300)).await, None);
        // An unsubscribed endpoint still answers 410 for TTL 0.
        back.send(json!({"messageType": "unregister", "channelID": sub.channel_id})).await;
        assert_eq!(back.recv().await["status"], 200);
        assert_eq!(sender.send(&sub, &now_or_never("gone")).await.status, 410);
    }
}

/// Settings of this issue that cannot work are refused at start, each with its reason.
#[test]
fn settings_that_cannot_work_are_refused() {
    let dir = std::env::temp_dir().join(format!("tidings-lifecycle-settings-{}", std::process::id()));
    let refused = |args: &[&str]| {
        let out = common::tidings()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for (args, reason) in [
        (&["--forget-idle-after", "1"][..], "--forget-idle-after must be at least 2 seconds"),
        (&["--max-channels", "0"], "--max-channels must be at least 1"),
        (&["--max-concurrent-posts", "0"], "--max-concurrent-posts must be at least 1"),
        (&["--trusted-proxy", "not-an-address"], "--trusted-proxy"),
    ] {
        let error = refused(args);
        assert!(error.contains(reason), "{args:?}: {error}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
