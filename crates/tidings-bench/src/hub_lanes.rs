//! A targeted send's latency while a large broadcast crawls: `count` subscriptions on a
//! push service that answers each request after a second, one user's on a fast one. The
//! broadcast is queued first; then targeted sends to the user go out one after another, and
//! each is timed from the REST call to its status `done`.

use crate::broadcast::{slow_sink, write_list};
use crate::hub::{Database, Http, Hubs, call, session};
use anyhow::{Context, Result, bail};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Subscriptions on the slow push service.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Targeted sends timed.
    #[arg(long, default_value_t = 50)]
    sends: usize,
    /// Seconds the slow push service takes per answer.
    #[arg(long, default_value_t = 1.0)]
    slowness: f64,
    /// Run the hub on PostgreSQL: the server's URL [default: the embedded store].
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
}

pub fn run(args: &Args) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("tidings-bench-lanes-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
        let database = match &args.postgres {
            Some(server) => Some(Database::create(server).await?),
            None => None,
        };
        let result = measure(args, &dir, database.as_ref().map(|d| d.url.as_str())).await;
        if let Some(database) = database {
            database.drop().await?;
        }
        result
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn post_json(http: &Http, url: &str, auth: &str, body: String) -> Result<serde_json::Value> {
    let headers = [("content-type", "application/json"), ("authorization", auth)];
    let (status, _, answer) = call(http, "POST", &format!("{url}/api/v1/sends"), &headers, body).await?;
    if status != 202 {
        bail!("send answered {status}: {answer}");
    }
    Ok(serde_json::from_str(&answer)?)
}

async fn status(http: &Http, url: &str, auth: &str, id: u64) -> Result<serde_json::Value> {
    let (_, _, answer) =
        call(http, "GET", &format!("{url}/api/v1/sends/{id}"), &[("authorization", auth)], String::new())
            .await?;
    Ok(serde_json::from_str(&answer)?)
}

async fn measure(args: &Args, dir: &Path, store: Option<&str>) -> Result<()> {
    let (slow_port, slow_count) = slow_sink(Duration::from_secs_f64(args.slowness))?;
    let (fast_port, _) = slow_sink(Duration::ZERO)?;
    let list = dir.join("subscriptions.jsonl");
    write_list(&list, slow_port, args.count)?;
    let hubs = Hubs::start(dir, 1, 256, store)?;
    let url = hubs.urls[0].clone();
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    let lines: Vec<String> = std::fs::read_to_string(&list)?.lines().map(str::to_owned).collect();
    let user = lines[0]
        .replace(&format!("127.0.0.1:{slow_port}/push/0\""), &format!("127.0.0.1:{fast_port}/user\""));
    session(&http, &url, lines).await?.post_all(64, 201).await?;
    let token = hubs.subcommand(&["user-token", "--user", "ada"])?;
    let user = format!(r#"{{"subscription":{user},"user_token":"{}"}}"#, token.trim());
    let page = session(&http, &url, Vec::new()).await?;
    let headers = [
        ("content-type", "application/json"),
        ("origin", url.as_str()),
        ("cookie", page.cookie.as_str()),
        ("x-tidings-csrf", page.token.as_str()),
    ];
    let (code, _, answer) = call(&http, "POST", &format!("{url}/api/subscriptions"), &headers, user).await?;
    if code != 201 {
        bail!("subscribing the user answered {code}: {answer}");
    }
    let key = hubs.subcommand(&["api-key", "create", "--name", "bench"])?.trim().to_owned();
    let auth = format!("Bearer {key}");

    let broadcast =
        post_json(&http, &url, &auth, r#"{"to":"everyone","text":"slowly","ttl":60}"#.into()).await?;
    let broadcast = broadcast["id"].as_u64().context("send id")?;
    while slow_count.load(Ordering::Relaxed) == 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut latencies = Vec::with_capacity(args.sends);
    for _ in 0..args.sends {
        let started = Instant::now();
        let queued =
            post_json(&http, &url, &auth, r#"{"to":{"user":"ada"},"text":"your code: 123456"}"#.into())
                .await?;
        let id = queued["id"].as_u64().context("send id")?;
        loop {
            let send = status(&http, &url, &auth, id).await?;
            if send["status"] == "done" {
                if send["counts"]["accepted"] != 1 {
                    bail!("the targeted send was not accepted: {send}");
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1];
    let progress = status(&http, &url, &auth, broadcast).await?;
    println!(
        "hub on {}: {} targeted sends while a broadcast to {} subscriptions on a push service taking {:.1} s per \
         answer ran ({} answered meanwhile, status {}): p50 {:.1?}, p99 {:.1?}, slowest {:.1?}",
        if store.is_some() { "PostgreSQL" } else { "the embedded store" },
        args.sends,
        args.count,
        args.slowness,
        slow_count.load(Ordering::Relaxed),
        progress["status"],
        at(0.5),
        at(0.99),
        latencies[latencies.len() - 1]
    );
    Ok(())
}
