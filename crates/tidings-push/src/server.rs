//! Listening, TLS, expiry sweeping and graceful shutdown.
//!
//! Every connection is HTTP/1.1, except a TLS connection whose client chose `h2` by ALPN:
//! that one is served with HTTP/2, so that a sender's many POSTs share one connection.
//! WebSockets need HTTP/1.1 (the upgrade), and clients open them with `http/1.1` or no
//! ALPN at all, as browsers do.

use crate::app::{App, unix_now};
use crate::config::Config;
use crate::http::router;
use crate::tls::TlsStream;
use crate::token::TokenKeys;
use hyper::server::conn::{http1, http2};
use hyper::service::Service as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tidings_store::{Backend, NodeEvent, ROUTE_REFRESH};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// How often expired messages are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How long a client may take to send its request headers (slow-loris protection); also
/// how long a TLS handshake may take, and an HTTP/2 connection may wait before its first
/// request.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an HTTP/2 connection may stay open with no request in progress. Long enough for
/// a sender's bursts to share it, short enough that idle clients cannot pile up connections.
/// (An idle HTTP/1.1 connection is closed after [`HEADER_TIMEOUT`]: hyper counts that time
/// from the end of the previous request.)
const HTTP2_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Requests one HTTP/2 connection may have in progress: a sender's default fan-out
/// concurrency (`tidings broadcast`), so that it fits in one connection.
const HTTP2_MAX_STREAMS: u32 = 256;
/// The largest header block of an HTTP/2 request. A push request's headers take under 2 KiB
/// (the VAPID token is the largest); this is hyper's current default, written down so that
/// it does not change under us.
const HTTP2_MAX_HEADER_LIST: u32 = 16 * 1024;
/// How long shutdown waits for connections to close after telling them to.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a node of a shared store reloads the broadcast versions: the backstop for an
/// announcement it missed (pub/sub delivers at most once; a node that was reconnecting to
/// Redis hears nothing meanwhile).
const BROADCAST_RELOAD: Duration = Duration::from_secs(60);

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listening address is unusable.
    #[error("cannot listen on {0}: {1}")]
    Listen(std::net::SocketAddr, std::io::Error),
    /// The endpoint keys cannot be read or created.
    #[error("endpoint keys: {0}")]
    Keys(String),
    /// The store cannot be used.
    #[error("storage: {0}")]
    Store(String),
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
}

/// A bound, ready-to-run push service.
pub struct Server<S> {
    app: Arc<App<S>>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// What other nodes sharing the store send this one (none when its bus serves one node).
    events: Option<tokio::sync::mpsc::Receiver<NodeEvent>>,
}

impl<S: Backend> Server<S> {
    /// Binds the listening socket and loads keys and certificates.
    pub async fn bind(config: Config, store: S) -> Result<Self, StartError> {
        let keys = match &config.endpoint_keys {
            Some(_) => endpoint_keys(&config)?,
            // Nodes sharing a store share its keys (the first node's), so that every node
            // accepts every endpoint; a single-node store keeps them in the data directory.
            None => match store.shared_endpoint_keys(&TokenKeys::generate_key()).await {
                Ok(Some(shared)) => TokenKeys::parse(&shared).map_err(|e| StartError::Keys(e.to_string()))?,
                Ok(None) => endpoint_keys(&config)?,
                Err(e) => return Err(StartError::Keys(e.to_string())),
            },
        };
        let tls = config.tls.as_ref().map(|(cert, key)| tls_config(cert, key)).transpose()?;
        let listener =
            TcpListener::bind(config.listen).await.map_err(|e| StartError::Listen(config.listen, e))?;
        let events =
            store.node_events(&config.node_id).await.map_err(|e| StartError::Store(e.to_string()))?;
        // The versions are known before the first hello (loading them is no change to count).
        let broadcasts = store.broadcasts().await.map_err(|e| StartError::Store(e.to_string()))?;
        let app = App::new(config, store, keys);
        {
            let mut table = app.broadcasts.write().unwrap_or_else(|p| p.into_inner());
            for (id, version) in broadcasts {
                if let Err(e) = table.set(&id, &version) {
                    tracing::warn!(id, error = %e, "a stored broadcast is refused");
                }
            }
        }
        Ok(Self { app: Arc::new(app), listener, tls, events })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The shared state (for tests and embedding).
    pub fn app(&self) -> &Arc<App<S>> {
        &self.app
    }

    /// Serves until `shutdown` completes, then stops accepting, tells every WebSocket to
    /// go away (close code 1001, so user agents reconnect), and waits briefly for them.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Self { app, listener, tls, events } = self;
        let service = TowerToHyperService::new(router(app.clone()));
        let sweeper = tokio::spawn(sweep(app.clone()));
        let renewer = tokio::spawn(renew_routes(app.clone()));
        let toucher = tokio::spawn(keep_in_touch(app.clone()));
        let megaphone =
            app.config.megaphone.clone().map(|m| tokio::spawn(crate::megaphone::poll(app.clone(), m)));
        let reloader = events.is_some().then(|| tokio::spawn(reload_broadcasts(app.clone())));
        let events = events.map(|events| tokio::spawn(follow(app.clone(), events)));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        if let Err(e) = watch_for_vanished_peer(&tcp, app.config.tcp_keepalive) {
                            tracing::debug!(error = %e, "could not turn on TCP keepalive");
                        }
                        let (service, tls) = (service.clone(), tls.clone());
                        tokio::spawn(serve_connection(tcp, peer, tls, service));
                    }
                    Err(e) => {
                        // Out of file descriptors, usually: wait instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        drop(listener);
        sweeper.abort();
        renewer.abort();
        toucher.abort();
        for task in [events, megaphone, reloader].into_iter().flatten() {
            task.abort();
        }
        app.registry.close_all();
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        while app.metrics.connections.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!("stopped");
    }
}

