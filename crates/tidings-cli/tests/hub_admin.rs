//! The hub's admin page in a real browser: headless Chromium (Debian's, driven by
//! playwright-core from npm) logs in, sends a test notification to a topic from the form,
//! and sees it done; the push service (a local sink) receives it, encrypted for the
//! subscription, as Declarative Web Push JSON.

mod common;

use common::UserAgent;
use common::hub::{Backend, Browser, Http, HubProcess, Sink};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;
use tidings_crypto::webpush::ReceivedEncoding;

async fn admin_page_logs_in_and_sends_a_test_notification_in_chromium(backend: Backend) {
    let sink = Sink::start(Duration::ZERO).await;
    let hub = HubProcess::start_on(backend, &[]);
    let http = Http::new();
    let browser = Browser::open(&http, &hub.url()).await;
    let ua = UserAgent::new();
    let body = json!({ "subscription": ua.subscription(&sink.endpoint("admin-test")), "topics": ["staff"] });
    assert_eq!(browser.send("POST", "/api/subscriptions", &body).await.status, 201);

    let script = common::repo_root().join("tests/browser/admin.js");
    let screenshot = hub.data_dir.with_extension("admin.png");
    let hub_url = hub.url();
    let secret = hub.admin_secret();
    let shot = screenshot.to_str().unwrap().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args([&hub_url, &secret, "staff", "From the admin page", &shot])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["refused"], "Wrong secret.");
    let row = result["row"].as_str().unwrap();
    assert!(row.contains("topic staff") && row.contains("done"), "{result}");
    assert!(result["stats"].as_str().unwrap().contains("1subscriptions"), "{result}");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 1000);

    let received = sink.received.lock().unwrap().bodies["admin-test"].clone();
    let plain = ua.keys.decrypt(&received, ReceivedEncoding::Aes128gcm).unwrap();
    let message: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(message["notification"]["title"], "From the admin page");
    assert_eq!(message["notification"]["body"], "sent from the admin page");
}

on_both_stores!(admin_page_logs_in_and_sends_a_test_notification_in_chromium);
