//! `tidings serve`: the push service, on the embedded store, with no other setup.

use crate::exit::Code;
use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tidings_push::config::{Megaphone, Secret};
use tidings_push::{Config, Server};
use tidings_store::Backend;
use tidings_store::embedded::EmbeddedStore;
use tidings_store::redis::{RedisStore, Replicas};

/// Every option can also be set with the environment variable shown, or as the same name in
/// snake_case in the TOML file given with --config. Flags win over the environment, the
/// environment over the file.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  tidings serve --listen 0.0.0.0:8080 --public-url https://push.example.com\n\n\
Firefox: set dom.push.serverURL to ws://127.0.0.1:8080/ (see docs/push-service.md)."
)]
pub struct ServeArgs {
    /// Address for user agents (WebSocket at /) and application servers [default: 127.0.0.1:8080].
    #[arg(long, env = "TIDINGS_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// The origin written into endpoints and required as the VAPID audience, e.g.
    /// https://push.example.com [default: http://<listen>].
    #[arg(long, env = "TIDINGS_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// Storage: "embedded" (a database in --data-dir), or a Redis URL
    /// (redis://[user:password@]host[:port][/db], rediss:// for TLS) shared by several nodes,
    /// or a comma-separated list of such URLs: the seed nodes of a Redis Cluster
    /// [default: embedded].
    #[arg(long, env = "TIDINGS_STORE", value_name = "embedded|URL[,URL...]")]
    store: Option<String>,
    /// Prefix of every Redis key, so that deployments can share a server [default: tidings].
    #[arg(long, env = "TIDINGS_REDIS_PREFIX", value_name = "PREFIX")]
    redis_prefix: Option<String>,
    /// With Redis: answer 201 (and register a subscription) only once this many replicas of
    /// the primary (of every primary, on a cluster) have the write (Redis WAIT), so that
    /// losing a primary loses nothing accepted [default: 0, the primary alone].
    #[arg(long, env = "TIDINGS_REDIS_REPLICAS", value_name = "COUNT")]
    redis_replicas: Option<u32>,
    /// Milliseconds to wait for --redis-replicas before the write fails with 503 (the
    /// sender retries; the message may then arrive twice) [default: 1000].
    #[arg(long, env = "TIDINGS_REDIS_REPLICA_TIMEOUT", value_name = "MS")]
    redis_replica_timeout: Option<u64>,
    /// For a rediss:// store: trust this PEM CA certificate instead of the system's.
    #[arg(long, env = "TIDINGS_REDIS_CA_FILE", value_name = "FILE")]
    redis_ca_file: Option<PathBuf>,
    /// Where the database and the endpoint keys live [default: ./tidings-data].
    #[arg(long, env = "TIDINGS_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A TOML file with any of these options.
    #[arg(long, env = "TIDINGS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// PEM certificate chain, to serve TLS without a reverse proxy (needs --tls-key).
    #[arg(long, env = "TIDINGS_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "TIDINGS_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// The largest message body accepted, in bytes; at least 4096 [default: 4096].
    #[arg(long, env = "TIDINGS_MAX_BODY", value_name = "BYTES")]
    max_body: Option<usize>,
    /// The longest TTL honoured, in seconds [default: 2592000, 30 days].
    #[arg(long, env = "TIDINGS_MAX_TTL", value_name = "SECONDS")]
    max_ttl: Option<u32>,
    /// Undelivered messages one subscription may hold before POSTs get 429 [default: 1000].
    #[arg(long, env = "TIDINGS_MAX_PENDING", value_name = "COUNT")]
    max_pending: Option<usize>,
    /// Subscriptions (channels) one user agent may hold; a register beyond it is refused
    /// with status 409 (Firefox uses one per origin) [default: 500].
    #[arg(long, env = "TIDINGS_MAX_CHANNELS", value_name = "COUNT")]
    max_channels: Option<usize>,
    /// Seconds after which a user agent that has not connected is forgotten with its
    /// subscriptions and messages (its endpoints answer 410; if it returns it gets a new
    /// uaid and subscribes again) [default: 5184000, 60 days].
    #[arg(long, env = "TIDINGS_FORGET_IDLE_AFTER", value_name = "SECONDS")]
    forget_idle_after: Option<u64>,
    /// Seconds a POST's body may take to arrive; a slower sender gets 408 [default: 10].
    #[arg(long, env = "TIDINGS_BODY_TIMEOUT", value_name = "SECONDS")]
    body_timeout: Option<u64>,
    /// POSTs handled at once; beyond, 503 with Retry-After at once [default: 4096].
    #[arg(long, env = "TIDINGS_MAX_CONCURRENT_POSTS", value_name = "COUNT")]
    max_concurrent_posts: Option<usize>,
    /// POSTs one client address (an IPv6 /64) may have in progress, so that one address
    /// trickling bodies cannot hold them all; beyond, 503 with Retry-After at once; loopback
    /// is not counted (0: no cap) [default: 1024].
    #[arg(long, env = "TIDINGS_MAX_POSTS_PER_ADDRESS", value_name = "COUNT")]
    max_posts_per_address: Option<usize>,
    /// WebSocket connections this node holds at most; beyond it new ones get 503 before
    /// the upgrade (0: no cap) [default: 100000].
    #[arg(long, env = "TIDINGS_MAX_CONNECTIONS", value_name = "COUNT")]
    max_connections: Option<usize>,
    /// WebSocket connections one client address (an IPv6 /64) may hold; loopback is not
    /// counted (0: no cap) [default: 1000].
    #[arg(long, env = "TIDINGS_MAX_CONNECTIONS_PER_ADDRESS", value_name = "COUNT")]
    max_connections_per_address: Option<usize>,
    /// New user agents (hellos without a known uaid) one client address may create per
    /// minute; beyond it the connection is closed with 1013, try again later (0: no cap)
    /// [default: 30].
    #[arg(long, env = "TIDINGS_NEW_USERS_PER_ADDRESS", value_name = "COUNT")]
    new_users_per_address: Option<usize>,
    /// A reverse proxy (address or CIDR block, repeatable; comma-separated in the
    /// environment) whose --proxy-header names the client, so that the per-address limits
    /// count clients instead of the proxy; from other peers the header is ignored.
    #[arg(long, env = "TIDINGS_TRUSTED_PROXIES", value_name = "CIDR", value_delimiter = ',')]
    trusted_proxy: Vec<String>,
    /// The header the trusted proxies write the client into; only that one is read (a proxy
    /// passes the other along as the client sent it) [default: x-forwarded-for].
    #[arg(long, env = "TIDINGS_PROXY_HEADER", value_name = "x-forwarded-for|forwarded")]
    proxy_header: Option<String>,
    /// Seconds of silence after which a connection's peer is probed (TCP keepalive, every
    /// eighth of this, four probes): a peer that vanished without closing (a phone off the
    /// network) is disconnected within about 1.5 times this [default: 120].
    #[arg(long, env = "TIDINGS_TCP_KEEPALIVE", value_name = "SECONDS")]
    tcp_keepalive: Option<u64>,
    /// Seconds a new WebSocket has to say hello [default: 10].
    #[arg(long, env = "TIDINGS_HELLO_TIMEOUT", value_name = "SECONDS")]
    hello_timeout: Option<u64>,
    /// Seconds a write to a user agent may take before it counts as not reading and is
    /// disconnected (its messages stay stored) [default: 10].
    #[arg(long, env = "TIDINGS_WRITE_TIMEOUT", value_name = "SECONDS")]
    write_timeout: Option<u64>,
    /// A file of endpoint keys (base64url, one per line; the first seals new endpoints, all
    /// open). The keys may also be given in TIDINGS_ENDPOINT_KEYS
    /// [default: <data-dir>/endpoint-keys, created on first start].
    #[arg(long, env = "TIDINGS_ENDPOINT_KEYS_FILE", value_name = "FILE")]
    endpoint_keys_file: Option<PathBuf>,
    /// This node's name, for multi-node deployments; unique among the nodes sharing a
    /// store (a node refuses to start with the id of a live one) [default: <hostname>-<pid>].
    #[arg(long, env = "TIDINGS_NODE_ID", value_name = "NAME")]
    node_id: Option<String>,
    /// A file holding the bearer token (at least 16 characters) of the admin routes, which
    /// set broadcast versions: PUT /admin/broadcasts/<id> with the version as body, GET
    /// /admin/broadcasts. Without a token the routes are off (404) [default: off;
    /// TIDINGS_ADMIN_TOKEN, the token itself, overrides the file].
    #[arg(long, env = "TIDINGS_ADMIN_TOKEN_FILE", value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// A megaphone API to poll for broadcast versions, as autopush does: GET <URL> answering
    /// {"broadcasts": {"<id>": "<version>", ...}} (Mozilla's megaphone service, or another
    /// tidings serve's /admin/broadcasts); needs a token [default: off].
    #[arg(long, env = "TIDINGS_MEGAPHONE_URL", value_name = "URL")]
    megaphone_url: Option<String>,
    /// A file holding the token sent to the megaphone API as Authorization: Bearer <token>
    /// [TIDINGS_MEGAPHONE_TOKEN, the token itself, overrides the file].
    #[arg(long, env = "TIDINGS_MEGAPHONE_TOKEN_FILE", value_name = "FILE")]
    megaphone_token_file: Option<PathBuf>,
    /// Seconds between two polls of the megaphone API [default: 30].
    #[arg(long, env = "TIDINGS_MEGAPHONE_POLL_INTERVAL", value_name = "SECONDS")]
    megaphone_poll_interval: Option<u64>,
    /// Log filter, e.g. info, debug, tidings_push=debug [default: info].
    #[arg(long, env = "TIDINGS_LOG", value_name = "FILTER")]
    log: Option<String>,
}

