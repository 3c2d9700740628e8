//! Where our own SIP requests to a federated domain go: the static targets of
//! `[[federation.domain]] targets`, else DNS through fedgate-srv (`_sipfederationtls._tcp`
//! first, RFC 3263), with fedgate-srv's [`Health`] memory for failover: an endpoint that
//! failed (no answer, 503, or a transport error, which the SIP user agent reports as a
//! 503 as soon as the connection fails) is held down for `HealthConfig::skip_for`
//! (30 s by default; a 503's Retry-After, capped, when it has one): new requests go to
//! the next endpoint first, and one request walks the list with
//! [`next_target`](SipRoutes::next_target), never trying an endpoint twice.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use fedgate_policy::{Domain, Protocol};
use fedgate_srv::{
    Endpoint, Failure, Health, HealthConfig, SipOptions, SipUriFacts, SplitMix64, Transport,
    resolve_sip,
};

use crate::config::{SipOutboundTransport, TargetHost, ValidatedConfig};
use crate::dns::DnsLookup;
use crate::sip::Target;

/// The outbound routes of the SIP gateway.
#[derive(Debug)]
pub struct SipRoutes {
    statics: HashMap<Domain, Vec<SocketAddr>>,
    dns: Option<DnsLookup>,
    transport: SipOutboundTransport,
    health: Mutex<Health>,
    rng: Mutex<SplitMix64>,
}

/// Why no target was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// DNS found nothing usable (or no DNS is configured).
    #[error("no SIP target for {0}: {1}")]
    NoTarget(String, String),
}

impl SipRoutes {
    /// Static targets only (tests), with this outbound transport.
    pub fn new_static(
        statics: impl IntoIterator<Item = (Domain, Vec<SocketAddr>)>,
        transport: SipOutboundTransport,
    ) -> Self {
        SipRoutes {
            statics: statics.into_iter().collect(),
            dns: None,
            transport,
            health: Mutex::new(Health::new(HealthConfig::default())),
            rng: Mutex::new(SplitMix64::new(0x5eed)),
        }
    }

    /// From the SIP peers of the configuration (IP targets; host-name targets are
    /// looked up with DNS at send time) and `dns` for the others.
    pub fn from_config(cfg: &ValidatedConfig, dns: Option<DnsLookup>) -> Self {
        let transport = cfg
            .sip
            .federation
            .map(|f| f.outbound_transport)
            .unwrap_or_default();
        let mut statics = HashMap::new();
        for p in cfg.peers.iter().filter(|p| p.protocol == Protocol::Sip) {
            let addrs: Vec<SocketAddr> = p
                .targets
                .iter()
                .filter_map(|t| match &t.host {
                    TargetHost::Ip(ip) => Some(SocketAddr::new(*ip, t.port)),
                    TargetHost::Name(n) => {
                        tracing::warn!(
                            domain = %p.domain,
                            host = %n,
                            "sip gateway: host-name targets are not supported for SIP peers; use an address"
                        );
                        None
                    }
                })
                .collect();
            if !addrs.is_empty() {
                statics.insert(p.domain.clone(), addrs);
            }
        }
        SipRoutes {
            statics,
            dns,
            transport,
            health: Mutex::new(Health::new(HealthConfig::default())),
            rng: Mutex::new(SplitMix64::new(crate::xmpp::random_seed()[0].into())),
        }
    }

    fn target(&self, domain: &Domain, addr: SocketAddr) -> Target {
        match self.transport {
            SipOutboundTransport::Tls => Target::tls(addr, domain.as_str()),
            SipOutboundTransport::Tcp => Target::tcp(addr),
        }
    }

