//! Borrowed typed views of the core headers: the same grammars as the owned types
//! of [`crate::typed`], without their cost.
//!
//! A view borrows the message: names, values, display names and URI parts are
//! `&[u8]` slices of the received buffer; hosts are decoded (`Ipv4Addr`,
//! `Ipv6Addr`) as in [`Host`]. Nothing is allocated and no reference count is
//! touched. Header parameters are indexed while they are checked: up to
//! eight are kept as offsets inline, and a longer list is re-read from its
//! (already checked) bytes on each lookup, so there is still no heap. URI
//! parameters are checked once and re-read on lookup.
//!
//! **Every view is checked against the grammar when it is made**, with the same
//! verdicts as the owned decoders: a view exists iff the owned value parses, and
//! `view.to_owned()` equals it (differential tests in `tests/views.rs`).
//!
//! | owned (allocates) | borrowed |
//! |---|---|
//! | [`Message::via`] → `Vec<Via>` | [`Message::vias`] → iterator of [`ViaRef`] |
//! | [`Message::top_via`] | [`Message::top_via_ref`] |
//! | [`Message::from`], [`Message::to`] → [`Address`] | [`Message::from_ref`], [`Message::to_ref`] → [`AddressRef`] |
//! | [`Message::contact`] → [`Contacts`] | [`Message::contact_refs`] → [`ContactRefs`] |
//! | [`Headers::route`], [`Headers::record_route`] | [`Headers::route_refs`], [`Headers::record_route_refs`] |
//! | [`Message::call_id`] → [`CallId`] | [`Message::call_id_ref`] → [`CallIdRef`] |
//! | [`Message::cseq`] → [`CSeq`] | [`Message::cseq_ref`] → [`CSeqRef`] |
//!
//! [`Message::content_length`] is already allocation-free.
//!
//! ```
//! use fedgate_sip::Message;
//! let m = Message::parse(bytes::Bytes::from_static(
//!     b"OPTIONS sip:bob@b.example SIP/2.0\r\n\
//!       Via: SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bK1, SIP/2.0/TCP p.example;branch=z9hG4bK2\r\n\
//!       From: \"A\" <sip:a@a.example>;tag=t1;epid=e1\r\n\
//!       To: <sip:bob@b.example>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\r\n",
//! ))
//! .unwrap();
//! let branches: Vec<&[u8]> = m.vias().unwrap().map(|v| v.unwrap().branch().unwrap()).collect();
//! assert_eq!(branches, [&b"z9hG4bK1"[..], b"z9hG4bK2"]);
//! let from = m.from_ref().unwrap();
//! assert_eq!((from.tag(), from.epid()), (Some(&b"t1"[..]), Some(&b"e1"[..])));
//! assert_eq!(from.uri().as_sip().unwrap().host().domain(), Some(&b"a.example"[..]));
//! assert_eq!(from.to_owned(), m.from().unwrap());
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::Bytes;

use crate::chars::{self, GEN_VALUE, TOKEN, URI_HEADERS};
use crate::error::{HeaderError, ValueError};
use crate::headers::{HeaderKind, Headers};
use crate::message::Message;
use crate::method::Method;
use crate::typed::{
    Address, CSeq, CallId, Contacts, Transport, Via, end, quoted_string, skip_ws, sws,
};
use crate::uri::{
    self, AbsoluteUri, Host, PARAMCHAR_NP, PARAMVALUE_NP, PASSWORD_NP, Param, Params, SipUri,
    TelUri, USER_NP, Uri, UriContext,
};

/// [`chars::span_table`], four bytes per step: the index of the first byte at or
/// after `from` that is not in `table` (or `s.len()`).
#[inline(always)]
fn span4(table: &[bool; 256], s: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(w) = s.get(i..i + 4) {
        if !(table[w[0] as usize]
            & table[w[1] as usize]
            & table[w[2] as usize]
            & table[w[3] as usize])
        {
            break;
        }
        i += 4;
    }
    while let Some(&c) = s.get(i) {
        if !table[c as usize] {
            break;
        }
        i += 1;
    }
    i
}

/// [`chars::span`] with escapes: runs of `table` characters (which must not
/// include `%`) and well-formed `%XX` escapes, from the start of `s`.
#[inline(always)]
fn span_esc(table: &[bool; 256], s: &[u8]) -> usize {
    let mut i = 0;
    loop {
        i = span4(table, s, i);
        match s.get(i..i + 3) {
            Some([b'%', a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i += 3,
            _ => return i,
        }
    }
}

/// True if `name` (a token) is `lower` (lower-case letters, digits, `-`), ignoring
/// ASCII case.
#[inline(always)]
fn name_is(name: &[u8], lower: &'static [u8], words: &[u64; 3]) -> bool {
    name.len() == lower.len() && chars::token_eq_words(name, words)
}

fn invalid(kind: HeaderKind) -> impl Fn(ValueError) -> HeaderError {
    move |error| HeaderError::Invalid {
        name: kind.name(),
        error,
    }
}

// ---------------------------------------------------------------------------------
// Hosts

/// A borrowed [`Host`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostRef<'a> {
    /// A host name, as received.
    Domain(&'a [u8]),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address.
    Ipv6(Ipv6Addr),
}

impl<'a> HostRef<'a> {
    /// The host name, if this is one.
    #[inline]
    pub fn domain(&self) -> Option<&'a [u8]> {
        match self {
            HostRef::Domain(d) => Some(d),
            _ => None,
        }
    }

    /// An owned [`Host`] (a host name is copied).
    pub fn to_host(&self) -> Host {
        match *self {
            HostRef::Domain(d) => Host::Domain(Bytes::copy_from_slice(d)),
            HostRef::Ipv4(a) => Host::Ipv4(a),
            HostRef::Ipv6(a) => Host::Ipv6(a),
        }
    }

    #[inline]
    fn to_host_in(self, src: &Bytes) -> Host {
        match self {
            HostRef::Domain(d) => Host::Domain(chars::sub(src, d)),
            HostRef::Ipv4(a) => Host::Ipv4(a),
            HostRef::Ipv6(a) => Host::Ipv6(a),
        }
    }
}

fn ipv6_ref(s: &[u8]) -> Result<HostRef<'static>, ValueError> {
    match uri::parse_ipv6_ref(s)? {
        Host::Ipv6(a) => Ok(HostRef::Ipv6(a)),
        _ => Err(ValueError::new("bad IPv6 address")),
    }
}

/// [`chars::ipv4`] in one pass: `1*3DIGIT 3("." 1*3DIGIT)`, each part ≤ 255.
#[inline]
fn ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    let mut parts = [0u8; 4];
    let mut n = 0;
    let mut i = 0;
    loop {
        let mut v: u32 = 0;
        let start = i;
        while let Some(&c) = s.get(i) {
            let d = c.wrapping_sub(b'0');
            if d > 9 || i - start == 3 {
                break;
            }
            v = v * 10 + u32::from(d);
            i += 1;
        }
        if i == start || v > 255 {
            return None;
        }
        parts[n] = v as u8;
        n += 1;
        if n == 4 {
            return (i == s.len()).then(|| Ipv4Addr::from(parts));
        }
        if s.get(i) != Some(&b'.') {
            return None;
        }
        i += 1;
    }
}

