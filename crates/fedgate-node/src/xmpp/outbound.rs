//! Outbound links: one task per (local domain, remote domain), and verify-only
//! connections for dialback.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use fedgate_srv::{
    Failover, Failure, Health, HealthConfig, ResolveError, SplitMix64, SrvLookup, TargetList,
    Transport, XmppOptions, resolve_xmpp,
};
use fedgate_xmpp::s2s::{S2sConfig, S2sEvent, S2sOutgoing, VerifyRequest, VerifyResult};
use fedgate_xmpp::stanza::{StanzaErrorCondition as Cond, is_stanza};
use fedgate_xmpp::{DomainPart, Element};
use tokio::sync::{Semaphore, mpsc};

use super::io::{Conn, Dialer, TcpDialer};
use super::tasks::Tasks;
use super::{StanzaSink, XmppConfig, XmppTls, bounce, jid_domain, now, sleep_until};
use crate::tls::TlsError;

/// Why [`S2sOutbound::send`] refused a stanza. Delivery failures are not errors here:
/// they come back to the sink as bounces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// Not a `message`, `presence` or `iq`.
    #[error("not a stanza")]
    NotAStanza,
    /// `from` or `to` missing or not a JID.
    #[error("stanza addressing: {0}")]
    Addressing(&'static str),
    /// The `from` domain is not one we host.
    #[error("{0} is not a hosted domain")]
    NotLocal(String),
    /// The `to` domain is one we host: deliver it locally, not over s2s.
    #[error("{0} is a hosted domain")]
    LocalDestination(String),
    /// Called outside a tokio runtime.
    #[error("no tokio runtime")]
    NoRuntime,
    /// [`S2sOutbound::shutdown`] has begun: no new stanza is accepted.
    #[error("shutting down")]
    ShuttingDown,
}

type ResolveFuture = Pin<Box<dyn Future<Output = Result<TargetList, ResolveError>> + Send>>;

trait Resolve: Send + Sync + 'static {
    fn resolve(&self, domain: String, opts: XmppOptions, seed: u64) -> ResolveFuture;
}

struct Resolver<L>(Arc<L>);

impl<L: SrvLookup + Send + Sync + 'static> Resolve for Resolver<L> {
    fn resolve(&self, domain: String, opts: XmppOptions, seed: u64) -> ResolveFuture {
        let l = self.0.clone();
        Box::pin(async move {
            let mut rng = SplitMix64::new(seed);
            resolve_xmpp(&*l, &domain, &opts, &mut rng).await
        })
    }
}

#[derive(Debug)]
struct Link {
    id: u64,
    tx: mpsc::Sender<Element>,
}

pub(crate) struct Shared {
    pub(crate) cfg: XmppConfig,
    pub(crate) core: Arc<S2sConfig>,
    pub(crate) tls: Option<XmppTls>,
    client_tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) sink: StanzaSink,
    resolver: Box<dyn Resolve>,
    dialer: Box<dyn Dialer>,
    health: Mutex<Health>,
    links: Mutex<HashMap<(DomainPart, DomainPart), Link>>,
    pub(crate) verifications: Arc<Semaphore>,
    serial: AtomicU64,
    /// The link tasks (stopped and awaited by [`S2sOutbound::shutdown`]).
    tasks: Arc<Tasks>,
    pub(crate) handle: tokio::runtime::Handle,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("domains", &self.core.local_domains)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The outbound side of the driver, and the shared state of the listener: a cheap
/// handle (`Clone` is an `Arc` clone). See the [module docs](super).
#[derive(Debug, Clone)]
pub struct S2sOutbound {
    pub(crate) shared: Arc<Shared>,
}

/// Why the driver could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Not called inside a tokio runtime.
    #[error("no tokio runtime")]
    NoRuntime,
}

impl S2sOutbound {
    /// The driver over real TCP. `lookup` resolves peer domains (the DNS adapter, or a
    /// `StaticLookup`); `sink` receives inbound stanzas and bounces. Call inside a tokio
    /// runtime.
    pub fn new<L>(cfg: XmppConfig, lookup: L, sink: StanzaSink) -> Result<Self, BuildError>
    where
        L: SrvLookup + Send + Sync + 'static,
    {
        Self::with_dialer(cfg, lookup, sink, TcpDialer)
    }

