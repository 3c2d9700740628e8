//! The [`SipTransport`] handle, the connection registry and the listeners.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use fedgate_sip::Message;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::config::TransportConfig;
use super::stream::{self, Close, End};
use super::udp;
use crate::tls::{TlsError, TlsSettings, name_matches, sip_domains};

/// The transport protocols the driver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// UDP (RFC 3261 §18).
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP (`sips:`, port 5061 for Lync federation).
    Tls,
}

impl TransportKind {
    /// The Via transport token.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
            TransportKind::Tls => "TLS",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where to send: a transport, an address, and for TLS the name the peer's certificate
/// must carry (the SIP domain or the SRV target the address was resolved from).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Transport.
    pub kind: TransportKind,
    /// Address.
    pub addr: SocketAddr,
    /// Expected TLS server name (required for TLS, ignored otherwise).
    pub server_name: Option<String>,
}

impl Target {
    /// A UDP target.
    pub fn udp(addr: SocketAddr) -> Target {
        Target {
            kind: TransportKind::Udp,
            addr,
            server_name: None,
        }
    }
    /// A TCP target.
    pub fn tcp(addr: SocketAddr) -> Target {
        Target {
            kind: TransportKind::Tcp,
            addr,
            server_name: None,
        }
    }
    /// A TLS target whose certificate must name `server_name`.
    pub fn tls(addr: SocketAddr, server_name: impl Into<String>) -> Target {
        Target {
            kind: TransportKind::Tls,
            addr,
            server_name: Some(server_name.into().to_ascii_lowercase()),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.addr)?;
        if let Some(n) = &self.server_name {
            write!(f, " ({n})")?;
        }
        Ok(())
    }
}

/// Identifies one stream connection for the life of the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// The verified identity of a TLS peer: the SIP domain names of its certificate
/// (dNSNames and `sip:` URI hosts of the subjectAltName, RFC 5922 §7.1), present only
/// when its certificate chain was verified against the configured roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    names: Vec<String>,
}

impl PeerIdentity {
    pub(crate) fn from_certs(certs: Option<&[CertificateDer<'static>]>) -> Option<PeerIdentity> {
        let ee = certs?.first()?;
        Some(PeerIdentity {
            names: sip_domains(ee).unwrap_or_default(),
        })
    }
    /// The names, lower-cased.
    pub fn names(&self) -> &[String] {
        &self.names
    }
    /// True if `domain` is one of the names, exactly (no wildcards): check a request's
    /// From domain against the connection it came on.
    pub fn matches(&self, domain: &str) -> bool {
        name_matches(&self.names, domain)
    }
}

/// Where an inbound message came from, and where its responses go back
/// ([`SipTransport::reply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source {
    /// Transport.
    pub transport: TransportKind,
    /// The peer's address (for the Via `received`/`rport` check).
    pub peer: SocketAddr,
    /// Our address the message arrived at.
    pub local: SocketAddr,
    /// The stream connection (`None` for UDP).
    pub connection: Option<ConnectionId>,
}

/// A message received from the network, passed up to the transaction layer. Only syntax
/// has been checked (the codec's parse); run `fedgate_sip::validate` before acting.
#[derive(Debug)]
pub struct Inbound {
    /// The message.
    pub message: Message,
    /// Where it came from.
    pub source: Source,
    /// The verified TLS identity of the connection, if any.
    pub tls_peer: Option<Arc<PeerIdentity>>,
}

/// Why a message could not be handed to the network.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The connection's outbound queue is full: answer 503 with Retry-After.
    #[error("outbound queue of {0} is full")]
    QueueFull(ConnectionId),
    /// The UDP socket's send buffer is full.
    #[error("UDP socket is busy")]
    UdpBusy,
    /// The connection is gone (for a response: RFC 3261 §18.2.2 fallbacks are the caller's).
    #[error("connection {0} is closed")]
    ConnectionClosed(ConnectionId),
    /// The target failed its last connection attempts; retry after this long.
    #[error("target unreachable, retry after {retry_after:?}")]
    Unreachable {
        /// Time left before a new attempt is allowed.
        retry_after: Duration,
    },
    /// `max_connections` stream connections are open.
    #[error("too many connections")]
    TooManyConnections,
    /// A TLS target, but the transport has no TLS client configuration.
    #[error("TLS is not configured")]
    TlsNotConfigured,
    /// A TLS target without a valid server name.
    #[error("bad or missing TLS server name {0:?}")]
    BadServerName(Option<String>),
    /// A UDP target, but no UDP socket is bound.
    #[error("no UDP socket is bound")]
    UdpNotBound,
    /// The message is larger than `max_udp_datagram`.
    #[error("message of {0} bytes is too large for UDP")]
    MessageTooLarge(usize),
    /// The transport is shut down.
    #[error("transport is shut down")]
    ShutDown,
    /// The socket refused the datagram.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
}

