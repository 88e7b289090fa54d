//! The PWA kit (web/, served by the hub at /tidings/) in a real Firefox, through
//! `tidings serve`: the kit's sync() hands the subscription to the hub; a hub send of a
//! notification object reaches the kit's service worker, which shows it (read back with
//! registration.getNotifications()) and sets the app badge. Then the flows where the kit
//! must prove it holds a subscription: a VAPID key rotation at the hub (sync() subscribes
//! again and replaces the old subscription with its auth), a pushsubscriptionchange without
//! oldSubscription (the service worker proves the old one from IndexedDB), the same while
//! the hub is down (the request waits in the outbox), and Firefox's own event after the push
//! service forgot the browser for staying away longer than its idle period (Firefox comes
//! back, is given a new uaid and subscribes again). Finally unsubscribe(),
//! and the race a user hits by turning notifications off while the load-time sync() is
//! still under way: the hub must not keep a subscriber that no longer exists.

mod common;

use common::hub::{Http, HubPage, HubProcess, subscriptions, wait_done};
use common::push::Service;
use serde_json::{Value, json};
use std::time::Duration;

/// Waits until the hub holds exactly one subscription other than `before`; it.
async fn replaced(http: &Http, hub: &HubProcess, key: &str, before: &Value, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let list = subscriptions(http, &hub.url(), key).await;
        if list.len() == 1 && list[0]["id"] != *before {
            return list[0].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "not replaced: {list:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn notify(http: &Http, hub: &HubProcess, key: &str, title: &str) {
    let auth = format!("Bearer {key}");
    let notify = json!({
        "to": { "topic": "kit" },
        "notification": { "title": title, "body": "shown by tidings-sw.js", "tag": "greeting",
                          "navigate": format!("{}/inbox", hub.url()) },
        "app_badge": 2
    });
    let queued =
        http.json("POST", &format!("{}/api/v1/sends", hub.url()), &[("authorization", &auth)], &notify).await;
    let done =
        wait_done(http, &hub.url(), key, queued.json()["id"].as_u64().unwrap(), Duration::from_secs(30))
            .await;
    assert_eq!(done["counts"]["accepted"], 1, "{title}: {done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kit_shows_hub_notifications_and_keeps_its_subscription_in_firefox() {
    // User agents away for 4 seconds are forgotten (60 days in production); a connected one
    // never is.
    let mut service = Service::start(&["--forget-idle-after", "4"]);
    let HubPage { mut hub, key, http, mut page, firefox } = HubPage::open(&service, "kit-firefox").await;

    let subscribed = page.next("subscribed", Duration::from_secs(60), &firefox).await;
    assert_eq!(
        subscribed["state"],
        json!({ "supported": true, "permission": "granted", "subscribed": true,
                "outbox": { "pending": 0, "setAside": 0 } }),
        "{subscribed}"
    );
    let first = subscriptions(&http, &hub.url(), &key).await;
    assert_eq!(first[0]["topics"], json!(["kit"]));

    notify(&http, &hub, &key, "Kit says hi").await;
    let shown = page.next("shown", Duration::from_secs(30), &firefox).await;
    assert_eq!(shown[0]["title"], "Kit says hi", "{shown}");
    assert_eq!(shown[0]["body"], "shown by tidings-sw.js");
    assert_eq!(shown[0]["tag"], "greeting");
    assert_eq!(shown[0]["data"]["navigate"], format!("{}/inbox", hub.url()));
    assert_eq!(page.next("badge", Duration::from_secs(10), &firefox).await, 2);

    // The hub's VAPID key is rotated: the next sync() subscribes again with the new key and
    // replaces the old subscription, proving it with the old auth; sends reach the new one.
    hub.kill9();
    let generated = common::tidings().args(["vapid", "generate", "--json"]).output().unwrap();
    assert!(generated.status.success());
    std::fs::write(hub.data_dir.join("vapid.json"), &generated.stdout).unwrap();
    hub.restart();
    page.command("sync");
    let synced = page.next("synced", Duration::from_secs(30), &firefox).await;
    assert_eq!(synced["state"]["subscribed"], true, "{synced}");
    let rotated = replaced(&http, &hub, &key, &first[0]["id"], Duration::from_secs(10)).await;
    assert_eq!(rotated["topics"], json!(["kit"]), "carried over: {rotated}");
    notify(&http, &hub, &key, "After the key rotation").await;
    assert_eq!(
        page.next("shown", Duration::from_secs(30), &firefox).await[0]["title"],
        "After the key rotation"
    );

    // The browser drops the subscription and pushsubscriptionchange comes without
    // oldSubscription: the service worker subscribes again and proves the old one with the
    // auth it kept in IndexedDB, so the hub replaces it (a plain POST would leave it).
    page.command("change-without-old");
    page.next("changing", Duration::from_secs(10), &firefox).await;
    let changed = replaced(&http, &hub, &key, &rotated["id"], Duration::from_secs(30)).await;
    assert_eq!(changed["topics"], json!(["kit"]));
    notify(&http, &hub, &key, "After the change").await;
    assert_eq!(page.next("shown", Duration::from_secs(30), &firefox).await[0]["title"], "After the change");

    // The same while the hub is down: the service worker subscribes again with the key it
    // remembered, and the request to the hub waits in the outbox until the hub is back
    // (Firefox has no Background Sync: the page asks the service worker to flush).
    hub.kill9();
    page.command("change-without-old");
    page.next("changing", Duration::from_secs(10), &firefox).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    hub.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let changed = loop {
        page.command("flush");
        let list = subscriptions(&http, &hub.url(), &key).await;
        if list.len() == 1 && list[0]["id"] != changed["id"] {
            break list[0].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "the queued change never reached the hub: {list:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(changed["topics"], json!(["kit"]));
    notify(&http, &hub, &key, "After the outage").await;
    assert_eq!(page.next("shown", Duration::from_secs(30), &firefox).await[0]["title"], "After the outage");

    // Firefox's own pushsubscriptionchange: the push service is down for longer than the
    // idle period, so when it is back it has forgotten the browser; at its next hello Firefox
    // gets a new uaid, drops its subscription and fires the event.
    service.kill9();
    tokio::time::sleep(Duration::from_secs(5)).await;
    service.restart();
    let event = page.next("subscription-change", Duration::from_secs(90), &firefox).await;
    let again = replaced(&http, &hub, &key, &changed["id"], Duration::from_secs(30)).await;
    assert_eq!(again["topics"], json!(["kit"]), "{event}");
    notify(&http, &hub, &key, "After Firefox's change").await;
    assert_eq!(
        page.next("shown", Duration::from_secs(30), &firefox).await[0]["title"],
        "After Firefox's change"
    );

    page.command("unsubscribe");
    let unsubscribed = page.next("unsubscribed", Duration::from_secs(30), &firefox).await;
    assert_eq!(unsubscribed["result"], true, "{unsubscribed}");
    assert_eq!(unsubscribed["state"]["subscribed"], false);
    assert_eq!(subscriptions(&http, &hub.url(), &key).await, Vec::<Value>::new());

    // Notifications turned off while sync() is under way, in this Tidings and in another
    // (another tab): the hub ends without the subscription every time.
    for round in 0..4 {
        page.commands_send(json!({ "action": "race", "round": round }));
        let raced = page.next("raced", Duration::from_secs(30), &firefox).await;
        assert_eq!(raced["results"], json!(["fulfilled", "fulfilled"]), "{raced}");
        assert_eq!(raced["subscribed"], false);
        assert_eq!(
            subscriptions(&http, &hub.url(), &key).await,
            Vec::<Value>::new(),
            "round {round}: {raced}"
        );
    }
    firefox.stop();
    eprintln!("Firefox's pushsubscriptionchange: {event}");
}
