//! A WebSocket client connection: the HTTP upgrade through hyper, then the raw socket.

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use tidings_websocket::io::Transport;
use tidings_websocket::{Decoder, Event, Opcode, Role, close_code, encode, encode_close, handshake};
use tokio::net::{TcpSocket, TcpStream};

/// The longest message accepted from the server (a notification carries at most a 4 KiB
/// body, base64 encoded, plus a little JSON).
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Why a connection could not be made or went down.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not `ws://host:port/path`.
    #[error("not a ws:// URL: {0}")]
    Url(String),
    /// TCP or the HTTP exchange failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server refused the upgrade or answered it wrongly.
    #[error("the server did not accept the WebSocket: {0}")]
    Upgrade(String),
    /// The server broke the WebSocket protocol.
    #[error("WebSocket protocol error: {0}")]
    Protocol(#[from] tidings_websocket::Error),
    /// The server closed the connection, with this code and reason.
    #[error("closed by the server ({0}): {1}")]
    Closed(u16, String),
}

/// A connected WebSocket speaking text frames.
pub struct Connection<T = TcpStream> {
    transport: T,
    decoder: Decoder,
    /// Text messages decoded but not yet returned.
    received: VecDeque<String>,
    closed: Option<(u16, String)>,
}

/// Parses `ws://host:port/path` into the socket address and the request path.
fn parse_url(url: &str) -> Result<(SocketAddr, String, String), ConnectError> {
    let rest = url.strip_prefix("ws://").ok_or_else(|| ConnectError::Url(url.into()))?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let addr = authority
        .parse::<SocketAddr>()
        .ok()
        .or_else(|| std::net::ToSocketAddrs::to_socket_addrs(authority).ok()?.next())
        .ok_or_else(|| ConnectError::Url(url.into()))?;
    Ok((addr, authority.to_owned(), path.to_owned()))
}

impl Connection<TcpStream> {
    /// Connects to a `ws://` URL.
    pub async fn open(url: &str) -> Result<Self, ConnectError> {
        Self::open_from(url, None).await
    }

    /// Connects from a chosen local address (load generators spread connections over
    /// 127.0.0.x to have more ports than one source address gives).
    pub async fn open_from(url: &str, local: Option<IpAddr>) -> Result<Self, ConnectError> {
        let (addr, authority, path) = parse_url(url)?;
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        if let Some(local) = local {
            socket.bind(SocketAddr::new(local, 0))?;
        }
        let tcp = socket.connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (tcp, pre_read) = upgrade(tcp, &authority, &path).await?;
        let mut connection = Self {
            transport: tcp,
            decoder: Decoder::new(Role::Client, MAX_MESSAGE),
            received: VecDeque::new(),
            closed: None,
        };
        connection.decode(&mut pre_read.to_vec())?;
        Ok(connection)
    }
}

/// The HTTP/1.1 upgrade, done by hyper; the socket is taken back afterwards.
async fn upgrade(tcp: TcpStream, authority: &str, path: &str) -> Result<(TcpStream, Bytes), ConnectError> {
    let mut key = [0u8; 16];
    aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut key)
        .map_err(|_| io::Error::other("random"))?;
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
            .await
            .map_err(|e| ConnectError::Upgrade(e.to_string()))?;
    let driver = tokio::spawn(connection.with_upgrades());
    let request = http::Request::get(path)
        .header("host", authority)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", &key)
        .header("sec-websocket-protocol", "push-notification")
        .body(Empty::new())
        .map_err(|e| ConnectError::Upgrade(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(|e| ConnectError::Upgrade(e.to_string()))?;
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS
        || !handshake::check_response(response.headers(), &key)
    {
        driver.abort();
        return Err(ConnectError::Upgrade(format!("answered {}", response.status())));
    }
    let upgraded = hyper::upgrade::on(response).await.map_err(|e| ConnectError::Upgrade(e.to_string()))?;
    let parts = upgraded
        .downcast::<TokioIo<TcpStream>>()
        .map_err(|_| ConnectError::Upgrade("unexpected stream type".into()))?;
    Ok((parts.io.into_inner(), parts.read_buf))
}

impl<T: Transport> Connection<T> {
    /// Sends a text message.
    pub async fn send(&mut self, text: &str) -> Result<(), ConnectError> {
        let mut frame = Vec::with_capacity(text.len() + 14);
        encode(Opcode::Text, text.as_bytes(), Some(mask()), &mut frame);
        Ok(self.transport.write_all(&frame).await?)
    }

    /// The next text message; answers pings meanwhile.
    pub async fn recv(&mut self) -> Result<String, ConnectError> {
        loop {
            if let Some(text) = self.received.pop_front() {
                return Ok(text);
            }
            if let Some((code, reason)) = self.closed.clone() {
                return Err(ConnectError::Closed(code, reason));
            }
            self.transport.readable().await?;
            let mut scratch = [0u8; 8192];
            loop {
                match self.transport.try_read(&mut scratch) {
                    Ok(0) => {
                        self.closed.get_or_insert((close_code::GOING_AWAY, "connection lost".into()));
                        break;
                    }
                    Ok(n) => {
                        let pongs = self.decode(&mut scratch[..n])?;
                        for payload in pongs {
                            let mut frame = Vec::new();
                            encode(Opcode::Pong, &payload, Some(mask()), &mut frame);
                            self.transport.write_all(&frame).await?;
                        }
                        if n < scratch.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }

    /// Decodes bytes; returns the payloads of pings to answer.
    fn decode(&mut self, bytes: &mut [u8]) -> Result<Vec<Vec<u8>>, ConnectError> {
        let mut pings = Vec::new();
        let (received, closed) = (&mut self.received, &mut self.closed);
        self.decoder.feed(bytes, |event| match event {
            Event::Text(text) => received.push_back(text.to_owned()),
            Event::Ping(payload) => pings.push(payload.to_vec()),
            Event::Close(code, reason) => {
                *closed = Some((code.unwrap_or(close_code::NORMAL), reason.to_owned()))
            }
            Event::Binary(_) | Event::Pong(_) => {}
        })?;
        Ok(pings)
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let mut frame = Vec::new();
        encode_close(close_code::NORMAL, "", Some(mask()), &mut frame);
        let _ = self.transport.write_all(&frame).await;
    }
}

/// A fresh masking key for a client frame (RFC 6455 section 5.3).
fn mask() -> [u8; 4] {
    let mut mask = [0; 4];
    let _ = aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut mask);
    mask
}
