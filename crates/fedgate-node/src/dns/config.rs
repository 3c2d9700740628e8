//! DNS adapter configuration and `/etc/resolv.conf` reading.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

/// `[dns]` in the node configuration. Every field has a default.
///
/// ```toml
/// [dns]
/// nameservers = ["127.0.0.1:5353", "192.0.2.53"] # default: [] = read /etc/resolv.conf
/// timeout_ms = 2000          # per query attempt on one nameserver
/// attempts = 2               # rounds over the nameserver list
/// cache_entries = 4096       # per record family (SRV, address, NAPTR); 0 disables the cache
/// min_ttl_secs = 5           # TTL floor for cached answers
/// max_ttl_secs = 600         # TTL ceiling for cached answers
/// negative_ttl_secs = 60     # ceiling for NXDOMAIN / no-data answers (RFC 2308)
/// edns_payload = 1232        # EDNS(0) UDP payload size; 0 = no EDNS (512-byte answers)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Nameservers as `ip` or `ip:port` (`[v6]:port`). Empty: `/etc/resolv.conf`.
    pub nameservers: Vec<String>,
    /// Per-attempt timeout in milliseconds. Default 2000.
    pub timeout_ms: u64,
    /// Rounds over the nameserver list. Default 2.
    pub attempts: u32,
    /// Cache bound, in entries per record family. Default 4096.
    pub cache_entries: usize,
    /// TTL floor in seconds. Default 5.
    pub min_ttl_secs: u32,
    /// TTL ceiling in seconds. Default 600.
    pub max_ttl_secs: u32,
    /// Negative-answer TTL ceiling in seconds. Default 60.
    pub negative_ttl_secs: u32,
    /// EDNS(0) payload size. Default 1232; 0 disables EDNS.
    pub edns_payload: u16,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            timeout_ms: 2000,
            attempts: 2,
            cache_entries: 4096,
            min_ttl_secs: 5,
            max_ttl_secs: 600,
            negative_ttl_secs: 60,
            edns_payload: 1232,
        }
    }
}

/// A DNS configuration that cannot be used, naming the key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsConfigError {
    /// A value that is not acceptable.
    #[error("dns config: `{key}`: {reason}")]
    Invalid {
        /// The key, e.g. `dns.nameservers[0]`.
        key: String,
        /// Why.
        reason: String,
    },
    /// No nameserver configured and none found in `/etc/resolv.conf`.
    #[error("dns config: `dns.nameservers` is empty and {path} lists no nameserver: {detail}")]
    NoNameservers {
        /// The file read.
        path: String,
        /// What happened.
        detail: String,
    },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> DnsConfigError {
    DnsConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// Parses `ip`, `ip:port`, `[v6]` or `[v6]:port` (default port 53).
pub fn parse_nameserver(s: &str) -> Option<SocketAddr> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa);
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 53))
}

/// The `nameserver` lines of a resolv.conf (port 53; IPv6 zone ids are dropped, as
/// scoped link-local nameservers are not supported). Comments (`#`, `;`) are ignored.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(addr)) => {
                    let addr = addr.split('%').next().unwrap_or(addr);
                    addr.parse::<IpAddr>()
                        .ok()
                        .map(|ip| SocketAddr::new(ip, 53))
                }
                _ => None,
            }
        })
        .collect()
}

/// A checked configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub nameservers: Vec<SocketAddr>,
    pub timeout: Duration,
    pub attempts: u32,
    pub cache_entries: usize,
    pub min_ttl: u32,
    pub max_ttl: u32,
    pub negative_ttl: u32,
    pub edns_payload: u16,
}

impl DnsConfig {
    /// Checks the configuration; reads `/etc/resolv.conf` if no nameserver is given.
    pub(crate) fn settings(&self) -> Result<Settings, DnsConfigError> {
        self.settings_with_resolv_conf("/etc/resolv.conf")
    }

