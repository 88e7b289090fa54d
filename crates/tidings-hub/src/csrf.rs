//! Keeping other sites from acting in a user's browser (CSRF), for the browser-facing routes
//! and the admin page. Three independent checks, as browsers' own guidance recommends:
//!
//! 1. **Same origin.** A state-changing request must carry an `Origin` the hub accepts (its
//!    public URL, or an origin configured for the app), and if the browser sent
//!    `Sec-Fetch-Site`, it must say `same-origin` (or `same-site`/`cross-site` for a
//!    configured app origin). A plain cross-site form POST fails here.
//! 2. **A per-session token.** The page first asks `GET /api/session`, which sets a random
//!    session cookie and returns a token derived from it (an HMAC with the hub's secret).
//!    Each state-changing request echoes the token in a header, which another site cannot
//!    read or forge.
//! 3. **SameSite cookies.** The session cookie is `SameSite=Strict; HttpOnly` (and `Secure`
//!    behind https), so the browser does not even send it with a cross-site request.
//!
//! Everything here is pure: values in, values out.

use aws_lc_rs::{hmac, rand};
use tidings_crypto::b64;

/// The browser session's cookie.
pub const SESSION_COOKIE: &str = "tidings_session";
/// The admin page's session cookie.
pub const ADMIN_COOKIE: &str = "tidings_admin";
/// The admin's device cookie: proof that this browser logged in before (see
/// [`crate::http::limits`]).
pub const DEVICE_COOKIE: &str = "tidings_admin_device";
/// How long a device cookie is honoured.
pub const DEVICE_SECONDS: u64 = 90 * 24 * 3600;
/// The header that carries the per-session token.
pub const TOKEN_HEADER: &str = "x-tidings-csrf";
/// How long an admin login lasts.
pub const ADMIN_SESSION_SECONDS: u64 = 12 * 3600;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `Origin` header (not sent by a page's fetch).
    #[error("the request has no Origin header; browser-facing routes are for the app's pages")]
    NoOrigin,
    /// An origin the hub does not serve.
    #[error("requests from this origin are not accepted")]
    ForeignOrigin,
    /// `Sec-Fetch-Site` says another site made the request.
    #[error("cross-site requests are not accepted")]
    CrossSite,
    /// No session cookie, or no token, or a token of another session.
    #[error("missing or invalid CSRF token: call GET /api/session and send its token in X-Tidings-CSRF")]
    BadToken,
}

