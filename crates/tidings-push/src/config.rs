//! The push service's settings. Every one has a default that works on a laptop; the CLI
//! fills them from flags, `TIDINGS_*` environment variables and a TOML file.

pub use crate::limits::Caps;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How `tidings serve` runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen, for user agents (WebSocket at `/`) and application servers alike.
    pub listen: SocketAddr,
    /// The origin written into endpoints and required as the VAPID `aud`, e.g.
    /// `https://push.example.com`. Defaults to `http://<listen>`.
    pub public_url: String,
    /// Where the embedded database and the endpoint keys live.
    pub data_dir: PathBuf,
    /// PEM certificate chain and private key, to serve TLS without a reverse proxy.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The largest request body accepted (413 above). RFC 8030 requires at least 4096.
    pub max_body: usize,
    /// The longest TTL honoured, in seconds; longer ones are shortened and the value used
    /// is echoed in the `TTL` response header.
    pub max_ttl: u32,
    /// Pending messages a subscription may hold; a POST beyond it gets 429.
    pub max_pending: usize,
    /// Channels (subscriptions) one user agent may hold; a `register` beyond it is refused.
    /// Firefox uses one per origin that subscribed.
    pub max_channels: usize,
    /// A user agent that makes no contact for this long is forgotten with its channels and
    /// messages (its endpoints answer 410; if it comes back it gets a new uaid and
    /// subscribes again), as autopush drops user agents idle for 60 days.
    pub forget_idle_after: Duration,
    /// How long a POST's body may take to arrive (408 beyond): a sender trickling bytes
    /// would otherwise hold a request slot as long as it likes.
    pub body_timeout: Duration,
    /// Silence after which the kernel starts probing a connection's peer (TCP keepalive);
    /// a peer that vanished without a FIN is gone within about 1.5 times this.
    pub tcp_keepalive: Duration,
    /// How long a new WebSocket may take to say `hello`.
    pub hello_timeout: Duration,
    /// How long a write to a user agent may take; one that does not read is disconnected.
    pub write_timeout: Duration,
    /// Endpoint keys (base64url, the first seals); `None` reads or creates
    /// `<data_dir>/endpoint-keys`.
    pub endpoint_keys: Option<String>,
    /// This node's name in routing entries (multi-node deployments), unique among the nodes
    /// sharing a store.
    pub node_id: String,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` say which client they serve, so
    /// that the per-address limits count clients, not the proxy.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header those proxies name the client in (only that one is read).
    pub proxy_header: tidings_wire::client_ip::ProxyHeader,
    /// Caps on connections, POSTs in progress and new user agents (0 turns one off;
    /// `--max-concurrent-posts` is at least 1).
    pub caps: Caps,
    /// The bearer token of the admin routes (`/admin/…`, which set broadcast versions);
    /// `None` turns them off (they answer 404).
    pub admin_token: Option<Secret>,
    /// A megaphone API to poll for broadcast versions, as autopush does.
    pub megaphone: Option<Megaphone>,
}

/// Where broadcast versions come from when a deployment runs Mozilla's megaphone service
/// (or any API that answers `GET` with `{"broadcasts": {"<id>": "<version>", ...}}`).
#[derive(Debug, Clone)]
pub struct Megaphone {
    /// The URL to `GET`, e.g. `https://megaphone.example.com/v1/broadcasts`.
    pub url: String,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Secret,
    /// How often to ask.
    pub poll_interval: Duration,
}

/// A secret setting (a token). Its `Debug` shows nothing of it, so that printing a
/// configuration can never put it in a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// `<hostname>-<pid>`: unique among nodes on different hosts and containers (where every
/// process may be pid 1), and among processes on one host.
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    format!("{}-{}", if host.is_empty() { "node" } else { host }, std::process::id())
}

impl Config {
    /// The defaults, listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            public_url: format!("http://{listen}"),
            data_dir: PathBuf::from("tidings-data"),
            tls: None,
            max_body: 4096,
            max_ttl: 30 * 24 * 3600,
            max_pending: 1000,
            max_channels: 500,
            body_timeout: Duration::from_secs(10),
            tcp_keepalive: Duration::from_secs(120),
            forget_idle_after: Duration::from_secs(60 * 24 * 3600),
            hello_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            endpoint_keys: None,
            node_id: default_node_id(),
            trusted_proxies: Vec::new(),
            proxy_header: tidings_wire::client_ip::ProxyHeader::default(),
            caps: Caps {
                connections: 100_000,
                connections_per_address: 1_000,
                new_users_per_address: 30,
                posts: 4096,
                posts_per_address: 1024,
            },
            admin_token: None,
            megaphone: None,
        }
    }
}
