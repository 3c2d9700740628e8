//! XMPP s2s interop: fedgate's listener and outbound links against real Prosody 0.12
//! and ejabberd 23.01 on loopback (research/xmpp.md §4), plus raw-socket spoofing and
//! bounces. Every test leases fedgate-a.test's address (127.0.0.10) first, so they run
//! one at a time; peers lease their own addresses.
//!
//! Peers missing: skipped with a line on stderr, failed with FEDGATE_REQUIRE_PEERS=1.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use fedgate_node::tls::self_signed;
use fedgate_node::xmpp::{
    InboundStanza, S2sListener, S2sOutbound, XmppConfig, XmppTls, random_seed,
};
use fedgate_srv::{SrvRecord, StaticLookup};
use fedgate_testkit::{
    Ejabberd, IpLease, Prosody, ProsodyOptions, S2sEncryption, SLIXMPP, XmppClient, field, hosts,
    peers_or_skip,
};
use fedgate_xmpp::dialback::DialbackSecret;
use fedgate_xmpp::s2s::{S2sConfig, TlsPolicy};
use fedgate_xmpp::{DomainPart, Element, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const FEDGATE: &str = "fedgate-a.test";
const FEDGATE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);
/// A fake authoritative server for `fedgate-b.test` (spoofing tests).
const FAKE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
const FAKE_PORT: u16 = 5270;
const WAIT: Duration = Duration::from_secs(30);

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn d(s: &str) -> DomainPart {
    DomainPart::new(s).unwrap()
}

struct Node {
    outbound: S2sOutbound,
    listener: S2sListener,
    sink: mpsc::Receiver<InboundStanza>,
    _lease: IpLease,
}

fn lookup() -> StaticLookup {
    let mut l = StaticLookup::new();
    for (name, ip) in hosts::TEST_HOSTS {
        l.add_host(name, ip.into());
    }
    // fedgate-b.test: the raw-socket tests' fake authoritative server.
    l.add_srv(
        "_xmpp-server._tcp.fedgate-b.test",
        SrvRecord::new(0, 0, FAKE_PORT, "fedgate-b.test"),
    );
    l
}

/// fedgate-a.test on 127.0.0.10:5269, with or without a certificate.
async fn start_node(tls: bool, lease: IpLease) -> Node {
    let s2s = S2sConfig {
        local_domains: vec![d(FEDGATE)],
        secret: DialbackSecret::new(b"fedgate interop secret"),
        limits: Limits::default(),
        tls_available: tls,
        incoming_tls: TlsPolicy::Optional,
        tls_required_peers: Vec::new(),
        id_seed: random_seed(),
    };
    let mut cfg = XmppConfig::new(s2s);
    if tls {
        let cert = self_signed(&[FEDGATE]).unwrap();
        cfg.tls = Some(XmppTls::new(cert.identity()).unwrap());
    }
    let (tx, rx) = mpsc::channel(64);
    let outbound = S2sOutbound::new(cfg, lookup(), tx).unwrap();
    let listener = S2sListener::bind(SocketAddr::from((FEDGATE_IP, 5269)), &outbound)
        .await
        .unwrap();
    Node {
        outbound,
        listener,
        sink: rx,
        _lease: lease,
    }
}

fn lease_fedgate() -> IpLease {
    blocking(|| {
        hosts::ensure_test_hosts().unwrap();
        IpLease::acquire(FEDGATE_IP, Duration::from_secs(600)).unwrap()
    })
}

async fn next_stanza(sink: &mut mpsc::Receiver<InboundStanza>, within: Duration) -> InboundStanza {
    tokio::time::timeout(within, sink.recv())
        .await
        .expect("nothing reached the sink in time")
        .expect("sink closed")
}

fn body(el: &Element) -> String {
    el.root()
        .get_child("body", fedgate_xmpp::ns::SERVER)
        .map(|b| b.text())
        .unwrap_or_default()
}