    /// [`new`](Self::new) with another way to open connections (tests).
    pub fn with_dialer<L, D>(
        cfg: XmppConfig,
        lookup: L,
        sink: StanzaSink,
        dialer: D,
    ) -> Result<Self, BuildError>
    where
        L: SrvLookup + Send + Sync + 'static,
        D: Dialer,
    {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let client_tls = match &cfg.tls {
            Some(t) => Some(t.client.clone()),
            None => Some(XmppTls::client_without_identity()?),
        };
        let shared = Shared {
            core: cfg.core(),
            tls: cfg.tls.clone(),
            client_tls,
            sink,
            resolver: Box::new(Resolver(Arc::new(lookup))),
            dialer: Box::new(dialer),
            health: Mutex::new(Health::new(HealthConfig::default())),
            links: Mutex::new(HashMap::new()),
            verifications: Arc::new(Semaphore::new(cfg.limits.max_verifications)),
            serial: AtomicU64::new(1),
            tasks: Tasks::new(),
            handle,
            cfg,
        };
        Ok(S2sOutbound {
            shared: Arc::new(shared),
        })
    }

    /// Routes a stanza to its `to` domain. Returns at once: the stanza is queued on the
    /// link to that domain (opened on demand). A full queue or a failed link comes back
    /// to the sink as an error reply (never for a stanza of type `error`). Refused with
    /// [`SendError::ShuttingDown`] once [`shutdown`](Self::shutdown) has begun.
    pub fn send(&self, el: Element) -> Result<(), SendError> {
        if !is_stanza(el.root()) {
            return Err(SendError::NotAStanza);
        }
        let from = jid_domain(&el, "from").ok_or(SendError::Addressing("from"))?;
        let to = jid_domain(&el, "to").ok_or(SendError::Addressing("to"))?;
        let hosted = &self.shared.core.local_domains;
        if !hosted.contains(&from) {
            return Err(SendError::NotLocal(from.to_string()));
        }
        if hosted.contains(&to) {
            return Err(SendError::LocalDestination(to.to_string()));
        }
        let key = (from, to);
        let mut links = lock(&self.shared.links);
        if self.shared.tasks.is_stopping() {
            return Err(SendError::ShuttingDown);
        }
        let mut el = el;
        if let Some(link) = links.get(&key) {
            match link.tx.try_send(el) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(e)) => {
                    drop(links);
                    tracing::info!(remote = %key.1, "xmpp: outbound queue full");
                    bounce(&self.shared.sink, &e, Cond::ResourceConstraint);
                    return Ok(());
                }
                Err(mpsc::error::TrySendError::Closed(e)) => {
                    links.remove(&key);
                    el = e;
                }
            }
        }
        if links.len() >= self.shared.cfg.limits.max_outbound_links {
            drop(links);
            tracing::warn!("xmpp: too many outbound links");
            bounce(&self.shared.sink, &el, Cond::ResourceConstraint);
            return Ok(());
        }
        let (tx, rx) = mpsc::channel(self.shared.cfg.limits.outbound_queue.max(1));
        let _ = tx.try_send(el);
        let id = self.shared.serial.fetch_add(1, Ordering::Relaxed);
        links.insert(key.clone(), Link { id, tx });
        drop(links);
        let this = self.clone();
        let spawned = self
            .shared
            .tasks
            .spawn(&self.shared.handle, move |stop| async move {
                let _stop = stop; // held while the link runs: `shutdown` waits for it
                this.run_link(key, id, rx).await;
            });
        if !spawned {
            // `shutdown` began between the check above and here.
            tracing::info!("xmpp: shutting down, stanza not sent");
        }
        Ok(())
    }

    /// Graceful shutdown (RFC 6120 §4.4): refuses new stanzas and links from now on,
    /// then every link writes what is queued on it (a link still negotiating finishes
    /// first, and delivers it), sends `</stream:stream>`, waits for the peer's closing
    /// tag and closes TCP/TLS. Returns when every link has ended, or after
    /// [`XmppLimits::close_timeout`](super::XmppLimits::close_timeout) and 250 ms,
    /// with the links still open aborted (what they held is lost). Dialback
    /// verifications in flight end on their own timeout.
    pub async fn shutdown(&self) {
        let links: Vec<Link> = {
            let mut links = lock(&self.shared.links);
            self.shared.tasks.stop();
            links.drain().map(|(_, l)| l).collect()
        };
        let n = links.len();
        // Dropping the senders: each link empties its queue, then closes.
        drop(links);
        let aborted = self
            .shared
            .tasks
            .shutdown(self.shared.cfg.limits.close_timeout)
            .await;
        if aborted > 0 {
            tracing::warn!(
                aborted,
                "xmpp: outbound links still open after the close timeout; aborted"
            );
        } else {
            tracing::debug!(closed = n, "xmpp: outbound links closed");
        }
    }

    /// Number of outbound links (set up or ready).
    pub fn link_count(&self) -> usize {
        lock(&self.shared.links).len()
    }

    async fn run_link(
        &self,
        key: (DomainPart, DomainPart),
        id: u64,
        mut rx: mpsc::Receiver<Element>,
    ) {
        let (local, remote) = key.clone();
        let end = link(&self.shared, local, remote.clone(), &mut rx).await;
        {
            let mut links = lock(&self.shared.links);
            if links.get(&key).is_some_and(|l| l.id == id) {
                links.remove(&key);
            }
        }
        rx.close();
        match end {
            LinkEnd::Failed(cond) => {
                tracing::info!(%remote, condition = %cond, "xmpp: outbound link failed");
                while let Ok(el) = rx.try_recv() {
                    bounce(&self.shared.sink, &el, cond);
                }
            }
            LinkEnd::Closed => {
                tracing::debug!(%remote, "xmpp: outbound link closed");
                while let Ok(el) = rx.try_recv() {
                    if let Err(SendError::ShuttingDown) = self.send(el.clone()) {
                        bounce(&self.shared.sink, &el, Cond::RemoteServerTimeout);
                    }
                }
            }
        }
    }
}

