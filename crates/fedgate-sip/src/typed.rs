//! Typed header values, decoded on demand from a header's `Bytes`.
//!
//! Every type implements [`HeaderValue`]: `parse` reads one value (one element of
//! a comma-separated list), `encode` writes it back in canonical form, and
//! `parse(encode(x)) == x`. Names, parameters and display names are `Bytes` slices
//! of the original value; nothing is copied.

use bytes::Bytes;
use nom::bytes::complete::take_while1;
use nom::{IResult, Parser};

use crate::chars::{self, GEN_VALUE, TOKEN};
use crate::error::{HeaderError, ValueError};
use crate::headers::{HeaderKind, Headers, split_list};
use crate::method::Method;
use crate::uri::{self, Host, Param, Params, Uri, UriContext, push_u64};

/// A header value with a grammar: decode from bytes, encode canonically.
pub trait HeaderValue: Sized {
    /// Decodes one value from a whole header value (or one list element).
    fn parse(value: &Bytes) -> Result<Self, ValueError>;
    /// Decodes one value held in `s`, a sub-slice of `src`; the same as
    /// `parse(&src.slice_ref(s))`, but the decoders that keep slices take them of
    /// `src` directly (one reference-count update fewer per value).
    #[doc(hidden)]
    fn parse_in(src: &Bytes, s: &[u8]) -> Result<Self, ValueError> {
        Self::parse(&src.slice_ref(s))
    }
    /// Appends the canonical encoding.
    fn encode(&self, out: &mut Vec<u8>);
    /// The canonical encoding as `Bytes`.
    fn to_bytes(&self) -> Bytes {
        let mut v = Vec::with_capacity(64);
        self.encode(&mut v);
        Bytes::from(v)
    }
}

type PResult<'a, T> = IResult<&'a [u8], T>;

pub(crate) fn sws(i: &[u8]) -> &[u8] {
    let n = i.iter().position(|c| !chars::is_ws(*c)).unwrap_or(i.len());
    &i[n..]
}

fn token(i: &[u8]) -> PResult<'_, &[u8]> {
    take_while1(|c: u8| TOKEN[c as usize]).parse(i)
}

/// `quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE`; returns the
/// string with its quotes. `qdtext` allows UTF8-NONASCII; `quoted-pair` allows
/// %x00-09 / %x0B-0C / %x0E-7F (NUL included).
pub(crate) fn quoted_string(i: &[u8]) -> Result<(&[u8], &[u8]), ValueError> {
    if i.first() != Some(&b'"') {
        return Err(ValueError::new("expected quoted string"));
    }
    let mut k = 1;
    while k < i.len() {
        match i[k] {
            b'"' => return Ok((&i[k + 1..], &i[..k + 1])),
            b'\\' => match i.get(k + 1) {
                Some(&c) if c <= 0x7f && c != b'\r' && c != b'\n' => k += 2,
                _ => return Err(ValueError::new("bad quoted-pair")),
            },
            c if c == b' ' || c == b'\t' || c >= 0x21 => k += 1,
            _ => return Err(ValueError::new("control character in quoted string")),
        }
    }
    Err(ValueError::new("unterminated quoted string"))
}

/// Removes the quotes and quoted-pair backslashes of a quoted string; returns other
/// values unchanged.
pub fn unquote(s: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match s {
        [b'"', inner @ .., b'"'] => {
            if memchr::memchr(b'\\', inner).is_none() {
                return std::borrow::Cow::Borrowed(inner);
            }
            let mut out = Vec::with_capacity(inner.len());
            let mut it = inner.iter();
            while let Some(&c) = it.next() {
                if c == b'\\' {
                    if let Some(&n) = it.next() {
                        out.push(n);
                    }
                } else {
                    out.push(c);
                }
            }
            std::borrow::Cow::Owned(out)
        }
        _ => std::borrow::Cow::Borrowed(s),
    }
}

