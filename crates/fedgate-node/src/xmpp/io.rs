//! Byte streams under the s2s machines: plain or TLS, TCP or (in tests) in-memory.
//!
//! # Read buffers
//! A connection owns no read buffer: [`poll_read_shared`] reads into one buffer per
//! runtime thread and hands the bytes to the caller's machine inside the same poll, so
//! an idle connection (the common case: thousands of idle c2s and s2s streams) costs
//! no buffer at all, and a busy one still reads up to [`READ_CHUNK`] bytes per call.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Bytes read from a socket at most per call.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; READ_CHUNK].into_boxed_slice());
}

/// Polls one read of `r` into this thread's shared buffer and, when bytes came, hands
/// them to `f` before returning their count (`0`: end of stream). Cancel-safe: bytes
/// are never left in the buffer between polls.
pub(crate) fn poll_read_shared<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    cx: &mut Context<'_>,
    f: impl FnOnce(&[u8]),
) -> Poll<io::Result<usize>> {
    READ_BUF.with(|b| {
        let Ok(mut b) = b.try_borrow_mut() else {
            // Re-entered from `f` (never done): read into a buffer of our own.
            let mut own = vec![0u8; READ_CHUNK];
            return poll_into(r, cx, &mut own, f);
        };
        poll_into(r, cx, &mut b, f)
    })
}

fn poll_into<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    cx: &mut Context<'_>,
    buf: &mut [u8],
    f: impl FnOnce(&[u8]),
) -> Poll<io::Result<usize>> {
    let mut rb = ReadBuf::new(buf);
    match Pin::new(r).poll_read(cx, &mut rb) {
        Poll::Ready(Ok(())) => {
            let n = rb.filled().len();
            if n > 0 {
                f(rb.filled());
            }
            Poll::Ready(Ok(n))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

/// A byte stream the driver can run XMPP (and STARTTLS) on.
pub trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncStream for T {}

/// A boxed byte stream (a `TcpStream`, a TLS stream over one, or a test pipe).
pub type BoxIo = Box<dyn AsyncStream>;

/// Opens outbound connections. [`TcpDialer`] in production; tests plug in-memory
/// peers here to run on tokio's paused clock.
pub trait Dialer: Send + Sync + std::fmt::Debug + 'static {
    /// Connects to `addr` (the caller bounds it with its connect timeout).
    fn dial(&self, addr: SocketAddr) -> Pin<Box<dyn Future<Output = io::Result<BoxIo>> + Send>>;
}

/// Plain TCP connections (`TCP_NODELAY` on).
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpDialer;

impl Dialer for TcpDialer {
    fn dial(&self, addr: SocketAddr) -> Pin<Box<dyn Future<Output = io::Result<BoxIo>> + Send>> {
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(addr).await?;
            let _ = s.set_nodelay(true);
            Ok(Box::new(s) as BoxIo)
        })
    }
}

/// One connection's stream, upgradable in place with STARTTLS.
pub(crate) struct Conn {
    io: Option<BoxIo>,
    write_timeout: Duration,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "stream lost during TLS handshake",
    )
}

impl Conn {
    pub(crate) fn new(io: BoxIo, write_timeout: Duration) -> Self {
        Conn {
            io: Some(io),
            write_timeout,
        }
    }

    /// Reads once and hands the bytes to `f` ([`poll_read_shared`]); `Ok(0)` at end of
    /// stream. Cancel-safe.
    pub(crate) async fn read_with(&mut self, f: impl FnOnce(&[u8])) -> io::Result<usize> {
        let io = self.io.as_mut().ok_or_else(gone)?;
        let mut f = Some(f);
        std::future::poll_fn(|cx| {
            poll_read_shared(io.as_mut(), cx, |b| {
                if let Some(f) = f.take() {
                    f(b);
                }
            })
        })
        .await
    }

    /// Writes everything, bounded by the write timeout.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let io = self.io.as_mut().ok_or_else(gone)?;
        let w = async {
            io.write_all(bytes).await?;
            io.flush().await
        };
        match tokio::time::timeout(self.write_timeout, w).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timeout")),
        }
    }

    /// After we sent `</stream:stream>` (RFC 6120 §4.4): reads, discarding what comes,
    /// until the peer's closing tag or the end of the stream, for at most `wait`.
    /// Returns whether the peer closed in time.
    pub(crate) async fn await_peer_close(&mut self, wait: Duration) -> bool {
        const TAG: &[u8] = fedgate_xmpp::writer::STREAM_CLOSE.as_bytes();
        let mut tail: Vec<u8> = Vec::with_capacity(2 * TAG.len());
        let read = async {
            loop {
                let mut seen = false;
                match self
                    .read_with(|b| {
                        tail.extend_from_slice(b);
                        seen = tail.windows(TAG.len()).any(|w| w == TAG);
                        let keep = tail.len().saturating_sub(TAG.len() - 1);
                        tail.drain(..keep);
                    })
                    .await
                {
                    Ok(0) | Err(_) => return,
                    Ok(_) if seen => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(wait, read).await.is_ok()
    }

    /// Closes the write side (TLS close_notify included), bounded.
    pub(crate) async fn shutdown(&mut self) {
        if let Some(io) = self.io.as_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(2), io.shutdown()).await;
        }
    }

    /// STARTTLS, receiving side.
    pub(crate) async fn accept_tls(
        &mut self,
        cfg: Arc<rustls::ServerConfig>,
        timeout: Duration,
    ) -> io::Result<()> {
        let io = self.io.take().ok_or_else(gone)?;
        let acc = tokio_rustls::TlsAcceptor::from(cfg);
        let s = tokio::time::timeout(timeout, acc.accept(io))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timeout"))??;
        self.io = Some(Box::new(s));
        Ok(())
    }

    /// STARTTLS, initiating side; `server_name` is the remote domain (SNI).
    pub(crate) async fn connect_tls(
        &mut self,
        cfg: Arc<rustls::ClientConfig>,
        server_name: &str,
        timeout: Duration,
    ) -> io::Result<()> {
        let name = rustls_pki_types::ServerName::try_from(server_name.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let io = self.io.take().ok_or_else(gone)?;
        let c = tokio_rustls::TlsConnector::from(cfg);
        let s = tokio::time::timeout(timeout, c.connect(name, io))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timeout"))??;
        self.io = Some(Box::new(s));
        Ok(())
    }
}
