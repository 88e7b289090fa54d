//! Where the client may connect: a guard against being used to reach into private networks.
//!
//! A push endpoint is a URL chosen by whoever registered the subscription, so a server that
//! sends to endpoints it was handed (the hub) can be pointed at its own network: an admin
//! interface on loopback, a cloud metadata service on a link-local address, a database on a
//! private one. Checking the URL's host when the subscription arrives is not enough: a name
//! can resolve to a private address, and resolve differently later (DNS rebinding). So the
//! check is made here, on the addresses actually connected to, after resolution.
//!
//! * [`is_public`]: whether an address is ordinary global unicast, outside every
//!   special-purpose block of the IANA registries (private, loopback, link-local, CGNAT,
//!   benchmarking, documentation, multicast, IPv4-mapped, NAT64, ...).
//! * [`PushHosts`]: an optional allow-list of push-service host patterns.
//! * [`ConnectPolicy`]: both rules together, checked by the hub when a subscription arrives
//!   (a clear refusal early) and by [`Connector`] on every connection (the real guard).
//! * [`Resolve`]: name resolution, replaceable (a fixed table in tests, or to pin hosts).
//!
//! The pure parts take values and return values; [`Connector`] is the thin I/O shell that
//! wraps hyper-util's `HttpConnector`.

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioIo;
use ipnet::{Ipv4Net, Ipv6Net};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use tokio::net::TcpStream;

/// IPv4 blocks that are not ordinary public unicast (IANA IPv4 Special-Purpose Address
/// Registry, plus multicast and the reserved class E). Refusing the few globally reachable
/// anycast entries inside them (AS112, PCP) costs nothing: no push service lives there.
const SPECIAL_V4: &[&str] = &[
    "0.0.0.0/8",       // "this network"
    "10.0.0.0/8",      // private
    "100.64.0.0/10",   // shared address space (carrier-grade NAT)
    "127.0.0.0/8",     // loopback
    "169.254.0.0/16",  // link-local (cloud metadata services live here)
    "172.16.0.0/12",   // private
    "192.0.0.0/24",    // IETF protocol assignments
    "192.0.2.0/24",    // documentation (TEST-NET-1)
    "192.31.196.0/24", // AS112
    "192.52.193.0/24", // AMT
    "192.88.99.0/24",  // deprecated 6to4 relay anycast
    "192.168.0.0/16",  // private
    "192.175.48.0/24", // AS112 direct delegation
    "198.18.0.0/15",   // benchmarking
    "198.51.100.0/24", // documentation (TEST-NET-2)
    "203.0.113.0/24",  // documentation (TEST-NET-3)
    "224.0.0.0/4",     // multicast
    "240.0.0.0/4",     // reserved, and 255.255.255.255 broadcast
];

/// IPv6 blocks inside global unicast (2000::/3) that are not ordinary public addresses
/// (IANA IPv6 Special-Purpose Address Registry). Everything outside 2000::/3 (loopback,
/// unspecified, IPv4-mapped `::ffff:0:0/96`, NAT64 `64:ff9b::/96`, discard `100::/64`,
/// unique-local, link-local, multicast) is refused before this list is consulted.
const SPECIAL_V6: &[&str] = &[
    "2001::/23",     // IETF protocol assignments (Teredo, benchmarking, ORCHID, ...)
    "2001:db8::/32", // documentation
    "2002::/16",     // 6to4: embeds an IPv4 address of any kind
    "3fff::/20",     // documentation
];

static SPECIAL: LazyLock<(Vec<Ipv4Net>, Vec<Ipv6Net>)> = LazyLock::new(|| {
    let v4 = SPECIAL_V4.iter().map(|n| n.parse().expect("a valid IPv4 block")).collect();
    let v6 = SPECIAL_V6.iter().map(|n| n.parse().expect("a valid IPv6 block")).collect();
    (v4, v6)
});

/// Whether `ip` is an ordinary public unicast address: one a push service may have.
pub fn is_public(ip: IpAddr) -> bool {
    let (v4, v6) = &*SPECIAL;
    match ip {
        IpAddr::V4(ip) => !v4.iter().any(|net| net.contains(&ip)),
        IpAddr::V6(ip) => {
            let global_unicast = ip.segments()[0] & 0xe000 == 0x2000;
            global_unicast && !v6.iter().any(|net| net.contains(&ip))
        }
    }
}

