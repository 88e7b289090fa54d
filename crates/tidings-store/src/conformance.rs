//! The behaviour every backend must have, in two suites, one for each trait: a backend's
//! tests call [`store_conformance_tests!`](crate::store_conformance_tests) and
//! [`bus_conformance_tests!`](crate::bus_conformance_tests) with an expression that makes a
//! fresh, empty backend; each check below becomes one test. The bus checks hold for a bus
//! that serves one node as for a shared one; what only a shared bus does (events between
//! nodes, shared keys) is tested with its backend.

use crate::{Added, Bus, Channel, Message, Saved, Store};
use tidings_wire::{ChannelId, Uaid};

const NOW: u64 = 1_700_000_000;

/// An idle period no check reaches (except the one about forgetting).
const FOREVER: u64 = 10 * 365 * 24 * 3600;

/// The channels a user may hold, in the checks that are not about the cap.
const MAX_CHANNELS: usize = 100;

fn uaid(n: u8) -> Uaid {
    Uaid([n; 16])
}

fn channel(n: u8) -> ChannelId {
    ChannelId([n; 16])
}

/// A message for `channel_id` expiring an hour after [`NOW`], with `body` as its body.
pub fn message(channel_id: ChannelId, body: &str, topic: Option<&str>) -> Message {
    Message {
        id: 0,
        channel_id,
        expires_at: NOW + 3600,
        topic: topic.map(str::to_owned),
        body: body.as_bytes().to_vec(),
        encoding: Some("aes128gcm".into()),
        encryption: None,
        crypto_key: None,
    }
}

async fn subscribed<S: Store>(store: &S, u: Uaid, channels: &[ChannelId]) {
    store.add_user(u, NOW, FOREVER).await.unwrap();
    for c in channels {
        assert_eq!(
            store.add_channel(u, *c, Channel { key_hash: None }, MAX_CHANNELS).await.unwrap(),
            Added::Added
        );
    }
}

async fn bodies<S: Store>(store: &S, u: Uaid) -> Vec<String> {
    let messages = store.messages(u, None, 1000, NOW).await.unwrap();
    messages.into_iter().map(|m| String::from_utf8(m.body).unwrap()).collect()
}

fn id(saved: Saved) -> u64 {
    match saved {
        Saved::Stored(id) | Saved::Replaced { id, .. } => id,
        other => panic!("not saved: {other:?}"),
    }
}

/// Users are created once and removed with everything they own.
pub async fn users<S: Store>(store: S) {
    assert!(!store.touch_user(uaid(1), NOW, FOREVER).await.unwrap());
    assert!(!store.add_user(uaid(1), NOW, FOREVER).await.unwrap());
    assert!(store.add_user(uaid(1), NOW, FOREVER).await.unwrap());
    assert!(store.touch_user(uaid(1), NOW, FOREVER).await.unwrap());
    store.add_channel(uaid(1), channel(1), Channel { key_hash: None }, MAX_CHANNELS).await.unwrap();
    store.save_message(uaid(1), message(channel(1), "m", None), None, 10, NOW).await.unwrap();
    store.remove_user(uaid(1)).await.unwrap();
    assert!(!store.touch_user(uaid(1), NOW, FOREVER).await.unwrap());
    assert_eq!(store.channel(uaid(1), channel(1)).await.unwrap(), None);
    assert!(store.messages(uaid(1), None, 10, NOW).await.unwrap().is_empty());
    store.ready().await.unwrap();
}

/// A user agent idle for the whole period is forgotten (at its next contact, or by the
/// sweep, or by the store itself), with its channels; one that keeps in touch is not.
/// Real seconds pass, for stores that expire entries by their own clock.
pub async fn idle_users_are_forgotten<S: Store>(store: S) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (idle, swept, kept) = (uaid(1), uaid(2), uaid(3));
    for u in [idle, swept, kept] {
        assert!(!store.add_user(u, now, 3).await.unwrap());
        assert_eq!(
            store.add_channel(u, channel(1), Channel { key_hash: None }, MAX_CHANNELS).await.unwrap(),
            Added::Added
        );
        store.save_message(u, message(channel(1), "m", None), None, 10, now).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(store.touch_user(kept, now + 1, 3).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(2300)).await;
    assert!(!store.touch_user(idle, now + 3, 3).await.unwrap(), "idle for longer than the period");
    store.forget_idle_users(now + 3, 3, 100).await.unwrap();
    assert!(!store.touch_user(swept, now + 3, 3).await.unwrap(), "swept");
    for u in [idle, swept] {
        assert_eq!(store.channel(u, channel(1)).await.unwrap(), None);
        assert_eq!(
            store.save_message(u, message(channel(1), "late", None), None, 10, now).await.unwrap(),
            Saved::NoChannel
        );
        assert_eq!(
            store.add_channel(u, channel(2), Channel { key_hash: None }, MAX_CHANNELS).await.unwrap(),
            Added::NoUser
        );
    }
    assert!(store.touch_user(kept, now + 3, 3).await.unwrap(), "touched within the period");
    assert!(store.channel(kept, channel(1)).await.unwrap().is_some());
    assert!(matches!(
        store.save_message(kept, message(channel(1), "still here", None), None, 10, now).await.unwrap(),
        Saved::Stored(_)
    ));
}

