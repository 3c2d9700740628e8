//! [`SipUa`]: the tokio driver of a sans-IO [`fedgate_sip_txn::UserAgent`] on top of a
//! [`SipTransport`].
//!
//! **What it does**: one task owns the `UserAgent` and runs it by the run-loop contract
//! of `fedgate-sip-txn` (input → drain events → drain transmits → arm the timer). It
//! maps transport sources and targets to [`Flow`]s, turns the UA's events into
//! [`SipUaEvent`]s on a bounded channel, and takes the application's calls (subscribe,
//! notify, open a session, send a message, …) as commands on a bounded channel through
//! the cheap-to-clone [`SipUa`] handle.
//!
//! **What it does not do**: no DNS (the caller gives a [`Target`]), no authorization
//! (the caller decides on [`SipUaEvent::SubscriptionRequested`] and
//! [`SipUaEvent::SessionOffered`], which carry the verified TLS identity of the
//! connection), no RFC 5923 connection reuse for our own requests (a dialog we
//! answered stays on the connection it came on; a dialog we started goes to its
//! [`Target`], which the transport maps to its outbound connections), no application
//! answer for requests the UA does not own (page-mode MESSAGE, INFO outside a session,
//! …: they are answered `501` and reported as [`SipUaEvent::Unhandled`]).
//!
//! # Tasks and channels
//!
//! ```text
//!  SipTransport ──[Receiver<Inbound>, bounded]──┐
//!                                               ▼
//!  SipUa (handle, Clone) ──try_send──▶ [commands, bounded] ──▶ driver task ──▶ [events, bounded] ──▶ Receiver<SipUaEvent>
//!     ▲ oneshot reply per command ◀─────────────────────────── owns UserAgent,
//!                                                               flow table, timer
//!                                         transmits ──▶ SipTransport::reply_bytes / send_bytes (never wait)
//! ```
//!
//! # The run loop
//!
//! One `select!` over: the event channel's free slot (only while translated events are
//! waiting), the inbound receiver and the command receiver (only while fewer than
//! `events` translated events are waiting, so a slow event consumer stops the reading
//! of the transport: TCP backpressure), and one `sleep_until(poll_timeout())`. After
//! each input the driver drains `poll_event` (translated into the waiting queue) and
//! only then `poll_transmit`, so an application sees a MESSAGE before the peer sees
//! its 200. A transmit that cannot be sent (full queue, unreachable target) is fed
//! back as `handle_transport_error(flow)`; one whose inbound connection is gone, as
//! `handle_flow_closed(flow)` (see "Connections that end").
//!
//! A fifth branch reads the transport's [`SendFailure`]s
//! ([`SipTransport::take_failures`], taken at spawn): a transmit the transport accepted
//! but could not deliver (the connection to its target could not be opened, or closed
//! with it queued) is fed back the same way, as `handle_transport_error` on the flow of
//! that [`Target`], as soon as the connect fails. The client transactions on that flow
//! then fail with a 503 (RFC 3261 §8.1.3.1, §17.1.4): an initial SUBSCRIBE ends with
//! [`SubEnd::Status`]`(503)`, an INVITE closes its session with
//! [`CloseReason::Rejected`]`(503)`, a MESSAGE reports [`SipUaEvent::MessageFailed`]
//! with 503, within the connect time instead of Timer B/F (32 s). The application
//! picks the next target (RFC 3263 §4.3; the SIP gateway does, see
//! `crate::sipfed`). All client transactions on the flow fail, also one that went out
//! on another connection to the same target (a flow is a target, not a connection).
//!
//! Time: the UA gets `tokio::time::Instant::now().into_std()`, so tokio's paused clock
//! drives every SIP timer in tests.
//!
//! The task ends when every [`SipUa`] handle is dropped or the transport's inbound
//! channel closes.
//!
//! # Flows
//!
//! A [`Flow`] id stands for one path: an inbound stream connection (replies go back on
//! it with [`SipTransport::reply_bytes`]), a UDP peer address, or a [`Target`] we send
//! our own requests to (with [`SipTransport::send_bytes`], which opens or reuses an
//! outbound connection). The table is bounded (`max_flows`): the least recently used path is
//! forgotten first, and a transmit for a forgotten path is reported to the UA as a
//! transport error. The path of a connection that ended is forgotten once the UA
//! has been told (`handle_flow_closed`).
//!
//! # Transmits
//!
//! The core hands out encoded messages and the driver passes them to the transport
//! as they are ([`SipTransport::send_bytes`] / [`SipTransport::reply_bytes`]): no
//! re-parse. Everything the wire needs is the core's job: exactly one correct
//! Content-Length in every message (RFC 3261 §18.3, mandatory on TCP/TLS),
//! Max-Forwards in every request, and full state in every NOTIFY (one without a new
//! document, such as the answer to a subscription refresh, carries the last document
//! the application notified, with its Content-Type; the Lync watcher of
//! `tests/sipp/lync_watcher_uac.xml` fails the call without it).
//!
//! # Delivery of our MESSAGEs
//!
//! The core reports each MESSAGE we sent in a session once: answered 2xx
//! ([`SipUaEvent::MessageDelivered`], with its CSeq) or failed
//! ([`SipUaEvent::MessageFailed`]). The core sends in-dialog requests without
//! waiting for the previous answer; an application that must not pipeline waits
//! for one of the two before the next request.
//!
//! # Answering received MESSAGEs
//!
//! With [`UaConfig::app_answers_messages`] (the node sets it for the SIP gateway) an
//! in-session MESSAGE comes as [`SipUaEvent::MessageToAnswer`] and is answered with
//! [`SipUa::answer_message`] (2xx, or the status of the delivery failure); the core
//! answers 504 itself if that does not come within `message_answer_timeout`. Answers
//! do not go through the command channel: they have a channel of their own, never
//! full (at most one answer per unanswered MESSAGE, i.e. per live server
//! transaction), read by one more branch of the run loop before the commands and
//! the inbound messages, up to 256 per wake-up. An answer must never be dropped: its
//! transaction would live until the 504, and under load (a window of 1000 MESSAGEs
//! in flight) those reach `max_transactions` and every new request gets 503. Without
//! it, the core answers 200 and reports [`SipUaEvent::MessageReceived`], before the
//! 200 leaves (drain order above). The first message of an INVITE can be taken
//! before the answer ([`SipUa::take_first_message`]) to refuse the INVITE when it
//! cannot be delivered. Typing indications go out with [`SipUa::send_typing`] and
//! come in as [`SipUaEvent::Typing`] (always answered 200 by the core).
//!
//! # Connections that end
//!
//! A sixth branch reads the transport's connection ends
//! ([`SipTransport::take_closed`], taken at spawn; after the inbound branch, so the
//! last messages of a connection are handled before its end). When the connection
//! of a flow ends (an inbound connection, or an outbound one a peer sent requests
//! on), the driver calls `handle_flow_closed` and forgets the flow; a reply that
//! finds the connection already closed ([`SendError::ConnectionClosed`]) does the
//! same. The IM sessions on that flow end at once with
//! [`SipUaEvent::SessionClosed`] and [`CloseReason::FlowClosed`] (no BYE: there is
//! no path to the peer; its pending MESSAGEs fail with 503 first), instead of
//! lingering until the idle timer. Subscriptions outlive the connection: the core
//! moves one to the connection the peer's next in-dialog request (a refresh) comes
//! on, and a notifier's ([`SipUaEvent::SubscriptionFlowLost`]) can be moved at once to
//! a [`Target`] of the application's ([`SipUa::rebind_subscription`]; the SIP gateway
//! sends it to the watcher's domain), its NOTIFYs held back until then. A connection to a [`Target`] we send our own requests to is not a flow of its
//! own (the transport reconnects), so its end changes nothing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fedgate_sip::{Address, HeaderKind, Message, Method};
use fedgate_sip_txn::{
    CloseReason, Flow, MessageHandle, SessionId, SubEnd, SubState, SubscribeParams, SubscriptionId,
    Transmit, UaConfig, UaEvent, UserAgent, ua::NotifierRecord,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::transport::{
    ConnectionId, Inbound, PeerIdentity, SendError, SendFailure, SipTransport, Source, Target,
    TransportKind,
};

/// Configuration of a [`SipUa`].
///
/// | field | default |
/// |---|---|
/// | `commands` | 64 queued commands |
/// | `events` | 256 queued events |
/// | `max_flows` | 1024 remembered paths |
#[derive(Debug, Clone)]
pub struct SipUaConfig {
    /// The user agent's configuration.
    pub ua: UaConfig,
    /// Depth of the command channel; a call waits for room when it is full.
    pub commands: usize,
    /// Depth of the event channel (and of the driver's own queue behind it).
    pub events: usize,
    /// Paths (connections, UDP peers, targets) the flow table remembers.
    pub max_flows: usize,
}

impl SipUaConfig {
    /// The documented defaults around a UA configuration.
    pub fn new(ua: UaConfig) -> Self {
        SipUaConfig {
            ua,
            commands: 64,
            events: 256,
            max_flows: 1024,
        }
    }
}

/// Why a call on [`SipUa`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UaError {
    /// The command queue is full (kept for API stability: calls now wait for room
    /// and no longer return it).
    #[error("the SIP user agent's command queue is full")]
    Busy,
    /// The driver task has ended.
    #[error("the SIP user agent has stopped")]
    Stopped,
    /// The user agent refused the call.
    #[error(transparent)]
    Ua(#[from] fedgate_sip_txn::Error),
}

/// What to subscribe to ([`SipUa::subscribe_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Event package. Default `presence`.
    pub event: String,
    /// Accept types. Default PIDF and Microsoft's categories
    /// (`application/pidf+xml`, `application/msrtc-event-categories+xml`).
    pub accept: Vec<String>,
    /// Requested duration in seconds. Default 3600.
    pub expires: u32,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            event: "presence".into(),
            accept: vec![
                "application/pidf+xml".into(),
                "application/msrtc-event-categories+xml".into(),
            ],
            expires: 3600,
        }
    }
}