/// The TOML file: the same options, in snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    public_url: Option<String>,
    store: Option<String>,
    redis_prefix: Option<String>,
    redis_ca_file: Option<PathBuf>,
    redis_replicas: Option<u32>,
    redis_replica_timeout: Option<u64>,
    data_dir: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    max_body: Option<usize>,
    max_ttl: Option<u32>,
    max_pending: Option<usize>,
    max_channels: Option<usize>,
    forget_idle_after: Option<u64>,
    body_timeout: Option<u64>,
    max_concurrent_posts: Option<usize>,
    max_posts_per_address: Option<usize>,
    max_connections: Option<usize>,
    max_connections_per_address: Option<usize>,
    new_users_per_address: Option<usize>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    proxy_header: Option<String>,
    hello_timeout: Option<u64>,
    tcp_keepalive: Option<u64>,
    write_timeout: Option<u64>,
    endpoint_keys_file: Option<PathBuf>,
    node_id: Option<String>,
    admin_token_file: Option<PathBuf>,
    megaphone_url: Option<String>,
    megaphone_token_file: Option<PathBuf>,
    megaphone_poll_interval: Option<u64>,
    log: Option<String>,
}

pub fn run(args: ServeArgs) -> Result<Code> {
    let started = Instant::now();
    let file = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            toml::from_str::<FileConfig>(&text)
                .with_context(|| format!("{} is not a valid configuration", path.display()))?
        }
        None => FileConfig::default(),
    };
    init_logging(args.log.as_deref().or(file.log.as_deref()).unwrap_or(DEFAULT_LOG))?;
    let store = args.store.clone().or(file.store.clone()).unwrap_or_else(|| "embedded".into());
    let prefix = args.redis_prefix.clone().or(file.redis_prefix.clone()).unwrap_or_else(|| "tidings".into());
    let redis_ca = match args.redis_ca_file.clone().or(file.redis_ca_file.clone()) {
        Some(path) => Some(std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?),
        None => None,
    };
    let replicas = match args.redis_replicas.or(file.redis_replicas) {
        None | Some(0) => None,
        Some(count) => Some(Replicas {
            count,
            timeout: Duration::from_millis(
                args.redis_replica_timeout.or(file.redis_replica_timeout).unwrap_or(1000),
            ),
        }),
    };
    let config = config(args, file)?;
    // Every WebSocket is a file descriptor: use all the process may have.
    if let Ok(limit) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::debug!(limit, "open-file limit");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        if store == "embedded" {
            let embedded =
                EmbeddedStore::open(&config.data_dir.join("store")).context("cannot open the database")?;
            serve_on(config, embedded, "embedded", started).await
        } else if is_redis(&store) {
            let redis = RedisStore::connect(&store, &prefix, redis_ca, replicas)
                .await
                .with_context(|| format!("cannot connect to Redis at {}", redacted(&store)))?;
            serve_on(config, redis, "redis", started).await
        } else {
            bail!(
                "--store must be \"embedded\", a redis:// (or rediss://) URL, or a comma-separated list of \
                 them for a Redis Cluster"
            )
        }
    })
}

