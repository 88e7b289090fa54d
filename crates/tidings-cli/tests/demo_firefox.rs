//! The demo app (`tidings hub --demo`, on the PWA kit) in a real Firefox ESR, driven over
//! WebDriver BiDi (tests/browser/demo-firefox.js) and subscribed through `tidings serve`: a
//! real click turns notifications on (the kit's subscribe() with a user gesture), a message
//! posted through the outbox reaches the server and comes back as a notification the
//! service worker shows, with the app badge count recorded; a notification object sent
//! through the REST API is shown; when the push service forgets the browser, Firefox fires
//! pushsubscriptionchange and the kit subscribes again and replaces the endpoint at the hub;
//! turning notifications off removes the subscription.

mod common;

use common::firefox::{binary, fresh_profile};
use common::hub::HubProcess;
use common::push::Service;
use serde_json::Value;
use std::process::{Command, Stdio};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_subscribes_and_shows_notifications_in_firefox() {
    let service = Service::start(&[]);
    let hub = HubProcess::start(&["--demo"]);
    let key = hub.api_key();
    let (home, profile) = fresh_profile(&service);
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
    // The script asks (a line on stdout) for the push service to be restarted on an empty
    // data directory, and goes on when told (a line on stdin); its last line is the result.
    let (seen, service) = tokio::task::spawn_blocking(move || {
        use std::io::{BufRead as _, Write as _};
        let mut node = Command::new("node")
            .arg("--experimental-websocket")
            .arg(script)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = node.stdin.take().unwrap();
        let mut service = service;
        let mut last = String::new();
        for line in std::io::BufReader::new(node.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if line == "restart-push-service" {
                service.kill9();
                std::fs::remove_dir_all(&service.data_dir).unwrap();
                service.restart();
                writeln!(stdin, "done").unwrap();
            } else {
                last = line;
            }
        }
        let out = node.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (serde_json::from_str::<Value>(&last).unwrap(), service)
    })
    .await
    .unwrap();
    drop(service);
    assert_eq!(seen["buttonBefore"], "Turn on notifications", "{seen}");
    assert_eq!(seen["buttonAfter"], "Turn off notifications");
    assert_eq!(seen["subscribed"][0]["topics"], serde_json::json!(["chat"]));
    assert_eq!(seen["posted"], 1, "the outbox sent the message once");
    assert_eq!(seen["chatNotification"]["title"], "Ada");
    assert_eq!(seen["badge"], 1, "the push set the app badge");
    assert_eq!(seen["restStatus"], 202);
    assert_eq!(seen["restNotification"]["body"], "REST API");
    // pushsubscriptionchange: the kit subscribed again and the hub replaced the endpoint,
    // keeping the topic; a send reaches the new subscription.
    assert_eq!(seen["resubscribed"][0]["topics"], serde_json::json!(["chat"]), "{seen}");
    assert_eq!(seen["afterChangeStatus"], 202);
    assert_eq!(seen["afterChange"]["body"], "new endpoint");
    assert_eq!(seen["afterUnsubscribe"], "empty");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 1000);
}
