//! `tidings serve` as a black box: real sockets, a real WebSocket client, real senders.

mod common;

use common::push::{Agent, Sender, Service};
use std::time::Duration;
use tidings_sender::Verdict;

#[tokio::test]
async fn live_delivery_decrypts_and_ack_deletes() {
    let service = Service::start(&[]);
    let sender = Sender::new();
    let mut agent = Agent::hello(&service.ws_url(), None).await;
    let sub = agent.register(Some(sender.key())).await;
    assert!(sub.endpoint.starts_with(&format!("{}/push/", service.url())), "{}", sub.endpoint);

    let response = sender.push(&sub, "Hello, Firefox").await;
    assert_eq!(response.status, 201, "{response:?}");
    assert_eq!(response.ttl, Some(60));
    let location = response.location.clone().unwrap();
    assert!(location.starts_with(&format!("{}/m/", service.url())), "{location}");

    let notification = agent.notification().await;
    assert_eq!(notification["channelID"], sub.channel_id.as_str());
    assert_eq!(sub.decrypt(&notification), b"Hello, Firefox");
    agent.ack(&notification).await;
    // Once acked, the message is gone: cancelling it finds nothing.
    let client = &sender.client;
    let mut gone = false;
    for _ in 0..50 {
        let request = http::Request::delete(&location).body(bytes::Bytes::new()).unwrap();
        let answer = client.send(request).await.unwrap();
        if answer.status == 404 {
            assert_eq!(answer.error.unwrap().errno, Some(106));
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "the acked message was not deleted");
    assert_eq!(response.verdict, Verdict::Accepted);
}
