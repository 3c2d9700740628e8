//! A load program for the XMPP s2s driver, on loopback: the same flood from the same
//! sender into three receivers (fedgate, Prosody 0.12, ejabberd 23.01) in one run, and
//! the memory of idle authenticated inbound s2s streams in fedgate.
//!
//! ```text
//! cargo run --release -p fedgate-node --example s2s_load -- \
//!     [--n 20000] [--k 500] [--window 1024] [--timeout 180] [--peers fedgate,prosody,ejabberd]
//! ```
//! Run as root with the test hosts (`fedgate_testkit::hosts`) and the peers installed,
//! like the interop tests; a missing peer is skipped with a line on stderr (failed with
//! `FEDGATE_REQUIRE_PEERS=1`).
//!
//! **Sender** (this process): fedgate's own [`S2sOutbound`] for `fedgate-b.test`
//! (127.0.0.11), with an [`S2sListener`] on 127.0.0.11:5269 so that receivers can verify
//! its dialback keys. One link per receiver: STARTTLS when offered (all three offer
//! it), then dialback. Each receiver first gets one warm-up message (the link is
//! negotiated and verified before measuring), then N `<message type='chat'>` of about
//! 300 bytes with at most `window` messages sent and not yet counted at the receiver;
//! the link's queue is `window` deep, so nothing is ever bounced for a full queue.
//!
//! **Receivers**, each measured from `/proc/<pid>/stat` (utime + stime, all threads,
//! 10 ms ticks) and `/proc/<pid>/status` (VmRSS) just before the first message and
//! after the N-th is counted and the receiver's CPU has stopped rising (read every
//! 200 ms until two reads agree, at most 3 s):
//! - **fedgate**: this program re-executed with `--child`: an [`S2sListener`] for
//!   `fedgate-a.test` on 127.0.0.10:5269 (self-signed certificate, STARTTLS offered)
//!   whose sink counts and drops. The child reports its count on stdout every 256
//!   stanzas and every 5 ms while it changes.
//! - **Prosody** (`prosody-a.test`, 127.0.0.2) and **ejabberd** (`ejabberd-c.test`,
//!   127.0.0.3, process `beam.smp`): delivery to `bob`, logged in with the testkit's
//!   slixmpp client, so the receiver's work is s2s in + routing + c2s out (the same
//!   split as research/xmpp.md §3). Counted: `message` lines printed by the client.
//!   The client's own CPU is not counted; the end-to-end rate of these two is bounded
//!   by the Python client (fedgate's sink does no c2s work: the comparison favours
//!   fedgate by the cost of one c2s write per message).
//!
//! **Idle streams** (fedgate only): a fresh child; this process hosts K more domains
//! `m<i>.load.test` (dialback authority on 127.0.0.11:5270, which the child reaches by
//! SRV) and sends one message from each, so the child ends up with K authenticated
//! inbound streams (TLS + dialback), each then idle. VmRSS growth of the child / K,
//! measured after one warm-up stream and 1 s after the last message: it includes what
//! the allocator kept from the K dialback verifications, so it is an upper bound.
//!
//! Build without `--release` for a quick check; figures for the record need `--release`.

#[path = "common/mod.rs"]
mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{PAD, Res, Sender, emit};
use fedgate_node::tls::self_signed;
use fedgate_node::xmpp::{
    InboundStanza, S2sListener, S2sOutbound, XmppConfig, XmppLimits, XmppTls, random_seed,
};
use fedgate_srv::{SrvRecord, StaticLookup};
use fedgate_testkit::{Ejabberd, IpLease, Prosody, SLIXMPP, XmppClient, hosts, peers_or_skip};
use fedgate_xmpp::dialback::DialbackSecret;
use fedgate_xmpp::s2s::{S2sConfig, TlsPolicy};
use fedgate_xmpp::{DomainPart, Element, Limits, ns};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, mpsc};

