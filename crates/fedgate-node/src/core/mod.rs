//! The node core: the [`Router`] that joins local users' c2s sessions, the store and
//! remote XMPP domains (s2s, behind the [`FederationGate`]).
//!
//! # Tasks and channels
//! ```text
//!  c2s session task (one per connection; owns socket + C2sIncoming)
//!    │  stanza from the client ──▶ Router::handle_from_client(session, el).await
//!    │                              ├─ roster / subscription state ──▶ StoreHandle (writer thread)
//!    │                              ├─ to a local session ──try_send──▶ [session queue, bounded]
//!    │                              ├─ to nobody available ──▶ OfflineStore (durable) or error
//!    │                              └─ to a remote domain ──▶ RemoteLinks::send (or bounce)
//!    │  ◀── replies to itself (iq results, its own presence, errors) are returned, not queued
//!    ◀── [session queue] ◀── other sessions, the core
//!    ◀── SessionCtl::kick (conflict, queue full, shutdown): stream error, close
//! ```
//! The session table is a mutex-guarded map (never held across an `.await`). A full
//! session queue closes that (slow) connection with `<resource-constraint/>`; the
//! stanza counts as undelivered. Store calls go through the [`StoreHandle`](fedgate_store::StoreHandle)'s bounded
//! queue; a full queue answers the client `resource-constraint` (type wait).
//!
//! # Delivery rules (RFC 6121 §8)
//! * **message** to a full JID: that session; otherwise `chat`/`normal`/`headline` are
//!   handled as if sent to the bare JID, `groupchat` gets `service-unavailable`,
//!   `error` is dropped. To a bare JID: the available resources of highest non-negative
//!   priority (all of them when tied); none: `chat`/`normal` are stored offline
//!   ([`OfflinePolicy::Store`], durable before anything else happens) or refused with
//!   `service-unavailable` ([`OfflinePolicy::Refuse`]); `headline` and `error` are
//!   dropped. Offline messages are written to the client after its initial presence,
//!   with a XEP-0203 `<delay/>`, and deleted from the store only once written to its
//!   socket (a crash in between delivers them again). Stanzas still queued for a
//!   session that ends are routed again (to another resource, or offline).
//! * **presence**: broadcast (no `to`) goes to the contacts with subscription `from` or
//!   `both` and to the user's own available resources; initial presence also probes the
//!   contacts with `to`/`both` (local ones are answered at once) and redelivers pending
//!   subscription requests. A session that ends while available broadcasts
//!   `unavailable` (not when replaced by a newer session with the same full JID).
//! * **subscriptions** (RFC 6121 §3): `subscribe`, `subscribed`, `unsubscribe`,
//!   `unsubscribed` with the outbound processing on the sender's roster and the inbound
//!   processing on the contact's, pre-approval, roster pushes to every session that
//!   asked for the roster; states none/to/from/both plus ask and pending-in are kept in
//!   the [`fedgate_store::RosterStore`].
//! * **iq**: roster get/set and XEP-0199 ping are answered here; get/set to a bare JID or
//!   the domain otherwise get `service-unavailable`; to a full JID: that session or
//!   `service-unavailable`.
//! * **unknown local user**: message and iq get `service-unavailable`, presence dropped.
//! * **remote domain**: [`RemoteLinks::send`]; with no links installed, or when the link
//!   refuses, the sender gets `remote-server-not-found` (`not-allowed` for a domain that
//!   is not federated, `resource-constraint` for a full link queue).
//!
//! # Federation (XMPP)
//! [`Node`] starts the s2s driver when `xmpp.s2s.enabled` and installs
//! [`FederatedXmppLinks`] ([`XmppRemoteLinks`] behind the [`FederationGate`]) with
//! [`Router::set_remote_links`]; inbound stanzas go through [`pump_federated`] (the gate,
//! then [`Router::handle_remote`]). The gate applies fedgate-policy's
//! [`FederationConfig`](fedgate_policy::FederationConfig) (outbound to a domain not
//! federated over XMPP: `not-allowed`; inbound from a domain not permitted:
//! `service-unavailable` for messages and iq requests, presence dropped, so the user is
//! never contacted) and maps presence by the remote domain's family (Tables 4, 5 and 7;
//! the `xmpp` family unchanged). Peers are resolved by [`FederationLookup`]: static
//! targets from `[[federation.domain]] targets`, DNS otherwise.
//!
//! # Not done yet
//! * Per-user policy (fedgate-policy's `Policy` engine: authorize, polite blocking,
//!   stored answers, `presence_fanout`): a subscription from a permitted domain follows
//!   the RFC 6121 processing below (the user is asked). The SIP side (links, Tables 1–3).
//! * No roster versioning, no directed-presence bookkeeping (no unavailable sent to
//!   entities that got directed presence), no XEP-0191 blocking, no privacy lists, no
//!   carbons, no MUC, no last-presence answer to probes when the contact is offline.

mod node;
mod router;
mod users;

pub use node::{Node, NodeError};
pub(crate) use router::with_delay as router_with_delay;
pub use router::{
    ClientOutcome, CoreConfig, OfflinePolicy, Registration, RemoteError, RemoteLinks, Route,
    Router, SessionCtl, SessionId,
};
pub use users::UserDirectory;

pub(crate) mod util;
mod xmpp_links;
pub use xmpp_links::{XmppRemoteLinks, pump_inbound, renamespace};
mod federation;
pub use federation::{
    FederatedXmppLinks, FederationGate, Inbound, LOCAL_FAMILY, map_presence, pump_federated,
};
mod lookup;
pub use lookup::FederationLookup;
