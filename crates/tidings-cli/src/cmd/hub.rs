//! `tidings hub`: subscriptions, topics and a REST API for an app's backend, and the keys
//! and API keys it runs with.

use super::serve::{DEFAULT_LOG, init_logging, shutdown_signal};
use crate::exit::Code;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tidings_hub::config::{StoreChoice, origin};
use tidings_hub::store::postgres::PostgresStore;
use tidings_hub::{Config, Hub, api_keys, secrets, unix_now, user_token};
use tidings_sender::PushHosts;
use tidings_wire::client_ip::{ProxyHeader, parse_net};

/// Run the hub, or manage its keys. Every option of the hub itself can also be set with the
/// environment variable shown, or in the TOML file given with --config (flags win over the
/// environment, the environment over the file).
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  tidings hub --public-url https://app.example.com --static-dir ./public\n  \
tidings hub --demo                      # the demo chat app on http://127.0.0.1:8090/\n  \
tidings hub api-key create --name backend\n  tidings hub keys\n\n\
The admin page is at /admin; its secret is in <data-dir>/admin-secret unless TIDINGS_HUB_ADMIN_SECRET is set.\n\
See docs/hub.md."
)]
pub struct HubArgs {
    #[command(subcommand)]
    command: Option<HubCommand>,
    #[command(flatten)]
    serve: HubServeArgs,
}

#[derive(Debug, Subcommand)]
enum HubCommand {
    /// Show the VAPID public key (the applicationServerKey), and the user-token secret when asked.
    Keys {
        #[command(flatten)]
        at: Location,
        /// Also print the secret the app's backend signs user tokens with.
        #[arg(long)]
        user_token_secret: bool,
    },
    /// Create API keys for the app's backend.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Make a user token, to try the browser API by hand (the app's backend signs its own).
    UserToken {
        /// The app's user id (the token's sub).
        #[arg(long)]
        user: String,
        /// Seconds the token stays valid (at most 86400).
        #[arg(long, default_value_t = 600)]
        lifetime: u64,
        #[command(flatten)]
        at: Location,
    },
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Create an API key; it is printed once and stored only hashed.
    Create {
        /// A name for it (shown in logs).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        at: Location,
    },
    /// List the API keys: id, name, creation and last use (the keys themselves are not stored).
    List {
        #[command(flatten)]
        at: Location,
    },
    /// Revoke an API key, by its id (from list) or its name; a running hub refuses it within a second.
    Revoke {
        /// The key's id or name.
        key: String,
        #[command(flatten)]
        at: Location,
    },
}

/// Which hub a subcommand is about: its data directory, or its PostgreSQL database.
#[derive(Debug, Args)]
struct Location {
    /// The hub's data directory (embedded store) [default: ./tidings-hub-data].
    #[arg(long, env = "TIDINGS_HUB_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The hub's PostgreSQL database instead: postgres://user:password@host/database.
    #[arg(long, env = "TIDINGS_HUB_STORE", value_name = "URL")]
    store: Option<String>,
}

/// A hub's data, opened for a subcommand.
enum Place {
    Dir(PathBuf),
    Postgres(PostgresStore, tokio::runtime::Runtime),
}

impl Location {
    fn open(self) -> Result<Place> {
        match store_choice(self.store.as_deref())? {
            StoreChoice::Embedded => Ok(Place::Dir(data_dir(self.data_dir))),
            StoreChoice::Postgres(url) => {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                let store = runtime.block_on(PostgresStore::connect(&url))?;
                Ok(Place::Postgres(store, runtime))
            }
        }
    }
}

/// `--store`: `embedded` (the default) or a PostgreSQL URL.
fn store_choice(given: Option<&str>) -> Result<StoreChoice> {
    match given {
        None | Some("embedded") => Ok(StoreChoice::Embedded),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(StoreChoice::Postgres(url.to_owned()))
        }
        Some(_) => {
            bail!("--store is `embedded` or a PostgreSQL URL (postgres://user:password@host/database)")
        }
    }
}