/// Whether `host` (as in a URL, IPv6 in brackets or not) names this machine: `localhost`,
/// a `.localhost` name or a loopback address.
pub fn is_loopback_host(host: &str) -> bool {
    let host = bare(host);
    host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A URL host without IPv6 brackets or a final dot.
fn bare(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.')
}

/// An allow-list of push-service hosts: exact names (`fcm.googleapis.com`) or `*.` patterns
/// matching any name below a domain (`*.push.apple.com` matches `web.push.apple.com`, not
/// `push.apple.com` itself). Case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushHosts(Vec<String>);

/// The hosts of the public push services of today's browsers: Chrome, Edge's FCM-based
/// and other Chromium browsers (FCM), Firefox (Mozilla), Safari (Apple) and Edge (WNS).
pub const KNOWN_PUSH_HOSTS: &[&str] =
    &["fcm.googleapis.com", "updates.push.services.mozilla.com", "*.push.apple.com", "*.notify.windows.com"];

/// Why a pattern of [`PushHosts`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("push-host pattern {0:?}: a host name (push.example.com) or *. and a domain (*.example.com)")]
pub struct BadPattern(pub String);

impl PushHosts {
    /// Parses patterns. `known` stands for [`KNOWN_PUSH_HOSTS`].
    pub fn parse<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<Self, BadPattern> {
        let mut hosts = Vec::new();
        for pattern in patterns {
            let pattern = pattern.trim().to_ascii_lowercase();
            if pattern == "known" {
                hosts.extend(KNOWN_PUSH_HOSTS.iter().map(|h| h.to_string()));
                continue;
            }
            let name = pattern.strip_prefix("*.").unwrap_or(&pattern);
            let fine = !name.is_empty()
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !fine {
                return Err(BadPattern(pattern));
            }
            hosts.push(pattern);
        }
        Ok(Self(hosts))
    }

    /// Whether `host` matches one of the patterns.
    pub fn allows(&self, host: &str) -> bool {
        let host = bare(host).to_ascii_lowercase();
        self.0.iter().any(|pattern| match pattern.strip_prefix("*.") {
            Some(domain) => host.strip_suffix(domain).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => host == *pattern,
        })
    }

    /// The patterns.
    pub fn patterns(&self) -> &[String] {
        &self.0
    }
}

/// Why a connection was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The host is not on the allow-list.
    #[error("{0} is not one of the allowed push-service hosts")]
    NotAllowed(String),
    /// The address is loopback, private or otherwise special.
    #[error("{0} is a private or special-purpose address, not a public push service")]
    Private(IpAddr),
    /// Every address the name resolves to is private or special.
    #[error("{host} resolves only to private or special-purpose addresses ({addresses})")]
    ResolvesPrivate {
        /// The name.
        host: String,
        /// What it resolved to.
        addresses: String,
    },
}

/// What the client may connect to.
#[derive(Debug, Clone, Default)]
pub struct ConnectPolicy {
    /// Allow loopback, private and other special addresses (local development, or a
    /// sender run by the operator against its own services). Off: public addresses only.
    pub allow_private: bool,
    /// Only these hosts, when set.
    pub hosts: Option<PushHosts>,
}

impl ConnectPolicy {
    /// Anything: the policy of a sender run by hand (`tidings send` to a local service).
    pub fn any() -> Self {
        Self { allow_private: true, hosts: None }
    }

    /// Public addresses only, optionally of these hosts.
    pub fn public(hosts: Option<PushHosts>) -> Self {
        Self { allow_private: false, hosts }
    }

    /// Checks a URL's host: the allow-list, and for an address literal or a loopback name,
    /// the address rule.
    pub fn check_host(&self, host: &str) -> Result<(), Refused> {
        if let Some(hosts) = &self.hosts
            && !hosts.allows(host)
        {
            return Err(Refused::NotAllowed(bare(host).to_owned()));
        }
        if self.allow_private {
            return Ok(());
        }
        match bare(host).parse::<IpAddr>() {
            Ok(ip) => self.check_ip(ip),
            Err(_) if is_loopback_host(host) => Err(Refused::Private(IpAddr::V6(Ipv6Addr::LOCALHOST))),
            Err(_) => Ok(()),
        }
    }

    /// Checks an address to connect to.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        if self.allow_private || is_public(ip) { Ok(()) } else { Err(Refused::Private(ip)) }
    }

    /// The addresses of `host` that may be connected to; an error when none may.
    pub fn filter(&self, host: &str, addresses: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refused> {
        if self.allow_private || addresses.is_empty() {
            return Ok(addresses);
        }
        let (public, private): (Vec<_>, Vec<_>) = addresses.into_iter().partition(|a| is_public(a.ip()));
        if public.is_empty() {
            let addresses = private.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", ");
            return Err(Refused::ResolvesPrivate { host: host.to_owned(), addresses });
        }
        Ok(public)
    }
}

/// The future of a resolution.
pub type Resolving = Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;

/// Name resolution.
pub trait Resolve: Send + Sync + std::fmt::Debug + 'static {
    /// The addresses of `host`.
    fn resolve(&self, host: &str) -> Resolving;
}

/// The system's resolver (`getaddrinfo`, on tokio's blocking pool).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str) -> Resolving {
        let host = host.to_owned();
        Box::pin(async move { Ok(tokio::net::lookup_host((host, 0)).await?.map(|a| a.ip()).collect()) })
    }
}

/// A fixed table of names and their addresses; other names do not resolve. For tests, and
/// to pin push-service hosts to known addresses.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver(pub HashMap<String, Vec<IpAddr>>);

impl Resolve for StaticResolver {
    fn resolve(&self, host: &str) -> Resolving {
        let found = self.0.get(&host.to_ascii_lowercase()).cloned();
        let host = host.to_owned();
        Box::pin(async move {
            found.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host}: unknown name"))
            })
        })
    }
}

