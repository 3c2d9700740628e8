//! Byte streams under the s2s machines: plain or TLS, TCP or (in tests) in-memory.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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
    pub(crate) buf: Vec<u8>,
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
            buf: vec![0u8; 16 * 1024],
        }
    }

    /// Reads into the connection's buffer; `Ok(0)` at end of stream. Cancel-safe.
    pub(crate) async fn read(&mut self) -> io::Result<usize> {
        let io = self.io.as_mut().ok_or_else(gone)?;
        io.read(&mut self.buf).await
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
