//! The I/O shell: sends prepared requests over pooled HTTP/1.1 and HTTP/2 connections.

use crate::connect::{ConnectPolicy, Connector, Resolve, SystemResolver};
use crate::outcome::Response;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Response bodies are explanations, not content: anything past this is not read.
const MAX_RESPONSE_BODY: usize = 16 * 1024;

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The most one request (connect, send, read the answer) may take.
    pub timeout: Duration,
    /// How long an idle pooled connection is kept for reuse.
    pub idle_timeout: Duration,
    /// Certificate authorities to trust besides the system's: for push services behind a
    /// private CA (a `tidings serve` with its own certificate, say).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Which hosts and addresses may be connected to (anything, by default).
    pub policy: ConnectPolicy,
    /// How host names are resolved (the system's resolver, by default).
    pub resolver: Arc<dyn Resolve>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            extra_roots: Vec::new(),
            policy: ConnectPolicy::any(),
            resolver: Arc::new(SystemResolver),
        }
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No answer within the configured timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connecting, TLS or the HTTP exchange failed.
    #[error("{0}")]
    Http(String),
    /// The [`ConnectPolicy`] forbids the endpoint's host or address: sending again will not help.
    #[error("refused: {0}")]
    Refused(crate::connect::Refused),
}

/// A push client: one connection pool per push-service origin, HTTP/2 where the service
/// offers it (ALPN), HTTP/1.1 keep-alive otherwise. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct PushClient {
    http: Client<HttpsConnector<Connector>, Full<Bytes>>,
    timeout: Duration,
}

impl PushClient {
    /// A client trusting the system's CA certificates (or, where the system has none,
    /// Mozilla's root list as shipped in webpki-roots).
    pub fn new(config: ClientConfig) -> Self {
        let mut connector = Connector::new(config.policy, config.resolver);
        connector.http().enforce_http(false);
        connector.http().set_nodelay(true);
        connector.http().set_connect_timeout(Some(config.timeout));
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions");
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_roots();
        if native.is_empty() {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        } else {
            roots.add_parsable_certificates(native);
        }
        roots.add_parsable_certificates(config.extra_roots);
        let tls = tls.with_root_certificates(roots).with_no_client_auth();
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(connector);
        let http = Client::builder(TokioExecutor::new()).pool_idle_timeout(config.idle_timeout).build(https);
        Self { http, timeout: config.timeout }
    }

    /// Sends a prepared request and classifies the answer.
    pub async fn send(&self, request: Request<Bytes>) -> Result<Response, SendError> {
        let (parts, body) = self.fetch(request, MAX_RESPONSE_BODY).await?;
        Ok(Response::classify(parts.status, &parts.headers, &body, SystemTime::now()))
    }

    /// Sends any request on the same pool and returns the answer as it is, with at most
    /// `max_body` bytes of its body (a longer or cut-off body comes back empty: the status is
    /// still useful). For callers that read answers other than a push service's.
    pub async fn fetch(
        &self,
        request: Request<Bytes>,
        max_body: usize,
    ) -> Result<(http::response::Parts, Bytes), SendError> {
        let exchange = async {
            let response =
                self.http.request(request.map(Full::new)).await.map_err(
                    |e| match crate::connect::refusal(&e) {
                        Some(refused) => SendError::Refused(refused.clone()),
                        None => SendError::Http(describe(&e)),
                    },
                )?;
            let (parts, body) = response.into_parts();
            let body = match Limited::new(body, max_body).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => Bytes::new(),
            };
            Ok((parts, body))
        };
        tokio::time::timeout(self.timeout, exchange).await.map_err(|_| SendError::Timeout(self.timeout))?
    }
}

impl std::fmt::Debug for PushClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushClient").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

/// The system's trusted CA certificates (`SSL_CERT_FILE`, `SSL_CERT_DIR` or the platform
/// store); empty when it has none.
fn rustls_native_roots() -> Vec<CertificateDer<'static>> {
    rustls_native_certs::load_native_certs().certs
}

/// hyper-util's errors say "client error (Connect)" at the top; the cause is what helps.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