/// The resolver hyper-util's connector calls: resolution, then the policy's filter.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    resolver: Arc<dyn Resolve>,
    policy: Arc<ConnectPolicy>,
}

/// An error of resolution or of the policy, as the connector reports it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let (resolver, policy) = (self.resolver.clone(), self.policy.clone());
        Box::pin(async move {
            let host = name.as_str();
            let addresses = resolver.resolve(host).await?;
            // The connector sets the URL's port on each address.
            let addresses = addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(policy.filter(host, addresses)?.into_iter())
        })
    }
}

/// The TCP connector of [`crate::PushClient`]: the host rule before anything else, then
/// hyper-util's connector with a [`GuardedResolver`], so that only allowed addresses are
/// ever connected to. (hyper-util connects to an address literal without resolving it, so
/// literals are checked here.)
#[derive(Debug, Clone)]
pub struct Connector {
    inner: HttpConnector<GuardedResolver>,
    policy: Arc<ConnectPolicy>,
}

impl Connector {
    /// A connector applying `policy`, resolving with `resolver`.
    pub fn new(policy: ConnectPolicy, resolver: Arc<dyn Resolve>) -> Self {
        let policy = Arc::new(policy);
        let inner = HttpConnector::new_with_resolver(GuardedResolver { resolver, policy: policy.clone() });
        Self { inner, policy }
    }

    /// hyper-util's own settings (timeouts, `TCP_NODELAY`).
    pub fn http(&mut self) -> &mut HttpConnector<GuardedResolver> {
        &mut self.inner
    }
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        if let Err(refused) = self.policy.check_host(uri.host().unwrap_or_default()) {
            return Box::pin(std::future::ready(Err(refused.into())));
        }
        let connecting = self.inner.call(uri);
        Box::pin(async move { connecting.await.map_err(Into::into) })
    }
}

/// The policy's refusal somewhere in an error's chain of causes, if that is why it failed.
pub fn refusal<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(refused) = error.downcast_ref::<Refused>() {
            return Some(refused);
        }
        cause = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn special_purpose_addresses_are_not_public() {
        for private in [
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.255.255",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.251",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:2::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "3fff::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(!is_public(ip(private)), "{private}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "198.20.0.1",
            "2607:f8b0::1",
            "2a00:1450::1",
        ] {
            assert!(is_public(ip(public)), "{public}");
        }
    }

    #[test]
    fn host_patterns() {
        let hosts = PushHosts::parse(["FCM.googleapis.com", "*.push.apple.com"]).unwrap();
        assert!(hosts.allows("fcm.googleapis.com"));
        assert!(hosts.allows("fcm.googleapis.com."));
        assert!(hosts.allows("web.push.apple.com"));
        assert!(hosts.allows("a.b.push.apple.com"));
        assert!(!hosts.allows("push.apple.com"), "a pattern names what is below the domain");
        assert!(!hosts.allows("evilpush.apple.com"));
        assert!(!hosts.allows("fcm.googleapis.com.evil.example"));
        assert!(!hosts.allows("googleapis.com"));
        let known = PushHosts::parse(["known"]).unwrap();
        assert_eq!(known.patterns().len(), KNOWN_PUSH_HOSTS.len());
        assert!(known.allows("updates.push.services.mozilla.com"));
        assert!(known.allows("wns2-par02p.notify.windows.com"));
        for bad in ["", "*.", "*", "a..b", "http://x", "x/y", "*.*.x", "a b"] {
            assert!(PushHosts::parse([bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_policy_checks_hosts_literals_and_resolutions() {
        let public = ConnectPolicy::public(None);
        assert_eq!(public.check_host("push.example"), Ok(()));
        assert_eq!(public.check_host("10.0.0.1"), Err(Refused::Private(ip("10.0.0.1"))));
        assert_eq!(public.check_host("[::1]"), Err(Refused::Private(ip("::1"))));
        assert!(public.check_host("LOCALHOST").is_err());
        assert!(public.check_host("api.localhost").is_err());
        assert_eq!(public.check_host("8.8.8.8"), Ok(()));
        let addresses = |list: &[&str]| list.iter().map(|a| SocketAddr::new(ip(a), 443)).collect::<Vec<_>>();
        assert_eq!(
            public.filter("mixed.example", addresses(&["10.0.0.1", "8.8.8.8"])),
            Ok(addresses(&["8.8.8.8"])),
            "only the public addresses are tried"
        );
        assert!(matches!(
            public.filter("rebound.example", addresses(&["127.0.0.1", "::1"])),
            Err(Refused::ResolvesPrivate { .. })
        ));
        let local = ConnectPolicy::any();
        assert_eq!(local.check_host("127.0.0.1"), Ok(()));
        assert_eq!(local.filter("x", addresses(&["127.0.0.1"])), Ok(addresses(&["127.0.0.1"])));
        let listed = ConnectPolicy::public(Some(PushHosts::parse(["known"]).unwrap()));
        assert_eq!(listed.check_host("fcm.googleapis.com"), Ok(()));
        assert_eq!(listed.check_host("push.example"), Err(Refused::NotAllowed("push.example".into())));
    }
}
