//! The DNS adapter against dnsmasq (Debian package `dnsmasq-base`), a real, independent
//! DNS implementation, on 127.0.0.1 with an ephemeral port.
//!
//! Without the binary the test prints a skip line and passes, unless
//! `FEDGATE_REQUIRE_PEERS=1` (CI), where a missing peer is a failure. Set
//! `FEDGATE_DNSMASQ=/path/to/dnsmasq` to use a binary outside `PATH` and `/usr/sbin`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fedgate_node::dns::{DnsConfig, DnsLookup, ManualClock};
use fedgate_srv::*;

fn dnsmasq_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FEDGATE_DNSMASQ") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join("dnsmasq"))
        .find(|p| p.is_file())
}

/// The binary, or `None` after printing why the test is skipped (panics in CI).
fn require_dnsmasq() -> Option<PathBuf> {
    match dnsmasq_binary() {
        Some(p) => Some(p),
        None if std::env::var("FEDGATE_REQUIRE_PEERS").as_deref() == Ok("1") => {
            panic!(
                "FEDGATE_REQUIRE_PEERS=1 but dnsmasq is not installed (apt-get install dnsmasq-base)"
            )
        }
        None => {
            eprintln!(
                "SKIP dns_dnsmasq: dnsmasq not found (apt-get install dnsmasq-base, or set FEDGATE_DNSMASQ)"
            );
            None
        }
    }
}

/// A dnsmasq child process; killed and reaped on drop.
struct Dnsmasq(Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 at the time of the call.
fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp bind");
        let port = udp.local_addr().expect("bound").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

fn spawn(bin: &PathBuf, port: u16, records: &[String]) -> Dnsmasq {
    let mut cmd = Command::new(bin);
    cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--local=/example.test/",
        "--local-ttl=30",
        "--pid-file=",
        "--user=",
    ])
    .arg(format!("--port={port}"))
    .args(records)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    Dnsmasq(cmd.spawn().expect("dnsmasq starts"))
}

async fn guard<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("lookup finished within 10 s")
}

/// Waits (bounded, real time) until the server answers.
async fn wait_ready(ns: SocketAddr, child: &mut Dnsmasq) {
    let cfg = DnsConfig {
        nameservers: vec![ns.to_string()],
        timeout_ms: 100,
        attempts: 1,
        cache_entries: 0,
        ..DnsConfig::default()
    };
    let probe = DnsLookup::new(&cfg).expect("config");
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if let Some(status) = child.0.try_wait().expect("wait") {
            panic!("dnsmasq exited early: {status}");
        }
        if probe
            .lookup_srv("_xmpp-server._tcp.example.test")
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("dnsmasq did not answer within 10 s");
}

