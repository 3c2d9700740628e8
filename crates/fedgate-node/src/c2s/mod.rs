//! The XMPP client-to-server driver for local users: [`C2sListener`].
//!
//! # Tasks and channels
//! ```text
//!  C2sListener::bind ─▶ accept task ──(limits: total, per IP)──▶ session task (per TCP)
//!     │  every `reload_interval`: UserDirectory::reload (spawned)
//!  session task: owns the socket (plain, then rustls after STARTTLS) and a C2sIncoming
//!     reads ─▶ C2sIncoming::handle_input ─▶ events:
//!        StartTls      ─▶ flush, TLS handshake with the node certificate (bounded), restart
//!        Authenticated ─▶ the account must exist in the authenticated domain
//!        Bound(jid)    ─▶ Router::register (a bounded queue + a SessionCtl)
//!        Stanza(el)    ─▶ Router::handle_from_client(..).await ─▶ replies written here;
//!                         after initial presence: offline messages peeked, written,
//!                         flushed to the socket, then acknowledged in the store
//!     [session queue] ─▶ C2sIncoming::send_stanza ─▶ socket (writes bounded by a timeout;
//!                        what is queued, up to 64 stanzas, goes out in one write)
//!     SessionCtl::kick ─▶ stream error (<conflict/>, <resource-constraint/>) and close
//!     shutdown         ─▶ </stream:stream>, close
//!  at the end: Router::unregister (unavailable broadcast; queued messages routed again)
//! ```
//! # Memory of an idle session
//! The task holds no read buffer (reads go through the thread's shared buffer,
//! `xmpp::io::poll_read_shared`), the machine gives its parser buffers back after each
//! read (`C2sIncoming::release_buffers`), and the rare large futures (the router's
//! answer to a client stanza, offline delivery, the TLS handshake, unregistering) are
//! boxed so that the task's own future stays small (~1.8 KiB). Measured with
//! `examples/node_load.rs` (BENCHMARKS.md).
//!
//! SASL runs inside the sans-IO machine against [`UserDirectory`](crate::core::UserDirectory),
//! an in-memory view of the store's SCRAM credentials filled through the
//! [`StoreHandle`](fedgate_store::StoreHandle) writer thread: the session task never blocks
//! on SQLite (PLAIN costs one PBKDF2 on the task, CPU only).
//!
//! # Not done
//! * `xmpp.c2s.allow_plain_without_tls` is not honoured: the c2s machine offers PLAIN only
//!   over TLS, always.
//! * fedgate-xmpp's `CredentialVerifier` is not told the stream's domain: with several
//!   hosted domains, a localpart that exists in more than one of them cannot log in
//!   (logged), and the authenticated JID is checked against the store before binding.
//! * No XEP-0198 stream management, no direct TLS (5223), no client certificates.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fedgate_policy::UserAddress;
use fedgate_store::{OfflineStore, StoreError};
use fedgate_xmpp::c2s::{C2sConfig, C2sEvent, C2sIncoming};
use fedgate_xmpp::writer::{STREAM_CLOSE, StreamHeaderOut, write_stream_header};
use fedgate_xmpp::{DomainPart, Element, Limits, StreamError, StreamErrorCondition};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::core::{Registration, Router, util};
use crate::xmpp::poll_read_shared;

/// Stanzas taken from the session queue and written with one write call at most.
const WRITE_BATCH: usize = 64;

/// Settings of the c2s listener.
#[derive(Debug, Clone)]
pub struct C2sListenerConfig {
    /// `xmpp.c2s.listen`.
    pub listen: SocketAddr,
    /// Hosted domains (clients' `to`).
    pub domains: Vec<DomainPart>,
    /// STARTTLS with the node certificate; `None`: no TLS (then no PLAIN either).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `xmpp.c2s.require_tls`: no SASL before STARTTLS.
    pub require_tls: bool,
    /// `xmpp.c2s.max_auth_failures`.
    pub max_auth_failures: u32,
    /// Reader limits (`[limits.xmpp]`).
    pub limits: Limits,
    /// Client connections at once (`limits.node.max_connections`).
    pub max_connections: usize,
    /// Client connections at once from one IP (`limits.node.max_connections_per_ip`).
    pub max_connections_per_ip: usize,
    /// Writing one batch to a client. Default 30 s.
    pub write_timeout: Duration,
    /// The TLS handshake. Default 10 s.
    pub handshake_timeout: Duration,
    /// How often the accounts are re-read from the store. Default 60 s.
    pub reload_interval: Duration,
    /// How long [`C2sListener::shutdown`] waits for the sessions to close. Default 5 s.
    pub shutdown_grace: Duration,
}

