//! The XMPP driver without real peers: in-memory connections (a test `Dialer` whose
//! peers are `S2sIncoming` machines run by the test) on tokio's paused clock, so the
//! timeouts (keep-alive, idle, negotiation, unauthenticated lifetime) run in
//! microseconds and deterministically.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedgate_node::xmpp::{
    BoxIo, Dialer, InboundStanza, S2sListener, S2sOutbound, XmppConfig, random_seed,
};
use fedgate_srv::{SrvRecord, StaticLookup};
use fedgate_xmpp::dialback::DialbackSecret;
use fedgate_xmpp::s2s::{S2sConfig, S2sEvent, S2sIncoming, TlsPolicy, VerifyResult};
use fedgate_xmpp::{DomainPart, Element, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

const LOCAL: &str = "fedgate-a.test";
const REMOTE: &str = "remote.test";

fn d(s: &str) -> DomainPart {
    DomainPart::new(s).unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    Refuse,
    Hang,
    /// Accept; a fake server answering dialback with `valid`.
    Serve,
    /// Accept and never say anything.
    Silent,
}

#[derive(Debug)]
enum PeerEv {
    Stanza(Element),
    Whitespace,
    Closed,
}

#[derive(Debug, Clone)]
struct MemDialer {
    plan: Arc<HashMap<SocketAddr, Behaviour>>,
    dialled: Arc<Mutex<Vec<SocketAddr>>>,
    events: mpsc::UnboundedSender<PeerEv>,
    silent: Arc<Mutex<Vec<DuplexStream>>>,
}

impl Dialer for MemDialer {
    fn dial(&self, addr: SocketAddr) -> Pin<Box<dyn Future<Output = io::Result<BoxIo>> + Send>> {
        self.dialled.lock().unwrap().push(addr);
        let b = self.plan.get(&addr).copied().unwrap_or(Behaviour::Refuse);
        let this = self.clone();
        Box::pin(async move {
            match b {
                Behaviour::Refuse => Err(io::Error::from(io::ErrorKind::ConnectionRefused)),
                Behaviour::Hang => std::future::pending().await,
                Behaviour::Silent => {
                    let (a, b) = tokio::io::duplex(64 * 1024);
                    this.silent.lock().unwrap().push(b);
                    Ok(Box::new(a) as BoxIo)
                }
                Behaviour::Serve => {
                    let (a, b) = tokio::io::duplex(64 * 1024);
                    tokio::spawn(fake_server(b, this.events.clone()));
                    Ok(Box::new(a) as BoxIo)
                }
            }
        })
    }
}

/// remote.test's server: accepts any dialback key, reports stanzas, whitespace
/// keep-alives and the end of the stream.
async fn fake_server(mut io: DuplexStream, events: mpsc::UnboundedSender<PeerEv>) {
    let cfg = Arc::new(S2sConfig {
        local_domains: vec![d(REMOTE)],
        secret: DialbackSecret::new(b"remote"),
        limits: Limits::default(),
        tls_available: false,
        incoming_tls: TlsPolicy::Optional,
        tls_required_peers: Vec::new(),
        id_seed: [7; 32],
    });
    let now = || Instant::now().into_std();
    let mut m = S2sIncoming::new(cfg, now());
    let mut buf = vec![0u8; 65536];
    loop {
        while let Some(ev) = m.poll_event() {
            match ev {
                S2sEvent::VerifyRequest(r) => m.handle_verify_result(&r, VerifyResult::Valid),
                S2sEvent::Stanza(el) => {
                    let _ = events.send(PeerEv::Stanza(el));
                }
                S2sEvent::Closed { .. } => {
                    let _ = events.send(PeerEv::Closed);
                }
                _ => {}
            }
        }
        while let Some(b) = m.poll_transmit() {
            if io.write_all(&b).await.is_err() {
                return;
            }
        }
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if buf[..n].iter().all(|b| b.is_ascii_whitespace()) {
                    let _ = events.send(PeerEv::Whitespace);
                }
                m.handle_input(now(), &buf[..n]);
            }
        }
    }
}

struct Harness {
    ob: S2sOutbound,
    sink: mpsc::Receiver<InboundStanza>,
    peer: mpsc::UnboundedReceiver<PeerEv>,
    dialled: Arc<Mutex<Vec<SocketAddr>>>,
}

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last], 5269))
}

