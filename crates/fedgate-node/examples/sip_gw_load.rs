//! A load program for the SIP gateway of the federation node (issue #8), on loopback:
//! NOTIFYs from a SIP federation partner turned into `<presence/>` for logged-in local
//! clients, and MESSAGEs in established session-mode IM dialogs both ways.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/tgt/sipgwload cargo run --release -p fedgate-node \
//!     --example sip_gw_load -- [--clients 100] [--remote 10] [--notifies 200000] \
//!     [--messages 200000] [--window 1000] [--pidf] [--timeout 120]
//! ```
//!
//! Everything runs in this process, on two tokio runtimes so that the node's tasks and
//! the load's tasks do not share worker threads:
//!
//! - **Node** (runtime "node", 2 workers): a full [`Node`] for `fedgate-a.test` with
//!   c2s on 127.0.0.10 (plain TCP, `require_tls = false`), the SIP gateway with a TCP
//!   listener on 127.0.0.10, `lync.test` a SIP-federated domain whose static target is
//!   the partner below (`outbound_transport = "tcp"`), SQLite in a temporary folder,
//!   accounts `u0`…`u<K-1>`, `limits.node.outbound_queue` raised from 64 to
//!   [`OUTBOUND_QUEUE`] so that the window, not that queue, bounds what is in flight
//!   (the gateway's ops queue, `limits.node.inbound_queue`, stays at its default 1024:
//!   a window above it makes the node bounce messages with `resource-constraint`, its
//!   documented backpressure). Ports are ephemeral (`:0`), so, like the single-node tests
//!   of `tests/sip_federation.rs`, no [`IpLease`](fedgate_testkit::IpLease) is needed.
//! - **Partner** (runtime "load"): a minimal Lync-like SIP peer written here over TCP on
//!   127.0.0.1, framing and parsing with fedgate-sip's [`StreamFramer`], building its
//!   messages as text. It answers SUBSCRIBE 200 (and sends the initial NOTIFY), INVITE
//!   200, MESSAGE/BYE 200; it sends NOTIFYs in the node's subscription dialogs (on the
//!   connection the SUBSCRIBE came on, as SIPp does in
//!   `tests/sipp/lync_notifier_uas.xml`), and opens its own sessions (INVITE → 200 →
//!   ACK) over a connection to the node's SIP listener.
//! - **Clients** (runtime "load"): `K` raw c2s streams (SCRAM-SHA-1, bind, roster,
//!   initial presence) that count what arrives with a stanza splitter, no XML parsing.
//!
//! Phases (each bounded by `--timeout` seconds per wait):
//! 1. *setup*: log in; each `u<i>` subscribes to `b0`…`b<M-1>@lync.test` (K·M SUBSCRIBEs
//!    from the node, K·M `subscribed` and initial presences at the clients).
//! 2. **A, NOTIFY → presence**: the partner sends `--notifies` NOTIFYs round-robin over
//!    the K·M dialogs (Microsoft `msrtc-event-categories` availability 3500 with a note,
//!    or PIDF with `--pidf`); at most `window` NOTIFYs are sent and not yet seen as
//!    `<presence/>` by a client. Rate = presences counted / time from the first send to
//!    the last presence. Latency (send call → client read, under that load): Table 1
//!    drops an Available user's note, so no timestamp can ride in `<status/>`; the
//!    partner queues each NOTIFY's send time per dialog, and the client takes the
//!    oldest of its (remote, local) pair for each presence (one dialog's NOTIFYs travel
//!    one connection and the gateway's single event task, so they stay in order).
//! 3. *sessions*: the partner opens one session per client (`b<i % M>` → `u<i>`).
//! 4. **B1, partner → client**: `--messages` MESSAGEs round-robin over the sessions,
//!    body `t=<µs> …`, window as above, counted as `<message/>` at the clients.
//! 5. **B2, client → partner**: `--messages` `<message type='chat'/>` from the clients to
//!    their session peer; the node reuses the partner's session (no INVITE); counted as
//!    MESSAGEs at the partner.
//! 6. **B3, both ways at once**: half of `--messages` each way, concurrently.
//!
//! Build without `--release` for a quick check (`tests/sip_gw_load_smoke.rs` runs
//! [`run`] with tiny counts); figures for the record need `--release`.

#[path = "common/mod.rs"]
mod common;

