//! The SIP gateway: federation with Lync / Skype for Business (and another fedgate) over
//! SIP, as a translator between the [`Router`]'s XMPP world and a [`SipUa`].
//!
//! # Data flow
//!
//! ```text
//!  Router ──RemoteLinks::send (SIP domain)──▶ SipLinks ──try_send──▶ [ops, bounded] ──▶ ops task ──▶ SipUa commands
//!    ▲                                                                       ▲  (SUBSCRIBE, NOTIFY, INVITE, MESSAGE, …)
//!    │ handle_remote(<presence/>, <message/>, errors)                        │ accept / reject / notify
//!    └──────────────────────────────── event task ◀── [SipUaEvent, bounded] ◀┘── SipUa driver ◀── SipTransport
//! ```
//!
//! Two tasks share one state behind a mutex that is never held across an `.await`:
//!
//! * the **ops task** runs every SIP command in order (so an accept comes before its
//!   NOTIFYs, an INVITE before its MESSAGEs). It takes stanzas from the router and the
//!   actions the event task decided.
//! * the **event task** reads [`SipUaEvent`]s and never waits for the ops task (it
//!   only `try_send`s): the driver stops reading its own command queue only while its
//!   event queue is full, so the two tasks cannot wait on each other.
//!
//! # Presence, outbound (local user watches a Lync user)
//! `<presence type='subscribe' to='bob@lync'/>` → one SUBSCRIBE per (local user, Lync
//! user) (Accept: PIDF and Microsoft's categories), recorded in the store
//! (`subscriptions`, direction outbound, protocol sip) so it is re-established after a
//! restart; a `probe` (the router sends one when the user logs in) re-establishes a
//! subscription that is not running. The first `active` NOTIFY becomes
//! `<presence type='subscribed'/>`; every NOTIFY body (PIDF, `msrtc-event-categories`,
//! legacy `text/xml+msrtc.pidf`) is mapped by Table 1 to `xmpp-local` (Busy and Do Not
//! Disturb reach an XMPP client as Away "Busy"; like the XMPP gate, inbound presence is
//! mapped for `xmpp-local` clients) and routed as `<presence/>`. A
//! subscription refused (403/603, `rejected`) becomes `unsubscribed`; other failures a
//! presence error by RFC 7247; `deactivated`/`timeout`/481/expiry re-subscribe.
//! `unsubscribe` ends it (SUBSCRIBE Expires: 0).
//!
//! # Presence, inbound (a Lync user watches a local user)
//! A SUBSCRIBE from a domain the policy does not permit over SIP, or on a TLS
//! connection whose certificate does not name the From domain (RFC 5922), is refused
//! 403 and the local user never hears of it; an unknown local user gets 404. Otherwise
//! `<presence type='subscribe'/>` from the mapped JID goes into
//! [`Router::handle_remote`] first (RFC 6121 processing and the router's per-user
//! policy: the user is asked, or the router answers at once for an approved or
//! blocked watcher), then the SUBSCRIBE is answered: `active` with the first document
//! when the router already answered `subscribed`, 403 when it answered
//! `unsubscribed`, `pending` otherwise. `subscribed` from the router makes it
//! `active` with a NOTIFY of what the router sends that contact next (its answer to a
//! probe the gateway injects): the user's presence (PIDF, or Microsoft's categories
//! when the SUBSCRIBE's Accept prefers them) mapped by Table 3 (`xmpp-local`) or Table
//! 2 (`jabber`: a presence with the [`JABBER_STATE_NS`](crate::core::JABBER_STATE_NS)
//! element, as the XMPP gate reads it); each change is one NOTIFY (repeats are not
//! sent). A **polite block**
//! is the router's (the user's deny, stored by the per-user policy): `subscribed` then
//! only `unavailable` for that contact, so the watcher gets an `active` subscription
//! whose NOTIFYs say Offline (closed), now and for later SUBSCRIBEs, until the user
//! changes the decision. `unsubscribed` (a refusal or revocation) ends a running
//! subscription with `terminated;reason=rejected`. Refreshes are answered by the UA
//! (with the last document); an expired or unsubscribed subscription is forgotten.
//! When the watcher's connection closes, its subscription's NOTIFYs go to the
//! watcher's domain (the best route, as for our own requests) instead of waiting for
//! its refresh. Each answered watcher subscription's dialog is in the store and is
//! taken up again after a restart (`sipfed/resume.rs`).
//!
//! # IM (session mode)
//! A local `<message type='chat'/>` to a Lync user opens a session (INVITE → 200 → ACK)
//! on first use and sends each body as a MESSAGE; later messages either way reuse the
//! session of that pair (ours or theirs); the UA closes it with BYE after
//! `sip.im_idle_secs`. An INVITE from a permitted domain to an existing user is
//! accepted; its MESSAGEs (and the first message carried in the INVITE, handed out
//! once by the UA) reach the user as `<message type='chat'/>`. Group chat (a
//! `groupchat` message, a room invitation) is refused with `feature-not-implemented`
//! and a text. A MESSAGE or INVITE that fails (404, 480, 403, 408, …) bounces each
//! undelivered message with the RFC 7247 condition.
//!
//! Errors the other way (RFC 7247 §6.1, RFC 7572 §7): with the UA's
//! `app_answers_messages` (the node sets it) a MESSAGE from the SIP side comes as
//! [`SipUaEvent::MessageToAnswer`]; the event task routes it with
//! [`Router::handle_remote_message`] and answers it with [`SipUa::answer_message`]
//! (the UA's answer channel, never full: not the ops queue nor the UA's command
//! queue, where an answer could be dropped under load and its transaction would
//! then live until the 504, issue #8): 200 when the router
//! took it (delivered to a session, or stored offline), else the status of the
//! router's condition by RFC 7247's table ([`translate::status_for_condition`], the 4xx
//! column: `item-not-found` 404, `recipient-unavailable` 480, `forbidden`,
//! `not-allowed`, `policy-violation` 403; `service-unavailable`, the router's answer
//! for a refused offline message or an unknown user, 403 by note 5, never 503, which
//! would make Lync write off the whole server). A body that is not text (IMDN, …) is
//! answered 200 and not carried, as before. The UA answers 504 itself if no answer
//! comes within its `message_answer_timeout` (10 s). The first message of an INVITE
//! is taken from the UA before the INVITE is answered and routed the same way: a
//! refusal refuses the INVITE with that status (Lync shows the message as not
//! delivered), else the session is accepted and the UA does not hand it out again.
//!
//! Typing (RFC 3994 ⇄ XEP-0085): an is-composing MESSAGE becomes `<composing/>`
//! (state `active`) or `<paused/>` (`idle`) in a `<message type='chat'/>`; a local
//! chat state without a body to a SIP user with an open session becomes an
//! is-composing MESSAGE (`composing` → `active`, `paused`/`active`/`inactive`/`gone`
//! → `idle`); none opens a session, and a failed one bounces nothing.
//!
//! # Routing and failover
//! [`SipRoutes`]: static targets, else `_sipfederationtls._tcp` (RFC 3263), healthy
//! endpoints first. An INVITE or initial SUBSCRIBE that fails with 408 or 503 marks the
//! endpoint down in the routes' [`Health`](fedgate_srv::Health) memory (held down for
//! `skip_for`, 30 s by default: new requests go to the next endpoint first) and is sent
//! again on the next endpoint it has not failed on ([`SipRoutes::next_target`]), until
//! the list is exhausted; then the local user gets the RFC 7247 error. A transport
//! error is such a 503 and comes at once: the SIP transport reports a connection that
//! cannot be opened (refused, timed out, TLS or RFC 5922 failure) as a
//! [`SendFailure`](crate::sip::SendFailure), the UA driver fails the transactions on
//! that target, so failover takes the connect time (a refused port: milliseconds), not
//! Timer B/F (32 s). The messages of a session whose INVITE failed that way were never
//! sent; they go into the session opened on the next endpoint, in order.
//!
//! The ends of sessions and subscriptions (`SessionClosed`, `SubscriptionTerminated`)
//! are handled by the ops task, in order after the operation that created them (the
//! event task queues them; with a full ops queue it handles them itself): a transport
//! error can now end a session before `open_session` has even returned.
//!
//! # Not done
//! * No page-mode MESSAGE (answered 501 by the driver), no RLMI/multipart NOTIFY
//!   bodies, no conference (three-way) sessions, no `multipart/alternative` MESSAGE
//!   bodies (answered 200, not carried).
//! * IM dialogs are not stored (a session ends with its connection, on both sides):
//!   after a restart the next message opens a new session. Watchers' subscription
//!   dialogs are stored and taken up again at start (`sipfed/resume.rs`).
//! * A delivery error reaches the SIP side only when the router knows it at once
//!   (unknown user, offline refused, offline queue full or store error): a message
//!   written to a client session that then fails is not reported (XMPP has no
//!   delivery receipt by default). A first message that is delivered and then the
//!   session not accepted (the UA refuses the accept) is not recalled.
//! * The UA answers Lync's typing indications 200 itself, whatever the router does
//!   with the chat state.
//! * Failover of requests already written to a connection that then breaks waits for
//!   Timer B/F (their answer may still come, RFC 3261 §18.2.2); MESSAGEs inside an open
//!   session are never moved to another endpoint (the dialog lives at one).
//! * Authorization of watchers is the router's (roster and per-user policy); the
//!   gateway only applies its answers.