fn config(tune: impl FnOnce(&mut XmppConfig)) -> XmppConfig {
    let mut c = XmppConfig::new(S2sConfig {
        local_domains: vec![d(LOCAL)],
        secret: DialbackSecret::new(b"local"),
        limits: Limits::default(),
        tls_available: false,
        incoming_tls: TlsPolicy::Optional,
        tls_required_peers: Vec::new(),
        id_seed: random_seed(),
    });
    tune(&mut c);
    c
}

/// remote.test has two SRV targets: .21 (priority 10) and .22 (priority 20).
fn harness(plan: &[(u8, Behaviour)], cfg: XmppConfig) -> Harness {
    let mut l = StaticLookup::new();
    l.add_srv(
        "_xmpp-server._tcp.remote.test",
        SrvRecord::new(10, 0, 5269, "one.remote.test"),
    )
    .add_srv(
        "_xmpp-server._tcp.remote.test",
        SrvRecord::new(20, 0, 5269, "two.remote.test"),
    )
    .add_host("one.remote.test", "127.0.0.21".parse().unwrap())
    .add_host("two.remote.test", "127.0.0.22".parse().unwrap());
    let (etx, erx) = mpsc::unbounded_channel();
    let dialled = Arc::new(Mutex::new(Vec::new()));
    let dialer = MemDialer {
        plan: Arc::new(plan.iter().map(|(h, b)| (addr(*h), *b)).collect()),
        dialled: dialled.clone(),
        events: etx,
        silent: Arc::new(Mutex::new(Vec::new())),
    };
    let (tx, rx) = mpsc::channel(16);
    let ob = S2sOutbound::with_dialer(cfg, l, tx, dialer).unwrap();
    Harness {
        ob,
        sink: rx,
        peer: erx,
        dialled,
    }
}

