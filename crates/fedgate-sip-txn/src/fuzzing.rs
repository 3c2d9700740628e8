//! A stateful, fuzz-friendly driver: one [`UserAgent`] fed with a sequence of
//! operations (received bytes, well-formed requests and responses built from a
//! few numbers, time jumps, transport errors, application calls).
//!
//! A cargo-fuzz target only needs:
//!
//! ```ignore
//! #![no_main]
//! libfuzzer_sys::fuzz_target!(|ops: Vec<fedgate_sip_txn::fuzzing::FuzzOp>| {
//!     let mut h = fedgate_sip_txn::fuzzing::Harness::new(std::time::Instant::now());
//!     h.run(&ops);
//!     h.drain_all(); // everything must end: no state outlives its timers
//! });
//! ```
//!
//! (with the crate's `arbitrary` feature enabled). [`Harness::run`] checks the
//! invariants after every operation and panics if one is broken, which is what a
//! fuzzer reports: live transactions and dialogs stay under the configured
//! limits, every transmitted message parses back, and after `handle_timeout(now)`
//! no deadline is left in the past.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fedgate_sip::Message;

use crate::config::{EndpointConfig, Flow, TransportKind};
use crate::ua::{MessageHandle, SessionId, SubState, SubscriptionId, UaConfig, UaEvent, UserAgent};

/// One step of a fuzz sequence.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum FuzzOp {
    /// Raw bytes received on flow `flow % 3`.
    Raw {
        /// Flow selector.
        flow: u8,
        /// The datagram.
        data: Vec<u8>,
    },
    /// A well-formed request built from small numbers (so that matching, dialogs and
    /// subscriptions are reached).
    Request {
        /// Flow selector.
        flow: u8,
        /// Method selector.
        method: u8,
        /// Branch selector (0 = a branch without the magic cookie).
        branch: u8,
        /// Call-ID selector.
        call: u8,
        /// From tag selector.
        from_tag: u8,
        /// To tag selector (None: out of dialog). Tags of our own dialogs are
        /// reachable through `reflect`.
        to_tag: Option<u8>,
        /// Reuse the Call-ID and tags of a message we sent (index into recent sends).
        reflect: Option<u8>,
        /// CSeq number.
        cseq: u16,
        /// Expires header.
        expires: Option<u16>,
        /// Body selector (IM SDP, ms-text-format, PIDF, typing).
        body: u8,
    },
    /// A response to one of the requests we sent recently.
    Response {
        /// Which recent request.
        which: u8,
        /// Status code (taken modulo into 100–699).
        code: u16,
        /// Add a To tag.
        tag: bool,
    },
    /// Time passes.
    Advance {
        /// Milliseconds.
        millis: u32,
    },
    /// The transport of a flow fails.
    TransportError {
        /// Flow selector.
        flow: u8,
    },
    /// An application call on the UA.
    App {
        /// Which call.
        action: u8,
        /// Which session / subscription.
        which: u8,
    },
    /// The connection of a flow closes.
    FlowClosed {
        /// Flow selector.
        flow: u8,
    },
}

const FLOWS: [Flow; 3] = [
    Flow::new(0, TransportKind::Udp),
    Flow::new(1, TransportKind::Tcp),
    Flow::new(2, TransportKind::Tls),
];

/// Drives one user agent; see the module docs.
#[derive(Debug)]
pub struct Harness {
    ua: UserAgent,
    now: Instant,
    sent: VecDeque<Message>,
    sessions: Vec<SessionId>,
    subs: Vec<SubscriptionId>,
    /// MESSAGEs waiting for the application ([`Harness::answering`]).
    messages: Vec<MessageHandle>,
    /// Transmissions seen.
    pub transmits: u64,
    /// Events seen.
    pub events: u64,
}

const METHODS: [&str; 10] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "MESSAGE",
    "SUBSCRIBE",
    "NOTIFY",
    "OPTIONS",
    "INFO",
    "FOO",
];

impl Harness {
    /// A harness with small limits (64 transactions, 16 dialogs), starting at `start`.
    pub fn new(start: Instant) -> Self {
        Self::build(start, false)
    }

