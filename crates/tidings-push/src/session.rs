//! One user agent's conversation with the push service, without I/O.
//!
//! The WebSocket shell ([`crate::ws`]) feeds every text frame to [`Session::receive`],
//! which validates it against the protocol state and either answers at once
//! ([`Step::Reply`]), or hands the shell a [`Command`] that needs storage (hello, register,
//! unregister, ack), or says the connection must close ([`Violation`]). The shell performs
//! the command and asks the session for the reply frame, and what it means: who the user
//! agent is after `hello` ([`Session::identify`]: resumed, created, or refused because its
//! address created too many), how a `register` ended ([`Session::registration`]), and every
//! limit a connection can go past (pings, broadcasts followed), each refusal naming its limit
//! for the metrics ([`Violation::limit`]). Messages to deliver go through
//! [`Session::notification`], which remembers what is in flight so that a message reaching
//! the connection twice (from storage at hello, and live) is sent once.
//!
//! Broadcasts: the session also decides what the user agent hears of the broadcasts it lists
//! in `hello` and `broadcast_subscribe`, against a view of the node's current versions (a
//! [`broadcast::Table`], injected into each call). It answers with the current version of each
//! listed broadcast whose version the user agent does not have, lists the ids the node does
//! not know under `errors` without following them (as autopush does), follows the rest, and
//! when the table changes, [`Session::broadcast_news`] says what to tell the user agent.

use crate::broadcast::{self, Key, MAX_FOLLOWED, MAX_ID_LEN, MAX_VERSION_LEN};
use crate::limits::Refusal;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};
use tidings_crypto::b64;
use tidings_crypto::webpush::PublicKey;
use tidings_store::{Added, Message, MessageId, StoreError};
use tidings_wire::ws::{BROADCAST_NOT_FOUND, Broadcasts, ClientMessage, NotificationHeaders, ServerMessage};
use tidings_wire::{ChannelId, Uaid};

/// The most messages sent and not yet acknowledged on one connection; past it, delivery
/// pauses until acks arrive (they stay stored meanwhile).
pub const MAX_IN_FLIGHT: usize = 10_000;

/// How long an acknowledged id is remembered. A message reaches a connection twice when it
/// is read from storage (at hello, or after the mailbox overflowed) in the moment between its
/// save and its hand-over to the mailbox; that moment is milliseconds, this is generous.
pub const ACK_MEMORY: Duration = Duration::from_secs(10);

/// Client pings (`{}`) a connection may send at once; one more is allowed every
/// [`PING_REFILL`]. Browsers ping when they suspect the connection (minutes apart, or after
/// a network change); a client pinging in a loop is closed, as autopush does.
pub const PING_BURST: u32 = 4;
/// How often a connection earns another client ping.
pub const PING_REFILL: Duration = Duration::from_secs(30);
/// The close reason for a client that pings beyond its allowance.
pub const TOO_MANY_PINGS: &str = "too many pings";

/// What the shell must do for a frame that needs storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Resume `uaid` if it is known, else issue a new one; then [`Session::hello_reply`].
    Hello {
        /// The uaid the user agent sent, when it is one we could have issued.
        uaid: Option<Uaid>,
        /// The broadcasts it follows and the versions it has (checked: few and short).
        broadcasts: BTreeMap<String, String>,
    },
    /// Add the channel; then [`Session::register_reply`].
    Register {
        /// The channel.
        channel_id: ChannelId,
        /// The applicationServerKey, validated, for a restricted subscription.
        key: Option<PublicKey>,
    },
    /// Remove the channel; then [`Session::unregister_reply`].
    Unregister {
        /// The channel.
        channel_id: ChannelId,
    },
    /// Delete acknowledged messages (no reply).
    Ack(Vec<(ChannelId, MessageId)>),
}

/// How a `register` ended, for its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// The channel's endpoint (status 200).
    Endpoint(String),
    /// The user agent holds the most channels allowed (status 409: it must unregister one).
    TooMany,
    /// Storage failed (status 500: the user agent may try again).
    Failed,
}

