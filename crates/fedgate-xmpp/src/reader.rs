//! The incremental XML stream reader.
//!
//! Bytes go in with [`StreamReader::feed`] in chunks of any size, split anywhere (inside
//! a tag, an entity reference or a UTF-8 sequence). [`StreamReader::poll_event`] returns
//! the next [`Event`]: the stream header, one complete top-level element, or the end of
//! the stream. The reader only ever keeps the unit of markup it is in the middle of
//! (a tag, at most a few bytes of text) plus the tree of the stanza being built, so its
//! memory is bounded by [`Limits::max_stanza_bytes`].
//!
//! Tags are tokenized with `xmlparser`; everything `xmlparser` leaves to its caller is
//! done here: nesting, namespaces (`xmlns`, `xmlns:p`, the `xml` prefix), duplicate
//! attributes, entity and character references, line-end and attribute-value
//! normalisation, UTF-8 and XML character checks, and the restricted XML of
//! RFC 6120 §11.1.

use std::time::Instant;

use xmlparser::{Stream, Token, Tokenizer};

use crate::error::ReadError;
use crate::limits::{LimitKind, Limits};
use crate::ns;
use crate::tree::{Attr, Element, Node, Span};

/// Which content namespace the stream must declare as default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// `jabber:server` (s2s).
    Server,
    /// `jabber:client` (c2s).
    Client,
}

impl StreamKind {
    /// The content namespace.
    pub fn content_ns(self) -> &'static str {
        match self {
            StreamKind::Server => ns::SERVER,
            StreamKind::Client => ns::CLIENT,
        }
    }
}

/// Attributes of a received stream header (RFC 6120 §4.7).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamHeader {
    /// `from`, unvalidated.
    pub from: Option<String>,
    /// `to`, unvalidated.
    pub to: Option<String>,
    /// `id`.
    pub id: Option<String>,
    /// `version`; `None` for pre-1.0 peers.
    pub version: Option<String>,
    /// `xml:lang`.
    pub lang: Option<String>,
    /// The header declared `xmlns:db='jabber:server:dialback'`.
    pub dialback: bool,
}

impl StreamHeader {
    /// `version` is 1.0 or later (RFC 6120 §4.7.5: major version ≥ 1).
    pub fn is_version_1(&self) -> bool {
        self.version
            .as_deref()
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse::<u32>().ok())
            .is_some_and(|m| m >= 1)
    }
}

/// What the reader found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The stream header was read.
    StreamOpen(StreamHeader),
    /// A complete top-level element: a stanza (`message`, `presence`, `iq`) or a nonza
    /// (`stream:features`, `db:result`, `starttls`, `stream:error`, …).
    Element(Element),
    /// `</stream:stream>` was read. Bytes after it are ignored.
    StreamClose,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Start,
    InStream,
    PendingClose,
    Closed,
    Failed(ReadError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    StartTag,
    EndTag,
    Decl,
    Cdata,
}

#[derive(Debug, Clone, Copy)]
struct AttrTok {
    prefix: (usize, usize),
    local: (usize, usize),
    value: (usize, usize),
}

#[derive(Debug, Clone, Copy)]
struct Open {
    node: usize,
    prefix: Span,
    name: Span,
    default_ns: Span,
    bindings_len: usize,
}

/// A `start..end` byte range inside a unit.
type ByteRange = (usize, usize);

/// Longest entity or character reference we wait for (`&#x10FFFF;` is 10 bytes).
const MAX_REF: usize = 12;

/// Buffer capacity a reader keeps once everything in it is consumed (more is released).
const KEEP_CAPACITY: usize = 32 * 1024;

/// Incremental, namespace-aware reader of one XML stream (see the module docs).
///
/// ```
/// use fedgate_xmpp::{Event, Limits, StreamKind, StreamReader};
/// use std::time::Instant;
///
/// let mut r = StreamReader::new(StreamKind::Server, Limits::default(), Instant::now());
/// r.set_authenticated();
/// r.feed(b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='b.test' version='1.0'><message to='x@b.test'><body>a &amp; b</bo");
/// assert!(matches!(r.poll_event(), Ok(Some(Event::StreamOpen(h))) if h.to.as_deref() == Some("b.test")));
/// assert_eq!(r.poll_event(), Ok(None)); // the message is not complete yet
/// r.feed(b"dy></message>");
/// let Ok(Some(Event::Element(m))) = r.poll_event() else { panic!() };
/// assert_eq!(m.get_child("body", "jabber:server").unwrap().text(), "a & b");
/// ```
#[derive(Debug)]
pub struct StreamReader {
    limits: Limits,
    content_ns: &'static str,
    /// Received text not yet consumed; validated UTF-8.
    buf: String,
    pos: usize,
    /// The first bytes of a UTF-8 sequence split across chunks.
    carry: [u8; 4],
    carry_len: usize,
    /// Invalid UTF-8 follows `buf`: fail once `buf` is consumed.
    bad_utf8: Option<u64>,
    /// Stream offset of `buf[0]`.
    offset: u64,
    state: State,
    /// Resume point (relative to the unit start) of the scan for the end of an
    /// incomplete unit, and the quote we are inside.
    scan_from: usize,
    scan_quote: u8,
    stream_prefix: String,
    stream_bindings: Vec<(String, String)>,
    stream_default_ns: String,
    tree: Option<Element>,
    open: Vec<Open>,
    bindings: Vec<(Span, Span)>,
    stanza_start: u64,
    authenticated: bool,
    deadline: Option<Instant>,
    scratch: Vec<AttrTok>,
    /// Stream-level namespaces already copied into the current tree.
    ns_cache: Vec<(usize, Span)>,
    /// Elements in the current stanza.
    elements: usize,
    cap_hint: (usize, usize, usize),
}

impl StreamReader {
    /// A reader for a new connection; `now` starts the unauthenticated-lifetime clock.
    pub fn new(kind: StreamKind, limits: Limits, now: Instant) -> Self {
        let deadline = now.checked_add(limits.unauthenticated_lifetime);
        StreamReader {
            limits,
            content_ns: kind.content_ns(),
            buf: String::new(),
            pos: 0,
            carry: [0; 4],
            carry_len: 0,
            bad_utf8: None,
            offset: 0,
            state: State::Start,
            scan_from: 0,
            scan_quote: 0,
            stream_prefix: String::new(),
            stream_bindings: Vec::new(),
            stream_default_ns: String::new(),
            tree: None,
            open: Vec::new(),
            bindings: Vec::new(),
            stanza_start: 0,
            authenticated: false,
            deadline,
            scratch: Vec::new(),
            ns_cache: Vec::new(),
            elements: 0,
            cap_hint: (256, 8, 8),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The stream is authenticated: the full stanza size applies and the lifetime
    /// deadline is cleared.
    pub fn set_authenticated(&mut self) {
        self.authenticated = true;
        self.deadline = None;
    }

    /// When the driver must call [`StreamReader::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Failed(_) | State::Closed => None,
            _ => self.deadline,
        }
    }

