//! The `SrvLookup` trait and a static implementation for labs and tests.

use std::collections::HashMap;
use std::future::{Future, ready};
use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;

use crate::record::{Glue, NaptrRecord, SrvAnswer, SrvRecord, normalize_name};

/// Why a DNS question got no usable answer. "No such name" and "no records" are not
/// errors: they are [`SrvAnswer::NoRecords`] or an empty address list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// No nameserver answered in time.
    #[error("DNS timeout for {name}")]
    Timeout {
        /// The name queried.
        name: String,
    },
    /// Every nameserver answered with an error code (SERVFAIL, REFUSED, ...).
    #[error("DNS server error {code} for {name}")]
    Server {
        /// The name queried.
        name: String,
        /// The response code, as text.
        code: String,
    },
    /// Sockets could not be used.
    #[error("DNS transport error for {name}: {detail}")]
    Transport {
        /// The name queried.
        name: String,
        /// What went wrong.
        detail: String,
    },
    /// The answer could not be decoded.
    #[error("malformed DNS answer for {name}: {detail}")]
    Malformed {
        /// The name queried.
        name: String,
        /// What went wrong.
        detail: String,
    },
    /// The name itself is not a valid DNS name.
    #[error("invalid DNS name {name:?}")]
    InvalidName {
        /// The offending name.
        name: String,
    },
}

/// The DNS questions target resolution needs. Names are absolute (no search list);
/// a trailing dot is optional.
///
/// Implementations: [`StaticLookup`] here; the DNS adapter in `fedgate-node`.
pub trait SrvLookup {
    /// SRV records at `name` (e.g. `_xmpp-server._tcp.example.com`), with any A/AAAA
    /// glue that came in the same answer.
    fn lookup_srv(&self, name: &str)
    -> impl Future<Output = Result<SrvAnswer, LookupError>> + Send;
    /// A and AAAA addresses of `host`; empty when the name has none.
    fn lookup_ip(
        &self,
        host: &str,
    ) -> impl Future<Output = Result<Arc<[IpAddr]>, LookupError>> + Send;
    /// NAPTR records at `domain` (RFC 3263 §4.1); empty when there are none.
    fn lookup_naptr(
        &self,
        domain: &str,
    ) -> impl Future<Output = Result<Arc<[NaptrRecord]>, LookupError>> + Send;
}

/// Records from configuration: answers immediately, never touches the network.
///
/// Glue: SRV answers carry the known addresses of their targets (as a DNS server would
/// in the Additional section) unless [`StaticLookup::without_glue`] was called.
#[derive(Debug, Clone, Default)]
pub struct StaticLookup {
    srv: HashMap<String, Vec<SrvRecord>>,
    hosts: HashMap<String, Vec<IpAddr>>,
    naptr: HashMap<String, Vec<NaptrRecord>>,
    failures: HashMap<String, LookupError>,
    no_glue: bool,
}

/// The TOML form of a [`StaticLookup`].
///
/// ```toml
/// [[srv]]
/// name = "_xmpp-server._tcp.example.test"
/// priority = 10
/// weight = 60
/// port = 5269
/// target = "xmpp1.example.test"
///
/// [[host]]
/// name = "xmpp1.example.test"
/// addrs = ["127.0.0.2"]
///
/// [[naptr]]
/// name = "example.test"
/// order = 10
/// preference = 10
/// flags = "S"
/// service = "SIPS+D2T"
/// replacement = "_sips._tcp.example.test"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// SRV records.
    #[serde(default)]
    pub srv: Vec<StaticSrv>,
    /// Host addresses.
    #[serde(default)]
    pub host: Vec<StaticHost>,
    /// NAPTR records.
    #[serde(default)]
    pub naptr: Vec<StaticNaptr>,
}

/// One `[[srv]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct StaticSrv {
    pub name: String,
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// One `[[host]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct StaticHost {
    pub name: String,
    pub addrs: Vec<IpAddr>,
}

/// One `[[naptr]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct StaticNaptr {
    pub name: String,
    pub order: u16,
    pub preference: u16,
    pub flags: String,
    pub service: String,
    pub replacement: String,
}