impl Registration {
    /// The limit that refused it, for `tidings_refused_total{limit}`.
    pub fn limit(&self) -> Option<&'static str> {
        matches!(self, Self::TooMany).then_some("channels")
    }
}

/// The session's answer to one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this frame back.
    Reply(String),
    /// Do this, then send what the session says.
    Do(Command),
    /// Nothing to do (a nack, an ack for nothing).
    Nothing,
}

/// The connection must close with this code and reason: the user agent broke the protocol,
/// or went past a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Violation {
    /// The WebSocket close code.
    pub code: u16,
    /// Why, in words (also logged).
    pub reason: String,
    /// The limit that refused, for `tidings_refused_total{limit}` (none for a broken rule).
    pub limit: Option<&'static str>,
}

fn violation(reason: impl Into<String>) -> Violation {
    Violation { code: tidings_websocket::close_code::POLICY, reason: reason.into(), limit: None }
}

/// Who the user agent is, once its hello is decided ([`Session::identify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// The uaid it sent, known and not forgotten: its subscriptions and messages are there.
    Resumed(Uaid),
    /// A new uaid, to be stored before the reply (the user agent drops its old
    /// subscriptions, if it had any, and subscribes again).
    Created(Uaid),
}

/// The state of one connection's protocol.
#[derive(Debug, Default)]
pub struct Session {
    uaid: Option<Uaid>,
    /// Ids sent and not yet acknowledged on this connection.
    in_flight: HashSet<MessageId>,
    /// Ids acknowledged recently, and when, so that a late second copy is not sent again.
    recently_acked: HashMap<MessageId, Instant>,
    /// Client pings used from the burst.
    pings_used: u32,
    /// When the count of pings last fell (or the first ping). Apart from the count, so that
    /// the count packs beside the uaid and the session keeps room for `followed`.
    pings_since: Option<Instant>,
    /// The broadcasts followed. Boxed, so that a connection that follows none holds an empty
    /// pointer only, which fits in room the session had anyway: it costs nothing more.
    followed: Option<Box<Followed>>,
}

/// The broadcasts a connection follows, and how far it has seen the table's changes.
#[derive(Debug)]
struct Followed {
    keys: Vec<Key>,
    /// The [`broadcast::Table::changes`] the user agent has been told up to.
    seen: u64,
}

impl Session {
    /// A session waiting for `hello`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The uaid, once `hello` is done.
    pub fn uaid(&self) -> Option<Uaid> {
        self.uaid
    }

    /// Handles one text frame, received at `now`; `versions` are the node's broadcasts now.
    pub fn receive(
        &mut self,
        text: &str,
        now: Instant,
        versions: &broadcast::Table,
    ) -> Result<Step, Violation> {
        let message = ClientMessage::parse(text).map_err(|e| violation(e.to_string()))?;
        if message == ClientMessage::Ping {
            self.count_ping(now)?;
        }
        match (&self.uaid, message) {
            (None, ClientMessage::Hello { uaid, use_webpush, broadcasts }) => {
                if !use_webpush {
                    return Err(violation("hello without use_webpush: true (payloads are required)"));
                }
                check_listed(&broadcasts)?;
                Ok(Step::Do(Command::Hello { uaid, broadcasts }))
            }
            (None, ClientMessage::Ping) => Ok(Step::Reply(tidings_wire::ws::PING.to_owned())),
            (None, _) => Err(violation("the first frame must be hello")),
            (Some(_), ClientMessage::Hello { .. }) => Err(violation("hello sent twice")),
            (Some(_), ClientMessage::Ping) => Ok(Step::Reply(tidings_wire::ws::PING.to_owned())),
            (Some(_), ClientMessage::Register { channel_id, key }) => match key.as_deref().map(parse_key) {
                Some(None) => Ok(Step::Reply(
                    ServerMessage::Register {
                        channel_id: channel_id.to_string(),
                        status: 400,
                        push_endpoint: None,
                    }
                    .to_json(),
                )),
                key => Ok(Step::Do(Command::Register { channel_id, key: key.flatten() })),
            },
            (Some(_), ClientMessage::Unregister { channel_id }) => {
                Ok(Step::Do(Command::Unregister { channel_id }))
            }
            (Some(_), ClientMessage::Ack(updates)) => {
                let acked: Vec<_> = updates
                    .iter()
                    .filter_map(|u| Some((u.channel_id.parse().ok()?, parse_version(&u.version)?)))
                    .collect();
                Ok(if acked.is_empty() { Step::Nothing } else { Step::Do(Command::Ack(acked)) })
            }
            (Some(_), ClientMessage::Nack { .. }) => Ok(Step::Nothing),
            (Some(_), ClientMessage::BroadcastSubscribe(listed)) => {
                check_listed(&listed)?;
                let followed = self.followed.as_ref().map_or(&[][..], |f| &f.keys);
                let mut keys: Vec<Key> = listed.keys().filter_map(|id| versions.key(id)).collect();
                keys.retain(|key| !followed.contains(key));
                if followed.len() + keys.len() > MAX_FOLLOWED {
                    return Err(violation(format!("a connection follows at most {MAX_FOLLOWED} broadcasts")));
                }
                let answer = self.follow(&listed, versions);
                // Nothing to say is said with silence, as autopush does.
                Ok(if answer.is_empty() { Step::Nothing } else { Step::Reply(broadcast_frame(answer)) })
            }
        }
    }

