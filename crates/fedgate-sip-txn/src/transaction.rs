//! The four transaction state machines of RFC 3261 §17, with the "Accepted" state
//! of RFC 6026.
//!
//! Each machine is sans-IO: it is created with the time and the request, fed with
//! `handle_*(now, …)`, and polled with [`poll_transmit`](ClientInvite::poll_transmit)
//! (bytes to put on the wire) and [`poll_timeout`](ClientInvite::poll_timeout) (the
//! next deadline; call `handle_timeout(now)` when it is reached). What the TU must
//! learn is the return value of the `handle_*` call. The machines know nothing
//! about addresses: the [`Endpoint`](crate::Endpoint) keeps the flow of each one.
//!
//! On a reliable transport (`reliable = true`: TCP, TLS) timers A, E and G are
//! never armed and D, I, J and K are zero, so the machine goes straight to
//! Terminated.
//!
//! A machine that ends on Timer B, C, F or H or on a transport error sends nothing
//! more, not even a retransmission that fell due in the same `handle_timeout` call
//! (a late driver, or Timer E / G landing on 64·T1 when T2 = T1).

use std::time::{Duration, Instant};

use bytes::Bytes;
use fedgate_sip::{Message, StatusCode};

use crate::error::Error;
use crate::timer::{Timer, TimerConfig, Timers};
use crate::util;

/// Why a transaction ended without a final response; the TU gets a synthesized 408
/// ([`timeout_response`]) for `Timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Timer B, C or F fired.
    Timeout,
    /// The transport reported an error.
    TransportError,
}

/// What a client transaction does with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Pass the response to the TU.
    ToTu,
    /// A retransmission or a stray response: absorbed.
    Absorbed,
}

/// The 408 a client transaction reports to its TU on a timeout (RFC 3261 §8.1.3.1).
pub fn timeout_response(request: &Message) -> Message {
    util::response_to(request, 408, None)
}

fn at(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

// ---------------------------------------------------------------------------------

/// State of a [`ClientInvite`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientInviteState {
    /// INVITE sent, no response yet.
    Calling,
    /// A provisional response was received.
    Proceeding,
    /// A 300–699 was received and ACKed; absorbing retransmissions (Timer D).
    Completed,
    /// A 2xx was received (RFC 6026); further 2xx go to the TU until Timer M.
    Accepted,
    /// Done.
    Terminated,
}

/// INVITE client transaction (RFC 3261 §17.1.1, Figure 5, amended by RFC 6026 Figure 3).
///
/// ```text
///                                |INVITE from TU
///              Timer A fires     |INVITE sent
///              Reset A,          V                      Timer B fires
///              INVITE sent +-----------+                or Transport Err.
///                +---------|           |---------------+inform TU
///                |         |  Calling  |               |
///                +-------->|           |-------------->|
///                          +-----------+ 2xx           |
///                             |  |       2xx to TU     |
///                             |  |1xx                  |
///     300-699 +---------------+  |1xx to TU            |
///    ACK sent |                  |                     |
/// resp. to TU |  1xx             V                     |
///             |  1xx to TU  -----------+               |
///             |  +---------|           |               |
///             |  |         |Proceeding |-------------->|
///             |  +-------->|           | 2xx           |
///             |            +-----------+ 2xx to TU     |
///             |       300-699    |                     |
///             |       ACK sent,  |                     |
///             |       resp. to TU|                     |
///             |                  |                     |
///             |                  V                     |
///             |            +-----------+               |
///             |   +--------|           |               |
///             |   | 300-699|           |               |
///             |   | ACK sent Completed |               |
///             |   +------->|           |               |
///             |            +-----------+               |
///             |               |  Timer D fires         |
///             +-------------->|  -                     |
///                             V                        |
///        2xx (from Calling/Proceeding) -> +----------+ |
///        2xx to TU                        | Accepted | |  2xx: 2xx to TU
///                                         +----------+ |
///                                            | Timer M |
///                                            V         V
///                                      +-----------+
///                                      |Terminated |
///                                      +-----------+
/// ```
///
/// Timer C bounds Proceeding (a UAC that wants to give up sooner sends CANCEL).
#[derive(Debug, Clone)]
pub struct ClientInvite {
    state: ClientInviteState,
    request: Message,
    wire: Bytes,
    ack: Option<Bytes>,
    reliable: bool,
    cfg: TimerConfig,
    timers: Timers,
    a_interval: Duration,
    transmit: Option<Bytes>,
    accepted: bool,
}