    pub(crate) fn settings_with_resolv_conf(&self, path: &str) -> Result<Settings, DnsConfigError> {
        let mut nameservers = Vec::new();
        for (i, ns) in self.nameservers.iter().enumerate() {
            let sa = parse_nameserver(ns).ok_or_else(|| {
                invalid(
                    format!("dns.nameservers[{i}]"),
                    format!("{ns:?} is not ip or ip:port"),
                )
            })?;
            if sa.port() == 0 {
                return Err(invalid(format!("dns.nameservers[{i}]"), "port 0"));
            }
            nameservers.push(sa);
        }
        if nameservers.is_empty() {
            let text =
                std::fs::read_to_string(path).map_err(|e| DnsConfigError::NoNameservers {
                    path: path.into(),
                    detail: e.to_string(),
                })?;
            nameservers = parse_resolv_conf(&text);
            if nameservers.is_empty() {
                return Err(DnsConfigError::NoNameservers {
                    path: path.into(),
                    detail: "no nameserver line".into(),
                });
            }
        }
        if self.timeout_ms == 0 || self.timeout_ms > 60_000 {
            return Err(invalid("dns.timeout_ms", "must be between 1 and 60000"));
        }
        if self.attempts == 0 || self.attempts > 10 {
            return Err(invalid("dns.attempts", "must be between 1 and 10"));
        }
        if self.cache_entries > 1_000_000 {
            return Err(invalid("dns.cache_entries", "must be at most 1000000"));
        }
        if self.min_ttl_secs > self.max_ttl_secs {
            return Err(invalid(
                "dns.min_ttl_secs",
                "must not exceed dns.max_ttl_secs",
            ));
        }
        if self.max_ttl_secs > 86_400 {
            return Err(invalid("dns.max_ttl_secs", "must be at most 86400"));
        }
        if self.negative_ttl_secs > 86_400 {
            return Err(invalid("dns.negative_ttl_secs", "must be at most 86400"));
        }
        if self.edns_payload != 0 && !(512..=4096).contains(&self.edns_payload) {
            return Err(invalid(
                "dns.edns_payload",
                "must be 0 or between 512 and 4096",
            ));
        }
        Ok(Settings {
            nameservers,
            timeout: Duration::from_millis(self.timeout_ms),
            attempts: self.attempts,
            cache_entries: self.cache_entries,
            min_ttl: self.min_ttl_secs,
            max_ttl: self.max_ttl_secs,
            negative_ttl: self.negative_ttl_secs,
            edns_payload: self.edns_payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameserver_lines() {
        let text = "# comment\nsearch example.com\nnameserver 192.0.2.1\nnameserver  fe80::1%eth0 \n\
                    nameserver ::1 # trailing\n;nameserver 192.0.2.9\nnameserver bogus\noptions ndots:2\n";
        let ns = parse_resolv_conf(text);
        let want: Vec<SocketAddr> = vec![
            "192.0.2.1:53".parse().unwrap(),
            "[fe80::1]:53".parse().unwrap(),
            "[::1]:53".parse().unwrap(),
        ];
        assert_eq!(ns, want);
    }

    #[test]
    fn nameserver_forms() {
        assert_eq!(
            parse_nameserver("127.0.0.1"),
            Some("127.0.0.1:53".parse().unwrap())
        );
        assert_eq!(
            parse_nameserver("127.0.0.1:5353"),
            Some("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(
            parse_nameserver("[::1]:5353"),
            Some("[::1]:5353".parse().unwrap())
        );
        assert_eq!(parse_nameserver("::1"), Some("[::1]:53".parse().unwrap()));
        assert_eq!(parse_nameserver("dns.example"), None);
    }

    #[test]
    fn errors_name_the_key() {
        let key = |c: DnsConfig| match c.settings() {
            Err(DnsConfigError::Invalid { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        let base = DnsConfig {
            nameservers: vec!["127.0.0.1".into()],
            ..DnsConfig::default()
        };
        assert_eq!(
            key(DnsConfig {
                nameservers: vec!["127.0.0.1".into(), "x".into()],
                ..base.clone()
            }),
            "dns.nameservers[1]"
        );
        assert_eq!(
            key(DnsConfig {
                timeout_ms: 0,
                ..base.clone()
            }),
            "dns.timeout_ms"
        );
        assert_eq!(
            key(DnsConfig {
                attempts: 0,
                ..base.clone()
            }),
            "dns.attempts"
        );
        assert_eq!(
            key(DnsConfig {
                min_ttl_secs: 700,
                ..base.clone()
            }),
            "dns.min_ttl_secs"
        );
        assert_eq!(
            key(DnsConfig {
                edns_payload: 100,
                ..base.clone()
            }),
            "dns.edns_payload"
        );
        assert!(base.settings().is_ok());
        let parsed: DnsConfig =
            toml::from_str("nameservers = [\"127.0.0.1:5353\"]\nattempts = 3\n").unwrap();
        assert_eq!(parsed.attempts, 3);
        assert_eq!(parsed.timeout_ms, 2000);
        assert!(toml::from_str::<DnsConfig>("retries = 3\n").is_err());
    }

    #[test]
    fn empty_nameservers_read_resolv_conf() {
        let dir = std::env::temp_dir().join(format!("fedgate-resolv-{}", std::process::id()));
        std::fs::write(&dir, "nameserver 127.0.0.53\n").unwrap();
        let s = DnsConfig::default()
            .settings_with_resolv_conf(dir.to_str().unwrap())
            .unwrap();
        assert_eq!(
            s.nameservers,
            vec!["127.0.0.53:53".parse::<SocketAddr>().unwrap()]
        );
        std::fs::write(&dir, "search x\n").unwrap();
        assert!(matches!(
            DnsConfig::default().settings_with_resolv_conf(dir.to_str().unwrap()),
            Err(DnsConfigError::NoNameservers { .. })
        ));
        let _ = std::fs::remove_file(&dir);
    }
}
