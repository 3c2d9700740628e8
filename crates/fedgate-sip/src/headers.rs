//! Header fields: names (long and compact forms, any letter case), values as
//! `Bytes` slices of the input, and the ordered header list.
//!
//! ```text
//! message-header = field-name HCOLON field-value CRLF     ; HCOLON = *( SP / HTAB ) ":" SWS
//! ```

use bytes::Bytes;

use crate::chars;
use crate::error::ValueError;

macro_rules! kinds {
    ($( $(#[$m:meta])* $v:ident = $name:literal $(, $compact:literal)? ;)*) => {
        /// The header fields this crate knows by name. Any other header is kept by
        /// its name and is just as reachable through [`Headers::get_named`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum HeaderKind {
            $( $(#[$m])* #[doc = $name] $v, )*
        }

        impl HeaderKind {
            /// The canonical long name (`"Call-ID"`).
            pub const fn name(self) -> &'static str {
                match self { $( HeaderKind::$v => $name, )* }
            }

            /// The compact form (`'i'` for Call-ID), if there is one (RFC 3261 §7.3.3 and extensions).
            pub const fn compact(self) -> Option<u8> {
                match self { $( HeaderKind::$v => kinds!(@c $($compact)?), )* }
            }

            #[cfg(test)]
            const ALL: &'static [HeaderKind] = &[ $( HeaderKind::$v, )* ];
        }
    };
    (@c) => { None };
    (@c $c:literal) => { Some($c) };
}

kinds! {
    Via = "Via", b'v';
    From = "From", b'f';
    To = "To", b't';
    CallId = "Call-ID", b'i';
    CSeq = "CSeq";
    MaxForwards = "Max-Forwards";
    Contact = "Contact", b'm';
    Route = "Route";
    RecordRoute = "Record-Route";
    ContentLength = "Content-Length", b'l';
    ContentType = "Content-Type", b'c';
    ContentEncoding = "Content-Encoding", b'e';
    Expires = "Expires";
    MinExpires = "Min-Expires";
    Event = "Event", b'o';
    SubscriptionState = "Subscription-State";
    Allow = "Allow";
    AllowEvents = "Allow-Events", b'u';
    Supported = "Supported", b'k';
    Require = "Require";
    ProxyRequire = "Proxy-Require";
    Unsupported = "Unsupported";
    Accept = "Accept";
    Subject = "Subject", b's';
    ReferTo = "Refer-To", b'r';
    ReferredBy = "Referred-By", b'b';
    SessionExpires = "Session-Expires", b'x';
    Identity = "Identity", b'y';
    IdentityInfo = "Identity-Info", b'n';
    RejectContact = "Reject-Contact", b'j';
    AcceptContact = "Accept-Contact", b'a';
    RequestDisposition = "Request-Disposition", b'd';
    Date = "Date";
}

impl HeaderKind {
    /// Recognises a header name: long or compact form, any letter case.
    #[inline]
    pub fn from_name(name: &[u8]) -> Option<HeaderKind> {
        Self::from_token(name).filter(|_| chars::is_token(name))
    }

    /// [`HeaderKind::from_name`] for a name known to be a token (the parser's case).
    #[inline]
    pub(crate) fn from_token(name: &[u8]) -> Option<HeaderKind> {
        let first = name.first()? | 0x20;
        if name.len() == 1 {
            return Some(match first {
                b'v' => HeaderKind::Via,
                b'f' => HeaderKind::From,
                b't' => HeaderKind::To,
                b'i' => HeaderKind::CallId,
                b'm' => HeaderKind::Contact,
                b'l' => HeaderKind::ContentLength,
                b'c' => HeaderKind::ContentType,
                b'e' => HeaderKind::ContentEncoding,
                b'o' => HeaderKind::Event,
                b'u' => HeaderKind::AllowEvents,
                b'k' => HeaderKind::Supported,
                b's' => HeaderKind::Subject,
                b'r' => HeaderKind::ReferTo,
                b'b' => HeaderKind::ReferredBy,
                b'x' => HeaderKind::SessionExpires,
                b'y' => HeaderKind::Identity,
                b'n' => HeaderKind::IdentityInfo,
                b'j' => HeaderKind::RejectContact,
                b'a' => HeaderKind::AcceptContact,
                b'd' => HeaderKind::RequestDisposition,
                _ => return None,
            });
        }
        // Dispatch on length and first letter; at most one candidate is compared.
        let (candidate, kind): (&[u64; 3], HeaderKind) = match (name.len(), first) {
            (2, b't') => (&const { chars::words(b"to") }, HeaderKind::To),
            (3, b'v') => (&const { chars::words(b"via") }, HeaderKind::Via),
            (4, b'c') => (&const { chars::words(b"cseq") }, HeaderKind::CSeq),
            (4, b'd') => (&const { chars::words(b"date") }, HeaderKind::Date),
            (4, b'f') => (&const { chars::words(b"from") }, HeaderKind::From),
            (5, b'a') => (&const { chars::words(b"allow") }, HeaderKind::Allow),
            (5, b'e') => (&const { chars::words(b"event") }, HeaderKind::Event),
            (5, b'r') => (&const { chars::words(b"route") }, HeaderKind::Route),
            (6, b'a') => (&const { chars::words(b"accept") }, HeaderKind::Accept),
            (7, b'c') => {
                if name[1] | 0x20 == b'a' {
                    (&const { chars::words(b"call-id") }, HeaderKind::CallId)
                } else {
                    (&const { chars::words(b"contact") }, HeaderKind::Contact)
                }
            }
            (7, b'e') => (&const { chars::words(b"expires") }, HeaderKind::Expires),
            (7, b'r') => (&const { chars::words(b"require") }, HeaderKind::Require),
            (7, b's') => (&const { chars::words(b"subject") }, HeaderKind::Subject),
            (8, b'i') => (&const { chars::words(b"identity") }, HeaderKind::Identity),
            (8, b'r') => (&const { chars::words(b"refer-to") }, HeaderKind::ReferTo),
            (9, b's') => (&const { chars::words(b"supported") }, HeaderKind::Supported),
            (11, b'm') => (
                &const { chars::words(b"min-expires") },
                HeaderKind::MinExpires,
            ),
            (11, b'r') => (
                &const { chars::words(b"referred-by") },
                HeaderKind::ReferredBy,
            ),
            (11, b'u') => (
                &const { chars::words(b"unsupported") },
                HeaderKind::Unsupported,
            ),
            (12, b'a') => (
                &const { chars::words(b"allow-events") },
                HeaderKind::AllowEvents,
            ),
            (12, b'c') => (
                &const { chars::words(b"content-type") },
                HeaderKind::ContentType,
            ),
            (12, b'm') => (
                &const { chars::words(b"max-forwards") },
                HeaderKind::MaxForwards,
            ),
            (12, b'r') => (
                &const { chars::words(b"record-route") },
                HeaderKind::RecordRoute,
            ),
            (13, b'i') => (
                &const { chars::words(b"identity-info") },
                HeaderKind::IdentityInfo,
            ),
            (13, b'p') => (
                &const { chars::words(b"proxy-require") },
                HeaderKind::ProxyRequire,
            ),
            (14, b'a') => (
                &const { chars::words(b"accept-contact") },
                HeaderKind::AcceptContact,
            ),
            (14, b'c') => (
                &const { chars::words(b"content-length") },
                HeaderKind::ContentLength,
            ),
            (14, b'r') => (
                &const { chars::words(b"reject-contact") },
                HeaderKind::RejectContact,
            ),
            (15, b's') => (
                &const { chars::words(b"session-expires") },
                HeaderKind::SessionExpires,
            ),
            (16, b'c') => (
                &const { chars::words(b"content-encoding") },
                HeaderKind::ContentEncoding,
            ),
            (18, b's') => (
                &const { chars::words(b"subscription-state") },
                HeaderKind::SubscriptionState,
            ),
            (19, b'r') => (
                &const { chars::words(b"request-disposition") },
                HeaderKind::RequestDisposition,
            ),
            _ => return None,
        };
        chars::token_eq_words(name, candidate).then_some(kind)
    }
}

/// An owned header field, for building messages: a name (a token) and a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    name: Bytes,
    value: Bytes,
    kind: Option<HeaderKind>,
}

impl Header {
    /// A header from a name (a token) and a value (no CR or LF, no leading or
    /// trailing whitespace).
    pub fn new(name: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<Header, ValueError> {
        let (name, value) = (name.into(), value.into());
        if !chars::is_token(&name) {
            return Err(ValueError::new("header name is not a token"));
        }
        if value.iter().any(|&c| c == b'\r' || c == b'\n')
            || value.first().is_some_and(|c| chars::is_ws(*c))
            || value.last().is_some_and(|c| chars::is_ws(*c))
        {
            return Err(ValueError::new(
                "header value has CR, LF or surrounding whitespace",
            ));
        }
        Ok(Header::from_parts(name, value))
    }

    pub(crate) fn from_parts(name: Bytes, value: Bytes) -> Header {
        let kind = HeaderKind::from_name(&name);
        Header { name, value, kind }
    }

    /// A header of a known kind under its canonical name.
    pub(crate) fn known(kind: HeaderKind, value: Bytes) -> Header {
        Header {
            name: Bytes::from_static(kind.name().as_bytes()),
            value,
            kind: Some(kind),
        }
    }

    /// The name.
    pub fn name(&self) -> &Bytes {
        &self.name
    }
    /// The value.
    pub fn value(&self) -> &Bytes {
        &self.value
    }
    /// The known kind of this header, if any.
    pub fn kind(&self) -> Option<HeaderKind> {
        self.kind
    }
}

/// Where a name or value lives: a range of the message buffer, or an owned `Bytes`
/// (unfolded values, headers added by the application).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loc {
    Span(u32, u32),
    Own(u32),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    name: Loc,
    value: Loc,
    kind: Option<HeaderKind>,
}

/// The header fields of a message, in order.
///
/// Names and values are ranges of the received buffer (no reference count is
/// touched per header); [`HeaderRef::value_bytes`] hands out a zero-copy
/// `Bytes` slice when one is needed. Names are kept as received (long or compact
/// form, any case); values are unfolded (each line fold became one SP) and trimmed.
#[derive(Clone, Default)]
pub struct Headers {
    buf: Bytes,
    owned: Vec<Bytes>,
    entries: Vec<Entry>,
}

/// A view of one header field in a [`Headers`] list.
#[derive(Clone, Copy)]
pub struct HeaderRef<'a> {
    headers: &'a Headers,
    entry: Entry,
}

