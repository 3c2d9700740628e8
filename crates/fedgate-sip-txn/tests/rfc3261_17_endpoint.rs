//! Conformance tests for the transaction layer: matching (RFC 3261 §17.1.3,
//! §17.2.3), merged requests (§8.2.2.2), limits, and two endpoints talking.

mod common;
use common::*;

use bytes::Bytes;
use fedgate_sip::{Message, Method};
use fedgate_sip_txn::transaction::{Failure, ServerNote};
use fedgate_sip_txn::*;

const UDP: Flow = Flow::new(1, TransportKind::Udp);
const TLS: Flow = Flow::new(2, TransportKind::Tls);

fn ep(seed: u64) -> Endpoint {
    Endpoint::new(EndpointConfig::with_domain("gw.contoso.com", seed))
}

fn drain(e: &mut Endpoint) -> (Vec<Transmit>, Vec<TxnEvent>) {
    let mut ev = vec![];
    while let Some(x) = e.poll_event() {
        ev.push(x);
    }
    let mut tx = vec![];
    while let Some(x) = e.poll_transmit() {
        tx.push(x);
    }
    (tx, ev)
}

fn status_of(t: &Transmit) -> u16 {
    Message::parse(t.payload.clone())
        .expect("parses")
        .status()
        .map_or(0, |s| s.as_u16())
}

fn request_txn(ev: &[TxnEvent]) -> TxnId {
    ev.iter()
        .find_map(|e| match e {
            TxnEvent::Request { txn, .. } => Some(*txn),
            _ => None,
        })
        .expect("a Request event")
}

#[test]
fn rfc3261_17_2_3_retransmitted_request_is_absorbed_and_last_response_resent() {
    let t = t0();
    let mut e = ep(1);
    e.handle_message(t, UDP, msg(MESSAGE_UDP));
    let (tx, ev) = drain(&mut e);
    assert!(tx.is_empty());
    let txn = request_txn(&ev);
    // Retransmission before the TU answered: absorbed silently.
    e.handle_message(t + ms(500), UDP, msg(MESSAGE_UDP));
    let (tx, ev) = drain(&mut e);
    assert!(tx.is_empty() && ev.is_empty());
    let req = e.request(txn).expect("live").clone();
    e.send_response(t + ms(600), txn, resp(&req, 200))
        .expect("sent");
    let (tx, _) = drain(&mut e);
    assert_eq!(tx.len(), 1);
    e.handle_message(t + ms(900), UDP, msg(MESSAGE_UDP));
    let (tx2, ev) = drain(&mut e);
    assert!(ev.is_empty(), "not passed to the TU again");
    assert_eq!(tx2, tx, "the same 200 is resent");
    // Timer J over UDP, then gone.
    assert_eq!(e.poll_timeout(), Some(t + ms(600) + secs(32)));
    e.handle_timeout(t + ms(600) + secs(32));
    assert!(e.is_empty());
}

#[test]
fn rfc3261_17_2_3_ack_to_non_2xx_matches_the_invite_server_transaction() {
    let t = t0();
    let mut e = ep(1);
    e.handle_message(t, UDP, msg(INVITE_UDP));
    let (_, ev) = drain(&mut e);
    let txn = request_txn(&ev);
    let req = e.request(txn).expect("live").clone();
    e.send_response(t, txn, resp(&req, 486)).expect("sent");
    drain(&mut e);
    let ack = INVITE_UDP
        .replace("INVITE sip", "ACK sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace(
            "To: <sip:bob@contoso.com>",
            "To: <sip:bob@contoso.com>;tag=b1",
        );
    e.handle_message(t + secs(1), UDP, msg(&ack));
    let (tx, ev) = drain(&mut e);
    assert!(ev.is_empty(), "ACK to a non-2xx never reaches the TU");
    assert!(tx.is_empty());
    // Confirmed: Timer I (T4 = 5 s) then terminated.
    assert_eq!(e.poll_timeout(), Some(t + secs(6)));
    e.handle_timeout(t + secs(6));
    assert!(e.is_empty());
}