/// What the driver tells the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SipUaEvent {
    /// Notifier: a watcher asks to subscribe. Answer with
    /// [`SipUa::accept_subscription`] or [`SipUa::reject_subscription`].
    SubscriptionRequested {
        /// The subscription.
        subscription: SubscriptionId,
        /// The watcher (From).
        from: Address,
        /// The presentity (To).
        to: Address,
        /// The Event package.
        event: Bytes,
        /// Granted seconds (0: a fetch).
        expires: u32,
        /// The verified TLS identity of the connection the SUBSCRIBE came on.
        tls_peer: Option<Arc<PeerIdentity>>,
        /// The media types of the SUBSCRIBE's Accept headers, in order, lowercased,
        /// without parameters (empty: no Accept, which means `application/pidf+xml` for
        /// the presence package, RFC 3856 §6.7).
        accept: Vec<String>,
    },
    /// Notifier: the watcher refreshed.
    SubscriptionRefreshed {
        /// The subscription.
        subscription: SubscriptionId,
        /// Granted seconds.
        expires: u32,
    },
    /// Subscriber: the first NOTIFY with `Subscription-State: active` arrived.
    SubscriptionActive {
        /// The subscription.
        subscription: SubscriptionId,
    },
    /// Subscriber: a NOTIFY arrived (it was answered 200).
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
    /// Notifier: the connection the watcher's requests came on closed; NOTIFYs are
    /// held back until [`SipUa::rebind_subscription`] gives the subscription a target
    /// (or the watcher's next request comes on another connection).
    SubscriptionFlowLost {
        /// The subscription.
        subscription: SubscriptionId,
    },
    /// A subscription ended (either role).
    SubscriptionTerminated {
        /// The subscription.
        subscription: SubscriptionId,
        /// Why.
        reason: SubEnd,
    },
    /// An IM session is offered. Answer with [`SipUa::accept_session`] or
    /// [`SipUa::reject_session`].
    SessionOffered {
        /// The session.
        session: SessionId,
        /// The caller (From).
        remote: Address,
        /// The callee (To).
        local: Address,
        /// The INVITE carried a first message (delivered on accept).
        has_first_message: bool,
        /// The verified TLS identity of the connection the INVITE came on.
        tls_peer: Option<Arc<PeerIdentity>>,
    },
    /// The session is up.
    SessionOpened {
        /// The session.
        session: SessionId,
    },
    /// A message in a session.
    MessageReceived {
        /// The session.
        session: SessionId,
        /// Content-Type.
        content_type: Bytes,
        /// The body.
        body: Bytes,
    },
    /// A message in a session that the application answers
    /// ([`UaConfig::app_answers_messages`]): call [`SipUa::answer_message`] with
    /// `message` and a final status (2xx: delivered; an error status otherwise). The
    /// core answers 504 itself after `message_answer_timeout` (see
    /// [`fedgate_sip_txn::MESSAGE_ANSWER_TIMEOUT_STATUS`]).
    MessageToAnswer {
        /// The answer handle ([`MessageHandle::session`] is the session).
        message: MessageHandle,
        /// Content-Type.
        content_type: Bytes,
        /// The body.
        body: Bytes,
    },
    /// A typing indication (answered 200 by the core).
    Typing {
        /// The session.
        session: SessionId,
        /// `state` is `active`.
        active: bool,
    },
    /// The peer answered one of our MESSAGEs in a session with a 2xx (once per
    /// MESSAGE, reported by the core; see the module docs).
    MessageDelivered {
        /// The session.
        session: SessionId,
        /// The MESSAGE's CSeq number.
        cseq: u32,
    },
    /// A MESSAGE we sent failed.
    MessageFailed {
        /// The session.
        session: SessionId,
        /// Final status (408 on timeout, 503 on a transport error).
        status: u16,
    },
    /// A session ended.
    SessionClosed {
        /// The session.
        session: SessionId,
        /// Why.
        reason: CloseReason,
    },
    /// A request the UA does not own; the driver answered it `501`.
    Unhandled {
        /// Its method.
        method: Method,
        /// Its From.
        from: Option<Address>,
    },
}

