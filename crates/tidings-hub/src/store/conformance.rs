//! The test suite every backend of [`Store`] passes: the embedded one and PostgreSQL run the
//! same checks, concurrent writers included.

use super::{Claimed, Created, Removal, Saved, Store};
use crate::model::{
    AdminSession, Content, IdempotencyKey, NewSend, Outcome, Owner, Pruning, QueuedSend, SendStatus,
    SubscriptionId, Target,
};
use crate::ownership::{Change, Proof, Refusal, Registration, UserChange};
use std::collections::HashSet;
use std::sync::Arc;

/// Runs every check, each on a fresh store from `fresh`.
pub async fn run<S: Store, F: Future<Output = S>>(fresh: impl Fn() -> F) {
    subscriptions_ownership_and_tokens(fresh().await).await;
    counters(fresh().await).await;
    sends_materialize_claim_and_record(fresh().await).await;
    idempotency_keys(fresh().await).await;
    leases_release_and_recovery(fresh().await).await;
    concurrent_claimers_never_share_a_recipient(fresh().await).await;
    concurrent_writers(fresh().await).await;
    failing_subscriptions_are_deleted(fresh().await).await;
    admin_sessions(fresh().await).await;
}

fn endpoint(n: u32) -> String {
    format!("https://push.example/{n}")
}

fn registration(n: u32, topics: Option<&[&str]>, user: UserChange) -> Registration {
    Registration {
        endpoint: endpoint(n),
        p256dh: "k".into(),
        auth: format!("auth-{n}"),
        topics: topics.map(|t| t.iter().map(|t| t.to_string()).collect()),
        user,
        replacing: None,
        now: 100 + u64::from(n),
    }
}

fn token(user: &str, jti: &str, expires: u64) -> UserChange {
    UserChange::Set { user: user.into(), jti: jti.into(), expires }
}

/// Registers and returns the id and what changed, or panics.
async fn stored(store: &impl Store, registration: Registration) -> (SubscriptionId, Change) {
    match store.register(Arc::new(registration)).await.unwrap() {
        Saved::Stored { id, change, .. } => (id, change),
        other => panic!("not stored: {other:?}"),
    }
}

fn new_send(target: Target) -> NewSend {
    NewSend {
        target,
        content: Content { payload: b"hi".to_vec(), ttl: 60, urgency: None, topic: None },
        created_at: 1,
        send_at: 1,
    }
}

const NEVER: Pruning = Pruning { failures: u32::MAX, failing_for: 0 };

async fn create(store: &impl Store, target: Target) -> QueuedSend {
    store.create_send(new_send(target), None).await.unwrap().send
}

/// Materializes a send completely (in chunks of `chunk`).
async fn materialize(store: &impl Store, id: u64, chunk: usize) -> QueuedSend {
    loop {
        let send = store.materialize(id, 2, chunk).await.unwrap();
        if send.materialized {
            return send;
        }
    }
}

/// Claims for `owner` until nothing is left (a claim may come up short of its limit while
/// more is claimable: a recipient given back may be found only by a later claim).
async fn claim_all(store: &impl Store, id: u64, owner: Owner, lease_until: u64) -> Vec<Claimed> {
    let mut all = Vec::new();
    loop {
        let claimed = store.claim(id, owner, lease_until, 10).await.unwrap();
        if claimed.is_empty() {
            return all;
        }
        all.extend(claimed);
    }
}

