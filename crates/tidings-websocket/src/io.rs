//! Async transports for the codec: byte streams that can be waited on without holding a
//! buffer: tokio's `TcpStream`, and (with the `rustls` feature) a tokio-rustls client stream
//! over one, waited on through its socket. (The push service's server side has its own TLS
//! stream, `tidings_push::tls`, which frees its buffers while idle.)

use std::future::Future;
use std::io;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A byte stream that can be waited on without holding a buffer.
pub trait Transport: Send {
    /// Waits until data (or the end of the stream) may be read.
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Reads what is available without waiting: `WouldBlock` when nothing is, 0 at the end.
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes everything.
    fn write_all(&mut self, data: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
}

impl Transport for TcpStream {
    async fn readable(&mut self) -> io::Result<()> {
        TcpStream::readable(self).await
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::try_read(self, buf)
    }

    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        AsyncWriteExt::write_all(self, data).await
    }
}

/// A boxed transport: a TLS stream is over a kilobyte, and a connection's future keeps its
/// own copy of what it was given besides the one it uses; boxed, both are a pointer.
impl<T: Transport + ?Sized> Transport for Box<T> {
    async fn readable(&mut self) -> io::Result<()> {
        (**self).readable().await
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (**self).try_read(buf)
    }

    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        (**self).write_all(data).await
    }
}

/// A TLS client over TCP (with the `rustls` feature), waited on through its socket: while
/// the peer is silent the connection holds only what rustls keeps (its 4 KiB record buffer,
/// keys and state), and no read buffer of ours.
#[cfg(feature = "rustls")]
mod tls {
    use super::Transport;
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};
    use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
    use tokio::net::TcpStream;
    use tokio_rustls::rustls::ConnectionCommon;

    /// Waits until `tls` has something to give: plaintext already decrypted (or its peer's
    /// close), or else bytes on the socket.
    async fn readable<D>(tcp: &TcpStream, tls: &mut ConnectionCommon<D>) -> io::Result<()> {
        let state = tls.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed() {
            tcp.readable().await?;
        }
        Ok(())
    }

    /// Reads what is available without waiting: polls the stream with a waker that does
    /// nothing, because [`readable`] is what waits. Fills `buf` across TLS records, so that a
    /// short read means that nothing is left (tokio-rustls hands out one record at a time).
    fn try_read_tls<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut [u8]) -> io::Result<usize> {
        let mut context = Context::from_waker(Waker::noop());
        let mut filled = 0;
        while filled < buf.len() {
            let mut read = ReadBuf::new(&mut buf[filled..]);
            match Pin::new(&mut *stream).poll_read(&mut context, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => break,
                Poll::Ready(Ok(())) => filled += read.filled().len(),
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending if filled == 0 => return Err(io::ErrorKind::WouldBlock.into()),
                Poll::Pending => break,
            }
        }
        Ok(filled)
    }

    impl Transport for tokio_rustls::client::TlsStream<TcpStream> {
        async fn readable(&mut self) -> io::Result<()> {
            let (tcp, tls) = self.get_mut();
            readable(tcp, &mut **tls).await
        }

        fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            try_read_tls(self, buf)
        }

        async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
            AsyncWriteExt::write_all(self, data).await?;
            self.flush().await
        }
    }
}
