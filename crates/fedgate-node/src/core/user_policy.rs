//! [`UserPolicy`]: fedgate-policy's [`Policy`] engine on the node's store, shared by
//! the [`Router`](super::Router) for every inbound subscription, whatever protocol it
//! came over.
//!
//! The engine's store is the [`StoreHandle`] (its [`PolicyStore`] implementation waits
//! for the SQLite writer), so every call that may write runs on a blocking thread
//! ([`UserPolicy::call`]); reads that never write ([`UserPolicy::read`]) take the lock
//! on the caller's thread. A write holds the lock for one store commit.
//!
//! At start ([`UserPolicy::open`]) the engine's stored configuration (local domains,
//! federated domains, XMPP mode) is brought in line with the node's configuration (the
//! TOML is the administrator's word: entries it no longer has are removed, changed ones
//! replaced) and the `[[policy.user]]` rules are written. Per-user rules, subscription
//! records and pending requests are kept from the store, so a restart resumes them.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use fedgate_policy::{
    Domain, FederationConfig, Policy, PolicyError, PolicyStore, Protocol, Route, Rule, RuleTarget,
    SubscriptionLimits, Timestamp, UserAddress,
};
use fedgate_store::StoreHandle;

/// The shared per-user policy engine; cheap to clone. See the module docs.
#[derive(Debug, Clone)]
pub struct UserPolicy {
    inner: Arc<Mutex<Policy<StoreHandle>>>,
}

/// Why [`UserPolicy::call`] gave no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserPolicyError {
    /// The engine refused (a store write failed: nothing changed).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The blocking task did not run to its end (runtime shutting down).
    #[error("policy task cancelled")]
    Cancelled,
}

impl UserPolicy {
    /// Opens the engine on `store` (blocking thread), aligns its configuration with
    /// `federation` and writes the administrator's `rules`.
    pub async fn open(
        store: StoreHandle,
        federation: FederationConfig,
        rules: Vec<(UserAddress, RuleTarget, Rule)>,
        now: Timestamp,
    ) -> Result<Self, UserPolicyError> {
        let policy = tokio::task::spawn_blocking(move || {
            let mut p = Policy::open(store, SubscriptionLimits::default())?;
            sync_config(&mut p, &federation, now)?;
            for (user, target, rule) in rules {
                let events = p.set_rule(now, &user, target, rule)?;
                log_events("policy.user", &events);
            }
            Ok::<_, PolicyError>(p)
        })
        .await
        .map_err(|_| UserPolicyError::Cancelled)??;
        Ok(UserPolicy {
            inner: Arc::new(Mutex::new(policy)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Policy<StoreHandle>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the engine on a blocking thread (it may write to the store).
    pub async fn call<T, F>(&self, f: F) -> Result<T, UserPolicyError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Policy<StoreHandle>) -> Result<T, PolicyError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut p = inner.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut p)
        })
        .await
        .map_err(|_| UserPolicyError::Cancelled)?
        .map_err(UserPolicyError::from)
    }

    /// Reads the engine on this thread (never writes; waits at most for one commit).
    pub fn read<T>(&self, f: impl FnOnce(&Policy<StoreHandle>) -> T) -> T {
        f(&self.lock())
    }

    /// The protocol `domain` is federated over, as the engine sees it (`Xmpp` for a
    /// domain that is not federated: the engine then denies it).
    pub fn protocol_of(&self, domain: &Domain) -> Protocol {
        match self.read(|p| p.route(domain)) {
            Route::Sip => Protocol::Sip,
            _ => Protocol::Xmpp,
        }
    }

    /// Whether `watcher` may only see `local` offline: the user (or the administrator)
    /// blocked the watcher or its domain, or the watcher's active subscription is no
    /// longer allowed (a rule removed).
    pub fn blocked(&self, local: &UserAddress, watcher: &UserAddress, now: Timestamp) -> bool {
        self.read(|p| {
            let rule_blocks = p
                .rules(local)
                .is_some_and(|r| r.authorize(watcher) == fedgate_policy::Authorization::Blocked);
            rule_blocks
                || matches!(
                    p.view_for(local, watcher, &(), now),
                    Some(fedgate_policy::Seen::Offline)
                )
        })
    }
}

fn log_events(what: &str, events: &[fedgate_policy::SubscriptionEvent]) {
    for e in events {
        tracing::info!(what, event = ?e, "policy: subscription changed by the configuration");
    }
}

/// Brings the engine's stored configuration in line with the node's.
fn sync_config<S: PolicyStore>(
    p: &mut Policy<S>,
    want: &FederationConfig,
    now: Timestamp,
) -> Result<(), PolicyError> {
    let stale: Vec<Domain> = p
        .config()
        .entries()
        .filter(|(d, e)| want.entry(d) != Some(*e))
        .map(|(d, _)| d.clone())
        .collect();
    for d in stale {
        log_events("remote domain removed", &p.remove_remote_domain(now, &d)?);
    }
    let gone: Vec<Domain> = p
        .config()
        .local_domains()
        .filter(|d| !want.is_local(d))
        .cloned()
        .collect();
    for d in gone {
        log_events("local domain removed", &p.remove_local_domain(now, &d)?);
    }
    for d in want.local_domains() {
        if !p.config().is_local(d) {
            log_events("local domain", &p.add_local_domain(now, d.clone())?);
        }
    }
    for (d, e) in want.entries() {
        if p.config().entry(d) != Some(e) {
            log_events("remote domain", &p.add_remote_domain(now, d.clone(), e)?);
        }
    }
    if p.config().xmpp_mode() != want.xmpp_mode() {
        log_events("xmpp mode", &p.set_xmpp_mode(now, want.xmpp_mode())?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use fedgate_policy::{MemoryStore, XmppListing, XmppMode};

    fn d(s: &str) -> Domain {
        Domain::new(s).unwrap()
    }

    #[test]
    fn sync_config_follows_the_toml() {
        let now = Timestamp::from_millis(1);
        let mut p = Policy::open(MemoryStore::new(), SubscriptionLimits::default()).unwrap();
        p.add_local_domain(now, d("old.test")).unwrap();
        p.add_sip_domain(now, d("moved.test")).unwrap();
        p.add_xmpp_domain(now, d("gone.test"), XmppListing::Allow)
            .unwrap();
        let mut want = FederationConfig::new();
        want.add_local_domain(d("local.test")).unwrap();
        want.add_xmpp_domain(d("moved.test"), XmppListing::Allow)
            .unwrap();
        want.add_sip_domain(d("lync.test")).unwrap();
        want.set_xmpp_mode(XmppMode::AllowAll);
        sync_config(&mut p, &want, now).unwrap();
        let got: Vec<_> = p.config().entries().map(|(d, e)| (d.clone(), e)).collect();
        let exp: Vec<_> = want.entries().map(|(d, e)| (d.clone(), e)).collect();
        let (mut got, mut exp) = (got, exp);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        exp.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, exp);
        assert!(p.config().is_local(&d("local.test")));
        assert!(!p.config().is_local(&d("old.test")));
        assert_eq!(p.config().xmpp_mode(), XmppMode::AllowAll);
        // Reopened on the same store: the same configuration.
        let p2 = Policy::open(p.into_store(), SubscriptionLimits::default()).unwrap();
        assert_eq!(p2.route(&d("moved.test")), Route::Xmpp);
        assert_eq!(p2.route(&d("lync.test")), Route::Sip);
    }
}
