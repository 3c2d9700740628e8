//! Server transactions of in-session MESSAGEs end when they are answered: over a
//! reliable transport a non-INVITE server transaction is freed at its final
//! response (Timer J is zero, RFC 3261 §17.2.2), whoever answers (the UA itself, or
//! the application with `UaConfig::app_answers_messages`) and in whatever order
//! the answers and the next requests come. Regression test for issue #8: the SIP
//! gateway answered in-dialog MESSAGEs 503 (`max_transactions`) under a window of
//! 1000 because transactions were not freed.

mod common;
use common::*;

use std::time::Instant;

use bytes::Bytes;
use fedgate_sip_txn::ua::address;
use fedgate_sip_txn::*;

fn ua(domain: &'static str, seed: u64, transport: TransportKind, answers: bool) -> UserAgent {
    ua_with(domain, seed, transport, answers)
}

struct Net {
    a: UserAgent,
    b: UserAgent,
    now: Instant,
    flow: Flow,
    ev_b: Vec<UaEvent>,
    delivered: usize,
}

impl Net {
    fn new(transport: TransportKind, answers: bool) -> Net {
        Net {
            a: ua("gw.fabrikam.com", 11, transport, false),
            b: ua("gw.contoso.com", 22, transport, answers),
            now: t0(),
            flow: Flow::new(7, transport),
            ev_b: vec![],
            delivered: 0,
        }
    }

    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(e) = self.a.poll_event() {
                if matches!(e, UaEvent::MessageDelivered { .. }) {
                    self.delivered += 1;
                }
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
                self.a.handle_datagram(self.now, self.flow, t.payload);
            }
            if !moved {
                return;
            }
        }
    }

    fn open(&mut self) -> SessionId {
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
        self.ev_b.clear();
        s
    }

    fn take_to_answer(&mut self) -> Vec<MessageHandle> {
        let out = self
            .ev_b
            .iter()
            .filter_map(|e| match e {
                UaEvent::MessageToAnswer { message, .. } => Some(*message),
                _ => None,
            })
            .collect();
        self.ev_b.clear();
        out
    }

    fn send(&mut self, s: SessionId, i: usize) {
        self.a
            .send_message(self.now, s, "text/plain", Bytes::from(format!("m{i}")))
            .expect("sent");
    }

    fn live_b(&self) -> usize {
        self.b.endpoint().stats().live
    }
}

const N: usize = 300;

/// Every `MESSAGE` in flight (a window of `N`), then every answer.
#[test]
fn app_answered_messages_free_their_transactions_window() {
    let mut n = Net::new(TransportKind::Tcp, true);
    let s = n.open();
    let (base, base_timers) = (n.live_b(), n.b.endpoint().stats().timers);
    for i in 0..N {
        n.send(s, i);
    }
    n.pump();
    let h = n.take_to_answer();
    assert_eq!(h.len(), N);
    assert_eq!(n.live_b(), base + N, "one server transaction per MESSAGE");
    for m in h {
        n.b.respond_message(n.now, m, 200).expect("answered");
    }
    n.pump();
    assert_eq!(n.delivered, N);
    let st = n.b.endpoint().stats();
    assert_eq!(
        st.live, base,
        "answered MESSAGEs over TCP leave no transaction: {st:?}"
    );
    assert_eq!(st.timers, base_timers, "{st:?}");
    assert_eq!(n.b.unanswered_messages(), 0);
}

/// Each MESSAGE answered after the next one arrived (the newest transaction's
/// deadline is armed late), and answered at once.
#[test]
fn app_answered_messages_free_their_transactions_interleaved() {
    let mut n = Net::new(TransportKind::Tcp, true);
    let s = n.open();
    let (base, base_timers) = (n.live_b(), n.b.endpoint().stats().timers);
    let mut held: Option<MessageHandle> = None;
    for i in 0..N {
        n.send(s, i);
        n.pump();
        let mut h = n.take_to_answer();
        assert_eq!(h.len(), 1);
        if let Some(prev) = held.take() {
            n.b.respond_message(n.now, prev, 200).expect("answered");
        }
        if i % 2 == 0 {
            held = h.pop();
        } else {
            n.b.respond_message(n.now, h[0], 200).expect("answered");
        }
        n.pump();
        assert!(
            n.live_b() <= base + 1,
            "at {i}: {:?}",
            n.b.endpoint().stats()
        );
        n.now += ms(1);
        n.a.handle_timeout(n.now);
        n.b.handle_timeout(n.now);
    }
    if let Some(prev) = held {
        n.b.respond_message(n.now, prev, 200).expect("answered");
    }
    n.pump();
    assert_eq!(n.delivered, N);
    let st = n.b.endpoint().stats();
    assert_eq!(st.live, base, "{st:?}");
    assert_eq!(st.timers, base_timers, "{st:?}");
}

/// The UA answers itself (default config): same outcome.
#[test]
fn ua_answered_messages_free_their_transactions() {
    let mut n = Net::new(TransportKind::Tcp, false);
    let s = n.open();
    let (base, base_timers) = (n.live_b(), n.b.endpoint().stats().timers);
    for i in 0..N {
        n.send(s, i);
    }
    n.pump();
    assert_eq!(n.delivered, N);
    let st = n.b.endpoint().stats();
    assert_eq!(st.live, base, "{st:?}");
    assert_eq!(st.timers, base_timers, "{st:?}");
}
