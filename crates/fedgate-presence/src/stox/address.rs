//! RFC 7247 §5 address mapping, `sip:user@domain` ⇄ `user@domain`, with
//! XEP-0106 JID escaping of the local part and `;gr=` ⇄ resource.
//!
//! SIP → XMPP: drop the scheme, split at the first `@`, percent-decode the
//! user part (it must then be UTF-8), XEP-0106-escape it, lower-case the
//! ASCII domain, and turn a `gr` URI parameter into the resource. RFC 7247
//! lists only `&`, `'` and `/` for escaping; this crate applies the whole
//! XEP-0106 set, because a percent-decoded user part may also hold `"`, `:`,
//! `<`, `>`, `@` or a space, which a JID localpart cannot.
//!
//! XMPP → SIP: split resource and localpart, XEP-0106-unescape the localpart,
//! percent-encode every byte a SIP user part may not carry (RFC 3261
//! `unreserved` and `user-unreserved` stay), and put the resource into `;gr=`.
//!
//! Not done here: PRECIS/Nodeprep case folding, IDN ⇄ ASCII domain mapping
//! (out of scope in RFC 7247), and the `sips:` rule — a `sips:` URI is refused,
//! since RFC 7247 §10 forbids translating a SIPS message to XMPP.

use std::fmt::Write as _;

/// Why an address could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// Not a `sip:`, `pres:` or `im:` URI.
    #[error("unsupported URI scheme in {0:?}")]
    Scheme(String),
    /// `sips:` (RFC 7247 §10: MUST NOT be translated to XMPP).
    #[error("sips: URIs are not translated to XMPP")]
    Sips,
    /// No `user@` part (or an empty one), or no domain.
    #[error("address has no user part or no domain: {0:?}")]
    MissingPart(String),
    /// A bad `%` escape, or decoded bytes that are not UTF-8.
    #[error("bad percent-encoding in {0:?}")]
    Percent(String),
    /// A localpart that XEP-0106 cannot carry (starts or ends with a space).
    #[error("localpart {0:?} cannot be escaped (leading or trailing space)")]
    Escape(String),
}

/// XEP-0106 §3.2: the characters that are escaped, and their escapes.
pub const XEP0106_TABLE: [(char, &str); 10] = [
    (' ', "\\20"),
    ('"', "\\22"),
    ('&', "\\26"),
    ('\'', "\\27"),
    ('/', "\\2f"),
    (':', "\\3a"),
    ('<', "\\3c"),
    ('>', "\\3e"),
    ('@', "\\40"),
    ('\\', "\\5c"),
];

fn escape_at(s: &str) -> Option<(char, usize)> {
    XEP0106_TABLE
        .iter()
        .find(|(_, e)| s.starts_with(e))
        .map(|(c, e)| (*c, e.len()))
}

