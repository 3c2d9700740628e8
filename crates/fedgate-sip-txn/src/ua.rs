//! The user agent: the TU on top of the [`Endpoint`]. It keeps dialogs for
//! session-mode IM (Lync style) and for RFC 6665 / RFC 3856 subscriptions, in both
//! roles, and answers what it owns; everything else goes to the application as
//! [`UaEvent::Request`].

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fedgate_sip::{Address, CSeq, CallId, HeaderKind, Message, Method, Uri};

use crate::config::{EndpointConfig, Flow};
use crate::dialog::{self, Dialog, DialogKey, DialogMapKey};
use crate::endpoint::{Endpoint, Transmit, TxnEvent, TxnId};
use crate::error::Error;
use crate::im;
use crate::timer::Timers;
use crate::transaction::ServerNote;
use crate::util::{self, IdMap};

mod resume;
pub use resume::NotifierRecord;

/// CSeq numbers skipped when a notifier dialog is restored
/// ([`UserAgent::restore_notifier`]): the record holds the number of its export, and
/// NOTIFYs sent after that (before the restart) used higher ones; the subscriber
/// refuses a number not above the last it saw (500, RFC 3261 §12.2.2). The
/// application exports again at every refresh, so far fewer NOTIFYs than this pass
/// between two exports.
pub const RESTORE_CSEQ_GAP: u32 = 100_000;

/// Configuration of a [`UserAgent`].
#[derive(Debug, Clone)]
pub struct UaConfig {
    /// The transaction layer's configuration.
    pub endpoint: EndpointConfig,
    /// Our Contact (e.g. `<sip:gw.contoso.com:5061;transport=tls>`).
    pub contact: Address,
    /// Event packages we accept SUBSCRIBEs for (others get 489). Default `presence`.
    pub event_packages: Vec<Bytes>,
    /// Shortest subscription we grant; shorter non-zero requests get 423 with
    /// Min-Expires. Default 60 s.
    pub min_expires: u32,
    /// Longest subscription we grant (longer requests are cut to this). Default
    /// 43 200 s (OCS `MaxPresenceSubscriptionExpiry`).
    pub max_expires: u32,
    /// Expires of a SUBSCRIBE without one (RFC 3856 §6.4: 3600 s).
    pub default_expires: u32,
    /// Subscriber side: refresh this long before expiry (at most half the granted
    /// time). Default 5 min.
    pub refresh_margin: Duration,
    /// An IM session without traffic for this long is closed with BYE. Default 10 min.
    pub idle_timeout: Duration,
    /// Host written in our SDP.
    pub sdp_host: String,
    /// Port written in our SDP `m=message` line.
    pub sdp_port: u16,
    /// `a=accept-types` of our SDP.
    pub accept_types: String,
    /// Decode the first message of an incoming INVITE's `ms-text-format` (and then
    /// advertise `Supported: ms-text-format` in the 200). Default true.
    pub decode_first_message: bool,
    /// Option tags accepted in `Require` (RFC 3261 §8.2.2.3; others get 420 with
    /// `Unsupported`). Default none.
    pub extensions: Vec<String>,
    /// The application answers each in-session MESSAGE (other than a typing
    /// indication) itself: it is reported as [`UaEvent::MessageToAnswer`] and answered
    /// with [`UserAgent::respond_message`] (2xx once delivered, or an error status
    /// such as an RFC 7247 mapping of the delivery failure). Default false: the UA
    /// answers 200 in the same step as [`UaEvent::MessageReceived`].
    pub app_answers_messages: bool,
    /// With `app_answers_messages`: how long the UA waits for the application's
    /// answer before it answers [`MESSAGE_ANSWER_TIMEOUT_STATUS`] (504) itself.
    /// Capped at 32·T1 (16 s with the default T1), half the peer's Timer F (64·T1),
    /// so the answer reaches the peer before its transaction gives up. Default 10 s.
    pub message_answer_timeout: Duration,
}

/// The status the UA answers an in-session MESSAGE with when the application did
/// not answer it within [`UaConfig::message_answer_timeout`]: 504 Server Time-out
/// (RFC 3261 §21.5.5: a gateway got no timely answer from the server behind it).
/// Not 200: the outcome is unknown, and a 200 would hide a message that was never
/// delivered (the sender's client shows a 5xx as "not delivered" and the user can
/// send it again; a duplicate is the lesser harm). Not 408 (RFC 3261: the request
/// itself was late) nor 503 (which makes the peer treat this whole server as
/// unavailable, RFC 3261 §21.5.4, RFC 7247 §6.1 note 5). RFC 7247 §6.2 maps it to
/// `<remote-server-timeout/>` on the XMPP side.
pub const MESSAGE_ANSWER_TIMEOUT_STATUS: u16 = 504;

impl UaConfig {
    /// Defaults around an endpoint configuration and our Contact.
    pub fn new(endpoint: EndpointConfig, contact: Address) -> Self {
        UaConfig {
            endpoint,
            contact,
            event_packages: vec![Bytes::from_static(b"presence")],
            min_expires: 60,
            max_expires: 43_200,
            default_expires: 3600,
            refresh_margin: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(600),
            sdp_host: "0.0.0.0".into(),
            sdp_port: 5061,
            accept_types: im::DEFAULT_ACCEPT_TYPES.into(),
            decode_first_message: true,
            extensions: Vec::new(),
            app_answers_messages: false,
            message_answer_timeout: Duration::from_secs(10),
        }
    }
}

/// What to subscribe to ([`UserAgent::subscribe`]).
#[derive(Debug, Clone, Copy)]
pub struct SubscribeParams<'a> {
    /// The watcher (From, without tag).
    pub from: &'a Address,
    /// The presentity (To; its URI is the Request-URI).
    pub to: &'a Address,
    /// Event package (`presence`).
    pub event: &'a str,
    /// Accept types (`application/pidf+xml`, …).
    pub accept: &'a [&'a str],
    /// Requested duration in seconds.
    pub expires: u32,
}

/// An IM session handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// A subscription handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u64);

/// An in-session MESSAGE waiting for the application's answer
/// ([`UaEvent::MessageToAnswer`], [`UserAgent::respond_message`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageHandle {
    session: SessionId,
    txn: TxnId,
}

impl MessageHandle {
    /// The session the MESSAGE came in.
    pub fn session(&self) -> SessionId {
        self.session
    }
}

/// `Subscription-State` values (RFC 6665 §8.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubState {
    /// Waiting for authorization.
    Pending,
    /// Authorized.
    Active,
    /// Ended, with the reason token if any (`timeout`, `rejected`, `noresource`, …).
    Terminated(Option<Bytes>),
}

/// Why an IM session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer sent BYE.
    ByeReceived,
    /// We closed it ([`UserAgent::close_session`]).
    Local,
    /// No traffic for `idle_timeout`; we sent BYE.
    Idle,
    /// The peer cancelled its INVITE.
    Cancelled,
    /// Our INVITE got this final status (or 408/503 synthesized on timeout or
    /// transport error).
    Rejected(u16),
    /// We rejected the offer ([`UserAgent::reject_session`]) or it was not answered.
    Declined(u16),
    /// The ACK for our 200 never came (64·T1); we sent BYE.
    AckTimeout,
    /// An in-dialog request got 481/408: the dialog is gone.
    DialogGone(u16),
    /// The connection the session ran on closed
    /// ([`UserAgent::handle_flow_closed`]); no BYE could be sent.
    FlowClosed,
}

/// Why a subscription ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubEnd {
    /// A NOTIFY said `terminated`, with this reason.
    Notified(Option<Bytes>),
    /// Our SUBSCRIBE (or NOTIFY) got this final status.
    Status(u16),
    /// Timer N: no NOTIFY within 64·T1.
    NoNotify,
    /// It expired without refresh.
    Expired,
    /// The subscriber unsubscribed (Expires: 0) — notifier side.
    Unsubscribed,
    /// We ended it locally.
    Local,
}

