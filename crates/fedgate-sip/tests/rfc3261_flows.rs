//! Messages from RFC 3261 §24.2 (the basic call flow) and RFC 3665 (registration
//! with digest challenge), parsed, validated, inspected and round-tripped.

use bytes::Bytes;
use fedgate_sip::{
    Contacts, HeaderKind, Host, Limits, Message, Method, StatusCode, Transport, Uri,
    parse_datagram, validate,
};

fn parse_ok(wire: &'static [u8]) -> Message {
    let m = parse_datagram(Bytes::from_static(wire), &Limits::default()).expect("parse");
    validate(&m).expect("validate");
    let again = Message::parse(m.to_bytes()).expect("reparse");
    assert_eq!(again, m, "parse(serialize(m)) == m");
    m
}

// RFC 3261 §24.2, F1.
const F1_INVITE: &[u8] = b"INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 142\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.com\r\n\
s=-\r\n\
c=IN IP4 pc33.atlanta.com\r\n\
t=0 0\r\n\
m=audio 3456 RTP/AVP 0 1 3 99\r\n\
a=rtpmap:0 PCMU/8000\r\n";

// RFC 3261 §24.2, F3 (180 Ringing as sent by Bob, via the proxies).
const F3_RINGING: &[u8] = b"SIP/2.0 180 Ringing\r\n\
Via: SIP/2.0/UDP server10.biloxi.com;branch=z9hG4bK4b43c2ff8.1;received=192.0.2.3\r\n\
Via: SIP/2.0/UDP bigbox3.site3.atlanta.com;branch=z9hG4bK77ef4c2312983.1;received=192.0.2.2\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8;received=192.0.2.1\r\n\
To: Bob <sip:bob@biloxi.com>;tag=a6c85cf\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
Contact: <sip:bob@192.0.2.4>\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 0\r\n\
\r\n";

// RFC 3261 §24.2 style ACK and BYE in the dialog.
const ACK: &[u8] = b"ACK sip:bob@192.0.2.4 SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds9\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>;tag=a6c85cf\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314159 ACK\r\n\
Content-Length: 0\r\n\
\r\n";

const BYE: &[u8] = b"BYE sip:alice@pc33.atlanta.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKnashds10\r\n\
Max-Forwards: 70\r\n\
From: Bob <sip:bob@biloxi.com>;tag=a6c85cf\r\n\
To: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 231 BYE\r\n\
Content-Length: 0\r\n\
\r\n";

// RFC 3665 §2.1, F1 and F2: REGISTER challenged with 401.
const REGISTER: &[u8] = b"REGISTER sips:ss2.biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/TLS client.biloxi.example.com:5061;branch=z9hG4bKnashds7\r\n\
Max-Forwards: 70\r\n\
From: Bob <sips:bob@biloxi.example.com>;tag=a73kszlfl\r\n\
To: Bob <sips:bob@biloxi.example.com>\r\n\
Call-ID: 1j9FpLxk3uxtm8tn@biloxi.example.com\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sips:bob@client.biloxi.example.com>\r\n\
Content-Length: 0\r\n\
\r\n";

const UNAUTHORIZED: &[u8] = b"SIP/2.0 401 Unauthorized\r\n\
Via: SIP/2.0/TLS client.biloxi.example.com:5061;branch=z9hG4bKnashds7\r\n\
\x20;received=192.0.2.201\r\n\
From: Bob <sips:bob@biloxi.example.com>;tag=a73kszlfl\r\n\
To: Bob <sips:bob@biloxi.example.com>;tag=1410948204\r\n\
Call-ID: 1j9FpLxk3uxtm8tn@biloxi.example.com\r\n\
CSeq: 1 REGISTER\r\n\
WWW-Authenticate: Digest realm=\"atlanta.example.com\", qop=\"auth\",\r\n\
\x20nonce=\"ea9c8e88df84f1cec4341ae6cbe5a359\",\r\n\
\x20opaque=\"\", stale=FALSE, algorithm=MD5\r\n\
Content-Length: 0\r\n\
\r\n";

const REGISTER_OK: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/TLS client.biloxi.example.com:5061;branch=z9hG4bKnashd92;received=192.0.2.201\r\n\
From: Bob <sips:bob@biloxi.example.com>;tag=ja743ks76zlflH\r\n\
To: Bob <sips:bob@biloxi.example.com>;tag=37GkEhwl6\r\n\
Call-ID: 1j9FpLxk3uxtm8tn@biloxi.example.com\r\n\
CSeq: 2 REGISTER\r\n\
Contact: <sips:bob@client.biloxi.example.com>;expires=3600\r\n\
Content-Length: 0\r\n\
\r\n";

