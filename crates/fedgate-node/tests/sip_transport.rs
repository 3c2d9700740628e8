//! The SIP transport over loopback: TCP, TLS (mutual), UDP, limits, keep-alive.
//!
//! Tests that depend on timers run on tokio's paused clock; the others bound every
//! real wait with a timeout.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use fedgate_node::sip::reply::response_from_salvage;
use fedgate_node::sip::{
    Backoff, FailureKind, Inbound, SendError, SipTransport, Target, Timers, TransportConfig,
    TransportKind, TransportLimits,
};
use fedgate_node::tls::{ClientAuth, SelfSigned, TlsSettings, self_signed};
use fedgate_sip::{Message, Salvage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);
const FABRIKAM: &str = "sip.fabrikam.example";
const CONTOSO: &str = "sip.contoso.example";

fn lo() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn message_wire(call_id: &str, body: &str) -> String {
    format!(
        "MESSAGE sip:bob@contoso.example SIP/2.0\r\n\
Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK{call_id}\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@fabrikam.example>;tag=a1\r\n\
To: <sip:bob@contoso.example>\r\n\
Call-ID: {call_id}@fabrikam.example\r\n\
CSeq: 1 MESSAGE\r\n\
Content-Type: text/plain\r\n\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn message(call_id: &str) -> Message {
    Message::parse(Bytes::from(message_wire(call_id, "hello"))).unwrap()
}

fn ok_for(req: &Message) -> Message {
    let s = Salvage {
        start: Some(req.start.clone()),
        headers: req.headers.clone(),
    };
    Message::parse(response_from_salvage(&s, 200).unwrap()).unwrap()
}

fn call_id(m: &Message) -> String {
    String::from_utf8(m.call_id().unwrap().0.to_vec()).unwrap()
}

fn config() -> TransportConfig {
    TransportConfig {
        backoff: Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
            attempts: 1,
        },
        ..TransportConfig::default()
    }
}

fn tls(me: Option<&SelfSigned>, roots: &[&SelfSigned], auth: ClientAuth) -> TlsSettings {
    TlsSettings {
        identity: me.map(SelfSigned::identity),
        roots: roots.iter().map(|c| c.cert.clone()).collect(),
        client_auth: auth,
    }
}

async fn recv(rx: &mut mpsc::Receiver<Inbound>) -> Inbound {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting for a message")
        .expect("inbound channel closed")
}

async fn nothing(rx: &mut mpsc::Receiver<Inbound>, d: Duration) {
    if let Ok(Some(m)) = tokio::time::timeout(d, rx.recv()).await {
        panic!("unexpected message {:?}", m.message.start);
    }
}

async fn until(mut f: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("condition not reached in time");
}

/// Reads until EOF (or error); returns what was read. Bounded by WAIT.
async fn read_to_close(s: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, async {
        let mut b = [0u8; 4096];
        loop {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&b[..n]),
            }
        }
    })
    .await
    .expect("connection not closed in time");
    out
}

async fn read_message(s: &mut (impl AsyncReadExt + Unpin)) -> Message {
    let mut framer = fedgate_sip::StreamFramer::new(fedgate_sip::Limits::default());
    let mut buf = bytes::BytesMut::new();
    tokio::time::timeout(WAIT, async {
        loop {
            if let fedgate_sip::Frame::Complete(m, _) = framer.decode(&mut buf).unwrap() {
                return m;
            }
            assert!(s.read_buf(&mut buf).await.unwrap() > 0, "closed");
        }
    })
    .await
    .expect("no message in time")
}

/// Two transports over TLS with mutual authentication, the second listening.
struct TlsPair {
    a: SipTransport,
    a_rx: mpsc::Receiver<Inbound>,
    b: SipTransport,
    b_rx: mpsc::Receiver<Inbound>,
    target: Target,
    b_cert: SelfSigned,
}

async fn tls_pair() -> TlsPair {
    let (a_cert, b_cert) = (
        self_signed(&[FABRIKAM]).unwrap(),
        self_signed(&[CONTOSO]).unwrap(),
    );
    let (a, a_rx) = SipTransport::new(
        config(),
        Some(&tls(Some(&a_cert), &[&b_cert], ClientAuth::Required)),
    )
    .unwrap();
    let (b, b_rx) = SipTransport::new(
        config(),
        Some(&tls(Some(&b_cert), &[&a_cert], ClientAuth::Required)),
    )
    .unwrap();
    let addr = b.listen_tls(lo()).await.unwrap();
    TlsPair {
        a,
        a_rx,
        b,
        b_rx,
        target: Target::tls(addr, CONTOSO),
        b_cert,
    }
}

