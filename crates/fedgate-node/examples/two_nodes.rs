//! Two fedgate federation nodes on loopback, federating over XMPP s2s.
//!
//! * `fedgate-a.test`: s2s on 127.0.0.10:5269, c2s on 127.0.0.10 (ephemeral port),
//!   users alice and bob;
//! * `fedgate-b.test`: s2s on 127.0.0.11:5269, c2s on 127.0.0.11, users carol and dave.
//!
//! Each lists the other as a federated XMPP domain with a static target (no DNS), keeps
//! its store and generated self-signed certificate in a temporary folder, and uses
//! STARTTLS and dialback between them. Clients are python3-slixmpp driven through
//! fedgate-testkit's `XmppClient`. The run: alice and carol subscribe to each other
//! across the nodes, carol goes away "In a meeting", messages cross both ways (alice ⇄
//! carol, bob ⇄ dave), and a message from alice to a domain that is not federated comes
//! back `<not-allowed/>`. Everything that crossed is printed; the exit code is 0 when
//! all of it arrived.
//!
//! ```text
//! cargo run -p fedgate-node --example two_nodes
//! ```
//! Needs python3-slixmpp, and the two loopback addresses (Linux routes all of 127/8).
//! `tests/federation_two_nodes.rs` runs [`run`] and checks what crossed.

use std::error::Error;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use fedgate_node::config::NodeConfig;
use fedgate_node::core::Node;
use fedgate_policy::UserAddress;
use fedgate_testkit::{IpLease, XmppClient, field};

/// Result type of the example.
pub type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Node A.
pub const A: (&str, Ipv4Addr) = ("fedgate-a.test", Ipv4Addr::new(127, 0, 0, 10));
/// Node B.
pub const B: (&str, Ipv4Addr) = ("fedgate-b.test", Ipv4Addr::new(127, 0, 0, 11));
const T: Duration = Duration::from_secs(20);

/// How the run is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The family node A maps fedgate-b.test's users with (`xmpp`: unchanged).
    pub b_family_on_a: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            b_family_on_a: "xmpp",
        }
    }
}

/// What crossed between the nodes: the receiving client's event lines, labelled.
#[derive(Debug, Default, Clone)]
pub struct Crossed {
    /// `(receiver, line)` for every event that came over s2s.
    pub events: Vec<(String, String)>,
}

impl Crossed {
    fn add(&mut self, who: &str, line: String) {
        println!("  {who:<22} <- {line}");
        self.events.push((who.to_owned(), line));
    }

    /// The first line `who` received that starts with `prefix`.
    pub fn find(&self, who: &str, prefix: &str) -> Option<&str> {
        self.events
            .iter()
            .find(|(w, l)| w == who && l.starts_with(prefix))
            .map(|(_, l)| l.as_str())
    }
}

/// The configuration of one node: `me` on its address, `peer` as its federated XMPP
/// domain reached statically on the peer's address.
pub fn config(
    me: (&str, Ipv4Addr),
    peer: (&str, Ipv4Addr),
    peer_family: &str,
    dir: &Path,
) -> Res<NodeConfig> {
    let text = format!(
        r#"
        [node]
        name = "{me}"
        data_dir = "{dir}"
        domains = ["{me}"]
        [tls]
        generate = true
        [xmpp.s2s]
        listen = "{ip}:5269"
        dialback_secret = "two-nodes demo secret of {me}"
        [xmpp.c2s]
        listen = "{ip}:0"
        [[sip.listeners]]
        transport = "tls"
        address = "{ip}:0"
        [[federation.domain]]
        name = "{peer}"
        protocol = "xmpp"
        family = "{peer_family}"
        targets = ["{peer_ip}:5269"]
        "#,
        me = me.0,
        ip = me.1,
        dir = dir.display(),
        peer = peer.0,
        peer_ip = peer.1,
    );
    Ok(NodeConfig::from_toml_str(&text)?)
}

/// Validates `cfg`, starts the node and adds `users` (name, password).
pub async fn start(cfg: NodeConfig, users: &[(&str, &str)]) -> Res<Node> {
    let v = cfg.validate()?;
    let tls = v.load_tls()?;
    let node = Node::start(&v, tls.as_ref()).await?;
    let domain = v.local_domains[0].as_str().to_owned();
    for (u, p) in users {
        let a: UserAddress = format!("{u}@{domain}").parse()?;
        node.users().add_user(&a, p).await?;
    }
    Ok(node)
}

/// A slixmpp client logged in through `ip:port`.
pub fn login(jid: &str, pw: &str, ip: Ipv4Addr, port: u16) -> Res<XmppClient> {
    Ok(XmppClient::connect_port(jid, pw, ip, port)?)
}

fn expect(
    c: &mut XmppClient,
    crossed: &mut Crossed,
    what: &str,
    f: impl Fn(&str) -> bool,
) -> Res<()> {
    let line = c
        .expect(|l| f(l), T)
        .map_err(|e| format!("{}: waiting for {what}: {e}", c.jid()))?;
    let who = c.jid().to_owned();
    crossed.add(&who, line);
    Ok(())
}

