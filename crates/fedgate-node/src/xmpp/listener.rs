//! Inbound s2s connections: one task per connection owning an `S2sIncoming`.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use fedgate_xmpp::s2s::{S2sEvent, S2sIncoming, VerifyRequest, VerifyResult};
use fedgate_xmpp::stanza::StanzaErrorCondition as Cond;
use fedgate_xmpp::writer::{STREAM_CLOSE, StreamHeaderOut, write_stream_header};
use fedgate_xmpp::{Element, ElementBuilder, Jid, StreamError, StreamErrorCondition, ns};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::io::{BoxIo, Conn};
use super::outbound::{S2sOutbound, Shared, verify};
use super::tasks::{Stop, Tasks};
use super::{InboundStanza, jid_domain, now, sleep_until};

/// XEP-0199 namespace.
const PING: &str = "urn:xmpp:ping";

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// Refused connections still being told why (bounded: beyond it, just closed).
    refusing: usize,
}

/// Most refused connections given a stream error at once.
const MAX_REFUSING: usize = 64;

/// A counted inbound connection; uncounted on drop.
#[derive(Debug)]
struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Accepts inbound s2s connections (see the [module docs](super)). Dropping it stops
/// accepting; established connections run on until they end, unless
/// [`shutdown`](Self::shutdown) closes them first.
#[derive(Debug)]
pub struct S2sListener {
    local_addr: SocketAddr,
    outbound: S2sOutbound,
    counts: Arc<Mutex<Counts>>,
    tasks: Arc<Tasks>,
    accept: Option<JoinHandle<()>>,
}

impl Drop for S2sListener {
    fn drop(&mut self) {
        if let Some(t) = self.accept.take() {
            t.abort();
        }
    }
}

