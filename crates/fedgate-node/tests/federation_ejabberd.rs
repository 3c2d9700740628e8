//! A fedgate node (fedgate-a.test on 127.0.0.10, started with `Node::start`) federating
//! with a real ejabberd (ejabberd-c.test on 127.0.0.3): a slixmpp client on each;
//! subscriptions both ways (the one towards fedgate decided by the per-user policy:
//! pending, asked, approved), Away, Extended Away and Do Not Disturb both ways
//! (`xmpp` family: Table 7's `xmpp-fed` column, every state shown as sent), messages
//! both ways. ejabberd finds fedgate through `/etc/hosts` (127.0.0.10:5269); fedgate
//! finds ejabberd through a static target.
//!
//! Peers missing: skipped with a line on stderr, failed with FEDGATE_REQUIRE_PEERS=1.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::{hosts_and_lease_fedgate_a, start, xmpp_federation_toml};
use fedgate_node::config::NodeConfig;
use fedgate_policy::{SubscriptionKey, SubscriptionState, UserAddress};
use fedgate_testkit::{Ejabberd, SLIXMPP, XmppClient, field, hosts, peers_or_skip};

const T: Duration = Duration::from_secs(30);

fn config(dir: &std::path::Path) -> NodeConfig {
    let toml = xmpp_federation_toml("ejabberd-interop", dir, 0, hosts::EJABBERD_C, "");
    NodeConfig::from_toml_str(&toml).unwrap()
}

/// Waits for a presence from `from` with `show`, returns the line.
fn presence_with(c: &mut XmppClient, from: &str, show: &str) -> String {
    let prefix = format!("presence from={from}/");
    let want = format!("show={show} ");
    c.expect(|l| l.starts_with(&prefix) && l.contains(&want), T)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federation_ejabberd_subscribe_presence_messages() {
    if !peers_or_skip(&["ejabberdctl", "erl", "epmd", SLIXMPP]) {
        return;
    }
    let lease = hosts_and_lease_fedgate_a().await;
    let dir = tempfile::tempdir().unwrap();
    let node = start(config(dir.path()), &[("alice", "alice-pw")]).await;
    let a: UserAddress = "alice@fedgate-a.test".parse().unwrap();
    let port = node.c2s_addr().unwrap().port();
    let policy = node.router().user_policy().unwrap();
    let t0 = Instant::now();
    let (ej, mut alice, mut bob) = tokio::task::spawn_blocking(move || {
        let ej = Ejabberd::start(hosts::EJABBERD_C.0, hosts::EJABBERD_C.1).unwrap();
        ej.register("bob", "bob-pw").unwrap();
        let bob = XmppClient::connect("bob@ejabberd-c.test", "bob-pw", ej.ip()).unwrap();
        let alice =
            XmppClient::connect_port("alice@fedgate-a.test", "alice-pw", hosts::FEDGATE_A.1, port)
                .unwrap();
        (ej, alice, bob)
    })
    .await
    .unwrap();
    eprintln!("ejabberd up, both clients logged in: {:?}", t0.elapsed());

    // ejabberd → fedgate: bob asks; the policy has no rule: pending, alice is asked.
    let (alice, bob) = tokio::task::spawn_blocking(move || {
        bob.command("subscribe alice@fedgate-a.test", T).unwrap();
        alice
            .expect(|l| l == "subscribe from=bob@ejabberd-c.test", T)
            .unwrap();
        (alice, bob)
    })
    .await
    .unwrap();
    let key = SubscriptionKey::inbound(a.clone(), "bob@ejabberd-c.test".parse().unwrap());
    assert_eq!(
        policy.read(|p| p.state(&key)),
        SubscriptionState::Pending,
        "the request is pending in the policy engine"
    );
    let (mut alice, mut bob) = tokio::task::spawn_blocking(move || {
        let (mut alice, mut bob) = (alice, bob);
        alice.command("approve bob@ejabberd-c.test", T).unwrap();
        bob.expect(|l| l.starts_with("presence from=alice@fedgate-a.test/"), T)
            .unwrap();
        (alice, bob)
    })
    .await
    .unwrap();
    assert_eq!(policy.read(|p| p.state(&key)), SubscriptionState::Active);
    eprintln!("ejabberd → fedgate approved: {:?}", t0.elapsed());

    tokio::task::spawn_blocking(move || {
        // fedgate → ejabberd: alice asks, bob approves.
        alice.command("subscribe bob@ejabberd-c.test", T).unwrap();
        bob.expect(|l| l == "subscribe from=alice@fedgate-a.test", T)
            .unwrap();
        bob.command("approve alice@fedgate-a.test", T).unwrap();
        let p = alice
            .expect(|l| l.starts_with("presence from=bob@ejabberd-c.test/"), T)
            .unwrap();
        assert_eq!(field(&p, "type").as_deref(), Some("available"), "{p}");
        eprintln!("fedgate → ejabberd approved: {:?}", t0.elapsed());

        // Away, Extended Away, Do Not Disturb, both ways, with status text.
        for (show, status) in [("away", "at lunch"), ("xa", "on holiday"), ("dnd", "busy")] {
            alice
                .command(&format!("presence {show} {status}"), T)
                .unwrap();
            let p = presence_with(&mut bob, "alice@fedgate-a.test", show);
            assert_eq!(field(&p, "status").as_deref(), Some(status), "{p}");
            bob.command(&format!("presence {show} {status} too"), T)
                .unwrap();
            let p = presence_with(&mut alice, "bob@ejabberd-c.test", show);
            assert_eq!(
                field(&p, "status").as_deref(),
                Some(&*format!("{status} too")),
                "{p}"
            );
        }
        eprintln!("presence both ways: {:?}", t0.elapsed());

        alice
            .command("send bob@ejabberd-c.test hello from fedgate <&>", T)
            .unwrap();
        let m = bob
            .expect(|l| l.starts_with("message from=alice@fedgate-a.test/"), T)
            .unwrap();
        assert_eq!(field(&m, "body").as_deref(), Some("hello from fedgate <&>"));
        bob.command("send alice@fedgate-a.test hello from ejabberd", T)
            .unwrap();
        let m = alice
            .expect(|l| l.starts_with("message from=bob@ejabberd-c.test/"), T)
            .unwrap();
        assert_eq!(field(&m, "body").as_deref(), Some("hello from ejabberd"));
        alice.command("roster", T).unwrap();
        let item = alice
            .expect(|l| l.starts_with("roster jid=bob@ejabberd-c.test "), T)
            .unwrap();
        assert_eq!(
            field(&item, "subscription").as_deref(),
            Some("both"),
            "{item}"
        );
        eprintln!("messages both ways: {:?}", t0.elapsed());
        alice.quit();
        bob.quit();
        drop(ej);
    })
    .await
    .unwrap();
    node.shutdown().await;
    drop(lease);
}