/// [`uri::host_span`], four bytes per step.
#[inline(always)]
fn host_span4(s: &[u8]) -> (usize, bool) {
    let class = &uri::HOST_CLASS;
    let mut acc = 3;
    let mut n = 0;
    while let Some(w) = s.get(n..n + 4) {
        // Classes are 0, 1 or 3: the AND is 0 iff one of the four is 0.
        let f = class[w[0] as usize]
            & class[w[1] as usize]
            & class[w[2] as usize]
            & class[w[3] as usize];
        if f == 0 {
            break;
        }
        acc &= f;
        n += 4;
    }
    while let Some(&c) = s.get(n) {
        let f = class[c as usize];
        if f == 0 {
            break;
        }
        acc &= f;
        n += 1;
    }
    (n, acc == 3)
}

/// [`uri::parse_host_prefix`], borrowed.
#[inline]
fn host_prefix(s: &[u8]) -> Result<(HostRef<'_>, &[u8]), ValueError> {
    if s.first() == Some(&b'[') {
        let end = memchr::memchr(b']', s)
            .map(|p| p + 1)
            .ok_or(ValueError::new("unterminated IPv6 reference"))?;
        return Ok((ipv6_ref(&s[..end])?, &s[end..]));
    }
    let (n, digits_dots) = host_span4(s);
    let h = &s[..n];
    if h.is_empty() {
        return Err(ValueError::new("bad host"));
    }
    let host = if digits_dots {
        ipv4(h)
            .map(HostRef::Ipv4)
            .ok_or(ValueError::new("bad IPv4 address"))?
    } else {
        HostRef::Domain(h)
    };
    Ok((host, &s[n..]))
}

// ---------------------------------------------------------------------------------
// Header parameters

const INLINE: usize = 8;

/// One `SEMI generic-param` with `i[k] == b';'`: name start and end, value start
/// and end (`0, 0` when there is no value: a value is never empty), and the index
/// after it. The grammar of [`crate::typed`]'s header parameters.
#[inline(always)]
fn header_param_at(i: &[u8], k: usize) -> Result<[usize; 5], ValueError> {
    let ns = skip_ws(i, k + 1);
    let ne = span4(&TOKEN, i, ns);
    if ne == ns {
        return Err(ValueError::new("empty or bad parameter name"));
    }
    let after = skip_ws(i, ne);
    if i.get(after) != Some(&b'=') {
        return Ok([ns, ne, 0, 0, ne]);
    }
    let vs = skip_ws(i, after + 1);
    let ve = if i.get(vs) == Some(&b'"') {
        let (r, _) = quoted_string(&i[vs..])?;
        i.len() - r.len()
    } else {
        let ve = span4(&GEN_VALUE, i, vs);
        if ve == vs {
            return Err(ValueError::new("bad parameter value"));
        }
        ve
    };
    Ok([ns, ne, vs, ve, ve])
}

/// Header parameters (`;tag=…;epid=…`), checked, borrowed, indexed.
///
/// Lookups ignore ASCII case in names, as [`Params`] does. Quoted values keep
/// their quotes (see [`crate::unquote`]).
#[derive(Clone, Copy)]
pub struct ParamsRef<'a> {
    /// From the first `;` to the end of the last parameter.
    raw: &'a [u8],
    /// Number of parameters indexed in `at`; `u8::MAX` when they did not fit and
    /// lookups re-read `raw`.
    n: u8,
    /// Name start, name end, value start, value end, relative to `raw` (which
    /// must then be at most 255 bytes long).
    at: [[u8; 4]; INLINE],
}

impl<'a> ParamsRef<'a> {
    const SPILLED: u8 = u8::MAX;

    const EMPTY: ParamsRef<'static> = ParamsRef {
        raw: &[],
        n: 0,
        at: [[0; 4]; INLINE],
    };

    /// Reads `*( SEMI generic-param )` at the start of `i` (exactly as the owned
    /// decoders do); returns the parameters and the index where they end (0 when
    /// there is none, so leading whitespace stays with the rest).
    #[inline]
    fn parse(i: &'a [u8]) -> Result<(ParamsRef<'a>, usize), ValueError> {
        let mut k = skip_ws(i, 0);
        if i.get(k) != Some(&b';') {
            return Ok((ParamsRef::EMPTY, 0));
        }
        let start = k;
        let mut p = ParamsRef::EMPTY;
        let mut n = 0usize;
        let mut at = 0;
        while i.get(k) == Some(&b';') {
            let [ns, ne, vs, ve, next] = header_param_at(i, k)?;
            if n < INLINE && next - start <= usize::from(u8::MAX) {
                let r = |x: usize| if x == 0 { 0 } else { (x - start) as u8 };
                p.at[n] = [r(ns), r(ne), r(vs), r(ve)];
                n += 1;
            } else {
                n = usize::from(Self::SPILLED);
            }
            at = next;
            k = skip_ws(i, next);
        }
        p.raw = &i[start..at];
        p.n = n as u8;
        Ok((p, at))
    }

    /// The parameters as received, from the first `;` (empty when there is none).
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// True when there are no parameters.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Iterates `(name, value)` in order.
    #[inline]
    pub fn iter(&self) -> ParamsIter<'a> {
        ParamsIter {
            raw: self.raw,
            k: 0,
            header: true,
        }
    }

    /// The parameter named `name` (ASCII case-insensitive): `None` if absent,
    /// `Some(None)` if present without a value.
    #[inline]
    pub fn get(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.find(|n| n.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// The value of `name`, if present with a value.
    #[inline]
    pub fn value(&self, name: &str) -> Option<&'a [u8]> {
        self.get(name).flatten()
    }

    /// True if a parameter `name` is present.
    #[inline]
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The value of `lower` (lower-case letters, digits, `-`; `words` its
    /// [`chars::words`]).
    #[inline(always)]
    fn value_lower(&self, lower: &'static [u8], words: &[u64; 3]) -> Option<&'a [u8]> {
        self.find(|n| name_is(n, lower, words)).flatten()
    }

    #[inline(always)]
    fn find(&self, mut pred: impl FnMut(&[u8]) -> bool) -> Option<Option<&'a [u8]>> {
        let raw = self.raw;
        if self.n == Self::SPILLED {
            return self.iter().find(|(n, _)| pred(n)).map(|(_, v)| v);
        }
        for e in self.at.get(..usize::from(self.n)).unwrap_or_default() {
            let name = raw.get(usize::from(e[0])..usize::from(e[1]))?;
            if pred(name) {
                return Some(if e[3] == 0 {
                    None
                } else {
                    raw.get(usize::from(e[2])..usize::from(e[3]))
                });
            }
        }
        None
    }

    #[inline]
    fn to_params_in(self, src: &Bytes) -> Params {
        if self.raw.is_empty() {
            return Params::default();
        }
        Params(
            self.iter()
                .map(|(n, v)| Param {
                    name: uri::param_name(src, n),
                    value: v.map(|v| chars::sub(src, v)),
                })
                .collect(),
        )
    }
}

impl std::fmt::Debug for ParamsRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|(n, v)| (String::from_utf8_lossy(n), v.map(String::from_utf8_lossy))),
            )
            .finish()
    }
}

impl PartialEq for ParamsRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for ParamsRef<'_> {}

/// The parameters of a [`ParamsRef`] or [`UriParamsRef`], in order: `(name,
/// value)`.
#[derive(Debug, Clone)]
pub struct ParamsIter<'a> {
    raw: &'a [u8],
    k: usize,
    header: bool,
}

