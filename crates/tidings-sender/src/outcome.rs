//! What a push service's answer means for the sender, without I/O.
//!
//! Every answer falls in one of four classes, and each class has one right reaction:
//! accepted (done), gone (delete the subscription), rejected (fix the request; retrying the
//! same request cannot help) and retry later (back off, honouring `Retry-After`).

use http::{HeaderMap, StatusCode};
use std::time::{Duration, SystemTime};

/// The class of an answer, which decides what the sender does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 201 or 202: the push service took the message.
    Accepted,
    /// 404 or 410: the subscription does not exist any more; delete it.
    Gone,
    /// 400, 401, 403, 413 and other client errors: the request is wrong and will stay wrong.
    Rejected,
    /// 429, 5xx (and WNS's 406 throttling): the service cannot take it now; try again later.
    RetryLater,
}

/// The error body most push services send: `{code, errno, error, message, more_info}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceError {
    /// Mozilla's errno (see autopush's table; Tidings uses the same numbers).
    pub errno: Option<i64>,
    /// The service's explanation: the `message` (or `reason`, or `error`) member, or the
    /// start of a plain-text body.
    pub message: Option<String>,
}

/// A push service's answer, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status.
    pub status: StatusCode,
    /// What the status means for the sender.
    pub verdict: Verdict,
    /// The message resource (`Location`), for accepted messages.
    pub location: Option<String>,
    /// The TTL the service will honour (`TTL` response header), when it says.
    pub ttl: Option<u32>,
    /// How long to wait before retrying (`Retry-After`), when the service says.
    pub retry_after: Option<Duration>,
    /// Details from the error body, for answers that are not accepted.
    pub error: Option<ServiceError>,
    /// All response headers, for diagnostics.
    pub headers: HeaderMap,
}

/// The longest explanation kept from a response body.
const MAX_MESSAGE_LEN: usize = 300;

impl Response {
    /// Classifies an answer. `now` resolves a `Retry-After` given as an HTTP date.
    pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8], now: SystemTime) -> Self {
        let verdict = match status.as_u16() {
            201 | 202 => Verdict::Accepted,
            404 | 410 => Verdict::Gone,
            406 | 429 | 500..=599 => Verdict::RetryLater,
            // Any other 2xx is not what RFC 8030 promises, but the message was taken.
            200..=299 => Verdict::Accepted,
            _ => Verdict::Rejected,
        };
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        Self {
            status,
            verdict,
            location: header("location").map(str::to_owned),
            ttl: header("ttl").and_then(tidings_wire::headers::parse_ttl),
            retry_after: header("retry-after").and_then(|v| parse_retry_after(v, now)),
            error: (verdict != Verdict::Accepted).then(|| parse_error_body(body)),
            headers: headers.clone(),
        }
    }

    /// A sentence saying what the answer means and what to do, for people.
    pub fn explanation(&self) -> &'static str {
        match (self.verdict, self.status.as_u16()) {
            (Verdict::Accepted, _) => "accepted: the push service will deliver the message",
            (Verdict::Gone, _) => {
                "gone: the subscription no longer exists (the user unsubscribed, or it expired); delete it"
            }
            (_, 400) => "rejected: the push service refused the request's headers or body as malformed",
            (_, 401) => {
                "rejected: VAPID authentication failed (no token, a bad signature, a wrong audience, an expired token or a clock that is off)"
            }
            (_, 403) => {
                "rejected: the VAPID key does not match the applicationServerKey the subscription was created with (check with `tidings vapid check`), or the service refused the VAPID subject"
            }
            (_, 413) => "rejected: the payload is too large for this push service; send less",
            (Verdict::Rejected, _) => "rejected: the push service refused the request",
            (_, 429 | 406) => "try later: the push service is rate limiting this sender",
            _ => "try later: the push service could not take the message now",
        }
    }
}

/// `Retry-After` is either delay-seconds or an HTTP date (RFC 9110 section 10.2.3).
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn parse_error_body(body: &[u8]) -> ServiceError {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if let Ok(serde_json::Value::Object(json)) = serde_json::from_str::<serde_json::Value>(text) {
        let errno = json.get("errno").and_then(serde_json::Value::as_i64);
        let message = ["message", "reason", "error"]
            .iter()
            .find_map(|k| json.get(*k).and_then(|v| v.as_str()))
            .map(|m| truncate(m, MAX_MESSAGE_LEN));
        return ServiceError { errno, message };
    }
    ServiceError { errno: None, message: (!text.is_empty()).then(|| truncate(text, MAX_MESSAGE_LEN)) }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn classify(status: u16, headers: &[(&'static str, &str)], body: &str) -> Response {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        Response::classify(
            StatusCode::from_u16(status).unwrap(),
            &map,
            body.as_bytes(),
            SystemTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn every_status_class() {
        let ok = classify(201, &[("location", "https://push/m/1"), ("ttl", "60")], "");
        assert_eq!(
            (ok.verdict, ok.location.as_deref(), ok.ttl, ok.error),
            (Verdict::Accepted, Some("https://push/m/1"), Some(60), None)
        );
        assert_eq!(classify(202, &[], "").verdict, Verdict::Accepted);
        assert_eq!(classify(410, &[], "").verdict, Verdict::Gone);
        assert_eq!(classify(404, &[], "").verdict, Verdict::Gone);
        for status in [400, 401, 403, 413, 418] {
            assert_eq!(classify(status, &[], "").verdict, Verdict::Rejected, "{status}");
        }
        for status in [429, 500, 502, 503, 406] {
            assert_eq!(classify(status, &[], "").verdict, Verdict::RetryLater, "{status}");
        }
        assert!(classify(403, &[], "").explanation().contains("tidings vapid check"));
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(classify(429, &[("retry-after", "120")], "").retry_after, Some(Duration::from_secs(120)));
        let date = classify(503, &[("retry-after", "Thu, 01 Jan 1970 00:01:40 GMT")], "");
        assert_eq!(date.retry_after, Some(Duration::from_secs(100)));
        assert_eq!(classify(503, &[("retry-after", "soon")], "").retry_after, None);
    }

    #[test]
    fn error_bodies() {
        let mozilla = r#"{"code": 401, "errno": 109, "error": "Unauthorized", "message": "Request did not validate invalid token"}"#;
        let e = classify(401, &[], mozilla).error.unwrap();
        assert_eq!(
            (e.errno, e.message.as_deref()),
            (Some(109), Some("Request did not validate invalid token"))
        );
        let apple = r#"{"reason":"BadJwtToken"}"#;
        assert_eq!(classify(403, &[], apple).error.unwrap().message.as_deref(), Some("BadJwtToken"));
        let fcm = "the key in the authorization header does not correspond to the sender ID";
        assert_eq!(classify(403, &[], fcm).error.unwrap().message.as_deref(), Some(fcm));
        let long = "x".repeat(1000);
        assert_eq!(
            classify(500, &[], &long).error.unwrap().message.unwrap().chars().count(),
            MAX_MESSAGE_LEN + 1
        );
        assert_eq!(classify(500, &[], "").error.unwrap(), ServiceError::default());
    }
}
