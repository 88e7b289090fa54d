//! `tidings broadcast` over 10,000 subscriptions on four push services at once: `tidings
//! serve` with real user agents, npm web-push-testing, and two stand-ins that answer 410,
//! 403, 500-then-201 and 429-then-201. Every live subscriber gets the message exactly once,
//! the report names exactly the gone, rejected and invalid ones, and a 429 slows only its
//! own push service.

mod common;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use common::push::{Agent, Sender, Service};
use common::{free_port, interop_dir, post_json, tidings};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TEXT: &str = "to everyone \u{1F4E3}";

/// Every request a stand-in received: (path, when, status answered).
type Log = Arc<Mutex<Vec<(String, Instant, u16)>>>;

/// A stand-in push service whose answer depends on the path and on how often it was asked.
async fn stand_in(delay: Duration) -> (u16, Log) {
    async fn answer(
        State((log, delay)): State<(Log, Duration)>,
        UrlPath((kind, _n)): UrlPath<(String, String)>,
        uri: axum::http::Uri,
    ) -> impl IntoResponse {
        tokio::time::sleep(delay).await;
        let path = uri.path().to_owned();
        let mut log = log.lock().unwrap();
        let seen = log.iter().filter(|(p, _, _)| *p == path).count();
        let (status, headers): (u16, Vec<(&str, &str)>) = match (kind.as_str(), seen) {
            ("gone", _) => (410, vec![]),
            ("reject", _) => (403, vec![]),
            ("flaky", 0) => (500, vec![]),
            ("busy", 0) => (429, vec![("retry-after", "2")]),
            _ => (201, vec![("location", "http://127.0.0.1/m/1")]),
        };
        log.push((path, Instant::now(), status));
        let mut response =
            (StatusCode::from_u16(status).unwrap(), r#"{"errno":999,"message":"stand-in"}"#).into_response();
        for (name, value) in headers {
            response.headers_mut().insert(name, value.parse().unwrap());
        }
        response
    }
    let log: Log = Arc::default();
    let app = Router::new().route("/{kind}/{n}", post(answer)).with_state((log.clone(), delay));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, log)
}

fn keys_json(sub: &common::push::Sub) -> Value {
    sub.json()["keys"].clone()
}

struct Files(std::path::PathBuf);

impl Files {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tidings-broadcast-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_subscriptions_on_four_push_services() {
    let files = Files::new("four");
    let service = Service::start(&["--max-pending", "10"]);
    let sender = Sender::new();
    std::fs::write(files.0.join("vapid.json"), serde_json::to_string(&sender.key().to_key_file()).unwrap())
        .unwrap();

    // 6,000 on tidings serve: 20 user agents with 300 subscriptions each.
    let mut agents = Vec::new();
    let mut lines: Vec<Value> = Vec::new();
    let mut subs = HashMap::new();
    for _ in 0..20 {
        let mut agent = Agent::hello(&service.ws_url(), None).await;
        for _ in 0..300 {
            let sub = agent.register(Some(sender.key())).await;
            lines.push(json!({"endpoint": sub.endpoint, "keys": keys_json(&sub), "id": format!("serve-{}", sub.channel_id)}));
            subs.insert(sub.channel_id.clone(), sub);
        }
        agents.push(agent);
    }

