//! Graceful shutdown of the XMPP driver (RFC 6120 §4.4): `S2sOutbound::shutdown` and
//! `S2sListener::shutdown` write what is queued, send `</stream:stream>`, wait a
//! bounded time for the peer's closing tag, then close. In-memory peers on tokio's
//! paused clock: the inbound peer is raw bytes written by the test; the outbound peer
//! is remote.test's server, an `S2sIncoming` run by the test.
#![allow(clippy::unwrap_used)]

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fedgate_node::xmpp::{
    BoxIo, Dialer, InboundStanza, S2sListener, S2sOutbound, SendError, XmppConfig, random_seed,
};
use fedgate_srv::{SrvRecord, StaticLookup};
use fedgate_xmpp::dialback::DialbackSecret;
use fedgate_xmpp::s2s::{S2sConfig, S2sEvent, S2sIncoming, TlsPolicy, VerifyResult};
use fedgate_xmpp::{DomainPart, Element, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

const LOCAL: &str = "fedgate-a.test";
const REMOTE: &str = "remote.test";
const CLOSE: &str = "</stream:stream>";

fn d(s: &str) -> DomainPart {
    DomainPart::new(s).unwrap()
}

/// What remote.test's server saw, per connection (numbered from 1 in dial order).
#[derive(Debug)]
enum PeerEv {
    Stanza(usize, Element),
    /// Our `</stream:stream>` arrived.
    Closed(usize),
}

/// Dials remote.test's server: the fake one (`serve`), or one that accepts and never
/// says anything (`!serve`).
#[derive(Debug, Clone)]
struct MemDialer {
    serve: bool,
    conns: Arc<AtomicUsize>,
    events: mpsc::UnboundedSender<PeerEv>,
    silent: Arc<std::sync::Mutex<Vec<DuplexStream>>>,
}

impl Dialer for MemDialer {
    fn dial(&self, _: SocketAddr) -> Pin<Box<dyn Future<Output = io::Result<BoxIo>> + Send>> {
        let this = self.clone();
        Box::pin(async move {
            let (a, b) = tokio::io::duplex(64 * 1024);
            if this.serve {
                let n = this.conns.fetch_add(1, Ordering::Relaxed) + 1;
                tokio::spawn(fake_server(n, b, this.events.clone()));
            } else {
                this.silent.lock().unwrap().push(b);
            }
            Ok(Box::new(a) as BoxIo)
        })
    }
}

/// remote.test's server: accepts any dialback key, reports stanzas and our closing
/// tag, and answers the latter with its own (the core does).
async fn fake_server(n: usize, mut io: DuplexStream, events: mpsc::UnboundedSender<PeerEv>) {
    let cfg = Arc::new(S2sConfig {
        local_domains: vec![d(REMOTE)],
        secret: DialbackSecret::new(b"remote"),
        limits: Limits::default(),
        tls_available: false,
        incoming_tls: TlsPolicy::Optional,
        tls_required_peers: Vec::new(),
        id_seed: [7; 32],
    });
    let now = || Instant::now().into_std();
    let mut m = S2sIncoming::new(cfg, now());
    let mut buf = vec![0u8; 65536];
    loop {
        while let Some(ev) = m.poll_event() {
            match ev {
                S2sEvent::VerifyRequest(r) => m.handle_verify_result(&r, VerifyResult::Valid),
                S2sEvent::Stanza(el) => {
                    let _ = events.send(PeerEv::Stanza(n, el));
                }
                S2sEvent::Closed { .. } => {
                    let _ = events.send(PeerEv::Closed(n));
                }
                _ => {}
            }
        }
        while let Some(b) = m.poll_transmit() {
            if io.write_all(&b).await.is_err() {
                return;
            }
        }
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(k) => m.handle_input(now(), &buf[..k]),
        }
    }
}

