//! URIs: `sip:`, `sips:`, `tel:` and opaque absolute URIs (RFC 3261 §19.1, §25.1;
//! RFC 3966).
//!
//! ```text
//! SIP-URI      = "sip:" [ userinfo ] hostport uri-parameters [ headers ]
//! SIPS-URI     = "sips:" [ userinfo ] hostport uri-parameters [ headers ]
//! userinfo     = ( user / telephone-subscriber ) [ ":" password ] "@"
//! hostport     = host [ ":" port ]
//! host         = hostname / IPv4address / IPv6reference
//! uri-parameters = *( ";" uri-parameter )
//! headers      = "?" header *( "&" header )
//! absoluteURI  = scheme ":" ( hier-part / opaque-part )
//! ```
//!
//! User, password, parameters and URI headers are kept **as received**, with their
//! `%XX` escapes; [`unescape`] decodes them once (an escaped NUL stays a NUL byte,
//! nothing is cut).

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use nom::bytes::complete::{take_while, take_while1};
use nom::combinator::recognize;
use nom::{IResult, Parser};

use crate::chars::{self, HOST, PARAMCHAR, PASSWORD, URI_HEADERS, USER};
use crate::error::ValueError;

/// Decodes `%XX` escapes once. Invalid escapes are left as they are. An escaped NUL
/// becomes a NUL byte; the result is never cut short.
pub fn unescape(s: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'%', s).is_none() {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%'
            && let (Some(h), Some(l)) = (
                s.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                s.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(s[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// One `;name[=value]` parameter. Name and value are kept as received (values may
/// be quoted strings in header parameters, escaped in URI parameters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Param {
    /// Parameter name.
    pub name: Bytes,
    /// Value, if the parameter has one (`;lr` has none).
    pub value: Option<Bytes>,
}

impl Param {
    /// A parameter from static or owned parts.
    pub fn new(name: impl Into<Bytes>, value: Option<Bytes>) -> Self {
        Param {
            name: name.into(),
            value,
        }
    }
}

/// An ordered list of parameters; lookups ignore ASCII case in names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Params(pub Vec<Param>);

impl Params {
    /// The parameter named `name` (ASCII case-insensitive): `None` if absent,
    /// `Some(None)` if present without a value.
    pub fn get(&self, name: &str) -> Option<Option<&Bytes>> {
        self.0
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|p| p.value.as_ref())
    }

    /// The value of `name`, if present with a value.
    pub fn value(&self, name: &str) -> Option<&Bytes> {
        self.get(name).flatten()
    }

    /// True if a parameter `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Iterates the parameters in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Param> {
        self.0.iter()
    }

    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends `;name[=value]` for each parameter.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for p in &self.0 {
            out.push(b';');
            out.extend_from_slice(&p.name);
            if let Some(v) = &p.value {
                out.push(b'=');
                out.extend_from_slice(v);
            }
        }
    }
}

/// The host part of a SIP URI or a Via sent-by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A host name, as received (compare case-insensitively).
    Domain(Bytes),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address (written as an `[IPv6reference]`).
    Ipv6(Ipv6Addr),
}

impl Host {
    /// Parses `hostname / IPv4address / IPv6reference`.
    pub fn parse(src: &Bytes) -> Result<Host, ValueError> {
        parse_host(src, src)
    }

    /// Writes the host; IPv6 in brackets.
    pub fn encode(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        match self {
            Host::Domain(d) => out.extend_from_slice(d),
            Host::Ipv4(a) => {
                let _ = write!(out, "{a}");
            }
            Host::Ipv6(a) => {
                let _ = write!(out, "[{a}]");
            }
        }
    }
}

pub(crate) fn parse_host(src: &Bytes, s: &[u8]) -> Result<Host, ValueError> {
    if s.first() == Some(&b'[') {
        return parse_ipv6_ref(s);
    }
    let (n, digits_dots) = host_span(s);
    if n != s.len() {
        return Err(ValueError::new("bad host"));
    }
    host_from_span(src, s, digits_dots)
}