impl<'a> HeaderRef<'a> {
    /// The name as received.
    #[inline]
    pub fn name(&self) -> &'a [u8] {
        self.headers.get_loc(self.entry.name)
    }
    /// The value, unfolded and trimmed.
    #[inline]
    pub fn value(&self) -> &'a [u8] {
        self.headers.get_loc(self.entry.value)
    }
    /// The buffer holding the value, and the value as a slice of it.
    #[inline]
    pub(crate) fn value_src(&self) -> (&'a Bytes, &'a [u8]) {
        let h = self.headers;
        match self.entry.value {
            Loc::Span(a, b) => (
                &h.buf,
                h.buf.get(a as usize..b as usize).unwrap_or_default(),
            ),
            Loc::Own(i) => match h.owned.get(i as usize) {
                Some(b) => (b, &b[..]),
                None => (&h.buf, &[]),
            },
        }
    }
    /// The value as a zero-copy `Bytes` slice of the message.
    pub fn value_bytes(&self) -> Bytes {
        self.headers.bytes_loc(self.entry.value)
    }
    /// The name as a zero-copy `Bytes` slice of the message.
    pub fn name_bytes(&self) -> Bytes {
        self.headers.bytes_loc(self.entry.name)
    }
    /// The known kind, if any.
    pub fn kind(&self) -> Option<HeaderKind> {
        self.entry.kind
    }
    /// True if this header has the given name (long or compact, any case).
    pub fn is(&self, name: &str) -> bool {
        match (self.entry.kind, HeaderKind::from_name(name.as_bytes())) {
            (Some(a), Some(b)) => a == b,
            _ => self.name().eq_ignore_ascii_case(name.as_bytes()),
        }
    }
    /// An owned copy (zero-copy slices).
    pub fn to_owned(&self) -> Header {
        Header {
            name: self.name_bytes(),
            value: self.value_bytes(),
            kind: self.entry.kind,
        }
    }
}