fn base_records() -> Vec<String> {
    let mut v: Vec<String> = [
        // --srv-host=name,target,port,priority,weight
        "--srv-host=_xmpp-server._tcp.example.test,xmpp1.example.test,5269,10,60",
        "--srv-host=_xmpp-server._tcp.example.test,xmpp2.example.test,5270,10,40",
        "--srv-host=_xmpp-server._tcp.example.test,backup.example.test,5271,20,0",
        "--srv-host=_xmpp-server._tcp.nosrv.example.test",
        "--naptr-record=sip.example.test,10,10,S,SIPS+D2T,,_sips._tcp.sip.example.test",
        "--srv-host=_sips._tcp.sip.example.test,sip1.example.test,5061,0,0",
        "--host-record=xmpp1.example.test,127.0.0.2",
        "--host-record=xmpp2.example.test,127.0.0.3",
        "--host-record=backup.example.test,127.0.0.4,::1",
        "--host-record=sip1.example.test,127.0.0.5",
        "--host-record=nosrv.example.test,127.0.0.9",
        "--host-record=plain.example.test,127.0.0.7",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for i in 0..40 {
        let t = format!("a-rather-long-node-name-for-truncation-{i:02}.example.test");
        v.push(format!(
            "--srv-host=_xmpp-server._tcp.big.example.test,{t},5269,10,10"
        ));
        v.push(format!("--host-record={t},127.0.1.{i}"));
    }
    v
}

#[tokio::test]
async fn dnsmasq_peer() {
    let Some(bin) = require_dnsmasq() else { return };
    let port = free_port();
    let ns = SocketAddr::from(([127, 0, 0, 1], port));
    let mut server = spawn(&bin, port, &base_records());
    wait_ready(ns, &mut server).await;

    let clock = ManualClock::new(Instant::now());
    let cfg = DnsConfig {
        nameservers: vec![ns.to_string()],
        attempts: 1,
        min_ttl_secs: 1,
        ..DnsConfig::default()
    };
    let lookup = DnsLookup::with_clock(&cfg, Arc::new(clock.clone())).expect("config");

    // RFC 2782 ordering and weights; dnsmasq sends every target's glue, so no address query.
    let mut rng = SplitMix64::new(2782);
    let rounds: u32 = 4000;
    let mut first_xmpp1 = 0u32;
    let opts = XmppOptions {
        direct_tls: false,
        ..XmppOptions::default()
    };
    for _ in 0..rounds {
        let l = guard(resolve_xmpp(&lookup, "example.test", &opts, &mut rng))
            .await
            .expect("targets");
        assert_eq!(l.targets.len(), 3);
        assert_eq!(
            (l.targets[2].host.as_str(), l.targets[2].addrs.len()),
            ("backup.example.test", 2)
        );
        first_xmpp1 += u32::from(l.targets[0].host == "xmpp1.example.test");
    }
    let share = f64::from(first_xmpp1) / f64::from(rounds);
    assert!((share - 0.6).abs() < 0.03, "xmpp1 first share {share}");
    assert_eq!(
        lookup.stats().udp_queries,
        1,
        "one SRV query, glue for all targets: {:?}",
        lookup.stats()
    );

    // "." → not offered, no fallback even though the domain has an address.
    let r = guard(resolve_xmpp(&lookup, "nosrv.example.test", &opts, &mut rng)).await;
    assert_eq!(
        r,
        Err(ResolveError::NotOffered {
            domain: "nosrv.example.test".into()
        })
    );

    // no SRV at all → A/AAAA on 5269
    let l = guard(resolve_xmpp(&lookup, "plain.example.test", &opts, &mut rng))
        .await
        .expect("targets");
    assert_eq!(
        l.endpoints()[0].addr,
        "127.0.0.7:5269".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(l.targets[0].source, TargetSource::AddressFallback);

    // NAPTR → SRV → glue
    let uri = SipUriFacts {
        secure: false,
        host: "sip.example.test".into(),
        port: None,
        transport: None,
    };
    let sip = SipOptions {
        federation: false,
        ..SipOptions::default()
    };
    let l = guard(resolve_sip(&lookup, &uri, &sip, &mut rng))
        .await
        .expect("targets");
    assert_eq!(
        (
            l.targets[0].source,
            l.targets[0].transport,
            l.targets[0].port
        ),
        (TargetSource::Naptr, Transport::Tls, 5061)
    );

    // truncation → TCP
    let before = lookup.stats();
    let r = guard(lookup.lookup_srv("_xmpp-server._tcp.big.example.test"))
        .await
        .expect("srv");
    let SrvAnswer::Records(set) = r else {
        panic!("{r:?}")
    };
    assert_eq!(set.records.len(), 40);
    assert_eq!(lookup.stats().tcp_queries - before.tcp_queries, 1);

    // A changed record is seen after its TTL (30 s) and not before. dnsmasq does not
    // re-read --srv-host on SIGHUP, so restart it on the same port with the new data.
    drop(server);
    let mut changed = base_records();
    changed.push("--srv-host=_xmpp-server._tcp.example.test,xmpp3.example.test,5272,10,10".into());
    changed.push("--host-record=xmpp3.example.test,127.0.0.6".into());
    let mut server = spawn(&bin, port, &changed);
    wait_ready(ns, &mut server).await;
    let count = |a: SrvAnswer| match a {
        SrvAnswer::Records(s) => s.records.len(),
        other => panic!("{other:?}"),
    };
    clock.advance(Duration::from_secs(29));
    assert_eq!(
        count(
            guard(lookup.lookup_srv("_xmpp-server._tcp.example.test"))
                .await
                .expect("srv")
        ),
        3
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        count(
            guard(lookup.lookup_srv("_xmpp-server._tcp.example.test"))
                .await
                .expect("srv")
        ),
        4
    );
    drop(server);
}