#[tokio::test]
async fn tcp_message_and_200_round_trip() {
    let (a, mut a_rx) = SipTransport::new(config(), None).unwrap();
    let (b, mut b_rx) = SipTransport::new(config(), None).unwrap();
    let addr = b.listen_tcp(lo()).await.unwrap();
    a.send(&Target::tcp(addr), &message("tcp1")).unwrap();
    let req = recv(&mut b_rx).await;
    assert_eq!(req.source.transport, TransportKind::Tcp);
    assert!(req.source.connection.is_some());
    assert!(req.tls_peer.is_none());
    assert_eq!(&req.message.body[..], b"hello");
    b.reply(&req.source, &ok_for(&req.message)).unwrap();
    let resp = recv(&mut a_rx).await;
    assert_eq!(resp.message.status().unwrap().as_u16(), 200);
    assert_eq!(call_id(&resp.message), "tcp1@fabrikam.example");
    assert_eq!(resp.source.peer, addr);
    assert_eq!(a.connection_count(), 1);
    assert_eq!(b.connection_count(), 1);
}

#[tokio::test]
async fn udp_message_and_200_round_trip() {
    let (a, mut a_rx) = SipTransport::new(config(), None).unwrap();
    let (b, mut b_rx) = SipTransport::new(config(), None).unwrap();
    let a_addr = a.bind_udp(lo()).await.unwrap();
    let b_addr = b.bind_udp(lo()).await.unwrap();
    a.send(&Target::udp(b_addr), &message("udp1")).unwrap();
    let req = recv(&mut b_rx).await;
    assert_eq!(req.source.transport, TransportKind::Udp);
    assert_eq!(req.source.peer, a_addr);
    assert_eq!(req.source.connection, None);
    b.reply(&req.source, &ok_for(&req.message)).unwrap();
    let resp = recv(&mut a_rx).await;
    assert_eq!(resp.message.status().unwrap().as_u16(), 200);
    assert_eq!(a.connection_count(), 0);
}

#[tokio::test]
async fn malformed_udp_request_is_answered_to_its_source() {
    let (b, mut b_rx) = SipTransport::new(config(), None).unwrap();
    let b_addr = b.bind_udp(lo()).await.unwrap();
    let peer = tokio::net::UdpSocket::bind(lo()).await.unwrap();
    let bad =
        message_wire("udpbad", "hi").replace("CSeq: 1 MESSAGE", "CSeq: 1 MESSAGE\r\nBroken line");
    peer.send_to(bad.as_bytes(), b_addr).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, from) = tokio::time::timeout(WAIT, peer.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, b_addr);
    let resp = Message::parse(Bytes::copy_from_slice(&buf[..n])).unwrap();
    assert_eq!(resp.status().unwrap().as_u16(), 400);
    assert_eq!(call_id(&resp), "udpbad@fabrikam.example");
    // A response that does not parse is dropped silently; good requests still pass.
    peer.send_to(b"SIP/2.0 200 OK\r\njunk\r\n\r\n", b_addr)
        .await
        .unwrap();
    peer.send_to(message_wire("udpgood", "hi").as_bytes(), b_addr)
        .await
        .unwrap();
    assert_eq!(
        call_id(&recv(&mut b_rx).await.message),
        "udpgood@fabrikam.example"
    );
}

#[tokio::test]
async fn mutual_tls_round_trip_with_verified_names() {
    let mut p = tls_pair().await;
    p.a.send(&p.target, &message("tls1")).unwrap();
    let req = recv(&mut p.b_rx).await;
    assert_eq!(req.source.transport, TransportKind::Tls);
    // RFC 5922 §7: the client's certificate names its domain; the TU checks From.
    let who = req.tls_peer.clone().expect("client identity");
    assert!(who.matches(FABRIKAM));
    assert!(!who.matches(CONTOSO));
    let conn = req.source.connection.unwrap();
    assert_eq!(p.b.peer_names(conn), vec![FABRIKAM.to_owned()]);
    p.b.reply(&req.source, &ok_for(&req.message)).unwrap();
    let resp = recv(&mut p.a_rx).await;
    assert_eq!(resp.message.status().unwrap().as_u16(), 200);
    assert!(resp.tls_peer.unwrap().matches(CONTOSO));
}