impl std::fmt::Debug for HeaderRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            String::from_utf8_lossy(self.name()),
            String::from_utf8_lossy(self.value())
        )
    }
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .zip(other.iter())
                .all(|(a, b)| a.name() == b.name() && a.value() == b.value())
    }
}

impl Eq for Headers {}

impl std::hash::Hash for Headers {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_usize(self.len());
        for h in self.iter() {
            h.name().hash(state);
            h.value().hash(state);
        }
    }
}

impl Headers {
    /// An empty list with room for `n` headers.
    pub fn with_capacity(n: usize) -> Self {
        Headers {
            buf: Bytes::new(),
            owned: Vec::new(),
            entries: Vec::with_capacity(n),
        }
    }

    /// A list whose spans point into `buf`.
    pub(crate) fn over(buf: Bytes, n: usize) -> Self {
        Headers {
            buf,
            owned: Vec::new(),
            entries: Vec::with_capacity(n),
        }
    }

    #[inline]
    fn get_loc(&self, l: Loc) -> &[u8] {
        match l {
            Loc::Span(a, b) => self.buf.get(a as usize..b as usize).unwrap_or_default(),
            Loc::Own(i) => self.owned.get(i as usize).map_or(&[][..], |b| &b[..]),
        }
    }

    fn bytes_loc(&self, l: Loc) -> Bytes {
        match l {
            Loc::Span(a, b) if (b as usize) <= self.buf.len() && a <= b => {
                self.buf.slice(a as usize..b as usize)
            }
            Loc::Span(..) => Bytes::new(),
            Loc::Own(i) => self.owned.get(i as usize).cloned().unwrap_or_default(),
        }
    }

