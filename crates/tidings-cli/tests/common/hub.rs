//! A `tidings hub` process for black-box tests, an HTTP client to call it with, and push
//! services to send to (sinks that count what they receive).

use super::postgres::Database;
use super::tidings;
use axum::Router;
use axum::extract::{Path, State};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where a test hub keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded store in its data directory.
    Embedded,
    /// A PostgreSQL database of the test's.
    Postgres,
}

/// Runs each of the named `async fn(Backend)` tests on both stores, as `name::embedded` and
/// `name::postgres`.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$name($crate::common::hub::Backend::Embedded).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::common::hub::Backend::Postgres).await
            }
        }
    )*};
}

/// A running `tidings hub` with its own data directory (and, on PostgreSQL, a database
/// shared with the other processes started with [`HubProcess::another`]).
pub struct HubProcess {
    pub child: Child,
    pub port: u16,
    pub data_dir: PathBuf,
    pub log: Arc<Mutex<String>>,
    pub database: Option<Arc<Database>>,
    /// `--store`, when not the embedded one.
    store: Option<String>,
    args: Vec<String>,
}

fn spawn(data_dir: &std::path::Path, port: u16, args: &[String]) -> (Child, Arc<Mutex<String>>) {
    let mut command = tidings();
    command
        .args(["hub", "--listen", &format!("127.0.0.1:{port}"), "--data-dir", data_dir.to_str().unwrap()])
        .args(args)
        .env("TIDINGS_HUB_LOG", "info,fjall=warn,lsm_tree=warn,sqlx=warn");
    super::spawn_until_ready(command, "hub ready", "tidings hub")
}

impl HubProcess {
    /// Starts a hub on a fresh data directory (the embedded store).
    pub fn start(args: &[&str]) -> Self {
        Self::start_on(Backend::Embedded, args)
    }

    /// Starts a hub on a fresh store of `backend`.
    pub fn start_on(backend: Backend, args: &[&str]) -> Self {
        let database = (backend == Backend::Postgres).then(|| Arc::new(Database::new()));
        let store = database.as_ref().map(|d| d.url.clone());
        Self::start_with(database, store, args)
    }

    /// A hub on the PostgreSQL database at `url`.
    pub fn start_on_url(url: &str, args: &[&str]) -> Self {
        Self::start_with(None, Some(url.to_owned()), args)
    }

    /// Another hub process on the same database (PostgreSQL only), with its own port.
    pub fn another(&self, args: &[&str]) -> Self {
        assert!(self.store.is_some(), "several hubs share a PostgreSQL database only");
        Self::start_with(self.database.clone(), self.store.clone(), args)
    }

