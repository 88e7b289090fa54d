//! The admin page: plain server-rendered HTML, no script. Log in with the admin secret;
//! then one page shows subscriptions and topics with counts, a form to send a test
//! notification, and the latest sends with their outcomes. Endpoints are shown masked.
//!
//! Forms are protected like the browser API: same-origin check, a token bound to the login
//! cookie, and `SameSite=Strict` cookies. Logins are limited to five a minute per address.

use super::{Peer, Shared};
use crate::csrf::{self, ADMIN_COOKIE};
use crate::http::rest::{SendRequest, build_send};
use crate::notification::Notification;
use crate::store::{Send, Status, Target};
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

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}\
header{background:#1d2330;color:#fff;padding:.8em 2em;display:flex;justify-content:space-between;align-items:center}\
header h1{font-size:1.2em;margin:0}main{max-width:1100px;margin:1.5em auto;padding:0 1em}\
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;padding:1em 1.5em;margin-bottom:1.5em}\
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.35em .6em;border-bottom:1px solid #e3e6eb}\
th{font-weight:600;color:#555}.num{text-align:right;font-variant-numeric:tabular-nums}.flag{color:#b3261e}\
label{display:block;margin:.4em 0 .1em}input,select{font:inherit;padding:.35em;width:100%;box-sizing:border-box}\
button{font:inherit;padding:.45em 1.2em;margin-top:.8em;background:#2f5bea;color:#fff;border:0;border-radius:6px;cursor:pointer}\
.stats{display:flex;gap:2em}.stats div{font-size:1.8em;font-weight:600}.stats span{display:block;font-size:.5em;color:#666}\
.error{color:#b3261e}code{font-size:.9em}";

fn document(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>{}</title><style>{STYLE}</style><body>{body}</body></html>",
        escape(title)
    ))
}

fn login_form(message: Option<&str>) -> Html<String> {
    let message = message.map_or(String::new(), |m| format!("<p class=error>{}</p>", escape(m)));
    document(
        "Tidings hub: log in",
        &format!(
            "<header><h1>Tidings hub</h1></header><main><section><h2>Log in</h2>{message}\
             <form method=post action=/admin/login><label for=secret>Admin secret</label>\
             <input id=secret name=secret type=password autocomplete=current-password autofocus required>\
             <button type=submit>Log in</button></form></section></main>"
        ),
    )
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    csrf::cookie(headers.get(header::COOKIE).and_then(|v| v.to_str().ok()), ADMIN_COOKIE)
}

/// The admin cookie, if the request carries a valid login.
fn logged_in<'a>(shared: &Shared, headers: &'a HeaderMap) -> Option<&'a str> {
    cookie(headers).filter(|c| shared.sessions.admin_valid(Some(c), unix_now()))
}

/// Same-origin check for the admin forms.
fn same_origin(shared: &Shared, headers: &HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    csrf::check_origin(get("origin"), get("sec-fetch-site"), &shared.config.public_url, |_| false).is_ok()
}

fn forbidden(message: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        document(
            "Refused",
            &format!("<main><section><p class=error>{}</p></section></main>", escape(message)),
        ),
    )
        .into_response()
}

fn describe_target(target: &Target) -> String {
    match target {
        Target::Everyone => "everyone".into(),
        Target::Topic(t) => format!("topic {t}"),
        Target::User(u) => format!("user {u}"),
        Target::Subscription(s) => format!("subscription {}…", s.get(..8).unwrap_or(s)),
    }
}

fn send_row(send: &Send) -> String {
    let status = match send.status {
        Status::Scheduled => "scheduled",
        Status::Queued => "queued",
        Status::Running => "running",
        Status::Done => "done",
    };
    let errors: String = send
        .errors
        .iter()
        .take(3)
        .map(|e| format!("<div class=error><code>{}</code> {}</div>", escape(&e.endpoint), escape(&e.reason)))
        .collect();
    let c = &send.counts;
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
    let Some(cookie) = logged_in(&shared, &headers) else { return login_form(None).into_response() };
    match dashboard(&shared, cookie).await {
        Ok(html) => ([(header::CACHE_CONTROL, "no-store")], html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "admin page");
            (StatusCode::SERVICE_UNAVAILABLE, document("Unavailable", "<p>Storage is failing.</p>"))
                .into_response()
        }
    }
}

