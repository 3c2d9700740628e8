//! The receiving side of s2s negotiation driven by arbitrary input: bytes from the peer,
//! TLS completions and the passing of time, in any order. No panic; output and events
//! stay bounded by what came in.
#![no_main]
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use fedgate_xmpp::dialback::DialbackSecret;
use fedgate_xmpp::s2s::{S2sConfig, S2sEvent, S2sIncoming, TlsPolicy, VerifyResult};
use fedgate_xmpp::{DomainPart, Limits};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Op {
    Bytes(Vec<u8>),
    /// A canned prefix, so the fuzzer gets past the stream header quickly.
    Header { version: bool, from_a: bool },
    Tls { valid_for_a: bool },
    Wait(u16),
    Verify { valid: bool },
}

fuzz_target!(|ops: Vec<Op>| {
    let start = Instant::now();
    let cfg = Arc::new(S2sConfig {
        local_domains: vec!["b.test".parse().expect("domain")],
        secret: DialbackSecret::new(b"fuzz secret"),
        limits: Limits::default(),
        tls_available: true,
        incoming_tls: TlsPolicy::Optional,
        tls_required_peers: Vec::new(),
        id_seed: [7; 32],
    });
    let a: DomainPart = "a.test".parse().expect("domain");
    let mut s = S2sIncoming::new(cfg, start);
    let mut now = start;
    let mut fed = 0usize;
    let mut out = 0usize;
    let mut pending = Vec::new();
    for op in ops {
        match op {
            Op::Bytes(b) => {
                fed += b.len();
                s.handle_input(now, &b);
            }
            Op::Header { version, from_a } => {
                let h = format!(
                    "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
                     xmlns:db='jabber:server:dialback' to='b.test'{}{}>",
                    if from_a { " from='a.test'" } else { "" },
                    if version { " version='1.0'" } else { "" },
                );
                fed += h.len();
                s.handle_input(now, h.as_bytes());
            }
            Op::Tls { valid_for_a } => {
                let names = if valid_for_a { vec![a.clone()] } else { Vec::new() };
                s.handle_tls_established(now, &names);
            }
            Op::Wait(ms) => {
                now += Duration::from_millis(u64::from(ms) * 10);
                if s.poll_timeout().is_some_and(|t| t <= now) {
                    s.handle_timeout(now);
                }
            }
            Op::Verify { valid } => {
                if let Some(req) = pending.pop() {
                    let result = if valid { VerifyResult::Valid } else { VerifyResult::Invalid };
                    s.handle_verify_result(&req, result);
                }
            }
        }
        while let Some(bytes) = s.poll_transmit() {
            out += bytes.len();
        }
        let mut events = 0;
        while let Some(event) = s.poll_event() {
            events += 1;
            assert!(events < 10_000, "unbounded events");
            if let S2sEvent::VerifyRequest(req) = event {
                pending.push(req);
            }
        }
        // What we write is bounded by what we read (plus headers, features and errors).
        assert!(out <= 4096 + 4 * fed, "output grew past input: {out} for {fed}");
    }
});