pub(crate) fn parse_ipv6_ref(s: &[u8]) -> Result<Host, ValueError> {
    let inner = s
        .strip_prefix(b"[")
        .and_then(|i| i.strip_suffix(b"]"))
        .ok_or(ValueError::new("unterminated IPv6 reference"))?;
    let text = std::str::from_utf8(inner).map_err(|_| ValueError::new("bad IPv6 address"))?;
    text.parse()
        .map(Host::Ipv6)
        .map_err(|_| ValueError::new("bad IPv6 address"))
}

/// Host characters by class. Bit 0: hostname character; bit 1: digit or dot.
pub(crate) static HOST_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        if HOST[c] {
            t[c] = 1;
        }
        c += 1;
    }
    let mut d = b'0';
    while d <= b'9' {
        t[d as usize] = 3;
        d += 1;
    }
    t[b'.' as usize] = 3;
    t
};

/// The length of the longest prefix of `s` made of hostname characters, and
/// whether that prefix is made of digits and dots only.
#[inline]
pub(crate) fn host_span(s: &[u8]) -> (usize, bool) {
    const CLASS: &[u8; 256] = &HOST_CLASS;
    let mut acc = 3;
    let mut n = 0;
    while n < s.len() {
        let f = CLASS[s[n] as usize];
        if f == 0 {
            break;
        }
        acc &= f;
        n += 1;
    }
    (n, acc == 3)
}

/// A host from a non-bracketed prefix whose characters [`host_span`] checked.
#[inline]
pub(crate) fn host_from_span(src: &Bytes, s: &[u8], digits_dots: bool) -> Result<Host, ValueError> {
    if s.is_empty() {
        return Err(ValueError::new("bad host"));
    }
    if digits_dots {
        return chars::ipv4(s)
            .map(Host::Ipv4)
            .ok_or(ValueError::new("bad IPv4 address"));
    }
    Ok(Host::Domain(chars::sub(src, s)))
}

/// A sent-by or URI host at the start of `s`: an IPv6 reference, or the longest run
/// of hostname characters. Returns the host and the rest.
#[inline]
pub(crate) fn parse_host_prefix<'a>(
    src: &Bytes,
    s: &'a [u8],
) -> Result<(Host, &'a [u8]), ValueError> {
    if s.first() == Some(&b'[') {
        let end = memchr::memchr(b']', s)
            .map(|p| p + 1)
            .ok_or(ValueError::new("unterminated IPv6 reference"))?;
        return Ok((parse_ipv6_ref(&s[..end])?, &s[end..]));
    }
    let (n, digits_dots) = host_span(s);
    Ok((host_from_span(src, &s[..n], digits_dots)?, &s[n..]))
}

/// A parameter name as `Bytes`: a static copy for the common names (no reference
/// count is touched), a slice of `src` otherwise. Either way the bytes are exactly
/// those received.
#[inline]
pub(crate) fn param_name(src: &Bytes, name: &[u8]) -> Bytes {
    let known: &'static [u8] = match name {
        b"tag" => b"tag",
        b"branch" => b"branch",
        b"epid" => b"epid",
        b"lr" => b"lr",
        b"transport" => b"transport",
        b"received" => b"received",
        b"rport" => b"rport",
        b"maddr" => b"maddr",
        b"expires" => b"expires",
        b"q" => b"q",
        b"user" => b"user",
        b"gruu" => b"gruu",
        b"opaque" => b"opaque",
        b"ms-received-port" => b"ms-received-port",
        b"ms-received-cid" => b"ms-received-cid",
        _ => return chars::sub(src, name),
    };
    Bytes::from_static(known)
}

/// A `sip:` or `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SipUri {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// The user part, escaped as received. May contain `;` (RFC 4475 §3.1.1.9).
    pub user: Option<Bytes>,
    /// The password, escaped as received.
    pub password: Option<Bytes>,
    /// Host.
    pub host: Host,
    /// Port, if given.
    pub port: Option<u16>,
    /// `uri-parameters`, escaped as received.
    pub params: Params,
    /// `headers` after `?`, raw and escaped (`Route=%3Csip:...%3E&...`). Never turned
    /// into message headers by this crate.
    pub headers: Option<Bytes>,
}

