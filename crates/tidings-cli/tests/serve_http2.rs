//! `tidings serve --tls-cert/--tls-key` speaks HTTP/2 to clients that choose it by ALPN, so
//! that a sender's many POSTs share one connection, and HTTP/1.1 on the same port to every
//! other client: WebSockets, and senders without HTTP/2.

mod common;

use bytes::Bytes;
use common::push::{Sub, TlsService, now};
use http::{Request, StatusCode, Version, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tidings_sender::{Message, prepare};
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpStream};

/// A push request for `text`, signed by `sender`, as HTTP/2 and HTTP/1.1 clients send it.
fn push_request(sender: &common::push::Sender, sub: &Sub, text: &str) -> Request<Full<Bytes>> {
    let mut message = Message::new(text.as_bytes().to_vec());
    message.ttl = 60;
    prepare(&sub.subscription(), &message, Some(&sender.signer), now()).unwrap().map(Full::new)
}

#[tokio::test]
async fn a_sender_posts_many_messages_on_one_http2_connection() {
    let tls = TlsService::start(&[]);
    // The user agent's WebSocket offers http/1.1, as browsers do.
    let mut agent = tls.agent(&[b"http/1.1"]).await;
    let sender = tls.sender();
    let sub = agent.register(Some(sender.key())).await;

    let stream = tls.connect(&[b"h2", b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let texts: BTreeSet<String> = (0..100).map(|i| format!("message {i}")).collect();
    let mut posts = tokio::task::JoinSet::new();
    for text in &texts {
        let (mut send, request) = (send.clone(), push_request(&sender, &sub, text));
        posts.spawn(async move {
            let response = send.send_request(request).await.unwrap();
            (response.version(), response.status())
        });
    }
    while let Some(answer) = posts.join_next().await {
        assert_eq!(answer.unwrap(), (Version::HTTP_2, StatusCode::CREATED));
    }
    let mut received = BTreeSet::new();
    for _ in 0..texts.len() {
        let notification = agent.notification().await;
        received.insert(String::from_utf8(sub.decrypt(&notification)).unwrap());
        agent.ack(&notification).await;
    }
    assert_eq!(received, texts);

    // The same body limit as over HTTP/1.1.
    let (parts, _) = push_request(&sender, &sub, "too large").into_parts();
    let mut request = Request::from_parts(parts, Full::new(Bytes::from(vec![0; 5000])));
    request.headers_mut().remove(header::CONTENT_LENGTH);
    let response = send.clone().send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["errno"], 104);

    // No WebSocket over HTTP/2: `GET /` is the plain description.
    let request = Request::get(format!("{}/", tls.url())).body(Full::new(Bytes::new())).unwrap();
    let response = send.clone().send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("connect here with a WebSocket"));
}

#[tokio::test]
async fn clients_without_http2_get_http1_on_the_same_port() {
    let tls = TlsService::start(&[]);
    let mut agent = tls.agent(&[b"http/1.1"]).await;
    let sender = tls.sender();
    let sub = agent.register(Some(sender.key())).await;
    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let stream = tls.connect(alpn).await;
        assert_eq!(stream.get_ref().1.alpn_protocol(), alpn.first().copied());
        let (mut send, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        for text in ["one", "two"] {
            let response = send.send_request(push_request(&sender, &sub, text)).await.unwrap();
            assert_eq!((response.version(), response.status()), (Version::HTTP_11, StatusCode::CREATED));
            let notification = agent.notification().await;
            assert_eq!(sub.decrypt(&notification), text.as_bytes());
            agent.ack(&notification).await;
        }
    }
}

/// A TCP relay to `target` that counts the connections it relays.
async fn counting_relay(listener: TcpListener, target: u16) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut service) = TcpStream::connect(("127.0.0.1", target)).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut service).await;
                }
            });
        }
    });
    count
}

#[tokio::test]
async fn the_sender_library_sends_concurrently_over_one_connection() {
    // Endpoints name the relay, so that the sender's connections can be counted.
    let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public_url = format!("https://127.0.0.1:{}", relay.local_addr().unwrap().port());
    let tls = TlsService::start(&["--public-url", &public_url]);
    let connections = counting_relay(relay, tls.service.port).await;
    let mut agent = tls.agent(&[]).await;
    let sender = tls.sender();
    let sub = agent.register(Some(sender.key())).await;
    assert!(sub.endpoint.starts_with(&public_url), "{}", sub.endpoint);

    assert_eq!(sender.push(&sub, "first").await.status, 201);
    let texts: Vec<String> = (0..50).map(|i| format!("concurrent {i}")).collect();
    let answers = futures_util::future::join_all(texts.iter().map(|text| sender.push(&sub, text))).await;
    assert!(answers.iter().all(|answer| answer.status == 201));
    for _ in 0..51 {
        let notification = agent.notification().await;
        agent.ack(&notification).await;
    }
    // HTTP/1.1 would have needed a connection per request in flight.
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_http2_connection_that_makes_no_request_is_closed() {
    let tls = TlsService::start(&[]);
    let mut stream = tls.connect(&[b"h2"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // The server's preface (SETTINGS), its GOAWAY, then the end: within the header timeout
    // (10 s) and the time given to a client to leave (5 s), never after.
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = [0u8; 1024];
        while matches!(stream.read(&mut buf).await, Ok(1..)) {}
    })
    .await;
    assert!(closed.is_ok(), "the connection was still open after 30 s");
}
