//! `SipUa` (fedgate-sip-txn's `UserAgent` on the tokio `SipTransport`) against SIPp
//! playing a Lync federation partner on loopback, with the scenarios of `tests/sipp/`
//! (see its README.md): over plain TCP, and once over mutual TLS through stunnel;
//! then two `SipUa`s over mutual TLS. Each test is bounded (`BOUND`); SIPp's own waits
//! are bounded by `-timeout`. These tests use real time: SIPp is a real process, and a
//! paused clock would fire SIP timers while the runtime waits for it. The last test
//! drives the driver's SIP timers (Timer B) on tokio's paused clock.

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fedgate_node::sip::{
    PeerIdentity, SipTransport, SipUa, SipUaConfig, SipUaEvent, Target, TransportConfig, UaError,
};
use fedgate_node::tls::{ClientAuth, SelfSigned, TlsSettings, self_signed};
use fedgate_sip::{Address, Frame, HeaderKind, Host, Message, Method};
use fedgate_sip_txn::ua::address;
use fedgate_sip_txn::{CloseReason, EndpointConfig, SubEnd, SubState, UaConfig};
use fedgate_testkit::process::free_port;
use fedgate_testkit::{
    CertPair, SipTransport as SippTransport, Sipp, SippResult, Stunnel, peers_or_skip,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Every test ends within this.
const BOUND: Duration = Duration::from_secs(30);
/// SIPp's global `-timeout`.
const SIPP_TIMEOUT: &str = "20s";

const TEXT1: &str = "Hello from Lync (first message, in the INVITE)";
const TEXT2: &str = "Second message from Lync";
const TEXT3: &str = "Grüße aus Lync ✓";

const PIDF: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:romeo@fedgate-a.test\">\
<tuple id=\"t1\"><status><basic>open</basic></status></tuple></presence>";

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/sipp")
        .join(name)
}

/// `lync_watcher_uac.xml` with one SIPp race removed. RFC 6665 §4.2.1.2 makes the
/// notifier send a NOTIFY right after it accepts a refresh; the scenario takes that
/// NOTIFY before the refresh's 200 or after the unsubscribe is sent, but SIPp 3.6.1
/// treats one that arrives in the tick between (after the 200, before the send runs)
/// as unexpected and aborts the call. This variant waits up to 2 s after the 200 for
/// that NOTIFY, applies the scenario's own NOTIFY checks to it (an `active` one must
/// carry a PIDF document), answers it and goes on with the unsubscribe.
fn watcher_scenario(dir: &std::path::Path) -> PathBuf {
    let xml = std::fs::read_to_string(scenario("lync_watcher_uac.xml")).unwrap();
    let open = "<recv request=\"NOTIFY\" optional=\"true\" next=\"h2\">";
    let at = xml.find(open).expect("the w2 NOTIFY handler");
    let len = xml[at..].find("</recv>").expect("its end");
    let checks = &xml[at + open.len()..at + len];
    let from = "<recv response=\"202\" optional=\"true\" next=\"unsubscribe\"/>\n  \
                <recv response=\"200\" timeout=\"10000\"/>\n";
    assert!(
        xml.contains(from),
        "phase 2 of lync_watcher_uac.xml changed"
    );
    let to = format!(
        "<recv response=\"202\" optional=\"true\" next=\"w2n\"/>\n  \
         <recv response=\"200\" timeout=\"10000\"/>\n  <label id=\"w2n\"/>\n  \
         <recv request=\"NOTIFY\" timeout=\"2000\" ontimeout=\"unsubscribe\">{checks}</recv>\n  \
         <send next=\"unsubscribe\">\n    <![CDATA[\n\n      SIP/2.0 200 OK\n      [last_Via:]\n      \
         [last_From:]\n      [last_To:]\n      [last_Call-ID:]\n      [last_CSeq:]\n      \
         Content-Length: 0\n\n    ]]>\n  </send>\n"
    );
    let path = dir.join("lync_watcher_uac_refresh_notify.xml");
    std::fs::write(&path, xml.replace(from, &to)).unwrap();
    path
}

fn uac_args() -> Vec<&'static str> {
    vec![
        "-s",
        "romeo",
        "-timeout",
        SIPP_TIMEOUT,
        "-timeout_error",
        "-key",
        "fedgate_domain",
        "fedgate-a.test",
        "-key",
        "lync_domain",
        "lync.test",
        "-key",
        "lync_user",
        "alice",
        "-key",
        "fedgate_user",
        "juliet",
    ]
}

fn addr(s: &str) -> Address {
    address(s).unwrap()
}

/// A fedgate node's SIP side: a TCP listener and a `SipUa` on it.
struct Node {
    ua: SipUa,
    events: mpsc::Receiver<SipUaEvent>,
    listen: SocketAddr,
    _transport: SipTransport,
}