impl SendError {
    /// How long the caller should wait before trying again, for a 503 Retry-After.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Unreachable { retry_after } => Some(*retry_after),
            SendError::QueueFull(_) | SendError::UdpBusy | SendError::TooManyConnections => {
                Some(Duration::from_secs(1))
            }
            _ => None,
        }
    }
}

/// How a connection to a [`Target`] failed ([`SendFailure::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The TCP connection was refused (RST, ICMP port unreachable).
    Refused,
    /// Any other TCP connect error (no route, network unreachable, …).
    ConnectFailed,
    /// The TCP connect or the TLS handshake did not finish in time.
    Timeout,
    /// The TLS handshake failed or the certificate does not name the target (RFC 5922).
    Tls,
    /// An established connection broke with messages still queued, and reconnecting
    /// did not help.
    ConnectionLost,
    /// The connection was closed on purpose (idle, protocol error) while messages sent
    /// to it were still queued.
    Closed,
}

/// Messages that [`SipTransport::send`] accepted (it returned `Ok`) but that never
/// reached the wire: the outbound connection to `target` could not be opened, or it
/// closed with them still queued. Reported at once on the receiver of
/// [`SipTransport::take_failures`], so the transaction layer can fail the transactions
/// on that target (RFC 3261 §8.1.3.1, §17.1.4: a transport error is a 503) and the
/// caller try the next target (RFC 3263 §4.3) instead of waiting for Timer B/F.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendFailure {
    /// Where the messages were going.
    pub target: Target,
    /// The outbound connection that failed.
    pub connection: ConnectionId,
    /// What went wrong.
    pub kind: FailureKind,
    /// How many queued messages were dropped (at least one).
    pub dropped: usize,
    /// How long sends to `target` now fail at once with [`SendError::Unreachable`]
    /// (zero for [`FailureKind::Closed`]: the target itself is not marked).
    pub retry_after: Duration,
}

/// Why the transport could not start or listen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The TLS configuration is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Binding failed.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    /// `listen_tls` without a TLS server configuration.
    #[error("TLS server is not configured")]
    TlsNotConfigured,
}

struct Entry {
    tx: mpsc::Sender<Bytes>,
    peer: SocketAddr,
    inbound: bool,
    identity: Option<Arc<PeerIdentity>>,
    target: Option<Target>,
}

/// A target whose connections failed: unreachable until `until`; `failures` in a row
/// make the next mark longer ([`super::Backoff`]).
#[derive(Debug, Clone, Copy)]
struct Down {
    until: Instant,
    failures: u32,
}

#[derive(Default)]
struct Registry {
    conns: HashMap<ConnectionId, Entry>,
    /// Outbound connections per target, in slots (`max_connections_per_target` of
    /// them): a message goes into the slot of its Call-ID ([`dialog_slot`]).
    by_target: HashMap<Target, Vec<Option<ConnectionId>>>,
    per_ip: HashMap<IpAddr, usize>,
    unreachable: HashMap<Target, Down>,
}

/// State shared by the handle and every task.
pub(crate) struct Shared {
    pub(crate) cfg: TransportConfig,
    acceptor: Option<TlsAcceptor>,
    connector: Option<TlsConnector>,
    pub(crate) inbound: mpsc::Sender<Inbound>,
    reg: Mutex<Registry>,
    next_id: AtomicU64,
    udp: Mutex<Option<Arc<std::net::UdpSocket>>>,
    shutdown: watch::Sender<bool>,
    /// Where [`SendFailure`]s go ([`SipTransport::take_failures`]); none until taken.
    failures: Mutex<Option<mpsc::Sender<SendFailure>>>,
    /// Where the ids of ended connections go ([`SipTransport::take_closed`]); none
    /// until taken.
    closed: Mutex<Option<mpsc::Sender<ConnectionId>>>,
}