/// What the user agent tells the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UaEvent {
    /// An IM session is offered (INVITE with `m=message`). Answer with
    /// [`UserAgent::accept_session`] or [`UserAgent::reject_session`].
    SessionOffered {
        /// The session.
        session: SessionId,
        /// The caller (From).
        remote: Address,
        /// The callee (To).
        local: Address,
        /// The INVITE carried a decodable first message (`ms-text-format`); it is
        /// delivered as [`UaEvent::MessageReceived`] when the session is accepted.
        has_first_message: bool,
    },
    /// The session is up (UAS: the ACK arrived; UAC: the 2xx arrived and was ACKed).
    SessionOpened {
        /// The session.
        session: SessionId,
    },
    /// A message in the session (or the first message from `ms-text-format`).
    MessageReceived {
        /// The session.
        session: SessionId,
        /// Content-Type value (`text/plain; charset=UTF-8`, `text/html`, …).
        content_type: Bytes,
        /// The body.
        body: Bytes,
    },
    /// A message in the session, with [`UaConfig::app_answers_messages`]: answer it
    /// with [`UserAgent::respond_message`] (else the UA answers
    /// [`MESSAGE_ANSWER_TIMEOUT_STATUS`] after [`UaConfig::message_answer_timeout`]).
    /// The first message of an INVITE (`ms-text-format`) has no MESSAGE transaction:
    /// it comes as [`UaEvent::MessageReceived`] on acceptance, or is taken before the
    /// answer to the INVITE with [`UserAgent::take_first_message`].
    MessageToAnswer {
        /// The answer handle (carries the session).
        message: MessageHandle,
        /// Content-Type value.
        content_type: Bytes,
        /// The body.
        body: Bytes,
    },
    /// A typing indication (`application/im-iscomposing+xml`), always answered 200
    /// by the UA.
    Typing {
        /// The session.
        session: SessionId,
        /// `state` is `active`.
        active: bool,
    },
    /// A MESSAGE we sent in the session was answered 2xx (once per MESSAGE).
    MessageDelivered {
        /// The session.
        session: SessionId,
        /// The CSeq number of the MESSAGE.
        cseq: u32,
    },
    /// A MESSAGE we sent failed with this status.
    MessageFailed {
        /// The session.
        session: SessionId,
        /// The final status (408 on timeout).
        status: u16,
    },
    /// The session ended.
    SessionClosed {
        /// The session.
        session: SessionId,
        /// Why.
        reason: CloseReason,
    },
    /// Notifier: a new subscription request. Answer with
    /// [`UserAgent::accept_subscription`] or [`UserAgent::reject_subscription`].
    SubscriptionRequested {
        /// The subscription.
        subscription: SubscriptionId,
        /// The watcher (From).
        from: Address,
        /// The presentity (To).
        to: Address,
        /// The Event package.
        event: Bytes,
        /// The granted duration in seconds (0 for a fetch).
        expires: u32,
        /// The SUBSCRIBE.
        request: Box<Message>,
    },
    /// Notifier: the subscriber refreshed; the subscription now lasts `expires` s.
    SubscriptionRefreshed {
        /// The subscription.
        subscription: SubscriptionId,
        /// Granted seconds.
        expires: u32,
    },
    /// Subscriber: a NOTIFY arrived (and was answered 200).
    Notified {
        /// The subscription.
        subscription: SubscriptionId,
        /// Its Subscription-State.
        state: SubState,
        /// Content-Type, if there is a body.
        content_type: Option<Bytes>,
        /// The body (may be empty).
        body: Bytes,
    },
    /// Notifier: the connection the subscriber used closed
    /// ([`UserAgent::handle_flow_closed`]). The subscription runs on, but its
    /// NOTIFYs are held back until the application gives it a path to the subscriber
    /// ([`UserAgent::rebind_subscription`]: a new connection to its domain, RFC 3261
    /// §12.2.1.1 and RFC 3263) or the subscriber's next request arrives on another
    /// connection.
    SubscriptionFlowLost {
        /// The subscription.
        subscription: SubscriptionId,
    },
    /// The subscription ended (either role).
    SubscriptionTerminated {
        /// The subscription.
        subscription: SubscriptionId,
        /// Why.
        reason: SubEnd,
    },
    /// A request the UA does not handle itself (page-mode MESSAGE, INFO outside a
    /// session, …). Answer it with [`UserAgent::respond`]; unanswered requests get
    /// a 408 from the transaction after its guard time.
    Request {
        /// The server transaction.
        txn: TxnId,
        /// Where it came from.
        flow: Flow,
        /// The request.
        request: Box<Message>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Obj {
    Session(u64),
    Sub(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum UaTimer {
    /// IM session idle close.
    Idle,
    /// UAS: wait for the ACK of our 2xx (64·T1).
    AckWait,
    /// UAS over UDP: retransmit the 2xx (T1 doubling to T2, §13.3.1.4).
    OkRetransmit,
    /// RFC 6665 Timer N.
    N,
    /// Subscriber: send a refresh.
    Refresh,
    /// Subscription end.
    Expiry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Invite,
    Message,
    Bye,
    Subscribe { initial: bool, unsub: bool },
    Notify { last: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessState {
    /// UAS: INVITE received, waiting for the application.
    Offered,
    /// UAS: 200 sent, waiting for ACK.
    AwaitingAck,
    /// UAC: INVITE sent.
    Inviting,
    /// Established.
    Open,
}

#[derive(Debug)]
struct Session {
    state: SessState,
    flow: Flow,
    dialog: Option<Dialog>,
    invite_txn: Option<TxnId>,
    invite: Option<Message>,
    invite_seq: u32,
    first: Option<(Bytes, Bytes)>,
    /// The application took the first message ([`UserAgent::take_first_message`]):
    /// the 200 still advertises `ms-text-format`, nothing is delivered on accept.
    first_taken: bool,
    ok_wire: Option<Bytes>,
    ok_interval: Duration,
    ack_wire: Option<Bytes>,
    queued: VecDeque<(Bytes, Bytes)>,
    timers: Timers<UaTimer>,
    deadline: Option<Instant>,
    /// End of the idle period after the latest traffic. The Idle timer is not moved
    /// on every message (that would reorder the UA's timer set each time): when
    /// it fires early, it is re-armed for what is left.
    idle_until: Instant,
}

impl Session {
    fn touch_idle(&mut self, until: Instant) {
        self.idle_until = until;
        if !self.timers.is_set(UaTimer::Idle) {
            self.timers.set(UaTimer::Idle, until);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubRole {
    Subscriber,
    Notifier,
}

#[derive(Debug)]
struct Sub {
    role: SubRole,
    flow: Flow,
    dialog: Option<Dialog>,
    event: Bytes,
    /// Subscriber: our initial SUBSCRIBE. Notifier: the SUBSCRIBE received.
    request: Message,
    /// Notifier: the server transaction waiting for the application's answer.
    pending_txn: Option<TxnId>,
    granted: u32,
    expires_at: Option<Instant>,
    state: SubState,
    got_notify: bool,
    unsubscribing: bool,
    retried_423: bool,
    /// Notifier: the last document the application notified (Content-Type, body),
    /// sent again in every NOTIFY that has no new one (full state, RFC 6665 §4.2.2).
    doc: Option<(Bytes, Bytes)>,
    /// The connection of `flow` closed; the next in-dialog request from the peer
    /// on another flow becomes the subscription's flow.
    flow_lost: bool,
    /// A NOTIFY was held back while `flow_lost`: the next flow gets one at once.
    held_back: bool,
    timers: Timers<UaTimer>,
    deadline: Option<Instant>,
}

/// A SIP user agent for federation: transaction layer, IM sessions, subscriptions.
///
/// Sans-IO like the [`Endpoint`] it owns: `handle_*(now, …)` in, then drain
/// [`poll_event`](UserAgent::poll_event), [`poll_transmit`](UserAgent::poll_transmit),
/// and [`poll_timeout`](UserAgent::poll_timeout).
#[derive(Debug)]
pub struct UserAgent {
    ep: Endpoint,
    cfg: UaConfig,
    sessions: IdMap<u64, Session>,
    subs: IdMap<u64, Sub>,
    by_dialog: HashMap<DialogMapKey, Obj>,
    pending_subs: HashMap<(Bytes, Bytes), u64>,
    client_txns: IdMap<TxnId, (Obj, Purpose)>,
    server_txns: IdMap<TxnId, Obj>,
    timers: BTreeSet<(Instant, Obj)>,
    events: VecDeque<UaEvent>,
    next_id: u64,
    /// In-session MESSAGEs the application has not answered yet
    /// ([`UaConfig::app_answers_messages`]).
    unanswered: IdMap<TxnId, ()>,
    /// Their deadlines in arrival order (sorted: the bound is fixed and `now` never
    /// goes back). Entries already answered are dropped when they reach the front.
    answer_due: VecDeque<(Instant, TxnId)>,
}

/// The methods this user agent handles (`Allow` of a 200 to OPTIONS and of a 405).
const ALLOW: &[u8] = b"INVITE, ACK, CANCEL, BYE, MESSAGE, SUBSCRIBE, NOTIFY, OPTIONS, INFO";

/// 405 to an in-dialog request, with the Allow header RFC 3261 §8.2.1 requires.
fn method_not_allowed(d: &Dialog, req: &Message) -> Message {
    let mut r = d.response(req, 405);
    util::push(&mut r, "Allow", Bytes::from_static(ALLOW));
    let body = r.body.clone();
    r.set_body(body);
    r
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn at(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

fn content_type(m: &Message) -> Option<Bytes> {
    m.headers
        .get(HeaderKind::ContentType)
        .map(|h| h.value_bytes())
}

fn status_of(m: &Message) -> u16 {
    m.status().map_or(0, |s| s.as_u16())
}

impl UserAgent {
    /// A user agent with no sessions or subscriptions.
    pub fn new(cfg: UaConfig) -> Self {
        UserAgent {
            ep: Endpoint::new(cfg.endpoint.clone()),
            cfg,
            sessions: IdMap::default(),
            subs: IdMap::default(),
            by_dialog: HashMap::new(),
            pending_subs: HashMap::new(),
            client_txns: IdMap::default(),
            server_txns: IdMap::default(),
            timers: BTreeSet::new(),
            events: VecDeque::new(),
            next_id: 1,
            unanswered: IdMap::default(),
            answer_due: VecDeque::new(),
        }
    }

    /// The transaction layer.
    pub fn endpoint(&self) -> &Endpoint {
        &self.ep
    }
    /// Live IM sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }
    /// Live subscriptions (both roles).
    pub fn subscription_count(&self) -> usize {
        self.subs.len()
    }
    /// Sizes of the UA's tables: (client transactions tracked, server transactions
    /// tracked, dialogs indexed, armed deadlines). Each is bounded by the live
    /// transactions or dialogs.
    pub fn stats(&self) -> (usize, usize, usize, usize) {
        (
            self.client_txns.len(),
            self.server_txns.len(),
            self.by_dialog.len() + self.pending_subs.len(),
            self.timers.len(),
        )
    }

    /// The dialog of a session, once it has one.
    pub fn session_dialog(&self, s: SessionId) -> Option<&Dialog> {
        self.sessions.get(&s.0).and_then(|x| x.dialog.as_ref())
    }
    /// The current state of a subscription.
    pub fn subscription_state(&self, s: SubscriptionId) -> Option<&SubState> {
        self.subs.get(&s.0).map(|x| &x.state)
    }
    /// When a subscription ends unless refreshed.
    pub fn subscription_expires_at(&self, s: SubscriptionId) -> Option<Instant> {
        self.subs.get(&s.0).and_then(|x| x.expires_at)
    }

    // ---- outputs -----------------------------------------------------------------

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.events.pop_front()
    }
    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ep.poll_transmit()
    }
    /// The earliest deadline of the UA and its transactions.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mine = match (self.timers.first(), self.answer_due.front()) {
            (Some((a, _)), Some((b, _))) => Some(*a.min(b)),
            (a, b) => a.map(|x| x.0).or(b.map(|x| x.0)),
        };
        match (mine, self.ep.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- inputs ------------------------------------------------------------------

    /// A datagram (or a whole message as bytes) arrived on `flow`.
    pub fn handle_datagram(&mut self, now: Instant, flow: Flow, data: Bytes) {
        self.ep.handle_datagram(now, flow, data);
        self.pump(now);
    }
    /// A parsed message arrived on `flow`.
    pub fn handle_message(&mut self, now: Instant, flow: Flow, msg: Message) {
        self.ep.handle_message(now, flow, msg);
        self.pump(now);
    }
    /// A framing or parse error on `flow` (see [`Endpoint::handle_parse_error`]).
    pub fn handle_parse_error(&mut self, now: Instant, flow: Flow, err: &fedgate_sip::Error) {
        self.ep.handle_parse_error(now, flow, err);
        self.pump(now);
    }
    /// The transport failed on `flow`.
    pub fn handle_transport_error(&mut self, now: Instant, flow: Flow) {
        self.ep.handle_transport_error(now, flow);
        self.pump(now);
    }
    /// The connection behind `flow` closed and will carry nothing more (the driver
    /// saw EOF, an error, or closed it itself). Effects:
    ///
    /// - every transaction on `flow` fails as on a transport error (RFC 3261
    ///   §17.1.4, §17.2.4): a pending MESSAGE reports [`UaEvent::MessageFailed`]
    ///   with 503, a pending INVITE closes its session with
    ///   [`CloseReason::Rejected`]`(503)`, an initial SUBSCRIBE ends its
    ///   subscription, a request the application has not answered yet is dropped;
    /// - IM sessions on `flow` end with [`CloseReason::FlowClosed`] (no BYE: there
    ///   is no path to the peer);
    /// - subscriptions on `flow` stay (a dialog outlives its connection, RFC 3261
    ///   §12) until they expire, but nothing is sent on `flow` any more: a NOTIFY
    ///   or refresh due meanwhile is skipped (the notifier keeps the document and
    ///   sends it with the next NOTIFY), and ending one ends it locally. The next
    ///   in-dialog request from the peer (a refresh SUBSCRIBE, a NOTIFY) on another
    ///   flow makes that flow the subscription's flow; a notifier's subscription is
    ///   reported ([`UaEvent::SubscriptionFlowLost`]) so the application can give it a
    ///   flow at once ([`UserAgent::rebind_subscription`]).
    pub fn handle_flow_closed(&mut self, now: Instant, flow: Flow) {
        self.ep.handle_flow_closed(now, flow);
        self.pump(now);
        let mut gone: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.flow == flow)
            .map(|(id, _)| *id)
            .collect();
        gone.sort_unstable();
        for id in gone {
            self.end_session(now, id, CloseReason::FlowClosed);
        }
        let mut lost: Vec<u64> = Vec::new();
        for (id, s) in self.subs.iter_mut() {
            if s.flow == flow {
                s.flow_lost = true;
                if s.role == SubRole::Notifier && s.dialog.is_some() {
                    lost.push(*id);
                }
            }
        }
        lost.sort_unstable();
        for id in lost {
            self.events.push_back(UaEvent::SubscriptionFlowLost {
                subscription: SubscriptionId(id),
            });
        }
        self.pump(now);
    }

    /// Time passed: fires every due timer.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        self.pump(now);
        while let Some(&(t, txn)) = self.answer_due.front() {
            if t > now {
                break;
            }
            self.answer_due.pop_front();
            if self.unanswered.remove(&txn).is_some() {
                let _ = self.answer_message(now, txn, MESSAGE_ANSWER_TIMEOUT_STATUS);
            }
        }
        self.pump(now);
        while let Some(&(t, obj)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.remove(&(t, obj));
            match obj {
                Obj::Session(id) => {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.deadline = None;
                    }
                    self.fire_session(now, id);
                }
                Obj::Sub(id) => {
                    if let Some(s) = self.subs.get_mut(&id) {
                        s.deadline = None;
                    }
                    self.fire_sub(now, id);
                }
            }
            self.pump(now);
        }
    }

    // ---- application calls: generic --------------------------------------------

    /// Answers a request delivered as [`UaEvent::Request`].
    pub fn respond(&mut self, now: Instant, txn: TxnId, response: Message) -> Result<(), Error> {
        let r = self.ep.send_response(now, txn, response);
        self.pump(now);
        r
    }

    /// Answers an in-session MESSAGE delivered as [`UaEvent::MessageToAnswer`] with a
    /// final `status` (200–699): 2xx once the message is delivered (or stored for
    /// later delivery), an error status when it cannot be. Also after the session
    /// ended (a BYE does not cancel a pending MESSAGE). `Err(WrongState)` if it was
    /// already answered (by the application, or by the UA after
    /// [`UaConfig::message_answer_timeout`]); `Err(UnknownTransaction)` if its
    /// transaction is gone (the connection closed).
    pub fn respond_message(
        &mut self,
        now: Instant,
        message: MessageHandle,
        status: u16,
    ) -> Result<(), Error> {
        if !(200..=699).contains(&status) {
            return Err(Error::InvalidMessage(
                "a final status (200-699) is expected",
            ));
        }
        if self.unanswered.remove(&message.txn).is_none() {
            return Err(Error::WrongState("message already answered"));
        }
        while let Some(&(_, t)) = self.answer_due.front() {
            if self.unanswered.contains_key(&t) {
                break;
            }
            self.answer_due.pop_front();
        }
        let r = self.answer_message(now, message.txn, status);
        self.pump(now);
        r
    }

    /// In-session MESSAGEs waiting for [`UserAgent::respond_message`].
    pub fn unanswered_messages(&self) -> usize {
        self.unanswered.len()
    }

    fn answer_message(&mut self, now: Instant, txn: TxnId, status: u16) -> Result<(), Error> {
        let req = self.ep.request(txn).ok_or(Error::UnknownTransaction)?;
        // In-dialog: the To of the request carries our tag.
        let wire = util::response_wire(req, status);
        self.ep.send_response_wire(now, txn, status, wire)
    }

    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn dialogs_full(&self) -> bool {
        self.sessions.len() + self.subs.len() >= self.cfg.endpoint.limits.max_dialogs
    }

    fn limit_503(&mut self, now: Instant, txn: TxnId, req: &Message) {
        let mut r = util::response_to(req, 503, Some(&self.ep.new_tag()));
        r.headers.remove(HeaderKind::ContentLength);
        util::push(
            &mut r,
            "Retry-After",
            util::num(u64::from(self.cfg.endpoint.limits.retry_after_secs)),
        );
        r.set_body(Bytes::new());
        let _ = self.ep.send_response(now, txn, r);
    }

    fn answer(&mut self, now: Instant, txn: TxnId, req: &Message, code: u16) {
        let tag = self.ep.new_tag();
        let _ = self
            .ep
            .send_response(now, txn, util::response_to(req, code, Some(&tag)));
    }

    fn out_of_dialog(&mut self, method: Method, from: &Address, to: &Address) -> Message {
        let mut m = Message::request(method.clone(), to.uri.clone());
        util::push(&mut m, "Max-Forwards", Bytes::from_static(b"70"));
        let tag = self.ep.new_tag();
        m.push_typed(HeaderKind::From, &util::with_tag(from.clone(), &tag));
        let mut to = to.clone();
        to.params.0.retain(|p| !p.name.eq_ignore_ascii_case(b"tag"));
        m.push_typed(HeaderKind::To, &to);
        let mut cid = self.ep.new_tag().to_vec();
        cid.extend_from_slice(&self.ep.new_tag());
        m.push_typed(HeaderKind::CallId, &CallId(Bytes::from(cid)));
        m.push_typed(HeaderKind::CSeq, &CSeq { seq: 1, method });
        m.push_typed(HeaderKind::Contact, &self.cfg.contact);
        m
    }

    fn send(
        &mut self,
        now: Instant,
        flow: Flow,
        req: Message,
        obj: Obj,
        p: Purpose,
    ) -> Result<TxnId, Error> {
        let txn = self.ep.send_request(now, flow, req)?;
        self.client_txns.insert(txn, (obj, p));
        Ok(txn)
    }

    // ---- application calls: IM sessions ----------------------------------------

    /// Opens an IM session (UAC): sends an INVITE with an `m=message` SDP offer to
    /// `to` on `flow`.
    pub fn open_session(
        &mut self,
        now: Instant,
        flow: Flow,
        from: &Address,
        to: &Address,
    ) -> Result<SessionId, Error> {
        if self.dialogs_full() {
            return Err(Error::Limit {
                what: "max_dialogs",
            });
        }
        let mut inv = self.out_of_dialog(Method::Invite, from, to);
        util::push(
            &mut inv,
            "Content-Type",
            Bytes::from_static(b"application/sdp"),
        );
        inv.set_body(im::sdp(
            &self.cfg.sdp_host,
            self.cfg.sdp_port,
            &self.cfg.accept_types,
        ));
        let id = self.new_id();
        let txn = self.send(now, flow, inv, Obj::Session(id), Purpose::Invite)?;
        let invite = self.ep.request(txn).cloned();
        self.sessions.insert(
            id,
            Session {
                state: SessState::Inviting,
                flow,
                dialog: None,
                invite_txn: Some(txn),
                invite,
                invite_seq: 1,
                first: None,
                first_taken: false,
                ok_wire: None,
                ok_interval: self.cfg.endpoint.timers.t1,
                ack_wire: None,
                queued: VecDeque::new(),
                timers: Timers::default(),
                deadline: None,
                idle_until: now,
            },
        );
        Ok(SessionId(id))
    }

    /// Sends a message in a session. Before the session is up (UAC), up to
    /// `max_queued_messages` are queued and sent after the ACK.
    pub fn send_message(
        &mut self,
        now: Instant,
        session: SessionId,
        content_type: &str,
        body: Bytes,
    ) -> Result<(), Error> {
        let ct = Bytes::copy_from_slice(content_type.as_bytes());
        let max_q = self.cfg.endpoint.limits.max_queued_messages;
        let s = self
            .sessions
            .get_mut(&session.0)
            .ok_or(Error::UnknownSession)?;
        match s.state {
            SessState::Open => self.send_in_session(now, session.0, ct, body),
            SessState::Inviting | SessState::AwaitingAck if s.queued.len() < max_q => {
                s.queued.push_back((ct, body));
                Ok(())
            }
            SessState::Inviting | SessState::AwaitingAck => Err(Error::Limit {
                what: "max_queued_messages",
            }),
            SessState::Offered => Err(Error::WrongState("session not accepted yet")),
        }
    }

    /// Sends a typing indication (`application/im-iscomposing+xml`).
    pub fn send_typing(
        &mut self,
        now: Instant,
        session: SessionId,
        active: bool,
    ) -> Result<(), Error> {
        self.send_message(now, session, im::ISCOMPOSING, im::iscomposing(active))
    }

    fn send_in_session(
        &mut self,
        now: Instant,
        id: u64,
        ct: Bytes,
        body: Bytes,
    ) -> Result<(), Error> {
        let idle = self.cfg.idle_timeout;
        let s = self.sessions.get_mut(&id).ok_or(Error::UnknownSession)?;
        let d = s.dialog.as_mut().ok_or(Error::WrongState("no dialog"))?;
        let mut m = d.request(Method::Message);
        util::push(&mut m, "Content-Type", ct);
        m.set_body(body);
        s.touch_idle(at(now, idle));
        let flow = s.flow;
        self.send(now, flow, m, Obj::Session(id), Purpose::Message)?;
        self.reschedule(Obj::Session(id));
        Ok(())
    }

    /// Takes the first message of an offered session (the INVITE's `ms-text-format`)
    /// before answering the INVITE, so the application can deliver it first and
    /// refuse the session with the delivery error ([`UserAgent::reject_session`]:
    /// the INVITE gets that status and the sender's client reports the message as
    /// not delivered). It is handed out once: [`UserAgent::accept_session`] then
    /// delivers nothing, but still advertises `Supported: ms-text-format` (the peer
    /// must not send it again). `None` if there is none or it was taken.
    ///
    /// Without this call the first message comes as [`UaEvent::MessageReceived`]
    /// when the session is accepted, with no answer of its own: a delivery that
    /// fails after that cannot be reported on the SIP side.
    pub fn take_first_message(&mut self, session: SessionId) -> Option<(Bytes, Bytes)> {
        let s = self.sessions.get_mut(&session.0)?;
        if s.state != SessState::Offered {
            return None;
        }
        let first = s.first.take()?;
        s.first_taken = true;
        Some(first)
    }

    /// Closes a session: BYE if it is up, CANCEL if our INVITE is pending, 480 if
    /// it was offered to us and not accepted yet.
    pub fn close_session(&mut self, now: Instant, session: SessionId) -> Result<(), Error> {
        if !self.sessions.contains_key(&session.0) {
            return Err(Error::UnknownSession);
        }
        self.end_session(now, session.0, CloseReason::Local);
        self.pump(now);
        Ok(())
    }

    /// Accepts an offered session: 200 with the SDP answer, and `Supported:
    /// ms-text-format` if the first message was decoded (it is delivered now, as
    /// [`UaEvent::MessageReceived`], exactly once).
    pub fn accept_session(&mut self, now: Instant, session: SessionId) -> Result<(), Error> {
        let t1 = self.cfg.endpoint.timers.t1;
        let t64 = self.cfg.endpoint.timers.t1x64();
        let idle = self.cfg.idle_timeout;
        let sdp = im::sdp(
            &self.cfg.sdp_host,
            self.cfg.sdp_port,
            &self.cfg.accept_types,
        );
        let contact = self.cfg.contact.clone();
        let tag = self.ep.new_tag();
        let s = self
            .sessions
            .get_mut(&session.0)
            .ok_or(Error::UnknownSession)?;
        if s.state != SessState::Offered {
            return Err(Error::WrongState("session is not offered"));
        }
        let (Some(txn), Some(inv)) = (s.invite_txn, s.invite.as_ref()) else {
            return Err(Error::WrongState("session is not offered"));
        };
        let dialog = Dialog::uas(inv, tag, contact)?;
        let mut ok = dialog.response(inv, 200);
        if s.first.is_some() || s.first_taken {
            util::push(&mut ok, "Supported", Bytes::from_static(b"ms-text-format"));
        }
        util::push(
            &mut ok,
            "Content-Type",
            Bytes::from_static(b"application/sdp"),
        );
        ok.set_body(sdp);
        let wire = ok.to_bytes();
        self.ep.send_response(now, txn, ok)?;
        let id = dialog.id().clone();
        s.dialog = Some(dialog);
        s.state = SessState::AwaitingAck;
        s.timers.set(UaTimer::AckWait, at(now, t64));
        s.touch_idle(at(now, idle));
        if !s.flow.is_reliable() {
            s.ok_wire = Some(wire);
            s.ok_interval = t1;
            s.timers.set(UaTimer::OkRetransmit, at(now, t1));
        }
        if let Some((content_type, body)) = s.first.take() {
            self.events.push_back(UaEvent::MessageReceived {
                session,
                content_type,
                body,
            });
        }
        self.server_txns.remove(&txn);
        self.by_dialog
            .insert(DialogMapKey(id), Obj::Session(session.0));
        self.reschedule(Obj::Session(session.0));
        self.pump(now);
        Ok(())
    }

    /// Rejects an offered session with `code` (e.g. 403, 480, 488).
    pub fn reject_session(
        &mut self,
        now: Instant,
        session: SessionId,
        code: u16,
    ) -> Result<(), Error> {
        let s = self.sessions.get(&session.0).ok_or(Error::UnknownSession)?;
        if s.state != SessState::Offered {
            return Err(Error::WrongState("session is not offered"));
        }
        self.end_session(now, session.0, CloseReason::Declined(code.clamp(300, 699)));
        self.pump(now);
        Ok(())
    }

    fn end_session(&mut self, now: Instant, id: u64, reason: CloseReason) {
        let Some(mut s) = self.sessions.remove(&id) else {
            return;
        };
        if let Some(d) = s.deadline.take() {
            self.timers.remove(&(d, Obj::Session(id)));
        }
        match s.state {
            SessState::Offered => {
                if let (Some(txn), Some(inv)) = (s.invite_txn, s.invite.as_ref()) {
                    let code = match reason {
                        CloseReason::Declined(c) => c,
                        _ => 480,
                    };
                    if reason != CloseReason::Cancelled {
                        self.answer(now, txn, inv, code);
                    }
                    self.server_txns.remove(&txn);
                }
            }
            SessState::Inviting => {
                if let Some(txn) = s.invite_txn {
                    // A pending INVITE is cancelled; its final response is swallowed.
                    let _ = self.ep.cancel(now, txn);
                }
            }
            SessState::Open | SessState::AwaitingAck => {
                let send_bye = !matches!(
                    reason,
                    CloseReason::ByeReceived | CloseReason::DialogGone(_) | CloseReason::FlowClosed
                );
                if let Some(d) = s.dialog.as_mut() {
                    self.by_dialog.remove(d.id() as &dyn DialogKey);
                    if send_bye {
                        let bye = d.request(Method::Bye);
                        if let Ok(txn) = self.ep.send_request(now, s.flow, bye) {
                            self.client_txns
                                .insert(txn, (Obj::Session(id), Purpose::Bye));
                        }
                    }
                }
            }
        }
        self.events.push_back(UaEvent::SessionClosed {
            session: SessionId(id),
            reason,
        });
    }

    // ---- application calls: subscriptions --------------------------------------

    /// Subscribes (subscriber role): sends SUBSCRIBE for `event` to `to`, asking
    /// for `expires` seconds, with these Accept types. Timer N runs until the first
    /// NOTIFY.
    pub fn subscribe(
        &mut self,
        now: Instant,
        flow: Flow,
        params: &SubscribeParams<'_>,
    ) -> Result<SubscriptionId, Error> {
        let SubscribeParams {
            from,
            to,
            event,
            accept,
            expires,
        } = *params;
        if self.dialogs_full() {
            return Err(Error::Limit {
                what: "max_dialogs",
            });
        }
        let mut req = self.out_of_dialog(Method::Subscribe, from, to);
        let event = Bytes::copy_from_slice(event.as_bytes());
        util::push(&mut req, "Event", event.clone());
        if !accept.is_empty() {
            util::push(&mut req, "Accept", Bytes::from(accept.join(", ")));
        }
        util::push(&mut req, "Expires", util::num(u64::from(expires)));
        req.set_body(Bytes::new());
        let id = self.new_id();
        let txn = self.send(
            now,
            flow,
            req,
            Obj::Sub(id),
            Purpose::Subscribe {
                initial: true,
                unsub: false,
            },
        )?;
        let request = self
            .ep
            .request(txn)
            .cloned()
            .ok_or(Error::UnknownTransaction)?;
        let key = (
            request.call_id()?.0,
            request.from()?.tag().cloned().unwrap_or_default(),
        );
        let mut timers = Timers::default();
        timers.set(UaTimer::N, at(now, self.cfg.endpoint.timers.t1x64()));
        self.pending_subs.insert(key, id);
        self.subs.insert(
            id,
            Sub {
                role: SubRole::Subscriber,
                flow,
                dialog: None,
                event,
                request,
                pending_txn: None,
                granted: expires,
                expires_at: None,
                state: SubState::Pending,
                got_notify: false,
                unsubscribing: false,
                retried_423: false,
                doc: None,
                flow_lost: false,
                held_back: false,
                timers,
                deadline: None,
            },
        );
        self.reschedule(Obj::Sub(id));
        Ok(SubscriptionId(id))
    }

    /// Unsubscribes (subscriber role): SUBSCRIBE with Expires: 0; the subscription
    /// ends with the final NOTIFY (or Timer N).
    pub fn unsubscribe(&mut self, now: Instant, sub: SubscriptionId) -> Result<(), Error> {
        let t64 = self.cfg.endpoint.timers.t1x64();
        let s = self
            .subs
            .get_mut(&sub.0)
            .ok_or(Error::UnknownSubscription)?;
        if s.role != SubRole::Subscriber {
            return Err(Error::WrongState("not a subscriber"));
        }
        if s.dialog.is_none() || s.flow_lost {
            self.end_sub(now, sub.0, SubEnd::Local, false);
            return Ok(());
        }
        s.unsubscribing = true;
        s.timers.clear(UaTimer::Refresh);
        s.timers.set(UaTimer::N, at(now, t64));
        self.send_subscribe(now, sub.0, 0, true)?;
        self.reschedule(Obj::Sub(sub.0));
        Ok(())
    }

    fn send_subscribe(
        &mut self,
        now: Instant,
        id: u64,
        expires: u32,
        unsub: bool,
    ) -> Result<(), Error> {
        let s = self.subs.get_mut(&id).ok_or(Error::UnknownSubscription)?;
        if s.flow_lost {
            // No path to the notifier (see `handle_flow_closed`).
            return Ok(());
        }
        let d = s.dialog.as_mut().ok_or(Error::WrongState("no dialog"))?;
        let mut req = d.request(Method::Subscribe);
        util::push(&mut req, "Event", s.event.clone());
        for h in s.request.headers.get_all(HeaderKind::Accept) {
            req.headers.push(h.to_owned());
        }
        util::push(&mut req, "Expires", util::num(u64::from(expires)));
        req.set_body(Bytes::new());
        let flow = s.flow;
        self.send(
            now,
            flow,
            req,
            Obj::Sub(id),
            Purpose::Subscribe {
                initial: false,
                unsub,
            },
        )?;
        Ok(())
    }

    /// Notifier: accepts a requested subscription in `state` (Pending or Active):
    /// 200 with the granted Expires, then the first NOTIFY with `body` if given
    /// (`(content_type, body)`).
    pub fn accept_subscription(
        &mut self,
        now: Instant,
        sub: SubscriptionId,
        state: SubState,
        body: Option<(&str, Bytes)>,
    ) -> Result<(), Error> {
        let contact = self.cfg.contact.clone();
        let tag = self.ep.new_tag();
        let s = self
            .subs
            .get_mut(&sub.0)
            .ok_or(Error::UnknownSubscription)?;
        let Some(txn) = s.pending_txn.take() else {
            return Err(Error::WrongState("subscription already answered"));
        };
        let dialog = Dialog::uas(&s.request, tag, contact)?;
        let mut ok = dialog.response(&s.request, 200);
        ok.headers.remove(HeaderKind::ContentLength);
        util::push(&mut ok, "Expires", util::num(u64::from(s.granted)));
        ok.set_body(Bytes::new());
        self.ep.send_response(now, txn, ok)?;
        self.server_txns.remove(&txn);
        s.expires_at = Some(at(now, Duration::from_secs(u64::from(s.granted))));
        s.state = match state {
            SubState::Terminated(_) => SubState::Active,
            x => x,
        };
        let id = dialog.id().clone();
        s.dialog = Some(dialog);
        self.by_dialog.insert(DialogMapKey(id), Obj::Sub(sub.0));
        if s.granted == 0 {
            // A fetch (RFC 6665 §4.4.3): one NOTIFY with the state, terminated.
            self.send_notify(
                now,
                sub.0,
                SubState::Terminated(Some(Bytes::from_static(b"timeout"))),
                body,
            )?;
            self.end_sub(now, sub.0, SubEnd::Unsubscribed, false);
        } else {
            let st = s.state.clone();
            let exp = s.expires_at;
            if let Some(e) = exp {
                s.timers.set(UaTimer::Expiry, e);
            }
            self.send_notify(now, sub.0, st, body)?;
            self.reschedule(Obj::Sub(sub.0));
        }
        self.pump(now);
        Ok(())
    }

    /// An established notifier subscription (answered, with its dialog).
    fn notifier_mut(&mut self, sub: SubscriptionId) -> Result<&mut Sub, Error> {
        let s = self
            .subs
            .get_mut(&sub.0)
            .ok_or(Error::UnknownSubscription)?;
        if s.role != SubRole::Notifier || s.dialog.is_none() {
            return Err(Error::WrongState(
                "not an established notifier subscription",
            ));
        }
        Ok(s)
    }

    /// Notifier: what [`restore_notifier`](UserAgent::restore_notifier) needs to
    /// take this subscription up again after a restart; `None` unless it is an
    /// answered notifier subscription (`Active` or `Pending`). Export again after
    /// each [`UaEvent::SubscriptionRefreshed`] (new expiry, remote target, CSeq).
    pub fn export_notifier(&self, now: Instant, sub: SubscriptionId) -> Option<NotifierRecord> {
        let s = self.subs.get(&sub.0)?;
        let d = s.dialog.as_ref()?;
        if s.role != SubRole::Notifier || matches!(s.state, SubState::Terminated(_)) {
            return None;
        }
        Some(NotifierRecord {
            request: s.request.clone(),
            local_tag: d.id().local_tag.clone(),
            local_seq: d.local_seq(),
            remote_seq: d.remote_seq(),
            remote_target: d.remote_target().clone(),
            state: s.state.clone(),
            expires_in: s
                .expires_at
                .map_or(Duration::ZERO, |e| e.saturating_duration_since(now)),
        })
    }

    /// Notifier: takes up a subscription written down by
    /// [`export_notifier`](UserAgent::export_notifier) (before a restart), with `left`
    /// of its time to run (the record's `expires_in` less the time that passed);
    /// in-dialog requests go on `flow` (the application's path to the subscriber:
    /// the connection it came in on is gone). Our CSeq goes on
    /// [`RESTORE_CSEQ_GAP`] past the recorded one. Nothing is sent: the application
    /// sends the current state with [`notify`](UserAgent::notify). Refused when the
    /// time is up, the dialog is already known, or the dialog limit is reached.
    pub fn restore_notifier(
        &mut self,
        now: Instant,
        flow: Flow,
        rec: NotifierRecord,
        left: Duration,
    ) -> Result<SubscriptionId, Error> {
        let secs = u32::try_from(left.as_secs()).unwrap_or(u32::MAX);
        if secs == 0 {
            return Err(Error::WrongState("subscription expired"));
        }
        if self.dialogs_full() {
            return Err(Error::Limit {
                what: "max_dialogs",
            });
        }
        let mut dialog = Dialog::uas(&rec.request, rec.local_tag, self.cfg.contact.clone())?;
        dialog.resume(
            rec.local_seq.saturating_add(RESTORE_CSEQ_GAP),
            rec.remote_seq,
            rec.remote_target,
        );
        let key = dialog.id().clone();
        if self.by_dialog.contains_key(&key as &dyn DialogKey) {
            return Err(Error::WrongState("dialog already known"));
        }
        let event = rec
            .request
            .headers
            .get(HeaderKind::Event)
            .map(|h| h.value_bytes())
            .ok_or(Error::InvalidMessage("no Event"))?;
        let id = self.new_id();
        let expires_at = at(now, Duration::from_secs(u64::from(secs)));
        let mut timers = Timers::default();
        timers.set(UaTimer::Expiry, expires_at);
        self.subs.insert(
            id,
            Sub {
                role: SubRole::Notifier,
                flow,
                dialog: Some(dialog),
                event,
                request: rec.request,
                pending_txn: None,
                granted: secs,
                expires_at: Some(expires_at),
                state: match rec.state {
                    SubState::Pending => SubState::Pending,
                    _ => SubState::Active,
                },
                got_notify: false,
                unsubscribing: false,
                retried_423: false,
                doc: None,
                flow_lost: false,
                held_back: false,
                timers,
                deadline: None,
            },
        );
        self.by_dialog.insert(DialogMapKey(key), Obj::Sub(id));
        self.reschedule(Obj::Sub(id));
        Ok(SubscriptionId(id))
    }

    /// Notifier: sends this subscription's requests on `flow` from now on (after
    /// [`UaEvent::SubscriptionFlowLost`]: a connection to the subscriber's domain).
    /// A NOTIFY held back meanwhile goes out at once, with the current state and the
    /// last document.
    pub fn rebind_subscription(
        &mut self,
        now: Instant,
        sub: SubscriptionId,
        flow: Flow,
    ) -> Result<(), Error> {
        let s = self.notifier_mut(sub)?;
        s.flow = flow;
        s.flow_lost = false;
        if std::mem::take(&mut s.held_back) {
            let st = s.state.clone();
            self.send_notify(now, sub.0, st, None)?;
            self.pump(now);
        }
        Ok(())
    }

    /// Notifier: rejects a requested subscription (403, 404, …).
    pub fn reject_subscription(
        &mut self,
        now: Instant,
        sub: SubscriptionId,
        code: u16,
    ) -> Result<(), Error> {
        let s = self.subs.get(&sub.0).ok_or(Error::UnknownSubscription)?;
        let (Some(txn), SubRole::Notifier) = (s.pending_txn, s.role) else {
            return Err(Error::WrongState("not a subscription request"));
        };
        let req = s.request.clone();
        self.end_sub(now, sub.0, SubEnd::Local, true);
        self.answer(now, txn, &req, code.clamp(300, 699));
        self.pump(now);
        Ok(())
    }

    /// Notifier: sends a NOTIFY with the current state and this body; `state`
    /// changes it (Pending → Active).
    pub fn notify(
        &mut self,
        now: Instant,
        sub: SubscriptionId,
        state: Option<SubState>,
        body: Option<(&str, Bytes)>,
    ) -> Result<(), Error> {
        let s = self.notifier_mut(sub)?;
        if let Some(st) = state {
            if let SubState::Terminated(r) = st {
                return self.terminate_subscription_with(now, sub, r, body);
            }
            s.state = st;
        }
        let st = s.state.clone();
        self.send_notify(now, sub.0, st, body)?;
        self.pump(now);
        Ok(())
    }

    /// Ends a subscription: notifier side sends the final NOTIFY
    /// (`terminated;reason=…`), subscriber side unsubscribes.
    pub fn terminate_subscription(
        &mut self,
        now: Instant,
        sub: SubscriptionId,
        reason: &str,
    ) -> Result<(), Error> {
        let role = self
            .subs
            .get(&sub.0)
            .ok_or(Error::UnknownSubscription)?
            .role;
        match role {
            SubRole::Subscriber => self.unsubscribe(now, sub),
            SubRole::Notifier => self.terminate_subscription_with(
                now,
                sub,
                Some(Bytes::copy_from_slice(reason.as_bytes())),
                None,
            ),
        }
    }

    fn terminate_subscription_with(
        &mut self,
        now: Instant,
        sub: SubscriptionId,
        reason: Option<Bytes>,
        body: Option<(&str, Bytes)>,
    ) -> Result<(), Error> {
        let has_dialog = self
            .subs
            .get(&sub.0)
            .ok_or(Error::UnknownSubscription)?
            .dialog
            .is_some();
        if has_dialog {
            self.send_notify(now, sub.0, SubState::Terminated(reason), body)?;
        }
        self.end_sub(now, sub.0, SubEnd::Local, false);
        self.pump(now);
        Ok(())
    }

    fn send_notify(
        &mut self,
        now: Instant,
        id: u64,
        state: SubState,
        body: Option<(&str, Bytes)>,
    ) -> Result<(), Error> {
        let s = self.subs.get_mut(&id).ok_or(Error::UnknownSubscription)?;
        let last = matches!(state, SubState::Terminated(_));
        // Full state (RFC 6665 §4.2.2, RFC 3856 §6.6): a NOTIFY without a new
        // document carries the last one.
        let body = match body {
            Some((ct, b)) => {
                let doc = (Bytes::copy_from_slice(ct.as_bytes()), b);
                s.doc = Some(doc.clone());
                Some(doc)
            }
            None if !last => s.doc.clone(),
            None => None,
        };
        if s.flow_lost {
            // No path to the subscriber (see `handle_flow_closed`); the document
            // goes with the NOTIFY sent on the next path (`rebind_subscription`) or
            // with the one that answers its next refresh.
            s.held_back = true;
            return Ok(());
        }
        let remaining = s
            .expires_at
            .map_or(0, |e| ceil_secs(e.saturating_duration_since(now)));
        let d = s.dialog.as_mut().ok_or(Error::WrongState("no dialog"))?;
        let mut n = d.request(Method::Notify);
        util::push(&mut n, "Event", s.event.clone());
        let ss = match &state {
            SubState::Active => format!("active;expires={remaining}"),
            SubState::Pending => format!("pending;expires={remaining}"),
            SubState::Terminated(Some(r)) => {
                format!("terminated;reason={}", String::from_utf8_lossy(r))
            }
            SubState::Terminated(None) => "terminated".to_string(),
        };
        util::push(&mut n, "Subscription-State", Bytes::from(ss));
        match body {
            Some((ct, b)) => {
                util::push(&mut n, "Content-Type", ct);
                n.set_body(b);
            }
            None => n.set_body(Bytes::new()),
        }
        let flow = s.flow;
        self.send(now, flow, n, Obj::Sub(id), Purpose::Notify { last })?;
        Ok(())
    }

    fn end_sub(&mut self, _now: Instant, id: u64, reason: SubEnd, quiet: bool) {
        let Some(s) = self.subs.remove(&id) else {
            return;
        };
        if let Some(d) = s.deadline {
            self.timers.remove(&(d, Obj::Sub(id)));
        }
        if let Some(d) = &s.dialog {
            self.by_dialog.remove(d.id() as &dyn DialogKey);
        }
        if let (Ok(c), Ok(f)) = (s.request.call_id(), s.request.from()) {
            self.pending_subs
                .remove(&(c.0, f.tag().cloned().unwrap_or_default()));
        }
        if let Some(t) = s.pending_txn {
            self.server_txns.remove(&t);
        }
        if !quiet {
            self.events.push_back(UaEvent::SubscriptionTerminated {
                subscription: SubscriptionId(id),
                reason,
            });
        }
    }

    // ---- the event pump ------------------------------------------------------------

    fn pump(&mut self, now: Instant) {
        // Bounded: each event is handled once; handling may queue a few more, all
        // about objects that are removed or answered, so the loop terminates.
        while let Some(ev) = self.ep.poll_event() {
            match ev {
                TxnEvent::Request { txn, flow, request } => {
                    self.on_request(now, txn, flow, request)
                }
                TxnEvent::Ack { request, .. } => self.on_ack(now, &request),
                TxnEvent::Response { txn, response } => self.on_response(now, txn, &response),
                TxnEvent::Failed { txn, response, .. } => self.on_response(now, txn, &response),
                TxnEvent::AcceptedEnded { txn } => {
                    self.client_txns.remove(&txn);
                }
                TxnEvent::Cancelled { txn } => {
                    if let Some(Obj::Session(id)) = self.server_txns.remove(&txn) {
                        self.end_session(now, id, CloseReason::Cancelled);
                    }
                }
                TxnEvent::Server { txn, note } => {
                    // A MESSAGE the application had not answered: its transaction
                    // failed (transport) or answered 408 itself.
                    self.unanswered.remove(&txn);
                    if let Some(obj) = self.server_txns.remove(&txn) {
                        match (obj, note) {
                            (Obj::Session(id), _) => {
                                if let Some(s) = self.sessions.get_mut(&id) {
                                    s.invite_txn = None;
                                    s.state = SessState::Open;
                                }
                                self.end_session(now, id, CloseReason::Declined(408));
                            }
                            (Obj::Sub(id), note) => {
                                // The application did not answer in time (the
                                // transaction sent 408) or the transport failed.
                                let code = if note == ServerNote::TuTimeout {
                                    408
                                } else {
                                    503
                                };
                                self.end_sub(now, id, SubEnd::Status(code), false);
                            }
                        }
                    }
                }
            }
        }
    }

    fn on_request(&mut self, now: Instant, txn: TxnId, flow: Flow, req: Message) {
        let Some(method) = req.method().cloned() else {
            return;
        };
        if !self.policy_ok(now, txn, &req) {
            return;
        }
        // The endpoint already decoded the dialog id and CSeq of this request.
        let facts = self.ep.take_request_facts(txn);
        let key = match &facts {
            Some(f) => f.dialog_key(),
            None => dialog::request_key(&req),
        };
        if let Some(key) = key {
            match self.by_dialog.get(&key as &dyn DialogKey).copied() {
                Some(Obj::Session(id)) => {
                    let seq = facts.as_ref().map(|f| f.seq);
                    self.session_request(now, id, txn, &req, method, seq)
                }
                Some(Obj::Sub(id)) => self.sub_request(now, id, txn, flow, &req, method),
                None => {
                    // A NOTIFY before the 2xx to our SUBSCRIBE (RFC 6665 §4.1.2.4).
                    let pending = (method == Method::Notify)
                        .then(|| {
                            self.pending_subs
                                .get(&(
                                    Bytes::copy_from_slice(key.0),
                                    Bytes::copy_from_slice(key.1),
                                ))
                                .copied()
                        })
                        .flatten();
                    match pending {
                        Some(id) => {
                            let contact = self.cfg.contact.clone();
                            let made = self.subs.get_mut(&id).and_then(|s| {
                                if s.dialog.is_some() {
                                    return None;
                                }
                                Dialog::from_early_request(&s.request, &req, contact)
                                    .ok()
                                    .inspect(|d| {
                                        s.dialog = Some(d.clone());
                                    })
                            });
                            match made {
                                Some(d) => {
                                    self.by_dialog
                                        .insert(DialogMapKey(d.id().clone()), Obj::Sub(id));
                                    self.sub_request(now, id, txn, flow, &req, method);
                                }
                                None => self.answer(now, txn, &req, 481),
                            }
                        }
                        None => self.answer(now, txn, &req, 481),
                    }
                }
            }
            return;
        }
        match method {
            Method::Invite => self.new_session(now, txn, flow, req),
            Method::Subscribe => self.new_subscription(now, txn, flow, req),
            Method::Notify | Method::Bye => self.answer(now, txn, &req, 481),
            Method::Options => {
                let tag = self.ep.new_tag();
                let mut r = util::response_to(&req, 200, Some(&tag));
                r.headers.remove(HeaderKind::ContentLength);
                util::push(&mut r, "Allow", Bytes::from_static(ALLOW));
                util::push(&mut r, "Accept", Bytes::from_static(b"application/sdp"));
                r.set_body(Bytes::new());
                let _ = self.ep.send_response(now, txn, r);
            }
            _ => self.events.push_back(UaEvent::Request {
                txn,
                flow,
                request: Box::new(req),
            }),
        }
    }

    /// RFC 3261 §8.2.2.1 (416) and §8.2.2.3 (420), only when they can fail.
    fn policy_ok(&mut self, now: Instant, txn: TxnId, req: &Message) -> bool {
        let odd_scheme = req
            .request_line()
            .is_some_and(|r| !matches!(r.uri, Uri::Sip(_) | Uri::Tel(_)));
        if !odd_scheme && req.headers.get(HeaderKind::Require).is_none() {
            return true;
        }
        let ext: Vec<&str> = self.cfg.extensions.iter().map(String::as_str).collect();
        let policy = fedgate_sip::Policy {
            methods: &[],
            extensions: &ext,
            schemes: &[],
            proxy: false,
        };
        let Err(rej) = fedgate_sip::check_policy(req, &policy) else {
            return true;
        };
        let code = rej.answer.status().unwrap_or(400);
        let tag = self.ep.new_tag();
        let mut r = util::response_to(req, code, Some(&tag));
        if !rej.unsupported.is_empty() {
            r.headers.remove(HeaderKind::ContentLength);
            let tags: Vec<&[u8]> = rej.unsupported.iter().map(|b| &b[..]).collect();
            util::push(&mut r, "Unsupported", Bytes::from(tags.join(&b", "[..])));
            r.set_body(Bytes::new());
        }
        let _ = self.ep.send_response(now, txn, r);
        false
    }

    fn new_session(&mut self, now: Instant, txn: TxnId, flow: Flow, req: Message) {
        let is_sdp = content_type(&req)
            .is_some_and(|c| c.len() >= 15 && c[..15].eq_ignore_ascii_case(b"application/sdp"));
        if !is_sdp || !im::is_im_offer(&req.body) {
            self.answer(now, txn, &req, 488);
            return;
        }
        if self.dialogs_full() {
            self.limit_503(now, txn, &req);
            return;
        }
        let (Ok(from), Ok(to)) = (req.from(), req.to()) else {
            self.answer(now, txn, &req, 400);
            return;
        };
        if from.tag().is_none() || req.contact().is_err() {
            self.answer(now, txn, &req, 400);
            return;
        }
        let first = if self.cfg.decode_first_message {
            im::first_message(&req)
        } else {
            None
        };
        let id = self.new_id();
        let has_first = first.is_some();
        let seq = req.cseq().map_or(1, |c| c.seq);
        self.sessions.insert(
            id,
            Session {
                state: SessState::Offered,
                flow,
                dialog: None,
                invite_txn: Some(txn),
                invite: Some(req),
                invite_seq: seq,
                first,
                first_taken: false,
                ok_wire: None,
                ok_interval: self.cfg.endpoint.timers.t1,
                ack_wire: None,
                queued: VecDeque::new(),
                timers: Timers::default(),
                deadline: None,
                idle_until: now,
            },
        );
        self.server_txns.insert(txn, Obj::Session(id));
        self.events.push_back(UaEvent::SessionOffered {
            session: SessionId(id),
            remote: from,
            local: to,
            has_first_message: has_first,
        });
    }

    /// Expires negotiation (RFC 6665 §4.2.1.1): `Err(Some(min))` → 423 with
    /// Min-Expires, `Ok(granted)` otherwise.
    fn negotiate(&self, req: &Message) -> Result<u32, u32> {
        let requested = req
            .headers
            .expires()
            .map_or(self.cfg.default_expires, |d| d.0);
        if requested != 0 && requested < self.cfg.min_expires {
            return Err(self.cfg.min_expires);
        }
        Ok(requested.min(self.cfg.max_expires))
    }

    fn answer_423(
        &mut self,
        now: Instant,
        txn: TxnId,
        req: &Message,
        min: u32,
        tag: Option<&Bytes>,
    ) {
        let tag = tag.cloned().unwrap_or_else(|| self.ep.new_tag());
        let mut r = util::response_to(req, 423, Some(&tag));
        r.headers.remove(HeaderKind::ContentLength);
        util::push(&mut r, "Min-Expires", util::num(u64::from(min)));
        r.set_body(Bytes::new());
        let _ = self.ep.send_response(now, txn, r);
    }

    fn new_subscription(&mut self, now: Instant, txn: TxnId, flow: Flow, req: Message) {
        let event = match req.headers.event() {
            Ok(e) => e,
            Err(_) => {
                self.answer(now, txn, &req, 489);
                return;
            }
        };
        if !self
            .cfg
            .event_packages
            .iter()
            .any(|p| p.eq_ignore_ascii_case(&event.token))
        {
            let tag = self.ep.new_tag();
            let mut r = util::response_to(&req, 489, Some(&tag));
            r.headers.remove(HeaderKind::ContentLength);
            let allow: Vec<String> = self
                .cfg
                .event_packages
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            util::push(&mut r, "Allow-Events", Bytes::from(allow.join(", ")));
            r.set_body(Bytes::new());
            let _ = self.ep.send_response(now, txn, r);
            return;
        }
        let granted = match self.negotiate(&req) {
            Ok(g) => g,
            Err(min) => {
                self.answer_423(now, txn, &req, min, None);
                return;
            }
        };
        if self.dialogs_full() {
            self.limit_503(now, txn, &req);
            return;
        }
        let (Ok(from), Ok(to)) = (req.from(), req.to()) else {
            self.answer(now, txn, &req, 400);
            return;
        };
        if from.tag().is_none() || req.contact().is_err() {
            self.answer(now, txn, &req, 400);
            return;
        }
        let id = self.new_id();
        let ev = req
            .headers
            .get(HeaderKind::Event)
            .map(|h| h.value_bytes())
            .unwrap_or_default();
        self.subs.insert(
            id,
            Sub {
                role: SubRole::Notifier,
                flow,
                dialog: None,
                event: ev,
                request: req.clone(),
                pending_txn: Some(txn),
                granted,
                expires_at: None,
                state: SubState::Pending,
                got_notify: false,
                unsubscribing: false,
                retried_423: false,
                doc: None,
                flow_lost: false,
                held_back: false,
                timers: Timers::default(),
                deadline: None,
            },
        );
        self.server_txns.insert(txn, Obj::Sub(id));
        self.events.push_back(UaEvent::SubscriptionRequested {
            subscription: SubscriptionId(id),
            from,
            to,
            event: event.token,
            expires: granted,
            request: Box::new(req),
        });
    }

    /// `seq`: the request's CSeq number if already decoded.
    fn session_request(
        &mut self,
        now: Instant,
        id: u64,
        txn: TxnId,
        req: &Message,
        method: Method,
        seq: Option<u32>,
    ) {
        let idle = self.cfg.idle_timeout;
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(d) = s.dialog.as_mut() else {
            self.answer(now, txn, req, 481);
            return;
        };
        let checked = match seq {
            Some(_) if matches!(method, Method::Ack | Method::Cancel) => Ok(()),
            Some(seq) => d.check_seq(seq),
            None => d.check_request(req),
        };
        if let Err(code) = checked {
            let r = d.response(req, code);
            let _ = self.ep.send_response(now, txn, r);
            return;
        }
        match method {
            Method::Message => {
                s.touch_idle(at(now, idle));
                let ct = content_type(req).unwrap_or_else(|| Bytes::from_static(b"text/plain"));
                let typing = ct.len() >= im::ISCOMPOSING.len()
                    && ct[..im::ISCOMPOSING.len()].eq_ignore_ascii_case(im::ISCOMPOSING.as_bytes());
                if self.cfg.app_answers_messages && !typing {
                    // The application answers (`respond_message`), within the bound.
                    let bound = self
                        .cfg
                        .message_answer_timeout
                        .min(self.cfg.endpoint.timers.t1x64() / 2);
                    self.unanswered.insert(txn, ());
                    self.answer_due.push_back((at(now, bound), txn));
                    self.events.push_back(UaEvent::MessageToAnswer {
                        message: MessageHandle {
                            session: SessionId(id),
                            txn,
                        },
                        content_type: ct,
                        body: req.body.clone(),
                    });
                    self.reschedule(Obj::Session(id));
                    return;
                }
                // The 200 is written straight from the request (the To has our tag).
                let r = util::response_wire(req, 200);
                let ev = if typing {
                    UaEvent::Typing {
                        session: SessionId(id),
                        active: im::typing_state(&req.body),
                    }
                } else {
                    UaEvent::MessageReceived {
                        session: SessionId(id),
                        content_type: ct,
                        body: req.body.clone(),
                    }
                };
                // The event is queued before the 200 is: a driver that drains
                // events first delivers before it acknowledges.
                self.events.push_back(ev);
                let _ = self.ep.send_response_wire(now, txn, 200, r);
                self.reschedule(Obj::Session(id));
            }
            Method::Bye => {
                let r = d.response(req, 200);
                let _ = self.ep.send_response(now, txn, r);
                self.end_session(now, id, CloseReason::ByeReceived);
            }
            Method::Info | Method::Options => {
                let r = d.response(req, 200);
                let _ = self.ep.send_response(now, txn, r);
            }
            Method::Invite => {
                // Re-INVITE (session refresh): same answer again.
                d.refresh_target(req);
                let mut r = d.response(req, 200);
                util::push(
                    &mut r,
                    "Content-Type",
                    Bytes::from_static(b"application/sdp"),
                );
                r.set_body(im::sdp(
                    &self.cfg.sdp_host,
                    self.cfg.sdp_port,
                    &self.cfg.accept_types,
                ));
                let _ = self.ep.send_response(now, txn, r);
            }
            _ => {
                let r = method_not_allowed(d, req);
                let _ = self.ep.send_response(now, txn, r);
            }
        }
    }

    fn sub_request(
        &mut self,
        now: Instant,
        id: u64,
        txn: TxnId,
        flow: Flow,
        req: &Message,
        method: Method,
    ) {
        let Some(s) = self.subs.get_mut(&id) else {
            return;
        };
        if s.flow_lost && s.flow != flow {
            // The peer reached us on a new connection: use it from now on.
            s.flow = flow;
            s.flow_lost = false;
            s.held_back = false; // the answer to its request carries the document
        }
        let Some(d) = s.dialog.as_mut() else {
            self.answer(now, txn, req, 481);
            return;
        };
        if let Err(code) = d.check_request(req) {
            let r = d.response(req, code);
            let _ = self.ep.send_response(now, txn, r);
            return;
        }
        match (s.role, method) {
            (SubRole::Subscriber, Method::Notify) => {
                let r = d.response(req, 200);
                let _ = self.ep.send_response(now, txn, r);
                self.on_notify(now, id, req);
            }
            (SubRole::Notifier, Method::Subscribe) => {
                let tag = d.id().local_tag.clone();
                let granted = match self.negotiate(req) {
                    Ok(g) => g,
                    Err(min) => {
                        self.answer_423(now, txn, req, min, Some(&tag));
                        return;
                    }
                };
                let Some(s) = self.subs.get_mut(&id) else {
                    return;
                };
                let Some(d) = s.dialog.as_mut() else { return };
                d.refresh_target(req);
                let mut ok = d.response(req, 200);
                ok.headers.remove(HeaderKind::ContentLength);
                util::push(&mut ok, "Expires", util::num(u64::from(granted)));
                ok.set_body(Bytes::new());
                let _ = self.ep.send_response(now, txn, ok);
                s.granted = granted;
                if granted == 0 {
                    let _ = self.send_notify(
                        now,
                        id,
                        SubState::Terminated(Some(Bytes::from_static(b"timeout"))),
                        None,
                    );
                    self.end_sub(now, id, SubEnd::Unsubscribed, false);
                } else {
                    let e = at(now, Duration::from_secs(u64::from(granted)));
                    s.expires_at = Some(e);
                    s.timers.set(UaTimer::Expiry, e);
                    let st = s.state.clone();
                    let _ = self.send_notify(now, id, st, None);
                    self.events.push_back(UaEvent::SubscriptionRefreshed {
                        subscription: SubscriptionId(id),
                        expires: granted,
                    });
                    self.reschedule(Obj::Sub(id));
                }
            }
            _ => {
                let r = method_not_allowed(d, req);
                let _ = self.ep.send_response(now, txn, r);
            }
        }
    }

    fn on_notify(&mut self, now: Instant, id: u64, req: &Message) {
        let margin = self.cfg.refresh_margin;
        let Some(s) = self.subs.get_mut(&id) else {
            return;
        };
        s.got_notify = true;
        if !s.unsubscribing {
            s.timers.clear(UaTimer::N);
        }
        if let Some(d) = s.dialog.as_mut() {
            d.refresh_target(req);
        }
        let ss = req.headers.subscription_state().ok();
        let state = match &ss {
            Some(x) if x.token.eq_ignore_ascii_case(b"active") => SubState::Active,
            Some(x) if x.token.eq_ignore_ascii_case(b"pending") => SubState::Pending,
            Some(x) if x.token.eq_ignore_ascii_case(b"terminated") => {
                SubState::Terminated(x.params.value("reason").cloned())
            }
            // Missing or unknown: treat as active (RFC 6665 §8.2.3 extension values).
            _ => SubState::Active,
        };
        self.events.push_back(UaEvent::Notified {
            subscription: SubscriptionId(id),
            state: state.clone(),
            content_type: content_type(req),
            body: req.body.clone(),
        });
        match &state {
            SubState::Terminated(r) => {
                let r = r.clone();
                self.end_sub(now, id, SubEnd::Notified(r), false);
                return;
            }
            _ if !s.unsubscribing => {
                // Without an `expires` parameter, keep the current expiry (or use
                // the requested duration if there is none yet).
                let exp = ss
                    .as_ref()
                    .and_then(|x| x.expires())
                    .or_else(|| s.expires_at.is_none().then_some(s.granted));
                if let Some(exp) = exp {
                    let exp = exp.min(s.granted.max(1));
                    let e = at(now, Duration::from_secs(u64::from(exp)));
                    s.expires_at = Some(e);
                    s.timers.set(UaTimer::Expiry, e);
                    let total = Duration::from_secs(u64::from(exp));
                    let before = margin.min(total / 2);
                    s.timers.set(UaTimer::Refresh, at(now, total - before));
                }
            }
            _ => {}
        }
        s.state = state;
        self.reschedule(Obj::Sub(id));
    }

    fn on_ack(&mut self, _now: Instant, ack: &Message) {
        let Some(key) = dialog::request_key(ack) else {
            return;
        };
        let Some(Obj::Session(id)) = self.by_dialog.get(&key as &dyn DialogKey).copied() else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if s.state == SessState::AwaitingAck {
            s.state = SessState::Open;
            s.timers.clear(UaTimer::AckWait);
            s.timers.clear(UaTimer::OkRetransmit);
            s.ok_wire = None;
            self.events.push_back(UaEvent::SessionOpened {
                session: SessionId(id),
            });
            self.reschedule(Obj::Session(id));
        }
    }

    fn on_response(&mut self, now: Instant, txn: TxnId, resp: &Message) {
        let code = status_of(resp);
        let Some(&(obj, purpose)) = self.client_txns.get(&txn) else {
            return;
        };
        if code >= 200 && !(purpose == Purpose::Invite && (200..300).contains(&code)) {
            self.client_txns.remove(&txn);
        }
        match (obj, purpose) {
            (Obj::Session(id), Purpose::Invite) => self.invite_response(now, id, txn, resp, code),
            (Obj::Session(id), Purpose::Message)
                if (200..300).contains(&code) && self.sessions.contains_key(&id) =>
            {
                self.events.push_back(UaEvent::MessageDelivered {
                    session: SessionId(id),
                    cseq: resp.cseq_ref().map_or(0, |c| c.seq),
                });
            }
            (Obj::Session(id), Purpose::Message) if code >= 300 => {
                if !self.sessions.contains_key(&id) {
                    return;
                }
                self.events.push_back(UaEvent::MessageFailed {
                    session: SessionId(id),
                    status: code,
                });
                if code == 481 || code == 408 {
                    self.end_session(now, id, CloseReason::DialogGone(code));
                }
            }
            (Obj::Sub(id), Purpose::Subscribe { initial, unsub }) => {
                self.subscribe_response(now, id, resp, code, initial, unsub)
            }
            (Obj::Sub(id), Purpose::Notify { last })
                if code >= 300 && !last && self.subs.contains_key(&id) =>
            {
                self.end_sub(now, id, SubEnd::Status(code), false);
            }
            _ => {}
        }
    }

    fn invite_response(&mut self, now: Instant, id: u64, txn: TxnId, resp: &Message, code: u16) {
        if code < 200 {
            return;
        }
        let contact = self.cfg.contact.clone();
        let idle = self.cfg.idle_timeout;
        let Some(s) = self.sessions.get_mut(&id) else {
            // Closed while inviting: ACK a late 2xx and hang up.
            if (200..300).contains(&code) {
                self.client_txns.remove(&txn);
                if let Some(inv) = self.ep.request(txn).cloned()
                    && let Ok(mut d) = Dialog::uac(&inv, resp, contact)
                    && let Some(flow) = self.ep.flow(txn)
                {
                    let _ = self
                        .ep
                        .send_ack(now, flow, d.ack(inv.cseq().map_or(1, |c| c.seq)));
                    let _ = self.ep.send_request(now, flow, d.request(Method::Bye));
                }
            }
            return;
        };
        if code >= 300 {
            s.state = SessState::Open; // nothing to cancel or BYE
            s.dialog = None;
            self.sessions.remove(&id);
            self.events.push_back(UaEvent::SessionClosed {
                session: SessionId(id),
                reason: CloseReason::Rejected(code),
            });
            return;
        }
        if let Some(ack) = s.ack_wire.clone() {
            // A 2xx retransmission: ACK again.
            self.ep.transmit(s.flow, ack);
            return;
        }
        let Some(d) = s
            .invite
            .as_ref()
            .and_then(|inv| Dialog::uac(inv, resp, contact).ok())
        else {
            // A 2xx we cannot build a dialog from (no To tag, no Contact): the
            // session cannot work.
            s.state = SessState::Open;
            self.sessions.remove(&id);
            self.events.push_back(UaEvent::SessionClosed {
                session: SessionId(id),
                reason: CloseReason::Rejected(code),
            });
            return;
        };
        let ack = d.ack(s.invite_seq);
        if let Ok(w) = self.ep.send_ack(now, s.flow, ack) {
            s.ack_wire = Some(w);
        }
        self.by_dialog
            .insert(DialogMapKey(d.id().clone()), Obj::Session(id));
        s.dialog = Some(d);
        s.state = SessState::Open;
        s.touch_idle(at(now, idle));
        let queued: Vec<_> = s.queued.drain(..).collect();
        self.events.push_back(UaEvent::SessionOpened {
            session: SessionId(id),
        });
        for (ct, body) in queued {
            if self.send_in_session(now, id, ct, body).is_err() {
                self.events.push_back(UaEvent::MessageFailed {
                    session: SessionId(id),
                    status: 503,
                });
            }
        }
        self.reschedule(Obj::Session(id));
    }

    fn subscribe_response(
        &mut self,
        now: Instant,
        id: u64,
        resp: &Message,
        code: u16,
        initial: bool,
        unsub: bool,
    ) {
        let contact = self.cfg.contact.clone();
        let margin = self.cfg.refresh_margin;
        let Some(s) = self.subs.get_mut(&id) else {
            return;
        };
        if code < 200 {
            return;
        }
        if (200..300).contains(&code) {
            if unsub {
                return; // the final NOTIFY (or Timer N) ends it
            }
            if s.dialog.is_none() {
                match Dialog::uac(&s.request, resp, contact) {
                    Ok(d) => {
                        self.by_dialog
                            .insert(DialogMapKey(d.id().clone()), Obj::Sub(id));
                        s.dialog = Some(d);
                    }
                    Err(_) => {
                        // A 2xx without To tag or Contact: no dialog can exist.
                        self.end_sub(now, id, SubEnd::Status(code), false);
                        return;
                    }
                }
            }
            let granted = resp.headers.expires().map_or(s.granted, |e| e.0);
            s.granted = granted;
            let total = Duration::from_secs(u64::from(granted));
            let e = at(now, total);
            s.expires_at = Some(e);
            s.timers.set(UaTimer::Expiry, e);
            s.timers
                .set(UaTimer::Refresh, at(now, total - margin.min(total / 2)));
            self.reschedule(Obj::Sub(id));
            return;
        }
        if code == 423 && initial && !s.retried_423 {
            // Retry once with the notifier's Min-Expires (RFC 6665 §4.1.2.1).
            if let Ok(min) = resp.headers.min_expires() {
                s.retried_423 = true;
                let mut req = s.request.clone();
                req.headers.remove(HeaderKind::Via);
                req.headers.remove(HeaderKind::Expires);
                req.headers.remove(HeaderKind::CSeq);
                req.headers.remove(HeaderKind::ContentLength);
                let seq = s.request.cseq().map_or(1, |c| c.seq) + 1;
                req.push_typed(
                    HeaderKind::CSeq,
                    &CSeq {
                        seq,
                        method: Method::Subscribe,
                    },
                );
                util::push(&mut req, "Expires", util::num(u64::from(min.0)));
                req.set_body(Bytes::new());
                s.granted = min.0;
                let flow = s.flow;
                if let Ok(txn) = self.send(
                    now,
                    flow,
                    req,
                    Obj::Sub(id),
                    Purpose::Subscribe {
                        initial: true,
                        unsub: false,
                    },
                ) && let Some(r) = self.ep.request(txn).cloned()
                    && let Some(s) = self.subs.get_mut(&id)
                {
                    s.request = r;
                }
                return;
            }
        }
        if initial || unsub || code == 481 {
            self.end_sub(now, id, SubEnd::Status(code), false);
        }
        // A failed refresh (other than 481) leaves the subscription until it expires.
    }

    // ---- UA timers -----------------------------------------------------------------

    fn reschedule(&mut self, obj: Obj) {
        let (next, deadline) = match obj {
            Obj::Session(id) => match self.sessions.get_mut(&id) {
                Some(s) => (s.timers.next(), &mut s.deadline),
                None => return,
            },
            Obj::Sub(id) => match self.subs.get_mut(&id) {
                Some(s) => (s.timers.next(), &mut s.deadline),
                None => return,
            },
        };
        if next != *deadline {
            if let Some(old) = *deadline {
                self.timers.remove(&(old, obj));
            }
            if let Some(n) = next {
                self.timers.insert((n, obj));
            }
            *deadline = next;
        }
    }

    fn fire_session(&mut self, now: Instant, id: u64) {
        let t2 = self.cfg.endpoint.timers.t2;
        loop {
            let Some(s) = self.sessions.get_mut(&id) else {
                return;
            };
            let Some(t) = s.timers.take_due(now) else {
                break;
            };
            match t {
                UaTimer::Idle if s.idle_until > now => {
                    // Traffic since the timer was armed: wait for the rest.
                    let until = s.idle_until;
                    s.timers.set(UaTimer::Idle, until);
                }
                UaTimer::Idle => {
                    self.end_session(now, id, CloseReason::Idle);
                    return;
                }
                UaTimer::AckWait => {
                    self.end_session(now, id, CloseReason::AckTimeout);
                    return;
                }
                UaTimer::OkRetransmit => {
                    if let Some(w) = s.ok_wire.clone() {
                        s.ok_interval = s.ok_interval.saturating_mul(2).min(t2);
                        s.timers.set(UaTimer::OkRetransmit, at(now, s.ok_interval));
                        let flow = s.flow;
                        self.ep.transmit(flow, w);
                    }
                }
                _ => {}
            }
        }
        self.reschedule(Obj::Session(id));
    }

    fn fire_sub(&mut self, now: Instant, id: u64) {
        loop {
            let Some(s) = self.subs.get_mut(&id) else {
                return;
            };
            let Some(t) = s.timers.take_due(now) else {
                break;
            };
            match (s.role, t) {
                (SubRole::Subscriber, UaTimer::N) => {
                    let reason = if s.unsubscribing {
                        SubEnd::Local
                    } else {
                        SubEnd::NoNotify
                    };
                    self.end_sub(now, id, reason, false);
                    return;
                }
                (SubRole::Subscriber, UaTimer::Refresh) => {
                    let g = s.granted.max(1);
                    let _ = self.send_subscribe(now, id, g, false);
                }
                (SubRole::Subscriber, UaTimer::Expiry) => {
                    self.end_sub(now, id, SubEnd::Expired, false);
                    return;
                }
                (SubRole::Notifier, UaTimer::Expiry) => {
                    let _ = self.send_notify(
                        now,
                        id,
                        SubState::Terminated(Some(Bytes::from_static(b"timeout"))),
                        None,
                    );
                    self.end_sub(now, id, SubEnd::Expired, false);
                    return;
                }
                _ => {}
            }
        }
        self.reschedule(Obj::Sub(id));
    }
}

/// The parsed Subscription-State of a message, as a [`SubState`].
pub fn sub_state_of(m: &Message) -> Option<SubState> {
    let ss = m.headers.subscription_state().ok()?;
    Some(if ss.token.eq_ignore_ascii_case(b"active") {
        SubState::Active
    } else if ss.token.eq_ignore_ascii_case(b"pending") {
        SubState::Pending
    } else {
        SubState::Terminated(ss.params.value("reason").cloned())
    })
}

/// A request URI from text (tests, examples).
pub fn uri(s: &'static str) -> Result<Uri, Error> {
    Uri::parse(&Bytes::from_static(s.as_bytes())).map_err(|_| Error::InvalidMessage("bad URI"))
}

/// An address from text such as `"<sip:alice@fabrikam.com>"`.
pub fn address(s: &str) -> Result<Address, Error> {
    fedgate_sip::HeaderValue::parse(&Bytes::copy_from_slice(s.as_bytes()))
        .map_err(|_| Error::InvalidMessage("bad address"))
}