    /// Time has passed; past the unauthenticated deadline the reader fails with
    /// [`LimitKind::UnauthenticatedLifetime`] (`<policy-violation/>`).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(d) = self.deadline
            && now >= d
            && !matches!(self.state, State::Failed(_) | State::Closed)
        {
            tracing::debug!("unauthenticated stream lifetime exceeded");
            self.state = State::Failed(ReadError::Limit(LimitKind::UnauthenticatedLifetime));
        }
    }

    /// Restarts the stream (RFC 6120 §4.3.3, after STARTTLS or SASL success): a new
    /// header is expected. Buffered bytes are discarded and their count returned; bytes
    /// pipelined after `<starttls/>` must not be trusted (plaintext injection), so a
    /// caller may treat a non-zero count as an error.
    pub fn restart(&mut self) -> usize {
        let dropped = self.buffered();
        self.buf.clear();
        self.carry_len = 0;
        self.bad_utf8 = None;
        self.pos = 0;
        self.offset = 0;
        if !matches!(self.state, State::Failed(_)) {
            self.state = State::Start;
        }
        self.scan_from = 0;
        self.scan_quote = 0;
        self.stream_bindings.clear();
        self.tree = None;
        self.open.clear();
        self.bindings.clear();
        self.stanza_start = 0;
        dropped
    }

    /// Gives back the memory kept between stanzas (the read buffer and the scratch
    /// vectors reused for each stanza) when no stanza is in progress and nothing is
    /// buffered; otherwise does nothing. For drivers of connections that are mostly
    /// idle (a client's stream): the next stanza allocates again.
    pub fn release_buffers(&mut self) {
        if self.pos < self.buf.len() || self.carry_len > 0 || self.in_stanza() {
            return;
        }
        self.offset += self.buf.len() as u64;
        self.buf = String::new();
        self.pos = 0;
        self.scratch = Vec::new();
        self.ns_cache = Vec::new();
        self.bindings = Vec::new();
        self.open = Vec::new();
    }

    /// Bytes buffered but not yet consumed (always bounded by the stanza limit once
    /// [`poll_event`](Self::poll_event) has returned `Ok(None)`).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos + self.carry_len
    }

    /// The error the reader failed with, if it has.
    pub fn error(&self) -> Option<&ReadError> {
        match &self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The stream has ended (`</stream:stream>` read).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Hands bytes to the reader. Call [`poll_event`](Self::poll_event) until it
    /// returns `Ok(None)` before feeding more: only then is the buffer bounded.
    pub fn feed(&mut self, data: &[u8]) {
        if matches!(self.state, State::Failed(_) | State::Closed) {
            return;
        }
        if self.pos == self.buf.len() {
            self.offset += self.buf.len() as u64;
            self.buf.clear();
            self.pos = 0;
            // Everything was consumed: the room a large stanza needed is given back
            // rather than kept for the connection's lifetime.
            if self.buf.capacity() > KEEP_CAPACITY && data.len() <= KEEP_CAPACITY {
                self.buf = String::new();
            }
        } else if self.pos > 0 {
            self.offset += self.pos as u64;
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.bad_utf8.is_some() {
            return;
        }
        let mut data = data;
        if self.carry_len > 0 {
            let need = utf8_len(self.carry[0]);
            let take = (need - self.carry_len).min(data.len());
            self.carry[self.carry_len..self.carry_len + take].copy_from_slice(&data[..take]);
            self.carry_len += take;
            data = &data[take..];
            // Judge what has arrived of the sequence now: a byte that cannot continue it
            // is an error at once, whether or not the rest has come yet.
            match std::str::from_utf8(&self.carry[..self.carry_len]) {
                Ok(c) => {
                    self.buf.push_str(c);
                    self.carry_len = 0;
                }
                Err(e) if e.error_len().is_none() && self.carry_len < need => return,
                Err(_) => {
                    self.carry_len = 0;
                    self.bad_utf8 = Some(self.offset + self.buf.len() as u64);
                    return;
                }
            }
        }
        match std::str::from_utf8(data) {
            Ok(t) => self.buf.push_str(t),
            Err(e) => {
                let (good, rest) = data.split_at(e.valid_up_to());
                self.buf
                    .push_str(std::str::from_utf8(good).unwrap_or_default());
                if e.error_len().is_some() || rest.len() > 3 {
                    self.bad_utf8 = Some(self.offset + self.buf.len() as u64);
                } else {
                    self.carry[..rest.len()].copy_from_slice(rest);
                    self.carry_len = rest.len();
                }
            }
        }
    }

    /// The next event, `Ok(None)` when more bytes are needed. Once an error has been
    /// returned the reader is failed and returns it again.
    pub fn poll_event(&mut self) -> Result<Option<Event>, ReadError> {
        match &self.state {
            State::Failed(e) => return Err(e.clone()),
            State::Closed => return Ok(None),
            State::PendingClose => {
                self.state = State::Closed;
                return Ok(Some(Event::StreamClose));
            }
            _ => {}
        }
        let buf = std::mem::take(&mut self.buf);
        let r = self.step(&buf);
        self.buf = buf;
        if let Err(e) = &r {
            tracing::debug!(error = %e, "xml stream failed");
            self.state = State::Failed(e.clone());
            self.tree = None;
        }
        r
    }

    #[inline]
    fn in_stanza(&self) -> bool {
        !self.open.is_empty()
    }

    fn stanza_limit(&self) -> usize {
        if self.authenticated {
            self.limits.max_stanza_bytes
        } else {
            self.limits.max_stanza_bytes_unauthenticated
        }
    }

    /// Checks that the stanza (or header) being read stays within the size limit if it
    /// extends to stream offset `end`; `unit_start` is where the current unit began.
    #[inline]
    fn check_size(&self, unit_start: u64, end: u64) -> Result<(), ReadError> {
        let start = if self.in_stanza() || self.state == State::Start {
            self.stanza_start
        } else {
            unit_start
        };
        if end - start > self.stanza_limit() as u64 {
            return Err(ReadError::Limit(LimitKind::StanzaSize));
        }
        Ok(())
    }

    /// `Ok(None)`, or the UTF-8 error waiting behind the buffered text.
    fn need_more(&self) -> Result<Option<Event>, ReadError> {
        match self.bad_utf8 {
            Some(at) if self.state != State::Closed => Err(nwf("invalid UTF-8", at)),
            _ => Ok(None),
        }
    }

    fn step(&mut self, buf: &str) -> Result<Option<Event>, ReadError> {
        loop {
            if self.state == State::Closed || self.pos >= buf.len() {
                return self.need_more();
            }
            let rest_str = &buf[self.pos..];
            let rest = rest_str.as_bytes();
            let unit_start = self.offset + self.pos as u64;
            if rest[0] == b'<' {
                let Some(kind) = self.classify(rest, unit_start)? else {
                    self.check_size(unit_start, unit_start + rest.len() as u64)?;
                    return self.need_more();
                };
                if kind == Unit::StartTag && self.scan_from == 0 {
                    // Fast path: a complete, valid tag is tokenized in one pass; anything
                    // else is delimited first (resumably) and then judged.
                    if let Some((len, p, l, e)) =
                        self.tokenize_start(rest_str, unit_start, false)?
                    {
                        if !self.in_stanza() && self.state == State::InStream {
                            self.stanza_start = unit_start;
                        }
                        self.check_size(unit_start, unit_start + len as u64)?;
                        self.pos += len;
                        let ev = self.start_tag(&rest_str[..len], (p, l, e), unit_start)?;
                        if ev.is_some() {
                            return Ok(ev);
                        }
                        continue;
                    }
                }
                let Some(len) = self.unit_end(kind, rest) else {
                    self.check_size(unit_start, unit_start + rest.len() as u64)?;
                    return self.need_more();
                };
                self.scan_from = 0;
                self.scan_quote = 0;
                if kind == Unit::StartTag && !self.in_stanza() && self.state == State::InStream {
                    self.stanza_start = unit_start;
                }
                self.check_size(unit_start, unit_start + len as u64)?;
                self.pos += len;
                if kind == Unit::EndTag {
                    // End tags are compared byte for byte with the open element's
                    // qualified name, which was validated when it was opened.
                    if let Some(ev) = self.end_tag(&rest[..len], unit_start)? {
                        return Ok(Some(ev));
                    }
                    continue;
                }
                let unit = &rest_str[..len];
                let ev = match kind {
                    Unit::StartTag => {
                        let Some((_, p, l, e)) = self.tokenize_start(unit, unit_start, true)?
                        else {
                            return Err(nwf("bad start tag", unit_start));
                        };
                        self.start_tag(unit, (p, l, e), unit_start)?
                    }
                    Unit::EndTag => None,
                    Unit::Decl => {
                        self.declaration(unit, unit_start)?;
                        None
                    }
                    Unit::Cdata => {
                        self.cdata(&unit[9..len - 3], unit_start)?;
                        None
                    }
                };
                if ev.is_some() {
                    return Ok(ev);
                }
            } else {
                let end = memchr::memchr(b'<', rest).unwrap_or(rest.len());
                let take = if end < rest.len() {
                    end
                } else {
                    safe_text_prefix(rest, unit_start)?
                };
                if take == 0 {
                    self.check_size(unit_start, unit_start + rest.len() as u64)?;
                    return self.need_more();
                }
                let text = &rest_str[..take];
                self.check_size(unit_start, unit_start + take as u64)?;
                self.pos += take;
                self.text(text, unit_start)?;
            }
        }
    }

    /// What kind of markup starts at `rest[0] == '<'`; `None` if more bytes are needed.
    fn classify(&self, rest: &[u8], at: u64) -> Result<Option<Unit>, ReadError> {
        let Some(&c) = rest.get(1) else {
            return Ok(None);
        };
        match c {
            b'/' => Ok(Some(Unit::EndTag)),
            b'?' => {
                if rest.len() < 6 {
                    return Ok(None);
                }
                if self.state == State::Start
                    && &rest[2..5] == b"xml"
                    && matches!(rest[5], b' ' | b'\t' | b'\r' | b'\n')
                {
                    Ok(Some(Unit::Decl))
                } else {
                    Err(ReadError::RestrictedXml {
                        what: "processing instruction",
                        offset: at,
                    })
                }
            }
            b'!' => {
                const CDATA: &[u8] = b"<![CDATA[";
                const COMMENT: &[u8] = b"<!--";
                let n = rest.len().min(CDATA.len());
                if rest[..n] == CDATA[..n] {
                    if n < CDATA.len() {
                        return Ok(None);
                    }
                    if !self.in_stanza() {
                        return Err(ReadError::BadFormat("CDATA section outside a stanza"));
                    }
                    return Ok(Some(Unit::Cdata));
                }
                let n = rest.len().min(COMMENT.len());
                if rest[..n] == COMMENT[..n] {
                    if n < COMMENT.len() {
                        return Ok(None);
                    }
                    return Err(ReadError::RestrictedXml {
                        what: "comment",
                        offset: at,
                    });
                }
                let what = if rest.starts_with(b"<!DOCTYPE") || b"<!DOCTYPE".starts_with(rest) {
                    "document type declaration"
                } else if rest.starts_with(b"<!ENTITY") {
                    "entity declaration"
                } else {
                    "markup declaration"
                };
                Err(ReadError::RestrictedXml { what, offset: at })
            }
            _ => Ok(Some(Unit::StartTag)),
        }
    }

    /// Length of the unit if it is complete in `rest`.
    fn unit_end(&mut self, kind: Unit, rest: &[u8]) -> Option<usize> {
        match kind {
            Unit::StartTag => {
                let mut i = self.scan_from.max(1);
                let mut q = self.scan_quote;
                loop {
                    if q == 0 {
                        match memchr::memchr3(b'>', b'\'', b'"', &rest[i..]) {
                            None => {
                                self.scan_from = rest.len();
                                self.scan_quote = 0;
                                return None;
                            }
                            Some(k) => {
                                let c = rest[i + k];
                                i += k + 1;
                                if c == b'>' {
                                    return Some(i);
                                }
                                q = c;
                            }
                        }
                    } else {
                        match memchr::memchr(q, &rest[i..]) {
                            None => {
                                self.scan_from = rest.len();
                                self.scan_quote = q;
                                return None;
                            }
                            Some(k) => {
                                i += k + 1;
                                q = 0;
                            }
                        }
                    }
                }
            }
            Unit::EndTag => {
                let i = self.scan_from.max(2);
                match find_byte(b'>', &rest[i..]) {
                    Some(k) => Some(i + k + 1),
                    None => {
                        self.scan_from = rest.len();
                        None
                    }
                }
            }
            Unit::Decl | Unit::Cdata => {
                let (min, term): (usize, &[u8]) = if kind == Unit::Decl {
                    (2, b"?>")
                } else {
                    (9, b"]]>")
                };
                let from = self.scan_from.max(min);
                match memchr::memmem::find(&rest[from..], term) {
                    Some(k) => Some(from + k + term.len()),
                    None => {
                        self.scan_from = rest.len().saturating_sub(term.len() - 1).max(min);
                        None
                    }
                }
            }
        }
    }

    fn declaration(&mut self, unit: &str, at: u64) -> Result<(), ReadError> {
        match Tokenizer::from(unit).next() {
            Some(Ok(Token::Declaration { encoding, .. })) => {
                if let Some(e) = encoding
                    && !e.as_str().eq_ignore_ascii_case("utf-8")
                {
                    return Err(ReadError::UnsupportedEncoding);
                }
                Ok(())
            }
            _ => Err(nwf("bad XML declaration", at)),
        }
    }

    /// Tokenizes the start tag at the beginning of `text` into `self.scratch`.
    ///
    /// With `whole`, `text` is exactly the tag and any problem is an error. Without,
    /// `text` is the rest of the buffer and any problem (incomplete or bad tag, too many
    /// attributes) gives `Ok(None)`: the caller then delimits the tag and retries with
    /// `whole` for the definitive answer. Returns (length, prefix, local, empty).
    fn tokenize_start(
        &mut self,
        unit: &str,
        at: u64,
        whole: bool,
    ) -> Result<Option<(usize, ByteRange, ByteRange, bool)>, ReadError> {
        let bad = |e: ReadError| if whole { Err(e) } else { Ok(None) };
        // Names, `=` and quotes with xmlparser's scanner; attribute values are found
        // with memchr and checked character by character in `decode`.
        let b = unit.as_bytes();
        let mut st = Stream::from_substr(unit, 0..unit.len());
        st.advance(1);
        let Ok((prefix, local)) = st.consume_qname() else {
            return bad(nwf("bad start tag", at));
        };
        let (prefix, local) = (range(prefix), range(local));
        self.scratch.clear();
        let (empty, len) = loop {
            let spaced = st.starts_with_space();
            st.skip_spaces();
            match st.curr_byte() {
                Ok(b'>') => {
                    st.advance(1);
                    break (false, st.pos());
                }
                Ok(b'/') => {
                    st.advance(1);
                    if st.consume_byte(b'>').is_err() {
                        return bad(nwf("bad start tag", at));
                    }
                    break (true, st.pos());
                }
                Ok(_) if spaced => {
                    let Ok((p, l)) = st.consume_qname() else {
                        return bad(nwf("bad attribute", at));
                    };
                    let (Ok(()), Ok(q)) = (st.consume_eq(), st.consume_quote()) else {
                        return bad(nwf("bad attribute", at));
                    };
                    let vstart = st.pos();
                    let Some(vlen) = find_byte(q, &b[vstart..]) else {
                        return bad(nwf("unterminated attribute value", at));
                    };
                    st.advance(vlen + 1);
                    if self.scratch.len() >= self.limits.max_attributes {
                        return bad(ReadError::Limit(LimitKind::Attributes));
                    }
                    self.scratch.push(AttrTok {
                        prefix: range(p),
                        local: range(l),
                        value: (vstart, vstart + vlen),
                    });
                }
                _ => return bad(nwf("bad start tag", at)),
            }
        };
        if whole && len != unit.len() {
            return Err(nwf("bad start tag", at));
        }
        // Duplicate attributes by qualified name.
        for (i, a) in self.scratch.iter().enumerate() {
            let qa = &unit.as_bytes()[qstart(a)..a.local.1];
            for b in &self.scratch[..i] {
                if bytes_eq(&unit.as_bytes()[qstart(b)..b.local.1], qa) {
                    return bad(nwf("duplicate attribute", at));
                }
            }
        }
        Ok(Some((len, prefix, local, empty)))
    }

    /// Handles a start tag already tokenized into `self.scratch`.
    fn start_tag(
        &mut self,
        unit: &str,
        (prefix, local, empty): (ByteRange, ByteRange, bool),
        at: u64,
    ) -> Result<Option<Event>, ReadError> {
        match self.state {
            State::Start => return self.header(unit, prefix, local, empty, at).map(Some),
            State::InStream => {}
            _ => return Ok(None),
        }
        if self.open.len() >= self.limits.max_depth {
            return Err(ReadError::Limit(LimitKind::Depth));
        }
        let top = !self.in_stanza();
        if !top && self.elements >= self.limits.max_elements {
            return Err(ReadError::Limit(LimitKind::Elements));
        }
        self.elements += 1;
        let mut tree = match self.tree.take() {
            Some(t) if !top => t,
            _ => {
                self.bindings.clear();
                self.ns_cache.clear();
                self.elements = 0;
                let (b, n, a) = self.cap_hint;
                Element::with_capacity(b, n, a)
            }
        };
        let r = self.start_element(&mut tree, unit, prefix, local, empty, top, at);
        match r {
            Ok(done) if done => {
                self.note_capacity(&tree);
                Ok(Some(Event::Element(tree)))
            }
            Ok(_) => {
                self.tree = Some(tree);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn note_capacity(&mut self, t: &Element) {
        // Grow at once, shrink slowly: fewer reallocations on a mixed stream.
        let decay = |old: usize, new: usize, min: usize| new.max(old - old / 8).max(min);
        self.cap_hint = (
            decay(self.cap_hint.0, t.buf.len(), 64),
            decay(self.cap_hint.1, t.nodes.len(), 2),
            decay(self.cap_hint.2, t.attrs.len(), 2),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn start_element(
        &mut self,
        tree: &mut Element,
        unit: &str,
        prefix: (usize, usize),
        local: (usize, usize),
        empty: bool,
        top: bool,
        at: u64,
    ) -> Result<bool, ReadError> {
        let name = tree.push_str(&unit[local.0..local.1]);
        let pfx = if prefix.0 == prefix.1 {
            Span::EMPTY
        } else {
            tree.push_str(&unit[prefix.0..prefix.1])
        };
        let bindings_len = self.bindings.len();
        let attrs_at = tree.attrs.len();
        let mut default_ns: Option<Span> = None;
        let mut prefixed_attrs = 0usize;
        for a in &self.scratch {
            let p = &unit[a.prefix.0..a.prefix.1];
            let l = &unit[a.local.0..a.local.1];
            let raw = &unit[a.value.0..a.value.1];
            if p.is_empty() && bytes_eq(l.as_bytes(), b"xmlns") {
                let vs = tree.buf.len();
                decode(&mut tree.buf, raw, true, at)?;
                default_ns = Some(Span {
                    start: vs,
                    end: tree.buf.len(),
                });
                continue;
            }
            let qn = tree.push_str(&unit[qstart(a)..a.local.1]);
            let vs = tree.buf.len();
            decode(&mut tree.buf, raw, true, at)?;
            let value = Span {
                start: vs,
                end: tree.buf.len(),
            };
            if bytes_eq(p.as_bytes(), b"xmlns") {
                check_prefix_decl(l, tree.s(value), at)?;
                self.bindings.push((
                    Span {
                        start: qn.start + 6,
                        end: qn.end,
                    },
                    value,
                ));
            } else if !p.is_empty() {
                prefixed_attrs += 1;
            }
            tree.attrs.push(Attr { name: qn, value });
        }
        let default_ns = match default_ns {
            Some(d) => d,
            None => match self.open.last() {
                Some(o) if !top => o.default_ns,
                _ => tree.push_str(&self.stream_default_ns),
            },
        };
        let ns = if pfx.is_empty() {
            default_ns
        } else {
            let p = &unit[prefix.0..prefix.1];
            self.resolve(tree, p)
                .ok_or_else(|| nwf("unbound element prefix", at))?
        };
        if prefixed_attrs > 0 {
            self.check_prefixed_attrs(tree, attrs_at, at)?;
        }
        let idx = tree.nodes.len();
        let mut node = Node::element(name, pfx, ns, attrs_at);
        node.attrs_end = tree.attrs.len();
        tree.nodes.push(node);
        if let Some(parent) = self.open.last() {
            tree.link(parent.node, idx);
        }
        if empty {
            self.bindings.truncate(bindings_len);
            return Ok(top);
        }
        self.open.push(Open {
            node: idx,
            prefix: pfx,
            name,
            default_ns,
            bindings_len,
        });
        Ok(false)
    }

    /// Resolves a prefix against the stanza's and then the stream's declarations,
    /// copying a stream-level namespace into the tree.
    /// Each stream-level namespace is copied into a stanza's tree at most once.
    fn resolve(&mut self, tree: &mut Element, p: &str) -> Option<Span> {
        for (bp, uri) in self.bindings.iter().rev() {
            if tree.s(*bp) == p {
                return Some(*uri);
            }
        }
        let idx = if p == "xml" {
            usize::MAX
        } else {
            self.stream_bindings.iter().rposition(|(bp, _)| bp == p)?
        };
        if let Some((_, sp)) = self.ns_cache.iter().find(|(i, _)| *i == idx) {
            return Some(*sp);
        }
        let uri = match idx {
            usize::MAX => ns::XML,
            i => self.stream_bindings[i].1.as_str(),
        };
        let sp = tree.push_str(uri);
        self.ns_cache.push((idx, sp));
        Some(sp)
    }

    fn check_prefixed_attrs(
        &mut self,
        tree: &mut Element,
        attrs_at: usize,
        at: u64,
    ) -> Result<(), ReadError> {
        let mut expanded: Vec<(Span, &str)> = Vec::new();
        let names: Vec<(String, String)> = tree.attrs[attrs_at..]
            .iter()
            .filter_map(|a| {
                let q = tree.s(a.name);
                let (p, l) = q.split_once(':')?;
                (p != "xmlns").then(|| (p.to_owned(), l.to_owned()))
            })
            .collect();
        for (p, l) in &names {
            let uri = self
                .resolve(tree, p)
                .ok_or_else(|| nwf("unbound attribute prefix", at))?;
            expanded.push((uri, l));
        }
        for (i, (u, l)) in expanded.iter().enumerate() {
            for (u2, l2) in &expanded[..i] {
                if l == l2 && tree.s(*u) == tree.s(*u2) {
                    return Err(nwf("duplicate attribute", at));
                }
            }
        }
        Ok(())
    }

    fn header(
        &mut self,
        unit: &str,
        prefix: (usize, usize),
        local: (usize, usize),
        empty: bool,
        at: u64,
    ) -> Result<Event, ReadError> {
        let mut h = StreamHeader::default();
        let mut default_ns = None;
        self.stream_bindings.clear();
        for a in &self.scratch {
            let p = &unit[a.prefix.0..a.prefix.1];
            let l = &unit[a.local.0..a.local.1];
            let mut v = String::new();
            decode(&mut v, &unit[a.value.0..a.value.1], true, at)?;
            match (p, l) {
                ("", "xmlns") => default_ns = Some(v),
                ("xmlns", _) => {
                    check_prefix_decl(l, &v, at)?;
                    if l == "db" && v == ns::DIALBACK {
                        h.dialback = true;
                    }
                    self.stream_bindings.push((l.to_owned(), v));
                }
                ("", "from") => h.from = Some(v),
                ("", "to") => h.to = Some(v),
                ("", "id") => h.id = Some(v),
                ("", "version") => h.version = Some(v),
                ("xml", "lang") => h.lang = Some(v),
                _ => {}
            }
        }
        let p = &unit[prefix.0..prefix.1];
        let l = &unit[local.0..local.1];
        let root_ns = if p.is_empty() {
            default_ns.as_deref()
        } else {
            self.stream_bindings
                .iter()
                .rev()
                .find(|(bp, _)| bp == p)
                .map(|(_, u)| u.as_str())
        };
        match root_ns {
            None if !p.is_empty() => return Err(nwf("unbound prefix on stream header", at)),
            Some(ns::STREAM) if l == "stream" => {}
            _ => {
                return Err(ReadError::InvalidNamespace(format!(
                    "stream root {{{}}}{}",
                    root_ns.unwrap_or(""),
                    l
                )));
            }
        }
        if p.is_empty() {
            return Err(ReadError::BadNamespacePrefix(
                "no prefix on the stream element".into(),
            ));
        }
        match default_ns {
            Some(d) if d == self.content_ns => self.stream_default_ns = d,
            other => {
                return Err(ReadError::InvalidNamespace(format!(
                    "content namespace {:?}, expected {}",
                    other.unwrap_or_default(),
                    self.content_ns
                )));
            }
        }
        self.stream_prefix = p.to_owned();
        self.state = if empty {
            State::PendingClose
        } else {
            State::InStream
        };
        Ok(Event::StreamOpen(h))
    }

    fn end_tag(&mut self, unit: &[u8], at: u64) -> Result<Option<Event>, ReadError> {
        // `</` QName S? `>`
        let mut name = &unit[2..unit.len() - 1];
        while let [rest @ .., b' ' | b'\t' | b'\r' | b'\n'] = name {
            name = rest;
        }
        if self.state == State::Start {
            return Err(nwf("end tag before the stream header", at));
        }
        let Some(open) = self.open.pop() else {
            let p = self.stream_prefix.as_bytes();
            if name.len() == p.len() + 7
                && bytes_eq(&name[..p.len()], p)
                && bytes_eq(&name[p.len()..], b":stream")
            {
                self.state = State::Closed;
                return Ok(Some(Event::StreamClose));
            }
            return Err(nwf("mismatched end tag", at));
        };
        let Some(tree) = self.tree.as_ref() else {
            return Err(nwf("end tag outside an element", at));
        };
        let local = tree.s(open.name).as_bytes();
        let matches = if open.prefix.is_empty() {
            bytes_eq(name, local)
        } else {
            let p = tree.s(open.prefix).as_bytes();
            name.len() == p.len() + 1 + local.len()
                && bytes_eq(&name[..p.len()], p)
                && name[p.len()] == b':'
                && bytes_eq(&name[p.len() + 1..], local)
        };
        if !matches {
            return Err(nwf("mismatched end tag", at));
        }
        self.bindings.truncate(open.bindings_len);
        if self.open.is_empty() {
            let tree = self.tree.take();
            if let Some(t) = &tree {
                self.note_capacity(t);
            }
            return Ok(tree.map(Event::Element));
        }
        Ok(None)
    }

    fn text(&mut self, text: &str, at: u64) -> Result<(), ReadError> {
        if let (Some(o), Some(tree)) = (self.open.last(), self.tree.as_mut()) {
            let start = tree.buf.len();
            decode(&mut tree.buf, text, false, at)?;
            let end = tree.buf.len();
            tree.push_text_node(o.node, Span { start, end });
            return Ok(());
        }
        if text
            .bytes()
            .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            return Ok(());
        }
        if self.state == State::Start {
            // A byte order mark may open the stream.
            if at == 0
                && let Some(rest) = text.strip_prefix('\u{FEFF}')
                && rest
                    .bytes()
                    .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            {
                return Ok(());
            }
            // Report the first offending byte, so the offset does not depend on how the
            // text was split into chunks.
            let skip = text
                .bytes()
                .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                .unwrap_or(0);
            return Err(nwf(
                "character data before the stream header",
                at + skip as u64,
            ));
        }
        Err(ReadError::BadFormat("character data between stanzas"))
    }

    fn cdata(&mut self, raw: &str, at: u64) -> Result<(), ReadError> {
        let (Some(o), Some(tree)) = (self.open.last(), self.tree.as_mut()) else {
            return Err(ReadError::BadFormat("CDATA section outside a stanza"));
        };
        let start = tree.buf.len();
        check_and_push_raw(&mut tree.buf, raw, at)?;
        let end = tree.buf.len();
        tree.push_text_node(o.node, Span { start, end });
        Ok(())
    }
}

#[inline]
fn range(s: xmlparser::StrSpan<'_>) -> (usize, usize) {
    let r = s.range();
    (r.start, r.end)
}

#[inline]
fn qstart(a: &AttrTok) -> usize {
    if a.prefix.0 == a.prefix.1 {
        a.local.0
    } else {
        a.prefix.0
    }
}

/// `memchr` for needles that are usually close: a plain loop over the first bytes
/// avoids the set-up cost of the vectorised search.
#[inline]
fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    let head = hay.len().min(32);
    match hay[..head].iter().position(|&c| c == needle) {
        Some(i) => Some(i),
        None if head == hay.len() => None,
        None => memchr::memchr(needle, &hay[head..]).map(|i| i + head),
    }
}

/// Equality for short byte strings without a call to `memcmp`.
#[inline]
fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

#[inline]
fn nwf(reason: &'static str, offset: u64) -> ReadError {
    ReadError::NotWellFormed { reason, offset }
}

fn check_prefix_decl(prefix: &str, uri: &str, at: u64) -> Result<(), ReadError> {
    // Namespaces in XML 1.0 §3: prefixes cannot be undeclared, `xmlns` cannot be
    // declared, `xml` only to its own namespace.
    if uri.is_empty() || prefix == "xmlns" || (prefix == "xml") != (uri == ns::XML) {
        return Err(nwf("bad namespace declaration", at));
    }
    if uri == "http://www.w3.org/2000/xmlns/" {
        return Err(nwf("bad namespace declaration", at));
    }
    Ok(())
}

/// Length of the UTF-8 sequence a lead byte starts (1 for anything else).
fn utf8_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

/// How much of a text run that reaches the end of the buffer can be consumed now:
/// everything except a partial reference and a trailing CR or `]` (which decide
/// `\r\n` folding and the `]]>` check). The buffer only holds whole characters.
fn safe_text_prefix(t: &[u8], at: u64) -> Result<usize, ReadError> {
    let mut end = t.len();
    if let Some(amp) = memchr::memrchr(b'&', t)
        && memchr::memchr(b';', &t[amp..]).is_none()
    {
        if t.len() - amp > MAX_REF {
            return Err(nwf("unterminated reference", at));
        }
        end = amp;
    }
    let mut held = 0;
    while end > 0 && held < 2 && matches!(t[end - 1], b'\r' | b']') {
        end -= 1;
        held += 1;
    }
    Ok(end)
}

// Bytes needing attention while decoding: 1 in text, 2 in attribute values.
static DEC: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = 3;
        i += 1;
    }
    t[b'\t' as usize] = 2;
    t[b'\n' as usize] = 2;
    t[b'\r' as usize] = 3;
    t[b'&' as usize] = 3;
    t[b'>' as usize] = 1;
    t[b'<' as usize] = 2;
    t[0xEF] = 3;
    t
};

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Some byte of `w` is below `n` (n <= 128).
#[inline(always)]
fn has_less(w: u64, n: u8) -> bool {
    w.wrapping_sub(LO * n as u64) & !w & HI != 0
}

/// Some byte of `w` equals `b`.
#[inline(always)]
fn has_byte(w: u64, b: u8) -> bool {
    let v = w ^ (LO * b as u64);
    v.wrapping_sub(LO) & !v & HI != 0
}

/// Decodes character data or an attribute value into `out`: references resolved,
/// line ends normalised, XML characters checked. Eight bytes at a time are skipped
/// while none of them needs attention.
fn decode(out: &mut String, raw: &str, attr: bool, at: u64) -> Result<(), ReadError> {
    let mask = if attr { 2 } else { 1 };
    let b = raw.as_bytes();
    let n = b.len();
    let mut run = 0;
    let mut i = 0;
    let special = |w: u64| {
        has_less(w, 0x20)
            || has_byte(w, b'&')
            || has_byte(w, 0xEF)
            || if attr {
                has_byte(w, b'<')
            } else {
                has_byte(w, b'>')
            }
    };
    loop {
        while i + 8 <= n {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            if special(u64::from_le_bytes(a)) {
                break;
            }
            i += 8;
        }
        if i >= n {
            break;
        }
        if n - i < 8 {
            // The tail, padded with a harmless byte: usually nothing to do.
            let mut a = [b'a'; 8];
            a[..n - i].copy_from_slice(&b[i..]);
            if !special(u64::from_le_bytes(a)) {
                break;
            }
        }
        let end = (i + 8).min(n);
        while i < end {
            let c = b[i];
            if DEC[c as usize] & mask == 0 {
                i += 1;
                continue;
            }
            out.push_str(&raw[run..i]);
            match c {
                b'&' => {
                    let semi = memchr::memchr(b';', &b[i..(i + MAX_REF).min(n)])
                        .ok_or_else(|| nwf("unterminated reference", at))?;
                    let name = &raw[i + 1..i + semi];
                    out.push(reference(name, at)?);
                    i += semi + 1;
                }
                b'\r' => {
                    out.push(if attr { ' ' } else { '\n' });
                    i += if b.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
                }
                b'\t' | b'\n' => {
                    // Only reached for attributes (value normalisation).
                    out.push(' ');
                    i += 1;
                }
                b'<' => return Err(nwf("'<' in an attribute value", at)),
                b'>' => {
                    if i >= 2 && &b[i - 2..i] == b"]]" {
                        return Err(nwf("']]>' in character data", at));
                    }
                    out.push('>');
                    i += 1;
                }
                0xEF => {
                    let seq = &raw[i..i + 3];
                    if seq == "\u{FFFE}" || seq == "\u{FFFF}" {
                        return Err(nwf("non-XML character", at));
                    }
                    out.push_str(seq);
                    i += 3;
                }
                _ => return Err(nwf("non-XML character", at)),
            }
            run = i;
        }
    }
    out.push_str(&raw[run..]);
    Ok(())
}

/// CDATA content: no references, but line ends and characters are still checked.
fn check_and_push_raw(out: &mut String, raw: &str, at: u64) -> Result<(), ReadError> {
    let b = raw.as_bytes();
    let mut run = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c >= 0x20 && c != 0xEF || c == b'\t' || c == b'\n' {
            i += 1;
            continue;
        }
        out.push_str(&raw[run..i]);
        match c {
            b'\r' => {
                out.push('\n');
                i += if b.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
            }
            0xEF => {
                let seq = &raw[i..i + 3];
                if seq == "\u{FFFE}" || seq == "\u{FFFF}" {
                    return Err(nwf("non-XML character", at));
                }
                out.push_str(seq);
                i += 3;
            }
            _ => return Err(nwf("non-XML character", at)),
        }
        run = i;
    }
    out.push_str(&raw[run..]);
    Ok(())
}

fn reference(name: &str, at: u64) -> Result<char, ReadError> {
    let c = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => {
            let code = if let Some(h) = name.strip_prefix("#x") {
                if h.is_empty() || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(nwf("bad character reference", at));
                }
                u32::from_str_radix(h, 16).ok()
            } else if let Some(d) = name.strip_prefix('#') {
                if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(nwf("bad character reference", at));
                }
                d.parse::<u32>().ok()
            } else {
                let mut ch = name.chars();
                let is_name = ch
                    .next()
                    .is_some_and(|c| c.is_alphabetic() || c == '_' || c == ':')
                    && ch.all(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'));
                return Err(if is_name {
                    ReadError::RestrictedXml {
                        what: "entity reference",
                        offset: at,
                    }
                } else {
                    nwf("bad reference", at)
                });
            };
            let c = code
                .and_then(char::from_u32)
                .ok_or_else(|| nwf("bad character reference", at))?;
            if !is_xml_char(c) {
                return Err(nwf("character reference to a non-XML character", at));
            }
            c
        }
    };
    Ok(c)
}

