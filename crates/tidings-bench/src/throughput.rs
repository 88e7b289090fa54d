//! End-to-end throughput and latency: POST with VAPID → stored durably → delivered over
//! the WebSocket → acked, with many user agents connected and many concurrent senders.

use crate::load::{self, percentile};
use crate::service::{Service, Target};
use anyhow::Result;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tidings_sender::{ClientConfig, PushClient};
use tidings_wire::ws::ServerMessage;
use tokio::task::JoinSet;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: Target,
    /// Connected user agents, one subscription each.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Concurrent senders (each waits for its answer before sending again).
    #[arg(long, default_value_t = 64)]
    senders: usize,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Messages per second in all; without it, as fast as the senders go.
    #[arg(long)]
    rate: Option<f64>,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Nodes sharing one Redis (`--store`); user agents are spread over them and every message
    /// is POSTed to a node other than the one its user agent is on.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// The store of the nodes we start: "embedded" or a Redis URL.
    #[arg(long, default_value = "embedded")]
    store: String,
}

/// The public URL of a multi-node deployment (the load balancer's, not reachable here).
const PUBLIC: &str = "http://push.bench.test";

pub fn run(args: &Args) -> Result<()> {
    let mut services = Vec::new();
    if args.nodes > 1 || args.store != "embedded" {
        let prefix = format!("tidings-bench-{}", std::process::id());
        for node in 0..args.nodes.max(1) {
            let mut serve = args.target.serve_args.clone();
            serve.extend(["--store".into(), args.store.clone(), "--redis-prefix".into(), prefix.clone()]);
            serve.extend(["--node-id".into(), format!("node-{node}"), "--public-url".into(), PUBLIC.into()]);
            services.push(Service::spawn(&serve)?);
        }
    } else {
        services.push(Service::start(&args.target)?);
    }
    let urls: Vec<String> = services.iter().map(|s| s.ws_url.clone()).collect();
    let behind_public_url = args.nodes > 1 || args.store != "embedded";
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(measure(args, &urls, behind_public_url))
}

/// The request sent through the node at `ws_url` instead of the public URL.
fn through(request: &http::Request<bytes::Bytes>, ws_url: &str) -> http::Request<bytes::Bytes> {
    let origin = ws_url.replace("ws://", "http://");
    let uri = request.uri().to_string().replace(PUBLIC, origin.trim_end_matches('/'));
    let mut copy = tidings_sender::duplicate(request);
    *copy.uri_mut() = uri.parse().expect("a valid URL");
    copy
}

async fn measure(args: &Args, urls: &[String], behind_public_url: bool) -> Result<()> {
    let signer = load::signer();
    let mut agents = Vec::new();
    for (n, url) in urls.iter().enumerate() {
        let share = args.clients / urls.len() + usize::from(n < args.clients % urls.len());
        agents.extend(load::subscribe(url, share, 256, Some(&signer), None).await?);
    }
    // Agent i is on node i / share; its messages go through the next node.
    let per_node = args.clients.div_ceil(urls.len());
    let endpoints: Vec<String> = agents.iter().map(|a| a.endpoint.clone()).collect();
    let requests = load::requests(&endpoints, &signer, args.payload, 60)?;
    let requests = Arc::new(if behind_public_url {
        requests.iter().enumerate().map(|(i, r)| through(r, &urls[(i / per_node + 1) % urls.len()])).collect()
    } else {
        requests
    });
    if urls.len() > 1 {
        println!(
            "{} nodes on {}, each message POSTed to a node other than its user agent's",
            urls.len(),
            args.store
        );
    }
    let epoch = Instant::now();
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..args.clients).map(|_| AtomicU64::new(0)).collect());
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(1 << 20)));
    let delivered = Arc::new(AtomicU64::new(0));
    println!(
        "throughput: {} user agents, {} senders, {} s, {}, {}-byte payloads",
        args.clients,
        args.senders,
        args.seconds,
        args.rate.map_or("unpaced".to_owned(), |r| format!("{r:.0} messages/s")),
        args.payload
    );

    let mut receivers = JoinSet::new();
    for (i, mut agent) in agents.into_iter().enumerate() {
        let (sent_at, latencies, delivered) = (sent_at.clone(), latencies.clone(), delivered.clone());
        receivers.spawn(async move {
            while let Ok(message) = agent.client.next().await {
                if let ServerMessage::Notification { channel_id, version, .. } = message {
                    let ms = (epoch.elapsed().as_nanos() as u64)
                        .saturating_sub(sent_at[i].load(Ordering::Relaxed))
                        as f64
                        / 1e6;
                    latencies.lock().unwrap().push(ms);
                    delivered.fetch_add(1, Ordering::Relaxed);
                    if agent.client.ack(&[(channel_id, version)]).await.is_err() {
                        break;
                    }
                }
            }
        });
    }

    let client = PushClient::new(ClientConfig::default());
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let accept_latencies = Arc::new(Mutex::new(Vec::new()));
    let mut senders = JoinSet::new();
    let per_sender = args.rate.map(|rate| Duration::from_secs_f64(args.senders as f64 / rate));
    for s in 0..args.senders {
        let (client, requests, sent_at, stop) =
            (client.clone(), requests.clone(), sent_at.clone(), stop.clone());
        let (accepted, failed, accept_latencies) =
            (accepted.clone(), failed.clone(), accept_latencies.clone());
        // Senders take subscriptions in turn: sender s sends to s, s + n, s + 2n, ...
        let stride = args.senders;
        senders.spawn(async move {
            let mut ticker = per_sender.map(|period| {
                let mut t = tokio::time::interval_at(
                    tokio::time::Instant::now() + period.mul_f64(s as f64 / 64.0),
                    period,
                );
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            let mut i = s % requests.len();
            let mut local = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some(ticker) = &mut ticker {
                    ticker.tick().await;
                }
                let start = epoch.elapsed();
                sent_at[i].store(start.as_nanos() as u64, Ordering::Relaxed);
                match client.send(tidings_sender::duplicate(&requests[i])).await {
                    Ok(response) if response.status == 201 => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        local.push((epoch.elapsed() - start).as_secs_f64() * 1e3);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i = (i + stride) % requests.len();
            }
            accept_latencies.lock().unwrap().extend(local);
        });
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    while senders.join_next().await.is_some() {}
    let sent = accepted.load(Ordering::Relaxed);
    // Let the last deliveries arrive.
    let deadline = Instant::now() + Duration::from_secs(5);
    while delivered.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    receivers.abort_all();
    let mut latencies = std::mem::take(&mut *latencies.lock().unwrap());
    latencies.sort_by(f64::total_cmp);
    let mut accept = std::mem::take(&mut *accept_latencies.lock().unwrap());
    accept.sort_by(f64::total_cmp);
    let delivered = delivered.load(Ordering::Relaxed);
    println!(
        "  accepted (201): {sent} ({:.0}/s), failed: {}",
        sent as f64 / args.seconds,
        failed.load(Ordering::Relaxed)
    );
    println!("  delivered and acked: {delivered} ({:.0}/s over {elapsed:.1} s)", delivered as f64 / elapsed);
    println!("  POST to 201 (ms): p50 {:.2}, p99 {:.2}", percentile(&accept, 0.5), percentile(&accept, 0.99));
    println!(
        "  POST to delivery (ms): p50 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}