impl SipUri {
    /// A URI `sip:host` with nothing else.
    pub fn new(host: Host) -> Self {
        SipUri {
            secure: false,
            user: None,
            password: None,
            host,
            port: None,
            params: Params::default(),
            headers: None,
        }
    }

    /// The user part with `%XX` escapes decoded once.
    pub fn user_unescaped(&self) -> Option<Cow<'_, [u8]>> {
        self.user.as_deref().map(unescape)
    }

    /// The `transport` parameter.
    pub fn transport(&self) -> Option<&Bytes> {
        self.params.value("transport")
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&Bytes> {
        self.params.value("maddr")
    }

    /// True if the URI has the `lr` parameter (loose routing).
    pub fn lr(&self) -> bool {
        self.params.contains("lr")
    }

    /// Writes the URI.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if self.secure { b"sips:" } else { b"sip:" });
        if let Some(u) = &self.user {
            out.extend_from_slice(u);
            if let Some(p) = &self.password {
                out.push(b':');
                out.extend_from_slice(p);
            }
            out.push(b'@');
        }
        self.host.encode(out);
        if let Some(p) = self.port {
            out.push(b':');
            push_u64(out, u64::from(p));
        }
        self.params.encode(out);
        if let Some(h) = &self.headers {
            out.push(b'?');
            out.extend_from_slice(h);
        }
    }
}

pub(crate) fn push_u64(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// A `tel:` URI (RFC 3966), kept as number plus parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TelUri {
    /// The telephone-subscriber number (`+1-201-555-0123`, or a local number).
    pub number: Bytes,
    /// Parameters (`phone-context`, `ext`, …).
    pub params: Params,
}

/// Any other absolute URI (`scheme:opaque`), kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AbsoluteUri {
    raw: Bytes,
    scheme_len: usize,
}

impl AbsoluteUri {
    pub(crate) fn from_parts(raw: Bytes, scheme_len: usize) -> Self {
        AbsoluteUri { raw, scheme_len }
    }
    /// The scheme (without the colon).
    pub fn scheme(&self) -> &[u8] {
        &self.raw[..self.scheme_len]
    }
    /// The whole URI as received.
    pub fn as_bytes(&self) -> &Bytes {
        &self.raw
    }
}

/// A URI as it appears in a Request-URI or in an address header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Uri {
    /// `sip:` or `sips:`.
    Sip(SipUri),
    /// `tel:`.
    Tel(TelUri),
    /// Any other scheme, opaque.
    Absolute(AbsoluteUri),
}

/// Where a URI appears; decides what may end it and what it may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UriContext {
    /// Request-URI or inside `<…>`: parameters and headers belong to the URI.
    Full,
    /// A bare addr-spec in a header: stops before `;`, `,`, and whitespace; may
    /// have neither URI parameters nor headers (RFC 3261 §20).
    Bare,
}

impl Uri {
    /// Parses a complete URI (parameters and headers allowed).
    pub fn parse(src: &Bytes) -> Result<Uri, ValueError> {
        parse_uri(src, src, UriContext::Full)
    }

    /// The scheme in lower case for sip/sips/tel, as received otherwise.
    pub fn scheme(&self) -> &[u8] {
        match self {
            Uri::Sip(u) if u.secure => b"sips",
            Uri::Sip(_) => b"sip",
            Uri::Tel(_) => b"tel",
            Uri::Absolute(a) => a.scheme(),
        }
    }

    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// Writes the URI.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Uri::Sip(u) => u.encode(out),
            Uri::Tel(t) => {
                out.extend_from_slice(b"tel:");
                out.extend_from_slice(&t.number);
                t.params.encode(out);
            }
            Uri::Absolute(a) => out.extend_from_slice(&a.raw),
        }
    }

    /// The URI as bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        self.encode(&mut v);
        v
    }
}