fn parse(xml: &str) -> Element {
    let mut r = fedgate_xmpp::StreamReader::new(
        fedgate_xmpp::StreamKind::Server,
        Limits::default(),
        std::time::Instant::now(),
    );
    r.set_authenticated();
    r.feed(b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
    r.feed(xml.as_bytes());
    loop {
        match r.poll_event().unwrap() {
            Some(fedgate_xmpp::Event::Element(e)) => return e,
            Some(_) => continue,
            None => panic!("no element in {xml}"),
        }
    }
}

/// a. Prosody A → fedgate over dialback (fedgate verifies back to Prosody), with
/// fedgate offering STARTTLS and without it.
async fn prosody_to_fedgate(tls: bool, required: bool) {
    if !peers_or_skip(&["prosody", "prosodyctl", SLIXMPP]) {
        return;
    }
    let lease = lease_fedgate();
    let mut node = start_node(tls, lease).await;
    let (pa, mut alice) = blocking(|| {
        let mut opts = ProsodyOptions::default();
        if required {
            opts.s2s_encryption = S2sEncryption::Required;
        }
        let pa = Prosody::start_with(hosts::PROSODY_A.0, hosts::PROSODY_A.1, opts).unwrap();
        pa.register("alice", "pw").unwrap();
        let c = XmppClient::connect("alice@prosody-a.test", "pw", pa.ip()).unwrap();
        (pa, c)
    });
    let t0 = Instant::now();
    let text = if tls {
        "hello over tls"
    } else {
        "hello in the clear"
    };
    blocking(|| {
        alice
            .command(&format!("send someone@{FEDGATE} {text}"), WAIT)
            .unwrap()
    });
    let got = next_stanza(&mut node.sink, WAIT).await;
    eprintln!(
        "prosody→fedgate (tls={tls}) delivered in {:?}",
        t0.elapsed()
    );
    assert_eq!(got.from_domain.as_str(), "prosody-a.test");
    assert_eq!(got.to_domain.as_str(), FEDGATE);
    assert!(!got.bounce);
    assert_eq!(body(&got.element), text);
    assert_eq!(
        got.element
            .attr("from")
            .map(|f| f.starts_with("alice@prosody-a.test")),
        Some(true)
    );
    let show = blocking(|| pa.s2s_show().unwrap());
    eprintln!("{show}");
    // Prosody's outgoing session to us: dialback completed, encrypted or not.
    let line = show
        .lines()
        .find(|l| l.contains("-->") && l.contains(FEDGATE))
        .unwrap_or_else(|| panic!("{show}"));
    assert!(line.contains("Completed"), "{show}");
    if tls {
        assert!(line.contains("TLSv1."), "{show}");
    } else {
        assert!(line.contains("insecure"), "{show}");
    }
    drop(node.listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmpp_a_prosody_to_fedgate_with_starttls() {
    prosody_to_fedgate(true, false).await;
}

/// a'. Prosody's own default (`s2s_require_encryption = true`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmpp_a_prosody_requiring_tls_to_fedgate() {
    prosody_to_fedgate(true, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmpp_a_prosody_to_fedgate_without_tls() {
    prosody_to_fedgate(false, false).await;
}

/// b. `prosodyctl shell "xmpp:ping('prosody-a.test','fedgate-a.test')"`: Prosody
/// connects in, fedgate answers the ping over its own outbound link (dialback both ways).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmpp_b_prosody_pings_fedgate() {
    if !peers_or_skip(&["prosody", "prosodyctl"]) {
        return;
    }
    let lease = lease_fedgate();
    let mut node = start_node(true, lease).await;
    let pa = blocking(|| Prosody::start(hosts::PROSODY_A.0, hosts::PROSODY_A.1).unwrap());
    let t0 = Instant::now();
    let out = blocking(|| pa.ping(FEDGATE));
    let out = out.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("ping: {} ({:?})", out.trim(), t0.elapsed());
    assert!(out.contains("pong"), "{out}");
    // The ping is answered by the listener, not handed to the node.
    assert!(node.sink.try_recv().is_err());
    assert_eq!(node.outbound.link_count(), 1);
}

async fn fedgate_to_peer(domain: &str, ip: Ipv4Addr, ejabberd: bool) {
    let bins: &[&str] = if ejabberd {
        &["ejabberdctl", "erl", SLIXMPP]
    } else {
        &["prosody", "prosodyctl", SLIXMPP]
    };
    if !peers_or_skip(bins) {
        return;
    }
    let lease = lease_fedgate();
    let mut node = start_node(true, lease).await;
    let bob_jid = format!("bob@{domain}");
    let (_pa, _ej, mut bob) = blocking(|| {
        let (pa, ej) = if ejabberd {
            let ej = Ejabberd::start(domain, ip).unwrap();
            ej.register("bob", "pw").unwrap();
            (None, Some(ej))
        } else {
            let pa = Prosody::start(domain, ip).unwrap();
            pa.register("bob", "pw").unwrap();
            (Some(pa), None)
        };
        let c = XmppClient::connect(&bob_jid, "pw", ip).unwrap();
        (pa, ej, c)
    });
    let full = bob
        .history()
        .iter()
        .find_map(|l| l.strip_prefix("ready ").and_then(|_| field(l, "jid")))
        .unwrap();
    let t0 = Instant::now();
    let msg = format!(
        "<message xmlns='jabber:server' from='alice@{FEDGATE}/gw' to='{bob_jid}' type='chat' id='m1'><body>hi from fedgate</body></message>"
    );
    node.outbound.send(parse(&msg)).unwrap();
    let line = blocking(|| bob.expect(|l| l.starts_with("message "), WAIT))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("fedgate→{domain} message in {:?}: {line}", t0.elapsed());
    assert_eq!(
        field(&line, "from").as_deref(),
        Some(&*format!("alice@{FEDGATE}/gw"))
    );
    assert_eq!(field(&line, "body").as_deref(), Some("hi from fedgate"));
    let t1 = Instant::now();
    let pres = format!(
        "<presence xmlns='jabber:server' from='alice@{FEDGATE}/gw' to='{full}'><show>away</show><status>at lunch</status></presence>"
    );
    node.outbound.send(parse(&pres)).unwrap();
    let line = blocking(|| {
        bob.expect(
            |l| l.starts_with("presence ") && l.contains(&format!("from=alice@{FEDGATE}")),
            WAIT,
        )
    })
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("fedgate→{domain} presence in {:?}: {line}", t1.elapsed());
    assert_eq!(field(&line, "show").as_deref(), Some("away"));
    assert_eq!(field(&line, "status").as_deref(), Some("at lunch"));
    // No bounce came back.
    assert!(node.sink.try_recv().is_err());
}

/// c. fedgate → Prosody: a message and a presence reach a slixmpp client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmpp_c_fedgate_to_prosody() {
    fedgate_to_peer(hosts::PROSODY_A.0, hosts::PROSODY_A.1, false).await;
}

/// c. fedgate → ejabberd (STARTTLS, then dialback; ejabberd verifies back against our
/// listener over its own connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmpp_c_fedgate_to_ejabberd() {
    fedgate_to_peer(hosts::EJABBERD_C.0, hosts::EJABBERD_C.1, true).await;
}

/// d. ejabberd → fedgate by dialback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmpp_d_ejabberd_to_fedgate() {
    if !peers_or_skip(&["ejabberdctl", "erl"]) {
        return;
    }
    let lease = lease_fedgate();
    let mut node = start_node(true, lease).await;
    let ej = blocking(|| {
        let ej = Ejabberd::start(hosts::EJABBERD_C.0, hosts::EJABBERD_C.1).unwrap();
        ej.register("carol", "pw").unwrap();
        ej
    });
    let t0 = Instant::now();
    blocking(|| {
        ej.send_message(
            "carol@ejabberd-c.test",
            &format!("someone@{FEDGATE}"),
            "from ejabberd",
        )
        .unwrap()
    });
    let got = next_stanza(&mut node.sink, WAIT).await;
    eprintln!("ejabberd→fedgate delivered in {:?}", t0.elapsed());
    assert_eq!(got.from_domain.as_str(), "ejabberd-c.test");
    assert_eq!(body(&got.element), "from ejabberd");
    assert!(!got.bounce);
}

