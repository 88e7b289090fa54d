//! Several `tidings serve` nodes sharing one Redis: any node accepts any endpoint (the
//! endpoint keys are shared through Redis), a message POSTed to one node reaches a user agent
//! connected to another at once, and a user agent has one connection across all nodes.

mod common;

use common::push::{Agent, Sender, Service, Sub};
use futures_util::StreamExt as _;
use serde_json::json;
use std::time::Duration;
use tidings_sender::{Message, Subscription, prepare};
use tokio_tungstenite::tungstenite::protocol::Message as Frame;

const PUBLIC: &str = "http://push.example.test";

const REDIS: &str = "redis://127.0.0.1:6379/";
/// The cluster `scripts/test` starts.
const CLUSTER: &str = "redis://127.0.0.1:7101,redis://127.0.0.1:7102,redis://127.0.0.1:7103";

fn nodes(prefix: &str) -> Vec<Service> {
    nodes_on(REDIS, prefix)
}

fn nodes_on(store: &str, prefix: &str) -> Vec<Service> {
    (0..3)
        .map(|i| {
            Service::start(&[
                "--store",
                store,
                "--redis-prefix",
                prefix,
                "--node-id",
                &format!("node-{i}"),
                "--public-url",
                PUBLIC,
            ])
        })
        .collect()
}

