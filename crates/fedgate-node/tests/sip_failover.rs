//! SIP failover (issues 3 and 8; RFC 3261 §8.1.3.1, §17.1.4; RFC 3263 §4.3): a request
//! for a target whose connection cannot be opened fails at once (a transport error is a
//! 503), not at Timer B/F (32 s), and the SIP gateway sends it to the next target; the
//! dead target is then held down, so the next request goes straight to the live one.
//!
//! - The user agent on tokio's paused clock: an INVITE and a SUBSCRIBE to a port where
//!   nothing listens end with 503 within a second (no peer process needed).
//! - A whole fedgate node whose SIP partner domain has two targets, the first dead
//!   (`unreachable.test`, 127.0.0.99, a closed port), the second a live fedgate node:
//!   over mutual TLS with static targets, and over TCP to SIPp with the targets from
//!   `_sipfederationtls._tcp` SRV records of equal priority served by dnsmasq. A local
//!   user's message arrives within a few seconds; a second request does not try the
//!   dead target again. Which targets were tried is read from the gateway's log
//!   (`trying the next target`, one line per failed attempt, with the failed target).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Mutex, Once};
use std::time::Duration;

use bytes::Bytes;
use common::{SipPair, lease, login, scenario, sip_pair, start};
use fedgate_node::config::NodeConfig;
use fedgate_node::sip::{SipTransport, SipUa, SipUaConfig, SipUaEvent, Target, TransportConfig};
use fedgate_sip::{Address, Host};
use fedgate_sip_txn::ua::address;
use fedgate_sip_txn::{CloseReason, EndpointConfig, SubEnd, UaConfig};
use fedgate_testkit::process::free_port;
use fedgate_testkit::{
    DnsRecord, Dnsmasq, SLIXMPP, SipTransport as SippTransport, Sipp, field, peers_or_skip,
};
use tokio::time::{Instant, timeout_at};

const A: (&str, Ipv4Addr) = ("fedgate-a.test", Ipv4Addr::new(127, 0, 0, 10));
const B: (&str, Ipv4Addr) = ("fedgate-b.test", Ipv4Addr::new(127, 0, 0, 11));
/// `unreachable.test` in /etc/hosts: nothing listens there.
const DEAD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 99);
const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// One client wait.
const T: Duration = Duration::from_secs(20);
/// A whole test.
const BOUND: Duration = Duration::from_secs(120);
/// "Within a few seconds": far below Timer B/F (32 s).
const FAST: Duration = Duration::from_secs(5);

// ---- log capture -------------------------------------------------------------------------

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        // Also to stderr, for a failing test's output.
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures the node's logs (info and up) of every test of this binary.
fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("fedgate_node=info"))
            .with_ansi(false)
            .with_writer(|| Capture)
            .try_init();
    });
}

/// The gateway's failover lines (`… failed; trying the next target`) that name `dead`.
fn failovers_from(dead: SocketAddr) -> usize {
    let log = LOG
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|l| l.contains("trying the next target") && l.contains(&format!(":{dead} ")))
        .count()
}

// ---- the user agent on the paused clock ------------------------------------------------

fn addr(s: &str) -> Address {
    address(s).unwrap()
}