    /// Follows the known broadcasts of `listed`; the answer: what changed since the user agent
    /// was last told (of those it already followed), the current version of each listed one
    /// whose version it does not have, and the listed ids the node does not know.
    fn follow(&mut self, listed: &BTreeMap<String, String>, versions: &broadcast::Table) -> Broadcasts {
        let mut answer = self.news(versions);
        for (id, known) in listed {
            let Some(key) = versions.key(id) else {
                answer.errors.insert(id.clone(), BROADCAST_NOT_FOUND.to_owned());
                continue;
            };
            let followed = self
                .followed
                .get_or_insert_with(|| Box::new(Followed { keys: Vec::new(), seen: versions.changes() }));
            if !followed.keys.contains(&key) {
                followed.keys.push(key);
            }
            if let Some((_, current)) = versions.get(key)
                && current != known
            {
                answer.versions.insert(id.clone(), current.to_owned());
            }
        }
        answer
    }

    /// The followed broadcasts that changed since the user agent was last told; from now on
    /// it counts as told.
    fn news(&mut self, versions: &broadcast::Table) -> Broadcasts {
        let mut news = Broadcasts::default();
        if let Some(followed) = &mut self.followed {
            for &key in &followed.keys {
                if versions.changed_since(key, followed.seen)
                    && let Some((id, version)) = versions.get(key)
                {
                    news.versions.insert(id.to_owned(), version.to_owned());
                }
            }
            followed.seen = versions.changes();
        }
        news
    }

    /// The frame that tells the user agent of new versions of the broadcasts it follows, if
    /// any changed since it was last told (the shell asks when the table has changed).
    pub fn broadcast_news(&mut self, versions: &broadcast::Table) -> Option<String> {
        let news = self.news(versions);
        (!news.is_empty()).then(|| broadcast_frame(news))
    }

    /// Whether the user agent follows any broadcast (only those are woken for changes).
    pub fn follows_broadcasts(&self) -> bool {
        self.followed.is_some()
    }

    /// Spends one client ping of the burst; refills one per [`PING_REFILL`] since.
    fn count_ping(&mut self, now: Instant) -> Result<(), Violation> {
        let since = self.pings_since.get_or_insert(now);
        let earned = now.saturating_duration_since(*since).as_secs() / PING_REFILL.as_secs();
        if earned > 0 {
            self.pings_used = self.pings_used.saturating_sub(u32::try_from(earned).unwrap_or(u32::MAX));
            *since = now;
        }
        if self.pings_used >= PING_BURST {
            return Err(Violation { limit: Some("client_pings"), ..violation(TOO_MANY_PINGS) });
        }
        self.pings_used += 1;
        Ok(())
    }

