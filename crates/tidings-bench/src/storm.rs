//! Coming back: many user agents reconnecting at once to stored messages, and one user
//! agent coming back to a large backlog. Both check exactly-once delivery after ack.

use crate::load;
use crate::service::{Service, Target};
use anyhow::{Result, bail};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tidings_agent::Client;
use tidings_sender::{ClientConfig, PushClient};
use tidings_wire::ws::ServerMessage;
use tokio::task::JoinSet;

#[derive(Debug, clap::Args)]
pub struct StormArgs {
    #[command(flatten)]
    target: Target,
    /// User agents reconnecting at once.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Messages stored for each while it is away.
    #[arg(long, default_value_t = 10)]
    stored: usize,
}

#[derive(Debug, clap::Args)]
pub struct BacklogArgs {
    #[command(flatten)]
    target: Target,
    /// Subscriptions of the one user agent.
    #[arg(long, default_value_t = 10)]
    subscriptions: usize,
    /// Messages stored for each subscription.
    #[arg(long, default_value_t = 1000)]
    stored: usize,
}

/// Sends `copies` of each request, 64 at a time; fails unless all are accepted.
async fn send_all(requests: &[http::Request<bytes::Bytes>], copies: usize) -> Result<()> {
    let client = PushClient::new(ClientConfig::default());
    let requests: Arc<Vec<_>> = Arc::new(requests.iter().map(tidings_sender::duplicate).collect());
    let mut tasks = JoinSet::new();
    for worker in 0..64 {
        let (client, requests) = (client.clone(), requests.clone());
        tasks.spawn(async move {
            let total = requests.len() * copies;
            let mut refused = 0;
            // Copy k of every request goes out before copy k + 1 of any, so per-subscription
            // order is the order of k.
            for n in (worker..total).step_by(64) {
                let response = client.send(tidings_sender::duplicate(&requests[n % requests.len()])).await;
                if !matches!(response, Ok(r) if r.status == 201) {
                    refused += 1;
                }
            }
            refused
        });
    }
    let mut refused = 0;
    while let Some(result) = tasks.join_next().await {
        refused += result?;
    }
    if refused > 0 {
        bail!("{refused} messages were not accepted");
    }
    Ok(())
}

/// Receives and acks until `expected` distinct messages arrived, then listens `linger`
/// longer for duplicates. Returns (distinct, duplicates, time of the last new message).
async fn drain(
    client: &mut Client,
    expected: usize,
    linger: Duration,
    start: Instant,
) -> (usize, usize, Duration) {
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    let mut done = Duration::ZERO;
    let mut deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut batch = Vec::new();
    loop {
        let Ok(Ok(message)) = tokio::time::timeout_at(deadline, client.next()).await else { break };
        if let ServerMessage::Notification { channel_id, version, .. } = message {
            if seen.insert((channel_id.clone(), version.clone())) {
                done = start.elapsed();
            } else {
                duplicates += 1;
            }
            batch.push((channel_id, version));
            if batch.len() >= 100 || seen.len() >= expected {
                let _ = client.ack(&batch).await;
                batch.clear();
            }
            if seen.len() >= expected && deadline > tokio::time::Instant::now() + linger {
                deadline = tokio::time::Instant::now() + linger;
            }
        }
    }
    (seen.len(), duplicates, done)
}

/// How many notifications arrive within `wait`.
async fn notifications_within(client: &mut Client, wait: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + wait;
    let mut count = 0;
    while let Ok(Ok(message)) = tokio::time::timeout_at(deadline, client.next()).await {
        if matches!(message, ServerMessage::Notification { .. }) {
            count += 1;
        }
    }
    count
}

pub fn storm(args: &StormArgs) -> Result<()> {
    let service = Service::start(&args.target)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let url = service.ws_url.clone();
        let signer = load::signer();
        let agents = load::subscribe(&url, args.clients, 256, Some(&signer), None).await?;
        let uaids: Vec<String> = agents.iter().map(|a| a.uaid.clone()).collect();
        let endpoints: Vec<String> = agents.iter().map(|a| a.endpoint.clone()).collect();
        for agent in agents {
            agent.client.close().await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let requests = load::requests(&endpoints, &signer, 100, 3600)?;
        send_all(&requests, args.stored).await?;
        println!(
            "reconnect storm: {} user agents with {} stored messages each reconnect at once",
            args.clients, args.stored
        );

        let start = Instant::now();
        let mut tasks = JoinSet::new();
        for uaid in uaids.clone() {
            let (url, expected) = (url.clone(), args.stored);
            tasks.spawn(async move {
                let mut client = Client::connect(&url, Some(&uaid)).await?;
                if client.uaid() != uaid {
                    bail!("the service forgot uaid {uaid}");
                }
                let result = drain(&mut client, expected, Duration::from_millis(500), start).await;
                client.close().await;
                anyhow::Ok(result)
            });
        }
        let (mut distinct, mut duplicates, mut last) = (0, 0, Duration::ZERO);
        while let Some(result) = tasks.join_next().await {
            let (d, dup, done) = result??;
            distinct += d;
            duplicates += dup;
            last = last.max(done);
        }
        let expected = args.clients * args.stored;
        println!(
            "  delivered {distinct} of {expected} distinct messages in {:.3} s, {duplicates} duplicates",
            last.as_secs_f64()
        );

        // Everything was acked: reconnecting again must bring nothing back.
        let mut tasks = JoinSet::new();
        for uaid in uaids {
            let url = url.clone();
            tasks.spawn(async move {
                let mut client = Client::connect(&url, Some(&uaid)).await?;
                anyhow::Ok(notifications_within(&mut client, Duration::from_secs(1)).await)
            });
        }
        let mut redelivered = 0;
        while let Some(result) = tasks.join_next().await {
            redelivered += result??;
        }
        println!("  after all were acked, reconnecting brought back {redelivered} messages");
        Ok(())
    })
}

pub fn backlog(args: &BacklogArgs) -> Result<()> {
    let service = Service::start(&args.target)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let url = service.ws_url.clone();
        let signer = load::signer();
        let mut client = Client::connect(&url, None).await?;
        let uaid = client.uaid().to_owned();
        let key = signer.key().public_key_base64();
        let mut endpoints = Vec::new();
        for _ in 0..args.subscriptions {
            endpoints.push(client.register(load::channel_id(), Some(&key)).await?);
        }
        client.close().await;
        let requests = load::requests(&endpoints, &signer, 100, 3600)?;
        send_all(&requests, args.stored).await?;
        let expected = args.subscriptions * args.stored;
        println!(
            "backlog: one user agent comes back to {expected} stored messages ({} subscriptions x {})",
            args.subscriptions, args.stored
        );
        let start = Instant::now();
        let mut client = Client::connect(&url, Some(&uaid)).await?;
        let (distinct, duplicates, done) =
            drain(&mut client, expected, Duration::from_millis(500), start).await;
        println!(
            "  delivered {distinct} of {expected} in {:.3} s (connect included), {duplicates} duplicates",
            done.as_secs_f64()
        );
        Ok(())
    })
}
