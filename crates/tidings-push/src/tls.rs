//! TLS for the server's connections, holding no buffer while a connection is idle.
//!
//! rustls's buffered connection (what tokio-rustls is built on) keeps a 4 KiB record buffer
//! for the life of a connection, which is most of what an idle `wss://` WebSocket costs.
//! Here rustls's unbuffered API does the protocol and this module owns the buffers: bytes
//! read from the socket, decrypted bytes not yet taken, and encrypted bytes not yet written.
//! Each is allocated when bytes arrive and freed as soon as it is empty, so a connection at
//! rest holds only rustls's state and its keys.
//!
//! Two halves, as elsewhere in Tidings: [`ServerTls`] is the sans-IO core (bytes in, bytes
//! out, no socket), and [`TlsStream`] drives it over a `TcpStream`, for hyper (tokio's
//! `AsyncRead`/`AsyncWrite`) and for the WebSocket after its upgrade
//! ([`tidings_websocket::io::Transport`], which waits on the socket with no buffer).

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// How much is read from the socket at a time: a TLS record is at most about 16 KiB, and
/// most that a push service receives (a request, a WebSocket frame) are far smaller.
const READ_SIZE: usize = 8 * 1024;

/// How much plaintext is encrypted in one write: bounds the outgoing buffer.
const WRITE_SIZE: usize = 64 * 1024;

/// The most plaintext a TLS record carries.
const MAX_FRAGMENT: usize = 16 * 1024;

/// Room for what a record adds to its plaintext (header, content type, AEAD tag, with
/// margin), and for an alert.
const RECORD_OVERHEAD: usize = 64;

/// First guess of the room for a handshake message (a certificate chain may need more:
/// rustls says how much).
const HANDSHAKE_ROOM: usize = 4096;

/// What the core is asked to do when rustls is ready for application data.
#[derive(Clone, Copy)]
enum Action<'a> {
    /// Nothing: only process what has arrived.
    None,
    /// Encrypt these bytes (as many as [`WRITE_SIZE`] allows).
    Send(&'a [u8]),
    /// Queue a close_notify alert.
    Close,
}

/// The sans-IO half: a server's TLS connection and the three buffers it moves bytes
/// through. Time plays no part in TLS here (the caller bounds the handshake).
pub struct ServerTls {
    conn: UnbufferedServerConnection,
    /// Bytes from the peer not yet processed: at rest, at most a partial record.
    incoming: Vec<u8>,
    /// Decrypted bytes not yet taken, from `plaintext_start` on.
    plaintext: Vec<u8>,
    plaintext_start: usize,
    /// Bytes for the peer not yet written, from `outgoing_start` on.
    outgoing: Vec<u8>,
    outgoing_start: usize,
    /// The peer has closed its side (close_notify, or the end of the byte stream).
    peer_closed: bool,
    /// A close_notify was queued.
    close_queued: bool,
    /// The error that ended the connection: rustls is not stepped again after one (it
    /// would read the same bad bytes again and answer them with a second alert).
    failed: Option<rustls::Error>,
}

impl ServerTls {
    /// A connection that has yet to receive its client's hello.
    pub fn new(config: Arc<rustls::ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(Self {
            conn: UnbufferedServerConnection::new(config)?,
            incoming: Vec::new(),
            plaintext: Vec::new(),
            plaintext_start: 0,
            outgoing: Vec::new(),
            outgoing_start: 0,
            peer_closed: false,
            close_queued: false,
            failed: None,
        })
    }

    /// Room for bytes from the peer; then [`Self::received`] says how many came.
    pub fn input_space(&mut self) -> &mut [u8] {
        let used = self.incoming.len();
        self.incoming.resize(used + READ_SIZE, 0);
        &mut self.incoming[used..]
    }

    /// `n` bytes were written into the room [`Self::input_space`] gave (0 when none came),
    /// and processes them: decrypts application data and answers the handshake.
    pub fn received(&mut self, n: usize) -> Result<(), rustls::Error> {
        let used = self.incoming.len() - READ_SIZE;
        self.incoming.truncate(used + n);
        let result = self.drive(Action::None).map(|_| ());
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
        result
    }

