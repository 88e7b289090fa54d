//! The demo app's API (`tidings hub --demo`): a chat room. Messages live in memory (it is a
//! demo); each one is sent to the topic `chat` as a notification through the hub's own
//! queue, and a repeated `Idempotency-Key` returns the message already stored instead of a
//! second one, which is what makes the kit's outbox exactly-once. Posting passes the same
//! checks as the browser API (same origin, CSRF token, rate limit).

use super::browser::Guarded;
use super::{ApiError, JsonBody, Shared};
use crate::http::rest::{SendRequest, build_send};
use crate::http::wire::TargetJson;
use crate::notification::Notification;
use crate::store::Store as _;
use crate::unix_now;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// Messages kept (the oldest go first).
const KEEP: usize = 200;

/// One chat message.
#[derive(Debug, Clone, Serialize)]
pub struct ChatMessage {
    id: u64,
    author: String,
    text: String,
    at: u64,
}

/// The chat room.
#[derive(Default)]
pub struct Room {
    messages: Vec<ChatMessage>,
    by_key: HashMap<String, ChatMessage>,
    next: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Post {
    author: String,
    text: String,
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/demo/api/messages", get(list).post(post))
}

async fn list(State(shared): State<Arc<Shared>>) -> Response {
    let messages = shared.demo.lock().await.messages.clone();
    ([(header::CACHE_CONTROL, "no-cache")], axum::Json(json!({ "messages": messages }))).into_response()
}

async fn post(
    State(shared): State<Arc<Shared>>,
    _: Guarded,
    headers: HeaderMap,
    JsonBody(post): JsonBody<Post>,
) -> Result<Response, ApiError> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 100)
        .ok_or_else(|| ApiError::bad("no_idempotency_key", "send an Idempotency-Key of 1 to 100 characters"))?
        .to_owned();
    let (author, text) = (post.author.trim().to_owned(), post.text.trim().to_owned());
    if author.is_empty() || author.chars().count() > 40 || text.is_empty() || text.chars().count() > 500 {
        return Err(ApiError::bad("bad_message", "a name of 1 to 40 characters and a text of 1 to 500"));
    }
    // The room stays locked until the notification is queued: a concurrent retry with the
    // same key waits and then finds the message. The key is recorded only once the
    // notification is queued, so that a retry after a failure queues it then.
    let mut room = shared.demo.lock().await;
    if let Some(existing) = room.by_key.get(&key) {
        return Ok((StatusCode::OK, axum::Json(existing.clone())).into_response());
    }
    let message = ChatMessage { id: room.next + 1, author, text, at: unix_now() };
    let notification = Notification {
        title: message.author.clone(),
        navigate: Some(format!("{}/", shared.config.public_url)),
        body: Some(message.text.clone()),
        icon: Some(format!("{}/icon.svg", shared.config.public_url)),
        tag: Some("chat".into()),
        ..Notification::default()
    };
    let request = SendRequest {
        app_badge: Some(message.id),
        ttl: Some(3600),
        urgency: Some("normal".into()),
        topic: Some("chat".into()),
        ..SendRequest::notification(TargetJson::Topic("chat".into()), notification)
    };
    let send = build_send(request, &format!("{}/", shared.config.public_url), unix_now())?;
    shared.store.create_send(send, None).await.map_err(ApiError::storage)?;
    shared.wake.notify_one();
    room.next = message.id;
    room.messages.push(message.clone());
    room.by_key.insert(key, message.clone());
    if room.messages.len() > KEEP {
        let old = room.messages.remove(0);
        room.by_key.retain(|_, m| m.id != old.id);
    }
    Ok((StatusCode::CREATED, axum::Json(message)).into_response())
}