async fn subscriptions_ownership_and_tokens(store: impl Store) {
    let (a, change) =
        stored(&store, registration(1, Some(&["news", "sport"]), token("alice", "jti-1", 100))).await;
    assert_eq!(change, Change::Created);
    assert_eq!(
        store.register(Arc::new(registration(2, None, token("mallory", "jti-1", 100)))).await.unwrap(),
        Saved::Replayed
    );
    // Re-posting as it is keeps the topics and the user; a preview tells so without writing.
    let again = Arc::new(registration(1, None, UserChange::Keep));
    assert!(matches!(
        store.preview(again.clone()).await.unwrap(),
        Saved::Stored { change: Change::Unchanged, .. }
    ));
    assert_eq!(stored(&store, registration(1, None, UserChange::Keep)).await, (a, Change::Unchanged));
    let kept = store.subscription(a).await.unwrap().unwrap();
    assert_eq!((kept.topics.len(), kept.user.as_deref(), kept.created_at), (2, Some("alice"), 101));
    assert_eq!(
        store.preview(Arc::new(registration(2, None, token("m", "jti-1", 100)))).await.unwrap(),
        Saved::Replayed
    );
    assert!(matches!(
        store.preview(Arc::new(registration(9, None, UserChange::Keep))).await.unwrap(),
        Saved::Stored { change: Change::Created, .. }
    ));
    assert!(
        store.subscription(SubscriptionId::of(&endpoint(9))).await.unwrap().is_none(),
        "a preview writes nothing"
    );
    assert_eq!(stored(&store, registration(1, Some(&["news"]), UserChange::Keep)).await.1, Change::Updated);
    // Someone who knows only the endpoint cannot put in other keys, nor delete it.
    let attack = Registration { auth: "attacker".into(), ..registration(1, Some(&[]), UserChange::Clear) };
    assert_eq!(store.register(Arc::new(attack)).await.unwrap(), Saved::Refused(Refusal::Conflict));
    let wrong = Proof { endpoint: endpoint(1), auth: "attacker".into() };
    assert_eq!(store.remove_owned(wrong).await.unwrap(), Removal::NotOwner);
    assert_eq!(store.subscription(a).await.unwrap().unwrap().auth, "auth-1");
    // A replacement with the old one's proof carries its topics and user over, and deletes it.
    let (b, _) = stored(&store, registration(3, Some(&["sport"]), token("bob", "jti-3", 100))).await;
    let steal = Registration {
        replacing: Some(Proof { endpoint: endpoint(3), auth: "guess".into() }),
        ..registration(4, None, UserChange::Keep)
    };
    assert_eq!(store.register(Arc::new(steal)).await.unwrap(), Saved::Refused(Refusal::NotOwner));
    assert!(
        store.subscription(SubscriptionId::of(&endpoint(4))).await.unwrap().is_none(),
        "a refusal stores nothing"
    );
    let moved = Registration {
        replacing: Some(Proof { endpoint: endpoint(3), auth: "auth-3".into() }),
        ..registration(4, None, UserChange::Keep)
    };
    let (c, _) = stored(&store, moved).await;
    assert!(store.subscription(b).await.unwrap().is_none());
    let replaced = store.subscription(c).await.unwrap().unwrap();
    assert_eq!((replaced.topics, replaced.user), (vec!["sport".to_owned()], Some("bob".to_owned())));
    let proof = Proof { endpoint: endpoint(4), auth: "auth-4".into() };
    assert_eq!(store.remove_owned(proof.clone()).await.unwrap(), Removal::Removed);
    assert_eq!(store.remove_owned(proof).await.unwrap(), Removal::Unknown);
    assert_eq!(stored(&store, registration(5, None, token("carol", "jti-2", 200))).await.1, Change::Created);
    // Listing, a page at a time, in id order.
    let all = store.subscriptions(None, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].0 < all[1].0);
    assert_eq!(store.subscriptions(Some(all[0].0), 10).await.unwrap(), all[1..]);
    // Only the expired tokens are forgotten; the other still cannot be used again.
    assert_eq!(store.sweep(101).await.unwrap(), 2);
    assert_eq!(store.sweep(101).await.unwrap(), 0);
    assert_eq!(
        store.register(Arc::new(registration(6, None, token("carol", "jti-2", 200)))).await.unwrap(),
        Saved::Replayed
    );
    assert_eq!(store.sweep(201).await.unwrap(), 1);
    assert!(store.remove_subscription(a).await.unwrap());
    assert!(!store.remove_subscription(a).await.unwrap());
    store.ready().await.unwrap();
}

