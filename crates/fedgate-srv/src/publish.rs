//! The DNS records a deployment must publish so peers can find it.
//!
//! * One `_xmpp-server._tcp` SRV per published XMPP federation node, all with the same
//!   priority and weight, so peers spread load and fail over between them (the seed's
//!   "Each published DNS SRV records must have the same priority and weight"). The config
//!   has one priority and one weight for all nodes, so a mismatch cannot be written.
//!   Optionally `_xmpps-server._tcp` (XEP-0368 direct TLS) with the same shape.
//! * Exactly one `_sipfederationtls._tcp` SRV, at the SIP routing node or the load
//!   balancer in front of it: Microsoft Access Edge accepts a single host in the SRV
//!   answer, and SIP federation needs a single point of entry.
//! * A/AAAA records for every host named above.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Deserialize;

use crate::lookup::StaticLookup;
use crate::record::{SrvRecord, normalize_name};

/// A deployment's configuration, as read from TOML (see `examples/deployment.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// The federated domain (the SIP domain and XMPP domain), e.g. `example.com`.
    pub domain: String,
    /// TTL of every published record, in seconds. Default 300.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// SIP federation entry point.
    pub sip: Option<SipPublish>,
    /// XMPP federation nodes.
    pub xmpp: Option<XmppPublish>,
}

fn default_ttl() -> u32 {
    300
}

/// What stands behind `_sipfederationtls._tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SipEntryKind {
    /// The cluster's routing node.
    RoutingNode,
    /// A load balancer in front of the routing nodes.
    LoadBalancer,
}

/// `[sip]`: the single SIP federation entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipPublish {
    /// Routing node or load balancer.
    pub kind: SipEntryKind,
    /// Its host name.
    pub host: String,
    /// Its TLS port. Default 5061.
    #[serde(default = "default_sip_port")]
    pub port: u16,
    /// SRV priority. Default 0.
    #[serde(default)]
    pub priority: u16,
    /// SRV weight. Default 0.
    #[serde(default)]
    pub weight: u16,
    /// Its public addresses (A / AAAA).
    pub addresses: Vec<IpAddr>,
}

fn default_sip_port() -> u16 {
    5061
}

/// `[xmpp]`: the XMPP federation nodes to publish.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmppPublish {
    /// Priority shared by every node's record. Default 10.
    #[serde(default = "default_xmpp_priority")]
    pub priority: u16,
    /// Weight shared by every node's record. Default 10 (non-zero so peers spread load).
    #[serde(default = "default_xmpp_weight")]
    pub weight: u16,
    /// s2s (STARTTLS) port. Default 5269.
    #[serde(default = "default_xmpp_port")]
    pub port: u16,
    /// If set, also publish `_xmpps-server._tcp` (direct TLS) on this port.
    pub direct_tls_port: Option<u16>,
    /// The nodes; at least one.
    #[serde(default)]
    pub nodes: Vec<XmppNode>,
}

fn default_xmpp_priority() -> u16 {
    10
}
fn default_xmpp_weight() -> u16 {
    10
}
fn default_xmpp_port() -> u16 {
    5269
}

/// `[[xmpp.nodes]]`: one XMPP federation node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmppNode {
    /// Its host name.
    pub host: String,
    /// Its public addresses.
    pub addresses: Vec<IpAddr>,
}

/// A configuration that cannot be published, naming the key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Not valid TOML, an unknown key, or a value of the wrong type (toml's message
    /// names the key and line).
    #[error("deployment config: {0}")]
    Parse(String),
    /// A value that parsed but is not acceptable.
    #[error("deployment config: `{key}`: {reason}")]
    Invalid {
        /// The key, e.g. `xmpp.nodes[1].host`.
        key: String,
        /// Why.
        reason: String,
    },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// Checks a host name: 1..=253 octets, labels of 1..=63 letters, digits and hyphens,