    /// Completes `hello`: the session now belongs to `uaid`, and follows the known ones of
    /// the `broadcasts` the hello listed, as of `versions`.
    pub fn hello_reply(
        &mut self,
        uaid: Uaid,
        broadcasts: &BTreeMap<String, String>,
        versions: &broadcast::Table,
    ) -> String {
        self.uaid = Some(uaid);
        let broadcasts = self.follow(broadcasts, versions);
        ServerMessage::Hello { uaid: uaid.to_string(), status: 200, use_webpush: true, broadcasts }.to_json()
    }

    /// Decides who a user agent is after `hello`: the uaid it sent if storage knows it
    /// (`known`), or else `fresh`, if its client may create one more user agent now
    /// (`allow_new`, asked only then: it counts what it allows). Refused, the connection
    /// closes with 1013 (try again later), which browsers take as "reconnect later".
    pub fn identify(
        &self,
        known: Option<Uaid>,
        allow_new: impl FnOnce() -> Result<(), Refusal>,
        fresh: Uaid,
    ) -> Result<Identity, Violation> {
        if let Some(uaid) = known {
            return Ok(Identity::Resumed(uaid));
        }
        match allow_new() {
            Ok(()) => Ok(Identity::Created(fresh)),
            Err(refusal) => Err(Violation {
                code: tidings_websocket::close_code::TRY_AGAIN_LATER,
                reason: "too many new user agents from this address; try again later".into(),
                limit: Some(refusal.label()),
            }),
        }
    }

    /// How a `register` ended, from what storage answered; `endpoint` makes the channel's
    /// endpoint once it is stored.
    pub fn registration(added: Result<Added, StoreError>, endpoint: impl FnOnce() -> String) -> Registration {
        match added {
            Ok(Added::Added) => Registration::Endpoint(endpoint()),
            Ok(Added::TooMany) => Registration::TooMany,
            // The user was removed under the connection, or storage failed: the user agent
            // may try again (on a new connection, it is told a new uaid).
            Ok(Added::NoUser) | Err(_) => Registration::Failed,
        }
    }

    /// The answer to `register`.
    pub fn register_reply(channel_id: ChannelId, outcome: Registration) -> String {
        let (status, endpoint) = match outcome {
            Registration::Endpoint(endpoint) => (200, Some(endpoint)),
            Registration::TooMany => (409, None),
            Registration::Failed => (500, None),
        };
        ServerMessage::Register { channel_id: channel_id.to_string(), status, push_endpoint: endpoint }
            .to_json()
    }

    /// The answer to `unregister`.
    pub fn unregister_reply(channel_id: ChannelId, ok: bool) -> String {
        ServerMessage::Unregister { channel_id: channel_id.to_string(), status: if ok { 200 } else { 500 } }
            .to_json()
    }

    /// The frame for a message, unless it is already in flight on this connection, was
    /// acked on it moments ago, or too many are in flight (then it stays stored and goes out
    /// later). `now` ages the memory of acked ids.
    pub fn notification(&mut self, message: &Message, now: Instant) -> Option<String> {
        self.forget_acks(now);
        if self.recently_acked.contains_key(&message.id) {
            return None;
        }
        if self.in_flight.len() >= MAX_IN_FLIGHT || !self.in_flight.insert(message.id) {
            return None;
        }
        let headers = message.encoding.as_ref().map(|encoding| NotificationHeaders {
            encoding: encoding.clone(),
            encryption: message.encryption.clone(),
            crypto_key: message.crypto_key.clone(),
        });
        let data = (!message.body.is_empty()).then(|| b64::encode(&message.body));
        Some(
            ServerMessage::Notification {
                channel_id: message.channel_id.to_string(),
                version: version(message.id),
                data,
                headers,
            }
            .to_json(),
        )
    }

    /// Forgets acknowledged messages, releasing the memory once nothing is in flight; their
    /// ids are remembered for [`ACK_MEMORY`].
    pub fn acked(&mut self, ids: impl IntoIterator<Item = MessageId>, now: Instant) {
        for id in ids {
            self.in_flight.remove(&id);
            self.recently_acked.insert(id, now);
        }
        if self.in_flight.is_empty() && self.in_flight.capacity() > 0 {
            self.in_flight = HashSet::new();
        }
        self.forget_acks(now);
    }

