//! The push service under test: one this benchmark starts (`tidings serve` from the same
//! build, on a fresh data directory), or any other, given by its WebSocket URL.

use anyhow::{Context, Result, bail};
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where to find the service, and how to measure it.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// A push service's WebSocket URL; without it a `tidings serve` is started.
    #[arg(long)]
    pub url: Option<String>,
    /// The service's process id, to measure its memory (known when we start it).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Extra arguments for the `tidings serve` we start.
    #[arg(long, allow_hyphen_values = true, value_delimiter = ' ')]
    pub serve_args: Vec<String>,
}

/// A service to benchmark.
pub struct Service {
    pub ws_url: String,
    /// For a service we started with TLS: its self-signed certificate (PEM), for clients to
    /// trust.
    pub tls_root: Option<PathBuf>,
    pub pid: Option<u32>,
    child: Option<Child>,
    data_dir: Option<PathBuf>,
    /// Milliseconds from spawn to ready, for a service we started.
    pub startup: Option<Duration>,
}

/// The `tidings` binary next to this one (both are built by `cargo build --release`).
pub fn tidings_binary() -> Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name("tidings");
    if !path.exists() {
        bail!("{} is missing: build it with cargo build --release -p tidings-cli", path.display());
    }
    Ok(path)
}

impl Service {
    /// The target: the URL given, or a fresh `tidings serve`.
    pub fn start(target: &Target) -> Result<Self> {
        if let Some(url) = &target.url {
            return Ok(Self {
                ws_url: url.clone(),
                tls_root: None,
                pid: target.server_pid,
                child: None,
                data_dir: None,
                startup: None,
            });
        }
        Self::spawn(&target.serve_args)
    }

    /// Starts `tidings serve` on a free port and a fresh data directory.
    pub fn spawn(extra: &[String]) -> Result<Self> {
        Self::launch(extra, false, None)
    }

    /// Starts `tidings serve` on `port`: a node restarted after `kill -9` comes back where
    /// its clients and the load balancer expect it.
    pub fn spawn_at(port: u16, extra: &[String]) -> Result<Self> {
        Self::launch(extra, false, Some(port))
    }

    /// Starts `tidings serve` serving `wss://` with a fresh self-signed certificate for
    /// 127.0.0.1 (given back in [`Service::tls_root`]).
    pub fn spawn_tls(extra: &[String]) -> Result<Self> {
        Self::launch(extra, true, None)
    }

    fn launch(extra: &[String], tls: bool, port: Option<u16>) -> Result<Self> {
        let port = match port {
            Some(port) => port,
            None => std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(),
        };
        let data_dir = std::env::temp_dir().join(format!("tidings-bench-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        let mut tls_args = Vec::new();
        let tls_root = if tls {
            std::fs::create_dir_all(&data_dir)?;
            let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
            let (cert_file, key_file) = (data_dir.join("tls-cert.pem"), data_dir.join("tls-key.pem"));
            std::fs::write(&cert_file, cert.cert.pem())?;
            std::fs::write(&key_file, cert.signing_key.serialize_pem())?;
            tls_args.extend(["--tls-cert".into(), cert_file.clone().into_os_string()]);
            tls_args.extend(["--tls-key".into(), key_file.into_os_string()]);
            tls_args.extend(["--public-url".into(), format!("https://127.0.0.1:{port}").into()]);
            Some(cert_file)
        } else {
            None
        };
        let start = Instant::now();
        let mut child = Command::new(tidings_binary()?)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(&data_dir)
            .args(tls_args)
            .args(extra)
            .env("TIDINGS_LOG", "warn,tidings::cmd::serve=info")
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tidings serve")?;
        let stderr = child.stderr.take().expect("piped");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("is ready") {
                    let _ = ready_tx.send(Instant::now());
                } else if !line.trim().is_empty() {
                    eprintln!("tidings serve: {line}");
                }
            }
        });
        let ready = ready_rx.recv_timeout(Duration::from_secs(30)).context("tidings serve did not start")?;
        Ok(Self {
            ws_url: format!("{}://127.0.0.1:{port}/", if tls { "wss" } else { "ws" }),
            tls_root,
            pid: Some(child.id()),
            child: Some(child),
            data_dir: Some(data_dir),
            startup: Some(ready - start),
        })
    }

    /// The data directory of a service we started.
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self.data_dir.as_deref()
    }

    /// The service's resident memory, in bytes, when its pid is known.
    pub fn rss(&self) -> Option<u64> {
        rss_of(self.pid?)
    }
}

/// VmRSS (resident memory now) of a process, in bytes.
pub fn rss_of(pid: u32) -> Option<u64> {
    memory_of(pid, "VmRSS:")
}

/// VmHWM (peak resident memory) of a process, in bytes.
pub fn peak_of(pid: u32) -> Option<u64> {
    memory_of(pid, "VmHWM:")
}

/// A memory field of `/proc/PID/status` (given in kB there), in bytes.
fn memory_of(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
