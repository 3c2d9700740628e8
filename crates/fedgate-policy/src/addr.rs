//! Validated, canonical (lowercased) domain names and bare user addresses.
//!
//! These are deliberately small: they are the policy crate's own key types and can
//! later be unified with the SIP URI / JID types of the protocol crates.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The process-wide random key for the hashes cached in [`Domain`] and [`UserAddress`]
/// (SipHash-1-3 with a key drawn once per process, as `std`'s `HashMap` uses): keys from
/// the network cannot be chosen to collide.
fn text_hash(s: &str) -> u64 {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    KEY.get_or_init(RandomState::new).hash_one(s)
}

/// A hasher for keys that carry their own (already keyed and mixed) hash: it passes the
/// cached `u64` through instead of hashing the text again on every lookup.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only reached by keys without a cached hash (enum discriminants of RuleTarget and
        // the like): fold them in with an odd multiplier.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(29) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ n;
    }
}

/// A map keyed by [`Domain`] or [`UserAddress`], looked up by their cached hash.
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Prehashed>>;
/// A set of [`Domain`]s or [`UserAddress`]es, looked up by their cached hash.
pub(crate) type FastSet<K> = HashSet<K, BuildHasherDefault<Prehashed>>;

/// Longest domain name accepted, in bytes (RFC 1035 §2.3.4 presentation form without the root dot).
pub const MAX_DOMAIN_LEN: usize = 253;
/// Longest single DNS label, in bytes (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;
/// Longest local part accepted, in bytes (the XMPP localpart limit, RFC 7622 §3.3.1).
pub const MAX_LOCAL_PART_LEN: usize = 1023;

/// Why a string is not a valid [`Domain`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// The string is empty (or only a root dot).
    #[error("empty domain name")]
    Empty,
    /// Longer than [`MAX_DOMAIN_LEN`].
    #[error("domain name is {len} bytes long; at most {MAX_DOMAIN_LEN} are allowed")]
    TooLong {
        /// The length seen.
        len: usize,
    },
    /// A label is empty (two dots in a row, or a leading dot).
    #[error("domain name {input:?} has an empty label")]
    EmptyLabel {
        /// The offending input.
        input: String,
    },
    /// A label is longer than [`MAX_LABEL_LEN`].
    #[error("a label of domain name {input:?} is longer than {MAX_LABEL_LEN} bytes")]
    LabelTooLong {
        /// The offending input.
        input: String,
    },
    /// A byte outside `[A-Za-z0-9-]` (internationalised names must arrive as A-labels).
    #[error("domain name {input:?} contains {ch:?}; only letters, digits and '-' are allowed")]
    InvalidChar {
        /// The offending input.
        input: String,
        /// The first invalid character.
        ch: char,
    },
    /// A label starts or ends with a hyphen.
    #[error("a label of domain name {input:?} starts or ends with '-'")]
    HyphenAtLabelEdge {
        /// The offending input.
        input: String,
    },
}

/// A validated DNS domain name in canonical form: ASCII, lowercased, no trailing dot.
///
/// Comparison is exact: `imp.example.com` and `example.com` are different domains and
/// neither implies the other (see the subdomain rules on [`crate::FederationConfig`]).
///
/// ```
/// use fedgate_policy::Domain;
/// let d: Domain = "Example.COM.".parse().unwrap();
/// assert_eq!(d.as_str(), "example.com");
/// assert!("exa mple.com".parse::<Domain>().is_err());
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Domain {
    name: Box<str>,
    /// Keyed hash of `name`, computed once (see [`text_hash`]).
    #[serde(skip)]
    hash: u64,
}

impl PartialEq for Domain {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.name == other.name
    }
}
impl Eq for Domain {}
impl Hash for Domain {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}
impl PartialOrd for Domain {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Domain {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name.cmp(&other.name)
    }
}

