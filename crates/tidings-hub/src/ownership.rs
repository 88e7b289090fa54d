//! Who may change a subscription, and what a page's request does to the stored record.
//!
//! An endpoint is no secret from everyone: the push service that issued it knows it, and
//! RFC 8291 encryption exists precisely to keep that service from reading the messages. So
//! knowing an endpoint must not let anyone replace its keys (they would then read every
//! later message), move its user binding, or delete it. The proof that a caller holds a
//! subscription is its `auth` secret: 16 random bytes that only the browser and the hub
//! know. Every change to a stored subscription needs it:
//!
//! * `POST /api/subscriptions` with a known endpoint updates the record only if `auth` is
//!   the stored one. A browser that really subscribed again gets a new endpoint, so the
//!   same endpoint with other keys is refused as a conflict.
//! * `replace` moves an old subscription's topics and user to a new one only with the old
//!   one's `auth`.
//! * `DELETE` needs the `auth` of what it deletes.
//!
//! A re-post changes only what it names: omitted topics and an omitted user token keep the
//! stored ones (`user_token: null` removes the user). When nothing changes, nothing is
//! written. Everything here is pure: records in, a record out.

use crate::model::Subscription;
use aws_lc_rs::constant_time;

/// What a registration does to the user binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserChange {
    /// Keep the stored user (none for a new subscription).
    Keep,
    /// Bind to this user (from a verified user token, whose `jti` is recorded as used).
    Set {
        /// The app's user id.
        user: String,
        /// The token's unique id.
        jti: String,
        /// When the token expires (until then its `jti` is remembered).
        expires: u64,
    },
    /// Remove the binding.
    Clear,
}

/// Proof of holding a subscription: its endpoint and its `auth` secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The endpoint.
    pub endpoint: String,
    /// Its `keys.auth`, base64url as the browser gives it.
    pub auth: String,
}

/// A page's request to store a subscription, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The endpoint.
    pub endpoint: String,
    /// The browser's public key.
    pub p256dh: String,
    /// The authentication secret: also the proof for a known endpoint.
    pub auth: String,
    /// The topics, or `None` to keep the stored ones.
    pub topics: Option<Vec<String>>,
    /// What happens to the user binding.
    pub user: UserChange,
    /// The subscription this one replaces, with the proof of holding it.
    pub replacing: Option<Proof>,
    /// The time of the request.
    pub now: u64,
}

/// Why a registration is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The endpoint is stored with another `auth`.
    #[error(
        "this endpoint is registered with other keys; a browser that subscribes again gets a new endpoint, \
         so send the new subscription (with replace and the old one's auth)"
    )]
    Conflict,
    /// The proof for the old (or deleted) subscription is wrong.
    #[error(
        "the auth given is not the subscription's: only the browser that holds a subscription may change it"
    )]
    NotOwner,
}

/// What a registration does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Stores a new subscription.
    Created,
    /// Changes the stored one.
    Updated,
    /// Nothing: the stored record already says it all.
    Unchanged,
}

/// The record a registration leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The record to store.
    pub record: Subscription,
    /// What it does.
    pub change: Change,
    /// Whether the old subscription of `replacing` is to be deleted (it exists and the
    /// proof holds).
    pub removes_old: bool,
}

/// Whether `auth` is the subscription's secret (compared in constant time).
pub fn holds(subscription: &Subscription, auth: &str) -> bool {
    constant_time::verify_slices_are_equal(subscription.auth.as_bytes(), auth.as_bytes()).is_ok()
}