impl ClientInvite {
    /// Starts the transaction: the INVITE (`wire` is its encoding) is queued for
    /// sending, Timer B (and Timer A on unreliable transports) armed.
    pub fn new(
        now: Instant,
        request: Message,
        wire: Bytes,
        reliable: bool,
        cfg: TimerConfig,
    ) -> Self {
        let mut timers = Timers::default();
        if let Some(d) = Timer::A.duration(&cfg, reliable) {
            timers.set(Timer::A, at(now, d));
        }
        if let Some(d) = Timer::B.duration(&cfg, reliable) {
            timers.set(Timer::B, at(now, d));
        }
        ClientInvite {
            state: ClientInviteState::Calling,
            request,
            transmit: Some(wire.clone()),
            wire,
            ack: None,
            reliable,
            accepted: false,
            a_interval: cfg.t1,
            cfg,
            timers,
        }
    }

    /// The current state.
    pub fn state(&self) -> ClientInviteState {
        self.state
    }
    /// The INVITE.
    pub fn request(&self) -> &Message {
        &self.request
    }

    /// A response matched this transaction.
    pub fn handle_response(&mut self, now: Instant, response: &Message) -> Delivery {
        let Some(code) = response.status() else {
            return Delivery::Absorbed;
        };
        let c = code.as_u16();
        use ClientInviteState::*;
        match (self.state, c) {
            (Calling | Proceeding, 100..=199) => {
                self.state = Proceeding;
                self.timers.clear(Timer::A);
                self.timers.clear(Timer::B);
                if let Some(d) = Timer::C.duration(&self.cfg, self.reliable) {
                    self.timers.set(Timer::C, at(now, d));
                }
                Delivery::ToTu
            }
            (Calling | Proceeding, 200..=299) => {
                self.enter_accepted(now);
                Delivery::ToTu
            }
            (Accepted, 200..=299) => Delivery::ToTu,
            (Calling | Proceeding, _) if c >= 300 => {
                self.ack = util::ack_for_non2xx(&self.request, response).map(|m| m.to_bytes());
                self.transmit = self.ack.clone();
                self.timers.clear_all();
                match Timer::D.duration(&self.cfg, self.reliable) {
                    Some(d) if !d.is_zero() => {
                        self.state = Completed;
                        self.timers.set(Timer::D, at(now, d));
                    }
                    _ => self.state = Terminated,
                }
                Delivery::ToTu
            }
            (Completed, c) if c >= 300 => {
                self.transmit = self.ack.clone();
                Delivery::Absorbed
            }
            _ => Delivery::Absorbed,
        }
    }

    /// True once a 2xx was received (the transaction went through Accepted).
    pub fn was_accepted(&self) -> bool {
        self.accepted
    }

    fn enter_accepted(&mut self, now: Instant) {
        self.accepted = true;
        self.state = ClientInviteState::Accepted;
        self.timers.clear_all();
        if let Some(d) = Timer::M.duration(&self.cfg, self.reliable) {
            self.timers.set(Timer::M, at(now, d));
        }
    }

