//! # fedgate-node
//!
//! The tokio side of fedgate: transports, timers, the DNS adapter, configuration and the
//! node core. This round it holds the DNS adapter only: [`dns::DnsLookup`], the
//! [`fedgate_srv::SrvLookup`] implementation over real DNS, with its TTL cache.
//!
//! It does not (yet) hold the TCP/TLS/UDP drivers, the node configuration or the core.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod dns;
