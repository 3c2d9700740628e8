//! # fedgate-node
//!
//! The tokio side of fedgate: the drivers that own sockets and timers around the sans-IO
//! protocol cores. Only this crate (and the binaries) depend on tokio.
//!
//! What it holds today:
//! - [`dns`]: [`dns::DnsLookup`], the [`fedgate_srv::SrvLookup`] implementation over real
//!   DNS (a small client on hickory-proto) with its bounded TTL cache;
//! - [`sip`]: SIP over UDP, TCP and TLS ([`sip::SipTransport`]): one task per connection
//!   owning its socket and a `fedgate_sip::StreamFramer`, mutual TLS with RFC 5922 name
//!   checks, RFC 5626 keep-alives, idle timeouts, reconnect with backoff, answers to bad
//!   input, and bounded queues and connection counts;
//! - [`xmpp`]: XMPP server-to-server: [`xmpp::S2sListener`] (one task per inbound stream
//!   owning a `fedgate_xmpp::s2s::S2sIncoming`, STARTTLS, dialback verified over a
//!   verify-only connection back to the originating server, XEP-0199 pings answered) and
//!   [`xmpp::S2sOutbound`] (one link per remote domain, SRV targets with failover, bounded
//!   queues, bounces with the right stanza error, keep-alive and idle close);
//! - [`tls`]: rustls configuration (ring provider), PEM loading, self-signed certificates
//!   for demos and tests, and the DNS names a certificate is valid for;
//! - [`config`]: the node configuration, one typed struct read from TOML and validated
//!   before anything listens (every default is written in `examples/fedgate.toml`).
//!
//! Not yet here (later issues): the c2s driver and the core that joins local users, SIP
//! and XMPP.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod dns;
pub mod sip;
pub mod tls;
pub mod config;
pub mod xmpp;
