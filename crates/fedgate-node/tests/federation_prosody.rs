//! A fedgate node (fedgate-a.test on 127.0.0.10, started with `Node::start`, XMPP
//! federation from its configuration) federating with a real Prosody (prosody-a.test on
//! 127.0.0.2): a slixmpp client on each; subscriptions both ways, presence with show and
//! status both ways, a Jabber-style client's Busy (Table 6), blocking from the client
//! (XEP-0191), messages both ways. Prosody finds fedgate through `/etc/hosts`
//! (127.0.0.10:5269 by the A fallback); fedgate finds Prosody through a static target.
//!
//! Peers missing: skipped with a line on stderr, failed with FEDGATE_REQUIRE_PEERS=1.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::{hosts_and_lease_fedgate_a, start, xmpp_federation_toml};
use fedgate_node::config::NodeConfig;
use fedgate_testkit::{Prosody, SLIXMPP, XmppClient, field, hosts, peers_or_skip};

const T: Duration = Duration::from_secs(30);

fn config(dir: &std::path::Path) -> NodeConfig {
    let ip = hosts::FEDGATE_A.1;
    let sip = format!("[[sip.listeners]]\ntransport = \"tls\"\naddress = \"{ip}:0\"");
    let toml = xmpp_federation_toml("prosody-interop", dir, 0, hosts::PROSODY_A, &sip);
    NodeConfig::from_toml_str(&toml).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federation_prosody_subscribe_presence_messages() {
    if !peers_or_skip(&["prosody", "prosodyctl", SLIXMPP]) {
        return;
    }
    let lease = hosts_and_lease_fedgate_a().await;
    let dir = tempfile::tempdir().unwrap();
    let node = start(config(dir.path()), &[("alice", "alice-pw")]).await;
    let port = node.c2s_addr().unwrap().port();
    assert_eq!(node.s2s_addr().unwrap().port(), 5269);
    let t0 = Instant::now();
    tokio::task::spawn_blocking(move || {
        let step = |name: &str| eprintln!("{name}: {:?}", t0.elapsed());
        let pa = Prosody::start(hosts::PROSODY_A.0, hosts::PROSODY_A.1).unwrap();
        pa.register("bob", "bob-pw").unwrap();
        let mut bob = XmppClient::connect("bob@prosody-a.test", "bob-pw", pa.ip()).unwrap();
        let mut alice =
            XmppClient::connect_port("alice@fedgate-a.test", "alice-pw", hosts::FEDGATE_A.1, port)
                .unwrap();
        step("prosody up, both clients logged in");

        // alice (fedgate) asks, bob (Prosody) approves: alice sees bob.
        alice.command("subscribe bob@prosody-a.test", T).unwrap();
        bob.expect(|l| l == "subscribe from=alice@fedgate-a.test", T)
            .unwrap();
        bob.command("approve alice@fedgate-a.test", T).unwrap();
        let p = alice
            .expect(|l| l.starts_with("presence from=bob@prosody-a.test/"), T)
            .unwrap();
        assert_eq!(field(&p, "type").as_deref(), Some("available"), "{p}");
        step("fedgate → prosody subscription approved, presence back");

        // and the other way round.
        bob.command("subscribe alice@fedgate-a.test", T).unwrap();
        alice
            .expect(|l| l == "subscribe from=bob@prosody-a.test", T)
            .unwrap();
        alice.command("approve bob@prosody-a.test", T).unwrap();
        bob.expect(|l| l.starts_with("presence from=alice@fedgate-a.test/"), T)
            .unwrap();
        step("prosody → fedgate subscription approved, presence back");

        // presence away, with status, both ways (`xmpp` family: unchanged).
        bob.command("presence away In a meeting", T).unwrap();
        let p = alice
            .expect(
                |l| l.starts_with("presence from=bob@prosody-a.test/") && l.contains("show=away"),
                T,
            )
            .unwrap();
        assert_eq!(field(&p, "status").as_deref(), Some("In a meeting"), "{p}");
        alice.command("presence away Out to lunch", T).unwrap();
        let p = bob
            .expect(
                |l| l.starts_with("presence from=alice@fedgate-a.test/") && l.contains("show=away"),
                T,
            )
            .unwrap();
        assert_eq!(field(&p, "status").as_deref(), Some("Out to lunch"), "{p}");
        step("presence away both ways");

        // alice as a Jabber-style client (issue 7): Busy goes to the `xmpp` family by
        // Table 6 as Away (a plain `dnd` would stay Do Not Disturb by Table 7).
        alice.command("jabber busy", T).unwrap();
        let p = bob
            .expect(|l| l.starts_with("presence from=alice@fedgate-a.test/"), T)
            .unwrap();
        assert_eq!(field(&p, "show").as_deref(), Some("away"), "{p}");
        alice.command("presence dnd", T).unwrap();
        let p = bob
            .expect(|l| l.starts_with("presence from=alice@fedgate-a.test/"), T)
            .unwrap();
        assert_eq!(field(&p, "show").as_deref(), Some("dnd"), "{p}");
        step("jabber-style Busy by Table 6, dnd by Table 7");

        // alice blocks bob from her client (XEP-0191): he sees her unavailable; her
        // next change does not reach him; unblocked, he sees her again.
        alice.command("block bob@prosody-a.test", T).unwrap();
        let p = bob
            .expect(|l| l.starts_with("presence from=alice@fedgate-a.test/"), T)
            .unwrap();
        assert_eq!(field(&p, "type").as_deref(), Some("unavailable"), "{p}");
        alice.command("presence xa", T).unwrap();
        assert!(
            bob.expect(
                |l| l.starts_with("presence from=alice@fedgate-a.test/"),
                Duration::from_secs(2)
            )
            .is_err(),
            "a blocked contact got presence"
        );
        alice.command("unblock bob@prosody-a.test", T).unwrap();
        let p = bob
            .expect(|l| l.starts_with("presence from=alice@fedgate-a.test/"), T)
            .unwrap();
        assert_eq!(field(&p, "show").as_deref(), Some("xa"), "{p}");
        step("XEP-0191 block and unblock from the client");

        // messages both ways.
        alice
            .command("send bob@prosody-a.test hello from fedgate <&>", T)
            .unwrap();
        let m = bob
            .expect(|l| l.starts_with("message from=alice@fedgate-a.test/"), T)
            .unwrap();
        assert_eq!(field(&m, "body").as_deref(), Some("hello from fedgate <&>"));
        bob.command("send alice@fedgate-a.test hello from prosody", T)
            .unwrap();
        let m = alice
            .expect(|l| l.starts_with("message from=bob@prosody-a.test/"), T)
            .unwrap();
        assert_eq!(field(&m, "body").as_deref(), Some("hello from prosody"));
        step("messages both ways");
        alice.command("roster", T).unwrap();
        let item = alice
            .expect(|l| l.starts_with("roster jid=bob@prosody-a.test "), T)
            .unwrap();
        assert_eq!(
            field(&item, "subscription").as_deref(),
            Some("both"),
            "{item}"
        );
        alice.quit();
        bob.quit();
        drop(pa);
    })
    .await
    .unwrap();
    node.shutdown().await;
    drop(lease);
}
