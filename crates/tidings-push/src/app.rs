//! What every connection and request shares.

use crate::broadcast;
use crate::config::Config;
use crate::limits::{Client, Limits};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::token::TokenKeys;
use crate::vapid_cache::VapidCache;
use std::net::IpAddr;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// The push service's shared state.
pub struct App<S> {
    /// Settings.
    pub config: Config,
    /// Where users, channels and messages live, and how this node reaches the others sharing
    /// them (a [`tidings_store::Backend`]).
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
    /// Connections, POSTs in progress and new user agents, counted against their caps.
    pub limits: Arc<Limits>,
    /// The current version of every broadcast this node knows.
    pub broadcasts: RwLock<broadcast::Table>,
    /// SHA-256 of the admin token, when the admin routes are enabled (the token itself is
    /// not kept: comparing digests takes the same time whatever the presented token is).
    pub admin_token: Option<[u8; 32]>,
}

impl<S> App<S> {
    /// Shared state for a store and its settings.
    pub fn new(config: Config, store: S, keys: TokenKeys) -> Self {
        let audience = origin(&config.public_url);
        let metrics = Metrics::new(&config.node_id);
        let limits = Limits::new(config.caps);
        let admin_token = config.admin_token.as_ref().map(|token| crate::admin::digest(token.expose()));
        Self {
            broadcasts: RwLock::default(),
            admin_token,
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

impl<S> App<S> {
    /// The client a request from `peer` comes from, as the limits count it: the one a
    /// trusted proxy names in its header (`--proxy-header`), or else `peer`.
    pub fn client(&self, peer: IpAddr, headers: &http::HeaderMap) -> Client {
        let proxy_header = self.config.proxy_header;
        let from_trusted_proxy = headers.contains_key(proxy_header.name())
            && self
                .config
                .trusted_proxies
                .iter()
                .any(|net| net.contains(&peer) || net.contains(&tidings_wire::client_ip::bucket(peer)));
        if !from_trusted_proxy {
            return Client::direct(peer);
        }
        let values = headers.get_all(proxy_header.name()).iter().filter_map(|v| v.to_str().ok());
        // Counted whatever address it is named by (the header may come from the client
        // itself, through a proxy that passes it along).
        Client::named(tidings_wire::client_ip::client(
            peer,
            proxy_header,
            values,
            &self.config.trusted_proxies,
        ))
    }

    /// The node's broadcast versions, to read. Never held across an await.
    pub fn versions(&self) -> RwLockReadGuard<'_, broadcast::Table> {
        self.broadcasts.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a version this node learned (set here, announced by another node, or reloaded):
    /// if it is news, counts it and wakes the connections that follow broadcasts. The table
    /// is written before they are woken (see [`crate::registry::Mailbox::follow_broadcasts`]).
    pub fn apply_broadcast(&self, id: &str, version: &str) -> Result<bool, broadcast::Invalid> {
        let changed = self.broadcasts.write().unwrap_or_else(|p| p.into_inner()).set(id, version)?;
        if changed {
            self.metrics.broadcast_changes.inc();
            self.registry.broadcasts_changed();
        }
        Ok(changed)
    }
}

/// Why a broadcast version could not be set.
#[derive(Debug, thiserror::Error)]
pub enum SetBroadcastError {
    /// The id or version is refused.
    #[error(transparent)]
    Invalid(#[from] broadcast::Invalid),
    /// Storing or announcing it failed; nothing changed on this node.
    #[error(transparent)]
    Store(#[from] tidings_store::StoreError),
}

impl<S: tidings_store::Backend> App<S> {
    /// Sets a broadcast's version (from the admin route or a megaphone API): stored first, so
    /// that it survives a restart, announced to the other nodes, then what the store holds is
    /// told to the connections here. Whether the broadcast's version changed on this node.
    pub async fn set_broadcast(&self, id: &str, version: &str) -> Result<bool, SetBroadcastError> {
        self.versions().admits(id, version)?;
        let before = self.versions().version(id).map(str::to_owned);
        self.store.set_broadcast(id, version).await?;
        // Announced even when the store already had it: a retry after a failed announcement
        // (or a node that missed one) then still reaches every node. Receiving nodes read the
        // versions again and find what they already have, if so.
        self.store.announce_broadcasts().await?;
        // What the store holds now, not `version`: another set (here, or on another node)
        // may have stored a newer one meanwhile, and taking ours last would go back to it.
        self.reload_broadcasts().await?;
        Ok(self.versions().version(id) != before.as_deref())
    }

    /// Reads every version from the store and takes those that are news: when a node of a
    /// shared store announces that it set one, and now and then in case an announcement was
    /// missed (pub/sub delivers at most once).
    pub async fn reload_broadcasts(&self) -> Result<(), tidings_store::StoreError> {
        for (id, version) in self.store.broadcasts().await? {
            if let Err(e) = self.apply_broadcast(&id, &version) {
                tracing::warn!(id, error = %e, "a stored broadcast is refused");
            }
        }
        Ok(())
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
