//! # fedgate-sip-txn
//!
//! The SIP layers above the codec (`fedgate-sip`), as sans-IO state machines:
//!
//! - **Transactions** (RFC 3261 §17 with RFC 6026's Accepted state): the four
//!   machines [`transaction::ClientInvite`], [`transaction::ClientNonInvite`],
//!   [`transaction::ServerInvite`], [`transaction::ServerNonInvite`], with timers A–M
//!   as a named enum and table ([`timer::Timer`]), T1/T2/T4 per endpoint
//!   ([`timer::TimerConfig`]), retransmissions on UDP only, the 100 Trying rule,
//!   and a synthesized 408 on Timer B/F.
//! - **The transaction layer** ([`Endpoint`]): owns many transactions; matches by
//!   branch + sent-by + method (ACK → INVITE, CANCEL on its own), falls back to RFC
//!   2543 matching, passes the ACK for a 2xx to the TU, answers merged requests
//!   482, drops stray responses, absorbs retransmitted requests by resending the
//!   last response, answers 503 + Retry-After over its limits.
//! - **Dialogs** (RFC 3261 §12, [`Dialog`]): ids, CSeq ordering (500), route set
//!   (reversed on the UAC side), remote target, loose and strict routing.
//! - **A user agent** ([`UserAgent`]) for federation with Lync / Skype for Business:
//!   session-mode IM (INVITE with `m=message … sip null`, MESSAGE in the dialog,
//!   typing indications, BYE, idle close, the `ms-text-format` first message
//!   delivered exactly once, each MESSAGE we send reported
//!   [`UaEvent::MessageDelivered`] on its 2xx or [`UaEvent::MessageFailed`]; with
//!   [`UaConfig::app_answers_messages`] the application answers each received
//!   MESSAGE itself, see "Answering MESSAGEs" below) and
//!   RFC 6665 / RFC 3856 subscriptions in both roles (Expires negotiation with
//!   423/Min-Expires and a cap, refresh before expiry, Subscription-State, Timer N,
//!   unsubscribe, 481, a NOTIFY that arrives before the 2xx, and full state in every
//!   NOTIFY: one without a new document, such as the answer to a refresh, carries
//!   the last one the application notified).
//! - **Well-formed output**: every message the crate sends carries exactly one
//!   Content-Length equal to its body (RFC 3261 §18.3: mandatory on TCP/TLS), every
//!   request Max-Forwards and a Via with a fresh `z9hG4bK` branch (§8.1.1), every 405
//!   an Allow (§8.2.1). A request or response handed in by the TU is completed the
//!   same way.
//! - **Connection loss** ([`UserAgent::handle_flow_closed`],
//!   [`Endpoint::handle_flow_closed`]): transactions on the flow fail as transport
//!   errors (RFC 3261 §17.1.4, §17.2.4), IM sessions on it end
//!   ([`CloseReason::FlowClosed`], no BYE), subscriptions outlive it and move to the
//!   flow the peer's next in-dialog request comes on, or a notifier's to the flow the
//!   application gives it ([`UserAgent::rebind_subscription`]).
//! - **Restart** ([`UserAgent::export_notifier`], [`UserAgent::restore_notifier`],
//!   [`ua::NotifierRecord`]): a notifier subscription written down and taken up by a
//!   later process, in the same dialog.
//! - **A fuzzing harness** ([`fuzzing`]) that drives one UA with an `Arbitrary`
//!   sequence of operations (feature `arbitrary`), and one per transaction machine
//!   ([`fuzz_txn`]) with the RFC 3261 §17 invariants checked after every step.
//!
//! **What it does not do**: no I/O, no clock, no randomness (the driver passes
//! `now` and a seed); no DNS / RFC 3263 target selection (the driver picks the
//! [`Flow`]); no proxy behaviour (no forking, Timer C only bounds a UAC INVITE);
//! no authentication; no PRACK (RFC 3262), session timers (RFC 4028), group chat or
//! media; bodies (SDP, PIDF) are opaque except for the IM media-line check. One
//! dialog per subscription (NOTIFYs from other forks are answered 481). NOTIFYs
//! are not serialized (a new one may be sent before the previous one is answered).
//!
//! ## Run-loop contract
//!
//! The same for [`Endpoint`] and [`UserAgent`] (quinn-proto style):
//!
//! 1. Feed input with one `handle_*(now, …)` call: a received message
//!    (`handle_datagram` / `handle_message` / `handle_parse_error`), a transport
//!    failure (`handle_transport_error`: a send failed; `handle_flow_closed`: the
//!    connection is gone for good), or the passage of time
//!    (`handle_timeout(now)` once `now >= poll_timeout()`). Application calls
//!    (`send_request`, `accept_session`, `notify`, …) are inputs too.
//! 2. Drain `poll_event()` until `None` and deliver the events. Do this **before**
//!    step 3: the UA queues the 200 for a MESSAGE in the same step as the
//!    `MessageReceived` event, so draining events first delivers before the peer
//!    learns that it was delivered.
//! 3. Drain `poll_transmit()` until `None` and write each payload to its flow.
//! 4. Arm one timer for `poll_timeout()` (the earliest deadline, or `None`).
//!
//! `now` must never go backwards. After `handle_timeout(now)`, `poll_timeout()`
//! is `None` or later than `now`. Output queues only grow by a bounded amount per
//! input (at most a few items per live transaction or dialog), and live
//! transactions and dialogs are capped by [`Limits`].
//!
//! ## Answering MESSAGEs (gateways)
//!
//! By default the UA answers an in-session MESSAGE 200 in the same step as
//! [`UaEvent::MessageReceived`]. A gateway that must report a delivery failure to
//! the sender (RFC 7247 §6.1 / RFC 7572: an XMPP error becomes the SIP status) sets
//! [`UaConfig::app_answers_messages`]: each MESSAGE then comes as
//! [`UaEvent::MessageToAnswer`] with a [`MessageHandle`], and the application calls
//! [`UserAgent::respond_message`]`(now, handle, status)` with 2xx or an error status.
//! Unanswered after [`UaConfig::message_answer_timeout`] (default 10 s, at most
//! 32·T1, half the peer's Timer F), the UA answers
//! [`MESSAGE_ANSWER_TIMEOUT_STATUS`] (504 Server Time-out, why: see there). Typing
//! indications are still answered 200 by the UA ([`UaEvent::Typing`]). The first
//! message of an INVITE (`ms-text-format`) has no transaction of its own; it is
//! still handed out exactly once: as [`UaEvent::MessageReceived`] on
//! [`UserAgent::accept_session`], or earlier by
//! [`UserAgent::take_first_message`], so that an application that cannot deliver
//! it refuses the INVITE with the error status instead
//! ([`UserAgent::reject_session`]).
//!
//! ## Cost
//!
//! An in-dialog MESSAGE through the [`UserAgent`] (parse, validate, match, 200,
//! serialize) costs about 16 000 instructions and 4 heap allocations (the parsed
//! header index, its copy kept by the server transaction, the shared count of the
//! received buffer, the 200), measured with callgrind; about half is the codec's
//! parse and validation. The headers `validate` decodes (top Via, From, To,
//! Call-ID, CSeq: [`fedgate_sip::validate_views`]) are decoded once and used for
//! transaction matching, merged-request detection, the dialog lookup and the CSeq
//! check. Matching hashes each message's transaction key once (a keyed SipHash, as
//! std's `HashMap`, so a peer cannot choose colliding branches); ids the crate
//! assigns itself (sessions, subscriptions, transaction slots) use a
//! multiplicative hash; the 200 to an in-dialog request is written straight from
//! the request's header lines, and [`util::response_to`] shares the request's
//! buffer instead of copying its lines. The deadline of a new server transaction
//! enters the timer set only at the next input, so a transaction answered at once
//! on a reliable transport never touches it. `benches/benches/sip_txn.rs` has the
//! criterion figures.
//!
//! ## Example
//!
//! Two user agents wired back to back: an IM session with one message, then idle
//! close on simulated time.
//!
//! ```
//! use std::time::Instant;
//! use bytes::Bytes;
//! use fedgate_sip_txn::{EndpointConfig, Flow, TransportKind, UaConfig, UaEvent, UserAgent};
//! use fedgate_sip_txn::ua::address;
//!
//! let flow = Flow::new(1, TransportKind::Tls);
//! let mk = |host: &'static str, seed| {
//!     let contact = address(&format!("<sip:{host}:5061;transport=tls>")).unwrap();
//!     UserAgent::new(UaConfig::new(EndpointConfig::with_domain(host, seed), contact))
//! };
//! let (mut fabrikam, mut contoso) = (mk("gw.fabrikam.com", 1), mk("gw.contoso.com", 2));
//! let mut now = Instant::now(); // the driver's clock; the core never reads one
//!
//! // Move everything that is ready, both ways; return contoso's events.
//! fn pump(a: &mut UserAgent, b: &mut UserAgent, now: Instant, flow: Flow) -> Vec<UaEvent> {
//!     let mut events = vec![];
//!     loop {
//!         while a.poll_event().is_some() {}
//!         while let Some(e) = b.poll_event() { events.push(e); }
//!         let mut moved = false;
//!         while let Some(t) = a.poll_transmit() { b.handle_datagram(now, flow, t.payload); moved = true; }
//!         while let Some(t) = b.poll_transmit() { a.handle_datagram(now, flow, t.payload); moved = true; }
//!         if !moved { return events; }
//!     }
//! }
//!
//! let alice = address("<sip:alice@fabrikam.com>").unwrap();
//! let bob = address("<sip:bob@contoso.com>").unwrap();
//! let s = fabrikam.open_session(now, flow, &alice, &bob).unwrap();
//! fabrikam.send_message(now, s, "text/plain; charset=UTF-8", Bytes::from_static(b"Hi Bob")).unwrap();
//! let ev = pump(&mut fabrikam, &mut contoso, now, flow);
//! let UaEvent::SessionOffered { session, .. } = ev[0].clone() else { panic!("{ev:?}") };
//! contoso.accept_session(now, session).unwrap();
//! let ev = pump(&mut fabrikam, &mut contoso, now, flow);
//! assert!(ev.contains(&UaEvent::MessageReceived {
//!     session,
//!     content_type: Bytes::from_static(b"text/plain; charset=UTF-8"),
//!     body: Bytes::from_static(b"Hi Bob"),
//! }));
//!
//! // Simulated time: jump to the next deadline instead of sleeping. After the
//! // idle timeout (10 min by default) the session is closed with BYE.
//! while let Some(t) = fabrikam.poll_timeout() {
//!     now = t;
//!     fabrikam.handle_timeout(now);
//!     contoso.handle_timeout(now);
//!     pump(&mut fabrikam, &mut contoso, now, flow);
//!     if fabrikam.session_count() == 0 { break; }
//! }
//! assert_eq!(contoso.session_count(), 0);
//! ```
#![forbid(unsafe_code)]

pub mod config;
pub mod dialog;
pub mod endpoint;
pub mod error;
pub mod fuzz_txn;
pub mod fuzzing;
pub mod im;
pub mod timer;
pub mod transaction;
pub mod ua;
pub mod util;

pub use config::{EndpointConfig, Flow, Limits, TransportKind};
pub use dialog::{Dialog, DialogId, DialogRole};
pub use endpoint::{Endpoint, EndpointStats, Transmit, TxnEvent, TxnId};
pub use error::Error;
pub use timer::{Timer, TimerConfig};
pub use ua::{
    CloseReason, MESSAGE_ANSWER_TIMEOUT_STATUS, MessageHandle, SessionId, SubEnd, SubState,
    SubscribeParams, SubscriptionId, UaConfig, UaEvent, UserAgent,
};