/// Makes the kernel close a connection whose peer vanished: a WebSocket is silent for hours,
/// and a peer that left (a phone that lost its network, a laptop put to sleep) sends no FIN.
/// Keepalive probes go out after `idle` without traffic, then every eighth of it, four
/// unanswered; and data left unacknowledged (a notification written just as the peer left,
/// which keepalive does not cover: retransmission would go on for some fifteen minutes) ends
/// the connection after the same bound (`TCP_USER_TIMEOUT`). By default (two minutes) a
/// vanished peer is gone within three minutes, with no timer or buffer of ours.
fn watch_for_vanished_peer(tcp: &TcpStream, idle: Duration) -> std::io::Result<()> {
    let interval = (idle / 8).max(Duration::from_secs(1));
    let socket = socket2::SockRef::from(tcp);
    socket.set_tcp_keepalive(
        &socket2::TcpKeepalive::new().with_time(idle).with_interval(interval).with_retries(4),
    )?;
    socket.set_tcp_user_timeout(Some(idle + interval * 4))
}

/// The address of the client a request came from (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

async fn serve_connection(
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    service: TowerToHyperService<axum::Router>,
) {
    let _ = tcp.set_nodelay(true);
    let service = hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(Peer(peer));
        service.call(request)
    });
    let result = match tls {
        None => serve_http1(TokioIo::new(tcp), service).await,
        Some(config) => match tokio::time::timeout(HEADER_TIMEOUT, TlsStream::accept(tcp, config)).await {
            // Boxed, so that HTTP/1.1 connections (WebSockets before their upgrade) do not
            // carry the larger HTTP/2 state in their task.
            Ok(Ok(stream)) if stream.alpn_protocol() == Some(b"h2") => {
                Box::pin(serve_http2(TokioIo::new(stream), service)).await
            }
            Ok(Ok(stream)) => serve_http1(TokioIo::new(stream), service).await,
            _ => return,
        },
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

/// Serves HTTP/1.1, with upgrades (the WebSocket).
async fn serve_http1<I, Svc>(io: I, service: Svc) -> hyper::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    Svc: hyper::service::HttpService<hyper::body::Incoming, ResBody = axum::body::Body>,
    Svc::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).max_buf_size(64 * 1024);
    http.serve_connection(io, service).with_upgrades().await
}