enum LinkEnd {
    /// Never became ready: what is queued is bounced with this condition.
    Failed(Cond),
    /// Was ready and ended (idle, peer close): what is queued goes to a new link.
    Closed,
}

/// Resolves and connects to the first endpoint that accepts.
async fn connect(shared: &Shared, remote: &DomainPart) -> Result<Conn, Cond> {
    let opts = XmppOptions {
        direct_tls: false,
        fallback_port: shared.cfg.fallback_port,
    };
    let seed = shared.serial.fetch_add(1, Ordering::Relaxed) ^ 0x5EED_F00D;
    let list = match tokio::time::timeout(
        shared.cfg.limits.connect_timeout,
        shared.resolver.resolve(remote.to_string(), opts, seed),
    )
    .await
    {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            tracing::info!(%remote, error = %e, "xmpp: cannot resolve");
            return Err(Cond::RemoteServerNotFound);
        }
        Err(_) => return Err(Cond::RemoteServerTimeout),
    };
    let mut fo = Failover::new(&list);
    let mut timed_out = false;
    loop {
        let ep = {
            let health = lock(&shared.health);
            fo.next(&health, now())
        };
        let Some(ep) = ep else { break };
        if ep.transport != Transport::Tcp {
            continue; // XEP-0368 direct TLS: not supported (see module docs)
        }
        let r = tokio::time::timeout(
            shared.cfg.limits.connect_timeout,
            shared.dialer.dial(ep.addr),
        )
        .await;
        match r {
            Ok(Ok(io)) => {
                lock(&shared.health).record_success(&ep);
                tracing::debug!(%remote, addr = %ep.addr, "xmpp: connected");
                return Ok(Conn::new(io, shared.cfg.limits.write_timeout));
            }
            Ok(Err(e)) => {
                tracing::info!(%remote, addr = %ep.addr, error = %e, "xmpp: connect failed");
                let f = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    Failure::Refused
                } else {
                    Failure::ConnectFailed
                };
                lock(&shared.health).record_failure(ep, f, now());
            }
            Err(_) => {
                tracing::info!(%remote, addr = %ep.addr, "xmpp: connect timeout");
                timed_out = true;
                lock(&shared.health).record_failure(ep, Failure::Timeout, now());
            }
        }
    }
    Err(if timed_out {
        Cond::RemoteServerTimeout
    } else {
        Cond::RemoteServerNotFound
    })
}

