//! `tidings hub` against the attacks of a public deployment, over real sockets: someone who
//! knows only an endpoint (every push-service operator knows all of theirs) tries to put in
//! their own keys, move a user's binding, or delete it; pages register endpoints into
//! private networks; one client registers without end, or hides behind forged
//! `X-Forwarded-For`; subscriptions that keep failing pile up; an admin cookie outlives its
//! logout; an attacker locks the admin out; a revoked API key keeps working; pages are
//! framed or sniffed; the demo chat is posted to cross-site. Each is refused, and the
//! legitimate flows next to it still work.

mod common;

use common::UserAgent;
use common::hub::{Answer, Backend, Browser, Http, HubProcess, Sink, subscriptions, user_token, wait_done};
use serde_json::{Value, json};
use std::time::Duration;
use tidings_crypto::webpush::ReceivedEncoding;

fn error(answer: &Answer) -> (u16, String) {
    (answer.status, answer.json()["error"].as_str().unwrap_or_default().to_owned())
}

async fn send(http: &Http, hub: &HubProcess, key: &str, body: Value) -> Value {
    let auth = format!("Bearer {key}");
    let queued =
        http.json("POST", &format!("{}/api/v1/sends", hub.url()), &[("authorization", &auth)], &body).await;
    assert_eq!(queued.status, 202, "{}", queued.body);
    wait_done(http, &hub.url(), key, queued.json()["id"].as_u64().unwrap(), Duration::from_secs(20)).await
}

async fn only_the_browser_holding_a_subscription_can_change_it(backend: Backend) {
    let sink = Sink::start(Duration::ZERO).await;
    let hub = HubProcess::start_on(backend, &[]);
    let key = hub.api_key();
    let http = Http::new();
    let secret = hub.user_token_secret();
    let (alice, mallory) = (UserAgent::new(), UserAgent::new());
    let alice_page = Browser::open(&http, &hub.url()).await;
    let mallory_page = Browser::open(&http, &hub.url()).await;
    let endpoint = sink.endpoint("alice");

    let first = json!({ "subscription": alice.subscription(&endpoint), "topics": ["news"],
                        "user_token": user_token(&secret, "alice", "a1") });
    let answer = alice_page.send("POST", "/api/subscriptions", &first).await;
    assert_eq!((answer.status, answer.json()["user"].clone()), (201, json!("alice")), "{}", answer.body);
    let id = answer.json()["id"].as_str().unwrap().to_owned();

    // The key-overwrite attack: the same endpoint with the attacker's keys (and no topics).
    let overwrite = json!({ "subscription": mallory.subscription(&endpoint), "topics": [] });
    let answer = mallory_page.send("POST", "/api/subscriptions", &overwrite).await;
    assert_eq!(error(&answer), (409, "subscription_exists".into()), "{}", answer.body);
    // What goes to alice's user is still encrypted for alice's keys, not mallory's.
    let done = send(&http, &hub, &key, json!({ "to": { "user": "alice" }, "text": "for alice only" })).await;
    assert_eq!(done["counts"]["accepted"], 1, "{done}");
    let body = sink.received.lock().unwrap().bodies["alice"].clone();
    assert_eq!(alice.keys.decrypt(&body, ReceivedEncoding::Aes128gcm).unwrap(), b"for alice only");
    assert!(mallory.keys.decrypt(&body, ReceivedEncoding::Aes128gcm).is_err());

    // The binding-steal attack: replace someone else's subscription without its auth.
    let steal = |old_auth: Option<String>| {
        let mut body = json!({ "old_endpoint": endpoint, "subscription": mallory.subscription(&sink.endpoint("mallory")) });
        if let Some(auth) = old_auth {
            body["old_auth"] = json!(auth);
        }
        body
    };
    let answer = mallory_page.send("POST", "/api/subscriptions/replace", &steal(None)).await;
    assert_eq!(error(&answer), (400, "bad_json".into()));
    let answer = mallory_page.send("POST", "/api/subscriptions/replace", &steal(Some(mallory.auth()))).await;
    assert_eq!(error(&answer), (403, "not_owner".into()), "{}", answer.body);
    // Deleting it needs its auth too.
    let delete = json!({ "endpoint": endpoint, "auth": mallory.auth() });
    let answer = mallory_page.send("DELETE", "/api/subscriptions", &delete).await;
    assert_eq!(error(&answer), (403, "not_owner".into()));
    let answer = mallory_page.send("DELETE", "/api/subscriptions", &json!({ "endpoint": endpoint })).await;
    assert_eq!(error(&answer), (400, "bad_json".into()), "the auth is required");
    let stored = subscriptions(&http, &hub.url(), &key).await;
    assert_eq!(stored.len(), 1, "nothing of mallory's was stored: {stored:?}");
    assert_eq!((stored[0]["user"].clone(), stored[0]["topics"].clone()), (json!("alice"), json!(["news"])));

    // Alice's page re-posting on every load (no topics, no token) keeps both.
    let again = json!({ "subscription": alice.subscription(&endpoint) });
    let answer = alice_page.send("POST", "/api/subscriptions", &again).await;
    assert_eq!(
        (answer.status, answer.json()["user"].clone(), answer.json()["topics"].clone()),
        (200, json!("alice"), json!(["news"]))
    );
    // Her browser subscribes again (a key rotation): the replace with her old auth moves
    // the user and the topics to the new endpoint.
    let rotated = UserAgent::new();
    let moved = json!({ "old_endpoint": endpoint, "old_auth": alice.auth(),
                        "subscription": rotated.subscription(&sink.endpoint("alice-2")) });
    let answer = alice_page.send("POST", "/api/subscriptions/replace", &moved).await;
    assert_eq!(
        (answer.status, answer.json()["user"].clone(), answer.json()["topics"].clone()),
        (201, json!("alice"), json!(["news"])),
        "{}",
        answer.body
    );
    assert_ne!(answer.json()["id"], json!(id));
    assert_eq!(subscriptions(&http, &hub.url(), &key).await.len(), 1);
    // Logging out on a shared computer: `user_token: null` removes the binding.
    let logout =
        json!({ "subscription": rotated.subscription(&sink.endpoint("alice-2")), "user_token": null });
    let answer = alice_page.send("POST", "/api/subscriptions", &logout).await;
    assert_eq!((answer.status, answer.json()["user"].clone()), (200, json!(null)));
    let done = send(&http, &hub, &key, json!({ "to": { "user": "alice" }, "text": "nobody" })).await;
    assert_eq!(done["counts"]["queued"], 0);
    let answer = alice_page
        .send(
            "DELETE",
            "/api/subscriptions",
            &json!({ "endpoint": sink.endpoint("alice-2"), "auth": rotated.auth() }),
        )
        .await;
    assert_eq!(answer.status, 204);
}

