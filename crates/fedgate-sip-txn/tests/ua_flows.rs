//! Two user agents wired together in memory: full IM and presence flows on
//! simulated time (RFC 3261 §12-13, RFC 6665, RFC 3856, Lync session-mode IM).

mod common;
use common::*;

use std::time::{Duration, Instant};

use bytes::Bytes;
use fedgate_sip::{Message, Method};
use fedgate_sip_txn::ua::address;
use fedgate_sip_txn::*;

const LINK: Flow = Flow::new(7, TransportKind::Tls);

fn ua(domain: &'static str, seed: u64, transport: TransportKind) -> UserAgent {
    ua_with(domain, seed, transport, false)
}

/// Two UAs and a wire between them. `log` records every message that crossed.
struct Net {
    a: UserAgent,
    b: UserAgent,
    now: Instant,
    flow: Flow,
    ev_a: Vec<UaEvent>,
    ev_b: Vec<UaEvent>,
    log: Vec<(char, Message)>,
    drop_next_to_a: usize,
}

impl Net {
    fn new(transport: TransportKind) -> Net {
        Net {
            a: ua("gw.fabrikam.com", 11, transport),
            b: ua("gw.contoso.com", 22, transport),
            now: t0(),
            flow: Flow::new(7, transport),
            ev_a: vec![],
            ev_b: vec![],
            log: vec![],
            drop_next_to_a: 0,
        }
    }

    /// Moves messages both ways until quiet.
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
                self.log.push((
                    '>',
                    Message::parse(t.payload.clone()).expect("a sends valid SIP"),
                ));
                self.b.handle_datagram(self.now, self.flow, t.payload);
            }
            while let Some(t) = self.b.poll_transmit() {
                moved = true;
                self.log.push((
                    '<',
                    Message::parse(t.payload.clone()).expect("b sends valid SIP"),
                ));
                if self.drop_next_to_a > 0 {
                    self.drop_next_to_a -= 1;
                    continue;
                }
                self.a.handle_datagram(self.now, self.flow, t.payload);
            }
            if !moved {
                while let Some(e) = self.a.poll_event() {
                    self.ev_a.push(e);
                }
                while let Some(e) = self.b.poll_event() {
                    self.ev_b.push(e);
                }
                return;
            }
        }
        panic!("message storm");
    }

    fn next_deadline(&self) -> Option<Instant> {
        match (self.a.poll_timeout(), self.b.poll_timeout()) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        }
    }

    /// Jumps to `t`, firing every deadline on the way.
    fn advance_to(&mut self, t: Instant) {
        while let Some(d) = self.next_deadline() {
            if d > t {
                break;
            }
            self.now = self.now.max(d);
            self.a.handle_timeout(self.now);
            self.b.handle_timeout(self.now);
            self.pump();
        }
        self.now = t;
        self.a.handle_timeout(t);
        self.b.handle_timeout(t);
        self.pump();
    }

    fn advance(&mut self, d: Duration) {
        let t = self.now + d;
        self.advance_to(t);
    }

    fn methods(&self, dir: char) -> Vec<String> {
        self.log
            .iter()
            .filter(|(d, _)| *d == dir)
            .map(|(_, m)| match m.method() {
                Some(x) => x.to_string(),
                None => m.status().map_or(0, |s| s.as_u16()).to_string(),
            })
            .collect()
    }
}

fn alice() -> fedgate_sip::Address {
    address("<sip:alice@fabrikam.com>").expect("a")
}
fn bob() -> fedgate_sip::Address {
    address("<sip:bob@contoso.com>").expect("b")
}

#[test]
fn im_session_invite_200_ack_two_messages_bye() {
    let mut n = Net::new(TransportKind::Tls);
    let s =
        n.a.open_session(n.now, n.flow, &alice(), &bob())
            .expect("open");
    // Queued before the session is up, sent after the ACK.
    n.a.send_message(
        n.now,
        s,
        "text/plain; charset=UTF-8",
        Bytes::from_static(b"hello"),
    )
    .expect("queued");
    n.pump();
    let sb = match &n.ev_b[..] {
        [
            UaEvent::SessionOffered {
                session,
                has_first_message: false,
                remote,
                ..
            },
        ] => {
            assert_eq!(remote.uri.to_vec(), b"sip:alice@fabrikam.com".to_vec());
            *session
        }
        other => panic!("{other:?}"),
    };
    n.ev_b.clear();
    n.advance(ms(300));
    n.b.accept_session(n.now, sb).expect("accept");
    n.pump();
    assert!(n.ev_a.contains(&UaEvent::SessionOpened { session: s }));
    assert!(n.ev_b.contains(&UaEvent::SessionOpened { session: sb }));
    n.b.send_typing(n.now, sb, true).expect("typing");
    n.a.send_message(
        n.now,
        s,
        "text/plain; charset=UTF-8",
        Bytes::from_static(b"second"),
    )
    .expect("sent");
    n.pump();
    let got: Vec<&Bytes> = n
        .ev_b
        .iter()
        .filter_map(|e| match e {
            UaEvent::MessageReceived { body, .. } => Some(body),
            _ => None,
        })
        .collect();
    assert_eq!(
        got,
        vec![
            &Bytes::from_static(b"hello"),
            &Bytes::from_static(b"second")
        ]
    );
    assert!(n.ev_a.contains(&UaEvent::Typing {
        session: s,
        active: true
    }));
    n.a.close_session(n.now, s).expect("bye");
    n.pump();
    assert!(n.ev_b.contains(&UaEvent::SessionClosed {
        session: sb,
        reason: CloseReason::ByeReceived
    }));
    assert_eq!(
        n.methods('>'),
        vec!["INVITE", "ACK", "MESSAGE", "MESSAGE", "200", "BYE"]
    );
    assert_eq!(
        n.methods('<'),
        vec!["100", "200", "200", "MESSAGE", "200", "200"]
    );
    // The 200 to the INVITE carries the SDP answer; the INVITE the offer.
    let invite = &n.log[0].1;
    assert!(String::from_utf8_lossy(&invite.body).contains("m=message 5061 sip null"));
    let ok = n
        .log
        .iter()
        .find(|(d, m)| *d == '<' && m.status().map(|s| s.as_u16()) == Some(200))
        .expect("200");
    assert!(fedgate_sip_txn::im::is_im_offer(&ok.1.body));
    assert_eq!(n.a.session_count() + n.b.session_count(), 0);
    // In-dialog requests carry increasing CSeqs and the To tag.
    let msgs: Vec<u32> = n
        .log
        .iter()
        .filter(|(d, m)| *d == '>' && m.method() == Some(&Method::Message))
        .map(|(_, m)| m.cseq().expect("c").seq)
        .collect();
    assert_eq!(msgs, vec![2, 3]);
    // Everything settles: transactions are gone after their timers.
    n.advance(secs(60));
    assert!(n.a.endpoint().is_empty() && n.b.endpoint().is_empty());
}

