//! Lync / Skype for Business federation traffic (research/sip.md §4, MS-PRES §4.11,
//! MS-SIP): Microsoft parameters and headers survive parse → serialize untouched.

use bytes::Bytes;
use fedgate_sip::{
    Address, HeaderKind, HeaderValue, Limits, Message, Method, Transport, Via, parse_datagram,
    validate,
};

fn parse_ok(wire: &'static [u8]) -> Message {
    let m = parse_datagram(Bytes::from_static(wire), &Limits::default()).expect("parse");
    validate(&m).expect("validate");
    m
}

/// Every header value of `m` appears unchanged, in order, after a round trip, and
/// the serialized form holds each `name: value` line byte for byte.
fn assert_values_survive(m: &Message) {
    let wire = m.to_bytes();
    let again = Message::parse(wire.clone()).expect("reparse");
    assert_eq!(&again, m);
    for (a, b) in m.headers().iter().zip(again.headers().iter()) {
        assert_eq!(a.name(), b.name());
        assert_eq!(a.value(), b.value());
        let mut line = a.name().to_vec();
        line.extend_from_slice(b": ");
        line.extend_from_slice(a.value());
        line.extend_from_slice(b"\r\n");
        assert!(
            memchr::memmem::find(&wire, &line).is_some(),
            "{:?} not emitted verbatim",
            String::from_utf8_lossy(&line)
        );
    }
}

const SUBSCRIBE: &[u8] = b"SUBSCRIBE sip:bob@contoso.com SIP/2.0\r\n\
Via: SIP/2.0/TLS 10.46.164.196:1620;branch=z9hG4bK2e1e4a7f;ms-received-port=1620;ms-received-cid=1A2B00\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@fabrikam.com>;tag=b2ae5d1d4b;epid=d6277c8671\r\n\
To: <sip:bob@contoso.com>\r\n\
Call-ID: 6f2e9b7c1a3d4e5f8a9b0c1d2e3f4a5b\r\n\
CSeq: 1 SUBSCRIBE\r\n\
Contact: <sip:alice@fabrikam.com:1620;maddr=10.46.164.196;transport=tls>;proxy=replace\r\n\
User-Agent: UCCAPI/4.0.7577.0 OC/4.0.7577.0 (Microsoft Office Communicator 2010)\r\n\
Event: presence\r\n\
Accept: application/msrtc-event-categories+xml, application/xpidf+xml, text/xml+msrtc.pidf, application/pidf+xml, application/rlmi+xml, multipart/related\r\n\
Supported: com.microsoft.autoextend\r\n\
Supported: ms-benotify\r\n\
Proxy-Require: ms-benotify\r\n\
Supported: ms-piggyback-first-notify\r\n\
ms-user-data: ms-publiccloud=true;ms-federation=true\r\n\
Expires: 3600\r\n\
Content-Length: 0\r\n\
\r\n";

const PIGGYBACK_OK: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/TLS 10.46.164.196:1620;branch=z9hG4bK2e1e4a7f;ms-received-port=1620;ms-received-cid=1A2B00\r\n\
From: \"Alice\" <sip:alice@fabrikam.com>;tag=b2ae5d1d4b;epid=d6277c8671\r\n\
To: <sip:bob@contoso.com>;tag=8F3A2C10\r\n\
Call-ID: 6f2e9b7c1a3d4e5f8a9b0c1d2e3f4a5b\r\n\
CSeq: 1 SUBSCRIBE\r\n\
Record-Route: <sip:edge.contoso.com:5061;transport=tls;lr;ms-key-info=jlUc2CnkhzSRaIkw+9/Ab==;ms-route-sig=gaxr7Q5LgVWuCQ_ZkHwvNKxEMdQrzsfhsA1JsfVgAA>;tag=6F37F82E6F574D9E\r\n\
Contact: <sip:edge.contoso.com:5061;transport=tls;maddr=192.0.2.50>\r\n\
Expires: 29087\r\n\
subscription-state: active;expires=29087\r\n\
ms-piggyback-cseq: 1\r\n\
ms-edge-proxy-message-trust: ms-source-type=AutoFederation;ms-ep-fqdn=edge.contoso.com;ms-source-network=federation\r\n\
Supported: ms-piggyback-first-notify\r\n\
Content-Type: text/xml+msrtc.pidf\r\n\
Content-Length: 122\r\n\
\r\n\
<presentity uri=\"sip:bob@contoso.com\"><availability aggregate=\"300\"/><activity aggregate=\"500\"/><displayName/></presentity>";