    // 1,000 on web-push-testing.
    let server = interop_dir().join("node_modules/web-push-testing/src/bin/server.js");
    let wpt_port = free_port();
    let _wpt = common::Running(
        Command::new("node")
            .arg(server)
            .arg(wpt_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(post_json(wpt_port, "/status", &json!({})), Ok((200, _))) {
        assert!(Instant::now() < deadline, "web-push-testing did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut hashes = Vec::new();
    for _ in 0..1000 {
        let (status, body) = post_json(
            wpt_port,
            "/subscribe",
            &json!({"applicationServerKey": sender.key().public_key_base64()}),
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
        let data = serde_json::from_str::<Value>(&body).unwrap()["data"].clone();
        hashes.push(data["clientHash"].as_str().unwrap().to_owned());
        lines.push(json!({"endpoint": data["endpoint"], "keys": data["keys"]}));
    }

    // 3,000 on the stand-ins, and five lines that are not subscriptions.
    let (plain_port, plain) = stand_in(Duration::ZERO).await;
    let (busy_port, busy) = stand_in(Duration::ZERO).await;
    let keys = keys_json(subs.values().next().unwrap());
    let mut expected_report = HashMap::new();
    let mut stand_in_lines = Vec::new();
    for n in 0..3000 {
        let (port, kind) = match n % 15 {
            0..=3 => (plain_port, "gone"),
            4 => (plain_port, "reject"),
            5..=8 => (plain_port, "flaky"),
            _ => (busy_port, "busy"),
        };
        stand_in_lines
            .push(json!({"endpoint": format!("http://127.0.0.1:{port}/{kind}/{n}"), "keys": keys, "id": n}));
    }
    // Interleave everything, so that all push services are being sent to at the same time.
    let mut all = Vec::new();
    let mut stand_ins = stand_in_lines.into_iter();
    for (i, line) in lines.into_iter().enumerate() {
        all.push(line);
        if i % 7 < 3 {
            all.extend(stand_ins.next());
        }
    }
    all.extend(stand_ins);
    let mut input = String::new();
    for (i, line) in all.iter().enumerate() {
        input.push_str(&line.to_string());
        input.push('\n');
        if let Some(kind) = line["endpoint"].as_str().and_then(|e| e.split('/').nth(3))
            && (kind == "gone" || kind == "reject")
        {
            expected_report.insert(i as u64 + 1, if kind == "gone" { "gone" } else { "rejected" });
        }
    }
    let bad = [
        "not json at all",
        r#"{"endpoint":"https://x.example/p","keys":{"p256dh":"BBBB","auth":"AAAAAAAAAAAAAAAAAAAAAA"}}"#,
        r#"{"endpoint":"https://x.example/p"}"#,
        r#"{"endpoint":"ftp://x/p","keys":{"p256dh":"x","auth":"y"}}"#,
        "[]",
    ];
    for bad in bad {
        input.push_str(bad);
        input.push('\n');
        expected_report.insert(input.lines().count() as u64, "invalid");
    }
    let total = input.lines().count();
    assert_eq!(total, 10_005);
    std::fs::write(files.0.join("subs.jsonl"), &input).unwrap();

    // The user agents read while the broadcast runs, as real ones do (one that stops reading
    // is disconnected by the service once its writes stall).
    let subs = std::sync::Arc::new(subs);
    let mut readers = tokio::task::JoinSet::new();
    for mut agent in agents {
        let subs = subs.clone();
        readers.spawn(async move {
            let mut texts = Vec::new();
            for _ in 0..300 {
                let n = match agent.try_recv(Duration::from_secs(120)).await {
                    Some(n) => n,
                    None => break,
                };
                texts.push(subs[n["channelID"].as_str().unwrap()].decrypt(&n));
                agent.ack(&n).await;
            }
            let duplicate = agent.try_recv(Duration::from_millis(100)).await.is_some();
            (texts, duplicate)
        });
    }

    let started = Instant::now();
    let dir = files.0.clone();
    let out = tokio::task::spawn_blocking(move || {
        tidings()
            .args([
                "broadcast",
                "--payload",
                TEXT,
                "--ttl",
                "600",
                "--vapid-subject",
                "mailto:ops@example.com",
            ])
            .arg("--subscriptions")
            .arg(dir.join("subs.jsonl"))
            .arg("--vapid-keys")
            .arg(dir.join("vapid.json"))
            .arg("--report")
            .arg(dir.join("report.jsonl"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("10005 subscriptions"), "{stderr}");

    // The report names exactly the gone, rejected and invalid ones.
    let report: HashMap<u64, String> = std::fs::read_to_string(files.0.join("report.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["line"].as_u64().unwrap(), v["outcome"].as_str().unwrap().to_owned())
        })
        .collect();
    let expected: HashMap<u64, String> = expected_report.iter().map(|(k, v)| (*k, v.to_string())).collect();
    assert_eq!(report.len(), expected.len());
    assert_eq!(report, expected);

    // Every tidings serve subscriber got it exactly once.
    let mut received = 0;
    while let Some(result) = readers.join_next().await {
        let (texts, duplicate) = result.unwrap();
        assert_eq!(texts.len(), 300, "a user agent is missing messages");
        assert!(texts.iter().all(|t| t == TEXT.as_bytes()));
        assert!(!duplicate, "a duplicate");
        received += texts.len();
    }
    assert_eq!(received, 6000);
    // And every web-push-testing subscriber.
    for hash in &hashes {
        let (_, body) = post_json(wpt_port, "/get-notifications", &json!({"clientHash": hash})).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["data"]["messages"], json!([TEXT]));
    }

    // Retries: every flaky one was asked twice (500, then 201), every busy one twice (429,
    // then 201 at least two seconds later: Retry-After was honoured).
    let plain = plain.lock().unwrap();
    let busy = busy.lock().unwrap();
    let mut by_path: HashMap<&str, Vec<(Instant, u16)>> = HashMap::new();
    for (path, at, status) in plain.iter().chain(busy.iter()) {
        by_path.entry(path.as_str()).or_default().push((*at, *status));
    }
    for (path, requests) in &by_path {
        let statuses: Vec<u16> = requests.iter().map(|r| r.1).collect();
        match path.split('/').nth(1).unwrap() {
            "flaky" => assert_eq!(statuses, [500, 201], "{path}"),
            "busy" => {
                assert_eq!(statuses, [429, 201], "{path}");
                assert!(
                    requests[1].0 - requests[0].0 >= Duration::from_millis(1900),
                    "{path} retried too soon"
                );
            }
            _ => assert_eq!(statuses.len(), 1, "{path}"),
        }
    }
    // The 429s paused only their push service: the other stand-in kept being sent to
    // during the first pause.
    let first_429 = busy.iter().map(|r| r.1).min().unwrap();
    let others_meanwhile =
        plain.iter().filter(|r| r.1 > first_429 && r.1 < first_429 + Duration::from_millis(1900)).count();
    assert!(others_meanwhile > 0, "the other push service was slowed too");
    assert!(started.elapsed() > Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_cleanly_and_resume_finishes_without_sending_twice() {
    let files = Files::new("resume");
    let (port, log) = stand_in(Duration::from_millis(20)).await;
    let keys = {
        let agent_keys = tidings_crypto::webpush::ReceiverKeys::generate().unwrap().subscription_keys();
        json!({"p256dh": tidings_crypto::b64::encode(agent_keys.p256dh.as_bytes()), "auth": tidings_crypto::b64::encode(&agent_keys.auth)})
    };
    let mut input = String::new();
    for n in 1..=300 {
        input.push_str(
            &json!({"endpoint": format!("http://127.0.0.1:{port}/ok/{n}"), "keys": keys}).to_string(),
        );
        input.push('\n');
    }
    std::fs::write(files.0.join("subs.jsonl"), input).unwrap();
    let run = |extra: &[&str]| {
        let mut command = tidings();
        command
            .args(["broadcast", "--payload", "x", "--concurrency", "4", "--subscriptions"])
            .arg(files.0.join("subs.jsonl"))
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null());
        command
    };
    let report = files.0.join("first.jsonl");
    let child = run(&["--report", report.to_str().unwrap()]).spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    Command::new("kill").arg("-INT").arg(child.id().to_string()).status().unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert_eq!(status.status.code(), Some(130), "{}", String::from_utf8_lossy(&status.stderr));
    let trailer: Value =
        serde_json::from_str(std::fs::read_to_string(&report).unwrap().lines().last().unwrap()).unwrap();
    let resume_from = trailer["resume_from_line"].as_u64().unwrap();
    assert!(resume_from > 1 && resume_from < 300, "{trailer}");
    let sent_before: Vec<u64> =
        log.lock().unwrap().iter().map(|(p, _, _)| p.rsplit('/').next().unwrap().parse().unwrap()).collect();
    assert!(sent_before.iter().all(|&n| n < resume_from), "a line past the resume point was sent");
    assert_eq!(sent_before.len() as u64, resume_from - 1, "every line before the resume point was sent once");

    let second = files.0.join("second.jsonl");
    let out =
        run(&["--resume", report.to_str().unwrap(), "--report", second.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let mut all: Vec<u64> =
        log.lock().unwrap().iter().map(|(p, _, _)| p.rsplit('/').next().unwrap().parse().unwrap()).collect();
    all.sort_unstable();
    assert_eq!(all, (1..=300).collect::<Vec<u64>>(), "each line exactly once over both runs");
    let _ = std::io::stderr().flush();
}