#[test]
fn lync_ms_text_format_first_message_is_delivered_exactly_once() {
    let mut n = Net::new(TransportKind::Tls);
    // A Lync-shaped INVITE, injected into B.
    let mtf = fedgate_sip_txn::im::ms_text_format("text/plain; charset=UTF-8", b"Hi Bob");
    let sdp = fedgate_sip_txn::im::sdp(
        "192.0.2.10",
        5061,
        fedgate_sip_txn::im::DEFAULT_ACCEPT_TYPES,
    );
    let invite = format!(
        "INVITE sip:bob@contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bKlync1;ms-received-port=5061;ms-received-cid=1E00\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@fabrikam.com>;tag=lync1;epid=d6277c8671\r\nTo: <sip:bob@contoso.com>\r\nCall-ID: lynccall1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@fabrikam.com;opaque=user:epid:x;gruu>\r\nSupported: ms-sender\r\nMs-Conversation-ID: AcqXyz\r\nms-text-format: {};msgr=WAAtAE0A\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{}",
        String::from_utf8_lossy(&mtf),
        sdp.len(),
        String::from_utf8_lossy(&sdp)
    );
    n.b.handle_datagram(n.now, LINK, Bytes::from(invite));
    let sb = match n.b.poll_event() {
        Some(UaEvent::SessionOffered {
            session,
            has_first_message: true,
            ..
        }) => session,
        other => panic!("{other:?}"),
    };
    assert_eq!(n.b.poll_event(), None, "not delivered before acceptance");
    n.b.accept_session(n.now, sb).expect("accept");
    let mut delivered = vec![];
    while let Some(e) = n.b.poll_event() {
        delivered.push(e);
    }
    assert_eq!(
        delivered,
        vec![UaEvent::MessageReceived {
            session: sb,
            content_type: Bytes::from_static(b"text/plain; charset=UTF-8"),
            body: Bytes::from_static(b"Hi Bob"),
        }]
    );
    let ok = Message::parse(n.b.poll_transmit().expect("200").payload).expect("parses");
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
        "advertised, so Lync will not re-send"
    );

    // Without a decodable ms-body, nothing is advertised and nothing delivered.
    let mut c = ua("gw.contoso.com", 33, TransportKind::Tls);
    let bad = String::from_utf8_lossy(&Message::parse(Bytes::from(format!(
        "INVITE sip:bob@contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bKlync2\r\nMax-Forwards: 70\r\nFrom: <sip:alice@fabrikam.com>;tag=l2\r\nTo: <sip:bob@contoso.com>\r\nCall-ID: lynccall2\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@fabrikam.com>\r\nms-text-format: text/plain;ms-body=!!!\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{}",
        sdp.len(),
        String::from_utf8_lossy(&sdp)
    ))).expect("parses").to_bytes()).into_owned();
    c.handle_datagram(n.now, LINK, Bytes::from(bad));
    let sc = match c.poll_event() {
        Some(UaEvent::SessionOffered {
            session,
            has_first_message: false,
            ..
        }) => session,
        other => panic!("{other:?}"),
    };
    c.accept_session(n.now, sc).expect("accept");
    assert_eq!(c.poll_event(), None);
    let ok = Message::parse(c.poll_transmit().expect("200").payload).expect("parses");
    assert!(ok.headers.supported().expect("s").is_empty());
}

#[test]
fn non_im_invite_gets_488_and_unknown_in_dialog_request_481() {
    let mut b = ua("gw.contoso.com", 5, TransportKind::Tls);
    let t = t0();
    b.handle_message(t, LINK, msg(INVITE_UDP));
    let r = Message::parse(b.poll_transmit().expect("488").payload).expect("p");
    assert_eq!(r.status().map(|s| s.as_u16()), Some(488));
    let bye = MESSAGE_UDP
        .replace("MESSAGE sip", "BYE sip")
        .replace("CSeq: 1 MESSAGE", "CSeq: 2 BYE")
        .replace(
            "To: <sip:bob@contoso.com>",
            "To: <sip:bob@contoso.com>;tag=nope",
        );
    b.handle_message(t, LINK, msg(&bye));
    let r = Message::parse(b.poll_transmit().expect("481").payload).expect("p");
    assert_eq!(r.status().map(|s| s.as_u16()), Some(481));
}

#[test]
fn rfc3261_12_2_2_out_of_order_in_dialog_request_gets_500() {
    let mut n = Net::new(TransportKind::Tls);
    let s =
        n.a.open_session(n.now, n.flow, &alice(), &bob())
            .expect("open");
    n.pump();
    let sb = match n.ev_b[0] {
        UaEvent::SessionOffered { session, .. } => session,
        _ => panic!(),
    };
    n.b.accept_session(n.now, sb).expect("accept");
    n.pump();
    n.a.send_message(n.now, s, "text/plain", Bytes::from_static(b"x"))
        .expect("sent");
    n.pump();
    // Replay A's MESSAGE with a lower CSeq and a new branch.
    let m = n
        .log
        .iter()
        .rev()
        .find(|(d, m)| *d == '>' && m.method() == Some(&Method::Message))
        .expect("m")
        .1
        .clone();
    let text = String::from_utf8_lossy(&m.to_bytes())
        .replace("CSeq: 2 MESSAGE", "CSeq: 1 MESSAGE")
        .replacen("branch=z9hG4bK", "branch=z9hG4bKreplay", 1);
    n.b.handle_datagram(n.now, n.flow, Bytes::from(text));
    let r = Message::parse(n.b.poll_transmit().expect("500").payload).expect("p");
    assert_eq!(r.status().map(|s| s.as_u16()), Some(500));
}

#[test]
fn idle_session_is_closed_with_bye_after_configured_time() {
    let mut n = Net::new(TransportKind::Tls);
    let s =
        n.a.open_session(n.now, n.flow, &alice(), &bob())
            .expect("open");
    n.pump();
    let sb = match n.ev_b[0] {
        UaEvent::SessionOffered { session, .. } => session,
        _ => panic!(),
    };
    n.b.accept_session(n.now, sb).expect("accept");
    n.pump();
    n.advance(secs(599));
    assert_eq!(n.a.session_count(), 1);
    n.advance(secs(2));
    assert!(
        n.ev_a.contains(&UaEvent::SessionClosed {
            session: s,
            reason: CloseReason::Idle
        }) || n.ev_b.contains(&UaEvent::SessionClosed {
            session: sb,
            reason: CloseReason::Idle
        })
    );
    assert_eq!(n.a.session_count() + n.b.session_count(), 0);
    assert!(
        n.methods('>').contains(&"BYE".to_string()) || n.methods('<').contains(&"BYE".to_string())
    );
}

#[test]
fn uas_retransmits_2xx_over_udp_until_ack() {
    let mut n = Net::new(TransportKind::Udp);
    n.a.open_session(n.now, n.flow, &alice(), &bob())
        .expect("open");
    n.pump();
    let sb = match n.ev_b[0] {
        UaEvent::SessionOffered { session, .. } => session,
        _ => panic!(),
    };
    n.drop_next_to_a = 2; // the 200 and its first retransmission are lost
    n.b.accept_session(n.now, sb).expect("accept");
    n.pump();
    assert!(
        !n.ev_b
            .iter()
            .any(|e| matches!(e, UaEvent::SessionOpened { .. }))
    );
    n.advance(ms(1600));
    assert!(n.ev_b.contains(&UaEvent::SessionOpened { session: sb }));
    let oks = n
        .log
        .iter()
        .filter(|(d, m)| *d == '<' && m.status().map(|s| s.as_u16()) == Some(200))
        .count();
    assert_eq!(oks, 3, "200 at 0, 0.5 s, 1.5 s");
}