/// not starting or ending with a hyphen.
pub fn validate_host_name(name: &str) -> Result<(), String> {
    let n = name.strip_suffix('.').unwrap_or(name);
    if n.is_empty() || n.len() > 253 {
        return Err(format!("{name:?} is not a host name (length)"));
    }
    for label in n.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("{name:?} is not a host name (label {label:?})"));
        }
    }
    Ok(())
}

/// The data of one published record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    /// SRV.
    Srv(SrvRecord),
    /// A or AAAA.
    Addr(IpAddr),
}

/// One record to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedRecord {
    /// Owner name, normalised (no trailing dot).
    pub name: String,
    /// TTL in seconds.
    pub ttl: u32,
    /// Data.
    pub data: RecordData,
}

/// A validated deployment.
#[derive(Debug, Clone)]
pub struct Deployment {
    cfg: DeploymentConfig,
}

impl Deployment {
    /// Parses and validates a TOML configuration.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let cfg: DeploymentConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        Self::new(cfg)
    }

    /// Validates a configuration.
    pub fn new(mut cfg: DeploymentConfig) -> Result<Self, ConfigError> {
        validate_host_name(&cfg.domain).map_err(|r| invalid("domain", r))?;
        cfg.domain = normalize_name(&cfg.domain).into_owned();
        if cfg.ttl == 0 || cfg.ttl > i32::MAX as u32 {
            return Err(invalid("ttl", "must be between 1 and 2147483647 seconds"));
        }
        if cfg.sip.is_none() && cfg.xmpp.is_none() {
            return Err(invalid(
                "sip",
                "neither [sip] nor [xmpp] is configured: nothing to publish",
            ));
        }
        // host -> (key that first named it, its addresses)
        let mut hosts: BTreeMap<String, (String, Vec<IpAddr>)> = BTreeMap::new();
        let mut check_host =
            |key: &str, host: &mut String, addrs: &[IpAddr]| -> Result<(), ConfigError> {
                validate_host_name(host).map_err(|r| invalid(format!("{key}.host"), r))?;
                *host = normalize_name(host).into_owned();
                if addrs.is_empty() {
                    return Err(invalid(
                        format!("{key}.addresses"),
                        "at least one address is required",
                    ));
                }
                let mut sorted = addrs.to_vec();
                sorted.sort();
                sorted.dedup();
                if sorted.len() != addrs.len() {
                    return Err(invalid(
                        format!("{key}.addresses"),
                        "an address is listed twice",
                    ));
                }
                match hosts.get(host.as_str()) {
                    Some((first, a)) if *a != sorted => Err(invalid(
                        format!("{key}.addresses"),
                        format!("host {host} already has other addresses at `{first}.addresses`"),
                    )),
                    Some((first, _))
                        if first.starts_with("xmpp.nodes") && key.starts_with("xmpp.nodes") =>
                    {
                        Err(invalid(
                            format!("{key}.host"),
                            format!("host {host} is already listed at `{first}`"),
                        ))
                    }
                    _ => {
                        hosts.insert(host.clone(), (key.to_owned(), sorted));
                        Ok(())
                    }
                }
            };
        if let Some(sip) = cfg.sip.as_mut() {
            if sip.port == 0 {
                return Err(invalid("sip.port", "must not be 0"));
            }
            check_host("sip", &mut sip.host, &sip.addresses)?;
        }
        if let Some(x) = cfg.xmpp.as_mut() {
            if x.port == 0 {
                return Err(invalid("xmpp.port", "must not be 0"));
            }
            if x.direct_tls_port == Some(0) {
                return Err(invalid("xmpp.direct_tls_port", "must not be 0"));
            }
            if x.nodes.is_empty() {
                return Err(invalid(
                    "xmpp.nodes",
                    "at least one [[xmpp.nodes]] entry is required",
                ));
            }
            for (i, n) in x.nodes.iter_mut().enumerate() {
                check_host(&format!("xmpp.nodes[{i}]"), &mut n.host, &n.addresses)?;
            }
        }
        Ok(Self { cfg })
    }

    /// The validated configuration (names normalised).
    pub fn config(&self) -> &DeploymentConfig {
        &self.cfg
    }

    /// Every record to publish: SRV records first, then A/AAAA (each host once).
    pub fn records(&self) -> Vec<PublishedRecord> {
        let (d, ttl) = (&self.cfg.domain, self.cfg.ttl);
        let mut out = Vec::new();
        let mut addrs: Vec<(&str, &[IpAddr])> = Vec::new();
        let srv = |name: String, r: SrvRecord| PublishedRecord {
            name,
            ttl,
            data: RecordData::Srv(r),
        };
        if let Some(s) = &self.cfg.sip {
            out.push(srv(
                format!("_sipfederationtls._tcp.{d}"),
                SrvRecord::new(s.priority, s.weight, s.port, &s.host),
            ));
            addrs.push((&s.host, &s.addresses));
        }
        if let Some(x) = &self.cfg.xmpp {
            for n in &x.nodes {
                out.push(srv(
                    format!("_xmpp-server._tcp.{d}"),
                    SrvRecord::new(x.priority, x.weight, x.port, &n.host),
                ));
            }
            if let Some(p) = x.direct_tls_port {
                for n in &x.nodes {
                    out.push(srv(
                        format!("_xmpps-server._tcp.{d}"),
                        SrvRecord::new(x.priority, x.weight, p, &n.host),
                    ));
                }
            }
            for n in &x.nodes {
                addrs.push((&n.host, &n.addresses));
            }
        }
        let mut done: Vec<&str> = Vec::new();
        for (host, list) in addrs {
            if done.contains(&host) {
                continue;
            }
            done.push(host);
            for a in list {
                out.push(PublishedRecord {
                    name: host.to_owned(),
                    ttl,
                    data: RecordData::Addr(*a),
                });
            }
        }
        out
    }

    /// The records as a zone-file fragment (absolute names, RFC 1035 master file syntax).
    pub fn zone_fragment(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "; fedgate: DNS records to publish for {}",
            self.cfg.domain
        );
        if let Some(sip) = &self.cfg.sip {
            let kind = match sip.kind {
                SipEntryKind::RoutingNode => "routing node",
                SipEntryKind::LoadBalancer => "load balancer",
            };
            let _ = writeln!(s, "; SIP federation entry: {kind} {}", sip.host);
        }
        for r in self.records() {
            let _ = match &r.data {
                RecordData::Srv(v) => writeln!(
                    s,
                    "{}. {} IN SRV {} {} {} {}.",
                    r.name, r.ttl, v.priority, v.weight, v.port, v.target
                ),
                RecordData::Addr(IpAddr::V4(a)) => writeln!(s, "{}. {} IN A {a}", r.name, r.ttl),
                RecordData::Addr(IpAddr::V6(a)) => writeln!(s, "{}. {} IN AAAA {a}", r.name, r.ttl),
            };
        }
        s
    }

    /// A [`StaticLookup`] answering exactly the published records (labs and tests).
    pub fn to_static_lookup(&self) -> StaticLookup {
        let mut l = StaticLookup::new();
        for r in self.records() {
            match r.data {
                RecordData::Srv(v) => l.add_srv(&r.name, v),
                RecordData::Addr(a) => l.add_host(&r.name, a),
            };
        }
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;
    use crate::target::{Transport, XmppOptions, resolve_xmpp};

    const EXAMPLE: &str = include_str!("../examples/deployment.toml");

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        // Every future in these tests is ready on first poll (StaticLookup).
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("static lookups never pend"),
        }
    }

    #[test]
    fn example_config_publishes_the_seed_records() {
        let d = Deployment::from_toml_str(EXAMPLE).expect("example is valid");
        let recs = d.records();
        let xmpp: Vec<&SrvRecord> = recs
            .iter()
            .filter(|r| r.name.starts_with("_xmpp-server._tcp."))
            .filter_map(|r| match &r.data {
                RecordData::Srv(s) => Some(s),
                RecordData::Addr(_) => None,
            })
            .collect();
        let nodes = d.config().xmpp.as_ref().map(|x| x.nodes.len()).unwrap_or(0);
        assert!(nodes >= 2);
        assert_eq!(xmpp.len(), nodes);
        assert!(
            xmpp.iter()
                .all(|s| s.priority == xmpp[0].priority && s.weight == xmpp[0].weight)
        );
        let sip = recs
            .iter()
            .filter(|r| r.name.starts_with("_sipfederationtls._tcp."))
            .count();
        assert_eq!(sip, 1);
        let zone = d.zone_fragment();
        assert!(
            zone.contains(
                "_sipfederationtls._tcp.example.com. 300 IN SRV 0 0 5061 sip.example.com."
            ),
            "{zone}"
        );
        assert!(
            zone.contains("xmpp1.example.com. 300 IN A 203.0.113.11"),
            "{zone}"
        );
        assert!(zone.contains("IN AAAA 2001:db8::11"), "{zone}");
    }

    #[test]
    fn published_records_resolve_back_to_every_node() {
        let d = Deployment::from_toml_str(EXAMPLE).expect("example is valid");
        let lookup = d.to_static_lookup();
        let opts = XmppOptions {
            direct_tls: false,
            ..XmppOptions::default()
        };
        let list = block_on(resolve_xmpp(
            &lookup,
            "example.com",
            &opts,
            &mut SplitMix64::new(3),
        ))
        .expect("targets");
        let mut hosts: Vec<&str> = list.targets.iter().map(|t| t.host.as_str()).collect();
        hosts.sort();
        let mut want: Vec<&str> = d
            .config()
            .xmpp
            .iter()
            .flat_map(|x| x.nodes.iter().map(|n| n.host.as_str()))
            .collect();
        want.sort();
        assert_eq!(hosts, want);
        assert!(
            list.targets
                .iter()
                .all(|t| t.transport == Transport::Tcp && t.port == 5269)
        );
    }

    fn err_key(text: &str) -> String {
        match Deployment::from_toml_str(text) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_key() {
        let node = "[[xmpp.nodes]]\nhost = \"x1.example.com\"\naddresses = [\"192.0.2.1\"]\n";
        assert_eq!(
            err_key(&format!("domain = \"bad_domain\"\n{node}")),
            "domain"
        );
        assert_eq!(err_key("domain = \"example.com\"\n"), "sip");
        assert_eq!(
            err_key(&format!("domain = \"example.com\"\nttl = 0\n{node}")),
            "ttl"
        );
        assert_eq!(err_key("domain = \"example.com\"\n[xmpp]\n"), "xmpp.nodes");
        assert_eq!(
            err_key(&format!(
                "domain = \"example.com\"\n{node}[[xmpp.nodes]]\nhost = \"-x\"\naddresses = [\"192.0.2.2\"]\n"
            )),
            "xmpp.nodes[1].host"
        );
        assert_eq!(
            err_key(
                "domain = \"example.com\"\n[[xmpp.nodes]]\nhost = \"x1.example.com\"\naddresses = []\n"
            ),
            "xmpp.nodes[0].addresses"
        );
        assert_eq!(
            err_key(&format!("domain = \"example.com\"\n{node}{node}")),
            "xmpp.nodes[1].host"
        );
        let sip = "[sip]\nkind = \"load-balancer\"\nhost = \"x1.example.com\"\naddresses = [\"192.0.2.9\"]\n";
        assert_eq!(
            err_key(&format!("domain = \"example.com\"\n{sip}{node}")),
            "xmpp.nodes[0].addresses"
        );
        match Deployment::from_toml_str("domain = \"example.com\"\nbogus = 1\n") {
            Err(ConfigError::Parse(m)) => assert!(m.contains("bogus"), "{m}"),
            other => panic!("{other:?}"),
        }
        match Deployment::from_toml_str(
            "domain = \"example.com\"\n[sip]\nkind = \"proxy\"\nhost = \"a.b\"\naddresses = []\n",
        ) {
            Err(ConfigError::Parse(m)) => assert!(m.contains("kind") || m.contains("proxy"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