    /// Fires every timer due at `now`. `Some` when the transaction failed.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Failure> {
        while let Some(t) = self.timers.take_due(now) {
            match t {
                Timer::A if self.state == ClientInviteState::Calling => {
                    self.transmit = Some(self.wire.clone());
                    self.a_interval = self.a_interval.saturating_mul(2);
                    self.timers.set(Timer::A, at(now, self.a_interval));
                }
                Timer::B if self.state == ClientInviteState::Calling => {
                    return self.fail(Failure::Timeout);
                }
                Timer::C if self.state == ClientInviteState::Proceeding => {
                    return self.fail(Failure::Timeout);
                }
                Timer::D | Timer::M => self.terminate(),
                _ => {}
            }
        }
        None
    }

    /// The transport failed to send.
    pub fn handle_transport_error(&mut self) -> Option<Failure> {
        match self.state {
            ClientInviteState::Calling | ClientInviteState::Proceeding => {
                self.fail(Failure::TransportError)
            }
            ClientInviteState::Terminated => None,
            _ => {
                self.terminate();
                None
            }
        }
    }

    fn fail(&mut self, f: Failure) -> Option<Failure> {
        self.terminate();
        Some(f)
    }
    fn terminate(&mut self) {
        self.state = ClientInviteState::Terminated;
        self.timers.clear_all();
        // A Timer A copy that fell due in the same `handle_timeout` as B (a late
        // driver) must not go out after the TU has learnt the timeout.
        self.transmit = None;
    }

    /// Bytes to send now.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.take()
    }
    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }
    /// True once Terminated.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }
}

// ---------------------------------------------------------------------------------

/// State of a [`ClientNonInvite`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientNonInviteState {
    /// Request sent.
    Trying,
    /// A provisional response was received; retransmissions continue at T2.
    Proceeding,
    /// A final response was received; absorbing retransmissions (Timer K).
    Completed,
    /// Done.
    Terminated,
}

/// Non-INVITE client transaction (RFC 3261 §17.1.2, Figure 6).
///
/// ```text
///                                    |Request from TU
///                                    |send request
///                Timer E             V
///                send request  +-----------+
///                    +---------|           |-------------------+
///                    |         |  Trying   |  Timer F          |
///                    +-------->|           |  or Transport Err.|
///                              +-----------+  inform TU        |
///                 200-699         |  |                         |
///                 resp. to TU     |  |1xx                      |
///                 +---------------+  |resp. to TU              |
///                 |                  |                         |
///                 |   Timer E        V       Timer F           |
///                 |   send req +-----------+ or Transport Err. |
///                 |  +---------|           | inform TU         |
///                 |  |         |Proceeding |------------------>|
///                 |  +-------->|           |-----+             |
///                 |            +-----------+     |1xx          |
///                 |              |      ^        |resp to TU   |
///                 | 200-699      |      +--------+             |
///                 | resp. to TU  |                             |
///                 |              |                             |
///                 |              V                             |
///                 |            +-----------+                   |
///                 |            |           |                   |
///                 |            | Completed |                   |
///                 |            |           |                   |
///                 |            +-----------+                   |
///                 |              ^   |                         |
///                 |              |   | Timer K                 |
///                 +--------------+   | -                       |
///                                    |                         |
///                                    V                         |
///              NOTE:           +-----------+                   |
///                              |           |                   |
///          transitions         | Terminated|<------------------+
///          labeled with        |           |
///          the event           +-----------+
///          over the action
///          to take
/// ```
#[derive(Debug, Clone)]
pub struct ClientNonInvite {
    state: ClientNonInviteState,
    request: Message,
    wire: Bytes,
    reliable: bool,
    cfg: TimerConfig,
    timers: Timers,
    e_interval: Duration,
    transmit: Option<Bytes>,
}

impl ClientNonInvite {
    /// Starts the transaction: the request is queued, Timer F (and E on unreliable
    /// transports) armed.
    pub fn new(
        now: Instant,
        request: Message,
        wire: Bytes,
        reliable: bool,
        cfg: TimerConfig,
    ) -> Self {
        let mut timers = Timers::default();
        if let Some(d) = Timer::E.duration(&cfg, reliable) {
            timers.set(Timer::E, at(now, d));
        }
        if let Some(d) = Timer::F.duration(&cfg, reliable) {
            timers.set(Timer::F, at(now, d));
        }
        ClientNonInvite {
            state: ClientNonInviteState::Trying,
            request,
            transmit: Some(wire.clone()),
            wire,
            reliable,
            e_interval: cfg.t1,
            cfg,
            timers,
        }
    }