#[test]
fn rfc3261_13_3_1_4_no_ack_means_bye_after_64_t1() {
    let mut b = ua("gw.contoso.com", 5, TransportKind::Tls);
    let t = t0();
    let mut n = Net::new(TransportKind::Tls);
    n.a.open_session(t, LINK, &alice(), &bob()).expect("open");
    let inv = n.a.poll_transmit().expect("INVITE").payload;
    b.handle_datagram(t, LINK, inv);
    let sb = match b.poll_event() {
        Some(UaEvent::SessionOffered { session, .. }) => session,
        o => panic!("{o:?}"),
    };
    b.accept_session(t, sb).expect("accept");
    while b.poll_transmit().is_some() {}
    b.handle_timeout(t + secs(32));
    assert_eq!(
        b.poll_event(),
        Some(UaEvent::SessionClosed {
            session: sb,
            reason: CloseReason::AckTimeout
        })
    );
    let bye = Message::parse(b.poll_transmit().expect("BYE").payload).expect("p");
    assert_eq!(bye.method(), Some(&Method::Bye));
}

// ---- subscriptions -------------------------------------------------------------

const PIDF: &str = "application/pidf+xml";

#[test]
fn presence_subscribe_notify_refresh_unsubscribe() {
    let mut n = Net::new(TransportKind::Tls);
    let sa = subscribe_presence(&mut n, 3600);
    n.pump();
    let sb = match &n.ev_b[..] {
        [
            UaEvent::SubscriptionRequested {
                subscription,
                expires: 3600,
                event,
                ..
            },
        ] => {
            assert_eq!(event.as_ref(), b"presence");
            *subscription
        }
        other => panic!("{other:?}"),
    };
    n.b.accept_subscription(n.now, sb, SubState::Pending, None)
        .expect("accept");
    n.pump();
    assert!(n.ev_a.iter().any(|e| matches!(
        e,
        UaEvent::Notified {
            state: SubState::Pending,
            ..
        }
    )));
    n.b.notify(
        n.now,
        sb,
        Some(SubState::Active),
        Some((PIDF, Bytes::from_static(b"<presence/>"))),
    )
    .expect("notify");
    n.pump();
    assert!(n.ev_a.iter().any(|e| matches!(e, UaEvent::Notified { state: SubState::Active, body, .. } if body.as_ref() == b"<presence/>")));
    assert_eq!(n.a.subscription_state(sa), Some(&SubState::Active));
    // The subscriber refreshes 5 min before expiry; the notifier re-grants.
    n.ev_b.clear();
    n.advance(secs(3600 - 300 - 1));
    assert!(
        !n.ev_b
            .iter()
            .any(|e| matches!(e, UaEvent::SubscriptionRefreshed { .. }))
    );
    n.advance(secs(2));
    assert!(n.ev_b.contains(&UaEvent::SubscriptionRefreshed {
        subscription: sb,
        expires: 3600
    }));
    // Still alive well past the first hour.
    n.advance(secs(1800));
    assert_eq!(n.a.subscription_count(), 1);
    assert_eq!(n.b.subscription_count(), 1);
    // Unsubscribe: Expires 0 → 200 and a final NOTIFY terminated.
    n.a.unsubscribe(n.now, sa).expect("unsub");
    n.pump();
    assert!(n.ev_b.contains(&UaEvent::SubscriptionTerminated {
        subscription: sb,
        reason: SubEnd::Unsubscribed
    }));
    assert!(n.ev_a.iter().any(|e| matches!(e, UaEvent::SubscriptionTerminated { subscription, reason: SubEnd::Notified(Some(r)) } if *subscription == sa && r.as_ref() == b"timeout")));
    assert_eq!(n.a.subscription_count() + n.b.subscription_count(), 0);
    let last_notify = n
        .log
        .iter()
        .rev()
        .find(|(_, m)| m.method() == Some(&Method::Notify))
        .expect("n");
    assert_eq!(
        fedgate_sip_txn::ua::sub_state_of(&last_notify.1),
        Some(SubState::Terminated(Some(Bytes::from_static(b"timeout"))))
    );
}

#[test]
fn rfc6665_4_2_1_1_interval_too_brief_gets_423_and_subscriber_retries() {
    let mut n = Net::new(TransportKind::Tls);
    let sa = subscribe_presence(&mut n, 10);
    n.pump();
    let codes = n.methods('<');
    assert_eq!(codes[0], "423");
    let min = n
        .log
        .iter()
        .find(|(_, m)| m.status().map(|s| s.as_u16()) == Some(423))
        .expect("423")
        .1
        .headers
        .min_expires()
        .expect("Min-Expires")
        .0;
    assert_eq!(min, 60);
    // The retry asked for Min-Expires.
    assert!(matches!(
        &n.ev_b[..],
        [UaEvent::SubscriptionRequested { expires: 60, .. }]
    ));
    assert!(n.a.subscription_state(sa).is_some());
}

#[test]
fn lync_expires_is_honoured_within_bounds_and_capped() {
    let mut n = Net::new(TransportKind::Tls);
    subscribe_presence(&mut n, 29_087);
    subscribe_presence(&mut n, 1_000_000);
    n.pump();
    let granted: Vec<u32> = n
        .ev_b
        .iter()
        .filter_map(|e| match e {
            UaEvent::SubscriptionRequested { expires, .. } => Some(*expires),
            _ => None,
        })
        .collect();
    assert_eq!(granted, vec![29_087, 43_200]);
}

#[test]
fn rfc6665_timer_n_fails_subscription_without_notify() {
    let mut n = Net::new(TransportKind::Tls);
    let sa = subscribe_presence(&mut n, 3600);
    n.pump();
    // B never answers: its transaction answers 408 after 64·T1, and Timer N fires too.
    n.advance(secs(31));
    assert!(n.ev_a.is_empty());
    n.advance(secs(2));
    assert!(n.ev_a.iter().any(
        |e| matches!(e, UaEvent::SubscriptionTerminated { subscription, .. } if *subscription == sa)
    ));
    assert_eq!(n.a.subscription_count(), 0);

    // With a 200 but no NOTIFY at all: Timer N alone ends it at 64·T1.
    let mut a = ua("gw.fabrikam.com", 91, TransportKind::Tls);
    let t = t0();
    let sa = a
        .subscribe(
            t,
            LINK,
            &SubscribeParams {
                from: &alice(),
                to: &bob(),
                event: "presence",
                accept: &[PIDF],
                expires: 3600,
            },
        )
        .expect("sub");
    let sent = Message::parse(a.poll_transmit().expect("SUBSCRIBE").payload).expect("p");
    let mut ok = resp(&sent, 200);
    ok.headers.remove(fedgate_sip::HeaderKind::ContentLength);
    fedgate_sip_txn::util::response_to(&sent, 200, None);
    ok.headers
        .push(fedgate_sip::Header::new("Contact", "<sip:bob@gw.contoso.com>").expect("h"));
    ok.headers
        .push(fedgate_sip::Header::new("Expires", "3600").expect("h"));
    ok.set_body(Bytes::new());
    a.handle_message(t + ms(10), LINK, ok);
    assert_eq!(a.poll_event(), None);
    assert_eq!(a.poll_timeout(), Some(t + secs(32)));
    a.handle_timeout(t + secs(32));
    assert_eq!(
        a.poll_event(),
        Some(UaEvent::SubscriptionTerminated {
            subscription: sa,
            reason: SubEnd::NoNotify
        })
    );
}