/// XEP-0106-escape a localpart. A `\` is escaped only where it starts one of
/// the ten escape sequences; leading or trailing spaces are refused.
pub fn escape_localpart(s: &str) -> Result<String, AddressError> {
    if s.starts_with(' ') || s.ends_with(' ') {
        return Err(AddressError::Escape(s.to_owned()));
    }
    let mut out = String::with_capacity(s.len() + 8);
    for (i, c) in s.char_indices() {
        if c == '\\' {
            if escape_at(&s[i..]).is_some() {
                out.push_str("\\5c");
            } else {
                out.push('\\');
            }
        } else if let Some((_, e)) = XEP0106_TABLE.iter().find(|(x, _)| *x == c) {
            out.push_str(e);
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// XEP-0106-unescape a localpart: only the ten sequences are replaced.
pub fn unescape_localpart(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        if let Some((c, n)) = escape_at(rest) {
            out.push(c);
            i += n;
        } else {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8().max(1);
        }
    }
    out
}

fn percent_decode(s: &str) -> Result<String, AddressError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| AddressError::Percent(s.to_owned()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| AddressError::Percent(s.to_owned()))
}

fn percent_encode(s: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// RFC 3261 `unreserved` (alphanum and `-_.!~*'()`).
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

/// RFC 3261 `user` characters: unreserved and user-unreserved `&=+$,;?/`.
fn sip_user_char(b: u8) -> bool {
    unreserved(b) || b"&=+$,;?/".contains(&b)
}

/// RFC 3261 `paramchar`: unreserved and param-unreserved `[]/:&+$`.
fn sip_param_char(b: u8) -> bool {
    unreserved(b) || b"[]/:&+$".contains(&b)
}

/// A JID mapped from a SIP URI: bare JID plus optional resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Jid {
    /// Escaped localpart.
    pub local: String,
    /// Domain.
    pub domain: String,
    /// Resource (from `;gr=`).
    pub resource: Option<String>,
}

impl std::fmt::Display for Jid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)?;
        if let Some(r) = &self.resource {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

/// SIP → XMPP: `sip:o'malley@sip.example` → `o\27malley@sip.example`.
pub fn sip_to_jid(uri: &str) -> Result<Jid, AddressError> {
    let (scheme, rest) = uri
        .split_once(':')
        .ok_or_else(|| AddressError::Scheme(uri.to_owned()))?;
    match scheme.to_ascii_lowercase().as_str() {
        "sip" | "pres" | "im" => {}
        "sips" => return Err(AddressError::Sips),
        _ => return Err(AddressError::Scheme(uri.to_owned())),
    }
    // The user part may hold `;` and `?` (RFC 3261 user-unreserved), so split
    // at the `@` first, then cut the headers off the host part.
    let (user, hostpart) = rest
        .split_once('@')
        .ok_or_else(|| AddressError::MissingPart(uri.to_owned()))?;
    let hostpart = hostpart.split('?').next().unwrap_or(hostpart);
    let mut params = hostpart.split(';');
    let host = params.next().unwrap_or("");
    // Drop a port: JIDs have none.
    let host = match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(']') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    if user.is_empty() || host.is_empty() {
        return Err(AddressError::MissingPart(uri.to_owned()));
    }
    let resource = params
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("gr"))
        .map(|(_, v)| percent_decode(v))
        .transpose()?
        .filter(|r| !r.is_empty());
    Ok(Jid {
        local: escape_localpart(&percent_decode(user)?)?,
        domain: host.to_ascii_lowercase(),
        resource,
    })
}

