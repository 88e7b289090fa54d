//! Starting the hub: keys, database, dispatcher, and the HTTP server.

use crate::api_keys::KeyRing;
use crate::config::Config;
use crate::csrf::Sessions;
use crate::dispatch::Dispatcher;
use crate::http::limits::Limits;
use crate::http::{Shared, router};
use crate::secrets;
use crate::store::HubStore;
use crate::unix_now;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tidings_crypto::vapid::VapidSigner;
use tidings_sender::{ClientConfig, FanoutConfig, PushClient};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A key file is unusable.
    #[error("keys: {0}")]
    Secrets(#[from] secrets::SecretError),
    /// The database cannot be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The API keys file cannot be read.
    #[error("API keys: {0}")]
    ApiKeys(std::io::Error),
    /// The address cannot be listened on.
    #[error("cannot listen on {0}: {1}")]
    Listen(std::net::SocketAddr, std::io::Error),
}

/// A hub ready to serve.
pub struct Hub {
    shared: Arc<Shared>,
    dispatcher: Dispatcher,
    listener: TcpListener,
}

impl Hub {
    /// Loads (or creates) the keys and the database in the data directory and binds the
    /// listener. `admin_secret` overrides the admin secret file.
    pub async fn bind(config: Config, admin_secret: Option<String>) -> Result<Self, StartError> {
        let secrets = secrets::load(&config.data_dir, admin_secret)?;
        let store = HubStore::open(&config.data_dir.join("db"))?;
        let api_keys = KeyRing::open(config.data_dir.join("api-keys")).map_err(StartError::ApiKeys)?;
        let listener =
            TcpListener::bind(config.listen).await.map_err(|e| StartError::Listen(config.listen, e))?;
        let wake = Arc::new(Notify::new());
        let vapid_public_key = secrets.vapid.public_key_base64();
        let signer = Arc::new(VapidSigner::new(secrets.vapid, Some(config.vapid_subject.clone())));
        let client = PushClient::new(ClientConfig {
            timeout: config.push_timeout,
            extra_roots: config.extra_roots.clone(),
            policy: config.connect_policy(),
            resolver: config.resolver.clone(),
            ..ClientConfig::default()
        });
        let fanout = FanoutConfig {
            concurrency: config.concurrency,
            per_origin: config.concurrency.div_ceil(2).max(1),
            ..FanoutConfig::default()
        };
        let dispatcher = Dispatcher {
            store: store.clone(),
            client,
            signer,
            fanout,
            wake: wake.clone(),
            pruning: config.pruning,
        };
        let sessions = Sessions::new(&secrets.session, config.is_https());
        let shared = Arc::new(Shared {
            limits: Limits::new(&config),
            closed: std::sync::atomic::AtomicU64::new(0),
            demo: tokio::sync::Mutex::default(),
            user_token_secret: secrets.user_token,
            admin_fingerprint: sessions.admin_fingerprint(&secrets.admin),
            admin_secret: secrets.admin,
            sessions,
            vapid_public_key,
            api_keys,
            wake,
            store,
            config,
        });
        Ok(Self { shared, dispatcher, listener })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes. Queued sends survive a stop: the next start
    /// resumes them.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let Self { shared, dispatcher, listener } = self;
        let dispatching = tokio::spawn(dispatcher.run());
        let chores = tokio::spawn(chores(shared.clone()));
        let app = router(shared.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
        let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
        dispatching.abort();
        chores.abort();
        if let Err(e) = shared.api_keys.save_usage() {
            tracing::warn!(error = %e, "could not note when the API keys were last used");
        }
        served
    }
}

/// Once a minute: forget used user tokens and admin logins that expired, and idle
/// rate-limit entries; note when API keys were last used.
async fn chores(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(Duration::from_secs(60));
    loop {
        interval.tick().await;
        shared.limits.retain_recent();
        if let Err(e) = shared.store.sweep(unix_now()).await {
            tracing::warn!(error = %e, "could not sweep used user tokens and ended admin logins");
        }
        if let Err(e) = shared.api_keys.save_usage() {
            tracing::warn!(error = %e, "could not note when the API keys were last used");
        }
    }
}