#[test]
fn rfc6665_4_1_2_4_notify_before_2xx_creates_the_dialog() {
    let t = t0();
    let mut a = ua("gw.fabrikam.com", 91, TransportKind::Tls);
    let sa = a
        .subscribe(
            t,
            LINK,
            &SubscribeParams {
                from: &alice(),
                to: &bob(),
                event: "presence",
                accept: &[PIDF],
                expires: 3600,
            },
        )
        .expect("sub");
    let sent = Message::parse(a.poll_transmit().expect("SUBSCRIBE").payload).expect("p");
    let from_tag =
        String::from_utf8_lossy(sent.from().expect("f").tag().expect("tag")).into_owned();
    let call_id = String::from_utf8_lossy(&sent.call_id().expect("c").0).into_owned();
    let notify = format!(
        "NOTIFY sip:gw.fabrikam.com:5061;transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS gw.contoso.com;branch=z9hG4bKn1\r\nMax-Forwards: 70\r\nFrom: <sip:bob@contoso.com>;tag=bb\r\nTo: <sip:alice@fabrikam.com>;tag={from_tag}\r\nCall-ID: {call_id}\r\nCSeq: 1 NOTIFY\r\nContact: <sip:gw.contoso.com>\r\nEvent: presence\r\nSubscription-State: active;expires=3600\r\nContent-Type: application/pidf+xml\r\nContent-Length: 3\r\n\r\n<p>"
    );
    a.handle_datagram(t, LINK, Bytes::from(notify));
    let r = Message::parse(a.poll_transmit().expect("200").payload).expect("p");
    assert_eq!(r.status().map(|s| s.as_u16()), Some(200));
    assert!(
        matches!(a.poll_event(), Some(UaEvent::Notified { subscription, state: SubState::Active, .. }) if subscription == sa)
    );
    // The late 2xx then fits the same dialog.
    let mut ok = resp(&sent, 200);
    ok.headers.remove(fedgate_sip::HeaderKind::To);
    ok.headers
        .push(fedgate_sip::Header::new("To", "<sip:bob@contoso.com>;tag=bb").expect("h"));
    ok.headers
        .push(fedgate_sip::Header::new("Contact", "<sip:gw.contoso.com>").expect("h"));
    a.handle_message(t, LINK, ok);
    assert_eq!(a.subscription_state(sa), Some(&SubState::Active));
    // No Timer N failure later.
    a.handle_timeout(t + secs(40));
    assert_eq!(a.poll_event(), None);
    assert_eq!(a.subscription_count(), 1);
}

#[test]
fn rfc6665_notifier_expiry_sends_terminated_notify() {
    let mut n = Net::new(TransportKind::Tls);
    n.b = {
        let ep = EndpointConfig::with_domain("gw.contoso.com", 22);
        let mut c = UaConfig::new(
            ep,
            address("<sip:gw.contoso.com:5061;transport=tls>").expect("c"),
        );
        c.max_expires = 600;
        UserAgent::new(c)
    };
    let sa = subscribe_presence(&mut n, 3600);
    n.pump();
    let sb = match n.ev_b[0] {
        UaEvent::SubscriptionRequested {
            subscription,
            expires: 600,
            ..
        } => subscription,
        ref o => panic!("{o:?}"),
    };
    n.b.accept_subscription(
        n.now,
        sb,
        SubState::Active,
        Some((PIDF, Bytes::from_static(b"<p/>"))),
    )
    .expect("ok");
    n.pump();
    assert_eq!(n.b.subscription_expires_at(sb), Some(n.now + secs(600)));
    // A refreshes at 600 - 300 = 300 s; drop A so nothing refreshes, by letting B
    // expire on its own clock: fire B's expiry directly.
    let mut b = std::mem::replace(&mut n.b, ua("x.example", 1, TransportKind::Tls));
    let when = b.subscription_expires_at(sb).expect("e");
    b.handle_timeout(when);
    let mut evs = vec![];
    while let Some(e) = b.poll_event() {
        evs.push(e);
    }
    assert!(evs.contains(&UaEvent::SubscriptionTerminated {
        subscription: sb,
        reason: SubEnd::Expired
    }));
    let notify = Message::parse(b.poll_transmit().expect("NOTIFY").payload).expect("p");
    assert_eq!(
        fedgate_sip_txn::ua::sub_state_of(&notify),
        Some(SubState::Terminated(Some(Bytes::from_static(b"timeout"))))
    );
    let _ = sa;
}

#[test]
fn rfc6665_unknown_event_489_and_unknown_subscription_481() {
    let t = t0();
    let mut b = ua("gw.contoso.com", 5, TransportKind::Tls);
    let sub = "SUBSCRIBE sip:bob@contoso.com SIP/2.0
Via: SIP/2.0/TLS gw.fabrikam.com;branch=z9hG4bKs1
Max-Forwards: 70
From: <sip:alice@fabrikam.com>;tag=a1
To: <sip:bob@contoso.com>
Call-ID: s1@fabrikam.com
CSeq: 1 SUBSCRIBE
Contact: <sip:gw.fabrikam.com>
Event: dialog
Expires: 3600
Content-Length: 0

";
    b.handle_message(t, LINK, msg(sub));
    let r = Message::parse(b.poll_transmit().expect("489").payload).expect("p");
    assert_eq!(r.status().map(|s| s.as_u16()), Some(489));
    let notify = sub
        .replace("SUBSCRIBE sip", "NOTIFY sip")
        .replace("CSeq: 1 SUBSCRIBE", "CSeq: 1 NOTIFY")
        .replace(
            "To: <sip:bob@contoso.com>",
            "To: <sip:bob@contoso.com>;tag=zz",
        )
        .replace("z9hG4bKs1", "z9hG4bKs2");
    b.handle_message(t, LINK, msg(&notify));
    let r = Message::parse(b.poll_transmit().expect("481").payload).expect("p");
    assert_eq!(r.status().map(|s| s.as_u16()), Some(481));
}

