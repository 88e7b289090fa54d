//! What a page sends to subscribe, checked before anything is stored.
//!
//! The endpoint must be an `https://` URL of a public host (push services are only ever
//! reached over TLS, and a hub must not be made to send requests into its own network);
//! a hub running on loopback for development also accepts a local `tidings serve`, over
//! plain HTTP. The keys must decode to a P-256 point and 16 bytes; topics are short names.
//! Everything is bounded so that a hostile page cannot make the hub store much.

use serde::Deserialize;
use tidings_sender::Subscription as Checked;
use tidings_wire::PushSubscription;

/// The longest endpoint accepted (real ones are under 600 characters).
pub const MAX_ENDPOINT_LEN: usize = 2048;
/// Topics per subscription.
pub const MAX_TOPICS: usize = 32;
/// Characters per topic.
pub const MAX_TOPIC_LEN: usize = 64;

/// The body of `POST /api/subscriptions` and of the replace call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeRequest {
    /// `PushSubscription.toJSON()`.
    pub subscription: PushSubscription,
    /// Topics to subscribe to.
    #[serde(default)]
    pub topics: Vec<String>,
    /// The app's signed user token, naming the user (see [`crate::user_token`]).
    #[serde(default)]
    pub user_token: Option<String>,
}

/// Why a subscription is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Whether `host` (as in a URL) is this machine: `localhost` or a loopback address.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `host` (as in a URL) is this machine or a private network: `localhost`, or an
/// IP address that is loopback, private, link-local, unique-local or unspecified.
pub fn is_local(host: &str) -> bool {
    if is_loopback(host) {
        return true;
    }
    match host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified()
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            let first = ip.segments()[0];
            ip.is_loopback() || ip.is_unspecified() || first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80
        }
        Err(_) => false,
    }
}

/// Checks a subscription's endpoint and keys. Endpoints on this machine or a private network
/// are refused unless `allow_local` (a hub that is itself on loopback, for development with
/// a local `tidings serve`): otherwise anyone could make the hub send requests to services
/// inside its network. There, plain `http://` is accepted too.
pub fn check_subscription(subscription: &PushSubscription, allow_local: bool) -> Result<(), Refused> {
    if subscription.endpoint.len() > MAX_ENDPOINT_LEN {
        return Err(Refused(format!("the endpoint is longer than {MAX_ENDPOINT_LEN} characters")));
    }
    let checked = Checked::from_json(subscription).map_err(|e| Refused(e.to_string()))?;
    let endpoint = checked.endpoint();
    let local = endpoint.host().is_some_and(is_local);
    if local && !allow_local {
        return Err(Refused(
            "the endpoint must be a public push service, not this machine or a private network".into(),
        ));
    }
    if endpoint.scheme_str() != Some("https") && !local {
        return Err(Refused(
            "the endpoint must be an https:// URL (http:// only for a local push service)".into(),
        ));
    }
    Ok(())
}

/// Checks topic names: up to [`MAX_TOPICS`], each 1 to [`MAX_TOPIC_LEN`] characters of
/// letters, digits and `-_.:`. Returns them sorted, without duplicates.
pub fn check_topics(topics: &[String]) -> Result<Vec<String>, Refused> {
    if topics.len() > MAX_TOPICS {
        return Err(Refused(format!("at most {MAX_TOPICS} topics")));
    }
    let mut checked = Vec::with_capacity(topics.len());
    for topic in topics {
        let fine = !topic.is_empty()
            && topic.len() <= MAX_TOPIC_LEN
            && topic.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
        if !fine {
            return Err(Refused(format!(
                "topics are 1 to {MAX_TOPIC_LEN} letters, digits or -_.: (got {:?})",
                topic.chars().take(MAX_TOPIC_LEN + 1).collect::<String>()
            )));
        }
        checked.push(topic.clone());
    }
    checked.sort();
    checked.dedup();
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(endpoint: &str, p256dh: &str, auth: &str) -> PushSubscription {
        serde_json::from_value(serde_json::json!({
            "endpoint": endpoint, "keys": { "p256dh": p256dh, "auth": auth }
        }))
        .unwrap()
    }

    const P256DH: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

    #[test]
    fn public_https_endpoints_and_local_ones_only_for_a_local_hub() {
        let ok =
            |endpoint: &str, local: bool| check_subscription(&sub(endpoint, P256DH, AUTH), local).is_ok();
        assert!(ok("https://fcm.googleapis.com/fcm/send/abc", false));
        for local in
            ["http://127.0.0.1:8080/push/abc", "http://[::1]:8080/push/abc", "http://localhost/push/abc"]
        {
            assert!(ok(local, true), "{local}");
            assert!(!ok(local, false), "{local}");
        }
        for private in [
            "https://10.1.2.3/x",
            "https://192.168.0.1/x",
            "https://169.254.169.254/x",
            "https://[fd00::1]/x",
            "https://0.0.0.0/x",
        ] {
            assert!(!ok(private, false), "{private}");
        }
        assert!(!ok("http://push.example.com/abc", true));
        assert!(!ok("ftp://push.example.com/abc", true));
        let long = format!("https://push.example.com/{}", "a".repeat(MAX_ENDPOINT_LEN));
        assert!(!ok(&long, true));
    }

    #[test]
    fn keys_of_the_right_lengths() {
        assert!(check_subscription(&sub("https://e.example/x", "BCVx", AUTH), false).is_err());
        assert!(check_subscription(&sub("https://e.example/x", P256DH, "AAAA"), false).is_err());
        assert!(check_subscription(&sub("https://e.example/x", P256DH, "not base64!"), false).is_err());
    }

    #[test]
    fn topics_are_short_names() {
        assert_eq!(check_topics(&["b".into(), "a".into(), "b".into()]).unwrap(), ["a", "b"]);
        assert!(check_topics(&["".into()]).is_err());
        assert!(check_topics(&["with space".into()]).is_err());
        assert!(check_topics(&["x".repeat(MAX_TOPIC_LEN + 1)]).is_err());
        assert!(check_topics(&vec!["t".into(); MAX_TOPICS + 1]).is_err());
    }
}