// ---------------------------------------------------------------------------------
// e. Spoofing from a raw socket
// ---------------------------------------------------------------------------------

/// The authoritative server of fedgate-b.test for the spoofing tests: answers each
/// `<db:verify/>` with its own secret.
async fn fake_authoritative(secret: DialbackSecret) -> tokio::task::JoinHandle<()> {
    let l = tokio::net::TcpListener::bind(SocketAddr::from((FAKE_IP, FAKE_PORT)))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let secret = secret.clone();
            tokio::spawn(async move {
                let Ok(_) = read_until(&mut s, ">", Duration::from_secs(10)).await else {
                    return;
                };
                let hdr = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='fedgate-b.test' id='fake1' version='1.0'><stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>";
                let _ = s.write_all(hdr.as_bytes()).await;
                let Ok(req) = read_until(&mut s, "</db:verify>", Duration::from_secs(10)).await
                else {
                    return;
                };
                let attr = |n: &str| {
                    let i = req.find(&format!("{n}='"))? + n.len() + 2;
                    Some(req[i..].split('\'').next()?.to_owned())
                };
                let (Some(from), Some(to), Some(id)) = (attr("from"), attr("to"), attr("id"))
                else {
                    return;
                };
                let key_start = req.rfind("'>").map(|i| i + 2).unwrap_or(0);
                let key = req[key_start..].trim_end_matches("</db:verify>");
                let ok = secret.verify(&from, &to, &id, key);
                let kind = if ok { "valid" } else { "invalid" };
                let ans = format!("<db:verify from='{to}' to='{from}' id='{id}' type='{kind}'/>");
                let _ = s.write_all(ans.as_bytes()).await;
                let _ = read_until(&mut s, "</stream:stream>", Duration::from_secs(5)).await;
            });
        }
    })
}

