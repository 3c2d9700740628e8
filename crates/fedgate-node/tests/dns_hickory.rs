//! The DNS adapter against a real DNS server: hickory-server, in process, on 127.0.0.1
//! with ephemeral ports. No external install needed. Bounded: every lookup is wrapped in
//! a 10 s guard so a bug shows as a failure, never a hang.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fedgate_node::dns::{DnsConfig, DnsLookup, ManualClock};
use fedgate_srv::*;
use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, NAPTR, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use tokio::net::{TcpListener, UdpSocket};

type Zone = InMemoryZoneHandler<TokioRuntimeProvider>;

struct TestDns {
    addr: SocketAddr,
    zone: Arc<Zone>,
    _server: Server<Catalog>,
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("test name")
}

fn srv(owner: &str, ttl: u32, p: u16, w: u16, port: u16, target: &str) -> Record {
    Record::from_rdata(
        name(owner),
        ttl,
        RData::SRV(SRV::new(p, w, port, name(target))),
    )
}

fn a(owner: &str, ttl: u32, ip: [u8; 4]) -> Record {
    Record::from_rdata(
        name(owner),
        ttl,
        RData::A(A::new(ip[0], ip[1], ip[2], ip[3])),
    )
}

/// Starts an authoritative server for `example.test.` holding `records` (plus SOA, whose
/// MINIMUM of 30 s is the negative TTL), UDP and TCP on the same ephemeral port.
async fn start(records: Vec<Record>) -> TestDns {
    let origin = name("example.test.");
    let mut zone = Zone::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
    let soa = SOA::new(
        name("ns.example.test."),
        name("admin.example.test."),
        1,
        3600,
        600,
        86400,
        30,
    );
    zone.upsert_mut(Record::from_rdata(origin.clone(), 30, RData::SOA(soa)), 1);
    for r in records {
        zone.upsert_mut(r, 1);
    }
    let zone = Arc::new(zone);
    let mut catalog = Catalog::new();
    catalog.upsert(
        LowerName::new(&origin),
        vec![Arc::clone(&zone) as Arc<dyn ZoneHandler>],
    );
    let (udp, tcp) = bind_pair().await;
    let addr = udp.local_addr().expect("bound");
    let mut server = Server::new(catalog);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 65535);
    TestDns {
        addr,
        zone,
        _server: server,
    }
}

async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("udp bind");
        let port = udp.local_addr().expect("bound").port();
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
            return (udp, tcp);
        }
    }
    panic!("no free UDP+TCP port pair on 127.0.0.1");
}

fn config(servers: &[SocketAddr]) -> DnsConfig {
    DnsConfig {
        nameservers: servers.iter().map(ToString::to_string).collect(),
        timeout_ms: 2000,
        attempts: 1,
        min_ttl_secs: 1,
        ..DnsConfig::default()
    }
}

async fn guard<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("lookup finished within 10 s")
}

fn xmpp_records() -> Vec<Record> {
    vec![
        srv(
            "_xmpp-server._tcp.example.test.",
            30,
            10,
            60,
            5269,
            "xmpp1.example.test.",
        ),
        srv(
            "_xmpp-server._tcp.example.test.",
            30,
            10,
            40,
            5270,
            "xmpp2.example.test.",
        ),
        srv(
            "_xmpp-server._tcp.example.test.",
            30,
            20,
            0,
            5271,
            "backup.example.test.",
        ),
        a("xmpp1.example.test.", 30, [127, 0, 0, 2]),
        a("xmpp2.example.test.", 30, [127, 0, 0, 3]),
        a("backup.example.test.", 30, [127, 0, 0, 4]),
    ]
}

