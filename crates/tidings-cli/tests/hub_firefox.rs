//! A real Firefox on a page served by `tidings hub`, subscribed through `tidings serve`: the
//! page hands its subscription to the hub (with its CSRF token), the app's backend (this
//! test) notifies a topic through the REST API, and the service worker receives the
//! Declarative Web Push JSON; unsubscribing removes the subscription from the hub.

mod common;

use common::hub::{HubPage, wait_done};
use common::push::Service;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_receives_a_topic_notification_sent_through_the_hub() {
    let service = Service::start(&[]);
    let HubPage { hub, key, http, mut page, firefox } = HubPage::open(&service, "hub-firefox").await;

    let subscribed = page.next("subscribed", Duration::from_secs(60), &firefox).await;
    assert_eq!(subscribed["status"], 201, "{subscribed}");
    assert_eq!(subscribed["body"]["topics"], json!(["news"]));

    let auth = format!("Bearer {key}");
    let notify = json!({
        "to": { "topic": "news" },
        "notification": { "title": "Hello from the hub", "body": "Firefox got this", "navigate": "http://127.0.0.1/news" },
        "app_badge": 4
    });
    let queued =
        http.json("POST", &format!("{}/api/v1/sends", hub.url()), &[("authorization", &auth)], &notify).await;
    assert_eq!(queued.status, 202, "{}", queued.body);
    let done =
        wait_done(&http, &hub.url(), &key, queued.json()["id"].as_u64().unwrap(), Duration::from_secs(30))
            .await;
    assert_eq!(done["counts"]["accepted"], 1, "{done}");

    let push = page.next("push", Duration::from_secs(30), &firefox).await;
    assert_eq!(push["payload"]["web_push"], 8030);
    assert_eq!(push["payload"]["notification"]["title"], "Hello from the hub");
    assert_eq!(push["payload"]["notification"]["body"], "Firefox got this");
    assert_eq!(push["payload"]["app_badge"], 4);

    page.command("unsubscribe");
    let unsubscribed = page.next("unsubscribed", Duration::from_secs(30), &firefox).await;
    assert_eq!(unsubscribed, json!({ "hub": 204, "browser": true }));
    let listed = http
        .call("GET", &format!("{}/api/v1/subscriptions", hub.url()), &[("authorization", &auth)], None)
        .await;
    assert_eq!(listed.json()["subscriptions"], json!([]));
    firefox.stop();
}