/// Request `seq` of the dialog `call_id` (CSeq `seq`, a branch of its own).
fn in_dialog(call_id: &str, seq: u32) -> Message {
    let wire = message_wire(call_id, "hello")
        .replace("CSeq: 1 MESSAGE", &format!("CSeq: {seq} MESSAGE"))
        .replace(
            &format!("branch=z9hG4bK{call_id}"),
            &format!("branch=z9hG4bK{call_id}x{seq}"),
        );
    Message::parse(Bytes::from(wire)).unwrap()
}

/// Connections are reused, and a dialog keeps to one: the requests of one Call-ID
/// take one connection and arrive in order (RFC 3261 §12.2.2: a lower CSeq gets 500),
/// also when its queue is full (the send fails; nothing overflows onto another
/// connection, where it could overtake); many Call-IDs spread over at most
/// `max_connections_per_target` (2) connections.
#[tokio::test]
async fn connection_is_reused_for_a_second_send() {
    let mut p = tls_pair().await;
    p.a.send(&p.target, &in_dialog("reuse", 1)).unwrap();
    p.a.send(&p.target, &in_dialog("reuse", 2)).unwrap();
    let first = recv(&mut p.b_rx).await;
    let second = recv(&mut p.b_rx).await;
    assert_eq!(call_id(&first.message), "reuse@fabrikam.example");
    assert_eq!(first.source.connection, second.source.connection);
    // And again after the first ones were delivered.
    p.a.send(&p.target, &in_dialog("reuse", 3)).unwrap();
    let third = recv(&mut p.b_rx).await;
    assert_eq!(first.source.connection, third.source.connection);
    assert_eq!(p.a.connections_to(&p.target), 1);
    // More than a queue's worth of one dialog at once: what is accepted arrives in
    // order on that connection; the rest is refused (QueueFull), not sent elsewhere.
    let queue = config().limits.outbound_queue;
    let (mut accepted, mut refused) = (0u32, 0u32);
    for seq in 4..4 + 2 * u32::try_from(queue).unwrap() {
        match p.a.send(&p.target, &in_dialog("reuse", seq)) {
            Ok(()) if refused == 0 => accepted += 1,
            Ok(()) => panic!("CSeq {seq} accepted after a refusal: it could overtake"),
            Err(SendError::QueueFull(_)) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        accepted >= 1 && refused >= 1,
        "{accepted} accepted, {refused} refused"
    );
    for seq in 4..4 + accepted {
        let m = recv(&mut p.b_rx).await;
        assert_eq!(m.message.cseq().unwrap().seq, seq);
        assert_eq!(m.source.connection, first.source.connection);
    }
    assert_eq!(p.a.connections_to(&p.target), 1);
    // Many dialogs: two connections, no more.
    let mut conns = std::collections::HashSet::new();
    for i in 0..32 {
        p.a.send(&p.target, &message(&format!("many{i}"))).unwrap();
        conns.insert(recv(&mut p.b_rx).await.source.connection);
    }
    assert_eq!(conns.len(), 2, "{conns:?}");
    assert_eq!(p.a.connections_to(&p.target), 2);
    assert_eq!(p.b.connection_count(), 2);
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_certificate() {
    let mut p = tls_pair().await;
    // A client-only transport (no identity) that trusts B's certificate.
    let anon_tls = tls(None, &[&p.b_cert], ClientAuth::None);
    let (anon, _anon_rx) = SipTransport::new(config(), Some(&anon_tls)).unwrap();
    anon.send(&p.target, &message("anon")).unwrap();
    nothing(&mut p.b_rx, Duration::from_millis(500)).await;
    until(|| p.b.connection_count() == 0 && anon.connection_count() == 0).await;
    // The same with a raw rustls client: the server's alert ends the connection.
    let cfg = anon_tls.client_config().unwrap();
    let tcp = TcpStream::connect(p.target.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from(CONTOSO).unwrap();
    let hs = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await;
    if let Ok(mut s) = hs {
        // TLS 1.3: the client finishes first and learns of the refusal on its next read.
        let _ = s.write_all(message_wire("raw", "x").as_bytes()).await;
        let mut b = [0u8; 64];
        let r = tokio::time::timeout(WAIT, s.read(&mut b)).await.unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    }
    nothing(&mut p.b_rx, Duration::from_millis(100)).await;
    // The authenticated client still gets through.
    p.a.send(&p.target, &message("auth")).unwrap();
    assert_eq!(
        call_id(&recv(&mut p.b_rx).await.message),
        "auth@fabrikam.example"
    );
}

async fn refused_for_name(server_sans: &[&str]) {
    let a_cert = self_signed(&[FABRIKAM]).unwrap();
    let b_cert = self_signed(server_sans).unwrap();
    let mut cfg = config();
    cfg.backoff.initial = Duration::from_secs(60);
    let (a, _a_rx) = SipTransport::new(
        cfg,
        Some(&tls(Some(&a_cert), &[&b_cert], ClientAuth::Required)),
    )
    .unwrap();
    let (b, mut b_rx) = SipTransport::new(
        config(),
        Some(&tls(Some(&b_cert), &[&a_cert], ClientAuth::Required)),
    )
    .unwrap();
    let target = Target::tls(b.listen_tls(lo()).await.unwrap(), CONTOSO);
    a.send(&target, &message("wrongname")).unwrap();
    nothing(&mut b_rx, Duration::from_millis(300)).await;
    until(|| a.connection_count() == 0).await;
    // Marked unreachable after the (single) attempt: the TU gets a Retry-After.
    let e = a.send(&target, &message("again")).unwrap_err();
    assert!(matches!(e, SendError::Unreachable { .. }), "{e:?}");
    assert!(e.retry_after().is_some());
}

#[tokio::test]
async fn rfc5922_certificate_not_naming_the_peer_domain_is_refused() {
    refused_for_name(&["sip.other.example"]).await;
}

#[tokio::test]
async fn rfc5922_wildcard_certificate_is_refused() {
    // webpki would accept *.contoso.example for sip.contoso.example; we do not.
    refused_for_name(&["*.contoso.example"]).await;
}

#[tokio::test]
async fn garbage_after_tls_handshake_closes_that_connection_only() {
    let mut p = tls_pair().await;
    // A raw client with a valid certificate (the pair's A identity is FABRIKAM's).
    let fab = self_signed(&[FABRIKAM]).unwrap();
    let (b2, mut b2_rx) = SipTransport::new(
        config(),
        Some(&tls(Some(&p.b_cert), &[&fab], ClientAuth::Required)),
    )
    .unwrap();
    let addr = b2.listen_tls(lo()).await.unwrap();
    let raw_cfg = tls(Some(&fab), &[&p.b_cert], ClientAuth::None)
        .client_config()
        .unwrap();
    let connect = || async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from(CONTOSO).unwrap();
        tokio_rustls::TlsConnector::from(raw_cfg.clone())
            .connect(name, tcp)
            .await
            .unwrap()
    };
    // Pure garbage: nothing to answer, the connection is closed.
    let mut g = connect().await;
    g.write_all(b"\x16\x03garbage that is not SIP\r\n\r\n")
        .await
        .unwrap();
    let got = read_to_close(&mut g).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    // A request with a negative Content-Length: 400, then closed.
    let mut g = connect().await;
    let bad = message_wire("neg", "").replace("Content-Length: 0", "Content-Length: -1");
    g.write_all(bad.as_bytes()).await.unwrap();
    let got = read_to_close(&mut g).await;
    let resp = Message::parse(Bytes::from(got)).unwrap();
    assert_eq!(resp.status().unwrap().as_u16(), 400);
    assert_eq!(call_id(&resp), "neg@fabrikam.example");
    // Meanwhile another peer's traffic goes on, on the other transport and this one.
    p.a.send(&p.target, &message("other")).unwrap();
    assert_eq!(
        call_id(&recv(&mut p.b_rx).await.message),
        "other@fabrikam.example"
    );
    let mut ok = connect().await;
    ok.write_all(message_wire("fine", "hi").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        call_id(&recv(&mut b2_rx).await.message),
        "fine@fabrikam.example"
    );
}

#[tokio::test]
async fn unparseable_but_framed_request_is_answered_and_the_connection_goes_on() {
    let (b, mut b_rx) = SipTransport::new(config(), None).unwrap();
    let addr = b.listen_tcp(lo()).await.unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let bad = message_wire("bad", "hi").replace("Max-Forwards: 70\r\n", "Not a header line\r\n");
    s.write_all(bad.as_bytes()).await.unwrap();
    let resp = read_message(&mut s).await;
    assert_eq!(resp.status().unwrap().as_u16(), 400);
    assert_eq!(call_id(&resp), "bad@fabrikam.example");
    s.write_all(message_wire("good", "hi").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        call_id(&recv(&mut b_rx).await.message),
        "good@fabrikam.example"
    );
}

#[tokio::test]
async fn ten_megabyte_content_length_gets_413_without_buffering_the_body() {
    let (b, mut b_rx) = SipTransport::new(config(), None).unwrap();
    let addr = b.listen_tcp(lo()).await.unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = message_wire("big", "").replace("Content-Length: 0", "Content-Length: 10485760");
    // Only the header block is sent: the answer must not wait for the body.
    s.write_all(head.as_bytes()).await.unwrap();
    let got = read_to_close(&mut s).await;
    let resp = Message::parse(Bytes::from(got)).unwrap();
    assert_eq!(resp.status().unwrap().as_u16(), 413);
    nothing(&mut b_rx, Duration::from_millis(50)).await;
    until(|| b.connection_count() == 0).await;
}

#[tokio::test]
async fn thousand_connections_from_one_peer_are_capped_while_another_peer_works() {
    let cfg = TransportConfig {
        limits: TransportLimits {
            max_connections_per_ip: 8,
            ..TransportLimits::DEFAULT
        },
        ..config()
    };
    let (b, mut b_rx) = SipTransport::new(cfg, None).unwrap();
    let addr = b.listen_tcp(lo()).await.unwrap();
    let mut flood = Vec::with_capacity(1000);
    for _ in 0..1000 {
        flood.push(TcpStream::connect(addr).await.unwrap());
    }
    until(|| b.connection_count() == 8).await;
    // Every connection beyond the limit is closed by the server; 8 stay open.
    let mut set = tokio::task::JoinSet::new();
    for mut s in flood {
        set.spawn(async move {
            let mut b = [0u8; 1];
            matches!(
                tokio::time::timeout(Duration::from_millis(1500), s.read(&mut b)).await,
                Ok(Ok(0) | Err(_))
            )
        });
    }
    let mut closed = 0;
    while let Some(r) = set.join_next().await {
        closed += usize::from(r.unwrap());
    }
    assert_eq!(closed, 992);
    assert_eq!(b.connection_count(), 8);
    // Another peer (another loopback address) is served.
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = sock.connect(addr).await.unwrap();
    other
        .write_all(message_wire("other", "hi").as_bytes())
        .await
        .unwrap();
    let got = recv(&mut b_rx).await;
    assert_eq!(got.source.peer.ip().to_string(), "127.0.0.2");
}

#[tokio::test]
async fn rfc5626_ping_gets_a_pong() {
    let (b, _b_rx) = SipTransport::new(config(), None).unwrap();
    let addr = b.listen_tcp(lo()).await.unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"\r\n\r\n").await.unwrap();
    let mut pong = [0u8; 2];
    tokio::time::timeout(WAIT, s.read_exact(&mut pong))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&pong, b"\r\n");
}

