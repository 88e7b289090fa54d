//! The WebSocket shell: drives a [`Session`] over a socket.
//!
//! Memory is the design constraint: a push service holds many thousands of connections
//! that are silent for hours. While a connection waits it holds no buffer: it waits for
//! readiness ([`Transport::readable`]), then reads into a scratch buffer on the stack, feeds
//! the bytes to the [`Decoder`] (which keeps only an incomplete frame's tail), and drops
//! the scratch before the next wait. Outgoing frames are written at once with a deadline; a
//! user agent that does not read is disconnected (its messages stay stored), so a slow
//! reader can never make the server buffer without bound.

use crate::app::{App, unix_now};
use crate::limits::Slot;
use crate::registry::{Delivery, Mailbox};
use crate::session::{Command, Identity, Session, Step, Violation};
use crate::token::{Endpoint, key_hash};
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tidings_store::{Backend, Channel, Message, NodeEvent};
use tidings_websocket::io::Transport;
use tidings_websocket::{Decoder, Event, Opcode, Role, close_code, encode, encode_close};
use tidings_wire::Uaid;
use tidings_wire::ws::MAX_CLIENT_FRAME;

/// Stored messages read per storage round trip when a user agent comes back.
const PAGE: usize = 100;
/// The kernel send buffer of a WebSocket. Linux grows it up to megabytes by default; a
/// fixed size bounds the kernel memory each connection can pin and makes a user agent that
/// does not read show up as a stalled write (then [`crate::config::Config::write_timeout`]
/// disconnects it) instead of as megabytes of buffered notifications.
pub const SEND_BUFFER: usize = 64 * 1024;
/// Close code for a connection replaced by a newer one with the same uaid.
const CLOSE_REPLACED: u16 = 4000;

/// Something the user agent sent, owned so that storage can be awaited while handling it.
enum Incoming {
    Text(String),
    Ping(Vec<u8>),
    Binary,
    Close,
}

/// Why a connection ended (logged at debug level).
#[derive(Debug)]
enum End {
    /// The user agent closed or hung up.
    Peer,
    /// We closed it, with this code and reason.
    Closed(u16, String),
    /// The socket failed.
    Io(#[expect(dead_code, reason = "read through Debug, in the connection-ended log line")] io::Error),
}

impl From<io::Error> for End {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Serves one upgraded connection until it ends. `pre_read` holds bytes that arrived with
/// the upgrade request, if any; `slot` is its place in the node's connection count.
pub async fn serve<S: Backend, T: Transport>(app: Arc<App<S>>, transport: T, pre_read: Vec<u8>, slot: Slot) {
    app.metrics.connections.inc();
    let mut connection = Connection {
        app: &app,
        transport,
        decoder: Decoder::new(Role::Server, MAX_CLIENT_FRAME),
        session: Session::new(),
        mailbox: None,
        refetch: false,
        slot,
    };
    let end = connection.run(pre_read).await;
    tracing::debug!(?end, uaid = ?connection.session.uaid(), "connection ended");
    if let (Some(uaid), Some(mailbox)) = (connection.session.uaid(), connection.mailbox.take()) {
        app.registry.disconnect(uaid, &mailbox);
        if !app.registry.is_connected(uaid) {
            let _ = app.store.clear_node(uaid, &app.config.node_id).await;
        }
        app.metrics.online.dec();
    }
    app.metrics.connections.dec();
}

struct Connection<'a, S, T> {
    app: &'a App<S>,
    transport: T,
    decoder: Decoder,
    session: Session,
    mailbox: Option<Arc<Mailbox>>,
    /// Messages were left in storage (mailbox overflow, or too many in flight): read again.
    refetch: bool,
    /// Given back when the connection ends; counts the new user agents of its client.
    slot: Slot,
}

impl<S: Backend, T: Transport> Connection<'_, S, T> {
    async fn run(&mut self, pre_read: Vec<u8>) -> End {
        match self.converse(pre_read).await {
            Ok(()) => End::Peer,
            Err(End::Closed(code, reason)) => {
                let mut frame = Vec::new();
                encode_close(code, &reason, None, &mut frame);
                let _ = tokio::time::timeout(Duration::from_secs(1), self.transport.write_all(&frame)).await;
                End::Closed(code, reason)
            }
            Err(end) => end,
        }
    }

