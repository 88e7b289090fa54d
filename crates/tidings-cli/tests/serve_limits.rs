//! `tidings serve`'s limits on anonymous clients, as a black box: each refusal is the
//! protocol's answer, is counted in /metrics, and leaves the clients already connected
//! unharmed.

mod common;

use common::push::{Agent, Sender, Service, connect, metric};
use futures_util::{SinkExt as _, StreamExt as _};
use std::net::{IpAddr, UdpSocket};
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::Message as Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The upgrade request's answer: its status and `Retry-After`, over a raw socket.
async fn upgrade_status(host: &str, port: u16) -> (u16, Option<String>) {
    let (status, retry, _) = upgrade_with(host, port, "").await;
    (status, retry)
}

/// An upgrade request with `extra` header lines: its status, `Retry-After`, and the socket
/// (open, if upgraded).
async fn upgrade_with(host: &str, port: u16, extra: &str) -> (u16, Option<String>, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect((host, port)).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: push-notification\r\n{extra}\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut answer)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&answer[..n]).to_string();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let retry = text
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("retry-after:").map(|v| v.trim().to_owned()));
    (status, retry, tcp)
}

/// This machine's own address on its default route: reaching a service on it comes from a
/// non-loopback address, which the per-address limits count (no packet is sent to find it).
fn own_address() -> IpAddr {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket.connect("192.0.2.1:9").expect("this machine has a default route");
    let address = socket.local_addr().unwrap().ip();
    assert!(!address.is_loopback(), "no non-loopback address to test from");
    address
}

/// A live delivery to `agent` still works.
async fn still_served(agent: &mut Agent) {
    let sub = agent.register(None).await;
    let sender = Sender::new();
    assert_eq!(sender.push(&sub, "still here").await.status, 201);
    let notification = agent.notification().await;
    assert_eq!(sub.decrypt(&notification), b"still here");
}

