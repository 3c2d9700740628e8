//! The parser: datagram parsing and stream framing.
//!
//! Lines are split by hand with `memchr` (the hot path); the start line and the
//! typed header values use the nom grammars of [`crate::uri`] and [`crate::typed`].

use bytes::{Bytes, BytesMut};

use crate::chars;
use crate::error::{Answer, Error, FramingError, Salvage};
use crate::headers::{HeaderKind, Headers, Loc2};
use crate::limits::{Limit, Limits};
use crate::message::{Message, Reason, RequestLine, StartLine, StatusCode, StatusLine, Version};
use crate::method::Method;
use crate::uri::{self, UriContext};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Datagram,
    Stream,
}

/// Parses one UDP datagram as one message (RFC 3261 §18.3).
///
/// Leading CRLFs are skipped. With `Content-Length`, the body is that many bytes and
/// anything after it is ignored; a shorter body is an error (400). Without
/// `Content-Length` the body is the rest of the datagram. Only syntax is checked
/// here; run [`validate()`](crate::validate()) before acting on a request.
#[inline]
pub fn parse_datagram(input: Bytes, limits: &Limits) -> Result<Message, Error> {
    if input.len() > limits.max_message_size {
        let answer = guess_answer(&input, Limit::HeaderBlockSize.status());
        return Err(Error::Limit {
            offset: limits.max_message_size,
            limit: Limit::HeaderBlockSize,
            answer,
            salvage: salvage(&input),
        });
    }
    parse_message(input, limits, Mode::Datagram)
}

/// One step of stream framing.
// The message is returned by value on purpose: boxing it would cost an allocation
// per message on the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole message, and how many bytes of the input it used.
    Complete(Message, usize),
    /// Not enough bytes yet; call again with more.
    Partial,
    /// An RFC 5626 keep-alive ping (`CRLFCRLF`, 4 bytes). Answer with a pong (`CRLF`).
    Ping,
    /// An RFC 5626 keep-alive pong (a lone `CRLF`, 2 bytes).
    Pong,
}

impl Frame {
    /// How many input bytes this event used (0 for `Partial`).
    pub fn consumed(&self) -> usize {
        match self {
            Frame::Complete(_, n) => *n,
            Frame::Partial => 0,
            Frame::Ping => 4,
            Frame::Pong => 2,
        }
    }
}

/// Where a stream buffer stands, without building the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    Partial,
    Ping,
    Pong,
    Message(usize),
}

/// Frames the next event at the start of a TCP/TLS byte stream (RFC 3261 §18.3,
/// RFC 5626 §3.5.1).
///
/// `Content-Length` is required; a missing, negative, non-numeric or repeated one is
/// a [`FramingError`] after which the connection must be closed. `CRLFCRLF` is a
/// ping; `CRLF` followed by anything but `CR` is a pong (or a stray CRLF, which RFC
/// 3261 §7.5 says to ignore); a buffer that is exactly `CRLF` or `CRLF CR` waits for
/// more, since it may be the start of a ping. (On a connection we ping, use
/// [`StreamFramer::outbound`], which reports a lone `CRLF` as a pong at once.)
pub fn frame_stream(input: &Bytes, limits: &Limits) -> Result<Frame, Error> {
    match scan_stream(input, limits, false)? {
        Scan::Partial => Ok(Frame::Partial),
        Scan::Ping => Ok(Frame::Ping),
        Scan::Pong => Ok(Frame::Pong),
        Scan::Message(n) if input.len() < n => Ok(Frame::Partial),
        Scan::Message(n) => {
            let m = parse_message(input.slice(..n), limits, Mode::Stream)?;
            Ok(Frame::Complete(m, n))
        }
    }
}

/// A stream framer that remembers how long the pending message is, so that a
/// large body arriving in many reads is scanned once.
///
/// ```
/// use bytes::BytesMut;
/// use fedgate_sip::{Frame, Limits, StreamFramer};
/// let mut f = StreamFramer::new(Limits::default());
/// let mut buf = BytesMut::from(&b"\r\n\r\nOPTIONS sip:a.example SIP/2.0\r\nContent-Length: 0\r\n\r\n"[..]);
/// assert_eq!(f.decode(&mut buf).unwrap(), Frame::Ping);
/// assert!(matches!(f.decode(&mut buf).unwrap(), Frame::Complete(_, _)));
/// assert_eq!(f.decode(&mut buf).unwrap(), Frame::Partial);
/// ```
#[derive(Debug, Clone)]
pub struct StreamFramer {
    limits: Limits,
    pending: Option<usize>,
    lone_crlf_is_pong: bool,
}