use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{
    Conn, Frame, Res, Splitter, after, attr, contains, digits, epoch, find, now_us, percentile,
    take, text,
};
use fedgate_node::config::{NodeConfig, SipTransportKind};
use fedgate_node::core::Node;
use fedgate_policy::UserAddress;
use fedgate_sip::{Frame as SipFrame, HeaderKind, Limits, Message, StreamFramer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const DOMAIN: &str = "fedgate-a.test";
const NODE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);
const PEER_DOMAIN: &str = "lync.test";
const PEER_IP: Ipv4Addr = Ipv4Addr::LOCALHOST;
const PASSWORD: &str = "load-pw";
/// `limits.node.outbound_queue` of the node (default 64 messages per connection): with
/// at most 2 connections per SIP target, the default would turn a window of more than
/// 128 MESSAGEs towards the partner into 503s (bounced as `internal-server-error`).
const OUTBOUND_QUEUE: usize = 4096;
const PAD: &str =
    "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.";

/// What one run does.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Local clients (K).
    pub clients: usize,
    /// Remote (Lync) users each client watches (M).
    pub remote: usize,
    /// NOTIFYs in phase A.
    pub notifies: u64,
    /// MESSAGEs in phase B1 and in B2 (B3: half each way).
    pub messages: u64,
    /// Sent and not yet counted, at most.
    pub window: u64,
    /// PIDF bodies instead of Microsoft's categories.
    pub pidf: bool,
    /// Bound of each wait, seconds.
    pub timeout: u64,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            clients: 100,
            remote: 10,
            notifies: 200_000,
            messages: 200_000,
            window: 1000,
            pidf: false,
            timeout: 120,
        }
    }
}

fn parse_args() -> Res<Opts> {
    let mut o = Opts::default();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut v = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--clients" => o.clients = v()?.parse()?,
            "--remote" => o.remote = v()?.parse()?,
            "--notifies" => o.notifies = v()?.parse()?,
            "--messages" => o.messages = v()?.parse()?,
            "--window" => o.window = v()?.parse()?,
            "--timeout" => o.timeout = v()?.parse()?,
            "--pidf" => o.pidf = true,
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    if o.clients == 0 || o.remote == 0 || o.window == 0 {
        return Err("--clients, --remote and --window must be positive".into());
    }
    Ok(o)
}

fn main() -> Res<()> {
    let o = parse_args()?;
    if let Ok(f) = tracing_subscriber::EnvFilter::try_from_default_env() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(f)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let r = run(&o)?;
    println!("{}", r.render(&o));
    Ok(())
}

// ---------------------------------------------------------------------------------
// Counters shared by the partner and the clients
// ---------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Counters {
    logged_in: AtomicU64,
    /// `<presence type='subscribed'/>` from lync.test at the clients.
    subscribed: AtomicU64,
    /// Other `<presence/>` from lync.test at the clients.
    presences: AtomicU64,
    /// `<message/>` with a body from lync.test at the clients.
    c_msgs: AtomicU64,
    /// Stanza errors at the clients.
    c_errors: AtomicU64,
    /// SIP MESSAGEs the partner received.
    p_msgs: AtomicU64,
    /// INVITEs the node sent to the partner (0 when it reuses the partner's sessions).
    node_invites: AtomicU64,
    /// Final responses the partner got for its NOTIFYs / MESSAGEs / INVITEs.
    notify_ok: AtomicU64,
    msg_ok: AtomicU64,
    sip_errors: AtomicU64,
    pres_lat: Mutex<Vec<u32>>,
    /// Send times of the NOTIFYs in flight, per (local `u<i>`, remote `b<j>`).
    sent_at: Mutex<HashMap<(u32, u32), VecDeque<u64>>>,
    c_lat: Mutex<Vec<u32>>,
    p_lat: Mutex<Vec<u32>>,
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn inc(a: &AtomicU64) -> u64 {
    a.fetch_add(1, Ordering::Relaxed)
}

fn push_lat(v: &Mutex<Vec<u32>>, t: Option<u64>) {
    if let Some(t) = t {
        let l = u32::try_from(now_us().saturating_sub(t)).unwrap_or(u32::MAX);
        v.lock().unwrap_or_else(PoisonError::into_inner).push(l);
    }
}

