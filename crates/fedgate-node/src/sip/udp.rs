//! The UDP receive loop: one task per bound socket. Sending goes straight through the
//! shared socket from [`SipTransport::send`](super::SipTransport::send).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use fedgate_sip::parse_datagram;
use tokio::net::UdpSocket;

use super::reply::error_response;
use super::transport::{Inbound, Shared, Source, TransportKind};

pub(crate) async fn run(
    shared: Arc<Shared>,
    sock: Arc<UdpSocket>,
    sender: Arc<std::net::UdpSocket>,
    local: SocketAddr,
) {
    let lim = shared.cfg.limits;
    let mut stop = shared.shutdown_signal();
    if *stop.borrow_and_update() {
        return;
    }
    // One datagram buffer for the socket's life; one byte more to see truncation.
    let mut buf = vec![0u8; lim.max_udp_datagram.saturating_add(1)];
    loop {
        let r = tokio::select! {
            r = sock.recv_from(&mut buf) => r,
            _ = stop.changed() => return,
        };
        let (n, peer) = match r {
            Ok(x) => x,
            Err(e) => {
                // ICMP port unreachable and the like surface here; keep going.
                tracing::debug!(error = %e, "UDP receive failed");
                continue;
            }
        };
        if n > lim.max_udp_datagram {
            tracing::info!(%peer, "oversized UDP datagram dropped");
            continue;
        }
        let data = &buf[..n];
        // RFC 5626 keep-alives over UDP are STUN; bare CRLFs are ignored.
        if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
            continue;
        }
        match parse_datagram(Bytes::copy_from_slice(data), &lim.sip) {
            Ok(message) => {
                let inb = Inbound {
                    message,
                    source: Source {
                        transport: TransportKind::Udp,
                        peer,
                        local,
                        connection: None,
                    },
                    tls_peer: None,
                };
                // Backpressure: while the queue is full this socket is not read (the
                // kernel drops what overflows its buffer; UDP senders retransmit).
                tokio::select! {
                    p = shared.inbound.reserve() => match p {
                        Ok(p) => p.send(inb),
                        Err(_) => return,
                    },
                    _ = stop.changed() => return,
                }
            }
            Err(e) => {
                tracing::info!(%peer, error = %e, answer = %e.answer(), "unparseable SIP datagram");
                if let Some(resp) = error_response(&e) {
                    let _ = sender.send_to(&resp, peer);
                }
            }
        }
    }
}