#[test]
fn dialog_limit_answers_503_with_retry_after() {
    let t = t0();
    let ep = EndpointConfig::with_domain("gw.contoso.com", 5);
    let mut c = UaConfig::new(ep, address("<sip:gw.contoso.com>").expect("c"));
    c.endpoint.limits.max_dialogs = 1;
    let mut b = UserAgent::new(c);
    let sub = |i: u32| {
        format!(
            "SUBSCRIBE sip:bob@contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS gw.fabrikam.com;branch=z9hG4bKs{i}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@fabrikam.com>;tag=a{i}\r\nTo: <sip:bob@contoso.com>\r\nCall-ID: s{i}@fabrikam.com\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:gw.fabrikam.com>\r\nEvent: presence\r\nContent-Length: 0\r\n\r\n"
        )
    };
    b.handle_datagram(t, LINK, Bytes::from(sub(1)));
    b.handle_datagram(t, LINK, Bytes::from(sub(2)));
    let r = Message::parse(b.poll_transmit().expect("503").payload).expect("p");
    assert_eq!(r.status().map(|s| s.as_u16()), Some(503));
    assert!(r.headers.get_named("Retry-After").next().is_some());
    assert_eq!(b.subscription_count(), 1);
}

#[test]
fn rfc3261_8_2_2_3_unsupported_require_gets_420() {
    let t = t0();
    let mut b = ua("gw.contoso.com", 5, TransportKind::Tls);
    let m = MESSAGE_UDP.replace(
        "Content-Length: 0",
        "Require: 100rel, foo\nContent-Length: 0",
    );
    b.handle_message(t, LINK, msg(&m));
    let r = Message::parse(b.poll_transmit().expect("420").payload).expect("p");
    assert_eq!(r.status().map(|s| s.as_u16()), Some(420));
    let uns: Vec<Bytes> = r
        .headers
        .typed_list::<fedgate_sip::OptionTag>(fedgate_sip::HeaderKind::Unsupported)
        .expect("u")
        .into_iter()
        .map(|t| t.0)
        .collect();
    assert_eq!(
        uns,
        vec![Bytes::from_static(b"100rel"), Bytes::from_static(b"foo")]
    );
    assert_eq!(b.poll_event(), None);
}

#[test]
fn page_mode_message_goes_to_the_application() {
    let t = t0();
    let mut b = ua("gw.contoso.com", 5, TransportKind::Tls);
    b.handle_message(t, LINK, msg(MESSAGE_UDP));
    let (txn, req) = match b.poll_event() {
        Some(UaEvent::Request { txn, request, .. }) => (txn, request),
        o => panic!("{o:?}"),
    };
    assert!(
        b.poll_transmit().is_none(),
        "not answered before the application does"
    );
    b.respond(t, txn, resp(&req, 202)).expect("answered");
    let r = Message::parse(b.poll_transmit().expect("202").payload).expect("p");
    assert_eq!(r.status().map(|s| s.as_u16()), Some(202));
}

fn offered(n: &Net) -> SessionId {
    n.ev_b
        .iter()
        .find_map(|e| match e {
            UaEvent::SessionOffered { session, .. } => Some(*session),
            _ => None,
        })
        .expect("offered")
}

fn requested(n: &Net) -> SubscriptionId {
    n.ev_b
        .iter()
        .find_map(|e| match e {
            UaEvent::SubscriptionRequested { subscription, .. } => Some(*subscription),
            _ => None,
        })
        .expect("requested")
}

#[test]
fn rfc3261_9_2_caller_cancels_an_offered_session() {
    let mut n = Net::new(TransportKind::Tls);
    let s =
        n.a.open_session(n.now, n.flow, &alice(), &bob())
            .expect("open");
    n.pump();
    let sb = offered(&n);
    n.advance(ms(250)); // 100 Trying lets the caller CANCEL
    n.a.close_session(n.now, s).expect("cancel");
    n.pump();
    assert!(n.ev_b.contains(&UaEvent::SessionClosed {
        session: sb,
        reason: CloseReason::Cancelled
    }));
    assert!(n.ev_a.contains(&UaEvent::SessionClosed {
        session: s,
        reason: CloseReason::Local
    }));
    assert_eq!(n.methods('>'), vec!["INVITE", "CANCEL", "ACK"]);
    assert_eq!(n.methods('<'), vec!["100", "200", "487"]);
    assert!(n.b.accept_session(n.now, sb).is_err());
}

#[test]
fn uac_reacks_a_retransmitted_2xx_over_udp() {
    let mut n = Net::new(TransportKind::Udp);
    let s =
        n.a.open_session(n.now, n.flow, &alice(), &bob())
            .expect("open");
    n.pump();
    let sb = offered(&n);
    // B retransmits its 200 (UDP); A must answer each copy with the same ACK and
    // open the session once.
    n.b.accept_session(n.now, sb).expect("accept");
    // Deliver the 200 to A but hold A's ACK back from B.
    let ok = n.b.poll_transmit().expect("200");
    n.a.handle_datagram(n.now, n.flow, ok.payload.clone());
    let ack1 = n.a.poll_transmit().expect("ACK");
    n.a.handle_datagram(n.now + ms(500), n.flow, ok.payload);
    let ack2 = n.a.poll_transmit().expect("ACK again");
    assert_eq!(ack1.payload, ack2.payload, "the same ACK is resent");
    while let Some(e) = n.a.poll_event() {
        n.ev_a.push(e);
    }
    assert_eq!(
        n.ev_a
            .iter()
            .filter(|e| **e == UaEvent::SessionOpened { session: s })
            .count(),
        1
    );
}

#[test]
fn rfc6665_4_4_3_fetch_with_expires_zero() {
    let mut n = Net::new(TransportKind::Tls);
    let sa =
        n.a.subscribe(
            n.now,
            n.flow,
            &SubscribeParams {
                from: &alice(),
                to: &bob(),
                event: "presence",
                accept: &[PIDF],
                expires: 0,
            },
        )
        .expect("fetch");
    n.pump();
    let sb = requested(&n);
    assert!(matches!(
        n.ev_b[0],
        UaEvent::SubscriptionRequested { expires: 0, .. }
    ));
    n.b.accept_subscription(
        n.now,
        sb,
        SubState::Active,
        Some((PIDF, Bytes::from_static(b"<p/>"))),
    )
    .expect("ok");
    n.pump();
    assert!(n.ev_a.iter().any(|e| matches!(e, UaEvent::Notified { body, state: SubState::Terminated(_), .. } if body.as_ref() == b"<p/>")));
    assert!(n.ev_a.iter().any(
        |e| matches!(e, UaEvent::SubscriptionTerminated { subscription, .. } if *subscription == sa)
    ));
    assert_eq!(n.a.subscription_count() + n.b.subscription_count(), 0);
}

#[test]
fn rfc6665_refresh_answered_481_terminates_the_subscriber() {
    let mut n = Net::new(TransportKind::Tls);
    let sa = subscribe_presence(&mut n, 600);
    n.pump();
    let sb = requested(&n);
    n.b.accept_subscription(n.now, sb, SubState::Active, None)
        .expect("ok");
    n.pump();
    // The notifier forgets the subscription (e.g. it restarted).
    n.b = ua("gw.contoso.com", 99, TransportKind::Tls);
    n.advance(secs(301)); // refresh at 600 - 300
    assert!(n.methods('<').contains(&"481".to_string()));
    assert!(n.ev_a.contains(&UaEvent::SubscriptionTerminated {
        subscription: sa,
        reason: SubEnd::Status(481)
    }));
}

