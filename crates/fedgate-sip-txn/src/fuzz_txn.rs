//! Stateful fuzz harnesses for the four transaction machines of
//! [`transaction`](crate::transaction) (RFC 3261 §17, RFC 6026): one machine is
//! created from a [`Setup`] chosen up front (transport, timer values, request),
//! then fed with an `Arbitrary` sequence of operations (received responses or
//! request retransmissions, ACKs, responses from the TU, time, transport errors),
//! and finally run through every deadline until it ends.
//!
//! A cargo-fuzz target only needs (with the crate's `arbitrary` feature):
//!
//! ```ignore
//! #![no_main]
//! libfuzzer_sys::fuzz_target!(|input: fedgate_sip_txn::fuzz_txn::ClientInput| {
//!     fedgate_sip_txn::fuzz_txn::client_invite(&input);
//! });
//! ```
//!
//! Each run panics, which is what a fuzzer reports, when an invariant breaks.
//! Checked after every step:
//!
//! - **Terminated is final**: once Terminated the machine stays so, transmits
//!   nothing, arms no timer, passes nothing to the TU, and a TU response is refused.
//! - **No state without a timer**: a live machine always has a deadline, never
//!   further away than the longest configured timer. After `handle_timeout(now)`
//!   that deadline is later than `now`.
//! - **Right messages only**: every transmitted buffer parses, has one
//!   Content-Length equal to its body, and belongs to the transaction. A client
//!   INVITE transaction sends only its INVITE (byte-identical copies, on Timer A in
//!   Calling over UDP) and the ACK for a 300–699 (RFC 3261 §17.1.1.3 fields, the same
//!   bytes when repeated); a client non-INVITE transaction only its request (on
//!   Timer E in Trying / Proceeding over UDP); a server transaction only responses
//!   to its request: the TU's, the 100 Trying and guard 408 on their timers, the last
//!   response again for a retransmitted request (Proceeding, Completed) and the
//!   final on Timer G (Completed, UDP). No provisional after a final. A step that
//!   ends the transaction with a failure (Timer B/C/F/H, a transport error)
//!   transmits nothing.
//! - **Bounded transmissions**: the transmissions caused by timers stay within what
//!   RFC 3261 allows with the [`TimerConfig`]: Timer A doubling from T1 until Timer B
//!   at 64·T1 (6 copies after the first, whatever T1), Timer E and G doubling up to
//!   T2 until 64·T1 (10 with the defaults), plus the 100 Trying and the guard 408;
//!   none for the request or final response on a reliable transport. Every input causes at most one transmission (the
//!   machines hold one pending buffer), so nothing grows without input.
//! - **The TU learns one outcome**: a client passes every response to the TU in
//!   Calling / Trying / Proceeding, then at most one final outcome (a final response
//!   or a failure), after which only further 2xx of an INVITE (RFC 6026 Accepted)
//!   reach it. A server refuses a TU response exactly when a final was sent (except
//!   2xx in Accepted) and changes nothing then; an ACK confirms only in Completed.
//! - **Reliable transports skip the wait states**: Timer D, I, J, K are zero, so no
//!   Completed (clients, non-INVITE server) or Confirmed on TCP/TLS.
//!
//! After the operations, time jumps from deadline to deadline (at most three times
//! the longest timer). Every machine must then be Terminated: no state is left to the TU,
//! because a server transaction the TU never answers answers 408 itself on its guard
//! timer (3 min for INVITE, 64·T1 otherwise, [`Timer::Guard`]). The TU must have
//! learnt exactly one outcome (client), or a final response was sent unless the
//! transport failed (server).

use std::time::{Duration, Instant};

use bytes::Bytes;
use fedgate_sip::{HeaderKind, Message, Method, StatusCode};

use crate::error::Error;
use crate::timer::{Timer, TimerConfig};
use crate::transaction::{
    AckOutcome, ClientInvite, ClientInviteState, ClientNonInvite, ClientNonInviteState, Delivery,
    Failure, ServerInvite, ServerInviteState, ServerNonInvite, ServerNonInviteState, ServerNote,
};
use crate::util;

/// How the transaction is set up, chosen once per run.
#[derive(Debug, Clone, Copy, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Setup {
    /// TCP / TLS (no retransmissions, zero wait states) instead of UDP.
    pub reliable: bool,
    /// Timer base values: an index into [`TIMER_CONFIGS`].
    pub timers: u8,
    /// Method of a non-INVITE request (MESSAGE, OPTIONS, SUBSCRIBE, …).
    pub method: u8,
    /// The request carries a To tag (an in-dialog request).
    pub in_dialog: bool,
    /// The request carries a Route header (the ACK for a non-2xx copies it).
    pub route: bool,
    /// CSeq number.
    pub cseq: u32,
}

/// The timer values a [`Setup`] picks from: RFC 3261's defaults, a fast network
/// (T1 = 100 ms), T2 = T1 (the most retransmissions: one every T1 until 64·T1), and
/// slow T1 with short timer C, guard and T4 and a 100 Trying later than the guard.
pub const TIMER_CONFIGS: [TimerConfig; 4] = [
    TimerConfig::DEFAULT,
    TimerConfig {
        t1: Duration::from_millis(100),
        ..TimerConfig::DEFAULT
    },
    TimerConfig {
        t2: Duration::from_millis(500),
        ..TimerConfig::DEFAULT
    },
    TimerConfig {
        t1: Duration::from_secs(2),
        t2: Duration::from_secs(4),
        t4: Duration::from_secs(1),
        timer_c: Duration::from_secs(10),
        timer_d: Duration::ZERO,
        trying: Duration::from_secs(3),
        invite_guard: Duration::from_secs(5),
    },
];

/// Operations every machine takes.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum EnvOp {
    /// Time passes; `handle_timeout(now)` follows unless `late` (a driver that hands
    /// in the next input before firing what fell due meanwhile).
    Advance {
        /// Milliseconds.
        millis: u16,
        /// Skip `handle_timeout`.
        late: bool,
    },
    /// Time jumps to the next deadline (if any), which fires.
    FireNext,
    /// The transport reports that a send failed.
    TransportError,
}

