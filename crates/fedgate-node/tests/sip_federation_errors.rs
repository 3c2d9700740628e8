//! SIP federation end to end, the XMPP → SIP direction of errors and typing (issues 3
//! and 8): a whole fedgate node (`Node::start` with `sip.enabled = true`), SIPp playing
//! a Lync federation partner over plain TCP, and a slixmpp client as the local user.
//!
//! * A MESSAGE in a session that the router cannot deliver gets the RFC 7247 §6.1
//!   status of the router's error (the SIP UA lets the gateway answer it), and one the
//!   router stored offline gets 200.
//! * Typing indications cross both ways: Lync's is-composing MESSAGE reaches the client
//!   as a XEP-0085 `<composing/>`, the client's `<composing/>` reaches Lync as an
//!   is-composing MESSAGE in the same session.
//!
//! Scenarios: `tests/sipp/lync_gw_im_refused_uac.xml`, `tests/sipp/lync_gw_im_typing_uac.xml`.
//! Every SIPp wait is bounded by its scenario and `-timeout`; every client wait by `T`;
//! each test as a whole by `BOUND`. Real time (SIPp and slixmpp are real processes),
//! loopback only (the node on 127.0.0.10, SIPp on 127.0.0.1).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use common::{login, scenario, sip_addr, start};
use fedgate_node::config::{NodeConfig, SipTransportKind};
use fedgate_node::core::Node;
use fedgate_testkit::{SipTransport as SippTransport, Sipp, SippResult, XmppClient, field};

const A: (&str, Ipv4Addr) = ("fedgate-a.test", Ipv4Addr::new(127, 0, 0, 10));
/// One client wait.
const T: Duration = Duration::from_secs(20);
/// A whole test.
const BOUND: Duration = Duration::from_secs(120);

/// The node: SIP over TCP, `lync.test` a SIP-federated domain, offline queues of
/// `max_offline` messages.
fn config(dir: &Path, max_offline: usize) -> NodeConfig {
    let text = format!(
        r#"
        [node]
        name = "{me}"
        data_dir = "{dir}"
        domains = ["{me}"]
        [tls]
        generate = true
        [xmpp.s2s]
        enabled = false
        [xmpp.c2s]
        listen = "{ip}:0"
        [sip]
        enabled = true
        outbound_transport = "tcp"
        [[sip.listeners]]
        transport = "tcp"
        address = "{ip}:0"
        [[federation.domain]]
        name = "lync.test"
        protocol = "sip"
        [limits.store]
        max_offline_messages = {max_offline}
        "#,
        me = A.0,
        ip = A.1,
        dir = dir.display(),
    );
    NodeConfig::from_toml_str(&text).unwrap()
}

async fn start_juliet(cfg: NodeConfig) -> Node {
    start(cfg, &[("juliet", "juliet-pw")]).await
}

fn login_juliet(node: &Node) -> XmppClient {
    login(node, "juliet@fedgate-a.test", "juliet-pw")
}

/// Runs the SIPp UAC `name` (bob@lync.test calling juliet) against `to`.
fn run_uac(name: &'static str, to: SocketAddr) -> tokio::task::JoinHandle<SippResult> {
    tokio::task::spawn_blocking(move || {
        let args = [
            "-s",
            "juliet",
            "-timeout",
            "40s",
            "-timeout_error",
            "-key",
            "fedgate_domain",
            "fedgate-a.test",
            "-key",
            "lync_domain",
            "lync.test",
            "-key",
            "lync_user",
            "bob",
        ];
        Sipp::run(&scenario(name), to, SippTransport::Tcp, &args).unwrap()
    })
}

fn skip() -> bool {
    common::sip_peers_missing()
}

/// RFC 7247 §6.1 / RFC 7572: juliet is offline and her offline queue takes one
/// message. Lync's first MESSAGE is stored (200); the second is refused by the router
/// (`service-unavailable`), and SIPp must get 403 for it (note 5: never 503), not the
/// 200 the UA used to send before the gateway had routed it. When juliet logs in she
/// gets the stored text and only that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_message_refused_by_the_router_gets_the_rfc7247_status() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = start_juliet(config(dir.path(), 1)).await;
    let r = tokio::time::timeout(
        BOUND,
        run_uac(
            "lync_gw_im_refused_uac.xml",
            sip_addr(&node, SipTransportKind::Tcp),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(r.passed(), "lync_gw_im_refused_uac: SIPp failed: {r:#?}");

    let mut juliet = login_juliet(&node);
    let juliet = tokio::task::spawn_blocking(move || {
        let from_bob = |l: &str| l.starts_with("message from=bob@lync.test");
        let line = juliet.expect(from_bob, T).unwrap();
        assert_eq!(field(&line, "body").as_deref(), Some("Stored offline"));
        assert!(
            juliet.expect(from_bob, Duration::from_secs(1)).is_err(),
            "the refused message must not be delivered: {:#?}",
            juliet.history()
        );
        juliet
    })
    .await
    .unwrap();
    juliet.quit();
    node.shutdown().await;
}

/// RFC 3994 ↔ XEP-0085: Lync types (is-composing, active) → juliet's client gets
/// `<composing/>` from bob; juliet types back → Lync gets an is-composing MESSAGE with
/// `<state>active</state>` in the session Lync opened (the scenario checks it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_typing_indications_cross_both_ways() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = start_juliet(config(dir.path(), 100)).await;
    let mut juliet = login_juliet(&node);
    let uac = run_uac(
        "lync_gw_im_typing_uac.xml",
        sip_addr(&node, SipTransportKind::Tcp),
    );
    let client = tokio::task::spawn_blocking(move || {
        let line = juliet.expect(
            |l| l.starts_with("message from=bob@lync.test") && l.contains(" chatstate="),
            T,
        )?;
        assert_eq!(
            field(&line, "chatstate").as_deref(),
            Some("composing"),
            "{line}"
        );
        assert!(line.contains("type=chat"), "{line}");
        juliet.command("chatstate bob@lync.test composing", T)?;
        Ok::<_, fedgate_testkit::Error>(juliet)
    });
    let r = tokio::time::timeout(BOUND, uac).await.unwrap().unwrap();
    let juliet = client
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\nSIPp: {r:#?}"));
    assert!(r.passed(), "lync_gw_im_typing_uac: SIPp failed: {r:#?}");
    juliet.quit();
    node.shutdown().await;
}