    fn forget_acks(&mut self, now: Instant) {
        if self.recently_acked.is_empty() {
            return;
        }
        self.recently_acked.retain(|_, at| now.duration_since(*at) < ACK_MEMORY);
        if self.recently_acked.is_empty() {
            self.recently_acked = HashMap::new();
        }
    }

    /// Whether delivery is paused until acks arrive.
    pub fn saturated(&self) -> bool {
        self.in_flight.len() >= MAX_IN_FLIGHT
    }
}

/// Refuses a frame that lists more broadcasts than a connection may follow, or an id or a
/// version longer than any the node keeps: no user agent sends those, and they would only make
/// the connection cost more.
fn check_listed(listed: &BTreeMap<String, String>) -> Result<(), Violation> {
    if listed.len() > MAX_FOLLOWED {
        return Err(violation(format!("a frame lists more than {MAX_FOLLOWED} broadcasts")));
    }
    if listed.iter().any(|(id, version)| id.len() > MAX_ID_LEN || version.len() > MAX_VERSION_LEN) {
        return Err(violation(format!(
            "broadcast ids are at most {MAX_ID_LEN} bytes and versions at most {MAX_VERSION_LEN}"
        )));
    }
    Ok(())
}

fn broadcast_frame(broadcasts: Broadcasts) -> String {
    ServerMessage::Broadcast { broadcasts }.to_json()
}

/// The `version` of a message: its id in hex.
pub fn version(id: MessageId) -> String {
    format!("{id:x}")
}

fn parse_version(version: &str) -> Option<MessageId> {
    if version.is_empty() || version.len() > 16 {
        return None;
    }
    MessageId::from_str_radix(version, 16).ok()
}

