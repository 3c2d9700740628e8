//! The XMPP server-to-server driver: tokio tasks around the sans-IO machines of
//! [`fedgate_xmpp::s2s`].
//!
//! **What it does**
//! - [`S2sListener`]: accepts inbound s2s connections (one task each, owning its socket
//!   and an [`S2sIncoming`](fedgate_xmpp::s2s::S2sIncoming)), offers STARTTLS when a
//!   certificate is configured, verifies dialback keys by opening a *verify-only*
//!   connection back to the originating domain's server (ejabberd's way; resolved with
//!   [`fedgate_srv::resolve_xmpp`]), answers `<db:verify/>` for our own keys, and hands
//!   every authenticated stanza to the node's [`StanzaSink`] as an [`InboundStanza`].
//!   A XEP-0199 ping (`<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>`) addressed to a
//!   hosted *domain* is answered by the listener itself (an empty result sent through
//!   [`S2sOutbound`]) and never reaches the sink.
//! - [`S2sOutbound`]: a cheap-to-clone handle; [`S2sOutbound::send`] routes a stanza by
//!   its `to` domain to the one outbound link of that remote domain, creating it on
//!   demand. The link task resolves the domain, walks the targets with
//!   [`fedgate_srv::Failover`] and a shared [`fedgate_srv::Health`], negotiates
//!   (STARTTLS by per-peer policy, SASL EXTERNAL if offered, else dialback), flushes
//!   the stanzas queued meanwhile, keeps the idle link alive with whitespace and closes
//!   it after an idle time. Failures are bounced to the sink as error stanzas
//!   (`remote-server-not-found`, `remote-server-timeout`, `resource-constraint`);
//!   an error stanza is never bounced.
//! - Graceful shutdown, RFC 6120 §4.4 ([`S2sOutbound::shutdown`], then
//!   [`S2sListener::shutdown`]): no new link or inbound connection; each outbound link
//!   writes what is queued on it, then every stream sends `</stream:stream>`, waits for
//!   the peer's closing tag (at most [`XmppLimits::close_timeout`]) and closes TCP/TLS;
//!   a connection task still running `close_timeout` + 250 ms after the call is
//!   aborted. A stream we close for being idle also waits for the peer's closing tag.
//!
//! # Tasks and channels
//! ```text
//!  S2sListener::bind ─▶ accept task ──(limits: total, per IP)──▶ inbound task (per TCP)
//!                                                                 owns socket + S2sIncoming
//!        VerifyRequest ─▶ verify task (per request, bounded by the stream's 32 pending and
//!                         a global semaphore) ─▶ verify-only S2sOutgoing to the originator
//!                         ─▶ [verify result channel, per stream, bounded] ─▶ inbound task
//!        Stanza ─────────▶ [StanzaSink, bounded, the node's] (send().await: a full sink
//!                          stops reading from that peer = TCP backpressure)
//!        ping iq ────────▶ S2sOutbound::send(result)
//!
//!  S2sOutbound::send ─try_send─▶ [per remote domain queue, bounded] ─▶ link task
//!        link task: resolve ▶ connect (Failover/Health) ▶ S2sOutgoing ▶ Ready (flush,
//!        keep-alive, idle close) ─ failure ─▶ bounces ─try_send─▶ [StanzaSink]
//!
//!  shutdown ─▶ stop signal (watch) to every connection task ─▶ outbound: queue senders
//!        dropped ▶ queue written ▶ </stream:stream> ▶ peer's </stream:stream> or
//!        close_timeout ▶ TCP/TLS close; inbound: the same without a queue;
//!        still running after close_timeout + 250 ms: aborted
//! ```
//! The link registry is a mutex-guarded map (never held across an await). A link that
//! closes (idle, error, peer close) removes itself first, then re-submits anything left
//! in its queue through [`S2sOutbound::send`], which opens a new link: a send racing an
//! idle close is not lost.
//!
//! # The run loop per connection
//! Every connection task repeats: write `poll_transmit()` (bounded by
//! [`XmppLimits::write_timeout`]), act on each `poll_event()` (`StartTls`: flush, run the
//! rustls handshake on the same socket, `handle_tls_established`), then wait for the
//! first of: bytes from the socket, a verify result / a stanza to send, the machine's
//! `poll_timeout()` (unauthenticated stream lifetime, [`fedgate_xmpp::Limits`]), the idle
//! deadline, the keep-alive deadline or (inbound) the shutdown signal; an outbound link
//! sees the shutdown as its queue closing. Time is `tokio::time::Instant`, so tests run
//! on tokio's paused clock.
//!
//! Inbound streams are closed after [`XmppLimits::idle_timeout`] without a stanza once
//! authenticated; before that, the core's unauthenticated lifetime applies.
//!
//! # Limits (all in [`XmppLimits`], defaults there)
//! Inbound connections in total and per remote IP (over the limit: a stream header and
//! `<policy-violation/>`, then close); outbound queue per remote domain (full:
//! `resource-constraint` bounced); number of outbound links; concurrent dialback
//! verifications; connect, negotiation, verification, write and idle timeouts. The
//! stanza size, depth and unauthenticated lifetime are the core's
//! [`fedgate_xmpp::Limits`].
//!
//! # TLS
//! The server side presents our certificate (its SANs should list every hosted domain)
//! and asks for no client certificate, so inbound SASL EXTERNAL is never offered and
//! peers authenticate with dialback. The client side presents our certificate (peers
//! like ejabberd then offer EXTERNAL; on `<failure/>` we dial back) and, like Prosody
//! with `s2s_secure_auth = false`, does not reject a peer certificate it cannot
//! verify: TLS protects the link, dialback authenticates the domain.
//!
//! # What it does not do
//! - No XEP-0288 bidi (an inbound stream never carries our stanzas), no XEP-0198, no
//!   XEP-0368 direct TLS (`_xmpps-server` targets are skipped: the core has no way to
//!   start a stream already encrypted).
//! - No certificate validation of peers, hence no inbound SASL EXTERNAL (a peer such
//!   as ejabberd goes straight to dialback: EXTERNAL is never offered, so it is never
//!   attempted and failed) and no "secure domains" policy; no DANE/POSH.
//! - No failover after the TCP connect: a TLS handshake or negotiation failure on the
//!   first endpoint that accepted ends the attempt (bounced `remote-server-timeout`).
//! - DNS resolution is bounded by [`XmppLimits::connect_timeout`]; a resolution that
//!   times out bounces `remote-server-timeout`, one that fails `remote-server-not-found`.
//! - No piggybacking of several local domains on one outbound link: a link is per
//!   (local domain, remote domain) pair.
//! - No negative cache after a failure (each send after a failed link tries again,
//!   [`fedgate_srv::Health`] skips the dead endpoints).
//! - Nothing durable: queued stanzas are lost (bounced on failure) if the process dies,
//!   or if a link cannot write them within the shutdown's bound.
//! - Stanzas a peer sends after our `</stream:stream>` (shutdown, idle close) are
//!   read and discarded, not processed; dialback verifications in flight at shutdown
//!   are not cancelled (they end on [`XmppLimits::verify_timeout`]).