/// Channels belong to existing users and keep their key hash; a user holds a bounded number.
pub async fn channels<S: Store>(store: S) {
    let restricted = Channel { key_hash: Some([7; 16]) };
    let unrestricted = Channel { key_hash: None };
    assert_eq!(
        store.add_channel(uaid(1), channel(1), restricted, MAX_CHANNELS).await.unwrap(),
        Added::NoUser
    );
    store.add_user(uaid(1), NOW, FOREVER).await.unwrap();
    assert_eq!(store.add_channel(uaid(1), channel(1), restricted, MAX_CHANNELS).await.unwrap(), Added::Added);
    assert_eq!(store.channel(uaid(1), channel(1)).await.unwrap(), Some(restricted));
    assert_eq!(store.channel(uaid(1), channel(2)).await.unwrap(), None);
    assert_eq!(store.channel(uaid(2), channel(1)).await.unwrap(), None);
    assert!(store.remove_channel(uaid(1), channel(1)).await.unwrap());
    assert!(!store.remove_channel(uaid(1), channel(1)).await.unwrap());
    assert_eq!(store.channel(uaid(1), channel(1)).await.unwrap(), None);
    // The cap: three channels, then no new one; replacing one is still allowed.
    for n in 1..=3 {
        assert_eq!(store.add_channel(uaid(1), channel(n), unrestricted, 3).await.unwrap(), Added::Added);
    }
    assert_eq!(store.add_channel(uaid(1), channel(4), unrestricted, 3).await.unwrap(), Added::TooMany);
    assert_eq!(store.channel(uaid(1), channel(4)).await.unwrap(), None);
    assert_eq!(store.add_channel(uaid(1), channel(2), restricted, 3).await.unwrap(), Added::Added);
    assert!(store.remove_channel(uaid(1), channel(3)).await.unwrap());
    assert_eq!(store.add_channel(uaid(1), channel(4), unrestricted, 3).await.unwrap(), Added::Added);
}

/// A message is saved only for the key its endpoint was made for: registering the channel
/// again with another key (or without one) revokes the old endpoint.
pub async fn key_revocation<S: Store>(store: S) {
    let (first, second) = (Some([1; 16]), Some([2; 16]));
    store.add_user(uaid(1), NOW, FOREVER).await.unwrap();
    store.add_channel(uaid(1), channel(1), Channel { key_hash: first }, MAX_CHANNELS).await.unwrap();
    assert!(matches!(
        store.save_message(uaid(1), message(channel(1), "a", None), first, 10, NOW).await.unwrap(),
        Saved::Stored(_)
    ));
    for wrong in [second, None] {
        assert_eq!(
            store.save_message(uaid(1), message(channel(1), "b", None), wrong, 10, NOW).await.unwrap(),
            Saved::NoChannel
        );
    }
    store.add_channel(uaid(1), channel(1), Channel { key_hash: second }, MAX_CHANNELS).await.unwrap();
    assert_eq!(
        store.save_message(uaid(1), message(channel(1), "c", None), first, 10, NOW).await.unwrap(),
        Saved::NoChannel,
        "the old endpoint is revoked"
    );
    assert!(matches!(
        store.save_message(uaid(1), message(channel(1), "d", None), second, 10, NOW).await.unwrap(),
        Saved::Stored(_)
    ));
    store.add_channel(uaid(1), channel(1), Channel { key_hash: None }, MAX_CHANNELS).await.unwrap();
    assert_eq!(
        store.save_message(uaid(1), message(channel(1), "e", None), second, 10, NOW).await.unwrap(),
        Saved::NoChannel
    );
    assert!(matches!(
        store.save_message(uaid(1), message(channel(1), "f", None), None, 10, NOW).await.unwrap(),
        Saved::Stored(_)
    ));
    assert_eq!(bodies(&store, uaid(1)).await, ["a", "d", "f"]);
}

