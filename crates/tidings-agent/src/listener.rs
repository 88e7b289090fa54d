//! A user agent that stays subscribed: the I/O shell around [`crate::client`],
//! [`crate::receive`] and [`crate::state`].
//!
//! It connects (resuming its uaid), subscribes on first run, and hands every decrypted
//! message to the application through a channel, acking only when the application says the
//! message was handled; a message the application refuses is left unacked and the listener
//! reconnects, so the push service delivers it again. When the connection fails it comes
//! back with jittered exponential backoff. When the service has forgotten the uaid (its
//! `hello` answer names another), every subscription is registered again, with the same keys,
//! and the new endpoints are reported.

use crate::backoff::{self, Backoff};
use crate::client::{Client, ClientError};
use crate::connection::Connection;
use crate::receive::{self, Opened};
use crate::state::{State, StateError, StoredSubscription};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use tidings_crypto::webpush::ReceiverKeys;
use tidings_wire::ws::{ACK_DELIVERED, ServerMessage};
use tokio::sync::{mpsc, oneshot};

/// How the listener connects and subscribes.
#[derive(Debug, Clone)]
pub struct Options {
    /// The push service's WebSocket URL (`ws://` or `wss://`).
    pub server: String,
    /// Where the uaid, subscriptions and keys are kept.
    pub state_path: PathBuf,
    /// The applicationServerKey of the subscription made on first run (base64url).
    pub application_server_key: Option<String>,
    /// How often to send a keep-alive.
    pub ping_interval: Duration,
    /// CA certificates to trust besides the system's, for `wss://`.
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

/// What the listener tells the application.
#[derive(Debug)]
pub enum Event {
    /// Subscriptions with new endpoints (first run, or registered again after the service
    /// forgot this user agent): give them to senders.
    Subscribed(Vec<StoredSubscription>),
    /// Connected; `uaid` is the user agent's id at the service.
    Connected {
        /// The uaid.
        uaid: String,
    },
    /// The connection failed; the listener tries again after `retry_in`.
    Disconnected {
        /// Why.
        error: String,
        /// When it will try again.
        retry_in: Duration,
    },
    /// A message. Answer through `ack`: `true` acknowledges it, `false` (or dropping it)
    /// leaves it with the push service for redelivery.
    Message(Delivery),
    /// A message that did not decrypt; it was acked with code 101 and its bytes withheld.
    Undecryptable {
        /// The channel.
        channel_id: String,
        /// Why it did not decrypt.
        reason: String,
    },
}

/// A decrypted message, waiting for the application's verdict.
#[derive(Debug)]
pub struct Delivery {
    /// The subscription's channel id.
    pub channel_id: String,
    /// The message id at the push service.
    pub version: String,
    /// The plaintext.
    pub payload: Vec<u8>,
    /// When it arrived.
    pub received_at: SystemTime,
    /// Send `true` once handled, to ack it.
    pub ack: oneshot::Sender<bool>,
}

/// Why the listener stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The state file is unusable.
    #[error(transparent)]
    State(#[from] StateError),
    /// The state file belongs to another push service.
    #[error(
        "the state file's subscriptions live on {state}, not {given}: use another --state for another service"
    )]
    OtherServer {
        /// The server in the state file.
        state: String,
        /// The server given.
        given: String,
    },
    /// The push service refused a subscription.
    #[error("subscribing failed: {0}")]
    Subscribe(ClientError),
}

/// Why one connection ended.
enum Ended {
    /// Shut down on request.
    Shutdown,
    /// The application refused a message: reconnect so it comes again.
    Refused,
    /// The connection or the protocol failed.
    Failed(String),
}

/// Runs until `shutdown` completes (or the state becomes unusable).
pub async fn run(
    options: Options,
    events: mpsc::Sender<Event>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ListenError> {
    let mut state = match State::load(&options.state_path)? {
        Some(state) if state.server != options.server => {
            return Err(ListenError::OtherServer { state: state.server, given: options.server.clone() });
        }
        Some(state) => state,
        None => State::new(&options.server),
    };
    let mut backoff = Backoff::default();
    let mut after_refusal = false;
    tokio::pin!(shutdown);
    loop {
        let ended = tokio::select! {
            () = &mut shutdown => Ended::Shutdown,
            ended = session(&options, &mut state, &events, &mut backoff, after_refusal) => ended?,
        };
        after_refusal = matches!(ended, Ended::Refused);
        let error = match ended {
            Ended::Shutdown => return Ok(()),
            Ended::Refused => {
                "a message was not handled; reconnecting so that it is delivered again".to_owned()
            }
            Ended::Failed(error) => error,
        };
        let retry_in = backoff.next(backoff::random());
        let _ = events.send(Event::Disconnected { error, retry_in }).await;
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(retry_in) => {}
        }
    }
}

