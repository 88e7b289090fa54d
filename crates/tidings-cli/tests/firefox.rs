//! A real Firefox ESR, end to end through `tidings serve`: its service worker subscribes
//! with an applicationServerKey; messages sent by `tidings send`, npm web-push and pywebpush
//! reach the `push` event with their exact text; Firefox acks them; a message sent while
//! Firefox is closed arrives when it starts again; `unsubscribe()` makes the endpoint 410.
//! Firefox also follows Remote Settings' broadcast, and hears a new version at once.

mod common;

use common::firefox::{Firefox, PageServer, fresh_profile};
use common::push::{Service, eventually, metric, request};
use common::{node, python, tidings};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tidings_crypto::vapid::VapidKey;

const SUBJECT: &str = "mailto:ops@example.com";
const WAIT: Duration = Duration::from_secs(60);

fn tidings_send(dir: &std::path::Path, subscription: &Value, text: &str) -> (i32, String) {
    let sub = dir.join("subscription.json");
    std::fs::write(&sub, subscription.to_string()).unwrap();
    let out = tidings()
        .args([
            "send",
            "--subscription",
            sub.to_str().unwrap(),
            "--vapid-keys",
            dir.join("vapid.json").to_str().unwrap(),
        ])
        .args(["--vapid-subject", SUBJECT, "--payload", text, "--ttl", "600"])
        .output()
        .unwrap();
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_subscribes_receives_acks_and_unsubscribes() {
    firefox_end_to_end(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_end_to_end_on_the_redis_store() {
    let prefix = format!("tidings-test-firefox-{}", std::process::id());
    firefox_end_to_end(&["--store", "redis://127.0.0.1:6379/", "--redis-prefix", &prefix]).await;
}

async fn firefox_end_to_end(serve_args: &[&str]) {
    let service = Service::start(serve_args);
    let (dir, profile) = fresh_profile(&service);
    let vapid = VapidKey::generate().unwrap();
    let keys = vapid.to_key_file();
    std::fs::write(dir.join("vapid.json"), serde_json::to_string(&keys).unwrap()).unwrap();
    let mut page = PageServer::start(keys.public_key.clone(), service.port).await;
    let firefox = Firefox::launch(&dir, &profile, &page.url(), dir.join("firefox.log"));

    let subscription = page.next("subscription", WAIT, &firefox).await;
    let endpoint = subscription["endpoint"].as_str().unwrap().to_owned();
    assert!(endpoint.starts_with(&format!("{}/push/", service.url())), "{subscription}");

    // tidings send
    let (code, out) = tidings_send(&dir, &subscription, "from tidings send \u{1F514}");
    assert_eq!(code, 0, "{out}");
    assert_eq!(page.next("push", WAIT, &firefox).await, "from tidings send \u{1F514}");

    // npm web-push, both encodings
    for encoding in ["aes128gcm", "aesgcm"] {
        let text = format!("from npm web-push ({encoding})");
        let vapid = json!({"subject": SUBJECT, "publicKey": keys.public_key, "privateKey": keys.private_key});
        let sent = node("send", &json!({"subscription": subscription, "payload": text, "encoding": encoding, "ttl": 600, "vapid": vapid}))
            .unwrap();
        assert_eq!(sent["status"], 201, "{encoding}");
        assert_eq!(page.next("push", WAIT, &firefox).await, text.as_str());
    }

    // pywebpush, both encodings
    for encoding in ["aes128gcm", "aesgcm"] {
        let text = format!("from pywebpush ({encoding})");
        let sent = python(
            "send",
            &json!({"subscription": subscription, "payload": text, "encoding": encoding, "ttl": 600, "privateKey": keys.private_key, "subject": SUBJECT}),
        )
        .unwrap();
        assert_eq!(sent["status"], 201, "{encoding}");
        assert_eq!(page.next("push", WAIT, &firefox).await, text.as_str());
    }

    // Firefox acked all five.
    eventually("Firefox to ack five messages", || async {
        metric(&service, "tidings_messages_acked_total").await == Some(5.0)
    })
    .await;

    // A message sent while Firefox is closed arrives when it starts again.
    firefox.stop();
    eventually("Firefox to disconnect", || async {
        metric(&service, "tidings_user_agents_online").await == Some(0.0)
    })
    .await;
    let (code, out) = tidings_send(&dir, &subscription, "sent while Firefox was closed");
    assert_eq!(code, 0, "{out}");
    let firefox = Firefox::launch(&dir, &profile, &page.url(), dir.join("firefox.log"));
    assert_eq!(page.next("push", WAIT, &firefox).await, "sent while Firefox was closed");
    let again = page.next("subscription", WAIT, &firefox).await;
    assert_eq!(again["endpoint"], endpoint.as_str(), "the subscription survived the restart");

    // unsubscribe() removes the channel: the endpoint answers 410.
    page.command("unsubscribe");
    assert_eq!(page.next("unsubscribed", WAIT, &firefox).await, true);
    let mut gone = false;
    for _ in 0..50 {
        let (code, out) = tidings_send(&dir, &subscription, "too late");
        if code == 3 {
            assert!(out.contains("410 Gone"), "{out}");
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the endpoint still accepts messages after unsubscribe()");
    firefox.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Firefox follows `remote-settings/monitor_changes` (Remote Settings registers it with its
/// broadcast service some seconds after start-up, and sends `broadcast_subscribe`): the
/// answer carries the version set before, and a version set later with the admin route
/// reaches it at once. Firefox's own log shows what its broadcast service received (its
/// handler then fails to fetch settings from the profile's dummy server, which is expected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_follows_the_remote_settings_broadcast() {
    const TOKEN: &str = "an-admin-token-for-firefox";
    let service = Service::start_with_env(&[], &[("TIDINGS_ADMIN_TOKEN", TOKEN)]);
    set_monitor_changes(service.port, TOKEN, "\"1000\"").await;
    let (dir, profile) = fresh_profile(&service);
    let firefox = Firefox::launch(&dir, &profile, "about:blank", dir.join("firefox.log"));
    let received = |version: &str, phase: &str| {
        format!(
            r#"receivedBroadcastMessage:" ({{'remote-settings/monitor_changes':"\"{version}\""}}) ({{phase:"{phase}"}})"#
        )
    };
    wait_for_log(&firefox.log, &received("1000", "register"), Duration::from_secs(120)).await;
    set_monitor_changes(service.port, TOKEN, "\"2000\"").await;
    wait_for_log(&firefox.log, &received("2000", "broadcast"), Duration::from_secs(10)).await;
    assert_eq!(metric(&service, "tidings_broadcasts_sent_total").await, Some(1.0));
    firefox.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

async fn set_monitor_changes(port: u16, token: &str, version: &str) {
    let path = "/admin/broadcasts/remote-settings/monitor_changes";
    let authorization = format!("Bearer {token}");
    let (status, response) = request(port, "PUT", path, &[("Authorization", &authorization)], version).await;
    assert_eq!(status, 200, "{response}");
}

/// Waits until Firefox's log has a line containing `text`.
async fn wait_for_log(log: &Path, text: &str, wait: Duration) {
    let deadline = std::time::Instant::now() + wait;
    while !std::fs::read_to_string(log).unwrap_or_default().contains(text) {
        assert!(std::time::Instant::now() < deadline, "Firefox did not log {text} within {wait:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
