//! SIP federation end to end (issue 8): a whole fedgate node (`Node::start` with
//! `sip.enabled = true`) with a slixmpp client as the local user, against SIPp playing a
//! Lync federation partner (plain TCP directly, TLS through stunnel), and two fedgate
//! nodes as SIP partners of each other over mutual TLS.
//!
//! Scenarios: `tests/sipp/lync_gw_*.xml` (written for these tests) and the Lync
//! scenarios of `tests/sipp/README.md`. Every SIPp wait is bounded by its scenario and
//! `-timeout`; every client wait by `T`; each test as a whole by `BOUND`. Real time: SIPp
//! and slixmpp are real processes. Loopback only: the node listens on 127.0.0.10
//! (fedgate-a.test) and 127.0.0.11 (fedgate-b.test), SIPp on 127.0.0.1; the two-node
//! test takes both addresses with an [`IpLease`].
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use common::{SipPair, cert_files, lease, login, logs, scenario, sip_addr, sip_pair, start};
use fedgate_node::config::{NodeConfig, SipTransportKind};
use fedgate_node::core::Node;
use fedgate_testkit::process::free_port;
use fedgate_testkit::{
    SLIXMPP, SipTransport as SippTransport, Sipp, SippResult, SippServer, Stunnel, XmppClient,
    field, peers_or_skip,
};

const A: (&str, Ipv4Addr) = ("fedgate-a.test", Ipv4Addr::new(127, 0, 0, 10));
const B: (&str, Ipv4Addr) = ("fedgate-b.test", Ipv4Addr::new(127, 0, 0, 11));
const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// One client wait.
const T: Duration = Duration::from_secs(20);
/// A whole test.
const BOUND: Duration = Duration::from_secs(120);

const TEXT1: &str = "Hello from Lync (first message, in the INVITE)";
const TEXT2: &str = "Second message from Lync";
const TEXT3: &str = "Grüße aus Lync ✓";

/// The node config: `me` with SIP federation on (listeners as given), `lync.test` as a
/// SIP peer at `lync_target` (plain TCP outbound), and `extra` TOML appended.
fn config(dir: &Path, listeners: &str, lync_target: Option<SocketAddr>, tls: &str) -> NodeConfig {
    let targets = lync_target
        .map(|t| format!("targets = [\"{t}\"]"))
        .unwrap_or_default();
    let text = format!(
        r#"
        [node]
        name = "{me}"
        data_dir = "{dir}"
        domains = ["{me}"]
        {tls}
        [xmpp.s2s]
        enabled = false
        [xmpp.c2s]
        listen = "{ip}:0"
        [sip]
        enabled = true
        outbound_transport = "tcp"
        im_idle_secs = 2
        {listeners}
        [[federation.domain]]
        name = "lync.test"
        protocol = "sip"
        {targets}
        "#,
        me = A.0,
        ip = A.1,
        dir = dir.display(),
    );
    NodeConfig::from_toml_str(&text).unwrap()
}

fn tcp_listener() -> String {
    format!(
        "[[sip.listeners]]\ntransport = \"tcp\"\naddress = \"{}:0\"\n",
        A.1
    )
}

/// The node with a TCP listener and a generated certificate, `lync.test` at `lync` (if
/// any), and the user juliet.
async fn juliet_node(dir: &Path, lync: Option<SocketAddr>) -> Node {
    start(
        config(dir, &tcp_listener(), lync, "[tls]\ngenerate = true"),
        &[("juliet", "juliet-pw")],
    )
    .await
}

fn login_juliet(node: &Node) -> XmppClient {
    login(node, "juliet@fedgate-a.test", "juliet-pw")
}

/// SIPp serving the scenario `name` as Lync over TCP on `addr`, with `args`.
async fn serve_uas(
    name: &'static str,
    addr: SocketAddr,
    args: &'static [&'static str],
) -> SippServer {
    tokio::task::spawn_blocking(move || {
        Sipp::serve(&scenario(name), addr, SippTransport::Tcp, args).unwrap()
    })
    .await
    .unwrap()
}

