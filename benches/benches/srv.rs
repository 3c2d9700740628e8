//! SRV target selection cost: RFC 2782 ordering of a 10-record set, and a lookup
//! answered from the DNS adapter's cache.
//!
//! `cargo bench -p fedgate-benches --bench srv -- --warm-up-time 1 --measurement-time 3`
//!
//! Targets: ordering a 10-record set ≤ 1 µs; a cached lookup ≤ 1 µs.
//! The cached lookups poll `fedgate_node::dns::DnsLookup`'s future once with a no-op
//! waker: a cache hit completes without I/O, so no runtime is involved, and the bench
//! checks at the end that no query was ever sent. No peer crate is compared (the
//! benches package does not depend on hickory-resolver); the figures are absolute.

use std::future::Future;
use std::hint::black_box;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fedgate_node::dns::{DnsCache, DnsConfig, DnsLookup, TokioClock};
use fedgate_srv::{
    Glue, SplitMix64, SrvAnswer, SrvLookup, SrvRecord, SrvSet, XmppOptions, resolve_xmpp,
    rfc2782_order,
};

/// Ten records over four priorities, with weight-0 records among weighted ones.
fn ten_records() -> Vec<SrvRecord> {
    let shape: [(u16, u16); 10] = [
        (10, 60),
        (10, 40),
        (10, 0),
        (10, 20),
        (20, 10),
        (20, 10),
        (20, 0),
        (30, 5),
        (30, 50),
        (40, 0),
    ];
    shape
        .iter()
        .enumerate()
        .map(|(i, (p, w))| SrvRecord::new(*p, *w, 5269, &format!("xmpp{i}.example.test")))
        .collect()
}

/// Polls a future that must be ready at once (a cache hit).
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a cached lookup must not wait"),
    }
}

fn ordering(c: &mut Criterion) {
    let mut g = c.benchmark_group("srv_order");
    g.throughput(Throughput::Elements(10));
    let set = ten_records();
    let mut rng = SplitMix64::new(2782);
    g.bench_function("rfc2782_order/10_records", |b| {
        b.iter_batched_ref(
            || set.clone(),
            |v| rfc2782_order(black_box(v.as_mut_slice()), &mut rng),
            BatchSize::SmallInput,
        )
    });
    let refs: Vec<&SrvRecord> = set.iter().collect();
    let mut work = refs.clone();
    g.bench_function("rfc2782_order/10_refs", |b| {
        b.iter(|| {
            work.copy_from_slice(&refs);
            rfc2782_order(black_box(&mut work[..]), &mut rng);
            black_box(work[0]);
        })
    });
    g.finish();
}

fn cached_lookup(c: &mut Criterion) {
    let set = ten_records();
    let glue: Vec<Glue> = set
        .iter()
        .enumerate()
        .map(|(i, r)| Glue {
            host: r.target.clone(),
            addr: IpAddr::from([127, 0, 0, 10 + i as u8]),
        })
        .collect();
    let now = Instant::now();
    let until = now + Duration::from_secs(86_400);
    let cache = Arc::new(DnsCache::new(4096));
    cache.insert_srv(
        "_xmpp-server._tcp.example.test",
        SrvAnswer::Records(Arc::new(SrvSet { records: set, glue })),
        until,
        now,
    );
    cache.insert_srv(
        "_xmpps-server._tcp.example.test",
        SrvAnswer::NoRecords,
        until,
        now,
    );
    // The discard port on loopback: never contacted, as every lookup below is a hit.
    let cfg = DnsConfig {
        nameservers: vec!["127.0.0.1:9".into()],
        ..DnsConfig::default()
    };
    let lookup = DnsLookup::with_cache(&cfg, Arc::new(TokioClock), cache).expect("valid config");

    let mut g = c.benchmark_group("srv_cached");
    g.throughput(Throughput::Elements(1));
    g.bench_function("dns_lookup_srv", |b| {
        b.iter(|| ready(lookup.lookup_srv(black_box("_xmpp-server._tcp.example.test"))))
    });
    let mut rng = SplitMix64::new(7);
    let opts = XmppOptions::default();
    g.bench_function("resolve_xmpp/10_records", |b| {
        b.iter(|| {
            ready(resolve_xmpp(
                &lookup,
                black_box("example.test"),
                &opts,
                &mut rng,
            ))
        })
    });
    g.finish();
    assert_eq!(
        lookup.stats().udp_queries,
        0,
        "every lookup was answered from the cache"
    );
}

criterion_group!(benches, ordering, cached_lookup);
criterion_main!(benches);
