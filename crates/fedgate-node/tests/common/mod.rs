//! What the node's integration tests share (each test file has `mod common;`): starting a
//! whole node with its users, logging a client in, certificates, SIPp scenarios, the
//! loopback address leases and a SIP-over-mutual-TLS deployment's config. Each test file
//! uses a part of it.
#![allow(dead_code)] // each test file uses a part
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fedgate_node::config::{NodeConfig, SipTransportKind};
use fedgate_node::core::Node;
use fedgate_policy::UserAddress;
use fedgate_testkit::process::free_port;
use fedgate_testkit::{CertPair, IpLease, XmppClient, hosts};
use fedgate_xmpp::{Element, Event, Limits, StreamKind, StreamReader};

/// Validates `cfg`, loads its TLS identity, starts the node and adds `users`
/// (`(local part, password)`) in its first local domain.
pub async fn start(cfg: NodeConfig, users: &[(&str, &str)]) -> Node {
    let v = cfg.validate().unwrap();
    let tls = v.load_tls().unwrap();
    let node = Node::start(&v, tls.as_ref()).await.unwrap();
    let domain = v.local_domains[0].as_str().to_owned();
    for (u, p) in users {
        let a: UserAddress = format!("{u}@{domain}").parse().unwrap();
        node.users().add_user(&a, p).await.unwrap();
    }
    node
}

/// A slixmpp client logged in as `jid` on the node's c2s listener.
pub fn login(node: &Node, jid: &str, pw: &str) -> XmppClient {
    let c2s = node.c2s_addr().unwrap();
    let IpAddr::V4(ip) = c2s.ip() else {
        unreachable!("c2s listens on IPv4")
    };
    XmppClient::connect_port(jid, pw, ip, c2s.port()).unwrap()
}

/// The address of the node's SIP listener of `kind`.
pub fn sip_addr(node: &Node, kind: SipTransportKind) -> SocketAddr {
    node.sip_addrs()
        .into_iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, a)| a)
        .unwrap()
}

/// A SIPp scenario of `tests/sipp`.
pub fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/sipp")
        .join(name)
}

/// Logs to the test output with `RUST_LOG` (e.g. `fedgate_node=debug`).
/// Logs on, and whether SIPp or slixmpp is missing (the test then returns: skipped
/// with a line on stderr, or failed under `FEDGATE_REQUIRE_PEERS=1`, as in CI).
pub fn sip_peers_missing() -> bool {
    logs();
    !fedgate_testkit::peers_or_skip(&["sipp", fedgate_testkit::SLIXMPP])
}

pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Leases the loopback addresses `ips` (in that order), waiting up to 600 s for other
/// tests to release them.
pub async fn lease(ips: &[Ipv4Addr]) -> Vec<IpLease> {
    let ips = ips.to_vec();
    tokio::task::spawn_blocking(move || {
        ips.into_iter()
            .map(|ip| IpLease::acquire(ip, Duration::from_secs(600)).unwrap())
            .collect()
    })
    .await
    .unwrap()
}

/// Adds the test hosts to `/etc/hosts` (before a peer starts), then leases fedgate-a's
/// address like [`lease`].
pub async fn hosts_and_lease_fedgate_a() -> IpLease {
    tokio::task::spawn_blocking(|| {
        hosts::ensure_test_hosts().unwrap();
        IpLease::acquire(hosts::FEDGATE_A.1, Duration::from_secs(600)).unwrap()
    })
    .await
    .unwrap()
}

/// A self-signed end-entity certificate for `name` (serverAuth and clientAuth), as PEM
/// files in `dir`.
pub fn cert_files(dir: &Path, name: &str) -> CertPair {
    let c = fedgate_node::tls::self_signed(&[name]).unwrap();
    let pair = CertPair {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&pair.cert, &c.cert_pem).unwrap();
    std::fs::write(&pair.key, &c.key_pem).unwrap();
    pair
}