async fn start_tls(
    shared: &Shared,
    conn: &mut Conn,
    m: &mut S2sOutgoing,
    remote: &DomainPart,
) -> bool {
    if let Some(b) = m.poll_transmit()
        && conn.write(&b).await.is_err()
    {
        return false;
    }
    let Some(cfg) = shared.client_tls.clone() else {
        return false;
    };
    match conn
        .connect_tls(cfg, remote.as_str(), shared.cfg.limits.connect_timeout)
        .await
    {
        Ok(()) => {
            m.handle_tls_established(now());
            true
        }
        Err(e) => {
            tracing::info!(%remote, error = %e, "xmpp: TLS handshake failed");
            false
        }
    }
}

/// One outbound link, from resolution to its end.
async fn link(
    shared: &Shared,
    local: DomainPart,
    remote: DomainPart,
    rx: &mut mpsc::Receiver<Element>,
) -> LinkEnd {
    let started = now();
    let mut conn = match connect(shared, &remote).await {
        Ok(c) => c,
        Err(c) => return LinkEnd::Failed(c),
    };
    let limits = &shared.cfg.limits;
    let negotiation_deadline = now() + limits.negotiation_timeout;
    let mut m = S2sOutgoing::new(
        shared.core.clone(),
        local.clone(),
        remote.clone(),
        shared.cfg.policy_for(&remote),
        now(),
    );
    let mut ready = false;
    // We sent `</stream:stream>` first (shutdown, idle): the peer's is awaited.
    let mut closing = false;
    let mut last_write = now();
    let mut last_stanza = now();
    loop {
        // Output and events until both are quiet.
        loop {
            if let Some(b) = m.poll_transmit() {
                if conn.write(&b).await.is_err() {
                    return if ready {
                        LinkEnd::Closed
                    } else {
                        LinkEnd::Failed(Cond::RemoteServerTimeout)
                    };
                }
                last_write = now();
            }
            let Some(ev) = m.poll_event() else { break };
            match ev {
                S2sEvent::StartTls => {
                    let ok = start_tls(shared, &mut conn, &mut m, &remote).await;
                    if !ok {
                        return LinkEnd::Failed(Cond::RemoteServerTimeout);
                    }
                }
                S2sEvent::Authenticated { method, .. } => {
                    tracing::info!(%local, %remote, ?method, elapsed = ?now().duration_since(started), "xmpp: outbound link ready");
                    ready = true;
                    last_stanza = now();
                    while let Ok(el) = rx.try_recv() {
                        if let Err(e) = m.send_stanza(&el) {
                            tracing::info!(error = %e, "xmpp: stanza not sendable");
                            bounce(&shared.sink, &el, Cond::BadRequest);
                        }
                    }
                }
                S2sEvent::AuthenticationFailed { error, .. } => {
                    tracing::info!(%local, %remote, ?error, "xmpp: peer refused our dialback");
                    m.close();
                    if let Some(b) = m.poll_transmit() {
                        let _ = conn.write(&b).await;
                    }
                    conn.shutdown().await;
                    return LinkEnd::Failed(Cond::RemoteServerNotFound);
                }
                S2sEvent::Closed { sent, received } => {
                    tracing::info!(%remote, ?sent, ?received, "xmpp: outbound stream closed");
                    if let Some(b) = m.poll_transmit() {
                        let _ = conn.write(&b).await;
                    }
                    if closing
                        && sent.is_none()
                        && !conn.await_peer_close(limits.close_timeout).await
                    {
                        tracing::debug!(%remote, "xmpp: no closing tag from the peer in time");
                    }
                    conn.shutdown().await;
                    return if ready {
                        LinkEnd::Closed
                    } else {
                        LinkEnd::Failed(Cond::RemoteServerTimeout)
                    };
                }
                _ => {}
            }
        }
        let mut deadline = m.poll_timeout();
        let mut push = |t: Instant| deadline = Some(deadline.map_or(t, |d| d.min(t)));
        if ready {
            push(last_stanza + limits.idle_timeout);
            push(last_write + limits.keepalive_interval);
        } else {
            push(negotiation_deadline);
        }
        let deadline = deadline.unwrap_or(negotiation_deadline);
        tokio::select! {
            r = conn.read_with(|b| m.handle_input(now(), b)) => {
                if matches!(r, Ok(0) | Err(_)) {
                    return if ready { LinkEnd::Closed } else { LinkEnd::Failed(Cond::RemoteServerTimeout) };
                }
            }
            el = rx.recv(), if ready => {
                let Some(el) = el else {
                    // Queue closed and empty (shutdown): everything queued is written.
                    closing = true;
                    m.close();
                    continue;
                };
                last_stanza = now();
                if let Err(e) = m.send_stanza(&el) {
                    tracing::info!(error = %e, "xmpp: stanza not sendable");
                    bounce(&shared.sink, &el, Cond::BadRequest);
                }
            }
            _ = sleep_until(deadline) => {
                let t = now();
                if m.poll_timeout().is_some_and(|d| d <= t) {
                    m.handle_timeout(t);
                }
                if !ready && t >= negotiation_deadline {
                    tracing::info!(%remote, "xmpp: outbound negotiation timed out");
                    conn.shutdown().await;
                    return LinkEnd::Failed(Cond::RemoteServerTimeout);
                }
                if ready && t >= last_stanza + limits.idle_timeout {
                    tracing::debug!(%remote, "xmpp: idle outbound link closed");
                    closing = true;
                    m.close();
                } else if ready && t >= last_write + limits.keepalive_interval {
                    if conn.write(b" ").await.is_err() {
                        return LinkEnd::Closed;
                    }
                    last_write = t;
                }
            }
        }
    }
}

