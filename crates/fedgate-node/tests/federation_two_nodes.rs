//! Two in-process fedgate nodes federating over XMPP s2s on loopback (fedgate-a.test on
//! 127.0.0.10, fedgate-b.test on 127.0.0.11), driven by the `two_nodes` example's
//! [`run`](two_nodes::run), plus the family mapping and the inbound policy end to end.
//! Both addresses are leased ([`fedgate_testkit::IpLease`]), so these tests run one at
//! a time with the other users of those addresses.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

#[allow(dead_code, unreachable_pub)] // the example's `main` is not used here
#[path = "../examples/two_nodes.rs"]
mod two_nodes;

mod common;

use std::time::{Duration, Instant};

use fedgate_policy::XmppMode;
use fedgate_testkit::{DnsRecord, Dnsmasq, SLIXMPP, field, peers_or_skip};
use two_nodes::{A, B, Crossed, Options};

fn must(c: &Crossed, who: &str, prefix: &str) -> String {
    c.find(who, prefix)
        .unwrap_or_else(|| panic!("{who} never got `{prefix}…`: {:#?}", c.events))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federation_two_nodes_presence_and_messages_cross() {
    if !peers_or_skip(&[SLIXMPP]) {
        return;
    }
    let t0 = Instant::now();
    let c = two_nodes::run(Options::default()).await.unwrap();
    eprintln!("two nodes: {:?}", t0.elapsed());
    let (alice, bob) = ("alice@fedgate-a.test", "bob@fedgate-a.test");
    let (carol, dave) = ("carol@fedgate-b.test", "dave@fedgate-b.test");
    must(&c, carol, "subscribe from=alice@fedgate-a.test");
    must(&c, alice, "subscribe from=carol@fedgate-b.test");
    // `xmpp` family both ways: presence unchanged (show and status travel).
    let p = must(&c, alice, "presence from=carol@fedgate-b.test/");
    assert_eq!(field(&p, "type").as_deref(), Some("available"), "{p}");
    let away = c
        .events
        .iter()
        .find(|(w, l)| w == alice && l.contains("status=In a meeting"))
        .map(|(_, l)| l.clone())
        .unwrap();
    assert_eq!(field(&away, "show").as_deref(), Some("away"), "{away}");
    let dnd = c
        .events
        .iter()
        .find(|(w, l)| w == carol && l.contains("show=dnd"))
        .map(|(_, l)| l.clone());
    assert!(dnd.is_some(), "{:#?}", c.events);
    let m = must(&c, carol, "message from=alice@fedgate-a.test/");
    assert_eq!(
        field(&m, "body").as_deref(),
        Some("hello carol, from node A <&>")
    );
    let m = must(&c, alice, "message from=carol@fedgate-b.test/");
    assert_eq!(field(&m, "body").as_deref(), Some("hi alice, from node B"));
    let m = must(&c, dave, "message from=bob@fedgate-a.test/");
    assert_eq!(field(&m, "body").as_deref(), Some("ping dave"));
    let m = must(&c, bob, "message from=dave@fedgate-b.test/");
    assert_eq!(field(&m, "body").as_deref(), Some("pong bob"));
    // Outbound to a domain that is not federated: not-allowed (RFC 6120 §8.3.3.11).
    let e = must(&c, alice, "error from=someone@elsewhere.test");
    assert_eq!(
        field(&e, "condition").as_deref(),
        Some("not-allowed"),
        "{e}"
    );
}

/// Node A maps fedgate-b.test's users as `webex`: carol's Away "In a meeting" reaches
/// alice as Available "In a meeting" (Table 5 row 3); alice's dnd reaches carol as dnd
/// (Table 7 row 2; node B maps nothing, `xmpp` family).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federation_two_nodes_webex_family_is_mapped() {
    if !peers_or_skip(&[SLIXMPP]) {
        return;
    }
    let t0 = Instant::now();
    let c = two_nodes::run(Options {
        b_family_on_a: "webex",
    })
    .await
    .unwrap();
    eprintln!("two nodes (webex): {:?}", t0.elapsed());
    let meeting = c
        .events
        .iter()
        .find(|(w, l)| w == "alice@fedgate-a.test" && l.contains("status=In a meeting"))
        .map(|(_, l)| l.clone())
        .unwrap();
    assert_eq!(field(&meeting, "show").as_deref(), Some(""), "{meeting}");
    assert_eq!(field(&meeting, "type").as_deref(), Some("available"));
    assert!(
        c.events
            .iter()
            .any(|(w, l)| w == "carol@fedgate-b.test" && l.contains("show=dnd")),
        "{:#?}",
        c.events
    );
}

