//! The policy engine: configuration, per-user rules and subscriptions behind one store.

use std::collections::BTreeSet;
use std::time::Duration;

use tracing::debug;

use crate::addr::{Domain, FastMap, UserAddress};
use crate::federation::{
    ConfigError, DomainDenial, FederationConfig, FederationEntry, NotFederatedReason, Protocol,
    Route, XmppListing, XmppMode,
};
use crate::rules::{Authorization, Rule, RuleTarget, UserRules};
use crate::store::{Change, PolicyStore};
use crate::subscription::{
    Direction, SubscriptionKey, SubscriptionLimits, SubscriptionRecord, SubscriptionState,
    TerminationReason,
};
use crate::time::Timestamp;

/// Errors of the policy engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A configuration change broke a federation rule.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The address is not a user of one of our local domains.
    #[error("{user} is not a user of one of our local domains")]
    NotLocalUser {
        /// The address.
        user: UserAddress,
    },
    /// No live subscription with this key.
    #[error("no live subscription from {} to {} ({:?})", .key.local, .key.remote, .key.direction)]
    UnknownSubscription {
        /// The key asked for.
        key: SubscriptionKey,
    },
    /// The store refused a write; nothing changed.
    #[error("policy store write failed; nothing was changed")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// What the store returned at start-up breaks a federation rule.
    #[error("policy store content breaks a federation rule")]
    CorruptStore(#[source] ConfigError),
}

/// The policy answer to an inbound subscription, in the seed's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InboundDecision {
    /// The watcher's domain is not permitted (or the target is not ours). The user is
    /// never contacted.
    Denied(DomainDenial),
    /// The user blocked the watcher or its domain: accepted like any other, but the
    /// watcher only ever sees Offline.
    PoliteBlock,
    /// The user allowed the watcher or its domain.
    Accepted,
    /// Neither: the subscription waits and the user is asked.
    Pending,
}

/// What to answer the watcher, at protocol level. A polite block and an acceptance give
/// the same answer, so nothing reveals the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscribeAnswer {
    /// SIP 403 Forbidden / XMPP `unsubscribed`.
    Reject,
    /// SIP 200 + NOTIFY `Subscription-State: active` / XMPP `subscribed`.
    AcceptActive,
    /// SIP 202/200 + NOTIFY `Subscription-State: pending` / XMPP: no reply yet.
    AcceptPending,
}

impl InboundDecision {
    /// The protocol-level answer for this decision.
    pub fn answer(self) -> SubscribeAnswer {
        match self {
            Self::Denied(_) => SubscribeAnswer::Reject,
            Self::PoliteBlock | Self::Accepted => SubscribeAnswer::AcceptActive,
            Self::Pending => SubscribeAnswer::AcceptPending,
        }
    }
}

/// The result of [`Policy::handle_inbound_subscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundOutcome {
    /// The decision.
    pub decision: InboundDecision,
    /// What to answer the watcher.
    pub answer: SubscribeAnswer,
    /// True when the local user's client must now be asked (a new pending request; a
    /// refresh of a request already pending does not ask again).
    pub ask_user: bool,
    /// The expiry granted (SIP), `None` for XMPP or a rejection.
    pub expires: Option<Duration>,
}

/// The answer to a local user's request to subscribe to a remote user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundDecision {
    /// Send a subscription over `protocol` (SIP SUBSCRIBE with `expires`, XMPP `subscribe`).
    Send {
        /// Protocol to use.
        protocol: Protocol,
        /// The expiry to ask for (SIP), `None` for XMPP.
        expires: Option<Duration>,
    },
    /// The target is a local user: no federation involved.
    LocalUser,
    /// The target's domain is not federated.
    NotFederated(NotFederatedReason),
}

/// The remote side's answer to one of our outbound subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteAnswer {
    /// Active (SIP 200/NOTIFY active, XMPP `subscribed`), with the expiry granted (SIP).
    Active {
        /// Expiry the remote side granted; `None`: default (SIP) or no expiry (XMPP).
        expires: Option<Duration>,
    },
    /// Pending at the remote side (SIP 202 or NOTIFY pending).
    Pending {
        /// Expiry the remote side granted.
        expires: Option<Duration>,
    },
    /// Ended by the remote side.
    Terminated(TerminationReason),
}