async fn node(seed: u64) -> Node {
    start(seed, "gw.fedgate-a.test", None).await
}

/// A node named `host`, listening on TCP, or on TLS with these settings.
async fn start(seed: u64, host: &'static str, tls: Option<TlsSettings>) -> Node {
    start_with(seed, host, tls, |_| {}).await
}

async fn start_with(
    seed: u64,
    host: &'static str,
    tls: Option<TlsSettings>,
    tweak: impl FnOnce(&mut SipUaConfig),
) -> Node {
    let (transport, inbound) = SipTransport::new(TransportConfig::default(), tls.as_ref()).unwrap();
    let any = SocketAddr::from((LO, 0));
    let (listen, kind) = match tls {
        Some(_) => (transport.listen_tls(any).await.unwrap(), "tls"),
        None => (transport.listen_tcp(any).await.unwrap(), "tcp"),
    };
    let contact = addr(&format!("<sip:{host}:{};transport={kind}>", listen.port()));
    let ep = EndpointConfig::new(Host::Domain(Bytes::from_static(host.as_bytes())), seed);
    let mut cfg = SipUaConfig::new(UaConfig::new(ep, contact));
    tweak(&mut cfg);
    let (ua, events, _task) = SipUa::spawn(transport.clone(), inbound, cfg);
    Node {
        ua,
        events,
        listen,
        _transport: transport,
    }
}

fn tls_settings(me: &SelfSigned, peer: &SelfSigned) -> TlsSettings {
    TlsSettings {
        identity: Some(me.identity()),
        roots: vec![peer.cert.clone()],
        client_auth: ClientAuth::Required,
    }
}

/// Waits for the first event that `want` accepts; the others go to `log`.
async fn until(
    events: &mut mpsc::Receiver<SipUaEvent>,
    deadline: Instant,
    log: &mut Vec<SipUaEvent>,
    want: impl Fn(&SipUaEvent) -> bool,
) -> SipUaEvent {
    loop {
        let ev = next(events, deadline, log).await;
        if want(&ev) {
            return ev;
        }
        log.push(ev);
    }
}

/// The next event, or a panic at `deadline` with what was seen.
async fn next(
    events: &mut mpsc::Receiver<SipUaEvent>,
    deadline: Instant,
    seen: &[SipUaEvent],
) -> SipUaEvent {
    match timeout_at(deadline, events.recv()).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("event channel closed; seen {seen:#?}"),
        Err(_) => panic!("no event in time; seen {seen:#?}"),
    }
}

fn assert_sipp(what: &str, r: &SippResult) {
    assert!(
        r.passed() && r.successful_calls == 1,
        "{what}: SIPp exit {:?}, {} ok / {} failed\n{}",
        r.exit_code,
        r.successful_calls,
        r.failed_calls,
        r.diagnostics
    );
}

fn uri(a: &Address) -> String {
    let mut out = Vec::new();
    a.uri.encode(&mut out);
    String::from_utf8(out).unwrap()
}

fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---- (a) SIPp as a Lync watcher ----------------------------------------------------

/// Runs `lync_watcher_uac.xml` against `sipp_target` (the node, or a TLS tunnel in
/// front of it); the node accepts with a PIDF document. Checks SIPp's verdict and the
/// events, and returns the TLS identity the SUBSCRIBE came with.
async fn lync_watcher(n: &mut Node, sipp_target: SocketAddr) -> Option<Arc<PeerIdentity>> {
    let deadline = Instant::now() + BOUND;
    let dir = tempfile::tempdir().unwrap();
    let path = watcher_scenario(dir.path());
    let mut sipp = tokio::task::spawn_blocking(move || {
        Sipp::run(&path, sipp_target, SippTransport::Tcp, &uac_args())
    });
    let mut seen = Vec::new();
    let mut result = None;
    loop {
        let ev = tokio::select! {
            r = &mut sipp, if result.is_none() => {
                let r = r.unwrap().unwrap();
                // A failed run is reported with SIPp's logs, not as a missing event.
                assert_sipp("lync_watcher_uac", &r);
                result = Some(r);
                continue;
            }
            ev = next(&mut n.events, deadline, &seen) => ev,
        };
        seen.push(ev.clone());
        match ev {
            SipUaEvent::SubscriptionRequested { subscription, .. } => {
                n.ua.accept_subscription(
                    subscription,
                    SubState::Active,
                    Some(("application/pidf+xml", Bytes::from_static(PIDF.as_bytes()))),
                )
                .await
                .unwrap();
            }
            SipUaEvent::SubscriptionTerminated { .. } => break,
            _ => {}
        }
    }
    if result.is_none() {
        let r = timeout_at(deadline, sipp).await.unwrap().unwrap().unwrap();
        assert_sipp("lync_watcher_uac", &r);
    }

    let [
        SipUaEvent::SubscriptionRequested {
            subscription,
            from,
            to,
            event,
            expires,
            tls_peer,
            ..
        },
        SipUaEvent::SubscriptionRefreshed {
            subscription: s2,
            expires: e2,
        },
        SipUaEvent::SubscriptionTerminated {
            subscription: s3,
            reason,
        },
    ] = &seen[..]
    else {
        panic!("unexpected events {seen:#?}")
    };
    assert_eq!(uri(from), "sip:alice@lync.test");
    assert_eq!(uri(to), "sip:romeo@fedgate-a.test");
    assert_eq!(&event[..], b"presence");
    assert_eq!((*expires, *e2), (3600, 3600));
    assert_eq!((s2, s3), (subscription, subscription));
    assert_eq!(*reason, SubEnd::Unsubscribed);
    tls_peer.clone()
}