/// `register.key`: base64url (Firefox pads it) of a 65-byte P-256 point.
fn parse_key(key: &str) -> Option<PublicKey> {
    PublicKey::from_bytes(&b64::decode(key).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHID: &str = "28e6a170-10c3-4bfb-9cac-991e204ffc85";
    const KEY: &str =
        "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8=";

    fn now() -> Instant {
        Instant::now()
    }

    /// A frame received while the node knows no broadcast.
    fn receive(s: &mut Session, text: &str, at: Instant) -> Result<Step, Violation> {
        s.receive(text, at, &broadcast::Table::default())
    }

    fn ready() -> Session {
        let mut s = Session::new();
        let step =
            receive(&mut s, r#"{"messageType":"hello","broadcasts":{},"use_webpush":true}"#, now()).unwrap();
        assert_eq!(step, Step::Do(Command::Hello { uaid: None, broadcasts: BTreeMap::new() }));
        let reply = s.hello_reply(Uaid([1; 16]), &BTreeMap::new(), &broadcast::Table::default());
        assert!(
            reply.contains(r#""uaid":"01010101010101010101010101010101""#)
                && reply.contains(r#""use_webpush":true"#)
        );
        s
    }

    fn message(id: u64) -> Message {
        Message {
            id,
            channel_id: CHID.parse().unwrap(),
            expires_at: 0,
            topic: None,
            body: vec![1, 2, 3],
            encoding: Some("aes128gcm".into()),
            encryption: None,
            crypto_key: None,
        }
    }

    #[test]
    fn hello_first() {
        let mut s = Session::new();
        assert_eq!(receive(&mut s, "{}", now()).unwrap(), Step::Reply("{}".into()));
        assert!(
            receive(&mut s, &format!(r#"{{"messageType":"register","channelID":"{CHID}"}}"#), now()).is_err()
        );
        assert!(receive(&mut s, r#"{"messageType":"hello","use_webpush":false}"#, now()).is_err());
        assert!(receive(&mut s, "garbage", now()).is_err());
        let mut s = ready();
        assert!(receive(&mut s, r#"{"messageType":"hello","use_webpush":true}"#, now()).is_err());
    }

    #[test]
    fn register_with_and_without_key() {
        let mut s = ready();
        let step = receive(
            &mut s,
            &format!(r#"{{"messageType":"register","channelID":"{CHID}","key":"{KEY}"}}"#),
            now(),
        )
        .unwrap();
        let Step::Do(Command::Register { key: Some(key), .. }) = step else { panic!("{step:?}") };
        assert_eq!(b64::encode(key.as_bytes()), KEY.trim_end_matches('='));
        let step =
            receive(&mut s, &format!(r#"{{"messageType":"register","channelID":"{CHID}"}}"#), now()).unwrap();
        assert!(matches!(step, Step::Do(Command::Register { key: None, .. })));
        let bad = receive(
            &mut s,
            &format!(r#"{{"messageType":"register","channelID":"{CHID}","key":"AAAA"}}"#),
            now(),
        )
        .unwrap();
        assert_eq!(
            bad,
            Step::Reply(format!(r#"{{"messageType":"register","channelID":"{CHID}","status":400}}"#))
        );
        let reply =
            Session::register_reply(CHID.parse().unwrap(), Registration::Endpoint("http://x/push/t".into()));
        assert!(reply.contains(r#""status":200,"pushEndpoint":"http://x/push/t""#), "{reply}");
        let reply = Session::register_reply(CHID.parse().unwrap(), Registration::TooMany);
        assert_eq!(reply, format!(r#"{{"messageType":"register","channelID":"{CHID}","status":409}}"#));
    }

    #[test]
    fn notifications_are_deduplicated_until_acked() {
        let mut s = ready();
        let now = Instant::now();
        let frame = s.notification(&message(42), now).unwrap();
        assert!(frame.contains(r#""version":"2a""#) && frame.contains(r#""data":"AQID""#), "{frame}");
        assert_eq!(s.notification(&message(42), now), None);
        let step = receive(
            &mut s,
            &format!(
                r#"{{"messageType":"ack","updates":[{{"channelID":"{CHID}","version":"2a","code":100}}]}}"#
            ),
            now,
        )
        .unwrap();
        assert_eq!(step, Step::Do(Command::Ack(vec![(CHID.parse().unwrap(), 42)])));
        s.acked([42], now);
        // A late second copy (read from storage and handed over live) is not sent again...
        assert_eq!(s.notification(&message(42), now + Duration::from_millis(50)), None);
        // ...but the memory does not last.
        assert!(s.notification(&message(42), now + ACK_MEMORY).is_some());
        assert!(s.recently_acked.is_empty() && s.recently_acked.capacity() == 0);
        let junk =
            receive(&mut s, r#"{"messageType":"ack","updates":[{"channelID":"x","version":"zz"}]}"#, now)
                .unwrap();
        assert_eq!(junk, Step::Nothing);
    }

    #[test]
    fn hello_resumes_a_known_uaid_and_creates_one_only_when_allowed() {
        let s = Session::new();
        let (known, fresh) = (Uaid([1; 16]), Uaid([2; 16]));
        let never = || -> Result<(), Refusal> { panic!("a known uaid spends no allowance") };
        assert_eq!(s.identify(Some(known), never, fresh), Ok(Identity::Resumed(known)));
        assert_eq!(s.identify(None, || Ok(()), fresh), Ok(Identity::Created(fresh)));
        let refused = s.identify(None, || Err(Refusal::NewUsersPerAddress), fresh).unwrap_err();
        assert_eq!(
            (refused.code, refused.limit),
            (tidings_websocket::close_code::TRY_AGAIN_LATER, Some("new_users_per_address"))
        );
    }

    #[test]
    fn registration_follows_what_storage_answered() {
        let endpoint = || "http://x/push/t".to_owned();
        assert_eq!(Session::registration(Ok(Added::Added), endpoint), Registration::Endpoint(endpoint()));
        let too_many = Session::registration(Ok(Added::TooMany), || unreachable!("no endpoint"));
        assert_eq!((too_many.clone(), too_many.limit()), (Registration::TooMany, Some("channels")));
        for failed in [Ok(Added::NoUser), Err(StoreError("down".into()))] {
            let outcome = Session::registration(failed, || unreachable!("no endpoint"));
            assert_eq!((outcome.clone(), outcome.limit()), (Registration::Failed, None));
        }
    }

    #[test]
    fn client_pings_are_rate_limited() {
        let mut s = ready();
        let start = Instant::now();
        for _ in 0..PING_BURST {
            assert_eq!(receive(&mut s, "{}", start).unwrap(), Step::Reply("{}".into()));
        }
        assert!(
            receive(&mut s, "{}", start + Duration::from_secs(1)).is_err(),
            "a burst beyond the allowance"
        );
        let mut s = ready();
        for n in 0..20u32 {
            let at = start + PING_REFILL * n;
            assert_eq!(
                receive(&mut s, "{}", at).unwrap(),
                Step::Reply("{}".into()),
                "one per refill is fine"
            );
        }
    }

    #[test]
    fn empty_message_has_no_data_or_headers() {
        let mut s = ready();
        let mut m = message(1);
        m.body.clear();
        m.encoding = None;
        let frame = s.notification(&m, Instant::now()).unwrap();
        assert!(!frame.contains("data") && !frame.contains("headers"), "{frame}");
    }

    const MONITOR: &str = "remote-settings/monitor_changes";

    /// A node that knows two broadcasts.
    fn table() -> broadcast::Table {
        let mut table = broadcast::Table::default();
        table.set(MONITOR, r#""2""#).unwrap();
        table.set("kinto:123", "v1").unwrap();
        table
    }

    /// A session past a hello that listed `listed`, and the hello's reply as JSON.
    fn hello_with(listed: serde_json::Value, versions: &broadcast::Table) -> (Session, serde_json::Value) {
        let mut s = Session::new();
        let hello = serde_json::json!({"messageType": "hello", "use_webpush": true, "broadcasts": listed});
        let Step::Do(Command::Hello { broadcasts, .. }) =
            s.receive(&hello.to_string(), now(), versions).unwrap()
        else {
            panic!("hello needs storage")
        };
        let reply = s.hello_reply(Uaid([1; 16]), &broadcasts, versions);
        (s, serde_json::from_str(&reply).unwrap())
    }

    fn json(step: Step) -> serde_json::Value {
        let Step::Reply(frame) = step else { panic!("no reply: {step:?}") };
        serde_json::from_str(&frame).unwrap()
    }

    #[test]
    fn hello_answers_what_is_newer_and_what_is_unknown() {
        let mut versions = table();
        let listed = serde_json::json!({MONITOR: r#""1""#, "kinto:123": "v1", "nope": "x"});
        let (mut s, reply) = hello_with(listed, &versions);
        assert_eq!(
            reply["broadcasts"],
            serde_json::json!({MONITOR: r#""2""#, "errors": {"nope": "Broadcast not found"}}),
            "kinto:123 is current, so it is not mentioned"
        );
        assert!(s.follows_broadcasts());
        assert_eq!(s.broadcast_news(&versions), None, "nothing changed since");
        // A change of a followed broadcast is news, once.
        versions.set("kinto:123", "v2").unwrap();
        let news: serde_json::Value = serde_json::from_str(&s.broadcast_news(&versions).unwrap()).unwrap();
        assert_eq!(news, serde_json::json!({"messageType": "broadcast", "broadcasts": {"kinto:123": "v2"}}));
        assert_eq!(s.broadcast_news(&versions), None);
        // Setting the same version again is no change; other broadcasts are not followed, and
        // neither is an id that was unknown when listed, as autopush does.
        versions.set("kinto:123", "v2").unwrap();
        versions.set("other", "1").unwrap();
        versions.set("nope", "1").unwrap();
        assert_eq!(s.broadcast_news(&versions), None);
    }

    #[test]
    fn a_connection_that_follows_nothing_keeps_nothing() {
        let (s, reply) = hello_with(serde_json::json!({}), &table());
        assert_eq!(reply["broadcasts"], serde_json::json!({}));
        assert!(s.followed.is_none());
        let (s, reply) = hello_with(serde_json::json!({"nope": "1"}), &table());
        assert_eq!(reply["broadcasts"], serde_json::json!({"errors": {"nope": "Broadcast not found"}}));
        assert!(s.followed.is_none(), "unknown ids are not followed");
    }

    #[test]
    fn broadcast_subscribe_answers_and_follows() {
        let mut versions = table();
        let (mut s, _) = hello_with(serde_json::json!({}), &versions);
        let subscribe = |listed: serde_json::Value| {
            serde_json::json!({"messageType": "broadcast_subscribe", "broadcasts": listed}).to_string()
        };
        let step = s.receive(&subscribe(serde_json::json!({"kinto:123": "v0"})), now(), &versions).unwrap();
        assert_eq!(json(step)["broadcasts"], serde_json::json!({"kinto:123": "v1"}));
        // Nothing new to say: no answer, as autopush.
        let step = s.receive(&subscribe(serde_json::json!({"kinto:123": "v1"})), now(), &versions).unwrap();
        assert_eq!(step, Step::Nothing);
        let step = s.receive(&subscribe(serde_json::json!({"nope": "v1"})), now(), &versions).unwrap();
        assert_eq!(json(step)["broadcasts"], serde_json::json!({"errors": {"nope": "Broadcast not found"}}));
        // A change not yet told goes out with the next answer, so none is lost.
        versions.set("kinto:123", "v2").unwrap();
        let step = s.receive(&subscribe(serde_json::json!({MONITOR: r#""2""#})), now(), &versions).unwrap();
        assert_eq!(json(step)["broadcasts"], serde_json::json!({"kinto:123": "v2"}));
        assert_eq!(s.broadcast_news(&versions), None);
        versions.set(MONITOR, r#""3""#).unwrap();
        let news: serde_json::Value = serde_json::from_str(&s.broadcast_news(&versions).unwrap()).unwrap();
        assert_eq!(news["broadcasts"], serde_json::json!({MONITOR: r#""3""#}));
    }

    #[test]
    fn hostile_broadcast_lists_close_the_connection() {
        let mut versions = broadcast::Table::default();
        for n in 0..=MAX_FOLLOWED {
            versions.set(&format!("b{n}"), "1").unwrap();
        }
        let many: serde_json::Map<String, serde_json::Value> =
            (0..=MAX_FOLLOWED).map(|n| (format!("b{n}"), "0".into())).collect();
        let long_id = serde_json::json!({"x".repeat(MAX_ID_LEN + 1): "1"});
        let long_version = serde_json::json!({"b0": "1".repeat(MAX_VERSION_LEN + 1)});
        for listed in
            [serde_json::Value::Object(many.clone()), long_id, long_version, serde_json::json!({"b0": 1})]
        {
            let hello =
                serde_json::json!({"messageType": "hello", "use_webpush": true, "broadcasts": listed});
            assert!(Session::new().receive(&hello.to_string(), now(), &versions).is_err(), "{hello}");
            let (mut s, _) = hello_with(serde_json::json!({}), &versions);
            let subscribe = serde_json::json!({"messageType": "broadcast_subscribe", "broadcasts": listed});
            assert!(s.receive(&subscribe.to_string(), now(), &versions).is_err(), "{subscribe}");
        }
        // At most MAX_FOLLOWED in all, over several frames; listing again what is followed
        // does not count twice.
        let (first, rest): (Vec<_>, Vec<_>) = many.into_iter().partition(|(id, _)| id != "b0");
        let first: serde_json::Map<_, _> = first.into_iter().collect();
        let (mut s, _) = hello_with(serde_json::Value::Object(first.clone()), &versions);
        let again = serde_json::json!({"messageType": "broadcast_subscribe", "broadcasts": first});
        assert!(s.receive(&again.to_string(), now(), &versions).is_ok());
        let one_more = serde_json::json!({"messageType": "broadcast_subscribe", "broadcasts": serde_json::Map::from_iter(rest)});
        assert!(s.receive(&one_more.to_string(), now(), &versions).is_err());
    }
}
