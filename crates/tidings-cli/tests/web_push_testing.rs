//! `tidings send` against npm `web-push-testing`, a mock push service that checks VAPID
//! tokens against the subscription's key and decrypts what it receives: what we send is
//! read back as the text we sent.

mod common;

use common::{Running, free_port, interop_dir, post_json, tidings};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tidings_crypto::vapid::VapidKey;

/// Starts web-push-testing in the foreground (its `start` command daemonises into a dead
/// pipe and crashes on the second logged error) and waits until it answers.
fn start() -> (Running, u16) {
    let server = interop_dir().join("node_modules/web-push-testing/src/bin/server.js");
    assert!(server.exists(), "web-push-testing is missing: run scripts/test, which installs it");
    let port = free_port();
    let child = Command::new("node")
        .arg(server)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(post_json(port, "/status", &json!({})), Ok((200, _))) {
        assert!(Instant::now() < deadline, "web-push-testing did not start on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (running, port)
}

fn subscribe(port: u16, application_server_key: Option<&str>) -> Value {
    let mut request = json!({"userVisibleOnly": "true"});
    if let Some(key) = application_server_key {
        request["applicationServerKey"] = json!(key);
    }
    let (status, body) = post_json(port, "/subscribe", &request).unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["data"].clone()
}

fn messages(port: u16, subscription: &Value) -> Vec<String> {
    let (status, body) =
        post_json(port, "/get-notifications", &json!({"clientHash": subscription["clientHash"]})).unwrap();
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    body["data"]["messages"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()).collect()
}

struct Files(std::path::PathBuf);

impl Files {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tidings-wpt-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn send(subscription: &str, keys: Option<&str>, extra: &[&str]) -> (i32, String) {
    let mut command = tidings();
    command
        .args(["send", "--subscription", subscription, "--timeout", "10"])
        .env_remove("TIDINGS_VAPID_PRIVATE_KEY");
    if let Some(keys) = keys {
        command.args(["--vapid-keys", keys, "--vapid-subject", "mailto:ops@example.com"]);
    }
    let out = command.args(extra).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap(), text)
}

#[test]
fn messages_sent_by_tidings_arrive_decrypted() {
    let (_server, port) = start();
    let files = Files::new("send");
    let key = VapidKey::generate().unwrap();
    let keys = files.write("vapid.json", &serde_json::to_string(&key.to_key_file()).unwrap());
    let sub = subscribe(port, Some(&key.public_key_base64()));
    let sub_file = files.write("sub.json", &sub.to_string());

    let (code, out) =
        send(&sub_file, Some(&keys), &["--payload", "Hello from Tidings \u{1F514}", "--ttl", "60"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("201 Created"), "{out}");
    let (code, out) = send(
        &sub_file,
        Some(&keys),
        &["--payload", "legacy aesgcm", "--encoding", "aesgcm", "--padding", "32"],
    );
    assert_eq!(code, 0, "{out}");
    let payload = files.write("payload.bin", &"p".repeat(3993));
    let (code, out) =
        send(&sub_file, Some(&keys), &["--payload-file", &payload, "--urgency", "low", "--topic", "t1"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(messages(port, &sub), ["Hello from Tidings \u{1F514}", "legacy aesgcm", &"p".repeat(3993)]);
}

#[test]
fn wrong_key_is_rejected_and_expired_subscription_is_gone() {
    let (_server, port) = start();
    let files = Files::new("errors");
    let key = VapidKey::generate().unwrap();
    let other = files
        .write("other.json", &serde_json::to_string(&VapidKey::generate().unwrap().to_key_file()).unwrap());
    let sub = subscribe(port, Some(&key.public_key_base64()));
    let sub_file = files.write("sub.json", &sub.to_string());

    // Signed with keys other than those the subscription was made with: refused, nothing delivered.
    let (code, out) = send(&sub_file, Some(&other), &["--payload", "not mine"]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("400 Bad Request") && out.contains("rejected"), "{out}");
    assert!(messages(port, &sub).is_empty());

    let hash = sub["clientHash"].as_str().unwrap();
    let (status, _) = post_json(port, &format!("/expire-subscription/{hash}"), &json!({})).unwrap();
    assert_eq!(status, 200);
    let keys = files.write("vapid.json", &serde_json::to_string(&key.to_key_file()).unwrap());
    let (code, out) = send(&sub_file, Some(&keys), &["--payload", "too late"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("410 Gone") && out.contains("delete it"), "{out}");
}

#[test]
fn unrestricted_subscription_needs_no_vapid() {
    let (_server, port) = start();
    let files = Files::new("open");
    let sub = subscribe(port, None);
    let sub_file = files.write("sub.json", &sub.to_string());
    let (code, out) = send(&sub_file, None, &["--payload", "no VAPID"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(messages(port, &sub), ["no VAPID"]);
}