impl StreamFramer {
    /// A framer with these limits, for a connection the peer opened (the peer sends
    /// the RFC 5626 pings): a lone `CRLF` waits to see whether it starts a ping, so
    /// the events never depend on how the bytes were split into reads.
    pub fn new(limits: Limits) -> Self {
        StreamFramer {
            limits,
            pending: None,
            lone_crlf_is_pong: false,
        }
    }

    /// A framer for a connection we opened and send RFC 5626 pings on: a lone `CRLF`
    /// is the pong to our ping and is reported at once (waiting for more bytes would
    /// make a live flow look dead).
    pub fn outbound(limits: Limits) -> Self {
        StreamFramer {
            limits,
            pending: None,
            lone_crlf_is_pong: true,
        }
    }

    /// Takes the next event off the front of `buf`.
    ///
    /// Nothing is removed on `Partial`. On an error, two cases:
    /// - [`Error::Framing`] or [`Error::Limit`] ([`Error::closes_connection`]): the
    ///   message length is unknown, nothing is removed, and the connection must be
    ///   closed (after answering, if the answer is a status).
    /// - [`Error::StartLine`] or [`Error::Header`]: the message was framed by its
    ///   `Content-Length` and its bytes have been removed, so the driver may answer
    ///   (400) and go on reading the next message.
    ///
    /// The stateless [`frame_stream`] gives the same errors but does not say how
    /// long the bad message was; use this type in drivers.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Frame, Error> {
        let scan = match self.pending {
            Some(n) if buf.len() < n => return Ok(Frame::Partial),
            Some(n) => Scan::Message(n),
            None => scan_stream(buf, &self.limits, self.lone_crlf_is_pong)?,
        };
        match scan {
            Scan::Partial => Ok(Frame::Partial),
            Scan::Ping => {
                let _ = buf.split_to(4);
                Ok(Frame::Ping)
            }
            Scan::Pong => {
                let _ = buf.split_to(2);
                Ok(Frame::Pong)
            }
            Scan::Message(n) if buf.len() < n => {
                self.pending = Some(n);
                Ok(Frame::Partial)
            }
            Scan::Message(n) => {
                self.pending = None;
                let bytes = buf.split_to(n).freeze();
                let m = parse_message(bytes, &self.limits, Mode::Stream)?;
                Ok(Frame::Complete(m, n))
            }
        }
    }
}