#[tokio::test(start_paused = true)]
async fn rfc5626_outbound_pings_when_idle_and_closes_without_pong() {
    let cfg = TransportConfig {
        timers: Timers {
            keepalive_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(10),
            ..Timers::DEFAULT
        },
        ..config()
    };
    let (a, _a_rx) = SipTransport::new(cfg, None).unwrap();
    let l = TcpListener::bind(lo()).await.unwrap();
    let target = Target::tcp(l.local_addr().unwrap());
    a.send(&target, &message("ka")).unwrap();
    let (mut s, _) = l.accept().await.unwrap();
    let _ = read_message(&mut s).await;
    let t0 = tokio::time::Instant::now();
    let mut ping = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(31), s.read_exact(&mut ping))
        .await
        .expect("no ping")
        .unwrap();
    assert_eq!(&ping, b"\r\n\r\n");
    assert_eq!(t0.elapsed().as_secs(), 30);
    // Answer it: the connection lives on, and the next ping comes 30 s later.
    s.write_all(b"\r\n").await.unwrap();
    tokio::time::timeout(Duration::from_secs(31), s.read_exact(&mut ping))
        .await
        .expect("no second ping")
        .unwrap();
    assert_eq!(t0.elapsed().as_secs(), 60);
    // Do not answer: closed after the pong timeout.
    let mut b = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(11), s.read(&mut b)).await;
    assert!(matches!(r, Ok(Ok(0) | Err(_))), "{r:?}");
    assert_eq!(t0.elapsed().as_secs(), 70);
    assert_eq!(a.connection_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn idle_connection_is_closed_after_idle_timeout() {
    let cfg = TransportConfig {
        timers: Timers {
            idle_timeout: Duration::from_secs(60),
            ..Timers::DEFAULT
        },
        ..config()
    };
    let (b, _b_rx) = SipTransport::new(cfg, None).unwrap();
    let addr = b.listen_tcp(lo()).await.unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let t0 = tokio::time::Instant::now();
    // Traffic (a ping) restarts the idle timer.
    tokio::time::sleep(Duration::from_secs(40)).await;
    s.write_all(b"\r\n\r\n").await.unwrap();
    let mut pong = [0u8; 2];
    s.read_exact(&mut pong).await.unwrap();
    let mut b1 = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(120), s.read(&mut b1)).await;
    assert!(matches!(r, Ok(Ok(0) | Err(_))), "{r:?}");
    assert_eq!(t0.elapsed().as_secs(), 100);
    assert_eq!(b.connection_count(), 0);
}

