//! The operators' routes, behind a bearer token (`--admin-token-file`, or the token itself in
//! `TIDINGS_ADMIN_TOKEN`):
//!
//! | route | does |
//! |---|---|
//! | `PUT /admin/broadcasts/{id}` | sets a broadcast's version (the id may hold `/`, as `remote-settings/monitor_changes` does); the body is the version as text (one trailing newline dropped), or with `Content-Type: application/json` a JSON string or `{"version": "..."}` |
//! | `GET /admin/broadcasts` | every broadcast and its version, as `{"broadcasts": {...}}`: the megaphone API's shape, so another deployment can poll it |
//!
//! Without a token configured the routes do not exist (404, as any unknown path). A missing
//! or wrong token is a 401 with `WWW-Authenticate: Bearer`. Tokens are compared by their
//! SHA-256 in constant time, so the time taken says nothing about the token, and never logged.

use crate::app::{App, SetBroadcastError};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use std::sync::Arc;
use tidings_store::Backend;

/// The largest request body the admin routes read: a version is at most
/// [`crate::broadcast::MAX_VERSION_LEN`] bytes, JSON around it a little more.
pub const MAX_BODY: usize = 4096;

/// The SHA-256 of a token, what is kept and compared.
pub fn digest(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut bytes = [0; 32];
    bytes.copy_from_slice(digest.as_ref());
    bytes
}

/// Whether the request carries the admin token (`Authorization: Bearer <token>`, the scheme in
/// any case). `expected` is the token's digest.
fn authorized(expected: &[u8; 32], headers: &HeaderMap) -> bool {
    let Some(presented) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
    else {
        return false;
    };
    aws_lc_rs::constant_time::verify_slices_are_equal(&digest(presented), expected).is_ok()
}

/// A JSON error answer: `{code, error, message}`, the push API's shape without an errno
/// (these are not the push API's errors).
fn refuse(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let body = serde_json::json!({
        "code": status.as_u16(),
        "error": status.canonical_reason().unwrap_or(""),
        "message": message.to_string(),
    });
    let mut response =
        (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    match status {
        StatusCode::UNAUTHORIZED => {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        }
        _ => {}
    }
    response
}

/// The answer to a request that may not pass: 404 when the admin routes are off, 401
/// without the right token; `None` lets it through.
fn refusal<S: Backend>(app: &App<S>, headers: &HeaderMap) -> Option<Response> {
    match &app.admin_token {
        None => Some(crate::http::not_found_response(app)),
        Some(expected) if authorized(expected, headers) => None,
        Some(_) => Some(refuse(
            StatusCode::UNAUTHORIZED,
            "the admin routes need Authorization: Bearer <admin token>",
        )),
    }
}

/// The version in a `PUT` body: JSON (a string, or `{"version": "..."}`) when the content
/// type says so, else the text itself without one trailing newline (what `echo` adds).
pub fn parse_version(content_type: Option<&str>, body: &[u8]) -> Result<String, &'static str> {
    let is_json = content_type
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Body {
            Text(String),
            Object { version: String },
        }
        return match serde_json::from_slice::<Body>(body) {
            Ok(Body::Text(version) | Body::Object { version }) => Ok(version),
            Err(_) => Err("the JSON body must be a string, or an object with a string \"version\""),
        };
    }
    let text = std::str::from_utf8(body).map_err(|_| "the version must be UTF-8")?;
    let text = text.strip_suffix('\n').map_or(text, |t| t.strip_suffix('\r').unwrap_or(t));
    Ok(text.to_owned())
}

/// `PUT /admin/broadcasts/{id}`: sets the version; answers `{"id", "version", "changed"}`
/// (`changed`: whether it was news to this node).
pub async fn put_broadcast<S: Backend>(
    State(app): State<Arc<App<S>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = refusal(&app, &headers) {
        return response;
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let version = match parse_version(content_type, &body) {
        Ok(version) => version,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, message),
    };
    match app.set_broadcast(&id, &version).await {
        Ok(changed) => {
            tracing::info!(id, version, changed, "broadcast version set");
            let body = serde_json::json!({"id": id, "version": version, "changed": changed});
            ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
        }
        Err(SetBroadcastError::Invalid(e)) => refuse(StatusCode::BAD_REQUEST, e),
        Err(SetBroadcastError::Store(e)) => {
            tracing::warn!(error = %e, "could not store a broadcast version");
            refuse(StatusCode::SERVICE_UNAVAILABLE, "storage is unavailable; try again")
        }
    }
}

/// `GET /admin/broadcasts`: `{"broadcasts": {"<id>": "<version>", ...}}`.
pub async fn list_broadcasts<S: Backend>(State(app): State<Arc<App<S>>>, headers: HeaderMap) -> Response {
    if let Some(response) = refusal(&app, &headers) {
        return response;
    }
    let body = serde_json::json!({"broadcasts": app.versions().all()});
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_text_and_json() {
        assert_eq!(parse_version(None, b"\"1712\"\n"), Ok("\"1712\"".to_owned()));
        assert_eq!(parse_version(Some("text/plain"), b"v2\r\n"), Ok("v2".to_owned()));
        assert_eq!(parse_version(None, b"v2\n\n"), Ok("v2\n".to_owned()), "one newline only");
        let json = Some("application/json; charset=utf-8");
        assert_eq!(parse_version(json, br#""\"1712\"""#), Ok("\"1712\"".to_owned()));
        assert_eq!(parse_version(json, br#"{"version": "v3"}"#), Ok("v3".to_owned()));
        assert!(parse_version(json, br#"{"version": 3}"#).is_err());
        assert!(parse_version(json, b"v3").is_err());
        assert!(parse_version(None, &[0xff, 0xfe]).is_err());
    }

    #[test]
    fn tokens_are_checked() {
        let expected = digest("a-long-enough-admin-token");
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            headers
        };
        assert!(authorized(&expected, &with("Bearer a-long-enough-admin-token")));
        assert!(authorized(&expected, &with("bearer a-long-enough-admin-token")));
        assert!(!authorized(&expected, &with("Bearer a-long-enough-admin-toke")));
        assert!(!authorized(&expected, &with("Basic a-long-enough-admin-token")));
        assert!(!authorized(&expected, &with("a-long-enough-admin-token")));
        assert!(!authorized(&expected, &HeaderMap::new()));
    }
}
