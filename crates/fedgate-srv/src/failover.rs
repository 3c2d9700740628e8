//! Walking a target list: the next endpoint after a failure, and a memory of endpoints
//! that failed recently so they stop costing a timeout on every connect.
//!
//! Time is an argument (`now`); this module never reads the clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::target::{Endpoint, TargetList};

/// Why an attempt on an endpoint failed. Each one moves on to the next endpoint
/// (RFC 3263 §4.3 for SIP; RFC 6120 §3.2.1 for XMPP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The connection was refused (RST, ICMP port unreachable).
    Refused,
    /// Any other connect failure (unreachable network, reset during connect).
    ConnectFailed,
    /// The TLS handshake failed (including certificate rejection).
    TlsFailed,
    /// No answer in time (TCP connect, TLS, or SIP Timer B/F with no response at all).
    Timeout,
    /// A SIP 503 Service Unavailable, with its Retry-After if present.
    Sip503 {
        /// Retry-After from the response.
        retry_after: Option<Duration>,
    },
}

/// How long failed endpoints are skipped, and how many are remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// How long an endpoint that failed is skipped.
    pub skip_for: Duration,
    /// Upper bound for a 503 Retry-After honoured as the skip time.
    pub max_skip: Duration,
    /// Most endpoints remembered; beyond it, the one that would recover first is forgotten.
    pub max_entries: usize,
}

impl Default for HealthConfig {
    /// 30 s skip, Retry-After capped at 300 s, 1024 entries.
    fn default() -> Self {
        Self {
            skip_for: Duration::from_secs(30),
            max_skip: Duration::from_secs(300),
            max_entries: 1024,
        }
    }
}

/// Endpoints that failed recently, each with the instant it may be tried again.
/// Bounded by [`HealthConfig::max_entries`]. Share one per node (or per peer domain).
#[derive(Debug, Clone)]
pub struct Health {
    cfg: HealthConfig,
    down_until: HashMap<Endpoint, Instant>,
}

impl Health {
    /// An empty memory.
    pub fn new(cfg: HealthConfig) -> Self {
        Self {
            cfg,
            down_until: HashMap::new(),
        }
    }

    /// True if `ep` failed and its skip time has not passed at `now`.
    pub fn is_down(&self, ep: &Endpoint, now: Instant) -> bool {
        self.down_until.get(ep).is_some_and(|until| now < *until)
    }

    /// Records a failure of `ep` at `now`.
    pub fn record_failure(&mut self, ep: Endpoint, failure: Failure, now: Instant) {
        let skip = match failure {
            Failure::Sip503 {
                retry_after: Some(r),
            } => r.min(self.cfg.max_skip),
            _ => self.cfg.skip_for,
        };
        if self.cfg.max_entries == 0 {
            return;
        }
        if !self.down_until.contains_key(&ep) && self.down_until.len() >= self.cfg.max_entries {
            self.down_until.retain(|_, until| *until > now);
            let soonest = (self.down_until.len() >= self.cfg.max_entries)
                .then(|| {
                    self.down_until
                        .iter()
                        .min_by_key(|(_, u)| **u)
                        .map(|(e, _)| *e)
                })
                .flatten();
            if let Some(first) = soonest {
                self.down_until.remove(&first);
            }
        }
        self.down_until.insert(ep, now + skip);
    }

    /// Records a success: the endpoint is no longer skipped.
    pub fn record_success(&mut self, ep: &Endpoint) {
        self.down_until.remove(ep);
    }

    /// Number of endpoints remembered (including expired ones not yet evicted).
    pub fn len(&self) -> usize {
        self.down_until.len()
    }

    /// True if nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.down_until.is_empty()
    }
}

/// Yields the endpoints of a [`TargetList`] in order for one request (SIP: one
/// transaction; each new endpoint needs a new Via branch, RFC 3263 §4.3).
///
/// Endpoints that [`Health`] says are down are deferred: they are offered only after
/// every other endpoint has been tried, so a dead node stops costing a timeout on
/// every connect but a list whose endpoints are all marked down is still tried.
///
/// ```
/// # use std::time::{Duration, Instant};
/// # use fedgate_srv::*;
/// let list = TargetList { targets: vec![Target {
///     host: "a.test".into(), port: 5269, transport: Transport::Tcp,
///     addrs: vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()],
///     source: TargetSource::Srv }] };
/// let mut health = Health::new(HealthConfig::default());
/// let now = Instant::now();
/// let mut fo = Failover::new(&list);
/// let first = fo.next(&health, now).unwrap();
/// health.record_failure(first, Failure::Refused, now);
/// let second = fo.next(&health, now).unwrap();
/// assert_ne!(first, second);
/// // A new request later skips the dead endpoint until its skip time passes.
/// let mut fo = Failover::new(&list);
/// assert_eq!(fo.next(&health, now + Duration::from_secs(1)), Some(second));
/// ```
#[derive(Debug, Clone)]
pub struct Failover {
    endpoints: Vec<Endpoint>,
    next: usize,
    deferred: Vec<Endpoint>,
    next_deferred: usize,
}

