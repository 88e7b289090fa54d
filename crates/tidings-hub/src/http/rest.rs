//! The REST API for the app's backend, authenticated with an API key
//! (`Authorization: Bearer tdh_...`). `GET /api/openapi.json` describes it.
//!
//! | route | does |
//! |---|---|
//! | `POST /api/v1/sends` | queues a message to a subscription, a user, a topic or everyone |
//! | `GET /api/v1/sends` | the latest sends |
//! | `GET /api/v1/sends/{id}` | one send's progress: counts and errors |
//! | `GET /api/v1/topics` | topics and their subscription counts |
//! | `GET /api/v1/subscriptions` | subscriptions (endpoints masked), a page at a time |
//! | `DELETE /api/v1/subscriptions/{id}` | forgets a subscription |

use super::wire::{self, TargetJson};
use super::{ApiError, JsonBody, Shared};
use crate::model::{Content, IdempotencyKey, NewSend, SubscriptionId};
use crate::notification::{self, Notification};
use crate::store::Store as _;
use crate::unix_now;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use http::request::Parts;
use http::{StatusCode, header};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use tidings_crypto::b64;
use tidings_sender::Message;
use tidings_wire::{Topic, Urgency};

/// The OpenAPI document of these routes (and the browser-facing ones).
pub const OPENAPI: &str = include_str!("openapi.json");

/// The default `TTL`: four weeks, as npm web-push.
pub const DEFAULT_TTL: u32 = 28 * 24 * 3600;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/v1/sends", post(create_send).get(list_sends))
        .route("/api/v1/sends/{id}", get(get_send))
        .route("/api/v1/topics", get(topics))
        .route("/api/v1/subscriptions", get(subscriptions))
        .route("/api/v1/subscriptions/{id}", delete(remove_subscription))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// A request with a valid API key (checked before the body is read); holds the key's name.
pub struct ApiKey(pub crate::api_keys::Entry);

impl FromRequestParts<Arc<Shared>> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, ApiError> {
        let unauthorized = |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .ok_or_else(|| unauthorized("send an API key: Authorization: Bearer tdh_..."))?;
        shared
            .api_keys
            .check(presented, unix_now())
            .await
            .map(Self)
            .ok_or_else(|| unauthorized("unknown API key (tidings hub api-key create makes one)"))
    }
}

/// The query of a listing, or a JSON 400.
fn page(query: Result<Query<Page>, QueryRejection>) -> Result<Page, ApiError> {
    query.map(|Query(page)| page).map_err(|e| ApiError::bad("bad_query", e.body_text()))
}

/// When to send: unix seconds or an RFC 3339 time.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum When {
    /// Seconds since the epoch.
    Seconds(u64),
    /// `2026-11-21T12:00:00Z`.
    Text(String),
}

/// The body of `POST /api/v1/sends`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// `{"subscription": id}`, `{"user": ...}`, `{"topic": ...}` or `"everyone"`.
    pub to: TargetJson,
    /// A notification, sent in the Declarative Web Push format.
    pub notification: Option<Notification>,
    /// With a notification: the app badge.
    pub app_badge: Option<u64>,
    /// With a notification: whether the service worker may change it.
    pub mutable: Option<bool>,
    /// Raw payload bytes, base64url (for a data message).
    pub payload: Option<String>,
    /// A text payload (for a data message).
    pub text: Option<String>,
    /// `TTL` in seconds (default four weeks).
    pub ttl: Option<u32>,
    /// `very-low`, `low`, `normal` or `high`.
    pub urgency: Option<String>,
    /// `Topic`: replaces an undelivered message with the same topic.
    pub topic: Option<String>,
    /// When to send (default now).
    pub send_at: Option<When>,
}

impl SendRequest {
    /// A request to send `notification` to `to`, with every other choice left to its default.
    pub fn notification(to: TargetJson, notification: Notification) -> Self {
        Self {
            to,
            notification: Some(notification),
            app_badge: None,
            mutable: None,
            payload: None,
            text: None,
            ttl: None,
            urgency: None,
            topic: None,
            send_at: None,
        }
    }
}