mod io;
mod listener;
mod outbound;
mod tasks;
mod tls;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fedgate_xmpp::s2s::{S2sConfig, TlsPolicy};
use fedgate_xmpp::{DomainPart, Element};

pub(crate) use io::poll_read_shared;
pub use io::{AsyncStream, BoxIo, Dialer, TcpDialer};
pub use listener::S2sListener;
pub use outbound::{BuildError, S2sOutbound, SendError};
pub use tls::XmppTls;

/// Where authenticated inbound stanzas and bounces go: the node's bounded channel.
pub type StanzaSink = tokio::sync::mpsc::Sender<InboundStanza>;

/// A stanza for the node: received from a peer, or a bounce generated here.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundStanza {
    /// The domain it comes from (authenticated on the stream, or the unreachable
    /// domain of a bounce).
    pub from_domain: DomainPart,
    /// The hosted domain it is addressed to.
    pub to_domain: DomainPart,
    /// The stanza (`jabber:server` namespace).
    pub element: Element,
    /// Generated here: an error reply to a stanza we could not deliver.
    pub bounce: bool,
}

/// Limits and timeouts of the XMPP driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmppLimits {
    /// Inbound connections at once. Default 1024.
    pub max_inbound: usize,
    /// Inbound connections at once from one IP address. Default 32 (Prosody's outgoing
    /// connections all come from one address on a host).
    pub max_inbound_per_ip: usize,
    /// Outbound links at once (one per remote domain and local domain). Default 1024.
    pub max_outbound_links: usize,
    /// Stanzas queued per outbound link while it is set up. Default 256.
    pub outbound_queue: usize,
    /// Dialback verifications in flight at once, node-wide. Default 256.
    pub max_verifications: usize,
    /// TCP connect, per endpoint. Default 10 s.
    pub connect_timeout: Duration,
    /// From TCP connect to an authenticated outbound link. Default 30 s.
    pub negotiation_timeout: Duration,
    /// One dialback verification, resolution to answer. Default 20 s.
    pub verify_timeout: Duration,
    /// Writing one batch to a peer. Default 30 s.
    pub write_timeout: Duration,
    /// A link with no stanza in either direction for this long is closed. Default 600 s.
    pub idle_timeout: Duration,
    /// A whitespace keep-alive is written after this long without writing. Default 60 s.
    pub keepalive_interval: Duration,
    /// Closing (RFC 6120 §4.4): how long a stream we close waits for the peer's
    /// `</stream:stream>` before the TCP/TLS connection is closed, and how long
    /// [`S2sOutbound::shutdown`] and [`S2sListener::shutdown`] each wait for their
    /// connections to end before aborting them. Default 2 s.
    pub close_timeout: Duration,
}

