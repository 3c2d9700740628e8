//! A load program for the whole federation node, on loopback: a federated XMPP server
//! floods messages over s2s to clients logged in over c2s, a local user's presence fans
//! out to its watchers; the same load against fedgate and Prosody 0.12 in one run.
//!
//! ```text
//! cargo run --release -p fedgate-node --example node_load -- \
//!     [--clients 1000] [--n 100000] [--window 1024] [--rate 10000] [--lat-secs 3] \
//!     [--updates 200] [--msg-clients C] [--timeout 120] [--tls] [--peers fedgate,prosody]
//! ```
//! Run as root with the test hosts (`fedgate_testkit::hosts`) and Prosody installed, like
//! the interop tests; a missing Prosody is skipped with a line on stderr (failed with
//! `FEDGATE_REQUIRE_PEERS=1`).
//!
//! **Sender** (this process): fedgate's own [`S2sOutbound`] for `fedgate-b.test`
//! (127.0.0.11), with an [`S2sListener`] on 127.0.0.11:5269 so that the receivers can
//! verify its dialback keys (STARTTLS, then dialback, as in `s2s_load`).
//!
//! **Receivers**, one after the other:
//! - **fedgate**: this program re-executed with `--child`: a full [`Node`] for
//!   `fedgate-a.test` (c2s on 127.0.0.10:5222, s2s on 127.0.0.10:5269, SQLite store in a
//!   temporary folder, generated certificate, `fedgate-b.test` federated with a static
//!   target), accounts `u0`…`u<C-1>` and `pub` added through the store.
//! - **Prosody 0.12** (`prosody-a.test`, 127.0.0.2, the testkit's configuration: c2s TLS
//!   not required), the same accounts created through its admin shell.
//!
//! **Clients** (this process, written here so they are not the bottleneck): `C` watchers
//! `u<i>` and one publisher `pub`, each a task on one raw TCP c2s stream: stream header,
//! SASL SCRAM-SHA-1 (both servers accept it without TLS; with `--tls`, STARTTLS first
//! and the certificate is not checked), stream restart, resource binding, roster
//! request, initial presence; then they count what arrives (a stanza splitter over the bytes, no full XML
//! parsing).
//!
//! **Phases**, each measured from `/proc/<pid>/stat` (CPU, 10 ms ticks) and
//! `/proc/<pid>/status` (VmRSS) of the receiving server process:
//! 1. *idle c2s*: VmRSS before the logins and 1 s after the last one; growth / (C+1) is
//!    the memory per connected idle client (an upper bound: it includes what the
//!    allocator kept from the logins).
//! 2. *subscriptions*: every watcher subscribes to `pub` (32 requests at a time, each
//!    batch answered within 20 s, at least 99% in all), whose client approves each
//!    request; VmRSS growth / C once every watcher has its `subscribed`.
//! 3. *presence fan-out*: `pub` sends U presence updates (a timestamp in `<status/>`), at
//!    most 4 not yet delivered to every watcher; updates/s and deliveries/s.
//! 4. *messages*: N `<message type='chat'>` of about 300 bytes from
//!    `alice@fedgate-b.test` over s2s to the bare JIDs `u<i % M>` (M = `--msg-clients`,
//!    default all C), at most `window` sent and not yet counted by the clients;
//!    messages/s end to end, CPU µs/message of the receiving server and of this process
//!    (sender and clients: on 2 cores both share the machine).
//! 5. *latency*: messages paced at `rate`/s for `lat-secs` s, each carrying its send
//!    time in its id; p50/p99/max from the send call to the client reading it.
//!
//! Build without `--release` for a quick check (tests/node_load_smoke.rs does); figures
//! for the record need `--release`.

#[path = "common/mod.rs"]
mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use common::{
    Frame, PAD, Res, Sender, after, attr, contains, digits, emit, epoch, now_us, percentile, take,
};
use fedgate_node::config::NodeConfig;
use fedgate_node::core::Node;
use fedgate_node::tls::self_signed;
use fedgate_node::xmpp::{XmppConfig, XmppLimits, XmppTls, random_seed};
use fedgate_policy::UserAddress;
use fedgate_testkit::{IpLease, Prosody, hosts, peers_or_skip};
use fedgate_xmpp::dialback::DialbackSecret;
use fedgate_xmpp::s2s::{S2sConfig, TlsPolicy};
use fedgate_xmpp::{DomainPart, Element, Limits, ns};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, mpsc};

