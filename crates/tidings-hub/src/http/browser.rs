//! The routes the app's pages (and the PWA kit) call.
//!
//! | route | does |
//! |---|---|
//! | `GET /api/vapid-public-key` | the `applicationServerKey` to subscribe with |
//! | `GET /api/session` | sets the session cookie, returns the CSRF token |
//! | `POST /api/subscriptions` | stores a subscription (with topics, and a user token) |
//! | `DELETE /api/subscriptions` | forgets a subscription, by endpoint and `auth` |
//! | `POST /api/subscriptions/replace` | swaps an old subscription for a new one, with the old one's `auth` |
//! | `POST /api/notification-events` | the kit's report of a notification closed unread |
//! | `GET /health` | whether the store answers and the dispatcher runs (503 with the reason if not) |
//!
//! The state-changing ones pass [`crate::csrf`]'s checks and a per-address rate limit
//! before anything else, then the input checks of [`crate::subscribe`], then the ownership
//! rule of [`crate::ownership`]: a stored subscription changes only with its `auth`.

use super::{ApiError, Client, JsonBody, Shared};
use crate::csrf::{self, Refusal, SESSION_COOKIE, Sessions, TOKEN_HEADER};
use crate::dispatch::DispatcherState;
use crate::ownership::{Change, Proof, Refusal as NotHeld, Registration, UserChange};
use crate::store::{Removal, Saved, Store as _};
use crate::subscribe::{SubscribeRequest, check_subscription, check_topics};
use crate::{unix_now, user_token};
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::request::Parts;
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/vapid-public-key", get(vapid_public_key))
        .route("/api/session", get(session))
        .route("/api/subscriptions", post(subscribe).delete(unsubscribe))
        .route("/api/subscriptions/replace", post(replace))
        .route("/api/notification-events", post(notification_event))
        .route("/health", get(health))
}

/// Whether the hub can do its work: the store answers and the dispatcher runs. 503 with the
/// reason otherwise, for a load balancer or an operator.
async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let store = shared.store.ready().await.err().map(|e| e.to_string());
    let dispatcher = match shared.dispatcher.state() {
        DispatcherState::Running => None,
        DispatcherState::Restarting { reason } => {
            Some(format!("the dispatcher failed ({reason}) and is restarting"))
        }
    };
    let body = json!({
        "status": if store.is_none() && dispatcher.is_none() { "ok" } else { "failing" },
        "store": store.as_deref().unwrap_or("ok"),
        "dispatcher": dispatcher.as_deref().unwrap_or("running"),
    });
    let status = if body["status"] == "ok" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, [(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

fn header(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn refused(refusal: Refusal) -> ApiError {
    ApiError::forbidden("csrf", refusal.to_string())
}

/// A request from one of the app's pages (or its service worker, which has no session):
/// the rate limit and the same-origin check, before the body is read. Holds the client.
pub struct SameOrigin(pub IpAddr);

impl FromRequestParts<Arc<Shared>> for SameOrigin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, ApiError> {
        let Client(client) = Client::from_request_parts(parts, shared).await?;
        shared.limits.browser(client)?;
        let headers = &parts.headers;
        csrf::check_origin(
            header(headers, header::ORIGIN),
            header(headers, "sec-fetch-site"),
            &shared.config.public_url,
            |origin| shared.config.origin_allowed(origin),
        )
        .map_err(refused)?;
        Ok(Self(client))
    }
}

/// The checks every state-changing browser request passes before its body is even read:
/// [`SameOrigin`], then the session's CSRF token. Holds the session and the client.
pub struct Guarded {
    /// The browser session (its cookie).
    pub session: String,
    /// The client's address.
    pub client: IpAddr,
}

impl FromRequestParts<Arc<Shared>> for Guarded {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, ApiError> {
        let SameOrigin(client) = SameOrigin::from_request_parts(parts, shared).await?;
        let session = csrf::cookie(header(&parts.headers, header::COOKIE), SESSION_COOKIE);
        shared.sessions.check_token(session, header(&parts.headers, TOKEN_HEADER)).map_err(refused)?;
        Ok(Self { session: session.unwrap_or_default().to_owned(), client })
    }
}

async fn vapid_public_key(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(json!({ "publicKey": shared.vapid_public_key })).into_response()
}

async fn session(
    State(shared): State<Arc<Shared>>,
    Client(client): Client,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    shared.limits.browser(client)?;
    let existing = csrf::cookie(header(&headers, header::COOKIE), SESSION_COOKIE)
        .filter(|s| s.len() == 24 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let session = existing.map_or_else(Sessions::new_session, str::to_owned);
    let token = shared.sessions.token(&session);
    Ok((
        [
            (header::SET_COOKIE, shared.sessions.session_cookie(&session)),
            (header::CACHE_CONTROL, "no-store".into()),
        ],
        axum::Json(json!({ "csrfToken": token })),
    )
        .into_response())
}

/// Checks a page's request and stores it, if the caller holds what it changes.
async fn register(
    shared: &Shared,
    guard: &Guarded,
    request: SubscribeRequest,
    replacing: Option<Proof>,
) -> Result<Response, ApiError> {
    check_subscription(&request.subscription, &shared.config.connect_policy())
        .map_err(|e| ApiError::bad("bad_subscription", e.0))?;
    let topics = request
        .topics
        .as_deref()
        .map(check_topics)
        .transpose()
        .map_err(|e| ApiError::bad("bad_topics", e.0))?;
    let user = match request.user_token {
        None => UserChange::Keep,
        Some(None) => UserChange::Clear,
        Some(Some(token)) => {
            let claims = user_token::verify(&shared.user_token_secret, &token, unix_now())
                .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "bad_user_token", e.to_string()))?;
            UserChange::Set { user: claims.sub, jti: claims.jti, expires: claims.exp }
        }
    };
    let writes_token = matches!(user, UserChange::Set { .. });
    let registration = Arc::new(Registration {
        endpoint: request.subscription.endpoint,
        p256dh: request.subscription.keys.p256dh,
        auth: request.subscription.keys.auth,
        topics,
        user,
        replacing,
        now: unix_now(),
    });
    // A read first: a refusal, or a re-post that changes nothing (pages re-post on every
    // load), is answered from it without a write; only new subscriptions count against the
    // caps.
    let saved = match shared.store.preview(registration.clone()).await.map_err(ApiError::storage)? {
        unchanged @ Saved::Stored { change: Change::Unchanged, .. } if !writes_token => unchanged,
        Saved::Stored { change, .. } => {
            if change == Change::Created {
                shared.limits.new_subscription(&guard.session, guard.client)?;
            }
            shared.store.register(registration).await.map_err(ApiError::storage)?
        }
        refused => refused,
    };
    match saved {
        Saved::Stored { id, record, change } => {
            let status = if change == Change::Created { StatusCode::CREATED } else { StatusCode::OK };
            let body = json!({ "id": id.to_string(), "user": record.user, "topics": record.topics });
            Ok((status, axum::Json(body)).into_response())
        }
        Saved::Refused(refusal @ NotHeld::Conflict) => {
            Err(ApiError::new(StatusCode::CONFLICT, "subscription_exists", refusal.to_string()))
        }
        Saved::Refused(refusal @ NotHeld::NotOwner) => {
            Err(ApiError::forbidden("not_owner", refusal.to_string()))
        }
        Saved::Replayed => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_user_token",
            "this user token was used already; ask the app for a new one",
        )),
    }
}