/// `*( SEMI generic-param )` with `generic-param = token [ EQUAL gen-value ]` and
/// `gen-value = token / host / quoted-string`. Stops at anything that is not `;`.
pub(crate) fn header_params<'a>(
    src: &Bytes,
    i: &'a [u8],
) -> Result<(&'a [u8], Params), ValueError> {
    // Fast exit: no parameters (the common case for To, Contact, …).
    let mut k = skip_ws(i, 0);
    if i.get(k) != Some(&b';') {
        return Ok((i, Params::default()));
    }
    let mut params = Vec::with_capacity(4);
    let mut at = 0;
    while i.get(k) == Some(&b';') {
        let ns = skip_ws(i, k + 1);
        let ne = chars::span_table(&TOKEN, i, ns);
        if ne == ns {
            return Err(ValueError::new("empty or bad parameter name"));
        }
        let name = &i[ns..ne];
        let after = skip_ws(i, ne);
        let (next, value) = if i.get(after) == Some(&b'=') {
            let vs = skip_ws(i, after + 1);
            if i.get(vs) == Some(&b'"') {
                let (r, q) = quoted_string(&i[vs..])?;
                (i.len() - r.len(), Some(q))
            } else {
                let ve = chars::span_table(&GEN_VALUE, i, vs);
                if ve == vs {
                    return Err(ValueError::new("bad parameter value"));
                }
                (ve, Some(&i[vs..ve]))
            }
        } else {
            (ne, None)
        };
        params.push(Param {
            name: uri::param_name(src, name),
            value: value.map(|v| chars::sub(src, v)),
        });
        at = next;
        k = skip_ws(i, next);
    }
    Ok((&i[at..], Params(params)))
}

/// Index of the first byte at or after `k` that is not SP or HTAB.
#[inline]
pub(crate) fn skip_ws(i: &[u8], mut k: usize) -> usize {
    while k < i.len() && chars::is_ws(i[k]) {
        k += 1;
    }
    k
}

pub(crate) fn end(rest: &[u8]) -> Result<(), ValueError> {
    if sws(rest).is_empty() {
        Ok(())
    } else {
        Err(ValueError::new("trailing characters"))
    }
}

// ---------------------------------------------------------------------------------
// Via

/// The transport of a Via (`transport = "UDP" / "TCP" / "TLS" / "SCTP" / "TLS-SCTP"
/// / other-transport`), case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP
    Udp,
    /// TCP
    Tcp,
    /// TLS
    Tls,
    /// SCTP
    Sctp,
    /// TLS-SCTP
    TlsSctp,
    /// WS (RFC 7118)
    Ws,
    /// WSS (RFC 7118)
    Wss,
    /// Any other token, as received.
    Other(Bytes),
}

impl Transport {
    pub(crate) fn from_token(src: &Bytes, t: &[u8]) -> Transport {
        match t.len() {
            2 if chars::eq_lower(t, b"ws") => Transport::Ws,
            3 if chars::eq_lower(t, b"tls") => Transport::Tls,
            3 if chars::eq_lower(t, b"tcp") => Transport::Tcp,
            3 if chars::eq_lower(t, b"udp") => Transport::Udp,
            3 if chars::eq_lower(t, b"wss") => Transport::Wss,
            4 if chars::eq_lower(t, b"sctp") => Transport::Sctp,
            8 if chars::eq_lower(t, b"tls-sctp") => Transport::TlsSctp,
            _ => Transport::Other(chars::sub(src, t)),
        }
    }

    /// The transport name (upper case for known ones).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Transport::Udp => b"UDP",
            Transport::Tcp => b"TCP",
            Transport::Tls => b"TLS",
            Transport::Sctp => b"SCTP",
            Transport::TlsSctp => b"TLS-SCTP",
            Transport::Ws => b"WS",
            Transport::Wss => b"WSS",
            Transport::Other(b) => b,
        }
    }
}

/// One Via value (RFC 3261 §20.42).
///
/// ```text
/// via-parm      = sent-protocol LWS sent-by *( SEMI via-params )
/// sent-protocol = protocol-name SLASH protocol-version SLASH transport
/// sent-by       = host [ COLON port ]
/// via-params    = via-ttl / via-maddr / via-received / via-branch / via-extension
/// ```
///
/// All parameters, including Microsoft's `ms-received-port` and `ms-received-cid`,
/// stay in `params` in order; the accessors read from there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Via {
    /// `protocol-name`, normally `SIP`.
    pub protocol: Bytes,
    /// `protocol-version`, normally `2.0`.
    pub version: Bytes,
    /// Transport.
    pub transport: Transport,
    /// sent-by host.
    pub host: Host,
    /// sent-by port.
    pub port: Option<u16>,
    /// Parameters in order.
    pub params: Params,
}

