//! The PWA kit (`web/`), built into the binary and served at `/tidings/`, and the demo app
//! (`web/demo/`, with `--demo`) at `/`. Files are compiled in, so `tidings hub --demo` works
//! from any directory.

use super::{DEMO_CSP, Shared};
use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use std::sync::Arc;

/// The kit's modules, by file name.
const KIT: &[(&str, &str)] = &[
    ("tidings.js", include_str!("../../../../web/tidings.js")),
    ("tidings-sw.js", include_str!("../../../../web/tidings-sw.js")),
    ("tidings-core.js", include_str!("../../../../web/tidings-core.js")),
    ("tidings-idb.js", include_str!("../../../../web/tidings-idb.js")),
];

/// The demo app's files, by path.
const DEMO: &[(&str, &str)] = &[
    ("index.html", include_str!("../../../../web/demo/index.html")),
    ("app.js", include_str!("../../../../web/demo/app.js")),
    ("sw.js", include_str!("../../../../web/demo/sw.js")),
    ("style.css", include_str!("../../../../web/demo/style.css")),
    ("offline.html", include_str!("../../../../web/demo/offline.html")),
    ("manifest.webmanifest", include_str!("../../../../web/demo/manifest.webmanifest")),
    ("icon.svg", include_str!("../../../../web/demo/icon.svg")),
];

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("webmanifest") => "application/manifest+json",
        _ => "text/html; charset=utf-8",
    }
}

fn file(files: &[(&str, &'static str)], name: &str) -> Response {
    match files.iter().find(|(n, _)| *n == name) {
        // `no-cache`: the browser revalidates, so a new hub version is picked up; the service
        // worker's own cache is what makes the app work offline.
        Some((_, body)) => {
            let mut response =
                ([(header::CONTENT_TYPE, content_type(name)), (header::CACHE_CONTROL, "no-cache")], *body)
                    .into_response();
            if content_type(name).starts_with("text/html") {
                let headers = response.headers_mut();
                headers.insert(header::CONTENT_SECURITY_POLICY, http::HeaderValue::from_static(DEMO_CSP));
                headers.insert(header::X_FRAME_OPTIONS, http::HeaderValue::from_static("DENY"));
            }
            response
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn kit(Path(name): Path<String>) -> Response {
    file(KIT, &name)
}

async fn demo_root() -> Response {
    file(DEMO, "index.html")
}

async fn demo(Path(name): Path<String>) -> Response {
    file(DEMO, &name)
}

/// The kit's routes, and the demo's when `demo` is set.
pub(super) fn routes(demo_app: bool) -> Router<Arc<Shared>> {
    let router = Router::new().route("/tidings/{name}", get(kit));
    if demo_app { router.route("/", get(demo_root)).route("/{name}", get(demo)) } else { router }
}
