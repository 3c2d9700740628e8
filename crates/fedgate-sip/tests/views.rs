//! Differential tests of the borrowed views (`fedgate_sip::view`) against the owned
//! decoders: on the RFC 4475 vectors, the Lync samples and generated or mutated
//! header values, a view exists iff the owned value parses (with the same
//! `HeaderError`), `view.to_owned() == owned`, and the views' accessors agree with
//! the owned ones.

use bytes::Bytes;
use fedgate_sip::{
    Address, AddressRef, CSeq, CSeqRef, CallId, CallIdRef, ContactRefs, HeaderError, HeaderValue,
    Limits, Message, Via, ViaRef, parse_datagram,
};
use proptest::prelude::*;

fn via_eq(v: &ViaRef<'_>, o: &Via) {
    assert_eq!(v.to_owned(), *o);
    assert_eq!(v.branch(), o.branch().map(|b| &b[..]));
    assert_eq!(v.received(), o.received().map(|b| &b[..]));
    assert_eq!(v.maddr(), o.maddr().map(|b| &b[..]));
    assert_eq!(v.rport(), o.rport());
    assert_eq!(v.has_rfc3261_branch(), o.has_rfc3261_branch());
    assert_eq!(v.host().to_host(), o.host);
    assert_eq!(v.port(), o.port);
    assert_eq!(v.transport(), o.transport);
    let params: Vec<_> = v.params().iter().collect();
    assert_eq!(params.len(), o.params.iter().count());
    for ((n, val), p) in params.iter().zip(o.params.iter()) {
        assert_eq!(*n, &p.name[..]);
        assert_eq!(*val, p.value.as_deref());
        assert!(v.params().get(&String::from_utf8_lossy(n)).is_some());
    }
}

fn address_eq(a: &AddressRef<'_>, o: &Address) {
    assert_eq!(a.to_owned(), *o);
    assert_eq!(a.tag(), o.tag().map(|b| &b[..]));
    assert_eq!(a.epid(), o.epid().map(|b| &b[..]));
    assert_eq!(a.display(), o.display.as_deref());
    assert_eq!(a.uri().scheme(), o.uri.scheme());
    assert_eq!(
        a.uri().as_sip().map(|u| u.host().to_host()),
        o.uri.as_sip().map(|u| u.host.clone())
    );
    if let (Some(u), Some(ou)) = (a.uri().as_sip(), o.uri.as_sip()) {
        assert_eq!(u.transport(), ou.transport().map(|b| &b[..]));
        assert_eq!(u.lr(), ou.lr());
        assert_eq!(u.user(), ou.user.as_deref());
    }
    for p in o.params.iter() {
        let name = String::from_utf8_lossy(&p.name);
        assert_eq!(
            a.params().get(&name),
            o.params.get(&name).map(|v| v.map(|b| &b[..]))
        );
    }
}

fn collect<T, U>(
    r: Result<impl Iterator<Item = Result<T, HeaderError>>, HeaderError>,
    f: impl Fn(&T) -> U,
) -> Result<Vec<U>, HeaderError> {
    r?.map(|x| x.map(|x| f(&x))).collect()
}

