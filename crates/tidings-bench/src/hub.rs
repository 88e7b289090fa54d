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
    /// Run the hubs on PostgreSQL: the server's URL (a database of the benchmark's own is
    /// made there, and dropped after) [default: the embedded store].
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Hub processes sharing the send (PostgreSQL only).
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// Also time the admin page (logged in), with this many subscriptions stored.
    #[arg(long)]
    admin: bool,
    /// Skip `tidings broadcast` (when only the hub's figures are wanted).
    #[arg(long)]
    no_broadcast: bool,
}

pub(crate) type Http = Client<HttpConnector, Full<Bytes>>;

pub(crate) async fn call(
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
pub(crate) fn start_hub(dir: &Path, port: u16, concurrency: usize, store: Option<&str>) -> Result<Child> {
    let mut child = Command::new(tidings_binary()?)
        .args(["hub", "--listen", &format!("127.0.0.1:{port}"), "--browser-rate", "10000000"])
        .args([
            "--new-subscriptions-per-session",
            "100000000",
            "--new-subscriptions-per-address",
            "100000000",
        ])
        .args(["--concurrency", &concurrency.to_string()])
        .args(store.map(|url| ["--store", url]).into_iter().flatten())
        .args(["--admin-secret-file"])
        .arg(dir.parent().unwrap_or(dir).join("hub.admin"))
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
pub(crate) struct Session {
    http: Http,
    url: String,
    pub cookie: Arc<String>,
    pub token: Arc<String>,
    lines: Arc<Vec<String>>,
}

impl Session {
    /// POSTs every subscription, `subscribers` at a time, each expecting `status`; seconds.
    pub(crate) async fn post_all(&self, subscribers: usize, status: u16) -> Result<f64> {
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

/// A database of the benchmark's own on a PostgreSQL server, dropped at the end.
pub(crate) struct Database {
    server: String,
    name: String,
    pub url: String,
}

impl Database {
    pub(crate) async fn create(server: &str) -> Result<Self> {
        use sqlx::Connection as _;
        let name = format!("tidings_bench_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(server).await.context("connecting to PostgreSQL")?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await?;
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await?;
        let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
        Ok(Self { server: server.to_owned(), url: format!("{base}/{name}"), name })
    }

    pub(crate) async fn drop(self) -> Result<()> {
        use sqlx::Connection as _;
        let mut admin = sqlx::PgConnection::connect(&self.server).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&mut admin)
            .await?;
        Ok(())
    }
}

/// Hub processes of one benchmark, on one store.
pub(crate) struct Hubs {
    pub children: Vec<Child>,
    pub urls: Vec<String>,
    pub dir: std::path::PathBuf,
    pub store: Option<String>,
}

impl Hubs {
    pub(crate) fn start(
        dir: &Path,
        instances: usize,
        concurrency: usize,
        store: Option<&str>,
    ) -> Result<Self> {
        std::fs::write(dir.join("hub.admin"), "an admin secret for the benchmark\n")?;
        let mut hubs = Self {
            children: Vec::new(),
            urls: Vec::new(),
            dir: dir.to_owned(),
            store: store.map(Into::into),
        };
        for i in 0..instances {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let data = if i == 0 { dir.join("hub") } else { dir.join(format!("hub-{i}")) };
            hubs.children.push(start_hub(&data, port, concurrency, store)?);
            hubs.urls.push(format!("http://127.0.0.1:{port}"));
        }
        Ok(hubs)
    }

    /// `tidings hub <args>` on the first hub's store; its output.
    pub(crate) fn subcommand(&self, args: &[&str]) -> Result<String> {
        let mut command = Command::new(tidings_binary()?);
        command.arg("hub").args(args);
        match &self.store {
            Some(url) => command.args(["--store", url]),
            None => command.arg("--data-dir").arg(self.dir.join("hub")),
        };
        let out = command.output()?;
        if !out.status.success() {
            bail!("tidings hub {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?)
    }
}

impl Drop for Hubs {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A browser session with the first hub, for the list at `list`.
pub(crate) async fn session(http: &Http, url: &str, lines: Vec<String>) -> Result<Session> {
    let (_, headers, body) = call(http, "GET", &format!("{url}/api/session"), &[], String::new()).await?;
    let cookie = headers.get("set-cookie").and_then(|v| v.to_str().ok()).context("session cookie")?;
    let cookie = Arc::new(cookie.split(';').next().unwrap_or_default().to_owned());
    let token: serde_json::Value = serde_json::from_str(&body)?;
    let token = Arc::new(token["csrfToken"].as_str().context("csrf token")?.to_owned());
    Ok(Session { http: http.clone(), url: url.to_owned(), cookie, token, lines: Arc::new(lines) })
}

/// Logs in to the admin page and times `rounds` views of it: (median, slowest).
async fn admin_page(http: &Http, url: &str, rounds: usize) -> Result<(Duration, Duration)> {
    let form = [("content-type", "application/x-www-form-urlencoded"), ("origin", url)];
    let secret = "secret=an+admin+secret+for+the+benchmark".to_owned();
    let (status, headers, _) = call(http, "POST", &format!("{url}/admin/login"), &form, secret).await?;
    let cookie = headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("tidings_admin="))
        .with_context(|| format!("admin login answered {status}"))?;
    let cookie = cookie.split(';').next().unwrap_or_default().to_owned();
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let (status, _, page) =
            call(http, "GET", &format!("{url}/admin"), &[("cookie", &cookie)], String::new()).await?;
        if status != 200 || !page.contains("Recent sends") {
            bail!("the admin page answered {status}");
        }
        times.push(started.elapsed());
    }
    times.sort();
    Ok((times[rounds / 2], times[rounds - 1]))
}

async fn measure(args: &Args, dir: &Path) -> Result<()> {
    if args.instances > 1 && args.postgres.is_none() {
        bail!("several hub processes share a PostgreSQL database: give --postgres");
    }
    let database = match &args.postgres {
        Some(server) => Some(Database::create(server).await?),
        None => None,
    };
    let result = measure_on(args, dir, database.as_ref().map(|d| d.url.as_str())).await;
    if let Some(database) = database {
        database.drop().await?;
    }
    result
}

async fn measure_on(args: &Args, dir: &Path, store: Option<&str>) -> Result<()> {
    let (sink_port, received) = sink()?;
    let list = dir.join("subscriptions.jsonl");
    write_list(&list, sink_port, args.count)?;
    let hubs = Hubs::start(dir, args.instances, args.concurrency, store)?;
    let url = hubs.urls[0].clone();
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    println!(
        "hub on {}, {} process{}",
        if store.is_some() { "PostgreSQL" } else { "the embedded store" },
        args.instances,
        if args.instances > 1 { "es" } else { "" }
    );

    // A browser session, then every subscription through the browser API.
    let lines: Vec<String> = std::fs::read_to_string(&list)?.lines().map(str::to_owned).collect();
    let session = session(&http, &url, lines).await?;
    for (what, status) in [("subscribe requests", 201), ("unchanged re-posts", 200)] {
        let seconds = session.post_all(args.subscribers, status).await?;
        println!(
            "  {} {what} ({} in flight) in {seconds:.1} s: {:.0}/s",
            args.count,
            args.subscribers,
            args.count as f64 / seconds
        );
    }
    if args.admin {
        let (median, slowest) = admin_page(&http, &url, 21).await?;
        println!(
            "  admin page with {} subscriptions: median {median:.1?}, slowest {slowest:.1?} (21 views)",
            args.count
        );
    }

    // One send to everyone, from the REST call to the last outcome recorded.
    let key = hubs.subcommand(&["api-key", "create", "--name", "bench"])?.trim().to_owned();
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
    drop(hubs);
    if args.no_broadcast {
        return Ok(());
    }

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
