//! Conformance tests for the four transaction machines (RFC 3261 §17, RFC 6026),
//! on simulated time.

mod common;
use common::*;

use std::time::{Duration, Instant};

use fedgate_sip_txn::TransportKind;
use fedgate_sip_txn::timer::TimerConfig;
use fedgate_sip_txn::transaction::*;

const CFG: TimerConfig = TimerConfig::DEFAULT;

/// Runs a client machine to the end by jumping to each deadline; returns the
/// offsets (from `start`) of every transmission and of the failure, if any.
fn run_client_invite(
    m: &mut ClientInvite,
    start: Instant,
) -> (Vec<Duration>, Option<(Duration, Failure)>) {
    let mut sent = Vec::new();
    if m.poll_transmit().is_some() {
        sent.push(Duration::ZERO);
    }
    while let Some(t) = m.poll_timeout() {
        let f = m.handle_timeout(t);
        while m.poll_transmit().is_some() {
            sent.push(t - start);
        }
        if let Some(f) = f {
            return (sent, Some((t - start, f)));
        }
    }
    (sent, None)
}

fn client_invite(now: Instant, reliable: bool) -> ClientInvite {
    let req = msg(INVITE_UDP);
    let wire = req.to_bytes();
    ClientInvite::new(now, req, wire, reliable, CFG)
}

#[test]
fn rfc3261_17_1_1_2_timer_a_doubles_over_udp_until_timer_b() {
    let t = t0();
    let mut m = client_invite(t, false);
    let (sent, fail) = run_client_invite(&mut m, t);
    let expect: Vec<Duration> = [0, 500, 1500, 3500, 7500, 15500, 31500]
        .iter()
        .map(|&x| ms(x))
        .collect();
    assert_eq!(sent, expect);
    assert_eq!(fail, Some((secs(32), Failure::Timeout)));
    assert!(m.is_terminated());
}

#[test]
fn rfc3261_17_1_1_2_timer_b_fires_at_64_t1() {
    let t = t0();
    let mut m = client_invite(t, true);
    assert!(m.poll_transmit().is_some());
    assert_eq!(m.poll_timeout(), Some(t + secs(32)));
    assert_eq!(m.handle_timeout(t + secs(32) - ms(1)), None);
    assert_eq!(m.handle_timeout(t + secs(32)), Some(Failure::Timeout));
    assert_eq!(m.state(), ClientInviteState::Terminated);
    let r = timeout_response(m.request());
    assert_eq!(r.status().map(|s| s.as_u16()), Some(408));
}

#[test]
fn rfc3261_17_1_1_2_no_retransmission_over_tls() {
    let t = t0();
    let mut m = client_invite(t, true);
    let (sent, fail) = run_client_invite(&mut m, t);
    assert_eq!(sent, vec![Duration::ZERO]);
    assert_eq!(fail, Some((secs(32), Failure::Timeout)));
}

#[test]
fn rfc3261_17_1_1_2_provisional_stops_timer_a() {
    let t = t0();
    let mut m = client_invite(t, false);
    m.poll_transmit();
    let ringing = resp(m.request(), 180);
    assert_eq!(m.handle_response(t + ms(100), &ringing), Delivery::ToTu);
    assert_eq!(m.state(), ClientInviteState::Proceeding);
    // Only Timer C remains (3 min).
    assert_eq!(m.poll_timeout(), Some(t + ms(100) + secs(180)));
    assert_eq!(m.handle_timeout(t + secs(60)), None);
    assert!(m.poll_transmit().is_none());
}

