//! Restart safety of the federation node, as a process: the node runs the real command
//! line (`fedgate_node::cli::execute`, what `fedgate-federation --config FILE` runs) in a
//! child process (this test binary started again in [`CHILD_CONFIG`] mode), federated
//! with a real Prosody (prosody-a.test on 127.0.0.2; the node is fedgate-a.test on
//! 127.0.0.10).
//!
//! 1. alice (fedgate) is offline; bob (Prosody) asks to subscribe to her and sends her a
//!    message. Once the store holds both (pending request in the roster and in the
//!    policy engine, message queued offline), the node is killed with SIGKILL.
//! 2. Restarted on the same data folder: alice logs in and gets bob's request (still
//!    pending, answerable) and the message; she approves, bob sees her presence;
//!    messages cross both ways again.
//! 3. SIGTERM: the node sends `unavailable` for alice to bob before it exits (status 0).
//!
//! Peers missing: skipped with a line on stderr, failed with FEDGATE_REQUIRE_PEERS=1.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use common::xmpp_federation_toml;
use fedgate_node::cli::{Cli, execute};
use fedgate_policy::{PolicyStore, SubscriptionState, UserAddress};
use fedgate_store::{OfflineStore, RosterStore, SqliteStore};
use fedgate_testkit::process::{PeerProcess, free_port, tail_file, wait_for_tcp};
use fedgate_testkit::{IpLease, Prosody, SLIXMPP, XmppClient, field, hosts, peers_or_skip};

/// Set (to the configuration file) in the child process: run the node.
const CHILD_CONFIG: &str = "FEDGATE_RESTART_TEST_NODE_CONFIG";
const T: Duration = Duration::from_secs(30);

/// Not a test on its own: the node process of [`federation_restart_sigkill_then_sigterm`]
/// (returns at once without [`CHILD_CONFIG`]).
#[test]
fn federation_restart_node_process() {
    let Ok(config) = std::env::var(CHILD_CONFIG) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::stderr)
        .try_init();
    let cli = Cli::try_parse_from(["fedgate-federation", "--config", &config]).unwrap();
    execute(cli, &mut std::io::stdout(), &mut std::io::empty()).unwrap();
}

fn cli(args: &[&str]) {
    let cli =
        Cli::try_parse_from(std::iter::once("fedgate-federation").chain(args.iter().copied()))
            .unwrap();
    execute(cli, &mut std::io::sink(), &mut std::io::empty()).unwrap();
}

fn write_config(dir: &Path, c2s_port: u16) -> PathBuf {
    let path = dir.join("fedgate.toml");
    let toml = xmpp_federation_toml("restart", &dir.join("data"), c2s_port, hosts::PROSODY_A, "");
    std::fs::write(&path, toml).unwrap();
    path
}

fn start_node(config: &Path, log: &Path, c2s: SocketAddr) -> PeerProcess {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "federation_restart_node_process",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_CONFIG, config);
    let mut p = PeerProcess::spawn("fedgate node", cmd, log).unwrap();
    let s2s = SocketAddr::from((hosts::FEDGATE_A.1, 5269));
    for addr in [c2s, s2s] {
        wait_for_tcp(
            addr,
            T,
            || p.check_running(|| tail_file(log, 30)),
            || tail_file(log, 30),
        )
        .unwrap();
    }
    p
}

fn signal(p: &PeerProcess, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(p.id().unwrap().to_string())
        .status()
        .unwrap();
    assert!(st.success());
}