/// What `registration` does, given the record stored under its endpoint (`existing`) and,
/// for a replacement, the record of the old endpoint (`old`).
pub fn plan(
    existing: Option<&Subscription>,
    old: Option<&Subscription>,
    registration: &Registration,
) -> Result<Planned, Refusal> {
    if existing.is_some_and(|e| !holds(e, &registration.auth)) {
        return Err(Refusal::Conflict);
    }
    let old = match (&registration.replacing, old) {
        (Some(proof), Some(old)) if proof.endpoint != registration.endpoint => {
            if !holds(old, &proof.auth) {
                return Err(Refusal::NotOwner);
            }
            Some(old)
        }
        _ => None,
    };
    // What is kept: the record's own, else what the old subscription carries over.
    let kept_topics = existing
        .map(|e| &e.topics)
        .filter(|t| !t.is_empty())
        .or(old.map(|o| &o.topics))
        .cloned()
        .unwrap_or_default();
    let kept_user = existing.and_then(|e| e.user.clone()).or_else(|| old.and_then(|o| o.user.clone()));
    let user = match &registration.user {
        UserChange::Keep => kept_user,
        UserChange::Set { user, .. } => Some(user.clone()),
        UserChange::Clear => None,
    };
    let record = Subscription {
        endpoint: registration.endpoint.clone(),
        p256dh: registration.p256dh.clone(),
        auth: registration.auth.clone(),
        user,
        topics: registration.topics.clone().unwrap_or(kept_topics),
        created_at: existing.map_or(registration.now, |e| e.created_at),
        failures: existing.map_or(0, |e| e.failures),
        failing_since: existing.and_then(|e| e.failing_since),
        last_error: existing.and_then(|e| e.last_error.clone()),
    };
    let change = match existing {
        None => Change::Created,
        Some(e) if *e == record && old.is_none() => Change::Unchanged,
        Some(_) => Change::Updated,
    };
    Ok(Planned { record, change, removes_old: old.is_some() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(endpoint: &str, auth: &str, topics: &[&str], user: Option<&str>) -> Subscription {
        Subscription {
            endpoint: endpoint.into(),
            p256dh: "key".into(),
            auth: auth.into(),
            user: user.map(Into::into),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            created_at: 1,
            failures: 0,
            failing_since: None,
            last_error: None,
        }
    }

    fn registration(endpoint: &str, auth: &str) -> Registration {
        Registration {
            endpoint: endpoint.into(),
            p256dh: "key".into(),
            auth: auth.into(),
            topics: None,
            user: UserChange::Keep,
            replacing: None,
            now: 100,
        }
    }

    #[test]
    fn a_known_endpoint_changes_only_with_its_auth() {
        let alice = stored("e1", "alice-auth", &["news"], Some("alice"));
        let attacker = Registration { p256dh: "attacker-key".into(), ..registration("e1", "attacker-auth") };
        assert_eq!(plan(Some(&alice), None, &attacker), Err(Refusal::Conflict));
        // The holder re-posting the same thing changes nothing, and keeps topics and user.
        let same = plan(Some(&alice), None, &registration("e1", "alice-auth")).unwrap();
        assert_eq!((same.change, same.record), (Change::Unchanged, alice.clone()));
        let topics = Registration { topics: Some(vec!["sport".into()]), ..registration("e1", "alice-auth") };
        let changed = plan(Some(&alice), None, &topics).unwrap();
        assert_eq!((changed.change, changed.record.user.as_deref()), (Change::Updated, Some("alice")));
        assert_eq!(changed.record.topics, ["sport"]);
        let clear = Registration { user: UserChange::Clear, ..registration("e1", "alice-auth") };
        assert_eq!(plan(Some(&alice), None, &clear).unwrap().record.user, None);
        let new = plan(None, None, &registration("e2", "a")).unwrap();
        assert_eq!((new.change, new.record.created_at, new.record.topics.len()), (Change::Created, 100, 0));
    }

    #[test]
    fn a_replacement_carries_topics_and_user_only_with_the_old_proof() {
        let old = stored("old", "old-auth", &["news"], Some("alice"));
        let replace = |auth: &str| Registration {
            replacing: Some(Proof { endpoint: "old".into(), auth: auth.into() }),
            ..registration("new", "new-auth")
        };
        assert_eq!(plan(None, Some(&old), &replace("guess")), Err(Refusal::NotOwner));
        let moved = plan(None, Some(&old), &replace("old-auth")).unwrap();
        assert!(moved.removes_old);
        assert_eq!(
            (moved.record.topics.clone(), moved.record.user.as_deref()),
            (vec!["news".into()], Some("alice"))
        );
        // An old subscription the hub does not know: a plain subscription, nothing carried.
        let fresh = plan(None, None, &replace("anything")).unwrap();
        assert_eq!((fresh.change, fresh.removes_old, fresh.record.user), (Change::Created, false, None));
        // A new endpoint stored already (with its own auth) keeps its topics, takes the user.
        let new = stored("new", "new-auth", &["sport"], None);
        let merged = plan(Some(&new), Some(&old), &replace("old-auth")).unwrap();
        assert_eq!(
            (merged.change, merged.record.topics.clone()),
            (Change::Updated, vec!["sport".to_owned()])
        );
        assert_eq!(merged.record.user.as_deref(), Some("alice"));
    }
}