#[test]
fn rfc3261_17_1_1_3_non_2xx_is_acked_in_transaction_and_timer_d() {
    let t = t0();
    let mut m = client_invite(t, false);
    m.poll_transmit();
    let busy = resp(m.request(), 486);
    assert_eq!(m.handle_response(t + ms(10), &busy), Delivery::ToTu);
    assert_eq!(m.state(), ClientInviteState::Completed);
    let ack = fedgate_sip::Message::parse(m.poll_transmit().expect("ACK")).expect("parses");
    assert_eq!(ack.method(), Some(&fedgate_sip::Method::Ack));
    assert_eq!(ack.cseq().expect("cseq").seq, 1);
    assert_eq!(
        ack.to().expect("to").tag().map(|t| t.as_ref()),
        Some(&b"b1"[..])
    );
    assert_eq!(
        ack.top_via().expect("via").branch(),
        m.request().top_via().expect("via").branch()
    );
    // A retransmitted 486 is absorbed and re-ACKed.
    assert_eq!(m.handle_response(t + ms(600), &busy), Delivery::Absorbed);
    assert!(m.poll_transmit().is_some());
    // Timer D: 32 s over UDP.
    assert_eq!(m.poll_timeout(), Some(t + ms(10) + secs(32)));
    m.handle_timeout(t + ms(10) + secs(32));
    assert!(m.is_terminated());
}

