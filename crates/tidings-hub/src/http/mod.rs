//! The hub's routes:
//!
//! * [`browser`]: `/api/...` for the app's pages (CSRF-protected, rate limited).
//! * [`rest`]: `/api/v1/...` for the app's backend (API keys), described by
//!   `/api/openapi.json`.
//! * [`admin`]: `/admin`, a server-rendered page for the operator.
//! * [`kit`]: the PWA kit at `/tidings/`, and the demo app at `/` with `--demo`
//!   ([`demo`] is its chat API).
//!
//! Every error is JSON, `{"error": "<code>", "message": "<what to do>"}` (HTML on the admin
//! page), and no error changes anything.

pub mod admin;
pub mod browser;
pub mod demo;
pub mod kit;
pub mod rest;

use crate::api_keys::KeyRing;
use crate::config::Config;
use crate::csrf::Sessions;
use crate::store::HubStore;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota};
use http::StatusCode;
use serde_json::json;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use tokio::sync::Notify;

/// The largest request body any route reads.
pub const MAX_BODY: usize = 16 * 1024;

/// What every route shares.
pub struct Shared {
    /// The settings.
    pub config: Config,
    /// The database.
    pub store: HubStore,
    /// Browser sessions, CSRF tokens and admin logins.
    pub sessions: Sessions,
    /// The VAPID public key (the `applicationServerKey`), base64url.
    pub vapid_public_key: String,
    /// Verifies user tokens.
    pub user_token_secret: Vec<u8>,
    /// The admin page's password.
    pub admin_secret: String,
    /// The app's API keys.
    pub api_keys: KeyRing,
    /// Wakes the dispatcher when a send is queued.
    pub wake: Arc<Notify>,
    /// Browser-facing requests per client address.
    pub limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Admin login attempts per client address: few, whatever `--browser-rate` says, so
    /// that the admin secret cannot be guessed at speed.
    pub login_limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Notifications the kit reported closed without a click, since start.
    pub closed: std::sync::atomic::AtomicU64,
    /// The demo's chat room (with `--demo`).
    pub demo: std::sync::Mutex<demo::Room>,
}

impl Shared {
    /// A limiter allowing `per_second` requests per address, in bursts of twice as many.
    pub fn limiter(per_second: u32) -> DefaultKeyedRateLimiter<IpAddr> {
        let rate = NonZeroU32::new(per_second.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(per_second.max(1).saturating_mul(2)).expect("at least 2");
        governor::RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
    }

    /// A limiter allowing five admin logins a minute per address.
    pub fn login_limiter() -> DefaultKeyedRateLimiter<IpAddr> {
        let five = NonZeroU32::new(5).expect("five");
        governor::RateLimiter::keyed(Quota::per_minute(five).allow_burst(five))
    }

    /// Counts a request from `ip` against its rate; refuses it when over.
    pub fn rate_limit(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.limiter.check_key(&ip).map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; try again in a second",
            )
        })
    }
}

/// An error answer: a status, a stable code and a sentence for people.
#[derive(Debug)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// A stable, machine-readable code.
    pub code: &'static str,
    /// What went wrong and what to do.
    pub message: String,
}

impl ApiError {
    /// An error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    /// 400 with `code`.
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503 for a storage failure (logged, not shown).
    pub fn storage(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "storage failed");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "storage is failing; try again later")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({ "error": self.code, "message": self.message }))).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
        }
        response
    }
}

/// A JSON body whose every rejection (not JSON, wrong shape, too large, wrong type) is an
/// [`ApiError`].
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not_json",
                "send the body as JSON with Content-Type: application/json",
            )),
            Err(JsonRejection::BytesRejection(_)) => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body must be at most {MAX_BODY} bytes"),
            )),
            Err(e) => Err(ApiError::bad("bad_json", e.body_text())),
        }
    }
}

/// Every route, with the app's static files (if configured) as the fallback.
pub fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new()
        .merge(browser::routes())
        .merge(rest::routes())
        .merge(admin::routes())
        .merge(kit::routes(shared.config.demo));
    if shared.config.demo {
        router = router.merge(demo::routes());
    }
    if !shared.config.allowed_origins.is_empty() {
        router = router.layer(cors(&shared.config.allowed_origins));
    }
    let mut router = router.layer(DefaultBodyLimit::max(MAX_BODY)).with_state(shared.clone());
    if let Some(dir) = &shared.config.static_dir {
        router = router.fallback_service(tower_http::services::ServeDir::new(dir));
    }
    router
}

/// CORS for the app's other origins (`--allowed-origin`): their pages may call the browser
/// API with credentials (the session cookie) and the CSRF header. Only same-site origins
/// get the cookie, which is `SameSite=Strict`.
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<http::HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([http::Method::GET, http::Method::POST, http::Method::DELETE])
        .allow_headers([http::header::CONTENT_TYPE, http::HeaderName::from_static(crate::csrf::TOKEN_HEADER)])
}

/// The client's address, from the connection.
pub type Peer = axum::extract::ConnectInfo<std::net::SocketAddr>;