/// Serves HTTP/2 until the client closes, or until the connection has had no request in
/// progress for [`HTTP2_IDLE_TIMEOUT`] ([`HEADER_TIMEOUT`] before its first): hyper's
/// HTTP/2 server has no timeout of its own, and a client that opens a connection and sends
/// nothing must not keep it. Then it says GOAWAY and waits up to [`DRAIN_TIMEOUT`] for the
/// client to go (one that never finished its handshake does not answer GOAWAY).
///
/// No HTTP/2 pings: a peer that vanished in the middle of a request is ended by TCP
/// keepalive and the user timeout ([`watch_for_vanished_peer`]), and one that vanished between requests by the idle timeout.
async fn serve_http2<I, Svc>(io: I, service: Svc) -> hyper::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    Svc: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<axum::body::Body>,
        > + Send
        + 'static,
    Svc::Future: Send + 'static,
    Svc::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request| {
            let in_progress = activity.begin();
            let call = service.call(request);
            async move {
                let response = call.await;
                drop(in_progress);
                response
            }
        })
    };
    let mut http = http2::Builder::new(TokioExecutor::new());
    http.timer(TokioTimer::new())
        .max_concurrent_streams(HTTP2_MAX_STREAMS)
        .max_header_list_size(HTTP2_MAX_HEADER_LIST);
    let connection = http.serve_connection(io, service);
    tokio::pin!(connection);
    loop {
        let wake = activity.idle_deadline().unwrap_or_else(|| Instant::now() + HTTP2_IDLE_TIMEOUT);
        tokio::select! {
            result = connection.as_mut() => return result,
            () = tokio::time::sleep_until(wake) => {
                if activity.idle_deadline().is_some_and(|deadline| deadline <= Instant::now()) {
                    break;
                }
            }
        }
    }
    connection.as_mut().graceful_shutdown();
    tokio::time::timeout(DRAIN_TIMEOUT, connection).await.unwrap_or(Ok(()))
}

/// The requests in progress on an HTTP/2 connection, and since when it has had none.
struct Activity(Mutex<Idle>);

struct Idle {
    in_progress: usize,
    /// When the last request ended (or the connection started).
    since: Instant,
    /// Whether a request was ever made: the first must come within [`HEADER_TIMEOUT`].
    used: bool,
}

/// A request in progress; the connection is idle again when the last one is dropped.
struct InProgress(Arc<Activity>);

impl Activity {
    fn new() -> Self {
        Self(Mutex::new(Idle { in_progress: 0, since: Instant::now(), used: false }))
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Idle> {
        // The state is two counters and a time, valid whatever a panicking holder left.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn begin(self: &Arc<Self>) -> InProgress {
        let mut idle = self.idle();
        idle.in_progress += 1;
        idle.used = true;
        InProgress(self.clone())
    }

    /// When the connection is to be closed: `None` while a request is in progress.
    fn idle_deadline(&self) -> Option<Instant> {
        let idle = self.idle();
        let timeout = if idle.used { HTTP2_IDLE_TIMEOUT } else { HEADER_TIMEOUT };
        (idle.in_progress == 0).then(|| idle.since + timeout)
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        let mut idle = self.0.idle();
        idle.in_progress = idle.in_progress.saturating_sub(1);
        idle.since = Instant::now();
    }
}

/// Applies what other nodes send: deliveries to connections here, closing a connection
/// whose user agent connected elsewhere, and reading the broadcast versions again when one
/// was set.
async fn follow<S: Backend>(app: Arc<App<S>>, mut events: tokio::sync::mpsc::Receiver<NodeEvent>) {
    while let Some(event) = events.recv().await {
        match event {
            NodeEvent::Deliver { uaid, message } => {
                // Not connected here any more: it waits in storage for the next connection.
                let _ = app.registry.deliver(uaid, message);
            }
            NodeEvent::Disconnect { uaid } => app.registry.replaced_elsewhere(uaid),
            NodeEvent::BroadcastsChanged => {
                if let Err(e) = app.reload_broadcasts().await {
                    tracing::warn!(error = %e, "could not read the broadcast versions announced; the next reload will");
                }
            }
        }
    }
}

/// Runs a storage chore every `period`, the first time one period from now; a failure is
/// logged (`what` could not be done) and the next period tries again.
async fn every<F, Fut>(period: Duration, what: &str, mut chore: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), tidings_store::StoreError>>,
{
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        if let Err(e) = chore().await {
            tracing::warn!(error = %e, "could not {what}; trying again later");
        }
    }
}

/// Reloads the broadcast versions every [`BROADCAST_RELOAD`] (nodes of a shared store).
async fn reload_broadcasts<S: Backend>(app: Arc<App<S>>) {
    every(BROADCAST_RELOAD, "reload the broadcast versions", || app.reload_broadcasts()).await
}