/// SIPp UAC arguments: the Lync user `lync_user@lync_domain` calling `service`.
fn uac_args<'a>(service: &'a str, lync_domain: &'a str, lync_user: &'a str) -> Vec<&'a str> {
    vec![
        "-s",
        service,
        "-timeout",
        "40s",
        "-timeout_error",
        "-key",
        "fedgate_domain",
        "fedgate-a.test",
        "-key",
        "lync_domain",
        lync_domain,
        "-key",
        "lync_user",
        lync_user,
        "-key",
        "fedgate_user",
        service,
    ]
}

fn assert_sipp(what: &str, r: &SippResult) {
    assert!(r.passed(), "{what}: SIPp failed: {r:#?}");
}

/// Waits (at most `within`, on a blocking thread) for the SIPp UAS `server` to end, and
/// checks that its scenario `what` passed.
async fn assert_uas_passed(what: &str, server: SippServer, within: Duration) {
    let r = tokio::task::spawn_blocking(move || server.wait(within).unwrap())
        .await
        .unwrap();
    assert_sipp(what, &r);
}

/// Runs the SIPp UAC `name` against `to` on a blocking thread.
fn run_uac(
    name: &'static str,
    to: SocketAddr,
    args: Vec<String>,
) -> tokio::task::JoinHandle<SippResult> {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        Sipp::run(&scenario(name), to, SippTransport::Tcp, &a).unwrap()
    })
}

fn owned(v: Vec<&str>) -> Vec<String> {
    v.into_iter().map(str::to_owned).collect()
}

fn skip() -> bool {
    common::sip_peers_missing()
}

/// Issue 8, test 1: SIPp (Lync) subscribes to juliet → pending → the slixmpp client
/// approves → NOTIFY active with Available (3500) → juliet sets dnd → NOTIFY with Busy
/// (6500, Table 3) → Lync refreshes (NOTIFY with the full state, 6500) → Lync
/// unsubscribes (NOTIFY terminated). The scenario checks the states and availability
/// numbers and fails on any extra NOTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_watcher_pending_approved_then_busy() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = juliet_node(dir.path(), None).await;
    let sip = sip_addr(&node, SipTransportKind::Tcp);
    let client = tokio::task::spawn_blocking({
        let mut juliet = login_juliet(&node);
        move || {
            juliet
                .expect(|l| l == "subscribe from=bob@lync.test", T)
                .unwrap();
            juliet.command("approve bob@lync.test", T).unwrap();
            // Let the active NOTIFY (Available) go out before the change.
            std::thread::sleep(Duration::from_millis(1500));
            juliet.command("presence dnd", T).unwrap();
            juliet
        }
    });
    let uac = run_uac(
        "lync_gw_watcher_uac.xml",
        sip,
        owned(uac_args("juliet", "lync.test", "bob")),
    );
    let r = tokio::time::timeout(BOUND, uac).await.unwrap().unwrap();
    let juliet = client.await.unwrap();
    assert_sipp("lync_gw_watcher_uac", &r);
    juliet.quit();
    node.shutdown().await;
}

/// A watcher whose connection closes keeps getting NOTIFYs: SIPp (Lync) subscribes to
/// juliet over TCP, juliet approves (NOTIFY active, 3500), SIPp exits (the connection
/// closes with the subscription running); juliet sets dnd, and the NOTIFY (6500) goes
/// in the same dialog to lync.test's target, a second SIPp, on a connection the
/// gateway opens, instead of waiting for Lync's refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_watcher_connection_closed_notify_goes_to_its_domain() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let edge = SocketAddr::from((LO, free_port(LO).unwrap()));
    let server = serve_uas(
        "lync_gw_notify_after_reconnect_uas.xml",
        edge,
        &["-timeout", "40s", "-timeout_error"],
    )
    .await;
    let node = juliet_node(dir.path(), Some(edge)).await;
    let sip = sip_addr(&node, SipTransportKind::Tcp);
    let (approved_tx, approved_rx) = std::sync::mpsc::channel::<()>();
    let client = tokio::task::spawn_blocking({
        let mut juliet = login_juliet(&node);
        move || {
            juliet
                .expect(|l| l == "subscribe from=bob@lync.test", T)
                .unwrap();
            juliet.command("approve bob@lync.test", T).unwrap();
            // The watcher has gone (its SIPp ended) before the change.
            approved_rx.recv_timeout(BOUND).unwrap();
            std::thread::sleep(Duration::from_millis(500));
            juliet.command("presence dnd", T).unwrap();
            juliet
        }
    });
    let uac = run_uac(
        "lync_gw_watcher_leaves_uac.xml",
        sip,
        owned(uac_args("juliet", "lync.test", "bob")),
    );
    let r = tokio::time::timeout(BOUND, uac).await.unwrap().unwrap();
    assert_sipp("lync_gw_watcher_leaves_uac", &r);
    approved_tx.send(()).unwrap();
    assert_uas_passed(
        "lync_gw_notify_after_reconnect_uas",
        server,
        Duration::from_secs(40),
    )
    .await;
    let juliet = client.await.unwrap();
    juliet.quit();
    node.shutdown().await;
}

