//! A hub on the public internet, with a resolver under the test's control: an endpoint whose
//! host name looks public when it is registered, but resolves to loopback when the hub sends
//! (DNS rebinding, or a name planted to point inside), is refused by the hub's connector,
//! before any connection is made, and counted as rejected with the reason.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tidings_crypto::b64;
use tidings_crypto::webpush::ReceiverKeys;
use tidings_hub::{Config, Hub, api_keys};
use tidings_sender::connect::StaticResolver;

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn call(
    http: &Http,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let mut request =
        http::Request::builder().method(method).uri(url).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let response = http.request(request.body(Full::new(Bytes::from(body))).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), cookie)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_resolves_into_the_hubs_network_is_never_connected_to() {
    // What would be hit: a service on loopback, counting connections.
    let inside = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = inside.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while inside.accept().await.is_ok() {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let public = "https://app.example";
    let mut config = Config::new("127.0.0.1:0".parse().unwrap());
    config.public_url = public.into();
    config.data_dir = dir.path().to_owned();
    config.resolver = Arc::new(StaticResolver(HashMap::from([
        ("push.rebound.test".to_owned(), vec!["127.0.0.1".parse().unwrap()]),
        ("push.metadata.test".to_owned(), vec!["169.254.169.254".parse().unwrap()]),
    ])));
    let hub = Hub::bind(config, Some("an admin secret for the test".into())).await.unwrap();
    let url = format!("http://{}", hub.local_addr());
    tokio::spawn(hub.run(std::future::pending()));
    let key = api_keys::create(&dir.path().join("api-keys"), "test", 1).unwrap();
    let http: Http = Client::builder(TokioExecutor::new()).build_http();

    let (_, session, cookie) = call(&http, "GET", &format!("{url}/api/session"), &[], None).await;
    let (cookie, token) = (cookie.unwrap(), session["csrfToken"].as_str().unwrap().to_owned());
    let page = [("origin", public), ("cookie", cookie.as_str()), ("x-tidings-csrf", token.as_str())];
    let keys = ReceiverKeys::generate().unwrap().subscription_keys();
    for host in ["push.rebound.test", "push.metadata.test"] {
        let subscription = json!({ "endpoint": format!("https://{host}:{port}/push/x"),
            "keys": { "p256dh": b64::encode(keys.p256dh.as_bytes()), "auth": b64::encode(&keys.auth) } });
        let (status, body, _) = call(
            &http,
            "POST",
            &format!("{url}/api/subscriptions"),
            &page,
            Some(json!({ "subscription": subscription })),
        )
        .await;
        assert_eq!(status, 201, "the name is not refused when registered: {body}");
    }

    let auth = format!("Bearer {key}");
    let (status, queued, _) = call(
        &http,
        "POST",
        &format!("{url}/api/v1/sends"),
        &[("authorization", &auth)],
        Some(json!({ "to": "everyone", "text": "hello" })),
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    let id = queued["id"].as_u64().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let send = loop {
        let (_, send, _) =
            call(&http, "GET", &format!("{url}/api/v1/sends/{id}"), &[("authorization", &auth)], None).await;
        if send["status"] == "done" {
            break send;
        }
        assert!(tokio::time::Instant::now() < deadline, "{send}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(send["counts"]["rejected"], 2, "{send}");
    let reasons: Vec<&str> =
        send["errors"].as_array().unwrap().iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert!(
        reasons.iter().any(|r| r
            .contains("push.rebound.test resolves only to private or special-purpose addresses (127.0.0.1)")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("(169.254.169.254)")), "{reasons:?}");
    assert_eq!(connections.load(Ordering::SeqCst), 0, "nothing inside was connected to");
}