type PResult<'a, T> = IResult<&'a [u8], T>;

pub(crate) fn scheme(i: &[u8]) -> PResult<'_, &[u8]> {
    recognize((
        take_while1(|c: u8| c.is_ascii_alphabetic()),
        take_while(|c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'-' || c == b'.'),
    ))
    .parse(i)
}

/// `*( ";" pname ["=" pvalue] )` inside a URI (no whitespace).
pub(crate) fn uri_params<'a>(
    src: &Bytes,
    mut i: &'a [u8],
) -> Result<(&'a [u8], Params), ValueError> {
    if i.first() != Some(&b';') {
        return Ok((i, Params::default()));
    }
    let mut params = Vec::with_capacity(4);
    while let Some(rest) = i.strip_prefix(b";") {
        let n = chars::span(&PARAMCHAR_NP, true, rest);
        if n == 0 {
            return Err(ValueError::new("empty URI parameter"));
        }
        let name = &rest[..n];
        let mut rest = &rest[n..];
        let mut value = None;
        if let Some(v) = rest.strip_prefix(b"=") {
            let m = chars::span(&PARAMVALUE_NP, true, v);
            if m == 0 {
                return Err(ValueError::new("bad URI parameter"));
            }
            value = Some(chars::sub(src, &v[..m]));
            rest = &v[m..];
        }
        params.push(Param {
            name: param_name(src, name),
            value,
        });
        i = rest;
    }
    Ok((i, Params(params)))
}

/// `paramchar` without `%` (escapes are checked by [`chars::span`]).
pub(crate) static PARAMCHAR_NP: [bool; 256] = {
    let mut t = PARAMCHAR;
    t[b'%' as usize] = false;
    t
};
/// Parameter value characters: `paramchar` and `=`, without `%`.
pub(crate) static PARAMVALUE_NP: [bool; 256] = {
    let mut t = PARAMCHAR_NP;
    t[b'=' as usize] = true;
    t
};

/// Parses a URI occupying the whole of `s` (a sub-slice of `src`).
#[inline]
pub(crate) fn parse_uri(src: &Bytes, s: &[u8], ctx: UriContext) -> Result<Uri, ValueError> {
    // The common schemes first, without the generic scheme grammar.
    if let Some(p) = s.get(..5) {
        if chars::eq_lower(&p[..4], b"sip:") {
            return parse_sip(src, &s[4..], false, ctx);
        }
        if chars::eq_lower(p, b"sips:") {
            return parse_sip(src, &s[5..], true, ctx);
        }
    }
    let (rest, sch) = scheme(s).map_err(|_| ValueError::new("bad URI scheme"))?;
    let rest = rest
        .strip_prefix(b":")
        .ok_or(ValueError::new("URI without scheme"))?;
    if sch.eq_ignore_ascii_case(b"sip") || sch.eq_ignore_ascii_case(b"sips") {
        parse_sip(src, rest, sch.len() == 4, ctx)
    } else if sch.eq_ignore_ascii_case(b"tel") {
        let end = rest.iter().position(|&c| c == b';').unwrap_or(rest.len());
        let number = &rest[..end];
        if number.is_empty() || !chars::all(&PARAMCHAR, number) {
            return Err(ValueError::new("bad tel number"));
        }
        let (rest, params) = uri_params(src, &rest[end..])?;
        if !rest.is_empty() {
            return Err(ValueError::new("trailing characters in tel URI"));
        }
        Ok(Uri::Tel(TelUri {
            number: chars::sub(src, number),
            params,
        }))
    } else {
        if rest.is_empty() || !chars::all(&chars::OPAQUE_URI, rest) {
            return Err(ValueError::new("bad absolute URI"));
        }
        Ok(Uri::Absolute(AbsoluteUri {
            raw: chars::sub(src, s),
            scheme_len: sch.len(),
        }))
    }
}