#[test]
fn rfc3261_24_2_invite() {
    let m = parse_ok(F1_INVITE);
    assert_eq!(m.method(), Some(&Method::Invite));
    let Uri::Sip(ruri) = &m.request_line().unwrap().uri else {
        panic!("sip")
    };
    assert_eq!(ruri.user.as_deref(), Some(&b"bob"[..]));
    assert_eq!(ruri.host, Host::Domain(Bytes::from_static(b"biloxi.com")));
    let via = m.top_via().unwrap();
    assert_eq!(via.transport, Transport::Udp);
    assert!(via.has_rfc3261_branch());
    assert_eq!(m.to().unwrap().display.unwrap().as_ref(), b"Bob");
    assert_eq!(m.from().unwrap().tag().unwrap().as_ref(), b"1928301774");
    assert_eq!(m.cseq().unwrap().seq, 314_159);
    assert_eq!(m.content_length().unwrap().0, 142);
    assert_eq!(m.body.len(), 142);
    assert_eq!(m.headers().max_forwards().unwrap().0, 70);
}

#[test]
fn rfc3261_24_2_ringing_ack_bye() {
    let m = parse_ok(F3_RINGING);
    assert_eq!(m.status(), StatusCode::new(180));
    assert_eq!(m.status_line().unwrap().reason.as_str(), "Ringing");
    let vias = m.via().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[2].received().unwrap().as_ref(), b"192.0.2.1");
    assert_eq!(m.to().unwrap().tag().unwrap().as_ref(), b"a6c85cf");

    let ack = parse_ok(ACK);
    assert_eq!(ack.cseq().unwrap().method, Method::Ack);
    let bye = parse_ok(BYE);
    assert_eq!(bye.method(), Some(&Method::Bye));
    assert_eq!(
        bye.top_via().unwrap().host,
        Host::Ipv4(std::net::Ipv4Addr::new(192, 0, 2, 4))
    );
}

#[test]
fn rfc3665_registration() {
    let m = parse_ok(REGISTER);
    let Uri::Sip(r) = &m.request_line().unwrap().uri else {
        panic!("sip")
    };
    assert!(r.secure);
    assert_eq!(m.top_via().unwrap().port, Some(5061));
    assert_eq!(m.top_via().unwrap().transport, Transport::Tls);

    let m = parse_ok(UNAUTHORIZED);
    // The folded Via parameter and the folded challenge are unfolded.
    assert_eq!(
        m.top_via().unwrap().received().unwrap().as_ref(),
        b"192.0.2.201"
    );
    let www = m.headers().get_named("www-authenticate").next().unwrap();
    assert!(
        www.value()
            .starts_with(b"Digest realm=\"atlanta.example.com\", qop=\"auth\", nonce=")
    );
    assert!(!www.value().contains(&b'\r'));

    let m = parse_ok(REGISTER_OK);
    let Contacts::Addresses(c) = m.contact().unwrap() else {
        panic!("star")
    };
    assert_eq!(c[0].params.value("expires").unwrap().as_ref(), b"3600");
}

#[test]
fn contact_star_and_header_kinds() {
    let m = parse_ok(
        b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\n\
To: <sip:a@example.com>\r\nCall-ID: x\r\nCSeq: 2 REGISTER\r\nContact: *\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(m.contact().unwrap(), Contacts::Star);
    assert_eq!(m.headers().expires().unwrap().0, 0);
    assert_eq!(HeaderKind::from_name(b"I"), Some(HeaderKind::CallId));
    assert_eq!(HeaderKind::from_name(b"cAlL-iD"), Some(HeaderKind::CallId));
    for (c, k) in [
        (b"i", HeaderKind::CallId),
        (b"m", HeaderKind::Contact),
        (b"e", HeaderKind::ContentEncoding),
        (b"l", HeaderKind::ContentLength),
        (b"c", HeaderKind::ContentType),
        (b"f", HeaderKind::From),
        (b"s", HeaderKind::Subject),
        (b"k", HeaderKind::Supported),
        (b"t", HeaderKind::To),
        (b"v", HeaderKind::Via),
        (b"o", HeaderKind::Event),
        (b"u", HeaderKind::AllowEvents),
        (b"r", HeaderKind::ReferTo),
        (b"b", HeaderKind::ReferredBy),
        (b"x", HeaderKind::SessionExpires),
        (b"y", HeaderKind::Identity),
        (b"j", HeaderKind::RejectContact),
    ] {
        assert_eq!(HeaderKind::from_name(c), Some(k));
    }
}
