#![allow(dead_code)]
use std::time::{Duration, Instant};

use bytes::Bytes;
use fedgate_sip::Message;
use fedgate_sip_txn::ua::address;
use fedgate_sip_txn::{EndpointConfig, TransportKind, UaConfig, UserAgent};

pub fn msg(text: &str) -> Message {
    let t = text.replace('\n', "\r\n");
    Message::parse(Bytes::from(t)).expect("test message parses")
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A fixed origin for simulated time.
pub fn t0() -> Instant {
    Instant::now()
}

pub const INVITE_UDP: &str = "INVITE sip:bob@contoso.com SIP/2.0
Via: SIP/2.0/UDP gw.fabrikam.com;branch=z9hG4bKinv1
Max-Forwards: 70
From: <sip:alice@fabrikam.com>;tag=a1
To: <sip:bob@contoso.com>
Call-ID: call1@fabrikam.com
CSeq: 1 INVITE
Contact: <sip:alice@gw.fabrikam.com;transport=tls>
Content-Length: 0

";

pub const MESSAGE_UDP: &str = "MESSAGE sip:bob@contoso.com SIP/2.0
Via: SIP/2.0/UDP gw.fabrikam.com;branch=z9hG4bKmsg1
Max-Forwards: 70
From: <sip:alice@fabrikam.com>;tag=a1
To: <sip:bob@contoso.com>
Call-ID: call2@fabrikam.com
CSeq: 1 MESSAGE
Content-Length: 0

";

/// A response to `req` with this code, To-tag `b1` on non-100.
pub fn resp(req: &Message, code: u16) -> Message {
    let tag = Bytes::from_static(b"b1");
    fedgate_sip_txn::util::response_to(req, code, Some(&tag))
}

/// A user agent for `domain` (Contact on 5061 with `transport`), the application
/// answering in-session MESSAGEs itself when `answers`.
pub fn ua_with(
    domain: &'static str,
    seed: u64,
    transport: TransportKind,
    answers: bool,
) -> UserAgent {
    let ep = EndpointConfig::with_domain(domain, seed);
    let contact = address(&format!(
        "<sip:{domain}:5061;transport={}>",
        transport.via_token().to_ascii_lowercase()
    ))
    .expect("contact");
    let mut c = UaConfig::new(ep, contact);
    c.sdp_host = domain.into();
    c.app_answers_messages = answers;
    UserAgent::new(c)
}
