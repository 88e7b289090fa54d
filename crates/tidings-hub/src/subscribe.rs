//! What a page sends to subscribe, checked before anything is stored.
//!
//! The endpoint must be an `https://` URL (push services are only ever reached over TLS),
//! except on loopback, where a local `tidings serve` for development speaks plain HTTP; the
//! keys must decode to a P-256 point and 16 bytes; topics are short names. Everything is
//! bounded so that a hostile page cannot make the hub store much.

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

/// Whether `host` (as in a URL) is a loopback address or `localhost`.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks a subscription's endpoint and keys.
pub fn check_subscription(subscription: &PushSubscription) -> Result<(), Refused> {
    if subscription.endpoint.len() > MAX_ENDPOINT_LEN {
        return Err(Refused(format!("the endpoint is longer than {MAX_ENDPOINT_LEN} characters")));
    }
    let checked = Checked::from_json(subscription).map_err(|e| Refused(e.to_string()))?;
    let endpoint = checked.endpoint();
    let secure = endpoint.scheme_str() == Some("https");
    if !secure && !endpoint.host().is_some_and(is_loopback) {
        return Err(Refused("the endpoint must be an https:// URL (http:// only on loopback)".into()));
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
    fn https_everywhere_but_loopback() {
        assert!(check_subscription(&sub("https://fcm.googleapis.com/fcm/send/abc", P256DH, AUTH)).is_ok());
        assert!(check_subscription(&sub("http://127.0.0.1:8080/push/abc", P256DH, AUTH)).is_ok());
        assert!(check_subscription(&sub("http://[::1]:8080/push/abc", P256DH, AUTH)).is_ok());
        assert!(check_subscription(&sub("http://localhost/push/abc", P256DH, AUTH)).is_ok());
        assert!(check_subscription(&sub("http://push.example.com/abc", P256DH, AUTH)).is_err());
        assert!(check_subscription(&sub("ftp://push.example.com/abc", P256DH, AUTH)).is_err());
        let long = format!("https://push.example.com/{}", "a".repeat(MAX_ENDPOINT_LEN));
        assert!(check_subscription(&sub(&long, P256DH, AUTH)).is_err());
    }

    #[test]
    fn keys_of_the_right_lengths() {
        assert!(check_subscription(&sub("https://e.example/x", "BCVx", AUTH)).is_err());
        assert!(check_subscription(&sub("https://e.example/x", P256DH, "AAAA")).is_err());
        assert!(check_subscription(&sub("https://e.example/x", P256DH, "not base64!")).is_err());
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