/// Every borrowed accessor against its owned counterpart on one message.
fn check_message(m: &Message) {
    // Via, all values.
    let owned = m.via();
    let viewed = collect(m.vias(), |v| v.to_owned());
    assert_eq!(viewed, owned, "vias");
    if let Ok(o) = &owned {
        for (v, o) in m.vias().expect("vias").zip(o) {
            via_eq(&v.expect("via"), o);
        }
    }
    match (m.top_via_ref(), m.top_via()) {
        (Ok(v), Ok(o)) => via_eq(&v, &o),
        (v, o) => assert_eq!(v.map(|v| v.to_owned()), o, "top via"),
    }
    // From, To.
    for (v, o) in [(m.from_ref(), m.from()), (m.to_ref(), m.to())] {
        match (v, o) {
            (Ok(v), Ok(o)) => address_eq(&v, &o),
            (v, o) => assert_eq!(v.map(|v| v.to_owned()), o, "from/to"),
        }
    }
    // Call-ID, CSeq.
    assert_eq!(m.call_id_ref().map(|c| c.to_owned()), m.call_id());
    assert_eq!(m.cseq_ref().map(|c| c.to_owned()), m.cseq());
    if let (Ok(c), Ok(o)) = (m.cseq_ref(), m.cseq()) {
        assert_eq!(c.method_bytes(), o.method.as_bytes());
    }
    // Contact.
    let owned = m.contact();
    let viewed = m.contact_refs().and_then(ContactRefs::to_owned);
    assert_eq!(viewed, owned, "contact");
    if let (Ok(ContactRefs::Addresses(v)), Ok(fedgate_sip::Contacts::Addresses(o))) =
        (m.contact_refs(), &owned)
    {
        for (v, o) in v.zip(o) {
            address_eq(&v.expect("contact"), o);
        }
    }
    // Route, Record-Route.
    let h = m.headers();
    assert_eq!(
        collect(Ok(h.route_refs()), |a| a.to_owned()),
        h.route(),
        "route"
    );
    assert_eq!(
        collect(Ok(h.record_route_refs()), |a| a.to_owned()),
        h.record_route(),
        "record-route"
    );
}

/// The value-level decoders on one value.
fn check_value(v: &[u8]) {
    let src = Bytes::copy_from_slice(v);
    match (ViaRef::parse(&src, &src), Via::parse(&src)) {
        (Ok(a), Ok(o)) => via_eq(&a, &o),
        (a, o) => assert_eq!(a.map(|a| a.to_owned()), o, "via {v:?}"),
    }
    match (AddressRef::parse(&src, &src), Address::parse(&src)) {
        (Ok(a), Ok(o)) => address_eq(&a, &o),
        (a, o) => assert_eq!(a.map(|a| a.to_owned()), o, "address {v:?}"),
    }
    assert_eq!(
        CallIdRef::parse(&src, &src).map(|c| c.to_owned()),
        CallId::parse(&src)
    );
    assert_eq!(
        CSeqRef::parse(&src, &src).map(|c| c.to_owned()),
        CSeq::parse(&src)
    );
}

#[test]
fn torture_vectors() {
    let Some(dir) = std::env::var_os("FEDGATE_TORTURE_DIR") else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "FEDGATE_TORTURE_DIR is not set: view differential on the RFC 4475 vectors skipped"
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
            if let Ok(m) = parse_datagram(input, &Limits::default()) {
                check_message(&m);
                for h in m.headers().iter() {
                    check_value(h.value());
                }
                parsed += 1;
            }
        }
    }
    assert!(parsed > 40, "only {parsed} torture messages parsed");
}

const SEEDS: &[&str] = &[
    "SIP/2.0/TLS 192.0.2.10:50123;branch=z9hG4bK8e1a.9f2d;ms-received-port=50123;ms-received-cid=5D2A00",
    "SIP / 2.0 / TLS [2001:db8::2] : 5061 ;rport;received=2001:db8::9;branch=z9hG4bKx;maddr=224.2.0.1;ttl=16",
    "SIP/2.0/UDP a;x=\"q,\\\"r\";y, SIP/2.0/TCP b.example:5060;branch=z9hG4bK2",
    "SIP/2.0/UDP h;a=1;b;c=2;d;e;f;g;h;i=\"q\";J=9;branch=z9hG4bKx",
    "\"Alice\" <sip:alice@fabrikam.com>;tag=7c3a2b1e;epid=d6277c8671",
    "<sip:alice@fabrikam.com;opaque=user:epid:Aa1Bb2Cc3Dd;gruu>",
    "Bob Smith <sips:bob:pw@[2001:db8::1]:5061;transport=tls;lr?subject=x&h=>;q=0.7;expires=60",
    "sip:a@b;tag=x, <tel:+1-201-555-0123;phone-context=example.com>, <urn:uuid:f81d4fae>",
    "\"A \\\"B\\\"\" <sip:%61lice@b.example:0>;tag=1 ; epid = e1",
    "<sip:edge.fabrikam.com:5061;transport=tls;lr;ms-key-info=jlUc2CnkhzSR;ms-route-sig=gaxr7Q5LgVWu>",
    "2f0a3c8b9e1d4f5a8c7b6a5d4e3f2a1b@host",
    "4294967295 INVITE",
    "1 BENOTIFY",
    "*",
    "<sip:host>;x=a@b, <SIPS:u:p@h:1?a=%41&b=c>;tag=\"t\"",
    "<sip:a@[::1>]>, <sip:>, <sip:x?>, <sip:h;lr?x=1>x>, <sip:a@h:99999>",
    "<sip:a@b?%4>, <sip:a:@b>, <sip:@b>, <tel:+1;x=y>, <sip:a@b@c>",
];

