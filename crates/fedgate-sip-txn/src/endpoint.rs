//! The transaction layer: many transactions, matched and timed (RFC 3261 §17.1.3,
//! §17.2.3, §8.2.2.2).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::Instant;

use bytes::Bytes;
use fedgate_sip::{
    Answer, HeaderKind, Host, HostRef, Message, Method, Param, Params, Transport, Via, ViaRef,
};

use crate::config::{EndpointConfig, Flow, TransportKind};
use crate::error::Error;
use crate::transaction::{
    AckOutcome, ClientInvite, ClientInviteState, ClientNonInvite, Delivery, Failure, ServerInvite,
    ServerInviteState, ServerNonInvite, ServerNote, timeout_response,
};
use crate::util::{self, IdGen, IdMap};

/// A transaction handle. Stale handles (of finished transactions) are detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxnId {
    index: u32,
    generation: u32,
}

/// Sizes of an [`Endpoint`]'s tables. Every table is bounded by `live`, which is
/// bounded by [`Limits::max_transactions`](crate::Limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndpointStats {
    /// Live transactions.
    pub live: usize,
    /// Entries in the branch index (one per live transaction).
    pub keys: usize,
    /// Entries in the RFC 2543 index.
    pub legacy_keys: usize,
    /// Entries in the merged-request index.
    pub merge_keys: usize,
    /// Armed deadlines (at most one per live transaction).
    pub timers: usize,
    /// Transmits not yet polled.
    pub queued_transmits: usize,
    /// Events not yet polled.
    pub queued_events: usize,
}

/// Bytes to send on a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub flow: Flow,
    /// The encoded message.
    pub payload: Bytes,
}

/// What the transaction layer tells its TU.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxnEvent {
    /// A new request (not a retransmission). Answer it with
    /// [`Endpoint::send_response`]; if the TU does not, the transaction answers 408
    /// after its guard time.
    Request {
        /// The server transaction.
        txn: TxnId,
        /// Where it came from.
        flow: Flow,
        /// The request.
        request: Message,
    },
    /// An ACK that matches no transaction: the ACK for a 2xx (RFC 3261 §13.2.2.4),
    /// which belongs to the dialog.
    Ack {
        /// Where it came from.
        flow: Flow,
        /// The ACK.
        request: Message,
    },
    /// A response for a client transaction (provisional, final, and in RFC 6026
    /// Accepted the 2xx retransmissions).
    Response {
        /// The client transaction.
        txn: TxnId,
        /// The response.
        response: Message,
    },
    /// A client transaction ended without a final response; `response` is the 408
    /// (timeout) or 503 (transport error) synthesized for the TU (RFC 3261 §8.1.3.1).
    Failed {
        /// The client transaction.
        txn: TxnId,
        /// Why.
        failure: Failure,
        /// The synthesized response.
        response: Message,
    },
    /// A CANCEL matched this INVITE server transaction; a 487 was sent if no final
    /// response had been sent yet.
    Cancelled {
        /// The INVITE server transaction.
        txn: TxnId,
    },
    /// An INVITE client transaction that delivered a 2xx ended (Timer M or a
    /// transport error): no further 2xx will be delivered for it.
    AcceptedEnded {
        /// The client transaction.
        txn: TxnId,
    },
    /// A server transaction reports a problem.
    Server {
        /// The server transaction.
        txn: TxnId,
        /// What happened.
        note: ServerNote,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    Client,
    Server,
}

/// The RFC 3261 transaction key: branch, sent-by (server side), method (ACK is
/// folded into INVITE). `hash` is a keyed SipHash of the other fields, computed
/// once per message by [`Endpoint::key`]; the index hashes only it (one SipHash per
/// message instead of one per lookup, insert and removal), and compares every field.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TxnKey {
    hash: u64,
    role: Role,
    branch: Bytes,
    sent_by: Option<(Host, Option<u16>)>,
    method: Method,
}

impl std::hash::Hash for TxnKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The top Via of a request, as far as transaction matching needs it.
struct TopVia {
    /// The branch (empty if none).
    branch: Bytes,
    /// Host and port, zero-copy slices of the message.
    sent_by: (Host, Option<u16>),
    /// The branch starts with `z9hG4bK`.
    cookie: bool,
}

impl TopVia {
    fn of_ref(via: &ViaRef<'_>) -> TopVia {
        let src = via.src();
        let host = match via.host() {
            HostRef::Domain(d) => Host::Domain(util::sub(src, d)),
            HostRef::Ipv4(a) => Host::Ipv4(a),
            HostRef::Ipv6(a) => Host::Ipv6(a),
        };
        TopVia {
            branch: via.branch().map(|b| util::sub(src, b)).unwrap_or_default(),
            sent_by: (host, via.port()),
            cookie: via.has_rfc3261_branch(),
        }
    }
}

