//! Server-to-server stream negotiation (RFC 6120 §4–6, XEP-0220 dialback, XEP-0178 SASL
//! EXTERNAL), sans-IO, in both roles.
//!
//! Each machine owns a [`StreamReader`] and an output buffer. The driver feeds received
//! bytes with `handle_input(now, bytes)`, writes what `poll_transmit()` returns, acts
//! on `poll_event()` and calls `handle_timeout(now)` at `poll_timeout()`. It never reads
//! XML itself. TLS is the driver's: on [`S2sEvent::StartTls`] it flushes the output,
//! runs the handshake on the socket, and calls `handle_tls_established`.
//!
//! ## Initiating side ([`S2sOutgoing`])
//! ```text
//!  new ──send header──▶ AwaitHeader ──peer header──▶ AwaitFeatures
//!     (pre-1.0 peer: no features, straight to Dialback)        │
//!   ┌──────────────────────────────────────────────────────────┤
//!   │ <starttls/> offered (or policy Required, Prosody-style)  │ TLS done or not wanted
//!   ▼                                                          ▼
//! AwaitProceed ──<proceed/>──▶ [StartTls] ──tls established──▶ restart: AwaitHeader
//!                                                              │ EXTERNAL offered, not tried
//!                                                              ▼
//!                                        AwaitSasl ──<success/>──▶ restart ▶ AwaitHeader ▶ Ready
//!                                            │ <failure/> (ejabberd + self-signed cert)
//!                                            ▼
//!                               Dialback: send <db:result>KEY</db:result>  ──▶ Ready
//! Ready: per (local, remote) pair Pending ──type=valid──▶ Authorized [Authenticated]
//!                                    └────type=invalid/error──▶ Failed [AuthenticationFailed]
//!        more pairs with authorize() (XEP-0220 §4.3); <db:verify/> requests with send_verify().
//! ```
//!
//! ## Receiving side ([`S2sIncoming`])
//! ```text
//!  AwaitHeader ──header (to hosted? else host-unknown)──▶ send header(id) + features ──▶ Open
//!  Open ── <starttls/> ──▶ <proceed/> [StartTls] ──tls established──▶ AwaitHeader (new id)
//!       ── <auth EXTERNAL> ── cert valid for `from`? ──▶ <success/>, restart ▶ AwaitHeader
//!                                       └── no ──▶ <failure><not-authorized/></failure> (peer may dial back)
//!       ── <db:result from=O to=R>KEY ──▶ [VerifyRequest] ── handle_verify_result ──▶
//!                  valid: <db:result type='valid'/>, (O,R) authorized [Authenticated]
//!                  invalid: <db:result type='invalid'/>, never authorized
//!       ── <db:verify from=R to=O id=I>KEY ──▶ <db:verify type='valid|invalid'/> (we are authoritative)
//!       ── stanza ── from's domain authorized on this stream for to's domain? ──▶ [Stanza]
//!                    else <invalid-from/> / <host-unknown/> / <improper-addressing/>
//! ```
//! With TLS policy Required, dialback, SASL and stanzas before TLS are answered with
//! `<policy-violation/>`.
//!
//! Not implemented yet: XEP-0288 bidi, XEP-0198, a deadline per pending verification
//! (the stream's unauthenticated lifetime bounds it).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::dialback::DialbackSecret;
use crate::error::{StreamError, StreamErrorCondition as Sec};
use crate::jid::{DomainPart, Jid};
use crate::stanza::{StanzaError, StanzaErrorCondition, is_stanza};
use crate::tree::{Element, ElementBuilder, ElementRef};
use crate::writer::{STREAM_CLOSE, Scope, StreamHeaderOut, write_element, write_stream_header};
use crate::{Event, Limits, StreamKind, StreamReader, ns};

/// Most domain pairs one incoming stream may authenticate (XEP-0220 §4.3 multiplexing).
pub const MAX_PAIRS: usize = 256;

/// Whether a peer must use STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Use TLS when offered; go on without it otherwise.
    Optional,
    /// Never authenticate or exchange stanzas without TLS.
    Required,
}

/// Configuration shared by all s2s streams of a server.
#[derive(Debug, Clone)]
pub struct S2sConfig {
    /// The domains we host.
    pub local_domains: Vec<DomainPart>,
    /// The dialback secret (XEP-0185).
    pub secret: DialbackSecret,
    /// Reader limits.
    pub limits: Limits,
    /// We have a certificate: offer STARTTLS (receiving side) and try SASL EXTERNAL
    /// (initiating side). The initiating side uses STARTTLS whenever it is offered.
    pub tls_available: bool,
    /// What we require of peers that connect to us.
    pub incoming_tls: TlsPolicy,
    /// Peers that must use TLS even where `incoming_tls` is `Optional`: dialback for
    /// these domains without TLS is refused with `<policy-violation/>`.
    pub tls_required_peers: Vec<DomainPart>,
    /// Random bytes (from the driver) that stream ids are derived from.
    pub id_seed: [u8; 32],
}

impl S2sConfig {
    fn hosts(&self, d: &DomainPart) -> bool {
        self.local_domains.contains(d)
    }
}