const IM_INVITE: &[u8] = b"INVITE sip:bob@contoso.com SIP/2.0\r\n\
Via: SIP/2.0/TLS 192.0.2.10:50123;branch=z9hG4bK8e1a.9f2d;ms-received-port=50123;ms-received-cid=5D2A00\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@fabrikam.com>;tag=7c3a2b1e;epid=d6277c8671\r\n\
To: <sip:bob@contoso.com>\r\n\
Call-ID: 2f0a3c8b9e1d4f5a8c7b6a5d4e3f2a1b\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@fabrikam.com;opaque=user:epid:Aa1Bb2Cc3Dd;gruu>\r\n\
Supported: ms-sender\r\n\
Ms-Conversation-ID: AdM7f2Z1Q3n0\r\n\
ms-text-format: text/plain; charset=UTF-8;msgr=WAAtAE0ATQBTAC0ASQBNAC0ARgBvAHIAbQBhAHQAOgAgAEYATgA9AE0AUwAlADIAMABTAGgAZQBsAGwAJQAyADAARABsAGcA;ms-body=SGVsbG8gQm9i\r\n\
Supported: ms-text-format\r\n\
ms-diagnostics: 1027;reason=\"Cannot route this type of SIP request to or from federated partners\"\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 175\r\n\
\r\n\
v=0\r\n\
o=- 0 0 IN IP4 192.0.2.10\r\n\
s=session\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=message 5060 sip null\r\n\
a=accept-types:text/plain text/html multipart/alternative application/ms-imdn+xml\r\n";

#[test]
fn lync_subscribe() {
    let m = parse_ok(SUBSCRIBE);
    assert_eq!(m.method(), Some(&Method::Subscribe));
    let via = m.top_via().unwrap();
    assert_eq!(via.transport, Transport::Tls);
    assert_eq!(
        via.params.value("ms-received-port").unwrap().as_ref(),
        b"1620"
    );
    assert_eq!(
        via.params.value("ms-received-cid").unwrap().as_ref(),
        b"1A2B00"
    );
    assert_eq!(m.from().unwrap().epid().unwrap().as_ref(), b"d6277c8671");
    let accept = m.headers().accept().unwrap();
    assert_eq!(accept.len(), 6);
    assert!(accept[0].is("application", "msrtc-event-categories+xml"));
    assert!(accept[2].is("text", "xml+msrtc.pidf"));
    assert!(accept[3].is("application", "pidf+xml"));
    let sup: Vec<Bytes> = m
        .headers()
        .supported()
        .unwrap()
        .into_iter()
        .map(|t| t.0)
        .collect();
    assert_eq!(
        sup,
        [
            "com.microsoft.autoextend",
            "ms-benotify",
            "ms-piggyback-first-notify"
        ]
        .map(|s| Bytes::from_static(s.as_bytes()))
    );
    assert_eq!(
        m.headers().proxy_require().unwrap()[0].0.as_ref(),
        b"ms-benotify"
    );
    assert_eq!(m.headers().event().unwrap().token.as_ref(), b"presence");
    let fedgate_sip::Contacts::Addresses(c) = m.contact().unwrap() else {
        panic!("star")
    };
    assert_eq!(c[0].params.value("proxy").unwrap().as_ref(), b"replace");
    assert_eq!(
        c[0].uri.as_sip().unwrap().maddr().unwrap().as_ref(),
        b"10.46.164.196"
    );
    assert_values_survive(&m);
}

