//! What a page sends to subscribe, checked before anything is stored.
//!
//! The endpoint must be an `https://` URL of a public host allowed by the hub's
//! [`ConnectPolicy`] (push services are only ever reached over TLS, and a hub must not be
//! made to send requests into its own network; the same policy guards every connection,
//! after name resolution). A hub in local-development mode also accepts a local
//! `tidings serve`, over plain HTTP. The keys must decode to a P-256 point and 16 bytes;
//! topics are short names. Everything is bounded so that a hostile page cannot make the
//! hub store much.

use serde::{Deserialize, Deserializer};
use tidings_sender::Subscription as Checked;
use tidings_sender::connect::{ConnectPolicy, is_loopback_host, is_public};
use tidings_wire::PushSubscription;

/// The longest endpoint accepted (real ones are under 600 characters).
pub const MAX_ENDPOINT_LEN: usize = 2048;
/// Topics per subscription.
pub const MAX_TOPICS: usize = 32;
/// Characters per topic.
pub const MAX_TOPIC_LEN: usize = 64;

/// The body of `POST /api/subscriptions` (and, with the old subscription's proof, of
/// `replace`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeRequest {
    /// `PushSubscription.toJSON()`.
    pub subscription: PushSubscription,
    /// Topics to subscribe to; omitted: keep the stored ones.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// The app's signed user token, naming the user (see [`crate::user_token`]); omitted:
    /// keep the stored user; `null`: no user.
    #[serde(default, deserialize_with = "present")]
    pub user_token: Option<Option<String>>,
}

/// A member that is present, even as `null` (so that `null` and omitted differ).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Why a subscription is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Checks a subscription's endpoint and keys against the hub's policy: an endpoint on this
/// machine or a private network is refused unless the policy allows private addresses
/// (local-development mode), and then only there is plain `http://` accepted.
pub fn check_subscription(subscription: &PushSubscription, policy: &ConnectPolicy) -> Result<(), Refused> {
    if subscription.endpoint.len() > MAX_ENDPOINT_LEN {
        return Err(Refused(format!("the endpoint is longer than {MAX_ENDPOINT_LEN} characters")));
    }
    let checked = Checked::from_json(subscription).map_err(|e| Refused(e.to_string()))?;
    let endpoint = checked.endpoint();
    let host = endpoint.host().unwrap_or_default();
    policy
        .check_host(host)
        .map_err(|e| Refused(format!("the endpoint must be a public push service: {e}")))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let local = is_loopback_host(host) || bare.parse().is_ok_and(|ip| !is_public(ip));
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
        let ok = |endpoint: &str, local: bool| {
            let policy = if local { ConnectPolicy::any() } else { ConnectPolicy::public(None) };
            check_subscription(&sub(endpoint, P256DH, AUTH), &policy).is_ok()
        };
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
            "https://100.64.1.2/x",
            "https://198.18.0.1/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://[64:ff9b::a00:1]/x",
        ] {
            assert!(!ok(private, false), "{private}");
        }
        assert!(!ok("http://push.example.com/abc", true));
        assert!(!ok("ftp://push.example.com/abc", true));
        let long = format!("https://push.example.com/{}", "a".repeat(MAX_ENDPOINT_LEN));
        assert!(!ok(&long, true));
        let listed = ConnectPolicy::public(Some(tidings_sender::PushHosts::parse(["known"]).unwrap()));
        let check = |endpoint: &str| check_subscription(&sub(endpoint, P256DH, AUTH), &listed);
        assert!(check("https://fcm.googleapis.com/fcm/send/abc").is_ok());
        let refused = check("https://push.example.com/abc").unwrap_err();
        assert!(refused.0.contains("not one of the allowed push-service hosts"), "{refused}");
    }

    #[test]
    fn keys_of_the_right_lengths() {
        let policy = ConnectPolicy::public(None);
        assert!(check_subscription(&sub("https://e.example/x", "BCVx", AUTH), &policy).is_err());
        assert!(check_subscription(&sub("https://e.example/x", P256DH, "AAAA"), &policy).is_err());
        assert!(check_subscription(&sub("https://e.example/x", P256DH, "not base64!"), &policy).is_err());
    }

    #[test]
    fn omitted_and_null_differ() {
        let parse = |json: serde_json::Value| serde_json::from_value::<SubscribeRequest>(json).unwrap();
        let subscription =
            serde_json::json!({"endpoint": "https://e.example/x", "keys": {"p256dh": P256DH, "auth": AUTH}});
        let omitted = parse(serde_json::json!({ "subscription": subscription }));
        assert_eq!((omitted.topics, omitted.user_token), (None, None));
        let null =
            parse(serde_json::json!({ "subscription": subscription, "user_token": null, "topics": [] }));
        assert_eq!((null.topics, null.user_token), (Some(vec![]), Some(None)));
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
