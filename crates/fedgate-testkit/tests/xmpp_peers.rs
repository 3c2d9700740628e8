//! The harness against real XMPP peers: Prosody ↔ Prosody, Prosody ↔ ejabberd,
//! a slixmpp client on each side.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use fedgate_testkit::{
    Ejabberd, Prosody, ProsodyOptions, S2sEncryption, SLIXMPP, XmppClient, field, hosts,
    peers_or_skip,
};

/// The tests share 127.0.0.2 (Prosody A) and two cores: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const WAIT: Duration = Duration::from_secs(15);
const TEST_BOUND: Duration = Duration::from_secs(60);

fn prosody_peers() -> bool {
    peers_or_skip(&["prosody", "prosodyctl", "openssl", SLIXMPP])
}

fn setup() -> std::sync::MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    hosts::ensure_test_hosts().expect("/etc/hosts");
    guard
}

fn start_prosody(name: (&str, std::net::Ipv4Addr)) -> Prosody {
    Prosody::start(name.0, name.1).unwrap_or_else(|e| panic!("starting Prosody {}: {e}", name.0))
}

fn done(test: &str, t0: Instant) {
    let took = t0.elapsed();
    eprintln!("{test}: {took:.2?}");
    assert!(took < TEST_BOUND, "{test} took {took:?}");
}