mod resume;
mod routes;
pub mod translate;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use fedgate_policy::{
    Change, Direction, Domain, FederationConfig, PolicyStore, Protocol, Route as PolicyRoute,
    SubscriptionKey, SubscriptionRecord, SubscriptionState, UserAddress,
};
use fedgate_presence::{Availability, Family, Presence};
use fedgate_sip_txn::{CloseReason, SessionId, SubEnd, SubState, SubscriptionId};
use fedgate_store::StoreHandle;
use fedgate_xmpp::stanza::StanzaErrorCondition as Cond;
use fedgate_xmpp::{BareJid, Element, Jid};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use routes::{RouteError, SipRoutes};
use translate::DocFormat;

use crate::core::{LOCAL_FAMILY, RemoteError, RemoteLinks, Route, Router};
use crate::sip::{SipUa, SipUaEvent, SubscribeOptions, Target, UaError};

/// (local user, remote SIP user), both as bare JIDs.
type Pair = (BareJid, BareJid);

/// Configuration of a [`SipGateway`].
#[derive(Debug, Clone)]
pub struct SipGatewayConfig {
    /// Local domains, federated domains and the administrator policy.
    pub federation: FederationConfig,
    /// Expires of our SUBSCRIBEs.
    pub subscribe_expires: u32,
    /// Depth of the ops queue (stanzas from the router and decided actions); a full
    /// queue makes [`SipLinks::send`] answer [`RemoteError::Full`].
    pub queue: usize,
}

/// What the inbound side decided about a watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Waiting for the local user.
    Pending,
    /// Approved: NOTIFYs carry the user's presence.
    Accepted,
    /// Refused by the router (`unsubscribed`): 403, or `terminated;reason=rejected`.
    Refused,
}

#[derive(Debug, Clone)]
struct Watcher {
    pair: Pair,
    format: DocFormat,
    decision: Decision,
    /// The last document sent (a NOTIFY that would repeat it is not sent).
    last: Option<Bytes>,
    /// The UA has answered the SUBSCRIBE (NOTIFYs can be sent).
    accepted: bool,
}

#[derive(Debug, Clone)]
struct OutSub {
    pair: Pair,
    target: Option<Target>,
    /// The targets this subscription's SUBSCRIBE was sent to (the last is `target`).
    tried: Vec<Target>,
    active: bool,
}

/// One of our MESSAGEs in a session, until it is answered.
#[derive(Debug)]
struct Pending {
    el: Element,
    /// The UA took it (`false`: the session was already gone in the UA; the message
    /// goes into a new session when the close is handled).
    sent: bool,
    /// A typing indication (from a chat state): never bounced nor sent again.
    typing: bool,
}

#[derive(Debug)]
struct Session {
    pair: Pair,
    /// Our INVITE's target (`None` for a session the peer opened).
    target: Option<Target>,
    /// The targets our INVITEs for these messages were sent to (the last is `target`).
    tried: Vec<Target>,
    /// Our MESSAGEs not yet answered, oldest first (to bounce on failure).
    pending: VecDeque<Pending>,
}

/// The gateway's state, shared by its two tasks.
#[derive(Debug, Default)]
struct State {
    watchers: HashMap<SubscriptionId, Watcher>,
    out_subs: HashMap<Pair, SubscriptionId>,
    out_by_id: HashMap<SubscriptionId, OutSub>,
    /// Pairs whose SUBSCRIBE is being sent (not yet an id).
    subscribing: HashSet<Pair>,
    sessions: HashMap<Pair, SessionId>,
    session_info: HashMap<SessionId, Session>,
    /// The last presence the router sent each (local user, SIP contact) pair (the local
    /// family): the router decides per contact (a politely blocked one only ever gets
    /// `unavailable`).
    local_presence: HashMap<Pair, (Family, Presence)>,
    /// The last presence of each watched remote user (Lync family).
    remote_presence: HashMap<BareJid, Presence>,
    /// Re-subscriptions in a row without an active NOTIFY (bounded by
    /// [`MAX_RESUBSCRIBE`]).
    resubscribes: HashMap<Pair, u32>,
    /// Watchers approved by the user whose `active` NOTIFY waits for the presence the
    /// router sends right after the approval (at most [`ACTIVATION_GRACE`]).
    activations: HashSet<SubscriptionId>,
    /// Watcher subscriptions whose dialog is in the store, with its key there
    /// ([`resume`]), and when it was last written.
    stored_watchers: HashMap<SubscriptionId, (String, std::time::Instant)>,
}

/// How long an approved watcher's first `active` NOTIFY waits for the user's presence
/// (the router routes `subscribed` and then the presence of each available resource;
/// a user with none sends nothing, and the NOTIFY then says Offline).
const ACTIVATION_GRACE: std::time::Duration = std::time::Duration::from_millis(300);

/// Re-subscriptions in a row (after `deactivated`, `timeout`, 481, expiry) without an
/// active NOTIFY in between, before the gateway gives up until the next login.
const MAX_RESUBSCRIBE: u32 = 3;

impl State {
    /// Records `doc` as the last document of watcher `id`; false if it was already.
    fn note_doc(&mut self, id: SubscriptionId, doc: &Bytes) -> bool {
        match self.watchers.get_mut(&id) {
            Some(w) if w.last.as_ref() == Some(doc) => false,
            Some(w) => {
                w.last = Some(doc.clone());
                true
            }
            None => false,
        }
    }

