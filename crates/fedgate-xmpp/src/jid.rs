//! XMPP addresses (RFC 7622): `localpart@domainpart/resourcepart`.
//!
//! Normalisation is a documented, pragmatic subset of PRECIS (RFC 8264/8265) and IDNA:
//! - **localpart**: Unicode lowercase, then NFC; prohibited: `" & ' / : < > @`,
//!   whitespace and control characters (RFC 7622 §3.3.1); 1..=1023 bytes.
//! - **domainpart**: one trailing `.` removed, Unicode lowercase, then NFC; labels of
//!   1..=63 bytes, not starting or ending with `-`; ASCII limited to letters, digits and
//!   `-`; no whitespace, controls or symbols in non-ASCII labels; IPv6 literals in
//!   brackets are accepted and canonicalised; 1..=1023 bytes. No punycode conversion:
//!   an A-label and its U-label are different domains here.
//! - **resourcepart**: NFC; no control characters; 1..=1023 bytes (spaces allowed).
//!
//! Lengths are checked after normalisation. [`BareJid`] and [`FullJid`] are distinct
//! types; [`Jid`] is either.

use std::fmt;
use std::str::FromStr;

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// Maximum bytes of each part (RFC 7622 §3.2–3.4).
pub const MAX_PART_BYTES: usize = 1023;

/// Why an address was rejected (answer: `<jid-malformed/>` for stanzas,
/// `<improper-addressing/>` or `<invalid-from/>` for streams).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JidError {
    /// The domainpart is missing or empty.
    #[error("empty domainpart")]
    EmptyDomain,
    /// `@` with nothing before it.
    #[error("empty localpart")]
    EmptyLocal,
    /// `/` with nothing after it.
    #[error("empty resourcepart")]
    EmptyResource,
    /// A part is longer than 1023 bytes.
    #[error("{0} longer than 1023 bytes")]
    TooLong(&'static str),
    /// A character the part may not contain.
    #[error("prohibited character {1:?} in {0}")]
    Prohibited(&'static str, char),
    /// A domain label is empty, too long, or starts/ends with `-`.
    #[error("bad domain label")]
    BadLabel,
    /// A bracketed IP literal that does not parse.
    #[error("bad IP literal")]
    BadIpLiteral,
    /// A full JID was required.
    #[error("resourcepart required")]
    NoResource,
}

fn nfc(s: &str) -> String {
    if is_nfc_quick(s.chars()) == IsNormalized::Yes {
        s.to_owned()
    } else {
        s.nfc().collect()
    }
}

fn lower_nfc(s: &str) -> String {
    if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        return s.to_owned();
    }
    nfc(&s.to_lowercase())
}

/// A validated, normalised domainpart (also the type of a server's identity).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainPart(String);

impl DomainPart {
    /// Validates and normalises a domainpart.
    pub fn new(s: &str) -> Result<Self, JidError> {
        let s = s.strip_suffix('.').unwrap_or(s);
        if s.is_empty() {
            return Err(JidError::EmptyDomain);
        }
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(JidError::BadIpLiteral)?;
            let ip: std::net::Ipv6Addr = inner.parse().map_err(|_| JidError::BadIpLiteral)?;
            return Ok(DomainPart(format!("[{ip}]")));
        }
        let d = lower_nfc(s);
        if d.len() > MAX_PART_BYTES {
            return Err(JidError::TooLong("domainpart"));
        }
        for label in d.split('.') {
            if label.is_empty()
                || label.len() > 63
                || label.starts_with('-')
                || label.ends_with('-')
            {
                return Err(JidError::BadLabel);
            }
            for c in label.chars() {
                let ok = if c.is_ascii() {
                    c.is_ascii_alphanumeric() || c == '-'
                } else {
                    !c.is_whitespace() && !c.is_control() && (c.is_alphanumeric() || is_mark(c))
                };
                if !ok {
                    return Err(JidError::Prohibited("domainpart", c));
                }
            }
        }
        Ok(DomainPart(d))
    }
    /// The normalised domain.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_mark(c: char) -> bool {
    // Combining marks commonly found in IDN labels (a pragmatic check, not UCD-exact).
    matches!(c, '\u{0300}'..='\u{036F}' | '\u{0900}'..='\u{0DFF}' | '\u{200C}' | '\u{200D}')
}

