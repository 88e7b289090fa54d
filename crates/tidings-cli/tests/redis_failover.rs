//! Losing a Redis server loses nothing answered 201, with `--redis-replicas`: a primary with
//! a replica (killed with `kill -9`, the replica promoted, the node pointed at it), and a
//! Redis Cluster of three primaries and three replicas whose primary is killed under load
//! (the node follows the cluster's failover by itself). Every server is the test's own.

mod common;

use common::free_port;
use common::push::{Agent, Sender, Service, Sub};
use common::redis::{RedisServer, cli, temp_dir, wait_for};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// `count` user agents, each with one subscription, gone offline: their subscriptions and
/// uaids.
async fn offline_subscriptions(service: &Service, sender: &Sender, count: usize) -> Vec<(Sub, String)> {
    let mut subs = Vec::new();
    for _ in 0..count {
        let mut agent = Agent::hello(&service.ws_url(), None).await;
        let sub = agent.register(Some(sender.key())).await;
        let uaid = agent.uaid.clone();
        agent.close().await;
        subs.push((sub, uaid));
    }
    subs
}

/// Sends one message to each subscription at once, named `<index>-<round>`; the names
/// answered 201 and the number answered 503.
async fn round(sender: &Sender, subs: &[(Sub, String)], round: usize) -> (Vec<String>, usize) {
    let sends = subs.iter().enumerate().map(|(k, (sub, _))| async move {
        let text = format!("{k}-{round}");
        (sender.push(sub, &text).await.status.as_u16(), text)
    });
    let mut accepted = Vec::new();
    let mut unavailable = 0;
    for (status, text) in futures_util::future::join_all(sends).await {
        match status {
            201 => accepted.push(text),
            503 => unavailable += 1,
            other => panic!("unexpected {other} for {text}"),
        }
    }
    (accepted, unavailable)
}

/// Every message the user agents receive when they come back (acked as they arrive).
async fn everything_delivered(service: &Service, subs: &[(Sub, String)]) -> HashSet<String> {
    let mut received = HashSet::new();
    for (sub, uaid) in subs {
        let mut agent = Agent::hello(&service.ws_url(), Some(uaid)).await;
        assert_eq!(&agent.uaid, uaid, "the user agent is still known after the failover");
        while let Some(notification) = agent.try_recv(Duration::from_millis(700)).await {
            received.insert(String::from_utf8(sub.decrypt(&notification)).unwrap());
            agent.ack(&notification).await;
        }
    }
    received
}