#[test]
fn rfc6665_notify_answered_481_terminates_the_notifier() {
    let mut n = Net::new(TransportKind::Tls);
    subscribe_presence(&mut n, 600);
    n.pump();
    let sb = requested(&n);
    n.b.accept_subscription(n.now, sb, SubState::Active, None)
        .expect("ok");
    n.pump();
    n.a = ua("gw.fabrikam.com", 98, TransportKind::Tls);
    n.b.notify(n.now, sb, None, Some((PIDF, Bytes::from_static(b"<p/>"))))
        .expect("notify");
    n.pump();
    assert!(n.ev_b.contains(&UaEvent::SubscriptionTerminated {
        subscription: sb,
        reason: SubEnd::Status(481)
    }));
    assert_eq!(n.b.subscription_count(), 0);
}

#[test]
fn unanswered_subscription_request_gets_408_after_64_t1() {
    let t = t0();
    let mut b = ua("gw.contoso.com", 5, TransportKind::Tls);
    let sub = "SUBSCRIBE sip:bob@contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS gw.fabrikam.com;branch=z9hG4bKs1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@fabrikam.com>;tag=a1\r\nTo: <sip:bob@contoso.com>\r\nCall-ID: s1@fabrikam.com\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:gw.fabrikam.com>\r\nEvent: presence\r\nContent-Length: 0\r\n\r\n";
    b.handle_datagram(t, LINK, Bytes::from_static(sub.as_bytes()));
    let Some(UaEvent::SubscriptionRequested {
        subscription,
        expires: 3600,
        ..
    }) = b.poll_event()
    else {
        panic!("requested")
    };
    assert_eq!(b.poll_timeout(), Some(t + secs(32)));
    b.handle_timeout(t + secs(32));
    assert_eq!(
        b.poll_event(),
        Some(UaEvent::SubscriptionTerminated {
            subscription,
            reason: SubEnd::Status(408)
        })
    );
    let r = Message::parse(b.poll_transmit().expect("408").payload).expect("p");
    assert_eq!(r.status().map(|s| s.as_u16()), Some(408));
    assert_eq!(b.subscription_count(), 0);
}

// ---- gaps the node's driver had to work around ------------------------------------

/// An established IM session between A (caller) and B; returns both handles.
fn open_session(n: &mut Net) -> (SessionId, SessionId) {
    let s =
        n.a.open_session(n.now, n.flow, &alice(), &bob())
            .expect("open");
    n.pump();
    let sb = offered(n);
    n.b.accept_session(n.now, sb).expect("accept");
    n.pump();
    assert!(n.ev_a.contains(&UaEvent::SessionOpened { session: s }));
    assert!(n.ev_b.contains(&UaEvent::SessionOpened { session: sb }));
    (s, sb)
}

/// A sends a presence SUBSCRIBE (PIDF) from alice to bob for `expires` seconds.
fn subscribe_presence(n: &mut Net, expires: u32) -> SubscriptionId {
    n.a.subscribe(
        n.now,
        n.flow,
        &SubscribeParams {
            from: &alice(),
            to: &bob(),
            event: "presence",
            accept: &[PIDF],
            expires,
        },
    )
    .expect("sub")
}

/// An active subscription from A (subscriber) to B (notifier), with a PIDF notified.
fn active_subscription(n: &mut Net, expires: u32) -> (SubscriptionId, SubscriptionId) {
    let sa = subscribe_presence(n, expires);
    n.pump();
    let sb = requested(n);
    n.b.accept_subscription(
        n.now,
        sb,
        SubState::Active,
        Some((PIDF, Bytes::from_static(b"<presence>online</presence>"))),
    )
    .expect("accept");
    n.pump();
    (sa, sb)
}

#[test]
fn rfc3261_18_3_every_message_carries_content_length_and_requests_max_forwards() {
    let mut n = Net::new(TransportKind::Tls);
    let (s, _) = open_session(&mut n);
    n.a.send_message(n.now, s, "text/plain", Bytes::from_static(b"x"))
        .expect("sent");
    n.pump();
    n.a.close_session(n.now, s).expect("bye");
    n.pump();
    let sent = n.methods('>');
    assert!(sent.contains(&"ACK".to_string()) && sent.contains(&"BYE".to_string()));
    for (_, m) in &n.log {
        let what = m
            .method()
            .map_or_else(|| format!("{:?}", m.status()), |x| x.to_string());
        assert_eq!(
            m.headers.count(fedgate_sip::HeaderKind::ContentLength),
            1,
            "{what} without Content-Length"
        );
        assert_eq!(
            m.content_length().expect("cl").0,
            m.body.len() as u64,
            "{what}"
        );
        if m.is_request() {
            assert!(
                m.headers
                    .get(fedgate_sip::HeaderKind::MaxForwards)
                    .is_some(),
                "{what} without Max-Forwards"
            );
            assert!(m.top_via().expect("via").has_rfc3261_branch(), "{what}");
        }
    }
}

#[test]
fn rfc3261_8_2_1_in_dialog_405_lists_allow() {
    let mut n = Net::new(TransportKind::Tls);
    let (s, _) = open_session(&mut n);
    let mut d = n.a.session_dialog(s).expect("dialog").clone();
    let mut refer = d.request(Method::Refer);
    refer.headers.push(
        fedgate_sip::Header::new("Via", "SIP/2.0/TLS gw.fabrikam.com;branch=z9hG4bKrefer1")
            .expect("via"),
    );
    refer.set_body(Bytes::new());
    n.b.handle_message(n.now, n.flow, refer);
    let r = Message::parse(n.b.poll_transmit().expect("405").payload).expect("parses");
    assert_eq!(r.status().map(|c| c.as_u16()), Some(405));
    let allow = r
        .headers
        .get_named("Allow")
        .next()
        .expect("Allow on a 405")
        .value()
        .to_vec();
    assert!(String::from_utf8_lossy(&allow).contains("MESSAGE"));
}

#[test]
fn rfc6665_4_2_2_refresh_notify_carries_the_last_document() {
    let mut n = Net::new(TransportKind::Tls);
    let (sa, sb) = active_subscription(&mut n, 600);
    n.b.notify(
        n.now,
        sb,
        None,
        Some((PIDF, Bytes::from_static(b"<presence>away</presence>"))),
    )
    .expect("notify");
    n.pump();
    n.ev_a.clear();
    // The subscriber refreshes at 600 - 300 s; the notifier answers with a NOTIFY
    // that holds the full state: the last document, with its Content-Type.
    n.advance(secs(301));
    assert!(n.ev_b.contains(&UaEvent::SubscriptionRefreshed {
        subscription: sb,
        expires: 600
    }));
    let refreshed = n
        .ev_a
        .iter()
        .find_map(|e| match e {
            UaEvent::Notified {
                subscription,
                state: SubState::Active,
                content_type,
                body,
            } if *subscription == sa => Some((content_type.clone(), body.clone())),
            _ => None,
        })
        .expect("a NOTIFY after the refresh");
    assert_eq!(refreshed.0.as_deref(), Some(PIDF.as_bytes()));
    assert_eq!(refreshed.1.as_ref(), b"<presence>away</presence>");
    // A state change without a new document carries the last one too.
    n.ev_a.clear();
    n.b.notify(n.now, sb, Some(SubState::Active), None)
        .expect("notify");
    n.pump();
    assert!(n.ev_a.iter().any(|e| matches!(e, UaEvent::Notified { body, .. } if body.as_ref() == b"<presence>away</presence>")));
}

