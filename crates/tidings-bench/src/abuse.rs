//! Resource bounds under abuse: one `tidings serve` with its default limits, a well-behaved
//! user agent and sender measuring their latency before, during and after an attack, and the
//! node's memory and open files sampled all along.
//!
//! The attacks, each against a fresh node:
//! - `silent`: WebSockets that never say hello (opened again as the node closes them);
//! - `deaf`: user agents that say hello, register, and never read again, while messages are
//!   sent to them;
//! - `trickle`: POSTs whose bodies come one byte a second (opened again when answered), from
//!   this machine's own non-loopback address;
//! - `huge`: POSTs that announce a 1 GB body, or send chunks without end, as fast as they can;
//! - `registrations`: one client registering channels as fast as it can, from this machine's
//!   own non-loopback address (so that the per-address limits apply, as they would to a
//!   remote client).

use crate::load::{self, percentile};
use crate::service::{Service, rss_of};
use anyhow::{Context, Result};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tidings_agent::{Client, Connection};
use tidings_sender::{ClientConfig, PushClient};
use tidings_wire::ws::ServerMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Attack {
    Silent,
    Deaf,
    Trickle,
    Huge,
    Registrations,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The attacks to run, one after another, each against a fresh node (all by default).
    #[arg(long, value_enum, value_delimiter = ',')]
    attack: Vec<Attack>,
    /// Seconds each attack lasts.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Connections held by `silent` and `deaf`.
    #[arg(long, default_value_t = 19_000)]
    connections: usize,
    /// Of the `deaf` user agents, how many are sent messages (4 KiB each, round robin).
    #[arg(long, default_value_t = 250)]
    deaf_targets: usize,
    /// Messages per second sent to the `deaf` user agents.
    #[arg(long, default_value_t = 500.0)]
    deaf_rate: f64,
    /// POSTs trickled at once by `trickle`, from this machine's own non-loopback address
    /// (more than the node's `--max-concurrent-posts`, 4,096, by default).
    #[arg(long, default_value_t = 5_000)]
    trickles: usize,
    /// Clients sending endless bodies at once in `huge`.
    #[arg(long, default_value_t = 8)]
    huge: usize,
    /// Registrations `registrations` tries in all (it stops earlier when `--seconds` is up).
    #[arg(long, default_value_t = 100_000)]
    registrations: usize,
}

/// Seconds of calm before an attack, and of recovery after it (longer than the node's
/// 10 s hello, write and body timeouts, so that what they bound is seen to go).
const CALM: Duration = Duration::from_secs(5);
const RECOVERY: Duration = Duration::from_secs(15);

const BEFORE: u8 = 0;
const DURING: u8 = 1;
const AFTER: u8 = 2;
const PHASES: [&str; 3] = ["before", "during", "after"];

