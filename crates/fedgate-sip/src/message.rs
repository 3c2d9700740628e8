//! The message model and the serializer.
//!
//! ```text
//! SIP-message  = Request / Response
//! Request-Line = Method SP Request-URI SP SIP-Version CRLF
//! Status-Line  = SIP-Version SP Status-Code SP Reason-Phrase CRLF
//! ```

use bytes::Bytes;

use crate::error::{HeaderError, ValueError};
use crate::headers::{Header, HeaderKind, Headers};
use crate::method::Method;
use crate::typed::{Address, CSeq, CallId, Contacts, ContentLength, HeaderValue, Via};
use crate::uri::{Uri, push_u64};

/// `SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT`. Only 2.0 passes validation (505
/// otherwise), but any version parses so that the 505 can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version {
    /// Major number.
    pub major: u16,
    /// Minor number.
    pub minor: u16,
}

impl Version {
    /// SIP/2.0
    pub const SIP_2_0: Version = Version { major: 2, minor: 0 };

    fn encode(self, out: &mut Vec<u8>) {
        if self == Version::SIP_2_0 {
            out.extend_from_slice(b"SIP/2.0");
            return;
        }
        out.extend_from_slice(b"SIP/");
        push_u64(out, u64::from(self.major));
        out.push(b'.');
        push_u64(out, u64::from(self.minor));
    }
}

/// A status code, 100–699.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(u16);

impl StatusCode {
    /// A status code; `None` outside 100–699.
    pub const fn new(code: u16) -> Option<StatusCode> {
        if code >= 100 && code <= 699 {
            Some(StatusCode(code))
        } else {
            None
        }
    }
    /// The number.
    pub const fn as_u16(self) -> u16 {
        self.0
    }
    /// 1xx
    pub const fn is_provisional(self) -> bool {
        self.0 < 200
    }
}

/// A reason phrase: UTF-8 text without CR, LF or other control characters but HTAB
/// (may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reason(Bytes);

impl Reason {
    /// A reason phrase; `Err` if it is not UTF-8 or holds control characters.
    pub fn new(b: impl Into<Bytes>) -> Result<Reason, ValueError> {
        let b = b.into();
        if std::str::from_utf8(&b).is_err()
            || b.iter().any(|&c| (c < 0x20 && c != b'\t') || c == 0x7f)
        {
            return Err(ValueError::new("bad reason phrase"));
        }
        Ok(Reason(b))
    }
    /// The text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
    /// The bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

/// The request line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestLine {
    /// Method.
    pub method: Method,
    /// Request-URI.
    pub uri: Uri,
    /// SIP-Version.
    pub version: Version,
}

/// The status line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusLine {
    /// SIP-Version.
    pub version: Version,
    /// Status code.
    pub code: StatusCode,
    /// Reason phrase (may be empty).
    pub reason: Reason,
}

/// A request line or a status line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StartLine {
    /// Request.
    Request(RequestLine),
    /// Response.
    Response(StatusLine),
}

impl StartLine {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            StartLine::Request(r) => {
                out.extend_from_slice(r.method.as_bytes());
                out.push(b' ');
                r.uri.encode(out);
                out.push(b' ');
                r.version.encode(out);
            }
            StartLine::Response(s) => {
                s.version.encode(out);
                // A status code has three digits (100-699).
                let c = s.code.0;
                out.extend_from_slice(&[
                    b' ',
                    b'0' + (c / 100 % 10) as u8,
                    b'0' + (c / 10 % 10) as u8,
                    b'0' + (c % 10) as u8,
                    b' ',
                ]);
                out.extend_from_slice(&s.reason.0);
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// A SIP request or response: start line, headers in order, body.
///
/// Header values are `Bytes` slices of the received buffer; typed views are decoded
/// on demand through [`Message::headers`] (see [`Headers::via`] and friends), so a
/// malformed optional header does not make the message unreadable.
///
/// The serializer ([`Message::encode`]) writes the start line canonically, every
/// header as `name: value` with its name as received, and the body. Keep
/// `Content-Length` consistent with the body ([`Message::set_body`] does), and
/// `parse(encode(m)) == m`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    /// Start line.
    pub start: StartLine,
    /// Headers, in order.
    pub headers: Headers,
    /// Body.
    pub body: Bytes,
}

impl Message {
    /// A request with no headers and no body.
    pub fn request(method: Method, uri: Uri) -> Message {
        Message {
            start: StartLine::Request(RequestLine {
                method,
                uri,
                version: Version::SIP_2_0,
            }),
            headers: Headers::with_capacity(12),
            body: Bytes::new(),
        }
    }