    fn own(&mut self, b: Bytes) -> Loc {
        self.owned.push(b);
        Loc::Own((self.owned.len() - 1) as u32)
    }

    /// Appends a header whose name and value are ranges of the buffer (parser, the
    /// common case: the value was not folded).
    #[inline]
    pub(crate) fn push_plain(
        &mut self,
        name: (usize, usize),
        value: (usize, usize),
        kind: Option<HeaderKind>,
    ) {
        self.entries.push(Entry {
            name: Loc::Span(name.0 as u32, name.1 as u32),
            value: Loc::Span(value.0 as u32, value.1 as u32),
            kind,
        });
    }

    /// Appends a header whose name and value are ranges of the buffer (parser).
    #[inline]
    pub(crate) fn push_span(
        &mut self,
        name: (usize, usize),
        value: Loc2,
        kind: Option<HeaderKind>,
    ) {
        let value = match value {
            Loc2::Span(a, b) => Loc::Span(a as u32, b as u32),
            Loc2::Own(b) => self.own(b),
        };
        self.entries.push(Entry {
            name: Loc::Span(name.0 as u32, name.1 as u32),
            value,
            kind,
        });
    }

    /// All headers in order.
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = HeaderRef<'_>> + '_ {
        self.entries.iter().map(move |e| HeaderRef {
            headers: self,
            entry: *e,
        })
    }

