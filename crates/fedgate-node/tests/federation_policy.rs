//! The per-user policy on the federation paths, end to end with real peers: a fedgate
//! node (fedgate-a.test on 127.0.0.10), a permitted Prosody (prosody-a.test on
//! 127.0.0.2, static target) and a Prosody that is not permitted (prosody-b.test on
//! 127.0.0.4, found through dnsmasq on 127.0.0.10:5353 for dialback only).
//!
//! * a subscription from the domain that is not permitted never reaches the local
//!   client (its message is answered `service-unavailable`, so the stream worked);
//! * a watcher the user denies is politely blocked: it gets `subscribed`, then only
//!   ever sees the user unavailable (also after logging in again), and the deny is
//!   stored as a block rule, so its next request is not asked again;
//! * `[[policy.user]]` rules from the configuration: an allowed watcher is accepted
//!   without asking and sees the real presence; a blocked one is accepted without
//!   asking and sees the user unavailable;
//! * a domain configured for SIP cannot be added for XMPP (configuration and engine).
//!
//! Peers missing: skipped with a line on stderr, failed with FEDGATE_REQUIRE_PEERS=1.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{start, xmpp_federation_toml};
use fedgate_node::config::NodeConfig;
use fedgate_policy::{
    ConfigError, Domain, PolicyError, Rule, RuleTarget, UserAddress, XmppListing,
};
use fedgate_testkit::{
    DnsRecord, Dnsmasq, IpLease, Prosody, SLIXMPP, XmppClient, field, hosts, peers_or_skip,
};

const T: Duration = Duration::from_secs(30);
/// How long a client is watched for something that must not come.
const QUIET: Duration = Duration::from_secs(2);

fn config(dir: &std::path::Path, dns: &str) -> NodeConfig {
    let (fedgate, prosody) = (hosts::FEDGATE_A.0, hosts::PROSODY_A.0);
    let extra = format!(
        r#"
        [dns]
        nameservers = ["{dns}"]
        [[federation.domain]]
        name = "lync.test"
        protocol = "sip"
        [[policy.user]]
        user = "alice@{fedgate}"
        allow = ["dave@{prosody}"]
        block = ["eve@{prosody}"]
        "#
    );
    let toml = xmpp_federation_toml("policy", dir, 0, hosts::PROSODY_A, &extra);
    NodeConfig::from_toml_str(&toml).unwrap()
}

/// No line matching `p` arrives within [`QUIET`], and none came before that the test
/// has not already taken.
fn never(c: &mut XmppClient, what: &str, p: impl Fn(&str) -> bool) {
    let got = c.expect(&p, QUIET);
    assert!(got.is_err(), "{what}: {got:?}\n{:?}", c.history());
}

fn available_from(who: &str) -> impl Fn(&str) -> bool + '_ {
    move |l: &str| {
        l.starts_with(&format!("presence from={who}/"))
            && field(l, "type").as_deref() == Some("available")
    }
}