/// One step of a client transaction run.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ClientOp {
    /// A response to the request arrives.
    Response {
        /// Status code: `100 + code % 600`.
        code: u16,
        /// To tag added (if the request's To has none): 0 none, else one of three.
        to_tag: u8,
    },
    /// The last response arrives again (a retransmission by the peer).
    Retransmitted,
    /// A request is handed in as if it were a response (ignored by the machine).
    NotAResponse,
    /// Time or transport.
    Env(EnvOp),
}

/// One step of a server transaction run.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ServerOp {
    /// The request arrives again.
    Retransmission,
    /// An ACK matches the transaction (INVITE only; skipped for non-INVITE, which an
    /// ACK never matches).
    Ack,
    /// The TU sends a response.
    Respond {
        /// Status code: `100 + code % 600`.
        code: u16,
        /// Add a To tag (if the request's To has none).
        to_tag: bool,
    },
    /// Time or transport.
    Env(EnvOp),
}

/// A client transaction run: the setup, then the operations.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ClientInput {
    /// Transport, timers, request.
    pub setup: Setup,
    /// What happens.
    pub ops: Vec<ClientOp>,
}

/// A server transaction run: the setup, then the operations.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ServerInput {
    /// Transport, timers, request.
    pub setup: Setup,
    /// What happens.
    pub ops: Vec<ServerOp>,
}

/// The states of the four machines, mapped onto one set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Client Calling (INVITE) or Trying (non-INVITE); server Trying (non-INVITE).
    Initial,
    /// Proceeding.
    Proceeding,
    /// Completed.
    Completed,
    /// Confirmed (server INVITE).
    Confirmed,
    /// Accepted (INVITE, RFC 6026).
    Accepted,
    /// Terminated.
    Terminated,
}

/// What a run did (for tests and for a look at what a fuzzer reaches).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Every transmission, the first one included.
    pub transmissions: u32,
    /// The transmissions caused by timers.
    pub timer_transmissions: u32,
    /// The phases the machine went through, in order of first visit.
    pub phases: Vec<Phase>,
    /// Client: a failure (timeout, transport error) was reported. Server: the
    /// transport failed.
    pub failed: bool,
    /// Client: the first final response passed to the TU. Server: the first final
    /// response sent.
    pub final_code: Option<u16>,
    /// From creation to Terminated.
    pub lifetime: Duration,
}

/// Runs a client INVITE transaction; panics when an invariant breaks.
pub fn client_invite(input: &ClientInput) -> Report {
    run_client(input, ClientInvite::new)
}

/// Runs a client non-INVITE transaction; panics when an invariant breaks.
pub fn client_non_invite(input: &ClientInput) -> Report {
    run_client(input, ClientNonInvite::new)
}

/// Runs a server INVITE transaction; panics when an invariant breaks.
pub fn server_invite(input: &ServerInput) -> Report {
    run_server(input, ServerInvite::new)
}

/// Runs a server non-INVITE transaction; panics when an invariant breaks.
pub fn server_non_invite(input: &ServerInput) -> Report {
    run_server(input, ServerNonInvite::new)
}

const NON_INVITE: [&str; 8] = [
    "MESSAGE",
    "OPTIONS",
    "SUBSCRIBE",
    "NOTIFY",
    "BYE",
    "INFO",
    "CANCEL",
    "REGISTER",
];

/// The request a [`Setup`] describes.
pub fn request(setup: &Setup, invite: bool) -> Message {
    let m = if invite {
        "INVITE"
    } else {
        NON_INVITE[setup.method as usize % NON_INVITE.len()]
    };
    let transport = if setup.reliable { "TLS" } else { "UDP" };
    let to_tag = if setup.in_dialog { ";tag=b0" } else { "" };
    let route = if setup.route {
        "Route: <sip:edge.fabrikam.com;lr>\r\n"
    } else {
        ""
    };
    let cseq = setup.cseq;
    let text = format!(
        "{m} sip:bob@contoso.com SIP/2.0\r\nVia: SIP/2.0/{transport} gw.fabrikam.com;branch=z9hG4bKfz{cseq}\r\nMax-Forwards: 70\r\n{route}From: <sip:alice@fabrikam.com>;tag=a1\r\nTo: <sip:bob@contoso.com>{to_tag}\r\nCall-ID: fz@fabrikam.com\r\nCSeq: {cseq} {m}\r\nContent-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(text)).expect("the harness's request parses")
}

fn code(selector: u16) -> u16 {
    100 + selector % 600
}

fn timer_config(setup: &Setup) -> TimerConfig {
    TIMER_CONFIGS[setup.timers as usize % TIMER_CONFIGS.len()]
}

/// The longest single timer of `cfg`: no deadline may be further away.
fn longest_timer(cfg: &TimerConfig) -> Duration {
    [
        Timer::B,
        Timer::C,
        Timer::D,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::Guard,
        Timer::Trying,
    ]
    .iter()
    .filter_map(|t| t.duration(cfg, false))
    .chain([cfg.t2, cfg.t1x64()])
    .max()
    .unwrap_or(Duration::ZERO)
}

/// The most firings of a retransmission timer that starts at T1 and doubles (up to
/// `cap`) before a 64·T1 timeout ends its state (Timers A/B, E/F, G/H). A late
/// driver, or the T2 interval of non-INVITE Proceeding, only delays each firing,
/// so the schedule from the start of the state without delays fires the most.
fn retransmissions(cfg: &TimerConfig, cap: Option<Duration>) -> u32 {
    let end = cfg.t1x64();
    let (mut at, mut interval, mut n) = (cfg.t1, cfg.t1, 0);
    while at <= end && n < 100_000 {
        n += 1;
        interval = interval.saturating_mul(2);
        if let Some(c) = cap {
            interval = interval.min(c);
        }
        at = at.saturating_add(interval);
    }
    n
}

fn branch(m: &Message) -> Option<Bytes> {
    m.top_via().ok().and_then(|v| v.branch().cloned())
}

fn header(m: &Message, kind: HeaderKind) -> Option<Bytes> {
    m.headers.get(kind).map(|h| h.value_bytes())
}

fn start_line(m: &Message) -> String {
    let wire = m.to_bytes();
    let line = wire.split(|&c| c == b'\r').next().unwrap_or_default();
    String::from_utf8_lossy(line).into_owned()
}

// ---------------------------------------------------------------------------------
// The machines behind one interface.

trait Machine {
    type Note: std::fmt::Debug;
    fn phase(&self) -> Phase;
    fn poll_transmit(&mut self) -> Option<Bytes>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant) -> Option<Self::Note>;
    fn handle_transport_error(&mut self) -> Option<Self::Note>;
}

