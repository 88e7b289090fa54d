//! `tidings-bench soak`: the whole system, run together for a while under load while faults
//! are injected on a seeded schedule, with a ledger that must balance at the end.
//!
//! * [`deployment`]: Redis primary and replica, three serve nodes behind a load balancer,
//!   the hub; killed and restarted on demand.
//! * [`agents`]: the user agents (receive, decrypt, record, ack, confirm).
//! * [`senders`]: direct POSTs and hub sends.
//! * [`hostile`]: malformed frames, oversized and trickled bodies.
//! * [`schedule`]: the faults, a pure function of the seed.
//! * [`ledger`]: the books and their verdict, without I/O.
//! * [`trend`]: resource slopes after warm-up, without I/O.
//! * [`report`]: the screen and the JSON.

mod agents;
mod deployment;
mod hostile;
mod ledger;
mod report;
mod schedule;
mod senders;
mod trend;

use crate::hub::{Database, Http, call};
use agents::{Control, Registered};
use anyhow::{Context as _, Result, bail};
use deployment::{Deployment, Plan};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ledger::Ledger;
use schedule::{Fault, Rng};
use senders::{HubAudience, HubSender, Target};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use trend::Sample;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Minutes to run (faults after a warm-up, then a calm tail).
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// The seed of the fault schedule and of every random choice [default: the time].
    #[arg(long)]
    seed: Option<u64>,
    /// User agents, spread over the nodes.
    #[arg(long, default_value_t = 3000)]
    agents: usize,
    /// Direct POSTs a second.
    #[arg(long, default_value_t = 40.0)]
    rate: f64,
    /// Seconds between hub sends.
    #[arg(long, default_value_t = 2.0)]
    hub_every: f64,
    /// Share of the user agents subscribed at the hub too.
    #[arg(long, default_value_t = 0.25)]
    hub_share: f64,
    /// Run the hub on PostgreSQL: the server's URL (a database of the run's own is made
    /// there and dropped after) [default: the embedded store].
    #[arg(long, value_name = "URL")]
    hub_postgres: Option<String>,
    /// Fault kinds to leave out of the run (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    without: Vec<schedule::Kind>,
    /// Write the report as JSON here too.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

/// What every task of the run shares: the clock and the books.
pub struct Shared {
    pub seed: u64,
    epoch: Instant,
    ledger: Mutex<Ledger>,
}

impl Shared {
    /// Seconds since the run began.
    pub fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// Writes in the ledger, with the time.
    pub fn ledger(&self, write: impl FnOnce(&mut Ledger, f64)) {
        let at = self.now();
        write(&mut self.ledger.lock().expect("ledger"), at);
    }

    /// Records a violation seen outright.
    pub fn violation(&self, kind: &'static str, detail: String) {
        self.ledger(|l, _| l.violation(kind, detail));
    }
}

const TOPICS: usize = 4;

/// Runs the soak; fails (non-zero exit) on any ledger violation.
pub fn run(args: &Args) -> Result<()> {
    let seed = args.seed.unwrap_or_else(|| crate::load::now() ^ u64::from(std::process::id()));
    let _ = rlimit::increase_nofile_limit(65536);
    let dir = std::env::temp_dir().join(format!("tidings-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(async {
        let database = match &args.hub_postgres {
            Some(server) => Some(Database::create(server).await?),
            None => None,
        };
        let result = soak(args, seed, dir.clone(), database.as_ref().map(|d| d.url.clone())).await;
        if let Some(database) = database {
            database.drop().await?;
        }
        result
    });
    let _ = std::fs::remove_dir_all(&dir);
    if result? > 0 {
        bail!("the ledger does not balance (seed {seed})");
    }
    Ok(())
}

/// A JWT for the hub's `user_token` (HS256 with the hub's user-token secret).
fn user_token(secret: &[u8], user: &str, jti: &str) -> String {
    use tidings_crypto::b64;
    let header = b64::encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({"sub": user, "jti": jti, "exp": crate::load::now() + 3600});
    let signing_input = format!("{header}.{}", b64::encode(claims.to_string().as_bytes()));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let signature = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", b64::encode(signature.as_ref()))
}