/// The subscription as reached through `node` (the public URL is the load balancer's).
fn via(sub: &Sub, node: &Service) -> Subscription {
    let mut json = sub.json();
    json["endpoint"] = json!(sub.endpoint.replace(PUBLIC, &node.url()));
    Subscription::parse(&json.to_string()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_nodes_exactly_once() {
    cross_nodes(REDIS).await;
}

/// The same on a Redis Cluster, where the nodes reach each other by sharded pub/sub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_nodes_exactly_once_on_a_cluster() {
    cross_nodes(CLUSTER).await;
}

async fn cross_nodes(store: &str) {
    let prefix = format!("tidings-test-nodes-{}-{}", std::process::id(), store.len());
    let nodes = nodes_on(store, &prefix);
    let sender = Sender::new();
    let mut agents = Vec::new();
    for i in 0..6 {
        let mut agent = Agent::hello(&nodes[i % 3].ws_url(), None).await;
        let sub = agent.register(None).await;
        assert!(sub.endpoint.starts_with(&format!("{PUBLIC}/push/")));
        agents.push((agent, sub));
    }
    // 60 messages, each POSTed to a node chosen in turn, whoever holds the connection.
    for k in 0..60 {
        let (_, sub) = &agents[k % 6];
        let mut message = Message::new(format!("message {k}").into_bytes());
        message.ttl = 600;
        let request =
            prepare(&via(sub, &nodes[(k * 7 + k / 6) % 3]), &message, None, common::push::now()).unwrap();
        let response = sender.client.send(request).await.unwrap();
        assert_eq!(response.status, 201, "{response:?}");
    }
    for (i, (agent, sub)) in agents.iter_mut().enumerate() {
        for k in (i..60).step_by(6) {
            let n = agent.notification().await;
            assert_eq!(sub.decrypt(&n), format!("message {k}").as_bytes());
            agent.ack(&n).await;
        }
        assert!(agent.try_recv(Duration::from_millis(200)).await.is_none(), "a duplicate");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_per_user_agent_across_nodes() {
    let prefix = format!("tidings-test-moving-{}", std::process::id());
    let nodes = nodes(&prefix);
    let sender = Sender::new();
    let mut first = Agent::hello(&nodes[0].ws_url(), None).await;
    let sub = first.register(None).await;
    let uaid = first.uaid.clone();
    // The same user agent connects to another node: the older connection is closed.
    let mut second = Agent::hello(&nodes[1].ws_url(), Some(&uaid)).await;
    assert_eq!(second.uaid, uaid, "every node knows the uaid");
    match tokio::time::timeout(Duration::from_secs(5), first.ws.next()).await {
        Ok(Some(Ok(Frame::Close(Some(close))))) => assert_eq!(u16::from(close.code), 4000),
        other => panic!("the connection on the first node should close, got {other:?}"),
    }
    // A message sent through the first node now reaches the second.
    let mut message = Message::new(b"followed you".to_vec());
    message.ttl = 600;
    let request = prepare(&via(&sub, &nodes[0]), &message, None, common::push::now()).unwrap();
    assert_eq!(sender.client.send(request).await.unwrap().status, 201);
    assert_eq!(sub.decrypt(&second.notification().await), b"followed you");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_node_under_load_loses_nothing() {
    use std::collections::{HashMap, HashSet};
    let prefix = format!("tidings-test-kill-{}", std::process::id());
    let mut nodes = nodes(&prefix);
    let sender = Sender::new();
    // Six user agents, two per node; those of node 0 will lose their node.
    let mut agents = Vec::new();
    for i in 0..6 {
        let mut agent = Agent::hello(&nodes[i % 3].ws_url(), None).await;
        let sub = agent.register(None).await;
        agents.push((agent, sub, i % 3));
    }
    let mut accepted: HashMap<usize, HashSet<String>> = HashMap::new();
    let mut received: HashMap<usize, Vec<String>> = HashMap::new();
    let mut killed = false;
    for k in 0..240 {
        if k == 80 {
            nodes[0].kill9();
            killed = true;
        }
        let who = k % 6;
        // Senders go through the nodes in turn (the dead one refuses connections).
        let node = &nodes[k % 3];
        let mut message = Message::new(format!("m{k}").into_bytes());
        message.ttl = 600;
        let request = prepare(&via(&agents[who].1, node), &message, None, common::push::now()).unwrap();
        if let Ok(response) = sender.client.send(request).await {
            assert!(response.status == 201 || response.status == 503, "{response:?}");
            if response.status == 201 {
                accepted.entry(who).or_default().insert(format!("m{k}"));
            }
        }
        for (i, (agent, sub, home)) in agents.iter_mut().enumerate() {
            // The user agents of the dead node come back through node 1.
            if killed && *home == 0 {
                let uaid = agent.uaid.clone();
                *agent = Agent::hello(&nodes[1].ws_url(), Some(&uaid)).await;
                assert_eq!(agent.uaid, uaid);
                *home = 1;
            }
            while let Some(n) = agent.try_recv(Duration::from_millis(5)).await {
                received.entry(i).or_default().push(String::from_utf8(sub.decrypt(&n)).unwrap());
                agent.ack(&n).await;
            }
        }
    }
    for (i, (agent, sub, _)) in agents.iter_mut().enumerate() {
        while let Some(n) = agent.try_recv(Duration::from_millis(300)).await {
            received.entry(i).or_default().push(String::from_utf8(sub.decrypt(&n)).unwrap());
            agent.ack(&n).await;
        }
    }
    for i in 0..6 {
        let got = received.get(&i).cloned().unwrap_or_default();
        let distinct: HashSet<String> = got.iter().cloned().collect();
        let lost: Vec<_> =
            accepted.get(&i).cloned().unwrap_or_default().difference(&distinct).cloned().collect();
        assert!(lost.is_empty(), "user agent {i} lost {lost:?}");
        // Only an ack that died with node 0 may bring a message twice.
        if i % 3 != 0 {
            assert_eq!(got.len(), distinct.len(), "user agent {i} got a duplicate: {got:?}");
        }
    }
    // Everything is acked now: coming back brings nothing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (agent, _, _) in &agents {
        let mut again = Agent::hello(&nodes[2].ws_url(), Some(&agent.uaid)).await;
        assert!(again.try_recv(Duration::from_millis(200)).await.is_none(), "an acked message came back");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_to_a_dead_node_is_cleared_and_the_message_waits() {
    let prefix = format!("tidings-test-stale-{}", std::process::id());
    let mut nodes = nodes(&prefix);
    let sender = Sender::new();
    let mut agent = Agent::hello(&nodes[0].ws_url(), None).await;
    let sub = agent.register(None).await;
    let uaid = agent.uaid.clone();
    let route = format!("{prefix}:{{{uaid}}}:r");
    let get_route = || {
        let out = std::process::Command::new("redis-cli").args(["GET", &route]).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(get_route(), "node-0");
    nodes[0].kill9();
    drop(agent);
    // The POST lands on node 1; node 0 hears nothing, so its route is stale and goes.
    let mut message = Message::new(b"waits for you".to_vec());
    message.ttl = 600;
    let request = prepare(&via(&sub, &nodes[1]), &message, None, common::push::now()).unwrap();
    assert_eq!(sender.client.send(request).await.unwrap().status, 201);
    assert_eq!(get_route(), "", "the stale route was not cleared");
    assert_eq!(common::push::metric(&nodes[1], "tidings_messages_stored_total").await, Some(1.0));
    // The user agent comes back through another node and gets it.
    let mut agent = Agent::hello(&nodes[2].ws_url(), Some(&uaid)).await;
    assert_eq!(sub.decrypt(&agent.notification().await), b"waits for you");
}