impl Via {
    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&Bytes> {
        self.params.value("branch")
    }
    /// The `received` parameter.
    pub fn received(&self) -> Option<&Bytes> {
        self.params.value("received")
    }
    /// `rport`: `None` if absent, `Some(None)` if present without a value,
    /// `Some(Some(port))` with one (a non-numeric value reads as absent).
    pub fn rport(&self) -> Option<Option<u16>> {
        match self.params.get("rport")? {
            None => Some(None),
            Some(v) => chars::digits_u64(v)
                .and_then(|p| u16::try_from(p).ok())
                .map(Some),
        }
    }
    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&Bytes> {
        self.params.value("maddr")
    }
    /// True if the branch starts with the RFC 3261 magic cookie `z9hG4bK`.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(b"z9hG4bK"))
    }
}

#[inline]
fn via_parse(src: &Bytes, i: &[u8]) -> Result<Via, ValueError> {
    let pe = chars::span_table(&TOKEN, i, 0);
    if pe == 0 {
        return Err(ValueError::new("bad protocol name"));
    }
    let k = skip_ws(i, pe);
    if i.get(k) != Some(&b'/') {
        return Err(ValueError::new("expected / in sent-protocol"));
    }
    let vs = skip_ws(i, k + 1);
    let ve = chars::span_table(&TOKEN, i, vs);
    if ve == vs {
        return Err(ValueError::new("bad protocol version"));
    }
    let k = skip_ws(i, ve);
    if i.get(k) != Some(&b'/') {
        return Err(ValueError::new("expected / in sent-protocol"));
    }
    let ts = skip_ws(i, k + 1);
    let te = chars::span_table(&TOKEN, i, ts);
    if te == ts {
        return Err(ValueError::new("bad transport"));
    }
    if !i.get(te).is_some_and(|c| chars::is_ws(*c)) {
        return Err(ValueError::new("expected LWS before sent-by"));
    }
    let (host, mut r) = uri::parse_host_prefix(src, &i[skip_ws(i, te)..])?;
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
    let (r, params) = header_params(src, r)?;
    end(r)?;
    let (protocol, version) = (&i[..pe], &i[vs..ve]);
    Ok(Via {
        protocol: if protocol == b"SIP" {
            Bytes::from_static(b"SIP")
        } else {
            chars::sub(src, protocol)
        },
        version: if version == b"2.0" {
            Bytes::from_static(b"2.0")
        } else {
            chars::sub(src, version)
        },
        transport: Transport::from_token(src, &i[ts..te]),
        host,
        port,
        params,
    })
}

impl HeaderValue for Via {
    fn parse(value: &Bytes) -> Result<Self, ValueError> {
        via_parse(value, value)
    }
    fn parse_in(src: &Bytes, s: &[u8]) -> Result<Self, ValueError> {
        via_parse(src, s)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.protocol);
        out.push(b'/');
        out.extend_from_slice(&self.version);
        out.push(b'/');
        out.extend_from_slice(self.transport.as_bytes());
        out.push(b' ');
        self.host.encode(out);
        if let Some(p) = self.port {
            out.push(b':');
            push_u64(out, u64::from(p));
        }
        self.params.encode(out);
    }
}

// ---------------------------------------------------------------------------------
// Addresses

/// A name-addr or addr-spec with header parameters: the value of From, To, Contact,
/// Route, Record-Route, Refer-To, … (RFC 3261 §20.10, §20.20, §20.39).
///
/// ```text
/// name-addr    = [ display-name ] LAQUOT addr-spec RAQUOT
/// display-name = *(token LWS) / quoted-string
/// from-spec    = ( name-addr / addr-spec ) *( SEMI from-param )
/// ```
///
/// Without `<>`, parameters after the URI are header parameters (`;tag=`), as RFC
/// 3261 §20 requires. Encoding always uses `<>`. Microsoft's `epid` and any other
/// parameter stay in `params`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// The display name as received: a quoted string with its quotes, or the
    /// unquoted tokens. Use [`Address::display_unquoted`] for the text.
    pub display: Option<Bytes>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters (`tag`, `epid`, `expires`, `q`, …).
    pub params: Params,
}

