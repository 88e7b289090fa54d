//! A real headless Firefox ESR pointed at a push service, following `shared/firefox/`: a
//! fresh profile with `user.js`, a page and service worker that report each step to a small
//! HTTP server of the test's, and nothing but starting and stopping the browser.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc};

const INDEX: &str = include_str!("../firefox/index.html");
const SERVICE_WORKER: &str = include_str!("../firefox/sw.js");
const USER_JS: &str = include_str!("../firefox/user.js");

/// The firefox-esr binary (scripts/install-test-deps installs Debian's package).
pub fn binary() -> PathBuf {
    for candidate in ["/usr/bin/firefox-esr", "/usr/bin/firefox"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("firefox-esr is not installed: run scripts/test, which installs it (apt-get install firefox-esr)");
}

/// A Firefox profile directory set up for a push service on `push_port`.
pub fn profile(dir: &Path, push_port: u16) -> PathBuf {
    let profile = dir.join("profile");
    std::fs::create_dir_all(&profile).unwrap();
    let prefs = USER_JS.replace("ws://127.0.0.1:8080/", &format!("ws://127.0.0.1:{push_port}/"));
    assert!(prefs.contains(&format!(":{push_port}/")), "user.js must name the push service");
    std::fs::write(profile.join("user.js"), prefs).unwrap();
    profile
}

/// A fresh directory beside `service`'s data directory, to be Firefox's HOME, with a profile
/// in it set up for `service`: (home, profile).
pub fn fresh_profile(service: &super::push::Service) -> (PathBuf, PathBuf) {
    let home = service.data_dir.with_extension("firefox");
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let profile = profile(&home, service.port);
    (home, profile)
}

/// A running Firefox; killed when dropped.
pub struct Firefox {
    child: Child,
    pub log: PathBuf,
}

impl Firefox {
    /// Starts headless Firefox on `profile`, opening `url`; its output goes to `log`.
    pub fn launch(home: &Path, profile: &Path, url: &str, log: PathBuf) -> Self {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let child = Command::new(binary())
            .args(["--headless", "--no-remote", "--profile"])
            .arg(profile)
            .arg(url)
            .env("HOME", home)
            .env("MOZ_HEADLESS", "1")
            .env("MOZ_CRASHREPORTER_DISABLE", "1")
            .env("MOZ_REMOTE_SETTINGS_DEVTOOLS", "1")
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap();
        Self { child, log }
    }

    /// Stops Firefox (SIGTERM, so the profile is saved; SIGKILL if it lingers).
    pub fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The tail of Firefox's output, for failure messages.
    pub fn output(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> =
            text.lines().filter(|l| l.contains("Push") || l.contains("push") || l.contains("rror")).collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Firefox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct PageState {
    key: String,
    push_port: u16,
    logs: mpsc::UnboundedSender<(String, Value)>,
    commands: Mutex<mpsc::UnboundedReceiver<Value>>,
}

/// The test page's server: serves the page and service worker, collects their reports.
pub struct PageServer {
    pub port: u16,
    logs: mpsc::UnboundedReceiver<(String, Value)>,
    /// Reports received while waiting for another kind, in arrival order.
    held: Vec<(String, Value)>,
    commands: mpsc::UnboundedSender<Value>,
}

impl PageServer {
    /// Serves the page; `key` is the applicationServerKey it subscribes with.
    pub async fn start(key: String, push_port: u16) -> Self {
        let (log_tx, logs) = mpsc::unbounded_channel();
        let (commands, command_rx) = mpsc::unbounded_channel();
        let state = Arc::new(PageState { key, push_port, logs: log_tx, commands: Mutex::new(command_rx) });
        let html =
            |body: &'static str, kind: &'static str| move || async move { ([("content-type", kind)], body) };
        let app = Router::new()
            .route("/", get(html(INDEX, "text/html; charset=utf-8")))
            .route("/sw.js", get(html(SERVICE_WORKER, "text/javascript")))
            .route("/key", get(|State(s): State<Arc<PageState>>| async move { s.key.clone() }))
            .route("/ready", get(ready))
            .route("/command", get(command))
            .route("/log", post(log))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { port, logs, held: Vec::new(), commands }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The next report of `kind`; reports of other kinds are kept for later calls (the page
    /// and the service worker run concurrently), errors fail the test.
    pub async fn next(&mut self, kind: &str, wait: Duration, firefox: &Firefox) -> Value {
        if let Some(i) = self.held.iter().position(|(k, _)| k == kind) {
            return self.held.remove(i).1;
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.logs.recv()).await {
                Ok(Some((k, data))) if k == kind => return data,
                Ok(Some((k, data))) if k == "error" => {
                    panic!("the page failed: {data}\n{}", firefox.output())
                }
                Ok(Some(other)) => self.held.push(other),
                _ => panic!("no {kind} report within {wait:?}; Firefox said:\n{}", firefox.output()),
            }
        }
    }

    /// Asks the page to do something.
    pub fn command(&self, action: &str) {
        self.commands_send(json!({"action": action}));
    }

    /// Asks the page to do something, with arguments.
    pub fn commands_send(&self, command: Value) {
        self.commands.send(command).unwrap();
    }
}

/// Pages of another origin (the hub's) may read the answers.
const ANY_ORIGIN: [(&str, &str); 1] = [("access-control-allow-origin", "*")];

/// Ready once the push service has a user agent online (Firefox said hello).
async fn ready(State(state): State<Arc<PageState>>) -> impl axum::response::IntoResponse {
    let online = super::push::metric_on(state.push_port, "tidings_user_agents_online").await.unwrap_or(0.0);
    (ANY_ORIGIN, axum::Json(json!({"ready": online >= 1.0})))
}

/// Long poll: the next command, or nothing after a second.
async fn command(State(state): State<Arc<PageState>>) -> impl axum::response::IntoResponse {
    let mut commands = state.commands.lock().await;
    match tokio::time::timeout(Duration::from_secs(1), commands.recv()).await {
        Ok(Some(command)) => (ANY_ORIGIN, axum::Json(command)),
        _ => (ANY_ORIGIN, axum::Json(json!({}))),
    }
}

/// A report: JSON, sent as JSON or (from another origin, to need no CORS preflight) as text.
async fn log(State(state): State<Arc<PageState>>, body: bytes::Bytes) -> [(&'static str, &'static str); 1] {
    let report: Value =
        serde_json::from_slice(&body).unwrap_or_else(|e| json!({"kind": "error", "data": e.to_string()}));
    let kind = report["kind"].as_str().unwrap_or("").to_owned();
    let _ = state.logs.send((kind, report["data"].clone()));
    ANY_ORIGIN
}