#[test]
fn message_answered_2xx_is_reported_delivered_once_per_message() {
    let mut n = Net::new(TransportKind::Tls);
    let (s, _) = open_session(&mut n);
    n.ev_a.clear();
    n.a.send_message(n.now, s, "text/plain", Bytes::from_static(b"one"))
        .expect("sent");
    n.a.send_message(n.now, s, "text/plain", Bytes::from_static(b"two"))
        .expect("sent");
    n.pump();
    let delivered: Vec<&UaEvent> = n
        .ev_a
        .iter()
        .filter(|e| matches!(e, UaEvent::MessageDelivered { .. }))
        .collect();
    assert_eq!(
        delivered,
        vec![
            &UaEvent::MessageDelivered {
                session: s,
                cseq: 2
            },
            &UaEvent::MessageDelivered {
                session: s,
                cseq: 3
            }
        ]
    );
    // A MESSAGE that is not answered is not delivered: it fails (Timer F).
    n.ev_a.clear();
    n.a.send_message(n.now, s, "text/plain", Bytes::from_static(b"lost"))
        .expect("sent");
    while n.a.poll_transmit().is_some() {}
    n.a.handle_timeout(n.now + secs(32));
    let ev: Vec<UaEvent> = std::iter::from_fn(|| n.a.poll_event()).collect();
    assert!(ev.contains(&UaEvent::MessageFailed {
        session: s,
        status: 408
    }));
    assert!(
        !ev.iter()
            .any(|e| matches!(e, UaEvent::MessageDelivered { .. }))
    );
}

#[test]
fn rfc3261_17_1_4_flow_closed_fails_transactions_and_ends_sessions_without_bye() {
    let mut n = Net::new(TransportKind::Tls);
    let (s, _) = open_session(&mut n);
    n.ev_a.clear();
    // A MESSAGE is in flight when the connection closes.
    n.a.send_message(n.now, s, "text/plain", Bytes::from_static(b"x"))
        .expect("sent");
    while n.a.poll_transmit().is_some() {}
    n.a.handle_flow_closed(n.now, n.flow);
    let ev: Vec<UaEvent> = std::iter::from_fn(|| n.a.poll_event()).collect();
    assert_eq!(
        ev,
        vec![
            UaEvent::MessageFailed {
                session: s,
                status: 503
            },
            UaEvent::SessionClosed {
                session: s,
                reason: CloseReason::FlowClosed
            }
        ]
    );
    assert!(n.a.poll_transmit().is_none(), "no BYE on a closed flow");
    assert_eq!(n.a.session_count(), 0);
    assert!(n.a.endpoint().is_empty());
    // A flow that carries nothing of ours changes nothing.
    let mut m = Net::new(TransportKind::Tls);
    let (s2, _) = open_session(&mut m);
    m.a.handle_flow_closed(m.now, Flow::new(99, TransportKind::Tls));
    assert!(m.a.poll_event().is_none());
    assert!(m.a.session_dialog(s2).is_some());
}

#[test]
fn rfc3261_17_1_4_flow_closed_fails_a_pending_invite_and_subscribe() {
    let mut n = Net::new(TransportKind::Tls);
    let s =
        n.a.open_session(n.now, n.flow, &alice(), &bob())
            .expect("open");
    let sub = subscribe_presence(&mut n, 600);
    while n.a.poll_transmit().is_some() {}
    n.a.handle_flow_closed(n.now, n.flow);
    let ev: Vec<UaEvent> = std::iter::from_fn(|| n.a.poll_event()).collect();
    assert!(ev.contains(&UaEvent::SessionClosed {
        session: s,
        reason: CloseReason::Rejected(503)
    }));
    assert!(ev.contains(&UaEvent::SubscriptionTerminated {
        subscription: sub,
        reason: SubEnd::Status(503)
    }));
    assert_eq!(n.a.session_count() + n.a.subscription_count(), 0);
    assert!(n.a.poll_timeout().is_none(), "nothing left to time");
}

#[test]
fn flow_closed_subscription_waits_for_the_refresh_on_a_new_flow() {
    let mut n = Net::new(TransportKind::Tls);
    let (sa, sb) = active_subscription(&mut n, 600);
    // The watcher's connection to the notifier closes.
    n.b.handle_flow_closed(n.now, n.flow);
    assert_eq!(
        n.b.subscription_count(),
        1,
        "the dialog outlives its connection"
    );
    // A new document while there is no path: kept, nothing sent.
    n.b.notify(
        n.now,
        sb,
        None,
        Some((PIDF, Bytes::from_static(b"<presence>busy</presence>"))),
    )
    .expect("deferred");
    assert!(
        n.b.poll_transmit().is_none(),
        "nothing is sent on a closed flow"
    );
    // The refresh arrives on a new connection: the 200 and the NOTIFY (with the
    // document notified meanwhile) go back on it.
    let new_flow = Flow::new(8, TransportKind::Tls);
    n.flow = new_flow;
    n.ev_a.clear();
    n.advance(secs(301));
    assert!(n.ev_b.contains(&UaEvent::SubscriptionRefreshed {
        subscription: sb,
        expires: 600
    }));
    assert!(n.ev_a.iter().any(|e| matches!(e, UaEvent::Notified { subscription, body, .. } if *subscription == sa && body.as_ref() == b"<presence>busy</presence>")));
    // From now on the notifier uses the new flow.
    n.b.notify(
        n.now,
        sb,
        None,
        Some((PIDF, Bytes::from_static(b"<presence>online</presence>"))),
    )
    .expect("notify");
    let t = n.b.poll_transmit().expect("NOTIFY");
    assert_eq!(t.flow, new_flow);
}

#[test]
fn flow_closed_subscription_without_refresh_expires_quietly() {
    let mut n = Net::new(TransportKind::Tls);
    let (_, sb) = active_subscription(&mut n, 600);
    n.b.handle_flow_closed(n.now, n.flow);
    // No refresh ever comes: the subscription expires, and the terminated NOTIFY
    // is not sent on the closed flow.
    n.b.handle_timeout(n.now + secs(600));
    let ev: Vec<UaEvent> = std::iter::from_fn(|| n.b.poll_event()).collect();
    assert_eq!(
        ev,
        vec![
            UaEvent::SubscriptionFlowLost { subscription: sb },
            UaEvent::SubscriptionTerminated {
                subscription: sb,
                reason: SubEnd::Expired
            }
        ]
    );
    assert!(n.b.poll_transmit().is_none());
    assert_eq!(n.b.subscription_count(), 0);
}

