//! The application answers in-session MESSAGEs (`UaConfig::app_answers_messages`):
//! its status reaches the sender, an unanswered MESSAGE gets 504 within the bound,
//! typing indications are still answered by the UA, and the `ms-text-format` first
//! message is handed out exactly once. Two user agents wired together in memory, on
//! simulated time (as in `ua_flows.rs`).

mod common;
use common::*;

use std::time::Instant;

use bytes::Bytes;
use fedgate_sip::Message;
use fedgate_sip_txn::ua::address;
use fedgate_sip_txn::*;

fn ua(domain: &'static str, seed: u64, transport: TransportKind, answers: bool) -> UserAgent {
    ua_with(domain, seed, transport, answers)
}

/// A (fabrikam, sends) and B (contoso, the application answers) and the wire.
struct Net {
    a: UserAgent,
    b: UserAgent,
    now: Instant,
    flow: Flow,
    ev_a: Vec<UaEvent>,
    ev_b: Vec<UaEvent>,
    /// Status lines B sent, in order.
    b_statuses: Vec<u16>,
}

impl Net {
    fn new(transport: TransportKind, b: UserAgent) -> Net {
        Net {
            a: ua("gw.fabrikam.com", 11, transport, false),
            b,
            now: t0(),
            flow: Flow::new(7, transport),
            ev_a: vec![],
            ev_b: vec![],
            b_statuses: vec![],
        }
    }

    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            while let Some(e) = self.a.poll_event() {
                self.ev_a.push(e);
            }
            while let Some(e) = self.b.poll_event() {
                self.ev_b.push(e);
            }
            while let Some(t) = self.a.poll_transmit() {
                moved = true;
                self.b.handle_datagram(self.now, self.flow, t.payload);
            }
            while let Some(t) = self.b.poll_transmit() {
                moved = true;
                let m = Message::parse(t.payload.clone()).expect("b sends valid SIP");
                if let Some(s) = m.status() {
                    self.b_statuses.push(s.as_u16());
                }
                self.a.handle_datagram(self.now, self.flow, t.payload);
            }
            if !moved {
                return;
            }
        }
        panic!("message storm");
    }

    fn advance_to(&mut self, t: Instant) {
        loop {
            let next = match (self.a.poll_timeout(), self.b.poll_timeout()) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
            match next {
                Some(d) if d <= t => {
                    self.now = self.now.max(d);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = t;
        self.a.handle_timeout(t);
        self.b.handle_timeout(t);
        self.pump();
    }

    fn open(&mut self) -> (SessionId, SessionId) {
        let alice = address("<sip:alice@fabrikam.com>").expect("a");
        let bob = address("<sip:bob@contoso.com>").expect("b");
        let s = self
            .a
            .open_session(self.now, self.flow, &alice, &bob)
            .expect("open");
        self.pump();
        let sb = self
            .ev_b
            .iter()
            .find_map(|e| match e {
                UaEvent::SessionOffered { session, .. } => Some(*session),
                _ => None,
            })
            .expect("offered");
        self.b.accept_session(self.now, sb).expect("accept");
        self.pump();
        assert!(self.ev_a.contains(&UaEvent::SessionOpened { session: s }));
        self.ev_a.clear();
        self.ev_b.clear();
        self.b_statuses.clear();
        (s, sb)
    }

    /// The handles of the MESSAGEs B reported, with their bodies; clears B's events.
    fn take_to_answer(&mut self) -> Vec<(MessageHandle, Bytes)> {
        let out = self
            .ev_b
            .iter()
            .filter_map(|e| match e {
                UaEvent::MessageToAnswer { message, body, .. } => Some((*message, body.clone())),
                _ => None,
            })
            .collect();
        self.ev_b.clear();
        out
    }

    fn a_outcomes(&mut self) -> Vec<UaEvent> {
        let out = self
            .ev_a
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    UaEvent::MessageDelivered { .. } | UaEvent::MessageFailed { .. }
                )
            })
            .cloned()
            .collect();
        self.ev_a.clear();
        out
    }
}