/// Messages come back in the order they were saved, and can be paged with `after`.
pub async fn message_order<S: Store>(store: S) {
    subscribed(&store, uaid(1), &[channel(1), channel(2)]).await;
    let mut ids = Vec::new();
    for (i, c) in [channel(1), channel(2), channel(1), channel(2)].into_iter().enumerate() {
        ids.push(id(store
            .save_message(uaid(1), message(c, &format!("m{i}"), None), None, 10, NOW)
            .await
            .unwrap()));
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    assert_eq!(bodies(&store, uaid(1)).await, ["m0", "m1", "m2", "m3"]);
    let page = store.messages(uaid(1), Some(ids[1]), 1, NOW).await.unwrap();
    assert_eq!((page.len(), page[0].id, page[0].body.as_slice()), (1, ids[2], &b"m2"[..]));
    let stored = &store.messages(uaid(1), None, 1, NOW).await.unwrap()[0];
    assert_eq!(
        (stored.channel_id, stored.encoding.as_deref(), stored.expires_at),
        (channel(1), Some("aes128gcm"), NOW + 3600)
    );
    // Another user's messages are separate.
    subscribed(&store, uaid(2), &[channel(1)]).await;
    assert!(store.messages(uaid(2), None, 10, NOW).await.unwrap().is_empty());
}

/// Messages for unknown users or channels are not stored.
pub async fn no_channel<S: Store>(store: S) {
    assert_eq!(
        store.save_message(uaid(1), message(channel(1), "x", None), None, 10, NOW).await.unwrap(),
        Saved::NoChannel
    );
    subscribed(&store, uaid(1), &[channel(1)]).await;
    assert_eq!(
        store.save_message(uaid(1), message(channel(2), "x", None), None, 10, NOW).await.unwrap(),
        Saved::NoChannel
    );
    assert!(store.messages(uaid(1), None, 10, NOW).await.unwrap().is_empty());
}

/// A message with a topic replaces the pending one with that topic on that channel only.
pub async fn topics<S: Store>(store: S) {
    subscribed(&store, uaid(1), &[channel(1), channel(2)]).await;
    let first = id(store
        .save_message(uaid(1), message(channel(1), "old", Some("score")), None, 10, NOW)
        .await
        .unwrap());
    store
        .save_message(uaid(1), message(channel(2), "other channel", Some("score")), None, 10, NOW)
        .await
        .unwrap();
    store.save_message(uaid(1), message(channel(1), "no topic", None), None, 10, NOW).await.unwrap();
    let saved =
        store.save_message(uaid(1), message(channel(1), "new", Some("score")), None, 10, NOW).await.unwrap();
    assert!(matches!(saved, Saved::Replaced { old, .. } if old == first), "{saved:?}");
    assert_eq!(bodies(&store, uaid(1)).await, ["other channel", "no topic", "new"]);
    // Once the topic's message is delivered and deleted, the topic is free again.
    let new = store.messages(uaid(1), None, 10, NOW).await.unwrap().pop().unwrap();
    assert!(store.delete_message(uaid(1), channel(1), new.id).await.unwrap());
    assert!(matches!(
        store
            .save_message(uaid(1), message(channel(1), "again", Some("score")), None, 10, NOW)
            .await
            .unwrap(),
        Saved::Stored(_)
    ));
}

/// A channel holds at most `max_pending` messages; a topic replacement is always allowed.
pub async fn pending_cap<S: Store>(store: S) {
    subscribed(&store, uaid(1), &[channel(1), channel(2)]).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(id(store
            .save_message(uaid(1), message(channel(1), &format!("{i}"), Some(&format!("t{i}"))), None, 3, NOW)
            .await
            .unwrap()));
    }
    assert_eq!(
        store.save_message(uaid(1), message(channel(1), "over", None), None, 3, NOW).await.unwrap(),
        Saved::Full
    );
    assert!(matches!(
        store.save_message(uaid(1), message(channel(1), "swap", Some("t0")), None, 3, NOW).await.unwrap(),
        Saved::Replaced { .. }
    ));
    // The cap is per channel.
    assert!(matches!(
        store.save_message(uaid(1), message(channel(2), "elsewhere", None), None, 3, NOW).await.unwrap(),
        Saved::Stored(_)
    ));
    assert!(store.delete_message(uaid(1), channel(1), ids[1]).await.unwrap());
    assert!(matches!(
        store.save_message(uaid(1), message(channel(1), "room", None), None, 3, NOW).await.unwrap(),
        Saved::Stored(_)
    ));
    assert_eq!(
        store.save_message(uaid(1), message(channel(1), "over", None), None, 3, NOW).await.unwrap(),
        Saved::Full
    );
}

