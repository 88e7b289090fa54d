//! A `tidings serve` process for black-box tests, and a user agent that talks to it over a
//! real WebSocket (tokio-tungstenite: an implementation we did not write).

use super::tidings;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tidings_crypto::b64;
use tidings_crypto::vapid::{VapidKey, VapidSigner};
use tidings_crypto::webpush::{ReceivedEncoding, ReceiverKeys};
use tidings_sender::{ClientConfig, Message, PushClient, Response, Subscription, prepare};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A running `tidings serve` with its own data directory.
pub struct Service {
    pub child: Child,
    pub port: u16,
    pub data_dir: PathBuf,
    pub log: Arc<Mutex<String>>,
    args: Vec<String>,
    /// The address listened on: loopback, or every address.
    host: &'static str,
}

/// Spawns `tidings serve` and waits until it says it is ready.
fn spawn(
    data_dir: &std::path::Path,
    (host, port): (&str, u16),
    args: &[String],
    env: &[(&str, &str)],
) -> (Child, Arc<Mutex<String>>) {
    let mut command = tidings();
    command
        .args(["serve", "--listen", &format!("{host}:{port}"), "--data-dir", data_dir.to_str().unwrap()])
        .args(args)
        .envs(env.iter().copied())
        .env("TIDINGS_LOG", "info");
    super::spawn_until_ready(command, "is ready", "tidings serve")
}

impl Service {
    /// Starts a service on a fresh data directory.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// Starts a service on a given port.
    pub fn start_on(port: u16, args: &[&str]) -> Self {
        Self::launch(port, args, &[])
    }

    /// Starts a service with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::launch(super::free_port(), args, env)
    }

    /// Starts a service listening on every address (`0.0.0.0`), so that clients can reach
    /// it from the machine's own non-loopback address.
    pub fn start_on_every_address(args: &[&str]) -> Self {
        let port = super::free_port_everywhere();
        let public_url = format!("http://127.0.0.1:{port}");
        let args: Vec<&str> = args.iter().copied().chain(["--public-url", &public_url]).collect();
        Self::launch_on("0.0.0.0", port, &args, &[])
    }

    fn launch(port: u16, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::launch_on("127.0.0.1", port, args, env)
    }

    fn launch_on(host: &'static str, port: u16, args: &[&str], env: &[(&str, &str)]) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let data_dir = std::env::temp_dir().join(format!("tidings-serve-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (child, log) = spawn(&data_dir, (host, port), &args, env);
        Self { child, port, data_dir, log, args, host }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    /// Kills the process with SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts again on the same port and data directory (after [`Service::kill9`]).
    pub fn restart(&mut self) {
        let (child, log) = spawn(&self.data_dir, (self.host, self.port), &self.args, &[]);
        self.child = child;
        self.log = log;
    }

    /// Sends SIGTERM and waits for the process to end.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        std::process::Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A `tidings serve` with TLS, on a self-signed certificate for 127.0.0.1.
pub struct TlsService {
    pub service: Service,
    /// The certificate, for clients to trust.
    pub root: rustls::pki_types::CertificateDer<'static>,
    dir: PathBuf,
}

impl TlsService {
    /// Starts a service with TLS; its public URL is its own `https://` address unless `args`
    /// give one.
    pub fn start(args: &[&str]) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tidings-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_file, cert.cert.pem()).unwrap();
        std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
        let port = super::free_port();
        let public_url = format!("https://127.0.0.1:{port}");
        let mut all =
            vec!["--tls-cert", cert_file.to_str().unwrap(), "--tls-key", key_file.to_str().unwrap()];
        if !args.contains(&"--public-url") {
            all.extend(["--public-url", &public_url]);
        }
        all.extend(args);
        let service = Service::start_on(port, &all);
        Self { service, root: cert.cert.der().clone(), dir }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.service.port)
    }

    pub fn wss_url(&self) -> String {
        format!("wss://127.0.0.1:{}/", self.service.port)
    }

    /// A TLS connection to the service, trusting its certificate and offering `alpn` (none
    /// when empty).
    pub async fn connect(&self, alpn: &[&[u8]]) -> tokio_rustls::client::TlsStream<TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.root.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let tcp = TcpStream::connect(("127.0.0.1", self.service.port)).await.unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap()
    }

    /// A user agent over `wss://`, on a TLS connection offering `alpn`.
    pub async fn agent(&self, alpn: &[&[u8]]) -> Agent<tokio_rustls::client::TlsStream<TcpStream>> {
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(self.wss_url())
                .unwrap();
        request.headers_mut().insert("sec-websocket-protocol", "push-notification".parse().unwrap());
        let (ws, _) = tokio_tungstenite::client_async(request, self.connect(alpn).await).await.unwrap();
        Agent::over(ws, None).await
    }

    /// A sender whose client trusts the service's certificate.
    pub fn sender(&self) -> Sender {
        let mut sender = Sender::new();
        sender.client =
            PushClient::new(ClientConfig { extra_roots: vec![self.root.clone()], ..Default::default() });
        sender
    }
}