    fn watchers_of(&self, pair: &Pair) -> Vec<(SubscriptionId, Watcher)> {
        self.watchers
            .iter()
            .filter(|(_, w)| &w.pair == pair)
            .map(|(id, w)| (*id, w.clone()))
            .collect()
    }

    fn drop_session(&mut self, id: SessionId) -> Option<Session> {
        let s = self.session_info.remove(&id)?;
        if self.sessions.get(&s.pair) == Some(&id) {
            self.sessions.remove(&s.pair);
        }
        Some(s)
    }
}

/// Work for the ops task.
#[derive(Debug)]
enum Op {
    /// A stanza from the router for a SIP user.
    Stanza(Element),
    /// Answer a watcher's SUBSCRIBE by the router's decision so far: `active` with the
    /// first document (approved, or politely blocked), 403 (refused), else `pending`.
    AcceptWatcher(SubscriptionId),
    /// Reject a SUBSCRIBE.
    RejectSubscription { sub: SubscriptionId, code: u16 },
    /// Accept an offered session; `first`: its INVITE carries a first message, which
    /// is delivered first (and the INVITE refused with the RFC 7247 status of a
    /// delivery failure).
    AcceptSession { session: SessionId, first: bool },
    /// Reject an offered session.
    RejectSession { session: SessionId, code: u16 },
    /// (Re-)establish the outbound subscription of a pair, on a target not in `tried`.
    Subscribe { pair: Pair, tried: Vec<Target> },
    /// Send these messages again, in a new session on a target not in `tried`.
    Reopen {
        pair: Pair,
        tried: Vec<Target>,
        messages: Vec<Element>,
    },
    /// A session ended (handled in order after the op that opened it).
    SessionClosed {
        session: SessionId,
        reason: CloseReason,
    },
    /// A subscription ended (likewise).
    SubscriptionEnded { sub: SubscriptionId, reason: SubEnd },
    /// Write a watcher's dialog to the store again (it was refreshed).
    StoreWatcher(SubscriptionId),
    /// A watcher's connection closed: send its NOTIFYs to its domain.
    RebindWatcher(SubscriptionId),
}

#[derive(Debug)]
struct Shared {
    cfg: SipGatewayConfig,
    ua: SipUa,
    router: Router,
    routes: SipRoutes,
    state: Mutex<State>,
    ops: mpsc::Sender<Op>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn user_address(j: &BareJid) -> Option<UserAddress> {
    UserAddress::new(&j.to_string()).ok()
}

fn policy_domain(j: &BareJid) -> Option<Domain> {
    Domain::new(j.domain().as_str()).ok()
}

/// The SIP gateway: the [`RemoteLinks`] for SIP-federated domains ([`SipLinks`]) and
/// the two tasks of the module docs. Dropping it stops the tasks.
#[derive(Debug)]
pub struct SipGateway {
    links: SipLinks,
    ops_task: JoinHandle<()>,
    event_task: JoinHandle<()>,
}

impl Drop for SipGateway {
    fn drop(&mut self) {
        self.ops_task.abort();
        self.event_task.abort();
    }
}

/// The [`RemoteLinks`] of the SIP-federated domains: queues each stanza for the
/// gateway's ops task (never waits).
#[derive(Debug, Clone)]
pub struct SipLinks {
    shared: Arc<Shared>,
}

impl RemoteLinks for SipLinks {
    fn send(&self, stanza: Element) -> Result<(), RemoteError> {
        let domain = stanza
            .attr("to")
            .and_then(|t| Jid::parse(t).ok())
            .and_then(|j| Domain::new(j.domain().as_str()).ok())
            .ok_or_else(|| RemoteError::Other("no valid `to`".into()))?;
        if self.shared.cfg.federation.route(&domain) != PolicyRoute::Sip {
            return Err(RemoteError::NotAllowed);
        }
        self.shared
            .ops
            .try_send(Op::Stanza(stanza))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => RemoteError::Full,
                mpsc::error::TrySendError::Closed(_) => RemoteError::NoRoute,
            })
    }
}

/// The node's [`RemoteLinks`] when SIP federation runs: SIP-federated domains to the
/// [`SipLinks`], every other domain to the XMPP links (if any).
#[derive(Debug, Clone)]
pub struct DispatchLinks {
    federation: FederationConfig,
    sip: SipLinks,
    xmpp: Option<Arc<dyn RemoteLinks>>,
}

impl DispatchLinks {
    /// SIP domains to `sip`, the others to `xmpp` (`None`: XMPP federation is off).
    pub fn new(
        federation: FederationConfig,
        sip: SipLinks,
        xmpp: Option<Arc<dyn RemoteLinks>>,
    ) -> Self {
        DispatchLinks {
            federation,
            sip,
            xmpp,
        }
    }
}

impl RemoteLinks for DispatchLinks {
    fn send(&self, stanza: Element) -> Result<(), RemoteError> {
        let domain = stanza
            .attr("to")
            .and_then(|t| Jid::parse(t).ok())
            .and_then(|j| Domain::new(j.domain().as_str()).ok());
        match domain.map(|d| self.federation.route(&d)) {
            Some(PolicyRoute::Sip) => self.sip.send(stanza),
            Some(PolicyRoute::NotFederated(_)) => match &self.xmpp {
                Some(x) => x.send(stanza),
                None => Err(RemoteError::NotAllowed),
            },
            _ => match &self.xmpp {
                Some(x) => x.send(stanza),
                None => Err(RemoteError::NoRoute),
            },
        }
    }
}

impl SipGateway {
    /// Starts the gateway on a running [`SipUa`] and its event receiver; reads the
    /// stored outbound SIP subscriptions (re-established at once) and polite blocks.
    pub async fn start(
        cfg: SipGatewayConfig,
        ua: SipUa,
        events: mpsc::Receiver<SipUaEvent>,
        router: Router,
        routes: SipRoutes,
    ) -> SipGateway {
        let (tx, rx) = mpsc::channel(cfg.queue.max(16));
        let shared = Arc::new(Shared {
            cfg,
            ua,
            router,
            routes,
            state: Mutex::new(State::default()),
            ops: tx,
        });
        let resubscribe = load_stored(&shared).await;
        for pair in resubscribe {
            if shared
                .ops
                .try_send(Op::Subscribe {
                    pair,
                    tried: Vec::new(),
                })
                .is_err()
            {
                tracing::warn!(
                    "sip gateway: ops queue full at start; a stored subscription waits for the next login"
                );
            }
        }
        let ops_task = tokio::spawn(ops_loop(shared.clone(), rx));
        let event_task = tokio::spawn(event_loop(shared.clone(), events));
        // With both tasks running: the router's answers to the restored watchers come
        // back through the ops queue.
        tokio::spawn(resume::restore_watchers(shared.clone()));
        SipGateway {
            links: SipLinks { shared },
            ops_task,
            event_task,
        }
    }

    /// The [`RemoteLinks`] for SIP-federated domains.
    pub fn links(&self) -> SipLinks {
        self.links.clone()
    }
}