impl<'a> Iterator for ParamsIter<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        let i = self.raw;
        if i.get(self.k) != Some(&b';') {
            return None;
        }
        // `raw` was checked when the view was made: no step fails.
        let step = if self.header {
            header_param_at(i, self.k)
        } else {
            uri_param_at(i, self.k)
        };
        let [ns, ne, vs, ve, next] = step.ok()?;
        self.k = if self.header { skip_ws(i, next) } else { next };
        let v = if ve == 0 { None } else { Some(&i[vs..ve]) };
        Some((&i[ns..ne], v))
    }
}

// ---------------------------------------------------------------------------------
// URIs

/// One `";" pname ["=" pvalue]` of a URI with `i[k] == b';'`, as
/// [`uri::uri_params`] reads it.
#[inline(always)]
fn uri_param_at(i: &[u8], k: usize) -> Result<[usize; 5], ValueError> {
    let ns = k + 1;
    let n = span_esc(&PARAMCHAR_NP, &i[ns..]);
    if n == 0 {
        return Err(ValueError::new("empty URI parameter"));
    }
    let ne = ns + n;
    if i.get(ne) != Some(&b'=') {
        return Ok([ns, ne, 0, 0, ne]);
    }
    let vs = ne + 1;
    let m = span_esc(&PARAMVALUE_NP, &i[vs..]);
    if m == 0 {
        return Err(ValueError::new("bad URI parameter"));
    }
    Ok([ns, ne, vs, vs + m, vs + m])
}

/// URI parameters (`;transport=tls;lr`), checked and borrowed, escaped as
/// received; lookups re-read them (ASCII case-insensitive names).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct UriParamsRef<'a> {
    raw: &'a [u8],
}

impl<'a> UriParamsRef<'a> {
    /// Reads `*( ";" uri-parameter )` at the start of `i`; returns the index after.
    #[inline]
    fn parse(i: &'a [u8]) -> Result<(UriParamsRef<'a>, usize), ValueError> {
        let mut k = 0;
        while i.get(k) == Some(&b';') {
            k = uri_param_at(i, k)?[4];
        }
        Ok((UriParamsRef { raw: &i[..k] }, k))
    }

    /// The parameters as received, from the first `;`.
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }
    /// True when there are no parameters.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
    /// Iterates `(name, value)` in order.
    #[inline]
    pub fn iter(&self) -> ParamsIter<'a> {
        ParamsIter {
            raw: self.raw,
            k: 0,
            header: false,
        }
    }
    /// The parameter named `name` (ASCII case-insensitive): `None` if absent,
    /// `Some(None)` if present without a value.
    #[inline]
    pub fn get(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
    /// The value of `name`, if present with a value.
    #[inline]
    pub fn value(&self, name: &str) -> Option<&'a [u8]> {
        self.get(name).flatten()
    }
    /// True if a parameter `name` is present.
    #[inline]
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn to_params_in(self, src: &Bytes) -> Params {
        if self.raw.is_empty() {
            return Params::default();
        }
        Params(
            self.iter()
                .map(|(n, v)| Param {
                    name: uri::param_name(src, n),
                    value: v.map(|v| chars::sub(src, v)),
                })
                .collect(),
        )
    }
}

impl std::fmt::Debug for UriParamsRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.raw))
    }
}

/// A borrowed [`SipUri`].
#[derive(Debug, Clone, Copy)]
pub struct SipUriRef<'a> {
    src: &'a Bytes,
    secure: bool,
    user: Option<&'a [u8]>,
    password: Option<&'a [u8]>,
    host: HostRef<'a>,
    port: Option<u16>,
    params: UriParamsRef<'a>,
    headers: Option<&'a [u8]>,
}

impl<'a> SipUriRef<'a> {
    /// `sips:` rather than `sip:`.
    #[inline]
    pub fn secure(&self) -> bool {
        self.secure
    }
    /// The user part, escaped as received.
    #[inline]
    pub fn user(&self) -> Option<&'a [u8]> {
        self.user
    }
    /// The password, escaped as received.
    #[inline]
    pub fn password(&self) -> Option<&'a [u8]> {
        self.password
    }
    /// Host.
    #[inline]
    pub fn host(&self) -> HostRef<'a> {
        self.host
    }
    /// Port, if given.
    #[inline]
    pub fn port(&self) -> Option<u16> {
        self.port
    }
    /// `uri-parameters`.
    #[inline]
    pub fn params(&self) -> UriParamsRef<'a> {
        self.params
    }
    /// `headers` after `?`, raw.
    #[inline]
    pub fn headers(&self) -> Option<&'a [u8]> {
        self.headers
    }
    /// The `transport` parameter.
    pub fn transport(&self) -> Option<&'a [u8]> {
        self.params.value("transport")
    }
    /// True if the URI has the `lr` parameter.
    pub fn lr(&self) -> bool {
        self.params.contains("lr")
    }
    /// The owned [`SipUri`] (zero-copy slices of the message).
    pub fn to_owned(&self) -> SipUri {
        let src = self.src;
        SipUri {
            secure: self.secure,
            user: self.user.map(|u| chars::sub(src, u)),
            password: self.password.map(|p| chars::sub(src, p)),
            host: self.host.to_host_in(src),
            port: self.port,
            params: self.params.to_params_in(src),
            headers: self.headers.map(|h| chars::sub(src, h)),
        }
    }
}

/// A borrowed [`TelUri`].
#[derive(Debug, Clone, Copy)]
pub struct TelUriRef<'a> {
    src: &'a Bytes,
    number: &'a [u8],
    params: UriParamsRef<'a>,
}

impl<'a> TelUriRef<'a> {
    /// The telephone-subscriber number.
    #[inline]
    pub fn number(&self) -> &'a [u8] {
        self.number
    }
    /// Parameters.
    #[inline]
    pub fn params(&self) -> UriParamsRef<'a> {
        self.params
    }
    /// The owned [`TelUri`].
    pub fn to_owned(&self) -> TelUri {
        TelUri {
            number: chars::sub(self.src, self.number),
            params: self.params.to_params_in(self.src),
        }
    }
}