/// Issue 8, test 2: juliet watches bob@lync.test; SIPp (Lync) sends NOTIFYs with
/// availability 6500, 15500, 18500 → juliet sees Away "Busy", Away, unavailable (Table 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_notify_msrtc_mapped_by_table1() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(LO).unwrap();
    let uas_addr = SocketAddr::from((LO, port));
    let server = serve_uas(
        "lync_notifier_uas.xml",
        uas_addr,
        &["-d", "700", "-timeout", "40s", "-timeout_error"],
    )
    .await;
    let node = juliet_node(dir.path(), Some(uas_addr)).await;
    let mut juliet = login_juliet(&node);
    let lines = tokio::task::spawn_blocking(move || {
        juliet.command("subscribe bob@lync.test", T).unwrap();
        // The subscription is confirmed first (the first active NOTIFY), then each
        // NOTIFY is one presence.
        juliet
            .expect(
                |l| l.starts_with("presence from=bob@lync.test type=subscribed"),
                T,
            )
            .unwrap();
        let from_bob = |l: &str| {
            l.starts_with("presence from=bob@lync.test")
                && matches!(
                    field(l, "type").as_deref(),
                    Some("available" | "unavailable")
                )
        };
        let a = juliet.expect(from_bob, T).unwrap();
        let b = juliet.expect(from_bob, T).unwrap();
        let c = juliet.expect(from_bob, T).unwrap();
        juliet.quit();
        [a, b, c]
    });
    let [busy, away, off] = tokio::time::timeout(BOUND, lines).await.unwrap().unwrap();
    assert_eq!(field(&busy, "type").as_deref(), Some("available"), "{busy}");
    assert_eq!(field(&busy, "show").as_deref(), Some("away"), "{busy}");
    assert_eq!(field(&busy, "status").as_deref(), Some("Busy"), "{busy}");
    assert_eq!(field(&away, "show").as_deref(), Some("away"), "{away}");
    assert_eq!(field(&away, "status").as_deref(), Some(""), "{away}");
    assert_eq!(field(&off, "type").as_deref(), Some("unavailable"), "{off}");
    assert_uas_passed("lync_notifier_uas", server, Duration::from_secs(30)).await;
    node.shutdown().await;
}