impl Shared {
    fn reg(&self) -> MutexGuard<'_, Registry> {
        self.reg.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    fn new_id(&self) -> ConnectionId {
        ConnectionId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn admit_inbound(
        self: &Arc<Self>,
        peer: SocketAddr,
    ) -> Result<(Slot, mpsc::Receiver<Bytes>), &'static str> {
        let lim = &self.cfg.limits;
        let mut reg = self.reg();
        if reg.conns.len() >= lim.max_connections {
            return Err("max_connections");
        }
        let n = reg.per_ip.get(&peer.ip()).copied().unwrap_or(0);
        if n >= lim.max_connections_per_ip {
            return Err("max_connections_per_ip");
        }
        reg.per_ip.insert(peer.ip(), n + 1);
        let (tx, rx) = mpsc::channel(lim.outbound_queue.max(1));
        let id = self.new_id();
        reg.conns.insert(
            id,
            Entry {
                tx,
                peer,
                inbound: true,
                identity: None,
                target: None,
            },
        );
        Ok((
            Slot {
                shared: self.clone(),
                id,
            },
            rx,
        ))
    }

    pub(crate) fn set_identity(&self, id: ConnectionId, ident: Option<Arc<PeerIdentity>>) {
        if let Some(e) = self.reg().conns.get_mut(&id) {
            e.identity = ident;
        }
    }

    /// Marks `target` unreachable after one more failure in a row; returns for how
    /// long (`backoff.delay(failures)`).
    fn mark_unreachable(&self, target: &Target) -> Duration {
        let backoff = self.cfg.backoff;
        let mut reg = self.reg();
        let now = Instant::now();
        // Bounded: a mark is forgotten (and its count of failures with it) `max` after
        // it expired; whenever one is added.
        reg.unreachable.retain(|_, d| d.until + backoff.max > now);
        let failures = reg.unreachable.get(target).map_or(0, |d| d.failures) + 1;
        let delay = backoff.delay(failures);
        if reg.unreachable.contains_key(target)
            || reg.unreachable.len() < self.cfg.limits.max_connections
        {
            reg.unreachable.insert(
                target.clone(),
                Down {
                    until: now + delay,
                    failures,
                },
            );
        }
        delay
    }

    /// A connection to `target` is up: its failures are forgotten.
    fn mark_reachable(&self, target: &Target) {
        self.reg().unreachable.remove(target);
    }

    /// Reports messages that were accepted but never sent (never waits: with the
    /// receiver gone or full, the report is dropped and the transaction layer times
    /// out as before).
    fn report(&self, f: SendFailure) {
        let tx = self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(tx) = tx else { return };
        if let Err(e) = tx.try_send(f) {
            tracing::warn!(error = %e, "SIP send failure not reported: receiver full or gone");
        }
    }

    /// Reports that connection `id` ended ([`SipTransport::take_closed`]); dropped
    /// (logged) when the receiver is gone or full.
    fn report_closed(&self, id: ConnectionId) {
        let tx = self
            .closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(tx) = tx else { return };
        if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(id) {
            tracing::warn!(conn = %id, "SIP connection end not reported: receiver full");
        }
    }

    fn release(&self, id: ConnectionId) {
        let mut reg = self.reg();
        let Some(e) = reg.conns.remove(&id) else {
            return;
        };
        if e.inbound
            && let Some(n) = reg.per_ip.get_mut(&e.peer.ip())
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                reg.per_ip.remove(&e.peer.ip());
            }
        }
        if let Some(t) = e.target
            && let Some(v) = reg.by_target.get_mut(&t)
        {
            for slot in v.iter_mut() {
                if *slot == Some(id) {
                    *slot = None;
                }
            }
            if v.iter().all(Option::is_none) {
                reg.by_target.remove(&t);
            }
        }
    }

    pub(crate) fn acceptor(&self) -> Option<&TlsAcceptor> {
        self.acceptor.as_ref()
    }
}

/// A registered connection; dropping it removes the connection from the registry.
pub(crate) struct Slot {
    shared: Arc<Shared>,
    pub(crate) id: ConnectionId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.release(self.id);
        self.shared.report_closed(self.id);
    }
}

/// Sends the shutdown signal when the last [`SipTransport`] clone is dropped.
struct Lifetime(Arc<Shared>);

impl Drop for Lifetime {
    fn drop(&mut self) {
        self.0.shutdown.send_replace(true);
    }
}

/// The handle to the SIP transport: cheap to clone, `Send + Sync`. Dropping the last
/// clone (or [`SipTransport::shutdown`]) stops every listener and connection task.
#[derive(Clone)]
pub struct SipTransport {
    shared: Arc<Shared>,
    _life: Arc<Lifetime>,
}