/// What the endpoint decoded of the request of the last [`TxnEvent::Request`], for
/// the UA on top, so that it need not decode the same headers again: zero-copy
/// slices of the request.
#[derive(Debug)]
pub(crate) struct RequestFacts {
    pub(crate) txn: TxnId,
    /// The CSeq number.
    pub(crate) seq: u32,
    call_id: Bytes,
    to_tag: Option<Bytes>,
    from_tag: Option<Bytes>,
}

impl RequestFacts {
    /// The borrowed dialog id the request belongs to (Call-ID, To tag, From tag),
    /// as [`dialog::request_key`](crate::dialog) reads it.
    pub(crate) fn dialog_key(&self) -> Option<(&[u8], &[u8], &[u8])> {
        Some((
            &self.call_id,
            self.to_tag.as_deref()?,
            self.from_tag.as_deref()?,
        ))
    }
}

/// RFC 2543 matching (§17.2.3) for branches without the magic cookie.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LegacyKey {
    call_id: Bytes,
    from_tag: Option<Bytes>,
    cseq: u32,
    method: Method,
    top_via: Bytes,
}

/// §8.2.2.2 merged-request detection (requests without a To tag).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MergeKey {
    call_id: Bytes,
    from_tag: Bytes,
    cseq: u32,
    method: Method,
}

#[derive(Debug)]
/// One transaction, by its RFC 3261 name (§17: ICT, NICT, IST, NIST).
enum Machine {
    Ict(ClientInvite),
    Nict(ClientNonInvite),
    Ist(ServerInvite),
    Nist(ServerNonInvite),
}