/// A borrowed URI: `sip:`/`sips:`, `tel:`, or any other absolute URI (opaque).
#[derive(Debug, Clone, Copy)]
pub enum UriRef<'a> {
    /// `sip:` or `sips:`.
    Sip(SipUriRef<'a>),
    /// `tel:`.
    Tel(TelUriRef<'a>),
    /// Any other scheme: the whole URI and the scheme's length.
    Absolute(&'a Bytes, &'a [u8], usize),
}

impl<'a> UriRef<'a> {
    /// The SIP URI, if this is one.
    #[inline]
    pub fn as_sip(&self) -> Option<&SipUriRef<'a>> {
        match self {
            UriRef::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// The scheme in lower case for sip/sips/tel, as received otherwise.
    #[inline]
    pub fn scheme(&self) -> &'a [u8] {
        match self {
            UriRef::Sip(u) if u.secure => b"sips",
            UriRef::Sip(_) => b"sip",
            UriRef::Tel(_) => b"tel",
            UriRef::Absolute(_, raw, n) => &raw[..*n],
        }
    }

    /// The owned [`Uri`] (zero-copy slices of the message).
    pub fn to_owned(&self) -> Uri {
        match self {
            UriRef::Sip(u) => Uri::Sip(u.to_owned()),
            UriRef::Tel(t) => Uri::Tel(t.to_owned()),
            UriRef::Absolute(src, raw, n) => {
                Uri::Absolute(AbsoluteUri::from_parts(chars::sub(src, raw), *n))
            }
        }
    }
}

/// [`uri::parse_uri`], borrowed: the same checks in the same order.
#[inline]
fn parse_uri_ref<'a>(
    src: &'a Bytes,
    s: &'a [u8],
    ctx: UriContext,
) -> Result<UriRef<'a>, ValueError> {
    if let Some(p) = s.get(..5) {
        if chars::eq_lower(&p[..4], b"sip:") {
            return parse_sip_ref(src, &s[4..], false, ctx).map(UriRef::Sip);
        }
        if chars::eq_lower(p, b"sips:") {
            return parse_sip_ref(src, &s[5..], true, ctx).map(UriRef::Sip);
        }
    }
    let (rest, sch) = uri::scheme(s).map_err(|_| ValueError::new("bad URI scheme"))?;
    let rest = rest
        .strip_prefix(b":")
        .ok_or(ValueError::new("URI without scheme"))?;
    if sch.eq_ignore_ascii_case(b"sip") || sch.eq_ignore_ascii_case(b"sips") {
        parse_sip_ref(src, rest, sch.len() == 4, ctx).map(UriRef::Sip)
    } else if sch.eq_ignore_ascii_case(b"tel") {
        let end = rest.iter().position(|&c| c == b';').unwrap_or(rest.len());
        let number = &rest[..end];
        if number.is_empty() || !chars::all(&chars::PARAMCHAR, number) {
            return Err(ValueError::new("bad tel number"));
        }
        let (params, n) = UriParamsRef::parse(&rest[end..])?;
        if end + n != rest.len() {
            return Err(ValueError::new("trailing characters in tel URI"));
        }
        Ok(UriRef::Tel(TelUriRef {
            src,
            number,
            params,
        }))
    } else {
        if rest.is_empty() || !chars::all(&chars::OPAQUE_URI, rest) {
            return Err(ValueError::new("bad absolute URI"));
        }
        Ok(UriRef::Absolute(src, s, sch.len()))
    }
}

#[inline]
fn parse_sip_ref<'a>(
    src: &'a Bytes,
    s: &'a [u8],
    secure: bool,
    ctx: UriContext,
) -> Result<SipUriRef<'a>, ValueError> {
    parse_sip_core::<false>(src, s, secure, ctx).map(|(u, _)| u)
}

/// The URI at the start of `r` (what follows a `<`), if it is a `sip:` or `sips:`
/// URI that ends at a `>`: the URI and the index of that `>`.
///
/// No URI character is `>`, so that `>` is the first one in `r`: the one at which
/// the owned decoder cuts before decoding the URI. At each place where the
/// decoder looks past the end of its slice, this one sees the `>` and decides
/// the same way (or fails, and the caller takes the owned decoder's road), so a
/// URI found here is the one the owned decoder finds. It saves searching for the
/// `>` first.
#[inline]
fn sip_uri_until_gt<'a>(src: &'a Bytes, r: &'a [u8]) -> Option<(UriRef<'a>, usize)> {
    let p = r.get(..5)?;
    let (secure, s) = if chars::eq_lower(&p[..4], b"sip:") {
        (false, &r[4..])
    } else if chars::eq_lower(p, b"sips:") {
        (true, &r[5..])
    } else {
        return None;
    };
    let (u, n) = parse_sip_core::<true>(src, s, secure, UriContext::Full).ok()?;
    let close = r.len() - s.len() + n;
    (r.get(close) == Some(&b'>')).then_some((UriRef::Sip(u), close))
}

/// [`uri`]'s `parse_sip`. `UNTIL_GT`: `s` runs on past the URI, which ends at a
/// `>`: userinfo is only looked for before the first `>`, headers end at the
/// first character that cannot be in them, and the URI's length is returned
/// instead of requiring that it fill `s`.
#[inline(always)]
fn parse_sip_core<'a, const UNTIL_GT: bool>(
    src: &'a Bytes,
    s: &'a [u8],
    secure: bool,
    ctx: UriContext,
) -> Result<(SipUriRef<'a>, usize), ValueError> {
    let un = span_esc(&USER_NP, s);
    let at = match s.get(un) {
        Some(b'@') => Some(un),
        None => None,
        Some(_) if UNTIL_GT => memchr::memchr2(b'@', b'>', &s[un..])
            .map(|p| un + p)
            .filter(|&p| s[p] == b'@'),
        Some(_) => memchr::memchr(b'@', &s[un..]).map(|p| un + p),
    };
    let (user, password, hostpart) = match at {
        Some(at) => {
            let info = &s[..at];
            let u = &info[..un];
            let p = match info.get(un) {
                None => None,
                Some(b':') => Some(&info[un + 1..]),
                Some(_) => return Err(ValueError::new("bad URI user")),
            };
            if u.is_empty() {
                return Err(ValueError::new("bad URI user"));
            }
            if let Some(p) = p
                && span_esc(&PASSWORD_NP, p) != p.len()
            {
                return Err(ValueError::new("bad URI password"));
            }
            (Some(u), p, &s[at + 1..])
        }
        None => (None, None, s),
    };
    let (host, mut rest) = host_prefix(hostpart)?;
    let mut port = None;
    if let Some(r) = rest.strip_prefix(b":") {
        let n = r
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(r.len());
        let p = chars::digits_u64(&r[..n])
            .filter(|p| *p <= 65535)
            .ok_or(ValueError::new("bad port"))?;
        port = Some(p as u16);
        rest = &r[n..];
    }
    let mut params = UriParamsRef::default();
    let mut headers = None;
    if ctx == UriContext::Full {
        let (p, n) = UriParamsRef::parse(rest)?;
        params = p;
        rest = &rest[n..];
        if let Some(h) = rest.strip_prefix(b"?") {
            let h = if UNTIL_GT {
                &h[..span4(&URI_HEADERS, h, 0)]
            } else {
                h
            };
            if h.is_empty() || !chars::all(&URI_HEADERS, h) || !chars::escapes_ok(h) {
                return Err(ValueError::new("bad URI headers"));
            }
            headers = Some(h);
            rest = &rest[1 + h.len()..];
        }
    }
    if !UNTIL_GT && !rest.is_empty() {
        return Err(ValueError::new("trailing characters in SIP URI"));
    }
    Ok((
        SipUriRef {
            src,
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        },
        s.len() - rest.len(),
    ))
}

// ---------------------------------------------------------------------------------
// Via

/// A borrowed [`Via`] value, checked as [`Via`]'s decoder checks it.
#[derive(Debug, Clone, Copy)]
pub struct ViaRef<'a> {
    src: &'a Bytes,
    protocol: &'a [u8],
    version: &'a [u8],
    transport: &'a [u8],
    host: HostRef<'a>,
    port: Option<u16>,
    params: ParamsRef<'a>,
}

