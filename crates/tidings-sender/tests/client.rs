//! The client's transport against local servers: HTTP/2 when a TLS service offers it (ALPN),
//! one connection reused for many requests to an origin, HTTP/1.1 keep-alive otherwise, and
//! a private CA trusted through `extra_roots`.

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tidings_crypto::b64;
use tidings_crypto::webpush::ReceiverKeys;
use tidings_sender::{ClientConfig, Message, PushClient, SendError, Subscription, Verdict, prepare};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

/// What the server saw: connections accepted and the HTTP version of each request.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    versions: Mutex<Vec<Version>>,
}

async fn answer(
    seen: Arc<Seen>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    seen.versions.lock().await.push(request.version());
    Ok(Response::builder()
        .status(StatusCode::CREATED)
        .header("location", "https://127.0.0.1/m/1")
        .body(Full::new(Bytes::new()))
        .unwrap())
}

/// Serves every connection with `auto` (HTTP/1.1 or HTTP/2), through TLS when given.
async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> (u16, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let state = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            state.connections.fetch_add(1, Ordering::SeqCst);
            let (tls, state) = (tls.clone(), state.clone());
            tokio::spawn(async move {
                let service = service_fn(move |r| answer(state.clone(), r));
                let builder = auto::Builder::new(TokioExecutor::new());
                match tls {
                    Some(tls) => {
                        let stream = tls.accept(stream).await.unwrap();
                        let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            });
        }
    });
    (port, seen)
}

fn subscription(endpoint: &str) -> Subscription {
    let keys = ReceiverKeys::generate().unwrap().subscription_keys();
    Subscription::parse(&format!(
        r#"{{"endpoint":"{endpoint}","keys":{{"p256dh":"{}","auth":"{}"}}}}"#,
        b64::encode(keys.p256dh.as_bytes()),
        b64::encode(&keys.auth)
    ))
    .unwrap()
}

async fn send_three(client: &PushClient, endpoint: &str) {
    let sub = subscription(endpoint);
    for _ in 0..3 {
        let request = prepare(&sub, &Message::new("hi"), None, 0).unwrap();
        let response = client.send(request).await.unwrap();
        assert_eq!(response.verdict, Verdict::Accepted);
        assert_eq!(response.location.as_deref(), Some("https://127.0.0.1/m/1"));
    }
}

#[tokio::test]
async fn tls_service_gets_http2_over_one_connection() {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], cert.signing_key.serialize_der().try_into().unwrap())
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let (port, seen) = serve(Some(tokio_rustls::TlsAcceptor::from(Arc::new(server)))).await;
    let endpoint = format!("https://127.0.0.1:{port}/push/abc");

    // Without trusting the private CA, the certificate is refused.
    let untrusting = PushClient::new(ClientConfig::default());
    let request = prepare(&subscription(&endpoint), &Message::new("hi"), None, 0).unwrap();
    let error = untrusting.send(request).await.unwrap_err();
    assert!(matches!(&error, SendError::Http(text) if text.contains("certificate")), "{error}");

    let client =
        PushClient::new(ClientConfig { extra_roots: vec![cert.cert.der().clone()], ..Default::default() });
    send_three(&client, &endpoint).await;
    assert_eq!(*seen.versions.lock().await, [Version::HTTP_2; 3]);
    // One refused handshake, then one connection for all three requests.
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn plain_http_service_gets_keep_alive_http1() {
    let (port, seen) = serve(None).await;
    let client = PushClient::new(ClientConfig::default());
    send_three(&client, &format!("http://127.0.0.1:{port}/push/abc")).await;
    assert_eq!(*seen.versions.lock().await, [Version::HTTP_11; 3]);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn silent_service_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and never answers.
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            held.push(listener.accept().await.unwrap());
        }
    });
    let client = PushClient::new(ClientConfig { timeout: Duration::from_millis(300), ..Default::default() });
    let request =
        prepare(&subscription(&format!("http://127.0.0.1:{port}/x")), &Message::new("hi"), None, 0).unwrap();
    assert!(matches!(client.send(request).await, Err(SendError::Timeout(_))));
}

