//! [`Router`]: see the [module docs](super).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use fedgate_policy::{
    InboundDecision, Rule, RuleTarget, SubscriptionKey, SubscriptionState, UserAddress,
};
use fedgate_presence::Family;
use fedgate_store::{
    OfflineStore, Roster, RosterItem, RosterStore, RosterSubscription as Sub, SqliteStore,
    StoreError, StoreHandle,
};
use fedgate_xmpp::stanza::{Stanza, StanzaError, StanzaErrorCondition as Cond, error_reply};
use fedgate_xmpp::{
    BareJid, DomainPart, Element, ElementBuilder, FullJid, Jid, StreamErrorCondition, ns,
};
use tokio::sync::{Notify, mpsc};

use super::util;
use super::{UserDirectory, UserPolicy};

#[path = "blocking.rs"]
mod blocking;

const ROSTER_NS: &str = "jabber:iq:roster";
const PING_NS: &str = "urn:xmpp:ping";
const DELAY_NS: &str = "urn:xmpp:delay";

/// What to do with a `chat`/`normal` message for a user with no available resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OfflinePolicy {
    /// Store it ([`fedgate_store::OfflineStore`]); deliver after the next initial presence.
    #[default]
    Store,
    /// Answer `service-unavailable`.
    Refuse,
}

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Depth of each session's outbound queue (`limits.node.outbound_queue`, default 64).
    /// Full: the session is closed with `<resource-constraint/>`.
    pub session_queue: usize,
    /// Offline messages.
    pub offline: OfflinePolicy,
    /// Bound on one store request (queue wait + work). Default 10 s.
    pub store_timeout: Duration,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            session_queue: 64,
            offline: OfflinePolicy::Store,
            store_timeout: Duration::from_secs(10),
        }
    }
}

/// A session's id (unique for the life of the router).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(u64);

impl SessionId {
    /// The raw number (for logs).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// Out-of-band control of a session: the core asks its task to close the stream.
#[derive(Debug, Default)]
pub struct SessionCtl {
    kick: Mutex<Option<StreamErrorCondition>>,
    notify: Notify,
}

impl SessionCtl {
    /// Asks the session to close with stream error `c` (the first reason wins).
    pub fn kick(&self, c: StreamErrorCondition) {
        let mut k = self.kick.lock().unwrap_or_else(PoisonError::into_inner);
        if k.is_none() {
            *k = Some(c);
        }
        drop(k);
        self.notify.notify_one();
    }

    /// The reason, once kicked.
    pub fn kicked(&self) -> Option<StreamErrorCondition> {
        *self.kick.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until kicked (cancel-safe).
    pub async fn wait(&self) -> StreamErrorCondition {
        loop {
            if let Some(c) = self.kicked() {
                return c;
            }
            self.notify.notified().await;
        }
    }
}

/// What [`Router::register`] gives a new session.
#[derive(Debug)]
pub struct Registration {
    /// Its id.
    pub id: SessionId,
    /// Stanzas for it (bounded; `CoreConfig::session_queue`).
    pub rx: mpsc::Receiver<Element>,
    /// Its control.
    pub ctl: Arc<SessionCtl>,
}

/// What the session task does after [`Router::handle_from_client`].
#[derive(Debug, Default)]
pub struct ClientOutcome {
    /// Stanzas for this very session (written by its task, not queued).
    pub replies: Vec<Element>,
    /// The session just sent its initial presence: deliver the offline messages now.
    pub deliver_offline: bool,
}

/// Where an address lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A hosted domain itself (no localpart).
    LocalServer(DomainPart),
    /// An account of a hosted domain (whether it exists or not).
    Local(BareJid),
    /// Another domain: [`RemoteLinks`].
    Remote(DomainPart),
}

/// Why a remote link did not take a stanza.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// No link to that domain (not federated, unresolvable): `remote-server-not-found`.
    #[error("no route to the domain")]
    NoRoute,
    /// The link's queue is full: `resource-constraint`.
    #[error("link queue full")]
    Full,
    /// The domain is not federated (administrator policy): `not-allowed`
    /// (RFC 6120 §8.3.3.11, "sending to entities at a blacklisted domain").
    #[error("the domain is not federated")]
    NotAllowed,
    /// Anything else: `remote-server-not-found`.
    #[error("{0}")]
    Other(String),
}

/// Outbound links to remote domains (XMPP s2s, later SIP): where the router sends every
/// stanza whose `to` is not hosted here. Stanzas are in the `jabber:client` namespace
/// with `from` a local JID; the implementation re-namespaces and maps as its family
/// needs. It must not block (queue and return).
pub trait RemoteLinks: Send + Sync + std::fmt::Debug {
    /// Queues `stanza` for its `to` domain.
    fn send(&self, stanza: Element) -> Result<(), RemoteError>;
}

#[derive(Debug)]
struct Entry {
    id: SessionId,
    full: FullJid,
    tx: mpsc::Sender<Element>,
    ctl: Arc<SessionCtl>,
    available: bool,
    priority: i8,
    presence: Option<Element>,
    interested: bool,
    /// The session asked for the block list (XEP-0191): it gets the pushes.
    blocklist: bool,
    /// The client's family, from its last available presence (`xmpp-local` until then).
    family: Family,
}

#[derive(Debug, Clone)]
struct Target {
    id: SessionId,
    full: FullJid,
    tx: mpsc::Sender<Element>,
    ctl: Arc<SessionCtl>,
    family: Family,
}

impl From<&Entry> for Target {
    fn from(e: &Entry) -> Self {
        Target {
            id: e.id,
            full: e.full.clone(),
            tx: e.tx.clone(),
            ctl: Arc::clone(&e.ctl),
            family: e.family,
        }
    }
}

/// Maps a presence from a remote user to what a local client of a given family shows
/// (installed by the federation side, [`Router::set_presence_mapper`]).
pub trait PresenceMapper: Send + Sync + std::fmt::Debug {
    /// `presence` (`jabber:client`, `from` a remote user) as a client of `client`
    /// family shows it.
    fn to_client(&self, presence: &Element, client: Family) -> Element;
}

/// Per-call context: the calling session (replies to it are returned, not queued).
#[derive(Debug, Default)]
struct Ctx {
    me: Option<SessionId>,
    out: Vec<Element>,
    /// [`Router::handle_remote_message`]: the error the routed stanza would bounce
    /// with is recorded here instead of being sent.
    capture: bool,
    bounced: Option<Cond>,
}

#[derive(Debug)]
struct Inner {
    cfg: CoreConfig,
    domains: Vec<DomainPart>,
    store: StoreHandle,
    users: Arc<UserDirectory>,
    sessions: Mutex<HashMap<BareJid, Vec<Entry>>>,
    by_id: Mutex<HashMap<SessionId, FullJid>>,
    remote: RwLock<Option<Arc<dyn RemoteLinks>>>,
    policy: RwLock<Option<UserPolicy>>,
    mapper: RwLock<Option<Arc<dyn PresenceMapper>>>,
    next_id: AtomicU64,
}