#[derive(Debug, Args)]
struct HubServeArgs {
    /// Address to listen on [default: 127.0.0.1:8090].
    #[arg(long, env = "TIDINGS_HUB_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// The origin browsers reach the hub at, e.g. https://app.example.com [default: http://<listen>].
    #[arg(long, env = "TIDINGS_HUB_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// Another origin whose pages may subscribe (repeatable; comma-separated in the environment).
    #[arg(long, env = "TIDINGS_HUB_ALLOWED_ORIGINS", value_name = "URL", value_delimiter = ',')]
    allowed_origin: Vec<String>,
    /// Where the database and the keys live, with the embedded store [default: ./tidings-hub-data].
    #[arg(long, env = "TIDINGS_HUB_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Where the hub keeps its data: `embedded` (a database in --data-dir, one hub process)
    /// or a PostgreSQL URL, postgres://user:password@host/database (several hub processes
    /// share it; the keys are kept in it too) [default: embedded].
    #[arg(long, env = "TIDINGS_HUB_STORE", value_name = "URL")]
    store: Option<String>,
    /// A TOML file with any of these options.
    #[arg(long, env = "TIDINGS_HUB_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Serve the app's own pages (and its service worker) from this directory at /.
    #[arg(long, env = "TIDINGS_HUB_STATIC_DIR", value_name = "DIR", conflicts_with = "demo")]
    static_dir: Option<PathBuf>,
    /// Serve the demo chat app at / (web/demo: notifications, offline use, the outbox).
    #[arg(long, env = "TIDINGS_HUB_DEMO")]
    demo: bool,
    /// The VAPID contact push services see: mailto:you@example.com or an https URL
    /// [default: the public URL if https, else mailto:hub@localhost].
    #[arg(long, env = "TIDINGS_HUB_VAPID_SUBJECT", value_name = "URI")]
    vapid_subject: Option<String>,
    /// Trust these PEM CA certificates for push services too (a private tidings serve).
    #[arg(long, env = "TIDINGS_HUB_CA_FILE", value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Requests in flight for sends to topics and everyone [default: 256].
    #[arg(long, env = "TIDINGS_HUB_CONCURRENCY", value_name = "N")]
    concurrency: Option<usize>,
    /// Requests in flight for sends to users and subscriptions, which never wait behind
    /// the others [default: 64].
    #[arg(long, env = "TIDINGS_HUB_TARGETED_CONCURRENCY", value_name = "N")]
    targeted_concurrency: Option<usize>,
    /// How long to wait for a push service's answer to one request [default: 30s].
    #[arg(long, env = "TIDINGS_HUB_PUSH_TIMEOUT", value_name = "DURATION")]
    push_timeout: Option<humantime::Duration>,
    /// How long one send may spend on one push service; its recipients there fail after it
    /// [default: 15m].
    #[arg(long, env = "TIDINGS_HUB_HOST_BUDGET", value_name = "DURATION")]
    host_budget: Option<humantime::Duration>,
    /// How long a hub's claim on recipients holds without renewal: how soon the recipients of
    /// a hub process that died are counted interrupted [default: 60s].
    #[arg(long, env = "TIDINGS_HUB_CLAIM_LEASE", value_name = "DURATION")]
    claim_lease: Option<humantime::Duration>,
    /// On SIGTERM, how long requests under way get to finish [default: 30s].
    #[arg(long, env = "TIDINGS_HUB_SHUTDOWN_GRACE", value_name = "DURATION")]
    shutdown_grace: Option<humantime::Duration>,
    /// Browser-facing requests per second allowed from one address [default: 20].
    #[arg(long, env = "TIDINGS_HUB_BROWSER_RATE", value_name = "N")]
    browser_rate: Option<u32>,
    /// New subscriptions one browser session may register per hour [default: 10].
    #[arg(long, env = "TIDINGS_HUB_NEW_SUBSCRIPTIONS_PER_SESSION", value_name = "N")]
    new_subscriptions_per_session: Option<u32>,
    /// New subscriptions one client address (an IPv6 /64) may register per hour [default: 200].
    #[arg(long, env = "TIDINGS_HUB_NEW_SUBSCRIPTIONS_PER_ADDRESS", value_name = "N")]
    new_subscriptions_per_address: Option<u32>,
    /// A reverse proxy (address or CIDR block) whose --proxy-header names the client;
    /// repeatable, comma-separated in the environment. Without it that header is ignored.
    #[arg(long, env = "TIDINGS_HUB_TRUSTED_PROXIES", value_name = "CIDR", value_delimiter = ',')]
    trusted_proxy: Vec<String>,
    /// The header the trusted proxies write the client into; only that one is read (a proxy
    /// passes the other along as the client sent it) [default: x-forwarded-for].
    #[arg(long, env = "TIDINGS_HUB_PROXY_HEADER", value_name = "x-forwarded-for|forwarded")]
    proxy_header: Option<String>,
    /// Send only to these push-service hosts: names or *.domain patterns, repeatable,
    /// comma-separated in the environment; `known` stands for the browsers' public push
    /// services (FCM, Mozilla, Apple, Microsoft) [default: any public host].
    #[arg(long, env = "TIDINGS_HUB_PUSH_HOSTS", value_name = "PATTERN", value_delimiter = ',')]
    push_hosts: Vec<String>,
    /// Delete a subscription after this many failed sends in a row [default: 10] ...
    #[arg(long, env = "TIDINGS_HUB_DELETE_AFTER_FAILURES", value_name = "N")]
    delete_after_failures: Option<u32>,
    /// ... the first of them at least this long ago [default: 24h].
    #[arg(long, env = "TIDINGS_HUB_DELETE_AFTER_FAILING_FOR", value_name = "DURATION")]
    delete_after_failing_for: Option<humantime::Duration>,
    /// A file holding the admin secret [default: <data-dir>/admin-secret, created on first
    /// start; TIDINGS_HUB_ADMIN_SECRET overrides both].
    #[arg(long, env = "TIDINGS_HUB_ADMIN_SECRET_FILE", value_name = "FILE")]
    admin_secret_file: Option<PathBuf>,
    /// Log filter [default: info].
    #[arg(long, env = "TIDINGS_HUB_LOG", value_name = "FILTER")]
    log: Option<String>,
}

