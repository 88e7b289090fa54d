//! A WebSocket client connection: the HTTP upgrade through hyper, then the raw socket.

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tidings_websocket::io::Transport;
use tidings_websocket::{Decoder, Event, Opcode, Role, close_code, encode, encode_close, handshake};
use tokio::net::{TcpSocket, TcpStream};

/// The longest message accepted from the server (a notification carries at most a 4 KiB
/// body, base64 encoded, plus a little JSON).
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Why a connection could not be made or went down.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not `ws://host[:port]/path` or `wss://...`.
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

/// The socket under a connection: plain TCP or TLS, both waited on without a buffer.
pub enum Stream {
    /// `ws://`.
    Tcp(TcpStream),
    /// `wss://`.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Transport for Stream {
    async fn readable(&mut self) -> io::Result<()> {
        match self {
            Self::Tcp(s) => Transport::readable(s).await,
            Self::Tls(s) => Transport::readable(s).await,
        }
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => Transport::try_read(s, buf),
            Self::Tls(s) => Transport::try_read(s, buf),
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Self::Tcp(s) => Transport::write_all(s, data).await,
            Self::Tls(s) => Transport::write_all(s, data).await,
        }
    }
}

/// A connected WebSocket speaking text frames.
pub struct Connection<T = Stream> {
    transport: T,
    decoder: Decoder,
    /// Text messages decoded but not yet returned.
    received: VecDeque<String>,
    closed: Option<(u16, String)>,
}

/// A parsed `ws://` or `wss://` URL.
struct Target {
    tls: bool,
    addr: SocketAddr,
    host: String,
    authority: String,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, ConnectError> {
    let bad = || ConnectError::Url(url.into());
    let (tls, rest) = match url.split_once("://") {
        Some(("ws", rest)) => (false, rest),
        Some(("wss", rest)) => (true, rest),
        _ => return Err(bad()),
    };
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_owned()
    } else {
        format!("{authority}:{}", if tls { 443 } else { 80 })
    };
    let addr = with_port
        .parse::<SocketAddr>()
        .ok()
        .or_else(|| std::net::ToSocketAddrs::to_socket_addrs(&with_port).ok()?.next())
        .ok_or_else(bad)?;
    let host = with_port.rsplit_once(':').map_or(authority, |(h, _)| h).trim_matches(['[', ']']).to_owned();
    Ok(Target { tls, addr, host, authority: authority.to_owned(), path: path.to_owned() })
}

/// The TLS client configuration: the system's CA certificates (Mozilla's when it has none)
/// and any `extra_roots`. Without extra roots it is made once and shared by every connection
/// of the process: it holds the parsed certificates and a session cache of its own (together
/// about 100 KiB), which a load generator would otherwise hold once per connection.
fn tls_config(extra_roots: &[rustls::pki_types::CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    static SYSTEM_ROOTS: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    if extra_roots.is_empty() {
        return SYSTEM_ROOTS.get_or_init(|| new_tls_config(&[])).clone();
    }
    new_tls_config(extra_roots)
}

fn new_tls_config(extra_roots: &[rustls::pki_types::CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs().certs;
    if native.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        roots.add_parsable_certificates(native);
    }
    roots.add_parsable_certificates(extra_roots.iter().cloned());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

impl Connection<Stream> {
    /// Connects to a `ws://` or `wss://` URL.
    pub async fn open(url: &str) -> Result<Self, ConnectError> {
        Self::open_with(url, None, &[]).await
    }

    /// Connects from a chosen local address (load generators spread connections over
    /// loopback addresses to have more ports than one source address gives).
    pub async fn open_from(url: &str, local: Option<IpAddr>) -> Result<Self, ConnectError> {
        Self::open_with(url, local, &[]).await
    }

    /// Connects, trusting `extra_roots` besides the system's CAs for `wss://`.
    pub async fn open_with(
        url: &str,
        local: Option<IpAddr>,
        extra_roots: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Result<Self, ConnectError> {
        let target = parse_url(url)?;
        let socket = if target.addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        if let Some(local) = local {
            socket.bind(SocketAddr::new(local, 0))?;
        }
        let tcp = socket.connect(target.addr).await?;
        tcp.set_nodelay(true)?;
        let (transport, pre_read) = if target.tls {
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|_| ConnectError::Url(url.into()))?;
            let tls = tokio_rustls::TlsConnector::from(tls_config(extra_roots)).connect(name, tcp).await?;
            let (tls, pre_read) = upgrade(tls, &target.authority, &target.path).await?;
            (Stream::Tls(Box::new(tls)), pre_read)
        } else {
            let (tcp, pre_read) = upgrade(tcp, &target.authority, &target.path).await?;
            (Stream::Tcp(tcp), pre_read)
        };
        let mut connection = Self {
            transport,
            decoder: Decoder::new(Role::Client, MAX_MESSAGE),
            received: VecDeque::new(),
            closed: None,
        };
        connection.decode(&mut pre_read.to_vec())?;
        Ok(connection)
    }
}

/// The HTTP/1.1 upgrade, done by hyper; the stream is taken back afterwards.
async fn upgrade<S>(io: S, authority: &str, path: &str) -> Result<(S, Bytes), ConnectError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut key = [0u8; 16];
    aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut key)
        .map_err(|_| io::Error::other("random"))?;
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io))
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
        .downcast::<TokioIo<S>>()
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