async fn read_until(s: &mut TcpStream, needle: &str, within: Duration) -> Result<String, String> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if text.contains(needle) {
            return Ok(text);
        }
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(format!("closed before {needle:?}: {text}")),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return Err(format!("timeout waiting for {needle:?}: {text}")),
        }
    }
}

async fn raw_stream(from: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(SocketAddr::from((FEDGATE_IP, 5269)))
        .await
        .unwrap();
    let hdr = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='{from}' to='{FEDGATE}' version='1.0'>"
    );
    s.write_all(hdr.as_bytes()).await.unwrap();
    let got = read_until(&mut s, "</stream:features>", Duration::from_secs(10))
        .await
        .unwrap();
    let i = got.find(" id='").unwrap() + 5;
    let id = got[i..].split('\'').next().unwrap().to_owned();
    (s, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmpp_e_spoofing_is_refused() {
    let lease = lease_fedgate();
    let _fake_lease = blocking(|| IpLease::acquire(FAKE_IP, Duration::from_secs(600)).unwrap());
    let mut node = start_node(false, lease).await;
    let fake_secret = DialbackSecret::new(b"fedgate-b secret");
    let fake = fake_authoritative(fake_secret.clone()).await;
    let msg = |from: &str| {
        format!(
            "<message from='mallory@{from}' to='someone@{FEDGATE}' type='chat'><body>spoof</body></message>"
        )
    };

    // 1. Claiming a domain without any verification.
    let (mut s, _) = raw_stream("prosody-a.test").await;
    s.write_all(msg("prosody-a.test").as_bytes()).await.unwrap();
    let got = read_until(&mut s, "</stream:stream>", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(got.contains("<invalid-from"), "{got}");

    // 2. A forged db:result (wrong key): the authoritative server says invalid.
    let (mut s, id) = raw_stream("fedgate-b.test").await;
    let forged = format!(
        "<db:result from='fedgate-b.test' to='{FEDGATE}'>{}</db:result>",
        "ab".repeat(32)
    );
    s.write_all(forged.as_bytes()).await.unwrap();
    let got = read_until(&mut s, "type='invalid'", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(got.contains("<db:result"), "{got}");
    let _ = id;
    s.write_all(msg("fedgate-b.test").as_bytes()).await.unwrap();
    let got = read_until(&mut s, "</stream:stream>", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(got.contains("<invalid-from"), "{got}");

    // 3. Authenticated as fedgate-b.test (right key), then a stanza from another domain.
    let (mut s, id) = raw_stream("fedgate-b.test").await;
    let key = fake_secret.key(FEDGATE, "fedgate-b.test", &id);
    let good = format!("<db:result from='fedgate-b.test' to='{FEDGATE}'>{key}</db:result>");
    s.write_all(good.as_bytes()).await.unwrap();
    let got = read_until(&mut s, "type='valid'", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(got.contains("<db:result"), "{got}");
    // The control: a stanza from the authenticated domain is delivered.
    s.write_all(msg("fedgate-b.test").as_bytes()).await.unwrap();
    let ok = next_stanza(&mut node.sink, Duration::from_secs(10)).await;
    assert_eq!(ok.from_domain.as_str(), "fedgate-b.test");
    s.write_all(msg("prosody-a.test").as_bytes()).await.unwrap();
    let got = read_until(&mut s, "</stream:stream>", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(got.contains("<invalid-from"), "{got}");

    // Nothing spoofed reached the sink.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(node.sink.try_recv().is_err());
    fake.abort();
}

/// f. Bounces: unreachable.test refuses (nothing listens on 127.0.0.99:5269), and a
/// domain that does not resolve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmpp_f_bounce_from_unreachable_domain() {
    let lease = lease_fedgate();
    let mut node = start_node(false, lease).await;
    let t0 = Instant::now();
    // An error stanza first: it must not be bounced; the normal one behind it must.
    let err = format!(
        "<message xmlns='jabber:server' from='alice@{FEDGATE}/r' to='x@unreachable.test' type='error' id='e1'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    );
    let m = format!(
        "<message xmlns='jabber:server' from='alice@{FEDGATE}/r' to='x@unreachable.test' type='chat' id='m2'><body>anyone?</body></message>"
    );
    node.outbound.send(parse(&err)).unwrap();
    node.outbound.send(parse(&m)).unwrap();
    let b = next_stanza(&mut node.sink, Duration::from_secs(15)).await;
    eprintln!("bounce after {:?}: {}", t0.elapsed(), b.element);
    assert!(b.bounce);
    assert_eq!(b.element.attr("id"), Some("m2"));
    assert_eq!(b.element.attr("type"), Some("error"));
    assert_eq!(b.element.attr("to"), Some(&*format!("alice@{FEDGATE}/r")));
    assert_eq!(b.element.attr("from"), Some("x@unreachable.test"));
    let xml = b.element.to_string();
    assert!(xml.contains("remote-server-not-found"), "{xml}");
    // A domain with no address at all.
    let m = format!(
        "<iq xmlns='jabber:server' from='alice@{FEDGATE}/r' to='nowhere.invalid' type='get' id='q1'><ping xmlns='urn:xmpp:ping'/></iq>"
    );
    node.outbound.send(parse(&m)).unwrap();
    let b = next_stanza(&mut node.sink, Duration::from_secs(15)).await;
    assert_eq!(b.element.attr("id"), Some("q1"));
    assert!(b.element.to_string().contains("remote-server-not-found"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        node.sink.try_recv().is_err(),
        "the error stanza was bounced"
    );
    assert_eq!(node.outbound.link_count(), 0);
}
