//! [`FederationLookup`]: the [`SrvLookup`] the node's XMPP driver resolves peers with:
//! the static targets of `[[federation.domain]] targets` for the domains that have
//! them, DNS ([`DnsLookup`]) for every other name.

use std::collections::HashSet;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use fedgate_policy::Protocol;
use fedgate_srv::{
    LookupError, NaptrRecord, SrvAnswer, SrvLookup, SrvRecord, StaticLookup, normalize_name,
};

use crate::config::{TargetHost, ValidatedConfig};
use crate::dns::DnsLookup;

/// The [`SrvLookup`] the node's XMPP driver resolves peers with: the static targets of
/// `[[federation.domain]] targets` for the domains that have them, DNS ([`DnsLookup`])
/// for every other name.
#[derive(Debug, Clone)]
pub struct FederationLookup {
    statics: StaticLookup,
    /// Names answered by `statics` only (normalised).
    static_names: HashSet<String>,
    dns: Option<DnsLookup>,
}

impl FederationLookup {
    /// From the XMPP peers' static targets, and `dns` for everything else (`None`: every
    /// other name fails to resolve).
    ///
    /// A peer `d` with targets gets SRV records at `_xmpp-server._tcp.d` (priority in
    /// the order written, so they are tried in that order) and an empty answer at
    /// `_xmpps-server._tcp.d`; an IP target is named `static-<n>.d` with its address; a
    /// host-name target is resolved with DNS A/AAAA.
    pub fn new(cfg: &ValidatedConfig, dns: Option<DnsLookup>) -> Self {
        let mut statics = StaticLookup::new();
        let mut static_names = HashSet::new();
        for p in cfg
            .peers
            .iter()
            .filter(|p| p.protocol == Protocol::Xmpp && !p.targets.is_empty())
        {
            let d = p.domain.as_str();
            let srv = format!("_xmpp-server._tcp.{d}");
            for (i, t) in p.targets.iter().enumerate() {
                let prio = u16::try_from(i).unwrap_or(u16::MAX);
                let host = match &t.host {
                    TargetHost::Ip(ip) => {
                        let name = format!("static-{i}.{d}");
                        statics.add_host(&name, *ip);
                        static_names.insert(normalize_name(&name).into_owned());
                        name
                    }
                    TargetHost::Name(n) => n.as_str().to_owned(),
                };
                statics.add_srv(&srv, SrvRecord::new(prio, 0, t.port, &host));
            }
            static_names.insert(normalize_name(&srv).into_owned());
            static_names.insert(normalize_name(&format!("_xmpps-server._tcp.{d}")).into_owned());
        }
        FederationLookup {
            statics,
            static_names,
            dns,
        }
    }

    fn is_static(&self, name: &str) -> bool {
        self.static_names.contains(normalize_name(name).as_ref())
    }

    fn no_dns(name: &str) -> LookupError {
        LookupError::Transport {
            name: name.to_owned(),
            detail: "no DNS configured (static targets only)".into(),
        }
    }
}

impl SrvLookup for FederationLookup {
    fn lookup_srv(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<SrvAnswer, LookupError>> + Send {
        let name = name.to_owned();
        async move {
            if self.is_static(&name) {
                return self.statics.lookup_srv(&name).await;
            }
            match &self.dns {
                Some(d) => d.lookup_srv(&name).await,
                None => Err(Self::no_dns(&name)),
            }
        }
    }

    fn lookup_ip(
        &self,
        host: &str,
    ) -> impl Future<Output = Result<Arc<[IpAddr]>, LookupError>> + Send {
        let host = host.to_owned();
        async move {
            if self.is_static(&host) {
                return self.statics.lookup_ip(&host).await;
            }
            match &self.dns {
                Some(d) => d.lookup_ip(&host).await,
                None => Err(Self::no_dns(&host)),
            }
        }
    }

    fn lookup_naptr(
        &self,
        domain: &str,
    ) -> impl Future<Output = Result<Arc<[NaptrRecord]>, LookupError>> + Send {
        let domain = domain.to_owned();
        async move {
            match &self.dns {
                Some(d) => d.lookup_naptr(&domain).await,
                None => Err(Self::no_dns(&domain)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::NodeConfig;
    use fedgate_srv::{XmppOptions, resolve_xmpp};

    #[tokio::test]
    async fn federation_lookup_static_targets_in_order_and_dns_for_the_rest() {
        let cfg = NodeConfig::from_toml_str(
            r#"
            [node]
            domains = ["a.test"]
            [tls]
            generate = true
            [[federation.domain]]
            name = "b.test"
            protocol = "xmpp"
            targets = ["127.0.0.11:5270", "127.0.0.12"]
            [[federation.domain]]
            name = "c.test"
            protocol = "xmpp"
            "#,
        )
        .unwrap()
        .validate()
        .unwrap();
        let l = FederationLookup::new(&cfg, None);
        let mut rng = fedgate_srv::SplitMix64::new(7);
        let list = resolve_xmpp(&l, "b.test", &XmppOptions::default(), &mut rng)
            .await
            .unwrap();
        let got: Vec<String> = list
            .endpoints()
            .iter()
            .map(|e| e.addr.to_string())
            .collect();
        assert_eq!(got, ["127.0.0.11:5270", "127.0.0.12:5269"]);
        // c.test has no static targets: DNS, which is not configured here.
        assert!(l.lookup_srv("_xmpp-server._tcp.c.test").await.is_err());
        assert!(l.lookup_ip("static-0.c.test").await.is_err());
    }
}
