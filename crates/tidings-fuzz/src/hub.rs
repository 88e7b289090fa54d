//! The hub's request bodies (`tidings_hub::http::rest`, `subscribe`, `notification`) and user
//! tokens (`tidings_hub::user_token`), as browsers and app backends send them.

use aws_lc_rs::hmac;
use tidings_crypto::b64;
use tidings_hub::http::rest::{SendRequest, build_send};
use tidings_hub::http::wire::TargetJson;
use tidings_hub::notification::Notification;
use tidings_hub::subscribe::{MAX_TOPIC_LEN, MAX_TOPICS, SubscribeRequest, check_subscription, check_topics};
use tidings_hub::user_token::{MAX_CLAIM_LEN, MAX_LIFETIME, sign, verify};
use tidings_sender::connect::ConnectPolicy;

/// A JSON body, tried as each body the hub parses: a send (`POST /api/v1/sends`), a
/// subscription (`POST /api/subscriptions`), a target, a notification.
///
/// Properties: no panic; what parses and is accepted stays within the rules (topics
/// deduplicated and short); targets and notifications written back read back the same.
pub fn hub_json(data: &[u8]) {
    if let Ok(request) = serde_json::from_slice::<SendRequest>(data) {
        let _ = build_send(request, "https://app.example/", crate::NOW);
    }
    if let Ok(request) = serde_json::from_slice::<SubscribeRequest>(data) {
        let _ = check_subscription(&request.subscription, &ConnectPolicy::public(None));
        if let Ok(topics) = check_topics(request.topics.as_deref().unwrap_or_default()) {
            assert!(
                topics.len() <= MAX_TOPICS && topics.iter().all(|t| (1..=MAX_TOPIC_LEN).contains(&t.len()))
            );
        }
    }
    if let Ok(target) = serde_json::from_slice::<TargetJson>(data) {
        let written = serde_json::to_vec(&target).expect("serializes");
        assert_eq!(serde_json::from_slice::<TargetJson>(&written).ok(), Some(target.clone()));
        if let Ok(checked) = target.target() {
            assert_eq!(TargetJson::from(&checked).target().ok(), Some(checked));
        }
    }
    if let Ok(notification) = serde_json::from_slice::<Notification>(data) {
        let written = serde_json::to_vec(&notification).expect("serializes");
        assert_eq!(serde_json::from_slice::<Notification>(&written).ok(), Some(notification));
    }
}

/// The secret the target's hub signs user tokens with.
const SECRET: &[u8] = b"fuzz user-token secret";

/// Byte 0, even: the rest is a token as sent. Odd: two lines, a JWT header and claims
/// (JSON), signed here with the hub's secret (a random signature never verifies).
///
/// Properties: no panic; what verifies has a `sub` and a `jti` of 1 to 256 characters, no NUL
/// in `sub`, and an `exp` in the next 24 hours; its claims signed again verify the same.
pub fn hub_user_token(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let token = if mode & 1 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let (header, claims) = crate::split_line(rest);
        let (claims, _) = crate::split_line(claims);
        let input = format!("{}.{}", b64::encode(header), b64::encode(claims));
        let signature = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET), input.as_bytes());
        format!("{input}.{}", b64::encode(signature.as_ref()))
    };
    let now = crate::NOW + u64::from(mode >> 1) * 3600;
    let Ok(claims) = verify(SECRET, &token, now) else { return };
    assert!((1..=MAX_CLAIM_LEN).contains(&claims.sub.len()) && !claims.sub.contains('\0'));
    assert!((1..=MAX_CLAIM_LEN).contains(&claims.jti.len()));
    assert!(claims.exp > now && claims.exp <= now + MAX_LIFETIME);
    assert_eq!(verify(SECRET, &sign(SECRET, &claims), now).ok(), Some(claims));
}