fn scenario(port_a: u16, port_b: u16) -> Res<Crossed> {
    let mut x = Crossed::default();
    let t0 = Instant::now();
    let mut alice = login("alice@fedgate-a.test", "alice-pw", A.1, port_a)?;
    let mut bob = login("bob@fedgate-a.test", "bob-pw", A.1, port_a)?;
    let mut carol = login("carol@fedgate-b.test", "carol-pw", B.1, port_b)?;
    let mut dave = login("dave@fedgate-b.test", "dave-pw", B.1, port_b)?;
    println!("4 clients logged in ({:?})", t0.elapsed());

    println!("subscriptions across the nodes:");
    alice.command("subscribe carol@fedgate-b.test", T)?;
    expect(&mut carol, &mut x, "alice's request", |l| {
        l == "subscribe from=alice@fedgate-a.test"
    })?;
    carol.command("approve alice@fedgate-a.test", T)?;
    expect(&mut alice, &mut x, "carol's presence", |l| {
        l.starts_with("presence from=carol@fedgate-b.test/")
            && field(l, "type").as_deref() == Some("available")
    })?;
    carol.command("subscribe alice@fedgate-a.test", T)?;
    expect(&mut alice, &mut x, "carol's request", |l| {
        l == "subscribe from=carol@fedgate-b.test"
    })?;
    alice.command("approve carol@fedgate-b.test", T)?;
    expect(&mut carol, &mut x, "alice's presence", |l| {
        l.starts_with("presence from=alice@fedgate-a.test/")
            && field(l, "type").as_deref() == Some("available")
    })?;

    println!("presence changes:");
    carol.command("presence away In a meeting", T)?;
    expect(&mut alice, &mut x, "carol's new presence", |l| {
        l.starts_with("presence from=carol@fedgate-b.test/")
            && field(l, "status").as_deref() == Some("In a meeting")
    })?;
    alice.command("presence dnd", T)?;
    expect(&mut carol, &mut x, "alice's dnd", |l| {
        l.starts_with("presence from=alice@fedgate-a.test/") && l.contains("show=dnd")
    })?;

    println!("messages:");
    alice.command("send carol@fedgate-b.test hello carol, from node A <&>", T)?;
    expect(&mut carol, &mut x, "alice's message", |l| {
        l.starts_with("message from=alice@fedgate-a.test/")
    })?;
    carol.command("send alice@fedgate-a.test hi alice, from node B", T)?;
    expect(&mut alice, &mut x, "carol's message", |l| {
        l.starts_with("message from=carol@fedgate-b.test/")
    })?;
    bob.command("send dave@fedgate-b.test ping dave", T)?;
    expect(&mut dave, &mut x, "bob's message", |l| {
        l.starts_with("message from=bob@fedgate-a.test/")
    })?;
    dave.command("send bob@fedgate-a.test pong bob", T)?;
    expect(&mut bob, &mut x, "dave's message", |l| {
        l.starts_with("message from=dave@fedgate-b.test/")
    })?;

    println!("policy:");
    alice.command("send someone@elsewhere.test not federated", T)?;
    expect(&mut alice, &mut x, "the refusal", |l| {
        l.starts_with("error from=someone@elsewhere.test")
    })?;

    for c in [alice, bob, carol, dave] {
        c.quit();
    }
    println!("done in {:?}", t0.elapsed());
    Ok(x)
}

/// Runs the whole demo (two nodes, four clients) and returns what crossed. Takes the
/// two loopback addresses with [`IpLease`]s for the duration (waits, bounded, for other
/// users of them).
pub async fn run(opts: Options) -> Res<Crossed> {
    let leases = tokio::task::spawn_blocking(|| -> Res<(IpLease, IpLease)> {
        let a = IpLease::acquire(A.1, Duration::from_secs(600))?;
        let b = IpLease::acquire(B.1, Duration::from_secs(600))?;
        Ok((a, b))
    })
    .await??;
    let (dir_a, dir_b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let a = start(
        config(A, B, opts.b_family_on_a, dir_a.path())?,
        &[("alice", "alice-pw"), ("bob", "bob-pw")],
    )
    .await?;
    let b = start(
        config(B, A, "xmpp", dir_b.path())?,
        &[("carol", "carol-pw"), ("dave", "dave-pw")],
    )
    .await?;
    let (ca, cb) = (a.c2s_addr(), b.c2s_addr());
    let (Some(ca), Some(cb)) = (ca, cb) else {
        return Err("c2s not started".into());
    };
    println!(
        "{} c2s {ca} s2s {:?}; {} c2s {cb} s2s {:?}",
        A.0,
        a.s2s_addr(),
        B.0,
        b.s2s_addr()
    );
    let res = tokio::task::spawn_blocking(move || scenario(ca.port(), cb.port())).await?;
    a.shutdown().await;
    b.shutdown().await;
    drop(leases);
    res
}

#[allow(dead_code)] // the test includes this file as a module and calls `run`
fn main() -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(Options::default())) {
        Ok(c) => {
            println!("{} events crossed between the nodes", c.events.len());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