macro_rules! machine {
    ($t:ty, $note:ty, $($state:path => $phase:ident),+ $(,)?) => {
        impl Machine for $t {
            type Note = $note;
            fn phase(&self) -> Phase {
                match self.state() {
                    $($state => Phase::$phase),+
                }
            }
            fn poll_transmit(&mut self) -> Option<Bytes> {
                <$t>::poll_transmit(self)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$t>::poll_timeout(self)
            }
            fn handle_timeout(&mut self, now: Instant) -> Option<$note> {
                <$t>::handle_timeout(self, now)
            }
            fn handle_transport_error(&mut self) -> Option<$note> {
                <$t>::handle_transport_error(self)
            }
        }
    };
}

machine!(ClientInvite, Failure,
    ClientInviteState::Calling => Initial,
    ClientInviteState::Proceeding => Proceeding,
    ClientInviteState::Completed => Completed,
    ClientInviteState::Accepted => Accepted,
    ClientInviteState::Terminated => Terminated,
);
machine!(ClientNonInvite, Failure,
    ClientNonInviteState::Trying => Initial,
    ClientNonInviteState::Proceeding => Proceeding,
    ClientNonInviteState::Completed => Completed,
    ClientNonInviteState::Terminated => Terminated,
);
machine!(ServerInvite, ServerNote,
    ServerInviteState::Proceeding => Proceeding,
    ServerInviteState::Completed => Completed,
    ServerInviteState::Confirmed => Confirmed,
    ServerInviteState::Accepted => Accepted,
    ServerInviteState::Terminated => Terminated,
);
machine!(ServerNonInvite, ServerNote,
    ServerNonInviteState::Trying => Initial,
    ServerNonInviteState::Proceeding => Proceeding,
    ServerNonInviteState::Completed => Completed,
    ServerNonInviteState::Terminated => Terminated,
);

trait ClientMachine: Machine<Note = Failure> {
    const INVITE: bool;
    fn handle_response(&mut self, now: Instant, response: &Message) -> Delivery;
}

impl ClientMachine for ClientInvite {
    const INVITE: bool = true;
    fn handle_response(&mut self, now: Instant, response: &Message) -> Delivery {
        ClientInvite::handle_response(self, now, response)
    }
}

impl ClientMachine for ClientNonInvite {
    const INVITE: bool = false;
    fn handle_response(&mut self, now: Instant, response: &Message) -> Delivery {
        ClientNonInvite::handle_response(self, now, response)
    }
}

trait ServerMachine: Machine<Note = ServerNote> {
    const INVITE: bool;
    fn handle_retransmission(&mut self, now: Instant);
    fn send_response(&mut self, now: Instant, code: StatusCode, wire: Bytes) -> Result<(), Error>;
    fn handle_ack(&mut self, now: Instant) -> Option<AckOutcome>;
}

impl ServerMachine for ServerInvite {
    const INVITE: bool = true;
    fn handle_retransmission(&mut self, now: Instant) {
        ServerInvite::handle_retransmission(self, now)
    }
    fn send_response(&mut self, now: Instant, code: StatusCode, wire: Bytes) -> Result<(), Error> {
        ServerInvite::send_response(self, now, code, wire)
    }
    fn handle_ack(&mut self, now: Instant) -> Option<AckOutcome> {
        Some(ServerInvite::handle_ack(self, now))
    }
}

impl ServerMachine for ServerNonInvite {
    const INVITE: bool = false;
    fn handle_retransmission(&mut self, now: Instant) {
        ServerNonInvite::handle_retransmission(self, now)
    }
    fn send_response(&mut self, now: Instant, code: StatusCode, wire: Bytes) -> Result<(), Error> {
        ServerNonInvite::send_response(self, now, code, wire)
    }
    fn handle_ack(&mut self, _now: Instant) -> Option<AckOutcome> {
        None
    }
}

// ---------------------------------------------------------------------------------
// The checks: a model per machine kind, and one driver.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Start,
    Input,
    Timer,
    Transport,
}

/// A machine with what the checks remember about it.
trait Model {
    fn phase(&self) -> Phase;
    fn poll_transmit(&mut self) -> Option<Bytes>;
    fn poll_timeout(&self) -> Option<Instant>;
    /// `handle_timeout`; true when the machine reported a failure that ended it.
    fn fire(&mut self, now: Instant) -> bool;
    /// `handle_transport_error`; true when a failure was reported.
    fn transport_error(&mut self) -> bool;
    /// One message sent in a step caused by `cause`, in phase `before`.
    fn check_sent(&mut self, cause: Cause, before: Phase, raw: &Bytes, msg: &Message);
    /// After the step's transmissions.
    fn end_step(&mut self, before: Phase);
    /// The most transmissions timers may cause over the machine's life.
    fn timer_bound(&self) -> u32;
    /// After the final drain.
    fn check_end(&self);
    /// (failed, first final code) for the [`Report`].
    fn outcome(&self) -> (bool, Option<u16>);
}

#[derive(Debug)]
struct Driver<M> {
    model: M,
    max_timer: Duration,
    start: Instant,
    now: Instant,
    ended: Option<Instant>,
    report: Report,
}

impl<M: Model> Driver<M> {
    fn new(model: M, cfg: &TimerConfig, start: Instant) -> Self {
        let mut d = Driver {
            model,
            max_timer: longest_timer(cfg),
            start,
            now: start,
            ended: None,
            report: Report::default(),
        };
        d.step(Cause::Start, |_, _| false);
        d
    }

