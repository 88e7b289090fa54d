//! The push API application servers call: `POST <endpoint>` and `DELETE <message url>`.
//!
//! [`validate`] is the whole RFC 8030/8291/8292 rulebook as a pure function of the request
//! headers; [`push`] and [`cancel`] are the handlers around it and storage.

use crate::app::App;
use crate::limits::Refusal;
use crate::server::Peer;
use crate::token::{Endpoint, MessageRef, key_hash};
use crate::vapid_cache::VapidCache;
use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use tidings_crypto::ece::aesgcm;
use tidings_crypto::webpush::ContentEncoding;
use tidings_store::{Backend, Message, NodeEvent, Saved};
use tidings_wire::errno::Errno;
use tidings_wire::headers::parse_ttl;
use tidings_wire::{Topic, Urgency};

/// Seconds a sender should wait after a 429 or 503.
const RETRY_AFTER: &str = "10";

/// A refused request: the errno, what was wrong, and extra headers for the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// What kind of error (decides the status).
    pub errno: Errno,
    /// What was wrong, in words.
    pub message: String,
}

fn refuse(errno: Errno, message: impl Into<String>) -> ApiError {
    ApiError { errno, message: message.into() }
}

/// A push request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// The TTL that will be honoured (after the cap).
    pub ttl: u32,
    /// `Topic`, when given.
    pub topic: Option<Topic>,
    /// `Content-Encoding` of a non-empty body.
    pub encoding: Option<ContentEncoding>,
    /// `Encryption` (aesgcm), normalized for the user agent.
    pub encryption: Option<String>,
    /// `Crypto-Key` (aesgcm), normalized for the user agent.
    pub crypto_key: Option<String>,
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(refuse(Errno::InvalidHeader, format!("more than one {name} header")));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| refuse(Errno::InvalidHeader, format!("the {name} header is not ASCII")))
}

/// Checks a push request's headers, for a body of `body_len` bytes, sent to `endpoint` of
/// a service whose origin is `audience`, at `now` (seconds since the Unix epoch). VAPID
/// signatures are checked through `vapid` (which remembers tokens it has verified).
pub fn validate(
    headers: &HeaderMap,
    body_len: usize,
    endpoint: &Endpoint,
    audience: &str,
    max_ttl: u32,
    now: u64,
    vapid: &VapidCache,
) -> Result<Validated, ApiError> {
    // Authorization first: a sender whose credentials are wrong learns that before anything
    // about its message, as autopush answers and senders expect.
    let crypto_key = header_str(headers, "crypto-key")?;
    match (header_str(headers, "authorization")?, endpoint.key_hash) {
        (None, None) => {}
        (None, Some(_)) => {
            return Err(refuse(
                Errno::Unauthorized,
                "this subscription requires VAPID: send Authorization: vapid t=..., k=...",
            ));
        }
        (Some(authorization), restricted) => {
            let public_key = vapid
                .verify(authorization, crypto_key, audience, now)
                .map_err(|e| refuse(Errno::Unauthorized, format!("invalid VAPID credentials: {e}")))?;
            if restricted.is_some_and(|hash| hash != key_hash(&public_key)) {
                return Err(refuse(
                    Errno::KeyMismatch,
                    "the VAPID key is not the applicationServerKey this subscription was created with",
                ));
            }
        }
    }
    let ttl = header_str(headers, "ttl")?.ok_or_else(|| refuse(Errno::MissingTtl, "Missing TTL header"))?;
    let ttl = parse_ttl(ttl)
        .ok_or_else(|| refuse(Errno::MissingTtl, "TTL must be a non-negative integer number of seconds"))?;
    if let Some(urgency) = header_str(headers, "urgency")? {
        urgency.parse::<Urgency>().map_err(|e| refuse(Errno::InvalidHeader, e.to_string()))?;
    }
    let topic = header_str(headers, "topic")?
        .map(|t| t.parse::<Topic>().map_err(|e| refuse(Errno::InvalidHeader, format!("invalid Topic: {e}"))))
        .transpose()?;

    let (encoding, encryption, crypto_key) = if body_len == 0 {
        (None, None, None)
    } else {
        let value = header_str(headers, "content-encoding")?.ok_or_else(|| {
            refuse(Errno::InvalidHeader, "a body needs Content-Encoding: aes128gcm (or the legacy aesgcm)")
        })?;
        let encoding = ContentEncoding::parse(value)
            .ok_or_else(|| refuse(Errno::InvalidHeader, "Content-Encoding must be aes128gcm or aesgcm"))?;
        match encoding {
            ContentEncoding::Aes128gcm => (Some(encoding), None, None),
            ContentEncoding::Aesgcm => {
                let (encryption, crypto_key) = aesgcm_headers(headers, crypto_key)?;
                (Some(encoding), Some(encryption), Some(crypto_key))
            }
        }
    };

    Ok(Validated { ttl: ttl.min(max_ttl), topic, encoding, encryption, crypto_key })
}

