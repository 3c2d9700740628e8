//! Differential tests of `validate`, which decides on the borrowed views and
//! allocates nothing, against the owned-decoder implementation it replaced (kept
//! here verbatim as `reference`): on the RFC 4475 vectors (with
//! `FEDGATE_TORTURE_DIR`), the Lync samples, generated messages whose header
//! values are mutated, and whole messages with bytes mutated, both return the same
//! `Result` (answer, reason, header); `validate_views` returns the same verdict,
//! and its views equal what the owned decoders read.

use bytes::Bytes;
use fedgate_sip::{
    Answer, HeaderError, HeaderKind, Limits, Message, Method, Rejection, Uri, Version,
    parse_datagram, validate, validate_views,
};
use proptest::prelude::*;

fn rej(answer: Answer, reason: &'static str, header: Option<&'static str>) -> Rejection {
    Rejection {
        answer,
        reason,
        header,
        unsupported: Vec::new(),
    }
}

/// `validate` as it was, on the owned decoders.
fn reference(msg: &Message) -> Result<(), Rejection> {
    let req = msg.request_line();
    let answer = |s| {
        if req.is_some() {
            Answer::Status(s)
        } else {
            Answer::Drop
        }
    };
    if msg.version() != Version::SIP_2_0 {
        return Err(rej(answer(505), "SIP version not supported", None));
    }
    if let Some(Uri::Sip(u)) = req.map(|r| &r.uri)
        && u.headers.is_some()
    {
        return Err(rej(answer(400), "headers in Request-URI", None));
    }
    let h = msg.headers();
    for kind in [
        HeaderKind::To,
        HeaderKind::From,
        HeaderKind::CallId,
        HeaderKind::CSeq,
    ] {
        match h.count(kind) {
            1 => {}
            0 => {
                return Err(rej(
                    answer(400),
                    "missing mandatory header",
                    Some(kind.name()),
                ));
            }
            _ => {
                return Err(rej(
                    answer(400),
                    "mandatory header repeated",
                    Some(kind.name()),
                ));
            }
        }
    }
    for kind in [
        HeaderKind::MaxForwards,
        HeaderKind::ContentLength,
        HeaderKind::ContentType,
    ] {
        if h.count(kind) > 1 {
            return Err(rej(
                answer(400),
                "single-valued header repeated",
                Some(kind.name()),
            ));
        }
    }
    let bad = |e: HeaderError| match e {
        HeaderError::Missing(n) => rej(answer(400), "missing mandatory header", Some(n)),
        HeaderError::Invalid { name, .. } => rej(answer(400), "malformed header", Some(name)),
        _ => unreachable!(),
    };
    h.via().map_err(bad)?;
    h.from().map_err(bad)?;
    h.to().map_err(bad)?;
    h.call_id().map_err(bad)?;
    let cseq = h.cseq().map_err(bad)?;
    if let Some(r) = req {
        if h.count(HeaderKind::MaxForwards) == 1 {
            h.max_forwards().map_err(bad)?;
        }
        if h.count(HeaderKind::ContentType) == 1 {
            h.content_type().map_err(bad)?;
        }
        h.contact().map_err(bad)?;
        h.route().map_err(bad)?;
        h.record_route().map_err(bad)?;
        h.require().map_err(bad)?;
        h.proxy_require().map_err(bad)?;
        if cseq.method != r.method {
            let code = if r.method.is_extension() { 501 } else { 400 };
            return Err(rej(
                Answer::Status(code),
                "CSeq method does not match the request method",
                Some("CSeq"),
            ));
        }
    }
    Ok(())
}

fn same(m: &Message) {
    assert_eq!(validate(m), reference(m), "{m:?}");
    // `validate_views` decides as `validate` and hands out the views the owned
    // decoders agree with.
    match validate_views(m) {
        Ok(v) => {
            assert_eq!(validate(m), Ok(()), "{m:?}");
            assert_eq!(v.top_via.map(|x| x.to_owned()), m.top_via().ok(), "{m:?}");
            assert_eq!(Ok(v.from.to_owned()), m.from(), "{m:?}");
            assert_eq!(Ok(v.to.to_owned()), m.to(), "{m:?}");
            assert_eq!(Ok(v.call_id.to_owned()), m.call_id(), "{m:?}");
            assert_eq!(Ok(v.cseq.to_owned()), m.cseq(), "{m:?}");
        }
        Err(e) => assert_eq!(validate(m), Err(e), "{m:?}"),
    }
}