/// `lone_crlf_is_pong`: whether a buffer that is exactly `CRLF` is reported as a pong
/// at once (a connection we ping), or waits to see whether a ping follows (a
/// connection that pings us), so that the result never depends on how the bytes were
/// split into reads.
fn scan_stream(input: &[u8], limits: &Limits, lone_crlf_is_pong: bool) -> Result<Scan, Error> {
    if input.starts_with(b"\r\n\r\n") {
        return Ok(Scan::Ping);
    }
    if input == b"\r\n" {
        return Ok(if lone_crlf_is_pong {
            Scan::Pong
        } else {
            Scan::Partial
        });
    }
    if input.starts_with(b"\r\n") && input[2] != b'\r' {
        return Ok(Scan::Pong);
    }
    if input.len() < 4 && b"\r\n\r".starts_with(input) {
        return Ok(Scan::Partial);
    }
    let window = &input[..input.len().min(limits.max_message_size.saturating_add(4))];
    let Some(p) = memchr::memmem::find(window, b"\r\n\r\n") else {
        if input.len() > limits.max_message_size {
            let copy = Bytes::copy_from_slice(window);
            let answer = guess_answer(&copy, Limit::HeaderBlockSize.status());
            return Err(Error::Limit {
                offset: limits.max_message_size,
                limit: Limit::HeaderBlockSize,
                answer,
                salvage: salvage(&copy),
            });
        }
        return Ok(Scan::Partial);
    };
    let hend = p + 4;
    if hend > limits.max_message_size {
        let copy = Bytes::copy_from_slice(&input[..hend]);
        let answer = guess_answer(&copy, Limit::HeaderBlockSize.status());
        return Err(Error::Limit {
            offset: limits.max_message_size,
            limit: Limit::HeaderBlockSize,
            answer,
            salvage: salvage(&copy),
        });
    }
    // Find Content-Length among the header lines.
    let block = &input[..hend];
    let mut cl: Option<(usize, u64)> = None;
    let mut pos = match memchr::memchr(b'\n', block) {
        Some(n) => n + 1,
        None => return Ok(Scan::Partial),
    };
    let fail = |offset: usize, kind: FramingError| {
        let copy = Bytes::copy_from_slice(block);
        let answer = guess_answer(&copy, 400);
        Error::Framing {
            offset,
            kind,
            name: Some(Bytes::from_static(b"Content-Length")),
            answer,
            salvage: salvage(&copy),
        }
    };
    loop {
        match header_line(block, pos) {
            LineScan::End(_) | LineScan::Incomplete => break,
            // Malformed lines are reported by the full parse once the message is complete.
            LineScan::Bad(..) => match memchr::memchr(b'\n', &block[pos..]) {
                Some(p) => pos += p + 1,
                None => break,
            },
            LineScan::Header(h) => {
                if HeaderKind::from_name(&block[h.name.0..h.name.1])
                    == Some(HeaderKind::ContentLength)
                {
                    let v = unfold(&block[h.value.0..h.value.1]);
                    let n = chars::digits_u64(chars::trim_ws(&v))
                        .ok_or_else(|| fail(pos, FramingError::BadContentLength))?;
                    if cl.is_some() {
                        return Err(fail(pos, FramingError::RepeatedContentLength));
                    }
                    cl = Some((pos, n));
                }
                pos = h.next;
            }
        }
    }
    let Some((at, n)) = cl else {
        return Err(fail(hend, FramingError::MissingContentLength));
    };
    let total = usize::try_from(n).ok().and_then(|n| n.checked_add(hend));
    match total {
        Some(t) if t <= limits.max_message_size => Ok(Scan::Message(t)),
        _ => {
            let copy = Bytes::copy_from_slice(block);
            let answer = guess_answer(&copy, Limit::BodySize.status());
            Err(Error::Limit {
                offset: at,
                limit: Limit::BodySize,
                answer,
                salvage: salvage(&copy),
            })
        }
    }
}

/// A logical line starting at some position: `end` is where its final CRLF starts,
/// `next` where the following line starts, `folded` if it spans several physical
/// lines.
struct Line {
    end: usize,
    next: usize,
    folded: bool,
    bare_lf: bool,
}

