//! `tidings hub` against `tidings broadcast` on the same list and the same local sink: how
//! fast browsers can subscribe (the browser API, with its CSRF checks and durable writes),
//! how fast they re-post an unchanged subscription (what the PWA kit does on every page
//! load: answered from a read, nothing written), and how fast a send to everyone goes out,
//! from the REST call to the last outcome recorded.

use crate::broadcast::{broadcast_command, sink, write_list};
use crate::service::tidings_binary;
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tidings_crypto::vapid::VapidKey;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Subscriptions.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Requests in flight while sending, for both.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Subscribe requests in flight.
    #[arg(long, default_value_t = 64)]
    subscribers: usize,
}

type Http = Client<HttpConnector, Full<Bytes>>;

async fn call(
    http: &Http,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: String,
) -> Result<(u16, http::HeaderMap, String)> {
    let mut request = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = http.request(request.body(Full::new(Bytes::from(body)))?).await?;
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let body = String::from_utf8_lossy(&body.collect().await?.to_bytes()).into_owned();
    Ok((status, parts.headers, body))
}

/// Starts `tidings hub` and waits until it is ready.
fn start_hub(dir: &Path, port: u16, concurrency: usize) -> Result<Child> {
    let mut child = Command::new(tidings_binary()?)
        .args(["hub", "--listen", &format!("127.0.0.1:{port}"), "--browser-rate", "10000000"])
        .args([
            "--new-subscriptions-per-session",
            "100000000",
            "--new-subscriptions-per-address",
            "100000000",
        ])
        .args(["--concurrency", &concurrency.to_string()])
        .arg("--data-dir")
        .arg(dir)
        .env("TIDINGS_HUB_LOG", "warn,tidings::cmd::hub=info")
        .stderr(Stdio::piped())
        .spawn()
        .context("starting tidings hub")?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        if line?.contains("hub ready") {
            std::thread::spawn(move || lines.for_each(drop));
            return Ok(child);
        }
    }
    bail!("tidings hub did not start")
}

/// A browser session posting the subscriptions of a list.
struct Session {
    http: Http,
    url: String,
    cookie: Arc<String>,
    token: Arc<String>,
    lines: Arc<Vec<String>>,
}

impl Session {
    /// POSTs every subscription, `subscribers` at a time, each expecting `status`; seconds.
    async fn post_all(&self, subscribers: usize, status: u16) -> Result<f64> {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..subscribers {
            let (http, url, cookie, token, lines, next) = (
                self.http.clone(),
                self.url.clone(),
                self.cookie.clone(),
                self.token.clone(),
                self.lines.clone(),
                next.clone(),
            );
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(line) = lines.get(i) else { return Ok::<_, anyhow::Error>(()) };
                    // The list's extra "id" member is ignored, as browsers' own extra members are.
                    let body = format!(r#"{{"subscription":{line},"topics":["all"]}}"#);
                    let headers = [
                        ("content-type", "application/json"),
                        ("origin", url.as_str()),
                        ("cookie", cookie.as_str()),
                        ("x-tidings-csrf", token.as_str()),
                    ];
                    let (answered, _, answer) =
                        call(&http, "POST", &format!("{url}/api/subscriptions"), &headers, body).await?;
                    if answered != status {
                        bail!("subscribe answered {answered}, not {status}: {answer}");
                    }
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok(started.elapsed().as_secs_f64())
    }
}

pub fn run(args: &Args) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("tidings-bench-hub-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result =
        tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(measure(args, &dir));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(args: &Args, dir: &Path) -> Result<()> {
    let (sink_port, received) = sink()?;
    let list = dir.join("subscriptions.jsonl");
    write_list(&list, sink_port, args.count)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut hub = start_hub(&dir.join("hub"), port, args.concurrency)?;
    let url = format!("http://127.0.0.1:{port}");
    let http: Http = Client::builder(TokioExecutor::new()).build_http();

    // A browser session, then every subscription through the browser API.
    let (_, headers, body) = call(&http, "GET", &format!("{url}/api/session"), &[], String::new()).await?;
    let cookie = headers.get("set-cookie").and_then(|v| v.to_str().ok()).context("session cookie")?;
    let cookie = Arc::new(cookie.split(';').next().unwrap_or_default().to_owned());
    let body = body.as_str();
    let token: serde_json::Value = serde_json::from_str(body)?;
    let token = Arc::new(token["csrfToken"].as_str().context("csrf token")?.to_owned());
    let lines: Vec<String> = std::fs::read_to_string(&list)?.lines().map(str::to_owned).collect();
    let session = Session { http: http.clone(), url: url.clone(), cookie, token, lines: Arc::new(lines) };
    for (what, status) in [("subscribe requests", 201), ("unchanged re-posts", 200)] {
        let seconds = session.post_all(args.subscribers, status).await?;
        println!(
            "hub: {} {what} ({} in flight) in {seconds:.1} s: {:.0}/s",
            args.count,
            args.subscribers,
            args.count as f64 / seconds
        );
    }

    // One send to everyone, from the REST call to the last outcome recorded.
    let out = Command::new(tidings_binary()?)
        .args(["hub", "api-key", "create", "--name", "bench", "--data-dir"])
        .arg(dir.join("hub"))
        .output()?;
    let key = String::from_utf8(out.stdout)?.trim().to_owned();
    let auth = format!("Bearer {key}");
    let before = received.load(Ordering::Relaxed);
    let send = format!(r#"{{"to":"everyone","text":"{}","ttl":60}}"#, "x".repeat(100));
    let started = Instant::now();
    let (status, _, answer) = call(
        &http,
        "POST",
        &format!("{url}/api/v1/sends"),
        &[("content-type", "application/json"), ("authorization", &auth)],
        send,
    )
    .await?;
    if status != 202 {
        bail!("send answered {status}: {answer}");
    }
    let id = serde_json::from_str::<serde_json::Value>(&answer)?["id"].as_u64().context("send id")?;
    let counts = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_, _, answer) = call(
            &http,
            "GET",
            &format!("{url}/api/v1/sends/{id}"),
            &[("authorization", &auth)],
            String::new(),
        )
        .await?;
        let send: serde_json::Value = serde_json::from_str(&answer)?;
        if send["status"] == "done" {
            break send["counts"].clone();
        }
    };
    let hub_seconds = started.elapsed().as_secs_f64();
    let hub_rate = (received.load(Ordering::Relaxed) - before) as f64 / hub_seconds;
    println!("  hub send to everyone: {hub_seconds:.1} s, {hub_rate:.0}/s, counts {counts}");
    let _ = hub.kill();
    let _ = hub.wait();

    // tidings broadcast: the same list, the same sink.
    let key = VapidKey::generate()?;
    let keys = dir.join("vapid.json");
    std::fs::write(&keys, serde_json::to_string(&key.to_key_file())?)?;
    let before = received.load(Ordering::Relaxed);
    let started = Instant::now();
    let out =
        broadcast_command(&list, &keys, args.concurrency)?.output().context("running tidings broadcast")?;
    if !out.status.success() {
        bail!("tidings broadcast failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let broadcast_seconds = started.elapsed().as_secs_f64();
    let broadcast_rate = (received.load(Ordering::Relaxed) - before) as f64 / broadcast_seconds;
    println!("  tidings broadcast, same list: {broadcast_seconds:.1} s, {broadcast_rate:.0}/s");
    println!("  hub / broadcast: {:.2}", hub_rate / broadcast_rate);
    Ok(())
}