async fn endpoints_into_private_networks_or_off_the_allow_list_are_refused(backend: Backend) {
    // A hub on the public internet (its public URL is not loopback).
    let public = "https://app.example";
    let hub =
        HubProcess::start_on(backend, &["--public-url", public, "--push-hosts", "known,push.example.com"]);
    let http = Http::new();
    let ua = UserAgent::new();
    let page = Browser::open_from(&http, &hub.url(), public, &[]).await;
    for endpoint in [
        "https://127.0.0.1/push",
        "https://localhost/push",
        "https://10.1.2.3/push",
        "https://100.64.0.9/push",
        "https://169.254.169.254/latest/meta-data",
        "https://198.18.0.1/push",
        "https://[::ffff:10.0.0.1]/push",
        "https://[64:ff9b::a00:1]/push",
        "https://[fd00::1]/push",
        "https://push.attacker.example/push",
        "http://push.example.com/push",
    ] {
        let answer = page
            .send("POST", "/api/subscriptions", &json!({ "subscription": ua.subscription(endpoint) }))
            .await;
        assert_eq!(error(&answer), (400, "bad_subscription".into()), "{endpoint}: {}", answer.body);
    }
    for endpoint in [
        "https://fcm.googleapis.com/fcm/send/abc",
        "https://web.push.apple.com/QGx",
        "https://push.example.com/push/abc",
    ] {
        let answer = page
            .send("POST", "/api/subscriptions", &json!({ "subscription": ua.subscription(endpoint) }))
            .await;
        assert_eq!(answer.status, 201, "{endpoint}: {}", answer.body);
    }
}

