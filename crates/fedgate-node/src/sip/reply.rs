//! Minimal stateless answers to requests the codec could not accept (RFC 3261 §8.2.6):
//! the status from [`fedgate_sip::Error::answer`], with the salvaged Via, From, To,
//! Call-ID and CSeq copied, a To tag added, and no body.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use fedgate_sip::{
    Answer, Error, Header, HeaderKind, Message, Method, Reason, Salvage, StartLine, StatusCode,
};

/// The reason phrase RFC 3261 §21 gives for the statuses the codec answers with.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        483 => "Too Many Hops",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        _ => "Error",
    }
}

/// A random-looking To tag (not security sensitive: it only has to be unique enough).
fn tag() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let h = RandomState::new().hash_one(n);
    format!("fg{h:016x}")
}

/// The wire bytes of the answer to a codec error, or `None` when nothing must (or can)
/// be sent: the error calls for `Drop` (responses, non-SIP input), the message is an
/// ACK, or a header needed to build a response was not salvaged.
pub fn error_response(err: &Error) -> Option<Bytes> {
    let Answer::Status(code) = err.answer() else {
        return None;
    };
    response_from_salvage(err.salvage(), code)
}

/// A minimal response with status `code` built from what was salvaged of a request.
pub fn response_from_salvage(s: &Salvage, code: u16) -> Option<Bytes> {
    if let Some(StartLine::Request(r)) = &s.start
        && r.method == Method::Ack
    {
        return None;
    }
    if matches!(s.start, Some(StartLine::Response(_))) {
        return None;
    }
    let h = &s.headers;
    let needed = [
        HeaderKind::Via,
        HeaderKind::From,
        HeaderKind::To,
        HeaderKind::CallId,
        HeaderKind::CSeq,
    ];
    if needed.iter().any(|k| h.get(*k).is_none()) {
        return None;
    }
    if h.cseq().is_ok_and(|c| c.method == Method::Ack) {
        return None;
    }
    let mut m = Message::response(
        StatusCode::new(code)?,
        Reason::new(reason_phrase(code)).ok()?,
    );
    for kind in needed {
        for r in h.get_all(kind) {
            if kind == HeaderKind::To && h.to().is_ok_and(|a| a.tag().is_none()) {
                let mut v = r.value().to_vec();
                v.extend_from_slice(b";tag=");
                v.extend_from_slice(tag().as_bytes());
                m.headers_mut().push(Header::new(r.name_bytes(), v).ok()?);
            } else {
                m.headers_mut().push(r.to_owned());
            }
        }
    }
    m.set_body(Bytes::new());
    Some(m.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use fedgate_sip::{Limits, StreamFramer};

    fn decode_err(wire: &[u8]) -> Error {
        let mut f = StreamFramer::new(Limits::default());
        let mut b = BytesMut::from(wire);
        f.decode(&mut b).unwrap_err()
    }

    const HEAD: &str = "MESSAGE sip:bob@contoso.example SIP/2.0\r\n\
Via: SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bK1\r\n\
From: <sip:alice@fabrikam.example>;tag=a\r\n\
To: <sip:bob@contoso.example>\r\n\
Call-ID: c1@fabrikam.example\r\n\
CSeq: 7 MESSAGE\r\n";

    #[test]
    fn rfc3261_8_2_6_answer_to_a_bad_content_length_keeps_the_dialog_headers() {
        let e = decode_err(format!("{HEAD}Content-Length: -1\r\n\r\n").as_bytes());
        let wire = error_response(&e).unwrap();
        let m = Message::parse(wire).unwrap();
        assert_eq!(m.status().unwrap().as_u16(), 400);
        assert_eq!(m.call_id().unwrap().0.as_ref(), b"c1@fabrikam.example");
        assert_eq!(m.cseq().unwrap().seq, 7);
        assert_eq!(m.top_via().unwrap().branch().unwrap().as_ref(), b"z9hG4bK1");
        assert!(m.to().unwrap().tag().is_some());
        assert_eq!(m.from().unwrap().tag().unwrap().as_ref(), b"a");
        assert_eq!(m.content_length().unwrap().0, 0);
    }

    #[test]
    fn oversized_body_gets_413() {
        let e = decode_err(format!("{HEAD}Content-Length: 10000000\r\n\r\n").as_bytes());
        let m = Message::parse(error_response(&e).unwrap()).unwrap();
        assert_eq!(m.status().unwrap().as_u16(), 413);
    }

    #[test]
    fn nothing_for_responses_acks_or_missing_headers() {
        let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 MESSAGE\r\nContent-Length: x\r\n\r\n";
        assert_eq!(error_response(&decode_err(resp.as_bytes())), None);
        let ack = HEAD
            .replace("MESSAGE sip", "ACK sip")
            .replace("7 MESSAGE", "7 ACK");
        let e = decode_err(format!("{ack}Content-Length: x\r\n\r\n").as_bytes());
        assert_eq!(error_response(&e), None);
        let e = decode_err(b"MESSAGE sip:b@c SIP/2.0\r\nContent-Length: x\r\n\r\n");
        assert_eq!(error_response(&e), None);
    }
}
