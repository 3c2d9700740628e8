//! Message-building helpers shared by the layers: responses (§8.2.6), the ACK for a
//! non-2xx response (§17.1.1.3), CANCEL (§9.1), the synthesized 408, identifiers.

use bytes::Bytes;
use fedgate_sip::{Address, CSeq, Header, HeaderKind, Message, Method, Param, Reason, StatusCode};

/// Deterministic identifier generator (SplitMix64). The driver seeds it with
/// random bits ([`EndpointConfig::seed`](crate::EndpointConfig)); the core never
/// reads a random source itself.
#[derive(Debug, Clone)]
pub(crate) struct IdGen {
    state: u64,
}

impl IdGen {
    pub(crate) fn new(seed: u64) -> Self {
        IdGen { state: seed }
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn hex(&mut self, prefix: &[u8]) -> Bytes {
        let v = self.next_u64();
        let mut out = Vec::with_capacity(prefix.len() + 16);
        out.extend_from_slice(prefix);
        for i in (0..16).rev() {
            out.push(b"0123456789abcdef"[((v >> (i * 4)) & 0xf) as usize]);
        }
        Bytes::from(out)
    }
    /// `z9hG4bK` + 16 hex digits.
    pub(crate) fn branch(&mut self) -> Bytes {
        self.hex(b"z9hG4bK")
    }
    /// 16 hex digits.
    pub(crate) fn tag(&mut self) -> Bytes {
        self.hex(b"")
    }
}

/// The default reason phrase of a status code.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        c if c < 200 => "Provisional",
        c if c < 300 => "Success",
        c if c < 400 => "Redirection",
        c if c < 500 => "Client Error",
        c if c < 600 => "Server Error",
        _ => "Global Failure",
    }
}

const S500: StatusCode = match StatusCode::new(500) {
    Some(s) => s,
    None => panic!("500 is a status code"),
};

pub(crate) fn status(code: u16) -> StatusCode {
    StatusCode::new(code).unwrap_or(S500)
}

pub(crate) fn reason(code: u16) -> Reason {
    Reason::new(Bytes::from_static(reason_phrase(code).as_bytes()))
        .expect("static reason phrases are valid")
}

/// Appends a header with a static name. Values built by this crate never hold CR/LF;
/// a value that does is dropped rather than written.
pub(crate) fn push(msg: &mut Message, name: &'static str, value: impl Into<Bytes>) {
    if let Ok(h) = Header::new(Bytes::from_static(name.as_bytes()), value.into()) {
        msg.headers.push(h);
    }
}

/// Copies every header of `kind` from `from` into `to`, in order.
pub(crate) fn copy_all(to: &mut Message, from: &Message, kind: HeaderKind) {
    for h in from.headers.get_all(kind) {
        to.headers.push(h.to_owned());
    }
}

/// Fast check on a raw From/To value: true when a `;tag=` parameter follows the
/// URI (after the last `>`, or anywhere in an addr-spec without `<>`). Used to skip
/// a full decode on the hot path; `false` means "decode to be sure".
pub(crate) fn raw_has_tag(value: &[u8]) -> bool {
    let tail = match value.iter().rposition(|&c| c == b'>') {
        Some(p) => &value[p + 1..],
        None => value,
    };
    tail.split(|&c| c == b';').skip(1).any(|p| {
        let p = p.trim_ascii();
        p.len() > 4 && p[..4].eq_ignore_ascii_case(b"tag=")
    })
}

/// True if the message's To header carries a tag (decoding only when the fast
/// check cannot tell).
pub(crate) fn to_has_tag(m: &Message) -> bool {
    match m.headers.get(HeaderKind::To) {
        Some(h) if raw_has_tag(h.value()) => true,
        Some(_) => m.to().ok().is_some_and(|a| a.tag().is_some()),
        None => false,
    }
}

/// Adds `;tag=` to an address unless it has one.
pub(crate) fn with_tag(mut a: Address, tag: &Bytes) -> Address {
    if a.tag().is_none() {
        a.params
            .0
            .push(Param::new(Bytes::from_static(b"tag"), Some(tag.clone())));
    }
    a
}

