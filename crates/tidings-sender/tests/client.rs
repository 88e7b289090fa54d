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