    async fn converse(&mut self, mut pre_read: Vec<u8>) -> Result<(), End> {
        let mut pending = self.decode(&mut pre_read)?;
        drop(pre_read);
        // Hello first, within the deadline.
        let deadline = tokio::time::Instant::now() + self.app.config.hello_timeout;
        while self.session.uaid().is_none() {
            if pending.is_empty() {
                pending = match tokio::time::timeout_at(deadline, self.next()).await {
                    Ok(events) => events?,
                    Err(_) => return Err(End::Closed(close_code::POLICY, "no hello in time".into())),
                };
            }
            for event in std::mem::take(&mut pending) {
                if !Box::pin(self.handle(event)).await? {
                    return Ok(());
                }
            }
        }
        Box::pin(self.deliver_stored()).await?;
        let mailbox = self.mailbox.clone().expect("hello registered a mailbox");
        // What the connection waits on while idle is all this loop keeps: handling frames
        // and deliveries awaits storage and writes, whose larger states are boxed, so they
        // take memory only while they run.
        loop {
            tokio::select! {
                ready = self.transport.readable() => {
                    ready?;
                    for event in self.read_available()? {
                        if !Box::pin(self.handle(event)).await? {
                            return Ok(());
                        }
                    }
                }
                () = mailbox.wait() => Box::pin(self.deliver_mailbox(mailbox.take())).await?,
            }
            if self.refetch && !self.session.saturated() {
                Box::pin(self.deliver_stored()).await?;
            }
        }
    }

