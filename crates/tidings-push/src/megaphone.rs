//! Polling a megaphone API for broadcast versions, as autopush does, so that a deployment
//! that already runs Mozilla's megaphone service can point Tidings at it (`--megaphone-url`).
//!
//! Every [`Megaphone::poll_interval`] the node asks `GET <url>` with
//! `Authorization: Bearer <token>`; the answer is `{"broadcasts": {"<id>": "<version>", ...}}`
//! (other members, such as megaphone's `code`, are ignored). Each version the node does not
//! have yet is set as the admin route sets one: stored (so it survives a restart and reaches
//! the other nodes of a shared store) and told to the connections that follow it. Every node
//! polls; on a shared store the first to see a change stores it, and the others find they
//! already have it. A failed poll is counted and logged, and the next one tries again.

use crate::app::App;
use crate::config::Megaphone;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tidings_sender::{ClientConfig, PushClient};
use tidings_store::Backend;

/// The largest answer read: room for hundreds of broadcasts.
const MAX_ANSWER: usize = 256 * 1024;
/// The longest a poll may take (less when polls are more frequent).
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a poll brought nothing.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// No answer (unreachable, TLS, timeout).
    #[error("no answer: {0}")]
    Unreachable(String),
    /// An answer other than 2xx.
    #[error("answered {0}")]
    Status(http::StatusCode),
    /// A 2xx whose body is not `{"broadcasts": {"<id>": "<version>", ...}}`.
    #[error("the answer is not {{\"broadcasts\": {{\"<id>\": \"<version>\", ...}}}}: {0}")]
    Body(String),
}

/// The broadcasts of a megaphone answer.
pub fn parse(body: &[u8]) -> Result<BTreeMap<String, String>, PollError> {
    #[derive(serde::Deserialize)]
    struct Answer {
        broadcasts: BTreeMap<String, String>,
    }
    serde_json::from_slice::<Answer>(body).map(|a| a.broadcasts).map_err(|e| PollError::Body(e.to_string()))
}

/// The `Authorization` header value. A token written as autopush's setting is, with its
/// `Bearer ` already in front, is taken as it is.
fn authorization(token: &str) -> String {
    match token.split_once(' ') {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("bearer") => token.to_owned(),
        _ => format!("Bearer {token}"),
    }
}

/// Polls until the task is aborted (at shutdown).
pub async fn poll<S: Backend>(app: Arc<App<S>>, megaphone: Megaphone) {
    let client = PushClient::new(ClientConfig {
        timeout: megaphone.poll_interval.min(TIMEOUT),
        ..ClientConfig::default()
    });
    let mut interval = tokio::time::interval(megaphone.poll_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let broadcasts = match fetch(&client, &megaphone).await {
            Ok(broadcasts) => broadcasts,
            Err(e) => {
                app.metrics
                    .megaphone_polls
                    .get_or_create(&crate::metrics::PollLabel { result: "error" })
                    .inc();
                tracing::warn!(error = %e, "could not poll the megaphone API; trying again at the next interval");
                continue;
            }
        };
        app.metrics.megaphone_polls.get_or_create(&crate::metrics::PollLabel { result: "ok" }).inc();
        for (id, version) in broadcasts {
            if app.versions().version(&id) == Some(version.as_str()) {
                continue;
            }
            match app.set_broadcast(&id, &version).await {
                Ok(_) => tracing::info!(id, version, "broadcast version from the megaphone API"),
                Err(e) => tracing::warn!(id, error = %e, "a broadcast from the megaphone API is not taken"),
            }
        }
    }
}

async fn fetch(client: &PushClient, megaphone: &Megaphone) -> Result<BTreeMap<String, String>, PollError> {
    let request = http::Request::get(&megaphone.url)
        .header(http::header::AUTHORIZATION, authorization(megaphone.token.expose()))
        .header(http::header::ACCEPT, "application/json")
        .body(Bytes::new())
        .map_err(|e| PollError::Unreachable(e.to_string()))?;
    let (parts, body) =
        client.fetch(request, MAX_ANSWER).await.map_err(|e| PollError::Unreachable(e.to_string()))?;
    if !parts.status.is_success() {
        return Err(PollError::Status(parts.status));
    }
    parse(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_as_megaphone_writes_them() {
        let body = br#"{"code": 200, "broadcasts": {"remote-settings/monitor_changes": "\"1712\"", "kinto:123": "v1"}}"#;
        let broadcasts = parse(body).unwrap();
        assert_eq!(broadcasts["remote-settings/monitor_changes"], "\"1712\"");
        assert_eq!(broadcasts.len(), 2);
        assert!(parse(br#"{"broadcasts": {}}"#).unwrap().is_empty());
        for bad in [&br#"{"broadcasts": {"a": 1}}"#[..], b"{}", b"[]", b"", b"<html>"] {
            assert!(matches!(parse(bad), Err(PollError::Body(_))), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_token_goes_as_a_bearer_token() {
        assert_eq!(authorization("s3cret"), "Bearer s3cret");
        assert_eq!(authorization("Bearer s3cret"), "Bearer s3cret", "autopush's form");
    }
}