/// Finds the logical line starting at `pos` (following folds). `None` if the input
/// ends first.
fn next_line(input: &[u8], pos: usize) -> Option<Line> {
    let mut from = pos;
    let mut folded = false;
    let mut bare_lf = false;
    loop {
        let nl = from + memchr::memchr(b'\n', &input[from..])?;
        if nl == 0 || input[nl - 1] != b'\r' {
            bare_lf = true;
        }
        let end = if nl > 0 && input[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        if end == pos {
            // Empty line: end of headers.
            return Some(Line {
                end,
                next: nl + 1,
                folded,
                bare_lf,
            });
        }
        match input.get(nl + 1) {
            Some(b' ' | b'\t') => {
                folded = true;
                from = nl + 1;
            }
            // The line may still be folded once more bytes arrive; callers treat the
            // input as complete (datagram, or a block ending in CRLFCRLF).
            _ => {
                return Some(Line {
                    end,
                    next: nl + 1,
                    folded,
                    bare_lf,
                });
            }
        }
    }
}

/// One header line, located.
struct HeaderLine {
    name: (usize, usize),
    value: (usize, usize),
    folded: bool,
    next: usize,
}

enum LineScan {
    /// The empty line ending the header block; the body starts at `.0`.
    End(usize),
    Header(HeaderLine),
    /// The input ends inside the line.
    Incomplete,
    /// A malformed line: reason and name range.
    Bad(&'static str, (usize, usize)),
}

/// Reads the header line at `pos`:
/// `field-name *(SP/HTAB) ":" field-value *(CRLF 1*(SP/HTAB) field-value) CRLF`.
#[inline(always)]
fn header_line(input: &[u8], pos: usize) -> LineScan {
    let len = input.len();
    match input.get(pos..pos + 2) {
        Some(b"\r\n") => return LineScan::End(pos + 2),
        None if pos >= len || input[pos] == b'\r' => return LineScan::Incomplete,
        _ => {}
    }
    let mut i = chars::span_table(&chars::TOKEN, input, pos);
    let name = (pos, i);
    while i < len && chars::is_ws(input[i]) {
        i += 1;
    }
    if i >= len {
        return LineScan::Incomplete;
    }
    if input[i] != b':' || name.0 == name.1 {
        return LineScan::Bad(
            if name.0 == name.1 {
                "header line without a name"
            } else {
                "header name is not a token, or no colon"
            },
            name,
        );
    }
    let vstart = i + 1;
    let mut from = vstart;
    let mut folded = false;
    loop {
        let Some(p) = memchr::memchr(b'\n', &input[from..]) else {
            return LineScan::Incomplete;
        };
        let nl = from + p;
        if input[nl - 1] != b'\r' {
            return LineScan::Bad("bare LF in header", name);
        }
        match input.get(nl + 1) {
            Some(b' ' | b'\t') => {
                folded = true;
                from = nl + 1;
            }
            _ => {
                let mut a = vstart;
                let mut b = nl - 1;
                while a < b && chars::is_ws(input[a]) {
                    a += 1;
                }
                while b > a && chars::is_ws(input[b - 1]) {
                    b -= 1;
                }
                return LineScan::Header(HeaderLine {
                    name,
                    value: (a, b),
                    folded,
                    next: nl + 1,
                });
            }
        }
    }
}

/// Replaces each fold (CRLF followed by whitespace) with one SP.
fn unfold(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'\r' || v[i] == b'\n' {
            while i < v.len() && matches!(v[i], b'\r' | b'\n' | b' ' | b'\t') {
                i += 1;
            }
            out.push(b' ');
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    out
}

fn looks_like_response(input: &[u8]) -> bool {
    let i = skip_crlf(input);
    input.len() >= i + 4 && input[i..i + 4].eq_ignore_ascii_case(b"SIP/")
}

fn skip_crlf(input: &[u8]) -> usize {
    input
        .iter()
        .position(|c| *c != b'\r' && *c != b'\n')
        .unwrap_or(input.len())
}

fn guess_answer(input: &[u8], status: u16) -> Answer {
    if looks_like_response(input) {
        Answer::Drop
    } else {
        Answer::Status(status)
    }
}

/// Leniently collects the headers needed to answer (Via, From, To, Call-ID, CSeq)
/// and the start line, for an error report.
fn salvage(input: &Bytes) -> Box<Salvage> {
    let mut s = Salvage::default();
    let start = skip_crlf(input);
    let Some(first) = next_line(input, start) else {
        return Box::new(s);
    };
    s.start = parse_start_line(input, start, first.end).ok();
    let mut headers = Headers::over(input.clone(), 8);
    let mut pos = first.next;
    loop {
        match header_line(input, pos) {
            LineScan::End(_) | LineScan::Incomplete => break,
            LineScan::Bad(..) => match memchr::memchr(b'\n', &input[pos..]) {
                Some(p) => pos += p + 1,
                None => break,
            },
            LineScan::Header(h) => {
                let kind = HeaderKind::from_name(&input[h.name.0..h.name.1]);
                if let Some(
                    HeaderKind::Via
                    | HeaderKind::From
                    | HeaderKind::To
                    | HeaderKind::CallId
                    | HeaderKind::CSeq,
                ) = kind
                {
                    headers.push_span(h.name, value_loc(input, &h), kind);
                }
                pos = h.next;
            }
        }
    }
    s.headers = headers;
    Box::new(s)
}

#[inline]
fn value_loc(input: &[u8], h: &HeaderLine) -> Loc2 {
    if h.folded {
        Loc2::Own(Bytes::from(
            chars::trim_ws(&unfold(&input[h.value.0..h.value.1])).to_vec(),
        ))
    } else {
        Loc2::Span(h.value.0, h.value.1)
    }
}

fn start_error(input: &Bytes, offset: usize, reason: &'static str) -> Error {
    let answer = guess_answer(input, 400);
    Error::StartLine {
        offset,
        reason,
        answer,
        salvage: salvage(input),
    }
}

fn parse_version(s: &[u8]) -> Option<Version> {
    if s == b"SIP/2.0" {
        return Some(Version::SIP_2_0);
    }
    let rest = s
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case(b"SIP/"))
        .map(|_| &s[4..])?;
    let dot = rest.iter().position(|&c| c == b'.')?;
    let major = chars::digits_u64(&rest[..dot]).and_then(|n| u16::try_from(n).ok())?;
    let minor = chars::digits_u64(&rest[dot + 1..]).and_then(|n| u16::try_from(n).ok())?;
    Some(Version { major, minor })
}

fn parse_start_line(
    input: &Bytes,
    start: usize,
    end: usize,
) -> Result<StartLine, (usize, &'static str)> {
    let line = &input[start..end];
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp = memchr::memchr(b' ', line).ok_or((start, "status line without status code"))?;
        let version = parse_version(&line[..sp]).ok_or((start, "bad SIP-Version"))?;
        let rest = &line[sp + 1..];
        let code_end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
        let digits = &rest[..code_end];
        if digits.len() != 3 || !digits.iter().all(u8::is_ascii_digit) {
            return Err((start + sp + 1, "Status-Code is not 3 digits"));
        }
        let n = u16::from(digits[0] - b'0') * 100
            + u16::from(digits[1] - b'0') * 10
            + u16::from(digits[2] - b'0');
        let code = StatusCode::new(n).ok_or((start + sp + 1, "Status-Code outside 100-699"))?;
        let reason = if code_end < rest.len() {
            &rest[code_end + 1..]
        } else {
            &rest[code_end..]
        };
        let reason = Reason::new(input.slice_ref(reason))
            .map_err(|_| (start + sp + 1 + code_end, "bad Reason-Phrase"))?;
        return Ok(StartLine::Response(StatusLine {
            version,
            code,
            reason,
        }));
    }
    // Request-Line = Method SP Request-URI SP SIP-Version
    let sp1 = memchr::memchr(b' ', line).ok_or((start, "request line without SP"))?;
    let method = Method::from_slice(input, &line[..sp1]).map_err(|_| (start, "bad method"))?;
    let rest = &line[sp1 + 1..];
    let sp2 =
        memchr::memchr(b' ', rest).ok_or((start + sp1 + 1, "request line without SIP-Version"))?;
    let uri_bytes = &rest[..sp2];
    let uri = uri::parse_uri(input, uri_bytes, UriContext::Full)
        .map_err(|e| (start + sp1 + 1, e.reason))?;
    let vpos = start + sp1 + 1 + sp2 + 1;
    let version = parse_version(&rest[sp2 + 1..]).ok_or((vpos, "bad SIP-Version"))?;
    Ok(StartLine::Request(RequestLine {
        method,
        uri,
        version,
    }))
}

fn parse_message(input: Bytes, limits: &Limits, mode: Mode) -> Result<Message, Error> {
    if input.len() > u32::MAX as usize {
        // Header positions are stored as u32 offsets.
        let answer = guess_answer(&input, Limit::HeaderBlockSize.status());
        return Err(Error::Limit {
            offset: u32::MAX as usize,
            limit: Limit::HeaderBlockSize,
            answer,
            salvage: Box::default(),
        });
    }
    let start = skip_crlf(&input);
    let Some(first) = next_line(&input, start) else {
        return Err(start_error(&input, start, "no start line"));
    };
    if first.end - start > limits.max_line_length {
        let answer = guess_answer(&input, Limit::StartLineLength.status());
        return Err(Error::Limit {
            offset: start,
            limit: Limit::StartLineLength,
            answer,
            salvage: salvage(&input),
        });
    }
    if first.folded || first.bare_lf {
        return Err(start_error(
            &input,
            start,
            "start line is folded or ends in a bare LF",
        ));
    }
    let start_line =
        parse_start_line(&input, start, first.end).map_err(|(o, r)| start_error(&input, o, r))?;
    let answer_for = |status: u16| match start_line {
        StartLine::Request(_) => Answer::Status(status),
        StartLine::Response(_) => Answer::Drop,
    };

    let mut headers = Headers::over(input.clone(), 24);
    let mut content_length: Option<u64> = None;
    let mut pos = first.next;
    let hend = loop {
        let h = match header_line(&input, pos) {
            LineScan::End(next) => break next,
            LineScan::Incomplete => {
                return Err(Error::Framing {
                    offset: pos,
                    kind: FramingError::UnterminatedHeaders,
                    name: None,
                    answer: answer_for(400),
                    salvage: salvage(&input),
                });
            }
            LineScan::Bad(reason, (a, b)) => {
                return Err(Error::Header {
                    offset: pos,
                    name: input.slice(a..b),
                    reason,
                    answer: answer_for(400),
                    salvage: salvage(&input),
                });
            }
            LineScan::Header(h) => h,
        };
        if h.next - pos > limits.max_line_length {
            return Err(Error::Limit {
                offset: pos,
                limit: Limit::HeaderLength,
                answer: answer_for(513),
                salvage: salvage(&input),
            });
        }
        if headers.len() >= limits.max_headers {
            return Err(Error::Limit {
                offset: pos,
                limit: Limit::HeaderCount,
                answer: answer_for(513),
                salvage: salvage(&input),
            });
        }
        let kind = HeaderKind::from_token(&input[h.name.0..h.name.1]);
        if kind == Some(HeaderKind::ContentLength) {
            let value = value_loc(&input, &h);
            let fe = |kind| Error::Framing {
                offset: pos,
                kind,
                name: Some(input.slice(h.name.0..h.name.1)),
                answer: answer_for(400),
                salvage: salvage(&input),
            };
            if content_length.is_some() {
                return Err(fe(FramingError::RepeatedContentLength));
            }
            let digits = match &value {
                Loc2::Span(a, b) => &input[*a..*b],
                Loc2::Own(v) => &v[..],
            };
            content_length =
                Some(chars::digits_u64(digits).ok_or_else(|| fe(FramingError::BadContentLength))?);
            headers.push_span(h.name, value, kind);
        } else if h.folded {
            headers.push_span(h.name, value_loc(&input, &h), kind);
        } else {
            headers.push_plain(h.name, h.value, kind);
        }
        pos = h.next;
    };

    let available = input.len() - hend;
    let body = match (content_length, mode) {
        (Some(n), _) => {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n > available {
                return Err(Error::Framing {
                    offset: hend,
                    kind: FramingError::TruncatedBody,
                    name: Some(Bytes::from_static(b"Content-Length")),
                    answer: answer_for(400),
                    salvage: salvage(&input),
                });
            }
            input.slice(hend..hend + n)
        }
        (None, Mode::Datagram) => input.slice(hend..),
        (None, Mode::Stream) => {
            return Err(Error::Framing {
                offset: hend,
                kind: FramingError::MissingContentLength,
                name: None,
                answer: answer_for(400),
                salvage: salvage(&input),
            });
        }
    };
    Ok(Message {
        start: start_line,
        headers,
        body,
    })
}

impl Message {
    /// Parses one datagram with default [`Limits`]; see [`parse_datagram`].
    pub fn parse(input: impl Into<Bytes>) -> Result<Message, Error> {
        parse_datagram(input.into(), &Limits::DEFAULT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 3\r\n\r\nabc";

    fn stream(b: &'static [u8]) -> Result<Frame, Error> {
        frame_stream(&Bytes::from_static(b), &Limits::default())
    }

    #[test]
    fn keepalives() {
        assert_eq!(stream(b"\r\n\r\n").unwrap(), Frame::Ping);
        // A lone CRLF may be the first half of a ping.
        assert_eq!(stream(b"\r\n").unwrap(), Frame::Partial);
        assert_eq!(stream(b"\r\nOPTIONS").unwrap(), Frame::Pong);
        assert_eq!(stream(b"\r\n\r").unwrap(), Frame::Partial);
        assert_eq!(stream(b"\r").unwrap(), Frame::Partial);
        assert_eq!(stream(b"").unwrap(), Frame::Partial);
        assert_eq!(Frame::Ping.consumed(), 4);
        assert_eq!(Frame::Pong.consumed(), 2);
    }

    #[test]
    fn stream_partial_then_complete() {
        for cut in 0..OPTIONS.len() {
            let f =
                frame_stream(&Bytes::copy_from_slice(&OPTIONS[..cut]), &Limits::default()).unwrap();
            assert!(
                matches!(f, Frame::Partial | Frame::Pong),
                "cut {cut}: {f:?}"
            );
        }
        let mut two = OPTIONS.to_vec();
        two.extend_from_slice(OPTIONS);
        let Frame::Complete(m, n) = frame_stream(&Bytes::from(two), &Limits::default()).unwrap()
        else {
            panic!()
        };
        assert_eq!(n, OPTIONS.len());
        assert_eq!(&m.body[..], b"abc");
    }

    #[test]
    fn stream_limits_and_framing() {
        let small = Limits {
            max_message_size: 100,
            ..Limits::default()
        };
        // Header block larger than the limit, never terminated: 513 and close.
        let big = Bytes::from(vec![b'a'; 200]);
        let e = frame_stream(&big, &small).unwrap_err();
        assert_eq!(
            (e.answer(), e.closes_connection()),
            (Answer::Status(513), true)
        );
        // Body too big for the limit: 413.
        let hdr = Bytes::from_static(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 500\r\n\r\n");
        let e = frame_stream(&hdr, &small).unwrap_err();
        assert!(matches!(
            e,
            Error::Limit {
                limit: Limit::BodySize,
                answer: Answer::Status(413),
                ..
            }
        ));
        // Responses are dropped, never answered.
        let e = frame_stream(
            &Bytes::from_static(b"SIP/2.0 200 OK\r\nContent-Length: x\r\n\r\n"),
            &small,
        )
        .unwrap_err();
        assert_eq!(e.answer(), Answer::Drop);
        // Huge Content-Length does not overflow.
        let e =
            stream(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 99999999999999999999999\r\n\r\n")
                .unwrap_err();
        assert!(matches!(
            e,
            Error::Framing {
                kind: FramingError::BadContentLength,
                ..
            }
        ));
        let e = stream(b"MESSAGE sip:a@b SIP/2.0\r\nl: 18446744073709551615\r\n\r\n").unwrap_err();
        assert!(matches!(
            e,
            Error::Limit {
                limit: Limit::BodySize,
                ..
            }
        ));
    }

    #[test]
    fn datagram_limits() {
        let l = Limits {
            max_message_size: 1000,
            max_headers: 3,
            max_line_length: 40,
        };
        let e = parse_datagram(Bytes::from_static(OPTIONS), &l).unwrap_err();
        assert!(matches!(
            e,
            Error::Limit {
                limit: Limit::HeaderCount,
                answer: Answer::Status(513),
                ..
            }
        ));
        let l = Limits {
            max_headers: 50,
            ..l
        };
        let e = parse_datagram(Bytes::from_static(b"OPTIONS sip:a@b SIP/2.0\r\nSubject: 0123456789012345678901234567890123456789\r\n\r\n"), &l).unwrap_err();
        assert!(matches!(
            e,
            Error::Limit {
                limit: Limit::HeaderLength,
                ..
            }
        ));
        let e = parse_datagram(
            Bytes::from_static(
                b"OPTIONS sip:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@b SIP/2.0\r\n\r\n",
            ),
            &l,
        )
        .unwrap_err();
        assert!(matches!(
            e,
            Error::Limit {
                limit: Limit::StartLineLength,
                answer: Answer::Status(414),
                ..
            }
        ));
        let l = Limits {
            max_message_size: 10,
            ..l
        };
        let e = parse_datagram(Bytes::from_static(OPTIONS), &l).unwrap_err();
        assert_eq!(e.answer(), Answer::Status(513));
    }

    #[test]
    fn line_errors() {
        let p = |b: &'static [u8]| parse_datagram(Bytes::from_static(b), &Limits::default());
        // Bare LF in a header line.
        let e = p(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\nTo: y\r\n\r\n").unwrap_err();
        assert!(matches!(e, Error::Header { .. }), "{e:?}");
        // A header line that starts with whitespace right after the start line.
        assert!(p(b"OPTIONS sip:a@b SIP/2.0\r\n To: y\r\n\r\n").is_err());
        // No colon.
        let e = p(b"OPTIONS sip:a@b SIP/2.0\r\nFoobar roobar\r\n\r\n").unwrap_err();
        assert_eq!(e.header().unwrap().as_ref(), b"Foobar");
        // Folded start line.
        assert!(p(b"OPTIONS sip:a@b\r\n SIP/2.0\r\n\r\n").is_err());
        // Status code must be three digits, 100-699.
        assert_eq!(
            p(b"SIP/2.0 99 x\r\n\r\n").unwrap_err().answer(),
            Answer::Drop
        );
        assert_eq!(
            p(b"SIP/2.0 700 x\r\n\r\n").unwrap_err().answer(),
            Answer::Drop
        );
        assert_eq!(
            p(b"SIP/2.0 1000 x\r\n\r\n").unwrap_err().answer(),
            Answer::Drop
        );
        // No SP before an empty reason is tolerated; extra SP is part of the reason.
        assert_eq!(
            p(b"SIP/2.0 100\r\n\r\n")
                .unwrap()
                .status_line()
                .unwrap()
                .reason
                .as_str(),
            ""
        );
        // Leading CRLFs before the start line are ignored.
        assert!(p(b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\n\r\n").is_ok());
        // Empty and garbage input.
        assert!(p(b"").is_err());
        assert!(p(b"\x00\x01\x02").is_err());
        // Folded Content-Length is unfolded before reading it.
        let m = p(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length:\r\n 2\r\n\r\nxyz").unwrap();
        assert_eq!(&m.body[..], b"xy");
    }

    #[test]
    fn framer_keeps_state() {
        let mut f = StreamFramer::new(Limits::default());
        let mut buf = BytesMut::from(&OPTIONS[..OPTIONS.len() - 1]);
        assert_eq!(f.decode(&mut buf).unwrap(), Frame::Partial);
        assert_eq!(f.pending, Some(OPTIONS.len()));
        buf.extend_from_slice(b"c\r\n");
        assert!(matches!(f.decode(&mut buf).unwrap(), Frame::Complete(_, _)));
        // The trailing CRLF could still become a ping: wait.
        assert_eq!(f.decode(&mut buf).unwrap(), Frame::Partial);
        buf.extend_from_slice(b"\r\n");
        assert_eq!(f.decode(&mut buf).unwrap(), Frame::Ping);
        assert!(buf.is_empty());
    }

    /// Found by the `sip_stream` fuzz target: `CRLF` then `CRLF` in two reads gave two
    /// pongs, while the same bytes in one read gave a ping.
    #[test]
    fn a_ping_split_across_reads_is_still_a_ping() {
        let mut f = StreamFramer::new(Limits::default());
        let mut buf = BytesMut::from(&b"\r\n"[..]);
        assert_eq!(f.decode(&mut buf).unwrap(), Frame::Partial);
        buf.extend_from_slice(b"\r\n");
        assert_eq!(f.decode(&mut buf).unwrap(), Frame::Ping);
        assert!(buf.is_empty());
    }

    #[test]
    fn an_outbound_framer_reports_a_lone_crlf_as_a_pong_at_once() {
        let mut f = StreamFramer::outbound(Limits::default());
        let mut buf = BytesMut::from(&b"\r\n"[..]);
        assert_eq!(f.decode(&mut buf).unwrap(), Frame::Pong);
        assert!(buf.is_empty());
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(f.decode(&mut buf).unwrap(), Frame::Ping);
    }
}

#[cfg(test)]
mod framer_error_tests {
    use super::*;

    #[test]
    fn bad_header_in_framed_message_is_skipped() {
        let mut f = StreamFramer::new(Limits::default());
        let mut buf = BytesMut::from(
            &b"OPTIONS sip:a@b SIP/2.0\r\nNo colon here\r\nContent-Length: 0\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n"[..],
        );
        let e = f.decode(&mut buf).unwrap_err();
        assert!(matches!(e, Error::Header { .. }));
        assert!(!e.closes_connection());
        assert!(matches!(f.decode(&mut buf).unwrap(), Frame::Complete(_, _)));
        // A framing error leaves the buffer alone.
        let mut buf = BytesMut::from(&b"OPTIONS sip:a@b SIP/2.0\r\nl: -1\r\n\r\n"[..]);
        let n = buf.len();
        assert!(f.decode(&mut buf).unwrap_err().closes_connection());
        assert_eq!(buf.len(), n);
    }
}