struct Harness {
    ob: S2sOutbound,
    _sink: mpsc::Receiver<InboundStanza>,
    peer: mpsc::UnboundedReceiver<PeerEv>,
}

fn harness(serve: bool) -> Harness {
    let mut l = StaticLookup::new();
    l.add_srv(
        "_xmpp-server._tcp.remote.test",
        SrvRecord::new(10, 0, 5269, "one.remote.test"),
    )
    .add_host("one.remote.test", "127.0.0.21".parse().unwrap());
    let cfg = XmppConfig::new(S2sConfig {
        local_domains: vec![d(LOCAL)],
        secret: DialbackSecret::new(b"local"),
        limits: Limits::default(),
        tls_available: false,
        incoming_tls: TlsPolicy::Optional,
        tls_required_peers: Vec::new(),
        id_seed: random_seed(),
    });
    assert_eq!(cfg.limits.close_timeout, Duration::from_secs(2));
    let (etx, erx) = mpsc::unbounded_channel();
    let dialer = MemDialer {
        serve,
        conns: Arc::new(AtomicUsize::new(0)),
        events: etx,
        silent: Arc::default(),
    };
    let (tx, rx) = mpsc::channel(16);
    Harness {
        ob: S2sOutbound::with_dialer(cfg, l, tx, dialer).unwrap(),
        _sink: rx,
        peer: erx,
    }
}