/// A client connection of this program: plain TCP or TLS after STARTTLS.
type Conn = common::Conn<Box<dyn common::Stream>>;

const RECEIVER: (&str, Ipv4Addr) = hosts::FEDGATE_A;
const SENDER: (&str, Ipv4Addr) = hosts::FEDGATE_B;
const LEASE: Duration = Duration::from_secs(900);
const SETUP: Duration = Duration::from_secs(60);
const PASSWORD: &str = "load-pw";
/// Logins in progress at once.
const LOGIN_CONCURRENCY: usize = 32;
/// Subscription requests sent to `pub` at once (a burst larger than its session queue
/// would close its connection, see BENCHMARKS.md).
const SUBSCRIBE_BATCH: usize = 32;
/// How long one batch of subscription requests may take.
const BATCH_WAIT: Duration = Duration::from_secs(20);
/// Presence updates sent and not yet delivered to every watcher.
const PRESENCE_WINDOW: u64 = 4;

// ---------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Opts {
    clients: usize,
    n: u64,
    window: u64,
    rate: u64,
    lat_secs: u64,
    updates: u64,
    msg_clients: usize,
    timeout: Duration,
    tls: bool,
    peers: Vec<String>,
    child: bool,
}

fn parse_args() -> Res<Opts> {
    let mut o = Opts {
        clients: 1000,
        n: 100_000,
        window: 1024,
        rate: 10_000,
        lat_secs: 3,
        updates: 200,
        msg_clients: usize::MAX,
        timeout: Duration::from_secs(120),
        tls: false,
        peers: vec!["fedgate".into(), "prosody".into()],
        child: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--clients" => o.clients = val()?.parse::<usize>()?.max(1),
            "--n" => o.n = val()?.parse()?,
            "--window" => o.window = val()?.parse::<u64>()?.max(1),
            "--rate" => o.rate = val()?.parse::<u64>()?.max(1),
            "--lat-secs" => o.lat_secs = val()?.parse()?,
            "--updates" => o.updates = val()?.parse()?,
            "--msg-clients" => o.msg_clients = val()?.parse()?,
            "--timeout" => o.timeout = Duration::from_secs(val()?.parse()?),
            "--tls" => o.tls = true,
            "--peers" => o.peers = val()?.split(',').map(str::to_owned).collect(),
            "--child" => o.child = true,
            "-h" | "--help" => {
                println!(
                    "node_load [--clients C] [--n N] [--window W] [--rate R] [--lat-secs S] [--updates U] \
                     [--msg-clients M] [--timeout SECS] [--tls] [--peers fedgate,prosody]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(o)
}

fn main() -> Res<()> {
    let o = parse_args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if o.child {
        rt.block_on(child_main(o.clients))
    } else {
        rt.block_on(parent_main(o))
    }
}

// ---------------------------------------------------------------------------------
// /proc and time
// ---------------------------------------------------------------------------------

/// utime + stime of the whole process, in clock ticks (USER_HZ = 100 on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(i) = s.rfind(')') else { return 0 };
    let f: Vec<&str> = s[i + 2..].split_whitespace().collect();
    let get = |k: usize| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

const TICK_US: f64 = 10_000.0;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            l.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Waits until the CPU time of `pid` stops rising (every 200 ms, at most 3 s).
async fn cpu_settled(pid: u32) -> u64 {
    let mut last = cpu_ticks(pid);
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let c = cpu_ticks(pid);
        if c == last {
            break;
        }
        last = c;
    }
    last
}

// ---------------------------------------------------------------------------------
// The fedgate node (child process)
// ---------------------------------------------------------------------------------

fn child_config(dir: &std::path::Path, clients: usize) -> Res<NodeConfig> {
    let (me, ip) = RECEIVER;
    let (peer, peer_ip) = SENDER;
    let text = format!(
        r#"
        [node]
        name = "node_load"
        data_dir = "{dir}"
        domains = ["{me}"]
        [tls]
        generate = true
        [xmpp.s2s]
        listen = "{ip}:5269"
        dialback_secret = "node_load receiver secret"
        [xmpp.c2s]
        listen = "{ip}:5222"
        require_tls = false
        [sip]
        listeners = []
        [limits.node]
        max_connections = {maxc}
        max_connections_per_ip = {maxc}
        [[federation.domain]]
        name = "{peer}"
        protocol = "xmpp"
        targets = ["{peer_ip}:5269"]
        "#,
        dir = dir.display(),
        maxc = clients + 64,
    );
    Ok(NodeConfig::from_toml_str(&text)?)
}

async fn child_main(clients: usize) -> Res<()> {
    if let Ok(f) = tracing_subscriber::EnvFilter::try_from_default_env() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(f)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let dir = tempfile::tempdir()?;
    let v = child_config(dir.path(), clients)?.validate()?;
    let tls = v.load_tls()?;
    let node = Node::start(&v, tls.as_ref()).await?;
    for i in 0..=clients {
        let name = if i == clients {
            "pub".to_owned()
        } else {
            format!("u{i}")
        };
        let a: UserAddress = format!("{name}@{}", RECEIVER.0).parse()?;
        node.users().add_user(&a, PASSWORD).await?;
    }
    emit("ready");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        match line.trim() {
            "stat" => emit(&format!(
                "stat sessions={} rss={}",
                node.router().session_count(),
                rss_kib(std::process::id())
            )),
            "quit" => break,
            _ => {}
        }
    }
    node.shutdown().await;
    Ok(())
}

/// The child, seen from the parent.
struct Child {
    proc: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    pid: u32,
}

impl Child {
    async fn spawn(clients: usize) -> Res<Self> {
        let exe = std::env::current_exe()?;
        // NODE_LOAD_WRAP="valgrind --tool=massif": run the node under a profiler.
        let wrap = std::env::var("NODE_LOAD_WRAP").unwrap_or_default();
        let mut words = wrap.split_whitespace();
        let mut cmd = match words.next() {
            Some(w) => {
                let mut c = tokio::process::Command::new(w);
                c.args(words).arg(exe);
                c
            }
            None => tokio::process::Command::new(exe),
        };
        let mut proc = cmd
            .args(["--child", "--clients", &clients.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let pid = proc.id().ok_or("child gone")?;
        let stdin = proc.stdin.take().ok_or("no stdin")?;
        let mut lines = BufReader::new(proc.stdout.take().ok_or("no stdout")?).lines();
        // Adding the accounts runs PBKDF2 for each: bounded by the setup time per 1,000.
        let bound = SETUP * u32::try_from(clients / 1000 + 1).unwrap_or(1);
        let ready = tokio::time::timeout(bound, lines.next_line()).await??;
        if ready.as_deref() != Some("ready") {
            return Err(format!("fedgate child did not start: {ready:?}").into());
        }
        Ok(Child {
            proc,
            stdin,
            lines,
            pid,
        })
    }

    async fn sessions(&mut self) -> Res<u64> {
        self.stdin.write_all(b"stat\n").await?;
        let l = tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
            .await??
            .ok_or("child closed")?;
        let v = l
            .split_whitespace()
            .find_map(|f| f.strip_prefix("sessions="))
            .ok_or_else(|| format!("bad stat line {l:?}"))?;
        Ok(v.parse()?)
    }

    async fn stop(mut self) {
        let _ = self.stdin.write_all(b"quit\n").await;
        if tokio::time::timeout(Duration::from_secs(10), self.proc.wait())
            .await
            .is_err()
        {
            let _ = self.proc.kill().await;
        }
    }
}

// ---------------------------------------------------------------------------------
// The s2s sender
// ---------------------------------------------------------------------------------

async fn sender_node(window: u64) -> Res<Sender> {
    let s2s = S2sConfig {
        local_domains: vec![DomainPart::new(SENDER.0)?],
        secret: DialbackSecret::new(b"node_load sender secret"),
        limits: Limits::default(),
        tls_available: true,
        incoming_tls: TlsPolicy::Optional,
        tls_required_peers: Vec::new(),
        id_seed: random_seed(),
    };
    let mut cfg = XmppConfig::new(s2s);
    cfg.tls = Some(XmppTls::new(self_signed(&[SENDER.0])?.identity())?);
    cfg.limits = XmppLimits {
        outbound_queue: usize::try_from(window)?.saturating_add(64),
        ..XmppLimits::default()
    };
    Sender::start(cfg, SocketAddr::from((SENDER.1, 5269))).await
}

/// A chat message whose id carries its send time (`L<µs since the epoch>`).
fn message(to: &str) -> Element {
    Element::builder("message", ns::SERVER)
        .attr("from", format!("alice@{}/load", SENDER.0))
        .attr("to", to)
        .attr("type", "chat")
        .attr("id", format!("L{}", now_us()))
        .child(Element::builder("body", ns::SERVER).text(PAD).build())
        .build()
}

// ---------------------------------------------------------------------------------
// Clients: the login (the c2s client itself is in common/mod.rs), STARTTLS unchecked
// ---------------------------------------------------------------------------------

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_client() -> Arc<rustls::ClientConfig> {
    static C: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    C.get_or_init(|| {
        let p = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(p.clone())
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.dangerous()
                    .with_custom_certificate_verifier(Arc::new(NoVerify(p)))
                    .with_no_client_auth()
            });
        Arc::new(cfg.unwrap_or_else(|e| panic!("rustls client config: {e}")))
    })
    .clone()
}

/// Logs `user@domain` in on `addr` (STARTTLS first with `tls`) and sends initial presence.
async fn login(addr: SocketAddr, domain: &str, user: &str, tls: bool) -> Res<Conn> {
    let sock = TcpStream::connect(addr).await?;
    sock.set_nodelay(true)?;
    let mut c: Conn = Conn::new(Box::new(sock));
    let mut f = c.open(domain).await?;
    if tls {
        if !contains(&f, b"<starttls") {
            return Err("STARTTLS not offered".into());
        }
        c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await?;
        let p = c.stanza().await?;
        if !p.starts_with(b"<proceed") {
            return Err("STARTTLS refused".into());
        }
        let Conn { io, .. } = c;
        let name = rustls_pki_types::ServerName::try_from(domain.to_owned())?;
        let s = tokio_rustls::TlsConnector::from(tls_client())
            .connect(name, io)
            .await?;
        c = Conn::new(Box::new(s));
        f = c.open(domain).await?;
    }
    c.sign_in(domain, user, PASSWORD, &f).await?;
    Ok(c)
}

// ---------------------------------------------------------------------------------
// Client tasks and what they count
// ---------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Counters {
    msgs: AtomicU64,
    /// Presence updates from `pub` delivered to watchers.
    pres: AtomicU64,
    /// `subscribed` answers received by watchers.
    subscribed: AtomicU64,
    /// Subscription requests `pub` approved.
    approved: AtomicU64,
    logged_in: AtomicU64,
    failed: AtomicU64,
    record: AtomicBool,
    msg_lat: Mutex<Vec<u32>>,
    pres_lat: Mutex<Vec<u32>>,
    changed: Notify,
}