/// Waits (polling every millisecond) until `f` holds, at most `within`.
async fn wait(what: &str, within: Duration, f: impl Fn() -> bool) -> Res<()> {
    let deadline = Instant::now() + within;
    while !f() {
        if Instant::now() >= deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// The XMPP clients (the c2s client of examples/common)
// ---------------------------------------------------------------------------------

/// Logs `user` in on `addr` (plain TCP, SCRAM-SHA-1), binds, gets the roster and sends
/// initial presence.
async fn login(addr: SocketAddr, user: &str) -> Res<Conn<TcpStream>> {
    let io = TcpStream::connect(addr).await?;
    io.set_nodelay(true)?;
    let mut c = Conn::new(io);
    let f = c.open(DOMAIN).await?;
    c.sign_in(DOMAIN, user, PASSWORD, &f).await?;
    Ok(c)
}

/// Handles one stanza read by a client; returns what to write back, if anything.
fn on_stanza(s: &[u8], k: &Counters) -> Option<String> {
    let from_peer = attr(s, "from").is_some_and(|f| contains(f, b"@lync.test"));
    if s.starts_with(b"<presence") && from_peer {
        match attr(s, "type") {
            Some(b"subscribed") => {
                inc(&k.subscribed);
            }
            Some(b"error") => {
                if inc(&k.c_errors) < 3 {
                    eprintln!("client: {}", text(s));
                }
            }
            Some(b"subscribe" | b"unsubscribe" | b"unsubscribed") => {}
            _ => {
                let local = attr(s, "to")
                    .and_then(|t| t.strip_prefix(b"u"))
                    .and_then(digits);
                let remote = attr(s, "from")
                    .and_then(|t| t.strip_prefix(b"b"))
                    .and_then(digits);
                if let (Some(i), Some(j)) = (local, remote) {
                    let key = (i as u32, j as u32);
                    let t = k
                        .sent_at
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_mut(&key)
                        .and_then(VecDeque::pop_front);
                    push_lat(&k.pres_lat, t);
                }
                inc(&k.presences);
            }
        }
    } else if s.starts_with(b"<message") {
        if attr(s, "type") == Some(b"error") {
            if inc(&k.c_errors) < 3 {
                eprintln!("client: {}", text(s));
            }
        } else if from_peer && contains(s, b"</body>") {
            push_lat(&k.c_lat, after(s, b"<body>t=").and_then(digits));
            inc(&k.c_msgs);
        }
    } else if s.starts_with(b"<iq") && attr(s, "type") == Some(b"set") {
        let id = text(attr(s, "id")?);
        return Some(format!("<iq type='result' id='{id}'/>"));
    }
    None
}

/// Reads and counts; answers roster pushes through `tx`.
async fn client_reader(
    mut r: OwnedReadHalf,
    mut sp: Splitter,
    k: Arc<Counters>,
    tx: mpsc::UnboundedSender<String>,
) {
    let mut rbuf = vec![0u8; 64 * 1024];
    loop {
        while let Some(f) = sp.next() {
            match f {
                Frame::Stanza(range) => {
                    if let Some(w) = on_stanza(sp.get(range), &k) {
                        let _ = tx.send(w);
                    }
                }
                Frame::Close => return,
                Frame::Open => {}
            }
        }
        match r.read(&mut rbuf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => sp.push(&rbuf[..n]),
        }
    }
}

/// Writes what it is given, coalescing what is queued.
async fn writer<W: AsyncWriteExt + Unpin, T: AsRef<[u8]>>(
    mut w: W,
    mut rx: mpsc::UnboundedReceiver<T>,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        buf.clear();
        buf.extend_from_slice(first.as_ref());
        while buf.len() < 256 * 1024 {
            match rx.try_recv() {
                Ok(m) => buf.extend_from_slice(m.as_ref()),
                Err(_) => break,
            }
        }
        if w.write_all(&buf).await.is_err() {
            return;
        }
    }
}

async fn connect_clients(
    addr: SocketAddr,
    n: usize,
    k: &Arc<Counters>,
) -> Res<Vec<mpsc::UnboundedSender<String>>> {
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::new();
    for i in 0..n {
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await;
            login(addr, &format!("u{i}")).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        let c = t.await??;
        let (r, w) = c.io.into_split();
        let (tx, rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(writer(w, rx));
        tokio::spawn(client_reader(r, c.sp, k.clone(), tx.clone()));
        inc(&k.logged_in);
        out.push(tx);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------
// The SIP partner ("Lync")
// ---------------------------------------------------------------------------------

/// A dialog the partner sends requests in.
struct Dlg {
    call_id: String,
    our_tag: String,
    peer_tag: String,
    /// Our user's URI (`sip:b<j>@lync.test`).
    our_uri: String,
    /// The node user's URI.
    peer_uri: String,
    /// The node's Contact.
    target: String,
    cseq: AtomicU32,
    tx: mpsc::UnboundedSender<Bytes>,
}

impl Dlg {
    /// (i, j) of a dialog between `u<i>` and `b<j>`.
    fn pair(&self) -> (u32, u32) {
        let n = |uri: &str, p: &str| {
            user_of(uri)
                .strip_prefix(p)
                .and_then(|d| d.parse().ok())
                .unwrap_or(u32::MAX)
        };
        (n(&self.peer_uri, "u"), n(&self.our_uri, "b"))
    }
}

struct Partner {
    addr: SocketAddr,
    pidf: bool,
    k: Arc<Counters>,
    seq: AtomicU64,
    subs: Mutex<Vec<Arc<Dlg>>>,
    sessions: Mutex<Vec<Arc<Dlg>>>,
}

fn hv(m: &Message, kind: HeaderKind) -> &[u8] {
    m.headers().get(kind).map(|h| h.value()).unwrap_or_default()
}

/// The addr-spec of a name-addr (`<…>`) or of a bare URI before its parameters.
fn uri_of(v: &[u8]) -> String {
    if let Some(a) = find(v, 0, b'<') {
        let b = find(v, a, b'>').unwrap_or(v.len());
        return text(&v[a + 1..b]);
    }
    let e = find(v, 0, b';').unwrap_or(v.len());
    text(&v[..e])
}

fn tag_of(v: &[u8]) -> Option<String> {
    let t = after(v, b";tag=")?;
    let e = t
        .iter()
        .position(|&c| c == b';' || c == b' ' || c == b'>')
        .unwrap_or(t.len());
    Some(text(&t[..e]))
}

fn user_of(uri: &str) -> &str {
    let s = uri.strip_prefix("sip:").unwrap_or(uri);
    s.split('@').next().unwrap_or(s)
}

impl Partner {
    fn next(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    fn contact(&self, user: &str) -> String {
        format!("Contact: <sip:{user}@{};transport=tcp>\r\n", self.addr)
    }

    /// A response to `m`; `to_tag` is added when the To has none.
    fn reply(
        &self,
        m: &Message,
        status: &str,
        to_tag: Option<&str>,
        extra: &str,
        body: Option<(&str, &str)>,
    ) -> Bytes {
        let mut s = String::with_capacity(512);
        let _ = write!(s, "SIP/2.0 {status}\r\n");
        for h in m.headers().get_all(HeaderKind::Via) {
            let _ = write!(s, "Via: {}\r\n", text(h.value()));
        }
        let to = hv(m, HeaderKind::To);
        let _ = write!(s, "From: {}\r\n", text(hv(m, HeaderKind::From)));
        match to_tag {
            Some(t) if tag_of(to).is_none() => {
                let _ = write!(s, "To: {};tag={t}\r\n", text(to));
            }
            _ => {
                let _ = write!(s, "To: {}\r\n", text(to));
            }
        }
        let _ = write!(s, "Call-ID: {}\r\n", text(hv(m, HeaderKind::CallId)));
        let _ = write!(s, "CSeq: {}\r\n", text(hv(m, HeaderKind::CSeq)));
        s.push_str(extra);
        match body {
            Some((ct, b)) => {
                let _ = write!(
                    s,
                    "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{b}",
                    b.len()
                );
            }
            None => s.push_str("Content-Length: 0\r\n\r\n"),
        }
        Bytes::from(s)
    }

    /// A request in dialog `d`.
    fn request(&self, d: &Dlg, method: &str, extra: &str, ct: &str, body: &str) -> Bytes {
        let n = d.cseq.fetch_add(1, Ordering::Relaxed);
        let mut s = String::with_capacity(768 + body.len());
        let _ = write!(
            s,
            "{method} {target} SIP/2.0\r\n\
             Via: SIP/2.0/TCP {addr};branch=z9hG4bKlg{b}\r\n\
             Max-Forwards: 70\r\n\
             From: <{ours}>;tag={ot}\r\n\
             To: <{peer}>;tag={pt}\r\n\
             Call-ID: {cid}\r\n\
             CSeq: {n} {method}\r\n\
             {contact}{extra}",
            target = d.target,
            addr = self.addr,
            b = self.next(),
            ours = d.our_uri,
            ot = d.our_tag,
            peer = d.peer_uri,
            pt = d.peer_tag,
            cid = d.call_id,
            contact = self.contact(user_of(&d.our_uri)),
        );
        if body.is_empty() {
            s.push_str("Content-Length: 0\r\n\r\n");
        } else {
            let _ = write!(
                s,
                "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
        Bytes::from(s)
    }

    fn notify(&self, d: &Dlg, note: &str) -> Bytes {
        let v = self.next();
        let (ct, body) = if self.pidf {
            (
                "application/pidf+xml",
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
                     entity=\"{uri}\"><tuple id=\"t1\"><status><basic>open</basic></status></tuple>\
                     <note>{note}</note></presence>",
                    uri = d.our_uri
                ),
            )
        } else {
            (
                "application/msrtc-event-categories+xml",
                format!(
                    "<categories xmlns=\"http://schemas.microsoft.com/2006/09/sip/categories\" uri=\"{uri}\">\
                     <category name=\"state\" instance=\"0\" publishTime=\"2026-01-05T09:00:01.000\" container=\"2\" \
                     version=\"{v}\" expireType=\"static\"><state xmlns=\"http://schemas.microsoft.com/2006/09/sip/state\" \
                     xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" manual=\"false\" xsi:type=\"aggregateState\">\
                     <availability>3500</availability></state></category>\
                     <category name=\"note\" instance=\"0\" publishTime=\"2026-01-05T09:00:01.000\" container=\"2\" \
                     version=\"{v}\" expireType=\"static\"><note xmlns=\"http://schemas.microsoft.com/2006/09/sip/note\">\
                     <body type=\"personal\" uri=\"\">{note}</body></note></category></categories>",
                    uri = d.our_uri
                ),
            )
        };
        self.request(
            d,
            "NOTIFY",
            "Event: presence\r\nSubscription-State: active;expires=3600\r\n",
            ct,
            &body,
        )
    }

    fn on_message(self: &Arc<Self>, m: Message, tx: &mpsc::UnboundedSender<Bytes>) {
        if let Some(rl) = m.request_line() {
            let out = match rl.method.as_bytes() {
                b"SUBSCRIBE" => self.on_subscribe(&m, tx),
                b"MESSAGE" => {
                    push_lat(&self.k.p_lat, after(&m.body, b"t=").and_then(digits));
                    inc(&self.k.p_msgs);
                    Some(self.reply(&m, "200 OK", None, "", None))
                }
                b"INVITE" => {
                    inc(&self.k.node_invites);
                    let to = uri_of(hv(&m, HeaderKind::To));
                    let tag = format!("li{}", self.next());
                    let c = self.contact(user_of(&to));
                    Some(self.reply(
                        &m,
                        "200 OK",
                        Some(&tag),
                        &c,
                        Some(("application/sdp", &sdp())),
                    ))
                }
                b"ACK" => None,
                _ => Some(self.reply(&m, "200 OK", None, "", None)),
            };
            if let Some(out) = out {
                let _ = tx.send(out);
            }
            return;
        }
        let code = m.status().map_or(0, |s| s.as_u16());
        let cseq = hv(&m, HeaderKind::CSeq);
        if (100..200).contains(&code) {
            return;
        }
        let ok = (200..300).contains(&code);
        if !ok && inc(&self.k.sip_errors) < 3 {
            eprintln!("partner: {code} to {}", text(cseq));
        }
        if cseq.ends_with(b"NOTIFY") {
            if ok {
                inc(&self.k.notify_ok);
            }
        } else if cseq.ends_with(b"MESSAGE") {
            if ok {
                inc(&self.k.msg_ok);
            }
        } else if cseq.ends_with(b"INVITE") && ok {
            let from = hv(&m, HeaderKind::From);
            let to = hv(&m, HeaderKind::To);
            let d = Dlg {
                call_id: text(hv(&m, HeaderKind::CallId)),
                our_tag: tag_of(from).unwrap_or_default(),
                peer_tag: tag_of(to).unwrap_or_default(),
                our_uri: uri_of(from),
                peer_uri: uri_of(to),
                target: uri_of(hv(&m, HeaderKind::Contact)),
                cseq: AtomicU32::new(1),
                tx: tx.clone(),
            };
            let ack = self.request(&d, "ACK", "", "", "");
            let _ = tx.send(ack);
            self.sessions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Arc::new(d));
        }
    }

    /// 200 to a SUBSCRIBE; a new one also gets its dialog recorded and the initial
    /// NOTIFY.
    fn on_subscribe(&self, m: &Message, tx: &mpsc::UnboundedSender<Bytes>) -> Option<Bytes> {
        let to = hv(m, HeaderKind::To);
        let expires = hv(m, HeaderKind::Expires);
        let extra = |user: &str| {
            format!(
                "{}Expires: {e}\r\nSubscription-State: active;expires={e}\r\n",
                self.contact(user),
                e = if expires == b"0" { "0" } else { "3600" }
            )
        };
        let our_uri = uri_of(to);
        if tag_of(to).is_some() || expires == b"0" {
            return Some(self.reply(m, "200 OK", Some("x"), &extra(user_of(&our_uri)), None));
        }
        let our_tag = format!("ln{}", self.next());
        let ok = self.reply(m, "200 OK", Some(&our_tag), &extra(user_of(&our_uri)), None);
        let _ = tx.send(ok);
        let from = hv(m, HeaderKind::From);
        let d = Arc::new(Dlg {
            call_id: text(hv(m, HeaderKind::CallId)),
            our_tag,
            peer_tag: tag_of(from).unwrap_or_default(),
            our_uri,
            peer_uri: uri_of(from),
            target: uri_of(hv(m, HeaderKind::Contact)),
            cseq: AtomicU32::new(1),
            tx: tx.clone(),
        });
        let _ = tx.send(self.notify(&d, "init"));
        self.subs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(d);
        None
    }

    /// Runs one SIP connection: a reader (framing) and a writer task.
    fn spawn_conn(self: &Arc<Self>, sock: TcpStream) -> mpsc::UnboundedSender<Bytes> {
        let _ = sock.set_nodelay(true);
        let (mut r, w) = sock.into_split();
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        tokio::spawn(writer(w, rx));
        let p = self.clone();
        let tx2 = tx.clone();
        tokio::spawn(async move {
            let mut framer = StreamFramer::new(Limits::default());
            let mut buf = BytesMut::with_capacity(128 * 1024);
            loop {
                match framer.decode(&mut buf) {
                    Ok(SipFrame::Complete(m, _)) => p.on_message(m, &tx2),
                    Ok(SipFrame::Ping) => {
                        let _ = tx2.send(Bytes::from_static(b"\r\n"));
                    }
                    Ok(SipFrame::Pong) => {}
                    Ok(SipFrame::Partial) => {
                        if buf.capacity() - buf.len() < 16 * 1024 {
                            buf.reserve(128 * 1024);
                        }
                        match r.read_buf(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                    Err(e) => {
                        eprintln!("partner: framing error {e}");
                        return;
                    }
                }
            }
        });
        tx
    }

    async fn listen(self: Arc<Self>, l: TcpListener) {
        while let Ok((s, _)) = l.accept().await {
            self.spawn_conn(s);
        }
    }
}

fn sdp() -> String {
    format!(
        "v=0\r\no=- 0 0 IN IP4 {PEER_IP}\r\ns=session\r\nc=IN IP4 {PEER_IP}\r\nt=0 0\r\n\
         m=message 5060 sip null\r\na=accept-types:text/plain\r\n"
    )
}

// ---------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------

/// One measured phase.
#[derive(Debug, Clone)]
pub struct Phase {
    /// What was measured.
    pub name: String,
    /// Events counted at the receiving end.
    pub count: u64,
    /// From the first send to the last count.
    pub secs: f64,
    /// Latency, milliseconds (NaN if no sample).
    pub p50: f64,
    /// Latency, milliseconds.
    pub p99: f64,
}

impl Phase {
    /// Events per second.
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.secs
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Phases A, B1, B2, B3 (B3 twice: each direction).
    pub phases: Vec<Phase>,
    /// Non-2xx final responses the partner got, stanza errors the clients got.
    pub errors: u64,
    /// Client logins and subscription setup, seconds.
    pub setup_secs: f64,
    /// INVITEs the node sent (0: every message went in the partner's sessions).
    pub node_invites: u64,
}

impl Report {
    /// The report as text.
    pub fn render(&self, o: &Opts) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "sip_gw_load: {} clients x {} remote users, window {}, {} bodies; setup {:.1} s",
            o.clients,
            o.remote,
            o.window,
            if o.pidf { "PIDF" } else { "msrtc" },
            self.setup_secs
        );
        let _ = writeln!(
            s,
            "{:<44} {:>9} {:>8} {:>11} {:>9} {:>9}",
            "phase", "count", "secs", "per sec", "p50 ms", "p99 ms"
        );
        for p in &self.phases {
            let _ = writeln!(
                s,
                "{:<44} {:>9} {:>8.2} {:>11.0} {:>9.2} {:>9.2}",
                p.name,
                p.count,
                p.secs,
                p.rate(),
                p.p50,
                p.p99
            );
        }
        let _ = write!(
            s,
            "errors {}, INVITEs from the node {}",
            self.errors, self.node_invites
        );
        s
    }
}

fn phase(name: &str, count: u64, t0: Instant, mut lat: Vec<u32>) -> Phase {
    let p = Phase {
        name: name.to_owned(),
        count,
        secs: t0.elapsed().as_secs_f64(),
        p50: percentile(&mut lat, 0.50),
        p99: percentile(&mut lat, 0.99),
    };
    eprintln!(
        "{}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
        p.name,
        p.rate(),
        p.p50,
        p.p99
    );
    p
}

fn node_config(dir: &std::path::Path, clients: usize, peer: SocketAddr) -> Res<NodeConfig> {
    let text = format!(
        r#"
        [node]
        name = "sip_gw_load"
        data_dir = "{dir}"
        domains = ["{DOMAIN}"]
        [tls]
        generate = true
        [xmpp.s2s]
        enabled = false
        [xmpp.c2s]
        listen = "{NODE_IP}:0"
        require_tls = false
        [sip]
        enabled = true
        outbound_transport = "tcp"
        im_idle_secs = 3600
        [[sip.listeners]]
        transport = "tcp"
        address = "{NODE_IP}:0"
        [limits.node]
        max_connections = {maxc}
        max_connections_per_ip = {maxc}
        outbound_queue = {oq}
        [[federation.domain]]
        name = "{PEER_DOMAIN}"
        protocol = "sip"
        targets = ["{peer}"]
        "#,
        dir = dir.display(),
        maxc = clients + 64,
        oq = OUTBOUND_QUEUE,
    );
    Ok(NodeConfig::from_toml_str(&text)?)
}

/// Sends `n` events with `send(i)`, keeping `sent - done() <= window`; waits for
/// `done() >= n`, at most `within`.
async fn flood(
    n: u64,
    window: u64,
    within: Duration,
    done: impl Fn() -> u64,
    mut send: impl FnMut(u64),
) -> Res<()> {
    let base = done();
    let deadline = Instant::now() + within;
    let mut sent = 0;
    while sent < n {
        let d = done() - base;
        let room = (d + window).min(n).saturating_sub(sent);
        if room == 0 {
            if Instant::now() >= deadline {
                return Err(format!("flood: {d} of {n} after {within:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        for _ in 0..room.min(256) {
            send(sent);
            sent += 1;
        }
        tokio::task::yield_now().await;
    }
    wait(
        "the last events",
        deadline.saturating_duration_since(Instant::now()),
        || done() - base >= n,
    )
    .await
}

/// Runs every phase against a fresh node; returns the figures.
pub fn run(o: &Opts) -> Res<Report> {
    let _ = epoch();
    let node_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("node")
        .enable_all()
        .build()?;
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let k = Arc::new(Counters::default());
    let listener = load_rt.block_on(TcpListener::bind((PEER_IP, 0)))?;
    let partner = Arc::new(Partner {
        addr: listener.local_addr()?,
        pidf: o.pidf,
        k: k.clone(),
        seq: AtomicU64::new(1),
        subs: Mutex::new(Vec::new()),
        sessions: Mutex::new(Vec::new()),
    });
    load_rt.spawn(partner.clone().listen(listener));

    let cfg = node_config(dir.path(), o.clients, partner.addr)?;
    let node = node_rt.block_on(async {
        let v = cfg.validate()?;
        let tls = v.load_tls()?;
        let node = Node::start(&v, tls.as_ref()).await?;
        for i in 0..o.clients {
            let a: UserAddress = format!("u{i}@{DOMAIN}").parse()?;
            node.users().add_user(&a, PASSWORD).await?;
        }
        Ok::<_, Box<dyn Error + Send + Sync>>(node)
    })?;
    let c2s = node.c2s_addr().ok_or("no c2s address")?;
    let sip = node
        .sip_addrs()
        .into_iter()
        .find(|(kind, _)| *kind == SipTransportKind::Tcp)
        .map(|(_, a)| a)
        .ok_or("no SIP TCP listener")?;
    let r = load_rt.block_on(measure(o, &k, &partner, c2s, sip));
    node_rt.block_on(node.shutdown());
    drop(load_rt);
    drop(node_rt);
    r
}

async fn measure(
    o: &Opts,
    k: &Arc<Counters>,
    p: &Arc<Partner>,
    c2s: SocketAddr,
    sip: SocketAddr,
) -> Res<Report> {
    let within = Duration::from_secs(o.timeout);
    let (kc, m) = (o.clients as u64, o.remote as u64);
    let t0 = Instant::now();
    let clients = tokio::time::timeout(within, connect_clients(c2s, o.clients, k)).await??;
    for (i, c) in clients.iter().enumerate() {
        let mut s = String::new();
        for j in 0..o.remote {
            let _ = write!(
                s,
                "<presence type='subscribe' to='b{j}@{PEER_DOMAIN}' id='s{i}x{j}'/>"
            );
        }
        c.send(s)?;
    }
    wait("subscriptions", within, || {
        get(&k.subscribed) >= kc * m && get(&k.presences) >= kc * m
    })
    .await?;
    let setup_secs = t0.elapsed().as_secs_f64();
    let mut report = Report {
        setup_secs,
        ..Report::default()
    };

    // A: NOTIFY → presence.
    let subs: Vec<Arc<Dlg>> = p
        .subs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    take(&k.pres_lat);
    let pairs: Vec<(u32, u32)> = subs.iter().map(|d| d.pair()).collect();
    let t = Instant::now();
    flood(
        o.notifies,
        o.window,
        within,
        || get(&k.presences),
        |i| {
            let n = (i % subs.len() as u64) as usize;
            let d = &subs[n];
            let msg = p.notify(d, &format!("n={i}"));
            k.sent_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(pairs[n])
                .or_default()
                .push_back(now_us());
            let _ = d.tx.send(msg);
        },
    )
    .await?;
    report.phases.push(phase(
        &format!("A  NOTIFY -> <presence/> ({} dialogs)", subs.len()),
        o.notifies,
        t,
        take(&k.pres_lat),
    ));
    wait("NOTIFY responses", within, || {
        get(&k.notify_ok) >= kc * m + o.notifies
    })
    .await
    .map_err(|e| format!("{e}: {} of {}", get(&k.notify_ok), kc * m + o.notifies))?;

    // Sessions: b<i % M> → u<i>, on two connections to the node's listener.
    let conns = [
        p.spawn_conn(TcpStream::connect(sip).await?),
        p.spawn_conn(TcpStream::connect(sip).await?),
    ];
    for i in 0..o.clients {
        let j = i % o.remote;
        let n = p.next();
        let body = sdp();
        let inv = format!(
            "INVITE sip:u{i}@{DOMAIN} SIP/2.0\r\n\
             Via: SIP/2.0/TCP {addr};branch=z9hG4bKinv{n}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:b{j}@{PEER_DOMAIN}>;tag=li{n}\r\n\
             To: <sip:u{i}@{DOMAIN}>\r\n\
             Call-ID: load-{n}@{PEER_DOMAIN}\r\n\
             CSeq: 1 INVITE\r\n\
             {contact}Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{body}",
            addr = p.addr,
            contact = p.contact(&format!("b{j}")),
            len = body.len(),
        );
        let _ = conns[i % 2].send(Bytes::from(inv));
    }
    wait("sessions", within, || {
        p.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
            >= o.clients
    })
    .await?;
    let sessions: Vec<Arc<Dlg>> = p
        .sessions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let ct = "text/plain; charset=UTF-8";
    let to_partner = |i: u64| {
        let d = &sessions[(i % sessions.len() as u64) as usize];
        let body = format!("t={} {PAD}", now_us());
        let _ = d.tx.send(p.request(d, "MESSAGE", "", ct, &body));
    };
    let from_client = |i: u64| {
        let c = (i % kc) as usize;
        let j = c % o.remote;
        let _ = clients[c].send(format!(
            "<message type='chat' to='b{j}@{PEER_DOMAIN}' id='m{i}'><body>t={} {PAD}</body></message>",
            now_us()
        ));
    };

    // B1: partner → client.
    take(&k.c_lat);
    let t = Instant::now();
    flood(o.messages, o.window, within, || get(&k.c_msgs), to_partner).await?;
    report.phases.push(phase(
        "B1 MESSAGE partner -> client",
        o.messages,
        t,
        take(&k.c_lat),
    ));

    // B2: client → partner.
    take(&k.p_lat);
    let t = Instant::now();
    flood(o.messages, o.window, within, || get(&k.p_msgs), from_client).await?;
    report.phases.push(phase(
        "B2 MESSAGE client -> partner",
        o.messages,
        t,
        take(&k.p_lat),
    ));

    // B3: both at once, half each.
    let half = o.messages / 2;
    take(&k.c_lat);
    take(&k.p_lat);
    let t = Instant::now();
    let (a, b) = tokio::join!(
        flood(
            half,
            o.window / 2 + 1,
            within,
            || get(&k.c_msgs),
            to_partner
        ),
        flood(
            half,
            o.window / 2 + 1,
            within,
            || get(&k.p_msgs),
            from_client
        ),
    );
    a?;
    b?;
    let mut lat = take(&k.c_lat);
    lat.extend(take(&k.p_lat));
    report
        .phases
        .push(phase("B3 both ways at once (sum)", 2 * half, t, lat));
    let want = o.messages + half;
    if let Err(e) = wait("MESSAGE responses", within, || get(&k.msg_ok) >= want).await {
        return Err(format!("{e}: {} of {want} answered 200", get(&k.msg_ok)).into());
    }

    report.errors = get(&k.sip_errors) + get(&k.c_errors);
    report.node_invites = get(&k.node_invites);
    drop(clients);
    Ok(report)
}
