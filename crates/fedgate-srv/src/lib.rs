//! # fedgate-srv
//!
//! Finding federation peers through DNS, and telling peers how to find us. Pure: no I/O,
//! no clock, no tokio, no SIP or XMPP parser.
//!
//! What it does:
//! * [`rfc2782_order`]: RFC 2782 ordering (priority, then weighted random selection with
//!   weight-0 records handled as the RFC says), with an injected, seedable
//!   [`RandomSource`] ([`SplitMix64`]).
//! * [`SrvAnswer::classify`]: a lone "." target means the service is not offered.
//! * [`resolve_sip`]: SIP targets per RFC 3263 (transport parameter, `sips:` → TLS,
//!   `_sipfederationtls._tcp`, NAPTR, `_sips._tcp`, `_sip._tcp`, A/AAAA on 5061/5060),
//!   from the URI facts in [`SipUriFacts`].
//! * [`resolve_xmpp`]: XMPP s2s targets per RFC 6120 §3.2 and XEP-0368
//!   (`_xmpps-server._tcp` direct TLS mixed with `_xmpp-server._tcp`; A/AAAA on 5269 only
//!   when there is no SRV answer at all).
//! * [`Failover`] and [`Health`]: the next endpoint after a refused or failed connect, TLS
//!   failure, timeout or SIP 503 (RFC 3263 §4.3), skipping endpoints that failed recently
//!   for a configurable time. Time is passed in.
//! * [`SrvLookup`]: the DNS questions above as an async trait (no runtime needed), with
//!   [`StaticLookup`] answering from configuration for labs and tests. The DNS
//!   implementation lives in `fedgate-node`.
//! * [`Deployment`]: from a deployment's TOML, the records it must publish, as a
//!   zone-file fragment (`cargo run -q -p fedgate-srv --example publish -- CONFIG.toml`).
//!
//! What it does not do: send DNS queries, cache, connect, do TLS, or parse SIP URIs or
//! JIDs. It never chooses the TLS identity: that is always the origin domain, never an
//! SRV target (RFC 5922, RFC 6120 §13.7.2). No DNSSEC/DANE, no POSH.
//!
//! ```
//! use fedgate_srv::*;
//!
//! let mut dns = StaticLookup::new();
//! dns.add_srv("_xmpp-server._tcp.example.test", SrvRecord::new(10, 60, 5269, "xmpp1.example.test"))
//!     .add_srv("_xmpp-server._tcp.example.test", SrvRecord::new(10, 40, 5269, "xmpp2.example.test"))
//!     .add_srv("_xmpp-server._tcp.example.test", SrvRecord::new(20, 0, 5269, "backup.example.test"))
//!     .add_host("xmpp1.example.test", "127.0.0.2".parse().unwrap())
//!     .add_host("xmpp2.example.test", "127.0.0.3".parse().unwrap())
//!     .add_host("backup.example.test", "127.0.0.4".parse().unwrap());
//!
//! // StaticLookup answers at once, so any executor will do; a tiny one for the example.
//! fn block_on<F: std::future::Future>(f: F) -> F::Output {
//!     let mut f = std::pin::pin!(f);
//!     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
//!     match f.as_mut().poll(&mut cx) {
//!         std::task::Poll::Ready(v) => v,
//!         std::task::Poll::Pending => unreachable!(),
//!     }
//! }
//!
//! let mut rng = SplitMix64::new(7);
//! let opts = XmppOptions::default();
//! let list = block_on(resolve_xmpp(&dns, "example.test", &opts, &mut rng)).unwrap();
//! assert_eq!(list.targets.len(), 3);
//! assert_eq!(list.targets[2].host, "backup.example.test"); // priority 20 comes last
//! assert!(list.targets.iter().all(|t| t.transport == Transport::Tcp && t.port == 5269));
//!
//! // "." means not offered, and there is no A/AAAA fallback.
//! dns.add_srv("_xmpp-server._tcp.nosrv.test", SrvRecord::new(0, 0, 0, "."))
//!     .add_host("nosrv.test", "127.0.0.9".parse().unwrap());
//! let r = block_on(resolve_xmpp(&dns, "nosrv.test", &opts, &mut rng));
//! assert!(matches!(r, Err(ResolveError::NotOffered { .. })));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod failover;
mod lookup;
mod order;
mod publish;
mod record;
mod rng;
mod target;

pub use failover::{Failover, Failure, Health, HealthConfig};
pub use lookup::{
    LookupError, SrvLookup, StaticConfig, StaticHost, StaticLookup, StaticNaptr, StaticSrv,
};
pub use order::{Weighted, rfc2782_order};
pub use publish::{
    ConfigError, Deployment, DeploymentConfig, PublishedRecord, RecordData, SipEntryKind,
    SipPublish, XmppNode, XmppPublish, validate_host_name,
};
pub use record::{Glue, NaptrRecord, SrvAnswer, SrvRecord, SrvSet, normalize_name};
pub use rng::{RandomSource, SplitMix64};
pub use target::{
    Endpoint, MAX_TARGETS, ResolveError, SipOptions, SipUriFacts, Target, TargetList, TargetSource,
    Transport, XmppOptions, resolve_sip, resolve_xmpp,
};