#[tokio::test]
async fn connections_beyond_the_node_cap_get_503_before_the_upgrade() {
    let service = Service::start(&["--max-connections", "3"]);
    let mut agents = Vec::new();
    for _ in 0..3 {
        agents.push(Agent::hello(&service.ws_url(), None).await);
    }
    let (status, retry) = upgrade_status("127.0.0.1", service.port).await;
    assert_eq!((status, retry.as_deref()), (503, Some("60")));
    assert_eq!(metric(&service, "tidings_refused_total{limit=\"connections\"}").await, Some(1.0));
    still_served(&mut agents[0]).await;
    // A closed connection frees its place.
    agents.pop().unwrap().close().await;
    let mut again = None;
    for _ in 0..50 {
        if upgrade_status("127.0.0.1", service.port).await.0 == 101 {
            again = Some(());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "the place of a closed connection was not given back");
}

#[tokio::test]
async fn connections_per_address_are_capped_but_not_from_loopback() {
    let address = own_address().to_string();
    let service = Service::start_on_every_address(&["--max-connections-per-address", "2"]);
    let url = format!("ws://{address}:{}/", service.port);
    let mut first = Agent::hello(&url, None).await;
    let _second = Agent::hello(&url, None).await;
    let (status, retry) = upgrade_status(&address, service.port).await;
    assert_eq!((status, retry.as_deref()), (503, Some("60")));
    assert_eq!(metric(&service, "tidings_refused_total{limit=\"connections_per_address\"}").await, Some(1.0));
    // Loopback (tests, a reverse proxy on the same host) is not counted per address.
    let local_url = service.ws_url();
    let mut local = Vec::new();
    for _ in 0..4 {
        local.push(Agent::hello(&local_url, None).await);
    }
    still_served(&mut first).await;
}

#[tokio::test]
async fn new_user_agents_per_address_are_capped_returning_ones_are_not() {
    let address = own_address().to_string();
    let service = Service::start_on_every_address(&["--new-users-per-address", "2"]);
    let url = format!("ws://{address}:{}/", service.port);
    let mut first = Agent::hello(&url, None).await;
    let second = Agent::hello(&url, None).await;
    let uaid = second.uaid.clone();
    second.close().await;
    // A third new user agent within the minute: closed with 1013, try again later.
    let mut ws = connect(&url).await;
    ws.send(Frame::text(r#"{"messageType":"hello","broadcasts":{},"use_webpush":true}"#)).await.unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
    let Frame::Close(Some(close)) = frame else { panic!("expected a close frame, got {frame:?}") };
    assert_eq!(close.code, CloseCode::Again, "{close:?}");
    assert_eq!(metric(&service, "tidings_refused_total{limit=\"new_users_per_address\"}").await, Some(1.0));
    // A user agent that comes back with its uaid is not a new one.
    let back = Agent::hello(&url, Some(&uaid)).await;
    assert_eq!(back.uaid, uaid);
    still_served(&mut first).await;
}

#[tokio::test]
async fn a_client_pinging_in_a_loop_is_closed() {
    let service = Service::start(&[]);
    let mut calm = Agent::hello(&service.ws_url(), None).await;
    let mut noisy = Agent::hello(&service.ws_url(), None).await;
    // Browsers ping now and then: a few pings in a row are answered...
    for _ in 0..4 {
        noisy.send(serde_json::json!({})).await;
        assert_eq!(noisy.recv().await, serde_json::json!({}));
    }
    // ...a loop of them is closed as a policy violation.
    noisy.send(serde_json::json!({})).await;
    let frame =
        tokio::time::timeout(Duration::from_secs(5), noisy.ws.next()).await.unwrap().unwrap().unwrap();
    let Frame::Close(Some(close)) = frame else { panic!("expected a close frame, got {frame:?}") };
    assert_eq!((close.code, close.reason.as_str()), (CloseCode::Policy, "too many pings"));
    assert_eq!(metric(&service, "tidings_refused_total{limit=\"client_pings\"}").await, Some(1.0));
    still_served(&mut calm).await;
}

/// Starts a POST to `endpoint` declaring a 100-byte body and sends only its headers; the
/// socket, to trickle or hold the body, and read the answer.
async fn post_without_body(port: u16, endpoint: &str) -> tokio::net::TcpStream {
    post_without_body_from(None, port, endpoint).await
}

/// The same, from `source` when given.
async fn post_without_body_from(source: Option<IpAddr>, port: u16, endpoint: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let path = endpoint.split_once(&format!(":{port}")).unwrap().1;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(source) = source {
        socket.bind((source, 0).into()).unwrap();
    }
    let mut tcp = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTTL: 60\r\nContent-Encoding: aes128gcm\r\n\
         Content-Length: 100\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp
}

/// The status of the answer on `tcp`.
async fn answer_status(tcp: &mut tokio::net::TcpStream, wait: Duration) -> Option<u16> {
    use tokio::io::AsyncReadExt as _;
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(wait, tcp.read(&mut answer)).await.ok()?.ok()?;
    String::from_utf8_lossy(&answer[..n]).split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn a_body_trickled_too_slowly_gets_408_and_others_are_served_meanwhile() {
    use tokio::io::AsyncWriteExt as _;
    let service = Service::start(&["--body-timeout", "1"]);
    let (sender, mut agent, sub) = common::push::subscribed(&service).await;
    let mut slow = post_without_body(service.port, &sub.endpoint).await;
    let start = std::time::Instant::now();
    // One byte a quarter second: far slower than any sender.
    let mut status = None;
    while status.is_none() && start.elapsed() < Duration::from_secs(5) {
        let _ = slow.write_all(b"x").await;
        status = answer_status(&mut slow, Duration::from_millis(250)).await;
    }
    assert_eq!(status, Some(408));
    assert!(start.elapsed() < Duration::from_secs(3), "the 408 took {:?}", start.elapsed());
    assert_eq!(metric(&service, "tidings_push_errors_total{errno=\"114\"}").await, Some(1.0));
    assert_eq!(sender.push(&sub, "not stuck").await.status, 201);
    assert_eq!(sub.decrypt(&agent.notification().await), b"not stuck");
}

#[tokio::test]
async fn posts_beyond_the_concurrency_cap_get_503_at_once() {
    let service = Service::start(&["--max-concurrent-posts", "2", "--body-timeout", "2"]);
    let (sender, mut agent, sub) = common::push::subscribed(&service).await;
    let mut held = [
        post_without_body(service.port, &sub.endpoint).await,
        post_without_body(service.port, &sub.endpoint).await,
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = std::time::Instant::now();
    let answer = sender.push(&sub, "one too many").await;
    assert_eq!(answer.status, 503);
    assert!(answer.retry_after.is_some(), "503 without Retry-After");
    assert!(start.elapsed() < Duration::from_millis(500), "the 503 took {:?}", start.elapsed());
    assert_eq!(metric(&service, "tidings_refused_total{limit=\"concurrent_posts\"}").await, Some(1.0));
    // The held requests end with their timeout, and the slots are free again.
    for tcp in &mut held {
        assert_eq!(answer_status(tcp, Duration::from_secs(4)).await, Some(408));
    }
    assert_eq!(sender.push(&sub, "room again").await.status, 201);
    assert_eq!(sub.decrypt(&agent.notification().await), b"room again");
}

#[tokio::test]
async fn one_address_holds_only_its_share_of_the_posts_in_progress() {
    let own = own_address();
    let service = Service::start(&["--max-posts-per-address", "2", "--body-timeout", "2"]);
    let (sender, mut agent, sub) = common::push::subscribed(&service).await;
    let mut held = [
        post_without_body_from(Some(own), service.port, &sub.endpoint).await,
        post_without_body_from(Some(own), service.port, &sub.endpoint).await,
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = post_without_body_from(Some(own), service.port, &sub.endpoint).await;
    assert_eq!(
        answer_status(&mut third, Duration::from_secs(1)).await,
        Some(503),
        "at once, before its body"
    );
    assert_eq!(metric(&service, "tidings_refused_total{limit=\"posts_per_address\"}").await, Some(1.0));
    // Another client (loopback, not counted per address) is served meanwhile.
    assert_eq!(sender.push(&sub, "others are served").await.status, 201);
    assert_eq!(sub.decrypt(&agent.notification().await), b"others are served");
    for tcp in &mut held {
        assert_eq!(answer_status(tcp, Duration::from_secs(4)).await, Some(408));
    }
    let mut again = post_without_body_from(Some(own), service.port, &sub.endpoint).await;
    assert_eq!(answer_status(&mut again, Duration::from_secs(4)).await, Some(408), "its share is free again");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_counted() {
    let service = Service::start(&["--max-connections-per-address", "2", "--trusted-proxy", "127.0.0.1"]);
    let from = |client: &str| format!("X-Forwarded-For: {client}\r\n");
    let mut held = Vec::new();
    for _ in 0..2 {
        let (status, _, tcp) = upgrade_with("127.0.0.1", service.port, &from("203.0.113.5")).await;
        assert_eq!(status, 101);
        held.push(tcp);
    }
    let (status, retry, _) = upgrade_with("127.0.0.1", service.port, &from("203.0.113.5")).await;
    assert_eq!((status, retry.as_deref()), (503, Some("60")), "the forwarded client's third connection");
    let (status, _, _other) = upgrade_with("127.0.0.1", service.port, &from("203.0.113.6")).await;
    assert_eq!(status, 101, "another client behind the same proxy");
    // The proxies write X-Forwarded-For (the default): a Forwarded header is the client's
    // own, passed along, and is not read.
    let (status, _, _passed_along) =
        upgrade_with("127.0.0.1", service.port, "Forwarded: for=203.0.113.5\r\n").await;
    assert_eq!(status, 101, "Forwarded is not read when the proxies write X-Forwarded-For");
    // A client that names itself loopback through the proxy is counted all the same.
    let mut forged = Vec::new();
    for _ in 0..2 {
        let (status, _, tcp) = upgrade_with("127.0.0.1", service.port, &from("127.0.0.1")).await;
        assert_eq!(status, 101);
        forged.push(tcp);
    }
    let (status, _, _) = upgrade_with("127.0.0.1", service.port, &from("127.0.0.1")).await;
    assert_eq!(status, 503, "loopback named in a header is no way around the limits");

    // Proxies that write Forwarded (RFC 7239): that header names the client (IPv6 per /64).
    let rfc7239 = Service::start(&[
        "--max-connections-per-address",
        "2",
        "--trusted-proxy",
        "127.0.0.1",
        "--proxy-header",
        "forwarded",
    ]);
    let mut held_v6 = Vec::new();
    for host in ["7", "8"] {
        let forwarded = format!("Forwarded: for=\"[2001:db8:1:2::{host}]\"\r\n");
        let (status, _, tcp) = upgrade_with("127.0.0.1", rfc7239.port, &forwarded).await;
        assert_eq!(status, 101);
        held_v6.push(tcp);
    }
    let forwarded = "Forwarded: for=\"[2001:db8:1:2::9]\"\r\n";
    let (status, _, _) = upgrade_with("127.0.0.1", rfc7239.port, forwarded).await;
    assert_eq!(status, 503, "a third connection from the same /64");

    // Without --trusted-proxy the header is ignored: loopback is not counted at all.
    let open = Service::start(&["--max-connections-per-address", "2"]);
    let mut held = Vec::new();
    for _ in 0..3 {
        let (status, _, tcp) = upgrade_with("127.0.0.1", open.port, &from("203.0.113.5")).await;
        assert_eq!(status, 101, "an untrusted X-Forwarded-For is not believed");
        held.push(tcp);
    }
}