fn message(id: &str) -> Element {
    let xml = format!(
        "<message from='alice@{LOCAL}/r' to='bob@{REMOTE}' type='chat' id='{id}'><body>b</body></message>"
    );
    let mut r = fedgate_xmpp::StreamReader::new(
        fedgate_xmpp::StreamKind::Server,
        Limits::default(),
        std::time::Instant::now(),
    );
    r.set_authenticated();
    r.feed(b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
    r.feed(xml.as_bytes());
    loop {
        if let Some(fedgate_xmpp::Event::Element(e)) = r.poll_event().unwrap() {
            return e;
        }
    }
}

async fn peer_event(h: &mut Harness) -> PeerEv {
    tokio::time::timeout(Duration::from_secs(3600), h.peer.recv())
        .await
        .unwrap()
        .unwrap()
}

/// Reads until `needle` (panics at end of stream before it).
async fn read_until(io: &mut DuplexStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if text.contains(needle) {
            return text;
        }
        let n = tokio::time::timeout(Duration::from_secs(3600), io.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before {needle:?}: {text}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// Reads until the end of the stream; what came meanwhile.
async fn read_to_end(io: &mut DuplexStream) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(3600), io.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='remote.test' to='fedgate-a.test' version='1.0'>";

/// remote.test connects in and authenticates with dialback (verified over a
/// verify-only connection to the fake server); returns the raw inbound stream.
async fn authenticated_inbound(listener: &S2sListener) -> DuplexStream {
    let (mut a, b) = tokio::io::duplex(65536);
    listener.serve_io(Box::new(b), SocketAddr::from(([127, 0, 0, 21], 40000)));
    a.write_all(HEADER.as_bytes()).await.unwrap();
    let got = read_until(&mut a, "</stream:features>").await;
    let i = got.find(" id='").unwrap() + 5;
    let id = got[i..].split('\'').next().unwrap();
    let key = DialbackSecret::new(b"remote").key(LOCAL, REMOTE, id);
    let db = format!("<db:result from='remote.test' to='fedgate-a.test'>{key}</db:result>");
    a.write_all(db.as_bytes()).await.unwrap();
    read_until(&mut a, "type='valid'").await;
    a
}

#[tokio::test(start_paused = true)]
async fn rfc6120_4_4_shutdown_flushes_the_queue_then_closes_both_streams_with_closing_tags() {
    let mut h = harness(true);
    let listener = Arc::new(S2sListener::detached(
        &h.ob,
        "127.0.0.1:5269".parse().unwrap(),
    ));
    // Inbound stream (remote.test → us), raw.
    let mut a = authenticated_inbound(&listener).await;
    // Outbound link (us → remote.test), established by a first message.
    h.ob.send(message("m0")).unwrap();
    let link = loop {
        match peer_event(&mut h).await {
            PeerEv::Stanza(n, el) if el.attr("id") == Some("m0") => break n,
            PeerEv::Stanza(_, el) => panic!("{el:?}"),
            PeerEv::Closed(_) => continue, // the verify-only connection
        }
    };
    assert_eq!(h.ob.link_count(), 1);

    // Queued just before the shutdown: on the wire before `</stream:stream>`.
    for id in ["m1", "m2", "m3"] {
        h.ob.send(message(id)).unwrap();
    }
    let t0 = Instant::now();
    h.ob.shutdown().await;
    let took = t0.elapsed();
    let mut seen = Vec::new();
    loop {
        match peer_event(&mut h).await {
            PeerEv::Stanza(n, el) => {
                assert_eq!(n, link);
                seen.push(el.attr("id").unwrap().to_owned());
            }
            PeerEv::Closed(n) => {
                assert_eq!(n, link);
                break;
            }
        }
    }
    assert_eq!(seen, ["m1", "m2", "m3"]);
    // The peer answered with its own closing tag: no wait for the timeout.
    assert!(took < Duration::from_millis(100), "{took:?}");
    assert_eq!(h.ob.link_count(), 0);
    assert_eq!(h.ob.send(message("m4")), Err(SendError::ShuttingDown));

    // Inbound: the peer reads our closing tag, answers it, then sees the end of the
    // stream; the listener's shutdown returns without waiting for the timeout.
    let l = listener.clone();
    let t0 = Instant::now();
    let done = tokio::spawn(async move {
        l.shutdown().await;
        Instant::now()
    });
    read_until(&mut a, CLOSE).await;
    a.write_all(CLOSE.as_bytes()).await.unwrap();
    assert_eq!(read_to_end(&mut a).await, "");
    let took = done.await.unwrap() - t0;
    assert!(took < Duration::from_millis(100), "{took:?}");
    assert_eq!(listener.connection_count(), 0);
    // No new inbound connection once shut down.
    let (mut c, b) = tokio::io::duplex(1024);
    listener.serve_io(Box::new(b), SocketAddr::from(([127, 0, 0, 22], 40000)));
    assert_eq!(read_to_end(&mut c).await, "");
}

#[tokio::test(start_paused = true)]
async fn rfc6120_4_4_shutdown_is_bounded_when_peers_never_close() {
    // Outbound: a peer that accepts and never answers (the link never gets ready).
    let h = harness(false);
    h.ob.send(message("m1")).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(h.ob.link_count(), 1);
    let t0 = Instant::now();
    h.ob.shutdown().await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took <= Duration::from_millis(2250),
        "{took:?}"
    );
    assert_eq!(h.ob.link_count(), 0);

    // Inbound: a peer that reads our closing tag and never answers it.
    let h = harness(true);
    let listener = Arc::new(S2sListener::detached(
        &h.ob,
        "127.0.0.1:5269".parse().unwrap(),
    ));
    let (mut a, b) = tokio::io::duplex(65536);
    listener.serve_io(Box::new(b), SocketAddr::from(([127, 0, 0, 21], 40000)));
    a.write_all(HEADER.as_bytes()).await.unwrap();
    read_until(&mut a, "</stream:features>").await;
    let l = listener.clone();
    let t0 = Instant::now();
    let done = tokio::spawn(async move {
        l.shutdown().await;
        Instant::now()
    });
    let got = read_to_end(&mut a).await;
    assert!(got.ends_with(CLOSE), "{got}");
    let took = done.await.unwrap() - t0;
    assert!(
        took >= Duration::from_secs(2) && took <= Duration::from_millis(2250),
        "{took:?}"
    );
    assert_eq!(listener.connection_count(), 0);
}