/// Renews the routing entries of this node's connections every [`ROUTE_REFRESH`], so that
/// only those of a node that died expire.
async fn renew_routes<S: Backend>(app: Arc<App<S>>) {
    every(ROUTE_REFRESH, "renew the routing entries", || async {
        app.store.refresh_routes(&app.registry.uaids(), &app.config.node_id).await
    })
    .await
}

/// Records contact for the user agents connected here, often enough that one staying
/// connected for longer than the idle period is never forgotten (a quarter of the period,
/// at most hourly).
async fn keep_in_touch<S: Backend>(app: Arc<App<S>>) {
    let forget_after = app.config.forget_idle_after;
    let period = (forget_after / 4).clamp(Duration::from_millis(250), ROUTE_REFRESH);
    every(period, "record the contact of connected user agents", || async {
        for uaid in app.registry.uaids() {
            app.store.touch_user(uaid, unix_now(), forget_after.as_secs()).await?;
        }
        Ok(())
    })
    .await
}

/// Every [`SWEEP_INTERVAL`] (or sooner, for a short idle period): deletes expired messages,
/// and forgets user agents idle for the whole period.
async fn sweep<S: Backend>(app: Arc<App<S>>) {
    let forget_after = app.config.forget_idle_after;
    let mut interval =
        tokio::time::interval((forget_after / 4).clamp(Duration::from_millis(250), SWEEP_INTERVAL));
    loop {
        interval.tick().await;
        forget_idle(&app).await;
        loop {
            match app.store.sweep_expired(unix_now(), 10_000).await {
                Ok(n) => {
                    app.metrics.expired.inc_by(n as u64);
                    if n < 10_000 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "expiry sweep failed");
                    break;
                }
            }
        }
    }
}

/// Forgets the user agents idle for the whole period (not those connected here, which
/// [`keep_in_touch`] keeps recorded), in batches.
async fn forget_idle<S: Backend>(app: &App<S>) {
    loop {
        match app.store.forget_idle_users(unix_now(), app.config.forget_idle_after.as_secs(), 1000).await {
            Ok(n) => {
                app.metrics.forgotten.inc_by(n as u64);
                if n > 0 {
                    tracing::info!(count = n, "forgot idle user agents");
                }
                if n < 1000 {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not forget idle user agents; trying again later");
                return;
            }
        }
    }
}

/// The endpoint keys: from the configuration, or from `<data_dir>/endpoint-keys`, which
/// is created (mode 0600) with a new random key on first start.
fn endpoint_keys(config: &Config) -> Result<TokenKeys, StartError> {
    if let Some(text) = &config.endpoint_keys {
        return TokenKeys::parse(text).map_err(|e| StartError::Keys(e.to_string()));
    }
    let path = config.data_dir.join("endpoint-keys");
    match std::fs::read_to_string(&path) {
        Ok(text) => TokenKeys::parse(&text).map_err(|e| StartError::Keys(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = TokenKeys::generate_key();
            tidings_store::secret_file::write(&path, &format!("{key}\n"))
                .map_err(|e| StartError::Keys(format!("{}: {e}", path.display())))?;
            tracing::info!(path = %path.display(), "created a new endpoint key");
            TokenKeys::parse(&key).map_err(|e| StartError::Keys(e.to_string()))
        }
        Err(e) => Err(StartError::Keys(format!("{}: {e}", path.display()))),
    }
}

fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, StartError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|c| c.collect::<Result<Vec<_>, _>>())
        .map_err(|e| StartError::Tls(format!("{}: {e}", cert.display())))?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| StartError::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| StartError::Tls(e.to_string()))?;
    // HTTP/2 for senders that offer it (many POSTs on one connection); HTTP/1.1 for
    // WebSockets and every other client. A client that offers neither gets HTTP/1.1 too.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_http2_connection_is_idle_only_with_no_request_in_progress() {
        let activity = Arc::new(Activity::new());
        // The first request must come within the header timeout.
        assert_eq!(activity.idle_deadline(), Some(Instant::now() + HEADER_TIMEOUT));
        let (first, second) = (activity.begin(), activity.begin());
        assert_eq!(activity.idle_deadline(), None);
        tokio::time::advance(Duration::from_secs(300)).await;
        drop(first);
        assert_eq!(activity.idle_deadline(), None, "a request is still in progress");
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(second);
        // Then the idle timeout counts from the end of the last one.
        assert_eq!(activity.idle_deadline(), Some(Instant::now() + HTTP2_IDLE_TIMEOUT));
    }
}