#[test]
fn rfc3261_17_1_1_2_timer_d_is_zero_over_tls() {
    let t = t0();
    let mut m = client_invite(t, true);
    m.poll_transmit();
    assert_eq!(
        m.handle_response(t, &resp(m.request(), 404)),
        Delivery::ToTu
    );
    assert!(m.poll_transmit().is_some(), "ACK still sent");
    assert!(m.is_terminated());
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn rfc6026_7_2_client_accepted_state_passes_2xx_until_timer_m() {
    let t = t0();
    let mut m = client_invite(t, true);
    m.poll_transmit();
    let ok = resp(m.request(), 200);
    assert_eq!(m.handle_response(t, &ok), Delivery::ToTu);
    assert_eq!(m.state(), ClientInviteState::Accepted);
    assert!(
        m.poll_transmit().is_none(),
        "the TU ACKs a 2xx, not the transaction"
    );
    assert_eq!(m.handle_response(t + secs(1), &ok), Delivery::ToTu);
    assert_eq!(m.poll_timeout(), Some(t + secs(32)));
    m.handle_timeout(t + secs(32));
    assert!(m.is_terminated());
}

#[test]
fn rfc3261_17_1_1_2_transport_error_fails_the_transaction() {
    let t = t0();
    let mut m = client_invite(t, true);
    assert_eq!(m.handle_transport_error(), Some(Failure::TransportError));
    assert!(m.is_terminated());
}

fn client_non_invite(now: Instant, reliable: bool) -> ClientNonInvite {
    let req = msg(MESSAGE_UDP);
    let wire = req.to_bytes();
    ClientNonInvite::new(now, req, wire, reliable, CFG)
}

fn drive_nict(m: &mut ClientNonInvite, start: Instant, stop: Duration) -> Vec<Duration> {
    let mut sent = Vec::new();
    if m.poll_transmit().is_some() {
        sent.push(Duration::ZERO);
    }
    while let Some(t) = m.poll_timeout() {
        if t - start > stop {
            break;
        }
        let f = m.handle_timeout(t);
        while m.poll_transmit().is_some() {
            sent.push(t - start);
        }
        if f.is_some() {
            break;
        }
    }
    sent
}

#[test]
fn rfc3261_17_1_2_2_timer_e_doubles_up_to_t2_then_timer_f() {
    let t = t0();
    let mut m = client_non_invite(t, false);
    let sent = drive_nict(&mut m, t, secs(100));
    let mut expect = vec![0, 500, 1500, 3500, 7500];
    let mut x = 7500;
    while x + 4000 < 32000 {
        x += 4000;
        expect.push(x);
    }
    let expect: Vec<Duration> = expect.into_iter().map(ms).collect();
    assert_eq!(sent, expect);
    assert!(m.is_terminated());
}

#[test]
fn rfc3261_17_1_2_2_timer_f_fires_at_64_t1_over_tls_without_retransmissions() {
    let t = t0();
    let mut m = client_non_invite(t, true);
    assert!(m.poll_transmit().is_some());
    assert_eq!(m.poll_timeout(), Some(t + secs(32)));
    assert_eq!(m.handle_timeout(t + secs(32)), Some(Failure::Timeout));
    assert!(m.poll_transmit().is_none());
}

#[test]
fn rfc3261_17_1_2_2_retransmissions_continue_at_t2_after_provisional() {
    let t = t0();
    let mut m = client_non_invite(t, false);
    m.poll_transmit();
    m.handle_timeout(t + ms(500));
    assert!(m.poll_transmit().is_some());
    assert_eq!(
        m.handle_response(t + ms(600), &resp(m.request(), 100)),
        Delivery::ToTu
    );
    assert_eq!(m.state(), ClientNonInviteState::Proceeding);
    // E was armed for 1.5 s; it fires, and then every T2.
    m.handle_timeout(t + ms(1500));
    assert!(m.poll_transmit().is_some());
    assert_eq!(m.poll_timeout(), Some(t + ms(5500)));
}

#[test]
fn rfc3261_17_1_2_2_timer_k_t4_over_udp_zero_over_tls() {
    let t = t0();
    let mut m = client_non_invite(t, false);
    m.poll_transmit();
    assert_eq!(
        m.handle_response(t, &resp(m.request(), 200)),
        Delivery::ToTu
    );
    assert_eq!(m.state(), ClientNonInviteState::Completed);
    assert_eq!(
        m.handle_response(t, &resp(m.request(), 200)),
        Delivery::Absorbed
    );
    assert_eq!(m.poll_timeout(), Some(t + secs(5)));
    m.handle_timeout(t + secs(5));
    assert!(m.is_terminated());

    let mut m = client_non_invite(t, true);
    m.poll_transmit();
    m.handle_response(t, &resp(m.request(), 200));
    assert!(m.is_terminated());
}

fn server_invite(now: Instant, reliable: bool) -> ServerInvite {
    ServerInvite::new(now, msg(INVITE_UDP), reliable, CFG)
}

#[test]
fn rfc3261_17_2_1_sends_100_trying_after_200_ms_without_tu_answer() {
    let t = t0();
    let mut m = server_invite(t, true);
    assert!(m.poll_transmit().is_none());
    assert_eq!(m.poll_timeout(), Some(t + ms(200)));
    m.handle_timeout(t + ms(200));
    let trying = fedgate_sip::Message::parse(m.poll_transmit().expect("100")).expect("parses");
    assert_eq!(trying.status().map(|s| s.as_u16()), Some(100));
    assert!(trying.to().expect("to").tag().is_none());
    // An INVITE retransmission resends the 100.
    m.handle_retransmission(t + ms(300));
    assert!(m.poll_transmit().is_some());
}

#[test]
fn rfc3261_17_2_1_no_100_trying_when_tu_answers_in_time() {
    let t = t0();
    let mut m = server_invite(t, true);
    let ringing = resp(m.request(), 180);
    m.send_response(t + ms(50), ringing.status().expect("s"), ringing.to_bytes())
        .expect("ok");
    assert!(m.poll_transmit().is_some());
    m.handle_timeout(t + ms(250));
    assert!(m.poll_transmit().is_none());
}

#[test]
fn rfc3261_17_2_1_timer_g_retransmits_final_until_timer_h() {
    let t = t0();
    let mut m = server_invite(t, false);
    let busy = resp(m.request(), 486);
    m.send_response(t, busy.status().expect("s"), busy.to_bytes())
        .expect("ok");
    let mut sent = vec![];
    while m.poll_transmit().is_some() {
        sent.push(Duration::ZERO);
    }
    let mut note = None;
    while let Some(d) = m.poll_timeout() {
        note = m.handle_timeout(d);
        while m.poll_transmit().is_some() {
            sent.push(d - t);
        }
        if note.is_some() {
            break;
        }
    }
    let mut expect = vec![0, 500, 1500, 3500, 7500];
    let mut x = 7500;
    while x + 4000 < 32000 {
        x += 4000;
        expect.push(x);
    }
    assert_eq!(sent, expect.into_iter().map(ms).collect::<Vec<_>>());
    assert_eq!(note, Some(ServerNote::AckTimeout));
    assert!(m.is_terminated());
}

#[test]
fn rfc3261_17_2_1_ack_confirms_and_timer_i() {
    let t = t0();
    let mut m = server_invite(t, false);
    let busy = resp(m.request(), 486);
    m.send_response(t, busy.status().expect("s"), busy.to_bytes())
        .expect("ok");
    m.poll_transmit();
    assert_eq!(m.handle_ack(t + secs(1)), AckOutcome::Confirmed);
    assert_eq!(m.state(), ServerInviteState::Confirmed);
    assert_eq!(m.handle_ack(t + secs(2)), AckOutcome::Absorbed);
    assert_eq!(m.poll_timeout(), Some(t + secs(6)));
    m.handle_timeout(t + secs(6));
    assert!(m.is_terminated());
    // Over TLS, Timer I is zero.
    let mut m = server_invite(t, true);
    m.send_response(t, busy.status().expect("s"), busy.to_bytes())
        .expect("ok");
    assert_eq!(
        m.poll_timeout(),
        Some(t + secs(32)),
        "only Timer H over TLS"
    );
    assert_eq!(m.handle_ack(t), AckOutcome::Confirmed);
    assert!(m.is_terminated());
}

#[test]
fn rfc6026_8_server_accepted_absorbs_invite_retransmissions_until_timer_l() {
    let t = t0();
    let mut m = server_invite(t, false);
    let ok = resp(m.request(), 200);
    m.send_response(t, ok.status().expect("s"), ok.to_bytes())
        .expect("ok");
    assert_eq!(m.state(), ServerInviteState::Accepted);
    assert!(m.poll_transmit().is_some());
    m.handle_retransmission(t + ms(500));
    assert!(m.poll_transmit().is_none(), "absorbed, not passed to TU");
    // The TU's own 2xx retransmissions pass through.
    m.send_response(t + ms(500), ok.status().expect("s"), ok.to_bytes())
        .expect("ok");
    assert!(m.poll_transmit().is_some());
    assert_eq!(m.poll_timeout(), Some(t + secs(32)));
    m.handle_timeout(t + secs(32));
    assert!(m.is_terminated());
}

#[test]
fn rfc3261_17_2_2_retransmission_resends_last_response_and_timer_j() {
    let t = t0();
    let mut m = ServerNonInvite::new(t, msg(MESSAGE_UDP), false, CFG);
    m.handle_retransmission(t);
    assert!(m.poll_transmit().is_none(), "absorbed in Trying");
    let ok = resp(m.request(), 200);
    m.send_response(t, ok.status().expect("s"), ok.to_bytes())
        .expect("ok");
    assert_eq!(m.poll_transmit(), Some(ok.to_bytes()));
    m.handle_retransmission(t + secs(1));
    assert_eq!(m.poll_transmit(), Some(ok.to_bytes()));
    assert!(
        m.send_response(t, ok.status().expect("s"), ok.to_bytes())
            .is_err()
    );
    assert_eq!(m.poll_timeout(), Some(t + secs(32)));
    m.handle_timeout(t + secs(32));
    assert!(m.is_terminated());
    // Over TLS, Timer J is zero.
    let mut m = ServerNonInvite::new(t, msg(MESSAGE_UDP), true, CFG);
    m.send_response(t, ok.status().expect("s"), ok.to_bytes())
        .expect("ok");
    assert!(m.is_terminated());
}

#[test]
fn server_non_invite_answers_408_when_tu_is_silent() {
    let t = t0();
    let mut m = ServerNonInvite::new(t, msg(MESSAGE_UDP), true, CFG);
    assert_eq!(m.poll_timeout(), Some(t + secs(32)));
    assert_eq!(m.handle_timeout(t + secs(32)), Some(ServerNote::TuTimeout));
    let r = fedgate_sip::Message::parse(m.poll_transmit().expect("408")).expect("parses");
    assert_eq!(r.status().map(|s| s.as_u16()), Some(408));
    assert!(m.is_terminated());
}

#[test]
fn transport_kind_reliability() {
    assert!(!TransportKind::Udp.is_reliable());
    assert!(TransportKind::Tls.is_reliable());
}