const RECEIVER: &str = "fedgate-a.test";
const RECEIVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);
const SENDER: &str = "fedgate-b.test";
const SENDER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
/// The dialback authority of the idle-stream domains (on `SENDER_IP`).
const MEM_AUTH_PORT: u16 = 5270;
const MEM_AUTH_HOST: &str = "authority.load.test";
const LEASE: Duration = Duration::from_secs(900);
/// Login, warm-up message, one idle-stream batch.
const SETUP: Duration = Duration::from_secs(45);
/// Idle-stream links opened at once.
const MEM_BATCH: usize = 50;

fn d(s: &str) -> Res<DomainPart> {
    Ok(DomainPart::new(s)?)
}

fn mem_domain(i: usize) -> String {
    format!("m{i}.load.test")
}

#[derive(Debug, Clone)]
struct Opts {
    n: u64,
    k: usize,
    window: u64,
    timeout: Duration,
    peers: Vec<String>,
    child: bool,
}

fn parse_args() -> Res<Opts> {
    let mut o = Opts {
        n: 20_000,
        k: 500,
        window: 1024,
        timeout: Duration::from_secs(180),
        peers: vec!["fedgate".into(), "prosody".into(), "ejabberd".into()],
        child: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--n" => o.n = val()?.parse()?,
            "--k" => o.k = val()?.parse()?,
            "--window" => o.window = val()?.parse::<u64>()?.max(1),
            "--timeout" => o.timeout = Duration::from_secs(val()?.parse()?),
            "--peers" => o.peers = val()?.split(',').map(str::to_owned).collect(),
            "--child" => o.child = true,
            "-h" | "--help" => {
                println!(
                    "s2s_load [--n N] [--k K] [--window W] [--timeout SECS] [--peers fedgate,prosody,ejabberd]"
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
        rt.block_on(child_main(o.k))
    } else {
        rt.block_on(parent_main(o))
    }
}

// ---------------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------------

/// utime + stime of the whole process, in clock ticks (USER_HZ = 100 on Linux).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

const TICK_US: f64 = 10_000.0;

/// Time on CPU of all live threads, in ns (`/proc/<pid>/task/*/schedstat`, first
/// field): a finer cross-check of the 10 ms ticks (threads that exit are lost).
fn sched_ns(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

fn pid_from_file(path: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The `beam.smp` process whose command line mentions `needle` (ejabberd's directory).
fn find_beam(needle: &str) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if comm(pid) != "beam.smp" {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(needle) {
            return Some(pid);
        }
    }
    None
}

// ---------------------------------------------------------------------------------
// The fedgate receiver (child process)
// ---------------------------------------------------------------------------------

fn node_config(
    domains: Vec<DomainPart>,
    secret: &[u8],
    cert_name: &str,
    k: usize,
) -> Res<XmppConfig> {
    let s2s = S2sConfig {
        local_domains: domains,
        secret: DialbackSecret::new(secret),
        limits: Limits::default(),
        tls_available: true,
        incoming_tls: TlsPolicy::Optional,
        tls_required_peers: Vec::new(),
        id_seed: random_seed(),
    };
    let mut cfg = XmppConfig::new(s2s);
    cfg.tls = Some(XmppTls::new(self_signed(&[cert_name])?.identity())?);
    cfg.limits = XmppLimits {
        max_inbound: k + 64,
        max_inbound_per_ip: k + 64,
        max_outbound_links: k + 64,
        ..XmppLimits::default()
    };
    Ok(cfg)
}

async fn child_main(k: usize) -> Res<()> {
    let mut cfg = node_config(vec![d(RECEIVER)?], b"s2s_load receiver", RECEIVER, k)?;
    cfg.limits.max_verifications = 256;
    let mut lookup = StaticLookup::new();
    lookup.add_host(SENDER, SENDER_IP.into());
    lookup.add_host(MEM_AUTH_HOST, SENDER_IP.into());
    for i in 0..=k {
        let name = if i == k {
            "warm.load.test".to_owned()
        } else {
            mem_domain(i)
        };
        lookup.add_srv(
            &format!("_xmpp-server._tcp.{name}"),
            SrvRecord::new(0, 0, MEM_AUTH_PORT, MEM_AUTH_HOST),
        );
    }
    let (tx, mut rx) = mpsc::channel::<InboundStanza>(1024);
    let outbound = S2sOutbound::new(cfg, lookup, tx)?;
    let listener = S2sListener::bind(SocketAddr::from((RECEIVER_IP, 5269)), &outbound).await?;
    let count = Arc::new(AtomicU64::new(0));
    let bounces = Arc::new(AtomicU64::new(0));
    // The sink: count and drop.
    {
        let (count, bounces) = (count.clone(), bounces.clone());
        tokio::spawn(async move {
            let mut c = 0u64;
            while let Some(s) = rx.recv().await {
                if s.bounce {
                    bounces.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                c += 1;
                count.store(c, Ordering::Relaxed);
                if c.is_multiple_of(256) {
                    emit(&format!("p {c}"));
                }
            }
        });
    }
    // Progress between the every-256 lines.
    {
        let count = count.clone();
        tokio::spawn(async move {
            let mut last = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            loop {
                tick.tick().await;
                let c = count.load(Ordering::Relaxed);
                if c != last {
                    last = c;
                    emit(&format!("p {c}"));
                }
            }
        });
    }
    emit("ready");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        match line.trim() {
            "stat" => emit(&format!(
                "stat count={} rss={} conns={} bounces={}",
                count.load(Ordering::Relaxed),
                rss_kib(std::process::id()).unwrap_or(0),
                listener.connection_count(),
                bounces.load(Ordering::Relaxed)
            )),
            "quit" => break,
            _ => {}
        }
    }
    drop(listener);
    Ok(())
}

/// The child process, seen from the parent.
struct Child {
    proc: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    pid: u32,
    progress: Arc<Progress>,
    stats: mpsc::Receiver<String>,
}

impl Child {
    async fn spawn(k: usize) -> Res<Self> {
        let exe = std::env::current_exe()?;
        let mut proc = tokio::process::Command::new(exe)
            .args(["--child", "--k", &k.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let pid = proc.id().ok_or("child gone")?;
        let stdin = proc.stdin.take().ok_or("no stdin")?;
        let stdout = proc.stdout.take().ok_or("no stdout")?;
        let progress = Arc::new(Progress::default());
        let (tx, mut stats) = mpsc::channel(16);
        let p = progress.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if let Some(n) = l.strip_prefix("p ").and_then(|n| n.parse().ok()) {
                    p.set(n);
                } else if tx.send(l).await.is_err() {
                    break;
                }
            }
        });
        let ready = tokio::time::timeout(SETUP, stats.recv()).await?;
        if ready.as_deref() != Some("ready") {
            return Err(format!("child did not start: {ready:?}").into());
        }
        Ok(Child {
            proc,
            stdin,
            pid,
            progress,
            stats,
        })
    }

    /// `(count, rss KiB, open inbound connections, bounces)`.
    async fn stat(&mut self) -> Res<(u64, u64, u64, u64)> {
        self.stdin.write_all(b"stat\n").await?;
        let l = tokio::time::timeout(Duration::from_secs(10), self.stats.recv())
            .await?
            .ok_or("child closed")?;
        let get = |k: &str| -> Res<u64> {
            let v = l
                .split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{k}=")).map(str::to_owned))
                .ok_or_else(|| format!("no {k} in {l:?}"))?;
            Ok(v.parse()?)
        };
        Ok((get("count")?, get("rss")?, get("conns")?, get("bounces")?))
    }

    async fn stop(mut self) {
        let _ = self.stdin.write_all(b"quit\n").await;
        if tokio::time::timeout(Duration::from_secs(5), self.proc.wait())
            .await
            .is_err()
        {
            let _ = self.proc.kill().await;
        }
    }
}

// ---------------------------------------------------------------------------------
// The sender and the flood
// ---------------------------------------------------------------------------------

/// Messages counted at a receiver.
#[derive(Debug, Default)]
struct Progress {
    n: AtomicU64,
    changed: Notify,
}

impl Progress {
    fn set(&self, n: u64) {
        self.n.store(n, Ordering::Relaxed);
        self.changed.notify_one();
    }
    fn get(&self) -> u64 {
        self.n.load(Ordering::Relaxed)
    }
    async fn wait_for(&self, n: u64, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.get() < n {
            if Instant::now() >= deadline {
                return false;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), self.changed.notified()).await;
        }
        true
    }
}

async fn sender_node(
    domains: Vec<DomainPart>,
    secret: &[u8],
    port: u16,
    window: u64,
    k: usize,
) -> Res<Sender> {
    let mut cfg = node_config(domains, secret, SENDER, k)?;
    cfg.limits.outbound_queue = usize::try_from(window)?.saturating_add(16);
    Sender::start(cfg, SocketAddr::from((SENDER_IP, port))).await
}

fn message(from: &str, to: &str, i: u64) -> Element {
    Element::builder("message", ns::SERVER)
        .attr("from", from)
        .attr("to", to)
        .attr("type", "chat")
        .attr("id", format!("load{i:07}"))
        .child(Element::builder("body", ns::SERVER).text(PAD).build())
        .build()
}

#[derive(Debug, Default)]
struct Row {
    name: String,
    process: String,
    reached: u64,
    secs: f64,
    cpu_ticks: u64,
    sched_ns: u64,
    rss_before: u64,
    rss_after: u64,
    returned: u64,
}

impl Row {
    fn us_per_msg(&self) -> f64 {
        if self.reached == 0 {
            return f64::NAN;
        }
        self.cpu_ticks as f64 * TICK_US / self.reached as f64
    }
    fn sched_us_per_msg(&self) -> f64 {
        self.sched_ns as f64 / 1000.0 / self.reached.max(1) as f64
    }
}

async fn flood(
    s: &Sender,
    name: &str,
    to: &str,
    pid: u32,
    progress: &Progress,
    o: &Opts,
) -> Res<Row> {
    let from = format!("alice@{SENDER}/load");
    // Warm-up: the link is negotiated (STARTTLS + dialback, verified back) first.
    let base0 = progress.get();
    s.out.send(message(&from, to, 0))?;
    if !progress.wait_for(base0 + 1, SETUP).await {
        return Err(format!("{name}: the warm-up message did not arrive").into());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let returned0 = s.returned.load(Ordering::Relaxed);
    let base = progress.get();
    let (cpu0, rss0) = (cpu_ticks(pid).ok_or("no stat")?, rss_kib(pid).unwrap_or(0));
    let sched0 = sched_ns(pid);
    let t0 = Instant::now();
    let mut sent = 0u64;
    loop {
        let got = progress.get() - base;
        if got >= o.n || t0.elapsed() > o.timeout {
            break;
        }
        while sent < o.n && sent - got.min(sent) < o.window {
            s.out.send(message(&from, to, sent + 1))?;
            sent += 1;
        }
        let _ = tokio::time::timeout(Duration::from_millis(20), progress.changed.notified()).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let reached = progress.get() - base;
    // Until the receiver's CPU stops rising.
    let mut last = cpu_ticks(pid).ok_or("no stat")?;
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let c = cpu_ticks(pid).ok_or("no stat")?;
        if c == last {
            break;
        }
        last = c;
    }
    Ok(Row {
        name: name.into(),
        process: format!("{} (pid {pid})", comm(pid)),
        reached,
        secs,
        cpu_ticks: last - cpu0,
        sched_ns: sched_ns(pid).saturating_sub(sched0),
        rss_before: rss0,
        rss_after: rss_kib(pid).unwrap_or(0),
        returned: s.returned.load(Ordering::Relaxed) - returned0,
    })
}

/// A testkit client counting `message` lines into `progress` (its own thread).
fn count_client(mut c: XmppClient, progress: Arc<Progress>, total: u64, within: Duration) {
    std::thread::spawn(move || {
        let mut n = 0;
        while n < total {
            match c.expect(|l| l.starts_with("message "), within) {
                Ok(_) => {
                    n += 1;
                    progress.set(n);
                }
                Err(e) => {
                    eprintln!("client of {}: {e}", c.jid());
                    break;
                }
            }
        }
        c.quit();
    });
}

async fn run_fedgate(s: &Sender, o: &Opts) -> Res<Row> {
    let mut child = Child::spawn(0).await?;
    let to = format!("someone@{RECEIVER}");
    let r = flood(s, "fedgate", &to, child.pid, &child.progress.clone(), o).await;
    if let Ok((c, _, conns, b)) = child.stat().await {
        eprintln!("fedgate child: count={c} conns={conns} bounces={b}");
    }
    child.stop().await;
    r
}

async fn run_peer(s: &Sender, o: &Opts, ejabberd: bool) -> Res<Row> {
    let (domain, ip) = if ejabberd {
        hosts::EJABBERD_C
    } else {
        hosts::PROSODY_A
    };
    let bob = format!("bob@{domain}");
    let total = o.n + 1;
    let within = o.timeout;
    // Prosody or ejabberd, and bob logged in.
    let (pros, ej, client, pid) = tokio::task::block_in_place(|| -> Res<_> {
        if ejabberd {
            let ej = Ejabberd::start(domain, ip)?;
            ej.register("bob", "pw")?;
            let c = XmppClient::connect(&bob, "pw", ip)?;
            let pid = pid_from_file(&ej.dir().join("ejabberd.pid"))
                .filter(|p| comm(*p) == "beam.smp")
                .or_else(|| find_beam(&ej.dir().display().to_string()))
                .ok_or("no beam.smp for ejabberd")?;
            Ok((None, Some(ej), c, pid))
        } else {
            let p = Prosody::start(domain, ip)?;
            p.register("bob", "pw")?;
            let c = XmppClient::connect(&bob, "pw", ip)?;
            let pid = pid_from_file(&p.dir().join("prosody.pid")).ok_or("no prosody.pid")?;
            Ok((Some(p), None, c, pid))
        }
    })?;
    let progress = Arc::new(Progress::default());
    count_client(client, progress.clone(), total, within);
    let name = if ejabberd {
        "ejabberd 23.01"
    } else {
        "Prosody 0.12"
    };
    let r = flood(s, name, &bob, pid, &progress, o).await;
    tokio::task::block_in_place(|| {
        if let Some(p) = pros {
            p.stop();
        }
        if let Some(e) = ej
            && let Err(e) = e.stop()
        {
            eprintln!("ejabberd stop: {e}");
        }
    });
    r
}

/// K idle authenticated inbound streams in a fresh fedgate child.
async fn idle_streams(o: &Opts) -> Res<String> {
    let k = o.k;
    let mut domains = vec![d("warm.load.test")?];
    for i in 0..k {
        domains.push(d(&mem_domain(i))?);
    }
    let s = sender_node(domains, b"s2s_load idle authority", MEM_AUTH_PORT, 64, k).await?;
    let mut child = Child::spawn(k).await?;
    let to = format!("someone@{RECEIVER}");
    s.out.send(message("x@warm.load.test", &to, 0))?;
    if !child.progress.wait_for(1, SETUP).await {
        return Err("idle streams: warm-up stream did not authenticate".into());
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (_, rss0, conns0, _) = child.stat().await?;
    let t0 = Instant::now();
    for start in (0..k).step_by(MEM_BATCH) {
        let end = (start + MEM_BATCH).min(k);
        for i in start..end {
            s.out
                .send(message(&format!("x@{}", mem_domain(i)), &to, i as u64))?;
        }
        if !child.progress.wait_for(1 + end as u64, SETUP).await {
            eprintln!(
                "idle streams: only {} of {end} authenticated",
                child.progress.get() - 1
            );
            break;
        }
    }
    let setup = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (count, rss1, conns1, _) = child.stat().await?;
    child.stop().await;
    let opened = conns1.saturating_sub(conns0);
    let delta = rss1.saturating_sub(rss0);
    Ok(format!(
        "idle s2s streams in fedgate: {opened} of {k} opened (stanzas {}, set-up {:.1} s), VmRSS {rss0} -> {rss1} KiB: \
         {:.1} KiB per stream (target <= 32 KiB)",
        count - 1,
        setup.as_secs_f64(),
        delta as f64 / opened.max(1) as f64
    ))
}

async fn parent_main(o: Opts) -> Res<()> {
    let want = |p: &str| o.peers.iter().any(|x| x == p);
    let _leases = tokio::task::block_in_place(|| -> Res<_> {
        hosts::ensure_test_hosts()?;
        Ok((
            IpLease::acquire(RECEIVER_IP, LEASE)?,
            IpLease::acquire(SENDER_IP, LEASE)?,
        ))
    })?;
    let s = sender_node(vec![d(SENDER)?], b"s2s_load sender", 5269, o.window, 0).await?;
    let sample = message(&format!("alice@{SENDER}/load"), "bob@prosody-a.test", 1).to_xml();
    println!(
        "s2s_load: N={} messages of {} bytes, window {}, K={} idle streams; sender fedgate-b.test (STARTTLS + dialback)",
        o.n,
        sample.len(),
        o.window,
        o.k
    );
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    if want("fedgate") {
        match run_fedgate(&s, &o).await {
            Ok(r) => rows.push(r),
            Err(e) => notes.push(format!("fedgate: {e}")),
        }
    }
    if want("prosody") && peers_or_skip(&["prosody", "prosodyctl", SLIXMPP]) {
        match run_peer(&s, &o, false).await {
            Ok(r) => rows.push(r),
            Err(e) => notes.push(format!("prosody: {e}")),
        }
    }
    if want("ejabberd") && peers_or_skip(&["ejabberdctl", "erl", SLIXMPP]) {
        match run_peer(&s, &o, true).await {
            Ok(r) => rows.push(r),
            Err(e) => notes.push(format!("ejabberd: {e}")),
        }
    }
    drop(s);
    let mem = if want("fedgate") && o.k > 0 {
        Some(
            idle_streams(&o)
                .await
                .unwrap_or_else(|e| format!("idle streams: {e}")),
        )
    } else {
        None
    };

    println!();
    println!(
        "{:<15} {:>7} {:>7} {:>8} {:>10} {:>10} {:>9} {:>9} {:>5}  process",
        "receiver",
        "reached",
        "secs",
        "msg/s",
        "cpu µs/msg",
        "(sched µs)",
        "RSS0 KiB",
        "RSS1 KiB",
        "back"
    );
    for r in &rows {
        println!(
            "{:<15} {:>7} {:>7.3} {:>8.0} {:>10.2} {:>10.2} {:>9} {:>9} {:>5}  {}",
            r.name,
            r.reached,
            r.secs,
            r.reached as f64 / r.secs,
            r.us_per_msg(),
            r.sched_us_per_msg(),
            r.rss_before,
            r.rss_after,
            r.returned,
            r.process
        );
    }
    let fg = rows.iter().find(|r| r.name == "fedgate");
    for r in rows.iter().filter(|r| r.name != "fedgate") {
        if let Some(f) = fg {
            let ratio = f.us_per_msg() / r.us_per_msg();
            let sched = f.sched_us_per_msg() / r.sched_us_per_msg();
            let verdict = match (r.name.starts_with("Prosody"), ratio <= 0.2) {
                (true, true) => " (target <= 0.20: met)",
                (true, false) => " (target <= 0.20: NOT met)",
                _ => "",
            };
            println!(
                "CPU per message fedgate : {} = {ratio:.3} (schedstat: {sched:.3}){verdict}",
                r.name
            );
        }
    }
    if let Some(m) = mem {
        println!("{m}");
    }
    for n in notes {
        println!("not measured: {n}");
    }
    Ok(())
}