impl Counters {
    async fn wait(&self, f: impl Fn(&Self) -> bool, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while !f(self) {
            if Instant::now() >= deadline {
                return false;
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), self.changed.notified()).await;
        }
        true
    }
}

fn lat_of(ts: Option<u64>) -> Option<u32> {
    ts.map(|t| u32::try_from(now_us().saturating_sub(t)).unwrap_or(u32::MAX))
}

fn push_lat(v: &Mutex<Vec<u32>>, l: Option<u32>) {
    if let Some(l) = l {
        v.lock().unwrap_or_else(PoisonError::into_inner).push(l);
    }
}

/// Handles one stanza read by a client; returns what to write back, if anything.
fn on_stanza(s: &[u8], is_pub: bool, k: &Counters) -> Option<String> {
    if s.starts_with(b"<message") {
        if contains(s, b"</body>") {
            if k.record.load(Ordering::Relaxed) {
                let ts = attr(s, "id")
                    .and_then(|id| id.strip_prefix(b"L"))
                    .and_then(digits);
                push_lat(&k.msg_lat, lat_of(ts));
            }
            k.msgs.fetch_add(1, Ordering::Relaxed);
            k.changed.notify_one();
        }
    } else if s.starts_with(b"<presence") {
        match attr(s, "type") {
            Some(b"subscribe") if is_pub => {
                let from = String::from_utf8_lossy(attr(s, "from")?).into_owned();
                k.approved.fetch_add(1, Ordering::Relaxed);
                k.changed.notify_one();
                return Some(format!("<presence type='subscribed' to='{from}'/>"));
            }
            Some(b"subscribed") if !is_pub => {
                k.subscribed.fetch_add(1, Ordering::Relaxed);
                k.changed.notify_one();
            }
            None if !is_pub => {
                if let Some(ts) = after(s, b"<status>t=").and_then(digits) {
                    push_lat(&k.pres_lat, lat_of(Some(ts)));
                    k.pres.fetch_add(1, Ordering::Relaxed);
                    k.changed.notify_one();
                }
            }
            _ => {}
        }
    } else if s.starts_with(b"<iq") && attr(s, "type") == Some(b"set") {
        // A roster push: acknowledged.
        let id = String::from_utf8_lossy(attr(s, "id")?).into_owned();
        return Some(format!("<iq type='result' id='{id}'/>"));
    }
    None
}

