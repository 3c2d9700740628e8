//! Per-user authorization: allow and block lists for remote users and remote domains.

use serde::{Deserialize, Serialize};

use crate::addr::{Domain, FastMap, UserAddress};

/// A per-user rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    /// The watcher may see the user's real presence.
    Allow,
    /// Polite block: the watcher only ever sees the user Offline.
    Block,
}

/// What a per-user rule applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleTarget {
    /// One remote user.
    User(UserAddress),
    /// Every user of a remote domain.
    Domain(Domain),
}

/// What a local user's lists say about a watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Authorization {
    /// The watcher or the watcher's domain is blocked (this wins over any allow).
    Blocked,
    /// The watcher or the watcher's domain is allowed, and neither is blocked.
    Allowed,
    /// Neither is on a list: the user has to be asked.
    Undecided,
}

/// One local user's policy list: allow and block rules for users and for domains.
///
/// Seed: "The user can also block subscriptions on a per user and a per domain basis."
/// and "The authorization decision is added to the policy list of the user stored on the
/// IM and Presence Service."
///
/// A target has at most one rule (setting `Allow` replaces `Block` and vice versa).
///
/// ```
/// use fedgate_policy::{Authorization, Rule, RuleTarget, UserRules};
/// let mut rules = UserRules::default();
/// rules.set(RuleTarget::Domain("example.org".parse().unwrap()), Rule::Allow);
/// rules.set(RuleTarget::User("spam@example.org".parse().unwrap()), Rule::Block);
/// assert_eq!(rules.authorize(&"bob@example.org".parse().unwrap()), Authorization::Allowed);
/// assert_eq!(rules.authorize(&"spam@example.org".parse().unwrap()), Authorization::Blocked);
/// assert_eq!(rules.authorize(&"eve@example.net".parse().unwrap()), Authorization::Undecided);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserRules {
    users: FastMap<UserAddress, Rule>,
    domains: FastMap<Domain, Rule>,
}

impl UserRules {
    /// Sets (or replaces) the rule for `target`; returns the previous rule.
    pub fn set(&mut self, target: RuleTarget, rule: Rule) -> Option<Rule> {
        match target {
            RuleTarget::User(u) => self.users.insert(u, rule),
            RuleTarget::Domain(d) => self.domains.insert(d, rule),
        }
    }

    /// Removes the rule for `target`; returns it.
    pub fn remove(&mut self, target: &RuleTarget) -> Option<Rule> {
        match target {
            RuleTarget::User(u) => self.users.remove(u),
            RuleTarget::Domain(d) => self.domains.remove(d),
        }
    }

    /// The rule for `target`, if any.
    pub fn get(&self, target: &RuleTarget) -> Option<Rule> {
        match target {
            RuleTarget::User(u) => self.users.get(u).copied(),
            RuleTarget::Domain(d) => self.domains.get(d).copied(),
        }
    }

    /// Every rule.
    pub fn iter(&self) -> impl Iterator<Item = (RuleTarget, Rule)> + '_ {
        let users = self
            .users
            .iter()
            .map(|(u, r)| (RuleTarget::User(u.clone()), *r));
        let domains = self
            .domains
            .iter()
            .map(|(d, r)| (RuleTarget::Domain(d.clone()), *r));
        users.chain(domains)
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.users.len() + self.domains.len()
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the lists say about `watcher`: a block of the watcher or of the watcher's domain
    /// first, then an allow of either, else undecided.
    ///
    /// Seed: "the IM and Presence Service checks the authorization policies of the local user
    /// to verify that the local user has not previously blocked or allowed either the
    /// federated domain or the user sending the presence subscription."
    pub fn authorize(&self, watcher: &UserAddress) -> Authorization {
        let user = self.users.get(watcher).copied();
        let domain = self.domains.get(watcher.domain()).copied();
        match (user, domain) {
            (Some(Rule::Block), _) | (_, Some(Rule::Block)) => Authorization::Blocked,
            (Some(Rule::Allow), _) | (_, Some(Rule::Allow)) => Authorization::Allowed,
            (None, None) => Authorization::Undecided,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> UserAddress {
        s.parse().unwrap()
    }

    #[test]
    fn block_wins_over_allow_at_either_level() {
        let mut r = UserRules::default();
        r.set(RuleTarget::User(u("bob@example.org")), Rule::Allow);
        r.set(
            RuleTarget::Domain("example.org".parse().unwrap()),
            Rule::Block,
        );
        assert_eq!(r.authorize(&u("bob@example.org")), Authorization::Blocked);
        let mut r = UserRules::default();
        r.set(RuleTarget::User(u("bob@example.org")), Rule::Block);
        r.set(
            RuleTarget::Domain("example.org".parse().unwrap()),
            Rule::Allow,
        );
        assert_eq!(r.authorize(&u("bob@example.org")), Authorization::Blocked);
        assert_eq!(r.authorize(&u("carol@example.org")), Authorization::Allowed);
    }

    #[test]
    fn set_replaces_and_remove_reverts_to_undecided() {
        let mut r = UserRules::default();
        let t = RuleTarget::User(u("bob@example.org"));
        assert_eq!(r.set(t.clone(), Rule::Block), None);
        assert_eq!(r.set(t.clone(), Rule::Allow), Some(Rule::Block));
        assert_eq!(r.len(), 1);
        assert_eq!(r.authorize(&u("bob@example.org")), Authorization::Allowed);
        assert_eq!(r.remove(&t), Some(Rule::Allow));
        assert!(r.is_empty());
        assert_eq!(r.authorize(&u("bob@example.org")), Authorization::Undecided);
    }
}