    /// The current state.
    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }
    /// The request.
    pub fn request(&self) -> &Message {
        &self.request
    }

    /// A response matched this transaction.
    pub fn handle_response(&mut self, now: Instant, response: &Message) -> Delivery {
        let Some(code) = response.status() else {
            return Delivery::Absorbed;
        };
        use ClientNonInviteState::*;
        match self.state {
            Trying | Proceeding if code.is_provisional() => {
                self.state = Proceeding;
                Delivery::ToTu
            }
            Trying | Proceeding => {
                self.timers.clear_all();
                match Timer::K.duration(&self.cfg, self.reliable) {
                    Some(d) if !d.is_zero() => {
                        self.state = Completed;
                        self.timers.set(Timer::K, at(now, d));
                    }
                    _ => self.state = Terminated,
                }
                Delivery::ToTu
            }
            Completed | Terminated => Delivery::Absorbed,
        }
    }

    /// Fires every timer due at `now`. `Some` when the transaction failed.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Failure> {
        use ClientNonInviteState::*;
        while let Some(t) = self.timers.take_due(now) {
            match t {
                Timer::E if matches!(self.state, Trying | Proceeding) => {
                    self.transmit = Some(self.wire.clone());
                    // §17.1.2.2: min(2·E, T2) in Trying; T2 in Proceeding.
                    self.e_interval = if self.state == Proceeding {
                        self.cfg.t2
                    } else {
                        self.e_interval.saturating_mul(2).min(self.cfg.t2)
                    };
                    self.timers.set(Timer::E, at(now, self.e_interval));
                }
                Timer::F if matches!(self.state, Trying | Proceeding) => {
                    self.state = Terminated;
                    self.timers.clear_all();
                    // Nor a Timer E copy due at the same time (T2 = T1, a late driver).
                    self.transmit = None;
                    return Some(Failure::Timeout);
                }
                Timer::K => {
                    self.state = Terminated;
                    self.timers.clear_all();
                }
                _ => {}
            }
        }
        None
    }

    /// The transport failed to send.
    pub fn handle_transport_error(&mut self) -> Option<Failure> {
        let was = self.state;
        self.state = ClientNonInviteState::Terminated;
        self.timers.clear_all();
        self.transmit = None;
        matches!(
            was,
            ClientNonInviteState::Trying | ClientNonInviteState::Proceeding
        )
        .then_some(Failure::TransportError)
    }

    /// Bytes to send now.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.take()
    }
    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }
    /// True once Terminated.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientNonInviteState::Terminated
    }
}

// ---------------------------------------------------------------------------------

/// State of a [`ServerInvite`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerInviteState {
    /// INVITE received, no final response yet.
    Proceeding,
    /// A 300–699 was sent; retransmitting it (Timer G) until ACK or Timer H.
    Completed,
    /// The ACK arrived; absorbing ACK retransmissions (Timer I).
    Confirmed,
    /// A 2xx was sent (RFC 6026); absorbing INVITE retransmissions until Timer L.
    Accepted,
    /// Done.
    Terminated,
}

/// What a server transaction reports to the TU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerNote {
    /// Timer H fired: the ACK for a non-2xx never came.
    AckTimeout,
    /// The TU did not answer within the guard time: the transaction answered 408.
    TuTimeout,
    /// The transport failed.
    TransportError,
}

/// What a server INVITE transaction did with an ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The ACK for our 300–699: Completed → Confirmed.
    Confirmed,
    /// A retransmitted or early ACK: absorbed.
    Absorbed,
    /// The transaction is in Accepted: an ACK matching it (RFC 2543 peers reuse
    /// the INVITE's branch for the ACK to a 2xx) belongs to the TU.
    ToTu,
}