/// RFC 3261 §8.1.3.1 / §17.1.4, RFC 3263 §4.3: a message queued for a target whose
/// connection cannot be opened is reported at once (not at Timer B/F), with its target,
/// so the caller can try the next one; the target is then held down, longer after each
/// failure in a row.
#[tokio::test(start_paused = true)]
async fn failed_connect_is_reported_at_once_then_the_target_is_held_down_longer_each_time() {
    let cfg = TransportConfig {
        backoff: Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(3),
            attempts: 4,
        },
        ..config()
    };
    let (a, _a_rx) = SipTransport::new(cfg, None).unwrap();
    let mut failures = a.take_failures();
    // A port with nobody listening.
    let dead = TcpListener::bind(lo()).await.unwrap().local_addr().unwrap();
    let target = Target::tcp(dead);
    for (i, hold) in [1u64, 2, 3, 3].into_iter().enumerate() {
        let t0 = tokio::time::Instant::now();
        // Two requests of one dialog: one connection attempt.
        a.send(&target, &in_dialog(&format!("dead{i}"), 1)).unwrap();
        a.send(&target, &in_dialog(&format!("dead{i}"), 2)).unwrap();
        let f = tokio::time::timeout(Duration::from_secs(1), failures.recv())
            .await
            .expect("the failed connect was not reported within a second")
            .unwrap();
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        assert_eq!(f.target, target);
        assert_eq!(f.kind, FailureKind::Refused, "{f:?}");
        assert_eq!(f.dropped, 2, "both queued messages are reported: {f:?}");
        assert_eq!(f.retry_after, Duration::from_secs(hold), "failure {i}");
        until(|| a.connection_count() == 0).await;
        // Held down: sends fail at once, with the time left.
        match a.send(&target, &message("held")) {
            Err(SendError::Unreachable { retry_after }) => {
                assert!(retry_after <= Duration::from_secs(hold));
                assert!(retry_after > Duration::from_secs(hold) - Duration::from_millis(500));
            }
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_secs(hold)).await;
    }
    // Nothing else was reported (a synchronous error is not reported twice).
    assert!(failures.try_recv().is_err());
    // After the hold-down a new connection is tried (and fails again).
    a.send(&target, &message("again")).unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(1), failures.recv())
            .await
            .is_ok()
    );
}