/// Checks where a state-changing request comes from. `own` is the hub's origin; `extra`
/// tells whether another origin is one of the app's.
///
/// A form posted from a page with `Referrer-Policy: no-referrer` (the admin page's) carries
/// `Origin: null`; `Sec-Fetch-Site: same-origin`, which no page can set or forge, then says
/// it is one of ours.
pub fn check_origin(
    origin: Option<&str>,
    fetch_site: Option<&str>,
    own: &str,
    extra: impl Fn(&str) -> bool,
) -> Result<(), Refusal> {
    let origin = match origin {
        Some("null") if fetch_site == Some("same-origin") => own,
        Some(origin) => origin,
        None => return Err(Refusal::NoOrigin),
    };
    let is_own = origin == own;
    if !is_own && !extra(origin) {
        return Err(Refusal::ForeignOrigin);
    }
    match fetch_site {
        None | Some("same-origin") => Ok(()),
        Some("same-site" | "cross-site") if !is_own => Ok(()),
        Some(_) => Err(Refusal::CrossSite),
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Sessions and their tokens, keyed by the hub's secret.
pub struct Sessions {
    key: hmac::Key,
    secure: bool,
}

impl Sessions {
    /// Sessions signed with `secret`; cookies marked `Secure` when `secure`.
    pub fn new(secret: &[u8], secure: bool) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, secret), secure }
    }

    fn mac(&self, purpose: &str, value: &str) -> String {
        b64::encode(hmac::sign(&self.key, format!("{purpose}\0{value}").as_bytes()).as_ref())
    }

    fn verify(&self, purpose: &str, value: &str, mac: &str) -> bool {
        b64::decode(mac)
            .is_ok_and(|tag| hmac::verify(&self.key, format!("{purpose}\0{value}").as_bytes(), &tag).is_ok())
    }

    /// A new random session id.
    pub fn new_session() -> String {
        let mut bytes = [0u8; 18];
        rand::fill(&mut bytes).expect("the system's random generator works");
        b64::encode(&bytes)
    }

    /// The `Set-Cookie` value for a browser session.
    pub fn session_cookie(&self, session: &str) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict{secure}")
    }

    /// The CSRF token of a browser session.
    pub fn token(&self, session: &str) -> String {
        self.mac("csrf", session)
    }

    /// Checks a request's session cookie against the token it carries.
    pub fn check_token(&self, session: Option<&str>, token: Option<&str>) -> Result<(), Refusal> {
        match (session, token) {
            (Some(session), Some(token)) if !session.is_empty() && self.verify("csrf", session, token) => {
                Ok(())
            }
            _ => Err(Refusal::BadToken),
        }
    }

    fn admin_cookie_attributes(&self, max_age: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
    }

    /// The `Set-Cookie` value of a new admin login: its random id. The login itself is kept
    /// on the server (under [`Sessions::admin_key`]), so that logging out ends it wherever
    /// the cookie was copied.
    pub fn admin_cookie(&self, id: &str) -> String {
        format!("{ADMIN_COOKIE}={id}; {}", self.admin_cookie_attributes(ADMIN_SESSION_SECONDS))
    }

    /// The `Set-Cookie` value that ends the admin login in this browser.
    pub fn admin_cookie_cleared(&self) -> String {
        format!("{ADMIN_COOKIE}=; {}", self.admin_cookie_attributes(0))
    }

    /// The key an admin login is stored under: a hash of its id, so that the database does
    /// not hold working cookies.
    pub fn admin_key(id: &str) -> [u8; 32] {
        let mut key = [0; 32];
        key.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.as_bytes()).as_ref());
        key
    }

    /// A keyed hash of the admin secret, stored with each login: logins opened with another
    /// secret are not honoured, so changing the secret ends them all.
    pub fn admin_fingerprint(&self, secret: &str) -> String {
        self.mac("admin-secret", secret)
    }

    /// The `Set-Cookie` value of a device cookie for a browser that just logged in, valid
    /// until `now` + [`DEVICE_SECONDS`].
    pub fn device_cookie(&self, now: u64) -> String {
        let value = format!("{}.{}", Self::new_session(), now + DEVICE_SECONDS);
        let mac = self.mac("admin-device", &value);
        format!("{DEVICE_COOKIE}={value}.{mac}; {}", self.admin_cookie_attributes(DEVICE_SECONDS))
    }

    /// The device a valid, unexpired device cookie names.
    pub fn device<'a>(&self, cookie: Option<&'a str>, now: u64) -> Option<&'a str> {
        let (value, mac) = cookie?.rsplit_once('.')?;
        let (device, expires) = value.split_once('.')?;
        let fresh = expires.parse::<u64>().is_ok_and(|e| e > now);
        (fresh && self.verify("admin-device", value, mac)).then_some(device)
    }

    /// The admin page's form token, bound to its login cookie.
    pub fn admin_token(&self, cookie: &str) -> String {
        self.mac("admin-form", cookie)
    }

    /// Checks an admin form's token.
    pub fn check_admin_token(&self, cookie: &str, token: &str) -> bool {
        self.verify("admin-form", cookie, token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "https://app.example";

    #[test]
    fn only_the_apps_pages() {
        let extra = |o: &str| o == "https://www.example";
        assert_eq!(check_origin(Some(OWN), Some("same-origin"), OWN, extra), Ok(()));
        assert_eq!(check_origin(Some(OWN), None, OWN, extra), Ok(()));
        assert_eq!(check_origin(None, Some("same-origin"), OWN, extra), Err(Refusal::NoOrigin));
        assert_eq!(check_origin(Some("https://evil.example"), None, OWN, extra), Err(Refusal::ForeignOrigin));
        assert_eq!(check_origin(Some("null"), Some("cross-site"), OWN, extra), Err(Refusal::ForeignOrigin));
        // A page of ours cannot be the source of a cross-site request: someone lies.
        assert_eq!(check_origin(Some(OWN), Some("cross-site"), OWN, extra), Err(Refusal::CrossSite));
        assert_eq!(check_origin(Some("https://www.example"), Some("same-site"), OWN, extra), Ok(()));
        // A form of a no-referrer page of ours; an opaque origin from anywhere else.
        assert_eq!(check_origin(Some("null"), Some("same-origin"), OWN, extra), Ok(()));
        assert_eq!(check_origin(Some("null"), Some("cross-site"), OWN, extra), Err(Refusal::ForeignOrigin));
        assert_eq!(check_origin(Some("null"), None, OWN, extra), Err(Refusal::ForeignOrigin));
    }

    #[test]
    fn tokens_belong_to_their_session() {
        let sessions = Sessions::new(b"secret", true);
        let (a, b) = (Sessions::new_session(), Sessions::new_session());
        assert_ne!(a, b);
        let token = sessions.token(&a);
        assert_eq!(sessions.check_token(Some(&a), Some(&token)), Ok(()));
        assert_eq!(sessions.check_token(Some(&b), Some(&token)), Err(Refusal::BadToken));
        assert_eq!(sessions.check_token(None, Some(&token)), Err(Refusal::BadToken));
        assert_eq!(sessions.check_token(Some(&a), None), Err(Refusal::BadToken));
        let other = Sessions::new(b"other secret", true);
        assert_eq!(other.check_token(Some(&a), Some(&token)), Err(Refusal::BadToken));
        assert!(sessions.session_cookie(&a).contains("HttpOnly; SameSite=Strict; Secure"));
    }

    #[test]
    fn admin_form_tokens_and_device_cookies_cannot_be_forged() {
        let sessions = Sessions::new(b"secret", false);
        let id = Sessions::new_session();
        let token = sessions.admin_token(&id);
        assert!(sessions.check_admin_token(&id, &token));
        assert!(!sessions.check_admin_token(&Sessions::new_session(), &token));
        assert_ne!(sessions.admin_fingerprint("one secret"), sessions.admin_fingerprint("another"));
        let set = sessions.device_cookie(1000);
        let value = cookie(Some(set.split(';').next().unwrap()), DEVICE_COOKIE).unwrap();
        let device = sessions.device(Some(value), 1001).unwrap();
        assert_eq!(device.len(), 24);
        assert_eq!(sessions.device(Some(value), 1000 + DEVICE_SECONDS), None, "expired");
        let forged = value.replacen(&(1000 + DEVICE_SECONDS).to_string(), "99999999999", 1);
        assert_eq!(sessions.device(Some(&forged), 1001), None);
        assert_eq!(Sessions::new(b"other", false).device(Some(value), 1001), None);
        assert!(sessions.admin_cookie(&id).contains("Path=/admin; HttpOnly; SameSite=Strict"));
    }

    #[test]
    fn reads_cookies() {
        let header = Some("a=1; tidings_session=abc; b=2");
        assert_eq!(cookie(header, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(header, "c"), None);
        assert_eq!(cookie(None, "a"), None);
    }
}