/// Expired messages are never returned, and sweeping deletes them.
pub async fn expiry<S: Store>(store: S) {
    subscribed(&store, uaid(1), &[channel(1)]).await;
    let mut soon = message(channel(1), "soon", None);
    soon.expires_at = NOW + 10;
    store.save_message(uaid(1), soon, None, 10, NOW).await.unwrap();
    store.save_message(uaid(1), message(channel(1), "later", None), None, 10, NOW).await.unwrap();
    assert_eq!(store.messages(uaid(1), None, 10, NOW + 9).await.unwrap().len(), 2);
    let left = store.messages(uaid(1), None, 10, NOW + 10).await.unwrap();
    assert_eq!(left.iter().map(|m| m.body.as_slice()).collect::<Vec<_>>(), [b"later"]);
    assert_eq!(store.sweep_expired(NOW + 10, 100).await.unwrap(), 1);
    assert_eq!(store.sweep_expired(NOW + 10, 100).await.unwrap(), 0);
    assert_eq!(bodies(&store, uaid(1)).await, ["later"]);
    // Expired messages do not hold a place under the cap once swept.
    let mut capped = message(channel(1), "short", None);
    capped.expires_at = NOW + 20;
    store.save_message(uaid(1), capped, None, 2, NOW).await.unwrap();
    assert_eq!(
        store.save_message(uaid(1), message(channel(1), "x", None), None, 2, NOW).await.unwrap(),
        Saved::Full
    );
    assert_eq!(store.sweep_expired(NOW + 20, 100).await.unwrap(), 1);
    assert!(matches!(
        store.save_message(uaid(1), message(channel(1), "x", None), None, 2, NOW).await.unwrap(),
        Saved::Stored(_)
    ));
}

/// Deleting needs the right channel, and happens once.
pub async fn deletion<S: Store>(store: S) {
    subscribed(&store, uaid(1), &[channel(1), channel(2)]).await;
    let m = id(store.save_message(uaid(1), message(channel(1), "m", None), None, 10, NOW).await.unwrap());
    assert!(!store.delete_message(uaid(1), channel(2), m).await.unwrap(), "wrong channel");
    assert!(!store.delete_message(uaid(2), channel(1), m).await.unwrap(), "wrong user");
    assert!(store.delete_message(uaid(1), channel(1), m).await.unwrap());
    assert!(!store.delete_message(uaid(1), channel(1), m).await.unwrap());
    // Removing a channel removes its messages only.
    store.save_message(uaid(1), message(channel(1), "a", None), None, 10, NOW).await.unwrap();
    store.save_message(uaid(1), message(channel(2), "b", None), None, 10, NOW).await.unwrap();
    store.remove_channel(uaid(1), channel(1)).await.unwrap();
    assert_eq!(bodies(&store, uaid(1)).await, ["b"]);
}

/// The same message again (a sender's retry, after an answer that was lost) is answered as
/// the first was and never stored twice, whether the first is still pending or gone; a
/// message without a body, and the same body on another channel or with other headers, are
/// messages of their own.
pub async fn repeats<S: Store>(store: S) {
    subscribed(&store, uaid(1), &[channel(1), channel(2)]).await;
    let sealed = message(channel(1), "sealed", None);
    let first = id(store.save_message(uaid(1), sealed.clone(), None, 10, NOW).await.unwrap());
    let again = store.save_message(uaid(1), sealed.clone(), None, 10, NOW + 1).await.unwrap();
    assert_eq!(again, Saved::Repeated { id: first, pending: true });
    assert_eq!(bodies(&store, uaid(1)).await, ["sealed"]);
    // The same body elsewhere, or with another header, is another message.
    id(store.save_message(uaid(1), message(channel(2), "sealed", None), None, 10, NOW).await.unwrap());
    let mut topical = sealed.clone();
    topical.topic = Some("news".into());
    id(store.save_message(uaid(1), topical, None, 10, NOW).await.unwrap());
    let mut aesgcm = sealed.clone();
    aesgcm.encoding = Some("aesgcm".into());
    id(store.save_message(uaid(1), aesgcm, None, 10, NOW).await.unwrap());
    assert_eq!(bodies(&store, uaid(1)).await.len(), 4);
    // Acknowledged, it is not stored again by a late retry.
    assert!(store.delete_message(uaid(1), channel(1), first).await.unwrap());
    let late = store.save_message(uaid(1), sealed, None, 10, NOW + 2).await.unwrap();
    assert_eq!(late, Saved::Repeated { id: first, pending: false });
    assert_eq!(bodies(&store, uaid(1)).await.len(), 3);
    // A retry of a stored message is answered even when the channel is full.
    let mut full = Vec::new();
    for body in ["a", "b"] {
        full.push(id(store
            .save_message(uaid(1), message(channel(2), body, None), None, 3, NOW)
            .await
            .unwrap()));
    }
    let retry = store.save_message(uaid(1), message(channel(2), "a", None), None, 3, NOW).await.unwrap();
    assert_eq!(retry, Saved::Repeated { id: full[0], pending: true });
    // Messages without a body cannot be told apart from a retry: each is stored.
    let mut tickle = message(channel(1), "", None);
    tickle.encoding = None;
    let one = id(store.save_message(uaid(1), tickle.clone(), None, 10, NOW).await.unwrap());
    let two = id(store.save_message(uaid(1), tickle, None, 10, NOW).await.unwrap());
    assert_ne!(one, two);
}