/// The cheap-to-clone router handle; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn store_cond(e: &StoreError) -> Cond {
    match e {
        StoreError::TooLarge { .. } => Cond::PolicyViolation,
        e if e.is_transient() => Cond::ResourceConstraint,
        _ => Cond::InternalServerError,
    }
}

/// The result of a client's iq `el`, to its session, with `payload` if any.
fn iq_result(full: &FullJid, el: &Element, payload: Option<Element>) -> Element {
    let mut b = ElementBuilder::new("iq", ns::CLIENT)
        .attr("to", full.to_string())
        .attr_opt("id", el.attr("id"))
        .attr("type", "result");
    if let Some(p) = payload {
        b = b.child(p);
    }
    b.build()
}

fn addr(bare: &BareJid) -> Option<UserAddress> {
    UserAddress::new(&bare.to_string()).ok()
}

fn bare_of(s: Option<&str>) -> Option<BareJid> {
    Jid::parse(s?).ok().map(|j| j.bare().clone())
}

fn with_attr(el: &Element, name: &str, value: &str) -> Element {
    let mut e = el.clone();
    e.set_attr(name, value);
    e
}

fn item_xml(item: &RosterItem, remove: bool) -> Element {
    let sub = if remove {
        "remove"
    } else {
        item.subscription.as_str()
    };
    let mut b = ElementBuilder::new("item", ROSTER_NS)
        .attr("jid", item.jid.clone())
        .attr_opt("name", item.name.clone())
        .attr("subscription", sub);
    if item.ask_out && !remove {
        b = b.attr("ask", "subscribe");
    }
    for g in &item.groups {
        b.push_child(ElementBuilder::new("group", ROSTER_NS).text(g.clone()));
    }
    b.build()
}

/// An item that only records an unanswered request: not shown in the roster.
fn hidden(item: &RosterItem) -> bool {
    item.subscription == Sub::None
        && !item.ask_out
        && !item.approved
        && item.pending_in.is_some()
        && item.name.is_none()
        && item.groups.is_empty()
}

fn shares_to(s: Sub) -> bool {
    matches!(s, Sub::To | Sub::Both)
}
fn shares_from(s: Sub) -> bool {
    matches!(s, Sub::From | Sub::Both)
}