/// Node B deny-lists fedgate-a.test (`policy.xmpp_mode = "deny-listed"`), and finds A's
/// server through DNS (dnsmasq) to verify its dialback key. A message from alice is
/// answered `service-unavailable`; her subscription request never reaches carol; and
/// carol's message to alice is refused `not-allowed` by node B itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federation_inbound_from_denied_domain_is_refused() {
    if !peers_or_skip(&[SLIXMPP, "dnsmasq"]) {
        return;
    }
    let leases = common::lease(&[A.1, B.1]).await;
    let dns = tokio::task::spawn_blocking(|| {
        Dnsmasq::start(B.1, 5353, &[DnsRecord::a("fedgate-a.test", A.1)]).unwrap()
    })
    .await
    .unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = two_nodes::start(
        two_nodes::config(A, B, "xmpp", dir_a.path()).unwrap(),
        &[("alice", "alice-pw")],
    )
    .await
    .unwrap();
    let mut cfg_b = two_nodes::config(B, A, "xmpp", dir_b.path()).unwrap();
    cfg_b.federation.domain.clear();
    cfg_b.policy.xmpp_mode = XmppMode::DenyListed;
    cfg_b.policy.deny = vec![A.0.into()];
    cfg_b.dns.nameservers = vec![dns.addr().to_string()];
    let b = two_nodes::start(cfg_b, &[("carol", "carol-pw")])
        .await
        .unwrap();
    let (pa, pb) = (a.c2s_addr().unwrap().port(), b.c2s_addr().unwrap().port());
    let t = Duration::from_secs(20);
    tokio::task::spawn_blocking(move || {
        let mut alice = two_nodes::login("alice@fedgate-a.test", "alice-pw", A.1, pa).unwrap();
        let mut carol = two_nodes::login("carol@fedgate-b.test", "carol-pw", B.1, pb).unwrap();
        alice.command("subscribe carol@fedgate-b.test", t).unwrap();
        alice
            .command("send carol@fedgate-b.test knock knock", t)
            .unwrap();
        let e = alice
            .expect(|l| l.starts_with("error from=carol@fedgate-b.test"), t)
            .unwrap();
        assert_eq!(
            field(&e, "condition").as_deref(),
            Some("service-unavailable"),
            "{e}"
        );
        // The subscription request went first on the same stream, so it has been
        // processed (and dropped) by now: carol got nothing from alice.
        let got = carol.expect(
            |l| l.contains("alice@fedgate-a.test"),
            Duration::from_secs(1),
        );
        assert!(got.is_err(), "reached carol: {got:?}");
        // B refuses to send to a deny-listed domain.
        carol
            .command("send alice@fedgate-a.test are you there?", t)
            .unwrap();
        let e = carol
            .expect(|l| l.starts_with("error from=alice@fedgate-a.test"), t)
            .unwrap();
        assert_eq!(
            field(&e, "condition").as_deref(),
            Some("not-allowed"),
            "{e}"
        );
        assert!(
            !alice.history().iter().any(|l| l.starts_with("message ")),
            "{:?}",
            alice.history()
        );
        alice.quit();
        carol.quit();
    })
    .await
    .unwrap();
    a.shutdown().await;
    b.shutdown().await;
    drop(dns);
    drop(leases);
}
