//! Federation policy for fedgate: which remote domains we federate with and over which
//! protocol, who may watch a local user's presence, and the bookkeeping of every presence
//! subscription. Pure: no I/O, no clock, no async.
//!
//! # What it does
//!
//! * **Federated domains** ([`FederationConfig`]): several local domains; each remote
//!   domain federated over SIP *or* XMPP, never both (adding as XMPP a SIP federated domain
//!   fails with [`ConfigError::ConfiguredAsSip`], which says to delete the SIP entry first);
//!   a remote domain is never a local one; domains match exactly, so the seed's three
//!   subdomain scenarios all work.
//! * **XMPP administrator policy** ([`XmppMode`]): allow all, allow list, deny list, with a
//!   defined answer for a domain on neither list (table on [`XmppMode`]).
//! * **Routing** ([`Policy::route`], [`FederationConfig::route`]): for a domain, [`Route`]
//!   says local user, federated over SIP, over XMPP, or not federated (and why), so the
//!   node routes without knowing policy internals.
//! * **Inbound subscriptions**, decided in the seed's order by [`Policy::authorize`] /
//!   [`Policy::handle_inbound_subscribe`]:
//!   1. domain not permitted (for this protocol) → [`InboundDecision::Denied`]; the user is
//!      never contacted;
//!   2. the user blocked the watcher or its domain → [`InboundDecision::PoliteBlock`]:
//!      answered exactly like an acceptance ([`InboundDecision::answer`]), the watcher only
//!      ever sees Offline;
//!   3. the user allowed the watcher or its domain → [`InboundDecision::Accepted`];
//!   4. otherwise → [`InboundDecision::Pending`] and the user is asked; the answer
//!      ([`Policy::answer`]) is stored in the user's policy list ([`UserRules`]).
//! * **Presence delivery** ([`Policy::presence_fanout`], [`Policy::view_for`]): for a
//!   presence change of a local user, what each watcher may see: [`Seen::Real`],
//!   [`Seen::Offline`], or nothing. Authorization is re-checked on every delivery, so a later
//!   block, rule removal or configuration change takes effect at once.
//! * **Outbound subscriptions** ([`Policy::subscribe_outbound`]): one per local user, even
//!   when another local user already watches the same remote user.
//! * **Bookkeeping** per (local user, remote user, direction): none, pending, active,
//!   terminated ([`SubscriptionState`]), with expiry and refresh deadlines
//!   ([`Policy::poll_timeout`], [`Policy::handle_timeout`]), written through a
//!   [`PolicyStore`] before taking effect, so [`Policy::open`] after a restart resumes every
//!   subscription and pending request ([`Policy::resume`]).
//!
//! # What it does not do
//!
//! No networking, DNS, TLS, SIP or XMPP parsing, and no timers of its own: the node drives
//! it with `now` and sends what it answers. It does not know which local users exist (the
//! node's directory does); it only checks that a local address belongs to a local domain.
//! It does not map presence documents (fedgate-presence does): presence is an opaque `P`.
//! Its store trait is synchronous; the async SQLite adapter lives in fedgate-store (see
//! [`store`]).
//!
//! # Example
//!
//! ```
//! use fedgate_policy::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let now = Timestamp::from_millis(0);
//! let mut policy = Policy::open(MemoryStore::new(), SubscriptionLimits::default())?;
//! policy.add_local_domain(now, "example.com".parse()?)?;
//! policy.add_sip_domain(now, "lync.example".parse()?)?;
//!
//! let alice: UserAddress = "alice@example.com".parse()?;
//! let bob: UserAddress = "bob@lync.example".parse()?;
//! let eve: UserAddress = "eve@elsewhere.example".parse()?;
//!
//! // Eve's domain is not federated: denied, Alice is never asked.
//! let out = policy.handle_inbound_subscribe(now, &eve, &alice, Protocol::Sip, None)?;
//! assert!(matches!(out.decision, InboundDecision::Denied(_)));
//! assert!(!out.ask_user);
//!
//! // Bob is unknown to Alice: pending, Alice is asked; she denies (a polite block).
//! let out = policy.handle_inbound_subscribe(now, &bob, &alice, Protocol::Sip, None)?;
//! assert_eq!((out.decision, out.ask_user), (InboundDecision::Pending, true));
//! policy.answer(now, &alice, &bob, Rule::Block)?;
//!
//! // Bob's subscription is active, and he sees Alice Offline, whatever her presence.
//! let seen = policy.presence_fanout(&alice, &"available", now);
//! assert_eq!(seen, vec![(&bob, Seen::Offline)]);
//!
//! // The node routes by domain without knowing the policy.
//! assert_eq!(policy.route(bob.domain()), Route::Sip);
//! assert_eq!(policy.route(alice.domain()), Route::Local);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod addr;
mod engine;
mod federation;
mod rules;
pub mod store;
mod subscription;
mod time;

pub use addr::{
    AddressError, Domain, DomainError, MAX_DOMAIN_LEN, MAX_LABEL_LEN, MAX_LOCAL_PART_LEN,
    UserAddress,
};
pub use engine::{
    InboundDecision, InboundOutcome, OutboundDecision, Policy, PolicyError, RemoteAnswer,
    ResumeAction, Seen, SubscribeAnswer, SubscriptionEvent,
};
pub use federation::{
    ConfigError, DomainDenial, FederationConfig, FederationEntry, ListingName, NotFederatedReason,
    Protocol, Route, XmppListing, XmppMode,
};
pub use rules::{Authorization, Rule, RuleTarget, UserRules};
pub use store::{Change, MemoryStore, MemoryStoreError, PolicyStore, Snapshot};
pub use subscription::{
    Direction, SubscriptionKey, SubscriptionLimits, SubscriptionRecord, SubscriptionState,
    TerminationReason,
};
pub use time::Timestamp;
