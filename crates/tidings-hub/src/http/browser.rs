//! The routes the app's pages (and the PWA kit) call.
//!
//! | route | does |
//! |---|---|
//! | `GET /api/vapid-public-key` | the `applicationServerKey` to subscribe with |
//! | `GET /api/session` | sets the session cookie, returns the CSRF token |
//! | `POST /api/subscriptions` | stores a subscription (with topics, and a user token) |
//! | `DELETE /api/subscriptions` | forgets a subscription, by endpoint |
//! | `POST /api/subscriptions/replace` | swaps an old endpoint for a new one (re-sync) |
//! | `POST /api/notification-events` | the kit's report of a notification closed unread |
//!
//! The state-changing ones pass [`crate::csrf`]'s checks and a per-address rate limit
//! before anything else, then the input checks of [`crate::subscribe`].

use super::{ApiError, JsonBody, Peer, Shared};
use crate::csrf::{self, Refusal, SESSION_COOKIE, Sessions, TOKEN_HEADER};
use crate::store::{Saved, Subscription, SubscriptionId};
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
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/vapid-public-key", get(vapid_public_key))
        .route("/api/session", get(session))
        .route("/api/subscriptions", post(subscribe).delete(unsubscribe))
        .route("/api/subscriptions/replace", post(replace))
        .route("/api/notification-events", post(notification_event))
}

fn header(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn refused(refusal: Refusal) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "csrf", refusal.to_string())
}

/// A request from one of the app's pages (or its service worker, which has no session):
/// the rate limit and the same-origin check, before the body is read.
pub struct SameOrigin;

impl FromRequestParts<Arc<Shared>> for SameOrigin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, ApiError> {
        let peer = Peer::from_request_parts(parts, shared)
            .await
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no peer address"))?;
        shared.rate_limit(peer.0.ip())?;
        let headers = &parts.headers;
        csrf::check_origin(
            header(headers, header::ORIGIN),
            header(headers, "sec-fetch-site"),
            &shared.config.public_url,
            |origin| shared.config.origin_allowed(origin),
        )
        .map_err(refused)?;
        Ok(Self)
    }
}

/// The checks every state-changing browser request passes before its body is even read:
/// [`SameOrigin`], then the session's CSRF token.
pub struct Guarded;

impl FromRequestParts<Arc<Shared>> for Guarded {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, ApiError> {
        SameOrigin::from_request_parts(parts, shared).await?;
        let session = csrf::cookie(header(&parts.headers, header::COOKIE), SESSION_COOKIE);
        shared.sessions.check_token(session, header(&parts.headers, TOKEN_HEADER)).map_err(refused)?;
        Ok(Self)
    }
}

async fn vapid_public_key(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(json!({ "publicKey": shared.vapid_public_key })).into_response()
}

async fn session(
    State(shared): State<Arc<Shared>>,
    peer: Peer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    shared.rate_limit(peer.0.ip())?;
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

/// Checks a subscribe request and turns it into a record, with the user token's `jti`.
fn record(
    shared: &Shared,
    request: SubscribeRequest,
) -> Result<(Subscription, Option<(String, u64)>), ApiError> {
    check_subscription(&request.subscription, shared.config.local_endpoints_allowed())
        .map_err(|e| ApiError::bad("bad_subscription", e.0))?;
    let topics = check_topics(&request.topics).map_err(|e| ApiError::bad("bad_topics", e.0))?;
    let claims = match &request.user_token {
        Some(token) => Some(
            user_token::verify(&shared.user_token_secret, token, unix_now())
                .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "bad_user_token", e.to_string()))?,
        ),
        None => None,
    };
    let subscription = Subscription {
        endpoint: request.subscription.endpoint,
        p256dh: request.subscription.keys.p256dh,
        auth: request.subscription.keys.auth,
        user: claims.as_ref().map(|c| c.sub.clone()),
        topics,
        created_at: unix_now(),
        failures: 0,
        last_error: None,
    };
    Ok((subscription, claims.map(|c| (c.jti, c.exp))))
}

async fn save(
    shared: &Shared,
    request: SubscribeRequest,
    replacing: Option<SubscriptionId>,
) -> Result<Response, ApiError> {
    let (subscription, token) = record(shared, request)?;
    let (user, topics) = (subscription.user.clone(), subscription.topics.clone());
    let (id, saved) =
        shared.store.save_subscription(subscription, token, replacing).await.map_err(ApiError::storage)?;
    let status = match saved {
        Saved::Created => StatusCode::CREATED,
        Saved::Updated => StatusCode::OK,
        Saved::Replayed => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad_user_token",
                "this user token was used already; ask the app for a new one",
            ));
        }
    };
    let stored = shared.store.subscription(id).await.map_err(ApiError::storage)?;
    let (user, topics) = stored.map_or((user, topics), |s| (s.user, s.topics));
    Ok((status, axum::Json(json!({ "id": id.to_string(), "user": user, "topics": topics }))).into_response())
}

async fn subscribe(
    State(shared): State<Arc<Shared>>,
    _: Guarded,
    JsonBody(request): JsonBody<SubscribeRequest>,
) -> Result<Response, ApiError> {
    save(&shared, request, None).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Unsubscribe {
    endpoint: String,
}

async fn unsubscribe(
    State(shared): State<Arc<Shared>>,
    _: Guarded,
    JsonBody(request): JsonBody<Unsubscribe>,
) -> Result<Response, ApiError> {
    if shared
        .store
        .remove_subscription(SubscriptionId::of(&request.endpoint))
        .await
        .map_err(ApiError::storage)?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found("no subscription has this endpoint"))
    }
}

async fn replace(
    State(shared): State<Arc<Shared>>,
    _: Guarded,
    body: JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    // The body is a subscribe request plus `old_endpoint`; serde's `flatten` would lose
    // `deny_unknown_fields`, so the field is taken out by hand.
    let mut value = body.0;
    let old = value
        .as_object_mut()
        .and_then(|o| o.remove("old_endpoint"))
        .and_then(|v| v.as_str().map(str::to_owned))
        .ok_or_else(|| ApiError::bad("bad_json", "old_endpoint (a string) is required"))?;
    let new: SubscribeRequest =
        serde_json::from_value(value).map_err(|e| ApiError::bad("bad_json", e.to_string()))?;
    save(&shared, new, Some(SubscriptionId::of(&old))).await
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