fn same_wire(wire: Bytes) -> bool {
    match parse_datagram(wire, &Limits::default()) {
        Ok(m) => {
            same(&m);
            true
        }
        Err(_) => false,
    }
}

#[test]
fn torture_vectors() {
    let Some(dir) = std::env::var_os("FEDGATE_TORTURE_DIR") else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "FEDGATE_TORTURE_DIR is not set: validate differential on the RFC 4475 vectors skipped"
        );
        return;
    };
    let mut parsed = 0;
    for e in std::fs::read_dir(dir).expect("read torture dir") {
        let p = e.expect("dir entry").path();
        if p.extension().is_none_or(|x| x != "dat") {
            continue;
        }
        let raw = Bytes::from(std::fs::read(&p).expect("read"));
        let mut with_crlf = raw.to_vec();
        with_crlf.extend_from_slice(b"\r\n");
        for input in [raw, Bytes::from(with_crlf)] {
            if same_wire(input) {
                parsed += 1;
            }
        }
    }
    assert!(parsed > 40, "only {parsed} torture messages parsed");
}

const LYNC: &[&[u8]] = &[
    b"SUBSCRIBE sip:bob@contoso.com SIP/2.0\r\n\
Via: SIP/2.0/TLS 10.46.164.196:1620;branch=z9hG4bK2e1e4a7f;ms-received-port=1620;ms-received-cid=1A2B00\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@fabrikam.com>;tag=b2ae5d1d4b;epid=d6277c8671\r\n\
To: <sip:bob@contoso.com>\r\n\
Call-ID: 6f2e9b7c1a3d4e5f8a9b0c1d2e3f4a5b\r\n\
CSeq: 1 SUBSCRIBE\r\n\
Contact: <sip:alice@fabrikam.com:1620;maddr=10.46.164.196;transport=tls>;proxy=replace\r\n\
Event: presence\r\n\
Supported: ms-benotify\r\n\
Proxy-Require: ms-benotify\r\n\
Require: a, b\r\n\
Expires: 3600\r\n\
Content-Length: 0\r\n\
\r\n",
    b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/TLS 10.46.164.196:1620;branch=z9hG4bK2e1e4a7f;ms-received-port=1620;ms-received-cid=1A2B00\r\n\
From: \"Alice\" <sip:alice@fabrikam.com>;tag=b2ae5d1d4b;epid=d6277c8671\r\n\
To: <sip:bob@contoso.com>;tag=8F3A2C10\r\n\
Call-ID: 6f2e9b7c1a3d4e5f8a9b0c1d2e3f4a5b\r\n\
CSeq: 1 SUBSCRIBE\r\n\
Record-Route: <sip:edge.contoso.com:5061;transport=tls;lr;ms-key-info=jlUc2CnkhzSRaIkw+9/Ab==;ms-route-sig=gaxr7Q5LgVWuCQ_ZkHwvNKxEMdQrzsfhsA1JsfVgAA>;tag=6F37F82E6F574D9E\r\n\
Contact: <sip:edge.contoso.com:5061;transport=tls;maddr=192.0.2.50>\r\n\
Content-Type: text/xml+msrtc.pidf\r\n\
Content-Length: 0\r\n\
\r\n",
    b"INVITE sip:bob@contoso.com SIP/2.0\r\n\
Via: SIP/2.0/TLS 192.0.2.10:50123;branch=z9hG4bK8e1a.9f2d;ms-received-port=50123;ms-received-cid=5D2A00\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@fabrikam.com>;tag=7c3a2b1e;epid=d6277c8671\r\n\
To: <sip:bob@contoso.com>\r\n\
Call-ID: 2f0a3c8b9e1d4f5a8c7b6a5d4e3f2a1b\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@fabrikam.com;opaque=user:epid:Aa1Bb2Cc3Dd;gruu>\r\n\
Route: <sip:edge.contoso.com;lr>, <sip:p2.contoso.com;lr>\r\n\
Record-Route: <sip:edge.contoso.com;lr>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 0\r\n\
\r\n",
    b"MESSAGE sip:bob@gw.contoso.com SIP/2.0\r\n\
Via: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bKm0000000002;ms-received-port=5061\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@fabrikam.com>;tag=a1;epid=d6277c8671\r\n\
To: <sip:bob@contoso.com>;tag=b1\r\n\
Call-ID: bench1\r\n\
CSeq: 0000000002 MESSAGE\r\n\
Content-Type: text/plain; charset=UTF-8\r\n\
Content-Length: 5\r\n\r\nhello",
    b"BENOTIFY sip:bob@contoso.com SIP/2.0\r\n\
Via: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bK1\r\n\
From: <sip:alice@fabrikam.com>;tag=a1\r\n\
To: <sip:bob@contoso.com>;tag=b1\r\n\
Call-ID: c\r\n\
CSeq: 3 NOTIFY\r\n\
Content-Length: 0\r\n\r\n",
];

