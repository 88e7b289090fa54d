//! What one anonymous client may hold or create on a node: connections (per node and per
//! client address) and new user agents (per address per minute). Pure bookkeeping: the
//! caller gives the client's address and the time.
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
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Connections => "connections",
            Self::ConnectionsPerAddress => "connections_per_address",
            Self::NewUsersPerAddress => "new_users_per_address",
        }
    }
}

/// The counts behind the caps, shared by every connection of the node.
#[derive(Debug)]
pub struct Limits {
    caps: Caps,
    open: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    /// Per address: when its current window started, and the users created in it.
    new_users: Mutex<HashMap<IpAddr, (Instant, usize)>>,
}

/// An admitted connection's place in the counts, given back when it is dropped; it also
/// counts the new user agents its client creates.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<Limits>,
    /// The client's address as counted (`None` on loopback).
    address: Option<IpAddr>,
}

impl Slot {
    /// Whether this connection's client may create one more user agent at `now`; counts
    /// it if so.
    pub fn new_user(&self, now: Instant) -> Result<(), Refusal> {
        match self.address {
            Some(address) => self.limits.new_user(address, now),
            None => Ok(()),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limits.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(address) = self.address {
            let mut counts = lock(&self.limits.per_address);
            if let Some(n) = counts.get_mut(&address) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&address);
                }
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The address a client is counted under (its /64 for IPv6): `None` for loopback (not
/// limited per address).
fn counted(address: IpAddr) -> Option<IpAddr> {
    let bucket = tidings_wire::client_ip::bucket(address);
    (!bucket.is_loopback()).then_some(bucket)
}

impl Limits {
    /// Counts nothing yet.
    pub fn new(caps: Caps) -> Arc<Self> {
        Arc::new(Self {
            caps,
            open: AtomicUsize::new(0),
            per_address: Mutex::default(),
            new_users: Mutex::default(),
        })
    }

    /// Admits a new connection from `address`, or says which cap it would pass.
    pub fn connect(self: &Arc<Self>, address: IpAddr) -> Result<Slot, Refusal> {
        self.admit(counted(address))
    }

    /// Like [`Limits::connect`], for a client a trusted proxy named: counted whatever its
    /// address, loopback included (a client can make a proxy that passes its headers along
    /// name any address, and loopback must not be a way around the limits).
    pub fn connect_forwarded(self: &Arc<Self>, address: IpAddr) -> Result<Slot, Refusal> {
        self.admit(Some(tidings_wire::client_ip::bucket(address)))
    }

    fn admit(self: &Arc<Self>, counted: Option<IpAddr>) -> Result<Slot, Refusal> {
        let open = self.open.fetch_add(1, Ordering::Relaxed);
        let mut slot = Slot { limits: self.clone(), address: None };
        if self.caps.connections > 0 && open >= self.caps.connections {
            return Err(Refusal::Connections);
        }
        if let Some(address) = counted {
            let mut counts = lock(&self.per_address);
            let n = counts.entry(address).or_default();
            if self.caps.connections_per_address > 0 && *n >= self.caps.connections_per_address {
                return Err(Refusal::ConnectionsPerAddress);
            }
            *n += 1;
            slot.address = Some(address);
        }
        Ok(slot)
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
        self.open.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(connections: usize, per_address: usize, new_users: usize) -> Caps {
        Caps { connections, connections_per_address: per_address, new_users_per_address: new_users }
    }

    #[test]
    fn connections_are_capped_per_node_and_per_address_and_given_back() {
        let limits = Limits::new(caps(3, 2, 0));
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        let b: IpAddr = "198.51.100.1".parse().unwrap();
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
        let _one = limits.connect("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(limits.connect("2001:db8:1:2:ffff::9".parse().unwrap()).is_err());
        assert!(limits.connect("2001:db8:1:3::1".parse().unwrap()).is_ok());
        let _mapped = limits.connect("::ffff:203.0.113.9".parse().unwrap()).unwrap();
        assert!(limits.connect("203.0.113.9".parse().unwrap()).is_err(), "a mapped address is the IPv4 one");
        let local: Vec<_> = (0..5).map(|_| limits.connect("127.0.0.1".parse().unwrap()).unwrap()).collect();
        assert_eq!(local.len(), 5);
    }

    #[test]
    fn new_users_per_address_per_minute() {
        let limits = Limits::new(caps(0, 0, 2));
        let a = limits.connect("203.0.113.7".parse().unwrap()).unwrap();
        let also_a = limits.connect("203.0.113.7".parse().unwrap()).unwrap();
        let start = Instant::now();
        assert!(a.new_user(start).is_ok());
        assert!(also_a.new_user(start + Duration::from_secs(1)).is_ok());
        assert_eq!(a.new_user(start + Duration::from_secs(59)), Err(Refusal::NewUsersPerAddress));
        let b = limits.connect("203.0.113.8".parse().unwrap()).unwrap();
        assert!(b.new_user(start).is_ok(), "another address");
        assert!(a.new_user(start + NEW_USER_WINDOW).is_ok(), "a new minute");
        let local = limits.connect("127.0.0.1".parse().unwrap()).unwrap();
        // A loopback address that a trusted proxy names is counted like any other.
        let named = limits.connect_forwarded("127.0.0.1".parse().unwrap()).unwrap();
        assert!(named.new_user(start).is_ok() && named.new_user(start).is_ok());
        assert_eq!(named.new_user(start), Err(Refusal::NewUsersPerAddress));
        assert!((0..10).all(|_| local.new_user(start).is_ok()), "loopback is not counted");
    }
}