impl fmt::Debug for SipTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SipTransport")
            .field("connections", &self.connection_count())
            .field("tls_server", &self.shared.acceptor.is_some())
            .field("tls_client", &self.shared.connector.is_some())
            .finish_non_exhaustive()
    }
}

impl SipTransport {
    /// A transport with this configuration; `tls` gives the TLS client configuration (and
    /// the server one when it holds an identity). Returns the handle and the receiving
    /// end of the inbound channel (depth `limits.inbound_queue`).
    pub fn new(
        cfg: TransportConfig,
        tls: Option<&TlsSettings>,
    ) -> Result<(SipTransport, mpsc::Receiver<Inbound>), TransportError> {
        let (acceptor, connector) = match tls {
            None => (None, None),
            Some(t) => {
                let acceptor = match &t.identity {
                    Some(_) => Some(TlsAcceptor::from(t.server_config()?)),
                    None => None,
                };
                (acceptor, Some(TlsConnector::from(t.client_config()?)))
            }
        };
        let (tx, rx) = mpsc::channel(cfg.limits.inbound_queue.max(1));
        let shared = Arc::new(Shared {
            cfg,
            acceptor,
            connector,
            inbound: tx,
            reg: Mutex::new(Registry::default()),
            next_id: AtomicU64::new(1),
            udp: Mutex::new(None),
            shutdown: watch::channel(false).0,
            failures: Mutex::new(None),
            closed: Mutex::new(None),
        });
        let life = Arc::new(Lifetime(shared.clone()));
        Ok((
            SipTransport {
                shared,
                _life: life,
            },
            rx,
        ))
    }

    /// The configuration.
    pub fn config(&self) -> &TransportConfig {
        &self.shared.cfg
    }

    /// Listens for TCP connections; returns the bound address.
    pub async fn listen_tcp(&self, addr: SocketAddr) -> Result<SocketAddr, TransportError> {
        self.listen(addr, TransportKind::Tcp).await
    }

    /// Listens for TLS connections; returns the bound address.
    pub async fn listen_tls(&self, addr: SocketAddr) -> Result<SocketAddr, TransportError> {
        if self.shared.acceptor.is_none() {
            return Err(TransportError::TlsNotConfigured);
        }
        self.listen(addr, TransportKind::Tls).await
    }

    async fn listen(
        &self,
        addr: SocketAddr,
        kind: TransportKind,
    ) -> Result<SocketAddr, TransportError> {
        let l = TcpListener::bind(addr).await?;
        let local = l.local_addr()?;
        tokio::spawn(accept_loop(self.shared.clone(), l, kind));
        tracing::info!(%local, %kind, "SIP listening");
        Ok(local)
    }

    /// Binds the UDP socket (one per transport) used to receive and to send to UDP
    /// targets; returns its address.
    pub async fn bind_udp(&self, addr: SocketAddr) -> Result<SocketAddr, TransportError> {
        // Two handles on one socket: tokio's for the receive loop, a plain non-blocking
        // one for sends, so that a send never waits and fails only when the socket
        // buffer is really full (tokio's `try_send_to` also fails before the first
        // readiness event).
        let std_sock = std::net::UdpSocket::bind(addr)?;
        std_sock.set_nonblocking(true)?;
        let sender = Arc::new(std_sock.try_clone()?);
        let s = Arc::new(UdpSocket::from_std(std_sock)?);
        let local = s.local_addr()?;
        *self
            .shared
            .udp
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(sender.clone());
        tokio::spawn(udp::run(self.shared.clone(), s, sender, local));
        tracing::info!(%local, "SIP listening (UDP)");
        Ok(local)
    }

    /// Queues `msg` for `target` on the outbound connection of its Call-ID's slot
    /// (one of `max_connections_per_target`; opened in the background, with backoff,
    /// when the slot has none). All the messages of one Call-ID, so all the requests
    /// of one dialog, take one connection and arrive in the order they were sent: a
    /// UAS refuses an in-dialog request whose CSeq is below the last one it saw (500,
    /// RFC 3261 §12.2.2), which spreading a dialog over two connections would cause.
    /// Dialogs spread over the slots. Never waits: a full queue is an error the caller
    /// turns into a 503.
    pub fn send(&self, target: &Target, msg: &Message) -> Result<(), SendError> {
        self.send_bytes(target, msg.to_bytes())
    }