/// Issue 8, test 3: session-mode IM both ways. Lync → juliet: INVITE with the first
/// text in `ms-text-format`, then two MESSAGEs: juliet gets the three texts in order,
/// each exactly once. juliet → Lync: her first message opens a session (INVITE, ACK,
/// MESSAGE), her second message reuses the session (one INVITE), and the idle session
/// ends with BYE (the UAS ends on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_session_im_both_ways() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(LO).unwrap();
    let uas_addr = SocketAddr::from((LO, port));
    let server = serve_uas(
        "lync_im_uas.xml",
        uas_addr,
        &["-timeout", "40s", "-timeout_error"],
    )
    .await;
    let node = juliet_node(dir.path(), Some(uas_addr)).await;
    let sip = sip_addr(&node, SipTransportKind::Tcp);
    let mut juliet = login_juliet(&node);

    // Lync → juliet.
    let uac = run_uac(
        "lync_im_uac.xml",
        sip,
        owned(uac_args("juliet", "lync.test", "bob")),
    );
    let r = tokio::time::timeout(BOUND, uac).await.unwrap().unwrap();
    assert_sipp("lync_im_uac", &r);
    let (juliet, got) = tokio::task::spawn_blocking(move || {
        let from_bob = |l: &str| l.starts_with("message from=bob@lync.test");
        let got: Vec<String> = (0..3)
            .map(|_| field(&juliet.expect(from_bob, T).unwrap(), "body").unwrap())
            .collect();
        // Exactly once: nothing more from bob.
        assert!(juliet.expect(from_bob, Duration::from_secs(1)).is_err());
        (juliet, got)
    })
    .await
    .unwrap();
    assert_eq!(got, [TEXT1, TEXT2, TEXT3]);
    let lines = juliet.history().to_vec();
    assert!(
        lines
            .iter()
            .all(|l| !l.starts_with("message from=bob@lync.test") || l.contains("type=chat")),
        "{lines:#?}"
    );

    // juliet → Lync: two messages, one session (lync_im_uas.xml takes MESSAGEs until
    // the BYE, which the idle close sends after `sip.im_idle_secs`). A reply from Lync
    // in the same dialog is in the two-node test (SIPp cannot send one while our first
    // MESSAGE, queued behind the INVITE, is on its way).
    let mut juliet = juliet;
    let client = tokio::task::spawn_blocking(move || {
        juliet.command("send bob@lync.test Hello Lync, from XMPP", T)?;
        std::thread::sleep(Duration::from_millis(300));
        juliet.command("send bob@lync.test Second one, same session", T)?;
        Ok::<_, fedgate_testkit::Error>(juliet)
    })
    .await
    .unwrap();
    let r = tokio::task::spawn_blocking(move || server_wait(server))
        .await
        .unwrap();
    let juliet = client.unwrap_or_else(|e| panic!("{e}\nSIPp UAS: {r:#?}"));
    assert_sipp("lync_im_uas", &r.0);
    let log = r.1;
    assert_eq!(log.matches("INVITE sip:bob@lync.test").count(), 1, "{log}");
    assert!(log.contains("Hello Lync, from XMPP"), "{log}");
    assert!(log.contains("Second one, same session"), "{log}");
    assert!(log.contains("BYE sip:"), "{log}");
    juliet.quit();
    node.shutdown().await;
}

