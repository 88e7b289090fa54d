//! Broadcasts (autopush's "megaphone") through `tidings serve`, black-box: versions set with
//! the admin route or polled from a megaphone API reach the user agents that follow them, at
//! hello, in answer to `broadcast_subscribe`, and at once when they change, on one node or
//! across nodes sharing a Redis.

mod common;

use common::push::{Agent, Service, connect, eventually, metric, request};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::Message as Frame;

const TOKEN: &str = "an-admin-token-for-the-tests";
const MONITOR: &str = "remote-settings/monitor_changes";

/// A node with the admin routes on.
fn service(args: &[&str]) -> Service {
    Service::start_with_env(args, &[("TIDINGS_ADMIN_TOKEN", TOKEN)])
}

/// `PUT /admin/broadcasts/<id>` with the test token: status and whole response.
async fn set(port: u16, id: &str, version: &str) -> (u16, String) {
    let auth = format!("Bearer {TOKEN}");
    request(port, "PUT", &format!("/admin/broadcasts/{id}"), &[("Authorization", &auth)], version).await
}

/// The `broadcasts` of every broadcast frame the agent gets within `wait`.
async fn broadcasts_within(agent: &mut Agent, wait: Duration) -> Vec<Value> {
    let mut frames = Vec::new();
    while let Some(frame) = agent.try_recv(wait).await {
        assert_eq!(frame["messageType"], "broadcast", "{frame}");
        frames.push(frame["broadcasts"].clone());
    }
    frames
}

async fn subscribe(agent: &mut Agent, broadcasts: Value) {
    agent.send(json!({"messageType": "broadcast_subscribe", "broadcasts": broadcasts})).await;
}