/// A fedgate deployment `me` listening for SIP over mutual TLS on `me.1:port` (client
/// certificate required, `peer_cert` its only root), with the SIP domain `peer` at
/// `targets`, in that order; XMPP s2s off.
pub fn sip_tls_node_config(
    me: (&str, Ipv4Addr),
    port: u16,
    peer: &str,
    targets: &[SocketAddr],
    dir: &Path,
    cert: &CertPair,
    peer_cert: &CertPair,
) -> NodeConfig {
    let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    let text = format!(
        r#"
        [node]
        name = "{me}"
        data_dir = "{dir}"
        domains = ["{me}"]
        [tls]
        cert = "{cert}"
        key = "{key}"
        roots = ["{peer_cert}"]
        [xmpp.s2s]
        enabled = false
        [xmpp.c2s]
        listen = "{ip}:0"
        [sip]
        enabled = true
        require_client_cert = true
        [[sip.listeners]]
        transport = "tls"
        address = "{ip}:{port}"
        [[federation.domain]]
        name = "{peer}"
        protocol = "sip"
        targets = [{targets}]
        "#,
        me = me.0,
        ip = me.1,
        targets = targets.join(", "),
        dir = dir.display(),
        cert = cert.cert.display(),
        key = cert.key.display(),
        peer_cert = peer_cert.cert.display(),
    );
    NodeConfig::from_toml_str(&text).unwrap()
}

/// The first element of `xml`, parsed as a client stanza after a stream header.
pub fn el(xml: &str) -> Element {
    let mut r = StreamReader::new(
        StreamKind::Client,
        Limits::default(),
        std::time::Instant::now(),
    );
    r.set_authenticated();
    r.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
    r.feed(xml.as_bytes());
    loop {
        match r.poll_event().unwrap() {
            Some(Event::Element(e)) => return e,
            Some(_) => {}
            None => panic!("no element in {xml}"),
        }
    }
}

/// The config (TOML) of fedgate-a.test named `name`: s2s on its address's port 5269, c2s
/// on `c2s_port` (0: any), a generated certificate, data in `data_dir`, federating over
/// XMPP with `peer` reached statically on its port 5269; then `extra`.
pub fn xmpp_federation_toml(
    name: &str,
    data_dir: &Path,
    c2s_port: u16,
    peer: (&str, Ipv4Addr),
    extra: &str,
) -> String {
    let (fedgate, ip) = hosts::FEDGATE_A;
    let (peer, peer_ip) = peer;
    format!(
        r#"
[node]
name = "{name}"
data_dir = "{}"
domains = ["{fedgate}"]
[tls]
generate = true
[xmpp.s2s]
listen = "{ip}:5269"
[xmpp.c2s]
listen = "{ip}:{c2s_port}"
[[federation.domain]]
name = "{peer}"
protocol = "xmpp"
targets = ["{peer_ip}:5269"]
{extra}
"#,
        data_dir.display()
    )
}

/// Two fedgate deployments federating over SIP with mutual TLS ([`sip_pair`]), each with
/// its user logged in.
pub struct SipPair {
    /// fedgate-a.test, with alice.
    pub a: Node,
    /// fedgate-b.test, with carol.
    pub b: Node,
    pub alice: XmppClient,
    pub carol: XmppClient,
    /// B's configuration (to start it again on the same store and port).
    pub b_config: NodeConfig,
    /// The certificates' and the stores' folders: keep them while the nodes run.
    pub dirs: [tempfile::TempDir; 3],
}

/// Starts fedgate-a.test (user alice) and fedgate-b.test (user carol) as SIP federation
/// partners over mutual TLS ([`sip_tls_node_config`]), each on a free port of its
/// address, and logs alice and carol in. A tries the targets `before_b` first, then B;
/// B reaches A directly. The caller holds the leases of both addresses.
pub async fn sip_pair(before_b: &[SocketAddr]) -> SipPair {
    let (a, b) = (hosts::FEDGATE_A, hosts::FEDGATE_B);
    let certs = tempfile::tempdir().unwrap();
    let (ca, cb) = (cert_files(certs.path(), a.0), cert_files(certs.path(), b.0));
    let (pa, pb) = (free_port(a.1).unwrap(), free_port(b.1).unwrap());
    let mut a_targets = before_b.to_vec();
    a_targets.push(SocketAddr::from((b.1, pb)));
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node_a = start(
        sip_tls_node_config(a, pa, b.0, &a_targets, da.path(), &ca, &cb),
        &[("alice", "alice-pw")],
    )
    .await;
    let b_config = sip_tls_node_config(
        b,
        pb,
        a.0,
        &[SocketAddr::from((a.1, pa))],
        db.path(),
        &cb,
        &ca,
    );
    let node_b = start(b_config.clone(), &[("carol", "carol-pw")]).await;
    let alice = login(&node_a, "alice@fedgate-a.test", "alice-pw");
    let carol = login(&node_b, "carol@fedgate-b.test", "carol-pw");
    SipPair {
        a: node_a,
        b: node_b,
        alice,
        carol,
        b_config,
        dirs: [certs, da, db],
    }
}