const ALPHABET: &[u8] = b";,=<>\"\\ :@[]/%.?&*-_+~'()!`\tazAZ09\x00\x7f\x80\xff";

fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(SEEDS),
        prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                prop::sample::select(ALPHABET),
                0u8..3,
            ),
            0..5,
        ),
    )
        .prop_map(|(seed, edits)| {
            let mut v = seed.as_bytes().to_vec();
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

proptest! {
    #![proptest_config(ProptestConfig {
        // PROPTEST_CASES overrides, for longer runs.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(4096),
        ..ProptestConfig::default()
    })]

    #[test]
    fn values_agree(v in mutated()) {
        check_value(&v);
    }

    #[test]
    fn messages_agree(vias in prop::collection::vec(mutated(), 1..3), from in mutated(),
                      to in mutated(), contacts in prop::collection::vec(mutated(), 0..3),
                      routes in prop::collection::vec(mutated(), 0..2), cid in mutated(),
                      cseq in mutated()) {
        let mut wire = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
        let mut line = |name: &str, v: &[u8]| {
            wire.extend_from_slice(name.as_bytes());
            wire.extend_from_slice(b": ");
            wire.extend_from_slice(v);
            wire.extend_from_slice(b"\r\n");
        };
        for v in &vias { line("Via", v); }
        line("From", &from);
        line("t", &to);
        for c in &contacts { line("Contact", c); }
        for r in &routes { line("Route", r); line("Record-Route", r); }
        line("Call-ID", &cid);
        line("CSeq", &cseq);
        wire.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        if let Ok(m) = parse_datagram(Bytes::from(wire), &Limits::default()) {
            check_message(&m);
        }
    }
}

#[test]
fn lync_samples() {
    for s in SEEDS {
        check_value(s.as_bytes());
    }
    let m = Message::parse(Bytes::from_static(
        b"INVITE sip:bob@contoso.com SIP/2.0\r\n\
Via: SIP/2.0/TLS 192.0.2.10:50123;branch=z9hG4bK8e1a.9f2d;ms-received-port=50123;ms-received-cid=5D2A00\r\n\
Via: SIP/2.0/TLS 10.0.0.1;branch=z9hG4bKa, SIP/2.0/UDP [::1]:5060;branch=z9hG4bKb;rport=5060\r\n\
From: \"Alice\" <sip:alice@fabrikam.com>;tag=7c3a2b1e;epid=d6277c8671\r\n\
To: <sip:bob@contoso.com>\r\n\
Call-ID: 2f0a3c8b9e1d4f5a8c7b6a5d4e3f2a1b\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@fabrikam.com;opaque=user:epid:Aa1Bb2Cc3Dd;gruu>\r\n\
Record-Route: <sip:edge.fabrikam.com:5061;transport=tls;lr;ms-key-info=jlUc2CnkhzSR>\r\n\
Content-Length: 0\r\n\r\n",
    ))
    .unwrap();
    check_message(&m);
    let vias: Vec<_> = m.vias().unwrap().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[2].rport(), Some(Some(5060)));
    let from = m.from_ref().unwrap();
    assert_eq!(from.display_unquoted().unwrap().as_ref(), b"Alice");
    let Ok(ContactRefs::Addresses(mut c)) = m.contact_refs() else {
        panic!()
    };
    let c = c.next().unwrap().unwrap();
    let u = c.uri().as_sip().unwrap();
    assert_eq!(
        u.params().value("opaque"),
        Some(&b"user:epid:Aa1Bb2Cc3Dd"[..])
    );
    assert!(u.params().contains("GRUU"));
    assert_eq!(m.cseq_ref().unwrap().seq, 1);
}