async fn counters(store: impl Store) {
    for n in 0..6 {
        let topics: &[&str] = if n % 2 == 0 { &["even", "all"] } else { &["all"] };
        stored(&store, registration(n, Some(topics), UserChange::Keep)).await;
    }
    assert_eq!(store.topics().await.unwrap(), [("all".to_owned(), 6), ("even".to_owned(), 3)]);
    assert_eq!(store.subscription_counts().await.unwrap().total, 6);
    // Changing topics moves the counts; deleting takes them away.
    stored(&store, registration(1, Some(&["odd"]), UserChange::Keep)).await;
    assert!(store.remove_subscription(SubscriptionId::of(&endpoint(0))).await.unwrap());
    assert_eq!(
        store.topics().await.unwrap(),
        [("all".to_owned(), 4), ("even".to_owned(), 2), ("odd".to_owned(), 1)]
    );
    // Failing recipients are counted flagged once they cross the line, and not after a success.
    let send = create(&store, Target::Topic("even".into())).await;
    let failed = || Outcome::Failed { status: Some(500), reason: "down".into() };
    for round in 0..crate::model::FLAG_AFTER {
        let send = if round == 0 { send.clone() } else { create(&store, Target::Topic("even".into())).await };
        materialize(&store, send.id, 100).await;
        let claimed = store.claim(send.id, Owner([1; 16]), u64::MAX, 100).await.unwrap();
        let outcomes = claimed.iter().map(|(s, _)| (*s, failed())).collect();
        store.record(send.id, outcomes, 10, NEVER).await.unwrap();
    }
    let counts = store.subscription_counts().await.unwrap();
    assert_eq!((counts.total, counts.flagged), (5, 2));
    let send = create(&store, Target::Subscription(SubscriptionId::of(&endpoint(2)))).await;
    materialize(&store, send.id, 100).await;
    let claimed = store.claim(send.id, Owner([1; 16]), u64::MAX, 100).await.unwrap();
    store.record(send.id, vec![(claimed[0].0, Outcome::Accepted)], 11, NEVER).await.unwrap();
    assert_eq!(store.subscription_counts().await.unwrap().flagged, 1);
    // Gone: deleted, counted, and its topics' counts follow.
    let send = create(&store, Target::Subscription(SubscriptionId::of(&endpoint(4)))).await;
    materialize(&store, send.id, 100).await;
    let claimed = store.claim(send.id, Owner([1; 16]), u64::MAX, 100).await.unwrap();
    store.record(send.id, vec![(claimed[0].0, Outcome::Gone)], 12, NEVER).await.unwrap();
    let counts = store.subscription_counts().await.unwrap();
    assert_eq!((counts.total, counts.flagged), (4, 0));
    assert_eq!(
        store.topics().await.unwrap(),
        [("all".to_owned(), 3), ("even".to_owned(), 1), ("odd".to_owned(), 1)]
    );
}