    /// The peer's byte stream ended (without a close_notify, or after one).
    pub fn end_of_input(&mut self) {
        self.peer_closed = true;
    }

    /// Whether the handshake is still going on.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The protocol agreed by ALPN, once the client's hello was processed.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Whether decrypted bytes wait to be taken.
    pub fn has_plaintext(&self) -> bool {
        self.plaintext_start < self.plaintext.len()
    }

    /// Whether the peer has closed its side: once the decrypted bytes are taken, reads end.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Takes decrypted bytes into `buf`; returns how many.
    pub fn read_plaintext(&mut self, buf: &mut [u8]) -> usize {
        let available = &self.plaintext[self.plaintext_start..];
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.plaintext_start += n;
        if self.plaintext_start == self.plaintext.len() {
            self.plaintext = Vec::new();
            self.plaintext_start = 0;
        }
        n
    }

    /// Encrypts (a first part of) `data` for the peer; returns how many bytes were taken.
    /// Fails during the handshake, after a close, and on an error of the connection.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, rustls::Error> {
        match self.drive(Action::Send(data))? {
            0 if !data.is_empty() => Err(rustls::Error::General("the TLS connection cannot send now".into())),
            n => Ok(n),
        }
    }

    /// Queues a close_notify alert for the peer (once).
    pub fn close(&mut self) -> Result<(), rustls::Error> {
        if !self.close_queued && !self.conn.is_handshaking() {
            self.drive(Action::Close)?;
        }
        Ok(())
    }

    /// Bytes to write to the peer.
    pub fn output(&self) -> &[u8] {
        &self.outgoing[self.outgoing_start..]
    }

    /// `n` bytes of [`Self::output`] were written.
    pub fn sent(&mut self, n: usize) {
        self.outgoing_start += n;
        if self.outgoing_start >= self.outgoing.len() {
            self.outgoing = Vec::new();
            self.outgoing_start = 0;
        }
    }

    /// Steps rustls until it waits for the peer or is ready for application data, and then
    /// does `action`. Returns how many bytes of a [`Action::Send`] were encrypted.
    fn drive(&mut self, action: Action<'_>) -> Result<usize, rustls::Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.step(action);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn step(&mut self, action: Action<'_>) -> Result<usize, rustls::Error> {
        loop {
            let status = self.conn.process_tls_records(&mut self.incoming);
            let mut discard = status.discard;
            let state = match status.state {
                Ok(state) => state,
                Err(e) => {
                    self.incoming.drain(..discard);
                    self.encode_alert();
                    return Err(e);
                }
            };
            let done = match state {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record?;
                        discard += record.discard;
                        self.plaintext.extend_from_slice(record.payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encoder) => {
                    append(&mut self.outgoing, HANDSHAKE_ROOM, |out| {
                        encoder.encode(out).map_err(encode_error)
                    })?;
                    None
                }
                // Queued in `outgoing`, which the caller writes before it waits for the peer.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::PeerClosed => {
                    self.peer_closed = true;
                    None
                }
                ConnectionState::BlockedHandshake | ConnectionState::Closed => Some(0),
                ConnectionState::WriteTraffic(mut writer) => Some(match action {
                    Action::None => 0,
                    Action::Send(data) => {
                        let data = &data[..data.len().min(WRITE_SIZE)];
                        let room = data.len() + RECORD_OVERHEAD * (data.len() / MAX_FRAGMENT + 1);
                        append(&mut self.outgoing, room, |out| {
                            writer.encrypt(data, out).map_err(encrypt_error)
                        })?;
                        data.len()
                    }
                    Action::Close => {
                        append(&mut self.outgoing, RECORD_OVERHEAD, |out| {
                            writer.queue_close_notify(out).map_err(encrypt_error)
                        })?;
                        self.close_queued = true;
                        0
                    }
                }),
                // Early data is never accepted (the configuration does not offer it).
                _ => return Err(rustls::Error::General("unexpected TLS state".into())),
            };
            self.incoming.drain(..discard);
            if let Some(n) = done {
                return Ok(n);
            }
        }
    }

    /// After an error, the alert rustls queued for the peer, so that it learns why (rustls
    /// hands out what it queued before it looks at input, and no input is given).
    fn encode_alert(&mut self) {
        let status = self.conn.process_tls_records(&mut []);
        if let Ok(ConnectionState::EncodeTlsData(mut encoder)) = status.state {
            let _ =
                append(&mut self.outgoing, RECORD_OVERHEAD, |out| encoder.encode(out).map_err(encode_error));
        }
    }
}