/// One connection, from hello until it fails or is refused. A successful hello resets the
/// backoff, unless the last connection ended because the application refused a message (so
/// that a message that always fails is retried less and less often).
async fn session(
    options: &Options,
    state: &mut State,
    events: &mpsc::Sender<Event>,
    backoff: &mut Backoff,
    after_refusal: bool,
) -> Result<Ended, ListenError> {
    let connection = match Connection::open_with(&options.server, None, &options.extra_roots).await {
        Ok(connection) => connection,
        Err(e) => return Ok(Ended::Failed(e.to_string())),
    };
    let mut client = match Client::hello(connection, state.uaid.as_deref()).await {
        Ok(client) => client,
        Err(e) => return Ok(Ended::Failed(e.to_string())),
    };
    if let Err(e) = subscribe(options, state, events, &mut client).await {
        return match e {
            ClientError::Status(_) => Err(ListenError::Subscribe(e)),
            other => Ok(Ended::Failed(other.to_string())),
        };
    }
    if !after_refusal {
        backoff.reset();
    }
    let _ = events.send(Event::Connected { uaid: client.uaid().to_owned() }).await;
    let keys: HashMap<String, ReceiverKeys> =
        state.subscriptions.iter().filter_map(|s| Some((s.channel_id.clone(), s.keys().ok()?))).collect();
    let mut ping = tokio::time::interval(options.ping_interval);
    ping.tick().await;
    loop {
        let frame = tokio::select! {
            frame = client.next() => frame,
            _ = ping.tick() => match client.ping().await {
                Ok(()) => continue,
                Err(e) => return Ok(Ended::Failed(e.to_string())),
            },
        };
        let (channel_id, version, data, headers) = match frame {
            Ok(ServerMessage::Notification { channel_id, version, data, headers }) => {
                (channel_id, version, data, headers)
            }
            Ok(_) => continue,
            Err(e) => return Ok(Ended::Failed(e.to_string())),
        };
        let opened = receive::open(data.as_deref(), headers.as_ref(), keys.get(&channel_id));
        if let Some(code) = opened.immediate_ack() {
            if let Opened::Undecryptable(reason) = opened {
                let _ = events.send(Event::Undecryptable { channel_id: channel_id.clone(), reason }).await;
            }
            if let Err(e) = client.ack_with(&channel_id, &version, code).await {
                return Ok(Ended::Failed(e.to_string()));
            }
            continue;
        }
        let Opened::Payload(payload) = opened else { continue };
        let Some(index) = state.subscriptions.iter().position(|s| s.channel_id == channel_id) else {
            continue;
        };
        if state.subscriptions[index].handled(&version) {
            // Its ack was lost: ack again, without handing it over twice.
            if let Err(e) = client.ack_with(&channel_id, &version, ACK_DELIVERED).await {
                return Ok(Ended::Failed(e.to_string()));
            }
            continue;
        }
        let (ack, verdict) = oneshot::channel();
        let delivery = Delivery {
            channel_id: channel_id.clone(),
            version: version.clone(),
            payload,
            received_at: SystemTime::now(),
            ack,
        };
        if events.send(Event::Message(delivery)).await.is_err() {
            return Ok(Ended::Shutdown);
        }
        if verdict.await.unwrap_or(false) {
            // Remembered before the ack, so that a redelivery after a lost ack is recognised.
            state.subscriptions[index].remember(&version);
            state.save(&options.state_path)?;
            if let Err(e) = client.ack_with(&channel_id, &version, ACK_DELIVERED).await {
                return Ok(Ended::Failed(e.to_string()));
            }
            backoff.reset();
        } else {
            // Reconnecting makes the push service deliver it again; the backoff keeps a
            // message that always fails from spinning.
            client.close().await;
            return Ok(Ended::Refused);
        }
    }
}

/// Makes sure the service knows our subscriptions: registers a new one on first run, and
/// every stored one again when the service answered hello with another uaid.
async fn subscribe(
    options: &Options,
    state: &mut State,
    events: &mpsc::Sender<Event>,
    client: &mut Client,
) -> Result<(), ClientError> {
    let forgotten = state.uaid.as_deref() != Some(client.uaid());
    let mut renewed = Vec::new();
    if forgotten {
        for subscription in &mut state.subscriptions {
            let Ok(channel) = subscription.channel() else { continue };
            subscription.endpoint =
                client.register(channel, subscription.application_server_key.as_deref()).await?;
            renewed.push(subscription.clone());
        }
        state.uaid = Some(client.uaid().to_owned());
    }
    if state.subscriptions.is_empty() {
        let keys = ReceiverKeys::generate().map_err(|e| ClientError::Unexpected(e.to_string()))?;
        let channel = random_channel();
        let endpoint = client.register(channel, options.application_server_key.as_deref()).await?;
        let subscription =
            StoredSubscription::new(channel, endpoint, &keys, options.application_server_key.clone());
        state.subscriptions.push(subscription.clone());
        renewed.push(subscription);
    }
    if forgotten || !renewed.is_empty() {
        state.save(&options.state_path).map_err(|e| ClientError::Unexpected(e.to_string()))?;
    }
    if !renewed.is_empty() {
        let _ = events.send(Event::Subscribed(renewed)).await;
    }
    Ok(())
}

fn random_channel() -> tidings_wire::ChannelId {
    let mut bytes = [0u8; 16];
    let _ = aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut bytes);
    // A version 4 UUID, as browsers make.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    tidings_wire::ChannelId(bytes)
}

/// Removes every subscription in the state file from the push service and from the file;
/// returns the channel ids removed.
pub async fn unsubscribe(options: &Options) -> Result<Vec<String>, ListenError> {
    let Some(mut state) = State::load(&options.state_path)? else { return Ok(Vec::new()) };
    let connection = Connection::open_with(&options.server, None, &options.extra_roots)
        .await
        .map_err(|e| ListenError::Subscribe(e.into()))?;
    let mut client =
        Client::hello(connection, state.uaid.as_deref()).await.map_err(ListenError::Subscribe)?;
    let mut removed = Vec::new();
    for subscription in std::mem::take(&mut state.subscriptions) {
        if let Ok(channel) = subscription.channel() {
            client.unregister(channel).await.map_err(ListenError::Subscribe)?;
            loop {
                match client.next().await.map_err(ListenError::Subscribe)? {
                    ServerMessage::Unregister { .. } => break,
                    _ => continue,
                }
            }
        }
        removed.push(subscription.channel_id);
    }
    state.save(&options.state_path)?;
    client.close().await;
    Ok(removed)
}