/// How a domain pair was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// SASL EXTERNAL with the TLS certificate (XEP-0178).
    SaslExternal,
    /// Server Dialback (XEP-0220).
    Dialback,
}

/// Outcome of a dialback verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyResult {
    /// The authoritative server confirmed the key.
    Valid,
    /// The authoritative server rejected the key.
    Invalid,
    /// The authoritative server could not be asked (`remote-server-not-found`,
    /// `remote-server-timeout`, …).
    Error(StanzaErrorCondition),
}

/// What a machine tells its driver.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum S2sEvent {
    /// Flush the output, then run the TLS handshake and call `handle_tls_established`.
    StartTls,
    /// `local` may now send to / receive from `remote` on this stream.
    Authenticated {
        /// Our domain.
        local: DomainPart,
        /// The peer's domain.
        remote: DomainPart,
        /// How.
        method: AuthMethod,
    },
    /// Outgoing: the peer refused `local` → `remote`.
    AuthenticationFailed {
        /// Our domain.
        local: DomainPart,
        /// The peer's domain.
        remote: DomainPart,
        /// Why (`None`: the key was invalid).
        error: Option<StanzaErrorCondition>,
    },
    /// Incoming: ask the authoritative server of `originating` whether `key` is right
    /// (send `<db:verify/>`, e.g. with [`S2sOutgoing::send_verify`]), then call
    /// [`S2sIncoming::handle_verify_result`].
    VerifyRequest(VerifyRequest),
    /// Outgoing: the answer to a [`S2sOutgoing::send_verify`].
    VerifyResponse {
        /// The request.
        request: VerifyRequest,
        /// The answer.
        result: VerifyResult,
    },
    /// Incoming: a stanza whose `from` and `to` were checked against this stream's
    /// authenticated domains.
    Stanza(Element),
    /// The stream ended; the connection can be closed once the output is flushed.
    Closed {
        /// The stream error we sent, if any.
        sent: Option<StreamError>,
        /// The stream error the peer sent, if any.
        received: Option<StreamError>,
    },
}

/// A dialback key to be checked by the originating domain's authoritative server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRequest {
    /// The domain that claims to be sending (the `from` of `<db:result/>`).
    pub originating: DomainPart,
    /// Our domain it sends to.
    pub receiving: DomainPart,
    /// The id of the stream the key was sent on.
    pub stream_id: String,
    /// The key.
    pub key: String,
}

