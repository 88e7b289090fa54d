//! `tidings broadcast` to a local HTTP sink that answers 201: how long a million takes, how
//! much memory it needs, and npm web-push doing the same in the same run.

use crate::service::{peak_of, tidings_binary};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::Empty;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tidings_crypto::b64;
use tidings_crypto::vapid::VapidKey;
use tidings_crypto::webpush::ReceiverKeys;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Subscriptions in the list.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// How many of them npm web-push sends (it is about ten times slower).
    #[arg(long, default_value_t = 20_000)]
    peer_count: u64,
    /// Requests in flight, for both.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Skip npm web-push.
    #[arg(long)]
    no_peer: bool,
}

/// A push service that accepts everything, counting; on its own runtime thread.
pub(crate) fn sink() -> Result<(u16, Arc<AtomicU64>)> {
    slow_sink(std::time::Duration::ZERO)
}

/// A sink that answers each request after `delay` (a slow push service).
pub(crate) fn slow_sink(delay: std::time::Duration) -> Result<(u16, Arc<AtomicU64>)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            while let Ok((tcp, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_request: hyper::Request<hyper::body::Incoming>| {
                        let counter = counter.clone();
                        async move {
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            counter.fetch_add(1, Ordering::Relaxed);
                            let response = hyper::Response::builder().status(201).body(Empty::<Bytes>::new());
                            Ok::<_, http::Error>(response.expect("static response"))
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
                });
            }
        });
    });
    Ok((port, count))
}

/// Writes `count` subscriptions on the sink (keys cycled from a pool: the cost per message is
/// the same whoever it is for).
pub(crate) fn write_list(path: &Path, port: u16, count: u64) -> Result<()> {
    let pool: Vec<(String, String)> = (0..1000)
        .map(|_| {
            let keys = ReceiverKeys::generate().expect("keys").subscription_keys();
            (b64::encode(keys.p256dh.as_bytes()), b64::encode(&keys.auth))
        })
        .collect();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    for n in 0..count {
        let (p256dh, auth) = &pool[(n % 1000) as usize];
        writeln!(
            out,
            r#"{{"endpoint":"http://127.0.0.1:{port}/push/{n}","keys":{{"p256dh":"{p256dh}","auth":"{auth}"}},"id":{n}}}"#
        )?;
    }
    out.flush()?;
    Ok(())
}

/// `tidings broadcast` of a 100-byte message to `list`, signed with `keys`.
pub(crate) fn broadcast_command(list: &Path, keys: &Path, concurrency: usize) -> Result<Command> {
    let mut command = Command::new(tidings_binary()?);
    command
        .args([
            "broadcast",
            "--payload",
            &"x".repeat(100),
            "--ttl",
            "60",
            "--vapid-subject",
            "mailto:bench@example.com",
        ])
        .arg("--subscriptions")
        .arg(list)
        .arg("--vapid-keys")
        .arg(keys)
        .args(["--concurrency", &concurrency.to_string(), "--report", "/dev/null"]);
    Ok(command)
}

pub fn run(args: &Args) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("tidings-bench-broadcast-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = measure(args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(args: &Args, dir: &Path) -> Result<()> {
    let (port, received) = sink()?;
    let list = dir.join("subscriptions.jsonl");
    let generating = Instant::now();
    write_list(&list, port, args.count)?;
    let size = std::fs::metadata(&list)?.len();
    println!(
        "broadcast: {} subscriptions ({:.0} MB of JSON lines, written in {:.1} s) to a local sink answering 201, concurrency {}",
        args.count,
        size as f64 / 1e6,
        generating.elapsed().as_secs_f64(),
        args.concurrency
    );
    let key = VapidKey::generate()?;
    let keys = dir.join("vapid.json");
    std::fs::write(&keys, serde_json::to_string(&key.to_key_file())?)?;

    let start = Instant::now();
    let mut child = broadcast_command(&list, &keys, args.concurrency)?
        .stderr(Stdio::piped())
        .spawn()
        .context("starting tidings broadcast")?;
    let pid = child.id();
    let mut peak = 0;
    while child.try_wait()?.is_none() {
        peak = peak.max(peak_of(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("tidings broadcast failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let delivered = received.load(Ordering::Relaxed);
    println!(
        "  tidings broadcast: {delivered} accepted in {elapsed:.1} s ({:.0}/s), peak memory {:.0} MB",
        delivered as f64 / elapsed,
        peak as f64 / 1e6
    );
    let ours = delivered as f64 / elapsed;

    if !args.no_peer {
        let before = received.load(Ordering::Relaxed);
        let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/web-push-broadcast.js");
        let out = Command::new("node")
            .arg(script)
            .arg(&list)
            .arg(args.peer_count.to_string())
            .arg(args.concurrency.to_string())
            .arg(&keys)
            .output()
            .context("running node (scripts/install-test-deps installs web-push)")?;
        if !out.status.success() {
            bail!("npm web-push broadcast failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let result: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let seconds = result["seconds"].as_f64().unwrap_or(f64::NAN);
        let accepted = received.load(Ordering::Relaxed) - before;
        let theirs = accepted as f64 / seconds;
        println!(
            "  npm web-push: {accepted} accepted in {seconds:.1} s ({theirs:.0}/s; {} subscriptions would take {:.0} s)",
            args.count,
            args.count as f64 / theirs
        );
        println!("  tidings broadcast / npm web-push: {:.1}x", ours / theirs);
    }
    Ok(())
}