/// Checks a send request and makes the send to queue.
pub fn build_send(request: SendRequest, default_navigate: &str, now: u64) -> Result<NewSend, ApiError> {
    let payload = match (request.notification, request.payload, request.text) {
        (Some(n), None, None) => {
            notification::payload(n, request.app_badge, request.mutable, default_navigate)
                .map_err(|e| ApiError::bad("bad_notification", e.0))?
        }
        (None, Some(p), None) => b64::decode(&p)
            .map_err(|e| ApiError::bad("bad_payload", format!("payload is not base64url: {e}")))?,
        (None, None, Some(t)) => t.into_bytes(),
        (None, None, None) => Vec::new(),
        _ => return Err(ApiError::bad("bad_send", "give at most one of notification, payload and text")),
    };
    let limit = Message::new(Vec::new()).max_payload_len();
    if payload.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the payload is {} bytes; Web Push carries at most {limit}", payload.len()),
        ));
    }
    let urgency = request
        .urgency
        .as_deref()
        .map(str::parse::<Urgency>)
        .transpose()
        .map_err(|e| ApiError::bad("bad_urgency", e.to_string()))?;
    let topic = request
        .topic
        .as_deref()
        .map(str::parse::<Topic>)
        .transpose()
        .map_err(|e| ApiError::bad("bad_topic", e.to_string()))?;
    let target = request.to.target()?;
    let send_at = match request.send_at {
        None => now,
        Some(When::Seconds(s)) => s,
        Some(When::Text(t)) => humantime::parse_rfc3339(&t)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .ok_or_else(|| ApiError::bad("bad_send_at", "send_at is unix seconds or an RFC 3339 time"))?,
    };
    let content = Content { payload, ttl: request.ttl.unwrap_or(DEFAULT_TTL), urgency, topic };
    Ok(NewSend { target, content, created_at: now, send_at })
}

/// How long an `Idempotency-Key` of `POST /api/v1/sends` is remembered.
pub const IDEMPOTENCY_SECONDS: u64 = 24 * 3600;