impl<'a> ViaRef<'a> {
    /// The buffer this view borrows from: every slice it hands out lies in it, so
    /// `src().slice_ref(s)` is a zero-copy `Bytes` of any of them.
    #[inline]
    pub fn src(&self) -> &'a Bytes {
        self.src
    }
    /// Decodes one Via value held in `s`, a sub-slice of `src` (or `src` itself).
    pub fn parse(src: &'a Bytes, s: &'a [u8]) -> Result<ViaRef<'a>, ValueError> {
        let (v, n) = Self::parse_prefix(src, s)?;
        end(&s[n..])?;
        Ok(v)
    }

    /// Decodes the Via value at the start of `i`; returns it and where it ends.
    #[inline]
    fn parse_prefix(src: &'a Bytes, i: &'a [u8]) -> Result<(ViaRef<'a>, usize), ValueError> {
        let pe = span4(&TOKEN, i, 0);
        if pe == 0 {
            return Err(ValueError::new("bad protocol name"));
        }
        let k = skip_ws(i, pe);
        if i.get(k) != Some(&b'/') {
            return Err(ValueError::new("expected / in sent-protocol"));
        }
        let vs = skip_ws(i, k + 1);
        let ve = span4(&TOKEN, i, vs);
        if ve == vs {
            return Err(ValueError::new("bad protocol version"));
        }
        let k = skip_ws(i, ve);
        if i.get(k) != Some(&b'/') {
            return Err(ValueError::new("expected / in sent-protocol"));
        }
        let ts = skip_ws(i, k + 1);
        let te = span4(&TOKEN, i, ts);
        if te == ts {
            return Err(ValueError::new("bad transport"));
        }
        if !i.get(te).is_some_and(|c| chars::is_ws(*c)) {
            return Err(ValueError::new("expected LWS before sent-by"));
        }
        let (host, mut r) = host_prefix(&i[skip_ws(i, te)..])?;
        let mut port = None;
        if let Some(p) = sws(r).strip_prefix(b":") {
            let p = sws(p);
            let n = p
                .iter()
                .position(|c| !c.is_ascii_digit())
                .unwrap_or(p.len());
            let v = chars::digits_u64(&p[..n])
                .filter(|v| *v <= 65535)
                .ok_or(ValueError::new("bad sent-by port"))?;
            port = Some(v as u16);
            r = &p[n..];
        }
        let (params, n) = ParamsRef::parse(r)?;
        let used = i.len() - r.len() + n;
        Ok((
            ViaRef {
                src,
                protocol: &i[..pe],
                version: &i[vs..ve],
                transport: &i[ts..te],
                host,
                port,
                params,
            },
            used,
        ))
    }

    /// `protocol-name`, normally `SIP`.
    #[inline]
    pub fn protocol(&self) -> &'a [u8] {
        self.protocol
    }
    /// `protocol-version`, normally `2.0`.
    #[inline]
    pub fn version(&self) -> &'a [u8] {
        self.version
    }
    /// The transport token as received.
    #[inline]
    pub fn transport_bytes(&self) -> &'a [u8] {
        self.transport
    }
    /// The transport.
    pub fn transport(&self) -> Transport {
        Transport::from_token(self.src, self.transport)
    }
    /// sent-by host.
    #[inline]
    pub fn host(&self) -> HostRef<'a> {
        self.host
    }
    /// sent-by port.
    #[inline]
    pub fn port(&self) -> Option<u16> {
        self.port
    }
    /// Parameters in order.
    #[inline]
    pub fn params(&self) -> &ParamsRef<'a> {
        &self.params
    }
    /// The parameter `name` (ASCII case-insensitive), if present with a value.
    #[inline]
    pub fn param(&self, name: &str) -> Option<&'a [u8]> {
        self.params.value(name)
    }
    /// The `branch` parameter.
    #[inline]
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.params
            .value_lower(b"branch", &const { chars::words(b"branch") })
    }
    /// The `received` parameter.
    #[inline]
    pub fn received(&self) -> Option<&'a [u8]> {
        self.params
            .value_lower(b"received", &const { chars::words(b"received") })
    }
    /// The `maddr` parameter.
    #[inline]
    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.params
            .value_lower(b"maddr", &const { chars::words(b"maddr") })
    }
    /// `rport`, as [`Via::rport`] reads it.
    pub fn rport(&self) -> Option<Option<u16>> {
        match self
            .params
            .find(|n| name_is(n, b"rport", &const { chars::words(b"rport") }))?
        {
            None => Some(None),
            Some(v) => chars::digits_u64(v)
                .and_then(|p| u16::try_from(p).ok())
                .map(Some),
        }
    }
    /// True if the branch starts with the RFC 3261 magic cookie `z9hG4bK`.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(b"z9hG4bK"))
    }

    /// The owned [`Via`] (zero-copy slices of the message).
    pub fn to_owned(&self) -> Via {
        let src = self.src;
        Via {
            protocol: if self.protocol == b"SIP" {
                Bytes::from_static(b"SIP")
            } else {
                chars::sub(src, self.protocol)
            },
            version: if self.version == b"2.0" {
                Bytes::from_static(b"2.0")
            } else {
                chars::sub(src, self.version)
            },
            transport: self.transport(),
            host: self.host.to_host_in(src),
            port: self.port,
            params: self.params.to_params_in(src),
        }
    }
}

// ---------------------------------------------------------------------------------
// Addresses

/// A borrowed [`Address`] (From, To, Contact, Route, …), checked as [`Address`]'s
/// decoder checks it.
#[derive(Debug, Clone, Copy)]
pub struct AddressRef<'a> {
    src: &'a Bytes,
    display: Option<&'a [u8]>,
    uri: UriRef<'a>,
    params: ParamsRef<'a>,
}

