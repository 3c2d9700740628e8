//! Throughput smoke tests for the in-dialog MESSAGE path (parse → match → answer →
//! serialize). Ignored by default; run with
//! `cargo test -p fedgate-sip-txn --release --test throughput -- --ignored --nocapture`.
//! They print transactions per second; the criterion bench is the lead's.

mod common;

use std::time::Instant;

use bytes::Bytes;
use fedgate_sip_txn::ua::address;
use fedgate_sip_txn::*;

const N: u32 = 20_000;

fn message(i: u32, to_tag: &str) -> Bytes {
    Bytes::from(format!(
        "MESSAGE sip:bob@gw.contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bKm{i};ms-received-port=5061\r\nMax-Forwards: 70\r\nFrom: <sip:alice@fabrikam.com>;tag=a1;epid=d6277c8671\r\nTo: <sip:bob@contoso.com>;tag={to_tag}\r\nCall-ID: bench1\r\nCSeq: {} MESSAGE\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: 5\r\n\r\nhello",
        i + 2
    ))
}

#[test]
#[ignore]
fn endpoint_message_transactions_per_second() {
    let flow = Flow::new(1, TransportKind::Tls);
    let mut ep = Endpoint::new(EndpointConfig::with_domain("gw.contoso.com", 1));
    let msgs: Vec<Bytes> = (0..N).map(|i| message(i, "b1")).collect();
    let t = common::t0();
    let start = Instant::now();
    let mut bytes_out = 0usize;
    for m in msgs {
        ep.handle_datagram(t, flow, m);
        while let Some(ev) = ep.poll_event() {
            if let TxnEvent::Request { txn, request, .. } = ev {
                let r = fedgate_sip_txn::util::response_to(&request, 200, None);
                ep.send_response(t, txn, r).expect("answered");
            }
        }
        while let Some(x) = ep.poll_transmit() {
            bytes_out += x.payload.len();
        }
    }
    let el = start.elapsed();
    assert!(ep.is_empty());
    assert!(bytes_out > 0);
    println!(
        "endpoint: {:.0} MESSAGE transactions/s",
        f64::from(N) / el.as_secs_f64()
    );
}

#[test]
#[ignore]
fn ua_in_dialog_message_transactions_per_second() {
    let flow = Flow::new(1, TransportKind::Tls);
    let contact = address("<sip:gw.contoso.com:5061;transport=tls>").expect("c");
    let mut ua = UserAgent::new(UaConfig::new(
        EndpointConfig::with_domain("gw.contoso.com", 1),
        contact,
    ));
    let t = common::t0();
    let sdp = fedgate_sip_txn::im::sdp("192.0.2.10", 5061, "text/plain");
    let invite = format!(
        "INVITE sip:bob@gw.contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bKinv\r\nMax-Forwards: 70\r\nFrom: <sip:alice@fabrikam.com>;tag=a1;epid=d6277c8671\r\nTo: <sip:bob@contoso.com>\r\nCall-ID: bench1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.10:5061;transport=tls>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{}",
        sdp.len(),
        String::from_utf8_lossy(&sdp)
    );
    ua.handle_datagram(t, flow, Bytes::from(invite));
    let Some(UaEvent::SessionOffered { session, .. }) = ua.poll_event() else {
        panic!("offer")
    };
    ua.accept_session(t, session).expect("accept");
    let tag = ua
        .session_dialog(session)
        .expect("d")
        .id()
        .local_tag
        .clone();
    let tag = String::from_utf8_lossy(&tag).into_owned();
    while ua.poll_transmit().is_some() {}
    let msgs: Vec<Bytes> = (0..N).map(|i| message(i, &tag)).collect();
    let start = Instant::now();
    let mut delivered = 0u32;
    for m in msgs {
        ua.handle_datagram(t, flow, m);
        while let Some(e) = ua.poll_event() {
            if matches!(e, UaEvent::MessageReceived { .. }) {
                delivered += 1;
            }
        }
        while ua.poll_transmit().is_some() {}
    }
    let el = start.elapsed();
    assert_eq!(delivered, N);
    println!(
        "user agent: {:.0} in-dialog MESSAGE transactions/s",
        f64::from(N) / el.as_secs_f64()
    );
}

#[test]
#[ignore]
fn codec_share_of_the_message_path() {
    let msgs: Vec<Bytes> = (0..N).map(|i| message(i, "b1")).collect();
    let start = Instant::now();
    let mut parsed = Vec::with_capacity(msgs.len());
    for m in msgs {
        parsed.push(fedgate_sip::parse_datagram(m, &fedgate_sip::Limits::DEFAULT).expect("p"));
    }
    let parse = start.elapsed();
    let start = Instant::now();
    for m in &parsed {
        fedgate_sip::validate(m).expect("valid");
    }
    let validate = start.elapsed();
    let start = Instant::now();
    let mut n = 0;
    for m in &parsed {
        n += fedgate_sip_txn::util::response_to(m, 200, None)
            .to_bytes()
            .len();
    }
    let respond = start.elapsed();
    assert!(n > 0);
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e9 / f64::from(N);
    println!(
        "per message: parse {:.0} ns, validate {:.0} ns, build+encode 200 {:.0} ns",
        per(parse),
        per(validate),
        per(respond)
    );
}
