//! `sipcheck FILE...`: treats each file as one UDP datagram, parses and validates
//! it, and prints one line per file:
//!
//! ```text
//! FILE: ok REQUEST <METHOD>
//! FILE: ok RESPONSE <CODE>
//! FILE: reject <CODE|drop> <reason>
//! ```
//!
//! With no arguments it checks a few embedded sample messages, named
//! `<embedded:NAME>`. Always exits 0 unless a file cannot be read.

use bytes::Bytes;
use fedgate_sip::{Limits, Message, parse_datagram, validate};

const LYNC_INVITE: &[u8] = b"INVITE sip:bob@contoso.com SIP/2.0\r\n\
Via: SIP/2.0/TLS 192.0.2.10:50123;branch=z9hG4bK8e1a.9f2d;ms-received-port=50123;ms-received-cid=5D2A00\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@fabrikam.com>;tag=7c3a2b1e;epid=d6277c8671\r\n\
To: <sip:bob@contoso.com>\r\n\
Call-ID: 2f0a3c8b9e1d4f5a8c7b6a5d4e3f2a1b\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@fabrikam.com;opaque=user:epid:Aa1Bb2Cc3Dd;gruu>\r\n\
Record-Route: <sip:edge.fabrikam.com:5061;transport=tls;lr;ms-key-info=jlUc2CnkhzSR;ms-route-sig=gaxr7Q5LgVWu>\r\n\
Supported: ms-sender\r\n\
Supported: ms-text-format\r\n\
Ms-Conversation-ID: AdM7f2Z1Q3n0\r\n\
ms-text-format: text/plain; charset=UTF-8;msgr=WAAtAE0A;ms-body=SGVsbG8=\r\n\
User-Agent: UCCAPI/15.0.4481.1000 OC/15.0.4481.1000 (Microsoft Lync)\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 179\r\n\
\r\n\
v=0\r\n\
o=- 0 0 IN IP4 192.0.2.10\r\n\
s=session\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=message 5060 sip null\r\n\
a=accept-types:text/plain text/html multipart/alternative application/ms-imdn+xml\r\n";

const NOTIFY_PIDF: &[u8] = b"NOTIFY sip:alice@192.0.2.10:50123;transport=tls SIP/2.0\r\n\
Via: SIP/2.0/TLS 198.51.100.7:5061;branch=z9hG4bK4711\r\n\
Max-Forwards: 70\r\n\
From: <sip:bob@contoso.com>;tag=b0b1\r\n\
To: <sip:alice@fabrikam.com>;tag=a11ce;epid=d6277c8671\r\n\
Call-ID: sub-7f3e@fedgate.example\r\n\
CSeq: 2 NOTIFY\r\n\
Contact: <sip:fedgate.example:5061;transport=tls>\r\n\
Event: presence\r\n\
Subscription-State: active;expires=3600\r\n\
Content-Type: application/pidf+xml\r\n\
Content-Length: 185\r\n\
\r\n\
<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:bob@contoso.com\">\
<tuple id=\"t1\"><status><basic>open</basic></status></tuple></presence>\n";

const MALFORMED: &[u8] = b"INVITE sip:bob@contoso.com SIP/2.0\r\n\
Via: SIP/2.0/TLS 192.0.2.10;branch=z9hG4bK1\r\n\
From: <sip:alice@fabrikam.com>;tag=1\r\n\
To: <sip:bob@contoso.com>\r\n\
Call-ID: broken-1\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: -5\r\n\
\r\n";

fn check(name: &str, bytes: Bytes) -> String {
    match parse_datagram(bytes, &Limits::default()) {
        Err(e) => format!("{name}: reject {} {e}", e.answer()),
        Ok(m) => match validate(&m) {
            Err(r) => format!("{name}: reject {} {}", r.answer, r.reason),
            Ok(()) => ok_line(name, &m),
        },
    }
}

fn ok_line(name: &str, m: &Message) -> String {
    match (m.method(), m.status()) {
        (Some(method), _) => format!("{name}: ok REQUEST {method}"),
        (None, Some(code)) => format!("{name}: ok RESPONSE {}", code.as_u16()),
        (None, None) => format!("{name}: ok"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        for (name, bytes) in [
            ("lync-invite", LYNC_INVITE),
            ("notify-pidf", NOTIFY_PIDF),
            ("malformed", MALFORMED),
        ] {
            println!(
                "{}",
                check(&format!("<embedded:{name}>"), Bytes::from_static(bytes))
            );
        }
        return;
    }
    for path in args {
        match std::fs::read(&path) {
            Ok(b) => println!("{}", check(&path, Bytes::from(b))),
            Err(e) => {
                eprintln!("{path}: cannot read: {e}");
                std::process::exit(2);
            }
        }
    }
}