/// Reads the stored outbound SIP subscriptions; returns the pairs to re-subscribe.
async fn load_stored(shared: &Arc<Shared>) -> Vec<Pair> {
    let store = shared.router.store().clone();
    let snap = match store.submit(|s| s.load()) {
        Ok(reply) => match reply.await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "sip gateway: stored subscriptions not read");
                return Vec::new();
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "sip gateway: stored subscriptions not read");
            return Vec::new();
        }
    };
    let fed = &shared.cfg.federation;
    let pair_of = |l: &UserAddress, r: &UserAddress| -> Option<Pair> {
        if fed.route(r.domain()) != PolicyRoute::Sip {
            return None;
        }
        Some((
            BareJid::parse(&l.to_string()).ok()?,
            BareJid::parse(&r.to_string()).ok()?,
        ))
    };
    snap.subscriptions
        .iter()
        .filter(|s| s.protocol == Protocol::Sip && s.key.direction == Direction::Outbound)
        .filter(|s| !matches!(s.state, SubscriptionState::Terminated(_)))
        .filter_map(|s| pair_of(&s.key.local, &s.key.remote))
        .collect()
}

impl Shared {
    fn push(&self, op: Op) {
        if let Err(e) = self.ops.try_send(op) {
            tracing::warn!(error = %e, "sip gateway: ops queue full; action dropped");
        }
    }

    fn store(&self) -> &StoreHandle {
        self.router.store()
    }

    /// Writes policy changes (the outbound SIP subscriptions), logging a failure.
    async fn persist(&self, changes: Vec<Change>) {
        let r = match self.store().submit(move |s| s.apply(&changes)) {
            Ok(reply) => reply.await,
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "sip gateway: state not stored");
        }
    }

    async fn persist_subscription(&self, pair: &Pair, state: Option<SubscriptionState>) {
        let (Some(local), Some(remote)) = (user_address(&pair.0), user_address(&pair.1)) else {
            return;
        };
        let key = SubscriptionKey::outbound(local, remote);
        let change = match state {
            Some(state) => Change::PutSubscription(SubscriptionRecord {
                key,
                protocol: Protocol::Sip,
                state,
                expires_at: None,
                refresh_at: None,
            }),
            None => Change::DeleteSubscription(key),
        };
        self.persist(vec![change]).await;
    }

    /// The document a watcher gets now.
    fn watcher_doc(&self, st: &State, w: &Watcher) -> (&'static str, Bytes) {
        let offline = (LOCAL_FAMILY, Presence::new(Availability::Offline));
        let (family, p) = match w.decision {
            Decision::Accepted => st.local_presence.get(&w.pair).unwrap_or(&offline),
            Decision::Pending | Decision::Refused => &offline,
        };
        translate::notify_body(p, *family, w.format, &translate::sip_uri_of(&w.pair.0))
    }

    async fn to_router(&self, el: Element) {
        self.router.handle_remote(el).await;
    }
}

// ---- the ops task ----------------------------------------------------------------------