impl Domain {
    /// Validates and canonicalises `input`.
    pub fn new(input: &str) -> Result<Self, DomainError> {
        let trimmed = input.strip_suffix('.').unwrap_or(input);
        if trimmed.is_empty() {
            return Err(DomainError::Empty);
        }
        if trimmed.len() > MAX_DOMAIN_LEN {
            return Err(DomainError::TooLong { len: trimmed.len() });
        }
        for label in trimmed.split('.') {
            if label.is_empty() {
                return Err(DomainError::EmptyLabel {
                    input: input.to_owned(),
                });
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(DomainError::LabelTooLong {
                    input: input.to_owned(),
                });
            }
            if let Some(ch) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
            {
                return Err(DomainError::InvalidChar {
                    input: input.to_owned(),
                    ch,
                });
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(DomainError::HyphenAtLabelEdge {
                    input: input.to_owned(),
                });
            }
        }
        let name = trimmed.to_ascii_lowercase();
        Ok(Self {
            hash: text_hash(&name),
            name: name.into_boxed_str(),
        })
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// True when `self` is a proper subdomain of `parent` (`imp.example.com` of `example.com`).
    ///
    /// Informational only: policy never derives one domain's treatment from another's.
    pub fn is_subdomain_of(&self, parent: &Domain) -> bool {
        let (me, p) = (self.as_str(), parent.as_str());
        me.len() > p.len() && me.ends_with(p) && me.as_bytes()[me.len() - p.len() - 1] == b'.'
    }
}

impl std::str::FromStr for Domain {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for Domain {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<Domain> for String {
    fn from(d: Domain) -> Self {
        d.name.into()
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Domain({})", self.name)
    }
}

/// Why a string is not a valid [`UserAddress`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// No `@` separating local part and domain.
    #[error("address {input:?} has no '@'")]
    MissingAt {
        /// The offending input.
        input: String,
    },
    /// The local part is empty.
    #[error("address {input:?} has an empty local part")]
    EmptyLocalPart {
        /// The offending input.
        input: String,
    },
    /// The local part is longer than [`MAX_LOCAL_PART_LEN`].
    #[error(
        "the local part of an address is {len} bytes long; at most {MAX_LOCAL_PART_LEN} are allowed"
    )]
    LocalPartTooLong {
        /// The length seen.
        len: usize,
    },
    /// The local part has a character that neither a JID localpart nor our SIP user part may carry.
    #[error("address {input:?} contains {ch:?} in its local part")]
    InvalidLocalChar {
        /// The offending input.
        input: String,
        /// The first invalid character.
        ch: char,
    },
    /// The domain part is invalid.
    #[error("invalid domain in address: {0}")]
    Domain(#[from] DomainError),
}

/// A bare user address `local@domain` (no scheme, no resource, no URI parameters),
/// in canonical form: the local part lowercased, the domain a canonical [`Domain`].
///
/// Characters that RFC 7622 forbids in a JID localpart (`" & ' / : < > @`), whitespace and
/// control characters are rejected, so the same address is valid on both the SIP and XMPP
/// side. Lowercasing uses Unicode simple case mapping, an approximation of the PRECIS
/// UsernameCaseMapped profile that keeps one key per user.
///
/// ```
/// use fedgate_policy::UserAddress;
/// let a: UserAddress = "Alice@Example.com".parse().unwrap();
/// assert_eq!(a.to_string(), "alice@example.com");
/// assert_eq!(a.domain().as_str(), "example.com");
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserAddress {
    local: Box<str>,
    domain: Domain,
    /// Keyed hash of the whole address, computed once.
    #[serde(skip)]
    hash: u64,
}

impl PartialEq for UserAddress {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.local == other.local && self.domain == other.domain
    }
}
impl Eq for UserAddress {}
impl Hash for UserAddress {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}
impl PartialOrd for UserAddress {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for UserAddress {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.local, &self.domain).cmp(&(&other.local, &other.domain))
    }
}

impl UserAddress {
    /// Validates and canonicalises `local@domain`.
    pub fn new(input: &str) -> Result<Self, AddressError> {
        let (local, domain) = input
            .rsplit_once('@')
            .ok_or_else(|| AddressError::MissingAt {
                input: input.to_owned(),
            })?;
        Self::from_parts(local, &Domain::new(domain)?).map_err(|e| match e {
            AddressError::InvalidLocalChar { ch, .. } => AddressError::InvalidLocalChar {
                input: input.to_owned(),
                ch,
            },
            AddressError::EmptyLocalPart { .. } => AddressError::EmptyLocalPart {
                input: input.to_owned(),
            },
            other => other,
        })
    }

    /// Builds an address from a local part and an already validated domain.
    pub fn from_parts(local: &str, domain: &Domain) -> Result<Self, AddressError> {
        if local.is_empty() {
            return Err(AddressError::EmptyLocalPart {
                input: format!("@{domain}"),
            });
        }
        if local.len() > MAX_LOCAL_PART_LEN {
            return Err(AddressError::LocalPartTooLong { len: local.len() });
        }
        if let Some(ch) = local.chars().find(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(c, '"' | '&' | '\'' | '/' | ':' | '<' | '>' | '@')
        }) {
            return Err(AddressError::InvalidLocalChar {
                input: format!("{local}@{domain}"),
                ch,
            });
        }
        let lowered = local.to_lowercase();
        if lowered.len() > MAX_LOCAL_PART_LEN {
            return Err(AddressError::LocalPartTooLong { len: lowered.len() });
        }
        let hash = text_hash(&lowered) ^ domain.hash.rotate_left(32);
        Ok(Self {
            local: lowered.into_boxed_str(),
            domain: domain.clone(),
            hash,
        })
    }

    /// The canonical local part.
    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// The domain.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }
}