/// A TLS handshake to a server whose certificate does not name the target is reported
/// as a TLS failure of that target.
#[tokio::test]
async fn failed_tls_handshake_is_reported_as_tls() {
    let a_cert = self_signed(&[FABRIKAM]).unwrap();
    let b_cert = self_signed(&["sip.other.example"]).unwrap();
    let (a, _a_rx) = SipTransport::new(
        config(),
        Some(&tls(Some(&a_cert), &[&b_cert], ClientAuth::Required)),
    )
    .unwrap();
    let mut failures = a.take_failures();
    let (b, _b_rx) = SipTransport::new(
        config(),
        Some(&tls(Some(&b_cert), &[&a_cert], ClientAuth::Required)),
    )
    .unwrap();
    let target = Target::tls(b.listen_tls(lo()).await.unwrap(), CONTOSO);
    a.send(&target, &message("tlsfail")).unwrap();
    let f = tokio::time::timeout(WAIT, failures.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((f.target, f.kind, f.dropped), (target, FailureKind::Tls, 1));
}

#[tokio::test]
async fn full_outbound_queue_is_an_error_not_growth() {
    let cfg = TransportConfig {
        limits: TransportLimits {
            outbound_queue: 1,
            max_connections_per_target: 1,
            ..TransportLimits::DEFAULT
        },
        ..config()
    };
    let (a, _a_rx) = SipTransport::new(cfg, None).unwrap();
    let l = TcpListener::bind(lo()).await.unwrap();
    let target = Target::tcp(l.local_addr().unwrap());
    // No await in between: the connection task has not run yet.
    a.send(&target, &message("q1")).unwrap();
    let e = a.send(&target, &message("q2")).unwrap_err();
    assert!(matches!(e, SendError::QueueFull(_)), "{e:?}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(a.connections_to(&target), 1);
}

#[tokio::test]
async fn full_inbound_queue_pauses_reading_without_losing_messages() {
    let cfg = TransportConfig {
        limits: TransportLimits {
            inbound_queue: 1,
            ..TransportLimits::DEFAULT
        },
        ..config()
    };
    let (b, mut b_rx) = SipTransport::new(cfg, None).unwrap();
    let addr = b.listen_tcp(lo()).await.unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    // 1000 messages of 32 KiB: far more than the socket buffers hold.
    let body = "x".repeat(32 * 1024);
    let mut all = Vec::new();
    for i in 0..1000 {
        all.extend_from_slice(message_wire(&format!("bp{i}"), &body).as_bytes());
    }
    let writer = tokio::spawn(async move {
        s.write_all(&all).await.unwrap();
        s
    });
    // Nobody consumes: the transport stops reading, so the writer stalls.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !writer.is_finished(),
        "the transport kept reading a full queue"
    );
    for i in 0..1000 {
        assert_eq!(
            call_id(&recv(&mut b_rx).await.message),
            format!("bp{i}@fabrikam.example")
        );
    }
    tokio::time::timeout(WAIT, writer).await.unwrap().unwrap();
}

#[tokio::test]
async fn optional_client_auth_accepts_anonymous_peers_without_identity() {
    let b_cert = self_signed(&[CONTOSO]).unwrap();
    let some_root = self_signed(&["root.example"]).unwrap();
    let (b, mut b_rx) = SipTransport::new(
        config(),
        Some(&tls(Some(&b_cert), &[&some_root], ClientAuth::Optional)),
    )
    .unwrap();
    let target = Target::tls(b.listen_tls(lo()).await.unwrap(), CONTOSO);
    let (anon, _rx) =
        SipTransport::new(config(), Some(&tls(None, &[&b_cert], ClientAuth::None))).unwrap();
    anon.send(&target, &message("anon")).unwrap();
    let got = recv(&mut b_rx).await;
    assert!(got.tls_peer.is_none());
    assert!(b.peer_names(got.source.connection.unwrap()).is_empty());
}

#[tokio::test]
async fn send_errors_are_immediate_and_typed() {
    let (plain, _rx) = SipTransport::new(config(), None).unwrap();
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let e = plain.send(&Target::tls(addr, CONTOSO), &message("e1"));
    assert!(matches!(e, Err(SendError::TlsNotConfigured)), "{e:?}");
    let e = plain.send(&Target::udp(addr), &message("e2"));
    assert!(matches!(e, Err(SendError::UdpNotBound)), "{e:?}");
    let cert = self_signed(&[CONTOSO]).unwrap();
    let (t, _rx2) =
        SipTransport::new(config(), Some(&tls(None, &[&cert], ClientAuth::None))).unwrap();
    let bad = Target {
        server_name: Some("not a name!".into()),
        ..Target::tls(addr, CONTOSO)
    };
    assert!(matches!(
        t.send(&bad, &message("e3")),
        Err(SendError::BadServerName(_))
    ));
    let none = Target {
        server_name: None,
        ..Target::tls(addr, CONTOSO)
    };
    assert!(matches!(
        t.send(&none, &message("e4")),
        Err(SendError::BadServerName(None))
    ));
    assert_eq!(t.connection_count(), 0);
    t.shutdown();
    assert!(matches!(
        t.send(&Target::tcp(addr), &message("e5")),
        Err(SendError::ShutDown)
    ));
}

/// `take_closed`: an inbound connection that the peer closes is reported once, after
/// the last message it carried is on the inbound channel; `reply_bytes` writes the
/// bytes as given, and a reply on the closed connection is `ConnectionClosed`.
#[tokio::test]
async fn closed_inbound_connection_is_reported_after_its_last_message() {
    let (b, mut b_rx) = SipTransport::new(config(), None).unwrap();
    let mut closed = b.take_closed();
    let addr = b.listen_tcp(lo()).await.unwrap();
    let mut peer = TcpStream::connect(addr).await.unwrap();
    peer.write_all(message_wire("closed1", "last words").as_bytes())
        .await
        .unwrap();
    let req = recv(&mut b_rx).await;
    let conn = req.source.connection.unwrap();
    b.reply_bytes(&req.source, ok_for(&req.message).to_bytes())
        .unwrap();
    let resp = read_message(&mut peer).await;
    assert_eq!(resp.status().unwrap().as_u16(), 200);
    assert!(closed.try_recv().is_err(), "reported while open");
    drop(peer);
    let id = tokio::time::timeout(WAIT, closed.recv())
        .await
        .expect("connection end not reported")
        .unwrap();
    assert_eq!(id, conn);
    until(|| b.connection_count() == 0).await;
    assert!(matches!(
        b.reply_bytes(&req.source, ok_for(&req.message).to_bytes()),
        Err(SendError::ConnectionClosed(c)) if c == conn
    ));
    nothing(&mut b_rx, Duration::from_millis(50)).await;
}

/// A peer that sends and never reads: once the socket is full, our own requests on its
/// connection stop at three quarters of the outbound queue (QueueFull: the TU answers
/// 503), and the last quarter still takes responses, so the answer to a request we
/// already read is not refused because our own traffic filled the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_keep_a_quarter_of_a_full_connection_queue() {
    let queue = 8;
    let cfg = TransportConfig {
        limits: TransportLimits {
            outbound_queue: queue,
            ..config().limits
        },
        ..config()
    };
    let (b, mut b_rx) = SipTransport::new(cfg, None).unwrap();
    let addr = b.listen_tcp(lo()).await.unwrap();
    let mut peer = TcpStream::connect(addr).await.unwrap();
    peer.write_all(message_wire("stuck", "hi").as_bytes())
        .await
        .unwrap();
    let first = recv(&mut b_rx).await;
    let body = "x".repeat(60_000);
    let big_request = Message::parse(Bytes::from(message_wire("ours", &body))).unwrap();
    let big_response = Message::parse(Bytes::from(format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKstuck\r\n\
From: <sip:alice@fabrikam.example>;tag=a1\r\nTo: <sip:bob@contoso.example>;tag=b1\r\n\
Call-ID: stuck@fabrikam.example\r\nCSeq: 1 MESSAGE\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )))
    .unwrap();
    // Our requests until refused: the peer's socket fills up (it never reads), then
    // the queue, up to three quarters.
    let mut sent = 0;
    let refused = loop {
        match b.reply(&first.source, &big_request) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 10_000, "the queue never filled");
        if sent % 8 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    assert!(matches!(refused, SendError::QueueFull(_)), "{refused}");
    // Right after the refusal, a quarter of the queue (at least) takes responses. (The
    // writer may still drain a little meanwhile, never refill: only more can fit.)
    let mut answered = 0;
    while b.reply(&first.source, &big_response).is_ok() {
        answered += 1;
        assert!(answered < 10_000, "responses never refused");
    }
    assert!(
        answered >= queue / 4,
        "{answered} responses after the last request"
    );
    drop(peer);
}