/// The `Encryption` and `Crypto-Key` headers of an `aesgcm` message, normalized as user
/// agents' decoders need them (see [`aesgcm::normalize_header`]) and checked as normalized:
/// what is stored and forwarded is what passed.
fn aesgcm_headers(headers: &HeaderMap, crypto_key: Option<&str>) -> Result<(String, String), ApiError> {
    let encryption = header_str(headers, "encryption")?
        .ok_or_else(|| refuse(Errno::InvalidHeader, "aesgcm needs an Encryption header with a salt"))?;
    let encryption = aesgcm::normalize_header(encryption);
    aesgcm::EncryptionParams::parse(&encryption)
        .map_err(|e| refuse(Errno::InvalidHeader, format!("invalid Encryption header: {e}")))?;
    let crypto_key = aesgcm::normalize_header(crypto_key.unwrap_or_default());
    aesgcm::sender_key_from_crypto_key(&crypto_key)
        .map_err(|e| refuse(Errno::InvalidHeader, format!("aesgcm needs Crypto-Key: dh=...: {e}")))?;
    Ok((encryption, crypto_key))
}

impl<S: Backend> App<S> {
    /// The JSON error answer for `error`, counted in the metrics.
    pub fn error_response(&self, error: ApiError) -> Response {
        self.metrics.errors.get_or_create(&crate::metrics::ErrnoLabel { errno: error.errno.number() }).inc();
        let status = StatusCode::from_u16(error.errno.status()).expect("errno statuses are valid");
        let body = error.errno.body(error.message, format!("{}/errors", self.config.public_url));
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&body).unwrap_or_default(),
        )
            .into_response();
        match error.errno {
            Errno::Unauthorized => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("vapid"));
            }
            Errno::TooManyPending | Errno::Unavailable => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
            }
            // An unsubscribed endpoint never comes back: senders and caches may keep the
            // verdict for a day (as autopush says).
            Errno::Gone => {
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=86400"));
            }
            _ => {}
        }
        response
    }
}

/// `POST /push/{token}`: validate, store durably, then hand to the connection if online.
pub async fn push<S: Backend>(
    State(app): State<Arc<App<S>>>,
    Path(token): Path<String>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let start = Instant::now();
    let peer = peer.map_or(IpAddr::from([0, 0, 0, 0]), |Extension(Peer(peer))| peer.ip());
    let _slot = match app.limits.post(app.client(peer, &headers)) {
        Ok(slot) => slot,
        Err(refusal) => {
            app.metrics.refuse(refusal.label());
            let message = match refusal {
                Refusal::PostsPerAddress => {
                    "too many requests in progress from this address; try again later"
                }
                _ => "too many requests in progress; try again later",
            };
            return app.error_response(refuse(Errno::Unavailable, message));
        }
    };
    match accept(&app, &token, &headers, body).await {
        Ok(response) => {
            app.metrics.accepted.inc();
            app.metrics.accept_seconds.observe(start.elapsed().as_secs_f64());
            response
        }
        Err(error) => app.error_response(error),
    }
}

