//! The demo app (`tidings hub --demo`, built on the PWA kit) in headless Chromium (Debian's,
//! driven by npm playwright-core; see tests/browser/demo.js): offline from the cache, the
//! outbox delivered exactly once by Background Sync, a DevTools-delivered push shown, and a
//! notification click navigating the app.

mod common;

use common::hub::{Http, HubProcess};
use serde_json::Value;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_works_offline_and_delivers_its_outbox_in_chromium() {
    let hub = HubProcess::start(&["--demo"]);
    let script = common::repo_root().join("tests/browser/demo.js");
    let shots = hub.data_dir.with_extension("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let (url, dir) = (hub.url(), shots.to_str().unwrap().to_owned());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node").arg(script).args([&url, &dir]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), hub.log.lock().unwrap());
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["offlineTitle"], "Tidings Chat", "{seen}");
    assert_eq!(seen["offlineShowsMessages"], 1, "{seen}");
    assert_eq!(seen["offlineStatus"], "offline", "the page can tell");
    assert_eq!(seen["deliveredWhileOffline"], 0);
    assert_eq!(seen["deliveredAfterSync"], 1, "exactly once");
    assert_eq!(seen["notifications"][0]["title"], "Grace");
    assert_eq!(seen["notifications"][0]["body"], "Are you there?");
    assert!(seen["afterClick"].as_str().unwrap().ends_with("/?from=notification"));
    // The server has each message once.
    let messages =
        Http::new().call("GET", &format!("{}/demo/api/messages", hub.url()), &[], None).await.json();
    let texts: Vec<&str> =
        messages["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["hello while online", "written while offline"]);
    for shot in ["demo-offline.png", "demo-chromium.png"] {
        assert!(std::fs::metadata(shots.join(shot)).unwrap().len() > 1000, "{shot}");
    }
}