impl<'a> AddressRef<'a> {
    /// The buffer this view borrows from: every slice it hands out lies in it, so
    /// `src().slice_ref(s)` is a zero-copy `Bytes` of any of them.
    #[inline]
    pub fn src(&self) -> &'a Bytes {
        self.src
    }
    /// Decodes one address held in `s`, a sub-slice of `src` (or `src` itself).
    pub fn parse(src: &'a Bytes, s: &'a [u8]) -> Result<AddressRef<'a>, ValueError> {
        let (a, n) = Self::parse_prefix(src, s)?;
        end(&s[n..])?;
        Ok(a)
    }

    /// Decodes the address at the start of `s`; returns it and where it ends.
    #[inline]
    fn parse_prefix(src: &'a Bytes, s: &'a [u8]) -> Result<(AddressRef<'a>, usize), ValueError> {
        let i = sws(s);
        let (display, after_display) = if i.first() == Some(&b'"') {
            let (r, q) = quoted_string(i)?;
            (Some(q), sws(r))
        } else {
            let stop = if i.first() == Some(&b'<') {
                Some(0)
            } else {
                memchr::memchr3(b'<', b';', b',', i)
            };
            match stop {
                Some(p) if i[p] == b'<' => {
                    let d = chars::trim_ws(&i[..p]);
                    if !d.iter().all(|&c| TOKEN[c as usize] || chars::is_ws(c)) {
                        return Err(ValueError::new(
                            "display name is neither tokens nor a quoted string",
                        ));
                    }
                    (if d.is_empty() { None } else { Some(d) }, &i[p..])
                }
                _ => (None, i),
            }
        };
        let (uri, after) = if let Some(r) = after_display.strip_prefix(b"<") {
            if let Some((uri, close)) = sip_uri_until_gt(src, r) {
                (uri, &r[close + 1..])
            } else {
                let close = memchr::memchr(b'>', r).ok_or(ValueError::new("missing >"))?;
                (
                    parse_uri_ref(src, &r[..close], UriContext::Full)?,
                    &r[close + 1..],
                )
            }
        } else {
            if display.is_some() {
                return Err(ValueError::new("display name without <addr-spec>"));
            }
            let n = after_display
                .iter()
                .position(|&c| c == b';' || c == b',' || chars::is_ws(c))
                .unwrap_or(after_display.len());
            (
                parse_uri_ref(src, &after_display[..n], UriContext::Bare)?,
                &after_display[n..],
            )
        };
        let (params, n) = ParamsRef::parse(after)?;
        let used = s.len() - after.len() + n;
        Ok((
            AddressRef {
                src,
                display,
                uri,
                params,
            },
            used,
        ))
    }

    /// The display name as received (quoted string with its quotes, or tokens).
    #[inline]
    pub fn display(&self) -> Option<&'a [u8]> {
        self.display
    }
    /// The display name without quotes and quoted-pair escapes.
    pub fn display_unquoted(&self) -> Option<std::borrow::Cow<'a, [u8]>> {
        self.display.map(crate::typed::unquote)
    }
    /// The URI.
    #[inline]
    pub fn uri(&self) -> &UriRef<'a> {
        &self.uri
    }
    /// Header parameters.
    #[inline]
    pub fn params(&self) -> &ParamsRef<'a> {
        &self.params
    }
    /// The parameter `name` (ASCII case-insensitive), if present with a value.
    #[inline]
    pub fn param(&self, name: &str) -> Option<&'a [u8]> {
        self.params.value(name)
    }
    /// The `tag` parameter.
    #[inline]
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.params
            .value_lower(b"tag", &const { chars::words(b"tag") })
    }
    /// Microsoft's `epid` parameter.
    #[inline]
    pub fn epid(&self) -> Option<&'a [u8]> {
        self.params
            .value_lower(b"epid", &const { chars::words(b"epid") })
    }

    /// The owned [`Address`] (zero-copy slices of the message).
    pub fn to_owned(&self) -> Address {
        Address {
            display: self.display.map(|d| chars::sub(self.src, d)),
            uri: self.uri.to_owned(),
            params: self.params.to_params_in(self.src),
        }
    }
}

// ---------------------------------------------------------------------------------
// Call-ID, CSeq

/// A borrowed, checked [`CallId`].
#[derive(Debug, Clone, Copy)]
pub struct CallIdRef<'a> {
    src: &'a Bytes,
    value: &'a [u8],
}

impl<'a> CallIdRef<'a> {
    /// The buffer this view borrows from: every slice it hands out lies in it, so
    /// `src().slice_ref(s)` is a zero-copy `Bytes` of any of them.
    #[inline]
    pub fn src(&self) -> &'a Bytes {
        self.src
    }
    /// Decodes a Call-ID held in `s`, a sub-slice of `src`.
    pub fn parse(src: &'a Bytes, s: &'a [u8]) -> Result<CallIdRef<'a>, ValueError> {
        let v = chars::trim_ws(s);
        let a = span4(&chars::WORD, v, 0);
        let ok = a > 0
            && match v.get(a) {
                None => true,
                Some(b'@') => {
                    let b = span4(&chars::WORD, v, a + 1);
                    b > a + 1 && b == v.len()
                }
                Some(_) => false,
            };
        if ok {
            Ok(CallIdRef { src, value: v })
        } else {
            Err(ValueError::new("bad Call-ID"))
        }
    }
    /// The Call-ID.
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.value
    }
    /// The owned [`CallId`].
    pub fn to_owned(&self) -> CallId {
        CallId(chars::sub(self.src, self.value))
    }
}

/// A borrowed, checked [`CSeq`].
#[derive(Debug, Clone, Copy)]
pub struct CSeqRef<'a> {
    src: &'a Bytes,
    /// Sequence number.
    pub seq: u32,
    method: &'a [u8],
}

impl<'a> CSeqRef<'a> {
    /// The buffer this view borrows from: every slice it hands out lies in it, so
    /// `src().slice_ref(s)` is a zero-copy `Bytes` of any of them.
    #[inline]
    pub fn src(&self) -> &'a Bytes {
        self.src
    }
    /// Decodes a CSeq held in `value`, a sub-slice of `src`.
    pub fn parse(src: &'a Bytes, value: &'a [u8]) -> Result<CSeqRef<'a>, ValueError> {
        let n = value
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(value.len());
        if n == 0 {
            return Err(ValueError::new("bad CSeq number"));
        }
        let (digits, r) = value.split_at(n);
        let seq = chars::digits_u64(digits)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(ValueError::new("CSeq number exceeds 2**32-1"))?;
        if !r.first().is_some_and(|c| chars::is_ws(*c)) {
            return Err(ValueError::new("expected LWS in CSeq"));
        }
        let r = sws(r);
        let n = span4(&TOKEN, r, 0);
        if n == 0 {
            return Err(ValueError::new("bad CSeq method"));
        }
        let (m, r) = r.split_at(n);
        end(r)?;
        Ok(CSeqRef {
            src,
            seq,
            method: m,
        })
    }
    /// The method token as received.
    #[inline]
    pub fn method_bytes(&self) -> &'a [u8] {
        self.method
    }
    /// The method (a known method allocates nothing).
    pub fn method(&self) -> Method {
        // A token: from_slice cannot fail.
        Method::from_slice(self.src, self.method).unwrap_or(Method::Invite)
    }
    /// The owned [`CSeq`].
    pub fn to_owned(&self) -> CSeq {
        CSeq {
            seq: self.seq,
            method: self.method(),
        }
    }
}

// ---------------------------------------------------------------------------------
// Media types

/// Checks a Content-Type value as [`crate::MediaType`]'s decoder does (`m-type
/// SLASH m-subtype *(SEMI m-parameter)`), without building it.
#[inline]
pub(crate) fn check_media_type(v: &[u8]) -> Result<(), ValueError> {
    let ts = skip_ws(v, 0);
    let te = span4(&TOKEN, v, ts);
    if te == ts {
        return Err(ValueError::new("bad media type"));
    }
    let k = skip_ws(v, te);
    if v.get(k) != Some(&b'/') {
        return Err(ValueError::new("expected / in media type"));
    }
    let ss = skip_ws(v, k + 1);
    let se = span4(&TOKEN, v, ss);
    if se == ss {
        return Err(ValueError::new("bad media subtype"));
    }
    let (_, n) = ParamsRef::parse(&v[se..])?;
    end(&v[se + n..])
}

// ---------------------------------------------------------------------------------
// Lists across header lines

/// The comma-separated elements of every header line of one kind, in order, as
/// [`crate::headers::split_list`] cuts them (empty lines skipped, an empty element
/// an error). Stops after the first error.
#[derive(Debug, Clone)]
struct Elements<'a> {
    headers: &'a Headers,
    kind: HeaderKind,
    next_entry: usize,
    src: &'a Bytes,
    value: &'a [u8],
    start: usize,
    in_line: bool,
    done: bool,
}

impl<'a> Elements<'a> {
    fn new(headers: &'a Headers, kind: HeaderKind) -> Self {
        Elements {
            headers,
            kind,
            next_entry: 0,
            src: &EMPTY_BYTES,
            value: &[],
            start: 0,
            in_line: false,
            done: false,
        }
    }

