//! The deployment under test, on loopback: a Redis primary with a replica (the run's own,
//! on free ports, so that it can kill and restart them), three `tidings serve` nodes on it
//! behind a small load balancer, and a `tidings hub`. Everything can be killed with
//! `kill -9` and started again where it was.

use crate::hub::start_hub;
use crate::service::{Service, rss_of};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// A free port on loopback.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One redis-server of the run's own.
pub struct Redis {
    pub port: u16,
    pub dir: PathBuf,
    args: Vec<String>,
    pub child: Child,
}

impl Redis {
    /// Starts a server on `port` keeping its files in `dir`, and waits until it answers.
    pub fn start(port: u16, dir: &Path, extra: &[&str]) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut args: Vec<String> = ["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", ""]
            .into_iter()
            .map(Into::into)
            .collect();
        args.extend(["--dir".into(), dir.display().to_string()]);
        args.extend(extra.iter().map(|a| a.to_string()));
        let child = spawn_redis(port, &args)?;
        Ok(Self { port, dir: dir.to_owned(), args, child })
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on its port and files.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.child = spawn_redis(self.port, &self.args)?;
        Ok(())
    }

    /// `redis-cli -p <port> <args>`'s output.
    pub fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

/// Starts redis-server with `args` and waits until it answers on `port` (having read its
/// append-only file back, for a restart).
fn spawn_redis(port: u16, args: &[String]) -> Result<Child> {
    let child = Command::new("redis-server")
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .context("redis-server (scripts/install-test-deps installs it)")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = Command::new("redis-cli").args(["-p", &port.to_string(), "ping"]).output()?;
        // "LOADING" while the append-only file is read back: not ready yet.
        if String::from_utf8_lossy(&answer.stdout).trim() == "PONG" {
            return Ok(child);
        }
        if Instant::now() > deadline {
            bail!("redis-server did not start on {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How the nodes and the hub are started.
pub struct Plan {
    pub dir: PathBuf,
    pub hub_store: Option<String>,
    pub hub_concurrency: usize,
}

/// The whole deployment.
pub struct Deployment {
    pub primary: Redis,
    pub replica: Redis,
    pub nodes: Vec<Option<Service>>,
    pub ports: Vec<u16>,
    serve_args: Vec<String>,
    pub hub: Option<Child>,
    pub hub_url: String,
    hub_port: u16,
    pub public_url: String,
    plan: Plan,
}

impl Deployment {
    /// Starts Redis (primary and replica), `nodes` serve nodes on it behind a load balancer
    /// (on this runtime), and the hub.
    pub async fn start(plan: Plan, nodes: usize) -> Result<Self> {
        std::fs::create_dir_all(&plan.dir)?;
        let (primary_port, replica_port) = (free_port()?, free_port()?);
        // Append-only, synced before each answer (what docs/storage.md asks for a restart
        // to lose nothing): the primary is restarted, not failed over, and the replica
        // resyncs from whatever it comes back with. (The first 30-minute run, on
        // `everysec`, lost 5 hub recipients around a restart: see docs/reliability.md.)
        let persist = ["--appendonly", "yes", "--appendfsync", "always"];
        let primary = Redis::start(primary_port, &plan.dir.join("redis-primary"), &persist)?;
        let replica_of = ["--replicaof", "127.0.0.1", &primary_port.to_string()];
        let replica = Redis::start(replica_port, &plan.dir.join("redis-replica"), &replica_of)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !replica.cli(&["info", "replication"]).contains("master_link_status:up") {
            if Instant::now() > deadline {
                bail!("the Redis replica did not sync");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ports: Vec<u16> = (0..nodes).map(|_| free_port()).collect::<Result<_>>()?;
        let balancer = TcpListener::bind("127.0.0.1:0").await?;
        let public_url = format!("http://127.0.0.1:{}", balancer.local_addr()?.port());
        tokio::spawn(balance(balancer, ports.clone()));
        let serve_args: Vec<String> = [
            "--store",
            &format!("redis://127.0.0.1:{primary_port}/"),
            "--redis-replicas",
            "1",
            "--public-url",
            &public_url,
            "--new-users-per-address",
            "0",
        ]
        .into_iter()
        .map(Into::into)
        .collect();
        let hub_port = free_port()?;
        std::fs::write(plan.dir.join("hub.admin"), "an admin secret for the soak run\n")?;
        let mut deployment = Self {
            primary,
            replica,
            nodes: Vec::new(),
            ports,
            serve_args,
            hub: None,
            hub_url: format!("http://127.0.0.1:{hub_port}"),
            hub_port,
            public_url,
            plan,
        };
        for node in 0..nodes {
            let service = deployment.spawn_node(node)?;
            deployment.nodes.push(Some(service));
        }
        deployment.start_hub()?;
        Ok(deployment)
    }

    fn spawn_node(&self, node: usize) -> Result<Service> {
        let mut args = self.serve_args.clone();
        args.extend(["--node-id".into(), format!("node-{node}")]);
        Service::spawn_at(self.ports[node], &args)
    }

    /// The WebSocket URL of node `node`.
    pub fn ws_url(&self, node: usize) -> String {
        format!("ws://127.0.0.1:{}/", self.ports[node])
    }

    /// `kill -9` of node `node`.
    pub fn kill_node(&mut self, node: usize) {
        self.nodes[node] = None;
    }

    /// Starts node `node` again (same port, same id), retrying while its start fails (Redis
    /// may be restarting too).
    pub fn restart_node(&mut self, node: usize) -> Result<()> {
        let mut last = None;
        for _ in 0..10 {
            match self.spawn_node(node) {
                Ok(service) => {
                    self.nodes[node] = Some(service);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        Err(last.expect("tried").context(format!("restarting node {node}")))
    }

    /// Starts the hub (again) on its port and store.
    pub fn start_hub(&mut self) -> Result<()> {
        let dir = self.plan.dir.join("hub");
        let store = self.plan.hub_store.as_deref();
        self.hub = Some(start_hub(&dir, self.hub_port, self.plan.hub_concurrency, store)?);
        Ok(())
    }

    /// `kill -9` of the hub.
    pub fn kill_hub(&mut self) {
        if let Some(mut hub) = self.hub.take() {
            let _ = hub.kill();
            let _ = hub.wait();
        }
    }

    /// `tidings hub <args>` on the hub's store; its output.
    pub fn hub_command(&self, args: &[&str]) -> Result<String> {
        let mut command = Command::new(crate::service::tidings_binary()?);
        command.arg("hub").args(args);
        match &self.plan.hub_store {
            Some(url) => command.args(["--store", url]),
            None => command.arg("--data-dir").arg(self.plan.dir.join("hub")),
        };
        let out = command.output()?;
        if !out.status.success() {
            bail!("tidings hub {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// The processes to sample: (name, pid, data directory).
    pub fn processes(&self) -> Vec<(String, u32, Option<PathBuf>)> {
        let mut all = vec![
            ("redis-primary".to_owned(), self.primary.child.id(), Some(self.primary.dir.clone())),
            ("redis-replica".to_owned(), self.replica.child.id(), Some(self.replica.dir.clone())),
        ];
        for (n, node) in self.nodes.iter().enumerate() {
            if let Some(service) = node
                && let Some(pid) = service.pid
            {
                all.push((format!("node-{n}"), pid, service.data_dir().map(Path::to_owned)));
            }
        }
        if let Some(hub) = &self.hub {
            let dir = self.plan.hub_store.is_none().then(|| self.plan.dir.join("hub"));
            all.push(("hub".to_owned(), hub.id(), dir));
        }
        all
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        self.kill_hub();
    }
}

/// A process's resident memory, open file descriptors and data-directory bytes.
pub fn measure(pid: u32, dir: Option<&Path>) -> Option<(f64, f64, f64)> {
    let rss = rss_of(pid)? as f64;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as f64;
    let disk = dir.map_or(0, dir_size) as f64;
    Some((rss, fds, disk))
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The load balancer in front of the nodes (what nginx does in docs/multi-node.md): each
/// connection goes to the next node that accepts it, so a dead node's share goes to the
/// others, and endpoints (which name the balancer) work whichever node is down.
async fn balance(listener: TcpListener, ports: Vec<u16>) {
    let next = Arc::new(AtomicUsize::new(0));
    while let Ok((mut client, _)) = listener.accept().await {
        let (ports, next) = (ports.clone(), next.clone());
        tokio::spawn(async move {
            let first = next.fetch_add(1, Ordering::Relaxed);
            for k in 0..ports.len() {
                let port = ports[(first + k) % ports.len()];
                if let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", port)).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    return;
                }
            }
        });
    }
}
