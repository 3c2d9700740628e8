//! Record types as fedgate-srv sees them: already decoded, names normalised.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

/// Normalises a DNS name for comparison and map keys: ASCII lower case, no trailing dot.
/// The root name stays `"."`.
pub fn normalize_name(name: &str) -> Cow<'_, str> {
    let trimmed = if name.len() > 1 {
        name.strip_suffix('.').unwrap_or(name)
    } else {
        name
    };
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    }
}

/// One SRV resource record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SrvRecord {
    /// Lower is tried first.
    pub priority: u16,
    /// Relative share within one priority.
    pub weight: u16,
    /// Port on the target.
    pub port: u16,
    /// Target host, normalised (see [`normalize_name`]); `"."` is the root.
    pub target: String,
}

impl SrvRecord {
    /// A record; the target is normalised.
    pub fn new(priority: u16, weight: u16, port: u16, target: &str) -> Self {
        Self {
            priority,
            weight,
            port,
            target: normalize_name(target).into_owned(),
        }
    }

    /// True if the target is the root name `"."`.
    pub fn is_root(&self) -> bool {
        self.target == "." || self.target.is_empty()
    }
}

/// One NAPTR resource record (RFC 3403), as RFC 3263 §4.1 uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NaptrRecord {
    /// Processed lowest first.
    pub order: u16,
    /// Tie-break within one order, lowest first.
    pub preference: u16,
    /// Flags, e.g. `"S"` (the replacement names an SRV record).
    pub flags: String,
    /// Service field, e.g. `"SIPS+D2T"`.
    pub service: String,
    /// Replacement name, normalised.
    pub replacement: String,
}

/// An address learnt for a host, e.g. from the Additional section of an SRV answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glue {
    /// Host name, normalised.
    pub host: String,
    /// One of its addresses.
    pub addr: IpAddr,
}

/// The records of one SRV answer and the A/AAAA glue that came with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SrvSet {
    /// The usable records (root targets removed), in wire order.
    pub records: Vec<SrvRecord>,
    /// Addresses of the targets from the Additional section; may be partial or empty.
    pub glue: Vec<Glue>,
}

impl SrvSet {
    /// The glue addresses of `host` (normalised name).
    pub fn glue_for<'a>(&'a self, host: &'a str) -> impl Iterator<Item = IpAddr> + 'a {
        self.glue
            .iter()
            .filter(move |g| g.host == host)
            .map(|g| g.addr)
    }
}

/// The meaning of an SRV query's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrvAnswer {
    /// NXDOMAIN or no SRV record at the name.
    NoRecords,
    /// A single record whose target is `"."`: the service is decidedly not offered
    /// (RFC 2782); callers must not fall back to A/AAAA.
    NotOffered,
    /// Usable records.
    Records(Arc<SrvSet>),
}

impl SrvAnswer {
    /// Classifies the SRV records of one answer (RFC 2782 "Usage rules").
    ///
    /// A lone root target means "not offered"; root targets mixed with real ones are
    /// dropped (nothing can be connected there); glue for hosts that are not targets
    /// is dropped too.
    pub fn classify(records: Vec<SrvRecord>, glue: Vec<Glue>) -> Self {
        if records.is_empty() {
            return Self::NoRecords;
        }
        if records.len() == 1 && records[0].is_root() {
            return Self::NotOffered;
        }
        let records: Vec<SrvRecord> = records.into_iter().filter(|r| !r.is_root()).collect();
        if records.is_empty() {
            return Self::NotOffered;
        }
        let glue = glue
            .into_iter()
            .filter(|g| records.iter().any(|r| r.target == g.host))
            .collect();
        Self::Records(Arc::new(SrvSet { records, glue }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalize_name("Example.COM."), "example.com");
        assert_eq!(normalize_name("example.com"), "example.com");
        assert!(matches!(normalize_name("a.b"), Cow::Borrowed(_)));
        assert_eq!(normalize_name("."), ".");
    }

    #[test]
    fn rfc2782_lone_root_is_not_offered() {
        let a = SrvAnswer::classify(vec![SrvRecord::new(0, 0, 0, ".")], vec![]);
        assert_eq!(a, SrvAnswer::NotOffered);
        assert_eq!(SrvAnswer::classify(vec![], vec![]), SrvAnswer::NoRecords);
    }

    #[test]
    fn root_mixed_with_real_targets_is_dropped_and_foreign_glue_too() {
        let a = SrvAnswer::classify(
            vec![
                SrvRecord::new(0, 0, 5269, "."),
                SrvRecord::new(1, 0, 5269, "x.test."),
            ],
            vec![
                Glue {
                    host: "x.test".into(),
                    addr: [127, 0, 0, 2].into(),
                },
                Glue {
                    host: "evil.test".into(),
                    addr: [127, 0, 0, 9].into(),
                },
            ],
        );
        let SrvAnswer::Records(set) = a else {
            panic!("expected records")
        };
        assert_eq!(set.records.len(), 1);
        assert_eq!(set.glue.len(), 1);
        assert_eq!(set.glue_for("x.test").count(), 1);
    }
}