/// A loopback port with nobody listening (bound, then closed at once).
async fn dead_port() -> SocketAddr {
    tokio::net::TcpListener::bind(SocketAddr::from((LO, 0)))
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

/// RFC 3261 §8.1.3.1 / §17.1.4: the transport's failed connect reaches the transaction
/// at once: the INVITE's session closes with 503 and the initial SUBSCRIBE ends with
/// 503, each within a second of tokio time (Timer B/F would take 32 s).
#[tokio::test(start_paused = true)]
async fn transport_error_fails_invite_and_subscribe_at_once() {
    let (transport, inbound) = SipTransport::new(TransportConfig::default(), None).unwrap();
    let listen = transport
        .listen_tcp(SocketAddr::from((LO, 0)))
        .await
        .unwrap();
    let contact = addr(&format!(
        "<sip:gw.fedgate-a.test:{};transport=tcp>",
        listen.port()
    ));
    let ep = EndpointConfig::new(Host::Domain(Bytes::from_static(b"gw.fedgate-a.test")), 7);
    let (ua, mut events, _task) = SipUa::spawn(
        transport.clone(),
        inbound,
        SipUaConfig::new(UaConfig::new(ep, contact)),
    );
    // A port with nobody listening.
    let dead = dead_port().await;
    let t0 = Instant::now();
    let session = ua
        .open_session(
            Target::tcp(dead),
            addr("<sip:juliet@fedgate-a.test>"),
            addr("<sip:bob@lync.test>"),
        )
        .await
        .unwrap();
    let ev = timeout_at(t0 + Duration::from_secs(1), events.recv())
        .await
        .expect("the INVITE did not fail within a second")
        .unwrap();
    assert_eq!(
        ev,
        SipUaEvent::SessionClosed {
            session,
            reason: CloseReason::Rejected(503)
        }
    );
    // Another dead target (the first one is held down by the transport now, which
    // fails the send synchronously; this one fails in the connection task).
    let dead2 = dead_port().await;
    let t1 = Instant::now();
    let sub = ua
        .subscribe(
            Target::tcp(dead2),
            addr("<sip:juliet@fedgate-a.test>"),
            addr("<sip:bob@lync.test>"),
        )
        .await
        .unwrap();
    let ev = timeout_at(t1 + Duration::from_secs(1), events.recv())
        .await
        .expect("the SUBSCRIBE did not fail within a second")
        .unwrap();
    assert_eq!(
        ev,
        SipUaEvent::SubscriptionTerminated {
            subscription: sub,
            reason: SubEnd::Status(503)
        }
    );
    assert!(t1.elapsed() < Duration::from_secs(1));
}

// ---- a whole node, two targets, the first dead ---------------------------------------

/// Node A's partner domain fedgate-b.test has two static targets: 127.0.0.99 (closed
/// port) first, node B second. alice's message reaches carol within a few seconds
/// (one failover), and her subscription, sent next, goes straight to B: the dead
/// target is not tried again (held down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_fails_over_to_the_live_node_and_the_dead_target_is_held_down() {
    capture_logs();
    if !peers_or_skip(&[SLIXMPP]) {
        return;
    }
    let leases = lease(&[A.1, B.1]).await;
    let dead = SocketAddr::from((DEAD, free_port(DEAD).unwrap()));
    let SipPair {
        a,
        b,
        mut alice,
        mut carol,
        dirs: _dirs,
        ..
    } = sip_pair(&[dead]).await;
    let run = tokio::task::spawn_blocking(move || {
        let t0 = std::time::Instant::now();
        alice
            .command("send carol@fedgate-b.test hello across a failover", T)
            .unwrap();
        let m = carol
            .expect(|l| l.starts_with("message from=alice@fedgate-a.test"), T)
            .unwrap();
        let took = t0.elapsed();
        assert_eq!(
            field(&m, "body").as_deref(),
            Some("hello across a failover")
        );
        assert!(took < FAST, "first message took {took:?}");
        // The second request: a SUBSCRIBE, a new transaction on a new target choice.
        let t1 = std::time::Instant::now();
        alice.command("subscribe carol@fedgate-b.test", T).unwrap();
        carol
            .expect(|l| l == "subscribe from=alice@fedgate-a.test", T)
            .unwrap();
        let took = t1.elapsed();
        assert!(took < FAST, "the subscription took {took:?}");
        alice.quit();
        carol.quit();
    });
    tokio::time::timeout(BOUND, run).await.unwrap().unwrap();
    assert_eq!(
        failovers_from(dead),
        1,
        "the dead target was tried once, by the first request only"
    );
    a.shutdown().await;
    b.shutdown().await;
    drop(leases);
}

// ---- SRV failover to SIPp -------------------------------------------------------------

