//! What every connection and request shares.

use crate::config::Config;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::token::TokenKeys;
use crate::vapid_cache::VapidCache;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The push service's shared state.
pub struct App<S> {
    /// Settings.
    pub config: Config,
    /// Where users, channels and messages live.
    pub store: S,
    /// The user agents connected to this node.
    pub registry: Registry,
    /// Seals and opens endpoint and message tokens.
    pub keys: TokenKeys,
    /// Counters and histograms.
    pub metrics: Metrics,
    /// The VAPID audience requests must name: the origin of the public URL.
    pub audience: String,
    /// VAPID tokens already verified.
    pub vapid: VapidCache,
    /// Connections and new user agents, counted against their caps.
    pub limits: Arc<Limits>,
    /// One permit per POST in progress ([`Config::max_concurrent_posts`]).
    pub posts: tokio::sync::Semaphore,
}

impl<S> App<S> {
    /// Shared state for a store and its settings.
    pub fn new(config: Config, store: S, keys: TokenKeys) -> Self {
        let audience = origin(&config.public_url);
        let metrics = Metrics::new(&config.node_id);
        let limits = Limits::new(config.caps);
        let posts =
            tokio::sync::Semaphore::new(config.max_concurrent_posts.min(tokio::sync::Semaphore::MAX_PERMITS));
        Self {
            posts,
            limits,
            config,
            store,
            registry: Registry::default(),
            keys,
            metrics,
            audience,
            vapid: VapidCache::default(),
        }
    }
}

/// `scheme://host[:port]` of a URL (everything before the path).
pub fn origin(url: &str) -> String {
    let url = url.trim_end_matches('/');
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest)),
        None => url.to_owned(),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    #[test]
    fn origin_of_public_urls() {
        assert_eq!(super::origin("https://push.example.com/"), "https://push.example.com");
        assert_eq!(super::origin("http://127.0.0.1:8080/base/path"), "http://127.0.0.1:8080");
    }
}