#[test]
fn rfc7247_the_applications_status_reaches_the_sender() {
    let mut n = Net::new(
        TransportKind::Tls,
        ua("gw.contoso.com", 22, TransportKind::Tls, true),
    );
    let (s, sb) = n.open();
    n.a.send_message(
        n.now,
        s,
        "text/plain; charset=UTF-8",
        Bytes::from_static(b"one"),
    )
    .expect("sent");
    n.a.send_message(
        n.now,
        s,
        "text/plain; charset=UTF-8",
        Bytes::from_static(b"two"),
    )
    .expect("sent");
    n.pump();
    assert!(
        n.b_statuses.is_empty(),
        "nothing is answered before the app"
    );
    assert!(n.a_outcomes().is_empty());
    let got = n.take_to_answer();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0.session(), sb);
    assert_eq!(&got[0].1[..], b"one");
    assert_eq!(&got[1].1[..], b"two");
    assert_eq!(n.b.unanswered_messages(), 2);
    // Answered out of order: each status goes to its own MESSAGE.
    n.b.respond_message(n.now, got[1].0, 404).expect("answered");
    n.b.respond_message(n.now, got[0].0, 200).expect("answered");
    n.pump();
    assert_eq!(n.b_statuses, vec![404, 200]);
    assert_eq!(
        n.a_outcomes(),
        vec![
            UaEvent::MessageFailed {
                session: s,
                status: 404
            },
            UaEvent::MessageDelivered {
                session: s,
                cseq: 2
            },
        ]
    );
    assert_eq!(n.b.unanswered_messages(), 0);
    // Once only; and only final statuses.
    assert_eq!(
        n.b.respond_message(n.now, got[0].0, 500),
        Err(Error::WrongState("message already answered"))
    );
    n.a.send_message(n.now, s, "text/plain", Bytes::from_static(b"three"))
        .expect("sent");
    n.pump();
    let got = n.take_to_answer();
    assert!(matches!(
        n.b.respond_message(n.now, got[0].0, 180),
        Err(Error::InvalidMessage(_))
    ));
    n.b.respond_message(n.now, got[0].0, 480).expect("answered");
    n.pump();
    assert_eq!(
        n.a_outcomes(),
        vec![UaEvent::MessageFailed {
            session: s,
            status: 480
        }]
    );
    // Nothing more is sent once everything is answered (no 504 at the bound).
    let t = n.now + secs(11);
    n.advance_to(t);
    assert_eq!(n.b_statuses, vec![404, 200, 480]);
}

#[test]
fn unanswered_message_gets_504_at_the_bound_not_before() {
    let mut n = Net::new(
        TransportKind::Tls,
        ua("gw.contoso.com", 22, TransportKind::Tls, true),
    );
    let (s, _) = n.open();
    let start = n.now;
    n.a.send_message(n.now, s, "text/plain", Bytes::from_static(b"lost"))
        .expect("sent");
    n.pump();
    let got = n.take_to_answer();
    assert_eq!(got.len(), 1);
    assert_eq!(n.b.poll_timeout(), Some(start + secs(10)));
    n.advance_to(start + secs(10) - ms(1));
    assert!(n.b_statuses.is_empty(), "not before the bound");
    n.advance_to(start + secs(10));
    assert_eq!(n.b_statuses, vec![MESSAGE_ANSWER_TIMEOUT_STATUS]);
    assert_eq!(
        n.a_outcomes(),
        vec![UaEvent::MessageFailed {
            session: s,
            status: 504
        }]
    );
    assert_eq!(n.b.unanswered_messages(), 0);
    // The application's late answer is refused, nothing more is sent.
    assert_eq!(
        n.b.respond_message(n.now, got[0].0, 200),
        Err(Error::WrongState("message already answered"))
    );
    n.pump();
    assert_eq!(n.b_statuses, vec![504]);
}