impl C2sListenerConfig {
    /// Defaults for `listen` and `domains`: no TLS, TLS not required, 3 failures, 1024
    /// connections (32 per IP).
    pub fn new(listen: SocketAddr, domains: Vec<DomainPart>) -> Self {
        C2sListenerConfig {
            listen,
            domains,
            tls: None,
            require_tls: false,
            max_auth_failures: 3,
            limits: Limits::default(),
            max_connections: 1024,
            max_connections_per_ip: 32,
            write_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            reload_interval: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// The running c2s listener; see the module docs.
#[derive(Debug)]
pub struct C2sListener {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    cfg: C2sListenerConfig,
    base: C2sConfig,
    router: Router,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl C2sListener {
    /// Binds `cfg.listen` and starts accepting.
    pub async fn bind(cfg: C2sListenerConfig, router: Router) -> io::Result<C2sListener> {
        let listener = TcpListener::bind(cfg.listen).await?;
        let local_addr = listener.local_addr()?;
        let base = C2sConfig {
            domains: cfg.domains.clone(),
            limits: cfg.limits.clone(),
            tls_available: cfg.tls.is_some(),
            require_tls: cfg.require_tls && cfg.tls.is_some(),
            verifier: router.users().clone(),
            seed: [0; 32],
            max_auth_failures: cfg.max_auth_failures,
        };
        let (tx, rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            cfg,
            base,
            router,
            per_ip: Mutex::new(HashMap::new()),
        });
        let task = tokio::spawn(accept_loop(listener, shared, rx));
        tracing::info!(addr = %local_addr, "c2s: listening");
        Ok(C2sListener {
            local_addr,
            shutdown: tx,
            task,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every stream with `</stream:stream>` and waits (bounded by
    /// `shutdown_grace`) for the sessions to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let total = Arc::new(Semaphore::new(shared.cfg.max_connections.max(1)));
    let mut sessions = JoinSet::new();
    let mut reload = tokio::time::interval(shared.cfg.reload_interval.max(Duration::from_secs(1)));
    reload.tick().await;
    loop {
        tokio::select! {
            r = listener.accept() => {
                let Ok((sock, peer)) = r else { continue };
                let _ = sock.set_nodelay(true);
                let permit = Arc::clone(&total).try_acquire_owned();
                let ip_ok = {
                    let mut m = shared.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
                    let n = m.entry(peer.ip()).or_insert(0);
                    if *n < shared.cfg.max_connections_per_ip { *n += 1; true } else { false }
                };
                match permit {
                    Ok(permit) if ip_ok => {
                        let (shared, stop) = (Arc::clone(&shared), stop.clone());
                        sessions.spawn(async move {
                            session(Io::Plain(sock), peer, Arc::clone(&shared), stop).await;
                            drop(permit);
                            let mut m = shared.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
                            if let Some(n) = m.get_mut(&peer.ip()) {
                                *n -= 1;
                                if *n == 0 { m.remove(&peer.ip()); }
                            }
                        });
                    }
                    other => {
                        if ip_ok {
                            release_ip(&shared, peer.ip());
                        }
                        drop(other);
                        tracing::warn!(%peer, "c2s: connection limit reached, refused");
                        tokio::spawn(refuse(sock, shared.cfg.write_timeout));
                    }
                }
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            _ = reload.tick() => {
                let users = Arc::clone(shared.router.users());
                tokio::spawn(async move {
                    if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(10), users.reload()).await {
                        tracing::warn!(error = %e, "c2s: reloading the accounts failed");
                    }
                });
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let grace = shared.cfg.shutdown_grace;
    if tokio::time::timeout(grace, async {
        while sessions.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("c2s: sessions still open after the shutdown grace period; aborted");
        sessions.abort_all();
    }
}

fn release_ip(shared: &Shared, ip: IpAddr) {
    let mut m = shared.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(n) = m.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            m.remove(&ip);
        }
    }
}

async fn refuse(mut sock: TcpStream, t: Duration) {
    let mut s = String::new();
    write_stream_header(&mut s, &StreamHeaderOut::default());
    StreamError::new(StreamErrorCondition::PolicyViolation).write_to(&mut s);
    s.push_str(STREAM_CLOSE);
    let _ = tokio::time::timeout(t, async {
        sock.write_all(s.as_bytes()).await?;
        sock.shutdown().await
    })
    .await;
}

/// The client's byte stream: plain, then TLS after STARTTLS.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Gone,
}

impl Io {
    /// One read into the thread's shared buffer, handed to `f` (see
    /// [`poll_read_shared`]): an idle connection holds no read buffer.
    fn poll_read_with(
        &mut self,
        cx: &mut std::task::Context<'_>,
        f: impl FnOnce(&[u8]),
    ) -> std::task::Poll<io::Result<usize>> {
        match self {
            Io::Plain(s) => poll_read_shared(s, cx, f),
            Io::Tls(s) => poll_read_shared(s.as_mut(), cx, f),
            Io::Gone => std::task::Poll::Ready(Ok(0)),
        }
    }

    async fn write(&mut self, b: &[u8], t: Duration) -> io::Result<()> {
        let w = async {
            match self {
                Io::Plain(s) => {
                    s.write_all(b).await?;
                    s.flush().await
                }
                Io::Tls(s) => {
                    s.write_all(b).await?;
                    s.flush().await
                }
                Io::Gone => Err(io::ErrorKind::NotConnected.into()),
            }
        };
        tokio::time::timeout(t, w)
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "write timeout")))
    }

    async fn shutdown(&mut self) {
        let s = async {
            match self {
                Io::Plain(s) => s.shutdown().await,
                Io::Tls(s) => s.shutdown().await,
                Io::Gone => Ok(()),
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), s).await;
    }

    async fn start_tls(&mut self, cfg: Arc<rustls::ServerConfig>, t: Duration) -> io::Result<()> {
        let Io::Plain(s) = std::mem::replace(self, Io::Gone) else {
            return Err(io::Error::other("STARTTLS twice"));
        };
        let acc = tokio_rustls::TlsAcceptor::from(cfg);
        let s = tokio::time::timeout(t, acc.accept(s))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timeout"))??;
        *self = Io::Tls(Box::new(s));
        Ok(())
    }
}

struct Session {
    m: C2sIncoming,
    io: Io,
    shared: Arc<Shared>,
    reg: Option<Registration>,
}

impl Session {
    async fn flush(&mut self) -> io::Result<()> {
        while let Some(b) = self.m.poll_transmit() {
            self.io.write(&b, self.shared.cfg.write_timeout).await?;
        }
        Ok(())
    }

    async fn stream_error(&mut self, c: StreamErrorCondition) {
        let _ = self.flush().await;
        let mut s = StreamError::new(c).to_xml();
        s.push_str(STREAM_CLOSE);
        let _ = self
            .io
            .write(s.as_bytes(), self.shared.cfg.write_timeout)
            .await;
    }

    /// Handles the machine's events; `Ok(false)`: the stream is over.
    async fn events(&mut self) -> io::Result<bool> {
        loop {
            self.flush().await?;
            let Some(ev) = self.m.poll_event() else {
                return Ok(!self.m.is_closed());
            };
            match ev {
                C2sEvent::StartTls => {
                    let Some(tls) = self.shared.cfg.tls.clone() else {
                        return Ok(false);
                    };
                    // Boxed, like the other rare and large futures below: the session
                    // task's own future stays small while it is idle.
                    Box::pin(self.io.start_tls(tls, self.shared.cfg.handshake_timeout)).await?;
                    self.m.handle_tls_established(Instant::now().into_std());
                }
                C2sEvent::Authenticated(bare) => {
                    if !self.shared.router.users().exists(&bare) {
                        tracing::warn!(jid = %bare, "c2s: authenticated account not hosted in that domain");
                        self.stream_error(StreamErrorCondition::NotAuthorized).await;
                        return Ok(false);
                    }
                    tracing::debug!(jid = %bare, "c2s: authenticated");
                }
                C2sEvent::Bound(full) => {
                    tracing::info!(jid = %full, "c2s: session bound");
                    self.reg = Some(self.shared.router.register(full));
                }
                C2sEvent::Stanza(el) => {
                    let Some(id) = self.reg.as_ref().map(|r| r.id) else {
                        continue;
                    };
                    let out = Box::pin(self.shared.router.handle_from_client(id, el)).await;
                    for r in &out.replies {
                        self.m.send_stanza(r);
                    }
                    if out.deliver_offline {
                        Box::pin(self.offline()).await?;
                    }
                }
                C2sEvent::Closed { sent, received } => {
                    if let Some(e) = received.or(sent) {
                        tracing::debug!(condition = %e.condition, "c2s: stream closed with an error");
                    }
                }
                _ => {}
            }
        }
    }

    /// Offline messages: peeked, written and flushed to the socket, then acknowledged.
    async fn offline(&mut self) -> io::Result<()> {
        let Some(full) = self.m.jid().cloned() else {
            return Ok(());
        };
        let Ok(user) = UserAddress::new(&full.bare().to_string()) else {
            return Ok(());
        };
        let store = self.shared.router.store().clone();
        let u = user.clone();
        let peeked = match store.submit(move |s| s.offline_peek(&u)) {
            Ok(r) => tokio::time::timeout(Duration::from_secs(10), r)
                .await
                .unwrap_or(Err(StoreError::WriterGone)),
            Err(e) => Err(e),
        };
        let msgs = match peeked {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(jid = %full, error = %e, "c2s: offline messages not read");
                return Ok(());
            }
        };
        let domain = full.domain().to_string();
        for batch in msgs.chunks(32) {
            let mut ids = Vec::with_capacity(batch.len());
            for msg in batch {
                match util::parse_stanza(&msg.stanza) {
                    Some(el) => {
                        let el = crate::core::router_with_delay(el, &domain, msg.stored_at);
                        self.m.send_stanza(&el);
                    }
                    None => {
                        tracing::warn!(id = msg.id.get(), "c2s: unreadable offline message dropped")
                    }
                }
                ids.push(msg.id);
            }
            self.flush().await?; // written to the socket before the store forgets them
            let u = user.clone();
            let n = ids.len();
            if let Ok(r) = store.submit(move |s| s.offline_ack(&u, &ids)) {
                let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
            }
            tracing::debug!(jid = %full, count = n, "c2s: offline messages delivered");
        }
        Ok(())
    }
}

async fn recv(reg: &mut Option<Registration>) -> Option<Element> {
    match reg {
        Some(r) => r.rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn session(io: Io, peer: SocketAddr, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut cfg = shared.base.clone();
    if crate::tls::provider()
        .secure_random
        .fill(&mut cfg.seed)
        .is_err()
    {
        tracing::error!("c2s: no randomness; connection refused");
        return;
    }
    let m = C2sIncoming::new(Arc::new(cfg), Instant::now().into_std());
    let mut s = Session {
        m,
        io,
        shared: Arc::clone(&shared),
        reg: None,
    };
    tracing::debug!(%peer, "c2s: connection");
    // The shutdown and kick waits live across loop turns: made once, not registered
    // and unregistered again for every stanza written.
    let mut stopped = std::pin::pin!(async move {
        let _ = stop.changed().await;
    });
    let mut kicked: Option<Pin<Box<dyn Future<Output = StreamErrorCondition> + Send>>> = None;
    loop {
        match s.events().await {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "c2s: connection lost");
                break;
            }
        }
        if kicked.is_none()
            && let Some(r) = s.reg.as_ref()
        {
            let ctl = Arc::clone(&r.ctl);
            kicked = Some(Box::pin(async move { ctl.wait().await }));
        }
        let deadline = s.m.poll_timeout().map(Instant::from_std);
        tokio::select! {
            r = std::future::poll_fn(|cx| {
                s.io.poll_read_with(cx, |b| {
                    s.m.handle_input(Instant::now().into_std(), b);
                    s.m.release_buffers();
                })
            }) => {
                if matches!(r, Ok(0) | Err(_)) {
                    break;
                }
            }
            Some(el) = recv(&mut s.reg) => {
                s.m.send_stanza(&el);
                // What else is queued goes out in the same write.
                if let Some(reg) = s.reg.as_mut() {
                    for _ in 1..WRITE_BATCH {
                        let Ok(el) = reg.rx.try_recv() else { break };
                        s.m.send_stanza(&el);
                    }
                }
            }
            c = async { match kicked.as_mut() { Some(k) => k.as_mut().await, None => std::future::pending().await } } => {
                tracing::info!(%peer, condition = %c, "c2s: session closed by the server");
                Box::pin(s.stream_error(c)).await;
                break;
            }
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                s.m.handle_timeout(Instant::now().into_std());
            }
            () = stopped.as_mut() => {
                s.m.close();
                let _ = s.flush().await;
                break;
            }
        }
    }
    s.io.shutdown().await;
    if let Some(mut reg) = s.reg.take() {
        reg.rx.close();
        let mut left = Vec::new();
        while let Ok(el) = reg.rx.try_recv() {
            left.push(el);
        }
        Box::pin(shared.router.unregister(reg.id, left)).await;
    }
    tracing::debug!(%peer, "c2s: connection ended");
}