#[test]
fn lync_samples() {
    for w in LYNC {
        assert!(same_wire(Bytes::from_static(w)));
        // Every header line removed in turn, and every line doubled in turn.
        let lines: Vec<&[u8]> = w.split(|&c| c == b'\n').collect();
        for i in 1..lines.len() {
            for dup in [false, true] {
                let mut v = Vec::new();
                for (k, l) in lines.iter().enumerate() {
                    if k != i || dup {
                        v.extend_from_slice(l);
                        v.push(b'\n');
                    }
                    if k == i && dup {
                        v.extend_from_slice(l);
                        v.push(b'\n');
                    }
                }
                v.pop();
                same_wire(Bytes::from(v));
            }
        }
    }
}

#[test]
fn hand_built_request_lines() {
    // An Extension holding a known name is never parsed, but can be built.
    let mut m = parse_datagram(Bytes::from_static(LYNC[3]), &Limits::default()).unwrap();
    for method in [
        Method::Extension(Bytes::from_static(b"MESSAGE")),
        Method::Extension(Bytes::from_static(b"FOO")),
        Method::Invite,
        Method::Message,
    ] {
        if let fedgate_sip::StartLine::Request(r) = &mut m.start {
            r.method = method;
        }
        same(&m);
    }
}

const SEEDS: &[&str] = &[
    "SIP/2.0/TLS 192.0.2.10:50123;branch=z9hG4bK8e1a.9f2d;ms-received-port=50123;ms-received-cid=5D2A00",
    "SIP / 2.0 / TLS [2001:db8::2] : 5061 ;rport;received=2001:db8::9;branch=z9hG4bKx;maddr=224.2.0.1;ttl=16",
    "SIP/2.0/UDP a;x=\"q,\\\"r\";y, SIP/2.0/TCP b.example:5060;branch=z9hG4bK2",
    "\"Alice\" <sip:alice@fabrikam.com>;tag=7c3a2b1e;epid=d6277c8671",
    "<sip:alice@fabrikam.com;opaque=user:epid:Aa1Bb2Cc3Dd;gruu>",
    "Bob Smith <sips:bob:pw@[2001:db8::1]:5061;transport=tls;lr?subject=x&h=>;q=0.7;expires=60",
    "sip:a@b;tag=x, <tel:+1-201-555-0123;phone-context=example.com>, <urn:uuid:f81d4fae>",
    "<sip:edge.fabrikam.com:5061;transport=tls;lr;ms-key-info=jlUc2CnkhzSR;ms-route-sig=gaxr7Q5LgVWu>",
    "2f0a3c8b9e1d4f5a8c7b6a5d4e3f2a1b@host",
    "1 OPTIONS",
    "4294967295 BENOTIFY",
    "*",
    "70",
    "text/plain; charset=UTF-8",
    "application/sdp",
    "multipart/related;type=\"application/rlmi+xml\";boundary=b",
    "ms-benotify, timer",
    "100rel",
    "",
];

const ALPHABET: &[u8] = b";,=<>\"\\ :@[]/%.?&*-_+~'()!`\tazAZ09\x00\x7f\x80\xff";

fn mutated() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(SEEDS).prop_flat_map(mutated_from)
}

