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

/// A hasher for keys that are not raw network bytes: ids this crate assigns
/// itself (session and subscription numbers, transaction slots) and
/// [`TxnKey`](crate::endpoint)s, which carry a keyed SipHash of their fields
/// computed once per message. Fibonacci hashing of the written integers.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(29) ^ n).wrapping_mul(GOLDEN);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A map keyed by ids this crate assigns (see [`IdHasher`]).
pub(crate) type IdMap<K, V> =
    std::collections::HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Feeds `parts` to `h` as one write of length-prefixed segments (a keyed SipHash
/// costs per `write` call; the prefixes keep `("ab", "c")` and `("a", "bc")`
/// apart). Parts too long for the stack buffer are written one by one, with the
/// same prefixes.
pub(crate) fn hash_parts<H: std::hash::Hasher>(h: &mut H, parts: &[&[u8]]) {
    let mut buf = [0u8; 192];
    let mut n = 0;
    for p in parts {
        let len = p.len().min(u16::MAX as usize);
        if n + 2 + len > buf.len() {
            for q in parts {
                h.write_u16(q.len().min(u16::MAX as usize) as u16);
                h.write(q);
            }
            return;
        }
        buf[n..n + 2].copy_from_slice(&(len as u16).to_le_bytes());
        buf[n + 2..n + 2 + len].copy_from_slice(&p[..len]);
        n += 2 + len;
    }
    h.write(&buf[..n]);
}

/// `s` as a zero-copy slice of `src` when it lies inside it, else a copy.
pub(crate) fn sub(src: &Bytes, s: &[u8]) -> Bytes {
    let base = src.as_ptr() as usize;
    let at = s.as_ptr() as usize;
    if at >= base && at + s.len() <= base + src.len() {
        src.slice(at - base..at - base + s.len())
    } else {
        Bytes::copy_from_slice(s)
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
    to.headers.extend_from(&from.headers, kind);
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

/// The headers a response copies from its request, in the order they are written
/// (RFC 3261 §8.2.6.2).
const COPIED: [HeaderKind; 5] = [
    HeaderKind::Via,
    HeaderKind::From,
    HeaderKind::To,
    HeaderKind::CallId,
    HeaderKind::CSeq,
];

/// The wire form of [`response_to`]`(req, code, _)` with an empty body, for a
/// request whose To already carries a tag (an in-dialog request), written straight
/// from the request's header lines in one pass: one allocation, no intermediate
/// [`Message`]. The copied headers (Via, From, To, Call-ID, CSeq) keep the order
/// they have in the request (RFC 3261 §7.3.1: only the order of same-name lines
/// matters), so the bytes can differ from `response_to(..).to_bytes()` in order only.
pub(crate) fn response_wire(req: &Message, code: u16) -> Bytes {
    let c = status(code).as_u16();
    let reason = reason_phrase(code).as_bytes();
    let mut len = 8 + 4 + reason.len() + 2 + 21;
    for h in req.headers.iter() {
        if h.kind().is_some_and(|k| COPIED.contains(&k)) {
            len += h.name().len() + h.value().len() + 4;
        }
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(b"SIP/2.0 ");
    out.extend_from_slice(&[
        b'0' + (c / 100 % 10) as u8,
        b'0' + (c / 10 % 10) as u8,
        b'0' + (c % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
    for h in req.headers.iter() {
        if h.kind().is_some_and(|k| COPIED.contains(&k)) {
            out.extend_from_slice(h.name());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Bytes::from(out)
}

/// The `tag` parameter of a From or To value, read without a full decode when that
/// is exact: in a name-addr, what follows the last `>` is header parameters
/// (`*(SEMI generic-param)`, SWS allowed around `;` and `=`) unless it holds a
/// quote (then that `>` may sit in a quoted parameter value). `None`: decode to be
/// sure (an addr-spec without `<>`, or a quote after the last `>`).
pub(crate) fn raw_tag(value: &[u8]) -> Option<Option<&[u8]>> {
    let close = value.iter().rposition(|&c| c == b'>')?;
    let tail = &value[close + 1..];
    if tail.contains(&b'"') {
        return None;
    }
    for p in tail.split(|&c| c == b';').skip(1) {
        let (name, val) = match p.iter().position(|&c| c == b'=') {
            Some(e) => (&p[..e], Some(p[e + 1..].trim_ascii())),
            None => (p, None),
        };
        if name.trim_ascii().eq_ignore_ascii_case(b"tag") {
            // `tag` without a value is no tag (as the decoder reads it).
            return Some(val.filter(|v| !v.is_empty()));
        }
    }
    Some(None)
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

/// RFC 3261 §18.3 (mandatory on streams) and §20.14: every message this crate
/// sends carries exactly one Content-Length, equal to the body's length. A message
/// without one (or with a wrong one, or several) gets a correct one.
pub(crate) fn ensure_content_length(m: &mut Message) {
    let ok = {
        let mut all = m.headers.get_all(HeaderKind::ContentLength);
        match (all.next(), all.next()) {
            (Some(h), None) => decimal(h.value()) == Some(m.body.len() as u64),
            _ => false,
        }
    };
    if !ok {
        let body = m.body.clone();
        m.set_body(body);
    }
}

/// A plain decimal number (no sign, no spaces), or `None`.
fn decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    v.iter().try_fold(0u64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0'))
    })
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

    #[test]
    fn response_wire_is_response_to_in_request_order() {
        let req = Message::parse(Bytes::from_static(
            b"MESSAGE sip:bob@gw.contoso.com SIP/2.0\r\nv: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bKm1;ms-received-port=5061\r\nMax-Forwards: 70\r\nFrom: <sip:alice@fabrikam.com>;tag=a1;epid=d6\r\nTo: <sip:bob@contoso.com>;tag=b1\r\nCall-ID: c1\r\nVia: SIP/2.0/TLS p.contoso.com;branch=z9hG4bKp\r\nCSeq: 7 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
        ))
        .expect("parses");
        let tag = Bytes::from_static(b"b1");
        for code in [200, 405, 481, 500] {
            let fast = Message::parse(response_wire(&req, code)).expect("parses");
            let slow = response_to(&req, code, Some(&tag));
            assert_eq!(fast.status_line(), slow.status_line());
            for kind in COPIED.into_iter().chain([HeaderKind::ContentLength]) {
                let a: Vec<&[u8]> = fast.headers.get_all(kind).map(|h| h.value()).collect();
                let b: Vec<&[u8]> = slow.headers.get_all(kind).map(|h| h.value()).collect();
                assert_eq!(a, b, "{code} {kind:?}");
            }
            assert_eq!(fast.headers.len(), slow.headers.len());
            assert!(fast.body.is_empty());
        }
    }

    #[test]
    fn raw_tag_is_exact_or_declines() {
        let dec = |v: &'static [u8]| {
            let b = Bytes::from_static(v);
            let a: Address = fedgate_sip::HeaderValue::parse(&b).expect("address");
            a.tag().map(|t| t.to_vec())
        };
        for v in [
            &b"<sip:a@b>;tag=1"[..],
            b"<sip:a@b;tag=x>;epid=2 ; TAG = 9",
            b"Alice <sip:a@b>",
            b"<sip:a@b>;tagx=1;tag=2",
            b"<sip:a@b>;epid=1",
            b"\"a>b\" <sip:a@b>;tag=3",
        ] {
            let fast = raw_tag(v).expect("simple");
            assert_eq!(
                fast.map(|t| t.to_vec()),
                dec(v),
                "{}",
                String::from_utf8_lossy(v)
            );
        }
        // Addr-specs and quotes after the last `>` are left to the decoder.
        assert_eq!(raw_tag(b"sip:a@b;tag=1"), None);
        assert_eq!(raw_tag(b"<sip:a@b>;x=\">\";tag=1"), None);
    }

    #[test]
    fn rfc3261_18_3_content_length_is_added_or_corrected() {
        let uri = fedgate_sip::Uri::parse(&Bytes::from_static(b"sip:a@b")).expect("uri");
        // Missing: added.
        let mut m = Message::request(Method::Bye, uri.clone());
        ensure_content_length(&mut m);
        assert_eq!(m.content_length().expect("cl").0, 0);
        // Wrong: replaced.
        let mut m = Message::request(Method::Message, uri.clone());
        push(&mut m, "Content-Length", Bytes::from_static(b"9"));
        m.body = Bytes::from_static(b"hi");
        ensure_content_length(&mut m);
        assert_eq!(m.headers.count(HeaderKind::ContentLength), 1);
        assert_eq!(m.content_length().expect("cl").0, 2);
        // Right: kept as is.
        let mut m = Message::request(Method::Message, uri);
        m.set_body(Bytes::from_static(b"hey"));
        let before = m.clone();
        ensure_content_length(&mut m);
        assert_eq!(m, before);
        assert_eq!(decimal(b"0042"), Some(42));
        assert_eq!(decimal(b"4 2"), None);
        assert_eq!(decimal(b""), None);
    }
}
