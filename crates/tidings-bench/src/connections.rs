//! Memory per idle, registered connection: open many user agents (from several processes
//! and source addresses, since one process may hold 20,000 files and one source address has
//! about 28,000 ports), then read the service's resident memory.

use crate::load;
use crate::service::{Service, Target, rss_of};
use anyhow::{Context, Result, bail};
use std::io::{BufRead as _, BufReader, Read as _};
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: Target,
    /// Connections to open in all.
    #[arg(long, default_value_t = 19_000)]
    count: usize,
    /// Worker processes holding the connections (each from its own loopback address).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Connections being set up at once per worker.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Start the service with a self-signed certificate and connect with `wss://`.
    #[arg(long, conflicts_with = "url")]
    tls: bool,
}

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    count: usize,
    #[arg(long)]
    source: IpAddr,
    #[arg(long)]
    concurrency: usize,
}

pub fn run(args: &Args) -> Result<()> {
    let service =
        if args.tls { Service::spawn_tls(&args.target.serve_args)? } else { Service::start(&args.target)? };
    std::thread::sleep(Duration::from_millis(500));
    let before = service.rss();
    println!(
        "connections: {} idle registered user agents on {}, from {} worker processes",
        args.count, service.ws_url, args.workers
    );
    let start = Instant::now();
    // Source addresses from a /24 of loopback picked per run, so that the ports a previous
    // run left in TIME_WAIT do not run out.
    let [_, a, b, _] = load::channel_id().0[..4].try_into().unwrap_or([0; 4]);
    let (a, b) = (a.max(1), b.max(1));
    let mut workers = Vec::new();
    for w in 0..args.workers {
        let count = args.count / args.workers + usize::from(w < args.count % args.workers);
        let mut worker = Command::new(std::env::current_exe()?);
        // The user agents trust the certificates of SSL_CERT_FILE instead of the system's.
        if let Some(root) = &service.tls_root {
            worker.env("SSL_CERT_FILE", root);
        }
        let child = worker
            .args(["connect-worker", "--url", &service.ws_url, "--count", &count.to_string()])
            .args([
                "--source",
                &format!("127.{a}.{b}.{}", 2 + w),
                "--concurrency",
                &args.concurrency.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        workers.push(child);
    }
    let mut client_rss = 0;
    for worker in &mut workers {
        let mut line = String::new();
        BufReader::new(worker.stdout.as_mut().expect("piped")).read_line(&mut line)?;
        let mut words = line.split_whitespace();
        if words.next() != Some("ready") {
            bail!("a worker failed: {line}");
        }
        let _count: usize = words.next().context("count")?.parse()?;
        client_rss += words.next().context("rss")?.parse::<u64>()?;
    }
    let setup = start.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let after = service.rss();
    println!(
        "  set up in {:.1} s ({:.0} connections/s)",
        setup.as_secs_f64(),
        args.count as f64 / setup.as_secs_f64()
    );
    match (before, after) {
        (Some(before), Some(after)) => {
            println!(
                "  service RSS: {:.1} MiB before, {:.1} MiB with {} connections",
                mib(before),
                mib(after),
                args.count
            );
            println!(
                "  service memory per idle registered connection: {:.0} bytes",
                (after.saturating_sub(before)) as f64 / args.count as f64
            );
        }
        _ => println!("  service memory: unknown (give --server-pid to measure a service we did not start)"),
    }
    println!(
        "  load generator (tidings-agent) memory per connection: {:.0} bytes (RSS of the workers / connections)",
        client_rss as f64 / args.count as f64
    );
    for mut worker in workers {
        drop(worker.stdin.take());
        let _ = worker.wait();
    }
    std::thread::sleep(Duration::from_secs(2));
    if let (Some(before), Some(after), Some(closed)) = (before, after, service.rss()) {
        println!(
            "  service RSS after they all closed: {:.1} MiB ({:.0} bytes per connection were connection state, {:.0} stayed: storage and allocator)",
            mib(closed),
            after.saturating_sub(closed) as f64 / args.count as f64,
            closed.saturating_sub(before) as f64 / args.count as f64
        );
    }
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A worker process: opens its share of connections, reports, and holds them until its
/// standard input closes.
pub fn worker(args: &WorkerArgs) -> Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let agents = runtime.block_on(load::subscribe(
        &args.url,
        args.count,
        args.concurrency,
        None,
        Some(args.source),
    ))?;
    let rss = rss_of(std::process::id()).unwrap_or(0);
    println!("ready {} {rss}", agents.len());
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(agents);
    Ok(())
}