async fn sends_materialize_claim_and_record(store: impl Store) {
    let mut ids = Vec::new();
    for n in 0..10 {
        let user = if n < 2 { token("u", &format!("j{n}"), 1000) } else { UserChange::Keep };
        ids.push(stored(&store, registration(n, Some(&["t"]), user)).await.0);
    }
    ids.sort();
    let send = create(&store, Target::Topic("t".into())).await;
    assert_eq!((send.status, send.counts.queued), (SendStatus::Queued, 0));
    let scheduled =
        store.create_send(NewSend { send_at: 50, ..new_send(Target::Everyone) }, None).await.unwrap().send;
    assert_eq!(scheduled.status, SendStatus::Scheduled);
    let due: Vec<u64> = store.due_sends(10, 10).await.unwrap().iter().map(|s| s.id).collect();
    assert_eq!(due, [send.id], "the scheduled send is not due yet");
    let due: Vec<u64> = store.due_sends(50, 10).await.unwrap().iter().map(|s| s.id).collect();
    assert_eq!(due, [send.id, scheduled.id], "oldest first");
    // Recipients are written in chunks: the count grows until all are known.
    let first = store.materialize(send.id, 2, 4).await.unwrap();
    assert_eq!((first.status, first.counts.queued, first.materialized), (SendStatus::Running, 4, false));
    assert_eq!(first.started_at, Some(2));
    let all = materialize(&store, send.id, 4).await;
    assert_eq!((all.counts.queued, all.materialized), (10, true));
    // Claims: each recipient once, with its subscription.
    let owner = Owner([7; 16]);
    let first = store.claim(send.id, owner, u64::MAX, 4).await.unwrap();
    let second = store.claim(send.id, owner, u64::MAX, 4).await.unwrap();
    let third = store.claim(send.id, owner, u64::MAX, 4).await.unwrap();
    assert_eq!((first.len(), second.len(), third.len()), (4, 4, 2));
    assert!(store.claim(send.id, owner, u64::MAX, 4).await.unwrap().is_empty());
    let claimed: Vec<SubscriptionId> = first.iter().chain(&second).chain(&third).map(|(s, _)| *s).collect();
    assert_eq!(claimed.iter().copied().collect::<HashSet<_>>(), ids.iter().copied().collect());
    assert!(first.iter().all(|(_, record)| record.as_ref().is_some_and(|r| r.topics == ["t"])));
    // A recipient deleted after the send started comes with no subscription.
    let deleted = third[0].0;
    store.remove_subscription(deleted).await.unwrap();
    let outcomes = vec![
        (first[0].0, Outcome::Accepted),
        (first[1].0, Outcome::Gone),
        (first[2].0, Outcome::Failed { status: Some(503), reason: "down".into() }),
        (first[3].0, Outcome::Rejected { status: Some(413), reason: "big".into() }),
    ];
    let after = store.record(send.id, outcomes.clone(), 3, NEVER).await.unwrap();
    let c = after.counts;
    assert_eq!((c.accepted, c.gone, c.failed, c.rejected, c.pending()), (1, 1, 1, 1, 6));
    assert!(store.subscription(first[1].0).await.unwrap().is_none(), "gone subscriptions are deleted");
    let failing = store.subscription(first[2].0).await.unwrap().unwrap();
    assert_eq!(
        (failing.failures, failing.failing_since, failing.last_error.as_deref()),
        (1, Some(3), Some("down"))
    );
    assert_eq!(after.errors.len(), 2);
    assert_eq!(after.errors[0].endpoint, tidings_wire::endpoint::mask(&failing.endpoint));
    // Recording again changes nothing.
    assert_eq!(store.record(send.id, outcomes, 3, NEVER).await.unwrap().counts, after.counts);
    let rest: Vec<_> = second.iter().chain(&third).map(|(s, _)| (*s, Outcome::Accepted)).collect();
    let done = store.record(send.id, rest, 4, NEVER).await.unwrap();
    assert_eq!((done.status, done.finished_at, done.counts.accepted), (SendStatus::Done, Some(4), 7));
    assert_eq!(store.send(send.id).await.unwrap(), Some(done.clone()));
    assert_eq!(store.recent_sends(1).await.unwrap(), std::slice::from_ref(&scheduled), "newest first");
    assert!(store.due_sends(10, 10).await.unwrap().is_empty());
    // A send to nobody is done as soon as it starts; one to a user reaches theirs only.
    let empty = create(&store, Target::User("nobody".into())).await;
    assert_eq!(store.materialize(empty.id, 5, 10).await.unwrap().status, SendStatus::Done);
    let to_user = create(&store, Target::User("u".into())).await;
    assert_eq!(materialize(&store, to_user.id, 10).await.counts.queued, 2);
    let one = create(&store, Target::Subscription(ids[5])).await;
    let one = materialize(&store, one.id, 10).await;
    assert_eq!(one.counts.queued, u64::from(ids[5] != deleted));
    assert_eq!(store.send(999_999).await.unwrap(), None);
}

async fn idempotency_keys(store: impl Store) {
    let key = |k: &str, expires| Some(IdempotencyKey { key: k.into(), expires });
    let Created { send: first, replayed } =
        store.create_send(new_send(Target::Everyone), key("k1", 100)).await.unwrap();
    assert!(!replayed);
    let again = store.create_send(new_send(Target::Topic("other".into())), key("k1", 100)).await.unwrap();
    assert_eq!((again.send.clone(), again.replayed), (first.clone(), true), "the first send, untouched");
    let other = store.create_send(new_send(Target::Everyone), key("k2", 100)).await.unwrap();
    assert_ne!(other.send.id, first.id);
    assert_eq!(store.due_sends(10, 10).await.unwrap().len(), 2);
    // Forgotten once expired: the key then makes a new send.
    store.sweep(101).await.unwrap();
    let later = store.create_send(new_send(Target::Everyone), key("k1", 300)).await.unwrap();
    assert!(!later.replayed);
    assert_ne!(later.send.id, first.id);
}

