//! Persistence: the change records the engine writes, the snapshot it starts from, the
//! [`PolicyStore`] trait, and [`MemoryStore`] for tests.
//!
//! # Contract
//!
//! The engine ([`crate::Policy`]) turns every mutation into a batch of [`Change`]s, hands the
//! batch to [`PolicyStore::apply`], and only when that returns `Ok` applies the same batch
//! to its memory. So memory is always "the store's contents", and a restart
//! ([`crate::Policy::open`] on the same store) resumes every subscription, pending request,
//! rule and configuration entry exactly.
//!
//! # Intended SQLite / async adapter (fedgate-store)
//!
//! The trait is synchronous and over plain data on purpose: the engine stays pure and
//! testable. Each [`Change`] variant is one `INSERT … ON CONFLICT DO UPDATE` or `DELETE`
//! on one of five tables (local domains, remote domains, settings, user rules,
//! subscriptions) and a batch is one transaction. In the node, the engine's store is
//! a thin synchronous implementation that forwards each batch over a bounded channel to
//! the fedgate-store writer (one SQLite writer on a blocking thread) and waits for its
//! commit (`blocking_send` + a oneshot reply from inside `spawn_blocking`, or the engine
//! itself lives on that blocking thread and the async side talks to it by message).
//! Nothing is acknowledged to a peer until `apply` has returned `Ok`. [`Snapshot`] is what
//! `SELECT * FROM` each table returns at start-up.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::addr::{Domain, UserAddress};
use crate::federation::{FederationEntry, XmppMode};
use crate::rules::{Rule, RuleTarget};
use crate::subscription::{SubscriptionKey, SubscriptionRecord};

/// One durable change. A batch of them is applied atomically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Change {
    /// Insert a local domain.
    PutLocalDomain(Domain),
    /// Delete a local domain.
    DeleteLocalDomain(Domain),
    /// Insert or replace a remote domain entry.
    PutRemoteDomain(Domain, FederationEntry),
    /// Delete a remote domain entry.
    DeleteRemoteDomain(Domain),
    /// Set the XMPP administrator policy mode.
    SetXmppMode(XmppMode),
    /// Insert or replace a per-user rule.
    PutRule {
        /// The local user whose list it is.
        user: UserAddress,
        /// What it applies to.
        target: RuleTarget,
        /// Allow or block.
        rule: Rule,
    },
    /// Delete a per-user rule.
    DeleteRule {
        /// The local user whose list it is.
        user: UserAddress,
        /// What it applied to.
        target: RuleTarget,
    },
    /// Insert or replace a subscription record.
    PutSubscription(SubscriptionRecord),
    /// Delete a subscription record.
    DeleteSubscription(SubscriptionKey),
}

/// Everything the store holds, as plain rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Local domains.
    pub local_domains: Vec<Domain>,
    /// Remote domain entries.
    pub remote_domains: Vec<(Domain, FederationEntry)>,
    /// XMPP administrator policy mode (`None`: never set, the default applies).
    pub xmpp_mode: Option<XmppMode>,
    /// Per-user rules.
    pub rules: Vec<(UserAddress, RuleTarget, Rule)>,
    /// Subscription records.
    pub subscriptions: Vec<SubscriptionRecord>,
}

/// Durable storage for the policy engine. See the module docs for the contract.
pub trait PolicyStore {
    /// The store's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Reads everything (at start-up).
    fn load(&self) -> Result<Snapshot, Self::Error>;

    /// Applies a batch atomically: all of it, or (on `Err`) none of it.
    fn apply(&mut self, batch: &[Change]) -> Result<(), Self::Error>;
}

/// The error of [`MemoryStore`] (only when told to fail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("memory store: write refused (failure injected by the test)")]
pub struct MemoryStoreError;

/// An in-memory [`PolicyStore`] for tests. Clone it to simulate a restart.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    local_domains: BTreeSet<Domain>,
    remote_domains: BTreeMap<Domain, FederationEntry>,
    xmpp_mode: Option<XmppMode>,
    rules: BTreeMap<(UserAddress, RuleTarget), Rule>,
    subscriptions: BTreeMap<SubscriptionKey, SubscriptionRecord>,
    fail_writes: bool,
    batches: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// When `fail` is true every later [`PolicyStore::apply`] fails without writing.
    pub fn set_fail_writes(&mut self, fail: bool) {
        self.fail_writes = fail;
    }

    /// Number of batches committed so far.
    pub fn committed_batches(&self) -> u64 {
        self.batches
    }

    /// Number of subscription rows.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.len()
    }
}

impl PolicyStore for MemoryStore {
    type Error = MemoryStoreError;

    fn load(&self) -> Result<Snapshot, Self::Error> {
        Ok(Snapshot {
            local_domains: self.local_domains.iter().cloned().collect(),
            remote_domains: self
                .remote_domains
                .iter()
                .map(|(d, e)| (d.clone(), *e))
                .collect(),
            xmpp_mode: self.xmpp_mode,
            rules: self
                .rules
                .iter()
                .map(|((u, t), r)| (u.clone(), t.clone(), *r))
                .collect(),
            subscriptions: self.subscriptions.values().cloned().collect(),
        })
    }

    fn apply(&mut self, batch: &[Change]) -> Result<(), Self::Error> {
        if self.fail_writes {
            return Err(MemoryStoreError);
        }
        for change in batch {
            match change.clone() {
                Change::PutLocalDomain(d) => {
                    self.local_domains.insert(d);
                }
                Change::DeleteLocalDomain(d) => {
                    self.local_domains.remove(&d);
                }
                Change::PutRemoteDomain(d, e) => {
                    self.remote_domains.insert(d, e);
                }
                Change::DeleteRemoteDomain(d) => {
                    self.remote_domains.remove(&d);
                }
                Change::SetXmppMode(m) => self.xmpp_mode = Some(m),
                Change::PutRule { user, target, rule } => {
                    self.rules.insert((user, target), rule);
                }
                Change::DeleteRule { user, target } => {
                    self.rules.remove(&(user, target));
                }
                Change::PutSubscription(rec) => {
                    self.subscriptions.insert(rec.key.clone(), rec);
                }
                Change::DeleteSubscription(key) => {
                    self.subscriptions.remove(&key);
                }
            }
        }
        self.batches += 1;
        Ok(())
    }
}