    /// Waits for the next events from the user agent.
    async fn next(&mut self) -> Result<Vec<Incoming>, End> {
        loop {
            self.transport.readable().await?;
            let events = self.read_available()?;
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }

    /// Reads and decodes whatever is available now. The scratch buffer lives on the stack
    /// for the duration of this (synchronous) call only.
    fn read_available(&mut self) -> Result<Vec<Incoming>, End> {
        let mut scratch = [0u8; 8192];
        let mut events = Vec::new();
        loop {
            match self.transport.try_read(&mut scratch) {
                Ok(0) => {
                    if events.is_empty() {
                        return Err(End::Peer);
                    }
                    events.push(Incoming::Close);
                    return Ok(events);
                }
                Ok(n) => {
                    events.extend(self.decode(&mut scratch[..n])?);
                    if n < scratch.len() {
                        return Ok(events);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(events),
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn decode(&mut self, bytes: &mut [u8]) -> Result<Vec<Incoming>, End> {
        let mut events = Vec::new();
        self.decoder
            .feed(bytes, |event| {
                events.push(match event {
                    Event::Text(text) => Incoming::Text(text.to_owned()),
                    Event::Ping(payload) => Incoming::Ping(payload.to_vec()),
                    Event::Pong(_) => return,
                    Event::Binary(_) => Incoming::Binary,
                    Event::Close(..) => Incoming::Close,
                })
            })
            .map_err(|e| End::Closed(e.close_code(), e.to_string()))?;
        Ok(events)
    }

    /// Handles one event; `false` when the user agent closed.
    async fn handle(&mut self, event: Incoming) -> Result<bool, End> {
        match event {
            Incoming::Text(text) => match self.receive(&text) {
                Ok(Step::Reply(frame)) => self.send(&[frame]).await?,
                Ok(Step::Do(command)) => self.execute(command).await?,
                Ok(Step::Nothing) => {}
                Err(violation) => return Err(self.closing(violation)),
            },
            Incoming::Ping(payload) => self.write_frame(Opcode::Pong, &payload).await?,
            Incoming::Binary => {
                return Err(End::Closed(close_code::UNSUPPORTED, "binary frames are not accepted".into()));
            }
            Incoming::Close => {
                let mut frame = Vec::new();
                encode_close(close_code::NORMAL, "", None, &mut frame);
                let _ = tokio::time::timeout(Duration::from_secs(1), self.transport.write_all(&frame)).await;
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Hands a frame to the session with the node's broadcast versions, and marks the
    /// connection as a follower of broadcasts if it now is one, while the versions are still
    /// held (so that no change slips between what the session compared and the marking).
    fn receive(&mut self, text: &str) -> Result<Step, crate::session::Violation> {
        let versions = self.app.versions();
        let step = self.session.receive(text, std::time::Instant::now(), &versions);
        self.mark_follower();
        step
    }

    fn mark_follower(&self) {
        if self.session.follows_broadcasts()
            && let Some(mailbox) = &self.mailbox
        {
            mailbox.follow_broadcasts();
        }
    }

    async fn execute(&mut self, command: Command) -> Result<(), End> {
        let app = self.app;
        let unavailable = |_| End::Closed(close_code::TRY_AGAIN_LATER, "storage unavailable".into());
        match command {
            Command::Hello { uaid, broadcasts } => {
                let forget_after = app.config.forget_idle_after.as_secs();
                let known = match uaid {
                    Some(uaid) => app
                        .store
                        .touch_user(uaid, unix_now(), forget_after)
                        .await
                        .map_err(unavailable)?
                        .then_some(uaid),
                    None => None,
                };
                let slot = &self.slot;
                let identity = self
                    .session
                    .identify(known, || slot.new_user(std::time::Instant::now()), new_uaid())
                    .map_err(|violation| self.closing(violation))?;
                let uaid = match identity {
                    Identity::Resumed(uaid) => uaid,
                    Identity::Created(uaid) => {
                        app.store.add_user(uaid, unix_now(), forget_after).await.map_err(unavailable)?;
                        uaid
                    }
                };
                self.mailbox = Some(app.registry.connect(uaid));
                app.metrics.online.inc();
                // One connection per uaid across nodes: the newest wins, the older is told to close.
                if let Ok(Some(previous)) = app.store.node(uaid).await
                    && previous != app.config.node_id
                    && let Err(e) = app.store.publish(&previous, NodeEvent::Disconnect { uaid }).await
                {
                    tracing::warn!(error = %e, "could not tell the node of an older connection");
                }
                if let Err(e) = app.store.set_node(uaid, &app.config.node_id).await {
                    tracing::warn!(error = %e, "could not record the connection's node");
                }
                let reply = {
                    let versions = app.versions();
                    let reply = self.session.hello_reply(uaid, &broadcasts, &versions);
                    self.mark_follower();
                    reply
                };
                self.send(&[reply]).await
            }
            Command::Register { channel_id, key } => {
                let uaid = self.uaid();
                let key_hash = key.map(|k| key_hash(k.as_bytes()));
                let channel = Channel { key_hash };
                let added = app.store.add_channel(uaid, channel_id, channel, app.config.max_channels).await;
                let outcome = Session::registration(added, || {
                    let token = app.keys.seal_endpoint(&Endpoint { uaid, channel_id, key_hash });
                    format!("{}/push/{token}", app.config.public_url)
                });
                if let Some(limit) = outcome.limit() {
                    app.metrics.refuse(limit);
                }
                self.send(&[Session::register_reply(channel_id, outcome)]).await
            }
            Command::Unregister { channel_id } => {
                let ok = app.store.remove_channel(self.uaid(), channel_id).await.is_ok();
                self.send(&[Session::unregister_reply(channel_id, ok)]).await
            }
            Command::Ack(acked) => {
                let uaid = self.uaid();
                for (channel_id, id) in &acked {
                    // If storage is down the message stays and comes again on the next
                    // connection (the user agent recognises it); the connection stays up.
                    match app.store.delete_message(uaid, *channel_id, *id).await {
                        Ok(true) => {
                            app.metrics.acked.inc();
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "could not delete an acknowledged message"),
                    }
                }
                self.session.acked(acked.into_iter().map(|(_, id)| id), std::time::Instant::now());
                Ok(())
            }
        }
    }

    /// Ends the connection for a violation, counting the limit that refused, if one did.
    fn closing(&self, violation: Violation) -> End {
        if let Some(limit) = violation.limit {
            self.app.metrics.refuse(limit);
        }
        End::Closed(violation.code, violation.reason)
    }

    fn uaid(&self) -> Uaid {
        self.session.uaid().expect("commands other than hello come after hello")
    }

    /// Sends every stored, unexpired message the user agent has not been sent yet, in order.
    async fn deliver_stored(&mut self) -> Result<(), End> {
        self.refetch = false;
        let uaid = self.uaid();
        let mut after = None;
        loop {
            let page = self
                .app
                .store
                .messages(uaid, after, PAGE, unix_now())
                .await
                .map_err(|_| End::Closed(close_code::TRY_AGAIN_LATER, "storage unavailable".into()))?;
            after = page.last().map(|m| m.id);
            let frames = self.frames(page.iter());
            self.send(&frames).await?;
            if page.len() < PAGE || self.refetch {
                return Ok(());
            }
        }
    }

    async fn deliver_mailbox(&mut self, delivery: Delivery) -> Result<(), End> {
        if delivery.going_away {
            return Err(End::Closed(close_code::GOING_AWAY, "the service is restarting".into()));
        }
        if delivery.replaced {
            return Err(End::Closed(CLOSE_REPLACED, "replaced by a newer connection".into()));
        }
        let mut frames = Vec::new();
        if delivery.broadcasts
            && let Some(news) = self.session.broadcast_news(&self.app.versions())
        {
            self.app.metrics.broadcasts_sent.inc();
            frames.push(news);
        }
        frames.extend(self.frames(delivery.messages.iter().map(|(m, _)| m)));
        self.send(&frames).await?;
        for (_, handed_over) in &delivery.messages {
            self.app.metrics.delivery_seconds.observe(handed_over.elapsed().as_secs_f64());
        }
        if delivery.overflowed {
            self.refetch = true;
        }
        Ok(())
    }

    /// Notification frames for messages not yet in flight; flags a refetch when some had
    /// to wait because too many are in flight.
    fn frames<'m>(&mut self, messages: impl Iterator<Item = &'m Message>) -> Vec<String> {
        let mut frames = Vec::new();
        let now = std::time::Instant::now();
        for message in messages {
            match self.session.notification(message, now) {
                Some(frame) => frames.push(frame),
                None if self.session.saturated() => {
                    self.refetch = true;
                    break;
                }
                None => {}
            }
        }
        self.app.metrics.delivered.inc_by(frames.len() as u64);
        frames
    }

    async fn send(&mut self, texts: &[String]) -> Result<(), End> {
        if texts.is_empty() {
            return Ok(());
        }
        let mut out = Vec::with_capacity(texts.iter().map(|t| t.len() + 4).sum());
        for text in texts {
            encode(Opcode::Text, text.as_bytes(), None, &mut out);
        }
        self.write(&out).await
    }

    async fn write_frame(&mut self, opcode: Opcode, payload: &[u8]) -> Result<(), End> {
        let mut out = Vec::new();
        encode(opcode, payload, None, &mut out);
        self.write(&out).await
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), End> {
        match tokio::time::timeout(self.app.config.write_timeout, self.transport.write_all(bytes)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(End::Io(io::Error::new(io::ErrorKind::TimedOut, "the user agent does not read"))),
        }
    }
}

fn new_uaid() -> Uaid {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut bytes = [0; 16];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes).expect("system random source");
    Uaid(bytes)
}

#[cfg(test)]
mod tests {
    /// Every idle connection holds one of these futures: its size is the memory goal's
    /// largest term (see docs/benchmarks.md), so growing it must be a decision, not an
    /// accident. Rarely-taken paths are boxed to keep it small.
    #[tokio::test]
    async fn an_idle_connection_stays_small() {
        let dir = std::env::temp_dir().join(format!("tidings-size-{}", std::process::id()));
        let store = tidings_store::embedded::EmbeddedStore::open(&dir).unwrap();
        let keys = crate::token::TokenKeys::parse(&crate::token::TokenKeys::generate_key()).unwrap();
        let app = std::sync::Arc::new(crate::app::App::new(
            crate::Config::new("127.0.0.1:0".parse().unwrap()),
            store,
            keys,
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let address = tcp.peer_addr().unwrap().ip();
        let slot = app.limits.connect(crate::limits::Client::direct(address)).unwrap();
        let future = super::serve(app, tcp, Vec::new(), slot);
        let size = std::mem::size_of_val(&future);
        assert!(size <= 1024, "the connection future grew to {size} bytes");
        drop(future);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
