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
//!   before anything listens (every default is written in `examples/fedgate.toml`);
//! - [`c2s`]: the client listener for local users ([`c2s::C2sListener`]: STARTTLS, SASL
//!   SCRAM/PLAIN against the store's credentials, resource binding), one task per
//!   connection owning its `fedgate_xmpp::c2s::C2sIncoming`;
//! - [`core`]: the [`core::Router`] that joins them: local sessions by bare and full JID,
//!   RFC 6121 message delivery, rosters and subscriptions, presence broadcast and probes,
//!   offline storage; remote domains through the [`core::RemoteLinks`] seam. With
//!   `xmpp.s2s.enabled`, [`core::Node`] also starts XMPP federation: the s2s listener and
//!   outbound links behind the federation gate (domains permitted by fedgate-policy,
//!   presence mapped by the remote domain's family per the mapping tables);
//! - [`cli`]: the `fedgate-federation` command line (run, `check-config`, `user`,
//!   `dns-records`).
//!
//! Not yet here (later issues): per-user authorization and polite blocking on the
//! federation paths, SIP federation in the node, and the routing node.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod c2s;
pub mod cli;
pub mod config;
pub mod core;
pub mod dns;
pub mod sip;
pub mod sipfed;
pub mod tls;
pub mod xmpp;