#[tokio::test]
async fn rfc2782_ordering_and_weights_over_dns() {
    let dns = start(xmpp_records()).await;
    let lookup = DnsLookup::new(&config(&[dns.addr])).expect("config");
    let mut rng = SplitMix64::new(2782);
    let mut first_xmpp1 = 0u32;
    let rounds: u32 = 4000;
    for _ in 0..rounds {
        let l = guard(resolve_xmpp(
            &lookup,
            "example.test",
            &XmppOptions::default(),
            &mut rng,
        ))
        .await
        .expect("targets");
        assert_eq!(l.targets.len(), 3);
        assert_eq!(l.targets[2].host, "backup.example.test");
        assert_eq!(l.targets[2].port, 5271);
        assert_eq!(l.targets[0].addrs.len(), 1);
        if l.targets[0].host == "xmpp1.example.test" {
            first_xmpp1 += 1;
        }
    }
    // weights 60/40 → xmpp1 first 60 % of the time (±3 points at 4000 rounds)
    let share = f64::from(first_xmpp1) / f64::from(rounds);
    assert!((share - 0.6).abs() < 0.03, "xmpp1 first share {share}");
    // everything after the first resolution came from the cache
    assert!(
        lookup.stats().cache_hits >= u64::from(rounds - 1) * 2,
        "{:?}",
        lookup.stats()
    );
}

#[tokio::test]
async fn rfc2782_additional_section_glue_saves_the_address_query() {
    let dns = start(xmpp_records()).await;
    let lookup = DnsLookup::new(&config(&[dns.addr])).expect("config");
    let SrvAnswer::Records(set) = guard(lookup.lookup_srv("_xmpp-server._tcp.example.test"))
        .await
        .expect("srv")
    else {
        panic!("expected records")
    };
    let with_glue = set
        .records
        .iter()
        .filter(|r| set.glue_for(&r.target).next().is_some())
        .count();
    assert!(with_glue >= 1, "the server sent no glue: {set:?}");
    let before = lookup.stats().udp_queries;
    let opts = XmppOptions {
        direct_tls: false,
        ..XmppOptions::default()
    };
    let l = guard(resolve_xmpp(
        &lookup,
        "example.test",
        &opts,
        &mut SplitMix64::new(1),
    ))
    .await
    .expect("targets");
    assert_eq!(l.targets.len(), 3);
    // SRV from cache; one A and one AAAA query per target that had no glue, none for the rest
    let without_glue = (set.records.len() - with_glue) as u64;
    assert_eq!(
        lookup.stats().udp_queries - before,
        2 * without_glue,
        "{:?}",
        lookup.stats()
    );
}

#[tokio::test]
async fn rfc2782_dot_target_means_not_offered_without_fallback() {
    let dns = start(vec![
        srv("_xmpp-server._tcp.nosrv.example.test.", 30, 0, 0, 0, "."),
        a("nosrv.example.test.", 30, [127, 0, 0, 9]),
    ])
    .await;
    let lookup = DnsLookup::new(&config(&[dns.addr])).expect("config");
    assert_eq!(
        guard(lookup.lookup_srv("_xmpp-server._tcp.nosrv.example.test")).await,
        Ok(SrvAnswer::NotOffered)
    );
    let r = guard(resolve_xmpp(
        &lookup,
        "nosrv.example.test",
        &XmppOptions::default(),
        &mut SplitMix64::new(1),
    ))
    .await;
    assert_eq!(
        r,
        Err(ResolveError::NotOffered {
            domain: "nosrv.example.test".into()
        })
    );
}

#[tokio::test]
async fn rfc6120_3_2_a_fallback_on_5269_without_srv() {
    let dns = start(vec![a("plain.example.test.", 30, [127, 0, 0, 7])]).await;
    let lookup = DnsLookup::new(&config(&[dns.addr])).expect("config");
    let l = guard(resolve_xmpp(
        &lookup,
        "plain.example.test",
        &XmppOptions::default(),
        &mut SplitMix64::new(1),
    ))
    .await
    .expect("targets");
    assert_eq!(l.targets.len(), 1);
    assert_eq!(l.targets[0].source, TargetSource::AddressFallback);
    assert_eq!(
        l.endpoints()[0].addr,
        "127.0.0.7:5269".parse::<SocketAddr>().expect("addr")
    );
}

