//! The Mozilla push protocol from the user agent's side.

use crate::connection::{ConnectError, Connection, Stream};
use tidings_websocket::io::Transport;
use tidings_wire::ws::{AckUpdate, ClientMessage, ServerMessage};
use tidings_wire::{ChannelId, Uaid};

/// Why a protocol exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection failed.
    #[error(transparent)]
    Connection(#[from] ConnectError),
    /// The server sent something that is not a push protocol frame.
    #[error("unexpected frame from the push service: {0}")]
    Unexpected(String),
    /// The server refused a request with this status.
    #[error("the push service answered status {0}")]
    Status(u16),
}

/// A user agent connected to a push service, past `hello`.
pub struct Client<T = Stream> {
    connection: Connection<T>,
    uaid: String,
}

impl Client<Stream> {
    /// Connects and says hello, resuming `uaid` when given.
    pub async fn connect(url: &str, uaid: Option<&str>) -> Result<Self, ClientError> {
        Self::hello(Connection::open(url).await?, uaid).await
    }
}

impl<T: Transport> Client<T> {
    /// Says hello on an open connection.
    pub async fn hello(mut connection: Connection<T>, uaid: Option<&str>) -> Result<Self, ClientError> {
        let hello = ClientMessage::Hello {
            uaid: uaid.and_then(|u| u.parse::<Uaid>().ok()),
            use_webpush: true,
            broadcasts: Default::default(),
        };
        connection.send(&hello.to_json()).await?;
        let mut client = Self { connection, uaid: String::new() };
        match client.next().await? {
            ServerMessage::Hello { uaid, status: 200, .. } => {
                client.uaid = uaid;
                Ok(client)
            }
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// The uaid the service gave (or resumed).
    pub fn uaid(&self) -> &str {
        &self.uaid
    }

    /// Subscribes `channel_id`, restricted to `key` (base64url applicationServerKey) when
    /// given; returns the endpoint. Notifications that arrive meanwhile are an error here:
    /// register before sending.
    pub async fn register(
        &mut self,
        channel_id: ChannelId,
        key: Option<&str>,
    ) -> Result<String, ClientError> {
        let register = ClientMessage::Register { channel_id, key: key.map(str::to_owned) };
        self.connection.send(&register.to_json()).await?;
        match self.next().await? {
            ServerMessage::Register { status: 200, push_endpoint: Some(endpoint), .. } => Ok(endpoint),
            ServerMessage::Register { status, .. } => Err(ClientError::Status(status)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// The next frame from the service (pings skipped).
    pub async fn next(&mut self) -> Result<ServerMessage, ClientError> {
        loop {
            let text = self.connection.recv().await?;
            if text.trim() == "{}" {
                continue;
            }
            return serde_json::from_str(&text)
                .map_err(|_| ClientError::Unexpected(text.chars().take(200).collect()));
        }
    }

    /// Acknowledges messages by `(channelID, version)`, with code 100 (delivered).
    pub async fn ack(&mut self, updates: &[(String, String)]) -> Result<(), ClientError> {
        let ack = ClientMessage::Ack(
            updates
                .iter()
                .map(|(c, v)| AckUpdate { channel_id: c.clone(), version: v.clone(), code: Some(100) })
                .collect(),
        );
        Ok(self.connection.send(&ack.to_json()).await?)
    }

    /// Acknowledges one message with a code: 100 delivered, 101 undecryptable, 102 not delivered.
    pub async fn ack_with(&mut self, channel_id: &str, version: &str, code: u16) -> Result<(), ClientError> {
        let update =
            AckUpdate { channel_id: channel_id.to_owned(), version: version.to_owned(), code: Some(code) };
        Ok(self.connection.send(&ClientMessage::Ack(vec![update]).to_json()).await?)
    }

    /// Removes a subscription (the reply arrives through [`Client::next`]).
    pub async fn unregister(&mut self, channel_id: ChannelId) -> Result<(), ClientError> {
        Ok(self.connection.send(&ClientMessage::Unregister { channel_id }.to_json()).await?)
    }

    /// Sends a keep-alive `{}`.
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        Ok(self.connection.send(&ClientMessage::Ping.to_json()).await?)
    }

    /// Closes the connection.
    pub async fn close(self) {
        self.connection.close().await;
    }
}