impl Drop for TlsService {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A user agent: a WebSocket (over plain TCP unless said otherwise), its uaid, and the
/// service's answer to its hello.
pub struct Agent<S = MaybeTlsStream<TcpStream>> {
    pub ws: WebSocketStream<S>,
    pub uaid: String,
    pub hello: Value,
}

/// A subscription the agent holds.
pub struct Sub {
    pub channel_id: String,
    pub endpoint: String,
    pub keys: ReceiverKeys,
}

impl Sub {
    /// The PushSubscription, as a sender gets it.
    pub fn subscription(&self) -> Subscription {
        let keys = self.keys.subscription_keys();
        Subscription::parse(
            &json!({"endpoint": self.endpoint, "keys": {"p256dh": b64::encode(keys.p256dh.as_bytes()), "auth": b64::encode(&keys.auth)}})
                .to_string(),
        )
        .unwrap()
    }

    pub fn json(&self) -> Value {
        let keys = self.keys.subscription_keys();
        json!({"endpoint": self.endpoint, "expirationTime": null, "keys": {"p256dh": b64::encode(keys.p256dh.as_bytes()), "auth": b64::encode(&keys.auth)}})
    }

    /// Decrypts a notification frame's payload.
    pub fn decrypt(&self, notification: &Value) -> Vec<u8> {
        let body = b64::decode(notification["data"].as_str().unwrap()).unwrap();
        let headers = &notification["headers"];
        let encoding = match headers["encoding"].as_str().unwrap() {
            "aes128gcm" => ReceivedEncoding::Aes128gcm,
            _ => ReceivedEncoding::Aesgcm {
                params: tidings_crypto::ece::aesgcm::EncryptionParams::parse(
                    headers["encryption"].as_str().unwrap(),
                )
                .unwrap(),
                sender_public: tidings_crypto::ece::aesgcm::sender_key_from_crypto_key(
                    headers["crypto_key"].as_str().unwrap(),
                )
                .unwrap(),
            },
        };
        self.keys.decrypt(&body, encoding).unwrap()
    }
}

pub async fn connect(url: &str) -> Socket {
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "push-notification".parse().unwrap());
    let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "push-notification");
    ws
}

impl Agent {
    /// Connects and says hello (with `uaid` to resume one).
    pub async fn hello(url: &str, uaid: Option<&str>) -> Self {
        Self::over(connect(url).await, uaid).await
    }

    /// Connects and says hello as a new user agent following `broadcasts` (id to the
    /// version it has).
    pub async fn following(url: &str, broadcasts: Value) -> Self {
        Self::hello_with(connect(url).await, None, broadcasts).await
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Agent<S> {
    /// Says hello over an open WebSocket.
    pub async fn over(ws: WebSocketStream<S>, uaid: Option<&str>) -> Self {
        Self::hello_with(ws, uaid, json!({})).await
    }

    async fn hello_with(mut ws: WebSocketStream<S>, uaid: Option<&str>, broadcasts: Value) -> Self {
        let mut hello = json!({"messageType": "hello", "broadcasts": broadcasts, "use_webpush": true});
        if let Some(uaid) = uaid {
            hello["uaid"] = json!(uaid);
        }
        ws.send(Frame::text(hello.to_string())).await.unwrap();
        let mut agent = Self { ws, uaid: String::new(), hello: Value::Null };
        let reply = agent.recv().await;
        assert_eq!(
            (reply["messageType"].as_str(), reply["status"].as_u64()),
            (Some("hello"), Some(200)),
            "{reply}"
        );
        assert_eq!(reply["use_webpush"], true);
        agent.uaid = reply["uaid"].as_str().unwrap().to_owned();
        agent.hello = reply;
        agent
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws.send(Frame::text(frame.to_string())).await.unwrap();
    }

    /// The next JSON frame (pings and pongs skipped); panics after 5 s.
    pub async fn recv(&mut self) -> Value {
        self.try_recv(Duration::from_secs(5)).await.expect("a frame within 5 s")
    }

    /// The next JSON frame within `wait`, if any.
    pub async fn try_recv(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next()).await.ok()??.ok()?;
            match frame {
                Frame::Text(text) => return Some(serde_json::from_str(&text).unwrap()),
                Frame::Close(close) => panic!("closed: {close:?}"),
                _ => continue,
            }
        }
    }

