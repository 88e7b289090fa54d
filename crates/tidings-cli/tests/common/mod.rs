//! Shared by the integration tests: the `tidings` binary, the npm and PyPI helpers that
//! `scripts/test` installs, and a user agent's keys to receive with.
#![allow(dead_code, reason = "each test binary uses a different part of this module")]

use serde_json::{Value, json};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use tidings_crypto::b64;
use tidings_crypto::webpush::ReceiverKeys;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub fn interop_dir() -> PathBuf {
    repo_root().join("tests/interop")
}

/// The `tidings` binary under test.
pub fn tidings() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tidings"))
}

fn require(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} is missing at {}: run scripts/test, which installs the interop packages",
        path.display()
    );
    path
}

fn run_helper(mut command: Command, input: &Value) -> Result<Value, String> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn helper");
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("helper prints JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Runs `tests/interop/helper.js <command>` (npm web-push, http_ece, jsonwebtoken).
pub fn node(command: &str, input: &Value) -> Result<Value, String> {
    require(interop_dir().join("node_modules/web-push"), "npm web-push");
    let mut cmd = Command::new("node");
    cmd.arg(interop_dir().join("helper.js")).arg(command);
    run_helper(cmd, input)
}

/// The Python of the project-local virtualenv that has pywebpush, http_ece and py_vapid.
pub fn python_bin() -> PathBuf {
    require(repo_root().join(".tools/venv/bin/python"), "the Python virtualenv with pywebpush")
}

/// Runs `tests/interop/helper.py <command>` (pywebpush, http_ece, py_vapid).
pub fn python(command: &str, input: &Value) -> Result<Value, String> {
    let mut cmd = Command::new(python_bin());
    cmd.arg(interop_dir().join("helper.py")).arg(command);
    run_helper(cmd, input)
}

/// A user agent: fresh keys, and the PushSubscription JSON for an endpoint.
pub struct UserAgent {
    pub keys: ReceiverKeys,
}

impl UserAgent {
    pub fn new() -> Self {
        Self { keys: ReceiverKeys::generate().unwrap() }
    }

    pub fn p256dh(&self) -> String {
        b64::encode(self.keys.subscription_keys().p256dh.as_bytes())
    }

    pub fn auth(&self) -> String {
        b64::encode(&self.keys.subscription_keys().auth)
    }

    pub fn private_key(&self) -> String {
        b64::encode(&self.keys.private_bytes())
    }

    pub fn subscription(&self, endpoint: &str) -> Value {
        json!({"endpoint": endpoint, "expirationTime": null, "keys": {"p256dh": self.p256dh(), "auth": self.auth()}})
    }
}

/// A child process that is killed when the test ends, however it ends.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `command` (a long-running `tidings` subcommand) and waits until its log (stderr)
/// has a line containing `ready`. The log is collected for the process's whole life, so the
/// pipe never fills.
pub fn spawn_until_ready(
    mut command: Command,
    ready: &'static str,
    what: &str,
) -> (std::process::Child, std::sync::Arc<std::sync::Mutex<String>>) {
    use std::io::BufRead as _;
    let mut child = command.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(ready) {
                let _ = ready_tx.send(());
            }
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    if ready_rx.recv_timeout(std::time::Duration::from_secs(20)).is_err() {
        let _ = child.kill();
        panic!("{what} did not start:\n{}", log.lock().unwrap());
    }
    (child, log)
}

/// A free TCP port on loopback (released again, so a server can bind it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A TCP port free on every address (a port free on loopback may be in use on another).
pub fn free_port_everywhere() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port()
}

/// A minimal blocking HTTP/1.1 POST of JSON on loopback: (status, body).
pub fn post_json(port: u16, path: &str, body: &Value) -> std::io::Result<(u16, String)> {
    use std::io::Read as _;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    let body = body.to_string();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // The servers we talk to may answer chunked; the JSON is the only non-size line.
    let body = if response.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body.lines()
            .filter(|l| !l.is_empty() && !l.chars().all(|c| c.is_ascii_hexdigit()))
            .collect::<String>()
    } else {
        body.to_owned()
    };
    Ok((status, body))
}
pub mod firefox;
pub mod hub;
pub mod postgres;
pub mod push;
pub mod redis;