    fn step(&mut self, cause: Cause, f: impl FnOnce(&mut M, Instant) -> bool) {
        let now = self.now;
        let before = self.model.phase();
        let failed = f(&mut self.model, now);
        while let Some(raw) = self.model.poll_transmit() {
            assert!(
                self.ended.is_none(),
                "a terminated transaction transmitted on {cause:?}: {:?}",
                String::from_utf8_lossy(&raw)
            );
            assert!(
                !failed,
                "transmitted in the step that failed the transaction ({cause:?} in {before:?}): {:?}",
                String::from_utf8_lossy(&raw)
            );
            let msg = Message::parse(raw.clone()).unwrap_or_else(|e| {
                panic!(
                    "a transmitted message does not parse ({e:?}): {:?}",
                    String::from_utf8_lossy(&raw)
                )
            });
            // RFC 3261 §18.3 / §20.14: one Content-Length, equal to the body.
            assert_eq!(
                msg.headers.count(HeaderKind::ContentLength),
                1,
                "one Content-Length"
            );
            assert_eq!(
                msg.content_length().map(|c| c.0).ok(),
                Some(msg.body.len() as u64),
                "Content-Length equals the body"
            );
            self.model.check_sent(cause, before, &raw, &msg);
            self.report.transmissions += 1;
            if cause == Cause::Timer {
                self.report.timer_transmissions += 1;
            }
        }
        self.model.end_step(before);
        let phase = self.model.phase();
        if self.ended.is_some() || failed || cause == Cause::Transport {
            assert_eq!(
                phase,
                Phase::Terminated,
                "{cause:?} in {before:?}: must be (or stay) Terminated"
            );
        }
        match self.model.poll_timeout() {
            Some(t) => {
                assert_ne!(phase, Phase::Terminated, "a timer armed in Terminated");
                assert!(
                    t <= now + self.max_timer,
                    "a deadline {:?} away, beyond the longest timer ({:?})",
                    t - now,
                    self.max_timer
                );
                if cause == Cause::Timer {
                    assert!(
                        t > now,
                        "handle_timeout(now) left a deadline at or before now ({phase:?})"
                    );
                }
            }
            None => assert_eq!(
                phase,
                Phase::Terminated,
                "a live transaction without a timer would live forever"
            ),
        }
        if phase == Phase::Terminated && self.ended.is_none() {
            self.ended = Some(now);
        }
        if !self.report.phases.contains(&phase) {
            self.report.phases.push(phase);
        }
        let bound = self.model.timer_bound();
        assert!(
            self.report.timer_transmissions <= bound,
            "{} transmissions on timers, RFC 3261 allows {bound} with these timers",
            self.report.timer_transmissions
        );
    }

    fn env(&mut self, op: EnvOp) {
        match op {
            EnvOp::Advance { millis, late } => {
                self.now += Duration::from_millis(u64::from(millis));
                if !late {
                    self.step(Cause::Timer, |m, now| m.fire(now));
                }
            }
            EnvOp::FireNext => {
                if let Some(t) = self.model.poll_timeout() {
                    self.now = self.now.max(t);
                }
                self.step(Cause::Timer, |m, now| m.fire(now));
            }
            EnvOp::TransportError => self.step(Cause::Transport, |m, _| m.transport_error()),
        }
    }

    /// Fires every deadline until none is left; the machine must be Terminated then.
    fn finish(mut self) -> Report {
        let horizon = self.now + self.max_timer * 3;
        for _ in 0..100_000 {
            let Some(t) = self.model.poll_timeout() else {
                break;
            };
            assert!(t <= horizon, "a deadline beyond every timer chain");
            self.now = self.now.max(t);
            self.step(Cause::Timer, |m, now| m.fire(now));
        }
        assert_eq!(
            self.model.phase(),
            Phase::Terminated,
            "not Terminated after every deadline fired"
        );
        self.model.check_end();
        let (failed, final_code) = self.model.outcome();
        self.report.failed = failed;
        self.report.final_code = final_code;
        self.report.lifetime = self.ended.unwrap_or(self.now) - self.start;
        self.report
    }
}

// --- clients ---------------------------------------------------------------------

#[derive(Debug)]
struct ClientModel<T> {
    m: T,
    request: Message,
    wire: Bytes,
    reliable: bool,
    cfg: TimerConfig,
    /// The last response handed in.
    last: Option<Message>,
    /// This step handed in a 300–699 (an ACK may go out).
    acking: bool,
    /// The first ACK sent.
    ack: Option<Bytes>,
    /// This step passed a final response to the TU.
    delivered_final: bool,
    first_final: Option<u16>,
    failed: bool,
}

const TAGS: [&[u8]; 3] = [b"t1", b"t2", b"t3"];

impl<T: ClientMachine> ClientModel<T> {
    fn response(&mut self, now: Instant, r: Message) {
        let before = self.m.phase();
        let d = self.m.handle_response(now, &r);
        let Some(c) = r.status().map(|s| s.as_u16()) else {
            assert_eq!(
                d,
                Delivery::Absorbed,
                "a request reached the TU as a response"
            );
            return;
        };
        if matches!(before, Phase::Initial | Phase::Proceeding) {
            assert_eq!(d, Delivery::ToTu, "{c} in {before:?} must reach the TU");
        }
        if d == Delivery::ToTu {
            assert!(!self.failed, "{c} reached the TU after a failure");
            match self.first_final {
                Some(f) => assert!(
                    T::INVITE && (200..300).contains(&f) && (200..300).contains(&c),
                    "{c} reached the TU after the final {f} (only further 2xx may, RFC 6026)"
                ),
                None if c >= 200 => {
                    self.first_final = Some(c);
                    self.delivered_final = true;
                }
                None => {}
            }
        }
        self.acking = T::INVITE && c >= 300;
        self.last = Some(r);
    }

    fn failure(&mut self, before: Phase, f: Option<Failure>) -> bool {
        let Some(f) = f else { return false };
        assert!(
            self.first_final.is_none() && !self.failed,
            "{f:?} reported in {before:?} after an outcome (final {:?})",
            self.first_final
        );
        self.failed = true;
        true
    }