/// A resolver under the test's control: names that resolve to loopback, where a real server
/// listens, are refused under the public-only policy before any connection is made, as are
/// address literals; the same names connect when private addresses are allowed; a host off
/// the allow-list is refused whatever it resolves to; and the fan-out engine does not retry
/// a refusal.
#[tokio::test]
async fn the_connect_policy_refuses_private_addresses_after_resolution() {
    use std::collections::HashMap;
    use std::net::IpAddr;
    use tidings_sender::connect::{ConnectPolicy, PushHosts, Refused, StaticResolver};
    let (port, seen) = serve(None).await;
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let resolver = Arc::new(StaticResolver(HashMap::from([
        ("rebound.test".to_owned(), vec![loopback]),
        ("metadata.test".to_owned(), vec!["169.254.169.254".parse().unwrap(), "10.1.2.3".parse().unwrap()]),
        ("push.test".to_owned(), vec![loopback]),
    ])));
    let client = |policy: ConnectPolicy| {
        PushClient::new(ClientConfig { policy, resolver: resolver.clone(), ..Default::default() })
    };
    let send = |client: PushClient, endpoint: String| async move {
        client.send(prepare(&subscription(&endpoint), &Message::new("hi"), None, 0).unwrap()).await
    };

    let public = client(ConnectPolicy::public(None));
    for (endpoint, expected) in [
        (format!("http://rebound.test:{port}/push"), "rebound.test resolves only to private"),
        (format!("http://metadata.test:{port}/push"), "169.254.169.254, 10.1.2.3"),
        (format!("http://127.0.0.1:{port}/push"), "127.0.0.1 is a private"),
        (format!("http://[::1]:{port}/push"), "::1 is a private"),
        (format!("http://localhost:{port}/push"), "is a private"),
    ] {
        match send(public.clone(), endpoint.clone()).await {
            Err(SendError::Refused(refused)) => {
                assert!(refused.to_string().contains(expected), "{endpoint}: {refused}")
            }
            other => panic!("{endpoint}: {other:?}"),
        }
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 0, "nothing was connected to");

    let local = client(ConnectPolicy::any());
    let response = send(local, format!("http://rebound.test:{port}/push")).await.unwrap();
    assert_eq!(response.verdict, Verdict::Accepted);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);

    let listed =
        client(ConnectPolicy { allow_private: true, hosts: Some(PushHosts::parse(["push.test"]).unwrap()) });
    assert_eq!(
        send(listed.clone(), format!("http://push.test:{port}/push")).await.unwrap().verdict,
        Verdict::Accepted
    );
    assert!(matches!(
        send(listed, format!("http://rebound.test:{port}/push")).await,
        Err(SendError::Refused(Refused::NotAllowed(host))) if host == "rebound.test"
    ));

    // The fan-out engine reports a refusal at once, as an unusable subscription.
    let (targets_tx, targets) = tokio::sync::mpsc::channel(1);
    let (results, mut results_rx) = tokio::sync::mpsc::channel(1);
    let (_stop, stop) = tokio::sync::watch::channel(false);
    let sub = subscription(&format!("http://rebound.test:{port}/push"));
    targets_tx.send(tidings_sender::Target { index: 1, id: None, subscription: Ok(sub) }).await.unwrap();
    drop(targets_tx);
    let config = tidings_sender::FanoutConfig { backoff: Duration::from_secs(60), ..Default::default() };
    tidings_sender::fanout(public, Message::new("hi"), None, config, targets, results, stop).await;
    let report = results_rx.recv().await.unwrap();
    assert_eq!(report.attempts, 1, "a refusal is not retried");
    assert!(
        matches!(&report.outcome, tidings_sender::Outcome::Invalid { reason } if reason.contains("resolves only to private")),
        "{:?}",
        report.outcome
    );
}
