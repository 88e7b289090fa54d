//! The admin page: plain server-rendered HTML, no script. Log in with the admin secret;
//! then one page shows subscriptions and topics with counts, a form to send a test
//! notification, and the latest sends with their outcomes. Endpoints are shown masked.
//!
//! Forms are protected like the browser API: same-origin check, a token bound to the login
//! cookie, and `SameSite=Strict` cookies. Logins are kept on the server: logging out ends
//! one wherever its cookie was copied, and a new admin secret ends them all. Login attempts
//! are limited to five a minute per address, or per device for a browser that logged in
//! before (see [`super::limits`]). Every page carries [`super::ADMIN_CSP`].

use super::{ADMIN_CSP, Client, Shared};
use crate::csrf::{self, ADMIN_COOKIE, ADMIN_SESSION_SECONDS, DEVICE_COOKIE, Sessions};
use crate::http::rest::{SendRequest, build_send};
use crate::http::wire::TargetJson;
use crate::model::{AdminSession, QueuedSend, SendStatus, Target};
use crate::notification::Notification;
use crate::store::{Store as _, StoreError};
use crate::unix_now;
use aws_lc_rs::constant_time;
use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use std::fmt::Write as _;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/admin", get(page))
        .route("/admin/style.css", get(style))
        .route("/admin/login", post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/send", post(send))
}

/// Text made safe for HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page's style sheet, served apart: the policy allows no inline style or script.
const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}\
header{background:#1d2330;color:#fff;padding:.8em 2em;display:flex;justify-content:space-between;align-items:center}\
header h1{font-size:1.2em;margin:0}main{max-width:1100px;margin:1.5em auto;padding:0 1em}\
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;padding:1em 1.5em;margin-bottom:1.5em}\
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.35em .6em;border-bottom:1px solid #e3e6eb}\
th{font-weight:600;color:#555}.num{text-align:right;font-variant-numeric:tabular-nums}.flag{color:#b3261e}\
label{display:block;margin:.4em 0 .1em}input,select{font:inherit;padding:.35em;width:100%;box-sizing:border-box}\
button{font:inherit;padding:.45em 1.2em;margin-top:.8em;background:#2f5bea;color:#fff;border:0;border-radius:6px;cursor:pointer}\
.stats{display:flex;gap:2em}.stats div{font-size:1.8em;font-weight:600}.stats span{display:block;font-size:.5em;color:#666}\
.error{color:#b3261e}code{font-size:.9em}header form{margin:0}";

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], STYLE)
        .into_response()
}

/// A page of the admin interface, with its security policy, never cached.
fn document(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>{}</title><link rel=stylesheet href=/admin/style.css><body>{body}</body></html>",
        escape(title)
    );
    let headers = [
        (header::CONTENT_SECURITY_POLICY, ADMIN_CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    (status, headers, Html(html)).into_response()
}

fn login_form(status: StatusCode, message: Option<&str>) -> Response {
    let message = message.map_or(String::new(), |m| format!("<p class=error>{}</p>", escape(m)));
    document(
        status,
        "Tidings hub: log in",
        &format!(
            "<header><h1>Tidings hub</h1></header><main><section><h2>Log in</h2>{message}\
             <form method=post action=/admin/login><label for=secret>Admin secret</label>\
             <input id=secret name=secret type=password autocomplete=current-password autofocus required>\
             <button type=submit>Log in</button></form></section></main>"
        ),
    )
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    csrf::cookie(headers.get(header::COOKIE).and_then(|v| v.to_str().ok()), name)
}

/// The admin login the request carries, if it is open on the server, not expired, and was
/// opened with the current admin secret.
async fn logged_in<'a>(shared: &Shared, headers: &'a HeaderMap) -> Result<Option<&'a str>, StoreError> {
    let Some(id) = cookie(headers, ADMIN_COOKIE).filter(|c| !c.is_empty()) else { return Ok(None) };
    let session = shared.store.admin_session(Sessions::admin_key(id)).await?;
    Ok(session.filter(|s| s.expires > unix_now() && s.secret == shared.admin_fingerprint).map(|_| id))
}

fn unavailable(e: &StoreError) -> Response {
    tracing::error!(error = %e, "admin page");
    document(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        "<main><section><p>Storage is failing.</p></section></main>",
    )
}

/// Same-origin check for the admin forms.
fn same_origin(shared: &Shared, headers: &HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    csrf::check_origin(get("origin"), get("sec-fetch-site"), &shared.config.public_url, |_| false).is_ok()
}

fn forbidden(message: &str) -> Response {
    document(
        StatusCode::FORBIDDEN,
        "Refused",
        &format!("<main><section><p class=error>{}</p></section></main>", escape(message)),
    )
}