    /// Only the first line of this kind (as [`Headers::top_via`] reads it).
    fn first_line(headers: &'a Headers, kind: HeaderKind) -> Option<Self> {
        let (_, h) = headers.find_from(kind, 0)?;
        let (src, value) = h.value_src();
        Some(Elements {
            headers,
            kind,
            next_entry: usize::MAX,
            src,
            value,
            start: 0,
            in_line: true,
            done: false,
        })
    }

    #[inline]
    fn next_element(&mut self) -> Option<Result<(&'a Bytes, &'a [u8]), ValueError>> {
        if self.done {
            return None;
        }
        if !self.in_line {
            loop {
                let Some((idx, h)) = self.headers.find_from(self.kind, self.next_entry) else {
                    self.done = true;
                    return None;
                };
                self.next_entry = idx + 1;
                let (src, v) = h.value_src();
                if !v.is_empty() {
                    (self.src, self.value, self.start, self.in_line) = (src, v, 0, true);
                    break;
                }
            }
        }
        let value = self.value;
        let start = self.start;
        let mut i = start;
        let mut el_end = None;
        while let Some(p) = value
            .get(i..)
            .and_then(|r| memchr::memchr3(b',', b'"', b'<', r))
        {
            let at = i + p;
            match value[at] {
                b',' => {
                    el_end = Some(at);
                    break;
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
        let el = match el_end {
            Some(at) => {
                self.start = at + 1;
                &value[start..at]
            }
            None => {
                self.in_line = false;
                if self.next_entry == usize::MAX {
                    self.done = true;
                }
                &value[start.min(value.len())..]
            }
        };
        let el = chars::trim_ws(el);
        if el.is_empty() {
            self.done = true;
            return Some(Err(ValueError::new("empty list element")));
        }
        Some(Ok((self.src, el)))
    }
}

impl<'a> Elements<'a> {
    /// The next element, decoded in one pass: `prefix` decodes a value at the
    /// start of the rest of the line and says where it ends; then only `,` (or
    /// the end of the line) may follow. A decoder that succeeds has stopped at a
    /// `,` outside quoted strings and `<…>` (any other `"` or `<` is an error for
    /// it), exactly where [`Elements::next_element`] cuts; so this gives what
    /// splitting and then decoding with `full` gives. When the one pass fails,
    /// the element is split and decoded again with `full`, so that even the
    /// error is the owned decoders' one.
    #[inline(always)]
    fn next_parsed<T>(
        &mut self,
        prefix: impl FnOnce(&'a Bytes, &'a [u8]) -> Result<(T, usize), ValueError>,
        full: impl FnOnce(&'a Bytes, &'a [u8]) -> Result<T, ValueError>,
    ) -> Option<Result<T, ValueError>> {
        if self.done {
            return None;
        }
        if !self.in_line {
            loop {
                let Some((idx, h)) = self.headers.find_from(self.kind, self.next_entry) else {
                    self.done = true;
                    return None;
                };
                self.next_entry = idx + 1;
                let (src, v) = h.value_src();
                if !v.is_empty() {
                    (self.src, self.value, self.start, self.in_line) = (src, v, 0, true);
                    break;
                }
            }
        }
        let rest = self.value.get(self.start..).unwrap_or_default();
        let s = skip_ws(rest, 0);
        if s < rest.len()
            && rest[s] != b','
            && let Ok((t, n)) = prefix(self.src, &rest[s..])
        {
            let k = skip_ws(rest, s + n);
            if k == rest.len() {
                self.in_line = false;
                if self.next_entry == usize::MAX {
                    self.done = true;
                }
                return Some(Ok(t));
            }
            if rest[k] == b',' {
                self.start += k + 1;
                return Some(Ok(t));
            }
        }
        // Cold: split, then decode the whole element.
        let r = self.next_element()?.and_then(|(src, el)| full(src, el));
        if r.is_err() {
            self.done = true;
        }
        Some(r)
    }
}

static EMPTY_BYTES: Bytes = Bytes::from_static(b"");

/// Every Via value across all Via lines, top first: [`Message::vias`].
#[derive(Debug, Clone)]
pub struct ViaRefs<'a>(Elements<'a>);

impl<'a> Iterator for ViaRefs<'a> {
    type Item = Result<ViaRef<'a>, HeaderError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let r = self.0.next_parsed(ViaRef::parse_prefix, ViaRef::parse)?;
        Some(r.map_err(invalid(HeaderKind::Via)))
    }
}

/// Every address across all lines of one kind (Contact, Route, Record-Route).
#[derive(Debug, Clone)]
pub struct AddressRefs<'a>(Elements<'a>);

impl<'a> Iterator for AddressRefs<'a> {
    type Item = Result<AddressRef<'a>, HeaderError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let kind = self.0.kind;
        let r = self
            .0
            .next_parsed(AddressRef::parse_prefix, AddressRef::parse)?;
        Some(r.map_err(invalid(kind)))
    }
}

/// The Contact header, borrowed: `*`, or the addresses across all Contact lines.
#[derive(Debug, Clone)]
pub enum ContactRefs<'a> {
    /// `Contact: *`.
    Star,
    /// The addresses, decoded as they are iterated (empty when there is none).
    Addresses(AddressRefs<'a>),
}

impl<'a> ContactRefs<'a> {
    /// The owned [`Contacts`]; `Err` as [`Headers::contact`] would be.
    pub fn to_owned(self) -> Result<Contacts, HeaderError> {
        match self {
            ContactRefs::Star => Ok(Contacts::Star),
            ContactRefs::Addresses(a) => a
                .map(|a| a.map(|a| a.to_owned()))
                .collect::<Result<Vec<_>, _>>()
                .map(Contacts::Addresses),
        }
    }
}

impl Headers {
    #[inline]
    fn first_value(&self, kind: HeaderKind) -> Result<(&Bytes, &[u8]), HeaderError> {
        let (_, h) = self
            .find_from(kind, 0)
            .ok_or(HeaderError::Missing(kind.name()))?;
        Ok(h.value_src())
    }

