//! The PWA kit in headless Chromium (Debian's, driven by npm playwright-core; see
//! tests/browser/kit-chromium.js), on a test app whose hooks fail: every push still shows a
//! notification (browsers revoke the push permission of a service worker whose pushes show
//! none), and an outbox item the hub refuses is set aside without holding back the next.

mod common;

use common::hub::HubProcess;
use serde_json::{Value, json};
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_hooks_still_show_notifications_and_refused_outbox_items_are_set_aside() {
    let static_dir = common::repo_root().join("crates/tidings-cli/tests/kit-chromium");
    let hub = HubProcess::start(&["--static-dir", static_dir.to_str().unwrap()]);
    let script = common::repo_root().join("tests/browser/kit-chromium.js");
    let url = hub.url();
    let out =
        tokio::task::spawn_blocking(move || Command::new("node").arg(script).arg(url).output().unwrap())
            .await
            .unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), hub.log.lock().unwrap());
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut shown: Vec<(String, Option<String>)> = seen["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["title"].as_str().unwrap().to_owned(),
                n["body"].as_str().filter(|b| !b.is_empty()).map(Into::into),
            )
        })
        .collect();
    shown.sort();
    assert_eq!(
        shown,
        [
            ("Kit test".to_owned(), Some("a data message".to_owned())),
            ("Kit test".to_owned(), Some("throw in onPush".to_owned())),
            ("Refused options".to_owned(), None),
        ],
        "{seen}"
    );
    assert_eq!(seen["outboxResults"], json!(["set-aside", "sent"]), "{seen}");
    let outbox = seen["outbox"].as_array().unwrap();
    assert_eq!(outbox.len(), 1, "{seen}");
    assert_eq!(
        (outbox[0]["id"].clone(), outbox[0]["setAside"].clone()),
        (seen["queued"][0].clone(), json!(true))
    );
    assert_eq!(seen["stateBefore"], json!({ "pending": 0, "setAside": 1 }));
    assert_eq!(seen["discarded"], true);
    assert_eq!(seen["stateAfter"], json!({ "pending": 0, "setAside": 0 }));
}