/// Asks the authoritative server of `req.originating` whether a dialback key is valid,
/// over a verify-only connection that is closed after the answer.
pub(crate) async fn verify(shared: Arc<Shared>, req: VerifyRequest) -> VerifyResult {
    if shared.core.local_domains.contains(&req.originating) {
        // We are the authoritative server ourselves.
        let ok = shared.core.secret.verify(
            req.receiving.as_str(),
            req.originating.as_str(),
            &req.stream_id,
            &req.key,
        );
        return if ok {
            VerifyResult::Valid
        } else {
            VerifyResult::Invalid
        };
    }
    let t = shared.cfg.limits.verify_timeout;
    match tokio::time::timeout(t, verify_inner(&shared, req)).await {
        Ok(r) => r,
        Err(_) => VerifyResult::Error(Cond::RemoteServerTimeout),
    }
}

async fn verify_inner(shared: &Shared, req: VerifyRequest) -> VerifyResult {
    let remote = req.originating.clone();
    let mut conn = match connect(shared, &remote).await {
        Ok(c) => c,
        Err(c) => return VerifyResult::Error(c),
    };
    let mut m = S2sOutgoing::verify_only(
        shared.core.clone(),
        req.receiving.clone(),
        remote.clone(),
        shared.cfg.policy_for(&remote),
        now(),
    );
    if m.send_verify(req).is_err() {
        return VerifyResult::Error(Cond::InternalServerError);
    }
    let lost = VerifyResult::Error(Cond::RemoteServerTimeout);
    loop {
        loop {
            if let Some(b) = m.poll_transmit()
                && conn.write(&b).await.is_err()
            {
                return lost;
            }
            let Some(ev) = m.poll_event() else { break };
            match ev {
                S2sEvent::StartTls => {
                    let ok = start_tls(shared, &mut conn, &mut m, &remote).await;
                    if !ok {
                        return lost;
                    }
                }
                S2sEvent::VerifyResponse { result, .. } => {
                    m.close();
                    if let Some(b) = m.poll_transmit() {
                        let _ = conn.write(&b).await;
                    }
                    conn.shutdown().await;
                    return result;
                }
                S2sEvent::Closed { .. } => return lost,
                _ => {}
            }
        }
        let timer = m.poll_timeout();
        tokio::select! {
            r = conn.read_with(|b| m.handle_input(now(), b)) => {
                if matches!(r, Ok(0) | Err(_)) {
                    return lost;
                }
            }
            _ = async { match timer { Some(t) => sleep_until(t).await, None => std::future::pending().await } } => {
                m.handle_timeout(now());
            }
        }
    }
}
