//! Two slixmpp clients on one in-process node over c2s with STARTTLS (self-signed
//! certificate generated in the data folder): login, subscription both ways, presence
//! with show and status, messages both ways, offline storage and delivery at the next
//! login, wrong password refused, resource conflict (the newer session wins).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use fedgate_node::config::NodeConfig;
use fedgate_node::core::Node;
use fedgate_policy::UserAddress;
use fedgate_store::{OfflineStore, StoreHandle};
use fedgate_testkit::{SLIXMPP, XmppClient, field, peers_or_skip};

const T: Duration = Duration::from_secs(15);
const DOMAIN: &str = "fedgate-a.test";

fn config(dir: &std::path::Path) -> NodeConfig {
    NodeConfig::from_toml_str(&format!(
        r#"
        [node]
        name = "c2s-test"
        data_dir = "{}"
        domains = ["{DOMAIN}"]
        [tls]
        generate = true
        [xmpp.s2s]
        enabled = false
        [xmpp.c2s]
        listen = "127.0.0.1:0"
        require_tls = true
        "#,
        dir.display()
    ))
    .unwrap()
}

async fn start(dir: &std::path::Path) -> Node {
    let v = config(dir).validate().unwrap();
    let tls = v.load_tls().unwrap();
    assert!(tls.as_ref().is_some_and(|t| t.generated));
    let node = Node::start(&v, tls.as_ref()).await.unwrap();
    for (u, p) in [("alice", "alice-pw"), ("bob", "bob-pw")] {
        let a: UserAddress = format!("{u}@{DOMAIN}").parse().unwrap();
        node.users().add_user(&a, p).await.unwrap();
    }
    node
}