/// Polls the store (read from this process, as the node writes it) until `done`.
fn wait_store(data: &Path, what: &str, done: impl Fn(&mut SqliteStore) -> bool) {
    let deadline = Instant::now() + T;
    loop {
        if let Ok(mut s) = SqliteStore::open(data)
            && done(&mut s)
        {
            return;
        }
        assert!(Instant::now() < deadline, "the store never had {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn federation_restart_sigkill_then_sigterm() {
    if std::env::var(CHILD_CONFIG).is_ok() || !peers_or_skip(&["prosody", "prosodyctl", SLIXMPP]) {
        return;
    }
    hosts::ensure_test_hosts().unwrap();
    let _lease = IpLease::acquire(hosts::FEDGATE_A.1, Duration::from_secs(600)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(hosts::FEDGATE_A.1).unwrap();
    let c2s = SocketAddr::from((hosts::FEDGATE_A.1, port));
    let config = write_config(dir.path(), port);
    let data = dir.path().join("data");
    let cfg = config.to_str().unwrap();
    cli(&[
        "--config",
        cfg,
        "user",
        "add",
        "alice",
        "--password",
        "alice-pw",
    ]);
    let log = dir.path().join("node.log");
    let t0 = Instant::now();
    let step = |name: &str| eprintln!("{name}: {:?}", t0.elapsed());

    // 1. A subscription and a message in flight when the node is killed.
    let mut node = start_node(&config, &log, c2s);
    let pa = Prosody::start(hosts::PROSODY_A.0, hosts::PROSODY_A.1).unwrap();
    pa.register("bob", "bob-pw").unwrap();
    let mut bob = XmppClient::connect("bob@prosody-a.test", "bob-pw", pa.ip()).unwrap();
    step("node and prosody up");
    bob.command("subscribe alice@fedgate-a.test", T).unwrap();
    bob.command("send alice@fedgate-a.test sent while you were out", T)
        .unwrap();
    let alice: UserAddress = "alice@fedgate-a.test".parse().unwrap();
    wait_store(&data, "the pending request and the message", |s| {
        let pending_in_roster = s
            .roster_item(&alice, "bob@prosody-a.test")
            .ok()
            .flatten()
            .is_some_and(|i| i.pending_in.is_some());
        let pending_in_policy = s.load().is_ok_and(|snap| {
            snap.subscriptions
                .iter()
                .any(|r| r.key.local == alice && r.state == SubscriptionState::Pending)
        });
        let queued = s.offline_count(&alice).unwrap_or(0) == 1;
        pending_in_roster && pending_in_policy && queued
    });
    signal(&node, "KILL");
    let st = node.wait_exit(T).unwrap();
    assert!(!st.success(), "{st}");
    step("killed with SIGKILL");

    // 2. Restarted: the flows complete.
    let mut node = start_node(&config, &log, c2s);
    step("restarted");
    let mut alice_c =
        XmppClient::connect_port("alice@fedgate-a.test", "alice-pw", hosts::FEDGATE_A.1, port)
            .unwrap();
    alice_c
        .expect(|l| l == "subscribe from=bob@prosody-a.test", T)
        .unwrap();
    let m = alice_c
        .expect(|l| l.starts_with("message from=bob@prosody-a.test/"), T)
        .unwrap();
    assert_eq!(
        field(&m, "body").as_deref(),
        Some("sent while you were out"),
        "{m}"
    );
    alice_c.command("approve bob@prosody-a.test", T).unwrap();
    let p = bob
        .expect(
            |l| {
                l.starts_with("presence from=alice@fedgate-a.test/")
                    && field(l, "type").as_deref() == Some("available")
            },
            T,
        )
        .unwrap();
    eprintln!("{p}");
    alice_c.command("roster", T).unwrap();
    let item = alice_c
        .expect(|l| l.starts_with("roster jid=bob@prosody-a.test "), T)
        .unwrap();
    assert_eq!(
        field(&item, "subscription").as_deref(),
        Some("from"),
        "{item}"
    );
    step("pending request answered after the restart, presence seen");
    bob.command("send alice@fedgate-a.test and now?", T)
        .unwrap();
    let m = alice_c
        .expect(|l| l.starts_with("message from=bob@prosody-a.test/"), T)
        .unwrap();
    assert_eq!(field(&m, "body").as_deref(), Some("and now?"), "{m}");
    alice_c
        .command("send bob@prosody-a.test all delivered", T)
        .unwrap();
    let m = bob
        .expect(|l| l.starts_with("message from=alice@fedgate-a.test/"), T)
        .unwrap();
    assert_eq!(field(&m, "body").as_deref(), Some("all delivered"), "{m}");
    assert_eq!(
        SqliteStore::open(&data)
            .unwrap()
            .offline_count(&alice)
            .unwrap(),
        0,
        "the offline message was acknowledged after delivery"
    );
    step("messages both ways");

    // 3. SIGTERM: bob is told alice is gone before the node exits.
    signal(&node, "TERM");
    let p = bob
        .expect(
            |l| {
                l.starts_with("presence from=alice@fedgate-a.test/")
                    && field(l, "type").as_deref() == Some("unavailable")
            },
            T,
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", tail_file(&log, 40)));
    eprintln!("{p}");
    let st = node.wait_exit(T).unwrap();
    assert!(st.success(), "{st}\n{}", tail_file(&log, 40));
    // Both s2s streams with Prosody were closed with closing tags (RFC 6120 §4.4), none
    // aborted.
    let text = std::fs::read_to_string(&log).unwrap();
    let after = &text[text.rfind("shutting down").unwrap()..];
    assert!(
        after.contains("xmpp: outbound stream closed")
            && after.contains("xmpp: inbound stream closed")
            && !after.contains("aborted"),
        "{after}"
    );
    step("SIGTERM: unavailable sent, clean exit");
    bob.quit();
    drop(alice_c);
    drop(pa);
}