#[tokio::test]
async fn changed_record_is_picked_up_after_its_ttl_not_before() {
    let dns = start(vec![
        srv(
            "_xmpp-server._tcp.example.test.",
            30,
            10,
            10,
            5269,
            "xmpp1.example.test.",
        ),
        a("xmpp1.example.test.", 30, [127, 0, 0, 2]),
    ])
    .await;
    let clock = ManualClock::new(Instant::now());
    let lookup =
        DnsLookup::with_clock(&config(&[dns.addr]), Arc::new(clock.clone())).expect("config");
    let count = |a: SrvAnswer| match a {
        SrvAnswer::Records(s) => s.records.len(),
        other => panic!("{other:?}"),
    };
    let name = "_xmpp-server._tcp.example.test";
    assert_eq!(count(guard(lookup.lookup_srv(name)).await.expect("srv")), 1);
    dns.zone
        .upsert(
            srv(
                "_xmpp-server._tcp.example.test.",
                30,
                10,
                10,
                5269,
                "xmpp2.example.test.",
            ),
            2,
        )
        .await;
    clock.advance(Duration::from_secs(29));
    assert_eq!(
        count(guard(lookup.lookup_srv(name)).await.expect("srv")),
        1,
        "still cached within the TTL"
    );
    assert_eq!(lookup.stats().udp_queries, 1);
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        count(guard(lookup.lookup_srv(name)).await.expect("srv")),
        2,
        "re-queried after the TTL"
    );
    assert_eq!(lookup.stats().udp_queries, 2);
}

#[tokio::test]
async fn ttl_ceiling_and_negative_caching() {
    let dns = start(vec![
        srv(
            "_xmpp-server._tcp.example.test.",
            86400,
            10,
            10,
            5269,
            "xmpp1.example.test.",
        ),
        a("xmpp1.example.test.", 86400, [127, 0, 0, 2]),
    ])
    .await;
    let clock = ManualClock::new(Instant::now());
    let cfg = DnsConfig {
        max_ttl_secs: 60,
        negative_ttl_secs: 20,
        ..config(&[dns.addr])
    };
    let lookup = DnsLookup::with_clock(&cfg, Arc::new(clock.clone())).expect("config");
    guard(lookup.lookup_srv("_xmpp-server._tcp.example.test"))
        .await
        .expect("srv");
    // NXDOMAIN: cached for min(SOA 30 s, negative_ttl 20 s)
    let missing = "_xmpp-server._tcp.missing.example.test";
    assert_eq!(
        guard(lookup.lookup_srv(missing)).await,
        Ok(SrvAnswer::NoRecords)
    );
    assert_eq!(
        guard(lookup.lookup_srv(missing)).await,
        Ok(SrvAnswer::NoRecords)
    );
    assert_eq!(lookup.stats().udp_queries, 2);
    clock.advance(Duration::from_secs(20));
    assert_eq!(
        guard(lookup.lookup_srv(missing)).await,
        Ok(SrvAnswer::NoRecords)
    );
    assert_eq!(lookup.stats().udp_queries, 3);
    // the 86400 s record was capped at 60 s
    clock.advance(Duration::from_secs(40));
    guard(lookup.lookup_srv("_xmpp-server._tcp.example.test"))
        .await
        .expect("srv");
    assert_eq!(lookup.stats().udp_queries, 4);
}