#[test]
fn the_bound_is_capped_below_the_peers_timer_f() {
    let b = {
        let ep = EndpointConfig::with_domain("gw.contoso.com", 22);
        let mut c = UaConfig::new(ep, address("<sip:gw.contoso.com>").expect("c"));
        c.app_answers_messages = true;
        c.message_answer_timeout = secs(120);
        UserAgent::new(c)
    };
    let mut n = Net::new(TransportKind::Tls, b);
    let (s, _) = n.open();
    let start = n.now;
    n.a.send_message(n.now, s, "text/plain", Bytes::from_static(b"x"))
        .expect("sent");
    n.pump();
    assert_eq!(n.take_to_answer().len(), 1);
    // 32·T1 = 16 s, before A's Timer F (64·T1 = 32 s) would make it a 408.
    n.advance_to(start + secs(31));
    assert_eq!(
        n.a_outcomes(),
        vec![UaEvent::MessageFailed {
            session: s,
            status: 504
        }]
    );
    assert_eq!(n.b_statuses, vec![504]);
}

#[test]
fn typing_is_still_answered_by_the_ua() {
    let mut n = Net::new(
        TransportKind::Tls,
        ua("gw.contoso.com", 22, TransportKind::Tls, true),
    );
    let (s, sb) = n.open();
    n.a.send_typing(n.now, s, true).expect("typing");
    n.pump();
    assert_eq!(n.b_statuses, vec![200]);
    assert_eq!(
        n.ev_b,
        vec![UaEvent::Typing {
            session: sb,
            active: true
        }]
    );
    assert_eq!(n.b.unanswered_messages(), 0);
}

#[test]
fn a_retransmitted_message_over_udp_is_reported_once_and_answered_once() {
    let mut n = Net::new(
        TransportKind::Udp,
        ua("gw.contoso.com", 22, TransportKind::Udp, true),
    );
    let (s, _) = n.open();
    let start = n.now;
    n.a.send_message(n.now, s, "text/plain", Bytes::from_static(b"once"))
        .expect("sent");
    n.pump();
    // Timer E retransmissions (0.5, 1, 2 s) reach B while the app thinks.
    n.advance_to(start + secs(3));
    let got = n.take_to_answer();
    assert_eq!(got.len(), 1, "retransmissions are absorbed: {got:?}");
    assert!(n.b_statuses.is_empty());
    n.b.respond_message(n.now, got[0].0, 403).expect("answered");
    n.pump();
    assert_eq!(n.b_statuses, vec![403]);
    assert_eq!(
        n.a_outcomes(),
        vec![UaEvent::MessageFailed {
            session: s,
            status: 403
        }]
    );
}

#[test]
fn the_app_may_answer_after_a_bye_and_not_after_the_flow_closed() {
    let mut n = Net::new(
        TransportKind::Tls,
        ua("gw.contoso.com", 22, TransportKind::Tls, true),
    );
    let (s, sb) = n.open();
    n.a.send_message(n.now, s, "text/plain", Bytes::from_static(b"m1"))
        .expect("sent");
    n.pump();
    let got = n.take_to_answer();
    n.a.close_session(n.now, s).expect("bye");
    n.pump();
    assert!(n.ev_b.contains(&UaEvent::SessionClosed {
        session: sb,
        reason: CloseReason::ByeReceived
    }));
    n.b_statuses.clear();
    n.b.respond_message(n.now, got[0].0, 404)
        .expect("a pending MESSAGE outlives the BYE");
    n.pump();
    assert_eq!(n.b_statuses, vec![404]);

    let (s, _) = n.open();
    n.a.send_message(n.now, s, "text/plain", Bytes::from_static(b"m2"))
        .expect("sent");
    n.pump();
    let got = n.take_to_answer();
    n.b.handle_flow_closed(n.now, n.flow);
    assert_eq!(n.b.unanswered_messages(), 0);
    assert!(n.b.respond_message(n.now, got[0].0, 200).is_err());
    assert!(n.b.poll_transmit().is_none());
}