/// Registers the user agents over the nodes, and the hub's share of them at the hub.
async fn populate(
    args: &Args,
    deployment: &Deployment,
    http: &Http,
    signer: &tidings_crypto::vapid::VapidSigner,
    seed: u64,
) -> Result<(Vec<Arc<Registered>>, HubAudience, usize)> {
    let (_, _, answer) =
        call(http, "GET", &format!("{}/api/vapid-public-key", deployment.hub_url), &[], String::new())
            .await?;
    let hub_key: serde_json::Value = serde_json::from_str(&answer)?;
    let hub_key = hub_key["publicKey"].as_str().context("the hub's key")?.to_owned();
    let direct_key = signer.key().public_key_base64();
    let mut rng = Rng::new(seed ^ 0x5eed);
    let nodes = deployment.ports.len();
    let mut registered: Vec<Registered> = Vec::with_capacity(args.agents);
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..args.agents {
        let on_hub = rng.unit() < args.hub_share;
        let (url, direct_key, hub_key) =
            (deployment.ws_url(index % nodes), direct_key.clone(), hub_key.clone());
        while tasks.len() >= 64 {
            registered.push(tasks.join_next().await.context("task")???);
        }
        tasks.spawn(async move {
            let hub_key = on_hub.then_some(hub_key.as_str());
            agents::register(&url, index as u32, index % nodes, &direct_key, hub_key).await
        });
    }
    while let Some(done) = tasks.join_next().await {
        registered.push(done?.context("registering a user agent")?);
    }
    registered.sort_by_key(|a| a.index);

    // The hub's share subscribes through the browser API: topics for each, a user for
    // every other one (so that a user has two subscriptions).
    let secret = deployment.hub_command(&["keys", "--user-token-secret"])?;
    let secret = secret
        .lines()
        .find_map(|l| l.strip_prefix("User-token secret (HS256): "))
        .context("the user-token secret")?;
    let secret = tidings_crypto::b64::decode(secret.trim())?;
    let url = &deployment.hub_url;
    let (_, headers, body) = call(http, "GET", &format!("{url}/api/session"), &[], String::new()).await?;
    let cookie = headers.get("set-cookie").and_then(|v| v.to_str().ok()).context("session cookie")?;
    let cookie = cookie.split(';').next().unwrap_or_default().to_owned();
    let csrf: serde_json::Value = serde_json::from_str(&body)?;
    let csrf = csrf["csrfToken"].as_str().context("csrf token")?.to_owned();
    let mut members = Vec::new();
    for agent in registered.iter().filter(|a| a.hub.is_some()) {
        let k = members.len();
        let mut topics = vec![format!("t{}", rng.below(TOPICS as u64))];
        if rng.below(2) == 0 {
            topics.push(format!("t{}", rng.below(TOPICS as u64)));
            topics.dedup();
        }
        let user = (k % 2 == 0).then(|| format!("u{}", k / 4));
        let mut body = serde_json::json!({"subscription": agent.hub.as_ref().expect("filtered").json(), "topics": topics});
        if let Some(user) = &user {
            body["user_token"] = user_token(&secret, user, &format!("soak-{k}")).into();
        }
        let headers = [
            ("content-type", "application/json"),
            ("origin", url.as_str()),
            ("cookie", cookie.as_str()),
            ("x-tidings-csrf", csrf.as_str()),
        ];
        let (status, _, answer) =
            call(http, "POST", &format!("{url}/api/subscriptions"), &headers, body.to_string()).await?;
        if status != 201 {
            bail!("the hub answered {status} to a subscription: {answer}");
        }
        members.push((agent.index, topics, user));
    }
    let users = members.len().div_ceil(4).max(1);
    Ok((registered.into_iter().map(Arc::new).collect(), HubAudience { members }, users))
}

