//! What one anonymous client may hold or create on a node: WebSocket connections and POSTs
//! in progress (each per node and per client address) and new user agents (per address per
//! minute). Pure bookkeeping: the caller gives the client and the time.
//!
//! Addresses are counted whole for IPv4 and by /64 for IPv6 (one household or phone gets a
//! /64). Loopback clients are not limited per address: they are tests, benchmarks, or a
//! reverse proxy on the same host, behind which every client would share one address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long the count of new user agents of an address runs.
pub const NEW_USER_WINDOW: Duration = Duration::from_secs(60);

/// The caps; 0 turns one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// WebSocket connections open on the node.
    pub connections: usize,
    /// WebSocket connections open from one client address.
    pub connections_per_address: usize,
    /// User agents one client address may create per minute.
    pub new_users_per_address: usize,
    /// POSTs in progress on the node (each may hold a body of up to `--max-body` while it
    /// arrives).
    pub posts: usize,
    /// POSTs in progress from one client address: a share of the node's, so that one
    /// address trickling bodies cannot take them all.
    pub posts_per_address: usize,
}

/// Why a client was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The node holds its `--max-connections`.
    Connections,
    /// The client's address holds its connections.
    ConnectionsPerAddress,
    /// The client's address created its new user agents for this minute.
    NewUsersPerAddress,
    /// The node has its `--max-concurrent-posts` in progress.
    Posts,
    /// The client's address has its POSTs in progress.
    PostsPerAddress,
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Connections => "connections",
            Self::ConnectionsPerAddress => "connections_per_address",
            Self::NewUsersPerAddress => "new_users_per_address",
            Self::Posts => "concurrent_posts",
            Self::PostsPerAddress => "posts_per_address",
        }
    }
}

/// A client as the limits count it: by its address (its /64 for IPv6), or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client(Option<IpAddr>);

impl Client {
    /// A client that connected directly from `address`: loopback is not counted.
    pub fn direct(address: IpAddr) -> Self {
        let bucket = tidings_wire::client_ip::bucket(address);
        Self((!bucket.is_loopback()).then_some(bucket))
    }

    /// A client a trusted proxy named: counted whatever its address, loopback included (a
    /// client can make a proxy that passes its headers along name any address, and
    /// loopback must not be a way around the limits).
    pub fn named(address: IpAddr) -> Self {
        Self(Some(tidings_wire::client_ip::bucket(address)))
    }
}

/// Places held at once (connections, POSTs in progress), capped for the node and per
/// client address.
#[derive(Debug)]
struct Pool {
    cap: usize,
    cap_per_address: usize,
    held: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

impl Pool {
    fn new(cap: usize, cap_per_address: usize) -> Self {
        Self { cap, cap_per_address, held: AtomicUsize::new(0), per_address: Mutex::default() }
    }

    /// Takes a place for `client`; `Err(true)` when the node's cap is reached, `Err(false)`
    /// when the address's is.
    fn take(&self, client: Client) -> Result<(), bool> {
        let held = self.held.fetch_add(1, Ordering::Relaxed);
        if self.cap > 0 && held >= self.cap {
            self.held.fetch_sub(1, Ordering::Relaxed);
            return Err(true);
        }
        if let Some(address) = client.0 {
            let mut counts = lock(&self.per_address);
            let n = counts.entry(address).or_default();
            if self.cap_per_address > 0 && *n >= self.cap_per_address {
                self.held.fetch_sub(1, Ordering::Relaxed);
                return Err(false);
            }
            *n += 1;
        }
        Ok(())
    }

    fn give_back(&self, client: Client) {
        self.held.fetch_sub(1, Ordering::Relaxed);
        if let Some(address) = client.0 {
            let mut counts = lock(&self.per_address);
            if let Some(n) = counts.get_mut(&address) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&address);
                }
            }
        }
    }
}

/// The counts behind the caps, shared by every connection and request of the node.
#[derive(Debug)]
pub struct Limits {
    caps: Caps,
    connections: Pool,
    posts: Pool,
    /// Per address: when its current window started, and the users created in it.
    new_users: Mutex<HashMap<IpAddr, (Instant, usize)>>,
}

/// An admitted connection's place in the counts, given back when it is dropped; it also
/// counts the new user agents its client creates.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<Limits>,
    client: Client,
}

impl Slot {
    /// Whether this connection's client may create one more user agent at `now`; counts
    /// it if so.
    pub fn new_user(&self, now: Instant) -> Result<(), Refusal> {
        match self.client.0 {
            Some(address) => self.limits.new_user(address, now),
            None => Ok(()),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limits.connections.give_back(self.client);
    }
}

/// A POST's place in the counts while it is in progress.
#[derive(Debug)]
pub struct PostSlot {
    limits: Arc<Limits>,
    client: Client,
}

impl Drop for PostSlot {
    fn drop(&mut self) {
        self.limits.posts.give_back(self.client);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Limits {
    /// Counts nothing yet.
    pub fn new(caps: Caps) -> Arc<Self> {
        Arc::new(Self {
            caps,
            connections: Pool::new(caps.connections, caps.connections_per_address),
            posts: Pool::new(caps.posts, caps.posts_per_address),
            new_users: Mutex::default(),
        })
    }

    /// Admits a new connection from `client`, or says which cap it would pass.
    pub fn connect(self: &Arc<Self>, client: Client) -> Result<Slot, Refusal> {
        match self.connections.take(client) {
            Ok(()) => Ok(Slot { limits: self.clone(), client }),
            Err(true) => Err(Refusal::Connections),
            Err(false) => Err(Refusal::ConnectionsPerAddress),
        }
    }

    /// Admits a POST from `client`, or says which cap it would pass.
    pub fn post(self: &Arc<Self>, client: Client) -> Result<PostSlot, Refusal> {
        match self.posts.take(client) {
            Ok(()) => Ok(PostSlot { limits: self.clone(), client }),
            Err(true) => Err(Refusal::Posts),
            Err(false) => Err(Refusal::PostsPerAddress),
        }
    }

    /// Whether the counted `address` may create one more user agent at `now`; counts it if so.
    fn new_user(&self, address: IpAddr, now: Instant) -> Result<(), Refusal> {
        let cap = self.caps.new_users_per_address;
        if cap == 0 {
            return Ok(());
        }
        let mut windows = lock(&self.new_users);
        if windows.len() > 10_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < NEW_USER_WINDOW);
        }
        let (start, n) = windows.entry(address).or_insert((now, 0));
        if now.duration_since(*start) >= NEW_USER_WINDOW {
            (*start, *n) = (now, 0);
        }
        if *n >= cap {
            return Err(Refusal::NewUsersPerAddress);
        }
        *n += 1;
        Ok(())
    }