#[inline]
fn parse_sip(src: &Bytes, s: &[u8], secure: bool, ctx: UriContext) -> Result<Uri, ValueError> {
    // userinfo ends at the first '@' (an '@' in user or password must be escaped).
    // `user` characters exclude ':' and '@', so the user part is the longest run of
    // them (with well-formed escapes); it must end at ':' or '@'.
    let un = chars::span(&USER_NP, true, s);
    let at = match s.get(un) {
        Some(b'@') => Some(un),
        None => None,
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
                && chars::span(&PASSWORD_NP, true, p) != p.len()
            {
                return Err(ValueError::new("bad URI password"));
            }
            (
                Some(chars::sub(src, u)),
                p.map(|p| chars::sub(src, p)),
                &s[at + 1..],
            )
        }
        None => (None, None, s),
    };
    let (host, mut rest) = parse_host_prefix(src, hostpart)?;
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
    let mut params = Params::default();
    let mut headers = None;
    if ctx == UriContext::Full {
        let (r, p) = uri_params(src, rest)?;
        params = p;
        rest = r;
        if let Some(h) = rest.strip_prefix(b"?") {
            if h.is_empty() || !chars::all(&URI_HEADERS, h) || !chars::escapes_ok(h) {
                return Err(ValueError::new("bad URI headers"));
            }
            headers = Some(chars::sub(src, h));
            rest = &[];
        }
    }
    if !rest.is_empty() {
        return Err(ValueError::new("trailing characters in SIP URI"));
    }
    Ok(Uri::Sip(SipUri {
        secure,
        user,
        password,
        host,
        port,
        params,
        headers,
    }))
}

/// `user` characters without `%` (escapes are checked by [`chars::span`]).
pub(crate) static USER_NP: [bool; 256] = {
    let mut t = USER;
    t[b'%' as usize] = false;
    t
};
/// `password` characters without `%`.
pub(crate) static PASSWORD_NP: [bool; 256] = {
    let mut t = PASSWORD;
    t[b'%' as usize] = false;
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &'static str) -> Result<Uri, ValueError> {
        Uri::parse(&Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn unescape_once_and_keeps_nul() {
        assert_eq!(unescape(b"a%00b%2541").as_ref(), b"a\0b%41");
        assert_eq!(unescape(b"%zz%4").as_ref(), b"%zz%4");
        assert!(matches!(unescape(b"plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn sip_uris() {
        let Uri::Sip(u) =
            p("SIPS:alice:secret@[2001:db8::1]:05061;transport=tls;lr?subject=x&h=").unwrap()
        else {
            panic!()
        };
        assert!(u.secure);
        assert_eq!(u.password.as_deref(), Some(&b"secret"[..]));
        assert_eq!(u.host, Host::Ipv6("2001:db8::1".parse().unwrap()));
        assert_eq!(u.port, Some(5061));
        assert!(u.lr());
        assert_eq!(u.transport().unwrap().as_ref(), b"tls");
        assert_eq!(u.headers.as_deref(), Some(&b"subject=x&h="[..]));
        assert!(p("sip:host:65536").is_err());
        assert!(p("sip:host:").is_err());
        assert!(p("sip:a@").is_err());
        assert!(p("sip:a%4@host").is_err());
        assert!(p("sip:host;").is_err());
        assert!(p("sip:[::1").is_err());
        assert!(p("sip:1.2.3.4.5").is_err());
        assert!(p("sip:a b@host").is_err());
        assert!(p("<sip:a@b>").is_err());
        assert!(p("sip:host;lr SIP/2.0").is_err());
    }

    #[test]
    fn tel_and_absolute() {
        let Uri::Tel(t) = p("tel:+1-201-555-0123;phone-context=example.com").unwrap() else {
            panic!()
        };
        assert_eq!(t.number.as_ref(), b"+1-201-555-0123");
        assert_eq!(
            t.params.value("phone-context").unwrap().as_ref(),
            b"example.com"
        );
        let Uri::Absolute(a) = p("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6").unwrap() else {
            panic!()
        };
        assert_eq!(a.scheme(), b"urn");
        assert!(p("1abc:x").is_err());
        assert!(p("x:").is_err());
        assert!(p("nocolon").is_err());
    }
}