#[test]
fn lync_piggyback_200() {
    let m = parse_ok(PIGGYBACK_OK);
    assert_eq!(m.status().unwrap().as_u16(), 200);
    let ss = m.headers().subscription_state().unwrap();
    assert_eq!(
        (ss.token.as_ref(), ss.expires()),
        (&b"active"[..], Some(29087))
    );
    assert_eq!(m.headers().expires().unwrap().0, 29087);
    let rr = m.headers().record_route().unwrap();
    let u = rr[0].uri.as_sip().unwrap();
    assert_eq!(
        u.params.value("ms-key-info").unwrap().as_ref(),
        b"jlUc2CnkhzSRaIkw+9/Ab=="
    );
    assert_eq!(
        u.params.value("ms-route-sig").unwrap().as_ref(),
        b"gaxr7Q5LgVWuCQ_ZkHwvNKxEMdQrzsfhsA1JsfVgAA"
    );
    assert_eq!(rr[0].tag().unwrap().as_ref(), b"6F37F82E6F574D9E");
    assert!(
        m.headers()
            .content_type()
            .unwrap()
            .is("text", "xml+msrtc.pidf")
    );
    assert_eq!(
        m.headers()
            .get_named("ms-piggyback-cseq")
            .next()
            .unwrap()
            .value(),
        b"1"
    );
    assert!(m.body.starts_with(b"<presentity"));
    assert_values_survive(&m);
    // The typed Record-Route re-encodes to the same bytes.
    let orig = m
        .headers()
        .get(HeaderKind::RecordRoute)
        .unwrap()
        .value_bytes();
    assert_eq!(rr[0].to_bytes(), orig);
}

#[test]
fn lync_im_invite() {
    let m = parse_ok(IM_INVITE);
    let tf = m.headers().get_named("MS-TEXT-FORMAT").next().unwrap();
    assert!(tf.value().ends_with(b";ms-body=SGVsbG8gQm9i"));
    let diag = m.headers().get_named("ms-diagnostics").next().unwrap();
    assert_eq!(
        diag.value(),
        &b"1027;reason=\"Cannot route this type of SIP request to or from federated partners\""[..]
    );
    assert!(m.body.windows(23).any(|w| w == b"m=message 5060 sip null"));
    let sup: Vec<Bytes> = m
        .headers()
        .supported()
        .unwrap()
        .into_iter()
        .map(|t| t.0)
        .collect();
    assert!(sup.contains(&Bytes::from_static(b"ms-text-format")));
    assert_values_survive(&m);
    // Typed Via and From re-encode byte for byte (they are already canonical).
    let via_raw = m.headers().get(HeaderKind::Via).unwrap().value_bytes();
    assert_eq!(Via::parse(&via_raw).unwrap().to_bytes(), via_raw);
    let from_raw = m.headers().get(HeaderKind::From).unwrap().value_bytes();
    assert_eq!(Address::parse(&from_raw).unwrap().to_bytes(), from_raw);
    let contact_raw = m.headers().get(HeaderKind::Contact).unwrap().value_bytes();
    assert_eq!(
        Address::parse(&contact_raw).unwrap().to_bytes(),
        contact_raw
    );
}

#[test]
fn benotify_is_an_extension_method() {
    let m = parse_ok(
        b"BENOTIFY sip:alice@192.0.2.10:50123;transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS 198.51.100.7:5061;branch=z9hG4bK9\r\n\
Max-Forwards: 70\r\nFrom: <sip:bob@contoso.com>;tag=1\r\nTo: <sip:alice@fabrikam.com>;tag=2;epid=d6277c8671\r\n\
Call-ID: c\r\nCSeq: 3 BENOTIFY\r\nEvent: presence\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(m.method().unwrap().as_bytes(), b"BENOTIFY");
    assert!(m.method().unwrap().is_extension());
    assert_values_survive(&m);
}