    /// The known kind of every header line, in order.
    #[inline]
    pub(crate) fn kinds(&self) -> impl Iterator<Item = Option<HeaderKind>> + '_ {
        self.entries.iter().map(|e| e.kind)
    }

    /// Number of header lines.
    #[inline]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends a header.
    pub fn push(&mut self, h: Header) {
        let kind = h.kind;
        let name = self.own(h.name);
        let value = self.own(h.value);
        self.entries.push(Entry { name, value, kind });
    }

    /// Appends every header of `kind` in `src`, in order: the same lines as
    /// pushing each one's [`HeaderRef::to_owned`], but zero-copy and without a
    /// reference count per line when `self` holds no line of another message (a
    /// response being built from its request): `self` then shares `src`'s buffer.
    pub fn extend_from(&mut self, src: &Headers, kind: HeaderKind) {
        let same = self.buf.as_ptr() == src.buf.as_ptr() && self.buf.len() == src.buf.len();
        let share = same
            || !self
                .entries
                .iter()
                .any(|e| matches!(e.name, Loc::Span(..)) || matches!(e.value, Loc::Span(..)));
        if !share {
            for h in src.get_all(kind) {
                self.push(h.to_owned());
            }
            return;
        }
        if !same {
            self.buf = src.buf.clone();
        }
        for e in src.entries.iter().filter(|e| e.kind == Some(kind)) {
            let name = self.rebase(src, e.name);
            let value = self.rebase(src, e.value);
            self.entries.push(Entry {
                name,
                value,
                kind: e.kind,
            });
        }
    }

    /// `l`, a location in `src`, as a location in `self` (which shares `src`'s
    /// buffer).
    fn rebase(&mut self, src: &Headers, l: Loc) -> Loc {
        match l {
            Loc::Span(..) => l,
            Loc::Own(i) => self.own(src.owned.get(i as usize).cloned().unwrap_or_default()),
        }
    }

    /// Removes every header of this kind; returns how many were removed.
    pub fn remove(&mut self, kind: HeaderKind) -> usize {
        let before = self.entries.len();
        self.entries.retain(|h| h.kind != Some(kind));
        before - self.entries.len()
    }

    /// The first header of this kind.
    #[inline]
    pub fn get(&self, kind: HeaderKind) -> Option<HeaderRef<'_>> {
        self.entries
            .iter()
            .find(|h| h.kind == Some(kind))
            .map(|e| HeaderRef {
                headers: self,
                entry: *e,
            })
    }

    /// The first header of this kind at or after entry `from`, with its index.
    #[inline]
    pub(crate) fn find_from(
        &self,
        kind: HeaderKind,
        from: usize,
    ) -> Option<(usize, HeaderRef<'_>)> {
        let rest = self.entries.get(from..)?;
        let p = rest.iter().position(|h| h.kind == Some(kind))?;
        Some((
            from + p,
            HeaderRef {
                headers: self,
                entry: rest[p],
            },
        ))
    }

    /// Every header of this kind, in order.
    #[inline]
    pub fn get_all(&self, kind: HeaderKind) -> impl Iterator<Item = HeaderRef<'_>> + '_ {
        self.iter().filter(move |h| h.entry.kind == Some(kind))
    }

    /// How many header lines of this kind.
    pub fn count(&self, kind: HeaderKind) -> usize {
        self.entries.iter().filter(|h| h.kind == Some(kind)).count()
    }

    /// Every header with this name (known names match in every form; others
    /// ignoring ASCII case).
    pub fn get_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = HeaderRef<'a>> + 'a {
        let kind = HeaderKind::from_name(name.as_bytes());
        self.iter().filter(move |h| match kind {
            Some(k) => h.entry.kind == Some(k),
            None => h.entry.kind.is_none() && h.name().eq_ignore_ascii_case(name.as_bytes()),
        })
    }

    /// Bytes needed by [`Headers::encode`].
    pub fn encoded_len(&self) -> usize {
        self.iter()
            .map(|h| h.name().len() + h.value().len() + 4)
            .sum()
    }

    /// Writes every header line as `name: value CRLF`. A line held in the buffer
    /// exactly as it is written (as most received lines are) is copied from
    /// there, and consecutive such lines in one copy.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let buf = &self.buf[..];
        // A pending range of `buf` to copy verbatim.
        let mut run: Option<(usize, usize)> = None;
        for e in &self.entries {
            if let (Loc::Span(n0, n1), Loc::Span(v0, v1)) = (e.name, e.value) {
                let (n0, n1, v0, v1) = (n0 as usize, n1 as usize, v0 as usize, v1 as usize);
                if n0 <= n1
                    && v0 == n1 + 2
                    && v0 <= v1
                    && buf.get(n1) == Some(&b':')
                    && buf.get(n1 + 1) == Some(&b' ')
                    && buf.get(v1) == Some(&b'\r')
                    && buf.get(v1 + 1) == Some(&b'\n')
                {
                    let end = v1 + 2;
                    run = match run {
                        Some((a, b)) if b == n0 => Some((a, end)),
                        Some((a, b)) => {
                            out.extend_from_slice(&buf[a..b]);
                            Some((n0, end))
                        }
                        None => Some((n0, end)),
                    };
                    continue;
                }
            }
            if let Some((a, b)) = run.take() {
                out.extend_from_slice(&buf[a..b]);
            }
            out.extend_from_slice(self.get_loc(e.name));
            out.extend_from_slice(b": ");
            out.extend_from_slice(self.get_loc(e.value));
            out.extend_from_slice(b"\r\n");
        }
        if let Some((a, b)) = run {
            out.extend_from_slice(&buf[a..b]);
        }
    }
}

/// A value location handed to [`Headers::push_span`] by the parser.
pub(crate) enum Loc2 {
    Span(usize, usize),
    Own(Bytes),
}

