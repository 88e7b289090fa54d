//! The demo app (`tidings hub --demo`, on the PWA kit) in a real Firefox ESR, driven over
//! WebDriver BiDi (tests/browser/demo-firefox.js) and subscribed through `tidings serve`: a
//! real click turns notifications on (the kit's subscribe() with a user gesture), a message
//! posted through the outbox reaches the server and comes back as a notification the
//! service worker shows, with the app badge count recorded; a notification object sent
//! through the REST API is shown; turning notifications off removes the subscription.

mod common;

use common::firefox::{binary, profile};
use common::hub::HubProcess;
use common::push::Service;
use serde_json::Value;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_subscribes_and_shows_notifications_in_firefox() {
    let service = Service::start(&[]);
    let hub = HubProcess::start(&["--demo"]);
    let key = hub.api_key();
    let home = service.data_dir.with_extension("firefox");
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let profile = profile(&home, service.port);
    let screenshot = home.join("demo-firefox.png");
    let script = common::repo_root().join("tests/browser/demo-firefox.js");
    let args: Vec<String> = vec![
        binary().to_str().unwrap().into(),
        profile.to_str().unwrap().into(),
        home.to_str().unwrap().into(),
        hub.url(),
        format!("{}/metrics", service.url()),
        key,
        screenshot.to_str().unwrap().into(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node").arg("--experimental-websocket").arg(script).args(&args).output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), hub.log.lock().unwrap());
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["buttonBefore"], "Turn on notifications", "{seen}");
    assert_eq!(seen["buttonAfter"], "Turn off notifications");
    assert_eq!(seen["subscribed"][0]["topics"], serde_json::json!(["chat"]));
    assert_eq!(seen["posted"], 1, "the outbox sent the message once");
    assert_eq!(seen["chatNotification"]["title"], "Ada");
    assert_eq!(seen["badge"], 1, "the push set the app badge");
    assert_eq!(seen["restStatus"], 202);
    assert_eq!(seen["restNotification"]["body"], "REST API");
    assert_eq!(seen["afterUnsubscribe"], "empty");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 1000);
}
