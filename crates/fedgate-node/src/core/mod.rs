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
//! # Per-user policy
//! [`Node`] opens fedgate-policy's [`Policy`](fedgate_policy::Policy) engine on the
//! store ([`UserPolicy`]: its configuration aligned with the TOML at every start, the
//! `[[policy.user]]` rules written) and installs it with [`Router::set_user_policy`].
//! The decisions are taken in the router, keyed by JIDs, so every inbound path that
//! ends in [`Router::handle_remote`] (XMPP s2s through the gate, a SIP gateway that
//! turns SUBSCRIBE into `<presence type='subscribe'/>`) crosses them; the protocol is
//! the one the engine routes the watcher's domain over. For a remote watcher W and a
//! local user U:
//! * **subscribe** → `handle_inbound_subscribe`: *denied* (domain not permitted):
//!   `unsubscribed` to W, U never hears of it; *polite block* (U or the administrator
//!   blocked W or its domain): `subscribed`, then `unavailable`, to W, U is not asked
//!   and the roster is untouched; *accepted* (an allow rule): the roster item becomes
//!   `from`, `subscribed` and U's presence go to W, U is not asked; *pending*: the RFC
//!   6121 processing below (the request is kept in the roster and in the engine, and
//!   pushed to U's available resources, again at each login).
//! * U's answer: `subscribed` (or a pre-approval) is stored as an allow rule (the
//!   engine's `answer`); `unsubscribed` to a pending request is stored as a block and
//!   answered as a polite block (`subscribed`, then `unavailable`; the seed: "A deny
//!   decision is handled using polite blocking"); `unsubscribed` to an approved
//!   subscription is an RFC 6121 revocation (the allow rule goes, W gets
//!   `unsubscribed`, W's record ends).
//! * **presence**: broadcasts skip a remote watcher the policy blocks; a probe from it
//!   is answered `unavailable`. So a blocked watcher only ever sees U offline.
//! * **unsubscribe** from W ends its record in the engine.
//! * At login, a request the engine holds as pending but the roster lost (a crash
//!   between the two writes) is written back and asked.
//!
//! Every decision is written to SQLite before anything is answered (the engine's
//! store is the [`StoreHandle`](fedgate_store::StoreHandle); calls that write run on a
//! blocking thread). Without an installed engine (unit tests of the router) remote
//! subscriptions follow plain RFC 6121.
//!
//! # Local client families
//! A local client's presence is `xmpp-local` (Table 7 towards federated domains), or
//! `jabber` (Table 6) when it carries the `<state xmlns='urn:fedgate:presence:jabber-state:0'/>`
//! element ([`JABBER_STATE_NS`], [`client_family`]), read per presence stanza. Each
//! session remembers the family of its last available presence, and presence from a
//! remote user is mapped for each receiving session ([`PresenceMapper`], installed by
//! [`pump_federated`]: Tables 4 and 5, `xmpp-local` or `jabber` column).
//!
//! # Shutdown
//! [`Node::shutdown`] first sends `unavailable` for every available session to its
//! watchers (remote ones through the still-open links; with SIP federation, a short
//! grace, [`SHUTDOWN_GRACE`], for the SIP side to send it), then detaches the links,
//! closes the s2s streams with `</stream:stream>` (outbound links first, after writing
//! what they have queued, so the `unavailable` presences are on the wire; then inbound
//! streams; bounded, see [`S2sOutbound::shutdown`](crate::xmpp::S2sOutbound::shutdown))
//! and the client streams.
//!
//! # Not done yet
//! * Outbound subscriptions (a local user watching a remote one) are kept in the
//!   roster only, not in the engine (`subscribe_outbound`); no refresh timers are
//!   driven (`poll_timeout`), which XMPP does not need.
//! * The engine's events from a configuration change at start (subscriptions a removed
//!   domain no longer permits) are logged, not sent to the watchers.
//! * The SIP side (links, Tables 1–3) is another module's; `[[policy.user]]` entries
//!   removed from the configuration stay in the store until changed.
//! * No roster versioning, no directed-presence bookkeeping (no unavailable sent to
//!   entities that got directed presence), no XEP-0191 blocking, no privacy lists, no
//!   carbons, no MUC, no last-presence answer to probes when the contact is offline.
//! * At shutdown, stanzas a peer sends on an inbound s2s stream after our
//!   `</stream:stream>` are not processed, and an outbound link that cannot flush and
//!   close within `XmppLimits::close_timeout` is aborted (what it held is lost, not
//!   bounced).

mod node;
mod router;
mod user_policy;
mod users;

pub use node::{Node, NodeError, SHUTDOWN_GRACE};
pub(crate) use router::with_delay as router_with_delay;
pub use router::{
    ClientOutcome, CoreConfig, OfflinePolicy, PresenceMapper, Registration, RemoteError,
    RemoteLinks, Route, Router, SessionCtl, SessionId,
};
pub use user_policy::{UserPolicy, UserPolicyError};
pub use users::UserDirectory;

pub(crate) mod util;
mod xmpp_links;
pub use xmpp_links::{XmppRemoteLinks, pump_inbound, renamespace};
mod federation;
pub use federation::{
    FederatedXmppLinks, FederationGate, Inbound, JABBER_STATE_NS, LOCAL_FAMILY, client_family,
    map_presence, pump_federated,
};
mod lookup;
pub use lookup::FederationLookup;