impl Address {
    /// An address with just a URI.
    pub fn new(uri: Uri) -> Self {
        Address {
            display: None,
            uri,
            params: Params::default(),
        }
    }
    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&Bytes> {
        self.params.value("tag")
    }
    /// Microsoft's `epid` endpoint-id parameter.
    pub fn epid(&self) -> Option<&Bytes> {
        self.params.value("epid")
    }
    /// The display name without quotes and quoted-pair escapes.
    pub fn display_unquoted(&self) -> Option<std::borrow::Cow<'_, [u8]>> {
        self.display.as_deref().map(unquote)
    }
}

#[inline(always)]
/// Reads an address at the start of `i`; `rest` receives what follows it.
fn address_parse<'a>(src: &Bytes, i: &'a [u8], rest: &mut &'a [u8]) -> Result<Address, ValueError> {
    let i = sws(i);
    let (display, after_display) = if i.first() == Some(&b'"') {
        let (r, q) = quoted_string(i)?;
        (Some(q), sws(r))
    } else {
        // Unquoted display name: tokens separated by LWS, up to '<'. If there is no
        // '<' before the first ';' or ',', this is a bare addr-spec.
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
    let (u, after, ctx) = if let Some(r) = after_display.strip_prefix(b"<") {
        let close = memchr::memchr(b'>', r).ok_or(ValueError::new("missing >"))?;
        (&r[..close], &r[close + 1..], UriContext::Full)
    } else {
        if display.is_some() {
            return Err(ValueError::new("display name without <addr-spec>"));
        }
        let n = after_display
            .iter()
            .position(|&c| c == b';' || c == b',' || chars::is_ws(c))
            .unwrap_or(after_display.len());
        (&after_display[..n], &after_display[n..], UriContext::Bare)
    };
    // The URI first: its errors say more than those of what follows it.
    let uri = uri::parse_uri(src, u, ctx)?;
    let (r, params) = header_params(src, after)?;
    *rest = r;
    Ok(Address {
        display: display.map(|d| chars::sub(src, d)),
        uri,
        params,
    })
}

impl HeaderValue for Address {
    fn parse(value: &Bytes) -> Result<Self, ValueError> {
        Self::parse_in(value, value)
    }
    #[inline]
    fn parse_in(src: &Bytes, s: &[u8]) -> Result<Self, ValueError> {
        let mut r: &[u8] = &[];
        let a = address_parse(src, s, &mut r)?;
        end(r)?;
        Ok(a)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        if let Some(d) = &self.display {
            out.extend_from_slice(d);
            out.push(b' ');
        }
        out.push(b'<');
        self.uri.encode(out);
        out.push(b'>');
        self.params.encode(out);
    }
}

/// The Contact header: `*` or a list of addresses (RFC 3261 §20.10).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Contacts {
    /// `Contact: *` (REGISTER removing all bindings).
    Star,
    /// The addresses, in order, across all Contact lines (empty when there is none).
    Addresses(Vec<Address>),
}

// ---------------------------------------------------------------------------------
// Scalars and simple values

/// The Call-ID (`callid = word [ "@" word ]`), kept verbatim. `%` is not an escape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallId(pub Bytes);