/// Misuse of a machine by its driver (not a protocol event).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum S2sError {
    /// The stream is closed.
    #[error("stream closed")]
    Closed,
    /// The pair is not authorized on this stream (yet).
    #[error("{0} -> {1} not authorized on this stream")]
    NotAuthorized(String, String),
    /// The stanza lacks a valid `from` or `to`.
    #[error("stanza addressing: {0}")]
    Addressing(&'static str),
    /// The call does not fit the current state.
    #[error("not possible in state {0}")]
    WrongState(&'static str),
}

/// Shared parts of both machines.
#[derive(Debug)]
struct Core {
    cfg: Arc<S2sConfig>,
    reader: StreamReader,
    out: String,
    events: VecDeque<S2sEvent>,
    closed: bool,
    tls: bool,
    /// Receiving side before our header went out: a stream error must be preceded
    /// by a header (RFC 6120 §4.9.1.1).
    needs_header: bool,
}

impl Core {
    fn new(cfg: Arc<S2sConfig>, now: Instant) -> Self {
        Core {
            reader: StreamReader::new(StreamKind::Server, cfg.limits.clone(), now),
            cfg,
            out: String::new(),
            events: VecDeque::new(),
            closed: false,
            tls: false,
            needs_header: false,
        }
    }

    fn send(&mut self, el: &Element) {
        self.out.reserve(el.xml_size_hint());
        write_element(&mut self.out, el.root(), &Scope::SERVER);
    }

    fn fail(&mut self, c: Sec, why: &str) {
        if self.closed {
            return;
        }
        tracing::info!(condition = %c, why, "s2s stream error");
        if self.needs_header {
            write_stream_header(
                &mut self.out,
                &StreamHeaderOut {
                    server: true,
                    ..Default::default()
                },
            );
            self.needs_header = false;
        }
        let e = StreamError::new(c);
        e.write_to(&mut self.out);
        self.out.push_str(STREAM_CLOSE);
        self.closed = true;
        self.events.push_back(S2sEvent::Closed {
            sent: Some(e),
            received: None,
        });
    }

    fn peer_closed(&mut self, received: Option<StreamError>) {
        if self.closed {
            return;
        }
        self.out.push_str(STREAM_CLOSE);
        self.closed = true;
        self.events.push_back(S2sEvent::Closed {
            sent: None,
            received,
        });
    }

    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.out).into_bytes())
        }
    }

    /// Next reader event; a reader error becomes our stream error.
    fn next(&mut self) -> Option<Event> {
        if self.closed {
            return None;
        }
        match self.reader.poll_event() {
            Ok(e) => e,
            Err(e) => {
                self.fail(e.condition(), "xml");
                None
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.reader.handle_timeout(now);
        if let Some(c) = self.reader.error().map(|e| e.condition()) {
            self.fail(c, "timeout");
        }
    }
}

fn domain_attr(el: ElementRef<'_>, name: &str) -> Option<DomainPart> {
    el.attr(name).and_then(|v| DomainPart::new(v).ok())
}

fn is_dialback(el: &Element, name: &str) -> bool {
    el.is(name, ns::DIALBACK)
}

fn dialback_error(el: ElementRef<'_>) -> StanzaErrorCondition {
    el.get_child("error", ns::DIALBACK)
        .or_else(|| el.get_child("error", ns::SERVER))
        .and_then(|e| StanzaError::from_element(e).ok())
        .map(|e| e.condition)
        .unwrap_or(StanzaErrorCondition::UndefinedCondition)
}

// ---------------------------------------------------------------------------------------
// Initiating side
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutState {
    AwaitHeader,
    AwaitFeatures,
    AwaitProceed,
    AwaitTls,
    AwaitSasl,
    Ready,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PairState {
    Pending,
    Authorized,
    Failed,
}

/// The initiating side of an s2s stream: we connect to `remote` on behalf of `local`.
/// See the [module docs](self) for the state diagram.
#[derive(Debug)]
pub struct S2sOutgoing {
    core: Core,
    state: OutState,
    tls_policy: TlsPolicy,
    local: DomainPart,
    remote: DomainPart,
    stream_id: Option<String>,
    sasl_tried: bool,
    sasl_done: bool,
    dialback_ok: bool,
    pairs: Vec<(DomainPart, DomainPart, PairState)>,
    wanted: Vec<(DomainPart, DomainPart)>,
    /// Requests sent (or to send, `false`) with `send_verify`.
    verifies: Vec<(VerifyRequest, bool)>,
}

impl S2sOutgoing {
    /// A new outgoing stream; the header is queued for transmission at once.
    pub fn new(
        cfg: Arc<S2sConfig>,
        local: DomainPart,
        remote: DomainPart,
        tls_policy: TlsPolicy,
        now: Instant,
    ) -> Self {
        let mut m = S2sOutgoing {
            core: Core::new(cfg, now),
            state: OutState::AwaitHeader,
            tls_policy,
            wanted: vec![(local.clone(), remote.clone())],
            local,
            remote,
            stream_id: None,
            sasl_tried: false,
            sasl_done: false,
            dialback_ok: false,
            pairs: Vec::new(),
            verifies: Vec::new(),
        };
        m.send_header();
        m
    }

    /// An outgoing stream only for `<db:verify/>` requests (ejabberd's way): it
    /// authenticates no domain pair unless [`authorize`](Self::authorize) is called.
    pub fn verify_only(
        cfg: Arc<S2sConfig>,
        local: DomainPart,
        remote: DomainPart,
        tls_policy: TlsPolicy,
        now: Instant,
    ) -> Self {
        let mut m = Self::new(cfg, local, remote, tls_policy, now);
        m.wanted.clear();
        m
    }

    fn send_header(&mut self) {
        write_stream_header(
            &mut self.core.out,
            &StreamHeaderOut {
                from: Some(self.local.as_str()),
                to: Some(self.remote.as_str()),
                id: None,
                dialback: true,
                server: true,
            },
        );
        self.state = OutState::AwaitHeader;
    }

    /// Bytes to write to the peer.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.core.poll_transmit()
    }
    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<S2sEvent> {
        self.core.events.pop_front()
    }
    /// When to call [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.core.closed {
            None
        } else {
            self.core.reader.poll_timeout()
        }
    }
    /// Time has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
    }
    /// The stream has ended.
    pub fn is_closed(&self) -> bool {
        self.core.closed
    }
    /// Whether `local` → `remote` is authorized on this stream.
    pub fn is_authorized(&self, local: &DomainPart, remote: &DomainPart) -> bool {
        self.pairs
            .iter()
            .any(|(l, r, s)| l == local && r == remote && *s == PairState::Authorized)
    }

    /// The TLS handshake finished: the stream restarts.
    pub fn handle_tls_established(&mut self, _now: Instant) {
        if self.state != OutState::AwaitTls {
            return;
        }
        self.core.tls = true;
        self.core.reader.restart();
        self.send_header();
    }

    /// Ends the stream politely.
    pub fn close(&mut self) {
        self.core.peer_closed(None);
    }

    fn awaiting_tls(&self) -> bool {
        self.state == OutState::AwaitTls
    }

    /// Bytes from the peer.
    pub fn handle_input(&mut self, _now: Instant, bytes: &[u8]) {
        if self.core.closed {
            return;
        }
        self.core.reader.feed(bytes);
        while let Some(ev) = self.core.next() {
            match ev {
                Event::StreamOpen(h) => self.on_header(h),
                Event::Element(el) => self.on_element(el),
                Event::StreamClose => self.core.peer_closed(None),
            }
            if self.core.closed || self.awaiting_tls() {
                // Bytes after <proceed/> / <starttls/> are never trusted: they are
                // dropped when the stream restarts (plaintext injection).
                break;
            }
        }
    }

    fn on_header(&mut self, h: crate::StreamHeader) {
        if self.state != OutState::AwaitHeader {
            return self.core.fail(Sec::InvalidXml, "unexpected header");
        }
        if let Some(from) = &h.from
            && DomainPart::new(from).ok().as_ref() != Some(&self.remote)
        {
            // COMPAT: many servers omit `from`; a wrong one is an error.
            return self.core.fail(Sec::InvalidFrom, "peer header from");
        }
        let Some(id) = h.id.clone().filter(|i| !i.is_empty()) else {
            return self.core.fail(Sec::InvalidXml, "no stream id");
        };
        self.stream_id = Some(id);
        self.dialback_ok |= h.dialback;
        if h.is_version_1() {
            self.state = OutState::AwaitFeatures;
        } else if self.tls_policy == TlsPolicy::Required {
            self.core
                .fail(Sec::PolicyViolation, "pre-1.0 peer cannot do TLS");
        } else {
            self.dialback_ok = true;
            self.start_dialback();
        }
    }

    fn on_element(&mut self, el: Element) {
        if el.is("error", ns::STREAM) {
            return self.core.peer_closed(StreamError::from_owned(&el));
        }
        match self.state {
            OutState::AwaitFeatures if el.is("features", ns::STREAM) => self.on_features(&el),
            OutState::AwaitProceed if el.is("proceed", ns::TLS) => {
                self.state = OutState::AwaitTls;
                self.core.events.push_back(S2sEvent::StartTls);
            }
            OutState::AwaitProceed if el.is("failure", ns::TLS) => {
                self.core.peer_closed(None);
            }
            OutState::AwaitSasl if el.is("success", ns::SASL) => {
                self.sasl_done = true;
                self.set_pair(
                    self.local.clone(),
                    self.remote.clone(),
                    PairState::Authorized,
                    Some(AuthMethod::SaslExternal),
                    None,
                );
                self.core.reader.restart();
                self.send_header();
            }
            OutState::AwaitSasl if el.is("failure", ns::SASL) => {
                // ejabberd offers EXTERNAL to self-signed peers and then fails it
                // (processone/ejabberd#2030): fall back to dialback on this stream.
                tracing::debug!(remote = %self.remote, "SASL EXTERNAL failed, trying dialback");
                if self.dialback_ok {
                    self.start_dialback();
                } else {
                    self.core
                        .fail(Sec::NotAuthorized, "EXTERNAL failed and no dialback");
                }
            }
            OutState::Ready if is_dialback(&el, "result") => self.on_db_result(&el),
            OutState::Ready | OutState::AwaitFeatures if is_dialback(&el, "verify") => {
                self.on_db_verify(&el)
            }
            OutState::Ready if is_stanza(el.root()) => {
                // Outgoing streams are unidirectional (no bidi): stanzas are not accepted.
                self.core
                    .fail(Sec::UnsupportedStanzaType, "stanza on outgoing stream");
            }
            _ => self
                .core
                .fail(Sec::UnsupportedStanzaType, "unexpected element"),
        }
    }

    fn on_features(&mut self, f: &Element) {
        let starttls = f.get_child("starttls", ns::TLS).is_some();
        let external = f.get_child("mechanisms", ns::SASL).is_some_and(|m| {
            m.elements()
                .any(|c| c.name() == "mechanism" && c.text().trim() == "EXTERNAL")
        });
        self.dialback_ok =
            f.get_child("dialback", ns::DIALBACK_FEATURE).is_some() || self.dialback_ok;
        if self.sasl_done {
            // Features after the post-SASL restart.
            self.state = OutState::Ready;
            self.core.reader.set_authenticated();
            return self.send_wanted();
        }
        if !self.core.tls {
            let want = match self.tls_policy {
                TlsPolicy::Required => true,
                // A TLS client needs no certificate of its own.
                TlsPolicy::Optional => starttls,
            };
            if want {
                // Like Prosody, with TLS required we send <starttls/> even if not offered.
                self.core
                    .out
                    .push_str("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
                self.state = OutState::AwaitProceed;
                return;
            }
        }
        if external && self.core.tls && self.core.cfg.tls_available && !self.sasl_tried {
            self.sasl_tried = true;
            self.core
                .out
                .push_str("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>");
            self.core.out.push_str(&B64.encode(self.local.as_str()));
            self.core.out.push_str("</auth>");
            self.state = OutState::AwaitSasl;
            return;
        }
        if self.dialback_ok {
            self.start_dialback();
        } else {
            self.core
                .fail(Sec::UnsupportedFeature, "no usable authentication");
        }
    }

    fn start_dialback(&mut self) {
        self.state = OutState::Ready;
        self.send_wanted();
        self.flush_verifies();
    }

    fn send_wanted(&mut self) {
        for (l, r) in std::mem::take(&mut self.wanted) {
            if self.is_authorized(&l, &r) {
                continue;
            }
            self.send_db_result(l, r);
        }
    }

    fn send_db_result(&mut self, local: DomainPart, remote: DomainPart) {
        let id = self.stream_id.clone().unwrap_or_default();
        let key = self
            .core
            .cfg
            .secret
            .key(remote.as_str(), local.as_str(), &id);
        let el = ElementBuilder::new("result", ns::DIALBACK)
            .prefix("db")
            .attr("from", local.as_str())
            .attr("to", remote.as_str())
            .text(key)
            .build();
        self.core.send(&el);
        self.set_pair(local, remote, PairState::Pending, None, None);
    }

    fn set_pair(
        &mut self,
        local: DomainPart,
        remote: DomainPart,
        s: PairState,
        method: Option<AuthMethod>,
        error: Option<StanzaErrorCondition>,
    ) {
        match self
            .pairs
            .iter_mut()
            .find(|(l, r, _)| *l == local && *r == remote)
        {
            Some(p) => p.2 = s,
            None => self.pairs.push((local.clone(), remote.clone(), s)),
        }
        match s {
            PairState::Authorized => {
                self.core.reader.set_authenticated();
                self.core.events.push_back(S2sEvent::Authenticated {
                    local,
                    remote,
                    method: method.unwrap_or(AuthMethod::Dialback),
                });
            }
            PairState::Failed => self.core.events.push_back(S2sEvent::AuthenticationFailed {
                local,
                remote,
                error,
            }),
            PairState::Pending => {}
        }
    }

    fn on_db_result(&mut self, el: &Element) {
        // <db:result from=remote to=local type=valid|invalid|error/>
        let (Some(remote), Some(local)) =
            (domain_attr(el.root(), "from"), domain_attr(el.root(), "to"))
        else {
            return self
                .core
                .fail(Sec::ImproperAddressing, "db:result addressing");
        };
        let pending = self
            .pairs
            .iter()
            .any(|(l, r, s)| *l == local && *r == remote && *s == PairState::Pending);
        if !pending {
            // An answer we did not ask for authorizes nothing.
            return self.core.fail(Sec::InvalidXml, "unsolicited db:result");
        }
        match el.attr("type") {
            Some("valid") => self.set_pair(
                local,
                remote,
                PairState::Authorized,
                Some(AuthMethod::Dialback),
                None,
            ),
            Some("invalid") => self.set_pair(local, remote, PairState::Failed, None, None),
            Some("error") => {
                let c = dialback_error(el.root());
                self.set_pair(local, remote, PairState::Failed, None, Some(c))
            }
            _ => self.core.fail(Sec::InvalidXml, "db:result type"),
        }
    }

    fn on_db_verify(&mut self, el: &Element) {
        // Answer to our <db:verify from=receiving to=originating id=…/>.
        let (Some(orig), Some(recv), Some(id)) = (
            domain_attr(el.root(), "from"),
            domain_attr(el.root(), "to"),
            el.attr("id"),
        ) else {
            return self
                .core
                .fail(Sec::ImproperAddressing, "db:verify addressing");
        };
        let Some(i) = self.verifies.iter().position(|(v, sent)| {
            *sent && v.originating == orig && v.receiving == recv && v.stream_id == id
        }) else {
            return self.core.fail(Sec::InvalidXml, "unsolicited db:verify");
        };
        let request = self.verifies.remove(i).0;
        let result = match el.attr("type") {
            Some("valid") => VerifyResult::Valid,
            Some("invalid") => VerifyResult::Invalid,
            _ => VerifyResult::Error(dialback_error(el.root())),
        };
        self.core
            .events
            .push_back(S2sEvent::VerifyResponse { request, result });
    }

    /// Asks the peer (the authoritative server of `req.originating`) to verify a key
    /// received on one of our incoming streams. Queued until the stream is ready.
    pub fn send_verify(&mut self, req: VerifyRequest) -> Result<(), S2sError> {
        if self.core.closed {
            return Err(S2sError::Closed);
        }
        if req.originating != self.remote || !self.core.cfg.hosts(&req.receiving) {
            return Err(S2sError::NotAuthorized(
                req.receiving.to_string(),
                req.originating.to_string(),
            ));
        }
        if self.verifies.len() >= 64 {
            return Err(S2sError::WrongState("too many verifications in flight"));
        }
        self.verifies.push((req, false));
        if self.state == OutState::Ready {
            self.flush_verifies();
        }
        Ok(())
    }

    fn flush_verifies(&mut self) {
        let mut out = String::new();
        for (v, sent) in self.verifies.iter_mut().filter(|(_, sent)| !*sent) {
            *sent = true;
            let el = ElementBuilder::new("verify", ns::DIALBACK)
                .prefix("db")
                .attr("from", v.receiving.as_str())
                .attr("to", v.originating.as_str())
                .attr("id", v.stream_id.clone())
                .text(v.key.clone())
                .build();
            write_element(&mut out, el.root(), &Scope::SERVER);
        }
        self.core.out.push_str(&out);
    }

    /// Authenticates another pair on this stream (XEP-0220 §4.3 multiplexing).
    pub fn authorize(&mut self, local: DomainPart, remote: DomainPart) -> Result<(), S2sError> {
        if self.core.closed {
            return Err(S2sError::Closed);
        }
        if !self.core.cfg.hosts(&local) {
            return Err(S2sError::NotAuthorized(
                local.to_string(),
                remote.to_string(),
            ));
        }
        if self.is_authorized(&local, &remote) {
            return Ok(());
        }
        match self.state {
            OutState::Ready if self.dialback_ok => self.send_db_result(local, remote),
            OutState::Ready => return Err(S2sError::WrongState("peer does not offer dialback")),
            _ => self.wanted.push((local, remote)),
        }
        Ok(())
    }

    /// Sends a stanza; its `from` and `to` domains must be an authorized pair.
    pub fn send_stanza(&mut self, el: &Element) -> Result<(), S2sError> {
        if self.core.closed {
            return Err(S2sError::Closed);
        }
        let from = el
            .attr("from")
            .and_then(|j| Jid::parse(j).ok())
            .ok_or(S2sError::Addressing("from"))?;
        let to = el
            .attr("to")
            .and_then(|j| Jid::parse(j).ok())
            .ok_or(S2sError::Addressing("to"))?;
        if !self.is_authorized(from.domain(), to.domain()) {
            return Err(S2sError::NotAuthorized(
                from.domain().to_string(),
                to.domain().to_string(),
            ));
        }
        self.core.send(el);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Receiving side
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InState {
    AwaitHeader,
    Open,
    AwaitTls,
}

/// The receiving side of an s2s stream: a peer connected to us.
/// See the [module docs](self) for the state diagram.
#[derive(Debug)]
pub struct S2sIncoming {
    core: Core,
    state: InState,
    stream_id: String,
    ids: u64,
    header_from: Option<DomainPart>,
    header_to: Option<DomainPart>,
    dialback_errors: bool,
    cert_valid_for: Vec<DomainPart>,
    sasl_domain: Option<DomainPart>,
    /// (originating, receiving) pairs; `receiving == None`: any hosted domain (SASL).
    authorized: Vec<(DomainPart, Option<DomainPart>)>,
    pending: Vec<VerifyRequest>,
}

impl S2sIncoming {
    /// A peer connected.
    pub fn new(cfg: Arc<S2sConfig>, now: Instant) -> Self {
        let mut core = Core::new(cfg, now);
        core.needs_header = true;
        S2sIncoming {
            core,
            state: InState::AwaitHeader,
            stream_id: String::new(),
            ids: 0,
            header_from: None,
            header_to: None,
            dialback_errors: false,
            cert_valid_for: Vec::new(),
            sasl_domain: None,
            authorized: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Bytes to write to the peer.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.core.poll_transmit()
    }
    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<S2sEvent> {
        self.core.events.pop_front()
    }
    /// When to call [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.core.closed {
            None
        } else {
            self.core.reader.poll_timeout()
        }
    }
    /// Time has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
    }
    /// The stream has ended.
    pub fn is_closed(&self) -> bool {
        self.core.closed
    }
    /// The current stream id (changes on every restart).
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }
    /// Ends the stream politely.
    pub fn close(&mut self) {
        self.core.peer_closed(None);
    }
    /// Whether stanzas from `originating` to `receiving` are accepted on this stream.
    pub fn is_authorized(&self, originating: &DomainPart, receiving: &DomainPart) -> bool {
        self.core.cfg.hosts(receiving)
            && self
                .authorized
                .iter()
                .any(|(o, r)| o == originating && r.as_ref().is_none_or(|r| r == receiving))
    }

    /// The TLS handshake finished; `cert_valid_for` lists the domains the peer's
    /// certificate was verified for (empty: self-signed, expired, …).
    pub fn handle_tls_established(&mut self, _now: Instant, cert_valid_for: &[DomainPart]) {
        if self.state != InState::AwaitTls {
            return;
        }
        self.core.tls = true;
        self.cert_valid_for = cert_valid_for.to_vec();
        self.core.reader.restart();
        self.core.needs_header = true;
        self.pending.clear();
        self.state = InState::AwaitHeader;
    }

    fn next_id(&mut self) -> String {
        self.ids += 1;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.core.cfg.id_seed)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(&self.ids.to_be_bytes());
        let tag = mac.finalize().into_bytes();
        tag[..12].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn awaiting_tls(&self) -> bool {
        self.state == InState::AwaitTls
    }

    /// Bytes from the peer.
    pub fn handle_input(&mut self, _now: Instant, bytes: &[u8]) {
        if self.core.closed {
            return;
        }
        self.core.reader.feed(bytes);
        while let Some(ev) = self.core.next() {
            match ev {
                Event::StreamOpen(h) => self.on_header(h),
                Event::Element(el) => self.on_element(el),
                Event::StreamClose => self.core.peer_closed(None),
            }
            if self.core.closed || self.awaiting_tls() {
                // Bytes after <proceed/> / <starttls/> are never trusted: they are
                // dropped when the stream restarts (plaintext injection).
                break;
            }
        }
    }

    fn on_header(&mut self, h: crate::StreamHeader) {
        self.stream_id = self.next_id();
        self.core.needs_header = false;
        // Our header goes out first so a stream error after it is well-formed.
        // COMPAT: some servers omit `to` on restarts (Prosody mod_dialback notes).
        let to = match h.to.as_deref() {
            Some(t) => DomainPart::new(t).ok(),
            None => self.header_to.clone(),
        };
        write_stream_header(
            &mut self.core.out,
            &StreamHeaderOut {
                from: to.as_ref().map(|d| d.as_str()),
                to: h.from.as_deref(),
                id: Some(&self.stream_id.clone()),
                dialback: true,
                server: true,
            },
        );
        let Some(to) = to.filter(|t| self.core.cfg.hosts(t)) else {
            return self.core.fail(Sec::HostUnknown, "header to");
        };
        if let Some(f) = &h.from {
            match DomainPart::new(f) {
                Ok(d) => self.header_from = Some(d),
                Err(_) => return self.core.fail(Sec::InvalidFrom, "header from"),
            }
        }
        self.header_to = Some(to);
        self.dialback_errors = h.is_version_1();
        self.state = InState::Open;
        if !h.is_version_1() {
            return; // pre-1.0: no features, dialback only
        }
        let mut f = String::from("<stream:features>");
        if !self.core.tls && self.core.cfg.tls_available {
            f.push_str("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>");
            if self.core.cfg.incoming_tls == TlsPolicy::Required {
                f.push_str("<required/>");
            }
            f.push_str("</starttls>");
        }
        if self.sasl_domain.is_none() && self.core.tls && !self.cert_valid_for.is_empty() {
            f.push_str("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>");
        }
        f.push_str("<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>");
        f.push_str("</stream:features>");
        self.core.out.push_str(&f);
    }

    fn tls_missing(&self) -> bool {
        self.core.cfg.incoming_tls == TlsPolicy::Required && !self.core.tls
    }

    fn on_element(&mut self, el: Element) {
        if el.is("error", ns::STREAM) {
            return self.core.peer_closed(StreamError::from_owned(&el));
        }
        if self.state != InState::Open {
            return self
                .core
                .fail(Sec::NotAuthorized, "element during TLS negotiation");
        }
        if el.is("starttls", ns::TLS) {
            if self.core.tls || !self.core.cfg.tls_available {
                self.core
                    .out
                    .push_str("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
                self.core.out.push_str(STREAM_CLOSE);
                self.core.closed = true;
                self.core.events.push_back(S2sEvent::Closed {
                    sent: None,
                    received: None,
                });
                return;
            }
            self.core
                .out
                .push_str("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
            self.state = InState::AwaitTls;
            self.core.events.push_back(S2sEvent::StartTls);
            return;
        }
        if self.tls_missing() && !is_dialback(&el, "verify") {
            return self.core.fail(Sec::PolicyViolation, "TLS required");
        }
        if el.is("auth", ns::SASL) {
            return self.on_sasl_auth(&el);
        }
        if is_dialback(&el, "result") {
            return self.on_db_result(&el);
        }
        if is_dialback(&el, "verify") {
            return self.on_db_verify(&el);
        }
        if is_stanza(el.root()) {
            return self.on_stanza(el);
        }
        self.core
            .fail(Sec::UnsupportedStanzaType, "unknown element")
    }

    fn on_sasl_auth(&mut self, el: &Element) {
        let fail = |m: &mut Self, cond: &str| {
            m.core
                .out
                .push_str("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><");
            m.core.out.push_str(cond);
            m.core.out.push_str("/></failure>");
        };
        if el.attr("mechanism") != Some("EXTERNAL") || !self.core.tls {
            return fail(self, "invalid-mechanism");
        }
        // XEP-0178: authzid is '=' (or empty) for "the stream's from", or the domain.
        let text = el.text();
        let text = text.trim();
        let authzid = if text.is_empty() || text == "=" {
            None
        } else {
            match B64
                .decode(text)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
            {
                Some(s) => Some(s),
                None => return fail(self, "incorrect-encoding"),
            }
        };
        let claimed = match authzid {
            Some(a) => DomainPart::new(&a).ok(),
            None => self.header_from.clone(),
        };
        match claimed {
            Some(d)
                if self.cert_valid_for.contains(&d) && Some(&d) == self.header_from.as_ref() =>
            {
                self.core
                    .out
                    .push_str("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
                self.sasl_domain = Some(d.clone());
                self.authorize(d, None, AuthMethod::SaslExternal);
                self.core.reader.restart();
                self.core.needs_header = true;
                self.pending.clear();
                self.state = InState::AwaitHeader;
            }
            _ => fail(self, "not-authorized"),
        }
    }

    fn authorize(
        &mut self,
        originating: DomainPart,
        receiving: Option<DomainPart>,
        method: AuthMethod,
    ) {
        self.core.reader.set_authenticated();
        let local = receiving.clone().or_else(|| self.header_to.clone());
        if !self
            .authorized
            .iter()
            .any(|(o, r)| *o == originating && *r == receiving)
        {
            if self.authorized.len() >= MAX_PAIRS {
                return self
                    .core
                    .fail(Sec::PolicyViolation, "too many authenticated domains");
            }
            self.authorized.push((originating.clone(), receiving));
        }
        if let Some(local) = local {
            self.core.events.push_back(S2sEvent::Authenticated {
                local,
                remote: originating,
                method,
            });
        }
    }

    fn db_result_reply(
        &mut self,
        from: &DomainPart,
        to: &DomainPart,
        kind: &str,
        err: Option<StanzaErrorCondition>,
    ) {
        let mut b = ElementBuilder::new("result", ns::DIALBACK)
            .prefix("db")
            .attr("from", from.as_str())
            .attr("to", to.as_str())
            .attr("type", kind);
        if let Some(c) = err {
            b = b.child(StanzaError::new(c).to_element(ns::SERVER));
        }
        let el = b.build();
        self.core.send(&el);
    }

    fn on_db_result(&mut self, el: &Element) {
        let (Some(orig), Some(recv)) =
            (domain_attr(el.root(), "from"), domain_attr(el.root(), "to"))
        else {
            return self
                .core
                .fail(Sec::ImproperAddressing, "db:result addressing");
        };
        let key = el.text().trim().to_owned();
        if key.is_empty() {
            return self.core.fail(Sec::InvalidXml, "db:result without key");
        }
        if !self.core.tls && self.core.cfg.tls_required_peers.contains(&orig) {
            return self
                .core
                .fail(Sec::PolicyViolation, "TLS required for this peer");
        }
        if !self.core.cfg.hosts(&recv) {
            // XEP-0220 §2.4: item-not-found for a domain we do not serve.
            if self.dialback_errors {
                return self.db_result_reply(
                    &recv,
                    &orig,
                    "error",
                    Some(StanzaErrorCondition::ItemNotFound),
                );
            }
            return self.core.fail(Sec::HostUnknown, "db:result to");
        }
        if self.pending.len() >= 32 {
            return self
                .core
                .fail(Sec::PolicyViolation, "too many pending verifications");
        }
        let req = VerifyRequest {
            originating: orig,
            receiving: recv,
            stream_id: self.stream_id.clone(),
            key,
        };
        if let Some(p) = self
            .pending
            .iter_mut()
            .find(|p| p.originating == req.originating && p.receiving == req.receiving)
        {
            *p = req.clone();
        } else {
            self.pending.push(req.clone());
        }
        self.core.events.push_back(S2sEvent::VerifyRequest(req));
    }

    /// The authoritative server answered (or could not be reached) for a
    /// [`S2sEvent::VerifyRequest`] of this stream.
    pub fn handle_verify_result(&mut self, req: &VerifyRequest, result: VerifyResult) {
        if self.core.closed {
            return;
        }
        let Some(i) = self.pending.iter().position(|p| {
            p.originating == req.originating
                && p.receiving == req.receiving
                && p.stream_id == req.stream_id
                && p.key == req.key
        }) else {
            return; // stale (stream restarted or superseded): authorizes nothing
        };
        let p = self.pending.remove(i);
        match result {
            VerifyResult::Valid => {
                self.db_result_reply(&p.receiving, &p.originating, "valid", None);
                self.authorize(p.originating, Some(p.receiving), AuthMethod::Dialback);
            }
            VerifyResult::Invalid => {
                self.db_result_reply(&p.receiving, &p.originating, "invalid", None);
            }
            VerifyResult::Error(c) => {
                if self.dialback_errors {
                    self.db_result_reply(&p.receiving, &p.originating, "error", Some(c));
                } else {
                    self.core
                        .fail(Sec::RemoteConnectionFailed, "dialback verification failed");
                }
            }
        }
    }

    fn on_db_verify(&mut self, el: &Element) {
        // We are the authoritative server: <db:verify from=receiving to=originating id=…>
        let (Some(recv), Some(orig), Some(id)) = (
            domain_attr(el.root(), "from"),
            domain_attr(el.root(), "to"),
            el.attr("id"),
        ) else {
            return self
                .core
                .fail(Sec::ImproperAddressing, "db:verify addressing");
        };
        let mut b = ElementBuilder::new("verify", ns::DIALBACK)
            .prefix("db")
            .attr("from", orig.as_str())
            .attr("to", recv.as_str())
            .attr("id", id);
        if !self.core.cfg.hosts(&orig) {
            b = b
                .attr("type", "error")
                .child(StanzaError::new(StanzaErrorCondition::ItemNotFound).to_element(ns::SERVER));
        } else {
            let ok = self
                .core
                .cfg
                .secret
                .verify(recv.as_str(), orig.as_str(), id, &el.text());
            b = b.attr("type", if ok { "valid" } else { "invalid" });
        }
        let el = b.build();
        self.core.send(&el);
    }

    fn on_stanza(&mut self, el: Element) {
        let Some(from) = el.attr("from") else {
            return self
                .core
                .fail(Sec::ImproperAddressing, "stanza without from");
        };
        let Some(to) = el.attr("to") else {
            return self.core.fail(Sec::ImproperAddressing, "stanza without to");
        };
        let Ok(from) = Jid::parse(from) else {
            return self.core.fail(Sec::InvalidFrom, "malformed from");
        };
        let Ok(to) = Jid::parse(to) else {
            return self.core.fail(Sec::ImproperAddressing, "malformed to");
        };
        if !self.core.cfg.hosts(to.domain()) {
            return self
                .core
                .fail(Sec::HostUnknown, "stanza to a domain we do not host");
        }
        if !self.is_authorized(from.domain(), to.domain()) {
            return self
                .core
                .fail(Sec::InvalidFrom, "stanza from an unauthenticated domain");
        }
        self.core.events.push_back(S2sEvent::Stanza(el));
    }
}

#[cfg(test)]
mod tests;