/// SIPp as a Lync watcher against the UA as it is (no driver shim): the NOTIFY that
/// follows the refresh is the core's own and goes through the scenario's checks (an
/// `active` NOTIFY must carry `application/pidf+xml` and a PIDF document with a
/// `<basic>`, `check_it`: else the call, and this test, fails), whether it comes
/// before the refresh's 200 (the `h2` handler) or within 2 s after it
/// ([`watcher_scenario`]). `core_refresh_notify_carries_the_last_document` checks
/// the same NOTIFY on the wire without SIPp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lync_watcher_subscribes_refreshes_and_unsubscribes() {
    if !peers_or_skip(&["sipp"]) {
        return;
    }
    let started = std::time::Instant::now();
    let mut n = node(1).await;
    let target = n.listen;
    let peer = lync_watcher(&mut n, target).await;
    assert!(peer.is_none(), "plain TCP has no TLS identity");
    eprintln!("lync watcher: {:?}", started.elapsed());
}

/// The same over mutual TLS: SIPp behind a stunnel client that presents the Lync
/// edge's certificate; fedgate sees its verified identity on the SUBSCRIBE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lync_watcher_over_tls_through_stunnel() {
    if !peers_or_skip(&["sipp", "stunnel4"]) {
        return;
    }
    let started = std::time::Instant::now();
    let ours = self_signed(&["gw.fedgate-a.test"]).unwrap();
    let lync = self_signed(&["sip.lync.test"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pair = CertPair {
        cert: dir.path().join("lync.crt"),
        key: dir.path().join("lync.key"),
    };
    std::fs::write(&pair.cert, &lync.cert_pem).unwrap();
    std::fs::write(&pair.key, &lync.key_pem).unwrap();
    let mut n = start(7, "gw.fedgate-a.test", Some(tls_settings(&ours, &lync))).await;
    let tunnel = Stunnel::client(sipp_listen(), n.listen, Some(&pair)).unwrap();
    let peer = lync_watcher(&mut n, tunnel.accept_addr()).await;
    let peer = peer.expect("a verified TLS identity");
    assert!(peer.matches("sip.lync.test"), "{:?}", peer.names());
    eprintln!("lync watcher over TLS: {:?}", started.elapsed());
}

// ---- (b) SIPp as a Lync IM peer ----------------------------------------------------

/// Runs an IM UAC scenario against a fresh node that accepts the session; returns
/// whether the offer carried a first message and the texts delivered, in order.
async fn lync_im_uac(name: &str) -> (bool, Vec<String>) {
    let deadline = Instant::now() + BOUND;
    let mut n = node(2).await;
    let target = n.listen;
    let path = scenario(name);
    let sipp = tokio::task::spawn_blocking(move || {
        Sipp::run(&path, target, SippTransport::Tcp, &uac_args())
    });
    let mut seen = Vec::new();
    let mut first = None;
    let mut texts = Vec::new();
    let mut session = None;
    loop {
        let ev = next(&mut n.events, deadline, &seen).await;
        seen.push(ev.clone());
        match ev {
            SipUaEvent::SessionOffered {
                session: s,
                remote,
                has_first_message,
                ..
            } => {
                assert_eq!(uri(&remote), "sip:alice@lync.test");
                assert!(session.replace(s).is_none(), "a second offer: {seen:#?}");
                first = Some(has_first_message);
                n.ua.accept_session(s).await.unwrap();
            }
            SipUaEvent::MessageReceived {
                session: s,
                content_type,
                body,
            } => {
                assert_eq!(Some(s), session);
                assert!(
                    content_type.starts_with(b"text/plain"),
                    "{}",
                    text(&content_type)
                );
                texts.push(text(&body).trim_end().to_owned());
            }
            SipUaEvent::SessionClosed { session: s, reason } => {
                assert_eq!(Some(s), session);
                assert_eq!(reason, CloseReason::ByeReceived);
                break;
            }
            _ => {}
        }
    }
    assert!(
        seen.iter()
            .any(|e| matches!(e, SipUaEvent::SessionOpened { .. })),
        "{seen:#?}"
    );
    let result = timeout_at(deadline, sipp).await.unwrap().unwrap().unwrap();
    assert_sipp(name, &result);
    (first.unwrap(), texts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lync_im_session_with_ms_text_format() {
    if !peers_or_skip(&["sipp"]) {
        return;
    }
    let started = std::time::Instant::now();
    let (first, texts) = lync_im_uac("lync_im_uac.xml").await;
    assert!(first, "the INVITE's ms-text-format was not decoded");
    // Text 1 comes from the INVITE and is delivered exactly once (the 200 advertises
    // ms-text-format, so Lync does not send it again as a MESSAGE).
    assert_eq!(texts, [TEXT1, TEXT2, TEXT3]);
    eprintln!("lync im (ms-text-format): {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lync_im_session_without_ms_text_format() {
    if !peers_or_skip(&["sipp"]) {
        return;
    }
    let started = std::time::Instant::now();
    let (first, texts) = lync_im_uac("lync_im_uac_no_textformat.xml").await;
    assert!(!first);
    assert_eq!(texts, [TEXT1, TEXT2, TEXT3]);
    eprintln!("lync im (no ms-text-format): {:?}", started.elapsed());
}

// ---- (c) fedgate as the initiator ----------------------------------------------------

fn sipp_listen() -> SocketAddr {
    SocketAddr::from((LO, free_port(LO).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fedgate_opens_im_session_to_lync() {
    if !peers_or_skip(&["sipp"]) {
        return;
    }
    let started = std::time::Instant::now();
    let deadline = Instant::now() + BOUND;
    let mut n = node(3).await;
    let listen = sipp_listen();
    // The UAS's message log outlives its working directory.
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("uas-messages.log");
    let server = Sipp::serve(
        &scenario("lync_im_uas.xml"),
        listen,
        SippTransport::Tcp,
        &[
            "-timeout",
            SIPP_TIMEOUT,
            "-timeout_error",
            "-message_file",
            log.to_str().unwrap(),
        ],
    )
    .unwrap();

    let s =
        n.ua.open_session(
            Target::tcp(listen),
            addr("<sip:juliet@fedgate-a.test>"),
            addr("<sip:alice@lync.test>"),
        )
        .await
        .unwrap();
    // Queued until the session is up.
    n.ua.send_message(s, "Hi Alice, from fedgate")
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let ev = next(&mut n.events, deadline, &seen).await;
        seen.push(ev.clone());
        if ev == (SipUaEvent::SessionOpened { session: s }) {
            break;
        }
    }
    // The core does not wait for a MESSAGE's answer before the next request, and SIPp
    // 3.6.1 aborts on a request that arrives in the tick between its recv and the
    // send of the 200: wait for each delivery, like a Lync client does.
    let delivered =
        |e: &SipUaEvent| matches!(e, SipUaEvent::MessageDelivered { session, .. } if *session == s);
    let first = until(&mut n.events, deadline, &mut seen, delivered).await;
    n.ua.send_message(s, "Second line ✓").await.unwrap();
    let second = until(&mut n.events, deadline, &mut seen, delivered).await;
    let cseq = |e: &SipUaEvent| match e {
        SipUaEvent::MessageDelivered { cseq, .. } => *cseq,
        _ => 0,
    };
    assert!(cseq(&first) < cseq(&second), "{first:?} {second:?}");
    n.ua.close_session(s).await.unwrap();
    loop {
        let ev = next(&mut n.events, deadline, &seen).await;
        seen.push(ev.clone());
        if matches!(ev, SipUaEvent::SessionClosed { .. }) {
            break;
        }
    }
    let result = tokio::task::spawn_blocking(move || server.wait(BOUND))
        .await
        .unwrap()
        .unwrap();
    assert_sipp("lync_im_uas", &result);
    assert_eq!(
        seen.last(),
        Some(&SipUaEvent::SessionClosed {
            session: s,
            reason: CloseReason::Local
        })
    );
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, SipUaEvent::MessageFailed { .. })),
        "{seen:#?}"
    );
    // What SIPp received: both texts, in order, then the BYE.
    let received = std::fs::read_to_string(&log).unwrap();
    let a = received.find("Hi Alice, from fedgate").expect("text 1");
    let b = received.find("Second line ✓").expect("text 2");
    let bye = received.rfind("BYE sip:").expect("BYE");
    assert!(a < b && b < bye, "order: {a} {b} {bye}");
    eprintln!("fedgate → lync im: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fedgate_subscribes_to_lync_presence() {
    if !peers_or_skip(&["sipp"]) {
        return;
    }
    let started = std::time::Instant::now();
    let deadline = Instant::now() + BOUND;
    let mut n = node(4).await;
    let listen = sipp_listen();
    let server = Sipp::serve(
        &scenario("lync_notifier_uas.xml"),
        listen,
        SippTransport::Tcp,
        &["-timeout", SIPP_TIMEOUT, "-timeout_error"],
    )
    .unwrap();

    let sub =
        n.ua.subscribe(
            Target::tcp(listen),
            addr("<sip:juliet@fedgate-a.test>"),
            addr("<sip:alice@lync.test>"),
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut bodies = Vec::new();
    while bodies.len() < 3 {
        let ev = next(&mut n.events, deadline, &seen).await;
        seen.push(ev.clone());
        if let SipUaEvent::Notified {
            subscription,
            state,
            content_type,
            body,
        } = ev
        {
            assert_eq!(subscription, sub);
            assert_eq!(state, SubState::Active);
            assert_eq!(
                content_type.as_deref(),
                Some(&b"application/msrtc-event-categories+xml"[..])
            );
            bodies.push(text(&body));
        }
    }
    let result = tokio::task::spawn_blocking(move || server.wait(BOUND))
        .await
        .unwrap()
        .unwrap();
    assert_sipp("lync_notifier_uas", &result);
    assert_eq!(
        seen[0],
        SipUaEvent::SubscriptionActive { subscription: sub }
    );
    for (body, avail) in bodies.iter().zip(["6500", "15500", "18500"]) {
        let tag = format!("<availability>{avail}</availability>");
        assert!(body.contains(&tag), "expected {tag} in {body}");
    }
    eprintln!("fedgate → lync subscribe: {:?}", started.elapsed());
}

// ---- (d) TLS between two fedgate nodes ------------------------------------------------

/// Two `SipUa`s over mutual TLS: B subscribes to A's user and opens an IM session; A
/// answers on the connection B opened (NOTIFYs and a MESSAGE back), B's own requests go
/// to its target. Each side sees the other's verified certificate names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_over_mutual_tls() {
    let deadline = Instant::now() + BOUND;
    let a_cert = self_signed(&["gw.fedgate-a.test"]).unwrap();
    let b_cert = self_signed(&["gw.fedgate-b.test"]).unwrap();
    let mut a = start(8, "gw.fedgate-a.test", Some(tls_settings(&a_cert, &b_cert))).await;
    let mut b = start(9, "gw.fedgate-b.test", Some(tls_settings(&b_cert, &a_cert))).await;
    let to_a = Target::tls(a.listen, "gw.fedgate-a.test");
    let juliet = addr("<sip:juliet@fedgate-b.test>");
    let romeo = addr("<sip:romeo@fedgate-a.test>");
    let (mut la, mut lb) = (Vec::new(), Vec::new());

    // Presence: B watches romeo@A.
    let sub_b =
        b.ua.subscribe(to_a.clone(), juliet.clone(), romeo.clone())
            .await
            .unwrap();
    let SipUaEvent::SubscriptionRequested {
        subscription: sub_a,
        tls_peer,
        ..
    } = until(&mut a.events, deadline, &mut la, |e| {
        matches!(e, SipUaEvent::SubscriptionRequested { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert!(tls_peer.unwrap().matches("gw.fedgate-b.test"));
    let pidf = Bytes::from_static(PIDF.as_bytes());
    a.ua.accept_subscription(
        sub_a,
        SubState::Active,
        Some(("application/pidf+xml", pidf.clone())),
    )
    .await
    .unwrap();
    let closed = Bytes::from(PIDF.replace("open", "closed"));
    let notified = |want: Bytes| move |e: &SipUaEvent| matches!(e, SipUaEvent::Notified { body, .. } if *body == want);
    until(&mut b.events, deadline, &mut lb, notified(pidf)).await;
    a.ua.notify(sub_a, None, "application/pidf+xml", closed.clone())
        .await
        .unwrap();
    until(&mut b.events, deadline, &mut lb, notified(closed)).await;
    assert!(lb.contains(&SipUaEvent::SubscriptionActive {
        subscription: sub_b
    }));

    // IM: B opens a session to romeo@A; A answers and replies on B's connection.
    let s_b =
        b.ua.open_session(to_a.clone(), juliet.clone(), romeo.clone())
            .await
            .unwrap();
    b.ua.send_message(s_b, "hello over TLS").await.unwrap();
    let SipUaEvent::SessionOffered {
        session: s_a,
        tls_peer,
        ..
    } = until(&mut a.events, deadline, &mut la, |e| {
        matches!(e, SipUaEvent::SessionOffered { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert!(tls_peer.unwrap().matches("gw.fedgate-b.test"));
    a.ua.accept_session(s_a).await.unwrap();
    let got = until(&mut a.events, deadline, &mut la, |e| {
        matches!(e, SipUaEvent::MessageReceived { .. })
    })
    .await;
    assert!(
        matches!(got, SipUaEvent::MessageReceived { session, body, .. }
        if session == s_a && body == "hello over TLS")
    );
    a.ua.send_message(s_a, "hello back").await.unwrap();
    let got = until(&mut b.events, deadline, &mut lb, |e| {
        matches!(e, SipUaEvent::MessageReceived { .. })
    })
    .await;
    assert!(
        matches!(got, SipUaEvent::MessageReceived { session, body, .. }
        if session == s_b && body == "hello back")
    );
    b.ua.close_session(s_b).await.unwrap();
    let closed = until(&mut a.events, deadline, &mut la, |e| {
        matches!(e, SipUaEvent::SessionClosed { .. })
    })
    .await;
    assert_eq!(
        closed,
        SipUaEvent::SessionClosed {
            session: s_a,
            reason: CloseReason::ByeReceived
        }
    );

    // B unsubscribes; A ends the subscription.
    b.ua.terminate(sub_b, "").await.unwrap();
    let ended = until(&mut a.events, deadline, &mut la, |e| {
        matches!(e, SipUaEvent::SubscriptionTerminated { .. })
    })
    .await;
    assert_eq!(
        ended,
        SipUaEvent::SubscriptionTerminated {
            subscription: sub_a,
            reason: SubEnd::Unsubscribed
        }
    );
    let ended = until(&mut b.events, deadline, &mut lb, |e| {
        matches!(e, SipUaEvent::SubscriptionTerminated { .. })
    })
    .await;
    assert!(
        matches!(ended, SipUaEvent::SubscriptionTerminated { subscription, .. } if subscription == sub_b),
        "{ended:?}"
    );
    // Each side learnt that its MESSAGE was answered 200, over B's connection both ways.
    let delivered = |l: &[SipUaEvent], s| {
        l.iter()
            .any(|e| matches!(e, SipUaEvent::MessageDelivered { session, .. } if *session == s))
    };
    assert!(
        delivered(&la, s_a) && delivered(&lb, s_b),
        "{la:#?}\n{lb:#?}"
    );
    let failures = |l: &[SipUaEvent]| {
        l.iter()
            .filter(|e| {
                matches!(
                    e,
                    SipUaEvent::MessageFailed { .. } | SipUaEvent::Unhandled { .. }
                )
            })
            .count()
    };
    assert_eq!((failures(&la), failures(&lb)), (0, 0), "{la:#?}\n{lb:#?}");
}

// ---- the driver on tokio's paused clock ------------------------------------------------

/// A peer that accepts the connection and never answers: Timer B (64·T1 = 32 s) ends
/// the INVITE with a synthesized 408, on the paused clock, in no real time.
#[tokio::test(start_paused = true)]
async fn unanswered_invite_times_out_on_timer_b() {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((LO, 0)))
        .await
        .unwrap();
    let silent = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    });
    let mut n = node(5).await;
    let t0 = Instant::now();
    let s =
        n.ua.open_session(
            Target::tcp(silent),
            addr("<sip:juliet@fedgate-a.test>"),
            addr("<sip:alice@lync.test>"),
        )
        .await
        .unwrap();
    let ev = timeout_at(t0 + Duration::from_secs(40), n.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ev,
        SipUaEvent::SessionClosed {
            session: s,
            reason: CloseReason::Rejected(408)
        }
    );
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(32) && waited < Duration::from_secs(33),
        "{waited:?}"
    );
    // Calls on a closed session fail cleanly.
    assert!(matches!(
        n.ua.send_message(s, "late").await,
        Err(UaError::Ua(fedgate_sip_txn::Error::UnknownSession))
    ));
    drop(n);
    let got = timeout_at(Instant::now() + Duration::from_secs(120), hold)
        .await
        .unwrap()
        .unwrap();
    assert!(got.starts_with(b"INVITE sip:alice@lync.test SIP/2.0\r\n"));
}

// ---- the driver against a hand-written peer on one TCP connection ----------------------

/// A SIP peer written by hand: one TCP connection, messages as text, framed replies.
struct RawPeer {
    s: tokio::net::TcpStream,
    buf: bytes::BytesMut,
    framer: fedgate_sip::StreamFramer,
}

impl RawPeer {
    async fn connect(to: SocketAddr) -> RawPeer {
        RawPeer {
            s: tokio::net::TcpStream::connect(to).await.unwrap(),
            buf: bytes::BytesMut::new(),
            framer: fedgate_sip::StreamFramer::new(fedgate_sip::Limits::default()),
        }
    }

    fn local(&self) -> SocketAddr {
        self.s.local_addr().unwrap()
    }

    async fn send(&mut self, wire: &str) {
        use tokio::io::AsyncWriteExt;
        self.s.write_all(wire.as_bytes()).await.unwrap();
    }

    /// The next message from the node, or a panic at `deadline`.
    async fn recv(&mut self, deadline: Instant) -> Message {
        use tokio::io::AsyncReadExt;
        loop {
            match self.framer.decode(&mut self.buf).unwrap() {
                Frame::Complete(m, _) => return m,
                Frame::Partial => {
                    let n = timeout_at(deadline, self.s.read_buf(&mut self.buf))
                        .await
                        .expect("no message from the node in time")
                        .unwrap();
                    assert!(n > 0, "the node closed the connection");
                }
                _ => {}
            }
        }
    }
}

/// The value of the first `k` header of `m`.
fn hv(m: &Message, k: HeaderKind) -> String {
    let h = m
        .headers
        .get(k)
        .unwrap_or_else(|| panic!("no {k:?} in {m:?}"));
    String::from_utf8_lossy(h.value()).into_owned()
}

/// The URI inside the first Contact of `m`.
fn contact_uri(m: &Message) -> String {
    let c = hv(m, HeaderKind::Contact);
    let (a, b) = (c.find('<').unwrap(), c.find('>').unwrap());
    c[a + 1..b].to_owned()
}

/// The To tag of `m`.
fn to_tag(m: &Message) -> String {
    text(m.to().unwrap().tag().expect("a To tag"))
}

/// A 200 to a request of the node.
fn ok_to(m: &Message) -> String {
    format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
         Content-Length: 0\r\n\r\n",
        hv(m, HeaderKind::Via),
        hv(m, HeaderKind::From),
        hv(m, HeaderKind::To),
        hv(m, HeaderKind::CallId),
        hv(m, HeaderKind::CSeq),
    )
}

/// A SUBSCRIBE from alice@lync.test to romeo's presence (`to_tag`: a refresh).
fn subscribe_wire(local: SocketAddr, ruri: &str, cseq: u32, to_tag: Option<&str>) -> String {
    let tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "SUBSCRIBE {ruri} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKraw-sub-{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@lync.test>;tag=raw-w1\r\n\
         To: <sip:romeo@fedgate-a.test>{tag}\r\nCall-ID: raw-sub-1@lync.test\r\n\
         CSeq: {cseq} SUBSCRIBE\r\nContact: <sip:alice@{local};transport=tcp>\r\n\
         Event: presence\r\nAccept: application/pidf+xml\r\nExpires: 3600\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Reads from `p` until the final response to `method` has come and (`notify`) a
/// NOTIFY, which is answered 200; returns (response, NOTIFY).
async fn response_and_notify(
    p: &mut RawPeer,
    deadline: Instant,
    method: Method,
) -> (Message, Option<Message>) {
    let (mut resp, mut notify) = (None, None);
    while resp.is_none() || notify.is_none() {
        let m = p.recv(deadline).await;
        if m.method() == Some(&Method::Notify) {
            p.send(&ok_to(&m)).await;
            notify = Some(m);
        } else if m.status().is_some_and(|s| s.as_u16() >= 200)
            && m.cseq().unwrap().method == method
        {
            resp = Some(m);
        }
    }
    (resp.unwrap(), notify)
}

/// RFC 6665 §4.2.2 / RFC 3856 §6.6, full state: the NOTIFY the core sends right after
/// it accepts a refresh (no new document from the application) carries the last
/// document the application notified, with its Content-Type and one correct
/// Content-Length, on the wire as the driver hands the core's bytes to the transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_refresh_notify_carries_the_last_document() {
    let deadline = Instant::now() + BOUND;
    let mut n = node(11).await;
    let mut p = RawPeer::connect(n.listen).await;
    let local = p.local();
    let mut log = Vec::new();

    p.send(&subscribe_wire(local, "sip:romeo@fedgate-a.test", 1, None))
        .await;
    let SipUaEvent::SubscriptionRequested { subscription, .. } =
        until(&mut n.events, deadline, &mut log, |e| {
            matches!(e, SipUaEvent::SubscriptionRequested { .. })
        })
        .await
    else {
        unreachable!()
    };
    n.ua.accept_subscription(
        subscription,
        SubState::Active,
        Some(("application/pidf+xml", Bytes::from_static(PIDF.as_bytes()))),
    )
    .await
    .unwrap();
    let (ok, first) = response_and_notify(&mut p, deadline, Method::Subscribe).await;
    assert!(ok.status().unwrap().as_u16() < 300, "{ok:?}");
    assert_eq!(first.unwrap().body, PIDF.as_bytes());

    // The refresh: the core answers it and notifies without the application.
    let (ruri, tag) = (contact_uri(&ok), to_tag(&ok));
    p.send(&subscribe_wire(local, &ruri, 2, Some(&tag))).await;
    let (ok2, refresh) = response_and_notify(&mut p, deadline, Method::Subscribe).await;
    assert_eq!(ok2.status().unwrap().as_u16(), 200, "{ok2:?}");
    let refresh = refresh.unwrap();
    assert!(
        hv(&refresh, HeaderKind::SubscriptionState).starts_with("active"),
        "{refresh:?}"
    );
    assert_eq!(
        hv(&refresh, HeaderKind::ContentType),
        "application/pidf+xml"
    );
    assert_eq!(refresh.body, PIDF.as_bytes());
    let lengths: Vec<_> = refresh
        .headers
        .get_all(HeaderKind::ContentLength)
        .map(|h| h.value().to_vec())
        .collect();
    assert_eq!(lengths, vec![PIDF.len().to_string().into_bytes()]);
    assert_eq!(hv(&refresh, HeaderKind::MaxForwards), "70");
    until(&mut n.events, deadline, &mut log, |e| {
        matches!(e, SipUaEvent::SubscriptionRefreshed { subscription: s, .. } if *s == subscription)
    })
    .await;
}

/// An IM session the peer opened on its TCP connection: our MESSAGE's 200 is
/// reported once ([`SipUaEvent::MessageDelivered`], from the core), and when the peer
/// closes the connection the session ends at once with [`CloseReason::FlowClosed`]
/// (the transport's connection end → `handle_flow_closed`), not at the idle timer
/// (600 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_closing_its_connection_ends_the_session_at_once() {
    let deadline = Instant::now() + BOUND;
    let mut n = node(12).await;
    let mut p = RawPeer::connect(n.listen).await;
    let local = p.local();
    let mut log = Vec::new();
    let sdp = format!(
        "v=0\r\no=- 0 0 IN IP4 {ip}\r\ns=session\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=message 5060 sip null\r\na=accept-types:text/plain\r\n",
        ip = local.ip()
    );
    p.send(&format!(
        "INVITE sip:romeo@fedgate-a.test SIP/2.0\r\n\
         Via: SIP/2.0/TCP {local};branch=z9hG4bKraw-inv-1\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@lync.test>;tag=raw-c1\r\nTo: <sip:romeo@fedgate-a.test>\r\n\
         Call-ID: raw-inv-1@lync.test\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{local};transport=tcp>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ))
    .await;
    let SipUaEvent::SessionOffered { session, .. } =
        until(&mut n.events, deadline, &mut log, |e| {
            matches!(e, SipUaEvent::SessionOffered { .. })
        })
        .await
    else {
        unreachable!()
    };
    n.ua.accept_session(session).await.unwrap();
    let ok = loop {
        let m = p.recv(deadline).await;
        if m.status().is_some_and(|s| s.as_u16() >= 200) {
            break m;
        }
    };
    assert_eq!(ok.status().unwrap().as_u16(), 200, "{ok:?}");
    let (ruri, tag) = (contact_uri(&ok), to_tag(&ok));
    p.send(&format!(
        "ACK {ruri} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKraw-ack-1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@lync.test>;tag=raw-c1\r\n\
         To: <sip:romeo@fedgate-a.test>;tag={tag}\r\nCall-ID: raw-inv-1@lync.test\r\n\
         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    ))
    .await;
    until(
        &mut n.events,
        deadline,
        &mut log,
        |e| matches!(e, SipUaEvent::SessionOpened { session: s } if *s == session),
    )
    .await;

    // Our MESSAGE goes back on the peer's connection; its 200 is reported once.
    n.ua.send_message(session, "hello Lync").await.unwrap();
    let msg = p.recv(deadline).await;
    assert_eq!(msg.method(), Some(&Method::Message), "{msg:?}");
    assert_eq!(msg.body, b"hello Lync"[..]);
    p.send(&ok_to(&msg)).await;
    let cseq = msg.cseq().unwrap().seq;
    let ev = until(&mut n.events, deadline, &mut log, |e| {
        matches!(e, SipUaEvent::MessageDelivered { .. })
    })
    .await;
    assert_eq!(ev, SipUaEvent::MessageDelivered { session, cseq });
    // A retransmitted 200 is absorbed by the transaction: no second report.
    p.send(&ok_to(&msg)).await;

    let closed_at = Instant::now();
    drop(p);
    let ev = until(&mut n.events, deadline, &mut log, |e| {
        matches!(e, SipUaEvent::SessionClosed { .. })
    })
    .await;
    assert_eq!(
        ev,
        SipUaEvent::SessionClosed {
            session,
            reason: CloseReason::FlowClosed
        }
    );
    assert!(
        closed_at.elapsed() < Duration::from_secs(2),
        "{:?}",
        closed_at.elapsed()
    );
    assert!(
        !log.iter()
            .any(|e| matches!(e, SipUaEvent::MessageDelivered { .. })),
        "a second delivery report: {log:#?}"
    );
    assert!(matches!(
        n.ua.send_message(session, "late").await,
        Err(UaError::Ua(fedgate_sip_txn::Error::UnknownSession))
    ));
}