/// A response to `req` (RFC 3261 §8.2.6.2): Via (all, in order), From, To (with
/// `to_tag` added if the To has none and the code is not 100), Call-ID, CSeq, and an
/// empty body.
pub fn response_to(req: &Message, code: u16, to_tag: Option<&Bytes>) -> Message {
    let mut r = Message::response(status(code), reason(code));
    copy_all(&mut r, req, HeaderKind::Via);
    copy_all(&mut r, req, HeaderKind::From);
    match (to_tag, code) {
        (Some(_), _) if to_has_tag(req) => copy_all(&mut r, req, HeaderKind::To),
        (Some(tag), c) if c > 100 => match req.to() {
            Ok(to) if to.tag().is_none() => r.push_typed(HeaderKind::To, &with_tag(to, tag)),
            _ => copy_all(&mut r, req, HeaderKind::To),
        },
        _ => copy_all(&mut r, req, HeaderKind::To),
    }
    copy_all(&mut r, req, HeaderKind::CallId);
    copy_all(&mut r, req, HeaderKind::CSeq);
    r.set_body(Bytes::new());
    r
}

/// The ACK for a non-2xx final response (RFC 3261 §17.1.1.3): Request-URI, Call-ID,
/// From and the top Via of the INVITE, the To of the response, CSeq number with
/// method ACK, the INVITE's Route headers.
pub(crate) fn ack_for_non2xx(invite: &Message, resp: &Message) -> Option<Message> {
    let rl = invite.request_line()?;
    let mut ack = Message::request(Method::Ack, rl.uri.clone());
    if let Some(v) = invite.headers.get(HeaderKind::Via) {
        // Only the top value of the first Via line.
        match invite.top_via() {
            Ok(top) => ack.push_typed(HeaderKind::Via, &top),
            Err(_) => ack.headers.push(v.to_owned()),
        }
    }
    push(&mut ack, "Max-Forwards", Bytes::from_static(b"70"));
    copy_all(&mut ack, invite, HeaderKind::From);
    copy_all(&mut ack, resp, HeaderKind::To);
    copy_all(&mut ack, invite, HeaderKind::CallId);
    let seq = invite.cseq().ok()?.seq;
    ack.push_typed(
        HeaderKind::CSeq,
        &CSeq {
            seq,
            method: Method::Ack,
        },
    );
    copy_all(&mut ack, invite, HeaderKind::Route);
    ack.set_body(Bytes::new());
    Some(ack)
}

/// The CANCEL for a pending request (RFC 3261 §9.1): same Request-URI, Call-ID, To,
/// From, CSeq number and top Via (so the same branch), the request's Route headers.
pub(crate) fn cancel_for(req: &Message) -> Option<Message> {
    let rl = req.request_line()?;
    let mut c = Message::request(Method::Cancel, rl.uri.clone());
    c.push_typed(HeaderKind::Via, &req.top_via().ok()?);
    push(&mut c, "Max-Forwards", Bytes::from_static(b"70"));
    copy_all(&mut c, req, HeaderKind::From);
    copy_all(&mut c, req, HeaderKind::To);
    copy_all(&mut c, req, HeaderKind::CallId);
    let seq = req.cseq().ok()?.seq;
    c.push_typed(
        HeaderKind::CSeq,
        &CSeq {
            seq,
            method: Method::Cancel,
        },
    );
    copy_all(&mut c, req, HeaderKind::Route);
    c.set_body(Bytes::new());
    Some(c)
}

/// Decimal rendering.
pub(crate) fn num(n: u64) -> Bytes {
    Bytes::from(n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_tag_check() {
        assert!(raw_has_tag(b"<sip:a@b>;tag=1"));
        assert!(raw_has_tag(b"\"x>\" <sip:a@b>; TAG=1;epid=2"));
        assert!(raw_has_tag(b"sip:a@b;tag=1"));
        assert!(!raw_has_tag(b"<sip:a@b;tag=1>"));
        assert!(!raw_has_tag(b"<sip:a@b>;xtag=1"));
        assert!(!raw_has_tag(b"<sip:a@b>"));
        assert!(!raw_has_tag(b""));
    }
}