/// How a write into a buffer went: its length, or the room it needed (`Err(Ok(..))`), or
/// an error.
type Written = Result<usize, Result<InsufficientSizeError, rustls::Error>>;

/// Appends to `out` what `write` writes into `room` bytes, growing the room once if rustls
/// asks for more.
fn append(
    out: &mut Vec<u8>,
    mut room: usize,
    mut write: impl FnMut(&mut [u8]) -> Written,
) -> Result<(), rustls::Error> {
    let start = out.len();
    loop {
        out.resize(start + room, 0);
        match write(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(Ok(InsufficientSizeError { required_size })) if required_size > room => {
                room = required_size;
            }
            Err(Ok(_)) => {
                out.truncate(start);
                return Err(rustls::Error::General("TLS output did not fit".into()));
            }
            Err(Err(e)) => {
                out.truncate(start);
                return Err(e);
            }
        }
    }
}

fn encode_error(e: EncodeError) -> Result<InsufficientSizeError, rustls::Error> {
    match e {
        EncodeError::InsufficientSize(size) => Ok(size),
        other => Err(rustls::Error::General(other.to_string())),
    }
}

fn encrypt_error(e: EncryptError) -> Result<InsufficientSizeError, rustls::Error> {
    match e {
        EncryptError::InsufficientSize(size) => Ok(size),
        other => Err(rustls::Error::General(other.to_string())),
    }
}

