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

fn nodes(prefix: &str) -> Vec<Service> {
    (0..3)
        .map(|i| {
            Service::start(&[
                "--store",
                "redis://127.0.0.1:6379/",
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
    let prefix = format!("tidings-test-nodes-{}", std::process::id());
    let nodes = nodes(&prefix);
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
