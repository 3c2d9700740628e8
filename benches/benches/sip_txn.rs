//! In-dialog MESSAGE transactions through the sans-IO SIP stack (fedgate-sip-txn over
//! fedgate-sip), on simulated time: bytes of a MESSAGE in → parse → transaction and
//! dialog match (CSeq order) → event to the TU → 200 built and serialized → bytes out.
//! One core, no I/O. Target: ≥ 500k transactions/s.
//!
//! Run: `cargo bench -p fedgate-benches --bench sip_txn`
//!
//! Each iteration also builds its input (`MessageTemplate::make`: a `format!` and a
//! copy, about 1 600 instructions), as a driver would hand over a fresh buffer.
//! On a shared machine, compare instruction counts rather than times: run the same
//! loop under `valgrind --tool=callgrind` for N and 21·N iterations and divide the
//! difference by 20·N (the crate docs of fedgate-sip-txn give the current figure).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fedgate_sip_txn::ua::address;
use fedgate_sip_txn::{
    Endpoint, EndpointConfig, Flow, TransportKind, TxnEvent, UaConfig, UaEvent, UserAgent,
};

/// A MESSAGE with fixed-width CSeq and branch fields, patched in place per iteration
/// (leading zeros are valid in CSeq, RFC 3261 §25.1).
struct MessageTemplate {
    bytes: Vec<u8>,
    cseq_at: usize,
    branch_at: usize,
}

const WIDTH: usize = 10;

impl MessageTemplate {
    fn new(to_tag: &str) -> Self {
        let text = format!(
            "MESSAGE sip:bob@gw.contoso.com SIP/2.0\r\n\
             Via: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bKm{b};ms-received-port=5061\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@fabrikam.com>;tag=a1;epid=d6277c8671\r\n\
             To: <sip:bob@contoso.com>;tag={to_tag}\r\n\
             Call-ID: bench1\r\n\
             CSeq: {c} MESSAGE\r\n\
             Content-Type: text/plain; charset=UTF-8\r\n\
             Content-Length: 5\r\n\r\nhello",
            b = "B".repeat(WIDTH),
            c = "C".repeat(WIDTH),
        );
        let bytes = text.into_bytes();
        let find = |pat: &[u8]| {
            bytes
                .windows(pat.len())
                .position(|w| w == pat)
                .expect("field")
        };
        let cseq_at = find(&[b'C'; WIDTH]);
        let branch_at = find(&[b'B'; WIDTH]);
        MessageTemplate {
            bytes,
            cseq_at,
            branch_at,
        }
    }

    fn make(&mut self, n: u64) -> Bytes {
        let digits = format!("{n:0WIDTH$}");
        self.bytes[self.cseq_at..self.cseq_at + WIDTH].copy_from_slice(digits.as_bytes());
        self.bytes[self.branch_at..self.branch_at + WIDTH].copy_from_slice(digits.as_bytes());
        Bytes::copy_from_slice(&self.bytes)
    }
}

/// A user agent with one accepted IM session, and the To tag it chose.
fn ua_with_session(flow: Flow, now: Instant) -> (UserAgent, String) {
    let contact = address("<sip:gw.contoso.com:5061;transport=tls>").expect("contact");
    let mut ua = UserAgent::new(UaConfig::new(
        EndpointConfig::with_domain("gw.contoso.com", 1),
        contact,
    ));
    let sdp = fedgate_sip_txn::im::sdp("192.0.2.10", 5061, "text/plain");
    let invite = format!(
        "INVITE sip:bob@gw.contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bKinv\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@fabrikam.com>;tag=a1;epid=d6277c8671\r\nTo: <sip:bob@contoso.com>\r\n\
         Call-ID: bench1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.10:5061;transport=tls>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{}",
        sdp.len(),
        String::from_utf8_lossy(&sdp)
    );
    ua.handle_datagram(now, flow, Bytes::from(invite));
    let Some(UaEvent::SessionOffered { session, .. }) = ua.poll_event() else {
        panic!("INVITE was not offered as a session")
    };
    ua.accept_session(now, session).expect("accept");
    let tag = ua
        .session_dialog(session)
        .expect("dialog")
        .id()
        .local_tag
        .clone();
    while ua.poll_transmit().is_some() {}
    while ua.poll_event().is_some() {}
    (ua, String::from_utf8_lossy(&tag).into_owned())
}

fn bench(c: &mut Criterion) {
    let flow = Flow::new(1, TransportKind::Tls);
    let mut g = c.benchmark_group("sip_txn");
    g.throughput(Throughput::Elements(1));

    // The user agent: dialog match, CSeq order, IM session event, 200 in the dialog.
    g.bench_function("ua_in_dialog_message", |b| {
        b.iter_custom(|iters| {
            let now = Instant::now();
            let (mut ua, tag) = ua_with_session(flow, now);
            let mut tpl = MessageTemplate::new(&tag);
            let mut delivered = 0u64;
            let mut out = 0usize;
            let start = Instant::now();
            for i in 0..iters {
                ua.handle_datagram(now, flow, tpl.make(i + 2));
                while let Some(e) = ua.poll_event() {
                    if matches!(e, UaEvent::MessageReceived { .. }) {
                        delivered += 1;
                    }
                }
                while let Some(t) = ua.poll_transmit() {
                    out += t.payload.len();
                }
            }
            let elapsed = start.elapsed();
            assert_eq!(delivered, iters, "every MESSAGE must reach the TU");
            black_box(out);
            elapsed
        })
    });

    // The transaction layer alone: match, TU answers 200, serialize.
    g.bench_function("endpoint_message", |b| {
        b.iter_custom(|iters| {
            let now = Instant::now();
            let mut ep = Endpoint::new(EndpointConfig::with_domain("gw.contoso.com", 1));
            let mut tpl = MessageTemplate::new("b1");
            let mut answered = 0u64;
            let start = Instant::now();
            for i in 0..iters {
                ep.handle_datagram(now, flow, tpl.make(i + 2));
                while let Some(ev) = ep.poll_event() {
                    if let TxnEvent::Request { txn, request, .. } = ev {
                        let r = fedgate_sip_txn::util::response_to(&request, 200, None);
                        ep.send_response(now, txn, r).expect("answered");
                        answered += 1;
                    }
                }
                while let Some(t) = ep.poll_transmit() {
                    black_box(t.payload.len());
                }
            }
            let elapsed = start.elapsed();
            assert_eq!(answered, iters);
            assert!(
                ep.is_empty(),
                "transactions must not pile up on a reliable transport"
            );
            elapsed
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