async fn new_subscriptions_are_capped_per_session_and_per_client_behind_a_proxy(backend: Backend) {
    let http = Http::new();
    let ua = UserAgent::new();
    let body = |n: usize| json!({ "subscription": ua.subscription(&format!("http://127.0.0.1:9/push/{n}")) });
    // Without --trusted-proxy, X-Forwarded-For is the client's own claim and changes nothing.
    let hub = HubProcess::start_on(
        backend,
        &["--new-subscriptions-per-session", "3", "--new-subscriptions-per-address", "5"],
    );
    let a = Browser::open(&http, &hub.url()).await;
    for n in 0..3 {
        assert_eq!(a.send("POST", "/api/subscriptions", &body(n)).await.status, 201);
    }
    let capped = a.send("POST", "/api/subscriptions", &body(3)).await;
    assert_eq!(error(&capped), (429, "too_many_subscriptions".into()));
    let retry_after: u64 = capped.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        (600..=1200).contains(&retry_after),
        "an hourly cap of 3 frees a slot in 20 minutes: {retry_after}"
    );
    assert_eq!(a.send("POST", "/api/subscriptions", &body(0)).await.status, 200, "re-posting is not new");
    let b = Browser::open(&http, &hub.url()).await;
    for n in 4..6 {
        let forged = [("x-forwarded-for", "198.51.100.77")];
        assert_eq!(b.send_with("POST", "/api/subscriptions", &body(n), &forged).await.status, 201);
    }
    let forged = [("x-forwarded-for", "203.0.113.99")];
    let answer = b.send_with("POST", "/api/subscriptions", &body(6), &forged).await;
    assert_eq!(error(&answer), (429, "too_many_subscriptions".into()), "the address's cap");

    // Behind a trusted proxy, each client has its own allowance; IPv6 clients per /64.
    let hub = HubProcess::start_on(
        backend,
        &[
            "--new-subscriptions-per-session",
            "100",
            "--new-subscriptions-per-address",
            "2",
            "--trusted-proxy",
            "127.0.0.1/32",
        ],
    );
    let page = Browser::open(&http, &hub.url()).await;
    let mut n = 100;
    let mut from = |client: &'static str| {
        n += 1;
        let (page, body) = (&page, body(n));
        async move {
            page.send_with("POST", "/api/subscriptions", &body, &[("x-forwarded-for", client)]).await.status
        }
    };
    assert_eq!(from("198.51.100.1").await, 201);
    assert_eq!(from("198.51.100.1").await, 201);
    assert_eq!(from("198.51.100.1").await, 429);
    assert_eq!(from("198.51.100.2").await, 201, "another client behind the same proxy");
    assert_eq!(from("2001:db8:1:2::1").await, 201);
    assert_eq!(from("2001:db8:1:2:ffff::2").await, 201);
    assert_eq!(from("2001:db8:1:2:abcd::3").await, 429, "the same /64");
    assert_eq!(from("2001:db8:1:3::1").await, 201);
}

async fn subscriptions_that_keep_failing_are_deleted(backend: Backend) {
    let sink = Sink::start(Duration::ZERO).await;
    let hub =
        HubProcess::start_on(backend, &["--delete-after-failures", "2", "--delete-after-failing-for", "0s"]);
    let key = hub.api_key();
    let http = Http::new();
    let ua = UserAgent::new();
    let page = Browser::open(&http, &hub.url()).await;
    for path in ["fine", "refuse/always"] {
        let body = json!({ "subscription": ua.subscription(&sink.endpoint(path)), "topics": ["t"] });
        assert_eq!(page.send("POST", "/api/subscriptions", &body).await.status, 201);
    }
    let first = send(&http, &hub, &key, json!({ "to": { "topic": "t" }, "text": "1" })).await;
    assert_eq!((first["counts"]["rejected"].clone(), first["deleted_failing"].clone()), (json!(1), json!(0)));
    let listed = subscriptions(&http, &hub.url(), &key).await;
    assert!(listed.iter().any(|s| s["failures"] == 1 && s["failing_since"].is_u64()), "{listed:?}");
    let second = send(&http, &hub, &key, json!({ "to": { "topic": "t" }, "text": "2" })).await;
    assert_eq!(second["deleted_failing"], 1, "{second}");
    let listed = subscriptions(&http, &hub.url(), &key).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["failures"], 0);
}