    /// [`send`](Self::send) for a message that is already encoded (a transaction
    /// layer's output): `bytes` must be one complete SIP message, with Content-Length
    /// on streams (RFC 3261 §18.3). Not checked.
    pub fn send_bytes(&self, target: &Target, bytes: Bytes) -> Result<(), SendError> {
        if target.kind == TransportKind::Udp {
            return self.send_udp(target.addr, &bytes);
        }
        if *self.shared.shutdown.borrow() {
            return Err(SendError::ShutDown);
        }
        let lim = &self.shared.cfg.limits;
        let mut reg = self.shared.reg();
        if let Some(down) = reg.unreachable.get(target).copied() {
            let now = Instant::now();
            if down.until > now {
                return Err(SendError::Unreachable {
                    retry_after: down.until - now,
                });
            }
            // Expired: a new attempt; the count of failures stays until one succeeds.
        }
        let slots = lim.max_connections_per_target.max(1);
        let slot = dialog_slot(&bytes, slots);
        let current = reg
            .by_target
            .get(target)
            .and_then(|v| v.get(slot).copied().flatten())
            .and_then(|id| reg.conns.get(&id).map(|e| (id, e)))
            .filter(|(_, e)| !e.tx.is_closed());
        if let Some((id, e)) = current {
            return match e.tx.try_send(bytes) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => Err(SendError::QueueFull(id)),
                Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::ConnectionClosed(id)),
            };
        }
        // A new outbound connection.
        if target.kind == TransportKind::Tls {
            if self.shared.connector.is_none() {
                return Err(SendError::TlsNotConfigured);
            }
            let ok = target
                .server_name
                .as_deref()
                .is_some_and(|n| ServerName::try_from(n).is_ok());
            if !ok {
                return Err(SendError::BadServerName(target.server_name.clone()));
            }
        }
        if reg.conns.len() >= lim.max_connections {
            return Err(SendError::TooManyConnections);
        }
        let (tx, rx) = mpsc::channel(lim.outbound_queue.max(1));
        let id = self.shared.new_id();
        // Capacity is at least one: this cannot fail.
        tx.try_send(bytes).map_err(|_| SendError::QueueFull(id))?;
        reg.conns.insert(
            id,
            Entry {
                tx,
                peer: target.addr,
                inbound: false,
                identity: None,
                target: Some(target.clone()),
            },
        );
        let v = reg
            .by_target
            .entry(target.clone())
            .or_insert_with(|| vec![None; slots]);
        if let Some(s) = v.get_mut(slot) {
            *s = Some(id);
        }
        drop(reg);
        let slot = Slot {
            shared: self.shared.clone(),
            id,
        };
        tokio::spawn(outbound(self.shared.clone(), slot, target.clone(), rx));
        Ok(())
    }

    fn send_udp(&self, addr: SocketAddr, bytes: &[u8]) -> Result<(), SendError> {
        if bytes.len() > self.shared.cfg.limits.max_udp_datagram {
            return Err(SendError::MessageTooLarge(bytes.len()));
        }
        let sock = self
            .shared
            .udp
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(SendError::UdpNotBound)?;
        match sock.send_to(bytes, addr) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(SendError::UdpBusy),
            Err(e) => Err(SendError::Io(e)),
        }
    }

    /// Sends `msg` (normally a response) back the way a message came: on its stream
    /// connection, or to its UDP source address. On a stream, a request (ours, in a
    /// dialog the peer opened) is refused with [`SendError::QueueFull`] once three
    /// quarters of the connection's outbound queue are taken, so responses always
    /// have room: the connection stops reading the peer while more than half is
    /// waiting (backpressure), and a response fails only on a queue full of responses.
    pub fn reply(&self, source: &Source, msg: &Message) -> Result<(), SendError> {
        self.reply_bytes(source, msg.to_bytes())
    }

    /// [`reply`](Self::reply) for a message that is already encoded (see
    /// [`send_bytes`](Self::send_bytes)).
    pub fn reply_bytes(&self, source: &Source, bytes: Bytes) -> Result<(), SendError> {
        let Some(id) = source.connection else {
            return self.send_udp(source.peer, &bytes);
        };
        self.send_on_bytes(id, bytes)
    }

    /// Queues `msg` on one connection.
    pub fn send_on(&self, id: ConnectionId, msg: &Message) -> Result<(), SendError> {
        self.send_on_bytes(id, msg.to_bytes())
    }

    fn send_on_bytes(&self, id: ConnectionId, bytes: Bytes) -> Result<(), SendError> {
        let reg = self.shared.reg();
        let e = reg.conns.get(&id).ok_or(SendError::ConnectionClosed(id))?;
        // A request (ours, in a dialog the peer opened) leaves a quarter of the queue
        // to responses: an answer to a request already read must not find the queue
        // full of our own traffic (its transaction would fail and the peer's time
        // out). The connection stops reading while more than half is waiting.
        if !bytes.starts_with(b"SIP/2.0 ") && e.tx.capacity() <= e.tx.max_capacity() / 4 {
            return Err(SendError::QueueFull(id));
        }
        match e.tx.try_send(bytes) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(SendError::QueueFull(id)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::ConnectionClosed(id)),
        }
    }

    /// The verified TLS names of a connection's peer (empty for TCP, for a TLS peer
    /// without a certificate, or a closed connection): check a From domain against them
    /// with [`crate::tls::name_matches`] or [`PeerIdentity::matches`].
    pub fn peer_names(&self, id: ConnectionId) -> Vec<String> {
        self.peer_identity(id)
            .map(|p| p.names.clone())
            .unwrap_or_default()
    }

    /// The verified TLS identity of a connection's peer.
    pub fn peer_identity(&self, id: ConnectionId) -> Option<Arc<PeerIdentity>> {
        self.shared.reg().conns.get(&id)?.identity.clone()
    }

    /// Open stream connections (both directions, TLS handshakes included).
    pub fn connection_count(&self) -> usize {
        self.shared.reg().conns.len()
    }

    /// Open outbound connections to `target`.
    pub fn connections_to(&self, target: &Target) -> usize {
        self.shared
            .reg()
            .by_target
            .get(target)
            .map_or(0, |v| v.iter().flatten().count())
    }

    /// The receiver of [`SendFailure`]s: messages [`send`](Self::send) accepted that
    /// never reached the wire, reported as soon as the connection attempt fails (or
    /// the connection closes with them queued). Depth `limits.inbound_queue`; reports
    /// that find it full are dropped (logged). Reports start with the first call; a
    /// second call replaces the receiver (the first one then ends). [`SipUa`] takes it
    /// when it is spawned and fails the transactions on that target at once.
    ///
    /// [`SipUa`]: super::SipUa
    pub fn take_failures(&self) -> mpsc::Receiver<SendFailure> {
        let (tx, rx) = mpsc::channel(self.shared.cfg.limits.inbound_queue.max(1));
        *self
            .shared
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tx);
        rx
    }

    /// The receiver of connection ends: the [`ConnectionId`] of every stream
    /// connection (inbound or outbound) once it is gone for good, after the last
    /// message received on it was queued on the inbound channel, so a reader that
    /// prefers the inbound channel sees that message first. An outbound connection
    /// that reconnects keeps its id and is reported when it gives up. Depth
    /// `limits.inbound_queue`; reports that find it full are dropped (logged).
    /// Reports start with the first call; a second call replaces the receiver.
    /// [`SipUa`] takes it when it is spawned and ends the IM sessions that ran on
    /// the connection.
    ///
    /// [`SipUa`]: super::SipUa
    pub fn take_closed(&self) -> mpsc::Receiver<ConnectionId> {
        let (tx, rx) = mpsc::channel(self.shared.cfg.limits.inbound_queue.max(1));
        *self
            .shared
            .closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tx);
        rx
    }

    /// Stops every listener and connection (queued messages are dropped).
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }
}