impl S2sListener {
    /// Listens on `addr` (e.g. `0.0.0.0:5269`). Verifications, ping replies and the
    /// sink go through `outbound`'s shared state.
    pub async fn bind(addr: SocketAddr, outbound: &S2sOutbound) -> io::Result<Self> {
        let sock = tokio::net::TcpListener::bind(addr).await?;
        let local_addr = sock.local_addr()?;
        let mut this = Self::detached(outbound, local_addr);
        let (ob, counts, tasks) = (outbound.clone(), this.counts.clone(), this.tasks.clone());
        this.accept = Some(tokio::spawn(async move {
            loop {
                match sock.accept().await {
                    Ok((s, peer)) => {
                        let _ = s.set_nodelay(true);
                        serve(&ob, &counts, &tasks, Box::new(s), peer);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "xmpp: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        }));
        tracing::info!(%local_addr, "xmpp: s2s listener up");
        Ok(this)
    }

    /// A listener without a socket: connections are handed in with
    /// [`serve_io`](Self::serve_io) (tests, or a socket accepted elsewhere).
    pub fn detached(outbound: &S2sOutbound, local_addr: SocketAddr) -> Self {
        S2sListener {
            local_addr,
            outbound: outbound.clone(),
            counts: Arc::new(Mutex::new(Counts::default())),
            tasks: Tasks::new(),
            accept: None,
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Inbound connections now open.
    pub fn connection_count(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    /// Serves one already accepted connection from `peer` (closed at once after
    /// [`shutdown`](Self::shutdown) has begun).
    pub fn serve_io(&self, io: BoxIo, peer: SocketAddr) {
        serve(&self.outbound, &self.counts, &self.tasks, io, peer);
    }

    /// Graceful shutdown (RFC 6120 §4.4): stops accepting, then every inbound stream
    /// sends `</stream:stream>`, waits for the peer's closing tag (at most
    /// [`XmppLimits::close_timeout`](super::XmppLimits::close_timeout)) and closes
    /// TCP/TLS. Returns when every connection has ended, or after `close_timeout` and
    /// 250 ms, with the connections still open aborted (a task stuck on a full sink or
    /// a TLS handshake). Stanzas a peer sends after our closing tag are not processed.
    /// Dialback verifications in flight end on their own timeout.
    pub async fn shutdown(&self) {
        if let Some(t) = self.accept.as_ref() {
            t.abort();
        }
        let grace = self.outbound.shared.cfg.limits.close_timeout;
        let n = self.connection_count();
        let aborted = self.tasks.shutdown(grace).await;
        if aborted > 0 {
            tracing::warn!(
                aborted,
                "xmpp: inbound streams still open after the close timeout; aborted"
            );
        } else {
            tracing::debug!(closed = n, "xmpp: inbound streams closed");
        }
    }
}

fn serve(
    ob: &S2sOutbound,
    counts: &Arc<Mutex<Counts>>,
    tasks: &Arc<Tasks>,
    io: BoxIo,
    peer: SocketAddr,
) {
    if tasks.is_stopping() {
        return; // shutting down: dropping `io` closes it
    }
    let limits = &ob.shared.cfg.limits;
    let ip = peer.ip();
    let (admitted, tell) = {
        let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
        let on_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
        if c.total >= limits.max_inbound || on_ip >= limits.max_inbound_per_ip {
            let tell = c.refusing < MAX_REFUSING;
            if tell {
                c.refusing += 1;
            }
            (false, tell)
        } else {
            c.total += 1;
            *c.per_ip.entry(ip).or_insert(0) += 1;
            (true, false)
        }
    };
    if !admitted {
        tracing::warn!(%peer, "xmpp: inbound connection limit reached");
        if !tell {
            return; // dropping `io` closes it
        }
        let mut conn = Conn::new(io, std::time::Duration::from_secs(5));
        let counts = counts.clone();
        tokio::spawn(async move {
            let mut out = String::new();
            write_stream_header(
                &mut out,
                &StreamHeaderOut {
                    server: true,
                    ..Default::default()
                },
            );
            StreamError::new(StreamErrorCondition::PolicyViolation).write_to(&mut out);
            out.push_str(STREAM_CLOSE);
            let _ = conn.write(out.as_bytes()).await;
            conn.shutdown().await;
            let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
            c.refusing = c.refusing.saturating_sub(1);
        });
        return;
    }
    let slot = Slot {
        counts: counts.clone(),
        ip,
    };
    let conn = Conn::new(io, limits.write_timeout);
    let ob2 = ob.clone();
    // Refused only when a shutdown began meanwhile: the slot and `io` are dropped.
    tasks.spawn(&ob.shared.handle, move |stop| async move {
        let _slot = slot;
        tracing::debug!(%peer, "xmpp: inbound connection");
        inbound(ob2, conn, peer, stop).await;
    });
}

/// The reply to a XEP-0199 ping addressed to a hosted domain itself.
fn ping_reply(el: &Element) -> Option<Element> {
    if el.name() != "iq" || el.attr("type") != Some("get") || el.get_child("ping", PING).is_none() {
        return None;
    }
    let to = el.attr("to")?;
    match Jid::parse(to).ok()? {
        Jid::Bare(b) if b.local().is_none() => {}
        _ => return None,
    }
    Some(
        ElementBuilder::new("iq", ns::SERVER)
            .attr("type", "result")
            .attr("from", to)
            .attr_opt("to", el.attr("from"))
            .attr_opt("id", el.attr("id"))
            .build(),
    )
}

async fn inbound(ob: S2sOutbound, mut conn: Conn, peer: SocketAddr, mut stop: Stop) {
    let shared: Arc<Shared> = ob.shared.clone();
    let limits = shared.cfg.limits.clone();
    let mut m = S2sIncoming::new(shared.core.clone(), now());
    let (vtx, mut vrx) = mpsc::channel::<(VerifyRequest, VerifyResult)>(32);
    let mut last_stanza = now();
    let mut authenticated = false;
    // We sent `</stream:stream>` first (shutdown, idle): the peer's is awaited.
    let mut closing = false;
    loop {
        loop {
            if let Some(b) = m.poll_transmit()
                && conn.write(&b).await.is_err()
            {
                return;
            }
            let Some(ev) = m.poll_event() else { break };
            match ev {
                S2sEvent::StartTls => {
                    if let Some(b) = m.poll_transmit()
                        && conn.write(&b).await.is_err()
                    {
                        return;
                    }
                    let Some(tls) = shared.tls.as_ref() else {
                        return;
                    };
                    if let Err(e) = conn
                        .accept_tls(tls.server.clone(), limits.connect_timeout)
                        .await
                    {
                        tracing::info!(%peer, error = %e, "xmpp: inbound TLS handshake failed");
                        return;
                    }
                    m.handle_tls_established(now(), &[]);
                }
                S2sEvent::VerifyRequest(req) => {
                    tracing::debug!(%peer, originating = %req.originating, "xmpp: verifying dialback key");
                    match shared.verifications.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let (sh, tx) = (shared.clone(), vtx.clone());
                            tokio::spawn(async move {
                                let _permit = permit;
                                let r = verify(sh, req.clone()).await;
                                let _ = tx.send((req, r)).await;
                            });
                        }
                        Err(_) => {
                            m.handle_verify_result(
                                &req,
                                VerifyResult::Error(Cond::ResourceConstraint),
                            );
                        }
                    }
                }
                S2sEvent::Authenticated {
                    local,
                    remote,
                    method,
                } => {
                    tracing::info!(%peer, %local, %remote, ?method, "xmpp: inbound stream authenticated");
                    authenticated = true;
                    last_stanza = now();
                }
                S2sEvent::Stanza(el) => {
                    last_stanza = now();
                    if let Some(reply) = ping_reply(&el) {
                        if let Err(e) = ob.send(reply) {
                            tracing::info!(error = %e, "xmpp: ping reply not sent");
                        }
                        continue;
                    }
                    let (Some(from_domain), Some(to_domain)) =
                        (jid_domain(&el, "from"), jid_domain(&el, "to"))
                    else {
                        continue; // the core checked both
                    };
                    let s = InboundStanza {
                        from_domain,
                        to_domain,
                        element: el,
                        bounce: false,
                    };
                    // A full sink stops us reading from this peer (TCP backpressure).
                    if shared.sink.send(s).await.is_err() {
                        closing = true;
                        m.close();
                    }
                }
                S2sEvent::Closed { sent, received } => {
                    tracing::info!(%peer, ?sent, ?received, "xmpp: inbound stream closed");
                    if let Some(b) = m.poll_transmit() {
                        let _ = conn.write(&b).await;
                    }
                    if closing
                        && sent.is_none()
                        && !conn.await_peer_close(limits.close_timeout).await
                    {
                        tracing::debug!(%peer, "xmpp: no closing tag from the peer in time");
                    }
                    conn.shutdown().await;
                    return;
                }
                _ => {}
            }
        }
        let mut deadline = m.poll_timeout();
        if authenticated {
            let idle = last_stanza + limits.idle_timeout;
            deadline = Some(deadline.map_or(idle, |d| d.min(idle)));
        }
        tokio::select! {
            r = conn.read_with(|b| m.handle_input(now(), b)) => {
                if matches!(r, Ok(0) | Err(_)) {
                    return;
                }
            }
            Some((req, res)) = vrx.recv() => m.handle_verify_result(&req, res),
            () = stop.stopped(), if !closing => {
                tracing::debug!(%peer, "xmpp: closing inbound stream (shutdown)");
                closing = true;
                m.close();
            }
            _ = async { match deadline { Some(t) => sleep_until(t).await, None => std::future::pending().await } } => {
                let t = now();
                if m.poll_timeout().is_some_and(|d| d <= t) {
                    m.handle_timeout(t);
                }
                if authenticated && t >= last_stanza + limits.idle_timeout {
                    tracing::debug!(%peer, "xmpp: idle inbound stream closed");
                    closing = true;
                    m.close();
                }
            }
        }
    }
}