/// Something the node must act on, produced by timers or configuration changes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionEvent {
    /// Send a refresh for this outbound subscription now.
    Refresh {
        /// The subscription.
        key: SubscriptionKey,
        /// Protocol it runs over.
        protocol: Protocol,
    },
    /// The subscription ended; tell the other side (SIP NOTIFY terminated / unsubscribe).
    Terminated {
        /// The subscription.
        key: SubscriptionKey,
        /// Why.
        reason: TerminationReason,
    },
    /// A pending inbound subscription was decided by a rule the user set: send the watcher
    /// an active state and its view ([`Policy::view_for`]).
    Activated {
        /// The subscription.
        key: SubscriptionKey,
    },
}

impl SubscriptionEvent {
    /// The subscription the event is about.
    pub fn key(&self) -> &SubscriptionKey {
        match self {
            Self::Refresh { key, .. } | Self::Terminated { key, .. } | Self::Activated { key } => {
                key
            }
        }
    }
}

/// What to do after a restart, from [`Policy::resume`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeAction {
    /// Re-establish this outbound subscription (new SUBSCRIBE dialog, XMPP probe).
    Resubscribe {
        /// The subscription.
        key: SubscriptionKey,
        /// Protocol.
        protocol: Protocol,
    },
    /// Ask the local user again about this pending inbound request.
    AskUser {
        /// The subscription.
        key: SubscriptionKey,
    },
}

/// What one watcher may see of a local user's presence change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen<'a, P> {
    /// The real presence.
    Real(&'a P),
    /// Offline (a polite block, or no longer authorized), indistinguishable from the user
    /// really being offline.
    Offline,
}

#[derive(Debug, Default, Clone)]
struct UserSubs {
    inbound: FastMap<UserAddress, SubscriptionRecord>,
    outbound: FastMap<UserAddress, SubscriptionRecord>,
}

impl UserSubs {
    fn map(&self, d: Direction) -> &FastMap<UserAddress, SubscriptionRecord> {
        match d {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        }
    }
    fn map_mut(&mut self, d: Direction) -> &mut FastMap<UserAddress, SubscriptionRecord> {
        match d {
            Direction::Inbound => &mut self.inbound,
            Direction::Outbound => &mut self.outbound,
        }
    }
}

/// The policy engine. Pure: every input that depends on time takes `now`; every mutation
/// is written to the store `S` before it takes effect in memory.
///
/// See the crate documentation for the decision order and an example.
#[derive(Debug)]
pub struct Policy<S> {
    store: S,
    limits: SubscriptionLimits,
    config: FederationConfig,
    rules: FastMap<UserAddress, UserRules>,
    subs: FastMap<UserAddress, UserSubs>,
    deadlines: BTreeSet<(Timestamp, SubscriptionKey)>,
}