    fn check_ack(&mut self, cause: Cause, before: Phase, raw: &Bytes, msg: &Message) {
        assert!(
            T::INVITE && cause == Cause::Input && self.acking,
            "ACK sent on {cause:?} in {before:?} without a 300-699 response"
        );
        if let Some(first) = &self.ack {
            assert_eq!(raw, first, "a repeated ACK differs from the first");
            return;
        }
        // RFC 3261 §17.1.1.3.
        let (req, resp) = (&self.request, self.last.as_ref().expect("a response"));
        assert_eq!(
            msg.request_line().map(|r| &r.uri),
            req.request_line().map(|r| &r.uri),
            "ACK Request-URI"
        );
        let cseq = msg.cseq().expect("ACK CSeq");
        assert_eq!(cseq.method, Method::Ack, "ACK CSeq method");
        assert_eq!(Some(cseq.seq), req.cseq().ok().map(|c| c.seq), "ACK CSeq");
        assert_eq!(branch(msg), branch(req), "ACK branch");
        assert_eq!(msg.headers.count(HeaderKind::Via), 1, "ACK: one Via");
        for (k, from) in [
            (HeaderKind::CallId, req),
            (HeaderKind::From, req),
            (HeaderKind::To, resp),
        ] {
            assert_eq!(header(msg, k), header(from, k), "ACK {k:?}");
        }
        assert_eq!(
            msg.headers.count(HeaderKind::Route),
            req.headers.count(HeaderKind::Route),
            "ACK Route"
        );
        self.ack = Some(raw.clone());
    }
}

impl<T: ClientMachine> Model for ClientModel<T> {
    fn phase(&self) -> Phase {
        self.m.phase()
    }
    fn poll_transmit(&mut self) -> Option<Bytes> {
        self.m.poll_transmit()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.m.poll_timeout()
    }
    fn fire(&mut self, now: Instant) -> bool {
        let before = self.m.phase();
        let f = self.m.handle_timeout(now);
        self.failure(before, f)
    }
    fn transport_error(&mut self) -> bool {
        let before = self.m.phase();
        let f = self.m.handle_transport_error();
        if matches!(before, Phase::Initial | Phase::Proceeding) {
            assert_eq!(
                f,
                Some(Failure::TransportError),
                "RFC 3261 §17.1.4: inform the TU"
            );
        } else {
            assert_eq!(f, None, "a transport error in {before:?} reported");
        }
        self.failure(before, f)
    }

    fn check_sent(&mut self, cause: Cause, before: Phase, raw: &Bytes, msg: &Message) {
        match msg.method() {
            Some(Method::Ack) => self.check_ack(cause, before, raw, msg),
            Some(_) => {
                assert_eq!(raw, &self.wire, "a request other than the transaction's");
                let retransmits = !self.reliable
                    && (before == Phase::Initial || (!T::INVITE && before == Phase::Proceeding));
                assert!(
                    cause == Cause::Start || (cause == Cause::Timer && retransmits),
                    "request sent on {cause:?} in {before:?} (reliable: {})",
                    self.reliable
                );
            }
            None => panic!("a client transaction sent {}", start_line(msg)),
        }
    }

    fn end_step(&mut self, before: Phase) {
        let phase = self.m.phase();
        if self.delivered_final {
            assert!(
                !matches!(phase, Phase::Initial | Phase::Proceeding),
                "a final response left the machine in {phase:?} (was {before:?})"
            );
        }
        if self.reliable {
            assert_ne!(phase, Phase::Completed, "Timer D / K are zero on TCP/TLS");
        }
        self.acking = false;
        self.delivered_final = false;
    }

    fn timer_bound(&self) -> u32 {
        match (self.reliable, T::INVITE) {
            (true, _) => 0,
            (false, true) => retransmissions(&self.cfg, None),
            (false, false) => retransmissions(&self.cfg, Some(self.cfg.t2)),
        }
    }

    fn check_end(&self) {
        assert!(
            self.failed != self.first_final.is_some(),
            "the TU must learn exactly one outcome (failed {}, final {:?})",
            self.failed,
            self.first_final
        );
    }

    fn outcome(&self) -> (bool, Option<u16>) {
        (self.failed, self.first_final)
    }
}

impl<T: ClientMachine> Driver<ClientModel<T>> {
    fn client_op(&mut self, op: ClientOp) {
        let r = match op {
            ClientOp::Response { code: c, to_tag } => {
                let tag = (to_tag != 0)
                    .then(|| Bytes::from_static(TAGS[usize::from(to_tag) % TAGS.len()]));
                util::response_to(&self.model.request, code(c), tag.as_ref())
            }
            ClientOp::Retransmitted => match &self.model.last {
                Some(r) => r.clone(),
                None => return,
            },
            ClientOp::NotAResponse => self.model.request.clone(),
            ClientOp::Env(e) => return self.env(e),
        };
        self.step(Cause::Input, |m, now| {
            m.response(now, r);
            false
        });
    }
}

fn run_client<T: ClientMachine>(
    input: &ClientInput,
    new: fn(Instant, Message, Bytes, bool, TimerConfig) -> T,
) -> Report {
    let setup = &input.setup;
    let cfg = timer_config(setup);
    let request = request(setup, T::INVITE);
    let wire = request.to_bytes();
    let start = Instant::now();
    let model = ClientModel {
        m: new(start, request.clone(), wire.clone(), setup.reliable, cfg),
        request,
        wire,
        reliable: setup.reliable,
        cfg,
        last: None,
        acking: false,
        ack: None,
        delivered_final: false,
        first_final: None,
        failed: false,
    };
    let mut d = Driver::new(model, &cfg, start);
    assert_eq!(d.report.transmissions, 1, "the request is sent at once");
    for op in &input.ops {
        d.client_op(*op);
    }
    d.finish()
}

// --- servers ---------------------------------------------------------------------

