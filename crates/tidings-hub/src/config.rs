//! The hub's settings, with defaults that work on a laptop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Where the database and the keys live.
    pub data_dir: PathBuf,
    /// The VAPID `sub` claim: a `mailto:` or `https:` contact for push services.
    pub vapid_subject: String,
    /// A directory of the app's own pages (with its service worker) served at `/`.
    pub static_dir: Option<PathBuf>,
    /// Serve the demo chat app at `/` (instead of a static directory).
    pub demo: bool,
    /// Browser-facing requests allowed per second from one IP address (bursts of twice as many).
    pub browser_rate: u32,
    /// Requests in flight while sending, in total.
    pub concurrency: usize,
    /// How long to wait for a push service's answer.
    pub push_timeout: Duration,
    /// Extra CA certificates trusted for push services (a private `tidings serve`).
    pub extra_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
}

impl Config {
    /// The defaults, listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            public_url: format!("http://{listen}"),
            allowed_origins: Vec::new(),
            data_dir: PathBuf::from("tidings-hub-data"),
            vapid_subject: "mailto:hub@localhost".into(),
            static_dir: None,
            demo: false,
            browser_rate: 20,
            concurrency: 256,
            push_timeout: Duration::from_secs(30),
            extra_roots: Vec::new(),
        }
    }

    /// Whether pages from `origin` may use the browser-facing routes.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        origin == self.public_url || self.allowed_origins.iter().any(|o| o == origin)
    }

    /// Whether subscriptions may name endpoints on this machine or a private network: only
    /// for a hub that is itself on loopback (development with a local `tidings serve`).
    pub fn local_endpoints_allowed(&self) -> bool {
        self.public_url
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.host().map(crate::subscribe::is_loopback))
            .unwrap_or(false)
    }

    /// Whether the hub is reached over TLS (so its cookies are marked `Secure`).
    pub fn is_https(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}
