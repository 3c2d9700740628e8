//! SIP parsing and serialization: fedgate-sip against rsip 0.4 and ezk-sip-types 0.6 on
//! the same bytes in the same run (inputs in `fedgate_benches`).
//!
//! Modes:
//! - `untyped`: start line parsed, every header split into name and value;
//! - `typed`: the same, plus the core headers decoded into typed values: Via (all
//!   values), From, To, Call-ID, CSeq, Contact and Content-Length.
//! - `typed_ref` (fedgate only): the same headers through fedgate-sip's borrowed
//!   views (`fedgate_sip::view`), checked exactly as the owned decoders check them;
//!   the fields an application reads first (branch, sent-by, tag, epid, URI host,
//!   sequence number, method) are read, so nothing is left for later.
//!
//! Before criterion runs, the bench prints the heap allocations of one parse of each
//! input by each parser (counted with a wrapping global allocator).
//!
//! Run: `cargo bench -p fedgate-benches --bench sip`

use std::alloc::System;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use fedgate_benches::{LYNC_INVITE, SIP_INPUTS};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

mod fedgate {
    use super::*;
    use fedgate_sip::{ContactRefs, Limits, Message, parse_datagram};

    pub fn untyped(wire: &Bytes) -> Message {
        let m = parse_datagram(wire.clone(), &Limits::DEFAULT).expect("fedgate-sip parse");
        let mut n = 0;
        for h in m.headers().iter() {
            n += h.name().len() + h.value().len();
        }
        black_box(n);
        m
    }

    pub fn typed(wire: &Bytes) -> usize {
        let m = untyped(wire);
        let vias = m.via().expect("via");
        let from = m.from().expect("from");
        let to = m.to().expect("to");
        let call_id = m.call_id().expect("call-id");
        let cseq = m.cseq().expect("cseq");
        let contact = m.contact().ok();
        let cl = m.content_length().expect("content-length");
        black_box((&from, &to, &call_id, &cseq, &contact, &cl));
        vias.len()
    }

    pub fn typed_ref(wire: &Bytes) -> usize {
        let m = untyped(wire);
        let mut vias = 0;
        for v in m.vias().expect("via") {
            let v = v.expect("via");
            black_box((v.branch(), v.host(), v.port()));
            vias += 1;
        }
        let from = m.from_ref().expect("from");
        let to = m.to_ref().expect("to");
        let call_id = m.call_id_ref().expect("call-id");
        let cseq = m.cseq_ref().expect("cseq");
        let mut contacts = 0;
        if let Ok(ContactRefs::Addresses(list)) = m.contact_refs() {
            for c in list.flatten() {
                black_box(c.uri().as_sip().map(|u| u.host()));
                contacts += 1;
            }
        }
        let cl = m.content_length().expect("content-length");
        black_box((
            from.tag(),
            from.epid(),
            from.uri().as_sip().map(|u| u.host()),
        ));
        black_box((to.tag(), to.uri().as_sip().map(|u| u.host())));
        black_box((call_id.as_bytes(), cseq.seq, cseq.method_bytes()));
        black_box((contacts, &cl));
        vias
    }

    pub fn serialize(m: &Message, out: &mut Vec<u8>) {
        out.clear();
        m.encode(out);
    }
}

mod rsip_peer {
    use super::*;
    use rsip::prelude::*;

    pub fn untyped(wire: &Bytes) -> Result<rsip::SipMessage, rsip::Error> {
        rsip::SipMessage::try_from(&wire[..])
    }

    pub fn typed(wire: &Bytes) -> Result<usize, rsip::Error> {
        let m = untyped(wire)?;
        let mut vias = 0;
        let mut cl = None;
        for h in m.headers().iter() {
            match h {
                rsip::Header::Via(v) => {
                    black_box(v.typed()?);
                    vias += 1;
                }
                rsip::Header::ContentLength(c) => cl = Some(c.length()?),
                _ => {}
            }
        }
        let from = m.from_header()?.typed()?;
        let to = m.to_header()?.typed()?;
        let call_id = m.call_id_header()?.clone();
        let cseq = m.cseq_header()?.typed()?;
        let contact = m.contact_header().ok().map(|c| c.typed()).transpose()?;
        black_box((&from, &to, &call_id, &cseq, &contact, &cl));
        Ok(vias)
    }
}

mod ezk_peer {
    use super::*;
    use ezk_sip_types::header::typed::{CSeq, CallID, Contact, ContentLength, FromTo, Via};
    use ezk_sip_types::msg::{Line, MessageLine, PullParser};
    use ezk_sip_types::parse::Parse;
    use ezk_sip_types::{Headers, Name};

    pub struct Parsed {
        pub line: MessageLine,
        pub headers: Headers,
    }

    /// How ezk-sip-core's transport layer reads a message: pull lines (with folding),
    /// parse the start line, split each header line into name and value.
    pub fn untyped(wire: &Bytes) -> Result<Parsed, String> {
        let mut lines = PullParser::new(wire, 0);
        let first = lines.next().ok_or("empty")?.map_err(|_| "incomplete")?;
        fn text(l: &[u8]) -> Result<&str, String> {
            std::str::from_utf8(l).map_err(|e| e.to_string())
        }
        let line = MessageLine::parse(wire)(text(first)?)
            .map_err(|e| format!("start line: {e:?}"))?
            .1;
        let mut headers = Headers::with_capacity(16);
        for l in lines {
            let l = l.map_err(|_| "incomplete")?;
            let (_, Line { name, value }) =
                Line::parse(wire, text(l)?).map_err(|e| format!("header: {e:?}"))?;
            headers.insert(name, value);
        }
        Ok(Parsed { line, headers })
    }