async fn leases_release_and_recovery(store: impl Store) {
    for n in 0..6 {
        stored(&store, registration(n, Some(&["t"]), UserChange::Keep)).await;
    }
    let send = create(&store, Target::Topic("t".into())).await;
    materialize(&store, send.id, 100).await;
    let (a, b) = (Owner([1; 16]), Owner([2; 16]));
    let of_a = store.claim(send.id, a, 1000, 2).await.unwrap();
    let of_b = store.claim(send.id, b, 1000, 2).await.unwrap();
    // `a` renews its lease, `b` does not: at 1500, only `b`'s recipients are interrupted.
    assert_eq!(store.renew(a, 2000).await.unwrap(), 2);
    assert_eq!(store.recover(900, 900, NEVER).await.unwrap(), 0, "no lease has ended yet");
    assert_eq!(store.recover(1500, 1500, NEVER).await.unwrap(), 2);
    let now = store.send(send.id).await.unwrap().unwrap();
    assert_eq!((now.counts.failed, now.errors[0].reason.as_str()), (2, crate::model::INTERRUPTED));
    assert!(of_b.iter().all(|(s, _)| now.errors.iter().any(|e| e.subscription == *s)));
    // Given back, recipients are claimable again; recorded ones are neither given back nor
    // claimable.
    let first_of_a = vec![(of_a[1].0, Outcome::Accepted)];
    let now = store.record(send.id, first_of_a, 1550, NEVER).await.unwrap();
    assert_eq!((now.counts.accepted, now.counts.failed), (1, 2));
    assert_eq!(store.release(send.id, a).await.unwrap(), 1);
    assert_eq!(store.release(send.id, a).await.unwrap(), 0, "nothing left to give back");
    let again = claim_all(&store, send.id, b, 5000).await;
    assert_eq!(again.len(), 3, "the released one and the two never claimed");
    assert!(again.iter().any(|(s, _)| *s == of_a[0].0));
    assert!(again.iter().all(|(s, _)| !of_b.iter().any(|(o, _)| o == s)));
    // Recording an interrupted recipient again changes nothing.
    let late = vec![(of_b[0].0, Outcome::Accepted)];
    assert_eq!(store.record(send.id, late, 1600, NEVER).await.unwrap().counts, now.counts);
    let finish: Vec<_> = again.iter().map(|(s, _)| (*s, Outcome::Accepted)).collect();
    let done = store.record(send.id, finish, 1700, NEVER).await.unwrap();
    assert_eq!((done.status, done.counts.accepted, done.counts.failed), (SendStatus::Done, 4, 2));
}

async fn concurrent_claimers_never_share_a_recipient(store: impl Store) {
    let store = Arc::new(store);
    let mut registering = tokio::task::JoinSet::new();
    for n in 0..300 {
        let store = store.clone();
        registering
            .spawn(async move { stored(&*store, registration(n, Some(&["t"]), UserChange::Keep)).await });
    }
    registering.join_all().await;
    let send = create(&*store, Target::Topic("t".into())).await;
    // Three "hubs" materialize and claim at once.
    let mut claimers = tokio::task::JoinSet::new();
    for owner in 1..=3u8 {
        let store = store.clone();
        claimers.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let send = store.materialize(send.id, 2, 50).await.unwrap();
                let claimed = store.claim(send.id, Owner([owner; 16]), u64::MAX, 7).await.unwrap();
                if claimed.is_empty() && send.materialized {
                    return mine;
                }
                mine.extend(claimed.into_iter().map(|(s, _)| s));
            }
        });
    }
    let claimed: Vec<SubscriptionId> = claimers.join_all().await.into_iter().flatten().collect();
    assert_eq!(claimed.len(), 300, "each recipient once");
    assert_eq!(claimed.iter().collect::<HashSet<_>>().len(), 300);
    let sent = store.send(send.id).await.unwrap().unwrap();
    assert_eq!(sent.counts.queued, 300, "materialized once, whoever did it");
    // Outcomes recorded concurrently add up.
    let mut recorders = tokio::task::JoinSet::new();
    for chunk in claimed.chunks(25) {
        let (store, chunk) = (store.clone(), chunk.to_vec());
        recorders.spawn(async move {
            store
                .record(send.id, chunk.into_iter().map(|s| (s, Outcome::Accepted)).collect(), 3, NEVER)
                .await
                .unwrap()
        });
    }
    recorders.join_all().await;
    let done = store.send(send.id).await.unwrap().unwrap();
    assert_eq!((done.status, done.counts.accepted), (SendStatus::Done, 300));
}