/// INVITE server transaction (RFC 3261 §17.2.1, Figure 7, amended by RFC 6026 Figure 5).
///
/// ```text
///                               |INVITE
///                               |pass INV to TU
///            INVITE             V send 100 if TU won't in 200 ms
///            send response+------------+
///                +--------|            |--------+ 101-199 from TU
///                |        |            |        | send response
///                +------->|            |<-------+
///                         | Proceeding |
///                         |            |--------+ Transport Err.
///                         |            |        | Inform TU
///                         |            |<-------+
///                         +------------+
///            300-699 from TU |    |2xx from TU
///            send response   |    |send response
///             +--------------+    +------------+
///             |                                |
/// INVITE      V          Timer G fires         |
/// send response+-----------+ send response     |
///       +--------|           |--------+        |
///       |        |           |        |        V
///       +------->| Completed |<-------+   +----------+  INVITE: absorb
///                |           |            | Accepted |  2xx from TU:
///                +-----------+            +----------+  send response
///                   |     |                     |
///               ACK |     | Timer H fires       | Timer L fires
///               -   |     | or Transport Err.   |
///                   |     | Inform TU           |
///                   V     |                     |
///             +-----------+                     |
///             |           |                     |
///             | Confirmed |                     |
///             |           |                     |
///             +-----------+                     |
///                   |                           |
///                   |Timer I fires              |
///                   V                           V
///             +-----------------------------------+
///             |            Terminated             |
///             +-----------------------------------+
/// ```
#[derive(Debug, Clone)]
pub struct ServerInvite {
    state: ServerInviteState,
    request: Message,
    reliable: bool,
    cfg: TimerConfig,
    timers: Timers,
    g_interval: Duration,
    last_response: Option<Bytes>,
    transmit: Option<Bytes>,
}