    /// A response with no headers and no body.
    pub fn response(code: StatusCode, reason: Reason) -> Message {
        Message {
            start: StartLine::Response(StatusLine {
                version: Version::SIP_2_0,
                code,
                reason,
            }),
            headers: Headers::with_capacity(12),
            body: Bytes::new(),
        }
    }

    /// True for a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request(_))
    }
    /// The request line, if a request.
    pub fn request_line(&self) -> Option<&RequestLine> {
        match &self.start {
            StartLine::Request(r) => Some(r),
            StartLine::Response(_) => None,
        }
    }
    /// The status line, if a response.
    pub fn status_line(&self) -> Option<&StatusLine> {
        match &self.start {
            StartLine::Response(s) => Some(s),
            StartLine::Request(_) => None,
        }
    }
    /// The method of a request.
    pub fn method(&self) -> Option<&Method> {
        self.request_line().map(|r| &r.method)
    }
    /// The status code of a response.
    pub fn status(&self) -> Option<StatusCode> {
        self.status_line().map(|s| s.code)
    }
    /// The version in the start line.
    pub fn version(&self) -> Version {
        match &self.start {
            StartLine::Request(r) => r.version,
            StartLine::Response(s) => s.version,
        }
    }

    /// The headers.
    #[inline]
    pub fn headers(&self) -> &Headers {
        &self.headers
    }
    /// The headers, mutable.
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// Appends a header whose value is `v`'s canonical encoding, under its long name.
    pub fn push_typed<T: HeaderValue>(&mut self, kind: HeaderKind, v: &T) {
        self.headers.push(Header::from_parts(
            Bytes::from_static(kind.name().as_bytes()),
            v.to_bytes(),
        ));
    }

    /// Replaces the body and every Content-Length with one that matches it.
    pub fn set_body(&mut self, body: Bytes) {
        self.headers.remove(HeaderKind::ContentLength);
        let len = if body.is_empty() {
            Bytes::from_static(b"0")
        } else {
            ContentLength(body.len() as u64).to_bytes()
        };
        self.headers
            .push(Header::known(HeaderKind::ContentLength, len));
        self.body = body;
    }

    /// Every Via value, top first.
    #[inline]
    pub fn via(&self) -> Result<Vec<Via>, HeaderError> {
        self.headers.via()
    }
    /// The top Via value.
    #[inline]
    pub fn top_via(&self) -> Result<Via, HeaderError> {
        self.headers.top_via()
    }
    /// From.
    #[inline]
    pub fn from(&self) -> Result<Address, HeaderError> {
        self.headers.from()
    }
    /// To.
    #[inline]
    pub fn to(&self) -> Result<Address, HeaderError> {
        self.headers.to()
    }
    /// Call-ID.
    #[inline]
    pub fn call_id(&self) -> Result<CallId, HeaderError> {
        self.headers.call_id()
    }
    /// CSeq.
    #[inline]
    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        self.headers.cseq()
    }
    /// Contact.
    #[inline]
    pub fn contact(&self) -> Result<Contacts, HeaderError> {
        self.headers.contact()
    }
    /// Content-Length (`Missing` when absent).
    #[inline]
    pub fn content_length(&self) -> Result<ContentLength, HeaderError> {
        self.headers.content_length()
    }

    /// Appends the wire form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.start.encode(out);
        self.headers.encode(out);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }

    /// The wire form as `Bytes`.
    pub fn to_bytes(&self) -> Bytes {
        // Exact for a SIP/2.0 response: a `Bytes` made from a `Vec` with spare
        // capacity allocates its shared header at once, from a full one only
        // when it is first cloned.
        let start = match &self.start {
            StartLine::Response(s) if s.version == Version::SIP_2_0 => 14 + s.reason.0.len(),
            _ => 64,
        };
        let cap = start + self.headers.encoded_len() + 2 + self.body.len();
        let mut v = Vec::with_capacity(cap);
        self.encode(&mut v);
        Bytes::from(v)
    }
}