fn assert_nothing_lost(accepted: &HashSet<String>, received: &HashSet<String>) {
    let lost: Vec<_> = accepted.difference(received).collect();
    assert!(lost.is_empty(), "{} answered 201 and lost: {lost:?}", lost.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_has_every_message_answered_201() {
    let dir = temp_dir("redis-replica");
    let (primary_port, replica_port) = (free_port(), free_port());
    // No persistence on either server: durability comes from the replica alone.
    let primary = RedisServer::start(primary_port, &dir.join("primary"), &["--appendonly", "no"]);
    let replica = RedisServer::start(
        replica_port,
        &dir.join("replica"),
        &["--appendonly", "no", "--replicaof", "127.0.0.1", &primary_port.to_string()],
    );
    let linked = || replica.cli(&["info", "replication"]).contains("master_link_status:up");
    wait_for("the replica to sync", linked);
    let primary_url = format!("redis://127.0.0.1:{primary_port}/");
    let service =
        Service::start(&["--store", &primary_url, "--redis-replicas", "1", "--redis-replica-timeout", "500"]);
    let sender = Sender::new();
    let subs = offline_subscriptions(&service, &sender, 5).await;
    let mut accepted = HashSet::new();
    for n in 0..40 {
        let (ok, unavailable) = round(&sender, &subs, n).await;
        assert_eq!(unavailable, 0, "503 with a healthy replica");
        accepted.extend(ok);
    }
    // A replica that stops answering: no 201 without it, and the refusal is prompt.
    replica.signal("-STOP");
    for n in 40..43 {
        let start = Instant::now();
        let (ok, unavailable) = round(&sender, &subs, n).await;
        assert_eq!((ok.len(), unavailable), (0, subs.len()), "201 without the replica");
        assert!(start.elapsed() < Duration::from_secs(3), "the 503s took {:?}", start.elapsed());
    }
    replica.signal("-CONT");
    for n in 43..80 {
        accepted.extend(round(&sender, &subs, n).await.0);
    }
    // The primary dies right after its last 201; the replica is promoted and the node
    // pointed at it.
    primary.kill9();
    replica.cli(&["replicaof", "no", "one"]);
    drop(service);
    let replica_url = format!("redis://127.0.0.1:{replica_port}/");
    let service = Service::start(&["--store", &replica_url, "--redis-replicas", "0"]);
    let received = everything_delivered(&service, &subs).await;
    assert!(accepted.len() >= 5 * 70, "accepted only {}", accepted.len());
    assert_nothing_lost(&accepted, &received);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_failover_under_load_loses_nothing_answered_201() {
    let dir = temp_dir("redis-cluster-failover");
    let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
    let cluster_args = [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        "1000",
        "--appendonly",
        "no",
    ];
    let mut servers: Vec<Option<RedisServer>> = ports
        .iter()
        .map(|port| Some(RedisServer::start(*port, &dir.join(port.to_string()), &cluster_args)))
        .collect();
    let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut create = vec!["--cluster", "create"];
    create.extend(addresses.iter().map(String::as_str));
    create.extend(["--cluster-replicas", "1", "--cluster-yes"]);
    cli(ports[0], &create);
    wait_for("the cluster to form, every primary with a replica in sync", || {
        let primaries: Vec<String> = ports
            .iter()
            .filter(|p| cli(**p, &["role"]).starts_with("master"))
            .map(|p| cli(*p, &["info", "replication"]))
            .collect();
        ports.iter().all(|p| cli(*p, &["cluster", "info"]).contains("cluster_state:ok"))
            && primaries.len() == 3
            && primaries
                .iter()
                .all(|info| info.contains("connected_slaves:1") && info.contains("state=online"))
    });
    let victim = ports.iter().position(|p| cli(*p, &["role"]).starts_with("master")).unwrap();
    let seeds: Vec<String> = ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect();
    let seeds = seeds.join(",");
    let service =
        Service::start(&["--store", &seeds, "--redis-replicas", "1", "--redis-replica-timeout", "1000"]);
    let sender = Sender::new();
    let subs = offline_subscriptions(&service, &sender, 12).await;

    // Messages to every subscription, round after round; a primary is killed after two
    // seconds. Its replica takes over; the killed server comes back three seconds later and
    // rejoins as the new primary's replica, so that its shard can answer 201 again.
    let (mut accepted, mut unavailable) = (HashSet::new(), 0);
    let start = Instant::now();
    let mut killed_at: Option<Instant> = None;
    let mut recovered = HashSet::new();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(20) && recovered.len() < subs.len() {
        if killed_at.is_none() && start.elapsed() > Duration::from_secs(2) {
            servers[victim].take().unwrap().kill9();
            killed_at = Some(Instant::now());
        }
        if servers[victim].is_none() && killed_at.is_some_and(|at| at.elapsed() > Duration::from_secs(3)) {
            let port = ports[victim];
            servers[victim] = Some(RedisServer::start(port, &dir.join(port.to_string()), &cluster_args));
        }
        let (ok, refused) = round(&sender, &subs, n).await;
        if killed_at.is_some_and(|at| at.elapsed() > Duration::from_secs(3)) {
            recovered.extend(ok.iter().map(|text| text.split('-').next().unwrap().to_owned()));
        }
        accepted.extend(ok);
        unavailable += refused;
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        recovered.len(),
        subs.len(),
        "not every shard accepted messages again after the failover ({} accepted, {unavailable} refused in all)",
        accepted.len()
    );
    assert!(unavailable > 0, "the failover went unnoticed: was a primary killed?");
    let received = everything_delivered(&service, &subs).await;
    assert_nothing_lost(&accepted, &received);
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A message answered 503 because its replica did not confirm it in time is not delivered
/// afterwards: the sender retries a 503, so a message kept on the primary would arrive twice
/// (found by the soak run, after a Redis restart while the replica resynced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_answered_503_for_want_of_a_replica_is_not_delivered() {
    let dir = temp_dir("redis-replica-503");
    let (primary_port, replica_port) = (free_port(), free_port());
    let _primary = RedisServer::start(primary_port, &dir.join("primary"), &["--appendonly", "no"]);
    let replica = RedisServer::start(
        replica_port,
        &dir.join("replica"),
        &["--appendonly", "no", "--replicaof", "127.0.0.1", &primary_port.to_string()],
    );
    wait_for("the replica to sync", || {
        replica.cli(&["info", "replication"]).contains("master_link_status:up")
    });
    let primary_url = format!("redis://127.0.0.1:{primary_port}/");
    let service =
        Service::start(&["--store", &primary_url, "--redis-replicas", "1", "--redis-replica-timeout", "300"]);
    let sender = Sender::new();
    let subs = offline_subscriptions(&service, &sender, 3).await;
    let (before, _) = round(&sender, &subs, 0).await;
    assert_eq!(before.len(), subs.len());
    replica.signal("-STOP");
    let (ok, unavailable) = round(&sender, &subs, 1).await;
    assert_eq!((ok.len(), unavailable), (0, subs.len()), "201 without the replica");
    // The same bytes again, as the fan-out engine retries: refused while the replica is
    // stopped, and stored once it is back (the refused copy took its fingerprint with it,
    // so the retry is not mistaken for a repeat of a message that is gone).
    let (sub, _) = &subs[0];
    let mut message = tidings_sender::Message::new(b"retried".to_vec());
    message.ttl = 60;
    let request =
        tidings_sender::prepare(&sub.subscription(), &message, Some(&sender.signer), common::push::now())
            .unwrap();
    let refused = sender.client.send(tidings_sender::duplicate(&request)).await.unwrap();
    assert_eq!(refused.status, 503);
    replica.signal("-CONT");
    wait_for("the replica to catch up", || {
        replica.cli(&["info", "replication"]).contains("master_link_status:up")
    });
    assert_eq!(sender.client.send(request).await.unwrap().status, 201, "the retry after the 503");
    let received = everything_delivered(&service, &subs).await;
    let expected: HashSet<String> = before.into_iter().chain(["retried".to_owned()]).collect();
    assert_eq!(received, expected, "only the messages answered 201 arrive");
    let _ = std::fs::remove_dir_all(&dir);
}
