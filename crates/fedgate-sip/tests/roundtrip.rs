//! Property tests: `parse(print(x)) == x` for URIs, each typed header and whole
//! messages; and arbitrary or mutated input never panics.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{Bytes, BytesMut};
use fedgate_sip::{
    AbsoluteUri, Address, CSeq, CallId, ContentLength, DeltaSeconds, Header, HeaderKind,
    HeaderValue, Host, Limits, MaxForwards, MediaType, Message, Method, OptionTag, Param, Params,
    Reason, SipUri, StatusCode, StreamFramer, TelUri, TokenParams, Transport, Uri, Via,
    frame_stream, parse_datagram, validate,
};
use proptest::prelude::*;

fn b(s: String) -> Bytes {
    Bytes::from(s)
}

const TOKEN: &str = "[A-Za-z0-9.!%*_+`'~-]{1,10}";

fn token() -> impl Strategy<Value = Bytes> {
    TOKEN.prop_map(b)
}

fn escaped(unreserved: &'static str) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(
        prop_oneof![3 => unreserved.prop_map(|s| s), 1 => "%[0-9A-Fa-f]{2}".prop_map(|s| s)],
        1..4,
    )
    .prop_map(|v| b(v.concat()))
}

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,8}(\\.[a-z][a-z0-9_-]{0,8}){0,3}".prop_map(|s| Host::Domain(b(s))),
        any::<u32>().prop_map(|n| Host::Ipv4(Ipv4Addr::from(n))),
        any::<u128>().prop_map(|n| Host::Ipv6(Ipv6Addr::from(n))),
    ]
}

fn uri_params() -> impl Strategy<Value = Params> {
    prop::collection::vec(
        (
            escaped("[a-z0-9_.!~*'()-]{1,6}"),
            prop::option::of(escaped("[A-Za-z0-9\\[\\]/:&+$_.!~*'()=-]{1,8}")),
        ),
        0..4,
    )
    .prop_map(|v| Params(v.into_iter().map(|(n, v)| Param::new(n, v)).collect()))
}

fn sip_uri() -> impl Strategy<Value = SipUri> {
    (
        any::<bool>(),
        prop::option::of((
            escaped("[A-Za-z0-9_.!~*'()&=+$,;?/-]{1,8}"),
            prop::option::of(escaped("[A-Za-z0-9_.!~*'()&=+$,-]{0,6}")),
        )),
        host(),
        prop::option::of(any::<u16>()),
        uri_params(),
        prop::option::of(
            "[A-Za-z]{1,5}=[a-z0-9]{1,5}(&[A-Za-z]{1,5}=[a-z0-9]{0,5}){0,2}".prop_map(b),
        ),
    )
        .prop_map(|(secure, userinfo, host, port, params, headers)| {
            let (user, password) = match userinfo {
                Some((u, p)) => (Some(u), p),
                None => (None, None),
            };
            SipUri {
                secure,
                user,
                password,
                host,
                port,
                params,
                headers,
            }
        })
}

fn uri() -> impl Strategy<Value = Uri> {
    prop_oneof![
        4 => sip_uri().prop_map(Uri::Sip),
        1 => ("\\+?[0-9-]{1,12}", uri_params()).prop_map(|(n, params)| Uri::Tel(TelUri { number: b(n), params })),
        1 => ("[a-z][a-z0-9+.-]{0,6}", "[a-z0-9/.:@]{1,12}")
            .prop_filter("not sip/sips/tel", |(s, _)| !["sip", "sips", "tel"].contains(&s.as_str()))
            .prop_map(|(s, r)| match Uri::parse(&Bytes::from(format!("{s}:{r}"))) {
                Ok(Uri::Absolute(a)) => Uri::Absolute(a),
                other => panic!("absolute URI generator: {other:?}"),
            }),
    ]
}

fn quoted() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(
        prop_oneof![
            4 => "[ !#-\\[\\]-~]".prop_map(|s| s.into_bytes()),
            1 => (0u8..=0x7f).prop_filter("no CR/LF", |c| *c != b'\r' && *c != b'\n').prop_map(|c| vec![b'\\', c]),
            1 => "[é€中]".prop_map(|s| s.into_bytes()),
        ],
        0..8,
    )
    .prop_map(|v| {
        let mut out = vec![b'"'];
        out.extend(v.concat());
        out.push(b'"');
        Bytes::from(out)
    })
}

fn header_params() -> impl Strategy<Value = Params> {
    prop::collection::vec(
        (
            token(),
            prop::option::of(prop_oneof![3 => token(), 1 => quoted()]),
        ),
        0..4,
    )
    .prop_map(|v| Params(v.into_iter().map(|(n, v)| Param::new(n, v)).collect()))
}