async fn soak(args: &Args, seed: u64, dir: PathBuf, hub_store: Option<String>) -> Result<usize> {
    let seconds = args.minutes * 60.0;
    let plan = schedule::schedule(seed, seconds, 3, &args.without);
    let (warm_up, calm) = schedule::phases(seconds);
    println!(
        "soak: {} min, seed {seed}, {} user agents, {}/s direct, a hub send every {} s, hub on {}",
        args.minutes,
        args.agents,
        args.rate,
        args.hub_every,
        if hub_store.is_some() { "PostgreSQL" } else { "the embedded store" }
    );
    let mut deployment =
        Deployment::start(Plan { dir: dir.clone(), hub_store, hub_concurrency: 64 }, 3).await?;
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    let signer = crate::load::signer();
    let key = deployment.hub_command(&["api-key", "create", "--name", "soak"])?;
    let (registered, audience, users) = populate(args, &deployment, &http, &signer, seed).await?;
    println!(
        "  {} user agents registered on 3 nodes, {} of them subscribed at the hub",
        registered.len(),
        audience.members.len()
    );

    let shared = Arc::new(Shared { seed, epoch: Instant::now(), ledger: Mutex::new(Ledger::default()) });
    let urls: Arc<Vec<String>> = Arc::new((0..3).map(|n| deployment.ws_url(n)).collect());
    let mut controls = Vec::new();
    let mut agent_tasks = tokio::task::JoinSet::new();
    for agent in &registered {
        let (tx, rx) = mpsc::unbounded_channel();
        controls.push(tx);
        agent_tasks.spawn(agents::run(agent.clone(), urls.clone(), shared.clone(), rx));
    }
    let endpoint_path = registered[0].direct.endpoint.replace(&deployment.public_url, "");
    let registered = Arc::new(registered);
    let stop = Arc::new(AtomicBool::new(false));
    let direct = tokio::spawn(senders::direct(
        registered.clone(),
        signer.clone(),
        args.rate,
        shared.clone(),
        stop.clone(),
    ));
    let hub = Arc::new(HubSender {
        http: http.clone(),
        url: deployment.hub_url.clone(),
        auth: format!("Bearer {}", key.trim()),
        audience,
        shared: shared.clone(),
        next: AtomicU64::new(0),
        open: AtomicU64::new(0),
    });
    tokio::spawn(hub.clone().run(Duration::from_secs_f64(args.hub_every), TOPICS, users, stop.clone()));

    // Faults, in order, with resource samples every five seconds meanwhile.
    let mut samples: BTreeMap<String, Vec<(u32, Sample)>> = BTreeMap::new();
    let sample = |deployment: &Deployment, samples: &mut BTreeMap<String, Vec<(u32, Sample)>>| {
        let at = shared.now();
        for (name, pid, dir) in deployment.processes() {
            if let Some((rss, fds, disk)) = deployment::measure(pid, dir.as_deref()) {
                samples.entry(name).or_default().push((pid, Sample { at, rss, fds, disk }));
            }
        }
    };
    let mut hostile = Hostile { endpoint_path, outcomes: BTreeMap::new() };
    let mut done = Vec::new();
    let mut rng = Rng::new(seed ^ 0xfa17);
    let mut pending = plan.iter().peekable();
    while shared.now() < seconds {
        let next_sample = shared.now() + 5.0;
        while let Some(planned) = pending.next_if(|p| p.at <= next_sample) {
            tokio::time::sleep(Duration::from_secs_f64((planned.at - shared.now()).max(0.0))).await;
            let from = shared.now();
            let recovered =
                inject(planned.fault, &mut deployment, &hub, &controls, &mut rng, &shared, &mut hostile)
                    .await?;
            shared.ledger(|l, at| l.fault(from, at.max(from + recovered) + 10.0));
            println!("  {:6.1} s  {} ({:.1} s)", from, planned.fault.name(), shared.now() - from);
            done.push((from, planned.fault));
        }
        tokio::time::sleep(Duration::from_secs_f64((next_sample - shared.now()).clamp(0.0, 5.0))).await;
        tokio::task::block_in_place(|| sample(&deployment, &mut samples));
    }

    // Stop sending, let every hub send finish and every stored message arrive.
    stop.store(true, Ordering::Relaxed);
    direct.await??;
    let end_sending = shared.now();
    let deadline = Instant::now() + Duration::from_secs(180);
    while hub.open.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut last = (u64::MAX, Instant::now());
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let verdict = shared.ledger.lock().expect("ledger").check(shared.now());
        let outstanding =
            verdict.violations.iter().filter(|v| v.kind == "lost" || v.kind == "never acked").count() as u64;
        if outstanding != last.0 {
            last = (outstanding, Instant::now());
        }
        if outstanding == 0 && last.1.elapsed() > Duration::from_secs(3)
            || last.1.elapsed() > Duration::from_secs(30)
        {
            break;
        }
    }
    for control in &controls {
        let _ = control.send(Control::Stop);
    }
    while agent_tasks.join_next().await.is_some() {}
    let end = shared.now();
    let verdict = shared.ledger.lock().expect("ledger").check(end);
    let report = report::Report {
        seed,
        args,
        plan: &done,
        verdict: &verdict,
        samples: &samples,
        warm_up,
        calm,
        end_sending,
        end,
        hostile: &hostile.outcomes,
    };
    report.print();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report.json())?)?;
    }
    Ok(verdict.violations.len())
}