async fn subscribe(
    State(shared): State<Arc<Shared>>,
    guard: Guarded,
    JsonBody(request): JsonBody<SubscribeRequest>,
) -> Result<Response, ApiError> {
    register(&shared, &guard, request, None).await
}

/// The body of `DELETE /api/subscriptions`: what to delete, and the proof of holding it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Unsubscribe {
    endpoint: String,
    auth: String,
}

async fn unsubscribe(
    State(shared): State<Arc<Shared>>,
    _: Guarded,
    JsonBody(request): JsonBody<Unsubscribe>,
) -> Result<Response, ApiError> {
    let proof = Proof { endpoint: request.endpoint, auth: request.auth };
    match shared.store.remove_owned(proof).await.map_err(ApiError::storage)? {
        Removal::Removed => Ok(StatusCode::NO_CONTENT.into_response()),
        Removal::Unknown => Err(ApiError::not_found("no subscription has this endpoint")),
        Removal::NotOwner => Err(ApiError::forbidden("not_owner", NotHeld::NotOwner.to_string())),
    }
}

async fn replace(
    State(shared): State<Arc<Shared>>,
    guard: Guarded,
    body: JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    // The body is a subscribe request plus the old subscription's endpoint and auth; serde's
    // `flatten` would lose `deny_unknown_fields`, so those are taken out by hand.
    let mut value = body.0;
    let mut take = |name: &str| {
        value.as_object_mut().and_then(|o| o.remove(name)).and_then(|v| v.as_str().map(str::to_owned))
    };
    let (old_endpoint, old_auth) = (take("old_endpoint"), take("old_auth"));
    let (Some(endpoint), Some(auth)) = (old_endpoint, old_auth) else {
        return Err(ApiError::bad(
            "bad_json",
            "old_endpoint and old_auth (the old subscription's keys.auth) are required strings",
        ));
    };
    let new: SubscribeRequest =
        serde_json::from_value(value).map_err(|e| ApiError::bad("bad_json", e.to_string()))?;
    register(&shared, &guard, new, Some(Proof { endpoint, auth })).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotificationEvent {
    r#type: String,
    #[serde(default)]
    tag: Option<String>,
}

/// Counts notifications closed without a click (the kit's `reportCloses`). Only the origin
/// check applies (a service worker has no page session); the count is all it changes.
async fn notification_event(
    State(shared): State<Arc<Shared>>,
    _: SameOrigin,
    JsonBody(event): JsonBody<NotificationEvent>,
) -> Result<Response, ApiError> {
    if event.r#type != "close" || event.tag.as_ref().is_some_and(|t| t.len() > 256) {
        return Err(ApiError::bad("bad_event", "the only event is {\"type\": \"close\", \"tag\": ...}"));
    }
    shared.closed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(StatusCode::NO_CONTENT.into_response())
}
