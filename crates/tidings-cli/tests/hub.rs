//! `tidings hub` end to end over real sockets: the browser API and its CSRF defences, user
//! tokens signed by npm jsonwebtoken (as an app's backend would), bad input on every route,
//! and sends through the REST API to local push services, including 10,000 subscriptions
//! with a `kill -9` in the middle.

mod common;

use common::UserAgent;
use common::hub::{Backend, Browser, Http, HubProcess, Sink, subscriptions, user_token, wait_done};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;
use tidings_crypto::webpush::ReceivedEncoding;

fn subscribe_body(ua: &UserAgent, endpoint: &str, topics: &[&str]) -> Value {
    json!({ "subscription": ua.subscription(endpoint), "topics": topics })
}

async fn subscription_count(http: &Http, hub: &str, key: &str) -> usize {
    subscriptions(http, hub, key).await.len()
}

async fn browser_api_refuses_cross_site_requests_and_bad_input(backend: Backend) {
    let hub = HubProcess::start_on(backend, &["--browser-rate", "1000"]);
    let key = hub.api_key();
    let http = Http::new();
    let url = hub.url();
    let ua = UserAgent::new();
    let browser = Browser::open(&http, &url).await;

    let key_answer = http.call("GET", &format!("{url}/api/vapid-public-key"), &[], None).await;
    assert_eq!(
        tidings_crypto::b64::decode(key_answer.json()["publicKey"].as_str().unwrap()).unwrap().len(),
        65
    );

    let ok = subscribe_body(&ua, "http://127.0.0.1:9/push/a-capability-0123456789", &["news"]);
    let created = browser.send("POST", "/api/subscriptions", &ok).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json()["topics"], json!(["news"]));
    assert_eq!(browser.send("POST", "/api/subscriptions", &ok).await.status, 200, "same endpoint again");

    // CSRF: every one of these is refused with a JSON error and stores nothing.
    let other = subscribe_body(&ua, "http://127.0.0.1:9/push/b", &[]);
    let form = "subscription=x".to_owned();
    let cross_form = http
        .call(
            "POST",
            &format!("{url}/api/subscriptions"),
            &[
                ("origin", "http://evil.example"),
                ("sec-fetch-site", "cross-site"),
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", &browser.cookie),
            ],
            Some(form),
        )
        .await;
    assert_eq!((cross_form.status, cross_form.json()["error"].clone()), (403, json!("csrf")));
    let no_token = http
        .json(
            "POST",
            &format!("{url}/api/subscriptions"),
            &[("origin", &url), ("sec-fetch-site", "same-origin"), ("cookie", &browser.cookie)],
            &other,
        )
        .await;
    assert_eq!(no_token.status, 403, "{}", no_token.body);
    let no_origin = http
        .json(
            "POST",
            &format!("{url}/api/subscriptions"),
            &[("cookie", &browser.cookie), ("x-tidings-csrf", &browser.token)],
            &other,
        )
        .await;
    assert_eq!(no_origin.status, 403);
    let other_session = Browser::open(&http, &url).await;
    let stolen_token = http
        .json(
            "POST",
            &format!("{url}/api/subscriptions"),
            &[("origin", &url), ("cookie", &other_session.cookie), ("x-tidings-csrf", &browser.token)],
            &other,
        )
        .await;
    assert_eq!(stolen_token.status, 403, "a token belongs to its session");
    let lying = http
        .json(
            "POST",
            &format!("{url}/api/subscriptions"),
            &[
                ("origin", &url),
                ("sec-fetch-site", "cross-site"),
                ("cookie", &browser.cookie),
                ("x-tidings-csrf", &browser.token),
            ],
            &other,
        )
        .await;
    assert_eq!(lying.status, 403);

    // User tokens: signed by npm jsonwebtoken with the hub's secret; each works once.
    let secret = hub.user_token_secret();
    let token = user_token(&secret, "alice", "jti-1");
    let mut with_user = subscribe_body(&ua, "http://127.0.0.1:9/push/alice", &["news"]);
    with_user["user_token"] = json!(token);
    let answer = browser.send("POST", "/api/subscriptions", &with_user).await;
    assert_eq!((answer.status, answer.json()["user"].clone()), (201, json!("alice")), "{}", answer.body);
    let mut replayed = subscribe_body(&ua, "http://127.0.0.1:9/push/mallory", &[]);
    replayed["user_token"] = json!(token);
    let answer = browser.send("POST", "/api/subscriptions", &replayed).await;
    assert_eq!((answer.status, answer.json()["error"].clone()), (401, json!("bad_user_token")));
    let forged =
        user_token(&tidings_crypto::b64::encode(b"not the hub's secret, but long"), "alice", "jti-2");
    replayed["user_token"] = json!(forged);
    assert_eq!(browser.send("POST", "/api/subscriptions", &replayed).await.status, 401);
    replayed["user_token"] = json!("e30.e30.e30");
    assert_eq!(browser.send("POST", "/api/subscriptions", &replayed).await.status, 401);

    // Bad input: a clear 4xx with a JSON error each.
    let bad_keys = json!({ "subscription": { "endpoint": "https://push.example/x", "keys": { "p256dh": "AAAA", "auth": ua.auth() } } });
    let short_auth = json!({ "subscription": { "endpoint": "https://push.example/x", "keys": { "p256dh": ua.p256dh(), "auth": "AAAA" } } });
    let cases = [
        (subscribe_body(&ua, "http://push.example/plain-http", &[]), 400, "bad_subscription"),
        (subscribe_body(&ua, "javascript:alert(1)", &[]), 400, "bad_subscription"),
        (bad_keys, 400, "bad_subscription"),
        (short_auth, 400, "bad_subscription"),
        (subscribe_body(&ua, "https://push.example/t", &["has space"]), 400, "bad_topics"),
        (json!({ "subscription": ua.subscription("https://push.example/u"), "extra": 1 }), 400, "bad_json"),
        (json!([1, 2, 3]), 400, "bad_json"),
        (subscribe_body(&ua, &format!("https://push.example/{}", "x".repeat(20_000)), &[]), 413, "too_large"),
    ];
    for (body, status, code) in cases {
        let answer = browser.send("POST", "/api/subscriptions", &body).await;
        assert_eq!(
            (answer.status, answer.json()["error"].as_str().unwrap()),
            (status, code),
            "{}",
            answer.body
        );
    }
    let not_json = http
        .call(
            "POST",
            &format!("{url}/api/subscriptions"),
            &[
                ("origin", &url),
                ("cookie", &browser.cookie),
                ("x-tidings-csrf", &browser.token),
                ("content-type", "application/json"),
            ],
            Some("{\"subscription\": ".into()),
        )
        .await;
    assert_eq!(not_json.status, 400, "{}", not_json.body);
    assert_eq!(not_json.json()["error"], "bad_json");
    assert_eq!(subscription_count(&http, &url, &key).await, 2, "nothing but the two good subscriptions");

    // Re-sync: the old endpoint is replaced; its topics and user carry over.
    let replace = json!({ "old_endpoint": "http://127.0.0.1:9/push/alice", "old_auth": ua.auth(), "subscription": ua.subscription("http://127.0.0.1:9/push/alice-2") });
    let answer = browser.send("POST", "/api/subscriptions/replace", &replace).await;
    assert_eq!(
        (answer.status, answer.json()["user"].clone(), answer.json()["topics"].clone()),
        (201, json!("alice"), json!(["news"]))
    );
    assert_eq!(subscription_count(&http, &url, &key).await, 2);
    let answer = browser
        .send(
            "DELETE",
            "/api/subscriptions",
            &json!({ "endpoint": "http://127.0.0.1:9/push/alice-2", "auth": ua.auth() }),
        )
        .await;
    assert_eq!(answer.status, 204);
    assert_eq!(
        browser
            .send(
                "DELETE",
                "/api/subscriptions",
                &json!({ "endpoint": "http://127.0.0.1:9/push/alice-2", "auth": ua.auth() })
            )
            .await
            .status,
        404
    );

    // The app API: no key, a wrong key, bad sends.
    let send = json!({ "to": "everyone", "text": "x" });
    assert_eq!(http.json("POST", &format!("{url}/api/v1/sends"), &[], &send).await.status, 401);
    assert_eq!(
        http.json("POST", &format!("{url}/api/v1/sends"), &[("authorization", "Bearer tdh_wrong")], &send)
            .await
            .status,
        401
    );
    let auth = format!("Bearer {key}");
    for bad in [
        json!({ "to": "nobody" }),
        json!({ "to": "everyone", "text": "a", "payload": "YQ" }),
        json!({ "to": "everyone", "notification": {} }),
    ] {
        let answer =
            http.json("POST", &format!("{url}/api/v1/sends"), &[("authorization", &auth)], &bad).await;
        assert_eq!(answer.status, 400, "{bad}: {}", answer.body);
        assert!(answer.json()["message"].as_str().is_some());
    }
    for path in [
        "/api/v1/sends/abc",
        "/api/v1/sends/999",
        "/api/v1/subscriptions/xyz",
        "/api/v1/subscriptions?after=zz",
    ] {
        let method = if path.starts_with("/api/v1/subscriptions/") { "DELETE" } else { "GET" };
        let answer = http.call(method, &format!("{url}{path}"), &[("authorization", &auth)], None).await;
        assert!(matches!(answer.status, 400 | 404), "{path}: {}", answer.status);
        assert!(answer.json()["error"].as_str().is_some());
    }
    let listed =
        http.call("GET", &format!("{url}/api/v1/subscriptions"), &[("authorization", &auth)], None).await;
    assert!(
        !listed.body.contains("capability-0123456789"),
        "list APIs never return endpoints in full: {}",
        listed.body
    );
    // The admin forms: a cross-site login or send is refused, and so is a send without login.
    let form = [("content-type", "application/x-www-form-urlencoded"), ("origin", "http://evil.example")];
    let login = http
        .call("POST", &format!("{url}/admin/login"), &form, Some(format!("secret={}", hub.admin_secret())))
        .await;
    assert_eq!(login.status, 403);
    assert!(login.headers.get("set-cookie").is_none());
    let own = [("content-type", "application/x-www-form-urlencoded"), ("origin", url.as_str())];
    let send = http
        .call("POST", &format!("{url}/admin/send"), &own, Some("token=x&to=everyone&title=t".into()))
        .await;
    assert_eq!(send.status, 403);
    let wrong = http.call("POST", &format!("{url}/admin/login"), &own, Some("secret=guess".into())).await;
    assert_eq!(wrong.status, 401);
    let openapi = http.call("GET", &format!("{url}/api/openapi.json"), &[], None).await.json();
    for path in ["/api/subscriptions", "/api/v1/sends", "/api/v1/sends/{id}", "/api/v1/topics"] {
        assert!(openapi["paths"][path].is_object(), "{path} is documented");
    }
}