fn message(id: &str, to: &str) -> Element {
    let xml = format!(
        "<message from='alice@{LOCAL}/r' to='{to}' type='chat' id='{id}'><body>b</body></message>"
    );
    let mut r = fedgate_xmpp::StreamReader::new(
        fedgate_xmpp::StreamKind::Server,
        Limits::default(),
        std::time::Instant::now(),
    );
    r.set_authenticated();
    r.feed(b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
    r.feed(xml.as_bytes());
    loop {
        if let Some(fedgate_xmpp::Event::Element(e)) = r.poll_event().unwrap() {
            return e;
        }
    }
}

async fn peer_event(h: &mut Harness) -> PeerEv {
    tokio::time::timeout(Duration::from_secs(3600), h.peer.recv())
        .await
        .unwrap()
        .unwrap()
}

async fn bounce(h: &mut Harness) -> InboundStanza {
    tokio::time::timeout(Duration::from_secs(3600), h.sink.recv())
        .await
        .unwrap()
        .unwrap()
}

fn condition(b: &InboundStanza) -> String {
    let err = b
        .element
        .root()
        .get_child("error", fedgate_xmpp::ns::SERVER)
        .unwrap();
    err.elements().next().unwrap().name().to_owned()
}

#[tokio::test(start_paused = true)]
async fn xmpp_failover_to_the_second_target_when_the_first_refuses() {
    let mut h = harness(
        &[(21, Behaviour::Refuse), (22, Behaviour::Serve)],
        config(|_| {}),
    );
    h.ob.send(message("m1", "bob@remote.test")).unwrap();
    let PeerEv::Stanza(el) = peer_event(&mut h).await else {
        panic!()
    };
    assert_eq!(el.attr("id"), Some("m1"));
    assert_eq!(*h.dialled.lock().unwrap(), vec![addr(21), addr(22)]);
    assert!(h.sink.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn xmpp_keepalive_then_idle_close_then_reopen_on_demand() {
    let mut h = harness(
        &[(21, Behaviour::Serve)],
        config(|c| {
            c.limits.keepalive_interval = Duration::from_secs(60);
            c.limits.idle_timeout = Duration::from_secs(300);
        }),
    );
    h.ob.send(message("m1", "bob@remote.test")).unwrap();
    assert!(matches!(peer_event(&mut h).await, PeerEv::Stanza(_)));
    let t0 = Instant::now();
    assert!(matches!(peer_event(&mut h).await, PeerEv::Whitespace));
    let ka = t0.elapsed();
    assert!(
        ka >= Duration::from_secs(59) && ka <= Duration::from_secs(61),
        "{ka:?}"
    );
    // More keep-alives, then the idle close (the peer sees </stream:stream>).
    let closed_after = loop {
        let ev = peer_event(&mut h).await;
        match ev {
            PeerEv::Whitespace => continue,
            PeerEv::Closed => break t0.elapsed(),
            other => panic!("{other:?}"),
        }
    };
    assert!(
        closed_after >= Duration::from_secs(299) && closed_after <= Duration::from_secs(301),
        "{closed_after:?}"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(h.ob.link_count(), 0);
    // A new stanza opens a new link.
    h.ob.send(message("m2", "bob@remote.test")).unwrap();
    let PeerEv::Stanza(el) = peer_event(&mut h).await else {
        panic!()
    };
    assert_eq!(el.attr("id"), Some("m2"));
    assert_eq!(h.dialled.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn xmpp_queue_bound_then_negotiation_timeout_bounces() {
    let mut h = harness(
        &[(21, Behaviour::Silent)],
        config(|c| {
            c.limits.outbound_queue = 2;
            c.limits.negotiation_timeout = Duration::from_secs(30);
        }),
    );
    let t0 = Instant::now();
    for id in ["q1", "q2", "q3"] {
        h.ob.send(message(id, "bob@remote.test")).unwrap();
    }
    // The third did not fit: bounced at once.
    let b = h.sink.try_recv().unwrap();
    assert_eq!(b.element.attr("id"), Some("q3"));
    assert_eq!(condition(&b), "resource-constraint");
    assert!(b.bounce);
    assert_eq!(b.to_domain.as_str(), LOCAL);
    // The peer never answers: both queued stanzas come back after the timeout.
    for id in ["q1", "q2"] {
        let b = bounce(&mut h).await;
        assert_eq!(b.element.attr("id"), Some(id));
        assert_eq!(condition(&b), "remote-server-timeout");
    }
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn xmpp_every_target_refusing_is_remote_server_not_found_and_hanging_is_timeout() {
    let mut h = harness(
        &[(21, Behaviour::Refuse), (22, Behaviour::Refuse)],
        config(|_| {}),
    );
    h.ob.send(message("r1", "bob@remote.test")).unwrap();
    let b = bounce(&mut h).await;
    assert_eq!(condition(&b), "remote-server-not-found");
    assert_eq!(b.element.attr("from"), Some("bob@remote.test"));

    let mut h = harness(
        &[(21, Behaviour::Hang), (22, Behaviour::Refuse)],
        config(|c| c.limits.connect_timeout = Duration::from_secs(5)),
    );
    let t0 = Instant::now();
    h.ob.send(message("r2", "bob@remote.test")).unwrap();
    let b = bounce(&mut h).await;
    assert_eq!(condition(&b), "remote-server-timeout");
    assert!(t0.elapsed() >= Duration::from_secs(5));

    // No SRV, no address.
    h.ob.send(message("r3", "bob@nowhere.test")).unwrap();
    let b = bounce(&mut h).await;
    assert_eq!(b.element.attr("id"), Some("r3"));
    assert_eq!(condition(&b), "remote-server-not-found");
}

#[tokio::test(start_paused = true)]
async fn xmpp_misaddressed_sends_are_refused_and_error_stanzas_never_bounce() {
    let mut h = harness(&[], config(|_| {}));
    assert!(h.ob.send(message("x", "someone@fedgate-a.test")).is_err());
    let mut el = message("x", "bob@remote.test");
    el.set_attr("from", "eve@elsewhere.test");
    assert!(h.ob.send(el).is_err());
    let mut el = message("e1", "bob@remote.test");
    el.set_attr("type", "error");
    h.ob.send(el).unwrap();
    h.ob.send(message("e2", "bob@remote.test")).unwrap();
    let b = bounce(&mut h).await;
    assert_eq!(b.element.attr("id"), Some("e2"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(h.sink.try_recv().is_err());
}

async fn read_until(io: &mut DuplexStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if text.contains(needle) {
            return text;
        }
        let n = tokio::time::timeout(Duration::from_secs(3600), io.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before {needle:?}: {text}");
        got.extend_from_slice(&buf[..n]);
    }
}

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='remote.test' to='fedgate-a.test' version='1.0'>";

#[tokio::test(start_paused = true)]
async fn xmpp_unauthenticated_inbound_stream_is_closed_after_its_lifetime() {
    let h = harness(
        &[],
        config(|c| {
            c.s2s.limits.unauthenticated_lifetime = Duration::from_secs(20);
        }),
    );
    let listener = S2sListener::detached(&h.ob, addr(10));
    let (mut a, b) = tokio::io::duplex(65536);
    listener.serve_io(Box::new(b), SocketAddr::from(([127, 0, 0, 30], 40000)));
    let t0 = Instant::now();
    a.write_all(HEADER.as_bytes()).await.unwrap();
    read_until(&mut a, "</stream:features>").await;
    assert_eq!(listener.connection_count(), 1);
    let got = read_until(&mut a, "</stream:stream>").await;
    assert!(got.contains("policy-violation"), "{got}");
    let t = t0.elapsed();
    assert!(
        t >= Duration::from_secs(20) && t < Duration::from_secs(21),
        "{t:?}"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(listener.connection_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn xmpp_inbound_connection_limits_per_ip_and_in_total() {
    let h = harness(
        &[],
        config(|c| {
            c.limits.max_inbound_per_ip = 1;
            c.limits.max_inbound = 2;
        }),
    );
    let listener = S2sListener::detached(&h.ob, addr(10));
    let ip = |n: u8| SocketAddr::new(IpAddr::from([127, 0, 0, n]), 40000);
    let mut conns = Vec::new();
    for (n, accepted) in [(30, true), (30, false), (31, true), (32, false)] {
        let (mut a, b) = tokio::io::duplex(65536);
        listener.serve_io(Box::new(b), ip(n));
        a.write_all(HEADER.as_bytes()).await.unwrap();
        if accepted {
            read_until(&mut a, "</stream:features>").await;
        } else {
            let got = read_until(&mut a, "</stream:stream>").await;
            assert!(got.contains("policy-violation"), "{got}");
        }
        conns.push(a);
    }
    assert_eq!(listener.connection_count(), 2);
    drop(conns);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(listener.connection_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn xmpp_inbound_ping_to_the_domain_is_answered_over_the_outbound_link() {
    // remote.test connects in, authenticates (fedgate verifies back over a verify-only
    // connection to the fake server), pings fedgate-a.test; the result goes out on a
    // new outbound link to remote.test, where the fake server receives it.
    let mut h = harness(&[(21, Behaviour::Serve)], config(|_| {}));
    let listener = S2sListener::detached(&h.ob, addr(10));
    let (mut a, b) = tokio::io::duplex(65536);
    listener.serve_io(Box::new(b), SocketAddr::from(([127, 0, 0, 21], 40000)));
    a.write_all(HEADER.as_bytes()).await.unwrap();
    let got = read_until(&mut a, "</stream:features>").await;
    let i = got.find(" id='").unwrap() + 5;
    let id = got[i..].split('\'').next().unwrap();
    // The key remote.test's server (the fake) will confirm.
    let key = DialbackSecret::new(b"remote").key(LOCAL, REMOTE, id);
    let db = format!("<db:result from='remote.test' to='fedgate-a.test'>{key}</db:result>");
    a.write_all(db.as_bytes()).await.unwrap();
    read_until(&mut a, "type='valid'").await;
    a.write_all(b"<iq from='remote.test' to='fedgate-a.test' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await
        .unwrap();
    // (The verify-only connection's close comes first.)
    let el = loop {
        match peer_event(&mut h).await {
            PeerEv::Stanza(el) => break el,
            PeerEv::Closed => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(el.name(), "iq");
    assert_eq!(el.attr("type"), Some("result"));
    assert_eq!(el.attr("id"), Some("p1"));
    assert_eq!(el.attr("from"), Some(LOCAL));
    // A message on the same stream goes to the sink.
    a.write_all(b"<message from='bob@remote.test' to='alice@fedgate-a.test' type='chat'><body>x</body></message>")
        .await
        .unwrap();
    let s = bounce(&mut h).await;
    assert!(!s.bounce);
    assert_eq!(s.from_domain.as_str(), REMOTE);
}

#[tokio::test(start_paused = true)]
async fn xmpp_required_tls_to_a_peer_without_it_bounces_and_sends_nothing_in_clear() {
    let mut h = harness(
        &[(21, Behaviour::Serve)],
        config(|c| {
            c.peer_tls.insert(d(REMOTE), TlsPolicy::Required);
        }),
    );
    h.ob.send(message("t1", "bob@remote.test")).unwrap();
    let b = bounce(&mut h).await;
    assert_eq!(b.element.attr("id"), Some("t1"));
    assert_eq!(condition(&b), "remote-server-timeout");
    // The fake server (no TLS) saw the stream end, never the stanza.
    loop {
        match h.peer.try_recv() {
            Ok(PeerEv::Stanza(el)) => panic!("sent in the clear: {el}"),
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    // A result (like a ping answer) is never bounced.
    let mut el = message("t2", "bob@remote.test");
    el.set_attr("type", "result");
    h.ob.send(el).unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(h.sink.try_recv().is_err());
}