#[test]
fn rfc3261_13_2_2_4_ack_to_2xx_goes_to_the_tu() {
    let t = t0();
    let mut e = ep(1);
    let ack = "ACK sip:bob@gw.contoso.com SIP/2.0
Via: SIP/2.0/TLS gw.fabrikam.com;branch=z9hG4bKack2
Max-Forwards: 70
From: <sip:alice@fabrikam.com>;tag=a1
To: <sip:bob@contoso.com>;tag=b1
Call-ID: call1@fabrikam.com
CSeq: 1 ACK
Content-Length: 0

";
    e.handle_message(t, TLS, msg(ack));
    let (tx, ev) = drain(&mut e);
    assert!(tx.is_empty());
    assert!(matches!(&ev[..], [TxnEvent::Ack { .. }]));
    assert!(e.is_empty());
}

#[test]
fn rfc3261_9_2_cancel_is_its_own_transaction_and_487s_the_invite() {
    let t = t0();
    let mut e = ep(1);
    e.handle_message(t, TLS, msg(INVITE_UDP));
    let (_, ev) = drain(&mut e);
    let inv = request_txn(&ev);
    let cancel = INVITE_UDP
        .replace("INVITE sip", "CANCEL sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    e.handle_message(t + ms(50), TLS, msg(&cancel));
    let (tx, ev) = drain(&mut e);
    let codes: Vec<u16> = tx.iter().map(status_of).collect();
    assert_eq!(codes, vec![200, 487]);
    assert!(ev.contains(&TxnEvent::Cancelled { txn: inv }));
    // A CANCEL for nothing: 481.
    let stray = cancel.replace("z9hG4bKinv1", "z9hG4bKother");
    e.handle_message(t + ms(60), TLS, msg(&stray));
    let (tx, _) = drain(&mut e);
    assert_eq!(tx.iter().map(status_of).collect::<Vec<_>>(), vec![481]);
}

#[test]
fn rfc3261_17_2_3_rfc2543_fallback_without_magic_cookie() {
    let t = t0();
    let mut e = ep(1);
    let old = INVITE_UDP.replace("branch=z9hG4bKinv1", "branch=1234old");
    e.handle_message(t, UDP, msg(&old));
    let (_, ev) = drain(&mut e);
    let txn = request_txn(&ev);
    // Retransmission matches by Call-ID/From tag/CSeq/top Via.
    e.handle_message(t + ms(500), UDP, msg(&old));
    assert_eq!(drain(&mut e).1.len(), 0);
    let req = e.request(txn).expect("live").clone();
    e.send_response(t, txn, resp(&req, 404)).expect("sent");
    drain(&mut e);
    let ack = old
        .replace("INVITE sip", "ACK sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace(
            "To: <sip:bob@contoso.com>",
            "To: <sip:bob@contoso.com>;tag=b1",
        );
    e.handle_message(t + secs(1), UDP, msg(&ack));
    let (_, ev) = drain(&mut e);
    assert!(ev.is_empty(), "ACK matched the INVITE transaction");
    // An ACK with another To tag does not match: it goes to the TU.
    e.handle_message(t + secs(1), UDP, msg(&ack.replace("tag=b1", "tag=zz")));
    assert!(matches!(&drain(&mut e).1[..], [TxnEvent::Ack { .. }]));
}

#[test]
fn rfc3261_8_2_2_2_merged_request_gets_482() {
    let t = t0();
    let mut e = ep(1);
    e.handle_message(t, UDP, msg(MESSAGE_UDP));
    drain(&mut e);
    // Same From tag, Call-ID and CSeq, another branch (forked through another proxy).
    let forked = MESSAGE_UDP.replace("z9hG4bKmsg1", "z9hG4bKmsg1-via-other-proxy");
    e.handle_message(t, UDP, msg(&forked));
    let (tx, ev) = drain(&mut e);
    assert!(ev.is_empty());
    assert_eq!(tx.iter().map(status_of).collect::<Vec<_>>(), vec![482]);
}

#[test]
fn rfc3261_17_1_3_stray_response_is_dropped() {
    let t = t0();
    let mut e = ep(1);
    let r = resp(&msg(MESSAGE_UDP), 200);
    e.handle_message(t, UDP, r);
    let (tx, ev) = drain(&mut e);
    assert!(tx.is_empty() && ev.is_empty());
}

#[test]
fn invalid_request_is_answered_400_statelessly() {
    let t = t0();
    let mut e = ep(1);
    let bad = MESSAGE_UDP.replace("CSeq: 1 MESSAGE", "CSeq: 1 INVITE");
    e.handle_message(t, UDP, msg(&bad));
    let (tx, ev) = drain(&mut e);
    assert!(ev.is_empty());
    assert_eq!(tx.iter().map(status_of).collect::<Vec<_>>(), vec![400]);
    // Garbage: dropped, no panic.
    e.handle_datagram(t, UDP, Bytes::from_static(b"\x00\x01garbage"));
    assert_eq!(drain(&mut e).0.len(), 0);
    // Unparsable request line with a version we do not speak: answered from the salvage.
    e.handle_datagram(
        t,
        UDP,
        Bytes::from(
            MESSAGE_UDP
                .replace("SIP/2.0\n", "SIP/3.0\n")
                .replace('\n', "\r\n"),
        ),
    );
    let (tx, _) = drain(&mut e);
    assert!(tx.iter().all(|t| status_of(t) >= 400));
    assert!(e.is_empty());
}

#[test]
fn over_max_transactions_answers_503_with_retry_after() {
    let t = t0();
    let mut cfg = EndpointConfig::with_domain("gw.contoso.com", 1);
    cfg.limits.max_transactions = 2;
    let mut e = Endpoint::new(cfg);
    for i in 0..3 {
        let m = MESSAGE_UDP
            .replace("z9hG4bKmsg1", &format!("z9hG4bKmsg{i}"))
            .replace("call2@", &format!("call{i}x@"));
        e.handle_message(t, UDP, msg(&m));
    }
    let (tx, ev) = drain(&mut e);
    assert_eq!(ev.len(), 2);
    assert_eq!(tx.len(), 1);
    let r = Message::parse(tx[0].payload.clone()).expect("parses");
    assert_eq!(r.status().map(|s| s.as_u16()), Some(503));
    assert_eq!(
        r.headers
            .get_named("Retry-After")
            .next()
            .map(|h| h.value().to_vec()),
        Some(b"10".to_vec())
    );
    assert_eq!(e.len(), 2);
    assert!(matches!(
        e.send_request(t, UDP, options()),
        Err(Error::Limit { .. })
    ));
}

fn options() -> Message {
    msg("OPTIONS sip:bob@contoso.com SIP/2.0
Max-Forwards: 70
From: <sip:alice@fabrikam.com>;tag=a9
To: <sip:bob@contoso.com>
Call-ID: opt1@fabrikam.com
CSeq: 7 OPTIONS
Content-Length: 0

")
}

#[test]
fn rfc3261_17_1_2_2_timer_f_synthesizes_408_for_the_tu() {
    let t = t0();
    let mut e = ep(1);
    let txn = e.send_request(t, TLS, options()).expect("sent");
    let (tx, _) = drain(&mut e);
    assert_eq!(tx.len(), 1);
    let sent = Message::parse(tx[0].payload.clone()).expect("parses");
    let via = sent.top_via().expect("via");
    assert!(via.has_rfc3261_branch());
    assert_eq!(via.transport, fedgate_sip::Transport::Tls);
    assert_eq!(e.poll_timeout(), Some(t + secs(32)));
    e.handle_timeout(t + secs(32));
    let (tx, ev) = drain(&mut e);
    assert!(tx.is_empty());
    match &ev[..] {
        [
            TxnEvent::Failed {
                txn: id,
                failure: Failure::Timeout,
                response,
            },
        ] => {
            assert_eq!(*id, txn);
            assert_eq!(response.status().map(|s| s.as_u16()), Some(408));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(e.is_empty());
}

#[test]
fn transport_error_fails_client_and_server_transactions() {
    let t = t0();
    let mut e = ep(1);
    let c = e.send_request(t, TLS, options()).expect("sent");
    e.handle_message(t, TLS, msg(MESSAGE_UDP));
    let (_, ev) = drain(&mut e);
    let s = request_txn(&ev);
    e.handle_transport_error(t, TLS);
    let (_, ev) = drain(&mut e);
    assert!(ev.iter().any(|x| matches!(x, TxnEvent::Failed { txn, failure: Failure::TransportError, response } if *txn == c && response.status().map(|s| s.as_u16()) == Some(503))));
    assert!(ev.contains(&TxnEvent::Server {
        txn: s,
        note: ServerNote::TransportError
    }));
    assert!(e.is_empty());
    assert!(
        e.send_response(t, s, resp(&msg(MESSAGE_UDP), 200)).is_err(),
        "stale id"
    );
}

#[test]
fn two_endpoints_over_udp_with_loss_and_retransmission() {
    let t = t0();
    let (mut a, mut b) = (ep(1), ep(2));
    let txn = a.send_request(t, UDP, options()).expect("sent");
    // The first copy is lost.
    let (lost, _) = drain(&mut a);
    assert_eq!(lost.len(), 1);
    let at = a.poll_timeout().expect("Timer E");
    assert_eq!(at, t + ms(500));
    a.handle_timeout(at);
    let (tx, _) = drain(&mut a);
    for x in tx {
        b.handle_datagram(at, UDP, x.payload);
    }
    let (_, ev) = drain(&mut b);
    let st = request_txn(&ev);
    let req = b.request(st).expect("live").clone();
    b.send_response(at, st, resp(&req, 200)).expect("sent");
    let (tx, _) = drain(&mut b);
    for x in tx {
        a.handle_datagram(at, UDP, x.payload);
    }
    let (_, ev) = drain(&mut a);
    assert!(
        matches!(&ev[..], [TxnEvent::Response { txn: id, response }] if *id == txn && response.status().map(|s| s.as_u16()) == Some(200))
    );
    // Timer K (5 s) on A, Timer J (32 s) on B.
    a.handle_timeout(at + secs(5));
    b.handle_timeout(at + secs(32));
    assert!(a.is_empty() && b.is_empty());
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn client_cancel_sends_cancel_with_the_invite_branch() {
    let t = t0();
    let mut e = ep(1);
    let mut inv = msg(INVITE_UDP);
    inv.headers.remove(fedgate_sip::HeaderKind::Via);
    let txn = e.send_request(t, TLS, inv).expect("sent");
    let (tx, _) = drain(&mut e);
    let sent = Message::parse(tx[0].payload.clone()).expect("parses");
    let c = e.cancel(t, txn).expect("cancel");
    assert_ne!(c, txn);
    let (tx, _) = drain(&mut e);
    let cancel = Message::parse(tx[0].payload.clone()).expect("parses");
    assert_eq!(cancel.method(), Some(&Method::Cancel));
    assert_eq!(
        cancel.top_via().expect("v").branch(),
        sent.top_via().expect("v").branch()
    );
    // The 200 to the CANCEL and the 487 to the INVITE reach the right transactions.
    e.handle_message(t, TLS, resp(&cancel, 200));
    e.handle_message(t, TLS, resp(&sent, 487));
    let (tx, ev) = drain(&mut e);
    assert_eq!(ev.len(), 2);
    assert_eq!(tx.len(), 1, "the ACK for the 487");
    assert!(e.is_empty());
}

/// The server transaction of the last request keeps its deadline out of the timer
/// set until the next input; it is still reported, fired and counted exactly.
#[test]
fn unanswered_request_times_out_408_with_the_deadline_reported_at_once() {
    let t = t0();
    let mut e = ep(1);
    e.handle_message(t, TLS, msg(MESSAGE_UDP));
    let (_, ev) = drain(&mut e);
    let first = request_txn(&ev);
    let guard = t + secs(32);
    assert_eq!(e.poll_timeout(), Some(guard));
    assert_eq!(e.stats().timers, 1);
    // A second request (another branch and CSeq) a second later: both
    // deadlines kept.
    let second_text = MESSAGE_UDP
        .replace("z9hG4bK", "z9hG4bKx")
        .replace("CSeq: 1", "CSeq: 2");
    e.handle_message(t + secs(1), TLS, msg(&second_text));
    let (_, ev) = drain(&mut e);
    let second = request_txn(&ev);
    assert_ne!(first, second);
    assert_eq!(e.poll_timeout(), Some(guard));
    assert_eq!(e.stats().timers, 2);
    // The second is answered (reliable: the transaction ends); the first is not.
    let req = e.request(second).expect("live").clone();
    e.send_response(t + secs(1), second, resp(&req, 200))
        .expect("answered");
    let (tx, _) = drain(&mut e);
    assert_eq!(tx.len(), 1);
    assert_eq!(e.len(), 1);
    assert_eq!(e.stats().timers, 1);
    e.handle_timeout(guard - ms(1));
    assert!(drain(&mut e).0.is_empty());
    assert_eq!(e.poll_timeout(), Some(guard));
    e.handle_timeout(guard);
    let (tx, ev) = drain(&mut e);
    assert_eq!(tx.iter().map(status_of).collect::<Vec<_>>(), vec![408]);
    assert!(ev.iter().any(|x| matches!(
        x,
        TxnEvent::Server { txn, note: ServerNote::TuTimeout } if *txn == first
    )));
    assert!(e.is_empty());
    assert_eq!(e.poll_timeout(), None);
    assert_eq!(e.stats(), EndpointStats::default());
}