/// Waits for a SIPp UAS and returns its result and its message log. The log lives in
/// the server's folder, which `wait` removes: it is read once it holds the BYE (bounded).
fn server_wait(server: SippServer) -> (SippResult, String) {
    let path = server.dir().join("messages.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut log = String::new();
    while std::time::Instant::now() < deadline {
        log = std::fs::read_to_string(&path).unwrap_or_default();
        if log.contains("BYE sip:") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = server.wait(Duration::from_secs(40)).unwrap();
    (r, log)
}

/// Issue 8, test 4: a SUBSCRIBE from a domain that is not permitted gets 403 and the
/// client hears nothing; a watcher juliet denies gets an active subscription whose
/// NOTIFY says closed (polite block), and when it subscribes again it is accepted at
/// once with closed, without juliet being asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_refused_domain_and_polite_block() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = juliet_node(dir.path(), None).await;
    let sip = sip_addr(&node, SipTransportKind::Tcp);
    let mut juliet = login_juliet(&node);

    // Not permitted: 403 (the scenario fails on anything else), nothing reaches juliet.
    let r = run_uac(
        "lync_gw_subscribe_refused_uac.xml",
        sip,
        owned(uac_args("juliet", "evil.test", "mallory")),
    );
    let r = tokio::time::timeout(BOUND, r).await.unwrap().unwrap();
    assert_sipp("lync_gw_subscribe_refused_uac", &r);
    let mut juliet = tokio::task::spawn_blocking(move || {
        let got = juliet.expect(|l| l.contains("evil.test"), Duration::from_secs(1));
        assert!(got.is_err(), "reached juliet: {got:?}");
        juliet
    })
    .await
    .unwrap();

    // Denied: polite block.
    let client = tokio::task::spawn_blocking(move || {
        juliet
            .expect(|l| l == "subscribe from=bob@lync.test", T)
            .unwrap();
        juliet.command("deny bob@lync.test", T).unwrap();
        juliet
    });
    let uac = run_uac(
        "lync_gw_denied_watcher_uac.xml",
        sip,
        owned(uac_args("juliet", "lync.test", "bob")),
    );
    let r = tokio::time::timeout(BOUND, uac).await.unwrap().unwrap();
    let juliet = client.await.unwrap();
    assert_sipp("lync_gw_denied_watcher_uac", &r);

    // Again: accepted at once, closed; juliet is not asked again.
    let uac = run_uac(
        "lync_gw_blocked_watcher_uac.xml",
        sip,
        owned(uac_args("juliet", "lync.test", "bob")),
    );
    let r = tokio::time::timeout(BOUND, uac).await.unwrap().unwrap();
    assert_sipp("lync_gw_blocked_watcher_uac", &r);
    let mut juliet = juliet;
    let juliet = tokio::task::spawn_blocking(move || {
        let got = juliet.expect(
            |l| l == "subscribe from=bob@lync.test",
            Duration::from_secs(1),
        );
        assert!(got.is_err(), "asked again: {got:?}");
        juliet
    })
    .await
    .unwrap();
    juliet.quit();
    node.shutdown().await;
}

/// Lync → juliet over TLS: SIPp behind a stunnel client that presents a certificate
/// for lync.test (mutual TLS, `sip.require_client_cert = true`); the three texts
/// arrive. A certificate for another name than the From domain is refused (RFC 5922).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_im_over_mutual_tls_through_stunnel() {
    logs();
    if !peers_or_skip(&["sipp", "stunnel4", SLIXMPP]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let lync = cert_files(certs.path(), "lync.test");
    let other = cert_files(certs.path(), "other.test");
    let listeners = format!(
        "{}[[sip.listeners]]\ntransport = \"tls\"\naddress = \"{}:0\"\n",
        tcp_listener(),
        A.1
    );
    let tls = format!(
        "[tls]\ngenerate = true\nroots = [\"{}\", \"{}\"]",
        lync.cert.display(),
        other.cert.display()
    );
    let node = start(
        config(dir.path(), &listeners, None, &tls),
        &[("juliet", "juliet-pw")],
    )
    .await;
    let tls_addr = sip_addr(&node, SipTransportKind::Tls);
    let mut juliet = login_juliet(&node);

    let r = tokio::task::spawn_blocking(move || {
        let local = SocketAddr::from((LO, free_port(LO).unwrap()));
        let tunnel = Stunnel::client(local, tls_addr, Some(&lync)).unwrap();
        let r = Sipp::run(
            &scenario("lync_im_uac.xml"),
            tunnel.accept_addr(),
            SippTransport::Tcp,
            &uac_args("juliet", "lync.test", "bob"),
        )
        .unwrap();
        // The same From domain with a certificate that names another domain.
        let local = SocketAddr::from((LO, free_port(LO).unwrap()));
        let wrong = Stunnel::client(local, tls_addr, Some(&other)).unwrap();
        let refused = Sipp::run(
            &scenario("lync_gw_subscribe_refused_uac.xml"),
            wrong.accept_addr(),
            SippTransport::Tcp,
            &uac_args("juliet", "lync.test", "eve"),
        )
        .unwrap();
        (r, refused)
    });
    let (r, refused) = tokio::time::timeout(BOUND, r).await.unwrap().unwrap();
    assert_sipp("lync_im_uac over TLS", &r);
    assert_sipp("SUBSCRIBE with a certificate for another domain", &refused);
    let got = tokio::task::spawn_blocking(move || {
        let from_bob = |l: &str| l.starts_with("message from=bob@lync.test");
        let got: Vec<String> = (0..3)
            .map(|_| field(&juliet.expect(from_bob, T).unwrap(), "body").unwrap())
            .collect();
        assert!(
            juliet
                .expect(|l| l.contains("eve@lync.test"), Duration::from_secs(1))
                .is_err()
        );
        juliet.quit();
        got
    })
    .await
    .unwrap();
    assert_eq!(got, [TEXT1, TEXT2, TEXT3]);
    node.shutdown().await;
}

/// alice subscribes to carol (two fedgate nodes), carol approves, alice sees her
/// available.
fn alice_watches_carol(alice: &mut XmppClient, carol: &mut XmppClient) {
    alice.command("subscribe carol@fedgate-b.test", T).unwrap();
    carol
        .expect(|l| l == "subscribe from=alice@fedgate-a.test", T)
        .unwrap();
    carol.command("approve alice@fedgate-a.test", T).unwrap();
    carol_available_at_alice(alice);
}

fn carol_available_at_alice(alice: &mut XmppClient) {
    let p = alice
        .expect(
            |l| {
                l.starts_with("presence from=carol@fedgate-b.test")
                    && field(l, "type").as_deref() == Some("available")
            },
            T,
        )
        .unwrap();
    assert_eq!(field(&p, "show").as_deref(), Some(""), "{p}");
}

/// carol's dnd: Busy on the SIP side (Table 3), Away "Busy" at alice (Table 1).
fn carol_dnd_is_busy_at_alice(alice: &mut XmppClient, carol: &mut XmppClient) {
    carol.command("presence dnd", T).unwrap();
    let p = alice
        .expect(
            |l| {
                l.starts_with("presence from=carol@fedgate-b.test")
                    && field(l, "status").as_deref() == Some("Busy")
            },
            T,
        )
        .unwrap();
    assert_eq!(field(&p, "show").as_deref(), Some("away"), "{p}");
}

/// Issue 8, test 5: two fedgate deployments as SIP federation partners over mutual TLS:
/// subscriptions and presence both ways (carol's dnd reaches alice as Away "Busy":
/// Table 3 then Table 1), and messages both ways in one session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_two_fedgate_nodes_over_mutual_tls() {
    logs();
    if !peers_or_skip(&[SLIXMPP]) {
        return;
    }
    let leases = lease(&[A.1, B.1]).await;
    let SipPair {
        a,
        b,
        mut alice,
        mut carol,
        dirs: _dirs,
        ..
    } = sip_pair(&[]).await;
    let run = tokio::task::spawn_blocking(move || {
        alice_watches_carol(&mut alice, &mut carol);
        // carol watches alice.
        carol.command("subscribe alice@fedgate-a.test", T).unwrap();
        alice
            .expect(|l| l == "subscribe from=carol@fedgate-b.test", T)
            .unwrap();
        alice.command("approve carol@fedgate-b.test", T).unwrap();
        carol
            .expect(
                |l| {
                    l.starts_with("presence from=alice@fedgate-a.test")
                        && field(l, "type").as_deref() == Some("available")
                },
                T,
            )
            .unwrap();
        carol_dnd_is_busy_at_alice(&mut alice, &mut carol);
        // alice's xa: Away on the SIP side, Away at carol.
        alice.command("presence xa", T).unwrap();
        let p = carol
            .expect(
                |l| {
                    l.starts_with("presence from=alice@fedgate-a.test")
                        && field(l, "show").as_deref() == Some("away")
                },
                T,
            )
            .unwrap();
        assert_eq!(field(&p, "type").as_deref(), Some("available"), "{p}");
        // Messages both ways.
        alice
            .command("send carol@fedgate-b.test hello carol, over SIP <&>", T)
            .unwrap();
        let m = carol
            .expect(|l| l.starts_with("message from=alice@fedgate-a.test"), T)
            .unwrap();
        assert_eq!(
            field(&m, "body").as_deref(),
            Some("hello carol, over SIP <&>")
        );
        carol
            .command("send alice@fedgate-a.test hi alice, same session", T)
            .unwrap();
        let m = alice
            .expect(|l| l.starts_with("message from=carol@fedgate-b.test"), T)
            .unwrap();
        assert_eq!(field(&m, "body").as_deref(), Some("hi alice, same session"));
        alice
            .command("send carol@fedgate-b.test and once more", T)
            .unwrap();
        let m = carol
            .expect(|l| l.starts_with("message from=alice@fedgate-a.test"), T)
            .unwrap();
        assert_eq!(field(&m, "body").as_deref(), Some("and once more"));
        alice.quit();
        carol.quit();
    });
    tokio::time::timeout(BOUND, run).await.unwrap().unwrap();
    a.shutdown().await;
    b.shutdown().await;
    drop(leases);
}