impl ServerInvite {
    /// An INVITE arrived: Proceeding, with the 100 Trying timer (200 ms) and the
    /// TU guard armed.
    pub fn new(now: Instant, request: Message, reliable: bool, cfg: TimerConfig) -> Self {
        let mut timers = Timers::default();
        if let Some(d) = Timer::Trying.duration(&cfg, reliable) {
            timers.set(Timer::Trying, at(now, d));
        }
        timers.set(Timer::Guard, at(now, cfg.invite_guard));
        ServerInvite {
            state: ServerInviteState::Proceeding,
            request,
            reliable,
            g_interval: cfg.t1,
            cfg,
            timers,
            last_response: None,
            transmit: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> ServerInviteState {
        self.state
    }
    /// The INVITE.
    pub fn request(&self) -> &Message {
        &self.request
    }
    /// True once a final response was sent.
    pub fn has_final(&self) -> bool {
        !matches!(self.state, ServerInviteState::Proceeding)
    }

    /// The INVITE was received again: resend the last response (Proceeding,
    /// Completed); absorb otherwise.
    pub fn handle_retransmission(&mut self, _now: Instant) {
        if matches!(
            self.state,
            ServerInviteState::Proceeding | ServerInviteState::Completed
        ) {
            self.transmit = self.last_response.clone();
        }
    }

    /// An ACK matched this transaction.
    pub fn handle_ack(&mut self, now: Instant) -> AckOutcome {
        match self.state {
            ServerInviteState::Completed => {
                self.timers.clear_all();
                match Timer::I.duration(&self.cfg, self.reliable) {
                    Some(d) if !d.is_zero() => {
                        self.state = ServerInviteState::Confirmed;
                        self.timers.set(Timer::I, at(now, d));
                    }
                    _ => self.state = ServerInviteState::Terminated,
                }
                AckOutcome::Confirmed
            }
            ServerInviteState::Accepted => AckOutcome::ToTu,
            _ => AckOutcome::Absorbed,
        }
    }

    /// The TU sends a response (`wire` is its encoding).
    pub fn send_response(
        &mut self,
        now: Instant,
        code: StatusCode,
        wire: Bytes,
    ) -> Result<(), Error> {
        let c = code.as_u16();
        match (self.state, c) {
            (ServerInviteState::Proceeding, 100..=199) => {
                self.timers.clear(Timer::Trying);
                self.last_response = Some(wire.clone());
                self.transmit = Some(wire);
            }
            (ServerInviteState::Proceeding, 200..=299) => {
                self.state = ServerInviteState::Accepted;
                self.timers.clear_all();
                if let Some(d) = Timer::L.duration(&self.cfg, self.reliable) {
                    self.timers.set(Timer::L, at(now, d));
                }
                self.last_response = Some(wire.clone());
                self.transmit = Some(wire);
            }
            // RFC 6026 §8.5: 2xx retransmissions from the TU pass through.
            (ServerInviteState::Accepted, 200..=299) => self.transmit = Some(wire),
            (ServerInviteState::Proceeding, _) => {
                self.state = ServerInviteState::Completed;
                self.timers.clear_all();
                if let Some(d) = Timer::G.duration(&self.cfg, self.reliable) {
                    self.timers.set(Timer::G, at(now, d));
                }
                if let Some(d) = Timer::H.duration(&self.cfg, self.reliable) {
                    self.timers.set(Timer::H, at(now, d));
                }
                self.last_response = Some(wire.clone());
                self.transmit = Some(wire);
            }
            _ => {
                return Err(Error::WrongState(
                    "server INVITE: final response already sent",
                ));
            }
        }
        Ok(())
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<ServerNote> {
        while let Some(t) = self.timers.take_due(now) {
            match t {
                Timer::Trying if self.state == ServerInviteState::Proceeding => {
                    let wire = util::response_to(&self.request, 100, None).to_bytes();
                    self.last_response = Some(wire.clone());
                    self.transmit = Some(wire);
                }
                Timer::Guard if self.state == ServerInviteState::Proceeding => {
                    let wire = util::response_to(&self.request, 408, None).to_bytes();
                    // Proceeding accepts a 408; this cannot fail.
                    let _ = self.send_response(now, util::status(408), wire);
                    return Some(ServerNote::TuTimeout);
                }
                Timer::G if self.state == ServerInviteState::Completed => {
                    self.transmit = self.last_response.clone();
                    self.g_interval = self.g_interval.saturating_mul(2).min(self.cfg.t2);
                    self.timers.set(Timer::G, at(now, self.g_interval));
                }
                Timer::H if self.state == ServerInviteState::Completed => {
                    self.terminate();
                    return Some(ServerNote::AckTimeout);
                }
                Timer::I | Timer::L => self.terminate(),
                _ => {}
            }
        }
        None
    }

    /// The transport failed.
    pub fn handle_transport_error(&mut self) -> Option<ServerNote> {
        let live = self.state != ServerInviteState::Terminated;
        self.terminate();
        live.then_some(ServerNote::TransportError)
    }

    fn terminate(&mut self) {
        self.state = ServerInviteState::Terminated;
        self.timers.clear_all();
        // A Timer G copy due in the same `handle_timeout` as H (T2 = T1, a late
        // driver) must not go out after the TU has learnt the ACK timeout.
        self.transmit = None;
    }

    /// Bytes to send now.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.take()
    }
    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }
    /// True once Terminated.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerInviteState::Terminated
    }
}

// ---------------------------------------------------------------------------------

/// State of a [`ServerNonInvite`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerNonInviteState {
    /// Request received, nothing sent.
    Trying,
    /// A provisional response was sent.
    Proceeding,
    /// A final response was sent; absorbing retransmissions (Timer J).
    Completed,
    /// Done.
    Terminated,
}