/// Reads a body of at most `max` bytes into a buffer of its own. Each frame is copied and
/// let go at once: a frame is a slice of hyper's read buffer and keeps all of it alive, so
/// collecting frames (as `BodyExt::collect` does) would let a sender trickling one byte at a
/// time hold a read buffer (8 KiB) per byte until the body timeout.
async fn read_body(body: Body, max: usize) -> Result<Vec<u8>, axum::BoxError> {
    let body = Limited::new(body, max);
    let expected = hyper::body::Body::size_hint(&body).exact().map_or(0, |n| n.min(max as u64) as usize);
    let mut body = std::pin::pin!(body);
    let mut bytes = Vec::with_capacity(expected);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

async fn accept<S: Backend>(
    app: &App<S>,
    token: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let endpoint = app
        .keys
        .open_endpoint(token)
        .map_err(|_| refuse(Errno::InvalidToken, "unknown or invalid endpoint"))?;
    let max = app.config.max_body;
    let too_large = || refuse(Errno::TooLarge, format!("the body is larger than {max} bytes"));
    let declared = header_str(headers, "content-length")?.and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(too_large());
    }
    let body = match tokio::time::timeout(app.config.body_timeout, read_body(body, max)).await {
        Ok(body) => body.map_err(|_| too_large())?,
        Err(_) => {
            let seconds = app.config.body_timeout.as_secs();
            return Err(refuse(Errno::SlowBody, format!("the body did not arrive within {seconds} s")));
        }
    };
    let now = crate::app::unix_now();
    let valid = validate(headers, body.len(), &endpoint, &app.audience, app.config.max_ttl, now, &app.vapid)?;
    let message = Message {
        id: 0,
        channel_id: endpoint.channel_id,
        expires_at: now + u64::from(valid.ttl),
        topic: valid.topic.map(|t| t.as_str().to_owned()),
        body,
        encoding: valid.encoding.map(|e| e.as_str().to_owned()),
        encryption: valid.encryption,
        crypto_key: valid.crypto_key,
    };
    let id = if valid.ttl == 0 {
        deliver_now_or_never(app, &endpoint, message).await?
    } else {
        store_and_deliver(app, &endpoint, message).await?
    };
    let location =
        app.keys.seal_message(&MessageRef { uaid: endpoint.uaid, channel_id: endpoint.channel_id, id });
    Ok((
        StatusCode::CREATED,
        [
            (header::LOCATION, format!("{}/m/{location}", app.config.public_url)),
            (http::HeaderName::from_static("ttl"), valid.ttl.to_string()),
        ],
    )
        .into_response())
}

fn unavailable(e: tidings_store::StoreError) -> ApiError {
    tracing::warn!(error = %e, "storage refused a message");
    refuse(Errno::Unavailable, "storage is unavailable; try again later")
}

/// Stores a message durably, then hands it to its user agent if connected; its id.
async fn store_and_deliver<S: Backend>(
    app: &App<S>,
    endpoint: &Endpoint,
    message: Message,
) -> Result<u64, ApiError> {
    let (uaid, max_pending, now) = (endpoint.uaid, app.config.max_pending, crate::app::unix_now());
    let id = match app.store.save_message(uaid, message.clone(), endpoint.key_hash, max_pending, now).await {
        Ok(Saved::Stored(id) | Saved::Replaced { id, .. }) => id,
        // A retry of a message whose answer the sender never got: answered as the first
        // time. The first copy is handed over again if still pending (it may have been
        // stored just before its node died, with nobody told); a connection that has it
        // already sends it once, as for any second copy.
        Ok(Saved::Repeated { id, pending }) => {
            app.metrics.repeated.inc();
            if pending {
                hand_over(app, uaid, Message { id, ..message }).await;
            }
            return Ok(id);
        }
        Ok(Saved::Full) => {
            return Err(refuse(
                Errno::TooManyPending,
                format!("the subscription already holds {max_pending} undelivered messages"),
            ));
        }
        Ok(Saved::NoChannel) => return Err(refuse(Errno::Gone, "the subscription has been removed")),
        Err(e) => return Err(unavailable(e)),
    };
    if !hand_over(app, uaid, Message { id, ..message }).await {
        app.metrics.stored.inc();
    }
    Ok(id)
}

/// A message with TTL 0: delivered if its user agent is connected now (here or on another
/// node), otherwise dropped, and never written to storage (RFC 8030 section 5.2: the push
/// service may drop it at once). Its id is drawn at random above every stored id, so it
/// cannot collide with one, and its ack deletes nothing.
async fn deliver_now_or_never<S: Backend>(
    app: &App<S>,
    endpoint: &Endpoint,
    message: Message,
) -> Result<u64, ApiError> {
    match app.store.channel(endpoint.uaid, endpoint.channel_id).await {
        Ok(Some(channel)) if channel.key_hash == endpoint.key_hash => {}
        Ok(_) => return Err(refuse(Errno::Gone, "the subscription has been removed")),
        Err(e) => return Err(unavailable(e)),
    }
    let id = transient_id();
    if !hand_over(app, endpoint.uaid, Message { id, ..message }).await {
        app.metrics.dropped.inc();
    }
    Ok(id)
}

/// An id for a message that is never stored: the top bit set (stored ids count up from 1).
fn transient_id() -> u64 {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut bytes = [0; 8];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes).expect("system random source");
    u64::from_be_bytes(bytes) | 1 << 63
}