/// An outbound SIP subscription survives a restart of the node: juliet watches
/// bob@lync.test; the node stops; a node started on the same data folder subscribes
/// again by itself (from the store), before any client logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_outbound_subscription_reestablished_after_restart() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let serve = |port: u16| {
        serve_uas(
            "lync_notifier_uas.xml",
            SocketAddr::from((LO, port)),
            &["-timeout", "40s", "-timeout_error"],
        )
    };
    let first = free_port(LO).unwrap();
    let server = serve(first).await;
    let node = juliet_node(dir.path(), Some(SocketAddr::from((LO, first)))).await;
    let mut juliet = login_juliet(&node);
    tokio::task::spawn_blocking(move || {
        juliet.command("subscribe bob@lync.test", T).unwrap();
        juliet
            .expect(
                |l| l.starts_with("presence from=bob@lync.test type=subscribed"),
                T,
            )
            .unwrap();
        juliet.quit();
    })
    .await
    .unwrap();
    assert_uas_passed(
        "lync_notifier_uas (before the restart)",
        server,
        Duration::from_secs(40),
    )
    .await;
    node.shutdown().await;

    // Same store, Lync now at another address; nobody logs in.
    let second = free_port(LO).unwrap();
    let server = serve(second).await;
    let node = start(
        config(
            dir.path(),
            &tcp_listener(),
            Some(SocketAddr::from((LO, second))),
            "[tls]\ngenerate = true",
        ),
        &[],
    )
    .await;
    assert_uas_passed(
        "lync_notifier_uas (after the restart)",
        server,
        Duration::from_secs(40),
    )
    .await;
    node.shutdown().await;
}