    pub fn typed(wire: &Bytes) -> Result<usize, String> {
        let p = untyped(wire)?;
        let e = |e: ezk_sip_types::header::HeaderError| e.to_string();
        let vias: Vec<Via> = p.headers.get_named().map_err(e)?;
        let from: FromTo = p.headers.get(Name::FROM).map_err(e)?;
        let to: FromTo = p.headers.get(Name::TO).map_err(e)?;
        let call_id: CallID = p.headers.get_named().map_err(e)?;
        let cseq: CSeq = p.headers.get_named().map_err(e)?;
        let contact: Option<Vec<Contact>> = p.headers.get_named().ok();
        let cl: ContentLength = p.headers.get_named().map_err(e)?;
        black_box((&p.line, &from, &to, &call_id, &cseq, &contact, &cl));
        Ok(vias.len())
    }
}

/// Heap allocations (count, bytes) made by one call of `f`.
fn allocations<T>(f: impl FnOnce() -> T) -> (usize, usize) {
    let region = Region::new(GLOBAL);
    let out = f();
    let stats = region.change();
    drop(out);
    (
        stats.allocations + stats.reallocations,
        stats.bytes_allocated,
    )
}

fn report_allocations() {
    println!("heap allocations per parse (count, bytes), one call, input already in memory:");
    for (name, wire) in SIP_INPUTS {
        let wire = Bytes::from_static(wire);
        let f_u = allocations(|| fedgate::untyped(&wire));
        let f_t = allocations(|| fedgate::typed(&wire));
        let f_r = allocations(|| fedgate::typed_ref(&wire));
        let r_u = allocations(|| rsip_peer::untyped(&wire).is_ok());
        let r_t = allocations(|| rsip_peer::typed(&wire).is_ok());
        let e_u = allocations(|| ezk_peer::untyped(&wire).is_ok());
        let e_t = allocations(|| ezk_peer::typed(&wire).is_ok());
        println!(
            "  {name:<18} fedgate untyped {f_u:?} typed {f_t:?} typed_ref {f_r:?} | rsip untyped {r_u:?} typed {r_t:?} | ezk untyped {e_u:?} typed {e_t:?}"
        );
    }
}

/// Peers that cannot parse an input are left out of its group, and say so.
fn peer_ok<T, E: std::fmt::Display>(peer: &str, input: &str, r: Result<T, E>) -> bool {
    match r {
        Ok(_) => true,
        Err(e) => {
            let e = e.to_string();
            let first = e.lines().next().unwrap_or_default();
            println!("note: {peer} cannot parse {input} ({first}); left out of that group");
            false
        }
    }
}

fn parse_benches(c: &mut Criterion) {
    for mode in ["untyped", "typed", "typed_ref"] {
        let mut g = c.benchmark_group(format!("sip_parse_{mode}"));
        for (name, wire) in SIP_INPUTS {
            let wire = Bytes::from_static(wire);
            g.throughput(Throughput::Bytes(wire.len() as u64));
            if mode == "untyped" {
                g.bench_with_input(BenchmarkId::new("fedgate", name), &wire, |b, w| {
                    b.iter(|| fedgate::untyped(black_box(w)))
                });
                if peer_ok("rsip", name, rsip_peer::untyped(&wire)) {
                    g.bench_with_input(BenchmarkId::new("rsip", name), &wire, |b, w| {
                        b.iter(|| rsip_peer::untyped(black_box(w)))
                    });
                }
                if peer_ok("ezk-sip-types", name, ezk_peer::untyped(&wire)) {
                    g.bench_with_input(BenchmarkId::new("ezk", name), &wire, |b, w| {
                        b.iter(|| ezk_peer::untyped(black_box(w)).map(|p| p.headers))
                    });
                }
            } else if mode == "typed_ref" {
                g.bench_with_input(BenchmarkId::new("fedgate", name), &wire, |b, w| {
                    b.iter(|| fedgate::typed_ref(black_box(w)))
                });
            } else {
                g.bench_with_input(BenchmarkId::new("fedgate", name), &wire, |b, w| {
                    b.iter(|| fedgate::typed(black_box(w)))
                });
                if peer_ok("rsip", name, rsip_peer::typed(&wire)) {
                    g.bench_with_input(BenchmarkId::new("rsip", name), &wire, |b, w| {
                        b.iter(|| rsip_peer::typed(black_box(w)))
                    });
                }
                if peer_ok("ezk-sip-types", name, ezk_peer::typed(&wire)) {
                    g.bench_with_input(BenchmarkId::new("ezk", name), &wire, |b, w| {
                        b.iter(|| ezk_peer::typed(black_box(w)))
                    });
                }
            }
        }
        g.finish();
    }
}

fn serialize_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("sip_serialize");
    let wire = Bytes::from_static(LYNC_INVITE);
    let msg = fedgate::untyped(&wire);
    let mut out = Vec::with_capacity(2048);
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("fedgate/lync_invite", |b| {
        b.iter(|| fedgate::serialize(black_box(&msg), &mut out))
    });
    if let Ok(m) = rsip_peer::untyped(&wire) {
        g.bench_function("rsip/lync_invite", |b| b.iter(|| black_box(&m).to_string()));
    }
    g.finish();
}

criterion_group!(benches, parse_benches, serialize_benches);

fn main() {
    report_allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