fn describe_target(target: &Target) -> String {
    match target {
        Target::Everyone => "everyone".into(),
        Target::Topic(t) => format!("topic {t}"),
        Target::User(u) => format!("user {u}"),
        Target::Subscription(s) => format!("subscription {}…", &s.to_string()[..8]),
    }
}

/// A send's row: its counts, and while it runs a progress bar (outcomes of the recipients
/// known so far; "…" while they are still being found).
fn send_row(send: &QueuedSend) -> String {
    let c = &send.counts;
    let status = match send.status {
        SendStatus::Running => {
            let done = c.queued - c.pending();
            let known = if send.materialized { "" } else { "…" };
            format!(
                "running <progress max={} value={done}></progress> {done}/{}{known}",
                c.queued.max(1),
                c.queued
            )
        }
        other => other.name().to_owned(),
    };
    let errors: String = send
        .errors
        .iter()
        .take(3)
        .map(|e| format!("<div class=error><code>{}</code> {}</div>", escape(&e.endpoint), escape(&e.reason)))
        .collect();
    format!(
        "<tr><td>{}</td><td>{}</td><td>{status}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td>\
         <td class=num>{}</td><td class=num>{}</td><td>{errors}</td></tr>",
        send.id,
        escape(&describe_target(&send.target)),
        c.queued,
        c.accepted,
        c.gone,
        c.rejected,
        c.failed
    )
}

async fn page(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let shown = match logged_in(&shared, &headers).await {
        Ok(Some(id)) => dashboard(&shared, id).await,
        Ok(None) => return login_form(StatusCode::OK, None),
        Err(e) => Err(e),
    };
    shown.unwrap_or_else(|e| unavailable(&e))
}

async fn dashboard(shared: &Shared, cookie: &str) -> Result<Response, StoreError> {
    let counts = shared.store.subscription_counts().await?;
    let (total, flagged) = (counts.total, counts.flagged);
    let topics = shared.store.topics().await?;
    let subscriptions = shared.store.subscriptions(None, 50).await?;
    let sends = shared.store.recent_sends(20).await?;
    let token = shared.sessions.admin_token(cookie);
    let mut body = String::new();
    let _ = write!(
        body,
        "<header><h1>Tidings hub</h1><form method=post action=/admin/logout>\
         <input type=hidden name=token value=\"{token}\"><button type=submit>Log out</button></form></header><main>\
         <section class=stats><div>{total}<span>subscriptions</span></div><div>{}<span>topics</span></div>\
         <div>{flagged}<span>flagged (failing)</span></div><div>{}<span>deleted for failing</span></div>\
         <div>{}<span>closed unread (since start)</span></div></section>",
        topics.len(),
        counts.deleted_failing,
        shared.closed.load(std::sync::atomic::Ordering::Relaxed)
    );
    let options: String = topics
        .iter()
        .map(|(t, n)| format!("<option value=\"topic:{0}\">topic {0} ({n})</option>", escape(t)))
        .collect();
    let _ = write!(
        body,
        "<section><h2>Send a test notification</h2><form method=post action=/admin/send>\
         <input type=hidden name=token value=\"{token}\">\
         <label for=to>To</label><select id=to name=to><option value=everyone>everyone ({total})</option>{options}</select>\
         <label for=title>Title</label><input id=title name=title required maxlength=200 value=\"Hello from Tidings\">\
         <label for=body>Body</label><input id=body name=body maxlength=1000>\
         <label for=navigate>Open on click (URL)</label><input id=navigate name=navigate type=url placeholder=\"{}/\">\
         <button type=submit>Send</button></form></section>",
        escape(&shared.config.public_url)
    );
    let rows: String = sends.iter().map(send_row).collect();
    let _ = write!(
        body,
        "<section><h2>Recent sends</h2><table id=sends><tr><th>#</th><th>To</th><th>Status</th><th class=num>Queued</th>\
         <th class=num>Accepted</th><th class=num>Gone</th><th class=num>Rejected</th><th class=num>Failed</th><th>Errors</th></tr>{rows}</table></section>"
    );
    let rows: String = topics
        .iter()
        .map(|(t, n)| format!("<tr><td>{}</td><td class=num>{n}</td></tr>", escape(t)))
        .collect();
    let _ = write!(
        body,
        "<section><h2>Topics</h2><table><tr><th>Topic</th><th class=num>Subscriptions</th></tr>{rows}</table></section>"
    );
    let rows: String = subscriptions
        .iter()
        .map(|(id, s)| {
            let flag = if s.flagged() { " class=flag" } else { "" };
            format!(
                "<tr{flag}><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td><td class=num>{}</td></tr>",
                &id.to_string()[..12],
                escape(&tidings_wire::endpoint::mask(&s.endpoint)),
                escape(s.user.as_deref().unwrap_or("")),
                escape(&s.topics.join(", ")),
                s.failures
            )
        })
        .collect();
    let _ = write!(
        body,
        "<section><h2>Subscriptions</h2><p>The first 50, by id; endpoints are masked.</p><table>\
         <tr><th>Id</th><th>Endpoint</th><th>User</th><th>Topics</th><th class=num>Failures</th></tr>{rows}</table></section></main>"
    );
    Ok(document(StatusCode::OK, "Tidings hub", &body))
}

