//! `tidings serve` as a black box: real sockets, a real WebSocket client, real senders.

mod common;

use common::push::{Agent, Sender, Service};
use std::time::Duration;
use tidings_sender::Verdict;

#[tokio::test]
async fn live_delivery_decrypts_and_ack_deletes() {
    let service = Service::start(&[]);
    let (sender, mut agent, sub) = subscribed(&service).await;
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

use bytes::Bytes;
use common::push::{connect, eventually, get, metric, subscribed, subscribed_offline};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tidings_sender::{Message, prepare};
use tokio_tungstenite::tungstenite::protocol::Message as Frame;

/// Sends a hand-built request to an endpoint; returns (status, errno, headers).
async fn raw_post(
    sender: &Sender,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> tidings_sender::Response {
    let mut request = http::Request::post(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    sender.client.send(request.body(Bytes::from(body)).unwrap()).await.unwrap()
}

fn errno(response: &tidings_sender::Response) -> Option<i64> {
    response.error.as_ref().and_then(|e| e.errno)
}

#[tokio::test]
async fn offline_messages_arrive_in_order_and_acked_ones_never_return() {
    let service = Service::start(&[]);
    let (sender, sub, uaid) = subscribed_offline(&service).await;
    for i in 0..5 {
        assert_eq!(sender.push(&sub, &format!("message {i}")).await.status, 201);
    }
    let mut agent = Agent::hello(&service.ws_url(), Some(&uaid)).await;
    assert_eq!(agent.uaid, uaid, "a known uaid is resumed");
    let mut got = Vec::new();
    for i in 0..5 {
        let n = agent.notification().await;
        got.push(String::from_utf8(sub.decrypt(&n)).unwrap());
        if i < 3 {
            agent.ack(&n).await;
        }
    }
    assert_eq!(got, ["message 0", "message 1", "message 2", "message 3", "message 4"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    agent.close().await;
    // The two unacked ones come back; the acked three never do.
    let mut agent = Agent::hello(&service.ws_url(), Some(&uaid)).await;
    let mut again = Vec::new();
    for _ in 0..2 {
        let n = agent.notification().await;
        again.push(String::from_utf8(sub.decrypt(&n)).unwrap());
        agent.ack(&n).await;
    }
    assert_eq!(again, ["message 3", "message 4"]);
    assert!(agent.try_recv(Duration::from_millis(300)).await.is_none());
}

/// A sender that retries a POST whose answer it never got sends the same bytes again (the
/// fan-out engine does; the encryption's random salt makes them unique): the retry is
/// answered as the first was and delivered once, whether it comes while the first copy is
/// pending or after it was acknowledged.
#[tokio::test]
async fn a_retried_post_is_answered_like_the_first_and_delivered_once() {
    let service = Service::start(&[]);
    let (sender, sub, uaid) = subscribed_offline(&service).await;
    let mut message = Message::new(b"only once".to_vec());
    message.ttl = 600;
    let request = prepare(&sub.subscription(), &message, Some(&sender.signer), common::push::now()).unwrap();
    let first = sender.client.send(tidings_sender::duplicate(&request)).await.unwrap();
    let retry = sender.client.send(tidings_sender::duplicate(&request)).await.unwrap();
    assert_eq!((first.status.as_u16(), retry.status.as_u16()), (201, 201));
    // Both answers name one message (sealed anew each time, so not the same text): cancelling
    // through one leaves nothing for the other.
    let cancelled =
        prepare(&sub.subscription(), &message, Some(&sender.signer), common::push::now()).unwrap();
    let one = sender.client.send(tidings_sender::duplicate(&cancelled)).await.unwrap();
    let two = sender.client.send(cancelled).await.unwrap();
    assert_eq!(cancel(&sender, &two).await, 204);
    assert_eq!(cancel(&sender, &one).await, 404, "the retry was stored as a message of its own");
    // A message of its own, with the same text, is another message.
    assert_eq!(sender.push(&sub, "only once").await.status, 201);
    let mut agent = Agent::hello(&service.ws_url(), Some(&uaid)).await;
    for _ in 0..2 {
        let notification = agent.notification().await;
        assert_eq!(sub.decrypt(&notification), b"only once");
        agent.ack(&notification).await;
    }
    assert!(agent.try_recv(Duration::from_millis(300)).await.is_none(), "the retry was delivered too");
    // After the ack, a late retry is still answered 201 and not delivered again.
    let late = sender.client.send(tidings_sender::duplicate(&request)).await.unwrap();
    assert_eq!(late.status, 201);
    assert!(agent.try_recv(Duration::from_millis(300)).await.is_none(), "the late retry was delivered");
    assert_eq!(cancel(&sender, &late).await, 404, "the late retry was stored");
    assert_eq!(metric(&service, "tidings_messages_repeated_total").await, Some(3.0));
}

/// `DELETE` of the message an answer names; the status.
async fn cancel(sender: &Sender, answer: &tidings_sender::Response) -> u16 {
    let location = answer.location.as_deref().expect("a Location");
    let request = http::Request::delete(location).body(Bytes::new()).unwrap();
    sender.client.send(request).await.unwrap().status.as_u16()
}

#[tokio::test]
async fn unknown_uaid_gets_a_new_one() {
    let service = Service::start(&[]);
    let agent = Agent::hello(&service.ws_url(), Some("00112233445566778899aabbccddeeff")).await;
    assert_ne!(agent.uaid, "00112233445566778899aabbccddeeff");
    assert_eq!(agent.uaid.len(), 32);
}

#[tokio::test]
async fn bad_push_requests_get_their_errno_and_store_nothing() {
    let service = Service::start(&[]);
    let (sender, sub, uaid) = subscribed_offline(&service).await;
    let endpoint = sub.endpoint.clone();
    let now = common::push::now();
    let auth = sender.signer.token(&service.url(), now).vapid_authorization.to_string();
    let enc = ("content-encoding", "aes128gcm");
    let body = vec![1u8; 100];
    /// What is wrong, the headers, the body, and the status and errno expected.
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, i64);
    let cases: Vec<Case> = vec![
        ("no TTL", vec![("authorization", &auth), enc], body.clone(), 400, 111),
        ("negative TTL", vec![("ttl", "-5"), ("authorization", &auth), enc], body.clone(), 400, 111),
        ("text TTL", vec![("ttl", "soon"), ("authorization", &auth), enc], body.clone(), 400, 111),
        (
            "bad urgency",
            vec![("ttl", "60"), ("urgency", "urgent"), ("authorization", &auth), enc],
            body.clone(),
            400,
            110,
        ),
        (
            "33-character topic",
            vec![
                ("ttl", "60"),
                ("topic", "abcdefghijklmnopqrstuvwxyz0123456"),
                ("authorization", &auth),
                enc,
            ],
            body.clone(),
            400,
            110,
        ),
        ("no Content-Encoding", vec![("ttl", "60"), ("authorization", &auth)], body.clone(), 400, 110),
        (
            "unknown Content-Encoding",
            vec![("ttl", "60"), ("authorization", &auth), ("content-encoding", "gzip")],
            body.clone(),
            400,
            110,
        ),
        ("4097 bytes", vec![("ttl", "60"), ("authorization", &auth), enc], vec![1u8; 4097], 413, 104),
        ("no VAPID", vec![("ttl", "60"), enc], body.clone(), 401, 109),
        (
            "garbage VAPID",
            vec![("ttl", "60"), ("authorization", "vapid t=abc.def.ghi, k=BBBB"), enc],
            body.clone(),
            401,
            109,
        ),
        // Bad credentials and a bad message: the credentials are answered first (as autopush).
        (
            "garbage VAPID, no TTL, bad encoding",
            vec![("authorization", "vapid t=abc.def.ghi, k=BBBB"), ("content-encoding", "gzip")],
            body.clone(),
            401,
            109,
        ),
        ("no VAPID, no Content-Encoding", vec![("ttl", "60")], body.clone(), 401, 109),
    ];
    for (what, headers, body, status, expected) in cases {
        let response = raw_post(&sender, &endpoint, &headers, body).await;
        assert_eq!(
            (response.status.as_u16(), errno(&response)),
            (status, Some(expected)),
            "{what}: {response:?}"
        );
        if status == 401 {
            assert_eq!(response.headers["www-authenticate"], "vapid", "{what}");
        }
    }
    // Tokens: the wrong key, an expired one, one far in the future, the wrong audience.
    let other = Sender::new();
    let wrong_key = other.signer.token(&service.url(), now).vapid_authorization.to_string();
    let response =
        raw_post(&sender, &endpoint, &[("ttl", "60"), ("authorization", &wrong_key), enc], body.clone())
            .await;
    assert_eq!((response.status.as_u16(), errno(&response)), (403, Some(112)), "{response:?}");
    for (what, claims) in [
        ("expired", json!({"aud": service.url(), "exp": now - 10, "sub": "mailto:a@example.com"})),
        ("far future", json!({"aud": service.url(), "exp": now + 25 * 3600, "sub": "mailto:a@example.com"})),
        (
            "wrong audience",
            json!({"aud": "https://fcm.googleapis.com", "exp": now + 3600, "sub": "mailto:a@example.com"}),
        ),
        ("no exp", json!({"aud": service.url(), "sub": "mailto:a@example.com"})),
    ] {
        let token = common::push::sign_claims(sender.key(), &claims);
        let auth = format!("vapid t={token},k={}", sender.key().public_key_base64());
        let response =
            raw_post(&sender, &endpoint, &[("ttl", "60"), ("authorization", &auth), enc], body.clone()).await;
        assert_eq!((response.status.as_u16(), errno(&response)), (401, Some(109)), "{what}: {response:?}");
    }
    // A tampered endpoint, and one that never existed.
    let mut tampered = endpoint.clone().into_bytes();
    let i = tampered.len() - 5;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let response = raw_post(
        &sender,
        std::str::from_utf8(&tampered).unwrap(),
        &[("ttl", "60"), ("authorization", &auth), enc],
        body.clone(),
    )
    .await;
    assert_eq!((response.status.as_u16(), errno(&response)), (404, Some(102)));
    let response =
        raw_post(&sender, &format!("{}/push/nonsense", service.url()), &[("ttl", "60")], vec![]).await;
    assert_eq!((response.status.as_u16(), errno(&response)), (404, Some(102)));
    // Nothing of the above was stored.
    let mut agent = Agent::hello(&service.ws_url(), Some(&uaid)).await;
    assert!(agent.try_recv(Duration::from_millis(500)).await.is_none(), "a refused message was delivered");
}

#[tokio::test]
async fn unsubscribed_endpoint_is_gone() {
    let service = Service::start(&[]);
    let (sender, mut agent, sub) = subscribed(&service).await;
    agent.send(json!({"messageType": "unregister", "channelID": sub.channel_id, "code": 200})).await;
    let reply = agent.recv().await;
    assert_eq!((reply["messageType"].as_str(), reply["status"].as_u64()), (Some("unregister"), Some(200)));
    let response = sender.push(&sub, "too late").await;
    assert_eq!((response.status.as_u16(), errno(&response)), (410, Some(103)), "{response:?}");
    // The verdict is final: senders and caches may keep it for a day.
    assert_eq!(response.headers["cache-control"], "max-age=86400");
}

#[tokio::test]
async fn topics_replace_and_delete_cancels() {
    let service = Service::start(&[]);
    let (sender, sub, uaid) = subscribed_offline(&service).await;
    let with_topic = |text: &str| {
        let mut m = Message::new(text.as_bytes().to_vec());
        m.ttl = 60;
        m.topic = Some("score".parse().unwrap());
        m
    };
    assert_eq!(sender.send(&sub, &with_topic("1-0")).await.status, 201);
    assert_eq!(sender.send(&sub, &with_topic("2-0")).await.status, 201);
    let cancelled = sender.push(&sub, "cancelled").await;
    let request = http::Request::delete(cancelled.location.unwrap()).body(Bytes::new()).unwrap();
    assert_eq!(sender.client.send(request).await.unwrap().status, 204);
    let mut agent = Agent::hello(&service.ws_url(), Some(&uaid)).await;
    let n = agent.notification().await;
    assert_eq!(sub.decrypt(&n), b"2-0");
    assert!(
        agent.try_recv(Duration::from_millis(300)).await.is_none(),
        "replaced or cancelled message delivered"
    );
}

#[tokio::test]
async fn ttl_zero_is_now_or_never_and_long_ttls_are_capped() {
    let service = Service::start(&["--max-ttl", "100"]);
    let (sender, mut agent, sub) = subscribed(&service).await;
    let mut now_only = Message::new(b"now".to_vec());
    now_only.ttl = 0;
    // Online: delivered at once.
    assert_eq!(sender.send(&sub, &now_only).await.ttl, Some(0));
    let n = agent.notification().await;
    assert_eq!(sub.decrypt(&n), b"now");
    agent.ack(&n).await;
    let uaid = agent.uaid.clone();
    agent.close().await;
    // Offline: accepted but never delivered.
    let mut never = Message::new(b"never".to_vec());
    never.ttl = 0;
    assert_eq!(sender.send(&sub, &never).await.status, 201);
    let mut long = Message::new(b"long".to_vec());
    long.ttl = 1_000_000;
    assert_eq!(sender.send(&sub, &long).await.ttl, Some(100), "the TTL used is echoed");
    let mut agent = Agent::hello(&service.ws_url(), Some(&uaid)).await;
    let n = agent.notification().await;
    assert_eq!(sub.decrypt(&n), b"long");
    assert!(agent.try_recv(Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn pending_cap_answers_429_with_retry_after() {
    let service = Service::start(&["--max-pending", "3"]);
    let (sender, sub, _) = subscribed_offline(&service).await;
    for i in 0..3 {
        assert_eq!(sender.push(&sub, &format!("{i}")).await.status, 201);
    }
    let full = sender.push(&sub, "one too many").await;
    assert_eq!((full.status.as_u16(), errno(&full)), (429, Some(113)), "{full:?}");
    assert_eq!(full.retry_after, Some(Duration::from_secs(10)));
    assert_eq!(full.verdict, Verdict::RetryLater);
}

#[tokio::test]
async fn unrestricted_subscriptions_legacy_encoding_and_empty_messages() {
    let service = Service::start(&[]);
    let sender = Sender::new();
    let mut agent = Agent::hello(&service.ws_url(), None).await;
    let sub = agent.register(None).await;
    // No VAPID at all is fine for an unrestricted subscription.
    let mut legacy = Message::new(b"legacy".to_vec());
    legacy.ttl = 60;
    legacy.encoding = tidings_crypto::webpush::ContentEncoding::Aesgcm;
    let request = prepare(&sub.subscription(), &legacy, None, common::push::now()).unwrap();
    assert_eq!(sender.client.send(request).await.unwrap().status, 201);
    let n = agent.notification().await;
    assert_eq!(n["headers"]["encoding"], "aesgcm");
    assert_eq!(sub.decrypt(&n), b"legacy");
    let mut empty = Message::new(Vec::new());
    empty.ttl = 60;
    assert_eq!(sender.send(&sub, &empty).await.status, 201);
    let n = agent.notification().await;
    assert!(n.get("data").is_none() && n.get("headers").is_none(), "{n}");
}

/// `header` (`name=value` parameters separated by `;`) as senders that pad write it: every
/// value quoted and base64-padded.
fn padded_and_quoted(header: &str) -> String {
    let param = |p: &str| {
        let (name, value) = p.split_once('=').unwrap();
        format!(r#"{name}="{value}{}""#, "=".repeat((4 - value.len() % 4) % 4))
    };
    header.split(';').map(param).collect::<Vec<_>>().join(";")
}

#[tokio::test]
async fn padded_quoted_aesgcm_headers_reach_the_user_agent_unpadded() {
    let service = Service::start(&[]);
    let (sender, mut agent, sub) = subscribed(&service).await;
    let mut legacy = Message::new(b"padded by the sender".to_vec());
    legacy.ttl = 60;
    legacy.encoding = tidings_crypto::webpush::ContentEncoding::Aesgcm;
    let mut request =
        prepare(&sub.subscription(), &legacy, Some(&sender.signer), common::push::now()).unwrap();
    let header = |name: &str| request.headers()[name].to_str().unwrap().to_owned();
    let (encryption, crypto_key) = (header("encryption"), header("crypto-key"));
    assert!(crypto_key.starts_with("dh=") && crypto_key.contains(";p256ecdsa="), "{crypto_key}");
    for (name, clean) in [("encryption", &encryption), ("crypto-key", &crypto_key)] {
        let padded = padded_and_quoted(clean);
        assert!(padded.contains(r#"=""#) && padded.ends_with(r#"=""#), "{padded}");
        request.headers_mut().insert(name, padded.parse().unwrap());
    }
    let response = sender.client.send(request).await.unwrap();
    assert_eq!(response.status, 201, "{response:?}");
    // Firefox refuses padded salt and dh values: they arrive as the sender's library wrote
    // them before padding, the p256ecdsa parameter included, and decrypt.
    let n = agent.notification().await;
    assert_eq!(n["headers"]["encryption"], encryption.as_str());
    assert_eq!(n["headers"]["crypto_key"], crypto_key.as_str());
    assert_eq!(sub.decrypt(&n), b"padded by the sender");
}

/// `text` for `sub`, in aes128gcm, signed by `sender` the pre-RFC way: `Authorization:
/// <scheme> <jwt>` with the key in `Crypto-Key: p256ecdsa=`.
async fn send_draft_signed(
    service: &Service,
    sub: &common::push::Sub,
    sender: &Sender,
    scheme: &str,
    text: &str,
) -> tidings_sender::Response {
    let mut message = Message::new(text.as_bytes().to_vec());
    message.ttl = 60;
    let mut request = prepare(&sub.subscription(), &message, None, common::push::now()).unwrap();
    let token = sender.signer.token(&service.url(), common::push::now());
    let headers = request.headers_mut();
    headers.insert("authorization", format!("{scheme} {}", token.jwt).parse().unwrap());
    headers.insert("crypto-key", format!("p256ecdsa={}", sender.key().public_key_base64()).parse().unwrap());
    sender.client.send(request).await.unwrap()
}

#[tokio::test]
async fn the_draft_bearer_scheme_is_accepted_like_webpush() {
    let service = Service::start(&[]);
    let (sender, mut agent, sub) = subscribed(&service).await;
    for scheme in ["Bearer", "bearer", "WebPush"] {
        let response = send_draft_signed(&service, &sub, &sender, scheme, scheme).await;
        assert_eq!(response.status, 201, "{scheme}: {response:?}");
        let n = agent.notification().await;
        assert_eq!(sub.decrypt(&n), scheme.as_bytes());
        agent.ack(&n).await;
    }
    // Signed by a key that is not the subscription's: refused as for the RFC 8292 form.
    let other = Sender::new();
    let rfc = other.push(&sub, "wrong key").await;
    assert_eq!((rfc.status.as_u16(), errno(&rfc)), (403, Some(112)), "{rfc:?}");
    for scheme in ["Bearer", "WebPush"] {
        let draft = send_draft_signed(&service, &sub, &other, scheme, "wrong key").await;
        assert_eq!((draft.status, &draft.error), (rfc.status, &rfc.error), "{scheme}");
    }
    assert!(agent.try_recv(Duration::from_millis(300)).await.is_none(), "a refused message was delivered");
}

#[tokio::test]
async fn hostile_websocket_frames_close_the_connection() {
    let service = Service::start(&["--hello-timeout", "1"]);
    let close_code = |frame: Option<Result<Frame, _>>| match frame {
        Some(Ok(Frame::Close(Some(close)))) => u16::from(close.code),
        other => panic!("expected a close frame, got {other:?}"),
    };
    let cases: Vec<(&str, Frame, u16)> = vec![
        ("not JSON", Frame::text("}{"), 1008),
        (
            "register before hello",
            Frame::text(r#"{"messageType":"register","channelID":"28e6a170-10c3-4bfb-9cac-991e204ffc85"}"#),
            1008,
        ),
        ("unknown type", Frame::text(r#"{"messageType":"launch"}"#), 1008),
        ("binary", Frame::binary(vec![1, 2, 3]), 1003),
        ("oversized", Frame::text("x".repeat(20_000)), 1009),
    ];
    for (what, frame, expected) in cases {
        let mut ws = connect(&service.ws_url()).await;
        ws.send(frame).await.unwrap();
        assert_eq!(close_code(ws.next().await), expected, "{what}");
    }
    // A client that never says hello is closed after the timeout.
    let mut ws = connect(&service.ws_url()).await;
    let start = std::time::Instant::now();
    assert_eq!(close_code(ws.next().await), 1008);
    assert!(start.elapsed() < Duration::from_secs(5));
    // Raw bytes that are not a valid frame (unmasked, reserved bits) are a protocol error.
    for raw in [&[0x81u8, 0x02, b'{', b'}'][..], &[0xf1, 0x80, 0, 0, 0, 0][..]] {
        let mut ws = connect(&service.ws_url()).await;
        let tcp = match ws.get_mut() {
            tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp,
            _ => unreachable!(),
        };
        tokio::io::AsyncWriteExt::write_all(tcp, raw).await.unwrap();
        let mut buf = [0u8; 256];
        let n = tokio::io::AsyncReadExt::read(tcp, &mut buf).await.unwrap();
        assert_eq!(&buf[..2], &[0x88, n as u8 - 2], "a close frame");
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), 1002);
    }
    // The service is still fine.
    Agent::hello(&service.ws_url(), None).await;
}

#[tokio::test]
async fn newer_connection_replaces_older_and_pings_are_answered() {
    let service = Service::start(&[]);
    let sender = Sender::new();
    let mut first = Agent::hello(&service.ws_url(), None).await;
    let sub = first.register(Some(sender.key())).await;
    first.send(json!({})).await;
    assert_eq!(first.recv().await, json!({}));
    first.send(json!({"messageType": "broadcast_subscribe", "broadcasts": {"a": "1"}})).await;
    assert_eq!(first.recv().await["messageType"], "broadcast");
    let mut second = Agent::hello(&service.ws_url(), Some(&first.uaid)).await;
    match first.ws.next().await {
        Some(Ok(Frame::Close(Some(close)))) => assert_eq!(u16::from(close.code), 4000),
        other => panic!("the older connection should be closed, got {other:?}"),
    }
    assert_eq!(sender.push(&sub, "to the newer one").await.status, 201);
    assert_eq!(sub.decrypt(&second.notification().await), b"to the newer one");
}

#[tokio::test]
async fn a_client_that_never_reads_is_disconnected_and_loses_nothing() {
    let service = Service::start(&["--write-timeout", "2"]);
    let sender = Sender::new();
    // A user agent with a tiny receive buffer, so that not reading stalls the server soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(([127, 0, 0, 1], service.port).into()).await.unwrap();
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(service.ws_url())
            .unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "push-notification".parse().unwrap());
    let (ws, _) = tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
        .await
        .unwrap();
    let mut agent = Agent::over(ws, None).await;
    let sub = agent.register(Some(sender.key())).await;
    let uaid = agent.uaid.clone();
    // Stop reading: push far more than the socket buffers hold.
    let text = "x".repeat(3000);
    let mut accepted = 0;
    for _ in 0..600 {
        if sender.push(&sub, &text).await.status == 201 {
            accepted += 1;
        }
    }
    assert!(accepted >= 600 - 1, "{accepted}");
    // The service closes the stalled connection; the messages stay stored.
    eventually("the stalled connection to be closed", || async {
        common::push::metric(&service, "tidings_websocket_connections").await == Some(0.0)
    })
    .await;
    drop(agent);
    let mut again = Agent::hello(&service.ws_url(), Some(&uaid)).await;
    let mut delivered = 0;
    while let Some(n) = again.try_recv(Duration::from_secs(2)).await {
        assert_eq!(sub.decrypt(&n).len(), 3000);
        again.ack(&n).await;
        delivered += 1;
    }
    assert_eq!(delivered, accepted);
}

#[tokio::test]
async fn health_and_metrics() {
    let service = Service::start(&[]);
    let (sender, mut agent, sub) = subscribed(&service).await;
    sender.push(&sub, "counted").await;
    let n = agent.notification().await;
    agent.ack(&n).await;
    let health = get(service.port, "/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains(r#""storage":"OK""#), "{health}");
    eventually("the ack to be counted", || async {
        metric(&service, "tidings_messages_acked_total").await == Some(1.0)
    })
    .await;
    for (name, value) in [
        ("tidings_websocket_connections", 1.0),
        ("tidings_user_agents_online", 1.0),
        ("tidings_messages_accepted_total", 1.0),
        ("tidings_messages_delivered_total", 1.0),
    ] {
        assert_eq!(metric(&service, name).await, Some(value), "{name}");
    }
    let errors = get(service.port, "/errors").await;
    assert!(errors.contains("| 400 | 111 |"), "{errors}");
    let root = get(service.port, "/").await;
    assert!(root.contains("Tidings push service"), "{root}");
}

#[tokio::test]
async fn accepted_messages_survive_kill_9() {
    let mut service = Service::start(&[]);
    let (sender, sub, uaid) = subscribed_offline(&service).await;
    for i in 0..20 {
        assert_eq!(sender.push(&sub, &format!("durable {i}")).await.status, 201);
    }
    service.kill9();
    service.restart();
    let mut agent = Agent::hello(&service.ws_url(), Some(&uaid)).await;
    assert_eq!(agent.uaid, uaid, "the uaid survived");
    for i in 0..20 {
        let n = agent.notification().await;
        assert_eq!(sub.decrypt(&n), format!("durable {i}").as_bytes());
        agent.ack(&n).await;
    }
    // Acks are durable too: after another kill, nothing comes back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    service.kill9();
    service.restart();
    let mut agent = Agent::hello(&service.ws_url(), Some(&uaid)).await;
    assert!(agent.try_recv(Duration::from_millis(500)).await.is_none(), "an acked message came back");
    // And the endpoint still works after restarts (the endpoint key persisted).
    assert_eq!(sender.push(&sub, "after restart").await.status, 201);
    assert_eq!(sub.decrypt(&agent.notification().await), b"after restart");
}

#[tokio::test]
async fn sigterm_closes_websockets_with_going_away() {
    let mut service = Service::start(&[]);
    let mut agent = Agent::hello(&service.ws_url(), None).await;
    let status = {
        let waiter = tokio::task::spawn_blocking(move || {
            let status = service.terminate();
            (service, status)
        });
        match agent.ws.next().await {
            Some(Ok(Frame::Close(Some(close)))) => assert_eq!(u16::from(close.code), 1001),
            other => panic!("expected close 1001, got {other:?}"),
        }
        waiter.await.unwrap().1
    };
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn the_redis_store_delivers_and_survives_kill_9() {
    let prefix = format!("tidings-test-serve-{}", std::process::id());
    let mut service = Service::start(&["--store", "redis://127.0.0.1:6379/", "--redis-prefix", &prefix]);
    let (sender, mut agent, sub) = subscribed(&service).await;
    assert_eq!(sender.push(&sub, "live over redis").await.status, 201);
    let n = agent.notification().await;
    assert_eq!(sub.decrypt(&n), b"live over redis");
    agent.ack(&n).await;
    let uaid = agent.uaid.clone();
    agent.close().await;
    for i in 0..5 {
        assert_eq!(sender.push(&sub, &format!("stored {i}")).await.status, 201);
    }
    service.kill9();
    service.restart();
    let mut agent = Agent::hello(&service.ws_url(), Some(&uaid)).await;
    assert_eq!(agent.uaid, uaid);
    for i in 0..5 {
        let n = agent.notification().await;
        assert_eq!(sub.decrypt(&n), format!("stored {i}").as_bytes());
        agent.ack(&n).await;
    }
    assert!(agent.try_recv(Duration::from_millis(300)).await.is_none(), "the acked message came back");
}