type Reply<T> = oneshot::Sender<Result<T, fedgate_sip_txn::Error>>;

#[derive(Debug)]
enum Command {
    Subscribe {
        target: Target,
        from: Address,
        to: Address,
        opts: SubscribeOptions,
        reply: Reply<SubscriptionId>,
    },
    AcceptSubscription {
        sub: SubscriptionId,
        state: SubState,
        body: Option<(String, Bytes)>,
        reply: Reply<()>,
    },
    RejectSubscription {
        sub: SubscriptionId,
        code: u16,
        reply: Reply<()>,
    },
    Notify {
        sub: SubscriptionId,
        state: Option<SubState>,
        body: Option<(String, Bytes)>,
        reply: Reply<()>,
    },
    Terminate {
        sub: SubscriptionId,
        reason: String,
        reply: Reply<()>,
    },
    OpenSession {
        target: Target,
        from: Address,
        to: Address,
        reply: Reply<SessionId>,
    },
    AcceptSession {
        session: SessionId,
        reply: Reply<()>,
    },
    RejectSession {
        session: SessionId,
        code: u16,
        reply: Reply<()>,
    },
    SendMessage {
        session: SessionId,
        content_type: String,
        body: Bytes,
        reply: Reply<()>,
    },
    CloseSession {
        session: SessionId,
        reply: Reply<()>,
    },
    TakeFirstMessage {
        session: SessionId,
        reply: Reply<Option<(Bytes, Bytes)>>,
    },
    SendTyping {
        session: SessionId,
        active: bool,
        reply: Reply<()>,
    },
    ExportNotifier {
        sub: SubscriptionId,
        reply: Reply<Option<NotifierRecord>>,
    },
    RebindSubscription {
        sub: SubscriptionId,
        target: Target,
        reply: Reply<()>,
    },
    RestoreNotifier {
        target: Target,
        record: Box<NotifierRecord>,
        left: Duration,
        reply: Reply<SubscriptionId>,
    },
}

/// The handle to a running SIP user agent: cheap to clone. Every call queues a command
/// (waiting for room when the queue is full: nothing is dropped) and waits for the
/// driver's answer, which comes right after the UA processed it. Answers to received MESSAGEs
/// ([`SipUa::answer_message`]) are the exception: they go on a channel of their own
/// that is never full, and are never lost.
#[derive(Debug, Clone)]
pub struct SipUa {
    tx: mpsc::Sender<Command>,
    /// [`SipUa::answer_message`]. Unbounded, but holds at most one answer per
    /// [`SipUaEvent::MessageToAnswer`], each a live server transaction of the UA:
    /// bounded by `max_transactions`.
    answers: mpsc::UnboundedSender<(MessageHandle, u16)>,
}

