//! `tidings listen` as a black box against `tidings serve`, with messages from every sender.

mod common;

use common::push::{Service, eventually, metric};
use common::{node, python, tidings};
use serde_json::{Value, json};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tidings_crypto::vapid::VapidKey;

const SUBJECT: &str = "mailto:ops@example.com";

/// A running `tidings listen`, its output lines and its log.
struct Listener {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Arc<Mutex<String>>,
}

impl Listener {
    fn start(service: &Service, dir: &Path, extra: &[&str]) -> Self {
        let mut child = tidings()
            .args(["listen", "--server", &service.ws_url(), "--json"])
            .arg("--state")
            .arg(dir.join("state.json"))
            .arg("--subscription-out")
            .arg(dir.join("subscription.json"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let listener = Self { child, lines, log };
        listener.wait_for_log("connected to", 1);
        listener
    }

    /// Waits until `needle` appears `count` times in the log.
    fn wait_for_log(&self, needle: &str, count: usize) {
        for _ in 0..500 {
            if self.log.lock().unwrap().matches(needle).count() >= count {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{needle:?} did not appear {count} times; log:\n{}", self.log.lock().unwrap());
    }

    /// The next message printed, as JSON.
    fn next(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no message; log:\n{}", self.log.lock().unwrap()));
        serde_json::from_str(&line).unwrap()
    }

    fn nothing_within(&self, wait: Duration) {
        if let Ok(line) = self.lines.recv_timeout(wait) {
            panic!("unexpected output {line}");
        }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tidings-listen-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn subscription(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("subscription.json")).unwrap()).unwrap()
}

/// `tidings send` to the subscription the listener wrote; returns the exit code.
fn send(dir: &Path, keys: Option<&Path>, text: &str) -> i32 {
    let mut command = tidings();
    command
        .args(["send", "--payload", text, "--ttl", "600", "--subscription"])
        .arg(dir.join("subscription.json"));
    if let Some(keys) = keys {
        command.arg("--vapid-keys").arg(keys).args(["--vapid-subject", SUBJECT]);
    }
    let out = command.env_remove("TIDINGS_VAPID_PRIVATE_KEY").output().unwrap();
    assert!(out.status.code().is_some(), "{out:?}");
    out.status.code().unwrap()
}

#[test]
fn messages_from_every_sender_arrive_with_their_exact_text() {
    let service = Service::start(&[]);
    let dir = scratch("senders");
    let vapid = VapidKey::generate().unwrap();
    let keys = vapid.to_key_file();
    let keys_path = dir.join("vapid.json");
    std::fs::write(&keys_path, serde_json::to_string(&keys).unwrap()).unwrap();
    let listener = Listener::start(&service, &dir, &["--application-server-key", &keys.public_key]);
    let sub = subscription(&dir);

    assert_eq!(send(&dir, Some(&keys_path), "from tidings send \u{1F514}"), 0);
    for encoding in ["aes128gcm", "aesgcm"] {
        let vapid = json!({"subject": SUBJECT, "publicKey": keys.public_key, "privateKey": keys.private_key});
        let sent = node("send", &json!({"subscription": sub, "payload": format!("npm web-push {encoding}"), "encoding": encoding, "ttl": 600, "vapid": vapid})).unwrap();
        assert_eq!(sent["status"], 201);
        let sent = python("send", &json!({"subscription": sub, "payload": format!("pywebpush {encoding}"), "encoding": encoding, "ttl": 600, "privateKey": keys.private_key, "subject": SUBJECT})).unwrap();
        assert_eq!(sent["status"], 201);
    }
    let texts: Vec<String> = (0..5).map(|_| listener.next()["text"].as_str().unwrap().to_owned()).collect();
    assert_eq!(
        texts,
        [
            "from tidings send \u{1F514}",
            "npm web-push aes128gcm",
            "pywebpush aes128gcm",
            "npm web-push aesgcm",
            "pywebpush aesgcm"
        ]
    );
    // Restricted: a sender without the key is refused by the service.
    assert_eq!(send(&dir, None, "no VAPID"), 4);
    listener.nothing_within(Duration::from_millis(300));
}

#[test]
fn messages_sent_while_stopped_arrive_on_restart_and_corrupt_ones_are_withheld() {
    let service = Service::start(&[]);
    let dir = scratch("restart");
    let listener = Listener::start(&service, &dir, &[]);
    let endpoint = subscription(&dir)["endpoint"].clone();
    listener.kill();
    assert_eq!(send(&dir, None, "while stopped 1"), 0);
    // A body that does not decrypt, POSTed by hand.
    let garbage = tidings()
        .args(["send", "--payload", "x", "--ttl", "600", "--curl", "--subscription"])
        .arg(dir.join("subscription.json"))
        .output()
        .unwrap();
    let curl = String::from_utf8(garbage.stdout).unwrap();
    let url = curl.split('\'').nth(3).unwrap().to_owned();
    let status = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            &url,
            "-H",
            "TTL: 600",
            "-H",
            "Content-Encoding: aes128gcm",
            "--data-binary",
        ])
        .arg(format!("@{}", write(&dir, "garbage.bin", &[7u8; 120]).display()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&status.stdout), "201");
    assert_eq!(send(&dir, None, "while stopped 2"), 0);

    let listener = Listener::start(&service, &dir, &[]);
    assert_eq!(subscription(&dir)["endpoint"], endpoint, "the subscription was resumed");
    assert_eq!(listener.next()["text"], "while stopped 1");
    assert_eq!(listener.next()["text"], "while stopped 2");
    listener.wait_for_log("could not be decrypted", 1);
    listener.nothing_within(Duration::from_millis(300));
    // All three were acked (the corrupt one with 101): none comes back.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(eventually("three acks", || async {
        metric(&service, "tidings_messages_acked_total").await == Some(3.0)
    }));
    listener.kill();
    let listener = Listener::start(&service, &dir, &[]);
    listener.nothing_within(Duration::from_millis(500));
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_failed_exec_means_redelivery() {
    let service = Service::start(&[]);
    let dir = scratch("exec");
    let script = format!(
        "if [ -e {marker} ]; then cat >> {got}; echo \" $TIDINGS_VERSION\" >> {got}; else touch {marker}; exit 1; fi",
        marker = dir.join("failed-once").display(),
        got = dir.join("got").display()
    );
    let listener = Listener::start(&service, &dir, &["--exec", &script]);
    assert_eq!(send(&dir, None, "handled on the second try"), 0);
    listener.wait_for_log("will be delivered again", 1);
    for _ in 0..500 {
        if dir.join("got").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let got = std::fs::read_to_string(dir.join("got")).unwrap();
    assert_eq!(got.lines().count(), 1, "handled exactly once: {got}");
    assert!(got.starts_with("handled on the second try "), "{got}");
}

#[test]
fn reconnects_after_the_service_restarts_without_loss_or_doubles() {
    let mut service = Service::start(&[]);
    let dir = scratch("reconnect");
    let listener = Listener::start(&service, &dir, &[]);
    let mut versions = std::collections::HashSet::new();
    for i in 0..3 {
        assert_eq!(send(&dir, None, &format!("before {i}")), 0);
        assert!(versions.insert(listener.next()["version"].to_string()));
    }
    service.kill9();
    service.restart();
    listener.wait_for_log("connected to", 2);
    for i in 0..3 {
        assert_eq!(send(&dir, None, &format!("after {i}")), 0);
        let message = listener.next();
        assert_eq!(message["text"], format!("after {i}"));
        assert!(versions.insert(message["version"].to_string()), "a message came twice");
    }
    listener.nothing_within(Duration::from_millis(300));
}

#[test]
fn a_forgotten_uaid_is_registered_again_with_a_new_endpoint() {
    let service = Service::start(&[]);
    let dir = scratch("forgotten");
    let listener = Listener::start(&service, &dir, &[]);
    let first = subscription(&dir)["endpoint"].clone();
    listener.kill();
    let port = service.port;
    drop(service);
    // A service on the same address that has never seen this user agent.
    let service = Service::start_on(port, &[]);
    let listener = Listener::start(&service, &dir, &[]);
    listener.wait_for_log("subscribed", 1);
    let second = subscription(&dir)["endpoint"].clone();
    assert_ne!(first, second, "a new endpoint is reported");
    assert_eq!(send(&dir, None, "to the new endpoint"), 0);
    assert_eq!(listener.next()["text"], "to the new endpoint");
}

#[test]
fn unsubscribe_removes_the_subscription() {
    let service = Service::start(&[]);
    let dir = scratch("unsubscribe");
    Listener::start(&service, &dir, &[]).kill();
    let out = tidings()
        .args(["listen", "--unsubscribe", "--server", &service.ws_url(), "--state"])
        .arg(dir.join("state.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("removed 1 subscription"));
    assert_eq!(send(&dir, None, "gone"), 3);
}

#[test]
fn bad_state_files_are_refused_with_a_clear_error() {
    let service = Service::start(&[]);
    let dir = scratch("state");
    let cases: [(&str, &[u8], &str); 3] = [
        ("garbage.json", b"{ this is not json", "is not a tidings agent state file"),
        (
            "foreign.json",
            br#"{"format":"someone-else/2","server":"ws://x/"}"#,
            "is not a tidings agent state file",
        ),
        (
            "other.json",
            br#"{"format":"tidings-agent-state/1","server":"ws://127.0.0.1:1/"}"#,
            "live on ws://127.0.0.1:1/",
        ),
    ];
    for (name, contents, message) in cases {
        let path = write(&dir, name, contents);
        let out =
            tidings().args(["listen", "--server", &service.ws_url(), "--state"]).arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(message), "{name}: {stderr}");
        assert_eq!(std::fs::read(&path).unwrap(), contents, "{name} was changed");
    }
    // A directory where the file should be cannot be read.
    let out =
        tidings().args(["listen", "--server", &service.ws_url(), "--state"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[tokio::test]
async fn a_server_sending_garbage_is_survived() {
    use futures_util::{SinkExt as _, StreamExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
                    let _ = ws.next().await;
                    let _ = ws
                        .send(tokio_tungstenite::tungstenite::Message::text("this is not the push protocol"))
                        .await;
                    let _ = ws.send(tokio_tungstenite::tungstenite::Message::binary(vec![0xff; 10])).await;
                }
            });
        }
    });
    let dir = scratch("garbage");
    let mut child = tidings()
        .args(["listen", "--server", &format!("ws://127.0.0.1:{port}/"), "--state"])
        .arg(dir.join("state.json"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually("two connection attempts", || async {
        accepted.load(std::sync::atomic::Ordering::SeqCst) >= 2
    })
    .await;
    assert!(child.try_wait().unwrap().is_none(), "the listener exited");
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("disconnected: unexpected frame"), "{stderr}");
    assert!(!dir.join("state.json").exists(), "nothing was saved from a broken server");
}

#[test]
fn listens_over_wss_and_exits_cleanly_on_ctrl_c() {
    let dir = scratch("wss");
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert_path = write(&dir, "cert.pem", cert.cert.pem().as_bytes());
    let key_path = write(&dir, "key.pem", cert.signing_key.serialize_pem().as_bytes());
    let port = common::free_port();
    let service = Service::start_on(
        port,
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
            "--public-url",
            &format!("https://127.0.0.1:{port}"),
        ],
    );
    let mut child = tidings()
        .args([
            "listen",
            "--server",
            &format!("wss://127.0.0.1:{port}/"),
            "--json",
            "--ca-file",
            cert_path.to_str().unwrap(),
        ])
        .arg("--state")
        .arg(dir.join("state.json"))
        .arg("--subscription-out")
        .arg(dir.join("subscription.json"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..500 {
        if dir.join("subscription.json").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = tidings()
        .args([
            "send",
            "--payload",
            "over wss",
            "--ttl",
            "60",
            "--ca-file",
            cert_path.to_str().unwrap(),
            "--subscription",
        ])
        .arg(dir.join("subscription.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&line).unwrap()["text"], "over wss");
    // Ctrl-C: a clean exit.
    std::process::Command::new("kill").arg("-INT").arg(child.id().to_string()).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    drop(service);
}
