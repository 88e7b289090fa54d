//! The hub's routes:
//!
//! * [`browser`]: `/api/...` for the app's pages (CSRF-protected, rate limited).
//! * [`rest`]: `/api/v1/...` for the app's backend (API keys), described by
//!   `/api/openapi.json`.
//! * [`admin`]: `/admin`, a server-rendered page for the operator.
//! * [`kit`]: the PWA kit at `/tidings/`, and the demo app at `/` with `--demo`
//!   ([`demo`] is its chat API).
//! * [`limits`]: the rate limits, keyed per client address, session or admin device.
//! * [`wire`]: the REST API's JSON shapes.
//!
//! Every error is JSON, `{"error": "<code>", "message": "<what to do>"}` (HTML on the admin
//! page), unknown routes and wrong methods under `/api/` included, and no error changes
//! anything. Every answer of these routes carries `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy: no-referrer`; the hub's own HTML pages also a strict
//! `Content-Security-Policy` (no inline script, no framing). The app's own pages
//! (`--static-dir`) are served as they are.

pub mod admin;
pub mod browser;
pub mod demo;
pub mod kit;
pub mod limits;
pub mod rest;
pub mod wire;

use crate::api_keys::KeyRing;
use crate::config::Config;
use crate::csrf::Sessions;
use crate::store::AnyStore;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::Notify;

/// The largest request body any route reads.
pub const MAX_BODY: usize = 16 * 1024;

/// What every route shares.
pub struct Shared {
    /// The settings.
    pub config: Config,
    /// The database.
    pub store: AnyStore,
    /// Browser sessions, CSRF tokens and admin logins.
    pub sessions: Sessions,
    /// The VAPID public key (the `applicationServerKey`), base64url.
    pub vapid_public_key: String,
    /// Verifies user tokens.
    pub user_token_secret: Vec<u8>,
    /// The admin page's password.
    pub admin_secret: String,
    /// A keyed hash of the admin secret, kept with each admin login: a new secret ends them.
    pub admin_fingerprint: String,
    /// The app's API keys.
    pub api_keys: KeyRing,
    /// Wakes the dispatcher when a send is queued.
    pub wake: Arc<Notify>,
    /// The rate limits.
    pub limits: limits::Limits,
    /// The dispatcher's state, for `/health`.
    pub dispatcher: Arc<crate::dispatch::Supervised>,
    /// Notifications the kit reported closed without a click, since start.
    pub closed: std::sync::atomic::AtomicU64,
    /// The demo's chat room (with `--demo`). Held across the queueing of a message, so that
    /// concurrent retries of one request queue one send.
    pub demo: tokio::sync::Mutex<demo::Room>,
}

/// The client's address: the peer's, or behind a `--trusted-proxy` the one it names.
pub struct Client(pub IpAddr);

impl FromRequestParts<Arc<Shared>> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no peer address"))?;
        let header = shared.config.proxy_header;
        let values = parts.headers.get_all(header.name()).into_iter().filter_map(|v| v.to_str().ok());
        Ok(Self(tidings_wire::client_ip::client(peer.0.ip(), header, values, &shared.config.trusted_proxies)))
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
    /// With a 429 or 503: seconds to wait before trying again (`Retry-After`).
    pub retry_after: u64,
}

impl ApiError {
    /// An error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: 1 }
    }

    /// 429 with `code`, to try again after `wait`.
    pub fn too_many(code: &'static str, message: impl Into<String>, wait: std::time::Duration) -> Self {
        let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self { retry_after: retry_after.max(1), ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, message) }
    }

    /// 400 with `code`.
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 403 with `code`.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 503 for a storage failure (logged, not shown), with `Retry-After`.
    pub fn storage(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "storage failed");
        Self {
            retry_after: 5,
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "storage is failing; try again later")
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({ "error": self.code, "message": self.message }))).into_response();
        if matches!(self.status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
            response.headers_mut().insert(http::header::RETRY_AFTER, self.retry_after.into());
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
        .merge(kit::routes(shared.config.demo))
        .route("/api/{*rest}", axum::routing::any(unknown_api_route));
    if shared.config.demo {
        router = router.merge(demo::routes());
    }
    router = router.method_not_allowed_fallback(wrong_method);
    if !shared.config.allowed_origins.is_empty() {
        router = router.layer(cors(&shared.config.allowed_origins));
    }
    let mut router = router
        .layer(axum::middleware::map_response(hardened))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared.clone());
    if let Some(dir) = &shared.config.static_dir {
        router = router.fallback_service(tower_http::services::ServeDir::new(dir));
    }
    router
}

async fn unknown_api_route() -> ApiError {
    ApiError::not_found("no such route; the API is described at /api/openapi.json")
}

/// A known route with another method (axum adds the `Allow` header).
async fn wrong_method(method: http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed here"),
    )
}

/// What every answer of the hub's own routes carries.
async fn hardened(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// The `Content-Security-Policy` of the admin page: its own style sheet and forms, nothing
/// else, never in a frame.
pub const ADMIN_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                             frame-ancestors 'none'; base-uri 'none'";

/// The `Content-Security-Policy` of the demo app: scripts, styles and connections of its
/// own origin only (no inline script), never in a frame.
pub const DEMO_CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
                            frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

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
        .allow_headers([
            http::header::CONTENT_TYPE,
            http::HeaderName::from_static(crate::csrf::TOKEN_HEADER),
            http::HeaderName::from_static("idempotency-key"),
        ])
}
