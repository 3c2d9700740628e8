//! The loop of one stream (TCP or TLS) connection: framing, keep-alive, idle timeout,
//! backpressure, error answers. One task runs it and owns the socket, the read buffer
//! and the [`StreamFramer`].

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fedgate_sip::{Frame, StreamFramer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::{Duration, Instant};

use super::reply::error_response;
use super::transport::{Inbound, PeerIdentity, Shared, Source};

/// Why a connection loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// The peer closed its side.
    PeerClosed,
    /// Nothing received for `idle_timeout`.
    Idle,
    /// A ping was not answered within `pong_timeout`.
    PongTimeout,
    /// A write did not finish within `write_timeout`.
    WriteTimeout,
    /// A read or write failed.
    Io,
    /// The peer broke the framing or exceeded a limit.
    Protocol,
    /// The transport (or the inbound channel's receiver) is gone.
    Shutdown,
}

impl Close {
    /// True when the connection broke under us (as opposed to being closed on purpose):
    /// the outbound side reconnects if messages are waiting.
    pub(crate) fn is_broken(self) -> bool {
        matches!(
            self,
            Close::PeerClosed | Close::PongTimeout | Close::WriteTimeout | Close::Io
        )
    }
}

/// How a connection loop ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct End {
    pub(crate) close: Close,
    /// Whether anything at all was received.
    pub(crate) received_any: bool,
}

/// `?` for functions that return the [`Close`] reason itself.
macro_rules! try_close {
    ($e:expr) => {
        if let Err(c) = $e {
            return c;
        }
    };
}

const PING: &[u8] = b"\r\n\r\n";
const PONG: &[u8] = b"\r\n";

/// Bytes gathered from the outbound queue into one write (more when one message alone
/// is larger).
const WRITE_BATCH: usize = 64 * 1024;

async fn write_all<S: AsyncWrite + Unpin>(io: &mut S, b: &[u8], t: Duration) -> Result<(), Close> {
    let w = async {
        io.write_all(b).await?;
        io.flush().await
    };
    match tokio::time::timeout(t, w).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Close::Io),
        Err(_) => Err(Close::WriteTimeout),
    }
}

/// Runs one connection until it closes. `pings`: send RFC 5626 keep-alive pings
/// (outbound connections).
pub(crate) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    mut io: S,
    source: Source,
    identity: Option<Arc<PeerIdentity>>,
    rx: &mut mpsc::Receiver<Bytes>,
    pings: bool,
) -> End {
    let mut received_any = false;
    let close = run_inner(
        shared,
        &mut io,
        source,
        identity,
        rx,
        pings,
        &mut received_any,
    )
    .await;
    if close != Close::Io && close != Close::WriteTimeout {
        // Best effort: TLS close_notify / FIN, bounded.
        let _ = tokio::time::timeout(Duration::from_secs(1), io.shutdown()).await;
    }
    End {
        close,
        received_any,
    }
}

