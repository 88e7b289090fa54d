//! The PWA kit (web/, served by the hub at /tidings/) in a real Firefox, through
//! `tidings serve`: the kit's sync() hands the subscription to the hub; a hub send of a
//! notification object reaches the kit's service worker, which shows it (read back with
//! registration.getNotifications()) and sets the app badge; the kit's unsubscribe() removes
//! the subscription from the hub.

mod common;

use common::hub::{HubPage, wait_done};
use common::push::Service;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kit_shows_hub_notifications_in_firefox() {
    let service = Service::start(&[]);
    let HubPage { hub, key, http, mut page, firefox } = HubPage::open(&service, "kit-firefox").await;

    let subscribed = page.next("subscribed", Duration::from_secs(60), &firefox).await;
    assert_eq!(
        subscribed["state"],
        json!({ "supported": true, "permission": "granted", "subscribed": true }),
        "{subscribed}"
    );
    let auth = format!("Bearer {key}");
    let listed = http
        .call("GET", &format!("{}/api/v1/subscriptions", hub.url()), &[("authorization", &auth)], None)
        .await;
    assert_eq!(listed.json()["subscriptions"][0]["topics"], json!(["kit"]));

    let notify = json!({
        "to": { "topic": "kit" },
        "notification": { "title": "Kit says hi", "body": "shown by tidings-sw.js", "tag": "greeting",
                          "navigate": format!("{}/inbox", hub.url()) },
        "app_badge": 2
    });
    let queued =
        http.json("POST", &format!("{}/api/v1/sends", hub.url()), &[("authorization", &auth)], &notify).await;
    let done =
        wait_done(&http, &hub.url(), &key, queued.json()["id"].as_u64().unwrap(), Duration::from_secs(30))
            .await;
    assert_eq!(done["counts"]["accepted"], 1, "{done}");

    let shown = page.next("shown", Duration::from_secs(30), &firefox).await;
    assert_eq!(shown[0]["title"], "Kit says hi", "{shown}");
    assert_eq!(shown[0]["body"], "shown by tidings-sw.js");
    assert_eq!(shown[0]["tag"], "greeting");
    assert_eq!(shown[0]["data"]["navigate"], format!("{}/inbox", hub.url()));
    assert_eq!(page.next("badge", Duration::from_secs(10), &firefox).await, 2);

    page.command("unsubscribe");
    let unsubscribed = page.next("unsubscribed", Duration::from_secs(30), &firefox).await;
    assert_eq!(unsubscribed["result"], true, "{unsubscribed}");
    assert_eq!(unsubscribed["state"]["subscribed"], false);
    let listed = http
        .call("GET", &format!("{}/api/v1/subscriptions", hub.url()), &[("authorization", &auth)], None)
        .await;
    assert_eq!(listed.json()["subscriptions"], json!([]));
    firefox.stop();
}