async fn ops_loop(shared: Arc<Shared>, mut rx: mpsc::Receiver<Op>) {
    loop {
        let waiting = !lock(&shared.state).activations.is_empty();
        let op = if waiting {
            match tokio::time::timeout(ACTIVATION_GRACE, rx.recv()).await {
                Ok(op) => op,
                Err(_) => {
                    activate(&shared).await;
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        let Some(op) = op else { break };
        match op {
            Op::Stanza(el) => stanza(&shared, el).await,
            Op::AcceptWatcher(sub) => {
                let answer = {
                    let mut st = lock(&shared.state);
                    let Some(w) = st.watchers.get(&sub).cloned() else {
                        continue;
                    };
                    match w.decision {
                        Decision::Refused => {
                            st.watchers.remove(&sub);
                            None
                        }
                        // Approved, and the router already said what this contact
                        // sees: active with it (a polite block: Offline at once).
                        Decision::Accepted if st.local_presence.contains_key(&w.pair) => {
                            let doc = shared.watcher_doc(&st, &w);
                            st.note_doc(sub, &doc.1);
                            Some((SubState::Active, Some(doc)))
                        }
                        // Approved, presence still to come (the answer to the gateway's
                        // probe): pending now, active with that presence (or after
                        // ACTIVATION_GRACE), never a false Offline.
                        Decision::Accepted => {
                            st.activations.insert(sub);
                            Some((SubState::Pending, None))
                        }
                        Decision::Pending => Some((SubState::Pending, None)),
                    }
                };
                let r = match answer {
                    None => shared.ua.reject_subscription(sub, FORBIDDEN).await,
                    Some((state, body)) => shared.ua.accept_subscription(sub, state, body).await,
                };
                let accepted = {
                    let mut st = lock(&shared.state);
                    match r {
                        Ok(()) => match st.watchers.get_mut(&sub) {
                            Some(w) => {
                                w.accepted = true;
                                true
                            }
                            None => false,
                        },
                        Err(e) => {
                            tracing::debug!(error = %e, "sip gateway: subscription not answered");
                            st.watchers.remove(&sub);
                            false
                        }
                    }
                };
                if accepted {
                    resume::store_watcher(&shared, sub).await;
                }
            }
            Op::StoreWatcher(sub) => resume::store_watcher(&shared, sub).await,
            Op::RebindWatcher(sub) => resume::rebind_watcher(&shared, sub).await,
            Op::RejectSubscription { sub, code } => {
                if let Err(e) = shared.ua.reject_subscription(sub, code).await {
                    tracing::debug!(error = %e, "sip gateway: subscription not rejected");
                }
            }
            Op::AcceptSession { session: s, first } => {
                let first = if first {
                    shared.ua.take_first_message(s).await.ok().flatten()
                } else {
                    None
                };
                let status = match first {
                    Some((ct, body)) => deliver_from_sip(&shared, s, &ct, &body).await,
                    None => 200,
                };
                let r = if status < 300 {
                    shared.ua.accept_session(s).await
                } else {
                    lock(&shared.state).drop_session(s);
                    shared.ua.reject_session(s, status).await
                };
                if let Err(e) = r {
                    tracing::debug!(error = %e, "sip gateway: session not answered");
                    lock(&shared.state).drop_session(s);
                }
            }
            Op::RejectSession { session, code } => {
                if let Err(e) = shared.ua.reject_session(session, code).await {
                    tracing::debug!(error = %e, "sip gateway: session not rejected");
                }
            }
            Op::Subscribe { pair, tried } => subscribe(&shared, pair, tried, None).await,
            Op::Reopen {
                pair,
                tried,
                messages,
            } => {
                for m in messages {
                    send_message(&shared, &pair, m, tried.clone()).await;
                }
            }
            Op::SessionClosed { session, reason } => session_closed(&shared, session, reason).await,
            Op::SubscriptionEnded { sub, reason } => subscription_ended(&shared, sub, reason).await,
        }
    }
}

/// Sends the `active` NOTIFY of every approved watcher still waiting for one.
async fn activate(shared: &Arc<Shared>) {
    let notes: Vec<(SubscriptionId, (&'static str, Bytes))> = {
        let mut st = lock(&shared.state);
        let ids: Vec<SubscriptionId> = st.activations.drain().collect();
        let notes: Vec<_> = ids
            .into_iter()
            .filter_map(|id| {
                st.watchers
                    .get(&id)
                    .map(|w| (id, shared.watcher_doc(&st, w)))
            })
            .collect();
        for (id, (_, doc)) in &notes {
            st.note_doc(*id, doc);
        }
        notes
    };
    for (id, (ct, body)) in notes {
        if let Err(e) = shared.ua.notify(id, Some(SubState::Active), ct, body).await {
            tracing::debug!(error = %e, "sip gateway: NOTIFY not sent");
        }
    }
}

/// A stanza from the router: `from` a local user, `to` a SIP user.
async fn stanza(shared: &Arc<Shared>, el: Element) {
    let from = el.attr("from").and_then(|f| Jid::parse(f).ok());
    let to = el.attr("to").and_then(|t| Jid::parse(t).ok());
    let (Some(from), Some(to)) = (from, to) else {
        return;
    };
    let local = match &from {
        Jid::Full(f) => f.bare().clone(),
        Jid::Bare(b) => b.clone(),
    };
    let remote = match &to {
        Jid::Full(f) => f.bare().clone(),
        Jid::Bare(b) => b.clone(),
    };
    if remote.local().is_none() {
        // The SIP domain itself: nothing to talk to.
        if el.name() != "presence" {
            bounce(shared, &el, Cond::ServiceUnavailable, None).await;
        }
        return;
    }
    let pair = (local, remote);
    match el.name() {
        "message" => message(shared, pair, el).await,
        "presence" => presence(shared, pair, el).await,
        _ => {
            if matches!(el.attr("type"), Some("get" | "set")) {
                bounce(shared, &el, Cond::ServiceUnavailable, None).await;
            }
        }
    }
}

async fn bounce(shared: &Arc<Shared>, el: &Element, cond: Cond, text: Option<&str>) {
    // Only a local sender gets a bounce.
    let local_sender = el
        .attr("from")
        .and_then(|f| Jid::parse(f).ok())
        .is_some_and(|j| !matches!(shared.router.route_of(&j), Route::Remote(_)));
    if !local_sender {
        return;
    }
    if let Some(b) = translate::bounce(el, cond, text) {
        shared.to_router(b).await;
    }
}

async fn message(shared: &Arc<Shared>, pair: Pair, el: Element) {
    if el.attr("type") == Some("error") {
        return; // no SIP answer for an XMPP error to an already answered MESSAGE
    }
    if translate::is_group_chat(&el) {
        return bounce(
            shared,
            &el,
            Cond::FeatureNotImplemented,
            Some("group chat is not available with a SIP (Lync) contact: one-to-one chat only"),
        )
        .await;
    }
    if translate::body_of(&el).is_none() {
        // A chat state becomes a typing indication in an open session (none is
        // opened for it); receipts and the rest: nothing to send.
        if let Some(active) = translate::typing_of(&el) {
            send_typing(shared, &pair, el, active).await;
        }
        return;
    }
    send_message(shared, &pair, el, Vec::new()).await;
}

/// An RFC 3994 typing indication in the pair's session, if there is one.
async fn send_typing(shared: &Arc<Shared>, pair: &Pair, el: Element, active: bool) {
    let session = {
        let mut st = lock(&shared.state);
        let s = st.sessions.get(pair).copied();
        s.and_then(|s| {
            let info = st.session_info.get_mut(&s)?;
            info.pending.push_back(Pending {
                el,
                sent: true,
                typing: true,
            });
            Some(s)
        })
    };
    let Some(session) = session else {
        return;
    };
    if let Err(e) = shared.ua.send_typing(session, active).await {
        // Not taken (e.g. a session offered to us and not accepted yet): forget it.
        tracing::debug!(error = %e, "sip gateway: typing indication not sent");
        if let Some(s) = lock(&shared.state).session_info.get_mut(&session)
            && s.pending.back().is_some_and(|p| p.typing)
        {
            s.pending.pop_back();
        }
    }
}

/// Routes a message from a SIP session to the local user; the SIP status to answer:
/// 200 when the router took it (delivered, or stored offline), else its error
/// condition mapped by RFC 7247 §6.1 (`item-not-found` 404, `recipient-unavailable`
/// 480, `forbidden`/`not-allowed` 403, `service-unavailable` 403 by note 5, …); 481
/// for a session the gateway does not know. A body that is not text (IMDN, …) is not
/// carried and answered 200, as before.
async fn deliver_from_sip(shared: &Arc<Shared>, session: SessionId, ct: &[u8], body: &[u8]) -> u16 {
    let Some(pair) = lock(&shared.state)
        .session_info
        .get(&session)
        .map(|s| s.pair.clone())
    else {
        return 481;
    };
    let Some(text) = translate::message_text(ct, body) else {
        return 200;
    };
    let chat = translate::chat(&pair.1, &pair.0, &text);
    match shared.router.handle_remote_message(chat).await {
        Ok(()) => 200,
        Err(cond) => {
            let status = translate::status_for_condition(cond, true);
            tracing::debug!(local = %pair.0, remote = %pair.1, condition = cond.as_str(), status,
                "sip gateway: message from SIP not delivered");
            status
        }
    }
}

/// Sends one message in the pair's session, opening one if there is none, on the best
/// target not in `tried` (those this message already failed on).
async fn send_message(shared: &Arc<Shared>, pair: &Pair, el: Element, tried: Vec<Target>) {
    let Some(body) = translate::body_of(&el) else {
        return;
    };
    // The session and the message's place in it in one step: a close handled since
    // removed both.
    let existing = {
        let mut st = lock(&shared.state);
        let s = st.sessions.get(pair).copied();
        s.and_then(|s| {
            let info = st.session_info.get_mut(&s)?;
            info.pending.push_back(Pending {
                el: el.clone(),
                sent: true,
                typing: false,
            });
            Some(s)
        })
    };
    let session = match existing {
        Some(s) => s,
        None => {
            let Some(domain) = policy_domain(&pair.1) else {
                return bounce(shared, &el, Cond::JidMalformed, None).await;
            };
            let target = match shared.routes.next_target(&domain, &tried).await {
                Ok(Some(t)) => t,
                Ok(None) => return bounce(shared, &el, Cond::RemoteServerNotFound, None).await,
                Err(e) => {
                    tracing::info!(error = %e, "sip gateway: no route for a message");
                    return bounce(shared, &el, Cond::RemoteServerNotFound, None).await;
                }
            };
            let (Some(from), Some(to)) = (
                translate::address_of(&pair.0),
                translate::address_of(&pair.1),
            ) else {
                return bounce(shared, &el, Cond::JidMalformed, None).await;
            };
            match shared.ua.open_session(target.clone(), from, to).await {
                Ok(s) => {
                    let mut tried = tried;
                    tried.push(target.clone());
                    let mut st = lock(&shared.state);
                    st.sessions.insert(pair.clone(), s);
                    st.session_info.insert(
                        s,
                        Session {
                            pair: pair.clone(),
                            target: Some(target),
                            tried,
                            pending: VecDeque::from([Pending {
                                el: el.clone(),
                                sent: true,
                                typing: false,
                            }]),
                        },
                    );
                    s
                }
                Err(e) => {
                    tracing::info!(error = %e, "sip gateway: session not opened");
                    return bounce(shared, &el, Cond::ResourceConstraint, None).await;
                }
            }
        }
    };
    match shared.ua.send_message(session, &body).await {
        Ok(()) => {}
        // The UA has ended the session (a transport error, idle): its close comes
        // next in the ops queue and takes this message along.
        Err(UaError::Ua(fedgate_sip_txn::Error::UnknownSession)) => {
            if let Some(p) = lock(&shared.state)
                .session_info
                .get_mut(&session)
                .and_then(|s| s.pending.back_mut())
            {
                p.sent = false;
            }
        }
        Err(e) => {
            tracing::info!(error = %e, "sip gateway: message not sent");
            if let Some(s) = lock(&shared.state).session_info.get_mut(&session) {
                s.pending.pop_back();
            }
            bounce(shared, &el, Cond::ResourceConstraint, None).await;
        }
    }
}

async fn presence(shared: &Arc<Shared>, pair: Pair, el: Element) {
    tracing::debug!(local = %pair.0, remote = %pair.1, kind = el.attr("type").unwrap_or("available"), "sip gateway: presence to a SIP user");
    match el.attr("type") {
        None | Some("unavailable") => {
            let Some(p) = translate::local_presence(&el) else {
                return;
            };
            let targets: Vec<(SubscriptionId, Option<SubState>, (&'static str, Bytes))> = {
                let mut st = lock(&shared.state);
                st.local_presence.insert(pair.clone(), p);
                let accepted: Vec<(SubscriptionId, Watcher)> = st
                    .watchers_of(&pair)
                    .into_iter()
                    .filter(|(_, w)| w.decision == Decision::Accepted && w.accepted)
                    .collect();
                let mut out = Vec::new();
                for (id, w) in accepted {
                    let first = st.activations.remove(&id).then_some(SubState::Active);
                    let doc = shared.watcher_doc(&st, &w);
                    if st.note_doc(id, &doc.1) || first.is_some() {
                        out.push((id, first, doc));
                    }
                }
                out
            };
            for (id, state, (ct, body)) in targets {
                if let Err(e) = shared.ua.notify(id, state, ct, body).await {
                    tracing::debug!(error = %e, "sip gateway: NOTIFY not sent");
                }
            }
        }
        Some("subscribe") => {
            let running = {
                let st = lock(&shared.state);
                st.out_subs.contains_key(&pair) || st.subscribing.contains(&pair)
            };
            if !running {
                subscribe(shared, pair, Vec::new(), Some(&el)).await;
            } else {
                // Already watching: confirm it if it is active, and give the router
                // what we know.
                let active = {
                    let st = lock(&shared.state);
                    st.out_subs
                        .get(&pair)
                        .and_then(|id| st.out_by_id.get(id))
                        .is_some_and(|o| o.active)
                };
                if active {
                    shared
                        .to_router(translate::presence_of_type("subscribed", &pair.1, &pair.0))
                        .await;
                }
                let known = lock(&shared.state).remote_presence.get(&pair.1).cloned();
                if let Some(p) = known {
                    let out = translate::presence_stanza(&p, LOCAL_FAMILY, &pair.1, &pair.0);
                    shared.to_router(out).await;
                }
            }
        }
        Some("probe") => {
            let (running, known) = {
                let st = lock(&shared.state);
                (
                    st.out_subs.contains_key(&pair) || st.subscribing.contains(&pair),
                    st.remote_presence.get(&pair.1).cloned(),
                )
            };
            if !running {
                subscribe(shared, pair, Vec::new(), None).await;
            } else if let Some(p) = known {
                let out = translate::presence_stanza(&p, LOCAL_FAMILY, &pair.1, &pair.0);
                shared.to_router(out).await;
            }
        }
        Some("unsubscribe") => {
            let id = {
                let mut st = lock(&shared.state);
                let id = st.out_subs.remove(&pair);
                if let Some(id) = id {
                    st.out_by_id.remove(&id);
                }
                id
            };
            if let Some(id) = id
                && let Err(e) = shared.ua.terminate(id, "timeout").await
            {
                tracing::debug!(error = %e, "sip gateway: unsubscribe not sent");
            }
            shared.persist_subscription(&pair, None).await;
        }
        Some("subscribed") => {
            // Approved (or, by the router's per-user policy, politely blocked: then
            // `unavailable` follows): the `active` NOTIFY goes out with the presence
            // that follows (or after ACTIVATION_GRACE, see `ops_loop`); a SUBSCRIBE not
            // answered yet is accepted `active` (`Op::AcceptWatcher`).
            {
                let mut st = lock(&shared.state);
                for (id, w) in st.watchers_of(&pair) {
                    if w.decision != Decision::Accepted && w.accepted {
                        st.activations.insert(id);
                    }
                    if let Some(w) = st.watchers.get_mut(&id) {
                        w.decision = Decision::Accepted;
                    }
                }
            }
            // The router answers a probe from an approved contact with the presence of
            // each available resource (`unavailable` for a politely blocked one): the
            // first document, also for a watcher approved before, whose `subscribed`
            // the router sends alone.
            shared
                .to_router(translate::presence_of_type("probe", &pair.1, &pair.0))
                .await;
        }
        Some("unsubscribed") => {
            // Refused or revoked: a SUBSCRIBE not answered yet gets 403 (RFC 7247
            // `forbidden`), a running subscription ends with `rejected`.
            let running: Vec<SubscriptionId> = {
                let mut st = lock(&shared.state);
                st.local_presence.remove(&pair);
                let mut running = Vec::new();
                for (id, w) in st.watchers_of(&pair) {
                    st.activations.remove(&id);
                    if w.accepted {
                        st.watchers.remove(&id);
                        running.push(id);
                    } else if let Some(w) = st.watchers.get_mut(&id) {
                        w.decision = Decision::Refused;
                    }
                }
                running
            };
            for id in running {
                if let Err(e) = shared.ua.terminate(id, "rejected").await {
                    tracing::debug!(error = %e, "sip gateway: subscription not ended");
                }
            }
        }
        _ => {}
    }
}

/// Sends the pair's SUBSCRIBE to the best target not in `tried` (those it already
/// failed on). `request`: the local user's `subscribe`, bounced on failure.
async fn subscribe(
    shared: &Arc<Shared>,
    pair: Pair,
    tried: Vec<Target>,
    request: Option<&Element>,
) {
    {
        let mut st = lock(&shared.state);
        if st.out_subs.contains_key(&pair) || !st.subscribing.insert(pair.clone()) {
            return;
        }
    }
    let result = async {
        let domain = policy_domain(&pair.1).ok_or(Cond::JidMalformed)?;
        let target = shared
            .routes
            .next_target(&domain, &tried)
            .await
            .map_err(|e| {
                tracing::info!(error = %e, "sip gateway: no route for a SUBSCRIBE");
                Cond::RemoteServerNotFound
            })?
            .ok_or(Cond::RemoteServerNotFound)?;
        let (Some(from), Some(to)) = (
            translate::address_of(&pair.0),
            translate::address_of(&pair.1),
        ) else {
            return Err(Cond::JidMalformed);
        };
        let opts = SubscribeOptions {
            expires: shared.cfg.subscribe_expires,
            ..SubscribeOptions::default()
        };
        let id = shared
            .ua
            .subscribe_with(target.clone(), from, to, opts)
            .await
            .map_err(|e| {
                tracing::info!(error = %e, "sip gateway: SUBSCRIBE not sent");
                Cond::ResourceConstraint
            })?;
        Ok((id, target))
    }
    .await;
    match result {
        Ok((id, target)) => {
            {
                let mut st = lock(&shared.state);
                st.subscribing.remove(&pair);
                st.out_subs.insert(pair.clone(), id);
                let mut tried = tried.clone();
                tried.push(target.clone());
                st.out_by_id.insert(
                    id,
                    OutSub {
                        pair: pair.clone(),
                        target: Some(target),
                        tried,
                        active: false,
                    },
                );
            }
            shared
                .persist_subscription(&pair, Some(SubscriptionState::Pending))
                .await;
        }
        Err(cond) => {
            lock(&shared.state).subscribing.remove(&pair);
            // The user's own request, or a failover retry that found no other target.
            if request.is_some() || !tried.is_empty() {
                let e = translate::presence_error(&pair.1, &pair.0, cond);
                shared.to_router(e).await;
            }
        }
    }
}

// ---- the event task --------------------------------------------------------------------

async fn event_loop(shared: Arc<Shared>, mut events: mpsc::Receiver<SipUaEvent>) {
    while let Some(ev) = events.recv().await {
        event(&shared, ev).await;
    }
    tracing::debug!("sip gateway: SIP user agent gone");
}

/// Checks a request's remote party: permitted SIP domain, TLS identity, and the local
/// party an existing local user. `Err(status)` to refuse: `forbidden` (403) for a
/// remote party that is not admitted, `item-not-found` (404, RFC 7247 §6.1: one
/// addressee) for a local user that does not exist.
/// 403, RFC 7247 §6.1 for `forbidden`.
const FORBIDDEN: u16 = 403;

fn admit(
    shared: &Shared,
    remote: &fedgate_sip::Address,
    local: &fedgate_sip::Address,
    tls_peer: Option<&crate::sip::PeerIdentity>,
) -> Result<Pair, u16> {
    let Some(remote_jid) = translate::jid_of(remote) else {
        return Err(FORBIDDEN);
    };
    let Some(domain) = policy_domain(&remote_jid) else {
        return Err(FORBIDDEN);
    };
    if let Err(denial) = shared.cfg.federation.permits(&domain, Protocol::Sip) {
        tracing::info!(from = %domain, ?denial, "sip gateway: request from a domain not permitted over SIP refused (403)");
        return Err(FORBIDDEN);
    }
    if let Some(peer) = tls_peer
        && !peer.matches(domain.as_str())
    {
        tracing::info!(from = %domain, names = ?peer.names(), "sip gateway: From domain not named by the TLS certificate (403)");
        return Err(FORBIDDEN);
    }
    let Some(local_jid) = translate::jid_of(local) else {
        return Err(translate::status_for_condition(Cond::ItemNotFound, true));
    };
    match shared.router.route_of(&Jid::Bare(local_jid.clone())) {
        Route::Local(b) if shared.router.users().exists(&b) => Ok((b, remote_jid)),
        _ => Err(translate::status_for_condition(Cond::ItemNotFound, true)),
    }
}

async fn event(shared: &Arc<Shared>, ev: SipUaEvent) {
    match ev {
        SipUaEvent::SubscriptionRequested {
            subscription,
            from,
            to,
            tls_peer,
            accept,
            ..
        } => {
            let pair = match admit(shared, &from, &to, tls_peer.as_deref()) {
                Ok(p) => p,
                Err(code) => {
                    shared.push(Op::RejectSubscription {
                        sub: subscription,
                        code,
                    });
                    return;
                }
            };
            let format = DocFormat::from_accept(&accept);
            tracing::debug!(local = %pair.0, watcher = %pair.1, ?format, "sip gateway: SUBSCRIBE admitted");
            lock(&shared.state).watchers.insert(
                subscription,
                Watcher {
                    pair: pair.clone(),
                    format,
                    decision: Decision::Pending,
                    last: None,
                    accepted: false,
                },
            );
            // RFC 6121 inbound processing first (the router asks the user, or answers
            // at once for an approved or blocked watcher: those answers are queued for
            // the ops task before the accept below), then the SIP answer.
            shared
                .to_router(translate::presence_of_type("subscribe", &pair.1, &pair.0))
                .await;
            shared.push(Op::AcceptWatcher(subscription));
        }
        // Both need the UA (the ops task's work: this task never waits for the UA).
        SipUaEvent::SubscriptionFlowLost { subscription } => {
            shared.push(Op::RebindWatcher(subscription));
        }
        SipUaEvent::SubscriptionRefreshed { subscription, .. } => {
            // New expiry (and maybe remote target) for the stored dialog.
            shared.push(Op::StoreWatcher(subscription));
        }
        SipUaEvent::SubscriptionActive { subscription } => {
            let pair = {
                let mut st = lock(&shared.state);
                if let Some(o) = st.out_by_id.get(&subscription) {
                    let p = o.pair.clone();
                    st.resubscribes.remove(&p);
                }
                match st.out_by_id.get_mut(&subscription) {
                    Some(o) if !o.active => {
                        o.active = true;
                        Some((o.pair.clone(), o.target.clone()))
                    }
                    _ => None,
                }
            };
            if let Some((pair, target)) = pair {
                if let Some(t) = target {
                    shared.routes.succeeded(&t);
                }
                shared
                    .persist_subscription(&pair, Some(SubscriptionState::Active))
                    .await;
                shared
                    .to_router(translate::presence_of_type("subscribed", &pair.1, &pair.0))
                    .await;
            }
        }
        SipUaEvent::Notified {
            subscription,
            content_type,
            body,
            ..
        } => {
            let Some(pair) = lock(&shared.state)
                .out_by_id
                .get(&subscription)
                .map(|o| o.pair.clone())
            else {
                return;
            };
            let Some(p) = translate::read_notify(content_type.as_deref(), &body) else {
                return;
            };
            lock(&shared.state)
                .remote_presence
                .insert(pair.1.clone(), p.clone());
            let el = translate::presence_stanza(&p, LOCAL_FAMILY, &pair.1, &pair.0);
            shared.to_router(el).await;
        }
        SipUaEvent::SubscriptionTerminated {
            subscription,
            reason,
        } => {
            // In order after the op that created it (see the module docs).
            let op = Op::SubscriptionEnded {
                sub: subscription,
                reason,
            };
            if let Err(e) = shared.ops.try_send(op)
                && let Op::SubscriptionEnded { sub, reason } = e.into_inner()
            {
                subscription_ended(shared, sub, reason).await;
            }
        }
        SipUaEvent::SessionOffered {
            session,
            remote,
            local,
            tls_peer,
            has_first_message,
        } => match admit(shared, &remote, &local, tls_peer.as_deref()) {
            Ok(pair) => {
                {
                    let mut st = lock(&shared.state);
                    st.sessions.insert(pair.clone(), session);
                    st.session_info.insert(
                        session,
                        Session {
                            pair,
                            target: None,
                            tried: Vec::new(),
                            pending: VecDeque::new(),
                        },
                    );
                }
                shared.push(Op::AcceptSession {
                    session,
                    first: has_first_message,
                });
            }
            Err(code) => shared.push(Op::RejectSession { session, code }),
        },
        SipUaEvent::SessionOpened { session } => {
            let target = lock(&shared.state)
                .session_info
                .get(&session)
                .and_then(|s| s.target.clone());
            if let Some(t) = target {
                shared.routes.succeeded(&t);
            }
        }
        SipUaEvent::MessageReceived {
            session,
            content_type,
            body,
        } => {
            let Some(pair) = lock(&shared.state)
                .session_info
                .get(&session)
                .map(|s| s.pair.clone())
            else {
                return;
            };
            if let Some(text) = translate::message_text(&content_type, &body) {
                shared
                    .to_router(translate::chat(&pair.1, &pair.0, &text))
                    .await;
            }
        }
        SipUaEvent::MessageToAnswer {
            message,
            content_type,
            body,
        } => {
            let status = deliver_from_sip(shared, message.session(), &content_type, &body).await;
            // Straight to the UA's answer channel: never waits, never full, never
            // dropped (a lost answer holds its transaction until the UA's 504).
            if let Err(e) = shared.ua.answer_message(message, status) {
                tracing::debug!(error = %e, status, "sip gateway: MESSAGE not answered");
            }
        }
        SipUaEvent::Typing { session, active } => {
            let pair = lock(&shared.state)
                .session_info
                .get(&session)
                .map(|s| s.pair.clone());
            tracing::debug!(
                ?session,
                active,
                known = pair.is_some(),
                "sip gateway: typing from SIP"
            );
            if let Some(pair) = pair {
                shared
                    .to_router(translate::chat_state(&pair.1, &pair.0, active))
                    .await;
            }
        }
        SipUaEvent::MessageDelivered { session, .. } => {
            if let Some(s) = lock(&shared.state).session_info.get_mut(&session) {
                s.pending.pop_front();
            }
        }
        SipUaEvent::MessageFailed { session, status } => {
            let failed = lock(&shared.state)
                .session_info
                .get_mut(&session)
                .and_then(|s| s.pending.pop_front());
            if let Some(m) = failed.filter(|m| !m.typing) {
                bounce(shared, &m.el, translate::condition_for_status(status), None).await;
            }
        }
        SipUaEvent::SessionClosed { session, reason } => {
            // In order after the op that opened it (see the module docs).
            let op = Op::SessionClosed { session, reason };
            if let Err(e) = shared.ops.try_send(op)
                && let Op::SessionClosed { session, reason } = e.into_inner()
            {
                session_closed(shared, session, reason).await;
            }
        }
        SipUaEvent::Unhandled { method, from } => {
            tracing::debug!(%method, ?from, "sip gateway: request not handled (501)");
        }
    }
}

async fn session_closed(shared: &Arc<Shared>, session: SessionId, reason: CloseReason) {
    let Some(s) = lock(&shared.state).drop_session(session) else {
        return;
    };
    let status = match reason {
        CloseReason::Rejected(code) => code,
        CloseReason::DialogGone(_) | CloseReason::AckTimeout => 480,
        _ => {
            // Ended otherwise (idle, BYE, …): messages the UA never took (it had
            // already ended the session) go into a new session.
            let unsent: Vec<Element> = s
                .pending
                .into_iter()
                .filter(|p| !p.sent && !p.typing)
                .map(|p| p.el)
                .collect();
            if !unsent.is_empty() {
                shared.push(Op::Reopen {
                    pair: s.pair,
                    tried: Vec::new(),
                    messages: unsent,
                });
            }
            return;
        }
    };
    let pending: Vec<Element> = s
        .pending
        .into_iter()
        .filter(|p| !p.typing)
        .map(|p| p.el)
        .collect();
    if pending.is_empty() {
        return;
    }
    // Failover (RFC 3263 §4.3): no answer (408) or unavailable (503, also a transport
    // error) at this target; the messages were not sent (the INVITE failed).
    if let (Some(t), 408 | 503) = (&s.target, status) {
        shared.routes.failed(t, status);
        let next = match policy_domain(&s.pair.1) {
            Some(d) => shared.routes.next_target(&d, &s.tried).await.ok().flatten(),
            None => None,
        };
        if let Some(next) = next {
            tracing::info!(local = %s.pair.0, remote = %s.pair.1, failed = %t, %next, status,
                "sip gateway: INVITE failed; trying the next target");
            shared.push(Op::Reopen {
                pair: s.pair,
                tried: s.tried,
                messages: pending,
            });
            return;
        }
    }
    let cond = translate::condition_for_status(status);
    for m in pending {
        bounce(shared, &m, cond, None).await;
    }
}

async fn subscription_ended(shared: &Arc<Shared>, id: SubscriptionId, reason: SubEnd) {
    resume::forget_watcher(shared, id).await;
    let out = {
        let mut st = lock(&shared.state);
        if st.watchers.remove(&id).is_some() {
            st.activations.remove(&id);
            return;
        }
        let Some(o) = st.out_by_id.remove(&id) else {
            return;
        };
        if st.out_subs.get(&o.pair) == Some(&id) {
            st.out_subs.remove(&o.pair);
        }
        o
    };
    let pair = out.pair.clone();
    let reason_token = |r: &Option<Bytes>| {
        r.as_ref()
            .map(|b| String::from_utf8_lossy(b).to_ascii_lowercase())
    };
    enum Next {
        Refused,
        Failed(u16),
        Resubscribe,
        Nothing,
    }
    let next = match &reason {
        SubEnd::Local => Next::Nothing,
        SubEnd::Notified(r) => match reason_token(r).as_deref() {
            Some("rejected") => Next::Refused,
            Some("noresource") | Some("giveup") => Next::Failed(404),
            _ => Next::Resubscribe, // deactivated, probation, timeout, none
        },
        SubEnd::Status(403 | 603) => Next::Refused,
        SubEnd::Status(481) | SubEnd::Expired | SubEnd::NoNotify => Next::Resubscribe,
        SubEnd::Status(code @ (408 | 503)) => {
            // Failover (RFC 3263 §4.3), a transport error included (a 503).
            if let Some(t) = &out.target {
                shared.routes.failed(t, *code);
                let next = match policy_domain(&pair.1) {
                    Some(d) => shared
                        .routes
                        .next_target(&d, &out.tried)
                        .await
                        .ok()
                        .flatten(),
                    None => None,
                };
                if let Some(next) = next {
                    tracing::info!(local = %pair.0, remote = %pair.1, failed = %t, %next, code,
                        "sip gateway: SUBSCRIBE failed; trying the next target");
                    shared.push(Op::Subscribe {
                        pair: pair.clone(),
                        tried: out.tried.clone(),
                    });
                    return;
                }
            }
            Next::Failed(*code)
        }
        SubEnd::Status(code) => Next::Failed(*code),
        SubEnd::Unsubscribed => Next::Nothing,
        _ => Next::Nothing,
    };
    match next {
        Next::Nothing => {}
        Next::Refused => {
            shared.persist_subscription(&pair, None).await;
            shared
                .to_router(translate::presence_of_type(
                    "unsubscribed",
                    &pair.1,
                    &pair.0,
                ))
                .await;
        }
        Next::Failed(code) => {
            // Kept in the store: the next login (probe) or restart tries again.
            lock(&shared.state).remote_presence.remove(&pair.1);
            shared
                .to_router(translate::presence_error(
                    &pair.1,
                    &pair.0,
                    translate::condition_for_status(code),
                ))
                .await;
        }
        Next::Resubscribe => {
            let n = {
                let mut st = lock(&shared.state);
                let n = st.resubscribes.entry(pair.clone()).or_insert(0);
                *n += 1;
                *n
            };
            if n <= MAX_RESUBSCRIBE {
                shared.push(Op::Subscribe {
                    pair,
                    tried: Vec::new(),
                });
            } else {
                tracing::info!(local = %pair.0, remote = %pair.1, "sip gateway: subscription keeps ending; retried at the next login");
                lock(&shared.state).resubscribes.remove(&pair);
                shared
                    .to_router(translate::presence_of_type("unavailable", &pair.1, &pair.0))
                    .await;
            }
        }
    }
}