/// Hands a message to its user agent's connection, on this node or (told through the
/// bus) on another; whether a connection took it.
async fn hand_over<S: Backend>(app: &App<S>, uaid: tidings_wire::Uaid, message: Message) -> bool {
    let Some(message) = app.registry.deliver(uaid, message) else { return true };
    match app.store.node(uaid).await {
        Ok(Some(node)) if node != app.config.node_id => {
            match app.store.publish(&node, NodeEvent::Deliver { uaid, message }).await {
                Ok(true) => true,
                // Nobody heard: that node died with the connection, so the route is stale.
                Ok(false) => {
                    let _ = app.store.clear_node(uaid, &node).await;
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not tell the node holding the connection");
                    false
                }
            }
        }
        _ => false,
    }
}

/// `DELETE /m/{token}`: cancels a pending message.
pub async fn cancel<S: Backend>(State(app): State<Arc<App<S>>>, Path(token): Path<String>) -> Response {
    let Ok(message) = app.keys.open_message(&token) else {
        return app.error_response(refuse(Errno::InvalidToken, "unknown or invalid message URL"));
    };
    match app.store.delete_message(message.uaid, message.channel_id, message.id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => {
            app.error_response(refuse(Errno::NoMessage, "no such message: delivered, expired or cancelled"))
        }
        Err(_) => app.error_response(refuse(Errno::Unavailable, "storage is unavailable; try again later")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings_crypto::vapid::{VapidKey, VapidSigner};
    use tidings_wire::{ChannelId, Uaid};

    const AUD: &str = "http://127.0.0.1:8080";
    const NOW: u64 = 1_700_000_000;

    /// A body whose frames arrive one at a time, as from a slow sender.
    struct Trickle(tokio::sync::mpsc::Receiver<bytes::Bytes>);

    impl hyper::body::Body for Trickle {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|data| data.map(|data| Ok(hyper::body::Frame::data(data))))
        }
    }

    #[tokio::test]
    async fn a_trickled_body_keeps_no_frame_while_it_waits() {
        // Frames are slices of one read buffer, as hyper gives them.
        let buffer = bytes::Bytes::from(vec![7u8; 8192]);
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let reading = tokio::spawn(read_body(Body::new(Trickle(rx)), 4096));
        tx.send(buffer.slice(0..1)).await.unwrap();
        tx.send(buffer.slice(1..2)).await.unwrap();
        // Once this is in the channel, both slices have been taken.
        tx.send(bytes::Bytes::from_static(b"x")).await.unwrap();
        tokio::task::yield_now().await;
        assert!(buffer.is_unique(), "the read buffer is let go while the body waits for more");
        drop(tx);
        assert_eq!(reading.await.unwrap().unwrap(), [7, 7, b'x']);

        let (tx, rx) = tokio::sync::mpsc::channel(4);
        for _ in 0..3 {
            tx.send(bytes::Bytes::from(vec![0u8; 2000])).await.unwrap();
        }
        drop(tx);
        assert!(read_body(Body::new(Trickle(rx)), 4096).await.is_err(), "beyond the limit");
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn open() -> Endpoint {
        Endpoint { uaid: Uaid([1; 16]), channel_id: ChannelId([2; 16]), key_hash: None }
    }

    fn check(h: &[(&'static str, &str)], len: usize, e: &Endpoint) -> Result<Validated, ApiError> {
        validate(&headers(h), len, e, AUD, 2_592_000, NOW, &VapidCache::default())
    }

    #[test]
    fn header_rules() {
        let enc = ("content-encoding", "aes128gcm");
        assert_eq!(check(&[("ttl", "60"), enc], 10, &open()).unwrap().ttl, 60);
        assert_eq!(check(&[("ttl", "99999999")], 0, &open()).unwrap().ttl, 2_592_000);
        assert_eq!(check(&[enc], 10, &open()).unwrap_err().errno, Errno::MissingTtl);
        for bad in ["-1", "1.5", "soon", ""] {
            assert_eq!(
                check(&[("ttl", bad), enc], 10, &open()).unwrap_err().errno,
                Errno::MissingTtl,
                "{bad}"
            );
        }
        assert_eq!(check(&[("ttl", "1"), ("ttl", "2")], 0, &open()).unwrap_err().errno, Errno::InvalidHeader);
        assert_eq!(
            check(&[("ttl", "1"), ("urgency", "urgent")], 0, &open()).unwrap_err().errno,
            Errno::InvalidHeader
        );
        assert_eq!(
            check(&[("ttl", "1"), ("urgency", "low"), ("urgency", "high")], 0, &open()).unwrap_err().errno,
            Errno::InvalidHeader
        );
        assert!(check(&[("ttl", "1"), ("urgency", "very-low")], 0, &open()).is_ok());
        let long = "a".repeat(33);
        assert_eq!(
            check(&[("ttl", "1"), ("topic", &long)], 0, &open()).unwrap_err().errno,
            Errno::InvalidHeader
        );
        assert_eq!(check(&[("ttl", "1")], 10, &open()).unwrap_err().errno, Errno::InvalidHeader);
        assert_eq!(
            check(&[("ttl", "1"), ("content-encoding", "gzip")], 10, &open()).unwrap_err().errno,
            Errno::InvalidHeader
        );
        assert_eq!(
            check(&[("ttl", "1"), ("content-encoding", "aesgcm")], 10, &open()).unwrap_err().errno,
            Errno::InvalidHeader
        );
        let aesgcm =
            [("ttl", "1"), ("content-encoding", "aesgcm"), ("encryption", "salt=AAAAAAAAAAAAAAAAAAAAAA")];
        assert_eq!(check(&aesgcm, 10, &open()).unwrap_err().errno, Errno::InvalidHeader, "no Crypto-Key dh");
        let dh = "dh=BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";
        let ok = check(&[aesgcm[0], aesgcm[1], aesgcm[2], ("crypto-key", dh)], 10, &open()).unwrap();
        assert_eq!((ok.encryption.is_some(), ok.crypto_key.as_deref()), (true, Some(dh)));
        // Quoted and padded values are stored unquoted and unpadded, other parameters kept.
        let padded = [
            ("encryption", r#"salt="AAAAAAAAAAAAAAAAAAAAAA==";rs=4096"#),
            ("crypto-key", &format!(r#"dh="{}=";p256ecdsa=BBBB="#, &dh[3..])),
        ];
        let ok = check(&[aesgcm[0], aesgcm[1], padded[0], padded[1]], 10, &open()).unwrap();
        assert_eq!(ok.encryption.as_deref(), Some("salt=AAAAAAAAAAAAAAAAAAAAAA;rs=4096"));
        assert_eq!(ok.crypto_key, Some(format!("{dh};p256ecdsa=BBBB")));
    }

    #[test]
    fn vapid_rules() {
        let signer = VapidSigner::new(VapidKey::generate().unwrap(), Some("mailto:ops@example.com".into()));
        let other = VapidSigner::new(VapidKey::generate().unwrap(), None);
        let restricted = Endpoint { key_hash: Some(key_hash(signer.key().public_key())), ..open() };
        let auth = signer.token(AUD, NOW).vapid_authorization.to_string();
        assert!(check(&[("ttl", "1"), ("authorization", &auth)], 0, &restricted).is_ok());
        assert_eq!(check(&[("ttl", "1")], 0, &restricted).unwrap_err().errno, Errno::Unauthorized);
        let wrong_key = other.token(AUD, NOW).vapid_authorization.to_string();
        assert_eq!(
            check(&[("ttl", "1"), ("authorization", &wrong_key)], 0, &restricted).unwrap_err().errno,
            Errno::KeyMismatch
        );
        let wrong_aud = signer.token("https://elsewhere.example", NOW).vapid_authorization.to_string();
        assert_eq!(
            check(&[("ttl", "1"), ("authorization", &wrong_aud)], 0, &restricted).unwrap_err().errno,
            Errno::Unauthorized
        );
        // A fresh signer: the first one's cache would hand back its still-valid token.
        let old = VapidSigner::new(
            VapidKey::from_base64(&tidings_crypto::b64::encode(&signer.key().private_key_raw()), None)
                .unwrap(),
            None,
        );
        let expired = old.token(AUD, NOW - 13 * 3600).vapid_authorization.to_string();
        assert_eq!(
            check(&[("ttl", "1"), ("authorization", &expired)], 0, &restricted).unwrap_err().errno,
            Errno::Unauthorized
        );
        // An unrestricted subscription accepts any valid token, and checks it when sent.
        assert!(check(&[("ttl", "1"), ("authorization", &wrong_key)], 0, &open()).is_ok());
        assert_eq!(
            check(&[("ttl", "1"), ("authorization", "vapid t=x")], 0, &open()).unwrap_err().errno,
            Errno::Unauthorized
        );
    }
}