#[tokio::test]
async fn silent_nameserver_gives_a_timeout_error_not_a_hang() {
    // A socket that is bound but never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let cfg = DnsConfig {
        timeout_ms: 200,
        attempts: 2,
        ..config(&[silent.local_addr().expect("addr")])
    };
    let lookup = DnsLookup::new(&cfg).expect("config");
    let t0 = Instant::now();
    let r = guard(lookup.lookup_srv("_xmpp-server._tcp.example.test")).await;
    assert!(matches!(r, Err(LookupError::Timeout { .. })), "{r:?}");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(lookup.stats().udp_queries, 2);
    // errors are not cached
    let r = guard(lookup.lookup_srv("_xmpp-server._tcp.example.test")).await;
    assert!(r.is_err());
    assert_eq!(lookup.stats().udp_queries, 4);
}

#[tokio::test]
async fn second_nameserver_answers_when_the_first_is_silent() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let dns = start(xmpp_records()).await;
    let cfg = DnsConfig {
        timeout_ms: 200,
        ..config(&[silent.local_addr().expect("addr"), dns.addr])
    };
    let lookup = DnsLookup::new(&cfg).expect("config");
    let r = guard(lookup.lookup_srv("_xmpp-server._tcp.example.test")).await;
    assert!(matches!(r, Ok(SrvAnswer::Records(_))), "{r:?}");
}

#[tokio::test]
async fn truncated_udp_answer_is_repeated_over_tcp() {
    let mut records = Vec::new();
    for i in 0..40u8 {
        let target = format!("a-rather-long-node-name-for-truncation-{i:02}.example.test.");
        records.push(srv(
            "_xmpp-server._tcp.big.example.test.",
            30,
            10,
            10,
            5269,
            &target,
        ));
        records.push(a(&target, 30, [127, 0, 1, i]));
    }
    let dns = start(records).await;
    let lookup = DnsLookup::new(&config(&[dns.addr])).expect("config");
    let r = guard(lookup.lookup_srv("_xmpp-server._tcp.big.example.test"))
        .await
        .expect("srv");
    let SrvAnswer::Records(set) = r else {
        panic!("{r:?}")
    };
    assert_eq!(set.records.len(), 40);
    let s = lookup.stats();
    assert_eq!((s.udp_queries, s.tcp_queries), (1, 1), "{s:?}");
}

#[tokio::test]
async fn rfc3263_naptr_over_dns() {
    let naptr = NAPTR::new(
        10,
        10,
        b"S".to_vec().into_boxed_slice(),
        b"SIPS+D2T".to_vec().into_boxed_slice(),
        Vec::new().into_boxed_slice(),
        name("_sips._tcp.sip.example.test."),
    );
    let dns = start(vec![
        Record::from_rdata(name("sip.example.test."), 30, RData::NAPTR(naptr)),
        srv(
            "_sips._tcp.sip.example.test.",
            30,
            0,
            0,
            5061,
            "edge.example.test.",
        ),
        a("edge.example.test.", 30, [127, 0, 0, 5]),
    ])
    .await;
    let lookup = DnsLookup::new(&config(&[dns.addr])).expect("config");
    let uri = SipUriFacts {
        secure: false,
        host: "sip.example.test".into(),
        port: None,
        transport: None,
    };
    let opts = SipOptions {
        federation: false,
        ..SipOptions::default()
    };
    let l = guard(resolve_sip(&lookup, &uri, &opts, &mut SplitMix64::new(1)))
        .await
        .expect("targets");
    assert_eq!(l.targets.len(), 1);
    assert_eq!(l.targets[0].source, TargetSource::Naptr);
    assert_eq!(l.targets[0].transport, Transport::Tls);
    assert_eq!(l.targets[0].addrs, [IpAddr::from([127, 0, 0, 5])]);
}

#[tokio::test]
async fn cache_is_bounded_in_entries() {
    let dns = start(xmpp_records()).await;
    let cfg = DnsConfig {
        cache_entries: 3,
        ..config(&[dns.addr])
    };
    let lookup = DnsLookup::new(&cfg).expect("config");
    for i in 0..20 {
        let _ = guard(lookup.lookup_srv(&format!("_xmpp-server._tcp.n{i}.example.test"))).await;
        assert!(lookup.cache_len() <= 3);
    }
}