fn localpart(s: &str) -> Result<String, JidError> {
    if s.is_empty() {
        return Err(JidError::EmptyLocal);
    }
    let l = lower_nfc(s);
    if l.len() > MAX_PART_BYTES {
        return Err(JidError::TooLong("localpart"));
    }
    if let Some(c) = l.chars().find(|&c| {
        matches!(c, '"' | '&' | '\'' | '/' | ':' | '<' | '>' | '@')
            || c.is_whitespace()
            || c.is_control()
    }) {
        return Err(JidError::Prohibited("localpart", c));
    }
    Ok(l)
}

fn resourcepart(s: &str) -> Result<String, JidError> {
    if s.is_empty() {
        return Err(JidError::EmptyResource);
    }
    let r = nfc(s);
    if r.len() > MAX_PART_BYTES {
        return Err(JidError::TooLong("resourcepart"));
    }
    if let Some(c) = r.chars().find(|c| c.is_control()) {
        return Err(JidError::Prohibited("resourcepart", c));
    }
    Ok(r)
}

/// `[localpart@]domainpart`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BareJid {
    local: Option<String>,
    domain: DomainPart,
}

/// `[localpart@]domainpart/resourcepart`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FullJid {
    bare: BareJid,
    resource: String,
}

/// Any address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Jid {
    /// Without resourcepart.
    Bare(BareJid),
    /// With resourcepart.
    Full(FullJid),
}

impl BareJid {
    /// From parts (validated and normalised).
    pub fn from_parts(local: Option<&str>, domain: &str) -> Result<Self, JidError> {
        Ok(BareJid {
            local: local.map(localpart).transpose()?,
            domain: DomainPart::new(domain)?,
        })
    }
    /// Parses a bare JID; a resourcepart is an error.
    pub fn parse(s: &str) -> Result<Self, JidError> {
        match Jid::parse(s)? {
            Jid::Bare(b) => Ok(b),
            Jid::Full(f) => Err(JidError::Prohibited(
                "bare JID",
                f.resource.chars().next().unwrap_or('/'),
            )),
        }
    }
    /// The domain-only JID.
    pub fn domain_jid(domain: DomainPart) -> Self {
        BareJid {
            local: None,
            domain,
        }
    }
    /// Localpart.
    pub fn local(&self) -> Option<&str> {
        self.local.as_deref()
    }
    /// Domainpart.
    pub fn domain(&self) -> &DomainPart {
        &self.domain
    }
    /// With a resource.
    pub fn with_resource(&self, resource: &str) -> Result<FullJid, JidError> {
        Ok(FullJid {
            bare: self.clone(),
            resource: resourcepart(resource)?,
        })
    }
}

impl FullJid {
    /// Parses a full JID; a missing resourcepart is an error.
    pub fn parse(s: &str) -> Result<Self, JidError> {
        match Jid::parse(s)? {
            Jid::Full(f) => Ok(f),
            Jid::Bare(_) => Err(JidError::NoResource),
        }
    }
    /// The bare part.
    pub fn bare(&self) -> &BareJid {
        &self.bare
    }
    /// Localpart.
    pub fn local(&self) -> Option<&str> {
        self.bare.local()
    }
    /// Domainpart.
    pub fn domain(&self) -> &DomainPart {
        &self.bare.domain
    }
    /// Resourcepart.
    pub fn resource(&self) -> &str {
        &self.resource
    }
}

impl Jid {
    /// Parses and normalises an address (RFC 7622 §3.1–3.2).
    pub fn parse(s: &str) -> Result<Self, JidError> {
        let (rest, resource) = match s.split_once('/') {
            Some((a, r)) => (a, Some(r)),
            None => (s, None),
        };
        let (local, domain) = match rest.split_once('@') {
            Some((l, d)) => (Some(l), d),
            None => (None, rest),
        };
        let bare = BareJid::from_parts(local, domain)?;
        Ok(match resource {
            Some(r) => Jid::Full(FullJid {
                bare,
                resource: resourcepart(r)?,
            }),
            None => Jid::Bare(bare),
        })
    }
    /// The bare part.
    pub fn bare(&self) -> &BareJid {
        match self {
            Jid::Bare(b) => b,
            Jid::Full(f) => &f.bare,
        }
    }
    /// Localpart.
    pub fn local(&self) -> Option<&str> {
        self.bare().local()
    }
    /// Domainpart.
    pub fn domain(&self) -> &DomainPart {
        &self.bare().domain
    }
    /// Resourcepart.
    pub fn resource(&self) -> Option<&str> {
        match self {
            Jid::Bare(_) => None,
            Jid::Full(f) => Some(&f.resource),
        }
    }
}