/// `lync.test` has no static targets: `_sipfederationtls._tcp.lync.test` (dnsmasq)
/// lists `unreachable.test` (127.0.0.99, closed port) and `lync-live.test` (SIPp) with
/// the same priority; the SRV weights (65535 : 0) make the dead one the first pick
/// (RFC 2782: the weight-0 record is first with p = 1/65536). juliet's message reaches
/// SIPp within a few seconds after one failover; the dead target is then held down: a
/// second message (a new session once the first one went idle) reaches SIPp without
/// trying it again, although the SRV order still puts it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_targets_of_equal_priority_fail_over_to_sipp() {
    capture_logs();
    if !peers_or_skip(&["sipp", "dnsmasq", SLIXMPP]) {
        return;
    }
    let lease = lease(&[A.1]).await;
    let sipp_port = free_port(LO).unwrap();
    let dead_port = free_port(DEAD).unwrap();
    let dead = SocketAddr::from((DEAD, dead_port));
    let dns_port = free_port(LO).unwrap();
    let dns = tokio::task::spawn_blocking(move || {
        let srv = "_sipfederationtls._tcp.lync.test";
        Dnsmasq::start(
            LO,
            dns_port,
            &[
                DnsRecord::srv(srv, "unreachable.test", dead_port, 10, 65535),
                DnsRecord::srv(srv, "lync-live.test", sipp_port, 10, 0),
                DnsRecord::a("unreachable.test", DEAD),
                DnsRecord::a("lync-live.test", LO),
            ],
        )
        .unwrap()
    })
    .await
    .unwrap();
    // Two calls: INVITE, MESSAGEs until the BYE of the idle close, twice.
    let server = tokio::task::spawn_blocking(move || {
        Sipp::serve(
            &scenario("lync_im_uas.xml"),
            SocketAddr::from((LO, sipp_port)),
            SippTransport::Tcp,
            &["-m", "2", "-timeout", "60s", "-timeout_error"],
        )
        .unwrap()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
        [node]
        name = "{me}"
        data_dir = "{dir}"
        domains = ["{me}"]
        [tls]
        generate = true
        [dns]
        nameservers = ["{dns}"]
        [xmpp.s2s]
        enabled = false
        [xmpp.c2s]
        listen = "{ip}:0"
        [sip]
        enabled = true
        outbound_transport = "tcp"
        im_idle_secs = 1
        [[sip.listeners]]
        transport = "tcp"
        address = "{ip}:0"
        [[federation.domain]]
        name = "lync.test"
        protocol = "sip"
        "#,
        me = A.0,
        ip = A.1,
        dir = dir.path().display(),
        dns = dns.addr(),
    );
    let node = start(
        NodeConfig::from_toml_str(&text).unwrap(),
        &[("juliet", "juliet-pw")],
    )
    .await;
    let mut juliet = login(&node, "juliet@fedgate-a.test", "juliet-pw");
    let log_path = server.dir().join("messages.log");
    let sipp_log = move || std::fs::read_to_string(&log_path).unwrap_or_default();
    let wait_for = {
        let sipp_log = sipp_log.clone();
        move |what: &str, n: usize, within: Duration| {
            let deadline = std::time::Instant::now() + within;
            loop {
                let log = sipp_log();
                if log.matches(what).count() >= n {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{n}× {what:?} not seen at SIPp in {within:?}:\n{log}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    let r = tokio::task::spawn_blocking(move || {
        let t0 = std::time::Instant::now();
        juliet
            .command("send bob@lync.test first, after a failover", T)
            .unwrap();
        wait_for("first, after a failover", 1, FAST);
        let took = t0.elapsed();
        // The idle session ends (BYE) after `im_idle_secs`; then a new session.
        wait_for("BYE sip:", 1, T);
        let t1 = std::time::Instant::now();
        juliet
            .command("send bob@lync.test second, straight to the live one", T)
            .unwrap();
        wait_for("second, straight to the live one", 1, FAST);
        let took2 = t1.elapsed();
        wait_for("BYE sip:", 2, T);
        juliet.quit();
        (took, took2)
    });
    let (took, took2) = tokio::time::timeout(BOUND, r).await.unwrap().unwrap();
    assert!(took < FAST && took2 < FAST, "{took:?} {took2:?}");
    let r = tokio::task::spawn_blocking(move || server.wait(Duration::from_secs(30)).unwrap())
        .await
        .unwrap();
    assert!(r.passed(), "SIPp failed: {r:#?}");
    assert_eq!(
        failovers_from(dead),
        1,
        "the dead target was tried once, by the first message only"
    );
    node.shutdown().await;
    drop(dns);
    drop(lease);
}