    fn start_with(database: Option<Arc<Database>>, store: Option<String>, args: &[&str]) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let data_dir = std::env::temp_dir().join(format!("tidings-hub-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        let port = super::free_port();
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        if let Some(url) = &store {
            args.extend(["--store".into(), url.clone()]);
        }
        let (child, log) = spawn(&data_dir, port, &args);
        Self { child, port, data_dir, log, database, store, args }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sends SIGTERM and waits for the process to end.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        std::process::Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        self.child.wait().unwrap()
    }

    /// Kills the process with SIGKILL.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts again on the same port and store.
    pub fn restart(&mut self) {
        let (child, log) = spawn(&self.data_dir, self.port, &self.args);
        self.child = child;
        self.log = log;
    }

    /// `--data-dir DIR`, or `--store URL` on PostgreSQL: for the hub's subcommands.
    pub fn location(&self) -> Vec<String> {
        match &self.store {
            Some(url) => vec!["--store".into(), url.clone()],
            None => vec!["--data-dir".into(), self.data_dir.to_str().unwrap().into()],
        }
    }

    /// Runs `tidings hub <args> <location>`; its standard output.
    pub fn subcommand(&self, args: &[&str]) -> String {
        let out = tidings().arg("hub").args(args).args(self.location()).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Creates an API key with `tidings hub api-key create`.
    pub fn api_key(&self) -> String {
        self.subcommand(&["api-key", "create", "--name", "test"]).trim().to_owned()
    }

    /// The user-token secret, as the app's backend reads it (`tidings hub keys`).
    pub fn user_token_secret(&self) -> String {
        let printed = self.subcommand(&["keys", "--user-token-secret"]);
        let line = printed.lines().find_map(|l| l.strip_prefix("User-token secret (HS256): ")).unwrap();
        line.trim().to_owned()
    }

    /// The admin secret: the data directory's file, or the database's row.
    pub fn admin_secret(&self) -> String {
        match &self.database {
            Some(database) => database.query_text("SELECT value FROM hub_keys WHERE name = 'admin-secret'"),
            None => std::fs::read_to_string(self.data_dir.join("admin-secret")).unwrap().trim().to_owned(),
        }
    }

    /// Replaces the admin secret where the hub reads it (it takes effect at the next start).
    pub fn set_admin_secret(&self, secret: &str) {
        match &self.database {
            Some(database) => database
                .execute(&format!("UPDATE hub_keys SET value = '{secret}' WHERE name = 'admin-secret'")),
            None => std::fs::write(self.data_dir.join("admin-secret"), format!("{secret}\n")).unwrap(),
        }
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// An answer: status, headers, body.
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A plain HTTP/1.1 client.
#[derive(Clone)]
pub struct Http(Client<HttpConnector, Full<Bytes>>);

impl Http {
    pub fn new() -> Self {
        Self(Client::builder(TokioExecutor::new()).build_http())
    }

    pub async fn call(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Answer {
        let mut request = http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default()))).unwrap();
        let response = self.0.request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into(),
        }
    }

    /// A JSON request.
    pub async fn json(&self, method: &str, url: &str, headers: &[(&str, &str)], body: &Value) -> Answer {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.call(method, url, &all, Some(body.to_string())).await
    }
}

/// A browser session with the hub: its cookie and CSRF token, sending the hub's Origin (or
/// the public origin it was opened with).
pub struct Browser {
    pub http: Http,
    pub hub: String,
    pub origin: String,
    pub cookie: String,
    pub token: String,
}

impl Browser {
    pub async fn open(http: &Http, hub: &str) -> Self {
        Self::open_from(http, hub, hub, &[]).await
    }

    /// A session of a page of `origin`, whose requests carry `headers` too.
    pub async fn open_from(http: &Http, hub: &str, origin: &str, headers: &[(&str, &str)]) -> Self {
        let answer = http.call("GET", &format!("{hub}/api/session"), headers, None).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let cookie = answer.headers["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let token = answer.json()["csrfToken"].as_str().unwrap().to_owned();
        Self { http: http.clone(), hub: hub.to_owned(), origin: origin.to_owned(), cookie, token }
    }

    /// A state-changing call as the app's page makes it.
    pub async fn send(&self, method: &str, path: &str, body: &Value) -> Answer {
        self.send_with(method, path, body, &[]).await
    }

    /// The same, with more headers.
    pub async fn send_with(&self, method: &str, path: &str, body: &Value, more: &[(&str, &str)]) -> Answer {
        let mut headers = vec![
            ("origin", self.origin.as_str()),
            ("sec-fetch-site", "same-origin"),
            ("cookie", self.cookie.as_str()),
            ("x-tidings-csrf", self.token.as_str()),
        ];
        headers.extend_from_slice(more);
        self.http.json(method, &format!("{}{path}", self.hub), &headers, body).await
    }
}

/// What a sink received.
#[derive(Default)]
pub struct Received {
    /// Requests per path.
    pub counts: HashMap<String, u32>,
    /// The last body per path.
    pub bodies: HashMap<String, Bytes>,
    /// Requests per VAPID subject (the JWT's `sub`): which hub process sent them.
    pub subjects: HashMap<String, u32>,
}

/// The `sub` claim of a request's VAPID `Authorization` (`vapid t=<JWT>, k=<key>`).
fn vapid_subject(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let jwt = value.strip_prefix("vapid t=")?.split(',').next()?;
    let claims = tidings_crypto::b64::decode(jwt.split('.').nth(1)?).ok()?;
    serde_json::from_slice::<Value>(&claims).ok()?["sub"].as_str().map(str::to_owned)
}

/// A push service that accepts everything (201), except paths under `/gone/` (410) and
/// `/refuse/` (403), after an optional delay per request.
pub struct Sink {
    pub port: u16,
    pub received: Arc<Mutex<Received>>,
}

impl Sink {
    pub async fn start(delay: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Received::default()));
        async fn accept(
            State((received, delay)): State<(Arc<Mutex<Received>>, Duration)>,
            Path(path): Path<String>,
            headers: http::HeaderMap,
            body: Bytes,
        ) -> http::StatusCode {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut received = received.lock().unwrap();
            *received.counts.entry(path.clone()).or_default() += 1;
            if let Some(subject) = vapid_subject(&headers) {
                *received.subjects.entry(subject).or_default() += 1;
            }
            received.bodies.insert(path.clone(), body);
            match path.split('/').next() {
                Some("gone") => http::StatusCode::GONE,
                Some("refuse") => http::StatusCode::FORBIDDEN,
                _ => http::StatusCode::CREATED,
            }
        }
        let app = Router::new()
            .route("/{*path}", axum::routing::post(accept))
            .with_state((received.clone(), delay));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { port, received }
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    pub fn total(&self) -> u32 {
        self.received.lock().unwrap().counts.values().sum()
    }
}

/// A user token for `sub`, signed by npm jsonwebtoken with the hub's secret, as an app's
/// backend would make it.
pub fn user_token(secret: &str, sub: &str, jti: &str) -> String {
    let signed = super::node(
        "sign-user-token",
        &serde_json::json!({ "secret": secret, "sub": sub, "jti": jti, "expiresIn": 600 }),
    )
    .unwrap();
    signed["token"].as_str().unwrap().to_owned()
}

/// The hub's subscriptions (the first thousand), through the REST API.
pub async fn subscriptions(http: &Http, hub: &str, key: &str) -> Vec<Value> {
    let auth = format!("Bearer {key}");
    let answer = http
        .call("GET", &format!("{hub}/api/v1/subscriptions?limit=1000"), &[("authorization", &auth)], None)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["subscriptions"].as_array().unwrap().clone()
}

/// A push service that accepts connections and never answers (a dead host), counting them.
pub struct DeadHost {
    pub port: u16,
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl DeadHost {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(stream);
            }
        });
        Self { port, connections }
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