impl Failover {
    /// Starts walking `list`.
    pub fn new(list: &TargetList) -> Self {
        Self {
            endpoints: list.endpoints(),
            next: 0,
            deferred: Vec::new(),
            next_deferred: 0,
        }
    }

    /// The next endpoint to try, or `None` when every endpoint has been offered once.
    /// Call [`Health::record_failure`] / [`Health::record_success`] with the outcome.
    pub fn next(&mut self, health: &Health, now: Instant) -> Option<Endpoint> {
        while let Some(ep) = self.endpoints.get(self.next).copied() {
            self.next += 1;
            if health.is_down(&ep, now) {
                self.deferred.push(ep);
            } else {
                return Some(ep);
            }
        }
        let ep = self.deferred.get(self.next_deferred).copied();
        if ep.is_some() {
            self.next_deferred += 1;
        }
        ep
    }

    /// Endpoints not offered yet.
    pub fn remaining(&self) -> usize {
        self.endpoints.len() - self.next + self.deferred.len() - self.next_deferred
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{Target, TargetSource, Transport};
    use std::net::{IpAddr, SocketAddr};

    fn list(hosts: &[u8]) -> TargetList {
        TargetList {
            targets: hosts
                .iter()
                .map(|h| Target {
                    host: format!("n{h}.test"),
                    port: 5061,
                    transport: Transport::Tls,
                    addrs: vec![IpAddr::from([127, 0, 0, *h])],
                    source: TargetSource::Srv,
                })
                .collect(),
        }
    }

    fn ep(h: u8) -> Endpoint {
        Endpoint {
            addr: SocketAddr::from(([127, 0, 0, h], 5061)),
            transport: Transport::Tls,
        }
    }

    #[test]
    fn rfc3263_4_3_each_failure_moves_to_next_and_all_are_offered_once() {
        let l = list(&[1, 2, 3]);
        let mut h = Health::new(HealthConfig::default());
        let t0 = Instant::now();
        let mut fo = Failover::new(&l);
        let fails = [
            Failure::Refused,
            Failure::TlsFailed,
            Failure::Sip503 { retry_after: None },
        ];
        let mut seen = vec![];
        while let Some(e) = fo.next(&h, t0) {
            h.record_failure(e, fails[seen.len()], t0);
            seen.push(e);
        }
        assert_eq!(seen, [ep(1), ep(2), ep(3)]);
        assert_eq!(fo.remaining(), 0);
    }

    #[test]
    fn dead_endpoint_is_skipped_until_its_time_then_tried_again() {
        let l = list(&[1, 2]);
        let cfg = HealthConfig {
            skip_for: Duration::from_secs(30),
            ..HealthConfig::default()
        };
        let mut h = Health::new(cfg);
        let t0 = Instant::now();
        h.record_failure(ep(1), Failure::Timeout, t0);
        let mut fo = Failover::new(&l);
        assert_eq!(fo.next(&h, t0 + Duration::from_secs(29)), Some(ep(2)));
        // only after the healthy one failed too is the dead one offered
        assert_eq!(fo.next(&h, t0 + Duration::from_secs(29)), Some(ep(1)));
        assert_eq!(fo.next(&h, t0 + Duration::from_secs(29)), None);
        let mut fo = Failover::new(&l);
        assert_eq!(fo.next(&h, t0 + Duration::from_secs(30)), Some(ep(1)));
        h.record_success(&ep(1));
        assert!(h.is_empty());
    }

    #[test]
    fn sip_503_retry_after_is_honoured_and_capped() {
        let mut h = Health::new(HealthConfig::default());
        let t0 = Instant::now();
        h.record_failure(
            ep(1),
            Failure::Sip503 {
                retry_after: Some(Duration::from_secs(120)),
            },
            t0,
        );
        assert!(h.is_down(&ep(1), t0 + Duration::from_secs(119)));
        assert!(!h.is_down(&ep(1), t0 + Duration::from_secs(120)));
        h.record_failure(
            ep(2),
            Failure::Sip503 {
                retry_after: Some(Duration::from_secs(9999)),
            },
            t0,
        );
        assert!(!h.is_down(&ep(2), t0 + Duration::from_secs(300)));
    }

    #[test]
    fn health_is_bounded() {
        let cfg = HealthConfig {
            max_entries: 4,
            ..HealthConfig::default()
        };
        let mut h = Health::new(cfg);
        let t0 = Instant::now();
        for i in 0..100u8 {
            h.record_failure(
                ep(i),
                Failure::Refused,
                t0 + Duration::from_millis(u64::from(i)),
            );
            assert!(h.len() <= 4);
        }
        // the most recent failures are the ones remembered
        assert!(h.is_down(&ep(99), t0 + Duration::from_millis(100)));
        assert!(!h.is_down(&ep(0), t0 + Duration::from_millis(100)));
    }
}