/// Non-INVITE server transaction (RFC 3261 §17.2.2, Figure 8).
///
/// ```text
///                                  |Request received
///                                  |pass to TU
///                                  V
///                            +-----------+
///                            |           |
///                            | Trying    |-------------+
///                            |           |             |
///                            +-----------+             |200-699 from TU
///                                  |                   |send response
///                                  |1xx from TU        |
///                                  |send response      |
///                                  |                   |
///               Request            V      1xx from TU  |
///               send response+-----------+send response|
///                   +--------|           |--------+    |
///                   |        | Proceeding|        |    |
///                   +------->|           |<-------+    |
///            +<--------------|           |             |
///            |Trnsprt Err    +-----------+             |
///            |Inform TU            |                   |
///            |                     |                   |
///            |                     |200-699 from TU    |
///            |                     |send response      |
///            |  Request            V                   |
///            |  send response+-----------+             |
///            |      +--------|           |             |
///            |      |        | Completed |<------------+
///            |      +------->|           |
///            +<--------------|           |
///            |Trnsprt Err    +-----------+
///            |Inform TU            |
///            |                     |Timer J fires
///            |                     |-
///            |                     |
///            |                     V
///            |               +-----------+
///            |               |           |
///            +-------------->| Terminated|
///                            |           |
///                            +-----------+
/// ```
///
/// A TU that has not answered within 64·T1 (when the client has given up) gets
/// [`ServerNote::TuTimeout`] and the transaction answers 408 itself.
#[derive(Debug, Clone)]
pub struct ServerNonInvite {
    state: ServerNonInviteState,
    request: Message,
    reliable: bool,
    cfg: TimerConfig,
    timers: Timers,
    last_response: Option<Bytes>,
    transmit: Option<Bytes>,
}

impl ServerNonInvite {
    /// A request arrived: Trying.
    pub fn new(now: Instant, request: Message, reliable: bool, cfg: TimerConfig) -> Self {
        let mut timers = Timers::default();
        timers.set(Timer::Guard, at(now, cfg.t1x64()));
        ServerNonInvite {
            state: ServerNonInviteState::Trying,
            request,
            reliable,
            cfg,
            timers,
            last_response: None,
            transmit: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }
    /// The request.
    pub fn request(&self) -> &Message {
        &self.request
    }
    /// True once a final response was sent.
    pub fn has_final(&self) -> bool {
        matches!(
            self.state,
            ServerNonInviteState::Completed | ServerNonInviteState::Terminated
        )
    }

    /// The request was received again: resend the last response (absorbed in Trying).
    pub fn handle_retransmission(&mut self, _now: Instant) {
        if matches!(
            self.state,
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed
        ) {
            self.transmit = self.last_response.clone();
        }
    }

    /// The TU sends a response (`wire` is its encoding).
    pub fn send_response(
        &mut self,
        now: Instant,
        code: StatusCode,
        wire: Bytes,
    ) -> Result<(), Error> {
        match self.state {
            ServerNonInviteState::Trying | ServerNonInviteState::Proceeding => {}
            _ => {
                return Err(Error::WrongState(
                    "server non-INVITE: final response already sent",
                ));
            }
        }
        if code.is_provisional() {
            self.state = ServerNonInviteState::Proceeding;
        } else {
            self.timers.clear_all();
            match Timer::J.duration(&self.cfg, self.reliable) {
                Some(d) if !d.is_zero() => {
                    self.state = ServerNonInviteState::Completed;
                    self.timers.set(Timer::J, at(now, d));
                }
                _ => self.state = ServerNonInviteState::Terminated,
            }
        }
        // Kept for retransmissions, which only Proceeding and Completed resend (a
        // clone of a fresh `Bytes` allocates).
        if self.state != ServerNonInviteState::Terminated {
            self.last_response = Some(wire.clone());
        }
        self.transmit = Some(wire);
        Ok(())
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<ServerNote> {
        while let Some(t) = self.timers.take_due(now) {
            match t {
                Timer::Guard if !self.has_final() => {
                    let wire = util::response_to(&self.request, 408, None).to_bytes();
                    let _ = self.send_response(now, util::status(408), wire);
                    return Some(ServerNote::TuTimeout);
                }
                Timer::J => {
                    self.state = ServerNonInviteState::Terminated;
                    self.timers.clear_all();
                }
                _ => {}
            }
        }
        None
    }

    /// The transport failed.
    pub fn handle_transport_error(&mut self) -> Option<ServerNote> {
        let live = self.state != ServerNonInviteState::Terminated;
        self.state = ServerNonInviteState::Terminated;
        self.timers.clear_all();
        self.transmit = None;
        live.then_some(ServerNote::TransportError)
    }

    /// Bytes to send now.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.take()
    }
    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }
    /// True once Terminated.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerNonInviteState::Terminated
    }
}