/// The TOML file: the same options, in snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    public_url: Option<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    data_dir: Option<PathBuf>,
    store: Option<String>,
    static_dir: Option<PathBuf>,
    #[serde(default)]
    demo: bool,
    vapid_subject: Option<String>,
    ca_file: Option<PathBuf>,
    concurrency: Option<usize>,
    targeted_concurrency: Option<usize>,
    push_timeout: Option<String>,
    host_budget: Option<String>,
    claim_lease: Option<String>,
    shutdown_grace: Option<String>,
    browser_rate: Option<u32>,
    new_subscriptions_per_session: Option<u32>,
    new_subscriptions_per_address: Option<u32>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    proxy_header: Option<String>,
    #[serde(default)]
    push_hosts: Vec<String>,
    delete_after_failures: Option<u32>,
    delete_after_failing_for: Option<String>,
    admin_secret_file: Option<PathBuf>,
    log: Option<String>,
}

const DEFAULT_DATA_DIR: &str = "tidings-hub-data";

fn data_dir(dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}

/// The keys of an existing hub: reading them must not create new ones (a mistyped
/// --data-dir or --store would otherwise print keys no hub uses).
fn existing_keys(place: &Place) -> Result<secrets::Secrets> {
    match place {
        Place::Dir(dir) => {
            if !secrets::vapid_path(dir).exists() {
                bail!("{} holds no hub keys: start tidings hub with this --data-dir first", dir.display());
            }
            secrets::load(dir, None)
                .with_context(|| format!("cannot load the hub's keys in {}", dir.display()))
        }
        Place::Postgres(store, runtime) => runtime
            .block_on(secrets::shared(store, None, false))?
            .context("the database holds no hub keys: start tidings hub with this --store first"),
    }
}