/// Concurrent saves all land, with distinct ids.
pub async fn concurrency<S: Store>(store: S) {
    let store = std::sync::Arc::new(store);
    subscribed(&*store, uaid(1), &[channel(1)]).await;
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store.save_message(uaid(1), message(channel(1), &format!("{i}"), None), None, 1000, NOW).await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(id(task.await.unwrap().unwrap()));
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    assert_eq!(store.messages(uaid(1), None, 1000, NOW).await.unwrap().len(), 200);
}

/// A broadcast keeps its latest version; setting the same version again changes nothing.
pub async fn broadcasts<S: Store>(store: S) {
    assert!(store.broadcasts().await.unwrap().is_empty());
    assert!(store.set_broadcast("remote-settings/monitor_changes", "\"1\"").await.unwrap(), "new");
    assert!(store.set_broadcast("kinto:123", "v1").await.unwrap());
    assert!(!store.set_broadcast("kinto:123", "v1").await.unwrap(), "the same version");
    assert!(store.set_broadcast("kinto:123", "v2").await.unwrap());
    let mut all = store.broadcasts().await.unwrap();
    all.sort();
    let expected = [("kinto:123", "v2"), ("remote-settings/monitor_changes", "\"1\"")];
    assert_eq!(all, expected.map(|(id, v)| (id.to_owned(), v.to_owned())));
}

// The bus checks.

/// The routing entry follows the newest connection.
pub async fn routing<S: Bus>(bus: S) {
    assert_eq!(bus.node(uaid(1)).await.unwrap(), None);
    bus.set_node(uaid(1), "node-a").await.unwrap();
    assert_eq!(bus.node(uaid(1)).await.unwrap().as_deref(), Some("node-a"));
    bus.set_node(uaid(1), "node-b").await.unwrap();
    bus.clear_node(uaid(1), "node-a").await.unwrap();
    assert_eq!(bus.node(uaid(1)).await.unwrap().as_deref(), Some("node-b"));
    // Renewing keeps the entries as they are, whoever holds them.
    bus.refresh_routes(&[uaid(1)], "node-a").await.unwrap();
    assert_eq!(bus.node(uaid(1)).await.unwrap().as_deref(), Some("node-b"));
    bus.clear_node(uaid(1), "node-b").await.unwrap();
    assert_eq!(bus.node(uaid(1)).await.unwrap(), None);
}

/// Generates one `#[tokio::test]` per [`Store`] check; `$make` is an async expression
/// that evaluates to a fresh, empty store.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::conformance_checks!(@each $make; users idle_users_are_forgotten channels key_revocation message_order no_channel topics pending_cap expiry deletion repeats concurrency broadcasts);
    };
}

/// Generates one `#[tokio::test]` per [`Bus`] check; `$make` is an async expression that
/// evaluates to a fresh bus.
#[macro_export]
macro_rules! bus_conformance_tests {
    ($make:expr) => {
        $crate::conformance_checks!(@each $make; routing);
    };
}

/// One `#[tokio::test]` per check named, for the two macros above.
#[doc(hidden)]
#[macro_export]
macro_rules! conformance_checks {
    (@each $make:expr; $($check:ident)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                $crate::conformance::$check($make).await;
            }
        )*
    };
}
