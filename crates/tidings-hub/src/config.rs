//! The hub's settings, with defaults that work on a laptop.

use crate::model::Pruning;
use ipnet::IpNet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tidings_sender::connect::{ConnectPolicy, PushHosts, Resolve, SystemResolver, is_loopback_host};

/// Where the hub keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// The embedded database in the data directory, with the keys beside it (one process).
    Embedded,
    /// A PostgreSQL database (its URL), with the keys in it, shared by several processes.
    Postgres(String),
}

/// Everything the hub needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The origin browsers reach the hub at (`https://app.example.com`), without a trailing
    /// slash: the origin the browser-facing routes accept, and the default `navigate` URL.
    pub public_url: String,
    /// Further origins whose pages may call the browser-facing routes (an app served from
    /// another origin than the hub).
    pub allowed_origins: Vec<String>,
    /// Where the database and the keys live (with the embedded store).
    pub data_dir: PathBuf,
    /// The embedded store, or PostgreSQL.
    pub store: StoreChoice,
    /// The VAPID `sub` claim: a `mailto:` or `https:` contact for push services.
    pub vapid_subject: String,
    /// A directory of the app's own pages (with its service worker) served at `/`.
    pub static_dir: Option<PathBuf>,
    /// Serve the demo chat app at `/` (instead of a static directory).
    pub demo: bool,
    /// Browser-facing requests allowed per second from one IP address (bursts of twice as many).
    pub browser_rate: u32,
    /// Requests in flight for sends to topics and everyone.
    pub concurrency: usize,
    /// How long to wait for a push service's answer.
    pub push_timeout: Duration,
    /// Extra CA certificates trusted for push services (a private `tidings serve`).
    pub extra_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` headers name the client.
    pub trusted_proxies: Vec<IpNet>,
    /// The header those proxies name the client in (only that one is read).
    pub proxy_header: tidings_wire::client_ip::ProxyHeader,
    /// Only these push-service hosts, when set (subscriptions and sends alike).
    pub push_hosts: Option<PushHosts>,
    /// How push-service host names are resolved.
    pub resolver: Arc<dyn Resolve>,
    /// New subscriptions one browser session may register per hour.
    pub new_per_session: u32,
    /// New subscriptions one client address (IPv6: one /64) may register per hour.
    pub new_per_address: u32,
    /// When subscriptions that keep failing are deleted.
    pub pruning: Pruning,
    /// Requests in flight for sends to users and subscriptions (their own lane).
    pub targeted_concurrency: usize,
    /// How long one send may spend on one push service.
    pub host_budget: Duration,
    /// How long a dispatcher's claim on recipients holds without renewal: how soon the
    /// recipients of a hub process that died are counted interrupted.
    pub claim_lease: Duration,
    /// How long requests under way get to finish when the hub stops.
    pub shutdown_grace: Duration,
}

impl Config {
    /// The defaults, listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            public_url: format!("http://{listen}"),
            allowed_origins: Vec::new(),
            data_dir: PathBuf::from("tidings-hub-data"),
            store: StoreChoice::Embedded,
            vapid_subject: "mailto:hub@localhost".into(),
            static_dir: None,
            demo: false,
            browser_rate: 20,
            concurrency: 256,
            push_timeout: Duration::from_secs(30),
            extra_roots: Vec::new(),
            trusted_proxies: Vec::new(),
            proxy_header: tidings_wire::client_ip::ProxyHeader::default(),
            push_hosts: None,
            resolver: Arc::new(SystemResolver),
            new_per_session: 10,
            new_per_address: 200,
            pruning: Pruning { failures: 10, failing_for: 24 * 3600 },
            targeted_concurrency: 64,
            host_budget: Duration::from_secs(15 * 60),
            claim_lease: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
        }
    }

    /// Whether pages from `origin` may use the browser-facing routes.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        origin == self.public_url || self.allowed_origins.iter().any(|o| o == origin)
    }

    /// Whether subscriptions may name endpoints on this machine or a private network: only
    /// in local-development mode, for a hub that is itself on loopback (with a local
    /// `tidings serve`).
    pub fn local_endpoints_allowed(&self) -> bool {
        self.public_url
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.host().map(is_loopback_host))
            .unwrap_or(false)
    }

    /// Where the hub may send: public addresses only (any in local-development mode), and
    /// only the `--push-hosts` when given.
    pub fn connect_policy(&self) -> ConnectPolicy {
        ConnectPolicy { allow_private: self.local_endpoints_allowed(), hosts: self.push_hosts.clone() }
    }

    /// Whether the hub is reached over TLS (so its cookies are marked `Secure`).
    pub fn is_https(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

/// Checks an origin (`--public-url`, `--allowed-origin`) and writes it as browsers send it
/// in `Origin`: scheme, lower-case host, and the port only when it is not the scheme's
/// default. A path, query or user name is an error: the browser API compares origins, so
/// a hub configured with one would refuse every request.
pub fn origin(text: &str) -> Result<String, String> {
    let fail =
        |why: &str| Err(format!("{text:?} is not an origin ({why}); give one like https://app.example.com"));
    let Ok(uri) = text.trim().parse::<http::Uri>() else { return fail("not a URL") };
    let default_port = match uri.scheme_str() {
        Some("https") => 443,
        Some("http") => 80,
        _ => return fail("the scheme must be http or https"),
    };
    let Some(authority) = uri.authority() else { return fail("no host") };
    if authority.as_str().contains('@') {
        return fail("no user name or password");
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return fail("no path or query: the pages' origin only");
    }
    let host = authority.host().to_ascii_lowercase();
    if host.is_empty() {
        return fail("no host");
    }
    match authority.port_u16() {
        Some(port) if port != default_port => {
            Ok(format!("{}://{host}:{port}", uri.scheme_str().unwrap_or("https")))
        }
        _ => Ok(format!("{}://{host}", uri.scheme_str().unwrap_or("https"))),
    }
}

#[cfg(test)]
mod tests {
    use super::origin;

    #[test]
    fn origins_are_normalized_or_refused() {
        assert_eq!(origin("https://App.Example.COM").unwrap(), "https://app.example.com");
        assert_eq!(origin("https://app.example.com/").unwrap(), "https://app.example.com");
        assert_eq!(origin("https://app.example.com:443").unwrap(), "https://app.example.com");
        assert_eq!(origin("http://app.example.com:80/").unwrap(), "http://app.example.com");
        assert_eq!(origin("http://127.0.0.1:8090").unwrap(), "http://127.0.0.1:8090");
        assert_eq!(origin("http://[::1]:8090").unwrap(), "http://[::1]:8090");
        for bad in [
            "https://app.example.com/app",
            "https://app.example.com/?x=1",
            "https://user:pw@app.example.com",
            "ftp://app.example.com",
            "app.example.com",
            "",
            "https://",
        ] {
            assert!(origin(bad).is_err(), "{bad:?}");
        }
    }
}