impl Default for XmppLimits {
    fn default() -> Self {
        XmppLimits {
            max_inbound: 1024,
            max_inbound_per_ip: 32,
            max_outbound_links: 1024,
            outbound_queue: 256,
            max_verifications: 256,
            connect_timeout: Duration::from_secs(10),
            negotiation_timeout: Duration::from_secs(30),
            verify_timeout: Duration::from_secs(20),
            write_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            keepalive_interval: Duration::from_secs(60),
            close_timeout: Duration::from_secs(2),
        }
    }
}

/// Configuration of the XMPP driver (listener and outbound links).
#[derive(Debug, Clone)]
pub struct XmppConfig {
    /// Hosted domains, dialback secret, reader limits and inbound TLS policy.
    /// `tls_available` is forced to whether [`XmppConfig::tls`] is set.
    pub s2s: S2sConfig,
    /// Our certificate (STARTTLS offered inbound, presented outbound); `None`: no TLS
    /// inbound, and outbound TLS only as a client without certificate.
    pub tls: Option<XmppTls>,
    /// Outbound STARTTLS policy for peers not in [`XmppConfig::peer_tls`].
    pub default_tls_policy: TlsPolicy,
    /// Outbound STARTTLS policy per remote domain.
    pub peer_tls: HashMap<DomainPart, TlsPolicy>,
    /// Limits and timeouts.
    pub limits: XmppLimits,
    /// Port of the A/AAAA fallback when a domain has no SRV records. Default 5269.
    pub fallback_port: u16,
}

impl XmppConfig {
    /// Defaults around the given core configuration: no TLS, STARTTLS used when offered.
    pub fn new(s2s: S2sConfig) -> Self {
        XmppConfig {
            s2s,
            tls: None,
            default_tls_policy: TlsPolicy::Optional,
            peer_tls: HashMap::new(),
            limits: XmppLimits::default(),
            fallback_port: 5269,
        }
    }

    fn core(&self) -> Arc<S2sConfig> {
        let mut c = self.s2s.clone();
        c.tls_available = self.tls.is_some();
        Arc::new(c)
    }

    fn policy_for(&self, remote: &DomainPart) -> TlsPolicy {
        self.peer_tls
            .get(remote)
            .copied()
            .unwrap_or(self.default_tls_policy)
    }
}

/// 32 bytes for [`S2sConfig::id_seed`], from the process's randomly keyed SipHash
/// (OS entropy at startup) and the clock. Stream ids need to be unpredictable, not secret.
pub fn random_seed() -> [u8; 32] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 32];
    let s = std::collections::hash_map::RandomState::new();
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = s.build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

fn sleep_until(t: std::time::Instant) -> tokio::time::Sleep {
    tokio::time::sleep_until(tokio::time::Instant::from_std(t))
}

/// Sends a bounce for `el` (never for an error or result stanza) to the sink without waiting;
/// a full sink drops it with a log line.
fn bounce(sink: &StanzaSink, el: &Element, cond: fedgate_xmpp::stanza::StanzaErrorCondition) {
    use fedgate_xmpp::stanza::{StanzaError, error_reply};
    // Like Prosody: results are not bounced either (error_reply refuses errors).
    if el.attr("type") == Some("result") {
        return;
    }
    let (Some(from), Some(to)) = (jid_domain(el, "from"), jid_domain(el, "to")) else {
        return;
    };
    let mut err = StanzaError::new(cond);
    err.by = Some(to.to_string());
    let Some(reply) = error_reply(el.root(), &err) else {
        return;
    };
    let b = InboundStanza {
        from_domain: to,
        to_domain: from,
        element: reply,
        bounce: true,
    };
    if sink.try_send(b).is_err() {
        tracing::warn!(condition = %cond, "xmpp: sink full or closed, bounce dropped");
    }
}

fn jid_domain(el: &Element, attr: &str) -> Option<DomainPart> {
    el.attr(attr)
        .and_then(|j| fedgate_xmpp::Jid::parse(j).ok())
        .map(|j| j.domain().clone())
}