/// Queues a send through the REST API; its id.
pub async fn queue(http: &Http, hub: &str, key: &str, send: &Value) -> u64 {
    let auth = format!("Bearer {key}");
    let answer = http.json("POST", &format!("{hub}/api/v1/sends"), &[("authorization", &auth)], send).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    answer.json()["id"].as_u64().unwrap()
}

/// A send's description now.
pub async fn send_status(http: &Http, hub: &str, key: &str, id: u64) -> Value {
    let auth = format!("Bearer {key}");
    let answer =
        http.call("GET", &format!("{hub}/api/v1/sends/{id}"), &[("authorization", &auth)], None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()
}

/// Polls a send until it is done; its description.
pub async fn wait_done(http: &Http, hub: &str, key: &str, id: u64, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    let auth = format!("Bearer {key}");
    loop {
        let answer =
            http.call("GET", &format!("{hub}/api/v1/sends/{id}"), &[("authorization", &auth)], None).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let send = answer.json();
        if send["status"] == "done" {
            return send;
        }
        assert!(tokio::time::Instant::now() < deadline, "the send did not finish: {send}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A page of the app's, served by a hub from a folder of `crates/tidings-cli/tests/`, open in
/// a real Firefox subscribed through `service`; the page reports to `page`.
pub struct HubPage {
    pub hub: HubProcess,
    pub key: String,
    pub http: Http,
    pub page: super::firefox::PageServer,
    pub firefox: super::firefox::Firefox,
}

impl HubPage {
    pub async fn open(service: &super::push::Service, folder: &str) -> Self {
        let static_dir = super::repo_root().join("crates/tidings-cli/tests").join(folder);
        let hub = HubProcess::start(&["--static-dir", static_dir.to_str().unwrap()]);
        let key = hub.api_key();
        let page = super::firefox::PageServer::start(String::new(), service.port).await;
        let (home, profile) = super::firefox::fresh_profile(service);
        let url = format!("{}/?report={}", hub.url(), page.url().trim_end_matches('/'));
        let firefox = super::firefox::Firefox::launch(&home, &profile, &url, home.join("firefox.log"));
        Self { hub, key, http: Http::new(), page, firefox }
    }
}