#[derive(Deserialize)]
struct Login {
    secret: String,
}

async fn login(
    State(shared): State<Arc<Shared>>,
    Client(client): Client,
    headers: HeaderMap,
    form: Result<Form<Login>, FormRejection>,
) -> Response {
    if !same_origin(&shared, &headers) {
        return forbidden("Log in from the hub's own page.");
    }
    let now = unix_now();
    let device = shared.sessions.device(cookie(&headers, DEVICE_COOKIE), now);
    if !shared.limits.admin_login(device, client) {
        return login_form(StatusCode::TOO_MANY_REQUESTS, Some("Too many attempts; wait a minute."));
    }
    let Ok(Form(login)) = form else {
        return login_form(StatusCode::BAD_REQUEST, Some("Enter the secret."));
    };
    if constant_time::verify_slices_are_equal(login.secret.as_bytes(), shared.admin_secret.as_bytes())
        .is_err()
    {
        tracing::warn!(client = %client, "failed admin login");
        return login_form(StatusCode::UNAUTHORIZED, Some("Wrong secret."));
    }
    let id = Sessions::new_session();
    let session =
        AdminSession { expires: now + ADMIN_SESSION_SECONDS, secret: shared.admin_fingerprint.clone() };
    if let Err(e) = shared.store.open_admin_session(Sessions::admin_key(&id), session).await {
        return unavailable(&e);
    }
    tracing::info!(client = %client, "admin logged in");
    let mut response = Redirect::to("/admin").into_response();
    for cookie in [shared.sessions.admin_cookie(&id), shared.sessions.device_cookie(now)] {
        if let Ok(value) = cookie.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

#[derive(Deserialize)]
struct Token {
    token: String,
}

/// The login of a genuine admin form: logged in, same origin, token of this login.
async fn genuine<'a>(
    shared: &Shared,
    headers: &'a HeaderMap,
    token: &str,
) -> Result<Option<&'a str>, StoreError> {
    if !same_origin(shared, headers) {
        return Ok(None);
    }
    Ok(logged_in(shared, headers).await?.filter(|id| shared.sessions.check_admin_token(id, token)))
}

async fn logout(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    form: Result<Form<Token>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else { return forbidden("Not a form of this page.") };
    let id = match genuine(&shared, &headers, &form.token).await {
        Ok(Some(id)) => id,
        Ok(None) => return forbidden("Not a form of this page."),
        Err(e) => return unavailable(&e),
    };
    if let Err(e) = shared.store.close_admin_session(Sessions::admin_key(id)).await {
        return unavailable(&e);
    }
    ([(header::SET_COOKIE, shared.sessions.admin_cookie_cleared())], Redirect::to("/admin")).into_response()
}

#[derive(Deserialize)]
struct TestSend {
    token: String,
    to: String,
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    navigate: String,
}

async fn send(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    form: Result<Form<TestSend>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else { return forbidden("Not a form of this page.") };
    match genuine(&shared, &headers, &form.token).await {
        Ok(Some(_)) => {}
        Ok(None) => return forbidden("Not a form of this page."),
        Err(e) => return unavailable(&e),
    }
    let to = match form.to.strip_prefix("topic:") {
        Some(topic) => TargetJson::Topic(topic.to_owned()),
        None => TargetJson::Everyone,
    };
    let notification = Notification {
        title: form.title,
        navigate: Some(form.navigate).filter(|n| !n.is_empty()),
        body: Some(form.body).filter(|b| !b.is_empty()),
        ..Notification::default()
    };
    let request = SendRequest { ttl: Some(3600), ..SendRequest::notification(to, notification) };
    let send = match build_send(request, &format!("{}/", shared.config.public_url), unix_now()) {
        Ok(send) => send,
        Err(e) => {
            return document(
                e.status,
                "Refused",
                &format!(
                    "<main><section><p class=error>{}</p><a href=/admin>Back</a></section></main>",
                    escape(&e.message)
                ),
            );
        }
    };
    match shared.store.create_send(send, None).await {
        Ok(created) => {
            shared.wake.notify_one();
            tracing::info!(send = created.send.id, "test notification queued from the admin page");
            Redirect::to("/admin").into_response()
        }
        Err(e) => unavailable(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