impl SipUa {
    /// Starts the driver task on `transport` and its inbound receiver. Returns the
    /// handle, the event receiver (depth `cfg.events`) and the task.
    pub fn spawn(
        transport: SipTransport,
        inbound: mpsc::Receiver<Inbound>,
        cfg: SipUaConfig,
    ) -> (SipUa, mpsc::Receiver<SipUaEvent>, JoinHandle<()>) {
        let (tx, cmds) = mpsc::channel(cfg.commands.max(1));
        let (answers, answers_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::channel(cfg.events.max(1));
        let failures = Some(transport.take_failures());
        let closed = Some(transport.take_closed());
        let driver = Driver {
            failures,
            closed,
            ua: UserAgent::new(cfg.ua.clone()),
            transport,
            inbound,
            cmds,
            answers: answers_rx,
            events: ev_tx,
            waiting: VecDeque::new(),
            max_waiting: cfg.events.max(1),
            flows: Flows::new(cfg.max_flows.max(1)),
            current_peer: None,
            active_subs: HashSet::new(),
            tag_seed: cfg.ua.endpoint.seed,
            tag_n: 0,
        };
        let task = tokio::spawn(driver.run());
        (SipUa { tx, answers }, ev_rx, task)
    }

    async fn call<T>(&self, f: impl FnOnce(Reply<T>) -> Command) -> Result<T, UaError> {
        let (reply, rx) = oneshot::channel();
        // Waits for room rather than failing: a dropped command would be a lost action
        // (a MESSAGE not sent, a session not answered). The driver drains commands
        // whenever its event queue has room, and the event consumer never waits on
        // these calls, so the wait is bounded by the driver's progress.
        self.tx.send(f(reply)).await.map_err(|_| UaError::Stopped)?;
        Ok(rx.await.map_err(|_| UaError::Stopped)??)
    }

    /// Subscribes to `to`'s presence at `target` with the default
    /// [`SubscribeOptions`].
    pub async fn subscribe(
        &self,
        target: Target,
        from: Address,
        to: Address,
    ) -> Result<SubscriptionId, UaError> {
        self.subscribe_with(target, from, to, SubscribeOptions::default())
            .await
    }

    /// Subscribes with these options.
    pub async fn subscribe_with(
        &self,
        target: Target,
        from: Address,
        to: Address,
        opts: SubscribeOptions,
    ) -> Result<SubscriptionId, UaError> {
        self.call(|reply| Command::Subscribe {
            target,
            from,
            to,
            opts,
            reply,
        })
        .await
    }

    /// Notifier: accepts a requested subscription in `state` (Active or Pending): 200,
    /// then the first NOTIFY with `body` (`(content_type, body)`) if given.
    pub async fn accept_subscription(
        &self,
        sub: SubscriptionId,
        state: SubState,
        body: Option<(&str, Bytes)>,
    ) -> Result<(), UaError> {
        let body = body.map(|(ct, b)| (ct.to_owned(), b));
        self.call(|reply| Command::AcceptSubscription {
            sub,
            state,
            body,
            reply,
        })
        .await
    }

    /// Notifier: rejects a requested subscription (403, 404, …).
    pub async fn reject_subscription(&self, sub: SubscriptionId, code: u16) -> Result<(), UaError> {
        self.call(|reply| Command::RejectSubscription { sub, code, reply })
            .await
    }

    /// Notifier: sends a NOTIFY with this document; `state` changes the subscription's
    /// state (Pending → Active; Terminated ends it).
    pub async fn notify(
        &self,
        sub: SubscriptionId,
        state: Option<SubState>,
        content_type: &str,
        body: Bytes,
    ) -> Result<(), UaError> {
        let body = Some((content_type.to_owned(), body));
        self.call(|reply| Command::Notify {
            sub,
            state,
            body,
            reply,
        })
        .await
    }

    /// Ends a subscription: the notifier sends `terminated;reason=<reason>`, the
    /// subscriber unsubscribes (Expires: 0).
    pub async fn terminate(&self, sub: SubscriptionId, reason: &str) -> Result<(), UaError> {
        let reason = reason.to_owned();
        self.call(|reply| Command::Terminate { sub, reason, reply })
            .await
    }

    /// Opens an IM session to `to` at `target` (INVITE).
    pub async fn open_session(
        &self,
        target: Target,
        from: Address,
        to: Address,
    ) -> Result<SessionId, UaError> {
        self.call(|reply| Command::OpenSession {
            target,
            from,
            to,
            reply,
        })
        .await
    }

    /// Accepts an offered session (200 with the SDP answer).
    pub async fn accept_session(&self, session: SessionId) -> Result<(), UaError> {
        self.call(|reply| Command::AcceptSession { session, reply })
            .await
    }

    /// Rejects an offered session with `code`.
    pub async fn reject_session(&self, session: SessionId, code: u16) -> Result<(), UaError> {
        self.call(|reply| Command::RejectSession {
            session,
            code,
            reply,
        })
        .await
    }

    /// Sends `text` as `text/plain; charset=UTF-8` in a session (queued until the
    /// session is up, within the UA's `max_queued_messages`).
    pub async fn send_message(&self, session: SessionId, text: &str) -> Result<(), UaError> {
        self.send_body(
            session,
            "text/plain; charset=UTF-8",
            Bytes::copy_from_slice(text.as_bytes()),
        )
        .await
    }

    /// Sends a body of any content type in a session.
    pub async fn send_body(
        &self,
        session: SessionId,
        content_type: &str,
        body: Bytes,
    ) -> Result<(), UaError> {
        let content_type = content_type.to_owned();
        self.call(|reply| Command::SendMessage {
            session,
            content_type,
            body,
            reply,
        })
        .await
    }

    /// Closes a session (BYE, CANCEL or 480 depending on its state).
    pub async fn close_session(&self, session: SessionId) -> Result<(), UaError> {
        self.call(|reply| Command::CloseSession { session, reply })
            .await
    }

    /// Answers a MESSAGE reported as [`SipUaEvent::MessageToAnswer`] with a final
    /// `status` (200–699). Never waits and never fails for a full queue (the commands
    /// wait for room; this is called from the event consumer, which must not wait on
    /// the driver): an answer that is lost would keep its
    /// server transaction until the core's 504 at `message_answer_timeout`, and
    /// under load those pile up to `max_transactions` (every new request then gets
    /// 503). The driver takes answers before commands and inbound messages, in
    /// batches. Fails only when the driver has stopped; an answer the core refuses
    /// (already answered, also by the core at its bound, or its transaction is gone)
    /// is logged by the driver.
    pub fn answer_message(&self, message: MessageHandle, status: u16) -> Result<(), UaError> {
        self.answers
            .send((message, status))
            .map_err(|_| UaError::Stopped)
    }

    /// Takes the first message (`ms-text-format`: Content-Type, body) of an offered
    /// session before it is answered, so that a delivery failure can refuse the
    /// INVITE ([`SipUa::reject_session`]); accepting then delivers nothing more (see
    /// [`UserAgent::take_first_message`]). `None`: no first message, or taken.
    pub async fn take_first_message(
        &self,
        session: SessionId,
    ) -> Result<Option<(Bytes, Bytes)>, UaError> {
        self.call(|reply| Command::TakeFirstMessage { session, reply })
            .await
    }

    /// Notifier: the record that lets a later process take this subscription up
    /// again ([`UserAgent::export_notifier`]); `None` if it is not an answered
    /// notifier subscription.
    pub async fn export_notifier(
        &self,
        sub: SubscriptionId,
    ) -> Result<Option<NotifierRecord>, UaError> {
        self.call(|reply| Command::ExportNotifier { sub, reply })
            .await
    }

    /// Notifier: sends this subscription's NOTIFYs to `target` from now on (after
    /// [`SipUaEvent::SubscriptionFlowLost`]); one held back meanwhile goes at once.
    pub async fn rebind_subscription(
        &self,
        sub: SubscriptionId,
        target: Target,
    ) -> Result<(), UaError> {
        self.call(|reply| Command::RebindSubscription { sub, target, reply })
            .await
    }

    /// Notifier: takes up a subscription of an earlier process
    /// ([`UserAgent::restore_notifier`]) with `left` of its time to run; its NOTIFYs go
    /// to `target` (the subscriber's domain: the connection the SUBSCRIBE came on is
    /// gone). A later in-dialog request from the subscriber on another connection
    /// does not move it.
    pub async fn restore_notifier(
        &self,
        target: Target,
        record: NotifierRecord,
        left: Duration,
    ) -> Result<SubscriptionId, UaError> {
        self.call(|reply| Command::RestoreNotifier {
            target,
            record: Box::new(record),
            left,
            reply,
        })
        .await
    }

    /// Sends a typing indication (RFC 3994 `application/im-iscomposing+xml`, state
    /// `active` or `idle`) in a session; queued like a message before it is up.
    pub async fn send_typing(&self, session: SessionId, active: bool) -> Result<(), UaError> {
        self.call(|reply| Command::SendTyping {
            session,
            active,
            reply,
        })
        .await
    }
}

// ---- the flow table -----------------------------------------------------------------

#[derive(Debug, Clone)]
enum Path {
    /// An inbound connection or a UDP peer: answer the way it came.
    Back(Source),
    /// Our own requests to a target.
    To(Target),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum PathKey {
    Conn(ConnectionId),
    Udp(SocketAddr, SocketAddr),
    Target(Target),
}

#[derive(Debug)]
struct Flows {
    cap: usize,
    next_id: u64,
    clock: u64,
    by_key: HashMap<PathKey, u64>,
    paths: HashMap<u64, (PathKey, Path, u64)>,
}

fn txn_kind(k: TransportKind) -> fedgate_sip_txn::TransportKind {
    match k {
        TransportKind::Udp => fedgate_sip_txn::TransportKind::Udp,
        TransportKind::Tcp => fedgate_sip_txn::TransportKind::Tcp,
        TransportKind::Tls => fedgate_sip_txn::TransportKind::Tls,
    }
}

impl Flows {
    fn new(cap: usize) -> Self {
        Flows {
            cap,
            next_id: 1,
            clock: 0,
            by_key: HashMap::new(),
            paths: HashMap::new(),
        }
    }