/// The hostile client's target (a real endpoint's path) and what it was answered.
struct Hostile {
    endpoint_path: String,
    outcomes: BTreeMap<String, usize>,
}

/// Injects one fault; returns how many seconds its recovery takes at least (for the
/// latency windows).
async fn inject(
    fault: Fault,
    deployment: &mut Deployment,
    hub: &Arc<HubSender>,
    controls: &[mpsc::UnboundedSender<Control>],
    rng: &mut Rng,
    shared: &Shared,
    hostile: &mut Hostile,
) -> Result<f64> {
    let pick =
        |rng: &mut Rng, fraction: f64| controls.iter().filter(|_| rng.unit() < fraction).collect::<Vec<_>>();
    match fault {
        Fault::KillNode { node, down } => {
            deployment.kill_node(node);
            tokio::time::sleep(Duration::from_secs_f64(down)).await;
            tokio::task::block_in_place(|| deployment.restart_node(node))?;
            Ok(down)
        }
        Fault::RestartRedis { down } => {
            let from = shared.now();
            deployment.primary.kill();
            tokio::time::sleep(Duration::from_secs_f64(down)).await;
            tokio::task::block_in_place(|| deployment.primary.restart())?;
            // Until the replica is linked again, writes wait for it and fail: still down.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !deployment.replica.cli(&["info", "replication"]).contains("master_link_status:up")
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            shared.ledger(|l, at| l.outage(from, at + 2.0));
            Ok(shared.now() - from)
        }
        Fault::KillHub { down } => {
            hub.send(Target::Everyone).await?;
            tokio::time::sleep(Duration::from_millis(50 + rng.below(250))).await;
            deployment.kill_hub();
            tokio::time::sleep(Duration::from_secs_f64(down)).await;
            tokio::task::block_in_place(|| deployment.start_hub())?;
            Ok(down)
        }
        Fault::Storm { fraction } => {
            for control in pick(rng, fraction) {
                let _ = control.send(Control::Reconnect);
            }
            Ok(5.0)
        }
        Fault::StopReading { fraction, seconds } => {
            for control in pick(rng, fraction) {
                let _ = control.send(Control::StopReading(Duration::from_secs_f64(seconds)));
            }
            Ok(seconds)
        }
        Fault::Hostile => {
            let node = rng.below(deployment.ports.len() as u64) as usize;
            let port = deployment.ports[node];
            let outcomes = hostile::attack(port, &hostile.endpoint_path, 20).await;
            for (what, count) in outcomes {
                *hostile.outcomes.entry(what).or_default() += count;
            }
            if deployment.nodes[node]
                .as_ref()
                .and_then(|s| s.pid)
                .is_some_and(|pid| deployment::measure(pid, None).is_none())
            {
                shared.violation("crash", format!("node {node} died under the hostile client"));
            }
            Ok(15.0)
        }
    }
}
