//! Async transports for the codec: a byte stream that can be waited on without holding a
//! buffer (tokio's `TcpStream` can), and an adapter for streams that cannot (TLS).

use std::future::Future;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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

/// Any other stream (TLS, say), read through a small buffer that exists only while it
/// holds unread bytes.
pub struct Buffered<S> {
    io: S,
    buf: Vec<u8>,
    start: usize,
    eof: bool,
}

impl<S> Buffered<S> {
    /// Wraps a stream.
    pub fn new(io: S) -> Self {
        Self { io, buf: Vec::new(), start: 0, eof: false }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Transport for Buffered<S> {
    async fn readable(&mut self) -> io::Result<()> {
        if self.start < self.buf.len() || self.eof {
            return Ok(());
        }
        self.buf.resize(4096, 0);
        let n = self.io.read(&mut self.buf).await?;
        self.buf.truncate(n);
        self.start = 0;
        self.eof = n == 0;
        Ok(())
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.start == self.buf.len() {
            return if self.eof { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        let n = buf.len().min(self.buf.len() - self.start);
        buf[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        if self.start == self.buf.len() {
            self.buf = Vec::new();
            self.start = 0;
        }
        Ok(n)
    }

    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.io.write_all(data).await?;
        self.io.flush().await
    }
}