#[tokio::test]
async fn hello_gets_the_versions_it_lacks_and_they_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("tidings-broadcast-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut service = Service::start(&["--admin-token-file", token_file.to_str().unwrap()]);
    assert_eq!(set(service.port, MONITOR, "\"100\"\n").await.0, 200);
    assert_eq!(set(service.port, "kinto:123", "v1").await.0, 200);

    let listed = json!({MONITOR: "\"99\"", "kinto:123": "v1", "nope": "x"});
    let agent = Agent::following(&service.ws_url(), listed.clone()).await;
    let expected = json!({MONITOR: "\"100\"", "errors": {"nope": "Broadcast not found"}});
    assert_eq!(agent.hello["broadcasts"], expected, "only what the user agent lacks, and what is unknown");
    let current = Agent::following(&service.ws_url(), json!({MONITOR: "\"100\""})).await;
    assert_eq!(current.hello["broadcasts"], json!({}));

    // The embedded store keeps the versions.
    service.kill9();
    service.restart();
    let agent = Agent::following(&service.ws_url(), listed).await;
    assert_eq!(agent.hello["broadcasts"], expected);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn broadcast_subscribe_is_answered_and_followed() {
    let service = service(&[]);
    assert_eq!(set(service.port, "kinto:123", "v1").await.0, 200);
    let mut agent = Agent::hello(&service.ws_url(), None).await;
    subscribe(&mut agent, json!({"kinto:123": "v0", "nope": "1"})).await;
    let answer = agent.recv().await;
    assert_eq!(
        answer,
        json!({"messageType": "broadcast", "broadcasts": {"kinto:123": "v1", "errors": {"nope": "Broadcast not found"}}})
    );
    // Nothing new to say is said with silence, as autopush does.
    subscribe(&mut agent, json!({"kinto:123": "v1"})).await;
    assert!(agent.try_recv(Duration::from_millis(300)).await.is_none());
    // From now on it hears of changes.
    assert_eq!(set(service.port, "kinto:123", "v2").await.0, 200);
    assert_eq!(broadcasts_within(&mut agent, Duration::from_millis(500)).await, [json!({"kinto:123": "v2"})]);
}

#[tokio::test]
async fn a_new_version_reaches_its_followers_at_once_and_nobody_else() {
    let service = service(&[]);
    assert_eq!(set(service.port, MONITOR, "\"1\"").await.0, 200);
    assert_eq!(set(service.port, "kinto:123", "v1").await.0, 200);
    let mut follower = Agent::following(&service.ws_url(), json!({MONITOR: "\"1\""})).await;
    let mut other = Agent::following(&service.ws_url(), json!({"kinto:123": "v1"})).await;
    let mut none = Agent::hello(&service.ws_url(), None).await;

    let (status, response) = set(service.port, MONITOR, "\"2\"").await;
    assert_eq!(status, 200, "{response}");
    assert!(response.ends_with(&json!({"id": MONITOR, "version": "\"2\"", "changed": true}).to_string()));
    assert_eq!(follower.recv().await, json!({"messageType": "broadcast", "broadcasts": {MONITOR: "\"2\""}}));
    // Setting the same version again is no change.
    let (status, response) = set(service.port, MONITOR, "\"2\"").await;
    assert!(status == 200 && response.contains(r#""changed":false"#), "{response}");
    for agent in [&mut follower, &mut other, &mut none] {
        assert!(agent.try_recv(Duration::from_millis(300)).await.is_none());
    }
    assert_eq!(metric(&service, "tidings_broadcasts_sent_total").await, Some(1.0));
    assert_eq!(metric(&service, "tidings_broadcast_changes_total").await, Some(3.0));
    // A follower still gets its messages as before.
    let (sender, mut agent, sub) = common::push::subscribed(&service).await;
    subscribe(&mut agent, json!({MONITOR: "\"2\""})).await;
    assert_eq!(sender.push(&sub, "still here").await.status, 201);
    assert_eq!(sub.decrypt(&agent.notification().await), b"still here");
}

#[tokio::test]
async fn the_admin_routes_need_the_token() {
    let off = Service::start(&[]);
    assert_eq!(set(off.port, MONITOR, "1").await.0, 404, "no token configured: no admin routes");

    let service = service(&[]);
    let path = format!("/admin/broadcasts/{MONITOR}");
    let (status, response) = request(service.port, "PUT", &path, &[], "1").await;
    assert_eq!(status, 401);
    assert!(response.to_ascii_lowercase().contains("www-authenticate: bearer"), "{response}");
    let wrong = [("Authorization", "Bearer not-the-admin-token-at-all")];
    assert_eq!(request(service.port, "PUT", &path, &wrong, "1").await.0, 401);
    assert_eq!(request(service.port, "GET", "/admin/broadcasts", &wrong, "").await.0, 401);
    // Bad ids and versions are refused and change nothing.
    assert_eq!(set(service.port, "errors", "1").await.0, 400, "the name of the unknown ids' map");
    assert_eq!(set(service.port, MONITOR, "").await.0, 400);
    assert_eq!(set(service.port, MONITOR, &"9".repeat(257)).await.0, 400);
    assert_eq!(set(service.port, &"x".repeat(129), "1").await.0, 400);
    assert_eq!(set(service.port, MONITOR, &"9".repeat(5000)).await.0, 413);
    // JSON bodies too.
    let json_headers = [("Authorization", &*format!("Bearer {TOKEN}")), ("Content-Type", "application/json")];
    let (status, _) = request(service.port, "PUT", &path, &json_headers, r#"{"version": "\"7\""}"#).await;
    assert_eq!(status, 200);
    let auth = [("Authorization", &*format!("Bearer {TOKEN}"))];
    let (status, response) = request(service.port, "GET", "/admin/broadcasts", &auth, "").await;
    assert_eq!(status, 200);
    assert!(response.ends_with(&json!({"broadcasts": {MONITOR: "\"7\""}}).to_string()), "{response}");
    assert!(!service.log.lock().unwrap().contains(TOKEN), "the token is never logged");
}

#[tokio::test]
async fn hostile_broadcast_lists_are_closed() {
    let service = service(&[]);
    let many: serde_json::Map<String, Value> = (0..65).map(|n| (format!("b{n}"), json!("1"))).collect();
    for listed in
        [Value::Object(many), json!({"x".repeat(129): "1"}), json!({"a": "1".repeat(257)}), json!({"a": 1})]
    {
        let mut ws = connect(&service.ws_url()).await;
        let hello = json!({"messageType": "hello", "use_webpush": true, "broadcasts": listed});
        ws.send(Frame::text(hello.to_string())).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Frame::Close(Some(close))))) => assert_eq!(u16::from(close.code), 1008, "{close:?}"),
            other => panic!("a hello listing {listed} should be closed with 1008, got {other:?}"),
        }
        let mut agent = Agent::hello(&service.ws_url(), None).await;
        subscribe(&mut agent, listed.clone()).await;
        match tokio::time::timeout(Duration::from_secs(5), agent.ws.next()).await {
            Ok(Some(Ok(Frame::Close(Some(close))))) => assert_eq!(u16::from(close.code), 1008, "{close:?}"),
            other => {
                panic!("a broadcast_subscribe listing {listed} should be closed with 1008, got {other:?}")
            }
        }
    }
    // The service is still fine.
    Agent::hello(&service.ws_url(), None).await;
}