#[derive(Debug)]
struct ServerModel<T> {
    m: T,
    request: Message,
    reliable: bool,
    cfg: TimerConfig,
    /// What a retransmitted request gets: the last provisional, or the first final.
    kept: Option<Bytes>,
    final_code: Option<u16>,
    /// This step is a retransmitted request.
    retransmission: bool,
    /// This step must transmit exactly this (a TU response accepted, the guard's 408).
    expect: Option<Bytes>,
    /// This step's TU response was refused.
    refused: bool,
    transport_failed: bool,
}

impl<T: ServerMachine> ServerModel<T> {
    fn respond(&mut self, now: Instant, c: u16, to_tag: bool) {
        let tag = Bytes::from_static(b"s1");
        let wire = util::response_to(&self.request, c, to_tag.then_some(&tag)).to_bytes();
        let before = self.m.phase();
        let r = self.m.send_response(now, util::status(c), wire.clone());
        let allowed = matches!(before, Phase::Initial | Phase::Proceeding)
            || (T::INVITE && before == Phase::Accepted && (200..300).contains(&c));
        assert_eq!(
            r.is_ok(),
            allowed,
            "send_response({c}) in {before:?}: {r:?}"
        );
        self.refused = r.is_err();
        self.expect = r.is_ok().then_some(wire);
    }

    fn ack(&mut self, now: Instant) {
        let before = self.m.phase();
        let Some(o) = self.m.handle_ack(now) else {
            return;
        };
        let want = match before {
            Phase::Completed => AckOutcome::Confirmed,
            Phase::Accepted => AckOutcome::ToTu,
            _ => AckOutcome::Absorbed,
        };
        assert_eq!(o, want, "ACK in {before:?}");
    }
}

impl<T: ServerMachine> Model for ServerModel<T> {
    fn phase(&self) -> Phase {
        self.m.phase()
    }
    fn poll_transmit(&mut self) -> Option<Bytes> {
        self.m.poll_transmit()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.m.poll_timeout()
    }
    fn fire(&mut self, now: Instant) -> bool {
        let before = self.m.phase();
        match self.m.handle_timeout(now) {
            None => false,
            Some(ServerNote::TuTimeout) => {
                assert!(
                    matches!(before, Phase::Initial | Phase::Proceeding),
                    "TU timeout in {before:?}"
                );
                self.expect = Some(util::response_to(&self.request, 408, None).to_bytes());
                false
            }
            Some(ServerNote::AckTimeout) => {
                assert!(
                    T::INVITE && before == Phase::Completed,
                    "ACK timeout in {before:?}"
                );
                true
            }
            Some(n) => panic!("{n:?} from a timer"),
        }
    }
    fn transport_error(&mut self) -> bool {
        let before = self.m.phase();
        let n = self.m.handle_transport_error();
        let live = before != Phase::Terminated;
        assert_eq!(
            n,
            live.then_some(ServerNote::TransportError),
            "transport error in {before:?}"
        );
        self.transport_failed |= live;
        live
    }

    fn check_sent(&mut self, cause: Cause, before: Phase, raw: &Bytes, msg: &Message) {
        let Some(c) = msg.status().map(|s| s.as_u16()) else {
            panic!("a server transaction sent {}", start_line(msg));
        };
        assert_eq!(
            branch(msg),
            branch(&self.request),
            "a response to another request"
        );
        assert_eq!(
            msg.cseq().ok(),
            self.request.cseq().ok(),
            "a response with another CSeq"
        );
        if let Some(f) = self.final_code {
            assert!(c >= 200, "provisional {c} after the final {f}");
        }
        let expected = self.expect.take();
        let ok = match (cause, before) {
            (Cause::Input, _) if expected.is_some() => expected.as_ref() == Some(raw),
            (Cause::Input, Phase::Proceeding | Phase::Completed) if self.retransmission => {
                self.kept.as_ref() == Some(raw)
            }
            (Cause::Timer, Phase::Initial | Phase::Proceeding) if c == 408 => {
                expected.as_ref() == Some(raw)
            }
            (Cause::Timer, Phase::Proceeding) if c == 100 => T::INVITE && self.kept.is_none(),
            (Cause::Timer, Phase::Completed) => {
                T::INVITE && !self.reliable && self.kept.as_ref() == Some(raw)
            }
            _ => false,
        };
        assert!(
            ok,
            "{} sent on {cause:?} in {before:?} (retransmission: {}, expected {:?}, kept {:?})",
            start_line(msg),
            self.retransmission,
            expected.map(|e| String::from_utf8_lossy(&e).into_owned()),
            self.kept
                .as_ref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
        );
        if c < 200 {
            self.kept = Some(raw.clone());
        } else if self.final_code.is_none() {
            self.final_code = Some(c);
            self.kept = Some(raw.clone());
        }
    }

    fn end_step(&mut self, before: Phase) {
        let phase = self.m.phase();
        assert!(
            self.expect.is_none(),
            "a response accepted in {before:?} was not sent"
        );
        if self.refused {
            assert_eq!(phase, before, "a refused TU response changed the state");
        }
        if self.reliable {
            assert_ne!(phase, Phase::Confirmed, "Timer I is zero on TCP/TLS");
            if !T::INVITE {
                assert_ne!(phase, Phase::Completed, "Timer J is zero on TCP/TLS");
            }
        }
        self.retransmission = false;
        self.refused = false;
    }

    fn timer_bound(&self) -> u32 {
        // The 100 Trying and the guard's 408, and Timer G for an INVITE over UDP.
        match (self.reliable, T::INVITE) {
            (_, false) => 1,
            (true, true) => 2,
            (false, true) => 2 + retransmissions(&self.cfg, Some(self.cfg.t2)),
        }
    }

    fn check_end(&self) {
        assert!(
            self.final_code.is_some() || self.transport_failed,
            "ended without a final response"
        );
    }

    fn outcome(&self) -> (bool, Option<u16>) {
        (self.transport_failed, self.final_code)
    }
}