fn invalid_data(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// A server's TLS connection over TCP: [`ServerTls`] driven over the socket.
pub struct TlsStream {
    tcp: TcpStream,
    tls: ServerTls,
}

impl TlsStream {
    /// Does the server's side of the handshake. The caller bounds how long it may take.
    pub async fn accept(tcp: TcpStream, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let tls = ServerTls::new(config).map_err(invalid_data)?;
        let mut stream = Self { tcp, tls };
        while stream.tls.is_handshaking() {
            stream.write_output().await?;
            stream.tcp.readable().await?;
            match stream.receive() {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    // The alert that says why, if the socket takes it now.
                    let _ = stream.tcp.try_write(stream.tls.output());
                    return Err(e);
                }
            }
        }
        // The session tickets rustls sends once the handshake is done.
        stream.write_output().await?;
        Ok(stream)
    }

    /// The socket, for its options.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The protocol agreed by ALPN.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.tls.alpn_protocol()
    }

    /// Reads from the socket without waiting and processes what came: `WouldBlock` when
    /// nothing had, 0 at the end.
    fn receive(&mut self) -> io::Result<usize> {
        let result = self.tcp.try_read(self.tls.input_space());
        let n = *result.as_ref().unwrap_or(&0);
        self.tls.received(n).map_err(invalid_data)?;
        if let Ok(0) = result {
            self.tls.end_of_input();
        }
        result
    }

    /// Writes everything the core has for the peer.
    async fn write_output(&mut self) -> io::Result<()> {
        while !self.tls.output().is_empty() {
            let n = self.tcp.write(self.tls.output()).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.tls.sent(n);
        }
        Ok(())
    }

    /// Writes what the core has for the peer, as far as the socket takes it now.
    fn poll_write_output(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.tls.output().is_empty() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, self.tls.output()))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.tls.sent(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.tls.has_plaintext() {
                let n = this.tls.read_plaintext(buf.initialize_unfilled());
                buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.tls.peer_closed() {
                return Poll::Ready(Ok(()));
            }
            // What is owed to the peer (a key update's answer) goes out as far as the socket
            // takes it; reading does not wait for it, so that two peers that both write
            // cannot wait on each other.
            if let Poll::Ready(Err(e)) = this.poll_write_output(cx) {
                return Poll::Ready(Err(e));
            }
            ready!(this.tcp.poll_read_ready(cx))?;
            match this.receive() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
                Ok(_) => {}
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Writes wait while a full write's worth is still unsent.
        if this.tls.output().len() >= WRITE_SIZE {
            ready!(this.poll_write_output(cx))?;
        }
        let n = this.tls.send(data).map_err(invalid_data)?;
        // Sent now as far as the socket takes it; the rest at the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_write_output(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_output(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.tls.close().map_err(invalid_data)?;
        ready!(this.poll_write_output(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

impl tidings_websocket::io::Transport for TlsStream {
    async fn readable(&mut self) -> io::Result<()> {
        self.write_output().await?;
        if !self.tls.has_plaintext() && !self.tls.peer_closed() {
            self.tcp.readable().await?;
        }
        Ok(())
    }

    /// Fills `buf` across records, so that a short read means nothing is left.
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        loop {
            filled += self.tls.read_plaintext(&mut buf[filled..]);
            if filled == buf.len() || self.tls.peer_closed() {
                return Ok(filled);
            }
            match self.receive() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && filled > 0 => return Ok(filled),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
        }
    }

    async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.tls.send(data).map_err(invalid_data)?;
            data = &data[n..];
            self.write_output().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore};
    use std::io::{Read, Write};

    fn configs(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (Arc<rustls::ServerConfig>, Arc<ClientConfig>) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let der = CertificateDer::from(cert.cert.der().to_vec());
        let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut roots = RootCertStore::empty();
        roots.add(der).unwrap();
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        (Arc::new(server), Arc::new(client))
    }

    fn pair(versions: &[&'static rustls::SupportedProtocolVersion]) -> (ClientConnection, ServerTls) {
        let (server, client) = configs(versions);
        let mut client = ClientConnection::new(client, ServerName::try_from("localhost").unwrap()).unwrap();
        client.set_buffer_limit(None);
        (client, ServerTls::new(server).unwrap())
    }

    /// Moves bytes both ways until neither side has any to give; the client's go to the
    /// server `chunk` bytes at a time. Returns the plaintext the client received.
    fn pump(
        client: &mut ClientConnection,
        server: &mut ServerTls,
        chunk: usize,
    ) -> Result<Vec<u8>, rustls::Error> {
        let mut received = Vec::new();
        loop {
            let mut to_server = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut to_server).unwrap();
            }
            for piece in to_server.chunks(chunk.min(READ_SIZE)) {
                server.input_space()[..piece.len()].copy_from_slice(piece);
                server.received(piece.len())?;
            }
            let to_client = server.output().to_vec();
            server.sent(to_client.len());
            let mut rest = &to_client[..];
            while !rest.is_empty() {
                client.read_tls(&mut rest).unwrap();
                client.process_new_packets()?;
                match client.reader().read_to_end(&mut received) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
            }
            if to_server.is_empty() && to_client.is_empty() {
                return Ok(received);
            }
        }
    }

    fn read_all(server: &mut ServerTls) -> Vec<u8> {
        let mut all = Vec::new();
        let mut buf = [0; 1000];
        loop {
            let n = server.read_plaintext(&mut buf);
            if n == 0 {
                return all;
            }
            all.extend_from_slice(&buf[..n]);
        }
    }

    /// Holds nothing at rest: the point of this module.
    fn assert_idle(server: &ServerTls) {
        assert_eq!(
            (server.incoming.capacity(), server.plaintext.capacity(), server.outgoing.capacity()),
            (0, 0, 0)
        );
    }

    fn send_all(server: &mut ServerTls, mut data: &[u8]) {
        while !data.is_empty() {
            let n = server.send(data).unwrap();
            assert!(n > 0);
            data = &data[n..];
        }
    }

    #[test]
    fn data_goes_both_ways_and_nothing_is_held_at_rest() {
        // More than one write's worth, and a record's.
        let big: Vec<u8> = (0..(WRITE_SIZE as u32 + 5000)).map(|i| (i % 251) as u8).collect();
        for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
            for chunk in [3, 1000, READ_SIZE] {
                let (mut client, mut server) = pair(versions);
                assert!(server.send(b"too early").is_err(), "nothing is sent before the handshake");
                pump(&mut client, &mut server, chunk).unwrap();
                assert!(!server.is_handshaking() && !client.is_handshaking());
                assert_eq!(server.alpn_protocol(), Some(&b"http/1.1"[..]));
                assert_idle(&server);

                client.writer().write_all(&big).unwrap();
                pump(&mut client, &mut server, chunk).unwrap();
                assert_eq!(read_all(&mut server), big);
                send_all(&mut server, &big);
                assert_eq!(pump(&mut client, &mut server, chunk).unwrap(), big);
                assert_idle(&server);
            }
        }
    }

    #[test]
    fn a_partial_record_is_kept_until_the_rest_comes() {
        let (mut client, mut server) = pair(&[&rustls::version::TLS13]);
        pump(&mut client, &mut server, 1000).unwrap();
        client.writer().write_all(b"hello").unwrap();
        let mut record = Vec::new();
        client.write_tls(&mut record).unwrap();
        server.input_space()[..3].copy_from_slice(&record[..3]);
        server.received(3).unwrap();
        assert!(!server.has_plaintext());
        assert_eq!(server.incoming, record[..3]);
        server.input_space()[..record.len() - 3].copy_from_slice(&record[3..]);
        server.received(record.len() - 3).unwrap();
        assert_eq!(read_all(&mut server), b"hello");
        assert_idle(&server);
    }

    #[test]
    fn a_key_update_is_answered() {
        let (mut client, mut server) = pair(&[&rustls::version::TLS13]);
        pump(&mut client, &mut server, 1000).unwrap();
        for round in 0..3u8 {
            client.refresh_traffic_keys().unwrap();
            client.writer().write_all(&[round; 10]).unwrap();
            pump(&mut client, &mut server, 1000).unwrap();
            assert_eq!(read_all(&mut server), [round; 10]);
            send_all(&mut server, &[round; 20]);
            assert_eq!(pump(&mut client, &mut server, 1000).unwrap(), [round; 20]);
        }
        assert_idle(&server);
    }

    #[test]
    fn closes_are_seen_both_ways() {
        let (mut client, mut server) = pair(&[&rustls::version::TLS13]);
        pump(&mut client, &mut server, 1000).unwrap();
        client.writer().write_all(b"last words").unwrap();
        client.send_close_notify();
        pump(&mut client, &mut server, 1000).unwrap();
        assert!(server.peer_closed());
        assert_eq!(read_all(&mut server), b"last words");

        server.close().unwrap();
        server.close().unwrap();
        pump(&mut client, &mut server, 1000).unwrap();
        let mut rest = Vec::new();
        assert_eq!(client.reader().read_to_end(&mut rest).unwrap(), 0, "the client sees a clean close");
        assert!(server.send(b"after the close").is_err());
    }

    #[test]
    fn garbage_is_refused_with_an_alert() {
        for garbage in [&b"GET / HTTP/1.1\r\n\r\n"[..], &[0x16, 3, 1, 0xff, 0xff, 1, 2, 3], &[0x17; 64]] {
            let (_, mut server) = pair(&[&rustls::version::TLS13]);
            server.input_space()[..garbage.len()].copy_from_slice(garbage);
            let result = server.received(garbage.len());
            if result.is_ok() {
                // A record header that promises more: waits for it, holding only the part.
                assert!(server.is_handshaking() && server.incoming.len() <= garbage.len());
                continue;
            }
            assert_eq!(server.output().first(), Some(&0x15), "an alert record for {garbage:?}");
            let output = server.output().len();
            server.input_space()[..garbage.len()].copy_from_slice(garbage);
            assert!(server.received(garbage.len()).is_err(), "the connection stays failed");
            assert_eq!(server.output().len(), output, "and says so once");
        }
    }
}