fn address() -> impl Strategy<Value = Address> {
    (
        prop::option::of(prop_oneof![
            quoted(),
            prop::collection::vec(TOKEN, 1..4).prop_map(|v| b(v.join(" "))),
        ]),
        uri(),
        header_params(),
    )
        .prop_map(|(display, uri, params)| Address {
            display,
            uri,
            params,
        })
}

fn method() -> impl Strategy<Value = Method> {
    TOKEN.prop_map(|s| Method::parse(&b(s)).expect("token"))
}

fn transport() -> impl Strategy<Value = Transport> {
    prop_oneof![
        Just(Transport::Udp),
        Just(Transport::Tcp),
        Just(Transport::Tls),
        Just(Transport::Sctp),
        Just(Transport::TlsSctp),
        Just(Transport::Ws),
        Just(Transport::Wss),
        "[A-Z]{1,3}[0-9]".prop_map(|s| Transport::Other(b(s))),
    ]
}

fn via() -> impl Strategy<Value = Via> {
    (
        token(),
        token(),
        transport(),
        host(),
        prop::option::of(any::<u16>()),
        header_params(),
    )
        .prop_map(|(protocol, version, transport, host, port, params)| Via {
            protocol,
            version,
            transport,
            host,
            port,
            params,
        })
}

fn media_type() -> impl Strategy<Value = MediaType> {
    (token(), token(), header_params()).prop_map(|(mtype, subtype, params)| MediaType {
        mtype,
        subtype,
        params,
    })
}

fn roundtrip<T: HeaderValue + PartialEq + std::fmt::Debug>(x: &T) -> Result<(), TestCaseError> {
    let wire = x.to_bytes();
    let back = T::parse(&wire)
        .map_err(|e| TestCaseError::fail(format!("{e} in {:?}", String::from_utf8_lossy(&wire))))?;
    prop_assert_eq!(&back, x);
    Ok(())
}

fn reason() -> impl Strategy<Value = Reason> {
    "[ -~\t\u{80}-\u{10FFFF}]{0,20}".prop_map(|s| Reason::new(Bytes::from(s)).expect("reason"))
}

fn header() -> impl Strategy<Value = Header> {
    (
        TOKEN,
        prop::collection::vec(
            any::<u8>().prop_filter("no CR/LF", |c| *c != b'\r' && *c != b'\n'),
            0..24,
        ),
    )
        .prop_filter_map("valid header, not Content-Length", |(n, mut v)| {
            while v.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
                v.remove(0);
            }
            while v.last().is_some_and(|c| *c == b' ' || *c == b'\t') {
                v.pop();
            }
            let h = Header::new(b(n), Bytes::from(v)).ok()?;
            (h.kind() != Some(HeaderKind::ContentLength)).then_some(h)
        })
}