/// A watcher's subscription survives a restart of the notifier's node: alice
/// (fedgate-a.test) watches carol (fedgate-b.test) over SIP; B stops (alice sees carol
/// unavailable) and a node started on B's store takes the subscription dialog up again
/// (no new SUBSCRIBE: A's refresh is an hour away): when carol logs in, alice sees her
/// available, through a NOTIFY in the old dialog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_watcher_dialog_resumed_after_the_notifier_restarts() {
    logs();
    if !peers_or_skip(&[SLIXMPP]) {
        return;
    }
    let leases = lease(&[A.1, B.1]).await;
    let SipPair {
        a,
        b,
        mut alice,
        mut carol,
        b_config,
        dirs: _dirs,
    } = sip_pair(&[]).await;
    let before = tokio::task::spawn_blocking(move || {
        alice_watches_carol(&mut alice, &mut carol);
        carol.quit();
        alice
    });
    let mut alice = tokio::time::timeout(BOUND, before).await.unwrap().unwrap();
    b.shutdown().await;
    let alice = tokio::task::spawn_blocking(move || {
        alice
            .expect(
                |l| {
                    l.starts_with("presence from=carol@fedgate-b.test")
                        && field(l, "type").as_deref() == Some("unavailable")
                },
                T,
            )
            .unwrap();
        alice
    })
    .await
    .unwrap();

    let b = start(b_config, &[]).await;
    let mut carol = login(&b, "carol@fedgate-b.test", "carol-pw");
    let after = tokio::task::spawn_blocking(move || {
        let mut alice = alice;
        carol_available_at_alice(&mut alice);
        carol_dnd_is_busy_at_alice(&mut alice, &mut carol);
        alice.quit();
        carol.quit();
    });
    tokio::time::timeout(BOUND, after).await.unwrap().unwrap();
    a.shutdown().await;
    b.shutdown().await;
    drop(leases);
}