async fn create_send(
    State(shared): State<Arc<Shared>>,
    ApiKey(api_key): ApiKey,
    headers: http::HeaderMap,
    JsonBody(request): JsonBody<SendRequest>,
) -> Result<Response, ApiError> {
    let now = unix_now();
    let idempotency = match headers.get("idempotency-key") {
        None => None,
        Some(value) => {
            let text = value.to_str().ok().filter(|k| !k.is_empty() && k.len() <= 255).ok_or_else(|| {
                ApiError::bad(
                    "bad_idempotency_key",
                    "an Idempotency-Key is 1 to 255 visible ASCII characters",
                )
            })?;
            // Keys are the callers': one API key's cannot meet another's.
            Some(IdempotencyKey {
                key: format!("{}:{text}", api_key.id()),
                expires: now + IDEMPOTENCY_SECONDS,
            })
        }
    };
    let send = build_send(request, &format!("{}/", shared.config.public_url), now)?;
    let created = shared.store.create_send(send, idempotency).await.map_err(ApiError::storage)?;
    let id = created.send.id;
    if created.replayed {
        tracing::info!(
            send = id,
            key = api_key.name,
            "send request repeated with its Idempotency-Key: not queued again"
        );
    } else {
        shared.wake.notify_one();
        tracing::info!(send = id, key = api_key.name, to = ?created.send.target, "send queued");
    }
    let mut response = (
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/api/v1/sends/{id}"))],
        axum::Json(wire::send(&created.send)),
    )
        .into_response();
    if created.replayed {
        response.headers_mut().insert("idempotent-replayed", http::HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[derive(Deserialize)]
struct Page {
    limit: Option<usize>,
    after: Option<String>,
}

async fn list_sends(
    State(shared): State<Arc<Shared>>,
    _: ApiKey,
    query: Result<Query<Page>, QueryRejection>,
) -> Result<Response, ApiError> {
    let page = page(query)?;
    let sends =
        shared.store.recent_sends(page.limit.unwrap_or(20).min(100)).await.map_err(ApiError::storage)?;
    Ok(axum::Json(json!({ "sends": sends.iter().map(wire::send).collect::<Vec<_>>() })).into_response())
}

async fn get_send(
    State(shared): State<Arc<Shared>>,
    _: ApiKey,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::bad("bad_id", "a send id is a number"))?;
    let send = shared.store.send(id).await.map_err(ApiError::storage)?;
    send.map(|s| axum::Json(wire::send(&s)).into_response())
        .ok_or_else(|| ApiError::not_found("no such send"))
}

async fn topics(State(shared): State<Arc<Shared>>, _: ApiKey) -> Result<Response, ApiError> {
    let topics = shared.store.topics().await.map_err(ApiError::storage)?;
    let topics: Vec<_> =
        topics.into_iter().map(|(topic, n)| json!({ "topic": topic, "subscriptions": n })).collect();
    Ok(axum::Json(json!({ "topics": topics })).into_response())
}

async fn subscriptions(
    State(shared): State<Arc<Shared>>,
    _: ApiKey,
    query: Result<Query<Page>, QueryRejection>,
) -> Result<Response, ApiError> {
    let page = page(query)?;
    let after = match page.after.as_deref() {
        Some(a) => Some(
            SubscriptionId::parse(a).ok_or_else(|| ApiError::bad("bad_id", "after is a subscription id"))?,
        ),
        None => None,
    };
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let found = shared.store.subscriptions(after, limit).await.map_err(ApiError::storage)?;
    let next = (found.len() == limit).then(|| found.last().map(|(id, _)| id.to_string())).flatten();
    let items: Vec<_> = found.iter().map(|(id, s)| wire::subscription(*id, s)).collect();
    Ok(axum::Json(json!({ "subscriptions": items, "next": next })).into_response())
}

async fn remove_subscription(
    State(shared): State<Arc<Shared>>,
    _: ApiKey,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = SubscriptionId::parse(&id)
        .ok_or_else(|| ApiError::bad("bad_id", "a subscription id is 32 hex digits"))?;
    if shared.store.remove_subscription(id).await.map_err(ApiError::storage)? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found("no such subscription"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::{QueuedSend, SendStatus, Target};

    fn request(json: serde_json::Value) -> Result<NewSend, ApiError> {
        let request: SendRequest =
            serde_json::from_value(json).map_err(|e| ApiError::bad("bad_json", e.to_string()))?;
        build_send(request, "https://app.example/", 1000)
    }

    #[test]
    fn targets_and_payloads() {
        let send = request(json!({"to": "everyone", "text": "hi"})).unwrap();
        assert_eq!((send.target, send.content.payload), (Target::Everyone, b"hi".to_vec()));
        let send = request(json!({"to": {"topic": "news"}, "notification": {"title": "T"}, "app_badge": 2}))
            .unwrap();
        assert_eq!(send.target, Target::Topic("news".into()));
        let payload: serde_json::Value = serde_json::from_slice(&send.content.payload).unwrap();
        assert_eq!(payload["web_push"], 8030);
        assert_eq!(payload["notification"]["navigate"], "https://app.example/");
        assert_eq!(payload["app_badge"], 2);
        assert_eq!(send.content.ttl, DEFAULT_TTL);
        assert_eq!(QueuedSend::new(1, send).status, SendStatus::Queued);
        let later = request(json!({"to": {"user": "u"}, "send_at": "2026-11-21T12:00:00Z"})).unwrap();
        assert_eq!(later.send_at, 1_795_262_400);
        assert_eq!(QueuedSend::new(2, later).status, SendStatus::Scheduled);
    }

    #[test]
    fn refuses_bad_sends() {
        for bad in [
            json!({"to": "everyone", "text": "a", "payload": "YQ"}),
            json!({"to": {"subscription": "xyz"}}),
            json!({"to": {"topic": ""}}),
            json!({"to": "everyone", "payload": "!!"}),
            json!({"to": "everyone", "urgency": "asap"}),
            json!({"to": "everyone", "topic": "has space"}),
            json!({"to": "everyone", "send_at": "tomorrow"}),
            json!({"to": "everyone", "text": "x".repeat(5000)}),
            json!({"to": "everyone", "notification": {"title": ""}}),
            json!({"to": "nobody"}),
            json!({"to": "everyone", "extra": 1}),
        ] {
            assert!(request(bad.clone()).is_err(), "{bad}");
        }
    }
}