    /// Connections open on the node.
    pub fn open(&self) -> usize {
        self.connections.held.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(connections: usize, per_address: usize, new_users: usize) -> Caps {
        Caps {
            connections,
            connections_per_address: per_address,
            new_users_per_address: new_users,
            posts: 0,
            posts_per_address: 0,
        }
    }

    fn direct(address: &str) -> Client {
        Client::direct(address.parse().unwrap())
    }

    #[test]
    fn connections_are_capped_per_node_and_per_address_and_given_back() {
        let limits = Limits::new(caps(3, 2, 0));
        let (a, b) = (direct("203.0.113.7"), direct("198.51.100.1"));
        let first = limits.connect(a).unwrap();
        let _second = limits.connect(a).unwrap();
        assert_eq!(limits.connect(a).unwrap_err(), Refusal::ConnectionsPerAddress);
        let _third = limits.connect(b).unwrap();
        assert_eq!(limits.connect(b).unwrap_err(), Refusal::Connections);
        assert_eq!(limits.open(), 3, "refused connections are not counted");
        drop(first);
        assert!(limits.connect(a).is_ok(), "a closed connection frees its place");
    }

    #[test]
    fn ipv6_counts_by_64_and_loopback_is_not_limited_per_address() {
        let limits = Limits::new(caps(0, 1, 0));
        let _one = limits.connect(direct("2001:db8:1:2::1")).unwrap();
        assert!(limits.connect(direct("2001:db8:1:2:ffff::9")).is_err());
        assert!(limits.connect(direct("2001:db8:1:3::1")).is_ok());
        let _mapped = limits.connect(direct("::ffff:203.0.113.9")).unwrap();
        assert!(limits.connect(direct("203.0.113.9")).is_err(), "a mapped address is the IPv4 one");
        let local: Vec<_> = (0..5).map(|_| limits.connect(direct("127.0.0.1")).unwrap()).collect();
        assert_eq!(local.len(), 5);
    }

    #[test]
    fn new_users_per_address_per_minute() {
        let limits = Limits::new(caps(0, 0, 2));
        let a = limits.connect(direct("203.0.113.7")).unwrap();
        let also_a = limits.connect(direct("203.0.113.7")).unwrap();
        let start = Instant::now();
        assert!(a.new_user(start).is_ok());
        assert!(also_a.new_user(start + Duration::from_secs(1)).is_ok());
        assert_eq!(a.new_user(start + Duration::from_secs(59)), Err(Refusal::NewUsersPerAddress));
        let b = limits.connect(direct("203.0.113.8")).unwrap();
        assert!(b.new_user(start).is_ok(), "another address");
        assert!(a.new_user(start + NEW_USER_WINDOW).is_ok(), "a new minute");
        let local = limits.connect(direct("127.0.0.1")).unwrap();
        // A loopback address that a trusted proxy names is counted like any other.
        let named = limits.connect(Client::named("127.0.0.1".parse().unwrap())).unwrap();
        assert!(named.new_user(start).is_ok() && named.new_user(start).is_ok());
        assert_eq!(named.new_user(start), Err(Refusal::NewUsersPerAddress));
        assert!((0..10).all(|_| local.new_user(start).is_ok()), "loopback is not counted");
    }

    #[test]
    fn posts_are_capped_per_node_and_per_address_and_given_back() {
        let limits = Limits::new(Caps { posts: 3, posts_per_address: 2, ..caps(0, 0, 0) });
        let (a, b) = (direct("203.0.113.7"), direct("198.51.100.1"));
        let first = limits.post(a).unwrap();
        let _second = limits.post(a).unwrap();
        assert_eq!(limits.post(a).unwrap_err(), Refusal::PostsPerAddress, "one address takes its share only");
        let _third = limits.post(b).unwrap();
        assert_eq!(limits.post(b).unwrap_err(), Refusal::Posts);
        drop(first);
        assert!(limits.post(a).is_ok(), "a finished POST frees its place");
        let _connection = limits.connect(a).unwrap();
        assert_eq!(limits.open(), 1, "POSTs and connections are counted apart");
        // Loopback is not limited per address, but still by the node's cap.
        let limits = Limits::new(Caps { posts: 3, posts_per_address: 1, ..caps(0, 0, 0) });
        let local: Vec<_> = (0..3).map(|_| limits.post(direct("127.0.0.1")).unwrap()).collect();
        assert_eq!(limits.post(direct("127.0.0.1")).unwrap_err(), Refusal::Posts);
        drop(local);
        let named = Client::named("127.0.0.1".parse().unwrap());
        let _held = limits.post(named).unwrap();
        assert_eq!(
            limits.post(named).unwrap_err(),
            Refusal::PostsPerAddress,
            "a named loopback client is counted"
        );
    }
}
