//! Starting the hub: keys, database, dispatcher, and the HTTP server.

use crate::api_keys::{KeyRing, Source};
use crate::config::{Config, StoreChoice};
use crate::csrf::Sessions;
use crate::dispatch::{DispatchConfig, Dispatcher, Supervised};
use crate::http::limits::Limits;
use crate::http::{Shared, router};
use crate::secrets;
use crate::store::embedded::EmbeddedStore;
use crate::store::postgres::PostgresStore;
use crate::store::{AnyStore, Store as _};
use crate::unix_now;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tidings_crypto::vapid::VapidSigner;
use tidings_sender::{ClientConfig, Engine, FanoutConfig, PushClient};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A key file is unusable.
    #[error("keys: {0}")]
    Secrets(#[from] secrets::SecretError),
    /// The database cannot be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The API keys cannot be read.
    #[error("API keys: {0}")]
    ApiKeys(String),
    /// The PostgreSQL database cannot be used.
    #[error(transparent)]
    Postgres(#[from] crate::store::postgres::ConnectError),
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
    /// Opens the store (the embedded one in the data directory, with the keys beside it; or
    /// PostgreSQL, with the keys in it), creating what is missing, and binds the listener.
    /// `admin_secret` overrides the stored admin secret.
    pub async fn bind(config: Config, admin_secret: Option<String>) -> Result<Self, StartError> {
        let (store, secrets, keys) = match &config.store {
            StoreChoice::Embedded => {
                let secrets = secrets::load(&config.data_dir, admin_secret)?;
                let embedded = EmbeddedStore::open(&config.data_dir.join("db"))?;
                embedded.upgrade().await?;
                (AnyStore::Embedded(embedded), secrets, Source::File(config.data_dir.join("api-keys")))
            }
            StoreChoice::Postgres(url) => {
                let postgres = PostgresStore::connect(url).await?;
                let secrets =
                    secrets::shared(&postgres, admin_secret, true).await?.expect("created when missing");
                (AnyStore::Postgres(postgres.clone()), secrets, Source::Database(postgres))
            }
        };
        let api_keys = KeyRing::open(keys).await.map_err(StartError::ApiKeys)?;
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
        // A push service gets at most half of a lane's requests, so that one slow service
        // leaves room for the others.
        let lane = |concurrency: usize| {
            let config = FanoutConfig {
                concurrency,
                per_origin: concurrency.div_ceil(2).max(1),
                ..FanoutConfig::default()
            };
            Engine::new(client.clone(), Some(signer.clone()), config)
        };
        let dispatch = DispatchConfig {
            pruning: config.pruning,
            lease: config.claim_lease,
            host_budget: config.host_budget,
            grace: config.shutdown_grace,
            bulk_concurrency: config.concurrency,
            targeted_concurrency: config.targeted_concurrency,
        };
        let dispatcher = Dispatcher::new(
            store.clone(),
            lane(config.concurrency),
            lane(config.targeted_concurrency),
            dispatch,
            wake.clone(),
        );
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
            dispatcher: Supervised::new(),
            config,
        });
        Ok(Self { shared, dispatcher, listener })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then drains: no new claims, requests under way get
    /// the grace period, recipients not sent stay queued for the next start (or another hub).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let Self { shared, dispatcher, listener } = self;
        let shared_grace = shared.config.shutdown_grace;
        let (stop, stopping) = watch::channel(false);
        let dispatching = shared.dispatcher.run(dispatcher, stopping);
        let chores = tokio::spawn(chores(shared.clone()));
        let app = router(shared.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
        let stop_dispatching = async move {
            shutdown.await;
            tracing::info!("stopping: sends under way get {:?} to finish", shared_grace);
            let _ = stop.send(true);
        };
        let served = axum::serve(listener, app).with_graceful_shutdown(stop_dispatching).await;
        let _ = dispatching.await;
        chores.abort();
        if let Err(e) = shared.api_keys.save_usage().await {
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
        if let Err(e) = shared.api_keys.save_usage().await {
            tracing::warn!(error = %e, "could not note when the API keys were last used");
        }
    }
}