impl HeaderValue for CallId {
    fn parse(value: &Bytes) -> Result<Self, ValueError> {
        Self::parse_in(value, value)
    }
    fn parse_in(src: &Bytes, s: &[u8]) -> Result<Self, ValueError> {
        let v = chars::trim_ws(s);
        // word [ "@" word ]: `word` characters exclude '@'.
        let a = chars::span_table(&chars::WORD, v, 0);
        let ok = a > 0
            && match v.get(a) {
                None => true,
                Some(b'@') => {
                    let b = chars::span_table(&chars::WORD, v, a + 1);
                    b > a + 1 && b == v.len()
                }
                Some(_) => false,
            };
        if ok {
            Ok(CallId(chars::sub(src, v)))
        } else {
            Err(ValueError::new("bad Call-ID"))
        }
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

/// `CSeq = 1*DIGIT LWS Method`; the number must fit 32 bits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CSeq {
    /// Sequence number.
    pub seq: u32,
    /// Method.
    pub method: Method,
}

impl HeaderValue for CSeq {
    fn parse(value: &Bytes) -> Result<Self, ValueError> {
        Self::parse_in(value, value)
    }
    fn parse_in(src: &Bytes, value: &[u8]) -> Result<Self, ValueError> {
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
        let (r, m) = token(r).map_err(|_| ValueError::new("bad CSeq method"))?;
        end(r)?;
        Ok(CSeq {
            seq,
            method: Method::from_slice(src, m)?,
        })
    }
    fn encode(&self, out: &mut Vec<u8>) {
        push_u64(out, u64::from(self.seq));
        out.push(b' ');
        out.extend_from_slice(self.method.as_bytes());
    }
}

fn number(value: &[u8], what: &'static str) -> Result<u64, ValueError> {
    chars::digits_u64(chars::trim_ws(value)).ok_or(ValueError::new(what))
}

/// `Max-Forwards = 1*DIGIT`, 0–255 (RFC 3261 §20.22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MaxForwards(pub u8);

impl HeaderValue for MaxForwards {
    fn parse(value: &Bytes) -> Result<Self, ValueError> {
        Self::parse_in(value, value)
    }
    fn parse_in(_: &Bytes, value: &[u8]) -> Result<Self, ValueError> {
        let n = number(value, "bad Max-Forwards")?;
        u8::try_from(n)
            .map(MaxForwards)
            .map_err(|_| ValueError::new("Max-Forwards exceeds 255"))
    }
    fn encode(&self, out: &mut Vec<u8>) {
        push_u64(out, u64::from(self.0));
    }
}

/// `Content-Length = 1*DIGIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentLength(pub u64);

impl HeaderValue for ContentLength {
    fn parse(value: &Bytes) -> Result<Self, ValueError> {
        number(value, "bad Content-Length").map(ContentLength)
    }
    fn parse_in(_: &Bytes, s: &[u8]) -> Result<Self, ValueError> {
        number(s, "bad Content-Length").map(ContentLength)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        push_u64(out, self.0);
    }
}

/// `delta-seconds = 1*DIGIT` (Expires, Min-Expires). Values beyond 2**32-1 are
/// read as 2**32-1 (RFC 3261 §20.19 range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeltaSeconds(pub u32);

impl HeaderValue for DeltaSeconds {
    fn parse(value: &Bytes) -> Result<Self, ValueError> {
        let v = chars::trim_ws(value);
        if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
            return Err(ValueError::new("bad delta-seconds"));
        }
        Ok(DeltaSeconds(
            chars::digits_u64(v)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(u32::MAX),
        ))
    }
    fn encode(&self, out: &mut Vec<u8>) {
        push_u64(out, u64::from(self.0));
    }
}

/// A media type with parameters: Content-Type, and each element of Accept
/// (`m-type SLASH m-subtype *(SEMI m-parameter)`; `*` is a token character, so
/// `*/*` parses).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MediaType {
    /// Type (`application`).
    pub mtype: Bytes,
    /// Subtype (`pidf+xml`).
    pub subtype: Bytes,
    /// Parameters (`charset=UTF-8`, `msgr=…`).
    pub params: Params,
}

impl MediaType {
    /// True if type and subtype equal `t`/`s`, ignoring ASCII case.
    pub fn is(&self, t: &str, s: &str) -> bool {
        self.mtype.eq_ignore_ascii_case(t.as_bytes())
            && self.subtype.eq_ignore_ascii_case(s.as_bytes())
    }
}

