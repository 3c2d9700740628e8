//! A bounded TTL cache. Time is an argument.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use fedgate_srv::{NaptrRecord, SrvAnswer, normalize_name};

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The answers a [`super::DnsLookup`] remembers, one bounded map per record family
/// (SRV, addresses, NAPTR), each entry valid until its expiry instant.
///
/// Usually created by the lookup itself. Create one yourself to share it between
/// lookups (e.g. keep a warm cache across a nameserver configuration reload) or to
/// pre-seed answers (tests, benches, pinned lab records).
#[derive(Debug)]
pub struct DnsCache {
    pub(crate) srv: Mutex<TtlCache<SrvAnswer>>,
    pub(crate) addrs: Mutex<TtlCache<Arc<[IpAddr]>>>,
    pub(crate) naptr: Mutex<TtlCache<Arc<[NaptrRecord]>>>,
}

impl DnsCache {
    /// An empty cache holding at most `max_entries` per record family (0 disables it).
    pub fn new(max_entries: usize) -> Self {
        Self {
            srv: Mutex::new(TtlCache::new(max_entries)),
            addrs: Mutex::new(TtlCache::new(max_entries)),
            naptr: Mutex::new(TtlCache::new(max_entries)),
        }
    }

    /// Entries held, all families, expired ones not yet evicted included.
    pub fn len(&self) -> usize {
        relock(&self.srv).len() + relock(&self.addrs).len() + relock(&self.naptr).len()
    }

    /// True if nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores an SRV answer for `name` until `until` (`now` is used for eviction).
    pub fn insert_srv(&self, name: &str, answer: SrvAnswer, until: Instant, now: Instant) {
        relock(&self.srv).insert(&normalize_name(name), answer, until, now);
    }

    /// Stores the addresses of `host` until `until`.
    pub fn insert_addrs(&self, host: &str, addrs: Arc<[IpAddr]>, until: Instant, now: Instant) {
        relock(&self.addrs).insert(&normalize_name(host), addrs, until, now);
    }

    /// Stores the NAPTR records of `domain` until `until`.
    pub fn insert_naptr(
        &self,
        domain: &str,
        recs: Arc<[NaptrRecord]>,
        until: Instant,
        now: Instant,
    ) {
        relock(&self.naptr).insert(&normalize_name(domain), recs, until, now);
    }

    pub(crate) fn get_srv(&self, key: &str, now: Instant) -> Option<SrvAnswer> {
        relock(&self.srv).get(key, now)
    }

    pub(crate) fn get_addrs(&self, key: &str, now: Instant) -> Option<Arc<[IpAddr]>> {
        relock(&self.addrs).get(key, now)
    }

    pub(crate) fn get_naptr(&self, key: &str, now: Instant) -> Option<Arc<[NaptrRecord]>> {
        relock(&self.naptr).get(key, now)
    }
}

/// Entries keyed by normalised name, each valid until its expiry. At most `max`
/// entries: inserting into a full cache first drops expired entries, then the entry
/// that expires soonest.
#[derive(Debug)]
pub(crate) struct TtlCache<V> {
    map: HashMap<Box<str>, (Instant, V)>,
    max: usize,
}

impl<V: Clone> TtlCache<V> {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            map: HashMap::new(),
            max,
        }
    }

    /// The value for `name` if it has not expired at `now`.
    pub(crate) fn get(&self, name: &str, now: Instant) -> Option<V> {
        match self.map.get(name) {
            Some((until, v)) if now < *until => Some(v.clone()),
            _ => None,
        }
    }

    pub(crate) fn insert(&mut self, name: &str, value: V, until: Instant, now: Instant) {
        if self.max == 0 || until <= now {
            return;
        }
        if !self.map.contains_key(name) && self.map.len() >= self.max {
            self.map.retain(|_, (u, _)| *u > now);
            if self.map.len() >= self.max {
                let soonest = self
                    .map
                    .iter()
                    .min_by_key(|(_, (u, _))| *u)
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    self.map.remove(&k);
                }
            }
        }
        self.map.insert(name.into(), (until, value));
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn honours_expiry_and_bound() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut c = TtlCache::new(3);
        c.insert("a", 1, t0 + 10 * s, t0);
        assert_eq!(c.get("a", t0 + 9 * s), Some(1));
        assert_eq!(c.get("a", t0 + 10 * s), None);
        for i in 0..50u32 {
            c.insert(
                &format!("n{i}"),
                i,
                t0 + Duration::from_secs(100 + u64::from(i)),
                t0,
            );
            assert!(c.len() <= 3);
        }
        // the latest-expiring entries survive
        assert_eq!(c.get("n49", t0), Some(49));
        assert_eq!(c.get("n0", t0), None);
        // expired entries are dropped first
        let mut c = TtlCache::new(2);
        c.insert("old", 0, t0 + s, t0);
        c.insert("keep", 1, t0 + 100 * s, t0);
        c.insert("new", 2, t0 + 50 * s, t0 + 2 * s);
        assert_eq!(c.get("keep", t0 + 2 * s), Some(1));
        assert_eq!(c.get("new", t0 + 2 * s), Some(2));
        let mut off = TtlCache::new(0);
        off.insert("x", 1, t0 + s, t0);
        assert_eq!(off.len(), 0);
    }
}