#[inline]
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StreamErrorCondition as C;
    use crate::test_util::HEADER;
    use crate::tree::{ElementBuilder, NodeRef};
    use crate::writer::{Scope, write_element};
    use proptest::prelude::*;
    use std::time::Duration;

    fn reader() -> StreamReader {
        let mut r = StreamReader::new(StreamKind::Server, Limits::default(), Instant::now());
        r.set_authenticated();
        r
    }

    /// Feeds `chunks`, collecting events; stops at the first error.
    fn run(r: &mut StreamReader, chunks: &[&[u8]]) -> (Vec<Event>, Option<ReadError>) {
        let mut evs = Vec::new();
        for c in chunks {
            r.feed(c);
            loop {
                match r.poll_event() {
                    Ok(Some(e)) => evs.push(e),
                    Ok(None) => break,
                    Err(e) => return (evs, Some(e)),
                }
            }
        }
        (evs, None)
    }

    fn run_all(input: &[u8], chunk: usize) -> (Vec<Event>, Option<ReadError>) {
        let chunks: Vec<&[u8]> = input.chunks(chunk.max(1)).collect();
        run(&mut reader(), &chunks)
    }

    fn err_of(input: &str) -> ReadError {
        let (_, e) = run_all(input.as_bytes(), input.len());
        e.unwrap_or_else(|| panic!("no error for {input:?}"))
    }

    fn stanza_err(xml: &str) -> C {
        err_of(&format!("{HEADER}{xml}")).condition()
    }

    const RICH: &str = "<?xml version='1.0' encoding='UTF-8'?>\n<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='a.test' to='b.test' version='1.0' xml:lang='en'>\n \
<db:result from='a.test' to='b.test'>37c69b1cf07a3f67</db:result>\r\n\
<message from='j\u{e9}r\u{f4}me@a.test/\u{1F600}' to=\"bob@b.test\" type='chat' id='m&amp;1'><body>caf\u{e9} &lt;&gt;&amp;&apos;&quot; &#65;&#x1F600; line\r\nend \u{1F600}</body>\
<html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'><p style='a:b'>x<br/>y</p></body></html>\
<x:ext xmlns:x='urn:x' x:a='1' b='t\tab'><![CDATA[<raw> & ]]>text</x:ext></message>\
<presence/>   <iq type='get' id='p1' from='a.test' to='b.test'><ping xmlns='urn:xmpp:ping'/></iq>\
</stream:stream>trailing garbage ignored";

    #[test]
    fn rich_stream_whole() {
        let (evs, err) = run_all(RICH.as_bytes(), RICH.len());
        assert_eq!(err, None);
        assert_eq!(evs.len(), 6, "{evs:?}");
        let Event::StreamOpen(h) = &evs[0] else {
            panic!()
        };
        assert_eq!(h.from.as_deref(), Some("a.test"));
        assert_eq!(h.to.as_deref(), Some("b.test"));
        assert_eq!(h.lang.as_deref(), Some("en"));
        assert!(h.dialback && h.is_version_1());
        let Event::Element(db) = &evs[1] else {
            panic!()
        };
        assert_eq!(
            (db.name(), db.ns(), db.prefix()),
            ("result", ns::DIALBACK, Some("db"))
        );
        let Event::Element(m) = &evs[2] else { panic!() };
        assert_eq!(m.attr("id"), Some("m&1"));
        assert_eq!(m.attr("from"), Some("j\u{e9}r\u{f4}me@a.test/\u{1F600}"));
        let body = m.get_child("body", ns::SERVER).unwrap();
        assert_eq!(
            body.text(),
            "caf\u{e9} <>&'\" A\u{1F600} line\nend \u{1F600}"
        );
        let html = m
            .get_child("html", "http://jabber.org/protocol/xhtml-im")
            .unwrap();
        let p = html.elements().next().unwrap().elements().next().unwrap();
        assert_eq!(p.ns(), "http://www.w3.org/1999/xhtml");
        assert_eq!(p.nodes().count(), 3);
        let ext = m.get_child("ext", "urn:x").unwrap();
        assert_eq!(ext.prefix(), Some("x"));
        assert_eq!(ext.attr("b"), Some("t ab"));
        assert_eq!(ext.attr("x:a"), Some("1"));
        assert_eq!(
            ext.nodes().collect::<Vec<_>>(),
            vec![NodeRef::Text("<raw> & text")]
        );
        assert!(matches!(&evs[3], Event::Element(p) if p.name() == "presence"));
        assert!(matches!(&evs[4], Event::Element(i) if i.name() == "iq"));
        assert_eq!(evs[5], Event::StreamClose);
    }

    #[test]
    fn release_buffers_between_stanzas_only() {
        let mut r = reader();
        let (evs, _) = run(
            &mut r,
            &[HEADER.as_bytes(), b"<message to='x@b.test'><body>a</bo"],
        );
        assert_eq!(evs.len(), 1);
        r.release_buffers(); // a stanza in progress: kept
        let (evs, err) = run(&mut r, &[b"dy></message><presence/>"]);
        assert_eq!((evs.len(), err), (2, None));
        r.release_buffers();
        assert_eq!((r.buf.capacity(), r.open.capacity()), (0, 0));
        let (evs, err) = run(
            &mut r,
            &[b"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>"],
        );
        assert_eq!((evs.len(), err), (1, None));
        let Event::Element(iq) = &evs[0] else {
            panic!()
        };
        assert_eq!(iq.attr("id"), Some("1"));
    }

    #[test]
    fn buffer_of_a_large_stanza_is_released_once_consumed() {
        let mut r = reader();
        let big = format!(
            "{HEADER}<message to='x@b.test'><body>{}</body></message>",
            "y".repeat(100_000)
        );
        let (evs, err) = run(&mut r, &[big.as_bytes()]);
        assert_eq!((evs.len(), err), (2, None));
        assert!(r.buf.capacity() > KEEP_CAPACITY);
        let (evs, err) = run(&mut r, &[b"<presence/>"]);
        assert_eq!((evs.len(), err), (1, None));
        assert!(r.buf.capacity() <= KEEP_CAPACITY, "{}", r.buf.capacity());
    }

    #[test]
    fn every_chunk_size_and_split_point_gives_the_same_events() {
        let (whole, _) = run_all(RICH.as_bytes(), RICH.len());
        for size in 1..=17 {
            assert_eq!(run_all(RICH.as_bytes(), size).0, whole, "chunk size {size}");
        }
        let b = RICH.as_bytes();
        for split in 1..b.len() {
            let (evs, err) = run(&mut reader(), &[&b[..split], &b[split..]]);
            assert_eq!(err, None, "split {split}");
            assert_eq!(evs, whole, "split {split}");
        }
    }

    #[test]
    fn attribute_syntax_variants() {
        let m = crate::test_util::parse_one("<message  a = \"x'>y\"\n\tb='\"'  />");
        assert_eq!(
            m.attrs().collect::<Vec<_>>(),
            vec![("a", "x'>y"), ("b", "\"")]
        );
    }

    #[test]
    fn xml_1_0_attribute_and_line_end_normalisation() {
        let r = crate::test_util::parse_one(
            "<message a='x\r\ny\nz&#10;&#13;'>a\rb\r\r\nc&#13;</message>",
        );
        assert_eq!(r.attr("a"), Some("x y z\n\r"));
        assert_eq!(r.text(), "a\nb\n\nc\r");
    }

    #[test]
    fn rfc6120_11_1_restricted_xml() {
        assert_eq!(
            err_of("<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]>").condition(),
            C::RestrictedXml
        );
        assert_eq!(
            err_of("<!-- hi --><stream:stream>").condition(),
            C::RestrictedXml
        );
        assert_eq!(err_of("<?foo bar?>").condition(), C::RestrictedXml);
        assert_eq!(stanza_err("<!ENTITY a 'b'>"), C::RestrictedXml);
        assert_eq!(
            stanza_err("<message><!-- c --></message>"),
            C::RestrictedXml
        );
        assert_eq!(stanza_err("<!-- c -->"), C::RestrictedXml);
        assert_eq!(stanza_err("<message><?pi x?></message>"), C::RestrictedXml);
        assert_eq!(stanza_err("<?xml version='1.0'?>"), C::RestrictedXml);
        assert_eq!(stanza_err("<message>&foo;</message>"), C::RestrictedXml);
        assert_eq!(stanza_err("<message a='&lol9;'/>"), C::RestrictedXml);
    }

    #[test]
    fn billion_laughs_is_refused_before_any_expansion() {
        let mut s = String::from("<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>");
        for i in 1..10 {
            s.push_str(&format!(
                "<!ENTITY lol{i} '{}'>",
                format!("&lol{};", i - 1).repeat(10)
            ));
        }
        s.push_str("]><stream:stream>&lol9;");
        let mut r = reader();
        let (evs, e) = run(&mut r, &[s.as_bytes()]);
        assert!(evs.is_empty());
        assert_eq!(e.unwrap().condition(), C::RestrictedXml);
    }

    #[test]
    fn not_well_formed() {
        assert_eq!(stanza_err("<message a='1' a='2'/>"), C::NotWellFormed);
        assert_eq!(
            stanza_err("<message xmlns:p='u' xmlns:q='u' p:a='1' q:a='2'/>"),
            C::NotWellFormed
        );
        assert_eq!(
            stanza_err("<message><body></message></body>"),
            C::NotWellFormed
        );
        assert_eq!(stanza_err("<message></iq>"), C::NotWellFormed);
        assert_eq!(stanza_err("</message>"), C::NotWellFormed);
        assert_eq!(stanza_err("<p:message/>"), C::NotWellFormed);
        assert_eq!(stanza_err("<message p:a='1'/>"), C::NotWellFormed);
        assert_eq!(stanza_err("<message xmlns:p=''/>"), C::NotWellFormed);
        assert_eq!(stanza_err("<message>\u{1}</message>"), C::NotWellFormed);
        assert_eq!(stanza_err("<message>&#0;</message>"), C::NotWellFormed);
        assert_eq!(stanza_err("<message>&#xD800;</message>"), C::NotWellFormed);
        assert_eq!(stanza_err("<message>&#xFFFE;</message>"), C::NotWellFormed);
        assert_eq!(stanza_err("<message>\u{FFFF}</message>"), C::NotWellFormed);
        assert_eq!(stanza_err("<message>a]]>b</message>"), C::NotWellFormed);
        assert_eq!(stanza_err("<message>a & b</message>"), C::NotWellFormed);
        assert_eq!(stanza_err("<message a='<'/>"), C::NotWellFormed);
        assert_eq!(stanza_err("<message a=x/>"), C::NotWellFormed);
        assert_eq!(stanza_err("<message a='\u{1}'/>"), C::NotWellFormed);
        assert_eq!(stanza_err("<message a='\u{FFFF}'/>"), C::NotWellFormed);
        assert_eq!(stanza_err("<message a='x'b='y'/>"), C::NotWellFormed);
        assert_eq!(stanza_err("<message a='x' b/>"), C::NotWellFormed);
        assert_eq!(stanza_err("<message 1a='x'/>"), C::NotWellFormed);
        assert_eq!(stanza_err("<message a='x' / >"), C::NotWellFormed);
        assert_eq!(err_of("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='\u{2}'>").condition(), C::NotWellFormed);
        assert_eq!(stanza_err("<message <a/>"), C::NotWellFormed);
        assert_eq!(err_of("hello<stream:stream>").condition(), C::NotWellFormed);
        assert_eq!(err_of("</stream:stream>").condition(), C::NotWellFormed);
    }

    /// Found by the `xmpp_reader` fuzz target: text before the stream header reported
    /// a different offset when its leading whitespace came in an earlier chunk.
    #[test]
    fn text_before_the_header_reports_the_same_error_in_any_chunking() {
        let input = b" \n x<stream:stream/>";
        let whole = run_all(input, input.len());
        let err = whole.1.clone().expect("an error");
        assert_eq!(err.condition(), C::NotWellFormed);
        for chunk in 1..input.len() {
            assert_eq!(run_all(input, chunk), whole, "chunk size {chunk}");
        }
    }

    /// Found by the `xmpp_reader` fuzz target: a lead byte at the end of one chunk and a
    /// byte that cannot continue it in the next went unnoticed.
    #[test]
    fn a_broken_utf8_sequence_split_across_chunks_is_not_well_formed() {
        let input = b" \xE2\x00";
        let whole = run_all(input, input.len());
        assert_eq!(
            whole.1.as_ref().map(|e| e.condition()),
            Some(C::NotWellFormed)
        );
        for chunk in 1..input.len() {
            assert_eq!(run_all(input, chunk), whole, "chunk size {chunk}");
        }
    }

    #[test]
    fn bad_utf8_is_not_well_formed_in_any_chunking() {
        for bad in [&b"\xC3\x28"[..], b"\xFF", b"\xED\xA0\x80", b"\xF0\x9F\x98"] {
            for (i, place) in ["<message>X</message>", "<message a='X'/>", "<mesXsage/>"]
                .iter()
                .enumerate()
            {
                let mut input = HEADER.as_bytes().to_vec();
                let (a, b) = place.split_once('X').unwrap();
                input.extend_from_slice(a.as_bytes());
                input.extend_from_slice(bad);
                input.extend_from_slice(b.as_bytes());
                for chunk in [1, 3, 7, input.len()] {
                    let (evs, e) = run_all(&input, chunk);
                    assert_eq!(evs.len(), 1, "{i} {chunk}");
                    assert_eq!(
                        e.map(|e| e.condition()),
                        Some(C::NotWellFormed),
                        "{bad:?} {i} {chunk}"
                    );
                }
            }
        }
    }

    #[test]
    fn rfc6120_4_9_3_stream_level_errors() {
        let h = |ns: &str, sns: &str| format!("<stream:stream xmlns='{ns}' xmlns:stream='{sns}'>");
        assert_eq!(
            err_of(&h("jabber:client", ns::STREAM)).condition(),
            C::InvalidNamespace
        );
        assert_eq!(
            err_of(&h("jabber:server", "urn:nope")).condition(),
            C::InvalidNamespace
        );
        assert_eq!(
            err_of("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>").condition(),
            C::InvalidNamespace
        );
        assert_eq!(
            err_of("<stream xmlns='http://etherx.jabber.org/streams'>").condition(),
            C::BadNamespacePrefix
        );
        assert_eq!(
            err_of("<stream:stream xmlns='jabber:server'>").condition(),
            C::NotWellFormed
        );
        assert_eq!(
            err_of("<?xml version='1.0' encoding='ISO-8859-1'?>").condition(),
            C::UnsupportedEncoding
        );
        assert_eq!(stanza_err("hello"), C::BadFormat);
        assert_eq!(stanza_err("<![CDATA[x]]>"), C::BadFormat);
        // Another prefix bound to the stream namespace is fine.
        let (evs, e) = run_all(b"<s:stream xmlns='jabber:server' xmlns:s='http://etherx.jabber.org/streams'><s:features/></s:stream>", 5);
        assert_eq!(e, None);
        assert_eq!(evs.len(), 3);
        let (evs, e) = run_all(b"\xEF\xBB\xBF<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'/>", 2);
        assert_eq!(e, None);
        assert_eq!(evs.last(), Some(&Event::StreamClose));
    }

    #[test]
    fn whitespace_keepalives_and_restart() {
        let mut r = reader();
        let (evs, e) = run(&mut r, &[HEADER.as_bytes(), b" \n ", b"\t", b"<presence/>"]);
        assert_eq!((evs.len(), e), (2, None));
        assert_eq!(r.restart(), 0);
        let (evs, e) = run(
            &mut r,
            &[
                b"<?xml version='1.0'?>",
                HEADER.as_bytes(),
                b"<presence/><starttls",
            ],
        );
        assert_eq!((evs.len(), e), (2, None));
        assert_eq!(r.restart(), 9, "pipelined bytes are dropped and reported");
    }

    fn stream_then(
        limits: Limits,
        chunks: impl Iterator<Item = Vec<u8>>,
    ) -> (usize, Option<ReadError>, usize) {
        let mut r = StreamReader::new(StreamKind::Server, limits, Instant::now());
        r.set_authenticated();
        r.feed(HEADER.as_bytes());
        assert!(r.poll_event().unwrap().is_some());
        let mut max_buffered = 0;
        let mut n = 0;
        for c in chunks {
            r.feed(&c);
            loop {
                match r.poll_event() {
                    Ok(Some(_)) => n += 1,
                    Ok(None) => break,
                    Err(e) => return (n, Some(e), max_buffered),
                }
            }
            max_buffered = max_buffered.max(r.buffered());
        }
        (n, None, max_buffered)
    }

    #[test]
    fn hundred_megabyte_stanza_is_cut_off_at_the_limit() {
        let chunk = vec![b'a'; 64 * 1024];
        let it = std::iter::once(b"<message><body>".to_vec())
            .chain(std::iter::repeat_n(chunk, 100 * 16));
        let (n, e, max) = stream_then(Limits::default(), it);
        assert_eq!(n, 0);
        assert_eq!(e, Some(ReadError::Limit(LimitKind::StanzaSize)));
        assert!(max <= 16, "text is consumed as it arrives, buffered {max}");
    }

    #[test]
    fn tag_that_never_closes_is_cut_off_and_buffer_stays_bounded() {
        let limits = Limits::default();
        let cap = limits.max_stanza_bytes;
        for opener in [
            &b"<message to='"[..],
            b"<message ",
            b"<![CDATA[",
            b"<message>&#",
        ] {
            let it =
                std::iter::once(opener.to_vec()).chain(std::iter::repeat_n(vec![b'x'; 7], 100_000));
            let (_, e, max) = stream_then(limits.clone(), it);
            let e = e.expect("error");
            assert!(
                matches!(
                    e.condition(),
                    C::PolicyViolation | C::NotWellFormed | C::BadFormat
                ),
                "{e:?}"
            );
            assert!(max <= cap + 7, "buffered {max}");
        }
    }

    #[test]
    fn deep_nesting_and_many_attributes() {
        let it = std::iter::repeat_n(b"<a>".to_vec(), 10_000);
        let (_, e, _) = stream_then(Limits::default(), it);
        assert_eq!(e, Some(ReadError::Limit(LimitKind::Depth)));
        let mut s = String::from("<message");
        for i in 0..33 {
            s.push_str(&format!(" a{i}='x'"));
        }
        s.push_str("/>");
        assert_eq!(stanza_err(&s), C::PolicyViolation);
        let ok: String = (0..32).map(|i| format!(" a{i}='x'")).collect();
        let (evs, e) = run_all(format!("{HEADER}<message{ok}/>").as_bytes(), 7);
        assert_eq!((evs.len(), e), (2, None));
    }

    #[test]
    fn elements_per_stanza_and_namespace_copies_are_bounded() {
        // 20 000 empty children: over the element limit long before the size limit.
        let it = std::iter::once(b"<message>".to_vec())
            .chain(std::iter::repeat_n(b"<a/>".to_vec(), 20_000));
        let (_, e, _) = stream_then(Limits::default(), it);
        assert_eq!(e, Some(ReadError::Limit(LimitKind::Elements)));
        // A long stream-level namespace used by many prefixed children is copied once.
        let uri = "urn:".to_string() + &"x".repeat(8000);
        let mut r = reader();
        r.feed(format!("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:p='{uri}'>").as_bytes());
        r.feed(b"<message>");
        for _ in 0..5000 {
            r.feed(b"<p:a xml:lang='en'/>");
        }
        r.feed(b"</message>");
        assert!(matches!(r.poll_event(), Ok(Some(Event::StreamOpen(_)))));
        let Ok(Some(Event::Element(m))) = r.poll_event() else {
            panic!()
        };
        assert_eq!(m.elements().count(), 5000);
        assert!(m.elements().all(|e| e.ns() == uri));
        // Names and attributes (12 bytes per child) plus one copy of the URI.
        assert!(
            m.buf.len() < 2 * uri.len() + 5000 * 12,
            "tree text {} bytes",
            m.buf.len()
        );
    }

    #[test]
    fn unauthenticated_limits() {
        let t0 = Instant::now();
        let mut r = StreamReader::new(StreamKind::Server, Limits::default(), t0);
        let d = r.poll_timeout().unwrap();
        assert_eq!(d, t0 + Duration::from_secs(60));
        r.handle_timeout(t0 + Duration::from_secs(59));
        r.feed(HEADER.as_bytes());
        assert!(r.poll_event().unwrap().is_some());
        // 16 KiB before authentication.
        let big = format!("<message><body>{}</body></message>", "x".repeat(20_000));
        r.feed(big.as_bytes());
        assert_eq!(r.poll_event(), Err(ReadError::Limit(LimitKind::StanzaSize)));

        let mut r = StreamReader::new(StreamKind::Server, Limits::default(), t0);
        r.handle_timeout(d);
        assert_eq!(r.poll_event().unwrap_err().condition(), C::PolicyViolation);
        assert_eq!(r.poll_timeout(), None);

        let mut r = StreamReader::new(StreamKind::Server, Limits::default(), t0);
        r.set_authenticated();
        assert_eq!(r.poll_timeout(), None);
        r.handle_timeout(d);
        r.feed(HEADER.as_bytes());
        r.feed(big.as_bytes());
        assert!(matches!(r.poll_event(), Ok(Some(Event::StreamOpen(_)))));
        assert!(matches!(r.poll_event(), Ok(Some(Event::Element(_)))));
    }

    #[test]
    fn errors_are_sticky() {
        let mut r = reader();
        r.feed(b"<!--");
        let e = r.poll_event().unwrap_err();
        r.feed(HEADER.as_bytes());
        assert_eq!(r.poll_event(), Err(e));
    }

    // ---- property tests: write -> read == tree ----

    fn xml_string(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                8 => proptest::char::range(' ', '~'),
                1 => Just('\r'), 1 => Just('\n'), 1 => Just('\t'),
                2 => proptest::char::range('\u{a0}', '\u{d7ff}'),
                1 => proptest::char::range('\u{10000}', '\u{10ffff}'),
            ],
            0..max,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    fn tree() -> impl Strategy<Value = Element> {
        let nss = prop_oneof![Just(ns::SERVER), Just("urn:a"), Just("urn:b:c")];
        let leaf = (
            "[a-z][a-z0-9]{0,6}",
            nss.clone(),
            proptest::collection::btree_map("[a-z]{1,4}", xml_string(8), 0..4),
        )
            .prop_map(|(n, ns, attrs)| {
                let mut b = ElementBuilder::new(&n, ns);
                for (k, v) in attrs {
                    b = b.attr(&k, v);
                }
                b.build()
            });
        leaf.prop_recursive(4, 40, 5, move |inner| {
            (
                "[a-z][a-z0-9]{0,6}",
                nss.clone(),
                any::<bool>(),
                proptest::collection::vec(
                    prop_oneof![inner.prop_map(Ok), xml_string(12).prop_map(Err)],
                    0..5,
                ),
            )
                .prop_map(|(n, ns, prefixed, kids)| {
                    let mut b = ElementBuilder::new(&n, ns);
                    if prefixed && ns != ns::SERVER {
                        b = b.prefix("p").attr("xmlns:p", ns);
                    }
                    for k in kids {
                        b = match k {
                            Ok(e) => b.child(e),
                            Err(t) => b.text(t),
                        };
                    }
                    b.build()
                })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn write_then_read_is_identity(trees in proptest::collection::vec(tree(), 1..4), chunk in 1usize..64) {
            let mut s = String::from(HEADER);
            for t in &trees {
                write_element(&mut s, t.root(), &Scope::SERVER);
            }
            let (evs, err) = run_all(s.as_bytes(), chunk);
            prop_assert_eq!(err, None);
            let got: Vec<Element> = evs.into_iter().filter_map(|e| match e { Event::Element(e) => Some(e), _ => None }).collect();
            prop_assert_eq!(got, trees);
        }

        #[test]
        fn escape_then_decode_is_identity(t in xml_string(120)) {
            let mut esc = String::new();
            crate::writer::escape_text(&mut esc, &t);
            let mut back = String::new();
            decode(&mut back, &esc, false, 0).unwrap();
            prop_assert_eq!(&back, &t);
            esc.clear();
            crate::writer::escape_attr(&mut esc, &t);
            back.clear();
            decode(&mut back, &esc, true, 0).unwrap();
            prop_assert_eq!(&back, &t);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(data in proptest::collection::vec(any::<u8>(), 0..512), chunk in 1usize..16) {
            let mut input = HEADER.as_bytes().to_vec();
            input.extend_from_slice(&data);
            let mut r = StreamReader::new(StreamKind::Server, Limits { max_stanza_bytes: 256, max_stanza_bytes_unauthenticated: 256, ..Limits::default() }, Instant::now());
            for c in input.chunks(chunk) {
                r.feed(c);
                while let Ok(Some(_)) = r.poll_event() {}
                prop_assert!(r.buffered() <= 256 + chunk);
            }
        }
    }
}