    /// Every Via value, top first, borrowed; each is decoded as it is iterated and
    /// the iteration ends after an error. `Missing` if there is no Via value, as
    /// for [`Headers::via`]: `via()` is `Ok` iff this is `Ok` and every item is.
    #[inline]
    pub fn vias(&self) -> Result<ViaRefs<'_>, HeaderError> {
        if !self.get_all(HeaderKind::Via).any(|h| !h.value().is_empty()) {
            return Err(HeaderError::Missing("Via"));
        }
        Ok(ViaRefs(Elements::new(self, HeaderKind::Via)))
    }

    /// The topmost Via value, borrowed ([`Headers::top_via`]).
    pub fn top_via_ref(&self) -> Result<ViaRef<'_>, HeaderError> {
        let mut els =
            Elements::first_line(self, HeaderKind::Via).ok_or(HeaderError::Missing("Via"))?;
        // As top_via: the whole first line must split; its first element is decoded.
        let (src, first) = els
            .next_element()
            .ok_or(HeaderError::Missing("Via"))?
            .map_err(invalid(HeaderKind::Via))?;
        while let Some(e) = els.next_element() {
            e.map_err(invalid(HeaderKind::Via))?;
        }
        ViaRef::parse(src, first).map_err(invalid(HeaderKind::Via))
    }

    /// From, borrowed.
    #[inline]
    pub fn from_ref(&self) -> Result<AddressRef<'_>, HeaderError> {
        let (src, v) = self.first_value(HeaderKind::From)?;
        AddressRef::parse(src, v).map_err(invalid(HeaderKind::From))
    }

    /// To, borrowed.
    #[inline]
    pub fn to_ref(&self) -> Result<AddressRef<'_>, HeaderError> {
        let (src, v) = self.first_value(HeaderKind::To)?;
        AddressRef::parse(src, v).map_err(invalid(HeaderKind::To))
    }

    /// Call-ID, borrowed.
    #[inline]
    pub fn call_id_ref(&self) -> Result<CallIdRef<'_>, HeaderError> {
        let (src, v) = self.first_value(HeaderKind::CallId)?;
        CallIdRef::parse(src, v).map_err(invalid(HeaderKind::CallId))
    }

    /// CSeq, borrowed.
    #[inline]
    pub fn cseq_ref(&self) -> Result<CSeqRef<'_>, HeaderError> {
        let (src, v) = self.first_value(HeaderKind::CSeq)?;
        CSeqRef::parse(src, v).map_err(invalid(HeaderKind::CSeq))
    }

    /// Contact, borrowed: `Err` for a `*` mixed with other lines (as
    /// [`Headers::contact`]); addresses are decoded as they are iterated.
    #[inline]
    pub fn contact_refs(&self) -> Result<ContactRefs<'_>, HeaderError> {
        let mut lines = self.get_all(HeaderKind::Contact);
        if let Some(first) = lines.next()
            && first.value() == b"*"
        {
            if lines.next().is_some() {
                return Err(invalid(HeaderKind::Contact)(ValueError::new(
                    "* with other Contact values",
                )));
            }
            return Ok(ContactRefs::Star);
        }
        Ok(ContactRefs::Addresses(AddressRefs(Elements::new(
            self,
            HeaderKind::Contact,
        ))))
    }

    /// Route, every value in order, borrowed.
    pub fn route_refs(&self) -> AddressRefs<'_> {
        AddressRefs(Elements::new(self, HeaderKind::Route))
    }

    /// Record-Route, every value in order, borrowed.
    pub fn record_route_refs(&self) -> AddressRefs<'_> {
        AddressRefs(Elements::new(self, HeaderKind::RecordRoute))
    }
}

impl Message {
    /// Every Via value, top first, borrowed ([`Headers::vias`]).
    #[inline]
    pub fn vias(&self) -> Result<ViaRefs<'_>, HeaderError> {
        self.headers.vias()
    }
    /// The top Via value, borrowed.
    #[inline]
    pub fn top_via_ref(&self) -> Result<ViaRef<'_>, HeaderError> {
        self.headers.top_via_ref()
    }
    /// From, borrowed.
    #[inline]
    pub fn from_ref(&self) -> Result<AddressRef<'_>, HeaderError> {
        self.headers.from_ref()
    }
    /// To, borrowed.
    #[inline]
    pub fn to_ref(&self) -> Result<AddressRef<'_>, HeaderError> {
        self.headers.to_ref()
    }
    /// Call-ID, borrowed.
    #[inline]
    pub fn call_id_ref(&self) -> Result<CallIdRef<'_>, HeaderError> {
        self.headers.call_id_ref()
    }
    /// CSeq, borrowed.
    #[inline]
    pub fn cseq_ref(&self) -> Result<CSeqRef<'_>, HeaderError> {
        self.headers.cseq_ref()
    }
    /// Contact, borrowed ([`Headers::contact_refs`]).
    #[inline]
    pub fn contact_refs(&self) -> Result<ContactRefs<'_>, HeaderError> {
        self.headers.contact_refs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::typed::HeaderValue;

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    #[test]
    fn params_spill_past_inline_capacity() {
        let src = b(b"SIP/2.0/UDP h;a=1;b;c=2;d;e;f;g;h;i=\"q\";J=9;branch=z9hG4bKx");
        let v = ViaRef::parse(&src, &src).unwrap();
        assert_eq!(v.params.n, ParamsRef::SPILLED);
        assert_eq!(v.branch(), Some(&b"z9hG4bKx"[..]));
        assert_eq!(v.param("j"), Some(&b"9"[..]));
        assert_eq!(v.params().get("d"), Some(None));
        assert_eq!(v.to_owned(), Via::parse(&src).unwrap());
        let src = b(b"SIP/2.0/UDP h ; a = 1 ;B= \"x\" ;c");
        let v = ViaRef::parse(&src, &src).unwrap();
        assert_eq!(v.params.n, 3);
        assert_eq!(v.param("b"), Some(&b"\"x\""[..]));
        assert_eq!(v.params().get("C"), Some(None));
        assert_eq!(v.to_owned(), Via::parse(&src).unwrap());
    }

    #[test]
    fn fast_scanners_match_the_owned_ones() {
        // Every string of up to 6 bytes over digits, dots and a letter.
        let alphabet = b"0129.a";
        let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
        while let Some(s) = stack.pop() {
            assert_eq!(ipv4(&s), chars::ipv4(&s), "{s:?}");
            assert_eq!(host_span4(&s), uri::host_span(&s), "{s:?}");
            assert_eq!(span4(&TOKEN, &s, 0), chars::span_table(&TOKEN, &s, 0));
            if s.len() < 6 {
                for &c in alphabet {
                    let mut t = s.clone();
                    t.push(c);
                    stack.push(t);
                }
            }
        }
        for s in [
            &b"255.255.255.255"[..],
            b"256.1.1.1",
            b"1.2.3.4.",
            b"01.002.3.4",
        ] {
            assert_eq!(ipv4(s), chars::ipv4(s), "{s:?}");
        }
        for s in [&b"a%41b%4"[..], b"%zz", b"ab%41%42c;d", b"%", b"abc%4"] {
            assert_eq!(
                span_esc(&USER_NP, s),
                chars::span(&USER_NP, true, s),
                "{s:?}"
            );
        }
    }

    #[test]
    fn long_parameter_sections_are_re_read() {
        let long = "x".repeat(300);
        let v = format!("SIP/2.0/UDP h;branch=z9hG4bK1;big={long};rport");
        let src = Bytes::from(v);
        let via = ViaRef::parse(&src, &src).unwrap();
        assert_eq!(via.params.n, ParamsRef::SPILLED);
        assert_eq!(via.branch(), Some(&b"z9hG4bK1"[..]));
        assert_eq!(via.rport(), Some(None));
        assert_eq!(via.param("big").map(<[u8]>::len), Some(300));
        assert_eq!(via.to_owned(), Via::parse(&src).unwrap());
    }

    #[test]
    fn elements_split_like_split_list() {
        let m = Message::parse(b(
            b"OPTIONS sip:a@b SIP/2.0\r\nVia:\r\nVia: SIP/2.0/UDP a, SIP/2.0/UDP b\r\nX: 1\r\nv: SIP/2.0/TCP c\r\n\r\n",
        ))
        .unwrap();
        let hosts: Vec<_> = m
            .vias()
            .unwrap()
            .map(|v| v.unwrap().host().domain().unwrap())
            .collect();
        assert_eq!(hosts, [&b"a"[..], b"b", b"c"]);
        assert!(m.top_via_ref().is_err());
        let m = Message::parse(b(b"OPTIONS sip:a@b SIP/2.0\r\nVia:\r\n\r\n")).unwrap();
        assert!(matches!(m.vias(), Err(HeaderError::Missing("Via"))));
    }
}