#[cfg(test)]
mod tests {
    //! Regressions found by the `sip_txn_*` fuzz targets (see `fuzz_txn`).
    use super::*;

    const FLAT: TimerConfig = TimerConfig {
        t2: Duration::from_millis(500),
        ..TimerConfig::DEFAULT
    };

    fn request(method: &str) -> Message {
        crate::fuzz_txn::request(
            &crate::fuzz_txn::Setup {
                method: if method == "INVITE" { 0 } else { 1 },
                ..Default::default()
            },
            method == "INVITE",
        )
    }

    #[test]
    fn client_invite_late_timer_b_sends_no_last_copy() {
        // A driver that wakes up after Timer B: A (due at 500 ms) and B (32 s) fire in
        // one call. The TU gets the timeout and the INVITE is not sent again.
        let t = Instant::now();
        let req = request("INVITE");
        let wire = req.to_bytes();
        let mut m = ClientInvite::new(t, req, wire, false, TimerConfig::DEFAULT);
        assert!(m.poll_transmit().is_some());
        let late = t + Duration::from_secs(65);
        assert_eq!(m.handle_timeout(late), Some(Failure::Timeout));
        assert!(m.is_terminated());
        assert_eq!(m.poll_transmit(), None);
    }

    #[test]
    fn client_non_invite_timer_e_on_timer_f_sends_nothing() {
        // T2 = T1: Timer E fires every 500 ms, the 64th time together with Timer F.
        let t = Instant::now();
        let req = request("OPTIONS");
        let wire = req.to_bytes();
        let mut m = ClientNonInvite::new(t, req, wire, false, FLAT);
        assert!(m.poll_transmit().is_some());
        let mut copies = 0;
        while let Some(at) = m.poll_timeout() {
            let failure = m.handle_timeout(at);
            let sent = m.poll_transmit().is_some();
            if failure.is_some() {
                assert_eq!(at, t + Duration::from_secs(32));
                assert!(!sent, "a copy after Timer F");
                break;
            }
            copies += usize::from(sent);
        }
        assert_eq!(copies, 63);
        assert!(m.is_terminated());
    }

    #[test]
    fn server_invite_timer_g_on_timer_h_sends_nothing() {
        let t = Instant::now();
        let req = request("INVITE");
        let wire = util::response_to(&req, 486, None).to_bytes();
        let mut m = ServerInvite::new(t, req, false, FLAT);
        m.send_response(t, util::status(486), wire)
            .expect("Proceeding takes a final");
        assert!(m.poll_transmit().is_some());
        let mut copies = 0;
        while let Some(at) = m.poll_timeout() {
            let note = m.handle_timeout(at);
            let sent = m.poll_transmit().is_some();
            if note == Some(ServerNote::AckTimeout) {
                assert_eq!(at, t + Duration::from_secs(32));
                assert!(!sent, "a 486 after Timer H");
                break;
            }
            copies += usize::from(sent);
        }
        // Timer G every 500 ms (T2 = T1) before Timer H.
        assert_eq!(copies, 63);
        assert!(m.is_terminated());
    }

    #[test]
    fn transport_error_drops_a_pending_transmission() {
        let t = Instant::now();
        let req = request("OPTIONS");
        let wire = req.to_bytes();
        let mut c = ClientNonInvite::new(t, req.clone(), wire, false, FLAT);
        assert_eq!(c.handle_transport_error(), Some(Failure::TransportError));
        assert_eq!(c.poll_transmit(), None);
        let wire = util::response_to(&req, 100, None).to_bytes();
        let mut s = ServerNonInvite::new(t, req, false, FLAT);
        s.send_response(t, util::status(100), wire)
            .expect("Trying takes a provisional");
        assert_eq!(s.handle_transport_error(), Some(ServerNote::TransportError));
        assert_eq!(s.poll_transmit(), None);
    }
}
