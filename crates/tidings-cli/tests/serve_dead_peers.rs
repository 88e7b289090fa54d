//! A user agent that vanishes without closing its connection (a phone that loses its
//! network sends no FIN) is disconnected within a bounded time by TCP keepalive (and the
//! user timeout, for data it never acknowledged), and the
//! user agents still there are unharmed. The vanishing one is a real `tidings listen` in a
//! network namespace of the test's own, behind a veth pair, whose address is then removed.

mod common;

use common::push::{Agent, Sender, Service, metric};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A network namespace joined to this one by a veth pair: this side `10.201.<n>.1`, the
/// namespace's `10.201.<n>.2`. Removed when dropped.
struct Namespace {
    name: String,
    outside: String,
    inside: String,
    subnet: u32,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip (iproute2)");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Namespace {
    fn new() -> Self {
        let id = std::process::id();
        let subnet = id % 250 + 1;
        let ns = Self {
            name: format!("tidings-peer-{id}"),
            outside: format!("tdo{}", id % 100_000),
            inside: format!("tdi{}", id % 100_000),
            subnet,
        };
        ip(&["netns", "add", &ns.name]);
        ip(&["link", "add", &ns.outside, "type", "veth", "peer", "name", &ns.inside]);
        ip(&["link", "set", &ns.inside, "netns", &ns.name]);
        ip(&["addr", "add", &format!("10.201.{subnet}.1/30"), "dev", &ns.outside]);
        ip(&["link", "set", &ns.outside, "up"]);
        ip(&["-n", &ns.name, "addr", "add", &format!("10.201.{subnet}.2/30"), "dev", &ns.inside]);
        ip(&["-n", &ns.name, "link", "set", &ns.inside, "up"]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// The address of this side, as the namespace reaches it.
    fn outside_address(&self) -> String {
        format!("10.201.{}.1", self.subnet)
    }

    /// Makes the namespace's peers vanish: its address is removed, so packets to it arrive
    /// and are dropped without an answer (no RST, no ICMP: it does not forward), as for a
    /// device that left the network. (Taking the link down would not do: the kernel sees
    /// that locally and keeps retrying instead of counting unanswered probes.)
    fn cut(&self) {
        ip(&["-n", &self.name, "addr", "flush", "dev", &self.inside]);
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = Command::new("ip").args(["link", "del", &self.outside]).stderr(Stdio::null()).status();
    }
}

struct Listener(Child);

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_peer_is_disconnected_by_keepalive() {
    let namespace = Namespace::new();
    let service = Service::start_on_every_address(&["--tcp-keepalive", "2"]);
    // A user agent that stays, on loopback.
    let sender = Sender::new();
    let mut staying = Agent::hello(&service.ws_url(), None).await;
    let sub = staying.register(None).await;
    // One that will vanish: `tidings listen` inside the namespace.
    let state = std::env::temp_dir().join(format!("tidings-dead-peer-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&state);
    let server = format!("ws://{}:{}/", namespace.outside_address(), service.port);
    let _listener = Listener(
        Command::new("ip")
            .args(["netns", "exec", &namespace.name])
            .arg(env!("CARGO_BIN_EXE_tidings"))
            .args(["listen", "--server", &server, "--state"])
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::push::eventually("the namespaced user agent to connect", || async {
        metric(&service, "tidings_user_agents_online").await == Some(2.0)
    })
    .await;

    // Once the connection is quiet (its registration acknowledged), the peer vanishes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    namespace.cut();
    let cut = Instant::now();
    let deadline = cut + Duration::from_secs(20);
    while metric(&service, "tidings_user_agents_online").await != Some(1.0) {
        assert!(Instant::now() < deadline, "the vanished peer is still counted after 20 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = cut.elapsed();
    // Two idle seconds, then four probes a second apart (or as long for data it never acked),
    // plus the kernel's timer slack.
    assert!(took < Duration::from_secs(12), "disconnected after {took:?}");
    assert_eq!(metric(&service, "tidings_websocket_connections").await, Some(1.0));
    assert_eq!(sender.push(&sub, "still here").await.status, 201);
    assert_eq!(sub.decrypt(&staying.notification().await), b"still here");
    let _ = std::fs::remove_file(&state);
    eprintln!("the vanished peer was disconnected {took:?} after its link went down");
}