/// Group chat with a SIP contact is refused with a clear error (the seed: no three-way
/// session with a SIP contact): a `groupchat` message and a XEP-0249 room invitation to
/// bob@lync.test come back `feature-not-implemented` with a text; nothing goes out
/// (no SIP peer is configured to receive anything). No peer process needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_group_chat_with_a_sip_contact_is_refused() {
    logs();
    use fedgate_xmpp::{ElementBuilder, FullJid, ns};
    let dir = tempfile::tempdir().unwrap();
    let node = juliet_node(dir.path(), None).await;
    let full = FullJid::parse("juliet@fedgate-a.test/t").unwrap();
    let mut reg = node.router().register(full.clone());
    let groupchat = ElementBuilder::new("message", ns::CLIENT)
        .attr("from", full.to_string())
        .attr("to", "bob@lync.test")
        .attr("type", "groupchat")
        .attr("id", "g1")
        .child(ElementBuilder::new("body", ns::CLIENT).text("hello room"))
        .build();
    let invite = ElementBuilder::new("message", ns::CLIENT)
        .attr("from", full.to_string())
        .attr("to", "bob@lync.test")
        .attr("id", "g2")
        .child(
            ElementBuilder::new("x", "jabber:x:conference")
                .attr("jid", "room@conference.fedgate-a.test")
                .build(),
        )
        .build();
    for (el, id) in [(groupchat, "g1"), (invite, "g2")] {
        let out = node.router().handle_from_client(reg.id, el).await;
        let err = match out.replies.into_iter().next() {
            Some(e) => e,
            None => tokio::time::timeout(Duration::from_secs(5), reg.rx.recv())
                .await
                .unwrap()
                .unwrap(),
        };
        assert_eq!(err.attr("type"), Some("error"), "{err}");
        assert_eq!(err.attr("id"), Some(id), "{err}");
        assert_eq!(err.attr("from"), Some("bob@lync.test"), "{err}");
        let e = err.get_child("error", ns::CLIENT).unwrap();
        assert!(
            e.get_child("feature-not-implemented", ns::STANZA_ERRORS)
                .is_some(),
            "{err}"
        );
        let text = e.get_child("text", ns::STANZA_ERRORS).unwrap().text();
        assert!(text.contains("group chat"), "{text}");
    }
    node.shutdown().await;
}

/// RFC 7247 errors, SIP → XMPP: juliet's message to a Lync user whose INVITE is
/// answered 480 comes back `recipient-unavailable`; her subscription to a user the
/// Lync domain answers 404 comes back as a presence error `item-not-found`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_failures_become_rfc7247_stanza_errors() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(LO).unwrap();
    let uas = SocketAddr::from((LO, port));
    let serve =
        move |name: &'static str| serve_uas(name, uas, &["-timeout", "30s", "-timeout_error"]);
    let server = serve("lync_gw_invite_480_uas.xml").await;
    let node = juliet_node(dir.path(), Some(uas)).await;
    let mut juliet = login_juliet(&node);
    let (mut juliet, e) = tokio::task::spawn_blocking(move || {
        juliet
            .command("send bob@lync.test are you there?", T)
            .unwrap();
        let e = juliet
            .expect(|l| l.starts_with("error from=bob@lync.test"), T)
            .unwrap();
        (juliet, e)
    })
    .await
    .unwrap();
    assert_eq!(
        field(&e, "condition").as_deref(),
        Some("recipient-unavailable"),
        "{e}"
    );
    assert_uas_passed("lync_gw_invite_480_uas", server, Duration::from_secs(30)).await;

    let server = serve("lync_gw_subscribe_404_uas.xml").await;
    let e = tokio::task::spawn_blocking(move || {
        juliet.command("subscribe nobody@lync.test", T).unwrap();
        let e = juliet
            .expect(|l| l.starts_with("error from=nobody@lync.test"), T)
            .unwrap();
        juliet.quit();
        e
    })
    .await
    .unwrap();
    assert_eq!(
        field(&e, "condition").as_deref(),
        Some("item-not-found"),
        "{e}"
    );
    assert_uas_passed("lync_gw_subscribe_404_uas", server, Duration::from_secs(30)).await;
    node.shutdown().await;
}