/// A logged-in client: counts, answers, and writes what it is told to.
async fn run_client(mut c: Conn, is_pub: bool, k: Arc<Counters>, mut cmd: mpsc::Receiver<String>) {
    loop {
        tokio::select! {
            r = c.io.read(&mut c.rbuf) => {
                let n = match r { Ok(0) | Err(_) => break, Ok(n) => n };
                c.sp.push(&c.rbuf[..n]);
                let mut out = String::new();
                while let Some(f) = c.sp.next() {
                    match f {
                        Frame::Stanza(r) => {
                            if let Some(w) = on_stanza(c.sp.get(r), is_pub, &k) {
                                out.push_str(&w);
                            }
                        }
                        Frame::Close => return,
                        Frame::Open => {}
                    }
                }
                if !out.is_empty() && c.send(&out).await.is_err() {
                    break;
                }
            }
            w = cmd.recv() => match w {
                Some(w) => if c.send(&w).await.is_err() { break },
                None => { let _ = c.send("</stream:stream>").await; break }
            }
        }
    }
}

/// The clients of one run: `pub` (index C) and the watchers `u0`…`u<C-1>`.
struct Clients {
    cmds: Vec<mpsc::Sender<String>>,
    k: Arc<Counters>,
    login_secs: f64,
}

async fn connect_all(addr: SocketAddr, domain: &str, o: &Opts) -> Res<Clients> {
    let k = Arc::new(Counters::default());
    let sem = Arc::new(Semaphore::new(LOGIN_CONCURRENCY));
    let mut cmds = Vec::new();
    let t0 = Instant::now();
    for i in 0..=o.clients {
        let is_pub = i == o.clients;
        let user = if is_pub {
            "pub".to_owned()
        } else {
            format!("u{i}")
        };
        let (tx, rx) = mpsc::channel(64);
        cmds.push(tx);
        let (k, sem, domain, tls) = (k.clone(), sem.clone(), domain.to_owned(), o.tls);
        tokio::spawn(async move {
            let permit = sem.acquire_owned().await;
            let c = tokio::time::timeout(SETUP, login(addr, &domain, &user, tls)).await;
            drop(permit);
            match c {
                Ok(Ok(c)) => {
                    k.logged_in.fetch_add(1, Ordering::Relaxed);
                    k.changed.notify_one();
                    run_client(c, is_pub, k, rx).await;
                }
                other => {
                    if k.failed.fetch_add(1, Ordering::Relaxed) < 3 {
                        let e = match other {
                            Ok(Err(e)) => e.to_string(),
                            _ => "timeout".into(),
                        };
                        eprintln!("login {user}: {e}");
                    }
                    k.changed.notify_one();
                }
            }
        });
    }
    let total = o.clients as u64 + 1;
    let bound = SETUP * u32::try_from(o.clients / 1000 + 1).unwrap_or(1);
    k.wait(
        |k| k.logged_in.load(Ordering::Relaxed) + k.failed.load(Ordering::Relaxed) >= total,
        bound,
    )
    .await;
    let ok = k.logged_in.load(Ordering::Relaxed);
    if ok < total {
        return Err(format!("only {ok} of {total} clients logged in").into());
    }
    Ok(Clients {
        cmds,
        k,
        login_secs: t0.elapsed().as_secs_f64(),
    })
}