    fn flow_for(&mut self, key: PathKey, path: Path, kind: TransportKind) -> Flow {
        self.clock += 1;
        if let Some(&id) = self.by_key.get(&key) {
            if let Some(e) = self.paths.get_mut(&id) {
                e.2 = self.clock;
            }
            return Flow::new(id, txn_kind(kind));
        }
        if self.paths.len() >= self.cap {
            // Forget the least recently used path (O(cap); the cap is small).
            if let Some(old) = self.paths.iter().min_by_key(|(_, e)| e.2).map(|(k, _)| *k) {
                self.forget(old);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.by_key.insert(key.clone(), id);
        self.paths.insert(id, (key, path, self.clock));
        Flow::new(id, txn_kind(kind))
    }

    fn source(&mut self, s: &Source) -> Flow {
        let key = match s.connection {
            Some(c) => PathKey::Conn(c),
            None => PathKey::Udp(s.local, s.peer),
        };
        self.flow_for(key, Path::Back(*s), s.transport)
    }

    fn target(&mut self, t: &Target) -> Flow {
        self.flow_for(PathKey::Target(t.clone()), Path::To(t.clone()), t.kind)
    }

    /// The flow of an inbound path on stream connection `c`, if the table has one
    /// (never adds one).
    fn connection(&self, c: ConnectionId) -> Option<Flow> {
        let id = *self.by_key.get(&PathKey::Conn(c))?;
        match self.path(id)? {
            Path::Back(s) => Some(Flow::new(id, txn_kind(s.transport))),
            Path::To(_) => None,
        }
    }

    /// The flow of our requests to `t`, if the table has one (never adds one).
    fn known_target(&self, t: &Target) -> Option<Flow> {
        let id = *self.by_key.get(&PathKey::Target(t.clone()))?;
        Some(Flow::new(id, txn_kind(t.kind)))
    }

    fn path(&self, id: u64) -> Option<&Path> {
        self.paths.get(&id).map(|e| &e.1)
    }

    fn forget(&mut self, id: u64) {
        if let Some((key, _, _)) = self.paths.remove(&id) {
            self.by_key.remove(&key);
        }
    }
}

// ---- the driver -----------------------------------------------------------------------

#[derive(Debug)]
struct Driver {
    ua: UserAgent,
    transport: SipTransport,
    inbound: mpsc::Receiver<Inbound>,
    /// The transport's reports of accepted messages it could not deliver (`None` once
    /// the transport dropped its sender).
    failures: Option<mpsc::Receiver<SendFailure>>,
    /// The transport's reports of ended connections (`None` once the transport
    /// dropped its sender).
    closed: Option<mpsc::Receiver<ConnectionId>>,
    cmds: mpsc::Receiver<Command>,
    /// [`SipUa::answer_message`].
    answers: mpsc::UnboundedReceiver<(MessageHandle, u16)>,
    events: mpsc::Sender<SipUaEvent>,
    /// Translated events waiting for room in `events` (at most `max_waiting` plus what
    /// one input or timer produces).
    waiting: VecDeque<SipUaEvent>,
    max_waiting: usize,
    flows: Flows,
    /// The TLS identity of the inbound message being handled.
    current_peer: Option<Arc<PeerIdentity>>,
    /// Subscriber side: subscriptions that have seen an active NOTIFY.
    active_subs: HashSet<SubscriptionId>,
    tag_seed: u64,
    tag_n: u64,
}

/// Answers taken per wake-up of the driver ([`SipUa::answer_message`]).
const ANSWER_BATCH: usize = 256;

enum Step<'a> {
    Room(Option<mpsc::Permit<'a, SipUaEvent>>),
    Timeout,
    Command(Option<Command>),
    Answer(Option<(MessageHandle, u16)>),
    Inbound(Option<Inbound>),
    Failure(Option<SendFailure>),
    Closed(Option<ConnectionId>),
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Driver {
    async fn run(mut self) {
        let events = self.events.clone();
        loop {
            let deadline = self.ua.poll_timeout().map(tokio::time::Instant::from_std);
            let room = self.waiting.len() < self.max_waiting;
            let has_waiting = !self.waiting.is_empty();
            let step = tokio::select! {
                biased;
                permit = events.reserve(), if has_waiting => Step::Room(permit.ok()),
                () = sleep_until_opt(deadline) => Step::Timeout,
                a = self.answers.recv(), if room => Step::Answer(a),
                cmd = self.cmds.recv(), if room => Step::Command(cmd),
                inb = self.inbound.recv(), if room => Step::Inbound(inb),
                f = recv_opt(&mut self.failures), if room => Step::Failure(f),
                c = recv_opt(&mut self.closed), if room => Step::Closed(c),
            };
            match step {
                Step::Room(Some(p)) => {
                    if let Some(ev) = self.waiting.pop_front() {
                        p.send(ev);
                    }
                }
                // Nobody listens: events are dropped, the UA goes on.
                Step::Room(None) => self.waiting.clear(),
                Step::Timeout => {
                    self.ua.handle_timeout(now());
                    self.drain();
                }
                Step::Command(Some(c)) => {
                    self.command(c);
                    self.drain();
                }
                Step::Answer(Some(a)) => {
                    self.answer(a);
                    // Those queued meanwhile too (an answer produces no event).
                    for _ in 1..ANSWER_BATCH {
                        match self.answers.try_recv() {
                            Ok(a) => self.answer(a),
                            Err(_) => break,
                        }
                    }
                    self.drain();
                }
                Step::Inbound(Some(i)) => {
                    let flow = self.flows.source(&i.source);
                    self.current_peer = i.tls_peer;
                    self.ua.handle_message(now(), flow, i.message);
                    self.drain();
                    self.current_peer = None;
                }
                Step::Failure(Some(f)) => match self.flows.known_target(&f.target) {
                    Some(flow) => {
                        tracing::debug!(target = %f.target, kind = ?f.kind, dropped = f.dropped,
                                flow = flow.id, "SIP target failed; transactions on it fail (503)");
                        self.ua.handle_transport_error(now(), flow);
                        self.drain();
                    }
                    None => {
                        tracing::debug!(target = %f.target, "SIP send failure for a forgotten flow")
                    }
                },
                Step::Failure(None) => self.failures = None,
                Step::Closed(Some(c)) => {
                    if let Some(flow) = self.flows.connection(c) {
                        tracing::debug!(conn = %c, flow = flow.id, "SIP connection of a flow ended");
                        self.flow_closed(flow);
                        self.drain();
                    }
                }
                Step::Closed(None) => self.closed = None,
                Step::Command(None) | Step::Answer(None) | Step::Inbound(None) => break,
            }
        }
        tracing::debug!("SIP user agent stopped");
    }

    fn command(&mut self, c: Command) {
        let n = now();
        match c {
            Command::Subscribe {
                target,
                from,
                to,
                opts,
                reply,
            } => {
                let flow = self.flows.target(&target);
                let accept: Vec<&str> = opts.accept.iter().map(String::as_str).collect();
                let params = SubscribeParams {
                    from: &from,
                    to: &to,
                    event: &opts.event,
                    accept: &accept,
                    expires: opts.expires,
                };
                let _ = reply.send(self.ua.subscribe(n, flow, &params));
            }
            Command::AcceptSubscription {
                sub,
                state,
                body,
                reply,
            } => {
                let b = body.as_ref().map(|(ct, b)| (ct.as_str(), b.clone()));
                let _ = reply.send(self.ua.accept_subscription(n, sub, state, b));
            }
            Command::RejectSubscription { sub, code, reply } => {
                let _ = reply.send(self.ua.reject_subscription(n, sub, code));
            }
            Command::Notify {
                sub,
                state,
                body,
                reply,
            } => {
                let b = body.as_ref().map(|(ct, b)| (ct.as_str(), b.clone()));
                let _ = reply.send(self.ua.notify(n, sub, state, b));
            }
            Command::Terminate { sub, reason, reply } => {
                let _ = reply.send(self.ua.terminate_subscription(n, sub, &reason));
            }
            Command::OpenSession {
                target,
                from,
                to,
                reply,
            } => {
                let flow = self.flows.target(&target);
                let _ = reply.send(self.ua.open_session(n, flow, &from, &to));
            }
            Command::AcceptSession { session, reply } => {
                let _ = reply.send(self.ua.accept_session(n, session));
            }
            Command::RejectSession {
                session,
                code,
                reply,
            } => {
                let _ = reply.send(self.ua.reject_session(n, session, code));
            }
            Command::SendMessage {
                session,
                content_type,
                body,
                reply,
            } => {
                let _ = reply.send(self.ua.send_message(n, session, &content_type, body));
            }
            Command::CloseSession { session, reply } => {
                let _ = reply.send(self.ua.close_session(n, session));
            }
            Command::TakeFirstMessage { session, reply } => {
                let _ = reply.send(Ok(self.ua.take_first_message(session)));
            }
            Command::SendTyping {
                session,
                active,
                reply,
            } => {
                let _ = reply.send(self.ua.send_typing(n, session, active));
            }
            Command::ExportNotifier { sub, reply } => {
                let _ = reply.send(Ok(self.ua.export_notifier(n, sub)));
            }
            Command::RebindSubscription { sub, target, reply } => {
                let flow = self.flows.target(&target);
                let _ = reply.send(self.ua.rebind_subscription(n, sub, flow));
            }
            Command::RestoreNotifier {
                target,
                record,
                left,
                reply,
            } => {
                let flow = self.flows.target(&target);
                let _ = reply.send(self.ua.restore_notifier(n, flow, *record, left));
            }
        }
    }

    /// [`SipUa::answer_message`].
    fn answer(&mut self, (message, status): (MessageHandle, u16)) {
        if let Err(e) = self.ua.respond_message(now(), message, status) {
            tracing::debug!(error = %e, status, "SIP MESSAGE not answered");
        }
    }

    /// The connection of `flow` is gone: the core ends the sessions on it
    /// ([`CloseReason::FlowClosed`]); the flow is forgotten (its id is never reused).
    fn flow_closed(&mut self, flow: Flow) {
        self.ua.handle_flow_closed(now(), flow);
        self.flows.forget(flow.id);
    }

    /// Steps 2 and 3 of the run-loop contract, repeated while a transmit fails (a
    /// transport error is an input too). Each flow is reported at most once per drain.
    fn drain(&mut self) {
        let mut reported: HashSet<Flow> = HashSet::new();
        loop {
            while let Some(ev) = self.ua.poll_event() {
                self.translate(ev);
            }
            let mut failed: Vec<(Flow, Failed)> = Vec::new();
            while let Some(t) = self.ua.poll_transmit() {
                if let Some((flow, why)) = self.transmit(t)
                    && !reported.contains(&flow)
                    && !failed.iter().any(|(f, _)| *f == flow)
                {
                    failed.push((flow, why));
                }
            }
            if failed.is_empty() {
                return;
            }
            for (flow, why) in failed {
                reported.insert(flow);
                match why {
                    Failed::Closed => self.flow_closed(flow),
                    Failed::Error => self.ua.handle_transport_error(now(), flow),
                }
            }
        }
    }

    fn push(&mut self, ev: SipUaEvent) {
        self.waiting.push_back(ev);
    }

    fn translate(&mut self, ev: UaEvent) {
        match ev {
            UaEvent::SubscriptionRequested {
                subscription,
                from,
                to,
                event,
                expires,
                request,
            } => {
                let tls_peer = self.current_peer.clone();
                let accept = accept_types(&request);
                self.push(SipUaEvent::SubscriptionRequested {
                    subscription,
                    from,
                    to,
                    event,
                    expires,
                    tls_peer,
                    accept,
                });
            }
            UaEvent::SubscriptionRefreshed {
                subscription,
                expires,
            } => self.push(SipUaEvent::SubscriptionRefreshed {
                subscription,
                expires,
            }),
            UaEvent::Notified {
                subscription,
                state,
                content_type,
                body,
            } => {
                if state == SubState::Active && self.active_subs.insert(subscription) {
                    self.push(SipUaEvent::SubscriptionActive { subscription });
                }
                self.push(SipUaEvent::Notified {
                    subscription,
                    state,
                    content_type,
                    body,
                });
            }
            UaEvent::SubscriptionFlowLost { subscription } => {
                self.push(SipUaEvent::SubscriptionFlowLost { subscription });
            }
            UaEvent::SubscriptionTerminated {
                subscription,
                reason,
            } => {
                self.active_subs.remove(&subscription);
                self.push(SipUaEvent::SubscriptionTerminated {
                    subscription,
                    reason,
                });
            }
            UaEvent::SessionOffered {
                session,
                remote,
                local,
                has_first_message,
            } => {
                let tls_peer = self.current_peer.clone();
                self.push(SipUaEvent::SessionOffered {
                    session,
                    remote,
                    local,
                    has_first_message,
                    tls_peer,
                });
            }
            UaEvent::SessionOpened { session } => self.push(SipUaEvent::SessionOpened { session }),
            UaEvent::MessageReceived {
                session,
                content_type,
                body,
            } => self.push(SipUaEvent::MessageReceived {
                session,
                content_type,
                body,
            }),
            UaEvent::MessageToAnswer {
                message,
                content_type,
                body,
            } => self.push(SipUaEvent::MessageToAnswer {
                message,
                content_type,
                body,
            }),
            UaEvent::Typing { session, active } => {
                self.push(SipUaEvent::Typing { session, active })
            }
            UaEvent::MessageDelivered { session, cseq } => {
                self.push(SipUaEvent::MessageDelivered { session, cseq })
            }
            UaEvent::MessageFailed { session, status } => {
                self.push(SipUaEvent::MessageFailed { session, status })
            }
            UaEvent::SessionClosed { session, reason } => {
                self.push(SipUaEvent::SessionClosed { session, reason })
            }
            UaEvent::Request { txn, request, .. } => {
                let tag = self.new_tag();
                let resp = fedgate_sip_txn::util::response_to(&request, 501, Some(&tag));
                if let Err(e) = self.ua.respond(now(), txn, resp) {
                    tracing::debug!(error = %e, "could not answer an unhandled request");
                }
                if let Some(method) = request.method().cloned() {
                    self.push(SipUaEvent::Unhandled {
                        method,
                        from: request.from().ok(),
                    });
                }
            }
            other => tracing::debug!(event = ?other, "SIP UA event not translated"),
        }
    }

    fn new_tag(&mut self) -> Bytes {
        self.tag_n += 1;
        Bytes::from(format!("d{:x}{:x}", self.tag_seed, self.tag_n))
    }

    /// Sends one transmit as it is (the core's bytes are complete); returns its flow
    /// and why if it could not be sent.
    fn transmit(&mut self, t: Transmit) -> Option<(Flow, Failed)> {
        let Some(path) = self.flows.path(t.flow.id) else {
            tracing::debug!(flow = t.flow.id, "transmit for a forgotten flow");
            return Some((t.flow, Failed::Error));
        };
        let r = match path {
            Path::Back(source) => self.transport.reply_bytes(source, t.payload),
            Path::To(target) => self.transport.send_bytes(target, t.payload),
        };
        match r {
            Ok(()) => None,
            Err(e) => {
                tracing::debug!(error = %e, flow = t.flow.id, "SIP send failed");
                // The connection of an inbound path is gone for good; a target's
                // connections come and go (the next send opens a new one).
                let gone = matches!(e, SendError::ConnectionClosed(_))
                    && matches!(path, Path::Back(s) if s.connection.is_some());
                Some((t.flow, if gone { Failed::Closed } else { Failed::Error }))
            }
        }
    }
}

/// Why a transmit could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failed {
    /// The connection of the flow is gone: `handle_flow_closed`.
    Closed,
    /// Anything else: `handle_transport_error`.
    Error,
}

/// The media types of a request's Accept headers (RFC 3261 §20.1), lowercased, without
/// parameters; at most 32 (the rest is ignored).
pub(crate) fn accept_types(m: &Message) -> Vec<String> {
    m.headers
        .get_all(HeaderKind::Accept)
        .flat_map(|h| {
            String::from_utf8_lossy(h.value())
                .split(',')
                .map(|t| {
                    t.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                })
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
        })
        .take(32)
        .collect()
}

async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(port: u16) -> Target {
        Target::tcp(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn flow_table_is_bounded_and_forgets_the_least_recently_used() {
        let mut f = Flows::new(2);
        let a = f.target(&target(1));
        let b = f.target(&target(2));
        assert_ne!(a, b);
        // Same path, same flow; this also makes `a` the most recently used.
        assert_eq!(f.target(&target(1)), a);
        let c = f.target(&target(3));
        assert_eq!(f.paths.len(), 2);
        assert!(f.path(b.id).is_none(), "b was the least recently used");
        assert!(f.path(a.id).is_some() && f.path(c.id).is_some());
        // A forgotten path comes back under a new id.
        let b2 = f.target(&target(2));
        assert_ne!(b2, b);
        assert_eq!(f.by_key.len(), f.paths.len());
    }

    #[test]
    fn sources_map_by_connection_or_udp_peer() {
        let mut f = Flows::new(8);
        let udp = Source {
            transport: TransportKind::Udp,
            peer: SocketAddr::from(([127, 0, 0, 1], 5060)),
            local: SocketAddr::from(([127, 0, 0, 1], 5070)),
            connection: None,
        };
        let x = f.source(&udp);
        assert_eq!(x, f.source(&udp));
        assert_eq!(x.transport, fedgate_sip_txn::TransportKind::Udp);
        assert!(matches!(f.path(x.id), Some(Path::Back(s)) if *s == udp));
        let t = f.target(&Target::udp(udp.peer));
        assert_ne!(t, x, "our own requests and replies use different paths");
    }
}
