//! The SIP transport: tokio drivers for UDP, TCP and TLS that the transaction layer
//! (`fedgate-sip-txn`) sits on, and [`SipUa`] ([`ua`]), the task that runs a
//! `fedgate_sip_txn::UserAgent` on it.
//!
//! **What it does**
//! - Listens ([`SipTransport::listen_tcp`], [`SipTransport::listen_tls`],
//!   [`SipTransport::bind_udp`]) and connects ([`SipTransport::send`] to a [`Target`]),
//!   reusing an open outbound connection to the same target (transport, address and TLS
//!   name): a federation peer keeps a few long-lived TLS connections
//!   (`max_connections_per_target`, one per slot), and a message takes the slot of its
//!   Call-ID, so the requests of a dialog stay on one connection, in order (a UAS
//!   answers an overtaken in-dialog request 500, RFC 3261 §12.2.2).
//! - Frames streams with [`fedgate_sip::StreamFramer`], parses datagrams with
//!   [`fedgate_sip::parse_datagram`], and passes every message up as an [`Inbound`]
//!   (message, [`Source`], verified [`PeerIdentity`]).
//! - Mutual TLS with rustls (see [`crate::tls`]): the server requires and verifies a client
//!   certificate when configured ([`crate::tls::ClientAuth`]); outbound, the server's
//!   certificate must chain to the roots and name the target's server name exactly in its
//!   subjectAltName (RFC 5922 §7; no wildcards). Inbound, the caller checks a From domain
//!   against [`SipTransport::peer_names`] / [`Inbound::tls_peer`].
//! - RFC 5626 keep-alive on streams: a CRLFCRLF ping is answered with a CRLF pong;
//!   outbound connections ping after `keepalive_interval` without traffic and close
//!   if no pong (or other traffic) comes within `pong_timeout`. Any connection with
//!   nothing received for `idle_timeout` is closed.
//! - Outbound connection failures are reported at once, never retried behind the
//!   caller's back (RFC 3261 §8.1.3.1, §17.1.4; RFC 3263 §4.3): [`SipTransport::send`]
//!   only queues, so a connect, TLS handshake or RFC 5922 name check that then fails
//!   drops the queued messages and reports them as a [`SendFailure`] (target,
//!   connection, [`FailureKind`], count) on [`SipTransport::take_failures`]; the
//!   [`SipUa`] driver turns it into `handle_transport_error` for that target's flow, so
//!   the transactions fail with 503 within the connect time (a refused port: at once),
//!   not at Timer B/F (32 s), and the caller can try the next target. The target is
//!   then marked unreachable for a time that doubles with each failure in a row
//!   ([`Backoff`]): sends to it fail at once with [`SendError::Unreachable`] and a
//!   Retry-After. An established connection that breaks with messages still queued is
//!   reconnected at once (those messages were never written), `Backoff::attempts`
//!   times in a row at most, then reported the same way ([`FailureKind::ConnectionLost`]).
//!   Requests already written to a connection that then breaks are not reported: their
//!   answer may still come (RFC 3261 §18.2.2); they wait for their transaction timer.
//! - Connection ends are reported: every stream connection (inbound or outbound), once
//!   it is gone for good, sends its [`ConnectionId`] on [`SipTransport::take_closed`],
//!   after the last message it received is on the inbound channel; the [`SipUa`]
//!   driver ends the IM sessions that ran on it (`handle_flow_closed`).
//! - Already encoded messages (a transaction layer's output) go out as they are
//!   ([`SipTransport::send_bytes`], [`SipTransport::reply_bytes`]).
//! - Input errors: a message the framer can delimit but the parser refuses is answered
//!   (400/414/…, built from the salvaged Via, From, To, Call-ID and CSeq) and the
//!   connection goes on; a framing error (bad, repeated or missing Content-Length,
//!   header block or body over the size limit) is answered the same way when the
//!   request is salvageable (400/413/513) and the connection is closed. Responses and
//!   ACKs are never answered. Each case is logged with `tracing`.
//! - Limits on everything ([`TransportLimits`]); see the table there.
//!
//! **What it does not do**: no transactions, retransmissions or validation beyond
//! syntax (the transaction layer runs `fedgate_sip::validate` and answers); no Via
//! `received`/`rport` stamping ([`Source::peer`] is there for the caller); no RFC 5923
//! connection reuse (an inbound connection is never used for our own requests, only for
//! responses via [`SipTransport::reply`]); no STUN keep-alive on UDP; no fallback for a
//! response whose connection has closed (RFC 3261 §18.2.2: the caller gets
//! [`SendError::ConnectionClosed`]); no DNS (targets are addresses; see [`crate::dns`]).
//!
//! # Tasks and channels
//!
//! ```text
//!   listener task (per listen_*) ──accept──▶ connection task (one per TCP/TLS connection)
//!                                            owns socket + StreamFramer + read buffer
//!   SipTransport::send ──try_send──▶ [outbound queue, per connection, bounded]──┘   │
//!     (new target: registers the connection and spawns its task, which connects     │
//!      and then runs the same loop; a failed connect ──▶ [failures, bounded] ──▶     │
//!      take_failures(): SendFailure { target, … }, read by the SipUa driver)        │
//!   UDP task (per bind_udp) ────────────────────────────────┐                        │
//!                                                           ▼                        ▼
//!                                  [inbound channel, bounded, shared] ──▶ Receiver<Inbound>
//! ```
//!
//! The registry (a mutex-guarded map, never held across an await) knows each
//! connection's outbound queue, peer, identity and target, and counts connections per
//! peer IP and in total; a connection task's slot removes it on exit and reports its
//! end ([`SipTransport::take_closed`]). A connection task
//! whose message finds the inbound channel full keeps it and stops reading its socket
//! until there is room (TCP backpressure). Sends never wait: a full outbound queue is
//! [`SendError::QueueFull`] (answer 503).
//!
//! # Example
//!
//! ```no_run
//! # async fn demo(msg: fedgate_sip::Message) -> Result<(), Box<dyn std::error::Error>> {
//! use fedgate_node::sip::{SipTransport, Target, TransportConfig};
//! use fedgate_node::tls::{TlsSettings, self_signed};
//!
//! let cert = self_signed(&["sip.fabrikam.example"])?;
//! let tls = TlsSettings { identity: Some(cert.identity()), roots: vec![cert.cert.clone()],
//!                         ..Default::default() };
//! let (transport, mut inbound) = SipTransport::new(TransportConfig::default(), Some(&tls))?;
//! let addr = transport.listen_tls("127.0.0.1:5061".parse()?).await?;
//! transport.send(&Target::tls(addr, "sip.fabrikam.example"), &msg)?;
//! while let Some(inb) = inbound.recv().await {
//!     println!("{:?} from {:?}", inb.message.start, inb.source);
//! }
//! # Ok(()) }
//! ```

mod config;
pub mod reply;
mod stream;
mod transport;
pub mod ua;
mod udp;

pub use config::{Backoff, Timers, TransportConfig, TransportLimits};
pub use transport::{
    ConnectionId, FailureKind, Inbound, PeerIdentity, SendError, SendFailure, SipTransport, Source,
    Target, TransportError, TransportKind,
};
pub use ua::{SipUa, SipUaConfig, SipUaEvent, SubscribeOptions, UaError};