impl std::str::FromStr for UserAddress {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for UserAddress {
    type Error = AddressError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<UserAddress> for String {
    fn from(a: UserAddress) -> Self {
        a.to_string()
    }
}

impl fmt::Display for UserAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

impl fmt::Debug for UserAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserAddress({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn domain_canonical_form() {
        assert_eq!(
            Domain::new("IMP.Example.com.").unwrap().as_str(),
            "imp.example.com"
        );
        assert_eq!(Domain::new("a-b.c0").unwrap().as_str(), "a-b.c0");
    }

    #[test]
    fn domain_rejections() {
        assert_eq!(Domain::new(""), Err(DomainError::Empty));
        assert_eq!(Domain::new("."), Err(DomainError::Empty));
        assert!(matches!(
            Domain::new("a..b"),
            Err(DomainError::EmptyLabel { .. })
        ));
        assert!(matches!(
            Domain::new(".a"),
            Err(DomainError::EmptyLabel { .. })
        ));
        assert!(matches!(
            Domain::new("-a.com"),
            Err(DomainError::HyphenAtLabelEdge { .. })
        ));
        assert!(matches!(
            Domain::new("a-.com"),
            Err(DomainError::HyphenAtLabelEdge { .. })
        ));
        assert!(matches!(
            Domain::new("ex_ample.com"),
            Err(DomainError::InvalidChar { ch: '_', .. })
        ));
        assert!(matches!(
            Domain::new("bücher.de"),
            Err(DomainError::InvalidChar { .. })
        ));
        let long_label = "a".repeat(64);
        assert!(matches!(
            Domain::new(&long_label),
            Err(DomainError::LabelTooLong { .. })
        ));
        let long = vec!["a".repeat(63); 4].join(".");
        assert!(matches!(
            Domain::new(&long),
            Err(DomainError::TooLong { len: 255 })
        ));
    }

    #[test]
    fn subdomain_relation_is_label_aligned() {
        let parent = Domain::new("example.com").unwrap();
        assert!(
            Domain::new("imp.example.com")
                .unwrap()
                .is_subdomain_of(&parent)
        );
        assert!(
            !Domain::new("badexample.com")
                .unwrap()
                .is_subdomain_of(&parent)
        );
        assert!(!parent.is_subdomain_of(&parent));
        assert!(!parent.is_subdomain_of(&Domain::new("imp.example.com").unwrap()));
    }

    #[test]
    fn address_canonical_form_and_rejections() {
        let a = UserAddress::new("Foreign.User@Foreign.Example.COM").unwrap();
        assert_eq!(a.local_part(), "foreign.user");
        assert_eq!(a.domain().as_str(), "foreign.example.com");
        assert!(matches!(
            UserAddress::new("nobody"),
            Err(AddressError::MissingAt { .. })
        ));
        assert!(matches!(
            UserAddress::new("@example.com"),
            Err(AddressError::EmptyLocalPart { .. })
        ));
        assert!(matches!(
            UserAddress::new("a b@example.com"),
            Err(AddressError::InvalidLocalChar { ch: ' ', .. })
        ));
        assert!(matches!(
            UserAddress::new("a@b@example.com"),
            Err(AddressError::InvalidLocalChar { ch: '@', .. })
        ));
        assert!(matches!(
            UserAddress::new("a@exa mple"),
            Err(AddressError::Domain(_))
        ));
        let long = format!("{}@example.com", "x".repeat(1024));
        assert!(matches!(
            UserAddress::new(&long),
            Err(AddressError::LocalPartTooLong { len: 1024 })
        ));
    }

    #[test]
    fn cached_hash_is_consistent_with_eq() {
        let mut m: FastMap<UserAddress, u8> = FastMap::default();
        m.insert(UserAddress::new("Bob@Lync.Example").unwrap(), 1);
        assert_eq!(
            m.get(&UserAddress::new("bob@lync.example.").unwrap()),
            Some(&1)
        );
        assert_eq!(m.get(&UserAddress::new("bob@lync.example2").unwrap()), None);
        let mut s: FastSet<Domain> = FastSet::default();
        s.insert(Domain::try_from("EXAMPLE.com".to_owned()).unwrap());
        assert!(s.contains(&Domain::new("example.com").unwrap()));
        assert!(!s.contains(&Domain::new("example.co").unwrap()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn domain_parse_print_roundtrip(s in "[A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?(\\.[A-Za-z0-9]{1,12}){0,4}") {
            let d = Domain::new(&s).unwrap();
            prop_assert_eq!(d.as_str(), s.to_ascii_lowercase());
            prop_assert_eq!(Domain::new(d.as_str()).unwrap(), d);
        }

        #[test]
        fn address_parse_print_roundtrip(local in "[a-zA-Z0-9._+-]{1,20}", dom in "[a-z0-9]{1,10}\\.[a-z]{2,5}") {
            let a = UserAddress::new(&format!("{local}@{dom}")).unwrap();
            let b = UserAddress::new(&a.to_string()).unwrap();
            let bh = RandomState::new();
            prop_assert_eq!(bh.hash_one(&b), bh.hash_one(&a));
            prop_assert_eq!(b, a);
        }

        #[test]
        fn domain_never_panics(s in "\\PC{0,80}") {
            let _ = Domain::new(&s);
            let _ = UserAddress::new(&s);
        }
    }
}
