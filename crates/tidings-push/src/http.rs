//! The routes, all on one port.
//!
//! | route | for |
//! |---|---|
//! | `GET /` | user agents: the WebSocket upgrade (a plain GET gets a short description) |
//! | `POST /push/{token}` | application servers: send a message (RFC 8030) |
//! | `DELETE /m/{token}` | application servers: cancel a pending message |
//! | `GET /health` | load balancers: liveness and storage readiness |
//! | `GET /metrics` | Prometheus |
//! | `GET /errors` | people: the errno table |
//! | `PUT /admin/broadcasts/{id}`, `GET /admin/broadcasts` | operators: broadcast versions ([`crate::admin`]) |

use crate::admin;
use crate::api;
use crate::app::App;
use crate::limits::{Refusal, Slot};
use crate::server::Peer;
use crate::tls::TlsStream;
use crate::ws;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use http::{HeaderValue, StatusCode, header};
use hyper_util::rt::TokioIo;
use std::net::IpAddr;
use std::sync::Arc;
use tidings_store::Backend;
use tidings_websocket::handshake;
use tidings_wire::errno::Errno;
use tokio::net::TcpStream;

/// The WebSocket subprotocol Firefox asks for.
const PROTOCOL: &str = "push-notification";

/// The errno table, served at `/errors`.
const ERRORS_DOC: &str = include_str!("../../../docs/errors.md");

/// Every route of the service.
pub fn router<S: Backend>(app: Arc<App<S>>) -> Router {
    Router::new()
        .route("/", get(root::<S>))
        .route("/push/{token}", post(api::push::<S>))
        .route("/m/{token}", delete(api::cancel::<S>))
        .route("/health", get(health::<S>))
        .route("/metrics", get(metrics::<S>))
        .route("/admin/broadcasts", get(admin::list_broadcasts::<S>))
        .route(
            "/admin/broadcasts/{*id}",
            put(admin::put_broadcast::<S>).layer(DefaultBodyLimit::max(admin::MAX_BODY)),
        )
        .route(
            "/errors",
            get(|| async { ([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], ERRORS_DOC) }),
        )
        .fallback(not_found::<S>)
        .with_state(app)
}

async fn not_found<S: Backend>(State(app): State<Arc<App<S>>>) -> Response {
    not_found_response(&app)
}

/// The answer for a path that leads nowhere (also for routes that are turned off).
pub(crate) fn not_found_response<S: Backend>(app: &App<S>) -> Response {
    app.error_response(api::ApiError { errno: Errno::InvalidToken, message: "no such resource".into() })
}

/// `GET /`: upgrades to the push WebSocket.
async fn root<S: Backend>(State(app): State<Arc<App<S>>>, mut request: Request) -> Response {
    let upgrade = match handshake::check_request(request.headers(), PROTOCOL) {
        Ok(upgrade) => upgrade,
        Err(handshake::UpgradeError::NotUpgrade) => {
            return "Tidings push service. User agents connect here with a WebSocket; see /errors for the push API's error numbers.\n"
                .into_response();
        }
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    // Admitted before the upgrade, so that a refusal is a plain 503 and the connections
    // already open are untouched.
    let client = app.client(peer_address(&request), request.headers());
    let admitted = app.limits.connect(client);
    let slot = match admitted {
        Ok(slot) => slot,
        Err(refusal) => {
            app.metrics.refuse(refusal.label());
            let message = match refusal {
                Refusal::Connections => "this node holds as many connections as it may; try another or later",
                _ => "too many connections from this address; try again later",
            };
            return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "60")], format!("{message}\n"))
                .into_response();
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => serve_websocket(app, upgraded, slot),
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&upgrade.accept).expect("base64 is a valid header"),
    );
    if upgrade.protocol_offered {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(PROTOCOL));
    }
    response
}

/// The address a request came from (the socket's peer), as the server noted it.
pub(crate) fn peer_address(request: &Request) -> IpAddr {
    request.extensions().get::<Peer>().map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.ip())
}

/// Takes the socket back from hyper, so that an idle connection holds no buffer of hyper's,
/// and serves the WebSocket on it in a task of its own. Spawned from this plain function, the
/// task is exactly as large as the connection's state on that kind of socket: an async block
/// that awaited both kinds would be as large as the larger (TLS, kilobytes more) for all.
fn serve_websocket<S: Backend>(app: Arc<App<S>>, upgraded: hyper::upgrade::Upgraded, slot: Slot) {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let (tcp, pre_read) = take_back(parts);
            size_send_buffer(&tcp);
            tokio::spawn(ws::serve(app, tcp, pre_read, slot));
        }
        Err(upgraded) => match upgraded.downcast::<TokioIo<TlsStream>>() {
            Ok(parts) => {
                let (tls, pre_read) = take_back(parts);
                size_send_buffer(tls.tcp());
                tokio::spawn(ws::serve(app, Box::new(tls), pre_read, slot));
            }
            // The server only serves TCP and TLS over TCP.
            Err(_) => tracing::warn!("WebSocket upgrade on an unknown kind of connection"),
        },
    }
}

/// The stream of an upgraded connection, and the bytes read past the request. Those are a
/// slice of hyper's 8 KiB read buffer: they are copied (usually there are none) so that
/// the buffer is freed now, not kept for the life of the connection.
fn take_back<T>(parts: hyper::upgrade::Parts<TokioIo<T>>) -> (T, Vec<u8>) {
    (parts.io.into_inner(), parts.read_buf.to_vec())
}

/// Bounds the kernel send buffer of a WebSocket ([`ws::SEND_BUFFER`]).
fn size_send_buffer(tcp: &TcpStream) {
    if let Err(e) = socket2::SockRef::from(tcp).set_send_buffer_size(ws::SEND_BUFFER) {
        tracing::debug!(error = %e, "could not size the send buffer");
    }
}

/// How long `/health` waits for storage: a load balancer's check must get its answer
/// before its own timeout, and storage slower than this is not healthy anyway.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// `GET /health`: 200 when storage answers, 503 (with `Retry-After`) otherwise.
async fn health<S: Backend>(State(app): State<Arc<App<S>>>) -> Response {
    let (status, storage) = match tokio::time::timeout(HEALTH_TIMEOUT, app.store.ready()).await {
        Ok(Ok(())) => (StatusCode::OK, "OK".to_owned()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage did not answer within a second".to_owned()),
    };
    let body = serde_json::json!({
        "status": if status == StatusCode::OK { "OK" } else { "unavailable" },
        "storage": storage,
        "connections": app.registry.len(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    let mut response =
        (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    if status != StatusCode::OK {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
    }
    response
}

async fn metrics<S: Backend>(State(app): State<Arc<App<S>>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        app.metrics.encode(),
    )
        .into_response()
}