async fn accept_loop(shared: Arc<Shared>, l: TcpListener, kind: TransportKind) {
    let mut stop = shared.shutdown_signal();
    if *stop.borrow_and_update() {
        return;
    }
    loop {
        let r = tokio::select! {
            r = l.accept() => r,
            _ = stop.changed() => return,
        };
        let (tcp, peer) = match r {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: do not spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        match shared.admit_inbound(peer) {
            Ok((slot, rx)) => {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(inbound(shared.clone(), slot, tcp, peer, kind, rx));
            }
            Err(limit) => {
                tracing::debug!(%peer, limit, "SIP connection refused: limit reached");
                drop(tcp);
            }
        }
    }
}

async fn inbound(
    shared: Arc<Shared>,
    slot: Slot,
    tcp: TcpStream,
    peer: SocketAddr,
    kind: TransportKind,
    mut rx: mpsc::Receiver<Bytes>,
) {
    let Ok(local) = tcp.local_addr() else {
        return;
    };
    let source = Source {
        transport: kind,
        peer,
        local,
        connection: Some(slot.id),
    };
    let end = match kind {
        TransportKind::Tls => {
            let Some(acceptor) = shared.acceptor().cloned() else {
                return;
            };
            let hs =
                tokio::time::timeout(shared.cfg.timers.handshake_timeout, acceptor.accept(tcp))
                    .await;
            let tls = match hs {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let ident = PeerIdentity::from_certs(tls.get_ref().1.peer_certificates()).map(Arc::new);
            shared.set_identity(slot.id, ident.clone());
            tracing::debug!(%peer, conn = %slot.id, names = ?ident.as_ref().map(|i| i.names()), "TLS connection accepted");
            stream::run(&shared, tls, source, ident, &mut rx, false).await
        }
        _ => stream::run(&shared, tcp, source, None, &mut rx, false).await,
    };
    tracing::debug!(%peer, conn = %slot.id, reason = ?end.close, "SIP connection closed");
}

enum Connected {
    Tcp(TcpStream),
    Tls(
        Box<tokio_rustls::client::TlsStream<TcpStream>>,
        Arc<PeerIdentity>,
    ),
}

async fn connect(shared: &Shared, target: &Target) -> Result<Connected, (FailureKind, String)> {
    let t = &shared.cfg.timers;
    let tls_err = |m: String| (FailureKind::Tls, m);
    let tcp = match tokio::time::timeout(t.connect_timeout, TcpStream::connect(target.addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let kind = if e.kind() == io::ErrorKind::ConnectionRefused {
                FailureKind::Refused
            } else {
                FailureKind::ConnectFailed
            };
            return Err((kind, format!("connect: {e}")));
        }
        Err(_) => return Err((FailureKind::Timeout, "connect timed out".into())),
    };
    let _ = tcp.set_nodelay(true);
    if target.kind != TransportKind::Tls {
        return Ok(Connected::Tcp(tcp));
    }
    let connector = shared
        .connector
        .clone()
        .ok_or_else(|| tls_err("TLS is not configured".into()))?;
    let name = target
        .server_name
        .clone()
        .ok_or_else(|| tls_err("no server name".into()))?;
    let sn = ServerName::try_from(name.clone()).map_err(|e| tls_err(e.to_string()))?;
    let tls = match tokio::time::timeout(t.handshake_timeout, connector.connect(sn, tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(tls_err(format!("TLS handshake: {e}"))),
        Err(_) => return Err((FailureKind::Timeout, "TLS handshake timed out".into())),
    };
    let ident = PeerIdentity::from_certs(tls.get_ref().1.peer_certificates())
        .ok_or_else(|| tls_err("server sent no certificate".into()))?;
    // webpki has verified the name (wildcards allowed); RFC 5922 wants an exact match.
    if !ident.matches(&name) {
        return Err(tls_err(format!(
            "certificate names {:?}, not exactly {name}",
            ident.names()
        )));
    }
    Ok(Connected::Tls(Box::new(tls), Arc::new(ident)))
}

/// Closes `rx` and empties it; returns how many messages it held.
fn drop_queued(rx: &mut mpsc::Receiver<Bytes>) -> usize {
    rx.close();
    let mut n = 0;
    while rx.try_recv().is_ok() {
        n += 1;
    }
    n
}

/// One outbound connection: connects, runs the stream loop, and on failure reports
/// the messages still queued ([`SendFailure`]) instead of keeping them:
///
/// - a connect (TCP, TLS handshake, RFC 5922 name check) that fails: the target is
///   marked unreachable for `backoff.delay(n)` (`n` failures in a row, across
///   connections; a successful connect resets it), the queued messages are dropped and
///   reported at once;
/// - an established connection that breaks with messages queued is reconnected at
///   once (those messages were never written), up to `backoff.attempts` times in a row
///   (after the first, with the backoff delay; a connection on which something was
///   received starts the count again); then as a failed connect
///   ([`FailureKind::ConnectionLost`]);
/// - a connection closed on purpose (idle, protocol error) with messages that slipped
///   into its queue meanwhile reports them ([`FailureKind::Closed`]).
async fn outbound(shared: Arc<Shared>, slot: Slot, target: Target, mut rx: mpsc::Receiver<Bytes>) {
    let mut reconnects: u32 = 0;
    let mut stop = shared.shutdown_signal();
    let backoff = shared.cfg.backoff;
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        let attempt = tokio::select! {
            r = connect(&shared, &target) => r,
            _ = stop.changed() => return,
        };
        let (kind, why) = match attempt {
            Ok(c) => {
                shared.mark_reachable(&target);
                let local = match &c {
                    Connected::Tcp(s) => s.local_addr(),
                    Connected::Tls(s, _) => s.get_ref().0.local_addr(),
                };
                let source = Source {
                    transport: target.kind,
                    peer: target.addr,
                    local: local.unwrap_or(target.addr),
                    connection: Some(slot.id),
                };
                tracing::debug!(%target, conn = %slot.id, "SIP connection established");
                let end: End = match c {
                    Connected::Tcp(s) => stream::run(&shared, s, source, None, &mut rx, true).await,
                    Connected::Tls(s, id) => {
                        shared.set_identity(slot.id, Some(id.clone()));
                        stream::run(&shared, *s, source, Some(id), &mut rx, true).await
                    }
                };
                tracing::debug!(%target, conn = %slot.id, reason = ?end.close, "SIP connection closed");
                if !end.close.is_broken() || rx.is_empty() {
                    // New sends now see a closed queue and open a new connection.
                    let dropped = drop_queued(&mut rx);
                    if dropped > 0 && end.close != Close::Shutdown {
                        tracing::info!(%target, dropped, "messages dropped at close");
                        shared.report(SendFailure {
                            target: target.clone(),
                            connection: slot.id,
                            kind: FailureKind::Closed,
                            dropped,
                            retry_after: Duration::ZERO,
                        });
                    }
                    return;
                }
                if end.received_any {
                    reconnects = 0;
                }
                reconnects += 1;
                if reconnects <= backoff.attempts {
                    tracing::info!(%target, conn = %slot.id, queued = rx.len(), attempt = reconnects,
                        "SIP connection lost with messages queued; reconnecting");
                    if reconnects > 1 {
                        tokio::select! {
                            _ = tokio::time::sleep(backoff.delay(reconnects - 1)) => {}
                            _ = stop.changed() => return,
                        }
                    }
                    continue;
                }
                (
                    FailureKind::ConnectionLost,
                    format!("connection lost: {:?}", end.close),
                )
            }
            Err(e) => e,
        };
        // Mark first: a send from now on fails at once instead of queueing here.
        let retry_after = shared.mark_unreachable(&target);
        let dropped = drop_queued(&mut rx);
        tracing::warn!(%target, conn = %slot.id, error = %why, dropped, ?retry_after,
            "SIP target unreachable; queued messages reported failed");
        if dropped > 0 {
            shared.report(SendFailure {
                target: target.clone(),
                connection: slot.id,
                kind,
                dropped,
                retry_after,
            });
        }
        return;
    }
}

/// The slot (of `slots`) of a message's Call-ID (long or compact form `i`), read from
/// its header section; 0 without one. A fixed hash, so one Call-ID always gets the
/// same slot.
fn dialog_slot(msg: &[u8], slots: usize) -> usize {
    use std::hash::Hasher;
    if slots <= 1 {
        return 0;
    }
    let head = msg
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(msg, |end| &msg[..end]);
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i") {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            h.write(line[colon + 1..].trim_ascii());
            return usize::try_from(h.finish() % slots as u64).unwrap_or(0);
        }
    }
    0
}

