//! The harness against dnsmasq: SRV and A answers, NXDOMAIN for the rest.

use std::net::Ipv4Addr;
use std::time::Instant;

use fedgate_testkit::{DnsRecord, Dnsmasq, peers_or_skip, process::free_port};

#[test]
fn dnsmasq_answers_srv_and_a_queries() {
    if !peers_or_skip(&["dnsmasq", "dig"]) {
        return;
    }
    let t0 = Instant::now();
    let ip = Ipv4Addr::LOCALHOST;
    let port = free_port(ip).expect("free port");
    let dns = Dnsmasq::start(
        ip,
        port,
        &[
            DnsRecord::srv(
                "_xmpp-server._tcp.fedgate-a.test",
                "fedgate-a.test",
                5269,
                10,
                60,
            ),
            DnsRecord::srv(
                "_xmpp-server._tcp.fedgate-a.test",
                "backup.fedgate-a.test",
                5270,
                20,
                0,
            ),
            DnsRecord::a("fedgate-a.test", Ipv4Addr::new(127, 0, 0, 10)),
        ],
    )
    .unwrap_or_else(|e| panic!("starting dnsmasq: {e}"));

    let srv = dns
        .query("_xmpp-server._tcp.fedgate-a.test", "SRV")
        .unwrap_or_else(|e| panic!("{e}\n{}", dns.diagnostics()));
    let mut lines: Vec<&str> = srv.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "10 60 5269 fedgate-a.test.",
            "20 0 5270 backup.fedgate-a.test."
        ],
        "{}",
        dns.diagnostics()
    );
    let a = dns.query("fedgate-a.test", "A").expect("A query");
    assert_eq!(a.trim(), "127.0.0.10");
    let none = dns.query("nothing.fedgate-a.test", "A").expect("A query");
    assert_eq!(none.trim(), "", "unknown name must be NXDOMAIN/empty");
    eprintln!("dnsmasq_answers_srv_and_a_queries: {:.2?}", t0.elapsed());
}
