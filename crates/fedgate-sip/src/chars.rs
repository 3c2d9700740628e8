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
    let mut v: u32 = 0;
    let mut digits = 0;
    for &c in s {
        if c == b'.' {
            if n == 3 || digits == 0 {
                return None;
            }
            parts[n] = u8::try_from(v).ok()?;
            n += 1;
            v = 0;
            digits = 0;
        } else if c.is_ascii_digit() && digits < 3 {
            v = v * 10 + u32::from(c - b'0');
            digits += 1;
        } else {
            return None;
        }
    }
    if n != 3 || digits == 0 {
        return None;
    }
    parts[3] = u8::try_from(v).ok()?;
    Some(std::net::Ipv4Addr::from(parts))
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

/// The index of the first byte at or after `from` that is not in `table` (or
/// `s.len()`).
#[inline]
pub(crate) fn span_table(table: &[bool; 256], s: &[u8], from: usize) -> usize {
    match s.get(from..) {
        Some(rest) => {
            from + rest
                .iter()
                .position(|&c| !table[c as usize])
                .unwrap_or(rest.len())
        }
        None => s.len(),
    }
}

/// ASCII case-insensitive comparison of `s` with `lower`, which must be all lower
/// case: up to 24 bytes are compared as three (overlapping) 64-bit words, each
/// upper-case ASCII letter folded exactly; longer ones byte by byte.
#[inline]
pub(crate) fn eq_lower(s: &[u8], lower: &[u8]) -> bool {
    if s.len() != lower.len() {
        return false;
    }
    if s.len() > 24 {
        return s
            .iter()
            .zip(lower)
            .all(|(x, y)| x.to_ascii_lowercase() == *y);
    }
    let (a, b) = (load_words(s), load_words(lower));
    fold8(a[0]) == b[0] && fold8(a[1]) == b[1] && fold8(a[2]) == b[2]
}

/// True if `token` (token characters only) equals the lower-case name whose
/// [`words`] are `lower` (letters, digits and `-` only), ignoring ASCII case. For
/// token characters, setting bit 0x20 folds exactly the letters: no other token
/// character becomes a letter, a digit or `-`.
#[inline]
pub(crate) fn token_eq_words(token: &[u8], lower: &[u64; 3]) -> bool {
    const F: u64 = 0x2020_2020_2020_2020;
    let a = load_words(token);
    (a[0] | F) == lower[0] | F && (a[1] | F) == lower[1] | F && (a[2] | F) == lower[2] | F
}

/// [`words`] at run time, with word loads.
#[inline]
fn load_words(s: &[u8]) -> [u64; 3] {
    let n = s.len();
    let w8 = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&s[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let w4 = |i: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&s[i..i + 4]);
        u64::from(u32::from_le_bytes(b))
    };
    match n {
        0 => [0; 3],
        1 => [u64::from(s[0]), 0, 0],
        2 | 3 => [
            u64::from(s[0]) | u64::from(s[1]) << 8 | u64::from(s[n - 1]) << 16,
            0,
            0,
        ],
        4..=7 => [w4(0) | w4(n - 4) << 32, 0, 0],
        8..=16 => [w8(0), w8(n - 8), 0],
        _ => [w8(0), w8(8), w8(n - 8)],
    }
}

/// Up to 24 bytes as three little-endian words, with overlapping loads (the same
/// byte positions for two slices of the same length); unused words are 0.
pub(crate) const fn words(s: &[u8]) -> [u64; 3] {
    const fn w(s: &[u8], i: usize, k: usize) -> u64 {
        let mut v = 0u64;
        let mut j = 0;
        while j < k {
            v |= (s[i + j] as u64) << (8 * j);
            j += 1;
        }
        v
    }
    let n = s.len();
    match n {
        0 => [0; 3],
        1 => [s[0] as u64, 0, 0],
        2 | 3 => [w(s, 0, 2) | (s[n - 1] as u64) << 16, 0, 0],
        4..=7 => [w(s, 0, 4) | w(s, n - 4, 4) << 32, 0, 0],
        8..=16 => [w(s, 0, 8), w(s, n - 8, 8), 0],
        _ => [w(s, 0, 8), w(s, 8, 8), w(s, n - 8, 8)],
    }
}

/// Lower-cases the ASCII letters among eight bytes (other bytes unchanged).
#[inline]
fn fold8(x: u64) -> u64 {
    const HI: u64 = 0x8080_8080_8080_8080;
    let h = x & !HI;
    // Bit 7 of each byte: low seven bits >= 'A', and >= '[' (no carry across bytes).
    let ge_a = h + 0x3f3f_3f3f_3f3f_3f3f;
    let ge_bracket = h + 0x2525_2525_2525_2525;
    let upper = ge_a & !ge_bracket & !x & HI;
    x | (upper >> 2)
}

/// `src.slice_ref(s)` for `s` inside `src` (an empty `s` may be anywhere), with one
/// range check instead of `slice_ref`'s pointer assertions plus `slice`'s checks.
#[inline]
pub(crate) fn sub(src: &bytes::Bytes, s: &[u8]) -> bytes::Bytes {
    if s.is_empty() {
        return bytes::Bytes::new();
    }
    let off = (s.as_ptr() as usize).wrapping_sub(src.as_ptr() as usize);
    src.slice(off..off + s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eq_lower_matches_eq_ignore_ascii_case() {
        let names: &[&[u8]] = &[
            b"v",
            b"to",
            b"via",
            b"cseq",
            b"call-id",
            b"content-length",
            b"request-disposition",
            b"ms-received-port",
            b"a-very-long-header-name-indeed",
        ];
        for n in names {
            for i in 0..n.len() {
                for b in 0..=255u8 {
                    let mut s = n.to_vec();
                    s[i] = b;
                    assert_eq!(eq_lower(&s, n), s.eq_ignore_ascii_case(n), "{s:?}");
                    if is_token(&s) && n.len() <= 24 {
                        assert_eq!(
                            token_eq_words(&s, &words(n)),
                            s.eq_ignore_ascii_case(n),
                            "{s:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn ipv4_forms() {
        assert_eq!(
            ipv4(b"192.0.2.10"),
            Some(std::net::Ipv4Addr::new(192, 0, 2, 10))
        );
        assert_eq!(
            ipv4(b"001.002.003.255"),
            Some(std::net::Ipv4Addr::new(1, 2, 3, 255))
        );
        for bad in [
            &b"1.2.3"[..],
            b"1.2.3.4.5",
            b"1.2.3.256",
            b"1..3.4",
            b".1.2.3",
            b"1.2.3.",
            b"1.2.3.0001",
            b"",
        ] {
            assert_eq!(ipv4(bad), None, "{bad:?}");
        }
    }
}