fn message() -> impl Strategy<Value = Message> {
    (
        prop_oneof![
            (method(), uri()).prop_map(|(m, u)| Message::request(m, u)),
            ((100u16..=699), reason())
                .prop_map(|(c, r)| Message::response(StatusCode::new(c).expect("code"), r)),
        ],
        prop::collection::vec(header(), 0..12),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        any::<bool>(),
    )
        .prop_map(|(mut m, headers, body, typed)| {
            for h in headers {
                m.headers_mut().push(h);
            }
            if typed {
                m.push_typed(
                    HeaderKind::CSeq,
                    &CSeq {
                        seq: 7,
                        method: Method::Invite,
                    },
                );
            }
            if let Some(body) = body {
                m.set_body(Bytes::from(body));
            }
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn uri_roundtrip(u in uri()) {
        let wire = Bytes::from(u.to_vec());
        let back = Uri::parse(&wire).map_err(|e| TestCaseError::fail(format!("{e}: {:?}", String::from_utf8_lossy(&wire))))?;
        prop_assert_eq!(back, u);
    }

    #[test]
    fn address_roundtrip(a in address()) { roundtrip(&a)?; }

    #[test]
    fn via_roundtrip(v in via()) { roundtrip(&v)?; }

    #[test]
    fn scalar_roundtrips(seq in any::<u32>(), m in method(), mf in any::<u8>(), cl in any::<u64>(), ds in any::<u32>(),
                         cid in "[A-Za-z0-9.!%*_+`'~()<>:\\\\\"/\\[\\]?{}-]{1,12}(@[A-Za-z0-9.-]{1,8})?") {
        roundtrip(&CSeq { seq, method: m.clone() })?;
        roundtrip(&m)?;
        roundtrip(&MaxForwards(mf))?;
        roundtrip(&ContentLength(cl))?;
        roundtrip(&DeltaSeconds(ds))?;
        roundtrip(&CallId(b(cid)))?;
    }

    #[test]
    fn media_token_option_roundtrips(mt in media_type(), t in token(), p in header_params()) {
        roundtrip(&mt)?;
        roundtrip(&TokenParams { token: t.clone(), params: p })?;
        roundtrip(&OptionTag(t))?;
    }

    #[test]
    fn message_roundtrip(m in message()) {
        let wire = m.to_bytes();
        let back = parse_datagram(wire.clone(), &Limits::default())
            .map_err(|e| TestCaseError::fail(format!("{e}: {:?}", String::from_utf8_lossy(&wire))))?;
        prop_assert_eq!(&back, &m);
        // Over a stream too, when Content-Length is present.
        if m.headers().get(HeaderKind::ContentLength).is_some() {
            match frame_stream(&wire, &Limits::default()) {
                Ok(fedgate_sip::Frame::Complete(s, n)) => {
                    prop_assert_eq!(n, wire.len());
                    prop_assert_eq!(s, m);
                }
                other => prop_assert!(false, "stream framing: {:?}", other),
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise(Bytes::from(data));
    }

    #[test]
    fn mutated_messages_never_panic(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
                                    cut in any::<prop::sample::Index>()) {
        let mut v = SAMPLE.to_vec();
        for (i, c) in edits {
            let at = i.index(v.len());
            v[at] = c;
        }
        exercise(Bytes::from(v.clone()));
        v.truncate(cut.index(v.len() + 1));
        exercise(Bytes::from(v));
    }
}

const SAMPLE: &[u8] = b"INVITE sip:bob@contoso.com;transport=tls SIP/2.0\r\n\
Via: SIP/2.0/TLS 192.0.2.10:50123;branch=z9hG4bK8e1a;ms-received-port=50123, SIP/2.0/TCP [2001:db8::1]:5060;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Al\\\"ice\" <sip:alice@fabrikam.com>;tag=7c3a;epid=d6277c8671\r\n\
To: Bob <sip:bob@contoso.com>\r\n\
Call-ID: 2f0a3c8b@fabrikam\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@fabrikam.com;gruu>;expires=60, sip:x@y\r\n\
Route: <sip:edge.contoso.com;lr>\r\n\
Accept: application/sdp, text/plain;q=0.5\r\n\
Supported: ms-sender, timer\r\n\
Event: presence;id=1\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

/// Runs every entry point on the input; only checks that nothing panics, and that
/// whatever parses also round-trips.
fn exercise(input: Bytes) {
    if let Ok(m) = parse_datagram(input.clone(), &Limits::default()) {
        let _ = validate(&m);
        let h = m.headers();
        let _ = (
            h.via(),
            h.top_via(),
            h.from(),
            h.to(),
            h.call_id(),
            h.cseq(),
            h.contact(),
            h.route(),
        );
        let _ = (
            h.record_route(),
            h.max_forwards(),
            h.content_length(),
            h.content_type(),
            h.accept(),
        );
        let _ = (
            h.supported(),
            h.require(),
            h.allow(),
            h.event(),
            h.subscription_state(),
            h.expires(),
        );
        let again = Message::parse(m.to_bytes()).expect("accepted message must re-parse");
        assert_eq!(again, m);
    }
    let small = Limits {
        max_message_size: 300,
        max_headers: 8,
        max_line_length: 120,
    };
    let _ = parse_datagram(input.clone(), &small);
    let _ = frame_stream(&input, &Limits::default());
    let _ = frame_stream(&input, &small);
    let mut f = StreamFramer::new(Limits::default());
    let mut buf = BytesMut::new();
    for chunk in input.chunks(7) {
        buf.extend_from_slice(chunk);
        loop {
            match f.decode(&mut buf) {
                Ok(fedgate_sip::Frame::Partial) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
    let _ = Uri::parse(&input);
    let _ = Address::parse(&input);
    let _ = Via::parse(&input);
}

#[test]
fn sample_parses() {
    let m = Message::parse(Bytes::from_static(SAMPLE)).unwrap();
    validate(&m).unwrap();
    assert_eq!(m.via().unwrap().len(), 2);
    assert_eq!(m.via().unwrap()[1].rport(), Some(None));
    assert_eq!(
        m.via().unwrap()[1].host,
        Host::Ipv6("2001:db8::1".parse().unwrap())
    );
    let _unused: Option<AbsoluteUri> = None;
}