impl StaticLookup {
    /// An empty table: every SRV lookup answers `NoRecords`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a [`StaticConfig`] from TOML.
    pub fn from_toml_str(text: &str) -> Result<Self, toml::de::Error> {
        let cfg: StaticConfig = toml::from_str(text)?;
        Ok(Self::from_config(&cfg))
    }

    /// Builds the table from a parsed configuration.
    pub fn from_config(cfg: &StaticConfig) -> Self {
        let mut s = Self::new();
        for r in &cfg.srv {
            s.add_srv(
                &r.name,
                SrvRecord::new(r.priority, r.weight, r.port, &r.target),
            );
        }
        for h in &cfg.host {
            for a in &h.addrs {
                s.add_host(&h.name, *a);
            }
        }
        for n in &cfg.naptr {
            s.add_naptr(
                &n.name,
                NaptrRecord {
                    order: n.order,
                    preference: n.preference,
                    flags: n.flags.clone(),
                    service: n.service.clone(),
                    replacement: normalize_name(&n.replacement).into_owned(),
                },
            );
        }
        s
    }

    /// Adds an SRV record at `name`.
    pub fn add_srv(&mut self, name: &str, record: SrvRecord) -> &mut Self {
        self.srv
            .entry(normalize_name(name).into_owned())
            .or_default()
            .push(record);
        self
    }

    /// Adds an address for `host`.
    pub fn add_host(&mut self, host: &str, addr: IpAddr) -> &mut Self {
        self.hosts
            .entry(normalize_name(host).into_owned())
            .or_default()
            .push(addr);
        self
    }

    /// Adds a NAPTR record at `name`.
    pub fn add_naptr(&mut self, name: &str, record: NaptrRecord) -> &mut Self {
        self.naptr
            .entry(normalize_name(name).into_owned())
            .or_default()
            .push(record);
        self
    }

    /// Makes every lookup of `name` (any type) fail with `error`.
    pub fn fail(&mut self, name: &str, error: LookupError) -> &mut Self {
        self.failures
            .insert(normalize_name(name).into_owned(), error);
        self
    }

    /// SRV answers carry no glue, so targets need their own address lookup.
    pub fn without_glue(&mut self) -> &mut Self {
        self.no_glue = true;
        self
    }

    fn failure(&self, name: &str) -> Option<LookupError> {
        self.failures.get(name).cloned()
    }
}

impl SrvLookup for StaticLookup {
    fn lookup_srv(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<SrvAnswer, LookupError>> + Send {
        let name = normalize_name(name);
        if let Some(e) = self.failure(&name) {
            return ready(Err(e));
        }
        let records = self.srv.get(name.as_ref()).cloned().unwrap_or_default();
        let glue = if self.no_glue {
            Vec::new()
        } else {
            records
                .iter()
                .flat_map(|r| {
                    self.hosts
                        .get(&r.target)
                        .into_iter()
                        .flatten()
                        .map(|a| Glue {
                            host: r.target.clone(),
                            addr: *a,
                        })
                })
                .collect()
        };
        ready(Ok(SrvAnswer::classify(records, glue)))
    }

    fn lookup_ip(
        &self,
        host: &str,
    ) -> impl Future<Output = Result<Arc<[IpAddr]>, LookupError>> + Send {
        let host = normalize_name(host);
        if let Some(e) = self.failure(&host) {
            return ready(Err(e));
        }
        let addrs: Arc<[IpAddr]> = self
            .hosts
            .get(host.as_ref())
            .map(|v| Arc::from(v.as_slice()))
            .unwrap_or_else(|| Arc::from([]));
        ready(Ok(addrs))
    }

    fn lookup_naptr(
        &self,
        domain: &str,
    ) -> impl Future<Output = Result<Arc<[NaptrRecord]>, LookupError>> + Send {
        let domain = normalize_name(domain);
        if let Some(e) = self.failure(&domain) {
            return ready(Err(e));
        }
        let recs: Arc<[NaptrRecord]> = self
            .naptr
            .get(domain.as_ref())
            .map(|v| Arc::from(v.as_slice()))
            .unwrap_or_else(|| Arc::from([]));
        ready(Ok(recs))
    }
}