    /// The same with [`UaConfig::app_answers_messages`]: the application calls
    /// include answering received MESSAGEs and taking a first message.
    pub fn answering(start: Instant) -> Self {
        Self::build(start, true)
    }

    fn build(start: Instant, answering: bool) -> Self {
        let mut ep = EndpointConfig::with_domain("gw.contoso.com", 0x5eed);
        ep.limits.max_transactions = 64;
        ep.limits.max_dialogs = 16;
        ep.limits.max_queued_messages = 4;
        let contact = crate::ua::address("<sip:gw.contoso.com:5061;transport=tls>")
            .expect("static contact parses");
        let mut cfg = UaConfig::new(ep, contact);
        cfg.app_answers_messages = answering;
        Harness {
            ua: UserAgent::new(cfg),
            now: start,
            sent: VecDeque::new(),
            sessions: Vec::new(),
            subs: Vec::new(),
            messages: Vec::new(),
            transmits: 0,
            events: 0,
        }
    }

    /// The user agent.
    pub fn ua(&self) -> &UserAgent {
        &self.ua
    }

    /// Runs the operations, checking invariants after each.
    pub fn run(&mut self, ops: &[FuzzOp]) {
        for op in ops {
            self.step(op);
            self.drain();
            self.check();
        }
    }

    /// Jumps from deadline to deadline for up to two simulated days, then asserts
    /// that every transaction, session and subscription has ended.
    pub fn drain_all(&mut self) {
        let end = self.now + Duration::from_secs(2 * 86_400);
        for _ in 0..1_000_000 {
            match self.ua.poll_timeout() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.ua.handle_timeout(self.now);
                    self.check_deadlines();
                    self.drain();
                    self.check();
                }
                _ => break,
            }
        }
        assert!(
            self.ua.endpoint().is_empty(),
            "transactions outlived their timers"
        );
        assert_eq!(self.ua.session_count(), 0, "sessions outlived idle timeout");
        assert_eq!(
            self.ua.subscription_count(),
            0,
            "subscriptions outlived expiry"
        );
    }

    fn step(&mut self, op: &FuzzOp) {
        let now = self.now;
        match op {
            FuzzOp::Raw { flow, data } => {
                let f = FLOWS[*flow as usize % 3];
                self.ua
                    .handle_datagram(now, f, Bytes::copy_from_slice(data));
            }
            FuzzOp::Request { flow, .. } => {
                let f = FLOWS[*flow as usize % 3];
                let text = self.request_text(op);
                self.ua.handle_datagram(now, f, Bytes::from(text));
            }
            FuzzOp::Response { which, code, tag } => {
                if self.sent.is_empty() {
                    return;
                }
                let req = &self.sent[*which as usize % self.sent.len()];
                if req.method() == Some(&fedgate_sip::Method::Ack) {
                    return;
                }
                let code = 100 + code % 600;
                let t = Bytes::from_static(b"fz");
                let mut r = crate::util::response_to(req, code, tag.then_some(&t));
                if (200..300).contains(&code) {
                    r.headers.remove(fedgate_sip::HeaderKind::ContentLength);
                    if let Ok(h) = fedgate_sip::Header::new("Contact", "<sip:peer.example.com>") {
                        r.headers.push(h);
                    }
                    if let Ok(h) = fedgate_sip::Header::new("Expires", "600") {
                        r.headers.push(h);
                    }
                    r.set_body(Bytes::new());
                }
                self.ua.handle_message(now, FLOWS[2], r);
            }
            FuzzOp::Advance { millis } => {
                self.now = now + Duration::from_millis(u64::from(*millis));
                self.ua.handle_timeout(self.now);
                self.check_deadlines();
            }
            FuzzOp::TransportError { flow } => {
                self.ua
                    .handle_transport_error(now, FLOWS[*flow as usize % 3]);
            }
            FuzzOp::App { action, which } => self.app(*action, *which),
            FuzzOp::FlowClosed { flow } => {
                self.ua.handle_flow_closed(now, FLOWS[*flow as usize % 3]);
            }
        }
    }

    fn app(&mut self, action: u8, which: u8) {
        let now = self.now;
        let s = (!self.sessions.is_empty())
            .then(|| self.sessions[which as usize % self.sessions.len()]);
        let sub = (!self.subs.is_empty()).then(|| self.subs[which as usize % self.subs.len()]);
        let a = crate::ua::address("<sip:alice@fabrikam.com>").ok();
        let b = crate::ua::address("<sip:bob@contoso.com>").ok();
        let (Some(a), Some(b)) = (a, b) else { return };
        let f = FLOWS[which as usize % 3];
        // Errors are expected (stale handles, wrong states); panics are not.
        let m = (!self.messages.is_empty())
            .then(|| self.messages[which as usize % self.messages.len()]);
        let _ = match (action % 12, s, sub) {
            (0, Some(s), _) => self.ua.accept_session(now, s),
            (1, Some(s), _) => self.ua.reject_session(now, s, 480),
            (2, Some(s), _) => {
                self.ua
                    .send_message(now, s, "text/plain", Bytes::from_static(b"hi"))
            }
            (3, Some(s), _) => self.ua.close_session(now, s),
            (4, _, _) => self
                .ua
                .open_session(now, f, &b, &a)
                .map(|id| self.sessions.push(id)),
            (5, _, _) => self
                .ua
                .subscribe(
                    now,
                    f,
                    &crate::ua::SubscribeParams {
                        from: &b,
                        to: &a,
                        event: "presence",
                        accept: &["application/pidf+xml"],
                        expires: 600,
                    },
                )
                .map(|id| self.subs.push(id)),
            (6, _, Some(x)) => self.ua.accept_subscription(now, x, SubState::Active, None),
            (7, _, Some(x)) => self.ua.notify(
                now,
                x,
                None,
                Some(("application/pidf+xml", Bytes::from_static(b"<p/>"))),
            ),
            (8, _, Some(x)) => self.ua.terminate_subscription(now, x, "rejected"),
            (9, _, Some(x)) => self.ua.reject_subscription(now, x, 403),
            (10, _, _) => match m {
                Some(m) => {
                    let status = [200, 404, 480, 403, 99][which as usize % 5];
                    self.ua.respond_message(now, m, status)
                }
                None => Ok(()),
            },
            (11, Some(s), _) => {
                let _ = self.ua.take_first_message(s);
                Ok(())
            }
            _ => Ok(()),
        };
        self.messages.truncate(64);
        // Bound the handle lists (ids of ended objects are harmless but useless).
        self.sessions.truncate(64);
        self.subs.truncate(64);
    }

    fn request_text(&self, op: &FuzzOp) -> String {
        let FuzzOp::Request {
            method,
            branch,
            call,
            from_tag,
            to_tag,
            reflect,
            cseq,
            expires,
            body,
            ..
        } = op
        else {
            return String::new();
        };
        let m = METHODS[*method as usize % METHODS.len()];
        let br = if *branch == 0 {
            "old1".to_string()
        } else {
            format!("z9hG4bKf{branch}")
        };
        let (mut call_id, mut from, mut to) = (
            format!("c{call}@fuzz"),
            format!("<sip:alice@fabrikam.com>;tag=f{from_tag}"),
            match to_tag {
                Some(t) => format!("<sip:bob@contoso.com>;tag=t{t}"),
                None => "<sip:bob@contoso.com>".to_string(),
            },
        );
        if let Some(r) = reflect
            && !self.sent.is_empty()
        {
            let ours = &self.sent[*r as usize % self.sent.len()];
            if let (Ok(c), Ok(f), Ok(t)) = (ours.call_id(), ours.from(), ours.to()) {
                call_id = String::from_utf8_lossy(&c.0).into_owned();
                // The peer's view: our From is its To.
                to = String::from_utf8_lossy(&fedgate_sip::HeaderValue::to_bytes(&f)).into_owned();
                let mut tt = t.clone();
                if tt.tag().is_none() {
                    tt.params.0.push(fedgate_sip::Param::new(
                        Bytes::from_static(b"tag"),
                        Some(Bytes::from_static(b"fz")),
                    ));
                }
                from =
                    String::from_utf8_lossy(&fedgate_sip::HeaderValue::to_bytes(&tt)).into_owned();
            }
        }
        let (ct, b) = match body % 5 {
            0 => (
                "application/sdp",
                String::from_utf8_lossy(&crate::im::sdp("192.0.2.1", 5061, "text/plain"))
                    .into_owned(),
            ),
            1 => ("application/pidf+xml", "<presence/>".to_string()),
            2 => (
                "application/im-iscomposing+xml",
                String::from_utf8_lossy(&crate::im::iscomposing(true)).into_owned(),
            ),
            3 => ("text/plain", "hello".to_string()),
            _ => ("", String::new()),
        };
        let mut s = format!(
            "{m} sip:bob@contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS peer.fabrikam.com;branch={br}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {m}\r\nContact: <sip:peer.fabrikam.com>\r\nEvent: presence\r\n"
        );
        if *body % 7 == 6 {
            s.push_str("ms-text-format: text/plain;ms-body=SGk=\r\nSubscription-State: active;expires=60\r\n");
        } else if *body % 7 == 5 {
            s.push_str("Subscription-State: terminated;reason=noresource\r\n");
        }
        if let Some(e) = expires {
            s.push_str(&format!("Expires: {e}\r\n"));
        }
        if !ct.is_empty() {
            s.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        s.push_str(&format!("Content-Length: {}\r\n\r\n{b}", b.len()));
        s
    }

    fn drain(&mut self) {
        while let Some(e) = self.ua.poll_event() {
            self.events += 1;
            match e {
                UaEvent::SessionOffered { session, .. } => self.sessions.insert(0, session),
                UaEvent::MessageToAnswer { message, .. } => self.messages.insert(0, message),
                UaEvent::SubscriptionRequested { subscription, .. } => {
                    self.subs.insert(0, subscription)
                }
                UaEvent::Request { txn, request, .. } => {
                    let r = crate::util::response_to(&request, 200, None);
                    let _ = self.ua.respond(self.now, txn, r);
                }
                _ => {}
            }
        }
        while let Some(t) = self.ua.poll_transmit() {
            self.transmits += 1;
            let m = Message::parse(t.payload).expect("every transmitted message parses back");
            // RFC 3261 §18.3 / §20.14: one Content-Length, equal to the body.
            assert_eq!(
                m.headers.count(fedgate_sip::HeaderKind::ContentLength),
                1,
                "Content-Length on every message"
            );
            assert_eq!(
                m.content_length().map(|c| c.0).ok(),
                Some(m.body.len() as u64)
            );
            if m.is_request() {
                // §8.1.1: Max-Forwards and a Via with an RFC 3261 branch.
                assert!(
                    m.headers
                        .get(fedgate_sip::HeaderKind::MaxForwards)
                        .is_some(),
                    "Max-Forwards on every request"
                );
                assert!(
                    m.top_via().is_ok_and(|v| v.has_rfc3261_branch()),
                    "a z9hG4bK branch on every request"
                );
                self.sent.push_back(m);
                if self.sent.len() > 32 {
                    self.sent.pop_front();
                }
            }
        }
    }

    fn check(&self) {
        let ep = self.ua.endpoint();
        let lim = ep.config().limits;
        let st = ep.stats();
        assert!(st.live <= lim.max_transactions);
        assert_eq!(st.keys, st.live, "one branch key per live transaction");
        assert!(st.legacy_keys <= st.live && st.merge_keys <= st.live && st.timers <= st.live);
        let dialogs = self.ua.session_count() + self.ua.subscription_count();
        assert!(dialogs <= lim.max_dialogs);
        let (client, server, indexed, timers) = self.ua.stats();
        assert!(
            client + server <= st.live,
            "UA tracks only live transactions"
        );
        assert!(indexed <= 2 * dialogs && timers <= dialogs);
    }

    /// Right after `handle_timeout(now)`, nothing may be due any more.
    fn check_deadlines(&self) {
        if let Some(t) = self.ua.poll_timeout() {
            assert!(t > self.now, "a deadline was left in the past");
        }
    }
}