impl Router {
    /// A router for the hosted `domains`.
    pub fn new(
        cfg: CoreConfig,
        domains: Vec<DomainPart>,
        store: StoreHandle,
        users: Arc<UserDirectory>,
    ) -> Router {
        Router {
            inner: Arc::new(Inner {
                cfg,
                domains,
                store,
                users,
                sessions: Mutex::new(HashMap::new()),
                by_id: Mutex::new(HashMap::new()),
                remote: RwLock::new(None),
                policy: RwLock::new(None),
                mapper: RwLock::new(None),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// Installs the links to remote domains (the federation side).
    pub fn set_remote_links(&self, links: Arc<dyn RemoteLinks>) {
        *self
            .inner
            .remote
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(links);
    }

    /// Installs the per-user policy engine: from then on every subscription from a remote
    /// user (XMPP, or SIP through a gateway that calls [`Router::handle_remote`]) is
    /// decided by it, and presence to remote watchers follows its rules (module docs,
    /// "Per-user policy"). Without it, remote subscriptions follow plain RFC 6121.
    pub fn set_user_policy(&self, policy: UserPolicy) {
        *self
            .inner
            .policy
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(policy);
    }

    /// Installs the mapping of remote users' presence to each local client's family
    /// (applied per receiving session; without it, remote presence is delivered as it
    /// comes).
    pub fn set_presence_mapper(&self, mapper: Arc<dyn PresenceMapper>) {
        *self
            .inner
            .mapper
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(mapper);
    }

    /// The per-user policy engine, when installed.
    pub fn user_policy(&self) -> Option<UserPolicy> {
        self.inner
            .policy
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends `unavailable` for every available session to the contacts that see it
    /// (local and remote watchers) and to the user's other resources, as at a
    /// disconnection; the sessions stay bound. Used at shutdown, before the links close.
    /// Returns how many sessions were available.
    pub async fn broadcast_unavailable_all(&self) -> usize {
        let fulls: Vec<FullJid> = lock(&self.inner.sessions)
            .values()
            .flatten()
            .filter(|e| e.available)
            .map(|e| e.full.clone())
            .collect();
        for full in &fulls {
            self.set_unavailable(full);
            let p = ElementBuilder::new("presence", ns::CLIENT)
                .attr("from", full.to_string())
                .attr("type", "unavailable")
                .build();
            self.broadcast(&mut Ctx::default(), full, &p).await;
        }
        fulls.len()
    }

    /// Removes the links to remote domains (shutdown): remote stanzas then bounce
    /// `remote-server-not-found`.
    pub fn clear_remote_links(&self) {
        *self
            .inner
            .remote
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The accounts.
    pub fn users(&self) -> &Arc<UserDirectory> {
        &self.inner.users
    }

    /// The store.
    pub fn store(&self) -> &StoreHandle {
        &self.inner.store
    }

    /// The hosted domains.
    pub fn domains(&self) -> &[DomainPart] {
        &self.inner.domains
    }

    /// Where `jid` lives.
    pub fn route_of(&self, jid: &Jid) -> Route {
        let d = jid.domain();
        if !self.inner.domains.contains(d) {
            return Route::Remote(d.clone());
        }
        match jid.local() {
            None => Route::LocalServer(d.clone()),
            Some(_) => Route::Local(jid.bare().clone()),
        }
    }

    /// Number of bound sessions.
    pub fn session_count(&self) -> usize {
        lock(&self.inner.by_id).len()
    }

    /// Asks every session to close with `c` (shutdown).
    pub fn kick_all(&self, c: StreamErrorCondition) {
        for v in lock(&self.inner.sessions).values() {
            for e in v {
                e.ctl.kick(c);
            }
        }
    }

    /// A session bound `full`. An older session with the same full JID is told to close
    /// with `<conflict/>` (the newer wins, RFC 6120 §7.7.2.2).
    pub fn register(&self, full: FullJid) -> Registration {
        let id = SessionId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = mpsc::channel(self.inner.cfg.session_queue.max(1));
        let ctl = Arc::new(SessionCtl::default());
        let mut s = lock(&self.inner.sessions);
        // Most users have one session: no room for four (`or_default` + push), ~0.5 KiB.
        let v = s
            .entry(full.bare().clone())
            .or_insert_with(|| Vec::with_capacity(1));
        for old in v.iter().filter(|e| e.full == full) {
            tracing::info!(jid = %full, "c2s: resource conflict, the older session is closed");
            old.ctl.kick(StreamErrorCondition::Conflict);
        }
        // The old entry stays until its task unregisters, but no longer receives anything.
        v.retain(|e| e.full != full);
        v.push(Entry {
            id,
            full: full.clone(),
            tx,
            ctl: Arc::clone(&ctl),
            available: false,
            priority: 0,
            presence: None,
            interested: false,
            blocklist: false,
            family: super::LOCAL_FAMILY,
        });
        drop(s);
        lock(&self.inner.by_id).insert(id, full);
        Registration { id, rx, ctl }
    }

    /// The session `id` ended. Broadcasts `unavailable` if it was available (not when
    /// it was replaced by a newer session of the same full JID) and routes again the
    /// messages still queued for it (`undelivered`).
    pub async fn unregister(&self, id: SessionId, undelivered: Vec<Element>) {
        let Some(full) = lock(&self.inner.by_id).remove(&id) else {
            return;
        };
        let entry = {
            let mut s = lock(&self.inner.sessions);
            let mut entry = None;
            if let Some(v) = s.get_mut(full.bare()) {
                if let Some(i) = v.iter().position(|e| e.id == id) {
                    entry = Some(v.remove(i));
                }
                if v.is_empty() {
                    s.remove(full.bare());
                }
            }
            entry
        };
        let mut ctx = Ctx::default();
        if let Some(e) = entry
            && e.available
        {
            let p = ElementBuilder::new("presence", ns::CLIENT)
                .attr("from", full.to_string())
                .attr("type", "unavailable")
                .build();
            self.broadcast(&mut ctx, &full, &p).await;
        }
        for el in undelivered {
            if el.name() == "message" {
                self.route(&mut ctx, el).await;
            }
        }
    }

    fn full_of(&self, id: SessionId) -> Option<FullJid> {
        lock(&self.inner.by_id).get(&id).cloned()
    }

    /// A stanza from the bound client of session `id` (`from` already stamped by the
    /// c2s machine).
    pub async fn handle_from_client(&self, id: SessionId, el: Element) -> ClientOutcome {
        let mut out = ClientOutcome::default();
        let Some(full) = self.full_of(id) else {
            return out;
        };
        // A session replaced by a newer one (same full JID) is closing: ignore it.
        let current = lock(&self.inner.sessions)
            .get(full.bare())
            .is_some_and(|v| v.iter().any(|e| e.id == id));
        if !current {
            return out;
        }
        let mut ctx = Ctx {
            me: Some(id),
            ..Ctx::default()
        };
        match el.name() {
            "message" => {
                let el = if el.attr("to").is_none() {
                    with_attr(&el, "to", &full.bare().to_string())
                } else {
                    el
                };
                self.route(&mut ctx, el).await;
            }
            "presence" => out.deliver_offline = self.client_presence(&mut ctx, &full, el).await,
            "iq" => self.client_iq(&mut ctx, &full, el).await,
            _ => {}
        }
        out.replies = ctx.out;
        out
    }

    /// A stanza from a remote domain (`jabber:client` namespace, `from` authenticated by
    /// the link): routed like a local one, with the inbound subscription processing.
    pub async fn handle_remote(&self, el: Element) {
        let mut ctx = Ctx::default();
        self.route(&mut ctx, el).await;
    }

    /// [`handle_remote`](Router::handle_remote) for a stanza whose sender learns the
    /// outcome in its own protocol (the SIP gateway answers a MESSAGE by it): `Ok`
    /// when the router took it (delivered to a session, stored offline, or dropped
    /// by the delivery rules without an error), `Err(condition)` when it would have
    /// bounced; the error stanza is then not sent.
    pub async fn handle_remote_message(&self, el: Element) -> Result<(), Cond> {
        let mut ctx = Ctx {
            capture: true,
            ..Ctx::default()
        };
        self.route(&mut ctx, el).await;
        match ctx.bounced {
            Some(c) => Err(c),
            None => Ok(()),
        }
    }

    // ---- plumbing ----------------------------------------------------------------

    /// The policy engine and both addresses, when `contact` is a remote user and the
    /// engine is installed: the per-user policy applies.
    fn remote_policy(
        &self,
        user: &BareJid,
        contact: &BareJid,
    ) -> Option<(UserPolicy, UserAddress, UserAddress)> {
        if !matches!(self.route_of(&Jid::Bare(contact.clone())), Route::Remote(_)) {
            return None;
        }
        Some((self.user_policy()?, addr(user)?, addr(contact)?))
    }

    /// Whether the remote `contact` may only see `user` offline (polite block).
    fn politely_blocked(&self, user: &BareJid, contact: &BareJid) -> bool {
        self.remote_policy(user, contact)
            .is_some_and(|(p, u, w)| p.blocked(&u, &w, util::now()))
    }

    /// Stores the local user's answer for a remote watcher (fedgate-policy `answer`: a
    /// rule in the user's list; a pending subscription becomes active).
    async fn policy_answer(&self, pol: &UserPolicy, u: UserAddress, w: UserAddress, rule: Rule) {
        let (u2, w2) = (u.clone(), w.clone());
        if let Err(e) = pol
            .call(move |p| p.answer(util::now(), &u2, &w2, rule))
            .await
        {
            tracing::warn!(user = %u, watcher = %w, error = %e, "core: policy: answer not stored");
        }
    }

    /// A polite block answered to `contact`: `subscribed`, then `unavailable` from the
    /// bare `user` (exactly what an acceptance of an offline user looks like).
    fn polite_block(&self, ctx: &mut Ctx, user: &BareJid, contact: &BareJid) {
        for t in ["subscribed", "unavailable"] {
            let el = ElementBuilder::new("presence", ns::CLIENT)
                .attr("from", user.to_string())
                .attr("to", contact.to_string())
                .attr("type", t)
                .build();
            self.send_remote(ctx, el);
        }
    }

    async fn db<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteStore) -> Result<T, StoreError> + Send + 'static,
    {
        let reply = self.inner.store.submit(f)?;
        match tokio::time::timeout(self.inner.cfg.store_timeout, reply).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Busy {
                capacity: self.inner.store.capacity(),
            }),
        }
    }

    async fn roster_of(&self, bare: &BareJid) -> Roster {
        let Some(u) = addr(bare) else {
            return Roster::default();
        };
        match self.db(move |s| s.roster(&u)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(user = %bare, error = %e, "core: roster read failed");
                Roster::default()
            }
        }
    }

    fn targets(&self, bare: &BareJid, f: impl Fn(&Entry) -> bool) -> Vec<Target> {
        lock(&self.inner.sessions)
            .get(bare)
            .map(|v| v.iter().filter(|e| f(e)).map(Target::from).collect())
            .unwrap_or_default()
    }

    fn push(&self, ctx: &mut Ctx, t: &Target, el: Element) -> bool {
        if ctx.me == Some(t.id) {
            ctx.out.push(el);
            return true;
        }
        match t.tx.try_send(el) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(jid = %t.full, "c2s: session queue full, closing the slow connection");
                t.ctl.kick(StreamErrorCondition::ResourceConstraint);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn to_full(&self, ctx: &mut Ctx, full: &FullJid, el: Element) -> bool {
        match self.targets(full.bare(), |e| &e.full == full).first() {
            Some(t) => self.push(ctx, t, el),
            None => false,
        }
    }

    /// To the available resources of highest non-negative priority; how many took it.
    fn to_best(&self, ctx: &mut Ctx, bare: &BareJid, el: &Element) -> usize {
        let mut best: Option<i8> = None;
        let mut ts = Vec::new();
        for (t, prio) in lock(&self.inner.sessions)
            .get(bare)
            .map(|v| {
                v.iter()
                    .filter(|e| e.available && e.priority >= 0)
                    .map(|e| (Target::from(e), e.priority))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
        {
            match best {
                Some(b) if prio < b => continue,
                Some(b) if prio > b => ts.clear(),
                _ => {}
            }
            best = Some(prio);
            ts.push(t);
        }
        ts.iter().filter(|t| self.push(ctx, t, el.clone())).count()
    }

    fn to_available(&self, ctx: &mut Ctx, bare: &BareJid, el: &Element) -> usize {
        self.targets(bare, |e| e.available)
            .iter()
            .filter(|t| self.push(ctx, t, with_attr(el, "to", &t.full.to_string())))
            .count()
    }

    fn bounce(&self, ctx: &mut Ctx, el: &Element, c: Cond) {
        if ctx.capture {
            ctx.bounced.get_or_insert(c);
            return;
        }
        if let Some(err) = error_reply(el.root(), &StanzaError::new(c)) {
            self.deliver_sync(ctx, err);
        }
    }

    /// Delivery that never touches the store: presence, errors, iq.
    fn deliver_sync(&self, ctx: &mut Ctx, el: Element) {
        let Some(to) = el.attr("to").and_then(|t| Jid::parse(t).ok()) else {
            return;
        };
        match self.route_of(&to) {
            Route::Remote(_) => self.send_remote(ctx, el),
            Route::LocalServer(_) => {}
            Route::Local(bare) => match (&to, el.name()) {
                (Jid::Full(f), _) => {
                    self.to_full(ctx, f, el);
                }
                (Jid::Bare(_), "presence") => {
                    self.to_available(ctx, &bare, &el);
                }
                (Jid::Bare(_), _) => {
                    self.to_best(ctx, &bare, &el);
                }
            },
        }
    }

    fn send_remote(&self, ctx: &mut Ctx, el: Element) {
        let links = self
            .inner
            .remote
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let res = match links {
            Some(l) => l.send(el.clone()),
            None => Err(RemoteError::NoRoute),
        };
        if let Err(e) = res {
            tracing::debug!(to = el.attr("to"), error = %e, "core: remote domain not reachable");
            let c = match e {
                RemoteError::Full => Cond::ResourceConstraint,
                RemoteError::NotAllowed => Cond::NotAllowed,
                _ => Cond::RemoteServerNotFound,
            };
            // Only local senders get the bounce (never bounce to a remote domain), and
            // not for presence broadcasts (only subscription requests).
            let presence_kind = (el.name() == "presence").then(|| el.attr("type"));
            if matches!(presence_kind, None | Some(Some("subscribe")))
                && let Some(from) = el.attr("from").and_then(|f| Jid::parse(f).ok())
                && !matches!(self.route_of(&from), Route::Remote(_))
            {
                self.bounce(ctx, &el, c);
            }
        }
    }

    // ---- routing ------------------------------------------------------------------

    async fn route(&self, ctx: &mut Ctx, el: Element) {
        let Some(to) = el.attr("to").and_then(|t| Jid::parse(t).ok()) else {
            return self.bounce(ctx, &el, Cond::JidMalformed);
        };
        match self.route_of(&to) {
            Route::Remote(_) => self.send_remote(ctx, el),
            Route::LocalServer(d) => self.to_server(ctx, &d, el),
            Route::Local(bare) => {
                if !self.inner.users.exists(&bare) {
                    if el.name() != "presence" {
                        self.bounce(ctx, &el, Cond::ServiceUnavailable);
                    }
                    return;
                }
                match el.name() {
                    "message" => self.deliver_message(ctx, &to, &bare, el).await,
                    "presence" => self.inbound_presence(ctx, &to, &bare, el).await,
                    _ => self.deliver_iq(ctx, &to, el),
                }
            }
        }
    }

    fn to_server(&self, ctx: &mut Ctx, domain: &DomainPart, el: Element) {
        let t = el.attr("type").unwrap_or("");
        match el.name() {
            "iq" if t == "get" && el.get_child("ping", PING_NS).is_some() => {
                let r = ElementBuilder::new("iq", ns::CLIENT)
                    .attr("from", domain.to_string())
                    .attr_opt("to", el.attr("from"))
                    .attr_opt("id", el.attr("id"))
                    .attr("type", "result")
                    .build();
                self.deliver_sync(ctx, r);
            }
            "iq" if t == "get" || t == "set" => self.bounce(ctx, &el, Cond::ServiceUnavailable),
            "message" if !matches!(t, "error" | "headline") => {
                self.bounce(ctx, &el, Cond::ServiceUnavailable)
            }
            _ => {}
        }
    }

    fn deliver_iq(&self, ctx: &mut Ctx, to: &Jid, el: Element) {
        let request = matches!(el.attr("type"), Some("get" | "set"));
        let delivered = match to {
            Jid::Full(f) => self.to_full(ctx, f, el.clone()),
            // An iq to a bare JID is the server's to answer on the user's behalf.
            Jid::Bare(_) => false,
        };
        if !delivered && request {
            self.bounce(ctx, &el, Cond::ServiceUnavailable);
        }
    }

    async fn deliver_message(&self, ctx: &mut Ctx, to: &Jid, bare: &BareJid, el: Element) {
        let kind = el.attr("type").unwrap_or("normal").to_owned();
        if let Jid::Full(f) = to {
            if self.to_full(ctx, f, el.clone()) {
                return;
            }
            if kind == "error" {
                return;
            }
        }
        if kind == "groupchat" {
            return self.bounce(ctx, &el, Cond::ServiceUnavailable);
        }
        if self.to_best(ctx, bare, &el) > 0 || matches!(kind.as_str(), "error" | "headline") {
            return;
        }
        if el.get_child("body", ns::CLIENT).is_none() {
            return; // chat states and receipts are not worth storing
        }
        match self.inner.cfg.offline {
            OfflinePolicy::Refuse => self.bounce(ctx, &el, Cond::ServiceUnavailable),
            OfflinePolicy::Store => {
                let Some(u) = addr(bare) else {
                    return self.bounce(ctx, &el, Cond::ServiceUnavailable);
                };
                let xml = el.to_xml();
                match self
                    .db(move |s| s.offline_push(&u, util::now(), &xml))
                    .await
                {
                    Ok(id) => tracing::debug!(user = %bare, id = id.get(), "core: stored offline"),
                    Err(e) => {
                        tracing::warn!(user = %bare, error = %e, "core: offline storage refused");
                        let c = match e {
                            StoreError::OfflineQuotaFull { .. } => Cond::ServiceUnavailable,
                            e => store_cond(&e),
                        };
                        self.bounce(ctx, &el, c);
                    }
                }
            }
        }
    }

    // ---- presence -----------------------------------------------------------------

    /// Returns true for an initial presence.
    async fn client_presence(&self, ctx: &mut Ctx, full: &FullJid, el: Element) -> bool {
        let presence = match Stanza::try_from(&el) {
            Ok(Stanza::Presence(p)) => p,
            _ => {
                self.bounce(ctx, &el, Cond::BadRequest);
                return false;
            }
        };
        let kind = el.attr("type").map(str::to_owned);
        let Some(to) = el.attr("to").map(str::to_owned) else {
            return match kind.as_deref() {
                None => self.available(ctx, full, el, presence.priority).await,
                Some("unavailable") => {
                    self.set_unavailable(full);
                    self.broadcast(ctx, full, &el).await;
                    false
                }
                _ => false,
            };
        };
        let Ok(to) = Jid::parse(&to) else {
            self.bounce(ctx, &el, Cond::JidMalformed);
            return false;
        };
        match kind.as_deref() {
            Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed") => {
                self.outbound_subscription(ctx, full, to.bare().clone(), el)
                    .await
            }
            Some("probe") => {}
            _ => self.route(ctx, el).await, // directed presence
        }
        false
    }

    fn set_unavailable(&self, full: &FullJid) {
        if let Some(v) = lock(&self.inner.sessions).get_mut(full.bare())
            && let Some(e) = v.iter_mut().find(|e| &e.full == full)
        {
            e.available = false;
            e.presence = None;
        }
    }

    async fn available(&self, ctx: &mut Ctx, full: &FullJid, el: Element, prio: i8) -> bool {
        let initial = {
            let mut s = lock(&self.inner.sessions);
            let Some(e) = s
                .get_mut(full.bare())
                .and_then(|v| v.iter_mut().find(|e| &e.full == full))
            else {
                return false;
            };
            let initial = !e.available;
            e.available = true;
            e.family = super::client_family(&el);
            e.priority = prio;
            e.presence = Some(el.clone());
            initial
        };
        let roster = self.broadcast(ctx, full, &el).await;
        if !initial {
            return false;
        }
        let bare = full.bare();
        // Presence of the user's other available resources.
        let others: Vec<Element> = lock(&self.inner.sessions)
            .get(bare)
            .map(|v| {
                v.iter()
                    .filter(|e| e.available && &e.full != full)
                    .filter_map(|e| e.presence.clone())
                    .collect()
            })
            .unwrap_or_default();
        for p in others {
            self.to_full(ctx, full, with_attr(&p, "to", &full.to_string()));
        }
        for item in &roster.items {
            let Ok(contact) = BareJid::parse(&item.jid) else {
                continue;
            };
            if shares_to(item.subscription) {
                let probe = ElementBuilder::new("presence", ns::CLIENT)
                    .attr("from", full.to_string())
                    .attr("to", contact.to_string())
                    .attr("type", "probe")
                    .build();
                match self.route_of(&Jid::Bare(contact.clone())) {
                    Route::Local(c) => self.answer_probe(ctx, &c, &probe).await,
                    Route::Remote(_) => self.send_remote(ctx, probe),
                    Route::LocalServer(_) => {}
                }
            }
            // Pending subscription requests are delivered again at each login.
            if let Some(req) = item.pending_in.as_deref().and_then(util::parse_stanza) {
                self.to_full(ctx, full, req);
            }
        }
        self.resume_pending(ctx, full, &roster).await;
        true
    }

    /// Requests the policy engine holds as pending but the roster does not (a crash
    /// between the two writes): written to the roster and asked now.
    async fn resume_pending(&self, ctx: &mut Ctx, full: &FullJid, roster: &Roster) {
        let bare = full.bare();
        let (Some(pol), Some(u)) = (self.user_policy(), addr(bare)) else {
            return;
        };
        let waiting: Vec<String> = pol.read(|p| {
            p.pending_requests(&u, util::now())
                .into_iter()
                .map(ToString::to_string)
                .collect()
        });
        for w in waiting {
            let asked = roster
                .items
                .iter()
                .any(|i| i.jid == w && (i.pending_in.is_some() || shares_from(i.subscription)));
            let Ok(contact) = BareJid::parse(&w) else {
                continue;
            };
            if asked {
                continue;
            }
            let req = ElementBuilder::new("presence", ns::CLIENT)
                .attr("from", w.clone())
                .attr("to", bare.to_string())
                .attr("type", "subscribe")
                .build();
            let xml = req.to_xml();
            let res = self
                .update_item(ctx, bare, &contact, move |old| {
                    let mut i = old.unwrap_or_else(|| RosterItem::new(w));
                    i.pending_in = Some(xml);
                    Some(i)
                })
                .await;
            match res {
                Ok(_) => {
                    self.to_full(ctx, full, req);
                }
                Err(e) => {
                    tracing::warn!(user = %bare, error = %e, "core: pending request not resumed")
                }
            }
        }
    }

    /// Sends `p` (from `full`, no `to`) to the contacts with `from`/`both` and the user's
    /// available resources; returns the roster it read.
    async fn broadcast(&self, ctx: &mut Ctx, full: &FullJid, p: &Element) -> Roster {
        let roster = self.roster_of(full.bare()).await;
        for item in roster.items.iter().filter(|i| shares_from(i.subscription)) {
            if let Ok(contact) = BareJid::parse(&item.jid)
                && self.politely_blocked(full.bare(), &contact)
            {
                continue; // it only ever sees the user offline
            }
            let el = with_attr(p, "to", &item.jid);
            self.deliver_sync(ctx, el);
        }
        self.to_available(ctx, full.bare(), p);
        roster
    }

    async fn inbound_presence(&self, ctx: &mut Ctx, to: &Jid, bare: &BareJid, el: Element) {
        match el.attr("type") {
            Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed") => {
                self.subscriptions(ctx, el).await
            }
            Some("probe") => self.answer_probe(ctx, bare, &el).await,
            _ => {
                let mapper = self
                    .inner
                    .mapper
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                let remote = el
                    .attr("from")
                    .and_then(|f| Jid::parse(f).ok())
                    .is_some_and(|f| matches!(self.route_of(&f), Route::Remote(_)));
                match (mapper, to) {
                    // From a remote user: mapped for each receiving client's family.
                    (Some(m), to) if remote => {
                        let targets = match to {
                            Jid::Full(f) => self.targets(bare, |e| &e.full == f),
                            Jid::Bare(_) => self.targets(bare, |e| e.available),
                        };
                        for t in targets {
                            let mut p = m.to_client(&el, t.family);
                            if matches!(to, Jid::Bare(_)) {
                                p.set_attr("to", &t.full.to_string());
                            }
                            self.push(ctx, &t, p);
                        }
                    }
                    (_, Jid::Full(f)) => {
                        self.to_full(ctx, f, el);
                    }
                    (_, Jid::Bare(_)) => {
                        self.to_available(ctx, bare, &el);
                    }
                }
            }
        }
    }

    /// The contact `bare` answers a probe with the presence of its available resources,
    /// if the prober is subscribed to it (`from`/`both` in the contact's roster).
    async fn answer_probe(&self, ctx: &mut Ctx, bare: &BareJid, probe: &Element) {
        let (Some(from), Some(u)) = (probe.attr("from").map(str::to_owned), addr(bare)) else {
            return;
        };
        let Some(prober) = bare_of(Some(&from)) else {
            return;
        };
        if self.politely_blocked(bare, &prober) {
            let el = ElementBuilder::new("presence", ns::CLIENT)
                .attr("from", bare.to_string())
                .attr("to", from)
                .attr("type", "unavailable")
                .build();
            return self.deliver_sync(ctx, el);
        }
        let key = prober.to_string();
        let item = self.db(move |s| s.roster_item(&u, &key)).await;
        if !matches!(&item, Ok(Some(i)) if shares_from(i.subscription)) {
            return;
        }
        let presences: Vec<Element> = lock(&self.inner.sessions)
            .get(bare)
            .map(|v| {
                v.iter()
                    .filter(|e| e.available)
                    .filter_map(|e| e.presence.clone())
                    .collect()
            })
            .unwrap_or_default();
        for p in presences {
            self.deliver_sync(ctx, with_attr(&p, "to", &from));
        }
    }

    /// Sends the current presence of `user`'s available resources (or `unavailable`)
    /// to `contact`.
    fn presence_to(&self, ctx: &mut Ctx, user: &BareJid, contact: &BareJid, unavailable: bool) {
        let list: Vec<(FullJid, Option<Element>)> = lock(&self.inner.sessions)
            .get(user)
            .map(|v| {
                v.iter()
                    .filter(|e| e.available)
                    .map(|e| (e.full.clone(), e.presence.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (full, p) in list {
            let el = match p {
                Some(p) if !unavailable => with_attr(&p, "to", &contact.to_string()),
                _ => ElementBuilder::new("presence", ns::CLIENT)
                    .attr("from", full.to_string())
                    .attr("to", contact.to_string())
                    .attr("type", "unavailable")
                    .build(),
            };
            self.deliver_sync(ctx, el);
        }
    }

    // ---- rosters and subscriptions ------------------------------------------------

    /// Read-modify-write of one item in one store request; pushes the change.
    async fn update_item<F>(
        &self,
        ctx: &mut Ctx,
        user: &BareJid,
        contact: &BareJid,
        f: F,
    ) -> Result<(Option<RosterItem>, Option<RosterItem>), StoreError>
    where
        F: FnOnce(Option<RosterItem>) -> Option<RosterItem> + Send + 'static,
    {
        let Some(u) = addr(user) else {
            return Ok((None, None));
        };
        let key = contact.to_string();
        let (old, new) = self
            .db(move |s| {
                let old = s.roster_item(&u, &key)?;
                let new = f(old.clone());
                if new != old
                    && let Some(n) = &new
                {
                    s.roster_set(&u, n)?;
                }
                Ok((old, new))
            })
            .await?;
        if new != old
            && let Some(n) = &new
            && !hidden(n)
        {
            self.roster_push(ctx, user, item_xml(n, false));
        }
        Ok((old, new))
    }

    fn roster_push(&self, ctx: &mut Ctx, user: &BareJid, item: Element) {
        for t in self.targets(user, |e| e.interested) {
            let id = format!("push{}", self.inner.next_id.fetch_add(1, Ordering::Relaxed));
            let iq = ElementBuilder::new("iq", ns::CLIENT)
                .attr("to", t.full.to_string())
                .attr("id", id)
                .attr("type", "set")
                .child(
                    ElementBuilder::new("query", ROSTER_NS)
                        .child(item.clone())
                        .build(),
                )
                .build();
            self.push(ctx, &t, iq);
        }
    }

    /// RFC 6121 §3 outbound processing on the user's roster, then routing.
    async fn outbound_subscription(
        &self,
        ctx: &mut Ctx,
        full: &FullJid,
        contact: BareJid,
        el: Element,
    ) {
        let user = full.bare().clone();
        if contact == user {
            return;
        }
        let kind = el.attr("type").unwrap_or("").to_owned();
        // Subscription stanzas go from and to bare JIDs.
        let mut el = with_attr(&el, "from", &user.to_string());
        el.set_attr("to", &contact.to_string());
        let c = contact.to_string();
        let res = match kind.as_str() {
            "subscribe" => {
                self.update_item(ctx, &user, &contact, move |old| {
                    let mut i = old.unwrap_or_else(|| RosterItem::new(c));
                    if !shares_to(i.subscription) {
                        i.ask_out = true;
                    }
                    Some(i)
                })
                .await
            }
            "unsubscribe" => {
                self.update_item(ctx, &user, &contact, move |old| {
                    old.map(|mut i| {
                        i.subscription = match i.subscription {
                            Sub::Both => Sub::From,
                            Sub::To => Sub::None,
                            s => s,
                        };
                        i.ask_out = false;
                        i
                    })
                })
                .await
            }
            "subscribed" => {
                self.update_item(ctx, &user, &contact, move |old| {
                    let mut i = old.unwrap_or_else(|| RosterItem::new(c));
                    if i.pending_in.take().is_some() {
                        i.subscription = match i.subscription {
                            Sub::None => Sub::From,
                            Sub::To => Sub::Both,
                            s => s,
                        };
                    } else if !shares_from(i.subscription) {
                        i.approved = true; // pre-approval, RFC 6121 §3.4
                    }
                    Some(i)
                })
                .await
            }
            _ => {
                self.update_item(ctx, &user, &contact, move |old| {
                    old.map(|mut i| {
                        i.pending_in = None;
                        i.approved = false;
                        i.subscription = match i.subscription {
                            Sub::Both => Sub::To,
                            Sub::From => Sub::None,
                            s => s,
                        };
                        i
                    })
                })
                .await
            }
        };
        let (old, new) = match res {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(user = %user, error = %e, "core: roster update failed");
                return self.bounce(ctx, &el, store_cond(&e));
            }
        };
        let was_from = old.as_ref().is_some_and(|i| shares_from(i.subscription));
        let is_from = new.as_ref().is_some_and(|i| shares_from(i.subscription));
        if let Some((pol, u, w)) = self.remote_policy(&user, &contact) {
            match kind.as_str() {
                // An approval (or pre-approval) is an allow in the user's policy list.
                "subscribed" => self.policy_answer(&pol, u, w, Rule::Allow).await,
                "unsubscribed" => {
                    let key = SubscriptionKey::inbound(u.clone(), w.clone());
                    let asked = old.as_ref().is_some_and(|i| i.pending_in.is_some())
                        || pol.read(|p| p.state(&key)) == SubscriptionState::Pending;
                    if asked && !was_from {
                        // A deny: stored as a block, answered as a polite block (seed).
                        self.policy_answer(&pol, u, w, Rule::Block).await;
                        return self.polite_block(ctx, &user, &contact);
                    }
                    if was_from {
                        // A revocation (RFC 6121 §3.2): the allow goes, the watcher is
                        // told; a new request will be asked again.
                        let r = pol
                            .call(move |p| {
                                p.remove_rule(&u, &RuleTarget::User(w.clone()))?;
                                p.handle_inbound_unsubscribe(util::now(), &w, &u)
                            })
                            .await;
                        if let Err(e) = r {
                            tracing::warn!(user = %user, watcher = %contact, error = %e, "core: policy: revocation not recorded");
                        }
                    }
                }
                _ => {}
            }
        }
        match kind.as_str() {
            // Approval of a request we hold: route it, then our presence (§3.1.5).
            "subscribed" if !was_from && is_from => {
                self.subscriptions(ctx, el).await;
                self.presence_to(ctx, &user, &contact, false);
            }
            "subscribed" => {} // pre-approval or nothing to approve: not routed
            "unsubscribed" => {
                self.subscriptions(ctx, el).await;
                if was_from {
                    self.presence_to(ctx, &user, &contact, true);
                }
            }
            _ => self.subscriptions(ctx, el).await,
        }
    }

    /// Routes subscription stanzas, with the inbound processing (RFC 6121 §3) for local
    /// contacts; follow-ups (automatic replies) are processed the same way, iteratively.
    async fn subscriptions(&self, ctx: &mut Ctx, first: Element) {
        let mut work = VecDeque::from([first]);
        let mut steps = 0;
        while let Some(el) = work.pop_front() {
            steps += 1;
            if steps > 8 {
                break; // never loops in practice; bounded anyway
            }
            let (Some(to), Some(from)) = (bare_of(el.attr("to")), bare_of(el.attr("from"))) else {
                continue;
            };
            match self.route_of(&Jid::Bare(to.clone())) {
                Route::Remote(_) => {
                    self.send_remote(ctx, el);
                    continue;
                }
                Route::LocalServer(_) => continue,
                Route::Local(_) => {}
            }
            if !self.inner.users.exists(&to) {
                continue;
            }
            if let Err(e) = self
                .inbound_subscription(ctx, &to, &from, el, &mut work)
                .await
            {
                tracing::warn!(user = %to, error = %e, "core: inbound subscription failed");
            }
        }
    }

    async fn inbound_subscription(
        &self,
        ctx: &mut Ctx,
        user: &BareJid,
        contact: &BareJid,
        el: Element,
        follow: &mut VecDeque<Element>,
    ) -> Result<(), StoreError> {
        let kind = el.attr("type").unwrap_or("").to_owned();
        let c = contact.to_string();
        let reply = |t: &str| {
            ElementBuilder::new("presence", ns::CLIENT)
                .attr("from", user.to_string())
                .attr("to", contact.to_string())
                .attr("type", t)
                .build()
        };
        let policy = self.remote_policy(user, contact);
        match kind.as_str() {
            "subscribe" => {
                if let Some((pol, u, w)) = &policy {
                    let proto = pol.protocol_of(w.domain());
                    let (u2, w2) = (u.clone(), w.clone());
                    let outcome = pol
                        .call(move |p| {
                            p.handle_inbound_subscribe(util::now(), &w2, &u2, proto, None)
                        })
                        .await;
                    let decision = match outcome {
                        Ok(o) => o.decision,
                        Err(e) => {
                            // Nothing recorded, nothing answered: the watcher may ask again.
                            tracing::warn!(user = %user, watcher = %contact, error = %e, "core: subscription not decided");
                            return Ok(());
                        }
                    };
                    tracing::debug!(user = %user, watcher = %contact, ?decision, "core: inbound subscription");
                    match decision {
                        InboundDecision::Denied(denial) => {
                            tracing::info!(user = %user, watcher = %contact, ?denial, "core: subscription denied; the user is not asked");
                            self.send_remote(ctx, reply("unsubscribed"));
                            return Ok(());
                        }
                        InboundDecision::PoliteBlock => {
                            self.polite_block(ctx, user, contact);
                            return Ok(());
                        }
                        InboundDecision::Accepted => {
                            let (old, new) = self
                                .update_item(ctx, user, contact, move |old| {
                                    let mut i = old.unwrap_or_else(|| RosterItem::new(c));
                                    i.pending_in = None;
                                    i.approved = false;
                                    i.subscription = match i.subscription {
                                        Sub::None => Sub::From,
                                        Sub::To => Sub::Both,
                                        s => s,
                                    };
                                    Some(i)
                                })
                                .await?;
                            // The answer first, then the presence it allows.
                            self.send_remote(ctx, reply("subscribed"));
                            if !old.as_ref().is_some_and(|i| shares_from(i.subscription))
                                && new.as_ref().is_some_and(|i| shares_from(i.subscription))
                            {
                                self.presence_to(ctx, user, contact, false);
                            }
                            return Ok(());
                        }
                        InboundDecision::Pending => {} // RFC 6121: the user is asked
                    }
                }
                let xml = el.to_xml();
                let (old, new) = self
                    .update_item(ctx, user, contact, move |old| {
                        let mut i = old.unwrap_or_else(|| RosterItem::new(c));
                        if shares_from(i.subscription) {
                        } else if i.approved {
                            i.approved = false;
                            i.subscription = match i.subscription {
                                Sub::None => Sub::From,
                                _ => Sub::Both,
                            };
                        } else {
                            i.pending_in = Some(xml);
                        }
                        Some(i)
                    })
                    .await?;
                let now_from = new.as_ref().is_some_and(|i| shares_from(i.subscription));
                if now_from && let Some((pol, u, w)) = policy {
                    // Approved on the roster (earlier, or pre-approved): the policy agrees.
                    self.policy_answer(&pol, u, w, Rule::Allow).await;
                }
                if now_from {
                    // Already approved (or pre-approved): answer for the user, before the
                    // presence it allows (a remote contact gets it at once).
                    match self.route_of(&Jid::Bare(contact.clone())) {
                        Route::Remote(_) => self.send_remote(ctx, reply("subscribed")),
                        _ => follow.push_back(reply("subscribed")),
                    }
                    if !old.as_ref().is_some_and(|i| shares_from(i.subscription)) {
                        self.presence_to(ctx, user, contact, false);
                    }
                } else {
                    self.to_available(ctx, user, &el);
                }
            }
            "subscribed" => {
                let (old, new) = self
                    .update_item(ctx, user, contact, move |old| {
                        old.map(|mut i| {
                            if i.ask_out {
                                i.ask_out = false;
                                i.subscription = match i.subscription {
                                    Sub::None => Sub::To,
                                    Sub::From => Sub::Both,
                                    s => s,
                                };
                            }
                            i
                        })
                    })
                    .await?;
                if old != new {
                    self.to_available(ctx, user, &el);
                }
            }
            "unsubscribe" => {
                let (old, new) = self
                    .update_item(ctx, user, contact, move |old| {
                        old.map(|mut i| {
                            i.pending_in = None;
                            i.approved = false;
                            i.subscription = match i.subscription {
                                Sub::Both => Sub::To,
                                Sub::From => Sub::None,
                                s => s,
                            };
                            i
                        })
                    })
                    .await?;
                if old != new {
                    self.to_available(ctx, user, &el);
                    if old.as_ref().is_some_and(|i| shares_from(i.subscription)) {
                        self.presence_to(ctx, user, contact, true);
                    }
                }
                if let Some((pol, u, w)) = policy {
                    let r = pol
                        .call(move |p| p.handle_inbound_unsubscribe(util::now(), &w, &u))
                        .await;
                    if let Err(e) = r {
                        tracing::warn!(user = %user, watcher = %contact, error = %e, "core: policy: unsubscribe not recorded");
                    }
                }
            }
            _ => {
                let (old, new) = self
                    .update_item(ctx, user, contact, move |old| {
                        old.map(|mut i| {
                            i.ask_out = false;
                            i.subscription = match i.subscription {
                                Sub::Both => Sub::From,
                                Sub::To => Sub::None,
                                s => s,
                            };
                            i
                        })
                    })
                    .await?;
                if old != new {
                    self.to_available(ctx, user, &el);
                }
            }
        }
        Ok(())
    }

    // ---- iq -----------------------------------------------------------------------

    async fn client_iq(&self, ctx: &mut Ctx, full: &FullJid, el: Element) {
        if self.blocking_or_disco(ctx, full, &el).await {
            return;
        }
        let own = match el.attr("to") {
            None => true,
            Some(t) => Jid::parse(t).is_ok_and(|j| j == Jid::Bare(full.bare().clone())),
        };
        if !own {
            return self.route(ctx, el).await;
        }
        let kind = el.attr("type").unwrap_or("");
        if el.get_child("query", ROSTER_NS).is_some() && matches!(kind, "get" | "set") {
            return self.roster_iq(ctx, full, el).await;
        }
        if kind == "get" && el.get_child("ping", PING_NS).is_some() {
            let r = ElementBuilder::new("iq", ns::CLIENT)
                .attr("to", full.to_string())
                .attr_opt("id", el.attr("id"))
                .attr("type", "result")
                .build();
            return ctx.out.push(r);
        }
        if matches!(kind, "get" | "set") {
            self.bounce(ctx, &el, Cond::ServiceUnavailable);
        }
    }

    fn iq_error_to_self(&self, ctx: &mut Ctx, el: &Element, c: Cond) {
        if let Some(e) = error_reply(el.root(), &StanzaError::new(c)) {
            ctx.out.push(e);
        }
    }

    async fn roster_iq(&self, ctx: &mut Ctx, full: &FullJid, el: Element) {
        let user = full.bare().clone();
        let result = |payload: Option<Element>| iq_result(full, &el, payload);
        if el.attr("type") == Some("get") {
            let Some(u) = addr(&user) else {
                return self.iq_error_to_self(ctx, &el, Cond::ItemNotFound);
            };
            match self.db(move |s| s.roster(&u)).await {
                Ok(r) => {
                    let mut q = ElementBuilder::new("query", ROSTER_NS);
                    for i in r.items.iter().filter(|i| !hidden(i)) {
                        q.push_child(item_xml(i, false));
                    }
                    if let Some(v) = lock(&self.inner.sessions)
                        .get_mut(&user)
                        .and_then(|v| v.iter_mut().find(|e| &e.full == full))
                    {
                        v.interested = true;
                    }
                    ctx.out.push(result(Some(q.build())));
                }
                Err(e) => self.iq_error_to_self(ctx, &el, store_cond(&e)),
            }
            return;
        }
        // set: exactly one item
        let Some(query) = el.get_child("query", ROSTER_NS) else {
            return self.iq_error_to_self(ctx, &el, Cond::BadRequest);
        };
        let items: Vec<_> = query
            .elements()
            .filter(|c| c.is("item", ROSTER_NS))
            .collect();
        let [item] = items.as_slice() else {
            return self.iq_error_to_self(ctx, &el, Cond::BadRequest);
        };
        let Some(contact) = item.attr("jid").and_then(|j| BareJid::parse(j).ok()) else {
            return self.iq_error_to_self(ctx, &el, Cond::BadRequest);
        };
        if item.attr("subscription") == Some("remove") {
            let Some(u) = addr(&user) else { return };
            let key = contact.to_string();
            let res = self
                .db(move |s| {
                    let old = s.roster_item(&u, &key)?;
                    s.roster_remove(&u, &key)?;
                    Ok(old)
                })
                .await;
            match res {
                Ok(old) => {
                    ctx.out.push(result(None));
                    let Some(old) = old else { return };
                    self.roster_push(ctx, &user, item_xml(&old, true));
                    let mk = |t: &str| {
                        ElementBuilder::new("presence", ns::CLIENT)
                            .attr("from", user.to_string())
                            .attr("to", contact.to_string())
                            .attr("type", t)
                            .build()
                    };
                    if shares_to(old.subscription) || old.ask_out {
                        self.subscriptions(ctx, mk("unsubscribe")).await;
                    }
                    if shares_from(old.subscription) || old.pending_in.is_some() {
                        self.subscriptions(ctx, mk("unsubscribed")).await;
                        if shares_from(old.subscription) {
                            self.presence_to(ctx, &user, &contact, true);
                        }
                    }
                }
                Err(e) => self.iq_error_to_self(ctx, &el, store_cond(&e)),
            }
            return;
        }
        let name = item
            .attr("name")
            .filter(|n| !n.is_empty())
            .map(str::to_owned);
        let groups: std::collections::BTreeSet<String> = item
            .elements()
            .filter(|g| g.is("group", ROSTER_NS))
            .map(|g| g.text())
            .filter(|g| !g.is_empty())
            .collect();
        let c = contact.to_string();
        let res = self
            .update_item(ctx, &user, &contact, move |old| {
                let mut i = old.unwrap_or_else(|| RosterItem::new(c));
                i.name = name;
                i.groups = groups;
                Some(i)
            })
            .await;
        match res {
            Ok(_) => ctx.out.push(result(None)),
            Err(e) => self.iq_error_to_self(ctx, &el, store_cond(&e)),
        }
    }
}

/// Adds a XEP-0203 `<delay/>` to a stanza read back from offline storage.
pub(crate) fn with_delay(
    mut el: Element,
    domain: &str,
    stored_at: fedgate_policy::Timestamp,
) -> Element {
    let delay = ElementBuilder::new("delay", DELAY_NS)
        .attr("from", domain)
        .attr("stamp", util::xep0082(stored_at))
        .build();
    let mut b = ElementBuilder::new(el.name(), el.ns());
    for (k, v) in el.attrs() {
        b = b.attr(k, v);
    }
    for c in el.elements() {
        b.push_child(c.to_owned());
    }
    b.push_child(delay);
    el = b.build();
    el
}