async fn sends_reach_topics_and_users_and_prune_gone_subscriptions(backend: Backend) {
    let (sink_a, sink_b) = (Sink::start(Duration::ZERO).await, Sink::start(Duration::ZERO).await);
    let hub = HubProcess::start_on(backend, &["--browser-rate", "1000"]);
    let key = hub.api_key();
    let (http, url) = (Http::new(), hub.url());
    let browser = Browser::open(&http, &url).await;
    let ua = UserAgent::new();
    let secret = hub.user_token_secret();
    let subscriptions = [
        (sink_a.endpoint("news-1"), vec!["news"], None),
        (sink_b.endpoint("news-2"), vec!["news", "sport"], Some("bob")),
        (sink_b.endpoint("gone/news-3"), vec!["news"], None),
        (sink_a.endpoint("sport-1"), vec!["sport"], Some("bob")),
    ];
    for (i, (endpoint, topics, user)) in subscriptions.iter().enumerate() {
        let mut body = subscribe_body(&ua, endpoint, topics);
        if let Some(user) = user {
            body["user_token"] = json!(user_token(&secret, user, &format!("t{i}")));
        }
        assert_eq!(browser.send("POST", "/api/subscriptions", &body).await.status, 201);
    }
    let auth = format!("Bearer {key}");
    let topics =
        http.call("GET", &format!("{url}/api/v1/topics"), &[("authorization", &auth)], None).await.json();
    assert_eq!(
        topics["topics"],
        json!([{"topic": "news", "subscriptions": 3}, {"topic": "sport", "subscriptions": 2}])
    );

    let notify = json!({
        "to": { "topic": "news" },
        "notification": { "title": "Headline", "body": "Something happened", "navigate": "https://app.example/news" },
        "app_badge": 1, "ttl": 600, "urgency": "high"
    });
    let queued =
        http.json("POST", &format!("{url}/api/v1/sends"), &[("authorization", &auth)], &notify).await;
    assert_eq!(queued.status, 202, "{}", queued.body);
    let id = queued.json()["id"].as_u64().unwrap();
    let done = wait_done(&http, &url, &key, id, Duration::from_secs(20)).await;
    assert_eq!(
        done["counts"],
        json!({"queued": 3, "pending": 0, "accepted": 2, "gone": 1, "rejected": 0, "failed": 0})
    );
    // What the push service received decrypts to the Declarative Web Push JSON.
    let body = sink_a.received.lock().unwrap().bodies["news-1"].clone();
    let plain = ua.keys.decrypt(&body, ReceivedEncoding::Aes128gcm).unwrap();
    let message: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(message["web_push"], 8030);
    assert_eq!(message["notification"]["title"], "Headline");
    assert_eq!(message["notification"]["navigate"], "https://app.example/news");
    assert_eq!(message["app_badge"], 1);
    // The gone subscription was deleted; the others stay.
    assert_eq!(subscription_count(&http, &url, &key).await, 3);

    // To a user: both of bob's, on two push services.
    let to_bob = json!({ "to": { "user": "bob" }, "text": "hi bob" });
    let id =
        http.json("POST", &format!("{url}/api/v1/sends"), &[("authorization", &auth)], &to_bob).await.json()
            ["id"]
            .as_u64()
            .unwrap();
    let done = wait_done(&http, &url, &key, id, Duration::from_secs(20)).await;
    assert_eq!(done["counts"]["accepted"], 2);
    let plain = ua
        .keys
        .decrypt(&sink_a.received.lock().unwrap().bodies["sport-1"], ReceivedEncoding::Aes128gcm)
        .unwrap();
    assert_eq!(plain, b"hi bob");

    // Scheduled: nothing goes out before its time.
    let later = unix_now() + 2;
    let scheduled = json!({ "to": "everyone", "text": "later", "send_at": later });
    let answer =
        http.json("POST", &format!("{url}/api/v1/sends"), &[("authorization", &auth)], &scheduled).await;
    assert_eq!(answer.json()["status"], "scheduled");
    let before = sink_a.total() + sink_b.total();
    let done =
        wait_done(&http, &url, &key, answer.json()["id"].as_u64().unwrap(), Duration::from_secs(20)).await;
    assert!(done["finished_at"].as_u64().unwrap() >= later);
    assert_eq!(sink_a.total() + sink_b.total(), before + 3);
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// 10,000 subscriptions on three push services, a tenth of them gone; the hub is killed
/// with SIGKILL in the middle of the send and restarted: the send finishes (on PostgreSQL
/// once the dead process's lease has ended), the gone ones are pruned, and no subscription
/// receives the message twice.
async fn ten_thousand_subscriptions_survive_a_kill_without_duplicates(backend: Backend) {
    const COUNT: usize = 10_000;
    let sinks = [
        Sink::start(Duration::from_millis(2)).await,
        Sink::start(Duration::from_millis(2)).await,
        Sink::start(Duration::from_millis(2)).await,
    ];
    let mut hub = HubProcess::start_on(
        backend,
        &[
            "--browser-rate",
            "100000",
            "--concurrency",
            "24",
            "--new-subscriptions-per-session",
            "100000",
            "--new-subscriptions-per-address",
            "100000",
            // On PostgreSQL the restarted hub cannot tell the dead one's claims from a live
            // one's: they are counted interrupted once their lease ends.
            "--claim-lease",
            "5s",
        ],
    );
    let key = hub.api_key();
    let (http, url) = (Http::new(), hub.url());
    let browser = std::sync::Arc::new(Browser::open(&http, &url).await);
    let ua = std::sync::Arc::new(UserAgent::new());
    let endpoints: Vec<String> = (0..COUNT)
        .map(|i| {
            let path = if i % 10 == 0 { format!("gone/{i}") } else { format!("ok/{i}") };
            sinks[i % 3].endpoint(&path)
        })
        .collect();
    // Subscribe them all through the browser API, 32 at a time.
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in endpoints.chunks(COUNT / 32 + 1) {
        let (chunk, browser, ua) = (chunk.to_vec(), browser.clone(), ua.clone());
        tasks.spawn(async move {
            for endpoint in chunk {
                let answer = browser
                    .send("POST", "/api/subscriptions", &subscribe_body(&ua, &endpoint, &["all"]))
                    .await;
                assert_eq!(answer.status, 201, "{}", answer.body);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let auth = format!("Bearer {key}");
    let send = json!({ "to": { "topic": "all" }, "text": "to everyone, once" });
    let id = http
        .json("POST", &format!("{url}/api/v1/sends"), &[("authorization", &auth)], &send)
        .await
        .json()["id"]
        .as_u64()
        .unwrap();
    let total = || sinks.iter().map(Sink::total).sum::<u32>() as usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while total() < COUNT / 3 {
        assert!(tokio::time::Instant::now() < deadline, "the send does not progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hub.kill9();
    let at_kill = total();
    assert!(at_kill < COUNT, "killed before the end ({at_kill})");
    hub.restart();
    let done = wait_done(&http, &url, &key, id, Duration::from_secs(120)).await;
    let counts = &done["counts"];
    let number = |name: &str| counts[name].as_u64().unwrap() as usize;
    assert_eq!(number("queued"), COUNT);
    assert_eq!(number("pending"), 0);
    assert_eq!(number("accepted") + number("gone") + number("failed") + number("rejected"), COUNT);
    assert_eq!(number("rejected"), 0);
    // Only the recipients claimed when the hub died are unknown (failed, not sent again).
    assert!(number("failed") <= 2 * 24, "at most the window is interrupted: {counts}");
    // Nobody received it twice.
    let mut delivered = HashSet::new();
    for sink in &sinks {
        for (path, n) in &sink.received.lock().unwrap().counts {
            assert_eq!(*n, 1, "{path} received the message {n} times");
            delivered.insert(path.clone());
        }
    }
    let ok_delivered = delivered.iter().filter(|p| p.starts_with("ok/")).count();
    assert!(ok_delivered >= number("accepted") && ok_delivered <= number("accepted") + number("failed"));
    // The gone ones are pruned (those whose 410 was recorded).
    let remaining = {
        let mut n = 0;
        let mut after = String::new();
        loop {
            let path = if after.is_empty() {
                "/api/v1/subscriptions?limit=1000".to_owned()
            } else {
                format!("/api/v1/subscriptions?limit=1000&after={after}")
            };
            let page =
                http.call("GET", &format!("{url}{path}"), &[("authorization", &auth)], None).await.json();
            n += page["subscriptions"].as_array().unwrap().len();
            match page["next"].as_str() {
                Some(next) => after = next.to_owned(),
                None => break n,
            }
        }
    };
    assert_eq!(remaining, COUNT - number("gone"));
    assert!(number("gone") >= COUNT / 10 - 2 * 24);
}

/// An app page on another origin of the same site (`--allowed-origin`) may use the browser
/// API: CORS answers it (with credentials), and nobody else.
async fn allowed_origins_get_cors_and_others_do_not(backend: Backend) {
    let app = "http://localhost:8000";
    let hub = HubProcess::start_on(backend, &["--allowed-origin", app]);
    let (http, url) = (Http::new(), hub.url());
    let preflight = |origin: &'static str| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.call(
                "OPTIONS",
                &format!("{url}/api/subscriptions"),
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    ("access-control-request-headers", "content-type,x-tidings-csrf"),
                ],
                None,
            )
            .await
        }
    };
    let allowed = preflight(app).await;
    assert_eq!(allowed.headers["access-control-allow-origin"], app);
    assert_eq!(allowed.headers["access-control-allow-credentials"], "true");
    let other = preflight("http://evil.example").await;
    assert!(other.headers.get("access-control-allow-origin").is_none());

    let browser = Browser::open(&http, &url).await;
    let ua = UserAgent::new();
    let headers = [
        ("origin", app),
        ("sec-fetch-site", "same-site"),
        ("cookie", browser.cookie.as_str()),
        ("x-tidings-csrf", browser.token.as_str()),
    ];
    let body = subscribe_body(&ua, "https://push.example/from-the-app-origin", &[]);
    let answer = http.json("POST", &format!("{url}/api/subscriptions"), &headers, &body).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(answer.headers["access-control-allow-origin"], app);
}

on_both_stores!(
    browser_api_refuses_cross_site_requests_and_bad_input,
    sends_reach_topics_and_users_and_prune_gone_subscriptions,
    ten_thousand_subscriptions_survive_a_kill_without_duplicates,
    allowed_origins_get_cors_and_others_do_not
);