impl HeaderValue for MediaType {
    fn parse(value: &Bytes) -> Result<Self, ValueError> {
        let i = sws(value);
        let (r, t) = token(i).map_err(|_| ValueError::new("bad media type"))?;
        let r = sws(r)
            .strip_prefix(b"/")
            .ok_or(ValueError::new("expected / in media type"))?;
        let (r, s) = token(sws(r)).map_err(|_| ValueError::new("bad media subtype"))?;
        let (r, params) = header_params(value, r)?;
        end(r)?;
        Ok(MediaType {
            mtype: chars::sub(value, t),
            subtype: chars::sub(value, s),
            params,
        })
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.mtype);
        out.push(b'/');
        out.extend_from_slice(&self.subtype);
        self.params.encode(out);
    }
}

/// A token with parameters: Event (`event-type *( SEMI event-param )`, RFC 6665)
/// and Subscription-State (`substate-value *( SEMI subexp-params )`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenParams {
    /// The token (`presence`, `active`).
    pub token: Bytes,
    /// Parameters (`id`, `expires`, `reason`, …).
    pub params: Params,
}

/// The Event header value.
pub type Event = TokenParams;
/// The Subscription-State header value.
pub type SubscriptionState = TokenParams;

impl TokenParams {
    /// The `expires` parameter as a number.
    pub fn expires(&self) -> Option<u32> {
        self.params
            .value("expires")
            .and_then(|v| chars::digits_u64(v))
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    }
}

impl HeaderValue for TokenParams {
    fn parse(value: &Bytes) -> Result<Self, ValueError> {
        let (r, t) = token(sws(value)).map_err(|_| ValueError::new("bad token"))?;
        let (r, params) = header_params(value, r)?;
        end(r)?;
        Ok(TokenParams {
            token: chars::sub(value, t),
            params,
        })
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.token);
        self.params.encode(out);
    }
}

/// An option tag (Supported, Require, Proxy-Require, Unsupported): a token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OptionTag(pub Bytes);