pub fn run(args: HubArgs) -> Result<Code> {
    let time = |t: u64| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(t)).to_string()
    };
    match args.command {
        None => serve(args.serve),
        Some(HubCommand::Keys { at, user_token_secret }) => {
            let place = at.open()?;
            let keys = existing_keys(&place)?;
            println!("VAPID public key (applicationServerKey): {}", keys.vapid.public_key_base64());
            if let Place::Dir(dir) = &place {
                println!("VAPID key file: {}", secrets::vapid_path(dir).display());
            }
            if user_token_secret {
                println!("User-token secret (HS256): {}", tidings_crypto::b64::encode(&keys.user_token));
            } else {
                println!("User-token secret: print it with --user-token-secret");
            }
            Ok(Code::Ok)
        }
        Some(HubCommand::ApiKey(ApiKeyCommand::Create { name, at })) => {
            let name = name.trim();
            if name.is_empty() {
                bail!("--name must not be empty");
            }
            let key = match at.open()? {
                Place::Dir(dir) => {
                    let path = dir.join("api-keys");
                    api_keys::create(&path, name, unix_now())
                        .with_context(|| format!("cannot write {}", path.display()))?
                }
                Place::Postgres(store, runtime) => {
                    let key = api_keys::new_key();
                    runtime.block_on(store.add_api_key(&api_keys::hash(&key), name, unix_now()))?;
                    key
                }
            };
            eprintln!("API key {name:?} created; it is shown only now, keep it secret:");
            println!("{key}");
            Ok(Code::Ok)
        }
        Some(HubCommand::ApiKey(ApiKeyCommand::List { at })) => {
            let keys: Vec<(api_keys::Entry, Option<u64>)> = match at.open()? {
                Place::Dir(dir) => {
                    let path = dir.join("api-keys");
                    let entries =
                        api_keys::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
                    let used = api_keys::read_usage(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    entries
                        .into_iter()
                        .map(|e| (used.get(&e.sha256).copied(), e))
                        .map(|(u, e)| (e, u))
                        .collect()
                }
                Place::Postgres(store, runtime) => runtime
                    .block_on(store.api_keys())?
                    .into_iter()
                    .map(|(sha256, name, created_at, used)| {
                        (api_keys::Entry { name, sha256, created_at }, used)
                    })
                    .collect(),
            };
            println!("ID\tNAME\tCREATED\tLAST USED");
            for (entry, used) in keys {
                let last = used.map_or("never".to_owned(), time);
                println!("{}\t{}\t{}\t{last}", entry.id(), entry.name, time(entry.created_at));
            }
            Ok(Code::Ok)
        }
        Some(HubCommand::ApiKey(ApiKeyCommand::Revoke { key, at })) => {
            let revoked = match at.open()? {
                Place::Dir(dir) => {
                    let path = dir.join("api-keys");
                    api_keys::revoke(&path, &key)
                        .with_context(|| format!("cannot revoke in {}", path.display()))?
                }
                Place::Postgres(store, runtime) => runtime.block_on(async {
                    let entries: Vec<api_keys::Entry> = store
                        .api_keys()
                        .await?
                        .into_iter()
                        .map(|(sha256, name, created_at, _)| api_keys::Entry { name, sha256, created_at })
                        .collect();
                    let entry = api_keys::find_one(&entries, &key).map_err(anyhow::Error::msg)?.clone();
                    store.remove_api_key(&entry.sha256).await?;
                    anyhow::Ok(entry)
                })?,
            };
            eprintln!("API key {} ({:?}) revoked", revoked.id(), revoked.name);
            Ok(Code::Ok)
        }
        Some(HubCommand::UserToken { user, lifetime, at }) => {
            let keys = existing_keys(&at.open()?)?;
            if lifetime == 0 || lifetime > user_token::MAX_LIFETIME {
                bail!("--lifetime must be 1 to {} seconds", user_token::MAX_LIFETIME);
            }
            let jti = tidings_hub::csrf::Sessions::new_session();
            let claims = user_token::Claims { sub: user, exp: unix_now() + lifetime, jti };
            println!("{}", user_token::sign(&keys.user_token, &claims));
            Ok(Code::Ok)
        }
    }
}

/// A duration from a flag (or its environment variable), else from the file.
fn duration(flag: Option<humantime::Duration>, file: Option<String>, name: &str) -> Result<Option<Duration>> {
    match (flag, file) {
        (Some(given), _) => Ok(Some(given.into())),
        (None, Some(text)) => Ok(Some(
            humantime::parse_duration(&text)
                .with_context(|| format!("{name}: {text:?} is not a duration"))?,
        )),
        (None, None) => Ok(None),
    }
}

fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn serve(args: HubServeArgs) -> Result<Code> {
    let file = match &args.config {
        Some(path) => toml::from_str::<FileConfig>(&read_file(path)?)
            .with_context(|| format!("{} is not a valid configuration", path.display()))?,
        None => FileConfig::default(),
    };
    init_logging(args.log.as_deref().or(file.log.as_deref()).unwrap_or(DEFAULT_LOG))?;
    let listen = args.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8090)));
    let mut config = Config::new(listen);
    if let Some(url) =
        super::public_url(args.public_url.or(file.public_url), listen, "browsers reach the hub at")?
    {
        config.public_url = origin(&url).map_err(|e| anyhow::anyhow!("--public-url: {e}"))?;
    }
    config.vapid_subject = match args.vapid_subject.or(file.vapid_subject) {
        Some(subject) if subject.starts_with("mailto:") || subject.starts_with("https://") => subject,
        Some(_) => bail!("--vapid-subject must be a mailto: or https: URI (push services refuse others)"),
        // Push services want a way to reach the sender: the public URL when it is https.
        None if config.public_url.starts_with("https://") => config.public_url.clone(),
        None => "mailto:hub@localhost".into(),
    };
    let allowed = if args.allowed_origin.is_empty() { file.allowed_origins } else { args.allowed_origin };
    config.allowed_origins = allowed
        .iter()
        .map(|o| origin(o).map_err(|e| anyhow::anyhow!("--allowed-origin: {e}")))
        .collect::<Result<_>>()?;
    let proxies = if args.trusted_proxy.is_empty() { file.trusted_proxies } else { args.trusted_proxy };
    config.trusted_proxies = proxies
        .iter()
        .map(|p| parse_net(p).map_err(|e| anyhow::anyhow!("--trusted-proxy: {e}")))
        .collect::<Result<_>>()?;
    if let Some(header) = args.proxy_header.or(file.proxy_header) {
        config.proxy_header =
            ProxyHeader::parse(&header).map_err(|e| anyhow::anyhow!("--proxy-header: {e}"))?;
    }
    let push_hosts = if args.push_hosts.is_empty() { file.push_hosts } else { args.push_hosts };
    if !push_hosts.is_empty() {
        config.push_hosts = Some(PushHosts::parse(push_hosts.iter().map(String::as_str))?);
    }
    if let Some(n) = args.new_subscriptions_per_session.or(file.new_subscriptions_per_session) {
        config.new_per_session = n.max(1);
    }
    if let Some(n) = args.new_subscriptions_per_address.or(file.new_subscriptions_per_address) {
        config.new_per_address = n.max(1);
    }
    if let Some(n) = args.delete_after_failures.or(file.delete_after_failures) {
        config.pruning.failures = n.max(1);
    }
    if let Some(d) =
        duration(args.delete_after_failing_for, file.delete_after_failing_for, "delete_after_failing_for")?
    {
        config.pruning.failing_for = d.as_secs();
    }
    if let Some(n) = args.targeted_concurrency.or(file.targeted_concurrency) {
        config.targeted_concurrency = n.clamp(1, 10_000);
    }
    if let Some(d) = duration(args.push_timeout, file.push_timeout, "push_timeout")? {
        config.push_timeout = d.max(Duration::from_millis(100));
    }
    if let Some(d) = duration(args.host_budget, file.host_budget, "host_budget")? {
        config.host_budget = d.max(Duration::from_secs(1));
    }
    if let Some(d) = duration(args.claim_lease, file.claim_lease, "claim_lease")? {
        config.claim_lease = d.max(Duration::from_secs(3));
    }
    if let Some(d) = duration(args.shutdown_grace, file.shutdown_grace, "shutdown_grace")? {
        config.shutdown_grace = d;
    }
    config.data_dir = data_dir(args.data_dir.or(file.data_dir));
    config.store = store_choice(args.store.or(file.store).as_deref())?;
    config.static_dir = args.static_dir.or(file.static_dir);
    config.demo = args.demo || file.demo;
    if config.demo && config.static_dir.is_some() {
        bail!("--demo serves the demo app at /: leave out --static-dir");
    }
    if let Some(dir) = &config.static_dir
        && !dir.is_dir()
    {
        bail!("--static-dir {} is not a directory", dir.display());
    }
    config.extra_roots = super::ca_certificates(args.ca_file.or(file.ca_file).as_deref())?;
    if let Some(n) = args.concurrency.or(file.concurrency) {
        config.concurrency = n.clamp(1, 10_000);
    }
    if let Some(n) = args.browser_rate.or(file.browser_rate) {
        config.browser_rate = n.max(1);
    }
    let admin = match std::env::var("TIDINGS_HUB_ADMIN_SECRET") {
        Ok(secret) => Some(secret),
        Err(_) => match args.admin_secret_file.or(file.admin_secret_file) {
            Some(path) => Some(read_file(&path)?.trim().to_owned()),
            None => None,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let data_dir = config.data_dir.clone();
        let public_url = config.public_url.clone();
        let demo = config.demo;
        let hub = Hub::bind(config, admin).await.context("cannot start the hub")?;
        tracing::info!(
            listen = %hub.local_addr(),
            public_url,
            data_dir = %data_dir.display(),
            "hub ready: admin page at {public_url}/admin{}",
            if demo { format!(", demo app at {public_url}/") } else { String::new() }
        );
        hub.run(shutdown_signal()).await.context("serving failed")?;
        Ok(Code::Ok)
    })
}