/// XMPP → SIP: `m\26m@xmpp.example` → `sip:m&m@xmpp.example`,
/// `baz@xmpp.example/qux` → `sip:baz@xmpp.example;gr=qux`.
pub fn jid_to_sip(jid: &str) -> Result<String, AddressError> {
    let (bare, resource) = match jid.split_once('/') {
        Some((b, r)) => (b, Some(r)),
        None => (jid, None),
    };
    let (local, domain) = bare
        .split_once('@')
        .filter(|(l, d)| !l.is_empty() && !d.is_empty())
        .ok_or_else(|| AddressError::MissingPart(jid.to_owned()))?;
    let mut out = String::from("sip:");
    out.push_str(&percent_encode(&unescape_localpart(local), sip_user_char));
    out.push('@');
    out.push_str(domain);
    if let Some(r) = resource.filter(|r| !r.is_empty()) {
        out.push_str(";gr=");
        out.push_str(&percent_encode(r, sip_param_char));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // RFC 7247 §5 examples, one test per row.
    #[test]
    fn rfc7247_s2x_row1_percent_encoded_utf8() {
        assert_eq!(
            sip_to_jid("sip:f%C3%BC@sip.example").unwrap().to_string(),
            "fü@sip.example"
        );
    }
    #[test]
    fn rfc7247_s2x_row2_apostrophe() {
        assert_eq!(
            sip_to_jid("sip:o'malley@sip.example").unwrap().to_string(),
            "o\\27malley@sip.example"
        );
    }
    #[test]
    fn rfc7247_s2x_row3_gruu() {
        assert_eq!(
            sip_to_jid("sip:foo@sip.example;gr=bar")
                .unwrap()
                .to_string(),
            "foo@sip.example/bar"
        );
    }
    #[test]
    fn rfc7247_x2s_row1_ampersand() {
        assert_eq!(
            jid_to_sip("m\\26m@xmpp.example").unwrap(),
            "sip:m&m@xmpp.example"
        );
    }
    #[test]
    fn rfc7247_x2s_row2_non_ascii() {
        assert_eq!(
            jid_to_sip("tschüss@xmpp.example").unwrap(),
            "sip:tsch%C3%BCss@xmpp.example"
        );
    }
    #[test]
    fn rfc7247_x2s_row3_resource() {
        assert_eq!(
            jid_to_sip("baz@xmpp.example/qux").unwrap(),
            "sip:baz@xmpp.example;gr=qux"
        );
    }

    #[test]
    fn plain_user_at_domain() {
        let j = sip_to_jid("sip:Alice@Example.COM:5061;transport=tls?subject=x").unwrap();
        assert_eq!(j.to_string(), "Alice@example.com");
        assert_eq!(
            jid_to_sip("alice@example.com").unwrap(),
            "sip:alice@example.com"
        );
    }

    #[test]
    fn xep0106_examples() {
        // XEP-0106 §5 table (transformations of the localpart).
        for (raw, esc) in [
            ("space cadet", "space\\20cadet"),
            ("call me \"ishmael\"", "call\\20me\\20\\22ishmael\\22"),
            ("at&t guy", "at\\26t\\20guy"),
            ("d'artagnan", "d\\27artagnan"),
            ("/.fanboy", "\\2f.fanboy"),
            ("::foo::", "\\3a\\3afoo\\3a\\3a"),
            ("<foo>", "\\3cfoo\\3e"),
            ("user@host", "user\\40host"),
            ("c:\\net", "c\\3a\\net"),
            ("c:\\\\net", "c\\3a\\\\net"),
            ("c:\\cool stuff", "c\\3a\\cool\\20stuff"),
            ("c:\\5commas", "c\\3a\\5c5commas"),
            ("\\3and\\2is\\5cool", "\\5c3and\\2is\\5c5cool"),
        ] {
            assert_eq!(escape_localpart(raw).unwrap(), esc, "{raw}");
            assert_eq!(unescape_localpart(esc), raw, "{esc}");
        }
        // Not escape sequences: left alone.
        for s in ["\\2plus\\2is\\4", "foo\\bar", "foob\\41r"] {
            assert_eq!(escape_localpart(s).unwrap(), s);
        }
        assert!(escape_localpart(" lead").is_err());
        assert!(escape_localpart("trail ").is_err());
    }

    #[test]
    fn errors() {
        assert_eq!(sip_to_jid("sips:a@b"), Err(AddressError::Sips));
        assert!(matches!(
            sip_to_jid("tel:+1555"),
            Err(AddressError::Scheme(_))
        ));
        assert!(matches!(
            sip_to_jid("sip:example.com"),
            Err(AddressError::MissingPart(_))
        ));
        assert!(matches!(
            sip_to_jid("sip:a%zz@b"),
            Err(AddressError::Percent(_))
        ));
        assert!(matches!(
            sip_to_jid("sip:a%ff@b"),
            Err(AddressError::Percent(_))
        ));
        assert!(matches!(
            sip_to_jid("sip:%20a@b"),
            Err(AddressError::Escape(_))
        ));
        assert!(matches!(
            jid_to_sip("example.com"),
            Err(AddressError::MissingPart(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Any localpart (without leading/trailing space) survives JID → SIP → JID.
        #[test]
        fn localpart_round_trip(
            local in "[^ \u{0}-\u{1f}][^\u{0}-\u{1f}]{0,10}[^ \u{0}-\u{1f}]",
            resource in proptest::option::of("[a-zA-Z0-9 üé/:;=]{1,8}"),
        ) {
            let escaped = escape_localpart(&local).unwrap();
            let mut jid = format!("{escaped}@example.com");
            if let Some(r) = &resource {
                jid.push('/');
                jid.push_str(r);
            }
            let sip = jid_to_sip(&jid).unwrap();
            let back = sip_to_jid(&sip).unwrap();
            prop_assert_eq!(&back.local, &escaped);
            prop_assert_eq!(back.resource.as_ref(), resource.as_ref());
            prop_assert_eq!(unescape_localpart(&back.local), local);
        }
    }
}
