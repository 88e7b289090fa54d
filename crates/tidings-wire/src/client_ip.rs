//! Who is asking: the client address that rate limits count, behind reverse proxies too.
//!
//! Behind a proxy every request comes from the proxy's address, so per-address limits
//! would throttle all users together (and one attacker could lock out everyone). The proxy
//! says who its client was in `Forwarded` (RFC 7239) or `X-Forwarded-For`, but any client
//! can send those headers too, so they are read only from peers the operator names as
//! proxies (`--trusted-proxy`), and only as far back as the chain of trusted proxies goes:
//! the address a trusted proxy saw connecting is the client, unless it is itself a trusted
//! proxy. IPv6 clients are counted per /64, the block one subscriber gets: a client can
//! take any address inside it.
//!
//! Pure: addresses and header values in, an address out.

use ipnet::{IpNet, Ipv6Net};
use std::net::IpAddr;

/// Parses a `--trusted-proxy` value: a CIDR block (`10.0.0.0/8`, `fd00::/8`) or one address.
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or a CIDR block (like 10.0.0.0/8 or fd00::/8)"))
}

/// The IPv4 address inside an IPv4-mapped IPv6 address (how a dual-stack listener reports
/// IPv4 peers), or the address itself.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The key a client address is counted under: IPv4 addresses as they are, IPv6 ones by
/// their /64.
pub fn bucket(ip: IpAddr) -> IpAddr {
    match unmapped(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Net::new(v6, 64).map_or(v6, |net| net.trunc().addr())),
        v4 => v4,
    }
}

/// Which header the trusted proxies write the client into. Only that one is read: a proxy
/// that writes one usually passes the other along as the client sent it, and believing both
/// would let a client name any address it likes (and so dodge, or spend another's, limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyHeader {
    /// `X-Forwarded-For`: what nginx, Caddy, Traefik, Envoy and HAProxy's `forwardfor` write.
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239): HAProxy's `option forwarded`, some CDNs.
    Forwarded,
}

impl ProxyHeader {
    /// Parses a `--proxy-header` value: `x-forwarded-for` or `forwarded`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            other => Err(format!("{other:?} is not x-forwarded-for or forwarded")),
        }
    }

    /// The header's name, as requests carry it.
    pub fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }
}

/// The client of a request that came from `peer`, with the values of the proxy `header` it
/// carried (in the order received). The header is believed only from `trusted` peers.
pub fn client<'a>(
    peer: IpAddr,
    header: ProxyHeader,
    values: impl IntoIterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    let peer = unmapped(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(&ip));
    if !is_trusted(peer) {
        return peer;
    }
    let entries = values.into_iter().flat_map(|v| v.split(','));
    let hops: Vec<Option<IpAddr>> = match header {
        ProxyHeader::Forwarded => entries.map(forwarded_for).collect(),
        ProxyHeader::XForwardedFor => entries.map(|h| node(h.trim())).collect(),
    };
    // From the nearest hop back: the first address that is not one of our proxies. An
    // unreadable hop (obfuscated, "unknown", garbage) ends the walk at the last proxy.
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        match hop {
            Some(ip) => {
                client = unmapped(ip);
                if !is_trusted(client) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// The `for=` address of one `Forwarded` element (`for=192.0.2.1;proto=https`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.trim().eq_ignore_ascii_case("for").then(|| node(value.trim().trim_matches('"'))).flatten()
    })
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711`,
/// `2001:db8::1`.
fn node(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    text.rsplit_once(':').and_then(|(ip, port)| port.parse::<u16>().ok().and(ip.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        use ProxyHeader::{Forwarded, XForwardedFor as Xff};
        let proxies = [parse_net("10.0.0.0/8").unwrap(), parse_net("fd00::1").unwrap()];
        let none: [&str; 0] = [];
        // Not a proxy: its headers are the client's own claims.
        assert_eq!(client(ip("203.0.113.5"), Xff, ["198.51.100.1"], &proxies), ip("203.0.113.5"));
        // A proxy: the address it saw.
        assert_eq!(client(ip("10.0.0.2"), Xff, ["198.51.100.1"], &proxies), ip("198.51.100.1"));
        // A client's forged entry in front of the real chain changes nothing.
        assert_eq!(
            client(ip("10.0.0.2"), Xff, ["1.2.3.4, 198.51.100.1, 10.0.0.3"], &proxies),
            ip("198.51.100.1")
        );
        assert_eq!(
            client(
                ip("10.0.0.2"),
                Forwarded,
                ["for=1.2.3.4", "for=\"[2001:db8::7]:4711\";proto=https"],
                &proxies
            ),
            ip("2001:db8::7")
        );
        assert_eq!(
            client(ip("::ffff:10.0.0.2"), Forwarded, ["for=192.0.2.60;proto=http;by=203.0.113.43"], &proxies),
            ip("192.0.2.60"),
            "mapped addresses are IPv4"
        );
        assert_eq!(client(ip("fd00::1"), Xff, ["198.51.100.9:4711"], &proxies), ip("198.51.100.9"));
        // Garbage or nothing: the proxy itself.
        assert_eq!(client(ip("10.0.0.2"), Forwarded, ["for=unknown"], &proxies), ip("10.0.0.2"));
        assert_eq!(client(ip("10.0.0.2"), Xff, ["not an address"], &proxies), ip("10.0.0.2"));
        assert_eq!(client(ip("10.0.0.2"), Xff, none, &proxies), ip("10.0.0.2"));
        assert_eq!(ProxyHeader::parse("Forwarded"), Ok(Forwarded));
        assert!(ProxyHeader::parse("x-real-ip").is_err());
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        assert_eq!(bucket(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(bucket(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(bucket(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")), ip("2001:db8:1:2::"));
        assert_ne!(bucket(ip("2001:db8:1:2::1")), bucket(ip("2001:db8:1:3::1")));
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("proxy").is_err());
    }
}