/// The notifier is told its watcher's connection closed and moves the subscription
/// to a flow of its own (a connection to the watcher's domain): the NOTIFY held back
/// goes out at once on it, later ones too, and the watcher takes them in its dialog.
#[test]
fn flow_closed_notifier_rebound_to_a_new_flow_sends_what_it_held_back() {
    let mut n = Net::new(TransportKind::Tls);
    let (sa, sb) = active_subscription(&mut n, 600);
    n.b.handle_flow_closed(n.now, n.flow);
    assert_eq!(
        n.b.poll_event(),
        Some(UaEvent::SubscriptionFlowLost { subscription: sb })
    );
    n.b.notify(
        n.now,
        sb,
        None,
        Some((PIDF, Bytes::from_static(b"<presence>busy</presence>"))),
    )
    .expect("held back");
    assert!(n.b.poll_transmit().is_none());
    // A subscriber's subscription and an unknown id cannot be moved.
    let ours = Flow::new(9, TransportKind::Tls);
    assert!(n.a.rebind_subscription(n.now, sa, ours).is_err());
    assert!(
        n.b.rebind_subscription(n.now, SubscriptionId(9999), ours)
            .is_err()
    );
    n.b.rebind_subscription(n.now, sb, ours).expect("moved");
    let t = n.b.poll_transmit().expect("the NOTIFY held back");
    assert_eq!(t.flow, ours);
    n.flow = ours;
    n.ev_a.clear();
    n.a.handle_datagram(n.now, ours, t.payload);
    n.pump();
    assert!(n.ev_a.iter().any(|e| matches!(e, UaEvent::Notified { subscription, body, .. } if *subscription == sa && body.as_ref() == b"<presence>busy</presence>")));
    // Nothing held back: moving again sends nothing.
    n.b.rebind_subscription(n.now, sb, ours).expect("moved");
    assert!(n.b.poll_transmit().is_none());
    n.b.notify(
        n.now,
        sb,
        None,
        Some((PIDF, Bytes::from_static(b"<presence>online</presence>"))),
    )
    .expect("notify");
    assert_eq!(n.b.poll_transmit().expect("NOTIFY").flow, ours);
}

#[test]
fn idle_timeout_counts_from_the_latest_message() {
    let mut n = Net::new(TransportKind::Tls);
    let (s, sb) = open_session(&mut n);
    // Traffic at 5 min and 9 min: the session lives until 19 min.
    n.advance(secs(300));
    n.a.send_message(n.now, s, "text/plain", Bytes::from_static(b"a"))
        .expect("sent");
    n.pump();
    n.advance(secs(240));
    n.b.send_message(n.now, sb, "text/plain", Bytes::from_static(b"b"))
        .expect("sent");
    n.pump();
    n.advance(secs(599));
    assert_eq!(n.a.session_count() + n.b.session_count(), 2);
    n.advance(secs(2));
    assert_eq!(n.a.session_count() + n.b.session_count(), 0);
    assert!(
        n.ev_a.contains(&UaEvent::SessionClosed {
            session: s,
            reason: CloseReason::Idle
        }) || n.ev_b.contains(&UaEvent::SessionClosed {
            session: sb,
            reason: CloseReason::Idle
        })
    );
}

/// A notifier written down and taken up by a new user agent (a restart): the
/// subscriber's dialog goes on — NOTIFYs with higher CSeq numbers, refreshes
/// answered — and the restored subscription still expires.
#[test]
fn notifier_restored_after_a_restart_keeps_its_dialog() {
    use fedgate_sip_txn::ua::{NotifierRecord, RESTORE_CSEQ_GAP};
    let mut n = Net::new(TransportKind::Tls);
    let (sa, sb) = active_subscription(&mut n, 3600);
    n.b.notify(
        n.now,
        sb,
        None,
        Some((PIDF, Bytes::from_static(b"<presence>away</presence>"))),
    )
    .expect("notify");
    n.pump();
    let before = n.b.export_notifier(n.now, sb).expect("exportable");
    assert_eq!(before.state, SubState::Active);
    assert_eq!(before.expires_in, secs(3600));
    // Through the encoding, as a store keeps it.
    let limits = fedgate_sip::Limits::default();
    let rec = NotifierRecord::decode(&before.encode(), &limits).expect("decodes");
    assert_eq!(rec, before);
    for bad in [
        &b"FEDGATE-NOTIFIER 2\r\n\r\n"[..],
        &before.encode()[..40],
        b"garbage",
    ] {
        assert!(NotifierRecord::decode(bad, &limits).is_err());
    }
    let last_seq = n
        .log
        .iter()
        .rev()
        .find(|(d, m)| *d == '<' && m.method() == Some(&Method::Notify))
        .expect("a NOTIFY")
        .1
        .cseq()
        .expect("CSeq")
        .seq;

    // The restart: B is a new user agent; ten minutes pass.
    n.b = ua("gw.contoso.com", 23, TransportKind::Tls);
    n.advance(secs(600));
    let left = rec.expires_in - secs(600);
    let sb2 =
        n.b.restore_notifier(n.now, n.flow, rec.clone(), left)
            .expect("restored");
    assert_eq!(n.b.subscription_count(), 1);
    assert!(
        n.b.restore_notifier(n.now, n.flow, rec.clone(), left)
            .is_err(),
        "the same dialog twice"
    );
    assert!(
        n.b.restore_notifier(n.now, n.flow, rec, Duration::ZERO)
            .is_err(),
        "expired"
    );
    n.b.notify(
        n.now,
        sb2,
        None,
        Some((PIDF, Bytes::from_static(b"<presence>busy</presence>"))),
    )
    .expect("notify after the restart");
    n.pump();
    let notify = &n.log.last().expect("logged");
    assert_eq!(
        notify.1.status().map(|s| s.as_u16()),
        Some(200),
        "A accepted the NOTIFY"
    );
    let sent = n
        .log
        .iter()
        .rev()
        .find(|(d, m)| *d == '<' && m.method() == Some(&Method::Notify))
        .expect("NOTIFY")
        .1
        .clone();
    assert_eq!(
        sent.cseq().expect("CSeq").seq,
        last_seq + RESTORE_CSEQ_GAP + 1
    );
    assert!(n.ev_a.iter().any(|e| matches!(e, UaEvent::Notified { subscription, body, .. } if *subscription == sa && body.as_ref() == b"<presence>busy</presence>")));
    // A's refresh (5 min before its expiry) reaches the restored subscription.
    n.ev_b.clear();
    n.advance(secs(3600 - 600 - 300 + 1));
    assert!(n.ev_b.contains(&UaEvent::SubscriptionRefreshed {
        subscription: sb2,
        expires: 3600
    }));
    assert_eq!(n.a.subscription_state(sa), Some(&SubState::Active));
    // A pending record restores pending, and without refresh it ends on time.
    let mut p = n.b.export_notifier(n.now, sb2).expect("exportable");
    p.state = SubState::Pending;
    let mut c = ua("gw.contoso.com", 24, TransportKind::Tls);
    let id = c
        .restore_notifier(n.now, n.flow, p, secs(30))
        .expect("restored");
    assert_eq!(c.subscription_state(id), Some(&SubState::Pending));
    c.handle_timeout(n.now + secs(30));
    assert!(matches!(
        c.poll_event(),
        Some(UaEvent::SubscriptionTerminated {
            reason: SubEnd::Expired,
            ..
        })
    ));
    assert_eq!(c.subscription_count(), 0);
}