impl fmt::Display for DomainPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Display for BareJid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.local {
            f.write_str(l)?;
            f.write_str("@")?;
        }
        f.write_str(&self.domain.0)
    }
}
impl fmt::Display for FullJid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.bare, self.resource)
    }
}
impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Jid::Bare(b) => b.fmt(f),
            Jid::Full(j) => j.fmt(f),
        }
    }
}

impl FromStr for Jid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Self, JidError> {
        Jid::parse(s)
    }
}
impl FromStr for BareJid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Self, JidError> {
        BareJid::parse(s)
    }
}
impl FromStr for FullJid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Self, JidError> {
        FullJid::parse(s)
    }
}
impl FromStr for DomainPart {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Self, JidError> {
        DomainPart::new(s)
    }
}
impl From<BareJid> for Jid {
    fn from(b: BareJid) -> Jid {
        Jid::Bare(b)
    }
}
impl From<FullJid> for Jid {
    fn from(f: FullJid) -> Jid {
        Jid::Full(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc7622_3_parse_parts() {
        let j = Jid::parse("Juliet@Example.COM/Balcony Scene").unwrap();
        assert_eq!(j.local(), Some("juliet"));
        assert_eq!(j.domain().as_str(), "example.com");
        assert_eq!(j.resource(), Some("Balcony Scene"));
        assert_eq!(j.to_string(), "juliet@example.com/Balcony Scene");
        // Resource may contain '@' and '/'.
        let j = Jid::parse("a@b/c@d/e").unwrap();
        assert_eq!(j.resource(), Some("c@d/e"));
        assert_eq!(
            Jid::parse("example.com.").unwrap().to_string(),
            "example.com"
        );
        assert_eq!(Jid::parse("[::1]").unwrap().to_string(), "[::1]");
        assert_eq!(
            Jid::parse("Ünïcode.Example").unwrap().domain().as_str(),
            "ünïcode.example"
        );
    }

    #[test]
    fn rfc7622_3_rejects() {
        for bad in [
            "",
            "@a",
            "a@",
            "a/",
            "a@b@c",
            "\"x\"@a",
            "x y@a",
            "a b",
            "a..b",
            "-a.b",
            "a@b/\u{7}",
            "x:y@a",
            "x'y@a",
            "x<@a",
            "[nope]",
            "a_b.c",
        ] {
            assert!(Jid::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long = "a".repeat(1024);
        assert_eq!(
            Jid::parse(&format!("{long}@a")),
            Err(JidError::TooLong("localpart"))
        );
        assert_eq!(
            Jid::parse(&format!("a@b/{long}")),
            Err(JidError::TooLong("resourcepart"))
        );
        assert!(Jid::parse(&format!("a@b/{}", "a".repeat(1023))).is_ok());
    }

    #[test]
    fn nfc_normalisation() {
        // "e" + combining acute → "é".
        let j = Jid::parse("Re\u{301}sume\u{301}@x.test/Re\u{301}").unwrap();
        assert_eq!(j.local(), Some("résumé"));
        assert_eq!(j.resource(), Some("Ré"));
    }

    #[test]
    fn bare_and_full_are_distinct() {
        assert!(BareJid::parse("a@b/c").is_err());
        assert_eq!(FullJid::parse("a@b"), Err(JidError::NoResource));
        let f = FullJid::parse("a@b/c").unwrap();
        assert_eq!(f.bare().to_string(), "a@b");
        assert_eq!(f.bare().with_resource("c").unwrap(), f);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn round_trip(local in proptest::option::of("[a-zA-Zа-яÄ-ÿ0-9._-]{1,20}"),
                      domain in "[a-z0-9]{1,10}(\\.[a-zé0-9]{1,10}){0,3}",
                      resource in proptest::option::of("[ -~é€😀]{1,30}")) {
            let mut s = String::new();
            if let Some(l) = &local { s.push_str(l); s.push('@'); }
            s.push_str(&domain);
            if let Some(r) = &resource { s.push('/'); s.push_str(r); }
            let j = Jid::parse(&s).unwrap();
            // Normalised form is a fixed point.
            let again = Jid::parse(&j.to_string()).unwrap();
            prop_assert_eq!(&again, &j);
            prop_assert_eq!(again.to_string(), j.to_string());
            prop_assert_eq!(j.resource(), resource.as_deref());
        }
    }
}