impl Clients {
    async fn close(self) {
        drop(self.cmds);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

// ---------------------------------------------------------------------------------
// One receiving server under the load
// ---------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Report {
    name: String,
    clients: usize,
    login_secs: f64,
    rss0: u64,
    rss_idle: u64,
    rss_subs: u64,
    /// Watchers whose subscription was approved (all of them, or the run stops at 99%).
    subs: u64,
    updates: u64,
    deliveries: u64,
    pres_secs: f64,
    pres_cpu: u64,
    pres_p50: f64,
    pres_p99: f64,
    msgs: u64,
    msg_secs: f64,
    msg_cpu: u64,
    /// CPU of this process (sender and clients) in the same phase.
    load_cpu: u64,
    lat_n: u64,
    lat_sent: u64,
    lat_rate: f64,
    p50: f64,
    p99: f64,
    pmax: f64,
    returned: u64,
}

impl Report {
    fn idle_kib(&self) -> f64 {
        self.rss_idle.saturating_sub(self.rss0) as f64 / (self.clients + 1) as f64
    }
    fn sub_kib(&self) -> f64 {
        self.rss_subs.saturating_sub(self.rss_idle) as f64 / self.subs.max(1) as f64
    }
    fn msg_rate(&self) -> f64 {
        self.msgs as f64 / self.msg_secs
    }
    fn us_per_msg(&self) -> f64 {
        self.msg_cpu as f64 * TICK_US / self.msgs.max(1) as f64
    }
    fn load_us_per_msg(&self) -> f64 {
        self.load_cpu as f64 * TICK_US / self.msgs.max(1) as f64
    }
    fn update_rate(&self) -> f64 {
        self.updates as f64 / self.pres_secs
    }
    fn us_per_delivery(&self) -> f64 {
        self.pres_cpu as f64 * TICK_US / self.deliveries.max(1) as f64
    }
}

async fn run_target(
    name: &str,
    pid: u32,
    addr: SocketAddr,
    domain: &str,
    s: &Sender,
    o: &Opts,
) -> Res<Report> {
    let c = o.clients as u64;
    let mut r = Report {
        name: name.into(),
        clients: o.clients,
        ..Report::default()
    };
    // 1. Idle c2s connections.
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.rss0 = rss_kib(pid);
    let cl = connect_all(addr, domain, o).await?;
    r.login_secs = cl.login_secs;
    let k = cl.k.clone();
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.rss_idle = rss_kib(pid);

    // 2. Subscriptions: every watcher to pub.
    let pub_jid = format!("pub@{domain}");
    let mut want = 0u64;
    for batch in cl.cmds[..o.clients].chunks(SUBSCRIBE_BATCH) {
        for tx in batch {
            tx.send(format!("<presence type='subscribe' to='{pub_jid}'/>"))
                .await?;
        }
        want += batch.len() as u64;
        let w = want;
        if !k
            .wait(|k| k.subscribed.load(Ordering::Relaxed) >= w, BATCH_WAIT)
            .await
        {
            // Counted below; the run goes on with the watchers that have subscribed.
            want = k.subscribed.load(Ordering::Relaxed);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.rss_subs = rss_kib(pid);
    r.subs = k.subscribed.load(Ordering::Relaxed);
    if r.subs * 100 < c * 99 {
        return Err(format!(
            "{name}: subscriptions: {} approved, {} subscribed of {c}",
            k.approved.load(Ordering::Relaxed),
            r.subs
        )
        .into());
    }
    let c_subs = r.subs.max(1);

    // 3. Presence fan-out from pub.
    let pub_tx = &cl.cmds[o.clients];
    take(&k.pres_lat);
    let base = k.pres.load(Ordering::Relaxed);
    let cpu0 = cpu_ticks(pid);
    let t0 = Instant::now();
    let mut sent = 0u64;
    loop {
        let done = (k.pres.load(Ordering::Relaxed) - base) / c_subs;
        if done >= o.updates || t0.elapsed() > o.timeout {
            break;
        }
        while sent < o.updates && sent - done.min(sent) < PRESENCE_WINDOW {
            let show = if sent.is_multiple_of(2) {
                "away"
            } else {
                "dnd"
            };
            pub_tx
                .send(format!(
                    "<presence><show>{show}</show><status>t={}</status></presence>",
                    now_us()
                ))
                .await?;
            sent += 1;
        }
        let _ = tokio::time::timeout(Duration::from_millis(5), k.changed.notified()).await;
    }
    r.pres_secs = t0.elapsed().as_secs_f64();
    r.deliveries = k.pres.load(Ordering::Relaxed) - base;
    r.updates = r.deliveries / c_subs;
    r.pres_cpu = cpu_settled(pid).await - cpu0;
    let mut pl = take(&k.pres_lat);
    r.pres_p50 = percentile(&mut pl, 0.5);
    r.pres_p99 = percentile(&mut pl, 0.99);

    // 4. Messages over s2s, as fast as the window allows.
    let returned0 = s.returned.load(Ordering::Relaxed);
    let base0 = k.msgs.load(Ordering::Relaxed);
    s.out.send(message(&format!("u0@{domain}")))?;
    if !k
        .wait(|k| k.msgs.load(Ordering::Relaxed) > base0, SETUP)
        .await
    {
        return Err(format!("{name}: the warm-up message did not arrive").into());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let to: Vec<String> = (0..o.clients).map(|i| format!("u{i}@{domain}")).collect();
    let m = o.msg_clients.clamp(1, o.clients) as u64;
    let base = k.msgs.load(Ordering::Relaxed);
    let cpu0 = cpu_ticks(pid);
    let me = std::process::id();
    let load0 = cpu_ticks(me);
    let t0 = Instant::now();
    let mut sent = 0u64;
    loop {
        let got = k.msgs.load(Ordering::Relaxed) - base;
        if got >= o.n || t0.elapsed() > o.timeout {
            break;
        }
        while sent < o.n && sent - got.min(sent) < o.window {
            s.out.send(message(&to[(sent % m) as usize]))?;
            sent += 1;
        }
        let _ = tokio::time::timeout(Duration::from_millis(5), k.changed.notified()).await;
    }
    r.msg_secs = t0.elapsed().as_secs_f64();
    r.msgs = k.msgs.load(Ordering::Relaxed) - base;
    r.load_cpu = cpu_ticks(me) - load0;
    r.msg_cpu = cpu_settled(pid).await - cpu0;

    // 5. Latency at a fixed rate.
    take(&k.msg_lat);
    k.record.store(true, Ordering::Relaxed);
    let total = o.rate * o.lat_secs;
    let base = k.msgs.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let due = ((t0.elapsed().as_secs_f64() * o.rate as f64) as u64).min(total);
        while sent < due {
            s.out.send(message(&to[(sent % c) as usize]))?;
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    r.lat_rate = sent as f64 / t0.elapsed().as_secs_f64();
    k.wait(
        |k| k.msgs.load(Ordering::Relaxed) - base >= total,
        Duration::from_secs(10),
    )
    .await;
    k.record.store(false, Ordering::Relaxed);
    r.lat_sent = sent;
    r.lat_n = k.msgs.load(Ordering::Relaxed) - base;
    let mut l = take(&k.msg_lat);
    r.p50 = percentile(&mut l, 0.5);
    r.p99 = percentile(&mut l, 0.99);
    r.pmax = percentile(&mut l, 1.0);
    r.returned = s.returned.load(Ordering::Relaxed) - returned0;
    cl.close().await;
    Ok(r)
}

async fn run_fedgate(s: &Sender, o: &Opts) -> Res<Report> {
    let mut child = Child::spawn(o.clients).await?;
    let addr = SocketAddr::from((RECEIVER.1, 5222));
    let r = run_target("fedgate", child.pid, addr, RECEIVER.0, s, o).await;
    if let Ok(n) = child.sessions().await {
        eprintln!("fedgate child: {n} sessions at the end");
    }
    child.stop().await;
    r
}

/// Creates `pub` and `u0`…`u<C-1>` in one admin-shell call per 200 accounts.
fn prosody_users(p: &Prosody, clients: usize) -> Res<()> {
    p.register("pub", PASSWORD)?;
    for start in (0..clients).step_by(200) {
        let end = (start + 200).min(clients);
        let cmd = format!(
            "> for i = {start}, {last} do require'core.usermanager'.create_user('u'..i, '{PASSWORD}', '{d}') end",
            last = end - 1,
            d = p.domain()
        );
        p.shell(&cmd)?;
    }
    Ok(())
}

async fn run_prosody(s: &Sender, o: &Opts) -> Res<Report> {
    let (domain, ip) = hosts::PROSODY_A;
    let clients = o.clients;
    let p = tokio::task::block_in_place(|| -> Res<Prosody> {
        let p = Prosody::start(domain, ip)?;
        prosody_users(&p, clients)?;
        Ok(p)
    })?;
    let pid: u32 = std::fs::read_to_string(p.dir().join("prosody.pid"))?
        .trim()
        .parse()?;
    let r = run_target("Prosody 0.12", pid, p.c2s_addr(), domain, s, o).await;
    tokio::task::block_in_place(|| p.stop());
    r
}

// ---------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------

async fn parent_main(o: Opts) -> Res<()> {
    let _ = epoch();
    let want = |p: &str| o.peers.iter().any(|x| x == p);
    let _leases = tokio::task::block_in_place(|| -> Res<_> {
        hosts::ensure_test_hosts()?;
        Ok((
            IpLease::acquire(RECEIVER.1, LEASE)?,
            IpLease::acquire(SENDER.1, LEASE)?,
        ))
    })?;
    let s = sender_node(o.window).await?;
    let sample = message("u0@prosody-a.test").to_xml();
    println!(
        "node_load: C={} clients{} + pub, N={} messages of {} bytes to {} of them (window {}), {} s at {}/s \
         for latency, U={} presence updates to C watchers; sender {} (s2s STARTTLS + dialback)",
        o.clients,
        if o.tls {
            " (c2s STARTTLS)"
        } else {
            " (c2s plaintext, SCRAM-SHA-1)"
        },
        o.n,
        sample.len(),
        o.msg_clients.clamp(1, o.clients),
        o.window,
        o.lat_secs,
        o.rate,
        o.updates,
        SENDER.0
    );
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    if want("fedgate") {
        match run_fedgate(&s, &o).await {
            Ok(r) => rows.push(r),
            Err(e) => notes.push(format!("fedgate: {e}")),
        }
    }
    if want("prosody") && peers_or_skip(&["prosody", "prosodyctl"]) {
        match run_prosody(&s, &o).await {
            Ok(r) => rows.push(r),
            Err(e) => notes.push(format!("prosody: {e}")),
        }
    }
    drop(s);

    println!();
    println!(
        "{:<13} {:>7} {:>8} {:>10} {:>11} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>11} {:>8} {:>9} {:>9} {:>5}",
        "server",
        "msgs",
        "msg/s",
        "cpu µs/msg",
        "(load µs/m)",
        "lat rate",
        "p50 ms",
        "p99 ms",
        "max ms",
        "upd/s",
        "deliv/s",
        "µs/delivery",
        "logins/s",
        "KiB/idle",
        "KiB/sub",
        "back"
    );
    for r in &rows {
        println!(
            "{:<13} {:>7} {:>8.0} {:>10.2} {:>11.2} {:>9.0} {:>9.2} {:>9.2} {:>8.2} {:>8.1} {:>8.0} {:>11.2} {:>8.0} {:>9.1} {:>9.2} {:>5}",
            r.name,
            r.msgs,
            r.msg_rate(),
            r.us_per_msg(),
            r.load_us_per_msg(),
            r.lat_rate,
            r.p50,
            r.p99,
            r.pmax,
            r.update_rate(),
            r.deliveries as f64 / r.pres_secs,
            r.us_per_delivery(),
            (r.clients + 1) as f64 / r.login_secs,
            r.idle_kib(),
            r.sub_kib(),
            r.returned
        );
    }
    for r in &rows {
        println!(
            "{}: VmRSS {} -> {} KiB after {} logins -> {} KiB after {} subscriptions; presence latency p50 {:.2} ms \
             p99 {:.2} ms (window {PRESENCE_WINDOW}); latency run {} of {} counted",
            r.name,
            r.rss0,
            r.rss_idle,
            r.clients + 1,
            r.rss_subs,
            r.subs,
            r.pres_p50,
            r.pres_p99,
            r.lat_n,
            r.lat_sent
        );
    }
    if let Some(f) = rows.iter().find(|r| r.name == "fedgate") {
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        println!(
            "targets (fedgate): {:.0} msg/s >= 50000: {}; p99 {:.2} ms < 10 ms at {:.0}/s: {}; \
             {:.1} KiB per idle c2s <= 16: {}; {:.2} KiB per subscription <= 1: {}",
            f.msg_rate(),
            verdict(f.msg_rate() >= 50_000.0),
            f.p99,
            f.lat_rate,
            verdict(f.p99 < 10.0),
            f.idle_kib(),
            verdict(f.idle_kib() <= 16.0),
            f.sub_kib(),
            verdict(f.sub_kib() <= 1.0)
        );
        for p in rows.iter().filter(|r| r.name != "fedgate") {
            let ratio = f.msg_rate() / p.msg_rate();
            println!(
                "fedgate : {} messages/s = {ratio:.1}x (target >= 5x: {}); CPU per message {:.3}; \
                 presence updates/s {:.1}x",
                p.name,
                verdict(ratio >= 5.0),
                f.us_per_msg() / p.us_per_msg(),
                f.update_rate() / p.update_rate()
            );
        }
    }
    for n in notes {
        println!("not measured: {n}");
    }
    Ok(())
}