fn lync_invite(call: &str) -> Bytes {
    let mtf = fedgate_sip_txn::im::ms_text_format("text/plain; charset=UTF-8", b"Hi Bob");
    let sdp = fedgate_sip_txn::im::sdp(
        "192.0.2.10",
        5061,
        fedgate_sip_txn::im::DEFAULT_ACCEPT_TYPES,
    );
    Bytes::from(format!(
        "INVITE sip:bob@contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bK{call}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@fabrikam.com>;tag={call}\r\nTo: <sip:bob@contoso.com>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@fabrikam.com>\r\nms-text-format: {};msgr=WAAtAE0A\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{}",
        String::from_utf8_lossy(&mtf),
        sdp.len(),
        String::from_utf8_lossy(&sdp)
    ))
}

fn offered(b: &mut UserAgent) -> SessionId {
    match b.poll_event() {
        Some(UaEvent::SessionOffered {
            session,
            has_first_message: true,
            ..
        }) => session,
        other => panic!("{other:?}"),
    }
}

#[test]
fn lync_first_message_taken_before_the_answer_is_handed_out_once() {
    let link = Flow::new(3, TransportKind::Tls);
    let mut b = ua("gw.contoso.com", 22, TransportKind::Tls, true);
    let now = t0();
    b.handle_datagram(now, link, lync_invite("c1"));
    let sb = offered(&mut b);
    assert_eq!(
        b.take_first_message(sb),
        Some((
            Bytes::from_static(b"text/plain; charset=UTF-8"),
            Bytes::from_static(b"Hi Bob")
        ))
    );
    assert_eq!(b.take_first_message(sb), None, "once");
    b.accept_session(now, sb).expect("accept");
    assert_eq!(b.poll_event(), None, "not delivered again on accept");
    let ok = Message::parse(b.poll_transmit().expect("200").payload).expect("parses");
    assert_eq!(ok.status().map(|s| s.as_u16()), Some(200));
    let supported: Vec<Bytes> = ok
        .headers
        .supported()
        .expect("supported")
        .into_iter()
        .map(|t| t.0)
        .collect();
    assert!(
        supported.contains(&Bytes::from_static(b"ms-text-format")),
        "still advertised: Lync must not send it again"
    );
    assert_eq!(b.take_first_message(sb), None, "not after the answer");

    // Refused: the INVITE carries the delivery error.
    b.handle_datagram(now, link, lync_invite("c2"));
    let sb = offered(&mut b);
    assert!(b.take_first_message(sb).is_some());
    b.reject_session(now, sb, 480).expect("reject");
    let r = Message::parse(b.poll_transmit().expect("480").payload).expect("parses");
    assert_eq!(r.status().map(|s| s.as_u16()), Some(480));
    assert!(matches!(
        b.poll_event(),
        Some(UaEvent::SessionClosed {
            reason: CloseReason::Declined(480),
            ..
        })
    ));
    assert_eq!(b.poll_event(), None);

    // Not taken: delivered on accept, as before.
    b.handle_datagram(now, link, lync_invite("c3"));
    let sb = offered(&mut b);
    b.accept_session(now, sb).expect("accept");
    assert_eq!(
        b.poll_event(),
        Some(UaEvent::MessageReceived {
            session: sb,
            content_type: Bytes::from_static(b"text/plain; charset=UTF-8"),
            body: Bytes::from_static(b"Hi Bob"),
        })
    );
}

#[test]
fn default_config_still_answers_200_itself() {
    let mut n = Net::new(
        TransportKind::Tls,
        ua("gw.contoso.com", 22, TransportKind::Tls, false),
    );
    let (s, sb) = n.open();
    n.a.send_message(n.now, s, "text/plain", Bytes::from_static(b"hi"))
        .expect("sent");
    n.pump();
    assert_eq!(n.b_statuses, vec![200]);
    assert_eq!(
        n.ev_b,
        vec![UaEvent::MessageReceived {
            session: sb,
            content_type: Bytes::from_static(b"text/plain"),
            body: Bytes::from_static(b"hi"),
        }]
    );
}