#[test]
fn federation_policy_sip_domain_cannot_be_added_for_xmpp() {
    let err = NodeConfig::from_toml_str(
        r#"
        [node]
        domains = ["local.test"]
        [tls]
        generate = true
        [[federation.domain]]
        name = "lync.test"
        protocol = "sip"
        [[federation.domain]]
        name = "lync.test"
        protocol = "xmpp"
        "#,
    )
    .unwrap()
    .validate()
    .unwrap_err()
    .to_string();
    assert!(err.contains("federation.domain[1]"), "{err}");
    assert!(err.contains("SIP"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federation_policy_end_to_end() {
    if !peers_or_skip(&["prosody", "prosodyctl", "dnsmasq", SLIXMPP]) {
        return;
    }
    let (lease, dns) = tokio::task::spawn_blocking(|| {
        hosts::ensure_test_hosts().unwrap();
        let lease = IpLease::acquire(hosts::FEDGATE_A.1, Duration::from_secs(600)).unwrap();
        let dns = Dnsmasq::start(
            hosts::FEDGATE_A.1,
            5353,
            &[DnsRecord::a(hosts::PROSODY_B.0, hosts::PROSODY_B.1)],
        )
        .unwrap();
        (lease, dns)
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = start(
        config(dir.path(), &dns.addr().to_string()),
        &[("alice", "alice-pw")],
    )
    .await;
    let alice_addr: UserAddress = "alice@fedgate-a.test".parse().unwrap();
    let port = node.c2s_addr().unwrap().port();
    let policy = node.router().user_policy().unwrap();

    // A domain federated over SIP cannot be put on an XMPP list.
    let lync: Domain = "lync.test".parse().unwrap();
    let r = policy
        .call(move |p| {
            p.add_xmpp_domain(
                fedgate_policy::Timestamp::from_millis(1),
                lync,
                XmppListing::Allow,
            )
        })
        .await;
    assert!(
        matches!(
            r,
            Err(fedgate_node::core::UserPolicyError::Policy(
                PolicyError::Config(ConfigError::ConfiguredAsSip { .. })
            ))
        ),
        "{r:?}"
    );

    let (pa, pb, alice) = tokio::task::spawn_blocking(move || {
        let pa = Prosody::start(hosts::PROSODY_A.0, hosts::PROSODY_A.1).unwrap();
        for u in ["bob", "dave", "eve"] {
            pa.register(u, "pw").unwrap();
        }
        let pb = Prosody::start(hosts::PROSODY_B.0, hosts::PROSODY_B.1).unwrap();
        pb.register("mallory", "pw").unwrap();
        let alice =
            XmppClient::connect_port("alice@fedgate-a.test", "alice-pw", hosts::FEDGATE_A.1, port)
                .unwrap();
        (pa, pb, alice)
    })
    .await
    .unwrap();

    // 1. Not permitted: never reaches alice.
    let (pa, pb, alice) = tokio::task::spawn_blocking(move || {
        let mut alice = alice;
        let mut mallory = XmppClient::connect("mallory@prosody-b.test", "pw", pb.ip()).unwrap();
        mallory
            .command("subscribe alice@fedgate-a.test", T)
            .unwrap();
        mallory
            .command("send alice@fedgate-a.test let me in", T)
            .unwrap();
        let e = mallory
            .expect(|l| l.starts_with("error from=alice@fedgate-a.test"), T)
            .unwrap();
        assert_eq!(
            field(&e, "condition").as_deref(),
            Some("service-unavailable"),
            "{e}"
        );
        // The request went first on the same stream: it has been handled by now.
        never(&mut alice, "mallory reached alice", |l| {
            l.contains("mallory@")
        });
        mallory.quit();
        (pa, pb, alice)
    })
    .await
    .unwrap();

    // 2. bob asks, alice denies: a polite block.
    let (pa, alice) = tokio::task::spawn_blocking(move || {
        let mut alice = alice;
        let mut bob = XmppClient::connect("bob@prosody-a.test", "pw", pa.ip()).unwrap();
        bob.command("subscribe alice@fedgate-a.test", T).unwrap();
        alice
            .expect(|l| l == "subscribe from=bob@prosody-a.test", T)
            .unwrap();
        alice.command("deny bob@prosody-a.test", T).unwrap();
        let p = bob
            .expect(|l| l.starts_with("presence from=alice@fedgate-a.test"), T)
            .unwrap();
        assert_eq!(field(&p, "type").as_deref(), Some("subscribed"), "{p}");
        let p = bob
            .expect(|l| l.starts_with("presence from=alice@fedgate-a.test"), T)
            .unwrap();
        assert_eq!(field(&p, "type").as_deref(), Some("unavailable"), "{p}");
        // alice changes her presence: bob sees nothing of it.
        alice.command("presence away at lunch", T).unwrap();
        alice.command("presence available", T).unwrap();
        never(
            &mut bob,
            "bob saw alice",
            available_from("alice@fedgate-a.test"),
        );
        // bob logs in again: his server probes alice; he still sees her unavailable.
        bob.quit();
        let mut bob = XmppClient::connect("bob@prosody-a.test", "pw", pa.ip()).unwrap();
        let p = bob
            .expect(|l| l.starts_with("presence from=alice@fedgate-a.test"), T)
            .unwrap();
        assert_eq!(field(&p, "type").as_deref(), Some("unavailable"), "{p}");
        never(
            &mut bob,
            "bob saw alice after login",
            available_from("alice@fedgate-a.test"),
        );
        // The deny is stored: bob's next request is not asked again.
        bob.command("subscribe alice@fedgate-a.test", T).unwrap();
        never(&mut alice, "bob asked twice", |l| {
            l == "subscribe from=bob@prosody-a.test"
        });
        bob.quit();
        (pa, alice)
    })
    .await
    .unwrap();
    let bob_addr: UserAddress = "bob@prosody-a.test".parse().unwrap();
    let stored = policy.read(|p| {
        p.rules(&alice_addr)
            .and_then(|r| r.get(&RuleTarget::User(bob_addr.clone())))
    });
    assert_eq!(stored, Some(Rule::Block));

    // 3. Configured rules: dave allowed, eve blocked; alice is asked about neither.
    let alice = tokio::task::spawn_blocking(move || {
        let mut alice = alice;
        let mut dave = XmppClient::connect("dave@prosody-a.test", "pw", pa.ip()).unwrap();
        dave.command("subscribe alice@fedgate-a.test", T).unwrap();
        let p = dave
            .expect(|l| l.starts_with("presence from=alice@fedgate-a.test"), T)
            .unwrap();
        assert_eq!(field(&p, "type").as_deref(), Some("subscribed"), "{p}");
        dave.expect(available_from("alice@fedgate-a.test"), T)
            .unwrap();
        alice.command("presence dnd in a call", T).unwrap();
        let p = dave
            .expect(
                |l| l.starts_with("presence from=alice@fedgate-a.test/") && l.contains("show=dnd"),
                T,
            )
            .unwrap();
        assert_eq!(field(&p, "status").as_deref(), Some("in a call"), "{p}");

        let mut eve = XmppClient::connect("eve@prosody-a.test", "pw", pa.ip()).unwrap();
        eve.command("subscribe alice@fedgate-a.test", T).unwrap();
        let p = eve
            .expect(|l| l.starts_with("presence from=alice@fedgate-a.test"), T)
            .unwrap();
        assert_eq!(field(&p, "type").as_deref(), Some("subscribed"), "{p}");
        let p = eve
            .expect(|l| l.starts_with("presence from=alice@fedgate-a.test"), T)
            .unwrap();
        assert_eq!(field(&p, "type").as_deref(), Some("unavailable"), "{p}");
        alice.command("presence available back", T).unwrap();
        dave.expect(
            |l| l.starts_with("presence from=alice@fedgate-a.test/") && l.contains("status=back"),
            T,
        )
        .unwrap();
        never(
            &mut eve,
            "eve saw alice",
            available_from("alice@fedgate-a.test"),
        );
        never(&mut alice, "alice was asked", |l| {
            l.starts_with("subscribe from=")
        });
        dave.quit();
        eve.quit();
        drop(pa);
        drop(pb);
        alice
    })
    .await
    .unwrap();
    alice.quit();
    node.shutdown().await;
    drop(dns);
    drop(lease);
}

#[test]
fn federation_policy_user_rules_are_validated_and_typed() {
    let base = r#"
        [node]
        domains = ["local.test"]
        [tls]
        generate = true
    "#;
    let v = NodeConfig::from_toml_str(&format!(
        "{base}\n[[policy.user]]\nuser = \"alice@local.test\"\nallow = [\"bob@x.test\", \"partner.test\"]\nblock = [\"eve@x.test\"]\n"
    ))
    .unwrap()
    .validate()
    .unwrap();
    let alice: UserAddress = "alice@local.test".parse().unwrap();
    assert_eq!(
        v.user_rules,
        vec![
            (
                alice.clone(),
                RuleTarget::User("bob@x.test".parse().unwrap()),
                Rule::Allow
            ),
            (
                alice.clone(),
                RuleTarget::Domain("partner.test".parse().unwrap()),
                Rule::Allow
            ),
            (
                alice,
                RuleTarget::User("eve@x.test".parse().unwrap()),
                Rule::Block
            ),
        ]
    );
    for (extra, key) in [
        ("user = \"alice@elsewhere.test\"", "policy.user[0].user"),
        (
            "user = \"alice@local.test\"\nblock = [\"not a domain!\"]",
            "policy.user[0].block[0]",
        ),
        (
            "user = \"alice@local.test\"\nallow = [\"@x.test\"]",
            "policy.user[0].allow[0]",
        ),
    ] {
        let err = NodeConfig::from_toml_str(&format!("{base}\n[[policy.user]]\n{extra}\n"))
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{extra}: {err}");
    }
}