/// `seed`, left alone half of the time, else with a few bytes edited.
fn mutated_from(seed: &'static str) -> impl Strategy<Value = Vec<u8>> {
    (
        Just(seed),
        prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                prop::sample::select(ALPHABET),
                0u8..3,
            ),
            0..4,
        ),
        any::<bool>(),
    )
        .prop_map(|(seed, edits, keep)| {
            let mut v = seed.as_bytes().to_vec();
            if keep {
                return v;
            }
            for (at, c, op) in edits {
                let i = at.index(v.len() + 1);
                match op {
                    0 => v.insert(i, c),
                    1 if i < v.len() => {
                        v.remove(i);
                    }
                    _ if i < v.len() => v[i] = c,
                    _ => v.push(c),
                }
            }
            v
        })
}

/// Names validate looks at, in long, compact and odd-case forms.
const NAMES: &[&str] = &[
    "Via",
    "v",
    "From",
    "f",
    "To",
    "t",
    "Call-ID",
    "i",
    "CSeq",
    "cseq",
    "Max-Forwards",
    "Content-Length",
    "l",
    "Content-Type",
    "c",
    "Contact",
    "m",
    "Route",
    "Record-Route",
    "Require",
    "Proxy-Require",
    "Supported",
    "X-Other",
];

const START: &[&str] = &[
    "OPTIONS sip:a@b SIP/2.0",
    "MESSAGE sip:bob@contoso.com SIP/2.0",
    "BENOTIFY sip:bob@contoso.com SIP/2.0",
    "INVITE sip:a@b?x=y SIP/2.0",
    "INVITE tel:+1 SIP/2.0",
    "OPTIONS sip:a@b SIP/2.1",
    "SIP/2.0 200 OK",
    "SIP/2.0 180 Ringing",
];

fn cseq_for(start: &str) -> String {
    let m = start.split(' ').next().unwrap_or("OPTIONS");
    let m = if m == "SIP/2.0" { "INVITE" } else { m };
    format!("7 {m}")
}

proptest! {
    #![proptest_config(ProptestConfig {
        // PROPTEST_CASES overrides, for longer runs.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(4096),
        ..ProptestConfig::default()
    })]

    /// A well-formed core with mutated values in the headers validate reads, and
    /// extra lines of any of those names (possibly folded).
    #[test]
    fn generated_messages_agree(
        start in prop::sample::select(START),
        via in mutated_from(SEEDS[0]), from in mutated_from(SEEDS[3]),
        to in mutated_from(SEEDS[4]), cid in mutated_from(SEEDS[8]),
        cseq in prop::option::of(mutated()),
        extra in prop::collection::vec(
            (prop::sample::select(NAMES), mutated(), any::<bool>()), 0..4),
        drop_core in prop::option::of(0usize..5),
    ) {
        let mut wire = start.as_bytes().to_vec();
        wire.extend_from_slice(b"\r\n");
        let default_cseq = cseq_for(start);
        let core: [(&str, &[u8]); 5] = [
            ("Via", &via),
            ("From", &from),
            ("To", &to),
            ("Call-ID", &cid),
            ("CSeq", cseq.as_deref().unwrap_or(default_cseq.as_bytes())),
        ];
        for (k, (name, v)) in core.iter().enumerate() {
            if drop_core == Some(k) {
                continue;
            }
            wire.extend_from_slice(name.as_bytes());
            wire.extend_from_slice(b": ");
            wire.extend_from_slice(v);
            wire.extend_from_slice(b"\r\n");
        }
        for (name, v, fold) in &extra {
            wire.extend_from_slice(name.as_bytes());
            wire.extend_from_slice(b": ");
            if *fold && v.len() > 2 {
                wire.extend_from_slice(&v[..v.len() / 2]);
                wire.extend_from_slice(b"\r\n ");
                wire.extend_from_slice(&v[v.len() / 2..]);
            } else {
                wire.extend_from_slice(v);
            }
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"\r\n");
        same_wire(Bytes::from(wire));
    }

    /// Whole Lync messages with bytes replaced, inserted or removed.
    #[test]
    fn mutated_messages_agree(
        which in 0..LYNC.len(),
        edits in prop::collection::vec(
            (any::<prop::sample::Index>(), prop::sample::select(ALPHABET), 0u8..3), 1..6),
    ) {
        let mut v = LYNC[which].to_vec();
        for (at, c, op) in edits {
            let i = at.index(v.len());
            match op {
                0 => v.insert(i, c),
                1 => {
                    v.remove(i);
                }
                _ => v[i] = c,
            }
        }
        same_wire(Bytes::from(v));
    }
}
