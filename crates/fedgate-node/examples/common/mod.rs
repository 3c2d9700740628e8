//! What the load examples share (included by each with
//! `#[path = "common/mod.rs"] mod common;`, so cargo does not build it as an example of
//! its own): a raw c2s client (a stanza splitter over the bytes, no full XML parsing,
//! and a SCRAM-SHA-1 login), the s2s sender node, and small timing and output helpers.
//! Each example uses a part of it.
#![allow(dead_code)]

use std::error::Error;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use fedgate_node::xmpp::{InboundStanza, S2sListener, S2sOutbound, XmppConfig, random_seed};
use fedgate_srv::StaticLookup;
use fedgate_testkit::hosts;
use fedgate_xmpp::sasl::{ScramClient, ScramHash};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

pub type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

pub const PAD: &str = "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. \
                   Sphinx of black quartz, judge my vow. How vexingly quick daft zebras jump!";

// ---------------------------------------------------------------------------------
// Time and output
// ---------------------------------------------------------------------------------

pub fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

/// Microseconds since [`epoch`].
pub fn now_us() -> u64 {
    u64::try_from(epoch().elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// One line on stdout, flushed (the child processes' protocol with their parent).
pub fn emit(line: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

/// p in [0, 1], in milliseconds.
pub fn percentile(v: &mut [u32], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    f64::from(v[i.min(v.len() - 1)]) / 1000.0
}

pub fn take(v: &Mutex<Vec<u32>>) -> Vec<u32> {
    std::mem::take(&mut *v.lock().unwrap_or_else(PoisonError::into_inner))
}

// ---------------------------------------------------------------------------------
// The s2s sender
// ---------------------------------------------------------------------------------

/// The sending node and what came back to it (bounces, errors from the receivers).
pub struct Sender {
    pub out: S2sOutbound,
    _listener: S2sListener,
    pub returned: Arc<AtomicU64>,
}

impl Sender {
    /// Starts fedgate's own [`S2sOutbound`] with `cfg`, resolving the test hosts, and an
    /// [`S2sListener`] on `addr` so that the receivers can verify its dialback keys.
    pub async fn start(cfg: XmppConfig, addr: SocketAddr) -> Res<Sender> {
        let mut lookup = StaticLookup::new();
        for (name, ip) in hosts::TEST_HOSTS {
            lookup.add_host(name, ip.into());
        }
        let (tx, mut rx) = mpsc::channel::<InboundStanza>(1024);
        let out = S2sOutbound::new(cfg, lookup, tx)?;
        let listener = S2sListener::bind(addr, &out).await?;
        let returned = Arc::new(AtomicU64::new(0));
        let r = returned.clone();
        tokio::spawn(async move {
            while let Some(s) = rx.recv().await {
                if r.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!("sender got back (bounce={}): {}", s.bounce, s.element);
                }
            }
        });
        Ok(Sender {
            out,
            _listener: listener,
            returned,
        })
    }
}

// ---------------------------------------------------------------------------------
// Byte helpers
// ---------------------------------------------------------------------------------

pub fn find(h: &[u8], from: usize, b: u8) -> Option<usize> {
    h.get(from..)?
        .iter()
        .position(|&c| c == b)
        .map(|p| p + from)
}

pub fn contains(h: &[u8], n: &[u8]) -> bool {
    h.windows(n.len()).any(|w| w == n)
}

pub fn after<'a>(h: &'a [u8], n: &[u8]) -> Option<&'a [u8]> {
    h.windows(n.len())
        .position(|w| w == n)
        .map(|p| &h[p + n.len()..])
}

pub fn digits(h: &[u8]) -> Option<u64> {
    let end = h
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(h.len());
    std::str::from_utf8(&h[..end]).ok()?.parse().ok()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------------
// The c2s client: stanza splitter and SCRAM login
// ---------------------------------------------------------------------------------

/// Splits a server-to-client byte stream into the stream header and top-level stanzas,
/// without parsing them (tags, quotes and nesting only).
#[derive(Default)]
pub struct Splitter {
    buf: Vec<u8>,
    off: usize,
}

pub enum Frame {
    Open,
    Stanza(std::ops::Range<usize>),
    Close,
}

/// The end (`>`) of the tag starting at `i`, outside quotes.
pub fn tag_end(h: &[u8], i: usize) -> Option<usize> {
    let mut q = 0u8;
    for (j, &c) in h.iter().enumerate().skip(i + 1) {
        if q != 0 {
            if c == q {
                q = 0;
            }
        } else if c == b'\'' || c == b'"' {
            q = c;
        } else if c == b'>' {
            return Some(j);
        }
    }
    None
}

impl Splitter {
    pub fn push(&mut self, data: &[u8]) {
        if self.off > 0 && self.off * 2 >= self.buf.len() {
            self.buf.drain(..self.off);
            self.off = 0;
        }
        self.buf.extend_from_slice(data);
    }

    pub fn get(&self, r: std::ops::Range<usize>) -> &[u8] {
        &self.buf[r]
    }

    pub fn next(&mut self) -> Option<Frame> {
        loop {
            let h = &self.buf;
            let start = find(h, self.off, b'<')?;
            let mut depth = 0i32;
            let mut i = start;
            loop {
                let lt = find(h, i, b'<')?;
                let next = *h.get(lt + 1)?;
                let gt = tag_end(h, lt)?;
                match next {
                    b'?' | b'!' => {
                        if depth == 0 {
                            self.off = gt + 1;
                            break;
                        }
                    }
                    b'/' => {
                        depth -= 1;
                        if depth < 0 {
                            self.off = gt + 1;
                            return Some(Frame::Close);
                        }
                        if depth == 0 {
                            self.off = gt + 1;
                            return Some(Frame::Stanza(start..gt + 1));
                        }
                    }
                    _ => {
                        if depth == 0 && h[lt..gt].starts_with(b"<stream:stream") {
                            self.off = gt + 1;
                            return Some(Frame::Open);
                        }
                        if h[gt - 1] != b'/' {
                            depth += 1;
                        } else if depth == 0 {
                            self.off = gt + 1;
                            return Some(Frame::Stanza(start..gt + 1));
                        }
                    }
                }
                i = gt + 1;
            }
        }
    }
}

/// The value of attribute `name` in the start tag of `s`.
pub fn attr<'a>(s: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let tag = &s[..tag_end(s, 0)?];
    let n = name.as_bytes();
    let mut i = 0;
    while i + n.len() + 2 <= tag.len() {
        if tag[i] == b' ' && tag[i + 1..].starts_with(n) && tag.get(i + 1 + n.len()) == Some(&b'=')
        {
            let q = *tag.get(i + 2 + n.len())?;
            let v = i + 3 + n.len();
            let e = find(tag, v, q)?;
            return Some(&tag[v..e]);
        }
        i += 1;
    }
    None
}