impl<T: ServerMachine> Driver<ServerModel<T>> {
    fn server_op(&mut self, op: ServerOp) {
        match op {
            ServerOp::Retransmission => self.step(Cause::Input, |m, now| {
                m.retransmission = true;
                m.m.handle_retransmission(now);
                false
            }),
            ServerOp::Ack if T::INVITE => self.step(Cause::Input, |m, now| {
                m.ack(now);
                false
            }),
            ServerOp::Ack => {}
            ServerOp::Respond { code: c, to_tag } => self.step(Cause::Input, |m, now| {
                m.respond(now, code(c), to_tag);
                false
            }),
            ServerOp::Env(e) => self.env(e),
        }
    }
}

fn run_server<T: ServerMachine>(
    input: &ServerInput,
    new: fn(Instant, Message, bool, TimerConfig) -> T,
) -> Report {
    let setup = &input.setup;
    let cfg = timer_config(setup);
    let request = request(setup, T::INVITE);
    let start = Instant::now();
    let model = ServerModel {
        m: new(start, request.clone(), setup.reliable, cfg),
        request,
        reliable: setup.reliable,
        cfg,
        kept: None,
        final_code: None,
        retransmission: false,
        expect: None,
        refused: false,
        transport_failed: false,
    };
    let mut d = Driver::new(model, &cfg, start);
    for op in &input.ops {
        d.server_op(*op);
    }
    d.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UDP: Setup = Setup {
        reliable: false,
        timers: 0,
        method: 0,
        in_dialog: false,
        route: true,
        cseq: 7,
    };
    const TLS: Setup = Setup {
        reliable: true,
        ..UDP
    };

    fn client(setup: Setup, ops: &[ClientOp]) -> ClientInput {
        ClientInput {
            setup,
            ops: ops.to_vec(),
        }
    }
    fn server(setup: Setup, ops: &[ServerOp]) -> ServerInput {
        ServerInput {
            setup,
            ops: ops.to_vec(),
        }
    }
    fn resp(code: u16) -> ClientOp {
        ClientOp::Response {
            code: code - 100,
            to_tag: 1,
        }
    }
    fn respond(code: u16) -> ServerOp {
        ServerOp::Respond {
            code: code - 100,
            to_tag: true,
        }
    }
    fn wait(millis: u16) -> EnvOp {
        EnvOp::Advance {
            millis,
            late: false,
        }
    }
    use Phase::*;

    #[test]
    fn rfc_retransmission_bounds() {
        let c = TimerConfig::DEFAULT;
        // Timer A: 500 ms, 1, 2, 4, 8, 16 s before B at 32 s.
        assert_eq!(retransmissions(&c, None), 6);
        // Timer E / G: 0.5, 1.5, 3.5, 7.5, then every 4 s up to 31.5 s.
        assert_eq!(retransmissions(&c, Some(c.t2)), 10);
        // T2 = T1: every 500 ms up to and including 32 s.
        let flat = TIMER_CONFIGS[2];
        assert_eq!(retransmissions(&flat, Some(flat.t2)), 64);
        assert_eq!(longest_timer(&c), Duration::from_secs(180));
    }

    #[test]
    fn client_invite_without_answer_times_out_after_seven_copies() {
        let r = client_invite(&client(UDP, &[]));
        assert_eq!((r.transmissions, r.timer_transmissions), (7, 6));
        assert!(r.failed);
        assert_eq!(r.phases, [Initial, Terminated]);
        assert_eq!(r.lifetime, Duration::from_secs(32));
        let r = client_invite(&client(TLS, &[]));
        assert_eq!((r.transmissions, r.failed), (1, true));
    }

    #[test]
    fn client_invite_non_2xx_is_acked_then_completed_then_terminated() {
        let ops = [
            ClientOp::Env(wait(600)),
            resp(180),
            resp(486),
            ClientOp::Retransmitted,
            ClientOp::Env(EnvOp::FireNext),
            ClientOp::Retransmitted,
        ];
        let r = client_invite(&client(UDP, &ops));
        // INVITE, its copy on Timer A, the ACK and the ACK again.
        assert_eq!((r.transmissions, r.timer_transmissions), (4, 1));
        assert_eq!(r.phases, [Initial, Proceeding, Completed, Terminated]);
        assert_eq!((r.failed, r.final_code), (false, Some(486)));
        assert_eq!(
            r.lifetime,
            Duration::from_millis(600) + Duration::from_secs(32)
        );
        // Over TLS the ACK goes out and the transaction ends at once (Timer D = 0).
        let r = client_invite(&client(TLS, &[resp(503), ClientOp::Retransmitted]));
        assert_eq!(r.transmissions, 2);
        assert_eq!(r.phases, [Initial, Terminated]);
        assert_eq!(r.lifetime, Duration::ZERO);
    }

    #[test]
    fn client_invite_2xx_goes_through_accepted() {
        let ops = [
            resp(200),
            ClientOp::Response {
                code: 100,
                to_tag: 2,
            },
            resp(486),
            ClientOp::NotAResponse,
            ClientOp::Env(EnvOp::TransportError),
            resp(200),
        ];
        let r = client_invite(&client(TLS, &ops));
        assert_eq!(r.phases, [Initial, Accepted, Terminated]);
        assert_eq!((r.transmissions, r.final_code), (1, Some(200)));
    }

    #[test]
    fn client_non_invite_retransmits_up_to_t2_until_timer_f() {
        let r = client_non_invite(&client(UDP, &[]));
        assert_eq!((r.transmissions, r.timer_transmissions), (11, 10));
        assert!(r.failed);
        let ops = [
            ClientOp::Env(wait(1000)),
            resp(100),
            ClientOp::Env(EnvOp::FireNext),
            resp(202),
            ClientOp::Retransmitted,
            resp(500),
        ];
        let r = client_non_invite(&client(UDP, &ops));
        assert_eq!(r.phases, [Initial, Proceeding, Completed, Terminated]);
        assert_eq!((r.final_code, r.transmissions), (Some(202), 3));
        // Timer E fired at 1 s (late) and again at 2 s, with the 202: Timer K is T4 later.
        assert_eq!(r.lifetime, Duration::from_millis(2000 + 5000));
    }

    #[test]
    fn client_transport_error_is_a_failure() {
        let ops = [resp(183), ClientOp::Env(EnvOp::TransportError), resp(200)];
        let r = client_invite(&client(UDP, &ops));
        assert_eq!((r.failed, r.final_code), (true, None));
        assert_eq!(r.phases, [Initial, Proceeding, Terminated]);
        let r = client_non_invite(&client(TLS, &[ClientOp::Env(EnvOp::TransportError)]));
        assert!(r.failed);
    }

    #[test]
    fn server_invite_unanswered_gets_100_then_408_then_ack_timeout() {
        let r = server_invite(&server(UDP, &[]));
        // 100 Trying, the guard's 408 at 3 min, Timer G ten times until Timer H.
        assert_eq!((r.transmissions, r.timer_transmissions), (12, 12));
        assert_eq!(r.final_code, Some(408));
        assert_eq!(r.phases, [Proceeding, Completed, Terminated]);
        assert_eq!(r.lifetime, Duration::from_secs(180 + 32));
    }

    #[test]
    fn server_invite_non_2xx_completed_confirmed_terminated() {
        let ops = [
            ServerOp::Retransmission,
            respond(180),
            ServerOp::Retransmission,
            respond(486),
            ServerOp::Env(wait(500)),
            ServerOp::Retransmission,
            respond(200),
            ServerOp::Ack,
            ServerOp::Retransmission,
            ServerOp::Ack,
        ];
        let r = server_invite(&server(UDP, &ops));
        // 180, 180 again, 486, 486 on Timer G, 486 again for the INVITE.
        assert_eq!((r.transmissions, r.timer_transmissions), (5, 1));
        assert_eq!(r.phases, [Proceeding, Completed, Confirmed, Terminated]);
        assert_eq!(r.lifetime, Duration::from_millis(500 + 5000));
        // TLS: no Timer G, and Confirmed lasts zero (Timer I = 0).
        let r = server_invite(&server(
            TLS,
            &[respond(486), ServerOp::Env(wait(500)), ServerOp::Ack],
        ));
        assert_eq!(r.phases, [Proceeding, Completed, Terminated]);
        assert_eq!(r.transmissions, 1);
    }

    #[test]
    fn server_invite_2xx_goes_through_accepted() {
        let ops = [
            ServerOp::Env(wait(300)),
            respond(200),
            ServerOp::Retransmission,
            ServerOp::Ack,
            respond(200),
            respond(486),
            respond(180),
        ];
        let r = server_invite(&server(UDP, &ops));
        // 100 Trying at 200 ms, the 200, the TU's second 200.
        assert_eq!((r.transmissions, r.timer_transmissions), (3, 1));
        assert_eq!(r.phases, [Proceeding, Accepted, Terminated]);
        assert_eq!(r.lifetime, Duration::from_millis(300 + 32_000));
    }

    #[test]
    fn server_non_invite_answers_and_absorbs() {
        let ops = [
            ServerOp::Retransmission,
            ServerOp::Ack,
            respond(100),
            ServerOp::Retransmission,
            respond(202),
            ServerOp::Retransmission,
            respond(404),
        ];
        let r = server_non_invite(&server(UDP, &ops));
        assert_eq!(r.transmissions, 4);
        assert_eq!(r.phases, [Initial, Proceeding, Completed, Terminated]);
        assert_eq!(
            (r.final_code, r.lifetime),
            (Some(202), Duration::from_secs(32))
        );
        let r = server_non_invite(&server(TLS, &[respond(200), ServerOp::Retransmission]));
        assert_eq!((r.transmissions, r.lifetime), (1, Duration::ZERO));
        // Unanswered: the guard's 408 at 64·T1, then Timer J.
        let r = server_non_invite(&server(UDP, &[]));
        assert_eq!(
            (r.final_code, r.lifetime),
            (Some(408), Duration::from_secs(64))
        );
        let r = server_non_invite(&server(TLS, &[ServerOp::Env(EnvOp::TransportError)]));
        assert_eq!((r.failed, r.final_code), (true, None));
    }

    #[test]
    fn every_timer_config_and_method_drains() {
        for timers in 0..TIMER_CONFIGS.len() as u8 {
            for (reliable, method) in [(false, 0), (true, 3), (false, 6)] {
                let setup = Setup {
                    reliable,
                    timers,
                    method,
                    in_dialog: method == 3,
                    ..UDP
                };
                let c = [resp(180), ClientOp::Env(wait(9000)), resp(300)];
                client_invite(&client(setup, &c));
                client_non_invite(&client(setup, &c));
                client_invite(&client(setup, &[]));
                client_non_invite(&client(setup, &[]));
                let s = [respond(101), ServerOp::Env(EnvOp::FireNext), respond(603)];
                server_invite(&server(setup, &s));
                server_non_invite(&server(setup, &s));
                server_invite(&server(setup, &[]));
                server_non_invite(&server(setup, &[]));
            }
        }
    }

    /// A broken machine: retransmits every second and never ends.
    #[derive(Debug)]
    struct Chatty {
        wire: Bytes,
        next: Instant,
        out: Option<Bytes>,
    }
    impl Machine for Chatty {
        type Note = Failure;
        fn phase(&self) -> Phase {
            Phase::Initial
        }
        fn poll_transmit(&mut self) -> Option<Bytes> {
            self.out.take()
        }
        fn poll_timeout(&self) -> Option<Instant> {
            Some(self.next)
        }
        fn handle_timeout(&mut self, now: Instant) -> Option<Failure> {
            if now >= self.next {
                self.out = Some(self.wire.clone());
                self.next = now + Duration::from_secs(1);
            }
            None
        }
        fn handle_transport_error(&mut self) -> Option<Failure> {
            None
        }
    }
    impl ClientMachine for Chatty {
        const INVITE: bool = false;
        fn handle_response(&mut self, _: Instant, _: &Message) -> Delivery {
            Delivery::ToTu
        }
    }

    #[test]
    #[should_panic(expected = "transmissions on timers")]
    fn the_harness_catches_unbounded_retransmission() {
        run_client(&client(UDP, &[]), |now, _, wire, _, _| Chatty {
            out: Some(wire.clone()),
            wire,
            next: now,
        });
    }
}