pub fn run(args: &Args) -> Result<()> {
    let attacks = if args.attack.is_empty() {
        vec![Attack::Silent, Attack::Deaf, Attack::Trickle, Attack::Huge, Attack::Registrations]
    } else {
        args.attack.clone()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    for attack in attacks {
        let service = Service::spawn(&[])?;
        let pid = service.pid.context("the node's pid")?;
        println!("== {attack:?} against a fresh node (default limits), {} s", args.seconds);
        runtime.block_on(measure(args, attack, &service.ws_url, pid))?;
    }
    Ok(())
}

/// What the node held, sampled.
#[derive(Default)]
struct Usage {
    rss: [Vec<u64>; 3],
    fds: [Vec<u64>; 3],
}

async fn measure(args: &Args, attack: Attack, ws_url: &str, pid: u32) -> Result<()> {
    let phase = Arc::new(AtomicU8::new(BEFORE));
    let done = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn(probe(ws_url.to_owned(), phase.clone(), done.clone()));
    let sampler = {
        let (phase, done) = (phase.clone(), done.clone());
        tokio::spawn(async move {
            let mut usage = Usage::default();
            while !done.load(Ordering::Relaxed) {
                let p = usize::from(phase.load(Ordering::Relaxed));
                usage.rss[p].extend(rss_of(pid));
                usage.fds[p].extend(open_files(pid));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            usage
        })
    };
    tokio::time::sleep(CALM).await;

    phase.store(DURING, Ordering::Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let mut attackers = JoinSet::new();
    let started = Instant::now();
    match attack {
        Attack::Silent => silent(&mut attackers, ws_url, args.connections, &stop, &counts)?,
        Attack::Deaf => deaf(&mut attackers, args, ws_url, &stop, &counts).await?,
        Attack::Trickle => trickle(&mut attackers, args.trickles, ws_url, &stop, &counts).await?,
        Attack::Huge => huge(&mut attackers, args.huge, ws_url, &stop, &counts).await?,
        Attack::Registrations => registrations(&mut attackers, args.registrations, ws_url, &stop, &counts),
    }
    let remaining = Duration::from_secs_f64(args.seconds).saturating_sub(started.elapsed());
    tokio::time::sleep(remaining).await;
    stop.store(true, Ordering::Relaxed);
    attackers.abort_all();
    while attackers.join_next().await.is_some() {}

    phase.store(AFTER, Ordering::Relaxed);
    tokio::time::sleep(RECOVERY).await;
    done.store(true, Ordering::Relaxed);
    let latencies = probe.await??;
    let usage = sampler.await?;
    report(attack, &counts, &latencies, &usage);
    Ok(())
}

/// What an attack got: for each kind, a count of outcomes.
#[derive(Default)]
struct Counts {
    /// Connections or requests the node took (a WebSocket upgraded, a channel registered).
    taken: AtomicU64,
    /// Refused at once (503 before the upgrade, 409 for a channel, 413, 1013 for a hello).
    refused: AtomicU64,
    /// Ended by the node's timeouts (hello, write, body) or closed by it.
    closed: AtomicU64,
    /// Other answers and errors.
    other: AtomicU64,
    /// Bytes the attack sent (bodies).
    bytes: AtomicU64,
    /// Messages the node accepted (201) for the attack's user agents.
    accepted: AtomicU64,
}

impl Counts {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Open files of a process.
fn open_files(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// The well-behaved pair: a user agent, and a sender that sends it a message every 50 ms and
/// times POST to delivery (acked). Returns the latencies (ms) by phase; a message that fails
/// or takes over 5 s counts as a failure (`f64::INFINITY`).
async fn probe(ws_url: String, phase: Arc<AtomicU8>, done: Arc<AtomicBool>) -> Result<[Vec<f64>; 3]> {
    let signer = load::signer();
    let mut agent = load::subscribe(&ws_url, 1, 1, Some(&signer), None).await?.pop().context("an agent")?;
    let request = load::requests(std::slice::from_ref(&agent.endpoint), &signer, 100, 60)?
        .pop()
        .context("a request")?;
    let client = PushClient::new(ClientConfig::default());
    let mut latencies: [Vec<f64>; 3] = Default::default();
    let limit = Duration::from_secs(5);
    while !done.load(Ordering::Relaxed) {
        let p = usize::from(phase.load(Ordering::Relaxed));
        let start = Instant::now();
        let sent = tokio::time::timeout(limit, client.send(tidings_sender::duplicate(&request))).await;
        let delivered = match sent {
            Ok(Ok(response)) if response.status == 201 => {
                tokio::time::timeout(limit.saturating_sub(start.elapsed()), delivery(&mut agent.client)).await
            }
            _ => Ok(Err(anyhow::anyhow!("not accepted"))),
        };
        latencies[p].push(match delivered {
            Ok(Ok(())) => start.elapsed().as_secs_f64() * 1e3,
            _ => f64::INFINITY,
        });
        tokio::time::sleep(Duration::from_millis(50).saturating_sub(start.elapsed())).await;
    }
    Ok(latencies)
}

/// Waits for the next notification and acks it.
async fn delivery(client: &mut Client) -> Result<()> {
    loop {
        if let ServerMessage::Notification { channel_id, version, .. } = client.next().await? {
            client.ack(&[(channel_id, version)]).await?;
            return Ok(());
        }
    }
}

/// The node's address, from its WebSocket URL.
fn address(ws_url: &str) -> Result<SocketAddr> {
    Ok(ws_url.trim_start_matches("ws://").trim_end_matches('/').parse()?)
}

/// Opens a WebSocket by hand (no client library: the attacks must not behave): the status
/// line of the node's answer, and the stream.
async fn upgrade(addr: SocketAddr) -> Result<(u16, TcpStream)> {
    let mut tcp = TcpStream::connect(addr).await?;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: push-notification\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    let status = read_status(&mut tcp).await?;
    Ok((status, tcp))
}

/// Reads an HTTP response's head; returns its status.
async fn read_status(tcp: &mut TcpStream) -> Result<u16> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await? == 0 {
            anyhow::bail!("closed before the answer");
        }
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head);
    Ok(line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0))
}

/// The status of the node's answer, from its first bytes (`None` when it closed first);
/// what follows them is not read.
async fn first_status(reader: &mut (impl AsyncReadExt + Unpin)) -> Option<u16> {
    let mut first = [0u8; 12];
    let n = reader.read(&mut first).await.unwrap_or(0);
    String::from_utf8_lossy(&first[..n]).split(' ').nth(1).and_then(|s| s.parse().ok())
}

/// Waits until the node closes the connection (reading and dropping what it sends).
async fn until_closed(tcp: &mut TcpStream) {
    let mut sink = [0u8; 512];
    while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
}

fn silent(
    attackers: &mut JoinSet<()>,
    ws_url: &str,
    count: usize,
    stop: &Arc<AtomicBool>,
    counts: &Arc<Counts>,
) -> Result<()> {
    let addr = address(ws_url)?;
    let connecting = Arc::new(Semaphore::new(256));
    for _ in 0..count {
        let (stop, counts, connecting) = (stop.clone(), counts.clone(), connecting.clone());
        attackers.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let permit = connecting.acquire().await;
                let opened = upgrade(addr).await;
                drop(permit);
                match opened {
                    Ok((101, mut tcp)) => {
                        Counts::add(&counts.taken);
                        until_closed(&mut tcp).await;
                        Counts::add(&counts.closed);
                    }
                    Ok((503, _)) => {
                        Counts::add(&counts.refused);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    _ => {
                        Counts::add(&counts.other);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
    Ok(())
}

async fn deaf(
    attackers: &mut JoinSet<()>,
    args: &Args,
    ws_url: &str,
    stop: &Arc<AtomicBool>,
    counts: &Arc<Counts>,
) -> Result<()> {
    let signer = load::signer();
    // Subscribed as any user agent would; from here on they never read.
    let agents = load::subscribe(ws_url, args.connections, 256, Some(&signer), None).await?;
    counts.taken.fetch_add(agents.len() as u64, Ordering::Relaxed);
    let targets: Vec<String> = agents.iter().take(args.deaf_targets).map(|a| a.endpoint.clone()).collect();
    let requests = Arc::new(load::requests(&targets, &signer, 3900, 3600)?);
    let held = Arc::new(std::sync::Mutex::new(agents));
    let client = PushClient::new(ClientConfig::default());
    let senders = 16;
    let period = Duration::from_secs_f64(senders as f64 / args.deaf_rate);
    for s in 0..senders {
        let (client, requests, stop, counts, held) =
            (client.clone(), requests.clone(), stop.clone(), counts.clone(), held.clone());
        attackers.spawn(async move {
            let _held = held;
            let mut ticker = tokio::time::interval(period);
            let mut i = s;
            while !stop.load(Ordering::Relaxed) {
                ticker.tick().await;
                let request = tidings_sender::duplicate(&requests[i % requests.len()]);
                match client.send(request).await {
                    Ok(response) if response.status == 201 => Counts::add(&counts.accepted),
                    Ok(response) if response.status == 429 || response.status == 503 => {
                        Counts::add(&counts.refused)
                    }
                    _ => Counts::add(&counts.other),
                }
                i += senders;
            }
        });
    }
    Ok(())
}

/// The head of a POST that would be accepted (a real endpoint, a valid VAPID signature),
/// for a body of `length` bytes, or chunked without one.
async fn post_head(ws_url: &str, length: Option<u64>) -> Result<(SocketAddr, Vec<u8>)> {
    let signer = load::signer();
    let agent = load::subscribe(ws_url, 1, 1, Some(&signer), None).await?.pop().context("an agent")?;
    let request = load::requests(std::slice::from_ref(&agent.endpoint), &signer, 100, 60)?
        .pop()
        .context("a request")?;
    let addr = address(ws_url)?;
    let mut head = format!("POST {} HTTP/1.1\r\nHost: {addr}\r\n", request.uri().path());
    for (name, value) in request.headers() {
        if name != http::header::CONTENT_LENGTH {
            head.push_str(&format!("{name}: {}\r\n", value.to_str()?));
        }
    }
    match length {
        Some(length) => head.push_str(&format!("Content-Length: {length}\r\n\r\n")),
        None => head.push_str("Transfer-Encoding: chunked\r\n\r\n"),
    }
    Ok((addr, head.into_bytes()))
}

async fn trickle(
    attackers: &mut JoinSet<()>,
    count: usize,
    ws_url: &str,
    stop: &Arc<AtomicBool>,
    counts: &Arc<Counts>,
) -> Result<()> {
    let (addr, head) = post_head(ws_url, Some(4096)).await?;
    let head = Arc::new(head);
    let source = own_address();
    println!("  trickling from {source}{}", loopback_note(source));
    for n in 0..count {
        let (stop, counts, head) = (stop.clone(), counts.clone(), head.clone());
        attackers.spawn(async move {
            // Spread over the first second, as many clients would be.
            tokio::time::sleep(Duration::from_millis((n % 1000) as u64)).await;
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut tcp) = connect_from(source, addr).await else {
                    Counts::add(&counts.other);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                };
                if tcp.write_all(&head).await.is_err() {
                    Counts::add(&counts.other);
                    continue;
                }
                Counts::add(&counts.taken);
                // A byte a second until the node answers.
                let (mut reader, mut writer) = tcp.split();
                let answer = first_status(&mut reader);
                let drip = async {
                    loop {
                        if writer.write_all(b"x").await.is_err() {
                            return;
                        }
                        counts.bytes.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                };
                let status = tokio::select! { status = answer => status, () = drip => None };
                match status {
                    Some(408) => Counts::add(&counts.closed),
                    Some(503) => {
                        // Trickling, not flooding: a refused client tries again a second later.
                        Counts::add(&counts.refused);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    _ => Counts::add(&counts.other),
                }
            }
        });
    }
    Ok(())
}

async fn huge(
    attackers: &mut JoinSet<()>,
    count: usize,
    ws_url: &str,
    stop: &Arc<AtomicBool>,
    counts: &Arc<Counts>,
) -> Result<()> {
    let (addr, announced) = post_head(ws_url, Some(1_000_000_000)).await?;
    let (_, chunked) = post_head(ws_url, None).await?;
    let heads = Arc::new([announced, chunked]);
    for n in 0..count {
        let (stop, counts, heads) = (stop.clone(), counts.clone(), heads.clone());
        attackers.spawn(async move {
            let chunk = vec![0u8; 64 * 1024];
            let mut chunked_chunk = format!("{:x}\r\n", chunk.len()).into_bytes();
            chunked_chunk.extend_from_slice(&chunk);
            chunked_chunk.extend_from_slice(b"\r\n");
            let mut round = n;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let head = &heads[round % 2];
                let body = if round % 2 == 0 { &chunk } else { &chunked_chunk };
                let Ok(mut tcp) = TcpStream::connect(addr).await else {
                    Counts::add(&counts.other);
                    continue;
                };
                if tcp.write_all(head).await.is_err() {
                    continue;
                }
                Counts::add(&counts.taken);
                let (mut reader, mut writer) = tcp.split();
                let answer = first_status(&mut reader);
                let flood = async {
                    while writer.write_all(body).await.is_ok() {
                        counts.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    }
                };
                let status = tokio::select! { status = answer => status, () = flood => None };
                match status {
                    Some(413) => Counts::add(&counts.refused),
                    None => Counts::add(&counts.closed),
                    _ => Counts::add(&counts.other),
                }
            }
        });
    }
    Ok(())
}

/// This machine's address on its default route (no packet is sent to find it); loopback
/// when it has none.
fn own_address() -> IpAddr {
    let found = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|socket| socket.connect("192.0.2.1:9").and_then(|()| socket.local_addr()));
    found.map_or(IpAddr::from([127, 0, 0, 1]), |a| a.ip())
}

fn loopback_note(source: IpAddr) -> &'static str {
    if source.is_loopback() { " (loopback: the per-address limits do not apply)" } else { "" }
}

/// A TCP connection to `addr` from `source`.
async fn connect_from(source: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket =
        if source.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

fn registrations(
    attackers: &mut JoinSet<()>,
    total: usize,
    ws_url: &str,
    stop: &Arc<AtomicBool>,
    counts: &Arc<Counts>,
) {
    let source = own_address();
    println!("  registering from {source}{}", loopback_note(source));
    // Bound to this machine's own address, a connection to 127.0.0.1 comes from it.
    let (url, stop, counts) = (ws_url.to_owned(), stop.clone(), counts.clone());
    attackers.spawn(async move {
        let mut tried = 0;
        'users: while tried < total && !stop.load(Ordering::Relaxed) {
            let Ok(connection) = Connection::open_from(&url, Some(source)).await else {
                Counts::add(&counts.other);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Ok(mut client) = Client::hello(connection, None).await else {
                // A hello beyond the new-users limit is closed with 1013.
                Counts::add(&counts.closed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            while tried < total && !stop.load(Ordering::Relaxed) {
                tried += 1;
                match client.register(load::channel_id(), None).await {
                    Ok(_) => Counts::add(&counts.taken),
                    Err(tidings_agent::ClientError::Status(_)) => {
                        Counts::add(&counts.refused);
                        continue 'users;
                    }
                    Err(_) => {
                        Counts::add(&counts.other);
                        continue 'users;
                    }
                }
            }
        }
    });
}

fn report(attack: Attack, counts: &Counts, latencies: &[Vec<f64>; 3], usage: &Usage) {
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (taken, refused, closed, other, bytes, accepted) = (
        get(&counts.taken),
        get(&counts.refused),
        get(&counts.closed),
        get(&counts.other),
        get(&counts.bytes),
        get(&counts.accepted),
    );
    let line = match attack {
        Attack::Silent => {
            format!("upgraded {taken}, refused (503) {refused}, closed by the node {closed}, other {other}")
        }
        Attack::Deaf => format!(
            "deaf user agents {taken}; messages sent to them: accepted {accepted}, refused (429/503) {refused}, other {other}"
        ),
        Attack::Trickle => format!(
            "POSTs started {taken}: 408 {closed}, 503 at once {refused}, other {other}; bytes trickled {bytes}"
        ),
        Attack::Huge => format!(
            "POSTs started {taken}: 413 {refused}, cut off {closed}, other {other}; {:.1} GiB written into the attacker's sockets (most never read: the node closes at the limit)",
            bytes as f64 / 1073741824.0
        ),
        Attack::Registrations => format!(
            "channels registered {taken}, registers refused {refused}, hellos refused {closed}, other {other}"
        ),
    };
    println!("  attack: {line}");
    let mib = |b: u64| b as f64 / 1048576.0;
    for (p, name) in PHASES.iter().enumerate() {
        let rss_max = usage.rss[p].iter().max().copied().unwrap_or(0);
        let rss_last = usage.rss[p].last().copied().unwrap_or(0);
        let fds_max = usage.fds[p].iter().max().copied().unwrap_or(0);
        let fds_last = usage.fds[p].last().copied().unwrap_or(0);
        let mut sorted: Vec<f64> = latencies[p].iter().copied().filter(|l| l.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let failed = latencies[p].len() - sorted.len();
        println!(
            "  {name:>6}: node RSS max {:.1} MiB, at end {:.1} MiB; open files max {fds_max}, at end {fds_last}; probe: {} messages, p50 {:.1} ms, p99 {:.1} ms, failed {failed}",
            mib(rss_max),
            mib(rss_last),
            sorted.len(),
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.99),
        );
    }
}