#[test]
fn prosody_to_prosody_ping_and_message() {
    if !prosody_peers() {
        return;
    }
    let _serial = setup();
    let t0 = Instant::now();
    let a = start_prosody(hosts::PROSODY_A);
    // B insists on TLS for s2s (Prosody's own default): A must STARTTLS.
    let mut required = ProsodyOptions::default();
    required.s2s_encryption = S2sEncryption::Required;
    let (name, ip) = hosts::PROSODY_B;
    let b = Prosody::start_with(name, ip, required).unwrap_or_else(|e| panic!("Prosody B: {e}"));

    let pong = a
        .ping(b.domain())
        .unwrap_or_else(|e| panic!("ping A→B: {e}"));
    assert!(pong.contains("pong from prosody-b.test"), "{pong}");
    let table = a.s2s_show().expect("s2s:show()");
    let row = table
        .lines()
        .find(|l| l.contains("prosody-b.test"))
        .unwrap_or_else(|| panic!("no s2s row for B:\n{table}"));
    assert!(row.contains("TLSv1."), "{table}");
    assert!(row.contains("Completed"), "dialback: {table}");

    // The same call must be able to fail: unreachable.test resolves (from
    // /etc/hosts) to an address where nothing ever listens.
    let err = a
        .ping(hosts::UNREACHABLE.0)
        .expect_err("ping to a dead domain");
    let err = err.to_string();
    assert!(err.contains("remote-server-not-found"), "{err}");
    assert!(err.contains("connection refused"), "{err}");

    a.register("alice", "secret-a").expect("register alice");
    b.register("bob", "secret-b").expect("register bob");
    let mut alice = XmppClient::connect("alice@prosody-a.test", "secret-a", a.ip())
        .unwrap_or_else(|e| panic!("alice login: {e}\n{}", a.diagnostics()));
    let mut bob = XmppClient::connect("bob@prosody-b.test", "secret-b", b.ip())
        .unwrap_or_else(|e| panic!("bob login: {e}\n{}", b.diagnostics()));

    alice
        .command("send bob@prosody-b.test hello bob, from A", WAIT)
        .expect("send");
    let got = bob
        .expect(|l| l.starts_with("message from=alice@prosody-a.test"), WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", a.diagnostics(), b.diagnostics()));
    assert_eq!(field(&got, "type").as_deref(), Some("chat"), "{got}");
    assert_eq!(
        field(&got, "body").as_deref(),
        Some("hello bob, from A"),
        "{got}"
    );
    alice.quit();
    bob.quit();
    done("prosody_to_prosody_ping_and_message", t0);
}

#[test]
fn prosody_and_ejabberd_exchange_messages_both_ways() {
    if !prosody_peers() || !peers_or_skip(&["ejabberdctl", "erl", "epmd"]) {
        return;
    }
    let _serial = setup();
    let t0 = Instant::now();
    let a = start_prosody(hosts::PROSODY_A);
    let c = Ejabberd::start(hosts::EJABBERD_C.0, hosts::EJABBERD_C.1)
        .unwrap_or_else(|e| panic!("starting ejabberd: {e}"));
    eprintln!("  {:.2?} both servers up", t0.elapsed());
    a.register("alice", "secret-a").expect("register alice");
    c.register("carol", "secret-c").expect("register carol");
    let mut alice = XmppClient::connect("alice@prosody-a.test", "secret-a", a.ip())
        .unwrap_or_else(|e| panic!("alice login: {e}\n{}", a.diagnostics()));
    let mut carol = XmppClient::connect("carol@ejabberd-c.test", "secret-c", c.ip())
        .unwrap_or_else(|e| panic!("carol login: {e}\n{}", c.diagnostics()));
    let diag = |e: fedgate_testkit::Error| panic!("{e}\n{}\n{}", a.diagnostics(), c.diagnostics());
    eprintln!("  {:.2?} users registered, clients logged in", t0.elapsed());

    // A → C
    alice
        .command("send carol@ejabberd-c.test from prosody to ejabberd", WAIT)
        .expect("send");
    let got = carol
        .expect(|l| l.starts_with("message from=alice@prosody-a.test"), WAIT)
        .unwrap_or_else(diag);
    assert_eq!(
        field(&got, "body").as_deref(),
        Some("from prosody to ejabberd")
    );

    // C → A, from a client …
    carol
        .command("send alice@prosody-a.test from ejabberd to prosody", WAIT)
        .expect("send");
    let got = alice
        .expect(
            |l| l.starts_with("message from=carol@ejabberd-c.test"),
            WAIT,
        )
        .unwrap_or_else(diag);
    assert_eq!(
        field(&got, "body").as_deref(),
        Some("from ejabberd to prosody")
    );

    // … and through ejabberdctl send_message.
    c.send_message(
        "carol@ejabberd-c.test",
        "alice@prosody-a.test",
        "via ejabberdctl",
    )
    .expect("send_message");
    let got = alice
        .expect(
            |l| {
                l.starts_with("message from=carol@ejabberd-c.test")
                    && l.ends_with("via ejabberdctl")
            },
            WAIT,
        )
        .unwrap_or_else(diag);
    assert_eq!(field(&got, "type").as_deref(), Some("chat"), "{got}");

    let table = a.s2s_show().expect("s2s:show()");
    assert!(table.contains("ejabberd-c.test"), "{table}");
    eprintln!("  {:.2?} three messages delivered", t0.elapsed());
    alice.quit();
    carol.quit();
    c.stop().expect("clean ejabberd stop");
    eprintln!("  {:.2?} ejabberd stopped", t0.elapsed());
    done("prosody_and_ejabberd_exchange_messages_both_ways", t0);
}

#[test]
fn subscription_approval_then_away_presence_with_status() {
    if !prosody_peers() {
        return;
    }
    let _serial = setup();
    let t0 = Instant::now();
    let a = start_prosody(hosts::PROSODY_A);
    let b = start_prosody(hosts::PROSODY_B);
    a.register("alice", "secret-a").expect("register alice");
    b.register("bob", "secret-b").expect("register bob");
    let mut alice = XmppClient::connect("alice@prosody-a.test", "secret-a", a.ip())
        .unwrap_or_else(|e| panic!("alice login: {e}\n{}", a.diagnostics()));
    let mut bob = XmppClient::connect("bob@prosody-b.test", "secret-b", b.ip())
        .unwrap_or_else(|e| panic!("bob login: {e}\n{}", b.diagnostics()));
    let diag = |e: fedgate_testkit::Error| panic!("{e}\n{}\n{}", a.diagnostics(), b.diagnostics());

    alice
        .command("subscribe bob@prosody-b.test", WAIT)
        .expect("subscribe");
    bob.expect(|l| l == "subscribe from=alice@prosody-a.test", WAIT)
        .unwrap_or_else(diag);
    bob.command("approve alice@prosody-a.test", WAIT)
        .expect("approve");
    alice
        .expect(
            |l| {
                l.starts_with("presence from=bob@prosody-b.test") && l.contains(" type=subscribed ")
            },
            WAIT,
        )
        .unwrap_or_else(diag);

    bob.command("presence away out to lunch", WAIT)
        .expect("presence");
    let got = alice
        .expect(
            |l| {
                l.starts_with("presence from=bob@prosody-b.test/")
                    && field(l, "show").as_deref() == Some("away")
            },
            WAIT,
        )
        .unwrap_or_else(diag);
    assert_eq!(field(&got, "type").as_deref(), Some("available"), "{got}");
    assert_eq!(
        field(&got, "status").as_deref(),
        Some("out to lunch"),
        "{got}"
    );

    alice.command("roster", WAIT).expect("roster");
    let item = alice
        .expect(|l| l.starts_with("roster jid=bob@prosody-b.test "), WAIT)
        .unwrap_or_else(diag);
    assert_eq!(
        field(&item, "subscription").as_deref(),
        Some("to"),
        "{item}"
    );
    alice.quit();
    bob.quit();
    done("subscription_approval_then_away_presence_with_status", t0);
}

#[test]
fn a_failed_client_login_is_an_error_not_a_hang() {
    if !prosody_peers() {
        return;
    }
    let _serial = setup();
    let t0 = Instant::now();
    let a = start_prosody(hosts::PROSODY_A);
    a.register("alice", "secret-a").expect("register alice");
    let err = XmppClient::connect("alice@prosody-a.test", "wrong", a.ip())
        .expect_err("login with a wrong password");
    assert!(err.to_string().contains("auth failed"), "{err}");
    done("a_failed_client_login_is_an_error_not_a_hang", t0);
}
