//! The embedded store when its disk fails it. Startup refuses, with the reason, a data
//! directory another process holds or that cannot be written. And on a disk that fills up,
//! for real: `tidings serve` runs on a small
//! tmpfs of its own (a private mount namespace, so nothing outside the test sees it). When
//! the database refuses a commit, `/health` turns 503 with the reason and every POST gets
//! 503, never a 201 for a message that was not stored; after the operator makes room and
//! restarts the service, every message answered 201 is delivered.

mod common;

use common::push::{Agent, Sender, get};
use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Mounts a 6 MB tmpfs on `$DATA`, serves on it until `$CTL` appears, then stops the
/// service, grows the tmpfs (the operator making room) and serves again on the same data.
const SCRIPT: &str = r#"set -e
mount -t tmpfs -o size=6m tidings-disk-full "$DATA"
"$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA" --max-pending 100000 & pid=$!
while [ ! -e "$CTL" ]; do sleep 0.1; done
kill -TERM "$pid"; wait "$pid" || true
mount -o remount,size=256m "$DATA"
exec "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA" --max-pending 100000
"#;

struct Namespace(Child);

impl Drop for Namespace {
    fn drop(&mut self) {
        // The shell execs the second service, so this ends the last process in the namespace.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `/health` to answer `status`.
async fn health_becomes(port: u16, status: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(_) => get(port, "/health").await,
            Err(_) => String::new(),
        };
        if answer.starts_with(&format!("HTTP/1.1 {status}")) {
            return answer;
        }
        assert!(Instant::now() < deadline, "/health never answered {status}: {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_turns_health_503_and_loses_nothing_answered_201() {
    let dir = std::env::temp_dir().join(format!("tidings-disk-full-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let port = common::free_port();
    let _namespace = Namespace(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", SCRIPT])
            .env("BIN", env!("CARGO_BIN_EXE_tidings"))
            .env("DATA", dir.join("data"))
            .env("CTL", dir.join("restart"))
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare (util-linux) to make a private mount namespace"),
    );
    health_becomes(port, "200").await;
    let ws_url = format!("ws://127.0.0.1:{port}/");
    let sender = Sender::new();
    let mut agent = Agent::hello(&ws_url, None).await;
    let sub = agent.register(Some(sender.key())).await;
    let uaid = agent.uaid.clone();
    agent.close().await;

    // Messages of nearly 4 KB until the disk is full.
    let filler = "x".repeat(3900);
    let mut accepted = HashSet::new();
    let mut refused = false;
    for i in 0..5000 {
        let text = format!("{i} {filler}");
        match sender.push(&sub, &text).await.status.as_u16() {
            201 => {
                accepted.insert(text);
            }
            503 => {
                refused = true;
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(refused, "the disk never filled up ({} accepted)", accepted.len());
    assert!(accepted.len() > 100, "only {} accepted before the disk was full", accepted.len());
    let health = health_becomes(port, "503").await;
    assert!(health.contains("refused a commit"), "{health}");
    // Every write now fails at once, with room or not: nothing is half-written.
    for _ in 0..3 {
        let start = Instant::now();
        let answer = sender.push(&sub, "after").await;
        assert_eq!(answer.status, 503);
        assert!(answer.retry_after.is_some());
        assert!(start.elapsed() < Duration::from_secs(1), "the 503 took {:?}", start.elapsed());
    }

    // The operator makes room and restarts: everything answered 201 is there.
    std::fs::write(dir.join("restart"), b"").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    health_becomes(port, "200").await;
    let mut back = Agent::hello(&ws_url, Some(&uaid)).await;
    assert_eq!(back.uaid, uaid);
    let mut received = HashSet::new();
    while let Some(notification) = back.try_recv(Duration::from_secs(2)).await {
        received.insert(String::from_utf8(sub.decrypt(&notification)).unwrap());
        back.ack(&notification).await;
    }
    let lost: Vec<_> = accepted.difference(&received).map(|t| t.split(' ').next().unwrap()).collect();
    assert!(lost.is_empty(), "answered 201 and lost: {lost:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `tidings serve` on `data_dir` that must fail to start: its error output.
fn refused_start(prefix: &[&str], data_dir: &std::path::Path) -> String {
    let mut command = Command::new(prefix[0]);
    command.args(&prefix[1..]).arg(env!("CARGO_BIN_EXE_tidings"));
    let out =
        command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data_dir).output().unwrap();
    assert!(!out.status.success(), "it started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_data_directory_in_use_or_read_only_is_refused_at_start() {
    let service = common::push::Service::start(&[]);
    let error = refused_start(&["env"], &service.data_dir);
    assert!(error.contains("is in use by another process"), "{error}");
    drop(service);

    let dir = std::env::temp_dir().join(format!("tidings-read-only-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = r#"d="$1"; shift; mount -t tmpfs tidings-read-only "$d" && mkdir "$d/data" && mount -o remount,ro "$d" && exec "$@""#;
    let dir_text = dir.to_str().unwrap();
    let error = refused_start(
        &["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", dir_text],
        &dir.join("data"),
    );
    assert!(error.contains("Read-only file system"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}