#[cfg(test)]
mod slot_tests {
    use super::dialog_slot;

    #[test]
    fn one_call_id_one_slot_and_call_ids_spread() {
        let msg = |call: &str, compact: bool| {
            let name = if compact { "i" } else { "Call-ID" };
            format!(
                "MESSAGE sip:b@x SIP/2.0\r\nVia: SIP/2.0/TLS a;branch=z9hG4bK1\r\n{name}: {call}\r\nCSeq: 2 MESSAGE\r\n\r\nCall-ID: not-a-header"
            )
        };
        for call in ["a@x", "b@x", "c@x"] {
            let s = dialog_slot(msg(call, false).as_bytes(), 2);
            assert_eq!(
                s,
                dialog_slot(msg(call, true).as_bytes(), 2),
                "compact form"
            );
            assert_eq!(
                s,
                dialog_slot(
                    format!("MESSAGE sip:b@x SIP/2.0\r\ncall-id:   {call} \r\n\r\n").as_bytes(),
                    2
                )
            );
        }
        let used: std::collections::HashSet<usize> = (0..64)
            .map(|i| dialog_slot(msg(&format!("{i}@x"), false).as_bytes(), 2))
            .collect();
        assert_eq!(used.len(), 2, "64 Call-IDs use both slots");
        assert_eq!(dialog_slot(b"MESSAGE sip:b@x SIP/2.0\r\n\r\n", 2), 0);
        assert_eq!(dialog_slot(msg("a@x", false).as_bytes(), 1), 0);
    }
}