pub const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn b64_encode(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                s.push(B64[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

pub fn b64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for &c in s.iter().filter(|c| !c.is_ascii_whitespace() && **c != b'=') {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One client connection: its socket and what was read but not yet split.
pub struct Conn<S> {
    pub io: S,
    pub sp: Splitter,
    pub rbuf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(io: S) -> Self {
        Conn {
            io,
            sp: Splitter::default(),
            rbuf: vec![0; 16 * 1024],
        }
    }

    pub async fn fill(&mut self) -> Res<()> {
        let n = self.io.read(&mut self.rbuf).await?;
        if n == 0 {
            return Err("connection closed".into());
        }
        self.sp.push(&self.rbuf[..n]);
        Ok(())
    }

    /// The next frame, reading as needed.
    pub async fn frame(&mut self) -> Res<Frame> {
        loop {
            if let Some(f) = self.sp.next() {
                return Ok(f);
            }
            self.fill().await?;
        }
    }

    pub async fn stanza(&mut self) -> Res<Vec<u8>> {
        loop {
            match self.frame().await? {
                Frame::Stanza(r) => return Ok(self.sp.get(r).to_vec()),
                Frame::Open => {}
                Frame::Close => return Err("stream closed by the server".into()),
            }
        }
    }

    pub async fn send(&mut self, s: &str) -> Res<()> {
        self.io.write_all(s.as_bytes()).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Opens the client stream to `domain`; returns its `<stream:features/>`.
    pub async fn open(&mut self, domain: &str) -> Res<Vec<u8>> {
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
        ))
        .await?;
        let f = self.stanza().await?;
        if !f.starts_with(b"<stream:features") {
            return Err(format!("expected features, got {}", text(&f)).into());
        }
        Ok(f)
    }

    /// On a stream opened to `domain` that offered `features`: SASL SCRAM-SHA-1 as
    /// `user`, stream restart, resource binding, the roster, initial presence.
    pub async fn sign_in(
        &mut self,
        domain: &str,
        user: &str,
        password: &str,
        features: &[u8],
    ) -> Res<()> {
        let c = self;
        if !contains(features, b">SCRAM-SHA-1<") {
            return Err(format!("no SCRAM-SHA-1 in {}", text(features)).into());
        }
        let cnonce = format!("{:x}{:x}", random_seed()[0], now_us());
        let (scram, first) = ScramClient::new(ScramHash::Sha1, user, password, &cnonce);
        c.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>{}</auth>",
            b64_encode(first.as_bytes())
        ))
        .await?;
        let ch = c.stanza().await?;
        let payload = after(&ch, b">")
            .and_then(|p| p.split(|&b| b == b'<').next())
            .and_then(b64_decode)
            .ok_or("bad challenge")?;
        let server_first = String::from_utf8(payload)?;
        let (fin, _) = scram
            .respond(&server_first)
            .ok_or_else(|| format!("bad server-first {server_first}"))?;
        c.send(&format!(
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
            b64_encode(fin.as_bytes())
        ))
        .await?;
        let ok = c.stanza().await?;
        if !ok.starts_with(b"<success") {
            return Err(format!("{user}: {}", text(&ok)).into());
        }
        c.sp = Splitter::default();
        c.open(domain).await?;
        c.send(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>load</resource></bind></iq>",
        )
        .await?;
        loop {
            let s = c.stanza().await?;
            if s.starts_with(b"<iq") && attr(&s, "id") == Some(b"bind1") {
                if attr(&s, "type") != Some(b"result") {
                    return Err(format!("bind: {}", text(&s)).into());
                }
                break;
            }
        }
        // The roster first, as clients do: servers push subscription changes only to
        // sessions that asked for it.
        c.send("<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>")
            .await?;
        loop {
            let s = c.stanza().await?;
            if s.starts_with(b"<iq") && attr(&s, "id") == Some(b"roster1") {
                break;
            }
        }
        c.send("<presence/>").await?;
        Ok(())
    }
}
