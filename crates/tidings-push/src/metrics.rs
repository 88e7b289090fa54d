//! Prometheus metrics, served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels for errors: the errno.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrnoLabel {
    /// The errno answered.
    pub errno: u16,
}

/// Labels for refusals: which limit refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    /// The limit (`connections`, `connections_per_address`, `new_users_per_address`,
    /// `client_pings`, `channels`).
    pub limit: &'static str,
}

/// Labels for polls of a megaphone API: how one ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PollLabel {
    /// `ok`, or `error` (unreachable, not a 2xx, or an answer that is not megaphone JSON).
    pub result: &'static str,
}

/// Labels for the node this process is.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    /// The node id (`--node-id`).
    pub node: String,
}

/// Everything the service counts.
pub struct Metrics {
    registry: Registry,
    /// WebSocket connections open now.
    pub connections: Gauge,
    /// WebSocket connections that said hello (registered user agents online).
    pub online: Gauge,
    /// Messages answered 201.
    pub accepted: Counter,
    /// Messages sent to a user agent over its WebSocket (including redeliveries).
    pub delivered: Counter,
    /// Messages stored for a user agent that was not connected.
    pub stored: Counter,
    /// Messages removed by the expiry sweep.
    pub expired: Counter,
    /// POSTs recognised as a sender's retry of a message already stored (answered 201, not
    /// stored again).
    pub repeated: Counter,
    /// TTL 0 messages whose user agent was not connected (never stored).
    pub dropped: Counter,
    /// User agents forgotten after the idle period, by the sweep.
    pub forgotten: Counter,
    /// Messages acknowledged (and deleted).
    pub acked: Counter,
    /// Push API errors, by errno.
    pub errors: Family<ErrnoLabel, Counter>,
    /// Clients refused by a limit, by limit.
    pub refused: Family<LimitLabel, Counter>,
    /// Seconds from the start of a POST to its 201 (durable storage included).
    pub accept_seconds: Histogram,
    /// Seconds from a POST's 201 to the notification being written to the user agent.
    pub delivery_seconds: Histogram,
    /// Broadcast versions that changed on this node (set here, or announced by another node).
    pub broadcast_changes: Counter,
    /// `broadcast` frames sent to user agents because a broadcast they follow changed.
    pub broadcasts_sent: Counter,
    /// Polls of the megaphone API, by result.
    pub megaphone_polls: Family<PollLabel, Counter>,
    /// Always 1, labelled with the node id, so that per-node series can be told apart.
    pub node: Family<NodeLabel, Gauge>,
}

impl Metrics {
    /// Registers every metric under the `tidings_` prefix, for the node `node_id`.
    pub fn new(node_id: &str) -> Self {
        let mut registry = Registry::with_prefix("tidings");
        let buckets =
            || Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0]);
        let metrics = Self {
            connections: Gauge::default(),
            online: Gauge::default(),
            accepted: Counter::default(),
            delivered: Counter::default(),
            stored: Counter::default(),
            expired: Counter::default(),
            repeated: Counter::default(),
            dropped: Counter::default(),
            forgotten: Counter::default(),
            acked: Counter::default(),
            errors: Family::default(),
            refused: Family::default(),
            accept_seconds: buckets(),
            delivery_seconds: buckets(),
            broadcast_changes: Counter::default(),
            broadcasts_sent: Counter::default(),
            megaphone_polls: Family::default(),
            node: Family::default(),
            registry: Registry::default(),
        };
        metrics.node.get_or_create(&NodeLabel { node: node_id.to_owned() }).set(1);
        registry.register("websocket_connections", "Open WebSocket connections", metrics.connections.clone());
        registry.register("user_agents_online", "Connections that completed hello", metrics.online.clone());
        registry.register("messages_accepted", "Messages answered 201", metrics.accepted.clone());
        registry.register(
            "messages_delivered",
            "Notifications written to user agents",
            metrics.delivered.clone(),
        );
        registry.register(
            "messages_stored",
            "Messages stored for absent user agents",
            metrics.stored.clone(),
        );
        registry.register("messages_expired", "Messages removed after their TTL", metrics.expired.clone());
        registry.register(
            "messages_repeated",
            "POSTs of a message already stored (a sender's retry): answered 201, not stored again",
            metrics.repeated.clone(),
        );
        registry.register(
            "messages_dropped",
            "TTL 0 messages dropped: their user agent was not connected",
            metrics.dropped.clone(),
        );
        registry.register(
            "user_agents_forgotten",
            "User agents forgotten after the idle period, with their subscriptions",
            metrics.forgotten.clone(),
        );
        registry.register("messages_acked", "Messages acknowledged and deleted", metrics.acked.clone());
        registry.register("push_errors", "Push API errors by errno", metrics.errors.clone());
        registry.register("refused", "Clients refused by a limit, by limit", metrics.refused.clone());
        registry.register(
            "accept_latency_seconds",
            "POST to 201, storage included",
            metrics.accept_seconds.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "201 to notification sent",
            metrics.delivery_seconds.clone(),
        );
        registry.register(
            "broadcast_changes",
            "Broadcast versions changed on this node (set here or announced by another node)",
            metrics.broadcast_changes.clone(),
        );
        registry.register(
            "broadcasts_sent",
            "Broadcast frames sent to user agents because a broadcast they follow changed",
            metrics.broadcasts_sent.clone(),
        );
        registry.register(
            "megaphone_polls",
            "Polls of the megaphone API, by result",
            metrics.megaphone_polls.clone(),
        );
        Self { registry, ..metrics }
    }

    /// Counts a client refused by `limit`.
    pub fn refuse(&self, limit: &'static str) {
        self.refused.get_or_create(&LimitLabel { limit }).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String");
        text
    }
}