impl<S: PolicyStore> Policy<S> {
    /// Opens the engine on `store`, resuming everything it holds.
    pub fn open(store: S, limits: SubscriptionLimits) -> Result<Self, PolicyError> {
        let snapshot = store.load().map_err(|e| PolicyError::Store(Box::new(e)))?;
        let mut p = Self {
            store,
            limits,
            config: FederationConfig::new(),
            rules: FastMap::default(),
            subs: FastMap::default(),
            deadlines: BTreeSet::new(),
        };
        for d in snapshot.local_domains {
            p.config
                .add_local_domain(d)
                .map_err(PolicyError::CorruptStore)?;
        }
        for (d, e) in snapshot.remote_domains {
            p.config
                .add_remote(d, e)
                .map_err(PolicyError::CorruptStore)?;
        }
        if let Some(mode) = snapshot.xmpp_mode {
            p.config.set_xmpp_mode(mode);
        }
        for (user, target, rule) in snapshot.rules {
            p.apply_in_memory(Change::PutRule { user, target, rule });
        }
        for rec in snapshot.subscriptions {
            if rec.state != SubscriptionState::None {
                p.apply_in_memory(Change::PutSubscription(rec));
            }
        }
        Ok(p)
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives the store back (e.g. to reopen it after a simulated restart).
    pub fn into_store(self) -> S {
        self.store
    }

    /// The durations in use.
    pub fn limits(&self) -> &SubscriptionLimits {
        &self.limits
    }

    /// The administrator configuration.
    pub fn config(&self) -> &FederationConfig {
        &self.config
    }

    /// Where `domain` lives: the routing answer for the node's router.
    pub fn route(&self, domain: &Domain) -> Route {
        self.config.route(domain)
    }

    // ----- administration ---------------------------------------------------------------

    /// Adds a local domain. Fails if it is configured as a remote domain. Subscriptions of
    /// remote users claiming that domain (possible under [`XmppMode::AllowAll`] or
    /// [`XmppMode::DenyListed`]) are terminated.
    pub fn add_local_domain(
        &mut self,
        now: Timestamp,
        domain: Domain,
    ) -> Result<Vec<SubscriptionEvent>, PolicyError> {
        self.config.check_local(&domain)?;
        self.commit_config(now, Change::PutLocalDomain(domain))
    }

    /// Removes a local domain; subscriptions of its users are terminated.
    pub fn remove_local_domain(
        &mut self,
        now: Timestamp,
        domain: &Domain,
    ) -> Result<Vec<SubscriptionEvent>, PolicyError> {
        if !self.config.is_local(domain) {
            return Ok(Vec::new());
        }
        self.commit_config(now, Change::DeleteLocalDomain(domain.clone()))
    }

    /// Adds a SIP federated domain. Fails for a domain on an XMPP list or a local domain.
    pub fn add_sip_domain(
        &mut self,
        now: Timestamp,
        domain: Domain,
    ) -> Result<Vec<SubscriptionEvent>, PolicyError> {
        self.add_remote_domain(now, domain, FederationEntry::Sip)
    }

    /// Puts a domain on an XMPP list. Fails with [`ConfigError::ConfiguredAsSip`] (which says
    /// to delete the SIP entry first) for a SIP federated domain.
    pub fn add_xmpp_domain(
        &mut self,
        now: Timestamp,
        domain: Domain,
        listing: XmppListing,
    ) -> Result<Vec<SubscriptionEvent>, PolicyError> {
        self.add_remote_domain(now, domain, FederationEntry::Xmpp(listing))
    }

    /// Adds or changes a remote domain entry; subscriptions it stops permitting are
    /// terminated (returned as events).
    pub fn add_remote_domain(
        &mut self,
        now: Timestamp,
        domain: Domain,
        entry: FederationEntry,
    ) -> Result<Vec<SubscriptionEvent>, PolicyError> {
        self.config.check_remote(&domain, entry)?;
        self.commit_config(now, Change::PutRemoteDomain(domain, entry))
    }

    /// Deletes a remote domain entry; subscriptions it stops permitting are terminated.
    pub fn remove_remote_domain(
        &mut self,
        now: Timestamp,
        domain: &Domain,
    ) -> Result<Vec<SubscriptionEvent>, PolicyError> {
        if self.config.entry(domain).is_none() {
            return Ok(Vec::new());
        }
        self.commit_config(now, Change::DeleteRemoteDomain(domain.clone()))
    }

    /// Sets the XMPP administrator policy mode; subscriptions it stops permitting are
    /// terminated.
    pub fn set_xmpp_mode(
        &mut self,
        now: Timestamp,
        mode: XmppMode,
    ) -> Result<Vec<SubscriptionEvent>, PolicyError> {
        self.commit_config(now, Change::SetXmppMode(mode))
    }

    // ----- per-user rules ---------------------------------------------------------------

    /// The policy list of `user`, if it has any rule.
    pub fn rules(&self, user: &UserAddress) -> Option<&UserRules> {
        self.rules.get(user)
    }

    /// Sets a rule in a local user's list (the user edits it from the client). Pending
    /// requests the rule now decides become active (returned as events).
    ///
    /// Seed: "The user can also block subscriptions on a per user and a per domain basis.
    /// This can be configured by the Cisco Jabber client."
    pub fn set_rule(
        &mut self,
        now: Timestamp,
        user: &UserAddress,
        target: RuleTarget,
        rule: Rule,
    ) -> Result<Vec<SubscriptionEvent>, PolicyError> {
        self.require_local(user)?;
        let mut next = self.rules.get(user).cloned().unwrap_or_default();
        next.set(target.clone(), rule);
        let mut batch = vec![Change::PutRule {
            user: user.clone(),
            target,
            rule,
        }];
        let mut events = Vec::new();
        if let Some(subs) = self.subs.get(user) {
            for rec in subs.inbound.values() {
                if rec.state == SubscriptionState::Pending
                    && rec.is_live(now)
                    && next.authorize(&rec.key.remote) != Authorization::Undecided
                {
                    let mut r = rec.clone();
                    r.state = SubscriptionState::Active;
                    events.push(SubscriptionEvent::Activated { key: r.key.clone() });
                    batch.push(Change::PutSubscription(r));
                }
            }
        }
        self.commit(batch)?;
        Ok(events)
    }

    /// Removes a rule from a local user's list. Watchers it allowed now see Offline.
    pub fn remove_rule(
        &mut self,
        user: &UserAddress,
        target: &RuleTarget,
    ) -> Result<(), PolicyError> {
        self.require_local(user)?;
        if self.rules.get(user).and_then(|r| r.get(target)).is_none() {
            return Ok(());
        }
        self.commit(vec![Change::DeleteRule {
            user: user.clone(),
            target: target.clone(),
        }])
    }

    // ----- inbound subscriptions --------------------------------------------------------

    /// The policy decision for `watcher` (remote) subscribing to `local` over `protocol`.
    /// Read-only; [`Self::handle_inbound_subscribe`] records it.
    ///
    /// Order (seed, "Presence Subscriptions and Blocking Levels"):
    /// 1. "If the subscription is not from a permitted domain, the IM and Presence Service
    ///    denies the subscription (without contacting the local user)." →
    ///    [`InboundDecision::Denied`], from [`FederationConfig::permits`].
    /// 2. "the IM and Presence Service checks the authorization policies of the local user to
    ///    verify that the local user has not previously blocked or allowed either the
    ///    federated domain or the user sending the presence subscription." A block →
    ///    [`InboundDecision::PoliteBlock`] ("A deny decision is handled using polite
    ///    blocking, which means that the presence state of the user appears offline on the
    ///    external client."); an allow → [`InboundDecision::Accepted`]
    ///    ([`UserRules::authorize`]).
    /// 3. "The IM and Presence Service then accepts the incoming subscription and places it
    ///    in a pending state." → [`InboundDecision::Pending`].
    pub fn authorize(
        &self,
        watcher: &UserAddress,
        local: &UserAddress,
        protocol: Protocol,
    ) -> InboundDecision {
        if !self.config.is_local(local.domain()) {
            return InboundDecision::Denied(DomainDenial::NotOurDomain);
        }
        if let Err(denial) = self.config.permits(watcher.domain(), protocol) {
            return InboundDecision::Denied(denial);
        }
        match self.rules.get(local).map(|r| r.authorize(watcher)) {
            Some(Authorization::Blocked) => InboundDecision::PoliteBlock,
            Some(Authorization::Allowed) => InboundDecision::Accepted,
            Some(Authorization::Undecided) | None => InboundDecision::Pending,
        }
    }

    /// Handles an inbound subscription (new or refresh) from `watcher` to `local`.
    /// `expires` is the SIP `Expires` asked for (ignored for XMPP).
    pub fn handle_inbound_subscribe(
        &mut self,
        now: Timestamp,
        watcher: &UserAddress,
        local: &UserAddress,
        protocol: Protocol,
        expires: Option<Duration>,
    ) -> Result<InboundOutcome, PolicyError> {
        let decision = self.authorize(watcher, local, protocol);
        let key = SubscriptionKey::inbound(local.clone(), watcher.clone());
        let existing = self.record(&key).filter(|r| r.is_live(now));
        debug!(%watcher, %local, %protocol, ?decision, "inbound subscription");
        let state = match decision {
            InboundDecision::Denied(_) => {
                if let Some(rec) = existing {
                    let change = self.terminated(rec, TerminationReason::Rejected, now);
                    self.commit(vec![change])?;
                }
                return Ok(InboundOutcome {
                    decision,
                    answer: SubscribeAnswer::Reject,
                    ask_user: false,
                    expires: None,
                });
            }
            InboundDecision::PoliteBlock | InboundDecision::Accepted => SubscriptionState::Active,
            InboundDecision::Pending => SubscriptionState::Pending,
        };
        let ask_user = state == SubscriptionState::Pending
            && !existing.is_some_and(|r| r.state == SubscriptionState::Pending);
        let granted = match protocol {
            Protocol::Sip => Some(self.limits.grant(expires)),
            Protocol::Xmpp => None,
        };
        let rec = SubscriptionRecord {
            key,
            protocol,
            state,
            expires_at: granted.map(|g| now + g),
            refresh_at: None,
        };
        self.commit(vec![Change::PutSubscription(rec)])?;
        Ok(InboundOutcome {
            decision,
            answer: decision.answer(),
            ask_user,
            expires: granted,
        })
    }

    /// The local user's answer to a pending request, stored in the user's policy list as a
    /// rule for the watcher (`Allow`, or `Block` for a deny). A pending subscription becomes
    /// active (a deny is a polite block). Returns the subscription's state afterwards.
    ///
    /// Seed: "Once the user has made an authorization decision, the client application
    /// communicates that decision back to the IM and Presence Service. The authorization
    /// decision is added to the policy list of the user stored on the IM and Presence
    /// Service."
    pub fn answer(
        &mut self,
        now: Timestamp,
        local: &UserAddress,
        watcher: &UserAddress,
        answer: Rule,
    ) -> Result<SubscriptionState, PolicyError> {
        self.require_local(local)?;
        let key = SubscriptionKey::inbound(local.clone(), watcher.clone());
        let mut batch = vec![Change::PutRule {
            user: local.clone(),
            target: RuleTarget::User(watcher.clone()),
            rule: answer,
        }];
        let mut state = self.state(&key);
        if let Some(rec) = self.record(&key).filter(|r| r.is_live(now))
            && rec.state == SubscriptionState::Pending
        {
            if self.config.permits(watcher.domain(), rec.protocol).is_ok() {
                let mut r = rec.clone();
                r.state = SubscriptionState::Active;
                state = r.state;
                batch.push(Change::PutSubscription(r));
            } else {
                let change = self.terminated(rec, TerminationReason::NotFederated, now);
                state = SubscriptionState::Terminated(TerminationReason::NotFederated);
                batch.push(change);
            }
        }
        self.commit(batch)?;
        Ok(state)
    }

    /// The watcher ended its subscription (SIP `Expires: 0`, XMPP `unsubscribe`).
    pub fn handle_inbound_unsubscribe(
        &mut self,
        now: Timestamp,
        watcher: &UserAddress,
        local: &UserAddress,
    ) -> Result<(), PolicyError> {
        let key = SubscriptionKey::inbound(local.clone(), watcher.clone());
        if let Some(rec) = self.record(&key).filter(|r| r.is_live(now)) {
            let change = self.terminated(rec, TerminationReason::Unsubscribed, now);
            self.commit(vec![change])?;
        }
        Ok(())
    }

    /// Live inbound requests still waiting for `local`'s answer.
    pub fn pending_requests(&self, local: &UserAddress, now: Timestamp) -> Vec<&UserAddress> {
        let mut v: Vec<_> = self
            .subs
            .get(local)
            .into_iter()
            .flat_map(|s| s.inbound.values())
            .filter(|r| r.state == SubscriptionState::Pending && r.is_live(now))
            .map(|r| &r.key.remote)
            .collect();
        v.sort();
        v
    }

    // ----- presence delivery ------------------------------------------------------------

    /// What `watcher` may see of `local`'s `presence` at `now`: `None` (nothing at all)
    /// unless there is a live, active inbound subscription from a domain still permitted
    /// over its protocol; then the real presence only if the user allows the watcher or
    /// its domain and blocks neither, and Offline otherwise.
    ///
    /// Seed: "A deny decision is handled using polite blocking, which means that the
    /// presence state of the user appears offline on the external client. If the local user
    /// allows the subscription, the IM and Presence Service sends presence updates to the
    /// external watcher."
    pub fn view_for<'a, P>(
        &self,
        local: &UserAddress,
        watcher: &UserAddress,
        presence: &'a P,
        now: Timestamp,
    ) -> Option<Seen<'a, P>> {
        let rec = self.subs.get(local)?.inbound.get(watcher)?;
        self.view_of(rec, presence, now)
    }

    fn view_of<'a, P>(
        &self,
        rec: &SubscriptionRecord,
        presence: &'a P,
        now: Timestamp,
    ) -> Option<Seen<'a, P>> {
        if rec.state != SubscriptionState::Active || !rec.is_live(now) {
            return None;
        }
        if !self.config.is_local(rec.key.local.domain()) {
            return None;
        }
        self.config
            .permits(rec.key.remote.domain(), rec.protocol)
            .ok()?;
        match self
            .rules
            .get(&rec.key.local)
            .map(|r| r.authorize(&rec.key.remote))
        {
            Some(Authorization::Allowed) => Some(Seen::Real(presence)),
            _ => Some(Seen::Offline),
        }
    }

    /// For a presence change of `local`, what each watcher may see: every watcher that may
    /// see anything, with [`Seen::Real`] or [`Seen::Offline`]; watchers that may see
    /// nothing are absent. Sorted by watcher.
    pub fn presence_fanout<'a, P>(
        &'a self,
        local: &UserAddress,
        presence: &'a P,
        now: Timestamp,
    ) -> Vec<(&'a UserAddress, Seen<'a, P>)> {
        let mut out: Vec<_> = self
            .subs
            .get(local)
            .into_iter()
            .flat_map(|s| s.inbound.values())
            .filter_map(|rec| Some((&rec.key.remote, self.view_of(rec, presence, now)?)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    // ----- outbound subscriptions -------------------------------------------------------

    /// A local user subscribes to a remote user. Made per local user: a subscription of
    /// another local user to the same remote user does not replace it.
    ///
    /// Seed: "The IM and Presence Service sends an outgoing subscription even if an active
    /// subscription already exists between a different local user to the same external
    /// user in the same external domain."
    pub fn subscribe_outbound(
        &mut self,
        now: Timestamp,
        local: &UserAddress,
        presentity: &UserAddress,
        expires: Option<Duration>,
    ) -> Result<OutboundDecision, PolicyError> {
        self.require_local(local)?;
        let protocol = match self.config.route(presentity.domain()) {
            Route::Local => return Ok(OutboundDecision::LocalUser),
            Route::NotFederated(r) => return Ok(OutboundDecision::NotFederated(r)),
            Route::Sip => Protocol::Sip,
            Route::Xmpp => Protocol::Xmpp,
        };
        let key = SubscriptionKey::outbound(local.clone(), presentity.clone());
        let granted = match protocol {
            Protocol::Sip => Some(self.limits.grant(expires)),
            Protocol::Xmpp => None,
        };
        let rec = match self
            .record(&key)
            .filter(|r| r.is_live(now) && r.protocol == protocol)
        {
            // A re-subscription of a live one keeps its state and deadlines.
            Some(r) => SubscriptionRecord {
                refresh_at: None,
                ..r.clone()
            },
            None => SubscriptionRecord {
                key,
                protocol,
                state: SubscriptionState::Pending,
                expires_at: granted.map(|g| now + g),
                refresh_at: None,
            },
        };
        self.commit(vec![Change::PutSubscription(rec)])?;
        debug!(%local, %presentity, %protocol, "outbound subscription");
        Ok(OutboundDecision::Send {
            protocol,
            expires: granted,
        })
    }

    /// The remote side answered (or notified the state of) our outbound subscription.
    /// Returns the new state.
    pub fn handle_outbound_response(
        &mut self,
        now: Timestamp,
        local: &UserAddress,
        presentity: &UserAddress,
        answer: RemoteAnswer,
    ) -> Result<SubscriptionState, PolicyError> {
        let key = SubscriptionKey::outbound(local.clone(), presentity.clone());
        let Some(rec) = self.record(&key).filter(|r| r.is_live(now)) else {
            return Err(PolicyError::UnknownSubscription { key });
        };
        let (state, expires) = match answer {
            _ if self
                .config
                .permits(presentity.domain(), rec.protocol)
                .is_err() =>
            {
                let change = self.terminated(rec, TerminationReason::NotFederated, now);
                self.commit(vec![change])?;
                return Ok(SubscriptionState::Terminated(
                    TerminationReason::NotFederated,
                ));
            }
            RemoteAnswer::Terminated(reason) => {
                let change = self.terminated(rec, reason, now);
                self.commit(vec![change])?;
                return Ok(SubscriptionState::Terminated(reason));
            }
            RemoteAnswer::Active { expires } => (SubscriptionState::Active, expires),
            RemoteAnswer::Pending { expires } => (SubscriptionState::Pending, expires),
        };
        let mut r = rec.clone();
        r.state = state;
        if r.protocol == Protocol::Sip {
            let granted = self.limits.grant(expires);
            r.expires_at = Some(now + granted);
            r.refresh_at = Some(now + SubscriptionLimits::refresh_after(granted));
        }
        self.commit(vec![Change::PutSubscription(r)])?;
        Ok(state)
    }

    /// The local user ends an outbound subscription. Returns the protocol to send the
    /// unsubscription over, if there was a live one.
    pub fn unsubscribe_outbound(
        &mut self,
        now: Timestamp,
        local: &UserAddress,
        presentity: &UserAddress,
    ) -> Result<Option<Protocol>, PolicyError> {
        let key = SubscriptionKey::outbound(local.clone(), presentity.clone());
        let Some(rec) = self.record(&key).filter(|r| r.is_live(now)) else {
            return Ok(None);
        };
        let protocol = rec.protocol;
        let change = self.terminated(rec, TerminationReason::Unsubscribed, now);
        self.commit(vec![change])?;
        Ok(Some(protocol))
    }

    /// Whether presence from `presentity` arriving over `protocol` may be passed to `local`:
    /// there is a live outbound subscription over that protocol and the domain is still
    /// permitted.
    pub fn accepts_presence_from(
        &self,
        now: Timestamp,
        local: &UserAddress,
        presentity: &UserAddress,
        protocol: Protocol,
    ) -> bool {
        let key = SubscriptionKey::outbound(local.clone(), presentity.clone());
        self.record(&key)
            .is_some_and(|r| r.is_live(now) && r.protocol == protocol)
            && self.config.permits(presentity.domain(), protocol).is_ok()
    }

    // ----- bookkeeping, timers and restart ----------------------------------------------

    /// The record for `key`, if any (terminated ones are kept until purged).
    pub fn record(&self, key: &SubscriptionKey) -> Option<&SubscriptionRecord> {
        self.subs
            .get(&key.local)?
            .map(key.direction)
            .get(&key.remote)
    }

    /// The state of `key` ([`SubscriptionState::None`] when there is no record).
    pub fn state(&self, key: &SubscriptionKey) -> SubscriptionState {
        self.record(key)
            .map_or(SubscriptionState::None, |r| r.state)
    }

    /// Every record, in key order.
    pub fn records(&self) -> Vec<&SubscriptionRecord> {
        let mut v: Vec<_> = self
            .subs
            .values()
            .flat_map(|s| s.inbound.values().chain(s.outbound.values()))
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    /// The next deadline (refresh, expiry or purge), for the driver's timer.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Runs every deadline at or before `now`: outbound refreshes become
    /// [`SubscriptionEvent::Refresh`], expiries terminate the subscription
    /// ([`TerminationReason::Timeout`]), and terminated records past their linger are purged.
    pub fn handle_timeout(
        &mut self,
        now: Timestamp,
    ) -> Result<Vec<SubscriptionEvent>, PolicyError> {
        let due: Vec<SubscriptionKey> = self
            .deadlines
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, k)| k.clone())
            .collect();
        let mut batch = Vec::new();
        let mut events = Vec::new();
        for key in due {
            let Some(rec) = self.record(&key) else {
                continue;
            };
            if rec.expires_at.is_some_and(|e| e <= now) {
                if matches!(rec.state, SubscriptionState::Terminated(_)) {
                    batch.push(Change::DeleteSubscription(key));
                } else {
                    batch.push(self.terminated(rec, TerminationReason::Timeout, now));
                    events.push(SubscriptionEvent::Terminated {
                        key,
                        reason: TerminationReason::Timeout,
                    });
                }
            } else if rec.refresh_at.is_some_and(|r| r <= now) {
                let mut r = rec.clone();
                r.refresh_at = None;
                events.push(SubscriptionEvent::Refresh {
                    key,
                    protocol: r.protocol,
                });
                batch.push(Change::PutSubscription(r));
            }
        }
        self.commit(batch)?;
        Ok(events)
    }

    /// After [`Self::open`]: what to redo so every subscription and pending request resumes.
    /// Live outbound subscriptions are re-established (their dialogs died with the
    /// process); live pending inbound requests are put to the user again. Active inbound
    /// ones need nothing: the watcher refreshes (Lync "performs a refresh subscribe every one
    /// hour and 45 minutes") and [`Self::view_for`] answers it from the stored state.
    pub fn resume(&self, now: Timestamp) -> Vec<ResumeAction> {
        self.records()
            .into_iter()
            .filter(|r| r.is_live(now))
            .filter_map(|r| match (r.key.direction, r.state) {
                (Direction::Outbound, _) => Some(ResumeAction::Resubscribe {
                    key: r.key.clone(),
                    protocol: r.protocol,
                }),
                (Direction::Inbound, SubscriptionState::Pending) => {
                    Some(ResumeAction::AskUser { key: r.key.clone() })
                }
                _ => None,
            })
            .collect()
    }

    // ----- internals --------------------------------------------------------------------

    fn require_local(&self, user: &UserAddress) -> Result<(), PolicyError> {
        if self.config.is_local(user.domain()) {
            Ok(())
        } else {
            Err(PolicyError::NotLocalUser { user: user.clone() })
        }
    }

    fn terminated(
        &self,
        rec: &SubscriptionRecord,
        reason: TerminationReason,
        now: Timestamp,
    ) -> Change {
        Change::PutSubscription(SubscriptionRecord {
            key: rec.key.clone(),
            protocol: rec.protocol,
            state: SubscriptionState::Terminated(reason),
            expires_at: Some(now + self.limits.terminated_linger),
            refresh_at: None,
        })
    }

    /// Commits a configuration change together with the termination of every live
    /// subscription the new configuration `next` no longer permits, in one batch.
    fn commit_config(
        &mut self,
        now: Timestamp,
        change: Change,
    ) -> Result<Vec<SubscriptionEvent>, PolicyError> {
        // Apply the configuration change in memory first (so the sweep sees the new
        // configuration without copying it), and undo it if the store refuses the batch.
        let undo = self.config_undo(&change);
        self.apply_in_memory(change.clone());
        let mut batch = vec![change];
        let mut events = Vec::new();
        for rec in self
            .subs
            .values()
            .flat_map(|s| s.inbound.values().chain(s.outbound.values()))
        {
            if !rec.is_live(now) {
                continue;
            }
            let reason = if !self.config.is_local(rec.key.local.domain()) {
                TerminationReason::NotLocal
            } else if self
                .config
                .permits(rec.key.remote.domain(), rec.protocol)
                .is_err()
            {
                TerminationReason::NotFederated
            } else {
                continue;
            };
            batch.push(self.terminated(rec, reason, now));
            events.push(SubscriptionEvent::Terminated {
                key: rec.key.clone(),
                reason,
            });
        }
        if let Err(e) = self.store.apply(&batch) {
            self.apply_in_memory(undo);
            return Err(PolicyError::Store(Box::new(e)));
        }
        for change in batch.into_iter().skip(1) {
            self.apply_in_memory(change);
        }
        events.sort_by(|a, b| a.key().cmp(b.key()));
        Ok(events)
    }

    /// The change that restores the configuration as it is now, for a configuration change.
    fn config_undo(&self, change: &Change) -> Change {
        let restore_local = |d: &Domain| {
            if self.config.is_local(d) {
                Change::PutLocalDomain(d.clone())
            } else {
                Change::DeleteLocalDomain(d.clone())
            }
        };
        let restore_remote = |d: &Domain| match self.config.entry(d) {
            Some(e) => Change::PutRemoteDomain(d.clone(), e),
            None => Change::DeleteRemoteDomain(d.clone()),
        };
        match change {
            Change::PutLocalDomain(d) | Change::DeleteLocalDomain(d) => restore_local(d),
            Change::PutRemoteDomain(d, _) | Change::DeleteRemoteDomain(d) => restore_remote(d),
            Change::SetXmppMode(_) => Change::SetXmppMode(self.config.xmpp_mode()),
            // Not a configuration change; commit_config is never given one.
            other => other.clone(),
        }
    }

    fn commit(&mut self, batch: Vec<Change>) -> Result<(), PolicyError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.store
            .apply(&batch)
            .map_err(|e| PolicyError::Store(Box::new(e)))?;
        for change in batch {
            self.apply_in_memory(change);
        }
        Ok(())
    }

    fn apply_in_memory(&mut self, change: Change) {
        match change {
            Change::PutLocalDomain(d) => self.config.insert_local_unchecked(d),
            Change::DeleteLocalDomain(d) => {
                self.config.remove_local_domain(&d);
            }
            Change::PutRemoteDomain(d, e) => self.config.insert_remote_unchecked(d, e),
            Change::DeleteRemoteDomain(d) => {
                self.config.remove_remote(&d);
            }
            Change::SetXmppMode(m) => self.config.set_xmpp_mode(m),
            Change::PutRule { user, target, rule } => {
                self.rules.entry(user).or_default().set(target, rule);
            }
            Change::DeleteRule { user, target } => {
                if let Some(r) = self.rules.get_mut(&user) {
                    r.remove(&target);
                    if r.is_empty() {
                        self.rules.remove(&user);
                    }
                }
            }
            Change::PutSubscription(rec) => {
                if let Some(old) = self.remove_record(&rec.key) {
                    debug_assert_eq!(old.key, rec.key);
                }
                if let Some(t) = rec.next_deadline() {
                    self.deadlines.insert((t, rec.key.clone()));
                }
                let key = rec.key.clone();
                self.subs
                    .entry(key.local)
                    .or_default()
                    .map_mut(key.direction)
                    .insert(key.remote, rec);
            }
            Change::DeleteSubscription(key) => {
                self.remove_record(&key);
            }
        }
    }

    fn remove_record(&mut self, key: &SubscriptionKey) -> Option<SubscriptionRecord> {
        let subs = self.subs.get_mut(&key.local)?;
        let old = subs.map_mut(key.direction).remove(&key.remote)?;
        if subs.inbound.is_empty() && subs.outbound.is_empty() {
            self.subs.remove(&key.local);
        }
        if let Some(t) = old.next_deadline() {
            self.deadlines.remove(&(t, old.key.clone()));
        }
        Some(old)
    }
}