    /// Registers a channel, restricted to `key` when given.
    pub async fn register(&mut self, key: Option<&VapidKey>) -> Sub {
        let channel_id = uuid();
        let mut frame = json!({"messageType": "register", "channelID": channel_id});
        if let Some(key) = key {
            // Firefox sends the key padded.
            frame["key"] = json!(format!("{}=", key.public_key_base64()));
        }
        self.send(frame).await;
        let reply = self.recv().await;
        assert_eq!(
            (reply["messageType"].as_str(), reply["status"].as_u64()),
            (Some("register"), Some(200)),
            "{reply}"
        );
        assert_eq!(reply["channelID"], channel_id.as_str());
        Sub {
            channel_id,
            endpoint: reply["pushEndpoint"].as_str().unwrap().to_owned(),
            keys: ReceiverKeys::generate().unwrap(),
        }
    }

    /// Waits for a notification and acks it; returns the frame.
    pub async fn notification(&mut self) -> Value {
        let frame = self.recv().await;
        assert_eq!(frame["messageType"], "notification", "{frame}");
        frame
    }

    pub async fn ack(&mut self, notification: &Value) {
        let ack = json!({"messageType": "ack", "updates": [{"channelID": notification["channelID"], "version": notification["version"], "code": 100}]});
        self.send(ack).await;
    }

    /// Closes the WebSocket cleanly.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// A random lower-case dashed UUID.
pub fn uuid() -> String {
    let bytes = ReceiverKeys::generate().unwrap().private_bytes();
    let h: String = bytes[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-4{}-8{}-{}", &h[..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// An application server: VAPID keys and a push client.
pub struct Sender {
    pub signer: VapidSigner,
    pub client: PushClient,
}

impl Sender {
    pub fn new() -> Self {
        Self {
            signer: VapidSigner::new(VapidKey::generate().unwrap(), Some("mailto:ops@example.com".into())),
            client: PushClient::new(ClientConfig::default()),
        }
    }

    pub fn key(&self) -> &VapidKey {
        self.signer.key()
    }

    /// Sends `text` with TTL 60.
    pub async fn push(&self, sub: &Sub, text: &str) -> Response {
        let mut message = Message::new(text.as_bytes().to_vec());
        message.ttl = 60;
        self.send(sub, &message).await
    }

    pub async fn send(&self, sub: &Sub, message: &Message) -> Response {
        let request = prepare(&sub.subscription(), message, Some(&self.signer), now()).unwrap();
        self.client.send(request).await.unwrap()
    }
}

/// A sender and a connected user agent with one subscription restricted to its key.
pub async fn subscribed(service: &Service) -> (Sender, Agent, Sub) {
    let sender = Sender::new();
    let mut agent = Agent::hello(&service.ws_url(), None).await;
    let sub = agent.register(Some(sender.key())).await;
    (sender, agent, sub)
}

/// The same, with the user agent gone offline: the sender, the subscription and the uaid
/// to come back with.
pub async fn subscribed_offline(service: &Service) -> (Sender, Sub, String) {
    let (sender, agent, sub) = subscribed(service).await;
    let uaid = agent.uaid.clone();
    agent.close().await;
    (sender, sub, uaid)
}

/// Waits until `check` holds, up to 10 s.
pub async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A plain HTTP GET on loopback; the whole response (status line, headers, body) as text.
pub async fn get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    response
}

/// An HTTP/1.1 request on loopback (`Connection: close`): the status and the whole response.
pub async fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body.as_bytes()).await.unwrap();
    let mut response = String::new();
    let _ = tcp.read_to_string(&mut response).await;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response)
}

/// The value of a metric in the service's `/metrics`.
pub async fn metric(service: &Service, name: &str) -> Option<f64> {
    metric_on(service.port, name).await
}

/// The value of a metric of the service on `port`.
pub async fn metric_on(port: u16, name: &str) -> Option<f64> {
    let text = get(port, "/metrics").await;
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Signs arbitrary claims (to make tokens a correct signer never would).
pub fn sign_claims(key: &VapidKey, claims: &Value) -> String {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let pair = EcdsaKeyPair::from_private_key_and_public_key(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &key.private_key_raw(),
        key.public_key(),
    )
    .unwrap();
    let input =
        format!("eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.{}", b64::encode(claims.to_string().as_bytes()));
    let signature = pair.sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", b64::encode(signature.as_ref()))
}