async fn run_inner<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    io: &mut S,
    source: Source,
    identity: Option<Arc<PeerIdentity>>,
    rx: &mut mpsc::Receiver<Bytes>,
    pings: bool,
    received_any: &mut bool,
) -> Close {
    let lim = shared.cfg.limits;
    let timers = shared.cfg.timers;
    let wt = timers.write_timeout;
    let chunk = lim.read_chunk.max(64);
    let max_buffered = lim.max_buffered();
    let peer = source.peer;
    let conn = source.connection;
    let mut stop = shared.shutdown_signal();
    if *stop.borrow_and_update() {
        return Close::Shutdown;
    }
    // On a connection we ping, a lone CRLF is the pong and must be seen at once.
    let mut framer = if pings {
        StreamFramer::outbound(lim.sip)
    } else {
        StreamFramer::new(lim.sip)
    };
    let mut buf = BytesMut::new();
    let mut out_buf = BytesMut::new();
    let mut pending: Option<Inbound> = None;
    let now = Instant::now();
    let (mut last_rx, mut last_tx) = (now, now);
    let mut ping_sent: Option<Instant> = None;
    let keepalive = if pings {
        timers.keepalive_interval
    } else {
        None
    };

    loop {
        // Take every complete event off the buffer, unless a message waits for room
        // in the inbound queue.
        while pending.is_none() {
            let before = buf.len();
            match framer.decode(&mut buf) {
                Ok(Frame::Partial) => break,
                Ok(Frame::Ping) => {
                    try_close!(write_all(io, PONG, wt).await);
                    last_tx = Instant::now();
                }
                Ok(Frame::Pong) => ping_sent = None,
                Ok(Frame::Complete(message, _)) => {
                    let inb = Inbound {
                        message,
                        source,
                        tls_peer: identity.clone(),
                    };
                    match shared.inbound.try_reserve() {
                        Ok(p) => p.send(inb),
                        Err(TrySendError::Full(())) => {
                            tracing::debug!(%peer, "inbound queue full; reading paused");
                            pending = Some(inb);
                        }
                        Err(TrySendError::Closed(())) => return Close::Shutdown,
                    }
                }
                Err(e) => {
                    // The framer removes a message it could delimit even when it then
                    // fails to parse it: the stream is still in step.
                    let in_step = buf.len() < before;
                    let answer = error_response(&e);
                    if in_step {
                        tracing::info!(%peer, ?conn, error = %e, answer = %e.answer(),
                            "unparseable SIP message");
                    } else {
                        tracing::warn!(%peer, ?conn, error = %e, answer = %e.answer(),
                            "SIP framing error; closing connection");
                    }
                    if let Some(resp) = answer {
                        try_close!(write_all(io, &resp, wt).await);
                        last_tx = Instant::now();
                    }
                    if !in_step {
                        return Close::Protocol;
                    }
                }
            }
        }
        // Give memory back after a large message.
        if buf.is_empty() && buf.capacity() > 2 * chunk {
            buf = BytesMut::new();
        }
        let room = max_buffered.saturating_sub(buf.len());
        // Backpressure on a peer that sends faster than it reads: with more than half
        // of our outbound queue waiting, its requests stay in its socket until we have
        // written, so the answers to what we read have room (see
        // `SipTransport::reply_bytes`: requests keep a quarter of the queue free).
        let backlog = rx.max_capacity() - rx.capacity();
        let can_read = pending.is_none() && room > 0 && backlog <= rx.max_capacity() / 2;
        if can_read && buf.capacity() - buf.len() < chunk.min(room) {
            buf.reserve(chunk.min(room));
        }

        let idle_at = last_rx + timers.idle_timeout;
        let ping_at = match (keepalive, ping_sent) {
            (_, Some(t)) => Some(t + timers.pong_timeout),
            (Some(iv), None) => Some(last_rx.max(last_tx) + iv),
            (None, None) => None,
        };
        let wake = ping_at.map_or(idle_at, |p| p.min(idle_at));

        // Not biased: a busy outbound queue must not starve reading, nor the reverse.
        tokio::select! {
            _ = stop.changed() => return Close::Shutdown,
            p = shared.inbound.reserve(), if pending.is_some() => match p {
                Ok(p) => {
                    if let Some(inb) = pending.take() {
                        p.send(inb);
                    }
                }
                Err(_) => return Close::Shutdown,
            },
            out = rx.recv() => match out {
                Some(b) => {
                    // What else is queued goes out in the same write (bounded), so
                    // writing keeps up with a peer whose reads bring many messages.
                    if rx.is_empty() {
                        try_close!(write_all(io, &b, wt).await);
                    } else {
                        out_buf.clear();
                        out_buf.extend_from_slice(&b);
                        while out_buf.len() < WRITE_BATCH {
                            match rx.try_recv() {
                                Ok(more) => out_buf.extend_from_slice(&more),
                                Err(_) => break,
                            }
                        }
                        try_close!(write_all(io, &out_buf, wt).await);
                        // An idle connection keeps no batch buffer beyond a read chunk
                        // (memory per idle connection).
                        if out_buf.capacity() > chunk {
                            out_buf = BytesMut::new();
                        }
                    }
                    last_tx = Instant::now();
                }
                None => return Close::Shutdown,
            },
            r = io.read_buf(&mut buf), if can_read => match r {
                Ok(0) => return Close::PeerClosed,
                Ok(_) => {
                    last_rx = Instant::now();
                    *received_any = true;
                    // Any traffic proves the peer alive, not only a pong.
                    ping_sent = None;
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "SIP connection read failed");
                    return Close::Io;
                }
            },
            _ = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if now >= idle_at {
                    tracing::debug!(%peer, ?conn, "SIP connection idle; closing");
                    return Close::Idle;
                }
                match ping_sent {
                    Some(t) if now >= t + timers.pong_timeout => {
                        tracing::info!(%peer, ?conn, "keep-alive pong missing; closing");
                        return Close::PongTimeout;
                    }
                    Some(_) => {}
                    None if ping_at.is_some_and(|p| now >= p) => {
                        try_close!(write_all(io, PING, wt).await);
                        let now = Instant::now();
                        ping_sent = Some(now);
                        last_tx = now;
                    }
                    None => {}
                }
            }
        }
    }
}