impl HeaderValue for OptionTag {
    fn parse(value: &Bytes) -> Result<Self, ValueError> {
        let v = chars::trim_ws(value);
        if chars::is_token(v) {
            Ok(OptionTag(chars::sub(value, v)))
        } else {
            Err(ValueError::new("bad option tag"))
        }
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

impl HeaderValue for Method {
    fn parse(value: &Bytes) -> Result<Self, ValueError> {
        Method::from_slice(value, chars::trim_ws(value))
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

// ---------------------------------------------------------------------------------
// Accessors on the header list

fn invalid(kind: HeaderKind) -> impl Fn(ValueError) -> HeaderError {
    move |error| HeaderError::Invalid {
        name: kind.name(),
        error,
    }
}

impl Headers {
    /// Decodes the first header of `kind` as `T`.
    pub fn typed<T: HeaderValue>(&self, kind: HeaderKind) -> Result<T, HeaderError> {
        let h = self.get(kind).ok_or(HeaderError::Missing(kind.name()))?;
        let (src, v) = h.value_src();
        T::parse_in(src, v).map_err(invalid(kind))
    }

    /// Decodes every comma-separated element of every header of `kind`, in order.
    /// No header gives an empty list; an empty header value (`Supported:`) adds
    /// nothing.
    pub fn typed_list<T: HeaderValue>(&self, kind: HeaderKind) -> Result<Vec<T>, HeaderError> {
        let mut out = Vec::new();
        for h in self.get_all(kind) {
            let (src, v) = h.value_src();
            if v.is_empty() {
                continue;
            }
            split_list(v, |el| {
                let t = T::parse_in(src, el)?;
                if out.capacity() == 0 {
                    // Most lists have one or two elements.
                    out.reserve_exact(2);
                }
                out.push(t);
                Ok(())
            })
            .map_err(invalid(kind))?;
        }
        Ok(out)
    }

    /// Every Via value, top first (RFC 3261 §20.42). `Missing` if there is none.
    pub fn via(&self) -> Result<Vec<Via>, HeaderError> {
        let v: Vec<Via> = self.typed_list(HeaderKind::Via)?;
        if v.is_empty() {
            Err(HeaderError::Missing("Via"))
        } else {
            Ok(v)
        }
    }

    /// The topmost Via value only.
    pub fn top_via(&self) -> Result<Via, HeaderError> {
        let h = self
            .get(HeaderKind::Via)
            .ok_or(HeaderError::Missing("Via"))?;
        let (src, v) = h.value_src();
        let mut first = None;
        split_list(v, |el| {
            if first.is_none() {
                first = Some(el);
            }
            Ok(())
        })
        .map_err(invalid(HeaderKind::Via))?;
        let first = first.ok_or(HeaderError::Missing("Via"))?;
        Via::parse_in(src, first).map_err(invalid(HeaderKind::Via))
    }

    /// From.
    pub fn from(&self) -> Result<Address, HeaderError> {
        self.typed(HeaderKind::From)
    }
    /// To.
    pub fn to(&self) -> Result<Address, HeaderError> {
        self.typed(HeaderKind::To)
    }
    /// Call-ID.
    pub fn call_id(&self) -> Result<CallId, HeaderError> {
        self.typed(HeaderKind::CallId)
    }
    /// CSeq.
    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        self.typed(HeaderKind::CSeq)
    }
    /// Max-Forwards.
    pub fn max_forwards(&self) -> Result<MaxForwards, HeaderError> {
        self.typed(HeaderKind::MaxForwards)
    }
    /// Content-Length.
    pub fn content_length(&self) -> Result<ContentLength, HeaderError> {
        self.typed(HeaderKind::ContentLength)
    }
    /// Content-Type.
    pub fn content_type(&self) -> Result<MediaType, HeaderError> {
        self.typed(HeaderKind::ContentType)
    }
    /// Expires.
    pub fn expires(&self) -> Result<DeltaSeconds, HeaderError> {
        self.typed(HeaderKind::Expires)
    }
    /// Min-Expires.
    pub fn min_expires(&self) -> Result<DeltaSeconds, HeaderError> {
        self.typed(HeaderKind::MinExpires)
    }
    /// Event.
    pub fn event(&self) -> Result<Event, HeaderError> {
        self.typed(HeaderKind::Event)
    }
    /// Subscription-State.
    pub fn subscription_state(&self) -> Result<SubscriptionState, HeaderError> {
        self.typed(HeaderKind::SubscriptionState)
    }

    /// Contact: `*`, or all addresses across all Contact lines. A `*` mixed with
    /// anything else is an error.
    pub fn contact(&self) -> Result<Contacts, HeaderError> {
        let mut lines = self.get_all(HeaderKind::Contact);
        if let Some(first) = lines.next()
            && first.value() == b"*"
        {
            if lines.next().is_some() {
                return Err(invalid(HeaderKind::Contact)(ValueError::new(
                    "* with other Contact values",
                )));
            }
            return Ok(Contacts::Star);
        }
        self.typed_list(HeaderKind::Contact)
            .map(Contacts::Addresses)
    }
    /// Route, all values in order.
    pub fn route(&self) -> Result<Vec<Address>, HeaderError> {
        self.typed_list(HeaderKind::Route)
    }
    /// Record-Route, all values in order.
    pub fn record_route(&self) -> Result<Vec<Address>, HeaderError> {
        self.typed_list(HeaderKind::RecordRoute)
    }
    /// Allow.
    pub fn allow(&self) -> Result<Vec<Method>, HeaderError> {
        self.typed_list(HeaderKind::Allow)
    }
    /// Supported.
    pub fn supported(&self) -> Result<Vec<OptionTag>, HeaderError> {
        self.typed_list(HeaderKind::Supported)
    }
    /// Require.
    pub fn require(&self) -> Result<Vec<OptionTag>, HeaderError> {
        self.typed_list(HeaderKind::Require)
    }
    /// Proxy-Require.
    pub fn proxy_require(&self) -> Result<Vec<OptionTag>, HeaderError> {
        self.typed_list(HeaderKind::ProxyRequire)
    }
    /// Accept.
    pub fn accept(&self) -> Result<Vec<MediaType>, HeaderError> {
        self.typed_list(HeaderKind::Accept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    #[test]
    fn quoted_strings() {
        assert_eq!(
            quoted_string(b"\"a\\\"b\" rest").unwrap(),
            (&b" rest"[..], &b"\"a\\\"b\""[..])
        );
        assert!(quoted_string(b"\"open").is_err());
        assert!(quoted_string(b"\"bad\\\r\"").is_err());
        assert!(quoted_string(b"\"ctl\x01\"").is_err());
        assert_eq!(unquote(b"\"a\\\\b\\\"\"").as_ref(), b"a\\b\"");
        assert_eq!(unquote(b"token").as_ref(), b"token");
    }

    #[test]
    fn scalars() {
        assert!(CSeq::parse(&b(b"4294967296 INVITE")).is_err());
        assert_eq!(CSeq::parse(&b(b"4294967295 INVITE")).unwrap().seq, u32::MAX);
        assert!(CSeq::parse(&b(b"1INVITE")).is_err());
        assert!(CSeq::parse(&b(b"1 INVITE x")).is_err());
        assert!(MaxForwards::parse(&b(b"256")).is_err());
        assert_eq!(MaxForwards::parse(&b(b"0070")).unwrap().0, 70);
        assert_eq!(
            DeltaSeconds::parse(&b(b"99999999999999999999999"))
                .unwrap()
                .0,
            u32::MAX
        );
        assert!(DeltaSeconds::parse(&b(b"-1")).is_err());
        assert!(ContentLength::parse(&b(b"five")).is_err());
        assert!(CallId::parse(&b(b"a@b@c")).is_err());
        assert!(CallId::parse(&b(b"a b")).is_err());
    }

    #[test]
    fn via_forms() {
        let v = Via::parse(&b(b"SIP / 2.0 / TLS [2001:db8::2] : 5061 ;rport;received=2001:db8::9;branch=z9hG4bKx;maddr=224.2.0.1;ttl=16")).unwrap();
        assert_eq!(v.transport, Transport::Tls);
        assert_eq!(v.port, Some(5061));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received().unwrap().as_ref(), b"2001:db8::9");
        assert_eq!(v.maddr().unwrap().as_ref(), b"224.2.0.1");
        assert!(v.has_rfc3261_branch());
        assert!(Via::parse(&b(b"SIP/2.0/UDP")).is_err());
        assert!(Via::parse(&b(b"SIP/2.0/UDPhost")).is_err());
        assert!(Via::parse(&b(b"SIP/2.0/UDP host;;x")).is_err());
        assert!(Via::parse(&b(b"SIP/2.0/UDP host:99999")).is_err());
    }

    #[test]
    fn addresses() {
        let a = Address::parse(&b(b"\"A \\\"B\\\"\"<sip:a@b>;tag=1;epid=e1")).unwrap();
        assert_eq!(a.display_unquoted().unwrap().as_ref(), b"A \"B\"");
        assert_eq!(
            (a.tag().unwrap().as_ref(), a.epid().unwrap().as_ref()),
            (&b"1"[..], &b"e1"[..])
        );
        assert!(Address::parse(&b(b"Bell, Alexander <sip:a@b>")).is_err());
        assert!(Address::parse(&b(b"< sip:a@b >")).is_err());
        assert!(Address::parse(&b(b"name sip:a@b")).is_err());
        assert!(Address::parse(&b(b"<sip:a@b")).is_err());
        assert!(Address::parse(&b(b"<sip:a@b>;")).is_err());
        // Bare addr-spec: parameters belong to the header.
        let a = Address::parse(&b(b"sip:a@b;tag=x")).unwrap();
        assert_eq!(a.tag().unwrap().as_ref(), b"x");
        assert!(a.uri.as_sip().unwrap().params.is_empty());
        assert!(Address::parse(&b(b"sip:a@b?x=y")).is_err());
    }

    #[test]
    fn lists_on_headers() {
        let m = crate::Message::parse(Bytes::from_static(
            b"OPTIONS sip:a@b SIP/2.0\r\nContact: *\r\nContact: <sip:x@y>\r\nSupported:\r\nAllow: INVITE, ACK,FOO\r\nVia: SIP/2.0/UDP a, ,SIP/2.0/UDP b\r\n\r\n",
        ))
        .unwrap();
        assert!(m.contact().is_err());
        assert_eq!(m.headers().supported().unwrap(), vec![]);
        assert_eq!(m.headers().allow().unwrap().len(), 3);
        assert!(m.via().is_err());
        assert!(matches!(m.from(), Err(HeaderError::Missing("From"))));
    }
}
