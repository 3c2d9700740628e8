//! A small load program for the SIP transport, on loopback, over mutual TLS.
//!
//! ```text
//! cargo run -p fedgate-node --example sip_load -- [N messages] [K idle connections] [window]
//! ```
//!
//! 1. Endpoints: two fedgate SIP endpoints (a [`SipUa`] each: transaction layer,
//!    dialogs, session-mode IM, on its own transport) over mutual TLS. A opens one IM
//!    session to B (INVITE, 200, ACK) and sends N MESSAGEs in it, each a client
//!    transaction at A and a server transaction at B answered 200 by B's user agent,
//!    with at most `window` unanswered; prints MESSAGE transactions per second and the
//!    p50/p99 time from A's send call to the delivery report (the 200 back at A).
//! 2. Transport alone: transport A sends N MESSAGE requests (each a Call-ID of its
//!    own) to one TLS listener of transport B, so they spread over the target's
//!    `max_connections_per_target` (2) connections; B answers each with a 200 built
//!    from the request (no transaction layer), with at most `window` outstanding;
//!    prints transactions per second.
//!
//! In both, the transports' `outbound_queue` is 4096 (default 64 per connection), so a
//! window above 64 is not refused with a full queue (a session's requests, like every
//! dialog's, keep to one connection).
//! 3. Memory: B listens on K more ports; A sends one MESSAGE to each (one outbound TLS
//!    connection in A and one inbound in B per port) and the 200s come back; the
//!    connections then sit idle. Prints the VmRSS growth (from /proc/self/status)
//!    divided by K (per connection pair) and by 2K (per connection). Each pair also
//!    counts one listener socket and its accept task, so the figure is an upper bound.
//!    The issue's target: ≤ 64 KiB per idle TLS connection.
//!
//! Build without `--release` for a quick check; figures for the record need `--release`.

use std::error::Error;
use std::time::{Duration, Instant};

use std::collections::VecDeque;

use bytes::Bytes;
use fedgate_node::sip::reply::response_from_salvage;
use fedgate_node::sip::{
    SendError, SipTransport, SipUa, SipUaConfig, SipUaEvent, Target, TransportConfig,
    TransportLimits,
};
use fedgate_node::tls::{ClientAuth, SelfSigned, TlsSettings, self_signed};
use fedgate_sip::{Host, Message, Salvage};
use fedgate_sip_txn::ua::address;
use fedgate_sip_txn::{EndpointConfig, UaConfig};

const FABRIKAM: &str = "sip.fabrikam.example";
const CONTOSO: &str = "sip.contoso.example";