/// Logs in to the admin page; the cookies it set (`name=value` pairs).
async fn admin_login(http: &Http, hub: &str, secret: &str, cookies: &str) -> Answer {
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded"), ("origin", hub)];
    if !cookies.is_empty() {
        headers.push(("cookie", cookies));
    }
    http.call("POST", &format!("{hub}/admin/login"), &headers, Some(format!("secret={secret}"))).await
}

fn set_cookie(answer: &Answer, name: &str) -> String {
    answer
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie"))
}

async fn admin_page(http: &Http, hub: &str, cookie: &str) -> Answer {
    http.call("GET", &format!("{hub}/admin"), &[("cookie", cookie)], None).await
}

fn form_token(page: &str) -> String {
    let at = page.find("name=token value=\"").unwrap() + "name=token value=\"".len();
    page[at..].split('"').next().unwrap().to_owned()
}

async fn admin_logins_end_everywhere_and_an_attacker_cannot_lock_the_admin_out(backend: Backend) {
    let mut hub = HubProcess::start_on(backend, &[]);
    let (http, url, secret) = (Http::new(), hub.url(), hub.admin_secret());
    let login = admin_login(&http, &url, &secret, "").await;
    assert_eq!(login.status, 303);
    let session = set_cookie(&login, "tidings_admin");
    let device = set_cookie(&login, "tidings_admin_device");
    let page = admin_page(&http, &url, &session).await;
    assert!(page.body.contains("Recent sends"));
    let copy = session.clone();

    // An attacker at the same address spends its login attempts: new browsers there must
    // wait, the admin's browser (with its device cookie) still gets in.
    let mut refused = 0;
    for _ in 0..8 {
        refused += u32::from(admin_login(&http, &url, "guess-guess-guess", "").await.status == 429);
    }
    assert!(refused >= 3, "the address's attempts are limited ({refused} refused)");
    assert_eq!(admin_login(&http, &url, &secret, "").await.status, 429);
    let again = admin_login(&http, &url, &secret, &device).await;
    assert_eq!(again.status, 303, "the admin is not locked out: {}", again.body);

    // Logging out ends the login wherever its cookie was copied.
    let token = form_token(&page.body);
    let out = http
        .call(
            "POST",
            &format!("{url}/admin/logout"),
            &[("content-type", "application/x-www-form-urlencoded"), ("origin", &url), ("cookie", &session)],
            Some(format!("token={token}")),
        )
        .await;
    assert_eq!(out.status, 303);
    assert!(
        admin_page(&http, &url, &copy).await.body.contains("Log in"),
        "the copied cookie no longer works"
    );

    // A new admin secret ends every login.
    let other = set_cookie(&again, "tidings_admin");
    assert!(admin_page(&http, &url, &other).await.body.contains("Recent sends"));
    hub.kill9();
    hub.set_admin_secret("a completely new admin secret");
    hub.restart();
    assert!(admin_page(&http, &url, &other).await.body.contains("Log in"), "the old secret's logins ended");
}