async fn concurrent_writers(store: impl Store) {
    let store = Arc::new(store);
    let mut writers = tokio::task::JoinSet::new();
    for n in 0..100 {
        let registering = store.clone();
        writers.spawn(async move {
            let store = registering;
            let topics: &[&str] = if n % 2 == 0 { &["a", "b"] } else { &["a"] };
            stored(&*store, registration(n, Some(topics), token("u", &format!("jti-{n}"), 1000))).await;
            // The same endpoint again, at once, from the same browser: one record.
            stored(&*store, registration(n, Some(topics), UserChange::Keep)).await;
        });
        let store = store.clone();
        writers.spawn(async move {
            store.create_send(new_send(Target::Everyone), None).await.unwrap();
        });
    }
    writers.join_all().await;
    assert_eq!(store.subscription_counts().await.unwrap().total, 100);
    assert_eq!(store.topics().await.unwrap(), [("a".to_owned(), 100), ("b".to_owned(), 50)]);
    let sends = store.recent_sends(1000).await.unwrap();
    assert_eq!(sends.len(), 100);
    assert_eq!(sends.iter().map(|s| s.id).collect::<HashSet<_>>().len(), 100, "every send its own id");
}

async fn failing_subscriptions_are_deleted(store: impl Store) {
    let (a, _) = stored(&store, registration(1, Some(&["t"]), UserChange::Keep)).await;
    let (b, _) = stored(&store, registration(2, Some(&["t"]), UserChange::Keep)).await;
    let pruning = Pruning { failures: 3, failing_for: 1000 };
    let failed = || Outcome::Failed { status: Some(500), reason: "down".into() };
    let mut deleted = 0;
    for (n, now) in [(1, 10), (2, 20), (3, 30), (4, 1009), (5, 1010)] {
        let send = create(&store, Target::Topic("t".into())).await;
        materialize(&store, send.id, 10).await;
        let claimed = store.claim(send.id, Owner([1; 16]), u64::MAX, 10).await.unwrap();
        // `b` recovers once, which starts its count again.
        let outcomes = claimed
            .iter()
            .map(|(s, _)| (*s, if *s == b && n == 3 { Outcome::Accepted } else { failed() }))
            .collect();
        deleted += store.record(send.id, outcomes, now, pruning).await.unwrap().deleted_failing;
        // Three failures are not enough until the first of them is 1000 s old.
        assert_eq!(store.subscription(a).await.unwrap().is_some(), now < 1010, "after send {n}");
    }
    assert_eq!(deleted, 1);
    let b_record = store.subscription(b).await.unwrap().unwrap();
    assert_eq!((b_record.failures, b_record.failing_since), (2, Some(1009)));
    let counts = store.subscription_counts().await.unwrap();
    assert_eq!((counts.total, counts.deleted_failing), (1, 1));
}

async fn admin_sessions(store: impl Store) {
    let session = AdminSession { expires: 100, secret: "s".into() };
    store.open_admin_session([1; 32], session.clone()).await.unwrap();
    store.open_admin_session([2; 32], AdminSession { expires: 200, ..session.clone() }).await.unwrap();
    assert_eq!(store.admin_session([1; 32]).await.unwrap(), Some(session));
    store.close_admin_session([1; 32]).await.unwrap();
    assert_eq!(store.admin_session([1; 32]).await.unwrap(), None);
    assert_eq!(store.sweep(150).await.unwrap(), 0);
    assert_eq!(store.sweep(200).await.unwrap(), 1);
    assert_eq!(store.admin_session([2; 32]).await.unwrap(), None);
}
