//! Character classes of the RFC 3261 §25 grammar, as 256-entry lookup tables.

const fn table(extra: &[u8], alnum: bool) -> [bool; 256] {
    let mut t = [false; 256];
    if alnum {
        let mut c = b'0';
        while c <= b'9' {
            t[c as usize] = true;
            c += 1;
        }
        c = b'a';
        while c <= b'z' {
            t[c as usize] = true;
            t[(c - 32) as usize] = true;
            c += 1;
        }
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

/// `token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )`
pub(crate) static TOKEN: [bool; 256] = table(b"-.!%*_+`'~", true);
/// `word = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" /
///  "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}" )`
pub(crate) static WORD: [bool; 256] = table(b"-.!%*_+`'~()<>:\\\"/[]?{}", true);
/// `user = 1*( unreserved / escaped / user-unreserved )` (`%` checked separately).
pub(crate) static USER: [bool; 256] = table(b"-_.!~*'()%&=+$,;?/", true);
/// `password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )`
pub(crate) static PASSWORD: [bool; 256] = table(b"-_.!~*'()%&=+$,", true);
/// `paramchar = param-unreserved / unreserved / escaped`; `=` is also let through in
/// values (base64 signatures such as Lync's `ms-route-sig`).
pub(crate) static PARAMCHAR: [bool; 256] = table(b"[]/:&+$-_.!~*'()%", true);
/// hname / hvalue characters of URI headers plus the `=` and `&` separators.
pub(crate) static URI_HEADERS: [bool; 256] = table(b"[]/?:+$-_.!~*'()%=&", true);
/// hostname characters (lenient: `_` is let through, as deployed DNS names use it).
pub(crate) static HOST: [bool; 256] = table(b"-._", true);
/// Characters of a generic parameter value outside a URI: token, plus host / IPv6
/// characters and base64 (`/`, `=`) as sent by Microsoft peers.
pub(crate) static GEN_VALUE: [bool; 256] = table(b"-.!%*_+`'~:[]/=@", true);
/// Characters of an opaque absolute URI (RFC 3986 minus what would end it in SIP).
pub(crate) static OPAQUE_URI: [bool; 256] = table(b"-_.!~*'()%;/?:@&=+$,#[]", true);

#[inline]
pub(crate) fn all(t: &[bool; 256], s: &[u8]) -> bool {
    s.iter().all(|&c| t[c as usize])
}

#[inline]
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && all(&TOKEN, s)
}

#[inline]
pub(crate) fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

pub(crate) fn trim_ws(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_ws(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_ws(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// `%XX` escapes are well formed (every `%` is followed by two hex digits).
pub(crate) fn escapes_ok(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            match s.get(i + 1..i + 3) {
                Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

/// Length of the longest prefix of `s` made of `table` characters (`%` must not be
/// in the table; `%XX` escapes are accepted when `escapes` is set). Stops at the
/// first other byte or malformed escape.
#[inline]
pub(crate) fn span(table: &[bool; 256], escapes: bool, s: &[u8]) -> usize {
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if table[c as usize] {
            i += 1;
        } else if escapes
            && c == b'%'
            && matches!(s.get(i + 1..i + 3), Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit())
        {
            i += 3;
        } else {
            break;
        }
    }
    i
}

/// Parses a dotted-quad IPv4 address (`1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "."
/// 1*3DIGIT`, RFC 3261 §25.1; leading zeros allowed), each part ≤ 255.
pub(crate) fn ipv4(s: &[u8]) -> Option<std::net::Ipv4Addr> {
    let mut parts = [0u8; 4];
    let mut n = 0;
    for part in s.split(|c| *c == b'.') {
        if n == 4 || part.is_empty() || part.len() > 3 {
            return None;
        }
        parts[n] = u8::try_from(digits_u64(part)?).ok()?;
        n += 1;
    }
    (n == 4).then(|| std::net::Ipv4Addr::from(parts))
}

/// Parses `1*DIGIT` (leading zeros allowed) into a u64; `None` on overflow or
/// a non-digit.
pub(crate) fn digits_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// Position of `c` in a short slice (a plain loop: cheaper than `memchr`'s
/// dispatch for the few dozen bytes of a URI or parameter).
#[inline]
pub(crate) fn find(s: &[u8], c: u8) -> Option<usize> {
    s.iter().position(|&b| b == c)
}