async fn serve_on<S: Backend>(config: Config, store: S, kind: &str, started: Instant) -> Result<Code> {
    let (listen, public_url, data_dir) = (config.listen, config.public_url.clone(), config.data_dir.clone());
    let server = Server::bind(config, store).await?;
    tracing::info!(
        listen = %server.local_addr(),
        public_url,
        store = kind,
        data_dir = %data_dir.display(),
        startup_ms = started.elapsed().as_millis() as u64,
        "tidings serve is ready: user agents connect to ws://{listen}/, application servers POST to their endpoints"
    );
    server.run(shutdown_signal()).await;
    Ok(Code::Ok)
}

/// A Redis URL without its password, for messages.
/// The store URL (or list of cluster nodes) without passwords, for messages.
fn redacted(urls: &str) -> String {
    let one = |url: &str| match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://…@{}", &url[at + 1..]),
        _ => url.to_owned(),
    };
    urls.split(',').map(one).collect::<Vec<_>>().join(",")
}

/// Whether `store` is a Redis URL, or a comma-separated list of them (a cluster's nodes).
fn is_redis(store: &str) -> bool {
    store.split(',').all(|url| {
        let url = url.trim();
        url.starts_with("redis://") || url.starts_with("rediss://")
    })
}

fn config(args: ServeArgs, file: FileConfig) -> Result<Config> {
    let listen = args.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let mut config = Config::new(listen);
    if let Some(url) = super::public_url(
        args.public_url.or(file.public_url),
        listen,
        "user agents and senders reach this service at",
    )? {
        config.public_url = url;
    }
    if let Some(dir) = args.data_dir.or(file.data_dir) {
        config.data_dir = dir;
    }
    config.tls = match (args.tls_cert.or(file.tls_cert), args.tls_key.or(file.tls_key)) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => bail!("TLS needs both --tls-cert and --tls-key"),
    };
    if let Some(max_body) = args.max_body.or(file.max_body) {
        if max_body < 4096 {
            bail!(
                "--max-body must be at least 4096: RFC 8030 requires push services to accept 4096-byte messages"
            );
        }
        config.max_body = max_body;
    }
    if let Some(max_ttl) = args.max_ttl.or(file.max_ttl) {
        config.max_ttl = max_ttl;
    }
    if let Some(max_pending) = args.max_pending.or(file.max_pending) {
        if max_pending == 0 {
            bail!("--max-pending must be at least 1");
        }
        config.max_pending = max_pending;
    }
    if let Some(count) = args.max_channels.or(file.max_channels) {
        if count == 0 {
            bail!("--max-channels must be at least 1");
        }
        config.max_channels = count;
    }
    if let Some(seconds) = args.forget_idle_after.or(file.forget_idle_after) {
        // Contact is recorded in whole seconds, at most a second late: with a 1-second period
        // a connected user agent could look idle.
        if seconds < 2 {
            bail!("--forget-idle-after must be at least 2 seconds");
        }
        config.forget_idle_after = Duration::from_secs(seconds);
    }
    if let Some(seconds) = args.body_timeout.or(file.body_timeout) {
        config.body_timeout = Duration::from_secs(seconds.max(1));
    }
    if let Some(count) = args.max_concurrent_posts.or(file.max_concurrent_posts) {
        if count == 0 {
            bail!("--max-concurrent-posts must be at least 1");
        }
        config.caps.posts = count;
    }
    if let Some(count) = args.max_posts_per_address.or(file.max_posts_per_address) {
        config.caps.posts_per_address = count;
    }
    if let Some(count) = args.max_connections.or(file.max_connections) {
        config.caps.connections = count;
    }
    if let Some(count) = args.max_connections_per_address.or(file.max_connections_per_address) {
        config.caps.connections_per_address = count;
    }
    if let Some(count) = args.new_users_per_address.or(file.new_users_per_address) {
        config.caps.new_users_per_address = count;
    }
    let proxies = if args.trusted_proxy.is_empty() { file.trusted_proxies } else { args.trusted_proxy };
    config.trusted_proxies = proxies
        .iter()
        .map(|p| tidings_wire::client_ip::parse_net(p).map_err(|e| anyhow::anyhow!("--trusted-proxy: {e}")))
        .collect::<Result<_>>()?;
    if let Some(header) = args.proxy_header.or(file.proxy_header) {
        config.proxy_header = tidings_wire::client_ip::ProxyHeader::parse(&header)
            .map_err(|e| anyhow::anyhow!("--proxy-header: {e}"))?;
    }
    if let Some(seconds) = args.tcp_keepalive.or(file.tcp_keepalive) {
        config.tcp_keepalive = Duration::from_secs(seconds.max(1));
    }
    if let Some(seconds) = args.hello_timeout.or(file.hello_timeout) {
        config.hello_timeout = Duration::from_secs(seconds.max(1));
    }
    if let Some(seconds) = args.write_timeout.or(file.write_timeout) {
        config.write_timeout = Duration::from_secs(seconds.max(1));
    }
    config.endpoint_keys = match std::env::var("TIDINGS_ENDPOINT_KEYS") {
        Ok(keys) => Some(keys),
        Err(_) => match args.endpoint_keys_file.or(file.endpoint_keys_file) {
            Some(path) => Some(
                std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?,
            ),
            None => None,
        },
    };
    if let Some(node_id) = args.node_id.or(file.node_id) {
        config.node_id = node_id;
    }
    config.admin_token = secret("TIDINGS_ADMIN_TOKEN", args.admin_token_file.or(file.admin_token_file))?;
    if config.admin_token.as_ref().is_some_and(|token| token.expose().chars().count() < 16) {
        bail!("the admin token must be at least 16 characters, so that it cannot be guessed");
    }
    let megaphone_token =
        secret("TIDINGS_MEGAPHONE_TOKEN", args.megaphone_token_file.or(file.megaphone_token_file))?;
    config.megaphone = match (args.megaphone_url.or(file.megaphone_url), megaphone_token) {
        (None, _) => None,
        (Some(_), None) => {
            bail!("--megaphone-url needs a token: --megaphone-token-file or TIDINGS_MEGAPHONE_TOKEN")
        }
        (Some(url), Some(token)) => {
            let uri: http::Uri =
                url.parse().with_context(|| format!("--megaphone-url {url:?} is not a URL"))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                bail!("--megaphone-url must be an http:// or https:// URL");
            }
            let seconds = args.megaphone_poll_interval.or(file.megaphone_poll_interval).unwrap_or(30);
            if seconds == 0 {
                bail!("--megaphone-poll-interval must be at least 1 second");
            }
            Some(Megaphone { url, token, poll_interval: Duration::from_secs(seconds) })
        }
    };
    Ok(config)
}

/// A token: the environment variable `env` (the token itself), or else the file, trimmed.
fn secret(env: &str, file: Option<PathBuf>) -> Result<Option<Secret>> {
    let token = match std::env::var(env) {
        Ok(token) => token,
        Err(_) => match file {
            Some(path) => {
                std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?
            }
            None => return Ok(None),
        },
    };
    let token = token.trim();
    if token.is_empty() {
        bail!("the token in {env} (or its file) is empty");
    }
    Ok(Some(Secret::new(token)))
}

/// The log filter when none is given: our own news, and only the storage engine's warnings
/// (its info lines describe its internals).
pub(crate) const DEFAULT_LOG: &str = "info,fjall=warn,lsm_tree=warn";

pub(crate) fn init_logging(filter: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid log filter {filter:?}"))?;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: closing connections (user agents will reconnect)");
}