    /// The targets for `domain`, best first, healthy ones before those that failed
    /// recently. The TLS server name is always the domain itself (RFC 5922).
    pub async fn targets(&self, domain: &Domain) -> Result<Vec<Target>, RouteError> {
        let endpoints: Vec<SocketAddr> = match self.statics.get(domain) {
            Some(v) => v.clone(),
            None => {
                let Some(dns) = &self.dns else {
                    return Err(RouteError::NoTarget(
                        domain.to_string(),
                        "no static target and no DNS".into(),
                    ));
                };
                let facts = SipUriFacts {
                    secure: false,
                    host: domain.as_str().to_owned(),
                    port: None,
                    transport: None,
                };
                let opts = SipOptions {
                    federation: true,
                    allow_tcp: self.transport == SipOutboundTransport::Tcp,
                    allow_udp: false,
                };
                let mut rng = self
                    .rng
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                let list = resolve_sip(dns, &facts, &opts, &mut rng)
                    .await
                    .map_err(|e| RouteError::NoTarget(domain.to_string(), e.to_string()))?;
                *self
                    .rng
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = rng;
                list.endpoints()
                    .into_iter()
                    .filter(|e| match self.transport {
                        SipOutboundTransport::Tls => e.transport == Transport::Tls,
                        SipOutboundTransport::Tcp => {
                            matches!(e.transport, Transport::Tls | Transport::Tcp)
                        }
                    })
                    .map(|e| e.addr)
                    .collect()
            }
        };
        if endpoints.is_empty() {
            return Err(RouteError::NoTarget(
                domain.to_string(),
                "no endpoint".into(),
            ));
        }
        let now = Instant::now();
        let health = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut up, down): (Vec<_>, Vec<_>) = endpoints
            .into_iter()
            .partition(|a| !health.is_down(&self.endpoint(*a), now));
        up.extend(down);
        Ok(up.into_iter().map(|a| self.target(domain, a)).collect())
    }

    fn endpoint(&self, addr: SocketAddr) -> Endpoint {
        Endpoint {
            addr,
            transport: match self.transport {
                SipOutboundTransport::Tls => Transport::Tls,
                SipOutboundTransport::Tcp => Transport::Tcp,
            },
        }
    }

    /// The best target for `domain` not in `tried` (the endpoints a request already
    /// failed on): the failover iterator of one request (RFC 3263 §4.3). `Ok(None)`
    /// when every target has been tried.
    pub async fn next_target(
        &self,
        domain: &Domain,
        tried: &[Target],
    ) -> Result<Option<Target>, RouteError> {
        Ok(self
            .targets(domain)
            .await?
            .into_iter()
            .find(|t| !tried.contains(t)))
    }

    /// Remembers that `target` failed (no answer: `status` 408; refused or
    /// unavailable: 503), so the next [`targets`](Self::targets) puts it last.
    pub fn failed(&self, target: &Target, status: u16) {
        let failure = if status == 408 {
            Failure::Timeout
        } else {
            Failure::Sip503 { retry_after: None }
        };
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .record_failure(self.endpoint(target.addr), failure, Instant::now());
    }

    /// Remembers that `target` answered.
    pub fn succeeded(&self, target: &Target) {
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .record_success(&self.endpoint(target.addr));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn static_targets_in_order_and_failed_ones_last() {
        let d = Domain::new("lync.test").unwrap();
        let a: SocketAddr = "127.0.0.1:5061".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:5061".parse().unwrap();
        let r = SipRoutes::new_static([(d.clone(), vec![a, b])], SipOutboundTransport::Tls);
        let t = r.targets(&d).await.unwrap();
        assert_eq!(t.iter().map(|t| t.addr).collect::<Vec<_>>(), [a, b]);
        assert_eq!(t[0].server_name.as_deref(), Some("lync.test"));
        r.failed(&t[0], 503);
        let t = r.targets(&d).await.unwrap();
        assert_eq!(t.iter().map(|t| t.addr).collect::<Vec<_>>(), [b, a]);
        r.succeeded(&Target::tls(a, "lync.test"));
        let t = r.targets(&d).await.unwrap();
        assert_eq!(t[0].addr, a);
        assert!(
            r.targets(&Domain::new("other.test").unwrap())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn next_target_walks_the_list_once_and_skips_held_down_endpoints() {
        let d = Domain::new("lync.test").unwrap();
        let a: SocketAddr = "127.0.0.99:5061".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:5061".parse().unwrap();
        let r = SipRoutes::new_static([(d.clone(), vec![a, b])], SipOutboundTransport::Tcp);
        let first = r.next_target(&d, &[]).await.unwrap().unwrap();
        assert_eq!(first.addr, a);
        // The request failed on `a` (a transport error is a 503): the next one is `b`,
        // not `a` again although `a` now sorts last.
        r.failed(&first, 503);
        let second = r
            .next_target(&d, std::slice::from_ref(&first))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(second.addr, b);
        assert_eq!(
            r.next_target(&d, &[first.clone(), second.clone()])
                .await
                .unwrap(),
            None
        );
        // A new request starts with `b`: `a` is held down.
        assert_eq!(r.next_target(&d, &[]).await.unwrap().unwrap().addr, b);
    }
}