fn offline_count(store: &StoreHandle, user: &str) -> usize {
    let u: UserAddress = user.parse().unwrap();
    store.call_blocking(move |s| s.offline_count(&u)).unwrap()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + T;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn login(jid: &str, pw: &str, port: u16) -> XmppClient {
    XmppClient::connect_port(jid, pw, Ipv4Addr::LOCALHOST, port).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c2s_two_local_users_subscribe_presence_messages_offline() {
    if !peers_or_skip(&[SLIXMPP]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let port = node.c2s_addr().unwrap().port();
    let store = node.router().store().clone();
    let t0 = Instant::now();
    tokio::task::spawn_blocking(move || {
        let step = |name: &str| eprintln!("{name}: {:?}", t0.elapsed());
        let mut alice = login("alice@fedgate-a.test", "alice-pw", port);
        let mut bob = login("bob@fedgate-a.test", "bob-pw", port);
        step("login (STARTTLS + SCRAM + bind) x2");

        // alice asks, bob approves: alice sees bob's presence.
        alice.command("subscribe bob@fedgate-a.test", T).unwrap();
        bob.expect(|l| l == "subscribe from=alice@fedgate-a.test", T)
            .unwrap();
        bob.command("approve alice@fedgate-a.test", T).unwrap();
        alice
            .expect(
                |l| {
                    l.starts_with("presence from=bob@fedgate-a.test/")
                        && field(l, "type").as_deref() == Some("available")
                },
                T,
            )
            .unwrap();
        // and the other way round.
        bob.command("subscribe alice@fedgate-a.test", T).unwrap();
        alice
            .expect(|l| l == "subscribe from=bob@fedgate-a.test", T)
            .unwrap();
        alice.command("approve bob@fedgate-a.test", T).unwrap();
        bob.expect(|l| l.starts_with("presence from=alice@fedgate-a.test/"), T)
            .unwrap();
        step("subscriptions both ways");
        alice.command("roster", T).unwrap();
        let item = alice
            .expect(|l| l.starts_with("roster jid=bob@fedgate-a.test "), T)
            .unwrap();
        assert_eq!(
            field(&item, "subscription").as_deref(),
            Some("both"),
            "{item}"
        );

        // presence with show and status.
        bob.command("presence away In a meeting", T).unwrap();
        let p = alice
            .expect(
                |l| l.starts_with("presence from=bob@fedgate-a.test/") && l.contains("show=away"),
                T,
            )
            .unwrap();
        assert_eq!(field(&p, "status").as_deref(), Some("In a meeting"), "{p}");
        step("presence away");

        // messages both ways.
        alice
            .command("send bob@fedgate-a.test hello bob <&>", T)
            .unwrap();
        let m = bob
            .expect(|l| l.starts_with("message from=alice@fedgate-a.test/"), T)
            .unwrap();
        assert_eq!(field(&m, "body").as_deref(), Some("hello bob <&>"));
        assert_eq!(field(&m, "type").as_deref(), Some("chat"));
        bob.command("send alice@fedgate-a.test hi alice", T)
            .unwrap();
        let m = alice
            .expect(|l| l.starts_with("message from=bob@fedgate-a.test/"), T)
            .unwrap();
        assert_eq!(field(&m, "body").as_deref(), Some("hi alice"));
        step("messages both ways");

        // bob leaves: alice sees him unavailable; a message to him is stored.
        bob.quit();
        alice
            .expect(
                |l| {
                    l.starts_with("presence from=bob@fedgate-a.test/")
                        && l.contains("type=unavailable")
                },
                T,
            )
            .unwrap();
        alice
            .command("send bob@fedgate-a.test while you were out", T)
            .unwrap();
        wait_until("the offline message to be stored", || {
            offline_count(&store, "bob@fedgate-a.test") == 1
        });
        step("offline message stored");

        // bob comes back: the message is delivered after his initial presence, then
        // removed from the store.
        let mut bob = login("bob@fedgate-a.test", "bob-pw", port);
        let m = bob
            .expect(|l| l.starts_with("message from=alice@fedgate-a.test/"), T)
            .unwrap();
        assert_eq!(field(&m, "body").as_deref(), Some("while you were out"));
        wait_until("the offline message to be acknowledged", || {
            offline_count(&store, "bob@fedgate-a.test") == 0
        });
        alice
            .expect(
                |l| {
                    l.starts_with("presence from=bob@fedgate-a.test/")
                        && l.contains("type=available")
                },
                T,
            )
            .unwrap();
        step("offline message delivered at the next login");

        // a wrong password is refused.
        let err =
            XmppClient::connect_port("alice@fedgate-a.test", "nope", Ipv4Addr::LOCALHOST, port)
                .expect_err("wrong password accepted");
        assert!(err.to_string().contains("auth failed"), "{err}");
        step("wrong password refused");
        alice.quit();
        bob.quit();
    })
    .await
    .unwrap();
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c2s_resource_conflict_newer_session_wins() {
    if !peers_or_skip(&[SLIXMPP]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let port = node.c2s_addr().unwrap().port();
    let router = node.router().clone();
    tokio::task::spawn_blocking(move || {
        let mut old = login("alice@fedgate-a.test/desk", "alice-pw", port);
        let mut bob = login("bob@fedgate-a.test", "bob-pw", port);
        let mut new = login("alice@fedgate-a.test/desk", "alice-pw", port);
        // The older session is closed with <conflict/>: its driver sees the disconnect.
        let err = old
            .expect(|_| false, T)
            .expect_err("old session still open");
        assert!(err.to_string().contains("disconnected"), "{err}");
        wait_until("one session left for alice/desk", || {
            router.session_count() == 2
        });
        // Messages to the full JID reach the newer session.
        bob.command("send alice@fedgate-a.test/desk still there?", T)
            .unwrap();
        let m = new
            .expect(|l| l.starts_with("message from=bob@fedgate-a.test/"), T)
            .unwrap();
        assert_eq!(field(&m, "body").as_deref(), Some("still there?"));
        new.quit();
        bob.quit();
    })
    .await
    .unwrap();
    node.shutdown().await;
}

/// Graceful shutdown: an open client stream is closed with `</stream:stream>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c2s_shutdown_closes_streams() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let addr = node.c2s_addr().unwrap();
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
          xmlns:stream='http://etherx.jabber.org/streams' to='fedgate-a.test' version='1.0'>",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("</stream:features>") {
        let n = tokio::time::timeout(T, sock.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).contains("<starttls"));
    let reader = tokio::spawn(async move {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(T, sock.read_to_end(&mut rest)).await;
        rest
    });
    tokio::time::timeout(T, node.shutdown()).await.unwrap();
    let rest = String::from_utf8(reader.await.unwrap()).unwrap();
    assert_eq!(rest, "</stream:stream>");
}