async fn dashboard(shared: &Shared, cookie: &str) -> Result<Html<String>, crate::store::StoreError> {
    let (total, flagged) = shared.store.subscription_counts().await?;
    let topics = shared.store.topics().await?;
    let subscriptions = shared.store.subscriptions(None, 50).await?;
    let sends = shared.store.recent_sends(20).await?;
    let token = shared.sessions.admin_token(cookie);
    let mut body = String::new();
    let _ = write!(
        body,
        "<header><h1>Tidings hub</h1><form method=post action=/admin/logout style=margin:0>\
         <input type=hidden name=token value=\"{token}\"><button type=submit>Log out</button></form></header><main>\
         <section class=stats><div>{total}<span>subscriptions</span></div><div>{}<span>topics</span></div>\
         <div>{flagged}<span>flagged (failing)</span></div><div>{}<span>closed unread (since start)</span></div></section>",
        topics.len(),
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
    Ok(document("Tidings hub", &body))
}

#[derive(Deserialize)]
struct Login {
    secret: String,
}

async fn login(
    State(shared): State<Arc<Shared>>,
    peer: Peer,
    headers: HeaderMap,
    form: Result<Form<Login>, FormRejection>,
) -> Response {
    if !same_origin(&shared, &headers) {
        return forbidden("Log in from the hub's own page.");
    }
    if shared.login_limiter.check_key(&peer.0.ip()).is_err() {
        return (StatusCode::TOO_MANY_REQUESTS, login_form(Some("Too many attempts; wait a moment.")))
            .into_response();
    }
    let Ok(Form(login)) = form else {
        return (StatusCode::BAD_REQUEST, login_form(Some("Enter the secret."))).into_response();
    };
    if constant_time::verify_slices_are_equal(login.secret.as_bytes(), shared.admin_secret.as_bytes())
        .is_err()
    {
        tracing::warn!(peer = %peer.0.ip(), "failed admin login");
        return (StatusCode::UNAUTHORIZED, login_form(Some("Wrong secret."))).into_response();
    }
    ([(header::SET_COOKIE, shared.sessions.admin_cookie(unix_now()))], Redirect::to("/admin")).into_response()
}

#[derive(Deserialize)]
struct Token {
    token: String,
}

/// Whether an admin form request is genuine: logged in, same origin, token of this login.
fn genuine(shared: &Shared, headers: &HeaderMap, token: &str) -> bool {
    logged_in(shared, headers).is_some_and(|c| shared.sessions.check_admin_token(c, token))
        && same_origin(shared, headers)
}

async fn logout(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    form: Result<Form<Token>, FormRejection>,
) -> Response {
    if !form.is_ok_and(|Form(f)| genuine(&shared, &headers, &f.token)) {
        return forbidden("Not a form of this page.");
    }
    let clear = format!("{ADMIN_COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, clear)], Redirect::to("/admin")).into_response()
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
    if !genuine(&shared, &headers, &form.token) {
        return forbidden("Not a form of this page.");
    }
    let to = match form.to.strip_prefix("topic:") {
        Some(topic) => Target::Topic(topic.to_owned()),
        None => Target::Everyone,
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
            return (
                e.status,
                document(
                    "Refused",
                    &format!(
                        "<main><section><p class=error>{}</p><a href=/admin>Back</a></section></main>",
                        escape(&e.message)
                    ),
                ),
            )
                .into_response();
        }
    };
    match shared.store.create_send(send).await {
        Ok(id) => {
            shared.wake.notify_one();
            tracing::info!(send = id, "test notification queued from the admin page");
            Redirect::to("/admin").into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "admin send");
            (StatusCode::SERVICE_UNAVAILABLE, document("Unavailable", "<p>Storage is failing.</p>"))
                .into_response()
        }
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