fn vm_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn request(i: usize) -> Result<Message, Box<dyn Error>> {
    let body = "load test message";
    let wire = format!(
        "MESSAGE sip:bob@contoso.example SIP/2.0\r\n\
Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKload{i}\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@fabrikam.example>;tag=a1\r\n\
To: <sip:bob@contoso.example>\r\n\
Call-ID: load{i}@fabrikam.example\r\n\
CSeq: 1 MESSAGE\r\n\
Content-Type: text/plain\r\n\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Ok(Message::parse(Bytes::from(wire))?)
}

fn ok_for(req: &Message) -> Option<Message> {
    let s = Salvage {
        start: Some(req.start.clone()),
        headers: req.headers.clone(),
    };
    Message::parse(response_from_salvage(&s, 200)?).ok()
}

fn tls(me: &SelfSigned, peer: &SelfSigned) -> TlsSettings {
    TlsSettings {
        identity: Some(me.identity()),
        roots: vec![peer.cert.clone()],
        client_auth: ClientAuth::Required,
    }
}

/// A fedgate SIP endpoint for `host` on a TLS listener of its own transport.
async fn endpoint(
    host: &'static str,
    seed: u64,
    tls: &TlsSettings,
) -> Result<(SipUa, tokio::sync::mpsc::Receiver<SipUaEvent>, Target), Box<dyn Error>> {
    // Room for every window (default 64 per connection: a send beyond it fails 503;
    // a session's MESSAGEs keep to one connection).
    let cfg = TransportConfig {
        limits: TransportLimits {
            outbound_queue: 4096,
            ..TransportLimits::DEFAULT
        },
        ..TransportConfig::default()
    };
    let (transport, inbound) = SipTransport::new(cfg, Some(tls))?;
    let listen = transport.listen_tls("127.0.0.1:0".parse()?).await?;
    let contact = address(&format!("<sip:{host}:{};transport=tls>", listen.port()))?;
    let ep = EndpointConfig::new(Host::Domain(Bytes::from_static(host.as_bytes())), seed);
    let (ua, events, _task) = SipUa::spawn(
        transport,
        inbound,
        SipUaConfig::new(UaConfig::new(ep, contact)),
    );
    Ok((ua, events, Target::tls(listen, host)))
}

/// Phase 1 (see the module docs): prints its line and returns transactions/s.
pub async fn endpoints(
    n: usize,
    window: usize,
    a_cert: &SelfSigned,
    b_cert: &SelfSigned,
) -> Result<f64, Box<dyn Error>> {
    let (a, mut a_ev, _) = endpoint(FABRIKAM, 1, &tls(a_cert, b_cert)).await?;
    let (b, mut b_ev, b_target) = endpoint(CONTOSO, 2, &tls(b_cert, a_cert)).await?;
    // B accepts every session; its UA answers each MESSAGE 200 itself.
    tokio::spawn(async move {
        while let Some(ev) = b_ev.recv().await {
            if let SipUaEvent::SessionOffered { session, .. } = ev {
                let _ = b.accept_session(session).await;
            }
        }
    });
    let from = address("<sip:alice@fabrikam.example>")?;
    let to = address("<sip:bob@contoso.example>")?;
    let session = a.open_session(b_target, from, to).await?;
    let wait = Duration::from_secs(10);
    loop {
        match tokio::time::timeout(wait, a_ev.recv())
            .await?
            .ok_or("events closed")?
        {
            SipUaEvent::SessionOpened { session: s } if s == session => break,
            SipUaEvent::SessionClosed { reason, .. } => {
                return Err(format!("session not opened: {reason:?}").into());
            }
            _ => {}
        }
    }
    let t0 = Instant::now();
    let (mut sent, mut done) = (0usize, 0usize);
    // Send times in CSeq order: the session's MESSAGEs are numbered in sending order.
    let mut sent_at: VecDeque<(u32, Instant)> = VecDeque::with_capacity(window);
    let mut lat_us: Vec<u64> = Vec::with_capacity(n);
    let mut cseq = 1u32; // the INVITE's
    while done < n {
        while sent - done < window && sent < n {
            a.send_message(session, "load test message").await?;
            cseq += 1;
            sent_at.push_back((cseq, Instant::now()));
            sent += 1;
        }
        match tokio::time::timeout(wait, a_ev.recv())
            .await?
            .ok_or("events closed")?
        {
            SipUaEvent::MessageDelivered { cseq: c, .. } => {
                while let Some(&(q, t)) = sent_at.front() {
                    if q > c {
                        break;
                    }
                    sent_at.pop_front();
                    if q == c {
                        lat_us.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                    }
                }
                done += 1;
            }
            SipUaEvent::MessageFailed { status, .. } => {
                return Err(format!("a MESSAGE failed with {status}").into());
            }
            _ => {}
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    lat_us.sort_unstable();
    let pct = |p: f64| {
        lat_us
            .get(((lat_us.len() as f64 * p) as usize).min(lat_us.len().saturating_sub(1)))
            .map_or(0.0, |&us| us as f64 / 1000.0)
    };
    println!(
        "endpoints: {n} MESSAGE transactions in one IM session between two fedgate SIP endpoints over mutual TLS in {secs:.3} s = {:.0} transactions/s, window {window}, send→200 p50 {:.2} ms p99 {:.2} ms",
        n as f64 / secs,
        pct(0.50),
        pct(0.99)
    );
    Ok(n as f64 / secs)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(10_000), |s| s.parse())?;
    let k: usize = args.next().map_or(Ok(200), |s| s.parse())?;
    let window: usize = args.next().map_or(Ok(32), |s| s.parse())?;

    let (a_cert, b_cert) = (self_signed(&[FABRIKAM])?, self_signed(&[CONTOSO])?);
    let cfg = TransportConfig {
        limits: TransportLimits {
            max_connections_per_ip: k + 16,
            // Room for every window, as in phase 1 (a reply that finds B's queue full
            // is dropped here: this phase has no transaction layer to retransmit).
            outbound_queue: 4096,
            ..TransportLimits::DEFAULT
        },
        ..TransportConfig::default()
    };
    endpoints(n, window, &a_cert, &b_cert).await?;

    let (a, mut a_rx) = SipTransport::new(cfg, Some(&tls(&a_cert, &b_cert)))?;
    let (b, mut b_rx) = SipTransport::new(cfg, Some(&tls(&b_cert, &a_cert)))?;

    // B answers every request with a 200 on the connection it came on.
    let b2 = b.clone();
    tokio::spawn(async move {
        while let Some(inb) = b_rx.recv().await {
            if let Some(ok) = ok_for(&inb.message) {
                let _ = b2.reply(&inb.source, &ok);
            }
        }
    });

    // 2. Transport alone, one connection.
    let addr = b.listen_tls("127.0.0.1:0".parse()?).await?;
    let target = Target::tls(addr, CONTOSO);
    let t0 = Instant::now();
    let (mut sent, mut done, mut in_flight) = (0usize, 0usize, 0usize);
    while done < n {
        while in_flight < window && sent < n {
            match a.send(&target, &request(sent)?) {
                Ok(()) => {
                    sent += 1;
                    in_flight += 1;
                }
                Err(SendError::QueueFull(_)) => break,
                Err(e) => return Err(e.into()),
            }
        }
        let resp = tokio::time::timeout(Duration::from_secs(10), a_rx.recv())
            .await?
            .ok_or("inbound closed")?;
        if resp.message.status().is_some_and(|s| s.as_u16() == 200) {
            done += 1;
            in_flight -= 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let conns = a.connections_to(&target);
    println!(
        "transport: {n} MESSAGE + 200 to one TLS target ({conns} connections, no transaction layer) in {secs:.3} s = {:.0} transactions/s ({:.0} messages/s), window {window}",
        n as f64 / secs,
        2.0 * n as f64 / secs
    );

    // 3. Memory per idle TLS connection.
    let mut targets = Vec::with_capacity(k);
    for _ in 0..k {
        targets.push(Target::tls(
            b.listen_tls("127.0.0.1:0".parse()?).await?,
            CONTOSO,
        ));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = vm_rss_kib().ok_or("no /proc/self/status")?;
    for (i, t) in targets.iter().enumerate() {
        a.send(t, &request(n + i)?)?;
    }
    for _ in 0..k {
        tokio::time::timeout(Duration::from_secs(30), a_rx.recv())
            .await?
            .ok_or("inbound closed")?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = vm_rss_kib().ok_or("no /proc/self/status")?;
    let open = a.connection_count() + b.connection_count();
    let delta = after.saturating_sub(before);
    println!(
        "idle TLS: {k} connection pairs ({open} connections open), VmRSS {before} KiB -> {after} KiB: \
         {:.1} KiB per pair, {:.1} KiB per connection (target <= 64 KiB)",
        delta as f64 / k as f64,
        delta as f64 / (2 * k) as f64
    );
    Ok(())
}
