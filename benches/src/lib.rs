//! Shared inputs for the fedgate benchmarks: the same bytes go to fedgate and to the
//! peer crates in one run, so every comparison is a ratio from one process.

/// A Lync-style federated INVITE opening an IM session (969 bytes), with the Microsoft
/// extensions a Lync Edge sends: `epid`, `ms-received-port`/`ms-received-cid`,
/// `ms-key-info` on Record-Route, `ms-text-format` carrying the first message.
pub const LYNC_INVITE: &[u8] = b"INVITE sip:bob@contoso.com SIP/2.0\r\n\
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

/// A presence NOTIFY with a PIDF body, as a federation peer sends on a subscription.
pub const NOTIFY_PIDF: &[u8] = b"NOTIFY sip:alice@192.0.2.10:50123;transport=tls SIP/2.0\r\n\
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

/// A MESSAGE inside an established IM session (loose-routed through the Edge).
pub const IN_DIALOG_MESSAGE: &[u8] = b"MESSAGE sip:alice@fabrikam.com;opaque=user:epid:Aa1Bb2Cc3Dd;gruu SIP/2.0\r\n\
Via: SIP/2.0/TLS 198.51.100.7:5061;branch=z9hG4bK77ab.1\r\n\
Max-Forwards: 70\r\n\
Route: <sip:edge.fabrikam.com:5061;transport=tls;lr;ms-key-info=jlUc2CnkhzSR;ms-route-sig=gaxr7Q5LgVWu>\r\n\
From: <sip:bob@contoso.com>;tag=b0b2\r\n\
To: \"Alice\" <sip:alice@fabrikam.com>;tag=7c3a2b1e;epid=d6277c8671\r\n\
Call-ID: 2f0a3c8b9e1d4f5a8c7b6a5d4e3f2a1b\r\n\
CSeq: 2 MESSAGE\r\n\
Content-Type: text/plain; charset=UTF-8\r\n\
Content-Length: 25\r\n\
\r\n\
Hello from the federation";

/// RFC 4475 §3.1.1.7 `longreq.dat`: a 3.5 KB INVITE with 34 Via values.
pub const LONGREQ: &[u8] = include_bytes!("../data/longreq.dat");

/// The SIP inputs by name.
pub const SIP_INPUTS: &[(&str, &[u8])] = &[
    ("lync_invite", LYNC_INVITE),
    ("notify_pidf", NOTIFY_PIDF),
    ("in_dialog_message", IN_DIALOG_MESSAGE),
    ("longreq", LONGREQ),
];

#[cfg(test)]
mod tests {
    use super::SIP_INPUTS;

    /// Every input is a valid message whose body is exactly its Content-Length, so the
    /// benches measure parsing and not an error path.
    #[test]
    fn sip_inputs_are_valid_and_exactly_framed() {
        for (name, wire) in SIP_INPUTS {
            let msg = fedgate_sip::Message::parse(bytes::Bytes::from_static(wire))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            fedgate_sip::validate(&msg).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let cl = msg.content_length().unwrap().0 as usize;
            let head_end = wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            assert_eq!(
                wire.len() - head_end,
                cl,
                "{name}: body length != Content-Length"
            );
        }
    }
}