impl Machine {
    fn poll_transmit(&mut self) -> Option<Bytes> {
        match self {
            Machine::Ict(m) => m.poll_transmit(),
            Machine::Nict(m) => m.poll_transmit(),
            Machine::Ist(m) => m.poll_transmit(),
            Machine::Nist(m) => m.poll_transmit(),
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Machine::Ict(m) => m.poll_timeout(),
            Machine::Nict(m) => m.poll_timeout(),
            Machine::Ist(m) => m.poll_timeout(),
            Machine::Nist(m) => m.poll_timeout(),
        }
    }
    fn is_terminated(&self) -> bool {
        match self {
            Machine::Ict(m) => m.is_terminated(),
            Machine::Nict(m) => m.is_terminated(),
            Machine::Ist(m) => m.is_terminated(),
            Machine::Nist(m) => m.is_terminated(),
        }
    }
    fn request(&self) -> &Message {
        match self {
            Machine::Ict(m) => m.request(),
            Machine::Nict(m) => m.request(),
            Machine::Ist(m) => m.request(),
            Machine::Nist(m) => m.request(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    machine: Machine,
    flow: Flow,
    key: TxnKey,
    legacy: Option<LegacyKey>,
    merge: Option<MergeKey>,
    deadline: Option<Instant>,
    /// `(deadline, index)` is in [`Endpoint::timers`]. A deadline that is not is
    /// that of [`Endpoint::unarmed`].
    armed: bool,
    /// Server side: the To tag of the responses we sent (RFC 2543 ACK matching).
    to_tag: Option<Bytes>,
}

#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

/// The transaction layer of one SIP endpoint.
///
/// Owns every client and server transaction, matches incoming messages to them,
/// and runs their timers. It is sans-IO: feed it with `handle_*(now, …)` and drain
/// [`poll_event`](Endpoint::poll_event), [`poll_transmit`](Endpoint::poll_transmit)
/// and [`poll_timeout`](Endpoint::poll_timeout) after every call (see the crate
/// docs for the run-loop contract).
///
/// Matching:
/// - responses: top Via branch + CSeq method (§17.1.3); anything else is a stray
///   and dropped;
/// - requests with the `z9hG4bK` cookie: branch + sent-by + method, where ACK
///   matches the INVITE and CANCEL is its own transaction (§17.2.3);
/// - requests without the cookie: Call-ID, From tag, CSeq number, method and top Via
///   (RFC 2543 fallback), with the To tag checked for an ACK;
/// - an ACK that matches nothing is the ACK for a 2xx: [`TxnEvent::Ack`];
/// - a request without To tag whose From tag, Call-ID and CSeq equal those of a live
///   server transaction but whose branch differs is a merged request: 482 (§8.2.2.2).
///
/// Over [`Limits::max_transactions`](crate::Limits) a new request gets 503 with
/// Retry-After and a new client request fails with [`Error::Limit`].
#[derive(Debug)]
pub struct Endpoint {
    cfg: EndpointConfig,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    index: IdMap<TxnKey, u32>,
    /// The key of the SipHash in [`TxnKey`] (random per endpoint, like std's).
    keyer: RandomState,
    legacy: HashMap<LegacyKey, u32>,
    merge: HashMap<MergeKey, u32>,
    timers: BTreeSet<(Instant, u32)>,
    /// The server transaction created by the last request, whose deadline is not
    /// in `timers` yet: a TU that answers at once (on a reliable transport the
    /// transaction then ends) costs no insertion and removal. Moved into `timers`
    /// at the next input ([`Endpoint::arm_pending`]).
    unarmed: Option<u32>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxnEvent>,
    /// Of the last `TxnEvent::Request` queued ([`Endpoint::take_request_facts`]).
    facts: Option<RequestFacts>,
    ids: IdGen,
}

fn key_method(m: &Method) -> Method {
    if *m == Method::Ack {
        Method::Invite
    } else {
        m.clone()
    }
}

impl Endpoint {
    /// A transaction key, hashed once.
    fn key(
        &self,
        role: Role,
        branch: Bytes,
        sent_by: Option<(Host, Option<u16>)>,
        method: Method,
    ) -> TxnKey {
        let mut h = self.keyer.build_hasher();
        let mut tag = [role as u8, 0, 0, 0, 0];
        let host: &[u8] = match &sent_by {
            None => &[],
            Some((host, port)) => {
                tag[1] = 1 + u8::from(port.is_some());
                tag[2..4].copy_from_slice(&port.unwrap_or(0).to_le_bytes());
                match host {
                    Host::Domain(d) => d,
                    Host::Ipv4(a) => {
                        tag[4] = 4;
                        &a.octets()[..]
                    }
                    Host::Ipv6(a) => {
                        tag[4] = 6;
                        &a.octets()[..]
                    }
                }
            }
        };
        util::hash_parts(&mut h, &[&tag, &branch, host, method.as_bytes()]);
        let hash = h.finish();
        TxnKey {
            hash,
            role,
            branch,
            sent_by,
            method,
        }
    }

    /// An endpoint with no transactions.
    pub fn new(cfg: EndpointConfig) -> Self {
        Endpoint {
            ids: IdGen::new(cfg.seed),
            cfg,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            index: IdMap::default(),
            keyer: RandomState::new(),
            legacy: HashMap::new(),
            merge: HashMap::new(),
            timers: BTreeSet::new(),
            unarmed: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            facts: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.cfg
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.live
    }
    /// True when no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub(crate) fn new_tag(&mut self) -> Bytes {
        self.ids.tag()
    }

    /// The headers decoded for the request of `txn`'s [`TxnEvent::Request`], if
    /// it is the last one queued.
    pub(crate) fn take_request_facts(&mut self, txn: TxnId) -> Option<RequestFacts> {
        self.facts.take().filter(|f| f.txn == txn)
    }

    // ---- outputs -----------------------------------------------------------------

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }
    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<TxnEvent> {
        self.events.pop_front()
    }
    /// The earliest deadline; call [`handle_timeout`](Endpoint::handle_timeout) then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let armed = self.timers.first().map(|(t, _)| *t);
        let pending = self
            .unarmed
            .and_then(|i| self.entry(i))
            .and_then(|e| e.deadline);
        match (armed, pending) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Puts the deadline of [`Endpoint::unarmed`] into the timer set.
    fn arm_pending(&mut self) {
        let Some(idx) = self.unarmed.take() else {
            return;
        };
        if let Some(e) = self
            .slots
            .get_mut(idx as usize)
            .and_then(|s| s.entry.as_mut())
            && !e.armed
            && let Some(d) = e.deadline
        {
            self.timers.insert((d, idx));
            e.armed = true;
        }
    }

    // ---- inputs ------------------------------------------------------------------

    /// A UDP datagram (or any whole message as bytes) arrived on `flow`. Unparsable
    /// requests are answered (400, 413, 505, …) when enough of them was understood;
    /// anything else unparsable is dropped.
    pub fn handle_datagram(&mut self, now: Instant, flow: Flow, data: Bytes) {
        match fedgate_sip::parse_datagram(data, &self.cfg.sip_limits) {
            Ok(m) => self.handle_message(now, flow, m),
            Err(e) => self.handle_parse_error(now, flow, &e),
        }
    }

    /// A message that could not be parsed or framed (from a
    /// [`StreamFramer`](fedgate_sip::StreamFramer)): answered from what was salvaged
    /// if it is a request and the error calls for a status.
    pub fn handle_parse_error(&mut self, _now: Instant, flow: Flow, err: &fedgate_sip::Error) {
        let Answer::Status(code) = err.answer() else {
            return;
        };
        let s = err.salvage();
        let Some(start @ fedgate_sip::StartLine::Request(rl)) = &s.start else {
            return;
        };
        if rl.method == Method::Ack {
            return;
        }
        let req = Message {
            start: start.clone(),
            headers: s.headers.clone(),
            body: Bytes::new(),
        };
        self.stateless_answer(flow, &req, code, None);
    }

    /// A parsed message arrived on `flow`.
    pub fn handle_message(&mut self, now: Instant, flow: Flow, msg: Message) {
        if msg.is_request() {
            self.handle_request(now, flow, msg);
        } else {
            self.handle_response(now, msg);
        }
    }

    /// Time passed: fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.arm_pending();
        while let Some(&(at, idx)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, idx));
            if let Some(e) = self.entry_mut(idx) {
                e.deadline = None;
                e.armed = false;
            }
            self.fire(now, idx);
        }
    }

    /// The connection behind `flow` closed (the peer or the driver ended it) and
    /// will carry nothing more: every transaction on it fails as on a transport
    /// error (RFC 3261 §17.1.4, §17.2.4): client transactions report
    /// [`TxnEvent::Failed`] with [`Failure::TransportError`] and a synthesized 503,
    /// server transactions end with [`ServerNote::TransportError`].
    pub fn handle_flow_closed(&mut self, now: Instant, flow: Flow) {
        self.handle_transport_error(now, flow);
    }

    /// The driver could not send on `flow` (or it closed): every transaction on it
    /// fails.
    pub fn handle_transport_error(&mut self, _now: Instant, flow: Flow) {
        let hit: Vec<u32> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.entry.as_ref().is_some_and(|e| e.flow == flow))
            .map(|(i, _)| i as u32)
            .collect();
        for idx in hit {
            let id = self.id_of(idx);
            let Some(e) = self.entry_mut(idx) else {
                continue;
            };
            let ev = match &mut e.machine {
                Machine::Ict(m) => m.handle_transport_error().map(|f| (f, m.request())),
                Machine::Nict(m) => m.handle_transport_error().map(|f| (f, m.request())),
                Machine::Ist(m) => {
                    m.handle_transport_error();
                    None
                }
                Machine::Nist(m) => {
                    m.handle_transport_error();
                    None
                }
            }
            .map(|(failure, req)| TxnEvent::Failed {
                txn: id,
                failure,
                response: util::response_to(req, 503, None),
            });
            let server = matches!(e.machine, Machine::Ist(_) | Machine::Nist(_));
            if let Some(ev) = ev {
                self.events.push_back(ev);
            } else if server {
                self.events.push_back(TxnEvent::Server {
                    txn: id,
                    note: ServerNote::TransportError,
                });
            }
            self.after(idx);
        }
    }

    // ---- TU calls ----------------------------------------------------------------

    /// Sends a request in a new client transaction on `flow`. The endpoint puts its
    /// own Via (with a fresh branch) on top, adds `Max-Forwards: 70` if the request
    /// has none (RFC 3261 §8.1.1.6) and makes Content-Length match the body
    /// (§18.3); the request must not carry a Via and must not be an ACK (see
    /// [`send_ack`](Endpoint::send_ack)).
    pub fn send_request(&mut self, now: Instant, flow: Flow, req: Message) -> Result<TxnId, Error> {
        let method = req
            .method()
            .cloned()
            .ok_or(Error::InvalidMessage("not a request"))?;
        if method == Method::Ack {
            return Err(Error::InvalidMessage("ACK is sent with send_ack"));
        }
        if req.headers.get(HeaderKind::Via).is_some() {
            return Err(Error::InvalidMessage("request already has a Via"));
        }
        let cseq = req.cseq()?;
        if cseq.method != method {
            return Err(Error::InvalidMessage("CSeq method differs from the method"));
        }
        if self.live >= self.cfg.limits.max_transactions {
            return Err(Error::Limit {
                what: "max_transactions",
            });
        }
        let branch = self.ids.branch();
        let req = self.with_via(req, flow.transport, &branch);
        let key = self.key(Role::Client, branch, None, method);
        Ok(self.start_client(now, flow, req, key))
    }

    fn start_client(&mut self, now: Instant, flow: Flow, req: Message, key: TxnKey) -> TxnId {
        let wire = req.to_bytes();
        let t = self.cfg.timers;
        let machine = if req.method() == Some(&Method::Invite) {
            Machine::Ict(ClientInvite::new(now, req, wire, flow.is_reliable(), t))
        } else {
            Machine::Nict(ClientNonInvite::new(now, req, wire, flow.is_reliable(), t))
        };
        let idx = self.insert(Entry {
            machine,
            flow,
            key: key.clone(),
            legacy: None,
            merge: None,
            deadline: None,
            armed: false,
            to_tag: None,
        });
        self.index.insert(key, idx);
        self.after(idx);
        self.id_of(idx)
    }

    /// Cancels a pending INVITE client transaction (RFC 3261 §9.1): sends CANCEL
    /// in its own transaction. The INVITE transaction then gets its 487 normally.
    pub fn cancel(&mut self, now: Instant, invite: TxnId) -> Result<TxnId, Error> {
        let idx = self.check(invite)?;
        let Some(e) = self.entry(idx) else {
            return Err(Error::UnknownTransaction);
        };
        let Machine::Ict(m) = &e.machine else {
            return Err(Error::WrongState("not an INVITE client transaction"));
        };
        if !matches!(
            m.state(),
            ClientInviteState::Calling | ClientInviteState::Proceeding
        ) {
            return Err(Error::WrongState("INVITE already has a final response"));
        }
        if self.live >= self.cfg.limits.max_transactions {
            return Err(Error::Limit {
                what: "max_transactions",
            });
        }
        let cancel =
            util::cancel_for(m.request()).ok_or(Error::InvalidMessage("cannot build CANCEL"))?;
        let (branch, flow) = (e.key.branch.clone(), e.flow);
        let key = self.key(Role::Client, branch, None, Method::Cancel);
        Ok(self.start_client(now, flow, cancel, key))
    }

    /// Sends an ACK for a 2xx (no transaction, RFC 3261 §13.2.2.4) with a fresh
    /// branch. Returns the bytes sent, so the TU can resend them on a 2xx
    /// retransmission with [`transmit`](Endpoint::transmit).
    pub fn send_ack(&mut self, _now: Instant, flow: Flow, ack: Message) -> Result<Bytes, Error> {
        if ack.method() != Some(&Method::Ack) {
            return Err(Error::InvalidMessage("not an ACK"));
        }
        let branch = self.ids.branch();
        let ack = self.with_via(ack, flow.transport, &branch);
        let wire = ack.to_bytes();
        self.transmit(flow, wire.clone());
        Ok(wire)
    }

    /// Queues raw bytes for a flow (stateless send).
    pub fn transmit(&mut self, flow: Flow, payload: Bytes) {
        self.transmits.push_back(Transmit { flow, payload });
    }

    /// Sends a response in a server transaction. A final response ends the TU's
    /// part; the transaction absorbs retransmissions until its timers end it.
    /// Content-Length is made to match the body (RFC 3261 §18.3).
    pub fn send_response(&mut self, now: Instant, txn: TxnId, resp: Message) -> Result<(), Error> {
        let idx = self.check(txn)?;
        let code = resp
            .status()
            .ok_or(Error::InvalidMessage("not a response"))?;
        let mut resp = resp;
        util::ensure_content_length(&mut resp);
        let wire = resp.to_bytes();
        let Some(e) = self.entry_mut(idx) else {
            return Err(Error::UnknownTransaction);
        };
        // Only RFC 2543 ACK matching and CANCEL answers need our To tag.
        if e.to_tag.is_none() && matches!(e.machine, Machine::Ist(_)) {
            e.to_tag = resp.to().ok().and_then(|a| a.tag().cloned());
        }
        match &mut e.machine {
            Machine::Ist(m) => m.send_response(now, code, wire)?,
            Machine::Nist(m) => m.send_response(now, code, wire)?,
            _ => return Err(Error::WrongState("not a server transaction")),
        }
        self.after(idx);
        Ok(())
    }

    /// [`send_response`](Endpoint::send_response) for a response already encoded
    /// (with its Content-Length) in a non-INVITE server transaction.
    pub(crate) fn send_response_wire(
        &mut self,
        now: Instant,
        txn: TxnId,
        code: u16,
        wire: Bytes,
    ) -> Result<(), Error> {
        let idx = self.check(txn)?;
        let Some(e) = self.entry_mut(idx) else {
            return Err(Error::UnknownTransaction);
        };
        match &mut e.machine {
            Machine::Nist(m) => m.send_response(now, util::status(code), wire)?,
            _ => return Err(Error::WrongState("not a non-INVITE server transaction")),
        }
        self.after(idx);
        Ok(())
    }

    /// The request of a live transaction.
    pub fn request(&self, txn: TxnId) -> Option<&Message> {
        let idx = self.check(txn).ok()?;
        self.entry(idx).map(|e| e.machine.request())
    }

    /// The flow of a live transaction.
    pub fn flow(&self, txn: TxnId) -> Option<Flow> {
        let idx = self.check(txn).ok()?;
        self.entry(idx).map(|e| e.flow)
    }

    // ---- internals ---------------------------------------------------------------

    fn with_via(&self, req: Message, transport: TransportKind, branch: &Bytes) -> Message {
        let via = Via {
            protocol: Bytes::from_static(b"SIP"),
            version: Bytes::from_static(b"2.0"),
            transport: match transport {
                TransportKind::Udp => Transport::Udp,
                TransportKind::Tcp => Transport::Tcp,
                TransportKind::Tls => Transport::Tls,
            },
            host: self.cfg.via_host.clone(),
            port: self.cfg.via_port,
            params: Params(vec![Param::new(
                Bytes::from_static(b"branch"),
                Some(branch.clone()),
            )]),
        };
        let mut out = Message {
            start: req.start,
            headers: fedgate_sip::Headers::with_capacity(req.headers.len() + 1),
            body: req.body,
        };
        out.push_typed(HeaderKind::Via, &via);
        let mut max_forwards = false;
        for h in req.headers.iter() {
            max_forwards |= h.kind() == Some(HeaderKind::MaxForwards);
            out.headers.push(h.to_owned());
        }
        // RFC 3261 §8.1.1.6: a UAC MUST insert Max-Forwards (70).
        if !max_forwards {
            util::push(&mut out, "Max-Forwards", Bytes::from_static(b"70"));
        }
        util::ensure_content_length(&mut out);
        out
    }

    fn stateless_answer(&mut self, flow: Flow, req: &Message, code: u16, retry_after: Option<u32>) {
        let tag = self.ids.tag();
        let mut r = util::response_to(req, code, Some(&tag));
        if let Some(s) = retry_after {
            r.headers.remove(HeaderKind::ContentLength);
            util::push(&mut r, "Retry-After", util::num(u64::from(s)));
            r.set_body(Bytes::new());
        }
        util::ensure_content_length(&mut r);
        self.transmit(flow, r.to_bytes());
    }

    fn handle_request(&mut self, now: Instant, flow: Flow, req: Message) {
        self.arm_pending();
        let is_ack = req.method() == Some(&Method::Ack);
        // Everything matching needs is taken from the views `validate` decoded.
        let (via, seq, to_tag, from_tag, call_id) = match fedgate_sip::validate_views(&req) {
            Ok(v) => (
                v.top_via.as_ref().map(TopVia::of_ref),
                v.cseq.seq,
                v.to.tag().map(|t| util::sub(v.to.src(), t)),
                v.from.tag().map(|t| util::sub(v.from.src(), t)),
                util::sub(v.call_id.src(), v.call_id.as_bytes()),
            ),
            Err(rej) => {
                if let (Answer::Status(code), false) = (rej.answer, is_ack) {
                    tracing::debug!(code, reason = rej.reason, "rejecting invalid request");
                    self.stateless_answer(flow, &req, code, None);
                }
                return;
            }
        };
        let (Some(via), Some(method)) = (via, req.method().cloned()) else {
            return;
        };
        let cookie = via.cookie;
        let mut key = None;
        let found = if cookie {
            let k = self.key(
                Role::Server,
                via.branch.clone(),
                Some(via.sent_by.clone()),
                key_method(&method),
            );
            let found = self.index.get(&k).copied();
            key = Some(k);
            found
        } else {
            self.legacy_key(&req, &method)
                .and_then(|k| self.legacy.get(&k).copied())
        };

        if let Some(idx) = found {
            self.matched_request(now, idx, &req, is_ack, cookie);
            return;
        }
        if is_ack {
            self.events.push_back(TxnEvent::Ack { flow, request: req });
            return;
        }
        if method == Method::Cancel {
            self.handle_cancel(now, flow, req, &via);
            return;
        }
        // §8.2.2.2 merged requests.
        let merge = match (&to_tag, &from_tag) {
            (None, Some(from_tag)) => Some(MergeKey {
                call_id: call_id.clone(),
                from_tag: from_tag.clone(),
                cseq: seq,
                method: method.clone(),
            }),
            _ => None,
        };
        if let Some(m) = &merge
            && self.merge.contains_key(m)
        {
            self.stateless_answer(flow, &req, 482, None);
            return;
        }
        if self.live >= self.cfg.limits.max_transactions {
            tracing::warn!("max_transactions reached: 503");
            let ra = self.cfg.limits.retry_after_secs;
            self.stateless_answer(flow, &req, 503, Some(ra));
            return;
        }
        let key = match key {
            Some(k) => k,
            None => {
                // Unique per transaction; never looked up.
                let branch = self.ids.branch();
                self.key(
                    Role::Server,
                    branch,
                    Some(via.sent_by.clone()),
                    key_method(&method),
                )
            }
        };
        let legacy = if cookie {
            None
        } else {
            self.legacy_key(&req, &method)
        };
        let t = self.cfg.timers;
        let machine = if method == Method::Invite {
            Machine::Ist(ServerInvite::new(now, req.clone(), flow.is_reliable(), t))
        } else {
            Machine::Nist(ServerNonInvite::new(
                now,
                req.clone(),
                flow.is_reliable(),
                t,
            ))
        };
        let idx = self.insert(Entry {
            machine,
            flow,
            key: key.clone(),
            legacy: legacy.clone(),
            merge: merge.clone(),
            deadline: None,
            armed: false,
            to_tag: None,
        });
        self.index.insert(key, idx);
        if let Some(l) = legacy {
            self.legacy.insert(l, idx);
        }
        if let Some(m) = merge {
            self.merge.insert(m, idx);
        }
        let txn = self.id_of(idx);
        self.facts = Some(RequestFacts {
            txn,
            seq,
            call_id,
            to_tag,
            from_tag,
        });
        self.events.push_back(TxnEvent::Request {
            txn,
            flow,
            request: req,
        });
        self.after_new(idx);
    }

    fn matched_request(
        &mut self,
        now: Instant,
        idx: u32,
        req: &Message,
        is_ack: bool,
        cookie: bool,
    ) {
        let Some(e) = self.entry_mut(idx) else { return };
        let flow = e.flow;
        if is_ack {
            if !cookie {
                // RFC 2543: the ACK's To tag must be the one we sent.
                let ack_tag = req.to().ok().and_then(|t| t.tag().cloned());
                if e.to_tag.is_some() && ack_tag != e.to_tag {
                    self.events.push_back(TxnEvent::Ack {
                        flow,
                        request: req.clone(),
                    });
                    return;
                }
            }
            match &mut e.machine {
                Machine::Ist(m) => match m.handle_ack(now) {
                    AckOutcome::ToTu => self.events.push_back(TxnEvent::Ack {
                        flow,
                        request: req.clone(),
                    }),
                    AckOutcome::Confirmed | AckOutcome::Absorbed => {}
                },
                _ => return,
            }
        } else {
            match &mut e.machine {
                Machine::Ist(m) => m.handle_retransmission(now),
                Machine::Nist(m) => m.handle_retransmission(now),
                _ => return,
            }
        }
        self.after(idx);
    }

    fn handle_cancel(&mut self, now: Instant, flow: Flow, req: Message, via: &TopVia) {
        let invite_key = self.key(
            Role::Server,
            via.branch.clone(),
            Some(via.sent_by.clone()),
            Method::Invite,
        );
        let target = if via.cookie {
            self.index.get(&invite_key).copied()
        } else {
            self.legacy_key(&req, &Method::Invite)
                .and_then(|k| self.legacy.get(&k).copied())
        };
        let Some(inv) = target else {
            self.stateless_answer(flow, &req, 481, None);
            return;
        };
        if self.live >= self.cfg.limits.max_transactions {
            let ra = self.cfg.limits.retry_after_secs;
            self.stateless_answer(flow, &req, 503, Some(ra));
            return;
        }
        // The CANCEL's own transaction, answered 200 at once (§9.2).
        let branch = if via.cookie {
            invite_key.branch.clone()
        } else {
            self.ids.branch()
        };
        let key = self.key(
            Role::Server,
            branch,
            invite_key.sent_by.clone(),
            Method::Cancel,
        );
        let to_tag = self.entry(inv).and_then(|e| e.to_tag.clone());
        let t = self.cfg.timers;
        let resp = util::response_to(&req, 200, to_tag.as_ref());
        let mut m = ServerNonInvite::new(now, req, flow.is_reliable(), t);
        let _ = m.send_response(
            now,
            resp.status().unwrap_or(util::status(200)),
            resp.to_bytes(),
        );
        let idx = self.insert(Entry {
            machine: Machine::Nist(m),
            flow,
            key: key.clone(),
            legacy: None,
            merge: None,
            deadline: None,
            armed: false,
            to_tag: None,
        });
        self.index.insert(key, idx);
        self.after(idx);
        // 487 on the INVITE if it is still unanswered.
        let inv_id = self.id_of(inv);
        let pending = self.entry(inv).and_then(|e| match &e.machine {
            Machine::Ist(m) if m.state() == ServerInviteState::Proceeding => {
                Some(m.request().clone())
            }
            _ => None,
        });
        if let Some(invite) = pending {
            let tag = self.ids.tag();
            let r487 = util::response_to(&invite, 487, Some(&tag));
            let _ = self.send_response(now, inv_id, r487);
            self.events.push_back(TxnEvent::Cancelled { txn: inv_id });
        }
    }

    fn legacy_key(&self, req: &Message, method: &Method) -> Option<LegacyKey> {
        Some(LegacyKey {
            call_id: req.call_id().ok()?.0,
            from_tag: req.from().ok()?.tag().cloned(),
            cseq: req.cseq().ok()?.seq,
            method: key_method(method),
            top_via: fedgate_sip::HeaderValue::to_bytes(&req.top_via().ok()?),
        })
    }

    fn handle_response(&mut self, now: Instant, resp: Message) {
        let (Ok(via), Ok(cseq)) = (resp.top_via_ref(), resp.cseq_ref()) else {
            return;
        };
        let Some(branch) = via.branch() else { return };
        let Some(src) = resp.headers.get(HeaderKind::Via).map(|h| h.value_bytes()) else {
            return;
        };
        let key = self.key(Role::Client, util::sub(&src, branch), None, cseq.method());
        let Some(idx) = self.index.get(&key).copied() else {
            tracing::trace!("stray response dropped");
            return;
        };
        let id = self.id_of(idx);
        let Some(e) = self.entry_mut(idx) else { return };
        let d = match &mut e.machine {
            Machine::Ict(m) => m.handle_response(now, &resp),
            Machine::Nict(m) => m.handle_response(now, &resp),
            _ => Delivery::Absorbed,
        };
        if d == Delivery::ToTu {
            self.events.push_back(TxnEvent::Response {
                txn: id,
                response: resp,
            });
        }
        self.after(idx);
    }

    fn fire(&mut self, now: Instant, idx: u32) {
        let id = self.id_of(idx);
        let Some(e) = self.entry_mut(idx) else { return };
        let ev = match &mut e.machine {
            Machine::Ict(m) => m.handle_timeout(now).map(|f| (f, m.request())),
            Machine::Nict(m) => m.handle_timeout(now).map(|f| (f, m.request())),
            Machine::Ist(m) => {
                if let Some(note) = m.handle_timeout(now) {
                    self.events.push_back(TxnEvent::Server { txn: id, note });
                }
                None
            }
            Machine::Nist(m) => {
                if let Some(note) = m.handle_timeout(now) {
                    self.events.push_back(TxnEvent::Server { txn: id, note });
                }
                None
            }
        }
        .map(|(failure, req)| TxnEvent::Failed {
            txn: id,
            failure,
            response: timeout_response(req),
        });
        if let Some(ev) = ev {
            self.events.push_back(ev);
        }
        self.after(idx);
    }

    /// [`after`](Endpoint::after) for a transaction just created (no deadline
    /// yet), leaving its deadline out of the timer set until the next input
    /// ([`Endpoint::unarmed`]).
    fn after_new(&mut self, idx: u32) {
        if self.unarmed.is_some() {
            self.after(idx);
            return;
        }
        let Some(e) = self
            .slots
            .get_mut(idx as usize)
            .and_then(|s| s.entry.as_mut())
        else {
            return;
        };
        if e.deadline.is_some() || e.machine.is_terminated() {
            self.after(idx);
            return;
        }
        while let Some(p) = e.machine.poll_transmit() {
            self.transmits.push_back(Transmit {
                flow: e.flow,
                payload: p,
            });
        }
        e.deadline = e.machine.poll_timeout();
        if e.deadline.is_some() {
            self.unarmed = Some(idx);
        }
    }

    /// Drains the machine's output, reschedules its timer, removes it when done.
    fn after(&mut self, idx: u32) {
        let Some(e) = self
            .slots
            .get_mut(idx as usize)
            .and_then(|s| s.entry.as_mut())
        else {
            return;
        };
        while let Some(p) = e.machine.poll_transmit() {
            self.transmits.push_back(Transmit {
                flow: e.flow,
                payload: p,
            });
        }
        let next = if e.machine.is_terminated() {
            None
        } else {
            e.machine.poll_timeout()
        };
        if next != e.deadline {
            if let Some(old) = e.deadline
                && e.armed
            {
                self.timers.remove(&(old, idx));
            }
            if self.unarmed == Some(idx) {
                self.unarmed = None;
            }
            e.armed = next.is_some();
            if let Some(n) = next {
                self.timers.insert((n, idx));
            }
            e.deadline = next;
        }
        if e.machine.is_terminated() {
            if let Machine::Ict(m) = &e.machine
                && m.was_accepted()
            {
                let txn = self.id_of(idx);
                self.events.push_back(TxnEvent::AcceptedEnded { txn });
            }
            self.remove(idx);
        }
    }

    fn insert(&mut self, e: Entry) -> u32 {
        self.live += 1;
        if let Some(i) = self.free.pop()
            && let Some(s) = self.slots.get_mut(i as usize)
        {
            s.entry = Some(e);
            return i;
        }
        self.slots.push(Slot {
            generation: 0,
            entry: Some(e),
        });
        (self.slots.len() - 1) as u32
    }

    fn remove(&mut self, idx: u32) {
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return;
        };
        // Unindexed in place, then dropped in place (an entry is large).
        let Some(e) = slot.entry.as_ref() else { return };
        if let Some(d) = e.deadline
            && e.armed
        {
            self.timers.remove(&(d, idx));
        }
        if self.unarmed == Some(idx) {
            self.unarmed = None;
        }
        // One lookup each: the key may map to a newer transaction, which is put
        // back.
        if let Some(other) = self.index.remove(&e.key)
            && other != idx
        {
            self.index.insert(e.key.clone(), other);
        }
        if let Some(l) = &e.legacy
            && let Some(other) = self.legacy.remove(l)
            && other != idx
        {
            self.legacy.insert(l.clone(), other);
        }
        if let Some(m) = &e.merge
            && let Some(other) = self.merge.remove(m)
            && other != idx
        {
            self.merge.insert(m.clone(), other);
        }
        slot.entry = None;
        slot.generation = slot.generation.wrapping_add(1);
        self.live -= 1;
        self.free.push(idx);
    }

    fn id_of(&self, idx: u32) -> TxnId {
        TxnId {
            index: idx,
            generation: self.slots.get(idx as usize).map_or(0, |s| s.generation),
        }
    }

    fn check(&self, id: TxnId) -> Result<u32, Error> {
        match self.slots.get(id.index as usize) {
            Some(s) if s.generation == id.generation && s.entry.is_some() => Ok(id.index),
            _ => Err(Error::UnknownTransaction),
        }
    }

    fn entry(&self, idx: u32) -> Option<&Entry> {
        self.slots.get(idx as usize).and_then(|s| s.entry.as_ref())
    }
    fn entry_mut(&mut self, idx: u32) -> Option<&mut Entry> {
        self.slots
            .get_mut(idx as usize)
            .and_then(|s| s.entry.as_mut())
    }

    /// Sizes of the internal tables (for metrics and leak checks).
    pub fn stats(&self) -> EndpointStats {
        EndpointStats {
            live: self.live,
            keys: self.index.len(),
            legacy_keys: self.legacy.len(),
            merge_keys: self.merge.len(),
            timers: self.timers.len()
                + usize::from(
                    self.unarmed
                        .and_then(|i| self.entry(i))
                        .is_some_and(|e| e.deadline.is_some()),
                ),
            queued_transmits: self.transmits.len(),
            queued_events: self.events.len(),
        }
    }
}
