//! The DNS adapter: [`DnsLookup`] implements [`fedgate_srv::SrvLookup`] over real DNS.
//!
//! ## Decision: a small client of our own on `hickory-proto`, not `hickory-resolver`
//!
//! fedgate asks DNS three kinds of question (SRV, A/AAAA, NAPTR), always absolute names,
//! and needs from the answers more than a general stub resolver gives:
//! * **Glue without a second query.** RFC 2782 lets a client use the A/AAAA records of the
//!   Additional section. `hickory-resolver` 0.26 returns them (`additionals()`) but its
//!   `lookup_ip` queries the target again, and its cache is keyed by question, so using
//!   glue means keeping a second cache beside it anyway.
//! * **Typed, cached answers.** We cache the *classified* answer ([`fedgate_srv::SrvAnswer`]:
//!   records + glue, "not offered", or no records) behind an `Arc`, so a cache hit is a
//!   hash lookup and a reference count: well under 1 µs (hickory-resolver's cached lookup
//!   measured about 6 µs in our research). TTL floor and ceiling, negative TTL and the
//!   entry bound are ours and tested with an injected clock, not the real one.
//! * **Small, auditable surface.** What we need of the rest (UDP with id/question/source
//!   checks, TC → TCP retry, per-attempt timeouts, rotation over nameservers) is a few
//!   hundred lines. The resolver would bring its own connection pool, server-ordering
//!   heuristics and a second cache whose behaviour we would have to configure around.
//!
//! What we give up, deliberately: search lists and `ndots` (federation names are
//! absolute), DNS over TLS/HTTPS/QUIC, DNSSEC validation, request coalescing, `/etc/hosts`.
//! CNAME chains inside one answer are followed (RFC 2782 forbids aliases as SRV targets,
//! but a fallback A lookup may meet one). If we ever need those, the `SrvLookup` trait is
//! the seam: a `hickory-resolver` implementation can sit beside this one.
//!
//! ## Behaviour
//! * Nameservers from [`DnsConfig::nameservers`], else `/etc/resolv.conf`. Each attempt
//!   round tries every nameserver in order; SERVFAIL/REFUSED or a timeout moves on.
//! * Every query gets a fresh random id and a fresh ephemeral source port; answers must
//!   echo id and question and come from the nameserver, otherwise they are ignored.
//! * Truncated UDP answers are repeated over TCP. EDNS(0) payload is configurable.
//! * Cache: per record family, bounded in entries; TTL = min of the records used
//!   (including glue), clamped to `[min_ttl_secs, max_ttl_secs]`; negative answers
//!   (NXDOMAIN / no data) for min(SOA TTL, SOA MINIMUM, `negative_ttl_secs`). Errors
//!   (timeouts, SERVFAIL) are not cached.

mod cache;
mod config;
mod transport;
mod wire;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fedgate_srv::{LookupError, NaptrRecord, SrvAnswer, SrvLookup, normalize_name};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

pub use cache::DnsCache;
pub use config::{DnsConfig, DnsConfigError, parse_nameserver, parse_resolv_conf};

use config::Settings;
use transport::{ExchangeError, Via, exchange};

/// Where the cache reads the time. Queries' own timeouts use tokio's timer.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// tokio's clock (so a paused test runtime pauses the cache too).
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// A clock that moves only when told to; for tests that need to pass a TTL while real
/// sockets are in use.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<Instant>>);

impl ManualClock {
    /// Starts at `start`.
    pub fn new(start: Instant) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut t = relock(&self.0);
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *relock(&self.0)
    }
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A random 64-bit value from the standard library's per-process SipHash keys.
/// Not for cryptography; used for DNS ids and to seed SRV ordering.
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Counters, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsStats {
    /// Queries sent over UDP.
    pub udp_queries: u64,
    /// Queries repeated over TCP after truncation.
    pub tcp_queries: u64,
    /// Lookups answered from the cache.
    pub cache_hits: u64,
}