#[tokio::test]
async fn settings_that_cannot_work_are_refused() {
    let dir = std::env::temp_dir().join(format!("tidings-broadcast-settings-{}", std::process::id()));
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = common::tidings()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.to_str().unwrap()])
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let short = run(&[], &[("TIDINGS_ADMIN_TOKEN", "short")]);
    assert!(short.contains("at least 16 characters"), "{short}");
    let tokenless = run(&["--megaphone-url", "http://127.0.0.1:9/v1/broadcasts"], &[]);
    assert!(tokenless.contains("--megaphone-url needs a token"), "{tokenless}");
    let bad_url = run(&["--megaphone-url", "ftp://x/"], &[("TIDINGS_MEGAPHONE_TOKEN", "t")]);
    assert!(bad_url.contains("http:// or https://"), "{bad_url}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The token the test's megaphone API expects.
const MEGAPHONE_TOKEN: &str = "megaphone-token";

/// A megaphone API on loopback: answers `GET /v1/broadcasts` with the versions it holds to
/// `Bearer` [`MEGAPHONE_TOKEN`], 401 to anything else, and records the `Authorization` sent.
struct Megaphone {
    port: u16,
    broadcasts: Arc<Mutex<Value>>,
    authorizations: Arc<Mutex<Vec<String>>>,
}

impl Megaphone {
    async fn start(broadcasts: Value) -> Self {
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode};
        use axum::response::IntoResponse;
        type Shared = (Arc<Mutex<Value>>, Arc<Mutex<Vec<String>>>);
        async fn answer(
            State((broadcasts, seen)): State<Shared>,
            headers: HeaderMap,
        ) -> axum::response::Response {
            let authorization =
                headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            seen.lock().unwrap().push(authorization.clone());
            if authorization != format!("Bearer {MEGAPHONE_TOKEN}") {
                return StatusCode::UNAUTHORIZED.into_response();
            }
            let broadcasts = broadcasts.lock().unwrap().clone();
            axum::Json(json!({"code": 200, "broadcasts": broadcasts})).into_response()
        }
        let state: Shared = (Arc::new(Mutex::new(broadcasts)), Arc::new(Mutex::new(Vec::new())));
        let app =
            axum::Router::new().route("/v1/broadcasts", axum::routing::get(answer)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { port, broadcasts: state.0, authorizations: state.1 }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/broadcasts", self.port)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_polled_from_a_megaphone_api_reach_followers() {
    let megaphone = Megaphone::start(json!({MONITOR: "\"1\""})).await;
    let dir = std::env::temp_dir().join(format!("tidings-megaphone-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("megaphone-token");
    std::fs::write(&token_file, format!("{MEGAPHONE_TOKEN}\n")).unwrap();
    let url = megaphone.url();
    let poll = ["--megaphone-url", &url, "--megaphone-poll-interval", "1"];
    let service =
        Service::start(&[&poll[..], &["--megaphone-token-file", token_file.to_str().unwrap()]].concat());
    let polled = "tidings_megaphone_polls_total{result=\"ok\"}";
    eventually("a poll", || async { metric(&service, polled).await >= Some(1.0) }).await;
    assert_eq!(megaphone.authorizations.lock().unwrap()[0], format!("Bearer {MEGAPHONE_TOKEN}"));

    let mut agent = Agent::following(&service.ws_url(), json!({MONITOR: "\"0\""})).await;
    assert_eq!(agent.hello["broadcasts"], json!({MONITOR: "\"1\""}));
    *megaphone.broadcasts.lock().unwrap() = json!({MONITOR: "\"2\"", "kinto:123": "v1"});
    let frame = agent.try_recv(Duration::from_secs(5)).await.expect("the new version within a poll");
    assert_eq!(frame, json!({"messageType": "broadcast", "broadcasts": {MONITOR: "\"2\""}}));

    // A wrong token gets nothing: the polls fail, are counted, and the node knows nothing.
    let wrong = Service::start_with_env(&poll, &[("TIDINGS_MEGAPHONE_TOKEN", "not-the-token")]);
    let failed = "tidings_megaphone_polls_total{result=\"error\"}";
    eventually("a failed poll", || async { metric(&wrong, failed).await >= Some(1.0) }).await;
    let agent = Agent::following(&wrong.ws_url(), json!({MONITOR: "\"0\""})).await;
    assert_eq!(agent.hello["broadcasts"], json!({"errors": {MONITOR: "Broadcast not found"}}));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_set_on_one_node_reaches_user_agents_on_the_others() {
    let prefix = format!("tidings-test-broadcasts-{}", std::process::id());
    let node = |name: &str| {
        service(&["--store", "redis://127.0.0.1:6379/", "--redis-prefix", &prefix, "--node-id", name])
    };
    let (a, b) = (node("node-a"), node("node-b"));
    assert_eq!(set(a.port, MONITOR, "\"1\"").await.0, 200);
    let auth = format!("Bearer {TOKEN}");
    eventually("node B to hear of the new broadcast", || async {
        let (_, response) =
            request(b.port, "GET", "/admin/broadcasts", &[("Authorization", &auth)], "").await;
        response.contains(r#""\"1\"""#)
    })
    .await;
    let mut on_b = Agent::following(&b.ws_url(), json!({MONITOR: "\"1\""})).await;
    let mut on_a = Agent::following(&a.ws_url(), json!({MONITOR: "\"1\""})).await;
    assert_eq!(on_b.hello["broadcasts"], json!({}));

    assert_eq!(set(a.port, MONITOR, "\"2\"").await.0, 200);
    let news = json!({"messageType": "broadcast", "broadcasts": {MONITOR: "\"2\""}});
    assert_eq!(on_b.recv().await, news, "across nodes");
    assert_eq!(on_a.recv().await, news);
    assert_eq!(metric(&b, "tidings_broadcasts_sent_total").await, Some(1.0));

    // Versions set in quick succession end, on every node, with the last one: an announcement
    // that arrives late never takes a node back to an older version.
    assert_eq!(set(a.port, MONITOR, "\"3\"").await.0, 200);
    assert_eq!(set(a.port, MONITOR, "\"4\"").await.0, 200);
    for agent in [&mut on_a, &mut on_b] {
        let heard = broadcasts_within(agent, Duration::from_millis(500)).await;
        assert_eq!(heard.last(), Some(&json!({MONITOR: "\"4\""})), "{heard:?}");
        assert!(heard.len() <= 2, "{heard:?}");
    }

    // A node that starts later knows the version from Redis at its first hello.
    let c = node("node-c");
    let late = Agent::following(&c.ws_url(), json!({MONITOR: "\"1\""})).await;
    assert_eq!(late.hello["broadcasts"], json!({MONITOR: "\"4\""}));
}