/// Splits a comma-separated header value into its elements, ignoring commas inside
/// quoted strings and `<…>`. Each element is trimmed; an empty element is an error.
pub(crate) fn split_list<'v>(
    value: &'v [u8],
    mut f: impl FnMut(&'v [u8]) -> Result<(), ValueError>,
) -> Result<(), ValueError> {
    let mut emit = |el: &'v [u8]| {
        let el = chars::trim_ws(el);
        if el.is_empty() {
            return Err(ValueError::new("empty list element"));
        }
        f(el)
    };
    let mut start = 0;
    let mut i = 0;
    // Jump from one special character to the next: `,` splits, `"` and `<` open
    // spans in which commas do not count.
    while let Some(p) = memchr::memchr3(b',', b'"', b'<', &value[i..]) {
        let at = i + p;
        match value[at] {
            b',' => {
                emit(&value[start..at])?;
                start = at + 1;
                i = at + 1;
            }
            b'"' => {
                let mut k = at + 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &value[k..]) {
                        Some(q) if value[k + q] == b'\\' => k += q + 2,
                        Some(q) => {
                            k += q + 1;
                            break;
                        }
                        None => {
                            k = value.len();
                            break;
                        }
                    }
                    if k >= value.len() {
                        break;
                    }
                }
                i = k.min(value.len());
            }
            _ => {
                i = memchr::memchr(b'>', &value[at..]).map_or(value.len(), |q| at + q + 1);
            }
        }
        if i >= value.len() {
            break;
        }
    }
    emit(&value[start.min(value.len())..])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slow path of `encode`: every line as `name: value CRLF`.
    fn encode_slow(h: &Headers) -> Vec<u8> {
        let mut out = Vec::new();
        for l in h.iter() {
            out.extend_from_slice(l.name());
            out.extend_from_slice(b": ");
            out.extend_from_slice(l.value());
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn verbatim_lines_encode_as_written() {
        let raw = "INVITE sip:b@c SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
                   Via :SIP/2.0/UDP b\r\nFrom:  <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\n\
                   Subject: folded\r\n  line\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\
                   X-Odd: v \r\nContent-Length: 0\r\n\r\n";
        let m = crate::parse_datagram(Bytes::from(raw), &crate::Limits::default()).expect("parses");
        let h = &m.headers;
        let mut out = Vec::new();
        h.encode(&mut out);
        assert_eq!(out, encode_slow(h));
        let kinds = [
            HeaderKind::Via,
            HeaderKind::From,
            HeaderKind::To,
            HeaderKind::CallId,
            HeaderKind::CSeq,
        ];
        // A list sharing the buffer through `extend_from`, with an owned line.
        let mut r = Headers::with_capacity(4);
        for k in kinds {
            r.extend_from(h, k);
        }
        r.push(Header::known(
            HeaderKind::ContentLength,
            Bytes::from_static(b"0"),
        ));
        r.extend_from(h, HeaderKind::Subject);
        let mut out = Vec::new();
        r.encode(&mut out);
        assert_eq!(out, encode_slow(&r));
        assert_eq!(r.len(), 8);
    }

    #[test]
    fn every_name_and_compact_form_is_recognised() {
        for k in HeaderKind::ALL {
            assert_eq!(HeaderKind::from_name(k.name().as_bytes()), Some(*k));
            assert_eq!(
                HeaderKind::from_name(k.name().to_ascii_uppercase().as_bytes()),
                Some(*k)
            );
            if let Some(c) = k.compact() {
                assert_eq!(HeaderKind::from_name(&[c]), Some(*k));
                assert_eq!(HeaderKind::from_name(&[c.to_ascii_uppercase()]), Some(*k));
            }
        }
        assert_eq!(HeaderKind::from_name(b"X-Unknown"), None);
        assert_eq!(HeaderKind::from_name(b"q"), None);
        assert_eq!(HeaderKind::from_name(b""), None);
    }

    #[test]
    fn header_new_checks() {
        assert!(Header::new("X-A", "v").is_ok());
        assert!(Header::new("X A", "v").is_err());
        assert!(Header::new("X", "a\r\nb").is_err());
        assert!(Header::new("X", " a").is_err());
        let mut h = Headers::default();
        h.push(Header::new("i", "abc").unwrap());
        h.push(Header::new("X-Foo", "1").unwrap());
        assert_eq!(h.get(HeaderKind::CallId).unwrap().value(), b"abc");
        assert!(h.get(HeaderKind::CallId).unwrap().is("Call-ID"));
        assert_eq!(h.get_named("x-foo").count(), 1);
        assert_eq!(h.remove(HeaderKind::CallId), 1);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn split_respects_quotes_and_brackets() {
        let mut out = Vec::new();
        split_list(br#""a,b" <sip:x;p=1,2>, c"#, |e| {
            out.push(e.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(out, vec![br#""a,b" <sip:x;p=1,2>"#.to_vec(), b"c".to_vec()]);
        assert!(split_list(b"a,,b", |_| Ok(())).is_err());
        // Unterminated quote or bracket, trailing backslash: one element, no panic.
        for v in [&b"\"a,\\"[..], b"\"a\\", b"<a,b", b"x,\"", b"\"\\\"", b"<"] {
            let mut n = 0;
            split_list(v, |_| {
                n += 1;
                Ok(())
            })
            .unwrap();
            assert!(n <= 2, "{v:?}");
        }
        assert!(split_list(b"a,", |_| Ok(())).is_err());
    }
}