/// [`SrvLookup`] over DNS with a bounded TTL cache. Cheap to clone; clones share the cache.
#[derive(Debug, Clone)]
pub struct DnsLookup {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    s: Settings,
    clock: Arc<dyn Clock>,
    cache: Arc<DnsCache>,
    udp_queries: AtomicU64,
    tcp_queries: AtomicU64,
    cache_hits: AtomicU64,
}

impl DnsLookup {
    /// A lookup using tokio's clock.
    pub fn new(cfg: &DnsConfig) -> Result<Self, DnsConfigError> {
        Self::with_clock(cfg, Arc::new(TokioClock))
    }

    /// A lookup whose cache reads `clock`.
    pub fn with_clock(cfg: &DnsConfig, clock: Arc<dyn Clock>) -> Result<Self, DnsConfigError> {
        let n = cfg.cache_entries;
        Self::with_cache(cfg, clock, Arc::new(DnsCache::new(n)))
    }

    /// A lookup that reads `clock` and uses (and may share) `cache`; the cache's own
    /// bound applies, not `cfg.cache_entries`.
    pub fn with_cache(
        cfg: &DnsConfig,
        clock: Arc<dyn Clock>,
        cache: Arc<DnsCache>,
    ) -> Result<Self, DnsConfigError> {
        let s = cfg.settings()?;
        Ok(Self {
            inner: Arc::new(Inner {
                s,
                clock,
                cache,
                udp_queries: AtomicU64::new(0),
                tcp_queries: AtomicU64::new(0),
                cache_hits: AtomicU64::new(0),
            }),
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> DnsStats {
        DnsStats {
            udp_queries: self.inner.udp_queries.load(Ordering::Relaxed),
            tcp_queries: self.inner.tcp_queries.load(Ordering::Relaxed),
            cache_hits: self.inner.cache_hits.load(Ordering::Relaxed),
        }
    }

    /// Entries held in the cache (all families).
    pub fn cache_len(&self) -> usize {
        self.inner.cache.len()
    }

    fn hit(&self) {
        self.inner.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Cache lifetime of an answer: positive TTLs are clamped to the floor and ceiling;
    /// negative ones come from the SOA (RFC 2308), capped by the negative TTL setting.
    fn expiry(&self, ttl: Option<u32>, m: &Message) -> Instant {
        let s = &self.inner.s;
        let secs = match ttl {
            Some(t) => t.clamp(s.min_ttl, s.max_ttl),
            None => wire::soa_negative_ttl(m)
                .unwrap_or(s.negative_ttl)
                .min(s.negative_ttl),
        };
        self.inner.clock.now() + Duration::from_secs(u64::from(secs))
    }

    /// Asks the nameservers until one gives a usable answer (NOERROR or NXDOMAIN).
    async fn query(&self, name: &str, rtype: RecordType) -> Result<Message, LookupError> {
        let s = &self.inner.s;
        let qname =
            wire::query_name(name).ok_or_else(|| LookupError::InvalidName { name: name.into() })?;
        let mut last: Option<LookupError> = None;
        for _ in 0..s.attempts {
            for ns in &s.nameservers {
                let id = random_u64() as u16;
                let q = wire::build_query(id, &qname, rtype, s.edns_payload)
                    .ok_or_else(|| LookupError::InvalidName { name: name.into() })?;
                self.inner.udp_queries.fetch_add(1, Ordering::Relaxed);
                match exchange(*ns, &q, id, &qname, rtype, s.timeout).await {
                    Ok((m, via)) => {
                        if via == Via::Tcp {
                            self.inner.tcp_queries.fetch_add(1, Ordering::Relaxed);
                        }
                        match m.metadata.response_code {
                            ResponseCode::NoError | ResponseCode::NXDomain => return Ok(m),
                            code => {
                                tracing::debug!(%ns, name, ?rtype, %code, "nameserver error");
                                last = Some(LookupError::Server {
                                    name: name.into(),
                                    code: code.to_string(),
                                });
                            }
                        }
                    }
                    Err(ExchangeError::Timeout) => {
                        tracing::debug!(%ns, name, ?rtype, "DNS timeout");
                        last = Some(LookupError::Timeout { name: name.into() });
                    }
                    Err(ExchangeError::Io(detail)) => {
                        tracing::debug!(%ns, name, ?rtype, detail, "DNS transport error");
                        last = Some(LookupError::Transport {
                            name: name.into(),
                            detail,
                        });
                    }
                }
            }
        }
        let e = last.unwrap_or(LookupError::Timeout { name: name.into() });
        tracing::warn!(name, ?rtype, error = %e, "DNS lookup failed");
        Err(e)
    }

    async fn srv(&self, name: &str) -> Result<SrvAnswer, LookupError> {
        let key = normalize_name(name);
        if let Some(v) = self.inner.cache.get_srv(&key, self.inner.clock.now()) {
            self.hit();
            return Ok(v);
        }
        let m = self.query(&key, RecordType::SRV).await?;
        let (answer, ttl) = wire::read_srv(&m, &key);
        let until = self.expiry(ttl, &m);
        self.inner
            .cache
            .insert_srv(&key, answer.clone(), until, self.inner.clock.now());
        Ok(answer)
    }

    async fn ip(&self, host: &str) -> Result<Arc<[IpAddr]>, LookupError> {
        let key = normalize_name(host);
        if let Some(v) = self.inner.cache.get_addrs(&key, self.inner.clock.now()) {
            self.hit();
            return Ok(v);
        }
        let (a, aaaa) = tokio::join!(
            self.query(&key, RecordType::A),
            self.query(&key, RecordType::AAAA)
        );
        let read =
            |r: &Result<Message, LookupError>| r.as_ref().ok().map(|m| wire::read_addrs(m, &key));
        let (ra, raaaa) = (read(&a), read(&aaaa));
        let addrs: Arc<[IpAddr]> = ra
            .iter()
            .chain(raaaa.iter())
            .flat_map(|(v, _)| v.iter().copied())
            .collect();
        match (&a, &aaaa) {
            (Ok(ma), Ok(m6)) => {
                let ttl = [ra.and_then(|x| x.1), raaaa.and_then(|x| x.1)]
                    .into_iter()
                    .flatten()
                    .min();
                let until = if ttl.is_some() {
                    self.expiry(ttl, ma)
                } else {
                    self.expiry(None, ma).min(self.expiry(None, m6))
                };
                self.inner.cache.insert_addrs(
                    &key,
                    Arc::clone(&addrs),
                    until,
                    self.inner.clock.now(),
                );
                Ok(addrs)
            }
            // One family failed: use the other's addresses, but do not cache a half answer.
            (Err(e), _) | (_, Err(e)) => {
                if addrs.is_empty() {
                    Err(e.clone())
                } else {
                    Ok(addrs)
                }
            }
        }
    }

    async fn naptr(&self, domain: &str) -> Result<Arc<[NaptrRecord]>, LookupError> {
        let key = normalize_name(domain);
        if let Some(v) = self.inner.cache.get_naptr(&key, self.inner.clock.now()) {
            self.hit();
            return Ok(v);
        }
        let m = self.query(&key, RecordType::NAPTR).await?;
        let (recs, ttl) = wire::read_naptr(&m, &key);
        let recs: Arc<[NaptrRecord]> = recs.into();
        let until = self.expiry(ttl, &m);
        self.inner
            .cache
            .insert_naptr(&key, Arc::clone(&recs), until, self.inner.clock.now());
        Ok(recs)
    }
}

impl SrvLookup for DnsLookup {
    fn lookup_srv(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<SrvAnswer, LookupError>> + Send {
        self.srv(name)
    }

    fn lookup_ip(
        &self,
        host: &str,
    ) -> impl Future<Output = Result<Arc<[IpAddr]>, LookupError>> + Send {
        self.ip(host)
    }

    fn lookup_naptr(
        &self,
        domain: &str,
    ) -> impl Future<Output = Result<Arc<[NaptrRecord]>, LookupError>> + Send {
        self.naptr(domain)
    }
}