async fn revoked_api_keys_stop_working_and_list_shows_last_use(backend: Backend) {
    let mut hub = HubProcess::start_on(backend, &[]);
    let key = hub.api_key();
    let http = Http::new();
    let auth = format!("Bearer {key}");
    let topics = format!("{}/api/v1/topics", hub.url());
    assert_eq!(http.call("GET", &topics, &[("authorization", &auth)], None).await.status, 200);
    let list = |hub: &HubProcess| hub.subcommand(&["api-key", "list"]);
    // The hub notes the use when it stops (and once a minute while it runs).
    assert!(hub.terminate().success());
    let listed = list(&hub);
    let line = listed.lines().find(|l| l.contains("\ttest\t")).unwrap_or_else(|| panic!("{listed}"));
    let last_used = line.rsplit('\t').next().unwrap();
    assert!(humantime::parse_rfc3339(last_used).is_ok(), "a time, not \"never\": {line}");
    assert!(!listed.contains(&key[4..]), "the key itself is never shown");
    hub.restart();
    assert_eq!(http.call("GET", &topics, &[("authorization", &auth)], None).await.status, 200);
    let id = line.split('\t').next().unwrap();
    hub.subcommand(&["api-key", "revoke", id]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let answer = http.call("GET", &topics, &[("authorization", &auth)], None).await;
    assert_eq!(error(&answer), (401, "unauthorized".into()), "the running hub refuses the revoked key");
    assert!(!list(&hub).contains("\ttest\t"));
}

async fn pages_are_hardened_and_api_errors_are_json(backend: Backend) {
    let hub = HubProcess::start_on(backend, &["--demo"]);
    let (http, url) = (Http::new(), hub.url());
    for path in ["/admin", "/"] {
        let answer = http.call("GET", &format!("{url}{path}"), &[], None).await;
        assert_eq!(answer.status, 200);
        let csp = answer.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"), "{path}: {csp}");
        assert!(
            !answer.body.contains("<script>") && !answer.body.contains("<style>"),
            "{path}: nothing inline"
        );
        assert_eq!(answer.headers["x-content-type-options"], "nosniff");
        assert_eq!(answer.headers["referrer-policy"], "no-referrer");
    }
    let style = http.call("GET", &format!("{url}/admin/style.css"), &[], None).await;
    assert!(style.headers["content-type"].to_str().unwrap().starts_with("text/css"));
    let unknown = http.call("GET", &format!("{url}/api/no-such-thing"), &[], None).await;
    assert_eq!(error(&unknown), (404, "not_found".into()));
    let wrong = http.call("PUT", &format!("{url}/api/subscriptions"), &[], None).await;
    assert_eq!(error(&wrong), (405, "method_not_allowed".into()));
    assert!(wrong.headers["allow"].to_str().unwrap().contains("POST"));
    let wrong = http.call("DELETE", &format!("{url}/api/v1/sends"), &[], None).await;
    assert_eq!(error(&wrong), (405, "method_not_allowed".into()));

    // The demo chat: the browser API's CSRF token, and one send per Idempotency-Key even
    // for concurrent retries.
    let key = hub.api_key();
    let message = json!({ "author": "Ada", "text": "hello" });
    let cross = http
        .json(
            "POST",
            &format!("{url}/demo/api/messages"),
            &[("origin", &url), ("idempotency-key", "k0")],
            &message,
        )
        .await;
    assert_eq!(error(&cross), (403, "csrf".into()));
    let page = std::sync::Arc::new(Browser::open(&http, &url).await);
    let mut retries = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (page, message) = (page.clone(), message.clone());
        retries.spawn(async move {
            page.send_with("POST", "/demo/api/messages", &message, &[("idempotency-key", "same-key")])
                .await
                .status
        });
    }
    let mut statuses = retries.join_all().await;
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 201]);
    let auth = format!("Bearer {key}");
    let sends =
        http.call("GET", &format!("{url}/api/v1/sends"), &[("authorization", &auth)], None).await.json();
    assert_eq!(sends["sends"].as_array().unwrap().len(), 1, "one send queued: {sends}");
    let messages = http.call("GET", &format!("{url}/demo/api/messages"), &[], None).await.json();
    assert_eq!(messages["messages"].as_array().unwrap().len(), 1);
}

#[test]
fn a_public_url_that_is_not_an_origin_stops_the_start() {
    for (url, expected) in [
        ("https://app.example.com/app", "no path or query"),
        ("https://user@app.example.com", "no user name"),
        ("ftp://app.example.com", "http:// or https://"),
    ] {
        let out = common::tidings()
            .args([
                "hub",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                "/nonexistent/never-created",
                "--public-url",
                url,
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url}");
        assert!(stderr.contains(expected), "{url}: {stderr}");
    }
}

on_both_stores!(
    only_the_browser_holding_a_subscription_can_change_it,
    endpoints_into_private_networks_or_off_the_allow_list_are_refused,
    new_subscriptions_are_capped_per_session_and_per_client_behind_a_proxy,
    subscriptions_that_keep_failing_are_deleted,
    admin_logins_end_everywhere_and_an_attacker_cannot_lock_the_admin_out,
    revoked_api_keys_stop_working_and_list_shows_last_use,
    pages_are_hardened_and_api_errors_are_json
);
